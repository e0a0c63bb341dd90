//! The runtime: checks a graph, then runs it on one thread ([`Router`]) or as N flow-affine shards on N
//! threads ([`ShardedRouter`]).
//!
//! Push processing is batch by batch: the router hands a batch to an element, then hands each of the
//! element's non-empty output batches to the connected element, depth first. Elements never call each other,
//! so there is one virtual call per element per batch and no per-packet dispatch. Batches are recycled, so
//! steady-state processing allocates nothing. Pull ports are served on demand for the tasks that pull.

use crate::batch::{BATCH_SIZE, Batch, Outputs};
use crate::element::{
    Cohort, Element, HandlerSpec, InitContext, Processing, Puller, TaskContext, TaskStatus,
};
use crate::error::{ConfigError, ConfigErrors, Error, SourceFile, Span};
use crate::flow::{flow_hash, shard_of};
use crate::graph::{ElementId, Graph};
use crate::indirection::Steering;
use crate::packet::{Link, Timestamp};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};

const NONE: u32 = u32::MAX;

struct Vacant;
impl Element for Vacant {
    fn class_name(&self) -> &'static str {
        "Vacant"
    }
}

struct RNode {
    name: String,
    elem: Box<dyn Element>,
    outs: Outputs,
    /// Push outputs: downstream (element, input port).
    out_conn: Vec<(u32, u32)>,
    /// Pull inputs: upstream (element, output port).
    in_conn: Vec<(u32, u32)>,
    /// Output declared pull (`l`): the element implements `pull`. Agnostic outputs resolved to pull pass through.
    out_native_pull: Vec<bool>,
    is_source: bool,
    stops: bool,
    done: bool,
}

/// A handler's value, read after (or during) a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandlerValue {
    /// Element name.
    pub element: String,
    /// Element class.
    pub class: String,
    /// Handler name.
    pub handler: String,
    /// The value.
    pub value: String,
}

/// Buckets of [`RunStats::batch_sizes`]: batches of at most 1, 2, 4, ... 64 packets, and more.
pub const BATCH_BUCKETS: usize = 8;

/// What a router's sources put into its graph (and, in a sharded run, what other shards handed it):
/// packets and batches, counted per batch, not per packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Scheduling rounds run.
    pub rounds: u64,
    /// Packets that entered the graph.
    pub packets: u64,
    /// Batches they came in.
    pub batches: u64,
    /// Batches by size: bucket `i < 7` counts batches of more than `2^(i-1)` and at most `2^i` packets,
    /// the last one every batch above 64.
    pub batch_sizes: [u64; BATCH_BUCKETS],
}

impl RunStats {
    /// Counts one batch of `n > 0` packets.
    #[inline]
    fn count(&mut self, n: usize) {
        self.packets += n as u64;
        self.batches += 1;
        let b = (usize::BITS - (n - 1).leading_zeros()) as usize;
        self.batch_sizes[b.min(BATCH_BUCKETS - 1)] += 1;
    }
}

impl std::ops::AddAssign for RunStats {
    fn add_assign(&mut self, o: RunStats) {
        self.rounds += o.rounds;
        self.packets += o.packets;
        self.batches += o.batches;
        for (a, b) in self.batch_sizes.iter_mut().zip(o.batch_sizes) {
            *a += b;
        }
    }
}

/// What a hot reconfiguration did ([`Router::hot_swap`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwapReport {
    /// Elements in the new graph.
    pub elements: usize,
    /// Of those, the ones that took an old element's state (same name and class).
    pub kept: usize,
    /// Elements whose name stayed but whose class changed: they started afresh, the old one's state
    /// dropped (the control socket answers 220, "OK with warnings", naming them).
    pub replaced: Vec<String>,
    /// How long the router's thread was kept from its rounds, in nanoseconds.
    pub pause_ns: u64,
}

/// A numeric read handler's value, for a metrics endpoint ([`Router::handler_samples`]).
#[derive(Clone, Debug, PartialEq)]
pub struct HandlerSample {
    /// Element name.
    pub element: String,
    /// Element class.
    pub class: &'static str,
    /// Handler name.
    pub handler: &'static str,
    /// For a [`HandlerKind::GaugeMap`](crate::element::HandlerKind::GaugeMap): the key of this value.
    pub key: Option<String>,
    /// The handler's one line of documentation.
    pub doc: &'static str,
    /// Counter or gauge.
    pub kind: crate::element::HandlerKind,
    /// The value.
    pub value: f64,
}

/// Stops a running router from another thread (a signal handler, a test).
#[derive(Clone, Debug, Default)]
pub struct StopHandle(Arc<AtomicBool>);

impl StopHandle {
    /// Asks the router to stop after the current round.
    pub fn stop(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
    /// True once stop was asked.
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A checked graph, ready to run on one thread.
///
/// Aligned to two cache lines: the shards of a [`ShardedRouter`] sit side by side in a vector, and each
/// writes its own router's fields every round (one line written by two cores, shard 0's tail and shard 1's
/// head, cost a 2-shard run ~10 %).
#[repr(align(128))]
pub struct Router {
    nodes: Vec<RNode>,
    tasks: Vec<usize>,
    /// Elements with timers: (next due, interval in ns, element).
    timers: Vec<(Timestamp, u64, usize)>,
    spare: Vec<Batch>,
    stop: StopHandle,
    shard: (usize, usize),
    now: Timestamp,
    dispatch: Option<Dispatch>,
    /// The run's steering (sharded runs): bucket moves to export and import between rounds.
    steer: Option<Arc<crate::indirection::Steering>>,
    rounds: u64,
    /// Packets and batches that entered the graph.
    run_stats: RunStats,
    /// Hot reconfigurations made, and the last one's pause in nanoseconds.
    swaps: (u64, u64),
    /// What the runs of this router did to its thread's buffer pool.
    pool: crate::pool::PoolStats,
    /// A control socket's requests, answered between rounds.
    control: Option<Box<crate::control::ControlPort>>,
    /// The configuration's text and its flattened form (the control socket's `config`, `flatconfig`).
    config_text: (Arc<str>, Arc<str>),
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field(
                "elements",
                &self
                    .nodes
                    .iter()
                    .map(|n| n.name.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("shard", &self.shard)
            .finish()
    }
}

struct Checker<'a> {
    src: Option<&'a SourceFile>,
    errors: Vec<ConfigError>,
}

impl Checker<'_> {
    fn err(&mut self, span: Option<Span>, msg: String) {
        self.errors.push(match (self.src, span) {
            (Some(s), Some(sp)) => ConfigError::at(Some(s), sp, msg),
            _ => ConfigError::new(msg),
        });
    }
}

fn ordinal(n: usize) -> String {
    n.to_string()
}

impl Router {
    /// Checks `graph` (port counts, connections, push/pull agreement, cycles without a queue) and
    /// initializes its elements, for a single-threaded run.
    pub fn new(graph: Graph) -> Result<Router, Error> {
        Router::new_shard(graph, 0, 1)
    }

