//! The syslog driver's parsing path on one core: a kernel LOG line as a syslog daemon relays it
//! (RFC 3164 header, `netfilter-log` key=value body) parsed, extracted and encoded into a `flow-mapping`
//! record; and conntrack event lines. `cargo bench -p nf-drivers --bench syslog`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nf_drivers::syslog::extract::{self, ConntrackEvents, NetfilterLog};
use nf_drivers::syslog::{Emitter, Extractor, parse};
use nf_state::Codec;
use std::hint::black_box;

fn log_lines(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                "<4>Nov 22 01:50:29 lb1 kernel: [ 8123.456789] lb-new: IN=veth-c OUT=veth-b MAC=02:42:ac:11:00:02:02:42:ac:11:00:03:08:00 SRC=10.0.{}.{} DST=10.1.0.{} LEN=60 TOS=0x00 PREC=0x00 TTL=63 ID={} DF PROTO=TCP SPT={} DPT=80 WINDOW=64240 RES=0x00 SYN URGP=0",
                i / 250 % 250,
                i % 250 + 1,
                i % 3 + 2,
                i % 65536,
                1024 + i % 60000
            )
        })
        .collect()
}

fn ct_lines(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                "<14>[1700000000.123456]\t    [NEW] ipv4     2 tcp      6 120 SYN_SENT src=10.0.0.{} dst=10.0.0.100 sport={} dport=80 [UNREPLIED] src=10.1.0.{} dst=10.0.0.{} sport=8080 dport={}",
                i % 250 + 1,
                1024 + i % 60000,
                i % 3 + 2,
                i % 250 + 1,
                1024 + i % 60000
            )
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let lines = log_lines(4096);
    let mut g = c.benchmark_group("syslog");
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.bench_function("parse RFC 3164 header", |b| {
        b.iter(|| {
            for l in &lines {
                black_box(parse(l).ok());
            }
        })
    });
    g.bench_function("parse + netfilter-log line", |b| {
        b.iter(|| {
            for l in &lines {
                let m = parse(l).unwrap();
                black_box(extract::parse_netfilter(m.msg).ok());
            }
        })
    });
    let mut x = NetfilterLog::new(Some("lb-new".into()));
    let mut out = Emitter::new(Codec::Bincode, "bench");
    g.bench_function(
        "parse + extract + encode flow-mapping record (bincode)",
        |b| {
            b.iter(|| {
                for l in &lines {
                    let m = parse(l).unwrap();
                    x.extract(&m, &mut out).unwrap();
                }
                out.clear();
            })
        },
    );
    let cts = ct_lines(4096);
    let mut ct = ConntrackEvents;
    g.bench_function(
        "parse + extract conntrack event (conntrack + flow-mapping)",
        |b| {
            b.iter(|| {
                for l in &cts {
                    let m = parse(l).unwrap();
                    ct.extract(&m, &mut out).unwrap();
                }
                out.clear();
            })
        },
    );
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
