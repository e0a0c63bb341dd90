//! Ananta's SNAT port allocation (SIGCOMM'13): a backend's outbound connections leave with the VIP as
//! their source; the ports come from the manager in contiguous ranges (8 by default), one request per
//! backend outstanding at a time; a port is reused for connections to distinct remote endpoints (the
//! five-tuple stays unique); a range that stays unused for a while goes back to the manager.

use crate::packet::Timestamp;
use crate::state::{ChangeKind, RemoveReason, StateChange, StateSink};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};

/// A piece of SNAT state, as reported to a [`StateSink`] (and installed on a minion with
/// [`SnatAllocator::install`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SnatKey {
    /// The range of ports starting at `start` (granted to the backend in the value).
    Range {
        /// First port of the range.
        start: u16,
    },
    /// A connection of `backend` to `remote` leaving from VIP port `port`.
    Binding {
        /// The backend.
        backend: IpAddr,
        /// The VIP port.
        port: u16,
        /// The remote endpoint.
        remote: SocketAddr,
    },
}

/// The value of a [`SnatKey`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SnatValue {
    /// The backend holding a range.
    Range {
        /// The backend.
        backend: IpAddr,
    },
    /// A binding's VIP (the source address of the connection).
    Binding {
        /// The VIP.
        vip: IpAddr,
    },
}

/// The answer to an allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Snat {
    /// Use this VIP port.
    Port(u16),
    /// The backend's ranges are full for this remote: a new range was requested from the manager;
    /// the connection waits (Ananta's Host Agent holds the SYN) until [`SnatAllocator::grant`].
    Requested,
    /// A request of this backend is already outstanding: wait for it.
    Pending,
    /// The manager has no free range left.
    Exhausted,
}

#[derive(Debug, Clone)]
struct Range {
    start: u16,
    /// Remote endpoints using each port of the range.
    users: Vec<HashSet<SocketAddr>>,
    last_used: Timestamp,
}

#[derive(Debug, Default, Clone)]
struct Backend {
    ranges: Vec<Range>,
    pending: bool,
}

/// Counters of a [`SnatAllocator`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SnatStats {
    /// Ports handed out.
    pub allocated: u64,
    /// Of which on a port already used for another remote endpoint.
    pub reused: u64,
    /// Range requests made to the manager.
    pub requests: u64,
    /// Ranges granted.
    pub granted: u64,
    /// Ranges returned after idling.
    pub returned: u64,
    /// Allocations refused for want of ranges.
    pub exhausted: u64,
}

/// SNAT ports of one VIP, for every backend behind it. Range grants and returns, and every binding made
/// and released, are reported to the sink if one is set ([`SnatAllocator::set_sink`]), so a minion can
/// mirror the allocator ([`SnatAllocator::install`]).
pub struct SnatAllocator {
    vip: IpAddr,
    range: u16,
    idle_ns: u64,
    free: VecDeque<u16>,
    backends: HashMap<IpAddr, Backend>,
    queue: VecDeque<IpAddr>,
    stats: SnatStats,
    sink: Option<Box<dyn StateSink<SnatKey, SnatValue>>>,
}

