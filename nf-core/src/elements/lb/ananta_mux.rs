//! `AnantaMux`: Ananta's Mux (SIGCOMM'13): VIP map, consistent hashing, a flow table with trusted and
//! untrusted flows, IP-in-IP towards the backend's host. Its partner on the backends' hosts is
//! [`HostAgent`](super::HostAgent).

use super::maglev::{MaglevBackend, MaglevTable};
use crate::args::Args;
use crate::batch::{Batch, Outputs};
use crate::element::ElementClass;
use crate::element::{Element, HandlerSpec, InitContext, PortCount, PortSpec};
use crate::error::ConfigError;
use crate::flow::FlowKey;
use crate::indirection::{BucketSet, Exported, Migrate};
use crate::packet::{Link, Packet};
use crate::state::{Moved, StateTable, Stateful, WhenFull};
use crate::wire::{Ipv4Packet, Ipv4Repr, ip_proto};
use std::net::{Ipv4Addr, SocketAddr};

/// A flow's backend in a Mux's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MuxEntry {
    /// The backend (its host's address is the outer destination).
    pub backend: Ipv4Addr,
}

/// The Mux of Ananta: packets to a VIP are sent, encapsulated in IP-in-IP (outer source: this Mux,
/// outer destination: the backend; the inner packet untouched), to the backend that Maglev hashing of
/// the five-tuple chooses, the same on every Mux with the same backends. A flow table keeps established
/// flows on their backend when the backend set changes: a flow's first packet enters the *untrusted*
/// table (short idle timeout, small quota), its second promotes it to the *trusted* one (long timeout);
/// when the untrusted quota is spent (a SYN flood), new flows are forwarded by the hash alone without
/// state, so the flood cannot push trusted flows out.
///
/// # Ports
/// One push input (Ethernet frames to the VIP); one or two push outputs (0: encapsulated; 1, if
/// connected: not for the VIP, else dropped and counted).
///
/// # Arguments
/// `VIP` (IP:PORT), `BACKENDS` (space-separated IPv4 addresses of the backends' hosts), `SELF` (this Mux's
/// address, the outer source), `TRUSTED` (capacity, default 65536), `UNTRUSTED` (capacity, default 4096),
/// `TRUSTED_IDLE` (seconds, 300), `UNTRUSTED_IDLE` (seconds, 2), `LOOSE_VIP` (any address on the port),
/// `HASH_KEY` (32 hex digits: the key of Maglev's flow hash, shared by the Muxes of a pool; default the
/// process's [`agreed`](crate::hash::agreed) key). The flow tables are placed by the process's own secret
/// key whatever `HASH_KEY` is.
///
/// # Handlers
/// `encapsulated`, `trusted`, `untrusted`, `promoted`, `stateless` (forwarded by hash, quota spent),
/// `not_vip` (read); `set_backends` (write: new backends; established flows stay).
///
/// # Example
/// ```
/// // Generated TCP traffic goes to 192.168.0.1:80 (with replies, which are not for the VIP).
/// let r = nf_core::testing::run_config("
///     InfiniteSource(LIMIT 20, FLOWS 4, PROTO tcp, STOP true)
///       -> m :: AnantaMux(VIP 192.168.0.1:80, SELF 10.9.9.9, BACKENDS 10.2.0.1 10.2.0.2)
///       -> c :: Classifier(23/04, -) -> ipip :: Counter -> Discard; c[1] -> Discard;").unwrap();
/// let sent = r.read_handler("m", "encapsulated").unwrap();
/// assert_ne!(sent, "0");
/// assert_eq!(r.read_handler("ipip", "count").unwrap(), sent); // IP-in-IP, protocol 4
/// ```
pub struct AnantaMux {
    vip: SocketAddr,
    me: Ipv4Addr,
    backends: Vec<Ipv4Addr>,
    maglev: Option<MaglevTable>,
    /// The key of Maglev's flow hash (agreed between Muxes).
    agreed: crate::hash::HashKey,
    trusted: StateTable<FlowKey, MuxEntry>,
    untrusted: StateTable<FlowKey, MuxEntry>,
    trusted_idle: u64,
    untrusted_idle: u64,
    loose_vip: bool,
    has_other: bool,
    counts: MuxCounts,
    /// Pass 1's findings per packet of a batch: the IP header's offset, the key and its hash.
    scratch: Vec<Option<(usize, FlowKey, u32)>>,
}

