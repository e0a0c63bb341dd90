//! Flow keys: IPv4 and IPv6 five-tuples, their direction-free canonical form and the symmetric RSS hash.

use crate::packet::{HeaderInfo, Link, Packet, PacketError, proto, read_addr};
use crate::toeplitz;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv4Addr};

/// A five-tuple: addresses, ports and transport protocol.
///
/// For ICMP and ICMPv6 echo messages both ports hold the echo identifier (so that a request and its reply
/// have reversed keys); other ICMP messages and protocols without ports have ports 0.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// IP protocol number (6 TCP, 17 UDP, ...).
    pub proto: u8,
}

impl Default for FlowKey {
    fn default() -> Self {
        FlowKey {
            src: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            src_port: 0,
            dst_port: 0,
            proto: 0,
        }
    }
}

impl fmt::Debug for FlowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for FlowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = match self.proto {
            proto::TCP => "tcp".to_string(),
            proto::UDP => "udp".to_string(),
            proto::ICMP => "icmp".to_string(),
            proto::ICMPV6 => "icmp6".to_string(),
            n => format!("proto{n}"),
        };
        let ep = |a: &IpAddr, port: u16| match a {
            IpAddr::V4(a) => format!("{a}:{port}"),
            IpAddr::V6(a) => format!("[{a}]:{port}"),
        };
        write!(
            f,
            "{p} {} -> {}",
            ep(&self.src, self.src_port),
            ep(&self.dst, self.dst_port)
        )
    }
}

impl FlowKey {
    /// A key from its parts.
    pub fn new(proto: u8, src: IpAddr, src_port: u16, dst: IpAddr, dst_port: u16) -> Self {
        FlowKey {
            src,
            dst,
            src_port,
            dst_port,
            proto,
        }
    }

    /// The key of the other direction.
    #[inline(always)]
    pub fn reversed(&self) -> FlowKey {
        FlowKey {
            src: self.dst,
            dst: self.src,
            src_port: self.dst_port,
            dst_port: self.src_port,
            proto: self.proto,
        }
    }

    /// True if this key is already in canonical order (source endpoint <= destination endpoint).
    #[inline(always)]
    pub fn is_canonical(&self) -> bool {
        match (self.src, self.dst) {
            // The same order as `IpAddr`'s (octets compared in turn), as integers.
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                (u32::from(s), self.src_port) <= (u32::from(d), self.dst_port)
            }
            _ => (self.src, self.src_port) <= (self.dst, self.dst_port),
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
        let n = match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                input[..4].copy_from_slice(&s.octets());
                input[4..8].copy_from_slice(&d.octets());
                8
            }
            (s, d) => {
                input[..16].copy_from_slice(&to_v6(s));
                input[16..32].copy_from_slice(&to_v6(d));
                32
            }
        };
        input[n..n + 2].copy_from_slice(&self.src_port.to_be_bytes());
        input[n + 2..n + 4].copy_from_slice(&self.dst_port.to_be_bytes());
        toeplitz::symmetric().hash(&input[..n + 4])
    }

    /// A well-mixed 32-bit hash of the key for hash tables (direction-dependent: hash the
    /// [`canonical`](Self::canonical) key for a direction-free table).
    ///
    /// Not the RSS hash: the symmetric RSS key repeats every 16 bits, so its hash carries at most 16 bits of
    /// entropy. That is enough to pick a queue or a shard, but makes long probe chains in a table.
    #[inline(always)]
    pub fn table_hash(&self) -> u32 {
        let bits = |a: IpAddr| -> u128 {
            match a {
                IpAddr::V4(v) => u128::from(u32::from(v)),
                IpAddr::V6(v) => u128::from(v) ^ (1 << 127),
            }
        };
        let (a, b) = (bits(self.src), bits(self.dst));
        let mut h = (a as u64)
            ^ ((a >> 64) as u64).rotate_left(23)
            ^ (b as u64).rotate_left(32)
            ^ ((b >> 64) as u64).rotate_left(47);
        h = h.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ (u64::from(self.src_port) << 24
                | u64::from(self.dst_port) << 8
                | u64::from(self.proto));
        // MurmurHash3's 64-bit finaliser.
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^= h >> 33;
        h as u32
    }

    /// Extracts the key of a packet whose headers were located.
    pub fn from_headers(buf: &[u8], h: &HeaderInfo) -> Option<FlowKey> {
        let src = read_addr(buf, h, true)?;
        let dst = read_addr(buf, h, false)?;
        let (src_port, dst_port) = match (h.proto, h.l4) {
            (proto::TCP | proto::UDP, Some(l4)) => {
                let p = buf.get(l4..l4 + 4)?;
                (
                    u16::from_be_bytes([p[0], p[1]]),
                    u16::from_be_bytes([p[2], p[3]]),
                )
            }
            (proto::ICMP | proto::ICMPV6, Some(l4)) => {
                let p = buf.get(l4..l4 + 8)?;
                let is_echo = matches!(p[0], 0 | 8 | 128 | 129);
                if is_echo {
                    let id = u16::from_be_bytes([p[4], p[5]]);
                    (id, id)
                } else {
                    (0, 0)
                }
            }
            _ => (0, 0),
        };
        Some(FlowKey {
            src,
            dst,
            src_port,
            dst_port,
            proto: h.proto,
        })
    }

    /// Locates the packet's headers (see [`Packet::locate`]) and returns its key.
    pub fn from_packet(p: &mut Packet, link: Link) -> Result<FlowKey, PacketError> {
        let h = p.locate(link)?;
        FlowKey::from_headers(p.buffer(), &h).ok_or(PacketError::NotApplicable("no five-tuple"))
    }
}

