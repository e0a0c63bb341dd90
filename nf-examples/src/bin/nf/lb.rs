//! `nf lb`: a stateful L4 load balancer from a configuration (the `LoadBalancer` element wired to
//! interfaces or to anything else), as a primary that replicates its flow mappings, a minion that
//! installs them, or standalone.

use crate::common::{ControlArgs, Source, load_config, load_hash_key, print_handlers, registry};
use nf_core::Router;
use nf_core::elements::lb::LoadBalancer;
use nf_core::metrics::Metrics;
use nf_drivers::driver::{Shutdown, StateDriver};
use nf_drivers::whitebox::{WhiteBox, lb_installer};
use nf_state::replicate::{FollowerStats, ReplicatorConfig, follow_with_backpressure};
use nf_state::schemas::{BackendState, FlowMapping, Heartbeat, HeartbeatValue, NodeKey};
use nf_state::{Codec, Record, StateStore};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// `nf lb`: a stateful L4 load balancer from a configuration with a `LoadBalancer` element: a primary
/// replicates its flow mappings to a store (white-box driver), a minion installs them as they arrive
/// and serves traffic at once; both report heartbeats (`nf state stats` shows them).
#[derive(clap::Args)]
#[command(
    after_help = "The failover lab's configuration, nf-examples/configs/lab/lb.click, takes the \
interfaces as FRONT=IFACE BACK=IFACE but names the lab's MAC addresses (02:00:00:00:..) in its \
EtherRewrite elements: copy it and put your routers' and backends' addresses there."
)]
pub struct LbArgs {
    /// The configuration file (e.g. nf-examples/configs/lab/lb.click).
    config: PathBuf,
    /// `NAME=VALUE` settings for `$NAME` in the configuration.
    #[arg(value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// What this node does with its state.
    #[arg(long, value_enum, default_value = "standalone")]
    role: Role,
    /// The state store (primary and minion; see `nf state --help`).
    #[arg(long)]
    store: Option<String>,
    /// This node's name (heartbeats, records' origin).
    #[arg(long, default_value = "lb")]
    node: String,
    /// The LoadBalancer element's name in the configuration.
    #[arg(long, default_value = "lb")]
    element: String,
    /// Minion: install only records whose origin is this node (repeat for several; default: any).
    /// Records from anyone else who can write to the store are skipped and counted.
    #[arg(long = "accept-origin", value_name = "NODE")]
    accept_origin: Vec<String>,
    /// Minion: also replicate the flows it creates itself (after a takeover), so that a recovered
    /// primary, restarted as a minion, can take them back.
    #[arg(long)]
    replicate: bool,
    /// A file holding the agreed hash key (32 hex digits): the key of Maglev's flow hash, which a
    /// primary and its minions (or the members of a pool) must share so that each picks the same
    /// backend for a flow. Read from a file so that it stays out of process lists and logs. Without
    /// it each process draws its own, and only the replicated state keeps flows on their backend.
    #[arg(long, value_name = "PATH")]
    hash_key_file: Option<PathBuf>,
    /// Print nothing at the end.
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    control: ControlArgs,
    #[command(flatten)]
    checks: crate::health::CheckArgs,
}

/// What a node of `nf lb` does with its state.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Role {
    /// Replicates the flow mappings it creates to the store.
    Primary,
    /// Installs the mappings of the store as they arrive, and serves traffic at once.
    Minion,
    /// Keeps its state to itself.
    Standalone,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Minion => "minion",
            Role::Standalone => "standalone",
        }
    }
}

/// Attaches the white-box driver to the balancer's table and runs it: `flow-mapping` replicated to `store`
/// with origin `node`, until `shutdown`. Returns the driver's counters and its task.
fn replicate(
    rt: &tokio::runtime::Runtime,
    lb: &mut LoadBalancer,
    store: &Arc<dyn StateStore>,
    node: &str,
    shutdown: &Shutdown,
) -> (
    Arc<nf_drivers::driver::DriverCounters>,
    Arc<nf_state::replicate::ReplicatorStats>,
    tokio::task::JoinHandle<()>,
) {
    let mut driver = WhiteBox::<FlowMapping>::new(ReplicatorConfig {
        origin: node.to_string(),
        ..Default::default()
    });
    nf_core::state::Stateful::table_mut(lb).set_sink(driver.lb_sink());
    let c = driver.counters();
    let rs = driver.replicator_stats();
    let (s, sd) = (store.clone(), shutdown.clone());
    let task = rt.spawn(async move {
        match driver.run(s, sd).await {
            Ok(done) => eprintln!("whitebox: {done}"),
            Err(e) => eprintln!("whitebox: {e}"),
        }
    });
    (c, rs, task)
}

