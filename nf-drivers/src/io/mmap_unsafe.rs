//! Memory-mapping capture files for reading: the one place in this crate that needs `unsafe`.
//!
//! Mapping a file is `unsafe` in Rust because the mapped bytes can change, or the mapping can fault
//! (SIGBUS), if another process truncates or rewrites the file while it is mapped: Rust's guarantee that a
//! `&[u8]` does not change underneath the reader cannot be checked. Capture files replayed by `FromPcap`
//! are inputs that nothing else writes while a run reads them; this is the same assumption every
//! mmap-based capture reader (Click's `FromDump`, libpcap's readers on some systems) makes. Callers that
//! cannot promise it use the buffered path ([`super::pcap::CaptureFile::read`]).
#![allow(unsafe_code)]

use std::fs::File;

/// Maps `file` read-only, asks the kernel for sequential read-ahead in huge pages, and pre-faults the
/// pages.
///
/// On Linux the mapping is marked `MADV_HUGEPAGE` before it is populated (`MADV_POPULATE_READ`): what is
/// not cached yet is then read into 2 MiB folios, which the mapping takes with one page-table entry each
/// (an 800 MB capture: ~12 ms of page-table work to map and unmap, against ~45 ms in 4 KiB pages). A file
/// already cached in small folios stays so until it leaves the cache; [`super::pcap::PcapFileWriter`]
/// writes in aligned 2 MiB chunks for the same reason. Older kernels without the advice fault the pages
/// in as they are read.
pub(crate) fn map(file: &File) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: the map is read-only and private to this process; the file is a capture that no one writes
    // while it is replayed (see the module documentation). A file shrunk underneath us can raise SIGBUS,
    // which is documented for `FromPcap`; it cannot produce a data race in safe code that observes it.
    #[cfg(target_os = "linux")]
    let map = unsafe { memmap2::MmapOptions::new().map(file)? };
    #[cfg(target_os = "linux")]
    {
        let _ = map.advise(memmap2::Advice::HugePage);
        let _ = map.advise(memmap2::Advice::Sequential);
        let _ = map.advise(memmap2::Advice::PopulateRead);
    }
    // SAFETY: as above.
    #[cfg(not(target_os = "linux"))]
    let map = unsafe { memmap2::MmapOptions::new().populate().map(file)? };
    #[cfg(all(unix, not(target_os = "linux")))]
    {
        let _ = map.advise(memmap2::Advice::Sequential);
    }
    Ok(map)
}

/// Asks the CPU to start loading the `N` cache lines from `data[at]` on (nothing off x86-64). Lines past
/// the end of `data` are not loaded: a prefetch of an address outside every mapping is dropped by the CPU,
/// which is why the addresses are not checked (one check less per line on the reader's hot loop).
#[inline(always)]
pub(crate) fn prefetch_lines<const N: usize>(data: &[u8], at: usize) {
    #[cfg(target_arch = "x86_64")]
    for i in 0..N {
        let p = data.as_ptr().wrapping_add(at + 64 * i) as *const i8;
        // SAFETY: a prefetch is a hint, not an access: it reads nothing architecturally, cannot fault
        // (even on an unmapped address, which it drops), and `p` is computed with wrapping arithmetic, so
        // no out-of-bounds pointer is ever dereferenced or offset. SSE (which provides the instruction) is
        // part of the x86-64 baseline.
        unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (data, at);
}
