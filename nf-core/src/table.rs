//! The one open-addressing table of the SDK: what the data plane's flow tables
//! ([`StateTable`](crate::state::StateTable)) and `nf-state`'s in-memory stores are built on.
//!
//! One array of slots holds the entries themselves (linear probing; deletion by backward shift, so there
//! are no tombstones): a lookup touches one place in memory, and where a key's probe starts is a plain
//! address known from its hash alone, so that a batch can load ahead what its lookups will touch
//! ([`RawTable::prefetch`]). Every entry lies within [`PROBE_LIMIT`] slots of where its probe starts (its
//! *home*), so a lookup, a placement and a removal each visit at most that many slots whatever the keys:
//! an adversary who could aim keys at one home (a hash flood) makes the table refuse or evict, never
//! makes a packet walk a long chain. The table neither hashes nor compares keys: entries carry the hash
//! they were placed by ([`Placed`]), and callers say which entry they look for.
//!
//! The policy (how full, when to grow, what to evict) is the owner's: a flow table bounds its entries and
//! evicts; a store's table grows.

/// The most slots any operation of a [`RawTable`] visits from a key's home: every entry lies within this
/// many slots of it. With keys spread by a keyed hash and at most 3/4 of the slots used, a probe longer
/// than 64 is rare (about 3 placements in 10,000 in a table filled to exactly 3/4, none at 1/2); with
/// keys aimed at one place it caps the work of every operation.
pub const PROBE_LIMIT: usize = 64;

/// An entry of a [`RawTable`]: the hash it is placed by (the table uses its low bits).
pub trait Placed {
    /// The hash the entry was placed by.
    fn placed_by(&self) -> u64;
}

/// An open-addressing table of `T` with bounded probes (see the [module](self)).
pub struct RawTable<T> {
    slots: Vec<Option<T>>,
    len: usize,
}

impl<T> std::fmt::Debug for RawTable<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawTable")
            .field("len", &self.len)
            .field("slots", &self.slots.len())
            .finish()
    }
}

impl<T> Default for RawTable<T> {
    fn default() -> Self {
        RawTable {
            slots: Vec::new(),
            len: 0,
        }
    }
}

/// `n` empty slots; a large array is asked to live in huge pages (random probes then miss the TLB far
/// less).
fn empty_slots<T>(n: usize) -> Vec<Option<T>> {
    let mut v = Vec::with_capacity(n);
    crate::huge_pages_unsafe::advise(&mut v);
    v.resize_with(n, || None);
    v
}

impl<T: Placed> RawTable<T> {
    /// A table of `slots` slots (rounded up to a power of two; 0 is a table without slots, which finds
    /// nothing and has no room until it is [rebuilt](Self::rebuild)).
    pub fn with_slots(slots: usize) -> Self {
        let n = if slots == 0 {
            0
        } else {
            slots.next_power_of_two()
        };
        RawTable {
            slots: empty_slots(n),
            len: 0,
        }
    }

    /// Entries.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if there are no entries.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Slots (a power of two, or 0).
    #[inline]
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// `slots() - 1`: the mask of a home.
    #[inline(always)]
    pub fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    /// Where the probe for `hash` starts.
    #[inline(always)]
    pub fn home(&self, hash: u64) -> usize {
        hash as usize & self.mask()
    }

    /// How far slot `i`'s entry lies from its home (slots).
    #[inline]
    fn displacement(&self, i: usize, e: &T) -> usize {
        i.wrapping_sub(e.placed_by() as usize) & self.mask()
    }

    /// The slot of the entry that `is` picks among those the probe for `hash` meets, if any (at most
    /// [`PROBE_LIMIT`] slots, fewer if an empty slot ends the probe).
    #[inline(always)]
    pub fn find(&self, hash: u64, mut is: impl FnMut(&T) -> bool) -> Option<usize> {
        let mask = self.mask();
        let mut i = hash as usize & mask;
        for _ in 0..PROBE_LIMIT {
            match self.slots.get(i)? {
                None => return None,
                Some(e) if is(e) => return Some(i),
                Some(_) => i = (i + 1) & mask,
            }
        }
        None
    }

