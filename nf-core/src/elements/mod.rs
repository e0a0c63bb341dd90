//! The standard element library, grouped as Click groups it.

pub mod blink;
pub mod compress;
pub mod ethernet;
pub mod ip;
pub mod lb;
pub mod pop;
pub mod simple;
pub mod standard;
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
    blink::register(r);
    simple::register(r);
    tunnel::register(r);
    pop::register(r);
}
