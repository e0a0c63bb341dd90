//! `ToDevice`: frames out of a live Ethernet interface over AF_PACKET, a batch per `sendmmsg`.

use super::af_packet_unsafe::PacketSocket;
use super::ring_unsafe::TxRing;
use nf_core::element::{HandlerSpec, InitContext, PortSpec, TaskContext, TaskStatus};
use nf_core::{Batch, Element, Outputs};

use nf_core::element::ElementClass;
use nf_core::{Args, ConfigError};

/// Sends every packet it gets out of an interface (AF_PACKET). Frames the kernel has no room for are
/// counted and dropped, never queued without bound.
///
/// With `RING true` (the default) a batch is copied into the slots of a `PACKET_TX_RING` mapped once
/// (the one copy a send needs, straight from the packets, borrowed or not) and sent with one system call
/// that copies nothing; a full ring drops. Where a ring cannot be had, or with `RING false`, a batch goes
/// per `sendmmsg`.
///
/// # Ports
/// One input (push, or pull: then a task pulling `BURST` at a time), no output.
///
/// # Arguments
/// `DEVNAME` (mandatory); `BURST` (pull context, default 32); `RING` (default true).
///
/// # Handlers
/// `count`, `byte_count`, `dropped`, `errors`, `ring` (true when the ring is in use) (read).
///
/// # Example
/// A graph between two interfaces (run as root: `nf run bridge.click`); building it checks the
/// configuration without touching an interface:
/// ```
/// let text = "FromDevice(veth0) -> c :: Counter -> ToDevice(veth1);";
/// let cfg = nf_core::Config::parse("bridge.click", text, &Default::default()).unwrap();
/// let graph = cfg.build(&nf_drivers::registry()).unwrap();
/// // nf_core::Router::new(graph)?.run()? opens the sockets and runs until stopped.
/// # let _ = graph;
/// ```
pub struct ToDevice {
    ifname: String,
    burst: usize,
    sock: Option<PacketSocket>,
    use_ring: bool,
    ring: Option<TxRing>,
    pulling: bool,
    scratch: Batch,
    count: u64,
    bytes: u64,
    dropped: u64,
    errors: u64,
}

impl std::fmt::Debug for ToDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToDevice")
            .field("ifname", &self.ifname)
            .field("count", &self.count)
            .finish()
    }
}

impl ToDevice {
    /// Sends on interface `ifname`.
    pub fn new(ifname: impl Into<String>) -> Self {
        ToDevice {
            ifname: ifname.into(),
            burst: 32,
            sock: None,
            use_ring: true,
            ring: None,
            pulling: false,
            scratch: Batch::new(),
            count: 0,
            bytes: 0,
            dropped: 0,
            errors: 0,
        }
    }
    /// Packets pulled per round in pull context.
    pub fn burst(mut self, n: usize) -> Self {
        self.burst = n.max(1);
        self
    }

    /// Send through a `PACKET_TX_RING` when the kernel offers one (the default), or with `sendmmsg`.
    pub fn ring(mut self, on: bool) -> Self {
        self.use_ring = on;
        self
    }

    fn send(&mut self, batch: &mut Batch) {
        if let Some(ring) = self.ring.as_mut() {
            let mut flushed = false;
            for p in batch.iter() {
                let mut ok = ring.put(p.data());
                if !ok && !flushed && p.len() <= ring.max_frame() {
                    // Full: have the kernel send what is marked, then try once more.
                    flushed = true;
                    if ring.flush().is_err() {
                        self.errors += 1;
                    }
                    ok = ring.put(p.data());
                }
                if ok {
                    self.count += 1;
                    self.bytes += p.len() as u64;
                } else {
                    self.dropped += 1;
                }
            }
            if ring.flush().is_err() {
                self.errors += 1;
            }
            batch.clear();
            return;
        }
        let Some(sock) = self.sock.as_ref() else {
            self.dropped += batch.len() as u64;
            batch.clear();
            return;
        };
        for chunk in batch.as_slice().chunks(64) {
            let mut frames: [&[u8]; 64] = [&[]; 64];
            for (f, p) in frames.iter_mut().zip(chunk) {
                *f = p.data();
            }
            match sock.send_batch(&frames[..chunk.len()]) {
                Ok(sent) => {
                    self.count += sent as u64;
                    self.bytes += chunk[..sent].iter().map(|p| p.len() as u64).sum::<u64>();
                    self.dropped += (chunk.len() - sent) as u64;
                }
                Err(_) => {
                    self.errors += 1;
                    self.dropped += chunk.len() as u64;
                }
            }
        }
        batch.clear();
    }
}

