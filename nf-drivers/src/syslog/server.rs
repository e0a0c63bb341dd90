//! The syslog server and driver: listeners (UDP, TCP with both RFC 6587 framings, Unix datagram) feed a
//! bounded queue; one task parses and extracts; one task writes batches of records to the store.
//!
//! Memory is bounded everywhere: datagrams beyond the queue are dropped and counted; TCP readers wait
//! for room (the kernel's windows then slow the senders down); a TCP message is at most `max_message`
//! bytes; at most `max_connections` TCP senders at once, `max_per_source` from one address, each closed
//! after `idle_timeout` without a byte; the ring of unparsed messages is bounded.

use super::extract::{Emitter, Extractor};
use super::framing::{FrameError, Framer, trim_end};
use super::kernel_clock::KernelClocks;
use super::message::{Format, parse};
use crate::Error;
use crate::driver::{CounterSnapshot, DriverCounters, Shutdown, StateDriver};
use bytes::{Bytes, BytesMut};
use nf_state::replicate::Histogram;
use nf_state::{Codec, Record, StateStore};
use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

/// Where the server listens: `udp://HOST:PORT`, `tcp://HOST:PORT` or `unix:///PATH` (datagrams). Without a
/// host (`udp://:514`) the server listens on loopback only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// UDP datagrams, one message each.
    Udp(SocketAddr),
    /// TCP streams, RFC 6587 framing (octet counting or LF).
    Tcp(SocketAddr),
    /// A Unix datagram socket, one message each.
    Unix(PathBuf),
}

impl FromStr for Listen {
    type Err = Error;
    fn from_str(s: &str) -> Result<Listen, Error> {
        let bad = |why: &str| Error::Config(format!("listen address `{s}`: {why}"));
        if let Some(p) = s.strip_prefix("unix://") {
            if p.is_empty() {
                return Err(bad("no path"));
            }
            return Ok(Listen::Unix(PathBuf::from(p)));
        }
        let (scheme, addr) = s
            .split_once("://")
            .ok_or_else(|| bad("expected udp://HOST:PORT, tcp://HOST:PORT or unix:///PATH"))?;
        // `udp://:514`: no host means loopback (a listener is opened to the network only when asked).
        let addr: SocketAddr = match addr.strip_prefix(':') {
            Some(port) => format!("127.0.0.1:{port}").parse(),
            None => addr.parse(),
        }
        .map_err(|_| bad("bad HOST:PORT"))?;
        match scheme {
            "udp" => Ok(Listen::Udp(addr)),
            "tcp" => Ok(Listen::Tcp(addr)),
            _ => Err(bad("unknown scheme (udp, tcp, unix)")),
        }
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::Udp(a) => write!(f, "udp://{a}"),
            Listen::Tcp(a) => write!(f, "tcp://{a}"),
            Listen::Unix(p) => write!(f, "unix://{}", p.display()),
        }
    }
}

/// Settings of a [`SyslogDriver`].
#[derive(Debug, Clone)]
pub struct SyslogConfig {
    /// Sockets to listen on.
    pub listen: Vec<Listen>,
    /// Messages the queue holds between the listeners and the parser.
    pub queue: usize,
    /// Longest message accepted, in bytes.
    pub max_message: usize,
    /// Most TCP senders at once (more wait in the kernel's accept queue).
    pub max_connections: usize,
    /// Most TCP connections from one source address at once (more are closed at once and counted in
    /// `per_source_refused`): one sender cannot take every slot.
    pub max_per_source: usize,
    /// A TCP connection that sends nothing for this long is closed (counted in `idle_closed`), so that
    /// idle senders do not hold slots for ever. Syslog senders reconnect when they next have something
    /// to say (rsyslog, syslog-ng and util-linux's logger all do).
    pub idle_timeout: Duration,
    /// Unparsed messages kept for inspection.
    pub keep_unparsed: usize,
    /// Most records per store write.
    pub batch: usize,
    /// Codec of the records' keys and values.
    pub codec: Codec,
    /// The records' origin.
    pub origin: String,
    /// Receive buffer asked of the kernel for datagram sockets (it may grant less: `net.core.rmem_max`).
    pub recv_buffer: usize,
    /// Senders allowed (UDP and TCP source addresses); empty: any. Others are refused and counted.
    pub allow: Vec<nf_core::lpm::Prefix>,
}

