//! `file:PATH`: the embedded durable store.
//!
//! The directory holds `log` (an append-only sequence of framed records) and `snapshot` (the whole state
//! at some sequence numbers, written to `snapshot.tmp`, synced, then renamed over the old one). When the log
//! grows past a threshold (64 MiB, or the last snapshot's size if that is larger) it is compacted: the log
//! is set aside as `log.old` and a new one begun, and a thread of its own writes the state as it was at that
//! moment into a new snapshot, then removes `log.old`. Writers go on meanwhile (compacting under the
//! store's lock stalled every writer for the whole rewrite: half the time of a run writing 2 million new
//! keys). Rewriting the state thus costs at most one write per record written, and recovery reads at most
//! twice the state.
//!
//! Durability (`?fsync=`): `always` syncs each `apply` before acknowledging it; `batch` (the default) groups
//! the `apply`s that arrive while a sync runs into the next sync (group commit), and acknowledges each once
//! its records are on disk; `never` leaves it to the kernel. Records become visible to readers and watchers
//! only once they are as durable as the policy promises, and always in sequence order.
//!
//! Recovery loads the snapshot, then `log.old` if a compaction was cut short (then it finishes that
//! compaction before opening), then the log. A frame cut short by a crash at the end of the log (a torn
//! tail) is cut off and counted; a bad frame anywhere else is corruption, reported with its offset, and the
//! store does not open: no acknowledged record is silently dropped.

use super::tables::{Held, Shared};
use super::{Snapshot, StateStore, StoreStats, Watch};
use crate::error::{Error, RecordError};
use crate::record::{FRAME_HEADER, Op, Record};
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// When the log is synced to disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fsync {
    /// Before acknowledging each `apply`.
    Always,
    /// Group commit: one sync for all the `apply`s waiting (the default).
    #[default]
    Batch,
    /// Never (the kernel writes back when it likes; a power loss can lose acknowledged records).
    Never,
}

impl Fsync {
    /// Parses `always`, `batch`, `never`.
    pub fn parse(s: &str) -> Option<Fsync> {
        match s {
            "always" => Some(Fsync::Always),
            "batch" => Some(Fsync::Batch),
            "never" => Some(Fsync::Never),
            _ => None,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Fsync::Always => "always",
            Fsync::Batch => "batch",
            Fsync::Never => "never",
        }
    }
}

/// Bytes of log after which it is compacted into a snapshot (or the last snapshot's size, if larger: with
/// a fixed threshold alone, a state of millions of keys was rewritten whole every 64 MiB of log).
const COMPACT_BYTES: u64 = 64 << 20;
const META: &str = "__meta";
/// Commit markers: appended after each sync, holding the log offset the sync made durable.
const COMMIT: &str = "__commit";

fn commit_marker(durable: u64) -> Record {
    Record {
        schema: std::sync::Arc::from(COMMIT),
        version: 0,
        codec: crate::codec::Codec::Bincode,
        seq: durable,
        origin: std::sync::Arc::from(""),
        time: 0,
        op: Op::Upsert,
        key: Bytes::new(),
        value: Some(Bytes::new()),
    }
}

fn commit_frame(durable: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(48);
    // A marker always encodes (its fields are tiny).
    let _ = commit_marker(durable).encode_frame(&mut v);
    v
}

/// True if a valid commit marker after `from` claims that bytes past `from` were durable: then a bad frame
/// at `from` is corruption of acknowledged data, not a crash's torn tail.
fn durable_past(bytes: &[u8], from: usize) -> bool {
    let n = commit_frame(0).len();
    (from + 1..bytes.len().saturating_sub(n - 1)).any(|at| {
        // Cheap filter first: the length field of a marker frame.
        bytes[at..at + 4] == ((n - FRAME_HEADER) as u32).to_le_bytes()
            && matches!(Record::decode_frame(&bytes[at..at + n]),
                        Ok((r, _)) if &*r.schema == COMMIT && r.seq > from as u64)
    })
}

