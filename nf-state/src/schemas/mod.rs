//! The built-in schemas: the state of the middleboxes of the literature.

mod backend_load;
mod backend_state;
mod conntrack;
mod flow_mapping;
mod heartbeat;
mod nat_binding;

pub use backend_load::{BackendKey, BackendLoad, BackendLoadValue};
pub use backend_state::{AdminState, BackendState, BackendStateValue};
pub use conntrack::{ConnState, Conntrack, ConntrackValue, FiveTuple};
pub use flow_mapping::{FlowMapping, FlowMappingKey, FlowMappingV1Value, FlowMappingValue};
pub use heartbeat::{Heartbeat, HeartbeatValue, NodeKey};
pub use nat_binding::{NatBinding, NatBindingKey, NatBindingValue};

use serde::{Deserialize, Serialize};

/// A transport protocol, as the JSON forms write it (`"tcp"`, `"udp"`, `"icmp"`, or `{"other":47}`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP (and ICMPv6).
    Icmp,
    /// Another IP protocol number.
    Other(u8),
}

impl Proto {
    /// From an IP protocol number.
    pub fn from_number(n: u8) -> Proto {
        match n {
            6 => Proto::Tcp,
            17 => Proto::Udp,
            1 | 58 => Proto::Icmp,
            o => Proto::Other(o),
        }
    }
    /// The IP protocol number (ICMP is 1).
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Icmp => 1,
            Proto::Other(n) => n,
        }
    }
}
