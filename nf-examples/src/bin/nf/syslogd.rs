//! `nf syslogd` and `nf kmsg-forward`.

use nf_drivers::driver::{Shutdown, StateDriver};
use nf_drivers::syslog::extract::{self, EXTRACTORS};
use nf_drivers::syslog::kmsg;
use nf_drivers::syslog::{Listen, SyslogConfig, SyslogDriver};
use nf_state::Codec;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Options of `nf syslogd`.
pub struct Options {
    pub listen: Vec<String>,
    pub extract: String,
    pub prefix: Option<String>,
    pub store: String,
    pub origin: String,
    pub codec: String,
    pub queue: usize,
    pub stats_every: u64,
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))
}

/// Runs the syslog server until SIGINT/SIGTERM, then flushes and prints its counters.
pub fn syslogd(o: Options) -> Result<(), String> {
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
    let codec = match o.codec.as_str() {
        "bincode" => Codec::Bincode,
        "json" => Codec::Json,
        c => return Err(format!("unknown codec `{c}` (bincode, json)")),
    };
    let rt = runtime()?;
    rt.block_on(async move {
        let store = nf_state::open(&o.store).await.map_err(|e| e.to_string())?;
        let cfg = SyslogConfig {
            listen,
            queue: o.queue,
            codec,
            origin: o.origin,
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
            "udp={} tcp={} unix={} connections={} oversized={} unparsed={} ignored={} extract_errors={} store_retries={}",
            r(&stats.udp),
            r(&stats.tcp),
            r(&stats.unix),
            r(&stats.connections),
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
pub fn kmsg_forward(to: &str, grep: Option<&str>) -> Result<(), String> {
    let to = match to.parse::<Listen>().map_err(|e| e.to_string())? {
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
