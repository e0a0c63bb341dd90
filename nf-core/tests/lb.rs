//! The `LoadBalancer` element: DNAT towards the backend and the VIP restored on replies with valid
//! checksums, stickiness, FIN/RST handling, policies, unknown flows, state reported to a sink, and a
//! minion's installs.

#[path = "support/frames.rs"]
mod frames;

use etherparse::PacketBuilder;
use frames::addrs;
use nf_core::element::Element;
use nf_core::elements::lb::{ClientKey, LbInstall, LoadBalancer, Policy};
use nf_core::state::{ChangeKind, StateChange, Stateful};
use nf_core::{Batch, Outputs, Packet, Timestamp};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

fn tcp(src: &str, sport: u16, dst: &str, dport: u16, flags: &str, seq: u32) -> Vec<u8> {
    frames::frame("tcp", src, sport, dst, dport, flags, seq)
}

fn push(
    lb: &mut LoadBalancer,
    port: usize,
    frame: Vec<u8>,
    t: u64,
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut p = Packet::from_slice(&frame);
    p.anno.timestamp = Timestamp(t);
    let mut b = Batch::new();
    b.push(p);
    let mut out = Outputs::new(2);
    lb.push(port, &mut b, &mut out);
    let take = |o: &mut Outputs, i: usize| o.port(i).drain().map(|p| p.data().to_vec()).collect();
    (take(&mut out, 0), take(&mut out, 1))
}

fn lb(backends: &[&str], policy: Policy) -> LoadBalancer {
    LoadBalancer::new(
        "10.0.0.100:80".parse().unwrap(),
        backends.iter().map(|b| b.parse().unwrap()).collect(),
    )
    .policy(policy)
    .capacity(4096)
    .seed(42)
    .linger(std::time::Duration::from_secs(1))
}

const S: u64 = 1_000_000_000;

#[test]
fn both_directions_are_rewritten_with_valid_checksums_and_flows_stick() {
    let mut b = lb(
        &["10.1.0.2:8080", "10.1.0.3:8080", "10.1.0.4:8080"],
        Policy::Random,
    );
    let changes = Arc::new(Mutex::new(Vec::new()));
    let c2 = changes.clone();
    b.table_mut().set_sink(Box::new(
        move |ch: &StateChange<'_, ClientKey, nf_core::elements::lb::LbEntry>| {
            c2.lock()
                .unwrap()
                .push((ch.kind, *ch.key, ch.value.backend));
        },
    ));
    let (to_b, _) = push(
        &mut b,
        0,
        tcp("10.0.0.5", 40808, "10.0.0.100", 80, "S", 1),
        S,
    );
    let (_, _, bip, bport) = addrs(&to_b[0]);
    assert_eq!(bport, 8080);
    // Every later packet of the flow goes to the same backend.
    for k in 0..20 {
        let (to_b, _) = push(
            &mut b,
            0,
            tcp("10.0.0.5", 40808, "10.0.0.100", 80, "A", 2 + k),
            S + u64::from(k),
        );
        assert_eq!(addrs(&to_b[0]).2, bip);
    }
    // The reply leaves with the VIP as its source.
    let (_, to_c) = push(&mut b, 1, tcp(&bip, 8080, "10.0.0.5", 40808, "SA", 9), S);
    assert_eq!(
        addrs(&to_c[0]),
        ("10.0.0.100".into(), 80, "10.0.0.5".into(), 40808)
    );
    // A reply from a backend that is not the flow's is not let through.
    let other = if bip == "10.1.0.2" {
        "10.1.0.3"
    } else {
        "10.1.0.2"
    };
    let (_, to_c) = push(&mut b, 1, tcp(other, 8080, "10.0.0.5", 40808, "A", 9), S);
    assert!(to_c.is_empty());
    assert_eq!(b.read_handler("unknown_replies").unwrap(), "1");
    // FIN both ways: the flow lingers 1 s, then goes; the sink saw the insert and the removal.
    push(
        &mut b,
        0,
        tcp("10.0.0.5", 40808, "10.0.0.100", 80, "FA", 30),
        2 * S,
    );
    push(
        &mut b,
        1,
        tcp(&bip, 8080, "10.0.0.5", 40808, "FA", 40),
        2 * S,
    );
    assert_eq!(b.read_handler("flows").unwrap(), "1");
    push(
        &mut b,
        0,
        tcp("10.0.0.9", 1, "10.0.0.200", 80, "S", 1),
        4 * S,
    ); // not for the VIP
    b.on_timer(Timestamp::now(), &mut Outputs::new(2)); // the periodic sweep
    assert_eq!(b.read_handler("flows").unwrap(), "0");
    assert_eq!(b.read_handler("not_vip").unwrap(), "1");
    let ch = changes.lock().unwrap();
    assert_eq!(ch.len(), 2, "{ch:?}");
    assert!(matches!(ch[0].0, ChangeKind::Insert) && matches!(ch[1].0, ChangeKind::Remove(_)));
    assert_eq!(ch[0].2.ip().to_string(), bip);
}

