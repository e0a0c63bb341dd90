//! Asking the kernel to back large tables with transparent huge pages: a system call through `libc`,
//! which Rust exposes as `unsafe` (as every foreign function). The advice changes no byte of memory and
//! no Rust-visible state; it only tells Linux that 2 MiB pages would suit the range.
//!
//! Why: a flow table of 16 MB (the Mux's trusted table at 262,144 entries) probed at random over 100,000
//! flows touches 4,096 pages of 4 KiB, twice what the second-level TLB holds, so half of the lookups
//! also walked the page tables, and a software prefetch that misses the TLB waits for that walk. In
//! 2 MiB pages the table is eight TLB entries. On a host whose huge-page mode is `madvise` (the common
//! default), nothing is huge unless asked: hence the advice (BENCHMARKS.md, "Ananta's Mux", has the
//! figures).
#![allow(unsafe_code)]

/// Below this size a table is left in ordinary pages (it spans few enough of them).
pub const MIN_BYTES: usize = 4 << 20;

const HUGE: usize = 2 << 20;

/// Advises that the not-yet-initialised capacity of `v` be backed by huge pages (the 2 MiB-aligned
/// blocks lying wholly inside it; nothing if it is smaller than [`MIN_BYTES`]). Call it right after
/// `Vec::with_capacity` and before filling the vector, so that the first touch of each block faults in
/// a huge page. A no-op off Linux, and harmless where the kernel declines (the advice is only advice).
pub fn advise<T>(v: &mut Vec<T>) {
    let spare = v.spare_capacity_mut();
    let bytes = std::mem::size_of_val(spare);
    if bytes < MIN_BYTES {
        return;
    }
    let start = spare.as_ptr() as usize;
    let first = start.next_multiple_of(HUGE);
    let end = (start + bytes) & !(HUGE - 1);
    if end <= first {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `madvise(MADV_HUGEPAGE)` reads and writes no memory and cannot invalidate any pointer:
        // it sets a flag on the virtual range (splitting the kernel's record of the mapping if needed),
        // and pages faulted in later are zero-filled or, for already present pages, keep their contents
        // when merged. The range [first, end) is page-aligned and lies wholly inside the spare capacity of
        // `v`, memory this process owns through the vector. Its result is ignored: on refusal the range
        // simply stays in small pages.
        unsafe {
            libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (first, end);
}

/// `v` in huge pages (see [`advise`]) when it holds [`MIN_BYTES`] or more: moved into an advised vector of
/// exactly its length (one copy), else returned as it is. For buffers built by growing and then read over
/// and over, such as frames held for a replay.
pub fn into_huge_pages<T: Copy>(v: Vec<T>) -> Vec<T> {
    if std::mem::size_of_val(v.as_slice()) < MIN_BYTES {
        return v;
    }
    let mut h = Vec::with_capacity(v.len());
    advise(&mut h);
    h.extend_from_slice(&v);
    h
}

#[cfg(test)]
mod tests {
    /// The advice leaves a large vector, and a small one it skips, usable with their contents as written.
    #[test]
    fn advised_tables_hold_what_is_written() {
        let n = 3 * super::MIN_BYTES / 8;
        let mut v: Vec<u64> = Vec::with_capacity(n);
        super::advise(&mut v);
        v.extend((0..n as u64).map(|i| i * 3));
        assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64 * 3));
        let mut small: Vec<u64> = Vec::with_capacity(16);
        super::advise(&mut small);
        small.push(1);
        assert_eq!(small, [1]);
        let bytes: Vec<u8> = (0..super::MIN_BYTES + 12345)
            .map(|i| (i % 251) as u8)
            .collect();
        assert_eq!(super::into_huge_pages(bytes.clone()), bytes);
        assert_eq!(super::into_huge_pages(vec![1u8, 2]), [1, 2]);
    }
}
