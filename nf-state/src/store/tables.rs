//! The in-memory state shared by the memory and file stores: current records per key, a bounded log of
//! recent records for watchers, per-schema sequence numbers, and a lossless change signal.

use super::{SchemaStats, Snapshot, Watch};
use crate::error::Error;
use crate::record::{Op, Record};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

/// How many records ahead of its release a log entry's memory is prefetched (twice that for the entry).
const RETIRE_AHEAD: usize = 16;

/// Records a watcher is handed at a time.
const WATCH_CHUNK: usize = 4096;

/// A record held once, shared by the current state and the log, with its key's hash beside it: growing
/// the table rehashes from that number, one load per entry, instead of following each record to its key
/// bytes (two more cache misses per entry, which dominated inserting a million new keys).
///
/// A key of up to [`INLINE_KEY`] bytes is also kept inline, beside the hash: comparing keys in the table
/// then reads the entry's first cache line only, not the record's separately allocated key bytes (one
/// cache miss less per upsert of an existing key).
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

/// A current record, found by its key bytes.
#[derive(Debug, Clone)]
pub(crate) struct ByKey(Arc<Held>);

impl PartialEq for ByKey {
    fn eq(&self, o: &Self) -> bool {
        self.0.key() == o.0.key()
    }
}
impl Eq for ByKey {}
impl std::hash::Hash for ByKey {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        // Through `KeyHasher::write_u64`: the number computed from the key bytes when the record was held.
        h.write_u64(self.0.hash);
    }
}
impl std::borrow::Borrow<[u8]> for ByKey {
    fn borrow(&self) -> &[u8] {
        self.0.key()
    }
}

/// Hashes key bytes with a keyed SipHash (std's `RandomState`: keys come from traffic, and a keyed hash
/// resists hash flooding), and passes a [`ByKey`]'s stored hash through unchanged.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyHashing(std::collections::hash_map::RandomState);

pub(crate) struct KeyHasher {
    sip: std::collections::hash_map::DefaultHasher,
    fed: bool,
    stored: Option<u64>,
}

impl std::hash::Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.fed = true;
        self.sip.write(bytes);
    }
    fn write_u64(&mut self, v: u64) {
        self.stored = Some(v);
    }
    fn finish(&self) -> u64 {
        match self.stored {
            // A `ByKey` (only a stored hash was written).
            Some(v) if !self.fed => v,
            _ => self.sip.finish(),
        }
    }
}

impl std::hash::BuildHasher for KeyHashing {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher {
            sip: self.0.build_hasher(),
            fed: false,
            stored: None,
        }
    }
}

/// The current record of each key of a schema.
#[derive(Debug, Default)]
pub(crate) struct Current(HashSet<ByKey, KeyHashing>);

impl Current {
    /// Wraps a record for the table and the log, its key hashed (as the key bytes, `[u8]`, exactly as a
    /// lookup by key hashes them).
    pub(crate) fn hold(&self, rec: Record) -> Arc<Held> {
        use std::hash::BuildHasher;
        let hash = self.0.hasher().hash_one(&rec.key[..]);
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

    /// Sets the current record of its key.
    pub(crate) fn insert(&mut self, held: Arc<Held>) {
        self.0.replace(ByKey(held));
    }

    /// Removes a key.
    pub(crate) fn remove(&mut self, key: &[u8]) -> bool {
        self.0.remove(key)
    }

    /// The current record of a key.
    pub(crate) fn get(&self, key: &[u8]) -> Option<&Record> {
        self.0.get(key).map(|k| &k.0.rec)
    }

    /// Every current record, shared (one reference count each: a snapshot taken in a moment, to be
    /// written out after the lock is released).
    pub(crate) fn shared_records(&self) -> Vec<Arc<Held>> {
        self.0.iter().map(|k| k.0.clone()).collect()
    }

    /// Every current record.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Record> {
        self.0.iter().map(|k| &k.0.rec)
    }

    /// Live keys.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

#[derive(Debug, Default)]
pub(crate) struct SchemaLog {
    pub(crate) current: Current,
    pub(crate) log: VecDeque<Arc<Held>>,
    pub(crate) last_seq: u64,
}

impl SchemaLog {
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
    pub(crate) schemas: HashMap<String, SchemaLog>,
    retention: usize,
}

impl Tables {
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
    pub(crate) fn apply(&mut self, records: impl IntoIterator<Item = Record>) {
        let retention = self.retention;
        let mut cur: Option<(std::sync::Arc<str>, &mut SchemaLog)> = None;
        for r in records {
            // Look the schema up once per run of records of the same schema.
            let same = matches!(&cur, Some((name, _)) if std::sync::Arc::ptr_eq(name, &r.schema) || **name == *r.schema);
            if !same {
                cur = None;
                if !self.schemas.contains_key(&*r.schema) {
                    self.schemas
                        .insert(r.schema.to_string(), SchemaLog::default());
                }
                let Some(s) = self.schemas.get_mut(&*r.schema) else {
                    continue;
                };
                cur = Some((r.schema.clone(), s));
            }
            let Some((_, s)) = cur.as_mut() else { continue };
            if r.seq <= s.last_seq {
                continue; // already applied (a log replayed over a snapshot)
            }
            s.last_seq = r.seq;
            let r = s.current.hold(r);
            match r.rec.op {
                Op::Upsert => s.current.insert(r.clone()),
                Op::Delete => {
                    s.current.remove(&r.rec.key[..]);
                }
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
    }

    /// Sets a schema's last sequence number (from a snapshot's metadata) without a record.
    pub(crate) fn set_last_seq(&mut self, schema: &str, seq: u64) {
        let s = self.schemas.entry(schema.to_string()).or_default();
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
                schema: k.clone(),
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

    /// Entries hashed once when held are found by their key bytes across many rehashes; replacing and
    /// removing by key bytes work.
    #[test]
    fn stored_hashes_agree_with_lookups_by_key_bytes() {
        let mut c = Current::default();
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
