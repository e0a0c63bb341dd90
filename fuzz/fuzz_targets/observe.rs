//! The observation correlator on any frames from either tap, at any times: counted or correlated, never
//! a panic, tables within their bounds.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nf_drivers::observe::{Correlator, ObserveConfig, Side};

fuzz_target!(|data: &[u8]| {
    let mut c = Correlator::new(ObserveConfig {
        max_flows: 64,
        max_pending: 64,
        ..Default::default()
    });
    let mut out = Vec::new();
    // Records: [side/flags byte][time delta byte][length byte][frame...].
    let mut rest = data;
    let mut t = 0u64;
    while rest.len() >= 3 {
        let (h, dt, len) = (rest[0], rest[1], usize::from(rest[2]));
        rest = &rest[3..];
        let n = len.min(rest.len());
        let side = if h & 1 == 0 { Side::Outside } else { Side::Inside };
        t += u64::from(dt) * 1_000_000;
        c.packet(side, t, &rest[..n], h & 2 == 0, &mut out);
        rest = &rest[n..];
    }
    assert!(c.flows() <= 2 * 64 + 2);
});
