//! The counter sees an allocation and a reallocation, and nothing while
//! nothing allocates. No libtest harness: its threads would allocate.

#[global_allocator]
static GLOBAL: rdio_alloc_count::Counting = rdio_alloc_count::Counting;

fn main() {
    let before = rdio_alloc_count::allocations();
    let mut v: Vec<u64> = Vec::with_capacity(1);
    v.push(1);
    let allocated = rdio_alloc_count::allocations();
    assert_eq!(allocated - before, 1, "Vec::with_capacity allocates once");
    v.extend([2, 3, 4, 5]);
    assert!(
        rdio_alloc_count::allocations() > allocated,
        "growing reallocates"
    );
    let quiet = rdio_alloc_count::allocations();
    let sum: u64 = v.iter().sum();
    assert_eq!((sum, rdio_alloc_count::allocations()), (15, quiet));
    println!("alloc-count: counts allocations and reallocations");
}
