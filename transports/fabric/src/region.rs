//! Registered memory: the buffers a transport owns, their libfabric memory
//! registrations, and how many posted work requests reference each.
//!
//! A region's bytes are allocated here (64-byte aligned, zeroed; from 1 MiB
//! mapped with `mmap`, page-aligned) and registered with `fi_mr_reg`. Because the provider — and, for
//! regions with remote rights, the peer — may write into that memory at any
//! time while work is posted, the table hands out slices only under the
//! trait's busy rule: no `&mut` while a posted request references the region.

use std::alloc::{self, Layout};
use std::ffi::c_void;
use std::ptr::{self, NonNull};

use rdio_transport::regions::{self, NotWritable, Registered};
use rdio_transport::{Access, RegionId, RemoteBuf, Slice, TransportError, WcError};

use crate::object::{self, Owned};
use crate::sys;

/// How the provider wants memory registrations used (`fi_domain_attr::mr_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MrMode {
    /// `FI_MR_VIRT_ADDR`: RMA addresses are virtual addresses; otherwise they
    /// are byte offsets from the start of the registration.
    pub(crate) virt_addr: bool,
    /// `FI_MR_PROV_KEY`: the provider picks keys (read back with `fi_mr_key`);
    /// otherwise we request keys, unique within the domain.
    pub(crate) prov_key: bool,
}

impl MrMode {
    pub(crate) fn from_bits(bits: i32) -> Self {
        let bits = bits as u32;
        Self {
            virt_addr: bits & sys::FI_MR_VIRT_ADDR != 0,
            prov_key: bits & sys::FI_MR_PROV_KEY != 0,
        }
    }
}

/// Memory with a fixed address for the life of the registration: zeroed
/// heap memory allocated here, or memory the caller lent
/// ([`rdio_transport::Transport::register_external`]).
struct Memory {
    ptr: NonNull<u8>,
    len: usize,
    /// The lent value owning the bytes, if they were lent; leaked from a
    /// `Box` and held as a raw pointer, because moving a `Box` asserts
    /// unique access to its contents, which would invalidate `ptr` when the
    /// bytes live inside the owner. Lent memory is only ever read: it gets
    /// no receive or remote-write rights and `bytes_mut` refuses it.
    owner: Option<NonNull<dyn Send + Sync>>,
    /// The anonymous mapping holding the bytes when they were mapped
    /// ([`Memory::MAP_FROM`] bytes or more) rather than allocated; unmapped
    /// when dropped, after the registration (field order of `Region`).
    /// Never touched after `ptr` is taken from it.
    map: Option<memmap2::MmapMut>,
}

impl Memory {
    const ALIGN: usize = 64;

    /// Regions of at least this many bytes are mapped straight from the
    /// kernel: zeroed and page-aligned by `mmap` itself, and backed by
    /// memory only as far as they are written. The allocator's
    /// `alloc_zeroed` at 64-byte alignment `memset`s the whole length
    /// instead (aligned allocations cannot use calloc's fresh-mmap
    /// shortcut): a server's receive region of 64 × (1 MiB + 4 KiB) was
    /// faulted in at every accept, and 256 connections at once spent
    /// seconds in page faults (`net_security.rs::two_hundred_fifty_six_…`
    /// timed out connecting).
    const MAP_FROM: usize = 1 << 20;

    fn layout(len: usize) -> Option<Layout> {
        Layout::from_size_align(len.max(1), Self::ALIGN).ok()
    }

    fn zeroed(len: usize) -> Option<Self> {
        if len >= Self::MAP_FROM {
            return Self::mapped(len);
        }
        let layout = Self::layout(len)?;
        // SAFETY: the layout has a non-zero size.
        NonNull::new(unsafe { alloc::alloc_zeroed(layout) }).map(|ptr| Self {
            ptr,
            len,
            owner: None,
            map: None,
        })
    }

