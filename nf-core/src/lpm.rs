//! Longest-prefix match over IPv4 and IPv6 prefixes.
//!
//! IPv4 uses a three-level direct table (16, 8 and 8 bits, in the manner of DIR-24-8 but smaller): a lookup
//! is one to three array reads, with no hashing, whatever the number of prefixes; the first level is 256 KiB,
//! each /16 holding longer prefixes adds a 1 KiB block, each /24 holding longer ones another. The table is
//! rebuilt from the prefix list on every change (changes are control-plane events). IPv6 uses one hash map
//! per prefix length in use, probed from the longest length down.
//!
//! ```
//! use nf_core::lpm::{Prefix, PrefixMap};
//! let mut m = PrefixMap::new();
//! m.insert("10.0.0.0/8".parse::<Prefix>().unwrap(), "wide");
//! m.insert("10.1.0.0/16".parse::<Prefix>().unwrap(), "narrow");
//! assert_eq!(m.lookup("10.1.2.3".parse().unwrap()), Some(&"narrow"));
//! assert_eq!(m.lookup("10.2.0.1".parse().unwrap()), Some(&"wide"));
//! assert_eq!(m.lookup("11.0.0.1".parse().unwrap()), None);
//! ```

use crate::wire::prefix_masks::v6_mask;
pub use crate::wire::{IpPrefix as Prefix, PrefixError};
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The levels are maps of masked addresses the operator configured: a one-multiply hasher suits them.
type AddrMap<K, V> = HashMap<K, V, crate::hash::BuildMulHasher>;

/// An entry of the IPv4 table: 0 (no prefix), `PTR | block` (look at the next level), or `index + 1` of
/// the prefix in the list.
const PTR: u32 = 1 << 31;

/// The IPv4 direct table.
#[derive(Clone, Default)]
struct V4Table {
    l1: Vec<u32>,
    l2: Vec<u32>,
    l3: Vec<u32>,
}

impl V4Table {
    fn build(prefixes: &[(u32, u8)]) -> V4Table {
        if prefixes.is_empty() {
            return V4Table::default();
        }
        let mut t = V4Table {
            l1: vec![0; 1 << 16],
            l2: Vec::new(),
            l3: Vec::new(),
        };
        let mut order: Vec<usize> = (0..prefixes.len()).collect();
        order.sort_by_key(|&i| prefixes[i].1);
        for i in order {
            let (addr, len) = prefixes[i];
            let v = i as u32 + 1;
            let len = u32::from(len);
            if len <= 16 {
                let first = (addr >> 16) as usize;
                let n = 1usize << (16 - len);
                // Painted shortest first: no block exists yet under a prefix this short.
                t.l1[first..first + n].fill(v);
                continue;
            }
            let b2 = t.block2(addr);
            if len <= 24 {
                let first = ((addr >> 8) & 0xff) as usize;
                let n = 1usize << (24 - len);
                t.l2[b2 * 256 + first..b2 * 256 + first + n].fill(v);
                continue;
            }
            let b3 = t.block3(b2, addr);
            let first = (addr & 0xff) as usize;
            let n = 1usize << (32 - len);
            t.l3[b3 * 256 + first..b3 * 256 + first + n].fill(v);
        }
        t
    }

    /// The level-2 block under `addr`'s /16, made (inheriting the /16's value) if there is none.
    fn block2(&mut self, addr: u32) -> usize {
        let i = (addr >> 16) as usize;
        let e = self.l1[i];
        if e & PTR != 0 {
            return (e & !PTR) as usize;
        }
        let b = self.l2.len() / 256;
        self.l2.extend(std::iter::repeat_n(e, 256));
        self.l1[i] = PTR | b as u32;
        b
    }

    /// The level-3 block under `addr`'s /24 in level-2 block `b2`, made if there is none.
    fn block3(&mut self, b2: usize, addr: u32) -> usize {
        let i = b2 * 256 + ((addr >> 8) & 0xff) as usize;
        let e = self.l2[i];
        if e & PTR != 0 {
            return (e & !PTR) as usize;
        }
        let b = self.l3.len() / 256;
        self.l3.extend(std::iter::repeat_n(e, 256));
        self.l2[i] = PTR | b as u32;
        b
    }

