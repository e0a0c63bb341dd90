//! APLOMB (Sherry et al., SIGCOMM'12): the enterprise gateway that tunnels traffic to a cloud of
//! middleboxes. Tunnels in three formats, IP-in-IP (RFC 2003; IPv6 inside IPv4 as protocol 41), GRE
//! (RFC 2784) and VXLAN (RFC 7348), with the path MTU respected: a packet that would not fit once
//! encapsulated is fragmented before encapsulation if it may be (IPv4 without DF), answered with an ICMP
//! "fragmentation needed" carrying the tunnel's MTU if it may not (IPv4 with DF), and dropped (counted) if it
//! is IPv6; TCP SYNs have their MSS clamped so that connections never send such packets. Per-tunnel
//! compression (`Compress`/`Decompress`, LZ4 in the IPComp format of RFC 3173) and the choice of a point of
//! presence by measured latency (`PoPSelector`, in [`pop`](super::pop)) complete the gateway.

use crate::args::Args;
use crate::batch::{Batch, Outputs};
use crate::checksum;
use crate::element::{Element, HandlerSpec, InitContext, PortCount, PortSpec};
use crate::error::ConfigError;
use crate::packet::{IpVersion, Link, Packet, PacketError, ethernet_payload_offset};
use std::net::Ipv4Addr;

/// The IANA UDP port of VXLAN.
pub const VXLAN_PORT: u16 = 4789;

/// A tunnel format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TunnelMode {
    /// IP in IP (RFC 2003): protocol 4 (or 41 for IPv6 inside).
    IpIp,
    /// GRE (RFC 2784), no options: protocol 47, a 4-byte header with the inner EtherType.
    Gre,
    /// VXLAN (RFC 7348): UDP to port 4789, an 8-byte header with the VNI, the whole inner Ethernet frame.
    Vxlan {
        /// The VXLAN network identifier (24 bits).
        vni: u32,
    },
}

impl TunnelMode {
    /// Bytes the encapsulation adds to the inner IP packet (what the path MTU must also hold).
    pub const fn overhead(self) -> usize {
        match self {
            TunnelMode::IpIp => 20,
            TunnelMode::Gre => 24,
            TunnelMode::Vxlan { .. } => 50,
        }
    }
}

impl std::str::FromStr for TunnelMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ipip" => Ok(TunnelMode::IpIp),
            "gre" => Ok(TunnelMode::Gre),
            "vxlan" => Ok(TunnelMode::Vxlan { vni: 0 }),
            o => Err(format!("a tunnel is ipip, gre or vxlan, not `{o}`")),
        }
    }
}

/// One tunnel's endpoints and path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tunnel {
    /// The format.
    pub mode: TunnelMode,
    /// This end's address (the outer source).
    pub local: Ipv4Addr,
    /// The other end's address (the outer destination).
    pub remote: Ipv4Addr,
    /// The path MTU between the ends (outer IP packets are at most this long).
    pub mtu: u16,
    /// TTL of the outer header.
    pub ttl: u8,
}

impl Tunnel {
    /// A tunnel with a 1500-byte path MTU and TTL 64.
    pub fn new(mode: TunnelMode, local: Ipv4Addr, remote: Ipv4Addr) -> Tunnel {
        Tunnel {
            mode,
            local,
            remote,
            mtu: 1500,
            ttl: 64,
        }
    }

    /// The longest inner IP packet that fits.
    pub fn inner_mtu(&self) -> usize {
        usize::from(self.mtu).saturating_sub(self.mode.overhead())
    }
}

/// The length of the IP packet at `ip` (from its header), if it is one.
fn ip_len(ip: &[u8]) -> Option<usize> {
    match ip.first()? >> 4 {
        4 => Some(usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]))),
        6 => Some(40 + usize::from(u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?]))),
        _ => None,
    }
}

