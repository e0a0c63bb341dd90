//! Packets: a pooled `bytes::BytesMut` frame with headroom, annotations, header access and in-place rewrites.
//!
//! A [`Packet`] owns one buffer. Its data starts `headroom` bytes into the buffer, so that an encapsulating
//! element can [`push`](Packet::push) a header in front without copying the payload, and a decapsulating one
//! can [`pull`](Packet::pull) one off. Header offsets in the [`Annotations`] are relative to the start of
//! the buffer, so they stay valid when the data start moves (Click's `Strip(14)` then `CheckIPHeader` idiom).
//!
//! Rewrites of addresses and ports ([`Packet::set_ip_src`], [`Packet::set_src_port`], ...) change the bytes
//! in place and update the IPv4 header checksum and the TCP/UDP/ICMPv6 checksum incrementally (RFC 1624).

use crate::checksum;
use crate::pool;
use crate::region_unsafe::{Lease, Region};
use crate::wire::field::{ipv4 as v4f, ipv6 as v6f, tcp as tcpf, udp as udpf};
use bytes::BytesMut;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// A point in time, in nanoseconds since the Unix epoch (the timestamp annotation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Self {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(d.as_nanos() as u64)
    }
    /// From seconds and nanoseconds.
    pub const fn from_parts(secs: u64, nanos: u32) -> Self {
        Timestamp(secs * 1_000_000_000 + nanos as u64)
    }
    /// Nanoseconds since the epoch.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }
    /// Nanoseconds from `earlier` to `self` (0 if `earlier` is later).
    pub const fn since(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
    /// `self` plus `nanos`.
    pub const fn add_nanos(self, nanos: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(nanos))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:09}",
            self.0 / 1_000_000_000,
            self.0 % 1_000_000_000
        )
    }
}

const NO_OFFSET: u16 = u16::MAX;
const HAS_FLOW_HASH: u8 = 1;

/// Per-packet metadata carried beside the bytes (Click's annotations), packed so that a whole [`Packet`]
/// is one 64-byte cache line.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Annotations {
    /// When the packet was received or generated.
    pub timestamp: Timestamp,
    flow_hash: u32,
    l3: u16,
    l4: u16,
    /// The input port or device queue the packet arrived on.
    pub input_port: u16,
    /// The paint annotation (Click's `Paint`), also used as a tag by steering elements.
    pub paint: u8,
    flags: u8,
    /// Free slots for users' elements.
    pub user: [u16; 2],
}

impl Annotations {
    /// No annotation set (what [`Default`] gives).
    const NONE: Annotations = Annotations {
        timestamp: Timestamp(0),
        flow_hash: 0,
        l3: NO_OFFSET,
        l4: NO_OFFSET,
        input_port: 0,
        paint: 0,
        flags: 0,
        user: [0; 2],
    };
}

impl Default for Annotations {
    fn default() -> Self {
        Annotations::NONE
    }
}

impl fmt::Debug for Annotations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Annotations")
            .field("timestamp", &self.timestamp)
            .field("flow_hash", &self.flow_hash())
            .field("l3_offset", &self.l3_offset())
            .field("l4_offset", &self.l4_offset())
            .field("input_port", &self.input_port)
            .field("paint", &self.paint)
            .field("user", &self.user)
            .finish()
    }
}

impl Annotations {
    /// The flow hash (symmetric Toeplitz over the five-tuple), once computed.
    #[inline]
    pub fn flow_hash(&self) -> Option<u32> {
        (self.flags & HAS_FLOW_HASH != 0).then_some(self.flow_hash)
    }
    /// Sets or clears the flow hash.
    #[inline]
    pub fn set_flow_hash(&mut self, h: Option<u32>) {
        match h {
            Some(v) => {
                self.flow_hash = v;
                self.flags |= HAS_FLOW_HASH;
            }
            None => self.flags &= !HAS_FLOW_HASH,
        }
    }
    /// Offset of the network (IP) header from the start of the buffer, once known.
    #[inline]
    pub fn l3_offset(&self) -> Option<u16> {
        (self.l3 != NO_OFFSET).then_some(self.l3)
    }
    /// Sets or clears the network-header offset (offsets of 65535 and more cannot be recorded).
    #[inline]
    pub fn set_l3_offset(&mut self, o: Option<u16>) {
        self.l3 = o.unwrap_or(NO_OFFSET);
    }
    /// Offset of the transport header from the start of the buffer, once known.
    #[inline]
    pub fn l4_offset(&self) -> Option<u16> {
        (self.l4 != NO_OFFSET).then_some(self.l4)
    }
    /// Sets or clears the transport-header offset.
    #[inline]
    pub fn set_l4_offset(&mut self, o: Option<u16>) {
        self.l4 = o.unwrap_or(NO_OFFSET);
    }
}

