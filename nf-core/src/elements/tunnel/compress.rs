//! Per-packet payload compression for a tunnel, in the IPComp format (RFC 3173): the IPv4 payload
//! (transport header and data) is replaced by a 4-byte IPComp header (the original protocol, flags, a
//! compression parameter index) and the LZ4 block of the payload; the IP protocol becomes 108. A packet that
//! would not get smaller, a fragment, or an IPv6 packet passes unchanged (RFC 3173 §2.2). Each packet is
//! compressed alone (no state across packets: losses and reordering on the tunnel do not matter), optionally
//! against a dictionary both ends share (`DICT`), which is what makes small packets compress.

use crate::args::Args;
use crate::batch::{Batch, Outputs};
use crate::element::{Element, ElementClass, HandlerSpec, PortCount, PortSpec};
use crate::error::ConfigError;
use crate::packet::{Packet, ethernet_payload_offset};
use crate::wire::{IpCompHeader, IpCompRepr, Ipv4Packet};
use std::sync::Arc;

/// The IP protocol number of IPComp.
pub const IPCOMP: u8 = crate::wire::ip_proto::IPCOMP;
/// The compression parameter index this SDK uses for LZ4 (from the private range, RFC 3173 §3.3).
pub const CPI_LZ4: u16 = 0xf000;

/// Byte counts of a compressor or decompressor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompressStats {
    /// Packets compressed (or decompressed).
    pub packets: u64,
    /// Payload bytes before compression.
    pub bytes_in: u64,
    /// Payload bytes after compression (with the IPComp header).
    pub bytes_out: u64,
    /// Packets passed unchanged (incompressible, fragments, not IPv4).
    pub passed: u64,
    /// Packets that could not be decompressed (dropped).
    pub errors: u64,
}

impl CompressStats {
    /// `bytes_in / bytes_out` of the packets compressed.
    pub fn ratio(&self) -> f64 {
        if self.bytes_out == 0 {
            1.0
        } else {
            self.bytes_in as f64 / self.bytes_out as f64
        }
    }
}

/// The IPv4 header at data offset `off` of an Ethernet frame: (header length, total length), if the
/// packet is a whole (unfragmented) IPv4 datagram inside the frame.
pub(super) fn whole_v4(d: &[u8], off: usize) -> Option<(usize, usize)> {
    let ip = Ipv4Packet::new_checked(d.get(off..)?).ok()?;
    ip.is_whole()
        .then(|| (ip.header_len(), usize::from(ip.total_len())))
}

/// Rewrites the IPv4 header at `h` for a new total length and payload protocol.
pub(super) fn fix_header(h: &mut [u8], total: usize, proto: u8) {
    let mut ip = Ipv4Packet::new_unchecked(h);
    ip.set_total_len(total as u16);
    ip.set_protocol(proto);
    ip.fill_checksum();
}

/// Compresses packets going into a tunnel (see [the package](super)).
///
/// # Ports
/// One push input, one push output (compressed or unchanged, in order).
///
/// # Arguments
/// `DICT` (a file both ends share, at most 64 KiB; optional); `MIN` (payloads shorter than this pass
/// unchanged, 64).
///
/// # Handlers
/// `compressed`, `passed`, `bytes_in`, `bytes_out`, `ratio`.
///
/// # Example
/// ```
/// let r = nf_core::testing::run_config("
///     InfiniteSource(LIMIT 10, LENGTH 600, STOP true) -> c :: Compress -> d :: Decompress -> Discard;").unwrap();
/// assert_eq!(r.read_handler("c", "compressed").unwrap(), "10");
/// assert_eq!(r.read_handler("d", "decompressed").unwrap(), "10");
/// ```
#[derive(Debug, Clone)]
pub struct Compress {
    dict: Arc<[u8]>,
    min: usize,
    scratch: Vec<u8>,
    stats: CompressStats,
}

impl Compress {
    /// A compressor with dictionary `dict` (may be empty).
    pub fn new(dict: Arc<[u8]>) -> Self {
        Compress {
            dict,
            min: 64,
            scratch: Vec::new(),
            stats: CompressStats::default(),
        }
    }

    /// Payloads shorter than `n` pass unchanged.
    pub fn min_payload(mut self, n: usize) -> Self {
        self.min = n;
        self
    }

    /// The counters.
    pub fn stats(&self) -> CompressStats {
        self.stats
    }

