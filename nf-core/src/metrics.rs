//! A Prometheus endpoint for a running router (feature `metrics`): `GET /metrics` answers in the text
//! exposition format (OpenMetrics text 1.0, encoded by the `prometheus-client` crate, served by
//! `tiny_http`).
//!
//! What a scrape shows:
//! - every element's numeric read handlers, twice: in one family `nf_handler{element, class, handler}`
//!   (every value, typed gauge: the form a generic dashboard lists), and in a family per class and
//!   handler, `nf_<class>_<handler>{element}`, whose HELP is the handler's documentation and whose TYPE
//!   is the handler's [`HandlerKind`] (counters end in `_total`): the form to
//!   take `rate()` of. A sharded run's values are summed over the shards, as
//!   [`ShardedRouter::handlers`](crate::ShardedRouter::handlers) sums them;
//! - per shard: packets and batches that entered the graph (`nf_shard_packets_total`,
//!   `nf_shard_batch_packets` as a histogram of batch sizes), rounds, the buffer pool's use;
//! - hot reconfigurations and the control server's counters;
//! - whatever the program adds through [`MetricsServer::start`]'s sources (a store's replication lag,
//!   a driver's counters), gathered at each scrape.
//!
//! The router's figures are read on its own thread between two rounds, through the control server's
//! in-process [`ControlHandle`] (no lock on the packet path; a scrape waits at most the control
//! server's command timeout). A scrape of a router that does not answer shows `nf_router_up 0`.
//!
//! ```
//! use nf_core::control::{ControlConfig, ControlServer};
//! use nf_core::metrics::{Metrics, MetricsServer};
//! let mut router = nf_core::testing::router_for(
//!     "InfiniteSource(LIMIT 1000, STOP true) -> c :: Counter -> Discard;").unwrap();
//! let control = ControlServer::start(&mut router, &[], ControlConfig::default()).unwrap();
//! let server = MetricsServer::start(
//!     "127.0.0.1:0".parse().unwrap(),
//!     Some(control.handle()),
//!     vec![Box::new(|m: &mut Metrics| m.gauge("my_queue_depth", "items waiting", &[], 3.0))],
//!     false,
//! ).unwrap();
//! let runner = std::thread::spawn(move || { router.run().unwrap(); router });
//! let router = runner.join().unwrap();
//! // The router has stopped: a scrape still answers, with what the program added and `nf_router_up 0`.
//! let text = nf_core::metrics::render(None, &[]);
//! assert!(text.ends_with("# EOF\n"));
//! # let _ = (router, server);
//! ```

use crate::control::{ControlHandle, ShardMetrics};
use crate::element::HandlerKind;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Labels of one sample: (name, value) pairs.
pub type Labels = Vec<(String, String)>;

/// A histogram's sample: labels, per-bucket counts with their upper bounds, sum, count.
type HistogramSample = (Labels, Vec<(f64, u64)>, f64, u64);

/// What a family's samples are.
#[derive(Clone, Debug, PartialEq)]
enum Values {
    Counter(Vec<(Labels, f64)>),
    Gauge(Vec<(Labels, f64)>),
    Histogram(Vec<HistogramSample>),
}

#[derive(Clone, Debug, PartialEq)]
struct Family {
    name: String,
    help: String,
    values: Values,
}

/// The metrics gathered for one scrape: families of counters, gauges and histograms, in the order they
/// were first named. A name used again with another type, or a name that is not a valid metric name,
/// is skipped (counted in `nf_metrics_skipped_total`), never a broken exposition.
#[derive(Debug, Default)]
pub struct Metrics {
    families: Vec<Family>,
    index: HashMap<String, usize>,
    skipped: u64,
}

fn labels(l: &[(&str, &str)]) -> Labels {
    l.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// True for a valid metric (or label) name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn valid_name(n: &str) -> bool {
    let mut c = n.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_' || f == ':')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
}

