//! Owned handles to libibverbs and librdmacm objects.
//!
//! This module and the posting/region code of `transport.rs` are the only
//! places that call into the C libraries. Each handle frees its object on
//! drop; *which* handle must go first is decided by the structs that own them
//! (`VerbsTransport`, `VerbsListener`) through their field order, documented
//! there. Every handle is `Send`: rdma-core documents all verbs and rdma_cm
//! calls as thread safe, and each handle is the sole owner of its object.

use std::alloc::{self, Layout};
use std::ffi::CStr;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::raw::c_int;
use std::ptr::{self, NonNull};
use std::time::{Duration, Instant};

use libc::{AF_INET, AF_INET6};
use rdma_sys::{
    ___ibv_query_port, ibv_ack_cq_events, ibv_alloc_pd, ibv_close_device, ibv_comp_channel,
    ibv_context, ibv_cq, ibv_create_comp_channel, ibv_create_cq, ibv_dealloc_pd, ibv_dereg_mr,
    ibv_destroy_comp_channel, ibv_destroy_cq, ibv_device, ibv_device_attr, ibv_free_device_list,
    ibv_get_cq_event, ibv_get_device_guid, ibv_get_device_list, ibv_get_device_name, ibv_mr,
    ibv_open_device, ibv_pd, ibv_poll_cq, ibv_port_attr, ibv_post_recv, ibv_post_send, ibv_qp,
    ibv_qp_cap, ibv_qp_init_attr, ibv_qp_type, ibv_query_device, ibv_recv_wr, ibv_reg_mr,
    ibv_req_notify_cq, ibv_send_wr, ibv_wc, rdma_accept, rdma_ack_cm_event, rdma_bind_addr,
    rdma_cm_event, rdma_cm_event_type, rdma_cm_id, rdma_conn_param, rdma_connect,
    rdma_create_event_channel, rdma_create_id, rdma_create_qp, rdma_destroy_event_channel,
    rdma_destroy_id, rdma_destroy_qp, rdma_disconnect, rdma_event_channel, rdma_get_cm_event,
    rdma_listen, rdma_migrate_id, rdma_port_space, rdma_resolve_addr, rdma_resolve_route,
};

use crate::addr::{SockAddr, from_sockaddr_in, from_sockaddr_in6};
use crate::error::{VerbsError, last_errno};
use crate::posted::RawWc;

/// `poll(2)`'s timeout: `-1` waits forever; a duration is rounded *up* to
/// whole milliseconds, so a short timeout waits a little rather than not at
/// all.
pub(crate) fn poll_timeout_ms(timeout: Option<Duration>) -> c_int {
    timeout.map_or(-1, |t| {
        c_int::try_from(t.as_nanos().div_ceil(1_000_000)).unwrap_or(c_int::MAX)
    })
}

/// What is left of `deadline`, `None` for no deadline; `Err` once it passed.
fn remaining(deadline: Option<Instant>) -> Result<Option<Duration>, ()> {
    match deadline {
        None => Ok(None),
        Some(deadline) => deadline
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
            .map(Some)
            .ok_or(()),
    }
}

/// Block until one of `fds` is readable or `timeout` passes. An interrupted
/// wait (`EINTR`) returns `Ok` like a timeout: callers re-check their state.
pub(crate) fn poll_readable(fds: &[c_int], timeout: Option<Duration>) -> Result<(), i32> {
    let mut pollfds = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; 2];
    for (slot, &fd) in pollfds.iter_mut().zip(fds) {
        *slot = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
    }
    let count = fds.len().min(pollfds.len());
    // SAFETY: `pollfds[..count]` is a valid, exclusively borrowed array of
    // `count` pollfd structs for the duration of the call.
    let rc = unsafe {
        libc::poll(
            pollfds.as_mut_ptr(),
            count as libc::nfds_t,
            poll_timeout_ms(timeout),
        )
    };
    if rc < 0 {
        let errno = last_errno();
        if errno != libc::EINTR {
            return Err(errno);
        }
    }
    Ok(())
}

/// Make `fd` non-blocking, so event reads can be driven by `poll(2)` with a
/// timeout instead of blocking forever in the library.
fn set_nonblocking(fd: c_int) -> Result<(), VerbsError> {
    // SAFETY: F_GETFL on an open descriptor only reads its flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: F_SETFL only changes the descriptor's status flags.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(VerbsError::last_os("fcntl(O_NONBLOCK)"));
    }
    Ok(())
}

/// `EAGAIN`, the non-blocking "nothing queued" answer.
fn would_block(errno: i32) -> bool {
    errno == libc::EAGAIN || errno == libc::EWOULDBLOCK
}

// ---------------------------------------------------------------------------
// Devices

/// The array returned by `ibv_get_device_list`.
pub(crate) struct DeviceList {
    list: NonNull<*mut ibv_device>,
    len: usize,
}

