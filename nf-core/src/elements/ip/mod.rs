//! IP elements: header checks, TTL, checksums, and classification by tcpdump-like expressions (Click's
//! `ip` package).

mod check_ip_header;
mod dec_ip_ttl;
pub mod expr;
mod ip_classifier;
mod ip_mirror;
mod set_ip_checksum;

pub use check_ip_header::{BadReason, CheckIPHeader};
pub use dec_ip_ttl::DecIPTTL;
pub use ip_classifier::IPClassifier;
pub use ip_mirror::IPMirror;
pub use set_ip_checksum::SetIPChecksum;

use crate::registry::Registry;

/// Registers the IP elements.
pub fn register(r: &mut Registry) {
    r.add::<CheckIPHeader>();
    r.add::<DecIPTTL>();
    r.add::<SetIPChecksum>();
    r.add::<IPClassifier>();
    r.add::<IPMirror>();
    r.register(
        "IPFilter",
        "allows, denies or routes IP packets by tcpdump-like rules",
        ip_classifier::configure_filter,
    );
}
