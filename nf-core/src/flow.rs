//! Flow keys: IPv4 and IPv6 five-tuples, their direction-free canonical form and the symmetric RSS hash.

use crate::hash::HashKey;
use crate::hash::toeplitz;
use crate::indirection::{BUCKETS, Indirection, bucket_of};
use crate::packet::{HeaderInfo, Link, Packet, PacketError, proto, read_addr};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// A five-tuple: addresses, ports and transport protocol.
///
/// For ICMP and ICMPv6 echo messages both ports hold the echo identifier (so that a request and its reply
/// have reversed keys); other ICMP messages and protocols without ports have ports 0.
///
/// The key is five aligned 64-bit words (40 bytes): each address as its 16 octets in network order (an
/// IPv4 address in the first four, the rest zero), then ports, protocol and address family in one word.
/// Keys are built, copied, compared and hashed on the packet path, and a layout of whole words lets the
/// compiler keep them in registers and read back what it wrote with loads of the width it stored
/// (`IpAddr`'s enum layout, a tag byte then the octets at alignment 1, made every IPv4 key a
/// store-forwarding stall when it was copied or compared). Read the parts with [`src`](Self::src),
/// [`dst`](Self::dst), [`src_port`](Self::src_port), [`dst_port`](Self::dst_port) and
/// [`proto`](Self::proto); build a key with [`new`](Self::new) or [`v4`](Self::v4).
///
/// Keys order as the tuple `(src, dst, src_port, dst_port, proto)` with `IpAddr`'s order (every IPv4
/// address before every IPv6 address).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(C, align(8))]
pub struct FlowKey {
    src: [u64; 2],
    dst: [u64; 2],
    /// Source port (bits 0-15), destination port (16-31).
    ports: u32,
    proto: u8,
    /// An enum, so that the key has a niche: `Option<FlowKey>`, and a table slot holding one in an
    /// `Option`, are no larger than the key (without it a 64-byte slot became 128).
    family: Family,
    /// Always 0 (the key's tail is one 64-bit word for hashing).
    pad: u16,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
enum Family {
    #[default]
    V4 = 0,
    V6 = 1,
}

/// An address as the two words of a key (octets in network order; IPv4 in the first four).
#[inline(always)]
fn addr_words(a: IpAddr) -> ([u64; 2], bool) {
    match a {
        IpAddr::V4(a) => ([u64::from(u32::from_ne_bytes(a.octets())), 0], false),
        IpAddr::V6(a) => (octet_words(&a.octets()), true),
    }
}

#[inline(always)]
fn octet_words(o: &[u8; 16]) -> [u64; 2] {
    let (lo, hi) = o.split_at(8);
    [
        u64::from_ne_bytes(lo.try_into().unwrap_or_default()),
        u64::from_ne_bytes(hi.try_into().unwrap_or_default()),
    ]
}

#[inline(always)]
fn words_octets(w: [u64; 2]) -> [u8; 16] {
    let mut o = [0u8; 16];
    o[..8].copy_from_slice(&w[0].to_ne_bytes());
    o[8..].copy_from_slice(&w[1].to_ne_bytes());
    o
}

impl fmt::Debug for FlowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for FlowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = match self.proto() {
            proto::TCP => "tcp".to_string(),
            proto::UDP => "udp".to_string(),
            proto::ICMP => "icmp".to_string(),
            proto::ICMPV6 => "icmp6".to_string(),
            n => format!("proto{n}"),
        };
        let ep = |a: IpAddr, port: u16| match a {
            IpAddr::V4(a) => format!("{a}:{port}"),
            IpAddr::V6(a) => format!("[{a}]:{port}"),
        };
        write!(
            f,
            "{p} {} -> {}",
            ep(self.src(), self.src_port()),
            ep(self.dst(), self.dst_port())
        )
    }
}

impl PartialOrd for FlowKey {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for FlowKey {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (
            self.src(),
            self.dst(),
            self.src_port(),
            self.dst_port(),
            self.proto(),
        )
            .cmp(&(o.src(), o.dst(), o.src_port(), o.dst_port(), o.proto()))
    }
}

