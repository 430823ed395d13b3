//! The transport interface every rdio transport implements.
//!
//! rdio's protocol core (`rdio-core`) is sans-IO: it never touches memory
//! registration, queue pairs or completion queues. A *driver* feeds it bytes and
//! performs the actions it asks for through this trait, which is shaped after the
//! RDMA verbs of a reliable-connected (RC) queue pair, the least common
//! denominator of ibverbs (`rdio-verbs`), libfabric `FI_EP_MSG` endpoints
//! (`rdio-fabric`) and the in-memory pair (`rdio-loopback`):
//!
//! * memory is registered as [`RegionId`]s, owned by the transport, with explicit
//!   [`Access`] rights; a remote peer can only touch a region through a
//!   [`RemoteBuf`] (address, key, length) the owner chose to hand out;
//! * work requests are *posted* (`post_recv`, `post_send`, `post_write`) and
//!   finish later as a [`Completion`] drained with [`Transport::poll_completions`]
//!   (busy polling) or after [`Transport::wait`] (interrupt mode);
//! * a region referenced by a posted work request is *busy*: it cannot be
//!   written through [`Transport::region_mut`] or deregistered until the
//!   request's completion has been drained. This is how "a send buffer is never
//!   reused before its completion" is enforced for every transport, not merely
//!   documented.
//! * a write may be posted *unsignaled*
//!   ([`Transport::post_write_tail_unsignaled`], where a transport has it):
//!   its success is not reported, and the completion of a signaled request
//!   posted after it says it is done (selective signaling).
//!
//! Connection establishment is transport specific (rdma_cm, `fi_connect`, an
//! in-memory pair) and deliberately not part of this trait: a driver receives an
//! already connected transport.
//!
//! Ordering guarantees every implementation must give (RC semantics): work
//! requests posted on one transport are executed in order; an RDMA write posted
//! before a send is placed in the peer's memory before that send's receive
//! completion is reported to the peer; a write-with-immediate consumes one posted
//! receive at the peer and completes it with [`CompletionKind::RecvImm`].
//!
//! Deferred posting (doorbell batching): a transport may hold posted work
//! requests and hand them to the peer (or the NIC) later, at the next
//! [`Transport::flush`], [`Transport::poll_completions`] or
//! [`Transport::wait`] call on the same transport, whichever comes first —
//! a chain of work requests per `ibv_post_send`, libfabric's `FI_MORE`.
//! Everything posted before one of those calls is on its way when it
//! returns. A driver therefore posts a round's work back to back and then
//! polls or waits (or calls `flush` once, when it neither polls nor waits
//! next); it never needs to flush after each post. A driver may also flush
//! part-way through a long burst, so that the peer starts on its first
//! part while the rest is being posted (rdio's client engine hands a deep
//! queue over in halves); [`Caps::deferred_posts`] says whether a
//! transport defers at all. Deferral changes *when*
//! work leaves, never its order or its outcome: the ordering guarantees
//! below hold across a batch exactly as across single posts, a post that
//! is refused is refused synchronously as before, and a request that fails
//! once handed on fails in its own completion, the requests before it in
//! the batch completing normally.
//!
//! Progress: a transport may advance only inside `&mut self` calls, like a
//! libfabric endpoint with `FI_PROGRESS_MANUAL` (the only mode of the `tcp`
//! provider) and like `rdio-loopback`. A peer's RDMA write may therefore become
//! visible through [`Transport::region`] only after this side called
//! [`Transport::poll_completions`] (an empty `out` slice is enough). A driver
//! that polls memory for an RDMA-written status block (seed claim 20) must
//! keep calling `poll_completions` in its polling loop.
//!
//! Middleware: [`FaultInjector`] and [`Tracer`] wrap any transport and are
//! transports themselves (smoltcp's `phy::FaultInjector` / `phy::Tracer`).
//! They, and any other wrapper, implement [`TransportWrapper`]: only the
//! calls they change, the rest forwarded by default.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;

use core::fmt;
use core::time::Duration;

bitflags::bitflags! {
    /// Access rights of a registered memory region (ibverbs `IBV_ACCESS_*`).
    ///
    /// Every region is locally readable. Grant the minimum: client read buffers
    /// and status blocks need `REMOTE_WRITE`; send and receive buffers need no
    /// remote rights at all.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Access: u32 {
        /// The local NIC may write into the region (receive buffers, RDMA read targets).
        const LOCAL_WRITE = 1 << 0;
        /// The peer may RDMA-write into the region.
        const REMOTE_WRITE = 1 << 1;
        /// The peer may RDMA-read from the region.
        const REMOTE_READ = 1 << 2;
    }
}

