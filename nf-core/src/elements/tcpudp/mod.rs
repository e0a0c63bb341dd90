//! TCP and UDP elements (Click's `tcpudp` package): the connection tracker, with the states and timeouts
//! of Linux's conntrack (whose replication conntrackd does for kernel boxes), and MSS clamping.

pub mod conntrack;

/// The closing state both of the SDK's stateful rewriters keep per flow (`LoadBalancer`'s
/// `LbEntry::closing`, `IPRewriter`'s mapping flags), and the lifetime it gives a flow: one rule for
/// when a flow is on probation, established, or closed.
pub mod closing {
    /// A FIN from the flow's initiator (the client).
    pub const FIN_ORIGIN: u8 = 1;
    /// A FIN from the responder (the backend, the server).
    pub const FIN_REPLY: u8 = 2;
    /// A RST, either way.
    pub const RST: u8 = 4;
    /// Established: the initiator's second packet (the ACK completing a handshake, or any packet
    /// after a UDP flow's first), or installed established.
    pub const ESTABLISHED: u8 = 8;
    /// The bits above.
    pub const MASK: u8 = 15;

    /// How long a flow stays from now: `linger` once closed (RST, or FIN both ways), `embryonic` while
    /// its handshake is incomplete (a flood's one-packet flows go first), else `idle`.
    #[inline(always)]
    pub fn lifetime(closing: u8, linger: u64, embryonic: u64, idle: u64) -> u64 {
        if closing & RST != 0 || closing & (FIN_ORIGIN | FIN_REPLY) == FIN_ORIGIN | FIN_REPLY {
            linger
        } else if closing & ESTABLISHED == 0 {
            embryonic
        } else {
            idle
        }
    }
}

pub use conntrack::{ConnTrack, Connection, CtInstall, ProtoState, TcpState, Timeouts};

use crate::checksum;
use crate::packet::{HeaderInfo, Packet};
use crate::wire::{TcpSegment, tcp_flags};

/// Lowers the MSS option of a TCP SYN (or SYN-ACK) to `mss` if it is larger, updating the TCP checksum
/// incrementally. Returns true if it changed the packet. Anything else (not TCP, not a SYN, no MSS option,
/// malformed options) is left alone.
pub fn clamp_mss(p: &mut Packet, h: &HeaderInfo, mss: u16) -> bool {
    if p.tcp_flags(h).is_none_or(|f| f & tcp_flags::SYN == 0) {
        return false;
    }
    let Some(l4) = h.l4.and_then(|l4| l4.checked_sub(p.data_offset())) else {
        return false;
    };
    let Some(seg) = p.data_mut().get_mut(l4..) else {
        return false;
    };
    if seg.len() < TcpSegment::<&[u8]>::MIN_HEADER_LEN {
        return false;
    }
    let mut seg = TcpSegment::new_unchecked(seg);
    match seg.clamp_mss_option(mss) {
        Some(old) => {
            let c = checksum::update16(seg.checksum(), old, mss);
            seg.set_checksum(c);
            true
        }
        None => false,
    }
}

/// Registers the TCP/UDP elements.
pub fn register(r: &mut crate::registry::Registry) {
    r.add::<ConnTrack>();
}
