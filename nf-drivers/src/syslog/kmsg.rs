//! Forwards kernel log records from `/dev/kmsg` to a syslog server over UDP, as they are written (the
//! records already in the buffer are skipped). Each record is sent in its kmsg form
//! (`PRI,SEQ,USEC,FLAGS;MESSAGE`), which the server's parser reads.

use crate::Error;
use crate::driver::Shutdown;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;

/// What a forwarder did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ForwardStats {
    /// Records read.
    pub read: u64,
    /// Records sent (matching the filter).
    pub sent: u64,
    /// Records the kernel overwrote before they were read.
    pub overrun: u64,
}

/// Reads `/dev/kmsg` from its end and sends each new record containing `grep` (all: `None`) to `to`,
/// as the kernel writes it, until `shutdown` fires. Blocking: run it on a thread of its own (or
/// `spawn_blocking`).
pub fn forward(
    to: SocketAddr,
    grep: Option<&str>,
    shutdown: &Shutdown,
) -> Result<ForwardStats, Error> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |what: &str| {
        let what = what.to_string();
        move |source| Error::Net { what, source }
    };
    // O_NONBLOCK (the same value on every Linux architecture this SDK targets): a read with nothing new
    // returns WouldBlock instead of sleeping, so the stop order is seen.
    const O_NONBLOCK: i32 = 0o4000;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open("/dev/kmsg")
        .map_err(io("open /dev/kmsg"))?;
    f.seek(SeekFrom::End(0)).map_err(io("seek /dev/kmsg"))?;
    let sock = std::net::UdpSocket::bind(if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })
        .map_err(io("bind a UDP socket"))?;
    let mut stats = ForwardStats::default();
    let mut buf = vec![0u8; 16 * 1024];
    // The kernel wakes a reader of /dev/kmsg as each record is written: waiting on readiness (50 ms at
    // most, to see the stop order) forwards a record within microseconds, where sleeping a fixed 5 ms
    // added 2.5 ms on average to every LOG line's trip.
    let wait = |f: &std::fs::File| {
        use std::os::fd::AsFd;
        crate::io::poll_unsafe::wait_readable(f.as_fd(), 50);
    };
    while !shutdown.is_set() {
        match f.read(&mut buf) {
            Ok(0) => wait(&f),
            Ok(n) => {
                stats.read += 1;
                let rec = &buf[..n];
                let wanted =
                    grep.is_none_or(|g| rec.windows(g.len().max(1)).any(|w| w == g.as_bytes()));
                if wanted {
                    // Only the first line: continuation lines (` SUBSYSTEM=...`) are dictionary data.
                    let line = rec.split(|&c| c == b'\n').next().unwrap_or(rec);
                    if sock.send_to(line, to).is_ok() {
                        stats.sent += 1;
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => wait(&f),
            // EPIPE: records were overwritten before we read them; the next read resumes.
            Err(e) if e.raw_os_error() == Some(32) => stats.overrun += 1,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io("read /dev/kmsg")(e)),
        }
    }
    Ok(stats)
}
