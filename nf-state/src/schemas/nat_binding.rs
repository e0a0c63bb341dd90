//! `nat-binding`: a NAPT box's state (original five-tuple -> translated address and port).

use super::Proto;
use crate::schema::Schema;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// `nat-binding` (version 1): the address and port a NAPT box gave a client's connection.
///
/// ```
/// use nf_state::schemas::*;
/// use nf_state::{Codec, Record, json_line};
/// let key = NatBindingKey {
///     proto: Proto::Tcp, client_ip: "10.0.0.5".parse().unwrap(), client_port: 40808,
///     server_ip: "10.1.0.3".parse().unwrap(), server_port: 80,
/// };
/// let value = NatBindingValue { nat_ip: "192.0.2.1".parse().unwrap(), nat_port: 15715 };
/// let r = Record::upsert::<NatBinding>(Codec::Json, "nat1", &key, &value).unwrap();
/// assert_eq!(json_line(&r).unwrap(),
///     r#"{"key":{"proto":"tcp","client_ip":"10.0.0.5","client_port":40808,"server_ip":"10.1.0.3","server_port":80},"value":{"nat_ip":"192.0.2.1","nat_port":15715}}"#);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct NatBinding;

/// The original five-tuple.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NatBindingKey {
    /// Transport protocol.
    pub proto: Proto,
    /// Client address (before translation).
    pub client_ip: IpAddr,
    /// Client port (before translation).
    pub client_port: u16,
    /// Server address.
    pub server_ip: IpAddr,
    /// Server port.
    pub server_port: u16,
}

/// The translated source.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NatBindingValue {
    /// Translated address.
    pub nat_ip: IpAddr,
    /// Translated port.
    pub nat_port: u16,
}

impl Schema for NatBinding {
    const NAME: &'static str = "nat-binding";
    const VERSION: u16 = 1;
    type Key = NatBindingKey;
    type Value = NatBindingValue;
}
