//! `nf`: the command-line tool of the NF SDK. One module per subcommand, each with its
//! `#[derive(clap::Args)]` struct and its `run`:
//!
//! - `nf run CONFIG [NAME=VALUE ...] [--shards N] [--stats]` ([`run`]): runs a configuration and prints
//!   every element's handlers at the end; `nf elements` lists the element classes.
//! - `nf pcap gen|info|split` ([`pcap`]): writes benchmark traffic, counts a capture, splits one by flow.
//! - `nf bench pipeline|rx|observe|flood|syslog-udp` ([`bench`](mod@bench)): the benchmarks.
//! - `nf state --store URL dump|stats|load|lag|bench` ([`state`]): reads, writes and measures a store.
//! - `nf lb CONFIG --role primary|minion|standalone [--store URL]` ([`lb`]): a stateful L4 load
//!   balancer; a primary replicates its flow mappings, a minion installs them; both beat hearts.
//! - `nf nat CONFIG`, `nf fw CONFIG` ([`nat`]): the NAT minion (an `IPRewriter`, `nat-binding`) and the
//!   stateful-firewall minion (a `ConnTrack`, `conntrack`), with `nf lb`'s roles (the shared [`node`]).
//! - `nf lab` ([`lab`]): the failover lab in network namespaces (needs root).
//! - `nf demo` ([`demo`]): the failover story in one process.
//! - `nf syslogd`, `nf kmsg-forward` ([`syslogd`]): the syslog driver, and a relay of kernel records.
//! - `nf observe` ([`observe`]): the traffic-observation driver.
//! - `nf ctl ADDR read|write|list` ([`ctl`]): a client of the control socket that `nf run` and `nf lb`
//!   open with `--control`.

mod bench;
mod common;
mod ctl;
mod demo;
mod flood;
mod health;
mod io_bench;
mod lab;
mod lb;
mod load;
mod nat;
mod node;
mod observe;
mod pcap;
mod run;
mod serve;
mod state;
mod syslogd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "nf",
    version,
    about = "The NF SDK's command-line tool: run element graphs, generate traffic, benchmark, replicate state"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// The middlebox-minion story in one process (no root, no server): a primary load balancer fails,
    /// a minion takes over with (Failover) and without (Fail) its replicated state; prints the table.
    Demo(demo::DemoArgs),
    /// Run a configuration until its sources are exhausted, then print every element's handlers.
    Run(run::RunArgs),
    /// List the element classes that configurations may use.
    Elements,
    /// Capture-file tools.
    Pcap {
        #[command(subcommand)]
        cmd: pcap::PcapCmd,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        cmd: bench::BenchCmd,
    },
    /// A stateful L4 load balancer from a configuration with a `LoadBalancer` element: a primary
    /// replicates its flow mappings to a store (white-box driver), a minion installs them as they arrive
    /// and serves traffic at once; both report heartbeats (`nf state stats` shows them).
    Lb(lb::LbArgs),
    /// A NAPT box from a configuration with an `IPRewriter`: a primary replicates its bindings
    /// (`nat-binding`), a minion installs the store's bindings (from a primary, or the syslog or
    /// observation driver beside any NAT box) and serves them with the ports the box chose.
    Nat(nat::NatArgs),
    /// A stateful firewall from a configuration with a `ConnTrack`: a primary replicates its
    /// connections (`conntrack`), a minion installs the store's and passes them, dropping mid-stream
    /// packets of any other connection.
    Fw(nat::FwArgs),
    /// The failover lab (needs root): a topology in network namespaces, a primary that fails and a
    /// minion that takes over, real TCP; writes the table (Markdown, JSON) and a plot (SVG).
    Lab(lab::LabArgs),
    /// A syslog server whose messages an extractor turns into state records, until SIGINT/SIGTERM.
    Syslogd(syslogd::SyslogdArgs),
    /// Infer a black box's per-flow state from its traffic on both sides: two capture files (read to
    /// the end, merged by time) or two interfaces (until SIGINT/SIGTERM).
    Observe(observe::ObserveArgs),
    /// Relay new kernel log records (/dev/kmsg) to a syslog server over UDP, until SIGINT/SIGTERM.
    KmsgForward(syslogd::KmsgForwardArgs),
    /// Read, write and measure a state store.
    State(state::StateArgs),
    /// Read and write the handlers of a running `nf run`, `nf lb`, `nf nat` or `nf fw` through its control socket
    /// (`--control`; Click's ControlSocket protocol).
    Ctl(ctl::CtlArgs),
    /// A small HTTP/1.1 server for the labs' backends: `GET /bytes/N`, paced if asked, keep-alive.
    Serve(serve::ServeArgs),
    /// An open-loop HTTP/1.1 load generator: new connections at a rate (Poisson), long DASH-like
    /// flows, every connection's outcome with its timestamps.
    Load(load::LoadArgs),
}

fn main() -> ExitCode {
    let res = match Cli::parse().cmd {
        Cmd::Demo(o) => demo::run(o),
        Cmd::Run(o) => run::run(o),
        Cmd::Elements => {
            run::elements();
            Ok(())
        }
        Cmd::Pcap { cmd } => pcap::run(cmd),
        Cmd::Bench { cmd } => bench::run(cmd),
        Cmd::Lb(o) => lb::run(o),
        Cmd::Nat(o) => nat::run_nat(o),
        Cmd::Fw(o) => nat::run_fw(o),
        Cmd::Lab(o) => lab::run(o),
        Cmd::Syslogd(o) => syslogd::run(o),
        Cmd::Observe(o) => observe::run(o),
        Cmd::KmsgForward(o) => syslogd::kmsg_forward(o),
        Cmd::State(o) => state::run(o),
        Cmd::Ctl(o) => ctl::run(o),
        Cmd::Serve(o) => serve::run(o),
        Cmd::Load(o) => load::run(o),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Errors that already carry the prefix (a configuration's diagnostics) keep theirs.
            if e.starts_with("error") {
                eprintln!("{e}");
            } else {
                eprintln!("error: {e}");
            }
            ExitCode::FAILURE
        }
    }
}
