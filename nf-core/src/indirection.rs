//! Flow buckets, the indirection table that gives each bucket to a shard, and the moves that hand a
//! bucket, with its flows' state, from one shard to another (Metron's elasticity, RSS++'s rebalancing).
//!
//! A flow's bucket is the top bits of its symmetric RSS hash ([`bucket_of`]): both directions of a flow
//! share it. An [`Indirection`] table names the shard of each of the [`BUCKETS`] buckets, as a NIC's RSS
//! redirection table names a receive queue; static RSS is the table filled round robin
//! ([`Indirection::round_robin`], what [`frame_shard`](crate::flow::frame_shard) computes).
//!
//! A run's [`Steering`] moves buckets while packets flow. A move is ordered by the input's own
//! position, so that it needs no lock on the packet path: every shard's copy of a self-sharding source
//! (`FromPcap`, `Replay`) walks the same sequence of frames, cut into *epochs* (a stretch of the input
//! every copy cuts at the same places). A move requested now takes effect at an epoch that neither of
//! its two shards has entered. At that boundary the old owner stops taking the bucket's frames and, once
//! the frames it took before are through its graph, exports the bucket's entries from every element that
//! implements [`Migrate`]; the new owner starts taking them, but holds its input at the boundary until it
//! has imported those entries. So no flow loses its state, no flow is processed by two shards at once,
//! and each flow's packets are processed in their order.
//!
//! ```
//! use nf_core::indirection::{bucket_of, Indirection, BUCKETS};
//! let t = Indirection::round_robin(3);
//! assert_eq!(t.owner(0), 0);
//! assert_eq!(t.owner(4), 1);
//! assert_eq!(t.shard_of(0xffff_ffff), (BUCKETS - 1) % 3);
//! assert_eq!(bucket_of(0xffff_ffff), BUCKETS - 1);
//! ```

use std::any::Any;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

/// Buckets of the flow hash in an indirection table (a power of two; RSS++ uses 512 too).
pub const BUCKETS: usize = 512;

/// Most shards a table can name.
pub const MAX_SHARDS: usize = u16::MAX as usize;

/// The bucket of a symmetric flow hash: its top bits.
#[inline(always)]
pub fn bucket_of(hash: u32) -> usize {
    (hash >> (32 - BUCKETS.trailing_zeros())) as usize
}

/// A set of buckets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BucketSet([u64; BUCKETS / 64]);

impl BucketSet {
    /// The empty set.
    pub const fn new() -> Self {
        BucketSet([0; BUCKETS / 64])
    }
    /// Adds `bucket` (ignored if out of range).
    pub fn insert(&mut self, bucket: usize) {
        if let Some(w) = self.0.get_mut(bucket / 64) {
            *w |= 1 << (bucket % 64);
        }
    }
    /// Whether `bucket` is in the set.
    #[inline]
    pub fn contains(&self, bucket: usize) -> bool {
        self.0
            .get(bucket / 64)
            .is_some_and(|w| w & (1 << (bucket % 64)) != 0)
    }
    /// Whether the flow of symmetric hash `hash` falls in the set.
    #[inline]
    pub fn holds_hash(&self, hash: u32) -> bool {
        self.contains(bucket_of(hash))
    }
    /// How many buckets are in the set.
    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }
    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&w| w == 0)
    }
    /// The buckets, in order.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        (0..BUCKETS).filter(|&b| self.contains(b))
    }
}

impl FromIterator<usize> for BucketSet {
    fn from_iter<I: IntoIterator<Item = usize>>(it: I) -> Self {
        let mut s = BucketSet::new();
        for b in it {
            s.insert(b);
        }
        s
    }
}

/// Which shard owns each bucket of the flow hash (a NIC's RSS redirection table).
#[derive(Clone, PartialEq, Eq)]
pub struct Indirection {
    owner: Box<[u16; BUCKETS]>,
}

impl std::fmt::Debug for Indirection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Indirection")
            .field("buckets_per_shard", &self.buckets_per_shard())
            .finish()
    }
}

impl Indirection {
    /// Static RSS over `shards` shards: bucket `b` to shard `b % shards`.
    pub fn round_robin(shards: usize) -> Self {
        let shards = shards.clamp(1, MAX_SHARDS);
        let mut owner = Box::new([0u16; BUCKETS]);
        for (b, o) in owner.iter_mut().enumerate() {
            *o = (b % shards) as u16;
        }
        Indirection { owner }
    }

    /// The shard of the flow of symmetric hash `hash`.
    #[inline(always)]
    pub fn shard_of(&self, hash: u32) -> usize {
        usize::from(self.owner[bucket_of(hash)])
    }

    /// The owner of `bucket` (`bucket` is taken modulo [`BUCKETS`]).
    #[inline]
    pub fn owner(&self, bucket: usize) -> usize {
        usize::from(self.owner[bucket % BUCKETS])
    }

    /// Gives `bucket` to `shard`.
    pub fn set(&mut self, bucket: usize, shard: usize) {
        self.owner[bucket % BUCKETS] = shard.min(MAX_SHARDS) as u16;
    }

    /// The table as an array (for a scan loop that keeps it in a register).
    #[inline(always)]
    pub fn as_array(&self) -> &[u16; BUCKETS] {
        &self.owner
    }

    /// The buckets `shard` owns.
    pub fn buckets_of(&self, shard: usize) -> BucketSet {
        (0..BUCKETS)
            .filter(|&b| usize::from(self.owner[b]) == shard)
            .collect()
    }

    /// How many buckets each shard owns, by shard (as long as the highest shard named, plus one).
    pub fn buckets_per_shard(&self) -> Vec<usize> {
        let n = self
            .owner
            .iter()
            .map(|&o| usize::from(o) + 1)
            .max()
            .unwrap_or(1);
        let mut v = vec![0; n];
        for &o in self.owner.iter() {
            v[usize::from(o)] += 1;
        }
        v
    }

