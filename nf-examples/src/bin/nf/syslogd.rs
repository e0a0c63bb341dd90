//! `nf syslogd` and `nf kmsg-forward`.

use crate::common::CodecArg;
use nf_drivers::driver::{Shutdown, StateDriver};
use nf_drivers::syslog::extract::{self, EXTRACTORS};
use nf_drivers::syslog::kmsg;
use nf_drivers::syslog::{Listen, SyslogConfig, SyslogDriver};
use nf_state::Codec;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// `nf syslogd`: a syslog server whose messages an extractor turns into state records, until
/// SIGINT/SIGTERM.
#[derive(clap::Args)]
pub struct SyslogdArgs {
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
    /// Codec of keys and values.
    #[arg(long, value_enum, default_value = "bincode")]
    codec: CodecArg,
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
    /// Serve Prometheus metrics at http://ADDRESS:PORT/metrics: the driver's counters and the
    /// server's (messages per transport, refusals, unparsed, store retries).
    #[arg(long, value_name = "ADDRESS:PORT")]
    metrics: Option<std::net::SocketAddr>,
    /// Allow the metrics endpoint on an address other than loopback.
    #[arg(long)]
    metrics_remote: bool,
}

/// `nf kmsg-forward`: relays new kernel log records (/dev/kmsg) to a syslog server over UDP, until
/// SIGINT/SIGTERM.
#[derive(clap::Args)]
pub struct KmsgForwardArgs {
    /// The server: udp://HOST:PORT.
    #[arg(long)]
    to: String,
    /// Only records containing this text.
    #[arg(long)]
    grep: Option<String>,
}

/// `nf bench syslog-udp`: a paced local sender of netfilter LOG lines against the syslog driver
/// (netfilter-log into mem:), at each rate; prints received, queue drops and kernel drops.
#[derive(clap::Args)]
pub struct BenchUdpArgs {
    /// Messages per second, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "100000,200000,300000,400000"
    )]
    rates: Vec<u64>,
    /// Seconds per rate.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))
}

