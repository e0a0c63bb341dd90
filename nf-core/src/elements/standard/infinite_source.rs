//! `InfiniteSource` and `RatedSource`: synthetic traffic from templates.

use super::MAX_FLOWS;
use super::rated_unqueue::TokenBucket;
use crate::args::Args;
use crate::args::parse_hex;
use crate::batch::Outputs;
use crate::element::ElementClass;
use crate::element::{Element, HandlerSpec, PortSpec, TaskContext, TaskStatus};
use crate::error::ConfigError;
use crate::packet::Packet;
use crate::traffic::{Protocols, SizeMix, TrafficConfig, TrafficGen};

/// Generates packets from templates as fast as it is scheduled: `FLOWS` distinct valid Ethernet/IPv4
/// frames of `LENGTH` bytes (UDP by default), or the literal frame `DATA`, repeated.
///
/// # Ports
/// No input, one push output.
///
/// # Arguments
/// `DATA` (hex bytes: the whole frame); `LENGTH` (default 64); `FLOWS` (default 1); `PROTO` (`udp`,
/// `tcp` or `mixed`; default `udp`); `LIMIT` (packets, default unlimited; -1 is unlimited);
/// `BURST` (default 32); `STOP` (default false: when true, the run ends when `LIMIT` is reached);
/// `ACTIVE` (default true).
///
/// # Handlers
/// `count` (read); `active` (read, write); `reset` (write: count from zero again).
///
/// # Example
/// ```
/// let r = nf_core::testing::run_config("s :: InfiniteSource(LIMIT 100, BURST 7, STOP true) -> Discard;").unwrap();
/// assert_eq!(r.read_handler("s", "count").unwrap(), "100");
/// ```
#[derive(Debug)]
pub struct InfiniteSource {
    templates: Vec<Vec<u8>>,
    next: usize,
    limit: Option<u64>,
    burst: usize,
    stop: bool,
    active: bool,
    count: u64,
    rate: Option<TokenBucket>,
}

impl InfiniteSource {
    /// A source of `flows` UDP flows of `length`-byte frames.
    pub fn udp_flows(length: usize, flows: usize) -> Self {
        Self::with_traffic(length, flows, Protocols::Udp)
    }

    /// A source of `flows` flows of `length`-byte frames of the given protocols.
    pub fn with_traffic(length: usize, flows: usize, protocols: Protocols) -> Self {
        let flows = flows.max(1);
        let mut g = TrafficGen::new(TrafficConfig {
            flows,
            size: SizeMix::Fixed(length),
            protocols,
            seed: 1,
            bidirectional: false,
            spread: Default::default(),
        });
        let templates = (0..flows).map(|_| g.next_frame().to_vec()).collect();
        Self::from_templates(templates)
    }

    /// A source that repeats the given frames in turn.
    pub fn from_templates(templates: Vec<Vec<u8>>) -> Self {
        InfiniteSource {
            templates,
            next: 0,
            limit: None,
            burst: 32,
            stop: false,
            active: true,
            count: 0,
            rate: None,
        }
    }

    /// Stops after `n` packets.
    pub fn limit(mut self, n: u64) -> Self {
        self.limit = Some(n);
        self
    }

    /// Ends the run when the limit is reached.
    pub fn stop(mut self, stop: bool) -> Self {
        self.stop = stop;
        self
    }

    /// Packets per scheduling round.
    pub fn burst(mut self, n: usize) -> Self {
        self.burst = n.max(1);
        self
    }

    /// At most `pps` packets per second (a `RatedSource`).
    pub fn rate(mut self, pps: f64) -> Self {
        self.rate = Some(TokenBucket::new(pps, self.burst as f64));
        self
    }

    /// Packets sent.
    pub fn count(&self) -> u64 {
        self.count
    }
}

const HANDLERS: &[HandlerSpec] = &[
    HandlerSpec::read("count", "packets generated"),
    HandlerSpec::read_write("active", "generate packets (true/false)"),
    HandlerSpec::write("reset", "start counting toward LIMIT again"),
];