#[test]
fn random_spreads_round_robin_rotates_least_connections_balances() {
    for (policy, check) in [
        (Policy::Random, 250usize),
        (Policy::RoundRobin, 300),
        (Policy::LeastConnections, 300),
    ] {
        let mut b = lb(&["10.1.0.2:8080", "10.1.0.3:8080", "10.1.0.4:8080"], policy);
        let mut per = std::collections::HashMap::new();
        for k in 0..900u16 {
            let (to_b, _) = push(
                &mut b,
                0,
                tcp("10.0.0.5", 1000 + k, "10.0.0.100", 80, "S", 1),
                S,
            );
            *per.entry(addrs(&to_b[0]).2).or_insert(0usize) += 1;
        }
        assert_eq!(per.len(), 3, "{policy:?}");
        for n in per.values() {
            assert!(*n >= check && *n <= 900 - 2 * check, "{policy:?}: {per:?}");
        }
    }
}

#[test]
fn unknown_established_flows_are_counted_then_picked_or_dropped_and_installs_restore_them() {
    // A minion with no state: the ACK of an established flow is unknown.
    let mut b = lb(&["10.1.0.2:8080", "10.1.0.3:8080"], Policy::Random).drop_unknown(true);
    let (to_b, _) = push(
        &mut b,
        0,
        tcp("10.0.0.5", 40808, "10.0.0.100", 80, "A", 5),
        S,
    );
    assert!(to_b.is_empty());
    assert_eq!(b.read_handler("unknown").unwrap(), "1");
    // The follower installs the primary's mapping: the next packet goes to the primary's choice.
    let tx = b.installer().unwrap();
    let k = ClientKey {
        proto: 6,
        ip: "10.0.0.5".parse().unwrap(),
        port: 40808,
    };
    tx.install(LbInstall::Set(
        k,
        "10.1.0.3:8080".parse::<SocketAddr>().unwrap(),
    ))
    .unwrap();
    let (to_b, _) = push(
        &mut b,
        0,
        tcp("10.0.0.5", 40808, "10.0.0.100", 80, "A", 6),
        S,
    );
    assert_eq!(addrs(&to_b[0]).2, "10.1.0.3");
    assert_eq!(b.read_handler("installed").unwrap(), "1");
    // And a delete removes it.
    tx.install(LbInstall::Remove(k)).unwrap();
    let (to_b, _) = push(
        &mut b,
        0,
        tcp("10.0.0.5", 40808, "10.0.0.100", 80, "A", 7),
        S,
    );
    assert!(to_b.is_empty());
    // `pick` (the default) adopts an unknown flow: a backend by the policy, remembered.
    let mut b = lb(&["10.1.0.2:8080", "10.1.0.3:8080"], Policy::Random);
    let (to_b, _) = push(
        &mut b,
        0,
        tcp("10.0.0.5", 40808, "10.0.0.100", 80, "A", 5),
        S,
    );
    let first = addrs(&to_b[0]).2;
    for k in 0..10 {
        let (to_b, _) = push(
            &mut b,
            0,
            tcp("10.0.0.5", 40808, "10.0.0.100", 80, "A", 6 + k),
            S,
        );
        assert_eq!(addrs(&to_b[0]).2, first);
    }
    assert_eq!(b.read_handler("unknown").unwrap(), "1");
    assert_eq!(b.read_handler("new_flows").unwrap(), "0");
    assert_eq!(b.read_handler("flows").unwrap(), "1");
}

