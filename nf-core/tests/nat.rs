//! The `IPRewriter` element (NAPT): Click's input specs, source and destination NAT both ways with valid
//! checksums, unique bindings, paired expiry, a bounded table, state reported to a sink, a minion's
//! installs.

#[path = "support/frames.rs"]
mod frames;

use frames::addrs;
use nf_core::element::Element;
use nf_core::elements::nat::{FlowId, IPRewriter, InputSpec, RwInstall};
use nf_core::state::{ChangeKind, StateChange, Stateful};
use nf_core::{Batch, Outputs, Packet, Timestamp};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

const S: u64 = 1_000_000_000;

fn frame(proto: &str, src: &str, sport: u16, dst: &str, dport: u16, flags: &str) -> Vec<u8> {
    frames::frame(proto, src, sport, dst, dport, flags, 1)
}

fn tcp(src: &str, sport: u16, dst: &str, dport: u16, flags: &str) -> Vec<u8> {
    frame("tcp", src, sport, dst, dport, flags)
}

/// Pushes one frame into `port`; what came out of each of the two outputs.
fn push(rw: &mut IPRewriter, port: usize, frame: Vec<u8>, t: u64) -> [Vec<Vec<u8>>; 2] {
    let mut p = Packet::from_slice(&frame);
    p.anno.timestamp = Timestamp(t);
    let mut b = Batch::new();
    b.push(p);
    let mut out = Outputs::new(2);
    rw.push(port, &mut b, &mut out);
    let mut take =
        |i: usize| -> Vec<Vec<u8>> { out.port(i).drain().map(|p| p.data().to_vec()).collect() };
    [take(0), take(1)]
}

fn napt(pattern: &str) -> IPRewriter {
    IPRewriter::new(vec![
        InputSpec::parse(&format!("pattern {pattern} 0 1")).unwrap(),
        InputSpec::parse("drop").unwrap(),
    ])
    .seed(7)
}

#[test]
fn source_nat_rewrites_both_ways_with_valid_checksums() {
    let mut rw = napt("192.0.2.1 1024-65535# - -");
    let [fwd, _] = push(&mut rw, 0, tcp("10.0.0.5", 40000, "10.1.0.3", 80, "S"), S);
    let (src, sport, dst, dport) = addrs(&fwd[0]);
    assert_eq!((src.as_str(), sport), ("192.0.2.1", 1024));
    assert_eq!((dst.as_str(), dport), ("10.1.0.3", 80));
    // The server's answer to the translated address comes back to the client on output 1.
    let [_, back] = push(&mut rw, 1, tcp("10.1.0.3", 80, "192.0.2.1", 1024, "SA"), S);
    assert_eq!(
        addrs(&back[0]),
        ("10.1.0.3".into(), 80, "10.0.0.5".into(), 40000)
    );
    // A reply to a port nobody holds is dropped on the drop input.
    let [a, b] = push(&mut rw, 1, tcp("10.1.0.3", 80, "192.0.2.1", 1999, "A"), S);
    assert!(a.is_empty() && b.is_empty());
    assert_eq!(rw.read_handler("dropped").unwrap(), "1");
    // The flow's next packets keep their port.
    let [fwd, _] = push(&mut rw, 0, tcp("10.0.0.5", 40000, "10.1.0.3", 80, "A"), S);
    assert_eq!(addrs(&fwd[0]).1, 1024);
    assert_eq!(rw.read_handler("size").unwrap(), "1");
    assert_eq!(rw.read_handler("table_size").unwrap(), "2");
    assert!(
        rw.read_handler("tcp_table")
            .unwrap()
            .contains("(10.0.0.5, 40000, 10.1.0.3, 80) => (192.0.2.1, 1024, 10.1.0.3, 80) [0]")
    );
}

#[test]
fn udp_is_translated_and_checksums_stay_valid() {
    let mut rw = napt("192.0.2.1 5000-5009# - -");
    let [fwd, _] = push(
        &mut rw,
        0,
        frame("udp", "10.0.0.7", 5353, "10.1.0.3", 53, ""),
        S,
    );
    assert_eq!(
        addrs(&fwd[0]),
        ("192.0.2.1".into(), 5000, "10.1.0.3".into(), 53)
    );
    let [_, back] = push(
        &mut rw,
        1,
        frame("udp", "10.1.0.3", 53, "192.0.2.1", 5000, ""),
        S,
    );
    assert_eq!(
        addrs(&back[0]),
        ("10.1.0.3".into(), 53, "10.0.0.7".into(), 5353)
    );
}

