//! What `nf lb`, `nf nat` and `nf fw` share: a graph from a configuration with one stateful element, a
//! role (primary: replicates the element's state through the white-box driver; minion: installs the
//! store's state as it arrives and serves at once; standalone), heartbeats, metrics, the control socket
//! and signals. Each command adds what its element needs (the balancer's backend states, health checks).

use crate::common::{ControlArgs, Ops, Source, load_config, print_handlers, registry};
use nf_core::Router;
use nf_core::metrics::Metrics;
use nf_drivers::driver::{DriverCounters, Shutdown, ShutdownTrigger, StateDriver};
use nf_drivers::whitebox::WhiteBox;
use nf_state::replicate::{
    FollowerStats, Install, ReplicatorConfig, ReplicatorStats, follow_with_backpressure,
};
use nf_state::schemas::{Heartbeat, HeartbeatValue, NodeKey};
use nf_state::{Codec, Record, Schema, StateStore};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The arguments every stateful node command takes.
#[derive(clap::Args)]
pub struct NodeArgs {
    /// The configuration file.
    pub config: PathBuf,
    /// `NAME=VALUE` settings for `$NAME` in the configuration.
    #[arg(value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// What this node does with its state.
    #[arg(long, value_enum, default_value = "standalone")]
    pub role: Role,
    /// The state store (primary and minion; see `nf state --help`).
    #[arg(long)]
    pub store: Option<String>,
    /// This node's name (heartbeats, records' origin) [default: the command's name: lb, nat, fw].
    #[arg(long)]
    pub node: Option<String>,
    /// The stateful element's name in the configuration [default: lb for nf lb, rw for nf nat, ct
    /// for nf fw].
    #[arg(long)]
    pub element: Option<String>,
    /// Minion: install only records whose origin is this node (repeat for several; default: any).
    /// Records from anyone else who can write to the store are skipped and counted.
    #[arg(long = "accept-origin", value_name = "NODE")]
    pub accept_origin: Vec<String>,
    /// Minion: also replicate the state it creates itself (after a takeover), so that a recovered
    /// primary, restarted as a minion, can take it back.
    #[arg(long)]
    pub replicate: bool,
    /// Print nothing at the end.
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub control: ControlArgs,
}

/// What a node does with its state.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Replicates the state it creates to the store.
    Primary,
    /// Installs the state of the store as it arrives, and serves traffic at once.
    Minion,
    /// Keeps its state to itself.
    Standalone,
}

impl Role {
    /// Its name in heartbeats and messages.
    pub fn name(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Minion => "minion",
            Role::Standalone => "standalone",
        }
    }
}

/// Every node's last heartbeat as this node last read it: (node, role, age in seconds, entries).
type Beats = Arc<std::sync::Mutex<Vec<(String, String, f64, u64)>>>;

/// A stateful node being set up, then run ([`Node::serve`]).
pub struct Node {
    /// The command (`lb`, `nat`, `fw`), for messages.
    pub command: &'static str,
    /// The role.
    pub role: Role,
    /// This node's name.
    pub name: String,
    /// The stateful element's name.
    pub element: String,
    /// The store, for a primary or a minion.
    pub store: Option<Arc<dyn StateStore>>,
    /// The async runtime of the drivers, followers and heartbeats.
    pub rt: tokio::runtime::Runtime,
    /// Fires when the node stops.
    pub shutdown: Shutdown,
    trigger: ShutdownTrigger,
    /// Tasks joined at the end.
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Threads joined at the end.
    pub threads: Vec<std::thread::JoinHandle<()>>,
    /// Metrics sources for the endpoint.
    pub sources: Vec<nf_core::metrics::Source>,
    beats: Beats,
    follower_stats: Option<Arc<FollowerStats>>,
    /// Tells followers to stop (set when `shutdown` fires).
    stop_followers: Option<tokio::sync::watch::Receiver<bool>>,
    accept: Vec<String>,
    replicate: bool,
    quiet: bool,
    control: ControlArgs,
    config: PathBuf,
    params: Vec<String>,
    cfg: nf_core::config::Config,
}