#[test]
fn a_rst_closes_and_port_reuse_chooses_again() {
    let mut b = lb(&["10.1.0.2:8080", "10.1.0.3:8080"], Policy::RoundRobin);
    let (to_b, _) = push(
        &mut b,
        0,
        tcp("10.0.0.5", 40808, "10.0.0.100", 80, "S", 1),
        S,
    );
    let first = addrs(&to_b[0]).2;
    push(
        &mut b,
        0,
        tcp("10.0.0.5", 40808, "10.0.0.100", 80, "R", 2),
        S,
    );
    // A new SYN on the closed flow: a new connection, the next backend in turn.
    let (to_b, _) = push(
        &mut b,
        0,
        tcp("10.0.0.5", 40808, "10.0.0.100", 80, "S", 100),
        S + 1,
    );
    assert_ne!(addrs(&to_b[0]).2, first);
    assert_eq!(b.read_handler("new_flows").unwrap(), "2");
}

#[test]
fn configuration_errors_are_clear() {
    let reg = nf_core::Registry::standard();
    for (cfg, want) in [
        (
            "Idle -> [0]lb :: LoadBalancer(VIP 10.0.0.1, BACKENDS 10.1.0.1:80); Idle -> [1]lb; lb[0] -> Discard; lb[1] -> Discard;",
            "VIP: `10.0.0.1` is not an IP:PORT",
        ),
        (
            "Idle -> [0]lb :: LoadBalancer(VIP 10.0.0.1:80, BACKENDS 10.1.0.1:80 x); Idle -> [1]lb; lb[0] -> Discard; lb[1] -> Discard;",
            "BACKENDS: `x` is not an IP:PORT",
        ),
        (
            "Idle -> [0]lb :: LoadBalancer(VIP 10.0.0.1:80, BACKENDS 10.1.0.1:80, POLICY fastest); Idle -> [1]lb; lb[0] -> Discard; lb[1] -> Discard;",
            "POLICY must be random, roundrobin, leastconn or maglev",
        ),
    ] {
        let e = nf_core::Config::parse("t.click", cfg, &Default::default())
            .and_then(|c| c.build(&reg).map(|_| ()))
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{e}");
        assert!(e.contains("t.click:1:"), "{e}");
    }
}

#[test]
fn set_backends_keeps_established_flows_and_maglev_rehashes_new_ones() {
    let mut b = lb(
        &["10.1.0.2:8080", "10.1.0.3:8080", "10.1.0.4:8080"],
        Policy::Maglev,
    );
    let mut first = Vec::new();
    for k in 0..300u16 {
        let (to_b, _) = push(
            &mut b,
            0,
            tcp("10.0.0.5", 1000 + k, "10.0.0.100", 80, "S", 1),
            S,
        );
        first.push(addrs(&to_b[0]).2);
    }
    // 10.1.0.3 leaves: established flows keep their backend, even on it (draining); new flows avoid it.
    b.write_handler("set_backends", "10.1.0.2:8080 10.1.0.4:8080")
        .unwrap();
    for k in 0..300u16 {
        let (to_b, _) = push(
            &mut b,
            0,
            tcp("10.0.0.5", 1000 + k, "10.0.0.100", 80, "A", 2),
            S,
        );
        assert_eq!(addrs(&to_b[0]).2, first[k as usize]);
    }
    let mut kept = 0;
    for k in 0..300u16 {
        let (to_b, _) = push(
            &mut b,
            0,
            tcp("10.0.0.6", 1000 + k, "10.0.0.100", 80, "S", 1),
            S,
        );
        let got = addrs(&to_b[0]).2;
        assert_ne!(got, "10.1.0.3");
        kept += usize::from(got != "10.1.0.3");
    }
    assert_eq!(kept, 300);
    assert!(b.write_handler("set_backends", "nonsense").is_err());
}

