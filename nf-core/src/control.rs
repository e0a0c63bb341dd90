//! A control socket in Click's ControlSocket protocol, version 1.3: other programs read and write a
//! running router's handlers over a Unix or TCP socket, with any client written for Click.
//!
//! The protocol (as Click's `ControlSocket` element documents it): on connection the server sends
//! `Click::ControlSocket/1.3`; each command is one line (ended by CR, LF or CRLF); each answer is a line
//! `CODE text` (CRLF-terminated), followed for reads by `DATA n` and `n` bytes. Commands: `READ handler
//! [params]`, `READDATA handler n` (then `n` bytes of parameters), `READUNTIL handler [terminator]`,
//! `WRITE handler [value]`, `WRITEDATA handler n`, `WRITEUNTIL handler [terminator]`, `CHECKREAD`,
//! `CHECKWRITE`, `LLRPC` (answered 501: unimplemented) and `QUIT`. Handler names are `element.handler`
//! (the element by name, or by number from 1) or a global handler: `version`, `list`, `classes`,
//! `config`, `flatconfig`. Codes: 200 OK, 500 syntax error, 501 unimplemented, 510 no such element, 511
//! no such handler, 520 handler error, 521 data too big, 530 permission denied, 540 no router running;
//! 220 (done, with warnings) answers a hot reconfiguration that dropped some element's state.
//!
//! Handlers run on the router's own thread, between two rounds of its tasks: the packet path takes no
//! lock, and when no command waits a round costs one empty channel poll. Each connection has a thread of
//! its own that parses and waits; the number of connections, the length of a line, the size of data and
//! the time a command may wait are bounded, and every refusal is counted ([`ControlStats`]), so a slow or
//! hostile client cannot stall the router or the other clients.
//!
//! **Who can reach the socket can read every handler and write every writable one**: change backends,
//! reset counters, stop sources. A TCP socket listens on a loopback address unless
//! [`ControlConfig::allow_remote`] says otherwise; a Unix socket is protected by its file's permissions.
//!
//! ```
//! use nf_core::control::{ControlConfig, ControlServer, Listen};
//! use std::io::{BufRead, BufReader, Write};
//! let mut router = nf_core::testing::router_for(
//!     "InfiniteSource(LIMIT 100, STOP true) -> c :: Counter -> Discard;").unwrap();
//! let server = ControlServer::start(&mut router, &[Listen::parse("tcp:127.0.0.1:0").unwrap()],
//!     ControlConfig::default()).unwrap();
//! router.run().unwrap();
//! // The router answers between its rounds; once it is gone, a client is told so.
//! drop(router);
//! let nf_core::control::Listen::Tcp(at) = server.local_addrs()[0] else { unreachable!() };
//! let mut s = std::net::TcpStream::connect(at).unwrap();
//! let mut r = BufReader::new(s.try_clone().unwrap());
//! let mut line = String::new();
//! r.read_line(&mut line).unwrap();
//! assert_eq!(line, "Click::ControlSocket/1.3\r\n");
//! s.write_all(b"READ c.count\r\n").unwrap();
//! line.clear();
//! r.read_line(&mut line).unwrap();
//! assert!(line.starts_with("540"), "{line}");
//! ```

use crate::router::Router;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::Duration;

/// The protocol's banner.
pub const BANNER: &str = "Click::ControlSocket/1.3";

/// Where a control socket listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// A Unix stream socket at this path (replaced if a socket file is there).
    Unix(PathBuf),
    /// A TCP socket (port 0: any free port, see [`ControlServer::local_addrs`]).
    Tcp(SocketAddr),
}

/// A `--control` value that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not unix:PATH or tcp:ADDRESS:PORT")]
pub struct ListenError(pub String);

impl Listen {
    /// Parses `unix:PATH` or `tcp:ADDRESS:PORT` (`tcp:[::1]:PORT` for IPv6).
    pub fn parse(s: &str) -> Result<Listen, ListenError> {
        if let Some(p) = s.strip_prefix("unix:") {
            let p = p.strip_prefix("//").unwrap_or(p);
            if p.is_empty() {
                return Err(ListenError(s.to_string()));
            }
            return Ok(Listen::Unix(PathBuf::from(p)));
        }
        if let Some(a) = s.strip_prefix("tcp:") {
            let a = a.strip_prefix("//").unwrap_or(a);
            return a
                .parse()
                .map(Listen::Tcp)
                .map_err(|_| ListenError(s.to_string()));
        }
        Err(ListenError(s.to_string()))
    }
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Unix(p) => write!(f, "unix:{}", p.display()),
            Listen::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

/// Limits and permissions of a control server.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    /// Most connections at once (more are answered 530 and closed, counted).
    pub max_connections: usize,
    /// Longest command line, in bytes (a longer one is answered 500 and the connection closed).
    pub max_line: usize,
    /// Most bytes of handler data in one command (`WRITEDATA n`, `WRITEUNTIL`: more is 521).
    pub max_data: usize,
    /// How long a command may wait for the router (then 520: the router is busy or stalled).
    pub command_timeout: Duration,
    /// How long a connection may stay silent before it is closed (counted).
    pub idle_timeout: Duration,
    /// Refuse writes (530).
    pub read_only: bool,
    /// Allow a TCP socket on an address other than loopback (anyone who reaches it controls the
    /// router).
    pub allow_remote: bool,
    /// How to build a new configuration's graph for `WRITE hotconfig` (`None`: the handler answers
    /// 501). The closure returns the graph and the configuration's flattened text.
    pub hotconfig: Option<Rebuilder>,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            max_connections: 16,
            max_line: 64 << 10,
            max_data: 1 << 20,
            command_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(300),
            read_only: false,
            allow_remote: false,
            hotconfig: None,
        }
    }
}

