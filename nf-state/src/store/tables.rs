//! The in-memory state shared by the memory and file stores: current records per key, a bounded log of
//! recent records for watchers, per-schema sequence numbers, and a lossless change signal.

use super::{SchemaStats, Snapshot, Watch};
use crate::error::Error;
use crate::record::{Op, Record};
use nf_core::table::{Placed, RawTable};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

/// How many records ahead of its release a log entry's memory is prefetched (twice that for the entry).
const RETIRE_AHEAD: usize = 16;

/// How many records ahead of its write a key's current record is loaded.
const WRITE_AHEAD: usize = 16;

/// Records held at a time, ahead of their writes.
const HOLD_CHUNK: usize = 256;

/// Records a watcher is handed at a time.
const WATCH_CHUNK: usize = 4096;

/// A record held once, shared by the current state and the log, with its key's hash beside it (the
/// number the table finds it by, computed once).
///
/// A key of up to [`INLINE_KEY`] bytes is also kept inline, beside the hash: comparing keys in the table
/// then reads the record's first cache line only, not its separately allocated key bytes (one cache miss
/// less per upsert of an existing key).
#[derive(Debug)]
pub(crate) struct Held {
    hash: u64,
    inline_len: u8,
    inline: [u8; INLINE_KEY],
    pub(crate) rec: Record,
}

/// Keys up to this long are compared inline (a flow's key in `bincode` is about a dozen bytes).
const INLINE_KEY: usize = 31;

impl Held {
    /// The key bytes: the inline copy if there is one, else the record's.
    #[inline]
    fn key(&self) -> &[u8] {
        // A key that fits is copied whole (`inline_len` is its length); a longer one leaves it 0.
        match self.inline.get(..usize::from(self.inline_len)) {
            Some(k) if k.len() == self.rec.key.len() => k,
            _ => &self.rec.key,
        }
    }
}

/// A table entry: the key's hash beside the record, so that growing the table rehashes from the entry
/// alone (no cache miss per entry to follow it to its record), and a probe passes other keys by hash
/// before reading any record.
#[derive(Debug)]
struct Entry {
    hash: u64,
    held: Arc<Held>,
}

impl Placed for Entry {
    #[inline(always)]
    fn placed_by(&self) -> u64 {
        self.hash
    }
}

/// The current record of each key of a schema, in the SDK's one open-addressing table
/// ([`RawTable`]: linear probing, bounded probes, backward-shift deletion; 16-byte slots here, four to a
/// cache line, at most three quarters full), so that where a key's probe starts is a plain address,
/// known from its hash alone. That is what lets a batch load ahead what its writes will touch, in two
/// steps with no wait between them: the slot where a key's probe starts ([`Current::prefetch_slot`]),
/// then, once that is in cache, the record found there ([`Current::prefetch_record`]). A general-purpose
/// table (std's, `hashbrown`'s) hides where a key lives, and a lookup made ahead instead stalls on its own
/// misses.
///
/// Keys are hashed with a keyed SipHash (std's `RandomState`: keys come from traffic, and a keyed hash
/// resists hash flooding), one key per [`Tables`], so that a record is hashed once, when it is held. A
/// store never drops a record: a key whose probe window is full (with a keyed hash, practically never)
/// makes the table grow until it has room.
#[derive(Debug)]
pub(crate) struct Current {
    hashing: std::collections::hash_map::RandomState,
    raw: RawTable<Entry>,
}

/// The smallest table (slots).
const MIN_SLOTS: usize = 16;

impl Current {
    /// An empty table hashing with `hashing`.
    fn with_hashing(hashing: std::collections::hash_map::RandomState) -> Self {
        Current {
            hashing,
            raw: RawTable::with_slots(0),
        }
    }

    fn hash(&self, key: &[u8]) -> u64 {
        use std::hash::BuildHasher;
        self.hashing.hash_one(key)
    }

    /// Wraps a record for the table and the log, its key hashed.
    pub(crate) fn hold(&self, rec: Record) -> Arc<Held> {
        hold_with(&self.hashing, rec)
    }

