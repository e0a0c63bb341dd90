//! Whole configurations over synthetic traffic, with exact counts.

use etherparse::PacketBuilder;
use nf_core::elements::standard::{Counter, Discard, InfiniteSource, Replay};
use nf_core::elements::tcpudp::{ConnTrack, ProtoState, TcpState};
use nf_core::state::{ChangeKind, RemoveReason, StateChange, Stateful};
use nf_core::testing::run_config;
use nf_core::testing::{Recorded, Recorder};
use nf_core::traffic::TrafficConfig;
use nf_core::{Config, FlowKey, Graph, Packet, Registry, Router, ShardedRouter, Timestamp};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

fn count(r: &Router, e: &str) -> u64 {
    r.read_handler(e, "count").unwrap().parse().unwrap()
}

#[test]
fn classifier_pipeline_counts_exactly() {
    let r = run_config(
        "src :: InfiniteSource(LIMIT 3000, FLOWS 30, PROTO mixed, STOP true);
         src -> Strip(14) -> CheckIPHeader -> c :: IPClassifier(tcp dst port 80, udp, -);
         c[0] -> tcp :: Counter -> Discard;
         c[1] -> udp :: Counter -> Discard;
         c[2] -> other :: Counter -> Discard;",
    )
    .unwrap();
    assert_eq!(count(&r, "tcp"), 1500);
    assert_eq!(count(&r, "udp"), 1500);
    assert_eq!(count(&r, "other"), 0);
}

#[test]
fn ipfilter_allows_and_denies() {
    let r = run_config(
        "InfiniteSource(LIMIT 100, FLOWS 10, PROTO mixed, STOP true) -> Strip(14) -> CheckIPHeader
           -> f :: IPFilter(deny tcp, allow udp dst port 53) -> c :: Counter -> Discard;",
    )
    .unwrap();
    assert_eq!(count(&r, "c"), 50);
    assert_eq!(r.read_handler("f", "dropped").unwrap(), "50");
}

#[test]
fn compound_elements_parameters_and_defines() {
    let text = "
        define($COLOR 1, $N 7);
        elementclass Mark { $c | input -> Paint($c) -> output }
        elementclass MarkTwice { $a | input -> Mark($a) -> m2 :: Mark(2) -> output }
        src :: InfiniteSource(LIMIT $N, STOP true);
        src -> MarkTwice($COLOR) -> s :: PaintSwitch;
        s[0] -> Discard; s[1] -> Discard; s[2] -> two :: Counter -> Discard;";
    let reg = Registry::standard();
    let mut params = BTreeMap::new();
    params.insert("N".to_string(), "40".to_string());
    let cfg = Config::parse("t", text, &params).unwrap();
    assert!(
        cfg.elements
            .iter()
            .any(|e| e.name.contains("MarkTwice") || e.name.starts_with("MarkTwice@"))
    );
    let mut r = Router::new(cfg.build(&reg).unwrap()).unwrap();
    r.run().unwrap();
    // The command-line value overrides the define; the inner Paint(2) wins.
    assert_eq!(count(&r, "two"), 40);
}

#[test]
fn compound_pass_through_and_multiple_ports() {
    let r = run_config(
        "elementclass Split { input -> c :: Classifier(12/0800 23/06, -); c[0] -> [0]output; c[1] -> [1]output }
         elementclass Wire { input -> output }
         InfiniteSource(LIMIT 10, FLOWS 10, PROTO mixed, STOP true) -> Wire -> s :: Split;
         s[0] -> tcp :: Counter -> Discard;
         s[1] -> rest :: Counter -> Discard;",
    )
    .unwrap();
    assert_eq!(count(&r, "tcp"), 5);
    assert_eq!(count(&r, "rest"), 5);
}

