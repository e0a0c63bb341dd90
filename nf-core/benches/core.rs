//! Criterion benchmarks of the per-packet building blocks: header parsing, flow keys and hashes,
//! classification, checksum updates. `cargo bench -p nf-core`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nf_core::elements::ip::expr::{Expr, View};
use nf_core::elements::standard::Classifier;
use nf_core::packet::Link;
use nf_core::traffic::{TrafficConfig, TrafficGen};
use nf_core::{FlowKey, Packet, checksum};
use std::hint::black_box;

fn frames(n: usize) -> Vec<Vec<u8>> {
    let mut g = TrafficGen::new(TrafficConfig {
        flows: 10_000,
        ..Default::default()
    });
    (0..n).map(|_| g.next_frame().to_vec()).collect()
}

fn bench(c: &mut Criterion) {
    let fs = frames(1024);
    let mut pkts: Vec<Packet> = fs.iter().map(|f| Packet::from_slice(f)).collect();

    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(pkts.len() as u64));
    g.bench_function("locate (etherparse, eth/ipv4/l4)", |b| {
        b.iter(|| {
            for p in pkts.iter_mut() {
                p.anno.set_l3_offset(None);
                black_box(p.locate(Link::Ethernet).ok());
            }
        })
    });
    g.bench_function("etherparse SlicedPacket::from_ethernet", |b| {
        b.iter(|| {
            for f in &fs {
                black_box(etherparse::SlicedPacket::from_ethernet(f).ok());
            }
        })
    });
    g.finish();

    let keys: Vec<FlowKey> = pkts
        .iter_mut()
        .map(|p| FlowKey::from_packet(p, Link::Ethernet).unwrap())
        .collect();
    let mut g = c.benchmark_group("flow");
    g.throughput(Throughput::Elements(keys.len() as u64));
    g.bench_function("FlowKey::from_headers", |b| {
        b.iter(|| {
            for p in pkts.iter_mut() {
                let h = p.locate(Link::Ethernet).unwrap();
                black_box(FlowKey::from_headers(p.buffer(), &h));
            }
        })
    });
    g.bench_function("rss_hash (symmetric Toeplitz)", |b| {
        b.iter(|| keys.iter().map(|k| k.rss_hash()).fold(0, |a, h| a ^ h))
    });
    g.bench_function("canonical + table_hash", |b| {
        b.iter(|| {
            keys.iter()
                .map(|k| k.canonical().0.table_hash())
                .fold(0, |a, h| a ^ h)
        })
    });
    g.finish();

    // The candidates for the tables' keyed hash (BENCHMARKS.md, "Hash flooding"): the keyed NH this
    // crate uses, the unkeyed mix it replaced, and SipHash-1-3 (std's keyed `RandomState`).
    let mut g = c.benchmark_group("table hash");
    g.throughput(Throughput::Elements(keys.len() as u64));
    let key = nf_core::hash::HashKey::process();
    g.bench_function("keyed NH + fmix64 (table_hash)", |b| {
        b.iter(|| keys.iter().map(|k| k.keyed_hash(key)).fold(0, |a, h| a ^ h))
    });
    g.bench_function("unkeyed mix (before)", |b| {
        b.iter(|| keys.iter().map(|k| k.unkeyed_hash()).fold(0, |a, h| a ^ h))
    });
    let sip = std::collections::hash_map::RandomState::new();
    g.bench_function("SipHash-1-3 (std RandomState)", |b| {
        use std::hash::BuildHasher;
        b.iter(|| {
            keys.iter()
                .map(|k| sip.hash_one(k) as u32)
                .fold(0, |a, h| a ^ h)
        })
    });
    g.finish();

    let mut g = c.benchmark_group("classify");
    g.throughput(Throughput::Elements(fs.len() as u64));
    let cls = Classifier::new(&["12/0800 23/06", "12/0800 23/11", "-"]).unwrap();
    g.bench_function("Classifier (3 byte patterns)", |b| {
        b.iter(|| {
            fs.iter()
                .map(|f| cls.classify(f).unwrap_or(9))
                .sum::<usize>()
        })
    });
    let exprs: Vec<Expr> = ["tcp dst port 80", "udp and src net 10.0.0.0/8", "-"]
        .iter()
        .map(|e| Expr::parse(e).unwrap())
        .collect();
    g.bench_function("IPClassifier (view + 3 expressions)", |b| {
        b.iter(|| {
            fs.iter()
                .map(|f| {
                    View::parse(f, 14)
                        .map(|v| exprs.iter().position(|e| e.eval(&v)).unwrap_or(9))
                        .unwrap_or(9)
                })
                .sum::<usize>()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("checksum");
    g.throughput(Throughput::Elements(1));
    let hdr = &fs[0][14..34];
    g.bench_function("full IPv4 header", |b| {
        b.iter(|| checksum::checksum(black_box(hdr)))
    });
    g.bench_function("RFC 1624 update (4-byte address)", |b| {
        b.iter(|| {
            checksum::update_bytes(
                black_box(0x1234),
                black_box(&[10, 0, 0, 1]),
                black_box(&[192, 168, 1, 1]),
            )
        })
    });
    g.finish();
}

fn maglev(c: &mut Criterion) {
    use nf_core::elements::lb::{MaglevBackend, MaglevTable};
    let backends: Vec<MaglevBackend> = (0..1000)
        .map(|i| MaglevBackend {
            name: format!("10.1.{}.{}:8080", i / 256, i % 256),
            weight: 1,
        })
        .collect();
    let mut g = c.benchmark_group("maglev");
    g.bench_function("build (1000 backends, M = 65537)", |b| {
        b.iter(|| black_box(MaglevTable::build(&backends, 65_537).unwrap()))
    });
    let t = MaglevTable::build(&backends, 65_537).unwrap();
    let hashes: Vec<u32> = (0..4096u32)
        .map(|i| i.wrapping_mul(2_654_435_761))
        .collect();
    g.throughput(Throughput::Elements(hashes.len() as u64));
    g.bench_function("lookup", |b| {
        b.iter(|| {
            let mut acc = 0usize;
            for &h in &hashes {
                acc = acc.wrapping_add(t.lookup(black_box(h)));
            }
            black_box(acc)
        })
    });
    g.finish();
}

/// HTML table rows in HTTP responses, one 1,300-byte payload per frame (as in `tests/aplomb.rs`).
fn http_frames(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut body = String::from(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><table>",
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
            etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
                .ipv4([10, 9, 9, 9], [10, 0, 0, 1], 64)
                .tcp(80, 40000, 1, 64240)
                .write(&mut v, body.as_bytes())
                .unwrap();
            v
        })
        .collect()
}

fn compression(c: &mut Criterion) {
    use nf_core::elements::tunnel::{Compress, Decompress};
    let frames = http_frames(256);
    let payload: u64 = frames.iter().map(|f| (f.len() - 34) as u64).sum();
    let mut g = c.benchmark_group("compress");
    g.throughput(Throughput::Bytes(payload));
    let mut comp = Compress::new(std::sync::Arc::from(Vec::new()));
    g.bench_function("LZ4 IPComp, 256 HTTP packets", |b| {
        b.iter(|| {
            for f in &frames {
                let mut p = Packet::from_slice(f);
                black_box(comp.compress(&mut p));
            }
        })
    });
    let packed: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| {
            let mut p = Packet::from_slice(f);
            comp.compress(&mut p);
            p.data().to_vec()
        })
        .collect();
    let mut de = Decompress::new(std::sync::Arc::from(Vec::new()));
    g.bench_function("LZ4 IPComp decompress, 256 HTTP packets", |b| {
        b.iter(|| {
            for f in &packed {
                let mut p = Packet::from_slice(f);
                black_box(de.decompress(&mut p).unwrap());
            }
        })
    });
    g.finish();
    let s = comp.stats();
    eprintln!("compression ratio on these packets: {:.2}", s.ratio());
}

/// A bucket move's state: `ConnTrack`'s entries of 64 buckets (an eighth) exported from one copy and
/// imported into another, 100,000 connections in the table.
fn migrate(c: &mut Criterion) {
    use nf_core::elements::tcpudp::ConnTrack;
    use nf_core::indirection::{BucketSet, Migrate};
    let tracked = || {
        let mut ct = ConnTrack::new(200_000);
        let mut g = TrafficGen::new(TrafficConfig {
            flows: 100_000,
            bidirectional: false,
            ..Default::default()
        });
        for _ in 0..100_000 {
            let mut p = g.next_packet();
            ct.track(&mut p);
        }
        ct
    };
    let buckets: BucketSet = (0..64).collect();
    let moved = tracked().export_buckets(&buckets).entries as u64;
    let mut g = c.benchmark_group("migrate");
    g.throughput(Throughput::Elements(moved));
    g.sample_size(20);
    g.bench_function("conntrack: export 64 buckets and import them", |b| {
        b.iter_batched(
            || (tracked(), ConnTrack::new(200_000)),
            |(mut from, mut to)| {
                let e = from.export_buckets(&buckets);
                black_box(to.import_buckets(e))
            },
            criterion::BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench, maglev, compression, migrate);
criterion_main!(benches);
