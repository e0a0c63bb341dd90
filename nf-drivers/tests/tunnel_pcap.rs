//! Tunnelled and compressed packets written to a capture file are read correctly by `tcpdump -r`: the
//! outer headers of IP-in-IP, GRE and VXLAN, and the inner packet behind them; IPComp for compressed ones.

use etherparse::PacketBuilder;
use nf_core::element::{Element, InitContext};
use nf_core::elements::tunnel::Compress;
use nf_core::elements::tunnel::{Tunnel, TunnelEncap, TunnelMode};
use nf_core::{Batch, Outputs, Packet, Timestamp};
use nf_drivers::io::pcap::PcapFileWriter;
use std::process::Command;
use std::sync::Arc;

fn inner() -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 0, 1], [10, 9, 9, 9], 64)
        .tcp(40000, 80, 1000, 64240)
        .ack(1)
        .write(
            &mut v,
            "GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n"
                .repeat(20)
                .as_bytes(),
        )
        .unwrap();
    v
}

fn through<E: Element>(e: &mut E, f: &[u8]) -> Vec<u8> {
    let mut b = Batch::new();
    b.push(Packet::from_slice(f));
    let mut out = Outputs::new(2);
    e.push(0, &mut b, &mut out);
    out.port(0).drain().next().unwrap().data().to_vec()
}

#[test]
fn tcpdump_reads_the_tunnels() {
    let dir = std::env::temp_dir().join(format!("nf-tunnel-pcap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        (
            TunnelMode::IpIp,
            false,
            vec!["192.0.2.1 > 198.51.100.1", "10.0.0.1.40000 > 10.9.9.9.80"],
        ),
        (
            TunnelMode::Gre,
            false,
            vec!["GREv0", "proto TCP (6)", "10.0.0.1.40000 > 10.9.9.9.80"],
        ),
        (
            TunnelMode::Vxlan { vni: 4242 },
            false,
            vec!["VXLAN", "vni 4242", "10.0.0.1.40000 > 10.9.9.9.80"],
        ),
        (TunnelMode::Gre, true, vec!["GREv0", "IPComp(cpi=0xf000)"]),
    ];
    for (mode, compressed, want) in cases {
        let mut e = TunnelEncap::new(Tunnel::new(
            mode,
            "192.0.2.1".parse().unwrap(),
            "198.51.100.1".parse().unwrap(),
        ));
        e.initialize(&InitContext {
            name: "e",
            ninputs: 1,
            noutputs: 1,
            shard: 0,
            shards: 1,
            pull_inputs: 0,
            pull_outputs: 0,
            cohort: None,
        })
        .unwrap();
        let mut f = inner();
        if compressed {
            f = through(&mut Compress::new(Arc::from(Vec::new())), &f);
        }
        let t = through(&mut e, &f);
        let file =
            dir.join(format!("{mode:?}-{compressed}.pcap").replace([' ', '{', '}', ':'], ""));
        let mut w =
            PcapFileWriter::create(&file, 65535, false, pcap_file::DataLink::ETHERNET).unwrap();
        w.write(Timestamp(1_700_000_000_000_000_000), &t).unwrap();
        w.close().unwrap();
        let out = Command::new("tcpdump")
            .args(["-nn", "-v", "-r"])
            .arg(&file)
            .output()
            .expect("tcpdump (scripts/test.sh installs it)");
        let text = String::from_utf8_lossy(&out.stdout);
        eprintln!("{mode:?} compressed={compressed}: {text}");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for w in want {
            assert!(text.contains(w), "{mode:?}: `{w}` in\n{text}");
        }
        assert!(
            !text.contains("truncated") && !text.contains("bad cksum"),
            "{text}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
