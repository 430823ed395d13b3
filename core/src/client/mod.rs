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
//!
//! A request id names the request's slot in the client's table
//! ([`Client::slot_of`]; `docs/PROTOCOL.md`, "Request ids"), so an answer
//! finds its request without a search, and a stale or forged id is refused
//! ([`Violation::UnknownRequest`]), never taken for another request. A
//! driver that takes completions as they happen calls
//! [`Client::take_status_block`] instead of `handle_status_block`: the
//! completion a status block brings comes back from that call
//! ([`BlockOutcome::Completed`]) instead of through `poll_event`. A driver
//! that posts as it submits calls [`Client::read_into`] instead of `read`
//! (and [`Client::write_into`] instead of `write`): a read (a write's first
//! fragment) that can go first is encoded in that call and comes back with
//! its [`Transmit`], with no queue entry and no `poll_transmit`.
//!
//! # Modules, one per phase (as quinn-proto splits `connection/`)
//!
//! * [`discovery`]: the pipe's negotiation (claims 8, 13, 23);
//! * `submit`: requests entering the client (claims 10, 11, 15–17, 21);
//! * `receive`: received sends and status blocks, authentication replies,
//!   credit grants and revokes, completions (claims 1, 6, 7, 11–14, 16,
//!   18–22);
//! * `transmit`: the next send, credit answers first (claims 1, 7, 22);
//! * `timers`: authentication, dead-peer and keepalive deadlines;
//! * `termination`: close, transport failure, violations.
//!
//! This file holds the types they share: the configuration, the events, the
//! request table's entries and the [`Client`] itself.

pub mod discovery;

mod receive;
mod submit;
mod termination;
mod timers;
mod transmit;

pub use discovery::{DiscoveryError, Negotiated, negotiate_request, negotiated};

use crate::credit::ClientLedger;
use crate::error::{ApiError, Violation};
use crate::queue::SlotQueue;
use crate::segments::SegmentStore;
use crate::slots::SlotTable;
use crate::stats::ConnectionStats;
use crate::time::{Instant, TimerTable, micros};
use crate::wire::message::{
    READ_MESSAGE_LEN, WRITE_PREFIX_LEN, emit_read, emit_read_fields, emit_write_prefix,
};
use crate::wire::status::STATUS_BLOCK_LEN;
use crate::wire::{
    Body, BufferDescriptor, Capabilities, Flags, InsufficientSize, MAX_BATCH, MAX_SEGMENTS,
    Message, ProviderList, ReadRequest, ReadSegment, ReadVRequest, ResumeKey, Status, StatusBlock,
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
    /// negotiate request). With [`Capabilities::READ_BATCH`] granted,
    /// reads queued together go out as one `ReadBatch` (see
    /// [`Client::batch_members`]).
    pub capabilities: Capabilities,
    /// The largest read, in bytes, that joins a read batch; a larger read
    /// always goes as its own `Read` (a read batch of smaller reads ends
    /// before it). Batching saves a request send and an immediate per
    /// read, which is most of a small read's cost and nothing next to a
    /// large read's data; and large reads measured slower batched than
    /// alone (the batched file-backed loop too, data left in place, so
    /// the batch's shape and not only the copy-out costs it; why exactly
    /// was not traced). 0: no read joins a batch. Default
    /// [`DEFAULT_MAX_BATCHED_READ`].
    pub max_batched_read: u32,
}

/// [`ClientConfig::max_batched_read`]'s default, 256 KiB, measured over
/// fabric tcp on 127.0.0.1 (`rdio bench --server ... --file-baseline`,
/// reads copied out, ratios to the file-backed shaped loop `file_rd`,
/// three alternated runs each with and without `--no-read-batches`):
/// 4 KiB reads at queue depth 32 reach 1.7-2.1 batched against 1.0 alone,
/// 64-256 KiB ones about the same either way, but 512 KiB and 1 MiB ones
/// at depth 32 reach only 0.67-0.95 and 0.76-0.87 batched against
/// 1.0-1.4 and 0.94-0.99 alone.
pub const DEFAULT_MAX_BATCHED_READ: u32 = 256 * 1024;

/// The reads of one read batch, by request id, in the order sent
/// ([`Client::batch_members`]).
pub type BatchMembers = heapless::Vec<RequestId, MAX_BATCH>;

/// A read batch sent from the slot of its first read: the batch's id (its
/// first read's) and its reads.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct BatchRecord {
    id: u32,
    members: BatchMembers,
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
            max_batched_read: DEFAULT_MAX_BATCHED_READ,
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

/// What a status block did ([`Client::take_status_block`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum BlockOutcome {
    /// The block is not written yet (its `valid` word is zero): keep
    /// polling, or look again after the next completion with immediate
    /// data.
    NotWritten,
    /// The block was taken; its request finishes later, through
    /// [`Client::poll_event`] (a write whose earlier fragments' answers are
    /// still on their way).
    Taken,
    /// The block finished its request: the completion, handed over here
    /// and not queued for [`Client::poll_event`].
    Completed(ClientEvent),
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
    /// Sent in a read batch: with `interrupt`, its block comes with the
    /// batch's immediate ([`Client::take_batch_block`]), never its own.
    batched: bool,
    status: Status,
    bytes: u64,
    registered: Option<RemoteFile>,
}

impl Op {
    /// A request just submitted: queued, nothing sent or answered yet.
    fn new(kind: OpKind, status_desc: BufferDescriptor, interrupt: bool) -> Self {
        Self {
            kind,
            status_desc,
            interrupt,
            stage: Stage::Queued,
            sent: 0,
            unanswered: 0,
            final_seen: false,
            stop_sending: false,
            batched: false,
            status: Status::Success,
            bytes: 0,
            registered: None,
        }
    }
}

