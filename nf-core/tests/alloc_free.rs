//! Proves the "no allocation in steady state" claim: a global allocator counts every allocation while
//! 100,000 packets go through `Replay -> Classifier -> Counter -> Discard` (and through the connection
//! tracker) after a warm-up.

use nf_core::elements::standard::{Classifier, Counter, Discard, Replay};
use nf_core::elements::tcpudp::ConnTrack;
use nf_core::traffic::TrafficConfig;
use nf_core::{ElementId, Graph, Router};

#[global_allocator]
static GLOBAL: nf_core::counting_alloc_unsafe::CountingAlloc =
    nf_core::counting_alloc_unsafe::CountingAlloc;

/// Runs rounds until `n` more packets left the source; returns the allocations counted meanwhile.
fn count_allocs_over(r: &mut Router, src: ElementId<Replay>, n: u64) -> u64 {
    nf_core::counting_alloc_unsafe::allocations_over(r, src, Replay::count, n)
}

#[test]
fn classifier_counter_discard_allocates_nothing_after_warmup() {
    let mut g = Graph::new();
    let src = g.add(
        "src",
        Replay::generated(10_000, TrafficConfig::default()).limit(u64::MAX),
    );
    let cls = g.add(
        "cls",
        Classifier::new(&["12/0800 23/06", "12/0800 23/11", "-"]).unwrap(),
    );
    let counters: Vec<_> = (0..3)
        .map(|i| g.add(&format!("c{i}"), Counter::new()))
        .collect();
    g.connect(src.id(), 0, cls.id(), 0);
    for (i, c) in counters.iter().enumerate() {
        let d = g.add(&format!("d{i}"), Discard::new());
        g.connect(cls.id(), i, c.id(), 0);
        g.connect(c.id(), 0, d.id(), 0);
    }
    let mut r = Router::new(g).unwrap();
    nf_core::pool::prefill(1024);
    // Warm-up: batches, the pool and the spare batch list reach their working size.
    for _ in 0..1000 {
        r.run_round();
    }
    let n = count_allocs_over(&mut r, src, 100_000);
    let seen: u64 = counters
        .iter()
        .map(|c| r.element(*c).unwrap().count())
        .sum();
    assert!(seen >= 100_000);
    assert_eq!(n, 0, "allocations on the packet path after warm-up");
}

#[test]
fn conntrack_allocates_nothing_once_its_flows_are_known() {
    let mut g = Graph::new();
    let src = g.add(
        "src",
        Replay::generated(
            20_000,
            TrafficConfig {
                flows: 2_000,
                ..Default::default()
            },
        )
        .limit(u64::MAX),
    );
    let ct = g.add("ct", ConnTrack::new(65_536));
    let d = g.add("d", Discard::new());
    g.chain(&[src.id(), ct.id(), d.id()]);
    let mut r = Router::new(g).unwrap();
    for _ in 0..2000 {
        r.run_round();
    }
    let n = count_allocs_over(&mut r, src, 100_000);
    assert_eq!(r.read_handler("ct", "flows").unwrap(), "2000");
    assert_eq!(n, 0, "allocations in the connection tracker after warm-up");
}