/// `s` as a metric name part: lower case, anything else than a letter or digit made `_`; a word that
/// names a metric type (`counter`, `gauge`, `histogram`, `summary`, `untyped`, `info`) takes an `s`, so
/// that the class `Counter`'s families (`nf_counters_count_total`) do not read as a type in the name.
pub fn name_part(s: &str) -> String {
    let mut p: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if matches!(
        p.as_str(),
        "counter" | "gauge" | "histogram" | "summary" | "untyped" | "info"
    ) {
        p.push('s');
    }
    p
}

impl Metrics {
    fn family(&mut self, name: &str, help: &str, empty: Values) -> Option<&mut Values> {
        if !valid_name(name) {
            self.skipped += 1;
            return None;
        }
        let i = match self.index.get(name) {
            Some(&i) => i,
            None => {
                self.families.push(Family {
                    name: name.to_string(),
                    help: help.to_string(),
                    values: empty.clone(),
                });
                self.index.insert(name.to_string(), self.families.len() - 1);
                self.families.len() - 1
            }
        };
        let v = &mut self.families[i].values;
        if std::mem::discriminant(v) != std::mem::discriminant(&empty) {
            self.skipped += 1;
            return None;
        }
        Some(v)
    }

    /// A counter's sample (`name` without `_total`: the encoder adds it).
    pub fn counter(&mut self, name: &str, help: &str, l: &[(&str, &str)], value: f64) {
        if let Some(Values::Counter(s)) = self.family(name, help, Values::Counter(Vec::new())) {
            s.push((labels(l), value));
        }
    }

    /// A gauge's sample.
    pub fn gauge(&mut self, name: &str, help: &str, l: &[(&str, &str)], value: f64) {
        if let Some(Values::Gauge(s)) = self.family(name, help, Values::Gauge(Vec::new())) {
            s.push((labels(l), value));
        }
    }

    /// A histogram's sample: `buckets` are (upper bound, observations in this bucket alone), the last
    /// bound `f64::MAX` for `+Inf`.
    pub fn histogram(
        &mut self,
        name: &str,
        help: &str,
        l: &[(&str, &str)],
        buckets: Vec<(f64, u64)>,
        sum: f64,
        count: u64,
    ) {
        if let Some(Values::Histogram(s)) = self.family(name, help, Values::Histogram(Vec::new())) {
            s.push((labels(l), buckets, sum, count));
        }
    }

