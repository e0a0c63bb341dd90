//! Capture files: classic pcap (microsecond and nanosecond, either byte order) and pcapng, read with the
//! `pcap-file` crate's slice parsers over a memory map (or an in-memory buffer), and written with its writer.

use crate::error::Error;
use nf_core::Timestamp;
use pcap_file::pcap::{PcapHeader, PcapParser};
use pcap_file::pcapng::{Block, PcapNgParser};
use pcap_file::{DataLink, PcapError, TsResolution};
use std::path::{Path, PathBuf};

/// The largest record a reader accepts (a larger length field means a corrupt file).
pub const MAX_RECORD: u32 = 262_144;

/// Where packet data starts, by the capture's link type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkLayer {
    /// Ethernet frames.
    Ethernet,
    /// Raw IP packets (the network header is at offset 0).
    RawIp,
    /// Linux cooked capture (SLL): the network header is at offset 16.
    LinuxSll,
    /// Something else (passed through unchanged; IP elements will not find headers).
    Other(u32),
}

impl LinkLayer {
    fn from_datalink(d: DataLink) -> Self {
        match d {
            DataLink::ETHERNET => LinkLayer::Ethernet,
            DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => LinkLayer::RawIp,
            DataLink::LINUX_SLL => LinkLayer::LinuxSll,
            o => LinkLayer::Other(u32::from(o)),
        }
    }
    /// Offset of the network header in a packet of this link type, if fixed.
    pub fn network_offset(self) -> Option<usize> {
        match self {
            LinkLayer::RawIp => Some(0),
            LinkLayer::LinuxSll => Some(16),
            _ => None,
        }
    }
}

/// One packet record of a capture.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    /// Capture time.
    pub timestamp: Timestamp,
    /// The captured bytes.
    pub data: &'a [u8],
    /// The packet's length on the wire.
    pub orig_len: u32,
    /// Byte offset of the record in the file.
    pub offset: u64,
}

enum Bytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

/// A capture file held in memory (mapped or read), ready to be walked by [`Cursor`]s.
pub struct CaptureFile {
    path: PathBuf,
    bytes: Bytes,
    link: LinkLayer,
    format: Format,
    start: usize,
}

impl std::fmt::Debug for CaptureFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureFile")
            .field("path", &self.path)
            .field("link", &self.link)
            .field("format", &self.format)
            .finish()
    }
}

/// The file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Classic pcap with microsecond timestamps.
    PcapMicros,
    /// Classic pcap with nanosecond timestamps.
    PcapNanos,
    /// pcapng.
    PcapNg,
}

fn capture_err(path: &Path, offset: usize, reason: impl Into<String>) -> Error {
    Error::Capture {
        path: path.to_path_buf(),
        offset: offset as u64,
        reason: reason.into(),
    }
}

