//! Load balancing elements: the stateful L4 `LoadBalancer` (the primary and the minion of `nf lb`).

pub mod load_balancer;

pub use load_balancer::{ClientKey, LbEntry, LbInstall, LoadBalancer, Policy};

/// Registers the load-balancing elements.
pub fn register(r: &mut crate::registry::Registry) {
    load_balancer::register(r);
}