    /// The slot holding `key` (whose hash is `hash`), if any.
    #[inline]
    fn find(&self, hash: u64, key: &[u8]) -> Option<usize> {
        self.raw
            .find(hash, |e| e.hash == hash && e.held.key() == key)
    }

    /// First step of loading ahead: the cache line where the probe for `held`'s key starts.
    #[inline]
    pub(crate) fn prefetch_slot(&self, held: &Held) {
        self.raw.prefetch(held.hash);
    }

    /// Second step, some records later: the current record of `held`'s key, found by hash alone (the
    /// probe's slots are in cache by now; no record is read).
    #[inline]
    pub(crate) fn prefetch_record(&self, held: &Held) {
        let h = held.hash;
        let mask = self.raw.mask();
        let mut i = self.raw.home(h);
        // Only a few slots: a long probe is left to the write itself.
        for _ in 0..8 {
            match self.raw.get(i) {
                Some(e) if e.hash == h => {
                    nf_core::prefetch_unsafe::prefetch(&*e.held);
                    return;
                }
                Some(_) => i = (i + 1) & mask,
                None => return,
            }
        }
    }

    /// Sets the current record of its key.
    pub(crate) fn insert(&mut self, held: Arc<Held>) {
        let h = held.hash;
        if let Some(i) = self.find(h, held.key()) {
            if let Some(e) = self.raw.get_mut(i) {
                e.held = held;
            }
            return;
        }
        // At most three quarters full.
        if (self.raw.len() + 1) * 4 > self.raw.slots() * 3 {
            self.grow();
        }
        self.place(Entry { hash: h, held });
    }

    /// Puts an entry whose key is not in the table into the first empty slot of its probe window,
    /// growing the table until the window has one.
    fn place(&mut self, e: Entry) {
        loop {
            if let Some(i) = self.raw.free_slot(e.hash) {
                self.raw.put(i, e);
                return;
            }
            self.grow();
        }
    }

    /// Doubles the table (or makes the first), moving every entry by its stored hash (the raw table
    /// prefetches each new slot some entries ahead). An entry that finds its new window full (never in
    /// practice) is placed again after, growing further if it must.
    fn grow(&mut self) {
        let n = (self.raw.slots() * 2).max(MIN_SLOTS);
        let mut again = Vec::new();
        self.raw.rebuild(n, |e| again.push(e));
        for e in again {
            self.place(e);
        }
    }

    /// Removes a key.
    #[cfg(test)]
    pub(crate) fn remove(&mut self, key: &[u8]) -> bool {
        match self.find(self.hash(key), key) {
            Some(i) => self.raw.take(i).is_some(),
            None => false,
        }
    }

    /// Removes the key of a held record (hashed already).
    fn remove_held(&mut self, held: &Held) {
        if let Some(i) = self.find(held.hash, held.key()) {
            self.raw.take(i);
        }
    }

    /// The current record of a key.
    pub(crate) fn get(&self, key: &[u8]) -> Option<&Record> {
        let i = self.find(self.hash(key), key)?;
        self.raw.get(i).map(|e| &e.held.rec)
    }

    /// Every current record, shared (one reference count each: a snapshot taken in a moment, to be
    /// written out after the lock is released).
    pub(crate) fn shared_records(&self) -> Vec<Arc<Held>> {
        self.raw.iter().map(|e| e.held.clone()).collect()
    }

    /// Every current record.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Record> {
        self.raw.iter().map(|e| &e.held.rec)
    }

    /// Live keys.
    pub(crate) fn len(&self) -> usize {
        self.raw.len()
    }
}

/// A schema's log, made empty (its table hashing with `hashing`) if it is new.
fn log_of<'a>(
    schemas: &'a mut HashMap<Arc<str>, SchemaLog>,
    hashing: &std::collections::hash_map::RandomState,
    schema: &Arc<str>,
) -> &'a mut SchemaLog {
    schemas
        .entry(schema.clone())
        .or_insert_with(|| SchemaLog::new(hashing.clone()))
}

