//! `nf`: the command-line tool of the NF SDK.
//!
//! - `nf run CONFIG [NAME=VALUE ...] [--shards N] [--stats]`: runs a configuration and prints every
//!   element's handlers at the end.
//! - `nf elements`: lists the element classes.
//! - `nf pcap gen --packets N --flows F --size 64|imix OUT`: writes benchmark traffic.
//! - `nf pcap info FILE`: counts a capture's packets.
//! - `nf pcap split --shards N IN 'OUT.{shard}.pcap'`: splits a capture by flow, one file per shard.
//! - `nf bench pipeline NAME|CONFIG [--memory] ...`: measures a pipeline on one core (or N shards).
//! - `nf lb CONFIG --role primary|minion|standalone [--store URL] [--node NAME]`: a stateful L4 load
//!   balancer; a primary replicates its flow mappings, a minion installs them; both beat hearts.
//! - `nf lab [--primaries ...] [--runs R]`: the failover lab in network namespaces (needs root).
//! - `nf demo`: the failover story in one process.
//! - `nf syslogd --listen URL... --extract NAME --store URL`: the syslog driver, until SIGINT/SIGTERM.
//! - `nf kmsg-forward --to udp://HOST:PORT [--grep TEXT]`: relays new kernel log records to a server.
//! - `nf observe --outside IFACE|PCAP --inside IFACE|PCAP --store URL [--vip IP:PORT]`: the
//!   traffic-observation driver.

#[path = "nf/demo.rs"]
mod demo;
#[path = "nf/flood.rs"]
mod flood;
#[path = "nf/io_bench.rs"]
mod io_bench;
#[path = "nf/lab_cmd.rs"]
mod lab_cmd;
#[path = "nf/lb.rs"]
mod lb;
#[path = "nf/observe.rs"]
mod observe;
#[path = "nf/syslogd.rs"]
mod syslogd;

