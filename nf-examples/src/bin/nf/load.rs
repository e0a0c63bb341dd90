//! `nf load`: an open-loop HTTP/1.1 load generator over the kernel's TCP (hyper on tokio): new
//! connections at a rate (Poisson arrivals), long DASH-like flows (a segment every few seconds over one
//! kept-alive connection), a size distribution, and every connection's outcome with its timestamps, so
//! that a failure can be placed against the instant a middlebox failed.

use crate::serve::parse_size;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use nf_drivers::driver::Shutdown;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// `nf load`: opens new connections to TARGET at `--rate` a second (Poisson arrivals) for
/// `--duration` seconds, each one `GET /bytes/SIZE` with SIZE drawn from `--sizes` (or `--requests`
/// of them over the kept-alive connection, `--think` seconds apart: a browsing session), and keeps `--long`
/// flows open meanwhile, each fetching a segment of `--long-bitrate` x `--segment` every `--segment`
/// seconds over one connection. Prints a summary; `--events FILE` writes every connection's outcome as
/// a JSON line. Works against `nf serve` (any size) or any server with such paths (`--path`).
#[derive(clap::Args)]
#[command(
    after_help = "Outcomes: ok (the whole body), reset (RST or a broken connection), timeout (no answer \
in --timeout), short (the connection closed before the body's length), refused (connection refused), \
http (a status other than 200), error (anything else: no route, no source address). Times in \
--events are microseconds since the epoch, as the lab's failure instants are."
)]
pub struct LoadArgs {
    /// The server (a VIP): IP:PORT.
    target: SocketAddr,
    /// New connections a second (0: none; long flows only).
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Seconds of new connections (long flows last as long).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Response sizes and their weights: SIZE:WEIGHT,... (k, m suffixes).
    #[arg(long, default_value = "1k:60,10k:30,100k:10")]
    sizes: String,
    /// The request path; `{size}` becomes the size in bytes.
    #[arg(long, default_value = "/bytes/{size}")]
    path: String,
    /// Source addresses, used in turn (default: the system's choice).
    #[arg(long = "source", value_name = "IP")]
    sources: Vec<IpAddr>,
    /// Requests a session makes over its one kept-alive connection (a page and its objects, a
    /// browsing session), each of a size drawn from --sizes: the session's outcome is its first
    /// failed request's, or ok.
    #[arg(long, default_value_t = 1)]
    requests: u32,
    /// Seconds a session waits between two of its requests (the user's think time).
    #[arg(long, default_value_t = 0.0)]
    think: f64,
    /// Concurrent long flows.
    #[arg(long, default_value_t = 0)]
    long: usize,
    /// A long flow's bit rate (k, m suffixes: 1000s of bits a second).
    #[arg(long, default_value = "2m", value_parser = parse_size)]
    long_bitrate: u64,
    /// Seconds between two segments of a long flow.
    #[arg(long, default_value_t = 2.0)]
    segment: f64,
    /// Seconds without progress before a connection counts as timed out.
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
    /// Most connections open at once (an arrival beyond it is skipped, counted: the load stays open
    /// loop and memory bounded).
    #[arg(long, default_value_t = 20000)]
    max_open: usize,
    /// Write every connection's outcome here, one JSON object a line.
    #[arg(long, value_name = "FILE")]
    events: Option<std::path::PathBuf>,
    /// Seed of the arrivals and sizes (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Print a progress line every this many seconds (0: none).
    #[arg(long, default_value_t = 0.0)]
    progress: f64,
}

/// How a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    Reset,
    Timeout,
    Short,
    Refused,
    Http,
    Error,
}

const OUTCOMES: [Outcome; 7] = [
    Outcome::Ok,
    Outcome::Reset,
    Outcome::Timeout,
    Outcome::Short,
    Outcome::Refused,
    Outcome::Http,
    Outcome::Error,
];

impl Outcome {
    fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Reset => "reset",
            Outcome::Timeout => "timeout",
            Outcome::Short => "short",
            Outcome::Refused => "refused",
            Outcome::Http => "http",
            Outcome::Error => "error",
        }
    }
}

