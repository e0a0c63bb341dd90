//! The Toeplitz hash of receive-side scaling (RSS), table-driven.
//!
//! [`Toeplitz::new`] takes any 40-byte key. [`MICROSOFT_RSS_KEY`] is the key of Microsoft's RSS
//! specification, whose published verification vectors the tests reproduce. [`SYMMETRIC_RSS_KEY`] is the
//! repeated `0x6d5a` key (Woo and Park, "Scalable TCP Session Monitoring with Symmetric Receive-side Scaling"):
//! with it the hash of a five-tuple equals the hash of the reversed five-tuple, so that both directions of a
//! flow land on one core, in software ([`crate::FlowKey::rss_hash`]) and on a NIC programmed with the same key.

/// The key of Microsoft's RSS specification ("Verifying the RSS Hash Calculation").
pub const MICROSOFT_RSS_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

/// A key that makes the Toeplitz hash symmetric in (source, destination) for address and port pairs.
pub const SYMMETRIC_RSS_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a,
    0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a,
    0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a,
];

/// Longest input the tables cover: an IPv6 five-tuple (16 + 16 + 2 + 2 bytes).
pub const MAX_INPUT: usize = 36;

/// A Toeplitz hasher with one 256-entry table per input byte position (36 KiB).
///
/// For a key whose bits repeat every 16 (as [`SYMMETRIC_RSS_KEY`]'s do) the hash takes two table lookups
/// whatever the input's length: each input bit's 32-bit key window depends only on the bit's position
/// modulo 16, and the hash is linear (an XOR of windows), so the hash of the input is the hash of the XOR
/// of its 16-bit words. (A shard reading a capture hashes every record; twelve lookups were a third of
/// that walk.)
#[derive(Clone)]
pub struct Toeplitz {
    tables: Box<[[u32; 256]; MAX_INPUT]>,
    /// The key repeats every 16 bits.
    periodic16: bool,
}

impl std::fmt::Debug for Toeplitz {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Toeplitz").finish_non_exhaustive()
    }
}

impl Toeplitz {
    /// Builds the tables for `key`.
    pub fn new(key: &[u8; 40]) -> Self {
        // window(j) = the 32 key bits starting at bit j.
        let bit = |j: usize| -> u64 { u64::from((key[j / 8] >> (7 - (j % 8))) & 1) };
        let window = |j: usize| -> u32 {
            let mut w = 0u64;
            for k in 0..32 {
                w = (w << 1) | bit(j + k);
            }
            w as u32
        };
        let mut tables = Box::new([[0u32; 256]; MAX_INPUT]);
        for (i, table) in tables.iter_mut().enumerate() {
            let windows: [u32; 8] = std::array::from_fn(|k| window(8 * i + k));
            for (b, slot) in table.iter_mut().enumerate() {
                let mut h = 0;
                for (k, w) in windows.iter().enumerate() {
                    if b & (0x80 >> k) != 0 {
                        h ^= w;
                    }
                }
                *slot = h;
            }
        }
        let periodic16 = key.iter().skip(2).zip(key.iter()).all(|(a, b)| a == b);
        Self { tables, periodic16 }
    }

    /// The hash of `input` (at most [`MAX_INPUT`] bytes; longer input is cut there).
    #[inline]
    pub fn hash(&self, input: &[u8]) -> u32 {
        let input = &input[..input.len().min(MAX_INPUT)];
        if self.periodic16 {
            // The XOR of the input's bytes at even and at odd positions (its 16-bit words folded).
            let mut x = 0u16;
            let mut pairs = input.chunks_exact(2);
            for p in pairs.by_ref() {
                x ^= u16::from_be_bytes([p[0], p[1]]);
            }
            if let [last] = pairs.remainder() {
                x ^= u16::from(*last) << 8;
            }
            return self.hash_folded(x);
        }
        self.hash_bytes(input)
    }

    /// For a key that repeats every 16 bits ([`is_periodic16`](Self::is_periodic16)): the hash of any input
    /// whose 16-bit big-endian words XOR to `x`. (For another key, a meaningless number.)
    #[inline(always)]
    pub fn hash_folded(&self, x: u16) -> u32 {
        let [even, odd] = x.to_be_bytes();
        self.tables[0][usize::from(even)] ^ self.tables[1][usize::from(odd)]
    }

    /// For a key that repeats every 16 bits, the two tables [`hash_folded`](Self::hash_folded) reads
    /// (`None` for another key): a scan loop keeps this reference in a register instead of reloading the
    /// hasher's table pointer for every frame.
    #[inline]
    pub fn folded_tables(&self) -> Option<&[[u32; 256]; 2]> {
        if !self.periodic16 {
            return None;
        }
        self.tables.first_chunk::<2>()
    }

    /// Whether the key repeats every 16 bits (then [`hash_folded`](Self::hash_folded) applies).
    #[inline]
    pub fn is_periodic16(&self) -> bool {
        self.periodic16
    }

    /// The hash of `input` byte by byte, whatever the key (what [`hash`](Self::hash) computes).
    #[inline]
    pub fn hash_bytes(&self, input: &[u8]) -> u32 {
        let mut h = 0;
        for (table, &b) in self.tables.iter().zip(input) {
            h ^= table[usize::from(b)];
        }
        h
    }
}

