//! How long a kernel log record took to reach the driver, from the timestamp the kernel wrote on it.
//!
//! A kmsg record (`PRI,SEQ,USEC,FLAGS;MESSAGE`, as `nf kmsg-forward` sends them) carries the
//! microseconds since boot at which the kernel logged it, on the kernel's printk clock. That clock is
//! neither the driver's wall clock nor exactly `CLOCK_MONOTONIC` (the two drift apart by milliseconds a
//! day as NTP slews the latter), and the record may come from another host. So the offset between the
//! sender's kernel clock and the driver's monotonic clock is estimated, per sender, as the minimum of
//! `arrival - USEC` over a sliding window (the way NTP filters its offsets): the fastest record of the
//! window defines "no delay", and each record's delay is its excess over that floor. The figure
//! understates every delay by the fastest record's (a datagram on one host: tens of microseconds) and
//! follows a drifting clock within the window (30 to 60 s: well under a millisecond at NTP's rates).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How long one floor is kept (the estimate is the minimum over the current and the previous window).
const WINDOW: Duration = Duration::from_secs(30);
/// Senders whose clocks are followed at once; records of others are not timed.
const MAX_SENDERS: usize = 256;
/// A delay above this is not believed (a rebooted sender, a replayed record): not timed.
const MAX_DELAY: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
struct Floor {
    /// Minimum of `arrival - USEC` (µs) over the current window.
    cur: i64,
    /// The same over the previous window.
    prev: i64,
    /// When the current window started.
    since: Instant,
}

/// The kernel clocks of the senders whose kmsg records a driver receives (one per sender address;
/// `None` for a local socket).
#[derive(Debug)]
pub struct KernelClocks {
    base: Instant,
    senders: HashMap<Option<IpAddr>, Floor>,
}

impl Default for KernelClocks {
    fn default() -> Self {
        KernelClocks {
            base: Instant::now(),
            senders: HashMap::new(),
        }
    }
}

impl KernelClocks {
    /// No sender seen yet.
    pub fn new() -> KernelClocks {
        KernelClocks::default()
    }

    /// The delay of a record that `sender`'s kernel stamped `usec` (microseconds since its boot) and
    /// that arrives at `now`: `None` if it cannot be told (too many senders followed, or a delay above
    /// ten seconds, e.g. a sender that rebooted, whose floor starts again).
    pub fn delay(&mut self, sender: Option<IpAddr>, usec: u64, now: Instant) -> Option<Duration> {
        let arrival = i64::try_from(now.saturating_duration_since(self.base).as_micros()).ok()?;
        let raw = arrival.checked_sub(i64::try_from(usec).ok()?)?;
        if !self.senders.contains_key(&sender) && self.senders.len() >= MAX_SENDERS {
            return None;
        }
        let f = self.senders.entry(sender).or_insert(Floor {
            cur: raw,
            prev: raw,
            since: now,
        });
        if now.saturating_duration_since(f.since) >= WINDOW {
            (f.prev, f.cur, f.since) = (f.cur, raw, now);
        }
        f.cur = f.cur.min(raw);
        let floor = f.cur.min(f.prev);
        let d = Duration::from_micros(u64::try_from(raw - floor).ok()?);
        if d > MAX_DELAY {
            // The sender's clock moved under us (a reboot resets USEC): start again from this record.
            *f = Floor {
                cur: raw,
                prev: raw,
                since: now,
            };
            return None;
        }
        Some(d)
    }

    /// Senders followed.
    pub fn senders(&self) -> usize {
        self.senders.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fastest_record_sets_the_floor_and_each_delay_is_its_excess() {
        let mut k = KernelClocks::new();
        let t0 = k.base + Duration::from_secs(1);
        // The sender's kernel clock reads 5,000 s when ours reads 1 s (an arbitrary offset).
        let usec = |at: Duration| 5_000_000_000 + at.as_micros() as u64;
        // A record logged at 0 arrives 2 ms late; one logged at 10 ms arrives 100 µs late.
        let d1 = k.delay(None, usec(Duration::ZERO), t0 + Duration::from_millis(2));
        assert_eq!(
            d1,
            Some(Duration::ZERO),
            "the first record is its own floor"
        );
        let d2 = k.delay(
            None,
            usec(Duration::from_millis(10)),
            t0 + Duration::from_micros(10_100),
        );
        assert_eq!(d2, Some(Duration::ZERO), "a faster record lowers the floor");
        let d3 = k.delay(
            None,
            usec(Duration::from_millis(20)),
            t0 + Duration::from_micros(23_100),
        );
        assert_eq!(d3, Some(Duration::from_millis(3)));
        // Another sender, another clock.
        let d4 = k.delay(
            Some("10.0.0.9".parse().unwrap()),
            7,
            t0 + Duration::from_millis(30),
        );
        assert_eq!(d4, Some(Duration::ZERO));
        assert_eq!(k.senders(), 2);
    }

    #[test]
    fn the_floor_follows_a_drifting_clock_and_a_reboot_starts_again() {
        let mut k = KernelClocks::new();
        let t0 = k.base;
        // Records every second, each 1 ms late; the sender's clock runs 100 ppm slow (each
        // record's raw offset grows: the floor must move up with it, window by window).
        let mut last = None;
        for s in 0..200u64 {
            let at = t0 + Duration::from_secs(s) + Duration::from_millis(1);
            let usec = 1_000_000 + s * 999_900;
            last = k.delay(None, usec, at);
            assert!(
                last.is_some_and(|d| d < Duration::from_millis(7)),
                "{s}: {last:?}"
            );
        }
        // Within a minute of history, the drift costs at most 60 s x 100 ppm = 6 ms.
        assert!(last.is_some());
        // A reboot: USEC falls back to small numbers, so the raw offset jumps by hours.
        let at = t0 + Duration::from_secs(201);
        assert_eq!(k.delay(None, 10_000_000_000, at), Some(Duration::ZERO));
        assert_eq!(
            k.delay(None, 5, at + Duration::from_millis(1)),
            None,
            "the rebooted clock is not believed at once"
        );
        assert_eq!(
            k.delay(None, 1_005, at + Duration::from_millis(2)),
            Some(Duration::ZERO),
            "it is followed from then on"
        );
    }
}