impl FlowKey {
    /// A key from its parts.
    ///
    /// Both addresses are held in one family: if one is IPv4 and the other IPv6, the IPv4 one is held
    /// as its IPv4-mapped IPv6 address (`::ffff:a.b.c.d`), as a dual-stack socket sees it.
    #[inline]
    pub fn new(proto: u8, src: IpAddr, src_port: u16, dst: IpAddr, dst_port: u16) -> Self {
        let (src, dst) = match (src, dst) {
            (IpAddr::V4(_), IpAddr::V6(_)) => (IpAddr::V6(v4_mapped(src)), dst),
            (IpAddr::V6(_), IpAddr::V4(_)) => (src, IpAddr::V6(v4_mapped(dst))),
            _ => (src, dst),
        };
        let (s, v6) = addr_words(src);
        let (d, _) = addr_words(dst);
        FlowKey {
            src: s,
            dst: d,
            ..Self::tail(proto, src_port, dst_port, v6)
        }
    }

    /// An IPv4 key from its parts.
    #[inline(always)]
    pub const fn v4(proto: u8, src: Ipv4Addr, src_port: u16, dst: Ipv4Addr, dst_port: u16) -> Self {
        Self::v4_octets(proto, src.octets(), src_port, dst.octets(), dst_port)
    }

    /// An IPv4 key from the addresses' octets as they lie in the header.
    #[inline(always)]
    pub const fn v4_octets(
        proto: u8,
        src: [u8; 4],
        src_port: u16,
        dst: [u8; 4],
        dst_port: u16,
    ) -> Self {
        FlowKey {
            src: [u32::from_ne_bytes(src) as u64, 0],
            dst: [u32::from_ne_bytes(dst) as u64, 0],
            ..Self::tail(proto, src_port, dst_port, false)
        }
    }

    /// An IPv6 key from its parts.
    #[inline]
    pub fn v6(proto: u8, src: Ipv6Addr, src_port: u16, dst: Ipv6Addr, dst_port: u16) -> Self {
        FlowKey {
            src: octet_words(&src.octets()),
            dst: octet_words(&dst.octets()),
            ..Self::tail(proto, src_port, dst_port, true)
        }
    }

    /// A key with zero addresses and these ports, protocol and family.
    #[inline(always)]
    const fn tail(proto: u8, src_port: u16, dst_port: u16, v6: bool) -> FlowKey {
        FlowKey {
            src: [0; 2],
            dst: [0; 2],
            ports: src_port as u32 | (dst_port as u32) << 16,
            proto,
            family: if v6 { Family::V6 } else { Family::V4 },
            pad: 0,
        }
    }

    /// Ports, protocol and family as one word.
    #[inline(always)]
    const fn tail_word(&self) -> u64 {
        self.ports as u64
            | (self.proto as u64) << 32
            | (self.family as u64) << 40
            | (self.pad as u64) << 48
    }

    /// An IPv4 key's source and destination addresses as octets (`None` for IPv6): what a rewriter
    /// of IPv4 flows reads without building `IpAddr`s.
    #[inline(always)]
    pub const fn v4_addrs(&self) -> Option<([u8; 4], [u8; 4])> {
        if self.is_ipv6() {
            None
        } else {
            Some((
                (self.src[0] as u32).to_ne_bytes(),
                (self.dst[0] as u32).to_ne_bytes(),
            ))
        }
    }

    /// The source address.
    #[inline]
    pub fn src(&self) -> IpAddr {
        self.addr(self.src)
    }

    /// The destination address.
    #[inline]
    pub fn dst(&self) -> IpAddr {
        self.addr(self.dst)
    }

    #[inline(always)]
    fn addr(&self, w: [u64; 2]) -> IpAddr {
        if self.is_ipv6() {
            IpAddr::V6(Ipv6Addr::from(words_octets(w)))
        } else {
            IpAddr::V4(Ipv4Addr::from((w[0] as u32).to_ne_bytes()))
        }
    }

    /// The source port (the echo identifier for ICMP echo messages, 0 without ports).
    #[inline(always)]
    pub const fn src_port(&self) -> u16 {
        self.ports as u16
    }

    /// The destination port.
    #[inline(always)]
    pub const fn dst_port(&self) -> u16 {
        (self.ports >> 16) as u16
    }

    /// The IP protocol number (6 TCP, 17 UDP, ...).
    #[inline(always)]
    pub const fn proto(&self) -> u8 {
        self.proto
    }