    /// Compresses one Ethernet frame in place; false if it passes unchanged.
    pub fn compress(&mut self, p: &mut Packet) -> bool {
        let d = p.data();
        let Ok(off) = ethernet_payload_offset(d) else {
            return false;
        };
        let Some((hl, total)) = whole_v4(d, off) else {
            return false;
        };
        let payload = &d[off + hl..off + total];
        if payload.len() < self.min {
            return false;
        }
        // The buffer only grows (to the largest packet's bound), so a steady stream zero-fills nothing.
        let max = lz4_flex::block::get_maximum_output_size(payload.len());
        if self.scratch.len() < max {
            self.scratch.resize(max, 0);
        }
        let n = if self.dict.is_empty() {
            lz4_flex::block::compress_into(payload, &mut self.scratch)
        } else {
            lz4_flex::block::compress_into_with_dict(payload, &mut self.scratch, &self.dict)
        };
        let Ok(n) = n else { return false };
        if n + 4 >= payload.len() {
            return false;
        }
        let proto = Ipv4Packet::new_unchecked(&d[off..]).protocol();
        let before = payload.len();
        let dm = p.data_mut();
        let at = off + hl;
        IpCompRepr {
            next_header: proto,
            cpi: CPI_LZ4,
        }
        .emit(&mut IpCompHeader::new_unchecked(&mut dm[at..at + 4]));
        dm[at + 4..at + 4 + n].copy_from_slice(&self.scratch[..n]);
        let new_total = hl + 4 + n;
        fix_header(&mut dm[off..off + hl], new_total, IPCOMP);
        p.truncate(off + new_total);
        p.anno.set_l4_offset(None);
        self.stats.packets += 1;
        self.stats.bytes_in += before as u64;
        self.stats.bytes_out += (4 + n) as u64;
        true
    }
}

const C_HANDLERS: &[HandlerSpec] = &[
    HandlerSpec::read("compressed", "packets compressed"),
    HandlerSpec::read("passed", "packets passed unchanged"),
    HandlerSpec::read("bytes_in", "payload bytes before compression"),
    HandlerSpec::read("bytes_out", "payload bytes after compression"),
    HandlerSpec::gauge("ratio", "bytes_in / bytes_out"),
];

pub(super) fn stat(s: &CompressStats, name: &str) -> Option<String> {
    Some(match name {
        "compressed" | "decompressed" => s.packets.to_string(),
        "passed" => s.passed.to_string(),
        "bytes_in" => s.bytes_in.to_string(),
        "bytes_out" => s.bytes_out.to_string(),
        "ratio" => format!("{:.3}", s.ratio()),
        "errors" => s.errors.to_string(),
        _ => return None,
    })
}

impl Element for Compress {
    fn class_name(&self) -> &'static str {
        Self::NAME
    }
    fn ports(&self) -> PortSpec {
        PortSpec::new(PortCount::exactly(1), PortCount::exactly(1), "h/h")
    }
    fn push(&mut self, _port: usize, batch: &mut Batch, out: &mut Outputs) {
        for p in batch.iter_mut() {
            if !self.compress(p) {
                self.stats.passed += 1;
            }
        }
        out.port(0).append(batch);
    }
    fn handlers(&self) -> &'static [HandlerSpec] {
        C_HANDLERS
    }
    fn read_handler(&self, name: &str) -> Option<String> {
        stat(&self.stats, name)
    }
}

/// Reads `DICT`: a file both ends share, at most 64 KiB (none: an empty dictionary).
pub(super) fn dict(a: &mut Args) -> Result<Arc<[u8]>, ConfigError> {
    let Some(path) = a.read::<String>("DICT")? else {
        return Ok(Arc::from(Vec::new()));
    };
    // A regular file (not a device or a pipe, which may never end), read up to one byte past the limit.
    use std::io::Read;
    let meta = std::fs::metadata(&path).map_err(|e| a.error(format!("DICT {path}: {e}")))?;
    if !meta.is_file() {
        return Err(a.error(format!("DICT {path}: not a regular file")));
    }
    let f = std::fs::File::open(&path).map_err(|e| a.error(format!("DICT {path}: {e}")))?;
    let mut d = Vec::new();
    f.take(65537)
        .read_to_end(&mut d)
        .map_err(|e| a.error(format!("DICT {path}: {e}")))?;
    if d.len() > 65536 {
        return Err(a.error(format!(
            "DICT {path}: more than 64 KiB; LZ4 uses at most 64 KiB"
        )));
    }
    Ok(Arc::from(d))
}

impl ElementClass for Compress {
    const NAME: &'static str = "Compress";
    const DOC: &'static str = "compresses IPv4 payloads (LZ4 in IPComp) for a tunnel";
    fn configure(a: &mut Args) -> Result<Self, ConfigError> {
        let d = dict(a)?;
        let min: usize = a.read_or("MIN", 64)?;
        Ok(Compress::new(d).min_payload(min))
    }
}
