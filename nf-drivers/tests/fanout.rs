//! Two shards over `FromDevice` on a real veth pair (needs root, as CI has): with `FANOUT table` the
//! kernel runs the indirection table's classic BPF program and hands each frame to the shard the table
//! names (the shard `frame_shard` computes), against `PACKET_FANOUT_HASH`, the kernel's own hash; both
//! spread flows evenly and keep each flow's frames in order.

use nf_core::elements::standard::Replay;
use nf_core::testing::{Recorded, Recorder};
use nf_core::traffic::{SizeMix, TrafficConfig, TrafficGen};
use nf_core::{Graph, Router, ShardedRouter};
use nf_drivers::io::{FromDevice, ToDevice};
use std::collections::HashMap;
use std::time::{Duration, Instant};

mod support {
    pub mod veth;
}
use support::veth::Veth;

/// `n` frames over 400 flows, each numbered in its last four bytes (the frame's index).
fn frames(n: usize) -> Vec<Vec<u8>> {
    let mut g = TrafficGen::new(TrafficConfig {
        flows: 400,
        size: SizeMix::Fixed(128),
        ..Default::default()
    });
    (0..n)
        .map(|i| {
            let mut f = g.next_frame().to_vec();
            let at = f.len() - 4;
            f[at..].copy_from_slice(&(i as u32).to_be_bytes());
            f
        })
        .collect()
}

fn index(f: &[u8]) -> u32 {
    bytes::Buf::get_u32(&mut &f[f.len() - 4..])
}

/// Each shard's recorded frames (timestamp and bytes).
type PerShard = Vec<Vec<(u64, Vec<u8>)>>;

/// What one mode saw: frames each shard's socket received, and each shard's recorded frames.
fn run_mode(by_table: bool, sent: &[Vec<u8>]) -> (Vec<u64>, PerShard) {
    let v = Veth::new("nff", if by_table { "t" } else { "h" });
    let seen: Vec<Recorded> = (0..2).map(|_| Default::default()).collect();
    let mut rx = ShardedRouter::new(2, |s| {
        let mut g = Graph::new();
        let src = g.add(
            "src",
            FromDevice::new(&v.0)
                .fanout_by_table(by_table)
                .copybreak(64),
        );
        let rec = g.add("rec", Recorder(seen[s].clone()));
        g.connect(src.id(), 0, rec.id(), 0);
        Ok(g)
    })
    .unwrap();
    let stop = rx.stop_handle();
    let total = sent.len();
    let recorded = seen.clone();
    let run = std::thread::spawn(move || {
        rx.run().unwrap();
        rx
    });
    let mut g = Graph::new();
    let src = g.add("src", Replay::from_frames(sent).limit(total as u64));
    let out = g.add("out", ToDevice::new(&v.1));
    g.connect(src.id(), 0, out.id(), 0);
    std::thread::sleep(Duration::from_millis(100));
    Router::new(g).unwrap().run().unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    let got = || -> usize { recorded.iter().map(|r| r.lock().unwrap().len()).sum() };
    while got() < total && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.stop();
    let rx = run.join().unwrap();
    let per_socket = rx
        .shards()
        .iter()
        .map(|r| r.read_handler("src", "count").unwrap().parse().unwrap())
        .collect();
    let per_shard = seen
        .iter()
        .map(|r| std::mem::take(&mut *r.lock().unwrap()))
        .collect();
    (per_socket, per_shard)
}