    /// The table as text: `bucket:shard` runs, e.g. `0-255:0 256-511:1` (what the `table` handler shows).
    pub fn to_text(&self) -> String {
        let mut out = Vec::new();
        let mut start = 0;
        for b in 1..=BUCKETS {
            if b == BUCKETS || self.owner[b] != self.owner[start] {
                let o = self.owner[start];
                if b - 1 == start {
                    out.push(format!("{start}:{o}"));
                } else {
                    out.push(format!("{start}-{}:{o}", b - 1));
                }
                start = b;
            }
        }
        out.join(" ")
    }
}

/// One bucket's move from one shard to another, taking effect at the start of `epoch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Move {
    /// The bucket.
    pub bucket: u16,
    /// Its owner before the move.
    pub from: u16,
    /// Its owner after.
    pub to: u16,
    /// The epoch of the input at whose start the move takes effect.
    pub epoch: u64,
}

/// A stateful element whose per-flow state can follow its flows' bucket to another shard (`ConnTrack`,
/// `LoadBalancer`, `AnantaMux`, `PoPSelector`; a user's element opts in by implementing this and
/// returning itself from [`Element::migrate`](crate::Element::migrate)).
///
/// The runtime calls [`export_buckets`](Self::export_buckets) on the old owner's copy of the element
/// once every packet of the buckets that reached it is through its graph, and
/// [`import_buckets`](Self::import_buckets) with the result on the new owner's copy (the element of the
/// same name) before any later packet of those buckets reaches it. The entries are the element's own typed
/// entries (those its state schema serialises), moved, not copied or encoded.
pub trait Migrate {
    /// Removes the entries of the flows whose bucket is in `buckets` and returns them (with their
    /// expiry), to be imported by [`import_buckets`](Self::import_buckets) on another shard. Removal is
    /// not a flow ending: nothing is reported to a state sink.
    fn export_buckets(&mut self, buckets: &BucketSet) -> Exported;

    /// Takes in entries exported by this element's copy on another shard. Returns how many entries it
    /// took; an entry that does not fit (a full table that may not evict) is dropped and counted by the
    /// element as a refused insert.
    fn import_buckets(&mut self, state: Exported) -> usize;
}

/// Entries exported by [`Migrate::export_buckets`]: the element's own entry type, boxed, with their count.
pub struct Exported {
    /// How many entries `state` holds.
    pub entries: usize,
    /// The entries, in the element's own type (e.g. a `Vec` of its table's exported entries).
    pub state: Box<dyn Any + Send>,
}

impl std::fmt::Debug for Exported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exported")
            .field("entries", &self.entries)
            .finish()
    }
}

impl Exported {
    /// `entries` wrapped for another shard.
    pub fn new<T: Any + Send>(entries: Vec<T>) -> Self {
        Exported {
            entries: entries.len(),
            state: Box::new(entries),
        }
    }

    /// `value` (any shape: several tables' entries, say) holding `entries` entries, for another shard.
    pub fn with<T: Any + Send>(entries: usize, value: T) -> Self {
        Exported {
            entries,
            state: Box::new(value),
        }
    }

    /// The value [`with`](Self::with) wrapped, if it is a `T`.
    pub fn take_as<T: Any + Send>(self) -> Option<T> {
        self.state.downcast::<T>().ok().map(|b| *b)
    }

    /// The entries back, if they are a `Vec<T>`; empty otherwise.
    pub fn take<T: Any + Send>(self) -> Vec<T> {
        self.state
            .downcast::<Vec<T>>()
            .map(|b| *b)
            .unwrap_or_default()
    }
}

/// What a shard hands the new owner of its buckets: the moves, and every migrating element's entries by
/// element name.
#[derive(Debug)]
pub struct Handoff {
    /// The moves this handoff completes.
    pub moves: Vec<Move>,
    /// Entries by element name.
    pub state: Vec<(String, Exported)>,
}

/// What a live source learns as it enters an epoch ([`Steering::enter_live`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Entered {
    /// Buckets it takes over: their frames wait until their state is imported.
    pub incoming: BucketSet,
    /// Whether it gives buckets away (to export once drained).
    pub outgoing: bool,
}

/// Why a move was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SteerError {
    /// The run cannot move buckets (one shard, or a source that does not cut its input into epochs).
    #[error("this run cannot move buckets: {0}")]
    Fixed(String),
    /// A bucket or shard out of range.
    #[error("{0}")]
    OutOfRange(String),
    /// The bucket is already on its way to another shard.
    #[error("bucket {0} is already moving")]
    Moving(usize),
}

/// Counters of a run's [`Steering`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SteerStats {
    /// Moves requested and scheduled.
    pub scheduled: u64,
    /// Moves completed (entries imported by the new owner).
    pub completed: u64,
    /// Entries moved between shards.
    pub entries_moved: u64,
    /// Total time new owners held their input waiting for a handoff (ns).
    pub held_ns: u64,
    /// The longest such wait (ns).
    pub max_held_ns: u64,
    /// Epoch boundaries crossed, summed over shards.
    pub epochs: u64,
    /// Times the controller looked at the loads.
    pub decisions: u64,
    /// Moves the controller made (also counted in `scheduled`).
    pub rebalanced: u64,
    /// Shards the controller added or removed.
    pub scaled: u64,
}

/// How the controller balances load (Metron's controller, RSS++'s rebalancing): it looks at the packets
/// each bucket carried over the last `window` epochs that every shard has finished, every `every` epochs,
/// and moves buckets from the most to the least loaded shard, at most `max_moves` at a look, while the
/// most loaded shard carries more than `1 + tolerance` times the mean.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Balance {
    /// Epochs between two looks.
    pub every: u64,
    /// Counted epochs a look weighs (the last ones every shard has finished).
    pub window: usize,
    /// Most moves a look makes.
    pub max_moves: usize,
    /// Imbalance tolerated (hysteresis): 0.05 lets the busiest shard carry 5 % over the mean.
    pub tolerance: f64,
    /// Sources count packets per bucket in one epoch of this many (1: every epoch): counting costs the
    /// scan a few instructions a frame, and a sample of the input shows its spread as well.
    pub sample: u64,
    /// Live runs: scale between this floor and ceiling of shards (`None`: the shard count stays).
    pub scale: Option<(usize, usize)>,
}

