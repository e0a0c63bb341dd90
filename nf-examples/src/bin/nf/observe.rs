//! `nf observe`: the traffic-observation driver.

use crate::common::CodecArg;
use nf_drivers::driver::{Shutdown, StateDriver};
use nf_drivers::observe::{ObserveConfig, ObserveDriver, ObserveDriverConfig, Tap};
use nf_state::Codec;

/// `nf observe`: infers a black box's per-flow state from its traffic on both sides: two capture files
/// (read to the end, merged by time) or two interfaces (until SIGINT/SIGTERM).
#[derive(clap::Args)]
#[command(
    after_help = "Captures to try it on: `nf bench observe --write DIR` writes DIR/outside.pcap and \
DIR/inside.pcap (a synthetic DNAT balancer's two sides, VIP 10.0.0.100:80); the failover lab's observe \
primary captures a real one. Live: tcpdump -w on each side of the box, or give the interfaces."
)]
pub struct ObserveArgs {
    /// The clients' side: a capture file or an interface.
    #[arg(long)]
    outside: String,
    /// The servers' side: a capture file or an interface.
    #[arg(long)]
    inside: String,
    /// The store (see `nf state --help`).
    #[arg(long)]
    store: String,
    /// The balancer's virtual IP:PORT (only flows to it are considered outside).
    #[arg(long)]
    vip: Option<std::net::SocketAddr>,
    /// Confidence a mapping needs to be emitted.
    #[arg(long, default_value_t = 0.9)]
    threshold: f64,
    /// Codec of keys and values.
    #[arg(long, value_enum, default_value = "bincode")]
    codec: CodecArg,
    /// The records' origin.
    #[arg(long, default_value = "observe")]
    origin: String,
    /// Serve Prometheus metrics at http://ADDRESS:PORT/metrics: the driver's counters and the link
    /// latency.
    #[arg(long, value_name = "ADDRESS:PORT")]
    metrics: Option<std::net::SocketAddr>,
    /// Allow the metrics endpoint on an address other than loopback.
    #[arg(long)]
    metrics_remote: bool,
}

/// `nf bench observe`: the observation correlator's packet rate on one core, over a synthetic DNAT
/// trace in memory.
#[derive(clap::Args)]
pub struct BenchObserveArgs {
    /// Connections.
    #[arg(long, default_value_t = 100_000)]
    flows: usize,
    /// Data segments each way per connection (after the handshake).
    #[arg(long, default_value_t = 20)]
    per_flow: usize,
    /// Connections interleaved at a time.
    #[arg(long, default_value_t = 10_000)]
    active: usize,
    /// Runs.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Also write the trace as DIR/outside.pcap and DIR/inside.pcap (for `nf observe`).
    #[arg(long, value_name = "DIR")]
    write: Option<std::path::PathBuf>,
}

