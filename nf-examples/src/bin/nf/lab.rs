//! `nf lab`: the failover lab (needs root).

use nf_examples::lab::{FailoverLab, LabConfig, Primary, Scenario, Workload, write_reports};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// `nf lab`: the failover lab (needs root): a topology in network namespaces, a primary that fails and
/// a minion that takes over, real TCP; writes the table (Markdown, JSON) and a plot (SVG).
#[derive(clap::Args)]
pub struct LabArgs {
    /// Primaries (comma-separated): the balancers whitebox, syslog, observe (minion: nf lb); the
    /// iptables NAPT box nat-syslog (its conntrack events) and nat-observe (its traffic) (minion: nf
    /// nat); the iptables stateful firewall fw-syslog (its conntrack events) (minion: nf fw).
    #[arg(long, default_value = "whitebox,syslog,observe")]
    primaries: String,
    /// Workloads: web, long, load (`nf load`: sessions at --load-rate a second and --load-long
    /// DASH-like flows, each session's outcome placed against each failure), and the paper's sizes:
    /// web-N (`nf load` opening N browsing sessions over --duration, each --web-requests requests
    /// --web-think apart: web-1k, web-2k, web-20k, web-30k, web-100k) and dash-N (N concurrent DASH-like flows of --load-long-kbit: dash-50, dash-1000).
    #[arg(long, default_value = "web,long")]
    workloads: String,
    /// Scenarios: clean, copied, fail, failover.
    #[arg(long, default_value = "clean,copied,fail,failover")]
    scenarios: String,
    /// Runs of each combination.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Length of a WEB run, seconds.
    #[arg(long, default_value_t = 8.0)]
    web_seconds: f64,
    /// When the failure comes, seconds into the traffic.
    #[arg(long, default_value_t = 3.0)]
    fail_after: f64,
    /// Failures per run, every FAIL_AFTER seconds, flipping traffic to the minion and back to the
    /// recovered primary (restarted as a replicating minion); the white-box primary only.
    #[arg(long, default_value_t = 1)]
    failures: usize,
    /// The paper's protocol: the traffic's length in seconds (WEB and LOAD; sets --web-seconds and
    /// --load-seconds).
    #[arg(long)]
    duration: Option<f64>,
    /// The paper's protocol: a failure every this many seconds while the traffic lasts (sets
    /// --fail-after and --failures; with --duration 300 --fail-every 30, nine failures, the last at
    /// 270 s).
    #[arg(long)]
    fail_every: Option<f64>,
    /// Each backend's sending rate in Mbit/s (`tc tbf`; 8 keeps LONG's downloads open for seconds;
    /// LOAD at a thousand sessions a second with long flows needs about 100).
    #[arg(long, default_value_t = 8)]
    backend_mbit: u32,
    /// LOAD: new sessions a second (Poisson arrivals).
    #[arg(long, default_value_t = 200.0)]
    load_rate: f64,
    /// LOAD: concurrent long flows.
    #[arg(long, default_value_t = 20)]
    load_long: usize,
    /// LOAD and dash-N: each long flow's bitrate, kbit/s.
    #[arg(long, default_value_t = 500)]
    load_long_kbit: u32,
    /// WEB-N: requests per browsing session (over one kept-alive connection).
    #[arg(long, default_value_t = 5)]
    web_requests: u32,
    /// WEB-N: seconds between two requests of a session (the user's think time).
    #[arg(long, default_value_t = 1.0)]
    web_think: f64,
    /// LOAD: seconds of new sessions.
    #[arg(long, default_value_t = 8.0)]
    load_seconds: f64,
    /// LOAD: milliseconds before a failure in which a new session counts as at risk (its state may
    /// not have reached the minion).
    #[arg(long, default_value_t = 100.0)]
    risk_window_ms: f64,
    /// The state store: `single` (one Redis) or `cluster` (a Redis Cluster, three masters with a
    /// replica each).
    #[arg(long, value_enum, default_value_t = LabStore::Single)]
    store: LabStore,
    /// With `--store cluster`: kill the master holding the flow mappings this many seconds into the
    /// traffic (before the balancer's failure at --fail-after: the state of the connections opened
    /// meanwhile is in the replicator's retries when the balancer fails).
    #[arg(long)]
    kill_store_master: Option<f64>,
    /// The namespaces' prefix (two labs can run at once under different tags).
    #[arg(long, default_value = "nflab")]
    tag: String,
    /// Where the reports go.
    #[arg(long, default_value = "lab-results")]
    out: PathBuf,
    /// The reports' file name (NAME.md, NAME.json, NAME.svg).
    #[arg(long, default_value = "failover")]
    name: String,
}

