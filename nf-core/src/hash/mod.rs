//! The hashes of the SDK, each named by its job; nothing else in the workspace computes a hash.
//!
//! - **Dispatch** ([`toeplitz`]: which core or queue a flow goes to): the symmetric Toeplitz hash, as a
//!   NIC computes RSS, so that software and hardware dispatch agree. Its key is public (it is the NIC's),
//!   so it must never place keys in a table.
//! - **Table placement** ([`HashKey::process`], [`crate::FlowKey::table_hash`]): a keyed hash whose key is
//!   drawn from the operating system's randomness when the process starts and never leaves it. The flow
//!   tables of the data plane ([`StateTable`](crate::state::StateTable)) place keys that senders choose;
//!   with an unkeyed hash, anyone who reads this source can search offline for five-tuples that share a
//!   probe chain and make every lookup walk it (hash flooding). Without the key no such search is
//!   possible.
//! - **Agreement on flows** ([`HashKey::parse`], [`crate::FlowKey::keyed_hash`]): where several boxes must
//!   compute the same hash of a flow (Maglev's choice of backend, so that a minion or a pool member picks
//!   the backend the primary picked), the key is shared and configured by the operator (an argument, kept
//!   out of logs: [`HashKey`]'s `Debug` prints no key material), never a constant in the source.
//! - **Stable names and bytes** ([`StableHasher`], [`stable_hash`]): a fixed, documented function of
//!   bytes for what must come out the same in every process and version but is not chosen by a sender:
//!   Maglev's permutation of backend names, `HashSwitch`'s choice of output, payload fingerprints of the
//!   observation driver. FNV-1a over the bytes, finished by [`mix64`].
//! - **Mixing** ([`mix64`], [`splitmix64`]): SplitMix64's finaliser and generator step, for spreading a
//!   value that is already a hash (Blink's flow cells, VXLAN's source-port entropy) and for expanding a
//!   seed into constants (key words, the chunker's table); [`xorshift64_star`] for choices that need no
//!   secrecy (a random backend, a random port, synthetic traffic).
//! - **Maps of trusted keys** ([`MulHasher`]): a one-multiply `std::hash::Hasher` for `HashMap`s whose keys
//!   the operator chooses (the prefixes of a routing table), never for keys a sender chooses.
//!
//! The keyed function is NH (the universal hash of UMAC, RFC 4418) over the flow key's ten 32-bit words,
//! each source word paired with the destination word at the same place and the ports with the protocol
//! word, `s = Σ (aᵢ + k2ᵢ mod 2³²) · (bᵢ + k2ᵢ₊₁ mod 2³²)`, finished by folding `s` (with the key's last
//! word) to 32 bits and keeping the high half of its product with an odd constant. For any two distinct
//! keys the NH sums are equal with probability at most 2⁻³² over the choice of the key, so without the
//! key an attacker cannot pick flows that collide (in the sum, or, after the finish, in a table's low
//! bits) more often than chance. An IPv4 key's six other
//! words are zero (their terms are a constant, left out), so its hash is two multiplications and the
//! finish's one: as many as the unkeyed mix it replaced (see BENCHMARKS.md, "Hash flooding").
//!
//! What the key does not protect: an attacker who learns it (by reading the process's memory, or, for
//! an agreed key, from any box or configuration holding it) can again aim flows at one probe chain. The
//! tables bound every probe ([`PROBE_LIMIT`](crate::state::PROBE_LIMIT)), so even then a lookup does bounded
//! work and the damage is the eviction of entries in that chain's window, not a stalled core.

pub mod toeplitz;

use std::fmt;
use std::sync::OnceLock;

/// A key of the keyed flow hash: 384 bits of key material (NH's ten 32-bit words and the finish's
/// word), expanded from 128 secret bits.
///
/// `Debug` prints no key material, so a key can sit in a configuration struct that is logged.
#[derive(Clone, PartialEq, Eq)]
pub struct HashKey {
    /// NH's key words: for word `i` of the input, the low half is added to `nh[i]`'s low 32 bits, the
    /// high half to its high 32 bits.
    nh: [u64; 5],
    fin: u64,
}

