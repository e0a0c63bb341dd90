//! Linux network namespaces for labs and tests (needs root): a [`Lab`] creates namespaces, veth pairs
//! and processes, and tears them all down when dropped (processes killed, then namespaces deleted, which
//! removes their veth ends), on a failure as on success. A lab removes what an earlier run with the same
//! tag left behind when it starts.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs a command line through `sh -c`; its standard output, or an error with everything it printed.
pub fn sh(cmd: &str) -> Result<String, String> {
    let out = sh_out(cmd).map_err(|e| format!("`{cmd}`: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{cmd}` failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command line through `sh -c` and returns its output whatever the status.
pub fn sh_out(cmd: &str) -> std::io::Result<Output> {
    Command::new("sh").arg("-c").arg(cmd).output()
}

/// Waits until `f` is true (polling every 50 ms), at most `secs` seconds.
pub fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) -> Result<(), String> {
    let t0 = Instant::now();
    while !f() {
        if t0.elapsed() > Duration::from_secs(secs) {
            return Err(format!("timed out after {secs} s waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// A set of namespaces named `{tag}{name}` and the processes started in them.
#[derive(Debug)]
pub struct Lab {
    /// The prefix of every namespace's name.
    pub tag: String,
    names: Vec<String>,
    children: Vec<Child>,
}

impl Lab {
    /// A lab whose namespace names start with `tag` (keep it short). Leftovers of an earlier run with the
    /// same tag are removed first.
    pub fn new(tag: &str) -> Lab {
        if let Ok(list) = sh("ip netns list") {
            for ns in list.lines() {
                let n = ns.split_whitespace().next().unwrap_or("");
                if !n.is_empty() && n.starts_with(tag) {
                    let _ = sh_out(&format!("ip netns pids {n} | xargs -r kill -9"));
                    let _ = sh_out(&format!("ip netns del {n}"));
                }
            }
        }
        Lab {
            tag: tag.to_string(),
            names: Vec::new(),
            children: Vec::new(),
        }
    }

    /// The full name of namespace `name`.
    pub fn ns(&self, name: &str) -> String {
        format!("{}{}", self.tag, name)
    }

    /// Creates namespace `name` with its loopback up.
    pub fn add(&mut self, name: &str) -> Result<String, String> {
        let ns = self.ns(name);
        sh(&format!("ip netns add {ns}"))?;
        self.names.push(ns.clone());
        self.exec(name, "ip link set lo up")?;
        Ok(ns)
    }

    /// Runs a command line inside namespace `name`.
    pub fn exec(&self, name: &str, cmd: &str) -> Result<String, String> {
        sh(&format!("ip netns exec {} sh -c '{}'", self.ns(name), cmd))
    }

    /// Runs a command line inside namespace `name`, whatever its status.
    pub fn exec_out(&self, name: &str, cmd: &str) -> std::io::Result<Output> {
        sh_out(&format!("ip netns exec {} sh -c '{}'", self.ns(name), cmd))
    }

    /// A veth pair: `a_if` in namespace `a` with address `a_ip` (CIDR, or "" for none), `b_if` in `b`;
    /// both up.
    pub fn veth(
        &self,
        a: &str,
        a_if: &str,
        a_ip: &str,
        b: &str,
        b_if: &str,
        b_ip: &str,
    ) -> Result<(), String> {
        sh(&format!(
            "ip link add {a_if} netns {} type veth peer name {b_if} netns {}",
            self.ns(a),
            self.ns(b)
        ))?;
        for (n, i, ip) in [(a, a_if, a_ip), (b, b_if, b_ip)] {
            if !ip.is_empty() {
                self.exec(n, &format!("ip addr add {ip} dev {i}"))?;
            }
            self.exec(n, &format!("ip link set {i} up"))?;
        }
        Ok(())
    }

    /// Sets an interface's MAC address.
    pub fn set_mac(&self, name: &str, dev: &str, mac: &str) -> Result<(), String> {
        self.exec(
            name,
            &format!(
                "ip link set {dev} down && ip link set {dev} address {mac} && ip link set {dev} up"
            ),
        )
        .map(|_| ())
    }

    /// Starts a long-running command inside namespace `name` (output discarded); it is killed when the
    /// lab is dropped.
    pub fn spawn(&mut self, name: &str, args: &[&str]) -> Result<&mut Child, String> {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(name)])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{args:?}: {e}"))?;
        self.children.push(child);
        self.children
            .last_mut()
            .ok_or_else(|| "no child".to_string())
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
