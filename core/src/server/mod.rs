//! The server side: the side-channel [`Registry`] (resume keys, negotiation,
//! authentication keys, opened files) and one [`Connection`] state machine per
//! RDMA connection.
//!
//! # Driving a connection
//!
//! The driver owns the transport and the files. For every receive completion
//! it calls [`Connection::handle_message`]; write data comes back borrowed from
//! the receive buffer ([`WriteChunk`]) so the driver can `pwrite` it without a
//! copy. Then it drains, in this order until each returns `None`:
//! 1. [`Connection::poll_event`] — authenticate, register, read, close-file
//!    and termination requests for the driver, answered with
//!    [`Connection::accept_auth`] / [`Connection::reject_auth`],
//!    [`Connection::complete_register`] and [`Connection::complete_io`];
//! 2. [`Connection::poll_transmit`] — sends and status-block RDMA writes to
//!    post, in order (a read's data writes are posted by the driver before it
//!    calls `complete_io`, so they precede the status block on the wire);
//! 3. [`Connection::poll_timeout`] — when to call
//!    [`Connection::handle_timeout`].
//!
//! The driver keeps [`Connection::receive_depth`] receives posted and reposts
//! each after `handle_message` returns (and the write data was consumed).
//!
//! One pass per read: [`Connection::take_message`] hands a Read to the
//! driver as it arrives ([`Received::Read`]) when no earlier work waits,
//! and [`Connection::complete_io_into`] encodes its status block into the
//! driver's buffer as it completes, when no output waits before it; either
//! falls back to the queues above otherwise, so the order of events and of
//! output is the same on both paths.
//!
//! # Modules, one per phase (as quinn-proto splits `connection/`)
//!
//! * `registry`: the side channel's sessions, keys and opened files
//!   (claims 8, 10, 13, 23);
//! * `receive`: received sends, checked and dispatched (claims 12, 15, 22);
//! * `auth`: the driver's verdict and the starting credits (claims 12–14);
//! * `credits`: grants and revokes towards the driver's target (claims 1, 6,
//!   7, 23);
//! * `handles`: registration, cancel and close (claims 10, 11, 15);
//! * `io`: reads, writes and their status blocks (claims 1, 15–20);
//! * `output`: events and transmits, drained by the driver;
//! * `timers`: authentication and idle deadlines;
//! * `termination`: close, violations, lost transport.
//!
//! This file holds the types they share: the configuration, the events, the
//! request table's entries and the [`Connection`] itself.

mod registry;

mod auth;
mod credits;
mod handing;
mod handles;
mod io;
mod output;
mod receive;
mod termination;
mod timers;

pub use registry::{FileEntry, Registry, RegistryError, ServerOffer, SessionId, SessionParams};