/// What can go wrong when reading or changing a packet's headers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PacketError {
    /// The packet is shorter than the operation needs.
    #[error("packet too short: need {need} bytes, have {have}")]
    TooShort {
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// The headers do not parse (the cause, typed: building the error allocates nothing, so that a flood of
    /// malformed packets costs no allocation).
    #[error("malformed headers: {0}")]
    Malformed(Malformed),
    /// The packet is not IP (e.g. ARP), or has no transport header where one is needed.
    #[error("not applicable: {0}")]
    NotApplicable(&'static str),
    /// An IPv4 address given for an IPv6 packet or the other way round.
    #[error("address family does not match the packet")]
    FamilyMismatch,
}

/// Why a packet's headers do not parse: the layer and, for a short packet, the lengths (`etherparse`'s
/// account, kept compact), or a field of ours. Plain data, 24 bytes with its tag, no `String`: a
/// malformed packet is dropped on the packet path, which must not allocate, and every `Result` the packet
/// path returns carries this error's size (`etherparse`'s own errors, 32 bytes each, cost conntrack 9
/// instructions a packet; the `String` this replaced allocated on every malformed packet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Malformed {
    /// Shorter than a header (or what its length fields announce) needs.
    #[error("{layer} needs {need} bytes, has {have}")]
    Truncated {
        /// The header.
        layer: crate::wire::Layer,
        /// Bytes needed.
        need: u32,
        /// Bytes present.
        have: u32,
    },
    /// A header whose contents do not parse (a version, a header length, an extension header, ...).
    #[error("bad {0}")]
    Header(crate::wire::Layer),
    /// An IP header whose version is neither 4 nor 6.
    #[error("IP version {0}")]
    IpVersion(u8),
    /// A field that makes no sense (which one).
    #[error("{0}")]
    Field(&'static str),
    /// A tag too large for the header that carries it.
    #[error("tag {tag} does not fit (at most {max})")]
    Tag {
        /// The tag.
        tag: u16,
        /// The carrier's largest.
        max: u16,
    },
}

impl From<etherparse::err::LenError> for Malformed {
    fn from(e: etherparse::err::LenError) -> Self {
        Malformed::Truncated {
            layer: e.layer.into(),
            need: e.required_len.try_into().unwrap_or(u32::MAX),
            have: e.len.try_into().unwrap_or(u32::MAX),
        }
    }
}

impl From<etherparse::err::packet::SliceError> for Malformed {
    fn from(e: etherparse::err::packet::SliceError) -> Self {
        use crate::wire::Layer;
        use etherparse::err::packet::SliceError as E;
        match e {
            E::Len(l) => l.into(),
            E::LinuxSll(_) | E::Macsec(_) => Malformed::Header(Layer::Ethernet),
            E::Ip(_) => Malformed::Header(Layer::Ip),
            E::Ipv4(_) => Malformed::Header(Layer::Ipv4),
            E::Ipv6(_) => Malformed::Header(Layer::Ipv6),
            E::Ipv4Exts(_) | E::Ipv6Exts(_) => Malformed::Header(Layer::IpExtension),
            E::Tcp(_) => Malformed::Header(Layer::Tcp),
        }
    }
}

impl From<etherparse::err::ipv4::HeaderSliceError> for Malformed {
    fn from(e: etherparse::err::ipv4::HeaderSliceError) -> Self {
        match e {
            etherparse::err::ipv4::HeaderSliceError::Len(l) => l.into(),
            etherparse::err::ipv4::HeaderSliceError::Content(_) => {
                Malformed::Header(crate::wire::Layer::Ipv4)
            }
        }
    }
}

impl From<etherparse::err::ipv6::SliceError> for Malformed {
    fn from(e: etherparse::err::ipv6::SliceError) -> Self {
        use etherparse::err::ipv6::SliceError as E;
        match e {
            E::Len(l) => l.into(),
            E::Header(_) => Malformed::Header(crate::wire::Layer::Ipv6),
            E::Exts(_) => Malformed::Header(crate::wire::Layer::IpExtension),
        }
    }
}

impl<E: Into<Malformed>> From<E> for PacketError {
    fn from(e: E) -> Self {
        PacketError::Malformed(e.into())
    }
}

/// IP version of a located packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpVersion {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// Where a packet's IP and transport headers are (offsets from the start of the buffer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderInfo {
    /// IP version.
    pub version: IpVersion,
    /// Offset of the IP header.
    pub l3: usize,
    /// Offset of the transport header, if this is the first (or only) fragment and it is present.
    pub l4: Option<usize>,
    /// The transport protocol number (after IPv6 extension headers).
    pub proto: u8,
    /// True for a non-first fragment or a fragment at all (no complete transport header follows).
    pub fragment: bool,
}

/// The link layer at which a packet's data starts, for [`Packet::locate`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Link {
    /// Ethernet II (optionally with 802.1Q/802.1ad tags).
    #[default]
    Ethernet,
    /// Raw IP (v4 or v6, told by the version nibble).
    Ip,
}

/// IANA protocol numbers (the wire layer's [`ip_proto`](crate::wire::ip_proto), by its older name).
pub use crate::wire::ip_proto as proto;

/// A network packet: a frame with headroom and annotations (64 bytes: one cache line), in a pooled buffer of
/// its own or borrowed from a shared [`Region`] (zero copy).
///
/// An owned packet's buffer is a `BytesMut` whose every byte is initialised (its length is its capacity);
/// the packet's data is `buffer[head..tail]`. Filling it is one copy, with no length bookkeeping in the
/// buffer. A borrowed packet's buffer is the bytes of its region from its frame's headroom to the end of its
/// data ([`Packet::borrowed`]): reading it is reading the region (a mapped capture, a ring block), and the
/// first write of any kind copies the buffer into a pooled one at the same offsets (copy-on-write), so that
/// header offsets the caller holds stay valid ([`Packet::is_borrowed`]; the copies are counted in
/// [`pool::PoolStats::unshared`]).
pub struct Packet {
    buf: Storage,
    head: u32,
    tail: u32,
    /// The packet's annotations.
    pub anno: Annotations,
}

/// Where a packet's bytes are: 32 bytes, as the `Option<BytesMut>` it replaced (the borrowed variant fits
/// beside the pooled buffer's non-null pointer, which tells the two apart).
enum Storage {
    /// A pooled buffer (an empty `BytesMut`, which owns no memory, once it was given back).
    Pooled(BytesMut),
    /// The bytes of a shared region: the buffer is the lease's bytes (headroom and data as the packet was
    /// made; the data may have shrunk since).
    Borrowed(Lease),
}

const _: () = assert!(std::mem::size_of::<Packet>() == 64);

impl Drop for Packet {
    #[inline]
    fn drop(&mut self) {
        if let Storage::Pooled(b) = &mut self.buf
            && b.capacity() != 0
        {
            pool::give(std::mem::take(b));
        }
    }
}

impl fmt::Debug for Packet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Packet")
            .field("len", &self.len())
            .field("headroom", &self.head)
            .field("anno", &self.anno)
            .finish()
    }
}

impl Clone for Packet {
    /// A copy of the data (with the same headroom) and annotations in a pooled buffer.
    /// A borrowed packet's clone borrows the same bytes (no copy; each copies on its own first write).
    fn clone(&self) -> Self {
        if let Storage::Borrowed(l) = &self.buf {
            return Packet {
                buf: Storage::Borrowed(l.clone()),
                head: self.head,
                tail: self.tail,
                anno: self.anno,
            };
        }
        let mut p = Packet::with_headroom(self.head as usize, self.data());
        p.anno = self.anno;
        if p.head != self.head {
            let delta = p.head as isize - self.head as isize;
            p.shift_offsets(delta);
        }
        p
    }
}

