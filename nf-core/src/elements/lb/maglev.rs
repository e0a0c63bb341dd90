//! Maglev consistent hashing (Eisenbud et al., NSDI'16): a lookup table of prime size `M` in which each
//! backend holds an (almost) equal share of entries, built from per-backend permutations so that every
//! instance with the same backends builds the same table, and a change of the backend set moves few
//! entries.

use std::fmt;

/// The default table size (prime).
pub const DEFAULT_SIZE: usize = 65_537;
/// The largest table [`MaglevTable::build`] makes (16 Mi entries, 64 MiB).
pub const MAX_SIZE: usize = 1 << 24;
/// The large table size option (prime).
pub const LARGE_SIZE: usize = 655_373;

/// Why a table cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MaglevError {
    /// No backend with a positive weight.
    #[error("no backend (with a positive weight)")]
    NoBackends,
    /// The size is not a prime larger than the number of backends (and at most [`MAX_SIZE`]).
    #[error(
        "table size {0} must be a prime larger than the number of backends and at most 16777216"
    )]
    BadSize(usize),
}

/// A backend of a Maglev table: a name (its address, usually) and a weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaglevBackend {
    /// The name the permutation is derived from (the same on every instance).
    pub name: String,
    /// Relative weight (0: no entries).
    pub weight: u32,
}

/// A Maglev lookup table.
#[derive(Clone)]
pub struct MaglevTable {
    entries: Vec<u32>,
    backends: Vec<MaglevBackend>,
}

impl fmt::Debug for MaglevTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaglevTable")
            .field("size", &self.entries.len())
            .field("backends", &self.backends.len())
            .finish()
    }
}

fn is_prime(n: usize) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

impl MaglevTable {
    /// Builds a table of `size` entries (a prime larger than the number of backends) for `backends`.
    ///
    /// Each backend's permutation is `offset + j * skip (mod M)` with `offset` and `skip` from two
    /// independent hashes of its name; backends take turns filling their next free preferred entry, a
    /// backend of weight `w` taking a turn in `w / max_weight` of the rounds.
    pub fn build(backends: &[MaglevBackend], size: usize) -> Result<MaglevTable, MaglevError> {
        let live: Vec<usize> = (0..backends.len())
            .filter(|&i| backends[i].weight > 0)
            .collect();
        if live.is_empty() {
            return Err(MaglevError::NoBackends);
        }
        if size > MAX_SIZE || !is_prime(size) || size <= backends.len() {
            return Err(MaglevError::BadSize(size));
        }
        let m = size as u64;
        let perm: Vec<(u64, u64)> = live
            .iter()
            .map(|&i| {
                let n = &backends[i].name;
                (
                    crate::hash::stable_hash(1, n.as_bytes()) % m,
                    crate::hash::stable_hash(2, n.as_bytes()) % (m - 1) + 1,
                )
            })
            .collect();
        let wmax = live.iter().map(|&i| backends[i].weight).max().unwrap_or(1) as u64;
        let mut next = vec![0u64; live.len()];
        let mut entries = vec![u32::MAX; size];
        let mut filled = 0usize;
        let mut round = 0u64;
        'fill: loop {
            for (k, &i) in live.iter().enumerate() {
                let w = u64::from(backends[i].weight);
                // A weighted turn: this round if the backend's credit crosses an integer.
                if w < wmax && (round + 1) * w / wmax == round * w / wmax {
                    continue;
                }
                let (offset, skip) = perm[k];
                let mut c = (offset + next[k] * skip) % m;
                while entries[c as usize] != u32::MAX {
                    next[k] += 1;
                    c = (offset + next[k] * skip) % m;
                }
                entries[c as usize] = i as u32;
                next[k] += 1;
                filled += 1;
                if filled == size {
                    break 'fill;
                }
            }
            round += 1;
        }
        Ok(MaglevTable {
            entries,
            backends: backends.to_vec(),
        })
    }

    /// The backend (index into the list given to [`build`](Self::build)) for a flow hash: entry
    /// `hash * M >> 32` (a multiply, not a division; uniform over the table).
    #[inline]
    pub fn lookup(&self, hash: u32) -> usize {
        let i = ((u64::from(hash) * self.entries.len() as u64) >> 32) as usize;
        self.entries[i] as usize
    }

    /// The table's size `M`.
    pub fn size(&self) -> usize {
        self.entries.len()
    }

    /// The backends.
    pub fn backends(&self) -> &[MaglevBackend] {
        &self.backends
    }

    /// The backend index of every entry.
    pub fn entries(&self) -> &[u32] {
        &self.entries
    }

    /// Entries per backend.
    pub fn counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.backends.len()];
        for &e in &self.entries {
            c[e as usize] += 1;
        }
        c
    }
}
