//! `IPRewriter`: Click's network address and port translator (NAPT), with Click's input specs
//! (`pattern SADDR SPORT DADDR DPORT FOUTPUT ROUTPUT`, `keep`, `pass`, `drop`), a bounded table of paired
//! mappings, incremental checksums, a `StateSink` and an install path for a minion.

use crate::args::{Args, RawArg};
use crate::batch::{Batch, Outputs};
use crate::element::ElementClass;
use crate::element::{Element, HandlerSpec, InitContext, PortCount, PortSpec};
use crate::elements::tcpudp::closing::{self, ESTABLISHED, FIN_ORIGIN, FIN_REPLY, lifetime};
use crate::error::ConfigError;
use crate::flow::FlowKey;
use crate::packet::{HeaderInfo, Link, Packet, Timestamp, proto};
use crate::state::{Installer, RemoveReason, StateTable, Stateful, WhenFull};
use crate::wire::tcp_flags::{ACK, FIN, RST, SYN};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::mpsc::Receiver;

/// An IPv4 TCP or UDP flow identifier (Click's `IPFlowID` with its protocol): the key of a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId {
    /// IP protocol (6 or 17).
    pub proto: u8,
    /// Source address.
    pub src: Ipv4Addr,
    /// Source port.
    pub sport: u16,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Destination port.
    pub dport: u16,
}

impl FlowId {
    /// A flow identifier from its parts.
    pub const fn new(proto: u8, src: SocketAddrV4, dst: SocketAddrV4) -> FlowId {
        FlowId {
            proto,
            src: *src.ip(),
            sport: src.port(),
            dst: *dst.ip(),
            dport: dst.port(),
        }
    }
    /// The identifier of a flow key (`None` for IPv6).
    #[inline(always)]
    pub fn of_key(k: &FlowKey) -> Option<FlowId> {
        let (s, d) = k.v4_addrs()?;
        Some(FlowId {
            proto: k.proto(),
            src: Ipv4Addr::from(s),
            sport: k.src_port(),
            dst: Ipv4Addr::from(d),
            dport: k.dst_port(),
        })
    }
    /// As a flow key.
    #[inline(always)]
    pub fn key(&self) -> FlowKey {
        FlowKey::v4(self.proto, self.src, self.sport, self.dst, self.dport)
    }
    /// The reply direction's identifier.
    #[inline(always)]
    pub const fn reversed(&self) -> FlowId {
        FlowId {
            proto: self.proto,
            src: self.dst,
            sport: self.dport,
            dst: self.src,
            dport: self.sport,
        }
    }
    /// The source.
    pub const fn source(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.src, self.sport)
    }
    /// The destination.
    pub const fn destination(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.dst, self.dport)
    }
}

impl std::fmt::Display for FlowId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = match self.proto {
            proto::TCP => "tcp",
            proto::UDP => "udp",
            _ => "?",
        };
        write!(f, "{p} {} > {}", self.source(), self.destination())
    }
}

/// Bits of [`Mapping::flags`] above the [`closing`] state (whose bits 0-3 it shares with
/// `LoadBalancer`).
mod flag {
    /// This mapping is the reply direction of its flow.
    pub const REPLY: u8 = 16;
    /// The mapping changes the source.
    pub const SRC: u8 = 32;
    /// The mapping changes the destination.
    pub const DST: u8 = 64;
}

/// What a mapping rewrites a flow to (Click's `(SA, SP, DA, DP) => (SA', SP', DA', DP') [*OUTPUT]`);
/// the table's value (14 bytes: with the key, a table slot fits one cache line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    /// The new source address.
    pub src: Ipv4Addr,
    /// The new source port.
    pub sport: u16,
    /// The new destination address.
    pub dst: Ipv4Addr,
    /// The new destination port.
    pub dport: u16,
    /// The output its packets leave on.
    pub output: u8,
    /// The flow's closing state ([`closing`]), whether this is the reply direction, and which sides
    /// change.
    pub flags: u8,
}

impl Mapping {
    /// True for the reply direction of a flow (installed with the flow's first packet).
    pub fn is_reply(&self) -> bool {
        self.flags & flag::REPLY != 0
    }
    /// The flow identifier packets leave with, given the one they came with.
    pub fn rewritten(&self, from: &FlowId) -> FlowId {
        FlowId {
            proto: from.proto,
            src: self.src,
            sport: self.sport,
            dst: self.dst,
            dport: self.dport,
        }
    }
    /// The flow's closing state (the [`closing`] bits).
    pub fn closing(&self) -> u8 {
        self.flags & closing::MASK
    }
}

/// The partner of mapping `m` of `key`: the other direction's key and mapping (a pair is symmetric).
#[inline]
fn partner(key: &FlowId, m: &Mapping, output: u8) -> (FlowId, Mapping) {
    let new = m.rewritten(key);
    let back = new.reversed();
    let to = key.reversed();
    let mut flags = (m.flags & closing::MASK) | (!m.flags & flag::REPLY);
    if back.src != to.src || back.sport != to.sport {
        flags |= flag::SRC;
    }
    if back.dst != to.dst || back.dport != to.dport {
        flags |= flag::DST;
    }
    (
        back,
        Mapping {
            src: to.src,
            sport: to.sport,
            dst: to.dst,
            dport: to.dport,
            output,
            flags,
        },
    )
}

/// A table of `flows` flows, two mappings each, kept in pairs (each mapping's partner its reply's).
fn paired_table(flows: usize) -> StateTable<FlowId, Mapping> {
    let mut t = StateTable::new(2 * flows, WhenFull::Evict);
    t.pair_with(|k, m, key| {
        let (pk, _) = partner(k, m, 0);
        (pk.key().keyed_hash(key), pk)
    });
    t
}

