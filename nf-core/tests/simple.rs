//! SIMPLE's policy chains: two `PolicySwitch`es, a firewall and a proxy on S1 and an IDS on S2, so a web
//! packet goes S1 -> fw -> S1 -> S2 -> ids -> S2 -> S1 -> proxy -> S1 -> egress (S1 three times); the
//! middleboxes record what they see. With each tag carrier (VLAN, MPLS, annotation).

use etherparse::PacketBuilder;
use nf_core::batch::{Batch, Outputs};
use nf_core::element::{Element, PortCount, PortSpec};
use nf_core::elements::standard::Replay;
use nf_core::elements::steering::TagCarrier;
use nf_core::{Config, Registry, Router};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

type Log = Arc<Mutex<Vec<(u16, String, Option<u16>)>>>;

/// A middlebox that passes packets through and logs (IP ID, its name, the tag it saw).
struct Visit {
    name: String,
    carrier: TagCarrier,
    log: Log,
}

impl Element for Visit {
    fn class_name(&self) -> &'static str {
        "Visit"
    }
    fn ports(&self) -> PortSpec {
        PortSpec::new(PortCount::exactly(1), PortCount::exactly(1), "h/h")
    }
    fn push(&mut self, _port: usize, batch: &mut Batch, out: &mut Outputs) {
        for p in batch.iter() {
            let l3 = self.carrier.l3(p);
            let d = p.data();
            let id = u16::from_be_bytes([d[l3 + 4], d[l3 + 5]]);
            self.log
                .lock()
                .unwrap()
                .push((id, self.name.clone(), self.carrier.read(p)));
        }
        out.port(0).append(batch);
    }
}

/// Collects the frames that reach it.
struct Collect(Arc<Mutex<Vec<Vec<u8>>>>);

impl Element for Collect {
    fn class_name(&self) -> &'static str {
        "Collect"
    }
    fn ports(&self) -> PortSpec {
        PortSpec::new(PortCount::exactly(1), PortCount::exactly(0), "h/")
    }
    fn push(&mut self, _port: usize, batch: &mut Batch, _out: &mut Outputs) {
        let mut v = self.0.lock().unwrap();
        for p in batch.drain() {
            v.push(p.data().to_vec());
        }
    }
}

fn frame(id: u16, tcp_port: Option<u16>) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let mut ip = etherparse::Ipv4Header::new(
        0,
        64,
        etherparse::IpNumber::TCP,
        [10, 0, 0, 1],
        [10, 9, 9, 9],
    )
    .unwrap();
    ip.identification = id;
    let mut v = Vec::new();
    match tcp_port {
        Some(p) => b
            .ip(etherparse::IpHeaders::Ipv4(ip, Default::default()))
            .tcp(40000 + id, p, 1, 1000)
            .write(&mut v, b"GET / HTTP/1.1\r\n\r\n")
            .unwrap(),
        None => b
            .ip(etherparse::IpHeaders::Ipv4(ip, Default::default()))
            .udp(40000 + id, 53)
            .write(&mut v, b"query")
            .unwrap(),
    }
    v
}

/// (input frames, egress frames, middlebox log, the router).
type Run = (
    Vec<Vec<u8>>,
    Vec<Vec<u8>>,
    Vec<(u16, String, Option<u16>)>,
    Router,
);