    /// True for an IPv6 key (both addresses IPv6), false for IPv4.
    #[inline(always)]
    pub const fn is_ipv6(&self) -> bool {
        matches!(self.family, Family::V6)
    }

    /// The key with another source endpoint (address and port).
    #[inline]
    pub fn with_src(&self, addr: IpAddr, port: u16) -> FlowKey {
        FlowKey::new(self.proto(), addr, port, self.dst(), self.dst_port())
    }

    /// The key with another destination endpoint (address and port).
    #[inline]
    pub fn with_dst(&self, addr: IpAddr, port: u16) -> FlowKey {
        FlowKey::new(self.proto(), self.src(), self.src_port(), addr, port)
    }

    /// One endpoint of the key as a key of its own: the source (`source` true) or the destination
    /// address and port, in both address fields, the other port 0 (what
    /// `FlowKey::new(proto, a, port, a, 0)` gives): the key of a table keyed by one side of a flow (a
    /// balancer's client), made from the words without going through `IpAddr`.
    #[inline(always)]
    pub fn endpoint_key(&self, source: bool) -> FlowKey {
        let (a, port) = if source {
            (self.src, self.src_port())
        } else {
            (self.dst, self.dst_port())
        };
        FlowKey {
            src: a,
            dst: a,
            ports: u32::from(port),
            proto: self.proto,
            family: self.family,
            pad: 0,
        }
    }

    /// The key of the other direction.
    #[inline(always)]
    pub fn reversed(&self) -> FlowKey {
        FlowKey {
            src: self.dst,
            dst: self.src,
            ports: self.ports.rotate_left(16),
            ..*self
        }
    }

    /// True if this key is already in canonical order (source endpoint <= destination endpoint).
    #[inline(always)]
    pub fn is_canonical(&self) -> bool {
        if self.is_ipv6() {
            // The same order as `Ipv6Addr`'s (octets compared in turn).
            let a = u128::from_be_bytes(words_octets(self.src));
            let b = u128::from_be_bytes(words_octets(self.dst));
            (a, self.src_port()) <= (b, self.dst_port())
        } else {
            let a = u32::from_be(self.src[0] as u32);
            let b = u32::from_be(self.dst[0] as u32);
            (a, self.src_port()) <= (b, self.dst_port())
        }
    }

    /// The direction-free form: the same for both directions of a flow. The flag is true if the
    /// key was reversed to get it.
    #[inline(always)]
    pub fn canonical(&self) -> (FlowKey, bool) {
        if self.is_canonical() {
            (*self, false)
        } else {
            (self.reversed(), true)
        }
    }

    /// The symmetric Toeplitz hash ([`toeplitz::SYMMETRIC_RSS_KEY`]) over source address, destination
    /// address, source port, destination port, as a NIC computes RSS: equal for both directions.
    #[inline]
    pub fn rss_hash(&self) -> u32 {
        let mut input = [0u8; 36];
        let n = if self.is_ipv6() {
            input[..16].copy_from_slice(&words_octets(self.src));
            input[16..32].copy_from_slice(&words_octets(self.dst));
            32
        } else {
            input[..4].copy_from_slice(&(self.src[0] as u32).to_ne_bytes());
            input[4..8].copy_from_slice(&(self.dst[0] as u32).to_ne_bytes());
            8
        };
        input[n..n + 2].copy_from_slice(&self.src_port().to_be_bytes());
        input[n + 2..n + 4].copy_from_slice(&self.dst_port().to_be_bytes());
        toeplitz::symmetric().hash(&input[..n + 4])
    }

    /// The key's hash for flow tables: keyed with this process's secret ([`HashKey::process`]), so that
    /// no one outside the process can choose flows that share a probe chain (direction-dependent: hash
    /// the [`canonical`](Self::canonical) key for a direction-free table).
    ///
    /// Not the RSS hash: the RSS key is public, and the symmetric key repeats every 16 bits, so its hash
    /// carries at most 16 bits of entropy: enough to pick a queue or a shard, never to place a key.
    #[inline(always)]
    pub fn table_hash(&self) -> u32 {
        self.keyed_hash(HashKey::process())
    }

