//! The `Element` trait: ports, push and pull over batches, tasks, handlers.
//!
//! A custom element is one struct and one `impl Element` block: only [`Element::class_name`] and
//! [`Element::push`] are required; ports default to one agnostic input and one agnostic output (`"1/1"`,
//! `"a/a"`). Sources and pull consumers are *tasks* ([`Element::run_task`]) that the router schedules.

use crate::batch::{Batch, Outputs};
use crate::packet::Timestamp;
use std::any::Any;

/// Gives `&mut dyn Any` for every element, so that code holding a graph can reach a concrete element
/// ([`crate::Router::element_mut`]). Implemented for every type: elements do not write it.
pub trait AsAny: Any {
    /// `self` as `Any`.
    fn as_any(&self) -> &dyn Any;
    /// `self` as `Any`, mutable.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: Any> AsAny for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// How many ports an element has on one side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortCount {
    /// Fewest ports.
    pub min: usize,
    /// Most ports (`usize::MAX`: unbounded).
    pub max: usize,
}

/// The most ports an element can have on one side (inputs or outputs); a configuration naming a higher port
/// is an error before anything is built.
pub const MAX_PORTS: usize = 4096;

impl PortCount {
    /// Exactly `n` ports.
    pub const fn exactly(n: usize) -> Self {
        PortCount { min: n, max: n }
    }
    /// Between `min` and `max` ports.
    pub const fn range(min: usize, max: usize) -> Self {
        PortCount { min, max }
    }
    /// At least `min` ports.
    pub const fn at_least(min: usize) -> Self {
        PortCount {
            min,
            max: usize::MAX,
        }
    }
}

impl std::fmt::Display for PortCount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.min, self.max) {
            (a, b) if a == b => write!(f, "{a}"),
            (0, usize::MAX) => write!(f, "-"),
            (a, usize::MAX) => write!(f, "{a}-"),
            (a, b) => write!(f, "{a}-{b}"),
        }
    }
}

/// Push, pull or agnostic (decided by what the port is connected to).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Processing {
    /// The upstream element calls this one (`h` in Click's notation).
    Push,
    /// The downstream element asks this one (`l`).
    Pull,
    /// Either, fixed when the graph is checked (`a`).
    Agnostic,
}

/// An element's ports: counts on each side and Click's processing code (`"h/h"`, `"a/a"`, `"h/l"`, `"a/ah"`:
/// inputs before the slash, outputs after; the last letter of a side applies to its remaining ports).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortSpec {
    /// Input ports.
    pub inputs: PortCount,
    /// Output ports.
    pub outputs: PortCount,
    /// Processing code.
    pub processing: &'static str,
}

impl PortSpec {
    /// One agnostic input, one agnostic output: the default.
    pub const SIMPLE: PortSpec = PortSpec::new(PortCount::exactly(1), PortCount::exactly(1), "a/a");
    /// A push source: no input, one push output.
    pub const SOURCE: PortSpec = PortSpec::new(PortCount::exactly(0), PortCount::exactly(1), "h/h");
    /// A sink: one agnostic input, no output.
    pub const SINK: PortSpec = PortSpec::new(PortCount::exactly(1), PortCount::exactly(0), "a/a");

    /// A port specification.
    pub const fn new(inputs: PortCount, outputs: PortCount, processing: &'static str) -> Self {
        PortSpec {
            inputs,
            outputs,
            processing,
        }
    }

    fn side(&self, input: bool) -> &'static str {
        let mut it = self.processing.splitn(2, '/');
        let i = it.next().unwrap_or("a");
        let o = it.next().unwrap_or(i);
        if input { i } else { o }
    }

    /// Processing of input `port`.
    pub fn input(&self, port: usize) -> Processing {
        code(self.side(true), port)
    }

    /// Processing of output `port`.
    pub fn output(&self, port: usize) -> Processing {
        code(self.side(false), port)
    }
}

fn code(side: &str, port: usize) -> Processing {
    let b = side.as_bytes();
    let c = b.get(port).or_else(|| b.last()).copied().unwrap_or(b'a');
    match c {
        b'h' => Processing::Push,
        b'l' => Processing::Pull,
        _ => Processing::Agnostic,
    }
}

/// What a read handler's value is, for a metrics scraper (the `metrics` module, behind the feature of that name, exports the numeric ones).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandlerKind {
    /// A count that only grows (until a `reset`): packets, drops, flows created.
    Counter,
    /// A value that goes up and down: flows in a table, packets waiting, a rate, a setting.
    Gauge,
    /// A gauge per key, written `KEY=VALUE` separated by spaces (flows per backend): exported with the
    /// key as a label.
    GaugeMap,
    /// Not a metric: text, a table dump, a write-only knob.
    Text,
}

