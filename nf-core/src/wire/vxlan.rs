//! VXLAN headers (RFC 7348).

use super::{Layer, Malformed, be32, need, put32, view};

/// The IANA UDP port of VXLAN.
pub const VXLAN_PORT: u16 = 4789;

view!(
    /// A VXLAN header (8 bytes: flags with the I bit, the 24-bit VNI) and the Ethernet frame it carries.
    VxlanHeader
);

impl<T: AsRef<[u8]>> VxlanHeader<T> {
    /// The header's length.
    pub const HEADER_LEN: usize = 8;

    /// A view of `buffer`, which must hold the header with its I flag set (a valid VNI).
    pub fn new_checked(buffer: T) -> Result<Self, Malformed> {
        need(Layer::Vxlan, buffer.as_ref(), Self::HEADER_LEN)?;
        let v = Self::new_unchecked(buffer);
        if !v.vni_valid() {
            return Err(Malformed::Field("VXLAN without the I flag"));
        }
        Ok(v)
    }
    /// The I flag: the VNI is valid.
    #[inline]
    pub fn vni_valid(&self) -> bool {
        self.as_slice()[0] & 0x08 != 0
    }
    /// The VXLAN network identifier.
    #[inline]
    pub fn vni(&self) -> u32 {
        be32(self.as_slice(), 4) >> 8
    }
    /// The inner Ethernet frame.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.as_slice()[Self::HEADER_LEN..]
    }
}

/// A VXLAN header's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VxlanRepr {
    /// The VXLAN network identifier (24 bits).
    pub vni: u32,
}

impl VxlanRepr {
    /// The fields of `v`.
    pub fn parse<T: AsRef<[u8]>>(v: &VxlanHeader<T>) -> Result<Self, Malformed> {
        let v = VxlanHeader::new_checked(v.as_slice())?;
        Ok(VxlanRepr { vni: v.vni() })
    }
    /// Bytes [`emit`](Self::emit) writes.
    pub const fn header_len(&self) -> usize {
        8
    }
    /// Writes the header into `v`.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, v: &mut VxlanHeader<T>) {
        let b = v.buffer.as_mut();
        put32(b, 0, 0x0800_0000);
        put32(b, 4, (self.vni & 0xff_ffff) << 8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_round_trips_and_needs_the_i_flag() {
        let r = VxlanRepr { vni: 0x123456 };
        let mut b = [0u8; 8];
        r.emit(&mut VxlanHeader::new_unchecked(&mut b[..]));
        assert_eq!(b, [0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0]);
        assert_eq!(
            VxlanRepr::parse(&VxlanHeader::new_checked(&b[..]).unwrap()).unwrap(),
            r
        );
        b[0] = 0;
        assert!(VxlanHeader::new_checked(&b[..]).is_err());
    }
}
