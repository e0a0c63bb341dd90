//! `RatedUnqueue`: pulls at most RATE packets per second and pushes them on; the token bucket rated
//! sources share.

use crate::args::Args;
use crate::batch::Outputs;
use crate::element::ElementClass;
use crate::element::{Element, HandlerSpec, PortCount, PortSpec, TaskContext, TaskStatus};
use crate::error::ConfigError;
use crate::packet::Timestamp;

/// A token bucket in packets: refills at `RATE` packets per second, holds at most `burst` tokens.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Option<Timestamp>,
}

impl TokenBucket {
    /// A bucket of `rate` tokens per second and `burst` tokens at most, starting full.
    pub fn new(rate: f64, burst: f64) -> Self {
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: None,
        }
    }
    /// Tokens available at `now` (refilled), at most `want`; they are taken.
    pub fn take(&mut self, now: Timestamp, want: usize) -> usize {
        if let Some(l) = self.last {
            self.tokens = (self.tokens + now.since(l) as f64 * self.rate / 1e9).min(self.burst);
        }
        self.last = Some(now);
        let n = (self.tokens.floor() as usize).min(want);
        self.tokens -= n as f64;
        n
    }
    /// Gives back tokens that were taken but not used.
    pub fn refund(&mut self, n: usize) {
        self.tokens = (self.tokens + n as f64).min(self.burst);
    }
}

/// Like [`Unqueue`](super::Unqueue), at most `RATE` packets per second.
///
/// # Ports
/// One pull input, one push output.
///
/// # Arguments
/// `RATE` (packets per second, mandatory); `BURST` (default 32).
///
/// # Handlers
/// `count` (read); `rate` (read, write).
///
/// # Example
/// ```
/// let r = nf_core::testing::run_config("
///     InfiniteSource(LIMIT 50, STOP true) -> Queue(100) -> RatedUnqueue(100000) -> c :: Counter -> Discard;").unwrap();
/// assert_eq!(r.read_handler("c", "count").unwrap(), "50");
/// ```
#[derive(Debug)]
pub struct RatedUnqueue {
    bucket: TokenBucket,
    burst: usize,
    rate: f64,
    count: u64,
}

impl RatedUnqueue {
    /// `rate` packets per second, in bursts of at most `burst`.
    pub fn new(rate: f64, burst: usize) -> Self {
        let burst = burst.max(1);
        RatedUnqueue {
            bucket: TokenBucket::new(rate, burst as f64),
            burst,
            rate,
            count: 0,
        }
    }
}

const RU_HANDLERS: &[HandlerSpec] = &[
    HandlerSpec::read("count", "packets moved"),
    HandlerSpec::read_write("rate", "packets per second"),
];

impl Element for RatedUnqueue {
    fn class_name(&self) -> &'static str {
        Self::NAME
    }
    fn ports(&self) -> PortSpec {
        PortSpec::new(PortCount::exactly(1), PortCount::exactly(1), "l/h")
    }
    fn is_task(&self) -> bool {
        true
    }
    fn run_task(&mut self, ctx: &mut TaskContext<'_>, out: &mut Outputs) -> TaskStatus {
        let want = self.bucket.take(ctx.now(), self.burst);
        if want == 0 {
            // Tokens are coming: this is a wait, not idleness, so the run does not end under us.
            return TaskStatus::Busy;
        }
        let n = ctx.pull(0, want, out.port(0));
        self.bucket.refund(want - n);
        self.count += n as u64;
        if n > 0 {
            TaskStatus::Busy
        } else {
            TaskStatus::Idle
        }
    }
    fn handlers(&self) -> &'static [HandlerSpec] {
        RU_HANDLERS
    }
    fn read_handler(&self, name: &str) -> Option<String> {
        match name {
            "count" => Some(self.count.to_string()),
            "rate" => Some(self.rate.to_string()),
            _ => None,
        }
    }
    fn write_handler(&mut self, name: &str, value: &str) -> Result<(), String> {
        if name != "rate" {
            return Err(format!("no write handler `{name}`"));
        }
        let r: f64 = value
            .trim()
            .parse()
            .map_err(|_| format!("`{value}` is not a rate"))?;
        self.rate = r;
        self.bucket = TokenBucket::new(r, self.burst as f64);
        Ok(())
    }
}

impl ElementClass for RatedUnqueue {
    const NAME: &'static str = "RatedUnqueue";
    const DOC: &'static str = "pulls at most RATE packets per second and pushes them on";
    fn configure(a: &mut Args) -> Result<Self, ConfigError> {
        let rate: f64 = a.read_mp("RATE")?;
        if rate <= 0.0 {
            return Err(a.error("RATE must be positive"));
        }
        Ok(RatedUnqueue::new(rate, a.read_or("BURST", 32)?))
    }
}
