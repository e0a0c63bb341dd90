//! Blink's detector on synthetic traces with chosen timings: real TCP/IPv4 frames through the
//! `BlinkDetector` element, the output port of each packet observed.

use etherparse::PacketBuilder;
use nf_core::element::Element;
use nf_core::elements::resilience::{BlinkDetector, BlinkParams, DownReason, NextHops, flow_hash};
use nf_core::{Batch, Outputs, Packet, Timestamp};
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};

const PRIMARY: usize = 1;
const BACKUP1: usize = 2;
const BACKUP2: usize = 3;
const UNMATCHED: usize = 0;
const MS: u64 = 1_000_000;
const DST: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);

#[derive(Clone, Copy, Debug)]
struct Flow {
    src: Ipv4Addr,
    sport: u16,
    /// The next new byte.
    next: u32,
    /// The start of the last segment sent.
    last: u32,
}

struct Net {
    det: BlinkDetector,
}

fn frame(f: &Flow, seq: u32, len: usize, fin: bool, syn: bool) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(f.src.octets(), DST.octets(), 64)
        .tcp(f.sport, 80, seq, 64240)
        .ack(1);
    if fin {
        b = b.fin();
    }
    if syn {
        b = b.syn();
    }
    let mut v = Vec::new();
    b.write(&mut v, &vec![b'x'; len]).unwrap();
    v
}

impl Net {
    fn new() -> Net {
        Net::with(BlinkParams::default())
    }

    fn with(params: BlinkParams) -> Net {
        let det = BlinkDetector::new(params, UNMATCHED).prefix(
            "10.1.0.0/16".parse().unwrap(),
            NextHops {
                primary: PRIMARY,
                backups: [BACKUP1, BACKUP2],
            },
        );
        Net { det }
    }

    fn send_frame(&mut self, f: Vec<u8>, t: u64) -> usize {
        let mut b = Batch::new();
        let mut p = Packet::from_slice(&f);
        p.anno.timestamp = Timestamp(t);
        b.push(p);
        let mut out = Outputs::new(4);
        self.det.push(0, &mut b, &mut out);
        let ports: Vec<usize> = (0..4).filter(|&i| !out.port(i).is_empty()).collect();
        assert_eq!(ports.len(), 1, "one packet, one output");
        ports[0]
    }

    /// New data (in order) of `len` bytes.
    fn data(&mut self, f: &mut Flow, t: u64) -> usize {
        f.last = f.next;
        f.next = f.next.wrapping_add(100);
        self.send_frame(frame(f, f.last, 100, false, false), t)
    }

    /// The last segment again.
    fn retransmit(&mut self, f: &Flow, t: u64) -> usize {
        self.send_frame(frame(f, f.last, 100, false, false), t)
    }

    fn fin(&mut self, f: &mut Flow, t: u64) -> usize {
        f.last = f.next;
        self.send_frame(frame(f, f.next, 0, true, false), t)
    }

    fn cell(&self, f: &Flow) -> usize {
        let h = flow_hash(IpAddr::V4(f.src), IpAddr::V4(DST), f.sport, 80);
        self.det.blink().cell_of(h)
    }

    /// `n` flows in distinct cells.
    fn distinct_flows(&self, n: usize) -> Vec<Flow> {
        let mut used = HashSet::new();
        let mut v = Vec::new();
        for k in 0u32.. {
            let f = Flow {
                src: Ipv4Addr::new(192, 0, 2, (k % 200) as u8 + 1),
                sport: 10_000 + (k / 200) as u16 * 7 + (k % 7) as u16,
                next: 1_000 + k * 10_000,
                last: 0,
            };
            if used.insert(self.cell(&f)) {
                v.push(f);
                if v.len() == n {
                    return v;
                }
            }
        }
        unreachable!()
    }

    fn reroutes(&self) -> u64 {
        self.det.read_handler("reroutes").unwrap().parse().unwrap()
    }

    fn state(&self) -> nf_core::elements::resilience::PrefixState {
        self.det.blink().prefixes()[0].clone()
    }
}

