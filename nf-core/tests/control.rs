//! The control socket, as a Click client uses it: a real router running on its own thread, real Unix
//! and TCP sockets, every command of ControlSocket 1.3 and the refusals of hostile clients.

use nf_core::control::{Client, ControlConfig, ControlServer, Listen};
use std::io::{BufRead, BufReader, Read, Write};
use std::time::Duration;

const T: Duration = Duration::from_secs(5);

fn running(
    text: &str,
    cfg: ControlConfig,
    listen: &[Listen],
) -> (
    ControlServer,
    nf_core::StopHandle,
    std::thread::JoinHandle<nf_core::Router>,
) {
    let mut r = nf_core::testing::router_for(text).unwrap();
    let server = ControlServer::start(&mut r, listen, cfg).unwrap();
    let stop = r.stop_handle();
    let h = std::thread::spawn(move || {
        r.run().unwrap();
        r
    });
    (server, stop, h)
}

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("nf-control-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn count(c: &mut Client, h: &str) -> u64 {
    let r = c.read(h).unwrap();
    assert_eq!(r.code, 200, "{r:?}");
    r.data.unwrap().parse().unwrap()
}

#[test]
fn a_running_router_answers_every_command_of_the_protocol() {
    let sock = tmp("ctl.sock");
    let text = "src :: InfiniteSource(FLOWS 8) -> c :: Counter -> Discard;";
    let (server, stop, h) = running(
        text,
        ControlConfig::default(),
        &[
            Listen::Unix(sock.clone()),
            Listen::parse("tcp:127.0.0.1:0").unwrap(),
        ],
    );
    for at in server.local_addrs() {
        let mut c = Client::connect(at, T).unwrap();
        // Reads while traffic flows: the counter moves.
        let a = count(&mut c, "c.count");
        std::thread::sleep(Duration::from_millis(50));
        let b = count(&mut c, "c.count");
        assert!(b > a, "{a} then {b}");
        // Element numbers from 1: element 2 is `c`.
        assert!(count(&mut c, "2.count") >= b);
        assert_eq!(c.read("c.class").unwrap().data.as_deref(), Some("Counter"));
        assert_eq!(c.command("CHECKREAD c.count", None).unwrap().code, 200);
        assert_eq!(c.command("CHECKWRITE c.count", None).unwrap().code, 511);
        assert_eq!(c.command("CHECKWRITE src.active", None).unwrap().code, 200);
        // A write stops the source; another (WRITEDATA) starts it again.
        assert_eq!(c.command("WRITE src.active false", None).unwrap().code, 200);
        std::thread::sleep(Duration::from_millis(20));
        let x = count(&mut c, "c.count");
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(count(&mut c, "c.count"), x, "stopped source");
        assert_eq!(c.write("src.active", "true").unwrap().code, 200);
        std::thread::sleep(Duration::from_millis(50));
        assert!(count(&mut c, "c.count") > x);
        // Errors with Click's codes.
        assert_eq!(c.read("nosuch.count").unwrap().code, 510);
        assert_eq!(c.read("99.count").unwrap().code, 510);
        assert_eq!(c.read("c.nosuch").unwrap().code, 511);
        assert_eq!(c.command("READ", None).unwrap().code, 500);
        assert_eq!(c.command("FROB c.count", None).unwrap().code, 501);
        assert_eq!(c.command("LLRPC c#1", None).unwrap().code, 501);
        let w = c.command("WRITE c.count 5", None).unwrap();
        assert_eq!(w.code, 511, "{w:?}");
        // Global handlers.
        assert_eq!(
            c.read("list").unwrap().data.as_deref(),
            Some("3\nsrc\nc\nDiscard@1\n")
        );
        assert_eq!(
            c.read("version").unwrap().data.as_deref(),
            Some(env!("CARGO_PKG_VERSION"))
        );
        let classes = c.read("classes").unwrap().data.unwrap();
        assert!(classes.contains("Counter\n") && classes.contains("InfiniteSource\n"));
        assert_eq!(c.read("config").unwrap().data.as_deref(), Some(text));
        let flat = c.read("flatconfig").unwrap().data.unwrap();
        assert!(
            flat.contains("c :: Counter();") && flat.contains("src [0] -> [0] c;"),
            "{flat}"
        );
        // READUNTIL: parameters up to a blank line.
        let r = c.command("READUNTIL c.count\r\nignored\r\n", None).unwrap();
        assert_eq!(r.code, 200, "{r:?}");
        assert_eq!(c.command("QUIT", None).unwrap().code, 200);
    }
    stop.stop();
    let r = h.join().unwrap();
    // The router has stopped running its rounds, then is gone: a client is told each.
    let at = server.local_addrs()[1].clone();
    let mut c = Client::connect(&at, T).unwrap();
    drop(r);
    assert_eq!(c.read("c.count").unwrap().code, 540);
    drop(server);
    assert!(!sock.exists(), "the socket file is removed");
}

