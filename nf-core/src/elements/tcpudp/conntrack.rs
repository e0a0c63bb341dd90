//! `ConnTrack`: a connection tracker (per-flow TCP and UDP state with timeouts, in a bounded table).

use crate::args::Args;
use crate::batch::{Batch, Outputs};
use crate::element::ElementClass;
use crate::element::{Element, HandlerSpec, InitContext, PortCount, PortSpec};
use crate::error::ConfigError;
use crate::flow::FlowKey;
use crate::indirection::{BucketSet, Exported, Migrate};
use crate::packet::{Link, Packet, Timestamp, proto};
use crate::state::{Installer, Moved, StateTable, Stateful, WhenFull};
use std::sync::mpsc::Receiver;

/// TCP connection states (as Linux conntrack names them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TcpState {
    /// SYN seen from the originator.
    SynSent,
    /// SYN-ACK seen from the responder.
    SynRecv,
    /// Handshake complete.
    Established,
    /// One side sent FIN.
    FinWait,
    /// The other side sent its FIN too.
    LastAck,
    /// Both FINs acknowledged.
    TimeWait,
    /// Reset.
    Close,
}

/// The protocol state of a tracked flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProtoState {
    /// TCP.
    Tcp(TcpState),
    /// UDP: `assured` once both directions were seen.
    Udp {
        /// Both directions seen.
        assured: bool,
    },
    /// Any other protocol (ICMP echo included): replied once both directions were seen.
    Other {
        /// Both directions seen.
        replied: bool,
    },
}

/// One tracked connection (the table's key is the connection's canonical five-tuple).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connection {
    /// True if the originator (the sender of the first packet) sent the reverse of the canonical key.
    pub origin_reversed: bool,
    /// Protocol state.
    pub state: ProtoState,
    /// Packets original / reply.
    pub packets: [u64; 2],
    /// Bytes original / reply.
    pub bytes: [u64; 2],
    /// First packet time.
    pub first_seen: Timestamp,
    /// Last packet time.
    pub last_seen: Timestamp,
    /// Seconds of idleness after which the entry expires in its current state.
    pub timeout_secs: u32,
}

/// What a minion's follower tells its connection tracker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtInstall {
    /// A connection as the box it replaces tracks it (the table key: its canonical five-tuple).
    Set(FlowKey, Connection),
    /// A connection ended (its canonical five-tuple).
    Remove(FlowKey),
    /// Forget every connection (a snapshot follows).
    Clear,
}

/// Timeouts in seconds, per state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP handshake (SYN sent, SYN received).
    pub tcp_handshake: u32,
    /// TCP established.
    pub tcp_established: u32,
    /// TCP closing (FIN wait, last ACK, time wait).
    pub tcp_closing: u32,
    /// TCP after a reset.
    pub tcp_close: u32,
    /// UDP with one direction seen.
    pub udp_unreplied: u32,
    /// UDP with both directions seen.
    pub udp_assured: u32,
    /// Other protocols.
    pub other: u32,
}

impl Default for Timeouts {
    /// Linux's defaults, except TCP established (5 days in Linux) which is 2 hours here.
    fn default() -> Self {
        Timeouts {
            tcp_handshake: 120,
            tcp_established: 7200,
            tcp_closing: 120,
            tcp_close: 10,
            udp_unreplied: 30,
            udp_assured: 120,
            other: 30,
        }
    }
}

impl Connection {
    /// The originator's five-tuple, given the table key (the canonical five-tuple).
    pub fn origin(&self, canonical: &FlowKey) -> FlowKey {
        if self.origin_reversed {
            canonical.reversed()
        } else {
            *canonical
        }
    }
}

