//! The bodies of the cargo-fuzz targets in `fuzz/`, one function per parser or decoder, so that the same
//! code runs under the fuzzer and, on every checked-in corpus file, under a plain `cargo test`
//! (`nf-drivers/tests/fuzz_corpus.rs`): a crash once found and fixed stays fixed without the fuzzer.
//! Each function takes any bytes; it may panic only where a property is violated.

use nf_core::packet::Link;
use nf_core::{FlowKey, Packet};
use nf_state::Record;
use std::path::Path;

/// A target's body.
pub type Target = fn(&[u8]);

/// Every target: its name (the fuzz target's and the corpus directory's) and its function.
pub const TARGETS: &[(&str, Target)] = &[
    ("config", config),
    ("packet", packet),
    ("ip_expr", ip_expr),
    ("pcap", pcap),
    ("record", record),
    ("syslog_framing", syslog_framing),
    ("syslog_message", syslog_message),
    ("syslog_extract", syslog_extract),
    ("observe", observe),
    ("tunnel", tunnel),
    ("file_log", file_log),
    ("load_balancer", load_balancer),
    ("mux", mux),
    ("conntrack", conntrack),
    ("nat", nat),
    ("ring_block", ring_block),
];

/// The configuration language: parse, check and build never panic.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let reg = nf_core::Registry::standard();
        // A small budget: what the elements may allocate when made stays far under libFuzzer's limit.
        let _ = nf_core::testing::check_config_with_budget(&reg, "fuzz", text, 256 << 20);
    }
}

/// Packet parsing and flow keys; an in-place rewrite then a re-parse agree.
pub fn packet(data: &[u8]) {
    // A sharded reader's fast shard choice agrees with the flow key's symmetric hash wherever the frame
    // has a whole transport header. (Cut short inside it, the key has no ports while the fast path, which
    // reads the ports' bytes in place, hashes them: the frame then goes where its flow's whole packets go.)
    let rss = nf_core::hash::toeplitz::symmetric();
    for shards in [2, 3] {
        let table = nf_core::indirection::Indirection::round_robin(shards);
        let fast = nf_core::flow::FrameSharder::new(rss, &table).shard(data);
        let key = Packet::from_slice(data).locate_key(Link::Ethernet).ok();
        if let Some((h, Some(k))) = key
            && h.l4.is_some()
        {
            let want = nf_core::flow::shard_of(k.rss_hash(), shards);
            assert_eq!(
                fast, want,
                "the frame sharder agrees with the flow key's hash"
            );
        }
    }
    for link in [Link::Ethernet, Link::Ip] {
        let mut p = Packet::from_slice(data);
        // The fused fast path agrees with the two steps it stands for.
        let fused = Packet::from_slice(data).locate_key(link).ok();
        let two = p
            .locate(link)
            .ok()
            .map(|h| (h, FlowKey::from_headers(p.buffer(), &h)));
        assert_eq!(fused, two, "locate_key = locate + from_headers");
        if let Ok(h) = p.locate(link) {
            if let Some(k) = FlowKey::from_headers(p.buffer(), &h) {
                assert_eq!(k.rss_hash(), k.reversed().rss_hash());
                let new = k.reversed();
                if p.set_ip_src(&h, new.src()).is_ok() && p.set_src_port(&h, 4242).is_ok() {
                    let k2 = FlowKey::from_headers(p.buffer(), &h);
                    assert!(k2.is_some(), "a rewritten packet still parses");
                    if let Some(k2) = k2 {
                        assert_eq!(k2.src(), new.src());
                        if h.proto == 6 || h.proto == 17 {
                            assert_eq!(k2.src_port(), 4242);
                        }
                    }
                }
            }
            let _ = p.dec_ttl(&h);
        }
    }
    borrowed_twin(data);
}

/// The same reads and writes on a packet borrowed from a region (zero copy) and on an owned copy give the
/// same bytes, offsets and errors; the writes copy the borrowed one and leave the region as it was.
fn borrowed_twin(data: &[u8]) {
    let mut bytes = vec![0x5a; 40];
    bytes.extend_from_slice(data);
    let region = std::sync::Arc::new(nf_core::region_unsafe::Region::new(bytes.clone()));
    let Some(mut b) = Packet::borrowed(&region, 40..bytes.len(), 40) else {
        panic!("a frame within the region is borrowed");
    };
    let mut o = Packet::with_headroom(40, data);
    assert_eq!(b.data(), o.data());
    assert_eq!(b.headroom(), o.headroom());
    let hb = b.locate_key(Link::Ethernet);
    let ho = o.locate_key(Link::Ethernet);
    assert_eq!(hb, ho, "borrowed and owned locate alike");
    assert!(b.is_borrowed(), "reading copies nothing");
    if let Ok((h, Some(k))) = hb {
        let to = std::net::SocketAddr::new(k.dst(), 8080);
        assert_eq!(b.set_dst_endpoint(&h, to), o.set_dst_endpoint(&h, to));
        let _ = (b.dec_ttl(&h), o.dec_ttl(&h));
    }
    if b.pull(14).is_ok() {
        let _ = o.pull(14);
        assert_eq!(b.unpull(14), o.unpull(14));
    }
    b.push(4).copy_from_slice(&[1, 2, 3, 4]);
    o.push(4).copy_from_slice(&[1, 2, 3, 4]);
    assert_eq!(b.data(), o.data(), "the same writes, the same bytes");
    assert_eq!(b.anno, o.anno);
    assert!(!b.is_borrowed());
    assert_eq!(region.bytes(), &bytes[..], "the region is never written");
}

