//! APLOMB's gateway: tunnels in three formats (byte-identical round trips, outer headers checked by an
//! independent parser), the path MTU (fragments, ICMP "fragmentation needed", MSS clamping), compression
//! (exact round trips, the ratio on repetitive HTTP), and the choice of a PoP by measured latency.

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use nf_core::element::Element;
use nf_core::elements::tunnel::PoPSelector;
use nf_core::elements::tunnel::{Compress, Decompress};
use nf_core::elements::tunnel::{Tunnel, TunnelDecap, TunnelEncap, TunnelMode, decapsulate};
use nf_core::{Batch, Outputs, Packet, Timestamp};
use std::net::Ipv4Addr;
use std::sync::Arc;

const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const REMOTE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

fn tcp4(len: usize, df: bool, syn: bool) -> Vec<u8> {
    let mut ip = etherparse::Ipv4Header::new(
        0,
        64,
        etherparse::IpNumber::TCP,
        [10, 0, 0, 1],
        [10, 9, 9, 9],
    )
    .unwrap();
    ip.dont_fragment = df;
    ip.identification = 777;
    let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ip(etherparse::IpHeaders::Ipv4(ip, Default::default()))
        .tcp(40000, 80, 1000, 64240);
    let mut v = Vec::new();
    if syn {
        b = b.syn();
        b.options(&[etherparse::TcpOptionElement::MaximumSegmentSize(1460)])
            .unwrap()
            .write(&mut v, b"")
            .unwrap();
    } else {
        let payload: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        b.ack(5).write(&mut v, &payload).unwrap();
    }
    v
}

fn others() -> Vec<Vec<u8>> {
    let mut v6 = Vec::new();
    PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv6(
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            64,
        )
        .tcp(1, 2, 3, 4)
        .write(&mut v6, &[9u8; 300])
        .unwrap();
    let mut udp = Vec::new();
    PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4([10, 0, 0, 7], [10, 0, 0, 8], 9)
        .udp(53, 5353)
        .write(&mut udp, b"dns")
        .unwrap();
    // A VLAN-tagged frame: the tag stays in front of the outer header.
    let mut vlan = Vec::new();
    PacketBuilder::ethernet2([2; 6], [4; 6])
        .single_vlan(etherparse::VlanId::try_new(42).unwrap())
        .ipv4([10, 0, 0, 7], [10, 0, 0, 8], 9)
        .udp(1, 2)
        .write(&mut vlan, &[1u8; 100])
        .unwrap();
    vec![v6, udp, vlan]
}

fn run<E: Element>(e: &mut E, frames: &[Vec<u8>], outs: usize) -> Vec<Vec<Vec<u8>>> {
    let mut b = Batch::new();
    for f in frames {
        b.push(Packet::from_slice(f));
    }
    let mut out = Outputs::new(outs);
    e.push(0, &mut b, &mut out);
    (0..outs)
        .map(|i| out.port(i).drain().map(|p| p.data().to_vec()).collect())
        .collect()
}

fn modes() -> [TunnelMode; 3] {
    [
        TunnelMode::IpIp,
        TunnelMode::Gre,
        TunnelMode::Vxlan { vni: 42 },
    ]
}

fn encap(mode: TunnelMode, mtu: u16) -> TunnelEncap {
    let mut t = Tunnel::new(mode, LOCAL, REMOTE);
    t.mtu = mtu;
    let mut e = TunnelEncap::new(t);
    e.initialize(&nf_core::element::InitContext {
        name: "e",
        ninputs: 1,
        noutputs: 2,
        shard: 0,
        shards: 1,
        pull_inputs: 0,
        pull_outputs: 0,
        cohort: None,
    })
    .unwrap();
    e
}

