//! Packets that borrow their bytes from a shared region (zero copy): reads see the region, the first
//! write copies at the same offsets, clones share, and the region goes when its last packet does.

use nf_core::packet::{Link, Packet};
use nf_core::region_unsafe::Region;
use nf_core::traffic::{TrafficConfig, TrafficGen};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A region's owner that counts its drops.
struct Owned(Vec<u8>, Arc<AtomicUsize>);

impl AsRef<[u8]> for Owned {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        self.1.fetch_add(1, Ordering::SeqCst);
    }
}

/// A region holding `n` frames of synthetic TCP/UDP traffic, each after a 16-byte gap (as records of a
/// capture are), with the frames' ranges and a counter of the owner's drops.
fn region(n: usize) -> (Arc<Region>, Vec<std::ops::Range<usize>>, Arc<AtomicUsize>) {
    let mut g = TrafficGen::new(TrafficConfig {
        flows: 16,
        ..Default::default()
    });
    let mut bytes = vec![0xEEu8; 24];
    let mut ranges = Vec::new();
    for _ in 0..n {
        bytes.extend_from_slice(&[0xDD; 16]);
        let f = g.next_frame().to_vec();
        ranges.push(bytes.len()..bytes.len() + f.len());
        bytes.extend_from_slice(&f);
    }
    let drops = Arc::new(AtomicUsize::new(0));
    (
        Arc::new(Region::new(Owned(bytes, drops.clone()))),
        ranges,
        drops,
    )
}

#[test]
fn a_borrowed_packet_reads_the_region_and_copies_on_its_first_write() {
    let (r, frames, _) = region(4);
    let f = frames[3].clone();
    let mut p = Packet::borrowed(&r, f.clone(), 128).unwrap();
    let mut owned = Packet::from_slice(&r.bytes()[f.clone()]);
    assert!(p.is_borrowed() && !owned.is_borrowed());
    assert_eq!(p.data(), &r.bytes()[f.clone()]);
    assert_eq!(p.headroom(), 128);
    assert_eq!(p.tailroom(), 0);
    // Reading headers writes nothing: still borrowed.
    let (h, key) = p.locate_key(Link::Ethernet).unwrap();
    let (ho, key_o) = owned.locate_key(Link::Ethernet).unwrap();
    assert_eq!(key, key_o);
    assert!(p.is_borrowed());
    let l3 = p.anno.l3_offset();
    // The rewrite copies the packet once, at the same offsets: the caller's `h` stays right.
    let before = nf_core::pool::stats().unshared;
    let to = "10.9.8.7:4321".parse().unwrap();
    p.set_dst_endpoint(&h, to).unwrap();
    owned.set_dst_endpoint(&ho, to).unwrap();
    assert!(!p.is_borrowed());
    assert_eq!(nf_core::pool::stats().unshared, before + 1);
    assert_eq!(p.anno.l3_offset(), l3);
    assert_eq!(p.headroom(), 128);
    assert_eq!(
        p.data(),
        owned.data(),
        "the same rewrite, checksums included"
    );
    p.set_src_port(&h, 999).unwrap();
    owned.set_src_port(&ho, 999).unwrap();
    assert_eq!(p.data(), owned.data());
    assert_eq!(nf_core::pool::stats().unshared, before + 1, "one copy only");
    // The region is untouched.
    assert_eq!(
        &r.bytes()[f],
        Packet::borrowed(&r, frames[3].clone(), 0).unwrap().data()
    );
}

#[test]
fn strip_and_unstrip_move_an_offset_without_copying() {
    let (r, frames, _) = region(2);
    let mut p = Packet::borrowed(&r, frames[0].clone(), 128).unwrap();
    // The first frame has only the file's 40 bytes before it: that is its headroom.
    assert_eq!(p.headroom(), frames[0].start);
    let whole = p.data().to_vec();
    p.pull(14).unwrap();
    assert_eq!(p.data(), &whole[14..]);
    p.unpull(14).unwrap();
    assert_eq!(p.data(), &whole[..]);
    assert!(p.is_borrowed());
    assert!(p.unpull(1000).is_err());
    p.take(4).unwrap();
    p.truncate(20);
    assert_eq!(p.data(), &whole[..20]);
    assert!(p.is_borrowed());
}

#[test]
fn growing_a_borrowed_packet_copies_it_and_keeps_its_offsets() {
    let (r, frames, _) = region(2);
    let mut p = Packet::borrowed(&r, frames[1].clone(), 64).unwrap();
    let whole = p.data().to_vec();
    p.anno.set_l3_offset(Some(p.data_offset() as u16 + 14));
    p.push(4).copy_from_slice(&[1, 2, 3, 4]);
    assert!(!p.is_borrowed());
    assert_eq!(&p.data()[..4], &[1, 2, 3, 4]);
    assert_eq!(&p.data()[4..], &whole[..]);
    assert_eq!(p.anno.l3_offset(), Some(p.data_offset() as u16 + 18));
    let mut q = Packet::borrowed(&r, frames[1].clone(), 64).unwrap();
    q.put(3).copy_from_slice(&[7, 8, 9]);
    assert_eq!(&q.data()[..whole.len()], &whole[..]);
    assert_eq!(&q.data()[whole.len()..], &[7, 8, 9]);
    let (buf, off) = Packet::borrowed(&r, frames[0].clone(), 0)
        .unwrap()
        .into_parts();
    assert_eq!(&buf[off..], &r.bytes()[frames[0].clone()]);
}

#[test]
fn a_clone_shares_the_bytes_and_each_copies_on_its_own_write() {
    let (r, frames, _) = region(1);
    let p = Packet::borrowed(&r, frames[0].clone(), 128).unwrap();
    let mut q = p.clone();
    assert!(q.is_borrowed());
    q.data_mut()[0] ^= 0xff;
    assert!(p.is_borrowed() && !q.is_borrowed());
    assert_eq!(p.data(), &r.bytes()[frames[0].clone()]);
    assert_ne!(p.data()[0], q.data()[0]);
}

#[test]
fn a_frame_outside_the_region_is_refused() {
    let (r, _, _) = region(1);
    let n = r.len();
    assert!(Packet::borrowed(&r, n - 10..n + 1, 0).is_none());
    #[allow(clippy::reversed_empty_ranges)]
    let backwards = 20..10;
    assert!(Packet::borrowed(&r, backwards, 0).is_none());
    assert!(Packet::borrowed(&r, n..n, 0).is_some_and(|p| p.is_empty()));
}

#[test]
fn the_region_outlives_every_packet_and_goes_with_the_last() {
    let (r, frames, drops) = region(8);
    let mut batch = nf_core::Batch::new();
    for f in &frames {
        batch.push(Packet::borrowed(&r, f.clone(), 128).unwrap());
    }
    // A pooled packet among them: a mixed batch, as a source that copies small frames gives.
    batch.push(Packet::from_slice(&[1, 2, 3]));
    let kept = batch.pop().unwrap();
    let held = batch.pop().unwrap();
    batch.push(kept);
    drop(r);
    assert_eq!(
        drops.load(Ordering::SeqCst),
        0,
        "packets still point into it"
    );
    let pooled = nf_core::pool::pooled();
    batch.clear();
    assert_eq!(
        nf_core::pool::pooled(),
        pooled + 1,
        "the pooled packet was kept"
    );
    assert_eq!(drops.load(Ordering::SeqCst), 0, "one packet still holds it");
    assert_eq!(held.data(), held.clone().data());
    drop(held);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}
