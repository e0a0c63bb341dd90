//! Metron's elasticity: buckets of flows moved between shards while packets flow, with the flows' state
//! (`ConnTrack`'s connections, `LoadBalancer`'s backends). Checked against a one-shard run of the same
//! capture: every packet leaves the same way, every flow keeps one backend, and each flow's packets are
//! processed in their order by one shard at a time.

use nf_core::batch::{Batch, Outputs};
use nf_core::element::{Element, PortSpec};
use nf_core::traffic::{Spread, TrafficConfig, TrafficGen};
use nf_core::{Config, FlowKey, Link, Packet, Registry, Router, ShardedRouter, Timestamp};
use nf_drivers::io::pcap::PcapFileWriter;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nf-elastic-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn gen_pcap(path: &Path, n: u64, flows: usize) {
    gen_spread(path, n, flows, Spread::Even);
}

fn gen_spread(path: &Path, n: u64, flows: usize, spread: Spread) {
    let mut g = TrafficGen::new(TrafficConfig {
        flows,
        seed: 7,
        spread,
        ..Default::default()
    });
    let mut w = PcapFileWriter::create(path, 65535, false, pcap_file::DataLink::ETHERNET).unwrap();
    for i in 0..n {
        w.write(
            Timestamp(1_700_000_000_000_000_000 + i * 1_000),
            g.next_frame(),
        )
        .unwrap();
    }
    w.close().unwrap();
}

/// One packet as a `Log` saw it.
#[derive(Clone, Debug)]
struct Seen {
    /// Global order of processing (one counter for every shard).
    order: u64,
    /// Capture timestamp: the packet's identity.
    ts: u64,
    /// Which log.
    tag: &'static str,
    /// The packet's flow (canonical five-tuple).
    flow: FlowKey,
    /// Destination endpoint as it left (the backend, for the balancer's output).
    dst: String,
    shard: usize,
}

#[derive(Default)]
struct Journal {
    next: AtomicU64,
    seen: Mutex<Vec<Seen>>,
}

/// A sink that journals every packet.
struct Log {
    tag: &'static str,
    shard: usize,
    journal: Arc<Journal>,
}

impl Element for Log {
    fn class_name(&self) -> &'static str {
        "Log"
    }
    fn ports(&self) -> PortSpec {
        nf_core::testing::SINK
    }
    fn initialize(&mut self, ctx: &nf_core::InitContext<'_>) -> Result<(), String> {
        self.shard = ctx.shard;
        Ok(())
    }
    fn push(&mut self, _port: usize, batch: &mut Batch, _out: &mut Outputs) {
        let mut v = self.journal.seen.lock().unwrap();
        for p in batch.iter_mut() {
            let ts = p.anno.timestamp.0;
            let mut q = Packet::from_slice(p.data());
            let Ok(k) = FlowKey::from_packet(&mut q, Link::Ethernet) else {
                continue;
            };
            v.push(Seen {
                order: self.journal.next.fetch_add(1, Ordering::SeqCst),
                ts,
                tag: self.tag,
                flow: k.canonical().0,
                dst: format!("{}:{}", k.dst(), k.dst_port()),
                shard: self.shard,
            });
        }
        batch.clear();
    }
}

const GRAPH: &str = "
    src :: FromPcap($IN, BURST 32, LOOP 3);
    src -> ct :: ConnTrack(CAPACITY 100000);
    ct[0] -> dir :: Classifier(23/06 36/0050, 23/06 34/0050, -);
    ct[1] -> Log(untracked);
    dir[2] -> Log(other);
    dir[0] -> [0]lb :: LoadBalancer(VIP 192.168.0.1:80, LOOSE_VIP true, POLICY roundrobin,
        STRICT_REPLIES false, CAPACITY 100000,
        BACKENDS 10.1.0.1:8080 10.1.0.2:8080 10.1.0.3:8080 10.1.0.4:8080 10.1.0.5:8080);
    dir[1] -> [1]lb;
    lb[0] -> Log(balanced);
    lb[1] -> Log(replies);
    lb[2] -> Log(stray);
";

fn registry(journal: &Arc<Journal>) -> Registry {
    let mut reg = nf_drivers::registry();
    let j = journal.clone();
    reg.register(
        "Log",
        "journals packets (test)",
        move |a: &mut nf_core::Args| {
            let tag: String = a.read_mp("TAG")?;
            let tag: &'static str = match tag.as_str() {
                "untracked" => "untracked",
                "balanced" => "balanced",
                "replies" => "replies",
                "stray" => "stray",
                _ => "other",
            };
            Ok(Log {
                tag,
                shard: 0,
                journal: j.clone(),
            })
        },
    );
    reg
}

