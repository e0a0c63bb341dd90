//! Replication from a primary to its minions.
//!
//! On the primary, a [`Replicator`] takes deltas from the packet path through a bounded queue (never
//! blocking it: a full queue drops and counts), coalesces repeated changes of one key within a short window,
//! writes batches to the store, retries while the store is unavailable (nothing it accepted is lost), and
//! measures its lag. On the minion, [`follow`] loads a snapshot, then applies the store's ordered stream
//! through an install callback, detects sequence gaps and resynchronises from a new snapshot.

use crate::codec::Codec;
use crate::error::Error;
use crate::record::{Op, Record};
use crate::schema::Schema;
use crate::store::StateStore;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A latency histogram: microsecond buckets, four per power of two (so a quantile is known within 19%),
/// with the exact count and maximum.
#[derive(Debug)]
pub struct Histogram {
    buckets: [AtomicU64; 160],
    count: AtomicU64,
    max_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            max_ns: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    /// Records one latency.
    pub fn record(&self, ns: u64) {
        let us = (ns / 1000).max(1);
        let p = 63 - us.leading_zeros() as usize;
        let sub = if p >= 2 {
            ((us >> (p - 2)) & 3) as usize
        } else {
            0
        };
        let b = (p * 4 + sub).min(159);
        self.buckets[b].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.max_ns.fetch_max(ns, Ordering::Relaxed);
    }
    /// Number of latencies recorded.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
    /// An upper bound of the `q` quantile (0..=1), in nanoseconds (the top of its bucket).
    pub fn quantile_ns(&self, q: f64) -> u64 {
        let n = self.count();
        if n == 0 {
            return 0;
        }
        let want = ((n as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Ordering::Relaxed);
            if seen >= want {
                // Top of bucket i: 2^p * (1 + (sub + 1) / 4) microseconds.
                let (p, sub) = ((i / 4) as u32, (i % 4) as u64);
                let top = if p >= 2 {
                    (1u64 << p) + ((sub + 1) << (p - 2))
                } else {
                    2u64 << p
                };
                return top * 1000;
            }
        }
        self.max_ns.load(Ordering::Relaxed)
    }
    /// The largest latency recorded.
    pub fn max_ns(&self) -> u64 {
        self.max_ns.load(Ordering::Relaxed)
    }
}

/// Settings of a [`Replicator`].
#[derive(Debug, Clone)]
pub struct ReplicatorConfig {
    /// This node's name (the records' origin).
    pub origin: String,
    /// Codec of keys and values.
    pub codec: Codec,
    /// How long to wait for more deltas after the first of a batch (repeated changes of a key inside a
    /// batch are coalesced). Zero (the default) takes what is already queued and waits for nothing:
    /// batches then form by themselves while the previous one is being written. Windows under a
    /// millisecond are treated as zero (the timer's resolution).
    pub window: Duration,
    /// Most records per batch.
    pub max_batch: usize,
    /// Deltas the queue holds before the packet path's changes are dropped (and counted).
    pub queue: usize,
}

impl Default for ReplicatorConfig {
    fn default() -> Self {
        ReplicatorConfig {
            origin: "primary".into(),
            codec: Codec::Bincode,
            window: Duration::ZERO,
            max_batch: 8192,
            queue: 1 << 16,
        }
    }
}

/// Counters of a [`Replicator`].
#[derive(Debug, Default)]
pub struct ReplicatorStats {
    /// Deltas accepted into the queue.
    pub enqueued: AtomicU64,
    /// Deltas dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Deltas folded into a later change of the same key.
    pub coalesced: AtomicU64,
    /// Records written to the store.
    pub written: AtomicU64,
    /// Batches written.
    pub batches: AtomicU64,
    /// Writes retried after a store error.
    pub retries: AtomicU64,
    /// Time from a delta's arrival to the store's acknowledgement.
    pub lag: Histogram,
}