use clap::{Parser, Subcommand};
use nf_core::traffic::{Protocols, SizeMix, TrafficConfig, TrafficGen};
use nf_core::{Config, Error, HandlerValue, Registry, Router, ShardedRouter, Timestamp};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "nf",
    version,
    about = "The NF SDK's command-line tool: run element graphs, generate traffic, benchmark"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// The middlebox-minion story in one process (no root, no server): a primary load balancer fails,
    /// a minion takes over with (Failover) and without (Fail) its replicated state; prints the table.
    Demo {
        /// TCP connections per scenario.
        #[arg(long, default_value_t = 6000)]
        connections: usize,
    },
    /// Run a configuration until its sources are exhausted, then print every element's handlers.
    Run {
        /// The configuration file (Click's language).
        config: PathBuf,
        /// `NAME=VALUE` settings for `$NAME` in the configuration.
        #[arg(value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// Run N copies of the graph on N threads, packets dispatched by flow hash.
        #[arg(long, default_value_t = 1)]
        shards: usize,
        /// Also print the run time, the packet rate and the buffer pool's counters.
        #[arg(long)]
        stats: bool,
        /// Print nothing but errors.
        #[arg(long, short)]
        quiet: bool,
    },
    /// List the element classes that configurations may use.
    Elements,
    /// Capture-file tools.
    Pcap {
        #[command(subcommand)]
        cmd: PcapCmd,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        cmd: BenchCmd,
    },
    /// A stateful L4 load balancer from a configuration with a `LoadBalancer` element: a primary
    /// replicates its flow mappings to a store (white-box driver), a minion installs them as they arrive
    /// and serves traffic at once; both report heartbeats (`nf state stats` shows them).
    Lb {
        /// The configuration file (e.g. nf-examples/configs/lb.click).
        config: PathBuf,
        /// `NAME=VALUE` settings for `$NAME` in the configuration.
        #[arg(value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// primary, minion or standalone.
        #[arg(long, default_value = "standalone")]
        role: String,
        /// The state store (primary and minion).
        #[arg(long)]
        store: Option<String>,
        /// This node's name (heartbeats, records' origin).
        #[arg(long, default_value = "lb")]
        node: String,
        /// The LoadBalancer element's name in the configuration.
        #[arg(long, default_value = "lb")]
        element: String,
        /// Minion: install only records whose origin is this node (repeat for several; default: any).
        /// Records from anyone else who can write to the store are skipped and counted.
        #[arg(long = "accept-origin", value_name = "NODE")]
        accept_origin: Vec<String>,
        /// Minion: also replicate the flows it creates itself (after a takeover), so that a recovered
        /// primary, restarted as a minion, can take them back.
        #[arg(long)]
        replicate: bool,
        /// A file holding the agreed hash key (32 hex digits): the key of Maglev's flow hash, which a
        /// primary and its minions (or the members of a pool) must share so that each picks the same
        /// backend for a flow. Read from a file so that it stays out of process lists and logs. Without
        /// it each process draws its own, and only the replicated state keeps flows on their backend.
        #[arg(long, value_name = "PATH")]
        hash_key_file: Option<PathBuf>,
        /// Print nothing at the end.
        #[arg(long, short)]
        quiet: bool,
    },
    /// The failover lab (needs root): a topology in network namespaces, a primary that fails and a
    /// minion that takes over, real TCP; writes the table (Markdown, JSON) and a plot (SVG).
    Lab {
        /// Primaries: whitebox, syslog, observe (comma-separated).
        #[arg(long, default_value = "whitebox,syslog,observe")]
        primaries: String,
        /// Workloads: web, long.
        #[arg(long, default_value = "web,long")]
        workloads: String,
        /// Scenarios: clean, copied, fail, failover.
        #[arg(long, default_value = "clean,copied,fail,failover")]
        scenarios: String,
        /// Runs of each combination.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Length of a WEB run, seconds.
        #[arg(long, default_value_t = 8.0)]
        web_seconds: f64,
        /// When the failure comes, seconds into the traffic.
        #[arg(long, default_value_t = 3.0)]
        fail_after: f64,
        /// Failures per run, every FAIL_AFTER seconds, flipping traffic to the minion and back to the
        /// recovered primary (restarted as a replicating minion); the white-box primary only.
        #[arg(long, default_value_t = 1)]
        failures: usize,
        /// Where the reports go.
        #[arg(long, default_value = "lab-results")]
        out: PathBuf,
        /// The reports' file name (NAME.md, NAME.json, NAME.svg).
        #[arg(long, default_value = "failover")]
        name: String,
    },
    /// A syslog server whose messages an extractor turns into state records, until SIGINT/SIGTERM.
    Syslogd {
        /// Where to listen: udp://HOST:PORT, tcp://HOST:PORT (RFC 6587 octet counting or LF framing),
        /// unix:///PATH (datagrams). Repeat for several.
        #[arg(long, required = true)]
        listen: Vec<String>,
        /// The extractor: netfilter-log or conntrack-events.
        #[arg(long)]
        extract: String,
        /// netfilter-log: keep only lines whose LOG prefix starts with this.
        #[arg(long)]
        prefix: Option<String>,
        /// The store (see `nf state --help`).
        #[arg(long)]
        store: String,
        /// The records' origin.
        #[arg(long, default_value = "syslog")]
        origin: String,
        /// Codec of keys and values: bincode or json.
        #[arg(long, default_value = "bincode")]
        codec: String,
        /// Messages queued between the sockets and the parser (beyond: datagrams dropped, counted).
        #[arg(long, default_value_t = 65536)]
        queue: usize,
        /// Print the counters every N seconds (0: only at the end).
        #[arg(long, default_value_t = 0)]
        stats_every: u64,
        /// Accept messages only from these senders (a prefix or an address; repeat for several; default:
        /// any). Others are refused and counted.
        #[arg(long, value_name = "PREFIX")]
        allow: Vec<String>,
        /// Most TCP senders at once.
        #[arg(long, default_value_t = 1024)]
        max_connections: usize,
        /// Most TCP connections from one address at once (more are closed at once and counted).
        #[arg(long, default_value_t = 64)]
        max_per_source: usize,
        /// Seconds a TCP connection may stay silent before it is closed (counted): idle senders cannot
        /// hold the slots.
        #[arg(long, default_value_t = 300.0)]
        idle_timeout: f64,
    },
    /// Infer a black box's per-flow state from its traffic on both sides: two capture files (read to
    /// the end, merged by time) or two interfaces (until SIGINT/SIGTERM).
    Observe {
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
        vip: Option<String>,
        /// Confidence a mapping needs to be emitted.
        #[arg(long, default_value_t = 0.9)]
        threshold: f64,
        /// Codec of keys and values: bincode or json.
        #[arg(long, default_value = "bincode")]
        codec: String,
        /// The records' origin.
        #[arg(long, default_value = "observe")]
        origin: String,
    },
    /// Relay new kernel log records (/dev/kmsg) to a syslog server over UDP, until SIGINT/SIGTERM.
    KmsgForward {
        /// The server: udp://HOST:PORT.
        #[arg(long)]
        to: String,
        /// Only records containing this text.
        #[arg(long)]
        grep: Option<String>,
    },
    /// Read, write and measure a state store.
    State {
        /// The store: mem:, file:PATH[?fsync=always|batch|never], redis://HOST:PORT/DB,
        /// redis+cluster://HOST:PORT,HOST:PORT.
        #[arg(long)]
        store: String,
        #[command(subcommand)]
        cmd: StateCmd,
    },
}