/// Wraps a record, its key hashed with `hashing`.
fn hold_with(hashing: &std::collections::hash_map::RandomState, rec: Record) -> Arc<Held> {
    use std::hash::BuildHasher;
    let hash = hashing.hash_one(&rec.key[..]);
    let mut inline = [0u8; INLINE_KEY];
    let inline_len = match inline.get_mut(..rec.key.len()) {
        Some(dst) => {
            dst.copy_from_slice(&rec.key);
            rec.key.len() as u8
        }
        None => 0,
    };
    Arc::new(Held {
        hash,
        inline_len,
        inline,
        rec,
    })
}

#[derive(Debug)]
pub(crate) struct SchemaLog {
    pub(crate) current: Current,
    pub(crate) log: VecDeque<Arc<Held>>,
    pub(crate) last_seq: u64,
}

impl SchemaLog {
    /// An empty schema, its table hashing with `hashing`.
    fn new(hashing: std::collections::hash_map::RandomState) -> Self {
        SchemaLog {
            current: Current::with_hashing(hashing),
            log: VecDeque::new(),
            last_seq: 0,
        }
    }

    /// The current record of a key.
    pub(crate) fn get(&self, key: &[u8]) -> Option<Record> {
        self.current.get(key).cloned()
    }
}

impl SchemaLog {
    /// Sequence number of the oldest retained record (last_seq + 1 when the log is empty).
    fn oldest(&self) -> u64 {
        self.log.front().map_or(self.last_seq + 1, |r| r.rec.seq)
    }
}

#[derive(Debug)]
pub(crate) struct Tables {
    /// Keyed by the records' own shared names: finding or making a schema's log allocates no name.
    pub(crate) schemas: HashMap<Arc<str>, SchemaLog>,
    retention: usize,
    /// The one key every schema's table hashes with (a record is hashed once, before its schema's
    /// table is known).
    hashing: std::collections::hash_map::RandomState,
    /// The next records to apply, held (kept between calls: applying a batch allocates no list).
    scratch: VecDeque<Arc<Held>>,
}

impl Tables {
    /// A schema's log, made empty if it is new.
    pub(crate) fn schema_mut(&mut self, schema: &Arc<str>) -> &mut SchemaLog {
        log_of(&mut self.schemas, &self.hashing, schema)
    }

    /// Gives each record the next sequence number of its schema (without applying it).
    pub(crate) fn assign(
        &self,
        records: &mut [Record],
        next: &mut HashMap<String, u64>,
    ) -> Vec<u64> {
        // The counter is looked up once per run of records of the same schema (a batch is usually one
        // schema), not once per record.
        let mut seqs = Vec::with_capacity(records.len());
        let mut run: Option<(std::sync::Arc<str>, u64)> = None;
        for r in records.iter_mut() {
            let same = matches!(&run, Some((name, _)) if std::sync::Arc::ptr_eq(name, &r.schema) || **name == *r.schema);
            if !same {
                if let Some((name, n)) = run.take() {
                    next.insert(name.to_string(), n);
                }
                let n = match next.get(&*r.schema) {
                    Some(&n) => n,
                    None => self.schemas.get(&*r.schema).map_or(0, |s| s.last_seq),
                };
                run = Some((r.schema.clone(), n));
            }
            if let Some((_, n)) = run.as_mut() {
                *n += 1;
                r.seq = *n;
                seqs.push(*n);
            }
        }
        if let Some((name, n)) = run {
            next.insert(name.to_string(), n);
        }
        seqs
    }

