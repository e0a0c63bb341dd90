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

// ---- Hostile traffic: malformed and adversarial frames through the stateful and tunnel elements ----

use etherparse::PacketBuilder;
use nf_core::Element;
use nf_core::elements::lb::{AnantaMux, LoadBalancer};
use nf_core::elements::standard::Idle;
use nf_core::elements::tunnel::{Tunnel, TunnelDecap, TunnelEncap, TunnelMode};

const VIP: [u8; 4] = [192, 168, 0, 1];

fn tcp(client: u32, port: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(client.to_be_bytes(), VIP, 64)
        .tcp(port, 80, 1000, 64_000);
    let b = if flags & 2 != 0 { b.syn() } else { b.ack(1) };
    let b = if flags & 1 != 0 { b.fin() } else { b };
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

/// Valid packets of 500 clients (SYN, then data) interleaved with every kind of malformed or hostile
/// frame: truncations at every layer, bad versions and lengths, options that run past the header,
/// fragments, non-IP frames, truncated VLAN tags and IPv6 extension headers, tunnels with broken inner
/// packets, spoofed one-packet flows.
fn hostile_frames() -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    for c in 0..500u32 {
        let client = 0x0A00_0000 | c;
        let port = 1024 + c as u16;
        frames.push(tcp(client, port, 2, b""));
        let good = tcp(client, port, 0, b"hello");
        frames.push(good.clone());
        // Truncated at every 7th byte.
        for cut in (1..good.len()).step_by(7) {
            frames.push(good[..cut].to_vec());
        }
        // IP version 7; IHL 15 in a short header; IHL 2; total length past the frame; total 0.
        for (at, val) in [
            (14, 0x75u8),
            (14, 0x4f),
            (14, 0x42),
            (16, 0x7f),
            (16, 0),
            (17, 0),
        ] {
            let mut f = good.clone();
            f[at] = val;
            frames.push(f);
        }
        // A fragment (MF) and a later fragment (offset 8).
        let mut f = good.clone();
        f[20] = 0x20;
        frames.push(f);
        let mut f = good.clone();
        f[21] = 1;
        frames.push(f);
        // TCP data offset 15 (options past the packet), and 0.
        let mut f = good.clone();
        f[46] = 0xf0;
        frames.push(f);
        let mut f = good.clone();
        f[46] = 0x00;
        frames.push(f);
        // Not IP: ARP; an unknown EtherType; a VLAN tag cut short; QinQ with an IPv4 header cut.
        let mut f = good.clone();
        f[12..14].copy_from_slice(&[0x08, 0x06]);
        frames.push(f);
        let mut f = good.clone();
        f[12..14].copy_from_slice(&[0x88, 0xb5]);
        frames.push(f);
        let mut f = good[..14].to_vec();
        f[12..14].copy_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&[0x00]);
        frames.push(f);
        let mut f = good[..12].to_vec();
        f.extend_from_slice(&[0x88, 0xa8, 0, 1, 0x81, 0, 0, 2, 0x08, 0x00, 0x45, 0]);
        frames.push(f);
        // IPv6 with a hop-by-hop header that runs past the packet, and a bare IPv6 header.
        let mut f = good[..12].to_vec();
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, 16, 0, 64]);
        f.extend_from_slice(&[0xfe; 32]);
        f.extend_from_slice(&[6, 5, 0, 0]);
        frames.push(f.clone());
        frames.push(f[..30].to_vec());
        // GRE and IP-in-IP to the VIP whose inner packet is cut or not IP.
        for proto in [47u8, 4] {
            let mut f = good.clone();
            f[23] = proto;
            frames.push(f);
        }
        // A spoofed one-packet flow (data without a SYN), and a FIN.
        frames.push(tcp(0x0B00_0000 | c, 40_000, 0, b"x"));
        frames.push(tcp(client, port, 1, b""));
    }
    frames
}