use crate::credit::ServerLedger;
use crate::error::{ApiError, Violation};
use crate::queue::Fifo;
use crate::segments::SegmentStore;
use crate::stats::ConnectionStats;
use crate::table::{OpTable, Refused};
use crate::time::{Instant, TimerTable, micros};
use crate::wire::message::{
    READ_PAYLOAD_LEN, ReadFields, parse_read_batch_fields, parse_read_fields,
};
use crate::wire::status::{STATUS_BLOCK_LEN, StatusBlock};
use crate::wire::{
    AuthKey, BatchRead, Body, BufferDescriptor, Capabilities, Flags, InsufficientSize,
    MAX_SEGMENTS, Message, OpenFlags, ReadSegment, ResumeKey, Status, WriteSegment,
};
use core::time::Duration;
use handing::{Handed, Handing};
use zerocopy::little_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Server-side limits and policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ServerConfig {
    /// Credits a client starts with (capped by what it asks for). The
    /// default grants `max_credits` at once, so a client starts at its
    /// full queue depth; the credit policy ([`ServerConfig::credit_window`])
    /// then takes back what it does not use. A server rationing credits
    /// across clients lowers it and steers each connection with
    /// [`Connection::set_credit_target`].
    pub initial_credits: u16,
    /// Most credits a client may hold. Also bounds the work table.
    pub max_credits: u16,
    /// Fewest credits a revoke may leave (at least 1: zero would deadlock).
    pub min_credits: u16,
    /// Largest message either side sends.
    pub max_send_size: u32,
    /// Largest read or write.
    pub max_io_size: u32,
    /// Time from connection to authentication.
    pub auth_timeout: Duration,
    /// Silence after which a client is considered dead.
    pub idle_timeout: Duration,
    /// Interval at which the client should send keepalives when idle.
    pub keepalive_interval: Duration,
    /// The credit policy's window: credits follow the demand the client's
    /// requests state ([`Capabilities::CREDIT_DEMAND`]). A demand above
    /// the level is granted to twice the demand, up to the ceiling (the
    /// session's level, or the one [`Connection::set_credit_target`] set),
    /// at the next [`Connection::review_credits`]; a window whose highest
    /// demand is at most a quarter of the level ends with a revoke to
    /// twice that demand (never below two, nor `min_credits`). The driver
    /// posts receives for the credits granted only
    /// ([`Connection::receives_wanted`]), so a client at queue depth 1
    /// keeps four receives in rotation, which stay in the cache, instead
    /// of `max_credits + 2` (with 1 MiB sends, 66 MiB touched in turn:
    /// 10–15 % of a 1 MiB write over libfabric tcp, see
    /// `docs/PERFORMANCE.md`, stop 46). `None`, or a session without the
    /// capability: credits stay where the session or
    /// [`Connection::set_credit_target`] put them.
    pub credit_window: Option<Duration>,
    /// The protocol extensions this server offers; a negotiation grants
    /// the intersection with the client's (`docs/PROTOCOL.md`, "Extending
    /// rdio"). The core implements [`Capabilities::READ_BATCH`] and
    /// [`Capabilities::CREDIT_DEMAND`], both offered by default.
    pub capabilities: Capabilities,
}

impl Default for ServerConfig {
    /// Defaults modelled on SMB Direct (MS-SMBD §3.1.1.1: 255 receive
    /// credits, 1364-byte sends, 5 s negotiate timeout, 120 s keepalive) and
    /// on ksmbd/cifs keepalive practice, adjusted for rdio's larger sends.
    fn default() -> Self {
        Self {
            initial_credits: 64,
            max_credits: 64,
            min_credits: 1,
            max_send_size: 64 * 1024,
            max_io_size: 8 * 1024 * 1024,
            auth_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            keepalive_interval: Duration::from_secs(20),
            credit_window: Some(Duration::from_millis(20)),
            capabilities: Capabilities::READ_BATCH.union(Capabilities::CREDIT_DEMAND),
        }
    }
}

/// The driver's name for an open file (an index into its file table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FileId(pub u64);

/// A request the driver is working on (the client's request id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct OpId(pub u32);

/// What the driver resolved a registration to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Registration {
    /// The driver's open file.
    pub file: FileId,
    /// The mode it was opened with on the side channel.
    pub flags: OpenFlags,
    /// Its size now.
    pub size: u64,
}

/// Work for the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerEvent<'a> {
    /// The client presented `key`: look it up (single use) in the
    /// [`Registry`] and call [`Connection::accept_auth`] or
    /// [`Connection::reject_auth`].
    Authenticate {
        /// The presented key.
        key: AuthKey,
    },
    /// Register the file opened under resume key `key` (claims 10, 11);
    /// answer with [`Connection::complete_register`].
    Register {
        /// The request.
        op: OpId,
        /// The file's resume key.
        key: ResumeKey,
    },
    /// Read each segment's `dest.len()` bytes at its file offset and
    /// RDMA-write them into `dest` (claim 16), then call
    /// [`Connection::complete_io`] with the total. Every segment lies
    /// within the offsets a file can have (its offset plus its length at
    /// most `i64::MAX`): the core answers any other read
    /// `InvalidParameter` itself.
    Read {
        /// The request.
        op: OpId,
        /// The file.
        file: FileId,
        /// One segment for a read, up to [`MAX_SEGMENTS`] for a vectored read.
        segments: &'a [ReadSegment],
    },
    /// The client closed `file` and no I/O on it is in flight: finish it
    /// (an upload is put in its name's place now) and release it, then
    /// answer with [`Connection::complete_close`]; the client's close
    /// completes with that status, so a file that could not be finished
    /// is reported, not acknowledged.
    Close {
        /// The request.
        op: OpId,
        /// The file.
        file: FileId,
    },
    /// Release `file` without finishing it: the core resolved a
    /// registration it could not give a handle to. (After
    /// [`ServerEvent::Terminated`] neither this nor [`ServerEvent::Close`]
    /// follows: the driver releases all files registered on the connection
    /// itself, unfinished.)
    CloseFile {
        /// The file.
        file: FileId,
    },
    /// The connection ended; drain transmits (a `Terminate` may be queued),
    /// then disconnect and close the connection's files.
    Terminated {
        /// Why.
        reason: Violation,
    },
}