/// Follows schema `S` into the balancer until `stop` turns true: a store that goes away (or is not
/// there yet) is waited for, with a growing pause, and followed again from a new snapshot (which
/// replaces what it installs). `installer` makes each attempt's install callback.
async fn follow_retrying<S, F, I>(
    what: &'static str,
    store: Arc<dyn StateStore>,
    stats: Arc<FollowerStats>,
    stop: tokio::sync::watch::Receiver<bool>,
    origins: Vec<String>,
    installer: F,
) where
    S: nf_state::Schema,
    F: Fn() -> I + Send,
    I: FnMut(nf_state::replicate::Install<S>) -> Result<(), nf_state::replicate::Install<S>> + Send,
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

/// Every node's last heartbeat as this node last read it: (node, role, age in seconds, entries).
type Beats = Arc<std::sync::Mutex<Vec<(String, String, f64, u64)>>>;

/// Replicates the balancer's backend states (`backend-state`) to `store` with origin `node`, from a
/// thread of its own, until `shutdown`: every change the balancer reports (handlers, health checks,
/// reloads, drain deadlines). A store that fails is retried (the change is not acknowledged before).
fn replicate_backends(
    rt: &tokio::runtime::Runtime,
    lb: &mut LoadBalancer,
    store: &Arc<dyn StateStore>,
    node: &str,
    shutdown: &Shutdown,
) -> Option<std::thread::JoinHandle<()>> {
    let rx = lb.status_watch()?;
    let (store, node, sd, handle) = (
        store.clone(),
        node.to_string(),
        shutdown.clone(),
        rt.handle().clone(),
    );
    std::thread::Builder::new()
        .name("nf-backend-state".into())
        .spawn(move || {
            while !sd.is_set() {
                let Ok(st) = rx.recv_timeout(Duration::from_millis(200)) else {
                    continue;
                };
                let (k, v) = nf_drivers::adapter::backend_state_record(&st);
                let Ok(r) = Record::upsert::<BackendState>(Codec::Bincode, &node, &k, &v) else {
                    continue;
                };
                let mut backoff = Duration::from_millis(50);
                while !sd.is_set() {
                    match handle.block_on(store.apply(vec![r.clone()])) {
                        Ok(_) => break,
                        Err(e) => {
                            eprintln!("backend-state: {e}; again in {backoff:?}");
                            std::thread::sleep(backoff);
                            backoff = (backoff * 2).min(Duration::from_secs(2));
                        }
                    }
                }
            }
        })
        .ok()
}