#[test]
fn bindings_are_unique_and_a_port_serves_distinct_destinations() {
    // The packet's own source port is preferred when free (Click's default).
    let mut rw = napt("192.0.2.1 1024-65535 - -");
    let [a, _] = push(&mut rw, 0, tcp("10.0.0.5", 40000, "10.1.0.3", 80, "S"), S);
    let [b, _] = push(&mut rw, 0, tcp("10.0.0.6", 40000, "10.1.0.3", 80, "S"), S);
    let [c, _] = push(&mut rw, 0, tcp("10.0.0.6", 40000, "10.1.0.4", 80, "S"), S);
    let (pa, pb, pc) = (addrs(&a[0]).1, addrs(&b[0]).1, addrs(&c[0]).1);
    assert_eq!(pa, 40000);
    assert_ne!(pb, pa, "two clients to one server share no port");
    assert_eq!(
        pc, 40000,
        "another destination may reuse the port (the five-tuple stays unique)"
    );
    // A range of two ports to one server: the third flow finds no port and is dropped.
    let mut rw = napt("192.0.2.1 7000-7001# - -");
    for (i, c) in ["10.0.0.1", "10.0.0.2"].iter().enumerate() {
        let [f, _] = push(&mut rw, 0, tcp(c, 1000, "10.1.0.3", 80, "S"), S);
        assert_eq!(addrs(&f[0]).1, 7000 + i as u16);
    }
    let [f, _] = push(&mut rw, 0, tcp("10.0.0.3", 1000, "10.1.0.3", 80, "S"), S);
    assert!(f.is_empty());
    assert_eq!(rw.read_handler("mapping_failures").unwrap(), "1");
}

#[test]
fn destination_nat_and_keep_and_pass() {
    let mut rw = IPRewriter::new(vec![
        InputSpec::parse("pattern - - 10.1.0.5 8080 0 1").unwrap(),
        InputSpec::parse("pass 1").unwrap(),
    ]);
    let [f, _] = push(&mut rw, 0, tcp("10.0.0.5", 40000, "10.0.0.100", 80, "S"), S);
    assert_eq!(
        addrs(&f[0]),
        ("10.0.0.5".into(), 40000, "10.1.0.5".into(), 8080)
    );
    let [_, r] = push(
        &mut rw,
        1,
        tcp("10.1.0.5", 8080, "10.0.0.5", 40000, "SA"),
        S,
    );
    assert_eq!(
        addrs(&r[0]),
        ("10.0.0.100".into(), 80, "10.0.0.5".into(), 40000)
    );
    // No mapping on a pass input: sent on unchanged.
    let [_, r] = push(&mut rw, 1, tcp("10.1.0.9", 1, "10.0.0.9", 2, "A"), S);
    assert_eq!(addrs(&r[0]), ("10.1.0.9".into(), 1, "10.0.0.9".into(), 2));
    let mut rw = IPRewriter::new(vec![InputSpec::parse("keep 0 1").unwrap()]);
    let [f, _] = push(&mut rw, 0, tcp("10.0.0.5", 1, "10.1.0.5", 2, "S"), S);
    assert_eq!(addrs(&f[0]), ("10.0.0.5".into(), 1, "10.1.0.5".into(), 2));
    let [_, r] = push(&mut rw, 0, tcp("10.1.0.5", 2, "10.0.0.5", 1, "SA"), S);
    assert_eq!(r.len(), 1, "the reply mapping sends replies to ROUTPUT");
}

