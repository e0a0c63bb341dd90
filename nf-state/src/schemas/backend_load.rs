//! `backend-load`: how loaded each backend of a load balancer is.

use crate::schema::Schema;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// `backend-load` (version 1): backend -> active connections and bytes.
///
/// ```
/// use nf_state::schemas::*;
/// use nf_state::{Codec, Record, json_line};
/// let key = BackendKey { backend_ip: "10.1.0.3".parse().unwrap(), backend_port: 80 };
/// let value = BackendLoadValue { active_connections: 12, bytes: 48000 };
/// let r = Record::upsert::<BackendLoad>(Codec::Json, "lb1", &key, &value).unwrap();
/// assert_eq!(json_line(&r).unwrap(),
///     r#"{"key":{"backend_ip":"10.1.0.3","backend_port":80},"value":{"active_connections":12,"bytes":48000}}"#);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct BackendLoad;

/// A backend.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendKey {
    /// Address.
    pub backend_ip: IpAddr,
    /// Port.
    pub backend_port: u16,
}

/// Its load.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BackendLoadValue {
    /// Connections open now.
    pub active_connections: u64,
    /// Bytes forwarded.
    pub bytes: u64,
}

impl Schema for BackendLoad {
    const NAME: &'static str = "backend-load";
    const VERSION: u16 = 1;
    type Key = BackendKey;
    type Value = BackendLoadValue;
}
