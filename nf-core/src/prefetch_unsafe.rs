//! A cache prefetch hint (the CPU instruction is exposed as an `unsafe` intrinsic): one of nf-core's
//! three `unsafe` modules, with `huge_pages_unsafe` (the `madvise` of large tables) and, behind the
//! `testing` feature, `counting_alloc_unsafe` (the allocator the allocation tests count with). Flow tables call it for a whole batch before their lookups, so the batch's cache misses
//! overlap instead of stalling one after the other: a plain load used as a "prefetch" holds a reorder-buffer
//! entry until the line arrives, and a batch of them fills the buffer.
#![allow(unsafe_code)]

/// Asks the CPU to start loading the cache line holding `*r` (nothing off x86-64).
#[inline(always)]
pub fn prefetch<T>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        let p = r as *const T as *const i8;
        // SAFETY: a prefetch is a hint: it reads nothing architecturally and cannot fault, and `p` comes
        // from a reference anyway. SSE (which provides the instruction) is part of the x86-64 baseline.
        unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}

/// Hints that every cache line of `*r` will be read soon (a value may straddle two or three lines: a
/// table slot of 128 bytes does, and prefetching only its first line left the probe waiting on the
/// other).
#[inline(always)]
pub fn prefetch_all<T: ?Sized>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        let start = r as *const T as *const u8 as usize;
        let last = start + std::mem::size_of_val(r).max(1) - 1;
        let mut line = start & !63;
        while line <= last {
            // SAFETY: as in `prefetch`: a hint that reads nothing architecturally and cannot fault. The
            // address lies in the cache lines of `*r` (rounded down to its first line's start), and is
            // never dereferenced.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    line as *const i8,
                )
            };
            line += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}