#[test]
fn a_flow_lives_while_either_direction_is_fresh_and_closes_with_its_fins() {
    let mut rw = napt("192.0.2.1 1024-65535# - -").timeouts(
        std::time::Duration::from_secs(100),
        std::time::Duration::from_secs(5),
        std::time::Duration::from_secs(10),
        std::time::Duration::from_secs(30),
    );
    push(&mut rw, 0, tcp("10.0.0.5", 40000, "10.1.0.3", 80, "S"), S);
    push(&mut rw, 1, tcp("10.1.0.3", 80, "192.0.2.1", 1024, "SA"), S);
    push(&mut rw, 0, tcp("10.0.0.5", 40000, "10.1.0.3", 80, "A"), S);
    // Only the server sends for 150 s (a download whose ACKs we leave out): both mappings stay.
    for t in (10..160).step_by(10) {
        let [_, r] = push(
            &mut rw,
            1,
            tcp("10.1.0.3", 80, "192.0.2.1", 1024, "A"),
            t * S,
        );
        assert_eq!(r.len(), 1, "reply at {t} s");
    }
    let [f, _] = push(
        &mut rw,
        0,
        tcp("10.0.0.5", 40000, "10.1.0.3", 80, "A"),
        160 * S,
    );
    assert_eq!(
        addrs(&f[0]).1,
        1024,
        "the forward mapping outlived its own timeout"
    );
    // FIN both ways: the pair goes after TCP_DONE_TIMEOUT.
    push(
        &mut rw,
        0,
        tcp("10.0.0.5", 40000, "10.1.0.3", 80, "FA"),
        161 * S,
    );
    push(
        &mut rw,
        1,
        tcp("10.1.0.3", 80, "192.0.2.1", 1024, "FA"),
        161 * S,
    );
    // Another flow's packets at 170 s drive the sweep (8 slots a batch: the table's 1,024 slots
    // and more).
    for _ in 0..300 {
        push(
            &mut rw,
            0,
            frame("udp", "10.0.0.9", 9, "10.1.0.9", 9, ""),
            170 * S,
        );
    }
    assert!(rw.lookup(&id("10.0.0.5:40000", "10.1.0.3:80")).is_none());
    assert!(rw.lookup(&id("10.1.0.3:80", "192.0.2.1:1024")).is_none());
    assert_eq!(rw.read_handler("size").unwrap(), "1");
}

fn id(src: &str, dst: &str) -> FlowId {
    let (IpAddr::V4(_), IpAddr::V4(_)) = (
        src.parse::<std::net::SocketAddr>().unwrap().ip(),
        dst.parse::<std::net::SocketAddr>().unwrap().ip(),
    ) else {
        panic!("IPv4")
    };
    FlowId::new(6, src.parse().unwrap(), dst.parse().unwrap())
}

#[test]
fn a_full_table_evicts_whole_flows() {
    let mut rw = napt("192.0.2.1 1024-65535# - -").capacity(10);
    for i in 0..200u16 {
        push(
            &mut rw,
            0,
            tcp("10.0.0.5", 1000 + i, "10.1.0.3", 80, "S"),
            S + u64::from(i),
        );
    }
    let n: usize = rw.read_handler("table_size").unwrap().parse().unwrap();
    assert!(n <= 2 * 16, "{n} mappings");
    // Every flow left has both its mappings.
    let flows = rw.flows();
    assert!(!flows.is_empty());
    for (from, to) in &flows {
        let back = rw.lookup(&to.reversed()).expect("reply mapping");
        assert_eq!(back.rewritten(&to.reversed()), from.reversed());
    }
    assert_eq!(n, 2 * flows.len());
}