#[test]
fn pull_paths_through_agnostic_elements() {
    let r = run_config(
        "InfiniteSource(LIMIT 100, STOP true) -> q :: Queue(1000) -> c :: Counter -> Unqueue(BURST 7) -> Discard;
         InfiniteSource(LIMIT 50, STOP true) -> Queue(1000) -> d :: Discard;",
    )
    .unwrap();
    assert_eq!(count(&r, "c"), 100);
    assert_eq!(count(&r, "d"), 50);
    assert_eq!(r.read_handler("q", "length").unwrap(), "0");
}

#[test]
fn queue_drops_are_counted_and_nothing_is_lost_silently() {
    let r = run_config("InfiniteSource(LIMIT 1000, BURST 64, STOP true) -> q :: Queue(16) -> Unqueue(BURST 8) -> c :: Counter -> Discard;")
        .unwrap();
    let drops: u64 = r.read_handler("q", "drops").unwrap().parse().unwrap();
    assert!(drops > 0);
    assert_eq!(drops + count(&r, "c"), 1000);
}

#[test]
fn tee_round_robin_and_hash_switch() {
    let r = run_config(
        "InfiniteSource(LIMIT 30, FLOWS 30, STOP true) -> t :: Tee;
         t[0] -> rr :: RoundRobinSwitch; rr[0] -> a :: Counter -> Discard; rr[1] -> b :: Counter -> Discard;
         t[1] -> h :: HashSwitch(26, 8); h[0] -> x :: Counter -> Discard; h[1] -> y :: Counter -> Discard;",
    )
    .unwrap();
    assert_eq!(count(&r, "a"), 15);
    assert_eq!(count(&r, "b"), 15);
    assert_eq!(count(&r, "x") + count(&r, "y"), 30);
    assert!(count(&r, "x") > 0 && count(&r, "y") > 0);
}

#[test]
fn check_ip_header_sends_bad_packets_to_its_second_output() {
    // A frame with a corrupted IPv4 checksum, and one too short to be IP.
    let mut good = Vec::new();
    PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(1, 2)
        .write(&mut good, b"hi")
        .unwrap();
    let mut bad = good.clone();
    bad[14 + 10] ^= 0xff;
    let hex = |f: &[u8]| f.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let text = format!(
        "InfiniteSource(DATA {}, LIMIT 3, STOP true) -> Strip(14) -> c :: CheckIPHeader;
         InfiniteSource(DATA {}, LIMIT 2, STOP true) -> Strip(14) -> c;
         InfiniteSource(DATA 0800, LIMIT 1, STOP true) -> c;
         c[0] -> ok :: Counter -> Discard;
         c[1] -> bad :: Counter -> Discard;",
        hex(&good),
        hex(&bad)
    );
    let r = run_config(&text).unwrap();
    assert_eq!(count(&r, "ok"), 3);
    assert_eq!(count(&r, "bad"), 3);
    assert!(
        r.read_handler("c", "drop_details")
            .unwrap()
            .contains("bad_checksum=2")
    );
}

#[test]
fn dec_ip_ttl_expires_ttl_one() {
    let mut f = Vec::new();
    PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 1)
        .udp(1, 2)
        .write(&mut f, b"x")
        .unwrap();
    let hex: String = f.iter().map(|b| format!("{b:02x}")).collect();
    let r = run_config(&format!(
        "InfiniteSource(DATA {hex}, LIMIT 4, STOP true) -> Strip(14) -> t :: DecIPTTL; t[0] -> live :: Counter -> Discard; t[1] -> dead :: Counter -> Discard;"
    ))
    .unwrap();
    assert_eq!(count(&r, "live"), 0);
    assert_eq!(count(&r, "dead"), 4);
}

#[test]
fn handlers_write_and_typed_access() {
    let mut g = Graph::new();
    let src = g.add("src", InfiniteSource::udp_flows(64, 4).limit(10).stop(true));
    let c = g.add("c", Counter::new());
    let d = g.add("d", Discard::new());
    g.chain(&[src.id(), c.id(), d.id()]);
    let mut r = Router::new(g).unwrap();
    r.run().unwrap();
    assert_eq!(r.element(c).unwrap().count(), 10);
    r.write_handler("c", "reset", "").unwrap();
    assert_eq!(r.element(c).unwrap().count(), 0);
    assert!(r.write_handler("c", "nope", "").is_err());
    assert!(r.read_handler("zz", "count").is_err());
    assert_eq!(r.read_handler("c", "class").unwrap(), "Counter");
}

