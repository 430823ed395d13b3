//! The client engine: the one non-blocking driver of the core client.
//!
//! [`Engine`] owns the core's [`rdio_core::client::Client`], the registered
//! buffers (receives, sends, the data slots and their status blocks) and the
//! completion table; it never blocks and never owns the transport, which
//! every call that touches the wire borrows. [`Engine::poll`] does all the
//! work there is without waiting, in this order:
//!
//! 1. post every send the core has ready (requests, write fragments,
//!    credit and control messages), back to back;
//! 2. drain the transport's completions in batches of [`BATCH`], feeding
//!    received messages and status blocks (interrupt mode) to the core and
//!    reposting the receives; a status block that finishes its request
//!    (every read) hands the completion straight into the request's slot
//!    ([`CoreClient::take_status_block`]), without the core's event queue;
//! 3. in polling mode, look at the status block of every request that
//!    awaits one (claim 18), the same way;
//! 4. run the core's timers when due;
//! 5. move the core's finished requests into the completion table;
//! 6. post what the core has ready again (answers to what came in).
//!
//! A request that can go at once is posted as it is submitted
//! ([`Engine::read`], [`Engine::write`]), and on a transport that defers
//! posts (cma, `Caps::deferred_posts`) it leaves at the next poll, or at
//! a [`Transport::flush`] once half the requests that were in flight at
//! the last poll have piled up: a client refilling a deep queue hands it
//! over in halves, so the server works on one while this side completes
//! and resubmits the other, instead of the two taking turns over the
//! whole queue.
//!
//! Front ends are loops over it: the blocking [`super::Client`] polls and,
//! when nothing moved, waits on the transport; the inline pair's transport
//! gives its in-process server a turn in that wait and in every drain; the
//! tokio client runs the blocking client on a thread of its own.
//!
//! # One completion table
//!
//! Every request the engine submits gets a slot number of its own: data
//! requests the slot of their registered buffer (and status block), control
//! requests (register, close, interrupt) one of [`CONTROL_SLOTS`] slots
//! without a buffer. The core's finished requests go straight into their
//! slot's entry, where the waiter takes them: a finished read from its
//! status block, everything else through the core's one event queue; one
//! table, no hash map, no search. The core numbers a request by the slot of
//! its own request table (`id = generation × R + slot`, `docs/PROTOCOL.md`,
//! "Request ids"; [`CoreClient::slot_of`]); the engine keeps, per core
//! slot, the slot of its own table the request was submitted from
//! (`by_core`), so [`Engine::slot_of`] is one remainder, one load and one
//! compare of the request id held in the entry.
//!
//! # Broken invariants fail the connection
//!
//! What only a bug in rdio can cause — the core completing a request this
//! engine never submitted or completing one twice, a write fragment naming
//! no data slot — does not return "nothing yet" and leave a waiter stalled:
//! the engine ends the connection (the core completes every outstanding
//! request, the transport is disconnected) and every call from then on
//! fails with [`ClientError::Internal`].

use super::ClientError;
use crate::buffers::{Clock, INLINE_MESSAGE, Pool, Reading, Receives, Stamp, Work, release};
use crate::stats::ClientStats;
use rdio_core::client::{
    BlockOutcome, Client as CoreClient, ClientEvent, CompletionMode, DataRef, RemoteFile,
    RequestId, Transmit as CoreTransmit,
};
use rdio_core::error::{ApiError, Violation};
use rdio_core::wire::status::STATUS_BLOCK_LEN;
use rdio_core::wire::{BufferDescriptor, Capabilities, Status, StatusBlock};
use rdio_transport::{
    Completion, CompletionKind, RegionId, RemoteBuf, Transport, TransportError, WcError,
};
use std::time::Duration;

/// The size `R` of the core client's request table (`CoreClient` is
/// `rdio_core::client::Client<R>`): request ids name one of its `R` slots.
trait CoreSlots {
    const SLOTS: usize;
}

impl<const R: usize> CoreSlots for rdio_core::client::Client<R> {
    const SLOTS: usize = R;
}

/// Slots of the core's request table.
const CORE_SLOTS: usize = <CoreClient as CoreSlots>::SLOTS;

/// The core's slot for `request`: the remainder of its id by `R`
/// (`docs/PROTOCOL.md`, "Request ids"). For an outstanding request it is
/// what [`CoreClient::slot_of`] returns; unlike that, it still names the
/// slot once the core has reported the request, which is when its
/// completion event reaches [`Engine::finish`].
fn core_slot(request: RequestId) -> usize {
    request.0 as usize % CORE_SLOTS
}

/// The client's log target, the same as before the engine moved out of
/// `client/mod.rs`: filters and log readers name `rdio::client`.
const LOG_TARGET: &str = "rdio::client";

/// Completions drained per call to [`Transport::poll_completions`]; a full
/// batch is followed by another at once.
pub(crate) const BATCH: usize = 32;

/// Slots for control requests (register, close, interrupt): the blocking
/// client waits for each before the next, so a few are plenty.
pub(crate) const CONTROL_SLOTS: usize = 4;

/// How a request ended, as its waiter finds it in its slot.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Outcome {
    Registered(Result<RemoteFile, Status>),
    Completed { status: Status, bytes: u64 },
    Interrupted,
}

/// One slot of the completion table.
#[derive(Debug, Default)]
struct Entry {
    /// The request submitted in this slot, until its waiter releases it.
    request: Option<RequestId>,
    /// Its outcome, once the core reported it, until the waiter takes it.
    outcome: Option<Outcome>,
    /// The core reported it.
    done: bool,
    /// Sends in flight that gather bytes from this slot's buffer.
    sends: u32,
    /// Its waiter gave up (the connection failed under it): the slot is
    /// freed when the outcome arrives and no send reads its buffer.
    abandoned: bool,
    /// A data request in flight, counted in `in_flight` until it
    /// completes.
    started: bool,
    /// Data requests: kind ([`crate::stats::REQUEST_KINDS`] index).
    kind: usize,
    /// With request metrics on: when it was submitted.
    at: Option<Stamp>,
    /// With request metrics on and a subscriber taking trace spans: its
    /// `request` span. (Kept out of the entry otherwise: a disabled span
    /// still costs a drop check and a 40-byte move per request.)
    span: Option<tracing::Span>,
    /// Data requests: size in bytes.
    size: u64,
}

/// What one [`Engine::poll`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Progress {
    /// Sends posted.
    pub(crate) posted: usize,
    /// Transport completions drained (and status blocks found, polling).
    pub(crate) completions: usize,
    /// Core events handled (finished requests, authentication, the end).
    pub(crate) events: usize,
    /// The core's timers ran.
    pub(crate) timers: bool,
}

impl Progress {
    /// Whether anything moved: if not, only the transport (or time) can
    /// bring news, and a blocking front end may wait for it.
    pub(crate) fn moved(&self) -> bool {
        self.posted > 0 || self.completions > 0 || self.events > 0 || self.timers
    }
}

