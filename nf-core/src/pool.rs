//! A per-thread pool of packet buffers, so that steady-state processing allocates nothing.
//!
//! Every [`Packet`] takes its buffer from the pool of the thread that creates it and gives it back
//! to the pool of the thread that drops it. A pool is bounded ([`MAX_POOLED`] buffers): past that, buffers
//! are freed, so memory stays bounded even when packets are created on one thread and dropped on another.
//! Pooled buffers are fully initialised (a buffer's length is its capacity), so that reuse costs only the
//! copy of the packet's own bytes.

use crate::packet::Packet;
use bytes::BytesMut;
use std::cell::RefCell;

/// Size of a pooled buffer: headroom plus the largest frame that is pooled.
pub const BUFFER_SIZE: usize = 2048;
/// Bytes kept free in front of a new packet's data, for encapsulation without a copy.
pub const DEFAULT_HEADROOM: usize = 128;
/// Most buffers one thread keeps for reuse (2048 x 2 KiB = 4 MiB).
pub const MAX_POOLED: usize = 2048;

thread_local! {
    static POOL: RefCell<Pool> = const { RefCell::new(Pool { bufs: Vec::new(), shells: Vec::new(), stats: PoolStats { allocated: 0, reused: 0, recycled: 0, freed: 0, unshared: 0 } }) };
}

struct Pool {
    bufs: Vec<BytesMut>,
    /// Whole packets given back by a batch (`Batch::clear`), their buffers still in them: a batch's packets
    /// come back in one copy of the batch, and a source reuses them in place (`Batch::push_copy`).
    /// Moving each buffer out of its packet instead cost a stall per packet (the buffer went through a
    /// temporary written with narrow stores and read with wide loads).
    shells: Vec<Packet>,
    stats: PoolStats,
}

/// Counters of the calling thread's pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Buffers allocated because the pool was empty (or the packet too large for a pooled buffer).
    pub allocated: u64,
    /// Buffers taken from the pool.
    pub reused: u64,
    /// Buffers given back to the pool.
    pub recycled: u64,
    /// Buffers freed because the pool was full or they did not fit it.
    pub freed: u64,
    /// Borrowed packets copied into a pooled buffer by a write (copy-on-write; see [`Packet::unshare`]).
    pub unshared: u64,
}

impl std::ops::Sub for PoolStats {
    type Output = PoolStats;
    fn sub(self, o: PoolStats) -> PoolStats {
        PoolStats {
            allocated: self.allocated.saturating_sub(o.allocated),
            reused: self.reused.saturating_sub(o.reused),
            recycled: self.recycled.saturating_sub(o.recycled),
            freed: self.freed.saturating_sub(o.freed),
            unshared: self.unshared.saturating_sub(o.unshared),
        }
    }
}

impl std::ops::AddAssign for PoolStats {
    fn add_assign(&mut self, o: PoolStats) {
        self.allocated += o.allocated;
        self.reused += o.reused;
        self.recycled += o.recycled;
        self.freed += o.freed;
        self.unshared += o.unshared;
    }
}

impl std::iter::Sum for PoolStats {
    fn sum<I: Iterator<Item = PoolStats>>(it: I) -> PoolStats {
        let mut t = PoolStats::default();
        for s in it {
            t += s;
        }
        t
    }
}

/// The calling thread's pool counters.
pub fn stats() -> PoolStats {
    POOL.try_with(|p| p.borrow().stats).unwrap_or_default()
}

/// Fills the calling thread's pool with `n` buffers (up to [`MAX_POOLED`]) so that a run starts warm.
pub fn prefill(n: usize) {
    let _ = POOL.try_with(|p| {
        let mut p = p.borrow_mut();
        while p.bufs.len() < n.min(MAX_POOLED) {
            p.bufs.push(fresh(BUFFER_SIZE));
        }
    });
}

/// Number of buffers in the calling thread's pool (those in packets it keeps whole included).
pub fn pooled() -> usize {
    POOL.try_with(|p| {
        let p = p.borrow();
        p.bufs.len() + p.shells.len()
    })
    .unwrap_or(0)
}

