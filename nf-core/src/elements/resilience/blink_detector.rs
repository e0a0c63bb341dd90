//! Blink (Holterbach et al., NSDI'19): a data-plane fast reroute that infers a remote failure from the TCP
//! retransmissions of the flows towards a destination prefix, with no control-plane signal.
//!
//! The semantics follow the authors' public P4 and Python code:
//!
//! * **Flow selector.** Per monitored prefix (longest-prefix match on the destination), 64 cells; a flow
//!   (hash of its addresses and ports) maps to cell `hash mod 64`. It takes the cell if the cell is empty or
//!   its owner has sent nothing for 2 s; otherwise the flow is not monitored. A FIN from the owner frees the
//!   cell. Only TCP packets that carry data (or a FIN, counted as one byte) are considered; SYNs and pure
//!   ACKs are not.
//! * **Retransmission.** A packet of the owner whose `seq + payload_len` equals the end of the owner's
//!   previous packet.
//! * **Sliding window.** 10 bins of 80 ms. A retransmission adds one to the current bin; a flow counts at most
//!   once in the window (its earlier count, if still in the window, moves to the current bin). When the
//!   window's sum exceeds the threshold (31, so 32 of 64 flows) the primary next hop is declared down and
//!   an event is raised. A flow that leaves its cell (FIN, eviction) takes its count with it.
//! * **After a reroute**, for 1 s, the monitored flows of the first half of the cells go to backup 1 and
//!   the others to backup 2. A backup on which a flow retransmits for the 4th time is declared down (its
//!   flows go to the other backup, or back to the primary); at the end of the second, a backup with fewer
//!   than `threshold / 2` flows that made progress (sent new data) is declared down. All other traffic of
//!   the prefix takes the first next hop still up (the primary if none is).
//!
//! Time is the packets' timestamp annotation (the capture's time on a replay, the receive time on a device).

use crate::args::Args;
use crate::batch::{Batch, Outputs};
use crate::element::ElementClass;
use crate::element::{Element, HandlerSpec, InitContext, PortCount, PortSpec};
use crate::error::ConfigError;
use crate::lpm::{Prefix, PrefixMap};
use crate::packet::{IpVersion, Link, Packet, Timestamp, proto};
use crate::wire::{Ipv4Packet, Ipv6Packet};
use std::collections::VecDeque;
use std::fmt;
use std::net::IpAddr;

const MS: u64 = 1_000_000;

/// Blink's parameters; the defaults are the paper's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlinkParams {
    /// Cells of the flow selector per prefix (64).
    pub cells: usize,
    /// Idle time after which a cell's owner can be replaced, in nanoseconds (2 s).
    pub eviction: u64,
    /// Bins of the sliding window (10).
    pub bins: usize,
    /// Duration of a bin, in nanoseconds (80 ms).
    pub bin: u64,
    /// The window's sum above which the primary next hop is declared down (31).
    pub threshold: u32,
    /// How long after a reroute the backups are watched, in nanoseconds (1 s).
    pub progress: u64,
    /// The retransmission of one flow on a backup that declares the backup down (the 4th).
    pub backup_retransmissions: u8,
    /// Progressing flows a backup needs within `progress` to stay up (`threshold / 2`).
    pub min_progressing: u32,
}

impl Default for BlinkParams {
    fn default() -> Self {
        BlinkParams {
            cells: 64,
            eviction: 2_000 * MS,
            bins: 10,
            bin: 80 * MS,
            threshold: 31,
            progress: 1_000 * MS,
            backup_retransmissions: 4,
            min_progressing: 31 / 2,
        }
    }
}

/// The next hops of a monitored prefix, as output ports of the element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextHops {
    /// The primary next hop.
    pub primary: usize,
    /// The two backups.
    pub backups: [usize; 2],
}

/// Why a next hop was declared down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DownReason {
    /// More monitored flows than the threshold retransmitted within the window (the primary).
    Retransmissions {
        /// The window's sum when it crossed the threshold.
        flows: u32,
    },
    /// A rerouted flow retransmitted again and again on this backup.
    FlowRetransmitted {
        /// The flow's cell.
        cell: usize,
    },
    /// Too few rerouted flows made progress on this backup within the watch period.
    NotProgressing {
        /// Flows that made progress.
        flows: u32,
    },
}

