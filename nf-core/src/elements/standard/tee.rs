//! `Tee`: copies each packet to every output.

use crate::args::Args;
use crate::batch::{Batch, Outputs};
use crate::element::ElementClass;
use crate::element::{Element, InitContext, PortCount, PortSpec};
use crate::error::ConfigError;

/// Sends a copy of each packet to every output (the original to the last one).
///
/// # Ports
/// One push input; `N` push outputs (`N` from the argument, or as many as are connected).
///
/// # Arguments
/// `N` (optional): number of outputs.
///
/// # Handlers
/// None.
///
/// # Example
/// ```
/// let r = nf_core::testing::run_config(
///     "InfiniteSource(LIMIT 4, STOP true) -> t :: Tee(2); t[0] -> a :: Counter -> Discard; t[1] -> b :: Counter -> Discard;").unwrap();
/// assert_eq!(r.read_handler("a", "count").unwrap(), "4");
/// assert_eq!(r.read_handler("b", "count").unwrap(), "4");
/// ```
#[derive(Debug, Default)]
pub struct Tee {
    n: Option<usize>,
    outputs: usize,
}

impl Tee {
    /// A tee with `n` outputs (`None`: as many as connected).
    pub fn new(n: Option<usize>) -> Self {
        Tee { n, outputs: 0 }
    }
}

impl Element for Tee {
    fn class_name(&self) -> &'static str {
        Self::NAME
    }
    fn ports(&self) -> PortSpec {
        let outs = match self.n {
            Some(n) => PortCount::exactly(n),
            None => PortCount::at_least(1),
        };
        PortSpec::new(PortCount::exactly(1), outs, "h/h")
    }
    fn initialize(&mut self, ctx: &InitContext<'_>) -> Result<(), String> {
        self.outputs = ctx.noutputs;
        Ok(())
    }
    fn push(&mut self, _port: usize, batch: &mut Batch, out: &mut Outputs) {
        let n = self.outputs;
        if n == 0 {
            batch.clear();
            return;
        }
        for k in 0..n - 1 {
            for p in batch.iter() {
                out.push(k, p.clone());
            }
        }
        out.port(n - 1).append(batch);
    }
}

impl ElementClass for Tee {
    const NAME: &'static str = "Tee";
    const DOC: &'static str = "copies each packet to every output";
    fn configure(a: &mut Args) -> Result<Self, ConfigError> {
        let n: Option<usize> = a.read_p("N")?;
        if n.is_some_and(|n| n > crate::element::MAX_PORTS) {
            return Err(a.error(format!(
                "N is more than {} outputs",
                crate::element::MAX_PORTS
            )));
        }
        Ok(Tee::new(n))
    }
}
