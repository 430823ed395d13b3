//! A fixed-capacity FIFO whose slots are allocated once and reused, so that
//! posting and completing work requests never allocates (a work queue of an
//! RDMA NIC is a ring of preallocated WQEs, too).

pub(crate) struct SlotRing<T> {
    /// A power of two of them (at least `capacity`), so that a position
    /// wraps with a mask instead of a comparison or a division.
    slots: Box<[T]>,
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
        Some(&mut self.slots[index])
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

    /// Remove the front element; the vacated slot is lent to the caller to
    /// read and reset before it is reused.
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
    fn zero_capacity_is_always_full() {
        let mut ring = SlotRing::new(0, || 0u8);
        assert!(ring.push().is_none());
        assert!(ring.pop_front().is_none());
        assert_eq!(ring.get(0), None);
    }
}
