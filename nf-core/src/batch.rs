//! Batches of packets and the output ports elements hand them to (FastClick's batching).
//!
//! An element's `push` receives a [`Batch`] and moves packets to [`Outputs`]; the router then hands each
//! non-empty output batch to the connected element. Batches keep their capacity between runs, so that the
//! hot path allocates nothing. Helpers give FastClick's `SimpleElement` and `ClassifyElement` shapes with
//! no virtual call per packet: [`Batch::map_to`], [`Batch::classify_to`].

use crate::packet::Packet;

/// Default number of packets per batch.
pub const BATCH_SIZE: usize = 64;

/// A run of packets processed together.
#[derive(Debug, Default)]
pub struct Batch {
    pkts: Vec<Packet>,
}

impl Batch {
    /// An empty batch with room for `n` packets.
    pub fn with_capacity(n: usize) -> Self {
        Batch {
            pkts: Vec::with_capacity(n),
        }
    }
    /// An empty batch with room for [`BATCH_SIZE`] packets.
    pub fn new() -> Self {
        Self::with_capacity(BATCH_SIZE)
    }
    /// Number of packets.
    #[inline]
    pub fn len(&self) -> usize {
        self.pkts.len()
    }
    /// True if there are no packets.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.pkts.is_empty()
    }
    /// Room before the batch reallocates.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.pkts.capacity()
    }
    /// Appends a packet.
    #[inline]
    pub fn push(&mut self, p: Packet) {
        self.pkts.push(p);
    }
    /// Appends a copy of `data` in a pooled buffer, with its timestamp and, if known, its network-header
    /// offset from the start of `data`: a source's loop. The packet is filled in where it lies in the
    /// batch. (Built aside and then pushed, a packet is copied with 16-byte loads of fields just written
    /// by narrower stores; the CPU cannot forward those and waits for the stores to reach the cache, a
    /// stall on every packet of every source.)
    #[inline(always)]
    pub fn push_copy(
        &mut self,
        pool: &mut crate::pool::LocalPool<'_>,
        data: &[u8],
        timestamp: crate::packet::Timestamp,
        l3: Option<usize>,
    ) {
        match pool.take_shell() {
            Some(shell) => self.pkts.push(shell),
            None => self.pkts.push(Packet::shell()),
        }
        if let Some(p) = self.pkts.last_mut() {
            p.fill_in(pool, data, timestamp, l3);
        }
    }
    /// A source's loop over a burst: appends up to `most` packets, each a copy of a frame `next` returns
    /// (with its timestamp), until `next` returns `None`; returns how many. What [`push_copy`](Self::push_copy)
    /// does per packet, with the packets taken from the pool for the whole burst at once and filled where
    /// they lie in the batch (moved one at a time, each packet went through a spilled temporary).
    #[inline(always)]
    pub fn fill_copies<'d>(
        &mut self,
        pool: &mut crate::pool::LocalPool<'_>,
        most: usize,
        l3: Option<usize>,
        mut next: impl FnMut() -> Option<(&'d [u8], crate::packet::Timestamp)>,
    ) -> usize {
        let start = self.pkts.len();
        pool.lend_shells(&mut self.pkts, most);
        let mut k = 0;
        while let Some(p) = self.pkts.get_mut(start + k) {
            let Some((data, timestamp)) = next() else {
                break;
            };
            p.fill_in(pool, data, timestamp, l3);
            k += 1;
        }
        pool.return_unfilled(&mut self.pkts, start + k);
        k
    }
    /// A zero-copy source's loop over a burst: appends up to `most` packets for the frames `next` returns
    /// (each a slice of `region`'s bytes, with its timestamp) until it returns `None`; returns how many. A
    /// frame shorter than `copy_below` bytes is copied into a pooled buffer (as
    /// [`fill_copies`](Self::fill_copies) does: for a small frame the copy costs less than sharing, and the
    /// packet is writable); a longer one is borrowed from `region` with up to `headroom` bytes of the region
    /// before it as headroom ([`Packet::borrowed`]). `l3` is the network header's offset in every frame, if
    /// known. A slice that is not part of the region is copied.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub fn fill_frames<'d>(
        &mut self,
        pool: &mut crate::pool::LocalPool<'_>,
        most: usize,
        l3: Option<usize>,
        region: &std::sync::Arc<crate::region_unsafe::Region>,
        copy_below: usize,
        headroom: usize,
        mut next: impl FnMut() -> Option<(&'d [u8], crate::packet::Timestamp)>,
    ) -> usize {
        let start = self.pkts.len();
        pool.lend_shells(&mut self.pkts, most);
        let base = region.bytes().as_ptr() as usize;
        let mut k = 0;
        while let Some(p) = self.pkts.get_mut(start + k) {
            let Some((data, timestamp)) = next() else {
                break;
            };
            let at = (data.as_ptr() as usize).wrapping_sub(base);
            let borrowed = data.len() >= copy_below
                && match p.borrow_in(region, at..at.wrapping_add(data.len()), headroom) {
                    Some(old) => {
                        if let Some(b) = old {
                            pool.give(b);
                        }
                        true
                    }
                    None => false,
                };
            if borrowed {
                p.anno.timestamp = timestamp;
                let head = p.headroom();
                p.anno
                    .set_l3_offset(l3.and_then(|o| u16::try_from(head + o).ok()));
            } else {
                p.fill_in(pool, data, timestamp, l3);
            }
            k += 1;
        }
        pool.return_unfilled(&mut self.pkts, start + k);
        k
    }
    /// Removes and returns the last packet.
    #[inline]
    pub fn pop(&mut self) -> Option<Packet> {
        self.pkts.pop()
    }
    /// Drops every packet (their buffers go back to the pool, borrowed once for the batch).
    #[inline]
    pub fn clear(&mut self) {
        if self.pkts.is_empty() {
            return;
        }
        // The packets go back to the pool whole, in one copy (their buffers still in them).
        crate::pool::with_local(|pool| pool.keep_packets(&mut self.pkts));
    }
    /// The packets.
    #[inline]
    pub fn iter(&self) -> std::slice::Iter<'_, Packet> {
        self.pkts.iter()
    }
    /// The packets, writable.
    #[inline]
    pub fn iter_mut(&mut self) -> std::slice::IterMut<'_, Packet> {
        self.pkts.iter_mut()
    }
    /// Takes every packet out, in order.
    #[inline]
    pub fn drain(&mut self) -> std::vec::Drain<'_, Packet> {
        self.pkts.drain(..)
    }
    /// Keeps the packets for which `f` returns true, dropping the others.
    #[inline]
    pub fn retain_mut(&mut self, f: impl FnMut(&mut Packet) -> bool) {
        self.pkts.retain_mut(f);
    }
    /// Moves every packet of `other` to the end of `self`; swaps the vectors when `self` is empty (O(1)).
    #[inline]
    pub fn append(&mut self, other: &mut Batch) {
        if self.pkts.is_empty() && other.pkts.capacity() >= self.pkts.capacity() {
            std::mem::swap(&mut self.pkts, &mut other.pkts);
        } else {
            self.pkts.append(&mut other.pkts);
        }
    }
    /// The packets as a slice.
    #[inline]
    pub fn as_slice(&self) -> &[Packet] {
        &self.pkts
    }
    /// The packets as a mutable slice.
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [Packet] {
        &mut self.pkts
    }

    /// FastClick's `SimpleElement`: applies `f` to every packet and sends what it returns to output `port`
    /// (`None` drops the packet). When every packet survives, the batch moves as a whole.
    #[inline]
    pub fn map_to(
        &mut self,
        out: &mut Outputs,
        port: usize,
        mut f: impl FnMut(&mut Packet) -> bool,
    ) {
        self.pkts.retain_mut(|p| f(p));
        out.port(port).append(self);
    }

    /// FastClick's `ClassifyElement`: sends every packet to the output `f` chooses (`None` drops it).
    ///
    /// Classification runs first over the whole batch; when every packet chose the same output (a header
    /// check that passes everything, a filter that keeps all), the batch moves as a whole and no packet is
    /// moved at all.
    #[inline]
    pub fn classify_to(
        &mut self,
        out: &mut Outputs,
        mut f: impl FnMut(&mut Packet) -> Option<usize>,
    ) {
        const NONE: u16 = u16::MAX;
        const MOST: usize = 256;
        let n = self.pkts.len();
        if n == 0 {
            return;
        }
        if n > MOST {
            return self.classify_each(out, f);
        }
        // Classify every packet where it lies (`f` called from this one place, so that it is inlined),
        // then move them: no call between taking a packet out and pushing it (a call in between kept each
        // packet in a temporary written and read back at different widths: a store-forwarding stall per
        // packet).
        let code = |p: Option<usize>| p.and_then(|p| u16::try_from(p).ok()).unwrap_or(NONE);
        let mut ports = [NONE; MOST];
        for (port, p) in ports[..n].iter_mut().zip(&mut self.pkts) {
            *port = code(f(p));
        }
        let first = ports[0];
        if ports[1..n].iter().all(|&p| p == first) {
            // Every packet goes where the first went: the batch moves as a whole.
            match first {
                NONE => self.clear(),
                port if usize::from(port) < out.len() => out.port(usize::from(port)).append(self),
                _ => {
                    out.dropped += n as u64;
                    self.clear();
                }
            }
            return;
        }
        // The dropped packets go back to the pool whole, in one borrow of it for the batch.
        let pkts = &mut self.pkts;
        crate::pool::with_local(|pool| {
            for (p, &port) in pkts.drain(..).zip(&ports[..n]) {
                if port != NONE {
                    out.push(usize::from(port), p);
                } else {
                    pool.keep_one(p);
                }
            }
        });
    }

    /// [`classify_to`](Self::classify_to) for batches larger than its array of choices: one packet at a
    /// time.
    #[inline(never)]
    fn classify_each(
        &mut self,
        out: &mut Outputs,
        mut f: impl FnMut(&mut Packet) -> Option<usize>,
    ) {
        for mut p in self.pkts.drain(..) {
            if let Some(port) = f(&mut p) {
                out.push(port, p);
            }
        }
    }
}

