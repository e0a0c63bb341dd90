//! Capture files: round trips through `ToPcap` and `FromPcap`, pcapng, nanosecond files, corrupt and
//! truncated files (typed errors naming the byte offset), and `tcpdump -r` reading what we write.

use nf_core::testing::{Recorded, Recorder};
use nf_core::traffic::{TrafficConfig, TrafficGen};
use nf_core::{Config, Router, Timestamp};
use nf_drivers::io::pcap::{CaptureFile, Format, PcapFileWriter};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nf-drivers-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn gen_pcap(path: &Path, n: u64, nanos: bool) -> Vec<Vec<u8>> {
    let mut g = TrafficGen::new(TrafficConfig {
        flows: 50,
        ..Default::default()
    });
    let mut w = PcapFileWriter::create(path, 65535, nanos, pcap_file::DataLink::ETHERNET).unwrap();
    let mut frames = Vec::new();
    for i in 0..n {
        let f = g.next_frame().to_vec();
        w.write(Timestamp(1_700_000_000_000_000_000 + i * 1_234_567), &f)
            .unwrap();
        frames.push(f);
    }
    w.close().unwrap();
    frames
}

fn run(text: &str, params: &[(&str, &Path)]) -> Result<Router, nf_core::Error> {
    let p: BTreeMap<String, String> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.display().to_string()))
        .collect();
    let cfg = Config::parse("t", text, &p)?;
    let mut r = Router::new(cfg.build(&nf_drivers::registry())?)?;
    r.run()?;
    Ok(r)
}

/// Runs `text` (with `$IN` the file at `path`) on two shards: the run's result, and the router to read.
fn run_sharded(text: &str, path: &Path) -> (Result<(), nf_core::Error>, nf_core::ShardedRouter) {
    let p: BTreeMap<String, String> = [("IN".to_string(), path.display().to_string())].into();
    let cfg = Config::parse("t", text, &p).unwrap();
    let reg = nf_drivers::registry();
    let mut sh = nf_core::ShardedRouter::new(2, |_| Ok(cfg.build(&reg)?)).unwrap();
    (sh.run(), sh)
}

/// Each shard's count of the `Counter` called `c`.
fn shard_counts(sh: &nf_core::ShardedRouter) -> Vec<u64> {
    sh.shards()
        .iter()
        .map(|r| r.read_handler("c", "count").unwrap().parse().unwrap())
        .collect()
}

#[test]
fn roundtrip_through_from_pcap_and_to_pcap() {
    for nanos in [false, true] {
        let a = tmp(&format!("a{nanos}.pcap"));
        let b = tmp(&format!("b{nanos}.pcap"));
        let frames = gen_pcap(&a, 1000, nanos);
        let r = run(
            &format!(
                "FromPcap($IN, BURST 7) -> c :: Counter -> ToPcap($OUT{});",
                if nanos { ", NANO true" } else { "" }
            ),
            &[("IN", &a), ("OUT", &b)],
        )
        .unwrap();
        assert_eq!(r.read_handler("c", "count").unwrap(), "1000");
        let f = CaptureFile::open(&b).unwrap();
        assert_eq!(
            f.format(),
            if nanos {
                Format::PcapNanos
            } else {
                Format::PcapMicros
            }
        );
        let got: Vec<_> = f.records().map(|r| r.unwrap()).collect();
        assert_eq!(got.len(), 1000);
        for (i, (r, want)) in got.iter().zip(&frames).enumerate() {
            assert_eq!(r.data, &want[..]);
            let ts = 1_700_000_000_000_000_000 + i as u64 * 1_234_567;
            let expect = if nanos { ts } else { ts / 1000 * 1000 };
            assert_eq!(r.timestamp.0, expect, "record {i}");
        }
    }
}

#[test]
fn loop_replays_with_increasing_time() {
    let a = tmp("loop.pcap");
    gen_pcap(&a, 100, false);
    let r = run(
        "FromPcap($IN, LOOP 3) -> c :: Counter -> Discard;",
        &[("IN", &a)],
    )
    .unwrap();
    assert_eq!(r.read_handler("c", "count").unwrap(), "300");
    let rate: f64 = r.read_handler("c", "rate").unwrap().parse().unwrap();
    assert!(rate > 0.0);
}

