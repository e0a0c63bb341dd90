//! UDP headers (RFC 768).

use super::field::udp as f;
use super::{Layer, Malformed, be16, need, put16, view};

view!(
    /// A UDP datagram: the 8-byte header and the payload.
    UdpDatagram
);

impl<T: AsRef<[u8]>> UdpDatagram<T> {
    /// The header's length.
    pub const HEADER_LEN: usize = 8;

    /// A view of `buffer`, which must hold the header.
    pub fn new_checked(buffer: T) -> Result<Self, Malformed> {
        need(Layer::Udp, buffer.as_ref(), Self::HEADER_LEN)?;
        Ok(Self::new_unchecked(buffer))
    }
    /// The source port.
    #[inline(always)]
    pub fn src_port(&self) -> u16 {
        be16(self.as_slice(), f::SRC_PORT)
    }
    /// The destination port.
    #[inline(always)]
    pub fn dst_port(&self) -> u16 {
        be16(self.as_slice(), f::DST_PORT)
    }
    /// The source (`src`) or destination port (TCP's sit at the same offsets).
    #[inline(always)]
    pub fn port(&self, src: bool) -> u16 {
        be16(self.as_slice(), if src { f::SRC_PORT } else { f::DST_PORT })
    }
    /// The length field (header and payload).
    #[inline]
    pub fn len(&self) -> u16 {
        be16(self.as_slice(), f::LENGTH)
    }
    /// Whether the length field says there is no payload.
    #[inline]
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= Self::HEADER_LEN
    }
    /// The checksum (0: none, allowed over IPv4).
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.as_slice(), f::CHECKSUM)
    }
    /// The payload, to the length field (or the buffer's end, if shorter).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let b = self.as_slice();
        let end = usize::from(self.len()).clamp(Self::HEADER_LEN, b.len().max(Self::HEADER_LEN));
        &b[Self::HEADER_LEN..end.min(b.len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpDatagram<T> {
    /// Sets the source port.
    #[inline]
    pub fn set_src_port(&mut self, v: u16) {
        put16(self.buffer.as_mut(), f::SRC_PORT, v);
    }
    /// Sets the destination port.
    #[inline]
    pub fn set_dst_port(&mut self, v: u16) {
        put16(self.buffer.as_mut(), f::DST_PORT, v);
    }
    /// Sets the source (`src`) or destination port.
    #[inline(always)]
    pub fn set_port(&mut self, src: bool, v: u16) {
        put16(
            self.buffer.as_mut(),
            if src { f::SRC_PORT } else { f::DST_PORT },
            v,
        );
    }
    /// Sets the length field.
    #[inline]
    pub fn set_len(&mut self, v: u16) {
        put16(self.buffer.as_mut(), f::LENGTH, v);
    }
    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buffer.as_mut(), f::CHECKSUM, v);
    }
}

/// A UDP header's fields (the checksum is left zero: none, as IPv4 allows, or the caller's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UdpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Bytes after the header.
    pub payload_len: usize,
}

impl UdpRepr {
    /// The fields of `d`.
    pub fn parse<T: AsRef<[u8]>>(d: &UdpDatagram<T>) -> Result<Self, Malformed> {
        let d = UdpDatagram::new_checked(d.as_slice())?;
        if usize::from(d.len()) < UdpDatagram::<&[u8]>::HEADER_LEN {
            return Err(Malformed::Header(Layer::Udp));
        }
        Ok(UdpRepr {
            src_port: d.src_port(),
            dst_port: d.dst_port(),
            payload_len: usize::from(d.len()) - UdpDatagram::<&[u8]>::HEADER_LEN,
        })
    }
    /// Bytes [`emit`](Self::emit) writes.
    pub const fn header_len(&self) -> usize {
        8
    }
    /// Writes the header (checksum zero) into `d`.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, d: &mut UdpDatagram<T>) {
        d.set_src_port(self.src_port);
        d.set_dst_port(self.dst_port);
        d.set_len((8 + self.payload_len) as u16);
        d.set_checksum(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_round_trips() {
        let r = UdpRepr {
            src_port: 53,
            dst_port: 4789,
            payload_len: 3,
        };
        let mut b = [0u8; 11];
        r.emit(&mut UdpDatagram::new_unchecked(&mut b[..]));
        let d = UdpDatagram::new_checked(&b[..]).unwrap();
        assert_eq!(UdpRepr::parse(&d).unwrap(), r);
        assert_eq!(d.payload().len(), 3);
        assert!(UdpDatagram::new_checked(&b[..7]).is_err());
        b[4..6].copy_from_slice(&2u16.to_be_bytes());
        assert!(UdpRepr::parse(&UdpDatagram::new_checked(&b[..]).unwrap()).is_err());
        assert!(
            UdpDatagram::new_checked(&b[..])
                .unwrap()
                .payload()
                .is_empty()
        );
    }
}