impl Timeouts {
    /// The timeout of a state.
    pub fn for_state(&self, s: ProtoState) -> u32 {
        match s {
            ProtoState::Tcp(TcpState::SynSent | TcpState::SynRecv) => self.tcp_handshake,
            ProtoState::Tcp(TcpState::Established) => self.tcp_established,
            ProtoState::Tcp(TcpState::FinWait | TcpState::LastAck | TcpState::TimeWait) => {
                self.tcp_closing
            }
            ProtoState::Tcp(TcpState::Close) => self.tcp_close,
            ProtoState::Udp { assured: false } => self.udp_unreplied,
            ProtoState::Udp { assured: true } => self.udp_assured,
            ProtoState::Other { .. } => self.other,
        }
    }
}

use crate::wire::tcp_flags::{ACK, FIN, RST, SYN};

/// Tracks TCP, UDP and other IP flows, both directions in one entry, in a bounded table with idle
/// timeouts. Reports inserts, state transitions and removals to the table's
/// [`StateSink`](crate::state::StateSink) (the white-box driver replicates them to a minion). Packets are
/// not changed.
///
/// A new TCP flow must begin with a SYN (a mid-stream packet of an unknown flow is "untracked" unless
/// `LOOSE true`, as Linux's `nf_conntrack_tcp_loose`). Untracked packets (not IP, no room, mid-stream) leave
/// on output 1 if it is connected, else on output 0 like the rest. Expiry is driven by packet timestamps
/// and a sweep of a few entries per batch, so offline traces expire as they would have live.
///
/// A minion installs another box's connections through [`ConnTrack::installer`] ([`CtInstall`]): a
/// stateful firewall built as `ConnTrack` with output 1 to `Discard` then passes the established
/// connections of the box it replaces and drops mid-stream packets of every other.
///
/// # Ports
/// One push input; one or two push outputs.
///
/// # Arguments
/// `CAPACITY` (default 65536, divided among shards); `WHEN_FULL` (`evict` or `reject`, default evict);
/// `LOOSE` (default false); `LINK` (`ether` or `ip`, default ether: where the data starts when no
/// network-header annotation is set); timeouts in seconds: `TCP_ESTABLISHED` (7200), `TCP_HANDSHAKE`
/// (120), `TCP_CLOSING` (120), `UDP` (assured, 120), `UDP_UNREPLIED` (30), `OTHER` (30).
///
/// # Handlers
/// `count` (tracked packets), `flows` (entries), `inserts`, `updates`, `closed`, `expired`, `evicted`,
/// `probe_limited` (new flows whose probe window was full), `rejected`, `untracked`, `installed` (read); `table` (read:
/// up to 100 entries); `capacity` (read); `clear` (write).
///
/// # Example
/// ```
/// let r = nf_core::testing::run_config(
///     "InfiniteSource(LIMIT 1000, FLOWS 100, PROTO udp, STOP true) -> ct :: ConnTrack -> Discard;").unwrap();
/// assert_eq!(r.read_handler("ct", "flows").unwrap(), "100");
/// ```
pub struct ConnTrack {
    table: StateTable<FlowKey, Connection>,
    capacity: usize,
    when_full: WhenFull,
    timeouts: Timeouts,
    loose: bool,
    link: Link,
    has_untracked_output: bool,
    count: u64,
    untracked: u64,
    scratch: Vec<Option<Seen>>,
    verdicts: Vec<bool>,
    /// Packet time between packets (idle expiry when traffic stops).
    clock: crate::state::PacketClock,
    /// The install queue's receiving end, once [`ConnTrack::installer`] made it.
    installs: Option<Receiver<CtInstall>>,
    install_queue: usize,
    installed: u64,
}

impl std::fmt::Debug for ConnTrack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnTrack")
            .field("table", &self.table)
            .field("count", &self.count)
            .finish()
    }
}

impl ConnTrack {
    /// A tracker of at most `capacity` flows.
    pub fn new(capacity: usize) -> Self {
        ConnTrack {
            table: StateTable::new(capacity, WhenFull::Evict),
            capacity,
            when_full: WhenFull::Evict,
            timeouts: Timeouts::default(),
            loose: false,
            link: Link::Ethernet,
            has_untracked_output: false,
            count: 0,
            untracked: 0,
            scratch: Vec::with_capacity(256),
            verdicts: Vec::with_capacity(256),
            clock: crate::state::PacketClock::default(),
            installs: None,
            install_queue: crate::state::INSTALL_QUEUE,
            installed: 0,
        }
    }