    /// The key's hash under a given key: the same on every box configured with the same [`HashKey`]
    /// (Maglev's choice of backend, agreed between a primary and its minions).
    #[inline(always)]
    pub fn keyed_hash(&self, key: &HashKey) -> u32 {
        // NH pairs each source word with the destination word at the same place, and the ports with the
        // protocol word. An IPv4 key's address words past the first four octets are zero: their terms
        // are a constant, left out (the family, in the last pair, tells the two kinds of key apart).
        let tail = self.tail_word();
        let mut s = key
            .pair(0, self.src[0] as u32, self.dst[0] as u32)
            .wrapping_add(key.pair(4, tail as u32, (tail >> 32) as u32));
        if self.family == Family::V6 {
            s = s
                .wrapping_add(key.pair(1, (self.src[0] >> 32) as u32, (self.dst[0] >> 32) as u32))
                .wrapping_add(key.pair(2, self.src[1] as u32, self.dst[1] as u32))
                .wrapping_add(key.pair(3, (self.src[1] >> 32) as u32, (self.dst[1] >> 32) as u32));
        }
        key.finish(s)
    }

    /// The unkeyed hash that [`table_hash`](Self::table_hash) was before it was keyed (a fixed mix of the
    /// words, then MurmurHash3's finaliser). Kept only so that `nf bench flood` can mount the attack it
    /// allowed against builds that still use it; never place keys with it.
    #[doc(hidden)]
    pub fn unkeyed_hash(&self) -> u32 {
        let mut h = self.src[0]
            ^ self.src[1].rotate_left(23)
            ^ self.dst[0].rotate_left(32)
            ^ self.dst[1].rotate_left(47);
        h = h.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ self.tail_word();
        // MurmurHash3's 64-bit finaliser.
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        (h ^ (h >> 33)) as u32
    }

    /// Extracts the key of a packet whose headers were located.
    pub fn from_headers(buf: &[u8], h: &HeaderInfo) -> Option<FlowKey> {
        let src = read_addr(buf, h, true)?;
        let dst = read_addr(buf, h, false)?;
        let (src_port, dst_port) = match (h.proto, h.l4) {
            (proto::TCP | proto::UDP, Some(l4)) => {
                // TCP's ports sit where UDP's do.
                let p = crate::wire::UdpDatagram::new_unchecked(buf.get(l4..l4 + 4)?);
                (p.src_port(), p.dst_port())
            }
            (proto::ICMP | proto::ICMPV6, Some(l4)) => {
                let m = crate::wire::IcmpMessage::new_checked(buf.get(l4..)?).ok()?;
                // Echo request and reply (ICMP 8/0, ICMPv6 128/129): keyed by the identifier.
                if matches!(m.msg_type(), 0 | 8 | 128 | 129) {
                    (m.echo_ident(), m.echo_ident())
                } else {
                    (0, 0)
                }
            }
            _ => (0, 0),
        };
        Some(FlowKey::new(h.proto, src, src_port, dst, dst_port))
    }

    /// Locates the packet's headers (see [`Packet::locate`]) and returns its key.
    pub fn from_packet(p: &mut Packet, link: Link) -> Result<FlowKey, PacketError> {
        let h = p.locate(link)?;
        FlowKey::from_headers(p.buffer(), &h).ok_or(PacketError::NotApplicable("no five-tuple"))
    }
}

