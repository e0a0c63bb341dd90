//! The observation driver's correlator on synthetic traces of a simulated box (a DNAT balancer, a NAPT
//! box, one that does both), with the adversarial cases: many clients behind one address, port reuse,
//! simultaneous SYNs, retransmitted SYNs, packets reordered across the taps, one tap missing packets, a
//! SYN flood; and the driver end to end over two capture files into a store.

use etherparse::PacketBuilder;
use nf_drivers::driver::{Shutdown, StateDriver};
use nf_drivers::observe::{
    Correlator, Inference, ObserveConfig, ObserveDriver, ObserveDriverConfig, Side, Tap,
};
use nf_state::schemas::{FlowMapping, FlowMappingKey, NatBinding, NatBindingKey, Proto};
use nf_state::{Codec, StateStore, StateStoreExt};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

type Ep = (Ipv4Addr, u16);

fn ep(s: &str, port: u16) -> Ep {
    (s.parse().unwrap(), port)
}

/// A TCP segment as a frame; `ip_id` and the TCP timestamp option as a real stack sends them.
#[allow(clippy::too_many_arguments)]
fn tcp(
    src: Ep,
    dst: Ep,
    seq: u32,
    ack: Option<u32>,
    flags: &str,
    payload: &[u8],
    ip_id: u16,
    tsval: u32,
) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src.0.octets(), dst.0.octets(), 64)
        .tcp(src.1, dst.1, seq, 64240);
    if flags.contains('S') {
        b = b.syn();
    }
    if flags.contains('F') {
        b = b.fin();
    }
    if flags.contains('R') {
        b = b.rst();
    }
    if let Some(a) = ack {
        b = b.ack(a);
    }
    let b = b
        .options(&[etherparse::TcpOptionElement::Timestamp(tsval, 0)])
        .unwrap();
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out[18..20].copy_from_slice(&ip_id.to_be_bytes());
    out
}

fn udp(src: Ep, dst: Ep, payload: &[u8], ip_id: u16) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src.0.octets(), dst.0.octets(), 64)
        .udp(src.1, dst.1)
        .write(&mut out, payload)
        .unwrap();
    out[18..20].copy_from_slice(&ip_id.to_be_bytes());
    out
}

/// One packet seen on one tap.
struct Ev {
    ts: u64,
    side: Side,
    frame: Vec<u8>,
}

/// How the simulated box rewrites a connection: the client and server as each side sees them.
#[derive(Clone, Copy)]
struct Conn {
    oc: Ep,
    os: Ep,
    ic: Ep,
    is: Ep,
}

/// The packets of one HTTP-like connection on both taps. `t0` start (ns); the box delays by 50 µs.
struct Trace {
    events: Vec<Ev>,
    seed: u32,
}

