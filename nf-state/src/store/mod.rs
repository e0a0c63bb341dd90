//! State stores behind one async trait, opened from one URL syntax that every binary uses:
//! `mem:`, `file:PATH[?fsync=always|batch|never][&compact=BYTES]`, `redis://HOST:PORT/DB`,
//! `redis+cluster://HOST:PORT,HOST:PORT,...`.
//!
//! Every store assigns sequence numbers: contiguous per schema, from 1, in the order records were applied.
//! [`StateStore::scan`] returns the current state with the sequence number it reflects, and
//! [`StateStore::watch`] the records after a sequence number, in order, so that a follower can load a
//! snapshot and then follow the stream with no gap and no double application.

mod file;
mod mem;
mod redis;
mod tables;

pub use file::{FileStore, Fsync};
pub use mem::MemStore;
pub use redis::RedisStore;

use crate::codec::Codec;
use crate::error::Error;
use crate::record::Record;
use crate::schema::Schema;
use async_trait::async_trait;
use std::path::PathBuf;
use std::sync::Arc;

/// A schema's current state and the sequence number it reflects. (For Redis the snapshot is fuzzy:
/// entries may be newer than `seq`; replaying the stream after `seq` converges to the exact state, since
/// every record sets or removes one key.)
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The last sequence number applied to this state.
    pub seq: u64,
    /// One record per live key.
    pub records: Vec<Record>,
}

/// Counters of one schema in a store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaStats {
    /// Schema name.
    pub schema: String,
    /// Live keys.
    pub entries: u64,
    /// Last sequence number.
    pub last_seq: u64,
    /// Oldest sequence number a watcher can still start after (minus one).
    pub oldest_retained: u64,
}

/// What a store reports about itself.
#[derive(Debug, Clone, Default)]
pub struct StoreStats {
    /// Per schema.
    pub schemas: Vec<SchemaStats>,
    /// Store-specific counters (`fsyncs`, `torn_bytes_cut`, ...) of this handle: since this process
    /// opened the store, not over the store's life.
    pub counters: Vec<(String, u64)>,
}

