//! The tests' view of [`nf_examples::netns`]: the same lab, with failures as panics (a test's report).
#![allow(dead_code)]

use std::process::{Child, Output};

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
