//! TCP headers (RFC 9293).

use super::field::tcp as f;
use super::{Layer, Malformed, be16, be32, need, put16, put32, tcp_flags, view};

view!(
    /// A TCP segment: the header (with options) and the payload.
    TcpSegment
);

impl<T: AsRef<[u8]>> TcpSegment<T> {
    /// The header's length without options.
    pub const MIN_HEADER_LEN: usize = 20;

    /// A view of `buffer` after checking that it holds the fixed header and that the data offset is at
    /// least 20 bytes and within the buffer.
    pub fn new_checked(buffer: T) -> Result<Self, Malformed> {
        need(Layer::Tcp, buffer.as_ref(), Self::MIN_HEADER_LEN)?;
        let s = Self::new_unchecked(buffer);
        let hl = s.header_len();
        if hl < Self::MIN_HEADER_LEN {
            return Err(Malformed::Header(Layer::Tcp));
        }
        need(Layer::Tcp, s.as_slice(), hl)?;
        Ok(s)
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
    /// The sequence number.
    #[inline]
    pub fn seq_number(&self) -> u32 {
        be32(self.as_slice(), f::SEQ_NUM)
    }
    /// The acknowledgement number.
    #[inline]
    pub fn ack_number(&self) -> u32 {
        be32(self.as_slice(), f::ACK_NUM)
    }
    /// The header's length in bytes (data offset × 4).
    #[inline(always)]
    pub fn header_len(&self) -> usize {
        usize::from(self.as_slice()[f::DATA_OFF] >> 4) * 4
    }
    /// The flag bits ([`tcp_flags`]).
    #[inline(always)]
    pub fn flags(&self) -> u8 {
        self.as_slice()[f::FLAGS]
    }
    /// SYN set.
    #[inline]
    pub fn syn(&self) -> bool {
        self.flags() & tcp_flags::SYN != 0
    }
    /// ACK set.
    #[inline]
    pub fn ack(&self) -> bool {
        self.flags() & tcp_flags::ACK != 0
    }
    /// FIN set.
    #[inline]
    pub fn fin(&self) -> bool {
        self.flags() & tcp_flags::FIN != 0
    }
    /// RST set.
    #[inline]
    pub fn rst(&self) -> bool {
        self.flags() & tcp_flags::RST != 0
    }
    /// The receive window.
    #[inline]
    pub fn window(&self) -> u16 {
        be16(self.as_slice(), f::WINDOW)
    }
    /// The checksum.
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.as_slice(), f::CHECKSUM)
    }
    /// The options (between the fixed header and the payload; empty if the buffer stops before).
    #[inline]
    pub fn options(&self) -> &[u8] {
        let b = self.as_slice();
        b.get(Self::MIN_HEADER_LEN..self.header_len())
            .unwrap_or(&[])
    }
    /// Where the MSS option's value sits among the options (kind 2, length 4), and the value; `None`
    /// without one, or with options that do not parse.
    pub fn mss_option(&self) -> Option<(usize, u16)> {
        let opts = self.options();
        let mut i = 0;
        loop {
            match opts.get(i)? {
                // End of the option list.
                0 => return None,
                // No-operation.
                1 => i += 1,
                2 if opts.get(i + 1) == Some(&4) && i + 4 <= opts.len() => {
                    return Some((i + 2, be16(opts, i + 2)));
                }
                _ => match opts.get(i + 1) {
                    Some(&len) if len >= 2 => i += usize::from(len),
                    _ => return None,
                },
            }
        }
    }
    /// The payload (empty if the buffer stops before it).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        self.as_slice().get(self.header_len()..).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpSegment<T> {
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
    /// Sets the sequence number.
    #[inline]
    pub fn set_seq_number(&mut self, v: u32) {
        put32(self.buffer.as_mut(), f::SEQ_NUM, v);
    }
    /// Sets the acknowledgement number.
    #[inline]
    pub fn set_ack_number(&mut self, v: u32) {
        put32(self.buffer.as_mut(), f::ACK_NUM, v);
    }
    /// Sets the header length (a multiple of 4, 20 to 60).
    #[inline]
    pub fn set_header_len(&mut self, v: usize) {
        self.buffer.as_mut()[f::DATA_OFF] = ((v / 4) as u8) << 4;
    }
    /// Sets the flag bits.
    #[inline]
    pub fn set_flags(&mut self, v: u8) {
        self.buffer.as_mut()[f::FLAGS] = v;
    }
    /// Sets the window.
    #[inline]
    pub fn set_window(&mut self, v: u16) {
        put16(self.buffer.as_mut(), f::WINDOW, v);
    }
    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buffer.as_mut(), f::CHECKSUM, v);
    }
    /// Lowers the MSS option's value to `max` if it is larger, and returns the value it had; `None` if
    /// nothing changed. The checksum is the caller's (an incremental update from the old value to the
    /// new).
    pub fn clamp_mss_option(&mut self, max: u16) -> Option<u16> {
        let (at, old) = self.mss_option()?;
        if old <= max {
            return None;
        }
        put16(self.options_mut(), at, max);
        Some(old)
    }
    /// The options, mutable (in place rewrites: MSS clamping).
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        let b = self.buffer.as_mut();
        let end = hl.min(b.len()).max(Self::MIN_HEADER_LEN.min(b.len()));
        &mut b[Self::MIN_HEADER_LEN.min(end)..end]
    }
}

