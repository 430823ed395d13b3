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

/// The counter is process-wide: tests that count hold this so another
/// test's set-up is not counted as theirs.
static COUNTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn counting() -> std::sync::MutexGuard<'static, ()> {
    COUNTING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[test]
fn core_read_cycle_allocates_nothing() {
    let _counting = counting();
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

/// Allocations counted over `n` iterations of `io`, after `warm_up` of them
/// (buffers, tables and the allocator's own caches fill during warm-up).
fn allocations_per(n: usize, mut io: impl FnMut()) -> usize {
    for _ in 0..64 {
        io();
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..n {
        io();
    }
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

#[test]
fn driver_reads_over_the_loopback_allocate_nothing() {
    use rdio::embedded::{Embedded, EmbeddedOptions};
    use rdio_core::wire::OpenFlags;

    let _counting = counting();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("data"), vec![7u8; 1 << 20]).expect("file");
    let mut options = EmbeddedOptions::default();
    options.client.io_size = 4096;
    options.client.queue_depth = 8;
    let mut pair = Embedded::start(dir.path(), options).expect("pair");
    let file = pair.client.open("data", OpenFlags::READ).expect("open");
    let mut out = [0u8; 4096];
    let mut offset = 0u64;
    let allocations = allocations_per(2_000, || {
        let ticket = pair
            .client
            .submit_read(&file, offset, 4096)
            .expect("submit");
        assert_eq!(pair.client.wait(ticket, &mut out).expect("read"), 4096);
        offset = (offset + 4096) % (1 << 20);
    });
    pair.finish().expect("finish");
    assert_eq!(
        allocations, 0,
        "{allocations} heap allocations in 2,000 reads"
    );
}
