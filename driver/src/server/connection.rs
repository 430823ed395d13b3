//! One RDMA connection on the server: the core's [`Connection`] state
//! machine, driven over a transport, doing its file I/O.
//!
//! # One pass per read
//!
//! A round ([`ServerConnection::turn`]) reads the clock once and drains a
//! batch of completions. A received Read is parsed once, by the core
//! ([`Connection::take_message`]), and served in the completion that
//! received it: its RDMA writes are posted from the file's leased mapping
//! (or a bounce buffer), then the core encodes its status block straight
//! into a free send buffer ([`Connection::complete_io_into`]) and it is
//! posted right behind the data (an RC queue pair delivers them in order,
//! so the data is in client memory before the block). Its request timing
//! starts from the core's parse and ends there, with the round's time. Only
//! when reads are already waiting, or no send buffer or no mapping or
//! bounce buffer is free, does a read take the queued path (waiting in
//! `reads`, served by `serve_reads`, its block queued by the core and
//! posted by `drain_transmits`), in arrival order; the core keeps the
//! status blocks and the sends queued before them in order either way.
//! Everything one poll drained is posted before the next poll, back to
//! back, so a transport that batches posts sends the round's work at once.
//!
//! What need not run per read runs on idle rounds and once per
//! [`HOUSEKEEPING`] (1 ms) of a busy connection: asking the kernel whether
//! each mapped file's lease still holds, and copying the core's counters
//! and credit gauges into the metrics. So a writer elsewhere that breaks
//! the lease of a file this connection reads from its mapping waits at
//! most about 1 ms of busy serving (plus the RDMA writes already in flight
//! from the mapping) before the mapping is let go — or, on an idle
//! connection, until its next round (at most [`WAIT_CAP`] when it runs on
//! its own thread; inline, the client's next call).
//!
//! A completion the driver cannot account for (a work id it never posted,
//! a buffer completed twice) or a request the core does not know ends the
//! connection (`Terminated(Internal)`, logged at error level): a broken
//! invariant is never papered over.

use super::quiet::{COVERS, Quiet};
use super::{Server, ServerError, Transferred};
use crate::buffers::{
    Clock, INLINE_MESSAGE, IdMap, Pool, Receives, Work, control_size, release, set_up,
};
use crate::files::{FileId, FileLease};
use crate::stats::ConnectionCell;
use rdio_core::error::{ApiError, Violation};
use rdio_core::server::{
    Connection, OpId, Received, Registration, ServerEvent, Transmit, WriteChunk,
};
use rdio_core::time::Instant;
use rdio_core::wire::header::HEADER_LEN;
use rdio_core::wire::message::parse_read;
use rdio_core::wire::{
    Body, Header, MAX_SEGMENTS, Message, Opcode, OpenFlags, ReadSegment, Status,
};
use rdio_transport::{
    Access, Completion, CompletionKind, RegionId, RemoteBuf, Slice, Transport, TransportError,
    WcError, WrId,
};
use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::time::Duration;

/// Longest the runner blocks in [`Transport::wait`] before looking at its
/// control channel and timers again.
const WAIT_CAP: Duration = Duration::from_millis(10);
/// How long a terminated connection waits for its last sends (the
/// `Terminate` message) to complete before disconnecting anyway.
const LINGER: Duration = Duration::from_secs(1);
/// Send buffers beyond one per receive the client can fill: room for
/// status blocks and control messages queued at the same time.
const EXTRA_SENDS: usize = 8;

/// How often an idle connection asks whether its client has been idle for
/// longer than the server's idle timeout.
const IDLE_CHECK: Duration = Duration::from_millis(100);

/// How often a busy connection does the work that need not run per
/// request: asking the kernel whether each mapped file's read lease still
/// holds (a system call each) and copying the core's counters and credit
/// gauges into the metrics. Idle rounds do it too, at once. This bounds how
/// long a writer elsewhere, breaking the lease of a file this connection
/// serves from its mapping, waits on a busy connection: one period, plus
/// the RDMA writes from the mapping still in flight then.
const HOUSEKEEPING: Duration = Duration::from_millis(1);

/// Most polls [`ServerConnection::salvage`] makes for a `Terminate` left
/// in the queue of a connection that failed under it.
const SALVAGE_POLLS: usize = 8;

/// Completions drained per round.
const COMPLETION_BATCH: usize = 32;
const NO_COMPLETION: Completion = Completion {
    wr_id: 0,
    kind: CompletionKind::Send,
    status: Ok(()),
};

/// What one [`ServerConnection::turn`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Turn {
    /// Work was done (completions drained, messages handled, reads served,
    /// sends or writes posted): turn again soon.
    Progress,
    /// Nothing to do until the peer posts something or a timer expires.
    Idle,
    /// The connection is over; [`ServerConnection::finish`] releases it.
    Ended(ConnectionEnd),
}

/// Why a connection runner returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionEnd {
    /// The protocol ended the connection: the client's orderly close
    /// (`PeerTerminated(Shutdown)`), a violation, or a timeout.
    Terminated(Violation),
    /// A work request failed: the connection is gone.
    Lost(WcError),
    /// A transport call failed.
    Transport(TransportError),
}

impl fmt::Display for ConnectionEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Terminated(reason) => write!(f, "connection terminated: {reason}"),
            Self::Lost(e) => write!(f, "connection lost: {e}"),
            Self::Transport(e) => write!(f, "transport: {e}"),
        }
    }
}

impl From<TransportError> for ConnectionEnd {
    fn from(e: TransportError) -> Self {
        Self::Transport(e)
    }
}

/// Orders for a running connection from another thread.
#[derive(Debug)]
enum Control {
    CreditTarget(u16),
    Shutdown,
}

/// Steers a [`ServerConnection`] running on another thread: the server's
/// credit policy (claim 1: grants and revokes by credit request) and an
/// orderly shutdown. Orders to a finished connection are ignored.
#[derive(Clone, Debug)]
pub struct ConnectionControl {
    sender: Sender<Control>,
}

impl ConnectionControl {
    /// Move the client's credits toward `target` (grant or revoke). Returns
    /// `false` when the connection has ended.
    pub fn set_credit_target(&self, target: u16) -> bool {
        self.sender.send(Control::CreditTarget(target)).is_ok()
    }

    /// End the connection in an orderly way (`Terminate(Shutdown)`).
    pub fn shutdown(&self) -> bool {
        self.sender.send(Control::Shutdown).is_ok()
    }
}

/// Read data placed in a bounce chunk, to be RDMA-written to the client.
#[derive(Clone, Copy, Debug)]
struct ReadPiece {
    /// The bounce chunk holding it, from its start.
    bounce: usize,
    /// Bytes read (short at end of file, never zero).
    len: usize,
    /// Where in client memory: the part of the segment's buffer it fills.
    dest: RemoteBuf,
}

/// Bounce chunks one read of `max_io_size` bytes may take at most: a read
/// is split into pieces of `max_io_size / BOUNCE_CHUNKS_PER_IO` bytes (at
/// least [`MIN_BOUNCE_CHUNK`]), one chunk and one RDMA write each, so the
/// work requests one read posts stay few while a small read takes only one
/// chunk of the connection's budget, not a whole `max_io_size` buffer.
const BOUNCE_CHUNKS_PER_IO: usize = 32;

/// Smallest bounce chunk.
const MIN_BOUNCE_CHUNK: usize = 64 << 10;

/// Most pieces one read is split into: the chunks of a `max_io_size` read
/// (`max_io_size` over `max_io_size / 32` rounded down is at most 33
/// chunks), plus one partial chunk per boundary between segments.
const MAX_PIECES: usize = BOUNCE_CHUNKS_PER_IO + 1 + (MAX_SEGMENTS - 1);

/// The bounce chunk size and count for reads of at most `max_io` bytes and
/// a budget of `buffers` × `max_io` bytes: chunks of `max_io /`
/// [`BOUNCE_CHUNKS_PER_IO`] bytes (at least [`MIN_BOUNCE_CHUNK`], at most
/// `max_io`), as many as the budget holds but no more than half the
/// transport's send queue (`max_send`: each chunk in use is one RDMA write
/// posted; the other half is for status blocks and sends), and always
/// enough for one read of `max_io` bytes in [`MAX_SEGMENTS`] segments.
fn bounce_chunks(max_io: usize, buffers: usize, max_send: usize) -> (usize, usize) {
    let max_io = max_io.max(1);
    let chunk = (max_io / BOUNCE_CHUNKS_PER_IO)
        .max(MIN_BOUNCE_CHUNK)
        .min(max_io);
    let budget = buffers.max(1).saturating_mul(max_io).div_ceil(chunk);
    let one_read = max_io.div_ceil(chunk).saturating_add(MAX_SEGMENTS);
    (chunk, budget.min(max_send / 2).max(one_read))
}

/// Where a read served at once has its status block encoded and posted
/// from.
#[derive(Clone, Copy, Debug)]
enum Answer {
    /// A send buffer taken for it.
    Buffer(usize),
    /// The stack, posted inline.
    Inline,
}

/// One RDMA write of a mapped read's data: `local` (in mapping slot
/// `slot`'s region) to the client's `remote`. `read_mapped` may hold the
/// last one back to go out with the read's status block
/// (`post_with_tail`); the mapping's `in_flight` counts a write when it is
/// posted signaled (an unsignaled one counts in [`Quiet`]).
#[derive(Clone, Copy, Debug)]
struct MappedWrite {
    slot: usize,
    local: Slice,
    remote: RemoteBuf,
}

impl MappedWrite {
    /// The write of `segment` from mapping `slot` (`region`, of a file of
    /// exactly `len` bytes while its lease holds), and the bytes it moves:
    /// short for a segment reaching past the end, `None` for one past it.
    #[inline(always)]
    fn of(slot: usize, region: RegionId, len: u64, segment: &ReadSegment) -> Option<(Self, u64)> {
        let (dest, offset) = (segment.dest(), segment.offset());
        let n = len.saturating_sub(offset).min(u64::from(dest.len()));
        if n == 0 {
            return None;
        }
        let write = Self {
            slot,
            // offset < len, and len fits in memory: it is mapped.
            local: Slice {
                region,
                offset: offset as usize,
                len: n as usize,
            },
            remote: RemoteBuf {
                addr: dest.addr(),
                key: dest.key(),
                len: dest.len(),
            },
        };
        Some((write, n))
    }

    /// It fills its segment (only such a write may carry the status block).
    fn fills_segment(&self) -> bool {
        self.local.len == self.remote.len as usize
    }
}

/// What [`ServerConnection::read_mapped`] made of a read.
#[derive(Clone, Copy, Debug)]
enum FromMapping {
    /// Its file has no usable mapping: nothing done.
    Unmapped,
    /// Served: its writes posted, the result to complete it with.
    Served(Result<u64, Status>),
    /// Served, `bytes` of it, but for its last write (filling its
    /// segment), held back for the caller to post with the status block.
    Deferred { write: MappedWrite, bytes: u64 },
}

/// A read the core handed over, waiting for a free bounce buffer.
#[derive(Debug)]
struct PendingRead {
    op: OpId,
    file: FileId,
    /// Fixed capacity: no heap allocation per read.
    segments: heapless::Vec<ReadSegment, MAX_SEGMENTS>,
}

impl PendingRead {
    fn as_read(&self) -> Read<'_> {
        Read {
            op: self.op,
            file: self.file,
            segments: &self.segments,
            status_follows: false,
        }
    }
}

/// A read being served: borrowed from a [`PendingRead`] waiting in the
/// queue, or from the stack of the completion that received it (no copy of
/// a whole `PendingRead`, segment table and all, per read).
#[derive(Clone, Copy, Debug)]
struct Read<'s> {
    op: OpId,
    file: FileId,
    segments: &'s [ReadSegment],
    /// The core's [`Received::Read::status_follows`] (`false` for a read
    /// that waited: its block goes out through `drain_transmits`).
    status_follows: bool,
}

