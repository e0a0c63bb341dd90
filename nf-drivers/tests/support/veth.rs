//! A veth pair for the tests that need a real link (root, as CI has).
#![allow(dead_code)]

use std::process::Command;

/// A veth pair, up, without IPv6 chatter; deleted when dropped.
pub struct Veth(pub String, pub String);

impl Veth {
    /// A pair named from `prefix`, this process and `tag` (unique per test).
    pub fn new(prefix: &str, tag: &str) -> Veth {
        let a = format!("{prefix}{}{tag}a", std::process::id() % 100_000);
        let b = format!("{prefix}{}{tag}b", std::process::id() % 100_000);
        let ip = |args: &[&str]| {
            let s = Command::new("ip").args(args).status().unwrap();
            assert!(s.success(), "ip {args:?}");
        };
        ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
        for d in [&a, &b] {
            // No IPv6 chatter (router solicitations, MLD) on the test's link.
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{d}/disable_ipv6"), "1");
            ip(&["link", "set", d, "up"]);
        }
        Veth(a, b)
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).status();
    }
}
