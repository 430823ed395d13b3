//! The registered-region table every transport keeps: ids, rights, bounds
//! and the busy rule, written once.
//!
//! Each transport holds its memory its own way — an `mmap` a peer process
//! writes into (`rdio-cma`), a heap allocation registered with `fi_mr_reg`
//! (`rdio-fabric`) or `ibv_reg_mr` (`rdio-verbs`), a shared buffer the
//! in-memory peer writes (`rdio-loopback`) — but the rules around it are the
//! trait's and are the same everywhere:
//!
//! * a [`RegionId`] is never reused, so a stale id fails with
//!   [`TransportError::UnknownRegion`] instead of reaching a newer region;
//! * a slice or a remote window must lie inside its region
//!   ([`TransportError::OutOfBounds`], checked without overflow);
//! * a region referenced by a posted work request whose completion has not
//!   been drained is *busy*: it cannot be written through
//!   [`Transport::region_mut`](crate::Transport::region_mut) or deregistered
//!   ([`TransportError::Busy`]);
//! * memory the caller lent ([`Transport::register_external`](crate::Transport::register_external))
//!   is never written ([`TransportError::ReadOnly`]).
//!
//! [`RegionTable`] enforces them over any [`Registered`] memory; a transport
//! keeps only what is its own (keys, addresses, descriptors, unsafe access to
//! its memory). (`rdio-loopback` keeps the busy rule itself, by the last
//! request referencing each region rather than by the table's counts: its
//! queues are drained in order, which makes a count per reference
//! redundant.) Available with the `alloc` feature.

use alloc::vec::Vec;

use crate::{Access, RegionId, Slice, TransportError};

/// A transport's registered memory, as the table sees it.
pub trait Registered {
    /// The region's length in bytes.
    fn len(&self) -> usize;

    /// Whether the region is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The region's bytes. A remotely writable region may be written by the
    /// peer meanwhile, as a NIC would.
    fn bytes(&self) -> &[u8];

    /// The region's bytes for writing. Called only when no posted work
    /// request references the region.
    fn bytes_mut(&mut self) -> Result<&mut [u8], NotWritable>;
}

/// Why [`Registered::bytes_mut`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotWritable {
    /// Memory the caller lent: never written ([`TransportError::ReadOnly`]).
    Lent,
    /// Still referenced by work in flight the table does not count, such as
    /// a handle a completed request has not dropped yet
    /// ([`TransportError::Busy`]).
    InUse,
}

/// `offset .. offset + len` lies inside `0 .. total` (no overflow).
pub fn within(offset: usize, len: usize, total: usize) -> bool {
    offset.checked_add(len).is_some_and(|end| end <= total)
}

struct Entry<R> {
    region: R,
    access: Access,
    /// Scatter/gather elements and receives of posted work requests that
    /// reference the region and whose completions have not been drained.
    busy: u32,
}

/// Every region of one transport, indexed by [`RegionId`] (ids are handed
/// out in order from 0 and never reused).
pub struct RegionTable<R> {
    slots: Vec<Option<Entry<R>>>,
}

impl<R> Default for RegionTable<R> {
    fn default() -> Self {
        Self { slots: Vec::new() }
    }
}

impl<R> core::fmt::Debug for RegionTable<R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RegionTable")
            .field("ids", &self.slots.len())
            .field("live", &self.slots.iter().flatten().count())
            .finish()
    }
}

impl<R: Registered> RegionTable<R> {
    /// An empty table.
    pub const fn new() -> Self {
        Self { slots: Vec::new() }
    }

    /// The id the next [`Self::insert`] will give, for transports that derive
    /// a key or an address from it before registering; `NoMemory` when ids
    /// are exhausted.
    pub fn next_id(&self) -> Result<RegionId, TransportError> {
        u32::try_from(self.slots.len())
            .map(RegionId)
            .map_err(|_| TransportError::NoMemory)
    }

    /// Keep `region`, with `access` rights, under the next id.
    pub fn insert(&mut self, region: R, access: Access) -> Result<RegionId, TransportError> {
        let id = self.next_id()?;
        self.slots.push(Some(Entry {
            region,
            access,
            busy: 0,
        }));
        Ok(id)
    }

    fn entry(&self, id: RegionId) -> Result<&Entry<R>, TransportError> {
        self.slots
            .get(id.0 as usize)
            .and_then(Option::as_ref)
            .ok_or(TransportError::UnknownRegion(id))
    }

