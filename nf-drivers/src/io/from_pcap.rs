//! `FromPcap`: replays a capture file into a graph.

use super::pcap::{CaptureFile, Cursor, Scanned};
use nf_core::element::ElementClass;
use nf_core::element::{HandlerSpec, InitContext, PortSpec, TaskContext, TaskStatus};
use nf_core::indirection::{BUCKETS, Indirection, Steering};
use nf_core::region_unsafe::Region;
use nf_core::{Args, ConfigError};
use nf_core::{Element, Outputs, Timestamp};
use std::path::PathBuf;
use std::sync::Arc;

/// Frames shorter than this are copied by default (Linux drivers' `rx_copybreak` idea): copying a small
/// frame costs less than counting a reference to the mapped file for it, and leaves it writable.
pub const DEFAULT_COPYBREAK: usize = 256;

/// With the default (`COPYBREAK auto`), a burst borrows every frame when more than one in this many of the
/// previous burst's frames were borrowed: a batch that mixes copied and borrowed packets costs a
/// mispredicted branch or two per packet (which way each frame goes is a coin toss), more than the copies
/// of its small frames save.
const MIXED: usize = 4;

/// Bytes of the file in an epoch of a sharded run's input (see [`nf_core::indirection`]): a bucket move
/// waits for the next boundary, so this bounds how long a move takes to start (~30 µs of this machine's
/// scan) while the boundaries cost nothing measurable (a lock per shard every 256 KiB).
pub const EPOCH_BYTES: usize = 256 * 1024;

/// Headroom a borrowed packet is given in front of its frame (bytes of the file before it: free space
/// until written, when the packet is copied with it).
const HEADROOM: usize = nf_core::pool::DEFAULT_HEADROOM;

/// A capture shared by the shards of a run, as the owner of a [`Region`].
struct SharedCapture(Arc<CaptureFile>);

impl AsRef<[u8]> for SharedCapture {
    fn as_ref(&self) -> &[u8] {
        self.0.bytes()
    }
}

/// How many times to read the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Passes {
    /// This many times.
    Count(u64),
    /// Forever (until the run is stopped).
    Forever,
}