    fn mapped(len: usize) -> Option<Self> {
        let mut map = memmap2::MmapMut::map_anon(len).ok()?;
        let ptr = NonNull::new(map.as_mut_ptr())?;
        Some(Self {
            ptr,
            len,
            owner: None,
            map: Some(map),
        })
    }

    /// Take `memory` without copying: boxed first, so the slice taken from
    /// it afterwards stays where it is until drop.
    fn external<M>(memory: M) -> Self
    where
        M: AsRef<[u8]> + Send + Sync + 'static,
    {
        let owner = NonNull::from(Box::leak(Box::new(memory)));
        // SAFETY: `owner` points to the live value just leaked; the shared
        // borrow ends before anything else touches it.
        let bytes: &[u8] = unsafe { owner.as_ref() }.as_ref();
        let owner: NonNull<dyn Send + Sync> = owner;
        Self {
            ptr: NonNull::from(bytes).cast(),
            len: bytes.len(),
            owner: Some(owner),
            map: None,
        }
    }
}

impl Drop for Memory {
    fn drop(&mut self) {
        if let Some(owner) = self.owner {
            // SAFETY: leaked from a `Box` in `external`, freed only here;
            // the registration over the bytes was closed before (field
            // order of `Region`).
            drop(unsafe { Box::from_raw(owner.as_ptr()) });
            return;
        }
        if self.map.is_some() {
            // Unmapped by the mapping's own drop, which follows.
            return;
        }
        let layout = Self::layout(self.len).expect("layout was valid at allocation");
        // SAFETY: allocated in `zeroed` with this very layout.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), layout) };
    }
}

/// One registered region. Field order is drop order: the registration is
/// closed before its memory is freed. Rights, bounds and the busy rule are
/// the shared table's ([`regions::RegionTable`]).
struct Region {
    /// Held for its drop (`fi_close`); the key and descriptor are cached below.
    _mr: Owned<sys::fid_mr>,
    memory: Memory,
    desc: *mut c_void,
    /// The provider's key, checked at registration to fit the 32 bits a
    /// [`RemoteBuf`] carries.
    key: u32,
}

impl Registered for Region {
    fn len(&self) -> usize {
        self.memory.len
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the memory is live while the region is in the table and the
        // returned borrow ties it to the table, so deregister cannot free it.
        unsafe { std::slice::from_raw_parts(self.memory.ptr.as_ptr(), self.memory.len) }
    }

    fn bytes_mut(&mut self) -> Result<&mut [u8], NotWritable> {
        if self.memory.owner.is_some() {
            return Err(NotWritable::Lent);
        }
        // SAFETY: live memory allocated here (see `bytes`); unique because
        // `&mut` is held and the table checked that no posted request
        // references the region.
        Ok(unsafe { std::slice::from_raw_parts_mut(self.memory.ptr.as_ptr(), self.memory.len) })
    }
}

/// A resolved scatter/gather element, ready for an `iovec` + descriptor.
#[derive(Clone, Copy)]
pub(crate) struct Resolved {
    pub(crate) ptr: *mut c_void,
    pub(crate) len: usize,
    pub(crate) desc: *mut c_void,
    pub(crate) access: Access,
}

/// Every region of one transport: the shared table, plus how the provider
/// wants registrations used.
pub(crate) struct RegionTable {
    table: regions::RegionTable<Region>,
    mode: MrMode,
}

impl RegionTable {
    pub(crate) fn new(mode: MrMode) -> Self {
        Self {
            table: regions::RegionTable::new(),
            mode,
        }
    }

    /// Allocate and register `len` zeroed bytes.
    pub(crate) fn register(
        &mut self,
        domain: &Owned<sys::fid_domain>,
        len: usize,
        access: Access,
    ) -> Result<RegionId, TransportError> {
        let memory = Memory::zeroed(len).ok_or(TransportError::NoMemory)?;
        self.insert(domain, memory, access)
    }