impl Default for Balance {
    fn default() -> Self {
        Balance {
            every: 4,
            window: 4,
            max_moves: 64,
            tolerance: 0.04,
            sample: 4,
            scale: None,
        }
    }
}

/// What the shards of a run share about steering: the indirection table as planned, the moves in
/// flight, and each shard's mailbox of handoffs. See the [module docs](self).
pub struct Steering {
    shards: usize,
    plan: Mutex<Plan>,
    lanes: Box<[Lane]>,
    movable: AtomicBool,
    /// Bumped on every change of the plan's table (so a reader can tell a table it saw is stale).
    version: AtomicU64,
    /// While the controller runs: the last epoch a shard may enter before the slowest catches up
    /// ([`MAX_LEAD`] past the slowest shard's).
    lead_limit: AtomicU64,
    /// Live sources: the last epoch whose table the kernel's fanout program follows.
    swapped: AtomicU64,
}

/// How often the controller of a live run looks at the loads its shards report.
pub const LIVE_LOOK: std::time::Duration = std::time::Duration::from_millis(100);

/// A live look's limits: live counts are noisier than a capture's epochs, and each move pauses its bucket
/// for a ring drain, so it moves fewer buckets a look and tolerates more imbalance.
const LIVE_MAX_MOVES: usize = 16;
const LIVE_TOLERANCE: f64 = 0.10;

/// While the controller is moving load (from the start until a look finds the shards within its
/// tolerance and no move in flight), how many epochs a shard may run ahead of the slowest. A move takes
/// effect where both its shards are, so the lead of an idle shard over a busy one delays every move by as
/// much; the idle shard would wait at the end of the run anyway. Once balanced, shards run free (a bound
/// then only costs: each shard's little stalls, measured at 8 % on uniform traffic).
pub const MAX_LEAD: u64 = 4;

impl std::fmt::Debug for Steering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Steering")
            .field("shards", &self.shards)
            .field("movable", &self.movable())
            .finish()
    }
}

/// A move in flight and how far it got: complete once the new owner has entered its epoch and imported
/// the old owner's handoff (in either order: a handoff may arrive before its epoch does).
#[derive(Clone, Copy, Debug)]
struct Pending {
    m: Move,
    to_entered: bool,
    imported: bool,
}

struct Plan {
    /// The table once every scheduled move is done.
    table: Indirection,
    /// The epoch each shard's source has entered.
    entered: Vec<u64>,
    /// Moves not yet completed.
    moving: VecDeque<Pending>,
    /// Buckets in `moving`.
    busy: BucketSet,
    stats: SteerStats,
    /// Why the run cannot move buckets, if it cannot.
    fixed: Option<String>,
    /// Sources that follow epochs, by shard.
    followers: Vec<u32>,
    /// The controller's settings, when it runs.
    balance: Option<Balance>,
    /// Packets per bucket, by epoch (the epochs not yet weighed or still in the window).
    counts: VecDeque<(u64, Box<[u32; BUCKETS]>)>,
    /// The last epoch every shard had finished when the controller last looked.
    looked: u64,
    /// Each shard's share of the packets at the controller's last look (per mille).
    shares: Vec<u32>,
    /// The last epoch whose fanout program swap a live source claimed.
    swap_claimed: u64,
    /// Shards that take buckets (`0..active`); the others own none.
    active: usize,
    /// Live runs: packets per bucket reported since the controller's last look.
    live_load: Box<[u64; BUCKETS]>,
    /// Live runs: each shard's share of busy rounds since the last look.
    live_busy: Vec<Option<f64>>,
    /// Live runs: when the controller last looked.
    live_looked: Option<Instant>,
    /// Whether shards' leads are bounded: from the start until a look finds the load within the
    /// tolerance with no move in flight (see [`MAX_LEAD`]).
    bound: bool,
}

/// One shard's side of the steering, on a cache line of its own (flags polled every round).
#[repr(align(64))]
#[derive(Default)]
struct Lane {
    /// Moves whose old owner is this shard and whose epoch it entered: state to export.
    due: AtomicBool,
    /// Handoffs waiting in `mailbox`.
    mail: AtomicBool,
    /// Incoming moves of entered epochs whose entries are not imported yet.
    awaiting: AtomicU64,
    inner: Mutex<LaneInner>,
}

