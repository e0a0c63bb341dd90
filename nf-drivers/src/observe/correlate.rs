//! The correlator: packets seen on the two sides of a black box in, inferred mappings out.
//!
//! A NAT or a load balancer rewrites addresses and ports but leaves the transport's own fields alone: TCP
//! sequence and acknowledgement numbers, flags, options (timestamps included) and payload; the IP ID of
//! a forwarded packet; UDP payload. A packet's *fingerprint* is a hash of those invariants, so the same
//! packet seen outside and inside has the same fingerprint whatever the box rewrote. Until a flow is
//! matched, each of its packets is indexed by fingerprint on its side and looked up on the other side; a
//! hit is evidence that the two flows are one connection, weighted by how distinctive it is (a SYN's
//! random 32-bit ISN counts most; IP ID and TCP options that agree add to it; a fingerprint shared by
//! several flows counts for less). Evidence accumulates over packets (`1 - Π(1 - c)`); a pair is linked
//! when it passes the threshold and no rival pair comes close (else it is *ambiguous* and held). The first
//! packets after a link keep being checked: evidence for a different partner that overtakes corrects the
//! mapping.
//!
//! From a linked pair and the orientation of the packet that linked it: a changed server side is a DNAT
//! (`flow-mapping`: client -> backend), a changed client side a SNAT (`nat-binding`: five-tuple ->
//! translated source); a box that does both yields both. Flows end with the connection (RST, or FIN both
//! ways, then a linger like conntrack's TIME_WAIT) or when idle; their mappings are then deleted. Memory
//! is bounded: flow and fingerprint tables have a capacity, the oldest unmatched entries are evicted
//! (counted) when a flood fills them.

use nf_core::FlowKey;
use nf_core::hash::{StableHasher, mix64, splitmix64};
use nf_core::packet::{IpVersion, ethernet_payload_offset, locate_ip};
use nf_core::wire::{Ipv4Packet, Ipv6Packet, TcpSegment, ip_proto, tcp_flags};
use nf_state::schemas::{FlowMappingKey, FlowMappingValue, NatBindingKey, NatBindingValue, Proto};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};

/// Which tap a packet was seen on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The client side of the box.
    Outside,
    /// The server side of the box.
    Inside,
}

impl Side {
    fn other(self) -> Side {
        match self {
            Side::Outside => Side::Inside,
            Side::Inside => Side::Outside,
        }
    }
    fn ix(self) -> usize {
        match self {
            Side::Outside => 0,
            Side::Inside => 1,
        }
    }
}

/// Settings of a [`Correlator`].
#[derive(Debug, Clone)]
pub struct ObserveConfig {
    /// The balancer's virtual address (outside flows to it are the ones of interest; it tells the server
    /// end of a flow whose SYN was not seen).
    pub vip: Option<SocketAddr>,
    /// Longest time between the two sightings of one packet (clock skew of the taps plus the box's delay).
    pub window_ns: u64,
    /// Confidence a pair needs to be linked and emitted.
    pub threshold: f64,
    /// Most flows tracked per side.
    pub max_flows: usize,
    /// Most fingerprints indexed per side.
    pub max_pending: usize,
    /// A flow idle this long is forgotten (its mapping deleted).
    pub idle_timeout_ns: u64,
    /// A closed connection's mapping is kept this long (conntrack's TIME_WAIT is 120 s).
    pub close_linger_ns: u64,
    /// Packets of a linked flow still checked against the other side (to confirm or correct).
    pub confirm_packets: u8,
    /// What a packet is recognised by on the other side.
    pub fingerprint: Fingerprint,
    /// Also emit an [`Inference::Link`] for every pair linked.
    pub emit_links: bool,
}

/// What the correlator recognises a packet by on the other side of the box.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Fingerprint {
    /// The fields a NAT or a load balancer leaves alone: TCP sequence numbers, flags, options, the first
    /// bytes of payload, the IP ID (the observation driver).
    #[default]
    Invariants,
    /// Content-defined chunks of the first bytes of each direction's payload stream, so that a box that
    /// terminates TCP (a proxy: new sequence numbers, other segment boundaries) or shifts the payload
    /// (a header added) is still recognised: SIMPLE's `FlowCorrelator`.
    Payload(ChunkConfig),
}