impl CaptureFile {
    /// Opens `path` through a memory map.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let f = std::fs::File::open(path).map_err(io)?;
        let len = f.metadata().map_err(io)?.len();
        let bytes = if len == 0 {
            Bytes::Owned(Vec::new())
        } else {
            Bytes::Mapped(super::mmap_unsafe::map(&f).map_err(io)?)
        };
        Self::from_bytes(path, bytes)
    }

    /// Reads `path` into memory with ordinary reads (no memory map).
    pub fn read(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let v = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(path, Bytes::Owned(v))
    }

    /// A capture held in a buffer (tests, fuzzing); `name` is used in errors.
    pub fn from_vec(name: impl AsRef<Path>, data: Vec<u8>) -> Result<Self, Error> {
        Self::from_bytes(name.as_ref(), Bytes::Owned(data))
    }

    fn from_bytes(path: &Path, bytes: Bytes) -> Result<Self, Error> {
        let data: &[u8] = match &bytes {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        };
        if data.len() < 4 {
            return Err(capture_err(path, 0, "too short for a capture file header"));
        }
        let magic = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
        let (format, link, start) = if magic == 0x0a0d0d0a {
            let (rem, mut parser) = PcapNgParser::new(data).map_err(|e| {
                capture_err(path, 0, format!("pcapng section header: {}", describe(&e)))
            })?;
            // The link type comes from the first interface description block.
            let mut link = LinkLayer::Ethernet;
            let mut probe = rem;
            for _ in 0..16 {
                match parser.next_block(probe) {
                    Ok((r, Block::InterfaceDescription(idb))) => {
                        link = LinkLayer::from_datalink(idb.linktype);
                        let _ = r;
                        break;
                    }
                    Ok((r, _)) => probe = r,
                    Err(_) => break,
                }
            }
            (Format::PcapNg, link, 0)
        } else {
            let (rem, parser) = PcapParser::new(data)
                .map_err(|e| capture_err(path, 0, format!("pcap header: {}", describe(&e))))?;
            let h: PcapHeader = parser.header();
            let f = if h.ts_resolution == TsResolution::NanoSecond {
                Format::PcapNanos
            } else {
                Format::PcapMicros
            };
            (
                f,
                LinkLayer::from_datalink(h.datalink),
                data.len() - rem.len(),
            )
        };
        Ok(CaptureFile {
            path: path.to_path_buf(),
            bytes,
            link,
            format,
            start,
        })
    }

    /// The bytes of the whole file.
    pub fn bytes(&self) -> &[u8] {
        match &self.bytes {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }

    /// The link layer of the packets.
    pub fn link(&self) -> LinkLayer {
        self.link
    }

    /// The format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The path (or name) of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A cursor at the first record.
    pub fn cursor(&self) -> Result<Cursor, Error> {
        Cursor::new(self)
    }

    /// Every record, in order (stops at the first error, which it yields).
    pub fn records(&self) -> Records<'_> {
        Records {
            file: self,
            cursor: self.cursor().ok(),
            failed: false,
        }
    }
}

/// How far ahead of the record being read the reader keeps the file's lines on their way to the cache.
const PREFETCH_WINDOW: usize = 2048;

/// Prefetches every cache line of `data` from `*ahead` up to [`PREFETCH_WINDOW`] bytes past `pos`, and moves
/// `*ahead` there: a dense stream, one prefetch a line, the same lines whatever the records' sizes.
///
/// Walking records is a chain of dependent loads (where a record starts is read from the one before). A
/// reader that copies every frame streams through every line, and the hardware prefetcher keeps ahead; a
/// reader that copies nothing touches a line or two a record, sparse enough that the prefetcher does not
/// follow, and each record header waited on memory (IMIX frames: 72 ns a record against 13 ns with the
/// window: measured in BENCHMARKS.md, "Zero copy").
#[inline(always)]
fn stream_ahead(data: &[u8], ahead: &mut usize, pos: usize) {
    // Two lines a step: half the loop's tests of one a step; four a step put too many misses in flight
    // at once after a large record, and the next header waited behind them.
    let mut a = (*ahead).max(pos);
    while a < pos + PREFETCH_WINDOW {
        super::mmap_unsafe::prefetch_lines::<2>(data, a);
        a += 2 * 64;
    }
    *ahead = a;
}

fn describe(e: &PcapError) -> String {
    match e {
        PcapError::IncompleteBuffer => "truncated".into(),
        o => o.to_string(),
    }
}

/// A position in a capture file. It owns no borrow, so an element can keep it beside the file.
pub struct Cursor {
    pos: usize,
    /// The first byte not yet prefetched (see [`stream_ahead`]).
    ahead: usize,
    /// Classic pcap: record headers are big-endian.
    big_endian: bool,
    pcap: Option<PcapParser>,
    ng: Option<PcapNgParser>,
    nanos: bool,
    /// Per pcapng interface: (units per second as a divisor of 1e9, or a power-of-two resolution).
    ng_units: Vec<TsUnit>,
}

impl std::fmt::Debug for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cursor").field("pos", &self.pos).finish()
    }
}

#[derive(Clone, Copy, Debug)]
enum TsUnit {
    Pow10(u8),
    Pow2(u8),
}

impl TsUnit {
    fn to_nanos(self, raw: u64) -> u64 {
        match self {
            TsUnit::Pow10(n) if n <= 9 => raw.saturating_mul(10u64.pow(u32::from(9 - n))),
            TsUnit::Pow10(n) => raw / 10u64.pow(u32::from(n.min(19) - 9)),
            TsUnit::Pow2(n) => ((u128::from(raw) * 1_000_000_000) >> n.min(63)) as u64,
        }
    }
}