/// A handler an element offers: a named value to read, or a knob to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandlerSpec {
    /// Name (`count`, `reset`, ...).
    pub name: &'static str,
    /// Readable.
    pub read: bool,
    /// Writable.
    pub write: bool,
    /// One line of documentation.
    pub doc: &'static str,
    /// Shown in run reports ([`crate::Router::handlers`]); false for bulky values read on demand.
    pub listed: bool,
    /// A counter, a gauge or neither (how a metrics endpoint types the value).
    pub kind: HandlerKind,
}

impl HandlerSpec {
    /// A read handler whose value is a count that only grows (a [`HandlerKind::Counter`]); a value that
    /// can fall is a [`gauge`](Self::gauge).
    pub const fn read(name: &'static str, doc: &'static str) -> Self {
        HandlerSpec {
            name,
            read: true,
            write: false,
            doc,
            listed: true,
            kind: HandlerKind::Counter,
        }
    }
    /// A read handler whose value goes up and down (flows in a table, a queue's length).
    pub const fn gauge(name: &'static str, doc: &'static str) -> Self {
        HandlerSpec {
            kind: HandlerKind::Gauge,
            ..Self::read(name, doc)
        }
    }
    /// A read handler whose value is a gauge per key, `KEY=VALUE KEY=VALUE ...` (flows per backend).
    pub const fn gauge_map(name: &'static str, doc: &'static str) -> Self {
        HandlerSpec {
            kind: HandlerKind::GaugeMap,
            ..Self::read(name, doc)
        }
    }
    /// A read handler whose value is text (a list, a name, an error), listed in run reports.
    pub const fn text(name: &'static str, doc: &'static str) -> Self {
        HandlerSpec {
            kind: HandlerKind::Text,
            ..Self::read(name, doc)
        }
    }
    /// A read handler left out of run reports (a table dump), read by name only.
    pub const fn read_on_demand(name: &'static str, doc: &'static str) -> Self {
        HandlerSpec {
            name,
            read: true,
            write: false,
            doc,
            listed: false,
            kind: HandlerKind::Text,
        }
    }
    /// A write handler.
    pub const fn write(name: &'static str, doc: &'static str) -> Self {
        HandlerSpec {
            name,
            read: false,
            write: true,
            doc,
            listed: false,
            kind: HandlerKind::Text,
        }
    }
    /// A read-write handler (a setting: a [`HandlerKind::Gauge`] when its value is a number).
    pub const fn read_write(name: &'static str, doc: &'static str) -> Self {
        HandlerSpec {
            name,
            read: true,
            write: true,
            doc,
            listed: true,
            kind: HandlerKind::Gauge,
        }
    }
}

/// What an element learns when the graph is set up.
#[derive(Debug, Clone)]
pub struct InitContext<'a> {
    /// The element's name in the graph.
    pub name: &'a str,
    /// Connected input ports.
    pub ninputs: usize,
    /// Connected output ports.
    pub noutputs: usize,
    /// This copy's shard index (0 when not sharded).
    pub shard: usize,
    /// Number of shards (1 when not sharded).
    pub shards: usize,
    /// Bit `i` set if input `i` resolved to pull.
    pub pull_inputs: u64,
    /// Bit `i` set if output `i` resolved to pull.
    pub pull_outputs: u64,
    /// In a sharded run, what the shards' copies of the graph share (see [`Cohort`]); `None` for a
    /// router on its own.
    pub cohort: Option<&'a Cohort>,
}

/// What the copies of one graph share across the shards of a run: the copies of an element find one
/// object by the element's name, the first copy to ask creating it. A source uses it to split work among
/// its copies (`FromPcap` splits the scan of its file); anything on the packet path should stay per shard.
#[derive(Default)]
pub struct Cohort {
    shared:
        std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<dyn Any + Send + Sync>>>,
    steering: std::sync::OnceLock<std::sync::Arc<crate::indirection::Steering>>,
}

impl std::fmt::Debug for Cohort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.shared.lock().map(|m| m.len()).unwrap_or(0);
        f.debug_struct("Cohort").field("shared", &n).finish()
    }
}

impl Cohort {
    /// A cohort for a run whose shards share `steering`.
    pub fn with_steering(steering: std::sync::Arc<crate::indirection::Steering>) -> Self {
        let c = Cohort::default();
        let _ = c.steering.set(steering);
        c
    }

