//! `nf run` and `nf elements`.

use crate::common::{
    ControlArgs, Runner, Source, load_config, print_handlers, registry, source_packets,
    stop_on_signal,
};
use std::path::PathBuf;
use std::time::Instant;

/// `nf run`: runs a configuration until its sources are exhausted (or SIGINT/SIGTERM), then prints every
/// element's handlers.
#[derive(clap::Args)]
pub struct RunArgs {
    /// The configuration file (Click's language).
    config: PathBuf,
    /// `NAME=VALUE` settings for `$NAME` in the configuration.
    #[arg(value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// Run N copies of the graph on N threads, packets dispatched by flow hash.
    #[arg(long, default_value_t = 1)]
    shards: usize,
    /// With --shards: a controller moves buckets of flows (with their state) from busier to idler shards
    /// while the run goes (Metron's, RSS++'s rebalancing; needs one source per shard that follows
    /// epochs: FromPcap over one file, Replay).
    #[arg(long, requires = "shards")]
    rebalance: bool,
    /// Build this many shards, of which --shards take flows at the start: `WRITE steering.shards N` on
    /// the control socket adds or removes shards while the run goes (their flows move with their state);
    /// with --rebalance, a live run (FromDevice) scales by itself between 1 and this many.
    #[arg(long, value_name = "N")]
    max_shards: Option<usize>,
    /// Also print the run time, the packet rate and the buffer pools' counters.
    #[arg(long)]
    stats: bool,
    /// Print nothing but errors.
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    control: ControlArgs,
}

/// Runs `nf run`.
pub fn run(o: RunArgs) -> Result<(), String> {
    let cfg = load_config(&o.config, &o.params)?;
    let reg = registry();
    let max = o.max_shards.unwrap_or(o.shards);
    if max < o.shards {
        return Err(format!(
            "--max-shards {max} is fewer than --shards {}",
            o.shards
        ));
    }
    let mut r = Runner::build_elastic(&cfg, &reg, o.shards, max).map_err(|e| e.to_string())?;
    if o.rebalance {
        let Runner::Sharded(s) = &r else {
            return Err("--rebalance needs --shards 2 or more".into());
        };
        let st = s.steering();
        if let Some(why) = st.why_fixed() {
            return Err(format!("--rebalance: {why}"));
        }
        // With --max-shards, a live run also scales: a shard more while every shard is busy, one fewer
        // while all are idle, between 1 and --max-shards.
        st.set_balance(Some(nf_core::indirection::Balance {
            scale: o.max_shards.map(|m| (1, m)),
            ..Default::default()
        }));
    }
    let _ops = o.control.start_on(
        &mut r,
        &Source {
            cfg: &cfg,
            path: &o.config,
            params: &o.params,
        },
    )?;
    stop_on_signal(r.stop_handle());
    let t0 = Instant::now();
    let res = r.run();
    let dt = t0.elapsed();
    let h = r.handlers();
    if !o.quiet {
        print_handlers(&h);
    }
    if o.stats {
        let n = source_packets(&h);
        let secs = dt.as_secs_f64();
        eprintln!(
            "run: {:.3} s, {} packets, {:.2} Mpps, {:.1} ns/packet, {} shard(s)",
            secs,
            n,
            n as f64 / secs / 1e6,
            secs * 1e9 / n.max(1) as f64,
            o.shards.max(1)
        );
        if let Runner::Sharded(s) = &r {
            let st = s.steering().stats();
            let per: Vec<String> = s
                .shards()
                .iter()
                .map(|r| r.run_stats().packets.to_string())
                .collect();
            eprintln!(
                "shards: packets {}; moves {} ({} by the controller, {} looks), {} entries moved, \
                 inputs held {:.3} ms (longest {:.3} ms)",
                per.join(" / "),
                st.completed,
                st.rebalanced,
                st.decisions,
                st.entries_moved,
                st.held_ns as f64 / 1e6,
                st.max_held_ns as f64 / 1e6
            );
        }
        let p = r.pool_stats();
        eprintln!(
            "buffer pool{}: allocated {} reused {} recycled {} freed {}",
            if o.shards > 1 { "s (all shards)" } else { "" },
            p.allocated,
            p.reused,
            p.recycled,
            p.freed
        );
    }
    res.map_err(|e| e.to_string())
}

/// `nf elements`: lists the element classes configurations may use.
pub fn elements() {
    let reg = registry();
    let w = reg.classes().map(|c| c.name.len()).max().unwrap_or(0);
    for c in reg.classes() {
        println!("{:w$}  {}", c.name, c.doc);
    }
}
