//! The standard element library, grouped as Click groups it.

pub mod ethernet;
pub mod ip;
pub mod lb;
pub mod nat;
pub mod resilience;
pub mod standard;
pub mod steering;
pub mod tcpudp;
pub mod tunnel;

use crate::registry::Registry;

/// Registers every element class of nf-core.
pub fn register(r: &mut Registry) {
    standard::register(r);
    ip::register(r);
    ethernet::register(r);
    tcpudp::register(r);
    lb::register(r);
    nat::register(r);
    resilience::register(r);
    steering::register(r);
    tunnel::register(r);
}