    /// The install queue's bound (default [`INSTALL_QUEUE`](crate::state::INSTALL_QUEUE)).
    pub fn install_queue(mut self, n: usize) -> Self {
        self.install_queue = n.max(1);
        self
    }

    /// The sending end of the install queue, for a minion's follower (on any thread): connections
    /// queued here are installed before the next batches (up to 4,096 before each) and at each timer
    /// tick, with their state and a timeout from now. One per tracker (`None` the second time);
    /// bounded: a full queue makes the follower wait. A minion firewall so passes the established
    /// connections of the box it replaces, and drops mid-stream packets of any other (`LOOSE false`).
    pub fn installer(&mut self) -> Option<Installer<CtInstall>> {
        if self.installs.is_some() {
            return None;
        }
        let (tx, rx) = Installer::bounded(self.install_queue);
        self.installs = Some(rx);
        Some(tx)
    }

    /// Installs up to `max` queued connections.
    fn apply_installs(&mut self, now: Timestamp, max: usize) {
        let Some(rx) = self.installs.take() else {
            return;
        };
        for _ in 0..max {
            let Ok(i) = rx.try_recv() else {
                break;
            };
            match i {
                CtInstall::Set(k, mut c) => {
                    c.last_seen = now;
                    if c.first_seen.0 == 0 {
                        c.first_seen = now;
                    }
                    let secs = if c.timeout_secs == 0 {
                        self.timeouts.for_state(c.state)
                    } else {
                        c.timeout_secs
                    };
                    let expires = now.add_nanos(u64::from(secs) * 1_000_000_000);
                    if self
                        .table
                        .install(k.keyed_hash(self.table.hash_key()), k, c, now, expires)
                        .is_some()
                    {
                        self.installed += 1;
                    }
                }
                CtInstall::Remove(k) => {
                    self.table
                        .uninstall(k.keyed_hash(self.table.hash_key()), &k);
                }
                CtInstall::Clear => self.table.clear(),
            }
        }
        self.installs = Some(rx);
    }

    /// Sets the timeouts.
    pub fn with_timeouts(mut self, t: Timeouts) -> Self {
        self.timeouts = t;
        self
    }

    /// What to do when full.
    pub fn when_full(mut self, w: WhenFull) -> Self {
        self.table = StateTable::new(self.capacity, w);
        self.when_full = w;
        self
    }

    /// Accept mid-stream TCP packets of unknown flows as new flows.
    pub fn loose(mut self, loose: bool) -> Self {
        self.loose = loose;
        self
    }

    /// Where packet data starts when no network-header annotation is set.
    pub fn link(mut self, link: Link) -> Self {
        self.link = link;
        self
    }

    /// The tracked connection of a five-tuple (either direction).
    pub fn lookup(&self, key: &FlowKey) -> Option<&Connection> {
        let (c, _) = key.canonical();
        self.table.lookup(c.table_hash(), &c)
    }

    /// Reads what tracking needs from a packet: its key (canonical), hash, TCP flags and length.
    #[inline]
    fn inspect(&self, p: &mut Packet) -> Option<Seen> {
        let (h, key) = p.locate_key(self.link).ok()?;
        let key = key?;
        let (canon, reversed) = key.canonical();
        let flags = p.tcp_flags(&h).unwrap_or(0);
        Some(Seen {
            reversed,
            proto: key.proto(),
            canon,
            hash: canon.keyed_hash(self.table.hash_key()),
            flags,
            len: p.len() as u32,
            now: p.anno.timestamp,
        })
    }

    /// Tracks one packet; returns false if it could not be tracked.
    #[inline]
    pub fn track(&mut self, p: &mut Packet) -> bool {
        match self.inspect(p) {
            Some(s) => self.apply(&s),
            None => false,
        }
    }