#[derive(Subcommand)]
enum StateCmd {
    /// Print the current state of a schema, one JSON record per line.
    Dump {
        /// flow-mapping, nat-binding, conntrack or backend-load.
        #[arg(long)]
        schema: String,
    },
    /// Print the store's counters: entries and last sequence number per schema.
    Stats,
    /// Write synthetic flow-mapping records (client i -> a backend), in batches.
    Load {
        /// Records to write.
        #[arg(long, default_value_t = 100_000)]
        records: u64,
        /// Records per apply.
        #[arg(long, default_value_t = 1000)]
        batch: u64,
        /// Print `ack SEQ` on standard output as each batch is acknowledged.
        #[arg(long)]
        print_acks: bool,
    },
    /// Measure replication latency: a Replicator writes flow-mapping updates at a fixed rate and a
    /// Follower on the same store installs them; prints the time from each change to its installation.
    Lag {
        /// Updates per second.
        #[arg(long, default_value_t = 100_000)]
        rate: u64,
        /// Seconds to run.
        #[arg(long, default_value_t = 3)]
        seconds: u64,
        /// Distinct flows the updates cycle over.
        #[arg(long, default_value_t = 10_000)]
        flows: u64,
    },
    /// Measure upserts per second into the store (flow-mapping, batched).
    Bench {
        /// Records to write.
        #[arg(long, default_value_t = 2_000_000)]
        records: u64,
        /// Records per apply.
        #[arg(long, default_value_t = 4096)]
        batch: u64,
        /// `bincode` or `json`.
        #[arg(long, default_value = "bincode")]
        codec: String,
        /// Distinct keys the upserts cycle over (default: every record a new key).
        #[arg(long)]
        keys: Option<u64>,
    },
}

#[derive(Subcommand)]
enum PcapCmd {
    /// Write synthetic TCP/UDP traffic (valid checksums, a SYN first per TCP flow) to a pcap file.
    Gen {
        /// Packets to write.
        #[arg(long, default_value_t = 1_000_000)]
        packets: u64,
        /// Flows.
        #[arg(long, default_value_t = 10_000)]
        flows: usize,
        /// Frame size: a number of bytes, or `imix`.
        #[arg(long, default_value = "64")]
        size: String,
        /// `mixed`, `tcp` or `udp`.
        #[arg(long, default_value = "mixed")]
        proto: String,
        /// Nanosecond timestamps.
        #[arg(long)]
        nano: bool,
        /// Seed of the packet order.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output file.
        out: PathBuf,
    },
    /// Count the packets and bytes of a capture file.
    Info {
        /// The capture.
        file: PathBuf,
    },
    /// Split a capture by flow into one file per shard, as a NIC's RSS spreads traffic over its receive
    /// queues (by the hash a sharded `FromPcap` steers by); `FromPcap(OUT)` then reads, in each shard,
    /// that shard's file.
    Split {
        /// Shards.
        #[arg(long, default_value_t = 2)]
        shards: usize,
        /// The capture (Ethernet frames).
        input: PathBuf,
        /// The output files' name, holding `{shard}` (e.g. `x.{shard}.pcap`).
        out: String,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Replay packets through a configuration and print Mpps and ns/packet.
    Pipeline {
        /// A named pipeline (`discard`, `classifier`, `conntrack`) or a configuration file whose source
        /// element is called `src`.
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
        /// called `lb`), replicating its state to this store while the pipeline runs (one shard).
        #[arg(long, value_name = "STORE")]
        whitebox: Option<String>,
        /// `NAME=VALUE` settings (e.g. `FILE=x.pcap`).
        #[arg(value_name = "NAME=VALUE")]
        params: Vec<String>,
    },
    /// Frames per second a receive path takes from an interface: FromDevice (AF_PACKET bursts) or
    /// smoltcp's RawSocket (needs root; send traffic to the interface from elsewhere).
    Rx {
        /// The interface.
        #[arg(long)]
        dev: String,
        /// Seconds to receive.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Use smoltcp's RawSocket instead of FromDevice.
        #[arg(long)]
        smoltcp: bool,
    },
    /// The observation correlator's packet rate on one core, over a synthetic DNAT trace in memory.
    Observe {
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
        write: Option<PathBuf>,
    },
    /// Hash flooding: ordinary clients against clients crafted to share a probe chain (as an attacker
    /// who reads the source computes it), through the graphs of LoadBalancer, ConnTrack and AnantaMux;
    /// prints crafted / ordinary time.
    Flood {
        /// Clients per capture, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "4000,16000")]
        clients: Vec<usize>,
        /// Tables attacked, comma-separated.
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "lb,conntrack,mux"
        )]
        targets: Vec<flood::Target>,
        /// What the attacker knows: old (the unkeyed hash of earlier builds), guess (this build's keyed
        /// hash, the key guessed), known (this process's key: an insider; only the probe bound helps).
        #[arg(long, value_enum, default_value = "guess")]
        aim: flood::Aim,
        /// Packets each client sends (SYN, ACK, data).
        #[arg(long, default_value_t = 32)]
        per_client: usize,
        /// Runs of each capture; the best is kept.
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        /// Keep the captures in DIR (to run them through another build with `nf run`).
        #[arg(long, value_name = "DIR")]
        write: Option<PathBuf>,
    },
    /// UDP syslog ingest: a paced local sender of netfilter LOG lines against the syslog driver
    /// (netfilter-log into mem:), at each rate; prints received, queue drops and kernel drops.
    SyslogUdp {
        /// Messages per second, comma-separated.
        #[arg(long, default_value = "100000,200000,300000,400000")]
        rates: String,
        /// Seconds per rate.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
    },
}