#[derive(Default)]
struct LaneInner {
    due: Vec<Move>,
    /// A live source's outgoing moves, exported once it has drained what the old program sent it.
    deferred: Vec<Move>,
    mailbox: Vec<Handoff>,
    /// When the shard started waiting for a handoff.
    held_since: Option<Instant>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Steering {
    /// Steering for `shards` shards, with the table filled round robin. Moves are refused until
    /// [`allow_moves`](Self::allow_moves).
    pub fn new(shards: usize) -> Self {
        let shards = shards.clamp(1, MAX_SHARDS);
        Steering {
            shards,
            plan: Mutex::new(Plan {
                table: Indirection::round_robin(shards),
                entered: vec![0; shards],
                moving: VecDeque::new(),
                busy: BucketSet::new(),
                stats: SteerStats::default(),
                fixed: Some("not started".into()),
                followers: vec![0; shards],
                balance: None,
                counts: VecDeque::new(),
                looked: 0,
                shares: vec![0; shards],
                bound: true,
                swap_claimed: 0,
                active: shards,
                live_load: Box::new([0; BUCKETS]),
                live_busy: vec![None; shards],
                live_looked: None,
            }),
            lanes: (0..shards).map(|_| Lane::default()).collect(),
            movable: AtomicBool::new(false),
            version: AtomicU64::new(0),
            lead_limit: AtomicU64::new(u64::MAX),
            swapped: AtomicU64::new(0),
        }
    }

    /// The number of shards.
    pub fn shards(&self) -> usize {
        self.shards
    }

    /// Lets moves happen (the runtime calls it once it has checked that every shard's source follows
    /// epochs), or forbids them with the reason.
    pub fn allow_moves(&self, why_not: Option<String>) {
        let mut p = lock(&self.plan);
        let ok = why_not.is_none() && self.shards > 1;
        p.fixed = if ok {
            None
        } else {
            Some(why_not.unwrap_or_else(|| "a run of one shard".into()))
        };
        self.movable.store(ok, Ordering::Release);
    }

    /// Called by a source of shard `shard` that cuts its input into epochs and calls
    /// [`enter`](Self::enter) at each boundary (in its `initialize`).
    pub fn follow(&self, shard: usize) {
        if let Some(f) = lock(&self.plan).followers.get_mut(shard) {
            *f += 1;
        }
    }

    /// How many sources of each shard follow epochs.
    pub fn followers(&self) -> Vec<u32> {
        lock(&self.plan).followers.clone()
    }

    /// Whether moves are allowed.
    pub fn movable(&self) -> bool {
        self.movable.load(Ordering::Acquire)
    }

    /// Why moves are not allowed, if they are not.
    pub fn why_fixed(&self) -> Option<String> {
        lock(&self.plan).fixed.clone()
    }

    /// The table as planned: every scheduled move applied.
    pub fn table(&self) -> Indirection {
        lock(&self.plan).table.clone()
    }

    /// A number that changes whenever the planned table does.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// The counters.
    pub fn stats(&self) -> SteerStats {
        lock(&self.plan).stats
    }

    /// Moves scheduled and not completed.
    pub fn in_flight(&self) -> Vec<Move> {
        lock(&self.plan).moving.iter().map(|p| p.m).collect()
    }

    /// The epoch each shard has entered.
    pub fn epochs(&self) -> Vec<u64> {
        lock(&self.plan).entered.clone()
    }

    /// Schedules moving `bucket` to shard `to`, at the first epoch no shard has entered. Returns
    /// the move, or `None` if `to` owns the bucket already.
    pub fn request_move(&self, bucket: usize, to: usize) -> Result<Option<Move>, SteerError> {
        if bucket >= BUCKETS || to >= self.shards {
            return Err(SteerError::OutOfRange(format!(
                "bucket {bucket} to shard {to}: there are {BUCKETS} buckets and {} shards",
                self.shards
            )));
        }
        let mut p = lock(&self.plan);
        if let Some(why) = &p.fixed {
            return Err(SteerError::Fixed(why.clone()));
        }
        if p.busy.contains(bucket) {
            return Err(SteerError::Moving(bucket));
        }
        Ok(self.schedule(&mut p, bucket, to))
    }

    /// Schedules a move of a bucket that is not moving (see [`request_move`](Self::request_move)).
    fn schedule(&self, p: &mut Plan, bucket: usize, to: usize) -> Option<Move> {
        let from = p.table.owner(bucket);
        if from == to {
            return None;
        }
        // After every shard's epoch: each shard's copy of the table then takes every move in order (a
        // live source installs its copy in the kernel).
        let epoch = p.entered.iter().copied().max().unwrap_or(0) + 1;
        let m = Move {
            bucket: bucket as u16,
            from: from as u16,
            to: to as u16,
            epoch,
        };
        p.table.set(bucket, to);
        p.busy.insert(bucket);
        p.moving.push_back(Pending {
            m,
            to_entered: false,
            imported: false,
        });
        p.stats.scheduled += 1;
        self.version.fetch_add(1, Ordering::AcqRel);
        Some(m)
    }

    /// Before a run starts: only shards `0..active` take buckets (the table round robin over them); the
    /// others wait for [`set_shards`](Self::set_shards) to give them some.
    pub fn set_initial_shards(&self, active: usize) {
        let mut p = lock(&self.plan);
        let active = active.clamp(1, self.shards);
        p.active = active;
        p.table = Indirection::round_robin(active);
        self.update_lead(&p);
    }

    /// Shards that take buckets: `0..n`.
    pub fn active_shards(&self) -> usize {
        lock(&self.plan).active
    }

    /// Runs on `n` shards (`0..n`, at most as many as the run was built with): buckets move off the
    /// shards being retired and onto the ones being added, with their flows' state, until each of the
    /// `n` owns an even share (512 / n buckets, the fewest moves to get there). Returns the moves.
    pub fn set_shards(&self, n: usize) -> Result<Vec<Move>, SteerError> {
        if n == 0 || n > self.shards {
            return Err(SteerError::OutOfRange(format!(
                "{n} shards: this run has 1 to {}",
                self.shards
            )));
        }
        let mut p = lock(&self.plan);
        if let Some(why) = &p.fixed {
            return Err(SteerError::Fixed(why.clone()));
        }
        if let Some(x) = p.moving.front() {
            return Err(SteerError::Moving(usize::from(x.m.bucket)));
        }
        p.active = n;
        let mut owned: Vec<Vec<usize>> = vec![Vec::new(); self.shards];
        for b in 0..BUCKETS {
            owned[p.table.owner(b)].push(b);
        }
        let share = |s: usize| BUCKETS / n + usize::from(s < BUCKETS % n);
        // Buckets to place: every one of a retired shard, and the excess of an active one.
        let mut spare: Vec<usize> = Vec::new();
        for (s, bs) in owned.iter_mut().enumerate() {
            let keep = if s < n { share(s).min(bs.len()) } else { 0 };
            spare.extend(bs.drain(keep..));
        }
        let mut moves = Vec::new();
        for (s, bs) in owned.iter_mut().enumerate().take(n) {
            while bs.len() < share(s) {
                let Some(b) = spare.pop() else {
                    break;
                };
                bs.push(b);
                if let Some(m) = self.schedule(&mut p, b, s) {
                    moves.push(m);
                }
            }
        }
        self.update_lead(&p);
        Ok(moves)
    }

    /// Turns the controller on with `balance`, or off (`None`). Off by default.
    pub fn set_balance(&self, balance: Option<Balance>) {
        let mut p = lock(&self.plan);
        p.balance = balance;
        p.counts.clear();
        self.update_lead(&p);
    }

    /// Sets how far shards may run ahead (bounded while the controller runs).
    fn update_lead(&self, p: &Plan) {
        // Bounded while the controller moves load, and in a run with shards that own no bucket (they
        // would race through the input, and a move onto one lands where it is).
        let bounded = (p.balance.is_some() && p.bound) || p.active < self.shards;
        let limit = if bounded {
            p.entered
                .iter()
                .min()
                .map_or(u64::MAX, |m| m.saturating_add(MAX_LEAD))
        } else {
            u64::MAX
        };
        self.lead_limit.store(limit, Ordering::Release);
    }

    /// Whether a shard that entered `epoch` is too far ahead of the slowest and must hold its input
    /// (while the controller runs; see [`MAX_LEAD`]).
    #[inline]
    pub fn too_far_ahead(&self, epoch: u64) -> bool {
        epoch > self.lead_limit.load(Ordering::Acquire)
    }

    /// The controller's settings, if it runs.
    pub fn balance(&self) -> Option<Balance> {
        lock(&self.plan).balance
    }

    /// Whether the controller runs (sources then count packets per bucket for it).
    pub fn balancing(&self) -> bool {
        self.movable() && lock(&self.plan).balance.is_some()
    }

    /// Whether sources count packets per bucket in `epoch` (the controller runs, and samples it).
    pub fn counts_epoch(&self, epoch: u64) -> bool {
        self.movable()
            && lock(&self.plan)
                .balance
                .is_some_and(|b| epoch.is_multiple_of(b.sample.max(1)))
    }

    /// Each shard's share of the packets (per mille) when the controller last looked.
    pub fn shares(&self) -> Vec<u32> {
        lock(&self.plan).shares.clone()
    }

    /// Adds a shard's packets per bucket in `epoch` (a source counts them while the controller runs) and
    /// zeroes `counts`.
    fn add_counts(p: &mut Plan, epoch: u64, counts: &mut [u32; BUCKETS]) {
        let i = match p.counts.iter().position(|(e, _)| *e == epoch) {
            Some(i) => i,
            None => {
                // Epochs arrive in order from each shard; keep the deque sorted.
                let at = p.counts.partition_point(|(e, _)| *e < epoch);
                p.counts.insert(at, (epoch, Box::new([0; BUCKETS])));
                at
            }
        };
        if let Some((_, c)) = p.counts.get_mut(i) {
            for (a, b) in c.iter_mut().zip(counts.iter_mut()) {
                *a = a.saturating_add(*b);
                *b = 0;
            }
        }
    }

    /// The controller's look, when every shard has finished `every` more epochs: the load of each bucket
    /// over the window, each shard's load under the planned table, and moves from the most to the least
    /// loaded shard while the imbalance is over the tolerance. A bucket is moved only if that lowers the
    /// busiest shard's load (its load is under the gap), the largest such first, up to half the gap.
    fn look(&self, p: &mut Plan) {
        let Some(b) = p.balance else {
            return;
        };
        // The last epoch every shard has finished.
        let finished = p
            .entered
            .iter()
            .copied()
            .min()
            .unwrap_or(0)
            .saturating_sub(1);
        if finished < p.looked + b.every.max(1) {
            return;
        }
        p.looked = finished;
        let weighed = p.counts.iter().filter(|(e, _)| *e <= finished).count();
        for _ in b.window.max(1)..weighed {
            p.counts.pop_front();
        }
        let mut load = [0u64; BUCKETS];
        for (_, c) in p.counts.iter().filter(|(e, _)| *e <= finished) {
            for (l, &n) in load.iter_mut().zip(c.iter()) {
                *l += u64::from(n);
            }
        }
        p.bound = !self.rebalance(p, &load, b);
    }

    /// The controller's moves for bucket loads `load`: each shard's load under the planned table, then
    /// moves from the most to the least loaded active shard while the imbalance is over the tolerance. A
    /// bucket is moved only if that lowers the busiest shard's load (its load is under the gap), the
    /// largest such first, up to half the gap. Returns whether the shards are balanced with nothing
    /// moving.
    fn rebalance(&self, p: &mut Plan, load: &[u64; BUCKETS], b: Balance) -> bool {
        p.stats.decisions += 1;
        let mut shard_load = vec![0u64; self.shards];
        for (bucket, &l) in load.iter().enumerate() {
            if let Some(s) = shard_load.get_mut(p.table.owner(bucket)) {
                *s += l;
            }
        }
        let total: u64 = shard_load.iter().sum();
        if total == 0 {
            return p.moving.is_empty();
        }
        p.shares = shard_load
            .iter()
            .map(|&l| (l * 1000 / total) as u32)
            .collect();
        let mean = total as f64 / p.active.max(1) as f64;
        let mut balanced = false;
        for _ in 0..b.max_moves {
            let (hi, &max) = shard_load
                .iter()
                .enumerate()
                .max_by_key(|&(_, l)| *l)
                .unwrap_or((0, &0));
            let active = p.active.max(1);
            let (lo, &min) = shard_load[..active.min(shard_load.len())]
                .iter()
                .enumerate()
                .min_by_key(|&(_, l)| *l)
                .unwrap_or((0, &0));
            if (max as f64) <= mean * (1.0 + b.tolerance) || hi == lo {
                balanced = true;
                break;
            }
            let gap = max - min;
            // The largest bucket of the busiest shard within half the gap; else the smallest under the gap.
            let candidates = (0..BUCKETS)
                .filter(|&k| p.table.owner(k) == hi && !p.busy.contains(k) && load[k] > 0);
            let pick = candidates
                .clone()
                .filter(|&k| load[k] * 2 <= gap)
                .max_by_key(|&k| load[k])
                .or_else(|| {
                    candidates
                        .filter(|&k| load[k] < gap)
                        .min_by_key(|&k| load[k])
                });
            let Some(k) = pick else {
                break;
            };
            if self.schedule(p, k, lo).is_none() {
                break;
            }
            p.stats.rebalanced += 1;
            shard_load[hi] -= load[k];
            shard_load[lo] += load[k];
        }
        balanced && p.moving.is_empty()
    }

    /// A live source's report (`FromDevice`, while the controller runs): the packets per bucket it took
    /// since its last report (`counts`, zeroed) and the share of its time it was busy. At most every
    /// [`LIVE_LOOK`], with every active shard reported since the last look and no move in flight, the
    /// controller looks (at most 16 moves a look, 10 % of imbalance tolerated): it scales (with [`Balance::scale`]: a shard more when every active shard is busy
    /// over 90 % of its rounds, one fewer when all are under 30 %, within the floor and the ceiling),
    /// else it balances the buckets' loads as for a capture.
    pub fn report_live(&self, shard: usize, counts: &mut [u32; BUCKETS], busy: f64) {
        let mut p = lock(&self.plan);
        let Some(b) = p.balance else {
            return;
        };
        for (l, c) in p.live_load.iter_mut().zip(counts.iter_mut()) {
            *l += u64::from(*c);
            *c = 0;
        }
        if let Some(x) = p.live_busy.get_mut(shard) {
            *x = Some(busy);
        }
        let active = p.active;
        let due = p.live_looked.is_none_or(|t| t.elapsed() >= LIVE_LOOK);
        let all = p.live_busy.iter().take(active).all(Option::is_some);
        if !due || !all || !p.moving.is_empty() {
            return;
        }
        p.live_looked = Some(Instant::now());
        let busy: Vec<f64> = p.live_busy.iter().take(active).flatten().copied().collect();
        p.live_busy.iter_mut().for_each(|x| *x = None);
        let load = std::mem::replace(&mut *p.live_load, [0; BUCKETS]);
        if let Some((floor, ceiling)) = b.scale {
            let want = if busy.iter().all(|&x| x > 0.9) && active < ceiling.min(self.shards) {
                Some(active + 1)
            } else if busy.iter().all(|&x| x < 0.3) && active > floor.max(1) {
                Some(active - 1)
            } else {
                None
            };
            if let Some(n) = want {
                drop(p);
                if self.set_shards(n).is_ok() {
                    lock(&self.plan).stats.scaled += 1;
                }
                return;
            }
        }
        let live = Balance {
            max_moves: b.max_moves.min(LIVE_MAX_MOVES),
            tolerance: b.tolerance.max(LIVE_TOLERANCE),
            ..b
        };
        self.rebalance(&mut p, &load, live);
    }

    /// Called by a shard's source as it enters `epoch` (before it takes any frame of it): applies the
    /// moves of that epoch to the shard's own copy of the table, `local`, and notes the exports and
    /// imports they require. Returns true if the shard must now wait for a handoff
    /// ([`awaiting`](Self::awaiting)) before it takes more frames.
    pub fn enter(&self, shard: usize, epoch: u64, local: &mut Indirection) -> bool {
        self.enter_counted(shard, epoch, local, None)
    }

    /// [`enter`](Self::enter), with the packets per bucket the shard took in the epoch it leaves (for the
    /// controller; `counts` is zeroed).
    pub fn enter_counted(
        &self,
        shard: usize,
        epoch: u64,
        local: &mut Indirection,
        counts: Option<&mut [u32; BUCKETS]>,
    ) -> bool {
        self.enter_with(shard, epoch, local, counts, None)
    }

    /// The common part of [`enter_counted`](Self::enter_counted) and
    /// [`enter_live`](Self::enter_live): the latter defers the exports and collects the incoming buckets.
    fn enter_with(
        &self,
        shard: usize,
        epoch: u64,
        local: &mut Indirection,
        counts: Option<&mut [u32; BUCKETS]>,
        mut live: Option<&mut Entered>,
    ) -> bool {
        let Some(lane) = self.lanes.get(shard) else {
            return false;
        };
        let mut p = lock(&self.plan);
        p.stats.epochs += 1;
        if let Some(c) = counts
            && p.balance.is_some()
        {
            Self::add_counts(&mut p, epoch.saturating_sub(1), c);
        }
        if let Some(e) = p.entered.get_mut(shard) {
            *e = epoch;
        }
        let mut due = Vec::new();
        for x in p.moving.iter_mut().filter(|x| x.m.epoch == epoch) {
            if usize::from(x.m.from) == shard {
                local.set(usize::from(x.m.bucket), usize::from(x.m.to));
                due.push(x.m);
            } else if usize::from(x.m.to) == shard {
                local.set(usize::from(x.m.bucket), usize::from(x.m.to));
                x.to_entered = true;
                if let Some(l) = live.as_deref_mut() {
                    l.incoming.insert(usize::from(x.m.bucket));
                }
            }
        }
        if let Some(l) = live {
            l.outgoing = !due.is_empty();
            lock(&lane.inner).deferred.extend(due);
        } else if !due.is_empty() {
            lock(&lane.inner).due.extend(due);
            lane.due.store(true, Ordering::Release);
        }
        let hold = self.settle(&mut p, shard);
        if p.balance.is_some() {
            // Moves the look schedules start at a later epoch than this one: this shard meets them then.
            self.look(&mut p);
        }
        if p.balance.is_some() || p.active < self.shards {
            self.update_lead(&p);
        }
        hold || self.too_far_ahead(epoch)
    }

    /// For a live source (whose input has no position all shards share, `FromDevice`): the first epoch
    /// after `after` that has moves scheduled, if any. A live source enters only such epochs, one at a
    /// time: the next once the kernel follows the last ([`swapped`](Self::swapped)) and its own exports
    /// are released.
    pub fn next_epoch(&self, after: u64) -> Option<u64> {
        lock(&self.plan)
            .moving
            .iter()
            .map(|x| x.m.epoch)
            .filter(|&e| e > after)
            .min()
    }

    /// A live source enters `epoch` (see [`next_epoch`](Self::next_epoch)): the moves apply to its
    /// `local` table; the buckets it takes over are returned (hold their frames until
    /// [`awaiting`](Self::awaiting) is false: they arrive once the program is swapped); its outgoing
    /// moves wait for [`release`](Self::release).
    pub fn enter_live(&self, shard: usize, epoch: u64, local: &mut Indirection) -> Entered {
        let mut e = Entered::default();
        self.enter_with(shard, epoch, local, None, Some(&mut e));
        e
    }

    /// Whether every shard has entered `epoch`; if so, and no one claimed its swap yet, the caller now
    /// has: it installs the fanout program of its table, then calls [`mark_swapped`](Self::mark_swapped).
    pub fn claim_swap(&self, epoch: u64) -> bool {
        let mut p = lock(&self.plan);
        if p.swap_claimed >= epoch || p.entered.iter().any(|&e| e < epoch) {
            return false;
        }
        p.swap_claimed = epoch;
        true
    }

    /// The kernel follows the table of `epoch` (its program is installed).
    pub fn mark_swapped(&self, epoch: u64) {
        self.swapped.fetch_max(epoch, Ordering::AcqRel);
    }

    /// The last epoch whose table the kernel follows.
    pub fn swapped(&self) -> u64 {
        self.swapped.load(Ordering::Acquire)
    }

    /// A live source has drained every frame the old program sent it: its outgoing moves of `epoch` and
    /// before are exported (by its router, after this round's packets).
    pub fn release(&self, shard: usize, epoch: u64) {
        let Some(lane) = self.lanes.get(shard) else {
            return;
        };
        let mut l = lock(&lane.inner);
        let (now, later): (Vec<Move>, Vec<Move>) =
            l.deferred.drain(..).partition(|m| m.epoch <= epoch);
        l.deferred = later;
        if !now.is_empty() {
            l.due.extend(now);
            lane.due.store(true, Ordering::Release);
        }
    }

    /// Completes `shard`'s incoming moves that are entered and imported, and sets whether it must hold
    /// its input (some are entered, not imported). Returns that.
    fn settle(&self, p: &mut Plan, shard: usize) -> bool {
        let Some(lane) = self.lanes.get(shard) else {
            return false;
        };
        let mut waiting = 0u64;
        let mut completed = 0u64;
        p.moving.retain(|x| {
            if usize::from(x.m.to) != shard || !x.to_entered {
                return true;
            }
            if x.imported {
                completed += 1;
                false
            } else {
                waiting += 1;
                true
            }
        });
        if completed > 0 {
            p.stats.completed += completed;
            let mut busy = BucketSet::new();
            for x in &p.moving {
                busy.insert(usize::from(x.m.bucket));
            }
            p.busy = busy;
        }
        let mut l = lock(&lane.inner);
        if waiting > 0 {
            l.held_since.get_or_insert_with(Instant::now);
        } else if let Some(t) = l.held_since.take() {
            let ns = t.elapsed().as_nanos() as u64;
            p.stats.held_ns += ns;
            p.stats.max_held_ns = p.stats.max_held_ns.max(ns);
        }
        lane.awaiting.store(waiting, Ordering::Release);
        waiting > 0
    }

    /// Whether `shard` must hold its input: an incoming move's entries are not imported yet.
    #[inline]
    pub fn awaiting(&self, shard: usize) -> bool {
        self.lanes
            .get(shard)
            .is_some_and(|l| l.awaiting.load(Ordering::Acquire) > 0)
    }

    /// Whether `shard` has state to export (a cheap check, every round).
    #[inline]
    pub fn exports_due(&self, shard: usize) -> bool {
        self.lanes
            .get(shard)
            .is_some_and(|l| l.due.load(Ordering::Acquire))
    }

    /// Takes the moves whose state `shard` must now export.
    pub fn take_due(&self, shard: usize) -> Vec<Move> {
        let Some(lane) = self.lanes.get(shard) else {
            return Vec::new();
        };
        let mut l = lock(&lane.inner);
        lane.due.store(false, Ordering::Release);
        std::mem::take(&mut l.due)
    }

    /// Posts a handoff to shard `to`'s mailbox.
    pub fn post(&self, to: usize, handoff: Handoff) {
        let Some(lane) = self.lanes.get(to) else {
            return;
        };
        lock(&lane.inner).mailbox.push(handoff);
        lane.mail.store(true, Ordering::Release);
    }

    /// Whether `shard` has handoffs to import (a cheap check, every round).
    #[inline]
    pub fn has_mail(&self, shard: usize) -> bool {
        self.lanes
            .get(shard)
            .is_some_and(|l| l.mail.load(Ordering::Acquire))
    }

    /// Takes `shard`'s handoffs.
    pub fn take_mail(&self, shard: usize) -> Vec<Handoff> {
        let Some(lane) = self.lanes.get(shard) else {
            return Vec::new();
        };
        let mut l = lock(&lane.inner);
        lane.mail.store(false, Ordering::Release);
        std::mem::take(&mut l.mailbox)
    }

    /// Records that `shard` imported a handoff of `entries` entries completing `moves`: the moves are done
    /// and, once nothing more is awaited, the shard's input runs again.
    pub fn imported(&self, shard: usize, moves: &[Move], entries: usize) {
        let mut p = lock(&self.plan);
        for m in moves {
            if let Some(x) = p.moving.iter_mut().find(|x| x.m == *m) {
                x.imported = true;
            }
        }
        p.stats.entries_moved += entries as u64;
        self.settle(&mut p, shard);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_the_hash_space_evenly() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(u32::MAX), BUCKETS - 1);
        assert_eq!(bucket_of(1 << 23), 1);
        let t = Indirection::round_robin(3);
        assert_eq!(t.buckets_per_shard(), vec![171, 171, 170]);
        assert_eq!(t.buckets_of(1).len(), 171);
        assert!(t.buckets_of(1).contains(1));
    }