/// A memory region registered with a transport. Only meaningful to the
/// transport that issued it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegionId(pub u32);

/// A local scatter/gather element: `len` bytes at `offset` inside `region`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Slice {
    /// The registered region.
    pub region: RegionId,
    /// Byte offset inside the region.
    pub offset: usize,
    /// Length in bytes.
    pub len: usize,
}

impl Slice {
    /// The whole of `len` bytes of `region` starting at 0.
    pub const fn whole(region: RegionId, len: usize) -> Self {
        Self {
            region,
            offset: 0,
            len,
        }
    }
}

/// A window of peer memory the peer allowed us to access: what goes on the wire
/// as a buffer descriptor (address, remote key, length).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct RemoteBuf {
    /// Address in the peer's space, as the peer's transport defines it
    /// (a virtual address for ibverbs, an offset for `FI_MR_VIRT_ADDR`-less
    /// libfabric providers).
    pub addr: u64,
    /// Remote key (rkey) of the peer's registration.
    pub key: u32,
    /// Length of the window in bytes.
    pub len: u32,
}

/// Caller-chosen identifier of a work request, returned in its [`Completion`].
pub type WrId = u64;

/// What finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompletionKind {
    /// A posted send finished; its buffers are free again.
    Send,
    /// A posted RDMA write (with or without immediate) finished locally.
    Write,
    /// A posted receive was filled by a peer's send of `len` bytes.
    Recv {
        /// Bytes received.
        len: usize,
    },
    /// A posted receive was consumed by a peer's write-with-immediate
    /// (no bytes land in the receive buffer).
    RecvImm {
        /// The 32-bit immediate value.
        imm: u32,
    },
}

/// Why a work request failed (ibverbs `ibv_wc_status`, libfabric `fi_cq_err_entry`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WcError {
    /// The peer rejected an RDMA access: bad key, out of bounds, or missing rights.
    /// The connection is in error state afterwards, as an RC queue pair would be.
    RemoteAccess,
    /// A local scatter/gather element was invalid (unknown region, out of bounds,
    /// missing local rights).
    LocalProtection,
    /// The peer had no receive posted (receive-not-ready, retries exhausted).
    ReceiverNotReady,
    /// The received message did not fit the posted receive buffer.
    LocalLength,
    /// The peer could not accept the request: the receive it consumed was too
    /// small or invalid (ibverbs `IBV_WC_REM_INV_REQ_ERR` / `IBV_WC_REM_OP_ERR`).
    /// The sender-side counterpart of the peer's [`WcError::LocalLength`] or
    /// [`WcError::LocalProtection`] on a receive.
    RemoteOperation,
    /// The request was flushed because the connection entered error state.
    Flushed,
    /// The connection was lost (peer gone, transport timeout).
    Disconnected,
    /// Anything else the transport reports, with its raw code.
    Other(i32),
}

impl fmt::Display for WcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RemoteAccess => f.write_str("remote access error"),
            Self::LocalProtection => f.write_str("local protection error"),
            Self::ReceiverNotReady => f.write_str("receiver not ready"),
            Self::LocalLength => f.write_str("local length error"),
            Self::RemoteOperation => f.write_str("remote operation error"),
            Self::Flushed => f.write_str("work request flushed"),
            Self::Disconnected => f.write_str("connection lost"),
            Self::Other(code) => write!(f, "transport error {code}"),
        }
    }
}

impl core::error::Error for WcError {}

/// A finished work request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    /// The id given when the request was posted.
    pub wr_id: WrId,
    /// What kind of request finished.
    pub kind: CompletionKind,
    /// `Ok` or why it failed. A failed receive carries the kind `Recv { len: 0 }`.
    pub status: Result<(), WcError>,
}

