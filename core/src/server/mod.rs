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

mod registry;

pub use registry::{FileEntry, Registry, RegistryError, ServerOffer, SessionId, SessionParams};

use crate::credit::ServerLedger;
use crate::error::{ApiError, Violation};
use crate::queue::Fifo;
use crate::segments::SegmentStore;
use crate::stats::ConnectionStats;
use crate::table::OpTable;
use crate::time::{Instant, TimerTable};
use crate::wire::message::parse_read;
use crate::wire::status::{STATUS_BLOCK_LEN, StatusBlock};
use crate::wire::{
    AuthKey, Body, BufferDescriptor, Capabilities, Flags, InsufficientSize, MAX_SEGMENTS, Message,
    OpenFlags, ReadSegment, ResumeKey, Status, WriteSegment,
};
use core::time::Duration;

/// Server-side limits and policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ServerConfig {
    /// Credits a client starts with (capped by what it asks for). The
    /// default grants `max_credits` at once: the server posts a receive per
    /// credit up to `max_credits` from the start either way
    /// ([`Connection::receive_depth`]), so holding credits back saves no
    /// memory and only caps the client's queue depth. A server rationing
    /// credits across clients lowers it and steers each connection with
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
    /// The protocol extensions this server implements; a negotiation
    /// grants the intersection with the client's (none are defined yet:
    /// `docs/PROTOCOL.md`, "Extending rdio").
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
            capabilities: Capabilities::NONE,
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
    /// [`Connection::complete_io`] with the total.
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