/// Content-defined chunking: a Gear rolling hash cuts the byte stream where its low bits are zero, so a
/// boundary depends only on the bytes just before it and the chunks after an insertion are the same chunks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChunkConfig {
    /// Mean chunk length, a power of two (64).
    pub average: u32,
    /// Shortest chunk (24): shorter pieces are not fingerprinted.
    pub min: u32,
    /// Longest chunk (256).
    pub max: u32,
    /// Bytes fingerprinted per direction of a flow (4096): its first packets.
    pub bytes: u32,
    /// Evidence one shared chunk gives (0.6: three chunks link a pair at the default threshold).
    pub strength: f64,
}

impl Default for ChunkConfig {
    fn default() -> Self {
        ChunkConfig {
            average: 64,
            min: 24,
            max: 256,
            bytes: 4096,
            strength: 0.6,
        }
    }
}

/// The Gear table: one random 64-bit value per byte value.
const GEAR: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut seed = 0x5eed_0000 + i as u64;
        t[i] = splitmix64(&mut seed);
        i += 1;
    }
    t
};

/// One direction of a flow's payload stream, being chunked.
#[derive(Debug, Clone, Copy, Default)]
struct Chunker {
    rolling: u64,
    hash: StableHasher,
    len: u32,
    done: u32,
    next_seq: Option<u32>,
}

impl Chunker {
    /// Feeds `payload` (at TCP sequence `seq`, if TCP); pushes the hashes of the chunks it completes.
    fn feed(&mut self, cfg: &ChunkConfig, seq: Option<u32>, payload: &[u8], out: &mut Vec<u64>) {
        if self.done >= cfg.bytes || payload.is_empty() {
            return;
        }
        if let (Some(seq), Some(next)) = (seq, self.next_seq)
            && seq != next
        {
            // Data seen already (a retransmission) is skipped; after a gap the chunk in progress is
            // abandoned.
            if seq.wrapping_sub(next) as i32 <= 0 {
                return;
            }
            self.len = 0;
            self.hash = StableHasher::new();
        }
        if self.len == 0 {
            self.hash = StableHasher::new();
        }
        self.next_seq = seq.map(|s| s.wrapping_add(payload.len() as u32));
        let mask = u64::from(cfg.average.max(2).next_power_of_two() - 1);
        let take = payload.len().min((cfg.bytes - self.done) as usize);
        for &b in &payload[..take] {
            self.rolling = (self.rolling << 1).wrapping_add(GEAR[usize::from(b)]);
            self.hash.write_u8(b);
            self.len += 1;
            if (self.len >= cfg.min && self.rolling & mask == 0) || self.len >= cfg.max {
                out.push(mix64(self.hash.finish() ^ u64::from(self.len)));
                self.len = 0;
                self.hash = StableHasher::new();
            }
        }
        self.done += take as u32;
    }
}

impl Default for ObserveConfig {
    fn default() -> Self {
        ObserveConfig {
            vip: None,
            window_ns: 2_000_000_000,
            threshold: 0.9,
            max_flows: 1 << 18,
            max_pending: 1 << 18,
            idle_timeout_ns: 600_000_000_000,
            close_linger_ns: 120_000_000_000,
            confirm_packets: 4,
            fingerprint: Fingerprint::Invariants,
            emit_links: false,
        }
    }
}

/// Counters of a [`Correlator`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ObserveStats {
    /// Packets seen outside.
    pub packets_outside: u64,
    /// Packets seen inside.
    pub packets_inside: u64,
    /// Packets that are not TCP/UDP over IP, or malformed (counted, ignored).
    pub ignored: u64,
    /// Flows seen outside.
    pub flows_outside: u64,
    /// Flows seen inside.
    pub flows_inside: u64,
    /// Pairs linked.
    pub matched: u64,
    /// Pairs held because a rival pair was as likely.
    pub ambiguous: u64,
    /// Flows that ended (or were evicted) without a partner.
    pub unmatched: u64,
    /// Links replaced by a better partner.
    pub corrected: u64,
    /// Unmatched flows evicted to stay within `max_flows` (a flood).
    pub evicted: u64,
    /// Fingerprints evicted to stay within `max_pending`.
    pub pending_evicted: u64,
    /// Mappings emitted (upserts).
    pub emitted: u64,
    /// Mappings deleted (connection closed, or idle).
    pub deleted: u64,
}

