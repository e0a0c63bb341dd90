//! `FromDevice`: a live Ethernet interface's frames over AF_PACKET, a burst per `recvmmsg`.

use super::af_packet_unsafe::PacketSocket;
use super::ring_unsafe::{RxRing, RxRingConfig, block_frame, block_frames};
use nf_core::element::{HandlerSpec, InitContext, PortSpec, TaskContext, TaskStatus};
use nf_core::region_unsafe::Region;
use nf_core::{Element, Outputs, Packet, Timestamp};
use std::sync::Arc;

use nf_core::element::ElementClass;
use nf_core::{Args, ConfigError};

/// Largest frame taken from an interface (longer frames, from GRO/TSO left on, are counted and dropped).
const FRAME: usize = 2048 - 128;

/// Receives every frame of an interface (AF_PACKET, promiscuous to what the interface sees; frames this
/// host sends on it are not seen) and pushes them on output 0. Sharded (`nf run --shards N`), each shard's
/// socket joins one fanout group: the kernel hands each flow to one shard. With `FANOUT table` (the
/// default) a classic BPF program computes each frame's bucket of the symmetric flow hash and sends it to
/// the shard the run's indirection table names (`nf_core::indirection`; the program is
/// `nf_drivers::io::fanout`'s): the same shard a sharded file reader picks, and no frame crosses cores.
/// With `FANOUT hash` the kernel spreads flows by its own hash (`PACKET_FANOUT_HASH`) and the runtime
/// hands each packet on to the shard that owns its flow.
///
/// Zero copy (`RING true`, the default): the socket's frames arrive in a `PACKET_RX_RING` (TPACKET_V3)
/// mapped once, in blocks the kernel fills and hands over whole; a frame of `COPYBREAK` bytes or more
/// becomes a packet that points into its block (no copy, no system call per burst), shorter ones are copied.
/// A block goes back to the kernel when its last packet is dropped. The kernel fills blocks in ring order,
/// so a graph that holds packets long would stall it: while half the ring's blocks are held, frames are
/// copied instead (counted in `copied_held`). Where a ring cannot be had (an old kernel), or with
/// `RING false`, frames are read with `recvmmsg`, a burst per system call, and copied.
///
/// On virtual interfaces (veth, tap) the kernel leaves checksums to offload: turn it off on the hosts
/// whose traffic crosses the graph (`ethtool -K IFACE tx off`), or frames arrive with partial checksums
/// and (for TCP) as super-frames beyond the MTU, which are counted as `truncated` and dropped.
///
/// # Ports
/// No input, one push output. A task.
///
/// # Arguments
/// `DEVNAME` (mandatory); `BURST` (default 32, at most 64); `RING` (default true); `COPYBREAK` (bytes,
/// default 256); `FANOUT` (`table`, the default, or `hash`: how shards share the interface).
///
/// # Handlers
/// `count`, `byte_count`, `truncated` (frames too long, dropped), `errors`, `ring` (true when the ring is
/// in use), `borrowed` (frames handed out in place), `copied_held` (frames copied because too many blocks
/// were held), `kernel_drops` (frames the kernel dropped, its queue or ring full), `held` (frames of
/// buckets this shard took over, held until their state came), `held_dropped` (over 8192 held),
/// `swaps` (fanout program swaps this shard made), `ring_wait_p99_ms` (99th percentile of the time frames
/// sat in the ring before the graph took them, one frame in 16 sampled: a shard that falls behind shows
/// here first) (read).
///
/// # Bucket moves
/// With `FANOUT table`, a bucket moved between shards (`nf_core::indirection`) moves in the kernel too:
/// every shard acknowledges the move, then one installs the new program (the kernel's swap is atomic:
/// when it returns, every frame the old program steered is in its socket's ring). The old owner reads
/// its ring until it is empty after the ring's block timeout has passed, then its router hands the
/// bucket's state over; the new owner holds the bucket's frames (only those) until the state is in,
/// then lets them go first, in order.
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
    use_ring: bool,
    copy_below: usize,
    sock: Option<PacketSocket>,
    ring: Option<RxRing>,
    /// The block being read: its region, the offset of its next frame header, frames left.
    block: Option<(Arc<Region>, usize, usize)>,
    borrowed: u64,
    copied_held: u64,
    /// Frames the kernel dropped (read from the socket when the handler is read).
    kernel_drops: std::cell::Cell<u64>,
    slab: Vec<u8>,
    lens: Vec<usize>,
    count: u64,
    bytes: u64,
    truncated: u64,
    errors: u64,
    idle: u32,
    /// In a sharded run: follow the run's indirection table (a `PACKET_FANOUT_CBPF` program), or the
    /// kernel's own flow hash (`PACKET_FANOUT_HASH`, the runtime then re-dispatches by flow).
    by_table: bool,
    /// Whether this shard's socket steers by the table (joined with the program).
    steered: bool,
    /// Bucket moves (live): see [`Live`].
    live: Option<Box<Live>>,
    /// Time spent waiting for frames (a live shard's idleness, for the run's controller).
    waited_ns: u64,
    /// How long frames sat in the ring before the graph took them (one in [`AGE_SAMPLE`]), by power of
    /// two of nanoseconds.
    ages: [u64; 40],
    aged: u32,
}