fn run(carrier: &str) -> Run {
    // 10 web packets (ids 1..=10), 5 DNS (ids 101..), 5 SSH (ids 201..; no class).
    let mut frames = Vec::new();
    for i in 1..=10 {
        frames.push(frame(i, Some(80)));
    }
    for i in 101..=105 {
        frames.push(frame(i, None));
    }
    for i in 201..=205 {
        frames.push(frame(i, Some(22)));
    }
    let log: Log = Arc::default();
    let got: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let mut reg = Registry::standard();
    let fr = frames.clone();
    reg.register("Frames", "the test's frames", move |_| {
        Ok(Replay::from_frames(&fr).stop(true))
    });
    let c: TagCarrier = if carrier == "mixed" {
        TagCarrier::Vlan
    } else {
        carrier.parse().unwrap()
    };
    let l = log.clone();
    reg.register("Visit", "a middlebox", move |a| {
        Ok(Visit {
            name: a.read_mp("NAME")?,
            carrier: c,
            log: l.clone(),
        })
    });
    let g = got.clone();
    reg.register("Collect", "egress", move |_| Ok(Collect(g.clone())));
    // "mixed": web's tag in a VLAN ID, DNS's in an MPLS label.
    let (carrier, dns_tag) = match carrier {
        "mixed" => ("vlan", " TAG mpls"),
        c => (c, ""),
    };
    let classes = format!(
        "CLASS web tcp dst port 80 CHAIN fw ids proxy, CLASS dns udp dst port 53 CHAIN fw{dns_tag}"
    );
    let text = format!(
        "src :: Frames -> s1 :: PolicySwitch(TAG {carrier}, HOP fw 1, HOP proxy 2, HOP ids VIA 3, {classes});
         s2 :: PolicySwitch(TAG {carrier}, HOP ids 1, HOP fw VIA 0, HOP proxy VIA 0, {classes});
         s1[0] -> Collect;
         s1[1] -> Visit(fw) -> Queue -> Unqueue -> [1]s1;
         s1[2] -> Visit(proxy) -> Queue -> Unqueue -> [2]s1;
         s1[3] -> Queue -> Unqueue -> s2;
         s2[1] -> Visit(ids) -> Queue -> Unqueue -> [1]s2;
         s2[0] -> Queue -> Unqueue -> [3]s1;"
    );
    let cfg = Config::parse("simple.click", &text, &BTreeMap::new()).unwrap();
    let mut r = Router::new(cfg.build(&reg).unwrap()).unwrap();
    r.run().unwrap();
    let out = got.lock().unwrap().clone();
    let log = log.lock().unwrap().clone();
    (frames, out, log, r)
}

#[test]
fn every_class_takes_its_chain_in_order_through_a_switch_visited_three_times() {
    for carrier in ["vlan", "mpls", "anno", "mixed"] {
        let (frames, out, log, r) = run(carrier);
        // Everything leaves, untagged and byte-identical to what came in.
        let mut a = frames.clone();
        let mut b = out.clone();
        a.sort();
        b.sort();
        assert_eq!(a, b, "{carrier}: egress frames are the input frames");
        // Each web packet: fw (tag 0), ids (tag 1), proxy (tag 2), in that order.
        for id in 1..=10u16 {
            let visits: Vec<(String, Option<u16>)> = log
                .iter()
                .filter(|(i, _, _)| *i == id)
                .map(|(_, n, t)| (n.clone(), *t))
                .collect();
            assert_eq!(
                visits,
                vec![
                    ("fw".to_string(), Some(0)),
                    ("ids".to_string(), Some(1)),
                    ("proxy".to_string(), Some(2))
                ],
                "{carrier}: packet {id}"
            );
        }
        for id in 101..=105u16 {
            let v: Vec<&str> = log
                .iter()
                .filter(|(i, _, _)| *i == id)
                .map(|(_, n, _)| n.as_str())
                .collect();
            assert_eq!(v, vec!["fw"], "{carrier}: DNS takes the firewall only");
        }
        assert!(
            log.iter().all(|(i, _, _)| *i < 200),
            "SSH has no class: no middlebox"
        );
        let h = |e: &str, n: &str| r.read_handler(e, n).unwrap().parse::<u64>().unwrap();
        // S1 steers a web packet three times (to fw, towards ids, to proxy), a DNS packet once.
        assert_eq!(h("s1", "steered"), 10 * 3 + 5, "{carrier}");
        assert_eq!(h("s1", "finished"), 15);
        assert_eq!(h("s1", "unclassified"), 5);
        assert_eq!(h("s2", "steered"), 10 * 2, "S2: to ids, back towards S1");
        assert_eq!(
            h("s1", "misrouted") + h("s2", "misrouted") + h("s1", "bad"),
            0
        );
    }
}