const PIPELINES: &[(&str, &str)] = &[
    ("discard", include_str!("../../configs/bench-discard.click")),
    (
        "classifier",
        include_str!("../../configs/bench-classifier.click"),
    ),
    (
        "conntrack",
        include_str!("../../configs/bench-conntrack.click"),
    ),
    ("lb", include_str!("../../configs/bench-lb.click")),
];

/// Reads the agreed hash key from `path` and makes it this process's (before any graph is built).
fn load_hash_key(path: Option<&std::path::Path>) -> Result<(), String> {
    let Some(path) = path else { return Ok(()) };
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let key =
        nf_core::hash::HashKey::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    nf_core::hash::set_agreed(key).map_err(|_| "the agreed hash key was already set".to_string())
}

fn registry() -> Registry {
    nf_drivers::registry()
}

fn parse_params(params: &[String]) -> Result<BTreeMap<String, String>, String> {
    let mut m = BTreeMap::new();
    for p in params {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| format!("`{p}` is not NAME=VALUE"))?;
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("`{k}` is not a variable name (letters, digits, _)"));
        }
        m.insert(k.to_string(), v.to_string());
    }
    Ok(m)
}

fn build(cfg: &Config, reg: &Registry, shards: usize) -> Result<Runner, Error> {
    if shards <= 1 {
        Ok(Runner::One(Box::new(Router::new(cfg.build(reg)?)?)))
    } else {
        Ok(Runner::Sharded(ShardedRouter::new(shards, |_| {
            Ok(cfg.build(reg)?)
        })?))
    }
}

enum Runner {
    One(Box<Router>),
    Sharded(ShardedRouter),
}

/// Stops `stop` on the first SIGINT or SIGTERM (from a helper thread running a small tokio runtime), so
/// that a run interrupted by the user still flushes its files and prints its counters.
fn stop_on_signal(stop: nf_core::StopHandle) {
    let spawned = std::thread::Builder::new()
        .name("nf-signals".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                #[cfg(unix)]
                {
                    use tokio::signal::unix::{SignalKind, signal};
                    let (Ok(mut int), Ok(mut term)) = (
                        signal(SignalKind::interrupt()),
                        signal(SignalKind::terminate()),
                    ) else {
                        return;
                    };
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                }
                #[cfg(not(unix))]
                let _ = tokio::signal::ctrl_c().await;
                eprintln!("signal received: stopping");
                stop.stop();
            });
        });
    if let Err(e) = spawned {
        eprintln!("warning: cannot watch for signals: {e}");
    }
}

impl Runner {
    fn stop_handle(&self) -> nf_core::StopHandle {
        match self {
            Runner::One(r) => r.stop_handle(),
            Runner::Sharded(s) => s.stop_handle(),
        }
    }

    fn run(&mut self) -> Result<(), Error> {
        match self {
            Runner::One(r) => r.run(),
            Runner::Sharded(s) => s.run(),
        }
    }
    fn handlers(&self) -> Vec<HandlerValue> {
        match self {
            Runner::One(r) => r.handlers(),
            Runner::Sharded(s) => s.handlers(),
        }
    }
}

const SOURCES: &[&str] = &["FromPcap", "Replay", "InfiniteSource", "RatedSource"];

fn source_packets(h: &[HandlerValue]) -> u64 {
    h.iter()
        .filter(|v| v.handler == "count" && SOURCES.contains(&v.class.as_str()))
        .filter_map(|v| v.value.parse::<u64>().ok())
        .sum()
}

fn print_handlers(h: &[HandlerValue]) {
    let width = h
        .iter()
        .map(|v| v.element.len() + v.handler.len() + 1)
        .max()
        .unwrap_or(0);
    for v in h {
        let name = format!("{}.{}", v.element, v.handler);
        if v.value.contains('\n') {
            println!("{name}:");
            for l in v.value.lines() {
                println!("    {l}");
            }
        } else {
            println!("{name:width$}  {}", v.value);
        }
    }
}