    /// Applies records whose sequence numbers are assigned (in order).
    ///
    /// Records are held (their keys hashed, [`HOLD_CHUNK`] at a time) before they are written, and what
    /// each write will touch is loaded ahead in two steps: the table slot where its key's probe starts,
    /// [`WRITE_AHEAD`] records before the write, then the key's current record (found there by hash
    /// alone), half as many before. Comparing keys and replacing the record then does not wait on
    /// memory: the records a table points to are spread over the retained log (hundreds of megabytes),
    /// and each write would otherwise stall on its slot and on its record.
    pub(crate) fn apply(&mut self, records: impl IntoIterator<Item = Record>) {
        let hashing = &self.hashing;
        let mut records = records.into_iter().map(|r| hold_with(hashing, r));
        // The next records, held: made HOLD_CHUNK at a time (allocating and copying in a tight loop
        // streams through fresh memory far faster than one at a time between table writes), few enough
        // that they are still in cache when written and logged.
        let mut ahead = std::mem::take(&mut self.scratch);
        ahead.clear();
        let retention = self.retention;
        let mut cur: Option<(std::sync::Arc<str>, &mut SchemaLog)> = None;
        loop {
            if ahead.len() <= WRITE_AHEAD {
                ahead.extend(records.by_ref().take(HOLD_CHUNK));
            }
            let Some(r) = ahead.pop_front() else { break };
            let same = matches!(&cur, Some((name, _)) if std::sync::Arc::ptr_eq(name, &r.rec.schema) || **name == *r.rec.schema);
            if !same {
                let s = log_of(&mut self.schemas, hashing, &r.rec.schema);
                cur = Some((r.rec.schema.clone(), s));
            }
            let Some((name, s)) = cur.as_mut() else {
                continue;
            };
            // Loading ahead in two steps: the slot where the probe of the key 16 records on starts,
            // and the current record of the key 8 records on (its slot loaded 8 records ago).
            if let Some(a) = ahead.get(WRITE_AHEAD - 1)
                && std::sync::Arc::ptr_eq(name, &a.rec.schema)
            {
                s.current.prefetch_slot(a);
            }
            if let Some(a) = ahead.get(WRITE_AHEAD / 2 - 1)
                && std::sync::Arc::ptr_eq(name, &a.rec.schema)
            {
                s.current.prefetch_record(a);
            }
            if r.rec.seq <= s.last_seq {
                continue; // already applied (a log replayed over a snapshot)
            }
            s.last_seq = r.rec.seq;
            match r.rec.op {
                Op::Upsert => s.current.insert(r.clone()),
                Op::Delete => s.current.remove_held(&r),
            }
            // The records about to leave the log were written long ago (a million records back by
            // default) and are cold: start loading them some records ahead, so that their release (a
            // reference count, and for a record no longer current its key and value buffers) does not
            // stall on memory. First the record itself, then, once it is cached, its buffers.
            if s.log.len() >= retention {
                if let Some(h) = s.log.get(RETIRE_AHEAD * 2) {
                    nf_core::prefetch_unsafe::prefetch_all(&**h);
                }
                if let Some(h) = s.log.get(RETIRE_AHEAD) {
                    if let Some(b) = h.rec.key.first() {
                        nf_core::prefetch_unsafe::prefetch(b);
                    }
                    if let Some(b) = h.rec.value.as_ref().and_then(|v| v.first()) {
                        nf_core::prefetch_unsafe::prefetch(b);
                    }
                }
            }
            s.log.push_back(r);
            while s.log.len() > retention {
                s.log.pop_front();
            }
        }
        self.scratch = ahead;
    }

    /// Sets a schema's last sequence number (from a snapshot's metadata) without a record.
    pub(crate) fn set_last_seq(&mut self, schema: &str, seq: u64) {
        let s = self.schema_mut(&crate::record::shared_name(schema));
        s.last_seq = s.last_seq.max(seq);
    }

    pub(crate) fn snapshot(&self, schema: &str) -> Snapshot {
        match self.schemas.get(schema) {
            None => Snapshot::default(),
            Some(s) => Snapshot {
                seq: s.last_seq,
                records: s.current.iter().cloned().collect(),
            },
        }
    }

    pub(crate) fn stats(&self) -> Vec<SchemaStats> {
        let mut v: Vec<_> = self
            .schemas
            .iter()
            .map(|(k, s)| SchemaStats {
                schema: k.to_string(),
                entries: s.current.len() as u64,
                last_seq: s.last_seq,
                oldest_retained: s.oldest().saturating_sub(1),
            })
            .collect();
        v.sort_by(|a, b| a.schema.cmp(&b.schema));
        v
    }

