//! The hash-flooding attack without a clock: five-tuples crafted offline (as an attacker who reads the
//! source would) to share a probe chain under the tables' old unkeyed hash pile into one window when placed
//! by that hash, and spread like any others when placed by the keyed hash the tables use now.

use nf_core::FlowKey;
use nf_core::Timestamp;
use nf_core::state::{PROBE_LIMIT, StateTable, WhenFull};
use std::net::Ipv4Addr;

/// 4,000 client tuples to one server whose unkeyed hash starts its probe within 64 slots of 2^17.
fn crafted() -> Vec<FlowKey> {
    let mut v = Vec::new();
    let mut i = 0u64;
    while v.len() < 4000 {
        let k = FlowKey::v4(
            6,
            Ipv4Addr::from(0x0A00_0000 | ((i >> 14) as u32 & 0x00FF_FFFF)),
            1024 + (i & 0x3FFF) as u16,
            Ipv4Addr::new(192, 168, 0, 1),
            80,
        );
        i += 1;
        if (k.unkeyed_hash() & 0x1_FFFF).wrapping_sub(0x1_0000) < 64 {
            v.push(k);
        }
    }
    v
}

fn place(keys: &[FlowKey], hash: impl Fn(&FlowKey) -> u32) -> StateTable<FlowKey, ()> {
    let mut t = StateTable::new(65_536, WhenFull::Evict);
    for k in keys {
        t.insert(hash(k), *k, (), Timestamp(0), Timestamp(u64::MAX));
    }
    t
}

#[test]
fn crafted_flows_pile_up_under_the_old_hash_and_spread_under_the_keyed_one() {
    let keys = crafted();
    // The attack as it was: one window holds at most PROBE_LIMIT of them; the rest evict one another.
    let old = place(&keys, FlowKey::unkeyed_hash);
    assert!(old.len() <= 2 * PROBE_LIMIT, "{}", old.len());
    assert!(old.stats().probe_limited > 3000, "{:?}", old.stats());
    // Keyed: all 4,000 placed, none limited, probes as short as for random keys.
    let new = place(&keys, FlowKey::table_hash);
    assert_eq!(new.len(), 4000);
    assert_eq!(new.stats().probe_limited, 0);
    assert!(new.max_displacement() < 32, "{}", new.max_displacement());
}
