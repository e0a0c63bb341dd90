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

/// Maps `file` read-only, asks the kernel for sequential read-ahead, and pre-faults the pages.
pub(crate) fn map(file: &File) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: the map is read-only and private to this process; the file is a capture that no one writes
    // while it is replayed (see the module documentation). A file shrunk underneath us can raise SIGBUS,
    // which is documented for `FromPcap`; it cannot produce a data race in safe code that observes it.
    let map = unsafe { memmap2::MmapOptions::new().populate().map(file)? };
    #[cfg(unix)]
    {
        let _ = map.advise(memmap2::Advice::Sequential);
    }
    Ok(map)
}
