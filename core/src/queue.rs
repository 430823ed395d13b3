//! A fixed-capacity FIFO: `heapless::Deque` with value equality and `Hash`.
//!
//! `heapless::Deque` compares and hashes nothing; the state machines keep
//! their queues in this wrapper so that a whole `Client` or `Connection` can
//! be compared, hashed and cloned (the `rdio-modelcheck` crate stores every
//! state it explores in a hash set). Equality and hashing look at the queued
//! items in order, never at where they sit in the ring buffer.

use core::hash::{Hash, Hasher};
use core::ops::{Deref, DerefMut};

/// Up to `N` items of `T`, first in first out (derefs to `heapless::Deque`).
#[derive(Clone, Debug)]
pub(crate) struct Fifo<T, const N: usize>(heapless::Deque<T, N>);

impl<T, const N: usize> Fifo<T, N> {
    pub(crate) const fn new() -> Self {
        Self(heapless::Deque::new())
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
        &self.0
    }
}

impl<T, const N: usize> DerefMut for Fifo<T, N> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl<T, const N: usize> IntoIterator for Fifo<T, N> {
    type Item = T;
    type IntoIter = <heapless::Deque<T, N> as IntoIterator>::IntoIter;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<T: PartialEq, const N: usize> PartialEq for Fifo<T, N> {
    fn eq(&self, other: &Self) -> bool {
        self.0.iter().eq(other.0.iter())
    }
}

impl<T: Eq, const N: usize> Eq for Fifo<T, N> {}

impl<T: Hash, const N: usize> Hash for Fifo<T, N> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_usize(self.0.len());
        for item in self.0.iter() {
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
    }
}