fn cmd_run(
    config: &Path,
    params: &[String],
    shards: usize,
    stats: bool,
    quiet: bool,
) -> Result<(), String> {
    let params = parse_params(params)?;
    let cfg = Config::from_file(config, &params).map_err(|e| e.to_string())?;
    let reg = registry();
    let mut r = build(&cfg, &reg, shards).map_err(|e| e.to_string())?;
    stop_on_signal(r.stop_handle());
    let t0 = Instant::now();
    let res = r.run();
    let dt = t0.elapsed();
    let h = r.handlers();
    if !quiet {
        print_handlers(&h);
    }
    if stats {
        let n = source_packets(&h);
        let secs = dt.as_secs_f64();
        eprintln!(
            "run: {:.3} s, {} packets, {:.2} Mpps, {:.1} ns/packet, {} shard(s)",
            secs,
            n,
            n as f64 / secs / 1e6,
            secs * 1e9 / n.max(1) as f64,
            shards.max(1)
        );
        let p = nf_core::pool::stats();
        eprintln!(
            "pool (main thread): allocated {} reused {} recycled {} freed {}",
            p.allocated, p.reused, p.recycled, p.freed
        );
    }
    res.map_err(|e| e.to_string())
}

fn cmd_elements() {
    let reg = registry();
    let w = reg.classes().map(|c| c.name.len()).max().unwrap_or(0);
    for c in reg.classes() {
        println!("{:w$}  {}", c.name, c.doc);
    }
}

fn parse_size(s: &str) -> Result<SizeMix, String> {
    match s {
        "imix" => Ok(SizeMix::Imix),
        n => match n.parse::<usize>() {
            Ok(v) if (54..=9000).contains(&v) => Ok(SizeMix::Fixed(v)),
            _ => Err(format!(
                "--size must be imix or a frame size from 54 to 9000, not `{n}`"
            )),
        },
    }
}

fn parse_proto(s: &str) -> Result<Protocols, String> {
    match s {
        "mixed" => Ok(Protocols::Mixed),
        "tcp" => Ok(Protocols::Tcp),
        "udp" => Ok(Protocols::Udp),
        o => Err(format!("--proto must be mixed, tcp or udp, not `{o}`")),
    }
}

fn cmd_pcap_gen(
    packets: u64,
    flows: usize,
    size: &str,
    proto: &str,
    nano: bool,
    seed: u64,
    out: &Path,
) -> Result<(), String> {
    if flows == 0 {
        return Err("--flows must be at least 1".into());
    }
    let cfg = TrafficConfig {
        flows,
        size: parse_size(size)?,
        protocols: parse_proto(proto)?,
        seed,
        bidirectional: true,
    };
    let mut g = TrafficGen::new(cfg);
    let mut w = nf_drivers::io::pcap::PcapFileWriter::create(
        out,
        65535,
        nano,
        pcap_file::DataLink::ETHERNET,
    )
    .map_err(|e| e.to_string())?;
    let t0 = Timestamp::from_parts(1_700_000_000, 0);
    let step = packets.max(1).to_string().len();
    let _ = step;
    for i in 0..packets {
        // One packet per microsecond of capture time.
        w.write(t0.add_nanos(i * 1000), g.next_frame())
            .map_err(|e| e.to_string())?;
        if packets >= 10_000_000 && i % 5_000_000 == 0 && i > 0 {
            eprintln!("  {i} packets written");
        }
    }
    w.close().map_err(|e| e.to_string())?;
    eprintln!(
        "wrote {packets} packets over {flows} flows to {}",
        out.display()
    );
    Ok(())
}

fn cmd_pcap_info(file: &Path) -> Result<(), String> {
    let f = nf_drivers::io::pcap::CaptureFile::open(file).map_err(|e| e.to_string())?;
    let (mut n, mut bytes) = (0u64, 0u64);
    let (mut first, mut last) = (None, Timestamp(0));
    for r in f.records() {
        let r = r.map_err(|e| e.to_string())?;
        n += 1;
        bytes += r.data.len() as u64;
        first.get_or_insert(r.timestamp);
        last = r.timestamp;
    }
    println!("file: {}", file.display());
    println!("format: {:?}, link: {:?}", f.format(), f.link());
    println!("packets: {n}");
    println!("bytes: {bytes}");
    if let Some(fst) = first {
        println!("duration: {:.6} s", last.since(fst) as f64 / 1e9);
    }
    Ok(())
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
    #[arg(long, default_value = "64")]
    size: String,
    /// Protocols (with --memory): `mixed`, `tcp` or `udp`.
    #[arg(long, default_value = "mixed")]
    proto: String,
    /// Requests only, no replies (with --memory): the traffic a load balancer's Mux sees.
    #[arg(long)]
    one_way: bool,
}