/// How a pattern chooses a source port from a range (Click's suffixes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortChoice {
    /// The packet's own source port if it is in the range and free, else a random one (no suffix).
    PreferSource,
    /// In turn through the range (`#`).
    Sequential,
    /// At random (`?`).
    Random,
}

/// One field of a pattern: `-` (unchanged) or a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field<T> {
    /// `-`: the packet's own.
    Keep,
    /// This value.
    Set(T),
}

/// A pattern's source port: `-`, a port, or a range `L-H` with Click's `#` / `?` suffixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourcePort {
    /// `-`.
    Keep,
    /// One port.
    Port(u16),
    /// A range, and how a port is chosen in it.
    Range(u16, u16, PortChoice),
}

/// `pattern SADDR SPORT DADDR DPORT`: how a new flow's identifier is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pattern {
    /// New source address.
    pub saddr: Field<Ipv4Addr>,
    /// New source port.
    pub sport: SourcePort,
    /// New destination address.
    pub daddr: Field<Ipv4Addr>,
    /// New destination port.
    pub dport: Field<u16>,
}

/// One input's spec (Click's INPUTSPEC): what a packet with no mapping becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputSpec {
    /// `drop` or `discard`: dropped (counted).
    Drop,
    /// `pass OUTPUT`: sent to OUTPUT unchanged, no mapping.
    Pass(u8),
    /// `keep FOUTPUT ROUTPUT`: mappings that change nothing (the flow to FOUTPUT, its replies to
    /// ROUTPUT).
    Keep(u8, u8),
    /// `pattern SADDR SPORT DADDR DPORT FOUTPUT ROUTPUT`: the flow rewritten by the pattern to FOUTPUT,
    /// its replies rewritten back to ROUTPUT.
    Pattern(Pattern, u8, u8),
}

impl InputSpec {
    /// Parses one INPUTSPEC.
    pub fn parse(s: &str) -> Result<InputSpec, String> {
        let w: Vec<&str> = s.split_whitespace().collect();
        let out = |x: &str| -> Result<u8, String> {
            x.parse::<u8>()
                .map_err(|_| format!("`{x}` is not an output port (0-255)"))
        };
        match w.as_slice() {
            ["drop"] | ["discard"] => Ok(InputSpec::Drop),
            ["pass", o] => Ok(InputSpec::Pass(out(o)?)),
            ["pass"] => Ok(InputSpec::Pass(0)),
            ["nochange"] => Ok(InputSpec::Pass(0)),
            ["nochange", o] => Ok(InputSpec::Pass(out(o)?)),
            ["keep", f, r] => Ok(InputSpec::Keep(out(f)?, out(r)?)),
            ["pattern", sa, sp, da, dp, f, r] => Ok(InputSpec::Pattern(
                Pattern {
                    saddr: addr_field(sa)?,
                    sport: sport_field(sp)?,
                    daddr: addr_field(da)?,
                    dport: match *dp {
                        "-" => Field::Keep,
                        p => Field::Set(port(p)?),
                    },
                },
                out(f)?,
                out(r)?,
            )),
            ["pattern", name, ..] if w.len() == 4 => Err(format!(
                "named patterns (`pattern {name} ...`, Click's IPRewriterPatterns) are not supported: \
                 write the pattern out"
            )),
            ["pattern", ..] => Err(
                "pattern needs SADDR SPORT DADDR DPORT FOUTPUT ROUTPUT (six words after `pattern`)"
                    .into(),
            ),
            [] => Err("an empty input spec".into()),
            [k, ..] => Err(format!(
                "unknown input spec `{k}`: drop, discard, pass OUTPUT, keep FOUTPUT ROUTPUT or \
                 pattern SADDR SPORT DADDR DPORT FOUTPUT ROUTPUT"
            )),
        }
    }
    fn outputs(&self) -> [Option<u8>; 2] {
        match *self {
            InputSpec::Drop => [None, None],
            InputSpec::Pass(o) => [Some(o), None],
            InputSpec::Keep(f, r) | InputSpec::Pattern(_, f, r) => [Some(f), Some(r)],
        }
    }
}

fn port(s: &str) -> Result<u16, String> {
    s.parse::<u16>()
        .map_err(|_| format!("`{s}` is not a port (0-65535)"))
}

fn addr_field(s: &str) -> Result<Field<Ipv4Addr>, String> {
    if s == "-" {
        return Ok(Field::Keep);
    }
    s.parse::<Ipv4Addr>().map(Field::Set).map_err(|_| {
        if s.contains('-') || s.contains('/') {
            format!("`{s}`: address ranges and prefixes are not supported, one IPv4 address or `-`")
        } else {
            format!("`{s}` is not an IPv4 address (or `-`)")
        }
    })
}

fn sport_field(s: &str) -> Result<SourcePort, String> {
    if s == "-" {
        return Ok(SourcePort::Keep);
    }
    let (body, choice) = match s.as_bytes().last() {
        Some(b'#') => (&s[..s.len() - 1], PortChoice::Sequential),
        Some(b'?') => (&s[..s.len() - 1], PortChoice::Random),
        _ => (s, PortChoice::PreferSource),
    };
    match body.split_once('-') {
        Some((l, h)) => {
            let (l, h) = (port(l)?, port(h)?);
            if l > h || l == 0 {
                return Err(format!(
                    "`{s}`: a port range is L-H with 1 <= L <= H <= 65535"
                ));
            }
            Ok(SourcePort::Range(l, h, choice))
        }
        None if choice == PortChoice::PreferSource => Ok(SourcePort::Port(port(body)?)),
        None => Err(format!("`{s}`: `#` and `?` follow a range L-H")),
    }
}

