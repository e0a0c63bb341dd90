//! Internet checksums: full computation (RFC 1071) and incremental update (RFC 1624).
//!
//! In-place rewrites of addresses and ports never recompute a checksum over the whole packet: they apply
//! RFC 1624's equation 3, `HC' = ~(~HC + ~m + m')`, once per changed 16-bit word. The tests in
//! `packet.rs` and `tests/rewrite.rs` check every rewrite against a full recomputation.

/// Adds `data` to a running one's-complement sum (not yet folded).
///
/// Sums 32-bit big-endian words into a 64-bit accumulator (one's-complement addition is associative, so
/// the 16-bit halves fold correctly at the end), then the tail.
#[inline]
pub fn sum(data: &[u8], acc: u32) -> u32 {
    let mut wide = u64::from(acc);
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        wide += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    let mut pairs = rest.chunks_exact(2);
    for c in &mut pairs {
        wide += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = pairs.remainder() {
        wide += u64::from(*last) << 8;
    }
    // Fold 64 -> 32 bits (twice covers every carry).
    wide = (wide & 0xffff_ffff) + (wide >> 32);
    wide = (wide & 0xffff_ffff) + (wide >> 32);
    let folded = (wide & 0xffff) + (wide >> 16);
    folded as u32
}

/// Folds a 32-bit one's-complement sum into 16 bits.
#[inline]
pub fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The Internet checksum of `data` (the value to store in a header whose checksum field is zero).
/// A 20-byte IPv4 header without options takes an unrolled path.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    if let Ok(h) = <&[u8; 20]>::try_from(data) {
        return ipv4_header(h);
    }
    !fold(sum(data, 0))
}

/// The checksum of a 20-byte IPv4 header (ten 16-bit words, unrolled).
#[inline(always)]
pub fn ipv4_header(h: &[u8; 20]) -> u16 {
    let w = |i: usize| u64::from(u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]));
    // Five 32-bit words: the sum is below 2^35; three folds bring it to 16 bits.
    let mut acc = w(0) + w(4) + w(8) + w(12) + w(16);
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    !(acc as u16)
}

/// RFC 1624 equation 3: the checksum `hc` after one 16-bit word changes from `old` to `new`.
#[inline]
pub fn update16(hc: u16, old: u16, new: u16) -> u16 {
    let acc = u32::from(!hc) + u32::from(!old) + u32::from(new);
    !fold(acc)
}

/// The one's-complement difference (`~old + new`, unfolded) of a 32-bit field changing from `old` to
/// `new` (an IPv4 address), to add to others and [`apply`].
#[inline(always)]
pub fn delta32(old: u32, new: u32) -> u32 {
    let o = !old;
    (o >> 16) + (o & 0xffff) + (new >> 16) + (new & 0xffff)
}

/// RFC 1624 equation 3 with a precomputed difference (a sum of [`delta32`] and `!old16 + new16` terms,
/// below 2^16 terms of 16 bits): the new checksum.
#[inline(always)]
pub fn apply(hc: u16, delta: u32) -> u16 {
    let mut acc = u64::from(!hc) + u64::from(delta);
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    !(acc as u16)
}

/// RFC 1624 over a run of bytes (an address): `old` and `new` have the same, even, length.
#[inline]
pub fn update_bytes(hc: u16, old: &[u8], new: &[u8]) -> u16 {
    debug_assert_eq!(old.len(), new.len());
    debug_assert_eq!(old.len() % 2, 0);
    let mut acc = u32::from(!hc);
    for (o, n) in old.chunks_exact(2).zip(new.chunks_exact(2)) {
        acc += u32::from(!u16::from_be_bytes([o[0], o[1]]));
        acc += u32::from(u16::from_be_bytes([n[0], n[1]]));
    }
    !fold(acc)
}

/// The sum of an IPv4 pseudo-header (RFC 793/768) for an L4 segment of `len` bytes.
#[inline]
pub fn pseudo_header_v4(src: [u8; 4], dst: [u8; 4], proto: u8, len: u16) -> u32 {
    let mut acc = sum(&src, 0);
    acc = sum(&dst, acc);
    acc + u32::from(proto) + u32::from(len)
}

/// The sum of an IPv6 pseudo-header (RFC 8200 section 8.1) for an upper-layer packet of `len` bytes.
#[inline]
pub fn pseudo_header_v6(src: [u8; 16], dst: [u8; 16], next_header: u8, len: u32) -> u32 {
    let mut acc = sum(&src, 0);
    acc = sum(&dst, acc);
    acc = acc.wrapping_add(len >> 16).wrapping_add(len & 0xffff);
    acc + u32::from(next_header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3 example: 0001 f203 f4f5 f6f7 -> sum ddf2, checksum 220d.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data, 0)), 0xddf2);
        assert_eq!(checksum(&data), 0x220d);
    }

    #[test]
    fn incremental_matches_full() {
        let mut data = [
            0x45u8, 0, 0, 0x54, 0x12, 0x34, 0x40, 0, 0x40, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        let c = checksum(&data);
        data[10..12].copy_from_slice(&c.to_be_bytes());
        let old = [data[12], data[13], data[14], data[15]];
        let new = [192, 168, 77, 9];
        data[12..16].copy_from_slice(&new);
        let inc = update_bytes(c, &old, &new);
        data[10] = 0;
        data[11] = 0;
        assert_eq!(inc, checksum(&data));
    }
}
