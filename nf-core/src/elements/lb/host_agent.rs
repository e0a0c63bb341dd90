//! `HostAgent`: Ananta's Host Agent, on a backend's host.

use super::ananta_mux::addr;
use crate::args::Args;
use crate::batch::{Batch, Outputs};
use crate::element::{Element, ElementClass, HandlerSpec, PortCount, PortSpec};
use crate::error::ConfigError;
use crate::packet;
use crate::packet::{Link, Packet};
use crate::wire::{Ipv4Packet, ip_proto};
use std::net::SocketAddr;

/// Ananta's Host Agent, on a backend's host: packets from a Mux (input 0) are decapsulated, their
/// destination VIP:port rewritten to the backend's address and port (DNAT), and sent to the backend
/// (output 0); the backend's replies (input 1) get VIP:port back as their source (reverse NAT) and leave
/// directly towards the client (output 1: direct server return, the Mux is not on the way back). TCP SYNs
/// and SYN-ACKs have their MSS clamped (the encapsulation costs 20 bytes of the path MTU). Checksums are
/// updated incrementally.
///
/// # Ports
/// Two push inputs, two push outputs.
///
/// # Arguments
/// `VIP` (IP:PORT), `BACKEND` (IP:PORT of the backend on this host), `MSS` (default 1440).
///
/// # Handlers
/// `decapsulated`, `replies`, `clamped`, `dropped` (read).
///
/// # Example
/// ```
/// // The Mux's packets arrive at the backend with the backend's address and port.
/// let r = nf_core::testing::run_config("
///     InfiniteSource(LIMIT 20, FLOWS 4, PROTO tcp, STOP true)
///       -> m :: AnantaMux(VIP 192.168.0.1:80, SELF 10.9.9.9, BACKENDS 10.2.0.1)
///       -> [0]h :: HostAgent(VIP 192.168.0.1:80, BACKEND 10.2.0.1:8080);
///     Idle -> [1]h; h[1] -> Discard;
///     h[0] -> c :: Classifier(30/0a020001 36/1f90, -) -> be :: Counter -> Discard; c[1] -> Discard;").unwrap();
/// assert_eq!(r.read_handler("h", "decapsulated").unwrap(), r.read_handler("m", "encapsulated").unwrap());
/// assert_eq!(r.read_handler("be", "count").unwrap(), r.read_handler("h", "decapsulated").unwrap());
/// ```
pub struct HostAgent {
    vip: SocketAddr,
    backend: SocketAddr,
    mss: u16,
    counts: HostAgentCounts,
}

/// What a `HostAgent` did, one field per handler.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostAgentCounts {
    /// Packets from a Mux decapsulated and sent to the backend.
    pub decapsulated: u64,
    /// Replies sent to clients with the VIP restored.
    pub replies: u64,
    /// SYNs whose MSS was lowered.
    pub clamped: u64,
    /// Packets that were neither.
    pub dropped: u64,
}

impl std::fmt::Debug for HostAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostAgent")
            .field("vip", &self.vip)
            .field("backend", &self.backend)
            .finish()
    }
}

impl HostAgent {
    /// A host agent for `vip` served by `backend`.
    pub fn new(vip: SocketAddr, backend: SocketAddr) -> Self {
        HostAgent {
            vip,
            backend,
            mss: 1440,
            counts: HostAgentCounts::default(),
        }
    }
    /// The MSS to clamp to.
    pub fn mss(mut self, m: u16) -> Self {
        self.mss = m;
        self
    }

    fn decap(&mut self, p: &mut Packet) -> bool {
        let Ok(off) = packet::ethernet_payload_offset(p.data()) else {
            return false;
        };
        let d = p.data();
        // An outer IPv4 header without options around an inner IPv4 header.
        let outer = match d.get(off..off + 40) {
            Some(b) => Ipv4Packet::new_unchecked(b),
            None => return false,
        };
        if outer.version() != 4 || outer.header_len() != 20 || outer.protocol() != ip_proto::IPIP {
            return false;
        }
        let mut eth = [0u8; 18];
        let n = off.min(18);
        eth[..n].copy_from_slice(&d[..n]);
        if p.pull(20).is_err() {
            return false;
        }
        p.data_mut()[..n].copy_from_slice(&eth[..n]);
        p.anno.set_l3_offset(None);
        p.anno.set_l4_offset(None);
        let Ok(h) = p.locate(Link::Ethernet) else {
            return false;
        };
        if p.set_ip_dst(&h, self.backend.ip()).is_err()
            || p.set_dst_port(&h, self.backend.port()).is_err()
        {
            return false;
        }
        self.clamp(p, &h);
        true
    }

    fn reverse(&mut self, p: &mut Packet) -> bool {
        let Ok(h) = p.locate(Link::Ethernet) else {
            return false;
        };
        if p.set_ip_src(&h, self.vip.ip()).is_err() || p.set_src_port(&h, self.vip.port()).is_err()
        {
            return false;
        }
        self.clamp(p, &h);
        true
    }

    /// Lowers a SYN's MSS option to the configured value, updating the TCP checksum.
    fn clamp(&mut self, p: &mut Packet, h: &packet::HeaderInfo) {
        if crate::elements::tcpudp::clamp_mss(p, h, self.mss) {
            self.counts.clamped += 1;
        }
    }
}

const HA_HANDLERS: &[HandlerSpec] = &[
    HandlerSpec::read(
        "decapsulated",
        "packets decapsulated and sent to the backend",
    ),
    HandlerSpec::read("replies", "replies sent to clients with the VIP restored"),
    HandlerSpec::read("clamped", "SYNs whose MSS was lowered"),
    HandlerSpec::read("dropped", "packets that were neither"),
];

impl Element for HostAgent {
    fn class_name(&self) -> &'static str {
        Self::NAME
    }
    fn ports(&self) -> PortSpec {
        PortSpec::new(PortCount::exactly(2), PortCount::exactly(2), "h/h")
    }
    fn push(&mut self, port: usize, batch: &mut Batch, out: &mut Outputs) {
        batch.classify_to(out, |p| {
            let ok = if port == 0 {
                self.decap(p)
            } else {
                self.reverse(p)
            };
            match (ok, port) {
                (true, 0) => self.counts.decapsulated += 1,
                (true, _) => self.counts.replies += 1,
                (false, _) => self.counts.dropped += 1,
            }
            ok.then_some(port)
        });
    }
    fn handlers(&self) -> &'static [HandlerSpec] {
        HA_HANDLERS
    }
    fn read_handler(&self, name: &str) -> Option<String> {
        let c = &self.counts;
        let v = match name {
            "decapsulated" => c.decapsulated,
            "replies" => c.replies,
            "clamped" => c.clamped,
            "dropped" => c.dropped,
            _ => return None,
        };
        Some(v.to_string())
    }
}

impl ElementClass for HostAgent {
    const NAME: &'static str = "HostAgent";
    const DOC: &'static str = "Ananta's Host Agent: decapsulation, DNAT to the backend, reverse NAT on replies (DSR), MSS clamping";
    fn configure(a: &mut Args) -> Result<Self, ConfigError> {
        let vip: String = a.read_mp("VIP")?;
        let vip = addr(a, &vip, "VIP")?;
        let be: String = a.read_mp("BACKEND")?;
        let backend = addr(a, &be, "BACKEND")?;
        let mss: u16 = a.read_or("MSS", 1440)?;
        Ok(HostAgent::new(vip, backend).mss(mss))
    }
}