impl Cursor {
    fn new(file: &CaptureFile) -> Result<Self, Error> {
        let data = file.bytes();
        let big_endian = matches!(
            data.get(..4),
            Some([0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d])
        );
        let mut c = Cursor {
            pos: file.start,
            ahead: 0,
            big_endian,
            pcap: None,
            ng: None,
            nanos: file.format == Format::PcapNanos,
            ng_units: Vec::new(),
        };
        match file.format {
            Format::PcapNg => {
                let (rem, p) = PcapNgParser::new(data)
                    .map_err(|e| capture_err(&file.path, 0, describe(&e)))?;
                c.pos = data.len() - rem.len();
                c.ng = Some(p);
            }
            _ => {
                let (_, p) =
                    PcapParser::new(data).map_err(|e| capture_err(&file.path, 0, describe(&e)))?;
                c.pcap = Some(p);
            }
        }
        Ok(c)
    }

    /// Byte offset of the next record.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// A saved position, to come back to with [`restore_position`](Self::restore_position).
    pub fn clone_position(&self) -> usize {
        self.pos
    }

    /// Returns to a position saved from this cursor (a record boundary).
    pub fn restore_position(&mut self, pos: usize) {
        self.pos = pos;
    }

    /// The next record of `file` (`Ok(None)` at the end), or an error naming the byte offset.
    ///
    /// The common case, a classic pcap record whose header is whole and sane, is read here from one
    /// fixed-size view of the header (inlined into the reading loop); everything else (pcapng, the end of
    /// the file, damage) goes through the general reader.
    #[inline(always)]
    pub fn next<'a>(&mut self, file: &'a CaptureFile) -> Result<Option<Record<'a>>, Error> {
        if self.pcap.is_some() {
            let data = file.bytes();
            let at = self.pos;
            if let Some(h) = data
                .get(at..at.saturating_add(16))
                .and_then(|s| <&[u8; 16]>::try_from(s).ok())
            {
                let w = |i: usize| {
                    let b = [h[i], h[i + 1], h[i + 2], h[i + 3]];
                    if self.big_endian {
                        u32::from_be_bytes(b)
                    } else {
                        u32::from_le_bytes(b)
                    }
                };
                let incl = w(8);
                let end = at + 16 + incl as usize;
                if incl <= MAX_RECORD
                    && let Some(frame) = data.get(at + 16..end)
                {
                    stream_ahead(data, &mut self.ahead, end);
                    let frac = u64::from(w(4));
                    let ns = if self.nanos { frac } else { frac * 1000 };
                    self.pos = end;
                    return Ok(Some(Record {
                        timestamp: Timestamp(u64::from(w(0)) * 1_000_000_000 + ns),
                        data: frame,
                        orig_len: w(12),
                        offset: at as u64,
                    }));
                }
            }
        }
        self.next_general(file)
    }

    /// A shard's scan of classic pcap records: walks records from the cursor while `out` has room, writing
    /// each record's [`Scanned`] (with `tag`, and its header's offset) into the next free slot of `out`
    /// and keeping it there (the next one overwrites it otherwise) when `keep` accepts its frame; the
    /// choice is made without a branch (whether a packet is this shard's is a coin toss to the branch
    /// predictor). Timestamps are not decoded (see [`Cursor::timestamp_at`]). Returns the number kept and
    /// the header offsets of the first and last records walked. Stops early, for [`Cursor::next`] to deal
    /// with, at anything but a plain record (pcapng, a record to diagnose, the end of the file), and
    /// before a record whose header starts at `limit` or after (an epoch boundary). `out` needs one slot
    /// more than the records it may keep.
    #[inline(always)]
    pub(crate) fn scan_pcap(
        &mut self,
        file: &CaptureFile,
        out: &mut [Scanned],
        tag: u64,
        limit: usize,
        keep: impl FnMut(&[u8]) -> bool,
    ) -> (usize, Option<(usize, usize)>) {
        if self.pcap.is_none() || out.len() < 2 {
            return (0, None);
        }
        // One loop per byte order: the order is then a constant in the loop, not a flag read per record.
        if self.big_endian {
            self.scan_records::<true>(file, out, tag, limit, keep)
        } else {
            self.scan_records::<false>(file, out, tag, limit, keep)
        }
    }

    /// [`Cursor::scan_pcap`]'s loop, for record headers in big-endian (`BE`) or little-endian order.
    #[inline(always)]
    fn scan_records<const BE: bool>(
        &mut self,
        file: &CaptureFile,
        out: &mut [Scanned],
        tag: u64,
        limit: usize,
        mut keep: impl FnMut(&[u8]) -> bool,
    ) -> (usize, Option<(usize, usize)>) {
        let data = file.bytes();
        let be = BE;
        let (mut pos, mut k) = (self.pos, 0);
        let mut ahead = self.ahead;
        let first = pos;
        let mut last = None;
        let room = out.len() - 1;
        while k < room && pos < limit {
            let Some(&[a, b, c, d]) = data.get(pos + 8..pos + 12) else {
                break;
            };
            let incl = if be {
                u32::from_be_bytes([a, b, c, d])
            } else {
                u32::from_le_bytes([a, b, c, d])
            };
            let start = pos + 16;
            let end = start + incl as usize;
            let Some(frame) = data.get(start..end).filter(|_| incl <= MAX_RECORD) else {
                break;
            };
            stream_ahead(data, &mut ahead, end);
            if let Some(slot) = out.get_mut(k) {
                *slot = Scanned {
                    frame_at: start,
                    len: incl,
                    time: tag,
                    header_at: Some(pos),
                };
            }
            k += usize::from(keep(frame));
            last = Some(pos);
            pos = end;
        }
        self.pos = pos;
        self.ahead = ahead;
        (k, last.map(|l| (first, l)))
    }

    /// The timestamp of the classic pcap record whose header [`Cursor::scan_pcap`] found at `at`.
    #[inline(always)]
    pub(crate) fn timestamp_at(&self, file: &CaptureFile, at: usize) -> Timestamp {
        let Some(h) = file
            .bytes()
            .get(at..at.saturating_add(8))
            .and_then(|h| <&[u8; 8]>::try_from(h).ok())
        else {
            return Timestamp(0);
        };
        let w = |i: usize| {
            let b = [h[i], h[i + 1], h[i + 2], h[i + 3]];
            u64::from(if self.big_endian {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            })
        };
        let ns = if self.nanos { w(4) } else { w(4) * 1000 };
        Timestamp(w(0) * 1_000_000_000 + ns)
    }

    #[inline(never)]
    fn next_general<'a>(&mut self, file: &'a CaptureFile) -> Result<Option<Record<'a>>, Error> {
        let data = file.bytes();
        loop {
            let at = self.pos;
            let rest = &data[at..];
            if rest.is_empty() {
                return Ok(None);
            }
            if let Some(p) = &self.pcap {
                // (A whole, sane record header was read by `next` already: here is the end of the
                // file, damage, or a record that does not fit.) Say which.
                if rest.len() >= 16 {
                    let l = [rest[8], rest[9], rest[10], rest[11]];
                    let incl = if self.big_endian {
                        u32::from_be_bytes(l)
                    } else {
                        u32::from_le_bytes(l)
                    };
                    if incl > MAX_RECORD {
                        return Err(capture_err(
                            &file.path,
                            at,
                            format!("record length {incl} is too large (corrupt file?)"),
                        ));
                    }
                }
                return match p.next_raw_packet(rest) {
                    Ok((rem, raw)) => {
                        if raw.incl_len > MAX_RECORD {
                            return Err(capture_err(
                                &file.path,
                                at,
                                format!(
                                    "record length {} is too large (corrupt file?)",
                                    raw.incl_len
                                ),
                            ));
                        }
                        let frac = u64::from(raw.ts_frac);
                        let ns = if self.nanos { frac } else { frac * 1000 };
                        self.pos = data.len() - rem.len();
                        let slice: &'a [u8] = &data[at + 16..self.pos];
                        Ok(Some(Record {
                            timestamp: Timestamp(u64::from(raw.ts_sec) * 1_000_000_000 + ns),
                            data: slice,
                            orig_len: raw.orig_len,
                            offset: at as u64,
                        }))
                    }
                    Err(PcapError::IncompleteBuffer) => Err(capture_err(
                        &file.path,
                        at,
                        format!(
                            "truncated record ({} bytes left, the record needs more)",
                            rest.len()
                        ),
                    )),
                    Err(e) => Err(capture_err(&file.path, at, e.to_string())),
                };
            }
            let ng = self
                .ng
                .as_mut()
                .ok_or_else(|| capture_err(&file.path, at, "no parser"))?;
            match ng.next_block(rest) {
                Ok((rem, block)) => {
                    self.pos = data.len() - rem.len();
                    match block {
                        Block::InterfaceDescription(idb) => {
                            let mut unit = TsUnit::Pow10(6);
                            for o in &idb.options {
                                if let pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption::IfTsResol(r) = o {
                                    unit = if r & 0x80 == 0 { TsUnit::Pow10(*r) } else { TsUnit::Pow2(r & 0x7f) };
                                }
                            }
                            self.ng_units.push(unit);
                        }
                        Block::EnhancedPacket(epb) => {
                            let unit = self
                                .ng_units
                                .get(epb.interface_id as usize)
                                .copied()
                                .unwrap_or(TsUnit::Pow10(6));
                            let raw = epb.timestamp.as_nanos() as u64;
                            let d = epb.data.as_ref();
                            // The block borrows `rest`; find the data's place in the file to return a long borrow.
                            let off = d.as_ptr() as usize - data.as_ptr() as usize;
                            let slice: &'a [u8] = &data[off..off + d.len()];
                            return Ok(Some(Record {
                                timestamp: Timestamp(unit.to_nanos(raw)),
                                data: slice,
                                orig_len: epb.original_len,
                                offset: at as u64,
                            }));
                        }
                        Block::SimplePacket(spb) => {
                            let d = spb.data.as_ref();
                            let off = d.as_ptr() as usize - data.as_ptr() as usize;
                            let slice: &'a [u8] = &data[off..off + d.len()];
                            return Ok(Some(Record {
                                timestamp: Timestamp(0),
                                data: slice,
                                orig_len: spb.original_len,
                                offset: at as u64,
                            }));
                        }
                        Block::SectionHeader(_) => {
                            self.ng_units.clear();
                        }
                        _ => {}
                    }
                }
                Err(PcapError::IncompleteBuffer) => {
                    return Err(capture_err(
                        &file.path,
                        at,
                        format!("truncated block ({} bytes left)", rest.len()),
                    ));
                }
                Err(e) => return Err(capture_err(&file.path, at, e.to_string())),
            }
        }
    }

    /// Skips the next record without returning it (cheaper than [`next`](Self::next) for classic pcap).
    #[inline]
    pub fn skip(&mut self, file: &CaptureFile) -> Result<bool, Error> {
        if self.pcap.is_some() {
            let data = file.bytes();
            let rest = &data[self.pos..];
            if rest.is_empty() {
                return Ok(false);
            }
            if rest.len() < 16 {
                return Err(capture_err(&file.path, self.pos, "truncated record header"));
            }
            let l = [rest[8], rest[9], rest[10], rest[11]];
            let incl = if self.big_endian {
                u32::from_be_bytes(l)
            } else {
                u32::from_le_bytes(l)
            };
            if incl > MAX_RECORD || rest.len() < 16 + incl as usize {
                // Let `next` produce the precise error.
                return self.next(file).map(|r| r.is_some());
            }
            self.pos += 16 + incl as usize;
            return Ok(true);
        }
        self.next(file).map(|r| r.is_some())
    }
}