impl fmt::Debug for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HashKey(..)")
    }
}

/// A configured key that is not 32 hexadecimal digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a hash key is 32 hexadecimal digits (128 bits), not {len} characters of this form")]
pub struct HashKeyError {
    /// Characters given.
    pub len: usize,
}

/// The golden-ratio increment of SplitMix64 (2⁶⁴ / φ, odd).
pub const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's finaliser (Stafford's "variant 13"): a bijection of 64-bit words in which every input
/// bit reaches every output bit. For spreading a value that is already a hash, or a counter.
#[inline(always)]
pub const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// SplitMix64's generator step: advances `state` by [`GOLDEN`] and returns its [`mix64`]. Expands a
/// seed into as many well-spread words as wanted (stable across versions and platforms, so that boxes
/// configured with the same secret derive the same key).
#[inline]
pub const fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(GOLDEN);
    mix64(*state)
}

/// One step of xorshift64* (Vigna): a fast generator for choices that need no secrecy (a balancer's
/// random backend, a NAT's random port, synthetic traffic). `state` must not be 0 (seed it odd).
#[inline]
pub const fn xorshift64_star(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// Lemire's multiply-shift reduction: `hash` mapped onto `0..n` by its high bits (no division; uniform
/// when `hash` is).
#[inline(always)]
pub const fn reduce(hash: u64, n: usize) -> usize {
    ((hash as u128 * n as u128) >> 64) as usize
}

/// The stable hash of bytes: FNV-1a, finished by [`mix64`]. Its constants and its output are part of the
/// SDK's contract (boxes and versions must agree), so they never change within a major version.
///
/// ```
/// use nf_core::hash::{StableHasher, stable_hash};
/// let mut h = StableHasher::with_seed(7);
/// h.write(b"10.1.0.1:");
/// h.write(b"8080");
/// assert_eq!(h.finish(), stable_hash(7, b"10.1.0.1:8080"));
/// assert_eq!(stable_hash(0, b""), nf_core::hash::mix64(0xcbf2_9ce4_8422_2325));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StableHasher(u64);

impl StableHasher {
    /// FNV-1a's offset basis.
    pub const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    /// FNV-1a's 64-bit prime.
    pub const PRIME: u64 = 0x0100_0000_01b3;

    /// A hasher with no seed.
    #[inline]
    pub const fn new() -> Self {
        StableHasher(Self::OFFSET)
    }

    /// A hasher whose output depends on `seed` too (independent permutations from one input).
    #[inline]
    pub const fn with_seed(seed: u64) -> Self {
        StableHasher(Self::OFFSET ^ seed.wrapping_mul(GOLDEN))
    }

    /// Feeds bytes.
    #[inline]
    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u8(b);
        }
    }

    /// Feeds one byte.
    #[inline(always)]
    pub fn write_u8(&mut self, b: u8) {
        self.0 = (self.0 ^ u64::from(b)).wrapping_mul(Self::PRIME);
    }

    /// The hash of what was fed.
    #[inline]
    pub const fn finish(&self) -> u64 {
        mix64(self.0)
    }
}

impl Default for StableHasher {
    fn default() -> Self {
        Self::new()
    }
}

/// [`StableHasher`] over `bytes` with `seed`, in one call.
#[inline]
pub fn stable_hash(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = StableHasher::with_seed(seed);
    h.write(bytes);
    h.finish()
}

/// A one-multiply [`std::hash::Hasher`] for maps whose keys the operator chooses (configuration
/// prefixes); a sender-chosen key belongs in a table placed by the keyed hash instead. Use it as
/// `HashMap<K, V, BuildMulHasher>`.
#[derive(Default, Clone, Copy, Debug)]
pub struct MulHasher(u64);

