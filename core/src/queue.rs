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
    pub(crate) fn len(&self) -> usize {
        self.len
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

#[cfg(test)]
mod tests {
    use super::Fifo;

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
        let hash = |f: &Fifo<u32, 3>| {
            use core::hash::{Hash, Hasher};
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
            f.hash(&mut h);
            h.finish()
        };
        b.pop_back();
        assert_eq!(hash(&a), hash(&b));
        // The count follows every change.
        assert_eq!((a.len(), a.is_empty()), (a.items.len(), false));
        assert_eq!(a.pop_front(), Some(1));
        assert_eq!(a.pop_back(), Some(2));
        assert_eq!((a.len(), a.is_empty(), a.pop_front()), (0, true, None));
        assert_eq!(a.pop_back(), None);
        assert_eq!(a.push_front(9), Ok(()));
        assert_eq!((a.len(), a.front()), (1, Some(&9)));
        for x in [4, 5, 6] {
            assert_eq!(b.len(), b.items.len());
            let _ = b.push_back(x);
        }
        assert_eq!(b.push_back(7), Err(7), "full");
        assert_eq!(b.push_front(8), Err(8), "full at the front too");
        assert_eq!((b.len(), b.is_full()), (3, true));
        b.clear();
        assert_eq!((b.len(), b.is_empty(), b.items.len()), (0, true, 0));
    }
}
