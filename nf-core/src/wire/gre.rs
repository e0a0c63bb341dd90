//! GRE headers (RFC 2784, with RFC 2890's key and sequence number).

use super::{Layer, Malformed, be16, be32, need, put16, put32, view};

view!(
    /// A GRE packet: flags and version, the payload's protocol (an EtherType), optional checksum, key
    /// and sequence number, then the payload.
    GrePacket
);

const C: u8 = 0x80;
const K: u8 = 0x20;
const S: u8 = 0x10;

impl<T: AsRef<[u8]>> GrePacket<T> {
    /// The header's length without options.
    pub const MIN_HEADER_LEN: usize = 4;

    /// A view of `buffer` after checking version 0 and that the header, with the options its flags
    /// announce, fits.
    pub fn new_checked(buffer: T) -> Result<Self, Malformed> {
        need(Layer::Gre, buffer.as_ref(), Self::MIN_HEADER_LEN)?;
        let g = Self::new_unchecked(buffer);
        if g.version() != 0 {
            return Err(Malformed::Header(Layer::Gre));
        }
        need(Layer::Gre, g.as_slice(), g.header_len())?;
        Ok(g)
    }
    /// The checksum-present flag.
    #[inline]
    pub fn has_checksum(&self) -> bool {
        self.as_slice()[0] & C != 0
    }
    /// The key-present flag.
    #[inline]
    pub fn has_key(&self) -> bool {
        self.as_slice()[0] & K != 0
    }
    /// The sequence-present flag.
    #[inline]
    pub fn has_seq(&self) -> bool {
        self.as_slice()[0] & S != 0
    }
    /// The version (0 for RFC 2784).
    #[inline]
    pub fn version(&self) -> u8 {
        self.as_slice()[1] & 0x07
    }
    /// The payload's protocol (an EtherType).
    #[inline]
    pub fn protocol(&self) -> u16 {
        be16(self.as_slice(), 2)
    }
    /// The header's length with its options.
    #[inline]
    pub fn header_len(&self) -> usize {
        4 * (1
            + usize::from(self.has_checksum())
            + usize::from(self.has_key())
            + usize::from(self.has_seq()))
    }
    /// The key, if present.
    #[inline]
    pub fn key(&self) -> Option<u32> {
        self.has_key()
            .then(|| be32(self.as_slice(), 4 + 4 * usize::from(self.has_checksum())))
    }
    /// The payload.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.as_slice()[self.header_len()..]
    }
}

/// A GRE header's fields (no checksum, no sequence number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GreRepr {
    /// The payload's protocol (an EtherType).
    pub protocol: u16,
    /// The key (RFC 2890), if any.
    pub key: Option<u32>,
}

impl GreRepr {
    /// The fields of `g`.
    pub fn parse<T: AsRef<[u8]>>(g: &GrePacket<T>) -> Result<Self, Malformed> {
        let g = GrePacket::new_checked(g.as_slice())?;
        Ok(GreRepr {
            protocol: g.protocol(),
            key: g.key(),
        })
    }
    /// Bytes [`emit`](Self::emit) writes.
    pub const fn header_len(&self) -> usize {
        if self.key.is_some() { 8 } else { 4 }
    }
    /// Writes the header into `buf`.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, g: &mut GrePacket<T>) {
        let b = g.buffer.as_mut();
        b[0] = if self.key.is_some() { K } else { 0 };
        b[1] = 0;
        put16(b, 2, self.protocol);
        if let Some(k) = self.key {
            put32(b, 4, k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_with_and_without_a_key() {
        for key in [None, Some(0xdead_beef)] {
            let r = GreRepr {
                protocol: 0x0800,
                key,
            };
            let mut b = [0u8; 12];
            r.emit(&mut GrePacket::new_unchecked(&mut b[..]));
            let g = GrePacket::new_checked(&b[..]).unwrap();
            assert_eq!(GreRepr::parse(&g).unwrap(), r);
            assert_eq!(g.payload().len(), 12 - r.header_len());
        }
        // Flags announcing options the buffer lacks, and a version other than 0, are refused.
        assert!(GrePacket::new_checked(&[0xb0u8, 0, 8, 0, 0, 0][..]).is_err());
        assert!(GrePacket::new_checked(&[0u8, 1, 8, 0][..]).is_err());
    }
}