    /// Records after `from`, up to a chunk; a gap if `from` is older than what is retained.
    fn after(&self, schema: &str, from: u64) -> Result<Vec<Record>, Error> {
        let Some(s) = self.schemas.get(schema) else {
            return Ok(Vec::new());
        };
        if from >= s.last_seq {
            return Ok(Vec::new());
        }
        let oldest = s.oldest();
        if from + 1 < oldest {
            return Err(Error::Gap {
                schema: schema.to_string(),
                from,
                oldest,
            });
        }
        let start = (from + 1 - oldest) as usize;
        Ok(s.log
            .iter()
            .skip(start)
            .take(WATCH_CHUNK)
            .map(|r| r.rec.clone())
            .collect())
    }
}

/// Tables behind a lock, and the signal that they changed.
#[derive(Debug)]
pub(crate) struct Shared {
    tables: Mutex<Tables>,
    changed: tokio::sync::watch::Sender<u64>,
}

impl Shared {
    pub(crate) fn new(retention: usize) -> Arc<Shared> {
        let (changed, _) = tokio::sync::watch::channel(0);
        Arc::new(Shared {
            tables: Mutex::new(Tables {
                schemas: HashMap::new(),
                retention: retention.max(1),
                hashing: Default::default(),
                scratch: VecDeque::new(),
            }),
            changed,
        })
    }

    /// The tables, locked (a poisoned lock is recovered: the tables are never left half-updated).
    pub(crate) fn lock(&self) -> MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells watchers that records were applied.
    pub(crate) fn notify(&self) {
        self.changed.send_modify(|c| *c += 1);
    }

