//! The kernel's AF_PACKET rings mapped into this process: `PACKET_RX_RING` (TPACKET_V3, blocks of frames the
//! kernel fills and hands over whole) and `PACKET_TX_RING` (TPACKET_V2, frame slots the kernel sends from).
//! Mapping them and reading and writing their status words shared with the kernel is `unsafe`; each block
//! says why it is sound.
//!
//! A receive block the kernel hands over (status `TP_STATUS_USER`) becomes a [`Region`] its packets borrow
//! (zero copy): the block is the process's until the region's last packet is dropped, and the region's
//! owner then gives it back to the kernel (status `TP_STATUS_KERNEL`). The kernel fills blocks in ring
//! order, so a block held long stalls the ring when the kernel comes round to it: the source counts the
//! blocks held ([`RxRing::held`]) and copies instead of borrowing when too many are.
#![allow(unsafe_code)]

use nf_core::region_unsafe::Region;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

/// A ring's memory, unmapped when the last block region (or the ring) lets go.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; every access through it is a read of bytes the process owns at
// the time (a block handed over, a frame slot marked available) or an atomic access of a status word.
unsafe impl Send for Mapping {}
// SAFETY: as for `Send`.
unsafe impl Sync for Mapping {}

impl Mapping {
    fn new(fd: BorrowedFd<'_>, len: usize) -> io::Result<Mapping> {
        // SAFETY: a fresh shared mapping of the socket's ring (which the kernel sized to `len` at the
        // PACKET_*_RING option just set); the result is checked before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(Mapping { ptr, len })
    }

