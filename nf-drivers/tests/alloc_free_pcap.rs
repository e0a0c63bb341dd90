//! Proves the "no allocation in steady state" claim for the capture reader: a global allocator counts
//! every allocation while packets go `FromPcap -> Classifier -> Counter -> Discard` (and a sharded
//! reader's share) after a warm-up pass over the file.

use nf_core::elements::standard::{Classifier, Counter, Discard};
use nf_core::traffic::{TrafficConfig, TrafficGen};
use nf_core::{ElementId, Graph, Router, Timestamp};
use nf_drivers::io::pcap::PcapFileWriter;
use nf_drivers::io::{FromPcap, Passes};

#[global_allocator]
static GLOBAL: nf_core::counting_alloc_unsafe::CountingAlloc =
    nf_core::counting_alloc_unsafe::CountingAlloc;

fn capture(name: &str, packets: u64) -> std::path::PathBuf {
    capture_sized(name, packets, nf_core::traffic::SizeMix::Fixed(64))
}

fn capture_sized(name: &str, packets: u64, size: nf_core::traffic::SizeMix) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("nf-alloc-pcap-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let path = d.join(name);
    let mut g = TrafficGen::new(TrafficConfig {
        flows: 1000,
        size,
        ..Default::default()
    });
    let mut w = PcapFileWriter::create(&path, 65535, false, pcap_file::DataLink::ETHERNET).unwrap();
    for i in 0..packets {
        w.write(
            Timestamp(1_700_000_000_000_000_000 + i * 1000),
            g.next_frame(),
        )
        .unwrap();
    }
    w.close().unwrap();
    path
}

/// A reader (of shard `shard` of `shards`, or the whole file) looping over `path`, into a classifier
/// with a counter and a discard per output.
fn router(path: &std::path::Path, shard: Option<(usize, usize)>) -> (Router, ElementId<FromPcap>) {
    router_with(FromPcap::new(path), shard)
}

fn router_with(src: FromPcap, shard: Option<(usize, usize)>) -> (Router, ElementId<FromPcap>) {
    let mut g = Graph::new();
    let src = g.add("src", src.passes(Passes::Forever).burst(64));
    let cls = g.add(
        "cls",
        Classifier::new(&["12/0800 23/06", "12/0800 23/11", "-"]).unwrap(),
    );
    g.connect(src.id(), 0, cls.id(), 0);
    for i in 0..3 {
        let c = g.add(&format!("c{i}"), Counter::new());
        let d = g.add(&format!("d{i}"), Discard::new());
        g.connect(cls.id(), i, c.id(), 0);
        g.connect(c.id(), 0, d.id(), 0);
    }
    let r = match shard {
        Some((me, n)) => Router::new_shard(g, me, n),
        None => Router::new(g),
    };
    (r.unwrap(), src)
}

/// Runs rounds until `n` more packets left the source; returns the allocations counted meanwhile.
fn allocs_over(r: &mut Router, src: ElementId<FromPcap>, n: u64) -> u64 {
    nf_core::counting_alloc_unsafe::allocations_over(r, src, FromPcap::count, n)
}

#[test]
fn from_pcap_allocates_nothing_after_the_first_pass() {
    let path = capture("whole.pcap", 20_000);
    let (mut r, src) = router(&path, None);
    assert!(
        allocs_over(&mut r, src, 30_000) > 0,
        "the warm-up allocates (the counter counts)"
    );
    assert_eq!(allocs_over(&mut r, src, 100_000), 0);
}

#[test]
fn a_shard_of_from_pcap_allocates_nothing_after_the_first_pass() {
    let path = capture("shard.pcap", 20_000);
    let (mut r, src) = router(&path, Some((1, 2)));
    assert!(
        allocs_over(&mut r, src, 30_000) > 0,
        "the warm-up allocates (the counter counts)"
    );
    assert_eq!(allocs_over(&mut r, src, 100_000), 0);
}

/// Borrowed packets (IMIX frames pointing into the mapped file, every one or only those of 256 bytes and
/// more, in one shard or a shard's share): counting a reference to the file allocates nothing, nor does a
/// batch mixing borrowed and pooled packets.
#[test]
fn borrowed_packets_allocate_nothing_after_the_first_pass() {
    let path = capture_sized("imix.pcap", 20_000, nf_core::traffic::SizeMix::Imix);
    for (copybreak, shard) in [
        (0, None),
        (256, None),
        (0, Some((0, 2))),
        (256, Some((1, 2))),
    ] {
        let (mut r, src) = router_with(FromPcap::new(&path).copybreak(copybreak), shard);
        allocs_over(&mut r, src, 30_000);
        assert_eq!(
            allocs_over(&mut r, src, 100_000),
            0,
            "COPYBREAK {copybreak}, shard {shard:?}"
        );
        let c: u64 = (0..3)
            .map(|i| {
                r.read_handler(&format!("c{i}"), "count")
                    .unwrap()
                    .parse::<u64>()
                    .unwrap()
            })
            .sum();
        assert!(c >= 130_000, "{c}");
    }
}

/// A rewriting element over borrowed packets: each rewrite copies its packet into a pooled buffer
/// (copy-on-write), from the pool, allocating nothing once the pool is warm.
#[test]
fn copy_on_write_allocates_nothing_after_the_first_pass() {
    let path = capture_sized("imix-rw.pcap", 20_000, nf_core::traffic::SizeMix::Imix);
    let mut g = Graph::new();
    let src = g.add(
        "src",
        FromPcap::new(&path)
            .copybreak(0)
            .passes(Passes::Forever)
            .burst(64),
    );
    let lb = g.add(
        "lb",
        nf_core::elements::lb::LoadBalancer::new(
            "192.168.0.1:80".parse().unwrap(),
            vec![
                "10.1.0.1:8080".parse().unwrap(),
                "10.1.0.2:8080".parse().unwrap(),
            ],
        )
        .loose_vip(true),
    );
    g.connect(src.id(), 0, lb.id(), 0);
    let idle = g.add("idle", nf_core::elements::standard::Idle);
    g.connect(idle.id(), 0, lb.id(), 1);
    for o in 0..3 {
        let d = g.add(&format!("d{o}"), Discard::new());
        g.connect(lb.id(), o, d.id(), 0);
    }
    let mut r = Router::new(g).unwrap();
    allocs_over(&mut r, src, 30_000);
    let before = nf_core::pool::stats();
    assert_eq!(allocs_over(&mut r, src, 100_000), 0);
    let copies = (nf_core::pool::stats() - before).unshared;
    assert!(
        copies > 10_000,
        "the balancer rewrote borrowed packets: {copies} copies"
    );
}
