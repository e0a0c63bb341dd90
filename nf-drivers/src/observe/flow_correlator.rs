//! `FlowCorrelator`: SIMPLE's flow correlation as an element. It watches packets entering a middlebox
//! that rewrites headers (input 0) and leaving it (input 1), and links each flow that leaves to the flow
//! that entered, by content-defined chunks of the first bytes of their payloads within a time window, so
//! a controller can steer the rewritten flow by the policy of the original one. The matching core is the
//! observation driver's [`Correlator`] in [`Fingerprint::Payload`] mode.

use super::correlate::{ChunkConfig, Correlator, Fingerprint, Inference, ObserveConfig, Side};
use nf_core::ElementClass;
use nf_core::args::Args;
use nf_core::batch::{Batch, Outputs};
use nf_core::element::{Element, HandlerSpec, PortCount, PortSpec};
use nf_core::error::ConfigError;
use nf_core::{FlowKey, Packet};
use std::collections::VecDeque;
use std::fmt;

/// A link: the flow that entered the middlebox and the flow that left it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FlowLink {
    /// The flow entering (canonical key).
    pub entering: FlowKey,
    /// The flow leaving (canonical key).
    pub leaving: FlowKey,
    /// Confidence.
    pub confidence: f64,
}

/// Called for every link as it is made.
pub type LinkListener = Box<dyn FnMut(&FlowLink) + Send>;

/// The most links kept for reading (older ones are dropped, counted).
pub const MAX_LINKS: usize = 65_536;

/// Links the flows entering a middlebox (input 0) with the flows leaving it (input 1) by payload
/// fingerprints; packets pass through (input `i` to output `i`).
///
/// # Ports
/// Two push inputs (0: packets entering the middlebox, 1: packets leaving it), two push outputs (the same
/// packets, unchanged).
///
/// # Arguments
/// `WINDOW_MS` (longest time between a payload entering and leaving, 2000); `THRESHOLD` (confidence to
/// link, 0.9); `BYTES` (payload bytes of each direction fingerprinted, 4096); `CHUNK` (mean chunk length,
/// 64); `MAX_FLOWS` (per side, 65536); `LINK` (`ether` or `ip`).
///
/// # Handlers
/// `linked`, `ambiguous`, `unmatched` (counts); `links` (on demand: `entering <-> leaving confidence`,
/// one per line).
///
/// # Example
/// ```
/// // Both taps of a middlebox: packets pass through, each side to its own output, while the payloads
/// // are fingerprinted (the tests link a proxy's flows this way: nf-drivers/tests/flow_correlator.rs).
/// let text = "InfiniteSource(LIMIT 64, LENGTH 300, FLOWS 4, PROTO tcp, STOP true) -> t :: Tee(2);
///     t[0] -> [0]fc :: FlowCorrelator(CHUNK 32); t[1] -> [1]fc;
///     fc[0] -> a :: Counter -> Discard; fc[1] -> b :: Counter -> Discard;";
/// let cfg = nf_core::Config::parse("t", text, &Default::default()).unwrap();
/// let mut r = nf_core::Router::new(cfg.build(&nf_drivers::registry()).unwrap()).unwrap();
/// r.run().unwrap();
/// assert_eq!(r.read_handler("a", "count").unwrap(), "64");
/// assert_eq!(r.read_handler("b", "count").unwrap(), "64");
/// assert!(r.read_handler("fc", "linked").is_ok());
/// ```
pub struct FlowCorrelator {
    corr: Correlator,
    ethernet: bool,
    links: VecDeque<FlowLink>,
    dropped_links: u64,
    scratch: Vec<Inference>,
    listener: Option<LinkListener>,
}

impl fmt::Debug for FlowCorrelator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlowCorrelator")
            .field("stats", &self.corr.stats())
            .field("links", &self.links.len())
            .finish()
    }
}

impl FlowCorrelator {
    /// A correlator with settings `cfg` (its fingerprint is set to payload chunks `chunks`).
    pub fn new(cfg: ObserveConfig, chunks: ChunkConfig) -> Self {
        FlowCorrelator {
            corr: Correlator::new(ObserveConfig {
                fingerprint: Fingerprint::Payload(chunks),
                emit_links: true,
                ..cfg
            }),
            ethernet: true,
            links: VecDeque::new(),
            dropped_links: 0,
            scratch: Vec::new(),
            listener: None,
        }
    }

    /// Packets start at the IP header (not Ethernet).
    pub fn raw_ip(mut self) -> Self {
        self.ethernet = false;
        self
    }

    /// Calls `f` for each link as it is made.
    pub fn on_link(mut self, f: impl FnMut(&FlowLink) + Send + 'static) -> Self {
        self.listener = Some(Box::new(f));
        self
    }

