//! IPv4 headers (RFC 791).

use super::field::ipv4 as f;
use super::{Layer, Malformed, be16, be32, need, put16, put32, view};
use crate::checksum;
use std::net::Ipv4Addr;

view!(
    /// An IPv4 packet: the header (with options) and what follows it.
    Ipv4Packet
);

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// The header's length without options.
    pub const MIN_HEADER_LEN: usize = 20;

    /// A view of `buffer` after checking what every accessor relies on: version 4, a header length of
    /// at least 20 bytes that the buffer holds, and a total length no shorter than the header. The total
    /// length may exceed the buffer (a truncated capture); [`is_whole`](Self::is_whole) tells.
    pub fn new_checked(buffer: T) -> Result<Self, Malformed> {
        let b = buffer.as_ref();
        need(Layer::Ipv4, b, Self::MIN_HEADER_LEN)?;
        if b[0] >> 4 != 4 {
            return Err(Malformed::IpVersion(b[0] >> 4));
        }
        let p = Self::new_unchecked(buffer);
        let hl = p.header_len();
        if hl < Self::MIN_HEADER_LEN {
            return Err(Malformed::Header(Layer::Ipv4));
        }
        need(Layer::Ipv4, p.as_slice(), hl)?;
        if usize::from(p.total_len()) < hl {
            return Err(Malformed::Field(
                "IPv4 total length shorter than its header",
            ));
        }
        Ok(p)
    }
    /// The version nibble.
    #[inline(always)]
    pub fn version(&self) -> u8 {
        self.as_slice()[0] >> 4
    }
    /// The header's length in bytes (IHL × 4).
    #[inline(always)]
    pub fn header_len(&self) -> usize {
        usize::from(self.as_slice()[0] & 0x0f) * 4
    }
    /// Type of service (DSCP and ECN).
    #[inline]
    pub fn tos(&self) -> u8 {
        self.as_slice()[1]
    }
    /// The total length (header and payload).
    #[inline(always)]
    pub fn total_len(&self) -> u16 {
        be16(self.as_slice(), f::LENGTH)
    }
    /// The identification.
    #[inline]
    pub fn ident(&self) -> u16 {
        be16(self.as_slice(), f::IDENT)
    }
    /// Don't fragment.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.as_slice()[f::FLG_OFF] & 0x40 != 0
    }
    /// More fragments.
    #[inline]
    pub fn more_frags(&self) -> bool {
        self.as_slice()[f::FLG_OFF] & 0x20 != 0
    }
    /// The fragment offset, in bytes.
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (be16(self.as_slice(), f::FLG_OFF) & 0x1fff) * 8
    }
    /// Whether this is the first fragment or not a fragment at all (offset 0): the one whose payload
    /// starts with the transport header.
    #[inline(always)]
    pub fn is_first_fragment(&self) -> bool {
        be16(self.as_slice(), f::FLG_OFF) & 0x1fff == 0
    }
    /// Whether this is a fragment (MF set or a non-zero offset).
    #[inline(always)]
    pub fn is_fragment(&self) -> bool {
        be16(self.as_slice(), f::FLG_OFF) & 0x3fff != 0
    }
    /// The time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.as_slice()[f::TTL]
    }
    /// The protocol of the payload ([`ip_proto`](super::ip_proto)).
    #[inline(always)]
    pub fn protocol(&self) -> u8 {
        self.as_slice()[f::PROTOCOL]
    }
    /// The header checksum.
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.as_slice(), f::CHECKSUM)
    }
    /// The source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(be32(self.as_slice(), f::SRC_ADDR))
    }
    /// The source (`src`) or destination address as a number: for rewrites that choose the side at run
    /// time and work on words (NAT's incremental checksums), without a branch per access.
    #[inline(always)]
    pub fn addr_word(&self, src: bool) -> u32 {
        be32(self.as_slice(), if src { f::SRC_ADDR } else { f::DST_ADDR })
    }
    /// The source address's bytes, in place (no copy into an `Ipv4Addr`: a test of one octet reads one
    /// byte).
    #[inline(always)]
    pub fn src_octets(&self) -> &[u8; 4] {
        const NONE: [u8; 4] = [0; 4];
        self.as_slice()[f::SRC_ADDR..f::SRC_ADDR + 4]
            .try_into()
            .unwrap_or(&NONE)
    }
    /// The destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(be32(self.as_slice(), f::DST_ADDR))
    }
    /// The options (between the fixed header and the payload).
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.as_slice()[Self::MIN_HEADER_LEN..self.header_len()]
    }
    /// Whether the header checksum is right.
    #[inline(always)]
    pub fn verify_checksum(&self) -> bool {
        let b = self.as_slice();
        let h = b.get(..self.header_len()).unwrap_or(b);
        match <&[u8; 20]>::try_from(h) {
            // No options (nearly every packet): the unrolled sum, inlined.
            Ok(h20) => checksum::ipv4_header(h20) == 0,
            Err(_) => checksum::checksum(h) == 0,
        }
    }
    /// Whether the buffer holds the whole datagram (its total length) and it is not a fragment: what a
    /// decapsulator or a compressor needs before it touches the payload.
    #[inline]
    pub fn is_whole(&self) -> bool {
        usize::from(self.total_len()) <= self.as_slice().len() && !self.is_fragment()
    }
    /// The payload: from the end of the header to the total length (or the buffer's end, if shorter).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let b = self.as_slice();
        let end = usize::from(self.total_len()).min(b.len());
        &b[self.header_len().min(end)..end]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets version 4 and the header length (a multiple of 4, 20 to 60).
    #[inline]
    pub fn set_version_and_header_len(&mut self, header_len: usize) {
        self.buffer.as_mut()[0] = 0x40 | ((header_len / 4) as u8 & 0x0f);
    }
    /// Sets the type of service.
    #[inline]
    pub fn set_tos(&mut self, v: u8) {
        self.buffer.as_mut()[1] = v;
    }
    /// Sets the total length.
    #[inline]
    pub fn set_total_len(&mut self, v: u16) {
        put16(self.buffer.as_mut(), f::LENGTH, v);
    }
    /// Sets the identification.
    #[inline]
    pub fn set_ident(&mut self, v: u16) {
        put16(self.buffer.as_mut(), f::IDENT, v);
    }
    /// Sets the flags and fragment offset (in bytes, a multiple of 8).
    #[inline]
    pub fn set_frag(&mut self, dont_frag: bool, more_frags: bool, offset: u16) {
        let v =
            (u16::from(dont_frag) << 14) | (u16::from(more_frags) << 13) | ((offset / 8) & 0x1fff);
        put16(self.buffer.as_mut(), f::FLG_OFF, v);
    }
    /// Sets the TTL.
    #[inline]
    pub fn set_ttl(&mut self, v: u8) {
        self.buffer.as_mut()[f::TTL] = v;
    }
    /// Sets the protocol.
    #[inline]
    pub fn set_protocol(&mut self, v: u8) {
        self.buffer.as_mut()[f::PROTOCOL] = v;
    }
    /// Sets the checksum field (see [`fill_checksum`](Self::fill_checksum)).
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buffer.as_mut(), f::CHECKSUM, v);
    }
    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, a: Ipv4Addr) {
        put32(self.buffer.as_mut(), f::SRC_ADDR, u32::from(a));
    }
    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, a: Ipv4Addr) {
        put32(self.buffer.as_mut(), f::DST_ADDR, u32::from(a));
    }
    /// Sets the source (`src`) or destination address from a number (see [`addr_word`](Self::addr_word)).
    #[inline(always)]
    pub fn set_addr_word(&mut self, src: bool, a: u32) {
        put32(
            self.buffer.as_mut(),
            if src { f::SRC_ADDR } else { f::DST_ADDR },
            a,
        );
    }
    /// Computes and writes the header checksum.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let hl = self.header_len();
        let h = &self.buffer.as_ref()[..hl];
        let c = match <&[u8; 20]>::try_from(h) {
            Ok(h20) => checksum::ipv4_header(h20),
            Err(_) => checksum::checksum(h),
        };
        self.set_checksum(c);
    }
    /// The payload, mutable (to the total length or the buffer's end).
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (hl, total) = (self.header_len(), usize::from(self.total_len()));
        let b = self.buffer.as_mut();
        let end = total.min(b.len());
        &mut b[hl.min(end)..end]
    }
}

