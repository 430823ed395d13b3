//! Registered memory: one zeroed heap allocation per region (or memory the
//! caller lent, see [`RegionBytes::external`]), owned by the endpoint's
//! region table and read by the work requests that reference it through a
//! [`Source`] pointer.
//!
//! This is the crate's only `unsafe` code. RDMA memory is written by the
//! "NIC" (here: the delivery code) while the owner may hold `&[u8]` views of
//! it through [`Transport::region`](rdio_transport::Transport::region), so it
//! cannot be an ordinary `Box<[u8]>`. The rules that make it sound are stated
//! on each function and upheld by the crate as a whole:
//!
//! 1. An endpoint's memory is **written** only while that endpoint is
//!    exclusively borrowed: through [`RegionBytes::bytes_mut`] (which the
//!    region table allows only while the region is not busy, i.e. no posted
//!    work request references it), or by [`copy`] while delivering incoming
//!    work inside one of the endpoint's `&mut self` methods. Neither can
//!    overlap a `&[u8]` the endpoint lent out, since those borrow the
//!    endpoint.
//! 2. Another endpoint only ever **reads** this memory, through the
//!    [`Source`] a posted work request holds, and only inside [`copy`].
//! 3. Every [`copy`] runs with the pair's engine locked, so two copies (the
//!    only code that touches memory from two endpoints at once) never run
//!    concurrently.
//! 4. A [`Source`] is only followed while its region is alive: a region
//!    counts as busy from the post that took the `Source` until that
//!    request's completion is drained, and a busy region cannot be
//!    deregistered; the `RegionBytes` sit in a `Box` of their own, so the
//!    table growing does not move them; and an endpoint going away first
//!    flushes (under the engine's lock) every request it posted, so none is
//!    executed after its table is dropped. A request is executed, and its
//!    `Source` followed, at most once, before it is flushed or drained.
//!    (Busy is kept without a count: the region table notes the number of
//!    the last request of each queue that took a `Source` on the region or
//!    a receive buffer in it, and each queue's completions are drained in
//!    its order, so the region is busy exactly while that request has not
//!    been drained. `deregister` compares with the drained counts under
//!    the engine's lock, and only the owning endpoint drains its queues.)
//!
//! Work requests hold plain pointers rather than reference counts: the busy
//! rule already proves the region alive, and an `Arc` per gather element
//! cost two atomic operations per element on the hot path.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::ptr::NonNull;

/// One registered region's bytes.
pub(crate) struct RegionBytes {
    ptr: NonNull<u8>,
    len: usize,
    /// `None` for memory allocated here (freed on drop); for memory lent by
    /// the caller ([`Transport::register_external`]), the value that owns
    /// it, kept (never moved, never borrowed mutably) until drop. Lent
    /// memory is never written: it has no rights that would make it a
    /// receive or write target, and [`RegionBytes::bytes_mut`] refuses it.
    ///
    /// Held as a raw pointer (from `Box::into_raw`), not a `Box`: moving a
    /// `Box` asserts unique access to its contents, which would invalidate
    /// `ptr` when the bytes live inside the owner (an array, say).
    ///
    /// [`Transport::register_external`]: rdio_transport::Transport::register_external
    owner: Option<NonNull<dyn Send + Sync>>,
}

// SAFETY: `RegionBytes` owns its allocation like a `Box<[u8]>` would, or a
// lent owner that is `Send + Sync` itself. Sharing it between threads only
// allows the accesses described in the module docs, which are race-free by
// rules 1-3.
unsafe impl Send for RegionBytes {}
// SAFETY: as above.
unsafe impl Sync for RegionBytes {}

impl RegionBytes {
    /// Allocate `len` zeroed bytes (lazily zeroed pages for large regions,
    /// via `alloc_zeroed`). `None` if the allocator refuses.
    pub(crate) fn zeroed(len: usize) -> Option<Box<Self>> {
        let ptr = if len == 0 {
            NonNull::dangling()
        } else {
            let layout = Layout::array::<u8>(len).ok()?;
            // SAFETY: `layout` has a non-zero size.
            NonNull::new(unsafe { alloc_zeroed(layout) })?
        };
        Some(Box::new(Self {
            ptr,
            len,
            owner: None,
        }))
    }

    /// Take `memory` as a region's bytes without copying. It is boxed first,
    /// so the slice taken from it afterwards does not move with the box.
    pub(crate) fn external<M>(memory: M) -> Box<Self>
    where
        M: AsRef<[u8]> + Send + Sync + 'static,
    {
        let owner = NonNull::from(Box::leak(Box::new(memory)));
        // SAFETY: `owner` points to the live value just leaked; the shared
        // borrow ends before anything else touches it.
        let bytes: &[u8] = unsafe { owner.as_ref() }.as_ref();
        // A slice's pointer is never null (dangling but aligned when empty).
        let ptr = NonNull::from(bytes).cast::<u8>();
        let len = bytes.len();
        let owner: NonNull<dyn Send + Sync> = owner;
        Box::new(Self {
            ptr,
            len,
            owner: Some(owner),
        })
    }

