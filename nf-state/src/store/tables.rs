//! The in-memory state shared by the memory and file stores: current records per key, a bounded log of
//! recent records for watchers, per-schema sequence numbers, and a lossless change signal.

use super::{SchemaStats, Snapshot, Watch};
use crate::error::Error;
use crate::record::{Op, Record};
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

/// Records a watcher is handed at a time.
const WATCH_CHUNK: usize = 4096;

#[derive(Debug, Default)]
pub(crate) struct SchemaLog {
    pub(crate) current: HashMap<Bytes, Record>,
    pub(crate) log: VecDeque<Record>,
    pub(crate) last_seq: u64,
}

impl SchemaLog {
    /// Sequence number of the oldest retained record (last_seq + 1 when the log is empty).
    fn oldest(&self) -> u64 {
        self.log.front().map_or(self.last_seq + 1, |r| r.seq)
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
        records
            .iter_mut()
            .map(|r| {
                let n = next
                    .entry(r.schema.clone())
                    .or_insert_with(|| self.schemas.get(&r.schema).map_or(0, |s| s.last_seq));
                *n += 1;
                r.seq = *n;
                *n
            })
            .collect()
    }

    /// Applies records whose sequence numbers are assigned (in order).
    pub(crate) fn apply(&mut self, records: impl IntoIterator<Item = Record>) {
        for r in records {
            let s = self.schemas.entry(r.schema.clone()).or_default();
            if r.seq <= s.last_seq {
                continue; // already applied (a log replayed over a snapshot)
            }
            s.last_seq = r.seq;
            match r.op {
                Op::Upsert => {
                    s.current.insert(r.key.clone(), r.clone());
                }
                Op::Delete => {
                    s.current.remove(&r.key);
                }
            }
            s.log.push_back(r);
            while s.log.len() > self.retention {
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
                records: s.current.values().cloned().collect(),
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
            .cloned()
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