    fn entry_mut(&mut self, id: RegionId) -> Result<&mut Entry<R>, TransportError> {
        self.slots
            .get_mut(id.0 as usize)
            .and_then(Option::as_mut)
            .ok_or(TransportError::UnknownRegion(id))
    }

    /// The region `id` names.
    pub fn get(&self, id: RegionId) -> Result<&R, TransportError> {
        self.entry(id).map(|entry| &entry.region)
    }

    /// The region `id` names, for the transport to update what it keeps
    /// with it.
    pub fn get_mut(&mut self, id: RegionId) -> Result<&mut R, TransportError> {
        self.entry_mut(id).map(|entry| &mut entry.region)
    }

    /// The rights `id` was registered with.
    pub fn access(&self, id: RegionId) -> Result<Access, TransportError> {
        self.entry(id).map(|entry| entry.access)
    }

    /// The region `id` names and its rights, in one lookup.
    pub fn get_with_access(&self, id: RegionId) -> Result<(&R, Access), TransportError> {
        self.entry(id).map(|entry| (&entry.region, entry.access))
    }

    /// Count one more posted work request referencing `slice`'s region (as
    /// [`Self::acquire`]) and return the region and whether `slice` lies
    /// inside it, in one lookup: what a transport does per gather element
    /// of a post. An unknown region is an error and counts nothing.
    pub fn hold(&mut self, slice: Slice) -> Result<(&R, bool), TransportError> {
        let entry = self.entry_mut(slice.region)?;
        entry.busy = entry.busy.saturating_add(1);
        let inside = within(slice.offset, slice.len, entry.region.len());
        Ok((&entry.region, inside))
    }

    /// The region `slice` lies in, with its rights, once the slice is
    /// checked to lie inside it.
    pub fn resolve(&self, slice: Slice) -> Result<(&R, Access), TransportError> {
        let entry = self.entry(slice.region)?;
        if !within(slice.offset, slice.len, entry.region.len()) {
            return Err(TransportError::OutOfBounds);
        }
        Ok((&entry.region, entry.access))
    }

    /// The region a remote window of `len` bytes at `offset` would expose,
    /// with the window's length as a [`crate::RemoteBuf`] carries it, once
    /// both are checked.
    pub fn window(
        &self,
        id: RegionId,
        offset: usize,
        len: usize,
    ) -> Result<(&R, u32), TransportError> {
        let region = self.get(id)?;
        let window = u32::try_from(len).map_err(|_| TransportError::OutOfBounds)?;
        if !within(offset, len, region.len()) {
            return Err(TransportError::OutOfBounds);
        }
        Ok((region, window))
    }

    /// The region's bytes.
    pub fn bytes(&self, id: RegionId) -> Result<&[u8], TransportError> {
        self.get(id).map(Registered::bytes)
    }

    /// The region's bytes for writing: refused while it is busy, and for
    /// lent memory.
    pub fn bytes_mut(&mut self, id: RegionId) -> Result<&mut [u8], TransportError> {
        let entry = self.entry_mut(id)?;
        if entry.busy > 0 {
            return Err(TransportError::Busy(id));
        }
        entry.region.bytes_mut().map_err(|why| match why {
            NotWritable::Lent => TransportError::ReadOnly(id),
            NotWritable::InUse => TransportError::Busy(id),
        })
    }

    /// A posted work request now references `id` (no-op for unknown ids,
    /// which the post has refused already).
    pub fn acquire(&mut self, id: RegionId) {
        if let Ok(entry) = self.entry_mut(id) {
            entry.busy = entry.busy.saturating_add(1);
        }
    }

    /// The completion of a work request referencing `id` was drained.
    pub fn release(&mut self, id: RegionId) {
        if let Ok(entry) = self.entry_mut(id) {
            debug_assert!(entry.busy > 0, "region {} released more than held", id.0);
            entry.busy = entry.busy.saturating_sub(1);
        }
    }

    /// How many posted work requests reference `id` (0 for unknown ids).
    pub fn busy(&self, id: RegionId) -> u32 {
        self.entry(id).map_or(0, |entry| entry.busy)
    }

    /// Take the region out of the table; refused while it is busy. Its id
    /// stays spent.
    pub fn remove(&mut self, id: RegionId) -> Result<R, TransportError> {
        if self.entry(id)?.busy > 0 {
            return Err(TransportError::Busy(id));
        }
        self.slots
            .get_mut(id.0 as usize)
            .and_then(Option::take)
            .map(|entry| entry.region)
            .ok_or(TransportError::UnknownRegion(id))
    }

