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
use std::process::Command;
use std::time::{Duration, Instant};

/// A veth pair, deleted when dropped.
struct Veth(String, String);

impl Veth {
    fn new(tag: &str) -> Veth {
        let a = format!("nff{}{tag}a", std::process::id() % 100_000);
        let b = format!("nff{}{tag}b", std::process::id() % 100_000);
        let ip = |args: &[&str]| {
            let s = Command::new("ip").args(args).status().unwrap();
            assert!(s.success(), "ip {args:?}");
        };
        ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
        for d in [&a, &b] {
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{d}/disable_ipv6"), "1");
            ip(&["link", "set", d, "up"]);
        }
        Veth(a, b)
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).status();
    }
}

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
    let at = f.len() - 4;
    u32::from_be_bytes([f[at], f[at + 1], f[at + 2], f[at + 3]])
}

/// Each shard's recorded frames (timestamp and bytes).
type PerShard = Vec<Vec<(u64, Vec<u8>)>>;

/// What one mode saw: frames each shard's socket received, and each shard's recorded frames.
fn run_mode(by_table: bool, sent: &[Vec<u8>]) -> (Vec<u64>, PerShard) {
    let v = Veth::new(if by_table { "t" } else { "h" });
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