impl Read<'_> {
    /// Bytes asked for.
    fn wanted(&self) -> u64 {
        match self.segments {
            // A Read (what is served at once): no iterator to sum.
            [one] => u64::from(one.dest().len()),
            many => many
                .iter()
                .map(|segment| u64::from(segment.dest().len()))
                .sum(),
        }
    }
}

/// A registered file served from a read-only mapping under a read lease
/// (zero-copy reads, see [`FileLease`]): read data is RDMA-written straight
/// from the page cache.
#[derive(Debug)]
struct Mapped {
    file: FileId,
    /// The mapping, registered with the transport (which owns it).
    region: RegionId,
    lease: FileLease,
    /// RDMA writes posted from the mapping and not yet completed.
    in_flight: usize,
    /// A lease break began (or the file was closed): no more reads from the
    /// mapping; it is released once `in_flight` drops to zero.
    revoked: bool,
    /// The open file, for the checks a read makes (without the server's
    /// lock on its file table).
    open: Arc<crate::files::File>,
    /// Where the mapping starts in this process's memory: only ever
    /// given to [`prefetch_line`], never dereferenced.
    base: usize,
    /// Bytes read from the mapping not yet added to the file's count in
    /// [`ServerConnection::files`]: added when the mapping goes
    /// ([`fold_read`]), so a read from it looks up no second table.
    read: u64,
}

/// Work from the core, owned so the core can be driven while it is done.
// A job lives on the stack for one turn of the event loop; boxing the read
// would put a heap allocation on every read.
#[allow(clippy::large_enum_variant)]
enum Job {
    Authenticate(rdio_core::wire::AuthKey),
    Register(OpId, rdio_core::wire::ResumeKey),
    Read(PendingRead),
    /// The client's close: finish the file (commit an upload), then release.
    Close(OpId, FileId),
    /// Release without finishing.
    CloseFile(FileId),
    Terminated(Violation),
}

impl From<ServerEvent<'_>> for Job {
    fn from(event: ServerEvent<'_>) -> Self {
        match event {
            ServerEvent::Authenticate { key } => Self::Authenticate(key),
            ServerEvent::Register { op, key } => Self::Register(op, key),
            ServerEvent::Read { op, file, segments } => Self::Read(PendingRead {
                op,
                file,
                // The core never hands out more than MAX_SEGMENTS.
                segments: segments.iter().copied().take(MAX_SEGMENTS).collect(),
            }),
            ServerEvent::Close { op, file } => Self::Close(op, file),
            ServerEvent::CloseFile { file } => Self::CloseFile(file),
            ServerEvent::Terminated { reason } => Self::Terminated(reason),
        }
    }
}

/// The server side of one RDMA connection: owns the transport, the
/// registered buffers and the core state machine, and runs on its own
/// thread ([`ServerConnection::run`]) or is stepped by its owner
/// ([`ServerConnection::turn`]).
pub struct ServerConnection<T: Transport> {
    server: Arc<Server>,
    transport: T,
    conn: Connection,
    clock: Clock,
    receives: Receives,
    sends: Pool,
    /// Read data goes from the file into one of these, then by RDMA write
    /// to the client (claim 16).
    bounces: Pool,
    bounce_writes: Vec<usize>,
    /// Sends and RDMA writes posted whose completions have not been
    /// drained, and the most the transport's send queue holds
    /// (`Caps::max_send`): a post beyond it would be refused (`QueueFull`,
    /// which ends the connection), so a read waits until completions free
    /// the places it needs, and queued output until one is free.
    sends_posted: usize,
    send_queue: usize,
    /// Unsignaled data writes posted (counted in `sends_posted` until a
    /// later signaled request's completion covers them).
    quiet: Quiet,
    /// The transport takes [`INLINE_MESSAGE`] bytes inline
    /// (`Caps::max_inline`): a read served at once posts its status block
    /// from the stack, without a send buffer.
    inline: bool,
    /// Where output is encoded when `inline`: a read's status block served
    /// at once (its first [`INLINE_MESSAGE`] bytes), and queued output, a
    /// message that fits [`INLINE_MESSAGE`] posted inline from here, a
    /// longer one copied into the send buffer taken for it. As large as a
    /// send buffer, and at least [`INLINE_MESSAGE`].
    scratch: Box<[u8]>,
    reads: VecDeque<PendingRead>,
    /// Leased mappings by slot (the slot is the work-request id's index).
    mapped: Vec<Option<Mapped>>,
    mapped_by_file: IdMap<FileId, usize>,
    /// The slot of `mapped` the last read was served from: tried before
    /// `mapped_by_file` (reads mostly come for one file at a time), and
    /// trusted only while that slot holds a mapping of the read's file.
    last_mapped: usize,
    /// The transport takes [`Transport::post_write_tail`] (until it says
    /// otherwise): a full mapped read served at once goes out as one
    /// write, data and status block.
    tail_writes: bool,
    /// The transport gathers two pieces into one RDMA write (`max_sge`):
    /// a read served from a mapping whose status block follows its data
    /// goes as one write, the block gathered from its send buffer.
    gather_joins: bool,
    /// Files registered on this connection, closed when it ends, with the
    /// bytes read and written on each (for the access log).
    files: IdMap<FileId, Transferred>,
    /// The open file of each registered on this connection, taken from the
    /// server's table at registration and dropped at its close: a write
    /// finds its file here, without the server's lock, a SipHash lookup
    /// and a reference count up and down per write.
    handles: IdMap<FileId, Arc<crate::files::File>>,
    /// When it was accepted.
    started: std::time::Instant,
    /// The client's address and name, once it authenticated.
    who: Option<(String, String)>,
    /// Its last request or registration, for the idle timeout once its
    /// side channel (which keeps the session's time) is gone: the time of
    /// the round that received it.
    last_active: Instant,
    /// When it last asked whether it is idle.
    idle_checked: Instant,
    /// It was ended for idleness after this long.
    idle_for: Option<Duration>,
    /// When a busy connection next does its [`HOUSEKEEPING`].
    housekeeping_due: Instant,
    /// The core's counters changed since the metrics last copied them.
    gauges_stale: bool,
    /// The credit level the metrics last showed: a change (authentication,
    /// a grant or revoke) is shown at once, not at the next housekeeping.
    shown_level: u16,
    control: Receiver<Control>,
    control_sender: Sender<Control>,
    closing: Option<(Violation, Instant)>,
    /// This connection's counters (written here only, summed on scrape).
    cell: Arc<ConnectionCell>,
    /// The cell was folded into the server's totals (the connection was
    /// released); otherwise dropping the connection does it.
    retired: bool,
    /// [`super::ServerOptions::request_metrics`].
    request_metrics: bool,
    /// Whether a subscriber takes this module's `TRACE` events (the
    /// `request` spans), asked once per round rather than by the
    /// callsite checks of a span and two events per read served at once.
    trace_requests: bool,
    /// I/O requests received and not yet completed, for the latency
    /// histograms and request spans.
    timings: RequestTimings,
    /// The `connection` span, parent of the request spans.
    span: tracing::Span,
    /// Leases of mappings still registered when the connection ended. Fields
    /// drop in declaration order, so these go only after `transport` —
    /// which owns the mappings and may, if a deregistration failed, still
    /// have them registered.
    ended_leases: Vec<FileLease>,
}

impl<T: Transport> fmt::Debug for ServerConnection<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConnection")
            .field("provider", &self.transport.provider())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Take a freshly connected transport: register buffers and post the
    /// receives before the client can send anything (a send finding no
    /// receive breaks an RC connection).
    pub fn accept<T: Transport>(
        self: &Arc<Self>,
        mut transport: T,
    ) -> Result<ServerConnection<T>, ServerError> {
        {
            let mut shared = self.lock();
            if shared.connections >= self.options.max_connections {
                transport.disconnect();
                return Err(ServerError::TooManyConnections);
            }
            shared.connections += 1;
        }
        let connection = self.start(transport);
        if connection.is_err() {
            self.lock().connections -= 1;
        }
        connection
    }

    fn start<T: Transport>(
        self: &Arc<Self>,
        mut transport: T,
    ) -> Result<ServerConnection<T>, ServerError> {
        let clock = Clock::new();
        let config = self.options.config;
        let now = clock.now();
        let conn = Connection::new(config, now);
        let message_size = config.max_send_size as usize;
        let max_message = transport.caps().max_message;
        if message_size > max_message {
            return Err(ServerError::SendSizeTooLarge {
                configured: config.max_send_size,
                transport: max_message,
            });
        }
        let depth = conn.receive_depth();
        let send_queue = transport.caps().max_send.max(1);
        let inline = transport.caps().max_inline >= INLINE_MESSAGE;
        let gather_joins = transport.caps().max_sge >= 2;
        let (chunk, chunks) = bounce_chunks(
            config.max_io_size as usize,
            self.options.read_buffers,
            transport.caps().max_send,
        );
        let (receives, sends, bounces) = set_up(&mut transport, |transport, held| {
            // The memory budget of a connection: its receive depth of
            // full-size buffers. Sends carry responses only
            // (`buffers::CONTROL_MESSAGE`).
            // Registered for the most credits the client may get; posted
            // for what it may send now (`Connection::receives_wanted`).
            let mut receives = Receives::register(transport, depth, message_size)?;
            held.push(receives.region());
            receives.post_up_to(transport, conn.receives_wanted())?;
            let sends = Pool::register(
                transport,
                depth + EXTRA_SENDS,
                control_size(message_size),
                Access::empty(),
            )?;
            held.extend(sends.regions());
            // Read data of files not served from a mapping is staged here,
            // in chunks (`bounce_chunks`): a small read takes one.
            let bounces = Pool::register(transport, chunks, chunk, Access::empty())?;
            Ok((receives, sends, bounces))
        })?;
        // What `drain_transmits` encodes into (a send buffer's size) and
        // `complete_now` (INLINE_MESSAGE).
        let scratch_len = if inline {
            sends.size().max(INLINE_MESSAGE)
        } else {
            0
        };
        let (control_sender, control) = mpsc::channel();
        let cell = self.stats.accepted();
        let span = tracing::info_span!(
            "connection",
            number = cell.id(),
            provider = transport.provider()
        );
        Ok(ServerConnection {
            server: Arc::clone(self),
            transport,
            conn,
            clock,
            receives,
            sends,
            bounces,
            bounce_writes: vec![0; chunks],
            sends_posted: 0,
            send_queue,
            quiet: Quiet::new(send_queue),
            inline,
            scratch: vec![0; scratch_len].into_boxed_slice(),
            reads: VecDeque::new(),
            mapped: Vec::new(),
            mapped_by_file: IdMap::default(),
            last_mapped: 0,
            tail_writes: true,
            gather_joins,
            files: IdMap::default(),
            handles: IdMap::default(),
            started: std::time::Instant::now(),
            who: None,
            last_active: now,
            idle_checked: now,
            idle_for: None,
            housekeeping_due: now,
            gauges_stale: false,
            shown_level: 0,
            control,
            control_sender,
            closing: None,
            cell,
            retired: false,
            request_metrics: self.options.request_metrics,
            trace_requests: self.options.request_metrics
                && tracing::enabled!(tracing::Level::TRACE),
            timings: RequestTimings::new(depth),
            span,
            ended_leases: Vec::new(),
        })
    }
}

impl<T: Transport> Drop for ServerConnection<T> {
    /// The connection no longer counts against
    /// [`super::ServerOptions::max_connections`], nor as live in the
    /// metrics (a connection dropped without being run to its end leaves
    /// them without an end reason).
    fn drop(&mut self) {
        if !self.retired {
            self.cell.update_core(self.conn.stats(), 0, 0);
            self.server.stats.retire(&self.cell, None, None);
        }
        let mut shared = self.server.lock();
        shared.connections = shared.connections.saturating_sub(1);
    }
}

impl<T: Transport> ServerConnection<T> {
    /// A handle to steer this connection once it runs on another thread.
    pub fn control(&self) -> ConnectionControl {
        ConnectionControl {
            sender: self.control_sender.clone(),
        }
    }