/// The header flags of a data request completed in interrupt mode or not
/// (claims 18–20).
fn interrupt_flags(interrupt: bool) -> Flags {
    if interrupt {
        Flags::INTERRUPT
    } else {
        Flags::empty()
    }
}

const TIMER_AUTH: usize = 0;
/// The dead-peer and keepalive deadlines are not in the table: they follow
/// from `last_heard`, `internal_since` and `idle_since` (`timers`), which
/// spares the request path a deadline computation per send and per answer.
const TIMERS: usize = 1;

/// One RDMA connection's client state machine, with at most `R` requests
/// outstanding (submitted and not yet reported).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Client<const R: usize = 64> {
    config: ClientConfig,
    negotiated: Negotiated,
    state: State,
    ledger: ClientLedger,
    /// The requests, each in the slot its id names.
    ops: SlotTable<Op, R>,
    /// The segments of the vectored request in the same slot of `ops`.
    segments: [SegmentStore; R],
    /// Slots of requests not yet sent, in submission order (a cancel goes
    /// first).
    unsent: SlotQueue<R>,
    /// Slots of writes with fragments still to send.
    streaming: SlotQueue<R>,
    /// Slots of finished requests not yet reported, in order.
    done: SlotQueue<R>,
    /// Read batches, each in the slot of its first read (the batch's id
    /// names that slot as any request id does).
    batches: [BatchRecord; R],
    auth_queued: bool,
    authenticated: Option<u16>,
    /// The `Terminate` to send, queued only by `end` as the state becomes
    /// `Closed` (which it never leaves): `None` while the state is `Open`.
    terminate: Option<Status>,
    terminated: Option<Violation>,
    /// The keepalive interval in microseconds (the server's, once stated).
    keepalive_micros: u64,
    /// `config.dead_peer_timeout` in microseconds (converted once, not per
    /// request).
    dead_micros: u64,
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
    /// Since when no message has been outstanding (the keepalive interval
    /// runs from here); `None` while any is, or before authentication.
    idle_since: Option<Instant>,
    timers: TimerTable<TIMERS>,
    /// Credit, credit-wait and keepalive counters ([`Client::stats`]).
    stats: ConnectionStats,
    /// All ones if the session negotiated
    /// [`Capabilities::CREDIT_DEMAND`], else zero: a request's header
    /// carries its demand masked with it (no branch per request).
    demand_mask: u16,
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
        let keepalive_micros = micros(config.keepalive_interval);
        let dead_micros = micros(config.dead_peer_timeout);
        let demand_mask = if negotiated
            .capabilities
            .contains(Capabilities::CREDIT_DEMAND)
        {
            u16::MAX
        } else {
            0
        };
        Self {
            demand_mask,
            config,
            negotiated,
            state: State::Authenticating { auth_ok: false },
            ledger: ClientLedger::new(credits, max),
            ops: SlotTable::new(),
            segments: [const { SegmentStore::EMPTY }; R],
            unsent: SlotQueue::new(),
            streaming: SlotQueue::new(),
            done: SlotQueue::new(),
            batches: [const {
                BatchRecord {
                    id: 0,
                    members: heapless::Vec::new(),
                }
            }; R],
            auth_queued: true,
            authenticated: None,
            terminate: None,
            terminated: None,
            keepalive_micros,
            dead_micros,
            last_heard: now,
            internal_in_flight: 0,
            internal_since: None,
            internal_seen: 0,
            idle_since: None,
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

    /// The configuration this client was made with (a driver that holds
    /// reads back to batch them asks [`ClientConfig::max_batched_read`]
    /// here: a larger read goes alone anyway).
    pub fn config(&self) -> &ClientConfig {
        &self.config
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

    /// Whether a `Terminate` is queued and not yet handed to the driver by
    /// [`Client::poll_transmit`]: a driver closing the connection keeps
    /// transmitting until this is `false` and its sends have completed,
    /// so the server learns why the connection ends.
    pub fn terminate_pending(&self) -> bool {
        self.terminate.is_some()
    }

    /// Requests submitted and not yet reported, internal ones included.
    pub fn outstanding(&self) -> usize {
        self.ops.len()
    }

    /// Whether `request` is a data request in polling mode awaiting its
    /// status block (so the driver knows which blocks to poll). A request
    /// in interrupt mode is not: its block is taken at its immediate (a
    /// read batch's blocks only at the batch's).
    pub fn awaits_status_block(&self, request: RequestId) -> bool {
        self.find(request.0)
            .and_then(|i| self.ops.get(i))
            .is_some_and(|op| {
                op.kind.is_data() && !op.interrupt && op.stage == Stage::Sent && !op.final_seen
            })
    }

    /// The slot of the request table that outstanding `request` occupies
    /// (`0..R`), or `None` when it is not outstanding. A request id names
    /// its slot (`id % R`, the generation in the rest: `docs/PROTOCOL.md`,
    /// "Request ids"), so a driver can keep its own per-request state in an
    /// array of `R` entries indexed by this.
    pub fn slot_of(&self, request: RequestId) -> Option<usize> {
        self.find(request.0)
    }

    fn find(&self, id: u32) -> Option<usize> {
        self.ops.find(id)
    }

    /// The reads of the read batch whose immediate is `immediate` (the
    /// batch's id, its first read's), while that read is outstanding;
    /// `None` when the immediate names no batch (a single request's
    /// completion). A driver hands each member's status block to
    /// [`Client::take_batch_block`]: the server wrote every one of them
    /// before the immediate.
    pub fn batch_members(&self, immediate: u32) -> Option<BatchMembers> {
        let slot = self.find(immediate)?;
        let record = self.batches.get(slot)?;
        (record.id == immediate && !record.members.is_empty()).then(|| record.members.clone())
    }
}