/// What an `AnantaMux` did, one field per counting handler (the table sizes are the tables').
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MuxCounts {
    /// Packets encapsulated to a backend.
    pub encapsulated: u64,
    /// Flows promoted from the untrusted to the trusted table.
    pub promoted: u64,
    /// Packets forwarded by the hash alone, without state (the untrusted quota spent).
    pub stateless: u64,
    /// Packets not for the VIP.
    pub not_vip: u64,
}

impl std::fmt::Debug for AnantaMux {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnantaMux")
            .field("vip", &self.vip)
            .field("backends", &self.backends)
            .finish()
    }
}

fn build_maglev(backends: &[Ipv4Addr]) -> Result<MaglevTable, String> {
    let b: Vec<MaglevBackend> = backends
        .iter()
        .map(|a| MaglevBackend {
            name: a.to_string(),
            weight: 1,
        })
        .collect();
    MaglevTable::build(&b, super::maglev::DEFAULT_SIZE).map_err(|e| e.to_string())
}

impl AnantaMux {
    /// A Mux at `me` for `vip`, over `backends`.
    pub fn new(vip: SocketAddr, me: Ipv4Addr, backends: Vec<Ipv4Addr>) -> Self {
        AnantaMux {
            vip,
            me,
            backends,
            maglev: None,
            agreed: crate::hash::agreed().clone(),
            trusted: StateTable::new(65536, WhenFull::Evict),
            untrusted: StateTable::new(4096, WhenFull::Reject),
            trusted_idle: 300_000_000_000,
            untrusted_idle: 2_000_000_000,
            loose_vip: false,
            has_other: false,
            counts: MuxCounts::default(),
            scratch: Vec::new(),
        }
    }
    /// Table capacities (trusted, untrusted).
    pub fn capacities(mut self, trusted: usize, untrusted: usize) -> Self {
        self.trusted = StateTable::new(trusted.max(1), WhenFull::Evict);
        self.untrusted = StateTable::new(untrusted.max(1), WhenFull::Reject);
        self
    }
    /// Idle timeouts (trusted, untrusted).
    pub fn idle(mut self, trusted: std::time::Duration, untrusted: std::time::Duration) -> Self {
        self.trusted_idle = trusted.as_nanos() as u64;
        self.untrusted_idle = untrusted.as_nanos() as u64;
        self
    }
    /// Accept any address on the VIP's port.
    pub fn loose_vip(mut self, l: bool) -> Self {
        self.loose_vip = l;
        self
    }
    /// The key of Maglev's flow hash: Muxes of one pool share it, so that each sends a flow to the same
    /// backend.
    pub fn hash_key(mut self, k: crate::hash::HashKey) -> Self {
        self.agreed = k;
        self
    }
    /// New backends: the hash is rebuilt; flows in the tables keep theirs.
    pub fn set_backends(&mut self, backends: Vec<Ipv4Addr>) -> Result<(), String> {
        self.maglev = Some(build_maglev(&backends)?);
        self.backends = backends;
        Ok(())
    }
    /// The trusted table's backend of a flow, if any.
    pub fn trusted_backend(&self, k: &FlowKey) -> Option<Ipv4Addr> {
        self.trusted.lookup(k.table_hash(), k).map(|e| e.backend)
    }

    /// A packet's IP header offset, key and hash, if it is for the VIP.
    #[inline]
    fn inspect(&self, p: &mut Packet) -> Option<(usize, FlowKey, u32)> {
        let (h, key) = p.locate_key(Link::Ethernet).ok()?;
        let key = key?;
        if key.dst_port() != self.vip.port() || !(self.loose_vip || key.dst() == self.vip.ip()) {
            return None;
        }
        Some((h.l3, key, key.keyed_hash(self.trusted.hash_key())))
    }

