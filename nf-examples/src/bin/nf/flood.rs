//! `nf bench flood`: the hash-flooding attack on the data plane's flow tables, mounted with what an
//! attacker has (this source code), against the graphs of `LoadBalancer`, `ConnTrack` and `AnantaMux`.
//!
//! For each number of clients it writes two captures with the same number of packets: ordinary clients
//! (addresses and ports spread at random) and crafted clients, whose table hashes, as the attacker
//! computes them, fall into a band of a few slots, so that in a table placed by that hash they form one
//! probe chain. Each client opens a TCP connection (SYN, ACK) and sends data; the clients take turns, so
//! every flow is live at once. Both captures run through the element's benchmark graph (the same
//! configurations as `nf bench pipeline`), and the crafted / ordinary time is printed.
//!
//! `--aim` says what the attacker knows: `old` (the unkeyed hash the tables used before they were keyed;
//! write the captures with `--write` and run them through an older build to see that attack land),
//! `guess` (this build's keyed hash under a key the attacker guesses, all zeros: the best an outsider
//! can do), or `known` (this process's own secret key, as an insider would: what the probe bound alone
//! limits).

use nf_core::hash::HashKey;
use nf_core::{Config, FlowKey, Router, Timestamp};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What the attacker knows of the hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Aim {
    /// The unkeyed hash of the builds before the tables were keyed.
    Old,
    /// The keyed hash with a guessed (all-zero) key.
    Guess,
    /// The process's own key (an insider).
    Known,
}

/// A flow table the attack is mounted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// `nf lb`'s graph (`LoadBalancer`, keyed by the client's address and port).
    Lb,
    /// The connection tracker (keyed by the canonical five-tuple).
    Conntrack,
    /// Ananta's Mux (keyed by the five-tuple).
    Mux,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Lb => "lb",
            Target::Conntrack => "conntrack",
            Target::Mux => "mux",
        }
    }
    fn config(self) -> &'static str {
        match self {
            Target::Lb => include_str!("../../../configs/bench-lb.click"),
            Target::Conntrack => include_str!("../../../configs/bench-conntrack.click"),
            Target::Mux => include_str!("../../../configs/bench-mux.click"),
        }
    }
    /// The key the element's table places for a client's packet to the server.
    fn table_key(self, client: Ipv4Addr, port: u16) -> FlowKey {
        let k = FlowKey::v4(6, client, port, SERVER, 80);
        match self {
            Target::Lb => FlowKey::new(6, IpAddr::V4(client), port, IpAddr::V4(client), 0),
            Target::Conntrack => k.canonical().0,
            Target::Mux => k,
        }
    }
}

/// The server (the VIP of the benchmark graphs).
const SERVER: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 1);

/// The low bits the attacker aims at: the largest table of the graphs has 2^19 slots (the Mux's
/// trusted table); a band in these bits is a band in every smaller power-of-two table too.
const AIM_BITS: u32 = 19;
/// The band's width (slots): crafted keys start their probes within it.
const BAND: u32 = 64;
/// Where the band starts.
const BAND_START: u32 = 0x1_0000;

/// `nf bench flood`: ordinary clients against clients crafted to share a probe chain (as an attacker
/// who reads the source computes it), through the graphs of LoadBalancer, ConnTrack and AnantaMux;
/// prints crafted / ordinary time.
#[derive(Debug, Clone, clap::Args)]
pub struct FloodArgs {
    /// Clients per capture, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "4000,16000")]
    pub clients: Vec<usize>,
    /// Tables attacked, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "lb,conntrack,mux"
    )]
    pub targets: Vec<Target>,
    /// What the attacker knows: old (the unkeyed hash of earlier builds), guess (this build's keyed
    /// hash, the key guessed), known (this process's key: an insider; only the probe bound helps).
    #[arg(long, value_enum, default_value = "guess")]
    pub aim: Aim,
    /// Packets each client sends (SYN, ACK, data; at least 2).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(2..))]
    pub per_client: u16,
    /// Runs of each capture; the best is kept.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Keep the captures in DIR (to run them through another build with `nf run`).
    #[arg(long, value_name = "DIR")]
    pub write: Option<PathBuf>,
}

fn attacker_hash(aim: Aim, k: &FlowKey, guess: &HashKey) -> u32 {
    match aim {
        Aim::Old => k.unkeyed_hash(),
        Aim::Guess => k.keyed_hash(guess),
        Aim::Known => k.table_hash(),
    }
}

/// `n` ordinary clients: addresses in 10.0.0.0/8 and ports spread at random, all distinct.
fn ordinary_clients(n: usize) -> Vec<(Ipv4Addr, u16)> {
    let mut seen = std::collections::HashSet::new();
    let mut v = Vec::with_capacity(n);
    // SplitMix64 from a fixed seed: addresses and ports spread at random, the same every run.
    let mut state = 0x0123_4567;
    while v.len() < n {
        let r = nf_core::hash::splitmix64(&mut state);
        let c = (
            Ipv4Addr::from(0x0A00_0000 | (r as u32 & 0x00FF_FFFF)),
            1024 + ((r >> 32) as u16 % 60_000),
        );
        if seen.insert(c) {
            v.push(c);
        }
    }
    v
}

