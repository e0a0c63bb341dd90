//! Every in-place rewrite with an incremental checksum update (RFC 1624) must give the checksum a full
//! recomputation gives.

use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
use nf_core::Packet;
use nf_core::checksum;
use nf_core::packet::{IpVersion, Link, proto};
use proptest::prelude::*;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy)]
enum L4 {
    Tcp,
    Udp,
    UdpNoChecksum,
    Icmp6,
}

fn build(
    v6: bool,
    l4: L4,
    src: [u8; 16],
    dst: [u8; 16],
    sp: u16,
    dp: u16,
    payload: &[u8],
) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let mut out = Vec::new();
    let mut s4 = [0u8; 4];
    s4.copy_from_slice(&src[..4]);
    let mut d4 = [0u8; 4];
    d4.copy_from_slice(&dst[..4]);
    match (v6, l4) {
        (false, L4::Tcp) => eth
            .ipv4(s4, d4, 64)
            .tcp(sp, dp, 1234, 1000)
            .write(&mut out, payload)
            .unwrap(),
        (false, L4::Udp | L4::UdpNoChecksum | L4::Icmp6) => eth
            .ipv4(s4, d4, 64)
            .udp(sp, dp)
            .write(&mut out, payload)
            .unwrap(),
        (true, L4::Tcp) => eth
            .ipv6(src, dst, 64)
            .tcp(sp, dp, 1234, 1000)
            .write(&mut out, payload)
            .unwrap(),
        (true, L4::Udp | L4::UdpNoChecksum) => eth
            .ipv6(src, dst, 64)
            .udp(sp, dp)
            .write(&mut out, payload)
            .unwrap(),
        (true, L4::Icmp6) => eth
            .ipv6(src, dst, 64)
            .icmpv6_echo_request(sp, dp)
            .write(&mut out, payload)
            .unwrap(),
    }
    if let (false, L4::UdpNoChecksum) = (v6, l4) {
        // IPv4 UDP may carry no checksum (0): rewrites must keep it 0.
        out[14 + 20 + 6] = 0;
        out[14 + 20 + 7] = 0;
    }
    out
}

/// Checks the IPv4 header checksum and the transport checksum by full recomputation.
fn verify(frame: &[u8]) -> Result<(), String> {
    let p = SlicedPacket::from_ethernet(frame).map_err(|e| e.to_string())?;
    let net = p.net.as_ref().ok_or("no IP")?;
    match net {
        etherparse::NetSlice::Ipv4(ip) => {
            let h = ip.header();
            if checksum::checksum(h.slice()) != 0 {
                return Err("bad IPv4 header checksum".into());
            }
            let hdr = h.to_header();
            match p.transport.as_ref() {
                Some(TransportSlice::Tcp(t)) => {
                    let c = t
                        .calc_checksum_ipv4(hdr.source, hdr.destination)
                        .map_err(|e| e.to_string())?;
                    if c != t.checksum() {
                        return Err(format!("TCP checksum {:#x} != {:#x}", t.checksum(), c));
                    }
                }
                Some(TransportSlice::Udp(u)) if u.checksum() != 0 => {
                    let c = u
                        .to_header()
                        .calc_checksum_ipv4(&hdr, u.payload())
                        .map_err(|e| e.to_string())?;
                    if c != u.checksum() {
                        return Err(format!("UDP checksum {:#x} != {:#x}", u.checksum(), c));
                    }
                }
                _ => {}
            }
        }
        etherparse::NetSlice::Ipv6(ip) => {
            let hdr = ip.header().to_header();
            match p.transport.as_ref() {
                Some(TransportSlice::Tcp(t)) => {
                    let c = t
                        .calc_checksum_ipv6(hdr.source, hdr.destination)
                        .map_err(|e| e.to_string())?;
                    if c != t.checksum() {
                        return Err(format!("TCP/6 checksum {:#x} != {:#x}", t.checksum(), c));
                    }
                }
                Some(TransportSlice::Udp(u)) => {
                    let c = u
                        .to_header()
                        .calc_checksum_ipv6(&hdr, u.payload())
                        .map_err(|e| e.to_string())?;
                    if c != u.checksum() {
                        return Err(format!("UDP/6 checksum {:#x} != {:#x}", u.checksum(), c));
                    }
                }
                Some(TransportSlice::Icmpv6(i)) => {
                    let c = i
                        .header()
                        .icmp_type
                        .calc_checksum(hdr.source, hdr.destination, i.payload())
                        .map_err(|e| e.to_string())?;
                    if c != i.checksum() {
                        return Err(format!("ICMPv6 checksum {:#x} != {:#x}", i.checksum(), c));
                    }
                }
                _ => {}
            }
        }
        _ => {}
    }
    Ok(())
}