const TO_HANDLERS: &[HandlerSpec] = &[
    HandlerSpec::read("count", "frames sent"),
    HandlerSpec::read("byte_count", "bytes sent"),
    HandlerSpec::read("dropped", "frames the kernel had no room for"),
    HandlerSpec::read("errors", "send errors"),
    HandlerSpec::read("ring", "whether frames go through a PACKET_TX_RING"),
];

impl Element for ToDevice {
    fn class_name(&self) -> &'static str {
        Self::NAME
    }
    fn ports(&self) -> PortSpec {
        PortSpec::SINK
    }
    fn initialize(&mut self, ctx: &InitContext<'_>) -> Result<(), String> {
        let s = PacketSocket::open(&self.ifname)
            .map_err(|e| format!("ToDevice({}): {e}", self.ifname))?;
        if self.use_ring {
            // Best effort: without a ring, sendmmsg.
            self.ring = TxRing::new(s.as_fd(), 2048, 1024).ok();
        }
        self.sock = Some(s);
        self.pulling = ctx.pull_inputs & 1 != 0;
        Ok(())
    }
    fn push(&mut self, _port: usize, batch: &mut Batch, _out: &mut Outputs) {
        self.send(batch);
    }
    fn is_task(&self) -> bool {
        self.pulling
    }
    fn run_task(&mut self, ctx: &mut TaskContext<'_>, _out: &mut Outputs) -> TaskStatus {
        let mut b = std::mem::take(&mut self.scratch);
        let n = ctx.pull(0, self.burst, &mut b);
        self.send(&mut b);
        self.scratch = b;
        if n > 0 {
            TaskStatus::Busy
        } else {
            TaskStatus::Idle
        }
    }
    /// A new configuration's sink on the same interface keeps the old one's socket and counts.
    fn take_state(&mut self, old: &mut dyn Element) {
        if let Some(old) = old.as_any_mut().downcast_mut::<ToDevice>()
            && old.ifname == self.ifname
            && old.sock.is_some()
        {
            // The new socket goes to the old element, closed with it off the router's thread.
            std::mem::swap(&mut self.sock, &mut old.sock);
            std::mem::swap(&mut self.ring, &mut old.ring);
            (self.count, self.bytes, self.dropped, self.errors) =
                (old.count, old.bytes, old.dropped, old.errors);
        }
    }
    fn handlers(&self) -> &'static [HandlerSpec] {
        TO_HANDLERS
    }
    fn read_handler(&self, name: &str) -> Option<String> {
        match name {
            "count" => Some(self.count.to_string()),
            "byte_count" => Some(self.bytes.to_string()),
            "dropped" => Some(self.dropped.to_string()),
            "errors" => Some(self.errors.to_string()),
            "ring" => Some(self.ring.is_some().to_string()),
            _ => None,
        }
    }
}

impl ElementClass for ToDevice {
    const NAME: &'static str = "ToDevice";
    const DOC: &'static str =
        "sends frames out of an interface over AF_PACKET (DEVNAME, BURST, RING)";
    fn configure(a: &mut Args) -> Result<Self, ConfigError> {
        let dev: String = a.read_mp("DEVNAME")?;
        let burst: usize = a.read_or("BURST", 32)?;
        let ring: bool = a.read_or("RING", true)?;
        Ok(ToDevice::new(dev).burst(burst).ring(ring))
    }
}
