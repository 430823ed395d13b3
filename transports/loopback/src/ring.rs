//! A fixed-capacity FIFO whose slots are allocated once and reused, so that
//! posting and completing work requests never allocates (a work queue of an
//! RDMA NIC is a ring of preallocated WQEs, too).

pub(crate) struct SlotRing<T> {
    /// A power of two of them (at least `capacity`), so that a position
    /// wraps with a mask instead of a comparison or a division.
    slots: Box<[T]>,
    /// `slots.len() - 1`: a position masked by it indexes `slots` (`push`
    /// relies on it, unchecked). Both are set in `new` only.
    mask: usize,
    /// Most elements the ring holds (the queue depth it models).
    capacity: usize,
    /// Position of the front element, free running (wrapped by `mask`).
    head: usize,
    len: usize,
}

impl<T> SlotRing<T> {
    /// `capacity` slots (rounded up to a power of two, the extra ones never
    /// used at once), each built by `slot`.
    pub(crate) fn new(capacity: usize, slot: impl FnMut() -> T) -> Self {
        let size = capacity.next_power_of_two();
        Self {
            slots: std::iter::repeat_with(slot).take(size).collect(),
            mask: size - 1,
            capacity,
            head: 0,
            len: 0,
        }
    }

    /// Index of the `nth` element from the front.
    fn index(&self, nth: usize) -> usize {
        self.head.wrapping_add(nth) & self.mask
    }

    /// Append: hands out the next free slot for the caller to fill, or `None`
    /// when the ring is full.
    pub(crate) fn push(&mut self) -> Option<&mut T> {
        if self.len == self.capacity {
            return None;
        }
        let index = self.index(self.len);
        self.len += 1;
        // SAFETY: `index` is masked by `mask`, which is `slots.len() - 1`
        // (both set in `new` only), so it is in bounds. Unchecked: the
        // index check and its panic path, in the inlined push of every
        // post and receive posted, cost about 8 instructions per read.
        Some(unsafe { self.slots.get_unchecked_mut(index) })
    }

    /// Elements in the ring.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The `nth` element from the front.
    #[cfg(test)]
    pub(crate) fn get(&self, nth: usize) -> Option<&T> {
        (nth < self.len).then(|| &self.slots[self.index(nth)])
    }

    /// The `nth` element from the front, to update in place.
    pub(crate) fn get_mut(&mut self, nth: usize) -> Option<&mut T> {
        if nth < self.len {
            let index = self.index(nth);
            Some(&mut self.slots[index])
        } else {
            None
        }
    }

    /// The first `n` elements (all of them if there are fewer), front to
    /// back, as two slices: see [`Self::range_mut`].
    #[cfg(test)]
    pub(crate) fn front_mut(&mut self, n: usize) -> (&mut [T], &mut [T]) {
        self.range_mut(0, n)
    }

    /// The elements from the `from`th to before the `to`th from the front
    /// (clamped to those in the ring), front to back, as two slices: up to
    /// the end of the storage, then what wrapped around to its start.
    /// Walking them costs a pointer increment per element where
    /// [`Self::get_mut`] recomputes and checks an index.
    pub(crate) fn range_mut(&mut self, from: usize, to: usize) -> (&mut [T], &mut [T]) {
        let to = to.min(self.len);
        let from = from.min(to);
        let n = to - from;
        let start = self.head.wrapping_add(from) & self.mask;
        // No index here can fail: `start <= mask < slots.len()`, and if the
        // range wraps (`first == slots.len() - start`), `n - first <= start`
        // since `n <= len <= capacity <= slots.len()`.
        let (wrapped, from_start) = self.slots.split_at_mut(start);
        let first = n.min(from_start.len());
        (&mut from_start[..first], &mut wrapped[..n - first])
    }

    /// The first `n` elements (all of them if there are fewer), front to
    /// back, one at a time.
    pub(crate) fn front_iter_mut(&mut self, n: usize) -> FrontIterMut<'_, T> {
        self.range_iter_mut(0, n)
    }

    /// The elements [`Self::range_mut`] gives, one at a time.
    pub(crate) fn range_iter_mut(&mut self, from: usize, to: usize) -> FrontIterMut<'_, T> {
        let (first, second) = self.range_mut(from, to);
        FrontIterMut {
            first: first.iter_mut(),
            second: second.iter_mut(),
        }
    }

    /// Remove the first `n` elements (all of them if there are fewer); their
    /// slots keep their contents until they are reused.
    pub(crate) fn discard_front(&mut self, n: usize) {
        debug_assert!(n <= self.len, "discarding more than the ring holds");
        let n = n.min(self.len);
        self.head = self.head.wrapping_add(n);
        self.len -= n;
    }

    /// Remove the front element; the vacated slot is lent to the caller to
    /// read and reset before it is reused.
    #[cfg(test)]
    pub(crate) fn pop_front(&mut self) -> Option<&mut T> {
        if self.len == 0 {
            return None;
        }
        let index = self.index(0);
        self.head = self.head.wrapping_add(1);
        self.len -= 1;
        Some(&mut self.slots[index])
    }
}

