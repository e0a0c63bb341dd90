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
    let rss = nf_core::toeplitz::symmetric();
    for shards in [2, 3] {
        let fast = nf_core::flow::FrameSharder::new(rss, shards).shard(data);
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
    use nf_core::elements::blink::{BlinkDetector, BlinkParams, NextHops};
    use nf_core::elements::compress::{Compress, Decompress};
    use nf_core::elements::simple::{HopPlace, PolicyChain, PolicySwitch, TagCarrier};
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
