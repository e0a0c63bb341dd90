//! # nf-drivers
//!
//! The driver layer of the NF SDK: it gets state out of a middlebox and packets in and out of a graph.
//!
//! - [`io`]: packet I/O elements for the configuration language: `FromPcap` / `ToPcap` (classic pcap in
//!   microseconds and nanoseconds, and pcapng, read through a memory map into pooled buffers),
//!   `FromDevice` / `ToDevice` (AF_PACKET with `recvmmsg` / `sendmmsg` bursts and per-shard fanout) and
//!   `FromTap` / `ToTap` (a TAP interface through smoltcp's `phy`).
//! - [`driver`]: the [`StateDriver`](driver::StateDriver) trait every driver implements (run until shut
//!   down, emit records to a store, count seen / parsed / rejected / emitted / dropped, flush on stop).
//! - [`adapter`]: the conversions between the elements' table entries and the schemas' records (the one
//!   place where elements meet schemas).
//! - [`whitebox`]: the white-box driver, for boxes built with this SDK: any stateful element's table
//!   reports through its `StateSink` to a replicator.
//! - [`syslog`]: the syslog driver, for black boxes that log: a server (UDP, TCP with RFC 6587 framing,
//!   Unix datagrams), RFC 3164 / RFC 5424 / kmsg parsers, and extractors (`netfilter-log`,
//!   `conntrack-events`, or your own) that turn messages into records.
//! - [`observe`]: the traffic-observation driver, for black boxes that neither log nor talk: flows seen
//!   on both sides of the box are paired by the fields it does not rewrite, giving `flow-mapping` and
//!   `nat-binding` records with a confidence.
//!
//! [`register`] adds this crate's element classes to a [`Registry`](nf_core::Registry).
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod adapter;
pub mod driver;
pub mod error;
#[cfg(feature = "testing")]
pub mod fuzzing;
pub mod io;
pub mod observe;
pub mod syslog;
pub mod whitebox;

pub use error::Error;

/// Registers this crate's element classes (packet I/O: `FromPcap`, `ToPcap`, `FromDevice`, `ToDevice`,
/// `FromTap`, `ToTap`; and SIMPLE's `FlowCorrelator`).
pub fn register(r: &mut nf_core::Registry) {
    io::register(r);
    r.add::<observe::flow_correlator::FlowCorrelator>();
}

/// A registry with nf-core's standard elements and this crate's.
pub fn registry() -> nf_core::Registry {
    let mut r = nf_core::Registry::standard();
    register(&mut r);
    r
}