/// Upserts this node's heartbeat every 500 ms until `stop` fires, and reads every node's each second
/// (for the metrics endpoint).
async fn heartbeats(
    store: Arc<dyn StateStore>,
    node: String,
    role: &'static str,
    progress: impl Fn() -> (u64, u64) + Send + 'static,
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

/// Runs `nf lb` until its sources end or SIGINT/SIGTERM; prints every element's handlers.
pub fn run(o: LbArgs) -> Result<(), String> {
    load_hash_key(o.hash_key_file.as_deref())?;
    let role = o.role.name();
    if o.role != Role::Standalone && o.store.is_none() {
        return Err(format!("--role {role} needs --store URL"));
    }
    let reg = registry();
    let cfg = load_config(&o.config, &o.params)?;
    let mut router =
        Router::new(cfg.build(&reg).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let store = match &o.store {
        Some(url) => Some(
            rt.block_on(nf_state::open(url))
                .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    let element = o.element.to_string();
    let lb = router
        .element_by_name_mut::<LoadBalancer>(&element)
        .ok_or_else(|| {
            format!("the configuration has no LoadBalancer called `{element}` (--element)")
        })?;
    let (trigger, shutdown) = Shutdown::new();
    let mut follower_stats: Option<Arc<FollowerStats>> = None;
    let mut tasks = Vec::new();
    let beats: Beats = Arc::default();
    let mut threads = Vec::new();
    let mut sources: Vec<nf_core::metrics::Source> = Vec::new();
    if store.is_some() {
        sources.push(beats_source(beats.clone()));
    }
    match (role, &store) {
        ("primary", Some(store)) => {
            let (c, rs, task) = replicate(&rt, lb, store, &o.node, &shutdown);
            tasks.push(task);
            sources.push(replication_source(c.clone(), rs));
            threads.extend(replicate_backends(&rt, lb, store, &o.node, &shutdown));
            let progress = move || {
                let s = c.snapshot();
                (s.emitted, s.parsed)
            };
            tasks.push(rt.spawn(heartbeats(
                store.clone(),
                o.node.clone(),
                role,
                progress,
                beats.clone(),
                shutdown.clone(),
            )));
        }
        ("minion", Some(store)) => {
            if o.replicate {
                // The flows this node creates once it serves (installed ones are not reported).
                let (c, rs, task) = replicate(&rt, lb, store, &o.node, &shutdown);
                tasks.push(task);
                sources.push(replication_source(c, rs));
                threads.extend(replicate_backends(&rt, lb, store, &o.node, &shutdown));
            }
            let tx = lb
                .installer()
                .ok_or("the balancer's installer was already taken")?;
            let stats = Arc::new(FollowerStats::default());
            follower_stats = Some(stats.clone());
            sources.push(follower_source(stats.clone()));
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            // A full install queue (the balancer's thread behind) makes a follower wait, counted in
            // install_waits: nothing is dropped.
            let tx2 = tx.clone();
            tasks.push(rt.spawn(follow_retrying(
                "follower",
                store.clone(),
                stats.clone(),
                stop_rx.clone(),
                o.accept_origin.to_vec(),
                move || lb_installer(tx.clone()),
            )));
            // The primary's backend states (drains, downs, weights, health): a follower of its own.
            tasks.push(rt.spawn(follow_retrying(
                "backend-state follower",
                store.clone(),
                Arc::new(FollowerStats::default()),
                stop_rx.clone(),
                o.accept_origin.to_vec(),
                move || nf_drivers::adapter::backend_state_installer(tx2.clone()),
            )));
            let mut sd = shutdown.clone();
            tasks.push(rt.spawn(async move {
                sd.wait().await;
                let _ = stop_tx.send(true);
            }));
            let st = stats.clone();
            let progress = move || {
                (
                    st.last_seq.load(Ordering::Relaxed),
                    st.applied.load(Ordering::Relaxed),
                )
            };
            tasks.push(rt.spawn(heartbeats(
                store.clone(),
                o.node.clone(),
                role,
                progress,
                beats.clone(),
                shutdown.clone(),
            )));
        }
        _ => {}
    }
    let _ops = o.control.start(
        &mut router,
        &Source {
            cfg: &cfg,
            path: &o.config,
            params: &o.params,
        },
        sources,
    )?;
    if o.checks.check.is_some()
        && let Some(c) = &_ops.control
    {
        tasks.push(rt.spawn(crate::health::run(
            c.handle(),
            element.clone(),
            o.checks.clone(),
            shutdown.clone(),
        )));
    }
    // SIGINT/SIGTERM stop the router; the router's end stops the rest.
    let stop = router.stop_handle();
    let (sig_trigger, mut sig) = rt
        .block_on(async { Shutdown::on_signals() })
        .map_err(|e| e.to_string())?;
    let mut sig_after = sig.clone();
    rt.spawn(async move {
        sig.wait().await;
        stop.stop();
    });
    eprintln!("nf lb: {role} `{}` running", o.node);
    let res = router.run();
    if role == "minion" && !sig_after.is_set() {
        // A minion follows until told to stop, whether or not its graph has traffic of its own.
        eprintln!("nf lb: the graph ended; following until SIGINT/SIGTERM");
        rt.block_on(sig_after.wait());
    }
    trigger.trigger();
    drop(sig_trigger);
    for t in tasks {
        let _ = rt.block_on(t);
    }
    for t in threads {
        let _ = t.join();
    }
    if let Some(st) = follower_stats {
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
    if !o.quiet {
        print_handlers(&router.handlers());
    }
    res.map_err(|e| e.to_string())
}

/// The white-box driver's and its replicator's counters, for the metrics endpoint.
fn replication_source(
    c: Arc<nf_drivers::driver::DriverCounters>,
    rs: Arc<nf_state::replicate::ReplicatorStats>,
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
            "installs that waited for room in the balancer's queue",
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
