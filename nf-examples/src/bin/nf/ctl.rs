//! `nf ctl`: a client of a running graph's control socket (Click's ControlSocket protocol).

use clap::Subcommand;
use nf_core::control::{Client, Listen, Reply};
use std::time::Duration;

/// `nf ctl`: reads and writes the handlers of a running `nf run` or `nf lb` (started with `--control`).
#[derive(clap::Args)]
pub struct CtlArgs {
    /// The control socket: unix:PATH or tcp:ADDRESS:PORT.
    #[arg(value_parser = |s: &str| Listen::parse(s).map_err(|e| e.to_string()))]
    addr: Listen,
    #[command(subcommand)]
    cmd: CtlCmd,
    /// Seconds to wait for the socket and each answer.
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
}

/// What to do.
#[derive(Subcommand)]
enum CtlCmd {
    /// Print a handler's value (`element.handler`, or `version`, `list`, `classes`, `config`,
    /// `flatconfig`).
    Read {
        /// The handler.
        handler: String,
    },
    /// Write a handler (the words of the value are joined by spaces). `write hotconfig --file F`
    /// loads a new configuration into the running graph, keeping the state of every element whose
    /// name and class stay (prints what the swap kept; a configuration with errors changes nothing
    /// and its errors are printed).
    Write {
        /// The handler.
        handler: String,
        /// The value.
        value: Vec<String>,
        /// Send this file's contents as the value (`WRITEDATA`: any bytes, newlines included).
        #[arg(long, short, conflicts_with = "value")]
        file: Option<std::path::PathBuf>,
    },
    /// List every element with its class and handlers (r: readable, w: writable).
    List,
    /// Read a handler COUNT times over one connection and print the round trips' percentiles (what
    /// an operator's read costs while the graph carries traffic).
    Time {
        /// The handler.
        handler: String,
        /// How many reads.
        #[arg(long, default_value_t = 1000)]
        count: usize,
    },
}

fn ok(r: Reply) -> Result<Reply, String> {
    if r.code / 100 == 2 {
        Ok(r)
    } else {
        Err(format!("{} {}", r.code, r.message))
    }
}

/// Runs `nf ctl`.
pub fn run(o: CtlArgs) -> Result<(), String> {
    let timeout = Duration::try_from_secs_f64(o.timeout)
        .map_err(|_| format!("--timeout {} is not a number of seconds", o.timeout))?;
    let mut c = Client::connect(&o.addr, timeout).map_err(|e| format!("{}: {e}", o.addr))?;
    let err = |e: nf_core::control::ClientError| e.to_string();
    match o.cmd {
        CtlCmd::Read { handler } => {
            let r = ok(c.read(&handler).map_err(err)?)?;
            let v = r.data.unwrap_or_default();
            print!("{v}");
            if !v.ends_with('\n') {
                println!();
            }
        }
        CtlCmd::Write {
            handler,
            value,
            file,
        } => {
            let r = match file {
                Some(f) => {
                    let data = std::fs::read(&f).map_err(|e| format!("{}: {e}", f.display()))?;
                    c.command(&format!("WRITEDATA {handler} {}", data.len()), Some(&data))
                }
                None => c.write(&handler, &value.join(" ")),
            };
            let r = ok(r.map_err(err)?)?;
            if handler == "hotconfig" {
                println!("{}", r.message);
            }
        }
        CtlCmd::Time { handler, count } => {
            let mut rtts = Vec::with_capacity(count);
            for _ in 0..count.max(1) {
                let t0 = std::time::Instant::now();
                ok(c.read(&handler).map_err(err)?)?;
                rtts.push(t0.elapsed().as_secs_f64() * 1e6);
            }
            rtts.sort_by(f64::total_cmp);
            let q = |p: f64| rtts[((rtts.len() - 1) as f64 * p).round() as usize];
            println!(
                "{} reads of {handler}: p50 {:.0} us, p90 {:.0} us, p99 {:.0} us, max {:.0} us",
                rtts.len(),
                q(0.5),
                q(0.9),
                q(0.99),
                q(1.0)
            );
        }
        CtlCmd::List => {
            let list = ok(c.read("list").map_err(err)?)?.data.unwrap_or_default();
            for name in list.lines().skip(1) {
                let class = ok(c.read(&format!("{name}.class")).map_err(err)?)?
                    .data
                    .unwrap_or_default();
                let hs = ok(c.read(&format!("{name}.handlers")).map_err(err)?)?
                    .data
                    .unwrap_or_default();
                let hs: Vec<String> = hs
                    .lines()
                    .filter_map(|l| l.split_once('\t'))
                    .filter(|(h, _)| !matches!(*h, "class" | "name" | "handlers"))
                    .map(|(h, rw)| format!("{h} ({rw})"))
                    .collect();
                println!("{name} :: {class}  {}", hs.join(", "));
            }
        }
    }
    Ok(())
}
