//! `LoadBalancer`: a stateful L4 load balancer (VIP:port -> backends), both directions rewritten.

use super::maglev::{MaglevBackend, MaglevTable};
use crate::args::Args;
use crate::batch::{Batch, Outputs};
use crate::element::ElementClass;
use crate::element::{Element, HandlerSpec, InitContext, PortCount, PortSpec};
use crate::error::ConfigError;
use crate::flow::{Endpoint, FlowKey};
use crate::indirection::{BucketSet, Exported, Migrate, bucket_of};
use crate::packet::{Link, Packet, Timestamp};
use crate::state::Installer;
use crate::state::{Moved, RemoveReason, StateTable, Stateful, WhenFull};
use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc::Receiver;

/// How a new flow's backend is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// At random, in proportion to the weights (as MiMi's prototype: a minion without state cannot
    /// recompute the choice).
    Random,
    /// In turn (a weight of 0 skips a backend; other weights are not used).
    RoundRobin,
    /// The backend with the fewest flows in the table per unit of weight (counted as flows come and go:
    /// each insert, install, close, expiry and eviction).
    LeastConnections,
    /// Maglev consistent hashing of the five-tuple: every balancer with the same backends and the same
    /// agreed hash key ([`LoadBalancer::hash_key`], `HASH_KEY`, or the process's
    /// [`agreed`](crate::hash::agreed) key) picks the same backend for a flow (a minion can recompute the
    /// choice; a backend change moves few flows).
    Maglev,
}

/// The key of a balanced flow: its client side (the `flow-mapping` schema's key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey {
    /// IP protocol (6 or 17).
    pub proto: u8,
    /// Client address.
    pub ip: IpAddr,
    /// Client port.
    pub port: u16,
}

/// A balanced flow: its backend and how far it is from closing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LbEntry {
    /// The backend chosen (an [`Endpoint`]: 20 bytes, so that a table slot fits one cache line).
    pub backend: Endpoint,
    /// FIN seen from the client (bit 0) and from the backend (bit 1); bit 2: RST; bit 3: established (the
    /// client's second packet: the ACK completing a handshake, or any packet after an adopted or UDP flow's
    /// first), or installed established.
    pub closing: u8,
    /// The flow's bucket of the symmetric flow hash (what moves with it between shards; see
    /// [`crate::indirection`]).
    pub bucket: u16,
}

/// What a minion's follower tells its balancer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbInstall {
    /// A flow's backend (as the primary chose it).
    Set(ClientKey, SocketAddr),
    /// A flow ended.
    Remove(ClientKey),
    /// Forget every flow (a snapshot follows).
    Clear,
    /// A backend's state, weight and health as the primary has them.
    Backend(BackendStatus),
}

/// What an operator made of a backend (HAProxy's and IPVS's administrative states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendState {
    /// Takes new flows (if healthy and of weight above 0).
    Up,
    /// Takes no new flow; its flows stay until they close, or until the deadline (then they are
    /// removed and the backend is down).
    Drain,
    /// Takes no new flow; its flows stay (a backend that is really gone resets them).
    Down,
}

impl BackendState {
    /// `up`, `drain` or `down`.
    pub fn name(self) -> &'static str {
        match self {
            BackendState::Up => "up",
            BackendState::Drain => "drain",
            BackendState::Down => "down",
        }
    }
    /// From [`name`](Self::name)'s words.
    pub fn parse(s: &str) -> Option<BackendState> {
        match s {
            "up" => Some(BackendState::Up),
            "drain" => Some(BackendState::Drain),
            "down" => Some(BackendState::Down),
            _ => None,
        }
    }
}

/// A backend's state, weight and health: what a primary replicates so that its minion knows which
/// backends are draining or down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendStatus {
    /// The backend.
    pub backend: SocketAddr,
    /// What the operator made of it.
    pub state: BackendState,
    /// Its weight (0: no new flows).
    pub weight: u32,
    /// What the health checks last said (true until they say otherwise).
    pub healthy: bool,
    /// For a draining backend with a deadline: when its remaining flows are cut (wall clock, ns).
    pub deadline: Option<Timestamp>,
}

impl BackendStatus {
    /// True if new flows may go to it.
    pub fn accepting(&self) -> bool {
        self.state == BackendState::Up && self.healthy && self.weight > 0
    }
}