/// 64 flows own the 64 cells (one data packet each in the first 64 ms).
fn sixty_four(net: &mut Net) -> Vec<Flow> {
    let mut flows = net.distinct_flows(64);
    for (i, f) in flows.iter_mut().enumerate() {
        assert_eq!(net.data(f, i as u64 * MS), PRIMARY);
    }
    assert_eq!(net.state().monitored(), 64);
    flows
}

#[test]
fn thirty_two_retransmitting_flows_reroute_at_the_32nd_and_31_do_not() {
    for n in [31usize, 32] {
        let mut net = Net::new();
        let flows = sixty_four(&mut net);
        // n flows retransmit, one every 10 ms from 100 ms: the last at 100 + 31 * 10 = 410 ms (310 ms).
        for (i, f) in flows.iter().take(n).enumerate() {
            let t = (100 + i as u64 * 10) * MS;
            let port = net.retransmit(f, t);
            if i < 31 {
                assert_eq!(port, PRIMARY, "retransmission {} of {n}", i + 1);
                assert_eq!(net.reroutes(), 0);
            } else {
                assert_eq!(net.reroutes(), 1, "the 32nd retransmitting flow reroutes");
                assert_ne!(port, PRIMARY, "and is itself sent to a backup");
                let (ev, _) = net.det.blink().events();
                let ev: Vec<_> = ev.collect();
                assert_eq!(ev.len(), 1);
                assert_eq!(ev[0].next_hop, 0);
                assert_eq!(ev[0].at, Timestamp(t));
                assert_eq!(ev[0].reason, DownReason::Retransmissions { flows: 32 });
            }
        }
        assert_eq!(net.state().window_sum(), n as u32);
        assert_eq!(net.reroutes(), u64::from(n == 32));
    }
}

#[test]
fn one_flow_retransmitting_a_hundred_times_counts_once() {
    let mut net = Net::new();
    let flows = sixty_four(&mut net);
    for k in 0..100u64 {
        assert_eq!(net.retransmit(&flows[7], (100 + k * 5) * MS), PRIMARY);
    }
    assert_eq!(net.state().window_sum(), 1);
    assert_eq!(net.state().stats().retransmissions, 100);
    // 31 others: 32 flows in all, and only now the reroute.
    for (i, f) in flows.iter().skip(8).take(30).enumerate() {
        net.retransmit(f, (600 + i as u64) * MS);
        assert_eq!(net.reroutes(), 0);
    }
    net.retransmit(&flows[50], 640 * MS);
    assert_eq!(net.reroutes(), 1);
}

#[test]
fn a_first_wave_ages_out_of_the_window() {
    let mut net = Net::new();
    let mut flows = net.distinct_flows(40);
    for (i, f) in flows.iter_mut().enumerate() {
        net.data(f, (500 + i as u64) * MS);
    }
    for f in &flows[..20] {
        net.retransmit(f, 1_000 * MS);
    }
    assert_eq!(net.state().window_sum(), 20);
    for f in &flows[20..] {
        assert_eq!(net.retransmit(f, 1_900 * MS), PRIMARY);
    }
    assert_eq!(net.reroutes(), 0, "the first wave aged out: 20, not 40");
    assert_eq!(net.state().window_sum(), 20);
}

#[test]
fn a_colliding_flow_waits_for_the_owners_idle_time() {
    let mut net = Net::new();
    let mut owner = net.distinct_flows(1)[0];
    let cell = net.cell(&owner);
    let mut other = (1u16..)
        .map(|k| Flow {
            src: Ipv4Addr::new(198, 51, 100, 7),
            sport: 20_000 + k,
            next: 5_000,
            last: 0,
        })
        .find(|f| net.cell(f) == cell)
        .unwrap();
    net.data(&mut owner, 0);
    net.data(&mut other, 1_500 * MS);
    assert_eq!(
        net.state().stats().refused,
        1,
        "refused at 1.5 s of idleness"
    );
    assert_eq!(net.state().stats().evicted, 0);
    net.data(&mut other, 2_100 * MS);
    assert_eq!(net.state().stats().evicted, 1, "taken at 2.1 s");
    assert_eq!(net.state().stats().flows_selected, 2);
    // The new owner's retransmissions count; the old owner's no longer do.
    net.retransmit(&owner, 2_200 * MS);
    assert_eq!(net.state().window_sum(), 0);
    net.retransmit(&other, 2_200 * MS);
    assert_eq!(net.state().window_sum(), 1);
}