impl DeviceList {
    /// The RDMA devices of this host. No devices is an error: an empty list,
    /// or `ENOSYS` from a kernel without RDMA support, is
    /// [`VerbsError::NoRdmaDevices`].
    pub(crate) fn get() -> Result<Self, VerbsError> {
        let mut count: c_int = 0;
        // SAFETY: `count` is a valid out-pointer; the call returns a
        // NULL-terminated array the caller owns, or NULL with errno set.
        let list = unsafe { ibv_get_device_list(&mut count) };
        let Some(list) = NonNull::new(list) else {
            let errno = last_errno();
            return Err(if errno == libc::ENOSYS {
                VerbsError::NoRdmaDevices { errno: Some(errno) }
            } else {
                VerbsError::Os {
                    call: "ibv_get_device_list",
                    errno,
                }
            });
        };
        let list = Self {
            list,
            len: usize::try_from(count).unwrap_or(0),
        };
        if list.len == 0 {
            return Err(VerbsError::NoRdmaDevices { errno: None });
        }
        Ok(list)
    }

    /// The devices, valid while the list lives.
    pub(crate) fn devices(&self) -> impl Iterator<Item = Device<'_>> {
        (0..self.len).filter_map(move |index| {
            // SAFETY: the array holds `len` device pointers before its NULL
            // terminator and stays allocated until `self` is dropped.
            let device = unsafe { *self.list.as_ptr().add(index) };
            NonNull::new(device).map(|ptr| Device {
                ptr,
                _list: PhantomData,
            })
        })
    }
}

impl Drop for DeviceList {
    fn drop(&mut self) {
        // SAFETY: the list came from ibv_get_device_list and is freed once;
        // no `Device` borrowed from it outlives `self`.
        unsafe { ibv_free_device_list(self.list.as_ptr()) }
    }
}

/// One entry of a [`DeviceList`].
#[derive(Clone, Copy)]
pub(crate) struct Device<'list> {
    ptr: NonNull<ibv_device>,
    _list: PhantomData<&'list DeviceList>,
}

impl Device<'_> {
    /// The kernel device name, e.g. `rxe0`.
    pub(crate) fn name(self) -> String {
        // SAFETY: the device is valid while the list lives; the name is a
        // NUL-terminated string inside the device struct (or NULL).
        unsafe { c_string(ibv_get_device_name(self.ptr.as_ptr())) }
    }

    /// The node GUID in host byte order.
    pub(crate) fn guid(self) -> u64 {
        // SAFETY: the device is valid while the list lives.
        u64::from_be(unsafe { ibv_get_device_guid(self.ptr.as_ptr()) })
    }

    /// Open the device for queries.
    pub(crate) fn open(self) -> Result<OpenDevice, VerbsError> {
        // SAFETY: the device is valid while the list lives; the returned
        // context is independent of the list.
        let context = unsafe { ibv_open_device(self.ptr.as_ptr()) };
        NonNull::new(context)
            .map(OpenDevice)
            .ok_or_else(|| VerbsError::last_os("ibv_open_device"))
    }
}

/// A device context opened by [`Device::open`].
pub(crate) struct OpenDevice(NonNull<ibv_context>);

impl OpenDevice {
    pub(crate) fn context(&self) -> Context<'_> {
        Context {
            ptr: self.0,
            _owner: PhantomData,
        }
    }
}

impl Drop for OpenDevice {
    fn drop(&mut self) {
        // SAFETY: opened by ibv_open_device, closed once; nothing was
        // allocated on it (probe only queries).
        unsafe { ibv_close_device(self.0.as_ptr()) };
    }
}

/// A borrowed device context: opened by [`Device::open`], or owned by
/// librdmacm for an rdma_cm id.
#[derive(Clone, Copy)]
pub(crate) struct Context<'owner> {
    ptr: NonNull<ibv_context>,
    _owner: PhantomData<&'owner ()>,
}

impl Context<'_> {
    /// `ibv_device::transport_type` (raw `ibv_transport_type`).
    pub(crate) fn transport_type(self) -> i32 {
        // SAFETY: a live context points at its live device.
        unsafe { (*(*self.ptr.as_ptr()).device).transport_type }
    }

    /// The device name, e.g. `mlx5_0`.
    pub(crate) fn device_name(self) -> String {
        // SAFETY: a live context points at its live device.
        unsafe { c_string(ibv_get_device_name((*self.ptr.as_ptr()).device)) }
    }

    pub(crate) fn query_device(self) -> Result<ibv_device_attr, VerbsError> {
        let mut attr = MaybeUninit::<ibv_device_attr>::zeroed();
        // SAFETY: valid context and a writable out-struct of the right type.
        let rc = unsafe { ibv_query_device(self.ptr.as_ptr(), attr.as_mut_ptr()) };
        if rc != 0 {
            return Err(VerbsError::Os {
                call: "ibv_query_device",
                errno: rc,
            });
        }
        // SAFETY: zero-initialised plain-old-data, filled in by the call.
        Ok(unsafe { attr.assume_init() })
    }

    pub(crate) fn query_port(self, port: u8) -> Result<ibv_port_attr, VerbsError> {
        let mut attr = MaybeUninit::<ibv_port_attr>::zeroed();
        // SAFETY: valid context and a writable, zeroed out-struct of the
        // full current size (the inline wrapper passes its size).
        let rc = unsafe { ___ibv_query_port(self.ptr.as_ptr(), port, attr.as_mut_ptr()) };
        if rc != 0 {
            return Err(VerbsError::Os {
                call: "ibv_query_port",
                errno: rc,
            });
        }
        // SAFETY: zero-initialised plain-old-data, filled in by the call.
        Ok(unsafe { attr.assume_init() })
    }
}

