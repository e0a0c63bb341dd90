//! Live packet I/O in network namespaces (needs root): a graph run by `nf run` forwards frames between
//! two veth ends (`FromDevice` -> `ToDevice` both ways) and real `ping` and `curl` traffic crosses it;
//! and a graph bridges a TAP interface (`FromTap`/`ToTap`, smoltcp) to a veth, with the same traffic.

#[path = "support/netns.rs"]
mod netns;

use netns::{Lab, wait_until};
use std::process::{Command, Stdio};

const NF: &str = env!("CARGO_BIN_EXE_nf");

/// Starts `nf run CONFIG` inside namespace `ns`; returns the child.
fn nf_run_in(lab: &Lab, ns: &str, config: &str) -> std::process::Child {
    let path = std::env::temp_dir().join(format!("{}-{ns}.click", lab.tag()));
    std::fs::write(&path, config).unwrap();
    Command::new("ip")
        .args(["netns", "exec", &lab.ns(ns), NF, "run"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// SIGTERM, then its output (the handlers it prints at the end).
fn stop(c: std::process::Child) -> String {
    let _ = Command::new("kill")
        .args(["-TERM", &c.id().to_string()])
        .status();
    let out = c.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "nf run failed: {text}");
    text
}

fn handler(out: &str, name: &str) -> u64 {
    out.lines()
        .find_map(|l| l.trim().strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no `{name}` in {out}"))
}

fn serve_and_fetch(lab: &mut Lab, server_ns: &str, server_ip: &str, client_ns: &str) {
    // 200 KB of known content: many full-size TCP segments each way of the graph.
    let dir = std::env::temp_dir().join(format!("{}-www-{server_ns}", lab.tag()));
    std::fs::create_dir_all(&dir).unwrap();
    let body: String = (0..20_000).map(|i| format!("{:09}\n", i)).collect();
    std::fs::write(dir.join("data.txt"), &body).unwrap();
    let d = dir.to_str().unwrap().to_string();
    lab.spawn(
        server_ns,
        &[
            "python3",
            "-m",
            "http.server",
            "8000",
            "--bind",
            server_ip,
            "--directory",
            &d,
        ],
    );
    let ping = lab.exec(client_ns, &format!("ping -c 3 -i 0.2 -W 2 {server_ip}"));
    assert!(ping.contains("3 received"), "{ping}");
    wait_until(20, "the HTTP server", || {
        lab.exec_out(
            client_ns,
            &format!("curl -s -o /dev/null -m 2 http://{server_ip}:8000/"),
        )
        .status
        .success()
    });
    let got = lab.exec(
        client_ns,
        &format!("curl -s -m 10 http://{server_ip}:8000/data.txt"),
    );
    assert!(
        got == body,
        "the body crossed the graph intact ({} bytes)",
        got.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ping_and_curl_cross_a_graph_between_two_veths() {
    let mut lab = Lab::new(&format!("nfd{}", std::process::id() % 100_000));
    lab.add("a");
    lab.add("m");
    lab.add("b");
    lab.veth("a", "a0", "10.5.0.1/24", "m", "m0", "");
    lab.veth("m", "m1", "", "b", "b0", "10.5.0.2/24");
    // Frames leave the hosts with complete checksums (no offload to a NIC that is not there).
    lab.exec("a", "ethtool -K a0 tx off >/dev/null");
    lab.exec("b", "ethtool -K b0 tx off >/dev/null");
    let nf = nf_run_in(
        &lab,
        "m",
        "FromDevice(m0) -> ab :: Counter -> ToDevice(m1);\nFromDevice(m1) -> ba :: Counter -> ToDevice(m0);\n",
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    serve_and_fetch(&mut lab, "b", "10.5.0.2", "a");
    let out = stop(nf);
    assert!(handler(&out, "ab.count") > 10, "{out}");
    assert!(handler(&out, "ba.count") > 100, "{out}");
}

#[test]
fn ping_and_curl_cross_a_tap_bridged_to_a_veth() {
    let mut lab = Lab::new(&format!("nft{}", std::process::id() % 100_000));
    lab.add("t");
    lab.add("u");
    lab.veth("t", "t0", "", "u", "u0", "10.6.0.2/24");
    lab.exec("u", "ethtool -K u0 tx off >/dev/null");
    let nf = nf_run_in(
        &lab,
        "t",
        "FromTap(tap0) -> out :: Counter -> ToDevice(t0);\nFromDevice(t0) -> in :: Counter -> ToTap(tap0);\n",
    );
    wait_until(10, "tap0", || {
        lab.exec_out("t", "ip link show tap0").status.success()
    });
    lab.exec(
        "t",
        "ip addr add 10.6.0.1/24 dev tap0 && ip link set tap0 up",
    );
    serve_and_fetch(&mut lab, "u", "10.6.0.2", "t");
    let out = stop(nf);
    assert!(handler(&out, "out.count") > 10, "{out}");
    assert!(handler(&out, "in.count") > 100, "{out}");
}