/// One frame in this many has its time in the ring recorded (`ring_wait_p99_ms`).
const AGE_SAMPLE: u32 = 16;

/// Most frames a shard holds for buckets it takes over while their state is on its way (more are
/// dropped, counted in `held_dropped`).
const MAX_HELD: usize = 8192;

/// How long after a fanout program swap a shard waits before it counts its ring as drained of what the
/// old program sent it: the block the kernel was filling is handed over by the ring's block timeout
/// (1 ms), so twice that and a margin.
const RING_DRAIN: std::time::Duration = std::time::Duration::from_millis(3);

/// A steered shard's part in bucket moves: the run's steering, its copy of the table, the epoch it
/// entered, what it still owes for it, and the frames it holds for buckets it takes over.
struct Live {
    steer: Arc<nf_core::indirection::Steering>,
    shard: usize,
    table: nf_core::indirection::Indirection,
    epoch: u64,
    /// Entered `epoch` and not done with it: the swap to see, and (giving buckets away) the drain.
    pending: bool,
    outgoing: bool,
    /// When the swap was seen plus the drain time: a read after it that finds the ring empty drains.
    drain_at: Option<std::time::Instant>,
    incoming: nf_core::indirection::BucketSet,
    held: std::collections::VecDeque<Packet>,
    scratch: Vec<Packet>,
    held_total: u64,
    held_dropped: u64,
    swaps: u64,
    swap_errors: u64,
    /// The steering's version when it was last asked for a new epoch.
    seen: u64,
    /// For the run's controller (while it runs): packets per bucket since the last report, and when
    /// the last report went.
    counting: bool,
    counts: Box<[u32; nf_core::indirection::BUCKETS]>,
    reported: Option<Timestamp>,
}