/// Copy a C string the library owns; empty for NULL.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string valid for the call.
unsafe fn c_string(ptr: *const libc::c_char) -> String {
    if ptr.is_null() {
        return String::new();
    }
    // SAFETY: guaranteed by the caller.
    unsafe { CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned()
}

/// The libibverbs description of a raw `ibv_wc_status`, e.g.
/// `"transport retry counter exceeded"`.
pub fn wc_status_str(status: u32) -> &'static str {
    // SAFETY: ibv_wc_status_str accepts any value and returns a pointer to a
    // static string ("unknown" out of range), never NULL.
    let text = unsafe { CStr::from_ptr(rdma_sys::ibv_wc_status_str(status)) };
    text.to_str().unwrap_or("unknown")
}

// ---------------------------------------------------------------------------
// rdma_cm

/// An rdma_cm event channel, non-blocking.
pub(crate) struct EventChannel(NonNull<rdma_event_channel>);

// SAFETY: see the module docs: librdmacm calls are thread safe and the
// channel is owned by this handle alone.
unsafe impl Send for EventChannel {}

/// What the handshake needs from an `rdma_cm_event`, copied out before the
/// event is acknowledged.
pub(crate) struct CmEvent {
    /// Raw `rdma_cm_event_type`.
    pub(crate) event: u32,
    /// The event's status.
    pub(crate) status: i32,
    /// For `RDMA_CM_EVENT_CONNECT_REQUEST`: the new id of the incoming
    /// connection, now ours (dropping it without accepting rejects the peer).
    pub(crate) child: Option<CmId>,
}

impl EventChannel {
    pub(crate) fn new() -> Result<Self, VerbsError> {
        // SAFETY: no arguments; returns an owned channel or NULL + errno.
        let channel = unsafe { rdma_create_event_channel() };
        let Some(channel) = NonNull::new(channel) else {
            let errno = last_errno();
            // The rdma_cm device is missing or has no RDMA device behind it.
            let no_device = [libc::ENODEV, libc::ENOENT, libc::ENOSYS].contains(&errno);
            return Err(if no_device {
                VerbsError::NoRdmaDevices { errno: Some(errno) }
            } else {
                VerbsError::Os {
                    call: "rdma_create_event_channel",
                    errno,
                }
            });
        };
        let channel = Self(channel);
        set_nonblocking(channel.fd())?;
        Ok(channel)
    }

    pub(crate) fn fd(&self) -> c_int {
        // SAFETY: the channel is live while `self` is.
        unsafe { (*self.0.as_ptr()).fd }
    }

    /// The next queued event, acknowledged; `None` if none is queued.
    pub(crate) fn try_next(&self) -> Result<Option<CmEvent>, VerbsError> {
        let mut raw: *mut rdma_cm_event = ptr::null_mut();
        // SAFETY: live channel, valid out-pointer; the fd is non-blocking so
        // the call returns EAGAIN instead of blocking.
        if unsafe { rdma_get_cm_event(self.0.as_ptr(), &mut raw) } != 0 {
            let errno = last_errno();
            return if would_block(errno) {
                Ok(None)
            } else {
                Err(VerbsError::Os {
                    call: "rdma_get_cm_event",
                    errno,
                })
            };
        }
        // SAFETY: on success `raw` points at an event owned by us until acked.
        let (event, status, id) = unsafe { ((*raw).event, (*raw).status, (*raw).id) };
        // SAFETY: acknowledged exactly once; only copied fields are used
        // afterwards (the id outlives its event).
        unsafe { rdma_ack_cm_event(raw) };
        let child = if event == rdma_cm_event_type::RDMA_CM_EVENT_CONNECT_REQUEST {
            NonNull::new(id).map(CmId)
        } else {
            None
        };
        Ok(Some(CmEvent {
            event,
            status,
            child,
        }))
    }

    /// The next event, waiting until `deadline`.
    pub(crate) fn next(
        &self,
        deadline: Option<Instant>,
        phase: &'static str,
    ) -> Result<CmEvent, VerbsError> {
        loop {
            if let Some(event) = self.try_next()? {
                return Ok(event);
            }
            let left = remaining(deadline).map_err(|()| VerbsError::Timeout { phase })?;
            poll_readable(&[self.fd()], left).map_err(|errno| VerbsError::Os {
                call: "poll",
                errno,
            })?;
        }
    }