    /// A watcher task: hands out the records after `from`, then waits for more.
    pub(crate) fn watch(self: &Arc<Self>, schema: &str, from: u64) -> Watch {
        let (tx, rx) = tokio::sync::mpsc::channel(WATCH_CHUNK);
        let me = self.clone();
        let schema = schema.to_string();
        let mut changes = self.changed.subscribe();
        let task = tokio::spawn(async move {
            let mut last = from;
            loop {
                changes.borrow_and_update();
                let batch = me.lock().after(&schema, last);
                match batch {
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                    Ok(b) if b.is_empty() => {
                        if changes.changed().await.is_err() {
                            return;
                        }
                    }
                    Ok(b) => {
                        for r in b {
                            last = r.seq;
                            if tx.send(Ok(r)).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        });
        Watch::new(rx, Some(task))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Codec;
    use bytes::Bytes;

    fn rec(key: &[u8], v: u8) -> Record {
        Record {
            schema: Arc::from("t"),
            version: 1,
            codec: Codec::Bincode,
            seq: 0,
            origin: Arc::from("t"),
            time: 0,
            op: Op::Upsert,
            key: Bytes::copy_from_slice(key),
            value: Some(Bytes::from(vec![v])),
        }
    }

    /// Random inserts, replacements and removals over small key sets (tables of 16 to a few hundred
    /// slots, so that probes wrap around the end and removals shift runs back across it) agree with a
    /// model after every operation: every key's record, the count, and the records iterated.
    #[test]
    fn the_table_agrees_with_a_model_under_inserts_and_removals() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut step = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for keys in [3u64, 11, 12, 13, 40, 200] {
            let mut c = Current::with_hashing(Default::default());
            let mut model: HashMap<Vec<u8>, u8> = HashMap::new();
            for op in 0..5_000 {
                let r = step();
                let key = format!("k{}", r % keys).into_bytes();
                if (r >> 32) % 3 == 0 {
                    assert_eq!(c.remove(&key), model.remove(&key).is_some());
                } else {
                    let v = (r >> 40) as u8;
                    let h = c.hold(rec(&key, v));
                    c.insert(h);
                    model.insert(key, v);
                }
                assert_eq!(c.len(), model.len());
                if op % 7 == 0 {
                    for k in 0..keys {
                        let key = format!("k{k}").into_bytes();
                        let got = c.get(&key).map(|r| r.value.as_ref().map_or(0, |v| v[0]));
                        assert_eq!(got, model.get(&key).copied(), "{keys} keys, op {op}");
                    }
                    assert_eq!(c.iter().count(), model.len());
                }
            }
        }
    }

    /// Batches applied through the look-ahead (records held in chunks, lookups made ahead in groups)
    /// leave the same state as applying one record at a time: two schemas interleaved in runs of every
    /// length, a key written again within the look-ahead window, deletes of present and absent keys,
    /// records already applied skipped; the log keeps the last `retention` records in order.
    #[test]
    fn batches_through_the_look_ahead_agree_with_a_model() {
        let mut t = Shared::new(1000);
        let t = Arc::get_mut(&mut t)
            .map(|s| s.tables.get_mut().unwrap())
            .unwrap();
        let mut model: HashMap<(String, Vec<u8>), u8> = HashMap::new();
        let mut next: HashMap<String, u64> = HashMap::new();
        let mut x: u32 = 7;
        let mut step = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        for batch in 0..40u32 {
            let n = [1, 3, 17, 255, 256, 257, 700][batch as usize % 7];
            let mut recs = Vec::new();
            for _ in 0..n {
                let r = step();
                let schema = if (r >> 20) % 5 == 0 { "u" } else { "t" };
                // Few keys, so that the window often holds one key twice.
                let key = format!("k{}", r % 40).into_bytes();
                let mut rec = rec(&key, (r >> 8) as u8);
                rec.schema = Arc::from(schema);
                if (r >> 12) % 4 == 0 {
                    rec.op = Op::Delete;
                    rec.value = None;
                    model.remove(&(schema.to_string(), key));
                } else {
                    model.insert((schema.to_string(), key), (r >> 8) as u8);
                }
                recs.push(rec);
            }
            t.assign(&mut recs, &mut next);
            // Replaying the first records of the batch again first: they are skipped the second time.
            let replay: Vec<Record> = recs.iter().take(n / 2).cloned().collect();
            t.apply(recs);
            t.apply(replay);
        }
        for schema in ["t", "u"] {
            let s = &t.schemas[schema];
            assert_eq!(s.last_seq, next[schema]);
            let want: Vec<_> = model.iter().filter(|((sc, _), _)| sc == schema).collect();
            assert_eq!(s.current.len(), want.len(), "{schema}");
            for ((_, k), v) in want {
                let got = s
                    .current
                    .get(k)
                    .and_then(|r| r.value.as_ref().map(|v| v[0]));
                assert_eq!(got, Some(*v), "{schema} {k:?}");
            }
            let seqs: Vec<u64> = s.log.iter().map(|h| h.rec.seq).collect();
            let first = s.last_seq.saturating_sub(seqs.len() as u64) + 1;
            assert_eq!(seqs, (first..=s.last_seq).collect::<Vec<_>>(), "{schema}");
            assert!(seqs.len() <= 1000);
        }
    }

    /// Entries hashed once when held are found by their key bytes across many rehashes; replacing and
    /// removing by key bytes work.
    #[test]
    fn stored_hashes_agree_with_lookups_by_key_bytes() {
        let mut c = Current::with_hashing(Default::default());
        // Keys of every length around the inline limit: empty, short, 31, 32 and long.
        let key = |i: u32| {
            let mut k = format!("key-{i}").into_bytes();
            k.resize(
                [0, k.len(), INLINE_KEY, INLINE_KEY + 1, 100][i as usize % 5],
                b'.',
            );
            if i.is_multiple_of(5) {
                k.clear();
                if i > 0 {
                    k.extend_from_slice(&i.to_be_bytes());
                }
            }
            k
        };
        for i in 0..20_000u32 {
            let h = c.hold(rec(&key(i), 1));
            c.insert(h);
        }
        for i in (0..20_000u32).step_by(2) {
            let h = c.hold(rec(&key(i), 2));
            c.insert(h);
        }
        for i in (0..20_000u32).step_by(4) {
            assert!(c.remove(&key(i)));
        }
        assert_eq!(c.len(), 15_000);
        for i in 0..20_000u32 {
            let got = c.get(&key(i)).map(|r| r.value.as_ref().unwrap()[0]);
            let want = match i % 4 {
                0 => None,
                2 => Some(2),
                _ => Some(1),
            };
            assert_eq!(got, want, "key {i}");
        }
        assert!(c.get(b"absent").is_none());
    }
}
