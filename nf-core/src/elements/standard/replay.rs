//! `Replay`: replays frames held in memory (for benchmarks that separate processing from I/O).

use crate::args::Args;
use crate::batch::Outputs;
use crate::element::ElementClass;
use crate::element::{Element, HandlerSpec, PortSpec, TaskContext, TaskStatus};
use crate::error::ConfigError;
use crate::packet::Timestamp;
use crate::traffic::{Protocols, SizeMix};
use crate::traffic::{TrafficConfig, TrafficGen};

/// The most frames a `Replay` pre-generates (`PACKETS`).
pub const MAX_REPLAY_PACKETS: usize = 1 << 24;

/// Replays a set of frames held in one contiguous buffer, in order and around again, copying each into a
/// pooled packet: the same work as reading a capture, minus the file. Frames come from the traffic generator
/// (`PACKETS` frames over `FLOWS` flows, TCP flows starting with a SYN) or from code.
///
/// In a sharded run, each shard's copy emits the frames of the sequence whose flow maps to its shard (as RSS
/// would; see [`frame_shard`](crate::flow::frame_shard)), in the sequence's order; `LIMIT` counts the whole
/// sequence. Each copy keeps only its own frames, so that, as behind a NIC's RSS, a core never touches the
/// other cores' packets (walking the whole sequence and skipping made every core stream every frame from
/// memory: with a million distinct frames, 2 shards ran discard only 1.15x faster than one).
///
/// # Ports
/// No input; one push output.
///
/// # Arguments
/// `PACKETS` (distinct frames, default 100000); `FLOWS` (default 10000); `LENGTH` (default 64, or `imix`);
/// `PROTO` (`mixed`, `tcp`, `udp`; default mixed); `REPLIES` (default true: server-to-client packets as
/// well; false for the traffic a load balancer's Mux sees, requests only); `LIMIT` (packets to send;
/// default `PACKETS`);
/// `BURST` (default 32); `STOP` (default true).
///
/// # Handlers
/// `count`, `byte_count` (read).
///
/// # Example
/// ```
/// let r = nf_core::testing::run_config("s :: Replay(PACKETS 1000, FLOWS 10, LIMIT 2500) -> Discard;").unwrap();
/// assert_eq!(r.read_handler("s", "count").unwrap(), "2500");
/// ```
#[derive(Debug)]
pub struct Replay {
    buf: Vec<u8>,
    frames: Vec<(u32, u32)>,
    next: usize,
    limit: u64,
    burst: usize,
    stop: bool,
    count: u64,
    bytes: u64,
    shard: (usize, usize),
    /// In a sharded run: each kept frame's position in the whole sequence (empty: every frame is kept).
    position: Vec<u32>,
    /// Frames in the whole sequence.
    period: u64,
    /// Times around the sequence so far.
    cycle: u64,
    finished: bool,
}

/// The synthetic clock's start (packet `i` of the whole sequence is stamped 100 ns later per position, so
/// that rates and timeouts behave).
const CLOCK_START: u64 = 1_000_000_000;

impl Replay {
    /// Frames from the traffic generator.
    pub fn generated(packets: usize, cfg: TrafficConfig) -> Self {
        let mut g = TrafficGen::new(cfg);
        let mut buf = Vec::new();
        let mut frames = Vec::with_capacity(packets);
        for _ in 0..packets.max(1) {
            let f = g.next_frame();
            frames.push((buf.len() as u32, f.len() as u32));
            buf.extend_from_slice(f);
        }
        Self::from_parts(buf, frames)
    }

    /// Frames given in code.
    pub fn from_frames(frames: &[Vec<u8>]) -> Self {
        let mut buf = Vec::new();
        let mut idx = Vec::new();
        for f in frames {
            idx.push((buf.len() as u32, f.len() as u32));
            buf.extend_from_slice(f);
        }
        Self::from_parts(buf, idx)
    }

    fn from_parts(buf: Vec<u8>, frames: Vec<(u32, u32)>) -> Self {
        let limit = frames.len() as u64;
        Replay {
            // Read front to back on every round: in huge pages when large (a 64 MB set of frames in 4 KiB
            // pages cost the Mux 3-4 ns per packet in TLB misses).
            buf: crate::huge_pages_unsafe::into_huge_pages(buf),
            frames,
            next: 0,
            limit,
            burst: 32,
            stop: true,
            count: 0,
            bytes: 0,
            shard: (0, 1),
            position: Vec::new(),
            period: 0,
            cycle: 0,
            finished: false,
        }
    }

    /// Packets to send in all.
    pub fn limit(mut self, n: u64) -> Self {
        self.limit = n;
        self
    }
    /// Packets per round.
    pub fn burst(mut self, n: usize) -> Self {
        self.burst = n.max(1);
        self
    }
    /// End the run when the limit is reached.
    pub fn stop(mut self, s: bool) -> Self {
        self.stop = s;
        self
    }
    /// Packets sent.
    pub fn count(&self) -> u64 {
        self.count
    }
    /// Number of distinct frames.
    pub fn frames(&self) -> usize {
        self.frames.len()
    }
}

const HANDLERS: &[HandlerSpec] = &[
    HandlerSpec::read("count", "packets sent"),
    HandlerSpec::read("byte_count", "bytes sent"),
];

