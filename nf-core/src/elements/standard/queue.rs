//! `Queue`: stores pushed packets until they are pulled.

use crate::args::Args;
use crate::batch::{Batch, Outputs};
use crate::element::ElementClass;
use crate::element::{Element, HandlerSpec, PortCount, PortSpec};
use crate::error::ConfigError;
use crate::packet::Packet;
use std::collections::VecDeque;

/// The most packets a `Queue` holds (`CAPACITY`; preallocated).
pub const MAX_QUEUE: usize = 1 << 22;

/// A bounded FIFO: packets pushed in wait until a downstream task pulls them. When full, arriving packets
/// are dropped (tail drop) and counted. Memory for `CAPACITY` packets is reserved up front.
///
/// # Ports
/// One push input, one pull output.
///
/// # Arguments
/// `CAPACITY` (default 1000).
///
/// # Handlers
/// `length`, `highwater_length`, `drops` (read); `capacity` (read, write); `reset_counts` (write).
///
/// # Example
/// ```
/// let r = nf_core::testing::run_config("
///     InfiniteSource(LIMIT 100, STOP true) -> q :: Queue(10) -> Unqueue(BURST 4) -> c :: Counter -> Discard;").unwrap();
/// let drops: u64 = r.read_handler("q", "drops").unwrap().parse().unwrap();
/// let count: u64 = r.read_handler("c", "count").unwrap().parse().unwrap();
/// assert_eq!(drops + count, 100);
/// ```
#[derive(Debug)]
pub struct Queue {
    q: VecDeque<Packet>,
    capacity: usize,
    drops: u64,
    highwater: usize,
}

impl Queue {
    /// A queue of `capacity` packets.
    pub fn new(capacity: usize) -> Self {
        Queue {
            q: VecDeque::with_capacity(capacity),
            capacity,
            drops: 0,
            highwater: 0,
        }
    }
    /// Packets waiting.
    pub fn len(&self) -> usize {
        self.q.len()
    }
    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }
    /// Packets dropped because the queue was full.
    pub fn drops(&self) -> u64 {
        self.drops
    }
}

const HANDLERS: &[HandlerSpec] = &[
    HandlerSpec::gauge("length", "packets waiting"),
    HandlerSpec::gauge("highwater_length", "most packets ever waiting"),
    HandlerSpec::read("drops", "packets dropped because the queue was full"),
    HandlerSpec::read_write("capacity", "most packets held"),
    HandlerSpec::write("reset_counts", "zero drops and highwater_length"),
];

impl Element for Queue {
    fn class_name(&self) -> &'static str {
        Self::NAME
    }
    fn ports(&self) -> PortSpec {
        PortSpec::new(PortCount::exactly(1), PortCount::exactly(1), "h/l")
    }
    fn push(&mut self, _port: usize, batch: &mut Batch, _out: &mut Outputs) {
        for p in batch.drain() {
            if self.q.len() < self.capacity {
                self.q.push_back(p);
            } else {
                self.drops += 1;
            }
        }
        self.highwater = self.highwater.max(self.q.len());
    }
    fn pull(&mut self, _port: usize, max: usize, into: &mut Batch) -> usize {
        let n = max.min(self.q.len());
        into.extend(self.q.drain(..n));
        n
    }
    /// A new configuration's queue takes the old one's packets (as many as its capacity holds; the
    /// rest are dropped, counted) and counts.
    fn take_state(&mut self, old: &mut dyn Element) {
        if let Some(old) = old.as_any_mut().downcast_mut::<Queue>() {
            self.drops = old.drops;
            self.highwater = old.highwater;
            while let Some(p) = old.q.pop_front() {
                if self.q.len() < self.capacity {
                    self.q.push_back(p);
                } else {
                    self.drops += 1;
                }
            }
        }
    }
    fn handlers(&self) -> &'static [HandlerSpec] {
        HANDLERS
    }
    fn read_handler(&self, name: &str) -> Option<String> {
        Some(match name {
            "length" => self.q.len().to_string(),
            "highwater_length" => self.highwater.to_string(),
            "drops" => self.drops.to_string(),
            "capacity" => self.capacity.to_string(),
            _ => return None,
        })
    }
    fn write_handler(&mut self, name: &str, value: &str) -> Result<(), String> {
        match name {
            "capacity" => {
                let c: usize = value
                    .trim()
                    .parse()
                    .map_err(|_| format!("`{value}` is not a capacity"))?;
                self.capacity = c;
                while self.q.len() > c {
                    self.q.pop_back();
                    self.drops += 1;
                }
                Ok(())
            }
            "reset_counts" => {
                self.drops = 0;
                self.highwater = self.q.len();
                Ok(())
            }
            _ => Err(format!("no write handler `{name}`")),
        }
    }
}

impl ElementClass for Queue {
    const NAME: &'static str = "Queue";
    const DOC: &'static str = "a bounded FIFO between push and pull";
    fn configure(a: &mut Args) -> Result<Self, ConfigError> {
        let cap: usize = a.read_p_at_most_or("CAPACITY", 1000, MAX_QUEUE)?;
        a.reserve(
            "CAPACITY",
            (cap as u64).saturating_mul(std::mem::size_of::<Packet>() as u64),
        )?;
        Ok(Queue::new(cap))
    }
}
