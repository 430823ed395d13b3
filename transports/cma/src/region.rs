//! Registered memory: this side's regions, and the windows the peer
//! advertised, which every outgoing RDMA write is checked against.

use std::collections::HashMap;

use rdio_transport::regions::{self, NotWritable, Registered};
use rdio_transport::{Access, RegionId, RemoteBuf, Slice, TransportError};

use crate::sys::{Mapping, Span};

/// Where a region's bytes live.
enum Memory {
    /// Allocated by [`RegionTable::register`]; held to unmap it on drop.
    Owned { _mapping: Mapping },
    /// Lent by the caller ([`rdio_transport::Transport::register_external`]);
    /// read through the pointer taken from its one `as_ref()` call.
    External(Box<dyn AsRef<[u8]> + Send + Sync>),
}

/// A registered region: its memory and remote key. Rights, bounds and the
/// busy rule are the shared table's ([`regions::RegionTable`]).
pub(crate) struct Region {
    memory: Memory,
    ptr: *mut u8,
    len: usize,
    key: u32,
    /// Registered with `REMOTE_WRITE`: advertised to the peer, and revoked
    /// when deregistered.
    remote_writable: bool,
}

// SAFETY: `ptr` points into `memory`, which is `Send + Sync` (an owned
// mapping, or a lent `Send + Sync` value) and owned by the region.
unsafe impl Send for Region {}

impl Region {
    pub(crate) fn key(&self) -> u32 {
        self.key
    }

    pub(crate) fn addr(&self) -> u64 {
        self.ptr as u64
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether the peer may write into it (then it was advertised).
    pub(crate) fn remote_writable(&self) -> bool {
        self.remote_writable
    }
}

impl Registered for Region {
    fn len(&self) -> usize {
        self.len
    }

    fn bytes(&self) -> &[u8] {
        match &self.memory {
            Memory::External(memory) => (**memory).as_ref(),
            // SAFETY: the mapping is `len` bytes, alive while `self` is.
            // The peer may be writing into a remotely writable region at
            // the same time (as a NIC would); see the crate docs.
            Memory::Owned { .. } => unsafe { std::slice::from_raw_parts(self.ptr, self.len) },
        }
    }

    fn bytes_mut(&mut self) -> Result<&mut [u8], NotWritable> {
        match &self.memory {
            Memory::External(_) => Err(NotWritable::Lent),
            // SAFETY: as in `bytes`; `&mut self` and the table's busy check
            // make this the only local borrow.
            Memory::Owned { .. } => {
                Ok(unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) })
            }
        }
    }
}

/// A slice resolved to memory.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Resolved {
    pub(crate) span: Span,
    pub(crate) access: Access,
    pub(crate) external: bool,
}

/// This side's registrations: the shared table, plus the keys. Keys are
/// never reused either, so a stale key stays invalid.
pub(crate) struct RegionTable {
    table: regions::RegionTable<Region>,
    /// The key of region 0: keys go up by one with the ids.
    first_key: u32,
    next_key: u32,
}

impl RegionTable {
    pub(crate) fn new(first_key: u32) -> Self {
        Self {
            table: regions::RegionTable::new(),
            first_key,
            next_key: first_key,
        }
    }

    pub(crate) fn register(
        &mut self,
        len: usize,
        access: Access,
    ) -> Result<RegionId, TransportError> {
        let mapping = Mapping::zeroed(len).ok_or(TransportError::NoMemory)?;
        let ptr = mapping.ptr();
        self.insert(Memory::Owned { _mapping: mapping }, ptr, len, access)
    }

    /// A read-only gather source: no local-write or remote rights.
    pub(crate) fn register_external<M>(&mut self, memory: M) -> Result<RegionId, TransportError>
    where
        M: AsRef<[u8]> + Send + Sync + 'static,
    {
        let memory: Box<dyn AsRef<[u8]> + Send + Sync> = Box::new(memory);
        let bytes = (*memory).as_ref();
        let (ptr, len) = (bytes.as_ptr().cast_mut(), bytes.len());
        self.insert(Memory::External(memory), ptr, len, Access::empty())
    }

    fn insert(
        &mut self,
        memory: Memory,
        ptr: *mut u8,
        len: usize,
        access: Access,
    ) -> Result<RegionId, TransportError> {
        let key = self.next_key;
        let id = self.table.insert(
            Region {
                memory,
                ptr,
                len,
                key,
                remote_writable: access.contains(Access::REMOTE_WRITE),
            },
            access,
        )?;
        self.next_key = self.next_key.wrapping_add(1);
        Ok(id)
    }

    /// Where `len` bytes at `addr` go in the remotely writable region
    /// whose key is `key`, if they lie inside it.
    pub(crate) fn writable(&self, key: u32, addr: u64, len: usize) -> Option<*mut u8> {
        let id = RegionId(key.wrapping_sub(self.first_key));
        let region = self.table.get(id).ok().filter(|r| r.key == key)?;
        writable_span(region, addr, len)
    }

    pub(crate) fn get(&self, id: RegionId) -> Result<&Region, TransportError> {
        self.table.get(id)
    }

    /// Remove a region that no posted request references.
    pub(crate) fn remove(&mut self, id: RegionId) -> Result<Region, TransportError> {
        self.table.remove(id)
    }

    pub(crate) fn resolve(&self, slice: Slice) -> Result<Resolved, TransportError> {
        let (region, access) = self.table.resolve(slice)?;
        Ok(Resolved {
            span: Span {
                ptr: region.ptr.wrapping_add(slice.offset),
                len: slice.len,
            },
            access,
            external: matches!(region.memory, Memory::External(_)),
        })
    }

