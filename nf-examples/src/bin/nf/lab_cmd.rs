//! `nf lab`: the failover lab (needs root).

use nf_examples::lab::{FailoverLab, LabConfig, Primary, Scenario, Workload, write_reports};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Options of `nf lab`.
pub struct Options<'a> {
    pub primaries: &'a str,
    pub workloads: &'a str,
    pub scenarios: &'a str,
    pub runs: usize,
    pub web_seconds: f64,
    pub fail_after: f64,
    pub failures: usize,
    pub out: &'a Path,
    pub name: &'a str,
}

fn list<T>(s: &str, what: &str, parse: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, String> {
    s.split(',')
        .map(|x| parse(x.trim()).ok_or_else(|| format!("unknown {what} `{x}`")))
        .collect()
}

/// Builds the lab, runs every combination, writes the reports, tears the lab down (also on Ctrl-C,
/// after the run in progress).
pub fn lab(o: Options<'_>) -> Result<(), String> {
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let _signals = std::thread::Builder::new()
        .name("nf-lab-signals".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if tokio::signal::ctrl_c().await.is_ok() {
                    eprintln!("nf lab: stopping after the run in progress, then tearing down");
                    s2.store(true, Ordering::Relaxed);
                }
            });
        })
        .map_err(|e| e.to_string())?;
    let cfg = LabConfig {
        nf: std::env::current_exe().map_err(|e| e.to_string())?,
        primaries: list(o.primaries, "primary", Primary::parse)?,
        workloads: list(o.workloads, "workload", Workload::parse)?,
        scenarios: list(o.scenarios, "scenario", Scenario::parse)?,
        runs: o.runs.max(1),
        web_duration: Duration::from_secs_f64(o.web_seconds.max(1.0)),
        fail_after: Duration::from_secs_f64(o.fail_after.max(0.5)),
        failures: o.failures.max(1),
        stop: stop.clone(),
        ..Default::default()
    };
    let total = cfg.primaries.len() * cfg.workloads.len() * cfg.scenarios.len() * cfg.runs;
    eprintln!("nf lab: building the topology ({total} runs to do)");
    let mut lab = FailoverLab::build(cfg)?;
    let mut n = 0;
    let results = lab.run_all(|r| {
        n += 1;
        eprintln!(
            "[{n}/{total}] {} {} {} run {}: {} of {} connections failed, {:.1} s{}",
            r.primary.name(),
            r.workload.name(),
            r.scenario.name(),
            r.run,
            r.failed,
            r.attempted,
            r.secs,
            r.switch_to_first_us.map_or(String::new(), |us| format!(
                ", switch -> first packet {:.1} ms",
                us as f64 / 1000.0
            ))
        );
    })?;
    drop(lab);
    let files = write_reports(o.out, o.name, &results)?;
    println!("{}", nf_examples::lab::markdown(&results));
    for f in files {
        println!("wrote {}", f.display());
    }
    Ok(())
}
