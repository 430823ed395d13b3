//! [`FabricTransport`]: the rdio transport trait over one connected libfabric
//! `FI_EP_MSG` endpoint.
//!
//! One transport owns its whole object tree: endpoint, completion queue,
//! event queue, memory registrations and domain (the fabric is shared with
//! the listener that accepted it). Nothing is shared between transports, so
//! the domain is opened with `FI_THREAD_DOMAIN` and every method takes
//! `&mut self`; the transport may move between threads.

use std::collections::VecDeque;
use std::ffi::{CStr, c_void};
use std::ptr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdio_transport::{
    Access, Caps, Completion, CompletionKind, RegionId, RemoteBuf, Slice, Transport,
    TransportError, WcError, WrId,
};

use crate::error::{self, FabricError, check, check_call};
use crate::info::{PROVIDER_PREFIX, provider_name};
use crate::object::{self, Fabric, Info, Owned};
use crate::posted::{Finished, MAX_SGE, OpKind, PostedOp, PostedTable, Queue, SgeRegions};
use crate::region::{MrMode, RegionTable, Resolved};
use crate::sys;

/// Bit set in the 64-bit CQ data of the zero-byte send that completes an
/// emulated write-with-immediate, so the target can tell it from a send that
/// carries immediate data of its own. The immediate itself is the low 32 bits.
const WRITE_IMM_MARKER: u64 = 1 << 32;

/// Bit set in the CQ data of a *carried* write-with-immediate: one injected
/// send whose payload is a [`CARRIED_HEADER`]-byte header (target address,
/// key, length; little endian) followed by the bytes to write, which the
/// target's transport places itself (see `ImmMode::WriteThenSend`). The
/// immediate is the low 32 bits.
const CARRIED_MARKER: u64 = 1 << 33;

/// Header of a carried write: `addr: u64`, `key: u32`, `len: u32`.
const CARRIED_HEADER: usize = 16;

/// Largest carried message (header included). Writes with immediate data
/// of up to `CARRIED_MESSAGE - CARRIED_HEADER` bytes — rdio's 24-byte status
/// blocks — go as one send, when the provider injects that much.
const CARRIED_MESSAGE: usize = 64;

/// Longest single block inside [`Transport::wait`]: between blocks the event
/// queue is checked, so a vanished peer is noticed even when no completion
/// would ever arrive.
const WAIT_SLICE: Duration = Duration::from_millis(100);

/// How long after its last post or completion a waiting transport keeps
/// polling the completion queue before it blocks in `fi_cq_sread`; see
/// [`FabricTransport::set_spin_window`].
///
/// Blocking is what makes interrupt completions slow on the tcp provider
/// (measured in `docs/PERFORMANCE.md`, "Fabric interrupt completions"): a
/// thread asleep in `fi_cq_sread` sleeps in `poll(2)` on the socket, so
/// every segment of an incoming 1 MiB RDMA write wakes it again (about six
/// wake-ups per read), and on an otherwise idle VM each wake-up of a halted
/// vCPU took 10–50 µs before the thread ran, plus the sender's cost of
/// kicking it. A request in flight is answered within a few hundred
/// microseconds (a 1 MiB read took 0.3–0.5 ms end to end), so 1 ms covers
/// the service time of every request size up to 1 MiB with margin, while
/// a transport with nothing in flight stops spinning 1 ms after its last
/// completion: an idle connection costs no CPU.
pub const DEFAULT_SPIN_WINDOW: Duration = Duration::from_millis(1);

/// How often a spinning [`Transport::wait`] reads the event queue for a
/// vanished peer: every round would add a system call (`epoll_wait` on tcp)
/// to every CQ poll, while a lost peer only needs noticing within
/// milliseconds.
const SPIN_EVENT_CHECK: Duration = Duration::from_micros(100);

/// Completion entries read per `fi_cq_read` call: a server answering 32
/// reads of one round finds 64 send-queue entries (data write, status
/// write — carried in one send on tcp, see `ImmMode`) plus the
/// receives, so 64 takes a round in one or two calls where 16 took four
/// or more, each also a progress pass of the provider.
const CQ_BATCH: usize = 64;

/// How a write-with-immediate is carried out on this provider.
///
/// The trait promises that a write-with-immediate consumes one posted receive
/// at the peer and completes it as [`CompletionKind::RecvImm`].
///
/// * `Native`: the provider has the `FI_RX_CQ_DATA` mode (verbs): remote CQ
///   data consumes a posted receive, so one `fi_writemsg` with
///   `FI_REMOTE_CQ_DATA` does exactly what the trait says. The target's
///   receive completes with `FI_RMA | FI_REMOTE_WRITE | FI_REMOTE_CQ_DATA`.
/// * `WriteThenSend`: the provider (tcp in libfabric 1.17) reports a write's
///   CQ data in a completion of its own (`op_context == NULL`, flags
///   `FI_REMOTE_WRITE | FI_REMOTE_CQ_DATA`) *without* consuming a posted
///   receive (unit test `tcp_writedata_does_not_consume_a_posted_receive`).
///   So the write is posted plain,
///   followed on the same endpoint by a zero-byte send whose CQ data is
///   `WRITE_IMM_MARKER | imm`; `FI_ORDER_SAW` (requested in the hints) places
///   the data before the send's receive completes. The target's receive
///   completes with `FI_RECV | FI_MSG | FI_REMOTE_CQ_DATA`, length 0.
///   The initiator sees one `Write` completion, when both halves are done.
///
///   Small writes with immediate data (at most `carried_max` bytes: 48 on
///   tcp, whose inject size is 64; rdio's 24-byte status blocks) are
///   *carried* instead: one injected send of a 16-byte header (`addr: u64`,
///   `key: u32`, `len: u32`, little endian) and the bytes, CQ data
///   `CARRIED_MARKER | imm`. The target's transport checks the header as
///   the provider checks an RMA write (`RegionTable::remote_target`: the
///   key names one of its regions, which grants `REMOTE_WRITE` and holds
///   the bytes), copies them there and only then reports the receive as
///   `RecvImm`; a header that fails the check fails the receive
///   (`RemoteAccess`, `RemoteOperation`), which ends an rdio connection.
///   One provider operation instead of two: a 4 KiB read is a data write
///   and one send, a write's answer one send. Receives smaller than a
///   carried message go into a bounce slot of the transport's and are
///   copied on completion, so a zero-byte receive can still be consumed.
///   The bytes land when the target reads the completion, not when they
///   arrive: a later RMA write to the same bytes could land first. rdio
///   never does that (a status block slot is rewritten only for a request
///   submitted after the client read the previous status).
/// * `Unavailable`: fewer than 8 bytes of CQ data and no `FI_RX_CQ_DATA`;
///   writes with immediate data fail with `Unsupported`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ImmMode {
    Native,
    WriteThenSend,
    Unavailable,
}

/// Where the connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    /// Connected; work may be posted.
    Up,
    /// The peer went away or the provider reported a connection error.
    Lost,
    /// [`Transport::disconnect`] was called.
    Closed,
}

/// Details of the last failed completion or connection error, for logs:
/// the trait's [`WcError`] is a small `Copy` code, this keeps the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorDetail {
    /// The work request it belonged to, if any.
    pub wr_id: Option<WrId>,
    /// Positive libfabric error code (`fi_cq_err_entry::err`).
    pub code: i32,
    /// Provider-specific code (`prov_errno`).
    pub prov_errno: i32,
    /// `fi_strerror(code)`.
    pub message: String,
    /// `fi_cq_strerror(prov_errno)` where the provider explains it.
    pub provider_message: Option<String>,
}

/// One side of a connected libfabric `FI_EP_MSG` endpoint, implementing
/// [`Transport`].
///
/// Created by [`connect`](crate::connect) or [`Listener::accept`](crate::Listener::accept).
pub struct FabricTransport {
    // Field order is drop order, and libfabric needs children closed before
    // their parents: the endpoint first (so the provider stops touching our
    // buffers and contexts), then the queues it was bound to, the memory
    // registrations (each closed before its memory is freed), the domain and
    // last our reference to the fabric. `posted` owns the context storage the
    // endpoint used and must outlive it, so it comes after `ep` as well.
    ep: Option<Owned<sys::fid_ep>>,
    cq: Owned<sys::fid_cq>,
    eq: Owned<sys::fid_eq>,
    regions: RegionTable,
    posted: PostedTable,
    domain: Owned<sys::fid_domain>,
    _fabric: Arc<Fabric>,
    /// The info domain and endpoint were opened from, freed last (see [`Fabric`]).
    _info: Arc<Info>,

