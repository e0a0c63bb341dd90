//! AF_PACKET sockets through `libc`: the only place where nf-drivers calls the kernel's socket API
//! directly, hence `unsafe` (each block says why it is sound).
//!
//! A batch path: `recvmmsg` takes up to a burst of frames in one system call and `sendmmsg` sends a
//! batch in one, with `PACKET_IGNORE_OUTGOING` so that a socket does not see the frames sent on its
//! interface (by this or any other socket). `smoltcp::phy::RawSocket` was the first candidate; it is not
//! `Send` (it cannot live in an element) and allocates a buffer per frame, and it makes one system call
//! per frame: see BENCHMARKS.md for the measured difference.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `PACKET_IGNORE_OUTGOING` (Linux 4.20); older kernels fall back to filtering by packet type.
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;

/// An AF_PACKET raw socket bound to one interface, non-blocking.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
    /// Frames this host sends on the interface are not wanted.
    skip_outgoing: bool,
    /// The kernel already leaves them out (`PACKET_IGNORE_OUTGOING`).
    kernel_skips: bool,
}

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

impl PacketSocket {
    /// Opens a socket that receives every frame arriving on interface `ifname` (not the ones this host
    /// sends on it) and sends on it.
    pub fn open(ifname: &str) -> io::Result<PacketSocket> {
        Self::open_with(ifname, true)
    }