/// The registered memory of a connection.
pub(crate) struct Buffers {
    pub(crate) receives: Receives,
    pub(crate) sends: Pool,
    /// Data buffers, one per data slot: read destinations the server
    /// RDMA-writes, write sources the sends gather from. Each region is
    /// `io_size` bytes of data and room for a status block after them
    /// (claim 20); a request's block goes right after its bytes
    /// ([`Engine::status_descriptor`]), so that a server can write a
    /// read's data and its block as one write.
    pub(crate) slots: Pool,
    /// Bytes of data per slot (a request's status block goes right after
    /// its own bytes, at most here).
    pub(crate) io_size: usize,
    /// The transport's send-queue depth (`Caps::max_send`): sends posted
    /// and not yet completed never exceed it.
    pub(crate) send_queue: usize,
    /// The transport takes [`INLINE_MESSAGE`] bytes inline
    /// (`Caps::max_inline`): a read request is posted from the stack.
    pub(crate) inline: bool,
    /// The transport holds posts until a flush (`Caps::deferred_posts`):
    /// a deep queue is handed over in halves ([`Engine::posted`]).
    pub(crate) deferred_posts: bool,
}

impl Buffers {
    /// Per data slot, what the server is told of its `io_size` bytes of
    /// data (its status block goes at an offset of that window, up to
    /// `io_size`, in the room the region has after it), computed once: a
    /// registration's remote addresses are linear (a window at `offset`
    /// starts at the base address plus `offset`, whether the transport's
    /// addresses are virtual addresses or offsets), so a request's
    /// descriptors need no transport call.
    pub(crate) fn remote_windows(
        &self,
        transport: &impl Transport,
    ) -> Result<Box<[RemoteBuf]>, TransportError> {
        (0..self.slots.count())
            .map(|slot| {
                let region = self.slots.region(slot)?;
                transport.remote_buf(region, 0, self.io_size)
            })
            .collect()
    }
}

/// The non-blocking client engine (see the module documentation).
pub(crate) struct Engine {
    /// Boxed: the core's tables are tens of KiB, kept off the stack of
    /// whoever builds and moves the engine.
    core: Box<CoreClient>,
    clock: Clock,
    mode: CompletionMode,
    receives: Receives,
    sends: Pool,
    slots: Pool,
    /// Bytes of data per slot ([`Buffers::io_size`]).
    io_size: usize,
    /// The completion table: data slots `0..queue_depth`, then the control
    /// slots.
    table: Box<[Entry]>,
    /// Per data slot, the remote window of its data
    /// ([`Buffers::remote_windows`]).
    remote: Box<[RemoteBuf]>,
    /// Free control slots.
    control_free: Vec<usize>,
    /// Per slot of the core's request table, the slot of this table the
    /// request in it was submitted from ([`Engine::slot_of`]). The core
    /// never gives two outstanding requests one slot, and a request is
    /// reported (and its entry here read) before its core slot is reused.
    by_core: [u16; CORE_SLOTS],
    /// Where [`Engine::poll`] drains completions, kept so a poll does not
    /// initialise a fresh array.
    completions: [Completion; BATCH],
    authenticated: bool,
    terminated: Option<Violation>,
    lost: Option<WcError>,
    /// A broken internal invariant ended the connection.
    broken: Option<&'static str>,
    transport_down: bool,
    /// Sends posted whose completions have not been drained, and the most
    /// the transport's send queue holds: a send beyond it would be refused
    /// (`QueueFull`, which ends the connection), so requests wait in the
    /// core until a completion frees a place.
    sends_posted: usize,
    send_queue: usize,
    /// Requests posted as they were submitted since the transport was last
    /// flushed (every poll flushes), and how many make [`Engine::posted`]
    /// flush at once: half the requests that were in flight at the last
    /// poll that had any (at least 2), so that at depth the server works on one half
    /// while this side completes and resubmits the other, instead of both
    /// sides taking turns over the whole queue (docs/PERFORMANCE.md,
    /// "Stop 34").
    unflushed: usize,
    flush_every: usize,
    /// [`Buffers::deferred_posts`]: without it, nothing is flushed here.
    deferred_posts: bool,
    /// Read requests are posted inline ([`Buffers::inline`]).
    inline: bool,
    /// The session granted read batches ([`Capabilities::READ_BATCH`]): a
    /// read submitted while others are in flight and completions come in
    /// bursts (`bursts`) waits for the next poll, which sends the reads
    /// submitted meanwhile as one `ReadBatch` (docs/PROTOCOL.md, "Read
    /// batches"); the server then answers them with one immediate.
    batch_reads: bool,
    /// Reads queued for the next batch since the last transmit: at half
    /// the queue depth they go at once, so the server works on one half of
    /// a deep queue while this side completes and resubmits the other (as
    /// with posts: "Stop 34").
    batched: usize,
    /// Half the queue depth (at least 2): the `batched` count at which
    /// they go, worked out once rather than per read.
    batch_at: usize,
    /// The last poll took two or more completions: completions come in
    /// bursts, so reads submitted until the next poll come in bursts too
    /// and go as batches. While they come one at a time, a read waiting
    /// for the next poll would go alone anyway, later and through the
    /// queue: it goes at once instead.
    bursts: bool,
    /// The clock's reading at the last [`Engine::poll`] (or
    /// [`Engine::peek`]): its time is what a read posted as it is
    /// submitted ([`Engine::read`]) tells the core, instead of a clock read
    /// per submission (never later than the real time, so the deadlines it
    /// starts can only fall due early), and request latencies end at it.
    reading: Reading,
    stats: ClientStats,
    request_metrics: bool,
    /// Whether a subscriber takes this target's `TRACE` events (the
    /// `request` spans), asked once per [`Engine::poll`] rather than by two
    /// callsite checks per request.
    trace_requests: bool,
    /// The `connection` span, parent of the request spans.
    span: tracing::Span,
}

impl Engine {
    /// An engine over `core`, with the buffers registered for it.
    pub(crate) fn new(
        core: Box<CoreClient>,
        clock: Clock,
        mode: CompletionMode,
        buffers: Buffers,
        remote: Box<[RemoteBuf]>,
        request_metrics: bool,
        span: tracing::Span,
    ) -> Self {
        let depth = buffers.slots.count();
        let entries = depth + CONTROL_SLOTS;
        let reading = clock.reading();
        let send_queue = buffers.send_queue.max(1);
        let batch_reads = core
            .negotiated()
            .capabilities
            .contains(Capabilities::READ_BATCH);
        Self {
            core,
            clock,
            mode,
            receives: buffers.receives,
            sends: buffers.sends,
            slots: buffers.slots,
            io_size: buffers.io_size,
            table: (0..entries).map(|_| Entry::default()).collect(),
            remote,
            control_free: (depth..entries).rev().collect(),
            by_core: [0; CORE_SLOTS],
            completions: [Completion {
                wr_id: 0,
                kind: CompletionKind::Send,
                status: Ok(()),
            }; BATCH],
            authenticated: false,
            terminated: None,
            lost: None,
            broken: None,
            transport_down: false,
            sends_posted: 0,
            send_queue,
            unflushed: 0,
            flush_every: 2,
            deferred_posts: buffers.deferred_posts,
            inline: buffers.inline,
            batch_reads,
            batched: 0,
            batch_at: (depth / 2).max(2),
            bursts: false,
            reading,
            stats: ClientStats::new(),
            request_metrics,
            trace_requests: request_metrics
                && tracing::enabled!(target: LOG_TARGET, tracing::Level::TRACE),
            span,
        }
    }

    // ----- state -----

    pub(crate) fn core(&self) -> &CoreClient {
        &self.core
    }

    pub(crate) fn mode(&self) -> CompletionMode {
        self.mode
    }

    pub(crate) fn stats(&self) -> &ClientStats {
        &self.stats
    }