    #[inline]
    fn lookup(&self, ip: u32) -> u32 {
        let Some(&e) = self.l1.get((ip >> 16) as usize) else {
            return 0;
        };
        if e & PTR == 0 {
            return e;
        }
        let e = self.l2[(e & !PTR) as usize * 256 + ((ip >> 8) & 0xff) as usize];
        if e & PTR == 0 {
            return e;
        }
        self.l3[(e & !PTR) as usize * 256 + (ip & 0xff) as usize]
    }
}

/// A map from prefixes to values with longest-prefix-match lookup.
#[derive(Clone)]
pub struct PrefixMap<V> {
    /// The IPv4 prefixes (address, length) and their values, in insertion order; the table indexes them.
    v4: Vec<((u32, u8), V)>,
    v4_table: V4Table,
    /// IPv6: lengths in use, longest first, each with its map (masked address -> value).
    v6: Vec<(u8, AddrMap<u128, V>)>,
    len: usize,
}

impl<V> Default for PrefixMap<V> {
    fn default() -> Self {
        PrefixMap {
            v4: Vec::new(),
            v4_table: V4Table::default(),
            v6: Vec::new(),
            len: 0,
        }
    }
}

impl<V: fmt::Debug> fmt::Debug for PrefixMap<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

fn slot<K, V>(levels: &mut Vec<(u8, AddrMap<K, V>)>, len: u8) -> &mut AddrMap<K, V> {
    let i = match levels.iter().position(|(l, _)| *l <= len) {
        Some(i) if levels[i].0 == len => i,
        Some(i) => {
            levels.insert(i, (len, AddrMap::default()));
            i
        }
        None => {
            levels.push((len, AddrMap::default()));
            levels.len() - 1
        }
    };
    &mut levels[i].1
}