/// What the correlator infers (more kinds may come: match with a wildcard arm).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Inference {
    /// A DNAT balancer's choice (`value: None`: the flow ended).
    FlowMapping {
        /// The client.
        key: FlowMappingKey,
        /// The backend.
        value: Option<FlowMappingValue>,
        /// Confidence of the link.
        confidence: f64,
    },
    /// Two flows linked as one connection through the box (only with [`ObserveConfig::emit_links`]).
    Link {
        /// The flow outside (canonical key).
        outside: FlowKey,
        /// The flow inside (canonical key).
        inside: FlowKey,
        /// Confidence of the link.
        confidence: f64,
    },
    /// A NAPT box's binding (`value: None`: the flow ended).
    NatBinding {
        /// The original five-tuple.
        key: NatBindingKey,
        /// The translated source.
        value: Option<NatBindingValue>,
        /// Confidence of the link.
        confidence: f64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ep {
    ip: IpAddr,
    port: u16,
}

/// The mapping a linked pair implies: (outside client, outside server, inside client, inside server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mapping {
    proto: u8,
    oc: Ep,
    os: Ep,
    ic: Ep,
    is: Ep,
}

#[derive(Debug, Clone)]
struct Flow {
    side: Side,
    key: FlowKey,
    epoch: u32,
    live: bool,
    /// True if the key's `src` is the client; `None`: not known yet.
    src_is_client: Option<bool>,
    first_ns: u64,
    last_ns: u64,
    /// FIN seen from the key's src (bit 0) and dst (bit 1).
    fins: u8,
    closed_ns: Option<u64>,
    /// The SYN's sequence number (a new SYN with another ISN on a closed flow is a new connection).
    isn: Option<u32>,
    partner: Option<(u32, u32)>,
    confidence: f64,
    mapping: Option<Mapping>,
    /// Evidence for candidate partners: (index, generation, accumulated confidence).
    evidence: [(u32, u32, f64); 4],
    /// Packets checked after the link.
    checked: u8,
    ambiguous_counted: bool,
    /// Payload chunking of each direction (key src -> dst, dst -> src), in payload mode.
    chunks: [Chunker; 2],
}

#[derive(Debug, Clone, Copy)]
struct FpEntry {
    flow: u32,
    epoch: u32,
    ts: u64,
    ip_id: u16,
    opt_hash: u32,
    /// Sightings of this fingerprint by distinct flows of this side.
    flows: u8,
    src: Ep,
    dst: Ep,
    strength: f64,
}

/// What a packet carries that the box does not change.
#[derive(Clone, Copy)]
struct Parsed {
    key: FlowKey,
    fp: u64,
    ip_id: u16,
    opt_hash: u32,
    syn: bool,
    ack: bool,
    fin: bool,
    rst: bool,
    seq: u32,
    strength: f64,
    /// Where the transport payload is in the frame.
    payload: (usize, usize),
}

/// The correlator (one thread; feed it both taps' packets in time order).
#[derive(Debug)]
pub struct Correlator {
    cfg: ObserveConfig,
    flows: Vec<Flow>,
    free: Vec<u32>,
    by_key: [HashMap<FlowKey, u32>; 2],
    order: [VecDeque<(u32, u32)>; 2],
    fps: [HashMap<u64, FpEntry>; 2],
    fp_order: [VecDeque<(u64, u64)>; 2],
    stats: ObserveStats,
    last_expire: u64,
    latencies: Vec<u64>,
    /// Fingerprints of the packet being processed (payload mode: one per chunk).
    scratch: Vec<u64>,
}