    /// As [`Router::new`], for shard `shard` of `shards` (on its own: its elements share nothing with
    /// other shards; see [`Router::new_shard_in`]).
    pub fn new_shard(graph: Graph, shard: usize, shards: usize) -> Result<Router, Error> {
        Router::new_shard_in(graph, shard, shards, None)
    }

    /// As [`Router::new_shard`], with the [`Cohort`] the shards of one run share (what
    /// [`ShardedRouter::new`] passes): the copies of an element may split work among themselves through it.
    pub fn new_shard_in(
        graph: Graph,
        shard: usize,
        shards: usize,
        cohort: Option<&Cohort>,
    ) -> Result<Router, Error> {
        let Graph {
            nodes: gnodes,
            edges,
            source,
        } = graph;
        let mut ck = Checker {
            src: source.as_deref(),
            errors: Vec::new(),
        };
        let n = gnodes.len();
        if gnodes.iter().any(|g| g.element.is_none()) {
            return Err(Error::Runtime(
                "graph holds elements that failed to configure".into(),
            ));
        }
        let elems: Vec<Box<dyn Element>> = gnodes
            .iter()
            .map(|_| Box::new(Vacant) as Box<dyn Element>)
            .collect();
        let mut elems = elems;
        let mut names = Vec::with_capacity(n);
        let mut spans = Vec::with_capacity(n);
        for (i, g) in gnodes.into_iter().enumerate() {
            names.push(g.name);
            spans.push(g.span);
            if let Some(e) = g.element {
                elems[i] = e;
            }
        }
        let label = |i: usize| format!("`{}` ({})", names[i], elems[i].class_name());
        let specs: Vec<_> = elems.iter().map(|e| e.ports()).collect();

        // Port counts.
        let mut n_in = vec![0usize; n];
        let mut n_out = vec![0usize; n];
        for e in &edges {
            if e.from.0 >= n || e.to.0 >= n {
                ck.err(
                    e.span,
                    "connection names an element that does not exist".into(),
                );
                continue;
            }
            if e.from.1 >= crate::element::MAX_PORTS || e.to.1 >= crate::element::MAX_PORTS {
                ck.err(
                    e.span,
                    format!(
                        "a port number is out of range (at most {} ports on a side)",
                        crate::element::MAX_PORTS
                    ),
                );
                continue;
            }
            n_out[e.from.0] = n_out[e.from.0].max(e.from.1 + 1);
            n_in[e.to.0] = n_in[e.to.0].max(e.to.1 + 1);
        }
        if !ck.errors.is_empty() {
            return Err(ConfigErrors(ck.errors).into());
        }
        for i in 0..n {
            let s = specs[i];
            for (side, have, count) in [
                ("input", &mut n_in[i], s.inputs),
                ("output", &mut n_out[i], s.outputs),
            ] {
                if *have > count.max {
                    let e = edges.iter().find(|e| {
                        if side == "input" {
                            e.to.0 == i && e.to.1 >= count.max
                        } else {
                            e.from.0 == i && e.from.1 >= count.max
                        }
                    });
                    let port = if side == "input" {
                        e.map(|e| e.to.1)
                    } else {
                        e.map(|e| e.from.1)
                    }
                    .unwrap_or(0);
                    let msg = if count.max == 0 {
                        format!(
                            "{} has no {side} ports, but {side} {port} is connected",
                            label(i)
                        )
                    } else {
                        format!(
                            "{} has {} {side} port(s) (numbered from 0), but {side} {port} is connected",
                            label(i),
                            count.max
                        )
                    };
                    ck.err(e.and_then(|e| e.span).or(spans[i]), msg);
                }
                if *have < count.min {
                    *have = count.min;
                }
            }
            for p in 0..n_in[i] {
                if !edges.iter().any(|e| e.to == (i, p)) {
                    ck.err(
                        spans[i],
                        format!("input {} of {} is not connected", ordinal(p), label(i)),
                    );
                }
            }
            for p in 0..n_out[i] {
                if !edges.iter().any(|e| e.from == (i, p)) {
                    ck.err(
                        spans[i],
                        format!("output {} of {} is not connected", ordinal(p), label(i)),
                    );
                }
            }
        }

        // Push/pull resolution: each element's agnostic ports share one variable.
        #[derive(Clone, Copy, PartialEq, Eq, Debug)]
        enum M {
            Push,
            Pull,
            Unknown,
        }
        let mut var = vec![M::Unknown; n];
        let port_mode = |var: &[M], i: usize, input: bool, p: usize| -> M {
            let pr = if input {
                specs[i].input(p)
            } else {
                specs[i].output(p)
            };
            match pr {
                Processing::Push => M::Push,
                Processing::Pull => M::Pull,
                Processing::Agnostic => var[i],
            }
        };
        let mut changed = true;
        while changed {
            changed = false;
            for e in &edges {
                let a = port_mode(&var, e.from.0, false, e.from.1);
                let b = port_mode(&var, e.to.0, true, e.to.1);
                match (a, b) {
                    (M::Unknown, x) if x != M::Unknown => {
                        var[e.from.0] = x;
                        changed = true;
                    }
                    (x, M::Unknown) if x != M::Unknown => {
                        var[e.to.0] = x;
                        changed = true;
                    }
                    _ => {}
                }
            }
        }
        for v in var.iter_mut() {
            if *v == M::Unknown {
                *v = M::Push;
            }
        }
        for e in &edges {
            let a = port_mode(&var, e.from.0, false, e.from.1);
            let b = port_mode(&var, e.to.0, true, e.to.1);
            if a != b {
                let w = |m: M| if m == M::Push { "push" } else { "pull" };
                ck.err(
                    e.span.or(spans[e.from.0]),
                    format!(
                        "{} output {} of {} is connected to {} input {} of {}",
                        w(a),
                        e.from.1,
                        label(e.from.0),
                        w(b),
                        e.to.1,
                        label(e.to.0)
                    ),
                );
                if let Some(x) = ck.errors.last_mut() {
                    x.help = Some(
                        "put a Queue between a push output and a pull input, or an Unqueue between a pull output and a push input"
                            .into(),
                    );
                }
            }
        }
        // Multiplicity: a push output and a pull input each have exactly one connection.
        for (k, e) in edges.iter().enumerate() {
            let dup_out = edges[..k].iter().any(|f| f.from == e.from);
            if dup_out && port_mode(&var, e.from.0, false, e.from.1) == M::Push {
                ck.err(
                    e.span,
                    format!(
                        "push output {} of {} is connected more than once",
                        e.from.1,
                        label(e.from.0)
                    ),
                );
                if let Some(x) = ck.errors.last_mut() {
                    x.help = Some("use a Tee to send copies to several elements".into());
                }
            }
            let dup_in = edges[..k].iter().any(|f| f.to == e.to);
            if dup_in && port_mode(&var, e.to.0, true, e.to.1) == M::Pull {
                ck.err(
                    e.span,
                    format!(
                        "pull input {} of {} is connected more than once",
                        e.to.1,
                        label(e.to.0)
                    ),
                );
            }
            let dup_pull_out = edges[..k].iter().any(|f| f.from == e.from);
            if dup_pull_out && port_mode(&var, e.from.0, false, e.from.1) == M::Pull {
                ck.err(
                    e.span,
                    format!(
                        "pull output {} of {} is connected more than once",
                        e.from.1,
                        label(e.from.0)
                    ),
                );
            }
        }
        // Cycles: a push cycle or a pull cycle recurses forever; a Queue (push in, pull out) breaks both.
        for mode in [M::Push, M::Pull] {
            let adj: Vec<Vec<(usize, Option<Span>)>> = (0..n)
                .map(|i| {
                    edges
                        .iter()
                        .filter(|e| e.from.0 == i && port_mode(&var, i, false, e.from.1) == mode)
                        .map(|e| (e.to.0, e.span))
                        .collect()
                })
                .collect();
            if let Some((cycle, span)) = find_cycle(&adj) {
                let path: Vec<String> = cycle.iter().map(|&i| names[i].clone()).collect();
                let w = if mode == M::Push { "push" } else { "pull" };
                ck.err(
                    span,
                    format!("{w} cycle without a queue: {}", path.join(" -> ")),
                );
                if let Some(x) = ck.errors.last_mut() {
                    x.help = Some("a cycle needs a Queue (and an Unqueue) to break it".into());
                }
            }
        }
        if !ck.errors.is_empty() {
            return Err(ConfigErrors(ck.errors).into());
        }

        // Build the runtime nodes.
        let mut nodes: Vec<RNode> = Vec::with_capacity(n);
        for (i, elem) in elems.into_iter().enumerate() {
            let mut out_conn = vec![(NONE, NONE); n_out[i]];
            let mut in_conn = vec![(NONE, NONE); n_in[i]];
            for e in &edges {
                if e.from.0 == i && port_mode(&var, i, false, e.from.1) == M::Push {
                    out_conn[e.from.1] = (e.to.0 as u32, e.to.1 as u32);
                }
                if e.to.0 == i && port_mode(&var, i, true, e.to.1) == M::Pull {
                    in_conn[e.to.1] = (e.from.0 as u32, e.from.1 as u32);
                }
            }
            let out_native_pull = (0..n_out[i])
                .map(|p| specs[i].output(p) == Processing::Pull)
                .collect();
            let is_source = n_in[i] == 0 && elem.is_task();
            let stops = elem.stops_router();
            nodes.push(RNode {
                name: names[i].clone(),
                elem,
                outs: Outputs::new(n_out[i]),
                out_conn,
                in_conn,
                out_native_pull,
                is_source,
                stops,
                done: false,
            });
        }
        let mut errors = Vec::new();
        for (i, node) in nodes.iter_mut().enumerate() {
            let mask = |count: usize, input: bool| -> u64 {
                (0..count.min(64))
                    .filter(|&p| port_mode(&var, i, input, p) == M::Pull)
                    .fold(0, |m, p| m | 1 << p)
            };
            let ctx = InitContext {
                name: &node.name,
                ninputs: n_in[i],
                noutputs: n_out[i],
                shard,
                shards,
                pull_inputs: mask(n_in[i], true),
                pull_outputs: mask(n_out[i], false),
                cohort,
            };
            if let Err(m) = node.elem.initialize(&ctx) {
                errors.push(Error::Initialize {
                    element: node.name.clone(),
                    class: node.elem.class_name().to_string(),
                    message: m,
                });
            }
        }
        if let Some(e) = errors.into_iter().next() {
            return Err(e);
        }
        let tasks = (0..n).filter(|&i| nodes[i].elem.is_task()).collect();
        let start = Timestamp::now();
        let timers = (0..n)
            .filter_map(|i| {
                let iv = nodes[i].elem.timer_interval()?;
                let ns = (iv.as_nanos() as u64).max(1_000);
                Some((start.add_nanos(ns), ns, i))
            })
            .collect();
        Ok(Router {
            nodes,
            tasks,
            timers,
            spare: (0..16).map(|_| Batch::with_capacity(BATCH_SIZE)).collect(),
            stop: StopHandle::default(),
            pool: Default::default(),
            control: None,
            config_text: (Arc::from(""), Arc::from("")),
            shard: (shard, shards),
            now: Timestamp::now(),
            dispatch: None,
            steer: cohort
                .filter(|_| shards > 1)
                .and_then(|c| c.steering().cloned()),
            rounds: 0,
            run_stats: RunStats::default(),
            swaps: (0, 0),
        })
    }