    /// Wait for `expected`; any other event is the handshake failing.
    pub(crate) fn expect(
        &self,
        expected: u32,
        deadline: Option<Instant>,
        phase: &'static str,
    ) -> Result<CmEvent, VerbsError> {
        let event = self.next(deadline, phase)?;
        if event.event == expected {
            Ok(event)
        } else {
            Err(VerbsError::Cm {
                phase,
                event: event.event,
                status: event.status,
            })
        }
    }
}

impl Drop for EventChannel {
    fn drop(&mut self) {
        // SAFETY: created by rdma_create_event_channel, destroyed once, after
        // every id on it (the owners' field order guarantees that).
        unsafe { rdma_destroy_event_channel(self.0.as_ptr()) }
    }
}

/// An rdma_cm identifier (the connection's "socket").
pub(crate) struct CmId(NonNull<rdma_cm_id>);

// SAFETY: see the module docs.
unsafe impl Send for CmId {}

/// Turn an rdma_cm return code into a result.
fn cm_call(rc: c_int, call: &'static str) -> Result<(), VerbsError> {
    if rc == 0 {
        Ok(())
    } else {
        Err(VerbsError::last_os(call))
    }
}

impl CmId {
    /// A reliable-connected (`RDMA_PS_TCP`) id reporting to `channel`.
    pub(crate) fn new(channel: &EventChannel) -> Result<Self, VerbsError> {
        let mut id: *mut rdma_cm_id = ptr::null_mut();
        // SAFETY: live channel, valid out-pointer, no user context.
        let rc = unsafe {
            rdma_create_id(
                channel.0.as_ptr(),
                &mut id,
                ptr::null_mut(),
                rdma_port_space::RDMA_PS_TCP,
            )
        };
        cm_call(rc, "rdma_create_id")?;
        NonNull::new(id).map(Self).ok_or(VerbsError::Os {
            call: "rdma_create_id",
            errno: libc::EFAULT,
        })
    }

    /// The device the id is bound to (after address resolution or on an
    /// incoming connection).
    pub(crate) fn context(&self) -> Option<Context<'_>> {
        // SAFETY: the id is live while `self` is.
        let verbs = unsafe { (*self.0.as_ptr()).verbs };
        NonNull::new(verbs).map(|ptr| Context {
            ptr,
            _owner: PhantomData,
        })
    }

    /// The device port the id is bound to.
    pub(crate) fn port_num(&self) -> u8 {
        // SAFETY: the id is live while `self` is.
        unsafe { (*self.0.as_ptr()).port_num }
    }

    pub(crate) fn bind(&self, addr: SocketAddr) -> Result<(), VerbsError> {
        let mut raw = SockAddr::from(addr);
        // SAFETY: live id; the address is read during the call only.
        cm_call(
            unsafe { rdma_bind_addr(self.0.as_ptr(), raw.as_mut_ptr()) },
            "rdma_bind_addr",
        )
    }

    pub(crate) fn listen(&self, backlog: i32) -> Result<(), VerbsError> {
        // SAFETY: live, bound id.
        cm_call(
            unsafe { rdma_listen(self.0.as_ptr(), backlog) },
            "rdma_listen",
        )
    }

    pub(crate) fn resolve_addr(
        &self,
        dst: SocketAddr,
        timeout: Duration,
    ) -> Result<(), VerbsError> {
        let mut raw = SockAddr::from(dst);
        // SAFETY: live id; no source address; the destination is read
        // during the call only.
        let rc = unsafe {
            rdma_resolve_addr(
                self.0.as_ptr(),
                ptr::null_mut(),
                raw.as_mut_ptr(),
                poll_timeout_ms(Some(timeout)),
            )
        };
        cm_call(rc, "rdma_resolve_addr")
    }

    pub(crate) fn resolve_route(&self, timeout: Duration) -> Result<(), VerbsError> {
        // SAFETY: live id with a resolved address.
        cm_call(
            unsafe { rdma_resolve_route(self.0.as_ptr(), poll_timeout_ms(Some(timeout))) },
            "rdma_resolve_route",
        )
    }

    pub(crate) fn connect(&self, param: &rdma_conn_param) -> Result<(), VerbsError> {
        let mut param = *param;
        // SAFETY: live id with a QP; the parameters are read during the call.
        cm_call(
            unsafe { rdma_connect(self.0.as_ptr(), &mut param) },
            "rdma_connect",
        )
    }

    pub(crate) fn accept(&self, param: &rdma_conn_param) -> Result<(), VerbsError> {
        let mut param = *param;
        // SAFETY: live id of a connection request with a QP.
        cm_call(
            unsafe { rdma_accept(self.0.as_ptr(), &mut param) },
            "rdma_accept",
        )
    }

    /// Move the id's events to `channel`, so an accepted connection no
    /// longer depends on its listener. Its pending events must be acked
    /// (they are: [`EventChannel::try_next`] acks at once).
    pub(crate) fn migrate(&self, channel: &EventChannel) -> Result<(), VerbsError> {
        // SAFETY: live id and channel; the owner keeps the channel alive
        // longer than the id.
        cm_call(
            unsafe { rdma_migrate_id(self.0.as_ptr(), channel.0.as_ptr()) },
            "rdma_migrate_id",
        )
    }

    /// Start tearing the connection down: the QP moves to the error state
    /// (flushing outstanding requests) and the peer gets
    /// `RDMA_CM_EVENT_DISCONNECTED`.
    pub(crate) fn disconnect(&self) -> Result<(), VerbsError> {
        // SAFETY: live id.
        cm_call(
            unsafe { rdma_disconnect(self.0.as_ptr()) },
            "rdma_disconnect",
        )
    }

    /// The local address the id is bound to.
    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        // SAFETY: the id is live; `route.addr.src_addr_union` is a union of
        // sockaddr variants the library fills in, and the family field
        // (shared by all variants) tells which one is valid.
        unsafe {
            let src = &(*self.0.as_ptr()).route.addr.src_addr_union;
            match c_int::from(src.src_storage.ss_family) {
                AF_INET => Some(from_sockaddr_in(&src.src_sin)),
                AF_INET6 => Some(from_sockaddr_in6(&src.src_sin6)),
                _ => None,
            }
        }
    }
}

