//! Blink on a real capture (needs root): 100 TCP connections stream data from a server to a client through
//! a router in network namespaces, with 1% of the packets towards the client dropped at random (normal
//! congestion losses); from time T the loss becomes 100% (a blackhole). `tcpdump` records the server's
//! side of the router (upstream of the failure, where Blink would sit). The capture is replayed through
//! `FromPcap -> BlinkDetector`: the lossy part raises no reroute, the blackhole reroutes within 1 s of T.
//! The detection time is printed (and recorded in BENCHMARKS.md).

#[path = "support/netns.rs"]
mod netns;

use netns::{Lab, stop_tcpdump, tcpdump, wait_until};
use nf_core::{Config, Router, Timestamp};
use std::collections::BTreeMap;

/// The server: every connection gets 200 bytes every 50 ms until it closes.
const SERVER: &str = r#"
import asyncio, sys
async def serve(r, w):
    try:
        while True:
            w.write(b"x" * 200)
            await w.drain()
            await asyncio.sleep(0.05)
    except Exception:
        pass
async def main():
    s = await asyncio.start_server(serve, "0.0.0.0", 5001)
    print("ready", flush=True)
    async with s:
        await s.serve_forever()
asyncio.run(main())
"#;

/// The client: 100 connections, reading.
const CLIENT: &str = r#"
import asyncio, sys
async def one():
    r, w = await asyncio.open_connection("10.7.2.2", 5001)
    while True:
        if not await r.read(65536):
            return
async def main():
    await asyncio.gather(*[one() for _ in range(100)], return_exceptions=True)
asyncio.run(main())
"#;

/// Copies the packets of `from` captured before `t` to `to`.
fn cut(from: &std::path::Path, to: &std::path::Path, t: Timestamp) {
    use nf_drivers::io::pcap::{CaptureFile, PcapFileWriter};
    let f = CaptureFile::open(from).unwrap();
    let mut w = PcapFileWriter::create(to, 65535, true, pcap_file::DataLink::ETHERNET).unwrap();
    for r in f.records() {
        let r = r.unwrap();
        if r.timestamp < t {
            w.write(r.timestamp, r.data).unwrap();
        }
    }
    w.close().unwrap();
}

fn first_event(pcap: &std::path::Path) -> (Option<Timestamp>, String, String, u64) {
    let text = format!(
        "FromPcap({}) -> b :: BlinkDetector(PREFIX 10.7.1.0/24 1 2 3, UNMATCHED 0);
         b[0] -> Discard; b[1] -> Discard; b[2] -> Discard; b[3] -> Discard;",
        pcap.display()
    );
    let reg = nf_drivers::registry();
    let cfg = Config::parse("blink.click", &text, &BTreeMap::new()).unwrap();
    let mut r = Router::new(cfg.build(&reg).unwrap()).unwrap();
    r.run().unwrap();
    let events = r.read_handler("b", "events").unwrap();
    let state = r.read_handler("b", "state").unwrap();
    let packets: u64 = r.read_handler("b", "packets").unwrap().parse().unwrap();
    let first = events.lines().next().map(|l| {
        let ts = l.split_whitespace().next().unwrap();
        let (s, n) = ts.split_once('.').unwrap();
        Timestamp::from_parts(s.parse().unwrap(), n.parse().unwrap())
    });
    eprintln!("blink events:\n{events}state: {state}");
    (first, events, state, packets)
}

#[test]
fn a_lossy_capture_does_not_reroute_and_a_blackhole_does_within_a_second() {
    let mut lab = Lab::new("bk");
    for n in ["cli", "rtr", "srv"] {
        lab.add(n);
    }
    lab.veth("cli", "c0", "10.7.1.2/24", "rtr", "r-cli", "10.7.1.1/24");
    lab.veth("srv", "s0", "10.7.2.2/24", "rtr", "r-srv", "10.7.2.1/24");
    lab.exec("cli", "ip route add default via 10.7.1.1");
    lab.exec("srv", "ip route add default via 10.7.2.1");
    lab.exec("rtr", "sysctl -qw net.ipv4.ip_forward=1");
    // No offloads: the capture holds the segments TCP sent, not coalesced ones.
    for (ns, dev) in [
        ("rtr", "r-cli"),
        ("rtr", "r-srv"),
        ("srv", "s0"),
        ("cli", "c0"),
    ] {
        lab.exec(
            ns,
            &format!("ethtool -K {dev} tso off gso off gro off 2>/dev/null || true"),
        );
    }
    // Random loss of 1% towards the client. (`tc netem` is what the issue names, but this machine's kernel
    // has no netem qdisc; iptables' statistic match drops at random just the same.)
    lab.exec(
        "rtr",
        "iptables -A FORWARD -o r-cli -m statistic --mode random --probability 0.01 -j DROP",
    );

    let dir = std::env::temp_dir().join(format!("nf-blink-{}", lab.tag()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("srv-side.pcap");
    let cap = tcpdump(&lab, "rtr", "r-srv", &pcap);
    lab.spawn("srv", &["python3", "-c", SERVER]);
    wait_until(20, "the server listens", || {
        let o = lab.exec_out("srv", "ss -Hltn sport = :5001");
        String::from_utf8_lossy(&o.stdout).contains("5001")
    });
    lab.spawn("cli", &["python3", "-c", CLIENT]);
    wait_until(20, "100 connections", || {
        let o = lab.exec_out("srv", "ss -Htn state established sport = :5001 | wc -l");
        String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse::<u32>()
            .unwrap_or(0)
            >= 100
    });
    // Ten seconds of normal losses, then the blackhole.
    std::thread::sleep(std::time::Duration::from_secs(10));
    lab.exec("rtr", "iptables -I FORWARD -o r-cli -j DROP");
    let t = Timestamp::now();
    std::thread::sleep(std::time::Duration::from_secs(3));
    stop_tcpdump(cap, &pcap);

    // The lossy part alone: no reroute, and how close it came.
    let before = dir.join("before-blackhole.pcap");
    cut(&pcap, &before, t);
    let (none, events, state, packets) = first_event(&before);
    assert!(packets > 10_000, "10 s of streams: {packets} packets");
    assert_eq!(none, None, "no reroute under 1% loss:\n{events}");
    let peak = state
        .split("peak_window ")
        .nth(1)
        .unwrap_or("?")
        .trim()
        .to_string();
    eprintln!("blink: 10 s of 1% loss, {packets} packets: peak window {peak} of threshold 31");

    let (first, events, _, packets) = first_event(&pcap);
    assert!(
        packets > 10_000,
        "the capture holds the streams: {packets} packets"
    );
    let first = first.expect("the blackhole is detected");
    assert!(
        first > t,
        "no reroute during the 10 s of 1% loss (first event at {first}, blackhole at {t}):\n{events}"
    );
    let detection = first.since(t);
    eprintln!(
        "blink: blackhole at {t}, primary declared down at {first}: detection time {:.0} ms",
        detection as f64 / 1e6
    );
    assert!(
        detection <= 1_000_000_000,
        "detected within 1 s: {} ms",
        detection / 1_000_000
    );
    let _ = std::fs::remove_dir_all(&dir);
}