/// Runs the syslog server until SIGINT/SIGTERM, then flushes and prints its counters.
pub fn run(o: SyslogdArgs) -> Result<(), String> {
    let idle_timeout = Duration::try_from_secs_f64(o.idle_timeout).map_err(|_| {
        format!(
            "--idle-timeout {} is not a number of seconds",
            o.idle_timeout
        )
    })?;
    let listen = o
        .listen
        .iter()
        .map(|l| l.parse::<Listen>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let extractor = extract::by_name(&o.extract, o.prefix.as_deref()).ok_or_else(|| {
        format!(
            "unknown extractor `{}` (known: {})",
            o.extract,
            EXTRACTORS.join(", ")
        )
    })?;
    let codec = Codec::from(o.codec);
    let allow = o
        .allow
        .iter()
        .map(|a| {
            a.parse::<nf_core::lpm::Prefix>()
                .map_err(|e| format!("--allow {a}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let rt = runtime()?;
    rt.block_on(async move {
        let store = nf_state::open(&o.store).await.map_err(|e| e.to_string())?;
        let cfg = SyslogConfig {
            listen,
            queue: o.queue,
            codec,
            origin: o.origin,
            allow,
            max_connections: o.max_connections,
            max_per_source: o.max_per_source,
            idle_timeout,
            ..Default::default()
        };
        let mut driver = SyslogDriver::bind(cfg, extractor)
            .await
            .map_err(|e| e.to_string())?;
        for l in driver.local_addrs() {
            println!("listening on {l}");
        }
        println!("extractor {} -> {}", o.extract, store.url());
        let counters = driver.counters();
        let stats = driver.stats();
        let st = stats.clone();
        let _metrics = crate::common::metrics_only(
            o.metrics,
            o.metrics_remote,
            vec![
                crate::common::driver_source("syslog", counters.clone()),
                Box::new(move |m: &mut nf_core::metrics::Metrics| {
                    let r = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
                    for (t, v) in [("udp", &st.udp), ("tcp", &st.tcp), ("unix", &st.unix)] {
                        m.counter(
                            "nf_syslog_messages",
                            "messages received, by transport",
                            &[("transport", t)],
                            r(v),
                        );
                    }
                    for (name, v, help) in [
                        ("connections", &st.connections, "TCP connections accepted"),
                        ("refused", &st.refused, "senders refused (not on the allow-list)"),
                        (
                            "per_source_refused",
                            &st.per_source_refused,
                            "TCP connections refused: their source held its share",
                        ),
                        ("idle_closed", &st.idle_closed, "TCP connections closed for silence"),
                        ("oversized", &st.oversized, "messages over the size limit"),
                        ("unparsed", &st.unparsed, "messages that are not syslog"),
                        ("ignored", &st.ignored, "messages the extractor did not want"),
                        (
                            "extract_errors",
                            &st.extract_errors,
                            "messages the extractor recognised but could not use",
                        ),
                        ("store_retries", &st.store_retries, "store writes retried"),
                    ] {
                        m.counter(&format!("nf_syslog_{name}"), help, &[], r(v));
                    }
                    if st.kernel_lag.count() > 0 {
                        crate::common::latency_gauges(
                            m,
                            "nf_syslog_kernel_lag",
                            "kernel records: time from the kernel's log call to the parser (over the run; the \
                             driver's store lag of their records runs from the same instant)",
                            &[],
                            &st.kernel_lag,
                        );
                    }
                }),
            ],
        )?;
        let ring = driver.unparsed();
        let (_trigger, shutdown) = Shutdown::on_signals().map_err(|e| e.to_string())?;
        if o.stats_every > 0 {
            let c = counters.clone();
            let mut sd = shutdown.clone();
            tokio::spawn(async move {
                let mut t = tokio::time::interval(Duration::from_secs(o.stats_every));
                t.tick().await;
                loop {
                    tokio::select! {
                        _ = sd.wait() => return,
                        _ = t.tick() => println!("{}", c.snapshot()),
                    }
                }
            });
        }
        let done = driver
            .run(store, shutdown)
            .await
            .map_err(|e| e.to_string())?;
        println!("{done}");
        let r = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        println!(
            "udp={} tcp={} unix={} connections={} refused={} per_source_refused={} idle_closed={} oversized={} unparsed={} ignored={} extract_errors={} store_retries={}",
            r(&stats.udp),
            r(&stats.tcp),
            r(&stats.unix),
            r(&stats.connections),
            r(&stats.refused),
            r(&stats.per_source_refused),
            r(&stats.idle_closed),
            r(&stats.oversized),
            r(&stats.unparsed),
            r(&stats.ignored),
            r(&stats.extract_errors),
            r(&stats.store_retries)
        );
        for u in ring.snapshot() {
            println!("unparsed: {}: {}", u.reason, u.line);
        }
        Ok(())
    })
}

/// Forwards new `/dev/kmsg` records to a syslog server until SIGINT/SIGTERM.
pub fn kmsg_forward(o: KmsgForwardArgs) -> Result<(), String> {
    let grep = o.grep.as_deref();
    let to = match o.to.parse::<Listen>().map_err(|e| e.to_string())? {
        Listen::Udp(a) => a,
        other => return Err(format!("kmsg-forward sends over UDP only, not {other}")),
    };
    let rt = runtime()?;
    let (trigger, shutdown) = rt
        .block_on(async { Shutdown::on_signals() })
        .map_err(|e| e.to_string())?;
    println!("forwarding /dev/kmsg to udp://{to}");
    let stats = kmsg::forward(to, grep, &shutdown).map_err(|e| e.to_string())?;
    drop(trigger);
    println!(
        "read={} sent={} overrun={}",
        stats.read, stats.sent, stats.overrun
    );
    Ok(())
}

/// `nf bench syslog-udp`: the UDP ingest path at paced rates.
pub fn bench_udp(o: BenchUdpArgs) -> Result<(), String> {
    let (rates, seconds) = (o.rates, o.seconds);
    let rt = runtime()?;
    println!("rate/s      sent   received  queue-drop  kernel-drop  loss%   records");
    for rate in rates {
        let (sent, done) = rt.block_on(async {
            let cfg = SyslogConfig {
                listen: vec![
                    "udp://127.0.0.1:0"
                        .parse()
                        .map_err(|e: nf_drivers::Error| e.to_string())?,
                ],
                ..Default::default()
            };
            let extractor = extract::by_name("netfilter-log", None).ok_or("no extractor")?;
            let mut driver = SyslogDriver::bind(cfg, extractor)
                .await
                .map_err(|e| e.to_string())?;
            let Some(Listen::Udp(addr)) = driver.local_addrs().first().cloned() else {
                return Err("no UDP address".to_string());
            };
            let store = nf_state::open("mem:").await.map_err(|e| e.to_string())?;
            let (stop, shutdown) = nf_drivers::driver::Shutdown::new();
            let task = tokio::spawn(async move { driver.run(store, shutdown).await });
            let total = (rate as f64 * seconds) as u64;
            let sent = tokio::task::spawn_blocking(move || send_paced(addr, rate, total))
                .await
                .map_err(|e| e.to_string())??;
            tokio::time::sleep(Duration::from_millis(500)).await;
            stop.trigger();
            let done = task
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((sent, done))
        })?;
        let kernel = sent.saturating_sub(done.seen + done.dropped);
        println!(
            "{rate:<9} {sent:>8} {:>10} {:>11} {:>12} {:>6.3} {:>9}",
            done.seen,
            done.dropped,
            kernel,
            100.0 * (sent - done.seen.min(sent)) as f64 / sent.max(1) as f64,
            done.emitted
        );
    }
    Ok(())
}

/// Sends `total` LOG lines to `addr` at `rate` per second (in 1 ms slices).
fn send_paced(addr: std::net::SocketAddr, rate: u64, total: u64) -> Result<u64, String> {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let t0 = std::time::Instant::now();
    let mut sent = 0u64;
    let mut line = String::with_capacity(400);
    while sent < total {
        let due = ((t0.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
        while sent < due {
            use std::fmt::Write;
            line.clear();
            let _ = write!(
                line,
                "<4>Nov 22 01:50:29 lb1 kernel: lb-new: IN=veth-c OUT=veth-b SRC=10.{}.{}.{} DST=10.1.0.{} LEN=60 TOS=0x00 PREC=0x00 TTL=63 ID=1 DF PROTO=TCP SPT={} DPT=80 WINDOW=64240 RES=0x00 SYN URGP=0",
                sent >> 24 & 0xff,
                sent >> 16 & 0xff,
                sent >> 8 & 0xff,
                sent % 3 + 2,
                sent & 0xff | 1024
            );
            if sock.send_to(line.as_bytes(), addr).is_ok() {
                sent += 1;
            }
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    Ok(sent)
}