impl Drop for CmId {
    fn drop(&mut self) {
        // SAFETY: destroyed once, after its QP (owners' field order) and
        // with every event acknowledged.
        unsafe { rdma_destroy_id(self.0.as_ptr()) };
    }
}

/// An rdma_cm id together with the event channel it reports to. The field
/// order makes the id go before its channel, as librdmacm requires.
pub(crate) struct Endpoint {
    pub(crate) id: CmId,
    pub(crate) events: EventChannel,
}

impl Endpoint {
    /// A fresh reliable-connected id on its own channel.
    pub(crate) fn new() -> Result<Self, VerbsError> {
        let events = EventChannel::new()?;
        let id = CmId::new(&events)?;
        Ok(Self { id, events })
    }

    /// Adopt the id of an incoming connection request, moving its events to
    /// a channel of its own.
    pub(crate) fn adopt(id: CmId) -> Result<Self, VerbsError> {
        let events = EventChannel::new()?;
        id.migrate(&events)?;
        Ok(Self { id, events })
    }
}

// ---------------------------------------------------------------------------
// Verbs objects of one connection

/// A protection domain: one per connection, so a peer's keys can never reach
/// another connection's memory.
pub(crate) struct Pd(NonNull<ibv_pd>);

// SAFETY: see the module docs.
unsafe impl Send for Pd {}

impl Pd {
    pub(crate) fn new(context: Context<'_>) -> Result<Self, VerbsError> {
        // SAFETY: live context.
        let pd = unsafe { ibv_alloc_pd(context.ptr.as_ptr()) };
        NonNull::new(pd)
            .map(Self)
            .ok_or_else(|| VerbsError::last_os("ibv_alloc_pd"))
    }
}

impl Drop for Pd {
    fn drop(&mut self) {
        // SAFETY: deallocated once, after its QP and memory regions.
        unsafe { ibv_dealloc_pd(self.0.as_ptr()) };
    }
}

/// A completion channel: the fd `wait` sleeps on.
pub(crate) struct CompChannel(NonNull<ibv_comp_channel>);

// SAFETY: see the module docs.
unsafe impl Send for CompChannel {}

impl CompChannel {
    pub(crate) fn new(context: Context<'_>) -> Result<Self, VerbsError> {
        // SAFETY: live context.
        let channel = unsafe { ibv_create_comp_channel(context.ptr.as_ptr()) };
        let channel = NonNull::new(channel)
            .map(Self)
            .ok_or_else(|| VerbsError::last_os("ibv_create_comp_channel"))?;
        set_nonblocking(channel.fd())?;
        Ok(channel)
    }

    pub(crate) fn fd(&self) -> c_int {
        // SAFETY: the channel is live while `self` is.
        unsafe { (*self.0.as_ptr()).fd }
    }

    /// Consume and acknowledge one completion event if one is queued.
    pub(crate) fn consume_event(&self) -> Result<bool, i32> {
        let mut cq: *mut ibv_cq = ptr::null_mut();
        let mut cq_context: *mut libc::c_void = ptr::null_mut();
        // SAFETY: live channel, valid out-pointers; non-blocking fd.
        if unsafe { ibv_get_cq_event(self.0.as_ptr(), &mut cq, &mut cq_context) } != 0 {
            let errno = last_errno();
            return if would_block(errno) {
                Ok(false)
            } else {
                Err(errno)
            };
        }
        // SAFETY: `cq` is the live CQ the event was for; acked exactly once
        // so ibv_destroy_cq will not wait for it.
        unsafe { ibv_ack_cq_events(cq, 1) };
        Ok(true)
    }
}

