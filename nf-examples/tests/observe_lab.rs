//! The observation driver against real black boxes in network namespaces (needs root): an iptables DNAT
//! load balancer choosing backends at random, and an iptables MASQUERADE (NAPT) box; real concurrent
//! `curl` clients and `nf serve` servers; `tcpdump` records both sides of the box; `nf
//! observe` reads the two captures into a store, and its mappings are compared with the `conntrack -L`
//! taken right after the traffic. The accuracy figures are printed (and recorded in BENCHMARKS.md).

#[path = "support/netns.rs"]
mod netns;

use netns::{Lab, sh, stop_tcpdump, tcpdump, wait_until};
use std::collections::BTreeMap;
use std::process::{Command, Stdio};

const NF: &str = env!("CARGO_BIN_EXE_nf");

/// conntrack -L in `ns`, TCP entries: (original src, original sport) -> (reply src:sport, reply dst:dport).
fn conntrack(lab: &Lab, ns: &str, filter: &str) -> BTreeMap<(String, u16), (String, String)> {
    let mut m = BTreeMap::new();
    for line in lab
        .exec(ns, &format!("conntrack -L -p tcp {filter} 2>/dev/null"))
        .lines()
    {
        let kv: Vec<(&str, &str)> = line
            .split_whitespace()
            .filter_map(|t| t.split_once('='))
            .collect();
        let get = |k: &str, nth: usize| {
            kv.iter()
                .filter(|(kk, _)| *kk == k)
                .nth(nth)
                .map(|(_, v)| v.to_string())
                .unwrap()
        };
        m.insert(
            (get("src", 0), get("sport", 0).parse().unwrap()),
            (
                format!("{}:{}", get("src", 1), get("sport", 1)),
                format!("{}:{}", get("dst", 1), get("dport", 1)),
            ),
        );
    }
    m
}

/// Runs `nf observe` on the two captures into a file store; returns the dumped JSON lines of `schema`.
fn observe(dir: &std::path::Path, vip: Option<&str>, schema: &str) -> (Vec<String>, String) {
    let store = format!("file:{}/store", dir.display());
    let mut args = vec![
        "observe".to_string(),
        "--outside".into(),
        dir.join("outside.pcap").display().to_string(),
        "--inside".into(),
        dir.join("inside.pcap").display().to_string(),
        "--store".into(),
        store.clone(),
    ];
    if let Some(v) = vip {
        args.push("--vip".into());
        args.push(v.into());
    }
    let out = Command::new(NF).args(&args).output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "nf observe: {report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dump = sh(&format!(
        "{NF} state --store {store} dump --schema {schema}"
    ));
    (dump.lines().map(str::to_string).collect(), report)
}

fn field(line: &str, k: &str) -> String {
    let pat = format!("\"{k}\":");
    let at = line.find(&pat).unwrap() + pat.len();
    let rest = &line[at..];
    rest[..rest.find([',', '}']).unwrap()]
        .trim_matches('"')
        .to_string()
}

/// Starts `n` concurrent loops of `each` curls from namespace `ns` (source address from `srcs` in turn).
fn curl_loops(lab: &Lab, ns: &str, srcs: &[&str], url: &str, n: usize, each: usize) {
    let mut kids = Vec::new();
    for k in 0..n {
        let src = srcs[k % srcs.len()];
        kids.push(
            Command::new("ip")
                .args(["netns", "exec", &lab.ns(ns), "sh", "-c"])
                .arg(format!(
                    "ok=0; for i in $(seq {each}); do curl -s -o /dev/null -m 5 --interface {src} {url} && ok=$((ok+1)); done; test $ok -eq {each}"
                ))
                .spawn()
                .unwrap(),
        );
    }
    for mut k in kids {
        assert!(k.wait().unwrap().success(), "a curl failed");
    }
}

