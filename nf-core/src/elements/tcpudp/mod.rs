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
    // The options that the segment holds (none if its data offset points past its end).
    let mut seg = TcpSegment::new_unchecked(seg);
    // The MSS option: kind 2, length 4, the value.
    let opts = seg.options();
    let mut i = 0;
    let at = loop {
        match opts.get(i) {
            None | Some(0) => return false,
            Some(1) => i += 1,
            Some(2) if opts.get(i + 1) == Some(&4) && i + 4 <= opts.len() => break i,
            Some(_) => match opts.get(i + 1) {
                Some(&len) if len >= 2 => i += usize::from(len),
                _ => return false,
            },
        }
    };
    let old = u16::from_be_bytes([opts[at + 2], opts[at + 3]]);
    if old <= mss {
        return false;
    }
    let c = checksum::update16(seg.checksum(), old, mss);
    seg.options_mut()[at + 2..at + 4].copy_from_slice(&mss.to_be_bytes());
    seg.set_checksum(c);
    true
}

/// Registers the TCP/UDP elements.
pub fn register(r: &mut crate::registry::Registry) {
    r.add::<ConnTrack>();
}
