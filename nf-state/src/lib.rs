//! # nf-state
//!
//! The state repository of a middlebox minion: typed, versioned state schemas (flow mappings, NAT
//! bindings, connection-tracking entries, backend load), codecs (`bincode`, JSON), a framed record format,
//! state stores (in memory and an embedded file log by default; Redis and Redis Cluster to scale) and the
//! replication of a primary's state to its minions.
//!
//! This crate is being built: see the project's issue tracker (the nf-state issue). It depends on
//! `nf-core` for flow-key types only.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub use nf_core::FlowKey;
