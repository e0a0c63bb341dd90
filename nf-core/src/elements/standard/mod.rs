//! Standard elements: counting, dropping, copying, switching, queueing, sources, printing (Click's
//! `standard` package).

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
mod rated_unqueue;
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
pub use queue::{MAX_QUEUE, Queue};
pub use rated_unqueue::{RatedUnqueue, TokenBucket};
pub use replay::{MAX_REPLAY_PACKETS, Replay};
pub use round_robin_switch::RoundRobinSwitch;
pub use set_timestamp::SetTimestamp;
pub use strip::Strip;
pub use tee::Tee;
pub use unqueue::Unqueue;
pub use unstrip::Unstrip;

use crate::registry::Registry;

/// The most flows a generated source simulates (`FLOWS`).
pub const MAX_FLOWS: usize = 1 << 24;

/// Registers the standard elements.
pub fn register(r: &mut Registry) {
    r.add::<Discard>();
    r.add::<Idle>();
    r.add::<Counter>();
    r.add::<Tee>();
    r.add::<Paint>();
    r.add::<PaintSwitch>();
    r.add::<Classifier>();
    r.add::<Strip>();
    r.add::<Unstrip>();
    r.add::<HashSwitch>();
    r.add::<RoundRobinSwitch>();
    r.add::<Queue>();
    r.add::<Unqueue>();
    r.add::<RatedUnqueue>();
    r.add::<InfiniteSource>();
    r.register(
        "RatedSource",
        "generates packets from templates at RATE per second",
        InfiniteSource::configure_rated,
    );
    r.add::<Replay>();
    r.add::<Print>();
    r.add::<SetTimestamp>();
}
