//! The traffic-observation driver: the state of a black box (a DNAT load balancer, a NAPT box, a box that
//! does both) inferred from its traffic, seen on two taps: *outside* (the clients' side) and *inside* (the
//! servers' side). Each tap is a capture file (read to the end, the two merged by timestamp) or a live
//! interface (AF_PACKET, until shut down). The [`Correlator`] pairs each flow seen outside with the same
//! flow seen inside; the driver writes what it infers as `flow-mapping` and `nat-binding` records.

pub mod correlate;
pub mod flow_correlator;

pub use correlate::{
    ChunkConfig, Correlator, Fingerprint, Inference, ObserveConfig, ObserveStats, Side,
};
pub use flow_correlator::{FlowCorrelator, FlowLink};

use crate::Error;
use crate::driver::{CounterSnapshot, DriverCounters, Shutdown, StateDriver};
use crate::io::af_packet_unsafe::PacketSocket;
use crate::io::pcap::{CaptureFile, LinkLayer};
use crate::syslog::Emitter;
use nf_state::replicate::Histogram;
use nf_state::schemas::{FlowMapping, NatBinding};
use nf_state::{Codec, Record, StateStore};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Where a tap's packets come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tap {
    /// A capture file (pcap or pcapng).
    Pcap(PathBuf),
    /// A live interface.
    Device(String),
}

impl FromStr for Tap {
    type Err = Error;
    /// An existing file is a capture; a name under `/sys/class/net` an interface.
    fn from_str(s: &str) -> Result<Tap, Error> {
        if std::path::Path::new(s).is_file() {
            return Ok(Tap::Pcap(PathBuf::from(s)));
        }
        if !s.contains('/') && std::path::Path::new("/sys/class/net").join(s).exists() {
            return Ok(Tap::Device(s.to_string()));
        }
        Err(Error::Config(format!(
            "`{s}` is neither a capture file nor a network interface"
        )))
    }
}

/// Settings of an [`ObserveDriver`].
#[derive(Debug, Clone)]
pub struct ObserveDriverConfig {
    /// The correlator's settings.
    pub correlate: ObserveConfig,
    /// Codec of the records.
    pub codec: Codec,
    /// The records' origin.
    pub origin: String,
    /// Records per store write.
    pub batch: usize,
}

impl Default for ObserveDriverConfig {
    fn default() -> Self {
        ObserveDriverConfig {
            correlate: ObserveConfig::default(),
            codec: Codec::Bincode,
            origin: "observe".into(),
            batch: 4096,
        }
    }
}

/// The observation driver.
#[derive(Debug)]
pub struct ObserveDriver {
    outside: Tap,
    inside: Tap,
    cfg: ObserveDriverConfig,
    counters: Arc<DriverCounters>,
    stats: Arc<Mutex<ObserveStats>>,
    latency: Arc<Histogram>,
}

impl ObserveDriver {
    /// A driver watching `outside` and `inside`.
    pub fn new(outside: Tap, inside: Tap, cfg: ObserveDriverConfig) -> ObserveDriver {
        ObserveDriver {
            outside,
            inside,
            cfg,
            counters: Arc::new(DriverCounters::default()),
            stats: Arc::new(Mutex::new(ObserveStats::default())),
            latency: Arc::new(Histogram::default()),
        }
    }

