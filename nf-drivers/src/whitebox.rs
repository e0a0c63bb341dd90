//! The white-box driver: a driver inside a box built with this SDK. It attaches to the
//! [`StateSink`] of any stateful element's table (the connection tracker, a NAT, a load balancer), maps
//! each change to a record of a schema, and writes the records through a [`Replicator`] (coalesced,
//! batched, in order) to a store, where a minion's follower installs them.
//!
//! The packet path never waits: a change is a bounded-queue send; a full queue drops and counts.
//!
//! ```no_run
//! # async fn demo() -> Result<(), nf_drivers::Error> {
//! use nf_drivers::driver::{Shutdown, StateDriver};
//! use nf_drivers::whitebox::WhiteBox;
//! use nf_state::schemas::Conntrack;
//!
//! let mut driver = WhiteBox::<Conntrack>::new(Default::default());
//! let sink = driver.conntrack_sink(); // give it to the ConnTrack element's table
//! # drop(sink);
//! let store = nf_state::open("mem:").await?;
//! let (stop, shutdown) = Shutdown::new();
//! let task = tokio::spawn(async move { driver.run(store, shutdown).await });
//! // ... the graph runs ...
//! stop.trigger();
//! # let _ = task.await;
//! # Ok(()) }
//! ```

use crate::Error;
use crate::adapter;
pub use crate::adapter::{flow_mapping_key, lb_install, lb_installer};
use crate::driver::{CounterSnapshot, DriverCounters, Shutdown, StateDriver};
use nf_core::FlowKey;
use nf_core::elements::lb::{ClientKey, LbEntry};
use nf_core::elements::tcpudp::Connection;
use nf_core::state::{StateChange, StateSink, Stateful};
use nf_state::StateStore;
use nf_state::replicate::{
    PreparedReplicator, Replicator, ReplicatorConfig, ReplicatorHandle, ReplicatorStats,
};
use nf_state::schema::Schema;
use nf_state::schemas::{Conntrack, FlowMapping};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The white-box driver for schema `S`.
pub struct WhiteBox<S: Schema> {
    prepared: Option<PreparedReplicator<S>>,
    handle: ReplicatorHandle<S>,
    stats: Arc<ReplicatorStats>,
    counters: Arc<DriverCounters>,
}

impl<S: Schema> std::fmt::Debug for WhiteBox<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhiteBox")
            .field("schema", &S::NAME)
            .field("counters", &self.counters.snapshot())
            .finish()
    }
}

/// The sink a [`WhiteBox`] hands to a table: counts each change and queues its record.
struct WhiteBoxSink<S: Schema, F> {
    handle: ReplicatorHandle<S>,
    counters: Arc<DriverCounters>,
    map: F,
}

impl<S, K, V, F> StateSink<K, V> for WhiteBoxSink<S, F>
where
    S: Schema,
    F: FnMut(&StateChange<'_, K, V>) -> Option<(S::Key, Option<S::Value>)> + Send,
{
    fn on_change(&mut self, change: &StateChange<'_, K, V>) {
        self.counters.seen.fetch_add(1, Ordering::Relaxed);
        match (self.map)(change) {
            Some((k, v)) => {
                self.counters.parsed.fetch_add(1, Ordering::Relaxed);
                let queued = match v {
                    Some(v) => self.handle.upsert(k, v),
                    None => self.handle.delete(k),
                };
                if !queued {
                    self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                self.counters.rejected.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl<S: Schema> WhiteBox<S> {
    /// A driver whose replicator uses `cfg` (queue bound, batch size, coalescing window, origin name).
    /// Its sinks work at once; what they report waits in the queue until [`run`](StateDriver::run).
    pub fn new(cfg: ReplicatorConfig) -> Self {
        let prepared = Replicator::<S>::prepare(cfg);
        let handle = prepared.handle();
        let stats = prepared.stats();
        WhiteBox {
            prepared: Some(prepared),
            handle,
            stats,
            counters: Arc::new(DriverCounters::default()),
        }
    }

    /// A sink for a table of `K -> V` whose changes `map` turns into this schema's key and value
    /// (`Some(None)`: a delete; `None`: nothing to replicate for this change, counted as rejected).
    pub fn sink<K, V, F>(&self, map: F) -> Box<dyn StateSink<K, V>>
    where
        K: 'static,
        V: 'static,
        F: FnMut(&StateChange<'_, K, V>) -> Option<(S::Key, Option<S::Value>)> + Send + 'static,
    {
        Box::new(WhiteBoxSink {
            handle: self.handle.clone(),
            counters: self.counters.clone(),
            map,
        })
    }

    /// Attaches a sink built from `map` to a stateful element's table.
    pub fn attach<E, F>(&self, element: &mut E, map: F)
    where
        E: Stateful,
        E::Key: Eq + Clone + 'static,
        E::Value: 'static,
        F: FnMut(&StateChange<'_, E::Key, E::Value>) -> Option<(S::Key, Option<S::Value>)>
            + Send
            + 'static,
    {
        element.table_mut().set_sink(self.sink(map));
    }

    /// The replicator's own counters (coalesced, batches, retries, lag histogram).
    pub fn replicator_stats(&self) -> Arc<ReplicatorStats> {
        self.stats.clone()
    }

    fn sync_emitted(&self) {
        self.counters.emitted.store(
            self.stats.written.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
    }
}

impl WhiteBox<Conntrack> {
    /// A sink for a connection tracker's table: inserts and state transitions become upserts of the
    /// `conntrack` schema, removals (closed, expired, evicted) deletes.
    pub fn conntrack_sink(&self) -> Box<dyn StateSink<FlowKey, Connection>> {
        self.sink(adapter::conntrack_change)
    }
}

impl WhiteBox<FlowMapping> {
    /// A sink for a `LoadBalancer`'s table: each flow's backend becomes a `flow-mapping` upsert when the
    /// flow is assigned, a delete when it ends.
    pub fn lb_sink(&self) -> Box<dyn StateSink<ClientKey, LbEntry>> {
        self.sink(adapter::lb_change)
    }
}

#[async_trait::async_trait]
impl<S: Schema> StateDriver for WhiteBox<S> {
    fn name(&self) -> &str {
        "whitebox"
    }

    fn counters(&self) -> Arc<DriverCounters> {
        self.counters.clone()
    }

    async fn run(
        &mut self,
        store: Arc<dyn StateStore>,
        mut shutdown: Shutdown,
    ) -> Result<CounterSnapshot, Error> {
        let prepared = self
            .prepared
            .take()
            .ok_or_else(|| Error::Config("the white-box driver has already run".into()))?;
        let replicator = prepared.start(store);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = shutdown.wait() => break,
                _ = tick.tick() => self.sync_emitted(),
            }
        }
        // Everything queued before the order is written before `close` returns.
        replicator.close().await;
        self.sync_emitted();
        // Deltas dropped by the replicator after close (handles still held by a running graph).
        let lost = self.stats.dropped.load(Ordering::Relaxed);
        self.counters.dropped.fetch_max(lost, Ordering::Relaxed);
        Ok(self.counters.snapshot())
    }
}