/// Reads packets from a pcap or pcapng file (mapped into memory and read sequentially), a batch per
/// scheduling round, with the capture timestamps as timestamp annotations. For raw-IP and Linux-cooked
/// captures the network-header annotation is set.
///
/// Zero copy: a frame of `COPYBREAK` bytes or more becomes a packet that points into the mapped file
/// ([`Packet::borrowed`](nf_core::Packet::borrowed)): nothing is copied unless an element writes to it,
/// and then only that packet, once (copy-on-write; counted in the pool's `unshared`). The mapping stays
/// until the last such packet is dropped, however long the graph or the user holds it. A shorter frame is
/// copied into a pooled buffer, which costs less than sharing for a small frame. `COPYBREAK auto` (the
/// default) copies frames under 256 bytes unless more than a quarter of the previous burst's frames were
/// longer: then the burst borrows every frame, as a batch mixing copied and borrowed packets costs more
/// than the copies save. `COPYBREAK 0` borrows every frame; a number fixes the threshold.
///
/// When the file is exhausted the source is done and, with `STOP true` (the default, as Click's `STOP`),
/// the run ends once the graph drains. `LOOP` reads the file again (timestamps keep increasing across
/// passes). A truncated or corrupt file ends the source and the run with an error naming the byte offset.
///
/// In a sharded run, every shard's copy scans the whole file and copies only the packets whose flow maps to
/// its shard (by the symmetric RSS hash, as a NIC would steer them), so no packet crosses cores. The shards
/// share one mapping of the file (through the run's [`Cohort`](nf_core::Cohort)).
///
/// A file name holding `{shard}` names one file per shard, as a NIC gives each core a receive queue of
/// its own: shard `s` reads the file with `{shard}` replaced by `s`, all of it (`nf pcap split` writes
/// such files from one capture, by the same hash). In a run of one shard that is the file of shard 0.
///
/// # Ports
/// No input; one push output.
///
/// # Arguments
/// `FILE` (mandatory); `STOP` (default true); `LOOP` (`true` for forever, or a number of passes; default 1);
/// `BURST` (default 32); `TIMING` (default false: when true, replay at the capture's pace); `COPYBREAK`
/// (`auto`, the default, or bytes: shorter frames are copied, longer ones borrowed from the mapped file).
///
/// # Handlers
/// `count`, `byte_count`, `passes` (read); `error` (read: the failure that ended the source, if any).
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
///
/// # Safety of the memory map
/// The file must not be truncated while it is replayed (see `io::mmap_unsafe`).
pub struct FromPcap {
    path: PathBuf,
    /// The capture, mapped once per run: the shards of a sharded run share one mapping.
    file: Option<Arc<CaptureFile>>,
    /// The capture's bytes as a region its packets borrow (one per shard, so that the shards' packets do
    /// not count their references on one cache line).
    region: Option<Arc<Region>>,
    /// Frames shorter than this are copied; longer ones borrowed from the mapped file.
    copy_below: usize,
    /// `COPYBREAK auto`: a burst after one of mixed sizes borrows every frame.
    adaptive: bool,
    /// The last burst was mixed (`adaptive` only).
    borrow_all: bool,
    cursor: Option<Cursor>,
    stop: bool,
    passes: Passes,
    pass: u64,
    burst: usize,
    timing: bool,
    shard: (usize, usize),
    count: u64,
    bytes: u64,
    first_ts: Option<Timestamp>,
    last_ts: Timestamp,
    pass_offset: u64,
    wall_start: Option<Timestamp>,
    l3: Option<usize>,
    error: Option<String>,
    done: bool,
    /// A sharded run's scratch: the records of one round that belong to this shard, filled without a
    /// branch per record.
    selected: Vec<Scanned>,
    /// Each shard reads a file of its own (the name held [`super::pcap::SHARD_PLACEHOLDER`]).
    own_file: bool,
    /// A sharded scan: the run's steering, which this copy follows by epochs of the file.
    steer: Option<Arc<Steering>>,
    /// This shard's copy of the indirection table.
    table: Indirection,
    /// The epoch entered last.
    epoch: u64,
    /// The offset (in this pass) at which the next epoch starts.
    next_boundary: usize,
    /// Holding the input at a boundary until an incoming bucket's state is imported.
    holding: bool,
    /// Counting packets per bucket for the run's controller (while it runs).
    counting: bool,
    /// This epoch's packets per bucket (while `counting`).
    counts: Box<[u32; BUCKETS]>,
}

impl std::fmt::Debug for FromPcap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FromPcap")
            .field("path", &self.path)
            .field("count", &self.count)
            .finish()
    }
}