/// An iterator over a capture's records.
pub struct Records<'a> {
    file: &'a CaptureFile,
    cursor: Option<Cursor>,
    failed: bool,
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, Error>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let c = self.cursor.as_mut()?;
        match c.next(self.file) {
            Ok(Some(r)) => Some(Ok(r)),
            Ok(None) => None,
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// A record found by a shard's scan ([`Cursor::scan_pcap`]), for the shard to copy if it is its own.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Scanned {
    /// Offset of the frame in the file.
    pub(crate) frame_at: usize,
    /// Frame length.
    pub(crate) len: u32,
    /// The capture time if `header_at` is `None`; else what to add to the time decoded from the header
    /// (the pass's offset).
    pub(crate) time: u64,
    /// Offset of the record header whose timestamp is still to be decoded.
    pub(crate) header_at: Option<usize>,
}

/// The size and alignment of [`PcapFileWriter`]'s writes: a huge page.
const WRITE_CHUNK: usize = 2 << 20;

/// A writer that hands its file only whole, aligned 2 MiB chunks (and the rest when flushed).
///
/// The page cache holds a file in folios whose size follows the writes that filled it (Linux 6.x with
/// large folios, ext4 and XFS): written in aligned 2 MiB pieces, a capture is cached in 2 MiB folios, and
/// [`FromPcap`](super::from_pcap::FromPcap)'s mapping of it then takes one page-table entry per 2 MiB
/// instead of 512. Mapping and unmapping an 800 MB capture written through 1 MiB `BufWriter` chunks took
/// ~45 ms of page-table work per run; written this way, ~12 ms.
struct ChunkedWriter<W: std::io::Write = std::fs::File> {
    file: W,
    buf: Vec<u8>,
}