/// A next hop declared down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlinkEvent {
    /// When (the packet's timestamp).
    pub at: Timestamp,
    /// The prefix.
    pub prefix: Prefix,
    /// Which next hop: 0 the primary, 1 and 2 the backups.
    pub next_hop: u8,
    /// Why.
    pub reason: DownReason,
}

impl fmt::Display for BlinkEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let which = match self.next_hop {
            0 => "primary",
            1 => "backup 1",
            _ => "backup 2",
        };
        write!(f, "{} {} {which} down: ", self.at, self.prefix)?;
        match self.reason {
            DownReason::Retransmissions { flows } => {
                write!(f, "{flows} flows retransmitted within the window")
            }
            DownReason::FlowRetransmitted { cell } => {
                write!(f, "the flow of cell {cell} kept retransmitting on it")
            }
            DownReason::NotProgressing { flows } => write!(f, "only {flows} flows made progress"),
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Cell {
    /// Flow key (0: empty).
    key: u32,
    /// The end (`seq + len`) of the owner's last packet.
    nep: u32,
    /// Time of the owner's last packet.
    last: u64,
    /// Time of the owner's last counted retransmission (0: none).
    last_ret: u64,
    /// The bin that retransmission was counted in.
    last_ret_bin: u16,
    /// Counted as progressing since the reroute.
    progressed: bool,
    /// Retransmissions on a backup since the reroute.
    backup_retransmissions: u8,
}

/// What a TCP packet tells the flow selector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSeen {
    /// The flow's hash (addresses and ports; see [`flow_hash`]).
    pub hash: u64,
    /// Sequence number.
    pub seq: u32,
    /// Payload length (a FIN counts as one byte more).
    pub len: u32,
    /// SYN set.
    pub syn: bool,
    /// FIN set.
    pub fin: bool,
}

/// Per-prefix counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrefixStats {
    /// Packets of the prefix.
    pub packets: u64,
    /// Retransmissions of monitored flows seen.
    pub retransmissions: u64,
    /// Flows that took a cell.
    pub flows_selected: u64,
    /// Owners replaced after their idle time.
    pub evicted: u64,
    /// Owners that left with a FIN.
    pub finished: u64,
    /// Packets of unmonitored flows that found their cell taken.
    pub refused: u64,
    /// Packets sent to a backup next hop.
    pub rerouted_packets: u64,
    /// The largest window sum seen while the primary was up (how close normal losses came to the
    /// threshold).
    pub peak_window: u32,
}

/// The detector state of one prefix.
#[derive(Clone, Debug)]
pub struct PrefixState {
    prefix: Prefix,
    hops: [usize; 3],
    up: [bool; 3],
    cells: Box<[Cell]>,
    window: Box<[u32]>,
    index: usize,
    window_time: u64,
    started: bool,
    sum: u32,
    rerouted_at: Option<u64>,
    checked: bool,
    progressing: [u32; 2],
    stats: PrefixStats,
}

impl PrefixState {
    fn new(prefix: Prefix, hops: NextHops, p: &BlinkParams) -> Self {
        PrefixState {
            prefix,
            hops: [hops.primary, hops.backups[0], hops.backups[1]],
            up: [true; 3],
            cells: vec![Cell::default(); p.cells].into_boxed_slice(),
            window: vec![0; p.bins].into_boxed_slice(),
            index: 0,
            window_time: 0,
            started: false,
            sum: 0,
            rerouted_at: None,
            checked: false,
            progressing: [0; 2],
            stats: PrefixStats::default(),
        }
    }

    /// The prefix.
    pub fn prefix(&self) -> Prefix {
        self.prefix
    }
    /// Which next hops are up (primary, backup 1, backup 2).
    pub fn up(&self) -> [bool; 3] {
        self.up
    }
    /// The window's sum (monitored flows that retransmitted within it).
    pub fn window_sum(&self) -> u32 {
        self.sum
    }
    /// Cells with an owner.
    pub fn monitored(&self) -> usize {
        self.cells.iter().filter(|c| c.key != 0).count()
    }
    /// Flows that made progress on each backup since the reroute.
    pub fn progressing(&self) -> [u32; 2] {
        self.progressing
    }
    /// When the primary was declared down, if it was.
    pub fn rerouted_at(&self) -> Option<Timestamp> {
        self.rerouted_at.map(Timestamp)
    }
    /// Counters.
    pub fn stats(&self) -> PrefixStats {
        self.stats
    }