/// A stateful L4 load balancer for one virtual address. Packets from clients to `VIP` (input 0) are sent
/// to the flow's backend (destination rewritten, checksums updated incrementally) on output 0; replies
/// from backends (input 1) get the VIP back as their source and leave on output 1. A new flow (a TCP
/// SYN, or any UDP packet) gets a backend by `POLICY`; established flows stick through a bounded table
/// with an idle timeout; a flow closed by FIN both ways or RST lingers `LINGER` seconds (retransmissions
/// still match) and is removed. Every insert and removal is reported through the table's `StateSink`,
/// so a white-box driver replicates the balancer's `flow-mapping` state; a minion installs it through
/// [`LoadBalancer::installer`].
///
/// A TCP packet of a flow the table does not know (not a SYN: state lost, say on a minion that has none)
/// is adopted: given a backend by `POLICY` and remembered (`UNKNOWN pick`, the default, as MiMi's minion
/// without state does: the backend resets the connection unless the choice happens to be the primary's),
/// or dropped (`UNKNOWN drop`); either way it is counted in `unknown`. Every new entry (a SYN's, an
/// adopted flow's, a UDP flow's) is on probation, kept `HALF_OPEN` seconds and evicted first from a full
/// table, until the client's next packet; a flood of spoofed one-packet tuples cannot push established
/// flows out.
///
/// # Ports
/// Two push inputs (0: from clients; 1: from backends); two or three push outputs (0: to backends; 1:
/// to clients; 2, if connected: packets that are not for this balancer, else dropped and counted).
///
/// # Arguments
/// `VIP` (IP:PORT, mandatory); `BACKENDS` (space-separated `IP:PORT[*WEIGHT]`, mandatory; see [`Policy`]
/// for how each policy uses the weights); `POLICY` (`random`, `roundrobin`, `leastconn`, `maglev`; default random); `MAGLEV_SIZE`
/// (prime, default 65537); `CAPACITY` (default 65536); `IDLE` (seconds, default 300);
/// `LINGER` (seconds, default 10); `HALF_OPEN` (seconds a new flow is kept before the client's second packet
/// establishes it, default 5); `UNKNOWN` (`pick` or `drop`); `SEED` (random policy; default from the
/// clock); `LINK` (`ether` or `ip`); `LOOSE_VIP` (any address on the VIP's port; for synthetic traffic);
/// `STRICT_REPLIES` (default true: a reply must come from its flow's backend); `HASH_KEY` (32 hex digits:
/// the key of Maglev's flow hash, the same on every balancer that must pick alike; default: the process's
/// [`agreed`](crate::hash::agreed) key, which `nf lb --hash-key-file` sets). Whoever knows the key can
/// compute which backend a flow gets (and so aim flows at one backend), not more: the flow table is placed
/// by the process's own secret key.
///
/// # Backends
/// Each backend has a weight and a state ([`BackendStatus`]): `up`, `drain` (no new flows; its flows stay
/// until they close, or until an optional deadline, when they are removed and the backend is down) or
/// `down` (no new flows; its flows stay), and a health that checks set (an unhealthy backend takes no new
/// flow). New flows go to the backends that are up, healthy and of weight above 0; none: the packet is
/// dropped, counted in `no_backend`. Changes are reported through [`LoadBalancer::status_watch`] (a
/// primary replicates them) and installed on a minion through its install queue
/// ([`LbInstall::Backend`]). A reload ([`Element::take_state`]) keeps every backend's state and health.
///
/// # Handlers
/// `flows`, `new_flows`, `forwarded`, `replies`, `unknown`, `unknown_replies`, `not_vip`, `installed`,
/// `closed`, `expired`, `evicted`, `probe_limited`, `no_backend`, `drained`, `status_dropped`; `backends`
/// (flows per backend in the table), `weights`, `accepting` (1 if it takes new flows) as `IP:PORT=N`
/// lists; `states` (a line per backend) (read); `set_backends` (a new backend set, applied without
/// stopping traffic), `drain IP:PORT [SECONDS]`, `down IP:PORT`, `up IP:PORT`, `weight IP:PORT W`,
/// `health IP:PORT up|down` (write).
///
/// # Example
/// ```
/// let r = nf_core::testing::run_config(
///     "InfiniteSource(LIMIT 1000, FLOWS 100, PROTO tcp, STOP true) -> lb :: LoadBalancer(VIP 10.0.0.2:80,
///        BACKENDS 10.1.0.1:8080 10.1.0.2:8080, LOOSE_VIP true) -> Discard; Idle -> [1]lb[1] -> Discard;").unwrap();
/// assert_eq!(r.read_handler("lb", "new_flows").unwrap(), "100");
/// ```
pub struct LoadBalancer {
    vip: SocketAddr,
    backends: Vec<SocketAddr>,
    policy: Policy,
    table: StateTable<ClientKey, LbEntry>,
    capacity: usize,
    idle_ns: u64,
    linger_ns: u64,
    /// How long a flow whose handshake has not completed is kept (a SYN flood's entries go first).
    embryonic_ns: u64,
    drop_unknown: bool,
    /// Accept packets to any address on the VIP's port (for synthetic traffic).
    loose_vip: bool,
    /// Replies must come from the flow's backend.
    strict_replies: bool,
    link: Link,
    rng: u64,
    rr: usize,
    /// Each backend's state, weight and health (in the order of `backends`).
    status: Vec<BackendStatus>,
    /// The backends that take new flows, with their weights' running sums (random and round robin
    /// pick among them; Maglev's table holds only them).
    eligible: Vec<(usize, u64)>,
    /// Where changes of `status` go (a primary's replication), once asked for.
    status_tx: Option<std::sync::mpsc::SyncSender<BackendStatus>>,
    maglev: Option<MaglevTable>,
    maglev_size: usize,
    /// The key of Maglev's flow hash (agreed between balancers).
    agreed: crate::hash::HashKey,
    census: Vec<u64>,
    has_other_output: bool,
    /// The install queue's receiving end, once [`LoadBalancer::installer`] made it.
    installs: Option<Receiver<LbInstall>>,
    install_queue: usize,
    clock: crate::state::PacketClock,
    counts: Counts,
    scratch: Vec<Option<Seen>>,
}

/// What a batch's first pass reads from a packet.
#[derive(Debug, Clone, Copy)]
struct Seen {
    h: crate::packet::HeaderInfo,
    key: FlowKey,
    hash: u32,
    flags: u8,
}

/// The client's side of a packet's key: its source for a client packet (`port` 0), its destination
/// for a reply.
#[inline(always)]
fn client_key(key: &FlowKey, port: usize) -> ClientKey {
    if port == 0 {
        ClientKey {
            proto: key.proto(),
            ip: key.src(),
            port: key.src_port(),
        }
    } else {
        ClientKey {
            proto: key.proto(),
            ip: key.dst(),
            port: key.dst_port(),
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    no_backend: u64,
    drained: u64,
    status_dropped: u64,
    new_flows: u64,
    forwarded: u64,
    replies: u64,
    unknown: u64,
    unknown_replies: u64,
    not_vip: u64,
    installed: u64,
}

impl std::fmt::Debug for LoadBalancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadBalancer")
            .field("vip", &self.vip)
            .field("backends", &self.backends)
            .field("policy", &self.policy)
            .field("flows", &self.table.len())
            .finish()
    }
}

use crate::elements::tcpudp::closing::{ESTABLISHED, lifetime};
use crate::wire::tcp_flags::{ACK, FIN, RST, SYN};

/// A flow of `backend` entered the table (`add`) or left it: the census of flows per backend, which
/// least-connections picks by and the `backends` handler reads, follows. A backend not in the set (a
/// follower's install from a primary with other backends) is not counted.
#[inline]
fn census_count(census: &mut [u64], backends: &[SocketAddr], backend: Endpoint, add: bool) {
    if let Some(i) = backends.iter().position(|b| *b == backend)
        && let Some(c) = census.get_mut(i)
    {
        *c = if add { *c + 1 } else { c.saturating_sub(1) };
    }
}