impl InfiniteSource {
    /// Makes an `InfiniteSource`, or with `rated` a `RatedSource` (which also reads `RATE`, in packets
    /// per second), from configuration arguments.
    pub fn configure_with(a: &mut Args, rated: bool) -> Result<InfiniteSource, ConfigError> {
        let rate: Option<f64> = if rated {
            Some(a.read_p_or("RATE", 10.0)?)
        } else {
            None
        };
        let data: Option<String> = a.read("DATA")?;
        let length: usize = a.read_or("LENGTH", 64)?;
        let flows: usize = a.read_at_most_or("FLOWS", 1, MAX_FLOWS)?;
        let protocols: Protocols = a.read_or("PROTO", Protocols::Udp)?;
        let limit: i64 = a.read_or("LIMIT", -1)?;
        let burst: usize = a.read_or("BURST", 32)?;
        let stop: bool = a.read_or("STOP", false)?;
        let active: bool = a.read_or("ACTIVE", true)?;
        if !(14..=9000).contains(&length) {
            return Err(a.error(format!("LENGTH {length} must be between 14 and 9000")));
        }
        let mut s = match data {
            Some(d) => InfiniteSource::from_templates(vec![
                parse_hex(&d).map_err(|e| a.error(format!("DATA: {e}")))?,
            ]),
            None => InfiniteSource::with_traffic(length, flows, protocols),
        };
        if limit >= 0 {
            s = s.limit(limit as u64);
        }
        s = s.stop(stop).burst(burst);
        if let Some(r) = rate {
            if r <= 0.0 {
                return Err(a.error("RATE must be positive"));
            }
            s = s.rate(r);
        }
        if !active {
            let _ = crate::element::Element::write_handler(&mut s, "active", "false");
        }
        Ok(s)
    }

    /// Makes a `RatedSource` (see [`configure_with`](Self::configure_with)).
    pub fn configure_rated(a: &mut Args) -> Result<InfiniteSource, ConfigError> {
        Self::configure_with(a, true)
    }
}

impl Element for InfiniteSource {
    fn class_name(&self) -> &'static str {
        if self.rate.is_some() {
            "RatedSource"
        } else {
            "InfiniteSource"
        }
    }
    fn ports(&self) -> PortSpec {
        PortSpec::SOURCE
    }
    fn is_task(&self) -> bool {
        true
    }
    fn stops_router(&self) -> bool {
        self.stop
    }
    fn run_task(&mut self, ctx: &mut TaskContext<'_>, out: &mut Outputs) -> TaskStatus {
        if !self.active {
            return TaskStatus::Idle;
        }
        let mut n = self.burst;
        if let Some(l) = self.limit {
            let left = l.saturating_sub(self.count);
            if left == 0 {
                return if self.stop {
                    TaskStatus::Done
                } else {
                    TaskStatus::Idle
                };
            }
            n = n.min(left as usize);
        }
        if let Some(b) = self.rate.as_mut() {
            n = b.take(ctx.now(), n);
            if n == 0 {
                return TaskStatus::Busy;
            }
        }
        let now = ctx.now();
        let o = out.port(0);
        for _ in 0..n {
            let mut p = Packet::from_slice(&self.templates[self.next]);
            p.anno.timestamp = now;
            o.push(p);
            self.next += 1;
            if self.next == self.templates.len() {
                self.next = 0;
            }
        }
        self.count += n as u64;
        TaskStatus::Busy
    }
    fn handlers(&self) -> &'static [HandlerSpec] {
        HANDLERS
    }
    fn read_handler(&self, name: &str) -> Option<String> {
        match name {
            "count" => Some(self.count.to_string()),
            "active" => Some(self.active.to_string()),
            _ => None,
        }
    }
    fn write_handler(&mut self, name: &str, value: &str) -> Result<(), String> {
        match name {
            "active" => {
                self.active = <bool as crate::args::FromArg>::from_arg(value)?;
                Ok(())
            }
            "reset" => {
                self.count = 0;
                Ok(())
            }
            _ => Err(format!("no write handler `{name}`")),
        }
    }
}

impl ElementClass for InfiniteSource {
    const NAME: &'static str = "InfiniteSource";
    const DOC: &'static str = "generates packets from templates (LENGTH, FLOWS, LIMIT, STOP)";
    fn configure(a: &mut Args) -> Result<Self, ConfigError> {
        InfiniteSource::configure_with(a, false)
    }
}
