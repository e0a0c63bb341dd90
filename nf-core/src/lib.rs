//! # nf-core
//!
//! The foundation of the NF SDK: packets, flow keys, Click-style elements, graphs, the configuration
//! language and the runtime, and a library of standard elements.
//!
//! - [`Packet`]: a pooled `bytes::BytesMut` frame with headroom and annotations; header access through
//!   `etherparse`; in-place rewrites with incremental checksums ([`checksum`]).
//! - [`FlowKey`]: IPv4/IPv6 five-tuples, canonical form, the symmetric Toeplitz (RSS) hash ([`hash::toeplitz`]) and the
//!   keyed table hash ([`hash`]).
//! - [`Element`]: push and pull over [`Batch`]es, tasks, handlers. [`Graph`] builds graphs in code;
//!   [`Config`] parses Click's language; [`Registry`] names the classes; [`Router`] and [`ShardedRouter`] run.
//! - [`state`]: the `StateSink` seam through which state leaves a stateful element, and the bounded
//!   [`StateTable`](state::StateTable) it lives in.
//! - [`indirection`]: the table from buckets of the flow hash to shards, bucket moves that carry their
//!   flows' state ([`Migrate`](indirection::Migrate)), the controller that rebalances shards under load
//!   and adds or removes them.
//!
//! ```
//! use nf_core::{Config, Registry, Router};
//! let text = "InfiniteSource(LIMIT 1000, FLOWS 10, PROTO mixed, STOP true)
//!               -> Strip(14) -> CheckIPHeader -> c :: IPClassifier(tcp, udp, -);
//!             c[0] -> tcp :: Counter -> Discard;
//!             c[1] -> udp :: Counter -> Discard;
//!             c[2] -> Discard;";
//! let cfg = Config::parse("example", text, &Default::default()).unwrap();
//! let mut router = Router::new(cfg.build(&Registry::standard()).unwrap()).unwrap();
//! router.run().unwrap();
//! assert_eq!(router.read_handler("tcp", "count").unwrap(), "500");
//! ```
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod args;
pub mod batch;
pub mod checksum;
pub mod config;
pub mod control;
#[cfg(feature = "testing")]
pub mod counting_alloc_unsafe;
pub mod element;
pub mod elements;
pub mod error;
pub mod flow;
pub mod graph;
pub mod hash;
pub mod huge_pages_unsafe;
pub mod indirection;
pub mod lpm;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod packet;
pub mod pool;
pub mod prefetch_unsafe;
pub mod region_unsafe;
pub mod registry;
pub mod router;
pub mod state;
pub mod table;
#[cfg(feature = "testing")]
pub mod testing;
pub mod traffic;
pub mod wire;

pub use args::Args;
pub use batch::{BATCH_SIZE, Batch, Outputs};
pub use config::Config;
pub use element::{
    Cohort, Element, ElementClass, HandlerSpec, InitContext, PortCount, PortSpec, Processing,
    TaskContext, TaskStatus,
};
pub use error::{ConfigError, ConfigErrors, Error};
pub use flow::{Endpoint, FlowKey};
pub use graph::{ElementId, Graph};
pub use packet::{
    Annotations, HeaderInfo, IpVersion, Link, Malformed, Packet, PacketError, Timestamp,
};
pub use registry::Registry;
pub use router::{HandlerValue, Router, ShardedRouter, StopHandle, SwapReport};

/// Registers nf-core's element classes (the same as [`Registry::standard`] starts with).
pub fn register(r: &mut Registry) {
    elements::register(r);
}
