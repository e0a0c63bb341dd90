//! `Paint`: sets the paint annotation.

use crate::batch::{Batch, Outputs};
use crate::element::Element;

/// Sets every packet's paint annotation to `COLOR`.
///
/// # Ports
/// One agnostic input, one agnostic output.
///
/// # Arguments
/// `COLOR` (0-255, mandatory).
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
        "Paint"
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