    pub(crate) fn io_size(&self) -> usize {
        self.io_size
    }

    pub(crate) fn queue_depth(&self) -> usize {
        self.slots.count()
    }

    pub(crate) fn authenticated(&self) -> bool {
        self.authenticated
    }

    pub(crate) fn terminated(&self) -> Option<Violation> {
        self.terminated
    }

    pub(crate) fn transport_down(&self) -> bool {
        self.transport_down
    }

    pub(crate) fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// Every send buffer is back and every send completed (inline ones
    /// hold no buffer): nothing this client posted is still leaving.
    pub(crate) fn sends_idle(&self) -> bool {
        self.sends_posted == 0 && self.sends.all_free()
    }

    /// Whether the connection's `Terminate` has been posted and every
    /// send has completed: until then a closing client keeps stepping (a
    /// step that frees the last send buffer may leave the `Terminate`,
    /// which waited for one, to the next).
    pub(crate) fn terminate_sent(&self) -> bool {
        !self.core.terminate_pending() && self.sends_idle()
    }

    /// How long a blocked front end may wait before the core's next timer
    /// is due, at most `cap`.
    pub(crate) fn wait_time(&self, cap: Duration) -> Duration {
        self.clock.until(self.core.poll_timeout(), cap)
    }

    /// Why the connection is over, if it is: a broken invariant, else the
    /// transport's failure, else the core's reason.
    pub(crate) fn end_error(&self, reason: Violation) -> ClientError {
        if let Some(what) = self.broken {
            return ClientError::Internal(what);
        }
        self.lost
            .map_or(ClientError::Terminated(reason), ClientError::Lost)
    }

    /// The error for a call on an ended connection, if it has ended.
    pub(crate) fn check_open(&self) -> Result<(), ClientError> {
        if let Some(what) = self.broken {
            return Err(ClientError::Internal(what));
        }
        match self.terminated {
            Some(reason) => Err(self.end_error(reason)),
            None => Ok(()),
        }
    }

    /// The registered region of data slot `slot`'s buffer.
    pub(crate) fn buffer_region(&self, slot: usize) -> Result<RegionId, TransportError> {
        self.slots.region(slot)
    }

    /// Sends still gathering from data slot `slot`'s buffer.
    pub(crate) fn sends_from(&self, slot: usize) -> u32 {
        self.table.get(slot).map_or(0, |entry| entry.sends)
    }

    /// Forget the sends gathering from `slot` (the transport is down: they
    /// will never complete).
    pub(crate) fn forget_sends(&mut self, slot: usize) {
        if let Some(entry) = self.table.get_mut(slot) {
            entry.sends = 0;
        }
    }

    // ----- the completion table -----

    /// The slot of `request`, if this engine submitted it and its waiter
    /// has not released it: the entry its core slot points to, if that
    /// entry holds this very request. The only place a request id becomes
    /// a slot; no search.
    fn slot_of(&self, request: RequestId) -> Option<usize> {
        let slot = usize::from(*self.by_core.get(core_slot(request))?);
        self.table
            .get(slot)
            .is_some_and(|entry| entry.request == Some(request))
            .then_some(slot)
    }

    fn bind(&mut self, slot: usize, request: RequestId) {
        debug_assert_eq!(
            self.core.slot_of(request),
            Some(core_slot(request)),
            "the core numbers requests by slot"
        );
        bind_in(&mut self.by_core, &mut self.table, slot, request);
    }

    /// The bytes of `slot`'s request, if it completed with success and no
    /// send gathers from its buffer any more: its outcome taken, as
    /// [`Engine::take_outcome`] takes it. The usual wait, settled here
    /// without a call.
    #[inline(always)]
    pub(crate) fn take_success(&mut self, slot: usize) -> Option<u64> {
        let entry = self.table.get_mut(slot)?;
        match entry.outcome {
            Some(Outcome::Completed {
                status: Status::Success,
                bytes,
            }) if entry.sends == 0 => {
                entry.outcome = None;
                Some(bytes)
            }
            _ => None,
        }
    }

    /// Take the outcome of the request in `slot`, once it has one; the slot
    /// stays taken until [`Engine::release`].
    pub(crate) fn take_outcome(&mut self, slot: usize) -> Option<Outcome> {
        self.table
            .get_mut(slot)
            .and_then(|entry| entry.outcome.take())
    }

    /// The waiter is done with `slot`: free it, or, if its request has not
    /// finished (the waiter gave up), once it has.
    pub(crate) fn release(&mut self, slot: usize) {
        let Some(entry) = self.table.get_mut(slot) else {
            return;
        };
        if entry.request.is_some() && !entry.done {
            entry.abandoned = true;
            return;
        }
        // `free`, with the entry in hand rather than found again.
        clear(entry);
        self.give_back(slot);
    }

    fn free(&mut self, slot: usize) {
        if let Some(entry) = self.table.get_mut(slot) {
            clear(entry);
        }
        self.give_back(slot);
    }

    /// Hand `slot`, its entry cleared, back to those free to take.
    fn give_back(&mut self, slot: usize) {
        if slot < self.slots.count() {
            self.slots.release(slot);
        } else if !self.control_free.contains(&slot) {
            self.control_free.push(slot);
        }
    }

    /// A free data slot for a request of `len` bytes.
    pub(crate) fn begin(&mut self, len: usize) -> Result<usize, ClientError> {
        self.check_open()?;
        if len == 0 {
            return Err(ClientError::InvalidArgument("zero-length request"));
        }
        if len > self.io_size {
            return Err(ClientError::TooLarge {
                len: len as u64,
                max: self.io_size as u64,
            });
        }
        let slot = self
            .slots
            .take()
            .ok_or(ClientError::Api(ApiError::TooManyRequests))?;
        if let Some(entry) = self.table.get_mut(slot) {
            entry.size = len as u64;
        }
        Ok(slot)
    }

    /// Hand back a data slot taken by [`Engine::begin`] whose request was
    /// never submitted.
    pub(crate) fn unbegin(&mut self, slot: usize) {
        self.free(slot);
    }

    /// Submit a control request with `submit` and give it a control slot.
    pub(crate) fn control(
        &mut self,
        submit: impl FnOnce(&mut CoreClient) -> Result<RequestId, ApiError>,
    ) -> Result<usize, ClientError> {
        self.check_open()?;
        let slot = self
            .control_free
            .pop()
            .ok_or(ClientError::Api(ApiError::TooManyRequests))?;
        match submit(&mut self.core) {
            Ok(request) => {
                self.bind(slot, request);
                Ok(slot)
            }
            Err(e) => {
                self.control_free.push(slot);
                Err(e.into())
            }
        }
    }

    /// Record data request `request`, submitted from `slot`: counters,
    /// metrics, the slot's binding. (A request the core refused gives its
    /// slot back with [`Engine::unbegin`] instead.)
    pub(crate) fn submitted(&mut self, slot: usize, request: RequestId, kind: usize) {
        if let Some(count) = self.stats.requests.get_mut(kind) {
            *count += 1;
        }
        self.stats.in_flight += 1;
        self.stats.max_in_flight = self.stats.max_in_flight.max(self.stats.in_flight);
        debug_assert_eq!(
            self.core.slot_of(request),
            Some(core_slot(request)),
            "the core numbers requests by slot"
        );
        let Some(entry) = bind_in(&mut self.by_core, &mut self.table, slot, request) else {
            return;
        };
        entry.started = true;
        entry.kind = kind;
        if self.request_metrics {
            if self.trace_requests {
                entry.span = request_span(&self.span, request, kind, entry.size);
            }
            entry.at = Some(self.clock.stamp());
        }
    }

