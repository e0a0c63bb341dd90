//! `ConnTrack` as a minion firewall: connections installed from another box pass mid-stream, every other
//! mid-stream packet stays untracked (dropped by a strict firewall), and removals and clears take effect.

use etherparse::PacketBuilder;
use nf_core::element::Element;
use nf_core::elements::tcpudp::{ConnTrack, Connection, CtInstall, ProtoState, TcpState};
use nf_core::{Batch, FlowKey, Outputs, Packet, Timestamp};

fn tcp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: &str, t: u64) -> Packet {
    let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, dst, 64)
        .tcp(sport, dport, 1, 1000);
    if flags.contains('S') {
        b = b.syn();
    }
    if flags.contains('A') {
        b = b.ack(1);
    }
    let mut v = Vec::new();
    b.write(&mut v, b"data").unwrap();
    let mut p = Packet::from_slice(&v);
    p.anno.timestamp = Timestamp(t);
    p
}

/// Pushes an empty batch's worth of nothing but the installs (they are applied before a batch).
fn settle(ct: &mut ConnTrack, t: u64) {
    let mut b = Batch::new();
    b.push(tcp([9, 9, 9, 9], 9, [9, 9, 9, 8], 9, "S", t));
    let mut out = Outputs::new(2);
    ct.push(0, &mut b, &mut out);
}

#[test]
fn installed_connections_pass_mid_stream_and_others_do_not() {
    let (c, s) = ([10, 0, 0, 5], [10, 1, 0, 3]);
    let mut ct = ConnTrack::new(1024);
    let tx = ct.installer().unwrap();
    assert!(ct.installer().is_none());
    // Without state, a strict tracker does not take a mid-stream packet.
    assert!(!ct.track(&mut tcp(c, 40000, s, 80, "A", 1_000)));
    let origin = FlowKey::v4(6, c.into(), 40000, s.into(), 80);
    let (canon, reversed) = origin.canonical();
    tx.install(CtInstall::Set(
        canon,
        Connection {
            origin_reversed: reversed,
            state: ProtoState::Tcp(TcpState::Established),
            packets: [10, 10],
            bytes: [1000, 1000],
            first_seen: Timestamp(0),
            last_seen: Timestamp(0),
            timeout_secs: 0,
        },
    ))
    .unwrap();
    settle(&mut ct, 2_000);
    assert_eq!(ct.read_handler("installed").unwrap(), "1");
    // Both directions of the installed connection are tracked; another flow is not.
    assert!(ct.track(&mut tcp(c, 40000, s, 80, "A", 3_000)));
    assert!(ct.track(&mut tcp(s, 80, c, 40000, "A", 3_000)));
    assert!(!ct.track(&mut tcp(c, 40001, s, 80, "A", 3_000)));
    let conn = ct.lookup(&origin).unwrap();
    assert_eq!(conn.packets, [11, 11]);
    assert_eq!(
        conn.timeout_secs, 7200,
        "the state's timeout when none came"
    );
    tx.install(CtInstall::Remove(canon)).unwrap();
    settle(&mut ct, 4_000);
    assert!(!ct.track(&mut tcp(c, 40000, s, 80, "A", 5_000)));
    tx.install(CtInstall::Set(
        canon,
        *ct.lookup(&FlowKey::v4(
            6,
            [9, 9, 9, 9].into(),
            9,
            [9, 9, 9, 8].into(),
            9,
        ))
        .unwrap(),
    ))
    .unwrap();
    tx.install(CtInstall::Clear).unwrap();
    settle(&mut ct, 6_000);
    assert!(ct.lookup(&origin).is_none());
}