#[test]
fn a_syn_flood_stays_within_the_table_and_established_flows_keep_their_backend() {
    // 1,000 established flows in a 4,096-entry table, then 100,000 SYNs from spoofed sources (answered
    // by the backends: SYN-ACKs come back through the balancer).
    let mut b = LoadBalancer::new(
        "10.0.0.100:80".parse().unwrap(),
        ["10.1.0.2:8080", "10.1.0.3:8080", "10.1.0.4:8080"]
            .iter()
            .map(|x| x.parse().unwrap())
            .collect(),
    )
    .capacity(4096)
    .seed(3);
    let mut chosen = Vec::new();
    for k in 0..1000u16 {
        let (to_b, _) = push(
            &mut b,
            0,
            tcp("10.0.0.5", 1000 + k, "10.0.0.100", 80, "S", 1),
            S,
        );
        let be = addrs(&to_b[0]).2;
        push(
            &mut b,
            0,
            tcp("10.0.0.5", 1000 + k, "10.0.0.100", 80, "A", 2),
            S,
        );
        chosen.push(be);
    }
    for k in 0..100_000u32 {
        let src = std::net::Ipv4Addr::from(0xc000_0000 | k).to_string();
        let t = S + u64::from(k) * 20_000; // 2 s of flood
        let (to_b, _) = push(
            &mut b,
            0,
            tcp(&src, (k % 60_000) as u16 + 1024, "10.0.0.100", 80, "S", k),
            t,
        );
        if let Some(f) = to_b.first() {
            let (_, _, bip, _) = addrs(f);
            push(
                &mut b,
                1,
                tcp(&bip, 8080, &src, (k % 60_000) as u16 + 1024, "SA", 7),
                t,
            );
        }
        // The established flows keep talking during the flood.
        if k % 10_000 == 0 {
            for j in 0..1000u16 {
                push(
                    &mut b,
                    0,
                    tcp("10.0.0.5", 1000 + j, "10.0.0.100", 80, "A", 3),
                    t,
                );
            }
        }
    }
    let flows: usize = b.read_handler("flows").unwrap().parse().unwrap();
    assert!(flows <= 4096, "{flows}");
    let evicted: u64 = b.read_handler("evicted").unwrap().parse().unwrap();
    assert!(evicted > 90_000, "{evicted}");
    for (j, be) in chosen.iter().enumerate() {
        let (to_b, _) = push(
            &mut b,
            0,
            tcp("10.0.0.5", 1000 + j as u16, "10.0.0.100", 80, "A", 4),
            3 * S,
        );
        assert_eq!(&addrs(&to_b[0]).2, be, "flow {j} lost its backend");
    }
    assert_eq!(b.read_handler("unknown").unwrap(), "0");
}

