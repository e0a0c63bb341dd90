//! `nf state`: read, write and measure a state store.

use clap::Subcommand;
use std::time::Instant;

/// `nf state`: read, write and measure a state store.
#[derive(clap::Args)]
pub struct StateArgs {
    /// The store: mem:, file:PATH[?fsync=always|batch|never], redis://HOST:PORT/DB,
    /// redis+cluster://HOST:PORT,HOST:PORT.
    #[arg(long)]
    store: String,
    #[command(subcommand)]
    cmd: StateCmd,
}

#[derive(Subcommand)]
pub enum StateCmd {
    /// Print the current state of a schema, one JSON record per line.
    Dump {
        /// flow-mapping, nat-binding, conntrack, backend-load, backend-state or heartbeat.
        #[arg(long)]
        schema: String,
    },
    /// Print the store's counters: entries and last sequence number per schema.
    Stats,
    /// Write synthetic flow-mapping records (client i -> a backend), in batches.
    Load {
        /// Records to write.
        #[arg(long, default_value_t = 100_000)]
        records: u64,
        /// Records per apply.
        #[arg(long, default_value_t = 1000)]
        batch: u64,
        /// Print `ack SEQ` on standard output as each batch is acknowledged.
        #[arg(long)]
        print_acks: bool,
    },
    /// Measure replication latency: a Replicator writes flow-mapping updates at a fixed rate and a
    /// Follower on the same store installs them; prints the time from each change to its installation.
    Lag {
        /// Updates per second.
        #[arg(long, default_value_t = 100_000)]
        rate: u64,
        /// Seconds to run.
        #[arg(long, default_value_t = 3)]
        seconds: u64,
        /// Distinct flows the updates cycle over.
        #[arg(long, default_value_t = 10_000)]
        flows: u64,
    },
    /// Measure upserts per second into the store (flow-mapping, batched).
    Bench {
        /// Records to write.
        #[arg(long, default_value_t = 2_000_000)]
        records: u64,
        /// Records per apply.
        #[arg(long, default_value_t = 4096)]
        batch: u64,
        /// `bincode` or `json`.
        #[arg(long, default_value = "bincode")]
        codec: String,
        /// Distinct keys the upserts cycle over (default: every record a new key).
        #[arg(long)]
        keys: Option<u64>,
    },
}

fn fm_record(i: u64, codec: nf_state::Codec) -> Result<nf_state::Record, String> {
    use nf_state::schemas::{FlowMapping, FlowMappingKey, FlowMappingValue, Proto};
    let key = FlowMappingKey {
        proto: Proto::Tcp,
        client_ip: std::net::IpAddr::from(
            (0x0a00_0000u32.wrapping_add((i / 60_000) as u32)).to_be_bytes(),
        ),
        client_port: (i % 60_000) as u16 + 1024,
    };
    let value = FlowMappingValue {
        backend_ip: std::net::IpAddr::from([10, 1, 0, (i % 5) as u8 + 1]),
        backend_port: 80,
    };
    nf_state::Record::upsert::<FlowMapping>(codec, "nf-load", &key, &value)
        .map_err(|e| e.to_string())
}

