//! `FromTap` / `ToTap`: a TAP interface through `smoltcp::phy::TunTapInterface`.
//!
//! smoltcp's device is not `Send` (it cannot live inside an element, which a sharded router moves to its
//! thread), and a TAP interface can be opened once per process: so each TAP interface gets one I/O thread
//! that owns the device, shared by the `FromTap` and `ToTap` of that name, and bounded channels carry
//! frames between the thread and the elements (full: counted drops). This is the convenient path for
//! giving a graph a host-facing interface, not the fast one: smoltcp allocates a buffer per frame and
//! makes a system call per frame (AF_PACKET's `FromDevice` takes bursts).

use nf_core::element::{HandlerSpec, InitContext, PortSpec, TaskContext, TaskStatus};
use nf_core::{Batch, Element, Outputs, Packet, Timestamp};
use smoltcp::phy::{Device, Medium, RxToken, TunTapInterface, TxToken};
use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, OnceLock, Weak};

/// Frames queued each way between a TAP's I/O thread and its elements.
const QUEUE: usize = 4096;

#[derive(Debug, Default)]
struct TapStats {
    rx_dropped: AtomicU64,
    tx_dropped: AtomicU64,
}

struct TapIo {
    rx: Mutex<Option<Receiver<Vec<u8>>>>,
    tx: SyncSender<Vec<u8>>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    stats: Arc<TapStats>,
}

impl Drop for TapIo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let t = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = t {
            let _ = t.join();
        }
    }
}

fn taps() -> &'static Mutex<HashMap<String, Weak<TapIo>>> {
    static TAPS: OnceLock<Mutex<HashMap<String, Weak<TapIo>>>> = OnceLock::new();
    TAPS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The I/O thread of TAP `name`, started (creating the interface) if it is not running.
fn open_tap(name: &str) -> Result<Arc<TapIo>, String> {
    let mut map = taps().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(t) = map.get(name).and_then(Weak::upgrade) {
        return Ok(t);
    }
    let (to_elem, rx) = sync_channel::<Vec<u8>>(QUEUE);
    let (tx, from_elem) = sync_channel::<Vec<u8>>(QUEUE);
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(TapStats::default());
    let (ready_tx, ready_rx) = sync_channel::<Result<(), String>>(1);
    let (n, st, s2) = (name.to_string(), stop.clone(), stats.clone());
    let thread = std::thread::Builder::new()
        .name(format!("tap-{name}"))
        .spawn(move || {
            let mut dev = match TunTapInterface::new(&n, Medium::Ethernet) {
                Ok(d) => {
                    let _ = ready_tx.send(Ok(()));
                    d
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("TAP `{n}`: {e}")));
                    return;
                }
            };
            // smoltcp panics on a read error other than "would block" (the interface deleted under
            // us): contain it to this thread, which then ends; the elements see no more frames.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                tap_loop(&mut dev, &to_elem, &from_elem, &st, &s2)
            }));
        })
        .map_err(|e| format!("TAP `{name}`: thread: {e}"))?;
    match ready_rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(format!("TAP `{name}`: the I/O thread failed to start")),
    }
    let io = Arc::new(TapIo {
        rx: Mutex::new(Some(rx)),
        tx,
        stop,
        thread: Mutex::new(Some(thread)),
        stats,
    });
    map.insert(name.to_string(), Arc::downgrade(&io));
    Ok(io)
}

fn tap_loop(
    dev: &mut TunTapInterface,
    to_elem: &SyncSender<Vec<u8>>,
    from_elem: &Receiver<Vec<u8>>,
    stop: &AtomicBool,
    stats: &TapStats,
) {
    let fd = dev.as_raw_fd();
    while !stop.load(Ordering::Relaxed) {
        let now = smoltcp::time::Instant::now();
        let mut busy = false;
        while let Ok(frame) = from_elem.try_recv() {
            busy = true;
            match dev.transmit(now) {
                Some(tok) => tok.consume(frame.len(), |b| b.copy_from_slice(&frame)),
                None => {
                    stats.tx_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        for _ in 0..64 {
            let Some((rx, _)) = dev.receive(now) else {
                break;
            };
            busy = true;
            let frame = rx.consume(|b| b.to_vec());
            if let Err(TrySendError::Full(_)) = to_elem.try_send(frame) {
                stats.rx_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        if !busy {
            // Readable, or a millisecond: frames to transmit wait at most that long.
            let _ = smoltcp::phy::wait(fd, Some(smoltcp::time::Duration::from_millis(1)));
        }
    }
}

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
        "FromTap"
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
        "ToTap"
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