impl Default for SyslogConfig {
    fn default() -> Self {
        SyslogConfig {
            listen: Vec::new(),
            queue: 1 << 16,
            max_message: 128 * 1024,
            max_connections: 1024,
            max_per_source: 64,
            idle_timeout: Duration::from_secs(300),
            keep_unparsed: 64,
            batch: 4096,
            codec: Codec::Bincode,
            origin: "syslog".into(),
            recv_buffer: 8 << 20,
            allow: Vec::new(),
        }
    }
}

/// The server's own counters, beyond the [`DriverCounters`].
#[derive(Debug, Default)]
pub struct SyslogStats {
    /// Messages received over UDP.
    pub udp: AtomicU64,
    /// Messages received over TCP.
    pub tcp: AtomicU64,
    /// Messages received over the Unix socket.
    pub unix: AtomicU64,
    /// TCP connections accepted.
    pub connections: AtomicU64,
    /// Messages over the size limit (skipped).
    pub oversized: AtomicU64,
    /// Messages that are not syslog (kept in the ring).
    pub unparsed: AtomicU64,
    /// Messages the extractor did not want (no record).
    pub ignored: AtomicU64,
    /// Messages the extractor recognised but could not use (kept in the ring).
    pub extract_errors: AtomicU64,
    /// Store writes retried.
    pub store_retries: AtomicU64,
    /// Datagrams and connections from senders not on the allow-list (refused).
    pub refused: AtomicU64,
    /// TCP connections closed at once because their source already held `max_per_source`.
    pub per_source_refused: AtomicU64,
    /// TCP connections closed after `idle_timeout` without a byte.
    pub idle_closed: AtomicU64,
    /// Kernel records (kmsg form) that yielded records: the delay from the kernel's log call to the
    /// parser, per sender's clock (see [`super::kernel_clock`]). Their records are dated back by it, so
    /// the driver's `store_lag` runs from the kernel's LOG line for them.
    pub kernel_lag: Histogram,
}

/// A message that did not parse or extract, kept for inspection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unparsed {
    /// Why.
    pub reason: String,
    /// The message (at most 1 KiB of it, invalid UTF-8 replaced).
    pub line: String,
}

/// The bounded ring of [`Unparsed`] messages.
#[derive(Debug)]
pub struct UnparsedRing {
    cap: usize,
    ring: Mutex<VecDeque<Unparsed>>,
}

impl UnparsedRing {
    fn push(&self, reason: String, line: &str) {
        if self.cap == 0 {
            return;
        }
        let mut end = line.len().min(1024);
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        let mut r = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        if r.len() == self.cap {
            r.pop_front();
        }
        r.push_back(Unparsed {
            reason,
            line: line[..end].to_string(),
        });
    }
    /// The messages kept, oldest first.
    pub fn snapshot(&self) -> Vec<Unparsed> {
        let r = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        r.iter().cloned().collect()
    }
}

enum Bound {
    Udp(std::net::UdpSocket),
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixDatagram, PathBuf),
}

/// The syslog driver: a server whose messages an [`Extractor`] turns into records for a store.
pub struct SyslogDriver {
    cfg: SyslogConfig,
    extractor: Option<Box<dyn Extractor>>,
    bound: Vec<Bound>,
    local: Vec<Listen>,
    counters: Arc<DriverCounters>,
    stats: Arc<SyslogStats>,
    unparsed: Arc<UnparsedRing>,
}

impl fmt::Debug for SyslogDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyslogDriver")
            .field("listen", &self.local)
            .field("counters", &self.counters.snapshot())
            .finish()
    }
}

fn net(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Net { what, source }
}

fn datagram_socket(
    addr: SocketAddr,
    recv_buffer: usize,
) -> Result<std::net::UdpSocket, std::io::Error> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: the kernel caps it at net.core.rmem_max.
    let _ = s.set_recv_buffer_size(recv_buffer);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