impl<W: std::io::Write> ChunkedWriter<W> {
    fn new(file: W) -> Self {
        ChunkedWriter {
            file,
            buf: Vec::with_capacity(WRITE_CHUNK),
        }
    }
}

impl<W: std::io::Write> std::io::Write for ChunkedWriter<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(WRITE_CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == WRITE_CHUNK {
            self.file.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            self.file.write_all(&self.buf)?;
            self.buf.clear();
        }
        self.file.flush()
    }
}

impl<W: std::io::Write> Drop for ChunkedWriter<W> {
    fn drop(&mut self) {
        // As `BufWriter` does: what is buffered is written (an error here has no one to go to; `close`
        // reports it).
        let _ = std::io::Write::flush(self);
    }
}

/// Writes classic pcap files that `tcpdump -r` reads.
///
/// The file is written in aligned 2 MiB chunks, so that the page cache holds it in huge folios and a
/// later `FromPcap` maps it with few page-table entries.
pub struct PcapFileWriter {
    w: Option<pcap_file::pcap::PcapWriter<ChunkedWriter>>,
    path: PathBuf,
    snaplen: u32,
}

impl std::fmt::Debug for PcapFileWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcapFileWriter")
            .field("path", &self.path)
            .finish()
    }
}

impl PcapFileWriter {
    /// Creates `path` (truncating it) with link type `link` and microsecond or nanosecond timestamps.
    pub fn create(
        path: impl AsRef<Path>,
        snaplen: u32,
        nanos: bool,
        link: DataLink,
    ) -> Result<Self, Error> {
        let path = path.as_ref().to_path_buf();
        let f = std::fs::File::create(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let header = PcapHeader {
            snaplen,
            datalink: link,
            ts_resolution: if nanos {
                TsResolution::NanoSecond
            } else {
                TsResolution::MicroSecond
            },
            ..Default::default()
        };
        let w = pcap_file::pcap::PcapWriter::with_header(ChunkedWriter::new(f), header).map_err(
            |e| Error::Io {
                path: path.clone(),
                source: std::io::Error::other(e.to_string()),
            },
        )?;
        Ok(PcapFileWriter {
            w: Some(w),
            path,
            snaplen,
        })
    }

    /// Appends a packet (cut to the snap length).
    #[inline]
    pub fn write(&mut self, ts: Timestamp, data: &[u8]) -> Result<(), Error> {
        let Some(w) = self.w.as_mut() else {
            return Err(Error::Io {
                path: self.path.clone(),
                source: std::io::Error::other("writer is closed"),
            });
        };
        let cut = &data[..data.len().min(self.snaplen as usize)];
        let d = std::time::Duration::from_nanos(ts.0);
        let pkt = pcap_file::pcap::PcapPacket::new(d, data.len() as u32, cut);
        w.write_packet(&pkt).map(|_| ()).map_err(|e| Error::Io {
            path: self.path.clone(),
            source: std::io::Error::other(e.to_string()),
        })
    }

    /// Flushes what is buffered and closes the file. Later writes fail.
    pub fn close(&mut self) -> Result<(), Error> {
        use std::io::Write;
        if let Some(w) = self.w.take() {
            let mut inner = w.into_writer();
            inner.flush().map_err(|source| Error::Io {
                path: self.path.clone(),
                source,
            })?;
        }
        Ok(())
    }
}

/// What a capture's file name holds in place of the shard index: `FromPcap(x.{shard}.pcap)` reads, in
/// shard `s` of a sharded run, the file `x.s.pcap` that [`split_by_shard`] wrote.
pub const SHARD_PLACEHOLDER: &str = "{shard}";

/// Splits a capture of Ethernet frames by shard, as a NIC's RSS spreads traffic over its receive queues:
/// each frame goes, in order, to the file of the shard its flow maps to among `shards` (the symmetric RSS
/// hash of [`nf_core::flow::frame_shard`], the one a sharded `FromPcap` steers by). The files are named
/// by `pattern` with [`SHARD_PLACEHOLDER`] replaced by the shard index. Returns each file's name and
/// packet count.
///
/// A sharded run over the split files (`FromPcap(x.{shard}.pcap)`) gives every worker its own file, as
/// every core has its own receive queue behind a NIC, instead of every worker walking the whole capture
/// for its flows (see `BENCHMARKS.md`: with 64-byte frames the walk, not the processing, bounds two
/// workers over one file). This is the step `tcpprep` is to `tcpreplay`.
pub fn split_by_shard(
    input: &Path,
    shards: usize,
    pattern: &str,
) -> Result<Vec<(PathBuf, u64)>, Error> {
    if shards == 0 || !pattern.contains(SHARD_PLACEHOLDER) {
        return Err(Error::Config(format!(
            "splitting needs at least one shard and an output name holding `{SHARD_PLACEHOLDER}` (not `{pattern}`)"
        )));
    }
    let file = CaptureFile::open(input)?;
    if file.link() != LinkLayer::Ethernet {
        return Err(Error::Config(format!(
            "{}: only captures of Ethernet frames can be split by flow (this one is {:?})",
            input.display(),
            file.link()
        )));
    }
    let nanos = file.format() == Format::PcapNanos;
    let mut out = Vec::with_capacity(shards);
    for s in 0..shards {
        let path = PathBuf::from(pattern.replace(SHARD_PLACEHOLDER, &s.to_string()));
        let w = PcapFileWriter::create(&path, MAX_RECORD, nanos, DataLink::ETHERNET)?;
        out.push((w, 0u64));
    }
    let rss = nf_core::hash::toeplitz::symmetric();
    for r in file.records() {
        let r = r?;
        let s = nf_core::flow::frame_shard_by(rss, r.data, shards);
        if let Some((w, n)) = out.get_mut(s) {
            w.write(r.timestamp, r.data)?;
            *n += 1;
        }
    }
    out.into_iter()
        .map(|(mut w, n)| {
            w.close()?;
            Ok((w.path.clone(), n))
        })
        .collect()
}

impl Drop for PcapFileWriter {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Records the size of every write it is given.
    #[derive(Default)]
    struct Sizes(std::rc::Rc<std::cell::RefCell<(Vec<usize>, Vec<u8>)>>);