/// The most queued installs taken before one batch (about 0.2 ms of work): a follower that is far ahead
/// delays no batch by more, and the rest wait for the next batches or the timer.
const INSTALLS_PER_BATCH: usize = 4096;

impl ClientKey {
    /// The table hash (keyed): that of the client's endpoint as a flow key
    /// ([`FlowKey::endpoint_key`], which the packet path hashes without building this).
    #[inline]
    fn hash(&self) -> u32 {
        FlowKey::new(self.proto, self.ip, self.port, self.ip, 0).table_hash()
    }
}

impl LoadBalancer {
    /// A balancer of `vip` over `backends`.
    pub fn new(vip: SocketAddr, backends: Vec<SocketAddr>) -> Self {
        let seed = Timestamp::now().0 | 1;
        let n = backends.len();
        let mut lb = LoadBalancer {
            vip,
            backends,
            policy: Policy::Random,
            table: StateTable::new(65536, WhenFull::Evict),
            capacity: 65536,
            idle_ns: 300_000_000_000,
            linger_ns: 10_000_000_000,
            embryonic_ns: 5_000_000_000,
            drop_unknown: false,
            loose_vip: false,
            strict_replies: true,
            link: Link::Ethernet,
            rng: seed,
            rr: 0,
            status: Vec::new(),
            eligible: Vec::new(),
            status_tx: None,
            maglev: None,
            maglev_size: super::maglev::DEFAULT_SIZE,
            agreed: crate::hash::agreed().clone(),
            census: vec![0; n],
            has_other_output: false,
            installs: None,
            install_queue: crate::state::INSTALL_QUEUE,
            clock: crate::state::PacketClock::default(),
            counts: Counts::default(),
            scratch: Vec::new(),
        };
        lb.status = lb.fresh_status(&[]);
        let _ = lb.rebuild_choice();
        lb
    }
    /// The backend policy.
    pub fn policy(mut self, p: Policy) -> Self {
        self.policy = p;
        self
    }
    /// Backend weights, in the order of the backends (see [`Policy`] for how each policy uses them).
    pub fn weights(mut self, w: Vec<u32>) -> Self {
        self.status = self.fresh_status(&w);
        let _ = self.rebuild_choice();
        self
    }
    /// The key of Maglev's flow hash: balancers that must pick the same backend for a flow share it.
    pub fn hash_key(mut self, k: crate::hash::HashKey) -> Self {
        self.agreed = k;
        self
    }
    /// The Maglev table's size (a prime; 65537 by default, 655373 for many backends).
    pub fn maglev_size(mut self, m: usize) -> Self {
        self.maglev_size = m;
        self
    }

    fn build_maglev(&mut self) -> Result<(), String> {
        let backends: Vec<MaglevBackend> = self
            .backends
            .iter()
            .enumerate()
            .map(|(i, b)| MaglevBackend {
                name: b.to_string(),
                weight: self
                    .status
                    .get(i)
                    .map_or(1, |s| if s.accepting() { s.weight } else { 0 }),
            })
            .collect();
        self.maglev =
            Some(MaglevTable::build(&backends, self.maglev_size).map_err(|e| e.to_string())?);
        Ok(())
    }

    /// Replaces the backend set without stopping traffic: established flows keep their backend (the
    /// flow table), new flows are balanced over the new set (the Maglev table is rebuilt).
    pub fn set_backends(
        &mut self,
        backends: Vec<SocketAddr>,
        weights: Vec<u32>,
    ) -> Result<(), String> {
        if backends.is_empty() {
            return Err("at least one backend".into());
        }
        self.backends = backends;
        self.rr = 0;
        self.recount();
        let old = std::mem::take(&mut self.status);
        self.status = self.fresh_status(&weights);
        for s in &mut self.status {
            if let Some(o) = old.iter().find(|o| o.backend == s.backend) {
                (s.state, s.healthy, s.deadline) = (o.state, o.healthy, o.deadline);
            }
        }
        for i in 0..self.status.len() {
            self.report(i);
        }
        self.rebuild_choice()
    }

    /// Every backend up and healthy, with `weights` (1 where none is given).
    fn fresh_status(&self, weights: &[u32]) -> Vec<BackendStatus> {
        self.backends
            .iter()
            .enumerate()
            .map(|(i, &backend)| BackendStatus {
                backend,
                state: BackendState::Up,
                weight: weights.get(i).copied().unwrap_or(1),
                healthy: true,
                deadline: None,
            })
            .collect()
    }

    /// After a change of states, health or weights: the eligible backends and their running sums,
    /// and Maglev's table (rebuilt over them; a table of no backend is none, and new flows are
    /// dropped, counted in `no_backend`).
    fn rebuild_choice(&mut self) -> Result<(), String> {
        let mut sum = 0u64;
        self.eligible = self
            .status
            .iter()
            .enumerate()
            .filter(|(_, s)| s.accepting())
            .map(|(i, s)| {
                sum += u64::from(s.weight);
                (i, sum)
            })
            .collect();
        if self.policy == Policy::Maglev {
            if self.eligible.is_empty() {
                self.maglev = None;
            } else {
                self.build_maglev()?;
            }
        }
        Ok(())
    }

    /// Tells the replication (if any) of backend `i`'s status.
    fn report(&mut self, i: usize) {
        if let (Some(tx), Some(s)) = (&self.status_tx, self.status.get(i))
            && tx.try_send(*s).is_err()
        {
            self.counts.status_dropped += 1;
        }
    }

    /// Every backend's state, weight and health, in the order of the backends.
    pub fn backend_status(&self) -> &[BackendStatus] {
        &self.status
    }

    /// The receiving end of the backends' status changes (for a primary's replication): every change
    /// made by a handler, a health check, a reload or a drain's deadline, and, at once, every
    /// backend's status as it is. One per balancer (`None` the second time); bounded (changes past
    /// 1,024 waiting are dropped, counted in `status_dropped`).
    pub fn status_watch(&mut self) -> Option<std::sync::mpsc::Receiver<BackendStatus>> {
        if self.status_tx.is_some() {
            return None;
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1024);
        self.status_tx = Some(tx);
        for i in 0..self.status.len() {
            self.report(i);
        }
        Some(rx)
    }