    /// The status word at byte `at` of the mapping (4-byte aligned, within the mapping: the callers' offsets
    /// are a block's or a frame slot's start plus the word's offset in its header).
    fn status(&self, at: usize) -> &AtomicU32 {
        assert!(
            at + 4 <= self.len && at.is_multiple_of(4),
            "status word inside the ring"
        );
        // SAFETY: the word lies within the mapping (checked above) and is 4-byte aligned (the mapping is
        // page-aligned, `at` a multiple of 4); the kernel and this process access it only atomically (the
        // kernel with its own barriers), and the mapping lives as long as `self`.
        unsafe { AtomicU32::from_ptr(self.ptr.as_ptr().add(at).cast::<u32>()) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are the mapping made in `new`, unmapped once, here; no reference into it
        // outlives `self` (block regions hold an `Arc<Mapping>`).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

fn setopt<T>(fd: BorrowedFd<'_>, opt: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: the option value points to a live `T` of the length given.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            opt,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Offset of `block_status` in a TPACKET_V3 block descriptor (`version`, `offset_to_priv`, then the header).
const BLOCK_STATUS: usize = 8;

/// The shape of a receive ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxRingConfig {
    /// Bytes per block (a multiple of the page size).
    pub block_size: usize,
    /// Blocks.
    pub blocks: usize,
    /// Largest frame slot (the kernel's `tp_frame_size`).
    pub frame_size: usize,
    /// Milliseconds after which the kernel hands over a block that is not full.
    pub retire_ms: u32,
}

impl Default for RxRingConfig {
    fn default() -> Self {
        RxRingConfig {
            block_size: 256 << 10,
            blocks: 64,
            frame_size: 2048,
            retire_ms: 1,
        }
    }
}

/// A TPACKET_V3 receive ring on a socket.
pub(crate) struct RxRing {
    map: Arc<Mapping>,
    cfg: RxRingConfig,
    next: usize,
    held: Arc<Held>,
}

/// Which blocks the process holds (handed over, not given back), and how many.
struct Held {
    blocks: Vec<AtomicBool>,
    count: AtomicUsize,
}

impl std::fmt::Debug for RxRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RxRing")
            .field("cfg", &self.cfg)
            .field("next", &self.next)
            .finish()
    }
}

impl RxRing {
    /// Switches the socket to TPACKET_V3 and maps a receive ring of `cfg`'s shape.
    pub(crate) fn new(fd: BorrowedFd<'_>, cfg: RxRingConfig) -> io::Result<RxRing> {
        let version = libc::tpacket_versions::TPACKET_V3 as libc::c_int;
        setopt(fd, libc::PACKET_VERSION, &version)?;
        let req = libc::tpacket_req3 {
            tp_block_size: cfg.block_size as u32,
            tp_block_nr: cfg.blocks as u32,
            tp_frame_size: cfg.frame_size as u32,
            tp_frame_nr: (cfg.block_size / cfg.frame_size * cfg.blocks) as u32,
            tp_retire_blk_tov: cfg.retire_ms,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        setopt(fd, libc::PACKET_RX_RING, &req)?;
        let map = Arc::new(Mapping::new(fd, cfg.block_size * cfg.blocks)?);
        Ok(RxRing {
            map,
            cfg,
            next: 0,
            held: Arc::new(Held {
                blocks: (0..cfg.blocks).map(|_| AtomicBool::new(false)).collect(),
                count: AtomicUsize::new(0),
            }),
        })
    }

    /// The next block in ring order, if the kernel has handed it over: a region over its bytes (the block
    /// descriptor first, then the frames), given back to the kernel when the region goes.
    ///
    /// A block still held from the ring's last turn is not new, whatever its status says (it is the
    /// process's until given back): the reader waits there, as the kernel does.
    pub(crate) fn next_block(&mut self) -> Option<Arc<Region>> {
        let i = self.next;
        if self.held.blocks.get(i)?.load(Ordering::Acquire) {
            return None;
        }
        let at = i * self.cfg.block_size;
        let status = self.map.status(at + BLOCK_STATUS).load(Ordering::Acquire);
        if status & libc::TP_STATUS_USER == 0 {
            return None;
        }
        self.next = (i + 1) % self.cfg.blocks;
        self.held.blocks[i].store(true, Ordering::Relaxed);
        self.held.count.fetch_add(1, Ordering::Relaxed);
        Some(Arc::new(Region::new(Block {
            map: self.map.clone(),
            index: i,
            at,
            len: self.cfg.block_size,
            held: self.held.clone(),
        })))
    }

    /// Blocks handed over and not given back yet (held by packets, or by the reader).
    pub(crate) fn held(&self) -> usize {
        self.held.count.load(Ordering::Relaxed)
    }

    /// The ring's shape.
    pub(crate) fn config(&self) -> RxRingConfig {
        self.cfg
    }
}

/// A receive block the kernel handed over, the owner of its region.
struct Block {
    map: Arc<Mapping>,
    index: usize,
    at: usize,
    len: usize,
    held: Arc<Held>,
}

impl AsRef<[u8]> for Block {
    fn as_ref(&self) -> &[u8] {
        debug_assert!(self.at + self.len <= self.map.len);
        // SAFETY: the block lies within the mapping (block `i` of the ring the kernel sized), which lives
        // as long as `self`; the kernel handed it over (status `TP_STATUS_USER`, read with Acquire ordering
        // so that its frames' bytes are visible) and writes nothing in it until `Drop` gives it back, after
        // every reference to it (the region's, its packets') is gone.
        unsafe { std::slice::from_raw_parts(self.map.ptr.as_ptr().add(self.at), self.len) }
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        // Release: every read of the block happens before the kernel may write it again.
        self.map
            .status(self.at + BLOCK_STATUS)
            .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        // After the status: a reader that sees the block free sees it the kernel's.
        if let Some(b) = self.held.blocks.get(self.index) {
            b.store(false, Ordering::Release);
        }
        self.held.count.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One frame of a receive block, as its `tpacket3_hdr` describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RxFrame {
    /// Byte range of the captured bytes within the block.
    pub start: usize,
    /// Captured length.
    pub snaplen: usize,
    /// Length on the wire (more than `snaplen` when the frame did not fit its slot).
    pub len: usize,
    /// Receive time, nanoseconds since the epoch.
    pub nanos: u64,
    /// Offset of the next frame's header (0 for the last).
    pub next: usize,
}

/// Reads a `u32` of a kernel header (host byte order).
fn host_u32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map(u32::from_ne_bytes)
}

/// A block's frame count and the offset of its first frame header.
pub(crate) fn block_frames(block: &[u8]) -> Option<(usize, usize)> {
    Some((host_u32(block, 12)? as usize, host_u32(block, 16)? as usize))
}

/// The frame whose `tpacket3_hdr` is at `at` in `block`, if the header and its frame lie within the block.
pub(crate) fn block_frame(block: &[u8], at: usize) -> Option<RxFrame> {
    let next = host_u32(block, at)? as usize;
    let sec = u64::from(host_u32(block, at + 4)?);
    let nsec = u64::from(host_u32(block, at + 8)?);
    let snaplen = host_u32(block, at + 12)? as usize;
    let len = host_u32(block, at + 16)? as usize;
    let mac = block
        .get(at + 24..at + 26)
        .map(|s| usize::from(u16::from_ne_bytes([s[0], s[1]])))?;
    let start = at + mac;
    block.get(start..start.checked_add(snaplen)?)?;
    Some(RxFrame {
        start,
        snaplen,
        len,
        nanos: sec * 1_000_000_000 + nsec,
        next,
    })
}

/// Offset of a TX frame's data in its slot: the aligned `tpacket2_hdr` (the kernel's `tp_hdrlen` minus the
/// `sockaddr_ll` it reserves for receive rings only).
const TX_DATA: usize = 32;

/// A TPACKET_V2 transmit ring on a socket: frame slots the process fills (status `TP_STATUS_AVAILABLE`)
/// and marks `TP_STATUS_SEND_REQUEST`; one `send` then has the kernel send every marked slot.
pub(crate) struct TxRing {
    map: Mapping,
    fd: std::os::fd::RawFd,
    frame_size: usize,
    frames: usize,
    next: usize,
}

impl std::fmt::Debug for TxRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxRing")
            .field("frames", &self.frames)
            .field("next", &self.next)
            .finish()
    }
}

impl TxRing {
    /// Switches the socket to TPACKET_V2 and maps a transmit ring of `frames` slots of `frame_size` bytes
    /// (the socket must outlive the ring: it is the socket's element that owns both).
    pub(crate) fn new(fd: BorrowedFd<'_>, frame_size: usize, frames: usize) -> io::Result<TxRing> {
        let version = libc::tpacket_versions::TPACKET_V2 as libc::c_int;
        setopt(fd, libc::PACKET_VERSION, &version)?;
        let block = 64 << 10;
        let per_block = block / frame_size;
        let blocks = frames.div_ceil(per_block.max(1));
        let req = libc::tpacket_req {
            tp_block_size: block as u32,
            tp_block_nr: blocks as u32,
            tp_frame_size: frame_size as u32,
            tp_frame_nr: (blocks * per_block) as u32,
        };
        setopt(fd, libc::PACKET_TX_RING, &req)?;
        let map = Mapping::new(fd, block * blocks)?;
        Ok(TxRing {
            map,
            fd: fd.as_raw_fd(),
            frame_size,
            frames: blocks * per_block,
            next: 0,
        })
    }