/// The `BuildHasher` of [`MulHasher`].
pub type BuildMulHasher = std::hash::BuildHasherDefault<MulHasher>;

impl std::hash::Hasher for MulHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(GOLDEN);
        }
    }
    #[inline]
    fn write_u32(&mut self, v: u32) {
        self.0 = (self.0 ^ u64::from(v)).wrapping_mul(GOLDEN);
    }
    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v).wrapping_mul(GOLDEN);
    }
    #[inline]
    fn write_u128(&mut self, v: u128) {
        self.write_u64(v as u64);
        self.write_u64((v >> 64) as u64);
    }
}

impl HashKey {
    /// The key derived from 128 secret bits (the same secret gives the same key everywhere).
    pub fn from_secret(secret: u128) -> Self {
        let mut a = secret as u64;
        let mut b = (secret >> 64) as u64;
        let mut next = || splitmix64(&mut a) ^ splitmix64(&mut b).rotate_left(29);
        HashKey {
            nh: [next(), next(), next(), next(), next()],
            fin: next(),
        }
    }

    /// A key from 32 hexadecimal digits (an operator's configured, shared key; generate one with
    /// `openssl rand -hex 16` or `od -An -tx1 -N16 /dev/urandom | tr -d ' \n'`).
    pub fn parse(hex: &str) -> Result<Self, HashKeyError> {
        let hex = hex.trim();
        if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(HashKeyError { len: hex.len() });
        }
        u128::from_str_radix(hex, 16)
            .map(Self::from_secret)
            .map_err(|_| HashKeyError { len: hex.len() })
    }

    /// A fresh key from the operating system's randomness (std's `RandomState`, whose keys the OS
    /// supplies).
    pub fn random() -> Self {
        use std::hash::BuildHasher;
        let s = std::collections::hash_map::RandomState::new();
        let secret =
            u128::from(s.hash_one(0x6e66_u64)) | u128::from(s.hash_one(0x006b_6579_u64)) << 64;
        Self::from_secret(secret)
    }

    /// This process's table key: drawn once, at first use, from the operating system, and never shown
    /// (not in logs, not in handlers). Every flow table of the data plane places keys with it.
    #[inline(always)]
    pub fn process() -> &'static HashKey {
        static KEY: OnceLock<HashKey> = OnceLock::new();
        KEY.get_or_init(HashKey::random)
    }

    /// NH's term for input pair `i` (0 to 4): `(a + k) · (b + k')` with the additions modulo 2³² and the
    /// product in 64 bits. A hash adds the terms of its pairs (each 32-bit input word in one pair) and
    /// [`finish`](Self::finish)es the sum; pairs whose words are fixed may be left out (they add a
    /// constant).
    #[inline(always)]
    pub fn pair(&self, i: usize, a: u32, b: u32) -> u64 {
        let k = self.nh[i % 5];
        u64::from(a.wrapping_add(k as u32)) * u64::from(b.wrapping_add((k >> 32) as u32))
    }

    /// The hash from a sum of [`pair`](Self::pair) terms: the sum (with the key's last word) folded to 32
    /// bits, multiplied by an odd constant, and the product's high half taken, so that every bit of the
    /// sum reaches the low bits tables index by. Keys that differ in one or two words (the clients of one
    /// server: addresses and ports) land as a random hash would put them: in a table 3/4 full the mean
    /// probe and the share of full probe windows match random placement (0.025 %). A stronger finaliser
    /// would cost two multiplications more a packet for no better spread (BENCHMARKS.md, "Hash
    /// flooding").
    #[inline(always)]
    pub fn finish(&self, s: u64) -> u32 {
        let x = s ^ self.fin;
        ((x ^ (x >> 32)).wrapping_mul(GOLDEN) >> 32) as u32
    }

    /// The keyed hash of one 64-bit word.
    #[inline]
    pub fn hash_u64(&self, x: u64) -> u32 {
        self.finish(self.pair(0, x as u32, (x >> 32) as u32))
    }
}