impl<V> PrefixMap<V> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of prefixes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if there are no prefixes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn rebuild_v4(&mut self) {
        let list: Vec<(u32, u8)> = self.v4.iter().map(|(k, _)| *k).collect();
        self.v4_table = V4Table::build(&list);
    }

    /// Sets the value of `prefix`, returning the old one. (Adding or removing an IPv4 prefix rebuilds the
    /// IPv4 table: cheap for hundreds of prefixes, meant for control-plane changes, not per packet.)
    pub fn insert(&mut self, prefix: Prefix, value: V) -> Option<V> {
        let old = match prefix.addr() {
            IpAddr::V4(a) => {
                let k = (u32::from(a), prefix.len());
                match self.v4.iter_mut().find(|(x, _)| *x == k) {
                    Some((_, v)) => Some(std::mem::replace(v, value)),
                    None => {
                        self.v4.push((k, value));
                        self.rebuild_v4();
                        None
                    }
                }
            }
            IpAddr::V6(a) => slot(&mut self.v6, prefix.len()).insert(u128::from(a), value),
        };
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes `prefix` (exactly), returning its value.
    pub fn remove(&mut self, prefix: &Prefix) -> Option<V> {
        let old = match prefix.addr() {
            IpAddr::V4(a) => {
                let k = (u32::from(a), prefix.len());
                let old = self
                    .v4
                    .iter()
                    .position(|(x, _)| *x == k)
                    .map(|i| self.v4.remove(i).1);
                if old.is_some() {
                    self.rebuild_v4();
                }
                old
            }
            IpAddr::V6(a) => self
                .v6
                .iter_mut()
                .find(|(l, _)| *l == prefix.len())
                .and_then(|(_, m)| m.remove(&u128::from(a))),
        };
        self.v6.retain(|(_, m)| !m.is_empty());
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// The value of the longest prefix that contains `ip`.
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> Option<&V> {
        match ip {
            IpAddr::V4(a) => self.lookup_v4(u32::from(a)),
            IpAddr::V6(a) => self.lookup_v6(u128::from(a)),
        }
    }

    /// [`PrefixMap::lookup`] for an IPv4 address as a number (host order).
    #[inline]
    pub fn lookup_v4(&self, ip: u32) -> Option<&V> {
        match self.v4_table.lookup(ip) {
            0 => None,
            e => self.v4.get(e as usize - 1).map(|(_, v)| v),
        }
    }

    /// [`PrefixMap::lookup`] for an IPv6 address as a number (host order).
    #[inline]
    pub fn lookup_v6(&self, ip: u128) -> Option<&V> {
        self.v6.iter().find_map(|(l, m)| m.get(&(ip & v6_mask(*l))))
    }

    /// Every prefix and its value (IPv4 in insertion order, then IPv6 longest first).
    pub fn iter(&self) -> impl Iterator<Item = (Prefix, &V)> {
        let v4 = self
            .v4
            .iter()
            .map(|((a, l), v)| (Prefix::from_masked(IpAddr::V4(Ipv4Addr::from(*a)), *l), v));
        let v6 = self.v6.iter().flat_map(|(l, m)| {
            m.iter()
                .map(move |(a, v)| (Prefix::from_masked(IpAddr::V6(Ipv6Addr::from(*a)), *l), v))
        });
        v4.chain(v6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_match_wins_and_removal_falls_back() {
        let mut m = PrefixMap::new();
        for (p, v) in [
            ("0.0.0.0/0", 0),
            ("10.0.0.0/8", 8),
            ("10.1.0.0/16", 16),
            ("10.1.2.0/24", 24),
            ("10.1.2.3/32", 32),
            ("2001:db8::/32", 132),
            ("2001:db8:1::/48", 148),
        ] {
            m.insert(p.parse().unwrap(), v);
        }
        let l = |a: &str| m.lookup(a.parse().unwrap()).copied();
        assert_eq!(l("10.1.2.3"), Some(32));
        assert_eq!(l("10.1.2.4"), Some(24));
        assert_eq!(l("10.1.3.4"), Some(16));
        assert_eq!(l("10.2.3.4"), Some(8));
        assert_eq!(l("11.0.0.0"), Some(0));
        assert_eq!(l("2001:db8:1::5"), Some(148));
        assert_eq!(l("2001:db8:2::5"), Some(132));
        assert_eq!(l("2001:db9::"), None);
        assert_eq!(m.len(), 7);
        assert_eq!(m.remove(&"10.1.2.0/24".parse().unwrap()), Some(24));
        assert_eq!(m.lookup("10.1.2.4".parse().unwrap()), Some(&16));
        assert_eq!(m.len(), 6);
        assert_eq!(m.iter().count(), 6);
    }

    proptest::proptest! {
        /// The direct table agrees with a linear longest-prefix search, through inserts and removals.
        #[test]
        fn the_v4_table_agrees_with_a_linear_search(
            prefixes in proptest::collection::vec((proptest::prelude::any::<u32>(), 0u8..=32), 1..40),
            probes in proptest::collection::vec(proptest::prelude::any::<u32>(), 64),
            remove in 0usize..40,
        ) {
            let mut m = PrefixMap::new();
            let mut list: Vec<Prefix> = Vec::new();
            for (i, (a, l)) in prefixes.iter().enumerate() {
                let p = Prefix::new(IpAddr::V4(Ipv4Addr::from(*a)), *l).unwrap();
                m.insert(p, i);
                match list.iter().position(|x| *x == p) {
                    Some(k) => list[k] = p,
                    None => list.push(p),
                }
            }
            if remove < list.len() {
                let p = list.remove(remove);
                m.remove(&p);
            }
            let value = |p: &Prefix| m.iter().find(|(q, _)| q == p).map(|(_, v)| *v);
            // Probes: random addresses, and each prefix's first and last address.
            let mut all: Vec<u32> = probes.clone();
            for p in &list {
                if let IpAddr::V4(a) = p.addr() {
                    all.push(u32::from(a));
                    all.push(u32::from(a) | !crate::wire::prefix_masks::v4_mask(p.len()));
                }
            }
            for ip in all {
                let want = list
                    .iter()
                    .filter(|p| p.contains(IpAddr::V4(Ipv4Addr::from(ip))))
                    .max_by_key(|p| p.len())
                    .and_then(value);
                proptest::prop_assert_eq!(m.lookup_v4(ip).copied(), want);
            }
        }
    }

    #[test]
    fn prefixes_are_masked_and_checked() {
        let p: Prefix = "10.1.2.3/8".parse().unwrap();
        assert_eq!(p.to_string(), "10.0.0.0/8");
        assert!(p.contains("10.200.0.1".parse().unwrap()));
        assert!(!p.contains("::1".parse().unwrap()));
        assert_eq!(
            "10.0.0.0/33".parse::<Prefix>(),
            Err(PrefixError::Length(33))
        );
        assert!("ten/8".parse::<Prefix>().is_err());
        assert_eq!("::1".parse::<Prefix>().unwrap().len(), 128);
    }
}
