//! `SetTimestamp`: sets the timestamp annotation to the current time.

use crate::args::Args;
use crate::batch::{Batch, Outputs};
use crate::element::Element;
use crate::element::ElementClass;
use crate::error::ConfigError;
use crate::packet::Timestamp;

/// Sets each packet's timestamp annotation to the current wall-clock time (one clock read per batch).
///
/// # Ports
/// One agnostic input, one agnostic output.
///
/// # Arguments
/// None.
///
/// # Handlers
/// None.
///
/// # Example
/// ```
/// let r = nf_core::testing::run_config("InfiniteSource(LIMIT 1, STOP true) -> SetTimestamp -> Discard;").unwrap();
/// assert_eq!(r.names().count(), 3);
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct SetTimestamp;

impl Element for SetTimestamp {
    fn class_name(&self) -> &'static str {
        Self::NAME
    }
    fn push(&mut self, _port: usize, batch: &mut Batch, out: &mut Outputs) {
        let now = Timestamp::now();
        for p in batch.iter_mut() {
            p.anno.timestamp = now;
        }
        out.port(0).append(batch);
    }
}

impl ElementClass for SetTimestamp {
    const NAME: &'static str = "SetTimestamp";
    const DOC: &'static str = "sets the timestamp annotation to now";
    fn configure(a: &mut Args) -> Result<Self, ConfigError> {
        let _ = a;
        Ok(SetTimestamp)
    }
}