    pub(crate) fn acquire(&mut self, id: RegionId) {
        self.table.acquire(id);
    }

    pub(crate) fn release(&mut self, id: RegionId) {
        self.table.release(id);
    }

    pub(crate) fn busy(&self, id: RegionId) -> u32 {
        self.table.busy(id)
    }

    pub(crate) fn bytes(&self, id: RegionId) -> Result<&[u8], TransportError> {
        self.table.bytes(id)
    }

    pub(crate) fn bytes_mut(&mut self, id: RegionId) -> Result<&mut [u8], TransportError> {
        self.table.bytes_mut(id)
    }

    pub(crate) fn remote_buf(
        &self,
        id: RegionId,
        offset: usize,
        len: usize,
    ) -> Result<RemoteBuf, TransportError> {
        let (region, len) = self.table.window(id, offset, len)?;
        Ok(RemoteBuf {
            addr: region.addr() + offset as u64,
            key: region.key,
            len,
        })
    }
}

/// The peer's remotely writable regions, by key, as it advertised them.
/// Where `len` bytes at `addr` go in `region`, if it is remotely
/// writable and they lie inside it.
pub(crate) fn writable_span(region: &Region, addr: u64, len: usize) -> Option<*mut u8> {
    if !region.remote_writable {
        return None;
    }
    let offset = usize::try_from(addr.checked_sub(region.addr())?).ok()?;
    regions::within(offset, len, region.len).then(|| region.ptr.wrapping_add(offset))
}

#[derive(Default)]
pub(crate) struct PeerWindows {
    windows: HashMap<u32, (u64, u64)>,
}

impl PeerWindows {
    /// Most windows a peer may have advertised at once (rdio's client
    /// registers two per connection): a bound on what a hostile peer can
    /// make us store.
    pub(crate) const CAPACITY: usize = 4096;

    /// Record an advertised window; `false` (and nothing stored) when the
    /// peer already has [`Self::CAPACITY`] of them.
    pub(crate) fn insert(&mut self, key: u32, addr: u64, len: u64) -> bool {
        if self.windows.len() >= Self::CAPACITY && !self.windows.contains_key(&key) {
            return false;
        }
        self.windows.insert(key, (addr, len));
        true
    }

    /// Forget a window; `false` if there was none with that key.
    pub(crate) fn remove(&mut self, key: u32) -> bool {
        self.windows.remove(&key).is_some()
    }

    /// Whether `len` bytes at `dst.addr` lie inside the window `dst.key`
    /// names.
    pub(crate) fn allows(&self, dst: RemoteBuf, len: usize) -> bool {
        let Some(&(start, size)) = self.windows.get(&dst.key) else {
            return false;
        };
        let Some(end) = dst.addr.checked_add(len as u64) else {
            return false;
        };
        dst.addr >= start && start.checked_add(size).is_some_and(|limit| end <= limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_admit_only_ranges_inside_an_advertised_region() {
        let mut windows = PeerWindows::default();
        windows.insert(7, 0x1000, 0x100);
        let at = |addr, key| RemoteBuf {
            addr,
            key,
            len: 0x100,
        };
        assert!(windows.allows(at(0x1000, 7), 0x100));
        assert!(windows.allows(at(0x10ff, 7), 1));
        assert!(!windows.allows(at(0x10ff, 7), 2), "past the end");
        assert!(!windows.allows(at(0x0fff, 7), 1), "before the start");
        assert!(!windows.allows(at(0x1000, 8), 1), "unknown key");
        assert!(!windows.allows(at(u64::MAX, 7), 2), "overflow");
        assert!(windows.remove(7));
        assert!(!windows.remove(7), "already gone");
        assert!(!windows.allows(at(0x1000, 7), 1), "revoked");
        for key in 0..PeerWindows::CAPACITY as u32 {
            assert!(windows.insert(key, 0, 1));
        }
        assert!(!windows.insert(u32::MAX, 0, 1), "full");
        assert!(windows.insert(3, 8, 1), "replacing an existing key is fine");
    }

    #[test]
    fn busy_regions_cannot_be_written_or_removed_and_external_ones_never_written() {
        let mut table = RegionTable::new(100);
        let id = table.register(10, Access::LOCAL_WRITE).unwrap();
        assert_eq!(table.get(id).unwrap().key(), 100);
        table.bytes_mut(id).unwrap()[3] = 9;
        table.acquire(id);
        assert_eq!(table.bytes_mut(id).err(), Some(TransportError::Busy(id)));
        assert_eq!(table.remove(id).err(), Some(TransportError::Busy(id)));
        assert_eq!(table.bytes(id).unwrap()[3], 9);
        table.release(id);
        assert!(table.remove(id).is_ok());
        assert_eq!(
            table.bytes(id).err(),
            Some(TransportError::UnknownRegion(id))
        );

        let lent = table.register_external(vec![1u8, 2, 3]).unwrap();
        assert_eq!(table.bytes(lent).unwrap(), &[1, 2, 3]);
        assert_eq!(
            table.bytes_mut(lent).err(),
            Some(TransportError::ReadOnly(lent))
        );
        assert!(table.resolve(Slice::whole(lent, 3)).unwrap().external);
        assert_eq!(
            table
                .resolve(Slice {
                    region: lent,
                    offset: 2,
                    len: 2
                })
                .err(),
            Some(TransportError::OutOfBounds)
        );
    }
}