/// Errors returned synchronously by transport calls (as opposed to
/// [`WcError`]s, which arrive in completions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportError {
    /// The region id is unknown (never registered or already deregistered).
    UnknownRegion(RegionId),
    /// A slice lies outside its region.
    OutOfBounds,
    /// The region is referenced by a posted work request whose completion has
    /// not been drained yet.
    Busy(RegionId),
    /// A queue (send, receive or completion) is full.
    QueueFull,
    /// Too many scatter/gather elements for one work request.
    TooManySegments,
    /// The message exceeds the transport's maximum message size.
    MessageTooLarge,
    /// Registration failed: out of memory or registration resources.
    NoMemory,
    /// The region holds memory the caller lent with
    /// [`Transport::register_external`]; the transport never writes it.
    ReadOnly(RegionId),
    /// The connection is closed or in error state.
    Disconnected,
    /// The operation is not supported by this transport.
    Unsupported,
    /// An OS or library error with its raw code (errno, `-FI_E*`).
    Os(i32),
    /// Nothing can ever arrive: a transport that runs its peer itself (both
    /// ends of an in-process pair stepped on one thread) saw neither side
    /// able to move. Waiting longer would hang; the caller has a deadlock.
    Stalled,
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownRegion(id) => write!(f, "unknown memory region {}", id.0),
            Self::OutOfBounds => f.write_str("slice out of the region's bounds"),
            Self::Busy(id) => write!(
                f,
                "memory region {} is in use by a posted work request",
                id.0
            ),
            Self::QueueFull => f.write_str("work queue full"),
            Self::TooManySegments => f.write_str("too many scatter/gather elements"),
            Self::MessageTooLarge => f.write_str("message larger than the transport allows"),
            Self::NoMemory => f.write_str("memory registration failed"),
            Self::ReadOnly(id) => write!(f, "memory region {} is read-only", id.0),
            Self::Disconnected => f.write_str("connection closed"),
            Self::Unsupported => f.write_str("operation not supported by this transport"),
            Self::Os(code) => write!(f, "os/library error {code}"),
            Self::Stalled => f.write_str(
                "no progress possible: neither end of the in-process connection can move (deadlock)",
            ),
        }
    }
}

impl core::error::Error for TransportError {}

/// Static facts about a connected transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    /// Largest message `post_send` accepts, in bytes.
    pub max_message: usize,
    /// Largest RDMA write, in bytes.
    pub max_write: usize,
    /// Most scatter/gather elements per work request.
    pub max_sge: usize,
    /// Most outstanding posted receives.
    pub max_recv: usize,
    /// Most outstanding sends + writes.
    pub max_send: usize,
    /// Registering memory pins its pages (a hardware transport:
    /// `ibv_reg_mr`, libfabric's hardware providers), so a region counts
    /// against `RLIMIT_MEMLOCK` and stays resident for its life. `false`
    /// for software transports, whose registrations are bookkeeping: a
    /// server may then register a mapping of a file of any size.
    pub pins_registrations: bool,
    /// Largest payload [`Transport::post_send_inline`] and
    /// [`Transport::post_write_inline`] take, in bytes; 0 when the
    /// transport has no inline data (both then return
    /// [`TransportError::Unsupported`]).
    pub max_inline: usize,
    /// Posted work waits for the next [`Transport::flush`],
    /// [`Transport::poll_completions`] or [`Transport::wait`] ("Deferred
    /// posting" in the crate docs), so a driver gains from flushing
    /// part-way through a long burst; `false` where each post is handed on
    /// at once and a flush would only cost a call.
    pub deferred_posts: bool,
}

/// One side of a connected, reliable RDMA channel.
///
/// All methods are non-blocking except [`Transport::wait`].
pub trait Transport {
    /// The provider name as negotiated on the side channel, e.g. `"loopback"`,
    /// `"verbs:mlx5_0"`, `"ofi:tcp"`.
    fn provider(&self) -> &str;

    /// Capabilities of this connection.
    fn caps(&self) -> Caps;

    /// Allocate and register `len` zeroed bytes with `access` rights.
    fn register(&mut self, len: usize, access: Access) -> Result<RegionId, TransportError>;

