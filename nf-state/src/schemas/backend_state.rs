//! `backend-state`: what an operator (or a health check) made of each backend of a load balancer.

use super::BackendKey;
use crate::schema::Schema;
use serde::{Deserialize, Serialize};

/// `backend-state` (version 1): backend -> administrative state, weight, health and drain deadline.
/// A primary replicates it so that a minion that takes over sends no new flow to a backend the
/// primary had drained, taken down or found dead.
///
/// ```
/// use nf_state::schemas::*;
/// use nf_state::{Codec, Record, json_line};
/// let key = BackendKey { backend_ip: "10.1.0.3".parse().unwrap(), backend_port: 8080 };
/// let value = BackendStateValue {
///     state: AdminState::Drain, weight: 1, healthy: true,
///     drain_deadline_ns: Some(1_700_000_030_000_000_000), time_ns: 1_700_000_000_000_000_000,
/// };
/// let r = Record::upsert::<BackendState>(Codec::Json, "lb1", &key, &value).unwrap();
/// assert_eq!(json_line(&r).unwrap(),
///     r#"{"key":{"backend_ip":"10.1.0.3","backend_port":8080},"value":{"state":"drain","weight":1,"healthy":true,"drain_deadline_ns":1700000030000000000,"time_ns":1700000000000000000}}"#);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct BackendState;

/// What an operator made of a backend.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum AdminState {
    /// Takes new flows (if healthy and of weight above 0).
    Up,
    /// Takes no new flow; its flows stay until they close or the deadline passes.
    Drain,
    /// Takes no new flow.
    Down,
}

/// A backend's state.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BackendStateValue {
    /// What the operator made of it.
    pub state: AdminState,
    /// Its weight (0: no new flows).
    pub weight: u32,
    /// What the health checks last said.
    pub healthy: bool,
    /// A draining backend's deadline (ns since the epoch), if it has one.
    pub drain_deadline_ns: Option<u64>,
    /// When the primary made the change (ns since the epoch).
    pub time_ns: u64,
}

impl Schema for BackendState {
    const NAME: &'static str = "backend-state";
    const VERSION: u16 = 1;
    type Key = BackendKey;
    type Value = BackendStateValue;
}
