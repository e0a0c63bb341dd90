//! The `redis://` store against real `redis-server` processes that the tests start on free loopback ports
//! (the README's test command installs Redis). Nothing is mocked.

mod common;
use common::*;
use nf_state::replicate::{FollowerStats, Replicator, ReplicatorConfig, follow, install_into_map};
use nf_state::schemas::*;
use nf_state::{Codec, StateStoreExt};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A free loopback port; for a cluster node, one whose cluster-bus port (port + 10000) is free too.
fn free_port(cluster: bool) -> u16 {
    for _ in 0..1000 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if !cluster {
            return port;
        }
        if port < 55535 && std::net::TcpListener::bind(("127.0.0.1", port + 10000)).is_ok() {
            return port;
        }
    }
    panic!("no free port pair for a cluster node");
}

struct RedisServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    cluster: bool,
}

impl RedisServer {
    fn start(name: &str) -> RedisServer {
        Self::start_with(name, false)
    }

    fn start_with(name: &str, cluster: bool) -> RedisServer {
        let port = free_port(cluster);
        let dir = std::env::temp_dir().join(format!("nf-redis-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut s = RedisServer {
            port,
            dir,
            child: None,
            cluster,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--dir",
            ])
            .arg(&self.dir)
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--daemonize",
                "no",
            ])
            .args(if self.cluster {
                vec!["--cluster-enabled", "yes", "--cluster-node-timeout", "5000"]
            } else {
                vec![]
            })
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (the README's test command installs it)");
        self.child = Some(child);
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            if let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = c.write_all(b"PING\r\n");
                let mut b = [0u8; 7];
                if c.read_exact(&mut b).is_ok() && &b == b"+PONG\r\n" {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not answer on port {}", self.port);
    }

    /// SIGKILL: no chance to flush anything beyond what `appendfsync always` already wrote.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Three masters, joined with `redis-cli --cluster create`.
struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    fn start() -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|i| RedisServer::start_with(&format!("cluster{i}"), true))
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli must be installed");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let t0 = Instant::now();
        loop {
            let ok = nodes.iter().all(|n| {
                Command::new("redis-cli")
                    .args(["-p", &n.port.to_string(), "cluster", "info"])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
                    .unwrap_or(false)
            });
            if ok {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "the cluster did not become ready"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        RedisCluster { nodes }
    }

    fn url(&self) -> String {
        let addrs: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", addrs.join(","))
    }
}

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
    let map = Arc::new(Mutex::new(HashMap::new()));
    let stats = Arc::new(FollowerStats::default());
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let f = tokio::spawn(follow::<FlowMapping>(
        s.clone(),
        stats.clone(),
        stop,
        install_into_map(map.clone()),
    ));
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_killed_and_restarted_mid_stream_loses_no_acknowledged_record() {
    let mut server = RedisServer::start("restart");
    let store = nf_state::open(&server.url()).await.unwrap();
    // A follower watching throughout.
    let map = Arc::new(Mutex::new(HashMap::new()));
    let fstats = Arc::new(FollowerStats::default());
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let f = tokio::spawn(follow::<FlowMapping>(
        store.clone(),
        fstats.clone(),
        stop,
        install_into_map(map.clone()),
    ));
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
