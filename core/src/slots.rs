//! The client's request table, where a request id names its slot.
//!
//! Invariant: the entry in slot `s` was given the id `g × R + s` for a
//! generation `g ≥ 1`, and `ids[s]` holds the id last given out in slot `s`
//! (`s` itself, generation 0, while the slot was never used: so the next
//! id is always the last plus `R`). So `id % R` is the only slot an id can
//! live in, and a lookup is one remainder, one load and one compare: an id
//! whose slot is free, or holds a request of another generation (a stale
//! id, answered twice, or forged), is simply not found — never another
//! request's completion.
//!
//! Each use of a slot moves its generation on by one (wrapping back to 1
//! after `u32::MAX / R` uses: an id recurs only after that many requests in
//! the same slot), and allocation goes round the table from the slot after
//! the last one allocated, so a slot is reused as late as possible. Ids are
//! never 0 (`g ≥ 1`), the id the server's unsolicited messages carry.

/// Up to `R` entries of `T`, each under the id [`SlotTable::insert`] gave it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct SlotTable<T, const R: usize> {
    /// The id last given out in each slot (the slot's own number,
    /// generation 0: never used). Part of the state: it decides the slot's
    /// next id.
    ids: [u32; R],
    items: [Option<T>; R],
    len: usize,
    /// Where the search for a free slot starts.
    cursor: usize,
}

impl<T, const R: usize> SlotTable<T, R> {
    pub(crate) const fn new() -> Self {
        // Generation 0 of each slot, an id never given out: the first id
        // is then `s + R` like every later one, the last plus `R`.
        // (Tables have far fewer than 2^32 slots; `next_id` refuses every
        // id of a slot past `u32::MAX`, so such a slot is never used.)
        let mut ids = [0; R];
        let mut rest: &mut [u32] = &mut ids;
        let mut slot: u32 = 0;
        while let [held, tail @ ..] = rest {
            *held = slot;
            slot = slot.wrapping_add(1);
            rest = tail;
        }
        Self {
            ids,
            items: [const { None }; R],
            len: 0,
            cursor: 0,
        }
    }

    /// The only slot `id` can name (`None` for a table of no slots).
    #[inline]
    pub(crate) fn slot_of(id: u32) -> Option<usize> {
        usize::try_from(id).ok()?.checked_rem(R)
    }