fn fresh(capacity: usize) -> BytesMut {
    let mut b = BytesMut::zeroed(capacity.max(DEFAULT_HEADROOM));
    let cap = b.capacity();
    b.resize(cap, 0);
    b
}

impl Pool {
    #[inline(always)]
    fn take(&mut self, capacity: usize) -> BytesMut {
        if capacity <= BUFFER_SIZE {
            if let Some(b) = self.bufs.pop() {
                self.stats.reused += 1;
                return b;
            }
            if let Some(b) = self.shells.pop().and_then(|mut p| p.take_buffer()) {
                self.stats.reused += 1;
                return b;
            }
        }
        self.stats.allocated += 1;
        fresh(capacity.max(BUFFER_SIZE))
    }

    #[inline(always)]
    fn give(&mut self, mut b: BytesMut) {
        let cap = b.capacity();
        if cap == 0 {
            return;
        }
        if (BUFFER_SIZE..=2 * BUFFER_SIZE).contains(&cap)
            && self.bufs.len() + self.shells.len() < MAX_POOLED
        {
            if b.len() != cap {
                // A buffer that left through `Packet::into_parts`: make it whole again.
                b.resize(cap, 0);
            }
            self.bufs.push(b);
            self.stats.recycled += 1;
        } else {
            self.stats.freed += 1;
        }
    }
}

/// The calling thread's pool, borrowed once for a whole batch of allocations or releases.
pub struct LocalPool<'a> {
    pool: Option<std::cell::RefMut<'a, Pool>>,
}

impl std::fmt::Debug for LocalPool<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalPool").finish_non_exhaustive()
    }
}

impl LocalPool<'_> {
    /// A fully initialised buffer of at least `capacity` bytes.
    #[inline(always)]
    pub(crate) fn take(&mut self, capacity: usize) -> BytesMut {
        match self.pool.as_mut() {
            Some(p) => p.take(capacity),
            None => fresh(capacity.max(BUFFER_SIZE)),
        }
    }
    /// Returns a buffer.
    #[inline(always)]
    pub(crate) fn give(&mut self, b: BytesMut) {
        if let Some(p) = self.pool.as_mut() {
            p.give(b);
        }
    }

    /// A packet the pool kept whole (its buffer a whole pooled buffer, its other fields stale), if any.
    #[inline(always)]
    pub(crate) fn take_shell(&mut self) -> Option<Packet> {
        let p = self.pool.as_mut()?;
        let s = p.shells.pop()?;
        p.stats.reused += 1;
        Some(s)
    }

    /// Appends `n` packets to `pkts` for a source to fill in place: whole packets the pool kept first (moved
    /// in one go), then empty shells. Give back what was not filled with
    /// [`return_unfilled`](Self::return_unfilled).
    #[inline(always)]
    pub(crate) fn lend_shells(&mut self, pkts: &mut Vec<Packet>, n: usize) {
        let start = pkts.len();
        let want = start + n;
        if let Some(p) = self.pool.as_mut() {
            let m = p.shells.len();
            let k = n.min(m);
            if m <= 2 * n {
                // The usual case (what the pool holds is about a burst): all of them in one copy, the
                // excess back from the tail (a packet at a time, they would go through a temporary each).
                pkts.reserve(m.max(n));
                pkts.append(&mut p.shells);
                if m > k {
                    p.shells.extend(pkts.drain(start + k..));
                }
            } else {
                pkts.reserve(n);
                pkts.extend(p.shells.drain(m - k..));
            }
            p.stats.reused += k as u64;
        }
        pkts.resize_with(want, Packet::shell);
    }

    /// Cuts `pkts` to its first `filled`; the packets after go back to the pool (or are dropped).
    #[inline]
    pub(crate) fn return_unfilled(&mut self, pkts: &mut Vec<Packet>, filled: usize) {
        if pkts.len() <= filled {
            return;
        }
        match self.pool.as_mut() {
            Some(p) => {
                for pk in pkts.drain(filled..) {
                    if pk.poolable() && p.shells.len() + p.bufs.len() < MAX_POOLED {
                        p.stats.reused = p.stats.reused.saturating_sub(1);
                        p.shells.push(pk);
                    }
                }
            }
            None => pkts.truncate(filled),
        }
    }

    /// Takes one packet back: kept whole when it holds a whole pooled buffer and there is room, else its
    /// buffer given back (a borrowed packet lets go of its region).
    #[inline]
    pub(crate) fn keep_one(&mut self, mut pk: Packet) {
        if let Some(p) = self.pool.as_mut()
            && pk.poolable()
            && p.shells.len() + p.bufs.len() < MAX_POOLED
        {
            p.stats.recycled += 1;
            p.shells.push(pk);
            return;
        }
        if let Some(b) = pk.take_buffer() {
            self.give(b);
        }
    }

    /// Takes every packet of `pkts` back: whole, in one copy, when they all hold whole pooled buffers and
    /// there is room; else the whole ones kept one by one and the others' buffers given back (a borrowed
    /// packet lets go of its region). Leaves `pkts` empty.
    #[inline]
    pub(crate) fn keep_packets(&mut self, pkts: &mut Vec<Packet>) {
        if let Some(p) = self.pool.as_mut()
            && p.shells.len() + p.bufs.len() + pkts.len() <= MAX_POOLED
        {
            if pkts.iter().all(Packet::poolable) {
                p.stats.recycled += pkts.len() as u64;
                p.shells.append(pkts);
                return;
            }
            // A mixed batch (borrowed packets among pooled ones, as a source that copies only small frames
            // gives): the pooled ones kept whole, the borrowed ones dropped where they are (through
            // `keep_one`, each would be emptied first and then dropped: 40 instructions a packet more).
            for pk in pkts.drain(..) {
                if pk.poolable() {
                    p.stats.recycled += 1;
                    p.shells.push(pk);
                }
            }
            return;
        }
        for pk in pkts.iter_mut() {
            if let Some(b) = pk.take_buffer() {
                self.give(b);
            }
        }
        pkts.clear();
    }
}