    /// A handle that stops [`run`](Self::run) from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// This router's shard index and the number of shards.
    pub fn shard(&self) -> (usize, usize) {
        self.shard
    }

    /// In a sharded run, the run's steering (its indirection table and bucket moves).
    pub fn steering(&self) -> Option<&Arc<Steering>> {
        self.steer.as_ref()
    }

    /// What this router's runs did to its thread's buffer pool (buffers allocated, reused, recycled,
    /// freed).
    pub fn pool_stats(&self) -> crate::pool::PoolStats {
        self.pool
    }

    /// Packets and batches that entered this router's graph, and its rounds.
    pub fn run_stats(&self) -> RunStats {
        RunStats {
            rounds: self.rounds,
            ..self.run_stats
        }
    }

    /// Hot reconfigurations made ([`hot_swap`](Self::hot_swap)), and the last one's pause in
    /// nanoseconds.
    pub fn swaps(&self) -> (u64, u64) {
        self.swaps
    }

    /// Replaces this router's graph by `new`'s, between two rounds (Click's hot reconfiguration): every
    /// element of `new` whose name and class match an element of the running graph first takes that
    /// element's state ([`Element::take_state`]: flow tables, counters, queued packets, open sockets);
    /// the rest start afresh, and the old graph's remaining elements are cleaned up and dropped on a
    /// thread of their own.
    /// `new` is built and initialized beforehand, beside the running graph (a configuration that does
    /// not build never reaches here). What stays: the stop handle, the control socket, the shard, the
    /// counters of rounds and packets. A sharded router's graph is not swapped (its shards hand
    /// batches to each other by element index): the swap is refused with an error.
    pub fn hot_swap(&mut self, mut new: Router) -> Result<SwapReport, Error> {
        if self.dispatch.is_some() || new.dispatch.is_some() {
            return Err(Error::Runtime(
                "a sharded router's graph cannot be swapped".into(),
            ));
        }
        let t0 = std::time::Instant::now();
        let mut kept = 0;
        let mut replaced = Vec::new();
        let mut by_name: std::collections::HashMap<String, usize> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), i))
            .collect();
        for n in &mut new.nodes {
            if let Some(i) = by_name.remove(&n.name) {
                let old = &mut self.nodes[i];
                if old.elem.class_name() == n.elem.class_name() {
                    n.elem.take_state(old.elem.as_mut());
                    kept += 1;
                } else {
                    replaced.push(n.name.clone());
                }
            }
        }
        let elements = new.nodes.len();
        let old_nodes = std::mem::replace(&mut self.nodes, std::mem::take(&mut new.nodes));
        self.tasks = std::mem::take(&mut new.tasks);
        self.timers = std::mem::take(&mut new.timers);
        let pause = t0.elapsed().as_nanos() as u64;
        self.swaps = (self.swaps.0 + 1, pause);
        // The old graph's leftovers are cleaned up and dropped on a thread of their own (files
        // flushed, sockets closed: closing a packet socket waits for the kernel, tens of
        // milliseconds), while the new graph runs its rounds.
        let reap = move || {
            for mut n in old_nodes {
                n.elem.cleanup();
            }
        };
        if let Err(e) = std::thread::Builder::new()
            .name("nf-reaper".into())
            .spawn(reap)
        {
            return Err(Error::Runtime(format!(
                "the old graph's elements were dropped without cleanup: {e}"
            )));
        }
        Ok(SwapReport {
            elements,
            kept,
            replaced,
            pause_ns: pause,
        })
    }

    pub(crate) fn set_config_texts(&mut self, text: Arc<str>, flat: Arc<str>) {
        self.config_text = (text, flat);
    }

    /// Every numeric read handler's value (counters and gauges; text handlers and values that are not
    /// numbers are left out), for a metrics endpoint.
    pub fn handler_samples(&self) -> Vec<HandlerSample> {
        let mut out = Vec::new();
        for n in &self.nodes {
            for h in n.elem.handlers() {
                if !h.read || h.kind == crate::element::HandlerKind::Text {
                    continue;
                }
                let Some(v) = n.elem.read_handler(h.name) else {
                    continue;
                };
                let sample = |key: Option<&str>, value: f64| HandlerSample {
                    element: n.name.clone(),
                    class: n.elem.class_name(),
                    handler: h.name,
                    key: key.map(str::to_string),
                    doc: h.doc,
                    kind: h.kind,
                    value,
                };
                if h.kind == crate::element::HandlerKind::GaugeMap {
                    for (k, x) in v.split_whitespace().filter_map(|w| w.rsplit_once('=')) {
                        if let Ok(x) = x.parse::<f64>() {
                            out.push(sample(Some(k), x));
                        }
                    }
                } else if let Ok(value) = v.trim().parse::<f64>() {
                    out.push(sample(None, value));
                }
            }
        }
        out
    }

    /// Sets the configuration's text and its flattened form, which a control socket's `config` and
    /// `flatconfig` handlers return.
    pub fn set_config_text(&mut self, text: &str, flat: &str) {
        self.config_text = (Arc::from(text), Arc::from(flat));
    }

    pub(crate) fn config_texts(&self) -> (Arc<str>, Arc<str>) {
        self.config_text.clone()
    }

    pub(crate) fn attach_control(&mut self, port: crate::control::ControlPort) {
        self.control = Some(Box::new(port));
    }

    /// Answers the control socket's waiting commands now (a router that is not running its rounds,
    /// between runs, or an embedder that drives `run_round` itself).
    pub fn poll_control(&mut self) {
        if let Some(c) = self.control.take() {
            c.poll(self);
            self.control = Some(c);
        }
    }

    /// The description of handler `handler` of element `element` (`class` and `name` are every
    /// element's).
    pub fn handler_spec(&self, element: &str, handler: &str) -> Option<HandlerSpec> {
        let n = self.nodes.iter().find(|n| n.name == element)?;
        match handler {
            "class" => Some(HandlerSpec::text("class", "the element's class")),
            "name" => Some(HandlerSpec::text("name", "the element's name")),
            "handlers" => Some(HandlerSpec::text("handlers", "the element's handlers")),
            _ => n
                .elem
                .handlers()
                .iter()
                .find(|h| h.name == handler)
                .copied(),
        }
    }

    /// The class of every element, in graph order.
    pub fn classes(&self) -> impl Iterator<Item = &str> {
        self.nodes.iter().map(|n| n.elem.class_name())
    }

    /// Element names, in graph order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.nodes.iter().map(|n| n.name.as_str())
    }

    /// Index of the element called `name`.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// The element behind a typed handle.
    pub fn element<E: Element>(&self, id: ElementId<E>) -> Option<&E> {
        self.nodes.get(id.id())?.elem.as_any().downcast_ref()
    }

    /// The element behind a typed handle, mutable (attach a state sink, install state, change a parameter).
    pub fn element_mut<E: Element>(&mut self, id: ElementId<E>) -> Option<&mut E> {
        self.nodes
            .get_mut(id.id())?
            .elem
            .as_any_mut()
            .downcast_mut()
    }

    /// The element called `name`, if it is an `E`.
    pub fn element_by_name<E: Element>(&self, name: &str) -> Option<&E> {
        self.nodes
            .iter()
            .find(|n| n.name == name)?
            .elem
            .as_any()
            .downcast_ref()
    }

    /// The element called `name`, if it is an `E`, mutable.
    pub fn element_by_name_mut<E: Element>(&mut self, name: &str) -> Option<&mut E> {
        self.nodes
            .iter_mut()
            .find(|n| n.name == name)?
            .elem
            .as_any_mut()
            .downcast_mut()
    }

    /// Reads handler `handler` of element `element`.
    pub fn read_handler(&self, element: &str, handler: &str) -> Result<String, Error> {
        let n = self
            .nodes
            .iter()
            .find(|n| n.name == element)
            .ok_or_else(|| Error::NoSuchElement(element.into()))?;
        match handler {
            "class" => return Ok(n.elem.class_name().to_string()),
            "name" => return Ok(n.name.clone()),
            "handlers" => {
                // Click's form: one handler a line, its name, a tab, and `r`, `w` or `rw`.
                let mut s = String::from("class\tr\nname\tr\nhandlers\tr\n");
                for h in n.elem.handlers() {
                    let rw = match (h.read, h.write) {
                        (true, true) => "rw",
                        (true, false) => "r",
                        _ => "w",
                    };
                    s.push_str(&format!("{}\t{rw}\n", h.name));
                }
                return Ok(s);
            }
            _ => {}
        }
        n.elem.read_handler(handler).ok_or_else(|| Error::Handler {
            element: element.into(),
            handler: handler.into(),
            message: "no such read handler".into(),
        })
    }

    /// Writes handler `handler` of element `element`.
    pub fn write_handler(
        &mut self,
        element: &str,
        handler: &str,
        value: &str,
    ) -> Result<(), Error> {
        let n = self
            .nodes
            .iter_mut()
            .find(|n| n.name == element)
            .ok_or_else(|| Error::NoSuchElement(element.into()))?;
        n.elem
            .write_handler(handler, value)
            .map_err(|message| Error::Handler {
                element: element.into(),
                handler: handler.into(),
                message,
            })
    }

    /// Every readable handler of every element, in graph order.
    pub fn handlers(&self) -> Vec<HandlerValue> {
        let mut v = Vec::new();
        for n in &self.nodes {
            for h in n.elem.handlers().iter().filter(|h| h.read && h.listed) {
                if let Some(value) = n.elem.read_handler(h.name) {
                    v.push(HandlerValue {
                        element: n.name.clone(),
                        class: n.elem.class_name().to_string(),
                        handler: h.name.to_string(),
                        value,
                    });
                }
            }
        }
        v
    }

    /// Scheduling rounds run so far.
    pub fn rounds(&self) -> u64 {
        self.rounds
    }

    /// Pushes a batch into input `port` of element `elem` from outside the graph (tests, in-memory replay).
    pub fn push_batch(&mut self, elem: usize, port: usize, batch: &mut Batch) {
        self.push_into(elem, port, batch);
    }

    #[inline]
    fn push_into(&mut self, j: usize, q: usize, batch: &mut Batch) {
        {
            let node = &mut self.nodes[j];
            node.elem.push(q, batch, &mut node.outs);
        }
        batch.clear();
        self.forward(j);
    }

    #[inline]
    fn forward(&mut self, i: usize) {
        let nouts = self.nodes[i].outs.len();
        for p in 0..nouts {
            if self.nodes[i].outs.batches_mut()[p].is_empty() {
                continue;
            }
            let (j, q) = self.nodes[i].out_conn[p];
            if j == NONE {
                // A pull output holds packets only transiently inside `pull_input`.
                continue;
            }
            let mut b = self
                .spare
                .pop()
                .unwrap_or_else(|| Batch::with_capacity(BATCH_SIZE));
            std::mem::swap(&mut b, &mut self.nodes[i].outs.batches_mut()[p]);
            self.push_into(j as usize, q as usize, &mut b);
            self.spare.push(b);
        }
    }

    fn run_one_task(&mut self, t: usize) -> TaskStatus {
        let mut elem = std::mem::replace(&mut self.nodes[t].elem, Box::new(Vacant));
        let mut outs = std::mem::take(&mut self.nodes[t].outs);
        let (now, shard) = (self.now, self.shard);
        let status = {
            let mut ctx = TaskContext {
                puller: self,
                me: t,
                now,
                shard,
            };
            elem.run_task(&mut ctx, &mut outs)
        };
        self.nodes[t].elem = elem;
        self.nodes[t].outs = outs;
        if self.nodes[t].is_source {
            if self.dispatch.is_some() && !self.nodes[t].elem.shards_itself() {
                self.dispatch_outputs(t);
            }
            for b in self.nodes[t].outs.batches_mut().iter() {
                if !b.is_empty() {
                    self.run_stats.count(b.len());
                }
            }
        }
        self.forward(t);
        if let Some(s) = &self.steer
            && s.exports_due(self.shard.0)
        {
            self.hand_over();
        }
        status
    }

    /// Exports the state of the buckets this shard has just given away (every packet of theirs it took
    /// is through the graph) and posts it to their new owners.
    #[cold]
    fn hand_over(&mut self) {
        let Some(steer) = self.steer.clone() else {
            return;
        };
        let due = steer.take_due(self.shard.0);
        let mut dests: Vec<u16> = due.iter().map(|m| m.to).collect();
        dests.sort_unstable();
        dests.dedup();
        for to in dests {
            let moves: Vec<_> = due.iter().filter(|m| m.to == to).copied().collect();
            let buckets: crate::indirection::BucketSet =
                moves.iter().map(|m| usize::from(m.bucket)).collect();
            let state = self
                .nodes
                .iter_mut()
                .filter_map(|n| {
                    let m = n.elem.migrate()?;
                    Some((n.name.clone(), m.export_buckets(&buckets)))
                })
                .collect();
            steer.post(
                usize::from(to),
                crate::indirection::Handoff { moves, state },
            );
        }
    }

    /// Imports the state other shards handed this one with their buckets.
    #[cold]
    fn take_handoffs(&mut self) {
        let Some(steer) = self.steer.clone() else {
            return;
        };
        for h in steer.take_mail(self.shard.0) {
            let mut entries = 0;
            for (name, state) in h.state {
                if let Some(m) = self
                    .nodes
                    .iter_mut()
                    .find(|n| n.name == name)
                    .and_then(|n| n.elem.migrate())
                {
                    entries += m.import_buckets(state);
                }
            }
            steer.imported(self.shard.0, &h.moves, entries);
        }
    }

    fn run_timers(&mut self) {
        for k in 0..self.timers.len() {
            let (due, every, i) = self.timers[k];
            if self.now < due {
                continue;
            }
            self.timers[k].0 = self.now.add_nanos(every);
            {
                let node = &mut self.nodes[i];
                node.elem.on_timer(self.now, &mut node.outs);
            }
            self.forward(i);
        }
    }

    /// Runs one scheduling round (due timers, then every task once). Returns true if some task did work.
    pub fn run_round(&mut self) -> bool {
        self.now = Timestamp::now();
        self.rounds += 1;
        if let Some(s) = &self.steer
            && s.has_mail(self.shard.0)
        {
            self.take_handoffs();
        }
        if !self.timers.is_empty() {
            self.run_timers();
        }
        let mut busy = false;
        for k in 0..self.tasks.len() {
            let t = self.tasks[k];
            if self.nodes[t].done {
                continue;
            }
            match self.run_one_task(t) {
                TaskStatus::Busy => busy = true,
                TaskStatus::Idle => {}
                TaskStatus::Done => {
                    self.nodes[t].done = true;
                    busy = true;
                    if self.nodes[t].is_source
                        && let Some(d) = &self.dispatch
                    {
                        d.shared.active_sources.fetch_sub(1, Ordering::AcqRel);
                    }
                }
            }
        }
        if self.dispatch.is_some() {
            busy |= self.poll_inbox();
        }
        busy
    }

    fn all_stopping_sources_done(&self) -> bool {
        let mut any = false;
        for &t in &self.tasks {
            if self.nodes[t].stops {
                any = true;
                if !self.nodes[t].done {
                    return false;
                }
            }
        }
        any || self.tasks.iter().all(|&t| self.nodes[t].done)
    }

    /// Runs until every stopping source (`STOP true`) is exhausted and the graph has drained, until every
    /// task is done, or until [`StopHandle::stop`]. Then calls every element's `cleanup`.
    pub fn run(&mut self) -> Result<(), Error> {
        crate::pool::prefill(crate::pool::MAX_POOLED / 2);
        let before = crate::pool::stats();
        let mut idle_rounds = 0u32;
        loop {
            if self.stop.is_stopped() {
                break;
            }
            let busy = self.run_round();
            // A control socket's commands, every 16th round (microseconds apart under load): an
            // empty poll every round would cost more than the wait is worth.
            if self.rounds.is_multiple_of(CONTROL_EVERY)
                && let Some(c) = self.control.take()
            {
                c.poll(self);
                self.control = Some(c);
            }
            let finished = match &self.dispatch {
                None => self.all_stopping_sources_done(),
                Some(d) => {
                    self.all_stopping_sources_done()
                        && d.shared.active_sources.load(Ordering::Acquire) == 0
                        && d.shared.in_flight.load(Ordering::Acquire) == 0
                }
            };
            if !busy {
                if finished || self.tasks.is_empty() {
                    break;
                }
                idle_rounds += 1;
                if idle_rounds > 64 {
                    std::thread::sleep(std::time::Duration::from_micros(50));
                } else {
                    std::thread::yield_now();
                }
            } else {
                idle_rounds = 0;
            }
        }
        for n in &mut self.nodes {
            n.elem.cleanup();
        }
        self.pool += crate::pool::stats() - before;
        for n in &self.nodes {
            if let Some(message) = n.elem.error() {
                return Err(Error::Element {
                    element: n.name.clone(),
                    class: n.elem.class_name().to_string(),
                    message,
                });
            }
        }
        Ok(())
    }

    // ---- sharded dispatch ----

    fn dispatch_outputs(&mut self, t: usize) {
        let Some(mut d) = self.dispatch.take() else {
            return;
        };
        let me = self.shard.0;
        let nsh = self.shard.1;
        let nouts = self.nodes[t].outs.len();
        for p in 0..nouts {
            let b = &mut self.nodes[t].outs.batches_mut()[p];
            if b.is_empty() {
                continue;
            }
            let mut keep = self
                .spare
                .pop()
                .unwrap_or_else(|| Batch::with_capacity(BATCH_SIZE));
            for mut pkt in b.drain() {
                let hash = flow_hash(&mut pkt, Link::Ethernet).unwrap_or(0);
                let dest = match &d.table {
                    Some(t) => t.shard_of(hash),
                    None => shard_of(hash, nsh),
                };
                if dest == me {
                    keep.push(pkt);
                } else {
                    d.pending[dest].push(pkt);
                }
            }
            std::mem::swap(b, &mut keep);
            self.spare.push(keep);
            for dest in 0..nsh {
                if dest != me && !d.pending[dest].is_empty() {
                    self.send_pending(&mut d, dest, t, p);
                }
            }
        }
        self.dispatch = Some(d);
    }

    fn send_pending(&mut self, d: &mut Dispatch, dest: usize, elem: usize, port: usize) {
        let fresh = d
            .ret_rx
            .try_recv()
            .unwrap_or_else(|_| Batch::with_capacity(BATCH_SIZE));
        let batch = std::mem::replace(&mut d.pending[dest], fresh);
        d.shared.in_flight.fetch_add(1, Ordering::AcqRel);
        let mut tr = Transfer {
            origin: self.shard.0,
            elem: elem as u32,
            port: port as u32,
            batch,
        };
        loop {
            match d.tx[dest].try_send(tr) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) => {
                    tr = back;
                    // Drain our own inbox so that two full shards cannot wait on each other.
                    self.dispatch = None;
                    let inbox = std::mem::replace(&mut d.rx, mpsc::sync_channel(0).1);
                    while let Ok(t) = inbox.try_recv() {
                        self.deliver(t, &d.ret_tx, &d.shared);
                    }
                    d.rx = inbox;
                    std::thread::yield_now();
                }
                Err(TrySendError::Disconnected(_)) => {
                    d.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
                    break;
                }
            }
        }
    }

    fn deliver(&mut self, mut t: Transfer, ret: &[Sender<Batch>], shared: &ShardShared) {
        let (j, q) = self.nodes[t.elem as usize].out_conn[t.port as usize];
        if !t.batch.is_empty() {
            self.run_stats.count(t.batch.len());
        }
        if j != NONE {
            self.push_into(j as usize, q as usize, &mut t.batch);
        }
        t.batch.clear();
        let _ = ret[t.origin].send(t.batch);
        shared.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    fn poll_inbox(&mut self) -> bool {
        let Some(d) = self.dispatch.take() else {
            return false;
        };
        let mut any = false;
        while let Ok(t) = d.rx.try_recv() {
            any = true;
            self.deliver(t, &d.ret_tx, &d.shared);
        }
        self.dispatch = Some(d);
        any
    }
}

