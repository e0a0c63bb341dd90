//! Ananta's Mux and Host Agent: IP-in-IP with the inner packet byte-identical, the same backend on every
//! Mux, established flows kept across a backend change while new SYNs re-hash, trusted flows surviving a
//! SYN flood, and the Host Agent's decapsulation + DNAT, reverse NAT and MSS clamping with valid checksums.

use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
use nf_core::element::Element;
use nf_core::elements::lb::{AnantaMux, HostAgent};
use nf_core::{Batch, FlowKey, Outputs, Packet, Timestamp};
use std::net::Ipv4Addr;

fn tcp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, syn: bool, mss: Option<u16>) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, dst, 64)
        .tcp(sport, dport, 1000, 64240);
    b = if syn { b.syn() } else { b.ack(5) };
    let mut v = Vec::new();
    match mss {
        Some(m) => b
            .options(&[etherparse::TcpOptionElement::MaximumSegmentSize(m)])
            .unwrap()
            .write(&mut v, b"")
            .unwrap(),
        None => b.write(&mut v, b"data").unwrap(),
    }
    v
}

fn run<E: Element>(
    e: &mut E,
    port: usize,
    frames: Vec<Vec<u8>>,
    t: u64,
    outs: usize,
) -> Vec<Vec<Vec<u8>>> {
    let mut b = Batch::new();
    for f in frames {
        let mut p = Packet::from_slice(&f);
        p.anno.timestamp = Timestamp(t);
        b.push(p);
    }
    let mut out = Outputs::new(outs);
    e.push(port, &mut b, &mut out);
    (0..outs)
        .map(|i| out.port(i).drain().map(|p| p.data().to_vec()).collect())
        .collect()
}

const VIP: [u8; 4] = [10, 0, 0, 100];
const HOSTS: [[u8; 4]; 3] = [[10, 2, 0, 1], [10, 2, 0, 2], [10, 2, 0, 3]];

fn mux() -> AnantaMux {
    AnantaMux::new(
        "10.0.0.100:80".parse().unwrap(),
        Ipv4Addr::new(10, 9, 9, 9),
        HOSTS.iter().map(|h| Ipv4Addr::from(*h)).collect(),
    )
    .capacities(65536, 256)
}

/// (outer dst, inner bytes) of an encapsulated frame, after checking the outer header.
fn outer(f: &[u8]) -> ([u8; 4], &[u8]) {
    assert_eq!(f[14], 0x45);
    assert_eq!(f[14 + 9], 4, "IP-in-IP");
    assert_eq!(
        &f[14 + 12..14 + 16],
        &[10, 9, 9, 9],
        "outer source: the Mux"
    );
    assert_eq!(nf_core::checksum::checksum(&f[14..34]), 0, "outer checksum");
    let mut d = [0u8; 4];
    d.copy_from_slice(&f[30..34]);
    (d, &f[34..])
}

#[test]
fn the_inner_packet_is_untouched_and_every_mux_agrees() {
    let (mut a, mut b) = (mux(), mux());
    for k in 0..200u16 {
        let f = tcp([192, 0, 2, (k % 250) as u8], 1000 + k, VIP, 80, true, None);
        let oa = run(&mut a, 0, vec![f.clone()], 1, 2);
        let ob = run(&mut b, 0, vec![f.clone()], 1, 2);
        let (da, inner) = outer(&oa[0][0]);
        assert_eq!(inner, &f[14..], "inner packet byte-identical");
        assert_eq!(
            &oa[0][0][..14],
            &f[..14],
            "the Ethernet header kept in front"
        );
        let total = u16::from_be_bytes([oa[0][0][16], oa[0][0][17]]);
        assert_eq!(usize::from(total), f.len() - 14 + 20, "outer total length");
        assert_eq!(outer(&ob[0][0]).0, da, "both Muxes choose the same backend");
        assert!(HOSTS.contains(&da));
    }
}

#[test]
fn established_flows_keep_their_backend_when_the_set_changes_new_syns_rehash() {
    let mut m = mux();
    let mut first = Vec::new();
    for k in 0..300u16 {
        let src = [192, 0, 2, (k % 250) as u8];
        let o = run(
            &mut m,
            0,
            vec![tcp(src, 1000 + k, VIP, 80, true, None)],
            1,
            2,
        );
        first.push(outer(&o[0][0]).0);
        // The second packet makes the flow trusted.
        run(
            &mut m,
            0,
            vec![tcp(src, 1000 + k, VIP, 80, false, None)],
            2,
            2,
        );
    }
    m.write_handler("set_backends", "10.2.0.1 10.2.0.2")
        .unwrap();
    for k in 0..300u16 {
        let src = [192, 0, 2, (k % 250) as u8];
        let o = run(
            &mut m,
            0,
            vec![tcp(src, 1000 + k, VIP, 80, false, None)],
            3,
            2,
        );
        assert_eq!(outer(&o[0][0]).0, first[k as usize], "flow {k} moved");
    }
    // New SYNs hash over the new set only.
    for k in 0..300u16 {
        let o = run(
            &mut m,
            0,
            vec![tcp([198, 51, 100, 7], 2000 + k, VIP, 80, true, None)],
            3,
            2,
        );
        assert_ne!(outer(&o[0][0]).0, HOSTS[2]);
    }
}