/// An IPv4 header's fields (no options).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Protocol of the payload.
    pub protocol: u8,
    /// Bytes after the header.
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
    /// Type of service.
    pub tos: u8,
    /// Identification.
    pub ident: u16,
    /// Don't fragment.
    pub dont_frag: bool,
}

impl Default for Ipv4Repr {
    fn default() -> Self {
        Ipv4Repr {
            src_addr: Ipv4Addr::UNSPECIFIED,
            dst_addr: Ipv4Addr::UNSPECIFIED,
            protocol: 0,
            payload_len: 0,
            ttl: 64,
            tos: 0,
            ident: 0,
            dont_frag: false,
        }
    }
}

impl Ipv4Repr {
    /// The fields of `p`: a whole datagram (not a fragment; its options are skipped).
    pub fn parse<T: AsRef<[u8]>>(p: &Ipv4Packet<T>) -> Result<Self, Malformed> {
        let p = Ipv4Packet::new_checked(p.as_slice())?;
        if p.is_fragment() {
            return Err(Malformed::Field("an IPv4 fragment"));
        }
        Ok(Ipv4Repr {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            protocol: p.protocol(),
            payload_len: usize::from(p.total_len()) - p.header_len(),
            ttl: p.ttl(),
            tos: p.tos(),
            ident: p.ident(),
            dont_frag: p.dont_frag(),
        })
    }
    /// Bytes [`emit`](Self::emit) writes.
    pub const fn header_len(&self) -> usize {
        20
    }
    /// Writes the 20-byte header, checksum included, into `p`.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Ipv4Packet<T>) {
        p.buffer.as_mut()[..20].copy_from_slice(&self.to_bytes());
    }

    /// The 20-byte header, checksum included. The header is assembled in a local array (whose every
    /// offset is known to be in bounds) and summed there, then stored with one copy: half the
    /// instructions of writing and summing it in place (BENCHMARKS.md, "The wire layer").
    #[inline]
    pub fn to_bytes(&self) -> [u8; 20] {
        let mut h = [0u8; 20];
        let mut v = Ipv4Packet::new_unchecked(&mut h[..]);
        v.set_version_and_header_len(20);
        v.set_tos(self.tos);
        v.set_total_len((20 + self.payload_len) as u16);
        v.set_ident(self.ident);
        v.set_frag(self.dont_frag, false, 0);
        v.set_ttl(self.ttl);
        v.set_protocol(self.protocol);
        v.set_src_addr(self.src_addr);
        v.set_dst_addr(self.dst_addr);
        let c = checksum::ipv4_header(&h);
        put16(&mut h, f::CHECKSUM, c);
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ip_proto;

    #[test]
    fn checked_views_refuse_what_accessors_cannot_read() {
        assert!(Ipv4Packet::new_checked(&[0x45u8; 19][..]).is_err());
        let mut b = [0u8; 24];
        b[0] = 0x46; // IHL 6: 24 bytes
        b[2..4].copy_from_slice(&24u16.to_be_bytes());
        assert!(Ipv4Packet::new_checked(&b[..]).is_ok());
        assert!(Ipv4Packet::new_checked(&b[..23]).is_err());
        b[0] = 0x44; // IHL 4: under 20
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            Malformed::Header(Layer::Ipv4)
        );
        b[0] = 0x65;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            Malformed::IpVersion(6)
        );
        b[0] = 0x45;
        b[2..4].copy_from_slice(&10u16.to_be_bytes());
        assert!(Ipv4Packet::new_checked(&b[..]).is_err());
    }

    #[test]
    fn a_header_round_trips_and_fragments_are_told() {
        let r = Ipv4Repr {
            src_addr: Ipv4Addr::new(192, 0, 2, 1),
            dst_addr: Ipv4Addr::new(198, 51, 100, 7),
            protocol: ip_proto::TCP,
            payload_len: 20,
            ttl: 63,
            tos: 0x10,
            ident: 0x1234,
            dont_frag: true,
        };
        let mut b = [0u8; 40];
        r.emit(&mut Ipv4Packet::new_unchecked(&mut b[..]));
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert!(p.verify_checksum() && p.is_whole());
        assert_eq!(Ipv4Repr::parse(&p).unwrap(), r);
        assert_eq!(p.payload().len(), 20);
        let mut q = Ipv4Packet::new_unchecked(&mut b[..]);
        q.set_frag(false, true, 8);
        assert!(q.is_fragment() && !q.is_whole());
        assert_eq!(q.frag_offset(), 8);
        assert!(Ipv4Repr::parse(&q).is_err());
    }
}
