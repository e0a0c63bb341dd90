//! `nf lb`: a stateful L4 load balancer from a configuration (the `LoadBalancer` element wired to
//! interfaces or to anything else), as a primary that replicates its flow mappings, a minion that
//! installs them, or standalone.

use nf_core::elements::lb::LoadBalancer;
use nf_core::{Config, Router};
use nf_drivers::driver::{Shutdown, StateDriver};
use nf_drivers::whitebox::{WhiteBox, lb_installer};
use nf_state::replicate::{FollowerStats, ReplicatorConfig, follow_with_backpressure};
use nf_state::schemas::{FlowMapping, Heartbeat, HeartbeatValue, NodeKey};
use nf_state::{Codec, Record, StateStore};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Options of `nf lb`.
pub struct Options<'a> {
    pub config: &'a Path,
    pub params: &'a [String],
    pub role: &'a str,
    pub store: Option<&'a str>,
    pub node: &'a str,
    pub element: &'a str,
    /// Origins a minion accepts (empty: any).
    pub accept_origin: &'a [String],
    /// A minion also replicates the flows it creates.
    pub replicate: bool,
    pub quiet: bool,
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
    tokio::task::JoinHandle<()>,
) {
    let mut driver = WhiteBox::<FlowMapping>::new(ReplicatorConfig {
        origin: node.to_string(),
        ..Default::default()
    });
    nf_core::state::Stateful::table_mut(lb).set_sink(driver.lb_sink());
    let c = driver.counters();
    let (s, sd) = (store.clone(), shutdown.clone());
    let task = rt.spawn(async move {
        match driver.run(s, sd).await {
            Ok(done) => eprintln!("whitebox: {done}"),
            Err(e) => eprintln!("whitebox: {e}"),
        }
    });
    (c, task)
}

/// Upserts this node's heartbeat every 500 ms until `stop` fires.
async fn heartbeats(
    store: Arc<dyn StateStore>,
    node: String,
    role: &'static str,
    progress: impl Fn() -> (u64, u64) + Send + 'static,
    mut stop: Shutdown,
) {
    let mut t = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = stop.wait() => return,
            _ = t.tick() => {}
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
pub fn lb(
    o: Options<'_>,
    reg: &nf_core::Registry,
    params: &std::collections::BTreeMap<String, String>,
) -> Result<(), String> {
    let role: &'static str = match o.role {
        "primary" => "primary",
        "minion" => "minion",
        "standalone" => "standalone",
        r => {
            return Err(format!(
                "--role must be primary, minion or standalone, not `{r}`"
            ));
        }
    };
    if role != "standalone" && o.store.is_none() {
        return Err(format!("--role {role} needs --store URL"));
    }
    let _ = o.params;
    let cfg = Config::from_file(o.config, params).map_err(|e| e.to_string())?;
    let mut router =
        Router::new(cfg.build(reg).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let store = match o.store {
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
    match (role, &store) {
        ("primary", Some(store)) => {
            let (c, task) = replicate(&rt, lb, store, o.node, &shutdown);
            tasks.push(task);
            let progress = move || {
                let s = c.snapshot();
                (s.emitted, s.parsed)
            };
            tasks.push(rt.spawn(heartbeats(
                store.clone(),
                o.node.into(),
                role,
                progress,
                shutdown.clone(),
            )));
        }
        ("minion", Some(store)) => {
            if o.replicate {
                // The flows this node creates once it serves (installed ones are not reported).
                tasks.push(replicate(&rt, lb, store, o.node, &shutdown).1);
            }
            let tx = lb
                .installer()
                .ok_or("the balancer's installer was already taken")?;
            let stats = Arc::new(FollowerStats::default());
            follower_stats = Some(stats.clone());
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            let (s, st) = (store.clone(), stats.clone());
            let origins = o.accept_origin.to_vec();
            tasks.push(rt.spawn(async move {
                // A store that goes away (or is not there yet) is waited for: the follower starts again
                // with a snapshot, which replaces the table, and follows from there.
                let mut backoff = Duration::from_millis(100);
                loop {
                    let tx = tx.clone();
                    // A full install queue (the balancer's thread behind) makes the follower wait,
                    // counted in install_waits: no mapping is dropped.
                    let r = follow_with_backpressure::<FlowMapping>(
                        s.clone(),
                        st.clone(),
                        stop_rx.clone(),
                        &origins,
                        lb_installer(tx),
                    )
                    .await;
                    match r {
                        Ok(()) => break,
                        Err(_) if *stop_rx.borrow() => break,
                        Err(e) => {
                            eprintln!("follower: {e}; following again in {backoff:?}");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(2));
                        }
                    }
                }
            }));
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
                o.node.into(),
                role,
                progress,
                shutdown.clone(),
            )));
        }
        _ => {}
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
    if let Some(st) = follower_stats {
        let g = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        eprintln!(
            "follower: {} snapshot records, {} applied, {} foreign (origin not accepted), {} rejected, \
             {} gaps, {} install waits (queue full), last seq {}",
            g(&st.snapshot_records),
            g(&st.applied),
            g(&st.foreign),
            g(&st.rejected),
            g(&st.gaps),
            g(&st.install_waits),
            g(&st.last_seq)
        );
    }
    if !o.quiet {
        super::print_handlers(&router.handlers());
    }
    res.map_err(|e| e.to_string())
}
