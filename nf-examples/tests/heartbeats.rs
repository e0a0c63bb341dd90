//! `nf lb` as a primary and as a minion against a real `redis-server`: the primary replicates its flow
//! mappings, the minion installs them, both beat hearts, and `nf state stats` shows both alive and the
//! minion's lag; a stopped node shows as DOWN. `nf nat` and `nf fw` likewise: the minion's rewriter and
//! tracker hold the primary's flows.

#[path = "../../nf-state/tests/support/redis_server.rs"]
mod redis_server;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

const NF: &str = env!("CARGO_BIN_EXE_nf");

fn lb(config: &std::path::Path, args: &[&str]) -> Child {
    node("lb", config, args)
}

fn node(cmd: &str, config: &std::path::Path, args: &[&str]) -> Child {
    Command::new(NF)
        .arg(cmd)
        .arg(config)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn stop(c: Child) -> String {
    let _ = Command::new("kill")
        .args(["-TERM", &c.id().to_string()])
        .status();
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stats(url: &str) -> String {
    let o = Command::new(NF)
        .args(["state", "--store", url, "stats"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn primary_and_minion_beat_hearts_and_the_minion_installs_the_mappings() {
    let redis = redis_server::RedisServer::start("heartbeats");
    let url = redis.url();
    let dir = std::env::temp_dir().join(format!("nf-hb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // In-process traffic: 200 TCP flows to the VIP, forever, at 20,000 packets/s.
    let primary_cfg = dir.join("primary.click");
    std::fs::write(
        &primary_cfg,
        "RatedSource(RATE 20000, FLOWS 200, PROTO tcp) -> lb :: LoadBalancer(VIP 10.0.0.2:80, LOOSE_VIP true, \
         BACKENDS 10.1.0.1:8080 10.1.0.2:8080) -> Discard; Idle -> [1]lb[1] -> Discard;",
    )
    .unwrap();
    // The minion's traffic is not for the VIP (as a standby's is): it only follows. (A live source keeps
    // its router, and the timers that install mappings between packets, running.)
    let minion_cfg = dir.join("minion.click");
    std::fs::write(
        &minion_cfg,
        "RatedSource(RATE 10) -> lb :: LoadBalancer(VIP 10.0.0.2:80, BACKENDS 10.1.0.1:8080 10.1.0.2:8080) -> Discard; \
         Idle -> [1]lb[1] -> Discard;",
    )
    .unwrap();
    let p = lb(
        &primary_cfg,
        &["--role", "primary", "--store", &url, "--node", "lb-a"],
    );
    let m = lb(
        &minion_cfg,
        &["--role", "minion", "--store", &url, "--node", "lb-b"],
    );
    let mut s = String::new();
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(100));
        s = stats(&url);
        if s.contains("node lb-a (primary): alive")
            && s.contains("node lb-b (minion): alive")
            && s.contains("lag 0 records")
            && s.contains("entries 200")
        {
            break;
        }
    }
    assert!(s.contains("node lb-a (primary): alive"), "{s}");
    assert!(s.contains("node lb-b (minion): alive, "), "{s}");
    assert!(s.contains("lag 0 records"), "{s}");
    let minion_out = stop(m);
    // The minion's table holds the primary's 200 mappings (a snapshot and the stream may deliver a
    // mapping twice: `installed` counts deliveries, `flows` entries).
    assert_eq!(handler(&minion_out, "lb.flows"), 200, "{minion_out}");
    assert!(handler(&minion_out, "lb.installed") >= 200, "{minion_out}");
    assert_eq!(handler(&minion_out, "lb.new_flows"), 0, "{minion_out}");
    // A stopped node stops beating: DOWN within a few seconds.
    let mut down = false;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        if stats(&url).contains("node lb-b (minion): DOWN") {
            down = true;
            break;
        }
    }
    stop(p);
    assert!(down, "{}", stats(&url));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The value of handler `name` in a node's final print-out.
fn handler(out: &str, name: &str) -> u64 {
    out.lines()
        .find_map(|l| l.trim().strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {out}"))
}

#[test]
fn nat_and_firewall_minions_install_their_primaries_flows() {
    let redis = redis_server::RedisServer::start("minions");
    let url = redis.url();
    let dir = std::env::temp_dir().join(format!("nf-minions-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // (command, element, primary's configuration, minion's, the handler holding the flows)
    let cases = [
        (
            "nat",
            "RatedSource(RATE 20000, FLOWS 200, PROTO tcp) -> rw :: IPRewriter(pattern 192.0.2.1 1024-65535 - - 0 1, drop) \
             -> Discard; Idle -> [1]rw[1] -> Discard;",
            "RatedSource(RATE 10) -> Discard; Idle -> rw :: IPRewriter(pattern 192.0.2.1 1024-65535 - - 0 1, drop) \
             -> Discard; Idle -> [1]rw[1] -> Discard;",
            "rw.size",
            "rw.new_flows",
        ),
        (
            "fw",
            "RatedSource(RATE 20000, FLOWS 200, PROTO udp) -> ct :: ConnTrack -> Discard;",
            "RatedSource(RATE 10) -> Discard; Idle -> ct :: ConnTrack -> Discard;",
            "ct.flows",
            "ct.inserts",
        ),
    ];
    for (cmd, primary, minion, flows, own) in cases {
        let (pc, mc) = (
            dir.join(format!("{cmd}-p.click")),
            dir.join(format!("{cmd}-m.click")),
        );
        std::fs::write(&pc, primary).unwrap();
        std::fs::write(&mc, minion).unwrap();
        let (a, b) = (format!("{cmd}-a"), format!("{cmd}-b"));
        let p = node(
            cmd,
            &pc,
            &["--role", "primary", "--store", &url, "--node", &a],
        );
        let m = node(
            cmd,
            &mc,
            &["--role", "minion", "--store", &url, "--node", &b],
        );
        let mut s = String::new();
        for _ in 0..100 {
            std::thread::sleep(Duration::from_millis(100));
            s = stats(&url);
            if s.contains(&format!("node {a} (primary): alive"))
                && s.contains(&format!("node {b} (minion): alive"))
                && s.contains("lag 0 records")
            {
                break;
            }
        }
        assert!(s.contains(&format!("node {b} (minion): alive")), "{s}");
        std::thread::sleep(Duration::from_millis(500));
        let (mo, po) = (stop(m), stop(p));
        assert_eq!(handler(&po, flows), 200, "{po}");
        // The minion holds the primary's 200 flows and made none of its own.
        assert_eq!(handler(&mo, flows), 200, "{mo}");
        assert_eq!(handler(&mo, own), 0, "{mo}");
        let installed = format!("{}.installed", &flows[..2]);
        assert!(handler(&mo, &installed) >= 200, "{mo}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
