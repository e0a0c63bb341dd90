//! Packet I/O: capture files (`FromPcap`, `ToPcap`) and the readers and writers behind them; live
//! interfaces over AF_PACKET (`FromDevice`, `ToDevice`) and TAP interfaces over smoltcp (`FromTap`,
//! `ToTap`).

pub(crate) mod af_packet_unsafe;
pub mod fanout;
mod from_device;
mod from_pcap;
mod from_tap;
mod mmap_unsafe;
pub mod pcap;
pub(crate) mod poll_unsafe;
pub(crate) mod ring_unsafe;
mod tap;
mod to_device;
mod to_pcap;
mod to_tap;

pub use from_device::FromDevice;
pub use from_pcap::{DEFAULT_COPYBREAK, FromPcap, Passes};
pub use from_tap::FromTap;
pub use to_device::ToDevice;
pub use to_pcap::ToPcap;
pub use to_tap::ToTap;

use nf_core::Registry;

/// Registers the I/O elements.
pub fn register(r: &mut Registry) {
    r.add::<FromDevice>();
    r.add::<ToDevice>();
    r.add::<FromTap>();
    r.add::<ToTap>();
    r.add::<FromPcap>();
    r.add::<ToPcap>();
}
