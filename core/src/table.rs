//! The server's fixed table of in-flight requests keyed by the client's
//! request id (opaque to the server: `docs/PROTOCOL.md`, "Request ids").
//!
//! Entries never move once inserted (no `swap_remove` copying a few hundred
//! bytes per completion), and lookup starts at the slot `id % R`: an rdio
//! client's ids name its own slots (`id % R_client`, `crate::slots`), so with
//! equal capacities the server's lookups hit at once and nearly always do
//! otherwise. A lookup probes
//! no further than the largest displacement of any entry from its home slot
//! (reset whenever the table empties), so a miss — the server's duplicate-id
//! check on every request — is as cheap as a hit.

/// Why [`OpTable::insert`] refused an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// An entry under the same id is in the table.
    Duplicate,
    /// Every slot is taken.
    Full,
}

/// Up to `R` entries of `T`, each under a `u32` id.
///
/// Equality and `Hash` are those of the occupied slots (slot, id, entry) and
/// the probe bound: the id left behind in a free slot is never read.
#[derive(Clone, Debug)]
pub(crate) struct OpTable<T, const R: usize> {
    ids: [u32; R],
    items: [Option<T>; R],
    len: usize,
    /// No entry sits more than this many slots past its home.
    max_displacement: usize,
}

impl<T, const R: usize> OpTable<T, R> {
    pub(crate) const fn new() -> Self {
        Self {
            ids: [0; R],
            items: [const { None }; R],
            len: 0,
            max_displacement: 0,
        }
    }

    /// `id`'s home slot.
    fn home(id: u32) -> usize {
        usize::try_from(id)
            .ok()
            .and_then(|id| id.checked_rem(R))
            .unwrap_or(0)
    }

    /// The slot `step` places after `home`, wrapping around (`step < R`).
    /// A plain loop over this is markedly cheaper than a chained iterator
    /// on the hot path (every request, every completion).
    fn nth_after(home: usize, step: usize) -> usize {
        let slot = home.wrapping_add(step);
        if slot >= R {
            slot.wrapping_sub(R)
        } else {
            slot
        }
    }

    fn is_free(&self, slot: usize) -> bool {
        self.items.get(slot).is_some_and(Option::is_none)
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The slot holding `id`.
    #[inline]
    pub(crate) fn find(&self, id: u32) -> Option<usize> {
        let home = Self::home(id);
        // Nothing displaced (the usual case, as in `insert`): `id` can only
        // be at its home.
        if self.max_displacement == 0 {
            let held = self.ids.get(home) == Some(&id) && !self.is_free(home);
            return held.then_some(home);
        }
        let probes = self.max_displacement.saturating_add(1).min(R);
        let mut slot = home;
        for _ in 0..probes {
            if self.ids.get(slot) == Some(&id) && !self.is_free(slot) {
                return Some(slot);
            }
            slot = Self::nth_after(slot, 1);
        }
        None
    }

    /// Insert under `id`, unless an entry already has it: `Err` gives the
    /// item back with why (a duplicate, or the table is full). The search
    /// for a duplicate and for a free slot are one probe sequence: an entry
    /// under `id` sits at most `max_displacement` past `id`'s home, and in
    /// that stretch the first free slot is where the new entry goes (so a
    /// duplicate check before an insert costs no second lookup).
    // Inlined so that the op is built in its slot, not on the caller's
    // stack and then copied (21 instructions per read; `#[inline]` alone
    // left it out of line).
    #[inline(always)]
    pub(crate) fn insert(&mut self, id: u32, item: T) -> Result<usize, (Refused, T)> {
        let home = Self::home(id);
        // Nothing displaced (the usual case: an rdio client's ids name its
        // own slots): `id` can only be at its home, and goes there if free.
        if self.max_displacement == 0 {
            match (self.ids.get_mut(home), self.items.get_mut(home)) {
                (Some(slot_id), Some(entry @ None)) => {
                    *slot_id = id;
                    *entry = Some(item);
                    self.len = self.len.saturating_add(1);
                    return Ok(home);
                }
                (Some(&mut held), Some(Some(_))) if held == id => {
                    return Err((Refused::Duplicate, item));
                }
                _ => {}
            }
        }
        self.insert_probing(home, id, item)
    }

    /// [`OpTable::insert`] past the home slot.
    fn insert_probing(&mut self, home: usize, id: u32, item: T) -> Result<usize, (Refused, T)> {
        let mut slot = home;
        let probes = self.max_displacement.saturating_add(1).min(R);
        let mut free: Option<(usize, usize)> = None;
        let mut step: usize = 0;
        while step < probes {
            if self.is_free(slot) {
                if free.is_none() {
                    free = Some((slot, step));
                }
            } else if self.ids.get(slot) == Some(&id) {
                return Err((Refused::Duplicate, item));
            }
            slot = Self::nth_after(slot, 1);
            step = step.wrapping_add(1);
        }
        // No free slot within reach of the lookups: go on past it (the
        // probe bound grows to cover the new entry).
        let (slot, displacement) = match free {
            Some(found) => found,
            None => {
                while !self.is_free(slot) {
                    step = step.wrapping_add(1);
                    if step >= R {
                        return Err((Refused::Full, item));
                    }
                    slot = Self::nth_after(slot, 1);
                }
                (slot, step)
            }
        };
        match (self.ids.get_mut(slot), self.items.get_mut(slot)) {
            (Some(slot_id), Some(entry)) => {
                *slot_id = id;
                *entry = Some(item);
                self.len = self.len.saturating_add(1);
                self.max_displacement = self.max_displacement.max(displacement);
                Ok(slot)
            }
            _ => Err((Refused::Full, item)),
        }
    }

    pub(crate) fn get(&self, slot: usize) -> Option<&T> {
        self.items.get(slot)?.as_ref()
    }

    pub(crate) fn get_mut(&mut self, slot: usize) -> Option<&mut T> {
        self.items.get_mut(slot)?.as_mut()
    }

    /// Free a slot.
    pub(crate) fn remove(&mut self, slot: usize) {
        self.take(slot);
    }

    /// Free a slot, returning its entry.
    pub(crate) fn take(&mut self, slot: usize) -> Option<T> {
        let item = self.items.get_mut(slot)?.take();
        if item.is_some() {
            self.len = self.len.saturating_sub(1);
            self.reset_if_empty();
        }
        item
    }

    fn reset_if_empty(&mut self) {
        if self.len == 0 {
            self.max_displacement = 0;
        }
    }

    /// The first slot whose entry satisfies `pred`.
    pub(crate) fn position(&self, mut pred: impl FnMut(&T) -> bool) -> Option<usize> {
        self.items
            .iter()
            .position(|entry| entry.as_ref().is_some_and(&mut pred))
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.items.iter().flatten()
    }

    /// Keep only entries satisfying `keep`.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        for entry in self.items.iter_mut() {
            if entry.as_ref().is_some_and(|item| !keep(item)) {
                *entry = None;
                self.len = self.len.saturating_sub(1);
            }
        }
        self.reset_if_empty();
    }

    pub(crate) fn clear(&mut self) {
        self.retain(|_| false);
    }
}