impl Node {
    /// Loads the configuration, builds its graph, opens the store: a node of command `command` whose
    /// stateful element is called `default_element` unless `--element` says otherwise.
    pub fn open(
        a: NodeArgs,
        command: &'static str,
        default_element: &str,
    ) -> Result<(Node, Router), String> {
        let role = a.role;
        if role != Role::Standalone && a.store.is_none() {
            return Err(format!("--role {} needs --store URL", role.name()));
        }
        let reg = registry();
        let cfg = load_config(&a.config, &a.params)?;
        let router =
            Router::new(cfg.build(&reg).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| format!("tokio runtime: {e}"))?;
        let store = match &a.store {
            Some(url) => Some(
                rt.block_on(nf_state::open(url))
                    .map_err(|e| e.to_string())?,
            ),
            None => None,
        };
        let (trigger, shutdown) = Shutdown::new();
        let beats: Beats = Arc::default();
        let mut sources = Vec::new();
        if store.is_some() {
            sources.push(beats_source(beats.clone()));
        }
        let node = Node {
            command,
            role,
            name: a.node.unwrap_or_else(|| command.to_string()),
            element: a.element.unwrap_or_else(|| default_element.to_string()),
            store,
            rt,
            shutdown,
            trigger,
            tasks: Vec::new(),
            threads: Vec::new(),
            sources,
            beats,
            follower_stats: None,
            stop_followers: None,
            accept: a.accept_origin,
            replicate: a.replicate,
            quiet: a.quiet,
            control: a.control,
            config: a.config,
            params: a.params,
            cfg,
        };
        Ok((node, router))
    }

    /// True if this node replicates what its element creates: a primary, or a minion with
    /// `--replicate` (the flows it creates once it serves; installed ones are not reported).
    pub fn replicates(&self) -> bool {
        self.store.is_some()
            && (self.role == Role::Primary || (self.role == Role::Minion && self.replicate))
    }

    /// Runs a white-box driver of schema `S` (origin: this node) to the store, with `attach` putting
    /// its sink on the element's table; its counters go to the metrics. Returns the driver's counters.
    pub fn replicate<S: Schema>(
        &mut self,
        attach: impl FnOnce(&WhiteBox<S>),
    ) -> Option<Arc<DriverCounters>> {
        let store = self.store.clone()?;
        let mut driver = WhiteBox::<S>::new(ReplicatorConfig {
            origin: self.name.clone(),
            ..Default::default()
        });
        attach(&driver);
        let c = driver.counters();
        self.sources
            .push(replication_source(c.clone(), driver.replicator_stats()));
        let sd = self.shutdown.clone();
        self.tasks.push(self.rt.spawn(async move {
            match driver.run(store, sd).await {
                Ok(done) => eprintln!("whitebox: {done}"),
                Err(e) => eprintln!("whitebox: {e}"),
            }
        }));
        Some(c)
    }

    /// Follows schema `S` from the store into the element (a minion) until the node stops, with the
    /// install callbacks `installer` makes (one per attempt: a store that goes away is waited for and
    /// followed again from a new snapshot). The first follower's counters are the node's (metrics,
    /// heartbeats, the summary at the end); later ones (`what` names them) keep their own.
    pub fn follow<S, F, I>(
        &mut self,
        what: &'static str,
        installer: F,
    ) -> Option<Arc<FollowerStats>>
    where
        S: Schema,
        F: Fn() -> I + Send + 'static,
        I: FnMut(Install<S>) -> Result<(), Install<S>> + Send + 'static,
    {
        let store = self.store.clone()?;
        let stop = match &self.stop_followers {
            Some(s) => s.clone(),
            None => {
                let (tx, rx) = tokio::sync::watch::channel(false);
                let mut sd = self.shutdown.clone();
                self.tasks.push(self.rt.spawn(async move {
                    sd.wait().await;
                    let _ = tx.send(true);
                }));
                self.stop_followers = Some(rx.clone());
                rx
            }
        };
        let stats = Arc::new(FollowerStats::default());
        if self.follower_stats.is_none() {
            self.follower_stats = Some(stats.clone());
            self.sources.push(follower_source(stats.clone()));
        }
        self.tasks.push(self.rt.spawn(follow_retrying(
            what,
            store,
            stats.clone(),
            stop,
            self.accept.clone(),
            installer,
        )));
        Some(stats)
    }

