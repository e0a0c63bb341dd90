//! Ethernet elements: encapsulation and address rewriting.

use crate::args::EtherAddr;
use crate::batch::{Batch, Outputs};
use crate::element::Element;
use crate::registry::Registry;

/// Prepends an Ethernet header (`DST`, `SRC`, `ETHERTYPE`) to each packet, in its headroom.
///
/// # Ports
/// One agnostic input, one agnostic output.
///
/// # Arguments
/// `ETHERTYPE` (e.g. `0x0800`), `SRC`, `DST` (mandatory, in that order, as Click's).
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
        header[..6].copy_from_slice(&dst.0);
        header[6..12].copy_from_slice(&src.0);
        header[12..].copy_from_slice(&ether_type.to_be_bytes());
        EtherEncap { header }
    }
}

impl Element for EtherEncap {
    fn class_name(&self) -> &'static str {
        "EtherEncap"
    }
    #[inline]
    fn push(&mut self, _port: usize, batch: &mut Batch, out: &mut Outputs) {
        for p in batch.iter_mut() {
            p.push(14).copy_from_slice(&self.header);
        }
        out.port(0).append(batch);
    }
}

/// Rewrites the source and destination Ethernet addresses of each frame in place. Frames shorter than an
/// Ethernet header are dropped.
///
/// # Ports
/// One agnostic input, one agnostic output.
///
/// # Arguments
/// `SRC`, `DST` (mandatory).
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
        "EtherRewrite"
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

/// Registers the Ethernet elements.
pub fn register(r: &mut Registry) {
    r.register(
        "EtherEncap",
        "prepends an Ethernet header (ETHERTYPE, SRC, DST)",
        |a| {
            let t: u16 = a.read_mp("ETHERTYPE")?;
            let s: EtherAddr = a.read_mp("SRC")?;
            let d: EtherAddr = a.read_mp("DST")?;
            Ok(EtherEncap::new(t, s, d))
        },
    );
    r.register(
        "EtherRewrite",
        "rewrites Ethernet source and destination addresses",
        |a| {
            let s: EtherAddr = a.read_mp("SRC")?;
            let d: EtherAddr = a.read_mp("DST")?;
            Ok(EtherRewrite::new(s, d))
        },
    );
}