    /// The largest frame a slot takes.
    pub(crate) fn max_frame(&self) -> usize {
        self.frame_size - TX_DATA
    }

    /// Copies `frame` into the next free slot and marks it for sending; false if the ring is full (every
    /// slot still the kernel's) or the frame is larger than a slot.
    pub(crate) fn put(&mut self, frame: &[u8]) -> bool {
        if frame.len() > self.max_frame() {
            return false;
        }
        let at = self.next * self.frame_size;
        let status = self.map.status(at);
        let s = status.load(Ordering::Acquire);
        if s & (libc::TP_STATUS_SEND_REQUEST | libc::TP_STATUS_SENDING) != 0 {
            return false;
        }
        // SAFETY: slot `next` lies within the mapping (`frames` slots of `frame_size` bytes); its status is
        // neither SEND_REQUEST nor SENDING (read with Acquire ordering), so the kernel has finished with it
        // and touches it again only after the Release store below; `frame` fits after the slot's header
        // (checked above). No other reference to the slot exists: the ring is `&mut self`.
        unsafe {
            let dst = self.map.ptr.as_ptr().add(at + TX_DATA);
            std::ptr::copy_nonoverlapping(frame.as_ptr(), dst, frame.len());
            let hdr = self.map.ptr.as_ptr().add(at);
            // tp_len and tp_snaplen, after the status word.
            hdr.add(4).cast::<u32>().write(frame.len() as u32);
            hdr.add(8).cast::<u32>().write(frame.len() as u32);
        }
        status.store(libc::TP_STATUS_SEND_REQUEST, Ordering::Release);
        self.next = (self.next + 1) % self.frames;
        true
    }

    /// Has the kernel send every slot marked since the last flush (one system call, not waiting).
    pub(crate) fn flush(&self) -> io::Result<()> {
        // SAFETY: a send with no buffer on a socket descriptor that the ring's owner keeps open; the
        // kernel reads the marked slots of the mapped ring.
        let r = unsafe { libc::send(self.fd, std::ptr::null(), 0, libc::MSG_DONTWAIT) };
        if r < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(()),
                _ if e.raw_os_error() == Some(libc::ENOBUFS) => Ok(()),
                _ => Err(e),
            };
        }
        Ok(())
    }
}
