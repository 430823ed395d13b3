//! The client side: [`discovery`] on the pipe, then one [`Client`] state
//! machine per RDMA connection.
//!
//! # Driving a client
//!
//! The driver owns the transport, the client's registered buffers and the
//! data of pending writes. It submits requests ([`Client::read`],
//! [`Client::write`], ...; each returns a [`RequestId`]), feeds in every
//! received send ([`Client::handle_message`]) and every status block it finds
//! written ([`Client::handle_status_block`]: after a receive completion with
//! immediate data in interrupt mode, or by polling the block's memory in
//! polling mode), and drains, until each returns `None`:
//! 1. [`Client::poll_transmit`] — sends to post; a write fragment names the
//!    slice of the caller's data to gather after the encoded prefix
//!    ([`DataRef`]), so write data is never copied by the core;
//! 2. [`Client::poll_event`] — completions for the caller;
//! 3. [`Client::poll_timeout`] — when to call [`Client::handle_timeout`].
//!
//! The driver keeps [`Client::receive_depth`] receives posted, reposting each
//! after `handle_message` returns.

pub mod discovery;

pub use discovery::{DiscoveryError, Negotiated, negotiate_request, negotiated};

use crate::credit::ClientLedger;
use crate::error::{ApiError, Violation};
use crate::queue::Fifo;
use crate::segments::SegmentStore;
use crate::stats::ConnectionStats;
use crate::table::OpTable;
use crate::time::{Instant, TimerTable};
use crate::wire::message::emit_read;
use crate::wire::status::STATUS_BLOCK_LEN;
use crate::wire::{
    Body, BufferDescriptor, Capabilities, Flags, InsufficientSize, MAX_SEGMENTS, Message,
    ProviderList, ReadRequest, ReadSegment, ReadVRequest, ResumeKey, Status, StatusBlock,
    VERSION_1, WriteRequest, WriteSegment, WriteVRequest,
};
use core::time::Duration;

/// Client-side limits and preferences.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientConfig {
    /// Providers this client can connect over, most preferred first.
    pub providers: ProviderList,
    /// Lowest protocol version spoken.
    pub min_version: u16,
    /// Highest protocol version spoken.
    pub max_version: u16,
    /// Most credits (and receive buffers) the client accepts.
    pub max_credits: u16,
    /// Largest message the client sends or receives.
    pub max_send_size: u32,
    /// Largest read or write the client issues.
    pub max_io_size: u32,
    /// Time from connection to a completed authentication.
    pub auth_timeout: Duration,
    /// Silence, with requests outstanding, after which the server is dead.
    pub dead_peer_timeout: Duration,
    /// Keepalive interval when the server does not state one.
    pub keepalive_interval: Duration,
    /// The protocol extensions this client speaks (offered in the
    /// negotiate request).
    pub capabilities: Capabilities,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            providers: ProviderList::new(),
            min_version: VERSION_1,
            max_version: VERSION_1,
            max_credits: 64,
            max_send_size: 64 * 1024,
            max_io_size: 8 * 1024 * 1024,
            auth_timeout: Duration::from_secs(5),
            dead_peer_timeout: Duration::from_secs(30),
            keepalive_interval: Duration::from_secs(20),
            capabilities: Capabilities::NONE,
        }
    }
}

/// A client request, as numbered on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RequestId(pub u32);

/// How a data request is completed (claims 18–21).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CompletionMode {
    /// INTERRUPT flag set: the status block arrives by RDMA write with
    /// immediate data, raising a receive completion.
    Interrupt,
    /// Polling: the status block is written silently; the driver polls it
    /// (and may ask for an interrupt response with
    /// [`Client::request_interrupt`]).
    Polling,
}

/// A registered file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RemoteFile {
    /// Handle for I/O requests.
    pub handle: u32,
    /// Size at registration.
    pub size: u64,
}

/// What the client reports to its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ClientEvent {
    /// Authentication completed (claim 14); requests can flow.
    Authenticated {
        /// The starting credit level.
        credits: u16,
    },
    /// A registration finished (claim 11).
    Registered {
        /// The request.
        request: RequestId,
        /// The file, or why not.
        result: Result<RemoteFile, Status>,
    },
    /// A read, write, vectored request or close finished. Every submitted
    /// request produces exactly one completion event, also when cancelled
    /// (`Cancelled`) or when the connection ends (`Closed`, `TimedOut`, ...).
    Completed {
        /// The request.
        request: RequestId,
        /// Outcome.
        status: Status,
        /// Bytes transferred.
        bytes: u64,
    },
    /// The interrupt response to [`Client::request_interrupt`] (claim 21).
    Interrupted {
        /// The interrupt request.
        request: RequestId,
    },
    /// The connection ended; no event follows.
    Terminated {
        /// Why.
        reason: Violation,
    },
}

/// The part of a write's data a fragment carries, to be gathered by the
/// driver after the encoded prefix: `len` bytes at `offset` of the data the
/// caller supplied for `request` (for a vectored write without COLLAPSE,
/// offsets run through the segments' data concatenated in order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DataRef {
    /// The write.
    pub request: RequestId,
    /// Offset into its data.
    pub offset: u32,
    /// Bytes.
    pub len: u32,
}