/// What a control server did.
#[derive(Debug, Default)]
pub struct ControlStats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Connections refused (too many at once).
    pub refused: AtomicU64,
    /// Commands answered.
    pub commands: AtomicU64,
    /// Commands answered with a 5xx code.
    pub errors: AtomicU64,
    /// Commands the router did not answer in time.
    pub timeouts: AtomicU64,
    /// Connections closed for a line or data over the limits.
    pub oversized: AtomicU64,
    /// Connections closed for silence.
    pub idle_closed: AtomicU64,
}

/// Why a control server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// A socket could not be bound.
    #[error("control socket {listen}: {source}")]
    Bind {
        /// Where.
        listen: String,
        /// Why.
        source: std::io::Error,
    },
    /// A TCP address that is not loopback, without [`ControlConfig::allow_remote`].
    #[error(
        "control socket {0}: not a loopback address (anyone who reaches it controls the router; allow it explicitly)"
    )]
    Remote(String),
}

/// A command for the router's thread.
enum Op {
    Read(String, String),
    Write(String, String),
    Check(String, bool),
    /// Every numeric handler and the run's counters, for a metrics endpoint.
    Metrics,
    /// A new graph, built and checked beside the running one, to swap in (`hotconfig`).
    HotConfig(Box<Router>, Arc<str>, Arc<str>),
}

struct Request {
    op: Op,
    reply: SyncSender<Answer>,
}

/// An answer: the code, the message, and for reads the data.
struct Answer {
    code: u16,
    message: String,
    data: Option<String>,
    /// For [`Op::Metrics`]: the shard's figures.
    metrics: Option<Box<ShardMetrics>>,
}

impl Answer {
    fn err(code: u16, message: impl Into<String>) -> Answer {
        Answer {
            code,
            message: message.into(),
            data: None,
            metrics: None,
        }
    }
    fn data(code: u16, message: impl Into<String>, data: String) -> Answer {
        Answer {
            data: Some(data),
            ..Answer::err(code, message)
        }
    }
}

/// One shard's figures for a metrics endpoint, taken on its own thread between two rounds.
#[derive(Clone, Debug, Default)]
pub struct ShardMetrics {
    /// The shard's index (0 when not sharded).
    pub shard: usize,
    /// Packets, batches and rounds.
    pub run: crate::router::RunStats,
    /// The shard's thread's buffer pool: what it allocated, reused, recycled and freed since the
    /// thread started.
    pub pool: crate::pool::PoolStats,
    /// Buffers waiting in that pool now.
    pub pooled: usize,
    /// Every numeric read handler of the shard's elements.
    pub handlers: Vec<crate::router::HandlerSample>,
    /// Hot reconfigurations made, and the last one's pause on the router's thread in nanoseconds.
    pub swaps: (u64, u64),
}

/// The function inside a [`Rebuilder`]: (text, shard, shards) to (graph, flattened text), or an error.
pub type RebuildFn = dyn Fn(&str, usize, usize) -> Result<(Router, String), String> + Send + Sync;

/// Builds the graph of a new configuration for a hot reconfiguration (`WRITE hotconfig`): from the
/// configuration text, the graph that shard `shard` of `shards` runs, built and initialized but not
/// running, with the configuration's flattened text. Errors are returned to the client as they are (a
/// configuration error names its line and column).
#[derive(Clone)]
pub struct Rebuilder(pub Arc<RebuildFn>);

impl std::fmt::Debug for Rebuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rebuilder")
    }
}

/// The router's end: requests waiting for its thread.
pub(crate) struct ControlPort {
    rx: Receiver<Request>,
    read_only: bool,
}

/// A running control server: its listening sockets and their threads. Dropping it stops accepting (the
/// router's end closes when the router is dropped).
pub struct ControlServer {
    handle: ControlHandle,
    addrs: Vec<Listen>,
    stats: Arc<ControlStats>,
    stop: Arc<AtomicBool>,
    unix_paths: Vec<PathBuf>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for ControlServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlServer")
            .field("addrs", &self.addrs)
            .finish()
    }
}

impl ControlServer {
    /// Binds `listen` and serves `router`'s handlers (answered on the router's thread while it runs).
    /// The configuration text for the `config` and `flatconfig` handlers is set with
    /// [`Router::set_config_text`].
    pub fn start(
        router: &mut Router,
        listen: &[Listen],
        config: ControlConfig,
    ) -> Result<ControlServer, ControlError> {
        Self::start_on(std::slice::from_mut(router), listen, config)
    }

    /// [`start`](Self::start) for a sharded run: every command goes to every shard, each answers on its
    /// own thread; reads of integers are summed (as [`ShardedRouter::handlers`](crate::ShardedRouter::handlers)
    /// sums them), other values equal in every shard are given once, values that differ are joined with
    /// ` / `; a write is made in every shard.
    pub fn start_sharded(
        sharded: &mut crate::ShardedRouter,
        listen: &[Listen],
        config: ControlConfig,
    ) -> Result<ControlServer, ControlError> {
        Self::start_on(sharded.shards_mut(), listen, config)
    }

