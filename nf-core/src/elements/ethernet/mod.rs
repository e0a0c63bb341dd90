//! Ethernet elements: encapsulation and address rewriting (Click's `ethernet` package).

mod ether_encap;
mod ether_rewrite;

pub use ether_encap::EtherEncap;
pub use ether_rewrite::EtherRewrite;

use crate::registry::Registry;

/// Registers the Ethernet elements.
pub fn register(r: &mut Registry) {
    r.add::<EtherEncap>();
    r.add::<EtherRewrite>();
}
