//! Ethernet II frames and 802.1Q / 802.1ad tags.

use super::{Layer, Malformed, be16, need, put16, view};

view!(
    /// An Ethernet II frame: destination and source addresses, EtherType, payload.
    EthernetFrame
);

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// The header's length.
    pub const HEADER_LEN: usize = 14;

    /// A view of `buffer`, which must hold the 14-byte header.
    pub fn new_checked(buffer: T) -> Result<Self, Malformed> {
        need(Layer::Ethernet, buffer.as_ref(), Self::HEADER_LEN)?;
        Ok(Self::new_unchecked(buffer))
    }
    /// The destination address.
    #[inline]
    pub fn dst_addr(&self) -> [u8; 6] {
        let b = self.as_slice();
        [b[0], b[1], b[2], b[3], b[4], b[5]]
    }
    /// The source address.
    #[inline]
    pub fn src_addr(&self) -> [u8; 6] {
        let b = self.as_slice();
        [b[6], b[7], b[8], b[9], b[10], b[11]]
    }
    /// The EtherType (of the payload, or [`ethertype::VLAN`](super::ethertype::VLAN) when a tag follows).
    #[inline]
    pub fn ethertype(&self) -> u16 {
        be16(self.as_slice(), 12)
    }
    /// What follows the header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.as_slice()[Self::HEADER_LEN..]
    }
    /// The offset of the network header: after the Ethernet header and up to three VLAN tags, when the
    /// EtherType that follows is IPv4 or IPv6.
    #[inline]
    pub fn ip_offset(&self) -> Result<usize, Malformed> {
        let b = self.as_slice();
        let mut off = Self::HEADER_LEN;
        let mut ty = self.ethertype();
        for _ in 0..3 {
            if !super::ethertype::is_vlan(ty) {
                break;
            }
            need(Layer::Vlan, b, off + VlanTag::<&[u8]>::LEN)?;
            ty = be16(b, off + 2);
            off += VlanTag::<&[u8]>::LEN;
        }
        if ty == super::ethertype::IPV4 || ty == super::ethertype::IPV6 {
            Ok(off)
        } else {
            Err(Malformed::Field("not an IP frame"))
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, a: [u8; 6]) {
        self.buffer.as_mut()[0..6].copy_from_slice(&a);
    }
    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, a: [u8; 6]) {
        self.buffer.as_mut()[6..12].copy_from_slice(&a);
    }
    /// Sets the EtherType.
    #[inline]
    pub fn set_ethertype(&mut self, t: u16) {
        put16(self.buffer.as_mut(), 12, t);
    }
    /// What follows the header, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[Self::HEADER_LEN..]
    }
}

/// An Ethernet II header's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EthernetRepr {
    /// Source address.
    pub src_addr: [u8; 6],
    /// Destination address.
    pub dst_addr: [u8; 6],
    /// EtherType.
    pub ethertype: u16,
}

impl EthernetRepr {
    /// The fields of `frame`.
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Result<Self, Malformed> {
        need(
            Layer::Ethernet,
            frame.as_slice(),
            EthernetFrame::<T>::HEADER_LEN,
        )?;
        Ok(EthernetRepr {
            src_addr: frame.src_addr(),
            dst_addr: frame.dst_addr(),
            ethertype: frame.ethertype(),
        })
    }
    /// Bytes [`emit`](Self::emit) writes.
    pub const fn header_len(&self) -> usize {
        14
    }
    /// Writes the header into `frame`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut EthernetFrame<T>) {
        frame.set_dst_addr(self.dst_addr);
        frame.set_src_addr(self.src_addr);
        frame.set_ethertype(self.ethertype);
    }
}

view!(
    /// An 802.1Q or 802.1ad tag (the 4 bytes after an EtherType of 0x8100 / 0x88a8): priority, drop
    /// eligibility, VLAN ID and the EtherType that follows.
    VlanTag
);

impl<T: AsRef<[u8]>> VlanTag<T> {
    /// The tag's length.
    pub const LEN: usize = 4;

    /// A view of `buffer`, which must hold the 4-byte tag.
    pub fn new_checked(buffer: T) -> Result<Self, Malformed> {
        need(Layer::Vlan, buffer.as_ref(), Self::LEN)?;
        Ok(Self::new_unchecked(buffer))
    }
    /// Priority code point (3 bits).
    #[inline]
    pub fn pcp(&self) -> u8 {
        self.as_slice()[0] >> 5
    }
    /// Drop eligible indicator.
    #[inline]
    pub fn dei(&self) -> bool {
        self.as_slice()[0] & 0x10 != 0
    }
    /// VLAN identifier (12 bits).
    #[inline]
    pub fn vid(&self) -> u16 {
        be16(self.as_slice(), 0) & 0x0fff
    }
    /// The EtherType that follows the tag.
    #[inline]
    pub fn ethertype(&self) -> u16 {
        be16(self.as_slice(), 2)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VlanTag<T> {
    /// Sets priority, drop eligibility and VLAN ID.
    #[inline]
    pub fn set_tci(&mut self, pcp: u8, dei: bool, vid: u16) {
        let tci = (u16::from(pcp & 7) << 13) | (u16::from(dei) << 12) | (vid & 0x0fff);
        put16(self.buffer.as_mut(), 0, tci);
    }
    /// Sets the EtherType that follows.
    #[inline]
    pub fn set_ethertype(&mut self, t: u16) {
        put16(self.buffer.as_mut(), 2, t);
    }
}

/// A VLAN tag's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VlanRepr {
    /// Priority code point (3 bits).
    pub pcp: u8,
    /// Drop eligible.
    pub dei: bool,
    /// VLAN ID (12 bits).
    pub vid: u16,
    /// The EtherType that follows.
    pub ethertype: u16,
}

impl VlanRepr {
    /// The fields of `tag`.
    pub fn parse<T: AsRef<[u8]>>(tag: &VlanTag<T>) -> Result<Self, Malformed> {
        need(Layer::Vlan, tag.as_slice(), VlanTag::<T>::LEN)?;
        Ok(VlanRepr {
            pcp: tag.pcp(),
            dei: tag.dei(),
            vid: tag.vid(),
            ethertype: tag.ethertype(),
        })
    }
    /// Writes the tag.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, tag: &mut VlanTag<T>) {
        tag.set_tci(self.pcp, self.dei, self.vid);
        tag.set_ethertype(self.ethertype);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ethertype;

    #[test]
    fn frames_and_tags_round_trip() {
        let mut b = [0u8; 22];
        let e = EthernetRepr {
            src_addr: [2, 0, 0, 0, 0, 1],
            dst_addr: [2, 0, 0, 0, 0, 2],
            ethertype: ethertype::VLAN,
        };
        e.emit(&mut EthernetFrame::new_unchecked(&mut b[..]));
        let v = VlanRepr {
            pcp: 5,
            dei: true,
            vid: 0xabc,
            ethertype: ethertype::IPV4,
        };
        v.emit(&mut VlanTag::new_unchecked(&mut b[14..18]));
        let f = EthernetFrame::new_checked(&b[..]).unwrap();
        assert_eq!(EthernetRepr::parse(&f).unwrap(), e);
        assert_eq!(
            VlanRepr::parse(&VlanTag::new_checked(f.payload()).unwrap()).unwrap(),
            v
        );
        assert_eq!(f.ip_offset(), Ok(18));
        assert!(EthernetFrame::new_checked(&b[..13]).is_err());
        // A tag announced and missing is an error, not a panic.
        assert!(
            EthernetFrame::new_checked(&b[..16])
                .unwrap()
                .ip_offset()
                .is_err()
        );
    }
}
