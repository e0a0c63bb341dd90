//! TCP and UDP elements (Click's `tcpudp` package): the connection tracker, with the states and timeouts
//! of Linux's conntrack (whose replication conntrackd does for kernel boxes), and MSS clamping.

pub mod conntrack;

pub use conntrack::{ConnTrack, Connection, ProtoState, TcpState, Timeouts};

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