/// What a minion's follower tells its rewriter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RwInstall {
    /// A flow and the identifier it leaves with (as the box it replaces chose it): both directions'
    /// mappings are installed, established, with the outputs of the rewriter's first `pattern` (or
    /// `keep`) input spec.
    Set(FlowId, FlowId),
    /// A flow ended (its identifier as it came in).
    Remove(FlowId),
    /// Forget every mapping (a snapshot follows).
    Clear,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    new_flows: u64,
    rewritten: u64,
    dropped: u64,
    passed: u64,
    not_tcp_udp: u64,
    mapping_failures: u64,
    unknown_tcp: u64,
    installed: u64,
    install_conflicts: u64,
}

/// What a batch's first pass reads from a packet.
#[derive(Debug, Clone, Copy)]
struct Seen {
    h: HeaderInfo,
    id: FlowId,
    hash: u32,
    flags: u8,
}

/// The timeouts of `IPRewriter`'s flows, in nanoseconds.
#[derive(Debug, Clone, Copy)]
struct Lifetimes {
    /// An established TCP flow, idle.
    tcp: u64,
    /// A TCP flow closed by FIN both ways or RST.
    tcp_done: u64,
    /// A TCP flow before its initiator's second packet.
    tcp_nodata: u64,
    /// A UDP flow, idle.
    udp: u64,
}

impl Lifetimes {
    /// How long a flow of `proto` in closing state `flags` stays from now.
    #[inline(always)]
    fn of(&self, proto: u8, flags: u8) -> u64 {
        if proto == proto::TCP {
            lifetime(flags, self.tcp_done, self.tcp_nodata, self.tcp)
        } else {
            self.udp
        }
    }
}

/// The most queued installs taken before one batch (as `LoadBalancer`).
const INSTALLS_PER_BATCH: usize = 4096;
/// The most ports a new flow tries before its mapping fails (bounded work per flow).
const PORT_TRIES: usize = 128;

/// Rewrites the source and destination addresses and ports of TCP and UDP flows (a network address
/// and port translator, NAPT), as Click's `IPRewriter` does and configured as it is.
///
/// A packet is first looked up in the mapping table by its flow identifier (protocol, addresses and
/// ports). A mapping rewrites it (addresses and ports; the IP and transport checksums updated
/// incrementally, RFC 1624, by the same code as `LoadBalancer`'s) and sends it to the mapping's
/// output. A packet with no mapping is handled by the spec of the input it came in on:
///
/// - `drop` or `discard`: dropped (counted in `dropped`);
/// - `pass OUTPUT`: sent to OUTPUT unchanged, no mapping made;
/// - `keep FOUTPUT ROUTPUT`: mappings that change nothing: the flow to FOUTPUT, its replies to ROUTPUT;
/// - `pattern SADDR SPORT DADDR DPORT FOUTPUT ROUTPUT`: the flow's identifier rewritten by the pattern
///   (a `-` leaves a field unchanged), and a reply mapping that rewrites the replies back: a packet
///   `(SA, SP, DA, DP)` made `(SA', SP', DA', DP')` goes to FOUTPUT, and `(DA', DP', SA', SP')` becomes
///   `(DA, DP, SA, SP)` on ROUTPUT. SPORT may be a range `L-H`: the port is chosen so that the reply
///   mapping is unique (a port serves several flows to distinct destinations); the packet's own source
///   port is preferred if free, else a random one; `L-H#` chooses in turn, `L-H?` at random. No free
///   port among 128 tried: the packet is dropped (counted in `mapping_failures`).
///
/// Source NAT (a NAPT box: `pattern 192.0.2.1 1024-65535 - - 0 1` on the inside input, `drop` on the
/// outside one) and destination NAT (`pattern - - 10.1.0.5 8080 0 1`) read as they do in Click.
/// IPv4 only, as Click's; IPv6 packets, non-TCP/UDP packets and non-first fragments are dropped unless
/// they arrive on a `pass` input (counted in `not_tcp_udp`).
///
/// The two mappings of a flow live and die together (Click's `IPRewriterFlow`): each is refreshed by
/// its own direction's packets, and the pair lives while either is fresh; an eviction, expiry or
/// removal of one takes the other ([`StateTable::pair_with`]). A TCP flow is on probation (`TCP_NODATA_TIMEOUT`, evicted first from
/// a full table) until its initiator's second packet, then kept `TCP_TIMEOUT` idle, and
/// `TCP_DONE_TIMEOUT` after a FIN both ways or a RST; a UDP flow is kept `UDP_TIMEOUT`. The table is
/// bounded (`MAPPING_CAPACITY` flows, two mappings each).
///
/// # State
/// Every mapping made, and removed, is reported through the table's
/// [`StateSink`](crate::state::StateSink) (both directions; a white-box driver replicates the flows'
/// mappings, e.g. as `nat-binding` records); a minion installs them through
/// [`IPRewriter::installer`] ([`RwInstall`]), with the outputs of the first `pattern` or `keep` spec.
/// Installed flows are established, and keep the very addresses and ports the primary chose.
///
/// # Ports
/// One push input per INPUTSPEC; push outputs up to the highest output a spec names (each connected).
///
/// # Arguments
/// INPUTSPEC, ... (positional, one per input); `MAPPING_CAPACITY` (flows, default 65536; also
/// `CAPACITY`); `TCP_TIMEOUT` (seconds, default 86400), `TCP_DONE_TIMEOUT` (240),
/// `TCP_NODATA_TIMEOUT` (300), `UDP_TIMEOUT` (300); `LINK` (`ether` or `ip`, default ether); `SEED` (the
/// random port choice; default from the clock). Click's `TCP_GUARANTEE`, `UDP_GUARANTEE`,
/// `UDP_STREAMING_TIMEOUT`, `REAP_INTERVAL` and `DST_ANNO` are accepted and have no effect here (expiry is
/// swept continuously; a full table evicts the flow closest to expiry).
///
/// # Handlers
/// `table_size` (mappings), `size` (flows), `capacity`, `mapping_failures`, `new_flows`, `rewritten`,
/// `dropped`, `passed`, `not_tcp_udp`, `unknown_tcp` (flows whose first packet was a mid-stream TCP
/// packet: state lost somewhere), `installed`, `install_conflicts`, `closed`, `expired`, `evicted`
/// (read); `tcp_table`, `udp_table` (read: up to 100 mappings each, Click's form); `clear` (write).
///
/// # Example
/// ```
/// let r = nf_core::testing::run_config(
///     "InfiniteSource(LIMIT 1000, FLOWS 100, PROTO udp, STOP true)
///        -> rw :: IPRewriter(pattern 192.0.2.1 1024-65535# - - 0 1, drop) -> Discard;
///      Idle -> [1]rw[1] -> Discard;").unwrap();
/// assert_eq!(r.read_handler("rw", "size").unwrap(), "100");
/// assert_eq!(r.read_handler("rw", "rewritten").unwrap(), "1000");
/// ```
pub struct IPRewriter {
    specs: Vec<InputSpec>,
    table: StateTable<FlowId, Mapping>,
    capacity: usize,
    lifetimes: Lifetimes,
    link: Link,
    rng: u64,
    next_port: u16,
    /// The outputs installed flows take (the first `pattern` or `keep` spec's).
    install_outputs: (u8, u8),
    installs: Option<Receiver<RwInstall>>,
    install_queue: usize,
    clock: crate::state::PacketClock,
    counts: Counts,
    scratch: Vec<Option<Seen>>,
}

