//! IPComp headers (RFC 3173).

use super::{Layer, Malformed, be16, need, put16, view};

view!(
    /// An IPComp header (4 bytes: next header, flags, compression parameter index) and the compressed
    /// payload.
    IpCompHeader
);

impl<T: AsRef<[u8]>> IpCompHeader<T> {
    /// The header's length.
    pub const HEADER_LEN: usize = 4;

    /// A view of `buffer`, which must hold the header.
    pub fn new_checked(buffer: T) -> Result<Self, Malformed> {
        need(Layer::IpComp, buffer.as_ref(), Self::HEADER_LEN)?;
        Ok(Self::new_unchecked(buffer))
    }
    /// The protocol of the payload once decompressed.
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.as_slice()[0]
    }
    /// The compression parameter index (the algorithm).
    #[inline]
    pub fn cpi(&self) -> u16 {
        be16(self.as_slice(), 2)
    }
    /// The compressed payload.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.as_slice()[Self::HEADER_LEN..]
    }
}

/// An IPComp header's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IpCompRepr {
    /// The protocol of the payload once decompressed.
    pub next_header: u8,
    /// The compression parameter index.
    pub cpi: u16,
}

impl IpCompRepr {
    /// The fields of `h`.
    pub fn parse<T: AsRef<[u8]>>(h: &IpCompHeader<T>) -> Result<Self, Malformed> {
        let h = IpCompHeader::new_checked(h.as_slice())?;
        Ok(IpCompRepr {
            next_header: h.next_header(),
            cpi: h.cpi(),
        })
    }
    /// Bytes [`emit`](Self::emit) writes.
    pub const fn header_len(&self) -> usize {
        4
    }
    /// Writes the header into `h`.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, h: &mut IpCompHeader<T>) {
        let b = h.buffer.as_mut();
        b[0] = self.next_header;
        b[1] = 0;
        put16(b, 2, self.cpi);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_round_trips() {
        let r = IpCompRepr {
            next_header: 6,
            cpi: 0x8001,
        };
        let mut b = [0u8; 6];
        r.emit(&mut IpCompHeader::new_unchecked(&mut b[..]));
        let h = IpCompHeader::new_checked(&b[..]).unwrap();
        assert_eq!(IpCompRepr::parse(&h).unwrap(), r);
        assert_eq!(h.payload().len(), 2);
        assert!(IpCompHeader::new_checked(&b[..3]).is_err());
    }
}