#[test]
fn stop_handle_ends_an_endless_run() {
    let cfg = Config::parse("t", "s :: InfiniteSource -> Discard;", &BTreeMap::new()).unwrap();
    let mut r = Router::new(cfg.build(&Registry::standard()).unwrap()).unwrap();
    let h = r.stop_handle();
    let t = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(50));
        h.stop();
    });
    r.run().unwrap();
    t.join().unwrap();
    assert!(count(&r, "s") > 0);
}

fn tcp(src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16, flags: &str, ts: u64) -> Packet {
    let mut b = PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4(src, dst, 64)
        .tcp(sp, dp, 100, 1000);
    for f in flags.chars() {
        b = match f {
            'S' => b.syn(),
            'A' => b.ack(1),
            'F' => b.fin(),
            'R' => b.rst(),
            _ => b,
        };
    }
    let mut v = Vec::new();
    b.write(&mut v, &[]).unwrap();
    let mut p = Packet::from_slice(&v);
    p.anno.timestamp = Timestamp(ts * 1_000_000_000);
    p
}

#[test]
fn conntrack_follows_tcp_and_reports_through_the_sink() {
    let c = [10, 0, 0, 1];
    let s = [10, 0, 0, 2];
    let mut g = Graph::new();
    let idle = g.add("idle", nf_core::elements::standard::Idle);
    let ct = g.add("ct", ConnTrack::new(16));
    let d = g.add("d", Discard::new());
    g.chain(&[idle.id(), ct.id(), d.id()]);
    let mut r = Router::new(g).unwrap();
    let log: Arc<Mutex<Vec<(ChangeKind, ProtoState)>>> = Arc::default();
    let l2 = log.clone();
    r.element_mut(ct).unwrap().table_mut().set_sink(Box::new(
        move |ch: &StateChange<'_, FlowKey, nf_core::elements::tcpudp::Connection>| {
            l2.lock().unwrap().push((ch.kind, ch.value.state));
        },
    ));
    let key = FlowKey::new(6, c.into(), 4000, s.into(), 80);
    let push = |r: &mut Router, p: Packet| {
        let mut b: nf_core::Batch = std::iter::once(p).collect();
        r.push_batch(ct.id(), 0, &mut b);
    };
    // A mid-stream packet of an unknown flow is not tracked.
    push(&mut r, tcp(c, 4000, s, 80, "A", 1));
    push(&mut r, tcp(c, 4000, s, 80, "S", 1));
    push(&mut r, tcp(s, 80, c, 4000, "SA", 1));
    push(&mut r, tcp(c, 4000, s, 80, "A", 2));
    push(&mut r, tcp(c, 4000, s, 80, "FA", 3));
    push(&mut r, tcp(s, 80, c, 4000, "FA", 3));
    push(&mut r, tcp(c, 4000, s, 80, "A", 4));
    let st = r
        .element(ct)
        .unwrap()
        .lookup(&key.reversed())
        .unwrap()
        .state;
    assert_eq!(st, ProtoState::Tcp(TcpState::TimeWait));
    assert_eq!(r.read_handler("ct", "untracked").unwrap(), "1");
    // An idle flow expires when later traffic arrives (the sweep runs per batch, on packet time).
    for i in 0..20u16 {
        push(&mut r, tcp([10, 0, 1, 1], 5000 + i, s, 80, "S", 1000));
    }
    let log = log.lock().unwrap();
    let kinds: Vec<_> = log.iter().take(6).cloned().collect();
    assert_eq!(
        kinds,
        vec![
            (ChangeKind::Insert, ProtoState::Tcp(TcpState::SynSent)),
            (ChangeKind::Update, ProtoState::Tcp(TcpState::SynRecv)),
            (ChangeKind::Update, ProtoState::Tcp(TcpState::Established)),
            (ChangeKind::Update, ProtoState::Tcp(TcpState::FinWait)),
            (ChangeKind::Update, ProtoState::Tcp(TcpState::LastAck)),
            (ChangeKind::Update, ProtoState::Tcp(TcpState::TimeWait)),
        ]
    );
    assert!(
        log.iter()
            .any(|(k, _)| *k == ChangeKind::Remove(RemoveReason::Expired))
    );
    // The table is bounded: 16 entries at most, the rest evicted and counted.
    assert_eq!(r.read_handler("ct", "flows").unwrap(), "16");
    assert!(
        r.read_handler("ct", "evicted")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 4
    );
}