/// An ordered stream of records from [`StateStore::watch`].
#[derive(Debug)]
pub struct Watch {
    rx: tokio::sync::mpsc::Receiver<Result<Record, Error>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Watch {
    pub(crate) fn new(
        rx: tokio::sync::mpsc::Receiver<Result<Record, Error>>,
        task: Option<tokio::task::JoinHandle<()>>,
    ) -> Self {
        Watch { rx, task }
    }

    /// The next record, or an error (a [`Error::Gap`] means: resynchronise from a snapshot); `None` once
    /// the store is gone.
    pub async fn next(&mut self) -> Option<Result<Record, Error>> {
        self.rx.recv().await
    }

    /// Up to `max` records that are ready now, without waiting (at least one if `next` would not block).
    pub fn try_next(&mut self) -> Option<Result<Record, Error>> {
        self.rx.try_recv().ok()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// A state store.
#[async_trait]
pub trait StateStore: Send + Sync + std::fmt::Debug {
    /// Applies records (upserts and deletes, any schemas) in order, in one call. Assigns and returns their
    /// sequence numbers. When it returns, the records are acknowledged: as durable as the store promises.
    async fn apply(&self, records: Vec<Record>) -> Result<Vec<u64>, Error>;

    /// The current record of a key (an upsert), if any.
    async fn get(&self, schema: &str, key: &[u8]) -> Result<Option<Record>, Error>;

    /// The current state of a schema.
    async fn scan(&self, schema: &str) -> Result<Snapshot, Error>;

    /// The records of `schema` with sequence numbers after `from_seq`, in order, then new ones as they come.
    async fn watch(&self, schema: &str, from_seq: u64) -> Result<Watch, Error>;

    /// Counters.
    async fn stats(&self) -> Result<StoreStats, Error>;

    /// The URL this store was opened from.
    fn url(&self) -> String;
}

/// Typed convenience operations on any store.
#[async_trait]
pub trait StateStoreExt: StateStore {
    /// Upserts one key of schema `S`; returns its sequence number.
    async fn put<S: Schema>(
        &self,
        codec: Codec,
        origin: &str,
        key: &S::Key,
        value: &S::Value,
    ) -> Result<u64, Error> {
        let r = Record::upsert::<S>(codec, origin, key, value)?;
        Ok(self.apply(vec![r]).await?.pop().unwrap_or(0))
    }

    /// Deletes one key of schema `S`; returns its sequence number.
    async fn delete<S: Schema>(
        &self,
        codec: Codec,
        origin: &str,
        key: &S::Key,
    ) -> Result<u64, Error> {
        let r = Record::delete::<S>(codec, origin, key)?;
        Ok(self.apply(vec![r]).await?.pop().unwrap_or(0))
    }

    /// The value of one key of schema `S` (the key is encoded with `codec`, which must be the writers').
    async fn get_typed<S: Schema>(
        &self,
        codec: Codec,
        key: &S::Key,
    ) -> Result<Option<S::Value>, Error> {
        let k = codec.encode(key)?;
        match self.get(S::NAME, &k).await? {
            Some(r) => Ok(r.decode::<S>()?.1),
            None => Ok(None),
        }
    }
}

impl<T: StateStore + ?Sized> StateStoreExt for T {}

/// A parsed store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `mem:`
    Mem,
    /// `file:PATH[?fsync=always|batch|never][&compact=BYTES]`
    File {
        /// Directory of the store.
        path: PathBuf,
        /// Durability policy.
        fsync: Fsync,
        /// Bytes of log after which it is compacted (`None`: the default, 64 MiB; see the file store).
        compact: Option<u64>,
    },
    /// `redis://HOST:PORT/DB`
    Redis {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// Database number.
        db: u32,
    },
    /// `redis+cluster://HOST:PORT,HOST:PORT,...`
    RedisCluster {
        /// Seed nodes.
        nodes: Vec<(String, u16)>,
    },
}

fn host_port(url: &str, s: &str, default_port: u16) -> Result<(String, u16), Error> {
    let bad = |reason: String| Error::Url {
        url: url.to_string(),
        reason,
    };
    if s.is_empty() {
        return Err(bad("a host is needed".into()));
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| bad("unclosed `[` in an IPv6 host".into()))?;
        let p = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(bad(format!("unexpected `{after}` after the host"))),
        };
        (h.to_string(), p)
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (s.to_string(), None),
        }
    };
    if host.is_empty() || host.contains('/') {
        return Err(bad(format!("`{host}` is not a host")));
    }
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| bad(format!("`{p}` is not a port (0-65535)")))?,
    };
    Ok((host, port))
}