    provider: String,
    verbs: bool,
    caps: Caps,
    imm: ImmMode,
    /// Largest payload of a carried write-with-immediate (0: never carried).
    carried_max: usize,
    /// Bounce slots (`CARRIED_MESSAGE` bytes per posted-table index) for
    /// receives smaller than a carried message; registered on first use.
    bounce: Option<RegionId>,
    ready: VecDeque<Completion>,
    link: Link,
    last_error: Option<ErrorDetail>,
    /// See [`FabricTransport::set_spin_window`].
    spin_window: Duration,
    /// When `wait` last saw activity (work posted, a completion entry
    /// read): the start of the spin window.
    last_activity: Option<Instant>,
    /// Activity since `wait` last read the clock: posts and completions
    /// only set this, `wait` (which reads the clock anyway) turns it into
    /// `last_activity` — a clock read per post cost 2–3% of a 4 KiB
    /// request's CPU.
    active: bool,
}

// SAFETY: the transport exclusively owns its domain and every object opened
// from it, and the domain was opened with FI_THREAD_DOMAIN, under which the
// application only has to serialize calls — which `&mut self` does. The raw
// pointers inside (descriptors, contexts) refer to memory the transport owns,
// or to memory lent to it whose owner is `Send + Sync`.
unsafe impl Send for FabricTransport {}

impl FabricTransport {
    /// Open domain, queues and endpoint for `info` on `fabric`, bound and
    /// enabled but not yet connected (the caller connects or accepts).
    pub(crate) fn open(fabric: Arc<Fabric>, owned_info: Arc<Info>) -> Result<Self, FabricError> {
        let info = owned_info.get();
        // SAFETY (all attribute reads below): fi_getinfo / the CONNREQ event
        // allocate every attribute struct of the info they return.
        let (tx, rx, ep_attr, domain_attr) = unsafe {
            (
                info.tx_attr.as_ref(),
                info.rx_attr.as_ref(),
                info.ep_attr.as_ref(),
                info.domain_attr.as_ref(),
            )
        };
        let (Some(tx), Some(rx), Some(ep_attr), Some(domain_attr)) = (tx, rx, ep_attr, domain_attr)
        else {
            return Err(FabricError::Call {
                call: "fi_getinfo",
                code: libc::EINVAL,
            });
        };
        let info_ptr = ptr::from_ref(info).cast_mut();

        let eq = object::open("fi_eq_open", |out| {
            let mut attr = sys::fi_eq_attr {
                size: 16,
                wait_obj: sys::fi_wait_obj_FI_WAIT_UNSPEC,
                ..Default::default()
            };
            // SAFETY: the fabric is open; attr lives across the call.
            unsafe { sys::rdio_fi_eq_open(fabric.as_ptr(), &mut attr, out, ptr::null_mut()) }
        })?;
        // SAFETY: the fabric is open and `info` came from the same provider.
        let domain = object::open("fi_domain", |out| unsafe {
            sys::rdio_fi_domain(fabric.as_ptr(), info_ptr, out, ptr::null_mut())
        })?;
        let cq = object::open("fi_cq_open", |out| {
            let mut attr = sys::fi_cq_attr {
                // Room for every outstanding send and receive: each produces
                // at most one entry, so the CQ cannot overrun.
                size: tx.size + rx.size,
                format: sys::fi_cq_format_FI_CQ_FORMAT_DATA,
                wait_obj: sys::fi_wait_obj_FI_WAIT_UNSPEC,
                ..Default::default()
            };
            // SAFETY: the domain is open; attr lives across the call.
            unsafe { sys::rdio_fi_cq_open(domain.as_ptr(), &mut attr, out, ptr::null_mut()) }
        })?;
        // SAFETY: the domain is open and `info` describes this endpoint.
        let ep = object::open("fi_endpoint", |out| unsafe {
            sys::rdio_fi_endpoint(domain.as_ptr(), info_ptr, out, ptr::null_mut())
        })?;
        // SAFETY: endpoint, EQ and CQ are open and belong to the same fabric/domain.
        unsafe {
            check_call(
                "fi_ep_bind(eq)",
                sys::rdio_fi_ep_bind(ep.as_ptr(), eq.fid(), 0),
            )?;
            let both = u64::from(sys::FI_TRANSMIT | sys::FI_RECV);
            check_call(
                "fi_ep_bind(cq)",
                sys::rdio_fi_ep_bind(ep.as_ptr(), cq.fid(), both),
            )?;
            check_call("fi_enable", sys::rdio_fi_enable(ep.as_ptr()))?;
        }

        let imm = if info.mode & sys::FI_RX_CQ_DATA != 0 {
            ImmMode::Native
        } else if domain_attr.cq_data_size >= 8 {
            ImmMode::WriteThenSend
        } else {
            ImmMode::Unavailable
        };
        // One injected send per small write-with-immediate needs the provider
        // to inject header and payload, and the receiver to find regions by
        // key without asking the provider (keys are ours: region id + 1).
        let mr_mode = MrMode::from_bits(domain_attr.mr_mode);
        let carried_max = if imm == ImmMode::WriteThenSend && !mr_mode.prov_key {
            tx.inject_size
                .min(CARRIED_MESSAGE)
                .saturating_sub(CARRIED_HEADER)
        } else {
            0
        };
        let max_msg = ep_attr.max_msg_size;
        let caps = Caps {
            max_message: max_msg,
            max_write: max_msg.min(u32::MAX as usize),
            max_sge: tx.iov_limit.min(rx.iov_limit).clamp(1, MAX_SGE),
            max_recv: rx.size,
            // An emulated write-with-immediate takes two send-queue slots.
            max_send: if imm == ImmMode::WriteThenSend {
                tx.size / 2
            } else {
                tx.size
            },
            pins_registrations: pins_registrations(&provider_name(info)),
            // Inline sends (`FI_INJECT`) are not used yet: docs/PERFORMANCE.md, stop 31.
            max_inline: 0,
            // Posts are handed to the provider at once (see `flush`).
            deferred_posts: false,
        };
        let name = provider_name(info);
        Ok(Self {
            ep: Some(ep),
            cq,
            eq,
            regions: RegionTable::new(mr_mode),
            posted: PostedTable::new(tx.size, rx.size),
            domain,
            _fabric: fabric,
            _info: owned_info.clone(),
            verbs: name == "verbs",
            provider: format!("{PROVIDER_PREFIX}{name}"),
            caps,
            imm,
            carried_max,
            bounce: None,
            ready: VecDeque::new(),
            link: Link::Up,
            last_error: None,
            spin_window: DEFAULT_SPIN_WINDOW,
            last_activity: None,
            active: false,
        })
    }

    /// The endpoint, for connection setup.
    pub(crate) fn endpoint(&self) -> *mut sys::fid_ep {
        self.ep.as_ref().map_or(ptr::null_mut(), Owned::as_ptr)
    }

    /// Block on the event queue until `FI_CONNECTED` arrives (connection
    /// setup), failing on an error entry, another event, or `deadline`.
    pub(crate) fn wait_connected(
        &mut self,
        deadline: Option<Instant>,
        timeout: Duration,
    ) -> Result<(), FabricError> {
        let during = "FI_CONNECTED";
        match wait_event(&self.eq, deadline, timeout, during)? {
            (event, _) if event == sys::FI_CONNECTED => Ok(()),
            (event, _) => Err(FabricError::UnexpectedEvent { event, during }),
        }
    }

    /// The completion queue, for the raw baseline loop.
    pub(crate) fn cq(&self) -> *mut sys::fid_cq {
        self.cq.as_ptr()
    }

    /// Address, length and descriptor of a slice, for the raw baseline loop.
    pub(crate) fn resolve(&self, slice: Slice) -> Result<Resolved, TransportError> {
        self.regions.resolve(slice)
    }