    /// The correlator's counters (updated as it runs).
    pub fn stats(&self) -> ObserveStats {
        *self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Link latencies: packet time from an inside flow's first packet to the packet that linked it.
    pub fn latency(&self) -> Arc<Histogram> {
        self.latency.clone()
    }
}

fn to_records(inf: &[Inference], e: &mut Emitter) -> Result<(), Error> {
    let err = |x: crate::syslog::ExtractError| Error::Config(x.to_string());
    for i in inf {
        match i {
            Inference::FlowMapping { key, value, .. } => match value {
                Some(v) => e.upsert::<FlowMapping>(key, v).map_err(err)?,
                None => e.delete::<FlowMapping>(key).map_err(err)?,
            },
            Inference::NatBinding { key, value, .. } => match value {
                Some(v) => e.upsert::<NatBinding>(key, v).map_err(err)?,
                None => e.delete::<NatBinding>(key).map_err(err)?,
            },
            // Links are for SIMPLE's FlowCorrelator; the driver records mappings.
            Inference::Link { .. } => {}
        }
    }
    Ok(())
}

/// The processing loop's shared pieces.
struct Work {
    corr: Correlator,
    emitter: Emitter,
    inferences: Vec<Inference>,
    tx: mpsc::Sender<Vec<Record>>,
    batch: usize,
    stats: Arc<Mutex<ObserveStats>>,
    latency: Arc<Histogram>,
    counters: Arc<DriverCounters>,
}

impl Work {
    fn packet(&mut self, side: Side, ts: u64, frame: &[u8], ethernet: bool) -> Result<(), Error> {
        self.corr
            .packet(side, ts, frame, ethernet, &mut self.inferences);
        if !self.inferences.is_empty() {
            to_records(&self.inferences, &mut self.emitter)?;
            self.inferences.clear();
            if self.emitter.len() >= self.batch {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Error> {
        for l in self.corr.take_latencies() {
            self.latency.record(l);
        }
        let s = self.corr.stats();
        *self.stats.lock().unwrap_or_else(|p| p.into_inner()) = s;
        let seen = s.packets_inside + s.packets_outside;
        self.counters.seen.store(seen, Ordering::Relaxed);
        self.counters
            .parsed
            .store(seen - s.ignored, Ordering::Relaxed);
        self.counters.rejected.store(s.ignored, Ordering::Relaxed);
        if !self.emitter.is_empty() {
            self.tx
                .blocking_send(self.emitter.take())
                .map_err(|_| Error::Config("the store writer stopped".into()))?;
        }
        Ok(())
    }
}

fn run_pcaps(w: &mut Work, outside: &PathBuf, inside: &PathBuf) -> Result<(), Error> {
    let files = [CaptureFile::open(outside)?, CaptureFile::open(inside)?];
    let eth: Vec<bool> = files
        .iter()
        .map(|f| matches!(f.link(), LinkLayer::Ethernet))
        .collect();
    for f in &files {
        if !matches!(f.link(), LinkLayer::Ethernet | LinkLayer::RawIp) {
            return Err(Error::Config(format!(
                "{}: link type {:?} (Ethernet or raw IP captures only)",
                f.path().display(),
                f.link()
            )));
        }
    }
    let mut cursors = [files[0].cursor()?, files[1].cursor()?];
    let mut next = [cursors[0].next(&files[0])?, cursors[1].next(&files[1])?];
    let sides = [Side::Outside, Side::Inside];
    let mut n = 0u64;
    loop {
        // The earlier of the two heads (outside first on a tie: the box forwards after it receives).
        let pick = match (&next[0], &next[1]) {
            (None, None) => break,
            (Some(_), None) => 0,
            (None, Some(_)) => 1,
            (Some(a), Some(b)) => usize::from(b.timestamp.0 < a.timestamp.0),
        };
        if let Some(r) = next[pick] {
            w.packet(sides[pick], r.timestamp.0, r.data, eth[pick])?;
        }
        next[pick] = cursors[pick].next(&files[pick])?;
        n += 1;
        if n.is_multiple_of(65536) {
            w.flush()?;
        }
    }
    w.corr.finish();
    w.flush()
}

fn run_devices(
    w: &mut Work,
    outside: &str,
    inside: &str,
    shutdown: &Shutdown,
) -> Result<(), Error> {
    // Both directions of each link: the box's own interfaces send half of what the tap must see.
    let open = |d: &str| {
        PacketSocket::open_with(d, false).map_err(|source| Error::Net {
            what: format!("open {d}"),
            source,
        })
    };
    let socks = [open(outside)?, open(inside)?];
    let sides = [Side::Outside, Side::Inside];
    let mut slab = vec![0u8; 64 * 2048];
    let mut lens = [0usize; 64];
    let mut last_flush = std::time::Instant::now();
    while !shutdown.is_set() {
        let mut any = false;
        for k in 0..2 {
            let mut bufs: Vec<&mut [u8]> = slab.chunks_exact_mut(2048).collect();
            let got = socks[k].recv_batch(&mut bufs, &mut lens).unwrap_or(0);
            let ts = nf_core::Timestamp::now().0;
            for (b, &len) in bufs.iter().zip(&lens).take(got) {
                if len <= b.len() {
                    w.packet(sides[k], ts, &b[..len], true)?;
                }
            }
            any |= got > 0;
        }
        if last_flush.elapsed() >= std::time::Duration::from_millis(1) {
            w.flush()?;
            last_flush = std::time::Instant::now();
        }
        if !any {
            socks[0].wait_readable(1);
        }
    }
    w.corr.finish();
    w.flush()
}

#[async_trait::async_trait]
impl StateDriver for ObserveDriver {
    fn name(&self) -> &str {
        "observe"
    }

    fn counters(&self) -> Arc<DriverCounters> {
        self.counters.clone()
    }

    async fn run(
        &mut self,
        store: Arc<dyn StateStore>,
        shutdown: Shutdown,
    ) -> Result<CounterSnapshot, Error> {
        let (tx, rx) = mpsc::channel::<Vec<Record>>(64);
        let writer = tokio::spawn(crate::driver::write_batches(
            store,
            rx,
            self.counters.clone(),
            || {},
        ));
        let mut w = Work {
            corr: Correlator::new(self.cfg.correlate.clone()),
            emitter: Emitter::new(self.cfg.codec, self.cfg.origin.clone()),
            inferences: Vec::new(),
            tx,
            batch: self.cfg.batch.max(1),
            stats: self.stats.clone(),
            latency: self.latency.clone(),
            counters: self.counters.clone(),
        };
        let (o, i) = (self.outside.clone(), self.inside.clone());
        let processed = tokio::task::spawn_blocking(move || {
            let r = match (&o, &i) {
                (Tap::Pcap(a), Tap::Pcap(b)) => run_pcaps(&mut w, a, b),
                (Tap::Device(a), Tap::Device(b)) => run_devices(&mut w, a, b, &shutdown),
                _ => Err(Error::Config(
                    "both taps must be capture files, or both interfaces".into(),
                )),
            };
            drop(w);
            r
        })
        .await
        .map_err(|e| Error::Config(format!("the observer thread failed: {e}")))?;
        let lost = writer
            .await
            .map_err(|e| Error::Config(format!("the store writer failed: {e}")))?;
        processed?;
        if lost > 0 {
            return Err(Error::Config(format!(
                "the store refused {lost} records after 30 retries"
            )));
        }
        Ok(self.counters.snapshot())
    }
}
