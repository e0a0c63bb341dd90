//! Standard elements: counting, dropping, copying, switching, queueing, sources, printing.

mod classifier;
mod counter;
mod discard;
mod hash_switch;
mod idle;
mod infinite_source;
mod paint;
mod paint_switch;
mod print;
mod queue;
mod replay;
mod round_robin_switch;
mod set_timestamp;
mod strip;
mod tee;
mod unqueue;
mod unstrip;

pub use classifier::Classifier;
pub use counter::Counter;
pub use discard::Discard;
pub use hash_switch::HashSwitch;
pub use idle::Idle;
pub use infinite_source::InfiniteSource;
pub use paint::Paint;
pub use paint_switch::PaintSwitch;
pub use print::Print;
pub use queue::Queue;
pub use replay::Replay;
pub use round_robin_switch::RoundRobinSwitch;
pub use set_timestamp::SetTimestamp;
pub use strip::Strip;
pub use tee::Tee;
pub use unqueue::{RatedUnqueue, TokenBucket, Unqueue};
pub use unstrip::Unstrip;

use crate::args::{Args, parse_hex};
use crate::error::ConfigError;
use crate::registry::Registry;
use crate::traffic::{Protocols, SizeMix, TrafficConfig};

/// The most frames a `Replay` pre-generates (`PACKETS`).
pub const MAX_REPLAY_PACKETS: usize = 1 << 24;
/// The most flows a generated source simulates (`FLOWS`).
pub const MAX_FLOWS: usize = 1 << 24;
/// The most packets a `Queue` holds (`CAPACITY`; preallocated).
pub const MAX_QUEUE: usize = 1 << 22;

fn source(a: &mut Args, rated: bool) -> Result<InfiniteSource, ConfigError> {
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

/// Registers the standard elements.
pub fn register(r: &mut Registry) {
    r.register("Discard", "drops every packet", |a| {
        let b: usize = a.read_or("BURST", 32)?;
        let mut d = Discard::new();
        if b != 32 {
            d = Discard::pulling(b);
        }
        Ok(d)
    });
    r.register(
        "Idle",
        "never produces packets; drops what it receives (keeps ports connected)",
        |_| Ok(Idle),
    );
    r.register(
        "Counter",
        "counts packets and bytes, and their rate",
        |_| Ok(Counter::new()),
    );
    r.register("Tee", "copies each packet to every output", |a| {
        let n: Option<usize> = a.read_p("N")?;
        if n.is_some_and(|n| n > crate::element::MAX_PORTS) {
            return Err(a.error(format!(
                "N is more than {} outputs",
                crate::element::MAX_PORTS
            )));
        }
        Ok(Tee::new(n))
    });
    r.register("Paint", "sets the paint annotation", |a| {
        Ok(Paint::new(a.read_mp("COLOR")?))
    });
    r.register(
        "PaintSwitch",
        "chooses the output by the paint annotation",
        |_| Ok(PaintSwitch::new()),
    );
    r.register(
        "Classifier",
        "chooses the output by byte patterns (12/0800, -)",
        |a| {
            let raw = a.rest_raw();
            Classifier::from_raw(a, raw)
        },
    );
    r.register("Strip", "removes N bytes from the front", |a| {
        Ok(Strip::new(a.read_mp("N")?))
    });
    r.register("Unstrip", "puts N bytes back at the front", |a| {
        Ok(Unstrip::new(a.read_mp("N")?))
    });
    r.register(
        "HashSwitch",
        "chooses the output by a hash of bytes (OFFSET, LENGTH)",
        |a| Ok(HashSwitch::new(a.read_mp("OFFSET")?, a.read_mp("LENGTH")?)),
    );
    r.register(
        "RoundRobinSwitch",
        "sends packets to its outputs in turn",
        |_| Ok(RoundRobinSwitch::new()),
    );
    r.register("Queue", "a bounded FIFO between push and pull", |a| {
        let cap: usize = a.read_p_at_most_or("CAPACITY", 1000, MAX_QUEUE)?;
        a.reserve(
            "CAPACITY",
            (cap as u64).saturating_mul(std::mem::size_of::<crate::packet::Packet>() as u64),
        )?;
        Ok(Queue::new(cap))
    });
    r.register("Unqueue", "pulls packets and pushes them on", |a| {
        Ok(Unqueue::new(a.read_p_or("BURST", 32)?))
    });
    r.register(
        "RatedUnqueue",
        "pulls at most RATE packets per second and pushes them on",
        |a| {
            let rate: f64 = a.read_mp("RATE")?;
            if rate <= 0.0 {
                return Err(a.error("RATE must be positive"));
            }
            Ok(RatedUnqueue::new(rate, a.read_or("BURST", 32)?))
        },
    );
    r.register(
        "InfiniteSource",
        "generates packets from templates (LENGTH, FLOWS, LIMIT, STOP)",
        |a| source(a, false),
    );
    r.register(
        "RatedSource",
        "generates packets from templates at RATE per second",
        |a| source(a, true),
    );
    r.register(
        "Replay",
        "replays generated frames held in memory (PACKETS, FLOWS, LENGTH, PROTO, REPLIES, LIMIT)",
        |a| {
            let packets: usize = a.read_at_most_or("PACKETS", 100_000, MAX_REPLAY_PACKETS)?;
            let flows: usize = a.read_at_most_or("FLOWS", 10_000, MAX_FLOWS)?;
            let length: String = a.read_or("LENGTH", "64".to_string())?;
            let size = match length.as_str() {
                "imix" => SizeMix::Imix,
                n => match n.parse::<usize>() {
                    Ok(v) if (54..=9000).contains(&v) => SizeMix::Fixed(v),
                    _ => return Err(a.error(format!("LENGTH must be imix or 54..9000, not `{n}`"))),
                },
            };
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
        },
    );
    r.register("Print", "prints packets to standard error", |a| {
        let label: String = a.read_p_or("LABEL", String::new())?;
        let max: usize = a.read_or("MAXLENGTH", 24)?;
        let ts: bool = a.read_or("TIMESTAMP", false)?;
        Ok(Print::new(label, max, ts))
    });
    r.register(
        "SetTimestamp",
        "sets the timestamp annotation to now",
        |_| Ok(SetTimestamp),
    );
}