    /// The links made so far (at most [`MAX_LINKS`], oldest first).
    pub fn links(&self) -> impl Iterator<Item = &FlowLink> {
        self.links.iter()
    }

    /// The correlator's counters.
    pub fn correlator(&self) -> &Correlator {
        &self.corr
    }

    fn see(&mut self, side: Side, p: &Packet) {
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        self.corr.packet(
            side,
            p.anno.timestamp.as_nanos(),
            p.data(),
            self.ethernet,
            &mut out,
        );
        for i in &out {
            if let Inference::Link {
                outside,
                inside,
                confidence,
            } = i
            {
                let l = FlowLink {
                    entering: *outside,
                    leaving: *inside,
                    confidence: *confidence,
                };
                if let Some(f) = self.listener.as_mut() {
                    f(&l);
                }
                if self.links.len() == MAX_LINKS {
                    self.links.pop_front();
                    self.dropped_links += 1;
                }
                self.links.push_back(l);
            }
        }
        self.scratch = out;
    }
}

const HANDLERS: &[HandlerSpec] = &[
    HandlerSpec::read("linked", "pairs of flows linked"),
    HandlerSpec::read("ambiguous", "pairs held because a rival was as likely"),
    HandlerSpec::read("unmatched", "flows that ended without a partner"),
    HandlerSpec::read_on_demand("links", "entering <-> leaving confidence, one per line"),
];

impl Element for FlowCorrelator {
    fn class_name(&self) -> &'static str {
        Self::NAME
    }
    fn ports(&self) -> PortSpec {
        PortSpec::new(PortCount::exactly(2), PortCount::exactly(2), "h/h")
    }
    fn push(&mut self, port: usize, batch: &mut Batch, out: &mut Outputs) {
        let side = if port == 0 {
            Side::Outside
        } else {
            Side::Inside
        };
        for p in batch.iter() {
            self.see(side, p);
        }
        out.port(port).append(batch);
    }
    fn handlers(&self) -> &'static [HandlerSpec] {
        HANDLERS
    }
    fn read_handler(&self, name: &str) -> Option<String> {
        let s = self.corr.stats();
        Some(match name {
            "linked" => s.matched.to_string(),
            "ambiguous" => s.ambiguous.to_string(),
            "unmatched" => s.unmatched.to_string(),
            "links" => self
                .links
                .iter()
                .map(|l| format!("{} <-> {} {:.3}\n", l.entering, l.leaving, l.confidence))
                .collect(),
            _ => return None,
        })
    }
}

fn from_args(a: &mut Args) -> Result<FlowCorrelator, ConfigError> {
    let d = ObserveConfig::default();
    let c = ChunkConfig::default();
    let window_ms: u64 = a.read_or("WINDOW_MS", d.window_ns / 1_000_000)?;
    let threshold: f64 = a.read_or("THRESHOLD", d.threshold)?;
    let bytes: u32 = a.read_at_most_or("BYTES", c.bytes, 1 << 20)?;
    let chunk: u32 = a.read_at_most_or("CHUNK", c.average, 4096)?;
    let max_flows: usize = a.read_at_most_or("MAX_FLOWS", 65_536, 1 << 24)?;
    let link: String = a.read_or("LINK", "ether".to_string())?;
    if !(0.0..1.0).contains(&threshold) {
        return Err(a.error("THRESHOLD must be in [0, 1)"));
    }
    if !chunk.is_power_of_two() || chunk < 8 {
        return Err(a.error(format!("CHUNK {chunk} must be a power of two, at least 8")));
    }
    a.reserve("MAX_FLOWS", max_flows as u64 * 2 * 256)?;
    let cfg = ObserveConfig {
        window_ns: window_ms.saturating_mul(1_000_000),
        threshold,
        max_flows,
        max_pending: max_flows * 4,
        ..d
    };
    let chunks = ChunkConfig {
        average: chunk,
        min: (chunk / 2).max(4),
        max: chunk * 4,
        bytes,
        ..c
    };
    let e = FlowCorrelator::new(cfg, chunks);
    match link.as_str() {
        "ether" => Ok(e),
        "ip" => Ok(e.raw_ip()),
        o => Err(a.error(format!("LINK must be ether or ip, not `{o}`"))),
    }
}

impl ElementClass for FlowCorrelator {
    const NAME: &'static str = "FlowCorrelator";
    const DOC: &'static str = "SIMPLE: links flows entering and leaving a header-rewriting middlebox by payload fingerprints";
    fn configure(a: &mut Args) -> Result<Self, ConfigError> {
        from_args(a)
    }
}
