//! Tunnelling (APLOMB, Sherry et al., SIGCOMM'12: the enterprise gateway that tunnels traffic to a cloud
//! of middleboxes). Tunnels in three formats, IP-in-IP (RFC 2003; IPv6 inside IPv4 as protocol 41), GRE
//! (RFC 2784) and VXLAN (RFC 7348), with the path MTU respected: a packet that would not fit once
//! encapsulated is fragmented before encapsulation if it may be (IPv4 without DF), answered with an ICMP
//! "fragmentation needed" carrying the tunnel's MTU if it may not (IPv4 with DF), and dropped (counted) if it
//! is IPv6; TCP SYNs have their MSS clamped so that connections never send such packets. Per-tunnel
//! compression (`Compress`/`Decompress`, LZ4 in the IPComp format of RFC 3173) and the choice of a point of
//! presence by measured latency (`PoPSelector`) complete the gateway. This module holds the tunnel formats
//! (built and parsed through [`crate::wire`]); each element has its own file.

mod compress;
mod decompress;
mod pop_selector;
mod tunnel_decap;
mod tunnel_encap;

pub use compress::{CPI_LZ4, Compress, CompressStats, IPCOMP};
pub use decompress::{Decompress, DecompressError};
pub use pop_selector::PoPSelector;
pub use tunnel_decap::TunnelDecap;
pub use tunnel_encap::TunnelEncap;

use crate::args::Args;
use crate::error::ConfigError;
use crate::packet::{Malformed, Packet, PacketError, ethernet_payload_offset};
pub use crate::wire::VXLAN_PORT;
use crate::wire::{
    EthernetFrame, EthernetRepr, GrePacket, GreRepr, IcmpMessage, IcmpRepr, Ipv4Packet, Ipv4Repr,
    Ipv6Packet, UdpDatagram, UdpRepr, VxlanHeader, VxlanRepr, ethertype, ip_proto,
};
use std::net::Ipv4Addr;

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
pub(crate) fn ip_len(ip: &[u8]) -> Option<usize> {
    match ip.first()? >> 4 {
        4 if ip.len() >= Ipv4Packet::<&[u8]>::MIN_HEADER_LEN => {
            Some(usize::from(Ipv4Packet::new_unchecked(ip).total_len()))
        }
        6 if ip.len() >= Ipv6Packet::<&[u8]>::HEADER_LEN => {
            Some(Ipv6Packet::new_unchecked(ip).total_len())
        }
        _ => None,
    }
}

/// The outer IPv4 header of tunnel `t` around `payload_len` bytes of protocol `proto`.
fn outer_ipv4(t: &Tunnel, payload_len: usize, proto: u8, tos: u8, id: u16) -> Ipv4Repr {
    Ipv4Repr {
        src_addr: t.local,
        dst_addr: t.remote,
        protocol: proto,
        payload_len,
        ttl: t.ttl,
        tos,
        ident: id,
        // The encapsulator made sure it fits.
        dont_frag: true,
    }
}

