//! MPLS label stack entries (RFC 3032).

use super::{Layer, Malformed, be32, need, put32, view};

view!(
    /// One MPLS label stack entry: label (20 bits), traffic class (3), bottom of stack, TTL.
    MplsLabel
);

impl<T: AsRef<[u8]>> MplsLabel<T> {
    /// An entry's length.
    pub const LEN: usize = 4;

    /// A view of `buffer`, which must hold the 4-byte entry.
    pub fn new_checked(buffer: T) -> Result<Self, Malformed> {
        need(Layer::Mpls, buffer.as_ref(), Self::LEN)?;
        Ok(Self::new_unchecked(buffer))
    }
    /// The label.
    #[inline]
    pub fn label(&self) -> u32 {
        be32(self.as_slice(), 0) >> 12
    }
    /// The traffic class.
    #[inline]
    pub fn tc(&self) -> u8 {
        ((be32(self.as_slice(), 0) >> 9) & 7) as u8
    }
    /// Whether this is the last entry of the stack.
    #[inline]
    pub fn bottom(&self) -> bool {
        self.as_slice()[2] & 1 != 0
    }
    /// The TTL.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.as_slice()[3]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> MplsLabel<T> {
    /// Writes every field.
    #[inline]
    pub fn set(&mut self, label: u32, tc: u8, bottom: bool, ttl: u8) {
        let w = ((label & 0xf_ffff) << 12)
            | (u32::from(tc & 7) << 9)
            | (u32::from(bottom) << 8)
            | u32::from(ttl);
        put32(self.buffer.as_mut(), 0, w);
    }
}

/// An MPLS label stack entry's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MplsRepr {
    /// Label (20 bits).
    pub label: u32,
    /// Traffic class (3 bits).
    pub tc: u8,
    /// Bottom of stack.
    pub bottom: bool,
    /// TTL.
    pub ttl: u8,
}

impl MplsRepr {
    /// The fields of `entry`.
    pub fn parse<T: AsRef<[u8]>>(entry: &MplsLabel<T>) -> Result<Self, Malformed> {
        need(Layer::Mpls, entry.as_slice(), MplsLabel::<T>::LEN)?;
        Ok(MplsRepr {
            label: entry.label(),
            tc: entry.tc(),
            bottom: entry.bottom(),
            ttl: entry.ttl(),
        })
    }
    /// Writes the entry.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, entry: &mut MplsLabel<T>) {
        entry.set(self.label, self.tc, self.bottom, self.ttl);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_round_trips() {
        let r = MplsRepr {
            label: 0xabcde,
            tc: 5,
            bottom: true,
            ttl: 63,
        };
        let mut b = [0u8; 4];
        r.emit(&mut MplsLabel::new_unchecked(&mut b[..]));
        assert_eq!(b, [0xab, 0xcd, 0xeb, 63]);
        assert_eq!(
            MplsRepr::parse(&MplsLabel::new_checked(&b[..]).unwrap()).unwrap(),
            r
        );
        assert!(MplsLabel::new_checked(&b[..3]).is_err());
    }
}