/// The IPClassifier expression language: an expression (up to a NUL byte) evaluated on the packet after.
pub fn ip_expr(data: &[u8]) {
    use nf_core::elements::ip::expr::{Expr, View};
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    if let Ok(text) = std::str::from_utf8(&data[..split])
        && let Ok(e) = Expr::parse(text)
        && let Some(v) = View::parse(&data[split..], 0)
    {
        let _ = e.eval(&v);
    }
}

/// Capture files (pcap, pcapng): records or a typed error.
pub fn pcap(data: &[u8]) {
    if let Ok(f) = crate::io::pcap::CaptureFile::from_vec("fuzz", data.to_vec()) {
        for r in f.records().take(10_000) {
            if r.is_err() {
                break;
            }
        }
    }
}

/// State records: a decoded frame re-encodes to the same bytes.
pub fn record(data: &[u8]) {
    let mut at = 0;
    while at < data.len() {
        match Record::decode_frame(&data[at..]) {
            Ok((r, n)) => {
                let mut again = Vec::new();
                assert!(
                    r.encode_frame(&mut again).is_ok(),
                    "a decoded record encodes"
                );
                assert_eq!(&again[..], &data[at..at + n]);
                let _ = nf_state::json_line(&r);
                at += n;
            }
            Err(_) => break,
        }
    }
    let _ = Record::decode_payload(data);
}

/// RFC 6587 framing, both styles mixed, the stream cut at every `data[0] + 1` bytes.
pub fn syslog_framing(data: &[u8]) {
    use crate::syslog::framing::Framer;
    use bytes::BytesMut;
    let Some((&c, rest)) = data.split_first() else {
        return;
    };
    let mut f = Framer::new(256);
    let mut buf = BytesMut::new();
    for chunk in rest.chunks(usize::from(c) + 1) {
        buf.extend_from_slice(chunk);
        while let Some(m) = f.next_frame(&mut buf) {
            if let Ok(m) = m {
                assert!(m.len() <= 256);
            }
        }
    }
    while let Some(m) = f.finish(&mut buf) {
        if let Ok(m) = m {
            assert!(m.len() <= 256 + 10);
        }
    }
}

/// RFC 3164, RFC 5424 and kmsg parsing.
pub fn syslog_message(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(m) = crate::syslog::parse(&text) {
        assert!(m.msg.len() <= text.len());
        assert!(m.severity <= 7);
        for e in &m.structured_data {
            assert!(!e.id.is_empty());
        }
    }
}

/// The netfilter-log and conntrack-events extractors: every record they emit decodes.
pub fn syslog_extract(data: &[u8]) {
    use crate::syslog::extract::{self, EXTRACTORS};
    let text = String::from_utf8_lossy(data);
    let line = format!("<14>{text}");
    if let Ok(m) = crate::syslog::parse(&line) {
        let mut out = crate::syslog::Emitter::new(nf_state::Codec::Bincode, "fuzz");
        for name in EXTRACTORS {
            if let Some(mut x) = extract::by_name(name, None) {
                let _ = x.extract(&m, &mut out);
            }
        }
        for r in out.take() {
            assert!(nf_state::json_line(&r).is_ok(), "an emitted record decodes");
        }
    }
    let _ = extract::parse_netfilter(&text);
    let _ = extract::parse_conntrack_event(&text);
}

/// The observation correlator on any frames from either tap at any times: tables within bounds. An odd
/// length selects the payload-chunk fingerprints (SIMPLE's `FlowCorrelator`) instead of header invariants.
/// Records: `[side/flags][time delta][length][frame...]`.
pub fn observe(data: &[u8]) {
    use crate::observe::{ChunkConfig, Correlator, Fingerprint, ObserveConfig, Side};
    let fingerprint = if data.len() % 2 == 1 {
        Fingerprint::Payload(ChunkConfig {
            average: 16,
            min: 4,
            max: 64,
            bytes: 512,
            strength: 0.6,
        })
    } else {
        Fingerprint::Invariants
    };
    let mut c = Correlator::new(ObserveConfig {
        max_flows: 64,
        max_pending: 64,
        fingerprint,
        emit_links: true,
        ..Default::default()
    });
    let mut out = Vec::new();
    let mut rest = data;
    let mut t = 0u64;
    while rest.len() >= 3 {
        let (h, dt, len) = (rest[0], rest[1], usize::from(rest[2]));
        rest = &rest[3..];
        let n = len.min(rest.len());
        let side = if h & 1 == 0 {
            Side::Outside
        } else {
            Side::Inside
        };
        t += u64::from(dt) * 1_000_000;
        c.packet(side, t, &rest[..n], h & 2 == 0, &mut out);
        rest = &rest[n..];
    }
    assert!(c.flows() <= 2 * 64 + 2);
}