#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    fsyncs: u64,
    torn_bytes_cut: u64,
    snapshots: u64,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    file: File,
    /// Bytes of the current log file.
    written: u64,
    /// Bytes of the log files set aside before it (durable positions count from the first).
    rotated: u64,
    /// A compaction's thread, while it writes a snapshot.
    compacting: Option<std::thread::JoinHandle<()>>,
    next: HashMap<String, u64>,
    pending: Vec<Record>,
    buf: Vec<u8>,
    counters: Counters,
    failed: Option<String>,
    compact_bytes: u64,
    /// Size of the last snapshot written or loaded: the log is compacted once it is at least as large
    /// (and past `compact_bytes`), so that the work of rewriting the state stays proportional to what
    /// was written, however large the state is.
    snapshot_bytes: u64,
}

/// Durable position: bytes of log that are synced (for `batch`), or a failure.
type Durable = (u64, Option<String>);

#[derive(Debug)]
struct Core {
    inner: Mutex<Inner>,
    wake: Condvar,
    stop: AtomicBool,
    shared: Arc<Shared>,
    durable: tokio::sync::watch::Sender<Durable>,
    policy: Fsync,
}

impl Core {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The embedded durable store (see the module documentation).
#[derive(Debug)]
pub struct FileStore {
    core: Arc<Core>,
    flusher: Option<std::thread::JoinHandle<()>>,
    url: String,
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

impl FileStore {
    /// Opens (or creates) the store in `dir`, recovering what is there.
    pub async fn open(dir: &Path, policy: Fsync) -> Result<FileStore, Error> {
        let d = dir.to_path_buf();
        let (inner, shared) = tokio::task::spawn_blocking(move || recover(&d))
            .await
            .map_err(|e| Error::Unavailable(format!("recovery task: {e}")))??;
        let (durable, _) = tokio::sync::watch::channel((inner.rotated + inner.written, None));
        let core = Arc::new(Core {
            inner: Mutex::new(inner),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            shared,
            durable,
            policy,
        });
        let flusher = if policy == Fsync::Batch {
            let c = core.clone();
            Some(
                std::thread::Builder::new()
                    .name("nf-state-flush".into())
                    .spawn(move || flush_loop(&c))
                    .map_err(|e| Error::Unavailable(format!("cannot start the flusher: {e}")))?,
            )
        } else {
            None
        };
        Ok(FileStore {
            core,
            flusher,
            url: format!("file:{}?fsync={}", dir.display(), policy.name()),
        })
    }

    /// Sets the log size after which it is compacted (the URL's `compact=BYTES`; tests use small values).
    pub fn set_compact_threshold(&self, bytes: u64) {
        self.core.lock().compact_bytes = bytes.max(1);
    }