fn parse(frame: &[u8], ethernet: bool) -> Option<Parsed> {
    let l3 = if ethernet {
        ethernet_payload_offset(frame).ok()?
    } else {
        0
    };
    let h = locate_ip(frame, l3).ok()?;
    let l4 = h.l4?;
    let key = FlowKey::from_headers(frame, &h)?;
    let (ip_id, end) = match h.version {
        IpVersion::V4 => {
            let ip = Ipv4Packet::new_checked(frame.get(l3..)?).ok()?;
            (
                ip.ident(),
                (l3 + usize::from(ip.total_len())).min(frame.len()),
            )
        }
        IpVersion::V6 => {
            let ip = Ipv6Packet::new_checked(frame.get(l3..)?).ok()?;
            (0, (l3 + ip.total_len()).min(frame.len()))
        }
    };
    let mut fp = StableHasher::new();
    match h.proto {
        ip_proto::TCP => {
            let t = TcpSegment::new_unchecked(frame.get(l4..l4 + 20)?);
            let doff = t.header_len();
            let flags = t.flags();
            let (syn, ack, fin, rst) = (t.syn(), t.ack(), t.fin(), t.rst());
            let seq = t.seq_number();
            let opts = frame.get(l4 + 20..(l4 + doff).min(end)).unwrap_or(&[]);
            let pstart = (l4 + doff).min(end);
            let payload = frame.get(pstart..end).unwrap_or(&[]);
            fp.write(&[6]);
            fp.write(&t.as_slice()[4..12]); // seq, ack
            fp.write(
                &[flags & (tcp_flags::SYN | tcp_flags::ACK | tcp_flags::FIN | tcp_flags::RST)],
            );
            fp.write(&(payload.len() as u32).to_be_bytes());
            fp.write(&payload[..payload.len().min(32)]);
            let mut oh = StableHasher::new();
            oh.write(opts);
            let strength = if syn {
                0.75
            } else if !payload.is_empty() {
                0.65
            } else {
                0.45
            };
            Some(Parsed {
                key,
                fp: fp.finish(),
                ip_id,
                opt_hash: if opts.is_empty() {
                    0
                } else {
                    oh.finish() as u32 | 1
                },
                syn,
                ack,
                fin,
                rst,
                seq,
                strength,
                payload: (pstart, end.max(pstart)),
            })
        }
        ip_proto::UDP => {
            let pstart = (l4 + 8).min(end);
            let payload = frame.get(pstart..end).unwrap_or(&[]);
            fp.write(&[17]);
            fp.write(&ip_id.to_be_bytes());
            fp.write(&(payload.len() as u32).to_be_bytes());
            fp.write(&payload[..payload.len().min(64)]);
            let strength = if payload.len() >= 8 { 0.5 } else { 0.25 };
            Some(Parsed {
                key,
                fp: fp.finish(),
                ip_id,
                opt_hash: 0,
                syn: false,
                ack: false,
                fin: false,
                rst: false,
                seq: 0,
                strength,
                payload: (pstart, end.max(pstart)),
            })
        }
        _ => None,
    }
}

fn combine(a: f64, c: f64) -> f64 {
    1.0 - (1.0 - a) * (1.0 - c)
}

