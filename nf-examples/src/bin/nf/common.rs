//! What the subcommands share: the registry, `NAME=VALUE` settings, building and running a graph on one
//! or several shards, stopping on a signal, printing handlers.

use nf_core::{Config, Error, HandlerValue, Registry, Router, ShardedRouter};
use std::collections::BTreeMap;
use std::path::Path;

/// Every element class `nf` knows: nf-core's and nf-drivers'.
pub fn registry() -> Registry {
    nf_drivers::registry()
}

/// The operator's way into a running graph: control sockets (Click's ControlSocket protocol, version
/// 1.3), hot reconfiguration (`WRITE hotconfig`, SIGHUP) and a Prometheus endpoint.
#[derive(clap::Args, Default)]
pub struct ControlArgs {
    /// Serve the handlers over Click's ControlSocket protocol at unix:PATH or tcp:ADDRESS:PORT (repeat
    /// for several; `nf ctl` is a client). Whoever reaches it can read every handler and write every
    /// writable one (stop sources, change backends, load a new configuration).
    #[arg(long = "control", value_name = "ADDR", value_parser = parse_listen)]
    pub control: Vec<nf_core::control::Listen>,
    /// Allow a TCP control socket or a metrics endpoint on an address other than loopback.
    #[arg(long)]
    pub control_remote: bool,
    /// Refuse writes on the control sockets (hot reconfiguration included).
    #[arg(long)]
    pub control_read_only: bool,
    /// Serve Prometheus metrics at http://ADDRESS:PORT/metrics: every element's numeric handlers, the
    /// shards' packets and batches, the buffer pool, and the store's and drivers' counters.
    #[arg(long, value_name = "ADDRESS:PORT")]
    pub metrics: Option<std::net::SocketAddr>,
}

fn parse_listen(s: &str) -> Result<nf_core::control::Listen, String> {
    nf_core::control::Listen::parse(s).map_err(|e| e.to_string())
}

/// What [`ControlArgs::start`] started; dropping it stops them (the fields are held, not read).
#[derive(Default)]
#[allow(dead_code)]
pub struct Ops {
    /// The control server (also when only metrics were asked for: the endpoint reads through it).
    pub control: Option<nf_core::control::ControlServer>,
    /// The metrics endpoint.
    pub metrics: Option<nf_core::metrics::MetricsServer>,
}

/// A state driver's counters, for a metrics endpoint (`driver` labels them: whitebox, syslog,
/// observe).
pub fn driver_source(
    driver: &'static str,
    c: std::sync::Arc<nf_drivers::driver::DriverCounters>,
) -> nf_core::metrics::Source {
    Box::new(move |m: &mut nf_core::metrics::Metrics| {
        let s = c.snapshot();
        let l = [("driver", driver)];
        for (name, v, help) in [
            (
                "nf_driver_seen",
                s.seen,
                "inputs the driver saw (state changes, log lines, packets)",
            ),
            ("nf_driver_parsed", s.parsed, "inputs the driver understood"),
            (
                "nf_driver_rejected",
                s.rejected,
                "inputs the driver could not use",
            ),
            (
                "nf_driver_emitted",
                s.emitted,
                "records the store acknowledged",
            ),
            (
                "nf_driver_dropped",
                s.dropped,
                "inputs or records lost to a full queue",
            ),
        ] {
            m.counter(name, help, &l, v as f64);
        }
        if c.store_lag.count() > 0 {
            latency_gauges(
                m,
                "nf_driver_store_lag",
                "time from a record's creation (the driver saw the change) to the store's acknowledgement (over the run)",
                &l,
                &c.store_lag,
            );
        }
    })
}