    /// Register memory the caller already owns as a region the transport
    /// only *reads*: a gather source for [`Transport::post_send`] and
    /// [`Transport::post_write`], without local-write or remote rights.
    ///
    /// This is the zero-copy path of a read (seed claim 16: the server
    /// places the data in the client's buffer by RDMA write): a server
    /// registers a read-only mapping of the file and writes straight from
    /// the page cache, as kernel SMB Direct and NFS/RDMA servers do, instead
    /// of copying the file into a registered bounce buffer first.
    ///
    /// The transport takes `memory` and keeps it until the region is
    /// deregistered or the transport dropped, so the bytes cannot be freed or
    /// unmapped while a posted request still reads them. It moves `memory`
    /// into a heap allocation of its own, calls `as_ref()` once and uses that
    /// slice for the life of the region, never moving or mutably borrowing
    /// `memory` again: an `AsRef` implementation without `unsafe` code cannot
    /// change or free those bytes meanwhile. What it cannot rule out is the
    /// operating system pulling pages away: when `memory` maps a file, a
    /// truncation of that file makes reading the lost pages raise `SIGBUS` in
    /// whatever reads them (the CPU copy of a software transport). Keeping a
    /// mapped file from shrinking is the caller's job.
    ///
    /// [`Transport::region`] reads such a region; [`Transport::region_mut`]
    /// fails with [`TransportError::ReadOnly`]; a receive posted into it
    /// completes with [`WcError::LocalProtection`]. The default
    /// implementation returns [`TransportError::Unsupported`]: a caller then
    /// falls back to copying into a region from [`Transport::register`].
    fn register_external<M>(&mut self, memory: M) -> Result<RegionId, TransportError>
    where
        M: AsRef<[u8]> + Send + Sync + 'static,
        Self: Sized,
    {
        drop(memory);
        Err(TransportError::Unsupported)
    }

    /// Deregister a region. Fails with [`TransportError::Busy`] while a posted
    /// work request still references it.
    fn deregister(&mut self, region: RegionId) -> Result<(), TransportError>;

    /// Read access to a region's bytes (always allowed: reading a buffer a
    /// posted send is transmitting from is harmless).
    fn region(&self, region: RegionId) -> Result<&[u8], TransportError>;

    /// Write access to a region's bytes; [`TransportError::Busy`] while posted.
    fn region_mut(&mut self, region: RegionId) -> Result<&mut [u8], TransportError>;

    /// The descriptor the peer needs to access `len` bytes at `offset` of a
    /// region registered with remote rights.
    fn remote_buf(
        &self,
        region: RegionId,
        offset: usize,
        len: usize,
    ) -> Result<RemoteBuf, TransportError>;

    /// Post a receive buffer for one incoming send or write-with-immediate.
    fn post_recv(&mut self, wr_id: WrId, buf: Slice) -> Result<(), TransportError>;

    /// Post a send gathering `sges` in order, optionally with immediate data.
    fn post_send(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        imm: Option<u32>,
    ) -> Result<(), TransportError>;

    /// Post an RDMA write of `sges` (gathered in order) to `dst` in the peer's
    /// memory; with `imm`, the write also consumes a peer receive and completes
    /// it as [`CompletionKind::RecvImm`].
    fn post_write(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        dst: RemoteBuf,
        imm: Option<u32>,
    ) -> Result<(), TransportError>;

    /// Post a send of `data`, copied into the work request as it is posted
    /// (inline data: ibverbs `IBV_SEND_INLINE`, libfabric `FI_INJECT`).
    /// `data` needs no registration and is the caller's again when the call
    /// returns, so a small message (a request, a status block) costs no
    /// registered send buffer to take, fill through
    /// [`Transport::region_mut`] and release at its completion. It behaves
    /// as [`Transport::post_send`] of the same bytes in every other way:
    /// same ordering, same receive consumed at the peer, one completion of
    /// kind [`CompletionKind::Send`]. At most [`Caps::max_inline`] bytes
    /// ([`TransportError::MessageTooLarge`] beyond). The default returns
    /// [`TransportError::Unsupported`] (`max_inline` 0).
    fn post_send_inline(&mut self, wr_id: WrId, data: &[u8]) -> Result<(), TransportError> {
        let _ = (wr_id, data);
        Err(TransportError::Unsupported)
    }

    /// Post an RDMA write of `data` to `dst`, copied into the work request
    /// as it is posted (see [`Transport::post_send_inline`]); with `imm`, as
    /// [`Transport::post_write`] with immediate data. At most
    /// [`Caps::max_inline`] bytes. The default returns
    /// [`TransportError::Unsupported`].
    fn post_write_inline(
        &mut self,
        wr_id: WrId,
        data: &[u8],
        dst: RemoteBuf,
        imm: Option<u32>,
    ) -> Result<(), TransportError> {
        let _ = (wr_id, data, dst, imm);
        Err(TransportError::Unsupported)
    }

