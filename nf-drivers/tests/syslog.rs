//! The syslog driver with real senders: util-linux `logger` over UDP, TCP (LF and octet counting) and a
//! Unix socket, in RFC 3164 and RFC 5424; many concurrent TCP senders; an overloaded queue; a corpus of
//! real-format, truncated, garbage and 64 KiB lines.

use nf_drivers::driver::{Shutdown, StateDriver};
use nf_drivers::syslog::extract::{self, NetfilterLog};
use nf_drivers::syslog::{Emitter, Listen, SyslogConfig, SyslogDriver, parse};
use nf_state::schemas::{FlowMapping, FlowMappingKey, Proto};
use nf_state::store::MemStore;
use nf_state::{Codec, StateStore, StateStoreExt};
use std::io::Write;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn nf_line(prefix: &str, client_port: u16, backend: &str) -> String {
    format!(
        "{prefix}IN=veth0 OUT=veth1 MAC=02:00:00:00:00:01:02:00:00:00:00:02:08:00 SRC=10.0.0.5 DST={backend} LEN=60 TOS=0x00 PREC=0x00 TTL=63 ID=4242 DF PROTO=TCP SPT={client_port} DPT=80 WINDOW=64240 RES=0x00 SYN URGP=0"
    )
}

async fn start(
    listen: Vec<Listen>,
    queue: usize,
) -> (
    SyslogDriver,
    Arc<dyn StateStore>,
    nf_drivers::driver::ShutdownTrigger,
    Shutdown,
) {
    let cfg = SyslogConfig {
        listen,
        queue,
        codec: Codec::Bincode,
        ..Default::default()
    };
    let d = SyslogDriver::bind(cfg, Box::new(NetfilterLog::new(Some("lb".into()))))
        .await
        .unwrap();
    let (t, s) = Shutdown::new();
    (d, Arc::new(MemStore::new()), t, s)
}

async fn backend_of(store: &Arc<dyn StateStore>, port: u16) -> Option<String> {
    let k = FlowMappingKey {
        proto: Proto::Tcp,
        client_ip: "10.0.0.5".parse().unwrap(),
        client_port: port,
    };
    store
        .get_typed::<FlowMapping>(Codec::Bincode, &k)
        .await
        .unwrap()
        .map(|v| format!("{}:{}", v.backend_ip, v.backend_port))
}

