//! A counting global allocator, for tests that prove "no allocation in steady state": implementing
//! `GlobalAlloc` is `unsafe` by definition, hence this module's name. A test binary installs it with
//!
//! ```ignore
//! #[global_allocator]
//! static GLOBAL: nf_core::counting_alloc_unsafe::CountingAlloc = nf_core::counting_alloc_unsafe::CountingAlloc;
//! ```
//!
//! and reads [`allocations`] before and after the code under test (the count is per thread: tests run in
//! parallel threads).
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};

/// The system allocator, counting the allocations (and reallocations) each thread makes.
#[derive(Debug, Clone, Copy, Default)]
pub struct CountingAlloc;

thread_local! {
    static ALLOCS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn count() {
    let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
}

/// Allocations (and reallocations) the calling thread has made through [`CountingAlloc`] so far (0 if it is
/// not the global allocator).
pub fn allocations() -> u64 {
    ALLOCS.try_with(|a| a.get()).unwrap_or(0)
}

// SAFETY: every method forwards to the system allocator with the caller's arguments unchanged; the counter
// is a const-initialised thread-local cell, which does not allocate.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded contract.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded contract.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded contract.
        unsafe { System.realloc(p, l, n) }
    }
}

/// Runs `r`'s rounds until `n` more packets left the source `src` (by `count`, e.g. `Replay::count`);
/// returns the allocations the calling thread made meanwhile.
pub fn allocations_over<E: crate::element::Element>(
    r: &mut crate::router::Router,
    src: crate::graph::ElementId<E>,
    count: impl Fn(&E) -> u64,
    n: u64,
) -> u64 {
    let now = |r: &crate::router::Router| r.element(src).map_or(u64::MAX, &count);
    let start = now(r);
    let before = allocations();
    while now(r).saturating_sub(start) < n {
        r.run_round();
    }
    allocations() - before
}