    fn advance(&mut self, now: u64, p: &BlinkParams) {
        if !self.started {
            self.started = true;
            self.window_time = now;
            return;
        }
        if now < self.window_time + p.bin {
            return;
        }
        let shift = (now - self.window_time) / p.bin;
        for _ in 0..shift.min(p.bins as u64) {
            self.index = (self.index + 1) % p.bins;
            self.sum -= self.window[self.index];
            self.window[self.index] = 0;
        }
        self.window_time += shift * p.bin;
    }

    /// Removes a cell's counted retransmission if it is still in the window.
    fn uncount(&mut self, c: usize, p: &BlinkParams) {
        let cell = self.cells[c];
        let start = self.window_time.saturating_sub((p.bins as u64 - 1) * p.bin);
        if cell.last_ret != 0 && cell.last_ret >= start {
            let b = usize::from(cell.last_ret_bin);
            self.window[b] -= 1;
            self.sum -= 1;
        }
    }

    fn watching(&self, now: u64, p: &BlinkParams) -> bool {
        self.rerouted_at
            .is_some_and(|t| now.saturating_sub(t) < p.progress)
    }

    /// The flow selector and the window for one data packet. Returns the cell if the packet's flow owns it,
    /// and whether the packet is a retransmission.
    fn select(&mut self, now: u64, t: &TcpSeen, p: &BlinkParams) -> Option<(usize, bool)> {
        self.advance(now, p);
        let (c, key) = cell_and_key(t.hash, p.cells);
        let cell = self.cells[c];
        if cell.key == key {
            if t.fin {
                self.uncount(c, p);
                self.cells[c] = Cell::default();
                self.stats.finished += 1;
                return Some((c, false));
            }
            let end = t.seq.wrapping_add(t.len);
            let retransmission = end == cell.nep;
            if retransmission {
                self.stats.retransmissions += 1;
                self.uncount(c, p);
                self.window[self.index] += 1;
                self.sum += 1;
                if self.up[0] {
                    self.stats.peak_window = self.stats.peak_window.max(self.sum);
                }
                let cl = &mut self.cells[c];
                cl.last_ret = now.max(1);
                cl.last_ret_bin = self.index as u16;
            } else if self.watching(now, p) && !cell.progressed {
                self.progressing[usize::from(c >= p.cells / 2)] += 1;
                self.cells[c].progressed = true;
            }
            let cl = &mut self.cells[c];
            cl.last = now;
            cl.nep = end;
            return Some((c, retransmission));
        }
        if t.fin || (cell.key != 0 && now.saturating_sub(cell.last) <= p.eviction) {
            self.stats.refused += 1;
            return None;
        }
        if cell.key != 0 {
            self.uncount(c, p);
            self.stats.evicted += 1;
        }
        self.cells[c] = Cell {
            key,
            nep: t.seq.wrapping_add(t.len),
            last: now,
            ..Cell::default()
        };
        self.stats.flows_selected += 1;
        Some((c, false))
    }
}

/// The cell (of `cells`) and the non-zero key of a flow hash: two independent halves of the hash.
#[inline]
pub fn cell_and_key(hash: u64, cells: usize) -> (usize, u32) {
    let cell = ((u64::from(hash as u32) * cells as u64) >> 32) as usize;
    let key = ((hash >> 32) as u32) | 1;
    (cell, key)
}

