//! ICMP (RFC 792) and ICMPv6 (RFC 4443) messages: type, code, checksum and the 4 bytes that follow.

use super::field::icmp as f;
use super::{Layer, Malformed, be16, be32, need, put16, put32, view};

view!(
    /// An ICMP or ICMPv6 message.
    IcmpMessage
);

impl<T: AsRef<[u8]>> IcmpMessage<T> {
    /// The header's length (type, code, checksum, the rest-of-header word).
    pub const HEADER_LEN: usize = 8;

    /// A view of `buffer`, which must hold the 8-byte header.
    pub fn new_checked(buffer: T) -> Result<Self, Malformed> {
        need(Layer::Icmp, buffer.as_ref(), Self::HEADER_LEN)?;
        Ok(Self::new_unchecked(buffer))
    }
    /// The message type.
    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.as_slice()[0]
    }
    /// The code.
    #[inline]
    pub fn code(&self) -> u8 {
        self.as_slice()[1]
    }
    /// The checksum.
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.as_slice(), f::CHECKSUM)
    }
    /// The rest-of-header word (echo: identifier and sequence; "fragmentation needed": the next-hop MTU
    /// in its low 16 bits).
    #[inline]
    pub fn rest(&self) -> u32 {
        be32(self.as_slice(), f::REST)
    }
    /// An echo's identifier (the high half of [`rest`](Self::rest)).
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        be16(self.as_slice(), 4)
    }
    /// What follows the header (an echo's data, an error's quoted packet).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.as_slice()[Self::HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IcmpMessage<T> {
    /// Sets type and code.
    #[inline]
    pub fn set_type_code(&mut self, t: u8, c: u8) {
        let b = self.buffer.as_mut();
        b[0] = t;
        b[1] = c;
    }
    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buffer.as_mut(), f::CHECKSUM, v);
    }
    /// Sets the rest-of-header word.
    #[inline]
    pub fn set_rest(&mut self, v: u32) {
        put32(self.buffer.as_mut(), f::REST, v);
    }
    /// Computes and writes an ICMP (v4) checksum over the whole buffer (ICMPv6's covers a
    /// pseudo-header: the caller's).
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = crate::checksum::checksum(self.buffer.as_ref());
        self.set_checksum(c);
    }
}

/// An ICMP header's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IcmpRepr {
    /// Type.
    pub msg_type: u8,
    /// Code.
    pub code: u8,
    /// The rest-of-header word.
    pub rest: u32,
}

impl IcmpRepr {
    /// "Destination unreachable, fragmentation needed and DF set" announcing `mtu` (RFC 1191).
    pub const fn frag_needed(mtu: u16) -> Self {
        IcmpRepr {
            msg_type: 3,
            code: 4,
            rest: mtu as u32,
        }
    }
    /// The fields of `m`.
    pub fn parse<T: AsRef<[u8]>>(m: &IcmpMessage<T>) -> Result<Self, Malformed> {
        let m = IcmpMessage::new_checked(m.as_slice())?;
        Ok(IcmpRepr {
            msg_type: m.msg_type(),
            code: m.code(),
            rest: m.rest(),
        })
    }
    /// Bytes [`emit`](Self::emit) writes.
    pub const fn header_len(&self) -> usize {
        8
    }
    /// Writes the header into `m` and, the payload being in place behind it, the ICMP (v4) checksum.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, m: &mut IcmpMessage<T>) {
        m.set_type_code(self.msg_type, self.code);
        m.set_rest(self.rest);
        m.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_round_trips_with_its_checksum() {
        let mut b = [0u8; 12];
        b[8..].copy_from_slice(b"ping");
        let r = IcmpRepr::frag_needed(1400);
        r.emit(&mut IcmpMessage::new_unchecked(&mut b[..]));
        let m = IcmpMessage::new_checked(&b[..]).unwrap();
        assert_eq!(IcmpRepr::parse(&m).unwrap(), r);
        assert_eq!(crate::checksum::checksum(&b), 0);
        assert!(IcmpMessage::new_checked(&b[..7]).is_err());
    }
}