#[test]
fn tags_round_trip_and_a_packet_from_the_wrong_middlebox_is_dropped() {
    for c in [TagCarrier::Vlan, TagCarrier::Mpls] {
        let f = frame(7, Some(80));
        let mut p = nf_core::Packet::from_slice(&f);
        assert_eq!(c.read(&p), None);
        c.push(&mut p, 3).unwrap();
        assert_eq!(p.len(), f.len() + 4);
        assert_eq!(c.read(&p), Some(3));
        assert_eq!(c.l3(&p), 18);
        c.write(&mut p, 9).unwrap();
        assert_eq!(c.read(&p), Some(9));
        assert_eq!(c.pop(&mut p), Some(9));
        assert_eq!(p.data(), &f[..], "{c:?}: push then pop is byte-identical");
        assert!(c.push(&mut p, 5000).is_err());
    }
    // A web packet with tag 1 (sent to the IDS) coming back on the firewall's port is misrouted.
    let reg = Registry::standard();
    let text =
        "Idle -> s :: PolicySwitch(TAG vlan, HOP fw 1, HOP ids 2, CLASS web tcp CHAIN fw ids);
                Idle -> [1]s; Idle -> [2]s; s[0] -> Discard; s[1] -> Discard; s[2] -> Discard;";
    let cfg = Config::parse("t", text, &BTreeMap::new()).unwrap();
    let g = cfg.build(&reg).unwrap();
    let _ = Router::new(g).unwrap();
    use nf_core::elements::steering::{HopPlace, PolicyChain, PolicySwitch};
    let policy = PolicyChain::new()
        .class("web", "tcp", &["fw", "ids"], TagCarrier::Vlan)
        .unwrap();
    let mut sw = PolicySwitch::new(
        policy.clone(),
        &[("fw", HopPlace::Local(1)), ("ids", HopPlace::Local(2))],
        0,
    )
    .unwrap();
    assert!(
        PolicySwitch::new(policy, &[("fw", HopPlace::Local(1))], 0)
            .unwrap_err()
            .contains("no HOP for `ids`")
    );
    let mut p = nf_core::Packet::from_slice(&frame(1, Some(80)));
    TagCarrier::Vlan.push(&mut p, 1).unwrap();
    let mut b = Batch::new();
    b.push(p);
    let mut out = Outputs::new(3);
    sw.push(1, &mut b, &mut out);
    assert!((0..3).all(|i| out.port(i).is_empty()));
    assert_eq!(sw.read_handler("misrouted").unwrap(), "1");
}

#[test]
fn configuration_errors_name_the_problem() {
    let reg = Registry::standard();
    for (text, want) in [
        (
            "Idle -> s :: PolicySwitch(HOP fw 1, CLASS web tcp CHAIN fw nat) -> Discard; s[1] -> Discard;",
            "no HOP for `nat`",
        ),
        (
            "Idle -> s :: PolicySwitch(HOP fw 1) -> Discard;",
            "at least one CLASS",
        ),
        (
            "Idle -> s :: PolicySwitch(HOP fw 1, CLASS web tcp fw) -> Discard;",
            "expected CLASS NAME EXPRESSION CHAIN",
        ),
        (
            "Idle -> s :: PolicySwitch(HOP fw 1, CLASS web tcp CHAIN fw) -> Discard;",
            "output 1 is named but only 1 are connected",
        ),
        ("Idle -> TagPush(vlan, 5000) -> Discard;", "does not fit"),
        ("Idle -> TagPush(qinq) -> Discard;", "vlan, mpls or anno"),
    ] {
        let e = nf_core::testing::check_config(&reg, "t", text).unwrap();
        assert!(e.contains(want), "{text}: {e}");
    }
}

#[test]
fn policy_chain_is_the_same_element_by_its_policys_name() {
    let reg = Registry::standard();
    let text = "Idle -> s :: PolicyChain(TAG mpls, HOP fw 1, CLASS web tcp CHAIN fw);
                Idle -> [1]s; s[0] -> Discard; s[1] -> Discard;";
    assert_eq!(nf_core::testing::check_config(&reg, "t", text), None);
}