impl std::fmt::Debug for IPRewriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IPRewriter")
            .field("specs", &self.specs)
            .field("mappings", &self.table.len())
            .finish()
    }
}

impl IPRewriter {
    /// A rewriter with one input per spec.
    pub fn new(specs: Vec<InputSpec>) -> Self {
        let install_outputs = specs
            .iter()
            .find_map(|s| match *s {
                InputSpec::Pattern(_, f, r) | InputSpec::Keep(f, r) => Some((f, r)),
                _ => None,
            })
            .unwrap_or((0, 0));
        IPRewriter {
            specs,
            table: paired_table(65536),
            capacity: 65536,
            lifetimes: Lifetimes {
                tcp: 86_400_000_000_000,
                tcp_done: 240_000_000_000,
                tcp_nodata: 300_000_000_000,
                udp: 300_000_000_000,
            },
            link: Link::Ethernet,
            rng: Timestamp::now().0 | 1,
            next_port: 0,
            install_outputs,
            installs: None,
            install_queue: crate::state::INSTALL_QUEUE,
            clock: crate::state::PacketClock::default(),
            counts: Counts::default(),
            scratch: Vec::new(),
        }
    }
    /// The most flows (two mappings each); a full table evicts the flow closest to expiry.
    pub fn capacity(mut self, flows: usize) -> Self {
        self.capacity = flows.max(1);
        self.table = paired_table(self.capacity);
        self
    }
    /// Timeouts: established TCP, closed TCP (FIN both ways or RST), TCP before its initiator's
    /// second packet, UDP.
    pub fn timeouts(
        mut self,
        tcp: std::time::Duration,
        tcp_done: std::time::Duration,
        tcp_nodata: std::time::Duration,
        udp: std::time::Duration,
    ) -> Self {
        self.lifetimes = Lifetimes {
            tcp: tcp.as_nanos() as u64,
            tcp_done: tcp_done.as_nanos() as u64,
            tcp_nodata: tcp_nodata.as_nanos() as u64,
            udp: udp.as_nanos() as u64,
        };
        self
    }
    /// The link layer of the packets.
    pub fn link(mut self, l: Link) -> Self {
        self.link = l;
        self
    }
    /// The random port choice's seed.
    pub fn seed(mut self, s: u64) -> Self {
        self.rng = s | 1;
        self
    }
    /// The install queue's bound (default [`INSTALL_QUEUE`](crate::state::INSTALL_QUEUE)).
    pub fn install_queue(mut self, n: usize) -> Self {
        self.install_queue = n.max(1);
        self
    }
    /// The input specs.
    pub fn specs(&self) -> &[InputSpec] {
        &self.specs
    }

    /// The sending end of the install queue, for a minion's follower (on any thread): installs queued
    /// here are applied before the next batches (up to 4,096 before each) and at each timer tick. One
    /// per rewriter (`None` the second time); bounded: a full queue makes the follower wait.
    pub fn installer(&mut self) -> Option<Installer<RwInstall>> {
        if self.installs.is_some() {
            return None;
        }
        let (tx, rx) = Installer::bounded(self.install_queue);
        self.installs = Some(rx);
        Some(tx)
    }

    /// The mapping of a flow identifier (either direction), if the table holds it.
    pub fn lookup(&self, id: &FlowId) -> Option<Mapping> {
        self.table.lookup(self.hash(id), id).copied()
    }

