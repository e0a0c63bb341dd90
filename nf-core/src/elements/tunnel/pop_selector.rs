//! `PoPSelector`: APLOMB's choice of the cloud point of presence (PoP) through which the gateway tunnels
//! each new connection, by measured latency.
//!
//! Latency is measured in the data plane: a new TCP connection's SYN leaves through a PoP (input 0 to that
//! PoP's output) and its SYN-ACK comes back (input 1); the time between is the round trip through that PoP
//! to that destination, kept per destination block (the /24 of an IPv4 address, the /48 of an IPv6 one) and
//! per PoP as a moving average. A new connection to a block goes to the PoP with the lowest average; a PoP
//! not yet measured for the block is tried first, and every `EXPLORE`-th new connection goes to the PoP
//! whose measurement is oldest, so a PoP that got faster is noticed. Measurements from elsewhere (probes)
//! can be written with the `rtt` handler. A connection keeps its PoP for its whole life (a bounded flow
//! table), so packets are never split across paths.

use crate::args::Args;
use crate::batch::{Batch, Outputs};
use crate::element::ElementClass;
use crate::element::{Element, HandlerSpec, InitContext, PortCount, PortSpec};
use crate::error::ConfigError;
use crate::flow::FlowKey;
use crate::indirection::{BucketSet, Exported, Migrate};
use crate::packet::{Link, Packet, Timestamp};
use crate::state::{Moved, StateTable, WhenFull};
use crate::wire::tcp_flags::{ACK, SYN};
use std::collections::HashMap;
use std::net::IpAddr;

/// The most PoPs a selector chooses among.
pub const MAX_POPS: usize = 16;

#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    /// Smoothed RTT in nanoseconds (0: none yet).
    srtt: u64,
    /// When it was last updated.
    at: u64,
}

#[derive(Clone, Debug, Default)]
struct Dest {
    pops: [Sample; MAX_POPS],
    /// New connections to this block so far.
    new_flows: u64,
    last_used: u64,
}

#[derive(Clone, Copy, Debug)]
struct FlowEntry {
    pop: u8,
    /// When its SYN left (0: measured, or not a new connection).
    syn_at: u64,
}

/// The destination block of an address (see [the package](super)).
fn block(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(a) => u64::from(u32::from(a) >> 8),
        IpAddr::V6(a) => (1 << 63) | (u128::from(a) >> 80) as u64,
    }
}

/// Chooses a PoP for each new connection by measured latency: a SYN's round trip through each PoP, kept
/// per destination block.
///
/// # Ports
/// Input 0: packets leaving the enterprise, sent to the output of their connection's PoP (outputs
/// `0..N`, one per `POP`). Input 1 (optional): packets coming back, measured, then sent on output `N`.
///
/// # Arguments
/// `POP` (repeated, a name per output, at most 16); `EXPLORE` (every n-th new connection to a block
/// re-measures the stalest PoP, 16); `FLOWS` (connections remembered, 65536); `BLOCKS` (destination blocks
/// remembered, 65536); `IDLE` (seconds a connection is remembered, 300).
///
/// # Handlers
/// `chosen` (new connections per PoP), `measured` (RTT samples), `rtt` (on demand: each block's average
/// per PoP, in ms; write `POP ADDRESS MS` to record a measurement from elsewhere).
///
/// # Example
/// ```
/// let r = nf_core::testing::run_config("
///     InfiniteSource(LIMIT 40, FLOWS 8, PROTO tcp, STOP true) -> s :: PoPSelector(POP east, POP west);
///     s[0] -> a :: Counter -> Discard; s[1] -> b :: Counter -> Discard;").unwrap();
/// let a: u64 = r.read_handler("a", "count").unwrap().parse().unwrap();
/// let b: u64 = r.read_handler("b", "count").unwrap().parse().unwrap();
/// assert_eq!(a + b, 40); // each connection through one PoP, unmeasured ones tried in turn
/// ```
#[derive(Debug)]
pub struct PoPSelector {
    names: Vec<String>,
    explore: u64,
    flows: StateTable<FlowKey, FlowEntry>,
    idle: u64,
    dests: HashMap<u64, Dest>,
    max_dests: usize,
    chosen: Vec<u64>,
    measured: u64,
    return_port: usize,
}

impl PoPSelector {
    /// A selector among `names` (outputs in order).
    pub fn new(names: Vec<String>) -> Self {
        let n = names.len().clamp(1, MAX_POPS);
        PoPSelector {
            names,
            explore: 16,
            flows: StateTable::new(65_536, WhenFull::Evict),
            idle: 300_000_000_000,
            dests: HashMap::new(),
            max_dests: 65_536,
            chosen: vec![0; n],
            measured: 0,
            return_port: n,
        }
    }

    /// Every `n`-th new connection to a block re-measures its stalest PoP.
    pub fn explore_every(mut self, n: u64) -> Self {
        self.explore = n.max(2);
        self
    }

    /// Bounds: connections and destination blocks remembered.
    pub fn capacities(mut self, flows: usize, blocks: usize) -> Self {
        self.flows = StateTable::new(flows, WhenFull::Evict);
        self.max_dests = blocks.max(1);
        self
    }

