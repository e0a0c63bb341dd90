//! `Discard`: drops every packet.

use crate::args::Args;
use crate::batch::{Batch, Outputs};
use crate::element::ElementClass;
use crate::element::{Element, HandlerSpec, PortCount, PortSpec, TaskContext, TaskStatus};
use crate::error::ConfigError;

/// Drops every packet it receives (its buffer goes back to the pool).
///
/// # Ports
/// One agnostic input (in pull context it pulls as fast as it can), no outputs.
///
/// # Arguments
/// `BURST` (pull context only, default 32): packets to pull per scheduling round.
///
/// # Handlers
/// `count` (read): packets dropped.
///
/// # Example
/// ```
/// let r = nf_core::testing::run_config("InfiniteSource(LIMIT 5, STOP true) -> d :: Discard;").unwrap();
/// assert_eq!(r.read_handler("d", "count").unwrap(), "5");
/// ```
#[derive(Debug, Default)]
pub struct Discard {
    count: u64,
    burst: usize,
    pulling: bool,
    scratch: Batch,
}

impl Discard {
    /// A `Discard`.
    pub fn new() -> Self {
        Discard {
            count: 0,
            burst: 32,
            pulling: false,
            scratch: Batch::new(),
        }
    }
    /// Packets dropped.
    pub fn count(&self) -> u64 {
        self.count
    }
}

const HANDLERS: &[HandlerSpec] = &[HandlerSpec::read("count", "packets dropped")];

impl Element for Discard {
    fn class_name(&self) -> &'static str {
        Self::NAME
    }
    fn ports(&self) -> PortSpec {
        PortSpec::new(PortCount::exactly(1), PortCount::exactly(0), "a/a")
    }
    #[inline]
    fn push(&mut self, _port: usize, batch: &mut Batch, _out: &mut Outputs) {
        self.count += batch.len() as u64;
        batch.clear();
    }
    fn is_task(&self) -> bool {
        // Only meaningful when the input resolves to pull; a push Discard's task pulls nothing.
        self.pulling
    }
    fn initialize(&mut self, ctx: &crate::element::InitContext<'_>) -> Result<(), String> {
        self.pulling = ctx.pull_inputs & 1 != 0;
        Ok(())
    }
    fn run_task(&mut self, ctx: &mut TaskContext<'_>, _out: &mut Outputs) -> TaskStatus {
        let n = ctx.pull(0, self.burst, &mut self.scratch);
        self.count += n as u64;
        self.scratch.clear();
        if n > 0 {
            TaskStatus::Busy
        } else {
            TaskStatus::Idle
        }
    }
    fn handlers(&self) -> &'static [HandlerSpec] {
        HANDLERS
    }
    fn read_handler(&self, name: &str) -> Option<String> {
        (name == "count").then(|| self.count.to_string())
    }
}

impl Discard {
    /// A `Discard` that pulls from its input (use after a `Queue`).
    pub fn pulling(burst: usize) -> Self {
        Discard {
            count: 0,
            burst: burst.max(1),
            pulling: true,
            scratch: Batch::new(),
        }
    }
}

impl ElementClass for Discard {
    const NAME: &'static str = "Discard";
    const DOC: &'static str = "drops every packet";
    fn configure(a: &mut Args) -> Result<Self, ConfigError> {
        let b: usize = a.read_or("BURST", 32)?;
        Ok(if b != 32 {
            Discard::pulling(b)
        } else {
            Discard::new()
        })
    }
}
