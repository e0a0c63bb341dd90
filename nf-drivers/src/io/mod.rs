//! Packet I/O: capture files (`FromPcap`, `ToPcap`) and the readers and writers behind them; live
//! interfaces over AF_PACKET (`FromDevice`, `ToDevice`) and TAP interfaces over smoltcp (`FromTap`,
//! `ToTap`).

pub(crate) mod af_packet_unsafe;
mod device;
mod from_pcap;
mod mmap_unsafe;
pub mod pcap;
mod tap;
mod to_pcap;

pub use device::{FromDevice, ToDevice};
pub use from_pcap::{FromPcap, Passes};
pub use tap::{FromTap, ToTap};
pub use to_pcap::ToPcap;

use nf_core::Registry;

/// Registers the I/O elements.
pub fn register(r: &mut Registry) {
    r.register(
        "FromDevice",
        "receives an interface's frames over AF_PACKET (DEVNAME, BURST)",
        |a| {
            let dev: String = a.read_mp("DEVNAME")?;
            let burst: usize = a.read_or("BURST", 32)?;
            Ok(FromDevice::new(dev).burst(burst))
        },
    );
    r.register(
        "ToDevice",
        "sends frames out of an interface over AF_PACKET (DEVNAME, BURST)",
        |a| {
            let dev: String = a.read_mp("DEVNAME")?;
            let burst: usize = a.read_or("BURST", 32)?;
            Ok(ToDevice::new(dev).burst(burst))
        },
    );
    r.register(
        "FromTap",
        "receives the frames the host writes to a TAP interface (DEVNAME, BURST)",
        |a| {
            let dev: String = a.read_mp("DEVNAME")?;
            let burst: usize = a.read_or("BURST", 32)?;
            Ok(FromTap::new(dev).burst(burst))
        },
    );
    r.register(
        "ToTap",
        "writes frames to a TAP interface for the host (DEVNAME)",
        |a| {
            let dev: String = a.read_mp("DEVNAME")?;
            Ok(ToTap::new(dev))
        },
    );
    r.register(
        "FromPcap",
        "reads packets from a pcap/pcapng file (FILE, STOP, LOOP, BURST, TIMING)",
        |a| {
            let file: String = a.read_mp("FILE")?;
            let stop: bool = a.read_or("STOP", true)?;
            let lp: String = a.read_or("LOOP", "1".to_string())?;
            let passes = match lp.as_str() {
                "true" | "forever" => Passes::Forever,
                "false" => Passes::Count(1),
                n => match n.parse::<u64>() {
                    Ok(0) => Passes::Forever,
                    Ok(k) => Passes::Count(k),
                    Err(_) => {
                        return Err(a.error(format!(
                            "LOOP must be true, false or a number of passes, not `{n}`"
                        )));
                    }
                },
            };
            let burst: usize = a.read_or("BURST", 32)?;
            let timing: bool = a.read_or("TIMING", false)?;
            Ok(FromPcap::new(file)
                .stop(stop)
                .passes(passes)
                .burst(burst)
                .timing(timing))
        },
    );
    r.register(
        "ToPcap",
        "writes packets to a pcap file (FILE, SNAPLEN, NANO, LINK)",
        |a| {
            let file: String = a.read_mp("FILE")?;
            let snaplen: u32 = a.read_or("SNAPLEN", 65535)?;
            let nano: bool = a.read_or("NANO", false)?;
            let link: String = a.read_or("LINK", "ether".to_string())?;
            let raw = match link.as_str() {
                "ether" | "ethernet" => false,
                "ip" | "raw" => true,
                o => return Err(a.error(format!("LINK must be ether or ip, not `{o}`"))),
            };
            let _burst: usize = a.read_or("BURST", 32)?;
            Ok(ToPcap::new(file).snaplen(snaplen).nanos(nano).raw_ip(raw))
        },
    );
}
