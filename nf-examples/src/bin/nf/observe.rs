//! `nf observe`: the traffic-observation driver.

use nf_drivers::driver::{Shutdown, StateDriver};
use nf_drivers::observe::{ObserveConfig, ObserveDriver, ObserveDriverConfig, Tap};
use nf_state::Codec;

/// Options of `nf observe`.
pub struct Options {
    pub outside: String,
    pub inside: String,
    pub store: String,
    pub vip: Option<String>,
    pub threshold: f64,
    pub codec: String,
    pub origin: String,
}

/// Runs the observation driver: on two capture files to their end, on two interfaces until SIGINT or
/// SIGTERM; then prints the counters.
pub fn observe(o: Options) -> Result<(), String> {
    let outside: Tap = o.outside.parse().map_err(|e: nf_drivers::Error| e.to_string())?;
    let inside: Tap = o.inside.parse().map_err(|e: nf_drivers::Error| e.to_string())?;
    let vip = o
        .vip
        .as_deref()
        .map(|v| {
            v.parse::<std::net::SocketAddr>()
                .map_err(|_| format!("--vip `{v}`: expected IP:PORT"))
        })
        .transpose()?;
    if !(0.0..1.0).contains(&o.threshold) {
        return Err(format!("--threshold {} must be in [0, 1)", o.threshold));
    }
    let codec = match o.codec.as_str() {
        "bincode" => Codec::Bincode,
        "json" => Codec::Json,
        c => return Err(format!("unknown codec `{c}` (bincode, json)")),
    };
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
            "{:.2} s, {:.2} M packets/s; link latency (first inside packet to mapping) p50 {} us, p99 {} us, max {} us",
            dt,
            pkts as f64 / dt.max(1e-9) / 1e6,
            lat.quantile_ns(0.5) / 1000,
            lat.quantile_ns(0.99) / 1000,
            lat.max_ns() / 1000
        );
        Ok(())
    })
}