    /// Sets a backend's state (`deadline`: for a drain, how long its flows may stay), weight or
    /// health; the choice of new flows follows at once. Established flows keep their backend.
    pub fn set_backend(
        &mut self,
        backend: SocketAddr,
        state: Option<BackendState>,
        weight: Option<u32>,
        healthy: Option<bool>,
        deadline: Option<std::time::Duration>,
    ) -> Result<(), String> {
        let i = self
            .backends
            .iter()
            .position(|b| *b == backend)
            .ok_or_else(|| format!("{backend} is not a backend of this balancer"))?;
        let s = &mut self.status[i];
        if let Some(st) = state {
            s.state = st;
            s.deadline = match (st, deadline) {
                (BackendState::Drain, Some(d)) => {
                    Some(Timestamp::now().add_nanos(d.as_nanos() as u64))
                }
                _ => None,
            };
        }
        if let Some(w) = weight {
            s.weight = w;
        }
        if let Some(h) = healthy {
            s.healthy = h;
        }
        self.report(i);
        self.rebuild_choice()
    }

    /// Applies a status that came from the primary (a minion); a backend not in this balancer's set
    /// is skipped.
    fn apply_status(&mut self, st: BackendStatus) {
        if let Some(i) = self.backends.iter().position(|b| *b == st.backend) {
            self.status[i] = st;
            let _ = self.rebuild_choice();
        }
    }

    /// Draining backends whose deadline has passed: their flows are removed (reported, so a minion
    /// removes them too) and they are down.
    fn cut_drains(&mut self, wall: Timestamp, now: Timestamp) {
        for i in 0..self.status.len() {
            let s = self.status[i];
            if s.state != BackendState::Drain || s.deadline.is_none_or(|d| wall < d) {
                continue;
            }
            let b = Endpoint::from(s.backend);
            let mut keys = Vec::new();
            self.table.for_each(|k, e| {
                if e.backend == b {
                    keys.push(*k);
                }
            });
            for k in keys {
                if let Some(e) = self.table.find(k.hash(), &k) {
                    self.table.remove(e, RemoveReason::Deleted, now);
                    self.counts.drained += 1;
                }
            }
            self.status[i].state = BackendState::Down;
            self.status[i].deadline = None;
            self.recount();
            self.report(i);
            let _ = self.rebuild_choice();
        }
    }

    /// The census of the backend set, from the table (a control-plane walk, once per change).
    fn recount(&mut self) {
        let mut census = vec![0; self.backends.len()];
        let list = &self.backends;
        self.table.for_each(|_, e| {
            if let Some(i) = list.iter().position(|b| *b == e.backend) {
                census[i] += 1;
            }
        });
        self.census = census;
    }
    /// Table capacity (the oldest-expiring flow is evicted when full).
    pub fn capacity(mut self, n: usize) -> Self {
        self.capacity = n.max(1);
        self.table = StateTable::new(self.capacity, WhenFull::Evict);
        self
    }
    /// Idle timeout.
    pub fn idle(mut self, d: std::time::Duration) -> Self {
        self.idle_ns = d.as_nanos() as u64;
        self
    }
    /// How long a new flow is kept before the client's second packet establishes it (a flood's
    /// one-packet flows expire, and are evicted, before established ones).
    pub fn embryonic(mut self, d: std::time::Duration) -> Self {
        self.embryonic_ns = d.as_nanos() as u64;
        self
    }
    /// How long a closed flow stays.
    pub fn linger(mut self, d: std::time::Duration) -> Self {
        self.linger_ns = d.as_nanos() as u64;
        self
    }
    /// Drop (rather than balance) packets of unknown established flows.
    pub fn drop_unknown(mut self, d: bool) -> Self {
        self.drop_unknown = d;
        self
    }
    /// Accept any destination address on the VIP's port.
    pub fn loose_vip(mut self, l: bool) -> Self {
        self.loose_vip = l;
        self
    }
    /// Check that a reply comes from its flow's backend (the default); off, any reply to a known client
    /// is let through (for traces not captured behind this balancer).
    pub fn strict_replies(mut self, s: bool) -> Self {
        self.strict_replies = s;
        self
    }
    /// The random policy's seed.
    pub fn seed(mut self, s: u64) -> Self {
        self.rng = s | 1;
        self
    }
    /// The link layer of the packets.
    pub fn link(mut self, l: Link) -> Self {
        self.link = l;
        self
    }

    /// The install queue's bound (default [`INSTALL_QUEUE`](crate::state::INSTALL_QUEUE)).
    pub fn install_queue(mut self, n: usize) -> Self {
        self.install_queue = n.max(1);
        self
    }

    /// The sending end of the install queue, for a minion's follower (on any thread): mappings queued
    /// here are installed before the next batches (up to 4,096 before each) and at each timer tick. One per balancer
    /// (`None` the second time); the queue is made, and bounded, when it is asked for. A full queue means
    /// the balancer's thread is behind the follower: the follower waits for room
    /// (`nf_state::replicate::follow_with_backpressure`), and stays behind the stream, rather than drop a
    /// mapping or grow without bound.
    pub fn installer(&mut self) -> Option<Installer<LbInstall>> {
        if self.installs.is_some() {
            return None;
        }
        let (tx, rx) = Installer::bounded(self.install_queue);
        self.installs = Some(rx);
        Some(tx)
    }

    /// The backend of a client's flow, if the table holds it.
    pub fn backend_of(&self, k: &ClientKey) -> Option<SocketAddr> {
        self.table.lookup(k.hash(), k).map(|e| e.backend.into())
    }

    fn next_random(&mut self) -> u64 {
        crate::hash::xorshift64_star(&mut self.rng)
    }