impl Trace {
    fn new() -> Trace {
        Trace {
            events: Vec::new(),
            seed: 0x1234_5678,
        }
    }
    fn rnd(&mut self) -> u32 {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 17;
        self.seed ^= self.seed << 5;
        self.seed
    }
    /// Adds both sightings of a packet going client->server (`c2s`) or back.
    #[allow(clippy::too_many_arguments)]
    fn both(
        &mut self,
        c: &Conn,
        c2s: bool,
        t: u64,
        seq: u32,
        ack: Option<u32>,
        flags: &str,
        payload: &[u8],
        skip: Option<Side>,
    ) {
        let id = self.rnd() as u16;
        let ts = self.rnd();
        let delay = 50_000;
        let (o, i) = if c2s {
            (
                tcp(c.oc, c.os, seq, ack, flags, payload, id, ts),
                tcp(c.ic, c.is, seq, ack, flags, payload, id, ts),
            )
        } else {
            (
                tcp(c.os, c.oc, seq, ack, flags, payload, id, ts),
                tcp(c.is, c.ic, seq, ack, flags, payload, id, ts),
            )
        };
        let (to, ti) = if c2s { (t, t + delay) } else { (t + delay, t) };
        if skip != Some(Side::Outside) {
            self.events.push(Ev {
                ts: to,
                side: Side::Outside,
                frame: o,
            });
        }
        if skip != Some(Side::Inside) {
            self.events.push(Ev {
                ts: ti,
                side: Side::Inside,
                frame: i,
            });
        }
    }
    /// A whole connection from `t`: handshake, request, response, close. `miss_syn`: one tap lost the SYN.
    fn connection(&mut self, c: Conn, t: u64, close: bool, miss_syn: Option<Side>, syn_retx: bool) {
        let (cisn, sisn) = (self.rnd(), self.rnd());
        self.both(&c, true, t, cisn, None, "S", &[], miss_syn);
        if syn_retx {
            self.both(&c, true, t + 1_000_000_000, cisn, None, "S", &[], None);
        }
        let t = if syn_retx { t + 1_000_000_000 } else { t };
        self.both(
            &c,
            false,
            t + 200_000,
            sisn,
            Some(cisn + 1),
            "SA",
            &[],
            None,
        );
        self.both(
            &c,
            true,
            t + 400_000,
            cisn + 1,
            Some(sisn + 1),
            "A",
            &[],
            None,
        );
        let req = b"GET /index.html HTTP/1.1\r\nHost: example\r\n\r\n";
        self.both(
            &c,
            true,
            t + 500_000,
            cisn + 1,
            Some(sisn + 1),
            "A",
            req,
            None,
        );
        let resp = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok";
        self.both(
            &c,
            false,
            t + 900_000,
            sisn + 1,
            Some(cisn + 1 + req.len() as u32),
            "A",
            resp,
            None,
        );
        if close {
            let (cs, ss) = (cisn + 1 + req.len() as u32, sisn + 1 + resp.len() as u32);
            self.both(&c, true, t + 1_000_000, cs, Some(ss), "FA", &[], None);
            self.both(&c, false, t + 1_100_000, ss, Some(cs + 1), "FA", &[], None);
            self.both(
                &c,
                true,
                t + 1_200_000,
                cs + 1,
                Some(ss + 1),
                "A",
                &[],
                None,
            );
        }
    }
    /// Feeds the trace, in time order (outside first on a tie), to a correlator.
    fn run(mut self, cfg: ObserveConfig) -> (Correlator, Vec<Inference>) {
        self.events
            .sort_by_key(|e| (e.ts, matches!(e.side, Side::Inside)));
        let mut c = Correlator::new(cfg);
        let mut out = Vec::new();
        for e in &self.events {
            c.packet(e.side, e.ts, &e.frame, true, &mut out);
        }
        (c, out)
    }
}

/// The final state the inferences leave: client -> backend, and five-tuple -> NAT source.
fn state(
    inf: &[Inference],
) -> (
    HashMap<FlowMappingKey, String>,
    HashMap<NatBindingKey, String>,
) {
    let (mut fm, mut nat) = (HashMap::new(), HashMap::new());
    for i in inf {
        match i {
            Inference::FlowMapping { key, value, .. } => match value {
                Some(v) => {
                    fm.insert(*key, format!("{}:{}", v.backend_ip, v.backend_port));
                }
                None => {
                    fm.remove(key);
                }
            },
            Inference::NatBinding { key, value, .. } => match value {
                Some(v) => {
                    nat.insert(*key, format!("{}:{}", v.nat_ip, v.nat_port));
                }
                None => {
                    nat.remove(key);
                }
            },
            _ => {}
        }
    }
    (fm, nat)
}

fn fm_key(c: Ep) -> FlowMappingKey {
    FlowMappingKey {
        proto: Proto::Tcp,
        client_ip: IpAddr::V4(c.0),
        client_port: c.1,
    }
}