fn outer_ipv4(len: usize, proto: u8, tos: u8, t: &Tunnel, id: u16) -> [u8; 20] {
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[1] = tos;
    ip[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&id.to_be_bytes());
    ip[6] = 0x40; // DF: the encapsulator made sure it fits.
    ip[8] = t.ttl;
    ip[9] = proto;
    ip[12..16].copy_from_slice(&t.local.octets());
    ip[16..20].copy_from_slice(&t.remote.octets());
    let c = checksum::ipv4_header(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip
}

/// Encapsulates the IP packet at data offset `off` (after the link header) of an Ethernet frame in
/// tunnel `t`; `id` is the outer IP ID and `entropy` spreads VXLAN's UDP source port. The frame's link
/// header stays in front (its EtherType becomes IPv4) for IP-in-IP and GRE; VXLAN carries the whole frame
/// behind a new Ethernet header with the same addresses.
pub fn encapsulate(p: &mut Packet, off: usize, t: &Tunnel, id: u16, entropy: u16) {
    let inner = &p.data()[off..];
    let version = inner.first().map(|b| b >> 4).unwrap_or(4);
    let tos = match version {
        6 => inner
            .get(0..2)
            .map(|b| (b[0] << 4) | (b[1] >> 4))
            .unwrap_or(0),
        _ => inner.get(1).copied().unwrap_or(0),
    };
    let ip_len = p.len() - off;
    let n = t.mode.overhead();
    match t.mode {
        TunnelMode::IpIp | TunnelMode::Gre => {
            // The link header (Ethernet and up to four VLAN tags) moves to the new front; untagged Ethernet,
            // the common case, as a fixed-size copy.
            let l = off.min(32);
            if l == 14 {
                let mut link = [0u8; 14];
                link.copy_from_slice(&p.data()[..14]);
                p.push(n);
                p.data_mut()[..14].copy_from_slice(&link);
            } else {
                let mut link = [0u8; 32];
                link[..l].copy_from_slice(&p.data()[..l]);
                p.push(n);
                p.data_mut()[..l].copy_from_slice(&link[..l]);
            }
            let d = p.data_mut();
            if l >= 2 {
                d[l - 2..l].copy_from_slice(&[0x08, 0x00]);
            }
            let proto = match (t.mode, version) {
                (TunnelMode::Gre, _) => 47,
                (_, 6) => 41,
                _ => 4,
            };
            let ip = outer_ipv4(ip_len + n, proto, tos, t, id);
            d[l..l + 20].copy_from_slice(&ip);
            if t.mode == TunnelMode::Gre {
                let ty: [u8; 2] = if version == 6 {
                    [0x86, 0xdd]
                } else {
                    [0x08, 0x00]
                };
                d[l + 20..l + 24].copy_from_slice(&[0, 0, ty[0], ty[1]]);
            }
        }
        TunnelMode::Vxlan { vni } => {
            let frame_len = p.len();
            let mut macs = [0u8; 12];
            let m = frame_len.min(12);
            macs[..m].copy_from_slice(&p.data()[..m]);
            p.push(n);
            let d = p.data_mut();
            d[..12].copy_from_slice(&macs);
            d[12..14].copy_from_slice(&[0x08, 0x00]);
            let ip = outer_ipv4(frame_len + 36, 17, tos, t, id);
            d[14..34].copy_from_slice(&ip);
            let sport = 49152 | (entropy & 0x3fff);
            d[34..36].copy_from_slice(&sport.to_be_bytes());
            d[36..38].copy_from_slice(&VXLAN_PORT.to_be_bytes());
            d[38..40].copy_from_slice(&((frame_len + 16) as u16).to_be_bytes());
            d[40..42].copy_from_slice(&[0, 0]); // no UDP checksum (allowed over IPv4)
            let v = vni.to_be_bytes();
            d[42..50].copy_from_slice(&[0x08, 0, 0, 0, v[1], v[2], v[3], 0]);
        }
    }
    p.anno.set_l3_offset(None);
    p.anno.set_l4_offset(None);
}

/// Why a frame could not be decapsulated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecapError {
    /// Not IPv4, or not this tunnel's protocol, port or VNI.
    #[error("not a packet of this tunnel")]
    NotTunnel,
    /// Too short, or lengths that do not agree.
    #[error("malformed tunnel packet: {0}")]
    Malformed(&'static str),
}

/// Removes tunnel `mode`'s headers from an Ethernet frame, leaving the inner packet behind the frame's
/// own link header (IP-in-IP, GRE) or the inner Ethernet frame (VXLAN). With `vni`, VXLAN packets of
/// another VNI are refused.
pub fn decapsulate(p: &mut Packet, mode: TunnelMode, check_vni: bool) -> Result<(), DecapError> {
    let d = p.data();
    let off = ethernet_payload_offset(d).map_err(|_| DecapError::NotTunnel)?;
    let ip = d.get(off..off + 20).ok_or(DecapError::NotTunnel)?;
    if ip[0] >> 4 != 4 {
        return Err(DecapError::NotTunnel);
    }
    let hl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if hl < 20 || total < hl || off + total > d.len() {
        return Err(DecapError::Malformed("outer IPv4 lengths"));
    }
    if u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0 {
        return Err(DecapError::Malformed("a fragment of a tunnel packet"));
    }
    let proto = ip[9];
    // Ethernet padding after the outer packet goes.
    let end = off + total;
    let body = off + hl;
    match mode {
        TunnelMode::IpIp | TunnelMode::Gre => {
            let inner = match (mode, proto) {
                (TunnelMode::IpIp, 4 | 41) => body,
                (TunnelMode::Gre, 47) => {
                    let g = d
                        .get(body..body + 4)
                        .ok_or(DecapError::Malformed("GRE header"))?;
                    if g[1] & 0x07 != 0 {
                        return Err(DecapError::Malformed("GRE version"));
                    }
                    // Checksum, key and sequence number present: 4 bytes each.
                    let extra = 4 * ((g[0] >> 7) + ((g[0] >> 5) & 1) + ((g[0] >> 4) & 1)) as usize;
                    body + 4 + extra
                }
                _ => return Err(DecapError::NotTunnel),
            };
            if inner >= end {
                return Err(DecapError::Malformed("no inner packet"));
            }
            let version = d
                .get(inner)
                .map(|b| b >> 4)
                .ok_or(DecapError::Malformed("empty"))?;
            let ty: [u8; 2] = match version {
                4 => [0x08, 0x00],
                6 => [0x86, 0xdd],
                _ => return Err(DecapError::Malformed("inner packet is not IP")),
            };
            if ip_len(&d[inner..end]).is_none_or(|l| l > end - inner) {
                return Err(DecapError::Malformed("inner IP length"));
            }
            let mut link = [0u8; 32];
            let l = off.min(32);
            link[..l].copy_from_slice(&d[..l]);
            if l >= 2 {
                link[l - 2..l].copy_from_slice(&ty);
            }
            p.truncate(end);
            p.pull(inner - l)
                .map_err(|_| DecapError::Malformed("short"))?;
            p.data_mut()[..l].copy_from_slice(&link[..l]);
        }
        TunnelMode::Vxlan { vni } => {
            let u = d.get(body..body + 16).ok_or(DecapError::NotTunnel)?;
            if proto != 17 || u16::from_be_bytes([u[2], u[3]]) != VXLAN_PORT {
                return Err(DecapError::NotTunnel);
            }
            if u[8] & 0x08 == 0 {
                return Err(DecapError::Malformed("VXLAN without the I flag"));
            }
            let got = u32::from_be_bytes([0, u[12], u[13], u[14]]);
            if check_vni && got != vni {
                return Err(DecapError::NotTunnel);
            }
            if end < body + 16 + 14 {
                return Err(DecapError::Malformed("VXLAN inner frame"));
            }
            p.truncate(end);
            p.pull(body + 16)
                .map_err(|_| DecapError::Malformed("short"))?;
        }
    }
    p.anno.set_l3_offset(None);
    p.anno.set_l4_offset(None);
    Ok(())
}

/// An ICMP "destination unreachable, fragmentation needed" (type 3 code 4) answering the IPv4 packet at
/// `off` of `frame`, from `from`, announcing `mtu` (RFC 1191), in an Ethernet frame back to the sender.
pub fn frag_needed(frame: &[u8], off: usize, from: Ipv4Addr, mtu: u16) -> Option<Packet> {
    let ip = frame.get(off..)?;
    let hl = usize::from(*ip.first()? & 0x0f) * 4;
    let quoted = ip.get(..(hl + 8).min(ip.len()))?;
    let src = ip.get(12..16)?;
    let mut v = Vec::with_capacity(14 + 20 + 8 + quoted.len());
    v.extend_from_slice(frame.get(6..12)?);
    v.extend_from_slice(frame.get(0..6)?);
    v.extend_from_slice(&[0x08, 0x00]);
    let icmp_len = 8 + quoted.len();
    let mut h = [0u8; 20];
    h[0] = 0x45;
    h[2..4].copy_from_slice(&((20 + icmp_len) as u16).to_be_bytes());
    h[8] = 64;
    h[9] = 1;
    h[12..16].copy_from_slice(&from.octets());
    h[16..20].copy_from_slice(src);
    let c = checksum::ipv4_header(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    v.extend_from_slice(&h);
    let at = v.len();
    v.extend_from_slice(&[3, 4, 0, 0, 0, 0]);
    v.extend_from_slice(&mtu.to_be_bytes());
    v.extend_from_slice(quoted);
    let c = checksum::checksum(&v[at..]);
    v[at + 2..at + 4].copy_from_slice(&c.to_be_bytes());
    Some(Packet::from_slice(&v))
}

/// Splits the IPv4 packet at data offset `off` of `p` (which may be fragmented: it is not DF) into fragments
/// of at most `mtu` bytes, each behind a copy of the link header.
pub fn fragment(p: &Packet, off: usize, mtu: usize) -> Result<Vec<Packet>, PacketError> {
    let d = p.data();
    let ip = &d[off..];
    let hl = usize::from(ip[0] & 0x0f) * 4;
    let total = ip_len(ip).ok_or(PacketError::Malformed(crate::packet::Malformed::Field(
        "not IPv4",
    )))?;
    if total > ip.len() || hl < 20 || total < hl {
        return Err(PacketError::Malformed(crate::packet::Malformed::Field(
            "IPv4 lengths",
        )));
    }
    let per = (mtu.saturating_sub(hl) / 8) * 8;
    if per == 0 {
        return Err(PacketError::Malformed(crate::packet::Malformed::Field(
            "MTU too small to fragment",
        )));
    }
    let ff = u16::from_be_bytes([ip[6], ip[7]]);
    let (more, base) = (ff & 0x2000 != 0, ff & 0x1fff);
    let payload = &ip[hl..total];
    let mut out = Vec::with_capacity(payload.len().div_ceil(per));
    let mut at = 0;
    while at < payload.len() {
        let piece = &payload[at..(at + per).min(payload.len())];
        let last = at + piece.len() == payload.len();
        let mut f = Vec::with_capacity(off + hl + piece.len());
        f.extend_from_slice(&d[..off]);
        f.extend_from_slice(&ip[..hl]);
        f.extend_from_slice(piece);
        let h = &mut f[off..off + hl];
        h[2..4].copy_from_slice(&((hl + piece.len()) as u16).to_be_bytes());
        let flags = if last && !more { 0 } else { 0x2000 };
        let fo = flags | (base + (at / 8) as u16);
        h[6..8].copy_from_slice(&fo.to_be_bytes());
        h[10..12].copy_from_slice(&[0, 0]);
        let c = checksum::checksum(&h[..hl]);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        let mut q = Packet::from_slice(&f);
        q.anno = p.anno;
        q.anno.set_l3_offset(None);
        q.anno.set_l4_offset(None);
        out.push(q);
        at += piece.len();
    }
    Ok(out)
}

/// The enterprise side of a tunnel: encapsulates every packet (see [the module](self)).
///
/// # Ports
/// One push input (Ethernet frames); output 0 the tunnelled packets, optional output 1 the ICMP errors
/// for the senders of oversized DF packets (dropped if not connected).
///
/// # Arguments
/// `MODE` (`ipip`, `gre`, `vxlan`), `LOCAL` and `REMOTE` (IPv4), `MTU` (path MTU, 1500), `VNI` (VXLAN, 0),
/// `TTL` (64), `CLAMP` (clamp TCP SYNs' MSS to fit, true).
///
/// # Handlers
/// `encapsulated`, `fragmented` (packets split), `fragments` (pieces made), `frag_needed` (ICMP errors
/// sent), `too_big` (oversized IPv6 packets dropped), `clamped`, `bad` (not IP, dropped).
#[derive(Debug, Clone)]
pub struct TunnelEncap {
    tunnel: Tunnel,
    clamp: bool,
    id: u16,
    errors_out: bool,
    counts: [u64; 7],
}

const ENCAP_HANDLERS: &[HandlerSpec] = &[
    HandlerSpec::read("encapsulated", "packets sent into the tunnel"),
    HandlerSpec::read("fragmented", "packets fragmented to fit"),
    HandlerSpec::read("fragments", "fragments made"),
    HandlerSpec::read(
        "frag_needed",
        "ICMP fragmentation-needed errors sent (DF and too big)",
    ),
    HandlerSpec::read("too_big", "IPv6 packets too big for the tunnel (dropped)"),
    HandlerSpec::read("clamped", "TCP SYNs whose MSS was lowered"),
    HandlerSpec::read("bad", "packets that are not IP (dropped)"),
];

impl TunnelEncap {
    /// Encapsulates into `tunnel`.
    pub fn new(tunnel: Tunnel) -> Self {
        TunnelEncap {
            tunnel,
            clamp: true,
            id: 0,
            errors_out: false,
            counts: [0; 7],
        }
    }

    /// Whether TCP SYNs get their MSS clamped (default true).
    pub fn clamp(mut self, on: bool) -> Self {
        self.clamp = on;
        self
    }

    fn one(&mut self, mut p: Packet, out: &mut Outputs) {
        let Ok(h) = p.locate(Link::Ethernet) else {
            self.counts[6] += 1;
            return;
        };
        let off = h.l3 - p.data_offset();
        let Some(len) = ip_len(&p.data()[off..]) else {
            self.counts[6] += 1;
            return;
        };
        if len > p.len() - off {
            self.counts[6] += 1;
            return;
        }
        p.truncate(off + len);
        let room = self.tunnel.inner_mtu();
        if self.clamp {
            let mss = room.saturating_sub(if h.version == IpVersion::V4 { 40 } else { 60 });
            if crate::elements::tcpudp::clamp_mss(&mut p, &h, mss.min(65535) as u16) {
                self.counts[5] += 1;
            }
        }
        // VXLAN's UDP source port follows the inner flow (for ECMP on the way): a hash of its addresses.
        let entropy = match self.tunnel.mode {
            TunnelMode::Vxlan { .. } => {
                let d = &p.data()[off..];
                let w = |i: usize| {
                    d.get(i..i + 8)
                        .map(|b| {
                            u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
                        })
                        .unwrap_or(0)
                };
                // The ports, when the transport header is there.
                let ports =
                    h.l4.and_then(|l4| p.buffer().get(l4..l4 + 4))
                        .map(|b| u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
                        .unwrap_or(0);
                let x = if h.version == IpVersion::V4 {
                    w(12) ^ ports.rotate_left(29)
                } else {
                    w(8) ^ w(16).rotate_left(13)
                        ^ w(24).rotate_left(29)
                        ^ w(32).rotate_left(41)
                        ^ ports
                };
                (crate::hash::mix64(x) >> 48) as u16
            }
            _ => 0,
        };
        if len <= room {
            self.id = self.id.wrapping_add(1);
            encapsulate(&mut p, off, &self.tunnel, self.id, entropy);
            self.counts[0] += 1;
            out.push(0, p);
            return;
        }
        match h.version {
            IpVersion::V6 => self.counts[4] += 1,
            IpVersion::V4 if p.data()[off + 6] & 0x40 != 0 => {
                self.counts[3] += 1;
                if self.errors_out
                    && let Some(e) = frag_needed(p.data(), off, self.tunnel.local, room as u16)
                {
                    out.push(1, e);
                }
            }
            IpVersion::V4 => match fragment(&p, off, room) {
                Ok(frags) => {
                    self.counts[1] += 1;
                    for mut f in frags {
                        self.counts[2] += 1;
                        self.id = self.id.wrapping_add(1);
                        encapsulate(&mut f, off, &self.tunnel, self.id, entropy);
                        self.counts[0] += 1;
                        out.push(0, f);
                    }
                }
                Err(_) => self.counts[6] += 1,
            },
        }
    }
}

impl Element for TunnelEncap {
    fn class_name(&self) -> &'static str {
        "TunnelEncap"
    }
    fn ports(&self) -> PortSpec {
        PortSpec::new(PortCount::exactly(1), PortCount::range(1, 2), "h/h")
    }
    fn initialize(&mut self, ctx: &InitContext<'_>) -> Result<(), String> {
        self.errors_out = ctx.noutputs > 1;
        Ok(())
    }
    fn push(&mut self, _port: usize, batch: &mut Batch, out: &mut Outputs) {
        for p in batch.drain() {
            self.one(p, out);
        }
    }
    fn handlers(&self) -> &'static [HandlerSpec] {
        ENCAP_HANDLERS
    }
    fn read_handler(&self, name: &str) -> Option<String> {
        let i = ENCAP_HANDLERS.iter().position(|h| h.name == name)?;
        Some(self.counts[i].to_string())
    }
}

/// The cloud side of a tunnel: removes the tunnel's headers (see [`decapsulate`]).
///
/// # Ports
/// One push input; output 0 the inner packets, optional output 1 what is not this tunnel's (dropped if
/// not connected).
///
/// # Arguments
/// `MODE` (`ipip`, `gre`, `vxlan`), `VNI` (VXLAN: only this VNI; any if not given).
///
/// # Handlers
/// `decapsulated`, `other` (not this tunnel's), `malformed` (dropped).
#[derive(Debug, Clone)]
pub struct TunnelDecap {
    mode: TunnelMode,
    check_vni: bool,
    other_out: bool,
    counts: [u64; 3],
}

const DECAP_HANDLERS: &[HandlerSpec] = &[
    HandlerSpec::read("decapsulated", "inner packets delivered"),
    HandlerSpec::read("other", "packets that are not this tunnel's"),
    HandlerSpec::read("malformed", "tunnel packets that do not parse (dropped)"),
];

impl TunnelDecap {
    /// Decapsulates `mode` (VXLAN: of any VNI unless `check_vni`).
    pub fn new(mode: TunnelMode, check_vni: bool) -> Self {
        TunnelDecap {
            mode,
            check_vni,
            other_out: false,
            counts: [0; 3],
        }
    }
}

impl Element for TunnelDecap {
    fn class_name(&self) -> &'static str {
        "TunnelDecap"
    }
    fn ports(&self) -> PortSpec {
        PortSpec::new(PortCount::exactly(1), PortCount::range(1, 2), "h/h")
    }
    fn initialize(&mut self, ctx: &InitContext<'_>) -> Result<(), String> {
        self.other_out = ctx.noutputs > 1;
        Ok(())
    }
    fn push(&mut self, _port: usize, batch: &mut Batch, out: &mut Outputs) {
        let (mode, check, other) = (self.mode, self.check_vni, self.other_out);
        let counts = &mut self.counts;
        batch.classify_to(out, |p| match decapsulate(p, mode, check) {
            Ok(()) => {
                counts[0] += 1;
                Some(0)
            }
            Err(DecapError::NotTunnel) => {
                counts[1] += 1;
                other.then_some(1)
            }
            Err(DecapError::Malformed(_)) => {
                counts[2] += 1;
                None
            }
        });
    }
    fn handlers(&self) -> &'static [HandlerSpec] {
        DECAP_HANDLERS
    }
    fn read_handler(&self, name: &str) -> Option<String> {
        let i = DECAP_HANDLERS.iter().position(|h| h.name == name)?;
        Some(self.counts[i].to_string())
    }
}