    fn start_on(
        routers: &mut [Router],
        listen: &[Listen],
        config: ControlConfig,
    ) -> Result<ControlServer, ControlError> {
        let mut tx = Vec::with_capacity(routers.len());
        for router in routers.iter_mut() {
            let (t, rx) = sync_channel::<Request>(64);
            router.attach_control(ControlPort {
                rx,
                read_only: config.read_only,
            });
            tx.push(t);
        }
        let tx: Arc<[SyncSender<Request>]> = tx.into();
        let stats = Arc::new(ControlStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let active = Arc::new(AtomicUsize::new(0));
        let cfg = Arc::new(config);
        let mut addrs = Vec::new();
        let mut threads = Vec::new();
        let mut unix_paths = Vec::new();
        for l in listen {
            let ctx = ConnCtx {
                tx: tx.clone(),
                cfg: cfg.clone(),
                stats: stats.clone(),
                active: active.clone(),
            };
            let bind_err = |e| ControlError::Bind {
                listen: l.to_string(),
                source: e,
            };
            match l {
                Listen::Tcp(a) => {
                    if !a.ip().is_loopback() && !cfg.allow_remote {
                        return Err(ControlError::Remote(l.to_string()));
                    }
                    let sock = TcpListener::bind(a).map_err(bind_err)?;
                    sock.set_nonblocking(true).map_err(bind_err)?;
                    let local = sock.local_addr().map_err(bind_err)?;
                    addrs.push(Listen::Tcp(local));
                    let stop = stop.clone();
                    threads.push(spawn_accept(move || {
                        accept_loop(&stop, || sock.accept().map(|(s, _)| Conn::Tcp(s)), ctx)
                    }));
                }
                #[cfg(unix)]
                Listen::Unix(p) => {
                    use std::os::unix::fs::FileTypeExt;
                    use std::os::unix::net::UnixListener;
                    if let Ok(m) = std::fs::symlink_metadata(p)
                        && m.file_type().is_socket()
                    {
                        let _ = std::fs::remove_file(p);
                    }
                    let sock = UnixListener::bind(p).map_err(bind_err)?;
                    sock.set_nonblocking(true).map_err(bind_err)?;
                    addrs.push(l.clone());
                    unix_paths.push(p.clone());
                    let stop = stop.clone();
                    threads.push(spawn_accept(move || {
                        accept_loop(&stop, || sock.accept().map(|(s, _)| Conn::Unix(s)), ctx)
                    }));
                }
                #[cfg(not(unix))]
                Listen::Unix(_) => {
                    return Err(bind_err(std::io::Error::other(
                        "Unix sockets need a Unix system",
                    )));
                }
            }
        }
        let handle = ControlHandle {
            ctx: ConnCtx {
                tx: tx.clone(),
                cfg: cfg.clone(),
                stats: stats.clone(),
                active: active.clone(),
            },
        };
        Ok(ControlServer {
            handle,
            addrs,
            stats,
            stop,
            unix_paths,
            threads,
        })
    }

    /// Where it listens (TCP ports as bound: port 0 becomes the port the system chose).
    pub fn local_addrs(&self) -> &[Listen] {
        &self.addrs
    }

    /// Its counters.
    pub fn stats(&self) -> Arc<ControlStats> {
        self.stats.clone()
    }

    /// An in-process client: the same commands as the sockets', without a socket (a metrics endpoint,
    /// a signal handler). Start a server with no sockets to have only this.
    pub fn handle(&self) -> ControlHandle {
        self.handle.clone()
    }
}

/// An in-process client of a control server ([`ControlServer::handle`]): commands answered on the
/// router's thread between rounds, with the server's bounds and counters.
#[derive(Clone)]
pub struct ControlHandle {
    ctx: ConnCtx,
}

impl std::fmt::Debug for ControlHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlHandle")
            .field("shards", &self.ctx.tx.len())
            .finish()
    }
}

impl ControlHandle {
    fn reply(a: Answer) -> Reply {
        Reply {
            code: a.code,
            message: a.message,
            data: a.data,
        }
    }

    /// Reads `handler` (`element.handler` or a global one).
    pub fn read(&self, handler: &str) -> Reply {
        let h = handler.to_string();
        Self::reply(ask(&self.ctx, |_| Op::Read(h.clone(), String::new())))
    }

    /// Writes `value` to `handler` (`hotconfig` included).
    pub fn write(&self, handler: &str, value: &str) -> Reply {
        Self::reply(write(&self.ctx, handler, value))
    }

    /// Every shard's figures, in shard order (taken on each shard's thread).
    pub fn metrics(&self) -> Result<Vec<ShardMetrics>, Reply> {
        let answers = ask_each(&self.ctx, |_| Op::Metrics).map_err(Self::reply)?;
        answers
            .into_iter()
            .enumerate()
            .map(|(i, a)| match a.metrics {
                Some(m) => Ok(ShardMetrics { shard: i, ..*m }),
                None => Err(Self::reply(a)),
            })
            .collect()
    }

    /// The server's counters.
    pub fn stats(&self) -> Arc<ControlStats> {
        self.ctx.stats.clone()
    }
}