/// Pushes 100,000 hostile packets through `e` (after a warm-up of two passes over the frames) and returns
/// the allocations counted meanwhile, with the router (to read the element's counters, `e`). Every output
/// goes to a `Discard`; a second input, if any, is idle.
fn allocations_with<E: Element>(e: E, inputs: usize, outputs: usize) -> (u64, Router) {
    let frames = hostile_frames();
    let n = frames.len() as u64;
    let mut g = Graph::new();
    let src = g.add("src", Replay::from_frames(&frames).limit(u64::MAX));
    let el = g.add("e", e);
    g.connect(src.id(), 0, el.id(), 0);
    for i in 1..inputs {
        let idle = g.add(&format!("idle{i}"), Idle);
        g.connect(idle.id(), 0, el.id(), i);
    }
    for o in 0..outputs {
        let d = g.add(&format!("d{o}"), Discard::new());
        g.connect(el.id(), o, d.id(), 0);
    }
    let mut r = Router::new(g).unwrap();
    nf_core::pool::prefill(1024);
    count_allocs_over(&mut r, src, 2 * n);
    (count_allocs_over(&mut r, src, 100_000), r)
}

fn handler(r: &Router, h: &str) -> u64 {
    r.read_handler("e", h).unwrap().parse().unwrap()
}

#[test]
fn the_load_balancer_allocates_nothing_under_hostile_traffic() {
    let lb = LoadBalancer::new(
        "192.168.0.1:80".parse().unwrap(),
        vec![
            "10.1.0.1:8080".parse().unwrap(),
            "10.1.0.2:8080".parse().unwrap(),
        ],
    );
    let (n, r) = allocations_with(lb, 2, 3);
    assert_eq!(n, 0);
    // The traffic reached it: flows balanced, hostile frames refused, spoofed flows adopted.
    assert!(handler(&r, "new_flows") >= 500);
    assert!(
        handler(&r, "not_vip") > 50_000,
        "{}",
        handler(&r, "not_vip")
    );
    assert!(handler(&r, "unknown") >= 500);
}

#[test]
fn the_mux_allocates_nothing_under_hostile_traffic() {
    let mux = AnantaMux::new(
        "192.168.0.1:80".parse().unwrap(),
        "10.9.9.9".parse().unwrap(),
        vec!["10.2.0.1".parse().unwrap(), "10.2.0.2".parse().unwrap()],
    );
    let (n, r) = allocations_with(mux, 1, 2);
    assert_eq!(n, 0);
    assert!(handler(&r, "encapsulated") > 1000);
    assert!(
        handler(&r, "not_vip") > 50_000,
        "{}",
        handler(&r, "not_vip")
    );
}

#[test]
fn the_nat_allocates_nothing_under_hostile_traffic() {
    use nf_core::elements::nat::{IPRewriter, InputSpec};
    let rw = IPRewriter::new(vec![
        InputSpec::parse("pattern 192.0.2.1 1024-65535 - - 0 1").unwrap(),
        InputSpec::parse("drop").unwrap(),
    ]);
    let (n, r) = allocations_with(rw, 2, 2);
    assert_eq!(n, 0);
    // The traffic reached it: flows mapped and rewritten, hostile frames refused.
    assert!(handler(&r, "size") >= 1000, "{:?}", r.handlers());
    assert!(handler(&r, "rewritten") > 10_000, "{:?}", r.handlers());
    assert!(handler(&r, "not_tcp_udp") > 10_000, "{:?}", r.handlers());
}

#[test]
fn the_connection_tracker_allocates_nothing_under_hostile_traffic() {
    let (n, r) = allocations_with(ConnTrack::new(65_536), 1, 2);
    assert_eq!(n, 0);
    assert!(handler(&r, "flows") >= 500, "{:?}", r.handlers());
}

#[test]
fn the_tunnel_elements_allocate_nothing_under_hostile_traffic() {
    for mode in [
        TunnelMode::Gre,
        TunnelMode::IpIp,
        TunnelMode::Vxlan { vni: 7 },
    ] {
        let t = Tunnel::new(
            mode,
            "192.0.2.1".parse().unwrap(),
            "198.51.100.1".parse().unwrap(),
        );
        assert_eq!(
            allocations_with(TunnelEncap::new(t), 1, 2).0,
            0,
            "{mode:?} encap"
        );
        assert_eq!(
            allocations_with(TunnelDecap::new(mode, true), 1, 2).0,
            0,
            "{mode:?} decap"
        );
    }
}