/// Encapsulates the IP packet at data offset `off` (after the link header) of an Ethernet frame in
/// tunnel `t`; `id` is the outer IP ID and `entropy` spreads VXLAN's UDP source port. The frame's link
/// header stays in front (its EtherType becomes IPv4) for IP-in-IP and GRE; VXLAN carries the whole frame
/// behind a new Ethernet header with the same addresses.
pub fn encapsulate(p: &mut Packet, off: usize, t: &Tunnel, id: u16, entropy: u16) {
    let inner = &p.data()[off..];
    let version = inner.first().map(|b| b >> 4).unwrap_or(4);
    let tos = match version {
        6 if inner.len() >= Ipv6Packet::<&[u8]>::HEADER_LEN => {
            Ipv6Packet::new_unchecked(inner).traffic_class()
        }
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
                d[l - 2..l].copy_from_slice(&ethertype::IPV4.to_be_bytes());
            }
            let inner_type = if version == 6 {
                ethertype::IPV6
            } else {
                ethertype::IPV4
            };
            let proto = match (t.mode, version) {
                (TunnelMode::Gre, _) => ip_proto::GRE,
                (_, 6) => ip_proto::IPV6,
                _ => ip_proto::IPIP,
            };
            let outer = outer_ipv4(t, ip_len + n - 20, proto, tos, id);
            outer.emit(&mut Ipv4Packet::new_unchecked(&mut d[l..l + 20]));
            if t.mode == TunnelMode::Gre {
                let gre = GreRepr {
                    protocol: inner_type,
                    key: None,
                };
                gre.emit(&mut GrePacket::new_unchecked(&mut d[l + 20..l + 24]));
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
            d[12..14].copy_from_slice(&ethertype::IPV4.to_be_bytes());
            let outer = outer_ipv4(t, frame_len + 16, ip_proto::UDP, tos, id);
            outer.emit(&mut Ipv4Packet::new_unchecked(&mut d[14..34]));
            let udp = UdpRepr {
                src_port: 49152 | (entropy & 0x3fff),
                dst_port: VXLAN_PORT,
                payload_len: frame_len + 8,
            };
            // No UDP checksum (allowed over IPv4).
            udp.emit(&mut UdpDatagram::new_unchecked(&mut d[34..42]));
            VxlanRepr { vni }.emit(&mut VxlanHeader::new_unchecked(&mut d[42..50]));
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
    let ip = match d.get(off..) {
        Some(b) if b.len() >= Ipv4Packet::<&[u8]>::MIN_HEADER_LEN => Ipv4Packet::new_unchecked(b),
        _ => return Err(DecapError::NotTunnel),
    };
    if ip.version() != 4 {
        return Err(DecapError::NotTunnel);
    }
    let (hl, total) = (ip.header_len(), usize::from(ip.total_len()));
    if hl < Ipv4Packet::<&[u8]>::MIN_HEADER_LEN || total < hl || total > ip.as_slice().len() {
        return Err(DecapError::Malformed("outer IPv4 lengths"));
    }
    if ip.is_fragment() {
        return Err(DecapError::Malformed("a fragment of a tunnel packet"));
    }
    let proto = ip.protocol();
    // Ethernet padding after the outer packet goes.
    let end = off + total;
    let body = off + hl;
    match mode {
        TunnelMode::IpIp | TunnelMode::Gre => {
            let inner = match (mode, proto) {
                (TunnelMode::IpIp, ip_proto::IPIP | ip_proto::IPV6) => body,
                (TunnelMode::Gre, ip_proto::GRE) => {
                    let g = match d.get(body..end) {
                        Some(g) if g.len() >= GrePacket::<&[u8]>::MIN_HEADER_LEN => {
                            GrePacket::new_unchecked(g)
                        }
                        _ => return Err(DecapError::Malformed("GRE header")),
                    };
                    if g.version() != 0 {
                        return Err(DecapError::Malformed("GRE version"));
                    }
                    // Options past the packet's end leave no inner packet (refused below).
                    body + g.header_len()
                }
                _ => return Err(DecapError::NotTunnel),
            };
            if inner >= end {
                return Err(DecapError::Malformed("no inner packet"));
            }
            let ty = match d[inner] >> 4 {
                4 => ethertype::IPV4,
                6 => ethertype::IPV6,
                _ => return Err(DecapError::Malformed("inner packet is not IP")),
            };
            if ip_len(&d[inner..end]).is_none_or(|l| l > end - inner) {
                return Err(DecapError::Malformed("inner IP length"));
            }
            let mut link = [0u8; 32];
            let l = off.min(32);
            link[..l].copy_from_slice(&d[..l]);
            if l >= 2 {
                link[l - 2..l].copy_from_slice(&ty.to_be_bytes());
            }
            p.truncate(end);
            p.pull(inner - l)
                .map_err(|_| DecapError::Malformed("short"))?;
            p.data_mut()[..l].copy_from_slice(&link[..l]);
        }
        TunnelMode::Vxlan { vni } => {
            let udp = match UdpDatagram::new_checked(&d[body..end]) {
                Ok(u) if proto == ip_proto::UDP && u.dst_port() == VXLAN_PORT => u,
                _ => return Err(DecapError::NotTunnel),
            };
            let vx = VxlanHeader::new_checked(&udp.as_slice()[UdpDatagram::<&[u8]>::HEADER_LEN..])
                .map_err(|e| match e {
                    Malformed::Truncated { .. } => DecapError::NotTunnel,
                    _ => DecapError::Malformed("VXLAN without the I flag"),
                })?;
            if check_vni && vx.vni() != vni {
                return Err(DecapError::NotTunnel);
            }
            if vx.payload().len() < EthernetFrame::<&[u8]>::HEADER_LEN {
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
    let ip = Ipv4Packet::new_checked(frame.get(off..)?).ok()?;
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let quoted = &ip.as_slice()[..(ip.header_len() + 8).min(ip.as_slice().len())];
    let icmp = IcmpRepr::frag_needed(mtu);
    let ipr = Ipv4Repr {
        src_addr: from,
        dst_addr: ip.src_addr(),
        protocol: ip_proto::ICMP,
        payload_len: icmp.header_len() + quoted.len(),
        ttl: 64,
        ..Ipv4Repr::default()
    };
    let mut v = vec![0u8; 14 + ipr.header_len() + ipr.payload_len];
    EthernetRepr {
        src_addr: eth.dst_addr(),
        dst_addr: eth.src_addr(),
        ethertype: ethertype::IPV4,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut v[..]));
    ipr.emit(&mut Ipv4Packet::new_unchecked(&mut v[14..]));
    v[42..].copy_from_slice(quoted);
    icmp.emit(&mut IcmpMessage::new_unchecked(&mut v[34..]));
    Some(Packet::from_slice(&v))
}

/// Splits the IPv4 packet at data offset `off` of `p` (which may be fragmented: it is not DF) into fragments
/// of at most `mtu` bytes, each behind a copy of the link header.
pub fn fragment(p: &Packet, off: usize, mtu: usize) -> Result<Vec<Packet>, PacketError> {
    let d = p.data();
    let ip = Ipv4Packet::new_checked(&d[off..]).map_err(PacketError::Malformed)?;
    let (hl, total) = (ip.header_len(), usize::from(ip.total_len()));
    if total > ip.as_slice().len() {
        return Err(PacketError::Malformed(Malformed::Field("IPv4 lengths")));
    }
    let per = (mtu.saturating_sub(hl) / 8) * 8;
    if per == 0 {
        return Err(PacketError::Malformed(Malformed::Field(
            "MTU too small to fragment",
        )));
    }
    let (more, base) = (ip.more_frags(), ip.frag_offset());
    let payload = ip.payload();
    let mut out = Vec::with_capacity(payload.len().div_ceil(per));
    let mut at = 0;
    while at < payload.len() {
        let piece = &payload[at..(at + per).min(payload.len())];
        let last = at + piece.len() == payload.len();
        let mut f = Vec::with_capacity(off + hl + piece.len());
        f.extend_from_slice(&d[..off]);
        f.extend_from_slice(&ip.as_slice()[..hl]);
        f.extend_from_slice(piece);
        let mut h = Ipv4Packet::new_unchecked(&mut f[off..]);
        h.set_total_len((hl + piece.len()) as u16);
        h.set_frag(false, !last || more, base + at as u16);
        h.fill_checksum();
        let mut q = Packet::from_slice(&f);
        q.anno = p.anno;
        q.anno.set_l3_offset(None);
        q.anno.set_l4_offset(None);
        out.push(q);
        at += piece.len();
    }
    Ok(out)
}

/// Reads `MODE` and `VNI` (the arguments both ends of a tunnel take): the mode, and whether a VNI was
/// given.
pub(crate) fn mode_from(a: &mut Args) -> Result<(TunnelMode, bool), ConfigError> {
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

/// Registers the tunnel elements: `TunnelEncap`, `TunnelDecap`, `Compress`, `Decompress`, `PoPSelector`.
pub fn register(r: &mut crate::registry::Registry) {
    r.add::<TunnelEncap>();
    r.add::<TunnelDecap>();
    r.add::<Compress>();
    r.add::<Decompress>();
    r.add::<PoPSelector>();
}
