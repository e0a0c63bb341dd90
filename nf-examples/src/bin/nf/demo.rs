//! `nf demo`: the middlebox-minion story in one process, no root, no server. Synthetic TCP connections
//! go through a primary `LoadBalancer` (random backend choice, as MiMi's prototype); its white-box driver
//! replicates each flow's backend through a `mem:` store to a minion's follower; halfway through, the
//! primary fails and the traffic moves to the minion. A connection survives if the minion sends its next
//! packet to the backend the primary chose (any other backend would reset it). Four scenarios, as in the
//! published table: Clean (no failure, no replication), Copied (replication, no failure), Fail (failure,
//! no state on the minion), Failover (failure, state replicated).

use etherparse::PacketBuilder;
use nf_core::element::Element;
use nf_core::elements::lb::LoadBalancer;
use nf_core::{Batch, Outputs, Packet, Timestamp};
use nf_drivers::driver::{Shutdown, StateDriver};
use nf_drivers::whitebox::{WhiteBox, lb_installer};
use nf_state::StateStore;
use nf_state::replicate::{FollowerStats, follow_with_backpressure};
use nf_state::schemas::FlowMapping;
use nf_state::store::MemStore;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const VIP: &str = "10.0.0.100:80";
const BACKENDS: [&str; 5] = [
    "10.1.0.1:8080",
    "10.1.0.2:8080",
    "10.1.0.3:8080",
    "10.1.0.4:8080",
    "10.1.0.5:8080",
];

fn frame(client: u32, port: u16, seq: u32, syn: bool) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(client.to_be_bytes(), [10, 0, 0, 100], 64)
        .tcp(port, 80, seq, 64240);
    b = if syn { b.syn() } else { b.ack(1).psh() };
    let mut v = Vec::with_capacity(80);
    let _ = b.write(&mut v, if syn { &[] } else { b"GET / HTTP/1.1\r\n\r\n" });
    v
}

fn balancer(seed: u64) -> LoadBalancer {
    LoadBalancer::new(
        VIP.parse()
            .unwrap_or_else(|_| SocketAddr::from(([10, 0, 0, 100], 80))),
        BACKENDS.iter().filter_map(|b| b.parse().ok()).collect(),
    )
    .seed(seed)
    .capacity(1 << 16)
}

/// Sends one client packet through `lb`; returns the backend it went to.
fn send(lb: &mut LoadBalancer, f: &[u8], t: u64, out: &mut Outputs) -> Option<SocketAddr> {
    let mut p = Packet::from_slice(f);
    p.anno.timestamp = Timestamp(t);
    let mut b = Batch::new();
    b.push(p);
    lb.push(0, &mut b, out);
    let sent = out.port(0).pop()?;
    let h = sent.data();
    // Ethernet + IPv4 without options: destination address at 30, TCP destination port at 36.
    let ip = std::net::Ipv4Addr::new(*h.get(30)?, *h.get(31)?, *h.get(32)?, *h.get(33)?);
    let port = u16::from_be_bytes([*h.get(36)?, *h.get(37)?]);
    out.port(1).clear();
    Some(SocketAddr::new(ip.into(), port))
}

#[derive(Debug, Default, Clone)]
struct Outcome {
    name: &'static str,
    connections: usize,
    open_at_failure: usize,
    broken: usize,
    primary: Vec<(String, String)>,
    minion: Vec<(String, String)>,
    replicated: u64,
    lag_p99_us: u64,
}