fn mode_from(a: &mut Args) -> Result<(TunnelMode, bool), ConfigError> {
    let m: String = a.read_mp("MODE")?;
    let mode: TunnelMode = m.parse().map_err(|e: String| a.error(e))?;
    let vni: Option<u32> = a.read("VNI")?;
    if vni.is_some_and(|v| v >= 1 << 24) {
        return Err(a.error("VNI is 24 bits (at most 16777215)"));
    }
    Ok(match mode {
        TunnelMode::Vxlan { .. } => (
            TunnelMode::Vxlan {
                vni: vni.unwrap_or(0),
            },
            vni.is_some(),
        ),
        m if vni.is_some() => return Err(a.error(format!("VNI is for vxlan, not {m:?}"))),
        m => (m, false),
    })
}

/// Registers `TunnelEncap`, `TunnelDecap`, `Compress` and `Decompress`.
pub fn register(r: &mut crate::registry::Registry) {
    r.register(
        "TunnelEncap",
        "APLOMB: encapsulates in IP-in-IP, GRE or VXLAN, with MTU handling and MSS clamping",
        |a| {
            let (mode, _) = mode_from(a)?;
            let local: Ipv4Addr = a.read_mp("LOCAL")?;
            let remote: Ipv4Addr = a.read_mp("REMOTE")?;
            let mtu: u16 = a.read_or("MTU", 1500)?;
            let ttl: u8 = a.read_or("TTL", 64)?;
            let clamp: bool = a.read_or("CLAMP", true)?;
            if usize::from(mtu) < mode.overhead() + 68 {
                return Err(a.error(format!(
                    "MTU {mtu} leaves less than 68 bytes inside the tunnel"
                )));
            }
            let t = Tunnel {
                mode,
                local,
                remote,
                mtu,
                ttl,
            };
            Ok(TunnelEncap::new(t).clamp(clamp))
        },
    );
    r.register(
        "TunnelDecap",
        "APLOMB: removes IP-in-IP, GRE or VXLAN headers",
        |a| {
            let (mode, check) = mode_from(a)?;
            Ok(TunnelDecap::new(mode, check))
        },
    );
    super::compress::register(r);
}
