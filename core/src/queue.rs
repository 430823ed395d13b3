//! A fixed-capacity FIFO: `heapless::Deque` with value equality, `Hash`
//! and a length of its own.
//!
//! `heapless::Deque` compares and hashes nothing; the state machines keep
//! their queues in this wrapper so that a whole `Client` or `Connection` can
//! be compared, hashed and cloned (the `rdio-modelcheck` crate stores every
//! state it explores in a hash set). Equality and hashing look at the queued
//! items in order, never at where they sit in the ring buffer.
//!
//! The wrapper also counts its items: the hot path asks several queues
//! whether they are empty on every request, and one load and compare is
//! cheaper than the deque's test of its two indices and its `full` flag.
//! So the deque is only reached through the methods below, which keep the
//! count (reading it through `Deref` is fine; there is no `DerefMut`).
//!
//! The client's queues of slot numbers are [`SlotQueue`]s instead: a ring
//! of `usize`s with a front and a count and nothing else, cheaper to push
//! and pop than the deque (a read queued for a batch does both).

use core::hash::{Hash, Hasher};
use core::ops::Deref;

/// Up to `N` items of `T`, first in first out (derefs to `heapless::Deque`
/// for reading).
#[derive(Clone, Debug)]
pub(crate) struct Fifo<T, const N: usize> {
    items: heapless::Deque<T, N>,
    /// `items.len()`, kept by every change.
    len: usize,
}

impl<T, const N: usize> Fifo<T, N> {
    pub(crate) const fn new() -> Self {
        Self {
            items: heapless::Deque::new(),
            len: 0,
        }
    }

    #[inline(always)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline(always)]
    pub(crate) fn push_back(&mut self, item: T) -> Result<(), T> {
        self.items.push_back(item)?;
        self.len = self.len.saturating_add(1);
        Ok(())
    }

    #[inline(always)]
    pub(crate) fn push_front(&mut self, item: T) -> Result<(), T> {
        self.items.push_front(item)?;
        self.len = self.len.saturating_add(1);
        Ok(())
    }

    #[inline(always)]
    pub(crate) fn pop_front(&mut self) -> Option<T> {
        let item = self.items.pop_front();
        if item.is_some() {
            self.len = self.len.saturating_sub(1);
        }
        item
    }

    #[inline(always)]
    pub(crate) fn pop_back(&mut self) -> Option<T> {
        let item = self.items.pop_back();
        if item.is_some() {
            self.len = self.len.saturating_sub(1);
        }
        item
    }

    pub(crate) fn clear(&mut self) {
        self.items.clear();
        self.len = 0;
    }
}

impl<T, const N: usize> Default for Fifo<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, const N: usize> Deref for Fifo<T, N> {
    type Target = heapless::Deque<T, N>;

    fn deref(&self) -> &Self::Target {
        &self.items
    }
}

impl<T, const N: usize> IntoIterator for Fifo<T, N> {
    type Item = T;
    type IntoIter = <heapless::Deque<T, N> as IntoIterator>::IntoIter;

    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

impl<T: PartialEq, const N: usize> PartialEq for Fifo<T, N> {
    fn eq(&self, other: &Self) -> bool {
        self.items.iter().eq(other.items.iter())
    }
}

impl<T: Eq, const N: usize> Eq for Fifo<T, N> {}

impl<T: Hash, const N: usize> Hash for Fifo<T, N> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_usize(self.len);
        for item in self.items.iter() {
            item.hash(state);
        }
    }
}