    #[inline]
    fn apply(&mut self, s: &Seen) -> bool {
        // Fields read where used (copying the key and the timeouts out first cost 28 instructions a packet).
        let (hash, now, len, flags) = (s.hash, s.now, u64::from(s.len), s.flags);
        let t = &self.timeouts;
        let updated = self.table.update(hash, &s.canon, |c| {
            let dir = usize::from(s.reversed != c.origin_reversed);
            c.packets[dir] += 1;
            c.bytes[dir] += len;
            c.last_seen = now;
            let old = c.state;
            let new = next_state(old, dir == 1, flags);
            c.state = new;
            c.timeout_secs = t.for_state(new);
            let expires = now.add_nanos(u64::from(c.timeout_secs) * 1_000_000_000);
            (expires, new != old)
        });
        match updated {
            Some((e, changed)) => {
                if changed {
                    // Closed flows stay (short timeout) so that retransmitted FINs and RSTs still match.
                    self.table.notify_update(e, now);
                }
                true
            }
            None => {
                let state = match s.proto {
                    proto::TCP => {
                        if flags & SYN != 0 && flags & ACK == 0 {
                            ProtoState::Tcp(TcpState::SynSent)
                        } else if self.loose && flags & RST == 0 {
                            ProtoState::Tcp(TcpState::Established)
                        } else {
                            return false;
                        }
                    }
                    proto::UDP => ProtoState::Udp { assured: false },
                    _ => ProtoState::Other { replied: false },
                };
                let timeout_secs = t.for_state(state);
                let conn = Connection {
                    origin_reversed: s.reversed,
                    state,
                    packets: [1, 0],
                    bytes: [len, 0],
                    first_seen: now,
                    last_seen: now,
                    timeout_secs,
                };
                let expires = now.add_nanos(u64::from(timeout_secs) * 1_000_000_000);
                self.table
                    .insert(hash, s.canon, conn, now, expires)
                    .is_some()
            }
        }
    }
}

/// What `ConnTrack` read from one packet of a batch.
#[derive(Clone, Copy, Debug)]
struct Seen {
    reversed: bool,
    proto: u8,
    canon: FlowKey,
    hash: u32,
    flags: u8,
    len: u32,
    now: Timestamp,
}

/// The TCP/UDP state after a packet (`reply`: it travels against the originator's direction).
pub fn next_state(s: ProtoState, reply: bool, flags: u8) -> ProtoState {
    use TcpState::*;
    match s {
        ProtoState::Udp { assured } => ProtoState::Udp {
            assured: assured || reply,
        },
        ProtoState::Other { replied } => ProtoState::Other {
            replied: replied || reply,
        },
        ProtoState::Tcp(t) => {
            if flags & RST != 0 {
                return ProtoState::Tcp(Close);
            }
            let n = match t {
                SynSent if reply && flags & SYN != 0 && flags & ACK != 0 => SynRecv,
                SynRecv if !reply && flags & ACK != 0 && flags & SYN == 0 => Established,
                Established | SynRecv if flags & FIN != 0 => FinWait,
                FinWait if flags & FIN != 0 => LastAck,
                LastAck if flags & ACK != 0 && flags & FIN == 0 => TimeWait,
                // A new SYN on a closed tuple reopens it.
                Close | TimeWait if flags & SYN != 0 && flags & ACK == 0 && !reply => SynSent,
                o => o,
            };
            ProtoState::Tcp(n)
        }
    }
}

/// A bucket move takes the connections along, with their state and expiry.
impl Migrate for ConnTrack {
    fn export_buckets(&mut self, buckets: &BucketSet) -> Exported {
        Exported::new(
            self.table
                .export_where(|k, _| buckets.holds_hash(k.rss_hash())),
        )
    }
    fn import_buckets(&mut self, state: Exported) -> usize {
        self.table
            .import(state.take::<Moved<FlowKey, Connection>>(), Timestamp(0))
    }
}

