//! `heartbeat`: who is alive among a middlebox and its minions, and how far each has got.

use crate::schema::Schema;
use serde::{Deserialize, Serialize};

/// `heartbeat` (version 1): node -> role, time, progress. Each node of a primary/minion pair upserts its
/// own key every half second; `nf state stats` shows who is alive and how far behind a minion is.
///
/// ```
/// use nf_state::schemas::*;
/// use nf_state::{Codec, Record, json_line};
/// let key = NodeKey { node: "lb-minion".into() };
/// let value = HeartbeatValue { role: "minion".into(), time_ns: 1_700_000_000_000_000_000, seq: 41, entries: 12 };
/// let r = Record::upsert::<Heartbeat>(Codec::Json, "lb-minion", &key, &value).unwrap();
/// assert_eq!(json_line(&r).unwrap(),
///     r#"{"key":{"node":"lb-minion"},"value":{"role":"minion","time_ns":1700000000000000000,"seq":41,"entries":12}}"#);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Heartbeat;

/// A node.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeKey {
    /// Its name.
    pub node: String,
}

/// Its latest beat.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct HeartbeatValue {
    /// `primary` or `minion`.
    pub role: String,
    /// When it beat (ns since the epoch).
    pub time_ns: u64,
    /// A primary: the last sequence number its replicator had acknowledged; a minion: the last one it
    /// applied.
    pub seq: u64,
    /// Entries in its state table.
    pub entries: u64,
}

impl Schema for Heartbeat {
    const NAME: &'static str = "heartbeat";
    const VERSION: u16 = 1;
    type Key = NodeKey;
    type Value = HeartbeatValue;
}
