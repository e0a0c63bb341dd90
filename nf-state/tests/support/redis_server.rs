//! A real `redis-server` (and a three-master cluster) on free loopback ports for tests; shared by the
//! nf-state and nf-drivers test suites with `#[path]`. Nothing is mocked.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port; for a cluster node, one whose cluster-bus port (port + 10000) is free too.
pub fn free_port(cluster: bool) -> u16 {
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

pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
    cluster: bool,
}

impl RedisServer {
    pub fn start(name: &str) -> RedisServer {
        Self::start_with(name, false)
    }

    pub fn start_with(name: &str, cluster: bool) -> RedisServer {
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

    pub fn spawn(&mut self) {
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
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// A copy of the server's data as it stands (its append-only files, fsynced at every write).
    #[allow(dead_code)]
    pub fn copy_data(&self) -> PathBuf {
        let to = self.dir.with_extension("copy");
        let _ = std::fs::remove_dir_all(&to);
        let ok = Command::new("cp")
            .arg("-a")
            .arg(&self.dir)
            .arg(&to)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cp -a {}", self.dir.display());
        to
    }

    /// Puts back a [`RedisServer::copy_data`] (the server must be stopped): on its next start the server
    /// has what it had then, as a replica promoted without its master's last writes would.
    #[allow(dead_code)]
    pub fn restore_data(&self, from: &std::path::Path) {
        assert!(self.child.is_none(), "stop the server first");
        let _ = std::fs::remove_dir_all(&self.dir);
        let ok = Command::new("cp")
            .arg("-a")
            .arg(from)
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cp -a {}", from.display());
        let _ = std::fs::remove_dir_all(from);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Three masters, joined with `redis-cli --cluster create`.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
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

    pub fn url(&self) -> String {
        let addrs: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", addrs.join(","))
    }
}