    /// The slot holding the entry with `id`.
    #[inline]
    pub(crate) fn find(&self, id: u32) -> Option<usize> {
        let slot = Self::slot_of(id)?;
        match (self.ids.get(slot), self.items.get(slot)) {
            (Some(&held), Some(Some(_))) if held == id => Some(slot),
            _ => None,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn is_full(&self) -> bool {
        self.len >= R
    }

    /// [`SlotTable::insert`] for the usual case alone: when the slot at the
    /// cursor is free (requests finish about in the order they started,
    /// so it almost always is), store the item `make` builds there, under
    /// a fresh id: `(slot, id)`. `None`, with nothing built or changed,
    /// when that slot is taken (or out of ids); the caller then inserts
    /// with [`SlotTable::insert`], which searches. No count check (a free
    /// slot means the table is not full) and no loop; the item is built
    /// in its slot, not aside and copied.
    #[inline(always)]
    pub(crate) fn insert_at_cursor(&mut self, make: impl FnOnce() -> T) -> Option<(usize, u32)> {
        // `cursor` is always below `R` (set by `after` only); for a
        // power-of-two table the mask says so to the compiler, which then
        // drops the bounds checks of the slot's two lookups.
        let slot = if R.is_power_of_two() {
            self.cursor & R.wrapping_sub(1)
        } else {
            self.cursor
        };
        let (Some(entry @ None), Some(last)) = (self.items.get_mut(slot), self.ids.get_mut(slot))
        else {
            return None;
        };
        let id = next_id(*last, slot, R)?;
        *last = id;
        *entry = Some(make());
        // The slot was free, so fewer than R were counted: no overflow.
        self.len = self.len.wrapping_add(1);
        self.cursor = after(slot, R);
        Some((slot, id))
    }

    /// Store `item` in a free slot under a fresh id: `(slot, id)`, or the
    /// item back when the table is full.
    #[inline]
    pub(crate) fn insert(&mut self, item: T) -> Result<(usize, u32), T> {
        if self.len >= R {
            return Err(item);
        }
        // A free slot exists, so this finds one within R steps (in order of
        // completion, at the first). `cursor` is always below R.
        // `cursor` is always below `R` (set by `after` only); for a
        // power-of-two table the mask says so to the compiler, which then
        // drops the bounds checks of the slot's two lookups.
        let mut slot = if R.is_power_of_two() {
            self.cursor & R.wrapping_sub(1)
        } else {
            self.cursor
        };
        for _ in 0..R {
            if let (Some(entry @ None), Some(held)) =
                (self.items.get_mut(slot), self.ids.get_mut(slot))
            {
                let Some(id) = next_id(*held, slot, R) else {
                    return Err(item);
                };
                *held = id;
                *entry = Some(item);
                // Below R (checked above): no overflow.
                self.len = self.len.wrapping_add(1);
                self.cursor = after(slot, R);
                return Ok((slot, id));
            }
            slot = after(slot, R);
        }
        Err(item)
    }

    /// The id of the entry in `slot` (or of the last one, if free).
    pub(crate) fn id(&self, slot: usize) -> Option<u32> {
        self.ids.get(slot).copied()
    }

    #[inline]
    pub(crate) fn get(&self, slot: usize) -> Option<&T> {
        self.items.get(slot)?.as_ref()
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, slot: usize) -> Option<&mut T> {
        self.items.get_mut(slot)?.as_mut()
    }

    /// Free a slot, returning its entry.
    #[inline]
    pub(crate) fn take(&mut self, slot: usize) -> Option<T> {
        let item = self.items.get_mut(slot)?.take();
        if item.is_some() {
            // An entry was counted: no underflow.
            self.len = self.len.wrapping_sub(1);
        }
        item
    }

    /// Free a slot, dropping its entry.
    #[inline]
    pub(crate) fn remove(&mut self, slot: usize) {
        if let Some(entry @ Some(_)) = self.items.get_mut(slot) {
            *entry = None;
            // An entry was counted: no underflow.
            self.len = self.len.wrapping_sub(1);
        }
    }

    /// The occupied slots and their entries, in slot order.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (usize, &mut T)> {
        self.items
            .iter_mut()
            .enumerate()
            .filter_map(|(slot, item)| item.as_mut().map(|item| (slot, item)))
    }

    /// Keep only entries satisfying `keep`.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        for entry in self.items.iter_mut() {
            if entry.as_ref().is_some_and(|item| !keep(item)) {
                *entry = None;
                self.len = self.len.saturating_sub(1);
            }
        }
    }
}

/// The slot after `slot` in a table of `r` slots, round to 0. `r` is the
/// table's constant size: a power of two (the client's 64, as a rule) is
/// a mask, no compare and select (`slot < r`, so `slot + 1` cannot wrap).
#[inline]
fn after(slot: usize, r: usize) -> usize {
    let next = slot.wrapping_add(1);
    if r.is_power_of_two() {
        next & r.wrapping_sub(1)
    } else if next >= r {
        0
    } else {
        next
    }
}

/// The id after `last` in `slot` of a table of `r` slots: the next
/// generation (from generation 0, `last == slot`, the first), back to
/// generation 1 when it would not fit in a `u32`.
fn next_id(last: u32, slot: usize, r: usize) -> Option<u32> {
    let slot = u32::try_from(slot).ok()?;
    let r = u32::try_from(r).ok()?;
    let first = slot.checked_add(r)?;
    Some(last.checked_add(r).unwrap_or(first))
}