/// How often a live shard reports its load to the run's controller.
const REPORT_EVERY_NS: u64 = 10_000_000;

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
            use_ring: true,
            copy_below: 256,
            sock: None,
            ring: None,
            block: None,
            borrowed: 0,
            copied_held: 0,
            kernel_drops: std::cell::Cell::new(0),
            slab: Vec::new(),
            lens: Vec::new(),
            count: 0,
            bytes: 0,
            truncated: 0,
            errors: 0,
            idle: 0,
            by_table: true,
            steered: false,
            live: None,
            waited_ns: 0,
            ages: [0; 40],
            aged: 0,
        }
    }

    /// In a sharded run, whether the kernel dispatches frames by the run's indirection table (a classic
    /// BPF fanout program: no frame crosses cores; the default) or by its own flow hash, the runtime then
    /// handing each packet to its shard.
    pub fn fanout_by_table(mut self, yes: bool) -> Self {
        self.by_table = yes;
        self
    }
    /// Frames per system call (1..=64).
    pub fn burst(mut self, n: usize) -> Self {
        self.burst = n.clamp(1, 64);
        self
    }
    /// Receive through a `PACKET_RX_RING` (zero copy) when the kernel offers one (the default), or with
    /// `recvmmsg`.
    pub fn ring(mut self, on: bool) -> Self {
        self.use_ring = on;
        self
    }
    /// Frames shorter than `bytes` are copied out of the ring, longer ones borrowed.
    pub fn copybreak(mut self, bytes: usize) -> Self {
        self.copy_below = bytes;
        self
    }

    /// Bucket moves, between two receives: enters the next epoch that has moves once the kernel follows
    /// the last one; swaps the group's fanout program when every shard has entered (one shard does it);
    /// after the swap, a shard giving buckets away waits for its ring to drain (see [`RING_DRAIN`]).
    fn follow_moves(&mut self) {
        let ring = self.ring.is_some();
        let Some(l) = self.live.as_deref_mut() else {
            return;
        };
        let st = l.steer.clone();
        // The next epoch once this one is done: the kernel follows it, this shard's exports are
        // released, and the frames it held for buckets it took over are through (a bucket it holds
        // frames of may move on in the next epoch: its frames must reach its state first).
        if !l.pending
            && l.held.is_empty()
            && !st.awaiting(l.shard)
            && st.swapped() >= l.epoch
            && st.version() != l.seen
        {
            l.seen = st.version();
            if let Some(e) = st.next_epoch(l.epoch) {
                let entered = st.enter_live(l.shard, e, &mut l.table);
                l.epoch = e;
                l.pending = true;
                l.outgoing = entered.outgoing;
                l.drain_at = None;
                for b in entered.incoming.iter() {
                    l.incoming.insert(b);
                }
            }
        }
        if !l.pending {
            return;
        }
        if st.swapped() < l.epoch && st.claim_swap(l.epoch) {
            let done = super::fanout::program(&l.table)
                .and_then(|prog| self.sock.as_ref()?.set_fanout_program(&prog).ok());
            if done.is_some() {
                l.swaps += 1;
            } else {
                l.swap_errors += 1;
            }
            st.mark_swapped(l.epoch);
        }
        if st.swapped() >= l.epoch {
            if !l.outgoing {
                l.pending = false;
                l.seen = u64::MAX;
            } else if l.drain_at.is_none() {
                let wait = if ring {
                    RING_DRAIN
                } else {
                    std::time::Duration::ZERO
                };
                l.drain_at = Some(std::time::Instant::now() + wait);
            }
        }
    }

    /// While the run's controller runs: counts the `got` frames just received by bucket, and every
    /// [`REPORT_EVERY_NS`] reports them with the share of the time not spent waiting for frames.
    fn report_load(&mut self, now: Timestamp, out: &mut Outputs, got: usize) {
        let Some(l) = self.live.as_deref_mut() else {
            return;
        };
        if l.counting && got > 0 {
            let hasher = nf_core::flow::FrameHasher::new(nf_core::hash::toeplitz::symmetric());
            let b = out.port(0);
            let from = b.len().saturating_sub(got);
            for p in &b.as_slice()[from..] {
                l.counts[nf_core::indirection::bucket_of(hasher.hash(p.data()))] += 1;
            }
        }
        let last = *l.reported.get_or_insert(now);
        if now.since(last) < REPORT_EVERY_NS {
            return;
        }
        l.reported = Some(now);
        if l.counting {
            // Busy: the share of the interval not spent waiting for frames.
            let waited = std::mem::take(&mut self.waited_ns) as f64;
            let busy = 1.0 - (waited / now.since(last).max(1) as f64).min(1.0);
            l.steer.report_live(l.shard, &mut l.counts, busy);
        }
        self.waited_ns = 0;
        l.counting = l.steer.balancing();
    }

    /// After a receive of `got` frames: a shard giving buckets away that has drained releases their
    /// export; frames of buckets this shard takes over wait (in order, bounded) until their state is in,
    /// then go first. Returns how many held frames it let go.
    fn hold_and_release(&mut self, out: &mut Outputs, got: usize) -> usize {
        let burst = self.burst;
        let Some(l) = self.live.as_deref_mut() else {
            return 0;
        };
        if l.pending
            && l.outgoing
            && got < burst
            && l.drain_at.is_some_and(|t| std::time::Instant::now() >= t)
        {
            l.steer.release(l.shard, l.epoch);
            l.outgoing = false;
            l.pending = false;
            l.drain_at = None;
            l.seen = u64::MAX;
        }
        if l.incoming.is_empty() {
            return 0;
        }
        let o = out.port(0);
        l.scratch.extend(o.drain());
        let hasher = nf_core::flow::FrameHasher::new(nf_core::hash::toeplitz::symmetric());
        for p in l.scratch.drain(..) {
            if l.incoming.holds_hash(hasher.hash(p.data())) {
                if l.held.len() < MAX_HELD {
                    l.held.push_back(p);
                    l.held_total += 1;
                } else {
                    l.held_dropped += 1;
                }
            } else {
                o.push(p);
            }
        }
        let mut emitted = 0;
        if !l.steer.awaiting(l.shard) {
            while emitted < nf_core::BATCH_SIZE {
                let Some(p) = l.held.pop_front() else {
                    break;
                };
                o.push(p);
                emitted += 1;
            }
            if l.held.is_empty() {
                l.incoming = Default::default();
            }
        }
        emitted
    }

    /// The 99th percentile of the sampled times frames sat in the ring, in nanoseconds (the upper bound
    /// of its power-of-two bucket); 0 before any sample.
    pub fn ring_wait_p99_ns(&self) -> u64 {
        let total: u64 = self.ages.iter().sum();
        let mut seen = 0;
        for (i, &n) in self.ages.iter().enumerate() {
            seen += n;
            if seen * 100 >= total * 99 && total > 0 {
                return 2u64 << i;
            }
        }
        0
    }

    /// One round's receive: frames from the ring (or `recvmmsg`) into output 0. Returns the status and
    /// how many frames came.
    fn receive(&mut self, out: &mut Outputs) -> (TaskStatus, usize) {
        if self.ring.is_some() {
            let got = self.read_ring(out);
            if got > 0 {
                self.idle = 0;
                return (TaskStatus::Busy, got);
            }
            self.idle += 1;
            if self.idle > 16
                && let Some(sock) = self.sock.as_ref()
            {
                let t = std::time::Instant::now();
                sock.wait_readable(1);
                self.waited_ns += t.elapsed().as_nanos() as u64;
            }
            return (TaskStatus::Idle, 0);
        }
        let Some(sock) = self.sock.as_ref() else {
            return (TaskStatus::Done, 0);
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
                let t = std::time::Instant::now();
                sock.wait_readable(1);
                self.waited_ns += t.elapsed().as_nanos() as u64;
            }
            return (TaskStatus::Idle, 0);
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
        (TaskStatus::Busy, got)
    }

    /// A new configuration's source on the same interface keeps reading the old one's socket: the
    /// frames that arrived while the new graph was built are in its queue (and in the new socket's,
    /// which is closed): none lost, none twice.
    fn take_socket(&mut self, old: &mut dyn Element) {
        if let Some(old) = old.as_any_mut().downcast_mut::<FromDevice>()
            && old.ifname == self.ifname
            && old.sock.is_some()
        {
            // The new socket goes to the old element, closed with it off the router's thread; the ring
            // (and the block being read) comes with the socket it belongs to.
            std::mem::swap(&mut self.sock, &mut old.sock);
            std::mem::swap(&mut self.ring, &mut old.ring);
            std::mem::swap(&mut self.block, &mut old.block);
            std::mem::swap(&mut self.slab, &mut old.slab);
            std::mem::swap(&mut self.lens, &mut old.lens);
            (self.count, self.bytes, self.truncated, self.errors) =
                (old.count, old.bytes, old.truncated, old.errors);
            (self.borrowed, self.copied_held) = (old.borrowed, old.copied_held);
        }
    }

    /// A burst from the ring: frames of the block being read (the next one the kernel handed over when it
    /// is done), borrowed or copied. Returns how many were pushed.
    fn read_ring(&mut self, out: &mut Outputs) -> usize {
        let o = out.port(0);
        let mut pushed = 0;
        let Some(ring) = self.ring.as_mut() else {
            return 0;
        };
        let frame_room = ring.config().frame_size;
        let now = Timestamp::now();
        // Copy instead of borrowing while half the ring is held by packets.
        let crowded = ring.held() > ring.config().blocks / 2;
        nf_core::pool::with_local(|pool| {
            while pushed < self.burst {
                if self.block.as_ref().is_none_or(|b| b.2 == 0) {
                    self.block = None;
                    let Some(region) = ring.next_block() else {
                        break;
                    };
                    match block_frames(region.bytes()) {
                        Some((n, first)) if n > 0 => self.block = Some((region, first, n)),
                        _ => continue,
                    }
                }
                let Some((region, at, left)) = self.block.as_mut() else {
                    break;
                };
                let Some(f) = block_frame(region.bytes(), *at) else {
                    // A header the kernel did not write as documented: the rest of the block is skipped.
                    self.errors += 1;
                    *left = 0;
                    continue;
                };
                *left -= 1;
                *at += f.next;
                if f.next == 0 {
                    *left = 0;
                }
                if f.snaplen < f.len || f.len > frame_room {
                    self.truncated += 1;
                    continue;
                }
                let frame = f.start..f.start + f.snaplen;
                let p = if f.snaplen >= self.copy_below && !crowded {
                    self.borrowed += 1;
                    // The frame's header in front of it is its headroom.
                    Packet::borrowed(region, frame, nf_core::pool::DEFAULT_HEADROOM)
                } else {
                    self.copied_held += u64::from(crowded && f.snaplen >= self.copy_below);
                    region
                        .bytes()
                        .get(frame)
                        .map(|d| Packet::from_slice_in(pool, d))
                };
                if let Some(mut p) = p {
                    p.anno.timestamp = Timestamp(f.nanos);
                    self.aged = self.aged.wrapping_add(1);
                    if self.aged.is_multiple_of(AGE_SAMPLE) {
                        let age = now.since(Timestamp(f.nanos)).max(1);
                        self.ages[(63 - age.leading_zeros() as usize).min(39)] += 1;
                    }
                    self.count += 1;
                    self.bytes += f.snaplen as u64;
                    o.push(p);
                    pushed += 1;
                }
            }
        });
        pushed
    }
}