/// The hash Blink keys a flow by: its addresses and ports (one direction).
#[inline]
pub fn flow_hash(src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> u64 {
    let fold = |a: IpAddr| -> u64 {
        match a {
            IpAddr::V4(a) => u64::from(u32::from(a)),
            IpAddr::V6(a) => {
                let v = u128::from(a);
                crate::hash::mix64(v as u64) ^ (v >> 64) as u64
            }
        }
    };
    crate::hash::mix64(
        fold(src) << 32 ^ fold(dst) ^ crate::hash::mix64(u64::from(sport) << 16 | u64::from(dport)),
    )
}

#[inline]
fn flow_hash_v4(src: u32, dst: u32, ports: u32) -> u64 {
    crate::hash::mix64(u64::from(src) << 32 ^ u64::from(dst) ^ crate::hash::mix64(u64::from(ports)))
}

/// Blink's detector and forwarding decision over a set of prefixes, without packets: feed it the
/// destination's prefix state and what a TCP packet says, get the next hop. [`BlinkDetector`] is the element
/// built on it.
#[derive(Clone, Debug)]
pub struct Blink {
    params: BlinkParams,
    map: PrefixMap<u32>,
    prefixes: Vec<PrefixState>,
    events: VecDeque<BlinkEvent>,
    events_dropped: u64,
    /// Events raised since the element last passed them on (the newest of `events`).
    fresh: usize,
}

/// The most events kept for reading (older ones are dropped and counted).
pub const MAX_EVENTS: usize = 1024;

impl Blink {
    /// A detector with `params` and no prefixes.
    pub fn new(params: BlinkParams) -> Self {
        let params = BlinkParams {
            cells: params.cells.max(2),
            bins: params.bins.max(1),
            bin: params.bin.max(1),
            ..params
        };
        Blink {
            params,
            map: PrefixMap::new(),
            prefixes: Vec::new(),
            events: VecDeque::new(),
            events_dropped: 0,
            fresh: 0,
        }
    }

    /// The parameters.
    pub fn params(&self) -> &BlinkParams {
        &self.params
    }

    /// Monitors `prefix` with next hops `hops` (replacing any earlier entry for the same prefix).
    pub fn add_prefix(&mut self, prefix: Prefix, hops: NextHops) -> usize {
        let st = PrefixState::new(prefix, hops, &self.params);
        if let Some(i) = self.prefixes.iter().position(|s| s.prefix == prefix) {
            self.prefixes[i] = st;
            return i;
        }
        let i = self.prefixes.len();
        self.prefixes.push(st);
        self.map.insert(prefix, i as u32);
        i
    }

    /// The index of the longest monitored prefix holding `dst`.
    #[inline]
    pub fn lookup(&self, dst: IpAddr) -> Option<usize> {
        self.map.lookup(dst).map(|&i| i as usize)
    }

    #[inline]
    fn lookup_v4(&self, dst: u32) -> Option<usize> {
        self.map.lookup_v4(dst).map(|&i| i as usize)
    }

    /// The state of prefix `i`.
    pub fn prefix(&self, i: usize) -> Option<&PrefixState> {
        self.prefixes.get(i)
    }

    /// Every prefix's state.
    pub fn prefixes(&self) -> &[PrefixState] {
        &self.prefixes
    }

    /// The cell a flow hash maps to.
    pub fn cell_of(&self, hash: u64) -> usize {
        cell_and_key(hash, self.params.cells).0
    }

    /// The events so far (at most [`MAX_EVENTS`], oldest first), and how many older ones were dropped.
    pub fn events(&self) -> (impl Iterator<Item = &BlinkEvent>, u64) {
        (self.events.iter(), self.events_dropped)
    }

    /// Takes the events so far.
    pub fn take_events(&mut self) -> Vec<BlinkEvent> {
        self.events.drain(..).collect()
    }

    /// Brings every next hop of prefix `i` (or of all prefixes) back up and forgets the reroute, as Blink's
    /// controller does once routing has converged.
    pub fn reset(&mut self, i: Option<usize>) {
        let p = self.params;
        for (k, st) in self.prefixes.iter_mut().enumerate() {
            if i.is_none_or(|i| i == k) {
                let fresh = PrefixState::new(
                    st.prefix,
                    NextHops {
                        primary: st.hops[0],
                        backups: [st.hops[1], st.hops[2]],
                    },
                    &p,
                );
                *st = PrefixState {
                    stats: st.stats,
                    ..fresh
                };
            }
        }
    }

    fn down(&mut self, i: usize, hop: usize, now: u64, reason: DownReason) {
        let st = &mut self.prefixes[i];
        st.up[hop] = false;
        if self.events.len() == MAX_EVENTS {
            self.events.pop_front();
            self.events_dropped += 1;
        }
        self.events.push_back(BlinkEvent {
            at: Timestamp(now),
            prefix: st.prefix,
            next_hop: hop as u8,
            reason,
        });
        self.fresh += 1;
    }

    /// One packet to prefix `i` at `now` (nanoseconds): `tcp` is what a TCP packet says (`None` for other
    /// packets, which only take the current next hop). Returns the output port of the next hop.
    #[inline]
    pub fn process(&mut self, i: usize, now: u64, tcp: Option<&TcpSeen>) -> usize {
        let p = self.params;
        let st = &mut self.prefixes[i];
        st.stats.packets += 1;
        let mut selected = None;
        if let Some(t) = tcp
            && (t.len > 0 || t.fin)
            && !t.syn
        {
            let t = TcpSeen {
                len: t.len + u32::from(t.fin),
                ..*t
            };
            selected = st.select(now, &t, &p);
            if st.sum > p.threshold && st.up[0] {
                let flows = st.sum;
                st.rerouted_at = Some(now);
                st.progressing = [0; 2];
                st.checked = false;
                for c in st.cells.iter_mut() {
                    c.progressed = false;
                    c.backup_retransmissions = 0;
                }
                self.down(i, 0, now, DownReason::Retransmissions { flows });
            }
        }
        let st = &mut self.prefixes[i];
        if let Some(t) = st.rerouted_at
            && !st.checked
            && now.saturating_sub(t) >= p.progress
        {
            st.checked = true;
            let progressing = st.progressing;
            for (b, flows) in progressing.into_iter().enumerate() {
                if flows < p.min_progressing && self.prefixes[i].up[b + 1] {
                    self.down(i, b + 1, now, DownReason::NotProgressing { flows });
                }
            }
        }
        let st = &mut self.prefixes[i];
        let hop = match selected {
            Some((c, retransmission)) if st.watching(now, &p) => {
                let (mine, other) = if c < p.cells / 2 { (1, 2) } else { (2, 1) };
                if st.up[mine] {
                    if retransmission {
                        let cell = &mut st.cells[c];
                        if cell.backup_retransmissions + 1 >= p.backup_retransmissions {
                            self.down(i, mine, now, DownReason::FlowRetransmitted { cell: c });
                        } else {
                            cell.backup_retransmissions += 1;
                        }
                    }
                    mine
                } else if st.up[other] {
                    other
                } else {
                    0
                }
            }
            _ => st.up.iter().position(|&u| u).unwrap_or(0),
        };
        let st = &mut self.prefixes[i];
        if hop != 0 {
            st.stats.rerouted_packets += 1;
        }
        st.hops[hop]
    }
}

/// A listener for [`BlinkEvent`]s (a controller, a log, a state sink).
pub type BlinkListener = Box<dyn FnMut(&BlinkEvent) + Send>;

/// Blink as an element: monitors TCP traffic towards a set of destination prefixes and forwards each
/// packet of a prefix to its current next hop (an output port): the primary until Blink declares it down,
/// then the backups as described in [the package](super). Packets to no monitored prefix, and packets that
/// are not IP, leave on the `UNMATCHED` output.
///
/// # Ports
/// One push input; as many push outputs as the next hops named.
///
/// # Arguments
/// `PREFIX` (repeated: `PREFIX 10.0.1.0/24 PRIMARY BACKUP1 BACKUP2`, the next hops as output ports);
/// `UNMATCHED` (output port, default 0); `CELLS` (64); `THRESHOLD` (31); `BINS` (10); `BIN_MS` (80);
/// `EVICTION_MS` (2000); `PROGRESS_MS` (1000); `BACKUP_RETRANSMISSIONS` (4); `MIN_PROGRESSING`
/// (threshold / 2); `LINK` (`ether` or `ip`).
///
/// # Handlers
/// `packets`, `unmatched`, `retransmissions`, `reroutes` (primaries declared down), `rerouted_packets`,
/// `events` (on demand: one line per event), `state` (on demand: one line per prefix); `reset` (write: a
/// prefix, or empty for all: next hops back up).
///
/// # Example
/// ```
/// let r = nf_core::testing::run_config("
///     InfiniteSource(LIMIT 10, PROTO tcp, STOP true)
///       -> b :: BlinkDetector(PREFIX 10.1.0.0/16 1 2 3, UNMATCHED 0);
///     b[0] -> u :: Counter -> Discard;
///     b[1] -> p :: Counter -> Discard; b[2] -> Discard; b[3] -> Discard;").unwrap();
/// let n = |e: &str| r.read_handler(e, "count").unwrap().parse::<u64>().unwrap();
/// assert_eq!(n("u") + n("p"), 10);
/// ```
pub struct BlinkDetector {
    blink: Blink,
    link: Link,
    unmatched_port: usize,
    unmatched: u64,
    reroutes: u64,
    listener: Option<BlinkListener>,
    max_port: usize,
}

impl fmt::Debug for BlinkDetector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlinkDetector")
            .field("prefixes", &self.blink.prefixes.len())
            .field("unmatched", &self.unmatched)
            .field("reroutes", &self.reroutes)
            .finish()
    }
}