/// A latency histogram as three gauges, `PREFIX_p50_seconds`, `PREFIX_p99_seconds` and
/// `PREFIX_max_seconds` (a Prometheus summary's `quantile` label is for summaries only).
pub fn latency_gauges(
    m: &mut nf_core::metrics::Metrics,
    prefix: &str,
    help: &str,
    labels: &[(&str, &str)],
    h: &nf_state::replicate::Histogram,
) {
    for (v, q) in [
        (h.quantile_ns(0.5), "p50"),
        (h.quantile_ns(0.99), "p99"),
        (h.max_ns(), "max"),
    ] {
        m.gauge(
            &format!("{prefix}_{q}_seconds"),
            help,
            labels,
            v as f64 / 1e9,
        );
    }
}

/// A metrics endpoint of a program without a graph (a driver's): `sources` only.
pub fn metrics_only(
    addr: Option<std::net::SocketAddr>,
    remote: bool,
    sources: Vec<nf_core::metrics::Source>,
) -> Result<Option<nf_core::metrics::MetricsServer>, String> {
    let Some(addr) = addr else { return Ok(None) };
    let m = nf_core::metrics::MetricsServer::start(addr, None, sources, remote)
        .map_err(|e| e.to_string())?;
    eprintln!("metrics: http://{}/metrics", m.local_addr());
    Ok(Some(m))
}

/// Where a graph's configuration came from, for hot reconfiguration: the file (SIGHUP re-reads it)
/// and the `NAME=VALUE` settings (applied to every new text).
pub struct Source<'a> {
    /// The configuration as loaded.
    pub cfg: &'a Config,
    /// Its file.
    pub path: &'a Path,
    /// Its settings.
    pub params: &'a [String],
}

impl ControlArgs {
    fn config(&self, src: Option<&Source<'_>>) -> nf_core::control::ControlConfig {
        let hotconfig = src.and_then(|s| {
            let params = parse_params(s.params).ok()?;
            let name = "hotconfig".to_string();
            Some(nf_core::control::Rebuilder(std::sync::Arc::new(
                move |text: &str, shard: usize, shards: usize| {
                    let cfg = Config::parse(&name, text, &params).map_err(|e| e.to_string())?;
                    let graph = cfg.build(&registry()).map_err(|e| e.to_string())?;
                    let router =
                        Router::new_shard(graph, shard, shards).map_err(|e| e.to_string())?;
                    Ok((router, cfg.flatten()))
                },
            )))
        });
        nf_core::control::ControlConfig {
            read_only: self.control_read_only,
            allow_remote: self.control_remote,
            hotconfig,
            ..Default::default()
        }
    }

    /// Starts what was asked for on `router`: the control sockets (with hot reconfiguration of
    /// `src`'s file, also on SIGHUP) and the metrics endpoint, which adds `sources` to the router's
    /// figures.
    pub fn start(
        &self,
        router: &mut Router,
        src: &Source<'_>,
        sources: Vec<nf_core::metrics::Source>,
    ) -> Result<Ops, String> {
        router.set_config_text(&src.cfg.source.text, &src.cfg.flatten());
        let server =
            nf_core::control::ControlServer::start(router, &self.control, self.config(Some(src)))
                .map_err(|e| e.to_string())?;
        reload_on_hangup(server.handle(), src.path.to_path_buf());
        self.finish(server, sources)
    }

    fn finish(
        &self,
        server: nf_core::control::ControlServer,
        sources: Vec<nf_core::metrics::Source>,
    ) -> Result<Ops, String> {
        for a in server.local_addrs() {
            eprintln!("control socket: {a}");
        }
        let metrics = match self.metrics {
            None => None,
            Some(addr) => {
                let m = nf_core::metrics::MetricsServer::start(
                    addr,
                    Some(server.handle()),
                    sources,
                    self.control_remote,
                )
                .map_err(|e| e.to_string())?;
                eprintln!("metrics: http://{}/metrics", m.local_addr());
                Some(m)
            }
        };
        Ok(Ops {
            control: Some(server),
            metrics,
        })
    }

