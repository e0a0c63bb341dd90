//! `ToPcap`: writes packets to a pcap file.

use super::pcap::PcapFileWriter;
use nf_core::element::ElementClass;
use nf_core::element::{HandlerSpec, InitContext, PortCount, PortSpec, TaskContext, TaskStatus};
use nf_core::{Args, ConfigError};
use nf_core::{Batch, Element, Outputs};
use std::path::PathBuf;

/// Writes every packet to a classic pcap file (Ethernet link type unless `LINK ip`), buffered; the file is
/// flushed and closed when the run ends. Packets then leave on output 0 if it is connected (else they are
/// dropped). A write error (a full disk) is counted, ends writing, and is reported as the run's error.
///
/// # Ports
/// One agnostic input (in pull context it is a task that pulls), zero or one output.
///
/// # Arguments
/// `FILE` (mandatory); `SNAPLEN` (default 65535); `NANO` (default false: microsecond timestamps);
/// `LINK` (`ether` or `ip`, default ether); `BURST` (pull context, default 32).
///
/// # Handlers
/// `count`, `byte_count` (read).
///
/// # Example
/// ```
/// let file = std::env::temp_dir().join(format!("nf-doc-{}-{}.pcap", std::process::id(), line!()));
/// let reg = nf_drivers::registry();
/// let run = |text: String| {
///     let cfg = nf_core::Config::parse("t", &text, &Default::default()).unwrap();
///     let mut r = nf_core::Router::new(cfg.build(&reg).unwrap()).unwrap();
///     r.run().unwrap();
///     r
/// };
/// run(format!("InfiniteSource(LIMIT 5, STOP true) -> ToPcap({})", file.display()));
/// let r = run(format!("src :: FromPcap({}) -> c :: Counter -> Discard;", file.display()));
/// assert_eq!(r.read_handler("src", "count").unwrap(), "5");
/// assert_eq!(r.read_handler("c", "count").unwrap(), "5");
/// # std::fs::remove_file(&file).unwrap();
/// ```
pub struct ToPcap {
    path: PathBuf,
    snaplen: u32,
    nanos: bool,
    link: pcap_file::DataLink,
    writer: Option<PcapFileWriter>,
    pass_on: bool,
    pulling: bool,
    burst: usize,
    scratch: Batch,
    count: u64,
    bytes: u64,
    error: Option<String>,
}

impl std::fmt::Debug for ToPcap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToPcap")
            .field("path", &self.path)
            .field("count", &self.count)
            .finish()
    }
}

impl ToPcap {
    /// Writes to `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ToPcap {
            path: path.into(),
            snaplen: 65535,
            nanos: false,
            link: pcap_file::DataLink::ETHERNET,
            writer: None,
            pass_on: false,
            pulling: false,
            burst: 32,
            scratch: Batch::new(),
            count: 0,
            bytes: 0,
            error: None,
        }
    }
    /// Nanosecond timestamps.
    pub fn nanos(mut self, n: bool) -> Self {
        self.nanos = n;
        self
    }
    /// Snap length.
    pub fn snaplen(mut self, s: u32) -> Self {
        self.snaplen = s;
        self
    }
    /// Raw-IP link type instead of Ethernet.
    pub fn raw_ip(mut self, raw: bool) -> Self {
        self.link = if raw {
            pcap_file::DataLink::RAW
        } else {
            pcap_file::DataLink::ETHERNET
        };
        self
    }

    fn write_batch(&mut self, batch: &Batch) {
        let Some(w) = self.writer.as_mut() else {
            return;
        };
        for p in batch.iter() {
            if let Err(e) = w.write(p.anno.timestamp, p.data()) {
                self.error = Some(e.to_string());
                self.writer = None;
                return;
            }
            self.count += 1;
            self.bytes += p.len() as u64;
        }
    }
}

const HANDLERS: &[HandlerSpec] = &[
    HandlerSpec::read("count", "packets written"),
    HandlerSpec::read("byte_count", "bytes written"),
];

impl Element for ToPcap {
    fn class_name(&self) -> &'static str {
        Self::NAME
    }
    fn ports(&self) -> PortSpec {
        PortSpec::new(PortCount::exactly(1), PortCount::range(0, 1), "a/a")
    }
    fn initialize(&mut self, ctx: &InitContext<'_>) -> Result<(), String> {
        let path = if ctx.shards > 1 {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{}", ctx.shard));
            PathBuf::from(p)
        } else {
            self.path.clone()
        };
        self.writer = Some(
            PcapFileWriter::create(&path, self.snaplen, self.nanos, self.link)
                .map_err(|e| e.to_string())?,
        );
        self.pass_on = ctx.noutputs > 0;
        self.pulling = ctx.pull_inputs & 1 != 0;
        Ok(())
    }
    fn push(&mut self, _port: usize, batch: &mut Batch, out: &mut Outputs) {
        self.write_batch(batch);
        if self.pass_on {
            out.port(0).append(batch);
        } else {
            batch.clear();
        }
    }
    fn is_task(&self) -> bool {
        self.pulling
    }
    fn run_task(&mut self, ctx: &mut TaskContext<'_>, out: &mut Outputs) -> TaskStatus {
        let mut b = std::mem::take(&mut self.scratch);
        let n = ctx.pull(0, self.burst, &mut b);
        self.write_batch(&b);
        if self.pass_on {
            out.port(0).append(&mut b);
        }
        b.clear();
        self.scratch = b;
        if n > 0 {
            TaskStatus::Busy
        } else {
            TaskStatus::Idle
        }
    }
    fn cleanup(&mut self) {
        if let Some(mut w) = self.writer.take()
            && let Err(e) = w.close()
        {
            self.error = Some(e.to_string());
        }
    }
    fn handlers(&self) -> &'static [HandlerSpec] {
        HANDLERS
    }
    fn read_handler(&self, name: &str) -> Option<String> {
        match name {
            "count" => Some(self.count.to_string()),
            "byte_count" => Some(self.bytes.to_string()),
            _ => None,
        }
    }
    fn error(&self) -> Option<String> {
        self.error.clone()
    }
}

impl ElementClass for ToPcap {
    const NAME: &'static str = "ToPcap";
    const DOC: &'static str = "writes packets to a pcap file (FILE, SNAPLEN, NANO, LINK)";
    fn configure(a: &mut Args) -> Result<Self, ConfigError> {
        let file: String = a.read_mp("FILE")?;
        let snaplen: u32 = a.read_or("SNAPLEN", 65535)?;
        let nano: bool = a.read_or("NANO", false)?;
        let link: String = a.read_or("LINK", "ether".to_string())?;
        let raw = match link.as_str() {
            "ether" | "ethernet" => false,
            "ip" | "raw" => true,
            o => return Err(a.error(format!("LINK must be ether or ip, not `{o}`"))),
        };
        let _burst: usize = a.read_or("BURST", 32)?;
        Ok(ToPcap::new(file).snaplen(snaplen).nanos(nano).raw_ip(raw))
    }
}