/// Runs `nf state`.
pub fn run(o: StateArgs) -> Result<(), String> {
    let (url, cmd) = (o.store.as_str(), o.cmd);
    // Reading commands do not make a store where there is none (the file store creates its directory
    // when opened).
    if matches!(cmd, StateCmd::Dump { .. } | StateCmd::Stats)
        && let Ok(nf_state::StoreUrl::File { path, .. }) = nf_state::StoreUrl::parse(url)
        && !path.exists()
    {
        return Err(format!(
            "no store at {} (nothing was written there)",
            path.display()
        ));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    rt.block_on(async move {
        let store = nf_state::open(url).await.map_err(|e| e.to_string())?;
        match cmd {
            StateCmd::Dump { schema } => {
                if !nf_state::schema::BUILT_IN.contains(&schema.as_str()) {
                    return Err(nf_state::Error::UnknownSchema(schema).to_string());
                }
                let snap = store.scan(&schema).await.map_err(|e| e.to_string())?;
                let mut lines: Vec<String> = Vec::with_capacity(snap.records.len());
                let mut bad = 0;
                for r in &snap.records {
                    match nf_state::json_line(r) {
                        Ok(l) => lines.push(l),
                        Err(_) => bad += 1,
                    }
                }
                lines.sort();
                use std::io::Write;
                let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                let written = lines
                    .iter()
                    .try_for_each(|l| writeln!(out, "{l}"))
                    .and_then(|()| out.flush());
                match written {
                    // A reader that stopped early (`dump | head`) is not an error.
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                    r => r.map_err(|e| e.to_string())?,
                }
                if bad > 0 {
                    eprintln!(
                        "{bad} records did not decode (newer schema versions?) and were skipped"
                    );
                }
                Ok(())
            }
            StateCmd::Stats => {
                let st = store.stats().await.map_err(|e| e.to_string())?;
                println!("store: {}", store.url());
                if st.schemas.iter().all(|s| s.entries == 0 && s.last_seq == 0) {
                    println!(
                        "no records{}",
                        if url.trim_start().starts_with("mem") {
                            " (a mem: store lives in one process: this command's own, new and empty; \
                             use file:PATH or redis:// to share a store between processes)"
                        } else {
                            ""
                        }
                    );
                }
                for s in &st.schemas {
                    println!(
                        "schema {}: entries {} last_seq {} oldest_retained {}",
                        s.schema, s.entries, s.last_seq, s.oldest_retained
                    );
                }
                if !st.counters.is_empty() {
                    let c: Vec<String> = st.counters.iter().map(|(k, v)| format!("{k} {v}")).collect();
                    println!("this command's handle (since it opened the store): {}", c.join(", "));
                }
                // Who is alive: nodes whose heartbeat is under 2 s old; a minion's lag is how far its
                // last applied `flow-mapping` record is behind the store's last one.
                let last = st
                    .schemas
                    .iter()
                    .find(|s| s.schema == "flow-mapping")
                    .map_or(0, |s| s.last_seq);
                let beats = store.scan("heartbeat").await.map_err(|e| e.to_string())?;
                let now = nf_core::Timestamp::now().0;
                for r in &beats.records {
                    if let Ok((k, Some(v))) = r.decode::<nf_state::schemas::Heartbeat>() {
                        let age_ms = now.saturating_sub(v.time_ns) / 1_000_000;
                        let alive = if age_ms < 2000 { "alive" } else { "DOWN" };
                        let lag = if v.role == "minion" {
                            format!(" lag {} records", last.saturating_sub(v.seq))
                        } else {
                            String::new()
                        };
                        println!(
                            "node {} ({}): {alive}, last beat {age_ms} ms ago, seq {}, entries {}{lag}",
                            k.node, v.role, v.seq, v.entries
                        );
                    }
                }
                Ok(())
            }
            StateCmd::Load {
                records,
                batch,
                print_acks,
            } => {
                let batch = batch.max(1);
                let mut i = 0;
                while i < records {
                    let n = batch.min(records - i);
                    let recs = (i..i + n)
                        .map(|j| fm_record(j, nf_state::Codec::Bincode))
                        .collect::<Result<Vec<_>, _>>()?;
                    let seqs = store.apply(recs).await.map_err(|e| e.to_string())?;
                    if print_acks
                        && let Some(last) = seqs.last() {
                            println!("ack {last}");
                        }
                    i += n;
                }
                Ok(())
            }
            StateCmd::Lag { rate, seconds, flows } => {
                use nf_state::replicate::{FollowerStats, Replicator, ReplicatorConfig, follow};
                use nf_state::schemas::{FlowMapping, FlowMappingKey, FlowMappingValue, Proto};
                use std::sync::atomic::Ordering;
                let stats = std::sync::Arc::new(FollowerStats::default());
                let (stop_tx, stop) = tokio::sync::watch::channel(false);
                let follower = tokio::spawn(follow::<FlowMapping>(store.clone(), stats.clone(), stop, |_| {}));
                let rep = Replicator::<FlowMapping>::start(store.clone(), ReplicatorConfig::default());
                let h = rep.handle();
                let per_tick = (rate / 1000).max(1);
                let mut tick = tokio::time::interval(std::time::Duration::from_millis(1));
                let total = rate * seconds;
                let mut sent = 0u64;
                while sent < total {
                    tick.tick().await;
                    for _ in 0..per_tick.min(total - sent) {
                        let i = sent % flows.max(1);
                        let key = FlowMappingKey {
                            proto: Proto::Tcp,
                            client_ip: std::net::IpAddr::from((0x0a00_0000u32 + (i / 60_000) as u32).to_be_bytes()),
                            client_port: (i % 60_000) as u16 + 1024,
                        };
                        let value = FlowMappingValue {
                            backend_ip: std::net::IpAddr::from([10, 1, 0, (sent % 5) as u8 + 1]),
                            backend_port: 80,
                        };
                        h.upsert(key, value);
                        sent += 1;
                    }
                }
                drop(h);
                let rs = rep.close().await;
                let last = store.scan("flow-mapping").await.map_err(|e| e.to_string())?.seq;
                for _ in 0..2000 {
                    if stats.last_seq.load(Ordering::Relaxed) >= last {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
                let _ = stop_tx.send(true);
                let _ = follower.await;
                let us = |ns: u64| ns as f64 / 1000.0;
                println!(
                    "{}: {sent} updates at {rate}/s; written {} records in {} batches ({} coalesced, {} dropped, {} retries)",
                    store.url(),
                    rs.written.load(Ordering::Relaxed),
                    rs.batches.load(Ordering::Relaxed),
                    rs.coalesced.load(Ordering::Relaxed),
                    rs.dropped.load(Ordering::Relaxed),
                    rs.retries.load(Ordering::Relaxed)
                );
                println!(
                    "change -> installed on the follower: p50 <= {:.0} us, p99 <= {:.0} us, max {:.0} us ({} installed)",
                    us(stats.latency.quantile_ns(0.5)),
                    us(stats.latency.quantile_ns(0.99)),
                    us(stats.latency.max_ns()),
                    stats.applied.load(Ordering::Relaxed)
                );
                println!("replicator lag (change -> store ack): p99 <= {:.0} us", us(rs.lag.quantile_ns(0.99)));
                Ok(())
            }
            StateCmd::Bench {
                records,
                batch,
                codec,
                keys,
            } => {
                let codec =
                    nf_state::Codec::from_name(&codec).ok_or("--codec must be bincode or json")?;
                let batch = batch.max(1);
                let keys = keys.unwrap_or(records).max(1);
                let all = (0..records)
                    .map(|j| fm_record(j % keys, codec))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut batches = Vec::new();
                let mut it = all.into_iter();
                loop {
                    let b: Vec<_> = it.by_ref().take(batch as usize).collect();
                    if b.is_empty() {
                        break;
                    }
                    batches.push(b);
                }
                let t0 = Instant::now();
                for b in batches {
                    store.apply(b).await.map_err(|e| e.to_string())?;
                }
                let dt = t0.elapsed().as_secs_f64();
                println!(
                    "{}: {records} upserts over {keys} keys in batches of {batch} ({}): {:.3} s, {:.0} records/s",
                    store.url(),
                    codec.name(),
                    dt,
                    records as f64 / dt
                );
                Ok(())
            }
        }
    })
}
