//! `Decompress`: restores what `Compress` made (the far end of a compressing tunnel).

use super::compress::{CPI_LZ4, CompressStats, IPCOMP, dict, fix_header, stat, whole_v4};
use crate::args::Args;
use crate::batch::{Batch, Outputs};
use crate::element::{Element, ElementClass, HandlerSpec, PortCount, PortSpec};
use crate::error::ConfigError;
use crate::packet::{Packet, ethernet_payload_offset};
use crate::wire::{IpCompHeader, Ipv4Packet};
use std::sync::Arc;

/// Decompresses what [`Compress`](super::Compress) made; other packets pass unchanged, undecodable ones are dropped.
///
/// # Ports
/// One push input, one push output (undecodable packets dropped and counted).
///
/// # Arguments
/// `DICT` (the compressor's dictionary, if it had one).
///
/// # Handlers
/// `decompressed`, `passed`, `errors`.
///
/// # Example
/// ```
/// let r = nf_core::testing::run_config("
///     InfiniteSource(LIMIT 4, STOP true, LENGTH 400)
///       -> c :: Compress(MIN 16) -> d :: Decompress -> n :: Counter -> Discard;").unwrap();
/// // Every packet arrives; what was compressed is restored.
/// assert_eq!(r.read_handler("n", "count").unwrap(), "4");
/// assert_eq!(r.read_handler("c", "compressed").unwrap(), r.read_handler("d", "decompressed").unwrap());
/// ```
#[derive(Debug, Clone)]
pub struct Decompress {
    dict: Arc<[u8]>,
    scratch: Vec<u8>,
    stats: CompressStats,
}

/// Why an IPComp packet could not be decompressed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecompressError {
    /// Another compression algorithm (CPI).
    #[error("unknown compression parameter index {0:#06x}")]
    UnknownCpi(u16),
    /// The compressed data is corrupt, or decompresses past the largest IPv4 packet.
    #[error("corrupt compressed payload")]
    Corrupt,
}

impl Decompress {
    /// A decompressor with dictionary `dict` (may be empty).
    pub fn new(dict: Arc<[u8]>) -> Self {
        Decompress {
            dict,
            scratch: Vec::new(),
            stats: CompressStats::default(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> CompressStats {
        self.stats
    }

    /// Decompresses one Ethernet frame in place: `Ok(false)` if it is not an IPComp packet.
    pub fn decompress(&mut self, p: &mut Packet) -> Result<bool, DecompressError> {
        let d = p.data();
        let Ok(off) = ethernet_payload_offset(d) else {
            return Ok(false);
        };
        let Some((hl, total)) = whole_v4(d, off) else {
            return Ok(false);
        };
        if Ipv4Packet::new_unchecked(&d[off..]).protocol() != IPCOMP {
            return Ok(false);
        }
        let c = &d[off + hl..off + total];
        let Ok(h) = IpCompHeader::new_checked(c) else {
            return Ok(false);
        };
        if h.cpi() != CPI_LZ4 {
            return Err(DecompressError::UnknownCpi(h.cpi()));
        }
        let next = h.next_header();
        let room = 65535 - hl;
        if self.scratch.len() < room {
            self.scratch.resize(room, 0);
        }
        let out = &mut self.scratch[..room];
        let n = if self.dict.is_empty() {
            lz4_flex::block::decompress_into(&c[4..], out)
        } else {
            lz4_flex::block::decompress_into_with_dict(&c[4..], out, &self.dict)
        }
        .map_err(|_| DecompressError::Corrupt)?;
        let before = c.len();
        let grow = (hl + n).saturating_sub(total);
        p.truncate(off + total);
        if grow > 0 {
            p.put(grow);
        } else {
            p.truncate(off + hl + n);
        }
        let dm = p.data_mut();
        dm[off + hl..off + hl + n].copy_from_slice(&self.scratch[..n]);
        fix_header(&mut dm[off..off + hl], hl + n, next);
        p.anno.set_l4_offset(None);
        self.stats.packets += 1;
        self.stats.bytes_in += n as u64;
        self.stats.bytes_out += before as u64;
        Ok(true)
    }
}

const D_HANDLERS: &[HandlerSpec] = &[
    HandlerSpec::read("decompressed", "packets decompressed"),
    HandlerSpec::read("passed", "packets passed unchanged"),
    HandlerSpec::read("errors", "packets that could not be decompressed (dropped)"),
];

impl Element for Decompress {
    fn class_name(&self) -> &'static str {
        Self::NAME
    }
    fn ports(&self) -> PortSpec {
        PortSpec::new(PortCount::exactly(1), PortCount::exactly(1), "h/h")
    }
    fn push(&mut self, _port: usize, batch: &mut Batch, out: &mut Outputs) {
        batch.map_to(out, 0, |p| match self.decompress(p) {
            Ok(true) => true,
            Ok(false) => {
                self.stats.passed += 1;
                true
            }
            Err(_) => {
                self.stats.errors += 1;
                false
            }
        });
    }
    fn handlers(&self) -> &'static [HandlerSpec] {
        D_HANDLERS
    }
    fn read_handler(&self, name: &str) -> Option<String> {
        stat(&self.stats, name)
    }
}

impl ElementClass for Decompress {
    const NAME: &'static str = "Decompress";
    const DOC: &'static str = "decompresses what Compress made";
    fn configure(a: &mut Args) -> Result<Self, ConfigError> {
        Ok(Decompress::new(dict(a)?))
    }
}
