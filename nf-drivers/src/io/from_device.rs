//! `FromDevice`: a live Ethernet interface's frames over AF_PACKET, a burst per `recvmmsg`.

use super::af_packet_unsafe::PacketSocket;
use nf_core::element::{HandlerSpec, InitContext, PortSpec, TaskContext, TaskStatus};
use nf_core::{Element, Outputs, Packet, Timestamp};

use nf_core::element::ElementClass;
use nf_core::{Args, ConfigError};

/// Largest frame taken from an interface (longer frames, from GRO/TSO left on, are counted and dropped).
const FRAME: usize = 2048 - 128;

/// Receives every frame of an interface (AF_PACKET, promiscuous to what the interface sees; frames this
/// host sends on it are not seen) and pushes them on output 0, a burst per `recvmmsg`. Sharded
/// (`nf run --shards N`), each shard's socket joins one `PACKET_FANOUT_HASH` group: the kernel hands each
/// flow to one shard.
///
/// On virtual interfaces (veth, tap) the kernel leaves checksums to offload: turn it off on the hosts
/// whose traffic crosses the graph (`ethtool -K IFACE tx off`), or frames arrive with partial checksums
/// and (for TCP) as super-frames beyond the MTU, which are counted as `truncated` and dropped.
///
/// # Ports
/// No input, one push output. A task.
///
/// # Arguments
/// `DEVNAME` (mandatory); `BURST` (default 32, at most 64).
///
/// # Handlers
/// `count`, `byte_count`, `truncated` (frames too long, dropped), `errors` (read).
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
pub struct FromDevice {
    ifname: String,
    burst: usize,
    sock: Option<PacketSocket>,
    slab: Vec<u8>,
    lens: Vec<usize>,
    count: u64,
    bytes: u64,
    truncated: u64,
    errors: u64,
    idle: u32,
}

impl std::fmt::Debug for FromDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FromDevice")
            .field("ifname", &self.ifname)
            .field("count", &self.count)
            .finish()
    }
}

impl FromDevice {
    /// Reads from interface `ifname`.
    pub fn new(ifname: impl Into<String>) -> Self {
        FromDevice {
            ifname: ifname.into(),
            burst: 32,
            sock: None,
            slab: Vec::new(),
            lens: Vec::new(),
            count: 0,
            bytes: 0,
            truncated: 0,
            errors: 0,
            idle: 0,
        }
    }
    /// Frames per system call (1..=64).
    pub fn burst(mut self, n: usize) -> Self {
        self.burst = n.clamp(1, 64);
        self
    }
}

const FROM_HANDLERS: &[HandlerSpec] = &[
    HandlerSpec::read("count", "frames received"),
    HandlerSpec::read("byte_count", "bytes received"),
    HandlerSpec::read("truncated", "frames longer than the buffer, dropped"),
    HandlerSpec::read("errors", "receive errors"),
];

impl Element for FromDevice {
    fn class_name(&self) -> &'static str {
        Self::NAME
    }
    fn ports(&self) -> PortSpec {
        PortSpec::SOURCE
    }
    fn initialize(&mut self, ctx: &InitContext<'_>) -> Result<(), String> {
        let s = PacketSocket::open(&self.ifname)
            .map_err(|e| format!("FromDevice({}): {e}", self.ifname))?;
        if ctx.shards > 1 {
            // One socket per shard in a fanout group: the kernel steers each flow to one shard. The
            // group id is this process's and this interface's.
            let group = (std::process::id() as u16) ^ (s.ifindex() as u16).rotate_left(8);
            s.join_fanout(group)
                .map_err(|e| format!("FromDevice({}): fanout: {e}", self.ifname))?;
        }
        self.sock = Some(s);
        self.slab = vec![0u8; FRAME * self.burst];
        self.lens = vec![0; self.burst];
        Ok(())
    }
    fn is_task(&self) -> bool {
        true
    }
    fn run_task(&mut self, _ctx: &mut TaskContext<'_>, out: &mut Outputs) -> TaskStatus {
        let Some(sock) = self.sock.as_ref() else {
            return TaskStatus::Done;
        };
        let mut bufs: [&mut [u8]; 64] = std::array::from_fn(|_| -> &mut [u8] { &mut [] });
        let mut n = 0;
        for (slot, chunk) in bufs.iter_mut().zip(self.slab.chunks_exact_mut(FRAME)) {
            *slot = chunk;
            n += 1;
        }
        let got = match sock.recv_batch(&mut bufs[..n], &mut self.lens) {
            Ok(g) => g,
            Err(_) => {
                self.errors += 1;
                0
            }
        };
        if got == 0 {
            // Nothing waiting: after a few empty rounds, sleep in poll() for up to a millisecond rather
            // than spin (the router's other tasks still run between rounds).
            self.idle += 1;
            if self.idle > 16 {
                sock.wait_readable(1);
            }
            return TaskStatus::Idle;
        }
        self.idle = 0;
        let now = Timestamp::now();
        let o = out.port(0);
        nf_core::pool::with_local(|pool| {
            for (buf, &len) in bufs.iter().zip(&self.lens).take(got) {
                if len > FRAME {
                    self.truncated += 1;
                    continue;
                }
                let mut p = Packet::from_slice_in(pool, &buf[..len]);
                p.anno.timestamp = now;
                self.count += 1;
                self.bytes += len as u64;
                o.push(p);
            }
        });
        TaskStatus::Busy
    }
    /// A new configuration's source on the same interface keeps reading the old one's socket: the
    /// frames that arrived while the new graph was built are in its queue (and in the new socket's,
    /// which is closed): none lost, none twice.
    fn take_state(&mut self, old: &mut dyn Element) {
        if let Some(old) = old.as_any_mut().downcast_mut::<FromDevice>()
            && old.ifname == self.ifname
            && old.sock.is_some()
        {
            // The new socket goes to the old element, closed with it off the router's thread.
            std::mem::swap(&mut self.sock, &mut old.sock);
            (self.count, self.bytes, self.truncated, self.errors) =
                (old.count, old.bytes, old.truncated, old.errors);
        }
    }
    fn handlers(&self) -> &'static [HandlerSpec] {
        FROM_HANDLERS
    }
    fn read_handler(&self, name: &str) -> Option<String> {
        match name {
            "count" => Some(self.count.to_string()),
            "byte_count" => Some(self.bytes.to_string()),
            "truncated" => Some(self.truncated.to_string()),
            "errors" => Some(self.errors.to_string()),
            _ => None,
        }
    }
}

impl ElementClass for FromDevice {
    const NAME: &'static str = "FromDevice";
    const DOC: &'static str = "receives an interface's frames over AF_PACKET (DEVNAME, BURST)";
    fn configure(a: &mut Args) -> Result<Self, ConfigError> {
        let dev: String = a.read_mp("DEVNAME")?;
        let burst: usize = a.read_or("BURST", 32)?;
        Ok(FromDevice::new(dev).burst(burst))
    }
}