impl Puller for Router {
    fn pull_input(&mut self, elem: usize, port: usize, max: usize, into: &mut Batch) -> usize {
        let Some(&(u, up)) = self.nodes[elem].in_conn.get(port) else {
            return 0;
        };
        if u == NONE {
            return 0;
        }
        let (u, up) = (u as usize, up as usize);
        if self.nodes[u].out_native_pull[up] {
            return self.nodes[u].elem.pull(up, max, into);
        }
        // An agnostic element in pull context: pull its input 0, run it, take what reached output `up`.
        let mut tmp = self
            .spare
            .pop()
            .unwrap_or_else(|| Batch::with_capacity(BATCH_SIZE));
        let got = self.pull_input(u, 0, max, &mut tmp);
        if got == 0 {
            self.spare.push(tmp);
            return 0;
        }
        {
            let node = &mut self.nodes[u];
            node.elem.push(0, &mut tmp, &mut node.outs);
        }
        tmp.clear();
        self.spare.push(tmp);
        let out = &mut self.nodes[u].outs.batches_mut()[up];
        let n = out.len();
        into.append(out);
        self.forward(u);
        n
    }
}

fn find_cycle(adj: &[Vec<(usize, Option<Span>)>]) -> Option<(Vec<usize>, Option<Span>)> {
    // Iterative DFS; a back edge v -> w (w on the stack) closes the cycle w -> ... -> v -> w.
    let n = adj.len();
    let mut colour = vec![0u8; n];
    for s in 0..n {
        if colour[s] != 0 {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(s, 0)];
        colour[s] = 1;
        while let Some(top) = stack.last_mut() {
            let (v, k) = *top;
            if k < adj[v].len() {
                top.1 += 1;
                let (w, span) = adj[v][k];
                if colour[w] == 1 {
                    let at = stack.iter().position(|&(x, _)| x == w).unwrap_or(0);
                    let mut path: Vec<usize> = stack[at..].iter().map(|&(x, _)| x).collect();
                    path.push(w);
                    return Some((path, span));
                }
                if colour[w] == 0 {
                    colour[w] = 1;
                    stack.push((w, 0));
                }
            } else {
                colour[v] = 2;
                stack.pop();
            }
        }
    }
    None
}