/// `n` crafted clients: the first candidates (addresses in 10.0.0.0/8, ports from 1024) whose hash, as
/// the attacker computes it, starts its probe in the band. Returns them and the candidates tried.
fn crafted_clients(n: usize, target: Target, aim: Aim) -> (Vec<(Ipv4Addr, u16)>, u64) {
    let guess = HashKey::from_secret(0);
    let mask = (1u32 << AIM_BITS) - 1;
    let mut v = Vec::with_capacity(n);
    let mut i = 0u64;
    while v.len() < n && i < 1 << 38 {
        let ip = Ipv4Addr::from(0x0A00_0000 | ((i >> 14) as u32 & 0x00FF_FFFF));
        let port = 1024 + (i & 0x3FFF) as u16;
        i += 1;
        let h = attacker_hash(aim, &target.table_key(ip, port), &guess) & mask;
        if h.wrapping_sub(BAND_START) < BAND {
            v.push((ip, port));
        }
    }
    (v, i)
}

/// Writes the clients' packets (SYN, ACK, then data; the clients take turns) as a capture.
fn write_capture(
    path: &Path,
    clients: &[(Ipv4Addr, u16)],
    per_client: usize,
) -> Result<u64, String> {
    let mut w = nf_drivers::io::pcap::PcapFileWriter::create(
        path,
        65535,
        false,
        pcap_file::DataLink::ETHERNET,
    )
    .map_err(|e| e.to_string())?;
    let t0 = Timestamp::from_parts(1_700_000_000, 0);
    let mut n = 0u64;
    let mut frame = Vec::with_capacity(128);
    for j in 0..per_client {
        for (c, (ip, port)) in clients.iter().enumerate() {
            let seq = 1000 + j as u32 * 6;
            let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
                .ipv4(ip.octets(), SERVER.octets(), 64)
                .tcp(*port, 80, seq, 64_000);
            let b = match j {
                0 => b.syn(),
                1 => b.ack(5000),
                _ => b.ack(5000).psh(),
            };
            let payload: &[u8] = if j < 2 { &[] } else { b"data!\n" };
            frame.clear();
            b.write(&mut frame, payload).map_err(|e| e.to_string())?;
            let ts = Timestamp(t0.0 + (j * clients.len() + c) as u64 * 100);
            w.write(ts, &frame).map_err(|e| e.to_string())?;
            n += 1;
        }
    }
    w.close().map_err(|e| e.to_string())?;
    Ok(n)
}

/// Runs a target's graph over a capture `repeat` times; the best time (seconds) and the packets.
fn time_graph(target: Target, file: &Path, repeat: usize) -> Result<(f64, u64), String> {
    let mut params = std::collections::BTreeMap::new();
    params.insert("FILE".to_string(), file.display().to_string());
    let cfg = Config::parse(target.name(), target.config(), &params).map_err(|e| e.to_string())?;
    let reg = nf_drivers::registry();
    let mut best = f64::INFINITY;
    let mut packets = 0;
    for _ in 0..repeat.max(1) {
        let mut r =
            Router::new(cfg.build(&reg).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
        let t = Instant::now();
        r.run().map_err(|e| e.to_string())?;
        best = best.min(t.elapsed().as_secs_f64());
        packets = r
            .read_handler("src", "count")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
    }
    Ok((best, packets))
}

/// Mounts the attack and prints a table: clients, ordinary and crafted time, the ratio.
pub fn run(o: &FloodArgs) -> Result<(), String> {
    let (dir, temp) = match &o.write {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("nf-flood-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let aim = match o.aim {
        Aim::Old => "old (the unkeyed hash of earlier builds)",
        Aim::Guess => "guess (this build's keyed hash, the key guessed)",
        Aim::Known => "known (this process's key: an insider)",
    };
    println!(
        "hash flooding: {} packets a client, best of {}; the attacker's hash: {aim}",
        o.per_client, o.repeat
    );
    println!("| table | clients | packets | ordinary | crafted | crafted / ordinary |");
    println!("|---|---|---|---|---|---|");
    let result = (|| {
        for &t in &o.targets {
            for &n in &o.clients {
                let ord = dir.join(format!("{}-{n}-ordinary.pcap", t.name()));
                let cra =
                    dir.join(format!("{}-{n}-crafted-{:?}.pcap", t.name(), o.aim).to_lowercase());
                write_capture(&ord, &ordinary_clients(n), usize::from(o.per_client))?;
                let (crafted, tried) = crafted_clients(n, t, o.aim);
                if crafted.len() < n {
                    return Err(format!(
                        "found only {} crafted clients in {tried} candidates",
                        crafted.len()
                    ));
                }
                write_capture(&cra, &crafted, usize::from(o.per_client))?;
                let (a, pa) = time_graph(t, &ord, o.repeat)?;
                let (b, pb) = time_graph(t, &cra, o.repeat)?;
                println!(
                    "| {} | {n} | {pa} / {pb} | {:.1} ms ({:.2} Mpps) | {:.1} ms ({:.2} Mpps) | **{:.2}x** |",
                    t.name(),
                    a * 1e3,
                    pa as f64 / a / 1e6,
                    b * 1e3,
                    pb as f64 / b / 1e6,
                    b / a
                );
                if temp {
                    let _ = std::fs::remove_file(&ord);
                    let _ = std::fs::remove_file(&cra);
                }
            }
        }
        Ok(())
    })();
    if temp {
        let _ = std::fs::remove_dir(&dir);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crafted_clients_share_a_band_under_the_attackers_hash() {
        let (c, _) = crafted_clients(50, Target::Lb, Aim::Old);
        assert_eq!(c.len(), 50);
        let mask = (1u32 << AIM_BITS) - 1;
        for (ip, port) in c {
            let h = Target::Lb.table_key(ip, port).unkeyed_hash() & mask;
            assert!(h.wrapping_sub(BAND_START) < BAND);
        }
    }
}