/// Copies `src` into `dst` (equal lengths) with fixed-size moves that the compiler inlines: faster than
/// a `memcpy` call for the small frames that dominate packet traffic. A length between two sizes is
/// covered by two overlapping moves of the smaller size (the first and the last `k` bytes).
#[inline(always)]
fn copy_small(dst: &mut [u8], src: &[u8]) {
    let n = src.len().min(dst.len());
    let (dst, src) = (&mut dst[..n], &src[..n]);
    #[inline(always)]
    fn two<const K: usize>(dst: &mut [u8], src: &[u8]) {
        let n = src.len();
        dst[..K].copy_from_slice(&src[..K]);
        dst[n - K..].copy_from_slice(&src[n - K..]);
    }
    // Minimum-size frames (60 or 64 bytes) first: they are the commonest and the costliest per byte.
    if (32..=64).contains(&n) {
        two::<32>(dst, src);
    } else if (65..=128).contains(&n) {
        two::<64>(dst, src);
    } else if n > 128 {
        dst.copy_from_slice(src);
    } else if n >= 16 {
        two::<16>(dst, src);
    } else if n >= 8 {
        two::<8>(dst, src);
    } else if n >= 4 {
        two::<4>(dst, src);
    } else if n > 0 {
        // First, middle and last byte (some the same): no loop, no call.
        dst[0] = src[0];
        dst[n / 2] = src[n / 2];
        dst[n - 1] = src[n - 1];
    }
}

impl Packet {
    #[inline]
    fn from_buffer(mut buf: BytesMut, head: usize, data: &[u8]) -> Packet {
        let tail = head + data.len();
        copy_small(&mut buf[head..tail], data);
        Packet {
            buf: Storage::Pooled(buf),
            head: head as u32,
            tail: tail as u32,
            anno: Annotations::default(),
        }
    }

    /// A packet whose data is `region.bytes()[frame]`, borrowed (no copy), with the up to `headroom` bytes
    /// of the region before it as headroom (what they hold is not the packet's: headroom is free space, and
    /// writing into it, as any write, first copies the packet). `None` if `frame` is not within the region.
    ///
    /// Holding the packet holds the region: it is released when its last packet (and its source) let go.
    #[inline]
    pub fn borrowed(
        region: &Arc<Region>,
        frame: std::ops::Range<usize>,
        headroom: usize,
    ) -> Option<Packet> {
        let mut p = Packet::shell();
        p.borrow_in(region, frame, headroom)?;
        Some(p)
    }

    /// Makes this packet (a shell, or one a pool kept) a borrowed view of `region.bytes()[frame]` (see
    /// [`Packet::borrowed`]) with fresh annotations, and hands back the pooled buffer it held (`Some(None)`
    /// when it held none); `None` (and the packet unchanged) if `frame` is not within the region or longer
    /// than a packet can be.
    #[inline(always)]
    pub(crate) fn borrow_in(
        &mut self,
        region: &Arc<Region>,
        frame: std::ops::Range<usize>,
        headroom: usize,
    ) -> Option<Option<BytesMut>> {
        let head = headroom.min(frame.start).min(u16::MAX as usize / 2);
        let len = frame.end.checked_sub(frame.start)?;
        if len > u32::MAX as usize / 2 {
            return None;
        }
        let lease = Lease::new(region, frame.start - head, head + len)?;
        let old = std::mem::replace(&mut self.buf, Storage::Borrowed(lease));
        self.head = head as u32;
        self.tail = (head + len) as u32;
        self.anno = Annotations::NONE;
        Some(match old {
            Storage::Pooled(b) if b.capacity() != 0 => Some(b),
            _ => None,
        })
    }

    /// Whether the packet's bytes are borrowed from a shared [`Region`] (not yet copied by a write).
    #[inline]
    pub fn is_borrowed(&self) -> bool {
        matches!(self.buf, Storage::Borrowed(..))
    }

    /// The buffer: a pooled packet's whole buffer, a borrowed packet's leased bytes (its headroom and data
    /// as it was made; writing past the data, as any write, copies it first).
    #[inline(always)]
    fn raw(&self) -> &[u8] {
        match &self.buf {
            Storage::Pooled(b) => b,
            Storage::Borrowed(l) => l.bytes(),
        }
    }

    /// The buffer, writable: a borrowed packet is copied first (see [`Packet::unshare`]).
    #[inline(always)]
    fn raw_mut(&mut self) -> &mut [u8] {
        if self.is_borrowed() {
            self.unshare();
        }
        match &mut self.buf {
            Storage::Pooled(b) => b,
            Storage::Borrowed(..) => &mut [],
        }
    }

    /// Copies a borrowed packet's data into a pooled buffer at the same offsets (headroom, header offsets
    /// and the offsets a caller's [`HeaderInfo`] holds all stay valid); nothing for an owned packet.
    #[cold]
    #[inline(never)]
    pub fn unshare(&mut self) {
        if !self.is_borrowed() {
            return;
        }
        let (head, tail) = (self.head as usize, self.tail as usize);
        let mut nb = pool::take_unsharing(tail);
        copy_small(&mut nb[head..tail], self.data());
        self.buf = Storage::Pooled(nb);
    }

    /// A packet holding a copy of `data`, with [`pool::DEFAULT_HEADROOM`] bytes of headroom, in a pooled buffer.
    #[inline]
    pub fn from_slice(data: &[u8]) -> Packet {
        let buf = pool::take(pool::DEFAULT_HEADROOM + data.len());
        Packet::from_buffer(buf, pool::DEFAULT_HEADROOM, data)
    }

    /// As [`from_slice`](Self::from_slice), taking the buffer from a pool borrowed for a whole batch
    /// ([`pool::with_local`]).
    #[inline]
    pub fn from_slice_in(pool: &mut pool::LocalPool<'_>, data: &[u8]) -> Packet {
        let buf = pool.take(pool::DEFAULT_HEADROOM + data.len());
        Packet::from_buffer(buf, pool::DEFAULT_HEADROOM, data)
    }

    /// A packet with no buffer (a placeholder that is filled in place: see [`Packet::fill_in`]).
    #[inline(always)]
    pub(crate) fn shell() -> Packet {
        Packet {
            buf: Storage::Pooled(BytesMut::new()),
            head: 0,
            tail: 0,
            anno: Annotations::NONE,
        }
    }

