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
