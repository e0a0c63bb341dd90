//! TCP and UDP elements: the connection tracker.

pub mod conntrack;

pub use conntrack::{ConnTrack, Connection, ProtoState, TcpState, Timeouts};

/// Registers the TCP/UDP elements.
pub fn register(r: &mut crate::registry::Registry) {
    conntrack::register(r);
}