#[test]
fn pcapng_is_read() {
    use pcap_file::pcapng::PcapNgWriter;
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
    use pcap_file::pcapng::blocks::interface_description::{
        InterfaceDescriptionBlock, InterfaceDescriptionOption,
    };
    let path = tmp("x.pcapng");
    let mut g = TrafficGen::new(TrafficConfig::default());
    let file = std::fs::File::create(&path).unwrap();
    let mut w = PcapNgWriter::new(file).unwrap();
    let idb = InterfaceDescriptionBlock {
        linktype: pcap_file::DataLink::ETHERNET,
        snaplen: 65535,
        options: vec![InterfaceDescriptionOption::IfTsResol(9)],
    };
    w.write_pcapng_block(idb).unwrap();
    let mut frames = Vec::new();
    for i in 0..20u64 {
        let f = g.next_frame().to_vec();
        let epb = EnhancedPacketBlock {
            interface_id: 0,
            timestamp: std::time::Duration::from_nanos(5_000_000_000 + i),
            original_len: f.len() as u32,
            data: std::borrow::Cow::Owned(f.clone()),
            options: vec![],
        };
        w.write_pcapng_block(epb).unwrap();
        frames.push(f);
    }
    drop(w);
    let f = CaptureFile::open(&path).unwrap();
    assert_eq!(f.format(), Format::PcapNg);
    let recs: Vec<_> = f.records().map(|r| r.unwrap()).collect();
    assert_eq!(recs.len(), 20);
    assert_eq!(recs[3].data, &frames[3][..]);
    assert_eq!(recs[3].timestamp.0, 5_000_000_003);
    let r = run(
        "FromPcap($IN) -> c :: Counter -> Discard;",
        &[("IN", &path)],
    )
    .unwrap();
    assert_eq!(r.read_handler("c", "count").unwrap(), "20");
    // Sharded, pcapng goes through the general reader record by record: every packet once.
    let (res, sh) = run_sharded("FromPcap($IN, BURST 4) -> c :: Counter -> Discard;", &path);
    res.unwrap();
    assert_eq!(shard_counts(&sh).iter().sum::<u64>(), 20);
}

#[test]
fn truncated_and_corrupt_files_are_typed_errors_naming_the_offset() {
    let a = tmp("good.pcap");
    gen_pcap(&a, 10, false);
    let bytes = std::fs::read(&a).unwrap();
    // Each record is 16 + 64 bytes after the 24-byte file header.
    let cut = tmp("cut.pcap");
    std::fs::write(&cut, &bytes[..24 + 80 * 3 + 40]).unwrap();
    let f = CaptureFile::open(&cut).unwrap();
    let res: Vec<_> = f.records().collect();
    assert_eq!(res.len(), 4);
    let e = res[3].as_ref().unwrap_err();
    match e {
        nf_drivers::Error::Capture { offset, reason, .. } => {
            assert_eq!(*offset, 24 + 80 * 3);
            assert!(reason.contains("truncated"), "{reason}");
        }
        o => panic!("unexpected {o:?}"),
    }
    // The run ends with the error, after the good packets went through.
    let err = run("FromPcap($IN) -> c :: Counter -> Discard;", &[("IN", &cut)]).unwrap_err();
    assert!(err.to_string().contains("at byte 264"), "{err}");
    // The same in a sharded run (the shards' scan hands the damaged record to the general reader).
    let (res, sh) = run_sharded("FromPcap($IN) -> c :: Counter -> Discard;", &cut);
    let err = res.unwrap_err();
    assert!(err.to_string().contains("at byte 264"), "{err}");
    let good: u64 = shard_counts(&sh).iter().sum();
    assert_eq!(good, 3, "each good packet once, before the error");

    let mut bad = bytes.clone();
    bad[24 + 80 + 8..24 + 80 + 12].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    let corrupt = tmp("corrupt.pcap");
    std::fs::write(&corrupt, &bad).unwrap();
    let f = CaptureFile::open(&corrupt).unwrap();
    let e = f.records().nth(1).unwrap().unwrap_err();
    assert!(
        e.to_string().contains("at byte 104") && e.to_string().contains("too large"),
        "{e}"
    );

    let junk = tmp("junk.pcap");
    std::fs::write(&junk, b"definitely not a capture file").unwrap();
    let e = CaptureFile::open(&junk).unwrap_err();
    assert!(e.to_string().contains("at byte 0"), "{e}");
    let e = run("FromPcap($IN) -> Discard;", &[("IN", &junk)]).unwrap_err();
    assert!(e.to_string().contains("FromPcap"), "{e}");
    let e = run("FromPcap(/nonexistent/x.pcap) -> Discard;", &[]).unwrap_err();
    assert!(e.to_string().contains("No such file"), "{e}");
    for n in 0..bytes.len().min(200) {
        // No prefix of a file makes the reader panic.
        if let Ok(f) = CaptureFile::from_vec("prefix", bytes[..n].to_vec()) {
            for r in f.records() {
                let _ = r;
            }
        }
    }
}

