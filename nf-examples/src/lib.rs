//! # nf-examples
//!
//! Runnable programs of the NF SDK: the `nf` command (`nf run`, `nf elements`, `nf pcap gen`, `nf bench`,
//! `nf state`, `nf syslogd`, `nf observe`, `nf lb`, `nf demo`, `nf lab`) and example configurations in
//! `configs/`; [`netns`] (network-namespace labs) and [`lab`] (the failover experiment) behind `nf lab`.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod lab;
pub mod netns;

/// The directory of the example configurations (for tests and tools that run them).
pub fn configs_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs")
}

/// The README's Rust examples, compiled and run as doctests so that they cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