#[test]
fn sharded_replay_hands_each_shard_its_own_frames_in_sequence_order() {
    let cfg = TrafficConfig {
        flows: 300,
        ..Default::default()
    };
    // 1,000 distinct frames, sent 2.5 times around.
    let frames: Vec<Vec<u8>> = {
        let mut g = nf_core::traffic::TrafficGen::new(cfg);
        (0..1000).map(|_| g.next_frame().to_vec()).collect()
    };
    let whole: Vec<&Vec<u8>> = frames.iter().cycle().take(2500).collect();
    let seen: Vec<Recorded> = (0..2).map(|_| Default::default()).collect();
    let mut sh = ShardedRouter::new(2, |shard| {
        let mut g = Graph::new();
        let s = g.add("src", Replay::from_frames(&frames).limit(2500));
        let c = g.add("c", Recorder(seen[shard].clone()));
        g.chain(&[s.id(), c.id()]);
        Ok(g)
    })
    .unwrap();
    sh.run().unwrap();
    let merged = nf_core::testing::merged_shard_records(&seen, 800);
    assert_eq!(merged.len(), 2500);
    for (i, (ts, f)) in merged.iter().enumerate() {
        // Stamped by position in the whole sequence: 100 ns apart.
        assert_eq!(*ts, 1_000_000_000 + (i as u64 + 1) * 100);
        assert_eq!(f, whole[i], "position {i}");
    }
}

