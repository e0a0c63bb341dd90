//! The driver framework: a [`StateDriver`] runs until it is told to stop, turns what it sees into records
//! of a schema, writes them to a [`StateStore`], counts what it did ([`DriverCounters`]) and, when stopped,
//! flushes what it holds before returning.

use crate::Error;
use nf_state::StateStore;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What a driver counts, shared between the running driver and whoever reports on it.
#[derive(Debug, Default)]
pub struct DriverCounters {
    /// Inputs seen (log messages, state changes, packets).
    pub seen: AtomicU64,
    /// Inputs understood (parsed, mapped to a state change).
    pub parsed: AtomicU64,
    /// Inputs not understood or not relevant (bad syntax, filtered out).
    pub rejected: AtomicU64,
    /// Records acknowledged by the store.
    pub emitted: AtomicU64,
    /// Inputs or records lost to a full queue (overload), never silently.
    pub dropped: AtomicU64,
    /// Time from a record's creation (the driver saw the change) to the store's acknowledgement, for
    /// the drivers that write through a batch writer (syslog, observation).
    pub store_lag: nf_state::replicate::Histogram,
}

impl DriverCounters {
    /// A copy of the counters at this moment.
    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            seen: self.seen.load(Ordering::Relaxed),
            parsed: self.parsed.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            emitted: self.emitted.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
    /// Adds `n` to a counter (relaxed).
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// A copy of [`DriverCounters`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// Inputs seen.
    pub seen: u64,
    /// Inputs understood.
    pub parsed: u64,
    /// Inputs not understood or filtered out.
    pub rejected: u64,
    /// Records acknowledged by the store.
    pub emitted: u64,
    /// Inputs or records lost to overload.
    pub dropped: u64,
}

impl fmt::Display for CounterSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seen={} parsed={} rejected={} emitted={} dropped={}",
            self.seen, self.parsed, self.rejected, self.emitted, self.dropped
        )
    }
}

/// The receiving end of a stop order: cheap to clone, one per task that must stop.
#[derive(Debug, Clone)]
pub struct Shutdown(tokio::sync::watch::Receiver<bool>);

/// The sending end of a stop order.
#[derive(Debug)]
pub struct ShutdownTrigger(tokio::sync::watch::Sender<bool>);

impl Shutdown {
    /// A new trigger and its receiver.
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        (ShutdownTrigger(tx), Shutdown(rx))
    }

    /// A receiver stopped by SIGINT or SIGTERM (spawns a task on the current tokio runtime). The
    /// trigger is returned too, so that the program can also stop for its own reasons.
    pub fn on_signals() -> Result<(Arc<ShutdownTrigger>, Shutdown), Error> {
        use tokio::signal::unix::{SignalKind, signal};
        let net = |source| Error::Net {
            what: "install a signal handler".into(),
            source,
        };
        let mut int = signal(SignalKind::interrupt()).map_err(net)?;
        let mut term = signal(SignalKind::terminate()).map_err(net)?;
        let (trigger, shutdown) = Shutdown::new();
        let trigger = Arc::new(trigger);
        let t = trigger.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            t.trigger();
        });
        Ok((trigger, shutdown))
    }

    /// True once the stop order was given (or its trigger dropped).
    pub fn is_set(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }

    /// Waits for the stop order (returns at once if it was given, or if its trigger is gone).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|v| *v).await;
    }
}

impl ShutdownTrigger {
    /// Gives the stop order.
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
    /// Another receiver of this trigger's order.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown(self.0.subscribe())
    }
}

/// A state driver: gets state out of a middlebox (its own tables, its logs, its traffic) into a store.
///
/// `run` works until `shutdown` fires, then writes what it still holds and returns its final counters.
/// [`counters`](StateDriver::counters) may be read from elsewhere while it runs.
#[async_trait::async_trait]
pub trait StateDriver: Send {
    /// A short name for logs and reports (`whitebox`, `syslog`, `observe`).
    fn name(&self) -> &str;
    /// The live counters.
    fn counters(&self) -> Arc<DriverCounters>;
    /// Runs until shut down, writing records to `store`; flushes before returning.
    async fn run(
        &mut self,
        store: Arc<dyn StateStore>,
        shutdown: Shutdown,
    ) -> Result<CounterSnapshot, Error>;
}

/// The store-writing end every driver shares: applies `rx`'s batches in order, each retried (backoff
/// 20 ms doubling to 1 s, 30 attempts) while the store is away; a batch the store still refuses is counted
/// as dropped. Counts acknowledged records as emitted and calls `on_retry` at each retry. Returns the
/// records lost.
pub(crate) async fn write_batches(
    store: Arc<dyn StateStore>,
    mut rx: tokio::sync::mpsc::Receiver<Vec<nf_state::Record>>,
    counters: Arc<DriverCounters>,
    on_retry: impl Fn() + Send + 'static,
) -> u64 {
    let mut lost = 0u64;
    while let Some(batch) = rx.recv().await {
        let n = batch.len() as u64;
        let mut delay = std::time::Duration::from_millis(20);
        let mut attempts = 0;
        loop {
            match store.apply(batch.clone()).await {
                Ok(_) => {
                    counters.emitted.fetch_add(n, Ordering::Relaxed);
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos() as u64);
                    for r in &batch {
                        counters.store_lag.record(now.saturating_sub(r.time));
                    }
                    break;
                }
                Err(_) if attempts < 30 => {
                    attempts += 1;
                    on_retry();
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(std::time::Duration::from_secs(1));
                }
                Err(_) => {
                    counters.dropped.fetch_add(n, Ordering::Relaxed);
                    lost += n;
                    break;
                }
            }
        }
    }
    lost
}