#[test]
fn the_kernel_follows_the_table_and_both_fanouts_keep_flows_whole_and_in_order() {
    let sent = frames(4000);
    let want0 = sent
        .iter()
        .filter(|f| nf_core::flow::frame_shard(f, 2) == 0)
        .count() as u64;
    for by_table in [true, false] {
        let (sockets, shards) = run_mode(by_table, &sent);
        let mode = if by_table { "table" } else { "hash" };
        eprintln!("{mode}: frames per socket {sockets:?}");
        assert_eq!(sockets.iter().sum::<u64>(), sent.len() as u64, "{mode}");
        // Even enough: 400 flows over two shards.
        assert!(sockets.iter().all(|&n| n > 1200), "{mode}: {sockets:?}");
        if by_table {
            assert_eq!(sockets[0], want0, "the kernel's split is the table's");
        }
        let mut last: HashMap<Vec<u8>, u32> = HashMap::new();
        for (s, frames) in shards.iter().enumerate() {
            for (_, f) in frames {
                // Every frame on the shard that owns its flow (in hash mode, after the runtime's hand-off).
                assert_eq!(nf_core::flow::frame_shard(f, 2), s, "{mode}");
                // Each flow's frames in order: the flow by its addresses and ports, both directions apart.
                let flow = f[26..38].to_vec();
                let i = index(f);
                if let Some(&prev) = last.get(&flow) {
                    assert!(prev < i, "{mode}: frame {i} after {prev} in its flow");
                }
                last.insert(flow, i);
            }
        }
        let n: usize = shards.iter().map(Vec::len).sum();
        assert_eq!(n, sent.len(), "{mode}: every frame once");
    }
}

/// A packet as a shard's `Log` saw it, in the order all shards processed packets.
struct Logged {
    order: u64,
    index: u32,
    flow: Vec<u8>,
    shard: usize,
    tracked: bool,
}

#[derive(Default)]
struct Journal {
    next: std::sync::atomic::AtomicU64,
    seen: std::sync::Mutex<Vec<Logged>>,
}

struct Log {
    journal: std::sync::Arc<Journal>,
    shard: usize,
    tracked: bool,
}

impl nf_core::Element for Log {
    fn class_name(&self) -> &'static str {
        "Log"
    }
    fn ports(&self) -> nf_core::PortSpec {
        nf_core::testing::SINK
    }
    fn push(&mut self, _: usize, batch: &mut nf_core::Batch, _: &mut nf_core::Outputs) {
        let mut v = self.journal.seen.lock().unwrap();
        for p in batch.iter() {
            let f = p.data();
            // Both directions of a flow as one: the canonical order of its two endpoints.
            let (a, b) = (&f[26..32], &f[32..38]);
            let flow = if a <= b {
                [a, b].concat()
            } else {
                [b, a].concat()
            };
            v.push(Logged {
                order: self
                    .journal
                    .next
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst),
                index: index(f),
                flow,
                shard: self.shard,
                tracked: self.tracked,
            });
        }
        batch.clear();
    }
}

/// `n` TCP frames (`flows` flows, `spread` over them), each numbered in its last four bytes.
fn numbered(
    n: usize,
    flows: usize,
    protocols: nf_core::traffic::Protocols,
    spread: nf_core::traffic::Spread,
) -> Vec<Vec<u8>> {
    let mut g = TrafficGen::new(TrafficConfig {
        flows,
        size: SizeMix::Fixed(128),
        protocols,
        spread,
        ..Default::default()
    });
    (0..n)
        .map(|i| {
            let mut f = g.next_frame().to_vec();
            let at = f.len() - 4;
            f[at..].copy_from_slice(&(i as u32).to_be_bytes());
            f
        })
        .collect()
}

/// A sharded receiver on `dev`, `active` of `max` shards taking flows, each `FromDevice -> ConnTrack`
/// with tracked and untracked packets journaled (`tracked: false` with `ct` off: every packet journaled as
/// tracked, straight from the device). Started on a thread of its own.
fn live_receiver(
    dev: &str,
    max: usize,
    active: usize,
    journal: &std::sync::Arc<Journal>,
    ct: bool,
) -> (
    std::sync::Arc<nf_core::indirection::Steering>,
    nf_core::StopHandle,
    std::thread::JoinHandle<ShardedRouter>,
) {
    let mut rx = ShardedRouter::new_elastic(max, active, |s| {
        let mut g = Graph::new();
        let src = g.add("src", FromDevice::new(dev).copybreak(64));
        let log = |tracked| Log {
            journal: journal.clone(),
            shard: s,
            tracked,
        };
        let ok = g.add("ok", log(true));
        if ct {
            let ct = g.add("ct", nf_core::elements::tcpudp::ConnTrack::new(10_000));
            let bad = g.add("bad", log(false));
            g.connect(src.id(), 0, ct.id(), 0);
            g.connect(ct.id(), 0, ok.id(), 0);
            g.connect(ct.id(), 1, bad.id(), 0);
        } else {
            g.connect(src.id(), 0, ok.id(), 0);
        }
        Ok(g)
    })
    .unwrap();
    let steering = rx.steering().clone();
    assert!(steering.movable(), "{:?}", steering.why_fixed());
    let stop = rx.stop_handle();
    let run = std::thread::spawn(move || {
        rx.run().unwrap();
        rx
    });
    std::thread::sleep(Duration::from_millis(100));
    (steering, stop, run)
}

