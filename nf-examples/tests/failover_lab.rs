//! The failover lab, short version (needs root): real TCP through `nf lb` in network namespaces. Clients
//! reach a VIP through a front switch (a Linux bridge), the balancer reaches five HTTP backends through a
//! back switch; the primary and the minion hang off both switches with the same MAC addresses, the
//! minion's ports disabled. Twenty long, rate-limited downloads run; three seconds in, the primary is killed
//! and the switch ports flip to the minion in one step. Fail: the minion has no state (it adopts each
//! unknown flow with a random backend, which resets it four times in five). Failover: the minion
//! followed the primary's `flow-mapping` through a real `redis-server` (in a management namespace both
//! balancers reach over their own management interfaces). Failover must lose far fewer connections than
//! Fail.

#[path = "support/netns.rs"]
mod netns;

use netns::{Lab, sh, wait_until};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NF: &str = env!("CARGO_BIN_EXE_nf");
const LB_FRONT: &str = "02:00:00:00:01:00";
const LB_BACK: &str = "02:00:00:00:02:00";
const CLIENT_MAC: &str = "02:00:00:00:04:01";
const BACKENDS: usize = 5;
const DOWNLOADS: usize = 20;

fn backend_ip(i: usize) -> String {
    format!("10.1.0.{}", 11 + i)
}

/// The balancer's configuration: the LoadBalancer between two interfaces, static neighbours for the
/// client and each backend.
fn config() -> String {
    let backends: Vec<String> = (0..BACKENDS)
        .map(|i| format!("{}:8080", backend_ip(i)))
        .collect();
    let mut c = format!(
        "lb :: LoadBalancer(VIP 10.0.0.100:80, BACKENDS {}, POLICY random, IDLE 60);\n\
         FromDevice($FRONT) -> [0]lb;\n\
         FromDevice($BACK) -> [1]lb;\n\
         lb[1] -> EtherRewrite(SRC {LB_FRONT}, DST {CLIENT_MAC}) -> ToDevice($FRONT);\n",
        backends.join(" ")
    );
    let patterns: Vec<String> = (0..BACKENDS)
        .map(|i| format!("30/0a0100{:02x}", 11 + i))
        .collect();
    c.push_str(&format!(
        "lb[0] -> nh :: Classifier({});\n",
        patterns.join(", ")
    ));
    for i in 0..BACKENDS {
        c.push_str(&format!(
            "nh[{i}] -> EtherRewrite(SRC {LB_BACK}, DST 02:00:00:00:03:{:02x}) -> ToDevice($BACK);\n",
            i + 1
        ));
    }
    c
}

fn set_mac(lab: &Lab, ns: &str, dev: &str, mac: &str) {
    lab.exec(
        ns,
        &format!(
            "ip link set {dev} down && ip link set {dev} address {mac} && ip link set {dev} up"
        ),
    );
}

struct Topology {
    lab: Lab,
    cfg: std::path::PathBuf,
}

fn topology(tag: &str) -> Topology {
    let mut lab = Lab::new(tag);
    for n in ["cl", "fs", "bs", "pri", "min"] {
        lab.add(n);
    }
    lab.exec("fs", "ip link add br0 type bridge && ip link set br0 up");
    lab.exec("bs", "ip link add br0 type bridge && ip link set br0 up");
    lab.veth("cl", "c0", "10.0.0.2/24", "fs", "f0", "");
    for k in 3..=6 {
        lab.exec("cl", &format!("ip addr add 10.0.0.{k}/24 dev c0"));
    }
    lab.veth("pri", "p0", "", "fs", "f1", "");
    lab.veth("min", "m0", "", "fs", "f2", "");
    lab.veth("pri", "p1", "", "bs", "g1", "");
    lab.veth("min", "m1", "", "bs", "g2", "");
    for (ns, dev) in [
        ("fs", "f0"),
        ("fs", "f1"),
        ("fs", "f2"),
        ("bs", "g1"),
        ("bs", "g2"),
    ] {
        lab.exec(ns, &format!("ip link set {dev} master br0"));
    }
    set_mac(&lab, "cl", "c0", CLIENT_MAC);
    for (ns, front, back) in [("pri", "p0", "p1"), ("min", "m0", "m1")] {
        set_mac(&lab, ns, front, LB_FRONT);
        set_mac(&lab, ns, back, LB_BACK);
    }
    // The minion is attached, its switch ports disabled.
    lab.exec("fs", "ip link set f2 down");
    lab.exec("bs", "ip link set g2 down");
    lab.exec(
        "cl",
        &format!("ip neigh replace 10.0.0.100 lladdr {LB_FRONT} dev c0 nud permanent"),
    );
    lab.exec(
        "cl",
        "ip route add 10.1.0.0/24 via 10.0.0.100 2>/dev/null || true",
    );
    lab.exec("cl", "ethtool -K c0 tx off >/dev/null");
    let www = std::env::temp_dir().join(format!("{tag}-www"));
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("big"), vec![b'x'; 2 << 20]).unwrap();
    for i in 0..BACKENDS {
        let name = format!("b{i}");
        lab.add(&name);
        lab.veth(
            &name,
            "b0",
            &format!("{}/24", backend_ip(i)),
            "bs",
            &format!("h{i}"),
            "",
        );
        lab.exec("bs", &format!("ip link set h{i} master br0"));
        set_mac(&lab, &name, "b0", &format!("02:00:00:00:03:{:02x}", i + 1));
        lab.exec(
            &name,
            &format!("ip neigh replace 10.1.0.1 lladdr {LB_BACK} dev b0 nud permanent"),
        );
        lab.exec(&name, "ip route add default via 10.1.0.1");
        lab.exec(&name, "ethtool -K b0 tx off >/dev/null");
        let ip = backend_ip(i);
        let dir = www.to_str().unwrap().to_string();
        lab.spawn(
            &name,
            &[
                "python3",
                "-m",
                "http.server",
                "8080",
                "--bind",
                &ip,
                "--directory",
                &dir,
            ],
        );
    }
    // Management: a namespace with a bridge and Redis; the balancers reach it over their own
    // management interfaces (their data interfaces carry no address).
    lab.add("mg");
    lab.exec(
        "mg",
        "ip link add br0 type bridge && ip addr add 10.9.0.1/24 dev br0 && ip link set br0 up",
    );
    for (k, ns) in ["pri", "min"].iter().enumerate() {
        lab.veth(
            ns,
            "x0",
            &format!("10.9.0.{}/24", k + 2),
            "mg",
            &format!("y{k}"),
            "",
        );
        lab.exec("mg", &format!("ip link set y{k} master br0"));
    }
    lab.spawn(
        "mg",
        &[
            "redis-server",
            "--port",
            "6379",
            "--bind",
            "10.9.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
        ],
    );
    wait_until(20, "redis-server", || {
        lab.exec_out("pri", "redis-cli -h 10.9.0.1 -p 6379 ping")
            .stdout
            .starts_with(b"PONG")
    });
    let cfg = std::env::temp_dir().join(format!("{tag}-lb.click"));
    std::fs::write(&cfg, config()).unwrap();
    for i in 0..BACKENDS {
        let name = format!("b{i}");
        wait_until(20, "the backends", || {
            lab.exec_out(
                &name,
                &format!("curl -s -o /dev/null -m 1 http://{}:8080/", backend_ip(i)),
            )
            .status
            .success()
        });
    }
    Topology { lab, cfg }
}