/// Write data for the driver to `pwrite`, borrowed from the receive buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteChunk<'a> {
    /// The request: report with [`Connection::complete_io`] (bytes written,
    /// summed over all pieces).
    pub op: OpId,
    /// The file.
    pub file: FileId,
    /// (file offset, bytes) pieces. A vectored write's fragment may span
    /// several segments; a COLLAPSE fragment lands at every segment.
    pub pieces: heapless::Vec<(u64, &'a [u8]), MAX_SEGMENTS>,
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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Handle {
    id: u32,
    file: FileId,
    flags: OpenFlags,
    closing: bool,
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
    Op(u32),
    CloseFile(FileId),
    Terminated(Violation),
}

const TIMER_AUTH: usize = 0;
const TIMER_IDLE: usize = 1;
const TIMERS: usize = 2;

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
    ops: OpTable<Op, R>,
    /// The segments of the request in the same slot of `ops`.
    segments: [SegmentStore; R],
    handles: heapless::Vec<Handle, F>,
    next_handle: u32,
    interrupt_waiters: Fifo<u32, R>,
    pending: Fifo<Pending, R>,
    outgoing: Fifo<Outgoing, R>,
    control: Fifo<Message<'static>, 4>,
    timers: TimerTable<TIMERS>,
    /// Credit and keepalive counters ([`Connection::stats`]).
    stats: ConnectionStats,
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
            ops: OpTable::new(),
            segments: [const { SegmentStore::EMPTY }; R],
            handles: heapless::Vec::new(),
            next_handle: 1,
            interrupt_waiters: Fifo::new(),
            pending: Fifo::new(),
            outgoing: Fifo::new(),
            control: Fifo::new(),
            timers,
            stats: ConnectionStats::default(),
        }
    }

    /// Receives the driver must keep posted: one per credit, plus one for a
    /// `Terminate` that needs no credit.
    pub fn receive_depth(&self) -> usize {
        usize::from(self.config.max_credits)
            .min(R)
            .saturating_add(1)
    }

    /// The session this connection authenticated as.
    pub fn session(&self) -> Option<SessionParams> {
        self.session
    }

    /// The credit ledger (for tests and statistics).
    pub fn ledger(&self) -> &ServerLedger {
        &self.ledger
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
        self.ops.len()
    }

    /// Process one received message (a receive completion of `bytes.len()`
    /// bytes). Write data is returned for the driver to place in the file.
    ///
    /// On a violation the connection is already terminated (a `Terminate`
    /// is queued and a [`ServerEvent::Terminated`] pending); the error says
    /// why. Messages after termination are ignored.
    pub fn handle_message<'a>(
        &mut self,
        now: Instant,
        bytes: &'a [u8],
    ) -> Result<Option<WriteChunk<'a>>, Violation> {
        if self.state == State::Closed {
            return Ok(None);
        }
        // `max_send_size` bounds every message, header included, whatever
        // size of receive the driver happened to post.
        if self.state == State::Open && bytes.len() > self.max_send_size() {
            self.fail(Violation::TooLarge);
            return Err(Violation::TooLarge);
        }
        // The I/O path's most frequent message, straight from its fixed
        // layout to the read it starts (`Message::parse` would give the same
        // `Message`; see `wire::message::parse_read`).
        if let (State::Open, Some(msg)) = (self.state, parse_read(bytes)) {
            return match self.read_message(now, &msg) {
                Ok(()) => Ok(None),
                Err(violation) => {
                    self.fail(violation);
                    Err(violation)
                }
            };
        }
        match self.process(now, bytes) {
            Ok(chunk) => Ok(chunk),
            Err(violation) => {
                self.fail(violation);
                Err(violation)
            }
        }
    }

    #[inline(always)]
    fn process<'a>(
        &mut self,
        now: Instant,
        bytes: &'a [u8],
    ) -> Result<Option<WriteChunk<'a>>, Violation> {
        let msg = Message::parse(bytes)?;
        let opcode = msg.opcode();
        if !opcode.sent_by_client() {
            return Err(Violation::WrongDirection(opcode));
        }
        trace!("server rx {:?} id {}", opcode, msg.request_id);
        if let Body::Terminate { reason } = msg.body {
            self.end(Violation::PeerTerminated(reason), None);
            return Ok(None);
        }
        match self.state {
            State::AwaitAuth => match msg.body {
                Body::AuthRequest { key } => {
                    self.state = State::Authenticating {
                        request_id: msg.request_id,
                        credits: msg.credits,
                    };
                    self.push_pending(Pending::Authenticate(key))?;
                    Ok(None)
                }
                _ => Err(Violation::UnexpectedMessage(opcode)),
            },
            State::Authenticating { .. } | State::Closed => {
                Err(Violation::UnexpectedMessage(opcode))
            }
            State::Open => {
                self.timers
                    .set(TIMER_IDLE, now.saturating_add(self.config.idle_timeout));
                self.open_message(&msg)
            }
        }
    }

    #[inline(always)]
    fn open_message<'a>(&mut self, msg: &Message<'a>) -> Result<Option<WriteChunk<'a>>, Violation> {
        let id = msg.request_id;
        match msg.body {
            Body::CreditAck { delta } => {
                self.ledger.on_ack(delta, msg.credits)?;
                ConnectionStats::add(
                    &mut self.stats.credits_granted,
                    u64::from(delta.unsigned_abs()),
                );
                self.reply(id, 1, Body::CreditResponse)?;
                self.drive_credits()?;
                Ok(None)
            }
            Body::CreditGiveUp => {
                self.ledger.on_give_up(msg.credits)?;
                ConnectionStats::add(&mut self.stats.credits_revoked, 1);
                self.queue(Outgoing::Message(Message {
                    flags: Flags::empty(),
                    credits: 0,
                    request_id: id,
                    body: Body::CreditResponse,
                }))?;
                self.drive_credits()?;
                Ok(None)
            }
            Body::WriteData { data_offset, data } => {
                self.ledger.on_request(msg.credits)?;
                self.write_fragment(id, data_offset, data)
            }
            Body::AuthRequest { .. } => Err(Violation::UnexpectedMessage(msg.opcode())),
            _ => self.new_request(msg),
        }
    }

    /// A Read on an open connection: what `process` and `open_message` do
    /// for it, without their dispatch.
    #[inline(always)]
    fn read_message(&mut self, now: Instant, msg: &Message<'_>) -> Result<(), Violation> {
        trace!("server rx {:?} id {}", msg.opcode(), msg.request_id);
        self.timers
            .set(TIMER_IDLE, now.saturating_add(self.config.idle_timeout));
        self.new_request(msg).map(|_| ())
    }

    /// A message that opens a request: its credit, its id, its work.
    #[inline(always)]
    fn new_request<'a>(&mut self, msg: &Message<'a>) -> Result<Option<WriteChunk<'a>>, Violation> {
        self.ledger.on_request(msg.credits)?;
        if self.find(msg.request_id).is_some() {
            return Err(Violation::DuplicateRequest(msg.request_id));
        }
        self.request(msg)
    }

    #[inline(always)]
    fn request<'a>(&mut self, msg: &Message<'a>) -> Result<Option<WriteChunk<'a>>, Violation> {
        let id = msg.request_id;
        let interrupt = msg.flags.contains(Flags::INTERRUPT);
        match msg.body {
            Body::Keepalive => {
                ConnectionStats::add(&mut self.stats.keepalives, 1);
                self.reply(id, 1, Body::KeepaliveResponse)?;
                ConnectionStats::add(&mut self.stats.keepalives_answered, 1);
                Ok(None)
            }
            Body::InterruptRequest => {
                // Claim 21: a polling client asks to be woken by a send. With
                // nothing in flight there is nothing to wait for: answer now.
                if self.data_in_flight() {
                    self.interrupt_waiters
                        .push_back(id)
                        .map_err(|_| Violation::Capacity)?;
                } else {
                    self.reply(id, 1, Body::InterruptResponse)?;
                }
                Ok(None)
            }
            Body::Cancel { target } => {
                let status = self.cancel(target)?;
                self.reply(id, 1, Body::Completion { status, bytes: 0 })
                    .map(|()| None)
            }
            Body::RegisterFile { key } => {
                self.insert(Op::new(
                    id,
                    OpKind::Register { key },
                    0,
                    BufferDescriptor::default(),
                    false,
                ))?;
                self.push_pending(Pending::Op(id))?;
                Ok(None)
            }
            Body::Close { handle } => self.close(id, handle).map(|()| None),
            Body::Read(read) => {
                let segment = [ReadSegment::new(read.offset, read.dest)];
                self.start_read(id, read.handle, read.status, interrupt, &segment)
                    .map(|()| None)
            }
            Body::ReadV(readv) => self
                .start_read(id, readv.handle, readv.status, interrupt, readv.segments)
                .map(|()| None),
            Body::Write(write) => {
                let segment = [WriteSegment::new(write.offset, write.total_len)];
                self.start_write(
                    id,
                    write.handle,
                    write.status,
                    interrupt,
                    &segment,
                    false,
                    write.total_len,
                    write.data,
                )
            }
            Body::WriteV(writev) => {
                let collapse = msg.flags.contains(Flags::COLLAPSE);
                self.start_write(
                    id,
                    writev.handle,
                    writev.status,
                    interrupt,
                    writev.segments,
                    collapse,
                    writev.total_len,
                    writev.data,
                )
            }
            _ => Err(Violation::UnexpectedMessage(msg.opcode())),
        }
    }

    fn check_status_desc(&self, desc: BufferDescriptor) -> Result<(), Violation> {
        if (desc.len() as usize) < STATUS_BLOCK_LEN {
            return Err(Violation::BadDescriptor);
        }
        Ok(())
    }

    /// Resolve a handle for an I/O needing `need` rights: the file, or the
    /// status the request completes with.
    fn resolve(&self, handle: u32, need: OpenFlags) -> Result<FileId, Status> {
        let entry = self
            .handles
            .iter()
            .find(|h| h.id == handle && !h.closing)
            .ok_or(Status::InvalidHandle)?;
        if entry.flags.contains(need) {
            Ok(entry.file)
        } else {
            Err(Status::AccessDenied)
        }
    }

    #[inline(always)]
    fn start_read(
        &mut self,
        id: u32,
        handle: u32,
        status_desc: BufferDescriptor,
        interrupt: bool,
        segments: &[ReadSegment],
    ) -> Result<(), Violation> {
        self.check_status_desc(status_desc)?;
        let total = segments
            .iter()
            .try_fold(0u64, |sum, s| sum.checked_add(u64::from(s.dest().len())));
        if total.is_none_or(|t| t > u64::from(self.max_io_size())) {
            return Err(Violation::TooLarge);
        }
        let wanted = total.unwrap_or(0);
        let mut op = Op::new(id, OpKind::Read { wanted }, handle, status_desc, interrupt);
        let in_range = segments
            .iter()
            .all(|s| within_file_offsets(s.offset(), u64::from(s.dest().len())));
        let file = if in_range {
            self.resolve(handle, OpenFlags::READ)
        } else {
            Err(Status::InvalidParameter)
        };
        match file {
            Ok(file) => {
                op.file = Some(file);
                let index = self.insert(op)?;
                self.store_segments(index, segments)?;
                self.push_pending(Pending::Op(id))
            }
            Err(status) => {
                op.result = status;
                let index = self.insert(op)?;
                self.finish(index)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn start_write<'a>(
        &mut self,
        id: u32,
        handle: u32,
        status_desc: BufferDescriptor,
        interrupt: bool,
        segments: &[WriteSegment],
        collapse: bool,
        total: u32,
        data: &'a [u8],
    ) -> Result<Option<WriteChunk<'a>>, Violation> {
        self.check_status_desc(status_desc)?;
        let file_bytes = if collapse {
            u64::from(total).checked_mul(segments.len() as u64)
        } else {
            Some(u64::from(total))
        };
        if total > self.max_io_size()
            || file_bytes.is_none_or(|b| b > u64::from(self.max_io_size()))
        {
            return Err(Violation::TooLarge);
        }
        let kind = OpKind::Write {
            collapse,
            total,
            received: 0,
        };
        let mut op = Op::new(id, kind, handle, status_desc, interrupt);
        op.stage = Stage::Receiving;
        // A range past the largest file offset is answered InvalidParameter;
        // its fragments are still received (and discarded) in order.
        let in_range = segments.iter().all(|s| {
            let len = if collapse { total } else { s.len() };
            within_file_offsets(s.offset(), u64::from(len))
        });
        let file = if in_range {
            self.resolve(handle, OpenFlags::WRITE)
        } else {
            Err(Status::InvalidParameter)
        };
        match file {
            Ok(file) => op.file = Some(file),
            Err(status) => op.result = status,
        }
        let index = self.insert(op)?;
        self.store_segments(index, segments)?;
        self.write_fragment(id, 0, data)
    }

    /// Account one fragment of write `id` and map its bytes onto file pieces.
    fn write_fragment<'a>(
        &mut self,
        id: u32,
        data_offset: u32,
        data: &'a [u8],
    ) -> Result<Option<WriteChunk<'a>>, Violation> {
        let index = self.find(id).ok_or(Violation::UnknownRequest(id))?;
        let op = self
            .ops
            .get_mut(index)
            .ok_or(Violation::UnknownRequest(id))?;
        let segments = self
            .segments
            .get(index)
            .map_or(&[][..], SegmentStore::get::<WriteSegment>);
        let OpKind::Write {
            collapse,
            total,
            received,
        } = &mut op.kind
        else {
            return Err(Violation::UnexpectedMessage(crate::wire::Opcode::WriteData));
        };
        if op.stage != Stage::Receiving || data_offset != *received {
            return Err(Violation::FragmentOutOfOrder);
        }
        if data_offset != 0 {
            // A continuation fragment: one more message of this request.
            op.unanswered = op.unanswered.saturating_add(1);
        }
        let len = u32::try_from(data.len()).map_err(|_| Violation::FragmentOutOfOrder)?;
        let end = received
            .checked_add(len)
            .filter(|end| end <= total)
            .ok_or(Violation::FragmentOutOfOrder)?;
        *received = end;
        let complete = end == *total;
        let mut chunk = None;
        if let (Some(file), false, false) = (op.file, op.cancelled, data.is_empty()) {
            let pieces =
                map_pieces(segments, *collapse, data_offset, data).ok_or(Violation::Capacity)?;
            op.pieces_in_flight = op.pieces_in_flight.saturating_add(1);
            chunk = Some(WriteChunk {
                op: OpId(id),
                file,
                pieces,
            });
        }
        if complete {
            op.stage = Stage::Dispatched;
            self.try_finish(index)?;
        } else {
            // Intermediate fragments are answered at once so the client can
            // stream a write of any size through a single credit.
            if let Some(op) = self.ops.get_mut(index) {
                op.unanswered = op.unanswered.saturating_sub(1);
            }
            self.reply(
                id,
                1,
                Body::Completion {
                    status: Status::Success,
                    bytes: u64::from(end),
                },
            )?;
        }
        Ok(chunk)
    }

    fn cancel(&mut self, target: u32) -> Result<Status, Violation> {
        let Some(index) = self.find(target) else {
            return Ok(Status::NotFound);
        };
        let Some(op) = self.ops.get_mut(index) else {
            return Ok(Status::NotFound);
        };
        if !matches!(op.kind, OpKind::Read { .. } | OpKind::Write { .. }) {
            return Ok(Status::NotSupported);
        }
        let queued = op.stage == Stage::Queued;
        op.cancelled = true;
        op.result = Status::Cancelled;
        if op.stage == Stage::Receiving {
            // The client sends no fragment after its cancel.
            op.stage = Stage::Dispatched;
        }
        if queued {
            self.unqueue(target);
        }
        self.try_finish(index)?;
        Ok(Status::Success)
    }

    fn close(&mut self, id: u32, handle: u32) -> Result<(), Violation> {
        let Some(entry) = self
            .handles
            .iter_mut()
            .find(|h| h.id == handle && !h.closing)
        else {
            return self.reply(
                id,
                1,
                Body::Completion {
                    status: Status::InvalidHandle,
                    bytes: 0,
                },
            );
        };
        entry.closing = true;
        // Requests on the handle not yet given to the driver end as Closed;
        // those in the driver's hands finish first, then the file is closed.
        for index in 0..R {
            let Some(op) = self.ops.get_mut(index) else {
                continue;
            };
            if op.handle == handle
                && op.stage == Stage::Queued
                && matches!(op.kind, OpKind::Read { .. })
            {
                op.cancelled = true;
                op.result = Status::Closed;
                let id = op.id;
                self.unqueue(id);
                self.try_finish(index)?;
            }
        }
        self.insert(Op::new(
            id,
            OpKind::Close { handle },
            handle,
            BufferDescriptor::default(),
            false,
        ))?;
        self.try_close(handle)
    }

    fn try_close(&mut self, handle: u32) -> Result<(), Violation> {
        let busy = self.ops.iter().any(|op| {
            op.handle == handle && !matches!(op.kind, OpKind::Close { .. }) && op.file.is_some()
        });
        if busy {
            return Ok(());
        }
        // The close waiting for the handle to go quiet; one handed to the
        // driver already has its file.
        let Some(index) = self.ops.position(|op| {
            matches!(op.kind, OpKind::Close { handle: h } if h == handle) && op.file.is_none()
        }) else {
            return Ok(());
        };
        let file = self
            .handles
            .iter()
            .position(|h| h.id == handle)
            .map(|pos| self.handles.swap_remove(pos).file);
        let Some(op) = self.ops.get_mut(index) else {
            return Ok(());
        };
        let Some(file) = file else {
            // `close` found the handle, and only this removes it.
            let id = op.id;
            self.ops.remove(index);
            return self.reply(
                id,
                1,
                Body::Completion {
                    status: Status::InvalidHandle,
                    bytes: 0,
                },
            );
        };
        // The driver finishes the file and answers (`complete_close`).
        op.file = Some(file);
        let id = op.id;
        self.push_pending(Pending::Op(id))
    }

    /// Queue the completion of op `index` if nothing of it is still running.
    fn try_finish(&mut self, index: usize) -> Result<(), Violation> {
        let Some(op) = self.ops.get(index) else {
            return Ok(());
        };
        let done = match op.stage {
            Stage::Queued => op.cancelled,
            // A read in the driver's hands ends only with its `complete_io`:
            // its RDMA writes into client memory may still be under way, so
            // a cancel must not hand that memory back to the client yet.
            Stage::Dispatched => {
                op.pieces_in_flight == 0 && !matches!(op.kind, OpKind::Read { .. })
            }
            Stage::Receiving => false,
        };
        if done {
            self.finish(index)?;
        }
        Ok(())
    }

    /// Answer a finished data request with its status block (claim 20), then
    /// wake a waiting polling client (claim 21), then close a handle that was
    /// waiting for this request.
    #[inline(always)]
    fn finish(&mut self, index: usize) -> Result<(), Violation> {
        let Some(op) = self.ops.get(index) else {
            return Ok(());
        };
        let (handle, credits) = (op.handle, op.unanswered);
        let block = StatusBlock {
            request_id: op.id,
            status: op.result,
            bytes: op.bytes,
            credits: op.unanswered,
        };
        let immediate = op.interrupt.then_some(op.id);
        let status = Outgoing::Status {
            dest: op.status_desc,
            immediate,
            block,
        };
        self.ops.remove(index);
        self.queue(status)?;
        self.ledger.release(credits)?;
        // Claim 21: the completion wakes one waiting polling client; when it
        // was the last request in flight, nothing else will, so every other
        // waiter is answered too (as a new interrupt request would be).
        if let Some(waiter) = self.interrupt_waiters.pop_front() {
            self.reply(waiter, 1, Body::InterruptResponse)?;
        }
        if !self.interrupt_waiters.is_empty() && !self.data_in_flight() {
            while let Some(waiter) = self.interrupt_waiters.pop_front() {
                self.reply(waiter, 1, Body::InterruptResponse)?;
            }
        }
        let closing = self.handles.iter().any(|h| h.id == handle && h.closing);
        if closing {
            self.try_close(handle)
        } else {
            Ok(())
        }
    }

    /// Complete authentication (claims 12, 14): the key matched a session
    /// whose negotiated parameters are `params`.
    pub fn accept_auth(&mut self, now: Instant, params: SessionParams) -> Result<(), ApiError> {
        let State::Authenticating {
            request_id,
            credits: header_credits,
        } = self.state
        else {
            return Err(ApiError::NotConnected);
        };
        // Claim 22 on the first message too: the auth request's header
        // carries the level the negotiate response gave the client.
        if header_credits != params.credits {
            self.fail(Violation::CreditMismatch {
                expected: params.credits,
                found: header_credits,
            });
            return Err(ApiError::NotConnected);
        }
        let credits = params.credits.clamp(
            1,
            self.config
                .max_credits
                .min(u16::try_from(R).unwrap_or(u16::MAX)),
        );
        self.session = Some(SessionParams { credits, ..params });
        self.ledger = ServerLedger::new(credits);
        self.target_credits = credits;
        self.state = State::Open;
        self.timers.stop(TIMER_AUTH);
        self.timers
            .set(TIMER_IDLE, now.saturating_add(self.config.idle_timeout));
        let keepalive_ms =
            u32::try_from(self.config.keepalive_interval.as_millis()).unwrap_or(u32::MAX);
        let auth = Message {
            flags: Flags::empty(),
            credits: 0,
            request_id,
            body: Body::AuthResponse {
                status: Status::Success,
            },
        };
        let status = Message {
            flags: Flags::empty(),
            credits: 1,
            request_id,
            body: Body::StatusResponse {
                status: Status::Success,
                credits,
                keepalive_ms,
            },
        };
        let queued = self
            .control
            .push_back(auth)
            .and_then(|()| self.control.push_back(status));
        queued.map_err(|_| {
            self.fail(Violation::Capacity);
            ApiError::NotConnected
        })
    }

    /// Refuse authentication: the key was unknown, used or expired. The
    /// client gets an auth response with `AuthFailed`, then `Terminate`.
    pub fn reject_auth(&mut self) {
        if let State::Authenticating { request_id, .. } = self.state {
            let auth = Message {
                flags: Flags::empty(),
                credits: 0,
                request_id,
                body: Body::AuthResponse {
                    status: Status::AuthFailed,
                },
            };
            let _ = self.control.push_back(auth);
            self.fail(Violation::AuthFailed);
        }
    }

    /// The registration asked by [`ServerEvent::Register`] resolved (claim 11).
    pub fn complete_register(
        &mut self,
        op: OpId,
        result: Result<Registration, Status>,
    ) -> Result<(), ApiError> {
        let index = self.find(op.0).ok_or(ApiError::UnknownRequest)?;
        if !matches!(
            self.ops.get(index).map(|o| &o.kind),
            Some(OpKind::Register { .. })
        ) {
            return Err(ApiError::UnknownRequest);
        }
        self.ops.remove(index);
        let body = match result {
            Ok(reg) => {
                let handle = self.next_handle;
                let entry = Handle {
                    id: handle,
                    file: reg.file,
                    flags: reg.flags,
                    closing: false,
                };
                match self.handles.push(entry) {
                    Ok(()) => {
                        self.next_handle = self.next_handle.wrapping_add(1).max(1);
                        Body::RegisterFileCompletion {
                            status: Status::Success,
                            handle,
                            size: reg.size,
                        }
                    }
                    Err(_) => {
                        // The driver must release the file it resolved.
                        let _ = self.push_pending(Pending::CloseFile(reg.file));
                        Body::RegisterFileCompletion {
                            status: Status::ResourceExhausted,
                            handle: 0,
                            size: 0,
                        }
                    }
                }
            }
            Err(status) => Body::RegisterFileCompletion {
                status,
                handle: 0,
                size: 0,
            },
        };
        self.reply(op.0, 1, body).map_err(|v| {
            self.fail(v);
            ApiError::NotConnected
        })
    }

    /// The driver finished its part of request `op`: for a read, all
    /// segments were read and their RDMA writes posted, `result` holding the
    /// total bytes (short at end of file); for a write, one [`WriteChunk`]
    /// was written. An error status fails the request.
    pub fn complete_io(&mut self, op: OpId, result: Result<u64, Status>) -> Result<(), ApiError> {
        let index = self.find(op.0).ok_or(ApiError::UnknownRequest)?;
        let entry = self.ops.get_mut(index).ok_or(ApiError::UnknownRequest)?;
        match entry.kind {
            OpKind::Read { wanted } => {
                if entry.stage != Stage::Dispatched {
                    return Err(ApiError::UnknownRequest);
                }
                match result {
                    Ok(0) if wanted > 0 && entry.result == Status::Success => {
                        entry.result = Status::EndOfFile
                    }
                    Ok(n) => entry.bytes = n.min(wanted),
                    Err(status) if entry.result == Status::Success => entry.result = status,
                    Err(_) => {}
                }
                // A read is complete once the driver reports it.
                entry.pieces_in_flight = 0;
                self.finish(index).map_err(|v| {
                    self.fail(v);
                    ApiError::NotConnected
                })
            }
            OpKind::Write { .. } => {
                if entry.pieces_in_flight == 0 {
                    return Err(ApiError::UnknownRequest);
                }
                entry.pieces_in_flight = entry.pieces_in_flight.saturating_sub(1);
                match result {
                    Ok(n) => entry.bytes = entry.bytes.saturating_add(n),
                    Err(status) if entry.result == Status::Success => entry.result = status,
                    Err(_) => {}
                }
                self.try_finish(index).map_err(|v| {
                    self.fail(v);
                    ApiError::NotConnected
                })
            }
            _ => Err(ApiError::UnknownRequest),
        }
    }

    /// The driver finished and released the file of the close asked by
    /// [`ServerEvent::Close`]: the client's close completes with `result`
    /// (the handle is gone either way).
    pub fn complete_close(&mut self, op: OpId, result: Result<(), Status>) -> Result<(), ApiError> {
        let index = self.find(op.0).ok_or(ApiError::UnknownRequest)?;
        let dispatched = self.ops.get(index).is_some_and(|entry| {
            matches!(entry.kind, OpKind::Close { .. }) && entry.stage == Stage::Dispatched
        });
        if !dispatched {
            return Err(ApiError::UnknownRequest);
        }
        self.ops.remove(index);
        let status = match result {
            Ok(()) => Status::Success,
            Err(status) => status,
        };
        self.reply(op.0, 1, Body::Completion { status, bytes: 0 })
            .map_err(|v| {
                self.fail(v);
                ApiError::NotConnected
            })
    }

    /// Steer the client's credits toward `target` (the server's credit
    /// policy): one credit request at a time, grants up to the smaller of
    /// `max_credits` and what the client asked for at negotiation, revokes
    /// down to `min_credits`.
    pub fn set_credit_target(&mut self, target: u16) -> Result<(), ApiError> {
        let Some(session) = self.session else {
            return Err(ApiError::NotConnected);
        };
        let max = self
            .config
            .max_credits
            .min(session.max_credits)
            .min(u16::try_from(R).unwrap_or(u16::MAX));
        if target < self.config.min_credits.max(1) || target > max {
            return Err(ApiError::CreditsBusy);
        }
        self.target_credits = target;
        self.drive_credits().map_err(|v| {
            self.fail(v);
            ApiError::NotConnected
        })
    }

    fn drive_credits(&mut self) -> Result<(), Violation> {
        if self.state != State::Open || self.ledger.pending().is_some() {
            return Ok(());
        }
        let delta = i32::from(self.target_credits).saturating_sub(i32::from(self.ledger.level()));
        if delta == 0 {
            return Ok(());
        }
        self.ledger.start(delta)?;
        let request = Message {
            flags: Flags::empty(),
            credits: 0,
            request_id: 0,
            body: Body::CreditRequest { delta },
        };
        self.control
            .push_back(request)
            .map_err(|_| Violation::Capacity)
    }

    /// End the connection in an orderly way (`Terminate(Shutdown)`).
    pub fn close_connection(&mut self) {
        self.close_connection_with(Status::Shutdown);
    }

    /// End the connection with `Terminate(status)`: the server's own
    /// reasons to let a client go, e.g. [`Status::IdleTimeout`] when the
    /// driver, which owns the clock, finds the connection idle for longer
    /// than its limit. The [`ServerEvent::Terminated`] that follows
    /// carries `PeerTerminated(status)`, the reason as the client sees it.
    /// Nothing happens on a connection already closed.
    pub fn close_connection_with(&mut self, status: Status) {
        if self.state != State::Closed {
            self.end(Violation::PeerTerminated(status), Some(status));
        }
    }

    /// The next piece of work for the driver.
    pub fn poll_event(&mut self) -> Option<ServerEvent<'_>> {
        let index = loop {
            let id = match self.pending.pop_front()? {
                Pending::Authenticate(key) => return Some(ServerEvent::Authenticate { key }),
                Pending::CloseFile(file) => return Some(ServerEvent::CloseFile { file }),
                Pending::Terminated(reason) => return Some(ServerEvent::Terminated { reason }),
                Pending::Op(id) => id,
            };
            // Skip requests cancelled or closed while queued.
            let Some(index) = self.find(id) else { continue };
            let Some(op) = self.ops.get_mut(index) else {
                continue;
            };
            if !op.cancelled && op.stage == Stage::Queued {
                op.stage = Stage::Dispatched;
                break index;
            }
        };
        let op = self.ops.get(index)?;
        match &op.kind {
            OpKind::Register { key } => Some(ServerEvent::Register {
                op: OpId(op.id),
                key: *key,
            }),
            OpKind::Read { .. } => Some(ServerEvent::Read {
                op: OpId(op.id),
                file: op.file?,
                segments: self.segments.get(index)?.get::<ReadSegment>(),
            }),
            OpKind::Close { .. } => Some(ServerEvent::Close {
                op: OpId(op.id),
                file: op.file?,
            }),
            OpKind::Write { .. } => None,
        }
    }

    /// Encode the next send or status block into `buf`.
    ///
    /// Returns `Ok(None)` when nothing is queued and
    /// `Err(InsufficientSize)` (nothing dequeued) when `buf` is smaller than
    /// the negotiated send size needs.
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Result<Option<Transmit>, InsufficientSize> {
        if let Some(msg) = self.control.front() {
            let len = msg.emit(buf)?;
            self.control.pop_front();
            return Ok(Some(Transmit::Send { len }));
        }
        let Some(next) = self.outgoing.front() else {
            return Ok(None);
        };
        let transmit = match next {
            Outgoing::Message(msg) => Transmit::Send {
                len: msg.emit(buf)?,
            },
            Outgoing::Status {
                dest,
                immediate,
                block,
            } => Transmit::StatusBlock {
                len: block.emit(buf)?,
                dest: *dest,
                immediate: *immediate,
            },
        };
        self.outgoing.pop_front();
        Ok(Some(transmit))
    }

    /// The earliest deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Run expired timers: authentication and idle deadlines end the
    /// connection with `TimedOut`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.timers.expired(TIMER_AUTH, now) || self.timers.expired(TIMER_IDLE, now) {
            self.fail(Violation::TimedOut);
        }
    }

    /// The negotiated largest message, header included.
    fn max_send_size(&self) -> usize {
        let size = self.session.map_or(self.config.max_send_size, |s| {
            s.max_send_size.min(self.config.max_send_size)
        });
        usize::try_from(size).unwrap_or(usize::MAX)
    }

    fn max_io_size(&self) -> u32 {
        self.session.map_or(self.config.max_io_size, |s| {
            s.max_io_size.min(self.config.max_io_size)
        })
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

    fn insert(&mut self, op: Op) -> Result<usize, Violation> {
        self.ops.insert(op.id, op).map_err(|_| Violation::Capacity)
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
            if !matches!(entry, Pending::Op(queued) if queued == id) {
                // Same or smaller length than before: cannot fail.
                let _ = self.pending.push_back(entry);
            }
        }
    }

    fn push_pending(&mut self, pending: Pending) -> Result<(), Violation> {
        self.pending
            .push_back(pending)
            .map_err(|_| Violation::Capacity)
    }

    fn queue(&mut self, out: Outgoing) -> Result<(), Violation> {
        self.outgoing
            .push_back(out)
            .map_err(|_| Violation::Capacity)
    }

    /// Queue a reply to request `id` returning `credits`.
    fn reply(&mut self, id: u32, credits: u16, body: Body<'static>) -> Result<(), Violation> {
        self.queue(Outgoing::Message(Message {
            flags: Flags::empty(),
            credits,
            request_id: id,
            body,
        }))?;
        self.ledger.release(credits)
    }

    /// Terminate because of `violation`: tell the peer, tell the driver.
    fn fail(&mut self, violation: Violation) {
        if self.state != State::Closed {
            debug!("server terminates: {:?}", violation);
            self.end(violation, Some(violation.wire_status()));
        }
    }

    /// Close for good. Unsent replies are dropped (the peer will not read
    /// them); a pending auth response stays so a refused client learns why.
    /// Requests in the driver's hands complete nowhere: after
    /// [`ServerEvent::Terminated`] the driver releases every file it
    /// registered on this connection.
    fn end(&mut self, reason: Violation, send: Option<Status>) {
        self.state = State::Closed;
        self.timers.clear();
        self.outgoing.clear();
        self.ops.clear();
        self.interrupt_waiters.clear();
        self.pending.clear();
        self.handles.clear();
        if let Some(status) = send {
            let terminate = Message {
                flags: Flags::empty(),
                credits: 0,
                request_id: 0,
                body: Body::Terminate { reason: status },
            };
            if self.control.is_full() {
                self.control.pop_back();
            }
            let _ = self.control.push_back(terminate);
        }
        // `pending` was just cleared: there is room.
        let _ = self.pending.push_back(Pending::Terminated(reason));
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
        }
    }
}