    /// Post one RDMA write of `sges` (gathered in order) followed by
    /// `tail`, copied into the work request as it is posted (inline, as
    /// [`Transport::post_write_inline`]), to `dst`; with `imm`, as
    /// [`Transport::post_write`] with immediate data. The peer sees exactly
    /// what a [`Transport::post_write`] of the concatenation would place:
    /// one write, one receive consumed with `imm`, one completion of kind
    /// [`CompletionKind::Write`] here; the regions of `sges` are held until
    /// it is drained. `tail` is at most [`Caps::max_inline`] bytes and
    /// `dst.len` covers both parts.
    ///
    /// This is how a server puts a read's data and its status block
    /// (claims 16, 20) into one work request when the client placed the
    /// block right after the data: one write to execute and one
    /// completion to drain instead of two of each. Only with an immediate
    /// is that safe to poll on: the receive completion says the whole
    /// write landed, while the order in which one write's bytes become
    /// visible is not defined on RDMA hardware.
    ///
    /// The default returns [`TransportError::Unsupported`], having posted
    /// nothing: the caller then posts the two writes separately.
    fn post_write_tail(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        tail: &[u8],
        dst: RemoteBuf,
        imm: Option<u32>,
    ) -> Result<(), TransportError> {
        let _ = (wr_id, sges, tail, dst, imm);
        Err(TransportError::Unsupported)
    }

    /// Post [`Transport::post_write_tail`] without immediate data,
    /// *unsignaled*: when it succeeds, no completion is reported for it
    /// (ibverbs: a work request without `IBV_SEND_SIGNALED` on a queue pair
    /// created with `sq_sig_all = 0`; libfabric: `FI_SELECTIVE_COMPLETION`
    /// without `FI_COMPLETION`). Work requests of one connection complete
    /// in posting order, so the completion of any signaled request posted
    /// after it says it is done too: until then it takes a send-queue
    /// entry, and its regions may be held (a transport may release them
    /// as soon as it is done). A failed unsignaled write still
    /// completes, with its error and its `wr_id`, as a flushed one does
    /// when the connection goes down.
    ///
    /// This is how a server answers a batch of reads (claims 16, 20) with
    /// one completion to drain instead of one per read, as RDMA storage
    /// servers signal only the last work request of a chain: the caller
    /// must post a signaled request after it, or nothing tells it the
    /// write is done.
    ///
    /// The default returns [`TransportError::Unsupported`], having posted
    /// nothing: the caller then posts it signaled.
    fn post_write_tail_unsignaled(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        tail: &[u8],
        dst: RemoteBuf,
    ) -> Result<(), TransportError> {
        let _ = (wr_id, sges, tail, dst);
        Err(TransportError::Unsupported)
    }

    /// Hand every work request posted so far to the peer (ring the
    /// doorbell) without waiting for or draining anything; see "Deferred
    /// posting" in the crate docs. [`Transport::poll_completions`] and
    /// [`Transport::wait`] flush as well, so a driver that polls or waits
    /// next does not need it. Harmless with nothing posted. The default
    /// does nothing: right for a transport that hands each post on at once.
    fn flush(&mut self) -> Result<(), TransportError> {
        Ok(())
    }

    /// Drain up to `out.len()` completions; returns how many were written.
    /// This is also the progress call (see the crate docs): calling it with an
    /// empty `out` makes progress without draining anything, and it first
    /// hands on every work request posted before it ([`Transport::flush`]).
    fn poll_completions(&mut self, out: &mut [Completion]) -> Result<usize, TransportError>;

    /// Block until a completion may be available or `timeout` passes
    /// (interrupt mode: an armed completion channel / wait object). Spurious
    /// wake-ups are allowed; `None` waits indefinitely. Work posted before
    /// the call is handed on first ([`Transport::flush`]), so a wait never
    /// sleeps on requests the peer has not been given.
    fn wait(&mut self, timeout: Option<Duration>) -> Result<(), TransportError>;

    /// Tear the connection down; outstanding work requests complete as
    /// [`WcError::Flushed`].
    fn disconnect(&mut self);
}

pub mod baseline;
mod fault_injector;
#[cfg(feature = "alloc")]
pub mod regions;
mod rng;
mod tracer;
mod wrapper;

pub use fault_injector::{Fault, FaultConfig, FaultInjector, FaultStats, ScheduledFault};
pub use tracer::{PostKind, TraceEvent, Tracer};
pub use wrapper::TransportWrapper;

/// Total length of a scatter/gather list, or `None` if it overflows `usize`.
/// Transports use it to check [`Caps::max_message`] / [`Caps::max_write`]
/// on every post (inlined: a list is one or two elements long).
#[inline]
pub fn total_len(sges: &[Slice]) -> Option<usize> {
    sges.iter()
        .try_fold(0usize, |total, sge| total.checked_add(sge.len))
}