    /// Count a control request (by [`crate::stats::REQUEST_KINDS`] index).
    pub(crate) fn count_request(&mut self, kind: usize) {
        if let Some(count) = self.stats.requests.get_mut(kind) {
            *count += 1;
        }
    }

    // ----- submission helpers -----

    pub(crate) fn core_mut(&mut self) -> &mut CoreClient {
        &mut self.core
    }

    /// The remote descriptor of `len` bytes at `offset` of `slot`'s buffer
    /// (its `io_size` bytes of data).
    pub(crate) fn descriptor(
        &self,
        slot: usize,
        offset: usize,
        len: usize,
    ) -> Result<BufferDescriptor, ClientError> {
        let base = self.remote.get(slot).ok_or(TransportError::OutOfBounds)?;
        let end = offset.checked_add(len).ok_or(TransportError::OutOfBounds)?;
        let len = u32::try_from(len).map_err(|_| TransportError::OutOfBounds)?;
        if end > base.len as usize {
            return Err(TransportError::OutOfBounds.into());
        }
        Ok(BufferDescriptor::new(
            base.addr.wrapping_add(offset as u64),
            base.key,
            len,
        ))
    }

    /// `slot`'s status block. Polling, it is zeroed first, so a stale block
    /// is never mistaken for this request's (the client watches the valid
    /// word). With interrupts it is read only when its write with
    /// immediate has arrived, and RC ordering puts the block in place
    /// before that completion: nothing to clear (a server that raises the
    /// immediate without writing the block leaves the previous request's
    /// there, whose id no longer names a request in flight — a protocol
    /// violation the core reports).
    ///
    /// The block goes right after the request's bytes in the slot
    /// ([`Engine::block_offset`]), so that a read shorter than `io_size`
    /// also has its block where a server can write data and block as one
    /// write (docs/PROTOCOL.md, "Data and status block in one write").
    pub(crate) fn status_descriptor(
        &self,
        transport: &mut impl Transport,
        slot: usize,
    ) -> Result<BufferDescriptor, ClientError> {
        self.status_descriptor_at(transport, slot, self.block_offset(slot))
    }

    /// [`Engine::status_descriptor`] for a request of `len` bytes, the
    /// length [`Engine::begin`] was given for `slot` (so the block is where
    /// [`Engine::block_offset`] finds it later): without looking the
    /// slot's entry up again for its size.
    pub(crate) fn status_descriptor_for(
        &self,
        transport: &mut impl Transport,
        slot: usize,
        len: usize,
    ) -> Result<BufferDescriptor, ClientError> {
        debug_assert_eq!(len.min(self.io_size), self.block_offset(slot));
        self.status_descriptor_at(transport, slot, len.min(self.io_size))
    }

    /// The status block descriptor of `slot`, its block at `start`.
    fn status_descriptor_at(
        &self,
        transport: &mut impl Transport,
        slot: usize,
        start: usize,
    ) -> Result<BufferDescriptor, ClientError> {
        if self.mode == CompletionMode::Polling {
            transport
                .region_mut(self.slots.region(slot)?)?
                .get_mut(start..start + STATUS_BLOCK_LEN)
                .ok_or(TransportError::OutOfBounds)?
                .fill(0);
        }
        let base = self.remote.get(slot).ok_or(TransportError::OutOfBounds)?;
        Ok(BufferDescriptor::new(
            base.addr.wrapping_add(start as u64),
            base.key,
            STATUS_BLOCK_LEN as u32,
        ))
    }

    /// Where in data slot `slot` its request's status block is: right
    /// after the request's bytes (at most `io_size`, where the slot's
    /// block area starts).
    fn block_offset(&self, slot: usize) -> usize {
        self.table.get(slot).map_or(self.io_size, |entry| {
            usize::try_from(entry.size).map_or(self.io_size, |size| size.min(self.io_size))
        })
    }

    // ----- driving the core -----

    /// Do all the work there is without blocking (see the module
    /// documentation for the order).
    pub(crate) fn poll(&mut self, transport: &mut impl Transport) -> Result<Progress, ClientError> {
        self.reading = self.clock.reading();
        let now = self.reading.now;
        self.trace_requests =
            self.request_metrics && tracing::enabled!(target: LOG_TARGET, tracing::Level::TRACE);
        let mut progress = Progress {
            posted: self.transmit(transport, now)?,
            ..Progress::default()
        };
        // `drain` polls the transport, which flushes it. An idle poll keeps
        // the last depth's half: a burst after a pause goes out in halves
        // of the queue the caller used last, not in pairs.
        self.unflushed = 0;
        if self.stats.in_flight > 0 {
            self.flush_every =
                usize::try_from(self.stats.in_flight / 2).map_or(usize::MAX, |half| half.max(2));
        }
        let in_flight = self.stats.in_flight;
        progress.completions = self.drain(transport, now)?;
        self.bursts = in_flight.saturating_sub(self.stats.in_flight) > 1;
        if self.mode == CompletionMode::Polling {
            progress.completions += self.poll_status_blocks(transport, now)?;
        }
        if self
            .core
            .poll_timeout()
            .is_some_and(|deadline| deadline <= now)
        {
            self.core.handle_timeout(now);
            progress.timers = true;
        }
        progress.events = self.collect_events(transport)?;
        progress.posted += self.transmit(transport, now)?;
        if progress.moved() {
            self.refresh_stats();
        }
        Ok(progress)
    }

    /// Copy the core's counters and credit levels into the stats.
    fn refresh_stats(&mut self) {
        self.stats.connection = self.core.stats();
        self.stats.credits = self.core.ledger().level();
        self.stats.credits_in_use = self.core.ledger().in_use();
    }

    /// Drain completions and events without posting: what the front end
    /// does to learn of a server's idle timeout while the side channel
    /// fails. Errors are the connection's news for the next call.
    pub(crate) fn peek(&mut self, transport: &mut impl Transport) {
        if self.terminated.is_some() || self.transport_down {
            return;
        }
        self.reading = self.clock.reading();
        let now = self.reading.now;
        let _ = self.drain(transport, now);
        let _ = self.collect_events(transport);
        self.refresh_stats();
    }

    /// The transport failed (a work request in error, a post refused, a
    /// wait that failed).
    pub(crate) fn transport_failed(&mut self, error: Option<WcError>) {
        // A connection the core already ended (the peer's `Terminate`, a
        // violation) is explained by that reason; the transport failing
        // afterwards is its consequence, not news.
        if self.lost.is_none() && !self.core.is_closed() {
            self.lost = error.or(Some(WcError::Disconnected));
        }
        if error.is_some() {
            self.stats.transport_errors += 1;
        }
        self.transport_down = true;
        self.core.transport_failed();
    }

    /// An internal invariant broke: end the connection (every outstanding
    /// request completes, the transport is disconnected) and say what
    /// broke, here and from every later call.
    fn broke(&mut self, transport: &mut impl Transport, what: &'static str) -> ClientError {
        tracing::error!(target: LOG_TARGET, what, "internal error: the connection is ended");
        if self.broken.is_none() {
            self.broken = Some(what);
        }
        self.transport_down = true;
        transport.disconnect();
        self.core.transport_failed();
        ClientError::Internal(what)
    }