impl Drop for CompChannel {
    fn drop(&mut self) {
        // SAFETY: destroyed once, after the CQ attached to it.
        unsafe { ibv_destroy_comp_channel(self.0.as_ptr()) };
    }
}

/// The completion queue shared by the send and receive queues.
pub(crate) struct Cq(NonNull<ibv_cq>);

// SAFETY: see the module docs.
unsafe impl Send for Cq {}

/// Work completions read per `ibv_poll_cq` call.
const POLL_BATCH: usize = 16;

impl Cq {
    pub(crate) fn new(
        context: Context<'_>,
        entries: u32,
        channel: &CompChannel,
    ) -> Result<Self, VerbsError> {
        let entries = c_int::try_from(entries).unwrap_or(c_int::MAX);
        // SAFETY: live context and channel (the channel outlives the CQ by
        // the owner's field order); no CQ context; vector 0.
        let cq = unsafe {
            ibv_create_cq(
                context.ptr.as_ptr(),
                entries,
                ptr::null_mut(),
                channel.0.as_ptr(),
                0,
            )
        };
        NonNull::new(cq)
            .map(Self)
            .ok_or_else(|| VerbsError::last_os("ibv_create_cq"))
    }

    /// Move up to `max` completions into `out`; returns how many.
    pub(crate) fn poll(&self, out: &mut impl Extend<RawWc>, max: usize) -> Result<usize, i32> {
        let mut wcs = [const { MaybeUninit::<ibv_wc>::uninit() }; POLL_BATCH];
        let want = max.min(POLL_BATCH) as c_int;
        // SAFETY: live CQ; `wcs` has room for `want` entries.
        let got = unsafe { ibv_poll_cq(self.0.as_ptr(), want, wcs.as_mut_ptr().cast()) };
        let Ok(got) = usize::try_from(got) else {
            return Err(libc::EIO);
        };
        out.extend(wcs[..got].iter().map(|wc| {
            // SAFETY: ibv_poll_cq initialised the first `got` entries; the
            // immediate is a union of two u32s, any bit pattern is valid.
            let wc = unsafe { wc.assume_init_ref() };
            RawWc {
                slot: wc.wr_id,
                status: wc.status,
                opcode: wc.opcode,
                byte_len: wc.byte_len,
                // SAFETY: as above.
                imm_be: unsafe { wc.imm_data_invalidated_rkey_union.imm_data },
            }
        }));
        Ok(got)
    }

    /// Ask for one completion event on the next completion.
    pub(crate) fn arm(&self) -> Result<(), i32> {
        // SAFETY: live CQ; 0 = every completion, not only solicited ones.
        let rc = unsafe { ibv_req_notify_cq(self.0.as_ptr(), 0) };
        if rc == 0 { Ok(()) } else { Err(rc) }
    }
}

impl Drop for Cq {
    fn drop(&mut self) {
        // SAFETY: destroyed once, after the QP using it; all its events were
        // acknowledged in `consume_event`.
        unsafe { ibv_destroy_cq(self.0.as_ptr()) };
    }
}

/// The RC queue pair, created through rdma_cm so the CM drives its state
/// transitions on connect/accept.
pub(crate) struct Qp {
    id: NonNull<rdma_cm_id>,
    qp: NonNull<ibv_qp>,
}

// SAFETY: see the module docs.
unsafe impl Send for Qp {}

impl Qp {
    /// A reliable-connected QP on `id` whose queues both complete on `cq`.
    /// Returns the capabilities the device actually granted.
    pub(crate) fn new(
        id: &CmId,
        pd: &Pd,
        cq: &Cq,
        cap: ibv_qp_cap,
    ) -> Result<(Self, ibv_qp_cap), VerbsError> {
        let mut attr = ibv_qp_init_attr {
            qp_context: ptr::null_mut(),
            send_cq: cq.0.as_ptr(),
            recv_cq: cq.0.as_ptr(),
            srq: ptr::null_mut(),
            cap,
            qp_type: ibv_qp_type::IBV_QPT_RC,
            sq_sig_all: 0,
        };
        // SAFETY: live id, PD and CQ (all outlive the QP by the owner's
        // field order); `attr` is read and its `cap` updated by the call.
        let rc = unsafe { rdma_create_qp(id.0.as_ptr(), pd.0.as_ptr(), &mut attr) };
        cm_call(rc, "rdma_create_qp")?;
        // SAFETY: on success rdma_create_qp stored the QP in the id.
        let qp = unsafe { (*id.0.as_ptr()).qp };
        let qp = NonNull::new(qp).ok_or(VerbsError::Os {
            call: "rdma_create_qp",
            errno: libc::EFAULT,
        })?;
        Ok((Self { id: id.0, qp }, attr.cap))
    }