#[test]
fn a_random_dnat_balancer_is_inferred_from_its_traffic() {
    let tag = format!("nfo{}", std::process::id() % 100_000);
    let mut lab = Lab::new(&tag);
    for n in ["c", "lb", "sw", "b1", "b2", "b3"] {
        lab.add(n);
    }
    lab.veth("c", "c0", "10.0.0.2/24", "lb", "l0", "10.0.0.1/24");
    lab.exec(
        "c",
        "ip addr add 10.0.0.3/24 dev c0 && ip addr add 10.0.0.4/24 dev c0",
    );
    lab.exec("c", "ip route add default via 10.0.0.1");
    lab.veth("lb", "l1", "10.1.0.1/24", "sw", "s0", "");
    lab.exec(
        "sw",
        "ip link add br0 type bridge && ip link set br0 up && ip link set s0 master br0",
    );
    let backends = ["10.1.0.2", "10.1.0.3", "10.1.0.4"];
    for (i, b) in backends.iter().enumerate() {
        let name = format!("b{}", i + 1);
        let sport = format!("s{}", i + 1);
        lab.veth("sw", &sport, "", &name, "b0", &format!("{b}/24"));
        lab.exec("sw", &format!("ip link set {sport} master br0"));
        lab.exec(&name, "ip route add default via 10.1.0.1");
        lab.spawn(
            &name,
            &[
                env!("CARGO_BIN_EXE_nf"),
                "serve",
                "--listen",
                &format!("{b}:8080"),
            ],
        );
    }
    lab.exec("lb", "sysctl -qw net.ipv4.ip_forward=1");
    let rule = "iptables -t nat -A PREROUTING -d 10.0.0.1 -p tcp --dport 80";
    lab.exec("lb", &format!("{rule} -m statistic --mode random --probability 0.33333 -j DNAT --to-destination 10.1.0.2:8080"));
    lab.exec("lb", &format!("{rule} -m statistic --mode random --probability 0.5 -j DNAT --to-destination 10.1.0.3:8080"));
    lab.exec(
        "lb",
        &format!("{rule} -j DNAT --to-destination 10.1.0.4:8080"),
    );
    for b in backends {
        wait_until(20, "the backends", || {
            lab.exec_out("lb", &format!("curl -s -o /dev/null -m 1 http://{b}:8080/"))
                .status
                .success()
        });
    }
    let dir = std::env::temp_dir().join(format!("{tag}-cap"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let t_out = tcpdump(&lab, "lb", "l0", &dir.join("outside.pcap"));
    let t_in = tcpdump(&lab, "lb", "l1", &dir.join("inside.pcap"));
    // And live, on the same two interfaces, until SIGTERM.
    let live_store = format!("file:{}/live", dir.display());
    let live = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns("lb"),
            NF,
            "observe",
            "--outside",
            "l0",
            "--inside",
            "l1",
        ])
        .args(["--vip", "10.0.0.1:80", "--store", &live_store])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    curl_loops(
        &lab,
        "c",
        &["10.0.0.2", "10.0.0.3", "10.0.0.4"],
        "http://10.0.0.1/",
        6,
        40,
    );
    let truth = conntrack(&lab, "lb", "--orig-dst 10.0.0.1");
    std::thread::sleep(std::time::Duration::from_millis(300));
    stop_tcpdump(t_out, &dir.join("outside.pcap"));
    stop_tcpdump(t_in, &dir.join("inside.pcap"));
    let _ = Command::new("kill")
        .args(["-TERM", &live.id().to_string()])
        .status();
    let live_out = live.wait_with_output().unwrap();
    let live_report = String::from_utf8_lossy(&live_out.stdout).into_owned();
    assert!(
        live_out.status.success(),
        "live nf observe: {live_report}{}",
        String::from_utf8_lossy(&live_out.stderr)
    );
    let live_lines: Vec<String> = sh(&format!(
        "{NF} state --store {live_store} dump --schema flow-mapping"
    ))
    .lines()
    .map(str::to_string)
    .collect();
    assert_eq!(truth.len(), 240, "conntrack saw every connection");
    let used: std::collections::BTreeSet<&String> = truth.values().map(|v| &v.0).collect();
    assert_eq!(used.len(), 3, "random choice used every backend");

    let (lines, report) = observe(&dir, Some("10.0.0.1:80"), "flow-mapping");
    for (how, lines, report) in [
        ("captures", &lines, &report),
        ("live", &live_lines, &live_report),
    ] {
        let mut inferred = BTreeMap::new();
        for l in lines {
            let port: u16 = field(l, "client_port").parse().unwrap();
            inferred.insert(
                (field(l, "client_ip"), port),
                format!("{}:{}", field(l, "backend_ip"), field(l, "backend_port")),
            );
        }
        let (mut right, mut wrong) = (0, 0);
        for (k, (backend, _)) in &truth {
            match inferred.get(k) {
                Some(b) if b == backend => right += 1,
                Some(_) => wrong += 1,
                None => {}
            }
        }
        let acc = right as f64 / truth.len() as f64;
        println!(
            "DNAT ({how}): {right}/{} mapped right ({:.2} %), {wrong} wrong, {} inferred\n{report}",
            truth.len(),
            acc * 100.0,
            inferred.len()
        );
        assert_eq!(wrong, 0, "{how}: {report}");
        assert!(acc >= 0.995, "{how}: {right}/{}\n{report}", truth.len());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_masquerading_napt_box_is_inferred_from_its_traffic() {
    let tag = format!("nfn{}", std::process::id() % 100_000);
    let mut lab = Lab::new(&tag);
    for n in ["c", "nat", "s"] {
        lab.add(n);
    }
    lab.veth("c", "c0", "192.168.1.2/24", "nat", "n0", "192.168.1.1/24");
    lab.exec(
        "c",
        "ip addr add 192.168.1.3/24 dev c0 && ip addr add 192.168.1.4/24 dev c0",
    );
    lab.exec("c", "ip route add default via 192.168.1.1");
    lab.veth("nat", "n1", "203.0.113.1/24", "s", "s0", "203.0.113.9/24");
    lab.exec("nat", "sysctl -qw net.ipv4.ip_forward=1");
    lab.exec("nat", "iptables -t nat -A POSTROUTING -o n1 -j MASQUERADE");
    lab.spawn(
        "s",
        &[
            env!("CARGO_BIN_EXE_nf"),
            "serve",
            "--listen",
            "203.0.113.9:8000",
        ],
    );
    wait_until(20, "the server", || {
        lab.exec_out("nat", "curl -s -o /dev/null -m 1 http://203.0.113.9:8000/")
            .status
            .success()
    });
    let dir = std::env::temp_dir().join(format!("{tag}-cap"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let t_out = tcpdump(&lab, "nat", "n0", &dir.join("outside.pcap"));
    let t_in = tcpdump(&lab, "nat", "n1", &dir.join("inside.pcap"));
    curl_loops(
        &lab,
        "c",
        &["192.168.1.2", "192.168.1.3", "192.168.1.4"],
        "http://203.0.113.9:8000/",
        6,
        40,
    );
    let truth = conntrack(&lab, "nat", "--orig-src 192.168.1.0/24");
    std::thread::sleep(std::time::Duration::from_millis(300));
    stop_tcpdump(t_out, &dir.join("outside.pcap"));
    stop_tcpdump(t_in, &dir.join("inside.pcap"));
    assert_eq!(truth.len(), 240);

    let (lines, report) = observe(&dir, None, "nat-binding");
    let mut inferred = BTreeMap::new();
    for l in &lines {
        let port: u16 = field(l, "client_port").parse().unwrap();
        inferred.insert(
            (field(l, "client_ip"), port),
            format!("{}:{}", field(l, "nat_ip"), field(l, "nat_port")),
        );
    }
    let (mut right, mut wrong) = (0, 0);
    for (k, (_, nat)) in &truth {
        match inferred.get(k) {
            Some(n) if n == nat => right += 1,
            Some(_) => wrong += 1,
            None => {}
        }
    }
    let n = truth.len() as f64;
    println!(
        "SNAT: {right}/{} right ({:.2} %), {wrong} wrong ({:.2} %)\n{report}",
        truth.len(),
        100.0 * right as f64 / n,
        100.0 * wrong as f64 / n
    );
    assert!(right as f64 / n >= 0.95, "{report}");
    assert!((wrong as f64 / n) < 0.01, "{report}");
    let _ = std::fs::remove_dir_all(&dir);
}
