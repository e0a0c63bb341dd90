//! `Strip`: removes bytes from the front of each packet.

use crate::args::Args;
use crate::batch::{Batch, Outputs};
use crate::element::ElementClass;
use crate::element::{Element, HandlerSpec};
use crate::error::ConfigError;

/// Removes `N` bytes from the front of each packet (they become headroom; nothing is copied). Packets
/// shorter than `N` are dropped and counted.
///
/// # Ports
/// One agnostic input, one agnostic output.
///
/// # Arguments
/// `N` (mandatory): bytes to strip (14 removes an Ethernet header).
///
/// # Handlers
/// `dropped` (read): packets shorter than `N`.
///
/// # Example
/// ```
/// let r = nf_core::testing::run_config(
///     "InfiniteSource(LENGTH 64, LIMIT 2, STOP true) -> Strip(14) -> c :: Counter -> Discard;").unwrap();
/// assert_eq!(r.read_handler("c", "byte_count").unwrap(), "100");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Strip {
    n: usize,
    dropped: u64,
}

impl Strip {
    /// Strips `n` bytes.
    pub fn new(n: usize) -> Self {
        Strip { n, dropped: 0 }
    }
}

const HANDLERS: &[HandlerSpec] = &[HandlerSpec::read("dropped", "packets shorter than N")];

impl Element for Strip {
    fn class_name(&self) -> &'static str {
        Self::NAME
    }
    #[inline]
    fn push(&mut self, _port: usize, batch: &mut Batch, out: &mut Outputs) {
        let n = self.n;
        let mut dropped = 0;
        batch.map_to(out, 0, |p| {
            let ok = p.pull(n).is_ok();
            dropped += u64::from(!ok);
            ok
        });
        self.dropped += dropped;
    }
    fn handlers(&self) -> &'static [HandlerSpec] {
        HANDLERS
    }
    fn read_handler(&self, name: &str) -> Option<String> {
        (name == "dropped").then(|| self.dropped.to_string())
    }
}

impl ElementClass for Strip {
    const NAME: &'static str = "Strip";
    const DOC: &'static str = "removes N bytes from the front";
    fn configure(a: &mut Args) -> Result<Self, ConfigError> {
        Ok(Strip::new(a.read_mp("N")?))
    }
}