    /// Register memory the caller lent, as a read-only gather source.
    pub(crate) fn register_external<M>(
        &mut self,
        domain: &Owned<sys::fid_domain>,
        memory: M,
    ) -> Result<RegionId, TransportError>
    where
        M: AsRef<[u8]> + Send + Sync + 'static,
    {
        let memory = Memory::external(memory);
        if memory.len == 0 {
            // fi_mr_reg needs at least one byte, and lent memory cannot be
            // padded the way an allocation here is.
            return Err(TransportError::OutOfBounds);
        }
        self.insert(domain, memory, Access::empty())
    }

    /// Register `memory` with `fi_mr_reg` and keep it under a fresh id.
    fn insert(
        &mut self,
        domain: &Owned<sys::fid_domain>,
        memory: Memory,
        access: Access,
    ) -> Result<RegionId, TransportError> {
        let id = self.table.next_id()?;
        // Without FI_MR_PROV_KEY the key is ours to choose and must be unique
        // in the domain; region ids are unique and never reused, so they are
        // (plus one: keys start at 1).
        let requested_key = u64::from(id.0) + 1;
        let mr = object::open("fi_mr_reg", |out| {
            // SAFETY: `memory` is live for at least max(len, 1) bytes (an
            // allocation here is never smaller than one byte, lent memory is
            // refused when empty) and outlives the registration (Region
            // drops mr first).
            unsafe {
                sys::rdio_fi_mr_reg(
                    domain.as_ptr(),
                    memory.ptr.as_ptr().cast(),
                    memory.len.max(1),
                    fi_access(access),
                    0,
                    requested_key,
                    0,
                    out,
                    ptr::null_mut(),
                )
            }
        })
        .map_err(|err| match err {
            crate::FabricError::Call { code, .. } if code == libc::ENOMEM => {
                TransportError::NoMemory
            }
            crate::FabricError::Call { code, .. } => TransportError::Os(code),
            _ => TransportError::NoMemory,
        })?;
        // SAFETY: `mr` is an open registration.
        let (key, desc) = unsafe {
            (
                sys::rdio_fi_mr_key(mr.as_ptr()),
                sys::rdio_fi_mr_desc(mr.as_ptr()),
            )
        };
        if key == u64::MAX {
            // FI_KEY_NOTAVAIL: the key is only known after binding to an
            // endpoint (FI_MR_ENDPOINT), a mode rdio does not offer.
            return Err(TransportError::Unsupported);
        }
        // RemoteBuf carries a 32-bit key (an ibverbs rkey); a provider key
        // that does not fit cannot be handed to the peer.
        let key = u32::try_from(key).map_err(|_| TransportError::Unsupported)?;
        self.table.insert(
            Region {
                _mr: mr,
                memory,
                desc,
                key,
            },
            access,
        )
    }

    pub(crate) fn deregister(&mut self, id: RegionId) -> Result<(), TransportError> {
        self.table.remove(id).map(drop)
    }

    pub(crate) fn bytes(&self, id: RegionId) -> Result<&[u8], TransportError> {
        self.table.bytes(id)
    }

    pub(crate) fn bytes_mut(&mut self, id: RegionId) -> Result<&mut [u8], TransportError> {
        self.table.bytes_mut(id)
    }

    /// The descriptor a peer needs for `len` bytes at `offset`: a virtual
    /// address under `FI_MR_VIRT_ADDR`, else the offset itself.
    pub(crate) fn remote_buf(
        &self,
        id: RegionId,
        offset: usize,
        len: usize,
    ) -> Result<RemoteBuf, TransportError> {
        let (region, len) = self.table.window(id, offset, len)?;
        let base = if self.mode.virt_addr {
            region.memory.ptr.as_ptr() as u64
        } else {
            0
        };
        Ok(RemoteBuf {
            addr: base + offset as u64,
            key: region.key,
            len,
        })
    }