    /// A backend for a new flow among the eligible ones (up, healthy, weight above 0): Maglev by the
    /// flow's hash, random in proportion to the weights, round robin in turn, least connections by
    /// flows per unit of weight. `None` if no backend takes new flows. Out of line: only a new flow
    /// calls it, and inlined it crowds the established flows' path (1.6 instructions a packet).
    #[inline(never)]
    fn choose(&mut self, flow_hash: u32) -> Option<usize> {
        let n = self.eligible.len();
        let Some(&(_, total)) = self.eligible.last() else {
            self.counts.no_backend += 1;
            return None;
        };
        Some(match self.policy {
            Policy::Maglev => {
                if self.maglev.is_none() && self.build_maglev().is_err() {
                    self.counts.no_backend += 1;
                    return None;
                }
                self.maglev.as_ref()?.lookup(flow_hash)
            }
            Policy::Random => {
                let r = ((self.next_random() >> 32) * total) >> 32;
                let k = self.eligible.partition_point(|&(_, sum)| sum <= r);
                self.eligible.get(k).map_or(self.eligible[n - 1].0, |e| e.0)
            }
            Policy::RoundRobin => {
                self.rr = (self.rr + 1) % n;
                self.eligible[self.rr].0
            }
            Policy::LeastConnections => {
                let w = |i: usize| u64::from(self.status[i].weight);
                let mut best = self.eligible[0].0;
                for &(i, _) in &self.eligible[1..] {
                    if u128::from(self.census[i]) * u128::from(w(best))
                        < u128::from(self.census[best]) * u128::from(w(i))
                    {
                        best = i;
                    }
                }
                best
            }
        })
    }

    /// The bucket of an installed flow (one that came without a packet): its client with the VIP.
    fn bucket_for(&self, k: &ClientKey) -> u16 {
        let key = FlowKey::new(k.proto, k.ip, k.port, self.vip.ip(), self.vip.port());
        bucket_of(key.rss_hash()) as u16
    }

    /// Installs up to `max` queued mappings (before a batch: a bounded delay for its packets; at a
    /// timer tick, when no traffic comes, a whole queue's worth).
    fn apply_installs(&mut self, now: Timestamp, max: usize) {
        if self.installs.is_none() {
            return;
        }
        let rx = self.installs.take();
        for _ in 0..max {
            let Some(Ok(i)) = rx.as_ref().map(|r| r.try_recv()) else {
                break;
            };
            let bucket = match &i {
                LbInstall::Set(k, _) => self.bucket_for(k),
                _ => 0,
            };
            let (census, backends) = (&mut self.census, &self.backends);
            match i {
                LbInstall::Set(k, backend) => {
                    let e = LbEntry {
                        backend: backend.into(),
                        closing: ESTABLISHED,
                        bucket,
                    };
                    let installed = self.table.install_with(
                        k.hash(),
                        k,
                        e,
                        now,
                        now.add_nanos(self.idle_ns),
                        |_, old| census_count(census, backends, old.backend, false),
                    );
                    if installed.is_some() {
                        census_count(census, backends, e.backend, true);
                    }
                    self.counts.installed += 1;
                }
                LbInstall::Remove(k) => {
                    let h = k.hash();
                    if let Some(old) = self.table.lookup(h, &k) {
                        census_count(census, backends, old.backend, false);
                    }
                    self.table.uninstall(h, &k);
                }
                LbInstall::Clear => {
                    self.table.clear();
                    census.iter_mut().for_each(|c| *c = 0);
                }
                LbInstall::Backend(st) => self.apply_status(st),
            }
        }
        self.installs = rx;
    }

    /// Expires idle flows from the sweep hand on (up to `max` slots), keeping the census.
    fn sweep(&mut self, now: Timestamp, max: usize) {
        let (census, backends) = (&mut self.census, &self.backends);
        self.table.sweep_with(now, max, |_, old| {
            census_count(census, backends, old.backend, false)
        });
    }

    /// Flows per backend in the table, in the order of the backends (kept as flows come and go).
    pub fn census(&self) -> &[u64] {
        &self.census
    }

    fn vip_matches(&self, ip: IpAddr, port: u16) -> bool {
        port == self.vip.port() && (self.loose_vip || ip == self.vip.ip())
    }

    /// The first pass over a packet: its headers, key and table hash (`port` 0: from a client, keyed by
    /// the source; 1: from a backend, keyed by the destination).
    #[inline]
    fn inspect(&self, p: &mut Packet, port: usize) -> Option<Seen> {
        let (h, key) = p.locate_key(self.link).ok()?;
        let key = key?;
        let flags = p.tcp_flags(&h).unwrap_or(0);
        Some(Seen {
            h,
            key,
            hash: key
                .endpoint_key(port == 0)
                .keyed_hash(self.table.hash_key()),
            flags,
        })
    }

    /// One packet from a client: true if it goes to output 0 (rewritten).
    fn forward(&mut self, p: &mut Packet, seen: Option<Seen>) -> bool {
        let Some(Seen {
            h,
            key,
            hash,
            flags,
        }) = seen
        else {
            self.counts.not_vip += 1;
            return false;
        };
        if !(key.proto() == 6 || key.proto() == 17) || !self.vip_matches(key.dst(), key.dst_port())
        {
            self.counts.not_vip += 1;
            return false;
        }
        let now = p.anno.timestamp;
        let ck = client_key(&key, 0);
        let backend = match self.table.find(hash, &ck) {
            Some(e) => {
                let (linger, idle) = (self.linger_ns, self.idle_ns);
                let Some(v) = self.table.value_mut(e) else {
                    return false;
                };
                let embryonic = self.embryonic_ns;
                // A new SYN on a closed flow (port reuse): a new connection, a new choice.
                let reuse = flags & SYN != 0 && flags & ACK == 0 && v.closing & 7 != 0;
                if !reuse {
                    if flags & FIN != 0 {
                        v.closing |= 1;
                    }
                    if flags & RST != 0 {
                        v.closing |= 4;
                    }
                    if flags & ACK != 0 || key.proto() != 6 {
                        v.closing |= ESTABLISHED;
                    }
                    let b = v.backend;
                    let exp = now.add_nanos(lifetime(v.closing, linger, embryonic, idle));
                    self.table.touch(e, exp);
                    Some(b)
                } else {
                    let old = v.backend;
                    census_count(&mut self.census, &self.backends, old, false);
                    self.table.remove(e, RemoveReason::Closed, now);
                    None
                }
            }
            None => None,
        };
        let backend = match backend {
            Some(b) => b,
            None => {
                let new = key.proto() == 17 || (flags & SYN != 0 && flags & ACK == 0);
                if !new {
                    self.counts.unknown += 1;
                    if self.drop_unknown {
                        return false;
                    }
                }
                let Some(i) = self.choose(key.keyed_hash(&self.agreed)) else {
                    return false;
                };
                let b = Endpoint::from(self.backends[i]);
                // A new flow, or an unknown one adopted (`UNKNOWN pick`): remembered from now on, on
                // probation (the short embryonic timeout, evicted first from a full table) until the
                // client's next packet: a TCP SYN's flow until the client's ACK, an adopted TCP flow or a
                // UDP flow until its second packet. A flood of spoofed one-packet tuples never gets past
                // probation, so it cannot push established flows out (Ananta's trusted/untrusted rule).
                let e = LbEntry {
                    backend: b,
                    closing: 0,
                    bucket: bucket_of(p.anno.flow_hash().unwrap_or_else(|| key.rss_hash())) as u16,
                };
                let (census, backends) = (&mut self.census, &self.backends);
                let placed = self.table.insert_with(
                    hash,
                    ck,
                    e,
                    now,
                    now.add_nanos(self.embryonic_ns),
                    |_, old| census_count(census, backends, old.backend, false),
                );
                if placed.is_some() {
                    census_count(census, backends, b, true);
                }
                if new {
                    self.counts.new_flows += 1;
                }
                b
            }
        };
        if p.set_dst_endpoint(&h, backend.into()).is_err() {
            return false;
        }
        self.counts.forwarded += 1;
        true
    }