/// The data-plane elements of the published systems on any frame: tunnel decapsulation in each mode, IPComp
/// decompression, the SIMPLE tag carriers, Blink's and SIMPLE's per-packet paths. Nothing panics; a frame
/// that compresses decompresses to itself; a decapsulated frame encapsulates again.
pub fn tunnel(data: &[u8]) {
    use nf_core::element::Element;
    use nf_core::elements::resilience::{BlinkDetector, BlinkParams, NextHops};
    use nf_core::elements::steering::{HopPlace, PolicyChain, PolicySwitch, TagCarrier};
    use nf_core::elements::tunnel::{Compress, Decompress};
    use nf_core::elements::tunnel::{Tunnel, TunnelMode, decapsulate, encapsulate};
    use nf_core::lpm::Prefix;
    use std::sync::Arc;
    for mode in [
        TunnelMode::IpIp,
        TunnelMode::Gre,
        TunnelMode::Vxlan { vni: 5 },
    ] {
        let mut p = Packet::from_slice(data);
        if decapsulate(&mut p, mode, false).is_ok() {
            let t = Tunnel::new(mode, [192, 0, 2, 1].into(), [192, 0, 2, 2].into());
            let off = match mode {
                TunnelMode::Vxlan { .. } => 0,
                _ => nf_core::packet::ethernet_payload_offset(p.data())
                    .unwrap_or(14)
                    .min(p.len()),
            };
            encapsulate(&mut p, off, &t, 1, 2);
        }
    }
    let mut c = Compress::new(Arc::from(Vec::new())).min_payload(1);
    let mut d = Decompress::new(Arc::from(Vec::new()));
    let mut p = Packet::from_slice(data);
    let _ = d.decompress(&mut p);
    let mut p = Packet::from_slice(data);
    if c.compress(&mut p) {
        let ip = nf_core::packet::ethernet_payload_offset(data).unwrap_or(14);
        let total = usize::from(u16::from_be_bytes([data[ip + 2], data[ip + 3]]));
        assert_eq!(
            d.decompress(&mut p),
            Ok(true),
            "what compresses decompresses"
        );
        // The header checksum is recomputed; everything else is what it was (Ethernet padding aside).
        assert_eq!(&p.data()[..ip + 10], &data[..ip + 10]);
        assert_eq!(&p.data()[ip + 12..], &data[ip + 12..ip + total]);
    }
    for carrier in [TagCarrier::Vlan, TagCarrier::Mpls, TagCarrier::Annotation] {
        let mut p = Packet::from_slice(data);
        let _ = carrier.read(&p);
        let _ = carrier.l3(&p);
        let _ = carrier.write(&mut p, 3);
        let _ = carrier.pop(&mut p);
    }
    let hops = NextHops {
        primary: 1,
        backups: [2, 3],
    };
    let params = BlinkParams {
        cells: 4,
        threshold: 1,
        ..Default::default()
    };
    let mut b = BlinkDetector::new(params, 0)
        .prefix(Prefix::v4_default(), hops)
        .prefix(Prefix::v6_default(), hops);
    let places = [("a", HopPlace::Local(1)), ("b", HopPlace::Via(2))];
    let Ok(mut sw) = PolicyChain::new()
        .class("all", "ip or ip6", &["a", "b"], TagCarrier::Vlan)
        .and_then(|policy| PolicySwitch::new(policy, &places, 0))
    else {
        panic!("the fuzz target's fixed policy is valid");
    };
    // Time goes forward and back (captures merged out of order).
    for t in [2u64, 0, 1, 3] {
        for port in 0..2 {
            let mut batch = nf_core::Batch::new();
            let mut p = Packet::from_slice(data);
            p.anno.timestamp = nf_core::Timestamp(t * 500_000_000);
            batch.push(p);
            let mut out = nf_core::Outputs::new(4);
            if port == 0 {
                b.push(0, &mut batch, &mut out);
            } else {
                sw.push(1, &mut batch, &mut out);
            }
        }
    }
}