impl SyslogDriver {
    /// Binds every listener (a port 0 is given a free port: see [`local_addrs`](Self::local_addrs)).
    pub async fn bind(
        cfg: SyslogConfig,
        extractor: Box<dyn Extractor>,
    ) -> Result<SyslogDriver, Error> {
        if cfg.listen.is_empty() {
            return Err(Error::Config(
                "the syslog server needs at least one --listen".into(),
            ));
        }
        let mut bound = Vec::new();
        let mut local = Vec::new();
        for l in &cfg.listen {
            let what = format!("bind {l}");
            match l {
                Listen::Udp(a) => {
                    let s = datagram_socket(*a, cfg.recv_buffer).map_err(net(what.clone()))?;
                    local.push(Listen::Udp(s.local_addr().map_err(net(what))?));
                    bound.push(Bound::Udp(s));
                }
                Listen::Tcp(a) => {
                    let s = tokio::net::TcpListener::bind(a)
                        .await
                        .map_err(net(what.clone()))?;
                    local.push(Listen::Tcp(s.local_addr().map_err(net(what))?));
                    bound.push(Bound::Tcp(s));
                }
                Listen::Unix(p) => {
                    // A socket file left by an earlier run.
                    if std::fs::symlink_metadata(p)
                        .map(|m| {
                            use std::os::unix::fs::FileTypeExt;
                            m.file_type().is_socket()
                        })
                        .unwrap_or(false)
                    {
                        let _ = std::fs::remove_file(p);
                    }
                    let s = tokio::net::UnixDatagram::bind(p).map_err(net(what))?;
                    let sock = socket2::SockRef::from(&s);
                    let _ = sock.set_recv_buffer_size(cfg.recv_buffer);
                    local.push(l.clone());
                    bound.push(Bound::Unix(s, p.clone()));
                }
            }
        }
        Ok(SyslogDriver {
            unparsed: Arc::new(UnparsedRing {
                cap: cfg.keep_unparsed,
                ring: Mutex::new(VecDeque::new()),
            }),
            cfg,
            extractor: Some(extractor),
            bound,
            local,
            counters: Arc::new(DriverCounters::default()),
            stats: Arc::new(SyslogStats::default()),
        })
    }

    /// The addresses actually bound.
    pub fn local_addrs(&self) -> &[Listen] {
        &self.local
    }

    /// The server's own counters.
    pub fn stats(&self) -> Arc<SyslogStats> {
        self.stats.clone()
    }

    /// The ring of unparsed messages.
    pub fn unparsed(&self) -> Arc<UnparsedRing> {
        self.unparsed.clone()
    }
}

/// A message as the listeners hand it to the parser: its bytes and its sender's address (`None`
/// through the Unix socket).
type Inbound = (Bytes, Option<std::net::IpAddr>);

struct Ctx {
    tx: mpsc::Sender<Inbound>,
    counters: Arc<DriverCounters>,
    stats: Arc<SyslogStats>,
    allow: Arc<[nf_core::lpm::Prefix]>,
}

