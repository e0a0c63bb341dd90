//! `FromTap`: the frames the host writes to a TAP interface.

use super::tap::{TapIo, open_tap};
use nf_core::element::{HandlerSpec, InitContext, PortSpec, TaskContext, TaskStatus};
use nf_core::{Element, Outputs, Packet, Timestamp};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;

use nf_core::element::ElementClass;
use nf_core::{Args, ConfigError};

/// Receives the frames written to a TAP interface by the host (creating the interface if needed: bring
/// it up and address it with `ip`), and pushes them on output 0.
///
/// # Ports
/// No input, one push output. A task.
///
/// # Arguments
/// `DEVNAME` (mandatory); `BURST` (default 32).
///
/// # Handlers
/// `count`, `byte_count`, `dropped` (frames the queue from the I/O thread had no room for) (read).
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
pub struct FromTap {
    name: String,
    burst: usize,
    io: Option<Arc<TapIo>>,
    rx: Option<Receiver<Vec<u8>>>,
    count: u64,
    bytes: u64,
}

impl std::fmt::Debug for FromTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FromTap").field("name", &self.name).finish()
    }
}

impl FromTap {
    /// Reads from TAP interface `name`.
    pub fn new(name: impl Into<String>) -> Self {
        FromTap {
            name: name.into(),
            burst: 32,
            io: None,
            rx: None,
            count: 0,
            bytes: 0,
        }
    }
    /// Frames per round.
    pub fn burst(mut self, n: usize) -> Self {
        self.burst = n.max(1);
        self
    }
}

const FROM_HANDLERS: &[HandlerSpec] = &[
    HandlerSpec::read("count", "frames received"),
    HandlerSpec::read("byte_count", "bytes received"),
    HandlerSpec::read("dropped", "frames dropped for want of queue room"),
];

impl Element for FromTap {
    fn class_name(&self) -> &'static str {
        Self::NAME
    }
    fn ports(&self) -> PortSpec {
        PortSpec::SOURCE
    }
    fn initialize(&mut self, ctx: &InitContext<'_>) -> Result<(), String> {
        if ctx.shards > 1 {
            return Err("FromTap cannot be sharded (one TAP queue)".into());
        }
        let io = open_tap(&self.name)?;
        let rx = io
            .rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(|| format!("TAP `{}` already has a FromTap", self.name))?;
        self.rx = Some(rx);
        self.io = Some(io);
        Ok(())
    }
    fn is_task(&self) -> bool {
        true
    }
    fn run_task(&mut self, _ctx: &mut TaskContext<'_>, out: &mut Outputs) -> TaskStatus {
        let Some(rx) = self.rx.as_ref() else {
            return TaskStatus::Done;
        };
        let o = out.port(0);
        let now = Timestamp::now();
        let mut n = 0;
        nf_core::pool::with_local(|pool| {
            while n < self.burst {
                let Ok(f) = rx.try_recv() else { break };
                let mut p = Packet::from_slice_in(pool, &f);
                p.anno.timestamp = now;
                self.count += 1;
                self.bytes += f.len() as u64;
                o.push(p);
                n += 1;
            }
        });
        if n > 0 {
            TaskStatus::Busy
        } else {
            TaskStatus::Idle
        }
    }
    fn handlers(&self) -> &'static [HandlerSpec] {
        FROM_HANDLERS
    }
    fn read_handler(&self, name: &str) -> Option<String> {
        match name {
            "count" => Some(self.count.to_string()),
            "byte_count" => Some(self.bytes.to_string()),
            "dropped" => Some(
                self.io
                    .as_ref()
                    .map_or(0, |i| i.stats.rx_dropped.load(Ordering::Relaxed))
                    .to_string(),
            ),
            _ => None,
        }
    }
}

impl ElementClass for FromTap {
    const NAME: &'static str = "FromTap";
    const DOC: &'static str =
        "receives the frames the host writes to a TAP interface (DEVNAME, BURST)";
    fn configure(a: &mut Args) -> Result<Self, ConfigError> {
        let dev: String = a.read_mp("DEVNAME")?;
        let burst: usize = a.read_or("BURST", 32)?;
        Ok(FromTap::new(dev).burst(burst))
    }
}
