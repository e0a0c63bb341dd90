//! IP elements: header checks, TTL, checksums, and classification by tcpdump-like expressions.

mod check_ip_header;
mod dec_ip_ttl;
pub mod expr;
mod ip_classifier;
mod set_ip_checksum;

pub use check_ip_header::{BadReason, CheckIPHeader};
pub use dec_ip_ttl::DecIPTTL;
pub use ip_classifier::IPClassifier;
pub use set_ip_checksum::SetIPChecksum;

use crate::registry::Registry;

/// Registers the IP elements.
pub fn register(r: &mut Registry) {
    r.register(
        "CheckIPHeader",
        "validates IPv4 headers; bad packets to output 1 or dropped",
        |a| {
            let off = a.read_p_or("OFFSET", 0usize)?;
            let ck = a.read_or("CHECKSUM", true)?;
            Ok(CheckIPHeader::new(off, ck))
        },
    );
    r.register(
        "DecIPTTL",
        "decrements the IPv4 TTL / IPv6 hop limit; expired to output 1",
        |_| Ok(DecIPTTL::new()),
    );
    r.register(
        "SetIPChecksum",
        "recomputes the IPv4 header checksum",
        |_| Ok(SetIPChecksum::new()),
    );
    r.register(
        "IPClassifier",
        "classifies IP packets by tcpdump-like expressions",
        |a| {
            let raw = a.rest_raw();
            IPClassifier::from_raw(a, raw)
        },
    );
    r.register(
        "IPFilter",
        "allows, denies or routes IP packets by tcpdump-like rules",
        |a| {
            let raw = a.rest_raw();
            IPClassifier::filter_from_raw(a, raw)
        },
    );
}