impl Correlator {
    /// A correlator with settings `cfg`.
    pub fn new(cfg: ObserveConfig) -> Correlator {
        Correlator {
            cfg,
            flows: Vec::new(),
            free: Vec::new(),
            by_key: [HashMap::new(), HashMap::new()],
            order: [VecDeque::new(), VecDeque::new()],
            fps: [HashMap::new(), HashMap::new()],
            fp_order: [VecDeque::new(), VecDeque::new()],
            stats: ObserveStats::default(),
            last_expire: 0,
            latencies: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> ObserveStats {
        self.stats
    }

    /// Flows tracked now (both sides).
    pub fn flows(&self) -> usize {
        self.by_key[0].len() + self.by_key[1].len()
    }

    /// Takes the link latencies recorded since the last call: for each link, the packet time from the
    /// inside flow's first packet to the packet that linked it, in nanoseconds.
    pub fn take_latencies(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.latencies)
    }

    /// One Ethernet frame (or raw IP packet when `ethernet` is false) seen on `side` at `ts_ns`.
    pub fn packet(
        &mut self,
        side: Side,
        ts_ns: u64,
        frame: &[u8],
        ethernet: bool,
        out: &mut Vec<Inference>,
    ) {
        match side {
            Side::Outside => self.stats.packets_outside += 1,
            Side::Inside => self.stats.packets_inside += 1,
        }
        if ts_ns >= self.last_expire + 100_000_000 {
            self.expire(ts_ns, out);
        }
        let Some(p) = parse(frame, ethernet) else {
            self.stats.ignored += 1;
            return;
        };
        let (canon, reversed) = p.key.canonical();
        // `reversed`: the packet goes from the canonical key's dst to its src.
        if let Some(vip) = self.cfg.vip
            && side == Side::Outside
            && !((p.key.dst() == vip.ip() && p.key.dst_port() == vip.port())
                || (p.key.src() == vip.ip() && p.key.src_port() == vip.port()))
        {
            self.stats.ignored += 1;
            return;
        }
        let fi = self.flow_for(side, canon, &p, ts_ns, out);
        let f = &mut self.flows[fi as usize];
        f.last_ns = ts_ns;
        if p.syn && f.src_is_client.is_none() {
            // A SYN comes from the client; a SYN-ACK goes to it.
            f.src_is_client = Some(reversed == p.ack);
        }
        if p.fin {
            f.fins |= if reversed { 2 } else { 1 };
        }
        if (p.rst || f.fins == 3) && f.closed_ns.is_none() {
            f.closed_ns = Some(ts_ns);
        }
        let linked = f.partner.is_some();
        if linked {
            if f.checked >= self.cfg.confirm_packets {
                return;
            }
            f.checked += 1;
        }
        let src = Ep {
            ip: p.key.src(),
            port: p.key.src_port(),
        };
        let dst = Ep {
            ip: p.key.dst(),
            port: p.key.dst_port(),
        };
        let mut fps = std::mem::take(&mut self.scratch);
        fps.clear();
        let mut strength = p.strength;
        let mut base = p;
        match self.cfg.fingerprint {
            Fingerprint::Invariants => fps.push(p.fp),
            Fingerprint::Payload(cc) => {
                let payload = frame.get(p.payload.0..p.payload.1).unwrap_or(&[]);
                let seq = (p.key.proto() == 6).then_some(p.seq);
                let dir = usize::from(reversed);
                self.flows[fi as usize].chunks[dir].feed(&cc, seq, payload, &mut fps);
                strength = cc.strength;
                // A box that re-sends the payload picks its own IP IDs and options: no bonus for them.
                base.ip_id = 0;
                base.opt_hash = 0;
            }
        }
        for &fp in &fps {
            self.match_fp(side, fi, &base, fp, strength, ts_ns, (src, dst), out);
        }
        self.scratch = fps;
    }

    /// Looks fingerprint `fp` of a packet of flow `fi` up on the other side (evidence on a hit), or offers
    /// it to the other side.
    #[allow(clippy::too_many_arguments)]
    fn match_fp(
        &mut self,
        side: Side,
        fi: u32,
        p: &Parsed,
        fp: u64,
        strength: f64,
        ts_ns: u64,
        (src, dst): (Ep, Ep),
        out: &mut Vec<Inference>,
    ) {
        let p = Parsed { fp, strength, ..*p };
        let other = side.other();
        let hit = self.fps[other.ix()].get(&p.fp).copied();
        match hit {
            Some(e)
                if ts_ns.abs_diff(e.ts) <= self.cfg.window_ns
                    && self.flows[e.flow as usize].live
                    && self.flows[e.flow as usize].epoch == e.epoch =>
            {
                let mut c = p.strength.max(e.strength);
                if e.ip_id != 0 && e.ip_id == p.ip_id {
                    c += 0.15;
                }
                if e.opt_hash != 0 && e.opt_hash == p.opt_hash {
                    c += 0.1;
                }
                if e.src.port == src.port || e.dst.port == dst.port {
                    c += 0.05;
                }
                if e.flows > 1 {
                    c /= f64::from(e.flows);
                }
                let c = c.min(0.99);
                self.evidence(fi, e.flow, c, (src, dst), (e.src, e.dst), side, ts_ns, out);
            }
            // Unlinked flows, and linked ones during their confirmation packets, offer the packet to
            // the other side.
            _ => self.index(side, &p, fi, ts_ns, src, dst),
        }
    }

    fn flow_for(
        &mut self,
        side: Side,
        canon: FlowKey,
        p: &Parsed,
        ts_ns: u64,
        out: &mut Vec<Inference>,
    ) -> u32 {
        if let Some(&i) = self.by_key[side.ix()].get(&canon) {
            let f = &self.flows[i as usize];
            // Port reuse: a new SYN (another ISN) on a closed or long-idle flow starts a new connection.
            let new_conn = p.syn
                && !p.ack
                && f.isn.is_some_and(|isn| isn != p.seq)
                && (f.closed_ns.is_some() || ts_ns.saturating_sub(f.last_ns) > self.cfg.window_ns);
            if !new_conn {
                if p.syn && !p.ack && f.isn.is_none() {
                    self.flows[i as usize].isn = Some(p.seq);
                }
                return i;
            }
            self.remove(i, out);
        }
        if self.by_key[side.ix()].len() >= self.cfg.max_flows {
            self.evict_one(side, out);
        }
        let epoch = self.flows.len() as u32;
        let f = Flow {
            side,
            key: canon,
            epoch: 0,
            live: true,
            src_is_client: None,
            first_ns: ts_ns,
            last_ns: ts_ns,
            fins: 0,
            closed_ns: None,
            isn: (p.syn && !p.ack).then_some(p.seq),
            partner: None,
            confidence: 0.0,
            mapping: None,
            evidence: [(u32::MAX, 0, 0.0); 4],
            checked: 0,
            ambiguous_counted: false,
            chunks: [Chunker::default(); 2],
        };
        let i = match self.free.pop() {
            Some(i) => {
                let g = self.flows[i as usize].epoch.wrapping_add(1);
                self.flows[i as usize] = Flow { epoch: g, ..f };
                i
            }
            None => {
                self.flows.push(Flow { epoch, ..f });
                (self.flows.len() - 1) as u32
            }
        };
        let g = self.flows[i as usize].epoch;
        self.by_key[side.ix()].insert(canon, i);
        self.order[side.ix()].push_back((i, g));
        match side {
            Side::Outside => self.stats.flows_outside += 1,
            Side::Inside => self.stats.flows_inside += 1,
        }
        i
    }

    fn index(&mut self, side: Side, p: &Parsed, fi: u32, ts: u64, src: Ep, dst: Ep) {
        let epoch = self.flows[fi as usize].epoch;
        let map = &mut self.fps[side.ix()];
        if let Some(e) = map.get_mut(&p.fp) {
            let same = e.flow == fi && e.epoch == epoch;
            if !same && ts.abs_diff(e.ts) <= self.cfg.window_ns {
                // Another flow of this side with the same invariants (a collision, or an attack).
                e.flows = e.flows.saturating_add(1);
            } else if !same {
                *e = FpEntry {
                    flow: fi,
                    epoch,
                    ts,
                    ip_id: p.ip_id,
                    opt_hash: p.opt_hash,
                    flows: 1,
                    src,
                    dst,
                    strength: p.strength,
                };
            }
            return;
        }
        if map.len() >= self.cfg.max_pending
            && let Some((_, old)) = self.fp_order[side.ix()].pop_front()
        {
            map.remove(&old);
            self.stats.pending_evicted += 1;
        }
        map.insert(
            p.fp,
            FpEntry {
                flow: fi,
                epoch,
                ts,
                ip_id: p.ip_id,
                opt_hash: p.opt_hash,
                flows: 1,
                src,
                dst,
                strength: p.strength,
            },
        );
        self.fp_order[side.ix()].push_back((ts, p.fp));
    }

    #[allow(clippy::too_many_arguments)]
    fn evidence(
        &mut self,
        fi: u32,
        gi: u32,
        c: f64,
        mine: (Ep, Ep),
        theirs: (Ep, Ep),
        side: Side,
        ts: u64,
        out: &mut Vec<Inference>,
    ) {
        let (fg, gg) = (self.flows[fi as usize].epoch, self.flows[gi as usize].epoch);
        let a = add_evidence(&mut self.flows[fi as usize].evidence, gi, gg, c);
        add_evidence(&mut self.flows[gi as usize].evidence, fi, fg, c);
        if a < self.cfg.threshold {
            return;
        }
        let current = self.flows[fi as usize].partner;
        if current == Some((gi, gg)) {
            let f = &mut self.flows[fi as usize];
            f.confidence = f.confidence.max(a);
            return;
        }
        // Rivals: another candidate of either flow that is nearly as likely.
        let rival = |f: &Flow, not: u32| {
            f.evidence
                .iter()
                .filter(|(i, _, _)| *i != not && *i != u32::MAX)
                .map(|e| e.2)
                .fold(0.0, f64::max)
        };
        let r = rival(&self.flows[fi as usize], gi).max(rival(&self.flows[gi as usize], fi));
        // Compared as weights of evidence (log-odds of being wrong): the pair must be at least four
        // times less likely to be wrong than its best rival.
        let weight = |x: f64| -(1.0 - x).max(1e-12).ln();
        if r >= self.cfg.threshold - 0.05 && weight(a) - weight(r) < 4f64.ln() {
            let f = &mut self.flows[fi as usize];
            if !f.ambiguous_counted {
                f.ambiguous_counted = true;
                self.stats.ambiguous += 1;
            }
            return;
        }
        // A link that replaces another: only if the new evidence beats the old link's.
        if let Some((old, og)) = current {
            let old_conf = self.flows[fi as usize].confidence;
            if a <= old_conf {
                return;
            }
            self.unlink(fi, old, og, out);
            self.stats.corrected += 1;
        }
        if let Some((old, og)) = self.flows[gi as usize].partner {
            if a <= self.flows[gi as usize].confidence {
                return;
            }
            self.unlink(gi, old, og, out);
            self.stats.corrected += 1;
        }
        // Orientation: which end of the linking packet is the client.
        let (o_idx, i_idx, o_pkt, i_pkt) = match side {
            Side::Outside => (fi, gi, mine, theirs),
            Side::Inside => (gi, fi, theirs, mine),
        };
        let o_flow = &self.flows[o_idx as usize];
        let i_flow = &self.flows[i_idx as usize];
        let pkt_src_is_client = self.client_is_src(o_flow, o_pkt.0, o_pkt.1).or_else(|| {
            // The inside flow may know (its SYN was seen).
            self.client_is_src(i_flow, i_pkt.0, i_pkt.1)
        });
        let src_is_client = pkt_src_is_client.unwrap_or(o_pkt.0.port >= o_pkt.1.port);
        let (oc, os, ic, is) = if src_is_client {
            (o_pkt.0, o_pkt.1, i_pkt.0, i_pkt.1)
        } else {
            (o_pkt.1, o_pkt.0, i_pkt.1, i_pkt.0)
        };
        let m = Mapping {
            proto: o_flow.key.proto(),
            oc,
            os,
            ic,
            is,
        };
        let inside_first = i_flow.first_ns;
        for (x, y) in [(o_idx, i_idx), (i_idx, o_idx)] {
            let yg = self.flows[y as usize].epoch;
            let f = &mut self.flows[x as usize];
            f.partner = Some((y, yg));
            f.confidence = a;
            f.mapping = Some(m);
            f.checked = 0;
        }
        self.stats.matched += 1;
        if self.latencies.len() < 1 << 20 {
            self.latencies.push(ts.saturating_sub(inside_first));
        }
        emit(&m, Some(a), out, &mut self.stats);
        if self.cfg.emit_links {
            out.push(Inference::Link {
                outside: self.flows[o_idx as usize].key,
                inside: self.flows[i_idx as usize].key,
                confidence: a,
            });
        }
    }

    fn client_is_src(&self, f: &Flow, src: Ep, _dst: Ep) -> Option<bool> {
        let key_src_is_client = f.src_is_client.or_else(|| {
            let vip = self.cfg.vip?;
            if f.side != Side::Outside {
                return None;
            }
            Some(!(f.key.src() == vip.ip() && f.key.src_port() == vip.port()))
        })?;
        let pkt_src_is_key_src = f.key.src() == src.ip && f.key.src_port() == src.port;
        Some(key_src_is_client == pkt_src_is_key_src)
    }

    fn unlink(&mut self, fi: u32, other: u32, og: u32, out: &mut Vec<Inference>) {
        if let Some(m) = self.flows[fi as usize].mapping.take() {
            emit(&m, None, out, &mut self.stats);
        }
        let f = &mut self.flows[fi as usize];
        f.partner = None;
        f.confidence = 0.0;
        let o = &mut self.flows[other as usize];
        if o.epoch == og && o.partner.is_some_and(|(p, _)| p == fi) {
            o.partner = None;
            o.mapping = None;
            o.confidence = 0.0;
        }
    }

    fn remove(&mut self, i: u32, out: &mut Vec<Inference>) {
        let f = &self.flows[i as usize];
        if !f.live {
            return;
        }
        let side = f.side;
        let key = f.key;
        match f.partner {
            Some((o, og)) => {
                if let Some(m) = f.mapping {
                    emit(&m, None, out, &mut self.stats);
                }
                let partner_live =
                    self.flows[o as usize].live && self.flows[o as usize].epoch == og;
                self.free_flow(i);
                if partner_live {
                    let o_side = self.flows[o as usize].side;
                    let o_key = self.flows[o as usize].key;
                    self.by_key[o_side.ix()].remove(&o_key);
                    self.free_flow(o);
                }
            }
            None => {
                self.stats.unmatched += 1;
                self.free_flow(i);
            }
        }
        self.by_key[side.ix()].remove(&key);
    }

    fn free_flow(&mut self, i: u32) {
        let f = &mut self.flows[i as usize];
        if f.live {
            f.live = false;
            f.partner = None;
            f.mapping = None;
            self.free.push(i);
        }
    }

    fn evict_one(&mut self, side: Side, out: &mut Vec<Inference>) {
        // The oldest flow of this side that is still tracked; unmatched ones first (a flood's SYNs).
        let mut fallback = None;
        let mut scanned = 0;
        while let Some((i, g)) = self.order[side.ix()].pop_front() {
            let f = &self.flows[i as usize];
            if !f.live || f.epoch != g {
                continue;
            }
            if f.partner.is_none() {
                self.stats.evicted += 1;
                self.remove(i, out);
                if let Some((fi, fg)) = fallback {
                    self.order[side.ix()].push_front((fi, fg));
                }
                return;
            }
            if fallback.is_none() {
                fallback = Some((i, g));
            } else {
                self.order[side.ix()].push_back((i, g));
            }
            scanned += 1;
            if scanned > 64 {
                break;
            }
        }
        if let Some((i, _)) = fallback {
            self.stats.evicted += 1;
            self.remove(i, out);
        }
    }

    /// Forgets fingerprints older than the window, closed flows past their linger and idle flows
    /// (packet time `now_ns`). Called by [`packet`](Self::packet) every 100 ms of packet time.
    pub fn expire(&mut self, now_ns: u64, out: &mut Vec<Inference>) {
        self.last_expire = now_ns;
        for s in 0..2 {
            while let Some(&(ts, fp)) = self.fp_order[s].front() {
                if now_ns.saturating_sub(ts) <= self.cfg.window_ns {
                    break;
                }
                self.fp_order[s].pop_front();
                if self.fps[s].get(&fp).is_some_and(|e| e.ts == ts) {
                    self.fps[s].remove(&fp);
                }
            }
        }
        let mut dead = Vec::new();
        for s in 0..2 {
            for &i in self.by_key[s].values() {
                let f = &self.flows[i as usize];
                let closed = f
                    .closed_ns
                    .is_some_and(|c| now_ns.saturating_sub(c) > self.cfg.close_linger_ns);
                let idle = now_ns.saturating_sub(f.last_ns) > self.cfg.idle_timeout_ns;
                // A closed partner closes the pair (the close may be seen on one tap only).
                if closed || idle {
                    dead.push(i);
                }
            }
        }
        for i in dead {
            if self.flows[i as usize].live {
                self.remove(i, out);
            }
        }
    }

    /// At the end of the input: flows never matched are counted as unmatched (mappings are kept).
    pub fn finish(&mut self) {
        for s in 0..2 {
            for &i in self.by_key[s].values() {
                if self.flows[i as usize].partner.is_none() {
                    self.stats.unmatched += 1;
                }
            }
        }
    }
}

fn add_evidence(ev: &mut [(u32, u32, f64); 4], i: u32, g: u32, c: f64) -> f64 {
    if let Some(e) = ev.iter_mut().find(|e| e.0 == i && e.1 == g) {
        e.2 = combine(e.2, c);
        return e.2;
    }
    // A new candidate takes an empty slot, or replaces the weakest.
    let slot = ev.iter().position(|e| e.0 == u32::MAX).unwrap_or_else(|| {
        let mut w = 0;
        for k in 1..ev.len() {
            if ev[k].2 < ev[w].2 {
                w = k;
            }
        }
        w
    });
    ev[slot] = (i, g, c);
    c
}

fn proto_of(n: u8) -> Proto {
    Proto::from_number(n)
}

fn emit(m: &Mapping, conf: Option<f64>, out: &mut Vec<Inference>, stats: &mut ObserveStats) {
    let confidence = conf.unwrap_or(0.0);
    let mut any = false;
    if m.os != m.is {
        any = true;
        out.push(Inference::FlowMapping {
            key: FlowMappingKey {
                proto: proto_of(m.proto),
                client_ip: m.oc.ip,
                client_port: m.oc.port,
            },
            value: conf.map(|_| FlowMappingValue {
                backend_ip: m.is.ip,
                backend_port: m.is.port,
            }),
            confidence,
        });
    }
    if m.oc != m.ic {
        any = true;
        out.push(Inference::NatBinding {
            key: NatBindingKey {
                proto: proto_of(m.proto),
                client_ip: m.oc.ip,
                client_port: m.oc.port,
                server_ip: m.os.ip,
                server_port: m.os.port,
            },
            value: conf.map(|_| NatBindingValue {
                nat_ip: m.ic.ip,
                nat_port: m.ic.port,
            }),
            confidence,
        });
    }
    if any {
        if conf.is_some() {
            stats.emitted += 1;
        } else {
            stats.deleted += 1;
        }
    }
}