/// Sends frames out of an interface, a batch at a time.
struct Sender {
    tx: Router,
    out: usize,
}

impl Sender {
    fn new(dev: &str) -> Sender {
        let mut g = Graph::new();
        let idle = g.add("idle", nf_core::elements::standard::Idle).id();
        let out = g.add("out", ToDevice::new(dev)).id();
        g.connect(idle, 0, out, 0);
        Sender {
            tx: Router::new(g).unwrap(),
            out,
        }
    }
    fn send(&mut self, frames: &[Vec<u8>]) {
        for part in frames.chunks(32) {
            let mut b = nf_core::Batch::new();
            for f in part {
                b.push(nf_core::Packet::from_slice(f));
            }
            self.tx.push_batch(self.out, 0, &mut b);
        }
    }
    fn sent(&self) -> String {
        self.tx.read_handler("out", "count").unwrap()
    }
}

/// Waits until `journal` holds `n` packets (or 10 s passed), then takes them.
fn collect(journal: &Journal, n: usize) -> Vec<Logged> {
    let until = Instant::now() + Duration::from_secs(10);
    while journal.seen.lock().unwrap().len() < n && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::mem::take(&mut *journal.seen.lock().unwrap())
}

/// Every flow's packets processed in their order (by the journal's global order).
fn assert_flows_in_order(seen: &[Logged]) -> usize {
    let mut by_flow: HashMap<Vec<u8>, Vec<&Logged>> = HashMap::new();
    for l in seen {
        by_flow.entry(l.flow.clone()).or_default().push(l);
    }
    let mut moved = 0;
    for (_, mut v) in by_flow {
        v.sort_by_key(|l| l.order);
        assert!(
            v.windows(2).all(|w| w[0].index < w[1].index),
            "a flow out of order"
        );
        moved += usize::from(v.iter().any(|l| l.shard != v[0].shard));
    }
    moved
}

