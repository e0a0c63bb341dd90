//! Linux network namespaces for tests (needs root): created by the test, torn down by `Drop` even when
//! the test fails: the processes started inside are killed, then the namespaces deleted (which removes
//! their veth ends).
#![allow(dead_code)]

use std::process::{Child, Command, Output, Stdio};

/// Runs a command line through `sh -c`; panics with its output if it fails.
pub fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command line through `sh -c` and returns its output whatever the status.
pub fn sh_out(cmd: &str) -> Output {
    Command::new("sh").arg("-c").arg(cmd).output().unwrap()
}

/// A set of namespaces named `{tag}{name}` and the processes started in them.
pub struct Lab {
    pub tag: String,
    names: Vec<String>,
    children: Vec<Child>,
}

impl Lab {
    /// A lab whose namespace names start with `tag` (keep it short: interface names are limited to
    /// 15 characters). Leftovers of an earlier run with the same tag are removed first.
    pub fn new(tag: &str) -> Lab {
        let lab = Lab {
            tag: tag.to_string(),
            names: Vec::new(),
            children: Vec::new(),
        };
        for ns in sh("ip netns list").lines() {
            let n = ns.split_whitespace().next().unwrap_or("");
            if n.starts_with(tag) {
                let _ = sh_out(&format!("ip netns del {n}"));
            }
        }
        lab
    }

    /// The full name of namespace `name`.
    pub fn ns(&self, name: &str) -> String {
        format!("{}{}", self.tag, name)
    }

    /// Creates namespace `name` with its loopback up.
    pub fn add(&mut self, name: &str) -> String {
        let ns = self.ns(name);
        sh(&format!("ip netns add {ns}"));
        self.names.push(ns.clone());
        self.exec(name, "ip link set lo up");
        ns
    }

    /// Runs a command line inside namespace `name`; panics if it fails.
    pub fn exec(&self, name: &str, cmd: &str) -> String {
        sh(&format!("ip netns exec {} sh -c '{}'", self.ns(name), cmd))
    }

    /// Runs a command line inside namespace `name`, whatever its status.
    pub fn exec_out(&self, name: &str, cmd: &str) -> Output {
        sh_out(&format!("ip netns exec {} sh -c '{}'", self.ns(name), cmd))
    }

    /// A veth pair: `a_if` in namespace `a` with address `a_ip` (CIDR, or "" for none), `b_if` in `b`.
    pub fn veth(&self, a: &str, a_if: &str, a_ip: &str, b: &str, b_if: &str, b_ip: &str) {
        sh(&format!(
            "ip link add {a_if} netns {} type veth peer name {b_if} netns {}",
            self.ns(a),
            self.ns(b)
        ));
        for (n, i, ip) in [(a, a_if, a_ip), (b, b_if, b_ip)] {
            if !ip.is_empty() {
                self.exec(n, &format!("ip addr add {ip} dev {i}"));
            }
            self.exec(n, &format!("ip link set {i} up"));
        }
    }

    /// Starts a long-running command inside namespace `name`; it is killed when the lab is dropped.
    pub fn spawn(&mut self, name: &str, args: &[&str]) -> &mut Child {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(name)])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.children.push(child);
        self.children.last_mut().unwrap()
    }

    /// Keeps a child started elsewhere, to be killed with the lab.
    pub fn adopt(&mut self, child: Child) {
        self.children.push(child);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for n in self.names.iter().rev() {
            let _ = sh_out(&format!("ip netns pids {n} | xargs -r kill -9"));
            let _ = sh_out(&format!("ip netns del {n}"));
        }
    }
}

/// Waits until `f` is true (polling every 50 ms) or panics after `secs` seconds with `what`.
pub fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let t0 = std::time::Instant::now();
    while !f() {
        assert!(
            t0.elapsed().as_secs() < secs,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
