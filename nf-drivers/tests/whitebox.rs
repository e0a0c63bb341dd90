//! The white-box driver end to end: a primary graph's connection tracker reports through its `StateSink`
//! to the driver, which replicates into a store (`mem:`, `file:`, a real `redis-server`); a minion's
//! Follower installs the records into its own table: after the stream drains both tables hold the same
//! flows, entry for entry.

#[path = "../../nf-state/tests/support/redis_server.rs"]
mod redis_server;

use nf_core::elements::standard::{Discard, Replay};
use nf_core::elements::tcpudp::{ConnTrack, Connection};
use nf_core::state::{StateTable, Stateful, WhenFull};
use nf_core::traffic::TrafficConfig;
use nf_core::{FlowKey, Graph, Router, Timestamp};
use nf_drivers::driver::{Shutdown, StateDriver};
use nf_drivers::whitebox::WhiteBox;
use nf_state::StateStore;
use nf_state::bridge::{conntrack_install, conntrack_record};
use nf_state::replicate::{FollowerStats, Install, follow};
use nf_state::schemas::Conntrack;
use nf_state::store::{FileStore, Fsync, MemStore};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

async fn run(store: Arc<dyn StateStore>) {
    // The minion's table, filled by the follower through the install path.
    let minion: Arc<Mutex<StateTable<FlowKey, Connection>>> =
        Arc::new(Mutex::new(StateTable::new(1 << 16, WhenFull::Evict)));
    let stats = Arc::new(FollowerStats::default());
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let m = minion.clone();
    let follower = tokio::spawn(follow::<Conntrack>(
        store.clone(),
        stats.clone(),
        stop,
        move |i| {
            let mut t = m.lock().unwrap();
            match i {
                Install::Reset => t.clear(),
                Install::Upsert(k, v) => {
                    let (key, conn) = conntrack_install(&k, &v);
                    t.install(
                        key.table_hash(),
                        key,
                        conn,
                        Timestamp(0),
                        Timestamp(u64::MAX),
                    );
                }
                Install::Delete(k) => {
                    let (key, _) = conntrack_install(
                        &k,
                        &nf_state::schemas::ConntrackValue {
                            state: nf_state::schemas::ConnState::Close,
                            timeout_secs: 0,
                            packets: [0; 2],
                            bytes: [0; 2],
                        },
                    );
                    t.uninstall(key.table_hash(), &key);
                }
            }
        },
    ));

    // The primary: traffic through a connection tracker whose table reports to a replicator.
    let mut driver = WhiteBox::<Conntrack>::new(Default::default());
    let sink = driver.conntrack_sink();
    let counters = driver.counters();
    let (stop_driver, shutdown) = Shutdown::new();
    let s2 = store.clone();
    let driver_task = tokio::spawn(async move { driver.run(s2, shutdown).await });
    let primary = tokio::task::spawn_blocking(move || {
        let mut g = Graph::new();
        let src = g.add(
            "src",
            Replay::generated(
                30_000,
                TrafficConfig {
                    flows: 3000,
                    ..Default::default()
                },
            )
            .limit(60_000),
        );
        // A small table: evictions are replicated as deletes too.
        let ct = g.add("ct", ConnTrack::new(2500));
        let d = g.add("d", Discard::new());
        g.chain(&[src.id(), ct.id(), d.id()]);
        let mut r = Router::new(g).unwrap();
        r.element_mut(ct).unwrap().table_mut().set_sink(sink);
        r.run().unwrap();
        let mut entries = BTreeMap::new();
        r.element(ct).unwrap().table().for_each(|k, c| {
            let (key, v) = conntrack_record(k, c);
            entries.insert(key, (v.state, v.timeout_secs));
        });
        let evicted: u64 = r.read_handler("ct", "evicted").unwrap().parse().unwrap();
        (entries, evicted)
    });
    let (primary_entries, evicted) = primary.await.unwrap();
    assert!(evicted > 0);
    stop_driver.trigger();
    let done = driver_task.await.unwrap().unwrap();
    // Every change the table reported was mapped, queued and acknowledged (coalescing may fold some).
    assert_eq!(done.dropped, 0);
    assert_eq!(done.rejected, 0);
    assert!(done.seen > 3000 && done.parsed == done.seen, "{done}");
    assert!(done.emitted > 0 && done.emitted <= done.parsed, "{done}");
    assert_eq!(counters.snapshot(), done);
    let last = store.scan("conntrack").await.unwrap().seq;
    for _ in 0..1000 {
        if stats.last_seq.load(Ordering::Relaxed) >= last {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop_tx.send(true).unwrap();
    follower.await.unwrap().unwrap();
    // Entry for entry: the same flows, each in the same state with the same timeout. (Packet and byte
    // counters are replicated at each state transition, not on every packet.)
    let mut minion_entries = BTreeMap::new();
    minion.lock().unwrap().for_each(|k, c| {
        let (key, value) = conntrack_record(k, c);
        minion_entries.insert(key, (value.state, value.timeout_secs));
    });
    assert_eq!(
        minion_entries.len(),
        primary_entries.len(),
        "{}",
        store.url()
    );
    assert_eq!(minion_entries, primary_entries, "{}", store.url());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_minion_table_equals_the_primary_table_through_mem() {
    run(Arc::new(MemStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_minion_table_equals_the_primary_table_through_file() {
    let dir = std::env::temp_dir().join(format!("nf-whitebox-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    run(Arc::new(FileStore::open(&dir, Fsync::Batch).await.unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_minion_table_equals_the_primary_table_through_redis() {
    let server = redis_server::RedisServer::start("whitebox");
    run(nf_state::open(&server.url()).await.unwrap()).await;
}