    /// Waits until no compaction is running (for tests, and tools that read the directory).
    pub fn wait_for_compaction(&self) {
        let h = self.core.lock().compacting.take();
        if let Some(h) = h {
            let _ = h.join();
        }
    }
}

impl Drop for FileStore {
    fn drop(&mut self) {
        self.core.stop.store(true, Ordering::SeqCst);
        self.core.wake.notify_all();
        if let Some(h) = self.flusher.take() {
            let _ = h.join();
        }
        self.wait_for_compaction();
    }
}

/// Loads the snapshot and the log; cuts a torn tail; refuses corruption.
fn recover(dir: &Path) -> Result<(Inner, Arc<Shared>), Error> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let shared = Shared::new(1_000_000);
    let snap_path = dir.join("snapshot");
    let mut snapshot_bytes = 0;
    if snap_path.exists() {
        let bytes = std::fs::read(&snap_path).map_err(io_err(&snap_path))?;
        snapshot_bytes = bytes.len() as u64;
        let mut at = 0;
        let mut t = shared.lock();
        while at < bytes.len() {
            let (r, n) = Record::decode_frame(&bytes[at..]).map_err(|reason| Error::Corrupt {
                path: snap_path.clone(),
                offset: at as u64,
                reason,
            })?;
            at += n;
            if &*r.schema == META {
                let schema = String::from_utf8_lossy(&r.key).into_owned();
                t.set_last_seq(&schema, r.seq);
            } else {
                let s = t.schema_mut(&r.schema);
                s.last_seq = s.last_seq.max(r.seq);
                let held = s.current.hold(r);
                s.current.insert(held);
            }
        }
    }
    let mut counters = Counters::default();
    // A compaction cut short: its log comes first; the snapshot it was writing is finished below.
    let old_path = dir.join(OLD_LOG);
    let unfinished = old_path.exists();
    if unfinished {
        replay(&shared, &old_path, &mut counters)?;
    }
    let log_path = dir.join("log");
    let written = if log_path.exists() {
        replay(&shared, &log_path, &mut counters)?
    } else {
        0
    };
    if unfinished {
        let job = CompactJob::take(dir, &shared);
        snapshot_bytes = job.write()?;
        counters.snapshots += 1;
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io_err(&log_path))?;
    sync_dir(dir)?;
    let inner = Inner {
        dir: dir.to_path_buf(),
        file,
        written,
        rotated: 0,
        compacting: None,
        next: HashMap::new(),
        pending: Vec::new(),
        buf: Vec::with_capacity(1 << 20),
        counters,
        failed: None,
        compact_bytes: COMPACT_BYTES,
        snapshot_bytes,
    };
    Ok((inner, shared))
}

/// The log set aside by a compaction until its snapshot is written.
const OLD_LOG: &str = "log.old";

/// Applies the log at `path`: cuts a torn tail (counted), refuses corruption. Returns the bytes kept.
fn replay(shared: &Shared, path: &Path, counters: &mut Counters) -> Result<u64, Error> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let mut at = 0usize;
    let mut t = shared.lock();
    while at < bytes.len() {
        match Record::decode_frame(&bytes[at..]) {
            Ok((r, n)) => {
                if &*r.schema != COMMIT {
                    t.apply(std::iter::once(r));
                }
                at += n;
            }
            Err(reason) => {
                if !is_torn_tail(&bytes[at..], &reason) || durable_past(&bytes, at) {
                    return Err(Error::Corrupt {
                        path: path.to_path_buf(),
                        offset: at as u64,
                        reason,
                    });
                }
                counters.torn_bytes_cut += (bytes.len() - at) as u64;
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(io_err(path))?;
                f.set_len(at as u64).map_err(io_err(path))?;
                f.sync_all().map_err(io_err(path))?;
                break;
            }
        }
    }
    Ok(at as u64)
}

/// A snapshot to write: the state as it was when the log was set aside, held by reference.
struct CompactJob {
    dir: PathBuf,
    schemas: Vec<(String, u64, Vec<Arc<Held>>)>,
    /// The last snapshot's size plus the log's: the buffer is reserved at once.
    size_hint: u64,
}

impl CompactJob {
    /// Takes the current state (a reference to each record, under the tables' lock).
    fn take(dir: &Path, shared: &Shared) -> CompactJob {
        let t = shared.lock();
        CompactJob {
            dir: dir.to_path_buf(),
            schemas: t
                .schemas
                .iter()
                .map(|(name, s)| (name.to_string(), s.last_seq, s.current.shared_records()))
                .collect(),
            size_hint: 0,
        }
    }

    /// Writes the snapshot (`snapshot.tmp`, synced, renamed over `snapshot`), then removes the log it
    /// covers (`log.old`). Returns the snapshot's size.
    fn write(self) -> Result<u64, Error> {
        // Reserved at once (pages not written cost nothing): the buffer is never moved while it grows
        // (growing it by doubling copied the whole snapshot several times).
        let mut buf = Vec::with_capacity(usize::try_from(self.size_hint).unwrap_or(0));
        for (name, seq, records) in &self.schemas {
            let meta = Record {
                schema: std::sync::Arc::from(META),
                version: 0,
                codec: crate::codec::Codec::Bincode,
                seq: *seq,
                origin: std::sync::Arc::from(""),
                time: 0,
                op: Op::Upsert,
                key: Bytes::copy_from_slice(name.as_bytes()),
                value: Some(Bytes::new()),
            };
            meta.encode_frame(&mut buf)?;
            for r in records {
                r.rec.encode_frame(&mut buf)?;
            }
        }
        let dir = &self.dir;
        let tmp = dir.join("snapshot.tmp");
        let fin = dir.join("snapshot");
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(&buf).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &fin).map_err(io_err(&fin))?;
        sync_dir(dir)?;
        // The snapshot covers the old log: remove it. (A crash before this point leaves records that the
        // snapshot also holds; recovery skips them by sequence number.)
        let old = dir.join(OLD_LOG);
        match std::fs::remove_file(&old) {
            Ok(()) => sync_dir(dir)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&old)(e)),
        }
        Ok(buf.len() as u64)
    }
}

