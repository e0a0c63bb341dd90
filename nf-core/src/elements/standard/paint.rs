//! `Paint`: sets the paint annotation.

use crate::args::Args;
use crate::batch::{Batch, Outputs};
use crate::element::Element;
use crate::element::ElementClass;
use crate::error::ConfigError;

/// Sets every packet's paint annotation to `COLOR`.
///
/// # Ports
/// One agnostic input, one agnostic output.
///
/// # Arguments
/// `COLOR` (0-255, mandatory).
///
/// # Handlers
/// None.
///
/// # Example
/// ```
/// let r = nf_core::testing::run_config(
///     "InfiniteSource(LIMIT 3, STOP true) -> Paint(2) -> s :: PaintSwitch; s[0] -> Discard; s[1] -> Discard; s[2] -> c :: Counter -> Discard;").unwrap();
/// assert_eq!(r.read_handler("c", "count").unwrap(), "3");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Paint {
    color: u8,
}

impl Paint {
    /// Paints `color`.
    pub fn new(color: u8) -> Self {
        Paint { color }
    }
}

impl Element for Paint {
    fn class_name(&self) -> &'static str {
        Self::NAME
    }
    #[inline]
    fn push(&mut self, _port: usize, batch: &mut Batch, out: &mut Outputs) {
        let c = self.color;
        for p in batch.iter_mut() {
            p.anno.paint = c;
        }
        out.port(0).append(batch);
    }
}

impl ElementClass for Paint {
    const NAME: &'static str = "Paint";
    const DOC: &'static str = "sets the paint annotation";
    fn configure(a: &mut Args) -> Result<Self, ConfigError> {
        Ok(Paint::new(a.read_mp("COLOR")?))
    }
}