fn dnat_conns(n: usize, trace: &mut Trace) -> Vec<Conn> {
    let vip = ep("10.0.0.100", 80);
    let backends = [
        ep("10.1.0.2", 8080),
        ep("10.1.0.3", 8080),
        ep("10.1.0.4", 8080),
    ];
    (0..n)
        .map(|k| {
            let client = (
                Ipv4Addr::new(10, 0, (k / 200) as u8, (k % 200) as u8 + 1),
                30000 + (k % 7) as u16,
            );
            let b = backends[trace.rnd() as usize % 3];
            Conn {
                oc: client,
                os: vip,
                ic: client,
                is: b,
            }
        })
        .collect()
}

#[test]
fn a_dnat_balancer_every_connection_mapped_right() {
    let mut t = Trace::new();
    let conns = dnat_conns(500, &mut t);
    for (k, c) in conns.iter().enumerate() {
        // Simultaneous SYNs: ten connections start at each instant.
        t.connection(*c, (k / 10) as u64 * 3_000_000, false, None, false);
    }
    let (corr, out) = t.run(ObserveConfig::default());
    let (fm, nat) = state(&out);
    assert!(nat.is_empty(), "a DNAT box keeps the client side");
    for c in &conns {
        assert_eq!(
            fm.get(&fm_key(c.oc)),
            Some(&format!("{}:{}", c.is.0, c.is.1)),
            "{:?}",
            c.oc
        );
    }
    let s = corr.stats();
    assert_eq!((s.matched, s.ambiguous, s.corrected), (500, 0, 0), "{s:?}");
    assert_eq!(s.emitted, 500);
    for i in &out {
        let Inference::FlowMapping { confidence, .. } = i else {
            unreachable!()
        };
        assert!(*confidence >= 0.9);
    }
}

#[test]
fn a_napt_box_many_clients_behind_one_address() {
    let mut t = Trace::new();
    let server = ep("203.0.113.9", 443);
    let nat_ip: Ipv4Addr = "198.51.100.1".parse().unwrap();
    let mut conns = Vec::new();
    for k in 0..400u16 {
        // Private clients reuse the same source ports; the box maps each to its own public port.
        let client = (
            Ipv4Addr::new(192, 168, 1, (k % 50) as u8 + 2),
            40000 + k / 50,
        );
        conns.push(Conn {
            oc: client,
            os: server,
            ic: (nat_ip, 1024 + k),
            is: server,
        });
    }
    for (k, c) in conns.iter().enumerate() {
        t.connection(*c, k as u64 * 200_000, false, None, false);
    }
    let (corr, out) = t.run(ObserveConfig::default());
    let (fm, nat) = state(&out);
    assert!(fm.is_empty());
    for c in &conns {
        let k = NatBindingKey {
            proto: Proto::Tcp,
            client_ip: IpAddr::V4(c.oc.0),
            client_port: c.oc.1,
            server_ip: IpAddr::V4(c.os.0),
            server_port: c.os.1,
        };
        assert_eq!(nat.get(&k), Some(&format!("{}:{}", c.ic.0, c.ic.1)));
    }
    assert_eq!(corr.stats().matched, 400);
}

#[test]
fn a_box_that_rewrites_both_sides_yields_both_records() {
    let mut t = Trace::new();
    let c = Conn {
        oc: ep("10.0.0.5", 40808),
        os: ep("10.0.0.100", 80),
        ic: ep("10.1.255.1", 61000),
        is: ep("10.1.0.3", 8080),
    };
    t.connection(c, 0, false, None, false);
    let (_, out) = t.run(ObserveConfig::default());
    let (fm, nat) = state(&out);
    assert_eq!(
        fm.get(&fm_key(c.oc)).map(String::as_str),
        Some("10.1.0.3:8080")
    );
    assert_eq!(
        nat.values().next().map(String::as_str),
        Some("10.1.255.1:61000")
    );
}

