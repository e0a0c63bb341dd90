//! # nf-state
//!
//! The state repository of a middlebox minion: typed, versioned state [`schema`]s (flow mappings, NAT
//! bindings, connection-tracking entries, backend load), [`codec`]s (`bincode`, JSON), a framed
//! [`record`] format (length + CRC-32C), [`store`]s (`mem:`, `file:PATH`, `redis://`, `redis+cluster://`) behind
//! one async trait, and the [`replicate`] pair that carries a primary's state to its minions: a `Replicator`
//! that coalesces and batches deltas, and a `Follower` that loads a snapshot, applies the ordered stream,
//! detects gaps and resynchronises.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod codec;
pub mod error;
pub mod record;
pub mod replicate;
pub mod schema;
pub mod schemas;
pub mod store;

pub use codec::Codec;
pub use error::{Error, RecordError};
pub use record::{Op, Record};
pub use schema::{Schema, json_line};
pub use store::{StateStore, StateStoreExt, StoreUrl, open};