/// A send to post: the first `len` bytes of the buffer, then `data` if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Transmit {
    /// Encoded prefix length.
    pub len: usize,
    /// Write data to gather after the prefix.
    pub data: Option<DataRef>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum State {
    /// The auth request is queued or sent.
    Authenticating {
        auth_ok: bool,
    },
    Open,
    Closed,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum OpKind {
    Register {
        key: ResumeKey,
    },
    Read {
        handle: u32,
        offset: u64,
        dest: BufferDescriptor,
    },
    /// Segments in the slot's [`SegmentStore`].
    ReadV {
        handle: u32,
    },
    Write {
        handle: u32,
        offset: u64,
        total: u32,
    },
    /// Segments in the slot's [`SegmentStore`].
    WriteV {
        handle: u32,
        collapse: bool,
        total: u32,
    },
    Cancel {
        target: u32,
    },
    Close {
        handle: u32,
    },
    Interrupt,
    Keepalive,
}

impl OpKind {
    fn is_data(&self) -> bool {
        matches!(
            self,
            Self::Read { .. } | Self::ReadV { .. } | Self::Write { .. } | Self::WriteV { .. }
        )
    }

    fn is_internal(&self) -> bool {
        matches!(self, Self::Cancel { .. } | Self::Keepalive)
    }

    fn write_total(&self) -> Option<u32> {
        match self {
            Self::Write { total, .. } | Self::WriteV { total, .. } => Some(*total),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Stage {
    Queued,
    Sent,
    Done,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Op {
    id: u32,
    kind: OpKind,
    status_desc: BufferDescriptor,
    interrupt: bool,
    stage: Stage,
    /// Write data bytes sent so far.
    sent: u32,
    /// Messages sent and not answered.
    unanswered: u16,
    /// The final answer (status block or reply) arrived.
    final_seen: bool,
    /// A cancel was sent: no further fragments.
    stop_sending: bool,
    status: Status,
    bytes: u64,
    registered: Option<RemoteFile>,
}

const TIMER_AUTH: usize = 0;
const TIMER_DEAD: usize = 1;
const TIMER_KEEPALIVE: usize = 2;
const TIMERS: usize = 3;

/// One RDMA connection's client state machine, with at most `R` requests
/// outstanding (submitted and not yet reported).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Client<const R: usize = 64> {
    config: ClientConfig,
    negotiated: Negotiated,
    state: State,
    ledger: ClientLedger,
    ops: OpTable<Op, R>,
    /// The segments of the vectored request in the same slot of `ops`.
    segments: [SegmentStore; R],
    unsent: Fifo<u32, R>,
    streaming: Fifo<u32, R>,
    done: Fifo<u32, R>,
    auth_queued: bool,
    authenticated: Option<u16>,
    terminate: Option<Status>,
    terminated: Option<Violation>,
    next_id: u32,
    keepalive_interval: Duration,
    last_heard: Instant,
    /// Internal messages (keepalive, cancel) sent and not yet answered;
    /// with the ledger's credit messages awaiting responses, what no caller
    /// waits for.
    internal_in_flight: u16,
    /// Since when the oldest of those has been waiting (reset whenever one
    /// is answered): each answer is due within the dead-peer timeout,
    /// however much else the server keeps saying.
    internal_since: Option<Instant>,
    /// The count of those at the last [`Client::rearm`].
    internal_seen: u16,
    timers: TimerTable<TIMERS>,
    /// Credit, credit-wait and keepalive counters ([`Client::stats`]).
    stats: ConnectionStats,
}

impl<const R: usize> Client<R> {
    /// A client for a freshly connected RDMA channel, authenticating with the
    /// key from `negotiated` (claim 12). The auth request is the first
    /// transmit.
    pub fn new(config: ClientConfig, negotiated: Negotiated, now: Instant) -> Self {
        let mut timers = TimerTable::new();
        timers.set(TIMER_AUTH, now.saturating_add(config.auth_timeout));
        let credits = negotiated.credits;
        let max = config.max_credits;
        let keepalive_interval = config.keepalive_interval;
        Self {
            config,
            negotiated,
            state: State::Authenticating { auth_ok: false },
            ledger: ClientLedger::new(credits, max),
            ops: OpTable::new(),
            segments: [const { SegmentStore::EMPTY }; R],
            unsent: Fifo::new(),
            streaming: Fifo::new(),
            done: Fifo::new(),
            auth_queued: true,
            authenticated: None,
            terminate: None,
            terminated: None,
            next_id: 1,
            keepalive_interval,
            last_heard: now,
            internal_in_flight: 0,
            internal_since: None,
            internal_seen: 0,
            timers,
            stats: ConnectionStats::default(),
        }
    }

    /// Receives the driver must keep posted: one per credit the client may
    /// ever hold, plus one each for the second auth reply, a credit request
    /// and a terminate, which the server sends outside the credit window.
    pub fn receive_depth(&self) -> usize {
        usize::from(self.config.max_credits).saturating_add(3)
    }

    /// The negotiated parameters.
    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }

    /// The credit ledger.
    pub fn ledger(&self) -> &ClientLedger {
        &self.ledger
    }

    /// Credits granted and revoked, requests that waited for a credit,
    /// keepalives sent and answered.
    pub fn stats(&self) -> ConnectionStats {
        self.stats
    }

    /// Requests that had to wait because no credit was available
    /// (`stats().credit_waits`).
    pub fn waits_for_credit(&self) -> u64 {
        self.stats.credit_waits
    }

    /// Whether requests can flow.
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Requests submitted and not yet reported, internal ones included.
    pub fn outstanding(&self) -> usize {
        self.ops.len()
    }

    /// Whether `request` is a data request in polling mode awaiting its
    /// status block (so the driver knows which blocks to poll).
    pub fn awaits_status_block(&self, request: RequestId) -> bool {
        self.find(request.0)
            .and_then(|i| self.ops.get(i))
            .is_some_and(|op| op.kind.is_data() && op.stage == Stage::Sent && !op.final_seen)
    }

    // ----- submissions -----

    /// Register the file opened on the pipe under `key` (claim 10).
    pub fn register(&mut self, key: ResumeKey) -> Result<RequestId, ApiError> {
        self.submit(
            OpKind::Register { key },
            BufferDescriptor::default(),
            CompletionMode::Interrupt,
        )
    }

    /// Read `dest.len()` bytes at `offset` into client memory `dest`; the
    /// server RDMA-writes the data, then the status block into `status`
    /// (claims 16, 20).
    pub fn read(
        &mut self,
        handle: u32,
        offset: u64,
        dest: BufferDescriptor,
        status: BufferDescriptor,
        mode: CompletionMode,
    ) -> Result<RequestId, ApiError> {
        if dest.is_empty() {
            return Err(ApiError::InvalidArgument);
        }
        self.check_io_len(u64::from(dest.len()))?;
        self.submit(
            OpKind::Read {
                handle,
                offset,
                dest,
            },
            status,
            mode,
        )
    }

    /// Vectored read: each segment reads its own file range into its own
    /// buffer; one status block.
    pub fn read_vectored(
        &mut self,
        handle: u32,
        segments: &[ReadSegment],
        status: BufferDescriptor,
        mode: CompletionMode,
    ) -> Result<RequestId, ApiError> {
        if segments.is_empty()
            || segments.len() > MAX_SEGMENTS
            || segments.iter().any(|s| s.dest().is_empty())
        {
            return Err(ApiError::InvalidArgument);
        }
        let total = segments.iter().map(|s| u64::from(s.dest().len())).sum();
        self.check_io_len(total)?;
        self.check_fits(prefix_size(24, 24, segments.len()))?;
        self.submit_vectored(OpKind::ReadV { handle }, status, mode, segments)
    }

    /// Write `len` bytes at `offset`. The data travels in sends (claim 1),
    /// fragmented to the negotiated send size; [`Client::poll_transmit`]
    /// names the slices to gather ([`DataRef`]).
    pub fn write(
        &mut self,
        handle: u32,
        offset: u64,
        len: u32,
        status: BufferDescriptor,
        mode: CompletionMode,
    ) -> Result<RequestId, ApiError> {
        if len == 0 {
            return Err(ApiError::InvalidArgument);
        }
        self.check_io_len(u64::from(len))?;
        self.submit(
            OpKind::Write {
                handle,
                offset,
                total: len,
            },
            status,
            mode,
        )
    }

    /// Vectored write. With `collapse` (claim 17) every segment must have the
    /// same length and receives the same data, supplied and sent once;
    /// without it the data is the segments' data concatenated.
    pub fn write_vectored(
        &mut self,
        handle: u32,
        segments: &[WriteSegment],
        collapse: bool,
        status: BufferDescriptor,
        mode: CompletionMode,
    ) -> Result<RequestId, ApiError> {
        let first = segments.first().ok_or(ApiError::InvalidArgument)?;
        if segments.len() > MAX_SEGMENTS
            || segments.iter().any(|s| s.is_empty())
            || (collapse && segments.iter().any(|s| s.len() != first.len()))
        {
            return Err(ApiError::InvalidArgument);
        }
        let file_bytes: u64 = segments.iter().map(|s| u64::from(s.len())).sum();
        self.check_io_len(file_bytes)?;
        let total = if collapse {
            first.len()
        } else {
            u32::try_from(file_bytes).map_err(|_| ApiError::TooLarge)?
        };
        // Room for the prefix and at least one data byte.
        self.check_fits(prefix_size(32, 16, segments.len()).saturating_add(1))?;
        self.submit_vectored(
            OpKind::WriteV {
                handle,
                collapse,
                total,
            },
            status,
            mode,
            segments,
        )
    }

    /// Close a registered file. Requests on it still queued end `Closed`.
    pub fn close(&mut self, handle: u32) -> Result<RequestId, ApiError> {
        self.submit(
            OpKind::Close { handle },
            BufferDescriptor::default(),
            CompletionMode::Interrupt,
        )
    }

    /// Polling mode: ask the server to wake this client with an interrupt
    /// response by ordinary send at its next completion (claim 21).
    pub fn request_interrupt(&mut self) -> Result<RequestId, ApiError> {
        self.submit(
            OpKind::Interrupt,
            BufferDescriptor::default(),
            CompletionMode::Interrupt,
        )
    }

    /// Cancel `request`. A request not yet sent completes `Cancelled` at
    /// once; a sent one gets a cancel message and completes `Cancelled`
    /// unless it finished first. A write stops sending its fragments.
    pub fn cancel(&mut self, request: RequestId) -> Result<(), ApiError> {
        let index = self.find(request.0).ok_or(ApiError::UnknownRequest)?;
        let full = self.ops.is_full();
        let op = self.ops.get_mut(index).ok_or(ApiError::UnknownRequest)?;
        if !op.kind.is_data() || op.stage == Stage::Done || op.stop_sending {
            return Err(ApiError::UnknownRequest);
        }
        if op.stage == Stage::Queued {
            op.stage = Stage::Done;
            op.status = Status::Cancelled;
            remove_from(&mut self.unsent, request.0);
            return self
                .done
                .push_back(request.0)
                .map_err(|_| ApiError::TooManyRequests);
        }
        if full {
            return Err(ApiError::TooManyRequests);
        }
        op.stop_sending = true;
        remove_from(&mut self.streaming, request.0);
        let cancel = self.submit(
            OpKind::Cancel { target: request.0 },
            BufferDescriptor::default(),
            CompletionMode::Interrupt,
        )?;
        // The cancel goes next, where the write's next fragment would have
        // gone: behind a close of the same handle — which the server holds
        // until the write ends — it could wait forever for a credit.
        remove_from(&mut self.unsent, cancel.0);
        self.unsent
            .push_front(cancel.0)
            .map_err(|_| ApiError::TooManyRequests)
    }

    fn check_io_len(&self, len: u64) -> Result<(), ApiError> {
        if len > u64::from(self.negotiated.max_io_size) {
            Err(ApiError::TooLarge)
        } else {
            Ok(())
        }
    }

    fn check_fits(&self, prefix: usize) -> Result<(), ApiError> {
        if prefix > self.negotiated.max_send_size as usize {
            Err(ApiError::TooLarge)
        } else {
            Ok(())
        }
    }

    /// Submit a vectored request, its segments stored beside it.
    fn submit_vectored<T: zerocopy::IntoBytes + zerocopy::Immutable>(
        &mut self,
        kind: OpKind,
        status_desc: BufferDescriptor,
        mode: CompletionMode,
        segments: &[T],
    ) -> Result<RequestId, ApiError> {
        let request = self.submit(kind, status_desc, mode)?;
        let stored = self
            .find(request.0)
            .and_then(|index| self.segments.get_mut(index))
            .is_some_and(|store| store.set(segments));
        if !stored {
            // Unreachable: the count was checked against the store's room.
            if let Some(index) = self.find(request.0) {
                self.ops.remove(index);
            }
            remove_from(&mut self.unsent, request.0);
            return Err(ApiError::InvalidArgument);
        }
        Ok(request)
    }

    #[inline(always)]
    fn submit(
        &mut self,
        kind: OpKind,
        status_desc: BufferDescriptor,
        mode: CompletionMode,
    ) -> Result<RequestId, ApiError> {
        if self.state == State::Closed {
            return Err(ApiError::NotConnected);
        }
        if kind.is_data() && (status_desc.len() as usize) < STATUS_BLOCK_LEN {
            return Err(ApiError::InvalidArgument);
        }
        if self.ops.is_full() {
            return Err(ApiError::TooManyRequests);
        }
        let id = self.allocate_id();
        let op = Op {
            id,
            kind,
            status_desc,
            interrupt: mode == CompletionMode::Interrupt,
            stage: Stage::Queued,
            sent: 0,
            unanswered: 0,
            final_seen: false,
            stop_sending: false,
            status: Status::Success,
            bytes: 0,
            registered: None,
        };
        let index = self
            .ops
            .insert(id, op)
            .map_err(|_| ApiError::TooManyRequests)?;
        if self.unsent.push_back(id).is_err() {
            self.ops.remove(index);
            return Err(ApiError::TooManyRequests);
        }
        Ok(RequestId(id))
    }

    /// Request ids are never 0 (unsolicited server messages use it) and never
    /// those of outstanding requests.
    ///
    /// Each id is picked so that its home slot in the request table is free,
    /// which makes every later lookup by id a single probe. Among any `R`
    /// consecutive ids every slot is some id's home, so with a free slot
    /// (checked by the caller) this ends within `R + 1` candidates.
    fn allocate_id(&mut self) -> u32 {
        let mut id = self.next_id;
        for _ in 0..=R {
            id = self.next_id;
            self.next_id = self.next_id.wrapping_add(1).max(1);
            if self.ops.home_is_free(id) {
                break;
            }
        }
        id
    }

    // ----- inputs -----

    /// Process one received send.
    ///
    /// On a violation the connection is already terminated (a `Terminate`
    /// is queued, the outstanding requests complete, a
    /// [`ClientEvent::Terminated`] follows); the error says why.
    pub fn handle_message(&mut self, now: Instant, bytes: &[u8]) -> Result<(), Violation> {
        if self.state == State::Closed {
            return Ok(());
        }
        self.heard(now);
        let result = Message::parse(bytes)
            .map_err(Violation::from)
            .and_then(|msg| self.process(msg));
        self.after_input(now, result)
    }

    /// A status block was found written in the memory of one of this
    /// client's requests (claim 20). `Ok(false)`: not written yet, keep
    /// polling.
    pub fn handle_status_block(&mut self, now: Instant, bytes: &[u8]) -> Result<bool, Violation> {
        if self.state == State::Closed {
            return Ok(false);
        }
        let block = match StatusBlock::parse(bytes) {
            Ok(None) => return Ok(false),
            Ok(Some(block)) => block,
            Err(e) => return self.after_input(now, Err(e.into())).map(|()| false),
        };
        self.heard(now);
        let result = self.status_block(block);
        self.after_input(now, result).map(|()| true)
    }

    #[inline(always)]
    fn after_input(
        &mut self,
        now: Instant,
        result: Result<(), Violation>,
    ) -> Result<(), Violation> {
        match result {
            Ok(()) => {
                self.rearm(now);
                Ok(())
            }
            Err(violation) => {
                self.fail(violation);
                Err(violation)
            }
        }
    }

    fn heard(&mut self, now: Instant) {
        self.last_heard = now;
    }

    fn process(&mut self, msg: Message<'_>) -> Result<(), Violation> {
        let opcode = msg.opcode();
        if !opcode.sent_by_server() {
            return Err(Violation::WrongDirection(opcode));
        }
        trace!("client rx {:?} id {}", opcode, msg.request_id);
        if let Body::Terminate { reason } = msg.body {
            self.end(Violation::PeerTerminated(reason), None);
            return Ok(());
        }
        match (self.state, msg.body) {
            (State::Authenticating { auth_ok: false }, Body::AuthResponse { status }) => {
                self.expect_credits(&msg, 0)?;
                if status != Status::Success {
                    return Err(Violation::AuthFailed);
                }
                self.state = State::Authenticating { auth_ok: true };
                Ok(())
            }
            (
                State::Authenticating { auth_ok: true },
                Body::StatusResponse {
                    status,
                    credits,
                    keepalive_ms,
                },
            ) => {
                self.expect_credits(&msg, 1)?;
                if status != Status::Success {
                    return Err(Violation::PeerTerminated(status));
                }
                if credits == 0 || credits > self.config.max_credits {
                    return Err(Violation::CreditRange);
                }
                self.ledger.on_reply(1, 1)?;
                self.ledger = ClientLedger::new(credits, self.config.max_credits);
                if keepalive_ms > 0 {
                    self.keepalive_interval = Duration::from_millis(u64::from(keepalive_ms));
                }
                self.state = State::Open;
                self.timers.stop(TIMER_AUTH);
                self.authenticated = Some(credits);
                Ok(())
            }
            (State::Open, body) => self.open_message(&msg, body),
            _ => Err(Violation::UnexpectedMessage(opcode)),
        }
    }

    fn expect_credits(&self, msg: &Message<'_>, expected: u16) -> Result<(), Violation> {
        if msg.credits == expected {
            Ok(())
        } else {
            Err(Violation::CreditMismatch {
                expected,
                found: msg.credits,
            })
        }
    }

    fn open_message(&mut self, msg: &Message<'_>, body: Body<'_>) -> Result<(), Violation> {
        let opcode = msg.opcode();
        if let Body::CreditRequest { delta } = body {
            self.expect_credits(msg, 0)?;
            self.ledger.on_credit_request(delta)?;
            let counter = if delta > 0 {
                &mut self.stats.credits_granted
            } else {
                &mut self.stats.credits_revoked
            };
            ConnectionStats::add(counter, u64::from(delta.unsigned_abs()));
            return Ok(());
        }
        if let Body::CreditResponse = body {
            return self.ledger.on_credit_response(msg.credits);
        }
        let index = self
            .find(msg.request_id)
            .ok_or(Violation::UnknownRequest(msg.request_id))?;
        let op = self
            .ops
            .get_mut(index)
            .ok_or(Violation::UnknownRequest(msg.request_id))?;
        if op.stage != Stage::Sent || op.unanswered == 0 {
            return Err(Violation::UnknownRequest(msg.request_id));
        }
        if msg.credits != 1 {
            return Err(Violation::CreditMismatch {
                expected: 1,
                found: msg.credits,
            });
        }
        match (&op.kind, body) {
            (
                OpKind::Register { .. },
                Body::RegisterFileCompletion {
                    status,
                    handle,
                    size,
                },
            ) => {
                op.status = status;
                op.registered = (status == Status::Success).then_some(RemoteFile { handle, size });
                op.final_seen = true;
            }
            (OpKind::Close { .. } | OpKind::Cancel { .. }, Body::Completion { status, bytes }) => {
                op.status = status;
                op.bytes = bytes;
                op.final_seen = true;
            }
            (
                OpKind::Write { .. } | OpKind::WriteV { .. },
                Body::Completion {
                    status: Status::Success,
                    bytes,
                },
            ) => {
                // An intermediate fragment's answer: it returns that
                // fragment's credit and says how much arrived.
                if bytes > u64::from(op.sent) {
                    return Err(Violation::FragmentOutOfOrder);
                }
            }
            (OpKind::Interrupt, Body::InterruptResponse) => op.final_seen = true,
            (OpKind::Keepalive, Body::KeepaliveResponse) => {
                op.final_seen = true;
                ConnectionStats::add(&mut self.stats.keepalives_answered, 1);
            }
            _ => return Err(Violation::UnexpectedMessage(opcode)),
        }
        op.unanswered = op.unanswered.saturating_sub(1);
        self.ledger.on_reply(1, 1)?;
        self.settle(index)
    }

    #[inline(always)]
    fn status_block(&mut self, block: StatusBlock) -> Result<(), Violation> {
        if self.state != State::Open {
            return Err(Violation::UnknownRequest(block.request_id));
        }
        let index = self
            .find(block.request_id)
            .ok_or(Violation::UnknownRequest(block.request_id))?;
        let op = self
            .ops
            .get_mut(index)
            .ok_or(Violation::UnknownRequest(block.request_id))?;
        if !op.kind.is_data() || op.stage != Stage::Sent || op.final_seen {
            return Err(Violation::UnknownRequest(block.request_id));
        }
        // The block returns the credits of the messages the server had not
        // answered; answers to earlier fragments may still be on their way.
        if block.credits > op.unanswered {
            return Err(Violation::CreditMismatch {
                expected: op.unanswered,
                found: block.credits,
            });
        }
        let store = self.segments.get(index).unwrap_or(&SegmentStore::EMPTY);
        let wanted = match &op.kind {
            OpKind::Read { dest, .. } => u64::from(dest.len()),
            OpKind::ReadV { .. } => store
                .get::<ReadSegment>()
                .iter()
                .map(|s| u64::from(s.dest().len()))
                .sum(),
            OpKind::WriteV { .. } => store
                .get::<WriteSegment>()
                .iter()
                .map(|s| u64::from(s.len()))
                .sum(),
            OpKind::Write { total, .. } => u64::from(*total),
            _ => 0,
        };
        if block.bytes > wanted {
            return Err(Violation::BadDescriptor);
        }
        op.unanswered = op.unanswered.saturating_sub(block.credits);
        op.final_seen = true;
        op.status = block.status;
        op.bytes = block.bytes;
        let id = op.id;
        // A write the server completed early (cancelled, failed) stops
        // streaming; reads were never in the streaming queue.
        if op.kind.write_total().is_some_and(|total| op.sent < total) {
            op.stop_sending = true;
            remove_from(&mut self.streaming, id);
        }
        self.ledger.on_reply(block.credits, block.credits)?;
        self.settle(index)
    }

    /// Report op `index` once its final answer and every fragment answer
    /// arrived.
    #[inline(always)]
    fn settle(&mut self, index: usize) -> Result<(), Violation> {
        let Some(op) = self.ops.get_mut(index) else {
            return Ok(());
        };
        if !op.final_seen || op.unanswered > 0 {
            return Ok(());
        }
        op.stage = Stage::Done;
        if op.kind.is_internal() {
            self.ops.remove(index);
            self.internal_in_flight = self.internal_in_flight.saturating_sub(1);
            return Ok(());
        }
        let id = op.id;
        self.done.push_back(id).map_err(|_| Violation::Capacity)
    }

    // ----- outputs -----

    /// Encode the next send into `buf` (at least the negotiated send size
    /// is always enough). `Ok(None)`: nothing can be sent now (nothing
    /// queued, or waiting for credits).
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<Option<Transmit>, InsufficientSize> {
        if let Some(status) = self.terminate {
            let msg = Message {
                flags: Flags::empty(),
                credits: 0,
                request_id: 0,
                body: Body::Terminate { reason: status },
            };
            let len = msg.emit(buf)?;
            self.terminate = None;
            return Ok(Some(Transmit { len, data: None }));
        }
        match self.state {
            State::Closed => return Ok(None),
            State::Authenticating { .. } => {
                if !self.auth_queued {
                    return Ok(None);
                }
                let msg = Message {
                    flags: Flags::empty(),
                    credits: self.ledger.level(),
                    request_id: 0,
                    body: Body::AuthRequest {
                        key: self.negotiated.auth_key,
                    },
                };
                let len = msg.emit(buf)?;
                self.auth_queued = false;
                let _ = self.ledger.send_request();
                return Ok(Some(Transmit { len, data: None }));
            }
            State::Open => {}
        }
        let transmit = self.credit_transmit(buf)?;
        let transmit = match transmit {
            Some(t) => Some(t),
            None => self.request_transmit(buf)?,
        };
        if transmit.is_some() {
            self.rearm(now);
        }
        Ok(transmit)
    }

    fn credit_transmit(&mut self, buf: &mut [u8]) -> Result<Option<Transmit>, InsufficientSize> {
        if let Some(delta) = self.ledger.ack_owed() {
            let msg = Message {
                flags: Flags::empty(),
                credits: 0,
                request_id: 0,
                body: Body::CreditAck { delta },
            };
            check_room(msg.encoded_len(), buf)?;
            if let Some((delta, credits)) = self.ledger.send_ack() {
                let msg = Message {
                    credits,
                    body: Body::CreditAck { delta },
                    ..msg
                };
                return Ok(Some(Transmit {
                    len: msg.emit(buf)?,
                    data: None,
                }));
            }
        }
        if self.ledger.give_ups_owed() > 0 {
            let msg = Message {
                flags: Flags::empty(),
                credits: 0,
                request_id: 0,
                body: Body::CreditGiveUp,
            };
            check_room(msg.encoded_len(), buf)?;
            if let Some(credits) = self.ledger.send_give_up() {
                return Ok(Some(Transmit {
                    len: Message { credits, ..msg }.emit(buf)?,
                    data: None,
                }));
            }
        }
        Ok(None)
    }

    #[inline(always)]
    fn request_transmit(&mut self, buf: &mut [u8]) -> Result<Option<Transmit>, InsufficientSize> {
        if self.ledger.available() == 0 {
            if let Some(&id) = self.streaming.front().or(self.unsent.front()) {
                self.stats.credit_wait(id);
            }
            return Ok(None);
        }
        // Fragments of writes under way before new requests: a started write
        // finishes as soon as possible and releases its buffers.
        let (id, continuing) = match (self.streaming.front(), self.unsent.front()) {
            (Some(&id), _) => (id, true),
            (None, Some(&id)) => (id, false),
            (None, None) => return Ok(None),
        };
        let Some(index) = self.find(id) else {
            // Stale queue entry (cannot happen: entries leave with their op).
            if continuing {
                self.streaming.pop_front()
            } else {
                self.unsent.pop_front()
            };
            return Ok(None);
        };
        let max_send = self.negotiated.max_send_size as usize;
        let level = self.ledger.level();
        let Some(op) = self.ops.get(index) else {
            return Ok(None);
        };
        // Only the prefix is encoded into `buf`; the data is gathered by the
        // driver, so the fragment size depends on the send size alone.
        let (len, data_len) = match op.kind {
            // The I/O path's most frequent request, encoded straight from
            // the op (the same bytes `build` + `emit_prefix` would give).
            OpKind::Read {
                handle,
                offset,
                dest,
            } => {
                let flags = if op.interrupt {
                    Flags::INTERRUPT
                } else {
                    Flags::empty()
                };
                let read = ReadRequest {
                    handle,
                    offset,
                    dest,
                    status: op.status_desc,
                };
                (emit_read(buf, flags, level, id, &read)?, 0)
            }
            _ => {
                let segments = self.segments.get(index).unwrap_or(&SegmentStore::EMPTY);
                let (msg, data_len) = build(op, segments, level, max_send);
                // Checks the room before writing anything.
                let len = msg.emit_prefix(buf)?;
                add_payload_len(buf, data_len);
                (len, data_len)
            }
        };
        let _ = self.ledger.send_request();
        let Some(op) = self.ops.get_mut(index) else {
            return Ok(None);
        };
        let data = (data_len > 0).then_some(DataRef {
            request: RequestId(id),
            offset: op.sent,
            len: data_len,
        });
        op.sent = op.sent.saturating_add(data_len);
        op.unanswered = op.unanswered.saturating_add(1);
        if op.kind.is_internal() && op.stage == Stage::Queued {
            self.internal_in_flight = self.internal_in_flight.saturating_add(1);
        }
        op.stage = Stage::Sent;
        let more = op.kind.write_total().is_some_and(|total| op.sent < total);
        if continuing {
            if !more {
                self.streaming.pop_front();
            }
        } else {
            self.unsent.pop_front();
            if more {
                // Capacity R holds every op: cannot fail.
                let _ = self.streaming.push_back(id);
            }
        }
        Ok(Some(Transmit { len, data }))
    }

    /// The next completion for the caller.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        if let Some(credits) = self.authenticated.take() {
            return Some(ClientEvent::Authenticated { credits });
        }
        while let Some(id) = self.done.pop_front() {
            let Some(index) = self.find(id) else { continue };
            let Some(op) = self.ops.get(index) else {
                continue;
            };
            let request = RequestId(op.id);
            let event = match op.kind {
                OpKind::Register { .. } => ClientEvent::Registered {
                    request,
                    result: op.registered.ok_or(op.status),
                },
                OpKind::Interrupt if op.status == Status::Success => {
                    ClientEvent::Interrupted { request }
                }
                _ => ClientEvent::Completed {
                    request,
                    status: op.status,
                    bytes: op.bytes,
                },
            };
            self.ops.remove(index);
            return Some(event);
        }
        self.terminated
            .take()
            .map(|reason| ClientEvent::Terminated { reason })
    }

    /// The earliest deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Run expired timers: authentication and dead-peer deadlines end the
    /// connection (`TimedOut`); an idle connection sends a keepalive.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.timers.expired(TIMER_AUTH, now) || self.timers.expired(TIMER_DEAD, now) {
            self.fail(Violation::TimedOut);
            return;
        }
        if self.timers.expired(TIMER_KEEPALIVE, now) {
            self.timers.stop(TIMER_KEEPALIVE);
            if self.ops.is_empty()
                && self
                    .submit(
                        OpKind::Keepalive,
                        BufferDescriptor::default(),
                        CompletionMode::Interrupt,
                    )
                    .is_ok()
            {
                ConnectionStats::add(&mut self.stats.keepalives, 1);
            }
            self.rearm(now);
        }
    }

    /// End the connection in an orderly way (`Terminate(Shutdown)`);
    /// outstanding requests complete `Closed`.
    pub fn close_connection(&mut self) {
        if self.state != State::Closed {
            self.end(
                Violation::PeerTerminated(Status::Shutdown),
                Some(Status::Shutdown),
            );
        }
    }

    /// Tell the core the transport failed (a work completion error, a lost
    /// connection): outstanding requests complete with `Closed`.
    pub fn transport_failed(&mut self) {
        if self.state != State::Closed {
            self.end(Violation::PeerTerminated(Status::Closed), None);
        }
    }

    fn rearm(&mut self, now: Instant) {
        if self.state != State::Open {
            return;
        }
        let internal = self
            .internal_in_flight
            .saturating_add(self.ledger.responses_awaited());
        if internal == 0 {
            self.internal_since = None;
        } else if self.internal_since.is_none() || internal < self.internal_seen {
            self.internal_since = Some(now);
        }
        self.internal_seen = internal;
        if self.ledger.in_use() > 0 {
            // Silence ends the connection; so does a keepalive, cancel or
            // credit message left unanswered while other answers arrive:
            // its answer was lost, and no caller's wait would notice.
            let heard = self
                .internal_since
                .map_or(self.last_heard, |since| since.min(self.last_heard));
            self.timers.set(
                TIMER_DEAD,
                heard.saturating_add(self.config.dead_peer_timeout),
            );
            self.timers.stop(TIMER_KEEPALIVE);
        } else {
            self.timers.stop(TIMER_DEAD);
            if self.timers.get(TIMER_KEEPALIVE).is_none() {
                self.timers
                    .set(TIMER_KEEPALIVE, now.saturating_add(self.keepalive_interval));
            }
        }
    }

    fn fail(&mut self, violation: Violation) {
        if self.state != State::Closed {
            debug!("client terminates: {:?}", violation);
            let send = match violation {
                Violation::PeerTerminated(_) => None,
                v => Some(v.wire_status()),
            };
            self.end(violation, send);
        }
    }

    /// Close for good: every request not yet reported completes with the
    /// reason's status (exactly once), then `Terminated`.
    fn end(&mut self, reason: Violation, send: Option<Status>) {
        self.state = State::Closed;
        self.timers.clear();
        self.terminate = send;
        self.unsent.clear();
        self.streaming.clear();
        let status = match reason {
            Violation::PeerTerminated(Status::Shutdown) => Status::Closed,
            v => v.wire_status(),
        };
        self.ops.retain(|op| !op.kind.is_internal());
        self.done.clear();
        for op in self.ops.iter_mut() {
            if op.stage != Stage::Done {
                op.stage = Stage::Done;
                op.status = status;
                op.registered = None;
            }
            // Capacity R holds every op.
            let _ = self.done.push_back(op.id);
        }
        self.terminated = Some(reason);
    }

    fn find(&self, id: u32) -> Option<usize> {
        self.ops.find(id)
    }
}

