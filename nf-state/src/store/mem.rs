//! `mem:`: the in-process store (the default for demos and tests).

use super::tables::Shared;
use super::{Snapshot, StateStore, StoreStats, Watch};
use crate::error::Error;
use crate::record::Record;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Arc;

/// An in-process store: nothing survives the process. Keeps the last `retention` records of each
/// schema for watchers (1,000,000 by default); a watcher further behind gets [`Error::Gap`].
#[derive(Debug, Clone)]
pub struct MemStore {
    shared: Arc<Shared>,
}

impl Default for MemStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemStore {
    /// A store retaining 1,000,000 records per schema for watchers.
    pub fn new() -> Self {
        Self::with_retention(1_000_000)
    }

    /// A store retaining `n` records per schema for watchers.
    pub fn with_retention(n: usize) -> Self {
        MemStore {
            shared: Shared::new(n),
        }
    }
}

#[async_trait]
impl StateStore for MemStore {
    async fn apply(&self, mut records: Vec<Record>) -> Result<Vec<u64>, Error> {
        let seqs = {
            let mut t = self.shared.lock();
            let seqs = t.assign(&mut records, &mut HashMap::new());
            t.apply(records);
            seqs
        };
        self.shared.notify();
        Ok(seqs)
    }

    async fn get(&self, schema: &str, key: &[u8]) -> Result<Option<Record>, Error> {
        Ok(self
            .shared
            .lock()
            .schemas
            .get(schema)
            .and_then(|s| s.get(key)))
    }

    async fn scan(&self, schema: &str) -> Result<Snapshot, Error> {
        Ok(self.shared.lock().snapshot(schema))
    }

    async fn watch(&self, schema: &str, from_seq: u64) -> Result<Watch, Error> {
        Ok(self.shared.watch(schema, from_seq))
    }

    async fn stats(&self) -> Result<StoreStats, Error> {
        Ok(StoreStats {
            schemas: self.shared.lock().stats(),
            counters: Vec::new(),
        })
    }

    fn url(&self) -> String {
        "mem:".into()
    }
}
