//! The `redis://` store against real `redis-server` processes that the tests start on free loopback ports
//! (the README's test command installs Redis). Nothing is mocked.

use nf_state::replicate::{FollowerStats, Replicator, ReplicatorConfig, follow, install_into_map};
use nf_state::schemas::*;
use nf_state::{Codec, Record, StateStoreExt};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::IpAddr;
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

fn fm_key(i: u32) -> FlowMappingKey {
    FlowMappingKey {
        proto: Proto::Tcp,
        client_ip: IpAddr::from((0x0a00_0000u32 + i).to_be_bytes()),
        client_port: (i % 60000) as u16,
    }
}

fn fm_val(i: u32) -> FlowMappingValue {
    FlowMappingValue {
        backend_ip: IpAddr::from([10, 1, 0, (i % 5) as u8 + 1]),
        backend_port: 80,
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
    // Every schema, both codecs.
    for codec in [Codec::Bincode, Codec::Json] {
        let k = fm_key(1);
        s.put::<FlowMapping>(codec, "p", &k, &fm_val(1))
            .await
            .unwrap();
        assert_eq!(
            s.get_typed::<FlowMapping>(codec, &k).await.unwrap(),
            Some(fm_val(1))
        );
        let nk = NatBindingKey {
            proto: Proto::Udp,
            client_ip: k.client_ip,
            client_port: 9,
            server_ip: k.client_ip,
            server_port: 53,
        };
        let nv = NatBindingValue {
            nat_ip: k.client_ip,
            nat_port: 4000,
        };
        s.put::<NatBinding>(codec, "p", &nk, &nv).await.unwrap();
        assert_eq!(
            s.get_typed::<NatBinding>(codec, &nk).await.unwrap(),
            Some(nv)
        );
        let ck = FiveTuple {
            proto: Proto::Tcp,
            src_ip: k.client_ip,
            src_port: 1,
            dst_ip: k.client_ip,
            dst_port: 2,
        };
        let cv = ConntrackValue {
            state: ConnState::Established,
            timeout_secs: 7200,
            packets: [3, 2],
            bytes: [9, 8],
        };
        s.put::<Conntrack>(codec, "p", &ck, &cv).await.unwrap();
        assert_eq!(
            s.get_typed::<Conntrack>(codec, &ck).await.unwrap(),
            Some(cv)
        );
        let bk = BackendKey {
            backend_ip: k.client_ip,
            backend_port: 80,
        };
        let bv = BackendLoadValue {
            active_connections: 1,
            bytes: 2,
        };
        s.put::<BackendLoad>(codec, "p", &bk, &bv).await.unwrap();
        assert_eq!(
            s.get_typed::<BackendLoad>(codec, &bk).await.unwrap(),
            Some(bv)
        );
        s.delete::<FlowMapping>(codec, "p", &k).await.unwrap();
        assert_eq!(s.get_typed::<FlowMapping>(codec, &k).await.unwrap(), None);
    }
    let st = s.stats().await.unwrap();
    let fm = st
        .schemas
        .iter()
        .find(|x| x.schema == "flow-mapping")
        .unwrap();
    assert_eq!((fm.entries, fm.last_seq), (0, 4));

    // Ordered stream, across a watcher that goes away and comes back.
    let base = s.scan("flow-mapping").await.unwrap().seq;
    let writer = {
        let s = s.clone();
        tokio::spawn(async move {
            for b in 0..20u32 {
                let recs = (0..250)
                    .map(|i| {
                        Record::upsert::<FlowMapping>(
                            Codec::Bincode,
                            "p",
                            &fm_key(b * 250 + i),
                            &fm_val(i),
                        )
                        .unwrap()
                    })
                    .collect();
                s.apply(recs).await.unwrap();
            }
        })
    };
    let mut seen = Vec::new();
    let mut w = s.watch("flow-mapping", base).await.unwrap();
    while seen.len() < 1700 {
        seen.push(w.next().await.unwrap().unwrap());
    }
    drop(w);
    let mut w = s
        .watch("flow-mapping", seen.last().unwrap().seq)
        .await
        .unwrap();
    while seen.len() < 5000 {
        seen.push(w.next().await.unwrap().unwrap());
    }
    writer.await.unwrap();
    for (i, r) in seen.iter().enumerate() {
        assert_eq!(r.seq, base + i as u64 + 1);
        assert_eq!(r.decode::<FlowMapping>().unwrap().0, fm_key(i as u32));
    }

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
