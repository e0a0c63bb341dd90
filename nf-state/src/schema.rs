//! State schemas: a stable name, a version, typed keys and values, and an upgrade path from older versions.

use crate::codec::Codec;
use crate::error::Error;
use crate::record::{Op, Record};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt::Debug;
use std::hash::Hash;

/// The shape of one kind of state.
///
/// A minion running version N reads records written by version N-1 (or older, as far as [`upgrade`]
/// reaches); a record newer than the code is an [`Error::UnsupportedVersion`], never a guess.
///
/// [`upgrade`]: Schema::upgrade
pub trait Schema: Send + Sync + 'static {
    /// The stable name (`flow-mapping`).
    const NAME: &'static str;
    /// The current version.
    const VERSION: u16;
    /// Keys.
    type Key: Serialize + DeserializeOwned + Clone + Eq + Hash + Debug + Send + Sync + 'static;
    /// Values.
    type Value: Serialize + DeserializeOwned + Clone + PartialEq + Debug + Send + Sync + 'static;

    /// Reads a key and value written by an older `version` of this schema.
    fn upgrade(
        version: u16,
        codec: Codec,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(Self::Key, Option<Self::Value>), Error> {
        let _ = (codec, key, value);
        Err(Error::UnsupportedVersion {
            schema: Self::NAME.to_string(),
            found: version,
            supported: Self::VERSION,
        })
    }
}

/// The JSON form of a record: `{"key":...,"value":...}` (`value` is `null` for a delete).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct JsonForm<K, V> {
    /// The key.
    pub key: K,
    /// The value.
    pub value: Option<V>,
}

/// The JSON line of a record of schema `S`.
pub fn json_of<S: Schema>(r: &Record) -> Result<String, Error> {
    let (key, value) = r.decode::<S>()?;
    serde_json::to_string(&JsonForm {
        key,
        value: if r.op == Op::Delete { None } else { value },
    })
    .map_err(|e| Error::Codec {
        codec: "json",
        message: e.to_string(),
    })
}

/// The JSON line of a record of any built-in schema (what `nf state dump` prints).
pub fn json_line(r: &Record) -> Result<String, Error> {
    use crate::schemas::*;
    match &*r.schema {
        FlowMapping::NAME => json_of::<FlowMapping>(r),
        NatBinding::NAME => json_of::<NatBinding>(r),
        Conntrack::NAME => json_of::<Conntrack>(r),
        BackendLoad::NAME => json_of::<BackendLoad>(r),
        BackendState::NAME => json_of::<BackendState>(r),
        Heartbeat::NAME => json_of::<Heartbeat>(r),
        o => Err(Error::UnknownSchema(o.to_string())),
    }
}

/// A record of a built-in schema from its JSON line (the inverse of [`json_line`]), for tools that load
/// state from files.
pub fn record_from_json(
    schema: &str,
    codec: Codec,
    origin: &str,
    line: &str,
) -> Result<Record, Error> {
    use crate::schemas::*;
    fn one<S: Schema>(codec: Codec, origin: &str, line: &str) -> Result<Record, Error> {
        let f: JsonForm<S::Key, S::Value> =
            serde_json::from_str(line).map_err(|e| Error::Codec {
                codec: "json",
                message: e.to_string(),
            })?;
        match f.value {
            Some(v) => Record::upsert::<S>(codec, origin, &f.key, &v),
            None => Record::delete::<S>(codec, origin, &f.key),
        }
    }
    match schema {
        FlowMapping::NAME => one::<FlowMapping>(codec, origin, line),
        NatBinding::NAME => one::<NatBinding>(codec, origin, line),
        Conntrack::NAME => one::<Conntrack>(codec, origin, line),
        BackendLoad::NAME => one::<BackendLoad>(codec, origin, line),
        BackendState::NAME => one::<BackendState>(codec, origin, line),
        Heartbeat::NAME => one::<Heartbeat>(codec, origin, line),
        o => Err(Error::UnknownSchema(o.to_string())),
    }
}

/// The names of the built-in schemas.
pub const BUILT_IN: &[&str] = &[
    "flow-mapping",
    "nat-binding",
    "conntrack",
    "backend-load",
    "backend-state",
    "heartbeat",
];