#[test]
fn sharded_runtime_keeps_each_flow_on_one_shard() {
    let cfg = TrafficConfig {
        flows: 5000,
        ..Default::default()
    };
    let single = {
        let mut g = Graph::new();
        let s = g.add("src", Replay::generated(50_000, cfg).limit(200_000));
        let ct = g.add("ct", ConnTrack::new(1 << 16));
        let d = g.add("d", Discard::new());
        g.chain(&[s.id(), ct.id(), d.id()]);
        let mut r = Router::new(g).unwrap();
        r.run().unwrap();
        r.read_handler("ct", "flows")
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    assert_eq!(single, 5000);
    let mut sh = ShardedRouter::new(2, |_| {
        let mut g = Graph::new();
        let s = g.add("src", Replay::generated(50_000, cfg).limit(200_000));
        let ct = g.add("ct", ConnTrack::new(1 << 16));
        let d = g.add("d", Discard::new());
        g.chain(&[s.id(), ct.id(), d.id()]);
        Ok(g)
    })
    .unwrap();
    sh.run().unwrap();
    let mut keys = std::collections::HashSet::new();
    let mut per_shard = Vec::new();
    for r in sh.shards() {
        let ct: &ConnTrack = r.element_by_name("ct").unwrap();
        let mut n = 0;
        ct.table().for_each(|k, c| {
            assert!(keys.insert(*k), "flow {k} tracked by two shards");
            // Both directions arrived at this shard (the flows are bidirectional).
            assert!(c.packets[0] > 0 && c.packets[1] > 0, "{k}: {:?}", c.packets);
            n += 1;
        });
        per_shard.push(n);
    }
    assert_eq!(keys.len() as u64, single);
    assert!(
        per_shard.iter().all(|&n| n > 1000),
        "unbalanced shards: {per_shard:?}"
    );
    let h = sh.handlers();
    let total: u64 = h
        .iter()
        .filter(|v| v.element == "ct" && v.handler == "count")
        .map(|v| v.value.parse::<u64>().unwrap())
        .sum();
    let untracked: u64 = h
        .iter()
        .filter(|v| v.element == "ct" && v.handler == "untracked")
        .map(|v| v.value.parse::<u64>().unwrap())
        .sum();
    assert_eq!(total + untracked, 200_000);
}

#[test]
fn timers_expire_idle_flows_without_traffic() {
    // UDP flows with a 1-second timeout; after the source stops, a queue keeps the run alive while the
    // tracker's timer sweeps on its own (no packet arrives to drive expiry).
    let text = "src :: InfiniteSource(LIMIT 20, FLOWS 20, STOP true) -> SetTimestamp -> ct :: ConnTrack(UDP_UNREPLIED 1) -> Discard;
                RatedSource(10, LIMIT 20, BURST 1, STOP true) -> Discard;";
    let r = run_config(text).unwrap();
    assert_eq!(r.read_handler("ct", "inserts").unwrap(), "20");
    assert_eq!(
        r.read_handler("ct", "expired").unwrap(),
        "20",
        "the timer expired every idle flow"
    );
    assert_eq!(r.read_handler("ct", "flows").unwrap(), "0");
}

/// Found by the `config` fuzz target: a multi-byte character inside an argument list split the argument
/// in the middle of the character (a panic); it is now one piece of an argument, and a clear error.
#[test]
fn multi_byte_characters_in_arguments_are_errors_not_panics() {
    let reg = nf_core::Registry::standard();
    for text in [
        "Idle -> c :: Classifier(12/0800, tԏdp, -) -> Discard; c[1] -> Discard; c[2] -> Discard;",
        "Idle -> Counter(é) -> Discard;",
        "Idle -> Paint(日本) -> Discard;",
    ] {
        let r = nf_core::testing::check_config(&reg, "t.click", text);
        assert!(r.is_some(), "an error for {text}");
    }
}

fn error_of(text: &str) -> String {
    let reg = nf_core::Registry::standard();
    nf_core::testing::check_config_with_budget(&reg, "t.click", text, 64 << 20)
        .unwrap_or_else(|| panic!("an error for {text}"))
}

/// Found by the `config` fuzz target (an out-of-memory): a compound class that contains itself, or
/// compounds nested so that they multiply, and sizes that make elements allocate without bound, are
/// configuration errors naming the place, before anything large is allocated.
#[test]
fn what_a_configuration_can_allocate_is_bounded() {
    let e = error_of("elementclass A { input -> x :: A -> output; }\nIdle -> a :: A -> Discard;");
    assert!(e.contains("compound class `A` contains itself"), "{e}");
    assert!(e.contains("t.click:1:"), "names the place: {e}");
    // Eight compounds each holding four of the next: 4^8 = 65,536 leaves... then x4 again.
    let mut text = String::from("elementclass C0 { input -> Null -> output; }\n");
    for i in 1..=10 {
        let p = i - 1;
        text.push_str(&format!(
            "elementclass C{i} {{ input -> C{p} -> C{p} -> C{p} -> C{p} -> output; }}\n"
        ));
    }
    text.push_str("Idle -> C10 -> Discard;\n");
    let e = error_of(&text);
    assert!(e.contains("expands to more than"), "{e}");

    let e = error_of("Replay(PACKETS 16000000, LENGTH 1500) -> Discard;");
    assert!(e.contains("PACKETS × LENGTH would take"), "{e}");
    assert!(e.contains("t.click:1:"), "{e}");
    let e = error_of("Replay(PACKETS 99999999999) -> Discard;");
    assert!(
        e.contains("PACKETS 99999999999 is more than the limit"),
        "{e}"
    );
    // The budget is shared: two Replays that fit alone do not fit together.
    let one = "Replay(PACKETS 400000, LENGTH 100) -> Discard;";
    assert!(
        nf_core::testing::check_config_with_budget(
            &nf_core::Registry::standard(),
            "t",
            one,
            64 << 20
        )
        .is_none()
    );
    let e = error_of(&format!("{one}\n{one}"));
    assert!(e.contains("t.click:2:"), "the second one is refused: {e}");

    let e = error_of("Idle -> Queue(99999999999) -> Unqueue -> Discard;");
    assert!(
        e.contains("CAPACITY 99999999999 is more than the limit"),
        "{e}"
    );
    let e = error_of("Idle -> ConnTrack(CAPACITY 18446744073709551615) -> Discard;");
    assert!(e.contains("is more than the limit 268435456"), "{e}");
    let e = error_of("Idle -> t :: Tee(2); t[4000000000] -> Discard;");
    assert!(e.contains("port 4000000000 is out of range"), "{e}");
    let e = error_of("Idle -> Tee(N 99999999) -> Discard;");
    assert!(e.contains("N is more than 4096 outputs"), "{e}");
}

/// The input the fuzzer found, replayed: errors, quickly, in bounded memory.
#[test]
fn the_fuzzers_out_of_memory_input_is_an_error() {
    let text = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fuzz/regressions/config/oom-replay"
    ))
    .unwrap();
    let e = error_of(&String::from_utf8(text).unwrap());
    assert!(
        e.contains("compound class `CountAndDrop` contains itself"),
        "{e}"
    );
}