#[test]
fn encapsulation_then_decapsulation_is_byte_identical_in_every_mode() {
    let mut frames = vec![
        tcp4(0, true, false),
        tcp4(1000, true, false),
        tcp4(1480 - 40, true, false),
    ];
    frames.extend(others());
    for mode in modes() {
        let mut e = encap(mode, 1500 + 30);
        let out = run(&mut e, &frames, 2);
        assert_eq!(
            out[0].len(),
            frames.len(),
            "{mode:?}: every frame tunnelled"
        );
        for (orig, t) in frames.iter().zip(&out[0]) {
            // An independent parser reads the outer headers.
            let s = SlicedPacket::from_ethernet(t).unwrap();
            let Some(NetSlice::Ipv4(ip)) = &s.net else {
                panic!("{mode:?}: outer IPv4")
            };
            let h = ip.header();
            assert_eq!(h.source_addr(), LOCAL);
            assert_eq!(h.destination_addr(), REMOTE);
            assert_eq!(h.to_header().calc_header_checksum(), h.header_checksum());
            assert!(h.dont_fragment());
            match mode {
                TunnelMode::IpIp => assert!([4, 41].contains(&h.protocol().0)),
                TunnelMode::Gre => assert_eq!(h.protocol().0, 47),
                TunnelMode::Vxlan { .. } => {
                    let Some(TransportSlice::Udp(u)) = &s.transport else {
                        panic!("UDP")
                    };
                    assert_eq!(u.destination_port(), 4789);
                    assert_eq!(&u.payload()[..8], &[8, 0, 0, 0, 0, 0, 42, 0]);
                    assert_eq!(&u.payload()[8..], &orig[..], "the whole inner frame");
                }
            }
            let mut p = Packet::from_slice(t);
            decapsulate(&mut p, mode, true).unwrap();
            assert_eq!(p.data(), &orig[..], "{mode:?}: decapsulated = original");
        }
        // And through the element.
        let mut d = TunnelDecap::new(mode, true);
        let back = run(&mut d, &out[0], 1);
        assert_eq!(back[0], frames);
        // Another mode's packets are not this tunnel's.
        let other = if mode == TunnelMode::Gre {
            TunnelMode::IpIp
        } else {
            TunnelMode::Gre
        };
        let mut p = Packet::from_slice(&out[0][0]);
        assert!(decapsulate(&mut p, other, false).is_err());
    }
}

