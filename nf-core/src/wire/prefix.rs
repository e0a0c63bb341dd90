//! IP prefixes: the one type for configured networks (routes, ACLs, match expressions, allow lists).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IP prefix: an address and a length; the bits past the length are zero. Written `10.0.0.0/8`,
/// `2001:db8::/32`, `10.0.0.0/255.0.0.0` (an IPv4 netmask), or a bare address (a host prefix).
///
/// ```
/// use nf_core::wire::IpPrefix;
/// let p: IpPrefix = "10.1.2.3/255.255.0.0".parse().unwrap();
/// assert_eq!(p.to_string(), "10.1.0.0/16");
/// assert!(p.contains("10.1.200.9".parse().unwrap()));
/// assert!(!p.contains("10.2.0.1".parse().unwrap()));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpPrefix {
    addr: IpAddr,
    len: u8,
}

/// Why a prefix could not be made or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    /// The text is not `ADDRESS/LENGTH`, `ADDRESS/NETMASK` or `ADDRESS`.
    #[error("`{0}` is not a prefix (ADDRESS/LENGTH, e.g. 10.0.0.0/8)")]
    Syntax(String),
    /// The length is longer than the address.
    #[error("prefix length {0} is too long for the address")]
    Length(u8),
    /// A netmask whose ones are not contiguous.
    #[error("`{0}` is not a contiguous netmask")]
    Netmask(String),
}

/// The mask of the first `len` bits of a 32-bit address.
#[inline]
pub(crate) const fn v4_mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - len as u32)
    }
}

/// The mask of the first `len` bits of a 128-bit address.
#[inline]
pub(crate) const fn v6_mask(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - len as u32)
    }
}

impl IpPrefix {
    /// The prefix of `len` bits of `addr` (the other bits are cleared).
    pub fn new(addr: IpAddr, len: u8) -> Result<IpPrefix, PrefixError> {
        let addr = match addr {
            IpAddr::V4(a) if len <= 32 => IpAddr::V4(Ipv4Addr::from(u32::from(a) & v4_mask(len))),
            IpAddr::V6(a) if len <= 128 => IpAddr::V6(Ipv6Addr::from(u128::from(a) & v6_mask(len))),
            _ => return Err(PrefixError::Length(len)),
        };
        Ok(IpPrefix { addr, len })
    }

    /// A prefix whose address is already masked to `len` bits (the tables that store them so).
    pub(crate) const fn from_masked(addr: IpAddr, len: u8) -> IpPrefix {
        IpPrefix { addr, len }
    }

    /// The host prefix of `addr` (`/32` or `/128`).
    pub fn host(addr: IpAddr) -> IpPrefix {
        IpPrefix {
            addr,
            len: if addr.is_ipv4() { 32 } else { 128 },
        }
    }

    /// `0.0.0.0/0`: every IPv4 address.
    pub const fn v4_default() -> IpPrefix {
        IpPrefix {
            addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            len: 0,
        }
    }

    /// `::/0`: every IPv6 address.
    pub const fn v6_default() -> IpPrefix {
        IpPrefix {
            addr: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            len: 0,
        }
    }

    /// The (masked) network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The length in bits.
    pub fn len(&self) -> u8 {
        self.len
    }

    /// True for the zero-length prefix (everything of its family).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True if `ip` is inside the prefix (an address of the other family never is).
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(p), IpAddr::V4(a)) => u32::from(a) & v4_mask(self.len) == u32::from(p),
            (IpAddr::V6(p), IpAddr::V6(a)) => u128::from(a) & v6_mask(self.len) == u128::from(p),
            _ => false,
        }
    }

    /// [`contains`](Self::contains) for an address read as a number: IPv4 (`v4`) in the low 32 bits,
    /// else IPv6 (what a classifier reads from a packet without making an `IpAddr`).
    #[inline]
    pub fn contains_bits(&self, v4: bool, bits: u128) -> bool {
        match self.addr {
            IpAddr::V4(p) => v4 && (bits as u32) & v4_mask(self.len) == u32::from(p),
            IpAddr::V6(p) => !v4 && bits & v6_mask(self.len) == u128::from(p),
        }
    }
}

impl FromStr for IpPrefix {
    type Err = PrefixError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a.parse().map_err(|_| PrefixError::Syntax(s.to_string()))?;
        let len = match l {
            None => return Ok(IpPrefix::host(addr)),
            Some(l) => match l.parse::<u8>() {
                Ok(n) => n,
                Err(_) if addr.is_ipv4() => {
                    let m: Ipv4Addr = l.parse().map_err(|_| PrefixError::Syntax(s.to_string()))?;
                    let m = u32::from(m);
                    if m.leading_ones() + m.trailing_zeros() != 32 {
                        return Err(PrefixError::Netmask(l.to_string()));
                    }
                    m.leading_ones() as u8
                }
                Err(_) => return Err(PrefixError::Syntax(s.to_string())),
            },
        };
        IpPrefix::new(addr, len)
    }
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_parse_mask_and_match() {
        let p: IpPrefix = "10.1.2.3/8".parse().unwrap();
        assert_eq!(p.addr().to_string(), "10.0.0.0");
        assert!(p.contains("10.200.0.1".parse().unwrap()));
        assert!(!p.contains("11.0.0.1".parse().unwrap()));
        assert!(!p.contains("::1".parse().unwrap()));
        assert!(p.contains_bits(true, u128::from(0x0a01_0203u32)));
        assert!(!p.contains_bits(false, u128::from(0x0a01_0203u32)));
        assert_eq!(
            "10.0.0.0/255.255.0.0".parse::<IpPrefix>().unwrap().len(),
            16
        );
        assert!(matches!(
            "10.0.0.0/255.0.255.0".parse::<IpPrefix>(),
            Err(PrefixError::Netmask(_))
        ));
        assert_eq!(
            "10.0.0.0/33".parse::<IpPrefix>(),
            Err(PrefixError::Length(33))
        );
        assert!("ten/8".parse::<IpPrefix>().is_err());
        assert_eq!("::1".parse::<IpPrefix>().unwrap().len(), 128);
        let v6: IpPrefix = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:1::9".parse().unwrap()));
        assert!(IpPrefix::v4_default().contains("1.2.3.4".parse().unwrap()));
        assert!(IpPrefix::v4_default().is_empty());
    }
}