    /// [`start`](Self::start) on a graph of one or several shards (a sharded run is not reconfigured
    /// hot: `hotconfig` answers that it is not supported).
    pub fn start_on(&self, runner: &mut Runner, src: &Source<'_>) -> Result<Ops, String> {
        match runner {
            Runner::One(r) => self.start(r, src, Vec::new()),
            Runner::Sharded(_) if self.control.is_empty() && self.metrics.is_none() => {
                Ok(Ops::default())
            }
            Runner::Sharded(s) => {
                let flat = src.cfg.flatten();
                for r in s.shards_mut() {
                    r.set_config_text(&src.cfg.source.text, &flat);
                }
                let server = nf_core::control::ControlServer::start_sharded(
                    s,
                    &self.control,
                    self.config(None),
                )
                .map_err(|e| e.to_string())?;
                self.finish(server, Vec::new())
            }
        }
    }
}

/// Runs `body`'s future on a thread of its own with a small current-thread tokio runtime (signal
/// watchers: they must not depend on the program's own runtime or threads). A thread that cannot be
/// started is reported as a warning naming `what`.
pub fn watch_thread<F, Fut>(name: &str, what: &str, body: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let spawned = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(body());
        });
    if let Err(e) = spawned {
        eprintln!("warning: cannot watch for {what}: {e}");
    }
}

/// On SIGHUP, re-reads `path` and loads it through `handle` (`WRITE hotconfig`): the error, or what
/// the swap kept, is printed.
fn reload_on_hangup(handle: nf_core::control::ControlHandle, path: std::path::PathBuf) {
    #[cfg(unix)]
    watch_thread("nf-sighup", "SIGHUP", move || async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("SIGHUP: {}: {e}; the running graph stays", path.display());
                    continue;
                }
            };
            let h = handle.clone();
            let r = tokio::task::spawn_blocking(move || h.write("hotconfig", &text)).await;
            match r {
                Ok(r) if r.code / 100 == 2 => eprintln!("SIGHUP: {}", r.message),
                Ok(r) => eprintln!(
                    "SIGHUP: {} ({}); the running graph stays",
                    r.message, r.code
                ),
                Err(e) => eprintln!("SIGHUP: {e}"),
            }
        }
    });
    #[cfg(not(unix))]
    let _ = (handle, path);
}

/// Codec of the records' keys and values.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CodecArg {
    /// bincode (compact, the default).
    Bincode,
    /// JSON (readable).
    Json,
}

impl From<CodecArg> for nf_state::Codec {
    fn from(c: CodecArg) -> Self {
        match c {
            CodecArg::Bincode => nf_state::Codec::Bincode,
            CodecArg::Json => nf_state::Codec::Json,
        }
    }
}

/// Parses `NAME=VALUE` words.
pub fn parse_params(params: &[String]) -> Result<BTreeMap<String, String>, String> {
    let mut m = BTreeMap::new();
    for p in params {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| format!("`{p}` is not NAME=VALUE"))?;
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("`{k}` is not a variable name (letters, digits, _)"));
        }
        m.insert(k.to_string(), v.to_string());
    }
    Ok(m)
}

/// Warns about settings the configuration never reads (a misspelt name would otherwise be silent).
pub fn warn_unused(cfg: &Config, params: &BTreeMap<String, String>) {
    for name in cfg.unused_params(params) {
        eprintln!(
            "warning: {name}=... is not used: the configuration reads no `${name}`{}",
            match cfg
                .variables_read
                .iter()
                .find(|v| v.eq_ignore_ascii_case(name))
            {
                Some(v) => format!(" (did you mean {v}?)"),
                None => String::new(),
            }
        );
    }
}

/// Reads a configuration file with `NAME=VALUE` settings, warning about unused ones.
pub fn load_config(path: &Path, params: &[String]) -> Result<Config, String> {
    let params = parse_params(params)?;
    let cfg = Config::from_file(path, &params).map_err(|e| e.to_string())?;
    warn_unused(&cfg, &params);
    Ok(cfg)
}

