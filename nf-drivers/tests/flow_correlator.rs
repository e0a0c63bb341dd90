//! SIMPLE's `FlowCorrelator` on a synthetic trace of a proxy: 200 clients send HTTP requests to a virtual
//! address; the proxy terminates TCP and opens its own connections to the servers (new addresses, ports
//! and sequence numbers, other segment sizes) and adds an `X-Forwarded-For` line to each request (so the
//! payload shifts). Every flow leaving the proxy must be linked to the flow that entered it.

use etherparse::PacketBuilder;
use nf_core::element::Element;
use nf_core::{Batch, FlowKey, Outputs, Packet, Timestamp};
use nf_drivers::observe::FlowCorrelator;
use std::net::Ipv4Addr;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn text(&mut self, n: usize) -> Vec<u8> {
        const A: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 =&";
        (0..n)
            .map(|_| A[(self.next() % A.len() as u64) as usize])
            .collect()
    }
}

#[derive(Clone, Copy)]
struct End {
    ip: Ipv4Addr,
    port: u16,
}

fn seg(from: End, to: End, seq: u32, flags: &str, payload: &[u8]) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(from.ip.octets(), to.ip.octets(), 64)
        .tcp(from.port, to.port, seq, 65000);
    if flags.contains('S') {
        b = b.syn();
    }
    if flags.contains('A') {
        b = b.ack(1);
    }
    if flags.contains('F') {
        b = b.fin();
    }
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

/// A TCP connection's packets: handshake, `req` from a to b in segments of `mss_a`, `resp` back in
/// segments of `mss_b`, starting at time `t` (ns), 100 µs apart.
#[allow(clippy::too_many_arguments)]
fn connection(
    a: End,
    b: End,
    isn: (u32, u32),
    req: &[u8],
    resp: &[u8],
    mss: (usize, usize),
    mut t: u64,
    out: &mut Vec<(u64, Vec<u8>)>,
) {
    let mut push = |f: Vec<u8>, out: &mut Vec<(u64, Vec<u8>)>| {
        out.push((t, f));
        t += 100_000;
    };
    push(seg(a, b, isn.0, "S", b""), out);
    push(seg(b, a, isn.1, "SA", b""), out);
    push(seg(a, b, isn.0 + 1, "A", b""), out);
    let mut s = isn.0 + 1;
    for c in req.chunks(mss.0) {
        push(seg(a, b, s, "A", c), out);
        s += c.len() as u32;
    }
    let mut r = isn.1 + 1;
    for c in resp.chunks(mss.1) {
        push(seg(b, a, r, "A", c), out);
        r += c.len() as u32;
    }
    push(seg(a, b, s, "AF", b""), out);
    push(seg(b, a, r, "AF", b""), out);
}

fn canonical(a: End, b: End) -> FlowKey {
    FlowKey::new(6, a.ip.into(), a.port, b.ip.into(), b.port)
        .canonical()
        .0
}

type Trace = (Vec<(u64, usize, Vec<u8>)>, Vec<(FlowKey, FlowKey)>);