/// Found replaying the `ip_expr` fuzz corpus in a test thread: 800 nested parentheses and `!`s overflowed the
/// parser's stack. Nesting and length are bounded, with an error.
#[test]
fn deeply_nested_or_huge_ip_expressions_are_errors() {
    use nf_core::elements::ip::expr::{Expr, MAX_DEPTH, MAX_TERMS};
    let deep = format!(
        "{}tcp{}",
        "(".repeat(MAX_DEPTH + 1),
        ")".repeat(MAX_DEPTH + 1)
    );
    assert!(Expr::parse(&deep).unwrap_err().contains("nests more than"));
    let nots = format!("{}tcp", "not ".repeat(10_000));
    assert!(Expr::parse(&nots).unwrap_err().contains("nests more than"));
    let ok = format!("{}tcp{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
    assert!(Expr::parse(&ok).is_ok());
    let long = vec!["tcp"; MAX_TERMS + 1].join(" or ");
    assert!(Expr::parse(&long).unwrap_err().contains("more than"));
    assert!(Expr::parse(&vec!["tcp"; MAX_TERMS].join(" or ")).is_ok());
}

#[test]
fn a_misspelt_keyword_is_answered_with_the_one_meant() {
    let cfg = Config::parse("t", "InfiniteSource(LIMT 10) -> Discard;", &BTreeMap::new()).unwrap();
    let e = cfg.build(&Registry::standard()).unwrap_err().to_string();
    assert!(e.contains("unknown keyword argument LIMT"), "{e}");
    assert!(e.contains("did you mean LIMIT?"), "{e}");
    assert!(e.contains("t:1:16"), "{e}");
    // Far from every keyword: the keywords are listed instead.
    let cfg = Config::parse("t", "Counter(ZZZZZZ 1) -> Discard;", &BTreeMap::new()).unwrap();
    let e = cfg.build(&Registry::standard()).unwrap_err().to_string();
    assert!(e.contains("unknown keyword argument ZZZZZZ"), "{e}");
}

#[test]
fn settings_the_configuration_never_reads_are_reported() {
    let params: BTreeMap<String, String> = [("N", "3"), ("FILE", "x"), ("n", "1")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let cfg = Config::parse(
        "t",
        "define($N 5); InfiniteSource(LIMIT $N) -> Discard;",
        &params,
    )
    .unwrap();
    assert_eq!(cfg.unused_params(&params), vec!["FILE", "n"]);
    assert!(cfg.variables_read.contains("N"));
}