/// The shared hasher for [`SYMMETRIC_RSS_KEY`], built on first use.
#[inline]
pub fn symmetric() -> &'static Toeplitz {
    static H: std::sync::OnceLock<Toeplitz> = std::sync::OnceLock::new();
    H.get_or_init(|| Toeplitz::new(&SYMMETRIC_RSS_KEY))
}

/// The shared hasher for [`MICROSOFT_RSS_KEY`], built on first use.
pub fn microsoft() -> &'static Toeplitz {
    static H: std::sync::OnceLock<Toeplitz> = std::sync::OnceLock::new();
    H.get_or_init(|| Toeplitz::new(&MICROSOFT_RSS_KEY))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(src: &str, sport: u16, dst: &str, dport: u16) -> (Vec<u8>, Vec<u8>) {
        let s: Ipv4Addr = src.parse().unwrap();
        let d: Ipv4Addr = dst.parse().unwrap();
        let mut ip = s.octets().to_vec();
        ip.extend_from_slice(&d.octets());
        let mut l4 = ip.clone();
        l4.extend_from_slice(&sport.to_be_bytes());
        l4.extend_from_slice(&dport.to_be_bytes());
        (ip, l4)
    }

    fn v6(src: &str, sport: u16, dst: &str, dport: u16) -> (Vec<u8>, Vec<u8>) {
        let s: Ipv6Addr = src.parse().unwrap();
        let d: Ipv6Addr = dst.parse().unwrap();
        let mut ip = s.octets().to_vec();
        ip.extend_from_slice(&d.octets());
        let mut l4 = ip.clone();
        l4.extend_from_slice(&sport.to_be_bytes());
        l4.extend_from_slice(&dport.to_be_bytes());
        (ip, l4)
    }

    /// Microsoft's published verification vectors (IPv4: addresses only, and with TCP ports).
    #[test]
    fn microsoft_ipv4_vectors() {
        let h = microsoft();
        let cases = [
            (
                "66.9.149.187",
                2794,
                "161.142.100.80",
                1766,
                0x323e8fc2u32,
                0x51ccc178u32,
            ),
            (
                "199.92.111.2",
                14230,
                "65.69.140.83",
                4739,
                0xd718262a,
                0xc626b0ea,
            ),
            (
                "24.19.198.95",
                12898,
                "12.22.207.184",
                38024,
                0xd2d0a5de,
                0x5c2b394a,
            ),
            (
                "38.27.205.30",
                48228,
                "209.142.163.6",
                2217,
                0x82989176,
                0xafc7327f,
            ),
            (
                "153.39.163.191",
                44251,
                "202.188.127.2",
                1303,
                0x5d1809c5,
                0x10e828a2,
            ),
        ];
        for (s, sp, d, dp, ip_hash, tcp_hash) in cases {
            let (ip, l4) = v4(s, sp, d, dp);
            assert_eq!(h.hash(&ip), ip_hash, "{s} -> {d}");
            assert_eq!(h.hash(&l4), tcp_hash, "{s}:{sp} -> {d}:{dp}");
        }
    }

    /// Microsoft's published verification vectors for IPv6.
    #[test]
    fn microsoft_ipv6_vectors() {
        let h = microsoft();
        let cases = [
            (
                "3ffe:2501:200:1fff::7",
                2794,
                "3ffe:2501:200:3::1",
                1766,
                0x2cc18cd5u32,
                0x40207d3du32,
            ),
            (
                "3ffe:501:8::260:97ff:fe40:efab",
                14230,
                "ff02::1",
                4739,
                0x0f0c461c,
                0xdde51bbf,
            ),
            (
                "3ffe:1900:4545:3:200:f8ff:fe21:67cf",
                44251,
                "fe80::200:f8ff:fe21:67cf",
                38024,
                0x4b61e985,
                0x02d1feef,
            ),
        ];
        for (s, sp, d, dp, ip_hash, tcp_hash) in cases {
            let (ip, l4) = v6(s, sp, d, dp);
            assert_eq!(h.hash(&ip), ip_hash, "{s} -> {d}");
            assert_eq!(h.hash(&l4), tcp_hash, "{s}:{sp} -> {d}:{dp}");
        }
    }

    #[test]
    fn symmetric_key_is_symmetric() {
        let h = symmetric();
        let (_, a) = v4("10.0.0.1", 1234, "10.0.0.2", 80);
        let (_, b) = v4("10.0.0.2", 80, "10.0.0.1", 1234);
        assert_eq!(h.hash(&a), h.hash(&b));
    }

    /// With the symmetric key, the two-lookup hash equals the byte-by-byte hash for inputs of every length
    /// (and past the tables' reach); the Microsoft key does not repeat and takes the byte-by-byte path.
    #[test]
    fn the_folded_hash_equals_the_bytewise_hash_for_a_periodic_key() {
        let sym = Toeplitz::new(&SYMMETRIC_RSS_KEY);
        let ms = Toeplitz::new(&MICROSOFT_RSS_KEY);
        assert!(sym.periodic16 && !ms.periodic16);
        let mut x: u64 = 0x1234_5678_9abc_def1;
        for len in 0..=40 {
            for _ in 0..200 {
                let input: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect();
                assert_eq!(sym.hash(&input), sym.hash_bytes(&input), "length {len}");
                assert_eq!(ms.hash(&input), ms.hash_bytes(&input), "length {len}");
            }
        }
    }
}