    /// The run's steering (its indirection table and bucket moves), if the run has one.
    pub fn steering(&self) -> Option<&std::sync::Arc<crate::indirection::Steering>> {
        self.steering.get()
    }

    /// The object shared under `name`, made by `make` if no copy asked before. `None` if `name` holds an
    /// object of another type (the shards' graphs differ there).
    pub fn shared<T: Any + Send + Sync>(
        &self,
        name: &str,
        make: impl FnOnce() -> T,
    ) -> Option<std::sync::Arc<T>> {
        let mut m = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        let any = m
            .entry(name.to_string())
            .or_insert_with(|| std::sync::Arc::new(make()))
            .clone();
        any.downcast::<T>().ok()
    }
}

/// What a task reports after a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskStatus {
    /// It did work; run it again soon.
    Busy,
    /// Nothing to do right now (an empty queue, a rate limit).
    Idle,
    /// Finished for good (a source at the end of its input).
    Done,
}

/// A scheduled element's view of the router: pull from its inputs, read the clock.
pub struct TaskContext<'a> {
    pub(crate) puller: &'a mut dyn Puller,
    pub(crate) me: usize,
    pub(crate) now: Timestamp,
    pub(crate) shard: (usize, usize),
}

/// Pulls packets through the graph for a task (implemented by the router).
pub(crate) trait Puller {
    fn pull_input(&mut self, elem: usize, port: usize, max: usize, into: &mut Batch) -> usize;
}

impl TaskContext<'_> {
    /// Pulls up to `max` packets from input `port` into `into`; returns how many arrived.
    pub fn pull(&mut self, port: usize, max: usize, into: &mut Batch) -> usize {
        self.puller.pull_input(self.me, port, max, into)
    }
    /// The time at the start of this scheduling round.
    pub fn now(&self) -> Timestamp {
        self.now
    }
    /// This shard's index and the number of shards.
    pub fn shard(&self) -> (usize, usize) {
        self.shard
    }
}

/// A packet-processing element.
///
/// Packets left in the input batch when [`push`](Self::push) returns are dropped (their buffers go back to
/// the pool): an element that drops a packet simply does not forward it, and counts it if it matters.
pub trait Element: AsAny + Send {
    /// The class name (as written in configurations).
    fn class_name(&self) -> &'static str;

    /// The ports. Called after configuration, so it may depend on arguments (e.g. `Tee(3)`).
    fn ports(&self) -> PortSpec {
        PortSpec::SIMPLE
    }

    /// Called once the graph is checked, with the number of connected ports.
    fn initialize(&mut self, ctx: &InitContext<'_>) -> Result<(), String> {
        let _ = ctx;
        Ok(())
    }

    /// Processes a batch that arrived on push input `port`, moving packets to `out`.
    fn push(&mut self, port: usize, batch: &mut Batch, out: &mut Outputs) {
        let _ = (port, out);
        batch.clear();
    }

    /// For elements with pull outputs (queues): moves up to `max` packets for output `port` into `into`.
    fn pull(&mut self, port: usize, max: usize, into: &mut Batch) -> usize {
        let _ = (port, max, into);
        0
    }

    /// True if the router must schedule [`run_task`](Self::run_task) (sources, `Unqueue`, pull sinks).
    fn is_task(&self) -> bool {
        false
    }

    /// True if, in a sharded run, this source emits only the packets of its own shard (by
    /// [`frame_shard`](crate::flow::frame_shard), as RSS would), so the runtime need not dispatch its output.
    fn shards_itself(&self) -> bool {
        false
    }

    /// True if the run ends when this task is [`TaskStatus::Done`] (Click's `STOP true`).
    fn stops_router(&self) -> bool {
        false
    }

    /// One scheduling round of a task: produce packets into `out`, or pull through `ctx`.
    fn run_task(&mut self, ctx: &mut TaskContext<'_>, out: &mut Outputs) -> TaskStatus {
        let _ = (ctx, out);
        TaskStatus::Done
    }

    /// For elements that need a periodic timer (expiry sweeps, reports): how often. Read once, after
    /// [`initialize`](Self::initialize).
    fn timer_interval(&self) -> Option<std::time::Duration> {
        None
    }

    /// Called every [`timer_interval`](Self::timer_interval) (wall clock) with the current time; packets put
    /// in `out` are forwarded as if pushed.
    fn on_timer(&mut self, now: Timestamp, out: &mut Outputs) {
        let _ = (now, out);
    }