#[test]
fn oversized_packets_are_fragmented_or_answered_with_fragmentation_needed() {
    for mode in modes() {
        let mut e = encap(mode, 1500);
        let room = 1500 - mode.overhead();
        // DF and too big: an ICMP error to the sender, with the tunnel's MTU.
        let big = tcp4(1460, true, false);
        let out = run(&mut e, std::slice::from_ref(&big), 2);
        assert!(out[0].is_empty());
        assert_eq!(out[1].len(), 1, "{mode:?}");
        let s = SlicedPacket::from_ethernet(&out[1][0]).unwrap();
        let Some(NetSlice::Ipv4(ip)) = &s.net else {
            panic!()
        };
        assert_eq!(ip.header().destination_addr(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(ip.header().source_addr(), LOCAL);
        let Some(TransportSlice::Icmpv4(icmp)) = &s.transport else {
            panic!("ICMP")
        };
        assert_eq!(
            icmp.icmp_type(),
            etherparse::Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded {
                    next_hop_mtu: room as u16
                }
            )
        );
        assert_eq!(
            nf_core::checksum::checksum(icmp.slice()),
            0,
            "ICMP checksum"
        );
        assert_eq!(&out[1][0][6..12], &big[0..6], "back to the sender's MAC");
        assert_eq!(e.read_handler("frag_needed").unwrap(), "1");

        // Not DF: fragments that fit, which reassemble to the original.
        let big = tcp4(3000, false, false);
        let out = run(&mut e, std::slice::from_ref(&big), 2);
        assert!(out[0].len() >= 3, "{mode:?}");
        let mut payload = vec![0u8; 0];
        let mut last_seen = false;
        for f in &out[0] {
            let s = SlicedPacket::from_ethernet(f).unwrap();
            let Some(NetSlice::Ipv4(ip)) = &s.net else {
                panic!()
            };
            assert!(
                usize::from(ip.header().total_len()) <= 1500,
                "{mode:?}: fits the MTU"
            );
            let mut p = Packet::from_slice(f);
            decapsulate(&mut p, mode, true).unwrap();
            let inner = &p.data()[14..];
            let h = etherparse::Ipv4HeaderSlice::from_slice(inner).unwrap();
            assert_eq!(h.identification(), 777);
            assert_eq!(
                h.to_header().calc_header_checksum(),
                h.header_checksum(),
                "fragment checksum"
            );
            let off = usize::from(h.fragments_offset().value()) * 8;
            let data = &inner[20..usize::from(h.total_len())];
            if payload.len() < off + data.len() {
                payload.resize(off + data.len(), 0);
            }
            payload[off..off + data.len()].copy_from_slice(data);
            last_seen |= !h.more_fragments();
        }
        assert!(last_seen);
        assert_eq!(
            &payload[..],
            &big[34..],
            "{mode:?}: the fragments reassemble"
        );
    }
}

#[test]
fn syn_mss_is_clamped_to_what_the_tunnel_carries() {
    for mode in modes() {
        let mut e = encap(mode, 1500);
        let out = run(&mut e, &[tcp4(0, true, true)], 2);
        let mut p = Packet::from_slice(&out[0][0]);
        decapsulate(&mut p, mode, true).unwrap();
        let s = SlicedPacket::from_ethernet(p.data()).unwrap();
        let Some(TransportSlice::Tcp(t)) = &s.transport else {
            panic!()
        };
        let mss = t
            .options_iterator()
            .find_map(|o| match o {
                Ok(etherparse::TcpOptionElement::MaximumSegmentSize(m)) => Some(m),
                _ => None,
            })
            .unwrap();
        assert_eq!(usize::from(mss), 1500 - mode.overhead() - 40, "{mode:?}");
        let Some(NetSlice::Ipv4(ip)) = &s.net else {
            panic!()
        };
        let want = t
            .to_header()
            .calc_checksum_ipv4(&ip.header().to_header(), t.payload())
            .unwrap();
        assert_eq!(t.checksum(), want, "checksum updated");
    }
}

fn http_response(i: usize) -> Vec<u8> {
    let mut body = String::from(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nCache-Control: no-cache\r\n\
         Server: nginx\r\n\r\n<html><body><table class=\"items\">",
    );
    let mut k = 0;
    while body.len() < 1300 {
        body.push_str(&format!(
            "<tr><td class=\"name\">item {}</td><td class=\"price\">{}.99</td></tr>",
            i * 100 + k,
            k % 50
        ));
        k += 1;
    }
    let mut v = Vec::new();
    PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4([10, 9, 9, 9], [10, 0, 0, 1], 64)
        .tcp(80, 40000, 1 + i as u32 * 1400, 64240)
        .ack(1)
        .write(&mut v, body.as_bytes())
        .unwrap();
    v
}

#[test]
fn compression_round_trips_exactly_with_a_ratio_above_two_on_http() {
    let frames: Vec<Vec<u8>> = (0..200).map(http_response).collect();
    let mut c = Compress::new(Arc::from(Vec::new()));
    let mut d = Decompress::new(Arc::from(Vec::new()));
    let packed = run(&mut c, &frames, 1);
    let s = c.stats();
    eprintln!(
        "compression: {} packets, {} -> {} payload bytes, ratio {:.2}",
        s.packets,
        s.bytes_in,
        s.bytes_out,
        s.ratio()
    );
    assert_eq!(s.packets, 200);
    assert!(s.ratio() >= 2.0, "ratio {}", s.ratio());
    for f in &packed[0] {
        let sp = SlicedPacket::from_ethernet(f).unwrap();
        let Some(NetSlice::Ipv4(ip)) = &sp.net else {
            panic!()
        };
        assert_eq!(ip.header().protocol().0, 108, "IPComp");
        assert_eq!(
            ip.header().to_header().calc_header_checksum(),
            ip.header().header_checksum()
        );
    }
    let back = run(&mut d, &packed[0], 1);
    assert_eq!(back[0], frames, "exact round trip");
    // Compressed, tunnelled, decapsulated, decompressed: still the original.
    let mut e = encap(TunnelMode::Gre, 1500);
    let t = run(&mut e, &packed[0], 2);
    let mut dd = TunnelDecap::new(TunnelMode::Gre, false);
    let inner = run(&mut dd, &t[0], 1);
    let back = run(&mut d, &inner[0], 1);
    assert_eq!(back[0], frames);
    // Corrupt data is an error, counted, and the packet dropped; other traffic passes.
    let mut bad = packed[0][0].clone();
    let n = bad.len();
    bad[n - 20..].fill(0xff);
    bad.truncate(n - 5);
    let l = (bad.len() - 14) as u16;
    bad[16..18].copy_from_slice(&l.to_be_bytes());
    let out = run(&mut d, &[bad, tcp4(10, true, false)], 1);
    assert_eq!(out[0].len(), 1);
    assert_eq!(d.read_handler("errors").unwrap(), "1");
}

#[test]
fn a_shared_dictionary_makes_small_packets_compress() {
    let dict = b"GET / HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n\
                 Accept: text/html,application/xhtml+xml\r\nAccept-Language: en-US,en;q=0.5\r\n\
                 Accept-Encoding: gzip, deflate, br\r\nConnection: keep-alive\r\n\r\n"
        .to_vec();
    let reqs: Vec<Vec<u8>> = (0..50)
        .map(|i| {
            let r = format!(
                "GET /page/{i} HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux \
                 x86_64)\r\nAccept: text/html,application/xhtml+xml\r\nAccept-Language: en-US,en;q=0.5\r\n\
                 Accept-Encoding: gzip, deflate, br\r\nConnection: keep-alive\r\n\r\n"
            );
            let mut v = Vec::new();
            PacketBuilder::ethernet2([2; 6], [4; 6])
                .ipv4([10, 0, 0, 1], [10, 9, 9, 9], 64)
                .tcp(40000 + i, 80, 1, 64240)
                .ack(1)
                .write(&mut v, r.as_bytes())
                .unwrap();
            v
        })
        .collect();
    let mut plain = Compress::new(Arc::from(Vec::new()));
    run(&mut plain, &reqs, 1);
    let mut with = Compress::new(Arc::from(dict.clone()));
    let packed = run(&mut with, &reqs, 1);
    eprintln!(
        "small requests: ratio {:.2} alone, {:.2} with a dictionary",
        plain.stats().ratio(),
        with.stats().ratio()
    );
    assert!(with.stats().ratio() > plain.stats().ratio() * 1.5);
    let mut d = Decompress::new(Arc::from(dict));
    assert_eq!(run(&mut d, &packed[0], 1)[0], reqs);
}

/// Three PoPs; the round trip to destination A is 30, 10, 50 ms through them and to B 5, 40, 20 ms. The
/// "network" answers each SYN with a SYN-ACK after the round trip of the PoP it was sent to.
#[test]
fn new_connections_go_through_the_pop_with_the_lowest_measured_latency() {
    let rtt = |pop: usize, dst: u8| -> u64 {
        let t = if dst == 1 { [30, 10, 50] } else { [5, 40, 20] };
        t[pop] * 1_000_000
    };
    let mut s = PoPSelector::new(vec!["ams".into(), "fra".into(), "lon".into()]).explore_every(16);
    let mut t = 1_000_000_000u64;
    let mut picks = [[0u32; 3]; 2];
    let mut flows = Vec::new();
    for i in 0..400u16 {
        let dst = if i % 2 == 0 { 1u8 } else { 2 };
        let frame = |syn: bool, ack: bool, rev: bool| {
            let (src, dstip) = ([192, 168, 1, 10], [10, dst, dst, 5]);
            let mut b = if rev {
                PacketBuilder::ethernet2([4; 6], [2; 6])
                    .ipv4(dstip, src, 64)
                    .tcp(443, 20000 + i, 1, 1000)
            } else {
                PacketBuilder::ethernet2([2; 6], [4; 6])
                    .ipv4(src, dstip, 64)
                    .tcp(20000 + i, 443, 1, 1000)
            };
            if syn {
                b = b.syn();
            }
            if ack {
                b = b.ack(2);
            }
            let mut v = Vec::new();
            b.write(&mut v, b"").unwrap();
            v
        };
        let mut b = Batch::new();
        let mut p = Packet::from_slice(&frame(true, false, false));
        p.anno.timestamp = Timestamp(t);
        b.push(p);
        let mut out = Outputs::new(4);
        s.push(0, &mut b, &mut out);
        let pop = (0..3).find(|&k| !out.port(k).is_empty()).unwrap();
        if i >= 40 {
            picks[usize::from(dst - 1)][pop] += 1;
        }
        flows.push((frame(false, true, false), pop));
        // The SYN-ACK comes back after that PoP's round trip.
        let mut b = Batch::new();
        let mut p = Packet::from_slice(&frame(true, true, true));
        p.anno.timestamp = Timestamp(t + rtt(pop, dst));
        b.push(p);
        let mut out = Outputs::new(4);
        s.push(1, &mut b, &mut out);
        assert_eq!(out.port(3).len(), 1, "returns pass through");
        t += 60_000_000;
    }
    eprintln!(
        "picks after warm-up: to A {:?}, to B {:?}",
        picks[0], picks[1]
    );
    // Fastest: fra for A, ams for B; exploration takes 1 in 16.
    assert!(picks[0][1] as f64 >= 0.85 * 180.0, "{:?}", picks[0]);
    assert!(picks[1][0] as f64 >= 0.85 * 180.0, "{:?}", picks[1]);
    let a = std::net::IpAddr::from([10, 1, 1, 5]);
    assert_eq!(s.rtt(1, a), Some(10_000_000));
    // A connection keeps its PoP.
    for (f, pop) in flows.iter().take(50) {
        let mut b = Batch::new();
        let mut p = Packet::from_slice(f);
        p.anno.timestamp = Timestamp(t);
        b.push(p);
        let mut out = Outputs::new(4);
        s.push(0, &mut b, &mut out);
        assert_eq!(out.port(*pop).len(), 1);
    }
    s.write_handler("rtt", "lon 10.1.1.77 1").unwrap();
    assert!(s.read_handler("rtt").unwrap().contains("10.1.1.0/24"));
    assert!(s.write_handler("rtt", "nowhere 10.1.1.1 3").is_err());
}

#[test]
fn configured_from_text() {
    let reg = nf_core::Registry::standard();
    let ok = "Idle -> Compress -> e :: TunnelEncap(MODE vxlan, LOCAL 192.0.2.1, REMOTE 198.51.100.1, VNI 7, MTU 1400)
              -> TunnelDecap(MODE vxlan, VNI 7) -> Decompress -> s :: PoPSelector(POP a, POP b);
              s[0] -> Discard; s[1] -> Discard; e[1] -> Discard;";
    assert_eq!(nf_core::testing::check_config(&reg, "t", ok), None);
    for (text, want) in [
        (
            "Idle -> TunnelEncap(MODE l2tp, LOCAL 1.1.1.1, REMOTE 2.2.2.2) -> Discard;",
            "ipip, gre or vxlan",
        ),
        (
            "Idle -> TunnelEncap(MODE gre, LOCAL 1.1.1.1, REMOTE 2.2.2.2, VNI 3) -> Discard;",
            "VNI is for vxlan",
        ),
        (
            "Idle -> TunnelEncap(MODE gre, LOCAL 1.1.1.1, REMOTE 2.2.2.2, MTU 80) -> Discard;",
            "less than 68",
        ),
        (
            "Idle -> s :: PoPSelector(POP a, POP b) -> Discard;",
            "need 2 outputs",
        ),
        (
            "Idle -> Compress(DICT /nonexistent/dict) -> Discard;",
            "DICT /nonexistent/dict",
        ),
    ] {
        let e = nf_core::testing::check_config(&reg, "t", text).unwrap();
        assert!(e.contains(want), "{text}: {e}");
    }
}

#[test]
fn a_dictionary_that_never_ends_is_an_error_not_a_hang() {
    let reg = nf_core::Registry::standard();
    let e =
        nf_core::testing::check_config(&reg, "t", "Idle -> Compress(DICT /dev/zero) -> Discard;")
            .unwrap();
    assert!(e.contains("not a regular file"), "{e}");
}