fn to_v6(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

/// The shard (`0..shards`) that owns the flow of an Ethernet frame, by its symmetric RSS hash, as a NIC's
/// RSS would choose a receive queue: both directions of a flow map to the same shard. Non-IP frames go to
/// shard 0.
#[inline(always)]
pub fn frame_shard(frame: &[u8], shards: usize) -> usize {
    if shards <= 1 {
        return 0;
    }
    // Fast path: untagged IPv4 without options, not a fragment, TCP or UDP: hash the addresses and ports
    // in place (the same input `rss_hash` builds).
    if frame.len() >= 38
        && frame[12] == 0x08
        && frame[13] == 0x00
        && frame[14] == 0x45
        && (frame[23] == crate::packet::proto::TCP || frame[23] == crate::packet::proto::UDP)
        && u16::from_be_bytes([frame[20], frame[21]]) & 0x3fff == 0
    {
        return shard_of(toeplitz::symmetric().hash(&frame[26..38]), shards);
    }
    frame_shard_general(frame, shards)
}

/// [`frame_shard`] for every other frame (kept out of line: the fast path is inlined into scan loops).
#[inline(never)]
fn frame_shard_general(frame: &[u8], shards: usize) -> usize {
    let h = crate::packet::ethernet_payload_offset(frame)
        .ok()
        .and_then(|l3| crate::packet::locate_ip(frame, l3).ok())
        .and_then(|h| FlowKey::from_headers(frame, &h))
        .map_or(0, |k| k.rss_hash());
    shard_of(h, shards)
}

/// Maps a 32-bit hash to one of `shards` (multiply-shift: uses the hash's high bits).
#[inline]
pub fn shard_of(hash: u32, shards: usize) -> usize {
    ((u64::from(hash) * shards as u64) >> 32) as usize
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

/// A key stored with its precomputed hash, for tables indexed by the flow hash the packet already carries.
#[derive(Clone, Copy, Debug)]
pub struct HashedKey<K> {
    /// The precomputed hash.
    pub hash: u32,
    /// The key.
    pub key: K,
}

impl<K: PartialEq> PartialEq for HashedKey<K> {
    #[inline]
    fn eq(&self, o: &Self) -> bool {
        self.hash == o.hash && self.key == o.key
    }
}
impl<K: Eq> Eq for HashedKey<K> {}
impl<K> std::hash::Hash for HashedKey<K> {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u32(self.hash);
    }
}

/// A `BuildHasher` for [`HashedKey`]: spreads the 32-bit precomputed hash over 64 bits with one multiply.
#[derive(Clone, Copy, Debug, Default)]
pub struct PrehashedState;

/// The hasher of [`PrehashedState`].
#[derive(Clone, Copy, Debug, Default)]
pub struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    #[inline]
    fn write_u32(&mut self, v: u32) {
        self.0 = (u64::from(v) | (u64::from(v) << 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

impl BuildHasher for PrehashedState {
    type Hasher = PrehashedHasher;
    #[inline]
    fn build_hasher(&self) -> PrehashedHasher {
        PrehashedHasher(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frame_shard_fast_path_agrees_with_the_flow_key() {
        let mut g = crate::traffic::TrafficGen::new(crate::traffic::TrafficConfig {
            flows: 200,
            ..Default::default()
        });
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
        fn rss_hash_is_symmetric(a in arb_ip(), b in arb_ip(), sp: u16, dp: u16, pr: u8) {
            let k = FlowKey::new(pr, a, sp, b, dp);
            prop_assert_eq!(k.rss_hash(), k.reversed().rss_hash());
        }
    }
}