/// A write, from a socket or a handle: `hotconfig` is built here, on the caller's thread, and swapped
/// in on the router's; other handlers are written on the router's thread.
fn write(ctx: &ConnCtx, handler: &str, value: &str) -> Answer {
    if handler != "hotconfig" {
        let (h, v) = (handler.to_string(), value.to_string());
        return ask(ctx, |_| Op::Write(h.clone(), v.clone()));
    }
    if ctx.cfg.read_only {
        return Answer::err(530, "Permission denied (a read-only control socket)");
    }
    let Some(rebuild) = &ctx.cfg.hotconfig else {
        return Answer::err(501, "Hot reconfiguration is not enabled here");
    };
    let shards = ctx.tx.len();
    if shards != 1 {
        return Answer::err(
            501,
            "Hot reconfiguration of a sharded run is not supported (run one shard)",
        );
    }
    match (rebuild.0)(value, 0, 1) {
        Err(e) => Answer::err(520, e),
        Ok((router, flat)) => {
            let mut router = Some(Box::new(router));
            let (text, flat): (Arc<str>, Arc<str>) = (Arc::from(value), Arc::from(flat.as_str()));
            ask(ctx, |_| match router.take() {
                Some(r) => Op::HotConfig(r, text.clone(), flat.clone()),
                None => Op::Check("hotconfig".into(), true),
            })
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        for p in &self.unix_paths {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn spawn_accept(f: impl FnOnce() + Send + 'static) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("nf-control".into())
        .spawn(f)
        .unwrap_or_else(|_| std::thread::spawn(|| {}))
}

#[derive(Clone)]
struct ConnCtx {
    /// One channel per shard.
    tx: Arc<[SyncSender<Request>]>,
    cfg: Arc<ControlConfig>,
    stats: Arc<ControlStats>,
    active: Arc<AtomicUsize>,
}

enum Conn {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(std::os::unix::net::UnixStream),
}

impl Conn {
    fn prepare(&self, idle: Duration) -> std::io::Result<()> {
        match self {
            Conn::Tcp(s) => {
                s.set_nonblocking(false)?;
                s.set_read_timeout(Some(idle))?;
                s.set_write_timeout(Some(idle))
            }
            #[cfg(unix)]
            Conn::Unix(s) => {
                s.set_nonblocking(false)?;
                s.set_read_timeout(Some(idle))?;
                s.set_write_timeout(Some(idle))
            }
        }
    }
    fn split(self) -> std::io::Result<(Box<dyn Read + Send>, Box<dyn Write + Send>)> {
        match self {
            Conn::Tcp(s) => Ok((Box::new(s.try_clone()?), Box::new(s))),
            #[cfg(unix)]
            Conn::Unix(s) => Ok((Box::new(s.try_clone()?), Box::new(s))),
        }
    }
}

fn accept_loop(stop: &AtomicBool, mut accept: impl FnMut() -> std::io::Result<Conn>, ctx: ConnCtx) {
    while !stop.load(Ordering::Relaxed) {
        match accept() {
            Ok(conn) => {
                let ctx = ctx.clone();
                if ctx.active.fetch_add(1, Ordering::AcqRel) >= ctx.cfg.max_connections {
                    ctx.active.fetch_sub(1, Ordering::AcqRel);
                    ctx.stats.refused.fetch_add(1, Ordering::Relaxed);
                    if let Ok((_, mut w)) = conn.split() {
                        let _ = w.write_all(b"530 Too many connections\r\n");
                    }
                    continue;
                }
                ctx.stats.connections.fetch_add(1, Ordering::Relaxed);
                let active = ctx.active.clone();
                let spawned = std::thread::Builder::new()
                    .name("nf-control-conn".into())
                    .spawn(move || {
                        serve(conn, &ctx);
                        ctx.active.fetch_sub(1, Ordering::AcqRel);
                    });
                if spawned.is_err() {
                    // The connection went with the closure; give its slot back.
                    active.fetch_sub(1, Ordering::AcqRel);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Reads one line (ended by CR, LF or CRLF) of at most `max` bytes; `Ok(None)` at the end of the stream.
fn read_line(r: &mut impl BufRead, max: usize) -> std::io::Result<Option<Result<String, ()>>> {
    let mut line = Vec::new();
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(if line.is_empty() {
                None
            } else {
                Some(Ok(String::from_utf8_lossy(&line).into_owned()))
            });
        }
        match buf.iter().position(|&b| b == b'\n' || b == b'\r') {
            Some(i) => {
                line.extend_from_slice(&buf[..i]);
                let cr = buf[i] == b'\r';
                r.consume(i + 1);
                if cr {
                    // CRLF: the LF belongs to this line.
                    if let Ok(b) = r.fill_buf()
                        && b.first() == Some(&b'\n')
                    {
                        r.consume(1);
                    }
                }
                if line.len() > max {
                    return Ok(Some(Err(())));
                }
                return Ok(Some(Ok(String::from_utf8_lossy(&line).into_owned())));
            }
            None => {
                let n = buf.len();
                line.extend_from_slice(buf);
                r.consume(n);
                if line.len() > max {
                    return Ok(Some(Err(())));
                }
            }
        }
    }
}

fn serve(conn: Conn, ctx: &ConnCtx) {
    if conn.prepare(ctx.cfg.idle_timeout).is_err() {
        return;
    }
    let Ok((r, mut w)) = conn.split() else {
        return;
    };
    let mut r = BufReader::new(r);
    if w.write_all(format!("{BANNER}\r\n").as_bytes()).is_err() {
        return;
    }
    loop {
        let line = match read_line(&mut r, ctx.cfg.max_line) {
            Ok(Some(Ok(l))) => l,
            Ok(Some(Err(()))) => {
                ctx.stats.oversized.fetch_add(1, Ordering::Relaxed);
                let _ = w.write_all(b"500 Line too long\r\n");
                return;
            }
            Ok(None) => return,
            Err(e) => {
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) {
                    ctx.stats.idle_closed.fetch_add(1, Ordering::Relaxed);
                }
                return;
            }
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(cmd) = words.first() else { continue };
        let cmd = cmd.to_ascii_uppercase();
        let answer = match cmd.as_str() {
            "QUIT" => {
                let _ = w.write_all(b"200 Goodbye!\r\n");
                return;
            }
            "READ" | "WRITE" | "CHECKREAD" | "CHECKWRITE" if words.len() < 2 => {
                Answer::err(500, "Syntax error: a handler name is needed")
            }
            "READ" => {
                let (h, params) = (words[1].to_string(), rest_after(&line, 2));
                ask(ctx, |_| Op::Read(h.clone(), params.clone()))
            }
            "WRITE" => write(ctx, words[1], &rest_after(&line, 2)),
            "CHECKREAD" => {
                let h = words[1].to_string();
                ask(ctx, |_| Op::Check(h.clone(), false))
            }
            "CHECKWRITE" => {
                let h = words[1].to_string();
                ask(ctx, |_| Op::Check(h.clone(), true))
            }
            "READDATA" | "WRITEDATA" => {
                let n = match words.get(2).map(|n| n.parse::<usize>()) {
                    Some(Ok(n)) if words.len() == 3 => n,
                    _ => {
                        answer_line(&mut w, &Answer::err(500, "Syntax error: HANDLER LENGTH"));
                        continue;
                    }
                };
                if n > ctx.cfg.max_data {
                    ctx.stats.oversized.fetch_add(1, Ordering::Relaxed);
                    let _ = w.write_all(b"521 Data too big\r\n");
                    return;
                }
                let mut data = vec![0u8; n];
                if r.read_exact(&mut data).is_err() {
                    return;
                }
                let data = String::from_utf8_lossy(&data).into_owned();
                if cmd == "READDATA" {
                    let h = words[1].to_string();
                    ask(ctx, |_| Op::Read(h.clone(), data.clone()))
                } else {
                    write(ctx, words[1], &data)
                }
            }
            "READUNTIL" | "WRITEUNTIL" if words.len() >= 2 => {
                let term = words.get(2).copied().unwrap_or("").trim_end().to_string();
                let mut data = String::new();
                loop {
                    match read_line(&mut r, ctx.cfg.max_line) {
                        Ok(Some(Ok(l))) if l.trim_end() == term => break,
                        Ok(Some(Ok(l))) => {
                            data.push_str(&l);
                            data.push('\n');
                            if data.len() > ctx.cfg.max_data {
                                ctx.stats.oversized.fetch_add(1, Ordering::Relaxed);
                                let _ = w.write_all(b"521 Data too big\r\n");
                                return;
                            }
                        }
                        _ => return,
                    }
                }
                if cmd == "READUNTIL" {
                    let h = words[1].to_string();
                    ask(ctx, |_| Op::Read(h.clone(), data.clone()))
                } else {
                    write(ctx, words[1], &data)
                }
            }
            "LLRPC" => Answer::err(501, "Unimplemented command 'LLRPC' (no LLRPCs here)"),
            other => Answer::err(501, format!("Unimplemented command '{other}'")),
        };
        ctx.stats.commands.fetch_add(1, Ordering::Relaxed);
        if answer.code >= 500 {
            ctx.stats.errors.fetch_add(1, Ordering::Relaxed);
        }
        if !answer_line(&mut w, &answer) {
            return;
        }
    }
}

/// The text of `line` after its first `n` words (a handler's parameters, spaces kept).
fn rest_after(line: &str, n: usize) -> String {
    let mut s = line.trim_start();
    for _ in 0..n {
        s = s.trim_start();
        match s.find(char::is_whitespace) {
            Some(i) => s = &s[i..],
            None => return String::new(),
        }
    }
    s.trim().to_string()
}

fn answer_line(w: &mut impl Write, a: &Answer) -> bool {
    // A message of several lines (a configuration's errors) goes as Click sends one: every line but
    // the last as `CODE-text`, the last as `CODE text`.
    let lines: Vec<&str> = a
        .message
        .split(['\r', '\n'])
        .filter(|l| !l.is_empty())
        .collect();
    let mut out = String::new();
    for (i, l) in lines.iter().enumerate() {
        let sep = if i + 1 < lines.len() { '-' } else { ' ' };
        out.push_str(&format!("{}{sep}{l}\r\n", a.code));
    }
    if lines.is_empty() {
        out = format!("{} \r\n", a.code);
    }
    if let Some(d) = &a.data {
        out.push_str(&format!("DATA {}\r\n", d.len()));
        out.push_str(d);
    }
    w.write_all(out.as_bytes()).is_ok() && w.flush().is_ok()
}

/// Hands `op` to the router's thread (every shard's) and waits (bounded) for the answer.
fn ask(ctx: &ConnCtx, op: impl FnMut(usize) -> Op) -> Answer {
    match ask_each(ctx, op) {
        Ok(answers) => combine(answers),
        Err(a) => a,
    }
}

/// Hands `op(i)` to shard `i`'s thread, for every shard, and waits (bounded) for their answers.
fn ask_each(ctx: &ConnCtx, mut op: impl FnMut(usize) -> Op) -> Result<Vec<Answer>, Answer> {
    let deadline = std::time::Instant::now() + ctx.cfg.command_timeout;
    let mut waits = Vec::with_capacity(ctx.tx.len());
    for (i, shard) in ctx.tx.iter().enumerate() {
        let (tx, rx) = sync_channel(1);
        let mut req = Request {
            op: op(i),
            reply: tx,
        };
        // Many commands at once fill the queue: wait for room, within the command's bound.
        loop {
            match shard.try_send(req) {
                Ok(()) => break,
                Err(std::sync::mpsc::TrySendError::Full(r)) => {
                    if std::time::Instant::now() >= deadline {
                        ctx.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                        return Err(Answer::err(520, "The router's command queue stayed full"));
                    }
                    req = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(std::sync::mpsc::TrySendError::Disconnected(_)) => {
                    return Err(Answer::err(540, "No router running"));
                }
            }
        }
        waits.push(rx);
    }
    let mut answers = Vec::with_capacity(waits.len());
    for rx in waits {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(a) => answers.push(a),
            Err(RecvTimeoutError::Timeout) => {
                ctx.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                return Err(Answer::err(
                    520,
                    "The router did not answer in time (it is not running its rounds)",
                ));
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(Answer::err(540, "No router running"));
            }
        }
    }
    Ok(answers)
}

/// One answer from the shards' answers: the first error, or the values combined.
fn combine(mut answers: Vec<Answer>) -> Answer {
    if answers.len() <= 1 {
        return answers
            .pop()
            .unwrap_or_else(|| Answer::err(540, "No router running"));
    }
    if let Some(i) = answers.iter().position(|a| a.code >= 300) {
        return answers.swap_remove(i);
    }
    let datas: Option<Vec<&str>> = answers.iter().map(|a| a.data.as_deref()).collect();
    let data = datas.map(|d| {
        let ints: Option<Vec<u128>> = d.iter().map(|v| v.trim().parse::<u128>().ok()).collect();
        match ints {
            Some(v) => v.iter().sum::<u128>().to_string(),
            None if d.iter().all(|v| *v == d[0]) => d[0].to_string(),
            None => d.join(" / "),
        }
    });
    let first = answers.swap_remove(0);
    Answer {
        data,
        ..Answer::err(first.code, first.message)
    }
}

impl ControlPort {
    /// Answers every waiting request (called by the router between rounds).
    pub(crate) fn poll(&self, router: &mut Router) {
        while let Ok(req) = self.rx.try_recv() {
            let a = self.answer(router, req.op);
            let _ = req.reply.try_send(a);
        }
    }

    fn answer(&self, router: &mut Router, op: Op) -> Answer {
        // The run's steering (`steering.NAME`), unless an element is called `steering`.
        let steer = |h: &str| -> Option<String> {
            let name = h.strip_prefix("steering.")?;
            (router.find("steering").is_none() && router.steering().is_some())
                .then(|| name.to_string())
        };
        match &op {
            Op::Read(h, _) => {
                if let Some(name) = steer(h) {
                    return steering_read(router, &name);
                }
            }
            Op::Write(h, value) => {
                if let Some(name) = steer(h) {
                    if self.read_only {
                        return Answer::err(530, "Permission denied (a read-only control socket)");
                    }
                    return steering_write(router, &name, value);
                }
            }
            _ => {}
        }
        match op {
            Op::Read(h, params) => match split_handler(router, &h) {
                Err(a) => a,
                Ok(None) => self.global(router, &h),
                Ok(Some((e, name))) => {
                    // Read handlers take no parameters here (Click's few that do are not needed).
                    let _ = params;
                    match router.read_handler(&e, name) {
                        Ok(v) => Answer::data(200, format!("Read handler '{h}' OK"), v),
                        Err(crate::Error::Handler { message, .. })
                            if message == "no such read handler" =>
                        {
                            no_handler(router, &e, name, &h, false)
                        }
                        Err(err) => Answer::err(520, err.to_string()),
                    }
                }
            },
            Op::Write(h, value) => {
                if self.read_only {
                    return Answer::err(530, "Permission denied (a read-only control socket)");
                }
                match split_handler(router, &h) {
                    Err(a) => a,
                    Ok(None) => Answer::err(511, format!("No write handler named '{h}'")),
                    Ok(Some((e, name))) => {
                        if !router.handler_spec(&e, name).is_some_and(|s| s.write) {
                            return no_handler(router, &e, name, &h, true);
                        }
                        match router.write_handler(&e, name, &value) {
                            Ok(()) => Answer::err(200, format!("Write handler '{h}' OK")),
                            Err(crate::Error::Handler { message, .. }) => Answer::err(520, message),
                            Err(err) => Answer::err(520, err.to_string()),
                        }
                    }
                }
            }
            Op::Metrics => Answer {
                metrics: Some(Box::new(ShardMetrics {
                    shard: 0,
                    run: router.run_stats(),
                    pool: crate::pool::stats(),
                    pooled: crate::pool::pooled(),
                    handlers: router.handler_samples(),
                    swaps: router.swaps(),
                })),
                ..Answer::err(200, "Metrics OK")
            },
            Op::HotConfig(new, text, flat) => {
                if self.read_only {
                    return Answer::err(530, "Permission denied (a read-only control socket)");
                }
                let swap = match router.hot_swap(*new) {
                    Ok(s) => s,
                    Err(e) => return Answer::err(520, e.to_string()),
                };
                router.set_config_texts(text, flat);
                let ok = format!(
                    "Write handler 'hotconfig' OK ({} of {} elements took their old state; paused {} us)",
                    swap.kept,
                    swap.elements,
                    swap.pause_ns / 1000
                );
                if swap.replaced.is_empty() {
                    Answer::err(200, ok)
                } else {
                    // Click's 220: done, with warnings.
                    Answer::err(
                        220,
                        format!(
                            "{ok}\nwarning: another class under the same name, its state dropped: {}",
                            swap.replaced.join(", ")
                        ),
                    )
                }
            }
            Op::Check(h, write) if h == "hotconfig" && write => {
                if self.read_only {
                    Answer::err(530, "Permission denied (a read-only control socket)")
                } else {
                    Answer::err(200, "Write handler 'hotconfig' OK")
                }
            }
            Op::Check(h, write) => match split_handler(router, &h) {
                Err(a) => a,
                Ok(None) if !write && GLOBALS.contains(&h.as_str()) => {
                    Answer::err(200, format!("Read handler '{h}' OK"))
                }
                Ok(None) => Answer::err(511, format!("No handler named '{h}'")),
                Ok(Some((e, name))) => match router.handler_spec(&e, name) {
                    Some(s) if (write && s.write) || (!write && s.read) => {
                        if write && self.read_only {
                            Answer::err(530, "Permission denied (a read-only control socket)")
                        } else {
                            Answer::err(
                                200,
                                format!(
                                    "{} handler '{h}' OK",
                                    if write { "Write" } else { "Read" }
                                ),
                            )
                        }
                    }
                    _ => no_handler(router, &e, name, &h, write),
                },
            },
        }
    }

    fn global(&self, router: &Router, h: &str) -> Answer {
        let data = match h {
            "version" => env!("CARGO_PKG_VERSION").to_string(),
            "list" => {
                let names: Vec<&str> = router.names().collect();
                let mut s = format!("{}\n", names.len());
                for n in names {
                    s.push_str(n);
                    s.push('\n');
                }
                s
            }
            "classes" => {
                let mut c: Vec<&str> = router.classes().collect();
                c.sort_unstable();
                c.dedup();
                c.iter().map(|c| format!("{c}\n")).collect()
            }
            "config" => router.config_texts().0.to_string(),
            "flatconfig" => router.config_texts().1.to_string(),
            _ => return Answer::err(511, format!("No global handler named '{h}'")),
        };
        Answer::data(200, format!("Read handler '{h}' OK"), data)
    }
}

/// `READ steering.NAME`: the run's indirection table and moves (the same on every shard).
fn steering_read(router: &Router, name: &str) -> Answer {
    let Some(st) = router.steering() else {
        return Answer::err(511, format!("No handler named 'steering.{name}'"));
    };
    let data = match name {
        "table" => st.table().to_text(),
        "buckets" => st
            .table()
            .buckets_per_shard()
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(" / "),
        "loads" => {
            let shares = st.shares();
            let per: Vec<String> = shares
                .iter()
                .map(|&s| format!("{}.{}%", s / 10, s % 10))
                .collect();
            format!(
                "controller {}; shares at its last look: {}",
                if st.balance().is_some() { "on" } else { "off" },
                per.join(" / ")
            )
        }
        "moves" => {
            let s = st.stats();
            format!(
                "scheduled {} completed {} in_flight {} by_controller {} looks {} entries_moved {} \
                 held_ms {:.3} longest_held_ms {:.3}",
                s.scheduled,
                s.completed,
                st.in_flight().len(),
                s.rebalanced,
                s.decisions,
                s.entries_moved,
                s.held_ns as f64 / 1e6,
                s.max_held_ns as f64 / 1e6
            )
        }
        "epochs" => st
            .epochs()
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join(" / "),
        "shards" => st.active_shards().to_string(),
        "movable" => match st.why_fixed() {
            None => "yes".into(),
            Some(why) => format!("no: {why}"),
        },
        _ => return Answer::err(511, format!("No handler named 'steering.{name}'")),
    };
    Answer::data(200, format!("Read handler 'steering.{name}' OK"), data)
}

/// `WRITE steering.move BUCKET SHARD`, `WRITE steering.balance on|off` and `WRITE steering.shards N`:
/// carried out by shard 0 (every shard is asked; the others answer OK).
fn steering_write(router: &Router, name: &str, value: &str) -> Answer {
    let Some(st) = router.steering() else {
        return Answer::err(511, format!("No handler named 'steering.{name}'"));
    };
    let ok = || Answer::err(200, format!("Write handler 'steering.{name}' OK"));
    let first = router.shard().0 == 0;
    match name {
        "move" => {
            let w: Vec<&str> = value.split_whitespace().collect();
            let parsed = match w.as_slice() {
                [b, s] => b.parse::<usize>().ok().zip(s.parse::<usize>().ok()),
                _ => None,
            };
            let Some((bucket, shard)) = parsed else {
                return Answer::err(520, "usage: WRITE steering.move BUCKET SHARD");
            };
            if !first {
                return ok();
            }
            match st.request_move(bucket, shard) {
                Ok(_) => ok(),
                Err(e) => Answer::err(520, e.to_string()),
            }
        }
        "balance" => {
            let on = match value.trim() {
                "on" | "true" | "1" => true,
                "off" | "false" | "0" => false,
                v => return Answer::err(520, format!("balance is on or off, not `{v}`")),
            };
            if on && let Some(why) = st.why_fixed() {
                return Answer::err(520, format!("this run cannot move buckets: {why}"));
            }
            if first {
                st.set_balance(on.then(crate::indirection::Balance::default));
            }
            ok()
        }
        "shards" => {
            let Ok(n) = value.trim().parse::<usize>() else {
                return Answer::err(520, "usage: WRITE steering.shards N");
            };
            if !first {
                return ok();
            }
            match st.set_shards(n) {
                Ok(_) => ok(),
                Err(e) => Answer::err(520, e.to_string()),
            }
        }
        _ => Answer::err(511, format!("No write handler named 'steering.{name}'")),
    }
}

/// The global read handlers.
pub const GLOBALS: &[&str] = &["version", "list", "classes", "config", "flatconfig"];

/// `element.handler` (element by name or by number from 1) split; `Ok(None)`: a global handler name.
fn split_handler<'a>(router: &Router, h: &'a str) -> Result<Option<(String, &'a str)>, Answer> {
    let Some((e, name)) = h.rsplit_once('.') else {
        return Ok(None);
    };
    if name.is_empty() || e.is_empty() {
        return Err(Answer::err(
            500,
            format!("Syntax error: bad handler name '{h}'"),
        ));
    }
    if router.find(e).is_some() {
        return Ok(Some((e.to_string(), name)));
    }
    if let Ok(i) = e.parse::<usize>()
        && i >= 1
        && let Some(n) = router.names().nth(i - 1)
    {
        return Ok(Some((n.to_string(), name)));
    }
    Err(Answer::err(510, format!("No element named '{e}'")))
}

fn no_handler(router: &Router, e: &str, name: &str, h: &str, write: bool) -> Answer {
    let exists = router.handler_spec(e, name).is_some();
    if exists {
        Answer::err(
            511,
            format!(
                "Handler '{h}' is not {}",
                if write { "writable" } else { "readable" }
            ),
        )
    } else {
        Answer::err(511, format!("No handler named '{h}'"))
    }
}

/// A control connection's answer to a command, as a client reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The response code.
    pub code: u16,
    /// The message after the code.
    pub message: String,
    /// For reads: the data.
    pub data: Option<String>,
}

/// A small client of the protocol (what `nf ctl` uses).
pub struct Client {
    r: BufReader<Box<dyn Read + Send>>,
    w: Box<dyn Write + Send>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Client")
    }
}

/// Why a client command failed (not a 5xx answer: those are [`Reply`]s).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The connection failed.
    #[error("control connection: {0}")]
    Io(#[from] std::io::Error),
    /// The server does not speak the protocol.
    #[error("not a Click control socket: `{0}`")]
    Protocol(String),
}

impl Client {
    /// Connects to `at` and reads the banner.
    pub fn connect(at: &Listen, timeout: Duration) -> Result<Client, ClientError> {
        let (r, w): (Box<dyn Read + Send>, Box<dyn Write + Send>) = match at {
            Listen::Tcp(a) => {
                let s = TcpStream::connect_timeout(a, timeout)?;
                s.set_read_timeout(Some(timeout))?;
                (Box::new(s.try_clone()?), Box::new(s))
            }
            #[cfg(unix)]
            Listen::Unix(p) => {
                let s = std::os::unix::net::UnixStream::connect(p)?;
                s.set_read_timeout(Some(timeout))?;
                (Box::new(s.try_clone()?), Box::new(s))
            }
            #[cfg(not(unix))]
            Listen::Unix(_) => return Err(std::io::Error::other("Unix sockets need Unix").into()),
        };
        let mut c = Client {
            r: BufReader::new(r),
            w,
        };
        let mut banner = String::new();
        c.r.read_line(&mut banner)?;
        if !banner.starts_with("Click::ControlSocket/") {
            return Err(ClientError::Protocol(banner.trim_end().to_string()));
        }
        Ok(c)
    }

    /// Sends one command line (and `data`, for the `...DATA` commands) and reads the answer.
    pub fn command(&mut self, line: &str, data: Option<&[u8]>) -> Result<Reply, ClientError> {
        self.w.write_all(line.as_bytes())?;
        self.w.write_all(b"\r\n")?;
        if let Some(d) = data {
            self.w.write_all(d)?;
        }
        self.w.flush()?;
        // The answer's lines: `CODE-text` continues, `CODE text` ends.
        let mut parts = Vec::new();
        let code = loop {
            let mut l = String::new();
            if self.r.read_line(&mut l)? == 0 {
                return Err(ClientError::Protocol("connection closed".into()));
            }
            let l = l.trim_end();
            let (c, rest) = l.split_at(l.len().min(3));
            let code: u16 = c
                .parse()
                .map_err(|_| ClientError::Protocol(l.to_string()))?;
            parts.push(rest.get(1..).unwrap_or("").to_string());
            if !rest.starts_with('-') {
                break code;
            }
        };
        let message = parts.join("\n");
        let mut data = None;
        if code / 100 == 2 && line.trim_start().to_ascii_uppercase().starts_with("READ") {
            let mut d = String::new();
            self.r.read_line(&mut d)?;
            let n: usize = d
                .trim_end()
                .strip_prefix("DATA ")
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| ClientError::Protocol(d.trim_end().to_string()))?;
            let mut buf = vec![0u8; n];
            self.r.read_exact(&mut buf)?;
            data = Some(String::from_utf8_lossy(&buf).into_owned());
        }
        Ok(Reply {
            code,
            message,
            data,
        })
    }

    /// `READ handler`.
    pub fn read(&mut self, handler: &str) -> Result<Reply, ClientError> {
        self.command(&format!("READ {handler}"), None)
    }

    /// `WRITEDATA handler n` with `value` (any bytes, newlines included).
    pub fn write(&mut self, handler: &str, value: &str) -> Result<Reply, ClientError> {
        self.command(
            &format!("WRITEDATA {handler} {}", value.len()),
            Some(value.as_bytes()),
        )
    }
}