/// What [`SlotRing::front_iter_mut`] returns: a `Chain` of the two slices
/// without its fusing flag, which cost a test per element.
pub(crate) struct FrontIterMut<'a, T> {
    first: std::slice::IterMut<'a, T>,
    second: std::slice::IterMut<'a, T>,
}

impl<T> FrontIterMut<'_, T> {
    /// How many elements are left.
    pub(crate) fn len(&self) -> usize {
        self.first.len() + self.second.len()
    }
}

impl<'a, T> Iterator for FrontIterMut<'a, T> {
    type Item = &'a mut T;

    #[inline]
    fn next(&mut self) -> Option<&'a mut T> {
        match self.first.next() {
            Some(element) => Some(element),
            None => self.second.next(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SlotRing;

    #[test]
    fn fifo_with_wraparound_and_reuse() {
        let mut ring = SlotRing::new(3, Vec::<u32>::new);
        for round in 0..5u32 {
            ring.push().unwrap().push(round);
            ring.push().unwrap().push(round + 100);
            assert_eq!(ring.get(1), Some(&vec![round + 100]));
            let front = ring.pop_front().unwrap();
            assert_eq!(front, &vec![round]);
            front.clear();
            ring.pop_front().unwrap().clear();
            assert!(ring.pop_front().is_none());
        }
        for n in 0..3 {
            ring.push().unwrap().push(n);
        }
        assert!(ring.push().is_none());
        assert_eq!(ring.get(2), Some(&vec![2]));
        assert_eq!(ring.get(3), None);
    }

    #[test]
    fn front_slices_follow_the_wraparound() {
        let mut ring = SlotRing::new(4, || 0u32);
        for value in 0..3 {
            *ring.push().unwrap() = value;
        }
        ring.discard_front(3);
        for value in 10..14 {
            *ring.push().unwrap() = value;
        }
        let (first, second) = ring.front_mut(3);
        assert_eq!((&*first, &*second), (&[10][..], &[11, 12][..]));
        let (first, second) = ring.front_mut(9);
        assert_eq!((&*first, &*second), (&[10][..], &[11, 12, 13][..]));
        let walked: Vec<u32> = ring.front_iter_mut(3).map(|x| *x).collect();
        assert_eq!(walked, [10, 11, 12]);
        ring.discard_front(2);
        let (first, second) = ring.front_mut(usize::MAX);
        assert_eq!((&*first, &*second), (&[12, 13][..], &[][..]));
        let walked: Vec<u32> = ring.front_iter_mut(9).map(|x| *x).collect();
        assert_eq!(walked, [12, 13]);
        ring.discard_front(2);
        assert_eq!(ring.len(), 0);
        let (first, second) = ring.front_mut(1);
        assert!(first.is_empty() && second.is_empty());
        for value in 20..24 {
            *ring.push().unwrap() = value;
        }
        // The front is in the last slot of the storage.
        let (first, second) = ring.range_mut(0, 3);
        assert_eq!((&*first, &*second), (&[20][..], &[21, 22][..]));
        let (first, second) = ring.range_mut(2, 9);
        assert_eq!((&*first, &*second), (&[22, 23][..], &[][..]));
        let walked: Vec<u32> = ring.range_iter_mut(1, 9).map(|x| *x).collect();
        assert_eq!(walked, [21, 22, 23]);
        let (first, second) = ring.range_mut(5, 9);
        assert!(first.is_empty() && second.is_empty());
    }

    #[test]
    fn zero_capacity_is_always_full() {
        let mut ring = SlotRing::new(0, || 0u8);
        assert!(ring.push().is_none());
        assert!(ring.pop_front().is_none());
        assert_eq!(ring.get(0), None);
        let (first, second) = ring.front_mut(1);
        assert!(first.is_empty() && second.is_empty());
    }
}