    fn route(&mut self, p: &mut Packet, seen: Option<(usize, FlowKey, u32)>) -> bool {
        let Some((l3, key, hash)) = seen else {
            self.counts.not_vip += 1;
            return false;
        };
        let now = p.anno.timestamp;
        let idle = now.add_nanos(self.trusted_idle);
        let backend = if let Some((_, b)) = self.trusted.update(hash, &key, |v| (idle, v.backend)) {
            Some(b)
        } else if let Some(e) = self.untrusted.find(hash, &key) {
            // A second packet: the flow is trusted now.
            let b = self.untrusted.get(e).map(|(_, v)| v.backend);
            if let Some(b) = b {
                self.untrusted
                    .remove(e, crate::state::RemoveReason::Closed, now);
                self.trusted.insert(
                    hash,
                    key,
                    MuxEntry { backend: b },
                    now,
                    now.add_nanos(self.trusted_idle),
                );
                self.counts.promoted += 1;
            }
            b
        } else {
            None
        };
        let backend = match backend {
            Some(b) => b,
            None => {
                if self.maglev.is_none() {
                    match build_maglev(&self.backends) {
                        Ok(t) => self.maglev = Some(t),
                        Err(_) => return false,
                    }
                }
                let Some(t) = self.maglev.as_ref() else {
                    return false;
                };
                let b = self.backends[t.lookup(key.keyed_hash(&self.agreed))];
                let e = MuxEntry { backend: b };
                if self
                    .untrusted
                    .insert(hash, key, e, now, now.add_nanos(self.untrusted_idle))
                    .is_none()
                {
                    self.counts.stateless += 1; // quota spent: by hash, without state
                }
                b
            }
        };
        encapsulate(p, l3, self.me, backend);
        self.counts.encapsulated += 1;
        true
    }
}

/// IP-in-IP: a new outer IPv4 header (protocol 4) between the Ethernet header and the packet.
#[inline]
fn encapsulate(p: &mut Packet, l3: usize, src: Ipv4Addr, dst: Ipv4Addr) {
    let off = l3 - p.data_offset();
    let inner_len = p.len() - off;
    let tos = p.data().get(off + 1).copied().unwrap_or(0);
    let outer = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        protocol: ip_proto::IPIP,
        payload_len: inner_len,
        ttl: 64,
        tos,
        ident: 0,
        dont_frag: true,
    };
    if off == 14 {
        // An untagged Ethernet header: fixed-size moves (no call to `memmove`).
        p.push(20);
        if let Some(d) = p.data_mut().get_mut(..34) {
            let eth: [u8; 14] = [
                d[20], d[21], d[22], d[23], d[24], d[25], d[26], d[27], d[28], d[29], d[30], d[31],
                d[32], d[33],
            ];
            d[..14].copy_from_slice(&eth);
            outer.emit(&mut Ipv4Packet::new_unchecked(&mut d[14..34]));
        }
    } else {
        let mut eth = [0u8; 18];
        let n = off.min(18);
        eth[..n].copy_from_slice(&p.data()[..n]);
        let front = p.push(20);
        front[..n].copy_from_slice(&eth[..n]);
        outer.emit(&mut Ipv4Packet::new_unchecked(&mut p.data_mut()[n..n + 20]));
    }
    p.anno.set_l3_offset(None);
    p.anno.set_l4_offset(None);
}

impl Stateful for AnantaMux {
    type Key = FlowKey;
    type Value = MuxEntry;
    fn table(&self) -> &StateTable<FlowKey, MuxEntry> {
        &self.trusted
    }
    fn table_mut(&mut self) -> &mut StateTable<FlowKey, MuxEntry> {
        &mut self.trusted
    }
}

const MUX_HANDLERS: &[HandlerSpec] = &[
    HandlerSpec::read("encapsulated", "packets sent to a backend"),
    HandlerSpec::gauge("trusted", "flows in the trusted table"),
    HandlerSpec::gauge("untrusted", "flows in the untrusted table"),
    HandlerSpec::read("promoted", "flows promoted to trusted"),
    HandlerSpec::read(
        "stateless",
        "new flows forwarded by hash, the untrusted quota spent",
    ),
    HandlerSpec::read("not_vip", "packets not for the VIP"),
    HandlerSpec::write(
        "set_backends",
        "new backends (space-separated IPv4 addresses)",
    ),
];

fn parse_v4_list(s: &str) -> Result<Vec<Ipv4Addr>, String> {
    let v: Vec<Ipv4Addr> = s
        .split_whitespace()
        .map(|x| {
            x.parse()
                .map_err(|_| format!("`{x}` is not an IPv4 address"))
        })
        .collect::<Result<_, _>>()?;
    if v.is_empty() {
        return Err("at least one backend".into());
    }
    Ok(v)
}

/// Both tables' entries follow their bucket: a trusted flow stays trusted on its new shard.
impl Migrate for AnantaMux {
    fn export_buckets(&mut self, buckets: &BucketSet) -> Exported {
        let pick = |k: &FlowKey, _: &MuxEntry| buckets.holds_hash(k.rss_hash());
        let trusted = self.trusted.export_where(pick);
        let untrusted = self.untrusted.export_where(pick);
        Exported::with(trusted.len() + untrusted.len(), (trusted, untrusted))
    }
    fn import_buckets(&mut self, state: Exported) -> usize {
        type Tables = (Vec<Moved<FlowKey, MuxEntry>>, Vec<Moved<FlowKey, MuxEntry>>);
        let Some((trusted, untrusted)) = state.take_as::<Tables>() else {
            return 0;
        };
        self.trusted.import(trusted, crate::packet::Timestamp(0))
            + self
                .untrusted
                .import(untrusted, crate::packet::Timestamp(0))
    }
}

