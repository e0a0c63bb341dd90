//! `EtherRewrite`: rewrites the Ethernet addresses of each frame in place.

use crate::args::Args;
use crate::args::EtherAddr;
use crate::batch::{Batch, Outputs};
use crate::element::Element;
use crate::element::ElementClass;
use crate::error::ConfigError;

/// Rewrites the source and destination Ethernet addresses of each frame in place. Frames shorter than an
/// Ethernet header are dropped.
///
/// # Ports
/// One agnostic input, one agnostic output.
///
/// # Arguments
/// `SRC`, `DST` (mandatory).
///
/// # Handlers
/// None.
///
/// # Example
/// ```
/// let r = nf_core::testing::run_config("
///     InfiniteSource(LIMIT 2, STOP true) -> EtherRewrite(02:00:00:00:00:aa, 02:00:00:00:00:bb)
///       -> c :: Classifier(0/0200000000bb 6/0200000000aa, -) -> n :: Counter -> Discard; c[1] -> Discard;").unwrap();
/// assert_eq!(r.read_handler("n", "count").unwrap(), "2");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct EtherRewrite {
    addrs: [u8; 12],
}

impl EtherRewrite {
    /// A rewriter.
    pub fn new(src: EtherAddr, dst: EtherAddr) -> Self {
        let mut addrs = [0u8; 12];
        addrs[..6].copy_from_slice(&dst.0);
        addrs[6..].copy_from_slice(&src.0);
        EtherRewrite { addrs }
    }
}

impl Element for EtherRewrite {
    fn class_name(&self) -> &'static str {
        Self::NAME
    }
    #[inline]
    fn push(&mut self, _port: usize, batch: &mut Batch, out: &mut Outputs) {
        let a = self.addrs;
        batch.map_to(out, 0, |p| match p.data_mut().get_mut(..12) {
            Some(h) => {
                h.copy_from_slice(&a);
                true
            }
            None => false,
        });
    }
}

impl ElementClass for EtherRewrite {
    const NAME: &'static str = "EtherRewrite";
    const DOC: &'static str = "rewrites Ethernet source and destination addresses";
    fn configure(a: &mut Args) -> Result<Self, ConfigError> {
        let s: EtherAddr = a.read_mp("SRC")?;
        let d: EtherAddr = a.read_mp("DST")?;
        Ok(EtherRewrite::new(s, d))
    }
}