impl FromPcap {
    /// Reads `path` once.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FromPcap {
            path: path.into(),
            file: None,
            region: None,
            copy_below: DEFAULT_COPYBREAK,
            adaptive: true,
            borrow_all: false,
            cursor: None,
            stop: true,
            passes: Passes::Count(1),
            pass: 0,
            burst: 32,
            timing: false,
            shard: (0, 1),
            count: 0,
            bytes: 0,
            first_ts: None,
            last_ts: Timestamp(0),
            pass_offset: 0,
            wall_start: None,
            l3: None,
            error: None,
            done: false,
            selected: Vec::new(),
            own_file: false,
            steer: None,
            table: Indirection::round_robin(1),
            epoch: 0,
            next_boundary: EPOCH_BYTES,
            holding: false,
            counting: false,
            counts: Box::new([0; BUCKETS]),
        }
    }
    /// Ends the run when exhausted.
    pub fn stop(mut self, stop: bool) -> Self {
        self.stop = stop;
        self
    }
    /// Number of passes over the file.
    pub fn passes(mut self, p: Passes) -> Self {
        self.passes = p;
        self
    }
    /// Packets per round.
    pub fn burst(mut self, n: usize) -> Self {
        self.burst = n.max(1);
        self
    }
    /// Replay at the capture's pace.
    pub fn timing(mut self, t: bool) -> Self {
        self.timing = t;
        self
    }
    /// Frames shorter than `bytes` are copied into pooled buffers, longer ones are borrowed from the mapped
    /// file (zero copy); 0 borrows every frame, `usize::MAX` copies every one. Without this call the
    /// threshold is [`DEFAULT_COPYBREAK`] and adapts: a burst after a mixed one borrows every frame.
    pub fn copybreak(mut self, bytes: usize) -> Self {
        self.copy_below = bytes;
        self.adaptive = false;
        self
    }

    /// The threshold for this burst, and the count of the frames it borrows, to update
    /// [`FromPcap::borrow_all`] with after the burst.
    #[inline]
    fn copy_below_now(&self) -> usize {
        if self.adaptive && self.borrow_all {
            0
        } else {
            self.copy_below
        }
    }

    /// After a burst of `n` frames of which `large` were at least the threshold long.
    #[inline]
    fn after_burst(&mut self, n: usize, large: usize) {
        if self.adaptive && n > 0 {
            self.borrow_all = large * MIXED > n;
        }
    }
    /// Packets read.
    pub fn count(&self) -> u64 {
        self.count
    }

    fn end_of_pass(&mut self, f: &CaptureFile) -> bool {
        self.pass += 1;
        let more = match self.passes {
            Passes::Forever => true,
            Passes::Count(n) => self.pass < n,
        };
        if more {
            match f.cursor() {
                Ok(c) => self.cursor = Some(c),
                Err(e) => {
                    self.error = Some(e.to_string());
                    return false;
                }
            }
            // Keep time moving forward across passes.
            let span = self
                .last_ts
                .0
                .saturating_sub(self.first_ts.map_or(0, |t| t.0))
                + 1_000;
            self.pass_offset += span;
            // A pass starts an epoch.
            self.next_boundary = 0;
        }
        more
    }

    /// After the reader's end of a pass (`failure` `None`) or its error: starts the next pass if there is
    /// one; else the source is done (keeping the error for the `error` handler and the run). Returns
    /// whether to read on.
    fn next_pass_or_stop(&mut self, f: &CaptureFile, failure: Option<crate::Error>) -> bool {
        match failure {
            None if self.end_of_pass(f) => return true,
            None => {}
            Some(e) => self.error = Some(e.to_string()),
        }
        self.done = true;
        false
    }
}

const HANDLERS: &[HandlerSpec] = &[
    HandlerSpec::read("count", "packets read"),
    HandlerSpec::read("byte_count", "bytes read"),
    HandlerSpec::read("passes", "passes over the file begun"),
    HandlerSpec::text("error", "the failure that ended the source, if any"),
];

