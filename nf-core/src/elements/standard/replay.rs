//! `Replay`: replays frames held in memory (for benchmarks that separate processing from I/O).

use crate::batch::Outputs;
use crate::element::{Element, HandlerSpec, PortSpec, TaskContext, TaskStatus};
use crate::packet::{Packet, Timestamp};
use crate::traffic::{TrafficConfig, TrafficGen};

/// Replays a set of frames held in one contiguous buffer, in order and around again, copying each into a
/// pooled packet: the same work as reading a capture, minus the file. Frames come from the traffic generator
/// (`PACKETS` frames over `FLOWS` flows, TCP flows starting with a SYN) or from code.
///
/// In a sharded run, each shard's copy walks the same sequence and emits the frames whose flow maps to its
/// shard (as RSS would; see [`frame_shard`](crate::flow::frame_shard)); `LIMIT` counts the whole sequence.
///
/// # Ports
/// No input; one push output.
///
/// # Arguments
/// `PACKETS` (distinct frames, default 100000); `FLOWS` (default 10000); `LENGTH` (default 64, or `imix`);
/// `PROTO` (`mixed`, `tcp`, `udp`; default mixed); `LIMIT` (packets to send; default `PACKETS`);
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
    /// In a sharded run: the shard of each frame.
    owner: Vec<u16>,
    sent_total: u64,
    clock: Timestamp,
}

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
            buf,
            frames,
            next: 0,
            limit,
            burst: 32,
            stop: true,
            count: 0,
            bytes: 0,
            shard: (0, 1),
            owner: Vec::new(),
            sent_total: 0,
            clock: Timestamp(1_000_000_000),
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
        "Replay"
    }
    fn ports(&self) -> PortSpec {
        PortSpec::SOURCE
    }
    fn initialize(&mut self, ctx: &crate::element::InitContext<'_>) -> Result<(), String> {
        self.shard = (ctx.shard, ctx.shards);
        if ctx.shards > 1 {
            self.owner = self
                .frames
                .iter()
                .map(|&(off, len)| {
                    let f = &self.buf[off as usize..(off + len) as usize];
                    crate::flow::frame_shard(f, ctx.shards) as u16
                })
                .collect();
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
        if self.sent_total >= self.limit {
            return TaskStatus::Done;
        }
        let me = self.shard.0 as u16;
        let sharded = !self.owner.is_empty();
        let o = out.port(0);
        let mut bytes = 0u64;
        let mut produced = 0;
        crate::pool::with_local(|pool| {
            while produced < self.burst && self.sent_total < self.limit {
                let k = self.next;
                self.next += 1;
                if self.next == self.frames.len() {
                    self.next = 0;
                }
                self.sent_total += 1;
                // A synthetic clock: 100 ns per packet of the whole sequence, so that rates and timeouts behave.
                self.clock = self.clock.add_nanos(100);
                if sharded && self.owner[k] != me {
                    continue;
                }
                let (off, len) = self.frames[k];
                let f = &self.buf[off as usize..(off + len) as usize];
                let mut p = Packet::from_slice_in(pool, f);
                p.anno.timestamp = self.clock;
                bytes += u64::from(len);
                o.push(p);
                produced += 1;
            }
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
