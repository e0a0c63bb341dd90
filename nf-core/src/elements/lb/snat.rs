//! Ananta's SNAT port allocation (SIGCOMM'13): a backend's outbound connections leave with the VIP as
//! their source; the ports come from the manager in contiguous ranges (8 by default), one request per
//! backend outstanding at a time; a port is reused for connections to distinct remote endpoints (the
//! five-tuple stays unique); a range that stays unused for a while goes back to the manager.

use crate::packet::Timestamp;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};

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

/// SNAT ports of one VIP, for every backend behind it.
#[derive(Debug, Clone)]
pub struct SnatAllocator {
    vip: IpAddr,
    range: u16,
    idle_ns: u64,
    free: VecDeque<u16>,
    backends: HashMap<IpAddr, Backend>,
    queue: VecDeque<IpAddr>,
    stats: SnatStats,
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
                    return Snat::Port(r.start + k as u16);
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
            return Snat::Port(start + k as u16);
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
            r.users[usize::from(port - r.start)].remove(&remote);
            r.last_used = now;
        }
    }

    /// Ranges with no connection, unused for the idle time, go back to the manager. Returns how many.
    pub fn expire(&mut self, now: Timestamp) -> usize {
        let mut back = Vec::new();
        for b in self.backends.values_mut() {
            b.ranges.retain(|r| {
                let idle =
                    r.users.iter().all(HashSet::is_empty) && now.since(r.last_used) >= self.idle_ns;
                if idle {
                    back.push(r.start);
                }
                !idle
            });
        }
        let n = back.len();
        self.stats.returned += n as u64;
        self.free.extend(back);
        n
    }
}