impl Stateful for ConnTrack {
    type Key = FlowKey;
    type Value = Connection;
    fn table(&self) -> &StateTable<FlowKey, Connection> {
        &self.table
    }
    fn table_mut(&mut self) -> &mut StateTable<FlowKey, Connection> {
        &mut self.table
    }
}

const HANDLERS: &[HandlerSpec] = &[
    HandlerSpec::read("count", "packets tracked"),
    HandlerSpec::gauge("flows", "entries in the table"),
    HandlerSpec::read("inserts", "flows inserted"),
    HandlerSpec::read("updates", "state transitions"),
    HandlerSpec::read("closed", "flows removed after closing"),
    HandlerSpec::read("expired", "flows expired"),
    HandlerSpec::read("evicted", "flows evicted to make room"),
    HandlerSpec::read(
        "probe_limited",
        "new flows whose probe window was full (keys aimed at one place if it grows)",
    ),
    HandlerSpec::read("rejected", "new flows refused: table full"),
    HandlerSpec::read("untracked", "packets that could not be tracked"),
    HandlerSpec::read("installed", "connections installed by a minion's follower"),
    HandlerSpec::gauge("capacity", "most entries"),
    HandlerSpec::read_on_demand("table", "up to 100 entries"),
    HandlerSpec::write("clear", "empty the table (not reported)"),
];

impl Element for ConnTrack {
    fn migrate(&mut self) -> Option<&mut dyn Migrate> {
        Some(self)
    }
    fn class_name(&self) -> &'static str {
        Self::NAME
    }
    fn ports(&self) -> PortSpec {
        PortSpec::new(PortCount::exactly(1), PortCount::range(1, 2), "h/h")
    }
    fn initialize(&mut self, ctx: &InitContext<'_>) -> Result<(), String> {
        self.has_untracked_output = ctx.noutputs > 1;
        if ctx.shards > 1 {
            self.table = StateTable::new(self.capacity.div_ceil(ctx.shards), self.when_full);
        }
        Ok(())
    }
    #[inline]
    fn push(&mut self, _port: usize, batch: &mut Batch, out: &mut Outputs) {
        if let Some(last) = batch.as_slice().last() {
            let now = last.anno.timestamp;
            if self.installs.is_some() {
                self.apply_installs(now, 4096);
            }
            self.table.sweep(now, 8);
            self.clock.saw(now);
        }
        // Pass 1: read every packet's key and start loading its table slot, so that the batch's cache
        // misses overlap. Pass 2: update the entries.
        let mut seen = std::mem::take(&mut self.scratch);
        seen.clear();
        for p in batch.iter_mut() {
            seen.push(self.inspect(p));
        }
        // A tight loop of independent loads: the CPU keeps many misses in flight at once.
        for s in seen.iter().flatten() {
            self.table.prefetch(s.hash);
        }
        let mut tracked = Vec::new();
        std::mem::swap(&mut tracked, &mut self.verdicts);
        tracked.clear();
        for s in &seen {
            tracked.push(s.as_ref().is_some_and(|s| self.apply(s)));
        }
        let side = usize::from(self.has_untracked_output);
        let mut k = 0;
        let mut untracked = 0u64;
        batch.classify_to(out, |_| {
            let ok = tracked[k];
            k += 1;
            untracked += u64::from(!ok);
            Some(if ok { 0 } else { side })
        });
        self.count += seen.len() as u64 - untracked;
        self.untracked += untracked;
        self.scratch = seen;
        self.verdicts = tracked;
    }
    fn timer_interval(&self) -> Option<std::time::Duration> {
        Some(std::time::Duration::from_millis(100))
    }
    fn on_timer(&mut self, wall: Timestamp, _out: &mut Outputs) {
        // Packet time, advanced by the wall time since the last packet: a trace expires on its own clock,
        // and live flows expire when traffic stops.
        let Some(now) = self.clock.now(wall) else {
            self.apply_installs(wall, self.install_queue);
            return;
        };
        self.apply_installs(now, self.install_queue);
        self.table.sweep(now, 4096);
    }
    /// A new configuration's tracker takes the old one's connections (with their state and expiry),
    /// its table's sink and its counts.
    fn take_state(&mut self, old: &mut dyn Element) {
        if let Some(old) = old.as_any_mut().downcast_mut::<ConnTrack>() {
            self.table.take_over(&mut old.table);
            self.count = old.count;
            self.untracked = old.untracked;
            self.clock = old.clock;
            self.installed = old.installed;
            if self.installs.is_none() {
                self.installs = old.installs.take();
            }
        }
    }
    fn handlers(&self) -> &'static [HandlerSpec] {
        HANDLERS
    }
    fn read_handler(&self, name: &str) -> Option<String> {
        let s = self.table.stats();
        Some(match name {
            "count" => self.count.to_string(),
            "flows" => self.table.len().to_string(),
            "inserts" => s.inserts.to_string(),
            "updates" => s.updates.to_string(),
            "closed" => s.closed.to_string(),
            "expired" => s.expired.to_string(),
            "evicted" => s.evicted.to_string(),
            "probe_limited" => s.probe_limited.to_string(),
            "rejected" => s.rejected.to_string(),
            "untracked" => self.untracked.to_string(),
            "installed" => self.installed.to_string(),
            "capacity" => self.table.capacity().to_string(),
            "table" => {
                let mut v = Vec::new();
                self.table.for_each(|k, c| {
                    if v.len() < 100 {
                        v.push(format!(
                            "{} {:?} pkts={}/{}",
                            c.origin(k),
                            c.state,
                            c.packets[0],
                            c.packets[1]
                        ));
                    }
                });
                v.join("\n")
            }
            _ => return None,
        })
    }
    fn write_handler(&mut self, name: &str, _value: &str) -> Result<(), String> {
        match name {
            "clear" => {
                self.table.clear();
                Ok(())
            }
            _ => Err(format!("no write handler `{name}`")),
        }
    }
}