/// Write data for the driver to `pwrite`: the fragment's bytes, borrowed
/// from the receive buffer, and where each piece of them goes, borrowed
/// from the connection (it holds the map of the last fragment it handed
/// out, so a chunk is three words to pass around, not a list of pieces).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteChunk<'a> {
    /// The request: report with [`Connection::complete_io`] (bytes written,
    /// summed over all pieces).
    pub op: OpId,
    /// The file.
    pub file: FileId,
    data: &'a [u8],
    map: &'a [Piece],
}

impl<'a> WriteChunk<'a> {
    /// The (file offset, bytes) pieces, in order. A vectored write's
    /// fragment may span several segments; a COLLAPSE fragment lands at
    /// every segment (the same bytes each time).
    pub fn pieces(&self) -> impl Iterator<Item = (u64, &'a [u8])> + 'a {
        let data = self.data;
        self.map.iter().filter_map(move |piece| {
            let bytes = data.get(piece.start as usize..piece.end as usize)?;
            Some((piece.offset, bytes))
        })
    }
}

/// A write fragment inside the core, before it is handed out: the
/// connection is still borrowed mutably then, so the chunk's map is
/// attached at the API boundary ([`Connection::chunk`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Chunk<'a> {
    op: OpId,
    file: FileId,
    data: &'a [u8],
}

/// Bytes `start..end` of a write fragment's data go to file `offset`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Piece {
    offset: u64,
    start: u32,
    end: u32,
}

/// The pieces of the last write fragment handed out: scratch, rewritten
/// per fragment and read only through that fragment's [`WriteChunk`], so
/// not part of the connection's state (any two compare equal and hash
/// alike, which keeps the model checker's states what they were).
#[derive(Clone, Debug, Default)]
struct PieceMap(heapless::Vec<Piece, MAX_SEGMENTS>);