// ---- the sharded runtime ----

struct ShardShared {
    active_sources: AtomicUsize,
    in_flight: AtomicUsize,
}

struct Transfer {
    origin: usize,
    elem: u32,
    port: u32,
    batch: Batch,
}

struct Dispatch {
    /// The run's table as it started (a run whose sources hand packets over cannot move buckets).
    table: Option<crate::indirection::Indirection>,
    tx: Vec<SyncSender<Transfer>>,
    rx: Receiver<Transfer>,
    ret_tx: Vec<Sender<Batch>>,
    ret_rx: Receiver<Batch>,
    pending: Vec<Batch>,
    shared: Arc<ShardShared>,
}

/// Rounds between two polls of a control socket's commands.
const CONTROL_EVERY: u64 = 16;

/// N copies of a graph on N threads, with packets dispatched by flow hash so that both directions of a flow
/// are processed by one shard (Metron's flow affinity, in software: what RSS does on a NIC).
///
/// Sources that can (`FromPcap`, `Replay`) do what a NIC's RSS does: every shard's copy scans the whole
/// input and keeps only the packets whose symmetric Toeplitz flow hash maps to its shard, so that no packet
/// crosses cores. The packets of other sources are hashed at the source's output and handed to the owning
/// shard through bounded channels of batches. Elements keep their state per shard: no locks on the packet
/// path.
pub struct ShardedRouter {
    routers: Vec<Router>,
    stop: StopHandle,
    steering: Arc<Steering>,
    /// Kept between the shards' allocations (see [`ShardedRouter::new`]).
    _separators: Vec<Box<[u8]>>,
}