/// The file store's recovery (`file:` URLs): the input is a snapshot and a log (`data[0..2]`, little
/// endian, is the snapshot's length; the rest is the log) written to a scratch directory, then the store
/// is opened. Opening gives a store or a typed error; once opened, the log left on disk is a prefix of the
/// one written (only a torn tail is cut), a second recovery cuts nothing more and finds the same state,
/// and a record acknowledged after recovery is there after the next one.
pub fn file_log(data: &[u8]) {
    use nf_state::store::{FileStore, Fsync};
    use nf_state::{Op, StateStore};
    use std::sync::Arc;

    thread_local! {
        static RT: Option<tokio::runtime::Runtime> =
            tokio::runtime::Builder::new_current_thread().build().ok();
    }
    let split = match data {
        [a, b, ..] => usize::from(u16::from_le_bytes([*a, *b])).min(data.len() - 2),
        _ => return,
    };
    let (snapshot, log) = data[2..].split_at(split);
    // tmpfs when there is one: the store syncs files and directories, which costs nothing there.
    let base = if Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!(
        "nf-fuzz-file-log-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let written = std::fs::create_dir_all(&dir).is_ok()
        && (snapshot.is_empty() || std::fs::write(dir.join("snapshot"), snapshot).is_ok())
        && std::fs::write(dir.join("log"), log).is_ok();
    if !written {
        return; // The scratch directory is not writable: nothing to test.
    }
    async fn state(s: &FileStore) -> Vec<(String, u64, Vec<(Vec<u8>, u64)>)> {
        let mut out = Vec::new();
        let schemas = s.stats().await.map(|st| st.schemas).unwrap_or_default();
        for sc in schemas {
            if let Ok(snap) = s.scan(&sc.schema).await {
                let mut keys: Vec<_> = snap
                    .records
                    .iter()
                    .map(|r| (r.key.to_vec(), r.seq))
                    .collect();
                keys.sort();
                out.push((sc.schema, snap.seq, keys));
            }
        }
        out
    }
    RT.with(|rt| {
        let Some(rt) = rt else { return };
        rt.block_on(async {
            let Ok(s) = FileStore::open(&dir, Fsync::Never).await else {
                return; // A typed error: corruption named with its offset.
            };
            let first = state(&s).await;
            drop(s);
            let after = std::fs::read(dir.join("log")).unwrap_or_default();
            assert!(
                log.starts_with(&after),
                "recovery only cuts a torn tail ({} -> {} bytes)",
                log.len(),
                after.len()
            );
            let s = FileStore::open(&dir, Fsync::Never).await;
            let Ok(s) = s else {
                panic!("a recovered store opens again: {s:?}");
            };
            assert_eq!(
                state(&s).await,
                first,
                "a second recovery finds the same state"
            );
            let r = nf_state::Record {
                schema: Arc::from("fuzz"),
                version: 1,
                codec: nf_state::Codec::Json,
                seq: 0,
                origin: Arc::from("fuzz"),
                time: 1,
                op: Op::Upsert,
                key: bytes::Bytes::from_static(b"acknowledged"),
                value: Some(bytes::Bytes::from_static(b"1")),
            };
            let acked = s.apply(vec![r]).await;
            drop(s);
            if acked.is_ok() {
                let s = FileStore::open(&dir, Fsync::Never).await;
                let Ok(s) = s else {
                    panic!("the store opens after an acknowledged write: {s:?}");
                };
                let got = s.get("fuzz", b"acknowledged").await.ok().flatten();
                assert!(got.is_some(), "an acknowledged record survives recovery");
            }
        });
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// One step of a stateful target's input: a packet (raw bytes from the input, or synthesised from a few
/// fields so that flows open, carry data, close and come back), the input port it arrives on, and how far
/// packet time moves first.
#[derive(Debug)]
struct Step {
    what: StepPacket,
    port: usize,
    advance_ms: u64,
}

#[derive(Debug)]
enum StepPacket {
    Raw(Vec<u8>),
    /// A TCP or UDP packet of one of 64 clients, to the VIP or (a reply) from its flow's backend.
    Flow {
        client: u8,
        udp: bool,
        reply: bool,
        flags: u8,
        len: u8,
        seq: u8,
    },
}

/// The server side of every synthesised flow (the benchmark graphs' VIP).
const FUZZ_VIP: [u8; 4] = [192, 168, 0, 1];
/// The backends of the load balancer and the Mux.
const FUZZ_BACKENDS: [[u8; 4]; 3] = [[10, 1, 0, 1], [10, 1, 0, 2], [10, 1, 0, 3]];
/// The backends' port.
const FUZZ_BACKEND_PORT: u16 = 8080;

impl Step {
    /// The frame, and whether it was synthesised (its checksums are then valid). A reply comes from
    /// `backend_of(client)` (its flow's backend), or the VIP if there is none.
    fn frame(&self, backend_of: &dyn Fn(u8) -> Option<[u8; 4]>) -> (Vec<u8>, bool) {
        let (client, udp, reply, flags, len, seq) = match &self.what {
            StepPacket::Raw(f) => return (f.clone(), false),
            &StepPacket::Flow {
                client,
                udp,
                reply,
                flags,
                len,
                seq,
            } => (client, udp, reply, flags, len, seq),
        };
        let cip = [10, 0, 0, client];
        let cport = 1000 + u16::from(client);
        let (src, sport, dst, dport) = if reply {
            match backend_of(client) {
                Some(b) => (b, FUZZ_BACKEND_PORT, cip, cport),
                None => (FUZZ_VIP, 80, cip, cport),
            }
        } else {
            (cip, cport, FUZZ_VIP, 80)
        };
        let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(src, dst, 64);
        let payload = vec![0x5a; usize::from(len & 0x3f)];
        let mut frame = Vec::new();
        let built = if udp {
            b.udp(sport, dport).write(&mut frame, &payload)
        } else {
            let mut t = b.tcp(sport, dport, u32::from(seq) << 8, 64_000);
            if flags & 0x02 != 0 {
                t = t.syn();
            }
            if flags & 0x01 != 0 {
                t = t.fin();
            }
            if flags & 0x04 != 0 {
                t = t.rst();
            }
            if flags & 0x10 != 0 {
                t = t.ack(1);
            }
            t.write(&mut frame, &payload)
        };
        (frame, built.is_ok())
    }
}

/// Carves steps out of the input: each starts with a byte `op`. `op & 0x80`: a raw frame of `next byte`
/// bytes follows (on port `op & 1`). Otherwise four bytes follow: a client (one of 64), TCP flags, a
/// payload length and the time step; `op & 1` is the direction (0: client to VIP; 1: the reply), `op & 2`
/// selects UDP.
fn steps(data: &[u8]) -> Vec<Step> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < data.len() && out.len() < 512 {
        let op = data[i];
        i += 1;
        if op & 0x80 != 0 {
            let Some(&n) = data.get(i) else { break };
            let end = (i + 1 + usize::from(n)).min(data.len());
            out.push(Step {
                what: StepPacket::Raw(data[i + 1..end].to_vec()),
                port: usize::from(op & 1),
                advance_ms: u64::from(op & 0x0c) * 100,
            });
            i = end;
            continue;
        }
        let Some(&[client, flags, len, dt]) = data.get(i..i + 4) else {
            break;
        };
        i += 4;
        out.push(Step {
            what: StepPacket::Flow {
                client: client & 63,
                udp: op & 2 != 0,
                reply: op & 1 != 0,
                flags,
                len,
                seq: dt,
            },
            port: usize::from(op & 1),
            advance_ms: u64::from(dt) * 50,
        });
    }
    out
}

/// The IPv4 and TCP/UDP checksums of a frame are right (by full recomputation), if it parses.
fn checksums_valid(frame: &[u8]) -> bool {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    let Ok(p) = SlicedPacket::from_ethernet(frame) else {
        return false;
    };
    let Some(NetSlice::Ipv4(ip)) = p.net.as_ref() else {
        return false;
    };
    if nf_core::checksum::checksum(ip.header().slice()) != 0 {
        return false;
    }
    let h = ip.header().to_header();
    match p.transport.as_ref() {
        Some(TransportSlice::Tcp(t)) => {
            t.calc_checksum_ipv4(h.source, h.destination).ok() == Some(t.checksum())
        }
        Some(TransportSlice::Udp(u)) => {
            u.checksum() == 0
                || u.to_header().calc_checksum_ipv4(&h, u.payload()).ok() == Some(u.checksum())
        }
        _ => true,
    }
}

/// Pushes one packet through an element and returns what left on each output.
fn push_one(
    e: &mut dyn nf_core::element::Element,
    frame: &[u8],
    port: usize,
    now: u64,
    outputs: usize,
) -> Vec<Vec<Vec<u8>>> {
    let mut p = Packet::from_slice(frame);
    p.anno.timestamp = nf_core::Timestamp(now);
    let mut batch = nf_core::Batch::new();
    batch.push(p);
    let mut out = nf_core::Outputs::new(outputs);
    e.push(port, &mut batch, &mut out);
    (0..outputs)
        .map(|o| out.port(o).drain().map(|p| p.data().to_vec()).collect())
        .collect()
}

/// `LoadBalancer` on any sequence of frames and flows (opened, closed, reset, reused, idle past their
/// timeouts, in a table of 16 entries that floods), with a backend change midway. Its table stays within
/// its bound and its probe limit; every packet it forwards from a valid one has valid checksums; a
/// client's flow keeps its backend as long as the flow is in the table (removals are watched through the
/// table's sink).
pub fn load_balancer(data: &[u8]) {
    use nf_core::elements::lb::{ClientKey, LbEntry, LoadBalancer, Policy};
    use nf_core::state::{ChangeKind, StateChange, Stateful};
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let policy = [
        Policy::Random,
        Policy::RoundRobin,
        Policy::LeastConnections,
        Policy::Maglev,
    ][usize::from(mode & 3)];
    let backends = FUZZ_BACKENDS
        .iter()
        .map(|b| std::net::SocketAddr::from((*b, FUZZ_BACKEND_PORT)))
        .collect();
    let mut lb = LoadBalancer::new(std::net::SocketAddr::from((FUZZ_VIP, 80)), backends)
        .policy(policy)
        .capacity(16)
        .seed(7)
        .idle(std::time::Duration::from_secs(30))
        .linger(std::time::Duration::from_secs(1))
        .drop_unknown(mode & 4 != 0);
    let removed: Arc<Mutex<Vec<ClientKey>>> = Arc::default();
    let r2 = removed.clone();
    lb.table_mut()
        .set_sink(Box::new(move |c: &StateChange<'_, ClientKey, LbEntry>| {
            if let ChangeKind::Remove(_) = c.kind
                && let Ok(mut r) = r2.lock()
            {
                r.push(*c.key);
            }
        }));
    // The model: each client's backend while its flow lives.
    // (protocol, client address, client port) -> backend address.
    type Model = HashMap<(u8, [u8; 4], u16), [u8; 4]>;
    let model: std::cell::RefCell<Model> = Default::default();
    let backend_of = |client: u8| {
        model
            .borrow()
            .get(&(6, [10, 0, 0, client], 1000 + u16::from(client)))
            .copied()
    };
    let steps = steps(data);
    let mut now = 1_000_000_000u64;
    for (n, s) in steps.iter().enumerate() {
        now += s.advance_ms * 1_000_000;
        if n == steps.len() / 2 && mode & 8 != 0 {
            // A backend leaves: established flows stay where they are.
            let _ = nf_core::element::Element::write_handler(
                &mut lb,
                "set_backends",
                "10.1.0.1:8080 10.1.0.3:8080",
            );
        }
        let (frame, valid) = s.frame(&backend_of);
        let out = push_one(&mut lb, &frame, s.port, now, 3);
        if let Ok(mut r) = removed.lock() {
            for k in r.drain(..) {
                let ip = match k.ip {
                    std::net::IpAddr::V4(a) => a.octets(),
                    std::net::IpAddr::V6(_) => continue,
                };
                model.borrow_mut().remove(&(k.proto, ip, k.port));
            }
        }
        let t = lb.table();
        assert!(
            t.len() <= t.capacity(),
            "the table holds {} of {}",
            t.len(),
            t.capacity()
        );
        assert!(t.max_displacement() < nf_core::state::PROBE_LIMIT);
        for f in out[0].iter().chain(&out[1]) {
            if valid {
                assert!(checksums_valid(f), "a forwarded packet's checksums");
            }
        }
        // A client packet sent on: its backend is the one its flow had, if the flow lives.
        if valid && s.port == 0 {
            for f in &out[0] {
                let Ok(p) = etherparse::SlicedPacket::from_ethernet(f) else {
                    continue;
                };
                let Some(etherparse::NetSlice::Ipv4(ip)) = p.net.as_ref() else {
                    continue;
                };
                let h = ip.header();
                let (proto, src, dst) = (h.protocol().0, h.source(), h.destination());
                let sport = match p.transport.as_ref() {
                    Some(etherparse::TransportSlice::Tcp(t)) => t.source_port(),
                    Some(etherparse::TransportSlice::Udp(u)) => u.source_port(),
                    _ => continue,
                };
                let key = (proto, src, sport);
                let mut m = model.borrow_mut();
                let client = ClientKey {
                    proto,
                    ip: std::net::IpAddr::from(src),
                    port: sport,
                };
                if lb
                    .table()
                    .lookup(
                        nf_core::FlowKey::new(proto, client.ip, sport, client.ip, 0).table_hash(),
                        &client,
                    )
                    .is_none()
                {
                    m.remove(&key);
                    continue;
                }
                if let Some(b) = m.get(&key) {
                    assert_eq!(*b, dst, "a live flow's backend changed");
                } else {
                    m.insert(key, dst);
                }
            }
        }
    }
}

/// `AnantaMux` on any sequence of frames: its tables stay within their bounds and probe limit, every
/// packet it encapsulates carries a valid outer header around the packet as it came, and a flow always
/// goes to the same backend host (the backend set is fixed: from the table or, once the untrusted quota
/// is spent, by Maglev's hash, which agrees with the table).
pub fn mux(data: &[u8]) {
    use nf_core::elements::lb::AnantaMux;
    use nf_core::state::Stateful;
    use std::collections::HashMap;
    let backends: Vec<std::net::Ipv4Addr> = FUZZ_BACKENDS.iter().map(|b| (*b).into()).collect();
    let mut mux = AnantaMux::new(
        std::net::SocketAddr::from((FUZZ_VIP, 80)),
        [10, 9, 9, 9].into(),
        backends,
    )
    .capacities(16, 8)
    .idle(
        std::time::Duration::from_secs(30),
        std::time::Duration::from_secs(2),
    );
    let mut seen: HashMap<Vec<u8>, [u8; 4]> = HashMap::new();
    let mut now = 1_000_000_000u64;
    for s in &steps(data) {
        now += s.advance_ms * 1_000_000;
        // The Mux has one input: replies to clients go through it too (not for the VIP: dropped).
        let (frame, valid) = s.frame(&|_| None);
        let out = push_one(&mut mux, &frame, 0, now, 2);
        let t = mux.table();
        assert!(t.len() <= t.capacity());
        assert!(t.max_displacement() < nf_core::state::PROBE_LIMIT);
        for f in &out[0] {
            // Outer Ethernet + IPv4 (protocol 4) around the packet's IP part, unchanged.
            let Ok(p) = etherparse::SlicedPacket::from_ethernet(f) else {
                panic!("an encapsulated packet parses");
            };
            let Some(etherparse::NetSlice::Ipv4(outer)) = p.net.as_ref() else {
                panic!("the outer header is IPv4");
            };
            assert_eq!(
                nf_core::checksum::checksum(outer.header().slice()),
                0,
                "outer checksum"
            );
            let dst = outer.header().destination();
            assert!(FUZZ_BACKENDS.contains(&dst), "to a backend");
            let inner_start = 14 + outer.header().slice().len();
            let inner = &f[inner_start..];
            let off = nf_core::packet::ethernet_payload_offset(&frame).unwrap_or(14);
            assert!(
                frame[off..].starts_with(inner),
                "the inner packet is the packet as it came"
            );
            // The flow (the inner packet's protocol, addresses and ports) always goes to one backend.
            if valid && let (Some(&proto), Some(ends)) = (inner.get(9), inner.get(12..24)) {
                let mut flow = ends.to_vec();
                flow.push(proto);
                let b = seen.entry(flow).or_insert(dst);
                assert_eq!(*b, dst, "a flow's backend changed");
            }
        }
    }
}

/// `IPRewriter` as a NAPT (`pattern 192.0.2.1 1024-1039 - -` on the inside, `drop` outside: sixteen
/// ports for 64 clients, in a table of 16 flows that floods) on any sequence of frames and flows
/// (opened, closed, reset, idle past their timeouts); replies come from the server to the binding the
/// client's flow has (or to the client, which is dropped). After every packet: the table is within its
/// bound and probe limit; every mapping has its partner, and its partner is exactly the reverse; the
/// bindings are unique (no two flows leave as the same five-tuple); a flow keeps its binding while it
/// lives; every packet rewritten from a valid one has valid checksums, and a reply reaches its client.
pub fn nat(data: &[u8]) {
    use nf_core::elements::nat::{FlowId, IPRewriter, InputSpec};
    use nf_core::state::Stateful;
    use std::collections::{HashMap, HashSet};
    let Ok(specs) = ["pattern 192.0.2.1 1024-1039 - - 0 1", "drop"]
        .iter()
        .map(|s| InputSpec::parse(s))
        .collect::<Result<Vec<_>, _>>()
    else {
        return;
    };
    let secs = std::time::Duration::from_secs;
    let mut rw =
        IPRewriter::new(specs)
            .capacity(16)
            .seed(7)
            .timeouts(secs(30), secs(1), secs(5), secs(30));
    // The model: each live flow's binding (flow as it came in -> as it leaves), a flow forgotten when
    // the table reports it removed (expired, closed, evicted: it may then come back with another).
    let mut model: HashMap<FlowId, FlowId> = HashMap::new();
    let removed: std::sync::Arc<std::sync::Mutex<Vec<FlowId>>> = Default::default();
    let r2 = removed.clone();
    rw.table_mut().set_sink(Box::new(
        move |c: &nf_core::state::StateChange<'_, FlowId, nf_core::elements::nat::Mapping>| {
            if let nf_core::state::ChangeKind::Remove(_) = c.kind
                && let Ok(mut r) = r2.lock()
            {
                r.push(*c.key);
            }
        },
    ));
    let mut now = 1_000_000_000u64;
    for s in &steps(data) {
        now += s.advance_ms * 1_000_000;
        let (mut frame, valid) = s.frame(&|_| None);
        // A reply is addressed to the binding of its client's flow, if it has one.
        let mut to_client = None;
        if valid && s.port == 1 {
            let flows = rw.flows();
            if let Some(f) = nf_core::Packet::from_slice(&frame)
                .locate_key(nf_core::Link::Ethernet)
                .ok()
                .and_then(|(_, k)| k)
                .and_then(|k| FlowId::of_key(&k))
                && let Some((from, to)) = flows.iter().find(|(from, _)| *from == f.reversed())
            {
                let mut p = nf_core::Packet::from_slice(&frame);
                if let Ok((h, _)) = p.locate_key(nf_core::Link::Ethernet)
                    && p.set_dst_endpoint(&h, std::net::SocketAddr::V4(to.source()))
                        .is_ok()
                {
                    frame = p.data().to_vec();
                    to_client = Some(from.source());
                }
            }
        }
        let out = push_one(&mut rw, &frame, s.port, now, 2);
        if let Ok(mut r) = removed.lock() {
            for k in r.drain(..) {
                model.remove(&k);
            }
        }
        let t = rw.table();
        assert!(t.len() <= t.capacity(), "{} of {}", t.len(), t.capacity());
        assert!(t.max_displacement() < nf_core::state::PROBE_LIMIT);
        // Pairs: every mapping's partner is there, and is its exact reverse.
        let mut all = HashMap::new();
        t.for_each(|k, m| {
            all.insert(*k, *m);
        });
        for (k, m) in &all {
            let back = m.rewritten(k).reversed();
            let Some(p) = all.get(&back) else {
                panic!("{k} has no partner {back}");
            };
            assert_eq!(p.rewritten(&back), k.reversed(), "{k}'s partner");
            assert_ne!(p.is_reply(), m.is_reply());
        }
        // Unique bindings; a live flow keeps its own.
        let flows = rw.flows();
        let leaving: HashSet<FlowId> = flows.iter().map(|(_, to)| *to).collect();
        assert_eq!(leaving.len(), flows.len(), "two flows leave as one");
        model.retain(|from, _| flows.iter().any(|(f, _)| f == from));
        for (from, to) in &flows {
            let was = model.entry(*from).or_insert(*to);
            assert_eq!(was, to, "a live flow's binding changed");
        }
        if valid {
            for f in out.iter().flatten() {
                assert!(checksums_valid(f), "a rewritten packet's checksums");
            }
            if let (Some(client), Some(f)) = (to_client, out[1].first()) {
                let p = nf_core::Packet::from_slice(f)
                    .locate_key(nf_core::Link::Ethernet)
                    .ok()
                    .and_then(|(_, k)| k)
                    .and_then(|k| FlowId::of_key(&k));
                assert_eq!(p.map(|k| k.destination()), Some(client), "a reply's client");
            }
        }
    }
}

/// `ConnTrack` on any sequence of frames: the table stays within its bound and probe limit, packets
/// leave unchanged, and a tracked connection's counters only grow and its originator stays while it lives.
pub fn conntrack(data: &[u8]) {
    use nf_core::elements::tcpudp::ConnTrack;
    use nf_core::state::Stateful;
    use std::collections::HashMap;
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let mut ct = ConnTrack::new(16).loose(mode & 1 != 0);
    // Connections that left the table (closed, expired, evicted): a later one of the same five-tuple is
    // a new connection, with its own originator and counters.
    let removed: std::sync::Arc<std::sync::Mutex<Vec<nf_core::FlowKey>>> = Default::default();
    let r2 = removed.clone();
    ct.table_mut().set_sink(Box::new(
        move |c: &nf_core::state::StateChange<
            '_,
            nf_core::FlowKey,
            nf_core::elements::tcpudp::Connection,
        >| {
            if let nf_core::state::ChangeKind::Remove(_) = c.kind
                && let Ok(mut r) = r2.lock()
            {
                r.push(*c.key);
            }
        },
    ));
    let mut last: HashMap<nf_core::FlowKey, (bool, u64)> = HashMap::new();
    let mut now = 1_000_000_000u64;
    for s in &steps(data) {
        now += s.advance_ms * 1_000_000;
        // Replies come from the VIP (the server), or from another client (peer to peer).
        let (frame, _) = s.frame(&|c| {
            Some(if mode & 2 != 0 {
                [10, 0, 0, c ^ 1]
            } else {
                FUZZ_VIP
            })
        });
        let out = push_one(&mut ct, &frame, 0, now, 2);
        for f in out.iter().flatten() {
            assert_eq!(f, &frame, "the tracker changes no packet");
        }
        if let Ok(mut r) = removed.lock() {
            for k in r.drain(..) {
                last.remove(&k);
            }
        }
        let t = ct.table();
        assert!(t.len() <= t.capacity());
        assert!(t.max_displacement() < nf_core::state::PROBE_LIMIT);
        let mut live = HashMap::new();
        t.for_each(|k, c| {
            let n = c.packets[0] + c.packets[1];
            if let Some((rev, m)) = last.get(k) {
                assert_eq!(*rev, c.origin_reversed, "a connection's originator changed");
                assert!(n >= *m, "a connection's counters went back");
            }
            live.insert(*k, (c.origin_reversed, n));
        });
        last = live;
    }
}

/// A receive ring's block as the kernel hands it over (`tpacket_block_desc`, then `tpacket3_hdr`s and
/// frames): the headers are read as `FromDevice` reads them, every frame found lies within the block, the
/// walk ends, and a packet borrowed for each frame reads exactly its bytes.
pub fn ring_block(data: &[u8]) {
    use crate::io::ring_unsafe::{block_frame, block_frames};
    let region = std::sync::Arc::new(nf_core::region_unsafe::Region::new(data.to_vec()));
    let block = region.bytes();
    let Some((n, mut at)) = block_frames(block) else {
        return;
    };
    // FromDevice walks at most the frames the block says it holds, and stops at a last header.
    for _ in 0..n.min(4096) {
        let Some(f) = block_frame(block, at) else {
            break;
        };
        assert!(
            f.start + f.snaplen <= block.len(),
            "a frame within the block"
        );
        if let Some(p) = Packet::borrowed(&region, f.start..f.start + f.snaplen, 128) {
            assert_eq!(p.data(), &block[f.start..f.start + f.snaplen]);
        }
        if f.next == 0 {
            break;
        }
        at += f.next;
    }
}
