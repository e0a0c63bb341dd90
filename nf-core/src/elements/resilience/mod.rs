//! Resilience: elements that notice failures from the traffic itself and reroute around them (Blink,
//! Holterbach et al., NSDI'19).

mod blink_detector;

pub use blink_detector::{
    Blink, BlinkDetector, BlinkEvent, BlinkListener, BlinkParams, DownReason, MAX_EVENTS,
    MAX_PREFIXES, NextHops, PrefixState, PrefixStats, TcpSeen, cell_and_key, flow_hash,
};

/// Registers `BlinkDetector`.
pub fn register(r: &mut crate::registry::Registry) {
    r.add::<BlinkDetector>();
}