    /// Post one send-queue work request.
    ///
    /// # Safety
    /// Every scatter/gather element of `wr` must lie inside a memory region
    /// of this QP's protection domain that stays registered and allocated
    /// until the request's completion has been polled (unless the request is
    /// `IBV_SEND_INLINE`, whose data is copied during the call).
    pub(crate) unsafe fn post_send(&self, wr: &mut ibv_send_wr) -> Result<(), i32> {
        let mut bad: *mut ibv_send_wr = ptr::null_mut();
        // SAFETY: live QP; `wr` and its sge list are valid for the call;
        // the memory contract is the caller's.
        let rc = unsafe { ibv_post_send(self.qp.as_ptr(), wr, &mut bad) };
        if rc == 0 { Ok(()) } else { Err(rc) }
    }

    /// Post one receive work request.
    ///
    /// # Safety
    /// As for [`Qp::post_send`]: the buffers must stay registered, allocated
    /// and otherwise untouched until the completion has been polled.
    pub(crate) unsafe fn post_recv(&self, wr: &mut ibv_recv_wr) -> Result<(), i32> {
        let mut bad: *mut ibv_recv_wr = ptr::null_mut();
        // SAFETY: live QP; `wr` and its sge list are valid for the call;
        // the memory contract is the caller's.
        let rc = unsafe { ibv_post_recv(self.qp.as_ptr(), wr, &mut bad) };
        if rc == 0 { Ok(()) } else { Err(rc) }
    }
}

impl Drop for Qp {
    fn drop(&mut self) {
        // SAFETY: the QP was created on this id, which is still alive (it is
        // dropped after the QP), and is destroyed once.
        unsafe { rdma_destroy_qp(self.id.as_ptr()) }
    }
}

/// A zeroed, page-aligned allocation registered with a protection domain,
/// or memory the caller lent ([`Region::external`]).
pub(crate) struct Region {
    mr: NonNull<ibv_mr>,
    buf: NonNull<u8>,
    backing: Backing,
    len: usize,
}

/// Where a region's bytes come from, hence how they are released.
enum Backing {
    /// Allocated here with this layout, freed after deregistration.
    Allocated(Layout),
    /// Lent by the caller: the value owning the bytes, leaked from a `Box`
    /// and held as a raw pointer (moving a `Box` asserts unique access to
    /// its contents, which would invalidate `buf` when the bytes live inside
    /// the owner). Dropped after deregistration; never written, since it is
    /// registered without `IBV_ACCESS_LOCAL_WRITE` or remote rights.
    Lent(NonNull<dyn Send + Sync>),
}

// SAFETY: see the module docs; the buffer is a heap allocation owned by the
// region alone, or lent memory whose owner is `Send + Sync`.
unsafe impl Send for Region {}

/// Registration granularity: page alignment keeps the HCA's translation
/// tables small and never shares a page with unrelated heap data.
const REGION_ALIGN: usize = 4096;

/// Why a registration failed.
pub(crate) enum RegisterError {
    /// Allocation or pinning failed (`ENOMEM`, typically `ulimit -l`).
    NoMemory,
    /// `ibv_reg_mr` failed otherwise.
    Os(i32),
}

impl Region {
    /// Allocate `len` zeroed bytes and register them with `access`
    /// (`IBV_ACCESS_*` bits).
    pub(crate) fn new(pd: &Pd, len: usize, access: u32) -> Result<Self, RegisterError> {
        // A zero-length region still gets one byte so it has an address and keys.
        let layout = Layout::from_size_align(len.max(1), REGION_ALIGN)
            .map_err(|_| RegisterError::NoMemory)?;
        // SAFETY: the layout has a non-zero size.
        let buf =
            NonNull::new(unsafe { alloc::alloc_zeroed(layout) }).ok_or(RegisterError::NoMemory)?;
        // SAFETY: live PD; `buf` is a live allocation of `layout.size()` bytes.
        let mr = unsafe {
            ibv_reg_mr(
                pd.0.as_ptr(),
                buf.as_ptr().cast(),
                layout.size(),
                access as c_int,
            )
        };
        let Some(mr) = NonNull::new(mr) else {
            let errno = last_errno();
            // SAFETY: allocated above with `layout`, never registered.
            unsafe { alloc::dealloc(buf.as_ptr(), layout) };
            return Err(if errno == libc::ENOMEM {
                RegisterError::NoMemory
            } else {
                RegisterError::Os(errno)
            });
        };
        Ok(Self {
            mr,
            buf,
            backing: Backing::Allocated(layout),
            len,
        })
    }

