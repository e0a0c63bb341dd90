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
use nf_drivers::adapter::{conntrack_install, conntrack_record};
use nf_drivers::driver::{Shutdown, StateDriver};
use nf_drivers::whitebox::WhiteBox;
use nf_state::StateStore;
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

/// A minion's balancer behind a small install queue: the follower runs ahead of the balancer's thread (a
/// snapshot of 2,000 mappings, then 1,000 more from the stream, into a queue of 16), waits for room
/// (counted) instead of dropping, and every mapping ends up installed with its backend.
#[test]
fn a_full_install_queue_holds_the_follower_back_and_loses_nothing() {
    use nf_core::elements::lb::{ClientKey, LoadBalancer};
    use nf_core::{Element, Outputs};
    use nf_drivers::whitebox::lb_installer;
    use nf_state::replicate::follow_with_backpressure;
    use nf_state::schemas::{FlowMapping, FlowMappingKey, FlowMappingValue, Proto};
    use nf_state::{Codec, Record};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let store: Arc<dyn StateStore> = Arc::new(MemStore::new());
    let mapping = |i: u32| {
        let k = FlowMappingKey {
            proto: Proto::Tcp,
            client_ip: std::net::Ipv4Addr::from(0x0A00_0000 | i).into(),
            client_port: 1000 + (i % 50_000) as u16,
        };
        let v = FlowMappingValue {
            backend_ip: std::net::Ipv4Addr::new(10, 1, 0, 1 + (i % 3) as u8).into(),
            backend_port: 8080,
        };
        Record::upsert::<FlowMapping>(Codec::Bincode, "primary", &k, &v).unwrap()
    };
    rt.block_on(store.apply((0..2000).map(mapping).collect()))
        .unwrap();
    let mut lb = LoadBalancer::new(
        "10.0.0.100:80".parse().unwrap(),
        vec!["10.1.0.1:8080".parse().unwrap()],
    )
    .install_queue(16);
    let tx = lb.installer().unwrap();
    assert!(lb.installer().is_none(), "one installer per balancer");
    let stats = Arc::new(FollowerStats::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (s, st) = (store.clone(), stats.clone());
    let follower = rt.spawn(async move {
        follow_with_backpressure::<FlowMapping>(s, st, stop_rx, &[], lb_installer(tx)).await
    });
    // The balancer's thread is busy elsewhere: the follower fills the queue and waits.
    std::thread::sleep(Duration::from_millis(200));
    assert!(stats.install_waits.load(Ordering::Relaxed) > 0);
    assert!(lb.table().is_empty());
    rt.block_on(store.apply((2000..3000).map(mapping).collect()))
        .unwrap();
    // Now it drains (at each timer tick, as an idle minion does).
    let mut out = Outputs::new(2);
    let t0 = std::time::Instant::now();
    while lb.table().len() < 3000 && t0.elapsed() < Duration::from_secs(20) {
        lb.on_timer(Timestamp::now(), &mut out);
        std::thread::sleep(Duration::from_micros(200));
    }
    assert_eq!(lb.table().len(), 3000);
    for i in (0..3000u32).step_by(97) {
        let k = ClientKey {
            proto: 6,
            ip: std::net::Ipv4Addr::from(0x0A00_0000 | i).into(),
            port: 1000 + (i % 50_000) as u16,
        };
        let want: std::net::SocketAddr = format!("10.1.0.{}:8080", 1 + i % 3).parse().unwrap();
        assert_eq!(lb.backend_of(&k), Some(want), "mapping {i}");
    }
    assert_eq!(lb.read_handler("installed").unwrap(), "3000");
    stop_tx.send(true).unwrap();
    rt.block_on(follower).unwrap().unwrap();
    assert!(stats.install_waits.load(Ordering::Relaxed) > 10);
}
