//! The `nf` command as a user runs it: every example configuration, the subcommands, and clear errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn nf(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nf"))
        .args(args)
        .output()
        .expect("run nf")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nf-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn handler(out: &str, name: &str) -> Option<u64> {
    out.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(name))
            .then(|| it.next()?.parse().ok())
            .flatten()
    })
}

fn gen_pcap(path: &Path, packets: &str) {
    let o = nf(&[
        "pcap",
        "gen",
        "--packets",
        packets,
        "--flows",
        "100",
        "--size",
        "64",
        path.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
}

#[test]
fn every_example_configuration_runs() {
    let pcap = tmp("in.pcap");
    gen_pcap(&pcap, "2000");
    let out = tmp("out.pcap");
    let mut ran = 0;
    for e in std::fs::read_dir(nf_examples::configs_dir()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().and_then(|x| x.to_str()) != Some("click") {
            continue;
        }
        let o = nf(&[
            "run",
            p.to_str().unwrap(),
            &format!("FILE={}", pcap.display()),
            &format!("OUT={}", out.display()),
        ]);
        let (so, se) = text(&o);
        assert!(o.status.success(), "{}: {se}", p.display());
        assert!(!so.is_empty(), "{} printed no handlers", p.display());
        ran += 1;
    }
    assert!(ran >= 5);
}

#[test]
fn run_prints_handlers_with_exact_counts() {
    let pcap = tmp("c.pcap");
    gen_pcap(&pcap, "1000");
    let cfg = nf_examples::configs_dir().join("bench-classifier.click");
    let o = nf(&[
        "run",
        cfg.to_str().unwrap(),
        &format!("FILE={}", pcap.display()),
        "--stats",
    ]);
    let (so, se) = text(&o);
    assert!(o.status.success(), "{se}");
    assert_eq!(handler(&so, "src.count"), Some(1000));
    assert_eq!(handler(&so, "tcp.count"), Some(500));
    assert_eq!(handler(&so, "udp.count"), Some(500));
    assert!(se.contains("Mpps"), "{se}");
    // The same with two shards.
    let o = nf(&[
        "run",
        cfg.to_str().unwrap(),
        &format!("FILE={}", pcap.display()),
        "--shards",
        "2",
    ]);
    let (so, se) = text(&o);
    assert!(o.status.success(), "{se}");
    assert_eq!(handler(&so, "tcp.count"), Some(500));
    // pcap-copy writes the TCP packets to OUT.
    let out = tmp("copy.pcap");
    let cfg = nf_examples::configs_dir().join("pcap-copy.click");
    let o = nf(&[
        "run",
        cfg.to_str().unwrap(),
        &format!("FILE={}", pcap.display()),
        &format!("OUT={}", out.display()),
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
    let o = nf(&["pcap", "info", out.to_str().unwrap()]);
    let (so, _) = text(&o);
    assert!(so.contains("packets: 500"), "{so}");
}

#[test]
fn elements_lists_every_class_with_its_doc() {
    let o = nf(&["elements"]);
    let (so, _) = text(&o);
    for c in [
        "Classifier",
        "IPClassifier",
        "ConnTrack",
        "FromPcap",
        "ToPcap",
        "Queue",
        "RatedUnqueue",
        "Tee",
    ] {
        assert!(
            so.lines()
                .any(|l| l.starts_with(c) && l.len() > c.len() + 5),
            "{c} missing:\n{so}"
        );
    }
}

#[test]
fn bench_pipeline_reports_rates() {
    let o = nf(&[
        "bench",
        "pipeline",
        "classifier",
        "--memory",
        "--packets",
        "200000",
        "--distinct",
        "20000",
        "--repeat",
        "1",
    ]);
    let (so, se) = text(&o);
    assert!(o.status.success(), "{se}");
    assert!(so.contains("Mpps") && so.contains("ns/packet"), "{so}");
}

/// `nf pcap split` writes one file per shard; `nf run --shards 2` over them (`{shard}` in the name)
/// reads every packet once, each shard its own file.
#[test]
fn pcap_split_feeds_each_shard_its_own_file() {
    let pcap = tmp("whole.pcap");
    gen_pcap(&pcap, "2000");
    let pattern = tmp("part.{shard}.pcap").display().to_string();
    let o = nf(&[
        "pcap",
        "split",
        "--shards",
        "2",
        pcap.to_str().unwrap(),
        &pattern,
    ]);
    let (so, se) = text(&o);
    assert!(o.status.success(), "{se}");
    let counts: Vec<u64> = so
        .lines()
        .filter_map(|l| l.split(": ").nth(1)?.strip_suffix(" packets")?.parse().ok())
        .collect();
    assert_eq!(counts.len(), 2, "{so}");
    assert_eq!(counts.iter().sum::<u64>(), 2000, "{so}");
    let cfg = nf_examples::configs_dir().join("bench-conntrack.click");
    let o = nf(&[
        "run",
        cfg.to_str().unwrap(),
        &format!("FILE={pattern}"),
        "--shards",
        "2",
    ]);
    let (so, se) = text(&o);
    assert!(o.status.success(), "{se}");
    assert_eq!(handler(&so, "Discard@1.count"), Some(2000), "{so}");
    assert_eq!(handler(&so, "ct.flows"), Some(100), "{so}");
    let o = nf(&["pcap", "split", pcap.to_str().unwrap(), "out.pcap"]);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("{shard}"), "{}", text(&o).1);
}

/// The Mux's traffic in memory (requests only, TCP) on two shards; a wrong protocol is refused by name.
#[test]
fn bench_pipeline_replays_one_way_traffic_on_shards() {
    let cfg = nf_examples::configs_dir().join("bench-mux.click");
    let args = |proto: &'static str| {
        vec![
            "bench".to_string(),
            "pipeline".into(),
            cfg.display().to_string(),
            "--memory".into(),
            "--packets".into(),
            "100000".into(),
            "--distinct".into(),
            "20000".into(),
            "--flows".into(),
            "2000".into(),
            "--proto".into(),
            proto.into(),
            "--one-way".into(),
            "--shards".into(),
            "2".into(),
            "--repeat".into(),
            "1".into(),
        ]
    };
    let a = args("tcp");
    let o = nf(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let (so, se) = text(&o);
    assert!(o.status.success(), "{se}");
    assert!(
        so.contains("in memory , 2 shard(s)") && so.contains("Mpps"),
        "{so}"
    );
    let a = args("sctp");
    let o = nf(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!o.status.success());
    assert!(
        text(&o).1.contains("invalid value 'sctp' for '--proto"),
        "{}",
        text(&o).1
    );
}

#[test]
fn wrong_input_gives_clear_errors() {
    let bad = tmp("bad.click");
    std::fs::write(&bad, "InfiniteSource -> Countr -> Discard;\n").unwrap();
    let o = nf(&["run", bad.to_str().unwrap()]);
    let (_, se) = text(&o);
    assert!(!o.status.success());
    assert!(
        se.contains("bad.click:1:19") && se.contains("did you mean `Counter`"),
        "{se}"
    );

    let o = nf(&["run", "/nonexistent.click"]);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("cannot read /nonexistent.click"));

    let o = nf(&["run", bad.to_str().unwrap(), "NOEQUALS"]);
    assert!(text(&o).1.contains("`NOEQUALS` is not NAME=VALUE"));

    let o = nf(&["pcap", "gen", "--size", "12", "x.pcap"]);
    assert!(
        text(&o)
            .1
            .contains("a frame size is imix or a number of bytes from 54 to 9000, not `12`"),
        "{}",
        text(&o).1
    );

    // Every error of nf's own says so.
    let o = nf(&["run", "/nonexistent.click"]);
    assert!(text(&o).1.starts_with("error"), "{}", text(&o).1);

    // A misspelt keyword gets a suggestion; a setting the configuration never reads, a warning.
    std::fs::write(&bad, "InfiniteSource(LIMT 10) -> Discard;\n").unwrap();
    let o = nf(&["run", bad.to_str().unwrap()]);
    let (_, se) = text(&o);
    assert!(!o.status.success());
    assert!(
        se.contains("unknown keyword argument LIMT") && se.contains("did you mean LIMIT?"),
        "{se}"
    );
    std::fs::write(
        &bad,
        "define($N 5); InfiniteSource(LIMIT $N, STOP true) -> Discard;\n",
    )
    .unwrap();
    let o = nf(&["run", "-q", bad.to_str().unwrap(), "n=7", "N=3"]);
    let (_, se) = text(&o);
    assert!(o.status.success(), "{se}");
    assert!(
        se.contains("warning: n=... is not used") && se.contains("did you mean N?"),
        "{se}"
    );
    assert!(!se.contains("N=... is not used"), "{se}");

    let o = nf(&["run", "--shards", "many", "x.click"]);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("--shards"), "{}", text(&o).1);

    let pcap = tmp("t.pcap");
    gen_pcap(&pcap, "10");
    let mut bytes = std::fs::read(&pcap).unwrap();
    bytes.truncate(bytes.len() - 5);
    std::fs::write(&pcap, &bytes).unwrap();
    let cfg = nf_examples::configs_dir().join("bench-discard.click");
    let o = nf(&[
        "run",
        cfg.to_str().unwrap(),
        &format!("FILE={}", pcap.display()),
    ]);
    let (_, se) = text(&o);
    assert!(!o.status.success());
    assert!(se.contains("at byte") && se.contains("truncated"), "{se}");
}

#[test]
fn sigint_stops_a_run_and_the_counters_are_still_printed() {
    let cfg = tmp("endless.click");
    std::fs::write(
        &cfg,
        "src :: InfiniteSource(FLOWS 8) -> c :: Counter -> Discard;\n",
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_nf"))
        .args(["run", cfg.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let pid = child.id().to_string();
    let kill = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let (so, se) = text(&out);
    assert!(out.status.success(), "{se}");
    assert!(se.contains("signal received"), "{se}");
    assert!(handler(&so, "c.count").is_some_and(|n| n > 0), "{so}");
}

#[test]
fn the_demo_shows_failover_keeping_what_fail_breaks() {
    let o = nf(&["demo", "--connections", "3000"]);
    let (so, se) = text(&o);
    assert!(o.status.success(), "{so}{se}");
    let row = |name: &str| -> Vec<String> {
        so.lines()
            .find(|l| l.starts_with(&format!("| {name} |")))
            .unwrap_or_else(|| panic!("no {name} row in {so}"))
            .split('|')
            .map(|c| c.trim().to_string())
            .collect()
    };
    // Columns: "", scenario, connections, open at the failure, broken, ...
    let broken = |name: &str| row(name)[4].parse::<u64>().unwrap();
    assert_eq!(broken("Clean"), 0);
    assert_eq!(broken("Copied"), 0);
    assert_eq!(broken("Failover"), 0);
    // Without state the minion's random choice is right one time in five.
    let open: u64 = row("Fail")[3].parse().unwrap();
    assert!(broken("Fail") * 10 > open * 7, "{so}");
    assert!(so.contains("lb.installed"), "{so}");
}

#[test]
fn the_lab_balancer_configuration_is_the_one_checked_in() {
    let conf = std::fs::read_to_string(nf_examples::configs_dir().join("lab/lb.click")).unwrap();
    assert_eq!(conf, nf_examples::lab::lb_config(5));
    for (name, text) in [
        ("nat", nf_examples::lab::nat_config(5)),
        ("fw", nf_examples::lab::fw_config(5)),
    ] {
        let conf =
            std::fs::read_to_string(nf_examples::configs_dir().join(format!("lab/{name}.click")))
                .unwrap();
        assert_eq!(conf, text, "{name}.click");
    }
    // And a bad one is a clear error naming line and column.
    let bad = tmp("bad-lb.click");
    std::fs::write(&bad, conf.replace("POLICY random", "POLICY fastest")).unwrap();
    let o = nf(&["lb", bad.to_str().unwrap(), "FRONT=lo", "BACK=lo"]);
    let (_, se) = text(&o);
    assert!(!o.status.success());
    assert!(
        se.contains("POLICY must be random, roundrobin, leastconn or maglev"),
        "{se}"
    );
    assert!(se.contains("bad-lb.click:2:"), "{se}");
}

#[test]
fn a_bad_hash_key_file_is_an_error_that_does_not_echo_it() {
    let f = tmp("bad.key");
    std::fs::write(&f, "s3cr3t-but-not-hex\n").unwrap();
    let o = nf(&[
        "lb",
        "nf-examples/configs/lab/lb.click",
        "--hash-key-file",
        f.to_str().unwrap(),
    ]);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("a hash key is 32 hexadecimal digits"), "{err}");
    assert!(
        !err.contains("s3cr3t"),
        "the key file's content stays out of the error: {err}"
    );
}

#[test]
fn bench_flood_shows_crafted_clients_cost_what_ordinary_ones_do() {
    // Small: 500 clients aimed at the unkeyed hash of earlier builds; the keyed tables spread them.
    let o = nf(&[
        "bench",
        "flood",
        "--clients",
        "500",
        "--targets",
        "lb,conntrack",
        "--aim",
        "old",
        "--repeat",
        "1",
        "--per-client",
        "4",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let rows: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("| lb |") || l.starts_with("| conntrack |"))
        .collect();
    assert_eq!(rows.len(), 2, "{out}");
    for r in rows {
        assert!(r.contains("2000 / 2000"), "the same packets both ways: {r}");
        let ratio: f64 = r
            .rsplit("**")
            .nth(1)
            .unwrap()
            .trim_end_matches('x')
            .parse()
            .unwrap();
        assert!(ratio > 0.0, "{r}");
    }
}

#[test]
fn state_reading_commands_say_what_they_see_and_create_nothing() {
    // A mem: store is this command's own: stats says it is empty and why.
    let o = nf(&["state", "--store", "mem:", "stats"]);
    let (so, se) = text(&o);
    assert!(o.status.success(), "{se}");
    assert!(
        so.contains("no records (a mem: store lives in one process"),
        "{so}"
    );

    // Reading a file: store that does not exist is an error, and makes no directory.
    let dir = tmp("no-store-here");
    let url = format!("file:{}", dir.display());
    for cmd in [&["stats"][..], &["dump", "--schema", "flow-mapping"][..]] {
        let mut args = vec!["state", "--store", &url];
        args.extend_from_slice(cmd);
        let o = nf(&args);
        assert!(!o.status.success());
        assert!(text(&o).1.contains("error: no store at"), "{}", text(&o).1);
        assert!(!dir.exists(), "a reading command created {}", dir.display());
    }

    // The unknown-schema message names every schema.
    let o = nf(&["state", "--store", "mem:", "dump", "--schema", "flows"]);
    assert!(
        text(&o)
            .1
            .contains("backend-load, backend-state, heartbeat"),
        "{}",
        text(&o).1
    );

    // A reader that stops early is not an error: `nf state ... dump | head -1`.
    let o = nf(&["state", "--store", &url, "load", "--records", "20000"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let mut child = Command::new(env!("CARGO_BIN_EXE_nf"))
        .args(["state", "--store", &url, "dump", "--schema", "flow-mapping"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    {
        use std::io::BufRead;
        let out = child.stdout.take().unwrap();
        std::io::BufReader::new(out).read_line(&mut first).unwrap();
    }
    let o = child.wait_with_output().unwrap();
    assert!(first.starts_with('{'), "{first}");
    assert!(o.status.success(), "{}", text(&o).1);
    assert!(!text(&o).1.contains("Broken pipe"), "{}", text(&o).1);

    // stats after writes: the records, and the handle's own counters labelled as such.
    let o = nf(&["state", "--store", &url, "stats"]);
    let (so, _) = text(&o);
    assert!(so.contains("schema flow-mapping: entries 20000"), "{so}");
    assert!(
        so.contains("this command's handle (since it opened the store)"),
        "{so}"
    );
}

#[test]
fn a_sharded_run_reports_the_pools_of_its_shards() {
    let cfg = tmp("sharded.click");
    std::fs::write(
        &cfg,
        "InfiniteSource(LIMIT 20000, FLOWS 64, STOP true) -> c :: Counter -> Discard;\n",
    )
    .unwrap();
    let o = nf(&[
        "run",
        "-q",
        "--stats",
        "--shards",
        "2",
        cfg.to_str().unwrap(),
    ]);
    let (_, se) = text(&o);
    assert!(o.status.success(), "{se}");
    let line = se
        .lines()
        .find(|l| l.starts_with("buffer pools (all shards)"))
        .unwrap_or_else(|| panic!("{se}"));
    let n = |k: &str| -> u64 {
        let w: Vec<&str> = line.split_whitespace().collect();
        let i = w.iter().position(|x| *x == k).unwrap();
        w[i + 1].parse().unwrap()
    };
    assert!(n("reused") + n("allocated") >= 20000, "{line}");
}

#[test]
fn nf_ctl_reads_and_writes_a_running_graph_through_its_control_socket() {
    let cfg = tmp("controlled.click");
    std::fs::write(
        &cfg,
        "src :: InfiniteSource(FLOWS 8) -> c :: Counter -> Discard;\n",
    )
    .unwrap();
    let sock = tmp("controlled.sock");
    let at = format!("unix:{}", sock.display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_nf"))
        .args(["run", "-q", cfg.to_str().unwrap(), "--control", &at])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if sock.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    let read = |h: &str| {
        let o = nf(&["ctl", &at, "read", h]);
        assert!(o.status.success(), "{:?}", text(&o));
        text(&o).0.trim().to_string()
    };
    let a: u64 = read("c.count").parse().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert!(read("c.count").parse::<u64>().unwrap() > a);
    assert_eq!(read("list"), "3\nsrc\nc\nDiscard@1");
    // Stopping the source through the socket.
    let o = nf(&["ctl", &at, "write", "src.active", "false"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let o = nf(&["ctl", &at, "list"]);
    let (so, _) = text(&o);
    assert!(so.contains("c :: Counter  count (r)"), "{so}");
    assert!(so.contains("active (rw)"), "{so}");
    // Errors keep Click's codes and fail the command.
    let o = nf(&["ctl", &at, "read", "c.nosuch"]);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("error: 511"), "{}", text(&o).1);
    let o = nf(&["ctl", &at, "write", "nosuch.x", "1"]);
    assert!(text(&o).1.contains("error: 510"), "{}", text(&o).1);
    // A non-loopback TCP socket needs consent.
    let o = nf(&["run", cfg.to_str().unwrap(), "--control", "tcp:0.0.0.0:0"]);
    assert!(!o.status.success());
    assert!(
        text(&o).1.contains("not a loopback address"),
        "{}",
        text(&o).1
    );
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let _ = child.wait();
    let _ = child.stdout.take();
}

/// A running `nf lb` (a primary replicating to a file store) scraped over real HTTP (curl) with its
/// control socket open: the exposition passes Prometheus's own checker (`promtool check metrics`),
/// types counters and gauges from the handlers, and carries the store's, the driver's and the
/// heartbeats' figures; a configuration loaded hot shows in the counts.
#[test]
fn nf_lb_serves_prometheus_metrics_that_promtool_accepts() {
    use std::io::BufRead;
    let cfg = tmp("metrics-lb.click");
    std::fs::write(
        &cfg,
        "src :: RatedSource(RATE 20000, FLOWS 300, PROTO tcp);
         lb :: LoadBalancer(VIP 10.0.0.2:80, LOOSE_VIP true, BACKENDS 10.1.0.1:8080 10.1.0.2:8080*3);
         src -> c :: Counter -> lb -> q :: Queue(64) -> Unqueue -> Discard;
         Idle -> [1]lb[1] -> Discard;\n",
    )
    .unwrap();
    let store = tmp("metrics-store.log");
    let _ = std::fs::remove_file(&store);
    let sock = tmp("metrics.sock");
    let mut child = Command::new(env!("CARGO_BIN_EXE_nf"))
        .args([
            "lb",
            "-q",
            cfg.to_str().unwrap(),
            "--role",
            "primary",
            "--node",
            "m1",
        ])
        .args(["--store", &format!("file:{}", store.display())])
        .args(["--control", &format!("unix:{}", sock.display())])
        .args(["--metrics", "127.0.0.1:0"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Killed if an assertion fails on the way.
    struct Guard(u32);
    impl Drop for Guard {
        fn drop(&mut self) {
            if std::thread::panicking() {
                let _ = Command::new("kill")
                    .args(["-9", &self.0.to_string()])
                    .status();
            }
        }
    }
    let _guard = Guard(child.id());
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut url = None;
    let mut line = String::new();
    while url.is_none() && err.read_line(&mut line).unwrap() > 0 {
        url = line.trim().strip_prefix("metrics: ").map(str::to_string);
        line.clear();
    }
    let url = url.expect("nf lb prints where its metrics are");
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    let scrape = |accept: Option<&str>| {
        let mut c = Command::new("curl");
        c.args(["-sf", "-D", "-", &url]);
        if let Some(a) = accept {
            c.args(["-H", &format!("Accept: {a}")]);
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "curl {url}: {:?}", o);
        String::from_utf8(o.stdout).unwrap()
    };
    // Wait for the heartbeats (every 500 ms, read back every second).
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let first = scrape(None);
    let (head, body) = first.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) is installed by scripts/test.sh");
    use std::io::Write;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let p = promtool.wait_with_output().unwrap();
    assert!(
        p.status.success(),
        "promtool: {}{}\n{body}",
        String::from_utf8_lossy(&p.stdout),
        String::from_utf8_lossy(&p.stderr)
    );
    let value = |name: &str| metric(body, name);
    assert_eq!(value("nf_router_up"), 1.0);
    assert_eq!(
        value("nf_handler{element=\"lb\",class=\"LoadBalancer\",handler=\"flows\"}"),
        300.0
    );
    assert!(
        body.contains("# TYPE nf_loadbalancer_flows gauge"),
        "{body}"
    );
    assert!(
        body.contains("# TYPE nf_loadbalancer_new_flows_total counter"),
        "{body}"
    );
    assert!(body.contains("# HELP nf_loadbalancer_new_flows_total flows assigned a backend"));
    assert!(value("nf_counters_count_total{element=\"c\"}") > 0.0);
    assert_eq!(
        value("nf_loadbalancer_weights{element=\"lb\",key=\"10.1.0.2:8080\"}"),
        3.0
    );
    assert!(value("nf_shard_packets_total{shard=\"0\"}") > 0.0);
    assert!(body.contains("nf_shard_batch_packets_bucket{"), "{body}");
    assert!(value("nf_replication_written_total") >= 300.0);
    assert!(value("nf_driver_emitted_total{driver=\"whitebox\"}") >= 300.0);
    assert!(value("nf_replication_lag_p99_seconds") < 5.0, "{body}");
    let age = value("nf_heartbeat_age_seconds{node=\"m1\",role=\"primary\"}");
    assert!(age < 2.0, "{age}");
    // OpenMetrics when asked for it.
    let om = scrape(Some("application/openmetrics-text; version=1.0.0"));
    assert!(om.contains("application/openmetrics-text"), "{om}");
    assert!(om.trim_end().ends_with("# EOF"), "{om}");
    // A drain and a reload through the control socket show in the next scrape.
    let at = format!("unix:{}", sock.display());
    let o = nf(&["ctl", &at, "write", "lb.drain", "10.1.0.1:8080"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let after = scrape(None);
    assert!(
        after.contains("nf_loadbalancer_accepting{element=\"lb\",key=\"10.1.0.1:8080\"} 0"),
        "{after}"
    );
    // SIGHUP re-reads the file: a third backend appears, the flows and the drain stay.
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("10.1.0.2:8080*3", "10.1.0.2:8080*3 10.1.0.3:8080"),
    )
    .unwrap();
    let hup = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let mut reloaded = String::new();
    for _ in 0..100 {
        reloaded = scrape(None);
        if reloaded.contains("key=\"10.1.0.3:8080\"") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        reloaded.contains("nf_loadbalancer_weights{element=\"lb\",key=\"10.1.0.3:8080\"} 1"),
        "{reloaded}"
    );
    assert!(
        reloaded.contains("nf_hot_swaps_total{shard=\"0\"} 1"),
        "{reloaded}"
    );
    assert!(
        reloaded.contains("nf_loadbalancer_accepting{element=\"lb\",key=\"10.1.0.1:8080\"} 0"),
        "the drain outlives the reload: {reloaded}"
    );
    assert!(
        reloaded.contains("nf_loadbalancer_flows{element=\"lb\"} 300"),
        "{reloaded}"
    );
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    assert!(child.wait().unwrap().success());
}

/// `nf syslogd --metrics`: the driver's and the server's counters over HTTP, accepted by promtool.
#[test]
fn nf_syslogd_serves_its_counters_as_metrics() {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_nf"))
        .args([
            "syslogd",
            "--listen",
            "udp://127.0.0.1:0",
            "--extract",
            "netfilter-log",
        ])
        .args(["--store", "mem:", "--metrics", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let (mut line, mut udp, mut url) = (String::new(), None, None);
    while udp.is_none() && out.read_line(&mut line).unwrap() > 0 {
        udp = line
            .trim()
            .strip_prefix("listening on udp://")
            .map(str::to_string);
        line.clear();
    }
    while url.is_none() && err.read_line(&mut line).unwrap() > 0 {
        url = line.trim().strip_prefix("metrics: ").map(str::to_string);
        line.clear();
    }
    let (udp, url) = (udp.expect("the UDP address"), url.expect("the metrics URL"));
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..3 {
        s.send_to(b"<13>Dec  7 10:00:00 host app: hello", &udp)
            .unwrap();
    }
    s.send_to(b"\x00not syslog", &udp).unwrap();
    let mut body = String::new();
    for _ in 0..100 {
        let o = Command::new("curl").args(["-sf", &url]).output().unwrap();
        body = String::from_utf8(o.stdout).unwrap();
        if body.contains("nf_syslog_messages_total{transport=\"udp\"} 4") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        body.contains("nf_syslog_messages_total{transport=\"udp\"} 4"),
        "{body}"
    );
    assert!(body.contains("nf_syslog_unparsed_total{} 1"), "{body}");
    assert!(
        body.contains("nf_driver_seen_total{driver=\"syslog\"} 4"),
        "{body}"
    );
    let p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .output_with_input(body.as_bytes());
    assert!(p.status.success(), "{}", String::from_utf8_lossy(&p.stdout));
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// Runs a command with `input` on its standard input.
trait WithInput {
    fn output_with_input(&mut self, input: &[u8]) -> Output;
}

impl WithInput for Command {
    fn output_with_input(&mut self, input: &[u8]) -> Output {
        use std::io::Write;
        let mut c = self
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(input).unwrap();
        c.wait_with_output().unwrap()
    }
}

/// A sharded `nf run --metrics`: each shard's packets under its own label, the handlers summed over the
/// shards (two copies of the graph, each counting its own flows), promtool satisfied.
#[test]
fn a_sharded_run_reports_each_shard_and_sums_the_handlers() {
    use std::io::BufRead;
    let cfg = tmp("sharded-metrics.click");
    std::fs::write(
        &cfg,
        "src :: RatedSource(RATE 4000, FLOWS 64, PROTO udp) -> c :: Counter -> Discard;\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_nf"))
        .args(["run", "-q", cfg.to_str().unwrap(), "--shards", "2"])
        .args(["--metrics", "127.0.0.1:0"])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let (mut line, mut url) = (String::new(), None);
    while url.is_none() && err.read_line(&mut line).unwrap() > 0 {
        url = line.trim().strip_prefix("metrics: ").map(str::to_string);
        line.clear();
    }
    let url = url.expect("the metrics URL");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let o = Command::new("curl").args(["-sf", &url]).output().unwrap();
    let body = String::from_utf8(o.stdout).unwrap();
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let value = |name: &str| metric(&body, name);
    let (s0, s1) = (
        value("nf_shard_packets_total{shard=\"0\"}"),
        value("nf_shard_packets_total{shard=\"1\"}"),
    );
    assert!(s0 > 0.0 && s1 > 0.0, "{body}");
    // Each shard's copy of the source and of the counter: the handler is their sum.
    let counted = value("nf_counters_count_total{element=\"c\"}");
    // Each shard answers with its figures of one instant: what entered its graph passed its counter.
    assert!(
        (counted - (s0 + s1)).abs() <= 64.0,
        "{counted} against {s0} + {s1}"
    );
    let p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .output_with_input(body.as_bytes());
    assert!(p.status.success(), "{}", String::from_utf8_lossy(&p.stdout));
}

/// The value of the first sample of an exposition whose line starts with `name` (labels included).
fn metric(body: &str, name: &str) -> f64 {
    body.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{name} in:\n{body}"))
}