    #[test]
    fn table_text_names_runs() {
        let mut t = Indirection::round_robin(1);
        t.set(3, 1);
        t.set(4, 1);
        t.set(511, 2);
        assert_eq!(t.to_text(), "0-2:0 3-4:1 5-510:0 511:2");
    }

    #[test]
    fn a_move_runs_at_an_epoch_neither_shard_entered() {
        let s = Steering::new(2);
        assert!(matches!(s.request_move(0, 1), Err(SteerError::Fixed(_))));
        s.allow_moves(None);
        let (mut a, mut b) = (Indirection::round_robin(2), Indirection::round_robin(2));
        assert!(!s.enter(0, 5, &mut a));
        let m = s.request_move(0, 1).unwrap().unwrap();
        assert_eq!((m.from, m.to, m.epoch), (0, 1, 6));
        assert_eq!(s.request_move(0, 0), Err(SteerError::Moving(0)));
        assert_eq!(s.table().owner(0), 1);
        // The new owner reaches the epoch first: it waits.
        assert!(!s.enter(1, 5, &mut b));
        assert!(s.enter(1, 6, &mut b));
        assert_eq!(b.owner(0), 1);
        assert!(s.awaiting(1));
        // The old owner reaches it and exports.
        assert!(!s.exports_due(0));
        assert!(!s.enter(0, 6, &mut a));
        assert_eq!(a.owner(0), 1);
        assert!(s.exports_due(0));
        let due = s.take_due(0);
        assert_eq!(due, vec![m]);
        s.post(
            1,
            Handoff {
                moves: due,
                state: vec![],
            },
        );
        assert!(s.has_mail(1));
        let mail = s.take_mail(1);
        s.imported(1, &mail[0].moves, 7);
        assert!(!s.awaiting(1));
        let st = s.stats();
        assert_eq!((st.scheduled, st.completed, st.entries_moved), (1, 1, 7));
        assert!(s.in_flight().is_empty());
        assert_eq!(s.request_move(0, 0).unwrap().unwrap().epoch, 7);
    }