/// A FIFO of slot numbers of a table of `N` slots (the client's `unsent`,
/// `streaming` and `done` queues): a ring of `N` numbers, where the front
/// is and how many follow it.
///
/// [`Fifo`] over `heapless::Deque` keeps a front and a back index, a
/// `full` flag and, for the hot path's emptiness tests, a count besides;
/// every push and pop moves two of them and tests the flag. Here the front
/// and the count are the whole state: a push is a bounds test, one store
/// and an increment, a pop one load and two updates — what a read queued
/// for a batch pays twice. Slot numbers are plain `usize`s, so the ring is
/// an initialised array and needs no `MaybeUninit` (the core forbids
/// `unsafe`).
#[derive(Clone, Debug)]
pub(crate) struct SlotQueue<const N: usize> {
    ring: [usize; N],
    /// Where the front is: below `N` (0 for a ring of none).
    head: usize,
    /// Numbers queued: at most `N`.
    len: usize,
}

/// `at` (below `2N`: a place below `N` plus at most `N`) back into `0..N`.
#[inline(always)]
fn wrap<const N: usize>(at: usize) -> usize {
    if at >= N { at.wrapping_sub(N) } else { at }
}

impl<const N: usize> SlotQueue<N> {
    pub(crate) const fn new() -> Self {
        Self {
            ring: [0; N],
            head: 0,
            len: 0,
        }
    }

    #[inline(always)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline(always)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The number at the front.
    #[inline(always)]
    pub(crate) fn front(&self) -> Option<&usize> {
        if self.len == 0 {
            return None;
        }
        self.ring.get(self.head)
    }

    /// Queue `slot` at the back, or hand it back when the ring is full.
    #[inline(always)]
    pub(crate) fn push_back(&mut self, slot: usize) -> Result<(), usize> {
        if self.len >= N {
            return Err(slot);
        }
        // `head` and `len` are both below N here: no overflow, one wrap.
        match self
            .ring
            .get_mut(wrap::<N>(self.head.wrapping_add(self.len)))
        {
            Some(place) => *place = slot,
            None => return Err(slot),
        }
        self.len = self.len.wrapping_add(1);
        Ok(())
    }

    /// Queue `slot` at the front, or hand it back when the ring is full.
    #[inline(always)]
    pub(crate) fn push_front(&mut self, slot: usize) -> Result<(), usize> {
        if self.len >= N {
            return Err(slot);
        }
        // N > len ≥ 0: N - 1 does not underflow.
        let at = if self.head == 0 {
            N.wrapping_sub(1)
        } else {
            self.head.wrapping_sub(1)
        };
        match self.ring.get_mut(at) {
            Some(place) => *place = slot,
            None => return Err(slot),
        }
        self.head = at;
        self.len = self.len.wrapping_add(1);
        Ok(())
    }

    /// Take the number at the front.
    #[inline(always)]
    pub(crate) fn pop_front(&mut self) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        let slot = self.ring.get(self.head).copied()?;
        // `head` below N: no overflow, one wrap.
        self.head = wrap::<N>(self.head.wrapping_add(1));
        self.len = self.len.wrapping_sub(1);
        Some(slot)
    }

    pub(crate) fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }

    /// The queued numbers, front first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.len).filter_map(move |i| {
            // `head` below N and `i` below `len` ≤ N: one wrap.
            self.ring.get(wrap::<N>(self.head.wrapping_add(i))).copied()
        })
    }

    /// Take every `slot` out of the queue, the others keeping their order.
    pub(crate) fn remove(&mut self, slot: usize) {
        let before = core::mem::take(self);
        for entry in before.iter() {
            if entry != slot {
                // No longer than before: cannot fail.
                let _ = self.push_back(entry);
            }
        }
    }
}

impl<const N: usize> Default for SlotQueue<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> PartialEq for SlotQueue<N> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl<const N: usize> Eq for SlotQueue<N> {}

