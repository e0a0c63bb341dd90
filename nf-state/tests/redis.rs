//! The `redis://` store against real `redis-server` processes that the tests start on free loopback ports
//! (the README's test command installs Redis). Nothing is mocked.

mod common;
#[path = "support/redis_server.rs"]
mod redis_server;
use common::*;
use nf_state::replicate::{Replicator, ReplicatorConfig};
use nf_state::schemas::*;
use nf_state::{Codec, StateStoreExt};
use redis_server::*;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_watch_reconnect_and_follower_catch_up() {
    let server = RedisServer::start("basic");
    exercise(nf_state::open(&server.url()).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_over_a_three_master_cluster() {
    let cluster = RedisCluster::start();
    let s = nf_state::open(&cluster.url()).await.unwrap();
    exercise(s.clone()).await;
    // The four schemas' keys hash to slots on more than one master.
    let masters_used = cluster
        .nodes
        .iter()
        .filter(|n| {
            let o = Command::new("redis-cli")
                .args(["-p", &n.port.to_string(), "dbsize"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<u64>()
                .unwrap_or(0)
                > 0
        })
        .count();
    assert!(
        masters_used >= 2,
        "schemas spread over the masters: {masters_used}"
    );
}

async fn exercise(s: Arc<dyn nf_state::StateStore>) {
    round_trip_every_schema(&*s).await;
    ordered_watch_across_a_reconnect(s.clone(), 20, 250, 1700).await;

    // A follower: snapshot, then the stream, deletes included.
    let (map, stats, stop_tx, f) = follow_into_map(s.clone());
    for i in 0..500 {
        s.delete::<FlowMapping>(Codec::Bincode, "p", &fm_key(i))
            .await
            .unwrap();
    }
    let last = s.scan("flow-mapping").await.unwrap().seq;
    let t0 = Instant::now();
    while stats.last_seq.load(Ordering::Relaxed) < last && t0.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop_tx.send(true).unwrap();
    f.await.unwrap().unwrap();
    assert_eq!(map.lock().unwrap().len(), 4500);
    // A second client on the same server: each writer's guess of its next sequence number goes wrong
    // whenever the other wrote in between.
    let other = nf_state::open(&s.url()).await.unwrap();
    interleaved_writers(s.clone(), other).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_killed_and_restarted_mid_stream_loses_no_acknowledged_record() {
    let mut server = RedisServer::start("restart");
    let store = nf_state::open(&server.url()).await.unwrap();
    // A follower watching throughout.
    let (map, fstats, stop_tx, f) = follow_into_map(store.clone());
    // The primary's replicator retries through the outage.
    let rep = Replicator::<FlowMapping>::start(store.clone(), ReplicatorConfig::default());
    let h = rep.handle();
    for i in 0..3000 {
        h.upsert(fm_key(i), fm_val(i));
        if i % 100 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let acked_before = rep.handle().stats().written.load(Ordering::Relaxed);
    server.kill();
    for i in 3000..4000 {
        h.upsert(fm_key(i), fm_val(i));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.spawn();
    for i in 4000..6000 {
        h.upsert(fm_key(i), fm_val(i));
    }
    drop(h);
    let rs = rep.close().await;
    assert!(
        rs.retries.load(Ordering::Relaxed) > 0,
        "the outage was seen and retried"
    );
    assert_eq!(rs.dropped.load(Ordering::Relaxed), 0);
    assert!(acked_before > 0);
    // Everything the replicator had acknowledged, and everything after, is in Redis.
    let snap = store.scan("flow-mapping").await.unwrap();
    assert_eq!(snap.records.len(), 6000);
    let t0 = Instant::now();
    while fstats.last_seq.load(Ordering::Relaxed) < snap.seq
        && t0.elapsed() < Duration::from_secs(15)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_tx.send(true).unwrap();
    f.await.unwrap().unwrap();
    let m = map.lock().unwrap();
    assert_eq!(m.len(), 6000);
    for i in 0..6000 {
        assert_eq!(m.get(&fm_key(i)), Some(&fm_val(i)));
    }
    // The watcher resumed after the restart without a gap (no resync needed).
    assert_eq!(fstats.gaps.load(Ordering::Relaxed), 0);
}

/// A store that goes back in time under a follower (a replica promoted without its master's last
/// writes; here the server restarted from a copy of its data taken halfway): the follower notices,
/// keeps what it had installed, and takes the new records that reuse the lost sequence numbers, which a
/// watcher resuming "after the last number it read" would skip without a word.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_goes_back_in_time_is_noticed_and_nothing_new_is_skipped() {
    let mut server = RedisServer::start("rewind");
    let store = nf_state::open(&server.url()).await.unwrap();
    let write = |from: u32, to: u32| {
        let store = store.clone();
        async move {
            let batch = fm_records("primary", from..to);
            // Retried as a replicator does: the first command after a restart may meet the dead
            // connection.
            for _ in 0..50 {
                if let Ok(seqs) = store.apply(batch.clone()).await {
                    return seqs;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!("the store never took the batch");
        }
    };
    let (map, fstats, stop_tx, f) = follow_into_map(store.clone());
    let caught_up = |seq: u64| {
        let fstats = fstats.clone();
        async move {
            let t0 = Instant::now();
            while fstats.last_seq.load(Ordering::Relaxed) < seq {
                assert!(t0.elapsed() < Duration::from_secs(15), "follower stuck");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    write(0, 50).await;
    let halfway = server.copy_data();
    write(50, 100).await;
    caught_up(100).await;
    // The failover: the store comes back with records 1..=50 only.
    server.kill();
    server.restore_data(&halfway);
    server.spawn();
    // The client's first command after the restart may meet the dead connection; it reconnects.
    let mut seq = None;
    for _ in 0..50 {
        if let Ok(s) = store.scan("flow-mapping").await {
            seq = Some(s.seq);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seq, Some(50));
    // New flows after it: numbered 51..=80 again.
    assert_eq!(write(1000, 1030).await, (51..=80).collect::<Vec<u64>>());
    let t0 = Instant::now();
    while map.lock().unwrap().len() < 130 && t0.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_tx.send(true).unwrap();
    f.await.unwrap().unwrap();
    let m = map.lock().unwrap();
    for i in (0..100).chain(1000..1030) {
        assert_eq!(m.get(&fm_key(i)), Some(&fm_val(i)), "flow {i}");
    }
    assert!(fstats.rewinds.load(Ordering::Relaxed) >= 1);
    assert_eq!(fstats.snapshots.load(Ordering::Relaxed), 2, "one resync");
}

/// A batch sent again (a retry after a lost reply) is applied once: the same sequence numbers come back,
/// and the stream and the state hold it once. Another writer's batch in between does not confuse it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_batch_is_applied_once() {
    let server = RedisServer::start("idempotent");
    let s = nf_state::open(&server.url()).await.unwrap();
    let batch = |origin: &str, from: u32| fm_records(origin, from..from + 10);
    let a = batch("primary", 0);
    let first = s.apply(a.clone()).await.unwrap();
    assert_eq!(first, (1..=10).collect::<Vec<u64>>());
    assert_eq!(
        s.apply(a.clone()).await.unwrap(),
        first,
        "the retry gets the same numbers"
    );
    let b = batch("other", 100);
    assert_eq!(s.apply(b).await.unwrap(), (11..=20).collect::<Vec<u64>>());
    assert_eq!(
        s.apply(a).await.unwrap(),
        first,
        "still recognised after another writer"
    );
    // A new batch of the primary is a new batch.
    let c = batch("primary", 200);
    assert_eq!(s.apply(c).await.unwrap(), (21..=30).collect::<Vec<u64>>());
    let snap = s.scan("flow-mapping").await.unwrap();
    assert_eq!(snap.seq, 30);
    assert_eq!(snap.records.len(), 30);
    let mut w = s.watch("flow-mapping", 0).await.unwrap();
    for want in 1..=30u64 {
        let r = w.next().await.unwrap().unwrap();
        assert_eq!(r.seq, want, "the stream holds each record once");
    }
    // A batch longer than one script call goes in several; retried whole (the reply of its last call
    // lost), every call is recognised, not only the last.
    let long = fm_records("primary", 1000..6000);
    let got = s.apply(long.clone()).await.unwrap();
    assert_eq!(got, (31..=5030).collect::<Vec<u64>>());
    assert_eq!(s.apply(long).await.unwrap(), got);
    let snap = s.scan("flow-mapping").await.unwrap();
    assert_eq!((snap.seq, snap.records.len()), (5030, 5030));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_entries_of_the_earlier_one_record_layout_still_read() {
    let server = RedisServer::start("layout");
    let s = nf_state::open(&server.url()).await.unwrap();
    let rec = |i: u32| {
        nf_state::Record::upsert::<FlowMapping>(Codec::Bincode, "p", &fm_key(i), &fm_val(i))
            .unwrap()
    };
    assert_eq!(s.apply(vec![rec(1), rec(2)]).await.unwrap(), vec![1, 2]);
    // An entry as the store wrote them before batches: `SEQ-1`, field `r`, the bare frame.
    let mut frame = Vec::new();
    rec(3).encode_frame(&mut frame).unwrap();
    let client = redis::Client::open(server.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::pipe()
        .cmd("INCRBY")
        .arg("nf:{flow-mapping}:seq")
        .arg(1)
        .ignore()
        .cmd("XADD")
        .arg("nf:{flow-mapping}:log")
        .arg("3-1")
        .arg("r")
        .arg(&frame)
        .ignore()
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(s.apply(vec![rec(4)]).await.unwrap(), vec![4]);
    let mut w = s.watch("flow-mapping", 0).await.unwrap();
    for want in 1..=4u32 {
        let r = w.next().await.unwrap().unwrap();
        assert_eq!(r.seq, u64::from(want));
        assert_eq!(r.decode::<FlowMapping>().unwrap().0, fm_key(want));
    }
}