    /// Register memory the caller lent, where it is, for local reads only
    /// (access 0: a gather source of sends and RDMA writes). The HCA pins
    /// the pages, so for a file mapping a later truncation leaves the NIC
    /// reading the pinned (stale) pages rather than faulting.
    pub(crate) fn external<M>(pd: &Pd, memory: M) -> Result<Self, RegisterError>
    where
        M: AsRef<[u8]> + Send + Sync + 'static,
    {
        let owner = NonNull::from(Box::leak(Box::new(memory)));
        // SAFETY: `owner` points to the live value just leaked.
        let bytes: &[u8] = unsafe { owner.as_ref() }.as_ref();
        let (buf, len) = (NonNull::from(bytes).cast::<u8>(), bytes.len());
        let owner: NonNull<dyn Send + Sync> = owner;
        // SAFETY: live PD; `buf` is valid for `len` bytes for as long as
        // `owner` lives, which is until after deregistration (Drop).
        let mr = unsafe { ibv_reg_mr(pd.0.as_ptr(), buf.as_ptr().cast(), len, 0) };
        let Some(mr) = NonNull::new(mr) else {
            let errno = last_errno();
            // SAFETY: leaked above, never registered: release it at once.
            drop(unsafe { Box::from_raw(owner.as_ptr()) });
            return Err(if errno == libc::ENOMEM {
                RegisterError::NoMemory
            } else {
                RegisterError::Os(errno)
            });
        };
        Ok(Self {
            mr,
            buf,
            backing: Backing::Lent(owner),
            len,
        })
    }

    /// Whether the bytes were lent (and so must never be written).
    pub(crate) fn is_lent(&self) -> bool {
        matches!(self.backing, Backing::Lent(_))
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The virtual address of the first byte, as the HCA sees it.
    pub(crate) fn addr(&self) -> u64 {
        self.buf.as_ptr() as u64
    }

    pub(crate) fn lkey(&self) -> u32 {
        // SAFETY: the MR is live while `self` is.
        unsafe { (*self.mr.as_ptr()).lkey }
    }

    pub(crate) fn rkey(&self) -> u32 {
        // SAFETY: the MR is live while `self` is.
        unsafe { (*self.mr.as_ptr()).rkey }
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `buf` is a live, initialised (zeroed) allocation of at
        // least `len` bytes. The HCA writes into it only for a posted
        // receive or a peer's RDMA write into a remote-writable region; the
        // transport's users read such bytes after the completion that
        // announces them, as every verbs program must.
        unsafe { std::slice::from_raw_parts(self.buf.as_ptr(), self.len) }
    }

    /// `None` for lent memory, which may be a read-only mapping and is
    /// shared with its owner.
    pub(crate) fn bytes_mut(&mut self) -> Option<&mut [u8]> {
        if self.is_lent() {
            return None;
        }
        // SAFETY: as in `bytes`; allocated here; `&mut self` makes this the
        // only Rust reference, and the transport refuses it while a posted
        // request uses the region.
        Some(unsafe { std::slice::from_raw_parts_mut(self.buf.as_ptr(), self.len) })
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: the MR is deregistered once, after the QP that could use it
        // is gone or while no posted request references it.
        let rc = unsafe { ibv_dereg_mr(self.mr.as_ptr()) };
        if rc == 0 {
            match self.backing {
                // SAFETY: allocated in `new` with `layout`; no longer
                // registered, so the HCA can no longer write into it.
                Backing::Allocated(layout) => unsafe { alloc::dealloc(self.buf.as_ptr(), layout) },
                // SAFETY: leaked in `external` and released only here; no
                // longer registered, so the HCA no longer reads it.
                Backing::Lent(owner) => drop(unsafe { Box::from_raw(owner.as_ptr()) }),
            }
        }
        // If deregistration failed the HCA may still own the pages: leaking
        // them is the only memory-safe choice.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_timeouts_round_up() {
        assert_eq!(poll_timeout_ms(None), -1);
        assert_eq!(poll_timeout_ms(Some(Duration::ZERO)), 0);
        assert_eq!(poll_timeout_ms(Some(Duration::from_micros(100))), 1);
        assert_eq!(poll_timeout_ms(Some(Duration::from_millis(1500))), 1500);
        assert_eq!(
            poll_timeout_ms(Some(Duration::from_secs(u64::MAX))),
            c_int::MAX
        );
    }

    #[test]
    fn deadlines() {
        assert_eq!(remaining(None), Ok(None));
        assert_eq!(remaining(Some(Instant::now())), Err(()));
        let left = remaining(Some(Instant::now() + Duration::from_secs(60)))
            .unwrap()
            .unwrap();
        assert!(left > Duration::from_secs(59));
    }

    #[test]
    fn status_strings_come_from_libibverbs() {
        assert_eq!(wc_status_str(0), "success");
        assert_eq!(wc_status_str(5), "Work Request Flushed Error");
        assert_eq!(wc_status_str(12), "transport retry counter exceeded");
    }

    #[test]
    fn device_list_on_this_host() {
        // Where the kernel has no RDMA (this project's CI: ENOSYS), the
        // typed error comes back instead of a crash; on an RDMA host the
        // list is non-empty.
        match DeviceList::get() {
            Ok(list) => assert!(list.devices().count() > 0),
            Err(error) => assert!(matches!(error, VerbsError::NoRdmaDevices { .. }), "{error}"),
        }
    }
}