/// Buckets move between two live shards while TCP flows run through a connection tracker: the kernel's
/// program follows each move, the old owner hands the connections over, the new owner holds the
/// bucket's frames until they arrive, and no connection loses its state (no mid-stream packet is
/// untracked) or its order.
#[test]
fn buckets_move_between_live_shards_with_their_connections() {
    let v = Veth::new("nff", "m");
    let sent = numbered(
        24_000,
        300,
        nf_core::traffic::Protocols::Tcp,
        Default::default(),
    );
    let journal = std::sync::Arc::new(Journal::default());
    let (steering, stop, run) = live_receiver(&v.0, 2, 2, &journal, true);
    // The sender, on a thread of its own, in chunks a millisecond apart; two bucket moves requested
    // every few milliseconds meanwhile.
    let sender = {
        let (dev, sent) = (v.1.clone(), sent.clone());
        std::thread::spawn(move || {
            let mut tx = Sender::new(&dev);
            for chunk in sent.chunks(200) {
                tx.send(chunk);
                std::thread::sleep(Duration::from_millis(1));
            }
            tx.sent()
        })
    };
    let mut requested = 0;
    let mut r = 99u64;
    while !sender.is_finished() {
        for _ in 0..2 {
            r = r
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let bucket = (r >> 33) as usize % nf_core::indirection::BUCKETS;
            if let Ok(Some(_)) = steering.request_move(bucket, (r >> 20) as usize % 2) {
                requested += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(3));
    }
    assert_eq!(
        sender.join().unwrap(),
        sent.len().to_string(),
        "every frame sent"
    );
    let seen = collect(&journal, sent.len());
    stop.stop();
    let rx = run.join().unwrap();
    let stats = steering.stats();
    let sum = |h: &str| -> u64 {
        rx.shards()
            .iter()
            .map(|r| r.read_handler("src", h).unwrap().parse::<u64>().unwrap())
            .sum()
    };
    let (held, swaps) = (sum("held"), sum("swaps"));
    eprintln!("requested {requested}, {stats:?}, held {held}, program swaps {swaps}");
    assert_eq!(seen.len(), sent.len(), "every frame once");
    let untracked = seen.iter().filter(|l| !l.tracked).count();
    assert_eq!(untracked, 0, "a connection lost its state");
    assert!(stats.completed >= 10, "{stats:?}");
    assert!(
        stats.entries_moved > 0 && held > 0,
        "{stats:?}, held {held}"
    );
    assert!(swaps > 0);
    assert!(assert_flows_in_order(&seen) > 0, "no flow changed shards");
}

/// A live run built with two shards starts on one; the second is added, then removed, while TCP flows run:
/// the kernel's program follows, and no connection loses its state.
#[test]
fn a_live_shard_is_added_and_removed_with_its_connections() {
    let v = Veth::new("nff", "g");
    let sent = numbered(
        24_000,
        300,
        nf_core::traffic::Protocols::Tcp,
        Default::default(),
    );
    let journal = std::sync::Arc::new(Journal::default());
    let (steering, stop, run) = live_receiver(&v.0, 2, 1, &journal, true);
    let mut tx = Sender::new(&v.1);
    let mut changes = Vec::new();
    for (k, chunk) in sent.chunks(200).enumerate() {
        tx.send(chunk);
        std::thread::sleep(Duration::from_millis(1));
        // Two shards after a fifth of the traffic, one again after three fifths (once the moves are done).
        let want = if (24..72).contains(&k) { 2 } else { 1 };
        if steering.active_shards() != want
            && let Ok(m) = steering.set_shards(want)
        {
            changes.push((want, m.len()));
        }
    }
    let seen = collect(&journal, sent.len());
    stop.stop();
    let _rx = run.join().unwrap();
    let stats = steering.stats();
    eprintln!("changes {changes:?}, {stats:?}");
    assert_eq!(changes, vec![(2, 256), (1, 256)]);
    assert_eq!(seen.len(), sent.len(), "every frame once");
    let untracked = seen.iter().filter(|l| !l.tracked).count();
    assert_eq!(untracked, 0, "a connection lost its state");
    let on_second = seen.iter().filter(|l| l.shard == 1).count();
    assert!(on_second > 1000, "the added shard took flows: {on_second}");
    assert_flows_in_order(&seen);
}

/// The controller of a live run: it balances traffic that the static table splits 85/15, adds the
/// second shard while the first is busy, and removes it when traffic stops.
#[test]
fn the_live_controller_balances_and_scales() {
    use nf_core::indirection::Balance;
    let v = Veth::new("nff", "c");
    let sent = numbered(
        40_000,
        400,
        nf_core::traffic::Protocols::Udp,
        nf_core::traffic::Spread::ShardSkew { percent: 85 },
    );
    let journal = std::sync::Arc::new(Journal::default());
    let (steering, stop, run) = live_receiver(&v.0, 2, 2, &journal, false);
    steering.set_balance(Some(Balance::default()));
    let mut tx = Sender::new(&v.1);
    for chunk in sent.chunks(200) {
        tx.send(chunk);
        std::thread::sleep(Duration::from_micros(500));
    }
    let seen = collect(&journal, sent.len());
    let stats = steering.stats();
    assert_eq!(seen.len(), sent.len(), "every frame once");
    // The last quarter of the frames, by their index: balanced.
    let late: Vec<&Logged> = seen.iter().filter(|l| l.index >= 30_000).collect();
    let first = late.iter().filter(|l| l.shard == 0).count();
    eprintln!(
        "{stats:?}; last quarter on shard 0: {first} of {}",
        late.len()
    );
    assert!(stats.rebalanced > 0, "{stats:?}");
    assert!(
        (first * 100 / late.len()) < 65,
        "still skewed: {first} of {}",
        late.len()
    );
    assert_flows_in_order(&seen);
    // Scaling: idle, the controller (floor 1) takes the second shard out.
    steering.set_balance(Some(Balance {
        scale: Some((1, 2)),
        ..Balance::default()
    }));
    let until = Instant::now() + Duration::from_secs(5);
    while steering.active_shards() != 1 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(steering.active_shards(), 1, "idle: one shard");
    assert_eq!(steering.table().buckets_per_shard(), vec![512]);
    stop.stop();
    let _rx = run.join().unwrap();
    assert!(steering.stats().scaled >= 1);
}

/// A sink that takes its time (a busy graph: the shard never waits for frames).
struct Slow;

impl nf_core::Element for Slow {
    fn class_name(&self) -> &'static str {
        "Slow"
    }
    fn ports(&self) -> nf_core::PortSpec {
        nf_core::testing::SINK
    }
    fn push(&mut self, _: usize, batch: &mut nf_core::Batch, _: &mut nf_core::Outputs) {
        let until = Instant::now() + Duration::from_micros(40 * batch.len() as u64);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        batch.clear();
    }
}