impl Element for Replay {
    fn class_name(&self) -> &'static str {
        Self::NAME
    }
    fn ports(&self) -> PortSpec {
        PortSpec::SOURCE
    }
    fn initialize(&mut self, ctx: &crate::element::InitContext<'_>) -> Result<(), String> {
        self.shard = (ctx.shard, ctx.shards);
        self.period = self.frames.len() as u64;
        if ctx.shards > 1 {
            // Keep this shard's frames only, packed, each with its position in the sequence.
            let (mut buf, mut frames, mut position) = (Vec::new(), Vec::new(), Vec::new());
            for (k, &(off, len)) in self.frames.iter().enumerate() {
                let f = &self.buf[off as usize..(off + len) as usize];
                if crate::flow::frame_shard(f, ctx.shards) == ctx.shard {
                    frames.push((buf.len() as u32, len));
                    buf.extend_from_slice(f);
                    position.push(k as u32);
                }
            }
            self.buf = crate::huge_pages_unsafe::into_huge_pages(buf);
            self.frames = frames;
            self.position = position;
        }
        Ok(())
    }
    fn shards_itself(&self) -> bool {
        true
    }
    fn is_task(&self) -> bool {
        true
    }
    fn stops_router(&self) -> bool {
        self.stop
    }
    #[inline]
    fn run_task(&mut self, _ctx: &mut TaskContext<'_>, out: &mut Outputs) -> TaskStatus {
        if self.finished || self.frames.is_empty() {
            return TaskStatus::Done;
        }
        let o = out.port(0);
        let mut bytes = 0u64;
        let burst = self.burst;
        let produced = crate::pool::with_local(|pool| {
            o.fill_copies(pool, burst, None, || {
                let j = self.next;
                let at = self.position.get(j).map_or(j as u64, |&k| u64::from(k));
                let global = self.cycle * self.period + at;
                if global >= self.limit {
                    self.finished = true;
                    return None;
                }
                self.next += 1;
                if self.next == self.frames.len() {
                    self.next = 0;
                    self.cycle += 1;
                }
                let (off, len) = self.frames[j];
                let f = &self.buf[off as usize..(off + len) as usize];
                bytes += u64::from(len);
                Some((f, Timestamp(CLOCK_START + (global + 1) * 100)))
            })
        });
        self.count += produced as u64;
        self.bytes += bytes;
        TaskStatus::Busy
    }
    fn handlers(&self) -> &'static [HandlerSpec] {
        HANDLERS
    }
    fn read_handler(&self, name: &str) -> Option<String> {
        match name {
            "count" => Some(self.count.to_string()),
            "byte_count" => Some(self.bytes.to_string()),
            _ => None,
        }
    }
}

impl ElementClass for Replay {
    const NAME: &'static str = "Replay";
    const DOC: &'static str =
        "replays generated frames held in memory (PACKETS, FLOWS, LENGTH, PROTO, REPLIES, LIMIT)";
    fn configure(a: &mut Args) -> Result<Self, ConfigError> {
        let packets: usize = a.read_at_most_or("PACKETS", 100_000, MAX_REPLAY_PACKETS)?;
        let flows: usize = a.read_at_most_or("FLOWS", 10_000, super::MAX_FLOWS)?;
        let size: SizeMix = a.read_or("LENGTH", SizeMix::Fixed(64))?;
        let protocols: Protocols = a.read_or("PROTO", Protocols::Mixed)?;
        let limit: Option<u64> = a.read("LIMIT")?;
        let burst: usize = a.read_or("BURST", 32)?;
        let stop: bool = a.read_or("STOP", true)?;
        let replies: bool = a.read_or("REPLIES", true)?;
        if packets == 0 {
            return Err(a.error("PACKETS must be at least 1"));
        }
        let cfg = TrafficConfig {
            flows,
            size,
            protocols,
            bidirectional: replies,
            ..Default::default()
        };
        a.reserve("FLOWS", cfg.memory())?;
        // The frames, one buffer, plus an index entry each.
        let frames = (packets as u64).saturating_mul(cfg.max_frame_len() as u64 + 8);
        a.reserve("PACKETS × LENGTH", frames)?;
        let mut r = Replay::generated(packets, cfg).burst(burst).stop(stop);
        if let Some(l) = limit {
            r = r.limit(l);
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    /// `REPLIES false` sends requests only (every TCP packet to the server's port 80); by default half the
    /// packets are replies.
    #[test]
    fn replies_can_be_left_out() {
        let conf = |replies: bool| {
            format!(
                "s :: Replay(PACKETS 1000, FLOWS 10, PROTO tcp, REPLIES {replies}); \
                 s -> Strip(14) -> c :: IPClassifier(dst port 80, -); \
                 c[0] -> req :: Counter -> Discard; c[1] -> rep :: Counter -> Discard;"
            )
        };
        let r = crate::testing::run_config(&conf(false)).unwrap();
        assert_eq!(r.read_handler("req", "count").unwrap(), "1000");
        assert_eq!(r.read_handler("rep", "count").unwrap(), "0");
        let r = crate::testing::run_config(&conf(true)).unwrap();
        assert_eq!(r.read_handler("req", "count").unwrap(), "500");
        assert_eq!(r.read_handler("rep", "count").unwrap(), "500");
    }
}