    /// Submit a read of `dest` to the core and, when it can go at once,
    /// post its request in the same pass, encoded by the core into a free
    /// send buffer ([`CoreClient::read_into`]); otherwise (no send buffer
    /// free, requests queued ahead of it, no credit) the core queues it and
    /// the next [`Engine::poll`] posts it. A post that fails takes the
    /// connection down, as in [`Engine::poll`]: the read is submitted and
    /// completes with the connection's end.
    pub(crate) fn read(
        &mut self,
        transport: &mut impl Transport,
        handle: u32,
        offset: u64,
        dest: BufferDescriptor,
        status: BufferDescriptor,
    ) -> Result<RequestId, ClientError> {
        let mode = self.mode;
        if self.batch_reads && self.stats.in_flight > 0 && (self.bursts || self.batched > 0) {
            // Completions are coming, and with them a poll: the reads
            // submitted until then go together, half the queue at most.
            let request = self.core.read(handle, offset, dest, status, mode)?;
            self.batched += 1;
            if self.batched >= self.batch_at {
                let now = self.reading.now;
                self.transmit(transport, now)?;
                if self.deferred_posts {
                    // A flush that fails leaves the work queued for the
                    // next poll, which reports the transport's state.
                    let _ = transport.flush();
                }
            }
            return Ok(request);
        }
        if self.inline && !self.transport_down && self.sends_posted < self.send_queue {
            return self.read_inline(transport, handle, offset, dest, status);
        }
        let encoded = self.submit_into(transport, |core, now, bytes| {
            core.read_into(now, handle, offset, dest, status, mode, bytes)
        })?;
        let (buffer, request, transmit) = match encoded {
            Submitted::Encoded(buffer, request, transmit) => (buffer, request, transmit),
            Submitted::Queued(request) => return Ok(request),
            Submitted::NotTried => {
                return Ok(self.core.read(handle, offset, dest, status, mode)?);
            }
        };
        let posted = self
            .sends
            .slice(buffer, 0, transmit.len)
            .and_then(|prefix| {
                transport.post_send(Work::Send { buffer, data: None }.id(), &[prefix], None)
            });
        self.posted(transport, Some(buffer), posted);
        Ok(request)
    }