    /// Details of the most recent failed completion or connection error.
    pub fn last_error(&self) -> Option<&ErrorDetail> {
        self.last_error.as_ref()
    }

    /// How long [`Transport::wait`] keeps polling the completion queue after
    /// the transport's last post or completion before it blocks
    /// ([`DEFAULT_SPIN_WINDOW`] unless set).
    ///
    /// While the window is open, `wait` calls `fi_cq_read` (which is also
    /// what moves data on providers that progress in the application's
    /// calls, like tcp) and yields the CPU between calls, so a thread
    /// sharing the CPU still runs; once it has passed, `wait` blocks in
    /// `fi_cq_sread` as before. A transport that keeps completing work more
    /// often than once per window therefore never sleeps (it behaves like a
    /// polling one and uses a CPU while it waits), and one that goes quiet
    /// sleeps at most one window later. `Duration::ZERO` always blocks at once.
    pub fn set_spin_window(&mut self, window: Duration) {
        self.spin_window = window;
    }

    /// See [`set_spin_window`](Self::set_spin_window).
    pub fn spin_window(&self) -> Duration {
        self.spin_window
    }

    /// Whether the connection is still up (not lost, not disconnected).
    pub fn is_connected(&self) -> bool {
        self.link == Link::Up
    }

    /// Number of posted work requests referencing `region` whose completions
    /// have not been drained (0 for unknown regions).
    pub fn posted_references(&self, region: RegionId) -> u32 {
        self.regions.busy(region)
    }

    /// Resolve a gather list into `iov`/`desc`, checking every element.
    /// Returns the regions it references and the total length.
    fn gather(
        &self,
        sges: &[Slice],
        iov: &mut [libc::iovec; MAX_SGE],
        desc: &mut [*mut c_void; MAX_SGE],
    ) -> Result<(SgeRegions, usize), TransportError> {
        if sges.len() > self.caps.max_sge {
            return Err(TransportError::TooManySegments);
        }
        let mut regions = SgeRegions::default();
        let mut total = 0usize;
        // Every region is locally readable, so a gather never lacks rights.
        for (i, sge) in sges.iter().enumerate() {
            let Resolved {
                ptr, len, desc: d, ..
            } = self.regions.resolve(*sge)?;
            iov[i] = libc::iovec {
                iov_base: ptr,
                iov_len: len,
            };
            desc[i] = d;
            regions.push(sge.region);
            total = total
                .checked_add(len)
                .ok_or(TransportError::MessageTooLarge)?;
        }
        Ok((regions, total))
    }

    fn ensure_up(&self) -> Result<*mut sys::fid_ep, TransportError> {
        match (&self.ep, self.link) {
            (Some(ep), Link::Up) => Ok(ep.as_ptr()),
            _ => Err(TransportError::Disconnected),
        }
    }

    /// Record a posted op: reserve its context and mark its regions busy.
    fn track(&mut self, op: PostedOp) -> (usize, *mut c_void) {
        for region in op.regions.iter() {
            self.regions.acquire(region);
        }
        self.posted.insert(op)
    }

    /// Undo `track` after the provider refused the post.
    fn untrack(&mut self, index: usize, regions: SgeRegions) {
        for region in regions.iter() {
            self.regions.release(region);
        }
        self.posted.cancel(index);
    }

    /// Post one libfabric operation for `op`, undoing the bookkeeping if the
    /// provider refuses it.
    fn submit(
        &mut self,
        op: PostedOp,
        post: impl FnOnce(*mut c_void) -> isize,
    ) -> Result<usize, TransportError> {
        let regions = op.regions;
        let (index, context) = self.track(op);
        match check(post(context)) {
            Ok(_) => {
                // Something is in flight: its completion, or the peer's
                // answer, is due soon.
                self.active = true;
                Ok(index)
            }
            Err(code) => {
                self.untrack(index, regions);
                Err(error::post_error(code))
            }
        }
    }

    /// Read up to `max` completion entries (successful or failed) into `ready`.
    /// Returns how many entries were consumed.
    fn read_cq(&mut self, max: usize) -> Result<usize, TransportError> {
        let mut consumed = 0;
        let mut entries = [sys::fi_cq_data_entry::default(); CQ_BATCH];
        while consumed < max {
            let want = (max - consumed).min(CQ_BATCH);
            // SAFETY: the CQ is open with FI_CQ_FORMAT_DATA, and `entries` has
            // room for `want` fi_cq_data_entry values.
            let ret = unsafe {
                sys::rdio_fi_cq_read(self.cq.as_ptr(), entries.as_mut_ptr().cast(), want)
            };
            match check(ret) {
                Ok(n) => {
                    for entry in &entries[..n] {
                        self.complete(entry.op_context, entry.flags, entry.len, entry.data, Ok(()));
                    }
                    consumed += n;
                    if n < want {
                        break;
                    }
                }
                Err(code) if code == sys::FI_EAGAIN as i32 => break,
                Err(code) if code == sys::FI_EAVAIL as i32 => {
                    self.read_cq_error()?;
                    consumed += 1;
                }
                Err(code) => return Err(TransportError::Os(code)),
            }
        }
        if consumed > 0 {
            self.active = true;
        }
        Ok(consumed)
    }

    /// The first half of [`Transport::wait`]: poll the CQ (and, when nothing
    /// came, the event queue), yielding the CPU between polls, until
    /// something is reportable, the connection is gone, `deadline` passes or
    /// the spin window since the last activity closes (see
    /// [`set_spin_window`](Self::set_spin_window)).
    fn spin(&mut self, deadline: Option<Instant>) -> Result<(), TransportError> {
        let mut events_checked = Instant::now();
        while self.ready.is_empty() && self.ep.is_some() {
            let now = Instant::now();
            if std::mem::take(&mut self.active) {
                self.last_activity = Some(now);
            }
            let Some(last) = self.last_activity else {
                return Ok(());
            };
            // Re-read every round: a completion that was only half of an
            // emulated write-with-immediate reports nothing but extends the
            // window.
            let close = last.checked_add(self.spin_window);
            let until = match (deadline, close) {
                (Some(deadline), Some(close)) => Some(deadline.min(close)),
                (deadline, close) => deadline.or(close),
            };
            if until.is_some_and(|until| now >= until) {
                return Ok(());
            }
            if self.read_cq(CQ_BATCH)? == 0 {
                // As in `poll_completions`, idle is the moment to notice a
                // vanished peer (teardown then reports what was in flight),
                // but not on every round: reading the event queue is a
                // system call of its own.
                if now.duration_since(events_checked) >= SPIN_EVENT_CHECK {
                    self.check_events();
                    events_checked = now;
                }
                std::thread::yield_now();
            }
        }
        Ok(())
    }

    /// Take one error entry off the CQ and turn it into a failed completion.
    fn read_cq_error(&mut self) -> Result<(), TransportError> {
        let mut entry = sys::fi_cq_err_entry::default();
        // SAFETY: the CQ is open; `entry` is zeroed, so err_data_size == 0 and
        // the provider points err_data at its own storage (API >= 1.5).
        let ret = unsafe { sys::rdio_fi_cq_readerr(self.cq.as_ptr(), &mut entry, 0) };
        match check(ret) {
            Ok(_) => {}
            Err(code) if code == sys::FI_EAGAIN as i32 => return Ok(()),
            Err(code) => return Err(TransportError::Os(code)),
        }
        // SAFETY: the CQ is open; the provider returns NULL or a string valid
        // at least until the next call on this CQ, which we copy at once.
        let provider_message = unsafe {
            let text = sys::rdio_fi_cq_strerror(
                self.cq.as_ptr(),
                entry.prov_errno,
                entry.err_data,
                ptr::null_mut(),
                0,
            );
            (!text.is_null()).then(|| CStr::from_ptr(text).to_string_lossy().into_owned())
        };
        let index = self.posted.index_of(entry.op_context);
        self.last_error = Some(ErrorDetail {
            wr_id: index
                .and_then(|i| self.posted.get_mut(i))
                .map(|op| op.wr_id),
            code: entry.err,
            prov_errno: entry.prov_errno,
            message: error::strerror(entry.err),
            provider_message,
        });
        let status = Err(error::wc_error_of(self.verbs, entry.err, entry.prov_errno));
        self.complete(entry.op_context, entry.flags, 0, entry.data, status);
        Ok(())
    }

