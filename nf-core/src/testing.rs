//! Helpers for tests and doctests: run a configuration text to completion and inspect the router.

use crate::config::Config;
use crate::error::Error;
use crate::registry::Registry;
use crate::router::Router;
use std::collections::BTreeMap;

/// Parses `text` with nf-core's standard elements, runs it until its sources stop, and returns the router.
pub fn run_config(text: &str) -> Result<Router, Error> {
    run_config_with(&Registry::standard(), text)
}

/// As [`run_config`], with the given registry.
pub fn run_config_with(registry: &Registry, text: &str) -> Result<Router, Error> {
    let cfg = Config::parse("<test>", text, &BTreeMap::new())?;
    let g = cfg.build(registry)?;
    let mut r = Router::new(g)?;
    r.run()?;
    Ok(r)
}

/// Parses and builds `text` with the standard classes into a router that has not run yet (its
/// configuration text set for a control socket's `config` and `flatconfig`).
pub fn router_for(text: &str) -> Result<Router, Error> {
    let cfg = Config::parse("<test>", text, &BTreeMap::new())?;
    let g = cfg.build(&Registry::standard())?;
    let mut r = Router::new(g)?;
    r.set_config_text(text, &cfg.flatten());
    Ok(r)
}

/// Checks `text` (parse, build, graph checks) and returns the rendered errors, or `None` if it is valid.
pub fn check_config(registry: &Registry, name: &str, text: &str) -> Option<String> {
    check_config_with_budget(registry, name, text, crate::args::DEFAULT_MEMORY_BUDGET)
}

/// [`check_config`] with a memory budget of `bytes` for what the elements allocate when they are made (the
/// fuzz target uses a small one; see [`Config::build_with_budget`]).
pub fn check_config_with_budget(
    registry: &Registry,
    name: &str,
    text: &str,
    bytes: u64,
) -> Option<String> {
    let cfg = match Config::parse(name, text, &BTreeMap::new()) {
        Ok(c) => c,
        Err(e) => return Some(e.to_string()),
    };
    let g = match cfg.build_with_budget(registry, bytes) {
        Ok(g) => g,
        Err(e) => return Some(e.to_string()),
    };
    Router::new(g).err().map(|e| e.to_string())
}

/// What a [`Recorder`] saw: each packet's timestamp and bytes, in arrival order.
pub type Recorded = std::sync::Arc<std::sync::Mutex<Vec<(u64, Vec<u8>)>>>;

/// Checks what each shard of a sharded run recorded (`seen[shard]`): more than `min` packets, timestamps
/// strictly increasing, every frame one whose flow belongs to that shard
/// ([`frame_shard`](crate::flow::frame_shard)). Returns all of them together, sorted. Panics (it is for
/// tests) on the first property that does not hold, naming the shard.
pub fn merged_shard_records(seen: &[Recorded], min: usize) -> Vec<(u64, Vec<u8>)> {
    let mut merged = Vec::new();
    for (shard, v) in seen.iter().enumerate() {
        let v = v.lock().unwrap_or_else(|p| p.into_inner());
        assert!(v.len() > min, "shard {shard}: {} packets", v.len());
        for w in v.windows(2) {
            assert!(w[0].0 < w[1].0, "shard {shard}: out of order");
        }
        for (_, f) in v.iter() {
            assert_eq!(
                crate::flow::frame_shard(f, seen.len()),
                shard,
                "shard {shard}: a frame of another shard"
            );
        }
        merged.extend(v.iter().cloned());
    }
    merged.sort();
    merged
}

/// A sink (one push input) that records each packet's timestamp and bytes into a shared [`Recorded`]
/// (one per shard in a sharded run, to check what each shard was given).
#[derive(Debug)]
pub struct Recorder(pub Recorded);

/// One push input, no output: the test sinks' ports (also for sinks a test writes itself).
pub const SINK: crate::PortSpec = crate::PortSpec::new(
    crate::PortCount::exactly(1),
    crate::PortCount::exactly(0),
    "h/",
);

impl crate::Element for Recorder {
    fn class_name(&self) -> &'static str {
        "Recorder"
    }
    fn ports(&self) -> crate::PortSpec {
        SINK
    }
    fn push(&mut self, _port: usize, batch: &mut crate::Batch, _out: &mut crate::Outputs) {
        let mut v = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for p in batch.drain() {
            v.push((p.anno.timestamp.0, p.data().to_vec()));
        }
    }
}

/// Packets a [`Keep`] holds, shared with the test that reads them.
pub type Kept = std::sync::Arc<std::sync::Mutex<Vec<crate::Packet>>>;

/// A sink (one push input) that keeps every packet it is given, whole, past the run and the router: to
/// check what a source handed out (a borrowed packet still reads its region after its source is gone) or
/// to hold packets as a slow graph would.
#[derive(Debug, Default)]
pub struct Keep(pub Kept);

impl crate::Element for Keep {
    fn class_name(&self) -> &'static str {
        "Keep"
    }
    fn ports(&self) -> crate::PortSpec {
        SINK
    }
    fn push(&mut self, _port: usize, batch: &mut crate::Batch, _out: &mut crate::Outputs) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(batch.drain());
    }
}