    /// One packet from a backend: true if it goes to output 1 (source restored to the VIP).
    fn reply(&mut self, p: &mut Packet, seen: Option<Seen>) -> bool {
        let Some(Seen {
            h,
            key,
            hash,
            flags,
        }) = seen
        else {
            self.counts.not_vip += 1;
            return false;
        };
        let now = p.anno.timestamp;
        let ck = client_key(&key, 1);
        let Some(e) = self.table.find(hash, &ck) else {
            self.counts.unknown_replies += 1;
            return false;
        };
        let (linger, idle) = (self.linger_ns, self.idle_ns);
        let Some(v) = self.table.value_mut(e) else {
            return false;
        };
        if self.strict_replies
            && (v.backend.ip() != key.src() || v.backend.port() != key.src_port())
        {
            self.counts.unknown_replies += 1;
            return false;
        }
        if flags & FIN != 0 {
            v.closing |= 2;
        }
        if flags & RST != 0 {
            v.closing |= 4;
        }
        // A backend's answer does not complete a handshake: a half-open flow stays half-open (a SYN
        // flood's flows keep their short timeout even when the backends answer).
        let t = lifetime(v.closing, linger, self.embryonic_ns, idle);
        self.table.touch(e, now.add_nanos(t));
        if p.set_src_endpoint(&h, self.vip).is_err() {
            return false;
        }
        self.counts.replies += 1;
        true
    }
}

/// A bucket move takes the flows' backends along; the census of flows per backend follows them.
impl Migrate for LoadBalancer {
    fn export_buckets(&mut self, buckets: &BucketSet) -> Exported {
        let moved = self
            .table
            .export_where(|_, e| buckets.contains(usize::from(e.bucket)));
        for m in &moved {
            census_count(&mut self.census, &self.backends, m.value.backend, false);
        }
        Exported::new(moved)
    }
    fn import_buckets(&mut self, state: Exported) -> usize {
        let (census, backends) = (&mut self.census, &self.backends);
        let mut placed = Vec::new();
        let taken = self.table.import_with(
            state.take::<Moved<ClientKey, LbEntry>>(),
            Timestamp(0),
            |_, old| census_count(census, backends, old.backend, false),
            |v| placed.push(v.backend),
        );
        for b in placed {
            census_count(census, backends, b, true);
        }
        taken
    }
}

impl Stateful for LoadBalancer {
    type Key = ClientKey;
    type Value = LbEntry;
    fn table(&self) -> &StateTable<ClientKey, LbEntry> {
        &self.table
    }
    fn table_mut(&mut self) -> &mut StateTable<ClientKey, LbEntry> {
        &mut self.table
    }
}

const HANDLERS: &[HandlerSpec] = &[
    HandlerSpec::gauge("flows", "flows in the table"),
    HandlerSpec::read("new_flows", "flows assigned a backend"),
    HandlerSpec::read("forwarded", "packets sent to backends"),
    HandlerSpec::read("replies", "packets sent back to clients"),
    HandlerSpec::read(
        "unknown",
        "packets of established flows the table did not know",
    ),
    HandlerSpec::read(
        "unknown_replies",
        "backend packets of flows the table did not know",
    ),
    HandlerSpec::read(
        "not_vip",
        "packets not for the VIP (or not TCP/UDP over IP)",
    ),
    HandlerSpec::read("installed", "mappings installed by a minion's follower"),
    HandlerSpec::read("closed", "flows removed after closing"),
    HandlerSpec::read("expired", "flows removed when idle"),
    HandlerSpec::read("evicted", "flows evicted when the table was full"),
    HandlerSpec::read(
        "probe_limited",
        "new flows whose probe window was full (keys aimed at one place if it grows)",
    ),
    HandlerSpec::read("no_backend", "new flows dropped: no backend took new flows"),
    HandlerSpec::read(
        "drained",
        "flows removed when their draining backend's deadline passed",
    ),
    HandlerSpec::read(
        "status_dropped",
        "backend status changes not replicated (the queue was full)",
    ),
    HandlerSpec::gauge_map("backends", "flows per backend in the table"),
    HandlerSpec::gauge_map("weights", "each backend's weight"),
    HandlerSpec::gauge_map(
        "accepting",
        "1 if the backend takes new flows (up, healthy, weight above 0), else 0",
    ),
    HandlerSpec::text(
        "states",
        "each backend: state (up, drain, down), weight, health, flows, drain deadline",
    ),
    HandlerSpec::write(
        "set_backends",
        "a new backend set (IP:PORT[*WEIGHT] ...): established flows stay, new ones use it",
    ),
    HandlerSpec::write(
        "drain",
        "IP:PORT [SECONDS]: no new flows; its flows stay until they close (or SECONDS pass)",
    ),
    HandlerSpec::write("down", "IP:PORT: no new flows; its flows stay"),
    HandlerSpec::write(
        "up",
        "IP:PORT: takes new flows again (ends a drain or a down)",
    ),
    HandlerSpec::write("weight", "IP:PORT WEIGHT: its share of new flows (0: none)"),
    HandlerSpec::write(
        "health",
        "IP:PORT up|down: what a health check found (down: no new flows)",
    ),
];

