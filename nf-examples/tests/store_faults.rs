//! Store faults with a real network (needs root): Redis runs in a network namespace behind a veth pair;
//! a primary's replicator and a minion's follower (in this process) use it across the link while the
//! link is cut (`ip link set ... down`) for 5 s in the middle of a stream of updates. After the cut:
//! every acknowledged record is in Redis, the minion has applied every record once and in order (each
//! key's versions strictly increase), and the counters say what was retried.

#[path = "support/netns.rs"]
mod netns;

use netns::{Lab, sh, wait_until};
use nf_state::replicate::{FollowerStats, Install, Replicator, ReplicatorConfig, follow};
use nf_state::schemas::{FlowMapping, FlowMappingKey, FlowMappingValue, Proto};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KEYS: u32 = 500;

fn key(i: u32) -> FlowMappingKey {
    FlowMappingKey {
        proto: Proto::Tcp,
        client_ip: std::net::IpAddr::from([10, 0, (i >> 8) as u8, i as u8]),
        client_port: 40_000,
    }
}

/// Version `v` of a key's value (the port carries it, so order can be checked).
fn val(v: u32) -> FlowMappingValue {
    FlowMappingValue {
        backend_ip: std::net::IpAddr::from([10, 1, (v >> 16) as u8, (v >> 8) as u8]),
        backend_port: v as u16,
    }
}

fn version(v: &FlowMappingValue) -> u32 {
    let std::net::IpAddr::V4(a) = v.backend_ip else {
        return 0;
    };
    let o = a.octets();
    (u32::from(o[2]) << 16) | (u32::from(o[3]) << 8) | u32::from(v.backend_port & 0xff)
}

