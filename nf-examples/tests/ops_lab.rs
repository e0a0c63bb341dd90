//! Operating a running `nf lb` (needs root): real TCP through the balancer in network namespaces (the
//! failover lab's topology: clients, a switch, the balancer, five backends running HTTP servers, Redis),
//! while it is reconfigured hot through its control socket, and while its health checks find backends
//! stopped and started again.

use nf_examples::lab::{FailoverLab, LabConfig, STORE, VIP, lb_config_with};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn nf() -> &'static str {
    env!("CARGO_BIN_EXE_nf")
}

/// The lab and its tag (its namespaces' prefix).
fn lab(tag: &str) -> (FailoverLab, String) {
    let tag = format!("{tag}{}", std::process::id() % 100_000);
    let l = FailoverLab::build(LabConfig {
        nf: nf().into(),
        tag: tag.clone(),
        ..Default::default()
    })
    .unwrap();
    (l, tag)
}

fn ctl(sock: &str, args: &[&str]) -> Output {
    Command::new(nf())
        .args(["ctl", &format!("unix:{sock}")])
        .args(args)
        .output()
        .unwrap()
}

fn read(sock: &str, h: &str) -> String {
    let o = ctl(sock, &["read", h]);
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn wait(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(secs) {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

/// SYNs that reached backend `i`'s HTTP port since the last call (an iptables counter in its namespace).
fn syns(l: &FailoverLab, i: usize) -> u64 {
    let ns = format!("b{i}");
    let out = l
        .lab()
        .exec(&ns, "iptables -L INPUT -v -x -n; iptables -Z INPUT")
        .unwrap_or_default();
    let count = out
        .lines()
        .find(|l| l.contains("dpt:8080"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok());
    match count {
        Some(n) => n,
        None => {
            l.lab()
                .exec(
                    &ns,
                    "iptables -A INPUT -s 10.0.0.0/24 -p tcp --dport 8080 --syn -j ACCEPT",
                )
                .unwrap();
            0
        }
    }
}

/// `n` short requests from the clients, one after another: how many failed.
fn short_requests(l: &FailoverLab, n: usize) -> usize {
    let ns = l.lab().ns("cl");
    let script = format!(
        "f=0; for i in $(seq {n}); do src=10.0.0.$((2 + i % 5)); \
         curl -sf -o /dev/null -m 5 --interface $src http://{VIP}/small || f=$((f+1)); done; echo $f"
    );
    let o = Command::new("ip")
        .args(["netns", "exec", &ns, "sh", "-c", &script])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
}

/// Downloads of the 2 MB file, started now: each prints `SIZE EXITCODE`.
fn downloads(l: &FailoverLab, n: usize) -> Vec<Child> {
    let ns = l.lab().ns("cl");
    (0..n)
        .map(|k| {
            Command::new("ip")
                .args(["netns", "exec", &ns, "curl", "-s", "-o", "/dev/null"])
                .args(["--interface", &format!("10.0.0.{}", 2 + k % 5), "-m", "60"])
                .args(["-w", "%{size_download} %{exitcode}"])
                .arg(format!("http://{VIP}/big"))
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect()
}

fn finished(kids: Vec<Child>) -> Vec<String> {
    kids.into_iter()
        .map(|c| {
            let o = c.wait_with_output().unwrap();
            String::from_utf8_lossy(&o.stdout).trim().to_string()
        })
        .collect()
}

#[test]
fn ten_hot_reloads_under_real_tcp_break_no_connection() {
    let (mut l, _) = lab("nfo");
    let dir = std::env::temp_dir().join(format!("nf-ops-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Four backends, then a fifth added, then the first removed (its route stays: its flows drain),
    // timeouts changed: the ten configurations the reloads cycle through.
    let configs: Vec<(String, Vec<usize>)> = vec![
        (lb_config_with(&[0, 1, 2, 3], 5, 120), vec![0, 1, 2, 3]),
        (
            lb_config_with(&[0, 1, 2, 3, 4], 5, 120),
            vec![0, 1, 2, 3, 4],
        ),
        (lb_config_with(&[1, 2, 3, 4], 5, 120), vec![1, 2, 3, 4]),
        (lb_config_with(&[1, 2, 3, 4], 5, 60), vec![1, 2, 3, 4]),
        (lb_config_with(&[0, 1, 2, 3, 4], 5, 90), vec![0, 1, 2, 3, 4]),
    ];
    let files: Vec<String> = configs
        .iter()
        .enumerate()
        .map(|(i, (text, _))| {
            let f = dir.join(format!("lb{i}.click"));
            std::fs::write(&f, text).unwrap();
            f.to_string_lossy().into_owned()
        })
        .collect();
    let bad = dir.join("bad.click");
    std::fs::write(
        &bad,
        configs[0].0.replace("POLICY random", "POLICY nosuchpolicy"),
    )
    .unwrap();
    let sock = dir.join("lb.sock").to_string_lossy().into_owned();
    let control = format!("unix:{sock}");
    let child = l
        .nf(
            "pri",
            &[
                "lb",
                &files[0],
                "FRONT=p0",
                "BACK=p1",
                "--control",
                &control,
                "-q",
            ],
        )
        .unwrap();
    l.lab_mut().adopt(child);
    wait(20, "the balancer's control socket", || {
        read(&sock, "lb.flows").parse::<u64>().is_ok()
    });
    assert_eq!(short_requests(&l, 5), 0, "the lab works before any reload");
    for i in 0..5 {
        syns(&l, i);
    }

    // Long downloads across every reload, short requests between them.
    let long = downloads(&l, 10);
    let mut pauses = Vec::new();
    let mut short_failed = 0;
    for k in 0..10 {
        std::thread::sleep(Duration::from_millis(300));
        let which = (k + 1) % configs.len();
        let o = ctl(&sock, &["write", "hotconfig", "--file", &files[which]]);
        let msg = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(
            o.status.success(),
            "reload {k}: {msg} {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(msg.contains("took their old state"), "{msg}");
        let us: u64 = msg
            .split("paused ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        pauses.push(us);
        if k == 4 {
            // A bad configuration mid-traffic: refused with its place, nothing changes.
            let o = ctl(
                &sock,
                &["write", "hotconfig", "--file", bad.to_str().unwrap()],
            );
            let err = String::from_utf8_lossy(&o.stderr).to_string();
            assert!(!o.status.success());
            assert!(err.contains("520") && err.contains("POLICY"), "{err}");
            assert!(
                err.contains("hotconfig:2:"),
                "the error names line and column: {err}"
            );
        }
        // New flows use the new set: the backends out of it get no SYN.
        for i in 0..5 {
            syns(&l, i);
        }
        short_failed += short_requests(&l, 10);
        let set = &configs[which].1;
        for i in 0..5 {
            let n = syns(&l, i);
            if !set.contains(&i) {
                assert_eq!(
                    n, 0,
                    "reload {k}: backend {i} is out of the set but got {n} SYNs"
                );
            }
        }
    }
    let results = finished(long);
    let broken: Vec<&String> = results.iter().filter(|r| *r != "2097152 0").collect();
    assert!(
        broken.is_empty(),
        "downloads broken by the reloads: {broken:?} of {results:?}"
    );
    assert_eq!(short_failed, 0, "short requests broken by the reloads");
    let flows: u64 = read(&sock, "lb.new_flows").parse().unwrap();
    assert!(flows >= 110, "{flows}");
    pauses.sort_unstable();
    eprintln!(
        "ten reloads under traffic: pause median {} us, max {} us; 10 downloads and 100 requests, none broken",
        pauses[5], pauses[9]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn health_checks_take_a_dead_backend_out_and_the_minion_agrees() {
    let (mut l, _) = lab("nfh");
    let dir = std::env::temp_dir().join(format!("nf-health-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("lb.click");
    std::fs::write(&cfg, lb_config_with(&[0, 1, 2, 3, 4], 5, 120)).unwrap();
    let cfg = cfg.to_string_lossy().into_owned();
    let (psock, msock) = (
        dir.join("pri.sock").to_string_lossy().into_owned(),
        dir.join("min.sock").to_string_lossy().into_owned(),
    );
    let checks = [
        "--check",
        "http",
        "--check-path",
        "/small",
        "--check-interval",
        "0.2",
        "--check-timeout",
        "0.5",
        "--check-rise",
        "2",
        "--check-fall",
        "2",
    ];
    // The primary's health checks reach the backends from its namespace (a balancer's management
    // address on the backends' network).
    l.lab()
        .exec("pri", "ip addr add 10.1.0.2/24 dev p1")
        .unwrap();
    let (pc, mc) = (format!("unix:{psock}"), format!("unix:{msock}"));
    let mut args = vec![
        "lb",
        &cfg,
        "FRONT=p0",
        "BACK=p1",
        "--role",
        "primary",
        "--node",
        "pri",
        "--store",
        STORE,
        "--control",
        &pc,
        "-q",
    ];
    args.extend_from_slice(&checks);
    let child = l.nf("pri", &args).unwrap();
    l.lab_mut().adopt(child);
    let child = l
        .nf(
            "min",
            &[
                "lb",
                &cfg,
                "FRONT=m0",
                "BACK=m1",
                "--role",
                "minion",
                "--node",
                "min",
                "--store",
                STORE,
                "--control",
                &mc,
                "-q",
            ],
        )
        .unwrap();
    l.lab_mut().adopt(child);
    let all_up =
        "10.1.0.11:8080=1 10.1.0.12:8080=1 10.1.0.13:8080=1 10.1.0.14:8080=1 10.1.0.15:8080=1";
    wait(20, "both balancers", || {
        read(&psock, "lb.accepting") == all_up && read(&msock, "lb.accepting") == all_up
    });
    assert_eq!(short_requests(&l, 10), 0);

    // Backend 1 stops: after the fall count no new flow goes to it, and the minion knows.
    let t0 = Instant::now();
    l.stop_backend(1).unwrap();
    let down =
        "10.1.0.11:8080=1 10.1.0.12:8080=0 10.1.0.13:8080=1 10.1.0.14:8080=1 10.1.0.15:8080=1";
    wait(10, "the health checks to find backend 1 dead", || {
        read(&psock, "lb.accepting") == down
    });
    let found = t0.elapsed();
    wait(10, "the minion to learn it", || {
        read(&msock, "lb.accepting") == down
    });
    assert!(read(&msock, "lb.states").contains("10.1.0.12:8080 up weight 1 unhealthy"));
    syns(&l, 1);
    assert_eq!(
        short_requests(&l, 40),
        0,
        "no request went to the dead backend"
    );
    assert_eq!(syns(&l, 1), 0);

    // It comes back: after the rise count it takes new flows again, on both balancers.
    l.start_backend(1).unwrap();
    wait(15, "backend 1 back up", || {
        read(&psock, "lb.accepting") == all_up
    });
    wait(10, "the minion to learn it", || {
        read(&msock, "lb.accepting") == all_up
    });
    assert_eq!(short_requests(&l, 40), 0);
    assert!(syns(&l, 1) > 0, "backend 1 takes new flows again");

    // An operator's drain reaches the minion too.
    let o = ctl(&psock, &["write", "lb.drain", "10.1.0.13:8080", "30"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    wait(10, "the minion to see the drain", || {
        read(&msock, "lb.states").contains("10.1.0.13:8080 drain")
    });
    syns(&l, 2);
    assert_eq!(short_requests(&l, 20), 0);
    assert_eq!(syns(&l, 2), 0, "a draining backend takes no new flow");
    eprintln!("backend found dead {found:?} after it stopped (interval 0.2 s, fall 2)");
    let _ = std::fs::remove_dir_all(&dir);
}
