//! `Unstrip`: puts stripped bytes back at the front of each packet.

use crate::args::Args;
use crate::batch::{Batch, Outputs};
use crate::element::Element;
use crate::element::ElementClass;
use crate::error::ConfigError;

/// Adds `N` bytes back in front of each packet's data (the bytes `Strip` left as headroom reappear
/// unchanged; with too little headroom the data moves into a larger buffer).
///
/// # Ports
/// One agnostic input, one agnostic output.
///
/// # Arguments
/// `N` (mandatory).
///
/// # Handlers
/// None.
///
/// # Example
/// ```
/// let r = nf_core::testing::run_config(
///     "InfiniteSource(LENGTH 64, LIMIT 2, STOP true) -> Strip(14) -> Unstrip(14) -> c :: Counter -> Discard;").unwrap();
/// assert_eq!(r.read_handler("c", "byte_count").unwrap(), "128");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Unstrip {
    n: usize,
}

impl Unstrip {
    /// Unstrips `n` bytes.
    pub fn new(n: usize) -> Self {
        Unstrip { n }
    }
}

impl Element for Unstrip {
    fn class_name(&self) -> &'static str {
        Self::NAME
    }
    #[inline]
    fn push(&mut self, _port: usize, batch: &mut Batch, out: &mut Outputs) {
        let n = self.n;
        for p in batch.iter_mut() {
            // The stripped bytes are still there: only the data start moves back (a borrowed packet is not
            // copied). With too little headroom, zeroes in a larger buffer.
            if p.unpull(n).is_err() {
                p.push(n).fill(0);
            }
        }
        out.port(0).append(batch);
    }
}

impl ElementClass for Unstrip {
    const NAME: &'static str = "Unstrip";
    const DOC: &'static str = "puts N bytes back at the front";
    fn configure(a: &mut Args) -> Result<Self, ConfigError> {
        Ok(Unstrip::new(a.read_mp("N")?))
    }
}