#[test]
fn a_random_tuple_flood_stays_within_the_table_and_is_counted() {
    // 1,000 established flows in a 4,096-entry table, then 100,000 packets of random five-tuples: a third
    // TCP segments of connections the balancer never saw (adopted, as MiMi's minion adopts them, and
    // counted as unknown), a third UDP to the VIP (new flows by definition), a third to other
    // addresses (not the balancer's: counted, never inserted).
    let vip = "10.0.0.100";
    let mut b = LoadBalancer::new(
        format!("{vip}:80").parse().unwrap(),
        ["10.1.0.2:8080", "10.1.0.3:8080", "10.1.0.4:8080"]
            .iter()
            .map(|x| x.parse().unwrap())
            .collect(),
    )
    .capacity(4096)
    .seed(5);
    let mut chosen = Vec::new();
    for k in 0..1000u16 {
        let (to_b, _) = push(&mut b, 0, tcp("10.0.0.5", 1000 + k, vip, 80, "S", 1), S);
        chosen.push(addrs(&to_b[0]).2);
        push(&mut b, 0, tcp("10.0.0.5", 1000 + k, vip, 80, "A", 2), S);
    }
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let (mut tcp_n, mut udp_n, mut other_n, mut peak) = (0u64, 0u64, 0u64, 0usize);
    for k in 0..100_000u64 {
        let r = rnd();
        let src = std::net::Ipv4Addr::from((r >> 32) as u32 | 0x0100_0000).to_string();
        let sport = (r as u16).max(1024);
        let t = S + k * 20_000;
        let frame = match k % 3 {
            0 => {
                tcp_n += 1;
                tcp(&src, sport, vip, 80, "A", r as u32)
            }
            1 => {
                udp_n += 1;
                let mut v = Vec::new();
                PacketBuilder::ethernet2([2; 6], [4; 6])
                    .ipv4(
                        src.parse::<std::net::Ipv4Addr>().unwrap().octets(),
                        [10, 0, 0, 100],
                        64,
                    )
                    .udp(sport, 80)
                    .write(&mut v, b"x")
                    .unwrap();
                v
            }
            _ => {
                other_n += 1;
                let dst = std::net::Ipv4Addr::from(rnd() as u32 | 0x0200_0000).to_string();
                tcp(&src, sport, &dst, 443, "S", 1)
            }
        };
        push(&mut b, 0, frame, t);
        if k % 1000 == 0 {
            peak = peak.max(b.read_handler("flows").unwrap().parse().unwrap());
        }
        if k % 10_000 == 0 {
            for j in 0..1000u16 {
                push(&mut b, 0, tcp("10.0.0.5", 1000 + j, vip, 80, "A", 3), t);
            }
        }
    }
    let n = |h: &str| -> u64 { b.read_handler(h).unwrap().parse().unwrap() };
    assert!(peak <= 4096, "peak {peak}");
    assert!(n("flows") <= 4096);
    assert_eq!(n("unknown"), tcp_n, "every unseen TCP segment counted");
    assert_eq!(
        n("not_vip"),
        other_n,
        "every packet for someone else counted"
    );
    assert!(
        n("evicted") >= tcp_n + udp_n - 4096,
        "{} evictions",
        n("evicted")
    );
    let (evicted, unknown, not_vip) = (n("evicted"), n("unknown"), n("not_vip"));
    for (j, be) in chosen.iter().enumerate() {
        let (to_b, _) = push(
            &mut b,
            0,
            tcp("10.0.0.5", 1000 + j as u16, vip, 80, "A", 4),
            3 * S,
        );
        assert_eq!(&addrs(&to_b[0]).2, be, "flow {j} lost its backend");
    }
    println!(
        "random-tuple flood: {} packets ({tcp_n} TCP unseen, {udp_n} UDP, {other_n} not for the VIP); peak {peak} of 4096 entries; evicted {evicted}; unknown {unknown}; not_vip {not_vip}; 1000 of 1000 established kept",
        tcp_n + udp_n + other_n,
    );
}