    pub(crate) const fn len(&self) -> usize {
        self.len
    }

    /// A shared view of the bytes.
    ///
    /// # Safety
    /// Nothing may write the region while the returned slice is alive. By
    /// rule 1 that holds if the caller borrows the owning endpoint for the
    /// slice's lifetime.
    pub(crate) unsafe fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` is valid for `len` initialised bytes for as long as
        // `self` lives; the caller guarantees the absence of writers.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// An exclusive view of the bytes, `None` for lent memory (which may be
    /// a read-only mapping and is shared with its owner). Called only for a
    /// region that is not busy: no posted work request holds a [`Source`]
    /// on it that could still be followed (rule 4).
    pub(crate) fn bytes_mut(&mut self) -> Option<&mut [u8]> {
        if self.owner.is_some() {
            return None;
        }
        // SAFETY: memory allocated here, `&mut self` on a region no work
        // request can still read (it is not busy), so no copy can touch it,
        // and any `&[u8]` handed out earlier borrowed the owner, which is
        // now exclusively borrowed.
        Some(unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) })
    }
}

impl Drop for RegionBytes {
    fn drop(&mut self) {
        if let Some(owner) = self.owner {
            // SAFETY: leaked from a `Box` in `external` and never freed
            // elsewhere; the bytes are not used after this point.
            drop(unsafe { Box::from_raw(owner.as_ptr()) });
        } else if self.len != 0 {
            let layout = Layout::array::<u8>(self.len).expect("layout was valid at allocation");
            // SAFETY: allocated in `zeroed` with this very layout.
            unsafe { dealloc(self.ptr.as_ptr(), layout) }
        }
    }
}

/// A posted work request's handle on a gather element's region: where the
/// peer reads from when it executes the request. Followed only under rule 4.
#[derive(Clone, Copy)]
pub(crate) struct Source(NonNull<RegionBytes>);

// SAFETY: a `Source` is only followed under rules 2-4 (read-only, with the
// engine locked, while the region is alive), from whichever thread holds
// the lock; `RegionBytes` is `Sync`.
unsafe impl Send for Source {}

impl Source {
    pub(crate) fn new(bytes: &RegionBytes) -> Self {
        Self(NonNull::from(bytes))
    }

    /// The region's bytes.
    ///
    /// # Safety
    /// The region must still be registered: the request holding this
    /// `Source` was neither flushed nor drained yet (rule 4).
    pub(crate) unsafe fn get<'a>(self) -> &'a RegionBytes {
        // SAFETY: by the caller, the `Box` the pointer came from is alive,
        // and nothing holds `&mut` on it (the region is busy, rule 1).
        unsafe { self.0.as_ref() }
    }
}

/// Copy `len` bytes from `src` at `src_offset` to `dst` at `dst_offset`: the
/// single `memcpy` an RDMA transfer costs.
///
/// # Safety
/// `dst` belongs to the endpoint currently delivering work inside one of its
/// `&mut self` methods (rule 1), `src` to its peer, and the pair's engine is
/// locked for the duration of the call (rule 3). `dst` is memory allocated
/// here, never lent memory (only regions with write rights are targets).
/// Both ranges lie inside their regions: `src_offset + len <= src.len()` and
/// `dst_offset + len <= dst.len()`, without overflow. The engine validates
/// every range before it executes a request (a bad range from the peer is an
/// error completion, never a copy; see `engine::scatter` for where), so the
/// ranges and the other conditions are only re-checked in debug builds (in
/// release builds they cost about 45 instructions per 4 KiB read, three
/// copies, for checks that cannot fail).
pub(crate) unsafe fn copy(
    src: &RegionBytes,
    src_offset: usize,
    dst: &RegionBytes,
    dst_offset: usize,
    len: usize,
) {
    let in_bounds = |region: &RegionBytes, offset: usize| {
        offset.checked_add(len).is_some_and(|end| end <= region.len)
    };
    debug_assert!(
        in_bounds(src, src_offset) && in_bounds(dst, dst_offset),
        "unchecked range reached RegionBytes::copy"
    );
    debug_assert!(
        !std::ptr::eq(src, dst),
        "a region never transfers into itself"
    );
    debug_assert!(dst.owner.is_none(), "lent memory is never a target");
    // SAFETY: both ranges are in bounds of live allocations (the caller
    // guarantees the bounds, rule 4 the liveness). They do not overlap: `dst`
    // is an allocation of its own (`zeroed`; never lent memory, by the
    // caller), owned by exactly one `RegionBytes` of the receiver's table,
    // while `src` is a `RegionBytes` of the sender's table, so another
    // allocation, or lent memory that safe code cannot make point into one of
    // ours (it is `'static`, and views of our memory borrow the endpoint).
    // The caller guarantees no other access to `dst` and no writer of `src`
    // meanwhile.
    unsafe {
        std::ptr::copy_nonoverlapping(
            src.ptr.as_ptr().add(src_offset),
            dst.ptr.as_ptr().add(dst_offset),
            len,
        )
    }
}

