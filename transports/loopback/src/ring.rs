//! A fixed-capacity FIFO whose slots are allocated once and reused, so that
//! posting and completing work requests never allocates (a work queue of an
//! RDMA NIC is a ring of preallocated WQEs, too).

pub(crate) struct SlotRing<T> {
    slots: Box<[T]>,
    head: usize,
    len: usize,
}

impl<T> SlotRing<T> {
    /// `capacity` slots, each built by `slot`.
    pub(crate) fn new(capacity: usize, slot: impl FnMut() -> T) -> Self {
        Self {
            slots: std::iter::repeat_with(slot).take(capacity).collect(),
            head: 0,
            len: 0,
        }
    }

    /// Index of the `nth` element from the front; only called with `nth`
    /// below `len` (or equal, when pushing into a non-full ring), so the
    /// capacity is non-zero. `head` is below the capacity and `nth` at most
    /// the capacity, so one conditional subtraction wraps it (a `%` would
    /// be a division on every post, delivery and completion).
    fn index(&self, nth: usize) -> usize {
        let index = self.head + nth;
        if index >= self.slots.len() {
            index - self.slots.len()
        } else {
            index
        }
    }

    /// Append: hands out the next free slot for the caller to fill, or `None`
    /// when the ring is full.
    pub(crate) fn push(&mut self) -> Option<&mut T> {
        if self.len == self.slots.len() {
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
    pub(crate) fn get(&self, nth: usize) -> Option<&T> {
        (nth < self.len).then(|| &self.slots[self.index(nth)])
    }

    /// Remove the front element; the vacated slot is lent to the caller to
    /// read and reset before it is reused.
    pub(crate) fn pop_front(&mut self) -> Option<&mut T> {
        if self.len == 0 {
            return None;
        }
        let index = self.head;
        self.head = self.index(1);
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