#[test]
fn in_order_traffic_never_counts() {
    let mut net = Net::new();
    let mut flows = net.distinct_flows(64);
    for round in 0..200u64 {
        for (i, f) in flows.iter_mut().enumerate() {
            assert_eq!(net.data(f, round * 15 * MS + i as u64 * 100_000), PRIMARY);
        }
    }
    let st = net.state();
    assert_eq!(st.stats().retransmissions, 0);
    assert_eq!(st.window_sum(), 0);
    assert_eq!(net.reroutes(), 0);
    // Pure ACKs and SYNs repeat a sequence number without being retransmissions.
    let f = flows[0];
    for k in 0..50 {
        net.send_frame(frame(&f, f.next, 0, false, false), (3_100 + k) * MS);
        net.send_frame(frame(&f, 77, 0, false, true), (3_100 + k) * MS);
    }
    assert_eq!(net.state().stats().retransmissions, 0);
}

#[test]
fn a_fin_frees_the_cell_and_takes_its_count_along() {
    let mut net = Net::new();
    let mut flows = net.distinct_flows(2);
    net.data(&mut flows[0], 0);
    net.data(&mut flows[1], 0);
    net.retransmit(&flows[0], 100 * MS);
    assert_eq!(net.state().window_sum(), 1);
    net.fin(&mut flows[0], 150 * MS);
    assert_eq!(net.state().window_sum(), 0);
    assert_eq!(net.state().monitored(), 1);
    assert_eq!(net.state().stats().finished, 1);
}

/// After a reroute, flows of cells 0..32 go to backup 1 and the others to backup 2; at the end of the
/// second, a backup with fewer than 15 progressing flows is declared down.
#[test]
fn after_a_reroute_a_backup_without_progress_is_declared_down() {
    let mut net = Net::new();
    let mut flows = sixty_four(&mut net);
    for (i, f) in flows.iter().take(32).enumerate() {
        net.retransmit(f, (100 + i as u64) * MS);
    }
    assert_eq!(net.reroutes(), 1);
    let t0 = 131 * MS;
    assert_eq!(net.state().rerouted_at(), Some(Timestamp(t0)));
    let (low, high): (Vec<usize>, Vec<usize>) = (0..64).partition(|&i| net.cell(&flows[i]) < 32);
    assert_eq!((low.len(), high.len()), (32, 32));
    // 10 flows make progress on backup 1, 20 on backup 2.
    for &i in low.iter().take(10) {
        assert_eq!(net.data(&mut flows[i], t0 + 200 * MS), BACKUP1);
    }
    for &i in high.iter().take(20) {
        assert_eq!(net.data(&mut flows[i], t0 + 300 * MS), BACKUP2);
    }
    // Progress counts once per flow.
    net.data(&mut flows[low[0]], t0 + 400 * MS);
    assert_eq!(net.state().progressing(), [10, 20]);
    // After the second: backup 1 is down, backup 2 kept; everything of the prefix takes backup 2.
    let port = net.data(&mut flows[low[20]], t0 + 1_001 * MS);
    assert_eq!(net.state().up(), [false, false, true]);
    let (ev, _) = net.det.blink().events();
    let ev: Vec<_> = ev.copied().collect();
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[1].next_hop, 1);
    assert_eq!(ev[1].reason, DownReason::NotProgressing { flows: 10 });
    assert_eq!(port, BACKUP2);
    for &i in low.iter().chain(high.iter()).take(40) {
        assert_eq!(net.data(&mut flows[i], t0 + 1_100 * MS), BACKUP2);
    }
    // The controller's reset brings the primary back.
    net.det.write_handler("reset", "10.1.0.0/16").unwrap();
    assert_eq!(net.data(&mut flows[0], t0 + 1_200 * MS), PRIMARY);
}

