//! `nf bench rx`: how many frames per second a receive path takes from an interface: the SDK's
//! `FromDevice` (AF_PACKET: a `PACKET_RX_RING` read in place, or `recvmmsg` bursts) or smoltcp's
//! `RawSocket` (one frame per call).

use nf_core::{Registry, Router};
use smoltcp::phy::{Device, Medium, RawSocket, RxToken};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// `nf bench rx`: frames per second a receive path takes from an interface: FromDevice (AF_PACKET
/// bursts) or smoltcp's RawSocket (needs root; send traffic to the interface from elsewhere).
#[derive(clap::Args)]
pub struct RxArgs {
    /// The interface.
    #[arg(long)]
    dev: String,
    /// Seconds to receive.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Use smoltcp's RawSocket instead of FromDevice.
    #[arg(long)]
    smoltcp: bool,
    /// FromDevice with `recvmmsg` bursts instead of its receive ring.
    #[arg(long)]
    no_ring: bool,
}

/// Receives from the interface for the given seconds and prints frames/s.
pub fn bench_rx(o: RxArgs, reg: &Registry) -> Result<(), String> {
    let (dev, seconds, use_smoltcp) = (o.dev.as_str(), o.seconds, o.smoltcp);
    let (frames, bytes, dt) = if use_smoltcp {
        let mut sock = RawSocket::new(dev, Medium::Ethernet).map_err(|e| format!("{dev}: {e}"))?;
        let fd = sock.as_raw_fd();
        let t0 = Instant::now();
        let (mut frames, mut bytes) = (0u64, 0u64);
        while t0.elapsed().as_secs_f64() < seconds {
            let now = smoltcp::time::Instant::now();
            let mut got = false;
            while let Some((rx, _)) = sock.receive(now) {
                got = true;
                bytes += rx.consume(|b| b.len()) as u64;
                frames += 1;
            }
            if !got {
                let _ = smoltcp::phy::wait(fd, Some(smoltcp::time::Duration::from_millis(1)));
            }
        }
        (frames, bytes, t0.elapsed().as_secs_f64())
    } else {
        let text = format!(
            "src :: FromDevice({dev}, BURST 64, RING {}) -> c :: Counter -> Discard;",
            !o.no_ring
        );
        let cfg = nf_core::Config::parse("bench-rx", &text, &Default::default())
            .map_err(|e| e.to_string())?;
        let mut r =
            Router::new(cfg.build(reg).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
        let stop = r.stop_handle();
        let secs = seconds;
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs_f64(secs));
            stop.stop();
        });
        let t0 = Instant::now();
        r.run().map_err(|e| e.to_string())?;
        let dt = t0.elapsed().as_secs_f64();
        let get = |element: &str, h: &str| -> u64 {
            r.read_handler(element, h)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        println!("kernel drops: {}", get("src", "kernel_drops"));
        (get("c", "count"), get("c", "byte_count"), dt)
    };
    println!(
        "{} on {dev}: {frames} frames, {:.3} Mframes/s, {:.1} MB/s over {dt:.2} s",
        if use_smoltcp {
            "smoltcp RawSocket"
        } else if o.no_ring {
            "FromDevice (AF_PACKET recvmmsg)"
        } else {
            "FromDevice (AF_PACKET PACKET_RX_RING)"
        },
        frames as f64 / dt / 1e6,
        bytes as f64 / dt / 1e6
    );
    Ok(())
}
