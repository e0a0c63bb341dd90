//! `Counter`: counts packets and bytes and measures their rate.

use crate::args::Args;
use crate::batch::{Batch, Outputs};
use crate::element::ElementClass;
use crate::element::{Element, HandlerSpec};
use crate::error::ConfigError;
use crate::packet::Timestamp;

/// Counts the packets and bytes that pass through it, and their rate.
///
/// # Ports
/// One agnostic input, one agnostic output.
///
/// # Arguments
/// None.
///
/// # Handlers
/// `count`, `byte_count` (read); `rate` and `bit_rate` (read: packets and bits per second, averaged between
/// the first and the last packet, by packet timestamps); `reset` (write: zero everything).
///
/// # Example
/// ```
/// let r = nf_core::testing::run_config(
///     "InfiniteSource(LENGTH 100, LIMIT 10, STOP true) -> c :: Counter -> Discard;").unwrap();
/// assert_eq!(r.read_handler("c", "count").unwrap(), "10");
/// assert_eq!(r.read_handler("c", "byte_count").unwrap(), "1000");
/// ```
#[derive(Debug, Default, Clone)]
pub struct Counter {
    count: u64,
    bytes: u64,
    first: Option<Timestamp>,
    last: Timestamp,
}

const HANDLERS: &[HandlerSpec] = &[
    HandlerSpec::read("count", "packets seen"),
    HandlerSpec::read("byte_count", "bytes seen"),
    HandlerSpec::gauge("rate", "packets per second (first to last packet)"),
    HandlerSpec::gauge("bit_rate", "bits per second (first to last packet)"),
    HandlerSpec::write("reset", "zero the counters"),
];

impl Counter {
    /// A zeroed counter.
    pub fn new() -> Self {
        Self::default()
    }
    /// Packets seen.
    pub fn count(&self) -> u64 {
        self.count
    }
    /// Bytes seen.
    pub fn byte_count(&self) -> u64 {
        self.bytes
    }
    /// Packets per second between the first and the last packet's timestamps.
    pub fn rate(&self) -> f64 {
        match self.first {
            Some(f) if self.last > f => self.count as f64 * 1e9 / self.last.since(f) as f64,
            _ => 0.0,
        }
    }
}

impl Element for Counter {
    fn class_name(&self) -> &'static str {
        Self::NAME
    }
    #[inline]
    fn push(&mut self, _port: usize, batch: &mut Batch, out: &mut Outputs) {
        let mut bytes = 0;
        for p in batch.iter() {
            bytes += p.len() as u64;
        }
        if let (Some(first), Some(last)) = (batch.as_slice().first(), batch.as_slice().last()) {
            if self.first.is_none() {
                self.first = Some(first.anno.timestamp);
            }
            self.last = last.anno.timestamp;
        }
        self.count += batch.len() as u64;
        self.bytes += bytes;
        out.port(0).append(batch);
    }
    /// A new configuration's counter goes on from the old one's counts.
    fn take_state(&mut self, old: &mut dyn Element) {
        if let Some(old) = old.as_any_mut().downcast_mut::<Counter>() {
            (self.count, self.bytes, self.first, self.last) =
                (old.count, old.bytes, old.first, old.last);
        }
    }
    fn handlers(&self) -> &'static [HandlerSpec] {
        HANDLERS
    }
    fn read_handler(&self, name: &str) -> Option<String> {
        Some(match name {
            "count" => self.count.to_string(),
            "byte_count" => self.bytes.to_string(),
            "rate" => format!("{:.1}", self.rate()),
            "bit_rate" => {
                let r = if self.count > 0 {
                    self.rate() * 8.0 * self.bytes as f64 / self.count as f64
                } else {
                    0.0
                };
                format!("{r:.1}")
            }
            _ => return None,
        })
    }
    fn write_handler(&mut self, name: &str, _value: &str) -> Result<(), String> {
        match name {
            "reset" => {
                *self = Counter::default();
                Ok(())
            }
            _ => Err(format!("no write handler `{name}`")),
        }
    }
}

impl ElementClass for Counter {
    const NAME: &'static str = "Counter";
    const DOC: &'static str = "counts packets and bytes, and their rate";
    fn configure(a: &mut Args) -> Result<Self, ConfigError> {
        let _ = a;
        Ok(Counter::new())
    }
}