    /// Makes a shell ([`Packet::SHELL`], or a packet the pool kept whole) a copy of `data`, with its timestamp and, if known, its
    /// network-header offset from the start of `data`, field by field where it lies (see
    /// [`crate::Batch::push_copy`]).
    #[inline(always)]
    pub(crate) fn fill_in(
        &mut self,
        pool: &mut pool::LocalPool<'_>,
        data: &[u8],
        timestamp: Timestamp,
        l3: Option<usize>,
    ) {
        let head = pool::DEFAULT_HEADROOM;
        let tail = head + data.len();
        if !matches!(&self.buf, Storage::Pooled(b) if b.len() >= tail) {
            // A shell, a borrowed packet, or a kept packet whose buffer is too small: a fitting buffer in,
            // the old one back.
            if let Storage::Pooled(old) =
                std::mem::replace(&mut self.buf, Storage::Pooled(pool.take(tail)))
                && old.capacity() != 0
            {
                pool.give(old);
            }
        }
        if let Storage::Pooled(b) = &mut self.buf {
            copy_small(&mut b[head..tail], data);
        }
        self.head = head as u32;
        self.tail = tail as u32;
        self.anno = Annotations {
            timestamp,
            l3: l3
                .and_then(|o| u16::try_from(head + o).ok())
                .unwrap_or(NO_OFFSET),
            ..Annotations::NONE
        };
    }

    /// Whether the pool can keep this packet whole: its buffer is a whole buffer of a pooled size.
    #[inline(always)]
    pub(crate) fn poolable(&self) -> bool {
        matches!(&self.buf, Storage::Pooled(b)
            if (pool::BUFFER_SIZE..=2 * pool::BUFFER_SIZE).contains(&b.capacity())
                && b.len() == b.capacity())
    }

    /// Takes a pooled buffer out, or lets go of a borrowed region (the packet is an empty shell after).
    #[inline(always)]
    pub(crate) fn take_buffer(&mut self) -> Option<BytesMut> {
        match std::mem::replace(&mut self.buf, Storage::Pooled(BytesMut::new())) {
            Storage::Pooled(b) if b.capacity() != 0 => Some(b),
            _ => None,
        }
    }

    /// Gives the packet's buffer to a pool borrowed for a whole batch (what dropping does, cheaper).
    #[inline]
    pub fn release_in(mut self, pool: &mut pool::LocalPool<'_>) {
        if let Some(b) = self.take_buffer() {
            pool.give(b);
        }
    }

    /// A packet holding a copy of `data` with at least `headroom` bytes in front of it.
    pub fn with_headroom(headroom: usize, data: &[u8]) -> Packet {
        let buf = pool::take(headroom + data.len());
        Packet::from_buffer(buf, headroom, data)
    }

    /// A packet of `len` zero bytes.
    pub fn zeroed(len: usize) -> Packet {
        let mut p = Packet::from_slice(&[]);
        p.put(len);
        p
    }

    /// Wraps an existing buffer whose data is `buf[headroom..]` (the headroom is clamped to the length).
    pub fn from_bytes_mut(mut buf: BytesMut, headroom: usize) -> Packet {
        let tail = buf.len();
        let head = headroom.min(tail);
        let cap = buf.capacity();
        buf.resize(cap, 0);
        Packet {
            buf: Storage::Pooled(buf),
            head: head as u32,
            tail: tail as u32,
            anno: Annotations::default(),
        }
    }