#[test]
fn a_syn_flood_does_not_push_trusted_flows_out() {
    let mut m = mux();
    let trusted: Vec<FlowKey> = (0..100u16)
        .map(|k| {
            let src = [192, 0, 2, k as u8];
            run(
                &mut m,
                0,
                vec![tcp(src, 1000 + k, VIP, 80, true, None)],
                1,
                2,
            );
            run(
                &mut m,
                0,
                vec![tcp(src, 1000 + k, VIP, 80, false, None)],
                1,
                2,
            );
            FlowKey::new(
                6,
                Ipv4Addr::from(src).into(),
                1000 + k,
                Ipv4Addr::from(VIP).into(),
                80,
            )
        })
        .collect();
    for k in 0..50_000u32 {
        let src = Ipv4Addr::from(0xc633_0000 | k).octets();
        run(
            &mut m,
            0,
            vec![tcp(src, (k % 60_000) as u16 + 1024, VIP, 80, true, None)],
            1,
            2,
        );
    }
    assert_eq!(m.read_handler("trusted").unwrap(), "100");
    assert!(
        m.read_handler("untrusted")
            .unwrap()
            .parse::<usize>()
            .unwrap()
            <= 256
    );
    assert!(m.read_handler("stateless").unwrap().parse::<u64>().unwrap() > 49_000);
    for k in &trusted {
        assert!(m.trusted_backend(k).is_some());
    }
}

#[test]
fn the_host_agent_decapsulates_dnats_and_restores_the_vip_on_replies() {
    let mut m = mux();
    let mut ha = HostAgent::new(
        "10.0.0.100:80".parse().unwrap(),
        "10.2.0.1:8080".parse().unwrap(),
    )
    .mss(1400);
    let syn = tcp([192, 0, 2, 9], 40808, VIP, 80, true, Some(1460));
    let enc = run(&mut m, 0, vec![syn], 1, 2).remove(0).remove(0);
    let to_vm = run(&mut ha, 0, vec![enc], 1, 2).remove(0).remove(0);
    let p = SlicedPacket::from_ethernet(&to_vm).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = p.net.as_ref() else {
        panic!()
    };
    let h = ip.header().to_header();
    assert_eq!(nf_core::checksum::checksum(ip.header().slice()), 0);
    assert_eq!(h.destination, [10, 2, 0, 1]);
    let Some(TransportSlice::Tcp(t)) = p.transport.as_ref() else {
        panic!()
    };
    assert_eq!(t.destination_port(), 8080);
    assert_eq!(
        t.calc_checksum_ipv4(h.source, h.destination).unwrap(),
        t.checksum()
    );
    let mss = t.options_iterator().find_map(|o| match o {
        Ok(etherparse::TcpOptionElement::MaximumSegmentSize(m)) => Some(m),
        _ => None,
    });
    assert_eq!(mss, Some(1400), "clamped");
    // The backend's SYN-ACK: source restored to VIP:80, straight to the client.
    let mut synack = tcp([10, 2, 0, 1], 8080, [192, 0, 2, 9], 40808, true, Some(1460));
    synack[14 + 20 + 13] |= 0x10; // SYN-ACK (checksum fixed below by the parser check's recompute)
    let fixed = {
        let p = SlicedPacket::from_ethernet(&synack).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = p.net.as_ref() else {
            panic!()
        };
        let h = ip.header().to_header();
        let Some(TransportSlice::Tcp(t)) = p.transport.as_ref() else {
            panic!()
        };
        let c = t.calc_checksum_ipv4(h.source, h.destination).unwrap();
        let mut f = synack.clone();
        f[14 + 20 + 16..14 + 20 + 18].copy_from_slice(&c.to_be_bytes());
        f
    };
    let to_client = run(&mut ha, 1, vec![fixed], 1, 2).remove(1).remove(0);
    let p = SlicedPacket::from_ethernet(&to_client).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = p.net.as_ref() else {
        panic!()
    };
    let h = ip.header().to_header();
    assert_eq!(h.source, VIP);
    let Some(TransportSlice::Tcp(t)) = p.transport.as_ref() else {
        panic!()
    };
    assert_eq!(t.source_port(), 80);
    assert_eq!(
        t.calc_checksum_ipv4(h.source, h.destination).unwrap(),
        t.checksum()
    );
    assert_eq!(ha.read_handler("clamped").unwrap(), "2");
}