    /// Turn one CQ entry into (at most) one trait completion in `ready`.
    fn complete(
        &mut self,
        context: *mut c_void,
        flags: u64,
        len: usize,
        data: u64,
        status: Result<(), WcError>,
    ) {
        // Entries without one of our contexts carry nothing we can report:
        // e.g. a peer's fi_writedata on a provider that does not consume a
        // receive for it (see ImmMode) has op_context == NULL.
        let Some(index) = self.posted.index_of(context) else {
            return;
        };
        let Some(finished) = self.posted.finish(index, status) else {
            return;
        };
        let op = match finished {
            Finished::Folded(op) => {
                self.release(&op);
                return;
            }
            Finished::Report(op) => op,
        };
        self.release(&op);
        let mut status = op.carried.map_or(Ok(()), Err);
        if status.is_ok() && op.kind == OpKind::Recv {
            status = self.land(&op, index, flags, len, data);
            if let Err(err) = status {
                // Found here, not by the provider: keep details as its errors'.
                let (code, why) = match err {
                    WcError::LocalLength => (
                        sys::FI_ETRUNC as i32,
                        "the message is larger than the posted receive",
                    ),
                    WcError::RemoteAccess => (
                        libc::EACCES,
                        "a carried write names no remotely writable bytes of ours",
                    ),
                    _ => (libc::EINVAL, "a malformed carried write"),
                };
                self.last_error = Some(ErrorDetail {
                    wr_id: Some(op.wr_id),
                    code,
                    prov_errno: 0,
                    message: error::strerror(code),
                    provider_message: Some(why.to_owned()),
                });
            }
        }
        let kind = match op.kind {
            OpKind::Send => CompletionKind::Send,
            OpKind::Write => CompletionKind::Write,
            OpKind::Recv if status.is_err() => CompletionKind::Recv { len: 0 },
            OpKind::Recv if self.is_write_imm(flags, data) => {
                CompletionKind::RecvImm { imm: data as u32 }
            }
            OpKind::Recv => CompletionKind::Recv { len },
        };
        self.ready.push_back(Completion {
            wr_id: op.wr_id,
            kind,
            status,
        });
    }

    fn release(&mut self, op: &PostedOp) {
        for region in op.regions.iter() {
            self.regions.release(region);
        }
    }

    /// Finish a successful receive in slot `index`: place a carried write,
    /// or copy a bounced message into the caller's buffer.
    fn land(
        &self,
        op: &PostedOp,
        index: usize,
        flags: u64,
        len: usize,
        data: u64,
    ) -> Result<(), WcError> {
        let buf = op.recv_buf.ok_or(WcError::LocalProtection)?;
        let landed = match (op.bounced, self.bounce) {
            (true, Some(region)) => Slice {
                region,
                offset: index * CARRIED_MESSAGE,
                len: CARRIED_MESSAGE,
            },
            (true, None) => return Err(WcError::LocalProtection),
            (false, _) => buf,
        };
        if flags & u64::from(sys::FI_REMOTE_CQ_DATA) != 0
            && data & CARRIED_MARKER != 0
            && self.imm == ImmMode::WriteThenSend
        {
            return self.place_carried(landed, len);
        }
        if !op.bounced {
            return Ok(());
        }
        if len > buf.len {
            return Err(WcError::LocalLength);
        }
        let from = self
            .regions
            .resolve(Slice { len, ..landed })
            .map_err(|_| WcError::LocalProtection)?;
        let to = self
            .regions
            .resolve(Slice { len, ..buf })
            .map_err(|_| WcError::LocalProtection)?;
        // SAFETY: both slices were resolved inside live regions (the
        // caller's is busy, so it cannot be deregistered); the bounce
        // region is the transport's own and never the caller's, so the
        // ranges do not overlap.
        unsafe { ptr::copy_nonoverlapping(from.ptr.cast::<u8>(), to.ptr.cast::<u8>(), len) };
        Ok(())
    }

    /// The target side of a carried write-with-immediate: `len` bytes
    /// arrived in `buf`; check the header as the provider checks an RMA
    /// write and copy the payload where it points. A malformed message or
    /// a write outside a remotely writable region fails the receive
    /// (`RemoteAccess` / `RemoteOperation`), which ends the connection.
    fn place_carried(&self, buf: Slice, len: usize) -> Result<(), WcError> {
        let mut message = [0u8; CARRIED_MESSAGE];
        let received = self
            .regions
            .bytes(buf.region)
            .ok()
            .filter(|_| len <= buf.len && (CARRIED_HEADER..=CARRIED_MESSAGE).contains(&len))
            .and_then(|bytes| bytes.get(buf.offset..)?.get(..len))
            .ok_or(WcError::RemoteOperation)?;
        message[..len].copy_from_slice(received);
        let field = |range: std::ops::Range<usize>| {
            let mut raw = [0u8; 8];
            raw[..range.len()].copy_from_slice(&message[range]);
            u64::from_le_bytes(raw)
        };
        let (addr, key, payload) = (field(0..8), field(8..12) as u32, field(12..16) as usize);
        if CARRIED_HEADER + payload != len {
            return Err(WcError::RemoteOperation);
        }
        let target = self.regions.remote_target(key, addr, payload)?;
        // SAFETY: `remote_target` checked that `payload` bytes at `target`
        // lie inside a live region granting REMOTE_WRITE, exactly what the
        // provider's own RMA write would touch; `message` is a local copy,
        // so the ranges cannot overlap, and no borrow of region memory is
        // held across this call (`&self` only hands out borrows tied to it,
        // none of which is alive here).
        unsafe {
            ptr::copy_nonoverlapping(message[CARRIED_HEADER..len].as_ptr(), target, payload);
        }
        Ok(())
    }

    /// Whether a receive completion is the target side of a write-with-immediate.
    fn is_write_imm(&self, flags: u64, data: u64) -> bool {
        if flags & u64::from(sys::FI_REMOTE_CQ_DATA) == 0 {
            return false;
        }
        match self.imm {
            ImmMode::Native => flags & u64::from(sys::FI_REMOTE_WRITE) != 0,
            ImmMode::WriteThenSend => data & (WRITE_IMM_MARKER | CARRIED_MARKER) != 0,
            ImmMode::Unavailable => false,
        }
    }

    /// Look at the event queue without blocking: `FI_SHUTDOWN` or an error
    /// entry means the connection is gone.
    fn check_events(&mut self) {
        if self.ep.is_none() {
            return;
        }
        match read_event(&self.eq, 0) {
            Ok(Some((event, _))) if event == sys::FI_SHUTDOWN => self.teardown(Link::Lost),
            Ok(_) => {}
            Err(detail) => {
                self.last_error = Some(detail);
                self.teardown(Link::Lost);
            }
        }
    }

    /// Close the endpoint and complete everything still outstanding.
    ///
    /// After `fi_close` the provider no longer touches our buffers or
    /// contexts, so whatever it did not report by then is reported here —
    /// `Flushed` after a local disconnect, `Disconnected` after a loss — and
    /// every region is released. This is what makes a vanished peer visible
    /// even on providers that flush nothing.
    fn teardown(&mut self, link: Link) {
        let Some(ep) = self.ep.take() else { return };
        if link == Link::Closed {
            // SAFETY: the endpoint is open. A failure (already shut down by
            // the peer) changes nothing: we close it right after.
            unsafe { sys::rdio_fi_shutdown(ep.as_ptr(), 0) };
        }
        drop(ep);
        self.link = link;
        // Entries the provider queued before the close are still real results.
        while matches!(self.read_cq(usize::MAX), Ok(n) if n > 0) {}
        let status = if link == Link::Closed {
            WcError::Flushed
        } else {
            WcError::Disconnected
        };
        for index in self.posted.outstanding() {
            let context = self.posted.context(index);
            self.complete(context, 0, 0, 0, Err(status));
        }
    }

    /// Move up to `out.len()` ready completions into `out`.
    fn drain_ready(&mut self, out: &mut [Completion]) -> usize {
        let n = out.len().min(self.ready.len());
        for (slot, completion) in out.iter_mut().zip(self.ready.drain(..n)) {
            *slot = completion;
        }
        n
    }