    /// The packet's bytes.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.raw()[self.head as usize..self.tail as usize]
    }

    /// The packet's bytes, writable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let (h, t) = (self.head as usize, self.tail as usize);
        &mut self.raw_mut()[h..t]
    }

    /// Length of the data.
    #[inline]
    pub fn len(&self) -> usize {
        (self.tail - self.head) as usize
    }

    /// True if the packet holds no data.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.tail == self.head
    }

    /// Bytes free in front of the data.
    #[inline]
    pub fn headroom(&self) -> usize {
        self.head as usize
    }

    /// Bytes free after the data without reallocating.
    #[inline]
    pub fn tailroom(&self) -> usize {
        self.raw().len() - self.tail as usize
    }

    /// The buffer up to the end of the data: headroom and data. Header offsets in the annotations index
    /// into it.
    #[inline]
    pub fn buffer(&self) -> &[u8] {
        &self.raw()[..self.tail as usize]
    }

    /// The buffer up to the end of the data, writable.
    #[inline]
    pub fn buffer_mut(&mut self) -> &mut [u8] {
        let t = self.tail as usize;
        &mut self.raw_mut()[..t]
    }

    /// Offset of the data start in the buffer (equal to [`headroom`](Self::headroom)).
    #[inline]
    pub fn data_offset(&self) -> usize {
        self.head as usize
    }

    fn shift_offsets(&mut self, delta: isize) {
        let shift = |o: Option<u16>| o.and_then(|v| u16::try_from(v as isize + delta).ok());
        let (l3, l4) = (shift(self.anno.l3_offset()), shift(self.anno.l4_offset()));
        self.anno.set_l3_offset(l3);
        self.anno.set_l4_offset(l4);
    }

    /// Moves the data into a new buffer with `front` bytes of headroom and room for `back` more bytes.
    fn reallocate(&mut self, front: usize, back: usize) {
        let len = self.len();
        let mut nb = if self.is_borrowed() {
            pool::take_unsharing(front + len + back)
        } else {
            pool::take(front + len + back)
        };
        copy_small(&mut nb[front..front + len], self.data());
        let delta = front as isize - self.head as isize;
        if let Storage::Pooled(old) = std::mem::replace(&mut self.buf, Storage::Pooled(nb))
            && old.capacity() != 0
        {
            pool::give(old);
        }
        self.head = front as u32;
        self.tail = (front + len) as u32;
        self.shift_offsets(delta);
    }

    /// Adds `n` bytes in front of the data and returns them for writing (Click's `push`).
    ///
    /// Uses the headroom when there is enough (no copy); otherwise moves the data into a larger buffer
    /// (one copy) keeping [`pool::DEFAULT_HEADROOM`] free in front.
    pub fn push(&mut self, n: usize) -> &mut [u8] {
        if n > self.head as usize {
            self.reallocate(pool::DEFAULT_HEADROOM + n, 0);
        }
        self.head -= n as u32;
        let h = self.head as usize;
        &mut self.raw_mut()[h..h + n]
    }

    /// Removes `n` bytes from the front of the data (Click's `pull`); they become headroom.
    #[inline]
    pub fn pull(&mut self, n: usize) -> Result<(), PacketError> {
        if n > self.len() {
            return Err(PacketError::TooShort {
                need: n,
                have: self.len(),
            });
        }
        self.head += n as u32;
        Ok(())
    }

    /// Moves the data start `n` bytes back into the headroom, keeping the bytes there (what `Strip` took
    /// off reappears); writes nothing, so a borrowed packet stays borrowed. Fails if the headroom is short.
    #[inline]
    pub fn unpull(&mut self, n: usize) -> Result<(), PacketError> {
        if n > self.head as usize {
            return Err(PacketError::TooShort {
                need: n,
                have: self.head as usize,
            });
        }
        self.head -= n as u32;
        Ok(())
    }

    /// Adds `n` zero bytes at the end of the data and returns them for writing (Click's `put`).
    pub fn put(&mut self, n: usize) -> &mut [u8] {
        if self.tailroom() < n {
            let front = self.head as usize;
            self.reallocate(front, n);
        }
        let old = self.tail as usize;
        self.tail += n as u32;
        let t = &mut self.raw_mut()[old..old + n];
        t.fill(0);
        t
    }

    /// Removes `n` bytes from the end of the data (Click's `take`).
    pub fn take(&mut self, n: usize) -> Result<(), PacketError> {
        if n > self.len() {
            return Err(PacketError::TooShort {
                need: n,
                have: self.len(),
            });
        }
        self.tail -= n as u32;
        Ok(())
    }

    /// Cuts the data to at most `len` bytes.
    #[inline]
    pub fn truncate(&mut self, len: usize) {
        if len < self.len() {
            self.tail = self.head + len as u32;
        }
    }

    /// Gives up the packet's buffer (cut at the end of the data) and the offset of its data. The buffer
    /// does not return to the pool.
    pub fn into_parts(mut self) -> (BytesMut, usize) {
        self.unshare();
        let mut buf = self.take_buffer().unwrap_or_default();
        buf.truncate(self.tail as usize);
        (buf, self.head as usize)
    }

    /// Parses the headers from the data start with `etherparse` (borrowed slices; nothing is copied).
    pub fn sliced(&self, link: Link) -> Result<etherparse::SlicedPacket<'_>, PacketError> {
        let r = match link {
            Link::Ethernet => etherparse::SlicedPacket::from_ethernet(self.data()),
            Link::Ip => etherparse::SlicedPacket::from_ip(self.data()),
        };
        r.map_err(PacketError::from)
    }

    /// Finds the IP and transport headers and records their offsets in the annotations.
    ///
    /// When the network-header annotation is already set (by `CheckIPHeader`, say) it is trusted and the
    /// link layer is not parsed again. Handles 802.1Q/802.1ad tags and IPv6 extension headers.
    pub fn locate(&mut self, link: Link) -> Result<HeaderInfo, PacketError> {
        let head = self.head as usize;
        let l3 = match self.anno.l3_offset() {
            Some(o) => usize::from(o),
            None => match link {
                Link::Ip => head,
                Link::Ethernet => head + ethernet_payload_offset(self.data())?,
            },
        };
        let info = locate_ip(self.buffer(), l3)?;
        self.anno.set_l3_offset(u16::try_from(info.l3).ok());
        self.anno
            .set_l4_offset(info.l4.and_then(|o| u16::try_from(o).ok()));
        Ok(info)
    }

    /// [`locate`](Self::locate) and [`FlowKey::from_headers`](crate::FlowKey::from_headers) in one: the
    /// headers and the five-tuple (`None` when the headers hold none, e.g. a truncated transport header).
    ///
    /// The common case (IPv4 without options, not a fragment, TCP or UDP, in an untagged Ethernet frame or
    /// raw) reads every field from one fixed-size view of the IP header and the ports; the same result as
    /// the two calls, which the rest goes through.
    #[inline(always)]
    pub fn locate_key(
        &mut self,
        link: Link,
    ) -> Result<(HeaderInfo, Option<crate::FlowKey>), PacketError> {
        let head = self.head as usize;
        let l3 = match self.anno.l3_offset() {
            Some(o) => Some(usize::from(o)),
            None => match link {
                Link::Ip => Some(head),
                Link::Ethernet => match self.data().get(12..14) {
                    Some(t) if t == IPV4_TYPE => Some(head + 14),
                    _ => None,
                },
            },
        };
        if let Some(l3) = l3 {
            let buf = self.buffer();
            let avail = buf.len().saturating_sub(l3);
            if let Some(ip) = buf
                .get(l3..l3 + 24)
                .and_then(|s| <&[u8; 24]>::try_from(s).ok())
            {
                // An IPv4 header without options and the first 4 bytes of TCP's or UDP's (the
                // ports, at the same offsets in both), as views of the 24 bytes checked above.
                let (ip, ports) = ip.split_at(20);
                let ip = crate::wire::Ipv4Packet::new_unchecked(ip);
                let ports = crate::wire::UdpDatagram::new_unchecked(ports);
                let total = usize::from(ip.total_len());
                let proto = ip.protocol();
                let min = if proto == proto::TCP { 40 } else { 28 };
                if ip.as_slice()[v4f::VER_IHL] == 0x45
                    && (proto == proto::TCP || proto == proto::UDP)
                    && !ip.is_fragment()
                    && (min..=avail).contains(&total)
                {
                    let key = crate::FlowKey::v4_octets(
                        proto,
                        ip.src_addr().octets(),
                        ports.src_port(),
                        ip.dst_addr().octets(),
                        ports.dst_port(),
                    );
                    let info = HeaderInfo {
                        version: IpVersion::V4,
                        l3,
                        l4: Some(l3 + 20),
                        proto,
                        fragment: false,
                    };
                    self.anno.set_l3_offset(u16::try_from(l3).ok());
                    self.anno.set_l4_offset(u16::try_from(l3 + 20).ok());
                    return Ok((info, Some(key)));
                }
            }
        }
        let h = self.locate(link)?;
        Ok((h, crate::FlowKey::from_headers(self.buffer(), &h)))
    }

    /// The IP header and what follows, if [`locate`](Self::locate) (or `CheckIPHeader`) found it.
    pub fn network_header(&self) -> Option<&[u8]> {
        self.anno
            .l3_offset()
            .and_then(|o| self.buffer().get(usize::from(o)..))
    }

    /// The transport header and what follows, if known.
    pub fn transport_header(&self) -> Option<&[u8]> {
        self.anno
            .l4_offset()
            .and_then(|o| self.buffer().get(usize::from(o)..))
    }

    /// The TCP flag bits of a packet whose headers `h` located, if it is TCP with its header present
    /// ([`tcp_flags`](crate::wire::tcp_flags) names the bits).
    #[inline(always)]
    pub fn tcp_flags(&self, h: &HeaderInfo) -> Option<u8> {
        match (h.proto, h.l4) {
            (proto::TCP, Some(l4)) => self.buffer().get(l4 + tcpf::FLAGS).copied(),
            _ => None,
        }
    }

    /// Rewrites the source IP address in place, updating checksums incrementally.
    pub fn set_ip_src(&mut self, h: &HeaderInfo, addr: IpAddr) -> Result<(), PacketError> {
        self.set_addr(h, addr, true)
    }

    /// Rewrites the destination IP address in place, updating checksums incrementally.
    pub fn set_ip_dst(&mut self, h: &HeaderInfo, addr: IpAddr) -> Result<(), PacketError> {
        self.set_addr(h, addr, false)
    }

    fn set_addr(&mut self, h: &HeaderInfo, addr: IpAddr, src: bool) -> Result<(), PacketError> {
        let mut new = [0u8; 16];
        let (off, n) = match (h.version, addr) {
            (IpVersion::V4, IpAddr::V4(a)) => {
                new[..4].copy_from_slice(&a.octets());
                (h.l3 + if src { v4f::SRC_ADDR } else { v4f::DST_ADDR }, 4)
            }
            (IpVersion::V6, IpAddr::V6(a)) => {
                new.copy_from_slice(&a.octets());
                (h.l3 + if src { v6f::SRC_ADDR } else { v6f::DST_ADDR }, 16)
            }
            _ => return Err(PacketError::FamilyMismatch),
        };
        self.need(off + n)?;
        let mut old = [0u8; 16];
        old[..n].copy_from_slice(&self.raw()[off..off + n]);
        self.raw_mut()[off..off + n].copy_from_slice(&new[..n]);
        if h.version == IpVersion::V4 {
            let c = self.read16(h.l3 + v4f::CHECKSUM);
            self.write16(
                h.l3 + v4f::CHECKSUM,
                checksum::update_bytes(c, &old[..n], &new[..n]),
            );
        }
        self.update_l4_pseudo(h, &old[..n], &new[..n])
    }

    /// Rewrites the source address and port together (SNAT, a reply's VIP restored): one incremental update
    /// of the transport checksum for both instead of two. TCP and UDP only.
    pub fn set_src_endpoint(
        &mut self,
        h: &HeaderInfo,
        to: std::net::SocketAddr,
    ) -> Result<(), PacketError> {
        self.set_endpoint(h, to, true)
    }

    /// Rewrites the destination address and port together (DNAT), with one transport-checksum update.
    pub fn set_dst_endpoint(
        &mut self,
        h: &HeaderInfo,
        to: std::net::SocketAddr,
    ) -> Result<(), PacketError> {
        self.set_endpoint(h, to, false)
    }

    fn set_endpoint(
        &mut self,
        h: &HeaderInfo,
        to: std::net::SocketAddr,
        src: bool,
    ) -> Result<(), PacketError> {
        let l4 =
            h.l4.ok_or(PacketError::NotApplicable("no transport header"))?;
        if h.proto != proto::TCP && h.proto != proto::UDP {
            return Err(PacketError::NotApplicable(
                "ports exist only in TCP and UDP",
            ));
        }
        if let (IpVersion::V4, IpAddr::V4(a)) = (h.version, to.ip())
            && l4 >= h.l3 + 20
        {
            return self.set_endpoint_v4(h.l3, l4, h.proto, u32::from(a), to.port(), src);
        }
        // Old and new address and port, as one run of 16-bit words: [address][port].
        let mut new = [0u8; 18];
        let (off, n) = match (h.version, to.ip()) {
            (IpVersion::V4, IpAddr::V4(a)) => {
                new[..4].copy_from_slice(&a.octets());
                (h.l3 + if src { v4f::SRC_ADDR } else { v4f::DST_ADDR }, 4)
            }
            (IpVersion::V6, IpAddr::V6(a)) => {
                new[..16].copy_from_slice(&a.octets());
                (h.l3 + if src { v6f::SRC_ADDR } else { v6f::DST_ADDR }, 16)
            }
            _ => return Err(PacketError::FamilyMismatch),
        };
        let po = l4 + if src { tcpf::SRC_PORT } else { tcpf::DST_PORT };
        self.need((off + n).max(po + 2))?;
        new[n..n + 2].copy_from_slice(&to.port().to_be_bytes());
        let mut old = [0u8; 18];
        old[..n].copy_from_slice(&self.raw()[off..off + n]);
        old[n..n + 2].copy_from_slice(&self.raw()[po..po + 2]);
        self.raw_mut()[off..off + n].copy_from_slice(&new[..n]);
        self.raw_mut()[po..po + 2].copy_from_slice(&new[n..n + 2]);
        if h.version == IpVersion::V4 {
            let c = self.read16(h.l3 + v4f::CHECKSUM);
            self.write16(
                h.l3 + v4f::CHECKSUM,
                checksum::update_bytes(c, &old[..n], &new[..n]),
            );
        }
        self.update_l4_pseudo(h, &old[..n + 2], &new[..n + 2])
    }

    /// [`set_endpoint`](Self::set_endpoint) for IPv4: fixed-width words instead of byte runs (the NAT
    /// and load-balancer hot path).
    #[inline]
    fn set_endpoint_v4(
        &mut self,
        l3: usize,
        l4: usize,
        proto: u8,
        addr: u32,
        port: u16,
        src: bool,
    ) -> Result<(), PacketError> {
        let (head, tail) = (self.head as usize, self.tail as usize);
        let short = |need: usize| PacketError::TooShort {
            need: need.saturating_sub(head),
            have: tail.saturating_sub(head),
        };
        // The IP header and the transport header borrowed once each, as fixed-size views (the caller
        // checked that the transport header starts after the 20 bytes): no further bounds checks.
        let (front, t) = self.raw_mut()[..tail].split_at_mut(l4.min(tail));
        let ip: &mut [u8; 20] = front
            .get_mut(l3..l3 + 20)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| short(l3 + 20))?;
        let ports: &mut [u8; 4] = t
            .get_mut(..4)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| short(l4 + 4))?;
        let mut ip = crate::wire::Ipv4Packet::new_unchecked(ip);
        let old_addr = ip.addr_word(src);
        ip.set_addr_word(src, addr);
        let d_addr = checksum::delta32(old_addr, addr);
        ip.set_checksum(checksum::apply(ip.checksum(), d_addr));
        // TCP's and UDP's ports sit at the same offsets.
        let mut ports = crate::wire::UdpDatagram::new_unchecked(ports);
        let old_port = ports.port(src);
        ports.set_port(src, port);
        let co = if proto == proto::TCP {
            tcpf::CHECKSUM
        } else {
            udpf::CHECKSUM
        };
        if let Some(c) = t.get_mut(co..co + 2) {
            let old_c = u16::from_be_bytes([c[0], c[1]]);
            if proto == proto::UDP && old_c == 0 {
                return Ok(()); // IPv4 UDP without a checksum stays without one.
            }
            let d = d_addr + u32::from(!old_port) + u32::from(port);
            let mut v = checksum::apply(old_c, d);
            if proto == proto::UDP && v == 0 {
                v = 0xffff;
            }
            c.copy_from_slice(&v.to_be_bytes());
        }
        Ok(())
    }

    /// Rewrites the transport source port (TCP or UDP) in place, updating the checksum incrementally.
    pub fn set_src_port(&mut self, h: &HeaderInfo, port: u16) -> Result<(), PacketError> {
        self.set_port(h, port, tcpf::SRC_PORT)
    }

    /// Rewrites the transport destination port (TCP or UDP) in place, updating the checksum incrementally.
    pub fn set_dst_port(&mut self, h: &HeaderInfo, port: u16) -> Result<(), PacketError> {
        self.set_port(h, port, tcpf::DST_PORT)
    }

    fn set_port(&mut self, h: &HeaderInfo, port: u16, at: usize) -> Result<(), PacketError> {
        let l4 =
            h.l4.ok_or(PacketError::NotApplicable("no transport header"))?;
        if h.proto != proto::TCP && h.proto != proto::UDP {
            return Err(PacketError::NotApplicable(
                "ports exist only in TCP and UDP",
            ));
        }
        self.need(l4 + 4)?;
        let old = self.read16(l4 + at);
        self.write16(l4 + at, port);
        if let Some(co) = self.l4_checksum_offset(h) {
            let c = self.read16(co);
            if !(h.proto == proto::UDP && c == 0 && h.version == IpVersion::V4) {
                let mut v = checksum::update16(c, old, port);
                if h.proto == proto::UDP && v == 0 {
                    v = 0xffff;
                }
                self.write16(co, v);
            }
        }
        Ok(())
    }

    fn l4_checksum_offset(&self, h: &HeaderInfo) -> Option<usize> {
        let l4 = h.l4?;
        let co = match h.proto {
            proto::TCP => l4 + tcpf::CHECKSUM,
            proto::UDP => l4 + udpf::CHECKSUM,
            proto::ICMPV6 => l4 + crate::wire::field::icmp::CHECKSUM,
            _ => return None,
        };
        (co + 2 <= self.tail as usize).then_some(co)
    }

    fn update_l4_pseudo(
        &mut self,
        h: &HeaderInfo,
        old: &[u8],
        new: &[u8],
    ) -> Result<(), PacketError> {
        if let Some(co) = self.l4_checksum_offset(h) {
            let c = self.read16(co);
            if h.proto == proto::UDP && c == 0 && h.version == IpVersion::V4 {
                return Ok(()); // IPv4 UDP without a checksum stays without one.
            }
            let mut v = checksum::update_bytes(c, old, new);
            if h.proto == proto::UDP && v == 0 {
                v = 0xffff;
            }
            self.write16(co, v);
        }
        Ok(())
    }

    /// Decrements the IPv4 TTL or IPv6 hop limit in place (IPv4 checksum updated incrementally).
    /// Returns the new value; a packet whose TTL is already 0 is left as is.
    pub fn dec_ttl(&mut self, h: &HeaderInfo) -> Result<u8, PacketError> {
        match h.version {
            IpVersion::V4 => {
                self.need(h.l3 + 20)?;
                let ttl = self.raw()[h.l3 + v4f::TTL];
                if ttl == 0 {
                    return Ok(0);
                }
                // TTL and protocol form one 16-bit word of the checksum.
                let old = self.read16(h.l3 + v4f::TTL);
                self.raw_mut()[h.l3 + v4f::TTL] = ttl - 1;
                let new = self.read16(h.l3 + v4f::TTL);
                let c = self.read16(h.l3 + v4f::CHECKSUM);
                self.write16(h.l3 + v4f::CHECKSUM, checksum::update16(c, old, new));
                Ok(ttl - 1)
            }
            IpVersion::V6 => {
                self.need(h.l3 + 40)?;
                let hl = self.raw()[h.l3 + v6f::HOP_LIMIT];
                let n = hl.saturating_sub(1);
                self.raw_mut()[h.l3 + v6f::HOP_LIMIT] = n;
                Ok(n)
            }
        }
    }

    #[inline]
    fn need(&self, end: usize) -> Result<(), PacketError> {
        if end > self.tail as usize {
            Err(PacketError::TooShort {
                need: end.saturating_sub(self.head as usize),
                have: self.len(),
            })
        } else {
            Ok(())
        }
    }

    #[inline]
    fn read16(&self, at: usize) -> u16 {
        u16::from_be_bytes([self.raw()[at], self.raw()[at + 1]])
    }

    #[inline]
    fn write16(&mut self, at: usize, v: u16) {
        self.raw_mut()[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }
}

