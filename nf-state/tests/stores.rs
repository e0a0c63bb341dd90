//! Stores and replication: `mem:` and `file:` (every fsync policy) behind the same tests.

use async_trait::async_trait;
mod common;
use common::*;
use nf_state::replicate::{
    FollowerStats, Replicator, ReplicatorConfig, follow_from, install_into_map,
};
use nf_state::schemas::*;
use nf_state::store::{FileStore, Fsync, MemStore, Snapshot, StoreStats, Watch};
use nf_state::{Codec, Error, Record, StateStore, StateStoreExt};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn tmpdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("nf-state-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

async fn stores(name: &str) -> Vec<Arc<dyn StateStore>> {
    let mut v: Vec<Arc<dyn StateStore>> = vec![Arc::new(MemStore::new())];
    for p in [Fsync::Always, Fsync::Batch, Fsync::Never] {
        v.push(Arc::new(
            FileStore::open(&tmpdir(&format!("{name}-{p:?}")), p)
                .await
                .unwrap(),
        ));
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_schema_round_trips_through_every_store() {
    for s in stores("roundtrip").await {
        round_trip_every_schema(&*s).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_see_every_record_in_order_across_a_reconnect() {
    for s in stores("watch").await {
        ordered_watch_across_a_reconnect(s.clone(), 50, 200, 3000).await;
        let mut w = s.watch("flow-mapping", 10_000).await.unwrap();
        assert!(w.try_next().is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleaved_writers_get_one_gapless_run_and_the_state_agrees() {
    for s in stores("interleave").await {
        interleaved_writers(s.clone(), s).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_catches_up_from_a_snapshot_then_the_stream() {
    for s in stores("follow").await {
        for i in 0..5000 {
            if i % 1000 == 0 {
                let recs = (i..i + 1000)
                    .map(|j| {
                        Record::upsert::<FlowMapping>(Codec::Bincode, "p", &fm_key(j), &fm_val(j))
                            .unwrap()
                    })
                    .collect();
                s.apply(recs).await.unwrap();
            }
        }
        let (map, stats, stop_tx, f) = follow_into_map(s.clone());
        // More changes after the snapshot: new keys, changed keys, deletes.
        for i in 5000..8000 {
            s.put::<FlowMapping>(Codec::Bincode, "p", &fm_key(i), &fm_val(i))
                .await
                .unwrap();
        }
        for i in 0..1000 {
            s.put::<FlowMapping>(Codec::Bincode, "p", &fm_key(i), &fm_val(i + 1))
                .await
                .unwrap();
            s.delete::<FlowMapping>(Codec::Bincode, "p", &fm_key(i + 1000))
                .await
                .unwrap();
        }
        let last = s.scan("flow-mapping").await.unwrap().seq;
        wait_for(|| stats.last_seq.load(Ordering::Relaxed) == last).await;
        stop_tx.send(true).unwrap();
        f.await.unwrap().unwrap();
        let m = map.lock().unwrap();
        assert_eq!(m.len(), 7000);
        for i in 0..1000 {
            assert_eq!(m.get(&fm_key(i)), Some(&fm_val(i + 1)));
            assert!(!m.contains_key(&fm_key(i + 1000)));
        }
        assert_eq!(stats.snapshots.load(Ordering::Relaxed), 1);
        assert_eq!(stats.gaps.load(Ordering::Relaxed), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_behind_the_retention_resynchronises() {
    let s: Arc<dyn StateStore> = Arc::new(MemStore::with_retention(100));
    // A watcher that keeps up never falls behind, however small the retention: it sees every record.
    let mut live = s.watch("flow-mapping", 0).await.unwrap();
    for i in 0..1000 {
        s.put::<FlowMapping>(Codec::Bincode, "p", &fm_key(i), &fm_val(i))
            .await
            .unwrap();
        // Read as the records come, so that this watcher stays within the last 100.
        let r = tokio::time::timeout(Duration::from_secs(10), live.next())
            .await
            .expect("a live watcher is handed each record")
            .expect("the watch stream is open")
            .expect("no gap for a watcher that keeps up");
        assert_eq!(r.seq, u64::from(i) + 1);
    }
    // A watcher from 0 now is 900 records behind what is kept: it gets a gap, not a silent skip. (A
    // watcher made before the puts and read only after them may or may not fall behind, as its task
    // runs beside the writer: that is not what this test asserts.)
    let mut w = s.watch("flow-mapping", 0).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(10), w.next()).await {
        Ok(Some(Err(Error::Gap { from, oldest, .. }))) => {
            assert_eq!((from, oldest), (0, 901));
        }
        other => panic!("expected a gap, got {other:?}"),
    }
    // A follower handles it by reloading a snapshot.
    let (map, stats, stop_tx, f) = follow_into_map(s.clone());
    wait_for(|| stats.last_seq.load(Ordering::Relaxed) == 1000).await;
    stop_tx.send(true).unwrap();
    f.await.unwrap().unwrap();
    assert_eq!(map.lock().unwrap().len(), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_store_recovers_cuts_a_torn_tail_and_refuses_corruption() {
    let dir = tmpdir("recover");
    {
        let s = FileStore::open(&dir, Fsync::Always).await.unwrap();
        for i in 0..100 {
            s.put::<FlowMapping>(Codec::Bincode, "p", &fm_key(i), &fm_val(i))
                .await
                .unwrap();
        }
    }
    // A crash mid-write: half a frame at the end of the log.
    let log = dir.join("log");
    let good_len = std::fs::metadata(&log).unwrap().len();
    let mut half = Vec::new();
    Record::upsert::<FlowMapping>(Codec::Bincode, "p", &fm_key(999), &fm_val(1))
        .unwrap()
        .encode_frame(&mut half)
        .unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    std::io::Write::write_all(&mut f, &half[..half.len() / 2]).unwrap();
    drop(f);
    {
        let s = FileStore::open(&dir, Fsync::Batch).await.unwrap();
        let snap = s.scan("flow-mapping").await.unwrap();
        assert_eq!((snap.records.len(), snap.seq), (100, 100));
        let st = s.stats().await.unwrap();
        assert!(
            st.counters
                .contains(&("torn_bytes_cut".into(), (half.len() / 2) as u64)),
            "{:?}",
            st.counters
        );
        assert_eq!(std::fs::metadata(&log).unwrap().len(), good_len);
        // Sequence numbers continue.
        assert_eq!(
            s.put::<FlowMapping>(Codec::Bincode, "p", &fm_key(100), &fm_val(100))
                .await
                .unwrap(),
            101
        );
    }
    // Corruption in the middle of the log is not a torn tail: the store refuses to open.
    let mut bytes = std::fs::read(&log).unwrap();
    bytes[200] ^= 0xff;
    std::fs::write(&log, &bytes).unwrap();
    let e = FileStore::open(&dir, Fsync::Batch).await.unwrap_err();
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
    assert!(e.to_string().contains("corrupt at byte"), "{e}");
}

/// A large state is not rewritten for every small stretch of log: compaction waits until the log is as
/// large as the last snapshot (so that rewriting the state costs at most one write per record written).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_waits_for_a_log_as_large_as_the_snapshot() {
    let dir = tmpdir("compact-proportional");
    let s = FileStore::open(&dir, Fsync::Batch).await.unwrap();
    s.set_compact_threshold(1_000);
    let snapshots = |st: &StoreStats| {
        st.counters
            .iter()
            .find(|(k, _)| k == "snapshots")
            .unwrap()
            .1
    };
    let put = |from: u32, n: u32| {
        (from..from + n)
            .map(|i| {
                Record::upsert::<FlowMapping>(Codec::Bincode, "p", &fm_key(i), &fm_val(i)).unwrap()
            })
            .collect::<Vec<_>>()
    };
    // 2,000 keys in one batch: the log passes the threshold, a snapshot of them all is written.
    s.apply(put(0, 2_000)).await.unwrap();
    s.apply(put(0, 1)).await.unwrap();
    // (Snapshots are written by a thread of their own while writers go on.)
    s.wait_for_compaction();
    let first = snapshots(&s.stats().await.unwrap());
    assert!(first >= 1);
    let snapshot_len = std::fs::metadata(dir.join("snapshot")).unwrap().len();
    // Updates worth several thresholds, but far less than the snapshot: no new snapshot.
    for i in 0..40 {
        s.apply(put(i, 1)).await.unwrap();
    }
    s.wait_for_compaction();
    assert_eq!(snapshots(&s.stats().await.unwrap()), first);
    assert!(std::fs::metadata(dir.join("log")).unwrap().len() < snapshot_len);
    // A log as large as the snapshot: compacted.
    for b in 0..3 {
        s.apply(put(b * 700, 700)).await.unwrap();
    }
    s.apply(put(0, 1)).await.unwrap();
    s.wait_for_compaction();
    assert!(snapshots(&s.stats().await.unwrap()) > first);
    let snap = s.scan("flow-mapping").await.unwrap();
    assert_eq!(snap.records.len(), 2_100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_writes_a_snapshot_and_keeps_everything() {
    let dir = tmpdir("compact");
    {
        let s = FileStore::open(&dir, Fsync::Batch).await.unwrap();
        s.set_compact_threshold(20_000);
        for b in 0..20u32 {
            let recs = (0..100)
                .map(|i| {
                    Record::upsert::<FlowMapping>(Codec::Bincode, "p", &fm_key(i), &fm_val(b))
                        .unwrap()
                })
                .collect();
            s.apply(recs).await.unwrap();
        }
        s.delete::<FlowMapping>(Codec::Bincode, "p", &fm_key(0))
            .await
            .unwrap();
        s.wait_for_compaction();
        let st = s.stats().await.unwrap();
        let snaps = st
            .counters
            .iter()
            .find(|(k, _)| k == "snapshots")
            .unwrap()
            .1;
        assert!(snaps >= 1, "{:?}", st.counters);
    }
    let s = FileStore::open(&dir, Fsync::Batch).await.unwrap();
    let snap = s.scan("flow-mapping").await.unwrap();
    assert_eq!(snap.seq, 2001);
    assert_eq!(snap.records.len(), 99);
    for r in &snap.records {
        assert_eq!(r.decode::<FlowMapping>().unwrap().1, Some(fm_val(19)));
    }
    // A watcher from before the snapshot must resynchronise.
    let mut w = s.watch("flow-mapping", 5).await.unwrap();
    assert!(matches!(w.next().await, Some(Err(Error::Gap { .. }))));
}

/// A compaction cut short by a crash (the log set aside as `log.old`, a newer log begun, the snapshot not
/// yet written) loses nothing: recovery replays the old snapshot, `log.old`, then `log`, and finishes the
/// compaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compaction_cut_short_is_finished_on_recovery() {
    let dir = tmpdir("compact-cut");
    let put = |keys: std::ops::Range<u32>, v: u32| {
        keys.map(|i| {
            Record::upsert::<FlowMapping>(Codec::Bincode, "p", &fm_key(i), &fm_val(v)).unwrap()
        })
        .collect::<Vec<_>>()
    };
    let log_before;
    {
        let s = FileStore::open(&dir, Fsync::Batch).await.unwrap();
        // A first snapshot (keys 0..50), then a log that is not compacted.
        s.set_compact_threshold(100);
        s.apply(put(0..50, 1)).await.unwrap();
        s.apply(put(0..1, 1)).await.unwrap();
        s.wait_for_compaction();
        s.set_compact_threshold(u64::MAX);
        s.apply(put(40..140, 2)).await.unwrap();
        log_before = std::fs::metadata(dir.join("log")).unwrap().len();
        s.apply(put(100..200, 3)).await.unwrap();
        s.delete::<FlowMapping>(Codec::Bincode, "p", &fm_key(7))
            .await
            .unwrap();
    }
    assert!(dir.join("snapshot").exists() && !dir.join("log.old").exists());
    // What a crash in the middle of the next compaction leaves: the log so far set aside, a newer one.
    let log = std::fs::read(dir.join("log")).unwrap();
    let cut = usize::try_from(log_before).unwrap();
    std::fs::write(dir.join("log.old"), &log[..cut]).unwrap();
    std::fs::write(dir.join("log"), &log[cut..]).unwrap();
    for round in 0..2 {
        let s = FileStore::open(&dir, Fsync::Batch).await.unwrap();
        assert!(!dir.join("log.old").exists(), "round {round}");
        let snap = s.scan("flow-mapping").await.unwrap();
        assert_eq!(snap.seq, 51 + 100 + 100 + 1, "round {round}");
        let got: HashMap<_, _> = snap
            .records
            .iter()
            .map(|r| {
                let (k, v) = r.decode::<FlowMapping>().unwrap();
                (k, v.unwrap())
            })
            .collect();
        assert_eq!(got.len(), 199, "round {round}");
        for i in 0..200u32 {
            let want = match i {
                7 => None,
                0..40 => Some(fm_val(1)),
                40..100 => Some(fm_val(2)),
                _ => Some(fm_val(3)),
            };
            assert_eq!(got.get(&fm_key(i)).cloned(), want, "key {i}, round {round}");
        }
    }
}

/// A store that fails its first `fail` applies (a Redis that went away and came back).
#[derive(Debug)]
struct Flaky {
    inner: MemStore,
    fail: AtomicU64,
}

#[async_trait]
impl StateStore for Flaky {
    async fn apply(&self, records: Vec<Record>) -> Result<Vec<u64>, Error> {
        if self.fail.load(Ordering::SeqCst) > 0 {
            self.fail.fetch_sub(1, Ordering::SeqCst);
            return Err(Error::Unavailable("down".into()));
        }
        self.inner.apply(records).await
    }
    async fn get(&self, schema: &str, key: &[u8]) -> Result<Option<Record>, Error> {
        self.inner.get(schema, key).await
    }
    async fn scan(&self, schema: &str) -> Result<Snapshot, Error> {
        self.inner.scan(schema).await
    }
    async fn watch(&self, schema: &str, from_seq: u64) -> Result<Watch, Error> {
        self.inner.watch(schema, from_seq).await
    }
    async fn stats(&self) -> Result<StoreStats, Error> {
        self.inner.stats().await
    }
    fn url(&self) -> String {
        "flaky:".into()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replicator_coalesces_retries_and_loses_nothing() {
    let store = Arc::new(Flaky {
        inner: MemStore::new(),
        fail: AtomicU64::new(3),
    });
    let cfg = ReplicatorConfig {
        window: Duration::from_millis(50),
        ..Default::default()
    };
    let rep = Replicator::<FlowMapping>::start(store.clone(), cfg);
    let h = rep.handle();
    // One key updated 100 times inside one window: one record.
    for i in 0..100 {
        assert!(h.upsert(fm_key(7), fm_val(i)));
    }
    for i in 0..500 {
        h.upsert(fm_key(1000 + i), fm_val(i));
    }
    h.delete(fm_key(1001));
    let stats = rep.close().await;
    assert!(stats.coalesced.load(Ordering::Relaxed) >= 99);
    assert_eq!(stats.retries.load(Ordering::Relaxed), 3);
    assert_eq!(stats.dropped.load(Ordering::Relaxed), 0);
    assert!(stats.lag.count() >= 601);
    let snap = store.scan("flow-mapping").await.unwrap();
    let m: HashMap<_, _> = snap
        .records
        .iter()
        .map(|r| r.decode::<FlowMapping>().unwrap())
        .map(|(k, v)| (k, v.unwrap()))
        .collect();
    assert_eq!(m.len(), 500);
    assert_eq!(m.get(&fm_key(7)), Some(&fm_val(99)));
    assert!(!m.contains_key(&fm_key(1001)));
}

/// A minion that accepts only its primary's origin skips (and counts) what anyone else writes to the
/// store: upserts over the primary's keys, new keys, deletes; from the stream and from a snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_from_an_unexpected_origin_are_skipped_and_counted() {
    for s in stores("origin").await {
        let only_primary = vec!["primary".to_string()];
        let live = Arc::new(Mutex::new(HashMap::new()));
        let live_stats = Arc::new(FollowerStats::default());
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let (s2, st2, l2, o2) = (
            s.clone(),
            live_stats.clone(),
            live.clone(),
            only_primary.clone(),
        );
        let f = tokio::spawn(async move {
            follow_from::<FlowMapping>(s2, st2, stop, &o2, install_into_map(l2)).await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        for i in 0..100 {
            s.put::<FlowMapping>(Codec::Bincode, "primary", &fm_key(i), &fm_val(i))
                .await
                .unwrap();
        }
        // Mallory: overwrites 10 keys, adds 5, deletes 5.
        let evil = FlowMappingValue {
            backend_ip: std::net::IpAddr::from([6, 6, 6, 6]),
            backend_port: 666,
        };
        for i in 0..10 {
            s.put::<FlowMapping>(Codec::Bincode, "mallory", &fm_key(i), &evil)
                .await
                .unwrap();
        }
        for i in 1000..1005 {
            s.put::<FlowMapping>(Codec::Bincode, "mallory", &fm_key(i), &fm_val(i))
                .await
                .unwrap();
        }
        for i in 50..55 {
            s.delete::<FlowMapping>(Codec::Bincode, "mallory", &fm_key(i))
                .await
                .unwrap();
        }
        let last = s.scan("flow-mapping").await.unwrap().seq;
        let t0 = std::time::Instant::now();
        while live_stats.last_seq.load(Ordering::Relaxed) < last
            && t0.elapsed() < Duration::from_secs(10)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop_tx.send(true).unwrap();
        f.await.unwrap().unwrap();
        {
            let m = live.lock().unwrap();
            assert_eq!(
                m.len(),
                100,
                "{}: the primary's 100 keys, nothing else",
                s.url()
            );
            for i in 0..100 {
                assert_eq!(m.get(&fm_key(i)), Some(&fm_val(i)));
            }
        }
        assert_eq!(live_stats.foreign.load(Ordering::Relaxed), 20);
        // A minion starting now loads a snapshot: the keys whose last writer was Mallory are left out.
        let snap = Arc::new(Mutex::new(HashMap::new()));
        let snap_stats = Arc::new(FollowerStats::default());
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let (s2, st2, m2) = (s.clone(), snap_stats.clone(), snap.clone());
        let f = tokio::spawn(async move {
            follow_from::<FlowMapping>(s2, st2, stop, &only_primary, install_into_map(m2)).await
        });
        let t0 = std::time::Instant::now();
        while snap_stats.snapshots.load(Ordering::Relaxed) == 0
            && t0.elapsed() < Duration::from_secs(10)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop_tx.send(true).unwrap();
        f.await.unwrap().unwrap();
        let m = snap.lock().unwrap();
        assert!(m.values().all(|v| *v != evil), "no value of Mallory's");
        assert_eq!(m.len(), 100 - 10 - 5, "{}", s.url());
        assert_eq!(snap_stats.foreign.load(Ordering::Relaxed), 10 + 5);
    }
}
