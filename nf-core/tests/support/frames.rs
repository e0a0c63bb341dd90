//! Frames for the stateful elements' tests (`LoadBalancer`, `IPRewriter`, `ConnTrack`): TCP and UDP
//! over IPv4 in Ethernet, built with etherparse, and read back with their checksums checked by full
//! recomputation.
#![allow(dead_code)]

use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
use std::net::IpAddr;

/// A TCP (`proto` "tcp") or UDP ("udp") frame with a five-byte payload; `flags` in "SFRA" (TCP), `seq`
/// its sequence number.
pub fn frame(
    proto: &str,
    src: &str,
    sport: u16,
    dst: &str,
    dport: u16,
    flags: &str,
    seq: u32,
) -> Vec<u8> {
    let s: std::net::Ipv4Addr = src.parse().unwrap();
    let d: std::net::Ipv4Addr = dst.parse().unwrap();
    let ip = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]).ipv4(
        s.octets(),
        d.octets(),
        64,
    );
    let mut v = Vec::new();
    if proto == "udp" {
        ip.udp(sport, dport).write(&mut v, b"hello").unwrap();
        return v;
    }
    let mut b = ip.tcp(sport, dport, seq, 1000);
    if flags.contains('S') {
        b = b.syn();
    }
    if flags.contains('F') {
        b = b.fin();
    }
    if flags.contains('R') {
        b = b.rst();
    }
    if flags.contains('A') {
        b = b.ack(1);
    }
    b.write(&mut v, b"hello").unwrap();
    v
}

/// (src, sport, dst, dport) of a TCP or UDP frame, after checking its checksums by full recomputation.
pub fn addrs(frame: &[u8]) -> (String, u16, String, u16) {
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = p.net.as_ref() else {
        panic!("not IPv4")
    };
    assert_eq!(
        nf_core::checksum::checksum(ip.header().slice()),
        0,
        "IPv4 checksum"
    );
    let h = ip.header().to_header();
    let (sp, dp) = match p.transport.as_ref() {
        Some(TransportSlice::Tcp(t)) => {
            assert_eq!(
                t.calc_checksum_ipv4(h.source, h.destination).unwrap(),
                t.checksum(),
                "TCP checksum"
            );
            (t.source_port(), t.destination_port())
        }
        Some(TransportSlice::Udp(u)) => {
            let payload = &frame[frame.len() - 5..];
            assert_eq!(
                u.to_header()
                    .calc_checksum_ipv4_raw(h.source, h.destination, payload)
                    .unwrap(),
                u.checksum(),
                "UDP checksum"
            );
            (u.source_port(), u.destination_port())
        }
        _ => panic!("not TCP or UDP"),
    };
    (
        IpAddr::from(h.source).to_string(),
        sp,
        IpAddr::from(h.destination).to_string(),
        dp,
    )
}