/// The outcome an error means: an I/O error's kind, or hyper's "incomplete message".
fn classify(e: &(dyn std::error::Error + 'static)) -> Outcome {
    let mut cur = Some(e);
    while let Some(x) = cur {
        if let Some(io) = x.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            match io.kind() {
                K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => return Outcome::Reset,
                K::ConnectionRefused => return Outcome::Refused,
                K::TimedOut => return Outcome::Timeout,
                // The body's length not reached when the connection ended.
                K::UnexpectedEof => return Outcome::Short,
                _ => {}
            }
        }
        if let Some(h) = x.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() {
                return Outcome::Short;
            }
            // The connection went away before the request could be sent.
            if h.is_canceled() || h.is_closed() {
                return Outcome::Reset;
            }
        }
        cur = x.source();
    }
    if std::env::var_os("NF_LOAD_DEBUG").is_some() {
        let mut chain = e.to_string();
        let mut c = e.source();
        while let Some(x) = c {
            chain.push_str(&format!(": {x}"));
            c = x.source();
        }
        eprintln!("unclassified: {chain}");
    }
    Outcome::Error
}

/// One connection's record.
#[derive(Debug)]
struct Event {
    id: u64,
    kind: &'static str,
    src: Option<SocketAddr>,
    start_us: u64,
    end_us: u64,
    ttfb_us: Option<u64>,
    outcome: Outcome,
    bytes: u64,
    expected: u64,
    segments: u64,
}

impl Event {
    fn json(&self) -> String {
        serde_json::json!({
            "id": self.id,
            "kind": self.kind,
            "src": self.src.map(|s| s.to_string()),
            "start_us": self.start_us,
            "end_us": self.end_us,
            "ttfb_us": self.ttfb_us,
            "outcome": self.outcome.name(),
            "bytes": self.bytes,
            "expected": self.expected,
            "segments": self.segments,
        })
        .to_string()
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// `1k:60,10k:30` as (size, cumulative weight).
fn parse_sizes(s: &str) -> Result<Vec<(u64, u64)>, String> {
    let mut out = Vec::new();
    let mut sum = 0;
    for item in s.split(',').filter(|i| !i.trim().is_empty()) {
        let (size, w) = item.split_once(':').unwrap_or((item, "1"));
        let w: u64 = w
            .trim()
            .parse()
            .map_err(|_| format!("`{item}`: the weight must be a whole number"))?;
        sum += w;
        out.push((parse_size(size)?, sum));
    }
    if sum == 0 {
        return Err(format!("--sizes `{s}`: no size with a weight above 0"));
    }
    Ok(out)
}

/// A small generator for arrivals and sizes (the SDK's SplitMix64 step).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        nf_core::hash::splitmix64(&mut self.0)
    }
    /// Uniform in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }
}

/// Counters shared by the tasks.
#[derive(Default)]
struct Tally {
    by: [AtomicU64; 7],
    skipped: AtomicU64,
    bytes: AtomicU64,
}

impl Tally {
    fn count(&self, o: Outcome) {
        let i = OUTCOMES.iter().position(|x| *x == o).unwrap_or(6);
        self.by[i].fetch_add(1, Ordering::Relaxed);
    }
    fn get(&self, o: Outcome) -> u64 {
        let i = OUTCOMES.iter().position(|x| *x == o).unwrap_or(6);
        self.by[i].load(Ordering::Relaxed)
    }
    fn total(&self) -> u64 {
        self.by.iter().map(|a| a.load(Ordering::Relaxed)).sum()
    }
}

/// What every connection needs.
struct Ctx {
    target: SocketAddr,
    host: String,
    timeout: Duration,
    events: tokio::sync::mpsc::UnboundedSender<Event>,
}

/// Opens a connection from `src` (if given) and its HTTP/1.1 client.
async fn connect(
    ctx: &Ctx,
    src: Option<IpAddr>,
) -> Result<
    (
        hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
        Option<SocketAddr>,
    ),
    Outcome,