fn v4_mapped(a: IpAddr) -> Ipv6Addr {
    match a {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

/// An address and a port in 20 bytes (a [`SocketAddr`] takes 32: an IPv6 one carries flow information and
/// a scope), for table entries that hold an endpoint: a flow table's slot stays within one 64-byte line.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    ip: IpAddr,
    port: u16,
}

impl Endpoint {
    /// An endpoint from its address and port.
    #[inline]
    pub const fn new(ip: IpAddr, port: u16) -> Self {
        Endpoint { ip, port }
    }

    /// The address.
    #[inline]
    pub const fn ip(&self) -> IpAddr {
        self.ip
    }

    /// The port.
    #[inline]
    pub const fn port(&self) -> u16 {
        self.port
    }
}

impl From<SocketAddr> for Endpoint {
    #[inline]
    fn from(a: SocketAddr) -> Self {
        Endpoint::new(a.ip(), a.port())
    }
}

impl From<Endpoint> for SocketAddr {
    #[inline]
    fn from(e: Endpoint) -> Self {
        SocketAddr::new(e.ip, e.port)
    }
}

impl PartialEq<SocketAddr> for Endpoint {
    #[inline]
    fn eq(&self, o: &SocketAddr) -> bool {
        self.ip == o.ip() && self.port == o.port()
    }
}

impl PartialEq<Endpoint> for SocketAddr {
    #[inline]
    fn eq(&self, o: &Endpoint) -> bool {
        o == self
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&SocketAddr::from(*self), f)
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The shard (`0..shards`) that owns the flow of an Ethernet frame under static RSS (the
/// [`Indirection`] table filled round robin), by its symmetric RSS hash, as a NIC's RSS would choose a
/// receive queue: both directions of a flow map to the same shard. Non-IP frames go to shard 0.
#[inline(always)]
pub fn frame_shard(frame: &[u8], shards: usize) -> usize {
    frame_shard_by(toeplitz::symmetric(), frame, shards)
}

/// [`frame_shard`] with the symmetric hasher passed in ([`toeplitz::symmetric`], fetched once for a
/// loop over many frames).
#[inline(always)]
pub fn frame_shard_by(rss: &toeplitz::Toeplitz, frame: &[u8], shards: usize) -> usize {
    shard_of(FrameHasher::new(rss).hash(frame), shards)
}

/// The symmetric flow hash of Ethernet frames, prepared for a loop over many frames: the symmetric hash's
/// folded tables are taken once, so that a scan loop holds them in registers (reloading the hasher's
/// table pointer for every frame, and the spills around it, cost a shard's scan of a capture ~10 %).
#[derive(Clone, Copy, Debug)]
pub struct FrameHasher<'a> {
    folded: Option<&'a [[u32; 256]; 2]>,
}

impl<'a> FrameHasher<'a> {
    /// With the symmetric hasher `rss` ([`toeplitz::symmetric`]).
    #[inline]
    pub fn new(rss: &'a toeplitz::Toeplitz) -> Self {
        FrameHasher {
            folded: rss.folded_tables(),
        }
    }

    /// The symmetric RSS hash of an Ethernet frame's flow (0 for a frame that is not IP).
    #[inline(always)]
    pub fn hash(&self, frame: &[u8]) -> u32 {
        // Fast path: untagged IPv4 without options, not a fragment, TCP or UDP: the addresses and ports
        // hashed in place (the input `rss_hash` builds), folded to one 16-bit word first, which the
        // symmetric key's hash depends on alone (see `Toeplitz`): a dozen instructions instead of twelve
        // lookups.
        if let (Some(h), Some(t)) = (
            frame.get(..38).and_then(|h| <&[u8; 38]>::try_from(h).ok()),
            self.folded,
        ) {
            let le32 = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
            let proto = h[23];
            // One test of the three conditions, combined without branching: whether a packet is TCP or
            // UDP is a coin toss in mixed traffic, and a mispredicted `||` per frame would double a
            // shard's scan of a capture (BENCHMARKS.md).
            let fast = (le32(12) & 0x00ff_ffff == 0x0045_0008)
                & ((proto == crate::packet::proto::TCP) | (proto == crate::packet::proto::UDP))
                & (u16::from_be_bytes([h[20], h[21]]) & 0x3fff == 0);
            if fast {
                // The XOR of the six big-endian 16-bit words of bytes 26..38, from three little-endian
                // 32-bit loads: the low half of `f` is the words' XOR with its bytes swapped.
                let a = le32(26) ^ le32(30) ^ le32(34);
                let [even, odd] = ((a ^ (a >> 16)) as u16).swap_bytes().to_be_bytes();
                return t[0][usize::from(even)] ^ t[1][usize::from(odd)];
            }
        }
        frame_hash_general(frame)
    }
}

/// The shard of Ethernet frames under an [`Indirection`] table, prepared for a scan loop (see
/// [`FrameHasher`]).
#[derive(Clone, Copy, Debug)]
pub struct FrameSharder<'a> {
    hasher: FrameHasher<'a>,
    table: &'a [u16; BUCKETS],
}

impl<'a> FrameSharder<'a> {
    /// With the symmetric hasher `rss` ([`toeplitz::symmetric`]) and the table `table`.
    #[inline]
    pub fn new(rss: &'a toeplitz::Toeplitz, table: &'a Indirection) -> Self {
        FrameSharder {
            hasher: FrameHasher::new(rss),
            table: table.as_array(),
        }
    }

    /// The shard of an Ethernet frame.
    #[inline(always)]
    pub fn shard(&self, frame: &[u8]) -> usize {
        self.owner(self.bucket(frame))
    }

    /// The bucket of an Ethernet frame's flow.
    #[inline(always)]
    pub fn bucket(&self, frame: &[u8]) -> usize {
        bucket_of(self.hasher.hash(frame))
    }

    /// The shard of a bucket.
    #[inline(always)]
    pub fn owner(&self, bucket: usize) -> usize {
        usize::from(self.table[bucket % BUCKETS])
    }
}

/// [`FrameHasher::hash`] for every other frame (kept out of line: the fast path is inlined into scan loops).
#[inline(never)]
fn frame_hash_general(frame: &[u8]) -> u32 {
    crate::packet::ethernet_payload_offset(frame)
        .ok()
        .and_then(|l3| crate::packet::locate_ip(frame, l3).ok())
        .and_then(|h| FlowKey::from_headers(frame, &h))
        .map_or(0, |k| k.rss_hash())
}

/// The shard of a symmetric flow hash under static RSS over `shards` shards (the [`Indirection`] table
/// filled round robin: the hash's bucket modulo `shards`).
#[inline]
pub fn shard_of(hash: u32, shards: usize) -> usize {
    bucket_of(hash) % shards.max(1)
}

/// Computes (and caches in the annotation) the packet's symmetric flow hash; `None` for non-IP packets.
#[inline]
pub fn flow_hash(p: &mut Packet, link: Link) -> Option<u32> {
    if let Some(h) = p.anno.flow_hash() {
        return Some(h);
    }
    let k = FlowKey::from_packet(p, link).ok()?;
    let h = k.rss_hash();
    p.anno.set_flow_hash(Some(h));
    Some(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Benchmark-like traffic over `flows` flows.
    fn traffic(flows: usize) -> crate::traffic::TrafficGen {
        crate::traffic::TrafficGen::new(crate::traffic::TrafficConfig {
            flows,
            ..Default::default()
        })
    }

    #[test]
    fn frame_shard_fast_path_agrees_with_the_flow_key() {
        let mut g = traffic(200);
        for _ in 0..2000 {
            let f = g.next_frame().to_vec();
            let mut p = Packet::from_slice(&f);
            let k = FlowKey::from_packet(&mut p, Link::Ethernet).unwrap();
            for n in [2, 3, 8] {
                assert_eq!(frame_shard(&f, n), shard_of(k.rss_hash(), n));
                assert_eq!(frame_shard(&f, n), shard_of(k.reversed().rss_hash(), n));
            }
        }
    }

    #[test]
    fn frame_shard_fast_path_leaves_other_frames_to_the_general_path() {
        let mut g = traffic(50);
        for i in 0..500 {
            let mut f = g.next_frame().to_vec();
            match i % 3 {
                0 => f[23] = 47,    // GRE: not TCP or UDP
                1 => f[20] |= 0x20, // a fragment (more fragments)
                _ => f[14] = 0x46,  // IPv4 options
            }
            for n in [2, 3, 8] {
                assert_eq!(
                    frame_shard(&f, n),
                    shard_of(frame_hash_general(&f), n),
                    "frame {i}"
                );
            }
        }
    }

    fn arb_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(IpAddr::from),
            any::<[u8; 16]>().prop_map(IpAddr::from),
        ]
    }

    proptest! {
        #[test]
        fn canonical_is_direction_free(a in arb_ip(), b in arb_ip(), sp: u16, dp: u16, pr: u8) {
            let k = FlowKey::new(pr, a, sp, b, dp);
            let (c1, r1) = k.canonical();
            let (c2, r2) = k.reversed().canonical();
            prop_assert_eq!(c1, c2);
            prop_assert!(c1.is_canonical());
            if k != k.reversed() { prop_assert_ne!(r1, r2); }
        }

        #[test]
        fn an_endpoint_key_is_the_key_of_that_endpoint(a in arb_ip(), b in arb_ip(), sp: u16, dp: u16, pr: u8) {
            let k = FlowKey::new(pr, a, sp, b, dp);
            prop_assert_eq!(k.endpoint_key(true), FlowKey::new(pr, k.src(), sp, k.src(), 0));
            prop_assert_eq!(k.endpoint_key(false), FlowKey::new(pr, k.dst(), dp, k.dst(), 0));
        }

        #[test]
        fn parts_come_back_as_given(a in arb_ip(), b in arb_ip(), sp: u16, dp: u16, pr: u8) {
            let k = FlowKey::new(pr, a, sp, b, dp);
            prop_assert_eq!((k.src_port(), k.dst_port(), k.proto()), (sp, dp, pr));
            if a.is_ipv4() == b.is_ipv4() {
                prop_assert_eq!((k.src(), k.dst()), (a, b));
                prop_assert_eq!(k.is_ipv6(), a.is_ipv6());
            } else {
                // Mixed families: the IPv4 one is held IPv4-mapped.
                prop_assert!(k.is_ipv6());
                prop_assert_eq!(k.src(), IpAddr::V6(v4_mapped(a)));
                prop_assert_eq!(k.dst(), IpAddr::V6(v4_mapped(b)));
            }
            if let (IpAddr::V4(x), IpAddr::V4(y)) = (a, b) {
                prop_assert_eq!(FlowKey::v4(pr, x, sp, y, dp), k);
                prop_assert_eq!(FlowKey::v4_octets(pr, x.octets(), sp, y.octets(), dp), k);
            }
            if let (IpAddr::V6(x), IpAddr::V6(y)) = (a, b) {
                prop_assert_eq!(FlowKey::v6(pr, x, sp, y, dp), k);
            }
            let r = k.reversed();
            prop_assert_eq!((r.src(), r.src_port(), r.dst(), r.dst_port(), r.proto()),
                (k.dst(), k.dst_port(), k.src(), k.src_port(), k.proto()));
            prop_assert_eq!(k.with_src(b, dp).src(), k.with_dst(b, dp).dst());
        }

        #[test]
        fn keys_order_as_their_tuples(
            ks in proptest::collection::vec((arb_ip(), arb_ip(), any::<u16>(), any::<u16>(), any::<u8>()), 2..20)
        ) {
            let keys: Vec<FlowKey> = ks.iter().map(|&(a, b, sp, dp, pr)| FlowKey::new(pr, a, sp, b, dp)).collect();
            let tuple = |k: &FlowKey| (k.src(), k.dst(), k.src_port(), k.dst_port(), k.proto());
            for x in &keys {
                for y in &keys {
                    prop_assert_eq!(x.cmp(y), tuple(x).cmp(&tuple(y)));
                    prop_assert_eq!(x == y, tuple(x) == tuple(y));
                    if x == y { prop_assert_eq!(x.table_hash(), y.table_hash()); }
                }
            }
        }

        #[test]
        fn an_ipv4_key_is_not_its_mapped_ipv6_key(a: [u8; 4], b: [u8; 4], sp: u16, dp: u16) {
            let v4 = FlowKey::new(6, IpAddr::from(a), sp, IpAddr::from(b), dp);
            let v6 = FlowKey::new(6, IpAddr::V6(Ipv4Addr::from(a).to_ipv6_mapped()), sp,
                IpAddr::V6(Ipv4Addr::from(b).to_ipv6_mapped()), dp);
            prop_assert_ne!(v4, v6);
            prop_assert!(v4 < v6);
        }

        #[test]
        fn endpoints_convert_both_ways(a in arb_ip(), port: u16) {
            let sa = SocketAddr::new(a, port);
            let e = Endpoint::from(sa);
            prop_assert_eq!((e.ip(), e.port()), (a, port));
            prop_assert_eq!(SocketAddr::from(e), sa);
            prop_assert!(e == sa);
            prop_assert!(sa == e);
            prop_assert_eq!(e.to_string(), sa.to_string());
        }

        #[test]
        fn rss_hash_is_symmetric(a in arb_ip(), b in arb_ip(), sp: u16, dp: u16, pr: u8) {
            let k = FlowKey::new(pr, a, sp, b, dp);
            prop_assert_eq!(k.rss_hash(), k.reversed().rss_hash());
        }
    }
}