impl Element for FromPcap {
    fn class_name(&self) -> &'static str {
        Self::NAME
    }
    fn ports(&self) -> PortSpec {
        PortSpec::SOURCE
    }
    fn initialize(&mut self, ctx: &InitContext<'_>) -> Result<(), String> {
        // A capture split by shard (`nf pcap split`): each shard's copy reads its own file, whole.
        let name = self.path.to_string_lossy();
        if name.contains(super::pcap::SHARD_PLACEHOLDER) {
            self.path = name
                .replace(super::pcap::SHARD_PLACEHOLDER, &ctx.shard.to_string())
                .into();
            self.own_file = true;
        }
        // One mapping for all the shards of a run: mapping (and populating) an 800 MB capture takes
        // ~12 ms, once per run rather than once per shard.
        let open = || {
            CaptureFile::open(&self.path)
                .map(Arc::new)
                .map_err(|e| e.to_string())
        };
        let key = format!("FromPcap {} {}", ctx.name, self.path.display());
        let f = match ctx.cohort.filter(|_| ctx.shards > 1) {
            Some(cohort) => match cohort.shared(&key, open).as_deref() {
                Some(Ok(f)) => f.clone(),
                Some(Err(e)) => return Err(e.clone()),
                None => open()?,
            },
            None => open()?,
        };
        self.cursor = Some(f.cursor().map_err(|e| e.to_string())?);
        self.l3 = f.link().network_offset();
        self.region = Some(Arc::new(Region::new(SharedCapture(f.clone()))));
        self.file = Some(f);
        self.shard = (ctx.shard, ctx.shards);
        self.table = Indirection::round_robin(ctx.shards);
        if ctx.shards > 1
            && !self.timing
            && !self.own_file
            && let Some(st) = ctx.cohort.and_then(|c| c.steering())
        {
            st.follow(ctx.shard);
            self.table = st.table();
            self.steer = Some(st.clone());
        }
        Ok(())
    }
    fn is_task(&self) -> bool {
        true
    }
    fn shards_itself(&self) -> bool {
        true
    }
    fn stops_router(&self) -> bool {
        self.stop
    }
    fn run_task(&mut self, ctx: &mut TaskContext<'_>, out: &mut Outputs) -> TaskStatus {
        if self.done || self.cursor.is_none() {
            return TaskStatus::Done;
        }
        let (Some(file), Some(region)) = (self.file.take(), self.region.take()) else {
            return TaskStatus::Done;
        };
        let status = if self.shard.1 > 1 && !self.timing && !self.own_file {
            self.read_batch_sharded(&file, &region, out)
        } else {
            self.read_batch(&file, &region, ctx, out)
        };
        self.file = Some(file);
        self.region = Some(region);
        status
    }
    fn handlers(&self) -> &'static [HandlerSpec] {
        HANDLERS
    }
    fn read_handler(&self, name: &str) -> Option<String> {
        match name {
            "count" => Some(self.count.to_string()),
            "byte_count" => Some(self.bytes.to_string()),
            "passes" => Some((self.pass + u64::from(!self.done)).to_string()),
            "error" => Some(self.error.clone().unwrap_or_default()),
            _ => None,
        }
    }
    fn error(&self) -> Option<String> {
        self.error.clone()
    }
}