/// Offset of the network header inside an Ethernet frame (after any VLAN tags), or an error.
#[inline]
pub fn ethernet_payload_offset(frame: &[u8]) -> Result<usize, PacketError> {
    // The common case: untagged IPv4 or IPv6.
    if let Some(t) = frame.get(12..14)
        && (t == IPV4_TYPE || t == IPV6_TYPE)
    {
        return Ok(14);
    }
    ethernet_payload_offset_slow(frame)
}

/// The EtherTypes of the fast paths, as they sit in a frame.
const IPV4_TYPE: [u8; 2] = crate::wire::ethertype::IPV4.to_be_bytes();
const IPV6_TYPE: [u8; 2] = crate::wire::ethertype::IPV6.to_be_bytes();

fn ethernet_payload_offset_slow(frame: &[u8]) -> Result<usize, PacketError> {
    let eth = etherparse::Ethernet2HeaderSlice::from_slice(frame).map_err(PacketError::from)?;
    let mut off = 14;
    let mut ether_type = eth.ether_type();
    // 802.1Q / 802.1ad / QinQ tags: up to three.
    for _ in 0..3 {
        if ether_type != etherparse::EtherType::VLAN_TAGGED_FRAME
            && ether_type != etherparse::EtherType::PROVIDER_BRIDGING
            && ether_type != etherparse::EtherType::VLAN_DOUBLE_TAGGED_FRAME
        {
            break;
        }
        let tag = frame.get(off..).ok_or(PacketError::TooShort {
            need: off + 4,
            have: frame.len(),
        })?;
        let vlan = etherparse::SingleVlanHeaderSlice::from_slice(tag).map_err(PacketError::from)?;
        ether_type = vlan.ether_type();
        off += 4;
    }
    if ether_type == etherparse::EtherType::IPV4 || ether_type == etherparse::EtherType::IPV6 {
        Ok(off)
    } else {
        Err(PacketError::NotApplicable("not an IP frame"))
    }
}

