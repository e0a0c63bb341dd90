//! `nf pcap`: capture-file tools.

use clap::Subcommand;
use nf_core::Timestamp;
use nf_core::traffic::{Protocols, SizeMix, Spread, TrafficConfig, TrafficGen};
use std::path::PathBuf;

/// Capture-file tools.
#[derive(Subcommand)]
pub enum PcapCmd {
    /// Write synthetic TCP/UDP traffic (valid checksums, a SYN first per TCP flow) to a pcap file.
    Gen(GenArgs),
    /// Count the packets and bytes of a capture file.
    Info {
        /// The capture.
        file: PathBuf,
    },
    /// Split a capture by flow into one file per shard, as a NIC's RSS spreads traffic over its receive
    /// queues (by the hash a sharded `FromPcap` steers by); `FromPcap(OUT)` then reads, in each shard,
    /// that shard's file.
    Split {
        /// Shards.
        #[arg(long, default_value_t = 2)]
        shards: usize,
        /// The capture (Ethernet frames).
        input: PathBuf,
        /// The output files' name, holding `{shard}` (e.g. `x.{shard}.pcap`).
        out: String,
    },
}

/// The protocols of synthetic traffic.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProtoArg {
    /// TCP and UDP flows, half each.
    Mixed,
    /// TCP only.
    Tcp,
    /// UDP only.
    Udp,
}

impl ProtoArg {
    /// The name the configuration language uses (`InfiniteSource(PROTO ...)`).
    pub fn name(self) -> &'static str {
        match self {
            ProtoArg::Mixed => "mixed",
            ProtoArg::Tcp => "tcp",
            ProtoArg::Udp => "udp",
        }
    }
}

impl From<ProtoArg> for Protocols {
    fn from(p: ProtoArg) -> Self {
        match p {
            ProtoArg::Mixed => Protocols::Mixed,
            ProtoArg::Tcp => Protocols::Tcp,
            ProtoArg::Udp => Protocols::Udp,
        }
    }
}

/// A frame size: a number of bytes (54 to 9000) or `imix`.
pub fn parse_size(s: &str) -> Result<SizeMix, String> {
    match s {
        "imix" => Ok(SizeMix::Imix),
        n => match n.parse::<usize>() {
            Ok(v) if (54..=9000).contains(&v) => Ok(SizeMix::Fixed(v)),
            _ => Err(format!(
                "a frame size is imix or a number of bytes from 54 to 9000, not `{n}`"
            )),
        },
    }
}

/// `nf pcap gen`.
#[derive(clap::Args)]
pub struct GenArgs {
    /// Packets to write.
    #[arg(long, default_value_t = 1_000_000)]
    packets: u64,
    /// Flows.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    flows: u64,
    /// Frame size: a number of bytes (54 to 9000), or `imix`.
    #[arg(long, default_value = "64", value_parser = parse_size)]
    size: SizeMix,
    /// Protocols.
    #[arg(long, value_enum, default_value = "mixed")]
    proto: ProtoArg,
    /// Nanosecond timestamps.
    #[arg(long)]
    nano: bool,
    /// Seed of the packet order.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Skew by shard: choose the flows so that static RSS over two shards gives shard 0 this share of
    /// the packets (percent; 50 is even), as a capture that overloads one core.
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(0..=100),
          conflicts_with = "heavy")]
    skew: Option<u8>,
    /// Elephants: this many flows carry --heavy-share of the packets between them.
    #[arg(long, value_name = "FLOWS")]
    heavy: Option<usize>,
    /// The heavy flows' share of the packets (percent).
    #[arg(long, value_name = "PERCENT", default_value_t = 50,
          value_parser = clap::value_parser!(u8).range(1..=99))]
    heavy_share: u8,
    /// Output file.
    out: PathBuf,
}

/// Runs `nf pcap`.
pub fn run(cmd: PcapCmd) -> Result<(), String> {
    match cmd {
        PcapCmd::Gen(o) => gen_capture(o),
        PcapCmd::Info { file } => info(&file),
        PcapCmd::Split { shards, input, out } => {
            for (path, n) in nf_drivers::io::pcap::split_by_shard(&input, shards, &out)
                .map_err(|e| e.to_string())?
            {
                println!("{}: {n} packets", path.display());
            }
            Ok(())
        }
    }
}

fn gen_capture(o: GenArgs) -> Result<(), String> {
    let flows = usize::try_from(o.flows).map_err(|_| "--flows is too large".to_string())?;
    let cfg = TrafficConfig {
        flows,
        size: o.size,
        protocols: o.proto.into(),
        seed: o.seed,
        bidirectional: true,
        spread: match (o.skew, o.heavy) {
            (Some(percent), _) => Spread::ShardSkew { percent },
            (None, Some(flows)) => Spread::Heavy {
                flows,
                percent: o.heavy_share,
            },
            (None, None) => Spread::Even,
        },
    };
    let mut g = TrafficGen::new(cfg);
    let mut w = nf_drivers::io::pcap::PcapFileWriter::create(
        &o.out,
        65535,
        o.nano,
        pcap_file::DataLink::ETHERNET,
    )
    .map_err(|e| e.to_string())?;
    let t0 = Timestamp::from_parts(1_700_000_000, 0);
    for i in 0..o.packets {
        // One packet per microsecond of capture time.
        w.write(t0.add_nanos(i * 1000), g.next_frame())
            .map_err(|e| e.to_string())?;
        if o.packets >= 10_000_000 && i % 5_000_000 == 0 && i > 0 {
            eprintln!("  {i} packets written");
        }
    }
    w.close().map_err(|e| e.to_string())?;
    eprintln!(
        "wrote {} packets over {flows} flows to {}",
        o.packets,
        o.out.display()
    );
    Ok(())
}

fn info(file: &std::path::Path) -> Result<(), String> {
    let f = nf_drivers::io::pcap::CaptureFile::open(file).map_err(|e| e.to_string())?;
    let (mut n, mut bytes) = (0u64, 0u64);
    let (mut first, mut last) = (None, Timestamp(0));
    for r in f.records() {
        let r = r.map_err(|e| e.to_string())?;
        n += 1;
        bytes += r.data.len() as u64;
        first.get_or_insert(r.timestamp);
        last = r.timestamp;
    }
    println!("file: {}", file.display());
    println!("format: {:?}, link: {:?}", f.format(), f.link());
    println!("packets: {n}");
    println!("bytes: {bytes}");
    if let Some(fst) = first {
        println!("duration: {:.6} s", last.since(fst) as f64 / 1e9);
    }
    Ok(())
}