#[test]
fn mappings_are_reported_and_a_minion_installs_the_primarys_ports() {
    type Seen = Arc<Mutex<Vec<(ChangeKind, FlowId, bool)>>>;
    let seen: Seen = Arc::default();
    let s2 = seen.clone();
    let mut rw = napt("192.0.2.1 1024-65535 - -");
    rw.table_mut()
        .set_sink(Box::new(move |c: &StateChange<'_, FlowId, _>| {
            let m: &nf_core::elements::nat::Mapping = c.value;
            s2.lock().unwrap().push((c.kind, *c.key, m.is_reply()));
        }));
    push(&mut rw, 0, tcp("10.0.0.5", 40000, "10.1.0.3", 80, "S"), S);
    {
        let s = seen.lock().unwrap();
        assert_eq!(s.len(), 2);
        assert!(s.iter().all(|x| x.0 == ChangeKind::Insert));
        assert_eq!(s.iter().filter(|x| !x.2).count(), 1, "one forward mapping");
    }
    // The minion: installs the box's binding (its port 31337), then serves both directions.
    let mut minion = napt("192.0.2.1 1024-65535 - -");
    let tx = minion.installer().unwrap();
    assert!(minion.installer().is_none());
    let flow = id("10.0.0.5:40000", "10.1.0.3:80");
    tx.install(RwInstall::Set(flow, id("192.0.2.1:31337", "10.1.0.3:80")))
        .unwrap();
    let [f, _] = push(
        &mut minion,
        0,
        tcp("10.0.0.5", 40000, "10.1.0.3", 80, "A"),
        S,
    );
    assert_eq!(
        addrs(&f[0]),
        ("192.0.2.1".into(), 31337, "10.1.0.3".into(), 80)
    );
    let [_, r] = push(
        &mut minion,
        1,
        tcp("10.1.0.3", 80, "192.0.2.1", 31337, "A"),
        S,
    );
    assert_eq!(
        addrs(&r[0]),
        ("10.1.0.3".into(), 80, "10.0.0.5".into(), 40000)
    );
    assert_eq!(minion.read_handler("installed").unwrap(), "1");
    assert_eq!(minion.read_handler("unknown_tcp").unwrap(), "0");
    // A mid-stream packet of a flow nobody installed is mapped anew (counted: its state was lost).
    push(
        &mut minion,
        0,
        tcp("10.0.0.8", 40000, "10.1.0.3", 80, "A"),
        S,
    );
    assert_eq!(minion.read_handler("unknown_tcp").unwrap(), "1");
    tx.install(RwInstall::Remove(flow)).unwrap();
    push(
        &mut minion,
        1,
        tcp("10.1.0.3", 80, "192.0.2.1", 31337, "A"),
        S,
    );
    assert!(minion.lookup(&flow).is_none());
    assert!(
        minion
            .lookup(&id("10.1.0.3:80", "192.0.2.1:31337"))
            .is_none()
    );
}

#[test]
fn configuration_errors_name_the_spec() {
    let reg = nf_core::registry::Registry::standard();
    let err = nf_core::testing::check_config(
        &reg,
        "t",
        "Idle -> rw :: IPRewriter(pattern 1.2.3.4 99-9 - - 0 1, drop) -> Discard; Idle -> [1]rw[1] -> Discard;",
    )
    .unwrap();
    assert!(err.contains("port range"), "{err}");
    assert!(err.contains("1:"), "line and column: {err}");
    let ok = nf_core::testing::check_config(
        &reg,
        "t",
        "Idle -> rw :: IPRewriter(pattern 1.2.3.4 1024-65535 - - 0 1, drop, TCP_TIMEOUT 60, REAP_INTERVAL 10) -> Discard; Idle -> [1]rw[1] -> Discard;",
    );
    assert!(ok.is_none(), "{ok:?}");
}

#[test]
fn a_syn_restarts_a_closed_flow_but_not_an_established_one() {
    use nf_core::elements::tcpudp::closing::ESTABLISHED;
    let mut rw = napt("192.0.2.1 1024-65535# - -");
    let flow = id("10.0.0.5:40000", "10.1.0.3:80");
    push(&mut rw, 0, tcp("10.0.0.5", 40000, "10.1.0.3", 80, "S"), S);
    assert_eq!(
        rw.lookup(&flow).unwrap().closing() & ESTABLISHED,
        0,
        "probation"
    );
    push(&mut rw, 0, tcp("10.0.0.5", 40000, "10.1.0.3", 80, "A"), S);
    let established = |rw: &IPRewriter| rw.lookup(&flow).unwrap().closing() & ESTABLISHED != 0;
    assert!(established(&rw));
    // Both directions know it (the reply mapping was told once).
    let reply = rw.lookup(&id("10.1.0.3:80", "192.0.2.1:1024")).unwrap();
    assert_ne!(reply.closing() & ESTABLISHED, 0);
    // A stray SYN on an established flow changes nothing.
    push(&mut rw, 0, tcp("10.0.0.5", 40000, "10.1.0.3", 80, "S"), S);
    assert!(established(&rw));
    // Closed both ways, then the port reused: the same binding, on probation again.
    push(&mut rw, 0, tcp("10.0.0.5", 40000, "10.1.0.3", 80, "FA"), S);
    push(&mut rw, 1, tcp("10.1.0.3", 80, "192.0.2.1", 1024, "FA"), S);
    let [f, _] = push(&mut rw, 0, tcp("10.0.0.5", 40000, "10.1.0.3", 80, "S"), S);
    assert_eq!(addrs(&f[0]).1, 1024);
    assert_eq!(rw.lookup(&flow).unwrap().closing(), 0);
}
