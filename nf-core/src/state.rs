//! The seam through which state leaves a stateful element, and the bounded table such elements keep it in.
//!
//! A stateful element (the connection tracker, a NAT, a load balancer) keeps its per-flow state in a
//! [`StateTable`]. Every insert, meaningful update and removal is reported to the table's [`StateSink`], if
//! one is attached (with none, the cost is one branch). A minion puts state back through
//! [`StateTable::install`], which does not report (the state came from elsewhere). Drivers in `nf-drivers`
//! attach sinks that turn changes into records for a state store.

use crate::flow::{HashedKey, PrehashedState};
use crate::packet::Timestamp;
use std::collections::HashMap;

/// Why an entry left a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RemoveReason {
    /// The flow ended (TCP FIN/RST handshake done).
    Closed,
    /// Idle past its timeout.
    Expired,
    /// Pushed out to make room (the table was full).
    Evicted,
    /// Removed by a handler or by the control plane.
    Deleted,
}

/// What happened to an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// A new entry.
    Insert,
    /// An entry whose value changed meaningfully (not every packet: a state transition).
    Update,
    /// An entry left the table.
    Remove(RemoveReason),
}

/// One change, borrowed from the table for the duration of the call.
#[derive(Debug)]
pub struct StateChange<'a, K, V> {
    /// What happened.
    pub kind: ChangeKind,
    /// The entry's key.
    pub key: &'a K,
    /// The entry's value (for removals, its last value).
    pub value: &'a V,
    /// When (packet time).
    pub time: Timestamp,
}

/// Receives the changes of a [`StateTable`]. Called on the packet path: keep it cheap (copy into a
/// buffer, hand off to another thread).
pub trait StateSink<K, V>: Send {
    /// One change.
    fn on_change(&mut self, change: &StateChange<'_, K, V>);
}

impl<K, V, F> StateSink<K, V> for F
where
    F: FnMut(&StateChange<'_, K, V>) + Send,
{
    fn on_change(&mut self, change: &StateChange<'_, K, V>) {
        self(change)
    }
}

/// A stateful element seen through its table: what drivers and minions use.
pub trait Stateful {
    /// Key type.
    type Key;
    /// Value type.
    type Value;
    /// The table.
    fn table(&self) -> &StateTable<Self::Key, Self::Value>;
    /// The table, mutable (attach a sink, install state).
    fn table_mut(&mut self) -> &mut StateTable<Self::Key, Self::Value>;
}

/// Counters of a [`StateTable`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Entries inserted by traffic.
    pub inserts: u64,
    /// Entries installed from outside (a minion's follower).
    pub installs: u64,
    /// Updates reported.
    pub updates: u64,
    /// Entries removed because their flow closed.
    pub closed: u64,
    /// Entries expired.
    pub expired: u64,
    /// Entries evicted to make room.
    pub evicted: u64,
    /// Inserts refused because the table was full and nothing could be evicted.
    pub rejected: u64,
}

struct Slot<K, V> {
    key: HashedKey<K>,
    value: V,
    expires: Timestamp,
}

/// What to do when a full table must take a new entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WhenFull {
    /// Evict an entry (an expired one if the sweep finds one, else the one under the sweep hand).
    #[default]
    Evict,
    /// Refuse the new entry (count it).
    Reject,
}

/// A bounded hash table of per-flow state with idle expiry and change reporting.
///
/// Keys carry their precomputed hash (e.g. [`FlowKey::table_hash`](crate::FlowKey::table_hash)), so the
/// table itself hashes nothing. Entries live in a
/// slab; a sweep hand visits a few slots per call of [`sweep`](Self::sweep) and expires idle ones, so that
/// expiry costs bounded work per batch and no timer wheel is needed.
pub struct StateTable<K, V> {
    index: HashMap<HashedKey<K>, u32, PrehashedState>,
    slots: Vec<Option<Slot<K, V>>>,
    free: Vec<u32>,
    capacity: usize,
    hand: usize,
    when_full: WhenFull,
    sink: Option<Box<dyn StateSink<K, V>>>,
    stats: TableStats,
}

impl<K, V> std::fmt::Debug for StateTable<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateTable")
            .field("len", &self.index.len())
            .field("capacity", &self.capacity)
            .field("stats", &self.stats)
            .finish()
    }
}

/// A handle to an entry, valid until the entry is removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryRef(u32);

impl<K: Eq + Clone, V> StateTable<K, V> {
    /// A table of at most `capacity` entries. Memory grows with the number of entries (up to the
    /// capacity) rather than being reserved up front, so that a large bound costs nothing until it is used and
    /// a small working set stays in cache; once the working set is reached, inserts allocate nothing.
    pub fn new(capacity: usize, when_full: WhenFull) -> Self {
        let capacity = capacity.max(1);
        let initial = capacity.min(1024);
        let mut index = HashMap::with_hasher(PrehashedState);
        index.reserve(initial);
        StateTable {
            index,
            slots: Vec::with_capacity(initial),
            free: Vec::with_capacity(initial),
            capacity,
            hand: 0,
            when_full,
            sink: None,
            stats: TableStats::default(),
        }
    }