/// Least-connections' census is kept as flows come and go (no timer walks the table): after SYNs,
/// closes (FIN both ways, RST), expiries, evictions from a full table, installs and removals by a
/// follower and a backend change, it equals a walk of the table, and new flows go to the emptiest backend.
#[test]
fn least_connections_census_follows_the_table_without_a_walk() {
    let backends = ["10.1.0.2:8080", "10.1.0.3:8080", "10.1.0.4:8080"];
    let mut b = lb(&backends, Policy::LeastConnections).capacity(200);
    let walk = |b: &LoadBalancer| {
        let list: Vec<SocketAddr> = b
            .read_handler("backends")
            .unwrap()
            .split_whitespace()
            .map(|kv| kv.split('=').next().unwrap().parse().unwrap())
            .collect();
        let mut c = vec![0u64; list.len()];
        b.table().for_each(|_, e| {
            if let Some(i) = list.iter().position(|x| *x == e.backend) {
                c[i] += 1;
            }
        });
        c
    };
    // 150 flows, then 20 of them reset by the client and 20 closed by FIN both ways.
    let mut backend_of = std::collections::HashMap::new();
    for k in 0..150u16 {
        let (to_b, _) = push(
            &mut b,
            0,
            tcp("10.0.0.5", 1000 + k, "10.0.0.100", 80, "S", 1),
            S,
        );
        backend_of.insert(k, addrs(&to_b[0]).2);
        push(
            &mut b,
            0,
            tcp("10.0.0.5", 1000 + k, "10.0.0.100", 80, "A", 2),
            S,
        );
    }
    assert_eq!(b.census(), walk(&b).as_slice());
    assert_eq!(b.census().iter().sum::<u64>(), 150);
    for k in 0..20u16 {
        push(
            &mut b,
            0,
            tcp("10.0.0.5", 1000 + k, "10.0.0.100", 80, "RA", 3),
            S,
        );
    }
    for k in 20..40u16 {
        push(
            &mut b,
            0,
            tcp("10.0.0.5", 1000 + k, "10.0.0.100", 80, "FA", 3),
            S,
        );
        let be = &backend_of[&k];
        push(&mut b, 1, tcp(be, 8080, "10.0.0.5", 1000 + k, "FA", 3), S);
    }
    // The closed flows linger one second; past it, a new SYN on a closed port and sweeps remove them.
    for k in 0..40u16 {
        push(
            &mut b,
            0,
            tcp("10.0.0.5", 1000 + k, "10.0.0.100", 80, "S", 9),
            3 * S,
        );
    }
    assert_eq!(b.census(), walk(&b).as_slice());
    // A full table evicts (capacity 200): 300 more flows.
    for k in 0..300u16 {
        push(
            &mut b,
            0,
            tcp("10.0.0.6", 1000 + k, "10.0.0.100", 80, "S", 1),
            4 * S,
        );
    }
    assert!(b.table().stats().evicted > 0);
    assert_eq!(b.census(), walk(&b).as_slice());
    assert_eq!(b.census().iter().sum::<u64>(), b.table().len() as u64);
    // A follower installs, replaces and removes; then the idle timeout expires everything.
    let tx = b.installer().unwrap();
    for k in 0..50u16 {
        let key = ClientKey {
            proto: 6,
            ip: "10.0.0.7".parse().unwrap(),
            port: 2000 + k,
        };
        tx.install(LbInstall::Set(key, backends[0].parse().unwrap()))
            .unwrap();
        tx.install(LbInstall::Set(key, backends[1].parse().unwrap()))
            .unwrap();
        if k % 2 == 0 {
            tx.install(LbInstall::Remove(key)).unwrap();
        }
    }
    push(
        &mut b,
        0,
        tcp("10.0.0.8", 1, "10.0.0.100", 80, "S", 1),
        5 * S,
    );
    assert_eq!(b.census(), walk(&b).as_slice());
    b.write_handler("set_backends", "10.1.0.3:8080 10.1.0.4:8080")
        .unwrap();
    assert_eq!(b.census(), walk(&b).as_slice());
    // Long after the idle timeout: each batch's sweep expires what it meets.
    for k in 0..100u16 {
        push(
            &mut b,
            0,
            tcp("10.0.0.9", 1000 + k, "10.0.0.100", 80, "S", 1),
            1000 * S,
        );
    }
    assert_eq!(b.table().len(), 100);
    assert_eq!(b.census(), walk(&b).as_slice());
    assert_eq!(b.census().iter().sum::<u64>(), 100);
    // And the emptiest backend gets the next flows: the two backends now hold 50 each.
    assert_eq!(b.census(), &[50, 50]);
}

/// The backend a new flow from client port `port` gets (a SYN).
fn new_flow(b: &mut LoadBalancer, port: u16, t: u64) -> Option<String> {
    let (to_b, _) = push(b, 0, tcp("10.0.0.5", port, "10.0.0.100", 80, "S", 1), t);
    to_b.first()
        .map(|f| format!("{}:{}", addrs(f).2, addrs(f).3))
}