    /// Local protection failures are reported like an RC queue pair reports
    /// them: the post succeeds and its completion carries the error.
    fn fail_locally(&mut self, wr_id: WrId, kind: CompletionKind, error: WcError) {
        self.ready.push_back(Completion {
            wr_id,
            kind,
            status: Err(error),
        });
    }
}

impl Transport for FabricTransport {
    fn provider(&self) -> &str {
        &self.provider
    }

    fn caps(&self) -> Caps {
        self.caps
    }

    fn register(&mut self, len: usize, access: Access) -> Result<RegionId, TransportError> {
        self.regions.register(&self.domain, len, access)
    }

    fn register_external<M>(&mut self, memory: M) -> Result<RegionId, TransportError>
    where
        M: AsRef<[u8]> + Send + Sync + 'static,
    {
        self.regions.register_external(&self.domain, memory)
    }

    fn deregister(&mut self, region: RegionId) -> Result<(), TransportError> {
        self.regions.deregister(region)
    }

    fn region(&self, region: RegionId) -> Result<&[u8], TransportError> {
        self.regions.bytes(region)
    }

    fn region_mut(&mut self, region: RegionId) -> Result<&mut [u8], TransportError> {
        self.regions.bytes_mut(region)
    }

    fn remote_buf(
        &self,
        region: RegionId,
        offset: usize,
        len: usize,
    ) -> Result<RemoteBuf, TransportError> {
        self.regions.remote_buf(region, offset, len)
    }

    fn post_recv(&mut self, wr_id: WrId, buf: Slice) -> Result<(), TransportError> {
        let ep = self.ensure_up()?;
        let target = self.regions.resolve(buf)?;
        if !target.access.contains(Access::LOCAL_WRITE) {
            self.fail_locally(
                wr_id,
                CompletionKind::Recv { len: 0 },
                WcError::LocalProtection,
            );
            return Ok(());
        }
        if !self.posted.has_room(Queue::Rx, 1) {
            return Err(TransportError::QueueFull);
        }
        // A receive a carried write-with-immediate could not fit is posted
        // into a bounce slot the size of the largest carried message; what
        // arrives is copied into `buf` at completion (`complete`).
        let bounced = self.carried_max > 0 && buf.len < CARRIED_MESSAGE;
        let mut regions = SgeRegions::default();
        regions.push(buf.region);
        let target = if bounced {
            let index = self.posted.next_index().ok_or(TransportError::QueueFull)?;
            let bounce = match self.bounce {
                Some(region) => region,
                None => {
                    let len = self.posted.slots() * CARRIED_MESSAGE;
                    let region = self
                        .regions
                        .register(&self.domain, len, Access::LOCAL_WRITE)?;
                    self.bounce = Some(region);
                    region
                }
            };
            // Busy while the provider may write into it, like any other
            // receive's region: `deregister` refuses it until completion.
            regions.push(bounce);
            self.regions.resolve(Slice {
                region: bounce,
                offset: index * CARRIED_MESSAGE,
                len: CARRIED_MESSAGE,
            })?
        } else {
            target
        };
        let op = PostedOp {
            wr_id,
            kind: OpKind::Recv,
            queue: Queue::Rx,
            regions,
            partner: None,
            carried: None,
            recv_buf: Some(buf),
            bounced,
        };
        self.submit(op, |context| {
            // SAFETY: the endpoint is open; the buffer lies inside a region
            // that stays registered while busy (deregister refuses), and the
            // context is a stable fi_context2 slot.
            unsafe { sys::rdio_fi_recv(ep, target.ptr, target.len, target.desc, 0, context) }
        })?;
        Ok(())
    }

    fn post_send(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        imm: Option<u32>,
    ) -> Result<(), TransportError> {
        let ep = self.ensure_up()?;
        if imm.is_some() && self.imm == ImmMode::Unavailable {
            return Err(TransportError::Unsupported);
        }
        let mut iov = [libc::iovec {
            iov_base: ptr::null_mut(),
            iov_len: 0,
        }; MAX_SGE];
        let mut desc = [ptr::null_mut(); MAX_SGE];
        let (regions, total) = self.gather(sges, &mut iov, &mut desc)?;
        if total > self.caps.max_message {
            return Err(TransportError::MessageTooLarge);
        }
        if !self.posted.has_room(Queue::Tx, 1) {
            return Err(TransportError::QueueFull);
        }
        let op = PostedOp {
            wr_id,
            kind: OpKind::Send,
            queue: Queue::Tx,
            regions,
            partner: None,
            carried: None,
            recv_buf: None,
            bounced: false,
        };
        self.submit(op, |context| {
            send_msg(
                ep,
                &iov[..sges.len()],
                &mut desc[..sges.len()],
                imm.map(u64::from),
                context,
            )
        })?;
        Ok(())
    }

    fn post_write(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        dst: RemoteBuf,
        imm: Option<u32>,
    ) -> Result<(), TransportError> {
        let ep = self.ensure_up()?;
        let mut iov = [libc::iovec {
            iov_base: ptr::null_mut(),
            iov_len: 0,
        }; MAX_SGE];
        let mut desc = [ptr::null_mut(); MAX_SGE];
        let (regions, total) = self.gather(sges, &mut iov, &mut desc)?;
        if total > self.caps.max_write {
            return Err(TransportError::MessageTooLarge);
        }
        if total > dst.len as usize {
            return Err(TransportError::OutOfBounds);
        }
        let rma = sys::fi_rma_iov {
            addr: dst.addr,
            len: total,
            key: u64::from(dst.key),
        };
        let n = sges.len();
        let write = PostedOp {
            wr_id,
            kind: OpKind::Write,
            queue: Queue::Tx,
            regions,
            partner: None,
            carried: None,
            recv_buf: None,
            bounced: false,
        };
        match (imm, self.imm) {
            (None, _) => {
                if !self.posted.has_room(Queue::Tx, 1) {
                    return Err(TransportError::QueueFull);
                }
                self.submit(write, |context| {
                    write_msg(ep, &iov[..n], &mut desc[..n], &rma, None, context)
                })?;
            }
            (Some(imm), ImmMode::Native) => {
                if !self.posted.has_room(Queue::Tx, 1) {
                    return Err(TransportError::QueueFull);
                }
                let data = Some(u64::from(imm));
                self.submit(write, |context| {
                    write_msg(ep, &iov[..n], &mut desc[..n], &rma, data, context)
                })?;
            }
            (Some(imm), ImmMode::WriteThenSend) if total <= self.carried_max => {
                // Small enough to carry: header and bytes in one injected
                // send, placed by the target's transport (`place_carried`).
                if !self.posted.has_room(Queue::Tx, 1) {
                    return Err(TransportError::QueueFull);
                }
                let mut message = [0u8; CARRIED_MESSAGE];
                message[..8].copy_from_slice(&dst.addr.to_le_bytes());
                message[8..12].copy_from_slice(&dst.key.to_le_bytes());
                message[12..16].copy_from_slice(&(total as u32).to_le_bytes());
                let mut at = CARRIED_HEADER;
                for v in &iov[..n] {
                    // SAFETY: `gather` resolved every element inside a live
                    // registered region; `total` (their sum) fits `message`
                    // after the header, checked by the guard.
                    let bytes =
                        unsafe { std::slice::from_raw_parts(v.iov_base.cast::<u8>(), v.iov_len) };
                    message[at..at + v.iov_len].copy_from_slice(bytes);
                    at += v.iov_len;
                }
                let data = CARRIED_MARKER | u64::from(imm);
                self.submit(write, |context| {
                    inject_msg(ep, &message[..at], data, context)
                })?;
            }
            (Some(imm), ImmMode::WriteThenSend) => {
                if !self.posted.has_room(Queue::Tx, 2) {
                    return Err(TransportError::QueueFull);
                }
                let write_index = self.submit(write, |context| {
                    write_msg(ep, &iov[..n], &mut desc[..n], &rma, None, context)
                })?;
                let notify = PostedOp {
                    wr_id,
                    kind: OpKind::Write,
                    queue: Queue::Tx,
                    regions: SgeRegions::default(),
                    partner: Some(write_index),
                    carried: None,
                    recv_buf: None,
                    bounced: false,
                };
                let data = Some(WRITE_IMM_MARKER | u64::from(imm));
                match self.submit(notify, |context| send_msg(ep, &[], &mut [], data, context)) {
                    Ok(notify_index) => {
                        if let Some(op) = self.posted.get_mut(write_index) {
                            op.partner = Some(notify_index);
                        }
                    }
                    Err(err) => {
                        // The write is already on its way and cannot be
                        // recalled; its completion reports the failure so the
                        // caller learns the immediate never went out.
                        if let Some(op) = self.posted.get_mut(write_index) {
                            op.carried = Some(match err {
                                TransportError::Disconnected => WcError::Disconnected,
                                TransportError::Os(code) => WcError::Other(code),
                                _ => WcError::Other(sys::FI_EAGAIN as i32),
                            });
                        }
                    }
                }
            }
            (Some(_), ImmMode::Unavailable) => return Err(TransportError::Unsupported),
        }
        Ok(())
    }