/// The message for the next send of `op` (its request, or its next write
/// fragment) and how many data bytes ride after the prefix.
fn build<'a>(
    op: &'a Op,
    segments: &'a SegmentStore,
    credits: u16,
    max_send: usize,
) -> (Message<'a>, u32) {
    let flags = if op.interrupt && op.kind.is_data() {
        Flags::INTERRUPT
    } else {
        Flags::empty()
    };
    let mut msg = Message {
        flags,
        credits,
        request_id: op.id,
        body: Body::Keepalive,
    };
    let room = |prefix: usize, remaining: u32| -> u32 {
        let room = u32::try_from(max_send.saturating_sub(prefix)).unwrap_or(u32::MAX);
        remaining.min(room)
    };
    if op.sent > 0 {
        // A continuation fragment.
        msg.flags = Flags::empty();
        msg.body = Body::WriteData {
            data_offset: op.sent,
            data: &[],
        };
        let remaining = op.kind.write_total().unwrap_or(0).saturating_sub(op.sent);
        let data_len = room(msg.prefix_len(), remaining);
        return (msg, data_len);
    }
    let status = op.status_desc;
    msg.body = match &op.kind {
        OpKind::Register { key } => Body::RegisterFile { key: *key },
        OpKind::Read {
            handle,
            offset,
            dest,
        } => Body::Read(ReadRequest {
            handle: *handle,
            offset: *offset,
            dest: *dest,
            status,
        }),
        OpKind::ReadV { handle } => Body::ReadV(ReadVRequest {
            handle: *handle,
            status,
            segments: segments.get(),
        }),
        OpKind::Write {
            handle,
            offset,
            total,
        } => Body::Write(WriteRequest {
            handle: *handle,
            offset: *offset,
            total_len: *total,
            status,
            data: &[],
        }),
        OpKind::WriteV {
            handle,
            collapse,
            total,
        } => {
            if *collapse {
                msg.flags |= Flags::COLLAPSE;
            }
            Body::WriteV(WriteVRequest {
                handle: *handle,
                total_len: *total,
                status,
                segments: segments.get(),
                data: &[],
            })
        }
        OpKind::Cancel { target } => Body::Cancel { target: *target },
        OpKind::Close { handle } => Body::Close { handle: *handle },
        OpKind::Interrupt => Body::InterruptRequest,
        OpKind::Keepalive => Body::Keepalive,
    };
    let data_len = op
        .kind
        .write_total()
        .map_or(0, |total| room(msg.prefix_len(), total));
    (msg, data_len)
}

/// The prefix was encoded with empty data; count the data that the driver
/// gathers after it in the header's payload length (bytes 12..16, LE).
fn add_payload_len(buf: &mut [u8], data_len: u32) {
    if let Some(field) = buf.get_mut(12..16) {
        let mut le = [0u8; 4];
        le.copy_from_slice(field);
        let len = u32::from_le_bytes(le).saturating_add(data_len);
        field.copy_from_slice(&len.to_le_bytes());
    }
}

/// Header + fixed payload + `count` segments of `segment` bytes.
fn prefix_size(fixed: usize, segment: usize, count: usize) -> usize {
    crate::wire::header::HEADER_LEN
        .saturating_add(fixed)
        .saturating_add(segment.saturating_mul(count))
}

fn check_room(required: usize, buf: &[u8]) -> Result<(), InsufficientSize> {
    if buf.len() < required {
        Err(InsufficientSize { required })
    } else {
        Ok(())
    }
}

fn remove_from<const N: usize>(queue: &mut Fifo<u32, N>, id: u32) {
    let before = core::mem::take(queue);
    for entry in before {
        if entry != id {
            // No longer than before: cannot fail.
            let _ = queue.push_back(entry);
        }
    }
}