    /// The first free slot of `hash`'s probe window, if it has one.
    #[inline]
    pub fn free_slot(&self, hash: u64) -> Option<usize> {
        let mask = self.mask();
        let mut i = hash as usize & mask;
        for _ in 0..PROBE_LIMIT {
            match self.slots.get(i)? {
                None => return Some(i),
                Some(_) => i = (i + 1) & mask,
            }
        }
        None
    }

    /// The occupied slots of `hash`'s probe window (all [`PROBE_LIMIT`] of them when the window is full:
    /// a caller that must make room there picks its victim among them).
    pub fn window(&self, hash: u64) -> impl Iterator<Item = (usize, &T)> {
        let mask = self.mask();
        let home = hash as usize & mask;
        (0..PROBE_LIMIT.min(self.slots.len()))
            .map(move |d| (home + d) & mask)
            .filter_map(|i| Some((i, self.slots.get(i)?.as_ref()?)))
    }

    /// Puts `e` into slot `i`, which must be empty and in the probe window of `e`'s hash (from
    /// [`free_slot`](Self::free_slot), or emptied by [`vacate`](Self::vacate)). Returns false
    /// (and puts nothing) if `i` is taken or out of range.
    #[inline]
    pub fn put(&mut self, i: usize, e: T) -> bool {
        match self.slots.get_mut(i) {
            Some(s @ None) => {
                *s = Some(e);
                self.len += 1;
                true
            }
            _ => false,
        }
    }

    /// Takes the entry out of slot `i` *without* closing the gap: the caller puts an entry whose probe
    /// window holds `i` there ([`put`](Self::put)) before any other operation (until then a probe that
    /// passed the slot may stop early). How a full window makes room without moving anything.
    pub fn vacate(&mut self, i: usize) -> Option<T> {
        let e = self.slots.get_mut(i)?.take()?;
        self.len -= 1;
        Some(e)
    }

    /// The entry in slot `i`.
    #[inline(always)]
    pub fn get(&self, i: usize) -> Option<&T> {
        self.slots.get(i)?.as_ref()
    }