    /// Every flow's identifier as it came in and as it leaves (the forward mappings).
    pub fn flows(&self) -> Vec<(FlowId, FlowId)> {
        let mut v = Vec::new();
        self.table.for_each(|k, m| {
            if !m.is_reply() {
                v.push((*k, m.rewritten(k)));
            }
        });
        v
    }

    #[inline(always)]
    fn hash(&self, id: &FlowId) -> u32 {
        id.key().keyed_hash(self.table.hash_key())
    }

    fn next_random(&mut self) -> u64 {
        crate::hash::xorshift64_star(&mut self.rng)
    }

    /// Gives the partner of mapping `m` of `key` the same closing state (a flow's FIN, RST,
    /// establishment and restart are rare events: the other direction's mapping is looked up only
    /// then).
    fn sync_partner(&mut self, key: &FlowId, m: &Mapping, now: Timestamp) {
        let (pk, _) = partner(key, m, 0);
        let (h, t, bits) = (self.hash(&pk), self.lifetimes, m.flags & closing::MASK);
        self.table.update(h, &pk, |p| {
            p.flags = (p.flags & !closing::MASK) | bits;
            (now.add_nanos(t.of(key.proto, p.flags)), ())
        });
    }

    /// A new flow's identifier by `pattern`, or `None` if no port is free.
    fn allocate(&mut self, id: &FlowId, p: &Pattern) -> Option<FlowId> {
        let mut new = FlowId {
            proto: id.proto,
            src: match p.saddr {
                Field::Keep => id.src,
                Field::Set(a) => a,
            },
            sport: id.sport,
            dst: match p.daddr {
                Field::Keep => id.dst,
                Field::Set(a) => a,
            },
            dport: match p.dport {
                Field::Keep => id.dport,
                Field::Set(x) => x,
            },
        };
        let (lo, hi, choice) = match p.sport {
            SourcePort::Keep => return self.free(&new).then_some(new),
            SourcePort::Port(x) => {
                new.sport = x;
                return self.free(&new).then_some(new);
            }
            SourcePort::Range(lo, hi, c) => (lo, hi, c),
        };
        let span = u32::from(hi - lo) + 1;
        if choice == PortChoice::PreferSource && (lo..=hi).contains(&id.sport) && self.free(&new) {
            return Some(new);
        }
        for _ in 0..PORT_TRIES.min(span as usize) {
            let off = match choice {
                PortChoice::Sequential => {
                    let o = u32::from(self.next_port) % span;
                    self.next_port = ((o + 1) % span) as u16;
                    o
                }
                _ => (((self.next_random() >> 32) * u64::from(span)) >> 32) as u32,
            };
            new.sport = lo + off as u16;
            if self.free(&new) {
                return Some(new);
            }
        }
        None
    }

    /// True if a flow may leave as `new`: no mapping holds its reply's identifier.
    #[inline]
    fn free(&self, new: &FlowId) -> bool {
        let back = new.reversed();
        self.table.find(self.hash(&back), &back).is_none()
    }

    /// Puts both mappings of a flow `id` -> `new` in the table (the flow's to `fout`, the reply's to
    /// `rout`); an installed flow is established and not reported. Returns the forward mapping, or
    /// `None` if the table refused.
    fn add_flow(
        &mut self,
        hash: u32,
        id: FlowId,
        new: FlowId,
        (fout, rout): (u8, u8),
        installed: bool,
        now: Timestamp,
    ) -> Option<Mapping> {
        let mut flags = if installed { ESTABLISHED } else { 0 };
        if new.src != id.src || new.sport != id.sport {
            flags |= flag::SRC;
        }
        if new.dst != id.dst || new.dport != id.dport {
            flags |= flag::DST;
        }
        let m = Mapping {
            src: new.src,
            sport: new.sport,
            dst: new.dst,
            dport: new.dport,
            output: fout,
            flags,
        };
        let (rk, rm) = partner(&id, &m, rout);
        let rh = self.hash(&rk);
        let exp = now.add_nanos(self.lifetimes.of(id.proto, flags));
        // The table keeps pairs whole: an entry evicted to make room takes its partner with it, and
        // if the room for the reply cost the flow's own mapping, both are gone (`None`).
        let placed = if installed {
            self.table.install(hash, id, m, now, exp).is_some()
                && self.table.install(rh, rk, rm, now, exp).is_some()
        } else {
            self.table.insert(hash, id, m, now, exp).is_some()
                && self.table.insert(rh, rk, rm, now, exp).is_some()
        };
        if !placed || self.table.find(hash, &id).is_none() {
            self.remove_flow(&id, now);
            return None;
        }
        Some(m)
    }

    /// Installs up to `max` queued installs.
    fn apply_installs(&mut self, now: Timestamp, max: usize) {
        let Some(rx) = self.installs.take() else {
            return;
        };
        let (fout, rout) = self.install_outputs;
        for _ in 0..max {
            let Ok(i) = rx.try_recv() else {
                break;
            };
            match i {
                RwInstall::Set(id, new) => {
                    // A mapping of this node's own that holds the reply identifier the primary chose
                    // (a port this node handed out meanwhile) gives way: the primary's flow is older.
                    let back = new.reversed();
                    if self.lookup(&back).is_some()
                        && self.lookup(&id).is_none_or(|f| f.rewritten(&id) != new)
                    {
                        self.counts.install_conflicts += 1;
                        self.remove_flow(&back, now);
                    }
                    if let Some(old) = self.lookup(&id)
                        && old.rewritten(&id) != new
                    {
                        self.remove_flow(&id, now);
                    }
                    let h = self.hash(&id);
                    if self.add_flow(h, id, new, (fout, rout), true, now).is_some() {
                        self.counts.installed += 1;
                    }
                }
                RwInstall::Remove(id) => {
                    self.table.uninstall(self.hash(&id), &id);
                }
                RwInstall::Clear => self.table.clear(),
            }
        }
        self.installs = Some(rx);
    }