    /// Posts are never held here: libfabric 1.17's `tcp` provider starts
    /// sending a posted operation inside the post call whenever its
    /// socket is idle, and ignores `FI_MORE` (docs/PERFORMANCE.md,
    /// "Batching"), so there is no doorbell to ring. What a post could not
    /// hand to the socket (it was full) waits in the provider's queue and
    /// moves only inside a libfabric call: the flush is one progress pass
    /// (a CQ read whose entries wait in `ready` for the next poll).
    fn flush(&mut self) -> Result<(), TransportError> {
        if self.ep.is_some() {
            self.read_cq(CQ_BATCH)?;
        }
        Ok(())
    }

    fn poll_completions(&mut self, out: &mut [Completion]) -> Result<usize, TransportError> {
        let mut n = self.drain_ready(out);
        if self.ep.is_some() {
            // Reading the CQ is also what makes the provider progress (tcp
            // moves data only inside libfabric calls), so read even when `out`
            // is full or empty; surplus completions wait in `ready`.
            let consumed = self.read_cq((out.len() - n).max(CQ_BATCH))?;
            if consumed == 0 {
                // Idle: the cheap moment to notice a vanished peer.
                self.check_events();
            }
            n += self.drain_ready(&mut out[n..]);
        }
        if n == 0 && self.ep.is_none() && self.ready.is_empty() && self.posted.is_empty() {
            return Err(TransportError::Disconnected);
        }
        Ok(n)
    }

    /// Spins first, then blocks: see [`FabricTransport::set_spin_window`]
    /// for why and for how long.
    fn wait(&mut self, timeout: Option<Duration>) -> Result<(), TransportError> {
        let start = Instant::now();
        self.spin(timeout.and_then(|limit| start.checked_add(limit)))?;
        while self.ready.is_empty() && self.ep.is_some() {
            let remaining = match timeout {
                Some(limit) => match limit.checked_sub(start.elapsed()) {
                    Some(left) if !left.is_zero() => left,
                    _ => return Ok(()),
                },
                None => WAIT_SLICE,
            };
            let slice = remaining.min(WAIT_SLICE);
            let mut entries = [sys::fi_cq_data_entry::default(); CQ_BATCH];
            let millis = timeout_millis(slice);
            // SAFETY: the CQ is open with a wait object (FI_WAIT_UNSPEC) and
            // FI_CQ_FORMAT_DATA; `entries` holds CQ_BATCH entries.
            let ret = unsafe {
                sys::rdio_fi_cq_sread(
                    self.cq.as_ptr(),
                    entries.as_mut_ptr().cast(),
                    CQ_BATCH,
                    ptr::null(),
                    millis,
                )
            };
            match check(ret) {
                Ok(n) => {
                    for entry in &entries[..n] {
                        self.complete(entry.op_context, entry.flags, entry.len, entry.data, Ok(()));
                    }
                    self.active = true;
                    // Entries may all have been folded halves: keep waiting
                    // only if nothing became reportable.
                }
                Err(code) if code == sys::FI_EAVAIL as i32 => self.read_cq_error()?,
                Err(code)
                    if code == sys::FI_EAGAIN as i32
                        || code == sys::FI_ETIMEDOUT as i32
                        || code == sys::FI_EINTR as i32 =>
                {
                    self.check_events();
                }
                Err(code) => return Err(TransportError::Os(code)),
            }
        }
        Ok(())
    }

    fn disconnect(&mut self) {
        self.teardown(Link::Closed);
    }
}

impl Drop for FabricTransport {
    fn drop(&mut self) {
        // A graceful shutdown tells the peer at once (FI_SHUTDOWN) instead of
        // leaving it to notice the closed socket / QP.
        self.teardown(Link::Closed);
    }
}

/// `fi_sendmsg` with `FI_REMOTE_CQ_DATA` when `data` is given.
fn send_msg(
    ep: *mut sys::fid_ep,
    iov: &[libc::iovec],
    desc: &mut [*mut c_void],
    data: Option<u64>,
    context: *mut c_void,
) -> isize {
    let msg = sys::fi_msg {
        msg_iov: iov.as_ptr().cast(),
        desc: desc.as_mut_ptr(),
        iov_count: iov.len(),
        addr: 0,
        context,
        data: data.unwrap_or(0),
    };
    let flags =
        u64::from(sys::FI_COMPLETION) | data.map_or(0, |_| u64::from(sys::FI_REMOTE_CQ_DATA));
    // SAFETY: the caller passes an open endpoint; iov/desc describe registered
    // memory kept alive while the op is posted; msg lives across the call
    // (libfabric copies what it needs before returning).
    unsafe { sys::rdio_fi_sendmsg(ep, &msg, flags) }
}

/// `fi_sendmsg` of `bytes` with `FI_INJECT` (the provider copies them
/// before returning, so they need neither registration nor to outlive the
/// call) and CQ data `data`; a completion is still reported.
fn inject_msg(ep: *mut sys::fid_ep, bytes: &[u8], data: u64, context: *mut c_void) -> isize {
    let iov = libc::iovec {
        iov_base: bytes.as_ptr().cast_mut().cast(),
        iov_len: bytes.len(),
    };
    let mut desc = ptr::null_mut();
    let msg = sys::fi_msg {
        msg_iov: ptr::from_ref(&iov).cast(),
        desc: &mut desc,
        iov_count: 1,
        addr: 0,
        context,
        data,
    };
    let flags = u64::from(sys::FI_INJECT | sys::FI_COMPLETION | sys::FI_REMOTE_CQ_DATA);
    // SAFETY: the caller passes an open endpoint; `bytes` (no larger than the
    // provider's inject size) and `msg` live across the call, and FI_INJECT
    // makes the provider copy the bytes before it returns.
    unsafe { sys::rdio_fi_sendmsg(ep, &msg, flags) }
}

/// `fi_writemsg` of `iov` to one remote window, with CQ data when given.
fn write_msg(
    ep: *mut sys::fid_ep,
    iov: &[libc::iovec],
    desc: &mut [*mut c_void],
    rma: &sys::fi_rma_iov,
    data: Option<u64>,
    context: *mut c_void,
) -> isize {
    let msg = sys::fi_msg_rma {
        msg_iov: iov.as_ptr().cast(),
        desc: desc.as_mut_ptr(),
        iov_count: iov.len(),
        addr: 0,
        rma_iov: rma,
        rma_iov_count: 1,
        context,
        data: data.unwrap_or(0),
    };
    let flags =
        u64::from(sys::FI_COMPLETION) | data.map_or(0, |_| u64::from(sys::FI_REMOTE_CQ_DATA));
    // SAFETY: as in `send_msg`; `rma` outlives the call.
    unsafe { sys::rdio_fi_writemsg(ep, &msg, flags) }
}

/// A connection-management event: the event number and, for `FI_CONNREQ`,
/// the new connection's info (owned by the caller, freed with `fi_freeinfo`).
pub(crate) type CmEvent = (u32, *mut sys::fi_info);