impl BlinkDetector {
    /// A detector with `params`, unmatched packets to output `unmatched`.
    pub fn new(params: BlinkParams, unmatched: usize) -> Self {
        BlinkDetector {
            blink: Blink::new(params),
            link: Link::Ethernet,
            unmatched_port: unmatched,
            unmatched: 0,
            reroutes: 0,
            listener: None,
            max_port: unmatched,
        }
    }

    /// Monitors `prefix`.
    pub fn prefix(mut self, prefix: Prefix, hops: NextHops) -> Self {
        self.max_port = self
            .max_port
            .max(hops.primary)
            .max(hops.backups[0])
            .max(hops.backups[1]);
        self.blink.add_prefix(prefix, hops);
        self
    }

    /// Where packets start (Ethernet by default).
    pub fn link(mut self, link: Link) -> Self {
        self.link = link;
        self
    }

    /// Calls `f` for every next hop declared down, as it happens.
    pub fn on_event(mut self, f: impl FnMut(&BlinkEvent) + Send + 'static) -> Self {
        self.listener = Some(Box::new(f));
        self
    }

    /// The detector.
    pub fn blink(&self) -> &Blink {
        &self.blink
    }

    /// The detector, to reset or read events.
    pub fn blink_mut(&mut self) -> &mut Blink {
        &mut self.blink
    }