/// `nf lab --store`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LabStore {
    /// One Redis.
    Single,
    /// A Redis Cluster: three masters with a replica each.
    Cluster,
}

fn list<T>(s: &str, what: &str, parse: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, String> {
    s.split(',')
        .map(|x| parse(x.trim()).ok_or_else(|| format!("unknown {what} `{x}`")))
        .collect()
}

/// Builds the lab, runs every combination, writes the reports, tears the lab down (also on Ctrl-C,
/// after the run in progress).
pub fn run(o: LabArgs) -> Result<(), String> {
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    crate::common::watch_thread("nf-lab-signals", "Ctrl-C", move || async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("nf lab: stopping after the run in progress, then tearing down");
            s2.store(true, Ordering::Relaxed);
        }
    });
    let (mut web_seconds, mut load_seconds, mut fail_after, mut failures) =
        (o.web_seconds, o.load_seconds, o.fail_after, o.failures);
    if let Some(d) = o.duration {
        (web_seconds, load_seconds) = (d, d);
    }
    if let Some(every) = o.fail_every {
        if every.is_nan() || every <= 0.0 {
            return Err("--fail-every must be above 0".into());
        }
        fail_after = every;
        failures = ((load_seconds.max(web_seconds) / every).ceil() as usize)
            .saturating_sub(1)
            .max(1);
    }
    if o.kill_store_master.is_some() && o.store != LabStore::Cluster {
        return Err("--kill-store-master needs --store cluster".into());
    }
    let cfg = LabConfig {
        nf: std::env::current_exe().map_err(|e| e.to_string())?,
        primaries: list(&o.primaries, "primary", Primary::parse)?,
        workloads: list(&o.workloads, "workload", Workload::parse)?,
        scenarios: list(&o.scenarios, "scenario", Scenario::parse)?,
        runs: o.runs.max(1),
        web_duration: Duration::from_secs_f64(web_seconds.max(1.0)),
        fail_after: Duration::from_secs_f64(fail_after.max(0.5)),
        failures: failures.max(1),
        backend_mbit: o.backend_mbit,
        load_rate: o.load_rate.max(0.0),
        load_long: o.load_long,
        load_long_kbit: o.load_long_kbit,
        web_requests: o.web_requests,
        web_think: Duration::try_from_secs_f64(o.web_think).map_err(|_| "--web-think: seconds")?,
        load_duration: Duration::from_secs_f64(load_seconds.max(1.0)),
        risk_window: Duration::from_secs_f64(o.risk_window_ms.max(0.0) / 1000.0),
        store_cluster: o.store == LabStore::Cluster,
        tag: o.tag,
        kill_store_master: match o.kill_store_master {
            Some(s) if s.is_finite() && s >= 0.0 => Some(Duration::from_secs_f64(s)),
            Some(_) => return Err("--kill-store-master: seconds, 0 or more".into()),
            None => None,
        },
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
    let files = write_reports(&o.out, &o.name, &results)?;
    println!("{}", nf_examples::lab::markdown(&results));
    for f in files {
        println!("wrote {}", f.display());
    }
    Ok(())
}