#[test]
fn retransmitted_syns_reordered_taps_and_a_lossy_tap() {
    let mut t = Trace::new();
    let conns = dnat_conns(90, &mut t);
    for (k, c) in conns.iter().enumerate() {
        let miss = match k % 3 {
            0 => Some(Side::Outside),
            1 => Some(Side::Inside),
            _ => None,
        };
        t.connection(*c, k as u64 * 5_000_000, false, miss, k % 2 == 0);
    }
    // The inside tap's clock runs 3 ms early: every inside sighting moves before its outside one.
    for e in &mut t.events {
        if e.side == Side::Inside {
            e.ts = e.ts.saturating_sub(3_000_000) + 10_000_000;
        } else {
            e.ts += 10_000_000;
        }
    }
    let (corr, out) = t.run(ObserveConfig::default());
    let (fm, _) = state(&out);
    for c in &conns {
        assert_eq!(
            fm.get(&fm_key(c.oc)),
            Some(&format!("{}:{}", c.is.0, c.is.1))
        );
    }
    let s = corr.stats();
    assert_eq!((s.matched, s.corrected), (90, 0), "{s:?}");
    // A mapping per connection, each emitted once even with its SYN retransmitted.
    assert_eq!(out.len(), 90);
}

#[test]
fn port_reuse_after_close_remaps_and_closed_flows_expire() {
    let mut t = Trace::new();
    let client = ep("10.0.0.7", 45000);
    let vip = ep("10.0.0.100", 80);
    let a = Conn {
        oc: client,
        os: vip,
        ic: client,
        is: ep("10.1.0.2", 8080),
    };
    let b = Conn {
        oc: client,
        os: vip,
        ic: client,
        is: ep("10.1.0.4", 8080),
    };
    t.connection(a, 0, true, None, false);
    t.connection(b, 5_000_000_000, true, None, false);
    let cfg = ObserveConfig {
        close_linger_ns: 60_000_000_000,
        ..Default::default()
    };
    let (mut corr, mut out) = t.run(cfg);
    let (fm, _) = state(&out);
    assert_eq!(
        fm.get(&fm_key(client)).map(String::as_str),
        Some("10.1.0.4:8080")
    );
    assert_eq!(corr.stats().matched, 2);
    // 61 s after the second close: its mapping is deleted.
    corr.expire(5_000_000_000 + 62_000_000_000, &mut out);
    let (fm, _) = state(&out);
    assert!(fm.is_empty(), "{fm:?}");
    assert_eq!(corr.flows(), 0);
}

#[test]
fn udp_flows_match_on_ip_id_and_payload() {
    let mut c = Correlator::new(ObserveConfig::default());
    let mut out = Vec::new();
    let (cl, vip, be) = (
        ep("10.0.0.5", 5353),
        ep("10.0.0.100", 53),
        ep("10.1.0.3", 5300),
    );
    for k in 0..3u16 {
        let q = format!("query number {k} for example.com");
        let t = u64::from(k) * 1_000_000;
        c.packet(
            Side::Outside,
            t,
            &udp(cl, vip, q.as_bytes(), 100 + k),
            true,
            &mut out,
        );
        c.packet(
            Side::Inside,
            t + 30_000,
            &udp(cl, be, q.as_bytes(), 100 + k),
            true,
            &mut out,
        );
    }
    let (fm, _) = state(&out);
    let k = FlowMappingKey {
        proto: Proto::Udp,
        client_ip: IpAddr::V4(cl.0),
        client_port: cl.1,
    };
    assert_eq!(fm.get(&k).map(String::as_str), Some("10.1.0.3:5300"));
}

