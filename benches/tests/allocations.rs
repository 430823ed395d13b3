//! Zero heap allocations per I/O in the core: a counting global allocator
//! watches a steady-state loop of 4 KiB read cycles. (The core cannot
//! allocate — it has no `alloc` — so this guards the benchmark's own driver
//! loop and any future std-side shim on the same path.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

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

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn core_read_cycle_allocates_nothing() {
    let mut cycle = rdio_benches::Cycle::new();
    // Warm up, then count.
    assert_eq!(cycle.read_4k(), 4096);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let mut bytes = 0;
    for _ in 0..10_000 {
        bytes += cycle.read_4k();
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(bytes, 10_000 * 4096);
    assert_eq!(
        allocations, 0,
        "{allocations} heap allocations in 10,000 reads"
    );
}