static AGREED: OnceLock<HashKey> = OnceLock::new();

/// Sets this process's agreed key: the key of the hashes that boxes must compute alike (Maglev's choice
/// of backend in `LoadBalancer` and `AnantaMux`, unless an element is given its own `HASH_KEY`). Call
/// it once, before building graphs (elements copy the key when they are made); a second call is
/// refused and returns the key it was given.
pub fn set_agreed(key: HashKey) -> Result<(), HashKey> {
    AGREED.set(key)
}

/// This process's agreed key: the one [`set_agreed`] set or, if none was, the process's secret table key
/// (then no other process agrees with this one: configure a key wherever boxes must agree).
pub fn agreed() -> &'static HashKey {
    AGREED.get().unwrap_or_else(|| HashKey::process())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_key_is_stable_and_parsed() {
        let a = HashKey::parse("00112233445566778899aabbccddeeff").unwrap();
        let b = HashKey::parse(" 00112233445566778899AABBCCDDEEFF\n").unwrap();
        assert_eq!(a, b);
        // The derivation is part of the contract (boxes built from different versions must agree).
        assert_eq!(a.hash_u64(0x0102_0304_0506_0708), 0xee71_8427);
        assert_eq!(format!("{a:?}"), "HashKey(..)");
        assert!(HashKey::parse("0011").is_err());
        assert!(HashKey::parse("zz112233445566778899aabbccddeeff").is_err());
        assert!(HashKey::parse("+0112233445566778899aabbccddeeff").is_err());
    }

    #[test]
    fn the_stable_hash_is_the_documented_function() {
        // FNV-1a then SplitMix64's finaliser, computed independently (Python) for these values: boxes
        // of every version must agree on them.
        assert_eq!(stable_hash(0, b"10.1.0.1:8080"), 0xa151_89ca_aa4e_ce9c);
        assert_eq!(stable_hash(7, b"a"), 0xdc2a_374b_7edf_4569);
        let mut st = 0;
        assert_eq!(splitmix64(&mut st), 0xe220_a839_7b1d_cdaf); // SplitMix64's first output from 0
        assert_eq!(reduce(u64::MAX, 10), 9);
        assert_eq!(reduce(0, 10), 0);
    }

    #[test]
    fn keys_change_the_hash() {
        let a = HashKey::from_secret(1);
        let b = HashKey::from_secret(2);
        let differ = (0..1000u64)
            .filter(|&i| a.hash_u64(i * 7) != b.hash_u64(i * 7))
            .count();
        assert!(differ > 990, "{differ}");
        assert_ne!(HashKey::random(), HashKey::random());
        assert_eq!(HashKey::process(), HashKey::process());
    }

    #[test]
    fn flows_that_collide_without_a_key_spread_with_one() {
        // Inputs whose unkeyed sums are equal (lo*hi the same for every pair) land spread out under a key.
        let k = HashKey::from_secret(0x5eed);
        let mut buckets = [0u32; 64];
        let zero = HashKey { nh: [0; 5], fin: 0 };
        let mut same = 0;
        for i in 1..=4096u32 {
            // The same product under a zero key: (i, 4096 * 3 / i) for every i dividing 12288 and
            // (3i, 4096 / i) likewise; here simply (i, 0) and (0, i): zero under a zero key.
            let (a, b) = if i % 2 == 0 { (i, 0) } else { (0, i) };
            same += u32::from(zero.finish(zero.pair(0, a, b)) == zero.finish(0));
            buckets[(k.finish(k.pair(0, a, b)) & 63) as usize] += 1;
        }
        assert_eq!(same, 4096, "all collide without a key");
        let max = *buckets.iter().max().unwrap();
        assert!(max < 64 * 2 + 40, "{buckets:?}");
    }
}