impl PartialEq for PieceMap {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for PieceMap {}

impl core::hash::Hash for PieceMap {
    fn hash<H: core::hash::Hasher>(&self, _: &mut H) {}
}

/// [`Connection::quiet`]: `true` only while nothing but a Read handed over
/// at once can be outstanding or waiting (see there). Derived from the
/// rest of the state and allowed to be `false` when it could be `true`, so
/// not part of it: any two compare equal and hash alike.
#[derive(Clone, Copy, Debug)]
struct Quiet(bool);

impl PartialEq for Quiet {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Quiet {}

impl core::hash::Hash for Quiet {
    fn hash<H: core::hash::Hasher>(&self, _: &mut H) {}
}

/// What [`Connection::take_message`] hands the driver at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Received<'a> {
    /// Nothing at once; events and transmits may be queued (drain them as
    /// after [`Connection::handle_message`]).
    Nothing,
    /// Write data, as [`Connection::handle_message`] returns it.
    Write(WriteChunk<'a>),
    /// A read to perform now, exactly as [`ServerEvent::Read`] asks (which
    /// [`Connection::poll_event`] will not return for it): RDMA-write each
    /// segment, then [`Connection::complete_io`] or
    /// [`Connection::complete_io_into`].
    Read {
        /// The request.
        op: OpId,
        /// The file.
        file: FileId,
        /// One segment for a read.
        segments: &'a [ReadSegment],
        /// The status block goes with an immediate (`INTERRUPT`) to the
        /// client memory right after the last segment's destination (same
        /// key, next address): a driver may write the last segment's data
        /// and the block as one RDMA write (docs/PROTOCOL.md, "Data and
        /// status block in one write").
        status_follows: bool,
    },
    /// A batch of reads to perform now: take each with
    /// [`Connection::next_batch_read`] (each as a [`Received::Read`]).
    Batch,
}

/// A received message, sorted before any of it is acted on.
enum Arrival<'a> {
    /// The connection is closed: messages are ignored.
    Ignored,
    /// A well-formed Read on an open connection (the fast path).
    Read(ReadFields<'a>),
    /// Anything else, for the general parser.
    Other,
}

/// What the driver must post next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Transmit {
    /// Post a send of the first `len` bytes of the buffer.
    Send {
        /// Message length.
        len: usize,
    },
    /// RDMA-write the first `len` bytes of the buffer (a status block) to
    /// `dest`, with immediate data when set (claim 20: non-polling mode).
    StatusBlock {
        /// Block length ([`STATUS_BLOCK_LEN`]).
        len: usize,
        /// Client memory named by the request.
        dest: BufferDescriptor,
        /// Immediate data (the request id) to raise a client completion.
        immediate: Option<u32>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum State {
    AwaitAuth,
    /// The auth request `request_id` arrived carrying `credits` in its
    /// header, checked once the key names the session's negotiated level.
    Authenticating {
        request_id: u32,
        credits: u16,
    },
    Open,
    Closed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Stage {
    /// Waiting in the dispatch queue for the driver.
    Queued,
    /// Handed to the driver, not completed.
    Dispatched,
    /// A write still receiving fragments (and possibly with pieces in flight).
    Receiving,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum OpKind {
    Register {
        key: ResumeKey,
    },
    /// Segments in the slot's [`SegmentStore`]; `wanted` bytes in all.
    Read {
        wanted: u64,
    },
    /// Segments in the slot's [`SegmentStore`].
    Write {
        collapse: bool,
        total: u32,
        received: u32,
    },
    Close {
        handle: u32,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Op {
    id: u32,
    kind: OpKind,
    file: Option<FileId>,
    handle: u32,
    status_desc: BufferDescriptor,
    interrupt: bool,
    stage: Stage,
    cancelled: bool,
    result: Status,
    bytes: u64,
    pieces_in_flight: u16,
    /// Messages of this request received and not yet answered (the status
    /// block returns exactly these credits).
    unanswered: u16,
    /// The read batch this read came in (its id), if any.
    batch: Option<u32>,
}

/// A read batch with reads unanswered ([`Connection::batches`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Batch {
    /// The batch's id (its message's request id), the immediate of its
    /// last status block.
    id: u32,
    /// Reads of the batch whose status blocks have not gone yet.
    remaining: u16,
}

/// A Read's payload as it came, copied whole from the message: its
/// handle, a reserved word (zero), its one segment and its status
/// descriptor.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
struct ReadPayload {
    handle: U32,
    reserved: U32,
    segment: ReadSegment,
    status: BufferDescriptor,
}

const _: () = assert!(size_of::<ReadPayload>() == READ_PAYLOAD_LEN);

/// A Read in the driver's hands outside the request table
/// ([`Connection::take_message`]): its id, its payload as it came (one
/// copy, no field picked out), the file its handle resolved to and
/// whether it asked for an interrupt; its op ([`DirectRead::op`]) would
/// start out `Success`, 0 bytes, one message unanswered. Written once per
/// read, read once at its completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct DirectRead {
    id: u32,
    read: ReadPayload,
    file: FileId,
    interrupt: bool,
}

impl DirectRead {
    /// Its handle.
    #[inline(always)]
    fn handle(&self) -> u32 {
        self.read.handle.get()
    }

    /// Its one segment.
    #[inline(always)]
    fn segment(&self) -> &ReadSegment {
        &self.read.segment
    }

    /// Where its status block goes.
    #[inline(always)]
    fn status(&self) -> BufferDescriptor {
        self.read.status
    }

    /// Its entry in the request table, at `stage`.
    fn op(&self, stage: Stage) -> Op {
        let wanted = u64::from(self.segment().dest().len());
        Op {
            file: Some(self.file),
            stage,
            ..Op::new(
                self.id,
                OpKind::Read { wanted },
                self.handle(),
                self.status(),
                self.interrupt,
            )
        }
    }
}

/// [`Connection::direct`]: a place for the [`DirectRead`], always there
/// (the read is written into it, not into an `Option` built around it),
/// holding one while `live`. What a read no longer live left in it is not
/// part of the connection's state: two compare equal, and hash alike, when
/// the same read is live, or none.
#[derive(Clone, Debug)]
struct Direct {
    read: DirectRead,
    live: bool,
}

impl Direct {
    const EMPTY: Self = Self {
        read: DirectRead {
            id: 0,
            read: ReadPayload {
                handle: U32::ZERO,
                reserved: U32::ZERO,
                segment: ReadSegment::new(0, BufferDescriptor::new(0, 0, 0)),
                status: BufferDescriptor::new(0, 0, 0),
            },
            file: FileId(0),
            interrupt: false,
        },
        live: false,
    };

    /// The live read, if any.
    #[inline(always)]
    fn get(&self) -> Option<&DirectRead> {
        self.live.then_some(&self.read)
    }

    /// The live read, if any: no longer live.
    #[inline(always)]
    fn take(&mut self) -> Option<DirectRead> {
        let read = self.get().copied();
        self.live = false;
        read
    }
}

impl PartialEq for Direct {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Eq for Direct {}

impl core::hash::Hash for Direct {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.get().hash(state);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Outgoing {
    Message(Message<'static>),
    Status {
        dest: BufferDescriptor,
        immediate: Option<u32>,
        block: StatusBlock,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Pending {
    Authenticate(AuthKey),
    /// The request `id`, in `slot` of the request table (found without a
    /// search; `id` tells a later request in a reused slot apart).
    Op {
        slot: usize,
        id: u32,
    },
    CloseFile(FileId),
    Terminated(Violation),
}

/// Receives a driver keeps posted beyond the client's credits
/// ([`Connection::receives_wanted`]): one for a `Terminate`, one for the
/// receive in the driver's hands while it answers that message.
const RECEIVES_BEYOND_CREDITS: usize = 2;

const TIMER_AUTH: usize = 0;
/// The table holds the authentication deadline; the idle deadline is
/// [`Connection::heard`]'s.
const TIMERS: usize = 1;

/// One RDMA connection's server state machine.
///
/// `R` bounds outstanding client messages (set it ≥ `max_credits`; extra
/// credits are refused at configuration), `F` the files registered at once.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Connection<const R: usize = 64, const F: usize = 32> {
    config: ServerConfig,
    state: State,
    session: Option<SessionParams>,
    ledger: ServerLedger,
    target_credits: u16,
    /// The most credits the policy grants ([`ServerConfig::credit_window`]):
    /// the session's level at authentication, or the driver's target.
    credit_ceiling: u16,
    /// When the credit policy's current window began.
    window_start: Instant,
    /// The highest demand a client request stated in the current window
    /// ([`Capabilities::CREDIT_DEMAND`]).
    demand_peak: u16,
    /// The highest demand a request may state: `u16::MAX` on a session
    /// with [`Capabilities::CREDIT_DEMAND`], else 0 (the field is reserved).
    demand_limit: u16,
    ops: OpTable<Op, R>,
    /// The segments of the request in the same slot of `ops`.
    segments: [SegmentStore; R],
    /// The Read [`Connection::take_message`] handed the driver last, while
    /// it is outstanding and nothing else has been called since: kept out
    /// of `ops`, so a read completed before the next call (what a driver
    /// serving reads at once does) costs no insert, lookup or removal.
    /// Every other call puts it in `ops` first ([`Connection::park`]), so
    /// all else sees one table. Its credit is not counted in `ledger`
    /// while it is here (admitted when it arrived, and returned by its
    /// status block: no count up and down for it), only once it is parked
    /// ([`Connection::ledger`] counts it for the driver).
    direct: Direct,
    /// The reads of a batch [`Connection::take_message`] is handing over
    /// ([`Received::Batch`], [`Connection::next_batch_read`]): like
    /// [`Connection::direct`], the one handed out last is kept out of `ops`
    /// while outstanding, and those not handed out yet wait there, their
    /// places in `ops` kept when the batch arrived.
    handing: Handing,
    /// Read batches with reads still unanswered: the batch's id and how
    /// many of its status blocks are still to go (the last carries the
    /// batch's immediate). The batch handed over last is counted in
    /// `handing` instead, until the next is.
    batches: heapless::Vec<Batch, R>,
    /// The registered files, each in the slot its handle names
    /// ([`handles::Handles`]).
    handles: handles::Handles<F>,
    /// Handles in `handles` marked closing (their close waits for their
    /// I/O): while 0, a completion need not look for one.
    closing_handles: u16,
    interrupt_waiters: Fifo<u32, R>,
    pending: Fifo<Pending, R>,
    outgoing: Fifo<Outgoing, R>,
    control: Fifo<Message<'static>, 4>,
    timers: TimerTable<TIMERS>,
    /// While open, when the connection opened or last received a message:
    /// its idle deadline is `idle_micros` later (one store per message,
    /// the deadline computed only when asked for). 0 while not open.
    heard: Instant,
    /// `config.idle_timeout` in microseconds (converted once, not per
    /// request).
    idle_micros: u64,
    /// The negotiated largest message, header included
    /// ([`Connection::max_send_size`], kept with the session).
    max_send: usize,
    /// The negotiated largest read or write (kept with the session).
    max_io: u32,
    /// Credit and keepalive counters ([`Connection::stats`]).
    stats: ConnectionStats,
    /// Where the last write fragment handed out goes ([`WriteChunk`]).
    piece_map: PieceMap,
    /// While `true`, [`Connection::is_quiet`] holds: the connection is
    /// open, no request in `ops`, no event pending, no batch being handed
    /// over, no output queued, no interrupt waiter, no handle closing.
    /// Every place that adds to one of those, or leaves the open state
    /// (`end`), sets it `false` ([`Connection::stir`]); only
    /// [`Connection::settle`] sets it `true`, from `is_quiet` itself. A Read
    /// arriving on a quiet connection is handed over with no look at the
    /// state, for an id in flight or for work queued before it, and
    /// completed with no look for output queued before its block, waiters
    /// or a closing handle.
    quiet: Quiet,
}

impl<const R: usize, const F: usize> Connection<R, F> {
    /// A new connection accepted at `now`, awaiting authentication.
    pub fn new(config: ServerConfig, now: Instant) -> Self {
        let mut timers = TimerTable::new();
        timers.set(TIMER_AUTH, now.saturating_add(config.auth_timeout));
        Self {
            config,
            state: State::AwaitAuth,
            session: None,
            ledger: ServerLedger::new(1),
            target_credits: 0,
            credit_ceiling: 0,
            window_start: now,
            demand_peak: 0,
            demand_limit: 0,
            ops: OpTable::new(),
            segments: [const { SegmentStore::EMPTY }; R],
            direct: Direct::EMPTY,
            handing: Handing::new(),
            batches: heapless::Vec::new(),
            handles: handles::Handles::new(),
            closing_handles: 0,
            interrupt_waiters: Fifo::new(),
            pending: Fifo::new(),
            outgoing: Fifo::new(),
            control: Fifo::new(),
            timers,
            heard: Instant::from_micros(0),
            idle_micros: micros(config.idle_timeout),
            max_send: usize::try_from(config.max_send_size).unwrap_or(usize::MAX),
            max_io: config.max_io_size,
            stats: ConnectionStats::default(),
            piece_map: PieceMap::default(),
            quiet: Quiet(false),
        }
    }

    /// Receives the driver may ever need posted at once (one per credit up
    /// to `max_credits`, plus the two of [`Connection::receives_wanted`]):
    /// the receive buffers to register.
    pub fn receive_depth(&self) -> usize {
        usize::from(self.config.max_credits)
            .min(R)
            .saturating_add(RECEIVES_BEYOND_CREDITS)
    }

    /// Receives the driver must have posted before it posts anything
    /// [`Connection::poll_transmit`] returned: one per credit the client
    /// may use — its level, and a grant on its way to it — plus one for a
    /// `Terminate`, and one for the receive the driver is handling: a
    /// driver answers a message (a read served at once, its status block
    /// returning the credit) before it reposts that message's receive, and
    /// the client may use the credit in between. Before authentication,
    /// three: the auth request, a `Terminate`, and the one in hand (a
    /// client sends nothing else before the auth response).
    ///
    /// The driver reposts a consumed receive only while fewer than this
    /// are posted: a revoked credit's receive is not put back, so the
    /// receives in rotation follow the credits, and a transport filling
    /// them in order keeps reusing the same few buffers. Never more than
    /// [`Connection::receive_depth`].
    pub fn receives_wanted(&self) -> usize {
        let credits = match self.state {
            State::AwaitAuth | State::Authenticating { .. } => 1,
            State::Open | State::Closed => {
                let granting = match self.ledger.pending() {
                    Some(crate::credit::PendingCredit::Grant(n)) => n,
                    _ => 0,
                };
                self.ledger.level().saturating_add(granting)
            }
        };
        usize::from(credits)
            .saturating_add(RECEIVES_BEYOND_CREDITS)
            .min(self.receive_depth())
    }

    /// The session this connection authenticated as.
    pub fn session(&self) -> Option<SessionParams> {
        self.session
    }

    /// The credit ledger (for tests and statistics), the Read handed over
    /// at once and outstanding, if any, counted in use (the connection's
    /// own ledger counts it only once it is parked).
    pub fn ledger(&self) -> ServerLedger {
        let mut ledger = self.ledger;
        if self.direct.live {
            ledger.take_admitted();
        }
        ledger
    }

    /// Credits granted and revoked, keepalives received and answered.
    pub fn stats(&self) -> ConnectionStats {
        self.stats
    }

    /// Whether the connection is open for I/O.
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Requests received and not yet answered.
    pub fn outstanding(&self) -> usize {
        self.ops
            .len()
            .saturating_add(usize::from(self.direct.live))
            .saturating_add(self.handing.len())
    }

    /// Put the Read handed over at once, if still outstanding, in the
    /// request table with the rest: the first thing every call but its own
    /// completion does. It cannot fail (its id was checked against the
    /// table, and a place kept, when it arrived, and nothing was inserted
    /// since); if it ever did, that is a broken invariant and ends the
    /// connection. The reads of a batch not yet taken through
    /// [`Connection::next_batch_read`] go back to the driver's queue.
    #[inline(always)]
    fn park(&mut self) {
        if self.direct.live {
            self.park_direct_read();
        }
        if self.handing.is_active() {
            self.park_handing();
        }
    }

    /// Something may now be outstanding, pending or queued: the connection
    /// is no longer [`Connection::quiet`].
    #[inline(always)]
    fn stir(&mut self) {
        self.quiet = Quiet(false);
    }

    /// What [`Connection::quiet`] promises while `true`.
    fn is_quiet(&self) -> bool {
        self.state == State::Open
            && self.ops.len() == 0
            && self.pending.is_empty()
            && !self.handing.is_active()
            && self.control.is_empty()
            && self.outgoing.is_empty()
            && self.interrupt_waiters.is_empty()
            && self.closing_handles == 0
    }

    /// [`Connection::park`] for [`Connection::take_message`], which skips
    /// it while nothing is handed over and the connection is quiet (then
    /// there is nothing to park): park, then find whether it is quiet.
    #[cold]
    #[inline(never)]
    fn settle(&mut self) {
        self.park();
        self.quiet = Quiet(self.is_quiet());
    }

    /// Whether [`Connection::quiet`] keeps its promise (for the test
    /// harnesses, which check it after every call): `true` unless a bug
    /// left it set while something is outstanding, pending or queued.
    #[doc(hidden)]
    pub fn quiet_holds(&self) -> bool {
        !self.quiet.0 || self.is_quiet()
    }

    /// [`Connection::park`] for the read handed over last (alone, or a
    /// batch's): what a completion of another does first, and what
    /// [`Connection::next_batch_read`] does before handing out the next
    /// (the batch's reads not handed out yet stay where they are).
    #[inline(always)]
    fn park_direct(&mut self) {
        if self.direct.live {
            self.park_direct_read();
        }
        if let Some((op, segment)) = self.handing.take() {
            self.park_slow(op, segment);
        }
    }

    /// The Read handed over at once, into the table. (Out of line, so the
    /// usual call, with none outstanding, only looks and writes nothing.)
    #[cold]
    #[inline(never)]
    fn park_direct_read(&mut self) {
        if let Some(direct) = self.direct.take() {
            // Its credit, admitted when it arrived, counted from now on.
            self.ledger.take_admitted();
            self.park_slow(direct.op(Stage::Dispatched), *direct.segment());
        }
    }

    #[cold]
    #[inline(never)]
    fn park_handing(&mut self) {
        if let Some((op, segment)) = self.handing.take() {
            self.park_slow(op, segment);
        }
        // Into the table, queued, and to the front of the driver's queue
        // in order: it was empty when the batch arrived, and what the
        // batch's own completions queued since are not driver work.
        while let Some((op, segment)) = self.handing.pop_untaken() {
            self.stir();
            let id = op.id;
            let parked = self
                .insert(op)
                .and_then(|slot| {
                    self.store_segments(slot, &[segment])?;
                    Ok(slot)
                })
                .and_then(|slot| {
                    self.pending
                        .push_front(Pending::Op { slot, id })
                        .map_err(|_| Violation::Internal)
                });
            if parked.is_err() {
                self.fail(Violation::Internal);
                return;
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn park_slow(&mut self, op: Op, segment: ReadSegment) {
        let parked = self
            .insert(op)
            .and_then(|slot| self.store_segments(slot, &[segment]));
        if parked.is_err() {
            self.fail(Violation::Internal);
        }
    }

    /// Set the session this connection authenticated as, and the limits it
    /// negotiated.
    fn set_session(&mut self, session: SessionParams) {
        self.session = Some(session);
        let size = session.max_send_size.min(self.config.max_send_size);
        self.max_send = usize::try_from(size).unwrap_or(usize::MAX);
        self.max_io = session.max_io_size.min(self.config.max_io_size);
    }

    /// The negotiated largest message, header included.
    fn max_send_size(&self) -> usize {
        self.max_send
    }

    fn max_io_size(&self) -> u32 {
        self.max_io
    }

    fn find(&self, id: u32) -> Option<usize> {
        self.ops.find(id)
    }

    /// Whether any read or write is outstanding that will complete without
    /// further messages from the client.
    ///
    /// Only requests whose progress is in the server's hands count: a write
    /// still receiving fragments waits on the client, and a parked interrupt
    /// request waiting for it could hold the very credit its next fragment
    /// needs.
    fn data_in_flight(&self) -> bool {
        self.ops.iter().any(|op| match op.kind {
            OpKind::Read { .. } => true,
            OpKind::Write { .. } => op.stage != Stage::Receiving,
            OpKind::Register { .. } | OpKind::Close { .. } => false,
        })
    }

    /// Put a new request in the table; a request id already in it (the
    /// client reused one still in flight) ends the connection. Inlined, as
    /// [`OpTable::insert`] is, so the op is built in its slot.
    #[inline(always)]
    fn insert(&mut self, op: Op) -> Result<usize, Violation> {
        self.stir();
        let id = op.id;
        self.ops
            .insert(id, op)
            .map_err(|(refused, _)| match refused {
                Refused::Duplicate => Violation::DuplicateRequest(id),
                Refused::Full => Violation::Capacity,
            })
    }

    fn store_segments<T: zerocopy::IntoBytes + zerocopy::Immutable>(
        &mut self,
        index: usize,
        segments: &[T],
    ) -> Result<(), Violation> {
        let stored = self
            .segments
            .get_mut(index)
            .is_some_and(|store| store.set(segments));
        if stored {
            Ok(())
        } else {
            Err(Violation::TooLarge)
        }
    }

    /// Drop the dispatch entry of a request that ends before the driver saw it.
    fn unqueue(&mut self, id: u32) {
        let before = core::mem::take(&mut self.pending);
        for entry in before {
            if !matches!(entry, Pending::Op { id: queued, .. } if queued == id) {
                // Same or smaller length than before: cannot fail.
                let _ = self.pending.push_back(entry);
            }
        }
    }

    #[inline]
    fn push_pending(&mut self, pending: Pending) -> Result<(), Violation> {
        self.stir();
        self.pending
            .push_back(pending)
            .map_err(|_| Violation::Capacity)
    }

    #[inline]
    fn queue(&mut self, out: Outgoing) -> Result<(), Violation> {
        self.stir();
        self.outgoing
            .push_back(out)
            .map_err(|_| Violation::Capacity)
    }

    /// Queue a reply to request `id` returning `credits`.
    fn reply(&mut self, id: u32, credits: u16, body: Body<'static>) -> Result<(), Violation> {
        self.queue(Outgoing::Message(Message {
            flags: Flags::empty(),
            credits,
            demand: 0,
            request_id: id,
            body,
        }))?;
        self.ledger.release(credits)
    }
}

impl Op {
    fn new(
        id: u32,
        kind: OpKind,
        handle: u32,
        status_desc: BufferDescriptor,
        interrupt: bool,
    ) -> Self {
        Self {
            id,
            kind,
            file: None,
            handle,
            status_desc,
            interrupt,
            stage: Stage::Queued,
            cancelled: false,
            result: Status::Success,
            bytes: 0,
            pieces_in_flight: 0,
            unanswered: 1,
            batch: None,
        }
    }
}