impl<const N: usize> Hash for SlotQueue<N> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_usize(self.len);
        for slot in self.iter() {
            slot.hash(state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Fifo, SlotQueue};

    #[test]
    fn equal_contents_compare_equal_wherever_they_sit() {
        let mut a: Fifo<u32, 3> = Fifo::new();
        let mut b: Fifo<u32, 3> = Fifo::new();
        // `a` wraps around its ring buffer, `b` does not.
        for x in [9, 9, 9] {
            let _ = a.push_back(x);
        }
        a.pop_front();
        a.pop_front();
        let _ = a.push_back(1);
        let _ = a.push_back(2);
        a.pop_front();
        let _ = b.push_back(1);
        let _ = b.push_back(2);
        assert_eq!(a, b);
        let _ = b.push_back(3);
        assert_ne!(a, b);
        b.pop_back();
        assert_eq!(hash_of(&a), hash_of(&b));
        // The count follows every change.
        assert_eq!((a.len, a.is_empty()), (a.items.len(), false));
        assert_eq!(a.pop_front(), Some(1));
        assert_eq!(a.pop_back(), Some(2));
        assert_eq!((a.len, a.is_empty(), a.pop_front()), (0, true, None));
        assert_eq!(a.pop_back(), None);
        assert_eq!(a.push_front(9), Ok(()));
        assert_eq!((a.len, a.front()), (1, Some(&9)));
        for x in [4, 5, 6] {
            assert_eq!(b.len, b.items.len());
            let _ = b.push_back(x);
        }
        assert_eq!(b.push_back(7), Err(7), "full");
        assert_eq!(b.push_front(8), Err(8), "full at the front too");
        assert_eq!((b.len, b.is_full()), (3, true));
        b.clear();
        assert_eq!((b.len, b.is_empty(), b.items.len()), (0, true, 0));
    }

    #[test]
    fn a_slot_queue_keeps_order_round_its_ring() {
        let mut q: SlotQueue<3> = SlotQueue::new();
        assert_eq!((q.len(), q.is_empty(), q.front()), (0, true, None));
        assert_eq!(q.pop_front(), None);
        for slot in [0, 1, 2] {
            assert_eq!(q.push_back(slot), Ok(()));
        }
        assert_eq!(q.push_back(9), Err(9), "full");
        assert_eq!(q.push_front(9), Err(9), "full at the front too");
        assert_eq!(q.pop_front(), Some(0));
        assert_eq!(q.push_back(3), Ok(()), "into the place the front left");
        assert!(q.iter().eq([1, 2, 3]));
        assert_eq!(q.pop_front(), Some(1));
        assert_eq!(q.pop_front(), Some(2));
        // The front is at the last place: a push at the front goes before
        // it, one at the back round to the first place.
        assert_eq!(q.push_front(7), Ok(()));
        assert_eq!(q.push_back(4), Ok(()));
        assert_eq!((q.len(), q.front()), (3, Some(&7)));
        assert!(q.iter().eq([7, 3, 4]));
        q.remove(3);
        assert!(q.iter().eq([7, 4]));
        // From the very start, a push at the front wraps to the last place.
        let mut fresh: SlotQueue<3> = SlotQueue::new();
        assert_eq!(fresh.push_front(4), Ok(()));
        assert_eq!(fresh.push_front(7), Ok(()));
        assert_eq!(fresh, q, "equal contents, other places");
        assert_eq!(hash_of(&fresh), hash_of(&q));
        assert_eq!(fresh.pop_front(), Some(7));
        assert_ne!(fresh, q);
        q.clear();
        assert_eq!((q.len(), q.is_empty(), q.pop_front()), (0, true, None));
        let mut none: SlotQueue<0> = SlotQueue::new();
        assert_eq!(
            (none.push_back(1), none.push_front(2), none.pop_front()),
            (Err(1), Err(2), None)
        );
    }

    fn hash_of<T: core::hash::Hash>(value: &T) -> u64 {
        use core::hash::Hasher;
        #[derive(Default)]
        struct Sum(u64);
        impl Hasher for Sum {
            fn finish(&self) -> u64 {
                self.0
            }
            fn write(&mut self, bytes: &[u8]) {
                for &b in bytes {
                    self.0 = self.0.wrapping_mul(31).wrapping_add(u64::from(b));
                }
            }
        }
        let mut h = Sum::default();
        value.hash(&mut h);
        h.finish()
    }
}