    fn pops(&self) -> usize {
        self.chosen.len()
    }

    /// The smoothed RTT (ns) through PoP `pop` to `dst`'s block, if measured.
    pub fn rtt(&self, pop: usize, dst: IpAddr) -> Option<u64> {
        let s = self.dests.get(&block(dst))?.pops.get(pop)?;
        (s.srtt != 0).then_some(s.srtt)
    }

    fn dest_mut(&mut self, b: u64, now: u64) -> &mut Dest {
        if !self.dests.contains_key(&b) && self.dests.len() >= self.max_dests {
            // Forget the least recently used of a few blocks (a bounded sample, not a scan of the table:
            // a flood of new destinations must not cost a pass over every block each).
            if let Some(old) = self
                .dests
                .iter()
                .take(16)
                .min_by_key(|(_, d)| d.last_used)
                .map(|(k, _)| *k)
            {
                self.dests.remove(&old);
            }
        }
        let d = self.dests.entry(b).or_default();
        d.last_used = now;
        d
    }

    /// Records an RTT sample through `pop` to `dst` at `now` (ns).
    pub fn record(&mut self, pop: usize, dst: IpAddr, rtt: u64, now: u64) {
        if pop >= self.pops() {
            return;
        }
        self.measured += 1;
        let d = self.dest_mut(block(dst), now);
        let s = &mut d.pops[pop];
        let rtt = rtt.max(1);
        s.srtt = if s.srtt == 0 {
            rtt
        } else {
            // RFC 6298's 1/8 gain.
            (s.srtt * 7 + rtt) / 8
        };
        s.at = now;
    }

    /// The PoP for a new connection to `dst` at `now`.
    fn choose(&mut self, dst: IpAddr, now: u64) -> usize {
        let n = self.pops();
        let explore = self.explore;
        let d = self.dest_mut(block(dst), now);
        d.new_flows += 1;
        let k = d.new_flows;
        let live = &d.pops[..n];
        // Not measured yet: try it (in turn).
        if let Some(i) = (0..n)
            .map(|j| (j + k as usize) % n)
            .find(|&i| live[i].srtt == 0)
        {
            return i;
        }
        if k.is_multiple_of(explore) {
            return (0..n).min_by_key(|&i| live[i].at).unwrap_or(0);
        }
        (0..n).min_by_key(|&i| live[i].srtt).unwrap_or(0)
    }

    fn outbound(&mut self, p: &mut Packet) -> usize {
        let Ok((h, Some(key))) = p.locate_key(Link::Ethernet) else {
            return 0;
        };
        let now = p.anno.timestamp.as_nanos();
        let (canon, _) = key.canonical();
        let hash = canon.table_hash();
        let syn = p.tcp_flags(&h).is_some_and(|f| f & (SYN | ACK) == SYN);
        if let Some(e) = self.flows.find(hash, &canon) {
            let pop = self.flows.get(e).map(|(_, v)| v.pop).unwrap_or(0);
            self.flows.touch(e, Timestamp(now).add_nanos(self.idle));
            return usize::from(pop);
        }
        let pop = self.choose(key.dst(), now);
        self.chosen[pop] += 1;
        let entry = FlowEntry {
            pop: pop as u8,
            syn_at: if syn { now.max(1) } else { 0 },
        };
        self.flows.insert(
            hash,
            canon,
            entry,
            Timestamp(now),
            Timestamp(now).add_nanos(self.idle),
        );
        pop
    }

    fn inbound(&mut self, p: &mut Packet) {
        let Ok(h) = p.locate(Link::Ethernet) else {
            return;
        };
        let synack = p
            .tcp_flags(&h)
            .is_some_and(|f| f & (SYN | ACK) == SYN | ACK);
        if !synack {
            return;
        }
        let Some(key) = FlowKey::from_headers(p.buffer(), &h) else {
            return;
        };
        let now = p.anno.timestamp.as_nanos();
        let (canon, _) = key.canonical();
        let Some(e) = self.flows.find(canon.table_hash(), &canon) else {
            return;
        };
        let Some(v) = self.flows.value_mut(e) else {
            return;
        };
        if v.syn_at == 0 || now < v.syn_at {
            return;
        }
        let (pop, rtt) = (usize::from(v.pop), now - v.syn_at);
        v.syn_at = 0;
        // The reply comes from the destination.
        self.record(pop, key.src(), rtt, now);
    }

    fn rtt_text(&self) -> String {
        let mut rows: Vec<(u64, String)> = self
            .dests
            .iter()
            .map(|(b, d)| {
                let name = if b >> 63 == 0 {
                    format!("{}/24", std::net::Ipv4Addr::from((*b as u32) << 8))
                } else {
                    let a = u128::from(*b & !(1 << 63)) << 80;
                    format!("{}/48", std::net::Ipv6Addr::from(a))
                };
                let cols: Vec<String> = (0..self.pops())
                    .map(|i| match d.pops[i].srtt {
                        0 => format!("{} -", self.names[i]),
                        s => format!("{} {:.3}", self.names[i], s as f64 / 1e6),
                    })
                    .collect();
                (*b, format!("{name} {}\n", cols.join(" ")))
            })
            .collect();
        rows.sort();
        rows.into_iter().map(|(_, r)| r).collect()
    }
}

