//! `nf bench`: the benchmarks (pipelines, receive paths, the observation correlator, hash flooding,
//! syslog ingest).

use crate::common::{Runner, parse_params, registry, source_packets, warn_unused};
use crate::pcap::{ProtoArg, parse_size};
use clap::Subcommand;
use nf_core::traffic::SizeMix;
use nf_core::{Config, Router};
use std::time::Instant;

/// Benchmarks.
#[derive(Subcommand)]
pub enum BenchCmd {
    /// Replay packets through a configuration and print Mpps and ns/packet.
    Pipeline(PipelineArgs),
    /// Frames per second a receive path takes from an interface: FromDevice (AF_PACKET bursts) or
    /// smoltcp's RawSocket (needs root; send traffic to the interface from elsewhere).
    Rx(crate::io_bench::RxArgs),
    /// The observation correlator's packet rate on one core, over a synthetic DNAT trace in memory.
    Observe(crate::observe::BenchObserveArgs),
    /// Hash flooding: ordinary clients against clients crafted to share a probe chain (as an attacker
    /// who reads the source computes it), through the graphs of LoadBalancer, ConnTrack and AnantaMux;
    /// prints crafted / ordinary time.
    Flood(crate::flood::FloodArgs),
    /// UDP syslog ingest: a paced local sender of netfilter LOG lines against the syslog driver
    /// (netfilter-log into mem:), at each rate; prints received, queue drops and kernel drops.
    SyslogUdp(crate::syslogd::BenchUdpArgs),
}

/// Runs `nf bench`.
pub fn run(cmd: BenchCmd) -> Result<(), String> {
    match cmd {
        BenchCmd::Pipeline(o) => pipeline(o),
        BenchCmd::Rx(o) => crate::io_bench::bench_rx(o, &registry()),
        BenchCmd::Observe(o) => crate::observe::bench(o),
        BenchCmd::Flood(o) => crate::flood::run(&o),
        BenchCmd::SyslogUdp(o) => crate::syslogd::bench_udp(o),
    }
}

/// `nf bench pipeline`.
#[derive(clap::Args)]
pub struct PipelineArgs {
    /// A named pipeline (`discard`, `classifier`, `conntrack`, `lb`, `nat`, `lb-mirror`,
    /// `nat-mirror`) or a configuration file whose source element is called `src`.
    pipeline: String,
    /// Replay frames held in memory instead of reading `FILE` (separates processing from I/O).
    #[arg(long)]
    memory: bool,
    /// What to replay with --memory.
    #[command(flatten)]
    traffic: MemoryTraffic,
    /// Shards (worker threads).
    #[arg(long, default_value_t = 1)]
    shards: usize,
    /// Runs; the best and the median are reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Attach the white-box driver to the connection tracker called `ct` (or the load balancer
    /// called `lb`, or the NAT called `rw`), replicating its state to this store while the pipeline
    /// runs (one shard).
    #[arg(long, value_name = "STORE")]
    whitebox: Option<String>,
    /// `NAME=VALUE` settings (e.g. `FILE=x.pcap`).
    #[arg(value_name = "NAME=VALUE")]
    params: Vec<String>,
}

/// What `nf bench pipeline --memory` replays.
#[derive(clap::Args)]
struct MemoryTraffic {
    /// Packets to replay (with --memory).
    #[arg(long, default_value_t = 10_000_000)]
    packets: u64,
    /// Distinct frames held in memory (with --memory).
    #[arg(long, default_value_t = 1_000_000)]
    distinct: u64,
    /// Flows (with --memory).
    #[arg(long, default_value_t = 10_000)]
    flows: usize,
    /// Frame size (with --memory): bytes or `imix`.
    #[arg(long, default_value = "64", value_parser = parse_size)]
    size: SizeMix,
    /// Protocols (with --memory).
    #[arg(long, value_enum, default_value = "mixed")]
    proto: ProtoArg,
    /// Requests only, no replies (with --memory): the traffic a load balancer's Mux sees.
    #[arg(long)]
    one_way: bool,
}

/// The named pipelines of `nf bench pipeline`.
const PIPELINES: &[(&str, &str)] = &[
    (
        "discard",
        include_str!("../../../configs/bench-discard.click"),
    ),
    (
        "classifier",
        include_str!("../../../configs/bench-classifier.click"),
    ),
    (
        "conntrack",
        include_str!("../../../configs/bench-conntrack.click"),
    ),
    ("lb", include_str!("../../../configs/bench-lb.click")),
    ("nat", include_str!("../../../configs/bench-nat.click")),
    (
        "lb-mirror",
        include_str!("../../../configs/bench-lb-mirror.click"),
    ),
    (
        "nat-mirror",
        include_str!("../../../configs/bench-nat-mirror.click"),
    ),
];