    /// The entry in slot `i`, mutable (its hash must not change).
    #[inline(always)]
    pub fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.slots.get_mut(i)?.as_mut()
    }

    /// Starts loading the slot where the probe for `hash` starts.
    #[inline(always)]
    pub fn prefetch(&self, hash: u64) {
        if let Some(s) = self.slots.get(hash as usize & self.mask()) {
            crate::prefetch_unsafe::prefetch_all(s);
        }
    }

    /// Starts loading slots `from..from + n` (a sweep's next ones).
    #[inline]
    pub fn prefetch_range(&self, from: usize, n: usize) {
        if let Some(s) = self.slots.get(from..(from + n).min(self.slots.len())) {
            crate::prefetch_unsafe::prefetch_all(s);
        }
    }

    /// Empties slot `i` and closes the gap (Knuth's algorithm R for linear probing: the entries after
    /// it that may move back toward their home do). No entry further than [`PROBE_LIMIT`] past the gap
    /// can move into it, so the walk stops there.
    pub fn take(&mut self, i: usize) -> Option<T> {
        let e = self.slots.get_mut(i)?.take()?;
        self.len -= 1;
        let mask = self.mask();
        let mut gap = i;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            if (j.wrapping_sub(gap) & mask) >= PROBE_LIMIT {
                break;
            }
            let home = match self.slots.get(j) {
                Some(Some(x)) => x.placed_by() as usize & mask,
                _ => break,
            };
            // The entry at j may move to the gap unless its home lies cyclically in (gap, j].
            let stays = if gap <= j {
                gap < home && home <= j
            } else {
                gap < home || home <= j
            };
            if !stays {
                let moved = self.slots.get_mut(j).and_then(Option::take);
                if let Some(s) = self.slots.get_mut(gap) {
                    *s = moved;
                }
                gap = j;
            }
        }
        Some(e)
    }

    /// Moves every entry into a new array of `slots` slots (a power of two), each by its stored hash;
    /// an entry that finds no free slot within [`PROBE_LIMIT`] of its new home is handed to `overflow`.
    /// Entries are read in order and placed at random: each new slot is prefetched some entries ahead.
    pub fn rebuild(&mut self, slots: usize, mut overflow: impl FnMut(T)) {
        const AHEAD: usize = 16;
        let n = slots.max(1).next_power_of_two();
        let old = std::mem::replace(&mut self.slots, empty_slots(n));
        self.len = 0;
        let mut moving = old.into_iter().flatten();
        let mut window: std::collections::VecDeque<T> =
            std::collections::VecDeque::with_capacity(AHEAD + 1);
        loop {
            while window.len() < AHEAD {
                match moving.next() {
                    Some(e) => {
                        self.prefetch(e.placed_by());
                        window.push_back(e);
                    }
                    None => break,
                }
            }
            let Some(e) = window.pop_front() else { break };
            match self.free_slot(e.placed_by()) {
                Some(i) => {
                    self.put(i, e);
                }
                None => overflow(e),
            }
        }
    }

    /// Every entry, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().flatten()
    }

    /// Removes every entry (the slots stay).
    pub fn clear(&mut self) {
        for s in self.slots.iter_mut() {
            *s = None;
        }
        self.len = 0;
    }

    /// The farthest any entry lies from its home (slots): always under [`PROBE_LIMIT`]. A diagnostic
    /// (it reads every slot).
    pub fn max_displacement(&self) -> usize {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|e| self.displacement(i, e)))
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct E {
        hash: u64,
        key: u32,
    }
    impl Placed for E {
        fn placed_by(&self) -> u64 {
            self.hash
        }
    }

    fn insert(t: &mut RawTable<E>, e: E) -> bool {
        match t.free_slot(e.hash) {
            Some(i) => t.put(i, e),
            None => false,
        }
    }

    #[test]
    fn matches_a_model_with_wrap_around_and_collisions() {
        let mut t: RawTable<E> = RawTable::with_slots(64);
        let mut model = std::collections::HashMap::new();
        let mut x = 3u64;
        for _ in 0..50_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = (x % 60) as u32;
            // Homes near the end of the array, so that probes wrap.
            let hash = 56 + u64::from(key % 13);
            let found = t.find(hash, |e| e.key == key);
            if x.is_multiple_of(3) {
                assert_eq!(found.is_some(), model.remove(&key).is_some());
                if let Some(i) = found {
                    assert_eq!(t.take(i).map(|e| e.key), Some(key));
                }
            } else if found.is_none() && model.len() < 40 {
                assert!(insert(&mut t, E { hash, key }));
                model.insert(key, ());
            }
            assert_eq!(t.len(), model.len());
            assert!(t.max_displacement() < PROBE_LIMIT);
        }
        for k in model.keys() {
            assert!(t.find(56 + u64::from(k % 13), |e| e.key == *k).is_some());
        }
    }

    #[test]
    fn a_full_window_has_no_free_slot_and_rebuild_spreads_it() {
        let mut t: RawTable<E> = RawTable::with_slots(1024);
        for key in 0..PROBE_LIMIT as u32 {
            assert!(insert(&mut t, E { hash: 5, key }));
        }
        assert_eq!(t.free_slot(5), None);
        assert_eq!(t.window(5).count(), PROBE_LIMIT);
        // The slot after the window is free for a key whose home is there.
        assert!(t.free_slot(5 + PROBE_LIMIT as u64).is_some());
        // A rebuild keeps the entries that fit: all of them here (one home, an empty table).
        let mut lost = 0;
        t.rebuild(2048, |_| lost += 1);
        assert_eq!((t.len(), lost), (PROBE_LIMIT, 0));
        assert!(t.find(5, |e| e.key == 7).is_some());
        // Making room in a full window moves nothing else.
        let i = t.find(5, |e| e.key == 9).unwrap();
        assert_eq!(t.vacate(i).map(|e| e.key), Some(9));
        assert!(t.put(i, E { hash: 5, key: 999 }));
        assert!(t.find(5, |e| e.key == 999).is_some());
        assert!(t.find(5, |e| e.key == PROBE_LIMIT as u32 - 1).is_some());
        assert_eq!(t.len(), PROBE_LIMIT);
    }

    #[test]
    fn an_empty_table_finds_nothing_and_has_no_room() {
        let t: RawTable<E> = RawTable::with_slots(0);
        assert_eq!(t.find(1, |_| true), None);
        assert_eq!(t.free_slot(1), None);
        assert_eq!(t.window(1).count(), 0);
        t.prefetch(1);
    }
}