    /// Serve until the connection ends, then disconnect, deregister every
    /// buffer and close the files registered on it.
    pub fn run(mut self) -> ConnectionEnd {
        let span = self.span.clone();
        let _entered = span.enter();
        tracing::debug!("serving");
        let end = self.drive();
        self.release(end)
    }

    /// Do one round of the connection's work without blocking — what
    /// [`ServerConnection::run`] repeats, less its waiting: drain
    /// completions, handle the messages (writing write data to its file),
    /// do the core's work (registrations, reads from the file or its
    /// mapping, closes), post the RDMA writes and sends it asks for, run
    /// expired timers. An idle round also looks for lease breaks (a writer
    /// elsewhere waiting for a mapped file).
    ///
    /// For a caller that steps the connection itself, on the thread of its
    /// choosing, instead of giving it one ([`crate::embedded::Inline`] steps
    /// it inside its client's transport calls). Once a round reports
    /// [`Turn::Ended`], call [`ServerConnection::finish`].
    pub fn turn(&mut self) -> Turn {
        let mut completions = [NO_COMPLETION; COMPLETION_BATCH];
        match self.round(&mut completions) {
            Ok(true) => Turn::Progress,
            Ok(false) => Turn::Idle,
            Err(end) => Turn::Ended(end),
        }
    }

    /// Release a connection stepped by [`ServerConnection::turn`] whose
    /// round reported `end`: disconnect, deregister every buffer and close
    /// the files registered on it, as [`ServerConnection::run`] does when
    /// the connection ends. Returns `end`.
    pub fn finish(self, end: ConnectionEnd) -> ConnectionEnd {
        self.release(end)
    }

    fn release(mut self, end: ConnectionEnd) -> ConnectionEnd {
        tracing::info!(%end, "connection ended");
        let (peer, client) = self
            .who
            .clone()
            .unwrap_or_else(|| ("-".to_owned(), "-".to_owned()));
        let why = match self.idle_for {
            Some(idle) => format!("idle timeout: no open file for {} s", idle.as_secs()),
            None => end.to_string(),
        };
        tracing::info!(
            target: "rdio::access",
            peer = %peer,
            client = %client,
            transport = %self.transport.provider(),
            // The cell's counts of this connection's bytes, all files.
            bytes_read = self.cell.bytes_read.load(Relaxed),
            bytes_written = self.cell.bytes_written.load(Relaxed),
            seconds = self.started.elapsed().as_secs_f64(),
            why = %why,
            "RDMA connection ended"
        );
        let (reason, violation) = match &end {
            ConnectionEnd::Terminated(reason) => (
                crate::stats::end_reason(reason),
                crate::stats::violation_kind(reason),
            ),
            ConnectionEnd::Lost(_) => (5, None),
            ConnectionEnd::Transport(_) => (6, None),
        };
        if reason >= 5 {
            ConnectionCell::add(&self.cell.transport_errors, 1);
        }
        self.cell.update_core(self.conn.stats(), 0, 0);
        self.server
            .stats
            .retire(&self.cell, Some(reason), violation);
        self.retired = true;
        let mut mapped: Vec<Mapped> = self.mapped.drain(..).flatten().collect();
        for mapped in &mut mapped {
            fold_read(&mut self.files, mapped);
        }
        self.mapped_by_file.clear();
        let regions: Vec<_> = self
            .sends
            .regions()
            .chain(self.bounces.regions())
            .chain([self.receives.region()])
            .chain(mapped.iter().map(|m| m.region))
            .collect();
        // Deregistration fails only for a region still busy after the
        // flush, which the transport frees when it is dropped: the
        // connection's end is the more useful report.
        let _ = release(&mut self.transport, regions);
        // The leases go only after the transport, with the mappings.
        self.ended_leases
            .extend(mapped.into_iter().map(|mapped| mapped.lease));
        self.handles.clear();
        self.server.close_files(self.files.drain());
        end
    }

    /// End the connection with `Terminate(IdleTimeout)` when its client has
    /// held no file and sent no request for longer than the server's idle
    /// timeout. Asked at most every [`IDLE_CHECK`], from idle rounds.
    fn check_idle(&mut self, now: Instant) {
        let Some(limit) = self.server.options.idle_timeout else {
            return;
        };
        if now.saturating_since(self.idle_checked) < IDLE_CHECK {
            return;
        }
        self.idle_checked = now;
        if !self.conn.is_open()
            || self.closing.is_some()
            || !self.files.is_empty()
            || self.conn.outstanding() > 0
            || !self.reads.is_empty()
        {
            return;
        }
        let Some(session) = self.conn.session().map(|params| params.session) else {
            return;
        };
        let active = now.saturating_since(self.last_active);
        let idle = if self.server.session_names(session).is_some() {
            self.server
                .session_idle(session)
                .map(|idle| idle.min(active))
        } else {
            // The side channel is gone: only this connection's own
            // activity counts.
            Some(active)
        };
        let Some(idle) = idle.filter(|idle| *idle >= limit) else {
            return;
        };
        let (peer, client) = self.who.clone().unwrap_or_default();
        tracing::info!(
            target: "rdio::access",
            peer = %peer,
            client = %client,
            idle_seconds = idle.as_secs(),
            "RDMA connection closed: idle timeout"
        );
        self.idle_for = Some(idle);
        self.conn.close_connection_with(Status::IdleTimeout);
    }

    fn drive(&mut self) -> ConnectionEnd {
        let mut completions = [NO_COMPLETION; COMPLETION_BATCH];
        loop {
            let progress = match self.round(&mut completions) {
                Ok(progress) => progress,
                Err(end) => return end,
            };
            if !progress {
                // The idle round looked for lease breaks (`housekeeping`): a
                // writer waiting for a lease does not wait on our idleness.
                let timeout = self.clock.until(self.conn.poll_timeout(), WAIT_CAP);
                if let Err(e) = self.transport.wait(Some(timeout)) {
                    return self.ended(ConnectionEnd::Transport(e));
                }
            }
        }
    }

    /// One round of the connection's work, never blocking: drain
    /// completions (handling received messages: write data written to the
    /// file; a read served at once and its status block posted, see
    /// [`ServerConnection::receive`]), run the core's events
    /// (authentication, registration, reads queued, closes), serve queued
    /// reads by RDMA write, post the core's transmits, run expired timers,
    /// and on an idle round or once per [`HOUSEKEEPING`] the work that need
    /// not run per request. Everything one poll drained is posted before
    /// the next poll, back to back (a transport may batch it). The clock is
    /// read once: every time this round notes is its `now`.
    /// `Ok(progress)`, or how the connection ended.
    fn round(&mut self, completions: &mut [Completion]) -> Result<bool, ConnectionEnd> {
        let now = self.clock.now();
        self.trace_requests = self.request_metrics && tracing::enabled!(tracing::Level::TRACE);
        let mut progress = self.take_orders();
        let drained = match self.transport.poll_completions(completions) {
            Ok(n) => n,
            Err(e) => return Err(self.ended(ConnectionEnd::Transport(e))),
        };
        for completion in &completions[..drained] {
            if let Err(end) = self.complete(now, completion) {
                return Err(self.ended(end));
            }
        }
        progress |= drained > 0;
        let step = self
            .drain_events(now)
            .and_then(|events| Ok(events | self.serve_reads(now)? | self.drain_transmits(now)?));
        match step {
            Ok(did) => progress |= did,
            Err(end) => return Err(self.ended(end)),
        }
        if self
            .conn
            .poll_timeout()
            .is_some_and(|deadline| deadline <= now)
        {
            self.conn.handle_timeout(now);
            progress = true;
        }
        self.gauges_stale |= progress;
        if progress && self.request_metrics && self.conn.ledger().level() != self.shown_level {
            self.show_gauges();
        }
        if !progress || now >= self.housekeeping_due {
            match self.housekeeping(now, progress) {
                Ok(did) => progress |= did,
                Err(end) => return Err(self.ended(end)),
            }
        }
        if let Some((reason, deadline)) = self.closing {
            // Inline posts hold no buffer: the count of posted work says
            // whether the Terminate (or a last status block) is still on
            // its way, which ending now would flush.
            let idle = self.sends_posted == 0
                && self.sends.all_free()
                && self.bounces.all_free()
                && self.mapped.iter().flatten().all(|m| m.in_flight == 0);
            if idle || now >= deadline {
                return Err(ConnectionEnd::Terminated(reason));
            }
        }
        Ok(progress)
    }

    /// What need not run per request, on an idle round (`progress` false)
    /// or once per [`HOUSEKEEPING`]: notice lease breaks (so a writer
    /// waiting for a mapped file proceeds), let the credit policy look at
    /// the client's use (posting a grant or revoke it starts), copy the
    /// core's counters and gauges into the metrics, and on an idle round
    /// ask whether the client has been idle too long. `Ok(true)` if it
    /// posted anything.
    fn housekeeping(&mut self, now: Instant, progress: bool) -> Result<bool, ConnectionEnd> {
        self.housekeeping_due = now.saturating_add(HOUSEKEEPING);
        self.check_leases()?;
        let posted = if self.conn.review_credits(now) {
            self.drain_transmits(now)?
        } else {
            false
        };
        if self.request_metrics && self.gauges_stale {
            self.show_gauges();
        }
        if !progress {
            self.check_idle(now);
        }
        Ok(posted)
    }

    /// Copy the core's counters and credit gauges into the metrics.
    fn show_gauges(&mut self) {
        self.gauges_stale = false;
        let ledger = self.conn.ledger();
        self.shown_level = ledger.level();
        self.cell
            .update_core(self.conn.stats(), ledger.level(), ledger.in_use());
    }

    /// After termination, a failing transport is the expected way out: a
    /// client disconnects right after its `Terminate` is delivered, possibly
    /// before the core's `Terminated` event was collected, so collect it.
    fn ended(&mut self, end: ConnectionEnd) -> ConnectionEnd {
        if self.closing.is_none() && !self.conn.is_closed() {
            self.salvage();
        }
        if self.closing.is_none() && self.conn.is_closed() {
            let _ = self.drain_events(self.clock.now());
        }
        self.closing
            .map_or(end, |(reason, _)| ConnectionEnd::Terminated(reason))
    }

    /// The transport failed before the core saw the connection end: the
    /// client may have sent its `Terminate` and gone, and a post of ours
    /// (a credit response, a status block) found the connection down
    /// before we polled the `Terminate`'s receive — a peer disconnects as
    /// soon as its last send completed, and that happens when our side
    /// executes it. Look through what the queue still holds (a bounded
    /// number of polls) for a `Terminate`, and give only that to the
    /// core, so the connection ends for the reason the client gave.
    /// Nothing else is acted on: requests that arrived after the failure
    /// are not served (a write's data is not written after the loss its
    /// client reports).
    fn salvage(&mut self) {
        let now = self.clock.now();
        let mut completions = [NO_COMPLETION; COMPLETION_BATCH];
        for _ in 0..SALVAGE_POLLS {
            let drained = match self.transport.poll_completions(&mut completions) {
                Ok(n) if n > 0 => n,
                _ => return,
            };
            for completion in &completions[..drained] {
                let work = Work::from_id(completion.wr_id & !COVERS);
                let (Ok(()), Some(Work::Recv(index)), CompletionKind::Recv { len }) =
                    (completion.status, work, completion.kind)
                else {
                    continue;
                };
                let Ok(message) = self.receives.message(&self.transport, index, len) else {
                    continue;
                };
                if Header::parse(message).is_ok_and(|h| h.opcode == Opcode::Terminate) {
                    let _ = self.conn.handle_message(now, message);
                    return;
                }
            }
        }
    }

