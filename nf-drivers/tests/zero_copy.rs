//! Zero copy from capture files: `FromPcap` hands out packets that point into the mapped file (frames at
//! least `COPYBREAK` long), the mapping outlives every such packet and goes with the last, a rewrite copies
//! only the packet it changes, `ToPcap` writes borrowed packets as they are, and damaged files end the run
//! with an error, never a read outside the file.

use nf_core::testing::Keep;
use nf_core::traffic::{SizeMix, TrafficConfig, TrafficGen};
use nf_core::{Graph, Router, Timestamp};
use nf_drivers::io::pcap::{CaptureFile, PcapFileWriter};
use nf_drivers::io::{FromPcap, ToPcap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nf-zero-copy-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// A capture of `n` IMIX frames (64, 594 and 1514 bytes in 7:4:1); returns the frames.
fn imix(path: &Path, n: u64) -> Vec<Vec<u8>> {
    let mut g = TrafficGen::new(TrafficConfig {
        flows: 40,
        size: SizeMix::Imix,
        ..Default::default()
    });
    let mut w = PcapFileWriter::create(path, 65535, true, pcap_file::DataLink::ETHERNET).unwrap();
    let mut frames = Vec::new();
    for i in 0..n {
        let f = g.next_frame().to_vec();
        w.write(Timestamp(1_700_000_000_000_000_000 + i * 1000), &f)
            .unwrap();
        frames.push(f);
    }
    w.close().unwrap();
    frames
}

/// Whether this process has `path` mapped.
fn mapped(path: &Path) -> bool {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let name = path.canonicalize().unwrap();
    maps.lines().any(|l| l.ends_with(&*name.to_string_lossy()))
}

#[test]
fn packets_point_into_the_mapped_file_which_goes_with_the_last_of_them() {
    let path = tmp("held.pcap");
    let frames = imix(&path, 600);
    let kept = Arc::new(Mutex::new(Vec::new()));
    {
        let mut g = Graph::new();
        let src = g.add("src", FromPcap::new(&path).copybreak(100).burst(16));
        let k = g.add("k", Keep(kept.clone()));
        g.connect(src.id(), 0, k.id(), 0);
        let mut r = Router::new(g).unwrap();
        r.run().unwrap();
        assert_eq!(r.read_handler("src", "count").unwrap(), "600");
    }
    // The router (and its source) are gone; the packets still read the file's bytes.
    let mut held = std::mem::take(&mut *kept.lock().unwrap());
    assert_eq!(held.len(), 600);
    for (p, f) in held.iter().zip(&frames) {
        assert_eq!(p.data(), &f[..]);
        assert_eq!(p.is_borrowed(), f.len() >= 100, "{} bytes", f.len());
    }
    assert!(held.iter().any(|p| p.is_borrowed()) && held.iter().any(|p| !p.is_borrowed()));
    assert!(mapped(&path), "packets hold the mapping");
    held.retain(|p| p.is_borrowed());
    let last = held.pop().unwrap();
    drop(held);
    assert!(mapped(&path), "one packet still holds the mapping");
    assert_eq!(
        last.data(),
        &frames[599 - frames.iter().rev().position(|f| f.len() >= 100).unwrap()][..]
    );
    drop(last);
    assert!(!mapped(&path), "the last packet let the mapping go");
}

#[test]
fn to_pcap_writes_borrowed_packets_unchanged_and_copies_none() {
    let a = tmp("in.pcap");
    let b = tmp("out.pcap");
    let frames = imix(&a, 2000);
    let mut g = Graph::new();
    let src = g.add("src", FromPcap::new(&a).copybreak(0));
    let out = g.add("out", ToPcap::new(&b).nanos(true));
    g.connect(src.id(), 0, out.id(), 0);
    let mut r = Router::new(g).unwrap();
    let before = nf_core::pool::stats();
    r.run().unwrap();
    drop(r);
    let d = nf_core::pool::stats() - before;
    assert_eq!(d.unshared, 0, "nothing was written to");
    assert_eq!(d.allocated, 0, "no packet took a buffer: all borrowed");
    let f = CaptureFile::open(&b).unwrap();
    let got: Vec<_> = f.records().map(|r| r.unwrap()).collect();
    assert_eq!(got.len(), frames.len());
    for (i, (r, want)) in got.iter().zip(&frames).enumerate() {
        assert_eq!(r.data, &want[..], "record {i}");
        assert_eq!(r.timestamp.0, 1_700_000_000_000_000_000 + i as u64 * 1000);
    }
}

#[test]
fn a_rewrite_copies_the_borrowed_packets_it_changes_and_only_those() {
    let a = tmp("rw.pcap");
    let frames = imix(&a, 3000);
    let text = "src :: FromPcap($IN, COPYBREAK 0)
        -> dir :: Classifier(34/0050, -);
        lb :: LoadBalancer(VIP 192.168.0.1:80, LOOSE_VIP true, STRICT_REPLIES false, SEED 1,
                           BACKENDS 10.1.0.1:8080 10.1.0.2:8080);
        dir[0] -> [1]lb; dir[1] -> [0]lb;
        lb[0] -> Discard; lb[1] -> Discard; lb[2] -> Discard;";
    let p = [("IN".to_string(), a.display().to_string())].into();
    let cfg = nf_core::Config::parse("t", text, &p).unwrap();
    let mut r = Router::new(cfg.build(&nf_drivers::registry()).unwrap()).unwrap();
    let before = nf_core::pool::stats();
    r.run().unwrap();
    let d = nf_core::pool::stats() - before;
    let h = |n: &str| -> u64 { r.read_handler("lb", n).unwrap().parse().unwrap() };
    let rewritten = h("forwarded") + h("replies");
    assert!(rewritten > 1000, "{rewritten}");
    assert_eq!(d.unshared, rewritten, "one copy per rewritten packet");
    assert_eq!(frames.len(), 3000);
}

#[test]
fn damaged_files_end_the_run_with_an_error_after_the_whole_records() {
    let a = tmp("whole.pcap");
    let frames = imix(&a, 50);
    let bytes = std::fs::read(&a).unwrap();
    // Cut in the middle of the 41st frame.
    let mut end = 24;
    for f in &frames[..40] {
        end += 16 + f.len();
    }
    for cut_at in [end + 10, end + 16 + frames[40].len() / 2] {
        let cut = tmp(&format!("cut{cut_at}.pcap"));
        std::fs::write(&cut, &bytes[..cut_at]).unwrap();
        for shards in [1, 2] {
            let kept = Arc::new(Mutex::new(Vec::new()));
            let k2 = kept.clone();
            let cut2 = cut.clone();
            let mut sh = nf_core::ShardedRouter::new(shards, move |_| {
                let mut g = Graph::new();
                let src = g.add("src", FromPcap::new(&cut2).copybreak(0));
                let k = g.add("k", Keep(k2.clone()));
                g.connect(src.id(), 0, k.id(), 0);
                Ok(g)
            })
            .unwrap();
            let err = sh.run().unwrap_err();
            assert!(err.to_string().contains(&format!("at byte {end}")), "{err}");
            drop(sh);
            let mut got: Vec<Vec<u8>> = kept
                .lock()
                .unwrap()
                .iter()
                .map(|p| p.data().to_vec())
                .collect();
            got.sort();
            let mut want: Vec<Vec<u8>> = frames[..40].to_vec();
            want.sort();
            assert_eq!(got, want, "{shards} shard(s): every whole record once");
        }
    }
}

/// `COPYBREAK auto` (the default): frames of mixed sizes are all borrowed once a burst has shown the mix
/// (a batch of copied and borrowed packets costs more than the copies save), frames all small are all
/// copied.
#[test]
fn the_default_borrows_mixed_traffic_whole_and_copies_small_frames() {
    let mixed = tmp("auto-imix.pcap");
    let frames = imix(&mixed, 640);
    let small = tmp("auto-64.pcap");
    {
        let mut g = TrafficGen::new(TrafficConfig {
            flows: 40,
            ..Default::default()
        });
        let mut w =
            PcapFileWriter::create(&small, 65535, true, pcap_file::DataLink::ETHERNET).unwrap();
        for i in 0..640 {
            w.write(Timestamp(i), g.next_frame()).unwrap();
        }
        w.close().unwrap();
    }
    for (path, want_borrowed) in [(&mixed, true), (&small, false)] {
        let kept = Arc::new(Mutex::new(Vec::new()));
        let mut g = Graph::new();
        let src = g.add("src", FromPcap::new(path).burst(32));
        let k = g.add("k", Keep(kept.clone()));
        g.connect(src.id(), 0, k.id(), 0);
        Router::new(g).unwrap().run().unwrap();
        let held = kept.lock().unwrap();
        assert_eq!(held.len(), 640);
        // The first burst goes by the threshold (256 bytes); every later one by what the last one held.
        for (i, p) in held.iter().enumerate().skip(32) {
            assert_eq!(
                p.is_borrowed(),
                want_borrowed,
                "{}: packet {i}",
                path.display()
            );
        }
        if want_borrowed {
            for (p, f) in held.iter().zip(&frames).take(32) {
                assert_eq!(p.is_borrowed(), f.len() >= 256);
            }
        }
    }
}