#[test]
fn a_syn_flood_stays_within_bounds_and_real_flows_still_map() {
    let mut t = Trace::new();
    let conns = dnat_conns(50, &mut t);
    for (k, c) in conns.iter().enumerate() {
        t.connection(
            *c,
            1_000_000_000 + k as u64 * 10_000_000,
            false,
            None,
            false,
        );
    }
    // 100,000 spoofed SYNs to the VIP, seen outside only (the box drops them), spread over 2 s.
    let vip = ep("10.0.0.100", 80);
    for k in 0..100_000u32 {
        let src = (
            Ipv4Addr::from(0xc000_0000u32 | k),
            (k % 60000) as u16 + 1024,
        );
        let f = tcp(
            src,
            vip,
            k.wrapping_mul(2_654_435_761),
            None,
            "S",
            &[],
            k as u16,
            k,
        );
        t.events.push(Ev {
            ts: u64::from(k) * 20_000,
            side: Side::Outside,
            frame: f,
        });
    }
    let cfg = ObserveConfig {
        max_flows: 4096,
        max_pending: 8192,
        ..Default::default()
    };
    let (corr, out) = t.run(cfg);
    let s = corr.stats();
    assert!(corr.flows() <= 2 * 4096, "{}", corr.flows());
    assert!(s.evicted > 90_000, "{s:?}");
    let (fm, _) = state(&out);
    for c in &conns {
        assert_eq!(
            fm.get(&fm_key(c.oc)),
            Some(&format!("{}:{}", c.is.0, c.is.1))
        );
    }
}