    fn take_orders(&mut self) -> bool {
        let mut any = false;
        loop {
            match self.control.try_recv() {
                // Out of range or while a change is pending: the policy is
                // advisory, the core keeps the ledger consistent.
                Ok(Control::CreditTarget(target)) => {
                    any |= self.conn.set_credit_target(target).is_ok()
                }
                Ok(Control::Shutdown) => {
                    self.conn.close_connection();
                    any = true;
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return any,
            }
        }
    }

    fn complete(&mut self, now: Instant, completion: &Completion) -> Result<(), ConnectionEnd> {
        if let Err(error) = completion.status {
            return Err(ConnectionEnd::Lost(error));
        }
        if completion.wr_id & COVERS != 0 {
            self.covered()?;
        }
        let work = Work::from_id(completion.wr_id & !COVERS);
        if matches!(
            work,
            Some(
                Work::Send { .. }
                    | Work::ReadData(_)
                    | Work::MappedRead(_)
                    | Work::MappedJoined { .. }
                    | Work::Inline
            )
        ) {
            // A send-queue entry is free again.
            self.sends_posted = self.sends_posted.saturating_sub(1);
        }
        match (work, completion.kind) {
            (Some(Work::Recv(index)), kind) => {
                self.receives.completed();
                // Clients never write with immediate data to a server:
                // such a receive is simply put back.
                if let CompletionKind::Recv { len } = kind {
                    self.receive(now, index, len)?;
                }
                self.recycle(index)
            }
            (Some(Work::Inline), _) => Ok(()),
            (Some(Work::Send { buffer, data: None }), _) => {
                if self.sends.release_taken(buffer) {
                    Ok(())
                } else {
                    Err(broken("a send completed from a free send buffer"))
                }
            }
            (Some(Work::ReadData(bounce)), _) => match self.bounce_writes.get_mut(bounce) {
                Some(writes) if *writes > 0 => {
                    *writes -= 1;
                    if *writes == 0 {
                        self.bounces.release(bounce);
                    }
                    Ok(())
                }
                _ => Err(broken("a read-data write completed with none in flight")),
            },
            (Some(Work::MappedJoined { slot, buffer }), _) => {
                if !self.sends.release_taken(buffer) {
                    return Err(broken("a joined write completed from a free send buffer"));
                }
                self.mapped_write_done(slot)
            }
            (Some(Work::MappedRead(slot)), _) => self.mapped_write_done(slot),
            (Some(Work::QuietRead(_)), _) => {
                Err(broken("an unsignaled write completed with success"))
            }
            // The server posts no send gathering write data, and nothing
            // else with an id of another's making.
            (Some(Work::Send { data: Some(_), .. }) | None, _) => {
                Err(broken("a completion for a work request never posted"))
            }
        }
    }

    /// A covering request completed: so did the unsignaled writes it
    /// covers (RC order), which free their send-queue places. A revoked
    /// mapping waiting for them is released by the next `check_leases`.
    fn covered(&mut self) -> Result<(), ConnectionEnd> {
        let count = self
            .quiet
            .covered()
            .ok_or_else(|| broken("a covering request completed with nothing to cover"))?;
        self.sends_posted = self.sends_posted.saturating_sub(count);
        Ok(())
    }

    /// A data write from mapping `slot` completed.
    fn mapped_write_done(&mut self, slot: usize) -> Result<(), ConnectionEnd> {
        match self.mapped.get_mut(slot) {
            Some(Some(mapped)) if mapped.in_flight > 0 => {
                mapped.in_flight -= 1;
                if mapped.revoked && mapped.in_flight == 0 {
                    self.retire_if_idle(slot)?;
                }
                Ok(())
            }
            _ => Err(broken("a mapped write completed with none in flight")),
        }
    }

    /// One received message, in one pass. The core parses it once
    /// ([`Connection::take_message`]); a Read it hands back is served at
    /// once ([`ServerConnection::read_arrived`]), write data is written to
    /// its file and completed. Request timings start from what the core
    /// parsed for a Read; any other message (rarer) is parsed again for
    /// them only when [`super::ServerOptions::request_metrics`] is on.
    fn receive(&mut self, now: Instant, index: usize, len: usize) -> Result<(), ConnectionEnd> {
        let message = self.receives.message(&self.transport, index, len)?;
        // What the core's answer borrows (the receive buffer, the core) is
        // done with inside this match: what is left is owned.
        let written = match self.conn.take_message(now, message) {
            // A Read has one segment (what the core hands over at once).
            Ok(Received::Read {
                op,
                file,
                segments: &[segment],
                status_follows,
            }) => Err((op, file, segment, status_follows)),
            // Not from today's core: queued like any other.
            Ok(Received::Read {
                op, file, segments, ..
            }) => {
                self.reads.push_back(PendingRead {
                    op,
                    file,
                    // The core never hands out more than MAX_SEGMENTS.
                    segments: segments.iter().copied().take(MAX_SEGMENTS).collect(),
                });
                Ok(None)
            }
            Ok(Received::Write(chunk)) => {
                let result = write_chunk(&self.server, &self.handles, &self.cell, &chunk);
                if let Ok(bytes) = result {
                    if let Some(file) = self.files.get_mut(&chunk.file) {
                        file.written += bytes;
                    }
                }
                Ok(Some((chunk.op, result)))
            }
            Ok(Received::Nothing) => Ok(None),
            // Each read is timed as it is served (or queued).
            Ok(Received::Batch) => return self.batch_arrived(now),
            // A violation already terminated the connection inside the
            // core (Terminate queued, Terminated event pending).
            Err(_) => return Ok(()),
        };
        let written = match written {
            Ok(written) => written,
            Err((op, file, segment, status_follows)) => {
                return self.one_segment_arrived(now, op, file, segment, status_follows);
            }
        };
        let Some((op, result)) = written else {
            if self.request_metrics {
                self.time_message(now, index, len)?;
            }
            return Ok(());
        };
        self.last_active = now;
        if self.inline {
            return self.write_done(now, index, len, op, result);
        }
        if self.request_metrics {
            self.time_message(now, index, len)?;
        }
        let completed = self.conn.complete_io(op, result);
        self.io_completed(completed)
    }

    /// Note the request message `index` (of `len` bytes) starts, if it
    /// starts one, for the latency of its status block.
    fn time_message(
        &mut self,
        now: Instant,
        index: usize,
        len: usize,
    ) -> Result<(), ConnectionEnd> {
        let message = self.receives.message(&self.transport, index, len)?;
        let span = self.trace_requests.then_some(&self.span);
        self.timings.started(now, message, span);
        Ok(())
    }

    /// A write's data (from receive `index`) went to its file with
    /// `result`: complete it in one pass, as a read served at once is
    /// ([`ServerConnection::complete_now`]) — when that finishes the
    /// request and nothing waits to go before its status block, the core
    /// encodes the block here and it is posted inline now; otherwise (more
    /// fragments to come, output queued ahead) it goes as before, through
    /// the core's queue and `drain_transmits`. Timed like a read at once
    /// when the write was one message, from its first fragment otherwise.
    fn write_done(
        &mut self,
        now: Instant,
        index: usize,
        len: usize,
        op: OpId,
        result: Result<u64, Status>,
    ) -> Result<(), ConnectionEnd> {
        let bytes = self
            .scratch
            .get_mut(..INLINE_MESSAGE)
            .ok_or_else(|| broken("no inline scratch buffer"))?;
        match self.conn.complete_io_into(op, result, bytes) {
            Ok(Some(transmit)) => {
                if self.request_metrics {
                    self.write_timed(now, index, len, transmit)?;
                }
                post_inline(
                    &mut self.transport,
                    &self.scratch,
                    self.quiet.cover(Work::Inline.id()),
                    transmit,
                )?;
                self.sends_posted += 1;
                Ok(())
            }
            completed => {
                if self.request_metrics {
                    self.time_message(now, index, len)?;
                }
                self.io_completed(completed)
            }
        }
    }

    /// Count and time a write whose status block `transmit` (in the
    /// scratch buffer) goes now: from its first fragment's entry in the
    /// table, or, a write of one message (never noted), as done at once,
    /// its size read off that message.
    fn write_timed(
        &mut self,
        now: Instant,
        index: usize,
        len: usize,
        transmit: Transmit,
    ) -> Result<(), ConnectionEnd> {
        let block = encoded_block(self.scratch.get(..transmit_len(transmit)))?;
        // A Write (WriteV) message that finished its request at once was
        // its only message: never noted. A continuation's request was
        // noted at its first fragment, which did not finish it.
        let message = self.receives.message(&self.transport, index, len)?;
        match write_size(message) {
            Some((kind, size)) => {
                self.request_done_at_once(block.request_id, kind, size, block.status, block.bytes)
            }
            None => self.request_done(now, block.request_id, block.status, block.bytes),
        }
        Ok(())
    }

    /// A Read the core handed over at once: served now, its status block
    /// posted from a free send buffer — unless reads queued earlier wait
    /// (they go first), or no send buffer or no way to read it (a mapping
    /// or a bounce buffer) is free: then it waits with them, for
    /// [`ServerConnection::serve_reads`].
    ///
    /// Its timing ([`super::ServerOptions::request_metrics`]) is noted in
    /// the table of requests in flight only when it does not complete in
    /// this call: one served at once completes in the same round, so its
    /// latency is known without a table entry ([`Self::request_done_at_once`]).
    #[inline(always)]
    fn read_arrived(&mut self, now: Instant, read: Read<'_>) -> Result<(), ConnectionEnd> {
        self.last_active = now;
        if self.closing.is_some() {
            return Ok(());
        }
        let inline = self.inline;
        self.read_open(now, read, inline)
    }

    /// [`Self::read_arrived`] on a connection not closing, for a transport
    /// that takes status blocks `inline` or not.
    #[inline(always)]
    fn read_open(
        &mut self,
        now: Instant,
        read: Read<'_>,
        inline: bool,
    ) -> Result<(), ConnectionEnd> {
        if self.reads.is_empty() {
            if inline {
                if self.serve(now, read, Some(Answer::Inline))? {
                    return Ok(());
                }
            } else if let Some(buffer) = self.sends.take() {
                if self.serve(now, read, Some(Answer::Buffer(buffer)))? {
                    return Ok(());
                }
                self.sends.release(buffer);
            }
        }
        self.time_read(now, &read);
        self.reads.push_back(PendingRead {
            op: read.op,
            file: read.file,
            segments: read.segments.iter().copied().take(MAX_SEGMENTS).collect(),
        });
        Ok(())
    }

    /// The reads of a batch the core hands over at once
    /// ([`Received::Batch`]): each served as a read that arrived alone
    /// ([`Self::read_arrived`], what it asks of the connection asked once
    /// for all); the last status block to go carries the batch's
    /// immediate.
    fn batch_arrived(&mut self, now: Instant) -> Result<(), ConnectionEnd> {
        // What `read_arrived` asks of each, the same for all (serving one
        // neither closes the connection nor changes its transport): asked
        // once.
        self.last_active = now;
        let open = self.closing.is_none();
        let inline = self.inline;
        loop {
            let (op, file, segment, status_follows) = match self.conn.next_batch_read() {
                Some(Received::Read {
                    op,
                    file,
                    segments: &[segment],
                    status_follows,
                }) => (op, file, segment, status_follows),
                Some(_) => return Err(broken("a batch read of other than one segment")),
                None => return Ok(()),
            };
            if open {
                let segments = [segment];
                let read = Read {
                    op,
                    file,
                    segments: &segments,
                    status_follows,
                };
                self.read_open(now, read, inline)?;
            }
        }
    }

    /// [`Self::read_arrived`] for a read of one segment, copied out of
    /// what the core handed over (which borrows the core).
    #[inline(always)]
    fn one_segment_arrived(
        &mut self,
        now: Instant,
        op: OpId,
        file: FileId,
        segment: ReadSegment,
        status_follows: bool,
    ) -> Result<(), ConnectionEnd> {
        let segments = [segment];
        let read = Read {
            op,
            file,
            segments: &segments,
            status_follows,
        };
        self.read_arrived(now, read)
    }

    /// What the core said to a driver's completion: `UnknownRequest` on an
    /// open connection is a broken invariant (the driver completed a
    /// request the core does not know); any other error means the core
    /// already ended the connection, and its `Terminated` event is pending.
    fn io_completed<R>(&self, completed: Result<R, ApiError>) -> Result<(), ConnectionEnd> {
        match completed {
            Err(ApiError::UnknownRequest) if !self.conn.is_closed() => {
                Err(broken("the core knows no request the driver completed"))
            }
            _ => Ok(()),
        }
    }

    /// Put receive `index` back: posted again while the client's credits
    /// need it, else idle (a revoked credit's receive).
    fn recycle(&mut self, index: usize) -> Result<(), ConnectionEnd> {
        let wanted = self.conn.receives_wanted();
        let recycled = self.receives.recycle(&mut self.transport, index, wanted);
        self.receive_posted(recycled)
    }

    /// Post receives up to what the client's credits need — before any
    /// transmit, so a grant (or the auth response, after which the client
    /// uses its credits) never reaches the client before the receives its
    /// new credits may fill.
    fn post_receives(&mut self) -> Result<(), ConnectionEnd> {
        let wanted = self.conn.receives_wanted();
        let posted = self.receives.post_up_to(&mut self.transport, wanted);
        self.receive_posted(posted)
    }

    fn receive_posted(&mut self, posted: Result<(), TransportError>) -> Result<(), ConnectionEnd> {
        match posted {
            Err(_) if self.closing.is_some() || self.conn.is_closed() => Ok(()),
            Err(e) => Err(self.ended(ConnectionEnd::Transport(e))),
            Ok(()) => Ok(()),
        }
    }

    fn drain_events(&mut self, now: Instant) -> Result<bool, ConnectionEnd> {
        let mut any = false;
        while let Some(work) = self.conn.poll_event().map(Job::from) {
            any = true;
            self.last_active = now;
            match work {
                Job::Authenticate(key) => {
                    let redeemed = self.server.lock().registry.redeem_auth(now, &key);
                    match redeemed {
                        Ok(params) => {
                            tracing::debug!("authenticated");
                            self.who = self.server.session_names(params.session);
                            if let Some((peer, client)) = &self.who {
                                tracing::info!(
                                    target: "rdio::access",
                                    peer = %peer,
                                    client = %client,
                                    transport = %self.transport.provider(),
                                    "RDMA connection authenticated"
                                );
                            }
                            let _ = self.conn.accept_auth(now, params);
                        }
                        Err(_) => {
                            tracing::warn!(
                                target: "rdio::access",
                                transport = %self.transport.provider(),
                                reason = "unknown, used or expired authentication key",
                                "RDMA connection refused"
                            );
                            self.server.stats.auth_failures.fetch_add(1, Relaxed);
                            self.conn.reject_auth();
                        }
                    }
                }
                Job::Register(op, key) => {
                    let result = self.register(&key);
                    if let (Ok(()), Ok(registration)) =
                        (self.conn.complete_register(op, result), result)
                    {
                        ConnectionCell::add(&self.cell.registrations, 1);
                        tracing::debug!(
                            file = ?registration.file,
                            size = registration.size,
                            "registered"
                        );
                        self.files.insert(registration.file, Transferred::default());
                        if let Some(file) = self.server.file(registration.file) {
                            self.handles.insert(registration.file, file);
                        }
                        if registration.flags == OpenFlags::READ {
                            self.map(registration.file);
                        }
                    }
                }
                Job::Read(read) => {
                    if self.closing.is_none() {
                        self.reads.push_back(read);
                    }
                }
                Job::Close(op, file) => {
                    ConnectionCell::add(&self.cell.closes, 1);
                    self.unmap(file)?;
                    // An upload takes its name now, or the close fails and
                    // the client hears why.
                    let finished = self.server.finish_file(file);
                    self.handles.remove(&file);
                    let transferred = self.files.remove(&file).unwrap_or_default();
                    self.server.close_files([(file, transferred)]);
                    let _ = self.conn.complete_close(op, finished);
                }
                Job::CloseFile(file) => {
                    ConnectionCell::add(&self.cell.closes, 1);
                    self.unmap(file)?;
                    self.handles.remove(&file);
                    let transferred = self.files.remove(&file).unwrap_or_default();
                    self.server.close_files([(file, transferred)]);
                }
                Job::Terminated(reason) => {
                    self.reads.clear();
                    self.closing = Some((reason, now.saturating_add(LINGER)));
                }
            }
        }
        Ok(any)
    }

    /// Stop serving `file` from its mapping: released now, or once its RDMA
    /// writes in flight complete.
    fn unmap(&mut self, file: FileId) -> Result<(), ConnectionEnd> {
        if let Some(&slot) = self.mapped_by_file.get(&file) {
            if let Some(Some(mapped)) = self.mapped.get_mut(slot) {
                mapped.revoked = true;
                // The file's count is wanted now (its close may follow).
                fold_read(&mut self.files, mapped);
            }
            self.retire_if_idle(slot)?;
        }
        Ok(())
    }

    /// Resolve a file resume key for this connection's session (claim 11).
    fn register(&self, key: &rdio_core::wire::ResumeKey) -> Result<Registration, Status> {
        let session = self.conn.session().ok_or(Status::AccessDenied)?.session;
        let entry = {
            let mut shared = self.server.lock();
            let entry = shared
                .registry
                .redeem_file(session, key)
                .map_err(|e| e.status())?;
            if let Some(pending) = shared.pending_opens.get_mut(&session) {
                *pending = pending.saturating_sub(1);
            }
            entry
        };
        let size = match self.server.file(entry.file) {
            Some(file) => file.len().map_err(|e| e.status())?,
            None => return Err(Status::NotFound),
        };
        Ok(Registration {
            file: entry.file,
            flags: entry.flags,
            size,
        })
    }

    /// Serve the reads waiting (the core queued them behind other work, or
    /// no send or bounce buffer was free when they arrived), in order,
    /// until one finds no bounce buffer free; their status blocks are queued
    /// by the core for [`ServerConnection::drain_transmits`].
    fn serve_reads(&mut self, now: Instant) -> Result<bool, ConnectionEnd> {
        let mut any = false;
        while let Some(read) = self.reads.pop_front() {
            if !self.serve(now, read.as_read(), None)? {
                self.reads.push_front(read);
                break;
            }
            any = true;
        }
        Ok(any)
    }

    /// Serve `read` straight from a leased mapping where its file has one,
    /// else through a free bounce buffer; either way by RDMA write to the
    /// client, then complete it (claims 16, 20): with `send`, a free send
    /// buffer, its status block is posted from there at once (the RC
    /// ordering puts the data in client memory before it). `false`, and
    /// nothing done, when no bounce buffer is free.
    fn serve(
        &mut self,
        now: Instant,
        read: Read<'_>,
        send: Option<Answer>,
    ) -> Result<bool, ConnectionEnd> {
        // Its data writes (one per segment from a mapping, one per piece
        // through bounce chunks) and, with `send`, its status block must
        // all fit the send queue now.
        let status = usize::from(send.is_some());
        if !self.send_queue_fits(read.segments.len() + status) {
            return Ok(false);
        }
        // Over an inline transport, the last data write of a mapped read
        // may carry the status block as its tail (`complete_now`).
        // Over a transport that gathers, from a send buffer.
        let defer = read.status_follows
            && match send {
                Some(Answer::Inline) => self.tail_writes,
                Some(Answer::Buffer(_)) => self.gather_joins,
                None => false,
            };
        let (result, deferred) = match self.read_mapped(read, defer)? {
            FromMapping::Served(result) => {
                ConnectionCell::add(&self.cell.zero_copy_reads, 1);
                (result, None)
            }
            // Counted joined now, before anything of it is posted (a
            // count read once the client has the read must hold it), and
            // moved if it goes unjoined after all (`post_unjoined`).
            FromMapping::Deferred { write, bytes } => {
                ConnectionCell::add(&self.cell.joined_reads, 1);
                (Ok(bytes), Some(write))
            }
            FromMapping::Unmapped => match self.serve_bounced(read, status)? {
                Some(result) => (result, None),
                None => return Ok(false),
            },
        };
        if let Ok(bytes) = result {
            ConnectionCell::add(&self.cell.bytes_read, bytes);
        }
        match send {
            None => {
                let completed = self.conn.complete_io(read.op, result);
                self.io_completed(completed)?;
            }
            Some(answer) => self.complete_now(now, read, result, answer, deferred)?,
        }
        Ok(true)
    }

    /// Serve `read` through bounce buffers ([`Self::read_bounced`]), `status`
    /// more sends to follow it: `None`, nothing done, when not enough
    /// bounce buffers or send-queue places are free.
    fn serve_bounced(
        &mut self,
        read: Read<'_>,
        status: usize,
    ) -> Result<Option<Result<u64, Status>>, ConnectionEnd> {
        let pieces = self.pieces(read.segments);
        if self.bounces.free_count() < pieces || !self.send_queue_fits(pieces + status) {
            return Ok(None);
        }
        ConnectionCell::add(&self.cell.copied_reads, 1);
        let result = self.read_bounced(read)?;
        if let Ok(bytes) = result {
            if let Some(file) = self.files.get_mut(&read.file) {
                file.read += bytes;
            }
        }
        Ok(Some(result))
    }

    /// Post one data write of a mapped read.
    fn post_mapped(&mut self, write: MappedWrite) -> Result<(), ConnectionEnd> {
        let id = self.quiet.cover(Work::MappedRead(write.slot).id());
        self.transport
            .post_write(id, &[write.local], write.remote, None)?;
        self.sends_posted += 1;
        self.mapped_posted(write.slot);
        Ok(())
    }

    /// Post the held-back last write of a zero-copy read on its own, not
    /// joined to the read's status block after all: the read, counted
    /// joined when it was held back (`serve`), counts as zero-copy but not
    /// joined from now on (a joined one counts in the cell's `joined_reads`
    /// alone, and in its zero-copy reads when the cell is read).
    fn post_unjoined(&mut self, write: MappedWrite) -> Result<(), ConnectionEnd> {
        // In this order: the zero-copy reads read meanwhile never drop.
        ConnectionCell::add(&self.cell.zero_copy_reads, 1);
        ConnectionCell::take_back(&self.cell.joined_reads, 1);
        self.post_mapped(write)
    }

    /// A signaled write from mapping `slot` was posted: in flight until
    /// its completion ([`Self::mapped_write_done`]).
    #[inline(always)]
    fn mapped_posted(&mut self, slot: usize) {
        if let Some(Some(mapped)) = self.mapped.get_mut(slot) {
            mapped.in_flight += 1;
        }
    }

    /// Complete `read` with `result`, its status block encoded into send
    /// buffer `buffer` (or, inline, on the stack) and posted now; the
    /// buffer goes back when the core queued the block instead (other
    /// output must go first).
    fn complete_now(
        &mut self,
        now: Instant,
        read: Read<'_>,
        result: Result<u64, Status>,
        answer: Answer,
        deferred: Option<MappedWrite>,
    ) -> Result<(), ConnectionEnd> {
        let bytes = match answer {
            Answer::Buffer(buffer) => {
                let region = self.sends.region(buffer)?;
                self.transport.region_mut(region)?
            }
            // At most what goes inline: a longer answer is queued by the
            // core, for `drain_transmits`.
            Answer::Inline => self
                .scratch
                .get_mut(..INLINE_MESSAGE)
                .ok_or_else(|| broken("no inline scratch buffer"))?,
        };
        match self.conn.complete_io_into(read.op, result, bytes) {
            Ok(Some(transmit)) => {
                if self.request_metrics {
                    // The status the core put in the block, from what it
                    // was given (a read handed over at once carries no
                    // earlier error): no parse of the block.
                    let wanted = read.wanted();
                    let (status, bytes) = match result {
                        Ok(0) if wanted > 0 => (Status::EndOfFile, 0),
                        Ok(n) => (Status::Success, n.min(wanted)),
                        Err(status) => (status, 0),
                    };
                    self.request_done_at_once(read.op.0, 0, wanted, status, bytes);
                }
                if let Some(deferred) = deferred {
                    let joined = match answer {
                        Answer::Inline => self.post_with_tail(deferred, transmit)?,
                        Answer::Buffer(buffer) => self.post_joined(deferred, buffer, transmit)?,
                    };
                    if joined {
                        return Ok(());
                    }
                    self.post_unjoined(deferred)?;
                }
                match answer {
                    Answer::Buffer(buffer) => self.post_transmit(buffer, transmit),
                    Answer::Inline => {
                        post_inline(
                            &mut self.transport,
                            &self.scratch,
                            self.quiet.cover(Work::Inline.id()),
                            transmit,
                        )?;
                        self.sends_posted += 1;
                        Ok(())
                    }
                }
            }
            completed => {
                // The block waits behind other output: it is posted (and
                // the request timed) by `drain_transmits`, which looks the
                // request up in the table. The data goes first.
                if let Some(deferred) = deferred {
                    self.post_unjoined(deferred)?;
                }
                self.time_read(now, &read);
                if let Answer::Buffer(buffer) = answer {
                    self.sends.release(buffer);
                }
                self.io_completed(completed)
            }
        }
    }

    /// [`Self::post_with_tail`] with the status block encoded in send
    /// buffer `buffer`: one RDMA write gathering the data from the mapping
    /// and the block from the buffer (the buffer goes back at its
    /// completion). `false`, nothing posted, when the block is not that
    /// write's; a transport refusing the gather is not asked again.
    fn post_joined(
        &mut self,
        deferred: MappedWrite,
        buffer: usize,
        transmit: Transmit,
    ) -> Result<bool, ConnectionEnd> {
        let Some((dst, immediate, len)) = joined(&deferred, transmit) else {
            return Ok(false);
        };
        let block = self.sends.slice(buffer, 0, len)?;
        let id = self.quiet.cover(
            Work::MappedJoined {
                slot: deferred.slot,
                buffer,
            }
            .id(),
        );
        let posted = self
            .transport
            .post_write(id, &[deferred.local, block], dst, immediate);
        if matches!(posted, Err(TransportError::TooManySegments)) {
            // Nothing posted, so it covers nothing: the request posted
            // instead will.
            self.quiet.uncover(id);
            self.gather_joins = false;
            return Ok(false);
        }
        self.joined_posted(posted, Some(deferred.slot), |this| {
            this.quiet.uncover(id);
            this.gather_joins = false;
        })
    }

    /// Post `deferred`, a read's last data write, with the status block
    /// `transmit` (encoded in the scratch buffer) as its tail: one work
    /// request ([`Transport::post_write_tail`]). Only a read whose block
    /// follows its data in interrupt mode is deferred (the core's
    /// `status_follows`: same key, next address, so the immediate's
    /// receive completion — its own, or its batch's, which comes after —
    /// tells the client the whole write landed; a client polling the
    /// block's memory gets two writes, as the order of one write's bytes
    /// is not defined). `false`, nothing posted, when the block is not
    /// that write's; a transport without the call is not asked again.
    fn post_with_tail(
        &mut self,
        deferred: MappedWrite,
        transmit: Transmit,
    ) -> Result<bool, ConnectionEnd> {
        let Some((dst, immediate, len)) = joined(&deferred, transmit) else {
            return Ok(false);
        };
        let tail = self
            .scratch
            .get(..len)
            .ok_or_else(|| broken("an inline message longer than its buffer"))?;
        // A batch's block without the immediate (not its last): the last,
        // signaled, comes after it and covers it.
        if immediate.is_none() && self.quiet.may_post(self.sends_posted, self.send_queue) {
            let id = Work::QuietRead(deferred.slot).id();
            match self
                .transport
                .post_write_tail_unsignaled(id, &[deferred.local], tail, dst)
            {
                Ok(()) => {
                    // In flight as a quiet write, not its mapping's.
                    self.quiet.posted();
                    return self.joined_posted(Ok(()), None, |_| {});
                }
                Err(TransportError::Unsupported) => self.quiet.disable(),
                Err(e) => return Err(e.into()),
            }
        }
        let id = self.quiet.cover(Work::MappedRead(deferred.slot).id());
        let posted = self
            .transport
            .post_write_tail(id, &[deferred.local], tail, dst, immediate);
        self.joined_posted(posted, Some(deferred.slot), |this| {
            this.quiet.uncover(id);
            this.tail_writes = false;
        })
    }

    /// The outcome of posting a joined data-and-block write (its read
    /// counted joined already, `serve`): counted when posted (in flight from mapping `signaled`, when it was posted
    /// signaled); `false` and `unsupported` noted (that way is not tried
    /// again; a request refused so covers nothing, [`Quiet::uncover`]) when
    /// the transport has no such write.
    fn joined_posted(
        &mut self,
        posted: Result<(), TransportError>,
        signaled: Option<usize>,
        unsupported: impl FnOnce(&mut Self),
    ) -> Result<bool, ConnectionEnd> {
        match posted {
            Ok(()) => {
                self.sends_posted += 1;
                if let Some(slot) = signaled {
                    self.mapped_posted(slot);
                }
                Ok(true)
            }
            Err(TransportError::Unsupported) => {
                unsupported(self);
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Whether `posts` more sends and writes fit the transport's send queue
    /// now. A read needing more than the whole queue waits for it to
    /// empty (and then overflows it, which ends the connection: a
    /// transport that small cannot serve it).
    fn send_queue_fits(&self, posts: usize) -> bool {
        self.send_queue.saturating_sub(self.sends_posted) >= posts.min(self.send_queue)
    }

    /// Bounce chunks `segments` take: each segment is split into pieces of
    /// at most one chunk.
    fn pieces(&self, segments: &[ReadSegment]) -> usize {
        let chunk = self.bounces.size().max(1);
        segments
            .iter()
            .map(|s| (s.dest().len() as usize).div_ceil(chunk))
            .sum()
    }

    /// Read every segment of `read` into bounce chunks, one piece each (the
    /// caller checked that enough are free), then post their RDMA writes:
    /// the result to complete the read with. On a read error nothing is
    /// posted. Each chunk goes back once its write completes (at once if it
    /// holds nothing).
    fn read_bounced(&mut self, read: Read<'_>) -> Result<Result<u64, Status>, ConnectionEnd> {
        let mut pieces = heapless::Vec::<ReadPiece, MAX_PIECES>::new();
        let result = self.read_into(read, &mut pieces);
        if result.is_ok() {
            for &ReadPiece { bounce, len, dest } in &pieces {
                let data = self.bounces.slice(bounce, 0, len)?;
                let id = self.quiet.cover(Work::ReadData(bounce).id());
                self.transport.post_write(id, &[data], dest, None)?;
                self.sends_posted += 1;
                self.bounce_writes[bounce] += 1;
            }
        } else {
            for piece in &pieces {
                self.bounces.release(piece.bounce);
            }
        }
        Ok(result)
    }

    /// Map a file registered read-only, under a read lease, and register the
    /// mapping with the transport. Any failure (the lease refused because
    /// the file is open for writing somewhere, a transport without
    /// [`Transport::register_external`], zero-copy reads turned off) leaves
    /// the file to the bounce buffers.
    fn map(&mut self, file: FileId) {
        if !self.server.options.zero_copy_reads || self.mapped_by_file.contains_key(&file) {
            return;
        }
        let Some(open) = self.server.file(file) else {
            return;
        };
        // A read from the mapping does not ask again (`read_mapped`).
        if !open.flags().contains(OpenFlags::READ) {
            return;
        }
        // The size limit is about pinned memory: a transport whose
        // registrations pin nothing maps a file of any size.
        let pins = self.transport.caps().pins_registrations;
        if !open
            .len()
            .is_ok_and(|len| !pins || len <= self.server.options.zero_copy_max_file)
        {
            return;
        }
        let Ok(Some((lease, map))) = FileLease::take(&open) else {
            return;
        };
        let base = map.as_ref().as_ptr() as usize;
        // On failure the transport drops `map`, and `lease` goes here.
        let Ok(region) = self.transport.register_external(map) else {
            return;
        };
        let mapped = Mapped {
            file,
            region,
            lease,
            in_flight: 0,
            revoked: false,
            open,
            base,
            read: 0,
        };
        let slot = match self.mapped.iter().position(Option::is_none) {
            Some(free) => {
                self.mapped[free] = Some(mapped);
                free
            }
            None => {
                self.mapped.push(Some(mapped));
                self.mapped.len() - 1
            }
        };
        self.mapped_by_file.insert(file, slot);
    }

    /// Serve `read` from its file's mapping: [`FromMapping::Unmapped`]
    /// when the file has no usable mapping (never had one, or its lease is
    /// being broken), else the result to complete the read with, its RDMA
    /// writes posted.
    ///
    /// With `defer`, the last write, if it fills its segment, is not posted
    /// but handed back ([`FromMapping::Deferred`]) for the caller to post
    /// (with the status block as its tail, `post_with_tail`), which counts
    /// it in the mapping's `in_flight` if it posts it signaled.
    fn read_mapped(&mut self, read: Read<'_>, defer: bool) -> Result<FromMapping, ConnectionEnd> {
        // One mapping per file (`map` adds none for a file that has
        // one), so a slot mapping the read's file is the one the map names.
        let cached = self.last_mapped;
        let slot = if matches!(self.mapped.get(cached), Some(Some(m)) if m.file == read.file) {
            cached
        } else {
            let Some(&slot) = self.mapped_by_file.get(&read.file) else {
                return Ok(FromMapping::Unmapped);
            };
            self.last_mapped = slot;
            slot
        };
        let Some(Some(mapped)) = self.mapped.get_mut(slot) else {
            return Ok(FromMapping::Unmapped);
        };
        // Whether the lease still holds is asked by `check_leases`, once per
        // HOUSEKEEPING and on idle rounds, not per read (a system call
        // each): once a writer starts breaking the lease the file may
        // shrink as soon as we let go, so the mapping is done with then
        // (the module docs of `files::mapping`); until we let go it cannot
        // shrink, so reading from it meanwhile is as safe. The period only
        // decides how soon the writer may proceed.
        if mapped.revoked {
            self.retire_if_idle(slot)?;
            return Ok(FromMapping::Unmapped);
        }
        let (region, len) = (mapped.region, mapped.lease.file_len());
        // A Read (what is served at once): one segment, no loops, and no
        // check of its own of what `File::read_at` checks on the copying
        // path: only a readable file is mapped (`map`), and the core hands
        // over no range past the largest file offset (`ServerEvent::Read`).
        if let [segment] = read.segments {
            let Some((write, n)) = MappedWrite::of(slot, region, len, segment) else {
                return Ok(FromMapping::Served(Ok(0)));
            };
            mapped.read += n;
            prefetch_line(mapped.base.wrapping_add(write.local.offset));
            if defer && write.fills_segment() {
                return Ok(FromMapping::Deferred { write, bytes: n });
            }
            self.post_mapped(write)?;
            return Ok(FromMapping::Served(Ok(n)));
        }
        // The checks `File::read_at` makes on the copying path. A mapping
        // not revoked belongs to a registered, open file.
        for segment in read.segments {
            if let Err(e) = mapped
                .open
                .check_read(segment.offset(), segment.dest().len() as usize)
            {
                return Ok(FromMapping::Served(Err(e.status())));
            }
        }
        let mut total = 0u64;
        let mut posted = 0;
        let base = mapped.base;
        let mut deferred = None;
        for segment in read.segments {
            let Some((write, n)) = MappedWrite::of(slot, region, len, segment) else {
                continue;
            };
            prefetch_line(base.wrapping_add(write.local.offset));
            posted += 1;
            total += n;
            if defer && write.fills_segment() && posted == read.segments.len() {
                deferred = Some(write);
                continue;
            }
            self.post_mapped(write)?;
        }
        if let Some(Some(mapped)) = self.mapped.get_mut(slot) {
            mapped.read += total;
        }
        Ok(match deferred {
            Some(write) => FromMapping::Deferred {
                write,
                bytes: total,
            },
            None => FromMapping::Served(Ok(total)),
        })
    }

    /// Release a revoked mapping whose last RDMA write completed:
    /// deregister it (the transport unmaps it), then give up the lease,
    /// which lets the waiting writer proceed.
    fn retire_if_idle(&mut self, slot: usize) -> Result<(), ConnectionEnd> {
        // An unsignaled write in flight may read any mapping.
        let idle = self.quiet.idle()
            && matches!(
                self.mapped.get(slot),
                Some(Some(mapped)) if mapped.revoked && mapped.in_flight == 0
            );
        if !idle {
            return Ok(());
        }
        let Some(mut mapped) = self.mapped.get_mut(slot).and_then(Option::take) else {
            return Ok(());
        };
        fold_read(&mut self.files, &mut mapped);
        self.mapped_by_file.remove(&mapped.file);
        self.transport.deregister(mapped.region)?;
        drop(mapped.lease);
        Ok(())
    }

    /// Notice lease breaks while no reads arrive.
    fn check_leases(&mut self) -> Result<(), ConnectionEnd> {
        for slot in 0..self.mapped.len() {
            if let Some(Some(mapped)) = self.mapped.get_mut(slot) {
                if !mapped.revoked && !mapped.lease.held() {
                    mapped.revoked = true;
                }
            }
            self.retire_if_idle(slot)?;
        }
        Ok(())
    }

    /// Read every segment into bounce chunks taken here, a chunk per piece
    /// of at most the chunk size, each piece to be RDMA-written to its part
    /// of the segment's buffer; a piece short at end of file ends its
    /// segment. The non-empty pieces go into `pieces` (the chunks of empty
    /// ones are given back at once); returns the bytes read, or the status
    /// of a failed read (`pieces` then lists the chunks to give back).
    fn read_into(
        &mut self,
        read: Read<'_>,
        pieces: &mut heapless::Vec<ReadPiece, MAX_PIECES>,
    ) -> Result<u64, Status> {
        let mut held = None;
        let file = registered_file(&self.server, &self.handles, read.file, &mut held)?;
        let chunk = self.bounces.size();
        let mut total = 0u64;
        for segment in read.segments {
            let dest = segment.dest();
            let len = dest.len() as usize;
            let mut done = 0usize;
            while done < len {
                let want = (len - done).min(chunk);
                let bounce = self.bounces.take().ok_or(Status::TooLarge)?;
                let got = self
                    .bounces
                    .region(bounce)
                    .and_then(|region| self.transport.region_mut(region))
                    .map_err(|_| Status::IoError)
                    .and_then(|buffer| {
                        let target = buffer.get_mut(..want).ok_or(Status::TooLarge)?;
                        file.read_at(segment.offset() + done as u64, target)
                            .map_err(|e| e.status())
                    });
                let got = match got {
                    Ok(got) if got > 0 => got,
                    other => {
                        self.bounces.release(bounce);
                        other?;
                        break;
                    }
                };
                let piece = ReadPiece {
                    bounce,
                    len: got,
                    dest: RemoteBuf {
                        addr: dest.addr().wrapping_add(done as u64),
                        key: dest.key(),
                        len: got as u32,
                    },
                };
                if let Err(piece) = pieces.push(piece) {
                    self.bounces.release(piece.bounce);
                    return Err(Status::TooLarge);
                }
                total += got as u64;
                done += want;
                if got < want {
                    break;
                }
            }
        }
        Ok(total)
    }

    /// Post what the core queued, each from a free send buffer, until it
    /// has nothing more or no buffer is free.
    fn drain_transmits(&mut self, now: Instant) -> Result<bool, ConnectionEnd> {
        self.post_receives()?;
        let mut any = false;
        while self.sends_posted < self.send_queue {
            // Taken even when the message goes inline: the core commits a
            // message as it encodes it, so a place to post a longer one
            // from must be there first.
            let Some(buffer) = self.sends.take() else {
                break;
            };
            let region = self.sends.region(buffer)?;
            let bytes = if self.inline {
                // No longer than the send buffer a long message is copied to.
                let size = self.sends.size();
                self.scratch
                    .get_mut(..size)
                    .ok_or_else(|| broken("a scratch buffer shorter than a send buffer"))?
            } else {
                self.transport.region_mut(region)?
            };
            let transmit = match self.conn.poll_transmit(bytes) {
                Ok(Some(transmit)) => transmit,
                Ok(None) => {
                    self.sends.release(buffer);
                    break;
                }
                Err(_) => {
                    // Buffers are max_send_size bytes, which the core
                    // guarantees is enough: reaching here is a bug.
                    self.sends.release(buffer);
                    return Err(broken("a send buffer too small for a message"));
                }
            };
            let len = transmit_len(transmit);
            let inline = self.inline && len <= INLINE_MESSAGE;
            if self.inline && !inline {
                let encoded = self.scratch.get(..len);
                let into = self.transport.region_mut(region)?.get_mut(..len);
                match (encoded, into) {
                    (Some(encoded), Some(into)) => into.copy_from_slice(encoded),
                    _ => return Err(broken("a message longer than its send buffer")),
                }
            }
            if self.request_metrics {
                if let Transmit::StatusBlock { len, .. } = transmit {
                    // A queued block (not the one-pass path's): the core's
                    // transmit names no request, so its block says which.
                    let block = encoded_block(if inline {
                        self.scratch.get(..len)
                    } else {
                        self.transport.region(region)?.get(..len)
                    })?;
                    self.request_done(now, block.request_id, block.status, block.bytes);
                }
            }
            if inline {
                self.sends.release(buffer);
                post_inline(
                    &mut self.transport,
                    &self.scratch,
                    self.quiet.cover(Work::Inline.id()),
                    transmit,
                )?;
                self.sends_posted += 1;
            } else {
                self.post_transmit(buffer, transmit)?;
            }
            any = true;
        }
        Ok(any)
    }

    /// Post `transmit`, encoded in send buffer `buffer`.
    fn post_transmit(&mut self, buffer: usize, transmit: Transmit) -> Result<(), ConnectionEnd> {
        let id = self.quiet.cover(Work::Send { buffer, data: None }.id());
        let slice = self.sends.slice(buffer, 0, transmit_len(transmit))?;
        post_message(&mut self.transport, id, Encoded::Buffer(slice), transmit)?;
        self.sends_posted += 1;
        Ok(())
    }

    /// Note when `read` arrived, in the table of requests in flight, for
    /// the round that completes it ([`Self::request_done`]).
    fn time_read(&mut self, now: Instant, read: &Read<'_>) {
        if self.request_metrics {
            self.timings.note(
                now,
                read.op.0,
                0,
                read.wanted(),
                self.trace_requests.then_some(&self.span),
            );
        }
    }

    /// A request of `kind` ([`crate::stats::REQUEST_KINDS`]) that arrived
    /// and completed in the same round (a read, [`Self::read_arrived`]; a
    /// write of one message, [`Self::write_done`]): what
    /// [`RequestTimings::note`] and
    /// [`Self::request_done`] record for it — its latency is 0 µs, both
    /// ends being this round's `now` — without the table entry between
    /// them (two probes of the table and a span kept per read), a success
    /// in one counter ([`ConnectionCell::done_at_once`]).
    #[inline(always)]
    fn request_done_at_once(
        &mut self,
        request: u32,
        kind: usize,
        size: u64,
        status: Status,
        bytes: u64,
    ) {
        self.cell.done_at_once(kind, size, status);
        if self.trace_requests {
            trace_at_once(&self.span, request, kind, size, status, bytes);
        }
    }

    /// Request `request` finished with `status` and `bytes`, its status
    /// block being posted now: count it and, if it was timed, record its
    /// latency and close its span.
    fn request_done(&mut self, now: Instant, request: u32, status: Status, bytes: u64) {
        self.cell.completed(status);
        if let Some(timed) = self.timings.finished(request) {
            let micros = now.saturating_since(timed.started).as_micros();
            let micros = u64::try_from(micros).unwrap_or(u64::MAX);
            self.cell.latency(timed.kind, timed.size, micros);
            if !timed.span.is_none() {
                timed.span.in_scope(|| {
                    tracing::trace!(status = ?status, bytes, latency_us = micros, "completed");
                });
            }
        }
    }
}

/// The `request` span of a request that just arrived, its arrival noted
/// in it: what a timed request keeps in [`RequestTimings`] and what a
/// request answered at once ([`trace_at_once`]) closes right away. Out of
/// line: tracing at trace level is the rare case, and its frame would
/// otherwise be every read's.
#[cold]
#[inline(never)]
fn received_span(parent: &tracing::Span, request: u32, kind: usize, size: u64) -> tracing::Span {
    let span = tracing::trace_span!(
        parent: parent,
        "request",
        id = request,
        kind = crate::stats::REQUEST_KINDS.get(kind).copied().unwrap_or("?"),
        size
    );
    span.in_scope(|| tracing::trace!("received"));
    span
}

/// The `request` span of a request answered in the round it arrived:
/// opened and closed at once.
#[cold]
#[inline(never)]
fn trace_at_once(
    parent: &tracing::Span,
    request: u32,
    kind: usize,
    size: u64,
    status: Status,
    bytes: u64,
) {
    received_span(parent, request, kind, size).in_scope(|| {
        tracing::trace!(status = ?status, bytes, latency_us = 0u64, "completed");
    });
}

/// The open file `id`, registered on this connection: from `handles`,
/// without the server's lock. The core hands over I/O only for files
/// registered on its connection, which `handles` holds; the server's table
/// (its `Arc` kept in `held`) is the fallback should that ever not be so.
#[inline]
fn registered_file<'a>(
    server: &Server,
    handles: &'a IdMap<FileId, Arc<crate::files::File>>,
    id: FileId,
    held: &'a mut Option<Arc<crate::files::File>>,
) -> Result<&'a crate::files::File, Status> {
    if let Some(file) = handles.get(&id) {
        return Ok(file);
    }
    let file = server.file(id).ok_or(Status::InvalidHandle)?;
    Ok(held.insert(file))
}

/// Where a joined write of `deferred` (a read's last data write) and the
/// status block `transmit` goes: the data's remote range stretched over
/// the block that follows it, the block's immediate (none for all but the
/// last block of a read batch) and the block's length; `None` when
/// `transmit` is not a status block or the length overflows.
fn joined(deferred: &MappedWrite, transmit: Transmit) -> Option<(RemoteBuf, Option<u32>, usize)> {
    let Transmit::StatusBlock {
        dest,
        immediate,
        len,
    } = transmit
    else {
        return None;
    };
    let remote = deferred.remote;
    debug_assert!(
        dest.key() == remote.key
            && remote.addr.checked_add(u64::from(remote.len)) == Some(dest.addr()),
        "only a read whose status block follows its data is deferred"
    );
    let whole = remote.len.checked_add(dest.len())?;
    Some((
        RemoteBuf {
            len: whole,
            ..remote
        },
        immediate,
        len,
    ))
}

/// Post `transmit`, encoded at the start of `bytes`, inline as request
/// `id` (the caller counts it in `sends_posted`).
fn post_inline(
    transport: &mut impl Transport,
    bytes: &[u8],
    id: WrId,
    transmit: Transmit,
) -> Result<(), ConnectionEnd> {
    let message = bytes
        .get(..transmit_len(transmit))
        .ok_or_else(|| broken("an inline message longer than its buffer"))?;
    post_message(transport, id, Encoded::Inline(message), transmit)
}

/// Where an encoded message is posted from.
enum Encoded<'a> {
    /// The message's bytes in a registered send buffer.
    Buffer(Slice),
    /// The message's bytes, posted inline.
    Inline(&'a [u8]),
}

/// Post `transmit` as the send or status-block write it is, from `encoded`.
#[inline]
fn post_message(
    transport: &mut impl Transport,
    id: WrId,
    encoded: Encoded<'_>,
    transmit: Transmit,
) -> Result<(), ConnectionEnd> {
    match transmit {
        Transmit::Send { .. } => match encoded {
            Encoded::Buffer(slice) => transport.post_send(id, &[slice], None)?,
            Encoded::Inline(bytes) => transport.post_send_inline(id, bytes)?,
        },
        Transmit::StatusBlock {
            dest, immediate, ..
        } => {
            let remote = RemoteBuf {
                addr: dest.addr(),
                key: dest.key(),
                len: dest.len(),
            };
            match encoded {
                Encoded::Buffer(slice) => transport.post_write(id, &[slice], remote, immediate)?,
                Encoded::Inline(bytes) => {
                    transport.post_write_inline(id, bytes, remote, immediate)?;
                }
            }
        }
    }
    Ok(())
}

/// Bytes of the encoded message `transmit` describes.
fn transmit_len(transmit: Transmit) -> usize {
    match transmit {
        Transmit::Send { len } | Transmit::StatusBlock { len, .. } => len,
    }
}

/// The status block the core encoded into `bytes` (a
/// [`Transmit::StatusBlock`]'s), read back for the request metrics: which
/// request it completes, with what. The core encodes a valid block there,
/// so anything else is a broken invariant.
fn encoded_block(bytes: Option<&[u8]>) -> Result<rdio_core::wire::StatusBlock, ConnectionEnd> {
    match bytes.map(rdio_core::wire::StatusBlock::parse) {
        Some(Ok(Some(block))) => Ok(block),
        _ => Err(broken("the core encoded no status block")),
    }
}

/// A broken internal invariant of the driver: said loudly, and the
/// connection ends (as for a core-detected internal error).
#[cold]
fn broken(what: &str) -> ConnectionEnd {
    tracing::error!(invariant = what, "server connection: internal error");
    ConnectionEnd::Terminated(Violation::Internal)
}

/// Add the bytes read from `mapped` since the last time to its file's count
/// in `files` (the access log's).
fn fold_read(files: &mut IdMap<FileId, Transferred>, mapped: &mut Mapped) {
    if let Some(file) = files.get_mut(&mapped.file) {
        file.read += mapped.read;
    }
    mapped.read = 0;
}

/// Place one chunk of write data in the file (claim 1: it came by send).
fn write_chunk(
    server: &Server,
    handles: &IdMap<FileId, Arc<crate::files::File>>,
    cell: &ConnectionCell,
    chunk: &WriteChunk<'_>,
) -> Result<u64, Status> {
    let mut held = None;
    let file = registered_file(server, handles, chunk.file, &mut held)?;
    let mut total = 0u64;
    for (offset, bytes) in chunk.pieces() {
        file.write_at(offset, bytes).map_err(|e| e.status())?;
        total += bytes.len() as u64;
    }
    ConnectionCell::add(&cell.writes, 1);
    ConnectionCell::add(&cell.bytes_written, total);
    Ok(total)
}

/// A Write's or WriteV's [`crate::stats::REQUEST_KINDS`] index and size,
/// read off the message the core validated: `total_len` is a fixed field of
/// the payload (`docs/PROTOCOL.md`: Write `total_len` at payload offset 4,
/// WriteV at 8), so a write is not parsed a second time for its timing.
/// `None` for any other message.
fn write_size(message: &[u8]) -> Option<(usize, u64)> {
    let opcode = *message.get(1)?;
    let (kind, at) = if opcode == Opcode::Write as u8 {
        (2, 4)
    } else if opcode == Opcode::WriteV as u8 {
        (3, 8)
    } else {
        return None;
    };
    let at = HEADER_LEN + at;
    let bytes = message.get(at..at + 4)?.try_into().ok()?;
    Some((kind, u64::from(u32::from_le_bytes(bytes))))
}

/// An I/O request received and not yet completed.
#[derive(Debug)]
struct Timed {
    request: u32,
    /// [`crate::stats::REQUEST_KINDS`] index (read, readv, write, writev).
    kind: usize,
    /// Bytes asked for.
    size: u64,
    started: Instant,
    /// Its `request` span (trace level: disabled, and free, unless a
    /// subscriber wants it).
    span: tracing::Span,
}

/// The I/O requests in flight on a connection, by wire request id: a fixed
/// table (at least one entry per receive, a power of two, allocated with
/// the connection) probed linearly from `id & mask` — ids are mostly
/// consecutive, so the first probe usually hits.
#[derive(Debug)]
struct RequestTimings {
    entries: Vec<Option<Timed>>,
}

impl RequestTimings {
    fn new(depth: usize) -> Self {
        Self {
            entries: (0..depth.max(1).next_power_of_two())
                .map(|_| None)
                .collect(),
        }
    }

    fn probe(&self, request: u32) -> impl Iterator<Item = usize> + use<> {
        let mask = self.entries.len() - 1;
        let home = request as usize;
        (0..=mask).map(move |step| home.wrapping_add(step) & mask)
    }

    /// A message arrived: if it starts an I/O request, note when (a full
    /// table, or an id already noted, notes nothing).
    fn started(&mut self, now: Instant, message: &[u8], connection: Option<&tracing::Span>) {
        // Reads, the most frequent, by the core's fixed-layout check alone.
        let (request, kind, size) = if let Some(read) = parse_read(message) {
            let Body::Read(body) = read.body else { return };
            (read.request_id, 0, u64::from(body.dest.len()))
        } else {
            let Ok(header) = Header::parse(message) else {
                return;
            };
            match header.opcode {
                Opcode::Write | Opcode::WriteV => {
                    let Some((kind, size)) = write_size(message) else {
                        return;
                    };
                    self.note(now, header.request_id, kind, size, connection);
                    return;
                }
                Opcode::ReadBatch => {
                    // Each read of a batch is timed on its own, from the
                    // batch's arrival.
                    if let Ok(Body::ReadBatch(batch)) = Message::parse(message).map(|m| m.body) {
                        for read in batch.reads {
                            let size = u64::from(read.dest().len());
                            self.note(now, read.request_id(), 0, size, connection);
                        }
                    }
                    return;
                }
                Opcode::Read | Opcode::ReadV => {}
                _ => return,
            }
            let (kind, size) = match Message::parse(message).map(|message| message.body) {
                Ok(Body::Read(read)) => (0, u64::from(read.dest.len())),
                Ok(Body::ReadV(read)) => (
                    1,
                    read.segments
                        .iter()
                        .map(|segment| u64::from(segment.dest().len()))
                        .sum(),
                ),
                Ok(Body::Write(write)) => (2, u64::from(write.total_len)),
                Ok(Body::WriteV(write)) => (3, u64::from(write.total_len)),
                _ => return,
            };
            (header.request_id, kind, size)
        };
        self.note(now, request, kind, size, connection);
    }

    /// I/O request `request` of `kind` and `size` bytes arrived `now` (a
    /// full table, or an id already noted, notes nothing).
    fn note(
        &mut self,
        now: Instant,
        request: u32,
        kind: usize,
        size: u64,
        connection: Option<&tracing::Span>,
    ) {
        let mut free = None;
        for i in self.probe(request) {
            match &self.entries[i] {
                Some(timed) if timed.request == request => return,
                Some(_) => {}
                None => {
                    free = Some(i);
                    break;
                }
            }
        }
        let Some(free) = free else { return };
        // `None`: nobody takes request spans (asked once per round).
        let span = match connection {
            Some(connection) => received_span(connection, request, kind, size),
            None => tracing::Span::none(),
        };
        self.entries[free] = Some(Timed {
            request,
            kind,
            size,
            started: now,
            span,
        });
    }

    /// The status block of `request` is being posted.
    fn finished(&mut self, request: u32) -> Option<Timed> {
        let slot = self.probe(request).find(|&i| {
            self.entries[i]
                .as_ref()
                .is_some_and(|timed| timed.request == request)
        })?;
        self.entries[slot].take()
    }
}

/// Ask the CPU for the cache line at `address` of a mapping, as a read's
/// data write is posted: the copy that moves the data (the loopback's
/// `memcpy` when the client next enters the transport, the kernel's for
/// `tcp` and cma) then starts with the page's translation in the TLB and
/// its first line on the way, instead of stalling on both. One line, not
/// the read's whole range: prefetching every line of a 4 KiB read fills
/// the core's line-fill buffers and stalls the server at once (measured:
/// slower than no prefetch). A hint only — it never faults, whatever the
/// address, and reads nothing the program sees.
#[inline(always)]
fn prefetch_line(address: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it accesses no memory the program can
    // observe and raises no fault, for any address.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
            address as *const i8,
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::Root;

    /// A connection accepted over one end of a loopback pair (the other end
    /// is kept so the pair stays up).
    fn accepted(
        dir: &std::path::Path,
    ) -> (
        ServerConnection<rdio_loopback::Endpoint>,
        rdio_loopback::Endpoint,
    ) {
        let (client, server_end) = rdio_loopback::pair(rdio_loopback::Config::default());
        let options = crate::embedded::EmbeddedOptions::default().server;
        let server = Server::new(Root::new(dir).expect("root"), options);
        (server.accept(server_end).expect("accept"), client)
    }

    fn completion(wr_id: u64) -> Completion {
        Completion {
            wr_id,
            kind: CompletionKind::Send,
            status: Ok(()),
        }
    }

    /// Completions the driver cannot account for end the connection as an
    /// internal error instead of being ignored.
    #[test]
    fn bounce_chunks_fit_one_largest_read_and_the_budget() {
        // 8 MiB reads, two buffers: 64 chunks of 256 KiB.
        assert_eq!(bounce_chunks(8 << 20, 2, 1024), (256 << 10, 64));
        // A send queue of 64: no more than 32 chunks for the budget, but
        // one largest read (32 chunks, 16 segments) must always fit.
        assert_eq!(bounce_chunks(8 << 20, 2, 64), (256 << 10, 48));
        assert_eq!(bounce_chunks(8 << 20, 8, 128), (256 << 10, 64));
        // 1 MiB reads: 64 KiB chunks (the floor), 32 for the budget, but
        // one read in 16 segments may need 16 + 16.
        assert_eq!(bounce_chunks(1 << 20, 2, 1024), (64 << 10, 32));
        assert_eq!(bounce_chunks(1 << 20, 1, 1024), (64 << 10, 32));
        // Reads smaller than the floor: one chunk per read.
        assert_eq!(bounce_chunks(4096, 2, 1024), (4096, 17));
        // An uneven limit: every piece of a largest read still fits.
        let (chunk, count) = bounce_chunks((8 << 20) + 1, 2, 1024);
        assert!(count >= ((8 << 20) + 1usize).div_ceil(chunk) + MAX_SEGMENTS);
        assert!(((8 << 20) + 1usize).div_ceil(chunk) + MAX_SEGMENTS - 1 <= MAX_PIECES);
        for max_io in [
            1,
            4096,
            65_537,
            (2 << 20) - 1,
            2 << 20,
            (2 << 20) + 31,
            8 << 20,
            u32::MAX as usize,
        ] {
            let (chunk, _) = bounce_chunks(max_io, 2, 0);
            assert!(
                max_io.div_ceil(chunk) + MAX_SEGMENTS - 1 <= MAX_PIECES,
                "{max_io}"
            );
        }
        // Degenerate inputs do not divide by zero.
        assert_eq!(bounce_chunks(0, 0, 0), (1, 17));
    }

    #[test]
    fn a_completion_never_posted_ends_the_connection() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut conn, _client) = accepted(dir.path());
        let now = conn.clock.now();
        let internal =
            |result| matches!(result, Err(ConnectionEnd::Terminated(Violation::Internal)));
        // An id of no kind the driver issues.
        assert!(internal(conn.complete(now, &completion(0))));
        // A send buffer that is free (no send was posted from it).
        let send = Work::Send {
            buffer: 0,
            data: None,
        };
        assert!(internal(conn.complete(now, &completion(send.id()))));
        // RDMA writes from a bounce buffer or a mapping none were posted from.
        assert!(internal(
            conn.complete(now, &completion(Work::ReadData(0).id()))
        ));
        assert!(internal(
            conn.complete(now, &completion(Work::MappedRead(0).id()))
        ));
        // A send buffer taken and posted from completes once, not twice.
        let buffer = conn.sends.take().expect("a free send buffer");
        let sent = Work::Send { buffer, data: None }.id();
        assert!(conn.complete(now, &completion(sent)).is_ok());
        assert!(internal(conn.complete(now, &completion(sent))));
    }
}