/// Locates the headers of the IP packet at `buf[l3..]`: the common case (IPv4 without options, not a
/// fragment, lengths consistent) is recognised directly; everything else (options, fragments, IPv6 and its
/// extension headers, anything malformed) goes through `etherparse`, which validates and explains.
#[inline]
pub fn locate_ip(buf: &[u8], l3: usize) -> Result<HeaderInfo, PacketError> {
    if let Some(ip) = buf.get(l3..l3 + 20) {
        let ip = crate::wire::Ipv4Packet::new_unchecked(ip);
        let total = usize::from(ip.total_len());
        let avail = buf.len() - l3;
        // Version 4, IHL 5, total length in [20, available], no MF flag and offset 0.
        if ip.as_slice()[v4f::VER_IHL] == 0x45 && (20..=avail).contains(&total) && !ip.is_fragment()
        {
            let proto = ip.protocol();
            let l4 = transport_fits(proto, total - 20).then_some(l3 + 20);
            return Ok(HeaderInfo {
                version: IpVersion::V4,
                l3,
                l4,
                proto,
                fragment: false,
            });
        }
    }
    locate_ip_slow(buf, l3)
}

fn locate_ip_slow(buf: &[u8], l3: usize) -> Result<HeaderInfo, PacketError> {
    let ip = buf.get(l3..).ok_or(PacketError::TooShort {
        need: l3,
        have: buf.len(),
    })?;
    let first = *ip
        .first()
        .ok_or(PacketError::TooShort { need: 1, have: 0 })?;
    match first >> 4 {
        4 => {
            let h = etherparse::Ipv4HeaderSlice::from_slice(ip).map_err(PacketError::from)?;
            let fragment = h.is_fragmenting_payload();
            let first_frag = h.fragments_offset().value() == 0;
            let ihl = usize::from(h.ihl()) * 4;
            let proto = h.protocol().0;
            let total = usize::from(h.total_len()).min(ip.len());
            let l4 = (first_frag && transport_fits(proto, total.saturating_sub(ihl)))
                .then_some(l3 + ihl);
            Ok(HeaderInfo {
                version: IpVersion::V4,
                l3,
                l4,
                proto,
                fragment,
            })
        }
        6 => {
            let s = etherparse::Ipv6Slice::from_slice(ip).map_err(PacketError::from)?;
            let payload = s.payload();
            let proto = payload.ip_number.0;
            let fragment = payload.fragmented;
            let off = payload.payload.as_ptr() as usize - ip.as_ptr() as usize;
            let l4 =
                (!fragment && transport_fits(proto, payload.payload.len())).then_some(l3 + off);
            Ok(HeaderInfo {
                version: IpVersion::V6,
                l3,
                l4,
                proto,
                fragment,
            })
        }
        v => Err(PacketError::Malformed(Malformed::IpVersion(v))),
    }
}