    /// Submit a write of the first `len` bytes of data slot `slot` to the
    /// core and, when it can go at once, post its first send in the same
    /// pass: the prefix encoded by the core into a free send buffer
    /// ([`CoreClient::write_into`]), the data gathered from the slot.
    /// Otherwise (no send buffer free, requests queued ahead of it, no
    /// credit) the core queues it and the next [`Engine::poll`] posts it;
    /// a write longer than one send streams its other fragments from
    /// there. A post that fails takes the connection down, as in `read`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn write(
        &mut self,
        transport: &mut impl Transport,
        slot: usize,
        handle: u32,
        offset: u64,
        len: u32,
        status: BufferDescriptor,
    ) -> Result<RequestId, ClientError> {
        let mode = self.mode;
        let encoded = self.submit_into(transport, |core, now, bytes| {
            core.write_into(now, handle, offset, len, status, mode, bytes)
        })?;
        let (buffer, request, transmit) = match encoded {
            Submitted::Encoded(buffer, request, transmit) => (buffer, request, transmit),
            Submitted::Queued(request) => return Ok(request),
            Submitted::NotTried => {
                return Ok(self.core.write(handle, offset, len, status, mode)?);
            }
        };
        // The first fragment's data, from the slot the caller filled (the
        // core names this very request: it was just submitted).
        let data = transmit.data.map_or(0, |data| data.len as usize);
        let posted = self
            .sends
            .slice(buffer, 0, transmit.len)
            .and_then(|prefix| {
                let data = self.slots.slice(slot, 0, data)?;
                transport.post_send(
                    Work::Send {
                        buffer,
                        data: Some(slot),
                    }
                    .id(),
                    &[prefix, data],
                    None,
                )
            });
        if posted.is_ok() {
            if let Some(entry) = self.table.get_mut(slot) {
                entry.sends += 1;
            }
        }
        self.posted(transport, Some(buffer), posted);
        Ok(request)
    }

    /// Submit a request to the core through `submit` (`read_into`,
    /// `write_into`), which encodes it into a free send buffer when it can
    /// go at once (see [`Submitted`]). A refused submission gives the
    /// buffer back and is the error.
    fn submit_into(
        &mut self,
        transport: &mut impl Transport,
        submit: impl FnOnce(
            &mut CoreClient,
            rdio_core::Instant,
            &mut [u8],
        ) -> Result<(RequestId, Option<CoreTransmit>), ApiError>,
    ) -> Result<Submitted, ClientError> {
        if self.transport_down || self.sends_posted >= self.send_queue {
            return Ok(Submitted::NotTried);
        }
        let Some(buffer) = self.sends.take() else {
            return Ok(Submitted::NotTried);
        };
        let bytes = match self
            .sends
            .region(buffer)
            .and_then(|region| transport.region_mut(region))
        {
            Ok(bytes) => bytes,
            Err(_) => {
                self.sends.release(buffer);
                return Ok(Submitted::NotTried);
            }
        };
        match submit(&mut self.core, self.reading.now, bytes) {
            Ok((request, Some(transmit))) => Ok(Submitted::Encoded(buffer, request, transmit)),
            Ok((request, None)) => {
                self.sends.release(buffer);
                Ok(Submitted::Queued(request))
            }
            Err(e) => {
                self.sends.release(buffer);
                Err(e.into())
            }
        }
    }

    /// A request's send from send buffer `buffer` (`None`: posted inline)
    /// was posted, or failed: a failed post gives the buffer back and
    /// takes the connection down (the request, sent as far as the core
    /// knows, completes with the connection's end, as the requests a
    /// failed poll posts do).
    fn posted(
        &mut self,
        transport: &mut impl Transport,
        buffer: Option<usize>,
        posted: Result<(), TransportError>,
    ) {
        if posted.is_err() {
            if let Some(buffer) = buffer {
                self.sends.release(buffer);
            }
            self.transport_failed(None);
            return;
        }
        self.sends_posted += 1;
        if !self.deferred_posts {
            return;
        }
        self.unflushed += 1;
        if self.unflushed >= self.flush_every {
            self.unflushed = 0;
            // A flush that fails leaves the work queued for the next poll,
            // which reports the transport's state.
            let _ = transport.flush();
        }
    }

    /// [`Engine::read`] on a transport that takes the request inline: it
    /// is encoded on the stack and copied into the work request, so no
    /// send buffer is taken, filled through `region_mut` and given back at
    /// its completion. The caller checked the send queue has room.
    fn read_inline(
        &mut self,
        transport: &mut impl Transport,
        handle: u32,
        offset: u64,
        dest: BufferDescriptor,
        status: BufferDescriptor,
    ) -> Result<RequestId, ClientError> {
        let mut bytes = [0u8; INLINE_MESSAGE];
        let (request, transmit) = self.core.read_into(
            self.reading.now,
            handle,
            offset,
            dest,
            status,
            self.mode,
            &mut bytes,
        )?;
        let Some(transmit) = transmit else {
            return Ok(request);
        };
        let posted = bytes
            .get(..transmit.len)
            .ok_or(TransportError::OutOfBounds)
            .and_then(|message| transport.post_send_inline(Work::Inline.id(), message));
        self.posted(transport, None, posted);
        Ok(request)
    }

    /// Post every send the core has ready.
    fn transmit(
        &mut self,
        transport: &mut impl Transport,
        now: rdio_core::Instant,
    ) -> Result<usize, ClientError> {
        self.batched = 0;
        let mut posted = 0;
        while !self.transport_down && self.sends_posted < self.send_queue {
            let Some(buffer) = self.sends.take() else {
                break;
            };
            let bytes = transport.region_mut(self.sends.region(buffer)?)?;
            let transmit = match self.core.poll_transmit(now, bytes) {
                Ok(Some(transmit)) => transmit,
                Ok(None) => {
                    self.sends.release(buffer);
                    break;
                }
                Err(_) => {
                    // Buffers are max_send_size bytes, always enough.
                    self.sends.release(buffer);
                    return Err(self.broke(transport, "a send buffer is smaller than a message"));
                }
            };
            let prefix = self.sends.slice(buffer, 0, transmit.len)?;
            let sent = match transmit.data {
                None => {
                    transport.post_send(Work::Send { buffer, data: None }.id(), &[prefix], None)
                }
                Some(DataRef {
                    request,
                    offset,
                    len,
                }) => {
                    let Some(slot) = self
                        .slot_of(request)
                        .filter(|&slot| slot < self.slots.count())
                    else {
                        self.sends.release(buffer);
                        return Err(self.broke(transport, "a write fragment names no data buffer"));
                    };
                    let data = self.slots.slice(slot, offset as usize, len as usize)?;
                    if let Some(entry) = self.table.get_mut(slot) {
                        entry.sends += 1;
                    }
                    transport.post_send(
                        Work::Send {
                            buffer,
                            data: Some(slot),
                        }
                        .id(),
                        &[prefix, data],
                        None,
                    )
                }
            };
            if let Err(e) = sent {
                self.transport_failed(None);
                return Err(e.into());
            }
            self.sends_posted += 1;
            posted += 1;
        }
        Ok(posted)
    }

    /// Drain the transport's completions, a batch at a time.
    fn drain(
        &mut self,
        transport: &mut impl Transport,
        now: rdio_core::Instant,
    ) -> Result<usize, ClientError> {
        let mut total = 0;
        while !self.transport_down {
            let drained = match transport.poll_completions(&mut self.completions) {
                Ok(n) => n.min(BATCH),
                // A deadlock the transport can see (an inline pair, where it
                // steps the server itself): say so rather than "lost".
                Err(TransportError::Stalled) => {
                    self.transport_failed(None);
                    return Err(ClientError::Transport(TransportError::Stalled));
                }
                Err(_) => {
                    self.transport_failed(None);
                    return Ok(total + 1);
                }
            };
            for index in 0..drained {
                let Some(completion) = self.completions.get(index).copied() else {
                    break;
                };
                self.complete(transport, now, &completion)?;
            }
            total += drained;
            if drained < BATCH {
                break;
            }
        }
        Ok(total)
    }

    fn complete(
        &mut self,
        transport: &mut impl Transport,
        now: rdio_core::Instant,
        completion: &Completion,
    ) -> Result<(), ClientError> {
        let work = Work::from_id(completion.wr_id);
        match work {
            Some(Work::Send { buffer, data }) => {
                self.sends_posted = self.sends_posted.saturating_sub(1);
                self.sends.release(buffer);
                if let Some(slot) = data {
                    self.sent_from(slot);
                }
            }
            Some(Work::Inline) => self.sends_posted = self.sends_posted.saturating_sub(1),
            _ => {}
        }
        if let Err(error) = completion.status {
            self.transport_failed(Some(error));
            return Ok(());
        }
        let Some(Work::Recv(index)) = work else {
            return Ok(());
        };
        match completion.kind {
            CompletionKind::Recv { len } => {
                let message = self.receives.message(transport, index, len)?;
                // A violation terminates inside the core; it surfaces as the
                // Terminated event and the requests' completions.
                let _ = self.core.handle_message(now, message);
            }
            CompletionKind::RecvImm { imm } if self.batch_reads => {
                if let Some(members) = self.core.batch_members(imm) {
                    self.take_batch(transport, now, &members)?;
                } else {
                    self.take_immediate(transport, now, imm)?;
                }
            }
            CompletionKind::RecvImm { imm } => self.take_immediate(transport, now, imm)?,
            CompletionKind::Send | CompletionKind::Write => {}
        }
        if let Err(e) = self.receives.repost(transport, index) {
            if !self.core.is_closed() {
                self.transport_failed(None);
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// The status blocks of a read batch whose immediate arrived: every
    /// one is written (the server posted them all before it), so one that
    /// is not ends the connection ([`CoreClient::take_batch_block`]).
    fn take_batch(
        &mut self,
        transport: &mut impl Transport,
        now: rdio_core::Instant,
        members: &[RequestId],
    ) -> Result<(), ClientError> {
        for &request in members {
            let Some(slot) = self
                .slot_of(request)
                .filter(|&slot| slot < self.slots.count())
            else {
                continue;
            };
            if !self.take_block(transport, now, slot, request, true)? || self.core.is_closed() {
                break;
            }
        }
        Ok(())
    }

    /// A single request's immediate (interrupt mode): it names the
    /// request whose status block just landed (claim 20). The server chose
    /// it: one naming no outstanding data request of ours is ignored (the
    /// request it should have named times out).
    fn take_immediate(
        &mut self,
        transport: &mut impl Transport,
        now: rdio_core::Instant,
        imm: u32,
    ) -> Result<(), ClientError> {
        let request = RequestId(imm);
        if let Some(slot) = self
            .core
            .slot_of(request)
            .and_then(|_| self.slot_of(request))
            .filter(|&slot| slot < self.slots.count())
        {
            self.take_block(transport, now, slot, request, false)?;
        }
        Ok(())
    }

    /// A send gathering from `slot`'s buffer completed.
    fn sent_from(&mut self, slot: usize) {
        let Some(entry) = self.table.get_mut(slot) else {
            return;
        };
        entry.sends = entry.sends.saturating_sub(1);
        if entry.abandoned && entry.done && entry.sends == 0 {
            self.free(slot);
        }
    }

    /// Feed data slot `slot`'s status block to the core: the slot holds
    /// `request` (its callers found the slot from it, or it from the
    /// slot), a member of a read batch whose immediate arrived if
    /// `batch_member`. A block that finishes its request (every read)
    /// hands the completion back at once, and it goes straight into the
    /// slot; a write still waiting for the answers to earlier fragments
    /// finishes later, through the core's events. Whether the block was
    /// written (a violation counts: the core has ended the connection, and
    /// says so through its events).
    #[inline(always)]
    fn take_block(
        &mut self,
        transport: &mut impl Transport,
        now: rdio_core::Instant,
        slot: usize,
        request: RequestId,
        batch_member: bool,
    ) -> Result<bool, ClientError> {
        let start = self.block_offset(slot);
        let Some(block) = transport
            .region(self.slots.region(slot)?)?
            .get(start..start + STATUS_BLOCK_LEN)
        else {
            return Ok(false);
        };
        let taken = if batch_member {
            self.core.take_batch_block(now, request, block)
        } else {
            self.core.take_status_block(now, block)
        };
        let event = match taken {
            Ok(BlockOutcome::NotWritten) => return Ok(false),
            Ok(BlockOutcome::Taken) | Err(_) => return Ok(true),
            Ok(BlockOutcome::Completed(event)) => event,
        };
        // The block is this slot's: its completion goes straight in,
        // without finding the slot again from the request id (the slot
        // holds `request`, and nothing since changed the table).
        let finished = match event {
            ClientEvent::Completed {
                request: completed,
                status,
                bytes,
            } if completed == request => {
                self.finish_in(slot, request, Outcome::Completed { status, bytes })
            }
            event => self.handle_event(event),
        };
        match finished {
            Ok(()) => Ok(true),
            Err(what) => Err(self.broke(transport, what)),
        }
    }

    /// Polling mode: look at the status block of every request awaiting
    /// one; how many were found written.
    fn poll_status_blocks(
        &mut self,
        transport: &mut impl Transport,
        now: rdio_core::Instant,
    ) -> Result<usize, ClientError> {
        let mut found = 0;
        for slot in 0..self.slots.count() {
            let start = self.block_offset(slot);
            let block = start..start + STATUS_BLOCK_LEN;
            let Some(request) = self
                .table
                .get(slot)
                .filter(|entry| !entry.done)
                .and_then(|entry| entry.request)
            else {
                continue;
            };
            // Most looks find nothing yet: one load of the block's valid
            // word before the core's lookups and parse (which still decide).
            let written = transport
                .region(self.slots.region(slot)?)?
                .get(block)
                .is_some_and(StatusBlock::is_written);
            if written
                && self.core.awaits_status_block(request)
                && self.take_block(transport, now, slot, request, false)?
            {
                found += 1;
            }
        }
        Ok(found)
    }

    /// Move the core's events into the completion table.
    fn collect_events(&mut self, transport: &mut impl Transport) -> Result<usize, ClientError> {
        let mut events = 0;
        let mut broken = None;
        while let Some(event) = self.core.poll_event() {
            events += 1;
            if let Err(what) = self.handle_event(event) {
                // After a broken invariant the core completes what is
                // outstanding; those completions are moot.
                if self.broken.is_none() {
                    broken.get_or_insert(what);
                }
            }
        }
        match broken {
            Some(what) => Err(self.broke(transport, what)),
            None => Ok(events),
        }
    }

    /// One event of the core, from its queue or straight from a status
    /// block: connection news, or a finished request for its slot.
    fn handle_event(&mut self, event: ClientEvent) -> Result<(), &'static str> {
        let (request, outcome) = match event {
            ClientEvent::Authenticated { .. } => {
                self.authenticated = true;
                return Ok(());
            }
            ClientEvent::Terminated { reason } => {
                self.stats.terminated(&reason);
                self.terminated = Some(reason);
                return Ok(());
            }
            ClientEvent::Registered { request, result } => {
                self.stats
                    .completed(result.as_ref().err().copied().unwrap_or(Status::Success));
                (request, Outcome::Registered(result))
            }
            ClientEvent::Completed {
                request,
                status,
                bytes,
            } => (request, Outcome::Completed { status, bytes }),
            ClientEvent::Interrupted { request } => (request, Outcome::Interrupted),
        };
        self.finish(request, outcome)
    }

    /// Put `request`'s outcome in its slot.
    fn finish(&mut self, request: RequestId, outcome: Outcome) -> Result<(), &'static str> {
        let Some(slot) = self.slot_of(request) else {
            return Err("the core completed a request this client never submitted");
        };
        self.finish_in(slot, request, outcome)
    }

    /// Put `request`'s outcome in `slot`, which holds it, and count it: its
    /// status, and for a read or write its bytes and its latency since
    /// submission, by size class, ending at the poll's [`Reading`], taken
    /// once per poll for every completion.
    fn finish_in(
        &mut self,
        slot: usize,
        request: RequestId,
        outcome: Outcome,
    ) -> Result<(), &'static str> {
        let Some(entry) = self.table.get_mut(slot) else {
            return Err("a request's slot is outside the completion table");
        };
        // The core completes every request exactly once; the fault sweep
        // (`tests/fault_sweep.rs`) runs with this check on.
        debug_assert!(
            !entry.done,
            "request {request:?} completed twice: {:?} then {outcome:?}",
            entry.outcome
        );
        if entry.done {
            return Err("the core completed a request twice");
        }
        if let Outcome::Completed { status, bytes } = outcome {
            count_completion(&mut self.stats, entry, &self.reading, status, bytes);
        }
        entry.done = true;
        entry.outcome = Some(outcome);
        if entry.abandoned && entry.sends == 0 {
            self.free(slot);
        }
        Ok(())
    }

    /// End the connection in an orderly way: queue the `Terminate`.
    pub(crate) fn close_connection(&mut self) {
        self.core.close_connection();
    }

    /// Disconnect and deregister every buffer this engine registered.
    pub(crate) fn release_buffers(
        &mut self,
        transport: &mut impl Transport,
    ) -> Result<(), TransportError> {
        self.transport_down = true;
        let regions: Vec<RegionId> = self
            .sends
            .regions()
            .chain(self.slots.regions())
            .chain([self.receives.region()])
            .collect();
        release(transport, regions)
    }
}