#[test]
fn garbage_frames_are_counted_not_fatal() {
    let mut c = Correlator::new(ObserveConfig::default());
    let mut out = Vec::new();
    let mut seed = 7u32;
    for n in 0..5000usize {
        let mut f = vec![0u8; n % 200];
        for b in f.iter_mut() {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            *b = (seed >> 16) as u8;
        }
        if f.len() > 14 {
            f[12] = 0x08;
            f[13] = 0x00;
            f[14] = 0x45;
        }
        c.packet(
            if n % 2 == 0 {
                Side::Outside
            } else {
                Side::Inside
            },
            n as u64,
            &f,
            true,
            &mut out,
        );
    }
    assert!(c.stats().ignored > 4000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_driver_reads_two_captures_into_a_store() {
    let mut t = Trace::new();
    let conns = dnat_conns(100, &mut t);
    for (k, c) in conns.iter().enumerate() {
        t.connection(
            *c,
            1_700_000_000_000_000_000 + k as u64 * 1_000_000,
            false,
            None,
            false,
        );
    }
    let dir = std::env::temp_dir().join(format!("nf-observe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let paths = [dir.join("outside.pcap"), dir.join("inside.pcap")];
    for (p, side) in paths.iter().zip([Side::Outside, Side::Inside]) {
        let mut w = nf_drivers::io::pcap::PcapFileWriter::create(
            p,
            65535,
            true,
            pcap_file::DataLink::ETHERNET,
        )
        .unwrap();
        let mut evs: Vec<&Ev> = t.events.iter().filter(|e| e.side == side).collect();
        evs.sort_by_key(|e| e.ts);
        for e in evs {
            w.write(nf_core::Timestamp(e.ts), &e.frame).unwrap();
        }
        w.close().unwrap();
    }
    let store: Arc<dyn StateStore> = Arc::new(nf_state::store::MemStore::new());
    let mut d = ObserveDriver::new(
        Tap::Pcap(paths[0].clone()),
        Tap::Pcap(paths[1].clone()),
        ObserveDriverConfig::default(),
    );
    let (_stop, shutdown) = Shutdown::new();
    let done = d.run(store.clone(), shutdown).await.unwrap();
    assert_eq!(done.emitted, 100, "{done}");
    for c in &conns {
        let v = store
            .get_typed::<FlowMapping>(Codec::Bincode, &fm_key(c.oc))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((v.backend_ip, v.backend_port), (IpAddr::V4(c.is.0), c.is.1));
    }
    assert!(
        store
            .scan(<NatBinding as nf_state::Schema>::NAME)
            .await
            .unwrap()
            .records
            .is_empty()
    );
    let s = d.stats();
    assert_eq!((s.matched, s.unmatched), (100, 0), "{s:?}");
    assert!(d.latency().quantile_ns(0.99) <= 1_000_000);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_ambiguous_pair_is_held_until_a_later_packet_tells() {
    // Two inside flows whose SYNs are indistinguishable (same ISN, IP ID, options: an adversary or a
    // freak collision) for one outside SYN: nothing is emitted; the request, which only one of them
    // carries, settles it.
    let mut c = Correlator::new(ObserveConfig::default());
    let mut out = Vec::new();
    let (cl, vip) = (ep("10.0.0.5", 40000), ep("10.0.0.100", 80));
    let (b1, b2) = (ep("10.1.0.2", 8080), ep("10.1.0.3", 8080));
    let isn = 777_777;
    c.packet(
        Side::Outside,
        0,
        &tcp(cl, vip, isn, None, "S", &[], 9, 42),
        true,
        &mut out,
    );
    c.packet(
        Side::Inside,
        10_000,
        &tcp(cl, b1, isn, None, "S", &[], 9, 42),
        true,
        &mut out,
    );
    c.packet(
        Side::Inside,
        20_000,
        &tcp((cl.0, 40001), b2, isn, None, "S", &[], 9, 42),
        true,
        &mut out,
    );
    // The second inside SYN collided with the first in the index: the pair is weaker, or held.
    let req = b"GET /a HTTP/1.1\r\n\r\n";
    c.packet(
        Side::Outside,
        1_000_000,
        &tcp(cl, vip, isn + 1, Some(5), "A", req, 10, 43),
        true,
        &mut out,
    );
    c.packet(
        Side::Inside,
        1_010_000,
        &tcp(cl, b1, isn + 1, Some(5), "A", req, 10, 43),
        true,
        &mut out,
    );
    let (fm, _) = state(&out);
    assert_eq!(
        fm.get(&fm_key(cl)).map(String::as_str),
        Some("10.1.0.2:8080")
    );
    assert_eq!(fm.len(), 1, "{fm:?}");
}

#[test]
fn a_wrong_early_link_is_corrected_by_later_packets() {
    // The decoy's SYN reaches the inside tap first and is linked; the real flow's later packets carry
    // more evidence and take the link over: the mapping is corrected.
    let mut c = Correlator::new(ObserveConfig::default());
    let mut out = Vec::new();
    let (cl, vip) = (ep("10.0.0.5", 40000), ep("10.0.0.100", 80));
    let (real, decoy) = (ep("10.1.0.2", 8080), ep("10.1.0.3", 8080));
    let isn = 777_777;
    c.packet(
        Side::Outside,
        0,
        &tcp(cl, vip, isn, None, "S", &[], 9, 42),
        true,
        &mut out,
    );
    c.packet(
        Side::Inside,
        10_000,
        &tcp((cl.0, 40001), decoy, isn, None, "S", &[], 9, 42),
        true,
        &mut out,
    );
    c.packet(
        Side::Inside,
        20_000,
        &tcp(cl, real, isn, None, "S", &[], 9, 42),
        true,
        &mut out,
    );
    let (fm, _) = state(&out);
    assert_eq!(
        fm.get(&fm_key(cl)).map(String::as_str),
        Some("10.1.0.3:8080"),
        "linked to the decoy first"
    );
    let req = b"GET /a HTTP/1.1\r\n\r\n";
    c.packet(
        Side::Outside,
        1_000_000,
        &tcp(cl, vip, isn + 1, Some(5), "A", req, 10, 43),
        true,
        &mut out,
    );
    c.packet(
        Side::Inside,
        1_010_000,
        &tcp(cl, real, isn + 1, Some(5), "A", req, 10, 43),
        true,
        &mut out,
    );
    let (fm, _) = state(&out);
    assert_eq!(
        fm.get(&fm_key(cl)).map(String::as_str),
        Some("10.1.0.2:8080")
    );
    assert_eq!(c.stats().corrected, 1, "{:?}", c.stats());
}
