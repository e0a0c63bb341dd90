//! `EtherEncap`: prepends an Ethernet header.

use crate::args::Args;
use crate::args::EtherAddr;
use crate::batch::{Batch, Outputs};
use crate::element::Element;
use crate::element::ElementClass;
use crate::error::ConfigError;
use crate::wire::{EthernetFrame, EthernetRepr};

/// Prepends an Ethernet header (`DST`, `SRC`, `ETHERTYPE`) to each packet, in its headroom.
///
/// # Ports
/// One agnostic input, one agnostic output.
///
/// # Arguments
/// `ETHERTYPE` (e.g. `0x0800`), `SRC`, `DST` (mandatory, in that order, as Click's).
///
/// # Handlers
/// None.
///
/// # Example
/// ```
/// let r = nf_core::testing::run_config("
///     InfiniteSource(LIMIT 2, STOP true) -> Strip(14)
///       -> EtherEncap(0x0800, 00:00:00:00:00:01, 00:00:00:00:00:02)
///       -> c :: Classifier(12/0800, -) -> n :: Counter -> Discard; c[1] -> Discard;").unwrap();
/// assert_eq!(r.read_handler("n", "count").unwrap(), "2");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct EtherEncap {
    header: [u8; 14],
}

impl EtherEncap {
    /// An encapsulator.
    pub fn new(ether_type: u16, src: EtherAddr, dst: EtherAddr) -> Self {
        let mut header = [0u8; 14];
        EthernetRepr {
            src_addr: src.0,
            dst_addr: dst.0,
            ethertype: ether_type,
        }
        .emit(&mut EthernetFrame::new_unchecked(&mut header[..]));
        EtherEncap { header }
    }
}

impl Element for EtherEncap {
    fn class_name(&self) -> &'static str {
        Self::NAME
    }
    #[inline]
    fn push(&mut self, _port: usize, batch: &mut Batch, out: &mut Outputs) {
        for p in batch.iter_mut() {
            p.push(14).copy_from_slice(&self.header);
        }
        out.port(0).append(batch);
    }
}

impl ElementClass for EtherEncap {
    const NAME: &'static str = "EtherEncap";
    const DOC: &'static str = "prepends an Ethernet header (ETHERTYPE, SRC, DST)";
    fn configure(a: &mut Args) -> Result<Self, ConfigError> {
        let t: u16 = a.read_mp("ETHERTYPE")?;
        let s: EtherAddr = a.read_mp("SRC")?;
        let d: EtherAddr = a.read_mp("DST")?;
        Ok(EtherEncap::new(t, s, d))
    }
}