/// What [`Engine::submit_into`] did with a request.
enum Submitted {
    /// Nothing: the transport is down, or its send queue or the send
    /// buffers are all taken. The caller submits the request to the core,
    /// which queues it for [`Engine::poll`].
    NotTried,
    /// Submitted, and queued by the core (something must go before it):
    /// nothing to post now.
    Queued(RequestId),
    /// Submitted and encoded into send buffer `.0`: post it now.
    Encoded(usize, RequestId, CoreTransmit),
}

/// Clear a freed slot's entry: no request, outcome, flags or sends.
fn clear(entry: &mut Entry) {
    entry.request = None;
    entry.outcome = None;
    entry.done = false;
    entry.abandoned = false;
    entry.sends = 0;
}

/// Bind `slot` to `request`: the core slot's pointer to it, and its entry
/// (returned) named for the request.
fn bind_in<'a>(
    by_core: &mut [u16],
    table: &'a mut [Entry],
    slot: usize,
    request: RequestId,
) -> Option<&'a mut Entry> {
    if let (Some(by_core), Ok(slot)) = (by_core.get_mut(core_slot(request)), u16::try_from(slot)) {
        *by_core = slot;
    }
    // A slot is handed out fresh or after `Engine::free`, which cleared
    // its outcome and flags: only the request is new.
    let entry = table.get_mut(slot)?;
    entry.request = Some(request);
    Some(entry)
}

/// A traced request's span, its submission noted in it (`None` when the
/// span is disabled). Out of line: tracing at trace level is the rare
/// case, and inlined it made every submission's frame larger.
#[cold]
#[inline(never)]
fn request_span(
    parent: &tracing::Span,
    request: RequestId,
    kind: usize,
    size: u64,
) -> Option<tracing::Span> {
    let span = tracing::trace_span!(
        target: LOG_TARGET,
        parent: parent,
        "request",
        id = request.0,
        kind = crate::stats::REQUEST_KINDS.get(kind).copied().unwrap_or("?"),
        size
    );
    span.in_scope(|| tracing::trace!(target: LOG_TARGET, "submitted"));
    (!span.is_disabled()).then_some(span)
}

/// A traced request's completion, noted in its span.
#[cold]
#[inline(never)]
fn trace_completion(span: tracing::Span, status: Status, bytes: u64, micros: u64) {
    span.in_scope(|| {
        tracing::trace!(
            target: LOG_TARGET,
            ?status,
            bytes,
            latency_us = micros,
            "completed"
        );
    });
}