impl ElementClass for ConnTrack {
    const NAME: &'static str = "ConnTrack";
    const DOC: &'static str =
        "tracks TCP/UDP flows with timeouts in a bounded table (reports to a StateSink)";
    fn configure(a: &mut Args) -> Result<Self, ConfigError> {
        let cap: usize =
            a.read_p_at_most_or("CAPACITY", 65536, crate::state::MAX_TABLE_CAPACITY)?;
        let wf: String = a.read_or("WHEN_FULL", "evict".to_string())?;
        let when_full = match wf.as_str() {
            "evict" => WhenFull::Evict,
            "reject" => WhenFull::Reject,
            o => return Err(a.error(format!("WHEN_FULL must be evict or reject, not `{o}`"))),
        };
        let link: String = a.read_or("LINK", "ether".to_string())?;
        let link = match link.as_str() {
            "ether" | "ethernet" => Link::Ethernet,
            "ip" => Link::Ip,
            o => return Err(a.error(format!("LINK must be ether or ip, not `{o}`"))),
        };
        let d = Timeouts::default();
        let t = Timeouts {
            tcp_established: a.read_or("TCP_ESTABLISHED", d.tcp_established)?,
            tcp_handshake: a.read_or("TCP_HANDSHAKE", d.tcp_handshake)?,
            tcp_closing: a.read_or("TCP_CLOSING", d.tcp_closing)?,
            tcp_close: d.tcp_close,
            udp_assured: a.read_or("UDP", d.udp_assured)?,
            udp_unreplied: a.read_or("UDP_UNREPLIED", d.udp_unreplied)?,
            other: a.read_or("OTHER", d.other)?,
        };
        let loose = a.read_or("LOOSE", false)?;
        Ok(ConnTrack::new(cap)
            .with_timeouts(t)
            .when_full(when_full)
            .loose(loose)
            .link(link))
    }
}