/// Bytes kept allocated between two shards' graphs, so that no cache line holds state of two shards (64
/// KiB: see BENCHMARKS.md for the sizes compared).
const SEPARATOR: usize = 65536;

impl std::fmt::Debug for ShardedRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardedRouter")
            .field("shards", &self.routers.len())
            .finish()
    }
}

impl ShardedRouter {
    /// Builds `shards` routers, each from the graph `make(shard)` returns.
    pub fn new(
        shards: usize,
        make: impl FnMut(usize) -> Result<Graph, Error>,
    ) -> Result<Self, Error> {
        Self::new_elastic(shards, shards, make)
    }

    /// Builds `max` routers, of which the first `active` take flows at the start; the others take some
    /// once [`Steering::set_shards`] (or `WRITE steering.shards N`) adds them, and shards removed give
    /// theirs back, with their flows' state. A shard that owns no bucket receives nothing (a capture's
    /// reader still walks the file, to keep its place).
    pub fn new_elastic(
        max: usize,
        active: usize,
        mut make: impl FnMut(usize) -> Result<Graph, Error>,
    ) -> Result<Self, Error> {
        let shards = max.max(1);
        let mut routers = Vec::with_capacity(shards);
        let steering = Arc::new(Steering::new(shards));
        steering.set_initial_shards(active);
        let cohort = Cohort::with_steering(steering.clone());
        let mut separators = Vec::with_capacity(shards);
        for s in 0..shards {
            routers.push(Router::new_shard_in(make(s)?, s, shards, Some(&cohort))?);
            // The shards' graphs are built one after the other on this thread, so the allocator may place
            // the first objects of the next shard (its elements' counters) in the cache line holding the
            // last objects of this one: two cores writing one line, every round. A block between them
            // keeps them apart (false sharing cost a 2-shard run ~10 %).
            separators.push(vec![0u8; SEPARATOR].into_boxed_slice());
        }
        let stop = StopHandle::default();
        let sources: usize = routers
            .iter()
            .map(|r| r.tasks.iter().filter(|&&t| r.nodes[t].is_source).count())
            .sum();
        let shared = Arc::new(ShardShared {
            active_sources: AtomicUsize::new(sources),
            in_flight: AtomicUsize::new(0),
        });
        let mut txs = Vec::new();
        let mut rxs = Vec::new();
        let mut rtxs = Vec::new();
        let mut rrxs = Vec::new();
        for _ in 0..shards {
            let (tx, rx) = mpsc::sync_channel::<Transfer>(256);
            txs.push(tx);
            rxs.push(rx);
            let (rtx, rrx) = mpsc::channel::<Batch>();
            rtxs.push(rtx);
            rrxs.push(rrx);
        }
        for (r, (rx, rrx)) in routers.iter_mut().zip(rxs.into_iter().zip(rrxs)) {
            r.stop = stop.clone();
            if shards > 1 {
                r.dispatch = Some(Dispatch {
                    table: Some(steering.table()),
                    tx: txs.clone(),
                    rx,
                    ret_tx: rtxs.clone(),
                    ret_rx: rrx,
                    pending: (0..shards)
                        .map(|_| Batch::with_capacity(BATCH_SIZE))
                        .collect(),
                    shared: shared.clone(),
                });
            }
        }
        let followers = steering.followers();
        let why_not = routers.iter().enumerate().find_map(|(s, r)| {
            let sources = r.tasks.iter().filter(|&&t| r.nodes[t].is_source).count();
            let following = followers.get(s).copied().unwrap_or(0) as usize;
            (sources != 1 || following != 1).then(|| {
                format!(
                    "every shard needs exactly one source, and one that cuts its input into epochs \
                     (FromPcap over one file, FromDevice with FANOUT table); shard {s} has {sources} \
                     source(s), {following} such"
                )
            })
        });
        steering.allow_moves(why_not);
        Ok(ShardedRouter {
            routers,
            stop,
            steering,
            _separators: separators,
        })
    }