/// A crash can leave the unsynced end of the log incomplete: a frame that runs past the end, or whose
/// checksum does not match. A frame whose checksum matches but does not decode was written so: corruption.
/// (Whether the damaged bytes had been synced is decided by the commit markers: see `durable_past`.)
fn is_torn_tail(_rest: &[u8], reason: &RecordError) -> bool {
    matches!(
        reason,
        RecordError::Truncated { .. }
            | RecordError::Oversized { .. }
            | RecordError::Checksum { .. }
    )
}

impl Inner {
    fn append(
        &mut self,
        shared: &Shared,
        mut records: Vec<Record>,
        policy: Fsync,
    ) -> Result<(Vec<u64>, u64), Error> {
        if let Some(f) = &self.failed {
            return Err(Error::Unavailable(format!("the store failed earlier: {f}")));
        }
        let seqs = shared.lock().assign(&mut records, &mut self.next);
        self.buf.clear();
        for r in &records {
            r.encode_frame(&mut self.buf)?;
        }
        let path = self.dir.join("log");
        if let Err(e) = self.file.write_all(&self.buf) {
            // The tail may now hold part of a frame: recovery cuts it. Refuse further writes.
            self.failed = Some(e.to_string());
            return Err(io_err(&path)(e));
        }
        self.written += self.buf.len() as u64;
        match policy {
            Fsync::Batch => self.pending.extend(records),
            Fsync::Always | Fsync::Never => {
                if policy == Fsync::Always {
                    if let Err(e) = self.file.sync_data() {
                        self.failed = Some(e.to_string());
                        return Err(io_err(&path)(e));
                    }
                    self.counters.fsyncs += 1;
                    self.mark_durable(self.written)?;
                }
                shared.lock().apply(records);
                shared.notify();
            }
        }
        Ok((seqs, self.rotated + self.written))
    }

    /// Appends a commit marker: everything up to `durable` is on disk. (The marker itself becomes durable
    /// with the next sync; recovery trusts only markers it can read.)
    fn mark_durable(&mut self, durable: u64) -> Result<(), Error> {
        let f = commit_frame(durable);
        let path = self.dir.join("log");
        if let Err(e) = self.file.write_all(&f) {
            self.failed = Some(e.to_string());
            return Err(io_err(&path)(e));
        }
        self.written += f.len() as u64;
        Ok(())
    }

    /// If the log is large and nothing is waiting for a sync: sets the log aside (`log.old`), begins a
    /// new one, and starts a thread that writes the state as it is now into a snapshot and then removes
    /// `log.old`. Writers go on meanwhile. Nothing happens while a compaction is still running, or while a
    /// set-aside log remains from one that failed (the store has then failed too).
    fn maybe_compact(&mut self, core: &Arc<Core>) -> Result<(), Error> {
        if self.written < self.compact_bytes.max(self.snapshot_bytes) || !self.pending.is_empty() {
            return Ok(());
        }
        if self.compacting.as_ref().is_some_and(|h| !h.is_finished()) {
            return Ok(());
        }
        if let Some(h) = self.compacting.take() {
            let _ = h.join();
        }
        let dir = self.dir.clone();
        let (log, old) = (dir.join("log"), dir.join(OLD_LOG));
        if old.exists() {
            return Ok(());
        }
        std::fs::rename(&log, &old).map_err(io_err(&old))?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(io_err(&log))?;
        sync_dir(&dir)?;
        self.file = file;
        self.rotated += self.written;
        let mut job = CompactJob::take(&dir, &core.shared);
        job.size_hint = self.snapshot_bytes.saturating_add(self.written);
        self.written = 0;
        let c = core.clone();
        let h = std::thread::Builder::new()
            .name("nf-state-compact".into())
            .spawn(move || {
                let r = job.write();
                let mut g = c.lock();
                match r {
                    Ok(n) => {
                        g.snapshot_bytes = n;
                        g.counters.snapshots += 1;
                    }
                    Err(e) => g.failed = Some(format!("compaction failed: {e}")),
                }
            })
            .map_err(|e| Error::Unavailable(format!("cannot start a compaction: {e}")))?;
        self.compacting = Some(h);
        Ok(())
    }
}

