//! Shared regions of packet bytes: memory that packets borrow instead of copying (a mapped capture file, a
//! block of the kernel's `PACKET_RX_RING`), released when its last packet is dropped.
//!
//! A [`Region`] owns something that holds bytes (a memory map, a ring block, a `Vec`) and hands out its bytes
//! as a plain slice. A borrowed [`Packet`](crate::Packet) holds an `Arc<Region>` and the offset of its frame;
//! reading it costs what reading a pooled packet costs; the first write copies the frame into a pooled
//! buffer (copy-on-write), so that a region's bytes are never written through a packet.
//!
//! `unsafe` here (one of nf-core's modules named for it): the region keeps a raw pointer to its owner's bytes,
//! taken once after the owner was boxed, so that reading a packet's bytes is a slice from a pointer and a
//! length (no call through the owner's vtable per access, as `bytes::Bytes` does on every clone and drop).
#![allow(unsafe_code)]

use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;

/// Bytes shared by the packets that borrow them, owned by what holds them (see the module's docs).
///
/// The owner is dropped, and what it holds released (a mapping unmapped, a ring block handed back to the
/// kernel), when the last `Arc<Region>` goes: the source's own handle and every packet pointing into it.
pub struct Region {
    ptr: NonNull<u8>,
    len: usize,
    /// Kept only to be dropped with the region: it owns the bytes `ptr` points to.
    _owner: Box<dyn Send + Sync>,
}

// SAFETY: a region is its owner (which is `Send + Sync`) plus a pointer to bytes that owner holds and that are
// only ever read (never written) through the region; sharing or sending it shares or sends only reads of
// memory that lives as long as the owner does.
unsafe impl Send for Region {}
// SAFETY: as for `Send`: every access through a `&Region` is a read of immutable bytes.
unsafe impl Sync for Region {}

impl Region {
    /// A region over the bytes `owner` holds. `owner.as_ref()` is called once, after `owner` was moved into
    /// its final place on the heap; the region serves those bytes until it is dropped, and `owner` must not
    /// change them meanwhile (a memory map of a file nobody truncates, a `Vec` nobody else holds, a ring
    /// block the kernel has handed over).
    pub fn new<O: AsRef<[u8]> + Send + Sync + 'static>(owner: O) -> Region {
        let owner = Box::new(owner);
        let bytes: &[u8] = (*owner).as_ref();
        let (ptr, len) = (
            NonNull::new(bytes.as_ptr().cast_mut()).unwrap_or(NonNull::dangling()),
            bytes.len(),
        );
        Region {
            ptr,
            len,
            _owner: owner,
        }
    }

    /// The region's bytes.
    #[inline(always)]
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` and `len` are those of the slice the owner gave once it was on the heap (or a
        // dangling pointer with length 0); the owner lives as long as `self` (it is a field, dropped with
        // it), its box never moves, and the bytes are only read through the region, so the slice is valid
        // and unchanged for the borrow of `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// Number of bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a region of no bytes.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A packet's hold on a run of a region's bytes: the region's handle and a pointer to the run, so that
/// reading a borrowed packet is a slice from a pointer and a length held in the packet itself (no load
/// through the region per access).
pub(crate) struct Lease {
    /// Held only to keep the bytes alive.
    _region: Arc<Region>,
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a lease is a region handle (`Send + Sync`) plus a pointer into that region's bytes, which are only
// read; see `Region`'s impls.
unsafe impl Send for Lease {}
// SAFETY: as for `Send`.
unsafe impl Sync for Lease {}

impl Lease {
    /// The bytes `start..start + len` of `region`, held; `None` if they are not all within it.
    #[inline(always)]
    pub(crate) fn new(region: &Arc<Region>, start: usize, len: usize) -> Option<Lease> {
        let bytes = region.bytes().get(start..start.checked_add(len)?)?;
        Some(Lease {
            _region: region.clone(),
            ptr: NonNull::new(bytes.as_ptr().cast_mut()).unwrap_or(NonNull::dangling()),
            len,
        })
    }

    /// The leased bytes.
    #[inline(always)]
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr..ptr + len` was checked to lie within the region's bytes when the lease was made
        // (or `ptr` is dangling and `len` 0); the lease holds the region, whose bytes stay where they are,
        // unchanged, for as long as it lives.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Clone for Lease {
    fn clone(&self) -> Self {
        Lease {
            _region: self._region.clone(),
            ptr: self.ptr,
            len: self.len,
        }
    }
}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Region").field("len", &self.len).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    struct Tracked(Vec<u8>, Arc<AtomicBool>);
    impl AsRef<[u8]> for Tracked {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }
    impl Drop for Tracked {
        fn drop(&mut self) {
            self.1.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_region_serves_its_owners_bytes_and_drops_the_owner_last() {
        let dropped = Arc::new(AtomicBool::new(false));
        let r = Arc::new(Region::new(Tracked(vec![1, 2, 3, 4], dropped.clone())));
        let r2 = r.clone();
        drop(r);
        assert_eq!(r2.bytes(), &[1, 2, 3, 4]);
        assert!(!dropped.load(Ordering::SeqCst));
        drop(r2);
        assert!(dropped.load(Ordering::SeqCst));
    }

    #[test]
    fn inline_and_empty_owners_are_served_from_their_boxes() {
        let r = Region::new([7u8; 40]);
        assert_eq!(r.bytes(), &[7u8; 40]);
        let e = Region::new(Vec::<u8>::new());
        assert!(e.is_empty() && e.bytes().is_empty());
    }
}

#[cfg(test)]
mod lease_tests {
    use super::*;

    #[test]
    fn a_lease_is_within_its_region_or_refused() {
        let r = Arc::new(Region::new((0u8..100).collect::<Vec<u8>>()));
        let l = Lease::new(&r, 10, 5).unwrap();
        assert_eq!(l.bytes(), &[10, 11, 12, 13, 14]);
        assert_eq!(l.clone().bytes(), l.bytes());
        assert!(Lease::new(&r, 96, 5).is_none());
        assert!(Lease::new(&r, usize::MAX, 2).is_none());
        assert!(Lease::new(&r, 100, 0).is_some_and(|l| l.bytes().is_empty()));
        assert_eq!(Arc::strong_count(&r), 2, "the region and the lease");
    }
}