fn config(path: &Path) -> Config {
    let p: BTreeMap<String, String> = [("IN".to_string(), path.display().to_string())].into();
    Config::parse("t", GRAPH, &p).unwrap()
}

/// A shard's handler as a number.
fn handler(r: &Router, e: &str, h: &str) -> u64 {
    r.read_handler(e, h).unwrap().parse().unwrap()
}

#[test]
fn buckets_move_under_traffic_with_their_state() {
    let path = tmp("moves.pcap");
    gen_pcap(&path, 60_000, 2_000);

    // The reference: one shard.
    let reference = Arc::new(Journal::default());
    let mut one = Router::new(config(&path).build(&registry(&reference)).unwrap()).unwrap();
    one.run().unwrap();
    let reference = std::mem::take(&mut *reference.seen.lock().unwrap());
    assert_eq!(reference.len(), 180_000);
    assert_eq!(handler(&one, "lb", "unknown"), 0);

    // Two shards, buckets moved every millisecond or so while the run goes.
    let journal = Arc::new(Journal::default());
    let reg = registry(&journal);
    let cfg = config(&path);
    let mut sh = ShardedRouter::new(2, |_| Ok(cfg.build(&reg)?)).unwrap();
    let steering = sh.steering().clone();
    assert!(steering.movable(), "{:?}", steering.why_fixed());
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mover = {
        let (steering, done) = (steering.clone(), done.clone());
        std::thread::spawn(move || {
            let mut rng = 0x9e37_79b9_7f4a_7c15u64;
            let mut requested = 0u64;
            while !done.load(Ordering::Acquire) {
                for _ in 0..8 {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let bucket = (rng % nf_core::indirection::BUCKETS as u64) as usize;
                    let to = (rng >> 32) as usize % 2;
                    if let Ok(Some(_)) = steering.request_move(bucket, to) {
                        requested += 1;
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            requested
        })
    };
    sh.run().unwrap();
    done.store(true, Ordering::Release);
    let requested = mover.join().unwrap();
    let stats = steering.stats();
    eprintln!("requested {requested}, {stats:?}");
    assert!(stats.completed >= 20, "{stats:?}");
    assert!(stats.entries_moved > 0, "{stats:?}");

    let seen = std::mem::take(&mut *journal.seen.lock().unwrap());
    assert_eq!(seen.len(), reference.len(), "every packet came out once");
    // Every packet left the way it left the one-shard run (a connection that lost its state would make
    // its packets untracked).
    let by_ts: HashMap<u64, &Seen> = reference.iter().map(|s| (s.ts, s)).collect();
    for s in &seen {
        let r = by_ts[&s.ts];
        assert_eq!(s.tag, r.tag, "packet {} of {:?}", s.ts, s.flow);
    }
    let untracked = seen.iter().filter(|s| s.tag == "untracked").count();
    assert_eq!(
        untracked,
        reference.iter().filter(|s| s.tag == "untracked").count()
    );
    // Every flow kept one backend (round robin: a flow that lost its entry would be given the next).
    let mut backend: HashMap<FlowKey, &str> = HashMap::new();
    for s in seen.iter().filter(|s| s.tag == "balanced") {
        let b = backend.entry(s.flow).or_insert(&s.dst);
        assert_eq!(*b, s.dst, "flow {:?} changed backend", s.flow);
    }
    let unknown: u64 = sh
        .shards()
        .iter()
        .map(|r| handler(r, "lb", "unknown"))
        .sum();
    assert_eq!(unknown, 0, "no balanced flow was unknown to its shard");
    // Each flow's packets were processed in capture order, and moved: some flows ran on both shards.
    let mut by_flow: HashMap<FlowKey, Vec<&Seen>> = HashMap::new();
    for s in &seen {
        by_flow.entry(s.flow).or_default().push(s);
    }
    let mut moved_flows = 0;
    for (f, mut v) in by_flow {
        v.sort_by_key(|s| s.order);
        assert!(
            v.windows(2).all(|w| w[0].ts < w[1].ts),
            "flow {f:?} out of order"
        );
        moved_flows += usize::from(v.iter().any(|s| s.shard != v[0].shard));
    }
    assert!(moved_flows > 100, "{moved_flows} flows changed shards");
}

/// The controller balances a capture that static RSS splits 80/20: it moves buckets from the busy shard
/// to the idle one until the shares are within a few percent, and every packet still leaves as in a
/// one-shard run.
#[test]
fn the_controller_balances_a_skewed_capture() {
    let path = tmp("skewed.pcap");
    gen_spread(&path, 60_000, 2_000, Spread::ShardSkew { percent: 80 });
    let reference = Arc::new(Journal::default());
    let mut one = Router::new(config(&path).build(&registry(&reference)).unwrap()).unwrap();
    one.run().unwrap();
    let reference = std::mem::take(&mut *reference.seen.lock().unwrap());

    let run = |balance: bool| {
        let journal = Arc::new(Journal::default());
        let reg = registry(&journal);
        let cfg = config(&path);
        let mut sh = ShardedRouter::new(2, |_| Ok(cfg.build(&reg)?)).unwrap();
        if balance {
            sh.steering()
                .set_balance(Some(nf_core::indirection::Balance::default()));
        }
        sh.run().unwrap();
        let per: Vec<u64> = sh.shards().iter().map(|r| r.run_stats().packets).collect();
        let seen = std::mem::take(&mut *journal.seen.lock().unwrap());
        (per, sh.steering().stats(), seen, sh.steering().shares())
    };
    let (stat, _, _, _) = run(false);
    let total: u64 = stat.iter().sum();
    assert_eq!(stat[0] * 100 / total, 80, "static: {stat:?}");
    let (per, stats, seen, shares) = run(true);
    eprintln!("balanced: {per:?} {stats:?}, shares at the last look {shares:?}");
    assert_eq!(per.iter().sum::<u64>(), total);
    // Over the whole run, the first epochs (80/20 until the first moves take effect) included.
    assert!(per[0] * 100 / total <= 60, "balanced: {per:?}, {stats:?}");
    // At the end, within the controller's tolerance (4 %) and some noise.
    assert!(
        shares.iter().all(|&s| (440..=560).contains(&s)),
        "{shares:?}"
    );
    assert!(stats.rebalanced > 0, "{stats:?}");
    assert!(stats.completed > 0 && stats.entries_moved > 0, "{stats:?}");
    assert_eq!(seen.len(), reference.len());
    let by_ts: HashMap<u64, &Seen> = reference.iter().map(|s| (s.ts, s)).collect();
    for s in &seen {
        assert_eq!(s.tag, by_ts[&s.ts].tag, "packet {} of {:?}", s.ts, s.flow);
    }
}

#[test]
fn a_run_that_cannot_follow_epochs_refuses_moves() {
    let reg = nf_drivers::registry();
    let cfg = Config::parse(
        "t",
        "InfiniteSource(LIMIT 100, STOP true) -> ConnTrack -> Discard;",
        &Default::default(),
    )
    .unwrap();
    let sh = ShardedRouter::new(2, |_| Ok(cfg.build(&reg)?)).unwrap();
    let err = sh.steering().request_move(3, 0).unwrap_err();
    assert!(err.to_string().contains("epochs"), "{err}");
}

/// The control socket shows the run's table and moves, moves a bucket on request and turns the
/// controller on and off.
#[test]
fn the_control_socket_reads_and_moves_buckets() {
    use nf_core::control::{Client, ControlConfig, ControlServer, Listen};
    use std::time::Duration;
    let path = tmp("control.pcap");
    gen_pcap(&path, 20_000, 500);
    let text = format!(
        "FromPcap({}, LOOP true) -> ct :: ConnTrack -> Discard;",
        path.display()
    );
    let cfg = Config::parse("t", &text, &Default::default()).unwrap();
    let reg = nf_drivers::registry();
    let mut sh = ShardedRouter::new(2, |_| Ok(cfg.build(&reg)?)).unwrap();
    let server = ControlServer::start_sharded(
        &mut sh,
        &[Listen::parse("tcp:127.0.0.1:0").unwrap()],
        ControlConfig::default(),
    )
    .unwrap();
    let stop = sh.stop_handle();
    let run = std::thread::spawn(move || {
        sh.run().unwrap();
        sh
    });
    let t = Duration::from_secs(10);
    let mut c = Client::connect(&server.local_addrs()[0], t).unwrap();
    let mut read = |h: &str| c.read(h).unwrap().data.unwrap_or_default();
    assert_eq!(read("steering.movable"), "yes");
    assert_eq!(read("steering.buckets"), "256 / 256");
    assert!(read("steering.table").starts_with("0:0 1:1 2:0 "));
    assert!(read("steering.loads").starts_with("controller off"));
    let mut write = |h: &str, v: &str| c.command(&format!("WRITE {h} {v}"), None).unwrap();
    assert_eq!(write("steering.move", "0 1").code, 200);
    let refused = write("steering.move", "0 7");
    assert_eq!(refused.code, 520, "{refused:?}");
    assert_eq!(write("steering.move", "zero").code, 520);
    let mut c = Client::connect(&server.local_addrs()[0], t).unwrap();
    let mut read = |h: &str| c.read(h).unwrap().data.unwrap_or_default();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let moves = read("steering.moves");
        if moves.contains("completed 1 ") || std::time::Instant::now() > deadline {
            assert!(
                moves.starts_with("scheduled 1 completed 1 in_flight 0"),
                "{moves}"
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(read("steering.buckets"), "255 / 257");
    assert!(read("steering.table").starts_with("0-1:1 2:0 3:1 "));
    let mut c = Client::connect(&server.local_addrs()[0], t).unwrap();
    assert_eq!(
        c.command("WRITE steering.balance on", None).unwrap().code,
        200
    );
    let loads = c.read("steering.loads").unwrap().data.unwrap_or_default();
    assert!(loads.starts_with("controller on"), "{loads}");
    assert_eq!(
        c.command("WRITE steering.balance off", None).unwrap().code,
        200
    );
    stop.stop();
    let sh = run.join().unwrap();
    assert!(sh.steering().stats().completed >= 1);
}

/// A run built with three shards starts on two, grows to three, then shrinks to one while packets flow:
/// the added shard takes a third of the flows, the removed ones hand theirs over, and every packet
/// leaves as in a one-shard run.
#[test]
fn shards_are_added_and_removed_while_the_run_goes() {
    let path = tmp("grow.pcap");
    gen_pcap(&path, 60_000, 2_000);
    let reference = Arc::new(Journal::default());
    let mut one = Router::new(config(&path).build(&registry(&reference)).unwrap()).unwrap();
    one.run().unwrap();
    let reference = std::mem::take(&mut *reference.seen.lock().unwrap());

    let journal = Arc::new(Journal::default());
    let reg = registry(&journal);
    let cfg = config(&path);
    let mut sh = ShardedRouter::new_elastic(3, 2, |_| Ok(cfg.build(&reg)?)).unwrap();
    let steering = sh.steering().clone();
    assert_eq!(steering.table().buckets_per_shard(), vec![256, 256]);
    let changer = {
        let steering = steering.clone();
        std::thread::spawn(move || {
            // Each change once the last one's moves are done (a change refuses while buckets move).
            let mut log = Vec::new();
            for n in [3, 1] {
                std::thread::sleep(std::time::Duration::from_millis(150));
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                loop {
                    match steering.set_shards(n) {
                        Ok(m) => {
                            log.push((n, m.len()));
                            break;
                        }
                        Err(_) if std::time::Instant::now() < deadline => {
                            std::thread::sleep(std::time::Duration::from_millis(1))
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            log
        })
    };
    sh.run().unwrap();
    let log = changer.join().unwrap();
    let stats = steering.stats();
    let per: Vec<u64> = sh.shards().iter().map(|r| r.run_stats().packets).collect();
    eprintln!("changes {log:?}, {stats:?}, packets per shard {per:?}");
    assert_eq!(log, vec![(3, 170), (1, 341)]);
    assert!(per[2] > 0, "the added shard took flows: {per:?}");
    let seen = std::mem::take(&mut *journal.seen.lock().unwrap());
    assert_eq!(seen.len(), reference.len(), "every packet once");
    let by_ts: HashMap<u64, &Seen> = reference.iter().map(|s| (s.ts, s)).collect();
    for s in &seen {
        assert_eq!(s.tag, by_ts[&s.ts].tag, "packet {} of {:?}", s.ts, s.flow);
    }
    // At the end, one shard takes everything: the last packets all ran on it.
    if stats.completed == stats.scheduled {
        let last = seen.iter().max_by_key(|s| s.order).map(|s| s.shard);
        assert_eq!(last, Some(0));
        assert_eq!(steering.table().buckets_per_shard(), vec![512]);
    }
}