    /// Starts this node's heartbeats (a primary reports what its driver emitted and saw, a minion the
    /// last sequence it applied and how many records).
    pub fn heartbeats(&mut self, driver: Option<Arc<DriverCounters>>) {
        let Some(store) = self.store.clone() else {
            return;
        };
        let progress: Box<dyn Fn() -> (u64, u64) + Send> = match (&self.follower_stats, driver) {
            (Some(st), _) if self.role == Role::Minion => {
                let st = st.clone();
                Box::new(move || {
                    (
                        st.last_seq.load(Ordering::Relaxed),
                        st.applied.load(Ordering::Relaxed),
                    )
                })
            }
            (_, Some(c)) => Box::new(move || {
                let s = c.snapshot();
                (s.emitted, s.parsed)
            }),
            _ => Box::new(|| (0, 0)),
        };
        self.tasks.push(self.rt.spawn(heartbeats(
            store,
            self.name.clone(),
            self.role.name(),
            progress,
            self.beats.clone(),
            self.shutdown.clone(),
        )));
    }

    /// Runs the graph until its sources end or SIGINT/SIGTERM (a minion follows until told to stop),
    /// with the control socket and metrics endpoint; `with_ops` adds tasks that need the control
    /// socket (health checks). Then stops everything, prints the follower's and every element's
    /// counters.
    pub fn serve(
        mut self,
        mut router: Router,
        with_ops: impl FnOnce(&mut Node, &Ops),
    ) -> Result<(), String> {
        let sources = std::mem::take(&mut self.sources);
        let ops = self.control.start(
            &mut router,
            &Source {
                cfg: &self.cfg,
                path: &self.config,
                params: &self.params,
            },
            sources,
        )?;
        with_ops(&mut self, &ops);
        // SIGINT/SIGTERM stop the router; the router's end stops the rest.
        let stop = router.stop_handle();
        let (sig_trigger, mut sig) = self
            .rt
            .block_on(async { Shutdown::on_signals() })
            .map_err(|e| e.to_string())?;
        let mut sig_after = sig.clone();
        self.rt.spawn(async move {
            sig.wait().await;
            stop.stop();
        });
        let (cmd, role) = (self.command, self.role.name());
        eprintln!("nf {cmd}: {role} `{}` running", self.name);
        let res = router.run();
        if self.role == Role::Minion && !sig_after.is_set() {
            // A minion follows until told to stop, whether or not its graph has traffic of its own.
            eprintln!("nf {cmd}: the graph ended; following until SIGINT/SIGTERM");
            self.rt.block_on(sig_after.wait());
        }
        self.trigger.trigger();
        drop(sig_trigger);
        for t in self.tasks.drain(..) {
            let _ = self.rt.block_on(t);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        drop(ops);
        if let Some(st) = &self.follower_stats {
            let g = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
            eprintln!(
                "follower: {} snapshot records, {} applied, {} foreign (origin not accepted), {} rejected, \
                 {} gaps, {} rewinds, {} install waits (queue full), last seq {}",
                g(&st.snapshot_records),
                g(&st.applied),
                g(&st.foreign),
                g(&st.rejected),
                g(&st.gaps),
                g(&st.rewinds),
                g(&st.install_waits),
                g(&st.last_seq)
            );
        }
        if !self.quiet {
            print_handlers(&router.handlers());
        }
        res.map_err(|e| e.to_string())
    }
}

/// Follows schema `S` until `stop` turns true: a store that goes away (or is not there yet) is waited
/// for, with a growing pause, and followed again from a new snapshot (which replaces what it installs).
/// `installer` makes each attempt's install callback.
async fn follow_retrying<S, F, I>(
    what: &'static str,
    store: Arc<dyn StateStore>,
    stats: Arc<FollowerStats>,
    stop: tokio::sync::watch::Receiver<bool>,
    origins: Vec<String>,
    installer: F,
) where
    S: Schema,
    F: Fn() -> I + Send,
    I: FnMut(Install<S>) -> Result<(), Install<S>> + Send,
{
    let mut backoff = Duration::from_millis(100);
    loop {
        let r = follow_with_backpressure::<S>(
            store.clone(),
            stats.clone(),
            stop.clone(),
            &origins,
            installer(),
        )
        .await;
        match r {
            Ok(()) => break,
            Err(_) if *stop.borrow() => break,
            Err(e) => {
                eprintln!("{what}: {e}; following again in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Upserts this node's heartbeat every 500 ms until `stop` fires, and reads every node's each second
/// (for the metrics endpoint).
async fn heartbeats(
    store: Arc<dyn StateStore>,
    node: String,
    role: &'static str,
    progress: Box<dyn Fn() -> (u64, u64) + Send>,
    beats: Beats,
    mut stop: Shutdown,
) {
    let mut t = tokio::time::interval(Duration::from_millis(500));
    let mut tick = 0u64;
    loop {
        tokio::select! {
            _ = stop.wait() => return,
            _ = t.tick() => {}
        }
        tick += 1;
        if tick.is_multiple_of(2)
            && let Ok(snap) = store.scan("heartbeat").await
        {
            let now = nf_core::Timestamp::now().0;
            let seen: Vec<_> = snap
                .records
                .iter()
                .filter_map(|r| r.decode::<Heartbeat>().ok())
                .filter_map(|(k, v)| {
                    let v = v?;
                    let age = now.saturating_sub(v.time_ns) as f64 / 1e9;
                    Some((k.node, v.role, age, v.entries))
                })
                .collect();
            if let Ok(mut b) = beats.lock() {
                *b = seen;
            }
        }
        let (seq, entries) = progress();
        let v = HeartbeatValue {
            role: role.into(),
            time_ns: nf_core::Timestamp::now().0,
            seq,
            entries,
        };
        if let Ok(r) =
            Record::upsert::<Heartbeat>(Codec::Bincode, &node, &NodeKey { node: node.clone() }, &v)
        {
            let _ = store.apply(vec![r]).await;
        }
    }
}

/// The white-box driver's and its replicator's counters, for the metrics endpoint.
fn replication_source(
    c: Arc<DriverCounters>,
    rs: Arc<ReplicatorStats>,
) -> nf_core::metrics::Source {
    let driver = crate::common::driver_source("whitebox", c);
    Box::new(move |m: &mut Metrics| {
        driver(m);
        let g = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
        m.counter(
            "nf_replication_written",
            "records written to the store",
            &[],
            g(&rs.written),
        );
        m.counter(
            "nf_replication_batches",
            "batches written to the store",
            &[],
            g(&rs.batches),
        );
        m.counter(
            "nf_replication_deltas_dropped",
            "state changes dropped because the replication queue was full",
            &[],
            g(&rs.dropped),
        );
        m.counter(
            "nf_replication_coalesced",
            "state changes folded into a later change of the same key",
            &[],
            g(&rs.coalesced),
        );
        m.counter(
            "nf_replication_retries",
            "store writes retried",
            &[],
            g(&rs.retries),
        );
        crate::common::latency_gauges(
            m,
            "nf_replication_lag",
            "time from a state change to the store's acknowledgement (over the run)",
            &[],
            &rs.lag,
        );
    })
}

/// A minion's follower's counters, for the metrics endpoint.
fn follower_source(st: Arc<FollowerStats>) -> nf_core::metrics::Source {
    Box::new(move |m: &mut Metrics| {
        let g = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
        m.counter(
            "nf_follower_applied",
            "stream records applied",
            &[],
            g(&st.applied),
        );
        m.counter(
            "nf_follower_snapshot_records",
            "records installed from snapshots",
            &[],
            g(&st.snapshot_records),
        );
        m.counter(
            "nf_follower_gaps",
            "sequence gaps (each followed by a new snapshot)",
            &[],
            g(&st.gaps),
        );
        m.counter(
            "nf_follower_rewinds",
            "times the store went back in time (a failover that lost acknowledged writes), each followed by a merged snapshot",
            &[],
            g(&st.rewinds),
        );
        m.counter(
            "nf_follower_rejected",
            "records that did not decode",
            &[],
            g(&st.rejected),
        );
        m.counter(
            "nf_follower_foreign",
            "records from an origin not accepted",
            &[],
            g(&st.foreign),
        );
        m.counter(
            "nf_follower_install_waits",
            "installs that waited for room in the element's install queue",
            &[],
            g(&st.install_waits),
        );
        m.gauge(
            "nf_follower_last_seq",
            "the last sequence number applied",
            &[],
            g(&st.last_seq),
        );
        crate::common::latency_gauges(
            m,
            "nf_follower_latency",
            "time from a record's creation on the primary to its installation here (over the run)",
            &[],
            &st.latency,
        );
    })
}

/// Every node's heartbeat age, for the metrics endpoint.
fn beats_source(beats: Beats) -> nf_core::metrics::Source {
    Box::new(move |m: &mut Metrics| {
        let Ok(b) = beats.lock() else { return };
        for (node, role, age, entries) in b.iter() {
            let l = [("node", node.as_str()), ("role", role.as_str())];
            m.gauge(
                "nf_heartbeat_age_seconds",
                "how long ago each node's last heartbeat was written",
                &l,
                *age,
            );
            m.gauge(
                "nf_heartbeat_entries",
                "the entries each node reported in its last heartbeat",
                &l,
                *entries as f64,
            );
        }
    })
}