#[test]
fn a_flows_fourth_retransmission_on_a_backup_declares_it_down() {
    let mut net = Net::new();
    let mut flows = sixty_four(&mut net);
    for (i, f) in flows.iter().take(32).enumerate() {
        net.retransmit(f, (100 + i as u64) * MS);
    }
    let t0 = 131 * MS;
    let i = (0..64)
        .find(|&i| net.cell(&flows[i]) < 32 && i != 31)
        .unwrap();
    net.data(&mut flows[i], t0 + 10 * MS);
    for k in 1..=3 {
        assert_eq!(net.retransmit(&flows[i], t0 + (10 + k * 50) * MS), BACKUP1);
        assert!(net.state().up()[1], "still up after {k}");
    }
    net.retransmit(&flows[i], t0 + 300 * MS);
    assert!(!net.state().up()[1], "the 4th declares backup 1 down");
    // Its flows now go to backup 2.
    assert_eq!(net.data(&mut flows[i], t0 + 350 * MS), BACKUP2);
}

#[test]
fn other_traffic_and_other_prefixes() {
    let mut net = Net::new();
    // Not monitored: unmatched output.
    let mut v = Vec::new();
    PacketBuilder::ethernet2([2; 6], [3; 6])
        .ipv4([1, 1, 1, 1], [8, 8, 8, 8], 64)
        .udp(1, 2)
        .write(&mut v, b"x")
        .unwrap();
    assert_eq!(net.send_frame(v, 0), UNMATCHED);
    assert_eq!(net.send_frame(vec![0u8; 10], 0), UNMATCHED, "garbage");
    // UDP to the prefix: the current next hop.
    let mut v = Vec::new();
    PacketBuilder::ethernet2([2; 6], [3; 6])
        .ipv4([1, 1, 1, 1], DST.octets(), 64)
        .udp(1, 2)
        .write(&mut v, b"x")
        .unwrap();
    assert_eq!(net.send_frame(v, 0), PRIMARY);
    assert_eq!(net.det.read_handler("unmatched").unwrap(), "2");
}

#[test]
fn configured_from_text() {
    let reg = nf_core::Registry::standard();
    let ok = "Idle -> b :: BlinkDetector(PREFIX 10.0.0.0/8 1 2 3, PREFIX 2001:db8::/32 1 2 3, \
              THRESHOLD 20, BIN_MS 50);
              b[0] -> Discard; b[1] -> Discard; b[2] -> Discard; b[3] -> Discard;";
    assert_eq!(nf_core::testing::check_config(&reg, "t", ok), None);
    for (text, want) in [
        (
            "Idle -> b :: BlinkDetector(PREFIX 10.0.0.0/8 1 2) -> Discard;",
            "expected PREFIX",
        ),
        (
            "Idle -> b :: BlinkDetector(PREFIX 10.0.0.0/40 0 0 0) -> Discard;",
            "too long",
        ),
        (
            "Idle -> b :: BlinkDetector(THRESHOLD 3) -> Discard;",
            "at least one PREFIX",
        ),
        (
            "Idle -> b :: BlinkDetector(PREFIX 10.0.0.0/8 0 1 2) -> Discard;",
            "next hop 2 is not connected",
        ),
    ] {
        let e = nf_core::testing::check_config(&reg, "t", text).unwrap();
        assert!(e.contains(want), "{text}: {e}");
    }
}

/// Timestamps that go backwards (captures merged out of order) are no panic and no false reroute.
#[test]
fn time_going_backwards_is_harmless() {
    let mut net = Net::new();
    let flows = sixty_four(&mut net);
    for (i, f) in flows.iter().take(32).enumerate() {
        net.retransmit(f, (100 + i as u64) * MS);
    }
    assert_eq!(net.reroutes(), 1);
    // Now packets from the past, and from before the reroute.
    for (i, f) in flows.iter().enumerate() {
        net.retransmit(f, (50 - (i as u64 % 50)) * MS);
        net.retransmit(f, 0);
    }
    assert_eq!(net.reroutes(), 1);
}