    /// Opens a socket on `ifname` that sees the frames this host sends on it too (`skip_outgoing`
    /// false): a tap on both directions of a link.
    pub fn open_with(ifname: &str, skip_outgoing: bool) -> io::Result<PacketSocket> {
        let name = CString::new(ifname)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in interface name"))?;
        // SAFETY: `name` is a valid NUL-terminated C string that outlives the call.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no interface `{ifname}`"),
            ));
        }
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: a plain system call with constant arguments; the result is checked.
        let raw = check(unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::c_int::from(proto),
            )
        })?;
        // SAFETY: `raw` is a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: the pointer and length describe `sll`, which lives across the call.
        check(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })?;
        let one: libc::c_int = 1;
        // SAFETY: the option value points to a live c_int of the length given.
        let kernel_skips = skip_outgoing
            && unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_PACKET,
                    PACKET_IGNORE_OUTGOING,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            } == 0;
        let s = PacketSocket {
            fd,
            ifindex: ifindex as i32,
            skip_outgoing,
            kernel_skips,
        };
        s.set_buffers(4 << 20);
        Ok(s)
    }

    fn set_buffers(&self, bytes: libc::c_int) {
        for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
            // SAFETY: the option value points to a live c_int of the length given. Best effort: the
            // kernel caps the size (net.core.rmem_max / wmem_max).
            unsafe {
                libc::setsockopt(
                    self.fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    (&bytes as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
    }

    /// Joins fanout group `group` in hash mode: the kernel spreads the interface's frames over the
    /// group's sockets by flow hash (one socket per shard: flow-affine dispatch without a copy).
    pub fn join_fanout(&self, group: u16) -> io::Result<()> {
        self.join_fanout_mode(group, libc::PACKET_FANOUT_HASH)
    }

    /// Joins fanout group `group` in classic-BPF mode with `prog` deciding each frame's socket (the
    /// group's sockets are numbered in the order they joined): see [`super::fanout`].
    pub fn join_fanout_cbpf(&self, group: u16, prog: &[super::fanout::Insn]) -> io::Result<()> {
        self.join_fanout_mode(group, libc::PACKET_FANOUT_CBPF)?;
        self.set_fanout_program(prog)
    }

    /// Joins a fanout group in `mode`, skipping the frames this host sends (a group has a receive hook of
    /// its own, on which the socket's `PACKET_IGNORE_OUTGOING` has no effect: without the group's flag
    /// every shard would see what a `ToDevice` sends on the interface). A kernel without the flag (before
    /// 4.20) is joined without it.
    fn join_fanout_mode(&self, group: u16, mode: libc::c_uint) -> io::Result<()> {
        let join = |flags: libc::c_uint| {
            let arg: libc::c_int = libc::c_int::from(group) | ((mode | flags) as libc::c_int) << 16;
            // SAFETY: the option value points to a live c_int of the length given.
            check(unsafe {
                libc::setsockopt(
                    self.fd.as_raw_fd(),
                    libc::SOL_PACKET,
                    libc::PACKET_FANOUT,
                    (&arg as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            })
        };
        match join(libc::PACKET_FANOUT_FLAG_IGNORE_OUTGOING) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => join(0).map(|_| ()),
            r => r.map(|_| ()),
        }
    }

    /// Replaces the fanout group's program (every socket of the group follows it at once). When this
    /// returns, every frame the old program steered is in its socket's queue (the kernel waits for its
    /// readers to finish before it frees the old program).
    pub fn set_fanout_program(&self, prog: &[super::fanout::Insn]) -> io::Result<()> {
        let mut filters: Vec<libc::sock_filter> = prog
            .iter()
            .map(|i| libc::sock_filter {
                code: i.code,
                jt: i.jt,
                jf: i.jf,
                k: i.k,
            })
            .collect();
        let len = u16::try_from(filters.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "program too long"))?;
        let fprog = libc::sock_fprog {
            len,
            filter: filters.as_mut_ptr(),
        };
        // SAFETY: the option value points to a live sock_fprog of the length given, whose filter points
        // to `len` live instructions; the kernel copies them before returning.
        check(unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_FANOUT_DATA,
                (&fprog as *const libc::sock_fprog).cast(),
                std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
            )
        })?;
        Ok(())
    }

    /// The interface index.
    pub fn ifindex(&self) -> i32 {
        self.ifindex
    }

    /// The socket's descriptor (for its rings).
    pub(crate) fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }

    /// Whether the kernel leaves out the frames this host sends (a ring then holds only received ones).
    pub(crate) fn kernel_skips_outgoing(&self) -> bool {
        self.kernel_skips || !self.skip_outgoing
    }

    /// Receives up to `bufs.len()` frames, each into one buffer; `lens[i]` is the frame's full length (it
    /// may exceed the buffer: the frame was truncated). Returns how many (0: nothing waiting).
    pub fn recv_batch(&self, bufs: &mut [&mut [u8]], lens: &mut [usize]) -> io::Result<usize> {
        const MAX: usize = 64;
        let n = bufs.len().min(lens.len()).min(MAX);
        if n == 0 {
            return Ok(0);
        }
        // SAFETY (for the zeroed arrays): iovec, mmsghdr and sockaddr_ll are plain old data.
        let mut iov: [libc::iovec; MAX] = unsafe { std::mem::zeroed() };
        let mut addrs: [libc::sockaddr_ll; MAX] = unsafe { std::mem::zeroed() };
        let mut msgs: [libc::mmsghdr; MAX] = unsafe { std::mem::zeroed() };
        for i in 0..n {
            iov[i].iov_base = bufs[i].as_mut_ptr().cast();
            iov[i].iov_len = bufs[i].len();
            msgs[i].msg_hdr.msg_iov = &mut iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_ll).cast();
            msgs[i].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
        }
        // SAFETY: `msgs[..n]` point at `iov[..n]` and `addrs[..n]`, which point at the caller's
        // buffers; all outlive the call, and the kernel writes at most `iov_len` bytes into each.
        // MSG_TRUNC makes `msg_len` the frame's real length.
        let r = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                msgs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        let got = r as usize;
        // Without PACKET_IGNORE_OUTGOING, drop the frames this host sent on the interface.
        let mut kept = 0;
        for i in 0..got {
            if self.skip_outgoing
                && !self.kernel_skips
                && addrs[i].sll_pkttype == libc::PACKET_OUTGOING
            {
                continue;
            }
            lens[kept] = msgs[i].msg_len as usize;
            if kept != i {
                bufs.swap(kept, i);
            }
            kept += 1;
        }
        Ok(kept)
    }

    /// Sends frames in one system call (several if the kernel takes fewer). Returns how many were sent;
    /// the rest found the socket's buffer full.
    pub fn send_batch(&self, frames: &[&[u8]]) -> io::Result<usize> {
        const MAX: usize = 64;
        let mut sent = 0;
        while sent < frames.len() {
            let chunk = &frames[sent..frames.len().min(sent + MAX)];
            // SAFETY: plain old data.
            let mut iov: [libc::iovec; MAX] = unsafe { std::mem::zeroed() };
            let mut msgs: [libc::mmsghdr; MAX] = unsafe { std::mem::zeroed() };
            for (i, f) in chunk.iter().enumerate() {
                // The kernel only reads through iov_base for a send.
                iov[i].iov_base = f.as_ptr() as *mut libc::c_void;
                iov[i].iov_len = f.len();
                msgs[i].msg_hdr.msg_iov = &mut iov[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: `msgs[..len]` point at `iov[..len]`, which point at the caller's frames; all
            // outlive the call; the socket is bound, so no destination address is needed.
            let r = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    msgs.as_mut_ptr(),
                    chunk.len() as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(sent),
                    _ if e.raw_os_error() == Some(libc::ENOBUFS) => Ok(sent),
                    _ => Err(e),
                };
            }
            if r == 0 {
                break;
            }
            sent += r as usize;
        }
        Ok(sent)
    }

    /// Frames the kernel dropped for this socket since the last call (its receive queue or ring full),
    /// from `PACKET_STATISTICS` (which the kernel resets on every read).
    pub(crate) fn take_drops(&self) -> u64 {
        // The larger of the two layouts (TPACKET_V3's adds a freeze count after packets and drops).
        let mut st = [0u32; 3];
        let mut len = std::mem::size_of_val(&st) as libc::socklen_t;
        // SAFETY: the kernel writes at most `len` bytes into `st`, which is live and that large, and
        // stores the length it wrote into `len`.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                st.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if r < 0 { 0 } else { u64::from(st[1]) }
    }

    /// Waits until a frame can be read, at most `timeout_ms` milliseconds.
    pub fn wait_readable(&self, timeout_ms: i32) {
        use std::os::fd::AsFd;
        super::poll_unsafe::wait_readable(self.fd.as_fd(), timeout_ms);
    }
}
