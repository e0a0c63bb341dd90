//! The wire formats, in smoltcp's two levels: a zero-copy **view** per header over any `T: AsRef<[u8]>`
//! (`AsMut<[u8]>` too for rewrites) with typed field accessors, and a **`Repr`** that parses a view into
//! plain values and emits them back into a buffer.
//!
//! One place decides each field: elements read and write headers through these views (never by offsets
//! of their own), build the outer headers of tunnels and of the Mux by `emit`, and take protocol numbers,
//! EtherTypes and TCP flags from the constants here. `etherparse` stays where it serves: slicing a whole
//! packet at once ([`Packet::sliced`](crate::Packet::sliced)) and the slow path of header location.
//!
//! A view's `new_unchecked` trusts the buffer to hold the header (its accessors index, and panic on a
//! buffer too short); `new_checked` verifies first and returns [`Malformed`] if not: every path that sees
//! a sender's bytes uses `new_checked`, or a length check of its own just before `new_unchecked`.
//!
//! | header | view | repr |
//! |---|---|---|
//! | Ethernet II | [`EthernetFrame`] | [`EthernetRepr`] |
//! | 802.1Q / 802.1ad tag | [`VlanTag`] | [`VlanRepr`] |
//! | MPLS label stack entry | [`MplsLabel`] | [`MplsRepr`] |
//! | IPv4 | [`Ipv4Packet`] | [`Ipv4Repr`] |
//! | IPv6 | [`Ipv6Packet`] | [`Ipv6Repr`] |
//! | TCP | [`TcpSegment`] | [`TcpRepr`] |
//! | UDP | [`UdpDatagram`] | [`UdpRepr`] |
//! | ICMP, ICMPv6 | [`IcmpMessage`] | [`IcmpRepr`] |
//! | GRE (RFC 2784/2890) | [`GrePacket`] | [`GreRepr`] |
//! | VXLAN (RFC 7348) | [`VxlanHeader`] | [`VxlanRepr`] |
//! | IPComp (RFC 3173) | [`IpCompHeader`] | [`IpCompRepr`] |
//!
//! ```
//! use nf_core::wire::{Ipv4Packet, Ipv4Repr, ip_proto};
//! use std::net::Ipv4Addr;
//! let repr = Ipv4Repr {
//!     src_addr: Ipv4Addr::new(10, 0, 0, 1),
//!     dst_addr: Ipv4Addr::new(10, 0, 0, 2),
//!     protocol: ip_proto::UDP,
//!     payload_len: 8,
//!     ttl: 64,
//!     ..Ipv4Repr::default()
//! };
//! let mut buf = [0u8; 28];
//! repr.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]));
//! let ip = Ipv4Packet::new_checked(&buf[..]).unwrap();
//! assert!(ip.verify_checksum());
//! assert_eq!(ip.total_len(), 28);
//! assert_eq!(Ipv4Repr::parse(&ip).unwrap(), repr);
//! ```

mod ethernet;
mod gre;
mod icmp;
mod ipcomp;
mod ipv4;
mod ipv6;
mod mpls;
mod prefix;
mod tcp;
mod udp;
mod vxlan;

pub use crate::packet::Malformed;
pub use ethernet::{EthernetFrame, EthernetRepr, VlanRepr, VlanTag};
pub use gre::{GrePacket, GreRepr};
pub use icmp::{IcmpMessage, IcmpRepr};
pub use ipcomp::{IpCompHeader, IpCompRepr};
pub use ipv4::{Ipv4Packet, Ipv4Repr};
pub use ipv6::{Ipv6Packet, Ipv6Repr};
pub use mpls::{MplsLabel, MplsRepr};
pub use prefix::{IpPrefix, PrefixError};
/// The masks of prefix lengths (for tables keyed by masked addresses).
pub(crate) mod prefix_masks {
    #[cfg(test)]
    pub(crate) use super::prefix::v4_mask;
    pub(crate) use super::prefix::v6_mask;
}
pub use tcp::{TcpRepr, TcpSegment};
pub use udp::{UdpDatagram, UdpRepr};
pub use vxlan::{VXLAN_PORT, VxlanHeader, VxlanRepr};

