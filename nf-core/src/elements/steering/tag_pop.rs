//! `TagPop`: removes a `ProcState` tag.

use super::{TagCarrier, carrier};
use crate::args::Args;
use crate::batch::{Batch, Outputs};
use crate::element::{Element, ElementClass, PortCount, PortSpec};
use crate::error::ConfigError;

/// Removes the `ProcState` tag; packets without one pass unchanged.
///
/// # Ports
/// One agnostic input, one agnostic output.
///
/// # Arguments
/// `CARRIER` (`vlan`, `mpls` or `anno`).
///
/// # Handlers
/// None.
///
/// # Example
/// ```
/// let r = nf_core::testing::run_config("
///     InfiniteSource(LIMIT 3, STOP true) -> TagPush(mpls, 9) -> TagPop(mpls)
///       -> c :: Classifier(12/0800, -) -> ip :: Counter -> Discard; c[1] -> Discard;").unwrap();
/// assert_eq!(r.read_handler("ip", "count").unwrap(), "3"); // IPv4 again behind the Ethernet header
/// ```
#[derive(Debug, Clone)]
pub struct TagPop {
    carrier: TagCarrier,
}

impl TagPop {
    /// Pops tags of `carrier`.
    pub fn new(carrier: TagCarrier) -> Self {
        TagPop { carrier }
    }
}

impl Element for TagPop {
    fn class_name(&self) -> &'static str {
        Self::NAME
    }
    fn ports(&self) -> PortSpec {
        PortSpec::new(PortCount::exactly(1), PortCount::exactly(1), "h/h")
    }
    fn push(&mut self, _port: usize, batch: &mut Batch, out: &mut Outputs) {
        let c = self.carrier;
        batch.map_to(out, 0, |p| {
            c.pop(p);
            true
        });
    }
}

impl ElementClass for TagPop {
    const NAME: &'static str = "TagPop";
    const DOC: &'static str = "removes a ProcState tag";
    fn configure(a: &mut Args) -> Result<Self, ConfigError> {
        let c: String = a.read_mp("CARRIER")?;
        Ok(TagPop::new(carrier(a, &c)?))
    }
}