/// Runs the observation driver: on two capture files to their end, on two interfaces until SIGINT or
/// SIGTERM; then prints the counters.
pub fn run(o: ObserveArgs) -> Result<(), String> {
    let outside: Tap = o
        .outside
        .parse()
        .map_err(|e: nf_drivers::Error| e.to_string())?;
    let inside: Tap = o
        .inside
        .parse()
        .map_err(|e: nf_drivers::Error| e.to_string())?;
    let vip = o.vip;
    if !(0.0..1.0).contains(&o.threshold) {
        return Err(format!("--threshold {} must be in [0, 1)", o.threshold));
    }
    let codec = Codec::from(o.codec);
    let cfg = ObserveDriverConfig {
        correlate: ObserveConfig {
            vip,
            threshold: o.threshold,
            ..Default::default()
        },
        codec,
        origin: o.origin,
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    rt.block_on(async move {
        let store = nf_state::open(&o.store).await.map_err(|e| e.to_string())?;
        let mut d = ObserveDriver::new(outside, inside, cfg);
        let lat = d.latency();
        let _metrics = crate::common::metrics_only(
            o.metrics,
            o.metrics_remote,
            vec![
                crate::common::driver_source("observe", d.counters()),
                Box::new(move |m: &mut nf_core::metrics::Metrics| {
                    crate::common::latency_gauges(
                        m,
                        "nf_observe_link_latency",
                        "packet time from an inside flow's first packet to the packet that linked it",
                        &[],
                        &lat,
                    )
                }),
            ],
        )?;
        let (_trigger, shutdown) = Shutdown::on_signals().map_err(|e| e.to_string())?;
        let t0 = std::time::Instant::now();
        let done = d.run(store, shutdown).await.map_err(|e| e.to_string())?;
        let dt = t0.elapsed().as_secs_f64();
        let s = d.stats();
        let lat = d.latency();
        println!("{done}");
        println!(
            "packets outside={} inside={} ignored={}; flows outside={} inside={}; matched={} ambiguous={} unmatched={} corrected={} evicted={}; mappings emitted={} deleted={}",
            s.packets_outside,
            s.packets_inside,
            s.ignored,
            s.flows_outside,
            s.flows_inside,
            s.matched,
            s.ambiguous,
            s.unmatched,
            s.corrected,
            s.evicted,
            s.emitted,
            s.deleted
        );
        let pkts = s.packets_outside + s.packets_inside;
        println!(
            "{:.2} s, {:.2} M packets/s; link latency (packet time from a flow's first inside packet to its mapping) p50 <= {} us, p99 <= {} us, max {} us",
            dt,
            pkts as f64 / dt.max(1e-9) / 1e6,
            lat.quantile_ns(0.5) / 1000,
            lat.quantile_ns(0.99) / 1000,
            lat.max_ns() / 1000
        );
        Ok(())
    })
}

/// `nf bench observe`: the correlator's packet rate on one core, over a synthetic DNAT trace held in
/// memory: `flows` connections (each a handshake then `per_flow` data segments each way, interleaved,
/// `active` at a time), both taps.
pub fn bench(o: BenchObserveArgs) -> Result<(), String> {
    let (flows, per_flow, active, repeat) = (o.flows, o.per_flow, o.active, o.repeat);
    let write = o.write.as_deref();
    use etherparse::PacketBuilder;
    use nf_drivers::observe::{Correlator, Side};
    let vip = ([10, 0, 0, 100], 80u16);
    let backends = [
        ([10, 1, 0, 2], 8080u16),
        ([10, 1, 0, 3], 8080),
        ([10, 1, 0, 4], 8080),
    ];
    let mk = |src: ([u8; 4], u16),
              dst: ([u8; 4], u16),
              seq: u32,
              ack: Option<u32>,
              syn: bool,
              pay: &[u8]| {
        let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(src.0, dst.0, 64)
            .tcp(src.1, dst.1, seq, 64240);
        if syn {
            b = b.syn();
        }
        if let Some(a) = ack {
            b = b.ack(a);
        }
        // As real stacks send them: a TCP timestamp option and an IP ID (both kept by a NAT).
        let mut v = Vec::with_capacity(80 + pay.len());
        let tsval = seq.rotate_left(7);
        match b.options(&[etherparse::TcpOptionElement::Timestamp(tsval, 0)]) {
            Ok(b) => {
                let _ = b.write(&mut v, pay);
            }
            Err(_) => return v,
        }
        let id = (seq >> 3) as u16 | 1;
        v[18..20].copy_from_slice(&id.to_be_bytes());
        if v.len() < 60 {
            v.resize(60, 0);
        }
        v
    };
    // (side, ts, frame), in time order.
    let mut evs: Vec<(Side, u64, Vec<u8>)> = Vec::new();
    let mut seed = 0x9e37_79b9u32;
    let mut rnd = || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed
    };
    let payload = [0x41u8; 6];
    let rounds = per_flow + 2;
    let mut t = 1_700_000_000_000_000_000u64;
    for batch in (0..flows).collect::<Vec<_>>().chunks(active.max(1)) {
        let conns: Vec<_> = batch
            .iter()
            .map(|&k| {
                let client = (
                    [10, 2, (k >> 16) as u8, (k >> 8) as u8],
                    1024 + (k & 0xff) as u16 * 200,
                );
                (client, backends[k % 3], rnd(), rnd())
            })
            .collect();
        for r in 0..rounds {
            for &(c, b, cisn, sisn) in &conns {
                t += 100;
                let (o, i) = match r {
                    0 => (
                        mk(c, vip, cisn, None, true, &[]),
                        mk(c, b, cisn, None, true, &[]),
                    ),
                    1 => (
                        mk(vip, c, sisn, Some(cisn + 1), true, &[]),
                        mk(b, c, sisn, Some(cisn + 1), true, &[]),
                    ),
                    _ if r % 2 == 0 => (
                        mk(c, vip, cisn + 1 + r as u32, Some(sisn + 1), false, &payload),
                        mk(c, b, cisn + 1 + r as u32, Some(sisn + 1), false, &payload),
                    ),
                    _ => (
                        mk(vip, c, sisn + 1 + r as u32, Some(cisn + 1), false, &payload),
                        mk(b, c, sisn + 1 + r as u32, Some(cisn + 1), false, &payload),
                    ),
                };
                evs.push((Side::Outside, t, o));
                evs.push((Side::Inside, t + 50, i));
            }
        }
    }
    println!(
        "{} packets ({} flows, {} packets each way per flow, {} active at a time)",
        evs.len(),
        flows,
        rounds,
        active
    );
    if let Some(dir) = write {
        // The two taps as capture files, for `nf observe --outside DIR/outside.pcap --inside ...`.
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for (name, side) in [
            ("outside.pcap", Side::Outside),
            ("inside.pcap", Side::Inside),
        ] {
            let path = dir.join(name);
            let mut w = nf_drivers::io::pcap::PcapFileWriter::create(
                &path,
                65535,
                true,
                pcap_file::DataLink::ETHERNET,
            )
            .map_err(|e| e.to_string())?;
            for (s, ts, f) in evs.iter().filter(|e| e.0 == side) {
                let _ = s;
                w.write(nf_core::Timestamp(*ts), f)
                    .map_err(|e| e.to_string())?;
            }
            w.close().map_err(|e| e.to_string())?;
            println!("wrote {}", path.display());
        }
    }
    let mut best = 0f64;
    for run in 0..repeat.max(1) {
        let mut c = Correlator::new(Default::default());
        let mut out = Vec::with_capacity(flows * 2);
        let t0 = std::time::Instant::now();
        for (side, ts, f) in &evs {
            c.packet(*side, *ts, f, true, &mut out);
        }
        let dt = t0.elapsed().as_secs_f64();
        let mpps = evs.len() as f64 / dt / 1e6;
        best = best.max(mpps);
        let s = c.stats();
        println!(
            "run {}: {:.3} s, {:.2} M packets/s ({:.0} ns/packet); matched {} of {}",
            run + 1,
            dt,
            mpps,
            dt * 1e9 / evs.len() as f64,
            s.matched,
            flows
        );
    }
    println!("best {best:.2} M packets/s");
    Ok(())
}