    /// Removes a flow (both mappings, reported).
    fn remove_flow(&mut self, key: &FlowId, now: Timestamp) {
        if let Some(e) = self.table.find(self.hash(key), key) {
            self.table.remove(e, RemoveReason::Deleted, now);
        }
    }

    fn sweep(&mut self, now: Timestamp, max: usize) {
        self.table.sweep(now, max);
    }

    /// The first pass over a packet: its headers, identifier, table hash and TCP flags.
    #[inline]
    fn inspect(&self, p: &mut Packet) -> Option<Seen> {
        let (h, key) = p.locate_key(self.link).ok()?;
        let key = key?;
        if h.fragment || !(h.proto == proto::TCP || h.proto == proto::UDP) {
            return None;
        }
        let id = FlowId::of_key(&key)?;
        Some(Seen {
            h,
            id,
            hash: key.keyed_hash(self.table.hash_key()),
            flags: p.tcp_flags(&h).unwrap_or(0),
        })
    }

    /// One packet: the output it leaves on, or `None` (dropped).
    #[inline]
    fn process(&mut self, p: &mut Packet, port: usize, seen: Option<Seen>) -> Option<usize> {
        let Some(Seen { h, id, hash, flags }) = seen else {
            return match self.specs.get(port) {
                Some(InputSpec::Pass(o)) => {
                    self.counts.passed += 1;
                    Some(usize::from(*o))
                }
                _ => {
                    self.counts.not_tcp_udp += 1;
                    None
                }
            };
        };
        let now = p.anno.timestamp;
        let m = match self.table.find(hash, &id) {
            Some(e) => {
                let t = self.lifetimes;
                let m = self.table.value_mut(e)?;
                let before = m.flags;
                let reply = m.flags & flag::REPLY != 0;
                if flags & FIN != 0 {
                    m.flags |= if reply { FIN_REPLY } else { FIN_ORIGIN };
                }
                if flags & RST != 0 {
                    m.flags |= closing::RST;
                }
                if !reply && (flags & ACK != 0 || id.proto != proto::TCP) {
                    m.flags |= ESTABLISHED;
                }
                // A new SYN on a closed flow (port reuse) starts it over: probation again.
                if !reply
                    && flags & SYN != 0
                    && flags & ACK == 0
                    && before & (FIN_ORIGIN | FIN_REPLY | closing::RST) != 0
                {
                    m.flags &= !closing::MASK;
                }
                let m = *m;
                self.table.touch(e, now.add_nanos(t.of(id.proto, m.flags)));
                if (m.flags ^ before) & closing::MASK != 0 {
                    self.sync_partner(&id, &m, now);
                }
                m
            }
            None => {
                let (new, fout, rout) = match self.specs.get(port).copied() {
                    Some(InputSpec::Pass(o)) => {
                        self.counts.passed += 1;
                        return Some(usize::from(o));
                    }
                    Some(InputSpec::Keep(f, r)) => (self.free(&id).then_some(id), f, r),
                    Some(InputSpec::Pattern(pat, f, r)) => (self.allocate(&id, &pat), f, r),
                    Some(InputSpec::Drop) | None => {
                        self.counts.dropped += 1;
                        return None;
                    }
                };
                let Some(new) = new else {
                    self.counts.mapping_failures += 1;
                    return None;
                };
                if id.proto == proto::TCP && !(flags & SYN != 0 && flags & ACK == 0) {
                    self.counts.unknown_tcp += 1;
                }
                let Some(m) = self.add_flow(hash, id, new, (fout, rout), false, now) else {
                    self.counts.mapping_failures += 1;
                    return None;
                };
                self.counts.new_flows += 1;
                m
            }
        };
        if m.flags & flag::SRC != 0
            && p.set_src_endpoint(&h, SocketAddr::V4(SocketAddrV4::new(m.src, m.sport)))
                .is_err()
        {
            return None;
        }
        if m.flags & flag::DST != 0
            && p.set_dst_endpoint(&h, SocketAddr::V4(SocketAddrV4::new(m.dst, m.dport)))
                .is_err()
        {
            return None;
        }
        self.counts.rewritten += 1;
        Some(usize::from(m.output))
    }

    fn table_text(&self, proto: u8) -> String {
        let mut v = Vec::new();
        self.table.for_each(|k, m| {
            if k.proto == proto && v.len() < 100 {
                let n = m.rewritten(k);
                v.push(format!(
                    "({}, {}, {}, {}) => ({}, {}, {}, {}) [{}]",
                    k.src, k.sport, k.dst, k.dport, n.src, n.sport, n.dst, n.dport, m.output
                ));
            }
        });
        v.join("\n")
    }
}

impl Stateful for IPRewriter {
    type Key = FlowId;
    type Value = Mapping;
    fn table(&self) -> &StateTable<FlowId, Mapping> {
        &self.table
    }
    fn table_mut(&mut self) -> &mut StateTable<FlowId, Mapping> {
        &mut self.table
    }
}