#[cfg(test)]
mod tests {
    use super::{SlotTable, after, next_id};

    #[test]
    fn after_goes_round_for_any_size() {
        // A power of two by its mask, any other size by its compare.
        assert_eq!((after(0, 4), after(2, 4), after(3, 4)), (1, 3, 0));
        assert_eq!((after(0, 3), after(1, 3), after(2, 3)), (1, 2, 0));
        assert_eq!(after(0, 1), 0);
    }

    #[test]
    fn ids_name_their_slot_and_generation() {
        let mut t: SlotTable<u32, 4> = SlotTable::new();
        assert_eq!(t.insert(10), Ok((0, 4)), "slot 0, generation 1");
        assert_eq!(t.insert(11), Ok((1, 5)));
        assert_eq!(t.find(5), Some(1));
        assert_eq!(t.get(1), Some(&11));
        assert_eq!(t.find(9), None, "slot 1, generation 2: not given yet");
        assert_eq!(t.find(0), None);
        assert_eq!(t.take(1), Some(11));
        assert_eq!(t.find(5), None, "freed");
        assert_eq!(t.insert(12), Ok((2, 6)), "round the table, not back to 1");
        assert_eq!(t.insert(13), Ok((3, 7)));
        assert_eq!(t.insert(14), Ok((1, 9)), "slot 1 again, generation 2");
        assert_eq!(t.find(5), None, "the stale id is not the new request");
        assert_eq!(t.find(9), Some(1));
        assert!(t.is_full());
        assert_eq!(t.insert(15), Err(15));
        t.retain(|&v| v != 10);
        assert_eq!((t.len(), t.find(4)), (3, None));
        assert_eq!(t.insert(16), Ok((0, 8)));
        let empty: SlotTable<u8, 0> = SlotTable::new();
        assert_eq!(empty.find(3), None);
    }

    #[test]
    fn insert_at_cursor_takes_the_cursors_slot_or_changes_nothing() {
        let mut t: SlotTable<u32, 4> = SlotTable::new();
        let mut same: SlotTable<u32, 4> = SlotTable::new();
        for v in 0..4 {
            assert_eq!(t.insert_at_cursor(|| v), same.insert(v).ok(), "as insert");
        }
        assert_eq!(t, same);
        assert_eq!(t.take(2), Some(2));
        same.take(2);
        // The cursor is back at slot 0, still held: nothing is built or
        // changed, though slot 2 is free (`insert` searches for it).
        let before = t.clone();
        assert_eq!(t.insert_at_cursor(|| unreachable!("not built")), None);
        assert_eq!(t, before);
        assert_eq!(t.insert(9), Ok((2, 10)));
        t.take(0);
        t.take(1);
        // The cursor is at slot 3 (after 2), held; then at 0, free.
        assert_eq!(t.insert_at_cursor(|| 8), None);
        assert_eq!(t.insert(8), Ok((0, 8)));
        assert_eq!(t.insert_at_cursor(|| 7), Some((1, 9)));
        assert_eq!(t.find(9), Some(1));
    }

    #[test]
    fn generations_wrap_to_one_never_to_zero() {
        assert_eq!(next_id(3, 3, 4), Some(7), "generation 0 to 1");
        assert_eq!(next_id(7, 3, 4), Some(11));
        let last = u32::MAX; // the largest id of slot 3 (of 4)
        assert_eq!(last % 4, 3);
        assert_eq!(next_id(last, 3, 4), Some(7));
        assert_eq!(next_id(0, 0, 1), Some(1));
        let t: SlotTable<u8, 4> = SlotTable::new();
        assert_eq!((t.id(0), t.id(3)), (Some(0), Some(3)), "generation 0");
        assert_eq!(t.find(3), None, "generation 0 is never given out");
        assert_eq!(next_id(u32::MAX, 0, 1), Some(1));
    }
}