    /// Adds a router's figures (every shard's, as [`ControlHandle::metrics`] returns them).
    pub fn add_router(&mut self, shards: &[ShardMetrics]) {
        // Handlers: summed over the shards, by element and handler, in the graph's order.
        type Key = (String, &'static str, Option<String>);
        let mut order: Vec<Key> = Vec::new();
        let mut sums: HashMap<Key, (f64, &crate::router::HandlerSample)> = HashMap::new();
        for sh in shards {
            for h in &sh.handlers {
                let k = (h.element.clone(), h.handler, h.key.clone());
                match sums.get_mut(&k) {
                    Some(v) => v.0 += h.value,
                    None => {
                        order.push(k.clone());
                        sums.insert(k, (h.value, h));
                    }
                }
            }
        }
        for k in &order {
            let (v, h) = sums[k];
            let mut l = vec![
                ("element", h.element.as_str()),
                ("class", h.class),
                ("handler", h.handler),
            ];
            if let Some(key) = &h.key {
                l.push(("key", key));
            }
            self.gauge(
                "nf_handler",
                "every numeric read handler of every element (the value READ returns; a value per key for handlers that give one)",
                &l,
                v,
            );
        }
        for k in &order {
            let (v, h) = sums[k];
            let name = format!("nf_{}_{}", name_part(h.class), name_part(h.handler));
            let mut l = vec![("element", h.element.as_str())];
            if let Some(key) = &h.key {
                l.push(("key", key));
            }
            match h.kind {
                HandlerKind::Counter => self.counter(&name, h.doc, &l, v),
                _ => self.gauge(&name, h.doc, &l, v),
            }
        }
        for sh in shards {
            let s = sh.shard.to_string();
            let l = [("shard", s.as_str())];
            let r = &sh.run;
            self.counter(
                "nf_shard_packets",
                "packets that entered the shard's graph",
                &l,
                r.packets as f64,
            );
            self.counter(
                "nf_shard_batches",
                "batches they came in",
                &l,
                r.batches as f64,
            );
            let mut buckets: Vec<(f64, u64)> = r
                .batch_sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| ((1u64 << i) as f64, n))
                .collect();
            if let Some(last) = buckets.last_mut() {
                last.0 = f64::MAX;
            }
            self.histogram(
                "nf_shard_batch_packets",
                "packets per batch entering the shard's graph",
                &l,
                buckets,
                r.packets as f64,
                r.batches,
            );
            self.counter(
                "nf_shard_rounds",
                "scheduling rounds run",
                &l,
                r.rounds as f64,
            );
            let p = &sh.pool;
            for (what, n, help) in [
                (
                    "allocated",
                    p.allocated,
                    "packet buffers allocated (the pool was empty)",
                ),
                ("reused", p.reused, "packet buffers taken from the pool"),
                (
                    "recycled",
                    p.recycled,
                    "packet buffers given back to the pool",
                ),
                ("freed", p.freed, "packet buffers freed (the pool was full)"),
            ] {
                self.counter(&format!("nf_pool_{what}"), help, &l, n as f64);
            }
            self.gauge(
                "nf_pool_buffers",
                "packet buffers waiting in the shard's pool",
                &l,
                sh.pooled as f64,
            );
            self.counter(
                "nf_hot_swaps",
                "hot reconfigurations made",
                &l,
                sh.swaps.0 as f64,
            );
            self.gauge(
                "nf_hot_swap_pause_seconds",
                "how long the last hot reconfiguration kept the router from its rounds",
                &l,
                sh.swaps.1 as f64 / 1e9,
            );
        }
    }

    /// Adds a control server's counters.
    pub fn add_control(&mut self, s: &crate::control::ControlStats) {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
        for (what, v, help) in [
            (
                "connections",
                g(&s.connections),
                "control connections accepted",
            ),
            (
                "refused",
                g(&s.refused),
                "control connections refused (too many at once)",
            ),
            ("commands", g(&s.commands), "control commands answered"),
            (
                "errors",
                g(&s.errors),
                "control commands answered with an error",
            ),
            (
                "timeouts",
                g(&s.timeouts),
                "control commands the router did not answer in time",
            ),
            (
                "oversized",
                g(&s.oversized),
                "control connections closed for a line or data over the limits",
            ),
            (
                "idle_closed",
                g(&s.idle_closed),
                "control connections closed for silence",
            ),
        ] {
            self.counter(&format!("nf_control_{what}"), help, &[], v);
        }
    }
}

