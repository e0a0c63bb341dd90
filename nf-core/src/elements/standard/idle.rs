//! `Idle`: never produces a packet, drops what it receives.

use crate::args::Args;
use crate::batch::{Batch, Outputs};
use crate::element::ElementClass;
use crate::element::{Element, PortCount, PortSpec};
use crate::error::ConfigError;

/// Never pushes or pulls a packet: a placeholder that keeps ports connected (a graph fed from outside
/// through [`Router::push_batch`](crate::Router::push_batch), an unused output). Packets pushed to it
/// are dropped.
///
/// # Ports
/// Any number of agnostic inputs and outputs.
///
/// # Arguments
/// None.
///
/// # Handlers
/// None.
///
/// # Example
/// ```
/// let r = nf_core::testing::run_config("Idle -> c :: Counter -> Discard;").unwrap();
/// assert_eq!(r.read_handler("c", "count").unwrap(), "0");
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct Idle;

impl Element for Idle {
    fn class_name(&self) -> &'static str {
        Self::NAME
    }
    fn ports(&self) -> PortSpec {
        PortSpec::new(PortCount::at_least(0), PortCount::at_least(0), "a/a")
    }
    fn push(&mut self, _port: usize, batch: &mut Batch, _out: &mut Outputs) {
        batch.clear();
    }
}

impl ElementClass for Idle {
    const NAME: &'static str = "Idle";
    const DOC: &'static str =
        "never produces packets; drops what it receives (keeps ports connected)";
    fn configure(a: &mut Args) -> Result<Self, ConfigError> {
        let _ = a;
        Ok(Idle)
    }
}
