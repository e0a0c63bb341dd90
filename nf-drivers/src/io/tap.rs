//! The TAP interfaces of [`FromTap`](super::FromTap) and [`ToTap`](super::ToTap), through
//! `smoltcp::phy::TunTapInterface`.
//!
//! smoltcp's device is not `Send` (it cannot live inside an element, which a sharded router moves to its
//! thread), and a TAP interface can be opened once per process: so each TAP interface gets one I/O thread
//! that owns the device, shared by the `FromTap` and `ToTap` of that name, and bounded channels carry
//! frames between the thread and the elements (full: counted drops). This is the convenient path for
//! giving a graph a host-facing interface, not the fast one: smoltcp allocates a buffer per frame and
//! makes a system call per frame (AF_PACKET's `FromDevice` takes bursts).

use smoltcp::phy::{Device, Medium, RxToken, TunTapInterface, TxToken};
use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, OnceLock, Weak};

/// Frames queued each way between a TAP's I/O thread and its elements.
const QUEUE: usize = 4096;

#[derive(Debug, Default)]
pub(super) struct TapStats {
    pub(super) rx_dropped: AtomicU64,
    pub(super) tx_dropped: AtomicU64,
}

/// One TAP interface's I/O thread, shared by the elements of that name.
pub(super) struct TapIo {
    /// Frames from the host (taken by the one `FromTap`).
    pub(super) rx: Mutex<Option<Receiver<Vec<u8>>>>,
    /// Frames to the host.
    pub(super) tx: SyncSender<Vec<u8>>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Drop counters.
    pub(super) stats: Arc<TapStats>,
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
pub(super) fn open_tap(name: &str) -> Result<Arc<TapIo>, String> {
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