/// Runs `f` with the calling thread's pool borrowed once (packets made with
/// [`Packet::from_slice_in`](crate::Packet::from_slice_in) inside `f` take their buffers from it).
/// Packets dropped inside `f` free their buffers instead of pooling them.
#[inline]
pub fn with_local<R>(f: impl FnOnce(&mut LocalPool<'_>) -> R) -> R {
    // Only a thread being torn down has no pool; whether it has one cannot change during this call.
    if POOL.try_with(|_| ()).is_err() {
        return f(&mut LocalPool { pool: None });
    }
    POOL.with(|p| {
        f(&mut LocalPool {
            pool: p.try_borrow_mut().ok(),
        })
    })
}

/// A fully initialised buffer of at least `capacity` bytes.
#[inline]
pub(crate) fn take(capacity: usize) -> BytesMut {
    take_for(capacity, false)
}

/// [`take`], for a borrowed packet's copy-on-write: counted as `unshared` in the same borrow of the pool.
#[inline]
pub(crate) fn take_unsharing(capacity: usize) -> BytesMut {
    take_for(capacity, true)
}

#[inline(always)]
fn take_for(capacity: usize, unsharing: bool) -> BytesMut {
    POOL.try_with(|p| match p.try_borrow_mut() {
        Ok(mut p) => {
            p.stats.unshared += u64::from(unsharing);
            p.take(capacity)
        }
        Err(_) => fresh(capacity.max(BUFFER_SIZE)),
    })
    .unwrap_or_else(|_| fresh(capacity.max(BUFFER_SIZE)))
}

/// Gives a buffer back to the calling thread's pool (or frees it).
#[inline]
pub(crate) fn give(b: BytesMut) {
    if b.capacity() == 0 {
        return;
    }
    let _ = POOL.try_with(move |p| {
        if let Ok(mut p) = p.try_borrow_mut() {
            p.give(b);
        }
    });
}