> {
    let sock = match ctx.target {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .map_err(|_| Outcome::Error)?;
    if let Some(ip) = src {
        sock.bind(SocketAddr::new(ip, 0))
            .map_err(|_| Outcome::Error)?;
    }
    let stream = match tokio::time::timeout(ctx.timeout, sock.connect(ctx.target)).await {
        Err(_) => return Err(Outcome::Timeout),
        Ok(Err(e)) => return Err(classify(&e)),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().ok();
    let send = http1_client(stream).await.map_err(|e| classify(&e))?;
    Ok((send, local))
}

/// The client side of HTTP/1.1 over a connected stream: the request sender, the connection driven
/// by a task of its own (`nf load` and `nf lb`'s health checks).
pub async fn http1_client(
    stream: tokio::net::TcpStream,
) -> Result<hyper::client::conn::http1::SendRequest<Empty<Bytes>>, hyper::Error> {
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

/// A `GET path` with its `Host` and no body.
pub fn get_request(path: &str, host: &str) -> Option<Request<Empty<Bytes>>> {
    Request::get(path)
        .header(hyper::header::HOST, host)
        .header(hyper::header::USER_AGENT, "nf")
        .body(Empty::<Bytes>::new())
        .ok()
}

/// One GET of `size` bytes on `send`: the bytes received, the time to the answer's head, and how it
/// ended. Each read must make progress within the timeout.
async fn get(
    ctx: &Ctx,
    send: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    path: &str,
) -> (u64, Option<u64>, Outcome) {
    let t0 = Instant::now();
    let Some(req) = get_request(path, &ctx.host) else {
        return (0, None, Outcome::Error);
    };
    let resp = match tokio::time::timeout(ctx.timeout, send.send_request(req)).await {
        Err(_) => return (0, None, Outcome::Timeout),
        Ok(Err(e)) => return (0, None, classify(&e)),
        Ok(Ok(r)) => r,
    };
    let ttfb = t0.elapsed().as_micros() as u64;
    if resp.status() != hyper::StatusCode::OK {
        return (0, Some(ttfb), Outcome::Http);
    }
    let mut body = resp.into_body();
    let mut got = 0u64;
    loop {
        match tokio::time::timeout(ctx.timeout, body.frame()).await {
            Err(_) => return (got, Some(ttfb), Outcome::Timeout),
            Ok(None) => return (got, Some(ttfb), Outcome::Ok),
            Ok(Some(Err(e))) => return (got, Some(ttfb), classify(&e)),
            Ok(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    got += d.len() as u64;
                }
            }
        }
    }
}

/// Counts a connection's end and hands its record to the writer.
fn finish(ctx: &Ctx, tally: &Tally, e: Event) {
    tally.count(e.outcome);
    tally.bytes.fetch_add(e.bytes, Ordering::Relaxed);
    let _ = ctx.events.send(e);
}

/// What a connection's requests have come to so far.
struct Progress {
    outcome: Outcome,
    local: Option<SocketAddr>,
    bytes: u64,
    ttfb: Option<u64>,
    done: u64,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            outcome: Outcome::Ok,
            local: None,
            bytes: 0,
            ttfb: None,
            done: 0,
        }
    }

    /// Counts one request's answer (`get`'s bytes, time to first byte and outcome) against the `want`ed
    /// size; false once the connection is over (an error, or a body shorter than asked).
    fn took(&mut self, (bytes, ttfb, outcome): (u64, Option<u64>, Outcome), want: u64) -> bool {
        self.bytes += bytes;
        self.ttfb = self.ttfb.or(ttfb);
        if outcome != Outcome::Ok || bytes != want {
            self.outcome = if outcome == Outcome::Ok {
                Outcome::Short
            } else {
                outcome
            };
            return false;
        }
        self.done += 1;
        true
    }

    /// The connection's event, ended now.
    fn event(self, id: u64, kind: &'static str, start_us: u64, expected: u64) -> Event {
        Event {
            id,
            kind,
            src: self.local,
            start_us,
            end_us: now_us(),
            ttfb_us: self.ttfb,
            outcome: self.outcome,
            bytes: self.bytes,
            expected,
            segments: self.done,
        }
    }
}