fn nf_lb(t: &Topology, ns: &str, front: &str, back: &str, args: &[&str]) -> Child {
    Command::new("ip")
        .args(["netns", "exec", &t.lab.ns(ns), NF, "lb"])
        .arg(&t.cfg)
        .args([&format!("FRONT={front}"), &format!("BACK={back}"), "-q"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Ten rate-limited 2 MB downloads; the failover `at` seconds in. Returns the downloads that failed and
/// the number that completed.
fn run(t: &mut Topology, minion_args: &[&str], store: Option<&str>) -> (usize, usize) {
    let mut primary_args = vec!["--role", "primary", "--node", "primary"];
    if let Some(s) = store {
        primary_args.extend(["--store", s]);
    }
    let primary = nf_lb(
        t,
        "pri",
        "p0",
        "p1",
        if store.is_some() {
            &primary_args
        } else {
            &["--role", "standalone"]
        },
    );
    let minion = nf_lb(t, "min", "m0", "m1", minion_args);
    // The path works through the primary before the downloads start.
    wait_until(20, "the VIP through the primary", || {
        t.lab
            .exec_out("cl", "curl -s -o /dev/null -m 1 http://10.0.0.100/")
            .status
            .success()
    });
    let downloads: Vec<Child> = (0..DOWNLOADS)
        .map(|k| {
            Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &t.lab.ns("cl"),
                    "curl",
                    "-s",
                    "-o",
                    "/dev/null",
                ])
                .args(["--interface", &format!("10.0.0.{}", 2 + k % 5)])
                .args(["--limit-rate", "300k", "-m", "40", "-w", "%{size_download}"])
                .arg("http://10.0.0.100/big")
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    // The failure: the primary dies; the switches flip to the minion in one step.
    let t0 = Instant::now();
    let mut primary = primary;
    let _ = primary.kill();
    let _ = primary.wait();
    sh(&format!(
        "ip netns exec {fs} ip link set f1 down; ip netns exec {fs} ip link set f2 up; \
         ip netns exec {bs} ip link set g1 down; ip netns exec {bs} ip link set g2 up",
        fs = t.lab.ns("fs"),
        bs = t.lab.ns("bs")
    ));
    eprintln!("failover switch took {:?}", t0.elapsed());
    let (mut failed, mut completed) = (0, 0);
    for d in downloads {
        let out = d.wait_with_output().unwrap();
        let size: u64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        if out.status.success() && size == 2 << 20 {
            completed += 1;
        } else {
            failed += 1;
        }
    }
    let mut minion = minion;
    let _ = minion.kill();
    let _ = minion.wait();
    // Back to the primary's ports for the next scenario.
    sh(&format!(
        "ip netns exec {fs} ip link set f2 down; ip netns exec {fs} ip link set f1 up; \
         ip netns exec {bs} ip link set g2 down; ip netns exec {bs} ip link set g1 up",
        fs = t.lab.ns("fs"),
        bs = t.lab.ns("bs")
    ));
    (failed, completed)
}

#[test]
fn failover_keeps_the_connections_that_fail_loses() {
    let tag = format!("nff{}", std::process::id() % 100_000);
    let mut t = topology(&tag);
    let store = "redis://10.9.0.1:6379/0".to_string();
    let (fail_failed, fail_done) = run(&mut t, &["--role", "standalone"], None);
    let (fo_failed, fo_done) = run(
        &mut t,
        &["--role", "minion", "--store", &store, "--node", "minion"],
        Some(&store),
    );
    eprintln!(
        "LONG: Fail {fail_failed} failed / {fail_done} completed; Failover {fo_failed} failed / {fo_done} completed"
    );
    assert!(
        fail_failed >= DOWNLOADS / 2,
        "without state most downloads break: {fail_failed}"
    );
    assert!(fo_failed <= 1, "with state nearly none break: {fo_failed}");
}