    #[inline]
    fn route(&mut self, p: &mut Packet) -> usize {
        let Ok(h) = p.locate(self.link) else {
            self.unmatched += 1;
            return self.unmatched_port;
        };
        let now = p.anno.timestamp.as_nanos();
        let b = p.buffer();
        let l3 = h.l3;
        let (i, tcp) = match h.version {
            IpVersion::V4 => {
                // `locate` checked the header: the view's accessors stay within it.
                let ip = Ipv4Packet::new_unchecked(&b[l3..]);
                let dst = u32::from(ip.dst_addr());
                let Some(i) = self.blink.lookup_v4(dst) else {
                    self.unmatched += 1;
                    return self.unmatched_port;
                };
                let tcp = match (h.proto, h.l4) {
                    (proto::TCP, Some(l4)) => {
                        let src = u32::from(ip.src_addr());
                        let end = (l3 + usize::from(ip.total_len())).min(b.len());
                        tcp_seen(b, l4, end, |ports| flow_hash_v4(src, dst, ports))
                    }
                    _ => None,
                };
                (i, tcp)
            }
            IpVersion::V6 => {
                let ip = Ipv6Packet::new_unchecked(&b[l3..]);
                let (src, dst) = (ip.src_addr(), ip.dst_addr());
                let Some(i) = self
                    .blink
                    .map
                    .lookup_v6(u128::from(dst))
                    .map(|&i| i as usize)
                else {
                    self.unmatched += 1;
                    return self.unmatched_port;
                };
                let tcp = match (h.proto, h.l4) {
                    (proto::TCP, Some(l4)) => {
                        let end = (l3 + ip.total_len()).min(b.len());
                        tcp_seen(b, l4, end, |ports| {
                            flow_hash(
                                IpAddr::V6(src),
                                IpAddr::V6(dst),
                                (ports >> 16) as u16,
                                ports as u16,
                            )
                        })
                    }
                    _ => None,
                };
                (i, tcp)
            }
        };
        let port = self.blink.process(i, now, tcp.as_ref());
        if self.blink.fresh > 0 {
            self.raised();
        }
        port
    }