const HANDLERS: &[HandlerSpec] = &[
    HandlerSpec::text("chosen", "new connections per PoP"),
    HandlerSpec::read("measured", "RTT samples"),
    HandlerSpec {
        name: "rtt",
        read: true,
        write: true,
        doc: "each block's average RTT per PoP in ms (write: POP ADDRESS MS)",
        listed: false,
        kind: crate::element::HandlerKind::Text,
    },
];

/// A flow's chosen PoP follows its bucket (the per-destination measurements stay with each shard: they
/// describe paths, not flows).
impl Migrate for PoPSelector {
    fn export_buckets(&mut self, buckets: &BucketSet) -> Exported {
        Exported::new(
            self.flows
                .export_where(|k, _| buckets.holds_hash(k.rss_hash())),
        )
    }
    fn import_buckets(&mut self, state: Exported) -> usize {
        self.flows
            .import(state.take::<Moved<FlowKey, FlowEntry>>(), Timestamp(0))
    }
}

impl Element for PoPSelector {
    fn migrate(&mut self) -> Option<&mut dyn Migrate> {
        Some(self)
    }
    fn class_name(&self) -> &'static str {
        Self::NAME
    }
    fn ports(&self) -> PortSpec {
        PortSpec::new(PortCount::range(1, 2), PortCount::at_least(1), "h/h")
    }
    fn initialize(&mut self, ctx: &InitContext<'_>) -> Result<(), String> {
        let n = self.pops();
        let need = if ctx.ninputs > 1 { n + 1 } else { n };
        if ctx.noutputs != need {
            return Err(format!(
                "{n} PoPs{} need {need} outputs, {} are connected",
                if ctx.ninputs > 1 {
                    " and a return path"
                } else {
                    ""
                },
                ctx.noutputs
            ));
        }
        Ok(())
    }
    fn push(&mut self, port: usize, batch: &mut Batch, out: &mut Outputs) {
        if port == 0 {
            batch.classify_to(out, |p| Some(self.outbound(p)));
        } else {
            for p in batch.iter_mut() {
                self.inbound(p);
            }
            out.port(self.return_port).append(batch);
        }
    }
    fn handlers(&self) -> &'static [HandlerSpec] {
        HANDLERS
    }
    fn read_handler(&self, name: &str) -> Option<String> {
        Some(match name {
            "chosen" => self
                .names
                .iter()
                .zip(&self.chosen)
                .map(|(n, c)| format!("{n} {c}"))
                .collect::<Vec<_>>()
                .join(" "),
            "measured" => self.measured.to_string(),
            "rtt" => self.rtt_text(),
            _ => return None,
        })
    }
    fn write_handler(&mut self, name: &str, value: &str) -> Result<(), String> {
        if name != "rtt" {
            return Err(format!("no write handler `{name}`"));
        }
        let w: Vec<&str> = value.split_whitespace().collect();
        let [pop, addr, ms] = w.as_slice() else {
            return Err("expected POP ADDRESS MS".into());
        };
        let i = self
            .names
            .iter()
            .position(|n| n == pop)
            .ok_or_else(|| format!("no PoP `{pop}`"))?;
        let a: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{addr}` is not an address"))?;
        let ms: f64 = ms
            .parse()
            .map_err(|_| format!("`{ms}` is not milliseconds"))?;
        if !(ms.is_finite() && ms >= 0.0) {
            return Err(format!("`{ms}` is not milliseconds"));
        }
        self.record(i, a, (ms * 1e6) as u64, Timestamp::now().as_nanos());
        Ok(())
    }
}

fn from_args(a: &mut Args) -> Result<PoPSelector, ConfigError> {
    let mut names = Vec::new();
    while let Some(n) = a.read::<String>("POP")? {
        names.push(n);
    }
    if names.is_empty() || names.len() > MAX_POPS {
        return Err(a.error(format!("1 to {MAX_POPS} POPs, not {}", names.len())));
    }
    let explore: u64 = a.read_or("EXPLORE", 16)?;
    let flows: usize = a.read_at_most_or("FLOWS", 65_536, crate::state::MAX_TABLE_CAPACITY)?;
    let blocks: usize = a.read_at_most_or("BLOCKS", 65_536, 1 << 24)?;
    let idle: u64 = a.read_or("IDLE", 300)?;
    a.reserve(
        "BLOCKS",
        blocks as u64 * (std::mem::size_of::<Dest>() as u64 + 16),
    )?;
    let mut s = PoPSelector::new(names)
        .explore_every(explore)
        .capacities(flows, blocks);
    s.idle = idle.saturating_mul(1_000_000_000);
    Ok(s)
}

impl ElementClass for PoPSelector {
    const NAME: &'static str = "PoPSelector";
    const DOC: &'static str = "APLOMB: chooses a cloud PoP per connection by measured latency";
    fn configure(a: &mut Args) -> Result<Self, ConfigError> {
        from_args(a)
    }
}