/// Where each field sits in its header (byte offsets from the header's start): the views read and
/// write through these, and so do the in-place rewrites of [`Packet`](crate::Packet) (NAT, TTL), so that
/// one place decides each field.
pub mod field {
    /// IPv4 (RFC 791).
    pub mod ipv4 {
        /// Version and header length.
        pub const VER_IHL: usize = 0;
        /// Type of service.
        pub const TOS: usize = 1;
        /// Total length (16 bits).
        pub const LENGTH: usize = 2;
        /// Identification (16 bits).
        pub const IDENT: usize = 4;
        /// Flags and fragment offset (16 bits).
        pub const FLG_OFF: usize = 6;
        /// Time to live.
        pub const TTL: usize = 8;
        /// Protocol.
        pub const PROTOCOL: usize = 9;
        /// Header checksum (16 bits).
        pub const CHECKSUM: usize = 10;
        /// Source address (4 bytes).
        pub const SRC_ADDR: usize = 12;
        /// Destination address (4 bytes).
        pub const DST_ADDR: usize = 16;
    }
    /// IPv6 (RFC 8200).
    pub mod ipv6 {
        /// Version, traffic class, flow label (32 bits).
        pub const VER_TC_FLOW: usize = 0;
        /// Payload length (16 bits).
        pub const LENGTH: usize = 4;
        /// Next header.
        pub const NXT_HDR: usize = 6;
        /// Hop limit.
        pub const HOP_LIMIT: usize = 7;
        /// Source address (16 bytes).
        pub const SRC_ADDR: usize = 8;
        /// Destination address (16 bytes).
        pub const DST_ADDR: usize = 24;
    }
    /// TCP (RFC 9293).
    pub mod tcp {
        /// Source port (16 bits).
        pub const SRC_PORT: usize = 0;
        /// Destination port (16 bits).
        pub const DST_PORT: usize = 2;
        /// Sequence number (32 bits).
        pub const SEQ_NUM: usize = 4;
        /// Acknowledgement number (32 bits).
        pub const ACK_NUM: usize = 8;
        /// Data offset (high nibble).
        pub const DATA_OFF: usize = 12;
        /// Flags.
        pub const FLAGS: usize = 13;
        /// Window (16 bits).
        pub const WINDOW: usize = 14;
        /// Checksum (16 bits).
        pub const CHECKSUM: usize = 16;
        /// Urgent pointer (16 bits).
        pub const URGENT: usize = 18;
    }
    /// UDP (RFC 768).
    pub mod udp {
        /// Source port (16 bits).
        pub const SRC_PORT: usize = 0;
        /// Destination port (16 bits).
        pub const DST_PORT: usize = 2;
        /// Length (16 bits).
        pub const LENGTH: usize = 4;
        /// Checksum (16 bits).
        pub const CHECKSUM: usize = 6;
    }
    /// ICMP and ICMPv6.
    pub mod icmp {
        /// Type.
        pub const TYPE: usize = 0;
        /// Code.
        pub const CODE: usize = 1;
        /// Checksum (16 bits).
        pub const CHECKSUM: usize = 2;
        /// The rest-of-header word (32 bits).
        pub const REST: usize = 4;
    }
}

/// IANA IP protocol numbers (IPv4's protocol, IPv6's next header).
pub mod ip_proto {
    /// IPv6 hop-by-hop options.
    pub const HOPOPT: u8 = 0;
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// IPv4 in IP (RFC 2003).
    pub const IPIP: u8 = 4;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// IPv6 in IP (RFC 4213).
    pub const IPV6: u8 = 41;
    /// GRE.
    pub const GRE: u8 = 47;
    /// ESP.
    pub const ESP: u8 = 50;
    /// The IPsec authentication header.
    pub const AH: u8 = 51;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// IPComp (RFC 3173).
    pub const IPCOMP: u8 = 108;
    /// SCTP.
    pub const SCTP: u8 = 132;