    /// Attaches the sink that receives every change (replacing any other).
    pub fn set_sink(&mut self, sink: Box<dyn StateSink<K, V>>) {
        self.sink = Some(sink);
    }

    /// Detaches the sink.
    pub fn take_sink(&mut self) -> Option<Box<dyn StateSink<K, V>>> {
        self.sink.take()
    }

    /// True if a sink is attached.
    pub fn has_sink(&self) -> bool {
        self.sink.is_some()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True if the table is empty.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Most entries.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The counters.
    pub fn stats(&self) -> TableStats {
        self.stats
    }

    /// Finds the entry for `key` (whose hash is `hash`).
    #[inline]
    pub fn find(&self, hash: u32, key: &K) -> Option<EntryRef> {
        // The lookup key is built by cloning `key`: for the small `Copy` keys of flow tables this is a copy.
        self.index
            .get(&HashedKey {
                hash,
                key: key.clone(),
            })
            .map(|&i| EntryRef(i))
    }

    /// The key and value of an entry.
    #[inline]
    pub fn get(&self, e: EntryRef) -> Option<(&K, &V)> {
        self.slots
            .get(e.0 as usize)?
            .as_ref()
            .map(|s| (&s.key.key, &s.value))
    }

    /// The value of an entry, mutable. Changes made here are not reported; call [`notify_update`](Self::notify_update).
    #[inline]
    pub fn value_mut(&mut self, e: EntryRef) -> Option<&mut V> {
        self.slots
            .get_mut(e.0 as usize)?
            .as_mut()
            .map(|s| &mut s.value)
    }

    /// Looks a key up and returns its value.
    pub fn lookup(&self, hash: u32, key: &K) -> Option<&V> {
        self.find(hash, key)
            .and_then(|e| self.get(e))
            .map(|(_, v)| v)
    }

    /// Pushes the expiry of an entry to `expires`.
    #[inline]
    pub fn touch(&mut self, e: EntryRef, expires: Timestamp) {
        if let Some(Some(s)) = self.slots.get_mut(e.0 as usize) {
            s.expires = expires;
        }
    }

    /// Reports an update of an entry to the sink.
    pub fn notify_update(&mut self, e: EntryRef, now: Timestamp) {
        self.stats.updates += 1;
        if let (Some(sink), Some(Some(s))) = (self.sink.as_mut(), self.slots.get(e.0 as usize)) {
            sink.on_change(&StateChange {
                kind: ChangeKind::Update,
                key: &s.key.key,
                value: &s.value,
                time: now,
            });
        }
    }

    fn alloc_slot(&mut self, now: Timestamp) -> Option<u32> {
        if self.index.len() >= self.capacity {
            // Look a little way ahead of the hand for an expired entry, else evict under the hand.
            if self.sweep(now, 16) == 0 {
                match self.when_full {
                    WhenFull::Reject => return None,
                    WhenFull::Evict => {
                        let n = self.slots.len();
                        for _ in 0..n {
                            let i = self.hand % n;
                            self.hand = (i + 1) % n;
                            if self.slots[i].is_some() {
                                self.remove_at(i as u32, RemoveReason::Evicted, now);
                                break;
                            }
                        }
                    }
                }
            }
        }
        if let Some(i) = self.free.pop() {
            return Some(i);
        }
        if self.slots.len() < self.capacity {
            self.slots.push(None);
            return Some((self.slots.len() - 1) as u32);
        }
        None
    }

    /// Inserts a new entry from traffic and reports it. Returns `None` (counted) if the table is full and
    /// may not evict. The key must not be present (use [`find`](Self::find) first).
    pub fn insert(
        &mut self,
        hash: u32,
        key: K,
        value: V,
        now: Timestamp,
        expires: Timestamp,
    ) -> Option<EntryRef> {
        let Some(i) = self.alloc_slot(now) else {
            self.stats.rejected += 1;
            return None;
        };
        self.stats.inserts += 1;
        self.place(i, hash, key, value, expires);
        if let (Some(sink), Some(s)) = (self.sink.as_mut(), self.slots[i as usize].as_ref()) {
            sink.on_change(&StateChange {
                kind: ChangeKind::Insert,
                key: &s.key.key,
                value: &s.value,
                time: now,
            });
        }
        Some(EntryRef(i))
    }

    fn place(&mut self, i: u32, hash: u32, key: K, value: V, expires: Timestamp) {
        let hk = HashedKey { hash, key };
        self.index.insert(hk.clone(), i);
        self.slots[i as usize] = Some(Slot {
            key: hk,
            value,
            expires,
        });
    }

    /// Installs an entry that came from elsewhere (a minion applying a primary's state). Replaces an
    /// existing entry of the same key. Not reported to the sink.
    pub fn install(
        &mut self,
        hash: u32,
        key: K,
        value: V,
        now: Timestamp,
        expires: Timestamp,
    ) -> Option<EntryRef> {
        if let Some(e) = self.find(hash, &key) {
            if let Some(Some(s)) = self.slots.get_mut(e.0 as usize) {
                s.value = value;
                s.expires = expires;
            }
            self.stats.installs += 1;
            return Some(e);
        }
        let i = self.alloc_slot(now)?;
        self.stats.installs += 1;
        self.place(i, hash, key, value, expires);
        Some(EntryRef(i))
    }

    /// Removes an entry, reporting why.
    pub fn remove(&mut self, e: EntryRef, reason: RemoveReason, now: Timestamp) {
        self.remove_at(e.0, reason, now);
    }

    /// Removes the entry of `key` without reporting it (a minion applying a primary's delete).
    pub fn uninstall(&mut self, hash: u32, key: &K) -> bool {
        let Some(e) = self.find(hash, key) else {
            return false;
        };
        if let Some(s) = self.slots[e.0 as usize].take() {
            self.index.remove(&s.key);
            self.free.push(e.0);
        }
        true
    }

    fn remove_at(&mut self, i: u32, reason: RemoveReason, now: Timestamp) {
        let Some(s) = self.slots.get_mut(i as usize).and_then(Option::take) else {
            return;
        };
        self.index.remove(&s.key);
        self.free.push(i);
        match reason {
            RemoveReason::Closed => self.stats.closed += 1,
            RemoveReason::Expired => self.stats.expired += 1,
            RemoveReason::Evicted => self.stats.evicted += 1,
            RemoveReason::Deleted => {}
        }
        if let Some(sink) = self.sink.as_mut() {
            sink.on_change(&StateChange {
                kind: ChangeKind::Remove(reason),
                key: &s.key.key,
                value: &s.value,
                time: now,
            });
        }
    }

    /// Visits up to `max` slots from the sweep hand and expires entries idle past their expiry.
    /// Returns how many expired.
    pub fn sweep(&mut self, now: Timestamp, max: usize) -> usize {
        let n = self.slots.len();
        if n == 0 {
            return 0;
        }
        let mut expired = 0;
        for _ in 0..max.min(n) {
            let i = self.hand % n;
            self.hand = (i + 1) % n;
            if matches!(&self.slots[i], Some(s) if s.expires <= now) {
                self.remove_at(i as u32, RemoveReason::Expired, now);
                expired += 1;
            }
        }
        expired
    }

    /// Calls `f` on every entry (a snapshot for a minion or a dump handler).
    pub fn for_each(&self, mut f: impl FnMut(&K, &V)) {
        for s in self.slots.iter().flatten() {
            f(&s.key.key, &s.value);
        }
    }

    /// Removes every entry without reporting.
    pub fn clear(&mut self) {
        self.index.clear();
        self.slots.clear();
        self.free.clear();
        self.hand = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn bounded_with_eviction_and_reports() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let l2 = log.clone();
        let mut t: StateTable<u32, u32> = StateTable::new(4, WhenFull::Evict);
        t.set_sink(Box::new(move |c: &StateChange<'_, u32, u32>| {
            l2.lock().unwrap().push((c.kind, *c.key))
        }));
        let now = Timestamp(1000);
        for k in 0..6u32 {
            assert!(t.insert(k * 7, k, k, now, Timestamp(10_000)).is_some());
        }
        assert_eq!(t.len(), 4);
        assert_eq!(t.stats().evicted, 2);
        assert_eq!(t.sweep(Timestamp(20_000), 100), 4);
        assert!(t.is_empty());
        let log = log.lock().unwrap();
        assert_eq!(
            log.iter().filter(|(k, _)| *k == ChangeKind::Insert).count(),
            6
        );
        assert_eq!(
            log.iter()
                .filter(|(k, _)| *k == ChangeKind::Remove(RemoveReason::Expired))
                .count(),
            4
        );
    }

    #[test]
    fn reject_when_full() {
        let mut t: StateTable<u32, ()> = StateTable::new(2, WhenFull::Reject);
        let far = Timestamp(u64::MAX);
        assert!(t.insert(1, 1, (), Timestamp(0), far).is_some());
        assert!(t.insert(2, 2, (), Timestamp(0), far).is_some());
        assert!(t.insert(3, 3, (), Timestamp(0), far).is_none());
        assert_eq!(t.stats().rejected, 1);
        assert!(t.install(4, 4, (), Timestamp(0), far).is_none());
        assert!(t.uninstall(1, &1));
        assert!(t.install(4, 4, (), Timestamp(0), far).is_some());
        assert_eq!(t.lookup(4, &4), Some(&()));
    }
}