/// The latest change of each key in a batch: value (`None`: delete), time, and position in the batch.
type Pending<S> = HashMap<<S as Schema>::Key, (Option<<S as Schema>::Value>, u64, usize)>;

enum Delta<S: Schema> {
    Upsert(S::Key, S::Value, Instant, u64),
    Delete(S::Key, Instant, u64),
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The packet path's handle: cheap to clone, never blocks.
pub struct ReplicatorHandle<S: Schema> {
    tx: tokio::sync::mpsc::Sender<Delta<S>>,
    stats: Arc<ReplicatorStats>,
}

impl<S: Schema> Clone for ReplicatorHandle<S> {
    fn clone(&self) -> Self {
        ReplicatorHandle {
            tx: self.tx.clone(),
            stats: self.stats.clone(),
        }
    }
}

impl<S: Schema> std::fmt::Debug for ReplicatorHandle<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicatorHandle")
            .field("schema", &S::NAME)
            .finish()
    }
}

impl<S: Schema> ReplicatorHandle<S> {
    fn send(&self, d: Delta<S>) -> bool {
        match self.tx.try_send(d) {
            Ok(()) => {
                self.stats.enqueued.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(_) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }
    /// Reports that `key` now maps to `value`. False if the queue was full (counted as dropped).
    pub fn upsert(&self, key: S::Key, value: S::Value) -> bool {
        self.send(Delta::Upsert(key, value, Instant::now(), now_ns()))
    }
    /// Reports that `key` is gone. False if the queue was full (counted as dropped).
    pub fn delete(&self, key: S::Key) -> bool {
        self.send(Delta::Delete(key, Instant::now(), now_ns()))
    }
    /// The counters.
    pub fn stats(&self) -> &ReplicatorStats {
        &self.stats
    }
}

/// The primary side of replication for one schema: a task that batches deltas into a store.
pub struct Replicator<S: Schema> {
    handle: ReplicatorHandle<S>,
    task: tokio::task::JoinHandle<()>,
    shutdown: tokio::sync::watch::Sender<bool>,
}

impl<S: Schema> std::fmt::Debug for Replicator<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replicator")
            .field("schema", &S::NAME)
            .finish()
    }
}

/// A replicator whose queue exists but whose task has not started: its handles can be attached to the
/// packet path (which may run on a thread without a tokio runtime) before a store is chosen or opened.
/// Deltas reported meanwhile wait in the queue (bounded: beyond it they are dropped and counted).
pub struct PreparedReplicator<S: Schema> {
    handle: ReplicatorHandle<S>,
    rx: tokio::sync::mpsc::Receiver<Delta<S>>,
    cfg: ReplicatorConfig,
}

impl<S: Schema> std::fmt::Debug for PreparedReplicator<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedReplicator")
            .field("schema", &S::NAME)
            .finish()
    }
}

impl<S: Schema> PreparedReplicator<S> {
    /// A handle for the packet path.
    pub fn handle(&self) -> ReplicatorHandle<S> {
        self.handle.clone()
    }

    /// The counters (shared with the replicator once started).
    pub fn stats(&self) -> Arc<ReplicatorStats> {
        self.handle.stats.clone()
    }

    /// Starts the task that writes the queue to `store` (on the current tokio runtime).
    pub fn start(self, store: Arc<dyn StateStore>) -> Replicator<S> {
        let PreparedReplicator { handle, rx, cfg } = self;
        let (shutdown, stop) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(run::<S>(store, cfg, rx, stop, handle.stats.clone()));
        Replicator {
            handle,
            task,
            shutdown,
        }
    }
}

impl<S: Schema> Replicator<S> {
    /// Starts the replicator's task (on the current tokio runtime).
    pub fn start(store: Arc<dyn StateStore>, cfg: ReplicatorConfig) -> Replicator<S> {
        Self::prepare(cfg).start(store)
    }