    #[test]
    fn a_handoff_may_arrive_before_its_epoch() {
        let s = Steering::new(2);
        s.allow_moves(None);
        let (mut a, mut b) = (Indirection::round_robin(2), Indirection::round_robin(2));
        let m = s.request_move(2, 1).unwrap().unwrap();
        assert_eq!(m.epoch, 1);
        assert!(!s.enter(0, 1, &mut a));
        let due = s.take_due(0);
        s.imported(1, &due, 3);
        // Imported, not entered: not complete, the bucket still moving.
        assert_eq!(s.in_flight(), vec![m]);
        assert_eq!(b.owner(2), 0);
        assert!(!s.enter(1, 1, &mut b), "nothing to wait for");
        assert_eq!(b.owner(2), 1);
        assert!(s.in_flight().is_empty());
        assert_eq!(s.stats().completed, 1);
    }

    #[test]
    fn shards_are_added_and_removed_with_the_fewest_moves() {
        let s = Steering::new(4);
        s.set_initial_shards(2);
        s.allow_moves(None);
        assert_eq!(s.table().buckets_per_shard(), vec![256, 256]);
        let moves = s.set_shards(3).unwrap();
        assert_eq!(moves.len(), 170, "a third of the buckets, to the new shard");
        assert!(moves.iter().all(|m| m.to == 2));
        assert_eq!(s.table().buckets_per_shard(), vec![171, 171, 170]);
        assert_eq!(
            s.set_shards(1),
            Err(SteerError::Moving(usize::from(moves[0].bucket)))
        );
        // Complete the moves (every shard enters their epoch; the old owners export, the new imports).
        let mut t = Indirection::round_robin(2);
        for sh in 0..4 {
            s.enter(sh, moves[0].epoch, &mut t);
        }
        for sh in 0..2 {
            let due = s.take_due(sh);
            s.imported(2, &due, 0);
        }
        assert!(s.in_flight().is_empty());
        let moves = s.set_shards(1).unwrap();
        assert_eq!(moves.len(), 341);
        assert_eq!(s.table().buckets_per_shard(), vec![512]);
        assert_eq!(s.active_shards(), 1);
        assert!(matches!(s.set_shards(5), Err(SteerError::OutOfRange(_))));
    }