impl Ctx {
    /// True if `peer` may send (and counts it if not).
    fn allowed(&self, peer: std::net::IpAddr) -> bool {
        let ip = peer.to_canonical();
        let ok = self.allow.is_empty() || self.allow.iter().any(|p| p.contains(ip));
        if !ok {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// A datagram's message: dropped (and counted) if the queue is full.
    fn offer(&self, msg: Bytes, sender: Option<std::net::IpAddr>) {
        if self.tx.try_send((msg, sender)).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A UDP socket's receive loop, on a thread of its own: it must keep draining the kernel's buffer
/// whatever the runtime's tasks are doing (parsing, store writes), or the kernel drops datagrams.
fn datagrams_udp(s: std::net::UdpSocket, ctx: Ctx, shutdown: Shutdown, max: usize) {
    let mut buf = vec![0u8; max.clamp(512, 65536)];
    // Blocking reads that wake every 50 ms to see the stop order.
    if s.set_nonblocking(false).is_err()
        || s.set_read_timeout(Some(Duration::from_millis(50))).is_err()
    {
        return;
    }
    while !shutdown.is_set() {
        match s.recv_from(&mut buf) {
            Ok((_, peer)) if !ctx.allowed(peer.ip()) => {}
            Ok((n, peer)) => {
                ctx.stats.udp.fetch_add(1, Ordering::Relaxed);
                let mut m = Bytes::copy_from_slice(&buf[..n]);
                trim_end(&mut m);
                ctx.offer(m, Some(peer.ip().to_canonical()));
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

async fn datagrams_unix(s: tokio::net::UnixDatagram, ctx: Ctx, mut shutdown: Shutdown, max: usize) {
    let mut buf = vec![0u8; max.clamp(512, 1 << 20)];
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            r = s.recv(&mut buf) => match r {
                Ok(n) => {
                    ctx.stats.unix.fetch_add(1, Ordering::Relaxed);
                    let mut m = Bytes::copy_from_slice(&buf[..n]);
                    trim_end(&mut m);
                    ctx.offer(m, None);
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
    }
}

/// The limits of the TCP listener.
#[derive(Debug, Clone, Copy)]
struct TcpLimits {
    max_message: usize,
    max_connections: usize,
    max_per_source: usize,
    idle: Duration,
}

/// Connections held per source address (an entry leaves with its source's last connection, so the map
/// holds at most `max_connections` entries).
type PerSource = Arc<Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>;

async fn tcp_accept(l: tokio::net::TcpListener, ctx: Ctx, mut shutdown: Shutdown, lim: TcpLimits) {
    let permits = Arc::new(tokio::sync::Semaphore::new(lim.max_connections.max(1)));
    let per_source: PerSource = Arc::default();
    loop {
        let permit = tokio::select! {
            _ = shutdown.wait() => return,
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
        let (stream, source) = tokio::select! {
            _ = shutdown.wait() => return,
            r = l.accept() => match r {
                // Refused: the stream is dropped (closed) at once.
                Ok((_, peer)) if !ctx.allowed(peer.ip()) => continue,
                Ok((s, peer)) => (s, peer.ip()),
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        };
        {
            let mut held = per_source.lock().unwrap_or_else(|e| e.into_inner());
            let n = held.entry(source).or_insert(0);
            if *n >= lim.max_per_source.max(1) {
                ctx.stats.per_source_refused.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            *n += 1;
        }
        ctx.stats.connections.fetch_add(1, Ordering::Relaxed);
        let conn = Ctx {
            tx: ctx.tx.clone(),
            counters: ctx.counters.clone(),
            stats: ctx.stats.clone(),
            allow: ctx.allow.clone(),
        };
        let sd = shutdown.clone();
        let per_source = per_source.clone();
        tokio::spawn(async move {
            tcp_connection(stream, conn, sd, lim).await;
            let mut held = per_source.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = held.get_mut(&source) {
                *n -= 1;
                if *n == 0 {
                    held.remove(&source);
                }
            }
            drop(permit);
        });
    }
}

async fn tcp_connection(
    mut s: tokio::net::TcpStream,
    ctx: Ctx,
    mut shutdown: Shutdown,
    lim: TcpLimits,
) {
    let peer = s.peer_addr().ok().map(|a| a.ip().to_canonical());
    let mut framer = Framer::new(lim.max_message);
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let deliver = |f: Result<Bytes, FrameError>| async {
        match f {
            Ok(m) => {
                ctx.stats.tcp.fetch_add(1, Ordering::Relaxed);
                // Back-pressure, not loss: wait for room in the queue.
                ctx.tx.send((m, peer)).await.is_ok()
            }
            Err(FrameError::Oversized { .. }) => {
                ctx.counters.seen.fetch_add(1, Ordering::Relaxed);
                ctx.counters.rejected.fetch_add(1, Ordering::Relaxed);
                ctx.stats.oversized.fetch_add(1, Ordering::Relaxed);
                true
            }
        }
    };
    loop {
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        let n = tokio::select! {
            _ = shutdown.wait() => 0,
            r = tokio::time::timeout(lim.idle, s.read_buf(&mut buf)) => match r {
                Ok(r) => r.unwrap_or(0),
                Err(_) => {
                    // Idle past the timeout: closed (what was framed so far is delivered below).
                    ctx.stats.idle_closed.fetch_add(1, Ordering::Relaxed);
                    0
                }
            },
        };
        if n == 0 {
            while let Some(f) = framer.finish(&mut buf) {
                if !deliver(f).await {
                    return;
                }
            }
            return;
        }
        while let Some(f) = framer.next_frame(&mut buf) {
            if !deliver(f).await {
                return;
            }
        }
    }
}

#[async_trait::async_trait]
impl StateDriver for SyslogDriver {
    fn name(&self) -> &str {
        "syslog"
    }

    fn counters(&self) -> Arc<DriverCounters> {
        self.counters.clone()
    }

    async fn run(
        &mut self,
        store: Arc<dyn StateStore>,
        mut shutdown: Shutdown,
    ) -> Result<CounterSnapshot, Error> {
        let mut extractor = self
            .extractor
            .take()
            .ok_or_else(|| Error::Config("the syslog driver has already run".into()))?;
        let (tx, mut rx) = mpsc::channel::<Inbound>(self.cfg.queue.max(1));
        let mut sockets = Vec::new();
        let mut unix_paths = Vec::new();
        for b in self.bound.drain(..) {
            let ctx = Ctx {
                tx: tx.clone(),
                counters: self.counters.clone(),
                stats: self.stats.clone(),
                allow: Arc::from(self.cfg.allow.clone()),
            };
            let sd = shutdown.clone();
            let max = self.cfg.max_message;
            sockets.push(match b {
                Bound::Udp(s) => {
                    tokio::task::spawn_blocking(move || datagrams_udp(s, ctx, sd, max))
                }
                Bound::Unix(s, p) => {
                    unix_paths.push(p);
                    tokio::spawn(datagrams_unix(s, ctx, sd, max))
                }
                Bound::Tcp(l) => tokio::spawn(tcp_accept(
                    l,
                    ctx,
                    sd,
                    TcpLimits {
                        max_message: max,
                        max_connections: self.cfg.max_connections,
                        max_per_source: self.cfg.max_per_source,
                        idle: self.cfg.idle_timeout,
                    },
                )),
            });
        }
        drop(tx);

        // The writer: batches in order, retried while the store is away.
        let (batch_tx, batch_rx) = mpsc::channel::<Vec<Record>>(8);
        let stats = self.stats.clone();
        let writer = tokio::spawn(crate::driver::write_batches(
            store,
            batch_rx,
            self.counters.clone(),
            move || {
                stats.store_retries.fetch_add(1, Ordering::Relaxed);
            },
        ));

        let mut emitter = Emitter::new(self.cfg.codec, self.cfg.origin.clone());
        let mut clocks = KernelClocks::new();
        let batch = self.cfg.batch.max(1);
        let mut stopping = false;
        loop {
            let first = tokio::select! {
                m = rx.recv() => m,
                _ = shutdown.wait(), if !stopping => {
                    // The listeners stop and drop their senders; what they queued is still processed.
                    stopping = true;
                    continue;
                }
            };
            let Some((first, from)) = first else { break };
            self.handle(&first, from, &mut clocks, extractor.as_mut(), &mut emitter);
            while emitter.len() < batch {
                match rx.try_recv() {
                    Ok((m, from)) => {
                        self.handle(&m, from, &mut clocks, extractor.as_mut(), &mut emitter)
                    }
                    Err(_) => break,
                }
            }
            if !emitter.is_empty() && batch_tx.send(emitter.take()).await.is_err() {
                break;
            }
        }
        for s in sockets {
            let _ = s.await;
        }
        for p in unix_paths {
            let _ = std::fs::remove_file(p);
        }
        drop(batch_tx);
        let lost = writer.await.unwrap_or(0);
        if lost > 0 {
            return Err(Error::Config(format!(
                "the store refused {lost} records after 30 retries"
            )));
        }
        Ok(self.counters.snapshot())
    }
}

impl SyslogDriver {
    /// Parses one message and hands it to the extractor. A kernel record (kmsg form) is timed: its
    /// delay from the kernel's log call to here goes to `kernel_lag`, and the records it yields are
    /// dated back by it, so that the store lag they report runs from the kernel's LOG line.
    fn handle(
        &self,
        raw: &[u8],
        from: Option<std::net::IpAddr>,
        clocks: &mut KernelClocks,
        extractor: &mut dyn Extractor,
        out: &mut Emitter,
    ) {
        self.counters.seen.fetch_add(1, Ordering::Relaxed);
        let text = String::from_utf8_lossy(raw);
        match parse(&text) {
            Err(e) => {
                self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                self.stats.unparsed.fetch_add(1, Ordering::Relaxed);
                self.unparsed.push(e.to_string(), &text);
            }
            Ok(m) => {
                self.counters.parsed.fetch_add(1, Ordering::Relaxed);
                let before = out.len();
                match extractor.extract(&m, out) {
                    Ok(()) if out.len() == before => {
                        self.stats.ignored.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(()) => {
                        let delay = (m.format == Format::Kmsg)
                            .then(|| m.timestamp?.parse::<u64>().ok())
                            .flatten()
                            .and_then(|usec| clocks.delay(from, usec, std::time::Instant::now()));
                        if let Some(d) = delay {
                            self.stats.kernel_lag.record(d.as_nanos() as u64);
                            out.backdate(before, d);
                        }
                    }
                    Err(e) => {
                        self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                        self.stats.extract_errors.fetch_add(1, Ordering::Relaxed);
                        self.unparsed
                            .push(format!("{}: {e}", extractor.name()), &text);
                    }
                }
            }
        }
    }
}