impl Element for AnantaMux {
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
        self.has_other = ctx.noutputs > 1;
        self.maglev = Some(build_maglev(&self.backends)?);
        Ok(())
    }
    fn push(&mut self, _port: usize, batch: &mut Batch, out: &mut Outputs) {
        if let Some(last) = batch.as_slice().last() {
            let now = last.anno.timestamp;
            self.trusted.sweep(now, 8);
            self.untrusted.sweep(now, 8);
        }
        let other = self.has_other;
        // Pass 1: keys, hashes and a prefetch of each flow's trusted slot (the misses overlap); pass 2:
        // the tables and the encapsulation.
        let mut seen = std::mem::take(&mut self.scratch);
        seen.clear();
        for p in batch.iter_mut() {
            seen.push(self.inspect(p));
        }
        for (_, _, hash) in seen.iter().flatten() {
            self.trusted.prefetch(*hash);
        }
        let mut k = 0;
        batch.classify_to(out, |p| {
            let s = seen.get(k).copied().flatten();
            k += 1;
            if self.route(p, s) {
                Some(0)
            } else if other {
                Some(1)
            } else {
                None
            }
        });
        self.scratch = seen;
    }
    fn handlers(&self) -> &'static [HandlerSpec] {
        MUX_HANDLERS
    }
    fn read_handler(&self, name: &str) -> Option<String> {
        Some(match name {
            "encapsulated" => self.counts.encapsulated.to_string(),
            "trusted" => self.trusted.len().to_string(),
            "untrusted" => self.untrusted.len().to_string(),
            "promoted" => self.counts.promoted.to_string(),
            "stateless" => self.counts.stateless.to_string(),
            "not_vip" => self.counts.not_vip.to_string(),
            _ => return None,
        })
    }
    fn write_handler(&mut self, name: &str, value: &str) -> Result<(), String> {
        match name {
            "set_backends" => self.set_backends(parse_v4_list(value)?),
            _ => Err(format!("no write handler `{name}`")),
        }
    }
}

/// Reads an `IP:PORT` argument value (`what` names it in the error).
pub(super) fn addr(
    a: &crate::args::Args,
    s: &str,
    what: &str,
) -> Result<SocketAddr, crate::error::ConfigError> {
    s.parse()
        .map_err(|_| a.error(format!("{what}: `{s}` is not an IP:PORT")))
}

impl ElementClass for AnantaMux {
    const NAME: &'static str = "AnantaMux";
    const DOC: &'static str = "Ananta's Mux: Maglev hashing, trusted/untrusted flow tables, IP-in-IP to the backend's host";
    fn configure(a: &mut Args) -> Result<Self, ConfigError> {
        let vip: String = a.read_mp("VIP")?;
        let vip = addr(a, &vip, "VIP")?;
        let me: Ipv4Addr = a.read_mp("SELF")?;
        let b: String = a.read_mp("BACKENDS")?;
        let backends = parse_v4_list(&b).map_err(|e| a.error(format!("BACKENDS: {e}")))?;
        let tc: usize = a.read_at_most_or("TRUSTED", 65536, crate::state::MAX_TABLE_CAPACITY)?;
        let uc: usize = a.read_at_most_or("UNTRUSTED", 4096, crate::state::MAX_TABLE_CAPACITY)?;
        let ti: u64 = a.read_or("TRUSTED_IDLE", 300)?;
        let ui: u64 = a.read_or("UNTRUSTED_IDLE", 2)?;
        let loose: bool = a.read_or("LOOSE_VIP", false)?;
        let hash_key: Option<String> = a.read("HASH_KEY")?;
        let hash_key = hash_key
            .map(|k| crate::hash::HashKey::parse(&k))
            .transpose()
            .map_err(|e| a.error(format!("HASH_KEY: {e}")))?;
        let mux = AnantaMux::new(vip, me, backends);
        let mux = match hash_key {
            Some(k) => mux.hash_key(k),
            None => mux,
        };
        Ok(mux
            .capacities(tc, uc)
            .idle(
                std::time::Duration::from_secs(ti),
                std::time::Duration::from_secs(ui),
            )
            .loose_vip(loose))
    }
}