/// Whether `len` bytes at `offset` lie within the offsets a file can have
/// (POSIX `off_t` is signed 64-bit), so no piece offset can overflow.
fn within_file_offsets(offset: u64, len: u64) -> bool {
    offset
        .checked_add(len)
        .is_some_and(|end| end <= i64::MAX.unsigned_abs())
}

/// Map `data`, found at `data_offset` of a write's data stream, onto file
/// offsets: consecutive segments without COLLAPSE, every segment with it.
fn map_pieces<'a>(
    segments: &[WriteSegment],
    collapse: bool,
    data_offset: u32,
    data: &'a [u8],
) -> Option<heapless::Vec<(u64, &'a [u8]), MAX_SEGMENTS>> {
    let mut pieces = heapless::Vec::new();
    if collapse {
        for segment in segments {
            let offset = segment.offset().checked_add(u64::from(data_offset))?;
            pieces.push((offset, data)).ok()?;
        }
        return Some(pieces);
    }
    let mut stream_pos = 0u64; // start of the current segment in the data stream
    let start = u64::from(data_offset);
    let end = start.checked_add(data.len() as u64)?;
    for segment in segments {
        let seg_end = stream_pos.checked_add(u64::from(segment.len()))?;
        let lo = start.max(stream_pos);
        let hi = end.min(seg_end);
        if lo < hi {
            let from = usize::try_from(lo.checked_sub(start)?).ok()?;
            let to = usize::try_from(hi.checked_sub(start)?).ok()?;
            let offset = segment.offset().checked_add(lo.checked_sub(stream_pos)?)?;
            pieces.push((offset, data.get(from..to)?)).ok()?;
        }
        stream_pos = seg_end;
    }
    Some(pieces)
}
