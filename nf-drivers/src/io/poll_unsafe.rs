//! Waiting for a descriptor to become readable with `poll(2)` through `libc`, hence `unsafe` (the
//! one block says why it is sound): AF_PACKET sockets and `/dev/kmsg` are read without blocking, and
//! wait here between bursts instead of sleeping a fixed period.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd};

/// Waits until `fd` can be read, at most `timeout_ms` milliseconds (negative: no limit). True if it
/// can (or the wait failed: the caller's next read tells why), false on the timeout.
pub(crate) fn wait_readable(fd: BorrowedFd<'_>, timeout_ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `p` is one valid, initialised pollfd on this stack frame that lives across the call
    // (count 1), and `fd` is borrowed, so the descriptor stays open for the call.
    let r = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    r != 0
}