/// A session: connect, its requests one after another over the kept-alive connection (a think time
/// between two), close.
async fn short(
    ctx: Arc<Ctx>,
    id: u64,
    src: Option<IpAddr>,
    requests: Vec<(u64, String)>,
    think: Duration,
    tally: Arc<Tally>,
) {
    let start_us = now_us();
    let expected = requests.iter().map(|r| r.0).sum();
    let mut p = Progress::new();
    match connect(&ctx, src).await {
        Err(o) => p.outcome = o,
        Ok((mut send, local)) => {
            p.local = local;
            for (k, (size, path)) in requests.iter().enumerate() {
                if k > 0 && !think.is_zero() {
                    tokio::time::sleep(think).await;
                }
                if !p.took(get(&ctx, &mut send, path).await, *size) {
                    break;
                }
            }
        }
    }
    finish(&ctx, &tally, p.event(id, "short", start_us, expected));
}

/// A long flow: one connection opened at `phase` into the run, a segment every `every` until
/// `until` (a flow that fell behind fetches the missed segments back to back, as a player refills
/// its buffer, but never past `until`).
#[allow(clippy::too_many_arguments)]
async fn long(
    ctx: Arc<Ctx>,
    id: u64,
    src: Option<IpAddr>,
    seg: u64,
    every: Duration,
    phase: Duration,
    until: tokio::time::Instant,
    path: String,
    tally: Arc<Tally>,
) {
    tokio::time::sleep(phase).await;
    let start_us = now_us();
    let mut p = Progress::new();
    match connect(&ctx, src).await {
        Err(o) => p.outcome = o,
        Ok((mut send, local)) => {
            p.local = local;
            let mut next = tokio::time::Instant::now();
            while next < until && tokio::time::Instant::now() < until {
                tokio::time::sleep_until(next).await;
                next += every;
                if !p.took(get(&ctx, &mut send, &path).await, seg) {
                    break;
                }
            }
        }
    }
    let expected = seg * p.done.max(1);
    finish(&ctx, &tally, p.event(id, "long", start_us, expected));
}

fn summary(what: &str, t: &Tally, secs: f64) -> String {
    let mut s = format!("{what}: {} done", t.total());
    for o in OUTCOMES {
        s.push_str(&format!(", {} {}", t.get(o), o.name()));
    }
    let skipped = t.skipped.load(Ordering::Relaxed);
    if skipped > 0 {
        s.push_str(&format!(", {skipped} skipped (--max-open)"));
    }
    s.push_str(&format!(
        "; {:.1}/s, {:.1} MB",
        t.total() as f64 / secs.max(1e-9),
        t.bytes.load(Ordering::Relaxed) as f64 / 1e6
    ));
    s
}

