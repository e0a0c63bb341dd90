//! A custom element in a crate of one's own, and a binary that runs configurations using it:
//! `cargo run --example ttl_floor -- [CONFIG] [NAME=VALUE ...]` (without CONFIG, a built-in one).
//!
//! In your own crate, `Cargo.toml` needs `nf-core = "0.1"` (and `nf-drivers = "0.1"` for the pcap and
//! device elements, as here), and this file is your `src/main.rs`.

use nf_core::{Batch, Config, Element, HandlerSpec, Outputs, Registry, Router};
use std::collections::BTreeMap;

/// Drops IPv4 packets whose TTL is under a floor, and counts them.
pub struct TtlFloor {
    min: u8,
    dropped: u64,
}

impl Element for TtlFloor {
    fn class_name(&self) -> &'static str {
        "TtlFloor"
    }
    fn push(&mut self, _port: usize, batch: &mut Batch, out: &mut Outputs) {
        let (min, mut dropped) = (self.min, 0);
        batch.map_to(out, 0, |p| {
            let ok = p
                .network_header()
                .and_then(|ip| ip.get(8))
                .is_some_and(|&ttl| ttl >= min);
            dropped += u64::from(!ok);
            ok
        });
        self.dropped += dropped;
    }
    fn handlers(&self) -> &'static [HandlerSpec] {
        const H: &[HandlerSpec] = &[HandlerSpec::read("dropped", "packets under the floor")];
        H
    }
    fn read_handler(&self, name: &str) -> Option<String> {
        (name == "dropped").then(|| self.dropped.to_string())
    }
}

/// The classes this binary knows: the SDK's, plus `TtlFloor(MIN)`.
pub fn registry() -> Registry {
    let mut registry = nf_drivers::registry();
    registry.register("TtlFloor", "drops packets under a TTL floor", |a| {
        Ok(TtlFloor {
            min: a.read_mp("MIN")?,
            dropped: 0,
        })
    });
    registry
}

/// The configuration run when none is given.
pub const DEFAULT: &str = "InfiniteSource(LIMIT 10, STOP true)
    -> Strip(14) -> CheckIPHeader -> f :: TtlFloor(65) -> Discard;";

/// Parses `text`, runs it to its end and returns the router (to read handlers from).
pub fn run(name: &str, text: &str, params: &BTreeMap<String, String>) -> Result<Router, String> {
    let cfg = Config::parse(name, text, params).map_err(|e| e.to_string())?;
    let graph = cfg.build(&registry()).map_err(|e| e.to_string())?;
    let mut router = Router::new(graph).map_err(|e| e.to_string())?;
    router.run().map_err(|e| e.to_string())?;
    Ok(router)
}

#[allow(dead_code)] // a test includes this file as a module and calls `run`
fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let (name, text) = match args.next() {
        Some(path) => match std::fs::read_to_string(&path) {
            Ok(t) => (path, t),
            Err(e) => {
                eprintln!("error: {path}: {e}");
                return std::process::ExitCode::FAILURE;
            }
        },
        None => ("built-in".to_string(), DEFAULT.to_string()),
    };
    let params = args
        .filter_map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    match run(&name, &text, &params) {
        Ok(router) => {
            for h in router.handlers() {
                println!("{}.{}  {}", h.element, h.handler, h.value);
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
