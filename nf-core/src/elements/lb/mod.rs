//! Load balancing: the stateful L4 `LoadBalancer` (the primary and the minion of `nf lb`) and Maglev
//! consistent hashing.

pub mod load_balancer;
pub mod maglev;

pub use load_balancer::{ClientKey, LbEntry, LbInstall, LoadBalancer, Policy};
pub use maglev::{MaglevBackend, MaglevError, MaglevTable};

/// Registers the load-balancing elements.
pub fn register(r: &mut crate::registry::Registry) {
    load_balancer::register(r);
}