/// Runs `nf load`.
pub fn run(o: LoadArgs) -> Result<(), String> {
    let sizes = parse_sizes(&o.sizes)?;
    if !(o.rate >= 0.0 && o.rate.is_finite() && o.duration > 0.0 && o.duration.is_finite()) {
        return Err("--rate and --duration must be numbers, --duration above 0".into());
    }
    let timeout = Duration::try_from_secs_f64(o.timeout).map_err(|_| "--timeout: seconds")?;
    let every =
        Duration::try_from_secs_f64(o.segment.max(0.01)).map_err(|_| "--segment: seconds")?;
    let duration = Duration::try_from_secs_f64(o.duration).map_err(|_| "--duration: seconds")?;
    let think = Duration::try_from_secs_f64(o.think).map_err(|_| "--think: seconds")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let mut events_out = match &o.events {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()))?,
        )),
        None => None,
    };
    rt.block_on(async move {
        let (_trigger, mut stop) = Shutdown::on_signals().map_err(|e| e.to_string())?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
        // Events are written as connections end (memory stays bounded by the open connections).
        let writer = tokio::spawn(async move {
            let mut written = 0u64;
            while let Some(e) = rx.recv().await {
                if let Some(w) = events_out.as_mut() {
                    writeln!(w, "{}", e.json()).map_err(|e| e.to_string())?;
                    written += 1;
                }
            }
            if let Some(w) = events_out.as_mut() {
                w.flush().map_err(|e| e.to_string())?;
            }
            Ok::<u64, String>(written)
        });
        let ctx = Arc::new(Ctx {
            target: o.target,
            host: o.target.to_string(),
            timeout,
            events: tx,
        });
        let (shorts, longs) = (Arc::new(Tally::default()), Arc::new(Tally::default()));
        let seed = o.seed.unwrap_or_else(|| now_us() | 1);
        let mut rng = Rng(seed);
        let src = |i: u64| -> Option<IpAddr> {
            (!o.sources.is_empty()).then(|| o.sources[i as usize % o.sources.len()])
        };
        let t0 = tokio::time::Instant::now();
        let until = t0 + duration;
        // Long flows first: they are open when the arrivals start. Players are not in step: flow k
        // of n starts k/n of a segment period into the run, so their requests spread evenly.
        let seg = (o.long_bitrate as f64 / 8.0 * every.as_secs_f64()) as u64;
        let seg_path = o.path.replace("{size}", &seg.to_string());
        let mut long_tasks = Vec::new();
        for k in 0..o.long {
            long_tasks.push(tokio::spawn(long(
                ctx.clone(),
                k as u64,
                src(k as u64),
                seg,
                every,
                every.mul_f64(k as f64 / o.long as f64),
                until,
                seg_path.clone(),
                longs.clone(),
            )));
        }
        // Open-loop arrivals.
        let open = Arc::new(AtomicUsize::new(0));
        let mut next = t0;
        let mut id = o.long as u64;
        let mut progress_at = t0 + Duration::from_secs_f64(o.progress.max(0.0));
        let total = sizes.last().map_or(1, |s| s.1);
        loop {
            if o.rate <= 0.0 {
                break;
            }
            next += Duration::from_secs_f64(-rng.unit().ln() / o.rate);
            if next >= until {
                break;
            }
            tokio::select! {
                _ = stop.wait() => break,
                _ = tokio::time::sleep_until(next) => {}
            }
            if o.progress > 0.0 && tokio::time::Instant::now() >= progress_at {
                progress_at += Duration::from_secs_f64(o.progress);
                eprintln!(
                    "{:.1}s: {}",
                    t0.elapsed().as_secs_f64(),
                    summary("short", &shorts, t0.elapsed().as_secs_f64())
                );
            }
            if open.load(Ordering::Relaxed) >= o.max_open {
                shorts.skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let requests: Vec<(u64, String)> = (0..o.requests.max(1))
                .map(|_| {
                    let r = rng.next() % total;
                    let size = sizes.iter().find(|s| r < s.1).map_or(sizes[0].0, |s| s.0);
                    (size, o.path.replace("{size}", &size.to_string()))
                })
                .collect();
            open.fetch_add(1, Ordering::Relaxed);
            let (c, t, op) = (ctx.clone(), shorts.clone(), open.clone());
            let s = src(id);
            tokio::spawn(async move {
                short(c, id, s, requests, think, t).await;
                op.fetch_sub(1, Ordering::Relaxed);
            });
            id += 1;
        }
        let arrivals_done = t0.elapsed().as_secs_f64();
        for t in long_tasks {
            let _ = t.await;
        }
        // The last arrivals finish (each bounded by its timeouts).
        while open.load(Ordering::Relaxed) > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(ctx);
        let written = writer.await.map_err(|e| e.to_string())??;
        println!("{}", summary("short", &shorts, arrivals_done));
        if o.long > 0 {
            println!("{}", summary("long", &longs, t0.elapsed().as_secs_f64()));
        }
        if written > 0 {
            println!("{written} events written");
        }
        Ok(())
    })
}