fn l4_strategy() -> impl Strategy<Value = L4> {
    prop_oneof![
        Just(L4::Tcp),
        Just(L4::Udp),
        Just(L4::UdpNoChecksum),
        Just(L4::Icmp6)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn rewrites_match_full_recomputation(
        v6: bool, l4 in l4_strategy(),
        src: [u8; 16], dst: [u8; 16], nsrc: [u8; 16], ndst: [u8; 16],
        sp: u16, dp: u16, nsp: u16, ndp: u16,
        payload in proptest::collection::vec(any::<u8>(), 0..200),
        which in 0u8..16,
    ) {
        let frame = build(v6, l4, src, dst, sp, dp, &payload);
        prop_assert!(verify(&frame).is_ok());
        let mut p = Packet::from_slice(&frame);
        let h = p.locate(Link::Ethernet).unwrap();
        prop_assert_eq!(h.version, if v6 { IpVersion::V6 } else { IpVersion::V4 });
        let addr = |b: [u8; 16]| -> IpAddr {
            if v6 { IpAddr::from(b) } else { IpAddr::from([b[0], b[1], b[2], b[3]]) }
        };
        if which & 1 != 0 { p.set_ip_src(&h, addr(nsrc)).unwrap(); }
        if which & 2 != 0 { p.set_ip_dst(&h, addr(ndst)).unwrap(); }
        let has_ports = h.proto == proto::TCP || h.proto == proto::UDP;
        if which & 4 != 0 {
            let r = p.set_src_port(&h, nsp);
            prop_assert_eq!(r.is_ok(), has_ports);
        }
        if which & 8 != 0 {
            let r = p.set_dst_port(&h, ndp);
            prop_assert_eq!(r.is_ok(), has_ports);
        }
        prop_assert!(verify(p.data()).is_ok(), "{:?}", verify(p.data()));
        // The rewritten fields read back.
        let k = nf_core::FlowKey::from_headers(p.buffer(), &h).unwrap();
        if which & 1 != 0 { prop_assert_eq!(k.src(), addr(nsrc)); }
        if which & 2 != 0 { prop_assert_eq!(k.dst(), addr(ndst)); }
        if which & 4 != 0 && has_ports { prop_assert_eq!(k.src_port(), nsp); }
        if which & 8 != 0 && has_ports { prop_assert_eq!(k.dst_port(), ndp); }
        if let (false, L4::UdpNoChecksum) = (v6, l4) {
            prop_assert_eq!(&p.data()[40..42], &[0, 0]);
        }
    }

    /// The combined address-and-port rewrites (one checksum update) agree with a full recomputation.
    #[test]
    fn endpoint_rewrites_match_full_recomputation(
        v6: bool, l4 in l4_strategy(),
        src: [u8; 16], dst: [u8; 16], na: [u8; 16], np: u16,
        payload in proptest::collection::vec(any::<u8>(), 0..200),
        to_src: bool,
    ) {
        let frame = build(v6, l4, src, dst, 1234, 80, &payload);
        let mut p = Packet::from_slice(&frame);
        let h = p.locate(Link::Ethernet).unwrap();
        let a: IpAddr = if v6 { IpAddr::from(na) } else { IpAddr::from([na[0], na[1], na[2], na[3]]) };
        let to = std::net::SocketAddr::new(a, np);
        let r = if to_src { p.set_src_endpoint(&h, to) } else { p.set_dst_endpoint(&h, to) };
        let has_ports = h.proto == proto::TCP || h.proto == proto::UDP;
        prop_assert_eq!(r.is_ok(), has_ports);
        prop_assert!(verify(p.data()).is_ok(), "{:?}", verify(p.data()));
        if has_ports {
            let k = nf_core::FlowKey::from_headers(p.buffer(), &h).unwrap();
            if to_src {
                prop_assert_eq!((k.src(), k.src_port()), (a, np));
            } else {
                prop_assert_eq!((k.dst(), k.dst_port()), (a, np));
            }
        }
        if let (false, L4::UdpNoChecksum) = (v6, l4) {
            prop_assert_eq!(&p.data()[40..42], &[0, 0]);
        }
    }

    /// `locate_key` (one fused pass for the common case) gives what `locate` then `from_headers` give, on
    /// valid frames of every kind and on the same frames cut short or with a byte changed.
    #[test]
    fn the_fused_locate_agrees_with_the_two_steps(
        v6: bool, l4 in l4_strategy(),
        src: [u8; 16], dst: [u8; 16], sp: u16, dp: u16,
        payload in proptest::collection::vec(any::<u8>(), 0..64),
        cut in 0usize..120, flip_at in 0usize..60, flip: u8, raw_ip: bool,
    ) {
        let mut frame = build(v6, l4, src, dst, sp, dp, &payload);
        if flip_at < frame.len() { frame[flip_at] ^= flip; }
        if cut < 40 { frame.truncate(frame.len().saturating_sub(cut)); } // a third of the cases cut short
        let (link, bytes) = if raw_ip { (Link::Ip, &frame[14.min(frame.len())..]) } else { (Link::Ethernet, &frame[..]) };
        let fused = Packet::from_slice(bytes).locate_key(link).ok();
        let mut p = Packet::from_slice(bytes);
        let two = p.locate(link).ok().map(|h| (h, nf_core::FlowKey::from_headers(p.buffer(), &h)));
        prop_assert_eq!(fused, two);
    }

    /// The integer fast path of `is_canonical` orders keys as `IpAddr` does; both directions agree.
    #[test]
    fn canonical_order_is_the_address_order(a: [u8; 4], b: [u8; 4], sp: u16, dp: u16, same: bool) {
        let b = if same { a } else { b };
        let k = nf_core::FlowKey::new(6, IpAddr::from(a), sp, IpAddr::from(b), dp);
        prop_assert_eq!(k.is_canonical(), (k.src(), k.src_port()) <= (k.dst(), k.dst_port()));
        prop_assert_eq!(k.canonical().0, k.reversed().canonical().0);
    }

    /// The unrolled IPv4 header checksum equals the general one's-complement sum.
    #[test]
    fn the_unrolled_header_checksum_is_the_checksum(h: [u8; 20]) {
        prop_assert_eq!(checksum::ipv4_header(&h), !checksum::fold(checksum::sum(&h, 0)));
    }

    #[test]
    fn ttl_decrement_keeps_the_header_checksum(ttl in 1u8..=255, src: [u8; 4], dst: [u8; 4]) {
        let mut out = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6]).ipv4(src, dst, ttl).udp(1, 2).write(&mut out, b"x").unwrap();
        let mut p = Packet::from_slice(&out);
        let h = p.locate(Link::Ethernet).unwrap();
        prop_assert_eq!(p.dec_ttl(&h).unwrap(), ttl - 1);
        prop_assert_eq!(checksum::checksum(&p.data()[14..34]), 0);
    }

    #[test]
    fn push_and_pull_keep_data(head in 0usize..300, data in proptest::collection::vec(any::<u8>(), 0..100)) {
        let mut p = Packet::from_slice(&data);
        p.push(head).fill(0xee);
        prop_assert_eq!(p.len(), data.len() + head);
        p.pull(head).unwrap();
        prop_assert_eq!(p.data(), &data[..]);
        prop_assert!(p.pull(data.len() + 1).is_err());
    }
}
