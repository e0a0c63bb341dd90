//! `TagPop`: removes a `ProcState` tag.

use super::{TagCarrier, carrier};
use crate::args::Args;
use crate::batch::{Batch, Outputs};
use crate::element::{Element, ElementClass, PortCount, PortSpec};
use crate::error::ConfigError;

/// Removes the `ProcState` tag; packets without one pass unchanged.
///
/// # Arguments
/// `CARRIER` (`vlan`, `mpls` or `anno`).
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
