//! A global allocator that counts allocations, for the tests that hold
//! rdio to zero heap allocations per I/O (`benches/tests/allocations.rs`,
//! `transports/cma/tests/allocations.rs`).
//!
//! A `#[global_allocator]` belongs to one binary, so each test binary
//! installs this one itself:
//!
//! ```ignore
//! #[global_allocator]
//! static GLOBAL: rdio_alloc_count::Counting = rdio_alloc_count::Counting;
//! ```
//!
//! and measures a stretch of code with [`allocations`] before and after.
//! The count is process-wide: every thread's allocations count, so such a
//! test runs without libtest's harness (`harness = false`), whose own
//! threads allocate while tests run.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator, counting every `alloc` and `realloc`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

/// Allocations (and reallocations) made so far by this process, through
/// [`Counting`] once it is the global allocator.
pub fn allocations() -> usize {
    ALLOCATIONS.load(Ordering::Relaxed)
}

// SAFETY: defers to the system allocator; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