#[test]
fn a_five_second_cut_to_redis_loses_nothing_and_applies_nothing_twice() {
    let mut lab = Lab::new("sf");
    lab.add("rds");
    let ns = lab.ns("rds");
    let _ = sh("ip link del nfsf0 2>/dev/null || true");
    sh(&format!(
        "ip link add nfsf0 type veth peer name nfsf1 netns {ns}"
    ));
    sh("ip addr add 10.77.0.1/30 dev nfsf0 && ip link set nfsf0 up");
    lab.exec(
        "rds",
        "ip addr add 10.77.0.2/30 dev nfsf1 && ip link set nfsf1 up",
    );
    let dir = std::env::temp_dir().join(format!("nf-store-faults-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.display().to_string();
    lab.spawn(
        "rds",
        &[
            "redis-server",
            "--port",
            "6390",
            "--bind",
            "10.77.0.2",
            "--dir",
            &d,
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
            "--protected-mode",
            "no",
        ],
    );
    wait_until(20, "redis in the namespace answers", || {
        sh("redis-cli -h 10.77.0.2 -p 6390 ping 2>/dev/null || true").contains("PONG")
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = rt
        .block_on(nf_state::open("redis://10.77.0.2:6390/0"))
        .unwrap();
    // The minion: every install, in order.
    // (key, version, installed from the snapshot).
    type Log = Arc<Mutex<Vec<(FlowMappingKey, u32, bool)>>>;
    let log: Log = Arc::default();
    let resets = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let fstats = Arc::new(FollowerStats::default());
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let (l2, r2, f2) = (log.clone(), resets.clone(), fstats.clone());
    let follower = rt.spawn(follow::<FlowMapping>(
        store.clone(),
        fstats.clone(),
        stop,
        move |i| match i {
            Install::Reset => {
                r2.fetch_add(1, Ordering::Relaxed);
            }
            Install::Upsert(k, v) => {
                // Until the first snapshot is counted, installs are the snapshot's.
                let snap = f2.snapshots.load(Ordering::Relaxed) == 0;
                l2.lock().unwrap().push((k, version(&v), snap));
            }
            Install::Delete(_) => {}
        },
    ));
    // The primary: 20,000 updates over about 10 s, each key's versions increasing; the cut from 3 s to 8 s.
    let rep = rt.block_on(async {
        Replicator::<FlowMapping>::start(store.clone(), ReplicatorConfig::default())
    });
    let h = rep.handle();
    let t0 = Instant::now();
    let mut cut_at = None;
    let mut restored = false;
    for v in 1..=20_000u32 {
        h.upsert(key(v % KEYS), val(v));
        if v % 40 == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
        let t = t0.elapsed();
        if cut_at.is_none() && t >= Duration::from_secs(3) {
            sh("ip link set nfsf0 down");
            cut_at = Some(Instant::now());
        }
        if let Some(c) = cut_at
            && !restored
            && c.elapsed() >= Duration::from_secs(5)
        {
            sh("ip link set nfsf0 up");
            restored = true;
        }
    }
    if !restored {
        let c = cut_at.unwrap();
        std::thread::sleep(Duration::from_secs(5).saturating_sub(c.elapsed()));
        sh("ip link set nfsf0 up");
    }
    drop(h);
    let rs = rt.block_on(async { rep.close().await });
    let retries = rs.retries.load(Ordering::Relaxed);
    let written = rs.written.load(Ordering::Relaxed);
    let dropped = rs.dropped.load(Ordering::Relaxed);
    let coalesced = rs.coalesced.load(Ordering::Relaxed);
    // Redis has each key's last version.
    let snap = rt.block_on(store.scan("flow-mapping")).unwrap();
    let mut state = HashMap::new();
    for r in &snap.records {
        let (k, v) = r.decode::<FlowMapping>().unwrap();
        state.insert(k, version(&v.unwrap()));
    }
    // The minion catches up.
    let t1 = Instant::now();
    while fstats.last_seq.load(Ordering::Relaxed) < snap.seq
        && t1.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop_tx.send(true).unwrap();
    rt.block_on(follower).unwrap().unwrap();
    let log = log.lock().unwrap();
    eprintln!(
        "cut 5 s: written {written} records in {} batches, {retries} retries, {coalesced} coalesced, \
         {dropped} dropped; store seq {}; minion applied {} ({} snapshot resets, {} gaps)",
        rs.batches.load(Ordering::Relaxed),
        snap.seq,
        fstats.applied.load(Ordering::Relaxed),
        resets.load(Ordering::Relaxed),
        fstats.gaps.load(Ordering::Relaxed),
    );
    assert_eq!(dropped, 0, "nothing dropped at the primary");
    assert!(retries > 0, "the cut was seen and retried");
    assert_eq!(
        written, snap.seq,
        "every record written once: the stream is as long as the writes"
    );
    for k in 0..KEYS {
        let last = (1..=20_000u32).rev().find(|v| v % KEYS == k).unwrap();
        assert_eq!(
            state.get(&key(k)),
            Some(&last),
            "key {k}: the last version is in Redis"
        );
    }
    // The minion: one snapshot (no resynchronisation), then every key's versions strictly increasing.
    assert_eq!(
        resets.load(Ordering::Relaxed),
        1,
        "no resynchronisation was needed"
    );
    assert_eq!(fstats.gaps.load(Ordering::Relaxed), 0);
    // The snapshot is fuzzy (read while the primary writes): a record written during the scan is in the
    // snapshot and then replayed from the stream, once more, the same. Beyond that, every stream record is
    // applied once and in order: each key's versions strictly increase.
    let mut seen: HashMap<FlowMappingKey, (u32, bool)> = HashMap::new();
    for (k, v, snap) in log.iter() {
        if let Some((prev, prev_snap)) = seen.insert(*k, (*v, *snap)) {
            assert!(
                *v > prev || (*v == prev && prev_snap && !snap),
                "key {k:?}: version {v} after {prev} (applied twice or out of order)"
            );
        }
    }
    let seen: HashMap<FlowMappingKey, u32> = seen.into_iter().map(|(k, (v, _))| (k, v)).collect();
    assert!(
        fstats.applied.load(Ordering::Relaxed) <= snap.seq,
        "no stream record applied twice"
    );
    for (k, v) in &state {
        assert_eq!(seen.get(k), Some(v), "the minion ends with Redis's state");
    }
    let _ = sh("ip link del nfsf0 2>/dev/null || true");
    drop(lab);
    let _ = std::fs::remove_dir_all(&dir);
}
