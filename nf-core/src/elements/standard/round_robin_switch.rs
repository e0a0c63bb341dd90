//! `RoundRobinSwitch`: sends packets to its outputs in turn.

use crate::args::Args;
use crate::batch::{Batch, Outputs};
use crate::element::ElementClass;
use crate::element::{Element, InitContext, PortCount, PortSpec};
use crate::error::ConfigError;

/// Sends the first packet to output 0, the next to output 1, and so on, wrapping around.
///
/// # Ports
/// One push input; one or more push outputs.
///
/// # Arguments
/// None.
///
/// # Handlers
/// None.
///
/// # Example
/// ```
/// let r = nf_core::testing::run_config("
///     InfiniteSource(LIMIT 9, STOP true) -> s :: RoundRobinSwitch;
///     s[0] -> a :: Counter -> Discard; s[1] -> b :: Counter -> Discard; s[2] -> c :: Counter -> Discard;").unwrap();
/// assert_eq!(r.read_handler("c", "count").unwrap(), "3");
/// ```
#[derive(Debug, Clone, Default)]
pub struct RoundRobinSwitch {
    n: usize,
    next: usize,
}

impl RoundRobinSwitch {
    /// A round-robin switch.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Element for RoundRobinSwitch {
    fn class_name(&self) -> &'static str {
        Self::NAME
    }
    fn ports(&self) -> PortSpec {
        PortSpec::new(PortCount::exactly(1), PortCount::at_least(1), "h/h")
    }
    fn initialize(&mut self, ctx: &InitContext<'_>) -> Result<(), String> {
        self.n = ctx.noutputs.max(1);
        Ok(())
    }
    fn push(&mut self, _port: usize, batch: &mut Batch, out: &mut Outputs) {
        let n = self.n;
        let mut next = self.next;
        batch.classify_to(out, |_| {
            let o = next;
            next = if next + 1 == n { 0 } else { next + 1 };
            Some(o)
        });
        self.next = next;
    }
}

impl ElementClass for RoundRobinSwitch {
    const NAME: &'static str = "RoundRobinSwitch";
    const DOC: &'static str = "sends packets to its outputs in turn";
    fn configure(a: &mut Args) -> Result<Self, ConfigError> {
        let _ = a;
        Ok(RoundRobinSwitch::new())
    }
}
