//! `nf lb`: a stateful L4 load balancer from a configuration (the `LoadBalancer` element wired to
//! interfaces or to anything else), as a primary that replicates its flow mappings, a minion that
//! installs them, or standalone.

use crate::common::load_hash_key;
use crate::node::{Node, NodeArgs, Role};
use nf_core::elements::lb::LoadBalancer;
use nf_core::state::Stateful;
use nf_drivers::driver::Shutdown;
use nf_drivers::whitebox::lb_installer;
use nf_state::schemas::{BackendState, FlowMapping};
use nf_state::{Codec, Record, StateStore};
use std::path::PathBuf;
use std::sync::Arc;
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
    #[command(flatten)]
    node: NodeArgs,
    /// A file holding the agreed hash key (32 hex digits): the key of Maglev's flow hash, which a
    /// primary and its minions (or the members of a pool) must share so that each picks the same
    /// backend for a flow. Read from a file so that it stays out of process lists and logs. Without
    /// it each process draws its own, and only the replicated state keeps flows on their backend.
    #[arg(long, value_name = "PATH")]
    hash_key_file: Option<PathBuf>,
    #[command(flatten)]
    checks: crate::health::CheckArgs,
}

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

/// Runs `nf lb` until its sources end or SIGINT/SIGTERM; prints every element's handlers.
pub fn run(o: LbArgs) -> Result<(), String> {
    load_hash_key(o.hash_key_file.as_deref())?;
    let (mut node, mut router) = Node::open(o.node, "lb", "lb")?;
    let element = node.element.clone();
    let lb = router
        .element_by_name_mut::<LoadBalancer>(&element)
        .ok_or_else(|| {
            format!("the configuration has no LoadBalancer called `{element}` (--element)")
        })?;
    let mut driver = None;
    if node.replicates() {
        driver = node.replicate::<FlowMapping>(|d| lb.table_mut().set_sink(d.lb_sink()));
        if let Some(store) = node.store.clone() {
            let t = replicate_backends(&node.rt, lb, &store, &node.name, &node.shutdown);
            node.threads.extend(t);
        }
    }
    if node.role == Role::Minion {
        let tx = lb
            .installer()
            .ok_or("the balancer's installer was already taken")?;
        // A full install queue (the balancer's thread behind) makes a follower wait, counted in
        // install_waits: nothing is dropped.
        let tx2 = tx.clone();
        node.follow::<FlowMapping, _, _>("follower", move || lb_installer(tx.clone()));
        // The primary's backend states (drains, downs, weights, health): a follower of its own.
        node.follow::<BackendState, _, _>("backend-state follower", move || {
            nf_drivers::adapter::backend_state_installer(tx2.clone())
        });
    }
    node.heartbeats(driver);
    let checks = o.checks;
    node.serve(router, |node, ops| {
        if checks.check.is_some()
            && let Some(c) = &ops.control
        {
            let task = crate::health::run(
                c.handle(),
                node.element.clone(),
                checks.clone(),
                node.shutdown.clone(),
            );
            node.tasks.push(node.rt.spawn(task));
        }
    })
}
