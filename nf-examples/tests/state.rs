//! `nf state` as a user runs it, and the file store's durability under SIGKILL.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn nf() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nf"))
}

fn tmpdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("nf-state-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Every record acknowledged before a SIGKILL is there after restart, for each durable fsync policy.
#[test]
fn sigkill_loses_no_acknowledged_record() {
    for policy in ["always", "batch"] {
        for round in 0..3 {
            let dir = tmpdir(&format!("kill-{policy}-{round}"));
            // Compacting every 256 KiB (or the snapshot's size): kills land before, during and after
            // compactions, which run beside the writers.
            let url = format!("file:{}?fsync={policy}&compact=262144", dir.display());
            let mut child = nf()
                .args([
                    "state",
                    "--store",
                    &url,
                    "load",
                    "--records",
                    "5000000",
                    "--batch",
                    "97",
                    "--print-acks",
                ])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let out = child.stdout.take().unwrap();
            let mut lines = BufReader::new(out).lines();
            // Let it run a different while each round, then kill it mid-stream.
            let mut acked = 0u64;
            let target = 200 + round * 350;
            for _ in 0..target {
                match lines.next() {
                    Some(Ok(l)) => acked = l.trim_start_matches("ack ").parse().unwrap(),
                    _ => break,
                }
            }
            assert_eq!(
                Command::new("kill")
                    .args(["-KILL", &child.id().to_string()])
                    .status()
                    .unwrap()
                    .code(),
                Some(0)
            );
            // Acks printed before the kill landed are acknowledged too.
            for l in lines.map_while(Result::ok) {
                acked = l.trim_start_matches("ack ").parse().unwrap();
            }
            let _ = child.wait();
            assert!(acked > 0);
            let o = nf()
                .args(["state", "--store", &url, "stats"])
                .output()
                .unwrap();
            let stats = String::from_utf8_lossy(&o.stdout).into_owned();
            assert!(
                o.status.success(),
                "{stats} {}",
                String::from_utf8_lossy(&o.stderr)
            );
            let last: u64 = stats
                .lines()
                .find_map(|l| l.strip_prefix("schema flow-mapping: "))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{stats}"));
            eprintln!(
                "fsync={policy} round {round}: SIGKILL after {acked} acknowledged records; {last} recovered"
            );
            assert!(
                last >= acked,
                "{policy}: acknowledged {acked} records, only {last} survived the kill"
            );
            // Every key up to the acknowledged count is there, once (keys are distinct, so entries = records).
            let o = nf()
                .args(["state", "--store", &url, "dump", "--schema", "flow-mapping"])
                .output()
                .unwrap();
            let n = String::from_utf8_lossy(&o.stdout).lines().count() as u64;
            assert_eq!(n, last, "{policy}");
            assert!(dir.join("snapshot").exists(), "{policy}: no compaction ran");
        }
    }
}

#[test]
fn dump_prints_the_exact_json_form_and_bad_urls_are_clear() {
    let dir = tmpdir("dump");
    let url = format!("file:{}", dir.display());
    let o = nf()
        .args([
            "state",
            "--store",
            &url,
            "load",
            "--records",
            "3",
            "--batch",
            "2",
        ])
        .output()
        .unwrap();
    assert!(o.status.success());
    let o = nf()
        .args(["state", "--store", &url, "dump", "--schema", "flow-mapping"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        text.lines().next().unwrap(),
        r#"{"key":{"proto":"tcp","client_ip":"10.0.0.0","client_port":1024},"value":{"backend_ip":"10.1.0.1","backend_port":80}}"#
    );
    assert_eq!(text.lines().count(), 3);
    for (url, want) in [
        ("redis://h:99999/0", "`99999` is not a port"),
        ("file:", "needs a directory path"),
        ("ftp://x", "expected mem:, file:PATH"),
        (
            "file:/tmp/x?fsync=maybe",
            "fsync must be always, batch or never",
        ),
    ] {
        let o = nf()
            .args(["state", "--store", url, "stats"])
            .output()
            .unwrap();
        assert!(!o.status.success());
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(
            e.contains(want) && e.contains("bad store URL"),
            "{url}: {e}"
        );
    }
    let o = nf()
        .args(["state", "--store", "mem:", "dump", "--schema", "flows"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown schema `flows`"));
}