    /// Check a slice and return its address, descriptor and the region's rights.
    pub(crate) fn resolve(&self, slice: Slice) -> Result<Resolved, TransportError> {
        let (region, access) = self.table.resolve(slice)?;
        Ok(Resolved {
            // SAFETY: offset <= len of the allocation, checked by the table.
            ptr: unsafe { region.memory.ptr.as_ptr().add(slice.offset) }.cast(),
            len: slice.len,
            desc: region.desc,
            access,
        })
    }

    /// Where a peer's write of `len` bytes to (`key`, `addr`) lands, checked
    /// as the provider checks an RMA write: the key names a region of ours
    /// (keys are region id + 1 without `FI_MR_PROV_KEY`, the only mode this
    /// is used in), the region grants `REMOTE_WRITE`, and the bytes lie
    /// inside it (`addr` is a virtual address under `FI_MR_VIRT_ADDR`, else
    /// an offset).
    pub(crate) fn remote_target(
        &self,
        key: u32,
        addr: u64,
        len: usize,
    ) -> Result<*mut u8, WcError> {
        let id = key
            .checked_sub(1)
            .filter(|_| !self.mode.prov_key)
            .ok_or(WcError::RemoteAccess)?;
        let (region, access) = self
            .table
            .get_with_access(RegionId(id))
            .map_err(|_| WcError::RemoteAccess)?;
        if region.key != key || !access.contains(Access::REMOTE_WRITE) {
            return Err(WcError::RemoteAccess);
        }
        let base = region.memory.ptr.as_ptr();
        let offset = if self.mode.virt_addr {
            addr.checked_sub(base as u64)
        } else {
            Some(addr)
        }
        .and_then(|offset| usize::try_from(offset).ok())
        .filter(|&offset| regions::within(offset, len, region.memory.len))
        .ok_or(WcError::RemoteAccess)?;
        // SAFETY: offset + len <= the allocation's length, checked above.
        Ok(unsafe { base.add(offset) })
    }

    /// A posted request now references `id`.
    pub(crate) fn acquire(&mut self, id: RegionId) {
        self.table.acquire(id);
    }

    /// A posted request's completion referencing `id` was drained.
    pub(crate) fn release(&mut self, id: RegionId) {
        self.table.release(id);
    }

    /// Number of posted requests referencing `id` (0 for unknown ids).
    pub(crate) fn busy(&self, id: RegionId) -> u32 {
        self.table.busy(id)
    }
}

/// `Access` → `fi_mr_reg` access bits. Every region may be the source of a
/// send or a write; `LOCAL_WRITE` lets it receive (and be an RMA read target);
/// remote rights map one to one.
pub(crate) fn fi_access(access: Access) -> u64 {
    let mut bits = sys::FI_SEND | sys::FI_WRITE;
    if access.contains(Access::LOCAL_WRITE) {
        bits |= sys::FI_RECV | sys::FI_READ;
    }
    if access.contains(Access::REMOTE_WRITE) {
        bits |= sys::FI_REMOTE_WRITE;
    }
    if access.contains(Access::REMOTE_READ) {
        bits |= sys::FI_REMOTE_READ;
    }
    u64::from(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_maps_to_fi_bits() {
        assert_eq!(
            fi_access(Access::empty()),
            u64::from(sys::FI_SEND | sys::FI_WRITE)
        );
        let all = fi_access(Access::all());
        for bit in [
            sys::FI_RECV,
            sys::FI_READ,
            sys::FI_REMOTE_WRITE,
            sys::FI_REMOTE_READ,
        ] {
            assert_ne!(all & u64::from(bit), 0);
        }
        assert_eq!(fi_access(Access::REMOTE_WRITE) & u64::from(sys::FI_RECV), 0);
    }

    #[test]
    fn mr_mode_bits() {
        let mode = MrMode::from_bits((sys::FI_MR_VIRT_ADDR | sys::FI_MR_LOCAL) as i32);
        assert!(mode.virt_addr && !mode.prov_key);
    }
}
