//! TCP and UDP elements: the connection tracker.

pub mod conntrack;

pub use conntrack::{ConnTrack, Connection, ProtoState, TcpState, Timeouts};

use crate::checksum;
use crate::packet::{HeaderInfo, Packet};

/// Lowers the MSS option of a TCP SYN (or SYN-ACK) to `mss` if it is larger, updating the TCP checksum
/// incrementally. Returns true if it changed the packet. Anything else (not TCP, not a SYN, no MSS option,
/// malformed options) is left alone.
pub fn clamp_mss(p: &mut Packet, h: &HeaderInfo, mss: u16) -> bool {
    let Some(l4) = h.l4 else { return false };
    if h.proto != crate::packet::proto::TCP {
        return false;
    }
    let b = p.buffer();
    let (Some(&doff), Some(&flags)) = (b.get(l4 + 12), b.get(l4 + 13)) else {
        return false;
    };
    if flags & 0x02 == 0 {
        return false;
    }
    let end = (l4 + usize::from(doff >> 4) * 4).min(b.len());
    let mut i = l4 + 20;
    while i < end {
        match b[i] {
            0 => return false,
            1 => i += 1,
            2 if i + 4 <= end && b[i + 1] == 4 => {
                let old = u16::from_be_bytes([b[i + 2], b[i + 3]]);
                if old <= mss {
                    return false;
                }
                let co = l4 + 16;
                let c = u16::from_be_bytes([b[co], b[co + 1]]);
                let c = checksum::update16(c, old, mss);
                let at = i - p.data_offset();
                let co = co - p.data_offset();
                let d = p.data_mut();
                d[at + 2..at + 4].copy_from_slice(&mss.to_be_bytes());
                d[co..co + 2].copy_from_slice(&c.to_be_bytes());
                return true;
            }
            _ => {
                let Some(&len) = b.get(i + 1) else {
                    return false;
                };
                if len < 2 {
                    return false;
                }
                i += usize::from(len);
            }
        }
    }
    false
}

/// Registers the TCP/UDP elements.
pub fn register(r: &mut crate::registry::Registry) {
    conntrack::register(r);
}