#[test]
fn hostile_clients_are_bounded_and_counted() {
    let cfg = ControlConfig {
        max_connections: 2,
        max_line: 1024,
        max_data: 4096,
        ..ControlConfig::default()
    };
    let (server, stop, h) = running(
        "src :: InfiniteSource(FLOWS 8) -> c :: Counter -> Discard;",
        cfg,
        &[Listen::parse("tcp:127.0.0.1:0").unwrap()],
    );
    let at = server.local_addrs()[0].clone();
    let Listen::Tcp(addr) = at else { panic!() };
    // A silent client holds a slot but blocks nobody.
    let silent = std::net::TcpStream::connect(addr).unwrap();
    let mut c = Client::connect(&at, T).unwrap();
    assert!(count(&mut c, "c.count") > 0);
    // A third connection is refused at once.
    let third = std::net::TcpStream::connect(addr).unwrap();
    let mut line = String::new();
    BufReader::new(third).read_line(&mut line).unwrap();
    assert!(line.starts_with("530"), "{line}");
    drop(c);
    drop(silent);
    std::thread::sleep(Duration::from_millis(100));
    // A line over the limit: refused, the connection closed.
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut banner = String::new();
    r.read_line(&mut banner).unwrap();
    s.write_all(&vec![b'A'; 5000]).unwrap();
    s.write_all(b"\r\n").unwrap();
    let mut rest = String::new();
    r.read_to_string(&mut rest).unwrap();
    assert!(rest.starts_with("500 Line too long"), "{rest}");
    // Data over the limit: 521.
    let mut c = Client::connect(&at, T).unwrap();
    let big = "x".repeat(5000);
    assert_eq!(c.write("src.active", &big).unwrap().code, 521);
    let stats = server.stats();
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(stats.refused.load(Relaxed), 1);
    assert_eq!(stats.oversized.load(Relaxed), 2);
    stop.stop();
    h.join().unwrap();
}

#[test]
fn read_only_sockets_refuse_writes_and_remote_addresses_need_consent() {
    let cfg = ControlConfig {
        read_only: true,
        ..ControlConfig::default()
    };
    let (server, stop, h) = running(
        "src :: InfiniteSource(FLOWS 8) -> c :: Counter -> Discard;",
        cfg,
        &[Listen::parse("tcp:127.0.0.1:0").unwrap()],
    );
    let mut c = Client::connect(&server.local_addrs()[0], T).unwrap();
    assert_eq!(c.command("WRITE src.active false", None).unwrap().code, 530);
    assert_eq!(c.command("CHECKWRITE src.active", None).unwrap().code, 530);
    assert_eq!(c.read("c.class").unwrap().code, 200);
    stop.stop();
    h.join().unwrap();
    let mut r = nf_core::testing::router_for("Idle -> Discard;").unwrap();
    let e = ControlServer::start(
        &mut r,
        &[Listen::parse("tcp:0.0.0.0:0").unwrap()],
        ControlConfig::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("not a loopback address"), "{e}");
    assert!(Listen::parse("udp:1.2.3.4:5").is_err());
    assert_eq!(
        Listen::parse("unix:/run/nf.sock").unwrap(),
        Listen::Unix("/run/nf.sock".into())
    );
}