    proptest::proptest! {
        /// From any table, `set_shards(n)` leaves every one of the `n` shards an even share (512 / n,
        /// one more for the first 512 % n) and none to the others, moving only what it must: the buckets
        /// of the shards beyond `n` and each active shard's excess.
        #[test]
        fn set_shards_reaches_an_even_share_with_the_fewest_moves(
            owners in proptest::collection::vec(0usize..6, BUCKETS),
            n in 1usize..=6,
        ) {
            let s = Steering::new(6);
            s.allow_moves(None);
            {
                let mut p = lock(&s.plan);
                for (b, &o) in owners.iter().enumerate() {
                    p.table.set(b, o);
                }
            }
            let before = s.table();
            let moves = s.set_shards(n).unwrap();
            let after = s.table();
            let per = after.buckets_per_shard();
            for sh in 0..6 {
                let want = if sh < n { BUCKETS / n + usize::from(sh < BUCKETS % n) } else { 0 };
                proptest::prop_assert_eq!(per.get(sh).copied().unwrap_or(0), want);
            }
            let mut must = 0;
            for sh in 0..6 {
                let had = before.buckets_of(sh).len();
                let share = if sh < n { BUCKETS / n + usize::from(sh < BUCKETS % n) } else { 0 };
                must += had.saturating_sub(share);
            }
            proptest::prop_assert_eq!(moves.len(), must);
            for m in &moves {
                proptest::prop_assert_eq!(before.owner(usize::from(m.bucket)), usize::from(m.from));
                proptest::prop_assert_eq!(after.owner(usize::from(m.bucket)), usize::from(m.to));
            }
        }
    }

    #[test]
    fn exported_entries_come_back_typed() {
        let e = Exported::new(vec![1u32, 2, 3]);
        assert_eq!(e.entries, 3);
        assert_eq!(e.take::<u32>(), vec![1, 2, 3]);
        assert!(Exported::new(vec![1u8]).take::<u32>().is_empty());
    }
}