impl StoreUrl {
    /// Parses a store URL.
    pub fn parse(url: &str) -> Result<StoreUrl, Error> {
        let bad = |reason: &str| Error::Url {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let u = url.trim();
        if u == "mem:" || u == "mem" {
            return Ok(StoreUrl::Mem);
        }
        if let Some(rest) = u.strip_prefix("file:") {
            let (path, query) = match rest.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (rest, None),
            };
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(bad("file: needs a directory path (file:/var/lib/nf/state)"));
            }
            let mut fsync = Fsync::Batch;
            let mut compact = None;
            if let Some(q) = query {
                for kv in q.split('&') {
                    match kv.split_once('=') {
                        Some(("fsync", v)) => {
                            fsync = Fsync::parse(v)
                                .ok_or_else(|| bad("fsync must be always, batch or never"))?
                        }
                        Some(("compact", v)) => {
                            compact =
                                Some(v.parse::<u64>().ok().filter(|&b| b > 0).ok_or_else(|| {
                                    bad("compact must be a number of bytes (compact=67108864)")
                                })?)
                        }
                        _ => {
                            return Err(bad(&format!(
                                "unknown option `{kv}` (known: fsync=always|batch|never, compact=BYTES)"
                            )));
                        }
                    }
                }
            }
            return Ok(StoreUrl::File {
                path: PathBuf::from(path),
                fsync,
                compact,
            });
        }
        if let Some(rest) = u.strip_prefix("redis+cluster://") {
            let nodes = rest
                .trim_end_matches('/')
                .split(',')
                .map(|n| host_port(url, n.trim(), 6379))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(StoreUrl::RedisCluster { nodes });
        }
        if let Some(rest) = u.strip_prefix("redis://") {
            let (hp, db) = match rest.split_once('/') {
                Some((hp, db)) if !db.is_empty() => (
                    hp,
                    db.parse::<u32>()
                        .map_err(|_| bad("the database must be a number (redis://HOST:PORT/0)"))?,
                ),
                Some((hp, _)) => (hp, 0),
                None => (rest, 0),
            };
            let (host, port) = host_port(url, hp, 6379)?;
            return Ok(StoreUrl::Redis { host, port, db });
        }
        Err(bad(
            "expected mem:, file:PATH, redis://HOST:PORT/DB or redis+cluster://HOST:PORT,HOST:PORT",
        ))
    }
}

/// Opens the store a URL names.
pub async fn open(url: &str) -> Result<Arc<dyn StateStore>, Error> {
    match StoreUrl::parse(url)? {
        StoreUrl::Mem => Ok(Arc::new(MemStore::new())),
        StoreUrl::File {
            path,
            fsync,
            compact,
        } => {
            let f = FileStore::open(&path, fsync).await?;
            if let Some(b) = compact {
                f.set_compact_threshold(b);
            }
            Ok(Arc::new(f))
        }
        StoreUrl::Redis { host, port, db } => {
            Ok(Arc::new(RedisStore::open(&host, port, db).await?))
        }
        StoreUrl::RedisCluster { nodes } => Ok(Arc::new(RedisStore::open_cluster(&nodes).await?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(StoreUrl::parse("mem:").unwrap(), StoreUrl::Mem);
        assert_eq!(
            StoreUrl::parse("file:/var/lib/nf?fsync=always").unwrap(),
            StoreUrl::File {
                path: "/var/lib/nf".into(),
                fsync: Fsync::Always,
                compact: None,
            }
        );
        assert_eq!(
            StoreUrl::parse("file:/s?compact=1048576&fsync=never").unwrap(),
            StoreUrl::File {
                path: "/s".into(),
                fsync: Fsync::Never,
                compact: Some(1 << 20),
            }
        );
        for bad in [
            "file:/s?compact=0",
            "file:/s?compact=lots",
            "file:/s?compact=",
        ] {
            assert!(StoreUrl::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            StoreUrl::parse("redis://127.0.0.1:6380/2").unwrap(),
            StoreUrl::Redis {
                host: "127.0.0.1".into(),
                port: 6380,
                db: 2
            }
        );
        assert_eq!(
            StoreUrl::parse("redis://[::1]").unwrap(),
            StoreUrl::Redis {
                host: "::1".into(),
                port: 6379,
                db: 0
            }
        );
        assert_eq!(
            StoreUrl::parse("redis+cluster://a:7000,b:7001").unwrap(),
            StoreUrl::RedisCluster {
                nodes: vec![("a".into(), 7000), ("b".into(), 7001)]
            }
        );
        for bad in [
            "",
            "memory",
            "file:",
            "file:/x?fsync=sometimes",
            "file:/x?mode=1",
            "redis://h:99999",
            "redis://:1",
            "redis://h:1/x",
            "redis+cluster://a:1,,b:2",
            "http://x",
        ] {
            let e = StoreUrl::parse(bad).unwrap_err().to_string();
            assert!(e.contains("bad store URL"), "{bad}: {e}");
        }
    }
}