    #[cold]
    fn raised(&mut self) {
        let n = std::mem::take(&mut self.blink.fresh);
        let events = &self.blink.events;
        for e in events.iter().skip(events.len().saturating_sub(n)) {
            if e.next_hop == 0 {
                self.reroutes += 1;
            }
            if let Some(f) = self.listener.as_mut() {
                f(e);
            }
        }
    }

    fn state_text(&self) -> String {
        let mut s = String::new();
        for st in &self.blink.prefixes {
            let up = st.up.map(|u| if u { "up" } else { "down" });
            let x = st.stats;
            s.push_str(&format!(
                "{} primary {} backup1 {} backup2 {} window {} monitored {} retransmissions {} refused {} \
                 evicted {} progressing {}/{} peak_window {}\n",
                st.prefix,
                up[0],
                up[1],
                up[2],
                st.sum,
                st.monitored(),
                x.retransmissions,
                x.refused,
                x.evicted,
                st.progressing[0],
                st.progressing[1],
                x.peak_window,
            ));
        }
        s
    }
}

/// Reads the TCP header at `l4` (payload ending at `end`), hashing the flow with `hash(sport << 16 | dport)`.
#[inline]
fn tcp_seen(b: &[u8], l4: usize, end: usize, hash: impl FnOnce(u32) -> u64) -> Option<TcpSeen> {
    let t = crate::wire::TcpSegment::new_unchecked(b.get(l4..l4 + 20)?);
    let len = end.saturating_sub(l4 + t.header_len()) as u32;
    Some(TcpSeen {
        hash: hash(u32::from(t.src_port()) << 16 | u32::from(t.dst_port())),
        seq: t.seq_number(),
        len,
        syn: t.syn(),
        fin: t.fin(),
    })
}

const HANDLERS: &[HandlerSpec] = &[
    HandlerSpec::read("packets", "packets of monitored prefixes"),
    HandlerSpec::read("unmatched", "packets to no monitored prefix (or not IP)"),
    HandlerSpec::read("retransmissions", "retransmissions of monitored flows"),
    HandlerSpec::read("reroutes", "primary next hops declared down"),
    HandlerSpec::read("rerouted_packets", "packets sent to a backup next hop"),
    HandlerSpec::read_on_demand("events", "next hops declared down, one per line"),
    HandlerSpec::read_on_demand("state", "each prefix: next hops, window, monitored flows"),
    HandlerSpec::write("reset", "a prefix (or nothing for all): next hops back up"),
];

impl Element for BlinkDetector {
    fn class_name(&self) -> &'static str {
        Self::NAME
    }
    fn ports(&self) -> PortSpec {
        PortSpec::new(PortCount::exactly(1), PortCount::at_least(1), "h/h")
    }
    fn initialize(&mut self, ctx: &InitContext<'_>) -> Result<(), String> {
        if self.max_port >= ctx.noutputs {
            return Err(format!(
                "next hop {} is not connected ({} outputs)",
                self.max_port, ctx.noutputs
            ));
        }
        Ok(())
    }
    fn push(&mut self, _port: usize, batch: &mut Batch, out: &mut Outputs) {
        batch.classify_to(out, |p| Some(self.route(p)));
    }
    fn handlers(&self) -> &'static [HandlerSpec] {
        HANDLERS
    }
    fn read_handler(&self, name: &str) -> Option<String> {
        let sum = |f: fn(&PrefixStats) -> u64| -> String {
            self.blink
                .prefixes
                .iter()
                .map(|s| f(&s.stats))
                .sum::<u64>()
                .to_string()
        };
        Some(match name {
            "packets" => sum(|s| s.packets),
            "unmatched" => self.unmatched.to_string(),
            "retransmissions" => sum(|s| s.retransmissions),
            "reroutes" => self.reroutes.to_string(),
            "rerouted_packets" => sum(|s| s.rerouted_packets),
            "events" => {
                let (ev, _) = self.blink.events();
                ev.map(|e| format!("{e}\n")).collect()
            }
            "state" => self.state_text(),
            _ => return None,
        })
    }
    fn write_handler(&mut self, name: &str, value: &str) -> Result<(), String> {
        match name {
            "reset" => {
                let v = value.trim();
                if v.is_empty() {
                    self.blink.reset(None);
                    return Ok(());
                }
                let p: Prefix = v.parse().map_err(|e| format!("{e}"))?;
                let i = self
                    .blink
                    .prefixes
                    .iter()
                    .position(|s| s.prefix == p)
                    .ok_or_else(|| format!("{p} is not monitored"))?;
                self.blink.reset(Some(i));
                Ok(())
            }
            _ => Err(format!("no write handler `{name}`")),
        }
    }
}