fn pipeline(o: PipelineArgs) -> Result<(), String> {
    let mut params = parse_params(&o.params)?;
    let wb_rt = match &o.whitebox {
        Some(_) if o.shards > 1 => return Err("--whitebox runs one shard".into()),
        Some(_) => Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    let (name, text) = match PIPELINES.iter().find(|(n, _)| *n == o.pipeline) {
        Some((n, t)) => (n.to_string(), t.to_string()),
        None => {
            let t = std::fs::read_to_string(&o.pipeline).map_err(|e| {
                format!(
                    "{}: {e} (named pipelines: discard, classifier, conntrack, lb, nat, lb-mirror, nat-mirror)",
                    o.pipeline
                )
            })?;
            (o.pipeline.clone(), t)
        }
    };
    if o.memory {
        params
            .entry("FILE".into())
            .or_insert_with(|| "unused".into());
    }
    let mut cfg = Config::parse(&name, &text, &params).map_err(|e| e.to_string())?;
    if !o.memory {
        warn_unused(&cfg, &params);
    }
    if o.memory {
        let m = &o.traffic;
        let l = match m.size {
            SizeMix::Imix => "imix".to_string(),
            SizeMix::Fixed(n) => n.to_string(),
        };
        let args = [
            format!("PACKETS {}", m.distinct.min(m.packets).max(1)),
            format!("FLOWS {}", m.flows),
            format!("LENGTH {l}"),
            format!("PROTO {}", m.proto.name()),
            format!("REPLIES {}", !m.one_way),
            format!("LIMIT {}", m.packets),
            "BURST 64".to_string(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        if !cfg.replace_element("src", "Replay", &args) {
            return Err("the pipeline has no element called `src` to replace".into());
        }
    }
    let reg = registry();
    let mut results = Vec::new();
    for i in 0..o.repeat.max(1) {
        let mut r = Runner::build(&cfg, &reg, o.shards).map_err(|e| e.to_string())?;
        let driver = match (&wb_rt, &o.whitebox, &mut r) {
            (Some(rt), Some(url), Runner::One(router)) => Some(start_whitebox(rt, url, router)?),
            _ => None,
        };
        let t0 = Instant::now();
        r.run().map_err(|e| e.to_string())?;
        let dt = t0.elapsed().as_secs_f64();
        if let (Some(rt), Some((stop, task))) = (&wb_rt, driver) {
            stop.trigger();
            let done = rt
                .block_on(task)
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            println!("whitebox: {done}");
        }
        let n = source_packets(&r.handlers());
        let mpps = n as f64 / dt / 1e6;
        println!(
            "run {}: {n} packets in {:.3} s: {:.2} Mpps, {:.2} ns/packet",
            i + 1,
            dt,
            mpps,
            dt * 1e9 / n.max(1) as f64
        );
        results.push(mpps);
    }
    results.sort_by(|a, b| b.total_cmp(a));
    let median = results[results.len() / 2];
    println!(
        "{name} ({} , {} shard(s)): best {:.2} Mpps ({:.2} ns/packet), median {:.2} Mpps",
        if o.memory { "in memory" } else { "from file" },
        o.shards.max(1),
        results[0],
        1e3 / results[0],
        median
    );
    Ok(())
}

type WhiteBoxTask =
    tokio::task::JoinHandle<Result<nf_drivers::driver::CounterSnapshot, nf_drivers::Error>>;

/// Attaches a white-box driver to the router's `ct` connection tracker (schema `conntrack`) or `lb`
/// load balancer (schema `flow-mapping`) and starts it on `rt`.
fn start_whitebox(
    rt: &tokio::runtime::Runtime,
    url: &str,
    router: &mut Router,
) -> Result<(nf_drivers::driver::ShutdownTrigger, WhiteBoxTask), String> {
    use nf_drivers::driver::{Shutdown, StateDriver};
    use nf_drivers::whitebox::WhiteBox;
    let store = rt
        .block_on(nf_state::open(url))
        .map_err(|e| e.to_string())?;
    let (stop, shutdown) = Shutdown::new();
    if let Some(ct) = router.element_by_name_mut::<nf_core::elements::tcpudp::ConnTrack>("ct") {
        let mut driver = WhiteBox::<nf_state::schemas::Conntrack>::new(Default::default());
        nf_core::state::Stateful::table_mut(ct).set_sink(driver.conntrack_sink());
        let task = rt.spawn(async move { driver.run(store, shutdown).await });
        return Ok((stop, task));
    }
    if let Some(lb) = router.element_by_name_mut::<nf_core::elements::lb::LoadBalancer>("lb") {
        let mut driver = WhiteBox::<nf_state::schemas::FlowMapping>::new(Default::default());
        nf_core::state::Stateful::table_mut(lb).set_sink(driver.lb_sink());
        let task = rt.spawn(async move { driver.run(store, shutdown).await });
        return Ok((stop, task));
    }
    if let Some(rw) = router.element_by_name_mut::<nf_core::elements::nat::IPRewriter>("rw") {
        let mut driver = WhiteBox::<nf_state::schemas::NatBinding>::new(Default::default());
        nf_core::state::Stateful::table_mut(rw)
            .set_sink(driver.sink(nf_drivers::adapter::nat_change));
        let task = rt.spawn(async move { driver.run(store, shutdown).await });
        return Ok((stop, task));
    }
    Err(
        "--whitebox needs a ConnTrack called `ct`, a LoadBalancer called `lb` or an IPRewriter called `rw`"
            .into(),
    )
}
