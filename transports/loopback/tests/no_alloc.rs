//! Steady-state posting and completing never allocates: a counting global
//! allocator watches this thread while a pair exchanges sends, writes and
//! write-with-immediates.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use rdio_loopback::{Config, pair, sync_pair};
use rdio_transport::{Access, Completion, CompletionKind, Slice, Transport};

struct CountingAllocator;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count_one() {
    // `try_with`: the allocator also runs while thread-locals are torn down.
    let _ = COUNTING.try_with(|counting| {
        if counting.get() {
            let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
        }
    });
}

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Allocations made by `work` on this thread.
fn allocations_during(work: impl FnOnce()) -> usize {
    ALLOCATIONS.with(|count| count.set(0));
    COUNTING.with(|counting| counting.set(true));
    work();
    COUNTING.with(|counting| counting.set(false));
    ALLOCATIONS.with(Cell::get)
}

const PLACEHOLDER: Completion = Completion {
    wr_id: 0,
    kind: CompletionKind::Send,
    status: Ok(()),
};

/// One round: a two-element send, a write and a write-with-immediate from `a`
/// to `b`, everything drained on both sides.
fn round(
    a: &mut impl Transport,
    b: &mut impl Transport,
    regions: [rdio_transport::RegionId; 3],
    n: u64,
) {
    let [a_src, b_recv, b_target] = regions;
    let dst = b.remote_buf(b_target, 0, 4096).unwrap();
    let mut out = [PLACEHOLDER; 8];
    b.post_recv(n, Slice::whole(b_recv, 4096)).unwrap();
    b.post_recv(n + 1, Slice::whole(b_recv, 4096)).unwrap();
    a.post_send(
        n,
        &[Slice::whole(a_src, 100), Slice::whole(a_src, 200)],
        None,
    )
    .unwrap();
    a.post_write(n + 1, &[Slice::whole(a_src, 4096)], dst, None)
        .unwrap();
    a.post_write(n + 2, &[Slice::whole(a_src, 4096)], dst, Some(7))
        .unwrap();
    assert_eq!(b.poll_completions(&mut out), Ok(2));
    assert_eq!(a.poll_completions(&mut out), Ok(3));
    assert!(out[..3].iter().all(|completion| completion.status.is_ok()));
}

fn check(a: &mut impl Transport, b: &mut impl Transport) {
    let a_src = a.register(4096, Access::empty()).unwrap();
    let b_recv = b.register(4096, Access::LOCAL_WRITE).unwrap();
    let b_target = b.register(4096, Access::REMOTE_WRITE).unwrap();
    let regions = [a_src, b_recv, b_target];
    round(a, b, regions, 0);
    let boxed = allocations_during(|| drop(std::hint::black_box(Box::new(1u64))));
    assert_eq!(boxed, 1, "the counter sees allocations");
    let allocations = allocations_during(|| {
        for n in 1..1000 {
            round(a, b, regions, 10 * n);
        }
    });
    assert_eq!(allocations, 0);
}

#[test]
fn deterministic_pair_does_not_allocate_per_request() {
    let (mut a, mut b) = pair(Config::default());
    check(&mut a, &mut b);
}

#[test]
fn thread_safe_pair_does_not_allocate_per_request() {
    let (mut a, mut b) = sync_pair(Config::default());
    check(&mut a, &mut b);
}
