//! `TunnelEncap`: the enterprise side of a tunnel.

use super::{Tunnel, TunnelMode, encapsulate, frag_needed, fragment, ip_len, mode_from};
use crate::args::Args;
use crate::batch::{Batch, Outputs};
use crate::element::{Element, ElementClass, HandlerSpec, InitContext, PortCount, PortSpec};
use crate::error::ConfigError;
use crate::packet::{IpVersion, Link, Packet};
use crate::wire::Ipv4Packet;
use std::net::Ipv4Addr;

/// The enterprise side of a tunnel: encapsulates every packet (see [the package](super)).
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
///
/// # Example
/// ```
/// let r = nf_core::testing::run_config("
///     InfiniteSource(LIMIT 3, STOP true)
///       -> e :: TunnelEncap(MODE gre, LOCAL 192.0.2.1, REMOTE 198.51.100.1)
///       -> c :: Classifier(23/2f, -) -> gre :: Counter -> Discard; c[1] -> Discard;").unwrap();
/// assert_eq!(r.read_handler("e", "encapsulated").unwrap(), "3");
/// assert_eq!(r.read_handler("gre", "count").unwrap(), "3"); // outer protocol 47
/// ```
#[derive(Debug, Clone)]
pub struct TunnelEncap {
    tunnel: Tunnel,
    clamp: bool,
    id: u16,
    errors_out: bool,
    counts: EncapCounts,
}

/// What a `TunnelEncap` did, one field per handler.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EncapCounts {
    /// Packets sent into the tunnel (fragments included).
    pub encapsulated: u64,
    /// Packets fragmented to fit.
    pub fragmented: u64,
    /// Fragments made.
    pub fragments: u64,
    /// ICMP fragmentation-needed errors sent (DF and too big).
    pub frag_needed: u64,
    /// IPv6 packets too big for the tunnel (dropped).
    pub too_big: u64,
    /// TCP SYNs whose MSS was lowered.
    pub clamped: u64,
    /// Packets that are not IP (dropped).
    pub bad: u64,
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
            counts: EncapCounts::default(),
        }
    }

    /// What it did so far.
    pub fn counts(&self) -> EncapCounts {
        self.counts
    }

    /// Whether TCP SYNs get their MSS clamped (default true).
    pub fn clamp(mut self, on: bool) -> Self {
        self.clamp = on;
        self
    }

    fn one(&mut self, mut p: Packet, out: &mut Outputs) {
        let Ok(h) = p.locate(Link::Ethernet) else {
            self.counts.bad += 1;
            return;
        };
        let off = h.l3 - p.data_offset();
        let Some(len) = ip_len(&p.data()[off..]) else {
            self.counts.bad += 1;
            return;
        };
        if len > p.len() - off {
            self.counts.bad += 1;
            return;
        }
        p.truncate(off + len);
        let room = self.tunnel.inner_mtu();
        if self.clamp {
            let mss = room.saturating_sub(if h.version == IpVersion::V4 { 40 } else { 60 });
            if crate::elements::tcpudp::clamp_mss(&mut p, &h, mss.min(65535) as u16) {
                self.counts.clamped += 1;
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
            self.counts.encapsulated += 1;
            out.push(0, p);
            return;
        }
        match h.version {
            IpVersion::V6 => self.counts.too_big += 1,
            IpVersion::V4 if Ipv4Packet::new_unchecked(&p.data()[off..]).dont_frag() => {
                self.counts.frag_needed += 1;
                if self.errors_out
                    && let Some(e) = frag_needed(p.data(), off, self.tunnel.local, room as u16)
                {
                    out.push(1, e);
                }
            }
            IpVersion::V4 => match fragment(&p, off, room) {
                Ok(frags) => {
                    self.counts.fragmented += 1;
                    for mut f in frags {
                        self.counts.fragments += 1;
                        self.id = self.id.wrapping_add(1);
                        encapsulate(&mut f, off, &self.tunnel, self.id, entropy);
                        self.counts.encapsulated += 1;
                        out.push(0, f);
                    }
                }
                Err(_) => self.counts.bad += 1,
            },
        }
    }
}

impl Element for TunnelEncap {
    fn class_name(&self) -> &'static str {
        Self::NAME
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
        let c = &self.counts;
        let v = match name {
            "encapsulated" => c.encapsulated,
            "fragmented" => c.fragmented,
            "fragments" => c.fragments,
            "frag_needed" => c.frag_needed,
            "too_big" => c.too_big,
            "clamped" => c.clamped,
            "bad" => c.bad,
            _ => return None,
        };
        Some(v.to_string())
    }
}

impl ElementClass for TunnelEncap {
    const NAME: &'static str = "TunnelEncap";
    const DOC: &'static str =
        "APLOMB: encapsulates in IP-in-IP, GRE or VXLAN, with MTU handling and MSS clamping";
    fn configure(a: &mut Args) -> Result<Self, ConfigError> {
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
    }
}