impl std::fmt::Debug for SnatAllocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnatAllocator")
            .field("vip", &self.vip)
            .field("free", &self.free.len())
            .field("backends", &self.backends.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl SnatAllocator {
    /// Ports `first..=last` of `vip`, handed out `range` at a time; a range unused for `idle` goes back.
    pub fn new(vip: IpAddr, first: u16, last: u16, range: u16, idle: std::time::Duration) -> Self {
        let range = range.max(1);
        let mut free = VecDeque::new();
        let mut p = u32::from(first);
        while p + u32::from(range) - 1 <= u32::from(last) {
            free.push_back(p as u16);
            p += u32::from(range);
        }
        SnatAllocator {
            vip,
            range,
            idle_ns: idle.as_nanos() as u64,
            free,
            backends: HashMap::new(),
            queue: VecDeque::new(),
            stats: SnatStats::default(),
            sink: None,
        }
    }

    /// Reports every change to `sink` (replacing any other).
    pub fn set_sink(&mut self, sink: Box<dyn StateSink<SnatKey, SnatValue>>) {
        self.sink = Some(sink);
    }

    fn report(&mut self, kind: ChangeKind, key: SnatKey, value: SnatValue, now: Timestamp) {
        if let Some(s) = self.sink.as_mut() {
            s.on_change(&StateChange {
                kind,
                key: &key,
                value: &value,
                time: now,
            });
        }
    }

    /// Installs a piece of state from elsewhere (a minion mirroring its primary's allocator): a range
    /// granted to a backend, or a binding. `None` removes it. Not reported to the sink.
    pub fn install(&mut self, key: SnatKey, value: Option<SnatValue>, now: Timestamp) {
        let range = self.range;
        match (key, value) {
            (SnatKey::Range { start }, Some(SnatValue::Range { backend })) => {
                self.free.retain(|&f| f != start);
                for b in self.backends.values_mut() {
                    b.ranges.retain(|r| r.start != start);
                }
                self.backends
                    .entry(backend)
                    .or_default()
                    .ranges
                    .push(Range {
                        start,
                        users: vec![HashSet::new(); usize::from(range)],
                        last_used: now,
                    });
            }
            (SnatKey::Range { start }, None) => {
                let mut held = false;
                for b in self.backends.values_mut() {
                    let before = b.ranges.len();
                    b.ranges.retain(|r| r.start != start);
                    held |= b.ranges.len() != before;
                }
                if held && !self.free.contains(&start) {
                    self.free.push_back(start);
                }
            }
            (
                SnatKey::Binding {
                    backend,
                    port,
                    remote,
                },
                v,
            ) => {
                if let Some(r) = self.backends.get_mut(&backend).and_then(|b| {
                    b.ranges
                        .iter_mut()
                        .find(|r| port >= r.start && port - r.start < range)
                }) {
                    let users = &mut r.users[usize::from(port - r.start)];
                    if v.is_some() {
                        users.insert(remote);
                    } else {
                        users.remove(&remote);
                    }
                    r.last_used = now;
                }
            }
            _ => {}
        }
    }

    /// Every piece of state now (ranges, then bindings), as a primary would report it: a minion's first
    /// copy.
    pub fn for_each(&self, mut f: impl FnMut(SnatKey, SnatValue)) {
        for (backend, b) in &self.backends {
            for r in &b.ranges {
                f(
                    SnatKey::Range { start: r.start },
                    SnatValue::Range { backend: *backend },
                );
            }
        }
        for (backend, b) in &self.backends {
            for r in &b.ranges {
                for (k, users) in r.users.iter().enumerate() {
                    for remote in users {
                        f(
                            SnatKey::Binding {
                                backend: *backend,
                                port: r.start + k as u16,
                                remote: *remote,
                            },
                            SnatValue::Binding { vip: self.vip },
                        );
                    }
                }
            }
        }
    }

    /// The VIP.
    pub fn vip(&self) -> IpAddr {
        self.vip
    }

    /// Counters.
    pub fn stats(&self) -> SnatStats {
        self.stats
    }

    /// Ranges held by `backend`.
    pub fn ranges_of(&self, backend: IpAddr) -> usize {
        self.backends.get(&backend).map_or(0, |b| b.ranges.len())
    }

    /// Free ranges at the manager.
    pub fn free_ranges(&self) -> usize {
        self.free.len()
    }

    /// A source port of the VIP for `backend`'s new connection to `remote`: a port of the backend's
    /// ranges not already used towards `remote` (preferring one in use for other remotes, so ranges
    /// fill before new ones are asked for), else a range request (one outstanding per backend).
    pub fn allocate(&mut self, backend: IpAddr, remote: SocketAddr, now: Timestamp) -> Snat {
        let b = self.backends.entry(backend).or_default();
        let mut fresh = None;
        for r in b.ranges.iter_mut() {
            for (k, users) in r.users.iter_mut().enumerate() {
                if users.contains(&remote) {
                    continue;
                }
                if !users.is_empty() {
                    users.insert(remote);
                    r.last_used = now;
                    self.stats.allocated += 1;
                    self.stats.reused += 1;
                    let port = r.start + k as u16;
                    self.bound(backend, port, remote, now);
                    return Snat::Port(port);
                }
                if fresh.is_none() {
                    fresh = Some((r.start, k));
                }
            }
        }
        if let Some((start, k)) = fresh
            && let Some(r) = b.ranges.iter_mut().find(|r| r.start == start)
        {
            r.users[k].insert(remote);
            r.last_used = now;
            self.stats.allocated += 1;
            let port = start + k as u16;
            self.bound(backend, port, remote, now);
            return Snat::Port(port);
        }
        if b.pending {
            return Snat::Pending;
        }
        if self.free.is_empty() {
            self.stats.exhausted += 1;
            return Snat::Exhausted;
        }
        b.pending = true;
        self.queue.push_back(backend);
        self.stats.requests += 1;
        Snat::Requested
    }

    fn bound(&mut self, backend: IpAddr, port: u16, remote: SocketAddr, now: Timestamp) {
        self.report_binding(ChangeKind::Insert, backend, port, remote, now);
    }

    /// Reports a (backend, port, remote) binding of the VIP to the sink.
    fn report_binding(
        &mut self,
        kind: ChangeKind,
        backend: IpAddr,
        port: u16,
        remote: SocketAddr,
        now: Timestamp,
    ) {
        let vip = self.vip;
        self.report(
            kind,
            SnatKey::Binding {
                backend,
                port,
                remote,
            },
            SnatValue::Binding { vip },
            now,
        );
    }

    /// The manager answers the outstanding requests, in order (one range each). Returns how many.
    pub fn grant(&mut self, now: Timestamp) -> usize {
        let mut n = 0;
        while let Some(backend) = self.queue.pop_front() {
            let Some(start) = self.free.pop_front() else {
                if let Some(b) = self.backends.get_mut(&backend) {
                    b.pending = false;
                }
                continue;
            };
            let b = self.backends.entry(backend).or_default();
            b.pending = false;
            b.ranges.push(Range {
                start,
                users: vec![HashSet::new(); usize::from(self.range)],
                last_used: now,
            });
            self.stats.granted += 1;
            n += 1;
            self.report(
                ChangeKind::Insert,
                SnatKey::Range { start },
                SnatValue::Range { backend },
                now,
            );
        }
        n
    }

    /// A connection ended: its port is free again towards `remote`.
    pub fn release(&mut self, backend: IpAddr, port: u16, remote: SocketAddr, now: Timestamp) {
        let range = self.range;
        if let Some(b) = self.backends.get_mut(&backend)
            && let Some(r) = b
                .ranges
                .iter_mut()
                .find(|r| port >= r.start && port - r.start < range)
        {
            let was = r.users[usize::from(port - r.start)].remove(&remote);
            r.last_used = now;
            if was {
                let closed = ChangeKind::Remove(RemoveReason::Closed);
                self.report_binding(closed, backend, port, remote, now);
            }
        }
    }

    /// Ranges with no connection, unused for the idle time, go back to the manager. Returns how many.
    pub fn expire(&mut self, now: Timestamp) -> usize {
        let mut back = Vec::new();
        for (backend, b) in self.backends.iter_mut() {
            b.ranges.retain(|r| {
                let idle =
                    r.users.iter().all(HashSet::is_empty) && now.since(r.last_used) >= self.idle_ns;
                if idle {
                    back.push((r.start, *backend));
                }
                !idle
            });
        }
        let n = back.len();
        self.stats.returned += n as u64;
        for (start, backend) in back {
            self.free.push_back(start);
            self.report(
                ChangeKind::Remove(RemoveReason::Expired),
                SnatKey::Range { start },
                SnatValue::Range { backend },
                now,
            );
        }
        n
    }
}