    /// The protocol named `s` (`tcp`, `udp`, `icmp`, `icmpv6`, `gre`, `ipip`, `ipv6`, `esp`, `ah`,
    /// `ipcomp`, `sctp`) or a
    /// number: how configurations spell a protocol (one parser for every element).
    pub fn parse(s: &str) -> Option<u8> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Some(TCP),
            "udp" => Some(UDP),
            "icmp" => Some(ICMP),
            "icmpv6" | "icmp6" => Some(ICMPV6),
            "gre" => Some(GRE),
            "ipip" => Some(IPIP),
            "ipv6" => Some(IPV6),
            "esp" => Some(ESP),
            "ah" => Some(AH),
            "ipcomp" => Some(IPCOMP),
            "sctp" => Some(SCTP),
            n => n.parse().ok(),
        }
    }

    /// The name of a protocol number (`tcp`, `udp`, ...), or `None` for one without a name here.
    pub fn name(p: u8) -> Option<&'static str> {
        Some(match p {
            TCP => "tcp",
            UDP => "udp",
            ICMP => "icmp",
            ICMPV6 => "icmpv6",
            GRE => "gre",
            IPIP => "ipip",
            IPV6 => "ipv6",
            ESP => "esp",
            AH => "ah",
            IPCOMP => "ipcomp",
            SCTP => "sctp",
            _ => return None,
        })
    }
}

/// EtherTypes.
pub mod ethertype {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// ARP.
    pub const ARP: u16 = 0x0806;
    /// An 802.1Q VLAN tag follows.
    pub const VLAN: u16 = 0x8100;
    /// An 802.1ad (QinQ) service tag follows.
    pub const QINQ: u16 = 0x88a8;
    /// The pre-standard QinQ tag some switches send.
    pub const QINQ_OLD: u16 = 0x9100;
    /// IPv6.
    pub const IPV6: u16 = 0x86dd;
    /// MPLS unicast.
    pub const MPLS: u16 = 0x8847;
    /// Transparent Ethernet bridging (an Ethernet frame inside GRE).
    pub const TEB: u16 = 0x6558;

    /// Whether a VLAN tag (of any kind) follows a header with this EtherType.
    pub const fn is_vlan(t: u16) -> bool {
        matches!(t, VLAN | QINQ | QINQ_OLD)
    }
}

/// TCP's flag bits (the 13th byte of the header).
pub mod tcp_flags {
    /// No more data from the sender.
    pub const FIN: u8 = 0x01;
    /// Synchronise sequence numbers.
    pub const SYN: u8 = 0x02;
    /// Reset the connection.
    pub const RST: u8 = 0x04;
    /// Push.
    pub const PSH: u8 = 0x08;
    /// The acknowledgement field is significant.
    pub const ACK: u8 = 0x10;
    /// Urgent.
    pub const URG: u8 = 0x20;
    /// ECN echo.
    pub const ECE: u8 = 0x40;
    /// Congestion window reduced.
    pub const CWR: u8 = 0x80;

    /// The flag named `s` (`fin`, `syn`, `rst`, `psh`, `ack`, `urg`, `ece`, `cwr`).
    pub fn parse(s: &str) -> Option<u8> {
        Some(match s.to_ascii_lowercase().as_str() {
            "fin" => FIN,
            "syn" => SYN,
            "rst" => RST,
            "psh" => PSH,
            "ack" => ACK,
            "urg" => URG,
            "ece" => ECE,
            "cwr" => CWR,
            _ => return None,
        })
    }
}

/// Which header a [`Malformed`] error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layer {
    /// The link header (Ethernet II, Linux cooked capture).
    Ethernet,
    /// An 802.1Q / 802.1ad tag.
    Vlan,
    /// An MPLS label stack entry.
    Mpls,
    /// An IP header whose version is not known yet.
    Ip,
    /// The IPv4 header.
    Ipv4,
    /// The IPv6 header.
    Ipv6,
    /// An IPv4 option or IPv6 extension header (authentication, fragment, routing, ...).
    IpExtension,
    /// The TCP header.
    Tcp,
    /// The UDP header.
    Udp,
    /// ICMP or ICMPv6.
    Icmp,
    /// GRE.
    Gre,
    /// VXLAN.
    Vxlan,
    /// IPComp.
    IpComp,
    /// A payload shorter than its header announces.
    Payload,
}

