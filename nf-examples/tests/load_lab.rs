//! The load generator in the failover lab (needs root): `nf load` in the clients' namespace opens a
//! thousand connections a second, and keeps long flows open, through `nf lb` to five `nf serve`
//! backends over real TCP; then the balancer is killed mid-run and every connection's outcome is placed
//! against the instant it died.

use nf_examples::lab::{FailoverLab, LabConfig, VIP};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn nf() -> &'static str {
    env!("CARGO_BIN_EXE_nf")
}

/// One connection's line of `nf load --events`.
#[derive(Debug)]
struct Ev {
    kind: String,
    start_us: u64,
    end_us: u64,
    outcome: String,
}

fn events(path: &std::path::Path) -> Vec<Ev> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            Ev {
                kind: v["kind"].as_str().unwrap().to_string(),
                start_us: v["start_us"].as_u64().unwrap(),
                end_us: v["end_us"].as_u64().unwrap(),
                outcome: v["outcome"].as_str().unwrap().to_string(),
            }
        })
        .collect()
}

fn load(l: &FailoverLab, secs: &str, ev: &std::path::Path) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &l.lab().ns("cl"), nf(), "load"])
        .arg(format!("{VIP}:80"))
        .args(["--rate", "1000", "--duration", secs, "--sizes", "1k:1"])
        .args(["--long", "10", "--long-bitrate", "400k", "--segment", "0.5"])
        .args(["--timeout", "2", "--seed", "7", "--events"])
        .arg(ev);
    for k in 2..7 {
        c.args(["--source", &format!("10.0.0.{k}")]);
    }
    c
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

#[test]
fn a_thousand_connections_a_second_through_nf_lb_and_each_failure_placed_in_time() {
    let tag = format!("nfl{}", std::process::id() % 100_000);
    let l = FailoverLab::build(LabConfig {
        nf: nf().into(),
        tag,
        ..Default::default()
    })
    .unwrap();
    let dir = std::env::temp_dir().join(format!("nf-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("lb.click");
    std::fs::write(&cfg, nf_examples::lab::lb_config(5)).unwrap();
    let mut lb = l
        .nf(
            "pri",
            &["lb", cfg.to_str().unwrap(), "FRONT=p0", "BACK=p1", "-q"],
        )
        .unwrap();
    let t0 = Instant::now();
    loop {
        let ok = l
            .lab()
            .exec_out(
                "cl",
                &format!("curl -sf -o /dev/null -m 1 http://{VIP}/small"),
            )
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "nf lb never answered"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Clean: 4 s at 1,000 new connections a second, 10 long flows: every connection whole.
    let ev = dir.join("clean.jsonl");
    let o = load(&l, "4", &ev).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    eprintln!("{out}");
    let e = events(&ev);
    let shorts = e.iter().filter(|x| x.kind == "short").count();
    let ok = e.iter().filter(|x| x.outcome == "ok").count();
    assert!(shorts > 3500, "{shorts} connections in 4 s at 1,000/s");
    assert_eq!(ok, e.len(), "every connection whole: {out}");

    // The balancer dies 2 s into a 4 s run (no minion): what ended before is whole, every failure
    // comes after the instant, and the long flows, open across it, all fail.
    let ev = dir.join("fail.jsonl");
    let mut run = load(&l, "4", &ev).spawn().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    lb.kill().unwrap();
    let died = now_us();
    let _ = lb.wait();
    assert!(run.wait().unwrap().success());
    let e = events(&ev);
    let before: Vec<&Ev> = e.iter().filter(|x| x.end_us < died).collect();
    let failed: Vec<&Ev> = e.iter().filter(|x| x.outcome != "ok").collect();
    assert!(before.len() > 1000, "{}", before.len());
    assert!(
        before.iter().all(|x| x.outcome == "ok"),
        "a connection failed before the failure"
    );
    assert!(
        failed.len() > 1000,
        "connections after the failure fail: {}",
        failed.len()
    );
    assert!(
        failed.iter().all(|x| x.end_us >= died),
        "every failure after the instant"
    );
    let long_failed = e
        .iter()
        .filter(|x| x.kind == "long" && x.outcome != "ok")
        .count();
    assert_eq!(
        long_failed, 10,
        "the long flows, open across the failure, all fail"
    );
    let open_across = e
        .iter()
        .filter(|x| x.start_us < died && x.end_us >= died)
        .count();
    eprintln!(
        "failure at {died}: {} whole before it, {} failed after it, {open_across} open across it",
        before.len(),
        failed.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
