//! Floods through the connection tracker: a SYN flood from spoofed sources and a flood of random
//! five-tuples (TCP and UDP, random ports), each 200,000 packets against a 4,096-entry table holding 1,000
//! established connections that keep talking. The table never exceeds its bound, every eviction is
//! counted, and the established connections are all still tracked (flood entries go first).

use etherparse::PacketBuilder;
use nf_core::element::Element;
use nf_core::elements::tcpudp::ConnTrack;
use nf_core::state::Stateful;
use nf_core::{Batch, FlowKey, Outputs, Packet, Timestamp};

const S: u64 = 1_000_000_000_000;

fn frame(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, tcp: Option<&str>) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2; 6], [4; 6]).ipv4(src, dst, 64);
    let mut v = Vec::new();
    match tcp {
        Some(flags) => {
            let mut t = b.tcp(sport, dport, 1, 1000);
            if flags.contains('S') {
                t = t.syn();
            }
            if flags.contains('A') {
                t = t.ack(1);
            }
            t.write(&mut v, b"").unwrap();
        }
        None => b.udp(sport, dport).write(&mut v, b"x").unwrap(),
    }
    v
}

fn push(ct: &mut ConnTrack, f: &[u8], t: u64) {
    let mut b = Batch::new();
    let mut p = Packet::from_slice(f);
    p.anno.timestamp = Timestamp(t);
    b.push(p);
    let mut out = Outputs::new(1);
    ct.push(0, &mut b, &mut out);
}

fn h(ct: &ConnTrack, n: &str) -> u64 {
    ct.read_handler(n).unwrap().parse().unwrap()
}

fn established(ct: &mut ConnTrack, t: u64) {
    for k in 0..1000u16 {
        let c = [10, 0, (k >> 8) as u8, k as u8];
        push(ct, &frame(c, 40_000, [10, 9, 9, 9], 443, Some("A")), t);
        push(ct, &frame([10, 9, 9, 9], 443, c, 40_000, Some("A")), t);
    }
}

fn run(name: &str, flood: impl Fn(u32) -> Vec<u8>) {
    let mut ct = ConnTrack::new(4096);
    for k in 0..1000u16 {
        let c = [10, 0, (k >> 8) as u8, k as u8];
        push(&mut ct, &frame(c, 40_000, [10, 9, 9, 9], 443, Some("S")), S);
        push(
            &mut ct,
            &frame([10, 9, 9, 9], 443, c, 40_000, Some("SA")),
            S,
        );
        push(&mut ct, &frame(c, 40_000, [10, 9, 9, 9], 443, Some("A")), S);
    }
    let mut peak = 0;
    for k in 0..200_000u32 {
        let t = S + u64::from(k) * 10_000; // 2 s of flood
        push(&mut ct, &flood(k), t);
        peak = peak.max(h(&ct, "flows"));
        if k % 20_000 == 0 {
            established(&mut ct, t);
        }
    }
    let kept = (0..1000u16)
        .filter(|k| {
            let c = std::net::IpAddr::from([10, 0, (k >> 8) as u8, *k as u8]);
            let key = FlowKey::new(6, c, 40_000, [10, 9, 9, 9].into(), 443)
                .canonical()
                .0;
            ct.table().lookup(key.table_hash(), &key).is_some()
        })
        .count();
    eprintln!(
        "{name}: 200,000 packets, peak {peak} of 4096 entries, evicted {}, rejected {}, untracked {}; \
         established kept {kept} of 1000",
        h(&ct, "evicted"),
        h(&ct, "rejected"),
        h(&ct, "untracked")
    );
    assert!(peak <= 4096, "{name}: {peak}");
    // Each flood packet made an entry that later had to be evicted (counted), or could not be tracked
    // (a mid-connection TCP segment of no known connection: counted, not inserted).
    assert!(
        h(&ct, "evicted") + h(&ct, "untracked") >= 196_000,
        "{name}: every flood packet accounted for"
    );
    assert_eq!(
        kept, 1000,
        "{name}: every established connection is still tracked"
    );
}

#[test]
fn a_syn_flood_stays_within_the_table_and_established_connections_stay() {
    run("SYN flood", |k| {
        let src = (0xc000_0000u32 | k).to_be_bytes();
        frame(
            src,
            (k % 60_000) as u16 + 1024,
            [10, 9, 9, 9],
            80,
            Some("S"),
        )
    });
}

#[test]
fn a_random_tuple_flood_stays_within_the_table_and_established_connections_stay() {
    run("random-tuple flood", |k| {
        let x = k.wrapping_mul(2_654_435_761);
        let src = x.to_be_bytes();
        let dst = x.rotate_left(13).to_be_bytes();
        let (sp, dp) = ((x >> 7) as u16, (x >> 19) as u16);
        // Half TCP segments of no known connection (not SYNs), half UDP.
        if k % 2 == 0 {
            frame(src, sp, dst, dp, Some("A"))
        } else {
            frame(src, sp, dst, dp, None)
        }
    });
}