/// Count a completion in `stats`: its status, and for a data request
/// (`entry.started`) its bytes and its latency since submission, by size
/// class.
fn count_completion(
    stats: &mut ClientStats,
    entry: &mut Entry,
    reading: &Reading,
    status: Status,
    bytes: u64,
) {
    stats.completed(status);
    if !entry.started {
        return;
    }
    entry.started = false;
    let size = entry.size;
    let kind = entry.kind;
    stats.in_flight = stats.in_flight.saturating_sub(1);
    if let Some(at) = entry.at.take() {
        let micros = reading.micros_since(at);
        if let Some(span) = entry.span.take() {
            trace_completion(span, status, bytes, micros);
        }
        if let Some(classes) = stats.latency.get_mut(kind) {
            classes[crate::stats::size_class(size)].record_micros(micros);
        }
    }
    if status == Status::Success {
        if kind < 2 {
            stats.bytes_read += bytes;
        } else {
            stats.bytes_written += bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::{Embedded, EmbeddedOptions};
    use rdio_core::wire::OpenFlags;

    const FILE_LEN: usize = 64 * 1024;

    fn contents() -> Vec<u8> {
        (0..FILE_LEN).map(|i| (i % 251) as u8).collect()
    }

    /// An inline pair serving a directory that holds `f`, with a client of
    /// `queue_depth` slots of 4 KiB.
    fn pair(queue_depth: usize) -> (tempfile::TempDir, Embedded<crate::embedded::Inline>) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("f"), contents()).expect("file");
        let mut options = EmbeddedOptions::default();
        options.client.io_size = 4096;
        options.client.queue_depth = queue_depth;
        let pair = Embedded::start_inline(dir.path(), options).expect("start");
        (dir, pair)
    }

    /// A ticket held while many more requests than the core has slots pass
    /// through the other slot. The held read finishes early, its status
    /// block handing the completion straight to its slot; its core slot is
    /// then free and taken by later requests, and the outcome waits in the
    /// engine's slot for its waiter all the same.
    #[test]
    fn a_ticket_held_across_many_requests_still_finds_its_slot() {
        let (_dir, mut pair) = pair(2);
        let client = &mut pair.client;
        let file = client.open("f", OpenFlags::READ).expect("open");
        let held = client.submit_read(&file, 4096, 100).expect("submit");
        assert_eq!(client.engine.slot_of(held.request), Some(held.slot));
        let held_core = core_slot(held.request);
        let mut buf = [0u8; 512];
        for i in 0..(3 * CORE_SLOTS) {
            let offset = (i * 512 % FILE_LEN) as u64;
            assert_eq!(client.read_at(&file, offset, &mut buf).expect("read"), 512);
            assert_eq!(buf[..], contents()[offset as usize..offset as usize + 512]);
        }
        assert_eq!(client.engine.core().slot_of(held.request), None);
        assert_ne!(
            usize::from(client.engine.by_core[held_core]),
            held.slot,
            "later requests took the held request's core slot"
        );
        assert!(client.engine.table[held.slot].done);
        let mut out = [0u8; 100];
        assert_eq!(client.wait(held, &mut out).expect("held read"), 100);
        assert_eq!(out[..], contents()[4096..4196]);
        assert_eq!(client.credits_in_use(), 0);
    }

    /// A stale request id (its request completed and its core slot moved on
    /// to another generation) finds no slot: the entry holds another
    /// request, or none.
    #[test]
    fn a_stale_request_id_finds_no_slot() {
        let (_dir, mut pair) = pair(2);
        let client = &mut pair.client;
        let file = client.open("f", OpenFlags::READ).expect("open");
        let first = client.submit_read(&file, 0, 100).expect("submit");
        let stale = first.request;
        let mut out = [0u8; 100];
        client.wait(first, &mut out).expect("read");
        assert_eq!(client.engine.slot_of(stale), None);
        let later = client.submit_read(&file, 0, 100).expect("submit");
        assert_ne!(later.request, stale);
        assert_eq!(client.engine.slot_of(stale), None);
        assert_eq!(client.engine.slot_of(later.request), Some(later.slot));
        client.wait(later, &mut out).expect("read");
    }

    /// A request reaches the core behind the engine's back (a bug
    /// simulated by submitting to the core directly): its completion names
    /// a request no slot holds. The connection ends with an internal error
    /// at once, for the waiter of another request and for every later call,
    /// instead of anything stalling.
    #[test]
    fn a_completion_for_no_slot_ends_the_connection_with_an_internal_error() {
        let (_dir, mut pair) = pair(4);
        let client = &mut pair.client;
        let file = client.open("f", OpenFlags::READ).expect("open");
        let ticket = client.submit_read(&file, 0, 4096).expect("submit");
        client
            .engine
            .core_mut()
            .close(file.handle.wrapping_add(1000))
            .expect("a close the engine does not know of");
        let mut out = [0u8; 4096];
        match client.wait(ticket, &mut out) {
            Err(ClientError::Internal(what)) => assert!(what.contains("never submitted"), "{what}"),
            other => panic!("expected an internal error, got {other:?}"),
        }
        assert!(matches!(
            client.read_at(&file, 0, &mut out),
            Err(ClientError::Internal(_))
        ));
        assert!(matches!(
            client.open("f", OpenFlags::READ),
            Err(ClientError::Internal(_))
        ));
        assert!(client.engine.transport_down());
    }

    /// A waiter that gives up on a request keeps its slot out of use until
    /// the request is reported; then the slot is free again.
    #[test]
    fn an_abandoned_slot_is_freed_when_its_request_completes() {
        let (_dir, mut pair) = pair(1);
        let client = &mut pair.client;
        let file = client.open("f", OpenFlags::READ).expect("open");
        let ticket = client.submit_read(&file, 0, 4096).expect("submit");
        let slot = ticket.slot;
        client.engine.release(slot);
        assert!(client.engine.table[slot].abandoned);
        assert!(
            matches!(
                client.submit_read(&file, 0, 4096),
                Err(ClientError::Api(ApiError::TooManyRequests))
            ),
            "the abandoned slot is still taken"
        );
        while client.engine.table[slot].request.is_some() {
            client.step().expect("step");
        }
        let again = client
            .submit_read(&file, 8192, 4096)
            .expect("slot free again");
        let mut out = [0u8; 4096];
        assert_eq!(client.wait(again, &mut out).expect("read"), 4096);
        assert_eq!(out[..], contents()[8192..12288]);
        assert_eq!(client.credits_in_use(), 0);
    }

    #[test]
    fn descriptors_are_windows_of_the_registration() {
        let (_dir, mut pair) = pair(2);
        let client = &mut pair.client;
        let region = client.engine.buffer_region(1).expect("region");
        for (offset, len) in [(0, 4096), (100, 50), (4095, 1)] {
            let expected = client
                .transport
                .remote_buf(region, offset, len)
                .expect("remote buf");
            let got = client
                .engine
                .descriptor(1, offset, len)
                .expect("descriptor");
            assert_eq!(
                got,
                BufferDescriptor::new(expected.addr, expected.key, expected.len)
            );
        }
        assert!(client.engine.descriptor(1, 4000, 97).is_err());
        assert!(client.engine.descriptor(2, 0, 1).is_err());
    }
}