/// Scaling up: a run on one of two shards whose graph cannot keep up gets its second shard.
#[test]
fn the_live_controller_adds_a_shard_when_every_shard_is_busy() {
    use nf_core::indirection::Balance;
    let v = Veth::new("nff", "u");
    let sent = frames(20_000);
    let mut rx = ShardedRouter::new_elastic(2, 1, |_| {
        let mut g = Graph::new();
        let src = g.add("src", FromDevice::new(&v.0).copybreak(64));
        let slow = g.add("slow", Slow);
        g.connect(src.id(), 0, slow.id(), 0);
        Ok(g)
    })
    .unwrap();
    let steering = rx.steering().clone();
    steering.set_balance(Some(Balance {
        scale: Some((1, 2)),
        ..Balance::default()
    }));
    let stop = rx.stop_handle();
    let run = std::thread::spawn(move || {
        rx.run().unwrap();
        rx
    });
    std::thread::sleep(Duration::from_millis(100));
    let mut tx = Sender::new(&v.1);
    let until = Instant::now() + Duration::from_secs(5);
    let mut rounds = sent.chunks(200).cycle();
    while steering.active_shards() != 2 && Instant::now() < until {
        if let Some(chunk) = rounds.next() {
            tx.send(chunk);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    stop.stop();
    let _rx = run.join().unwrap();
    let stats = steering.stats();
    assert_eq!(steering.active_shards(), 2, "busy: two shards ({stats:?})");
    assert!(stats.scaled >= 1, "{stats:?}");
}

/// Sharded, the receiving sockets skip what this host sends on the interface, as a single socket does
/// (a fanout group has a receive hook of its own: it needs the group's flag).
#[test]
fn sharded_receivers_skip_frames_sent_on_their_interface() {
    let v = Veth::new("nff", "x");
    let journal = std::sync::Arc::new(Journal::default());
    let (_steering, stop, run) = live_receiver(&v.0, 2, 2, &journal, false);
    let out = frames(500);
    // Sent out of the receivers' own interface: not for them.
    Sender::new(&v.0).send(&out);
    // Arriving on it from the other end: theirs.
    Sender::new(&v.1).send(&out);
    let seen = collect(&journal, out.len());
    std::thread::sleep(Duration::from_millis(100));
    let late = std::mem::take(&mut *journal.seen.lock().unwrap());
    stop.stop();
    run.join().unwrap();
    assert_eq!(
        seen.len() + late.len(),
        out.len(),
        "only the arriving frames"
    );
}
