//! Owning handles for libfabric objects.
//!
//! Every libfabric object starts with a `struct fid` and is released with
//! `fi_close(&obj->fid)`. [`Owned`] does exactly that on drop, once. The order
//! in which handles are dropped is the caller's business (an endpoint must be
//! closed before the CQ/EQ it is bound to, memory regions before their domain,
//! the domain before its fabric): [`FabricTransport`](crate::FabricTransport)
//! declares its fields in that order.

use std::ptr::{self, NonNull};
use std::sync::Arc;

use crate::sys;

/// A libfabric object type whose first member is `struct fid fid`.
pub(crate) trait FabricObject {
    /// Pointer to the embedded `fid` of `this`.
    ///
    /// # Safety
    /// `this` must point to a live object of this type.
    unsafe fn fid(this: *mut Self) -> *mut sys::fid;
}

macro_rules! fabric_objects {
    ($($ty:ident),*) => {$(
        impl FabricObject for sys::$ty {
            unsafe fn fid(this: *mut Self) -> *mut sys::fid {
                // SAFETY: the caller guarantees `this` is live; taking the
                // address of a field creates no reference.
                unsafe { ptr::addr_of_mut!((*this).fid) }
            }
        }
    )*};
}

fabric_objects!(
    fid_fabric, fid_domain, fid_eq, fid_cq, fid_ep, fid_pep, fid_mr
);

/// An open libfabric object, closed on drop.
pub(crate) struct Owned<T: FabricObject> {
    ptr: NonNull<T>,
}

impl<T: FabricObject> Owned<T> {
    /// Wrap the object an `fi_*open*` call wrote to `ptr`.
    ///
    /// # Safety
    /// `ptr` must be an open object that nothing else closes.
    pub(crate) unsafe fn from_raw(ptr: *mut T) -> Option<Self> {
        NonNull::new(ptr).map(|ptr| Self { ptr })
    }

    pub(crate) fn as_ptr(&self) -> *mut T {
        self.ptr.as_ptr()
    }

    pub(crate) fn fid(&self) -> *mut sys::fid {
        // SAFETY: `self` owns a live object until drop.
        unsafe { T::fid(self.ptr.as_ptr()) }
    }
}

impl<T: FabricObject> Drop for Owned<T> {
    fn drop(&mut self) {
        // SAFETY: the object is open and owned by `self` alone; after this it
        // is never touched again. A close error cannot be acted on in drop.
        unsafe { sys::rdio_fi_close(self.fid()) };
    }
}

/// Open an object through an `fi_*` constructor that writes the new object
/// through its last out-parameter, naming the call on failure.
pub(crate) fn open<T: FabricObject>(
    call: &'static str,
    ctor: impl FnOnce(*mut *mut T) -> i32,
) -> Result<Owned<T>, crate::FabricError> {
    let mut raw: *mut T = ptr::null_mut();
    crate::error::check_call(call, ctor(&mut raw))?;
    // SAFETY: the constructor succeeded, so `raw` is a new open object that we
    // are now the only owner of.
    unsafe { Owned::from_raw(raw) }.ok_or(crate::FabricError::Call {
        call,
        code: sys::FI_EOTHER as i32,
    })
}

/// The fabric: shared (behind an `Arc`) by a listener and every connection
/// it accepted, so it is closed only after the last of them.
///
/// It keeps the `fi_info` it was opened from alive: some providers
/// (`sockets`) keep pointers into the info passed to `fi_fabric` /
/// `fi_passive_ep` / `fi_endpoint` and read them from their progress threads,
/// so an info is freed only after every object opened from it is closed.
pub(crate) struct Fabric {
    handle: Owned<sys::fid_fabric>,
    _info: Arc<Info>,
}

impl Fabric {
    /// Open the fabric `info` describes.
    pub(crate) fn open(info: Arc<Info>) -> Result<Arc<Self>, crate::FabricError> {
        let attr = info.get().fabric_attr;
        // SAFETY: fabric_attr is part of every info fi_getinfo returns, and
        // `info` outlives the fabric (it is stored next to it).
        let handle = open("fi_fabric", |out| unsafe {
            info.libfabric().fi_fabric(attr, out, ptr::null_mut())
        })?;
        Ok(Arc::new(Self {
            handle,
            _info: info,
        }))
    }

    pub(crate) fn as_ptr(&self) -> *mut sys::fid_fabric {
        self.handle.as_ptr()
    }
}

// SAFETY: fabric-level calls (fi_domain, fi_eq_open, fi_passive_ep, fi_close)
// are thread safe in libfabric regardless of the domain threading model, which
// only governs the domain and the objects opened from it.
unsafe impl Send for Fabric {}
// SAFETY: as above; no method takes `&mut` to the fabric object.
unsafe impl Sync for Fabric {}

/// An owned `fi_info` list, freed with `fi_freeinfo`.
///
/// Every libfabric object starts from an info, so the info carries the
/// opened library ([`crate::library`]) for the calls that follow it.
pub(crate) struct Info {
    ptr: NonNull<sys::fi_info>,
    libfabric: &'static sys::Libfabric,
}

impl Info {
    /// Fresh zeroed `fi_info` with all attribute structs allocated (`fi_allocinfo`).
    pub(crate) fn alloc(libfabric: &'static sys::Libfabric) -> Option<Self> {
        // SAFETY: fi_dupinfo(NULL) is what the static-inline fi_allocinfo does:
        // it allocates a zeroed fi_info including its attribute structs.
        let ptr = NonNull::new(unsafe { libfabric.fi_dupinfo(ptr::null()) })?;
        Some(Self { ptr, libfabric })
    }

    /// Take ownership of a list returned by `fi_getinfo` or an event queue.
    ///
    /// # Safety
    /// `ptr` must be an `fi_info` list that nothing else frees.
    pub(crate) unsafe fn from_raw(
        libfabric: &'static sys::Libfabric,
        ptr: *mut sys::fi_info,
    ) -> Option<Self> {
        NonNull::new(ptr).map(|ptr| Self { ptr, libfabric })
    }

    /// The library this info came from.
    pub(crate) fn libfabric(&self) -> &'static sys::Libfabric {
        self.libfabric
    }

    pub(crate) fn as_ptr(&self) -> *mut sys::fi_info {
        self.ptr.as_ptr()
    }

    /// The first entry of the list.
    pub(crate) fn get(&self) -> &sys::fi_info {
        // SAFETY: `ptr` is a valid fi_info for our lifetime.
        unsafe { self.ptr.as_ref() }
    }

    /// Iterate the list (`next` links).
    pub(crate) fn iter(&self) -> impl Iterator<Item = &sys::fi_info> {
        let mut next = self.ptr.as_ptr().cast_const();
        std::iter::from_fn(move || {
            // SAFETY: every `next` link of a list owned by `self` is either
            // NULL or a valid fi_info that lives as long as `self`.
            let info = unsafe { next.as_ref() }?;
            next = info.next;
            Some(info)
        })
    }
}

impl Drop for Info {
    fn drop(&mut self) {
        // SAFETY: we own the list; fi_freeinfo frees every entry and the
        // strings hung off them (prov_name was strdup'ed for that reason).
        unsafe { self.libfabric.fi_freeinfo(self.ptr.as_ptr()) };
    }
}

// SAFETY: an fi_info list is plain heap data with no thread affinity.
unsafe impl Send for Info {}
// SAFETY: after creation an Info is only read (`get`, `iter`, `as_ptr` passed
// to libfabric calls that take it as input).
unsafe impl Sync for Info {}
