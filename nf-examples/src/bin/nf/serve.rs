//! `nf serve`: a small HTTP/1.1 server for the labs' backends (hyper on tokio): thousands of new
//! connections a second where `python3 -m http.server` manages a few hundred, any response size, and a
//! per-connection rate that keeps long flows open on the wire.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use nf_drivers::driver::Shutdown;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// `nf serve`: answers `GET /bytes/N` with N bytes (`?rate=BYTES_PER_S` paces one response), `GET
/// /NAME` for every `--file NAME=SIZE`, `GET /` and `GET /health` with `ok`, anything else with 404; keep-alive; until SIGINT/SIGTERM, then prints
/// its counters.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Where to listen (IP:PORT; repeat for several).
    #[arg(long, required = true)]
    listen: Vec<SocketAddr>,
    /// Bytes a second of every response body (k, m, g suffixes: 1000s; 0: as fast as TCP takes
    /// them): a long download stays open on the wire.
    #[arg(long, default_value = "0", value_parser = parse_size)]
    rate: u64,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// A named response: `GET /NAME` answers SIZE bytes (e.g. `big=2m`; repeat for several).
    #[arg(long = "file", value_name = "NAME=SIZE", value_parser = parse_file)]
    files: Vec<(String, u64)>,
}

fn parse_file(s: &str) -> Result<(String, u64), String> {
    let (name, size) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not NAME=SIZE"))?;
    if name.is_empty() || name.contains('/') {
        return Err(format!("`{name}`: a name without slashes"));
    }
    Ok((format!("/{name}"), parse_size(size)?))
}

/// A size or a rate: a number with an optional `k`, `m` or `g` (powers of 1000) suffix.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let (num, mul) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1_000),
        Some('m') => (&t[..t.len() - 1], 1_000_000),
        Some('g') => (&t[..t.len() - 1], 1_000_000_000),
        _ => (t.as_str(), 1),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a number (with k, m or g)"))?;
    if !(0.0..=1e15).contains(&v) {
        return Err(format!("`{s}` is out of range"));
    }
    Ok((v * mul as f64) as u64)
}

/// The server's counters.
#[derive(Default, Debug)]
struct Counters {
    connections: AtomicU64,
    requests: AtomicU64,
    bytes: AtomicU64,
    not_found: AtomicU64,
}

/// A response body of `left` bytes, paced at `rate` bytes a second (0: unpaced), in chunks of the
/// same shared buffer (no copy per response).
struct Paced {
    left: u64,
    rate: u64,
    sent: u64,
    start: Instant,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    chunk: Bytes,
    counters: Arc<Counters>,
}

/// The largest chunk handed to hyper at once.
const CHUNK: usize = 64 << 10;

impl Body for Paced {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let mut n = (self.left as usize).min(self.chunk.len());
        if self.rate > 0 {
            // Twenty chunks a second at most: the pace holds at any rate.
            n = n.min((self.rate / 20).max(1460) as usize);
            let due = self.start + Duration::from_secs_f64(self.sent as f64 / self.rate as f64);
            if Instant::now() < due {
                let sleep = self.sleep.get_or_insert_with(|| {
                    Box::pin(tokio::time::sleep_until(tokio::time::Instant::from_std(
                        due,
                    )))
                });
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.sleep = None;
            }
        }
        self.left -= n as u64;
        self.sent += n as u64;
        self.counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n)))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.left)
    }
}

type Reply = Response<http_body_util::combinators::BoxBody<Bytes, Infallible>>;

fn answer(
    req: &Request<Incoming>,
    rate: u64,
    files: &[(String, u64)],
    chunk: &Bytes,
    counters: &Arc<Counters>,
) -> Reply {
    counters.requests.fetch_add(1, Ordering::Relaxed);
    let path = req.uri().path();
    let rate = req
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("rate=")))
        .and_then(|r| parse_size(r).ok())
        .unwrap_or(rate);
    let text = |code: StatusCode, t: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from_static(t.as_bytes())).boxed());
        *r.status_mut() = code;
        r
    };
    if req.method() != hyper::Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
    }
    match path {
        "/" | "/health" => text(StatusCode::OK, "ok\n"),
        p => match p
            .strip_prefix("/bytes/")
            .map(parse_size)
            .or_else(|| files.iter().find(|f| f.0 == p).map(|f| Ok(f.1)))
        {
            Some(Ok(n)) => Response::new(
                Paced {
                    left: n,
                    rate,
                    sent: 0,
                    start: Instant::now(),
                    sleep: None,
                    chunk: chunk.clone(),
                    counters: counters.clone(),
                }
                .boxed(),
            ),
            _ => {
                counters.not_found.fetch_add(1, Ordering::Relaxed);
                text(StatusCode::NOT_FOUND, "GET /bytes/N or /health\n")
            }
        },
    }
}

/// Runs `nf serve`.
pub fn run(o: ServeArgs) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(o.threads.max(1))
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    rt.block_on(async move {
        let (_trigger, shutdown) = Shutdown::on_signals().map_err(|e| e.to_string())?;
        let counters = Arc::new(Counters::default());
        let chunk = Bytes::from(vec![b'x'; CHUNK]);
        let mut tasks = Vec::new();
        for addr in &o.listen {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("{addr}: {e}"))?;
            println!(
                "serving on http://{}",
                l.local_addr().map_err(|e| e.to_string())?
            );
            let (counters, chunk, mut sd, rate) =
                (counters.clone(), chunk.clone(), shutdown.clone(), o.rate);
            let files: Arc<[(String, u64)]> = o.files.clone().into();
            tasks.push(tokio::spawn(async move {
                loop {
                    let (stream, _) = tokio::select! {
                        _ = sd.wait() => return,
                        r = l.accept() => match r {
                            Ok(s) => s,
                            Err(_) => {
                                // Out of descriptors, say: wait a little rather than spin.
                                tokio::time::sleep(Duration::from_millis(10)).await;
                                continue;
                            }
                        },
                    };
                    let _ = stream.set_nodelay(true);
                    counters.connections.fetch_add(1, Ordering::Relaxed);
                    let (counters, chunk, files) = (counters.clone(), chunk.clone(), files.clone());
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                            let r = answer(&req, rate, &files, &chunk, &counters);
                            async move { Ok::<_, Infallible>(r) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        println!(
            "connections={} requests={} bytes={} not_found={}",
            g(&counters.connections),
            g(&counters.requests),
            g(&counters.bytes),
            g(&counters.not_found)
        );
        Ok(())
    })
}