/// Reads the agreed hash key from `path` and makes it this process's (before any graph is built).
pub fn load_hash_key(path: Option<&Path>) -> Result<(), String> {
    let Some(path) = path else { return Ok(()) };
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let key =
        nf_core::hash::HashKey::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    nf_core::hash::set_agreed(key).map_err(|_| "the agreed hash key was already set".to_string())
}

/// A graph on one thread or on several flow-affine shards.
pub enum Runner {
    /// One router on this thread.
    One(Box<Router>),
    /// N copies of the graph on N threads.
    Sharded(ShardedRouter),
}

impl Runner {
    /// Builds `cfg` once, or once per shard.
    pub fn build(cfg: &Config, reg: &Registry, shards: usize) -> Result<Runner, Error> {
        Self::build_elastic(cfg, reg, shards, shards)
    }

    /// Builds `cfg` once, or once per shard for up to `max` shards of which `shards` take flows at the
    /// start (see [`ShardedRouter::new_elastic`]).
    pub fn build_elastic(
        cfg: &Config,
        reg: &Registry,
        shards: usize,
        max: usize,
    ) -> Result<Runner, Error> {
        if shards <= 1 && max <= 1 {
            Ok(Runner::One(Box::new(Router::new(cfg.build(reg)?)?)))
        } else {
            Ok(Runner::Sharded(ShardedRouter::new_elastic(
                max.max(shards),
                shards,
                |_| Ok(cfg.build(reg)?),
            )?))
        }
    }

    /// A handle that stops the run from another thread.
    pub fn stop_handle(&self) -> nf_core::StopHandle {
        match self {
            Runner::One(r) => r.stop_handle(),
            Runner::Sharded(s) => s.stop_handle(),
        }
    }

    /// Runs until the sources end or the run is stopped.
    pub fn run(&mut self) -> Result<(), Error> {
        match self {
            Runner::One(r) => r.run(),
            Runner::Sharded(s) => s.run(),
        }
    }

    /// What the run did to the buffer pools (summed over shards).
    pub fn pool_stats(&self) -> nf_core::pool::PoolStats {
        match self {
            Runner::One(r) => r.pool_stats(),
            Runner::Sharded(s) => s.pool_stats(),
        }
    }

    /// Every element's handlers (summed over shards).
    pub fn handlers(&self) -> Vec<HandlerValue> {
        match self {
            Runner::One(r) => r.handlers(),
            Runner::Sharded(s) => s.handlers(),
        }
    }
}

/// Stops `stop` on the first SIGINT or SIGTERM (from a helper thread running a small tokio runtime), so
/// that a run interrupted by the user still flushes its files and prints its counters.
pub fn stop_on_signal(stop: nf_core::StopHandle) {
    watch_thread("nf-signals", "signals", move || async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("signal received: stopping");
        stop.stop();
    });
}

/// The classes whose `count` handler counts the packets a run took in.
const SOURCES: &[&str] = &[
    "FromPcap",
    "Replay",
    "InfiniteSource",
    "RatedSource",
    "FromDevice",
    "FromTap",
];

/// Packets the run's sources produced.
pub fn source_packets(h: &[HandlerValue]) -> u64 {
    h.iter()
        .filter(|v| v.handler == "count" && SOURCES.contains(&v.class.as_str()))
        .filter_map(|v| v.value.parse::<u64>().ok())
        .sum()
}

/// Prints `element.handler  value`, aligned; multi-line values indented below their name.
pub fn print_handlers(h: &[HandlerValue]) {
    let width = h
        .iter()
        .map(|v| v.element.len() + v.handler.len() + 1)
        .max()
        .unwrap_or(0);
    for v in h {
        let name = format!("{}.{}", v.element, v.handler);
        if v.value.contains('\n') {
            println!("{name}:");
            for l in v.value.lines() {
                println!("    {l}");
            }
        } else {
            println!("{name:width$}  {}", v.value);
        }
    }
}