#[derive(Debug)]
struct Snapshot(Vec<Family>);

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        for f in &self.0 {
            match &f.values {
                Values::Counter(s) => {
                    let mut m =
                        encoder.encode_descriptor(&f.name, &f.help, None, MetricType::Counter)?;
                    for (l, v) in s {
                        ConstCounter::new(*v).encode(m.encode_family(l)?)?;
                    }
                }
                Values::Gauge(s) => {
                    let mut m =
                        encoder.encode_descriptor(&f.name, &f.help, None, MetricType::Gauge)?;
                    for (l, v) in s {
                        ConstGauge::new(*v).encode(m.encode_family(l)?)?;
                    }
                }
                Values::Histogram(s) => {
                    let mut m =
                        encoder.encode_descriptor(&f.name, &f.help, None, MetricType::Histogram)?;
                    for (l, b, sum, count) in s {
                        m.encode_family(l)?
                            .encode_histogram::<NoLabelSet>(*sum, *count, b, None)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// A source of metrics the program adds (a store's, a driver's), called at every scrape.
pub type Source = Box<dyn Fn(&mut Metrics) + Send + Sync>;

/// One scrape's text: the router's figures through `control` (if any), then every source's.
pub fn render(control: Option<&ControlHandle>, sources: &[Source]) -> String {
    let mut m = Metrics::default();
    if let Some(c) = control {
        match c.metrics() {
            Ok(shards) => {
                m.gauge(
                    "nf_router_up",
                    "1 if the router answered this scrape",
                    &[],
                    1.0,
                );
                m.add_router(&shards);
            }
            Err(_) => m.gauge(
                "nf_router_up",
                "1 if the router answered this scrape",
                &[],
                0.0,
            ),
        }
        m.add_control(&c.stats());
    }
    for s in sources {
        s(&mut m);
    }
    let skipped = m.skipped as f64;
    m.counter(
        "nf_metrics_skipped",
        "samples left out of this scrape (an invalid name, or a name used with two types)",
        &[],
        skipped,
    );
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(Snapshot(m.families)));
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
        out = "# EOF\n".into();
    }
    out
}

/// The classic Prometheus text format (version 0.0.4, what `promtool check metrics` reads and older
/// scrapers ask for) from the OpenMetrics text [`render`] makes: a counter family's HELP and TYPE lines
/// name its samples (`x_total`), and the `# EOF` and `# UNIT` lines go. Samples are unchanged.
pub fn to_classic(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for l in openmetrics.lines() {
        if l == "# EOF" || l.starts_with("# UNIT ") {
            continue;
        }
        let meta = l
            .strip_prefix("# HELP ")
            .map(|r| ("# HELP ", r))
            .or_else(|| l.strip_prefix("# TYPE ").map(|r| ("# TYPE ", r)));
        match meta {
            Some((kind, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                if counters.contains(name) {
                    out.push_str(&format!("{kind}{name}_total {tail}"));
                } else {
                    out.push_str(l);
                }
            }
            None => out.push_str(l),
        }
        out.push('\n');
    }
    out
}

/// The content type of the classic text format.
pub const CLASSIC_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Why a metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The address could not be bound.
    #[error("metrics endpoint {addr}: {message}")]
    Bind {
        /// Where.
        addr: SocketAddr,
        /// Why.
        message: String,
    },
    /// An address that is not loopback, without `allow_remote`.
    #[error(
        "metrics endpoint {0}: not a loopback address (anyone who reaches it reads every counter; allow it explicitly)"
    )]
    Remote(SocketAddr),
}

/// A running metrics endpoint: one thread answering `GET /metrics` (anything else is 404). Dropping it
/// stops the thread.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    scrapes: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("addr", &self.addr)
            .finish()
    }
}

/// The content type of the answer (OpenMetrics text, which Prometheus reads).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