    /// Every live region with its id.
    pub fn iter(&self) -> impl Iterator<Item = (RegionId, &R)> {
        self.slots.iter().enumerate().filter_map(|(index, slot)| {
            let entry = slot.as_ref()?;
            Some((RegionId(u32::try_from(index).ok()?), &entry.region))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// Heap bytes, or "lent" (read-only) bytes.
    struct Bytes(Vec<u8>, bool);

    impl Registered for Bytes {
        fn len(&self) -> usize {
            self.0.len()
        }
        fn bytes(&self) -> &[u8] {
            &self.0
        }
        fn bytes_mut(&mut self) -> Result<&mut [u8], NotWritable> {
            if self.1 {
                Err(NotWritable::Lent)
            } else {
                Ok(&mut self.0[..])
            }
        }
    }

    fn slice(region: RegionId, offset: usize, len: usize) -> Slice {
        Slice {
            region,
            offset,
            len,
        }
    }

    #[test]
    fn ids_are_never_reused() {
        let mut table = RegionTable::new();
        let a = table
            .insert(Bytes(vec![0; 8], false), Access::LOCAL_WRITE)
            .unwrap();
        assert_eq!(table.next_id().unwrap(), RegionId(1));
        table.remove(a).unwrap();
        let b = table
            .insert(Bytes(vec![0; 8], false), Access::empty())
            .unwrap();
        assert_ne!(a, b);
        assert_eq!(table.get(a).err(), Some(TransportError::UnknownRegion(a)));
        assert_eq!(
            table.get_mut(a).err(),
            Some(TransportError::UnknownRegion(a))
        );
        assert_eq!(table.get_mut(b).map(|region| region.0.len()), Ok(8));
        assert_eq!(
            table.remove(a).err(),
            Some(TransportError::UnknownRegion(a))
        );
        assert_eq!(table.iter().map(|(id, _)| id).collect::<Vec<_>>(), [b]);
    }

    #[test]
    fn bounds_are_checked_without_overflow() {
        let mut table = RegionTable::new();
        let id = table
            .insert(Bytes(vec![0; 16], false), Access::REMOTE_WRITE)
            .unwrap();
        assert!(table.resolve(slice(id, 0, 16)).is_ok());
        assert!(table.resolve(slice(id, 16, 0)).is_ok());
        for (offset, len) in [(0, 17), (16, 1), (usize::MAX, 2), (1, usize::MAX)] {
            assert_eq!(
                table.resolve(slice(id, offset, len)).err(),
                Some(TransportError::OutOfBounds),
                "{offset} + {len}"
            );
        }
        assert_eq!(table.window(id, 8, 8).map(|(_, len)| len), Ok(8));
        assert_eq!(
            table.window(id, 8, 9).err(),
            Some(TransportError::OutOfBounds)
        );
        assert_eq!(
            table.resolve(slice(RegionId(9), 0, 0)).err(),
            Some(TransportError::UnknownRegion(RegionId(9)))
        );
        assert_eq!(table.access(id), Ok(Access::REMOTE_WRITE));
    }

    #[test]
    fn busy_regions_are_neither_written_nor_removed_and_lent_ones_never_written() {
        let mut table = RegionTable::new();
        let id = table
            .insert(Bytes(vec![0; 4], false), Access::LOCAL_WRITE)
            .unwrap();
        table.acquire(id);
        table.acquire(id);
        assert_eq!(table.busy(id), 2);
        assert_eq!(table.bytes_mut(id).err(), Some(TransportError::Busy(id)));
        assert_eq!(table.remove(id).err(), Some(TransportError::Busy(id)));
        assert_eq!(table.bytes(id).map(<[u8]>::len), Ok(4), "reading is fine");
        table.release(id);
        table.release(id);
        assert!(table.hold(slice(id, 0, 4)).unwrap().1, "inside");
        assert!(!table.hold(slice(id, 1, 4)).unwrap().1, "past the end");
        assert_eq!(table.busy(id), 2, "held either way");
        assert!(table.hold(slice(RegionId(9), 0, 1)).is_err());
        table.release(id);
        table.release(id);
        table.bytes_mut(id).unwrap()[0] = 7;
        assert_eq!(table.bytes(id).unwrap()[0], 7);
        let lent = table
            .insert(Bytes(vec![1; 4], true), Access::empty())
            .unwrap();
        assert_eq!(
            table.bytes_mut(lent).err(),
            Some(TransportError::ReadOnly(lent))
        );
        assert!(table.remove(id).is_ok());
        assert_eq!(table.busy(id), 0);
    }
}