/// Group commit: sync once for every record appended since the last sync, then publish them in order.
fn flush_loop(core: &Arc<Core>) {
    loop {
        let (records, end, file) = {
            let mut g = core.lock();
            while g.pending.is_empty() && !core.stop.load(Ordering::SeqCst) {
                g = core.wake.wait(g).unwrap_or_else(|p| p.into_inner());
            }
            if g.pending.is_empty() {
                return;
            }
            let file = match g.file.try_clone() {
                Ok(f) => f,
                Err(e) => {
                    let msg = e.to_string();
                    g.failed = Some(msg.clone());
                    core.durable.send_replace((0, Some(msg)));
                    return;
                }
            };
            (std::mem::take(&mut g.pending), g.written, file)
        };
        // (The log is set aside only by this thread, below, with nothing pending: `end` stays in it.)
        if let Err(e) = file.sync_data() {
            let msg = e.to_string();
            core.lock().failed = Some(msg.clone());
            core.durable.send_replace((0, Some(msg)));
            return;
        }
        core.shared.lock().apply(records);
        core.shared.notify();
        let mut g = core.lock();
        g.counters.fsyncs += 1;
        if let Err(e) = g.mark_durable(end) {
            core.durable.send_replace((0, Some(e.to_string())));
            return;
        }
        core.durable.send_replace((g.rotated + end, None));
        if let Err(e) = g.maybe_compact(core) {
            let msg = e.to_string();
            g.failed = Some(msg);
        }
    }
}

#[async_trait]
impl StateStore for FileStore {
    async fn apply(&self, records: Vec<Record>) -> Result<Vec<u64>, Error> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let core = self.core.clone();
        let policy = core.policy;
        let (seqs, end) = tokio::task::spawn_blocking(move || {
            let shared = core.shared.clone();
            let mut g = core.lock();
            let r = g.append(&shared, records, policy);
            if policy == Fsync::Batch {
                core.wake.notify_one();
            } else if r.is_ok() {
                g.maybe_compact(&core)?;
            }
            r
        })
        .await
        .map_err(|e| Error::Unavailable(format!("append task: {e}")))??;
        if policy == Fsync::Batch {
            let mut rx = self.core.durable.subscribe();
            loop {
                {
                    let d = rx.borrow_and_update();
                    if let Some(f) = &d.1 {
                        return Err(Error::Unavailable(format!("sync failed: {f}")));
                    }
                    if d.0 >= end {
                        break;
                    }
                }
                if rx.changed().await.is_err() {
                    return Err(Error::Unavailable("the store is closed".into()));
                }
            }
        }
        Ok(seqs)
    }

    async fn get(&self, schema: &str, key: &[u8]) -> Result<Option<Record>, Error> {
        Ok(self
            .core
            .shared
            .lock()
            .schemas
            .get(schema)
            .and_then(|s| s.get(key)))
    }

    async fn scan(&self, schema: &str) -> Result<Snapshot, Error> {
        Ok(self.core.shared.lock().snapshot(schema))
    }

    async fn watch(&self, schema: &str, from_seq: u64) -> Result<Watch, Error> {
        Ok(self.core.shared.watch(schema, from_seq))
    }

    async fn stats(&self) -> Result<StoreStats, Error> {
        let schemas = self.core.shared.lock().stats();
        let g = self.core.lock();
        let c = g.counters;
        Ok(StoreStats {
            schemas,
            counters: vec![
                ("log_bytes".into(), g.written),
                ("fsyncs".into(), c.fsyncs),
                ("snapshots".into(), c.snapshots),
                ("torn_bytes_cut".into(), c.torn_bytes_cut),
            ],
        })
    }

    fn url(&self) -> String {
        self.url.clone()
    }
}