impl<T, const R: usize> OpTable<T, R> {
    /// The occupied slots, in slot order.
    fn occupied(&self) -> impl Iterator<Item = (usize, u32, &T)> {
        self.ids
            .iter()
            .zip(self.items.iter())
            .enumerate()
            .filter_map(|(slot, (id, item))| item.as_ref().map(|item| (slot, *id, item)))
    }
}

impl<T: PartialEq, const R: usize> PartialEq for OpTable<T, R> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len
            && self.max_displacement == other.max_displacement
            && self.occupied().eq(other.occupied())
    }
}

impl<T: Eq, const R: usize> Eq for OpTable<T, R> {}

impl<T: core::hash::Hash, const R: usize> core::hash::Hash for OpTable<T, R> {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.len.hash(state);
        self.max_displacement.hash(state);
        for entry in self.occupied() {
            entry.hash(state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{OpTable, Refused};

    #[test]
    fn insert_find_remove_with_collisions() {
        let mut t: OpTable<u32, 4> = OpTable::new();
        assert_eq!(t.insert(1, 10), Ok(1));
        assert_eq!(t.insert(5, 50), Ok(2), "collides with 1, probes on");
        assert_eq!(t.insert(3, 30), Ok(3));
        assert_eq!(t.insert(7, 70), Ok(0), "wraps around");
        assert_eq!(t.insert(9, 90), Err((Refused::Full, 90)));
        assert_eq!(t.insert(5, 51), Err((Refused::Duplicate, 51)));
        assert_eq!(t.len(), 4);
        assert_eq!(t.find(5).and_then(|s| t.get(s)), Some(&50));
        t.remove(2);
        assert_eq!(t.find(5), None);
        assert_eq!(t.find(7), Some(0), "found past a hole");
        assert_eq!(
            t.insert(7, 71),
            Err((Refused::Duplicate, 71)),
            "a duplicate past a hole is still seen"
        );
        assert_eq!(t.insert(13, 130), Ok(2), "the hole is taken first");
        t.retain(|&v| v != 10);
        assert_eq!((t.len(), t.find(1)), (3, None));
        t.clear();
        assert_eq!(t.len(), 0);
        let empty: OpTable<u8, 0> = OpTable::new();
        assert_eq!(empty.find(3), None);
    }

    #[test]
    fn find_without_displacement_looks_home_only() {
        let mut t: OpTable<u32, 4> = OpTable::new();
        assert_eq!(t.insert(1, 10), Ok(1));
        assert_eq!(t.insert(2, 20), Ok(2));
        assert_eq!(t.find(1), Some(1));
        assert_eq!(t.find(5), None, "home 1 holds another id");
        t.remove(2);
        assert_eq!(t.find(2), None, "a freed slot keeps its stale id");
        assert_eq!(t.find(3), None, "never used");
        // A displaced entry turns the probing back on, and emptying the
        // table turns it off again.
        assert_eq!(t.insert(5, 50), Ok(2));
        assert_eq!(t.find(5), Some(2));
        t.clear();
        assert_eq!((t.find(1), t.find(5)), (None, None));
    }

    #[test]
    fn equality_ignores_what_free_slots_left_behind() {
        let mut a: OpTable<u32, 4> = OpTable::new();
        let mut b: OpTable<u32, 4> = OpTable::new();
        // `a` leaves id 2 behind in slot 2; `b` never used that slot.
        assert_eq!(a.insert(2, 20), Ok(2));
        a.remove(2);
        assert_eq!(a.insert(1, 10), Ok(1));
        assert_eq!(b.insert(1, 10), Ok(1));
        assert_eq!(a, b);
        assert_eq!(a.clone(), b);
        // A live entry differing in id, slot or value makes them differ.
        assert_eq!(b.insert(3, 30), Ok(3));
        assert_ne!(a, b);
        assert_eq!(a.insert(7, 30), Ok(3));
        assert_ne!(a, b, "same slot and value, other id");
    }
}
