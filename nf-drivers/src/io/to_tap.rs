//! `ToTap`: frames written to a TAP interface for the host.

use super::tap::{TapIo, open_tap};
use nf_core::element::{HandlerSpec, InitContext, PortSpec};
use nf_core::{Batch, Element, Outputs};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use nf_core::element::ElementClass;
use nf_core::{Args, ConfigError};

/// Writes every packet it gets to a TAP interface (the host receives it as if from a wire).
///
/// # Ports
/// One push input, no output.
///
/// # Arguments
/// `DEVNAME` (mandatory).
///
/// # Handlers
/// `count`, `byte_count`, `dropped` (read).
///
/// # Example
/// A graph that gives the host a TAP interface (run as root; `ip link set tap0 up` once it exists);
/// building it checks the configuration without creating the interface:
/// ```
/// let text = "FromTap(tap0) -> c :: Counter -> ToTap(tap0);";
/// let cfg = nf_core::Config::parse("tap.click", text, &Default::default()).unwrap();
/// let graph = cfg.build(&nf_drivers::registry()).unwrap();
/// # let _ = graph;
/// ```
pub struct ToTap {
    name: String,
    io: Option<Arc<TapIo>>,
    count: u64,
    bytes: u64,
    dropped: u64,
}

impl std::fmt::Debug for ToTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToTap").field("name", &self.name).finish()
    }
}

impl ToTap {
    /// Writes to TAP interface `name`.
    pub fn new(name: impl Into<String>) -> Self {
        ToTap {
            name: name.into(),
            io: None,
            count: 0,
            bytes: 0,
            dropped: 0,
        }
    }
}

const TO_HANDLERS: &[HandlerSpec] = &[
    HandlerSpec::read("count", "frames written"),
    HandlerSpec::read("byte_count", "bytes written"),
    HandlerSpec::read("dropped", "frames dropped for want of queue room"),
];

impl Element for ToTap {
    fn class_name(&self) -> &'static str {
        Self::NAME
    }
    fn ports(&self) -> PortSpec {
        PortSpec::new(
            nf_core::element::PortCount::exactly(1),
            nf_core::element::PortCount::exactly(0),
            "h/",
        )
    }
    fn initialize(&mut self, ctx: &InitContext<'_>) -> Result<(), String> {
        if ctx.shards > 1 {
            return Err("ToTap cannot be sharded (one TAP queue)".into());
        }
        self.io = Some(open_tap(&self.name)?);
        Ok(())
    }
    fn push(&mut self, _port: usize, batch: &mut Batch, _out: &mut Outputs) {
        let Some(io) = self.io.as_ref() else {
            self.dropped += batch.len() as u64;
            batch.clear();
            return;
        };
        for p in batch.drain() {
            match io.tx.try_send(p.data().to_vec()) {
                Ok(()) => {
                    self.count += 1;
                    self.bytes += p.len() as u64;
                }
                Err(_) => self.dropped += 1,
            }
        }
    }
    fn handlers(&self) -> &'static [HandlerSpec] {
        TO_HANDLERS
    }
    fn read_handler(&self, name: &str) -> Option<String> {
        let tx_dropped = self
            .io
            .as_ref()
            .map_or(0, |i| i.stats.tx_dropped.load(Ordering::Relaxed));
        match name {
            "count" => Some(self.count.to_string()),
            "byte_count" => Some(self.bytes.to_string()),
            "dropped" => Some((self.dropped + tx_dropped).to_string()),
            _ => None,
        }
    }
}

impl ElementClass for ToTap {
    const NAME: &'static str = "ToTap";
    const DOC: &'static str = "writes frames to a TAP interface for the host (DEVNAME)";
    fn configure(a: &mut Args) -> Result<Self, ConfigError> {
        let dev: String = a.read_mp("DEVNAME")?;
        Ok(ToTap::new(dev))
    }
}
