//! `conntrack`: a connection tracker's entries.

use super::Proto;
use crate::schema::Schema;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// `conntrack` (version 1): five-tuple -> protocol state, timeout and counters.
///
/// ```
/// use nf_state::schemas::*;
/// use nf_state::{Codec, Record, json_line};
/// let key = FiveTuple { proto: Proto::Udp, src_ip: "10.0.0.5".parse().unwrap(), src_port: 5353,
///                       dst_ip: "10.1.0.3".parse().unwrap(), dst_port: 53 };
/// let value = ConntrackValue { state: ConnState::Assured, timeout_secs: 120,
///                              packets: [4, 4], bytes: [320, 512] };
/// let r = Record::upsert::<Conntrack>(Codec::Bincode, "fw1", &key, &value).unwrap();
/// assert_eq!(json_line(&r).unwrap(),
///     r#"{"key":{"proto":"udp","src_ip":"10.0.0.5","src_port":5353,"dst_ip":"10.1.0.3","dst_port":53},"value":{"state":"assured","timeout_secs":120,"packets":[4,4],"bytes":[320,512]}}"#);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Conntrack;

/// A five-tuple in the originator's direction.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FiveTuple {
    /// Transport protocol.
    pub proto: Proto,
    /// Source address.
    pub src_ip: IpAddr,
    /// Source port.
    pub src_port: u16,
    /// Destination address.
    pub dst_ip: IpAddr,
    /// Destination port.
    pub dst_port: u16,
}

/// Protocol state, in Linux conntrack's words.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ConnState {
    /// TCP: SYN seen.
    SynSent,
    /// TCP: SYN-ACK seen.
    SynRecv,
    /// TCP: handshake done.
    Established,
    /// TCP: one FIN seen.
    FinWait,
    /// TCP: both FINs seen.
    LastAck,
    /// TCP: closing, last ACK seen.
    TimeWait,
    /// TCP: reset.
    Close,
    /// UDP and others: one direction seen.
    Unreplied,
    /// UDP and others: both directions seen.
    Assured,
}

/// What is tracked of a connection.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConntrackValue {
    /// State.
    pub state: ConnState,
    /// Idle timeout in this state, seconds.
    pub timeout_secs: u32,
    /// Packets original / reply.
    pub packets: [u64; 2],
    /// Bytes original / reply.
    pub bytes: [u64; 2],
}

impl Schema for Conntrack {
    const NAME: &'static str = "conntrack";
    const VERSION: u16 = 1;
    type Key = FiveTuple;
    type Value = ConntrackValue;
}