const FROM_HANDLERS: &[HandlerSpec] = &[
    HandlerSpec::read("count", "frames received"),
    HandlerSpec::read("byte_count", "bytes received"),
    HandlerSpec::read("truncated", "frames longer than the buffer, dropped"),
    HandlerSpec::read("errors", "receive errors"),
    HandlerSpec::read("ring", "whether frames come through a PACKET_RX_RING"),
    HandlerSpec::read("borrowed", "frames handed out in place (zero copy)"),
    HandlerSpec::read(
        "copied_held",
        "frames copied because too many ring blocks were held",
    ),
    HandlerSpec::read(
        "kernel_drops",
        "frames the kernel dropped: its queue or ring was full",
    ),
    HandlerSpec::read(
        "held",
        "frames held for buckets taken over until their state came",
    ),
    HandlerSpec::read("held_dropped", "frames dropped: too many held"),
    HandlerSpec::read("swaps", "fanout program swaps this shard made"),
    HandlerSpec::text(
        "ring_wait_p99_ms",
        "99th percentile of the time frames sat in the ring (sampled), milliseconds",
    ),
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
            // group id is this process's and this interface's. The shards initialize in order, so
            // shard `i`'s socket is the group's `i`th, the index the table's program returns.
            let group = (std::process::id() as u16) ^ (s.ifindex() as u16).rotate_left(8);
            let fanout = if self.by_table {
                // The run's table (a run may start with fewer shards taking flows than it has).
                let table = ctx.cohort.and_then(|c| c.steering()).map_or_else(
                    || nf_core::indirection::Indirection::round_robin(ctx.shards),
                    |st| st.table(),
                );
                let prog = super::fanout::program(&table)
                    .ok_or_else(|| format!("FromDevice({}): fanout program", self.ifname))?;
                s.join_fanout_cbpf(group, &prog)
            } else {
                s.join_fanout(group)
            };
            fanout.map_err(|e| format!("FromDevice({}): fanout: {e}", self.ifname))?;
            self.steered = self.by_table;
            if self.steered
                && let Some(st) = ctx.cohort.and_then(|c| c.steering())
            {
                st.follow(ctx.shard);
                self.live = Some(Box::new(Live {
                    steer: st.clone(),
                    shard: ctx.shard,
                    table: st.table(),
                    epoch: 0,
                    pending: false,
                    outgoing: false,
                    drain_at: None,
                    incoming: Default::default(),
                    held: Default::default(),
                    scratch: Vec::new(),
                    held_total: 0,
                    held_dropped: 0,
                    swaps: 0,
                    swap_errors: 0,
                    seen: u64::MAX,
                    counting: false,
                    counts: Box::new([0; nf_core::indirection::BUCKETS]),
                    reported: None,
                }));
            }
        }
        if self.use_ring && s.kernel_skips_outgoing() {
            // Best effort: without a ring (an old kernel, a locked-memory limit) frames come by recvmmsg.
            self.ring = RxRing::new(s.as_fd(), RxRingConfig::default()).ok();
        }
        self.sock = Some(s);
        if self.ring.is_none() {
            self.slab = vec![0u8; FRAME * self.burst];
            self.lens = vec![0; self.burst];
        }
        Ok(())
    }
    fn is_task(&self) -> bool {
        true
    }
    fn shards_itself(&self) -> bool {
        self.steered
    }
    fn run_task(&mut self, ctx: &mut TaskContext<'_>, out: &mut Outputs) -> TaskStatus {
        if self.live.is_none() {
            return self.receive(out).0;
        }
        self.follow_moves();
        let (status, got) = self.receive(out);
        self.report_load(ctx.now(), out, got);
        let emitted = self.hold_and_release(out, got);
        if emitted > 0 {
            TaskStatus::Busy
        } else {
            status
        }
    }
    /// A take-over keeps the socket (see `FromDevice::take_socket`); a sharded router is never
    /// swapped, so nothing of the bucket moves' state goes with it.
    fn take_state(&mut self, old: &mut dyn Element) {
        self.take_socket(old);
    }
    fn handlers(&self) -> &'static [HandlerSpec] {
        FROM_HANDLERS
    }
    fn read_handler(&self, name: &str) -> Option<String> {
        match name {
            "count" => Some(self.count.to_string()),
            "byte_count" => Some(self.bytes.to_string()),
            "truncated" => Some(self.truncated.to_string()),
            "errors" => {
                Some((self.errors + self.live.as_ref().map_or(0, |l| l.swap_errors)).to_string())
            }
            "ring" => Some(self.ring.is_some().to_string()),
            "borrowed" => Some(self.borrowed.to_string()),
            "held" => Some(self.live.as_ref().map_or(0, |l| l.held_total).to_string()),
            "held_dropped" => Some(self.live.as_ref().map_or(0, |l| l.held_dropped).to_string()),
            "swaps" => Some(self.live.as_ref().map_or(0, |l| l.swaps).to_string()),
            "ring_wait_p99_ms" => Some(format!("{:.3}", self.ring_wait_p99_ns() as f64 / 1e6)),
            "copied_held" => Some(self.copied_held.to_string()),
            "kernel_drops" => {
                let more = self.sock.as_ref().map_or(0, PacketSocket::take_drops);
                self.kernel_drops.set(self.kernel_drops.get() + more);
                Some(self.kernel_drops.get().to_string())
            }
            _ => None,
        }
    }
}

impl ElementClass for FromDevice {
    const NAME: &'static str = "FromDevice";
    const DOC: &'static str =
        "receives an interface's frames over AF_PACKET (DEVNAME, BURST, RING, COPYBREAK)";
    fn configure(a: &mut Args) -> Result<Self, ConfigError> {
        let dev: String = a.read_mp("DEVNAME")?;
        let burst: usize = a.read_or("BURST", 32)?;
        let ring: bool = a.read_or("RING", true)?;
        let copybreak: usize = a.read_or("COPYBREAK", 256)?;
        let fanout: String = a.read_or("FANOUT", "table".to_string())?;
        let by_table = match fanout.as_str() {
            "table" => true,
            "hash" => false,
            o => return Err(a.error(format!("FANOUT is table or hash, not `{o}`"))),
        };
        Ok(FromDevice::new(dev)
            .burst(burst)
            .ring(ring)
            .copybreak(copybreak)
            .fanout_by_table(by_table))
    }
}
