//! `Unqueue`: pulls packets and pushes them on.

use crate::args::Args;
use crate::batch::Outputs;
use crate::element::ElementClass;
use crate::element::{Element, HandlerSpec, PortCount, PortSpec, TaskContext, TaskStatus};
use crate::error::ConfigError;

/// A task that pulls up to `BURST` packets per round from its input and pushes them to its output.
///
/// # Ports
/// One pull input, one push output.
///
/// # Arguments
/// `BURST` (default 32).
///
/// # Handlers
/// `count` (read): packets moved.
///
/// # Example
/// ```
/// let r = nf_core::testing::run_config("
///     InfiniteSource(LIMIT 50, STOP true) -> Queue(100) -> u :: Unqueue(8) -> Discard;").unwrap();
/// assert_eq!(r.read_handler("u", "count").unwrap(), "50");
/// ```
#[derive(Debug)]
pub struct Unqueue {
    burst: usize,
    count: u64,
}

impl Unqueue {
    /// Moves up to `burst` packets per round.
    pub fn new(burst: usize) -> Self {
        Unqueue {
            burst: burst.max(1),
            count: 0,
        }
    }
}

const HANDLERS: &[HandlerSpec] = &[HandlerSpec::read("count", "packets moved")];

impl Element for Unqueue {
    fn class_name(&self) -> &'static str {
        Self::NAME
    }
    fn ports(&self) -> PortSpec {
        PortSpec::new(PortCount::exactly(1), PortCount::exactly(1), "l/h")
    }
    fn is_task(&self) -> bool {
        true
    }
    fn run_task(&mut self, ctx: &mut TaskContext<'_>, out: &mut Outputs) -> TaskStatus {
        let n = ctx.pull(0, self.burst, out.port(0));
        self.count += n as u64;
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

impl ElementClass for Unqueue {
    const NAME: &'static str = "Unqueue";
    const DOC: &'static str = "pulls packets and pushes them on";
    fn configure(a: &mut Args) -> Result<Self, ConfigError> {
        Ok(Unqueue::new(a.read_p_or("BURST", 32)?))
    }
}