/// The most prefixes one `BlinkDetector` monitors from a configuration.
pub const MAX_PREFIXES: usize = 65_536;

fn from_args(a: &mut Args) -> Result<BlinkDetector, ConfigError> {
    let d = BlinkParams::default();
    let cells: usize = a.read_at_most_or("CELLS", d.cells, 4096)?;
    let threshold: u32 = a.read_or("THRESHOLD", d.threshold)?;
    let bins: usize = a.read_at_most_or("BINS", d.bins, 1024)?;
    let bin_ms: u64 = a.read_or("BIN_MS", d.bin / MS)?;
    let eviction_ms: u64 = a.read_or("EVICTION_MS", d.eviction / MS)?;
    let progress_ms: u64 = a.read_or("PROGRESS_MS", d.progress / MS)?;
    let backup_retransmissions: u8 =
        a.read_or("BACKUP_RETRANSMISSIONS", d.backup_retransmissions)?;
    let min_progressing: u32 = a.read_or("MIN_PROGRESSING", threshold / 2)?;
    let unmatched: usize = a.read_or("UNMATCHED", 0)?;
    let link: String = a.read_or("LINK", "ether".to_string())?;
    if cells < 2 || bins == 0 || bin_ms == 0 {
        return Err(a.error("CELLS must be at least 2, BINS and BIN_MS at least 1"));
    }
    let params = BlinkParams {
        cells,
        eviction: eviction_ms.saturating_mul(MS),
        bins,
        bin: bin_ms.saturating_mul(MS),
        threshold,
        progress: progress_ms.saturating_mul(MS),
        backup_retransmissions: backup_retransmissions.max(1),
        min_progressing,
    };
    let mut det = BlinkDetector::new(params, unmatched);
    det.link = match link.as_str() {
        "ether" => Link::Ethernet,
        "ip" => Link::Ip,
        o => return Err(a.error(format!("LINK must be ether or ip, not `{o}`"))),
    };
    let mut n = 0;
    while let Some(spec) = a.read::<String>("PREFIX")? {
        let words: Vec<&str> = spec.split_whitespace().collect();
        let bad = || {
            a.error(format!(
                "PREFIX `{spec}`: expected PREFIX ADDRESS/LENGTH PRIMARY BACKUP1 BACKUP2 (output ports)"
            ))
        };
        if words.len() != 4 {
            return Err(bad());
        }
        let prefix: Prefix = words[0]
            .parse()
            .map_err(|e| a.error(format!("PREFIX `{spec}`: {e}")))?;
        let mut hops = [0usize; 3];
        for (h, w) in hops.iter_mut().zip(&words[1..]) {
            *h = w.parse().map_err(|_| bad())?;
            if *h >= crate::element::MAX_PORTS {
                return Err(a.error(format!("PREFIX `{spec}`: port {h} is out of range")));
            }
        }
        n += 1;
        if n > MAX_PREFIXES {
            return Err(a.error(format!("more than {MAX_PREFIXES} prefixes")));
        }
        a.reserve(
            "PREFIX",
            (cells * std::mem::size_of::<Cell>() + bins * 4 + 256) as u64,
        )?;
        det = det.prefix(
            prefix,
            NextHops {
                primary: hops[0],
                backups: [hops[1], hops[2]],
            },
        );
    }
    if n == 0 {
        return Err(a.error("at least one PREFIX is needed"));
    }
    Ok(det)
}

impl ElementClass for BlinkDetector {
    const NAME: &'static str = "BlinkDetector";
    const DOC: &'static str =
        "Blink fast reroute: infers a next hop's failure from TCP retransmissions towards a prefix";
    fn configure(a: &mut Args) -> Result<Self, ConfigError> {
        from_args(a)
    }
}