const HANDLERS: &[HandlerSpec] = &[
    HandlerSpec::gauge("table_size", "mappings in the table (two a flow)"),
    HandlerSpec::gauge("size", "flows in the table"),
    HandlerSpec::gauge("capacity", "most flows"),
    HandlerSpec::read(
        "mapping_failures",
        "new flows dropped: no free port, or the table refused them",
    ),
    HandlerSpec::read("new_flows", "flows mapped by an input spec"),
    HandlerSpec::read("rewritten", "packets sent out by a mapping"),
    HandlerSpec::read(
        "dropped",
        "packets with no mapping that arrived on a drop input",
    ),
    HandlerSpec::read("passed", "packets sent on by a pass input"),
    HandlerSpec::read(
        "not_tcp_udp",
        "packets dropped: not TCP or UDP over IPv4, or a later fragment",
    ),
    HandlerSpec::read(
        "unknown_tcp",
        "flows mapped from a mid-stream TCP packet (their state was lost somewhere)",
    ),
    HandlerSpec::read("installed", "flows installed by a minion's follower"),
    HandlerSpec::read(
        "install_conflicts",
        "flows of this node's own removed because an installed flow took their port",
    ),
    HandlerSpec::read("closed", "mappings removed after closing"),
    HandlerSpec::read("expired", "mappings removed when idle"),
    HandlerSpec::read("evicted", "mappings evicted when the table was full"),
    HandlerSpec::read_on_demand("tcp_table", "up to 100 TCP mappings"),
    HandlerSpec::read_on_demand("udp_table", "up to 100 UDP mappings"),
    HandlerSpec::write("clear", "forget every mapping (not reported)"),
];

