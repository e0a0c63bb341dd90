//! The syslog driver against a real black box: an iptables DNAT load balancer in network namespaces
//! (a client, the balancer, three backends serving HTTP with `nf serve`), real TCP
//! connections from `curl`. The balancer's kernel logs each new connection in FORWARD (`LOG --ctstate
//! NEW`); `nf kmsg-forward` relays those lines from `/dev/kmsg` to `nf syslogd --extract netfilter-log`.
//! In parallel `conntrack -E -o timestamp,extended` in the balancer's namespace is piped through
//! util-linux `logger` over TCP to `nf syslogd --extract conntrack-events`. Both stores must end up with
//! exactly the client -> backend mappings that `conntrack -L` shows. Needs root (the README's test
//! command runs as root in CI).

#[path = "support/netns.rs"]
mod netns;

use netns::{Lab, sh, wait_until};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

const NF: &str = env!("CARGO_BIN_EXE_nf");

fn free_port() -> u16 {
    let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = u.local_addr().unwrap().port();
    // Free for TCP too.
    if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
        return port;
    }
    free_port()
}

/// Starts `nf ARGS` and waits for its first line of output (it prints once it listens).
fn start_nf(args: &[&str]) -> Child {
    let mut c = Command::new(NF)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(c.stdout.as_mut().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(!first.is_empty(), "nf {args:?} exited early");
    c
}

/// SIGTERM, then the rest of its output.
fn stop(mut c: Child) -> String {
    let _ = Command::new("kill")
        .args(["-TERM", &c.id().to_string()])
        .status();
    let mut rest = String::new();
    use std::io::Read;
    c.stdout.take().unwrap().read_to_string(&mut rest).unwrap();
    let st = c.wait().unwrap();
    assert!(st.success(), "nf exited with {st}: {rest}");
    rest
}

/// client port -> "backend_ip:backend_port" from `nf state dump --schema flow-mapping`.
fn dumped(store: &str) -> BTreeMap<u16, String> {
    let out = sh(&format!(
        "{NF} state --store {store} dump --schema flow-mapping"
    ));
    let mut m = BTreeMap::new();
    for line in out.lines() {
        let v: serde_json_lite::Value = serde_json_lite::parse(line);
        m.insert(
            v.num("client_port") as u16,
            format!("{}:{}", v.str("backend_ip"), v.num("backend_port")),
        );
    }
    m
}

/// A tiny reader of the flat JSON lines `nf state dump` prints (no JSON crate needed in this test).
mod serde_json_lite {
    pub struct Value(String);
    pub fn parse(s: &str) -> Value {
        Value(s.to_string())
    }
    impl Value {
        fn raw(&self, k: &str) -> &str {
            let pat = format!("\"{k}\":");
            let at = self
                .0
                .find(&pat)
                .unwrap_or_else(|| panic!("{k} in {}", self.0))
                + pat.len();
            let rest = &self.0[at..];
            let end = rest.find([',', '}']).unwrap();
            &rest[..end]
        }
        pub fn num(&self, k: &str) -> u64 {
            self.raw(k).parse().unwrap()
        }
        pub fn str(&self, k: &str) -> String {
            self.raw(k).trim_matches('"').to_string()
        }
    }
}

#[test]
fn an_iptables_dnat_balancer_is_mirrored_from_its_logs() {
    let tag = format!("nfs{}", std::process::id() % 100_000);
    let prefix = format!("{tag}-new: ");
    let mut lab = Lab::new(&tag);
    lab.add("c");
    lab.add("lb");
    lab.veth("c", "c0", "10.0.0.2/24", "lb", "l0", "10.0.0.1/24");
    lab.exec("c", "ip route add default via 10.0.0.1");
    let backends = ["10.1.1.2", "10.1.2.2", "10.1.3.2"];
    for (i, b) in backends.iter().enumerate() {
        let name = format!("b{}", i + 1);
        lab.add(&name);
        let gw = format!("10.1.{}.1", i + 1);
        lab.veth(
            "lb",
            &format!("l{}", i + 1),
            &format!("{gw}/24"),
            &name,
            "b0",
            &format!("{b}/24"),
        );
        lab.exec(&name, &format!("ip route add default via {gw}"));
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
    sh("sysctl -qw net.netfilter.nf_log_all_netns=1");
    let rule = "iptables -t nat -A PREROUTING -d 10.0.0.1 -p tcp --dport 80";
    lab.exec("lb", &format!("{rule} -m statistic --mode nth --every 3 --packet 0 -j DNAT --to-destination 10.1.1.2:8080"));
    lab.exec("lb", &format!("{rule} -m statistic --mode nth --every 2 --packet 0 -j DNAT --to-destination 10.1.2.2:8080"));
    lab.exec(
        "lb",
        &format!("{rule} -j DNAT --to-destination 10.1.3.2:8080"),
    );
    lab.exec(
        "lb",
        &format!("iptables -A FORWARD -m conntrack --ctstate NEW -j LOG --log-prefix \"{prefix}\""),
    );
    for (i, b) in backends.iter().enumerate() {
        wait_until(20, "the backends' HTTP servers", || {
            lab.exec_out("lb", &format!("curl -s -o /dev/null -m 1 http://{b}:8080/"))
                .status
                .success()
        });
        let _ = i;
    }

    let dir = std::env::temp_dir().join(format!("nf-syslog-lab-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (store_log, store_ct) = (
        format!("file:{}/log", dir.display()),
        format!("file:{}/ct", dir.display()),
    );
    let (p1, p2) = (free_port(), free_port());
    let (udp, tcp) = (
        format!("udp://127.0.0.1:{p1}"),
        format!("tcp://127.0.0.1:{p2}"),
    );
    let syslog_log = start_nf(&[
        "syslogd",
        "--listen",
        &udp,
        "--extract",
        "netfilter-log",
        "--prefix",
        &tag,
        "--store",
        &store_log,
    ]);
    let syslog_ct = start_nf(&[
        "syslogd",
        "--listen",
        &tcp,
        "--extract",
        "conntrack-events",
        "--store",
        &store_ct,
    ]);
    let forwarder = start_nf(&["kmsg-forward", "--to", &udp, "--grep", &prefix]);
    // conntrack's events of the balancer's namespace, line-buffered, through logger over TCP (logger runs
    // outside the namespace: its 127.0.0.1 is the servers').
    let events = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ip netns exec {} stdbuf -oL conntrack -E -o timestamp,extended -p tcp 2>/dev/null | logger --rfc3164 -T -n 127.0.0.1 -P {p2}",
            lab.ns("lb")
        ))
        .spawn()
        .unwrap();
    lab.adopt(events);
    std::thread::sleep(std::time::Duration::from_millis(500));

    const CONNECTIONS: usize = 15;
    for _ in 0..CONNECTIONS {
        let out = lab.exec(
            "c",
            "curl -s -m 5 -o /dev/null -w %{http_code} http://10.0.0.1/",
        );
        assert_eq!(out, "200");
    }
    // conntrack -L: client port -> backend, for the client's connections to the VIP.
    let mut truth = BTreeMap::new();
    for line in lab
        .exec("lb", "conntrack -L -p tcp --orig-dst 10.0.0.1 2>/dev/null")
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
                .map(|(_, v)| *v)
                .unwrap()
        };
        let client_port: u16 = get("sport", 0).parse().unwrap();
        truth.insert(
            client_port,
            format!("{}:{}", get("src", 1), get("sport", 1)),
        );
    }
    assert_eq!(truth.len(), CONNECTIONS, "{truth:?}");
    let used: std::collections::BTreeSet<&String> = truth.values().collect();
    assert_eq!(used.len(), 3, "the balancer used every backend: {truth:?}");

    // Give the last lines time to cross, then stop the servers (they flush) and read their stores.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let fwd = stop(forwarder);
    let out_log = stop(syslog_log);
    let out_ct = stop(syslog_ct);
    let from_log = dumped(&store_log);
    let from_ct = dumped(&store_ct);
    assert_eq!(from_log, truth, "netfilter-log\n{fwd}\n{out_log}");
    assert_eq!(from_ct, truth, "conntrack-events\n{out_ct}");
    let _ = std::fs::remove_dir_all(&dir);
}
