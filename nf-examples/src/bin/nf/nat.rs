//! `nf nat` and `nf fw`: the NAT minion (an `IPRewriter` whose mappings replicate as `nat-binding`) and the
//! stateful-firewall minion (a `ConnTrack` whose connections replicate as `conntrack`), each as a primary,
//! a minion or standalone, as `nf lb` is for the balancer.
//!
//! Two commands rather than one `nf minion --kind`: each names its element class, its schema and its
//! default element, and its help can say what its configuration needs, while the roles, store URLs,
//! heartbeats, `--accept-origin` and metrics are the same code for all three (`node.rs`).

use crate::node::{Node, NodeArgs, Role};
use nf_core::elements::nat::IPRewriter;
use nf_core::elements::tcpudp::ConnTrack;
use nf_core::state::Stateful;
use nf_drivers::adapter::{conntrack_installer, nat_change, nat_installer};
use nf_state::schemas::{Conntrack, NatBinding};

/// `nf nat`: a NAPT box from a configuration with an `IPRewriter` (Click's input specs, e.g.
/// `rw :: IPRewriter(pattern 192.0.2.1 1024-65535 - - 0 1, drop)`): a primary replicates its flows'
/// bindings (`nat-binding`: the five-tuple -> the address and port it leaves with), a minion installs
/// the bindings of the store as they arrive (from a primary, or from the syslog or observation driver
/// beside a NAT box of any make) and serves them with the very ports the box chose.
#[derive(clap::Args)]
#[command(
    after_help = "The failover lab's NAT configuration, nf-examples/configs/lab/nat.click, takes the \
interfaces as INSIDE=IFACE OUTSIDE=IFACE and the external address as EXTERNAL=IP."
)]
pub struct NatArgs {
    #[command(flatten)]
    node: NodeArgs,
}

/// `nf fw`: a stateful firewall from a configuration with a `ConnTrack` (e.g. `ct :: ConnTrack(LOOSE
/// false)` with its output 1, the untracked packets, to `Discard`): a primary replicates its
/// connections (`conntrack`), a minion installs the connections of the store as they arrive (from a
/// primary, or from `conntrack -E` lines of a Linux firewall through the syslog driver) and passes
/// them, while mid-stream packets of any other connection are dropped.
#[derive(clap::Args)]
#[command(
    after_help = "The failover lab's firewall configuration, nf-examples/configs/lab/fw.click, takes the \
interfaces as INSIDE=IFACE OUTSIDE=IFACE."
)]
pub struct FwArgs {
    #[command(flatten)]
    node: NodeArgs,
}

/// Runs `nf nat` until its sources end or SIGINT/SIGTERM.
pub fn run_nat(o: NatArgs) -> Result<(), String> {
    let (mut node, mut router) = Node::open(o.node, "nat", "rw")?;
    let element = node.element.clone();
    let rw = router
        .element_by_name_mut::<IPRewriter>(&element)
        .ok_or_else(|| {
            format!("the configuration has no IPRewriter called `{element}` (--element)")
        })?;
    let mut driver = None;
    if node.replicates() {
        driver = node.replicate::<NatBinding>(|d| rw.table_mut().set_sink(d.sink(nat_change)));
    }
    if node.role == Role::Minion {
        let tx = rw
            .installer()
            .ok_or("the rewriter's installer was already taken")?;
        node.follow::<NatBinding, _, _>("follower", move || nat_installer(tx.clone()));
    }
    node.heartbeats(driver);
    node.serve(router, |_, _| {})
}

/// Runs `nf fw` until its sources end or SIGINT/SIGTERM.
pub fn run_fw(o: FwArgs) -> Result<(), String> {
    let (mut node, mut router) = Node::open(o.node, "fw", "ct")?;
    let element = node.element.clone();
    let ct = router
        .element_by_name_mut::<ConnTrack>(&element)
        .ok_or_else(|| {
            format!("the configuration has no ConnTrack called `{element}` (--element)")
        })?;
    let mut driver = None;
    if node.replicates() {
        driver = node.replicate::<Conntrack>(|d| ct.table_mut().set_sink(d.conntrack_sink()));
    }
    if node.role == Role::Minion {
        let tx = ct
            .installer()
            .ok_or("the tracker's installer was already taken")?;
        node.follow::<Conntrack, _, _>("follower", move || conntrack_installer(tx.clone()));
    }
    node.heartbeats(driver);
    node.serve(router, |_, _| {})
}