fn cmd_bench(
    pipeline: &str,
    memory: Option<MemoryTraffic>,
    shards: usize,
    repeat: usize,
    whitebox: Option<&str>,
    params: &[String],
) -> Result<(), String> {
    let params = parse_params(params)?;
    let wb_rt = match whitebox {
        Some(_) if shards > 1 => return Err("--whitebox runs one shard".into()),
        Some(_) => Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    let (name, text) = match PIPELINES.iter().find(|(n, _)| *n == pipeline) {
        Some((n, t)) => (n.to_string(), t.to_string()),
        None => {
            let t = std::fs::read_to_string(pipeline).map_err(|e| {
                format!("{pipeline}: {e} (named pipelines: discard, classifier, conntrack, lb)")
            })?;
            (pipeline.to_string(), t)
        }
    };
    let mut params = params;
    if memory.is_some() {
        params
            .entry("FILE".into())
            .or_insert_with(|| "unused".into());
    }
    let mut cfg = Config::parse(&name, &text, &params).map_err(|e| e.to_string())?;
    if let Some(m) = &memory {
        let l = match parse_size(&m.size)? {
            SizeMix::Imix => "imix".to_string(),
            SizeMix::Fixed(n) => n.to_string(),
        };
        let args = [
            format!("PACKETS {}", m.distinct.min(m.packets).max(1)),
            format!("FLOWS {}", m.flows),
            format!("LENGTH {l}"),
            format!("PROTO {}", m.proto),
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
    for i in 0..repeat.max(1) {
        let mut r = build(&cfg, &reg, shards).map_err(|e| e.to_string())?;
        let driver = match (&wb_rt, whitebox, &mut r) {
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
        if memory.is_some() {
            "in memory"
        } else {
            "from file"
        },
        shards.max(1),
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
    Err("--whitebox needs a ConnTrack called `ct` or a LoadBalancer called `lb`".into())
}

fn fm_record(i: u64, codec: nf_state::Codec) -> Result<nf_state::Record, String> {
    use nf_state::schemas::{FlowMapping, FlowMappingKey, FlowMappingValue, Proto};
    let key = FlowMappingKey {
        proto: Proto::Tcp,
        client_ip: std::net::IpAddr::from(
            (0x0a00_0000u32.wrapping_add((i / 60_000) as u32)).to_be_bytes(),
        ),
        client_port: (i % 60_000) as u16 + 1024,
    };
    let value = FlowMappingValue {
        backend_ip: std::net::IpAddr::from([10, 1, 0, (i % 5) as u8 + 1]),
        backend_port: 80,
    };
    nf_state::Record::upsert::<FlowMapping>(codec, "nf-load", &key, &value)
        .map_err(|e| e.to_string())
}

fn cmd_state(url: &str, cmd: StateCmd) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    rt.block_on(async move {
        let store = nf_state::open(url).await.map_err(|e| e.to_string())?;
        match cmd {
            StateCmd::Dump { schema } => {
                if !nf_state::schema::BUILT_IN.contains(&schema.as_str()) {
                    return Err(nf_state::Error::UnknownSchema(schema).to_string());
                }
                let snap = store.scan(&schema).await.map_err(|e| e.to_string())?;
                let mut lines: Vec<String> = Vec::with_capacity(snap.records.len());
                let mut bad = 0;
                for r in &snap.records {
                    match nf_state::json_line(r) {
                        Ok(l) => lines.push(l),
                        Err(_) => bad += 1,
                    }
                }
                lines.sort();
                use std::io::Write;
                let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                for l in lines {
                    writeln!(out, "{l}").map_err(|e| e.to_string())?;
                }
                if bad > 0 {
                    eprintln!(
                        "{bad} records did not decode (newer schema versions?) and were skipped"
                    );
                }
                Ok(())
            }
            StateCmd::Stats => {
                let st = store.stats().await.map_err(|e| e.to_string())?;
                println!("store: {}", store.url());
                for s in &st.schemas {
                    println!(
                        "schema {}: entries {} last_seq {} oldest_retained {}",
                        s.schema, s.entries, s.last_seq, s.oldest_retained
                    );
                }
                for (k, v) in &st.counters {
                    println!("{k}: {v}");
                }
                // Who is alive: nodes whose heartbeat is under 2 s old; a minion's lag is how far its
                // last applied `flow-mapping` record is behind the store's last one.
                let last = st
                    .schemas
                    .iter()
                    .find(|s| s.schema == "flow-mapping")
                    .map_or(0, |s| s.last_seq);
                let beats = store.scan("heartbeat").await.map_err(|e| e.to_string())?;
                let now = nf_core::Timestamp::now().0;
                for r in &beats.records {
                    if let Ok((k, Some(v))) = r.decode::<nf_state::schemas::Heartbeat>() {
                        let age_ms = now.saturating_sub(v.time_ns) / 1_000_000;
                        let alive = if age_ms < 2000 { "alive" } else { "DOWN" };
                        let lag = if v.role == "minion" {
                            format!(" lag {} records", last.saturating_sub(v.seq))
                        } else {
                            String::new()
                        };
                        println!(
                            "node {} ({}): {alive}, last beat {age_ms} ms ago, seq {}, entries {}{lag}",
                            k.node, v.role, v.seq, v.entries
                        );
                    }
                }
                Ok(())
            }
            StateCmd::Load {
                records,
                batch,
                print_acks,
            } => {
                let batch = batch.max(1);
                let mut i = 0;
                while i < records {
                    let n = batch.min(records - i);
                    let recs = (i..i + n)
                        .map(|j| fm_record(j, nf_state::Codec::Bincode))
                        .collect::<Result<Vec<_>, _>>()?;
                    let seqs = store.apply(recs).await.map_err(|e| e.to_string())?;
                    if print_acks
                        && let Some(last) = seqs.last() {
                            println!("ack {last}");
                        }
                    i += n;
                }
                Ok(())
            }
            StateCmd::Lag { rate, seconds, flows } => {
                use nf_state::replicate::{FollowerStats, Replicator, ReplicatorConfig, follow};
                use nf_state::schemas::{FlowMapping, FlowMappingKey, FlowMappingValue, Proto};
                use std::sync::atomic::Ordering;
                let stats = std::sync::Arc::new(FollowerStats::default());
                let (stop_tx, stop) = tokio::sync::watch::channel(false);
                let follower = tokio::spawn(follow::<FlowMapping>(store.clone(), stats.clone(), stop, |_| {}));
                let rep = Replicator::<FlowMapping>::start(store.clone(), ReplicatorConfig::default());
                let h = rep.handle();
                let per_tick = (rate / 1000).max(1);
                let mut tick = tokio::time::interval(std::time::Duration::from_millis(1));
                let total = rate * seconds;
                let mut sent = 0u64;
                while sent < total {
                    tick.tick().await;
                    for _ in 0..per_tick.min(total - sent) {
                        let i = sent % flows.max(1);
                        let key = FlowMappingKey {
                            proto: Proto::Tcp,
                            client_ip: std::net::IpAddr::from((0x0a00_0000u32 + (i / 60_000) as u32).to_be_bytes()),
                            client_port: (i % 60_000) as u16 + 1024,
                        };
                        let value = FlowMappingValue {
                            backend_ip: std::net::IpAddr::from([10, 1, 0, (sent % 5) as u8 + 1]),
                            backend_port: 80,
                        };
                        h.upsert(key, value);
                        sent += 1;
                    }
                }
                drop(h);
                let rs = rep.close().await;
                let last = store.scan("flow-mapping").await.map_err(|e| e.to_string())?.seq;
                for _ in 0..2000 {
                    if stats.last_seq.load(Ordering::Relaxed) >= last {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
                let _ = stop_tx.send(true);
                let _ = follower.await;
                let us = |ns: u64| ns as f64 / 1000.0;
                println!(
                    "{}: {sent} updates at {rate}/s; written {} records in {} batches ({} coalesced, {} dropped, {} retries)",
                    store.url(),
                    rs.written.load(Ordering::Relaxed),
                    rs.batches.load(Ordering::Relaxed),
                    rs.coalesced.load(Ordering::Relaxed),
                    rs.dropped.load(Ordering::Relaxed),
                    rs.retries.load(Ordering::Relaxed)
                );
                println!(
                    "change -> installed on the follower: p50 <= {:.0} us, p99 <= {:.0} us, max {:.0} us ({} installed)",
                    us(stats.latency.quantile_ns(0.5)),
                    us(stats.latency.quantile_ns(0.99)),
                    us(stats.latency.max_ns()),
                    stats.applied.load(Ordering::Relaxed)
                );
                println!("replicator lag (change -> store ack): p99 <= {:.0} us", us(rs.lag.quantile_ns(0.99)));
                Ok(())
            }
            StateCmd::Bench {
                records,
                batch,
                codec,
                keys,
            } => {
                let codec =
                    nf_state::Codec::from_name(&codec).ok_or("--codec must be bincode or json")?;
                let batch = batch.max(1);
                let keys = keys.unwrap_or(records).max(1);
                let all = (0..records)
                    .map(|j| fm_record(j % keys, codec))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut batches = Vec::new();
                let mut it = all.into_iter();
                loop {
                    let b: Vec<_> = it.by_ref().take(batch as usize).collect();
                    if b.is_empty() {
                        break;
                    }
                    batches.push(b);
                }
                let t0 = Instant::now();
                for b in batches {
                    store.apply(b).await.map_err(|e| e.to_string())?;
                }
                let dt = t0.elapsed().as_secs_f64();
                println!(
                    "{}: {records} upserts over {keys} keys in batches of {batch} ({}): {:.3} s, {:.0} records/s",
                    store.url(),
                    codec.name(),
                    dt,
                    records as f64 / dt
                );
                Ok(())
            }
        }
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Run {
            config,
            params,
            shards,
            stats,
            quiet,
        } => cmd_run(&config, &params, shards, stats, quiet),
        Cmd::Demo { connections } => demo::demo(connections),
        Cmd::Lab {
            primaries,
            workloads,
            scenarios,
            runs,
            web_seconds,
            fail_after,
            failures,
            out,
            name,
        } => lab_cmd::lab(lab_cmd::Options {
            primaries: &primaries,
            workloads: &workloads,
            scenarios: &scenarios,
            runs,
            web_seconds,
            fail_after,
            failures,
            out: &out,
            name: &name,
        }),
        Cmd::Elements => {
            cmd_elements();
            Ok(())
        }
        Cmd::State { store, cmd } => cmd_state(&store, cmd),
        Cmd::Syslogd {
            listen,
            extract,
            prefix,
            store,
            origin,
            codec,
            queue,
            stats_every,
            allow,
            max_connections,
            max_per_source,
            idle_timeout,
        } => syslogd::syslogd(syslogd::Options {
            listen,
            extract,
            prefix,
            store,
            origin,
            codec,
            queue,
            stats_every,
            allow,
            max_connections,
            max_per_source,
            idle_timeout: std::time::Duration::try_from_secs_f64(idle_timeout)
                .unwrap_or(std::time::Duration::from_secs(300)),
        }),
        Cmd::Lb {
            config,
            params,
            role,
            store,
            node,
            element,
            accept_origin,
            replicate,
            hash_key_file,
            quiet,
        } => load_hash_key(hash_key_file.as_deref())
            .and_then(|()| parse_params(&params))
            .and_then(|p| {
                lb::lb(
                    lb::Options {
                        config: &config,
                        params: &params,
                        role: &role,
                        store: store.as_deref(),
                        node: &node,
                        element: &element,
                        accept_origin: &accept_origin,
                        replicate,
                        quiet,
                    },
                    &registry(),
                    &p,
                )
            }),
        Cmd::Observe {
            outside,
            inside,
            store,
            vip,
            threshold,
            codec,
            origin,
        } => observe::observe(observe::Options {
            outside,
            inside,
            store,
            vip,
            threshold,
            codec,
            origin,
        }),
        Cmd::KmsgForward { to, grep } => syslogd::kmsg_forward(&to, grep.as_deref()),
        Cmd::Pcap {
            cmd:
                PcapCmd::Gen {
                    packets,
                    flows,
                    size,
                    proto,
                    nano,
                    seed,
                    out,
                },
        } => cmd_pcap_gen(packets, flows, &size, &proto, nano, seed, &out),
        Cmd::Pcap {
            cmd: PcapCmd::Info { file },
        } => cmd_pcap_info(&file),
        Cmd::Pcap {
            cmd: PcapCmd::Split { shards, input, out },
        } => nf_drivers::io::pcap::split_by_shard(&input, shards, &out)
            .map(|files| {
                for (path, n) in files {
                    println!("{}: {n} packets", path.display());
                }
            })
            .map_err(|e| e.to_string()),
        Cmd::Bench {
            cmd:
                BenchCmd::Pipeline {
                    pipeline,
                    memory,
                    traffic,
                    shards,
                    repeat,
                    whitebox,
                    params,
                },
        } => cmd_bench(
            &pipeline,
            memory.then_some(traffic),
            shards,
            repeat,
            whitebox.as_deref(),
            &params,
        ),
        Cmd::Bench {
            cmd:
                BenchCmd::Rx {
                    dev,
                    seconds,
                    smoltcp,
                },
        } => io_bench::bench_rx(&dev, seconds, smoltcp, &registry()),
        Cmd::Bench {
            cmd:
                BenchCmd::Observe {
                    flows,
                    per_flow,
                    active,
                    repeat,
                    write,
                },
        } => observe::bench(flows, per_flow, active, repeat, write.as_deref()),
        Cmd::Bench {
            cmd:
                BenchCmd::Flood {
                    clients,
                    targets,
                    aim,
                    per_client,
                    repeat,
                    write,
                },
        } => flood::run(&flood::Options {
            clients,
            targets,
            aim,
            per_client: per_client.max(2),
            repeat,
            write,
        }),
        Cmd::Bench {
            cmd: BenchCmd::SyslogUdp { rates, seconds },
        } => syslogd::bench_udp(&rates, seconds),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