/// The proxy's trace: (time, side, frame) in time order, and the (entering, leaving) pairs.
fn trace() -> Trace {
    let mut rng = Rng(7);
    let vip = End {
        ip: Ipv4Addr::new(192, 0, 2, 10),
        port: 80,
    };
    let proxy = Ipv4Addr::new(10, 9, 0, 1);
    let (mut outside, mut inside) = (Vec::new(), Vec::new());
    let mut want = Vec::new();
    for i in 0..200u32 {
        let c = End {
            ip: Ipv4Addr::new(10, 0, (i / 250) as u8, (i % 250) as u8 + 1),
            port: 30_000 + i as u16,
        };
        let p = End {
            ip: proxy,
            port: 50_000 + ((i * 7919) % 10_000) as u16,
        };
        let s = End {
            ip: Ipv4Addr::new(10, 8, 0, (i % 4) as u8 + 1),
            port: 8080,
        };
        let n = 400 + (rng.next() % 1000) as usize;
        let body = rng.text(n);
        let line = format!("POST /item/{i} HTTP/1.1\r\n");
        let headers = format!(
            "Host: shop.example\r\nContent-Length: {}\r\nCookie: sid={}\r\n\r\n",
            body.len(),
            String::from_utf8(rng.text(24)).unwrap()
        );
        let req: Vec<u8> = [line.as_bytes(), headers.as_bytes(), &body].concat();
        // The proxy adds a header after the request line: everything after it shifts.
        let xff = format!("X-Forwarded-For: {}\r\n", c.ip);
        let req2: Vec<u8> = [line.as_bytes(), xff.as_bytes(), headers.as_bytes(), &body].concat();
        let resp = [b"HTTP/1.1 200 OK\r\n\r\n".as_slice(), &rng.text(800)].concat();
        let t = u64::from(i) * 1_000_000;
        let isn = (rng.next() as u32, rng.next() as u32);
        connection(c, vip, isn, &req, &resp, (536, 1400), t, &mut outside);
        let isn2 = (rng.next() as u32, rng.next() as u32);
        connection(
            p,
            s,
            isn2,
            &req2,
            &resp,
            (1000, 1200),
            t + 2_000_000,
            &mut inside,
        );
        want.push((canonical(c, vip), canonical(p, s)));
    }
    let mut all: Vec<(u64, usize, Vec<u8>)> = outside
        .into_iter()
        .map(|(t, f)| (t, 0, f))
        .chain(inside.into_iter().map(|(t, f)| (t, 1, f)))
        .collect();
    all.sort_by_key(|x| x.0);
    (all, want)
}

#[test]
fn every_flow_through_a_header_rewriting_proxy_is_linked() {
    let (all, want) = trace();
    let mut fc = FlowCorrelator::new(Default::default(), Default::default());
    let mut passed = [0usize; 2];
    for (t, side, f) in all {
        let mut b = Batch::new();
        let mut p = Packet::from_slice(&f);
        p.anno.timestamp = Timestamp(t);
        b.push(p);
        let mut out = Outputs::new(2);
        fc.push(side, &mut b, &mut out);
        passed[side] += out.port(side).len();
    }
    let links: Vec<_> = fc.links().copied().collect();
    let mut right = 0;
    for (o, i) in &want {
        if links.iter().any(|l| l.entering == *o && l.leaving == *i) {
            right += 1;
        }
    }
    let wrong = links
        .iter()
        .filter(|l| !want.contains(&(l.entering, l.leaving)))
        .count();
    eprintln!(
        "FlowCorrelator: {right} of {} flows linked correctly, {wrong} wrong links, stats {:?}",
        want.len(),
        fc.correlator().stats()
    );
    assert_eq!(right, 200, "100% of the proxy's flows correlated");
    assert_eq!(wrong, 0);
    assert_eq!(fc.read_handler("linked").unwrap(), "200");
    assert!(passed[0] > 0 && passed[1] > 0, "packets pass through");
}

#[test]
fn configured_from_text() {
    let reg = nf_drivers::registry();
    let ok = "Idle -> fc :: FlowCorrelator(WINDOW_MS 500, CHUNK 32) -> Discard; Idle -> [1]fc[1] -> Discard;";
    assert_eq!(nf_core::testing::check_config(&reg, "t", ok), None);
    let bad = "Idle -> fc :: FlowCorrelator(CHUNK 48) -> Discard; Idle -> [1]fc[1] -> Discard;";
    let e = nf_core::testing::check_config(&reg, "t", bad).unwrap();
    assert!(e.contains("power of two"), "{e}");
}

/// The control: the observation driver's header invariants (sequence numbers, IP IDs) cannot see through a
/// box that terminates TCP; payload chunks can.
#[test]
fn header_invariants_alone_link_nothing_through_a_proxy() {
    use nf_drivers::observe::{Correlator, ObserveConfig, Side};
    let (all, _) = trace();
    let mut c = Correlator::new(ObserveConfig::default());
    let mut out = Vec::new();
    for (t, side, f) in &all {
        let side = if *side == 0 {
            Side::Outside
        } else {
            Side::Inside
        };
        c.packet(side, *t, f, true, &mut out);
    }
    assert_eq!(c.stats().matched, 0);
}
