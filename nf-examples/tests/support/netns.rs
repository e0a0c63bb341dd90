//! The tests' view of [`nf_examples::netns`]: the same lab, with failures as panics (a test's report).
#![allow(dead_code)]

use std::process::{Child, Command, Output, Stdio};

/// Runs a command line through `sh -c`; panics with its output if it fails.
pub fn sh(cmd: &str) -> String {
    nf_examples::netns::sh(cmd).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs a command line through `sh -c` and returns its output whatever the status.
pub fn sh_out(cmd: &str) -> Output {
    nf_examples::netns::sh_out(cmd).unwrap()
}

/// Waits until `f` is true or panics after `secs` seconds.
pub fn wait_until(secs: u64, what: &str, f: impl FnMut() -> bool) {
    nf_examples::netns::wait_until(secs, what, f).unwrap_or_else(|e| panic!("{e}"))
}

/// A lab of namespaces, torn down on drop.
pub struct Lab(pub nf_examples::netns::Lab);

impl Lab {
    pub fn new(tag: &str) -> Lab {
        Lab(nf_examples::netns::Lab::new(tag))
    }
    pub fn ns(&self, name: &str) -> String {
        self.0.ns(name)
    }
    pub fn add(&mut self, name: &str) -> String {
        self.0.add(name).unwrap_or_else(|e| panic!("{e}"))
    }
    pub fn exec(&self, name: &str, cmd: &str) -> String {
        self.0.exec(name, cmd).unwrap_or_else(|e| panic!("{e}"))
    }
    pub fn exec_out(&self, name: &str, cmd: &str) -> Output {
        self.0.exec_out(name, cmd).unwrap()
    }
    pub fn veth(&self, a: &str, a_if: &str, a_ip: &str, b: &str, b_if: &str, b_ip: &str) {
        self.0
            .veth(a, a_if, a_ip, b, b_if, b_ip)
            .unwrap_or_else(|e| panic!("{e}"))
    }
    pub fn spawn(&mut self, name: &str, args: &[&str]) -> &mut Child {
        self.0.spawn(name, args).unwrap_or_else(|e| panic!("{e}"))
    }
    pub fn adopt(&mut self, child: Child) {
        self.0.adopt(child)
    }
    pub fn tag(&self) -> &str {
        &self.0.tag
    }
}

/// `tcpdump -i IFACE -w FILE` inside namespace `ns`, packet-buffered; returns once it is capturing.
pub fn tcpdump(lab: &Lab, ns: &str, iface: &str, file: &std::path::Path) -> Child {
    let mut c = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns(ns),
            "tcpdump",
            "-i",
            iface,
            "-U",
            "--immediate-mode",
            "-B",
            "16384",
            "-s",
            "0",
            "-w",
        ])
        .arg(file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // tcpdump says "listening on IFACE" on stderr once capturing.
    use std::io::{BufRead, BufReader};
    let mut line = String::new();
    BufReader::new(c.stderr.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("listening"), "tcpdump: {line}");
    c
}

/// Stops a tcpdump once its file has stopped growing (it may lag behind the traffic on a busy machine,
/// and packets still in its ring when it is stopped are lost).
pub fn stop_tcpdump(c: Child, file: &std::path::Path) {
    let size = || std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    let mut last = size();
    for _ in 0..100 {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let now = size();
        if now == last {
            break;
        }
        last = now;
    }
    let _ = Command::new("kill")
        .args(["-INT", &c.id().to_string()])
        .status();
    let out = c.wait_with_output().unwrap();
    eprintln!("tcpdump: {}", String::from_utf8_lossy(&out.stderr).trim());
}