#[test]
fn tcpdump_reads_what_we_write() {
    let a = tmp("fortcpdump.pcap");
    gen_pcap(&a, 25, false);
    let out = std::process::Command::new("tcpdump")
        .args(["-n", "-r"])
        .arg(&a)
        .output()
        .expect("tcpdump must be installed (the README's test command installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 25, "{text}");
    assert!(
        text.contains("Flags [S]"),
        "the first TCP packet of a flow is a SYN:\n{text}"
    );
    assert!(text.contains(".53: "), "UDP to port 53 is decoded:\n{text}");
}

#[test]
fn sharded_from_pcap_reads_every_packet_once() {
    let a = tmp("sharded.pcap");
    gen_pcap(&a, 10_000, false);
    let (res, sh) = run_sharded(
        "FromPcap($IN, BURST 16) -> ct :: ConnTrack -> c :: Counter -> Discard;",
        &a,
    );
    res.unwrap();
    let h = sh.handlers();
    let get = |e: &str, k: &str| {
        h.iter()
            .find(|v| v.element == e && v.handler == k)
            .unwrap()
            .value
            .clone()
    };
    assert_eq!(get("c", "count"), "10000");
    assert_eq!(get("ct", "flows"), "50");
    let per = shard_counts(&sh);
    assert!(per.iter().all(|&n| n > 0), "{per:?}");
}

/// Each shard's copy of `FromPcap` (which scans records without decoding their timestamps and keeps its
/// own) hands on exactly its own packets, in file order, with the timestamps the unsharded reader gives,
/// over two passes of microsecond and nanosecond files.
#[test]
fn sharded_from_pcap_keeps_order_timestamps_and_ownership() {
    use nf_drivers::io::{FromPcap, Passes};
    for nanos in [false, true] {
        let path = tmp(&format!("sharded-order-{nanos}.pcap"));
        gen_pcap(&path, 3_000, nanos);
        let graph = |seen: Recorded| {
            let mut g = nf_core::Graph::new();
            let s = g.add(
                "src",
                FromPcap::new(&path).passes(Passes::Count(2)).burst(16),
            );
            let c = g.add("c", Recorder(seen));
            g.chain(&[s.id(), c.id()]);
            g
        };
        let reference = Recorded::default();
        Router::new(graph(reference.clone()))
            .unwrap()
            .run()
            .unwrap();
        let reference = reference.lock().unwrap().clone();
        assert_eq!(reference.len(), 6_000);
        let seen: Vec<Recorded> = (0..2).map(|_| Default::default()).collect();
        let mut sh = nf_core::ShardedRouter::new(2, |s| Ok(graph(seen[s].clone()))).unwrap();
        sh.run().unwrap();
        let merged = nf_core::testing::merged_shard_records(&seen, 1_000);
        assert!(
            merged == reference,
            "nanos {nanos}: the shards' packets differ from the file's"
        );
    }
}

/// `split_by_shard` writes each frame, in order and with its timestamp, to the file of the shard its flow
/// maps to; a sharded run over the split files (`{shard}` in the name) hands each shard exactly the
/// packets that the sharded run over the whole file does. Wrong names and link types are refused.
#[test]
fn split_captures_give_each_shard_its_own_packets() {
    use nf_drivers::io::FromPcap;
    use nf_drivers::io::pcap::split_by_shard;
    let whole = tmp("split-whole.pcap");
    gen_pcap(&whole, 4_000, true);
    let pattern = tmp("split-{shard}.pcap").display().to_string();
    let files = split_by_shard(&whole, 2, &pattern).unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(files.iter().map(|(_, n)| n).sum::<u64>(), 4_000);
    assert!(files.iter().all(|(_, n)| *n > 1_000), "{files:?}");
    assert_eq!(files[1].0, tmp("split-1.pcap"));

    let runs = |path: PathBuf| {
        let graph = |seen: Recorded| {
            let mut g = nf_core::Graph::new();
            let s = g.add("src", FromPcap::new(&path).burst(16));
            let c = g.add("c", Recorder(seen));
            g.chain(&[s.id(), c.id()]);
            g
        };
        let seen: Vec<Recorded> = (0..2).map(|_| Default::default()).collect();
        let mut sh = nf_core::ShardedRouter::new(2, |s| Ok(graph(seen[s].clone()))).unwrap();
        sh.run().unwrap();
        // Every shard's packets its own, in order (checked by the helper).
        nf_core::testing::merged_shard_records(&seen, 1_000);
        seen.iter()
            .map(|s| s.lock().unwrap().clone())
            .collect::<Vec<_>>()
    };
    let from_whole = runs(whole.clone());
    let from_split = runs(PathBuf::from(&pattern));
    assert!(from_split == from_whole, "the split files' shards differ");

    let e = split_by_shard(&whole, 2, "no-placeholder.pcap").unwrap_err();
    assert!(e.to_string().contains("{shard}"), "{e}");
    let raw = tmp("split-raw.pcap");
    let mut w = PcapFileWriter::create(&raw, 65535, false, pcap_file::DataLink::RAW).unwrap();
    w.write(Timestamp(1), &[0x45; 20]).unwrap();
    w.close().unwrap();
    let e = split_by_shard(&raw, 2, &pattern).unwrap_err();
    assert!(e.to_string().contains("Ethernet"), "{e}");
}
