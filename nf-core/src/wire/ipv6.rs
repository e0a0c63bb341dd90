//! IPv6 fixed headers (RFC 8200).

use super::field::ipv6 as f;
use super::{Layer, Malformed, be16, be32, need, put16, put32, view};
use std::net::Ipv6Addr;

view!(
    /// An IPv6 packet: the 40-byte fixed header and what follows it (extension headers, payload).
    Ipv6Packet
);

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// The fixed header's length.
    pub const HEADER_LEN: usize = 40;

    /// A view of `buffer`, which must hold the fixed header of an IPv6 packet.
    pub fn new_checked(buffer: T) -> Result<Self, Malformed> {
        let b = buffer.as_ref();
        need(Layer::Ipv6, b, Self::HEADER_LEN)?;
        if b[0] >> 4 != 6 {
            return Err(Malformed::IpVersion(b[0] >> 4));
        }
        Ok(Self::new_unchecked(buffer))
    }
    /// The version nibble.
    #[inline]
    pub fn version(&self) -> u8 {
        self.as_slice()[0] >> 4
    }
    /// The traffic class.
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        ((be16(self.as_slice(), 0) >> 4) & 0xff) as u8
    }
    /// The flow label (20 bits).
    #[inline]
    pub fn flow_label(&self) -> u32 {
        be32(self.as_slice(), 0) & 0xf_ffff
    }
    /// The payload length (what follows the fixed header).
    #[inline]
    pub fn payload_len(&self) -> u16 {
        be16(self.as_slice(), f::LENGTH)
    }
    /// The next header ([`ip_proto`](super::ip_proto)).
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.as_slice()[f::NXT_HDR]
    }
    /// The hop limit.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.as_slice()[f::HOP_LIMIT]
    }
    /// The source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv6Addr {
        let b: [u8; 16] = self.as_slice()[f::SRC_ADDR..f::SRC_ADDR + 16]
            .try_into()
            .unwrap_or([0; 16]);
        Ipv6Addr::from(b)
    }
    /// The destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv6Addr {
        let b: [u8; 16] = self.as_slice()[f::DST_ADDR..f::DST_ADDR + 16]
            .try_into()
            .unwrap_or([0; 16]);
        Ipv6Addr::from(b)
    }
    /// The length of the whole packet its header announces (40 + payload length).
    #[inline]
    pub fn total_len(&self) -> usize {
        Self::HEADER_LEN + usize::from(self.payload_len())
    }
    /// What follows the fixed header, to the announced length (or the buffer's end, if shorter).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let b = self.as_slice();
        &b[Self::HEADER_LEN..self.total_len().min(b.len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Sets version 6, the traffic class and the flow label.
    #[inline]
    pub fn set_version_class_label(&mut self, traffic_class: u8, flow_label: u32) {
        put32(
            self.buffer.as_mut(),
            0,
            (6 << 28) | (u32::from(traffic_class) << 20) | (flow_label & 0xf_ffff),
        );
    }
    /// Sets the payload length.
    #[inline]
    pub fn set_payload_len(&mut self, v: u16) {
        put16(self.buffer.as_mut(), f::LENGTH, v);
    }
    /// Sets the next header.
    #[inline]
    pub fn set_next_header(&mut self, v: u8) {
        self.buffer.as_mut()[f::NXT_HDR] = v;
    }
    /// Sets the hop limit.
    #[inline]
    pub fn set_hop_limit(&mut self, v: u8) {
        self.buffer.as_mut()[f::HOP_LIMIT] = v;
    }
    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[f::SRC_ADDR..f::SRC_ADDR + 16].copy_from_slice(&a.octets());
    }
    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[f::DST_ADDR..f::DST_ADDR + 16].copy_from_slice(&a.octets());
    }
}

/// An IPv6 fixed header's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Repr {
    /// Source address.
    pub src_addr: Ipv6Addr,
    /// Destination address.
    pub dst_addr: Ipv6Addr,
    /// Next header.
    pub next_header: u8,
    /// Bytes after the fixed header.
    pub payload_len: usize,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class.
    pub traffic_class: u8,
    /// Flow label (20 bits).
    pub flow_label: u32,
}

impl Ipv6Repr {
    /// The fields of `p`.
    pub fn parse<T: AsRef<[u8]>>(p: &Ipv6Packet<T>) -> Result<Self, Malformed> {
        let p = Ipv6Packet::new_checked(p.as_slice())?;
        Ok(Ipv6Repr {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            next_header: p.next_header(),
            payload_len: usize::from(p.payload_len()),
            hop_limit: p.hop_limit(),
            traffic_class: p.traffic_class(),
            flow_label: p.flow_label(),
        })
    }
    /// Bytes [`emit`](Self::emit) writes.
    pub const fn header_len(&self) -> usize {
        40
    }
    /// Writes the fixed header into `p`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Ipv6Packet<T>) {
        p.set_version_class_label(self.traffic_class, self.flow_label);
        p.set_payload_len(self.payload_len as u16);
        p.set_next_header(self.next_header);
        p.set_hop_limit(self.hop_limit);
        p.set_src_addr(self.src_addr);
        p.set_dst_addr(self.dst_addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_round_trips() {
        let r = Ipv6Repr {
            src_addr: "2001:db8::1".parse().unwrap(),
            dst_addr: "2001:db8::2".parse().unwrap(),
            next_header: 6,
            payload_len: 20,
            hop_limit: 64,
            traffic_class: 0xb8,
            flow_label: 0x12345,
        };
        let mut b = [0u8; 60];
        r.emit(&mut Ipv6Packet::new_unchecked(&mut b[..]));
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(Ipv6Repr::parse(&p).unwrap(), r);
        assert_eq!(p.payload().len(), 20);
        assert!(Ipv6Packet::new_checked(&b[..39]).is_err());
        b[0] = 0x45;
        assert_eq!(
            Ipv6Packet::new_checked(&b[..]).unwrap_err(),
            Malformed::IpVersion(4)
        );
    }
}