impl Element for IPRewriter {
    fn class_name(&self) -> &'static str {
        Self::NAME
    }
    fn ports(&self) -> PortSpec {
        let outs = self
            .specs
            .iter()
            .flat_map(|s| s.outputs())
            .flatten()
            .max()
            .map_or(1, |o| usize::from(o) + 1);
        PortSpec::new(
            PortCount::exactly(self.specs.len().max(1)),
            PortCount::exactly(outs),
            "h/h",
        )
    }
    fn initialize(&mut self, ctx: &InitContext<'_>) -> Result<(), String> {
        if self.specs.is_empty() {
            return Err("IPRewriter needs at least one input spec".into());
        }
        if ctx.shards > 1 {
            return Err(
                "IPRewriter runs on one shard: a reply's five-tuple is not its flow's, so \
                        dispatch by flow hash would send it to another shard's table"
                    .into(),
            );
        }
        Ok(())
    }
    fn push(&mut self, port: usize, batch: &mut Batch, out: &mut Outputs) {
        let Some(last) = batch.as_slice().last() else {
            return;
        };
        let now = last.anno.timestamp;
        self.apply_installs(now, INSTALLS_PER_BATCH);
        self.sweep(now, 8);
        self.clock.saw(now);
        // Pass 1: identifiers and hashes, and a prefetch of each table slot; pass 2: the table and the
        // rewrites (as LoadBalancer).
        let mut seen = std::mem::take(&mut self.scratch);
        seen.clear();
        for p in batch.iter_mut() {
            seen.push(self.inspect(p));
        }
        for s in seen.iter().flatten() {
            self.table.prefetch(s.hash);
        }
        let mut k = 0;
        batch.classify_to(out, |p| {
            let s = seen.get(k).copied().flatten();
            k += 1;
            self.process(p, port, s)
        });
        self.scratch = seen;
    }
    fn timer_interval(&self) -> Option<std::time::Duration> {
        Some(std::time::Duration::from_millis(100))
    }
    fn on_timer(&mut self, wall: Timestamp, _out: &mut Outputs) {
        let seen = self.clock.now(wall);
        let now = seen.unwrap_or(wall);
        self.apply_installs(now, self.install_queue);
        if seen.is_some() {
            self.sweep(now, 4096);
        }
    }
    /// A new configuration's rewriter takes the old one's mappings, counters, install queue and sink.
    fn take_state(&mut self, old: &mut dyn Element) {
        let Some(old) = old.as_any_mut().downcast_mut::<IPRewriter>() else {
            return;
        };
        self.table.take_over(&mut old.table);
        self.counts = old.counts;
        self.clock = old.clock;
        self.rng = old.rng;
        self.next_port = old.next_port;
        if self.installs.is_none() {
            self.installs = old.installs.take();
        }
    }
    fn handlers(&self) -> &'static [HandlerSpec] {
        HANDLERS
    }
    fn read_handler(&self, name: &str) -> Option<String> {
        let s = self.table.stats();
        let c = &self.counts;
        Some(match name {
            "table_size" => self.table.len().to_string(),
            // The table keeps pairs whole: two mappings a flow.
            "size" => (self.table.len() / 2).to_string(),
            "capacity" => self.capacity.to_string(),
            "mapping_failures" => c.mapping_failures.to_string(),
            "new_flows" => c.new_flows.to_string(),
            "rewritten" => c.rewritten.to_string(),
            "dropped" => c.dropped.to_string(),
            "passed" => c.passed.to_string(),
            "not_tcp_udp" => c.not_tcp_udp.to_string(),
            "unknown_tcp" => c.unknown_tcp.to_string(),
            "installed" => c.installed.to_string(),
            "install_conflicts" => c.install_conflicts.to_string(),
            "closed" => s.closed.to_string(),
            "expired" => s.expired.to_string(),
            "evicted" => s.evicted.to_string(),
            "tcp_table" => self.table_text(proto::TCP),
            "udp_table" => self.table_text(proto::UDP),
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

/// Parses the INPUTSPECs, each error at its argument.
fn parse_specs(a: &Args, raw: &[RawArg]) -> Result<Vec<InputSpec>, ConfigError> {
    raw.iter()
        .map(|r| InputSpec::parse(&r.text).map_err(|e| a.error_at(r.span, e)))
        .collect()
}

impl ElementClass for IPRewriter {
    const NAME: &'static str = "IPRewriter";
    const DOC: &'static str = "rewrites TCP/UDP flows' addresses and ports (NAPT), Click's input specs; reports to a StateSink";
    fn configure(a: &mut Args) -> Result<Self, ConfigError> {
        let cap: Option<usize> = a.read("MAPPING_CAPACITY")?;
        let cap = match cap {
            Some(c) => c,
            None => a.read_or("CAPACITY", 65536)?,
        };
        if cap > crate::state::MAX_TABLE_CAPACITY / 2 {
            return Err(a.error(format!(
                "MAPPING_CAPACITY is at most {}",
                crate::state::MAX_TABLE_CAPACITY / 2
            )));
        }
        let secs = |a: &mut Args, k: &str, d: u64| -> Result<std::time::Duration, ConfigError> {
            Ok(std::time::Duration::from_secs(a.read_or(k, d)?))
        };
        let tcp = secs(a, "TCP_TIMEOUT", 86_400)?;
        let done = secs(a, "TCP_DONE_TIMEOUT", 240)?;
        let nodata = secs(a, "TCP_NODATA_TIMEOUT", 300)?;
        let udp = secs(a, "UDP_TIMEOUT", 300)?;
        for ignored in [
            "TCP_GUARANTEE",
            "UDP_GUARANTEE",
            "UDP_STREAMING_TIMEOUT",
            "REAP_INTERVAL",
        ] {
            let _: Option<u64> = a.read(ignored)?;
        }
        let _: Option<bool> = a.read("DST_ANNO")?;
        let seed: Option<u64> = a.read("SEED")?;
        let link: String = a.read_or("LINK", "ether".to_string())?;
        let link = match link.as_str() {
            "ether" | "ethernet" => Link::Ethernet,
            "ip" => Link::Ip,
            o => return Err(a.error(format!("LINK must be ether or ip, not `{o}`"))),
        };
        let raw = a.rest();
        if raw.is_empty() {
            return Err(a.error(
                "IPRewriter needs an input spec per input (e.g. `pattern 192.0.2.1 1024-65535 - - 0 1, drop`)",
            ));
        }
        if raw.len() > 64 {
            return Err(a.error("at most 64 input specs"));
        }
        a.reserve("MAPPING_CAPACITY", (2 * cap as u64) * 64 * 4 / 3)?;
        let specs = parse_specs(a, &raw)?;
        let mut rw = IPRewriter::new(specs)
            .capacity(cap)
            .timeouts(tcp, done, nodata, udp)
            .link(link);
        if let Some(s) = seed {
            rw = rw.seed(s);
        }
        Ok(rw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_specs_parse_as_click_writes_them() {
        assert_eq!(InputSpec::parse("drop").unwrap(), InputSpec::Drop);
        assert_eq!(InputSpec::parse("pass 2").unwrap(), InputSpec::Pass(2));
        assert_eq!(InputSpec::parse("keep 0 1").unwrap(), InputSpec::Keep(0, 1));
        let InputSpec::Pattern(p, 0, 1) =
            InputSpec::parse("pattern 192.0.2.1 1024-65535# - - 0 1").unwrap()
        else {
            panic!("not a pattern")
        };
        assert_eq!(p.saddr, Field::Set("192.0.2.1".parse().unwrap()));
        assert_eq!(
            p.sport,
            SourcePort::Range(1024, 65535, PortChoice::Sequential)
        );
        assert_eq!((p.daddr, p.dport), (Field::Keep, Field::Keep));
        let InputSpec::Pattern(p, ..) = InputSpec::parse("pattern - - 10.1.0.5 8080 0 1").unwrap()
        else {
            panic!("not a pattern")
        };
        assert_eq!(p.dport, Field::Set(8080));
        for bad in [
            "pattern 1.2.3.4 1024-65535 - - 0",
            "pattern 1.2.3.4-1.2.3.9 1024 - - 0 1",
            "pattern 1.2.3.4 9-2 - - 0 1",
            "pattern 1.2.3.4 80# - - 0 1",
            "pattern NAT 0 1",
            "rewrite 0 1",
            "pass 300",
        ] {
            assert!(InputSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn partners_are_symmetric() {
        let id = FlowId::new(
            6,
            "10.0.0.5:40000".parse().unwrap(),
            "10.1.0.3:80".parse().unwrap(),
        );
        let m = Mapping {
            src: "192.0.2.1".parse().unwrap(),
            sport: 5000,
            dst: id.dst,
            dport: id.dport,
            output: 0,
            flags: flag::SRC | ESTABLISHED,
        };
        let (pk, pm) = partner(&id, &m, 1);
        assert_eq!(pk.to_string(), "tcp 10.1.0.3:80 > 192.0.2.1:5000");
        assert_eq!(
            pm.rewritten(&pk).to_string(),
            "tcp 10.1.0.3:80 > 10.0.0.5:40000"
        );
        assert!(pm.is_reply() && pm.flags & flag::DST != 0 && pm.flags & flag::SRC == 0);
        assert_eq!(pm.output, 1);
        let (back, bm) = partner(&pk, &pm, 0);
        assert_eq!((back, bm.rewritten(&back)), (id, m.rewritten(&id)));
        assert_eq!(bm.flags, m.flags);
    }
}