    /// Runs every shard on its own thread until all are finished (see [`Router::run`]).
    pub fn run(&mut self) -> Result<(), Error> {
        let results: Vec<Result<(), Error>> = std::thread::scope(|s| {
            let hs: Vec<_> = self
                .routers
                .iter_mut()
                .enumerate()
                .map(|(i, r)| {
                    std::thread::Builder::new()
                        .name(format!("nf-shard-{i}"))
                        .spawn_scoped(s, move || r.run())
                        .map_err(|e| Error::Runtime(format!("cannot start shard {i}: {e}")))
                })
                .collect();
            hs.into_iter()
                .map(|h| {
                    h.and_then(|h| {
                        h.join()
                            .unwrap_or_else(|_| Err(Error::Runtime("a shard panicked".into())))
                    })
                })
                .collect()
        });
        results.into_iter().collect()
    }

    /// A handle that stops every shard.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// What the runs did to the shards' buffer pools, summed.
    pub fn pool_stats(&self) -> crate::pool::PoolStats {
        self.routers.iter().map(Router::pool_stats).sum()
    }

    /// The run's steering: its indirection table, bucket moves and their counters (moves are allowed
    /// when every shard's one source cuts its input into epochs; see [`crate::indirection`]).
    pub fn steering(&self) -> &Arc<Steering> {
        &self.steering
    }

    /// The shards' routers.
    pub fn shards(&self) -> &[Router] {
        &self.routers
    }

    /// The shards' routers, mutable.
    pub fn shards_mut(&mut self) -> &mut [Router] {
        &mut self.routers
    }

    /// Every handler, summed over shards where every shard's value is an integer, else the shards' values
    /// joined with `/`.
    pub fn handlers(&self) -> Vec<HandlerValue> {
        let per: Vec<Vec<HandlerValue>> = self.routers.iter().map(|r| r.handlers()).collect();
        let Some(first) = per.first() else {
            return Vec::new();
        };
        first
            .iter()
            .enumerate()
            .map(|(k, h)| {
                let vals: Vec<&str> = per
                    .iter()
                    .filter_map(|v| v.get(k))
                    .map(|v| v.value.as_str())
                    .collect();
                let ints: Option<Vec<u128>> = vals.iter().map(|v| v.parse::<u128>().ok()).collect();
                let value = match ints {
                    Some(v) if h.handler != "rate" => v.iter().sum::<u128>().to_string(),
                    _ => vals.join(" / "),
                };
                HandlerValue { value, ..h.clone() }
            })
            .collect()
    }
}