    /// The handlers this element offers.
    fn handlers(&self) -> &'static [HandlerSpec] {
        &[]
    }

    /// Reads handler `name`.
    fn read_handler(&self, name: &str) -> Option<String> {
        let _ = name;
        None
    }

    /// Writes handler `name`.
    fn write_handler(&mut self, name: &str, value: &str) -> Result<(), String> {
        let _ = value;
        Err(format!("no write handler `{name}`"))
    }

    /// The element's per-flow state as something a bucket move can carry to another shard (see
    /// [`Migrate`](crate::indirection::Migrate)); `None` (the default) for an element whose state, if any,
    /// need not follow its flows.
    fn migrate(&mut self) -> Option<&mut dyn crate::indirection::Migrate> {
        None
    }

    /// Takes over the state of `old`, the element of the same name and class in the graph this one's
    /// replaces (a hot reconfiguration, Click's `take_state`): flow tables, counters, queued packets,
    /// open sockets. Called after [`initialize`](Self::initialize), on the router's thread between two
    /// rounds: keep it short (move, do not copy). Whatever `old` keeps is cleaned up and dropped. The
    /// default keeps nothing: the element starts afresh.
    ///
    /// ```
    /// use nf_core::{Batch, Element, Outputs};
    /// struct Count(u64);
    /// impl Element for Count {
    ///     fn class_name(&self) -> &'static str { "Count" }
    ///     fn push(&mut self, _: usize, b: &mut Batch, out: &mut Outputs) {
    ///         self.0 += b.len() as u64;
    ///         out.port(0).append(b)
    ///     }
    ///     fn take_state(&mut self, old: &mut dyn Element) {
    ///         if let Some(old) = old.as_any_mut().downcast_mut::<Count>() {
    ///             self.0 = old.0;
    ///         }
    ///     }
    /// }
    /// let (mut old, mut new) = (Count(7), Count(0));
    /// new.take_state(&mut old);
    /// assert_eq!(new.0, 7);
    /// ```
    fn take_state(&mut self, old: &mut dyn Element) {
        let _ = old;
    }

    /// Called when the run ends (flush files, report).
    fn cleanup(&mut self) {}

    /// A failure that ended this element's work (a corrupt input file, a full disk); checked by the router
    /// after the run, which then returns it as an error.
    fn error(&self) -> Option<String> {
        None
    }
}

/// An element class of the configuration language, as Click's `class_name` and `configure`: the name
/// configurations use, one line for `nf elements`, and how the element is made from its arguments. The
/// arguments are read here, in the element's own file; a registry adds the class with
/// [`Registry::add`](crate::Registry::add).
///
/// ```
/// use nf_core::element::ElementClass;
/// use nf_core::{Args, Batch, ConfigError, Element, Outputs, Registry};
///
/// /// Passes every packet on.
/// struct Pass;
/// impl Element for Pass {
///     fn class_name(&self) -> &'static str { Self::NAME }
///     fn push(&mut self, _port: usize, b: &mut Batch, out: &mut Outputs) { out.port(0).append(b) }
/// }
/// impl ElementClass for Pass {
///     const NAME: &'static str = "Pass";
///     const DOC: &'static str = "passes every packet on";
///     fn configure(_args: &mut Args) -> Result<Self, ConfigError> { Ok(Pass) }
/// }
/// let mut r = Registry::standard();
/// r.add::<Pass>();
/// assert!(r.get("Pass").is_some());
/// ```
pub trait ElementClass: Element + Sized {
    /// The class name configurations use.
    const NAME: &'static str;
    /// What the class does, in one line.
    const DOC: &'static str;
    /// Makes the element from its configuration arguments (arguments left unread are errors).
    fn configure(args: &mut crate::args::Args) -> Result<Self, crate::error::ConfigError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cohort_shares_one_object_per_name_and_type() {
        let c = Cohort::default();
        let mut made = 0;
        let a = c.shared("src", || {
            made += 1;
            7u32
        });
        let b = c.shared("src", || {
            made += 1;
            8u32
        });
        let (Some(a), Some(b)) = (a, b) else {
            panic!("the same type under one name is shared");
        };
        assert!(std::sync::Arc::ptr_eq(&a, &b));
        assert_eq!((*a, made), (7, 1));
        // Another name: another object; the same name with another type: none.
        assert_eq!(c.shared("other", || 9u32).as_deref(), Some(&9));
        assert!(c.shared("src", || "text").is_none());
    }
}
