//! Load balancing: the stateful L4 `LoadBalancer` (the primary and the minion of `nf lb`, as in
//! Middlebox Minion), Maglev consistent hashing (Eisenbud et al., NSDI'16), and Ananta's Mux, Host Agent
//! and SNAT port allocation (Patel et al., SIGCOMM'13); one element per file.

mod ananta_mux;
mod host_agent;
pub mod load_balancer;
pub mod maglev;
pub mod snat;

pub use ananta_mux::{AnantaMux, MuxCounts, MuxEntry};
pub use host_agent::{HostAgent, HostAgentCounts};
pub use load_balancer::{
    BackendState, BackendStatus, ClientKey, LbEntry, LbInstall, LoadBalancer, Policy,
};
pub use maglev::{MaglevBackend, MaglevError, MaglevTable};
pub use snat::{Snat, SnatAllocator, SnatKey, SnatStats, SnatValue};

/// Registers the load-balancing elements.
pub fn register(r: &mut crate::registry::Registry) {
    r.add::<LoadBalancer>();
    r.add::<AnantaMux>();
    r.add::<HostAgent>();
}
