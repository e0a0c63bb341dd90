//! Network address translation (Click's `nat` package): `IPRewriter`, a NAPT with Click's input specs,
//! whose mappings a white-box driver replicates and a minion installs (the NAT minion of `nf nat`).

pub mod ip_rewriter;

pub use ip_rewriter::{
    Field, FlowId, IPRewriter, InputSpec, Mapping, Pattern, PortChoice, RwInstall, SourcePort,
};

/// Registers the NAT elements.
pub fn register(r: &mut crate::registry::Registry) {
    r.add::<IPRewriter>();
}
