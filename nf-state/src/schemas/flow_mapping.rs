//! `flow-mapping`: the load balancer's state (client -> chosen backend).

use super::Proto;
use crate::codec::Codec;
use crate::error::Error;
use crate::schema::Schema;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};

/// `flow-mapping` (version 2): which backend a load balancer chose for a client's flow.
///
/// ```
/// use nf_state::schemas::*;
/// use nf_state::{Codec, Record, json_line};
/// let key = FlowMappingKey { proto: Proto::Tcp, client_ip: "10.0.0.5".parse().unwrap(), client_port: 40808 };
/// let value = FlowMappingValue { backend_ip: "10.1.0.3".parse().unwrap(), backend_port: 80 };
/// let r = Record::upsert::<FlowMapping>(Codec::Bincode, "lb1", &key, &value).unwrap();
/// assert_eq!(json_line(&r).unwrap(),
///     r#"{"key":{"proto":"tcp","client_ip":"10.0.0.5","client_port":40808},"value":{"backend_ip":"10.1.0.3","backend_port":80}}"#);
/// ```
///
/// Version 1 stored the backend as one `"ip:port"` string; version 2 reads those records
/// ([`Schema::upgrade`]).
#[derive(Debug, Clone, Copy)]
pub struct FlowMapping;

/// The key: the client side of the flow.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowMappingKey {
    /// Transport protocol.
    pub proto: Proto,
    /// Client address.
    pub client_ip: IpAddr,
    /// Client port.
    pub client_port: u16,
}

/// The value: the backend chosen.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowMappingValue {
    /// Backend address.
    pub backend_ip: IpAddr,
    /// Backend port.
    pub backend_port: u16,
}

/// The value as version 1 wrote it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FlowMappingV1Value {
    /// `"ip:port"`.
    pub backend: String,
}

impl Schema for FlowMapping {
    const NAME: &'static str = "flow-mapping";
    const VERSION: u16 = 2;
    type Key = FlowMappingKey;
    type Value = FlowMappingValue;

    fn upgrade(
        version: u16,
        codec: Codec,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(FlowMappingKey, Option<FlowMappingValue>), Error> {
        if version != 1 {
            return Err(Error::UnsupportedVersion {
                schema: Self::NAME.into(),
                found: version,
                supported: Self::VERSION,
            });
        }
        let k: FlowMappingKey = codec.decode(key)?;
        let v = match value {
            None => None,
            Some(b) => {
                let old: FlowMappingV1Value = codec.decode(b)?;
                let sa: SocketAddr = old.backend.parse().map_err(|_| Error::Codec {
                    codec: codec.name(),
                    message: format!("version-1 backend `{}` is not ip:port", old.backend),
                })?;
                Some(FlowMappingValue {
                    backend_ip: sa.ip(),
                    backend_port: sa.port(),
                })
            }
        };
        Ok((k, v))
    }
}