fn logger(args: &[&str], msg: &str) {
    let out = Command::new("logger").args(args).arg(msg).output().unwrap();
    assert!(
        out.status.success(),
        "logger {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logger_over_udp_tcp_and_unix_in_both_formats() {
    let sock = std::env::temp_dir().join(format!("nf-syslog-{}.sock", std::process::id()));
    let (mut d, store, stop, shutdown) = start(
        vec![
            "udp://127.0.0.1:0".parse().unwrap(),
            "tcp://127.0.0.1:0".parse().unwrap(),
            Listen::Unix(sock.clone()),
        ],
        1024,
    )
    .await;
    let (mut udp, mut tcp) = (None, None);
    for l in d.local_addrs() {
        match l {
            Listen::Udp(a) => udp = Some(a.port().to_string()),
            Listen::Tcp(a) => tcp = Some(a.port().to_string()),
            Listen::Unix(_) => {}
        }
    }
    let (udp, tcp) = (udp.unwrap(), tcp.unwrap());
    let stats = d.stats();
    let ring = d.unparsed();
    let s2 = store.clone();
    let task = tokio::spawn(async move { d.run(s2, shutdown).await });

    let sockpath = sock.to_str().unwrap().to_string();
    let sends: Vec<(Vec<&str>, u16)> = vec![
        (vec!["--rfc3164", "-d", "-n", "127.0.0.1", "-P", &udp], 1001),
        (
            vec![
                "--rfc5424",
                "-d",
                "-n",
                "127.0.0.1",
                "-P",
                &udp,
                "--sd-id",
                "lb@32473",
                "--sd-param",
                "vip=\"10.0.0.100\"",
                "--msgid",
                "NEW",
            ],
            1002,
        ),
        (vec!["--rfc3164", "-T", "-n", "127.0.0.1", "-P", &tcp], 1003),
        (vec!["--rfc5424", "-T", "-n", "127.0.0.1", "-P", &tcp], 1004),
        (
            vec![
                "--rfc5424",
                "-T",
                "--octet-count",
                "-n",
                "127.0.0.1",
                "-P",
                &tcp,
            ],
            1005,
        ),
        (
            vec![
                "--rfc3164",
                "-T",
                "--octet-count",
                "-n",
                "127.0.0.1",
                "-P",
                &tcp,
            ],
            1006,
        ),
        (vec!["--rfc3164", "-u", &sockpath], 1007),
        (vec!["--rfc5424", "-u", &sockpath], 1008),
    ];
    for (args, port) in &sends {
        // The prefix glued to IN= in one of them, as `--log-prefix lb` without a space writes it.
        let prefix = if *port == 1003 { "lb-new" } else { "lb: " };
        logger(args, &nf_line(prefix, *port, "10.1.0.3"));
    }
    // Not ours: another prefix, a plain message, and garbage over a raw socket.
    logger(
        &["--rfc3164", "-d", "-n", "127.0.0.1", "-P", &udp],
        &nf_line("other: ", 2000, "10.1.0.9"),
    );
    logger(&["--rfc5424", "-d", "-n", "127.0.0.1", "-P", &udp], "hello");
    let raw = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    raw.send_to(b"\x00\xffnot syslog", format!("127.0.0.1:{udp}"))
        .unwrap();

    // Wait until every message has been handled, not only ours stored: the three that are not
    // ours travel on their own sockets and may be read after the last record reached the store.
    use std::sync::atomic::Ordering::Relaxed;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        let mut all = stats.ignored.load(Relaxed) == 2 && stats.unparsed.load(Relaxed) == 1;
        for (_, p) in &sends {
            all &= backend_of(&store, *p).await.is_some();
        }
        if all {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.trigger();
    let done = task.await.unwrap().unwrap();
    for (args, p) in &sends {
        assert_eq!(
            backend_of(&store, *p).await.as_deref(),
            Some("10.1.0.3:80"),
            "{args:?}"
        );
    }
    assert_eq!(backend_of(&store, 2000).await, None);
    assert_eq!(done.seen, 11, "{done}");
    assert_eq!(done.parsed, 10, "{done}");
    assert_eq!(done.rejected, 1, "{done}");
    assert_eq!(done.emitted, 8, "{done}");
    assert_eq!(stats.ignored.load(Relaxed), 2);
    assert_eq!(stats.unix.load(Relaxed), 2);
    assert_eq!(stats.tcp.load(Relaxed), 4);
    let kept = ring.snapshot();
    assert_eq!(kept.len(), 1);
    assert!(kept[0].line.contains("not syslog"), "{kept:?}");
    assert!(!sock.exists(), "the Unix socket is removed on shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_tcp_senders_lose_nothing() {
    let (mut d, store, stop, shutdown) =
        start(vec!["tcp://127.0.0.1:0".parse().unwrap()], 64).await;
    let Listen::Tcp(addr) = d.local_addrs()[0].clone() else {
        unreachable!()
    };
    let s2 = store.clone();
    let task = tokio::spawn(async move { d.run(s2, shutdown).await });
    const SENDERS: u16 = 32;
    const EACH: u16 = 300;
    let threads: Vec<_> = (0..SENDERS)
        .map(|s| {
            std::thread::spawn(move || {
                let mut c = std::net::TcpStream::connect(addr).unwrap();
                let mut out = Vec::new();
                for i in 0..EACH {
                    let port = 10_000 + s * EACH + i;
                    let msg = format!(
                        "<4>Nov 22 01:50:29 fw kernel: {}",
                        nf_line("lb: ", port, "10.1.0.7")
                    );
                    // Half octet-counted, half LF-terminated, in one stream.
                    if i % 2 == 0 {
                        write!(out, "{} {}", msg.len(), msg).unwrap();
                    } else {
                        writeln!(out, "{msg}").unwrap();
                    }
                    if out.len() > 8192 {
                        c.write_all(&out).unwrap();
                        out.clear();
                    }
                }
                c.write_all(&out).unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let total = u64::from(SENDERS) * u64::from(EACH);
    let t0 = Instant::now();
    while d_count(&store).await < total as usize && t0.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.trigger();
    let done = task.await.unwrap().unwrap();
    assert_eq!(done.seen, total, "{done}");
    assert_eq!(done.dropped, 0, "{done}");
    assert_eq!(d_count(&store).await, total as usize);
}

async fn d_count(store: &Arc<dyn StateStore>) -> usize {
    store.scan("flow-mapping").await.unwrap().records.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_queue_drops_and_counts_datagrams_and_stays_bounded() {
    // A queue of 8 messages against a burst of 20,000 datagrams.
    let (mut d, store, stop, shutdown) = start(vec!["udp://127.0.0.1:0".parse().unwrap()], 8).await;
    let Listen::Udp(addr) = d.local_addrs()[0].clone() else {
        unreachable!()
    };
    let s2 = store.clone();
    let task = tokio::spawn(async move { d.run(s2, shutdown).await });
    let sent = 20_000u64;
    tokio::task::spawn_blocking(move || {
        let raw = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..sent {
            let msg = format!("<4>{}", nf_line("lb: ", (i % 60000) as u16, "10.1.0.8"));
            let _ = raw.send_to(msg.as_bytes(), addr);
        }
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.trigger();
    let done = task.await.unwrap().unwrap();
    // Every datagram the socket delivered was either processed or counted as dropped.
    assert!(done.dropped > 0, "{done}");
    assert!(done.seen + done.dropped <= sent, "{done}");
    assert_eq!(done.seen, done.parsed, "{done}");
}

/// Real-format lines and bad ones: each parses or is a typed error, never a panic.
#[test]
fn the_corpus_parses_without_a_panic() {
    let corpus = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/syslog-corpus.txt"
    ))
    .unwrap();
    let mut lines: Vec<String> = corpus.lines().map(str::to_string).collect();
    // Truncations of every line at every length, and a 64 KiB line.
    let whole = lines.clone();
    for l in &whole {
        for cut in 0..l.len() {
            if l.is_char_boundary(cut) {
                lines.push(l[..cut].to_string());
            }
        }
    }
    lines.push(format!("<13>{}", "A".repeat(64 * 1024)));
    lines.push(format!(
        "<4>{}",
        nf_line(&"P".repeat(64 * 1024), 1, "10.1.0.3")
    ));
    let mut extractors: Vec<Box<dyn extract::Extractor>> = extract::EXTRACTORS
        .iter()
        .map(|n| extract::by_name(n, None).unwrap())
        .collect();
    let mut out = Emitter::new(Codec::Bincode, "corpus");
    let (mut parsed, mut records) = (0, 0);
    for l in &lines {
        if let Ok(m) = parse(l) {
            parsed += 1;
            for x in extractors.iter_mut() {
                let _ = x.extract(&m, &mut out);
            }
            records += out.take().len();
        }
    }
    // The whole real-format lines of the corpus parse, and yield records.
    let good = whole.iter().filter(|l| !l.starts_with("BAD")).count();
    assert!(parsed >= good, "{parsed} < {good}");
    assert!(records > 10, "{records}");
}

#[test]
fn listen_addresses_parse_or_fail_clearly() {
    assert_eq!(
        "udp://127.0.0.1:514".parse::<Listen>().unwrap(),
        Listen::Udp("127.0.0.1:514".parse::<SocketAddr>().unwrap())
    );
    for bad in [
        "127.0.0.1:514",
        "sctp://1.2.3.4:5",
        "udp://nohost",
        "unix://",
    ] {
        let e = bad.parse::<Listen>().unwrap_err().to_string();
        assert!(e.contains(bad), "{e}");
    }
}

/// A kernel record (kmsg form, as `nf kmsg-forward` sends it) is timed from the kernel's log call: a
/// record that the kernel stamped at the same instant as one seen earlier, but that arrives 200 ms
/// later, is counted 200 ms late and its store record is dated back to the kernel's instant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_records_are_timed_from_the_kernels_log_call() {
    let (mut d, store, stop, shutdown) =
        start(vec!["udp://127.0.0.1:0".parse().unwrap()], 1024).await;
    let Listen::Udp(addr) = d.local_addrs()[0].clone() else {
        unreachable!()
    };
    let stats = d.stats();
    let s2 = store.clone();
    let task = tokio::spawn(async move { d.run(s2, shutdown).await });
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    // The sender's kernel clock: an arbitrary 5,000 s since its boot.
    let usec = 5_000_000_000u64;
    let send = |seq: u64, port: u16| {
        let m = format!("4,{seq},{usec},-;{}", nf_line("lb: ", port, "10.1.0.8"));
        sock.send_to(m.as_bytes(), addr).unwrap();
    };
    let stored = |port: u16| {
        let store = store.clone();
        async move {
            for _ in 0..200 {
                if backend_of(&store, port).await.is_some() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("port {port} never stored");
        }
    };
    send(1, 1001);
    stored(1001).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    send(2, 1002);
    stored(1002).await;
    stop.trigger();
    task.await.unwrap().unwrap();

    assert_eq!(stats.kernel_lag.count(), 2);
    let late = stats.kernel_lag.max_ns();
    assert!(
        (200_000_000..2_000_000_000).contains(&late),
        "the second record waited at least 200 ms after its kernel instant: {late} ns"
    );
    // Both records are dated at the kernel's instant (within the first one's own trip), not 200 ms
    // apart as their arrivals were.
    let mut recs = store.scan("flow-mapping").await.unwrap().records;
    recs.sort_by_key(|r| r.seq);
    assert_eq!(recs.len(), 2);
    let apart = recs[1].time.abs_diff(recs[0].time);
    assert!(apart < 50_000_000, "dated {apart} ns apart");
}