impl FromPcap {
    /// A sharded run (not at the capture's pace): every shard scans every record, as a NIC's RSS sees every
    /// packet. First the round's records are scanned and this shard's kept, branch-free (whether a record is
    /// this shard's is a coin toss to the branch predictor: a mispredicted branch per record cost more than
    /// the scan itself); then the kept ones are copied into packets.
    fn read_batch_sharded(
        &mut self,
        file: &CaptureFile,
        region: &Arc<Region>,
        out: &mut Outputs,
    ) -> TaskStatus {
        let me = self.shard.0;
        let burst = self.burst;
        if self.selected.len() < burst + 1 {
            self.selected.resize(burst + 1, Scanned::default());
        }
        if self.holding {
            // At a boundary, waiting for the state of a bucket this shard takes over.
            if self
                .steer
                .as_ref()
                .is_some_and(|s| s.awaiting(me) || s.too_far_ahead(self.epoch))
            {
                // Busy, not idle: the wait is short (the other shard is working towards it), and an
                // idle router sleeps, which on a VM can mean waking milliseconds late (measured: the
                // held time of a run went from ~1.5 ms to 14-25 ms in the runs that slept).
                return TaskStatus::Busy;
            }
            self.holding = false;
        }
        let base = file.bytes().as_ptr() as usize;
        let mut k = 0;
        let rss = nf_core::hash::toeplitz::symmetric();
        // The last record scanned (its header, for its timestamp), when it came from `scan_pcap`.
        let mut last_hdr = None;
        while k < burst {
            let Some(cursor) = self.cursor.as_mut() else {
                self.done = true;
                break;
            };
            let mut limit = usize::MAX;
            if let Some(st) = &self.steer {
                let pos = cursor.position();
                if pos >= self.next_boundary {
                    self.epoch += 1;
                    self.next_boundary = (pos / EPOCH_BYTES + 1) * EPOCH_BYTES;
                    let counts = self.counting.then_some(&mut *self.counts);
                    let hold = st.enter_counted(me, self.epoch, &mut self.table, counts);
                    self.counting = st.counts_epoch(self.epoch);
                    if hold {
                        self.holding = true;
                        break;
                    }
                }
                limit = self.next_boundary;
            }
            let sharder = nf_core::flow::FrameSharder::new(rss, &self.table);
            let (kept, walked) = if self.counting {
                // For the controller: this shard's packets per bucket (branch-free, as the choice).
                let counts = &mut *self.counts;
                cursor.scan_pcap(
                    file,
                    &mut self.selected[k..=burst],
                    self.pass_offset,
                    limit,
                    |frame| {
                        let b = sharder.bucket(frame);
                        let mine = sharder.owner(b) == me;
                        counts[b] += u32::from(mine);
                        mine
                    },
                )
            } else {
                cursor.scan_pcap(
                    file,
                    &mut self.selected[k..=burst],
                    self.pass_offset,
                    limit,
                    |frame| sharder.shard(frame) == me,
                )
            };
            k += kept;
            if let Some((first, last)) = walked {
                if self.first_ts.is_none() {
                    self.first_ts = Some(cursor.timestamp_at(file, first));
                }
                last_hdr = Some(last);
            }
            if k >= burst {
                break;
            }
            if cursor.position() >= limit {
                // An epoch boundary: crossed at the top of the loop.
                continue;
            }
            // Something the scan leaves to the general reader: another format, a record to diagnose, the end.
            if let Some(h) = last_hdr.take() {
                self.last_ts = cursor.timestamp_at(file, h);
            }
            match cursor.next(file) {
                Ok(Some(r)) => {
                    let mine =
                        nf_core::flow::FrameSharder::new(rss, &self.table).shard(r.data) == me;
                    self.first_ts.get_or_insert(r.timestamp);
                    self.last_ts = r.timestamp;
                    self.selected[k] = Scanned {
                        frame_at: r.data.as_ptr() as usize - base,
                        len: r.data.len() as u32,
                        time: r.timestamp.0 + self.pass_offset,
                        header_at: None,
                    };
                    k += usize::from(mine);
                }
                Ok(None) => {
                    if !self.next_pass_or_stop(file, None) {
                        break;
                    }
                }
                Err(e) => {
                    self.next_pass_or_stop(file, Some(e));
                    break;
                }
            }
        }
        let o = out.port(0);
        let mut bytes = 0u64;
        let cursor = self.cursor.as_ref();
        if let (Some(h), Some(c)) = (last_hdr, cursor) {
            self.last_ts = c.timestamp_at(file, h);
        }
        let mut picked = self.selected[..k].iter();
        let copy_below = self.copy_below_now();
        let threshold = self.copy_below;
        let mut large = 0;
        let data = file.bytes();
        nf_core::pool::with_local(|pool| {
            o.fill_frames(pool, k, self.l3, region, copy_below, HEADROOM, || {
                let s = picked.next()?;
                let stamp = match (s.header_at, cursor) {
                    (Some(h), Some(c)) => Timestamp(c.timestamp_at(file, h).0 + s.time),
                    _ => Timestamp(s.time),
                };
                bytes += u64::from(s.len);
                large += usize::from(s.len as usize >= threshold);
                data.get(s.frame_at..s.frame_at + s.len as usize)
                    .map(|frame| (frame, stamp))
            });
        });
        self.after_burst(k, large);
        self.end_round(k, bytes)
    }