#[test]
fn a_sharded_run_answers_for_all_its_shards() {
    let text = "src :: InfiniteSource(FLOWS 8) -> c :: Counter -> Discard;";
    let cfg = nf_core::Config::parse("t", text, &Default::default()).unwrap();
    let reg = nf_core::Registry::standard();
    let mut s = nf_core::ShardedRouter::new(2, |_| Ok(cfg.build(&reg)?)).unwrap();
    let server = ControlServer::start_sharded(
        &mut s,
        &[Listen::parse("tcp:127.0.0.1:0").unwrap()],
        ControlConfig::default(),
    )
    .unwrap();
    let stop = s.stop_handle();
    let h = std::thread::spawn(move || {
        s.run().unwrap();
        s
    });
    let mut c = Client::connect(&server.local_addrs()[0], T).unwrap();
    assert!(count(&mut c, "c.count") > 0);
    assert_eq!(c.read("c.class").unwrap().data.as_deref(), Some("Counter"));
    // A write reaches every shard: every source stops.
    assert_eq!(c.command("WRITE src.active false", None).unwrap().code, 200);
    std::thread::sleep(Duration::from_millis(50));
    let x = count(&mut c, "c.count");
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(count(&mut c, "c.count"), x);
    stop.stop();
    let s = h.join().unwrap();
    let total: u64 = s
        .shards()
        .iter()
        .map(|r| {
            r.read_handler("c", "count")
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert_eq!(total, x, "the socket's sum is the shards' sum");
}

/// A rebuilder for `WRITE hotconfig`: the standard registry, the text as given.
fn rebuilder() -> nf_core::control::Rebuilder {
    nf_core::control::Rebuilder(std::sync::Arc::new(|text: &str, shard, shards| {
        let cfg = nf_core::Config::parse("hotconfig", text, &Default::default())
            .map_err(|e| e.to_string())?;
        let g = cfg
            .build(&nf_core::Registry::standard())
            .map_err(|e| e.to_string())?;
        let r = nf_core::Router::new_shard(g, shard, shards).map_err(|e| e.to_string())?;
        Ok((r, cfg.flatten()))
    }))
}

#[test]
fn hotconfig_swaps_the_graph_and_keeps_the_state_of_what_stays() {
    let lb = |backends: &str, idle: u32| {
        format!(
            "src :: InfiniteSource(FLOWS 64, PROTO tcp) -> c :: Counter -> q :: Queue(100000);
             q -> Unqueue(BURST 8) -> lb :: LoadBalancer(VIP 10.0.0.2:80, LOOSE_VIP true, IDLE {idle},
                 BACKENDS {backends}) -> Discard;
             Idle -> [1]lb[1] -> Discard;"
        )
    };
    let cfg = ControlConfig {
        hotconfig: Some(rebuilder()),
        ..Default::default()
    };
    let (server, stop, h) = running(
        &lb("10.1.0.1:80 10.1.0.2:80", 300),
        cfg,
        &[Listen::parse("tcp:127.0.0.1:0").unwrap()],
    );
    let mut c = Client::connect(&server.local_addrs()[0], T).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let before = c.read("lb.backends").unwrap().data.unwrap();
    let flows_before = count(&mut c, "lb.flows");
    assert_eq!(flows_before, 64, "{before}");
    let counted = count(&mut c, "c.count");

    // A third backend and a new timeout: every flow keeps its backend, the counter goes on.
    let text = lb("10.1.0.1:80 10.1.0.2:80 10.1.0.3:80", 60);
    let r = c
        .command(
            &format!("WRITEDATA hotconfig {}", text.len()),
            Some(text.as_bytes()),
        )
        .unwrap();
    assert_eq!(r.code, 200, "{r:?}");
    assert!(r.message.contains("took their old state"), "{r:?}");
    let after = c.read("lb.backends").unwrap().data.unwrap();
    assert!(after.ends_with("10.1.0.3:80=0"), "{before} -> {after}");
    // The first two backends' census: the same flows as before.
    let strip = |s: &str| s.split(' ').take(2).collect::<Vec<_>>().join(" ");
    assert_eq!(strip(&after), strip(&before));
    assert_eq!(count(&mut c, "lb.flows"), 64);
    assert!(count(&mut c, "c.count") >= counted);
    assert_eq!(
        count(&mut c, "lb.new_flows"),
        64,
        "no flow was chosen again"
    );
    let cfgtext = c.read("config").unwrap().data.unwrap();
    assert!(cfgtext.contains("10.1.0.3:80"), "{cfgtext}");

    // Another class under a kept name: done, with a warning (Click's 220) naming it.
    let swapped =
        lb("10.1.0.1:80 10.1.0.2:80 10.1.0.3:80", 60).replace("c :: Counter", "c :: Paint(1)");
    let r = c
        .command(
            &format!("WRITEDATA hotconfig {}", swapped.len()),
            Some(swapped.as_bytes()),
        )
        .unwrap();
    assert_eq!(r.code, 220, "{r:?}");
    assert!(r.message.contains("state dropped: c"), "{r:?}");
    let back = lb("10.1.0.1:80 10.1.0.2:80 10.1.0.3:80", 60);
    let r = c
        .command(
            &format!("WRITEDATA hotconfig {}", back.len()),
            Some(back.as_bytes()),
        )
        .unwrap();
    assert_eq!(r.code, 220, "Paint -> Counter: {r:?}");
    assert_eq!(
        count(&mut c, "lb.flows"),
        64,
        "the balancer's flows stayed through both"
    );

    // A configuration with an error: refused with its line and column, nothing changes.
    let bad =
        "src :: InfiniteSource(FLOWS 8) -> c :: Counter;\nc -> lb :: NoSuchClass(1) -> Discard;";
    let r = c
        .command(
            &format!("WRITEDATA hotconfig {}", bad.len()),
            Some(bad.as_bytes()),
        )
        .unwrap();
    assert_eq!(r.code, 520, "{r:?}");
    assert!(r.message.contains("hotconfig:2:"), "{r:?}");
    assert!(
        c.read("config")
            .unwrap()
            .data
            .unwrap()
            .contains("10.1.0.3:80")
    );
    assert_eq!(count(&mut c, "lb.flows"), 64);

    // Read-only sockets and servers without a rebuilder refuse it.
    stop.stop();
    let r = h.join().unwrap();
    assert_eq!(r.swaps().0, 3);
    drop(server);
    let (server, stop, h) = running(
        "InfiniteSource -> Discard;",
        ControlConfig::default(),
        &[Listen::parse("tcp:127.0.0.1:0").unwrap()],
    );
    let mut c = Client::connect(&server.local_addrs()[0], T).unwrap();
    assert_eq!(c.write("hotconfig", "Idle -> Discard;").unwrap().code, 501);
    stop.stop();
    h.join().unwrap();
}

#[test]
fn a_queue_s_packets_and_a_counter_s_counts_survive_a_swap() {
    let mut old = nf_core::testing::router_for(
        "InfiniteSource(LIMIT 500, STOP true) -> c :: Counter -> q :: Queue(1000); q -> Idle;",
    )
    .unwrap();
    old.run().unwrap();
    assert_eq!(old.read_handler("q", "length").unwrap(), "500");
    let new = nf_core::testing::router_for(
        "InfiniteSource(LIMIT 0, STOP true) -> c :: Counter -> q :: Queue(300); q -> Idle;",
    )
    .unwrap();
    let rep = old.hot_swap(new).unwrap();
    assert_eq!((rep.elements, rep.kept), (4, 4));
    assert_eq!(old.read_handler("c", "count").unwrap(), "500");
    // A smaller queue keeps what it holds; the rest are drops.
    assert_eq!(old.read_handler("q", "length").unwrap(), "300");
    assert_eq!(old.read_handler("q", "drops").unwrap(), "200");
}