    impl Write for Sizes {
        fn write(&mut self, d: &[u8]) -> std::io::Result<usize> {
            let mut s = self.0.borrow_mut();
            s.0.push(d.len());
            s.1.extend_from_slice(d);
            Ok(d.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Every write but the last is a whole 2 MiB chunk (so every one starts at an aligned offset), and the
    /// bytes arrive unchanged, whatever the sizes of the writes given to it; dropping it writes the rest.
    #[test]
    fn the_file_gets_whole_aligned_chunks_and_every_byte() {
        let sizes = Sizes::default();
        let seen = sizes.0.clone();
        let mut want = Vec::new();
        {
            let mut w = ChunkedWriter::new(sizes);
            let mut n = 0u32;
            for len in (0..3000).map(|i| (i * 7919) % 9000) {
                let d: Vec<u8> = (0..len)
                    .map(|j| (n.wrapping_add(j as u32) % 251) as u8)
                    .collect();
                n = n.wrapping_add(len as u32);
                w.write_all(&d).unwrap();
                want.extend_from_slice(&d);
            }
        }
        let (writes, got) = &*seen.borrow();
        assert!(want.len() > 4 * WRITE_CHUNK);
        assert_eq!(got, &want);
        let (last, whole) = writes.split_last().unwrap();
        assert!(whole.iter().all(|&n| n == WRITE_CHUNK));
        assert!(*last > 0 && *last <= WRITE_CHUNK);
    }
}