impl std::fmt::Display for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Layer::Ethernet => "link header",
            Layer::Vlan => "VLAN tag",
            Layer::Mpls => "MPLS label",
            Layer::Ip => "IP header",
            Layer::Ipv4 => "IPv4 header",
            Layer::Ipv6 => "IPv6 header",
            Layer::IpExtension => "IP extension header",
            Layer::Tcp => "TCP header",
            Layer::Udp => "UDP header",
            Layer::Icmp => "ICMP message",
            Layer::Gre => "GRE header",
            Layer::Vxlan => "VXLAN header",
            Layer::IpComp => "IPComp header",
            Layer::Payload => "payload",
        })
    }
}

impl From<etherparse::err::Layer> for Layer {
    fn from(l: etherparse::err::Layer) -> Self {
        use etherparse::err::Layer as E;
        match l {
            E::LinuxSllHeader | E::Ethernet2Header | E::MacsecHeader | E::MacsecPacket => {
                Layer::Ethernet
            }
            E::VlanHeader => Layer::Vlan,
            E::IpHeader => Layer::Ip,
            E::Ipv4Header | E::Ipv4Packet => Layer::Ipv4,
            E::Ipv6Header | E::Ipv6Packet => Layer::Ipv6,
            E::IpAuthHeader
            | E::Ipv6ExtHeader
            | E::Ipv6HopByHopHeader
            | E::Ipv6DestOptionsHeader
            | E::Ipv6RouteHeader
            | E::Ipv6FragHeader => Layer::IpExtension,
            E::UdpHeader => Layer::Udp,
            E::TcpHeader => Layer::Tcp,
            E::Icmpv4 | E::Icmpv4Timestamp | E::Icmpv4TimestampReply | E::Icmpv6 | E::Igmp => {
                Layer::Icmp
            }
            _ => Layer::Payload,
        }
    }
}

/// `Malformed::Truncated` for `layer` when `buf` is shorter than `need`.
#[inline]
pub(crate) fn need(layer: Layer, buf: &[u8], need: usize) -> Result<(), Malformed> {
    if buf.len() < need {
        Err(Malformed::Truncated {
            layer,
            need: u32::try_from(need).unwrap_or(u32::MAX),
            have: u32::try_from(buf.len()).unwrap_or(u32::MAX),
        })
    } else {
        Ok(())
    }
}

/// Big-endian 16 bits at `at`.
#[inline(always)]
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    // One bounds check and one load: a slice of exactly 2 bytes always converts.
    <[u8; 2]>::try_from(&b[at..at + 2]).map_or(0, u16::from_be_bytes)
}

/// Big-endian 32 bits at `at`.
#[inline(always)]
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    <[u8; 4]>::try_from(&b[at..at + 4]).map_or(0, u32::from_be_bytes)
}

/// Writes big-endian 16 bits at `at`.
#[inline(always)]
pub(crate) fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Writes big-endian 32 bits at `at`.
#[inline(always)]
pub(crate) fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// The view boilerplate: a struct over `T`, `new_unchecked`, `into_inner`, `as_slice`.
macro_rules! view {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name<T: AsRef<[u8]>> {
            buffer: T,
        }

        impl<T: AsRef<[u8]>> $name<T> {
            /// A view of `buffer` with no check (accessors panic if it is too short for them).
            #[inline(always)]
            pub const fn new_unchecked(buffer: T) -> Self {
                $name { buffer }
            }
            /// The buffer back.
            #[inline]
            pub fn into_inner(self) -> T {
                self.buffer
            }
            /// The bytes viewed (the header and whatever follows it).
            #[inline(always)]
            pub fn as_slice(&self) -> &[u8] {
                self.buffer.as_ref()
            }
        }
    };
}
pub(crate) use view;