    /// Counts a round's packets and bytes; done once the reader is and the round produced nothing.
    #[inline]
    fn end_round(&mut self, produced: usize, bytes: u64) -> TaskStatus {
        self.count += produced as u64;
        self.bytes += bytes;
        if self.done && produced == 0 {
            TaskStatus::Done
        } else {
            TaskStatus::Busy
        }
    }

    #[inline]
    fn read_batch(
        &mut self,
        file: &CaptureFile,
        region: &Arc<Region>,
        ctx: &mut TaskContext<'_>,
        out: &mut Outputs,
    ) -> TaskStatus {
        let (me, n) = self.shard;
        let o = out.port(0);
        let mut bytes = 0u64;
        let (burst, l3, copy_below) = (self.burst, self.l3, self.copy_below_now());
        let threshold = self.copy_below;
        let mut large = 0;
        let produced = nf_core::pool::with_local(|pool| {
            o.fill_frames(pool, burst, l3, region, copy_below, HEADROOM, || {
                loop {
                    let Some(cursor) = self.cursor.as_mut() else {
                        self.done = true;
                        return None;
                    };
                    let saved = cursor.clone_position();
                    match cursor.next(file) {
                        Ok(Some(r)) => {
                            if n > 1 && nf_core::flow::frame_shard(r.data, n) != me {
                                // Another shard's flow (as RSS would steer it): skip without copying.
                                self.last_ts = r.timestamp;
                                continue;
                            }
                            let first = *self.first_ts.get_or_insert(r.timestamp);
                            if self.timing {
                                let wall = *self.wall_start.get_or_insert(ctx.now());
                                if ctx.now().since(wall) < r.timestamp.since(first) {
                                    cursor.restore_position(saved);
                                    return None;
                                }
                            }
                            self.last_ts = r.timestamp;
                            bytes += r.data.len() as u64;
                            large += usize::from(r.data.len() >= threshold);
                            return Some((r.data, Timestamp(r.timestamp.0 + self.pass_offset)));
                        }
                        Ok(None) => {
                            if !self.next_pass_or_stop(file, None) {
                                return None;
                            }
                        }
                        Err(e) => {
                            self.next_pass_or_stop(file, Some(e));
                            return None;
                        }
                    }
                }
            })
        });
        self.after_burst(produced, large);
        self.end_round(produced, bytes)
    }
}

impl ElementClass for FromPcap {
    const NAME: &'static str = "FromPcap";
    const DOC: &'static str =
        "reads packets from a pcap/pcapng file (FILE, STOP, LOOP, BURST, TIMING, COPYBREAK)";
    fn configure(a: &mut Args) -> Result<Self, ConfigError> {
        let file: String = a.read_mp("FILE")?;
        let stop: bool = a.read_or("STOP", true)?;
        let lp: String = a.read_or("LOOP", "1".to_string())?;
        let passes = match lp.as_str() {
            "true" | "forever" => Passes::Forever,
            "false" => Passes::Count(1),
            n => match n.parse::<u64>() {
                Ok(0) => Passes::Forever,
                Ok(k) => Passes::Count(k),
                Err(_) => {
                    return Err(a.error(format!(
                        "LOOP must be true, false or a number of passes, not `{n}`"
                    )));
                }
            },
        };
        let burst: usize = a.read_or("BURST", 32)?;
        let timing: bool = a.read_or("TIMING", false)?;
        let copybreak: String = a.read_or("COPYBREAK", "auto".to_string())?;
        let src = FromPcap::new(file)
            .stop(stop)
            .passes(passes)
            .burst(burst)
            .timing(timing);
        Ok(match copybreak.as_str() {
            "auto" => src,
            n => match n.parse::<usize>() {
                Ok(bytes) => src.copybreak(bytes),
                Err(_) => {
                    return Err(a.error(format!(
                        "COPYBREAK must be auto or a number of bytes, not `{n}`"
                    )));
                }
            },
        })
    }
}
