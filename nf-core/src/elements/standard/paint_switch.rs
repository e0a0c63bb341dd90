//! `PaintSwitch`: chooses the output by the paint annotation.

use crate::args::Args;
use crate::batch::{Batch, Outputs};
use crate::element::ElementClass;
use crate::element::{Element, InitContext, PortCount, PortSpec};
use crate::error::ConfigError;

/// Sends each packet to the output numbered by its paint annotation; packets painted past the last output
/// are dropped (and counted).
///
/// # Ports
/// One push input; any number of push outputs.
///
/// # Arguments
/// None.
///
/// # Handlers
/// `dropped` (read).
///
/// # Example
/// ```
/// let r = nf_core::testing::run_config("
///     InfiniteSource(LIMIT 3, STOP true) -> Paint(1) -> s :: PaintSwitch;
///     s[0] -> a :: Counter -> Discard; s[1] -> b :: Counter -> Discard;").unwrap();
/// assert_eq!(r.read_handler("a", "count").unwrap(), "0");
/// assert_eq!(r.read_handler("b", "count").unwrap(), "3");
/// ```
#[derive(Debug, Default)]
pub struct PaintSwitch {
    n: usize,
    dropped: u64,
}

impl PaintSwitch {
    /// A paint switch.
    pub fn new() -> Self {
        Self::default()
    }
}

const HANDLERS: &[crate::element::HandlerSpec] = &[crate::element::HandlerSpec::read(
    "dropped",
    "packets painted past the last output",
)];

impl Element for PaintSwitch {
    fn class_name(&self) -> &'static str {
        Self::NAME
    }
    fn ports(&self) -> PortSpec {
        PortSpec::new(PortCount::exactly(1), PortCount::at_least(1), "h/h")
    }
    fn initialize(&mut self, ctx: &InitContext<'_>) -> Result<(), String> {
        self.n = ctx.noutputs;
        Ok(())
    }
    fn push(&mut self, _port: usize, batch: &mut Batch, out: &mut Outputs) {
        let n = self.n;
        let mut dropped = 0;
        batch.classify_to(out, |p| {
            let c = usize::from(p.anno.paint);
            if c < n {
                Some(c)
            } else {
                dropped += 1;
                None
            }
        });
        self.dropped += dropped;
    }
    fn handlers(&self) -> &'static [crate::element::HandlerSpec] {
        HANDLERS
    }
    fn read_handler(&self, name: &str) -> Option<String> {
        (name == "dropped").then(|| self.dropped.to_string())
    }
}

impl ElementClass for PaintSwitch {
    const NAME: &'static str = "PaintSwitch";
    const DOC: &'static str = "chooses the output by the paint annotation";
    fn configure(a: &mut Args) -> Result<Self, ConfigError> {
        let _ = a;
        Ok(PaintSwitch::new())
    }
}
