//! The syslog server against hostile senders: a source allow-list (UDP datagrams and TCP connections
//! from elsewhere are refused and counted), loopback when no host is given, and a flood of garbage (random
//! datagrams, lines cut anywhere, a 5 MB line without an end) amid which every valid line is still
//! accepted, memory stays bounded, and the counters say what was dropped and why.

use nf_drivers::driver::{Shutdown, StateDriver};
use nf_drivers::syslog::extract::NetfilterLog;
use nf_drivers::syslog::{Listen, SyslogConfig, SyslogDriver};
use nf_state::store::MemStore;
use nf_state::{Codec, StateStore};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn line(client_port: u16) -> String {
    format!(
        "<4>Nov 22 01:50:29 fw kernel: lb: IN=veth0 OUT=veth1 SRC=10.0.0.5 DST=10.1.0.9 LEN=60 TOS=0x00 \
         PREC=0x00 TTL=63 ID=4242 DF PROTO=TCP SPT={client_port} DPT=80 WINDOW=64240 RES=0x00 SYN URGP=0"
    )
}

async fn count(store: &Arc<dyn StateStore>) -> usize {
    store.scan("flow-mapping").await.unwrap().records.len()
}

/// The kernel's count of UDP datagrams dropped for want of receive-buffer room (all sockets).
fn udp_rcvbuf_errors() -> u64 {
    let t = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut lines = t.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(h), Some(v)) = (lines.next(), lines.next()) else {
        return 0;
    };
    h.split_whitespace()
        .zip(v.split_whitespace())
        .find(|(k, _)| *k == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

async fn server(
    listen: &[&str],
    allow: &[&str],
) -> (
    SyslogDriver,
    Arc<dyn StateStore>,
    nf_drivers::driver::ShutdownTrigger,
    Shutdown,
) {
    let cfg = SyslogConfig {
        listen: listen.iter().map(|l| l.parse().unwrap()).collect(),
        codec: Codec::Bincode,
        allow: allow.iter().map(|a| a.parse().unwrap()).collect(),
        ..Default::default()
    };
    let d = SyslogDriver::bind(cfg, Box::new(NetfilterLog::new(Some("lb".into()))))
        .await
        .unwrap();
    let (t, s) = Shutdown::new();
    (d, Arc::new(MemStore::new()), t, s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senders_off_the_allow_list_are_refused_and_counted() {
    // No host: loopback.
    let (mut d, store, stop, shutdown) = server(&["udp://:0", "tcp://:0"], &["127.0.0.2/32"]).await;
    let (Listen::Udp(u), Listen::Tcp(t)) = (d.local_addrs()[0].clone(), d.local_addrs()[1].clone())
    else {
        unreachable!()
    };
    assert!(u.ip().is_loopback() && t.ip().is_loopback(), "{u} {t}");
    let stats = d.stats();
    let s2 = store.clone();
    let task = tokio::spawn(async move { d.run(s2, shutdown).await });
    tokio::task::spawn_blocking(move || {
        for (src, base) in [("127.0.0.2", 1000u16), ("127.0.0.3", 2000)] {
            let s = std::net::UdpSocket::bind((src, 0)).unwrap();
            for i in 0..50 {
                s.send_to(line(base + i).as_bytes(), u).unwrap();
            }
            let sock =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            sock.bind(
                &std::net::SocketAddr::from((src.parse::<std::net::Ipv4Addr>().unwrap(), 0)).into(),
            )
            .unwrap();
            sock.connect(&t.into()).unwrap();
            let mut c: std::net::TcpStream = sock.into();
            for i in 50..100 {
                // A refused connection is closed: writes may fail; that is the point.
                if writeln!(c, "{}", line(base + i)).is_err() {
                    break;
                }
            }
        }
    })
    .await
    .unwrap();
    let t0 = Instant::now();
    while count(&store).await < 100 && t0.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.trigger();
    let done = task.await.unwrap().unwrap();
    assert_eq!(
        count(&store).await,
        100,
        "127.0.0.2's 50 datagrams and 50 lines: {done}"
    );
    // 50 datagrams and one connection from 127.0.0.3.
    assert_eq!(stats.refused.load(Ordering::Relaxed), 51);
    assert_eq!(stats.connections.load(Ordering::Relaxed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_flood_leaves_valid_lines_accepted_and_memory_bounded() {
    let (mut d, store, stop, shutdown) =
        server(&["udp://127.0.0.1:0", "tcp://127.0.0.1:0"], &[]).await;
    let (Listen::Udp(u), Listen::Tcp(t)) = (d.local_addrs()[0].clone(), d.local_addrs()[1].clone())
    else {
        unreachable!()
    };
    let stats = d.stats();
    let counters = d.counters();
    let s2 = store.clone();
    let task = tokio::spawn(async move { d.run(s2, shutdown).await });
    let before = rss_kib();
    let kernel_before = udp_rcvbuf_errors();
    const GARBAGE: u64 = 200_000;
    const VALID: u16 = 2_000;
    let sent = tokio::task::spawn_blocking(move || {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut buf = vec![0u8; 1500];
        let mut valid = 0u16;
        for i in 0..GARBAGE {
            let kind = next() % 4;
            let n = match kind {
                // Random bytes.
                0 | 1 => {
                    let n = (next() % 1400) as usize + 1;
                    for b in &mut buf[..n] {
                        *b = next() as u8;
                    }
                    n
                }
                // A valid line cut anywhere (and so not valid).
                2 => {
                    let l = line(60_000);
                    let n = (next() as usize % (l.len() - 1)) + 1;
                    buf[..n].copy_from_slice(&l.as_bytes()[..n]);
                    n
                }
                // Syslog framing around nonsense.
                _ => {
                    let l = format!("<999>{} kernel: lb: SRC=banana DPT=-1", next());
                    buf[..l.len()].copy_from_slice(l.as_bytes());
                    l.len()
                }
            };
            let _ = s.send_to(&buf[..n], u);
            if i % 100 == 0 && valid < VALID {
                s.send_to(line(10_000 + valid).as_bytes(), u).unwrap();
                valid += 1;
            }
            if i % 250 == 0 {
                // Paced so the kernel's buffer does not overflow: drops would be the kernel's, not ours.
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        // TCP: a 5 MB line without an end, then valid lines on the same connection.
        let mut c = std::net::TcpStream::connect(t).unwrap();
        let junk = vec![b'x'; 5 << 20];
        c.write_all(&junk).unwrap();
        c.write_all(b"\n").unwrap();
        for i in 0..100u16 {
            writeln!(c, "{}", line(30_000 + i)).unwrap();
        }
        valid
    })
    .await
    .unwrap();
    let want = usize::from(sent) + 100;
    let t0 = Instant::now();
    // Until every valid line is in, or nothing has changed for 2 s (lines dropped under load).
    let (mut last, mut since) = (0, Instant::now());
    loop {
        let n = count(&store).await;
        if n >= want
            || since.elapsed() > Duration::from_secs(2)
            || t0.elapsed() > Duration::from_secs(60)
        {
            break;
        }
        if n != last {
            (last, since) = (n, Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = rss_kib();
    let kernel = udp_rcvbuf_errors() - kernel_before;
    stop.trigger();
    let done = task.await.unwrap().unwrap();
    let g = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    eprintln!(
        "garbage flood: {GARBAGE} garbage datagrams, {sent} valid + 100 over TCP after a 5 MB line: {done}; \
         unparsed {} ignored {} extract_errors {} oversized {} dropped {}; RSS {} -> {} KiB",
        g(&stats.unparsed),
        g(&stats.ignored),
        g(&stats.extract_errors),
        g(&stats.oversized),
        counters.dropped.load(Ordering::Relaxed),
        before,
        after
    );
    // Every message is counted: processed (`seen`), dropped at the full queue (`dropped`), or dropped by
    // the kernel before the server could read it (a busy machine; counted by the kernel).
    let total = GARBAGE + u64::from(sent) + 100 + 1;
    assert!(
        done.seen + done.dropped <= total && done.seen + done.dropped + kernel >= total,
        "{done}, kernel drops {kernel}, of {total}"
    );
    // The valid lines: the TCP ones after the 5 MB line all; the UDP ones all but at most the drops.
    // The only other mappings come from cut copies of the line for port 60000 that still hold every
    // field the extractor needs (`SPT=600` ... cut after a digit is a valid line).
    let mut ports = std::collections::BTreeSet::new();
    for r in store.scan("flow-mapping").await.unwrap().records {
        let (k, _) = r.decode::<nf_state::schemas::FlowMapping>().unwrap();
        ports.insert(k.client_port);
    }
    for p in 30_000..30_100 {
        assert!(ports.contains(&p), "the TCP line for port {p} was accepted");
    }
    let missing = (10_000..10_000 + sent)
        .filter(|p| !ports.contains(p))
        .count() as u64;
    assert!(
        missing <= done.dropped + kernel,
        "{missing} valid datagrams missing, only {} dropped and counted",
        done.dropped + kernel
    );
    for p in &ports {
        assert!(
            (10_000..10_000 + sent).contains(p)
                || (30_000..30_100).contains(p)
                || [6, 60, 600, 6000, 60000].contains(p),
            "an unexpected mapping for port {p}"
        );
    }
    assert_eq!(g(&stats.oversized), 1, "the 5 MB line");
    // Every garbage datagram that was processed is accounted for: not syslog, not the extractor's,
    // recognised but unusable, or a cut line that is still a whole valid line (a record).
    let valid_in = u64::from(sent) - missing + 100;
    let accounted = g(&stats.unparsed)
        + g(&stats.ignored)
        + g(&stats.extract_errors)
        + (done.emitted - valid_in);
    assert!(
        accounted <= GARBAGE && accounted + done.dropped + kernel >= GARBAGE,
        "{accounted} garbage datagrams explained, {} dropped",
        done.dropped + kernel
    );
    // Memory is bounded by the queue (65,536 messages of at most a datagram each) and the tables.
    assert!(
        after.saturating_sub(before) < 160 * 1024,
        "memory bounded: RSS grew {} KiB",
        after.saturating_sub(before)
    );
}

/// A TCP connection from `src` to `to` (a loopback address of the sender's choosing).
fn connect_from(src: &str, to: std::net::SocketAddr) -> std::net::TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&std::net::SocketAddr::from((src.parse::<std::net::Ipv4Addr>().unwrap(), 0)).into())
        .unwrap();
    sock.connect(&to.into()).unwrap();
    sock.into()
}

/// Idle senders try to hold every TCP slot: one address gets at most `max_per_source` (the rest are
/// closed at once and counted), so a real sender from elsewhere gets through at once; when several
/// addresses together fill every slot, the idle timeout frees them and the real sender, waiting in the
/// kernel's accept queue, is served within it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_senders_cannot_hold_the_tcp_slots() {
    let cfg = SyslogConfig {
        listen: vec!["tcp://127.0.0.1:0".parse().unwrap()],
        codec: Codec::Bincode,
        max_connections: 8,
        max_per_source: 4,
        idle_timeout: Duration::from_secs(1),
        ..Default::default()
    };
    let mut d = SyslogDriver::bind(cfg, Box::new(NetfilterLog::new(Some("lb".into()))))
        .await
        .unwrap();
    let (stop, shutdown) = Shutdown::new();
    let store: Arc<dyn StateStore> = Arc::new(MemStore::new());
    let Listen::Tcp(t) = d.local_addrs()[0].clone() else {
        unreachable!()
    };
    let stats = d.stats();
    let s2 = store.clone();
    let task = tokio::spawn(async move { d.run(s2, shutdown).await });

    // One idle sender opens 10: 4 are held, 6 closed at once.
    let held: Vec<_> = (0..10).map(|_| connect_from("127.0.0.2", t)).collect();
    let t0 = Instant::now();
    while stats.per_source_refused.load(Ordering::Relaxed) < 6
        && t0.elapsed() < Duration::from_secs(5)
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(stats.per_source_refused.load(Ordering::Relaxed), 6);
    // A real sender from another address gets through while they are held.
    let mut real = connect_from("127.0.0.9", t);
    writeln!(real, "{}", line(1)).unwrap();
    let t0 = Instant::now();
    while count(&store).await < 1 && t0.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        count(&store).await,
        1,
        "the real sender while one source holds its share"
    );
    assert!(
        t0.elapsed() < Duration::from_millis(900),
        "{:?}: not held back by the idle ones",
        t0.elapsed()
    );
    drop(real);

    // Two more idle addresses fill the rest: every slot is held by a silent sender.
    let more: Vec<_> = ["127.0.0.3", "127.0.0.4"]
        .iter()
        .flat_map(|a| (0..4).map(move |_| connect_from(a, t)))
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t0 = Instant::now();
    let mut real = connect_from("127.0.0.9", t);
    writeln!(real, "{}", line(2)).unwrap();
    while count(&store).await < 2 && t0.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        count(&store).await,
        2,
        "the real sender after the idle ones time out"
    );
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    assert!(
        stats.idle_closed.load(Ordering::Relaxed) >= 4,
        "{}",
        stats.idle_closed.load(Ordering::Relaxed)
    );
    drop((held, more, real));
    stop.trigger();
    task.await.unwrap().unwrap();
}