#[test]
fn drain_down_weight_and_health_steer_new_flows_and_keep_established_ones() {
    use nf_core::elements::lb::BackendState;
    for policy in [
        Policy::Random,
        Policy::RoundRobin,
        Policy::LeastConnections,
        Policy::Maglev,
    ] {
        let mut b = lb(&["10.1.0.2:8080", "10.1.0.3:8080", "10.1.0.4:8080"], policy);
        let watch = b.status_watch().unwrap();
        assert_eq!(
            watch.try_iter().count(),
            3,
            "every backend's status at once"
        );
        // 300 flows over the three backends.
        let first: Vec<String> = (0..300)
            .map(|k| new_flow(&mut b, 1000 + k, S).unwrap())
            .collect();
        let on_2 = first.iter().filter(|x| *x == "10.1.0.2:8080").count();
        assert!(on_2 > 30, "{policy:?}: {on_2}");

        b.write_handler("drain", "10.1.0.2:8080").unwrap();
        b.write_handler("weight", "10.1.0.3:8080 0").unwrap();
        let st = watch.try_iter().collect::<Vec<_>>();
        assert_eq!(st.len(), 2, "{st:?}");
        assert_eq!(st[0].state, BackendState::Drain);
        assert_eq!(st[1].weight, 0);
        // New flows: only 10.1.0.4; established ones keep their backend (ACKs of the first flows).
        for k in 0..100 {
            assert_eq!(
                new_flow(&mut b, 5000 + k, S).as_deref(),
                Some("10.1.0.4:8080"),
                "{policy:?}"
            );
        }
        for (k, want) in first.iter().enumerate() {
            let (to_b, _) = push(
                &mut b,
                0,
                tcp("10.0.0.5", 1000 + k as u16, "10.0.0.100", 80, "A", 2),
                S,
            );
            let a = addrs(&to_b[0]);
            assert_eq!(&format!("{}:{}", a.2, a.3), want, "{policy:?}");
        }
        assert_eq!(
            b.read_handler("accepting").unwrap(),
            "10.1.0.2:8080=0 10.1.0.3:8080=0 10.1.0.4:8080=1"
        );
        // A failed health check: no backend takes new flows; they are dropped, counted.
        b.write_handler("health", "10.1.0.4:8080 down").unwrap();
        assert_eq!(new_flow(&mut b, 9000, S), None);
        assert_eq!(b.read_handler("no_backend").unwrap(), "1");
        b.write_handler("health", "10.1.0.4:8080 up").unwrap();
        b.write_handler("up", "10.1.0.2:8080").unwrap();
        b.write_handler("weight", "10.1.0.3:8080 1").unwrap();
        let back: std::collections::HashSet<String> = (0..300)
            .filter_map(|k| new_flow(&mut b, 10000 + k, S))
            .collect();
        assert_eq!(back.len(), 3, "{policy:?}: {back:?}");
        let states = b.read_handler("states").unwrap();
        assert!(
            states.contains("10.1.0.2:8080 up weight 1 healthy"),
            "{states}"
        );
        // Bad writes are refused with a reason.
        assert!(b.write_handler("drain", "10.9.9.9:1").is_err());
        assert!(b.write_handler("weight", "10.1.0.2:8080 x").is_err());
        assert!(b.write_handler("health", "10.1.0.2:8080 maybe").is_err());
    }
}

#[test]
fn weights_share_new_flows_and_a_drain_deadline_cuts_the_remaining_flows() {
    let mut b = lb(&["10.1.0.2:8080", "10.1.0.3:8080"], Policy::Random).weights(vec![3, 1]);
    let mut on_2 = 0;
    for k in 0..4000u16 {
        if new_flow(&mut b, 1000 + k, S).as_deref() == Some("10.1.0.2:8080") {
            on_2 += 1;
        }
    }
    assert!(
        (2800..3200).contains(&on_2),
        "3:1 weights gave {on_2} of 4000"
    );
    let sink = Arc::new(Mutex::new(0usize));
    let s2 = sink.clone();
    b.table_mut()
        .set_sink(Box::new(move |c: &StateChange<'_, ClientKey, _>| {
            if matches!(c.kind, ChangeKind::Remove(_)) {
                *s2.lock().unwrap() += 1;
            }
        }));
    b.write_handler("drain", "10.1.0.3:8080 0.05").unwrap();
    assert!(b.read_handler("states").unwrap().contains("deadline"));
    std::thread::sleep(std::time::Duration::from_millis(80));
    let mut out = Outputs::new(2);
    b.on_timer(Timestamp::now(), &mut out);
    let cut: u64 = b.read_handler("drained").unwrap().parse().unwrap();
    assert_eq!(
        cut as usize,
        4000 - on_2,
        "every flow of the drained backend"
    );
    assert_eq!(*sink.lock().unwrap(), cut as usize, "each removal reported");
    assert!(
        b.read_handler("states")
            .unwrap()
            .contains("10.1.0.3:8080 down")
    );
    assert_eq!(
        b.read_handler("backends").unwrap(),
        format!("10.1.0.2:8080={on_2} 10.1.0.3:8080=0")
    );
}