impl Extend<Packet> for Batch {
    fn extend<T: IntoIterator<Item = Packet>>(&mut self, iter: T) {
        self.pkts.extend(iter);
    }
}

impl FromIterator<Packet> for Batch {
    fn from_iter<T: IntoIterator<Item = Packet>>(iter: T) -> Self {
        Batch {
            pkts: iter.into_iter().collect(),
        }
    }
}

impl IntoIterator for Batch {
    type Item = Packet;
    type IntoIter = std::vec::IntoIter<Packet>;
    fn into_iter(self) -> Self::IntoIter {
        self.pkts.into_iter()
    }
}

/// The output ports of one element: one batch per port.
#[derive(Debug, Default)]
pub struct Outputs {
    ports: Vec<Batch>,
    dropped: u64,
}

impl Outputs {
    /// `n` empty output batches.
    pub fn new(n: usize) -> Self {
        Outputs {
            ports: (0..n).map(|_| Batch::new()).collect(),
            dropped: 0,
        }
    }
    /// Number of output ports.
    #[inline]
    pub fn len(&self) -> usize {
        self.ports.len()
    }
    /// True if the element has no output ports.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }
    /// The batch of output `i`. Panics if `i` is not a port of the element (a bug in the element: ports
    /// are checked when the graph is built).
    #[inline]
    pub fn port(&mut self, i: usize) -> &mut Batch {
        &mut self.ports[i]
    }
    /// Sends a packet to output `i`; a packet sent to a port that does not exist is dropped and counted.
    #[inline]
    pub fn push(&mut self, i: usize, p: Packet) {
        match self.ports.get_mut(i) {
            Some(b) => b.push(p),
            None => self.dropped += 1,
        }
    }
    /// Packets sent to ports that do not exist.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
    pub(crate) fn batches_mut(&mut self) -> &mut [Batch] {
        &mut self.ports
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::Timestamp;

    /// A splitting classification sends each packet to its output in order, drops those it rejects and
    /// counts those sent to a port that does not exist, in small batches and in batches past the
    /// in-place path's limit.
    #[test]
    fn classify_to_splits_in_order() {
        for n in [1usize, 5, 64, 256, 257, 300] {
            let mut b = Batch::new();
            crate::pool::with_local(|pool| {
                for i in 0..n {
                    b.push_copy(pool, &(i as u32).to_be_bytes(), Timestamp(i as u64), None);
                }
            });
            // The first ten agree, then: 0, 1, dropped, port 5 (missing), cycling.
            let port = |i: usize| match (i >= 10).then_some(i % 4) {
                None | Some(0) => Some(0),
                Some(1) => Some(1),
                Some(2) => None,
                _ => Some(5),
            };
            let mut out = Outputs::new(2);
            let mut k = 0;
            b.classify_to(&mut out, |_| {
                k += 1;
                port(k - 1)
            });
            assert_eq!(k, n, "classified once each");
            for o in 0..2 {
                let got: Vec<u32> = out.ports[o]
                    .iter()
                    .map(|p| u32::from_be_bytes(p.data().try_into().unwrap()))
                    .collect();
                let want: Vec<u32> = (0..n)
                    .filter(|&i| port(i) == Some(o))
                    .map(|i| i as u32)
                    .collect();
                assert_eq!(got, want, "n {n}, port {o}");
            }
            let missing = (0..n).filter(|&i| port(i) == Some(5)).count() as u64;
            assert_eq!(out.dropped(), missing, "n {n}");
            for o in out.ports.iter_mut() {
                o.clear();
            }
        }
    }

    /// A batch of `n` 300-byte packets with annotations set (paint 7, a transport offset), as a former life.
    fn marked_batch(n: u8) -> Batch {
        let mut b = Batch::new();
        let long = vec![0xaa; 300];
        crate::pool::with_local(|pool| {
            for i in 0..n {
                b.push_copy(pool, &long, Timestamp(u64::from(i)), Some(14));
            }
        });
        for p in b.iter_mut() {
            p.anno.paint = 7;
            p.anno.set_l4_offset(Some(50));
        }
        b
    }

    /// A packet the pool kept whole and a source reuses carries the new data and timestamp and nothing of
    /// its former life (annotations, offsets, length).
    #[test]
    fn reused_packets_start_fresh() {
        let mut b = marked_batch(40);
        for p in b.iter_mut() {
            p.anno.paint = 7;
            p.anno.input_port = 3;
            p.anno.user = [9, 9];
            p.anno.set_flow_hash(Some(42));
            p.anno.set_l4_offset(Some(50));
            p.pull(20).unwrap();
        }
        let before = crate::pool::pooled();
        b.clear();
        assert_eq!(crate::pool::pooled(), before + 40, "kept whole");
        let short = [1u8, 2, 3, 4, 5];
        crate::pool::with_local(|pool| {
            for i in 0..40u8 {
                b.push_copy(pool, &short, Timestamp(1000 + u64::from(i)), None);
            }
        });
        assert_eq!(crate::pool::pooled(), before);
        for (i, p) in b.iter().enumerate() {
            assert_eq!(p.data(), &short);
            assert_eq!(p.anno.timestamp, Timestamp(1000 + i as u64));
            assert_eq!(
                (p.anno.paint, p.anno.input_port, p.anno.user),
                (0, 0, [0, 0])
            );
            assert_eq!(p.anno.flow_hash(), None);
            assert_eq!((p.anno.l3_offset(), p.anno.l4_offset()), (None, None));
            assert_eq!(p.headroom(), crate::pool::DEFAULT_HEADROOM);
        }
        b.clear();
    }

    /// A burst filled in place: as many packets as `next` gives (none past `most`), after the packets
    /// already in the batch, each fresh; the packets lent and not filled go back to the pool, whole.
    #[test]
    fn fill_copies_fills_what_it_is_given_and_gives_back_the_rest() {
        let mut b = marked_batch(50);
        let before = crate::pool::pooled();
        b.clear();
        assert_eq!(crate::pool::pooled(), before + 50);
        // Two packets already there; then bursts of at most 64 from sources of 10, 0 and 100 frames.
        crate::pool::with_local(|pool| {
            b.push_copy(pool, &[7, 7], Timestamp(7), None);
            b.push_copy(pool, &[8, 8], Timestamp(8), None);
        });
        let frames: Vec<Vec<u8>> = (0..100u8)
            .map(|i| vec![i; 1 + usize::from(i) % 9])
            .collect();
        let mut total = 2;
        for (have, most) in [(10usize, 64usize), (0, 64), (100, 64), (100, 3)] {
            let mut given = 0;
            let k = crate::pool::with_local(|pool| {
                b.fill_copies(pool, most, Some(0), || {
                    (given < have).then(|| {
                        given += 1;
                        (&frames[given - 1][..], Timestamp(1000 + given as u64))
                    })
                })
            });
            assert_eq!(k, have.min(most));
            assert_eq!(b.len(), total + k);
            for (j, p) in b.as_slice()[total..].iter().enumerate() {
                assert_eq!(p.data(), &frames[j][..]);
                assert_eq!(p.anno.timestamp, Timestamp(1001 + j as u64));
                assert_eq!(p.anno.paint, 0);
                assert_eq!(p.anno.l4_offset(), None);
                assert!(p.anno.l3_offset().is_some());
            }
            total += k;
            if total <= 50 {
                // The pool had enough: every buffer is in the batch or back in the pool (the lent and
                // unfilled ones returned).
                assert_eq!(crate::pool::pooled() + b.len(), before + 50);
            }
        }
        assert_eq!(b.as_slice()[0].data(), &[7, 7]);
        assert_eq!(b.as_slice()[1].data(), &[8, 8]);
        // Past what the pool held, fresh buffers; all of them kept whole when the batch is done.
        let n = b.len();
        assert_eq!(n, 2 + 10 + 64 + 3);
        assert!(n >= before + 50, "the pool ran dry");
        b.clear();
        assert_eq!(crate::pool::pooled(), n);
    }
}