/// A TCP header's fields (no options; the checksum is the caller's: it covers a pseudo-header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq_number: u32,
    /// Acknowledgement number.
    pub ack_number: u32,
    /// Flag bits ([`tcp_flags`]).
    pub flags: u8,
    /// Window.
    pub window: u16,
}

impl TcpRepr {
    /// The fields of `s`.
    pub fn parse<T: AsRef<[u8]>>(s: &TcpSegment<T>) -> Result<Self, Malformed> {
        let s = TcpSegment::new_checked(s.as_slice())?;
        Ok(TcpRepr {
            src_port: s.src_port(),
            dst_port: s.dst_port(),
            seq_number: s.seq_number(),
            ack_number: s.ack_number(),
            flags: s.flags(),
            window: s.window(),
        })
    }
    /// Bytes [`emit`](Self::emit) writes.
    pub const fn header_len(&self) -> usize {
        20
    }
    /// Writes the 20-byte header, checksum zero, into `s`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, s: &mut TcpSegment<T>) {
        s.set_src_port(self.src_port);
        s.set_dst_port(self.dst_port);
        s.set_seq_number(self.seq_number);
        s.set_ack_number(self.ack_number);
        s.set_header_len(20);
        s.set_flags(self.flags);
        s.set_window(self.window);
        s.set_checksum(0);
        put16(s.buffer.as_mut(), f::URGENT, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_round_trips_and_bad_offsets_are_refused() {
        let r = TcpRepr {
            src_port: 40000,
            dst_port: 80,
            seq_number: 7,
            ack_number: 9,
            flags: tcp_flags::SYN | tcp_flags::ACK,
            window: 1024,
        };
        let mut b = [0u8; 24];
        r.emit(&mut TcpSegment::new_unchecked(&mut b[..]));
        let s = TcpSegment::new_checked(&b[..]).unwrap();
        assert_eq!(TcpRepr::parse(&s).unwrap(), r);
        assert!(s.syn() && s.ack() && !s.fin() && !s.rst());
        assert_eq!(s.payload().len(), 4);
        // The MSS option, found and lowered (never raised).
        let mut o = [0u8; 28];
        TcpRepr::parse(&s)
            .unwrap()
            .emit(&mut TcpSegment::new_unchecked(&mut o[..]));
        o[12] = 0x70; // 28 bytes: 8 of options
        o[20..28].copy_from_slice(&[1, 1, 2, 4, 0x05, 0xb4, 0, 0]);
        let mut t = TcpSegment::new_checked(&mut o[..]).unwrap();
        assert_eq!(t.mss_option(), Some((4, 1460)));
        assert_eq!(t.clamp_mss_option(1500), None);
        assert_eq!(t.clamp_mss_option(1400), Some(1460));
        assert_eq!(t.mss_option(), Some((4, 1400)));
        o[22] = 9; // an option whose length runs past the list
        o[23] = 40;
        assert_eq!(TcpSegment::new_checked(&o[..]).unwrap().mss_option(), None);
        b[12] = 0x40; // data offset 16 bytes
        assert!(TcpSegment::new_checked(&b[..]).is_err());
        b[12] = 0xf0; // 60 bytes, buffer 24
        assert!(TcpSegment::new_checked(&b[..]).is_err());
        assert!(TcpSegment::new_checked(&b[..19]).is_err());
    }
}