impl MetricsServer {
    /// Serves `/metrics` at `addr` (port 0: one the system picks; see
    /// [`local_addr`](Self::local_addr)): the router's figures through `control`, then `sources`'.
    /// A non-loopback address needs `allow_remote`.
    pub fn start(
        addr: SocketAddr,
        control: Option<ControlHandle>,
        sources: Vec<Source>,
        allow_remote: bool,
    ) -> Result<MetricsServer, MetricsError> {
        if !addr.ip().is_loopback() && !allow_remote {
            return Err(MetricsError::Remote(addr));
        }
        let server = tiny_http::Server::http(addr).map_err(|e| MetricsError::Bind {
            addr,
            message: e.to_string(),
        })?;
        let local = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| MetricsError::Bind {
                addr,
                message: "not an IP socket".into(),
            })?;
        let stop = Arc::new(AtomicBool::new(false));
        let scrapes = Arc::new(AtomicU64::new(0));
        let (st, sc) = (stop.clone(), scrapes.clone());
        let thread = std::thread::Builder::new()
            .name("nf-metrics".into())
            .spawn(move || {
                let header = |t: &str| {
                    tiny_http::Header::from_bytes(&b"Content-Type"[..], t.as_bytes()).ok()
                };
                while !st.load(Ordering::Relaxed) {
                    let req = match server.recv_timeout(Duration::from_millis(100)) {
                        Ok(Some(r)) => r,
                        Ok(None) => continue,
                        Err(_) => break,
                    };
                    let path = req.url().split('?').next().unwrap_or("");
                    let ok = *req.method() == tiny_http::Method::Get && path == "/metrics";
                    let _ = if ok {
                        sc.fetch_add(1, Ordering::Relaxed);
                        // OpenMetrics to a scraper that asks for it (Prometheus does), else the
                        // classic text format.
                        let open = req.headers().iter().any(|h| {
                            h.field.equiv("Accept")
                                && h.value.as_str().contains("application/openmetrics-text")
                        });
                        let text = render(control.as_ref(), &sources);
                        let (body, t) = if open {
                            (text, CONTENT_TYPE)
                        } else {
                            (to_classic(&text), CLASSIC_CONTENT_TYPE)
                        };
                        let mut resp = tiny_http::Response::from_string(body);
                        if let Some(h) = header(t) {
                            resp.add_header(h);
                        }
                        req.respond(resp)
                    } else {
                        req.respond(
                            tiny_http::Response::from_string("only GET /metrics here\n")
                                .with_status_code(404),
                        )
                    };
                }
            })
            .map_err(|e| MetricsError::Bind {
                addr,
                message: e.to_string(),
            })?;
        Ok(MetricsServer {
            addr: local,
            stop,
            scrapes,
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Scrapes answered.
    pub fn scrapes(&self) -> u64 {
        self.scrapes.load(Ordering::Relaxed)
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_keep_one_type_and_valid_names() {
        let mut m = Metrics::default();
        m.counter("a", "A", &[("x", "1")], 1.0);
        m.gauge("a", "A as a gauge", &[], 2.0);
        m.gauge("bad name", "", &[], 1.0);
        m.counter("a", "A", &[("x", "2")], 3.0);
        assert_eq!(m.families.len(), 1);
        assert_eq!(m.skipped, 2);
        assert_eq!(name_part("LoadBalancer"), "loadbalancer");
        assert_eq!(name_part("Counter"), "counters");
        assert_eq!(name_part("byte-count"), "byte_count");
        assert!(valid_name("nf_x:y") && !valid_name("1x") && !valid_name(""));
    }

    #[test]
    fn a_router_scrape_has_handlers_typed_and_summed() {
        let mut router = crate::testing::router_for(
            "InfiniteSource(LIMIT 1000, STOP true) -> c :: Counter -> q :: Queue(10) -> Discard;",
        )
        .unwrap();
        router.run().unwrap();
        let shard = ShardMetrics {
            shard: 0,
            run: router.run_stats(),
            handlers: router.handler_samples(),
            ..Default::default()
        };
        let mut m = Metrics::default();
        m.add_router(&[shard.clone(), ShardMetrics { shard: 1, ..shard }]);
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(Snapshot(m.families)));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("nf_handler{element=\"c\",class=\"Counter\",handler=\"count\"} 2000"),
            "{text}"
        );
        assert!(text.contains("# TYPE nf_counters_count counter"), "{text}");
        assert!(
            text.contains("# HELP nf_counters_count packets seen"),
            "{text}"
        );
        assert!(
            text.contains("nf_counters_count_total{element=\"c\"} 2000"),
            "{text}"
        );
        let classic = to_classic(&text);
        assert!(
            classic.contains("# TYPE nf_counters_count_total counter\n"),
            "{classic}"
        );
        assert!(
            classic.contains("# HELP nf_counters_count_total packets seen\n"),
            "{classic}"
        );
        assert!(!classic.contains("# EOF"), "{classic}");
        assert!(text.contains("# TYPE nf_queue_length gauge"), "{text}");
        assert!(
            text.contains("nf_shard_packets_total{shard=\"1\"} 1000"),
            "{text}"
        );
        assert!(
            text.contains("nf_shard_batch_packets_bucket{le=\"+Inf\",shard=\"0\"}")
                || text.contains("nf_shard_batch_packets_bucket{shard=\"0\",le=\"+Inf\"}"),
            "{text}"
        );
    }
}