/// Copy `src` (bytes that are not region memory: a request's inline data)
/// into `dst` at `dst_offset`.
///
/// # Safety
/// As for [`copy`]'s `dst`: it belongs to the endpoint delivering work
/// inside one of its `&mut self` methods (rule 1), the pair's engine is
/// locked (rule 3), and it is memory allocated here. The range
/// `dst_offset .. dst_offset + src.len()` lies inside `dst`, which the
/// caller validated (checked here in debug builds only).
pub(crate) unsafe fn copy_in(src: &[u8], dst: &RegionBytes, dst_offset: usize) {
    debug_assert!(
        dst_offset
            .checked_add(src.len())
            .is_some_and(|end| end <= dst.len),
        "unchecked range reached memory::copy_in"
    );
    debug_assert!(dst.owner.is_none(), "lent memory is never a target");
    // SAFETY: the range is inside `dst`'s live allocation (by the caller);
    // `src` is not region memory, so the two do not overlap; the caller
    // guarantees no other access to `dst` meanwhile.
    unsafe { copy_bytes(src.as_ptr(), dst.ptr.as_ptr().add(dst_offset), src.len()) }
}

/// `len` bytes from `src` to `dst`, which do not overlap. Up to 32 bytes
/// (an inline status block or request, a write's tail) as two
/// possibly-overlapping loads and stores of a power-of-two width, without
/// the call into libc's `memcpy` and its dispatch on the size, which cost
/// more than such a copy; longer ranges through `memcpy`.
///
/// # Safety
/// `src .. src + len` must be readable and `dst .. dst + len` writable,
/// and the two must not overlap.
#[inline(always)]
unsafe fn copy_bytes(src: *const u8, dst: *mut u8, len: usize) {
    // SAFETY (each arm): both accesses of a width `w` lie inside the
    // ranges, as `w <= len`: at offset 0 and at `len - w`.
    unsafe {
        match len {
            16..=32 => {
                let head = src.cast::<u128>().read_unaligned();
                let tail = src.add(len - 16).cast::<u128>().read_unaligned();
                dst.cast::<u128>().write_unaligned(head);
                dst.add(len - 16).cast::<u128>().write_unaligned(tail);
            }
            8..=15 => {
                let head = src.cast::<u64>().read_unaligned();
                let tail = src.add(len - 8).cast::<u64>().read_unaligned();
                dst.cast::<u64>().write_unaligned(head);
                dst.add(len - 8).cast::<u64>().write_unaligned(tail);
            }
            _ => std::ptr::copy_nonoverlapping(src, dst, len),
        }
    }
}

/// A send-queue entry's inline bytes: a buffer of `max_inline` bytes
/// allocated once, and how many of them the entry holds.
pub(crate) struct InlineBuf {
    buf: Box<[u8]>,
    len: usize,
}

impl InlineBuf {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            buf: vec![0; capacity].into_boxed_slice(),
            len: 0,
        }
    }

    /// The bytes held. (`len` never exceeds the buffer: `set` holds only
    /// what fits, so the index cannot fail; a fallback for it cost 3
    /// instructions per executed write.)
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Hold `data`: whether it fits (its callers check that it does). One
    /// that does not is not held at all (the entry holds nothing), never
    /// cut short.
    #[inline(always)]
    #[must_use]
    pub(crate) fn set(&mut self, data: &[u8]) -> bool {
        let len = data.len();
        if len > self.buf.len() {
            self.len = 0;
            return false;
        }
        // SAFETY: `len` bytes of `data` are readable and, as checked just
        // above, `len` bytes of `buf` writable; the entry's own buffer is
        // not `data`'s memory (it is never lent out mutably).
        unsafe { copy_bytes(data.as_ptr(), self.buf.as_mut_ptr(), len) };
        self.len = len;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::InlineBuf;

    /// Every length up to past the small-copy widths lands whole, byte for
    /// byte, and nothing past it is touched.
    #[test]
    fn small_copies_copy_exactly_their_bytes() {
        let data: Vec<u8> = (1..=64).collect();
        for len in 0..=40 {
            let mut buf = InlineBuf::new(48);
            assert!(buf.set(&[0xee; 48]));
            assert!(buf.set(&data[..len]));
            assert_eq!(buf.bytes(), &data[..len], "length {len}");
            // The rest of the buffer still holds the earlier bytes.
            assert!(buf.buf[len..].iter().all(|&b| b == 0xee), "length {len}");
        }
        // More than the capacity is refused whole, never cut short.
        let mut buf = InlineBuf::new(4);
        assert!(buf.set(&data[..4]));
        assert!(!buf.set(&data[..10]));
        assert!(buf.bytes().is_empty());
    }
}