impl Element for LoadBalancer {
    fn migrate(&mut self) -> Option<&mut dyn Migrate> {
        Some(self)
    }
    fn class_name(&self) -> &'static str {
        Self::NAME
    }
    fn ports(&self) -> PortSpec {
        PortSpec::new(PortCount::exactly(2), PortCount::range(2, 3), "h/h")
    }
    fn initialize(&mut self, ctx: &InitContext<'_>) -> Result<(), String> {
        if self.backends.is_empty() {
            return Err("LoadBalancer needs at least one backend".into());
        }
        self.rebuild_choice()?;
        self.has_other_output = ctx.noutputs > 2;
        if ctx.shards > 1 {
            self.table = StateTable::new(self.capacity.div_ceil(ctx.shards), WhenFull::Evict);
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
        let other = if self.has_other_output { 2 } else { usize::MAX };
        let to = if port == 0 { 0 } else { 1 };
        // Pass 1: every packet's key and hash, and a prefetch of its table slot, so that the batch's
        // cache misses overlap. Pass 2: the table and the rewrites.
        let mut seen = std::mem::take(&mut self.scratch);
        seen.clear();
        for p in batch.iter_mut() {
            seen.push(self.inspect(p, port));
        }
        for s in seen.iter().flatten() {
            self.table.prefetch(s.hash);
        }
        let mut k = 0;
        batch.classify_to(out, |p| {
            let s = seen.get(k).copied().flatten();
            k += 1;
            let ok = if port == 0 {
                self.forward(p, s)
            } else {
                self.reply(p, s)
            };
            if ok {
                Some(to)
            } else if other != usize::MAX {
                Some(other)
            } else {
                None
            }
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
        if self.status.iter().any(|s| s.deadline.is_some()) {
            self.cut_drains(wall, now);
        }
        if seen.is_some() {
            // Bounded work per tick (4,096 slots from the sweep hand), whatever the table holds; the
            // census is kept as flows come and go, so nothing here walks the table.
            self.sweep(now, 4096);
        }
    }
    /// A new configuration's balancer takes the old one's flows (every flow keeps its backend, also
    /// a backend the new set no longer has: it drains as its flows close), its counters, its install
    /// queue (a minion keeps following), its table's sink (a primary keeps replicating) and its
    /// backends' states. Maglev's table is the one the new graph built (off the router's thread),
    /// rebuilt here only if a backend kept from the old graph takes no new flows.
    fn take_state(&mut self, old: &mut dyn Element) {
        let Some(old) = old.as_any_mut().downcast_mut::<LoadBalancer>() else {
            return;
        };
        self.table.take_over(&mut old.table);
        self.counts = old.counts;
        self.clock = old.clock;
        self.rng = old.rng;
        if self.installs.is_none() {
            self.installs = old.installs.take();
        }
        // An operator's drains and downs, and the health checks' verdicts, outlive a reload; the
        // weights are the new configuration's.
        for s in &mut self.status {
            if let Some(o) = old.status.iter().find(|o| o.backend == s.backend) {
                (s.state, s.healthy, s.deadline) = (o.state, o.healthy, o.deadline);
            }
        }
        self.status_tx = old.status_tx.take();
        let changed = self.status.iter().any(|s| !s.accepting());
        if self.policy == old.policy
            && self.backends == old.backends
            && self
                .status
                .iter()
                .map(|s| s.weight)
                .eq(old.status.iter().map(|s| s.weight))
            && self.maglev_size == old.maglev_size
            && self.agreed == old.agreed
        {
            self.rr = old.rr;
        }
        // The census follows the backends by address (no walk of the table on the router's thread),
        // unless a backend is new here: flows of it may be in the table (a backend removed and added
        // back), and only a walk counts them.
        let carried: Option<Vec<u64>> = self
            .backends
            .iter()
            .map(|b| {
                let j = old.backends.iter().position(|o| o == b)?;
                old.census.get(j).copied()
            })
            .collect();
        match carried {
            Some(c) => self.census = c,
            None => self.recount(),
        }
        // Maglev's table, built with the new graph (off the router's thread), is rebuilt here only if
        // a backend kept from the old graph takes no new flows.
        if changed {
            let _ = self.rebuild_choice();
        }
        for i in 0..self.status.len() {
            self.report(i);
        }
    }
    fn handlers(&self) -> &'static [HandlerSpec] {
        HANDLERS
    }
    fn read_handler(&self, name: &str) -> Option<String> {
        let s = self.table.stats();
        let c = self.counts;
        Some(match name {
            "flows" => self.table.len().to_string(),
            "new_flows" => c.new_flows.to_string(),
            "forwarded" => c.forwarded.to_string(),
            "replies" => c.replies.to_string(),
            "unknown" => c.unknown.to_string(),
            "unknown_replies" => c.unknown_replies.to_string(),
            "not_vip" => c.not_vip.to_string(),
            "installed" => c.installed.to_string(),
            "closed" => s.closed.to_string(),
            "expired" => s.expired.to_string(),
            "evicted" => s.evicted.to_string(),
            "probe_limited" => s.probe_limited.to_string(),
            "no_backend" => c.no_backend.to_string(),
            "drained" => c.drained.to_string(),
            "status_dropped" => c.status_dropped.to_string(),
            "weights" => self
                .status
                .iter()
                .map(|b| format!("{}={}", b.backend, b.weight))
                .collect::<Vec<_>>()
                .join(" "),
            "accepting" => self
                .status
                .iter()
                .map(|b| format!("{}={}", b.backend, u8::from(b.accepting())))
                .collect::<Vec<_>>()
                .join(" "),
            "states" => {
                let now = Timestamp::now();
                self.status
                    .iter()
                    .zip(&self.census)
                    .map(|(b, n)| {
                        let mut l = format!(
                            "{} {} weight {} {} flows {n}",
                            b.backend,
                            b.state.name(),
                            b.weight,
                            if b.healthy { "healthy" } else { "unhealthy" }
                        );
                        if let Some(d) = b.deadline {
                            l.push_str(&format!(
                                " deadline {:.1}s",
                                d.0.saturating_sub(now.0) as f64 / 1e9
                            ));
                        }
                        l.push('\n');
                        l
                    })
                    .collect()
            }
            "backends" => self
                .backends
                .iter()
                .zip(&self.census)
                .map(|(b, n)| format!("{b}={n}"))
                .collect::<Vec<_>>()
                .join(" "),
            _ => return None,
        })
    }
    fn write_handler(&mut self, name: &str, value: &str) -> Result<(), String> {
        match name {
            "set_backends" => {
                let (b, w) = parse_backends(value)?;
                self.set_backends(b, w)
            }
            "drain" | "down" | "up" | "weight" | "health" => {
                let mut words = value.split_whitespace();
                let addr = parse_addr(words.next().ok_or("IP:PORT needed")?)?;
                let arg = words.next();
                if words.next().is_some() {
                    return Err(format!("`{value}`: too many words"));
                }
                let (mut state, mut weight, mut healthy, mut deadline) = (None, None, None, None);
                match (name, arg) {
                    ("drain", a) => {
                        state = Some(BackendState::Drain);
                        deadline = a
                            .map(|a| {
                                a.parse::<f64>()
                                    .ok()
                                    .and_then(|s| std::time::Duration::try_from_secs_f64(s).ok())
                                    .ok_or_else(|| format!("`{a}` is not a number of seconds"))
                            })
                            .transpose()?;
                    }
                    ("down", None) => state = Some(BackendState::Down),
                    ("up", None) => state = Some(BackendState::Up),
                    ("weight", Some(w)) => {
                        weight = Some(
                            w.parse::<u32>()
                                .map_err(|_| format!("`{w}`: the weight must be a whole number"))?,
                        )
                    }
                    ("health", Some("up")) => healthy = Some(true),
                    ("health", Some("down")) => healthy = Some(false),
                    _ => return Err(format!("`{name} {value}`: see the handler's documentation")),
                }
                self.set_backend(addr, state, weight, healthy, deadline)
            }
            _ => Err(format!("no write handler `{name}`")),
        }
    }
}

/// `IP:PORT[*WEIGHT]` items separated by spaces.
fn parse_backends(s: &str) -> Result<(Vec<SocketAddr>, Vec<u32>), String> {
    let mut b = Vec::new();
    let mut w = Vec::new();
    for item in s.split_whitespace() {
        let (addr, weight) = match item.split_once('*') {
            Some((a, wt)) => (
                a,
                wt.parse::<u32>()
                    .map_err(|_| format!("`{item}`: the weight must be a number"))?,
            ),
            None => (item, 1),
        };
        b.push(parse_addr(addr)?);
        w.push(weight);
    }
    if b.is_empty() {
        return Err("at least one IP:PORT".into());
    }
    Ok((b, w))
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>()
        .map_err(|_| format!("`{s}` is not an IP:PORT"))
}

impl ElementClass for LoadBalancer {
    const NAME: &'static str = "LoadBalancer";
    const DOC: &'static str = "stateful L4 load balancer: VIP -> backends, both directions rewritten (reports to a StateSink)";
    fn configure(a: &mut Args) -> Result<Self, ConfigError> {
        let vip: String = a.read_mp("VIP")?;
        let vip = parse_addr(&vip).map_err(|e| a.error(format!("VIP: {e}")))?;
        let backends: String = a.read_mp("BACKENDS")?;
        let (backends, weights) =
            parse_backends(&backends).map_err(|e| a.error(format!("BACKENDS: {e}")))?;
        let maglev_size: usize = a.read_at_most_or(
            "MAGLEV_SIZE",
            super::maglev::DEFAULT_SIZE,
            super::maglev::MAX_SIZE,
        )?;
        a.reserve("MAGLEV_SIZE", maglev_size as u64 * 4)?;
        let policy: String = a.read_or("POLICY", "random".to_string())?;
        let policy = match policy.as_str() {
            "random" => Policy::Random,
            "roundrobin" | "rr" => Policy::RoundRobin,
            "leastconn" => Policy::LeastConnections,
            "maglev" => Policy::Maglev,
            o => {
                return Err(a.error(format!(
                    "POLICY must be random, roundrobin, leastconn or maglev, not `{o}`"
                )));
            }
        };
        let cap: usize = a.read_at_most_or("CAPACITY", 65536, crate::state::MAX_TABLE_CAPACITY)?;
        let idle: u64 = a.read_or("IDLE", 300)?;
        let linger: u64 = a.read_or("LINGER", 10)?;
        let embryonic: u64 = a.read_or("HALF_OPEN", 5)?;
        let unknown: String = a.read_or("UNKNOWN", "pick".to_string())?;
        let drop_unknown = match unknown.as_str() {
            "pick" => false,
            "drop" => true,
            o => return Err(a.error(format!("UNKNOWN must be pick or drop, not `{o}`"))),
        };
        let loose: bool = a.read_or("LOOSE_VIP", false)?;
        let strict: bool = a.read_or("STRICT_REPLIES", true)?;
        let seed: Option<u64> = a.read("SEED")?;
        let hash_key: Option<String> = a.read("HASH_KEY")?;
        let hash_key = hash_key
            .map(|k| crate::hash::HashKey::parse(&k))
            .transpose()
            .map_err(|e| a.error(format!("HASH_KEY: {e}")))?;
        let link: String = a.read_or("LINK", "ether".to_string())?;
        let link = match link.as_str() {
            "ether" | "ethernet" => Link::Ethernet,
            "ip" => Link::Ip,
            o => return Err(a.error(format!("LINK must be ether or ip, not `{o}`"))),
        };
        let mut lb = LoadBalancer::new(vip, backends)
            .policy(policy)
            .weights(weights)
            .maglev_size(maglev_size)
            .capacity(cap)
            .idle(std::time::Duration::from_secs(idle))
            .linger(std::time::Duration::from_secs(linger))
            .embryonic(std::time::Duration::from_secs(embryonic))
            .drop_unknown(drop_unknown)
            .loose_vip(loose)
            .strict_replies(strict)
            .link(link);
        if let Some(s) = seed {
            lb = lb.seed(s);
        }
        if let Some(k) = hash_key {
            lb = lb.hash_key(k);
        }
        Ok(lb)
    }
}