    /// Creates the queue and its handles without starting the task: see [`PreparedReplicator`].
    pub fn prepare(cfg: ReplicatorConfig) -> PreparedReplicator<S> {
        let (tx, rx) = tokio::sync::mpsc::channel(cfg.queue.max(1));
        let stats = Arc::new(ReplicatorStats::default());
        PreparedReplicator {
            handle: ReplicatorHandle { tx, stats },
            rx,
            cfg,
        }
    }

    /// The counters.
    pub fn stats(&self) -> Arc<ReplicatorStats> {
        self.handle.stats.clone()
    }

    /// A handle for the packet path.
    pub fn handle(&self) -> ReplicatorHandle<S> {
        self.handle.clone()
    }

    /// Writes everything queued so far, stops, and returns the counters. Handles still held elsewhere
    /// keep working but their deltas are dropped (and counted) once the queue is closed.
    pub async fn close(self) -> Arc<ReplicatorStats> {
        let Replicator {
            handle,
            task,
            shutdown,
        } = self;
        let stats = handle.stats.clone();
        drop(handle);
        let _ = shutdown.send(true);
        let _ = task.await;
        stats
    }
}

async fn run<S: Schema>(
    store: Arc<dyn StateStore>,
    cfg: ReplicatorConfig,
    mut rx: tokio::sync::mpsc::Receiver<Delta<S>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    stats: Arc<ReplicatorStats>,
) {
    let mut order: Vec<Option<S::Key>> = Vec::new();
    let mut latest: Pending<S> = HashMap::new();
    let mut arrivals: Vec<Instant> = Vec::new();
    // Set when the `Replicator` was dropped without `close`: behave as if closed.
    let mut orphaned = false;
    loop {
        // Wait for the first delta of a batch (or the order to stop: then drain what is queued), then
        // gather for the window.
        let stopping = orphaned || *stop.borrow();
        let first = if stopping {
            match rx.try_recv() {
                Ok(d) => d,
                Err(_) => return,
            }
        } else {
            tokio::select! {
                d = rx.recv() => match d { Some(d) => d, None => return },
                r = stop.changed() => {
                    orphaned |= r.is_err();
                    continue;
                }
            }
        };
        let deadline = tokio::time::Instant::now() + cfg.window;
        fn take<S: Schema>(
            d: Delta<S>,
            order: &mut Vec<Option<S::Key>>,
            latest: &mut Pending<S>,
            arrivals: &mut Vec<Instant>,
            stats: &ReplicatorStats,
        ) {
            let (key, value, at, time) = match d {
                Delta::Upsert(k, v, at, t) => (k, Some(v), at, t),
                Delta::Delete(k, at, t) => (k, None, at, t),
            };
            arrivals.push(at);
            // A key keeps the position of its *last* change: the final operations then reach the store in
            // the order they happened, which matters when two keys name one entry (a flow keyed from either
            // direction after an eviction).
            let pos = order.len();
            if let Some((_, _, old)) = latest.insert(key.clone(), (value, time, pos)) {
                stats.coalesced.fetch_add(1, Ordering::Relaxed);
                order[old] = None;
            }
            order.push(Some(key));
        }
        take(first, &mut order, &mut latest, &mut arrivals, &stats);
        let mut closed = false;
        while latest.len() < cfg.max_batch {
            // Take what is already queued.
            match rx.try_recv() {
                Ok(d) => {
                    take(d, &mut order, &mut latest, &mut arrivals, &stats);
                    continue;
                }
                Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
                Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {}
            }
            if stopping || cfg.window < Duration::from_millis(1) {
                break;
            }
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(d)) => take(d, &mut order, &mut latest, &mut arrivals, &stats),
                Ok(None) => {
                    closed = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let mut records = Vec::with_capacity(latest.len());
        for k in order.drain(..).flatten() {
            let Some((v, time, _)) = latest.remove(&k) else {
                continue;
            };
            let r = match &v {
                Some(v) => Record::upsert::<S>(cfg.codec, &cfg.origin, &k, v),
                None => Record::delete::<S>(cfg.codec, &cfg.origin, &k),
            };
            match r {
                Ok(mut r) => {
                    r.time = time;
                    records.push(r);
                }
                Err(_) => {
                    stats.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let n = records.len() as u64;
        // Retry until the store takes the batch: it holds no acknowledged state yet, and dropping it would
        // lose changes the minion needs.
        let mut backoff = Duration::from_millis(5);
        loop {
            match store.apply(records.clone()).await {
                Ok(_) => break,
                Err(_) => {
                    stats.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
        let acked = Instant::now();
        for a in arrivals.drain(..) {
            stats.lag.record(acked.duration_since(a).as_nanos() as u64);
        }
        stats.written.fetch_add(n, Ordering::Relaxed);
        stats.batches.fetch_add(1, Ordering::Relaxed);
        if closed {
            return;
        }
    }
}

/// What a follower asks its table to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Install<S: Schema> {
    /// Forget everything: a snapshot follows.
    Reset,
    /// Set a key.
    Upsert(S::Key, S::Value),
    /// Remove a key.
    Delete(S::Key),
}

/// Counters of a follower.
#[derive(Debug, Default)]
pub struct FollowerStats {
    /// Snapshots loaded (1 + resynchronisations).
    pub snapshots: AtomicU64,
    /// Records installed from snapshots.
    pub snapshot_records: AtomicU64,
    /// Stream records applied.
    pub applied: AtomicU64,
    /// Sequence gaps detected.
    pub gaps: AtomicU64,
    /// Times the store went back in time under the follower ([`Error::Rewound`]: a failover to a replica
    /// that missed its master's last writes): it resynchronised without dropping what it had installed.
    pub rewinds: AtomicU64,
    /// Records that did not decode (counted, skipped).
    pub rejected: AtomicU64,
    /// Records from an origin the follower does not accept (counted, skipped): see [`follow_from`].
    pub foreign: AtomicU64,
    /// The last sequence number applied.
    pub last_seq: AtomicU64,
    /// Times an install found its table's queue full and waited for room (see
    /// [`follow_with_backpressure`]): the table's thread is behind the stream.
    pub install_waits: AtomicU64,
    /// Time from a record's creation on the primary to its installation here.
    pub latency: Histogram,
}

/// Follows schema `S` in `store`: loads a snapshot, then applies the stream in order through `install`,
/// until `stop` turns true (returns `Ok`) or the store fails (returns the error). A sequence gap (a missed
/// record, a watcher that fell behind the store's retention) triggers a new snapshot.
pub async fn follow<S: Schema>(
    store: Arc<dyn StateStore>,
    stats: Arc<FollowerStats>,
    stop: tokio::sync::watch::Receiver<bool>,
    install: impl FnMut(Install<S>) + Send,
) -> Result<(), Error> {
    follow_from(store, stats, stop, &[], install).await
}

/// [`follow`], accepting only records whose origin is one of `origins` (all if empty): records from
/// anyone else who can write to the store are skipped and counted ([`FollowerStats::foreign`]), so a
/// minion installs only its primary's state.
pub async fn follow_from<S: Schema>(
    store: Arc<dyn StateStore>,
    stats: Arc<FollowerStats>,
    stop: tokio::sync::watch::Receiver<bool>,
    origins: &[String],
    mut install: impl FnMut(Install<S>) + Send,
) -> Result<(), Error> {
    follow_with_backpressure(store, stats, stop, origins, move |i| {
        install(i);
        Ok(())
    })
    .await
}

/// [`follow_from`] into a table behind a bounded queue: `install` returns the install back (`Err`) when
/// the queue is full, and the follower waits for room (a millisecond at a time, counted in
/// [`FollowerStats::install_waits`]) and offers it again. Nothing is dropped: while the table's thread is
/// behind, the follower reads no further, and the store holds the stream (a follower that falls behind
/// the store's retention resynchronises from a snapshot, as after any gap).
pub async fn follow_with_backpressure<S: Schema>(
    store: Arc<dyn StateStore>,
    stats: Arc<FollowerStats>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    origins: &[String],
    mut install: impl FnMut(Install<S>) -> Result<(), Install<S>> + Send,
) -> Result<(), Error> {
    // Offers an install until it is taken; false if the follower was told to stop meanwhile.
    macro_rules! offer {
        ($i:expr) => {{
            let mut pending = $i;
            loop {
                match install(pending) {
                    Ok(()) => break true,
                    Err(back) => {
                        pending = back;
                        stats.install_waits.fetch_add(1, Ordering::Relaxed);
                        if *stop.borrow() {
                            break false;
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    }
                }
            }
        }};
    }
    let accepted = |r: &Record| origins.is_empty() || origins.iter().any(|o| **o == *r.origin);
    // After a rewind the snapshot is merged into what is installed, not put in its place: the store
    // lost records the follower had (whose flows are still live on the primary), so keeping them is
    // the lesser error (a delete the store lost leaves a mapping that expires with its idle timeout).
    let mut merge = false;
    'resync: loop {
        let snap = store.scan(S::NAME).await?;
        if !std::mem::take(&mut merge) && !offer!(Install::Reset) {
            return Ok(());
        }
        for r in &snap.records {
            if !accepted(r) {
                stats.foreign.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            match r.decode::<S>() {
                Ok((k, Some(v))) => {
                    if !offer!(Install::Upsert(k, v)) {
                        return Ok(());
                    }
                }
                Ok((_, None)) => {}
                Err(_) => {
                    stats.rejected.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        stats.snapshots.fetch_add(1, Ordering::Relaxed);
        stats
            .snapshot_records
            .fetch_add(snap.records.len() as u64, Ordering::Relaxed);
        let mut last = snap.seq;
        stats.last_seq.store(last, Ordering::Relaxed);
        let mut watch = store.watch(S::NAME, last).await?;
        loop {
            let next = tokio::select! {
                _ = stop.changed() => {
                    if *stop.borrow() { return Ok(()); }
                    continue;
                }
                n = watch.next() => n,
            };
            let rec = match next {
                None => return Err(Error::Unavailable("the store's stream ended".into())),
                Some(Err(Error::Gap { .. })) => {
                    stats.gaps.fetch_add(1, Ordering::Relaxed);
                    continue 'resync;
                }
                Some(Err(Error::Rewound { .. })) => {
                    stats.rewinds.fetch_add(1, Ordering::Relaxed);
                    merge = true;
                    continue 'resync;
                }
                Some(Err(e)) => return Err(e),
                Some(Ok(r)) => r,
            };
            if rec.seq != last + 1 {
                stats.gaps.fetch_add(1, Ordering::Relaxed);
                continue 'resync;
            }
            last = rec.seq;
            if !accepted(&rec) {
                stats.foreign.fetch_add(1, Ordering::Relaxed);
                stats.last_seq.store(last, Ordering::Relaxed);
                continue;
            }
            let taken = match rec.decode::<S>() {
                Ok((k, Some(v))) if rec.op == Op::Upsert => offer!(Install::Upsert(k, v)),
                Ok((k, _)) => offer!(Install::Delete(k)),
                Err(_) => {
                    stats.rejected.fetch_add(1, Ordering::Relaxed);
                    true
                }
            };
            if !taken {
                return Ok(());
            }
            stats.applied.fetch_add(1, Ordering::Relaxed);
            stats.last_seq.store(last, Ordering::Relaxed);
            stats.latency.record(now_ns().saturating_sub(rec.time));
        }
    }
}

/// A follower's table as a plain map, for tools and tests.
pub fn install_into_map<S: Schema>(
    map: Arc<Mutex<HashMap<S::Key, S::Value>>>,
) -> impl FnMut(Install<S>) + Send {
    move |i| {
        let mut m = map.lock().unwrap_or_else(|p| p.into_inner());
        match i {
            Install::Reset => m.clear(),
            Install::Upsert(k, v) => {
                m.insert(k, v);
            }
            Install::Delete(k) => {
                m.remove(&k);
            }
        }
    }
}