/// `fi_eq_read` (`timeout_ms == 0`) or `fi_eq_sread`: `Ok(None)` when nothing
/// arrived, `Err` with the details of an error entry.
pub(crate) fn read_event(
    eq: &Owned<sys::fid_eq>,
    timeout_ms: i32,
) -> Result<Option<CmEvent>, ErrorDetail> {
    let mut event = 0u32;
    let mut entry = CmEntry::default();
    let len = size_of::<CmEntry>();
    // SAFETY: the EQ is open; `entry` is large enough for a CM entry with
    // connection data, and `event` receives the event number.
    let ret = unsafe {
        let buf = ptr::from_mut(&mut entry).cast::<c_void>();
        if timeout_ms == 0 {
            sys::rdio_fi_eq_read(eq.as_ptr(), &mut event, buf, len, 0)
        } else {
            sys::rdio_fi_eq_sread(eq.as_ptr(), &mut event, buf, len, timeout_ms, 0)
        }
    };
    match check(ret) {
        Ok(_) => Ok(Some((event, entry.entry.info))),
        Err(code) if code == sys::FI_EAVAIL as i32 => {
            let mut err = sys::fi_eq_err_entry::default();
            // SAFETY: the EQ is open and has an error entry available.
            unsafe { sys::rdio_fi_eq_readerr(eq.as_ptr(), &mut err, 0) };
            Err(ErrorDetail {
                wr_id: None,
                code: err.err,
                prov_errno: err.prov_errno,
                message: error::strerror(err.err),
                provider_message: None,
            })
        }
        Err(code) if code == sys::FI_EAGAIN as i32 || code == sys::FI_ETIMEDOUT as i32 => Ok(None),
        Err(code) => Err(ErrorDetail {
            wr_id: None,
            code,
            prov_errno: 0,
            message: error::strerror(code),
            provider_message: None,
        }),
    }
}

/// Block on `eq` until an event arrives or `deadline` (if any) passes.
pub(crate) fn wait_event(
    eq: &Owned<sys::fid_eq>,
    deadline: Option<Instant>,
    timeout: Duration,
    during: &'static str,
) -> Result<CmEvent, FabricError> {
    loop {
        let left = deadline.map_or(WAIT_SLICE, |deadline| {
            deadline.saturating_duration_since(Instant::now())
        });
        if left.is_zero() {
            return Err(FabricError::Timeout {
                during,
                waited: timeout,
            });
        }
        let millis = timeout_millis(left.min(WAIT_SLICE));
        match read_event(eq, millis) {
            Ok(Some(event)) => return Ok(event),
            Ok(None) => {}
            Err(detail) => return Err(FabricError::ConnectFailed { code: detail.code }),
        }
    }
}

/// A libfabric timeout in milliseconds for `d`, rounded up (and at least 1)
/// so that a blocking call never returns before `d` has passed: rounding
/// down turned every 10 ms wait into a 9 ms block plus a second 1 ms one.
fn timeout_millis(d: Duration) -> i32 {
    i32::try_from(d.as_micros().div_ceil(1000))
        .unwrap_or(i32::MAX)
        .max(1)
}

/// An `fi_eq_cm_entry` followed by room for connection data.
#[repr(C)]
struct CmEntry {
    entry: sys::fi_eq_cm_entry,
    data: [u8; 256],
}

impl Default for CmEntry {
    fn default() -> Self {
        Self {
            entry: sys::fi_eq_cm_entry::default(),
            data: [0; 256],
        }
    }
}