/// One scenario: `replicate` the state, `fail` halfway.
fn scenario(
    rt: &tokio::runtime::Runtime,
    name: &'static str,
    connections: usize,
    replicate: bool,
    fail: bool,
) -> Result<Outcome, String> {
    let store: Arc<dyn StateStore> = Arc::new(MemStore::new());
    let mut primary = balancer(7);
    let mut minion = balancer(11).drop_unknown(false);
    let (stop, shutdown) = Shutdown::new();
    let mut tasks = Vec::new();
    let fstats = Arc::new(FollowerStats::default());
    let (fstop_tx, fstop_rx) = tokio::sync::watch::channel(false);
    let mut lag = None;
    if replicate {
        let mut wb = WhiteBox::<FlowMapping>::new(Default::default());
        nf_core::state::Stateful::table_mut(&mut primary).set_sink(wb.lb_sink());
        lag = Some(wb.replicator_stats());
        let s = store.clone();
        tasks.push(rt.spawn(async move {
            let _ = wb.run(s, shutdown).await;
        }));
        let tx = minion.installer().ok_or("installer taken")?;
        let (s, st) = (store.clone(), fstats.clone());
        tasks.push(rt.spawn(async move {
            let _ = follow_with_backpressure::<FlowMapping>(s, st, fstop_rx, &[], lb_installer(tx))
                .await;
        }));
    }
    let mut out = Outputs::new(2);
    // Connections open over the first half and send a packet every round; the failure comes at the
    // middle round; each connection lasts 40 rounds.
    let rounds = 100u32;
    let fail_round = 50u32;
    let mut chosen: HashMap<u32, SocketAddr> = HashMap::new();
    let mut broken = 0;
    let mut open_at_failure = 0;
    let t0 = 1_700_000_000_000_000_000u64;
    let per_round = connections as u32 / 60;
    for r in 0..rounds {
        let t = t0 + u64::from(r) * 10_000_000;
        if fail && r == fail_round {
            // The primary's last changes reach the store and the minion: a real failover switch takes
            // a few milliseconds; so does this pause.
            std::thread::sleep(Duration::from_millis(20));
            open_at_failure = chosen.len();
        }
        let lb = if fail && r >= fail_round {
            &mut minion
        } else {
            &mut primary
        };
        // New connections (until round 60).
        if r < 60 {
            for k in 0..per_round {
                let id = r * per_round + k;
                let (client, port) = (0x0a00_0000 | (id + 1), 10_000 + (id % 50_000) as u16);
                let b =
                    send(lb, &frame(client, port, id, true), t, &mut out).ok_or("no backend")?;
                chosen.insert(id, b);
            }
        }
        // A packet of every open connection; a connection lives 40 rounds.
        let mut done = Vec::new();
        for (&id, &b) in chosen.iter() {
            let start = id / per_round.max(1);
            let (client, port) = (0x0a00_0000 | (id + 1), 10_000 + (id % 50_000) as u16);
            if r > start {
                let got = send(lb, &frame(client, port, id + r, false), t, &mut out);
                if got != Some(b) {
                    broken += 1;
                    done.push(id);
                    continue;
                }
            }
            if r >= start + 40 {
                done.push(id);
            }
        }
        for id in done {
            chosen.remove(&id);
        }
        // Let the replicator keep up, as wall time would.
        if replicate && r % 10 == 9 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    if replicate {
        // Every mapping the primary made reaches the minion before the count is taken (the replicator
        // flushes on its own clock), so that "mappings replicated" is what the minion installed.
        let made = primary
            .read_handler("new_flows")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        let deadline = Instant::now() + Duration::from_secs(5);
        while fstats.applied.load(Ordering::Relaxed) < made && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    stop.trigger();
    let _ = fstop_tx.send(true);
    for t in tasks {
        let _ = rt.block_on(t);
    }
    // The periodic census (per-backend counts), as a router's timer would run it; the minion's timer
    // also installs what its follower queued last.
    primary.on_timer(Timestamp::now(), &mut out);
    minion.on_timer(Timestamp::now(), &mut out);
    let hs = |lb: &LoadBalancer| {
        lb.handlers()
            .iter()
            .filter_map(|h| Some((h.name.to_string(), lb.read_handler(h.name)?)))
            .collect::<Vec<_>>()
    };
    Ok(Outcome {
        name,
        connections: (per_round * 60) as usize,
        open_at_failure,
        broken,
        primary: hs(&primary),
        minion: if fail { hs(&minion) } else { Vec::new() },
        replicated: fstats.applied.load(Ordering::Relaxed),
        lag_p99_us: lag.map_or(0, |l| l.lag.quantile_ns(0.99) / 1000),
    })
}

/// `nf demo`: the middlebox-minion story in one process (no root, no server): a primary load balancer
/// fails, a minion takes over with (Failover) and without (Fail) its replicated state; prints the table.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// TCP connections per scenario.
    #[arg(long, default_value_t = 6000)]
    connections: usize,
}

/// Runs the four scenarios and prints the table and the balancers' counters.
pub fn run(o: DemoArgs) -> Result<(), String> {
    let connections = o.connections;
    let t0 = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    println!(
        "nf demo: {connections} TCP connections through a load balancer (VIP {VIP}, 5 backends, random choice);"
    );
    println!(
        "the primary fails halfway and the traffic moves to the minion; a connection breaks if the minion"
    );
    println!("sends it to another backend than the primary chose.\n");
    let results = [
        scenario(&rt, "Clean", connections, false, false)?,
        scenario(&rt, "Copied", connections, true, false)?,
        scenario(&rt, "Fail", connections, false, true)?,
        scenario(&rt, "Failover", connections, true, true)?,
    ];
    println!(
        "| scenario | connections | open at the failure | broken | broken % | mappings replicated | replication lag p99 |"
    );
    println!("|---|---|---|---|---|---|---|");
    for o in &results {
        println!(
            "| {} | {} | {} | {} | {:.1} % | {} | {} |",
            o.name,
            o.connections,
            o.open_at_failure,
            o.broken,
            100.0 * o.broken as f64 / o.open_at_failure.max(1) as f64,
            o.replicated,
            if o.replicated > 0 {
                format!("{} us", o.lag_p99_us)
            } else {
                "-".into()
            }
        );
    }
    for o in &results[2..] {
        println!("\n{}: primary lb", o.name);
        for (k, v) in &o.primary {
            println!("  lb.{k:<16} {v}");
        }
        println!("{}: minion lb", o.name);
        for (k, v) in &o.minion {
            println!("  lb.{k:<16} {v}");
        }
    }
    let (fail, failover) = (&results[2], &results[3]);
    println!(
        "\nFail broke {} connections, Failover {}: the minion with the primary's state kept {:.1} % of the open connections alive ({:.1} s).",
        fail.broken,
        failover.broken,
        100.0 - 100.0 * failover.broken as f64 / failover.open_at_failure.max(1) as f64,
        t0.elapsed().as_secs_f64()
    );
    if failover.broken * 10 > fail.broken.max(1) {
        return Err("Failover lost more than a tenth of what Fail lost".into());
    }
    Ok(())
}