fn transport_fits(proto: u8, len: usize) -> bool {
    match proto {
        proto::TCP => len >= 20,
        proto::UDP => len >= 8,
        proto::ICMP | proto::ICMPV6 => len >= 4,
        _ => len > 0,
    }
}

/// Reads an IPv4 or IPv6 address of `h`'s packet (`src` or destination).
pub fn read_addr(buf: &[u8], h: &HeaderInfo, src: bool) -> Option<IpAddr> {
    match h.version {
        IpVersion::V4 => {
            let o = h.l3 + if src { v4f::SRC_ADDR } else { v4f::DST_ADDR };
            let b: [u8; 4] = buf.get(o..o + 4)?.try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(b)))
        }
        IpVersion::V6 => {
            let o = h.l3 + if src { v6f::SRC_ADDR } else { v6f::DST_ADDR };
            let b: [u8; 16] = buf.get(o..o + 16)?.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_copies_copy_every_length_exactly() {
        let src: Vec<u8> = (0..300u32).map(|i| (i * 7 + 1) as u8).collect();
        for n in 0..=300 {
            let mut dst = vec![0xAAu8; n + 8];
            copy_small(&mut dst[..n], &src[..n]);
            assert_eq!(&dst[..n], &src[..n], "length {n}");
            assert!(
                dst[n..].iter().all(|&b| b == 0xAA),
                "length {n}: wrote past the end"
            );
        }
    }

    #[test]
    fn a_packet_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Packet>(), 64);
    }

    #[test]
    fn put_take_truncate_and_parts() {
        let mut p = Packet::from_slice(&[1, 2, 3]);
        p.put(2).copy_from_slice(&[4, 5]);
        assert_eq!(p.data(), &[1, 2, 3, 4, 5]);
        p.take(1).unwrap();
        p.truncate(3);
        assert_eq!(p.data(), &[1, 2, 3]);
        // Growing past the buffer moves the data and keeps header offsets valid.
        p.anno.set_l3_offset(Some(p.data_offset() as u16));
        p.put(5000);
        assert_eq!(p.len(), 5003);
        assert_eq!(p.network_header().map(|h| &h[..3]), Some(&[1u8, 2, 3][..]));
        p.push(500)[0] = 9;
        assert_eq!(p.network_header().map(|h| &h[..3]), Some(&[1u8, 2, 3][..]));
        let (b, head) = p.into_parts();
        assert_eq!(b.len() - head, 5503);
        let q = Packet::from_bytes_mut(bytes::BytesMut::from(&[7u8, 8, 9][..]), 1);
        assert_eq!(q.data(), &[8, 9]);
    }
}