/// Whether `provider`'s memory registration pins pages: every provider but
/// the software ones whose registrations are only a key table (`tcp`,
/// `sockets`, `udp`, `shm`, alone or under a utility provider such as
/// `ofi_rxm`, which libfabric names `tcp;ofi_rxm`). Unknown providers are
/// taken to pin, the safe answer for a limit on what may be registered.
fn pins_registrations(provider: &str) -> bool {
    let core = provider.split(';').next().unwrap_or(provider);
    !matches!(core, "tcp" | "sockets" | "udp" | "shm")
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_software_providers_register_without_pinning() {
        for software in ["tcp", "tcp;ofi_rxm", "sockets", "udp;ofi_rxd", "shm"] {
            assert!(!pins_registrations(software), "{software}");
        }
        for hardware in ["verbs", "verbs;ofi_rxm", "efa", "psm3", "", "tcpx"] {
            assert!(pins_registrations(hardware), "{hardware}");
        }
    }

    use std::net::{Ipv4Addr, SocketAddr};
    use std::thread;

    use super::*;
    use crate::{Listener, connect};

    fn pair() -> (FabricTransport, FabricTransport) {
        let listener = Listener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), "tcp").unwrap();
        let addr = listener.local_addr();
        let server =
            thread::spawn(move || listener.accept_timeout(Duration::from_secs(5)).unwrap());
        let client = connect(addr, "tcp").unwrap();
        (client, server.join().unwrap())
    }

    #[test]
    fn timeouts_round_up_to_whole_milliseconds() {
        assert_eq!(timeout_millis(Duration::ZERO), 1);
        assert_eq!(timeout_millis(Duration::from_micros(1)), 1);
        assert_eq!(timeout_millis(Duration::from_micros(9_999)), 10);
        assert_eq!(timeout_millis(Duration::from_millis(10)), 10);
        assert_eq!(timeout_millis(Duration::from_micros(10_001)), 11);
        assert_eq!(timeout_millis(Duration::MAX), i32::MAX);
    }

    /// The provider behaviour `ImmMode::WriteThenSend` exists for: in
    /// libfabric 1.17 the tcp provider reports a write's remote CQ data as a
    /// completion of its own (no context, `FI_REMOTE_WRITE |
    /// FI_REMOTE_CQ_DATA`) and leaves the posted receive for the next send.
    #[test]
    fn tcp_writedata_does_not_consume_a_posted_receive() {
        let (mut client, mut server) = pair();
        assert_eq!(
            client.imm,
            ImmMode::WriteThenSend,
            "tcp has no FI_RX_CQ_DATA mode"
        );
        let window = server
            .register(64, Access::LOCAL_WRITE | Access::REMOTE_WRITE)
            .unwrap();
        let rx = server.register(8, Access::LOCAL_WRITE).unwrap();
        let src = client.register(8, Access::empty()).unwrap();
        server.post_recv(1, Slice::whole(rx, 8)).unwrap();
        let dst = server.remote_buf(window, 0, 8).unwrap();
        let source = client.resolve(Slice::whole(src, 8)).unwrap();
        let iov = [libc::iovec {
            iov_base: source.ptr,
            iov_len: 8,
        }];
        let mut desc = [source.desc];
        let rma = sys::fi_rma_iov {
            addr: dst.addr,
            len: 8,
            key: u64::from(dst.key),
        };
        // Not one of the client's tracked contexts: its completion is ignored.
        let mut untracked = sys::fi_context2::default();
        let context = ptr::from_mut(&mut untracked).cast();
        let ret = write_msg(
            client.endpoint(),
            &iov,
            &mut desc,
            &rma,
            Some(0x77),
            context,
        );
        assert!(ret >= 0, "fi_writemsg: {ret}");

        let start = Instant::now();
        let entry = loop {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "no target completion for the CQ data"
            );
            client.poll_completions(&mut []).unwrap();
            let mut entry = sys::fi_cq_data_entry::default();
            // SAFETY: the server's CQ is open in FI_CQ_FORMAT_DATA; one entry fits.
            let ret =
                unsafe { sys::rdio_fi_cq_read(server.cq(), ptr::from_mut(&mut entry).cast(), 1) };
            if ret == 1 {
                break entry;
            }
        };
        assert!(entry.op_context.is_null());
        let expected = u64::from(sys::FI_REMOTE_WRITE | sys::FI_REMOTE_CQ_DATA);
        assert_eq!(entry.flags & expected, expected);
        assert_eq!(entry.data, 0x77);
        assert_eq!(
            server.posted_references(rx),
            1,
            "the receive is still posted"
        );

        client.post_send(2, &[Slice::whole(src, 3)], None).unwrap();
        assert_eq!(
            next_completion(&mut server, &mut client),
            Completion {
                wr_id: 1,
                kind: CompletionKind::Recv { len: 3 },
                status: Ok(())
            }
        );
    }

    /// Poll both ends until `target` reports one completion; returns it.
    fn next_completion(target: &mut FabricTransport, other: &mut FabricTransport) -> Completion {
        let mut out = [Completion {
            wr_id: 0,
            kind: CompletionKind::Send,
            status: Ok(()),
        }; 1];
        let start = Instant::now();
        while target.poll_completions(&mut out).unwrap() == 0 {
            assert!(start.elapsed() < Duration::from_secs(5), "no completion");
            other.poll_completions(&mut []).unwrap();
        }
        out[0]
    }

    /// A status block's write-with-immediate over tcp is one injected send
    /// (one work request, not a write and a notify send); the bytes land in
    /// the target window and the target's receive completes as `RecvImm`.
    /// One byte more than fits the carried message takes the two-operation
    /// path and lands the same way.
    #[test]
    fn small_writes_with_immediate_are_carried_in_one_send() {
        let (mut client, mut server) = pair();
        assert_eq!(client.carried_max, CARRIED_MESSAGE - CARRIED_HEADER);
        let window = server
            .register(256, Access::LOCAL_WRITE | Access::REMOTE_WRITE)
            .unwrap();
        let rx = server.register(256, Access::LOCAL_WRITE).unwrap();
        let src = client.register(256, Access::empty()).unwrap();
        for (i, byte) in client.region_mut(src).unwrap().iter_mut().enumerate() {
            *byte = i as u8 ^ 0x5a;
        }
        for (n, len) in [
            (0, 24),
            (1, client.carried_max),
            (2, client.carried_max + 1),
        ] {
            server
                .post_recv(
                    10 + n,
                    Slice {
                        region: rx,
                        offset: 0,
                        len: 256,
                    },
                )
                .unwrap();
            let at = 64 * n as usize;
            let dst = server.remote_buf(window, at, len).unwrap();
            client
                .post_write(
                    20 + n,
                    &[Slice {
                        region: src,
                        offset: at,
                        len,
                    }],
                    dst,
                    Some(7 + n as u32),
                )
                .unwrap();
            let operations = if len <= client.carried_max { 1 } else { 2 };
            assert_eq!(client.posted.outstanding().len(), operations, "{len} bytes");
            assert_eq!(
                next_completion(&mut server, &mut client),
                Completion {
                    wr_id: 10 + n,
                    kind: CompletionKind::RecvImm { imm: 7 + n as u32 },
                    status: Ok(())
                }
            );
            assert_eq!(
                server.region(window).unwrap()[at..at + len],
                client.region(src).unwrap()[at..at + len],
                "{len} bytes landed"
            );
            assert_eq!(
                next_completion(&mut client, &mut server),
                Completion {
                    wr_id: 20 + n,
                    kind: CompletionKind::Write,
                    status: Ok(())
                }
            );
        }
    }

    /// A peer's carried write is checked as the provider checks an RMA
    /// write: an unknown key, a region without `REMOTE_WRITE`, bytes past
    /// the region's end, a length that disagrees with the message, or a
    /// message shorter than the header fail the receive, and nothing is
    /// written anywhere.
    #[test]
    fn hostile_carried_writes_fail_the_receive_and_write_nothing() {
        let (mut client, mut server) = pair();
        let window = server
            .register(64, Access::LOCAL_WRITE | Access::REMOTE_WRITE)
            .unwrap();
        let rx = server.register(64, Access::LOCAL_WRITE).unwrap();
        let ok = server.remote_buf(window, 0, 64).unwrap();
        // `rx` as a peer would name it: its key (region id + 1) and address
        // (virtual under FI_MR_VIRT_ADDR, else offset 0 like the window's).
        let rx_key = rx.0 + 1;
        let rx_addr = if ok.addr == 0 {
            0
        } else {
            server.resolve(Slice::whole(rx, 64)).unwrap().ptr as u64
        };
        let header = |addr: u64, key: u32, len: u32| {
            let mut m = [0xeeu8; CARRIED_MESSAGE];
            m[..8].copy_from_slice(&addr.to_le_bytes());
            m[8..12].copy_from_slice(&key.to_le_bytes());
            m[12..16].copy_from_slice(&len.to_le_bytes());
            m
        };
        let cases: [(&str, [u8; CARRIED_MESSAGE], usize, WcError); 6] = [
            (
                "unknown key",
                header(ok.addr, ok.key + 100, 8),
                24,
                WcError::RemoteAccess,
            ),
            ("key zero", header(ok.addr, 0, 8), 24, WcError::RemoteAccess),
            (
                "no REMOTE_WRITE",
                header(rx_addr, rx_key, 8),
                24,
                WcError::RemoteAccess,
            ),
            (
                "past the end",
                header(ok.addr + 60, ok.key, 8),
                24,
                WcError::RemoteAccess,
            ),
            (
                "length disagrees",
                header(ok.addr, ok.key, 9),
                24,
                WcError::RemoteOperation,
            ),
            (
                "shorter than a header",
                header(ok.addr, ok.key, 0),
                8,
                WcError::RemoteOperation,
            ),
        ];
        for (n, (what, message, len, error)) in cases.into_iter().enumerate() {
            server
                .post_recv(
                    n as u64,
                    Slice {
                        region: rx,
                        offset: 0,
                        len: 64,
                    },
                )
                .unwrap();
            let mut untracked = sys::fi_context2::default();
            let context = ptr::from_mut(&mut untracked).cast();
            let ret = inject_msg(
                client.endpoint(),
                &message[..len],
                CARRIED_MARKER | 3,
                context,
            );
            assert!(ret >= 0, "{what}: fi_sendmsg: {ret}");
            let done = next_completion(&mut server, &mut client);
            assert_eq!((done.wr_id, done.status), (n as u64, Err(error)), "{what}");
            assert!(
                server.region(window).unwrap().iter().all(|&b| b == 0),
                "{what}: nothing written"
            );
        }
        client.poll_completions(&mut []).unwrap();
    }

    /// Receives smaller than a carried message keep the trait's contract:
    /// a zero-byte receive is consumed by a carried write-with-immediate
    /// (whose bytes land in the window), a small send lands in a small
    /// receive, and a send larger than the receive fails it with
    /// `LocalLength`, the bytes after the receive untouched.
    #[test]
    fn small_receives_take_carried_writes_and_keep_their_length() {
        let (mut client, mut server) = pair();
        let window = server
            .register(64, Access::LOCAL_WRITE | Access::REMOTE_WRITE)
            .unwrap();
        let rx = server.register(64, Access::LOCAL_WRITE).unwrap();
        let src = client.register(64, Access::empty()).unwrap();
        client.region_mut(src).unwrap().copy_from_slice(&[0x42; 64]);
        let small = |offset, len| Slice {
            region: rx,
            offset,
            len,
        };

        server.post_recv(1, small(0, 0)).unwrap();
        let bounce = server.bounce.expect("a bounce region for a small receive");
        assert_eq!(server.posted_references(bounce), 1);
        assert!(
            server.deregister(bounce).is_err(),
            "busy while the provider may write into it"
        );
        let dst = server.remote_buf(window, 8, 24).unwrap();
        client
            .post_write(2, &[Slice::whole(src, 24)], dst, Some(5))
            .unwrap();
        assert_eq!(
            next_completion(&mut server, &mut client).kind,
            CompletionKind::RecvImm { imm: 5 }
        );
        assert_eq!(server.region(window).unwrap()[8..32], [0x42; 24]);
        assert_eq!(next_completion(&mut client, &mut server).wr_id, 2);

        server.post_recv(3, small(16, 8)).unwrap();
        client.post_send(4, &[Slice::whole(src, 3)], None).unwrap();
        assert_eq!(
            next_completion(&mut server, &mut client),
            Completion {
                wr_id: 3,
                kind: CompletionKind::Recv { len: 3 },
                status: Ok(())
            }
        );
        assert_eq!(
            server.region(rx).unwrap()[14..24],
            [0, 0, 0x42, 0x42, 0x42, 0, 0, 0, 0, 0]
        );
        assert_eq!(next_completion(&mut client, &mut server).wr_id, 4);

        server.post_recv(5, small(32, 8)).unwrap();
        client.post_send(6, &[Slice::whole(src, 20)], None).unwrap();
        let failed = next_completion(&mut server, &mut client);
        assert_eq!(
            (failed.wr_id, failed.status),
            (5, Err(WcError::LocalLength))
        );
        assert!(server.region(rx).unwrap()[32..].iter().all(|&b| b == 0));
    }
}
