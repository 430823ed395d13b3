//! [`CmaTransport`]: the rdio transport trait between two processes on one
//! host — RDMA writes by `process_vm_writev(2)`, sends as frames on a Unix
//! stream socket (see the crate docs for the whole design).

use std::collections::{HashMap, VecDeque};
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use rdio_transport::{
    Access, Caps, Completion, CompletionKind, RegionId, RemoteBuf, Slice, Transport,
    TransportError, WcError, WrId,
};

use crate::frame::{self, ADVERTISE_LEN, HEADER, Header, Kind, REF_LEN, TARGET_LEN};
use crate::region::{self, PeerWindows, Region, RegionTable};
use crate::sys::{self, IOV_MAX, Span};

/// Most gather elements per send or write.
pub const MAX_SGE: usize = 4;

/// What [`Transport::caps`] reports. Sends are bounded so that a hostile
/// or buggy peer's frame header cannot announce more than a receive
/// could ever take; writes by the `u32` length of a [`RemoteBuf`].
pub const CAPS: Caps = Caps {
    max_message: 16 << 20,
    max_write: u32::MAX as usize,
    max_sge: MAX_SGE,
    max_recv: 1024,
    max_send: 1024,
    // Regions are private anonymous pages (or the caller's memory) the
    // peer writes with process_vm_writev: nothing is pinned.
    pins_registrations: false,
    // Inline payloads travel in the outbox entry itself (`INLINE`).
    max_inline: INLINE,
    // Posts wait in the outbox for the next flush, poll or wait (`FLUSH_AT`).
    deferred_posts: true,
};

/// Largest inline payload ([`Transport::post_send_inline`],
/// [`Transport::post_write_inline`]): copied into the outbox entry at post
/// time, so a request or a status block takes no registered buffer.
pub const INLINE: usize = 128;

/// Bytes read from the socket at a time while looking for frame headers;
/// a send's payload larger than [`DIRECT_READ`] that is not yet in this
/// buffer is read straight into the posted receive instead.
const STAGE: usize = 64 << 10;

/// See [`STAGE`].
const DIRECT_READ: usize = 16 << 10;

/// Sends of at least this many bytes go by reference ([`Kind::SendRef`]):
/// the receiver copies them out of the sender's memory with one
/// `process_vm_readv` instead of two copies through the socket, at the
/// price of an acknowledgement frame back. Below it, the extra frame and
/// system call cost more than the copy saves.
const SEND_BY_REFERENCE: usize = 64 << 10;

/// Control payload room after a header: an advertisement, or a
/// [`Kind::SendRef`]'s pieces.
const CONTROL: usize = MAX_SGE * REF_LEN;

/// Room in an outbox entry for a control payload or inline data.
const EXTRA: usize = if CONTROL > INLINE { CONTROL } else { INLINE };

/// Posted work is handed on (writes carried out, frames written to the
/// socket) in `flush`, `poll_completions` and `wait`, so that a burst of
/// posts goes out as one batch: its RDMA writes in one `process_vm_writev`
/// and its frames in one `sendmsg`. A post also flushes once this many
/// requests are waiting, which bounds the outbox of a driver that posts
/// without polling.
const FLUSH_AT: usize = 256;

/// Outbox entries one batch covers: frames gathered into one `sendmsg`,
/// and entries whose RDMA writes go into one `process_vm_writev`. A 4 KiB
/// read at queue depth 32 is 64 entries on the server (data write, status
/// write-with-immediate) and 32 sends on the client; each frame takes at
/// most `3 + MAX_SGE` iovecs and each write `MAX_SGE`, so 128 entries
/// stay within [`IOV_MAX`] either way.
const BATCH: usize = 128;

/// How long after its last post or completion a waiting transport keeps
/// polling the socket before it blocks in `poll(2)`; see
/// [`CmaTransport::set_spin_window`].
///
/// A thread asleep in `poll` is woken by the peer's `sendmsg`, and on this
/// VM a wake-up of an idle vCPU costs tens of microseconds — more than a
/// 4 KiB read takes end to end. Measured with `rdio bench --server
/// --transport cma --ops read --bytes 128MiB` (docs/PERFORMANCE.md, "cma"):
/// 4 KiB at queue depth 1 went from 69.5 µs p50 (13.6 k IOPS) without
/// spinning to 10.2 µs (94.9 k IOPS) with 200 µs, and 1 ms was no better
/// (11.6 µs); 1 MiB reads (≈ 260 µs each) did not change. 200 µs covers
/// the answer to any small request while an idle connection stops
/// spinning 0.2 ms after its last completion.
pub const DEFAULT_SPIN_WINDOW: Duration = Duration::from_micros(200);

/// Where the connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    Up,
    /// The peer went away, or one side saw a protocol or access error.
    Lost,
    /// [`Transport::disconnect`] was called.
    Closed,
}

/// Regions a request holds busy until its completion is drained.
#[derive(Clone, Copy, Debug, Default)]
struct Held {
    ids: [Option<RegionId>; MAX_SGE],
}

impl Held {
    fn one(id: RegionId) -> Self {
        let mut held = Self::default();
        held.ids[0] = Some(id);
        held
    }

    fn iter(&self) -> impl Iterator<Item = RegionId> + '_ {
        self.ids.iter().flatten().copied()
    }
}

/// A completion waiting to be drained, with the regions it releases.
struct Ready {
    completion: Completion,
    held: Held,
    /// Counts against `max_send` (else `max_recv`) until drained.
    send_queue: bool,
}

/// A send, write or control frame waiting in the outbox, in posting order.
struct Outgoing {
    /// The work request it completes; `None` for control frames.
    work: Option<(WrId, CompletionKind)>,
    /// An RDMA write to place before the frame (if any) goes out.
    write: Option<RemoteBuf>,
    /// A write carried whole in the frame ([`Kind::WriteInline`]), until
    /// its turn comes in [`CmaTransport::place_writes`]: there it is
    /// checked against the peer's windows and counted as unacknowledged,
    /// before any later write is placed.
    carried: Option<RemoteBuf>,
    /// The frame carries a write's target between header and payload.
    target: Option<[u8; TARGET_LEN]>,
    /// The `placed` word its header went out with (see
    /// [`CmaTransport::stamp_headers`]).
    placed: u32,
    /// The frame header, if a frame is sent at all (a plain write has none).
    header: Option<[u8; HEADER]>,
    /// Control payload after the header, or an inline send's data (both
    /// go into the socket after the header); an inline write's data.
    extra: [u8; EXTRA],
    extra_len: usize,
    /// An inline write: its source is its gather list (if any) and then
    /// the first `extra_len` bytes of `extra`, which then are not part of
    /// the frame ([`Transport::post_write_inline`],
    /// [`Transport::post_write_tail`]).
    inline_write: bool,
    /// A send whose data the receiver copies out of our memory: it
    /// completes on the receiver's [`Kind::SendAck`], not once its frame
    /// is in the socket.
    by_reference: bool,
    /// The RDMA write was refused (outside the peer's windows, or
    /// `process_vm_writev` failed): the entry fails with this once every
    /// entry before it is out.
    failed: Option<WcError>,
    /// Gather list: the send's payload, or the write's source.
    sges: [Span; MAX_SGE],
    sge_count: usize,
    held: Held,
    /// Frame bytes already handed to the socket.
    written: usize,
    /// Its success is reported by a completion; an unsignaled write
    /// ([`Transport::post_write_tail_unsignaled`]) that succeeds only
    /// gives its regions and send-queue place back.
    signaled: bool,
}

impl Outgoing {
    fn control(header: Header, extra: &[u8]) -> Self {
        let mut out = Self::empty(None);
        out.header = Some(header.encode());
        out.extra[..extra.len()].copy_from_slice(extra);
        out.extra_len = extra.len();
        out
    }

    fn empty(work: Option<(WrId, CompletionKind)>) -> Self {
        Self {
            work,
            write: None,
            carried: None,
            target: None,
            placed: 0,
            header: None,
            extra: [0; EXTRA],
            extra_len: 0,
            inline_write: false,
            by_reference: false,
            failed: None,
            sges: [Span {
                ptr: std::ptr::null_mut(),
                len: 0,
            }; MAX_SGE],
            sge_count: 0,
            held: Held::default(),
            written: 0,
            signaled: true,
        }
    }

    fn sges(&self) -> &[Span] {
        &self.sges[..self.sge_count]
    }

    /// Header, control payload and (for a send by value) the gathered data.
    fn frame_len(&self) -> usize {
        match self.header {
            None => 0,
            Some(_) if self.carries_data() => {
                HEADER + self.extra_len + self.sges().iter().map(|s| s.len).sum::<usize>()
            }
            Some(_) => HEADER + self.target_len() + self.frame_extra(),
        }
    }

    /// Bytes of a carried write's target in the frame.
    fn target_len(&self) -> usize {
        if self.target.is_some() { TARGET_LEN } else { 0 }
    }

    /// Whether the gather list's bytes go into the socket after the header.
    fn carries_data(&self) -> bool {
        !self.is_write() && !self.by_reference
    }

    fn is_write(&self) -> bool {
        matches!(self.work, Some((_, CompletionKind::Write)))
    }

    /// Bytes of `extra` that go into the frame (none of an inline write's).
    fn frame_extra(&self) -> usize {
        if self.inline_write { 0 } else { self.extra_len }
    }

    /// Bytes a write places: its gather list's, then its inline data.
    fn data_len(&self) -> usize {
        let gathered: usize = self.sges().iter().map(|s| s.len).sum();
        if self.inline_write {
            gathered + self.extra_len
        } else {
            gathered
        }
    }

    /// Local iovecs a write places from: its gather list, then the
    /// entry's own inline bytes. The entry must stay where it is until
    /// they are used.
    fn write_sources(&self, local: &mut Vec<libc::iovec>) {
        local.extend(self.sges().iter().map(|span| sys::iovec(*span, 0)));
        if self.inline_write {
            local.push(libc::iovec {
                iov_base: self.extra.as_ptr().cast_mut().cast(),
                iov_len: self.extra_len,
            });
        }
    }

    /// How many local iovecs [`Outgoing::write_sources`] adds.
    fn write_pieces(&self) -> usize {
        self.sge_count + usize::from(self.inline_write)
    }

    /// Whether the entry's frame may go out: its write (if any) is placed,
    /// or, carried in the frame, checked and counted.
    fn frame_ready(&self) -> bool {
        self.write.is_none() && self.carried.is_none() && self.failed.is_none()
    }

    /// Append the iovecs of the frame's unsent bytes to `iov`.
    fn unsent(&self, iov: &mut Vec<libc::iovec>) {
        let Some(header) = &self.header else { return };
        let mut skip = self.written;
        let mut parts: [Span; 3 + MAX_SGE] = [Span {
            ptr: std::ptr::null_mut(),
            len: 0,
        }; 3 + MAX_SGE];
        parts[0] = Span {
            ptr: header.as_ptr().cast_mut(),
            len: HEADER,
        };
        let mut n = 1;
        if let Some(target) = &self.target {
            parts[n] = Span {
                ptr: target.as_ptr().cast_mut(),
                len: TARGET_LEN,
            };
            n += 1;
        }
        parts[n] = Span {
            ptr: self.extra.as_ptr().cast_mut(),
            len: self.frame_extra(),
        };
        n += 1;
        if self.carries_data() {
            for span in self.sges() {
                parts[n] = *span;
                n += 1;
            }
        }
        for part in &parts[..n] {
            if skip >= part.len {
                skip -= part.len;
                continue;
            }
            iov.push(sys::iovec(*part, skip));
            skip = 0;
        }
    }
}

/// A posted receive.
struct PostedRecv {
    wr_id: WrId,
    region: RegionId,
    span: Span,
}

/// Where the incoming byte stream stands.
#[derive(Clone, Copy, Debug)]
enum Incoming {
    /// Between frames.
    Header,
    /// Filling the front posted receive with a send's `len` bytes.
    Recv { len: usize, filled: usize },
    /// Reading an advertisement's payload for window `key`.
    Advertise { key: u32, filled: usize },
    /// Reading the pieces of a send of `total` bytes by reference.
    SendRef {
        total: usize,
        len: usize,
        filled: usize,
    },
    /// Reading a write carried whole ([`Kind::WriteInline`]): target and
    /// data, `len` bytes in all, into `CmaTransport::carried_in`.
    WriteInline { imm: u32, len: usize, filled: usize },
}

/// Most data bytes a write carried whole takes (`Kind::WriteInline`):
/// a write-with-immediate of at most this many bytes, all inline
/// ([`Transport::post_write_inline`]), crosses the socket in its frame.
pub const CARRIED_WRITE: usize = INLINE;

/// A write carried whole whose placement the peer has not acknowledged
/// yet: no later write to the same bytes may be placed directly before it
/// is, or the earlier bytes would land last.
#[derive(Clone, Copy, Debug)]
struct Unacked {
    /// Its number among the writes this side carried (wrapping).
    seq: u32,
    start: u64,
    end: u64,
}

/// One side of a connection between two processes on this host,
/// implementing [`Transport`]. Created by [`connect`](crate::connect) or
/// [`Listener::accept`](crate::Listener::accept).
pub struct CmaTransport {
    socket: UnixStream,
    /// The peer process, from `SO_PEERCRED` at connection setup.
    peer: libc::pid_t,
    regions: RegionTable,
    windows: PeerWindows,
    /// Deregistered remotely writable regions, by key, kept mapped until
    /// the peer acknowledges the revocation (it may be writing into one).
    revoked: HashMap<u32, Region>,
    outbox: VecDeque<Outgoing>,
    /// Sends by reference whose frame is out, oldest first, waiting for
    /// the receiver's acknowledgement (their buffers stay busy).
    awaiting: VecDeque<Outgoing>,
    recvs: VecDeque<PostedRecv>,
    /// Sends fill the receive posted last first ([`Self::set_newest_first`]).
    newest_first: bool,
    incoming: Incoming,
    stage: Box<[u8]>,
    stage_start: usize,
    stage_end: usize,
    /// Payload of the control frame being read.
    control: [u8; CONTROL],
    /// Target and data of the carried write being read (boxed: kept out
    /// of the transport value, which callers move and put in enums).
    carried_in: Box<[u8; TARGET_LEN + CARRIED_WRITE]>,
    /// Writes this side carried whole and has counted (numbered from 0).
    carried_out: u32,
    /// Of those, the ones the peer has not acknowledged, oldest first.
    unacked: VecDeque<Unacked>,
    /// Carried writes the peer sent and this side placed: every frame
    /// this side sends says so in its `placed` word.
    placed: u32,
    /// The highest `placed` a frame of ours took out whole: while it is
    /// below `placed`, an acknowledgement is owed.
    placed_told: u32,
    ready: VecDeque<Ready>,
    /// Scratch iovecs of one batch, kept to spare an allocation per flush:
    /// the frames of a `sendmsg`, and the sources and targets of a
    /// `process_vm_writev`.
    frame_iov: Vec<libc::iovec>,
    write_local: Vec<libc::iovec>,
    write_remote: Vec<libc::iovec>,
    /// Sends and writes posted and not drained, receives likewise.
    tx_outstanding: usize,
    rx_outstanding: usize,
    link: Link,
    last_error: Option<String>,
    spin_window: Duration,
    /// When `wait` last saw activity: the spin window runs from here.
    last_activity: Option<Instant>,
    /// A post or completion happened since `wait` last read the clock.
    /// Posts and completions only set this; `wait`, which reads the clock
    /// anyway, turns it into `last_activity` (a clock read per post and
    /// per received message was 2–3% of a 4 KiB request's CPU).
    active: bool,
    /// What the peer read at the handshake to prove cross-memory attach
    /// works; kept so its address stays valid for the connection.
    _probe: Box<[u8; 16]>,
}

// SAFETY: the raw pointers inside (`Span`s of posted work) point into
// regions the transport owns, or memory lent to it that is `Send + Sync`;
// every method takes `&mut self` or only reads.
unsafe impl Send for CmaTransport {}

/// The errno of a failed `process_vm_writev` as a completion error.
fn write_error(code: i32) -> WcError {
    match code {
        // The target range is not mapped in the peer (or a source page is
        // gone), or we may not attach to it.
        libc::EFAULT | libc::EPERM | libc::EACCES => WcError::RemoteAccess,
        libc::ESRCH => WcError::Disconnected,
        code => WcError::Other(code),
    }
}

fn recv_kind_failed() -> CompletionKind {
    CompletionKind::Recv { len: 0 }
}

impl CmaTransport {
    /// A connected transport over `socket` (nonblocking, handshake done) to
    /// process `peer`; `probe` is this side's handshake probe.
    pub(crate) fn new(
        socket: UnixStream,
        peer: libc::pid_t,
        probe: Box<[u8; 16]>,
        first_key: u32,
    ) -> Self {
        Self {
            socket,
            peer,
            regions: RegionTable::new(first_key),
            windows: PeerWindows::default(),
            revoked: HashMap::new(),
            outbox: VecDeque::new(),
            awaiting: VecDeque::new(),
            recvs: VecDeque::new(),
            newest_first: false,
            incoming: Incoming::Header,
            stage: vec![0u8; STAGE].into_boxed_slice(),
            stage_start: 0,
            stage_end: 0,
            control: [0; CONTROL],
            carried_in: Box::new([0; TARGET_LEN + CARRIED_WRITE]),
            carried_out: 0,
            unacked: VecDeque::new(),
            placed: 0,
            placed_told: 0,
            ready: VecDeque::new(),
            frame_iov: Vec::with_capacity(IOV_MAX),
            write_local: Vec::with_capacity(IOV_MAX),
            write_remote: Vec::with_capacity(IOV_MAX),
            tx_outstanding: 0,
            rx_outstanding: 0,
            link: Link::Up,
            last_error: None,
            spin_window: DEFAULT_SPIN_WINDOW,
            last_activity: None,
            active: false,
            _probe: probe,
        }
    }

    /// The peer's process id (kernel-verified at connection setup).
    pub fn peer_pid(&self) -> i32 {
        self.peer
    }

    /// Why the connection failed, in words, once it has.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Whether the connection is still up.
    pub fn is_connected(&self) -> bool {
        self.link == Link::Up
    }

    /// Posted work requests referencing `region` whose completions have not
    /// been drained (0 for unknown regions).
    pub fn posted_references(&self, region: RegionId) -> u32 {
        self.regions.busy(region)
    }

    /// How long [`Transport::wait`] keeps polling the socket after the last
    /// post or completion before it sleeps in `poll(2)`
    /// ([`DEFAULT_SPIN_WINDOW`] unless set; zero sleeps at once). While the
    /// window is open `wait` reads the socket and yields the CPU between
    /// reads, so a thread sharing the CPU still runs.
    pub fn set_spin_window(&mut self, window: Duration) {
        self.spin_window = window;
    }

    /// Fill posted receives newest first instead of in posting order (the
    /// default, as an RC queue pair consumes its receive queue). Each send
    /// then lands in the receive posted last: the buffer a driver just
    /// reposted, most likely still in cache. A driver that finds its
    /// receives by work-request id, as rdio's do, loses nothing; with 64
    /// credits of 1 MiB receive buffers taken in posting order, every 1 MiB
    /// write landed in memory untouched for 63 messages and cost the server
    /// a third of its time in cache misses (docs/PERFORMANCE.md, "Stop 34").
    /// Affects receives posted from now on.
    pub fn set_newest_first(&mut self, newest_first: bool) {
        self.newest_first = newest_first;
    }

    fn ensure_up(&self) -> Result<(), TransportError> {
        if self.link == Link::Up {
            Ok(())
        } else {
            Err(TransportError::Disconnected)
        }
    }

    /// Resolve a gather list, checking every element.
    fn gather(&self, sges: &[Slice]) -> Result<([Span; MAX_SGE], Held, usize), TransportError> {
        if sges.len() > MAX_SGE {
            return Err(TransportError::TooManySegments);
        }
        let mut spans = [Span {
            ptr: std::ptr::null_mut(),
            len: 0,
        }; MAX_SGE];
        let mut held = Held::default();
        let mut total = 0usize;
        for (i, sge) in sges.iter().enumerate() {
            spans[i] = self.regions.resolve(*sge)?.span;
            held.ids[i] = Some(sge.region);
            total = total
                .checked_add(sge.len)
                .ok_or(TransportError::MessageTooLarge)?;
        }
        Ok((spans, held, total))
    }

    /// An outbox entry for an inline post of `data`, copied in.
    fn inline_op(
        &self,
        wr_id: WrId,
        kind: CompletionKind,
        data: &[u8],
    ) -> Result<Outgoing, TransportError> {
        self.ensure_up()?;
        if data.len() > INLINE {
            return Err(TransportError::MessageTooLarge);
        }
        if self.tx_outstanding >= CAPS.max_send {
            return Err(TransportError::QueueFull);
        }
        let mut op = Outgoing::empty(Some((wr_id, kind)));
        op.extra[..data.len()].copy_from_slice(data);
        op.extra_len = data.len();
        Ok(op)
    }

    /// Queue an RDMA write of `sges` and then the inline bytes `tail`
    /// (copied into the entry now) to `dst`: `post_write` (no tail),
    /// `post_write_inline` (no gather list), `post_write_tail` and, not
    /// `signaled`, `post_write_tail_unsignaled`.
    fn write_op(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        tail: &[u8],
        dst: RemoteBuf,
        imm: Option<u32>,
        signaled: bool,
    ) -> Result<(), TransportError> {
        self.ensure_up()?;
        if tail.len() > INLINE {
            return Err(TransportError::MessageTooLarge);
        }
        let (spans, held, gathered) = self.gather(sges)?;
        let total = gathered
            .checked_add(tail.len())
            .filter(|&total| total <= CAPS.max_write)
            .ok_or(TransportError::MessageTooLarge)?;
        if total > dst.len as usize {
            return Err(TransportError::OutOfBounds);
        }
        let mut op = self.inline_op(wr_id, CompletionKind::Write, tail)?;
        op.signaled = signaled;
        if let (Some(imm), true, 1..=CARRIED_WRITE) = (imm, sges.is_empty(), tail.len()) {
            // A small write-with-immediate (a status block) goes whole in
            // its frame: one `sendmsg` instead of a `process_vm_writev`
            // and a `sendmsg`. The peer places it before completing the
            // receive, and acknowledges it, so that no later write to the
            // same bytes overtakes it (`place_writes`).
            op.carried = Some(dst);
            op.target = Some(frame::target(dst.addr, dst.key));
            let len = (TARGET_LEN + tail.len()) as u32;
            op.header = Some(Header::new(Kind::WriteInline, len, imm).encode());
            return self.enqueue(op);
        }
        op.inline_write = !tail.is_empty();
        // A zero-length write names no memory: nothing to place or check.
        op.write = (total > 0).then_some(dst);
        op.header = imm.map(|imm| Header::new(Kind::WriteImm, 0, imm).encode());
        op.sges = spans;
        op.sge_count = sges.len();
        op.held = held;
        self.enqueue(op)
    }

    /// Queue posted work, holding its regions; flush once enough waits.
    fn enqueue(&mut self, op: Outgoing) -> Result<(), TransportError> {
        for id in op.held.iter() {
            self.regions.acquire(id);
        }
        if op.work.is_some() {
            self.tx_outstanding += 1;
        }
        self.outbox.push_back(op);
        self.active = true;
        if self.outbox.len() >= FLUSH_AT {
            // Read first, as every flush does: a peer that died shows as a
            // closed socket here, just before any write aimed at its pid.
            self.progress();
        }
        Ok(())
    }

    fn push_ready(&mut self, completion: Completion, held: Held, send_queue: bool) {
        self.ready.push_back(Ready {
            completion,
            held,
            send_queue,
        });
    }

    fn complete_op(&mut self, op: Outgoing, status: Result<(), WcError>) {
        if !op.signaled && status.is_ok() {
            // Nothing to report: what `drain` would do with it, now (an
            // unsignaled op is a write, with a work request).
            self.retire(&op.held, true);
            return;
        }
        if let Some((wr_id, kind)) = op.work {
            let completion = Completion {
                wr_id,
                kind,
                status,
            };
            self.push_ready(completion, op.held, true);
        }
    }

    fn complete_recv(&mut self, kind: CompletionKind, status: Result<(), WcError>) {
        if let Some(recv) = self.recvs.pop_front() {
            let completion = Completion {
                wr_id: recv.wr_id,
                kind,
                status,
            };
            self.push_ready(completion, Held::one(recv.region), false);
        }
        self.active = true;
    }

    /// Read what the socket has, then hand queued work to it. The only
    /// caller of [`send_outbox`](Self::send_outbox), so writes are always
    /// carried out right after a read of the socket (docs/SECURITY.md,
    /// "pid reuse").
    fn progress(&mut self) {
        self.receive();
        self.send_outbox();
    }

    /// Carry out queued work in order, a batch at a time: place the RDMA
    /// writes of the next [`BATCH`] entries with one `process_vm_writev`
    /// ([`place_writes`](Self::place_writes)), then send the frames of
    /// those entries with one `sendmsg`, until the outbox is empty or the
    /// socket full. A write may so land before the frames of earlier
    /// entries are in the socket — never before they were posted, and
    /// never after a later frame: the peer sees a write-with-immediate's
    /// notice, or a send, only once every earlier write is in place, which
    /// is the ordering the trait promises.
    fn send_outbox(&mut self) {
        let mut iov = std::mem::take(&mut self.frame_iov);
        while self.link == Link::Up && !self.outbox.is_empty() {
            self.place_writes();
            if let Some(error) = self.outbox.front().and_then(|op| op.failed) {
                // Every entry before it is out: fail it, and the rest.
                self.fail_front(error);
                break;
            }
            if !self.send_frames(&mut iov) {
                break;
            }
        }
        self.frame_iov = iov;
    }

    /// Send the frames of the outbox's first entries whose writes are
    /// placed, several per `sendmsg`, and complete the entries that went
    /// out whole. `false` when the socket took less than offered (full) or
    /// the connection failed.
    fn send_frames(&mut self, iov: &mut Vec<libc::iovec>) -> bool {
        self.stamp_headers();
        iov.clear();
        let mut frames = 0;
        for op in &self.outbox {
            if frames == BATCH || !op.frame_ready() || iov.len() + 3 + MAX_SGE > IOV_MAX {
                break;
            }
            op.unsent(iov);
            frames += 1;
        }
        if frames == 0 {
            // The front entry's write could not be gathered: cannot
            // happen (one entry always fits), but never spin on it.
            return false;
        }
        let wanted: usize = iov.iter().map(|v| v.iov_len).sum();
        let mut sent = 0;
        if wanted > 0 {
            // SAFETY: every iovec points into a frame header or payload
            // owned by an outbox entry, or into a region that entry holds
            // busy (so it is neither freed nor written meanwhile).
            match unsafe { sys::send_spans(self.socket.as_fd(), iov) } {
                Ok(n) => sent = n,
                Err(code) => {
                    self.last_error = Some(format!(
                        "sending to the peer failed: {}",
                        std::io::Error::from_raw_os_error(code)
                    ));
                    self.teardown(Link::Lost, WcError::Disconnected, WcError::Disconnected);
                    return false;
                }
            }
        }
        self.credit_frames(frames, sent);
        sent == wanted
    }

    /// Write the current `placed` count into the headers of the frames
    /// about to go that have not started yet: each acknowledges every
    /// carried write placed so far.
    fn stamp_headers(&mut self) {
        let placed = self.placed;
        for op in self.outbox.iter_mut().take(BATCH) {
            if !op.frame_ready() {
                break;
            }
            if let (Some(header), 0) = (&mut op.header, op.written) {
                frame::set_placed(header, placed);
                op.placed = placed;
            }
        }
    }

    /// Credit `sent` bytes to the first `frames` entries in order;
    /// finished ones complete (or, sent by reference, await their
    /// acknowledgement).
    fn credit_frames(&mut self, frames: usize, sent: usize) {
        let mut left = sent;
        let mut finished_any = false;
        for _ in 0..frames {
            let Some(op) = self.outbox.front_mut() else {
                break;
            };
            let remaining = op.frame_len() - op.written;
            if left < remaining {
                op.written += left;
                break;
            }
            left -= remaining;
            if let Some(op) = self.outbox.pop_front() {
                if op.header.is_some() {
                    self.placed_told = op.placed;
                }
                if op.by_reference {
                    self.awaiting.push_back(op);
                } else {
                    self.complete_op(op, Ok(()));
                }
            }
            finished_any = true;
        }
        if finished_any {
            self.active = true;
        }
    }

    /// Carry out the RDMA writes still pending among the outbox's first
    /// [`BATCH`] entries, in order, with one `process_vm_writev` of several
    /// local and remote iovecs (a write is one remote iovec). Stops at the
    /// first write outside the peer's windows, and marks it failed; a
    /// write the kernel refuses is marked failed with its errno, the
    /// writes before it being placed. A failed entry fails when it reaches
    /// the front, after every earlier entry went out: errors reach the
    /// work request they belong to.
    fn place_writes(&mut self) {
        let mut local = std::mem::take(&mut self.write_local);
        let mut remote = std::mem::take(&mut self.write_remote);
        local.clear();
        remote.clear();
        let mut refused = None;
        for (i, op) in self.outbox.iter_mut().enumerate().take(BATCH) {
            if op.failed.is_some() {
                break;
            }
            if let Some(dst) = op.carried {
                // Its turn: checked as a write placed here would be, and
                // counted before any later write is placed.
                if !self.windows.allows(dst, op.extra_len) {
                    refused = Some((i, dst, op.extra_len));
                    break;
                }
                self.unacked.push_back(Unacked {
                    seq: self.carried_out,
                    start: dst.addr,
                    end: dst.addr.saturating_add(op.extra_len as u64),
                });
                self.carried_out = self.carried_out.wrapping_add(1);
                op.carried = None;
                continue;
            }
            let Some(dst) = op.write else { continue };
            let total = op.data_len();
            // Checked here, at execution and not at post time: windows
            // come and go as the peer's advertisements and revocations
            // arrive.
            if !self.windows.allows(dst, total) {
                refused = Some((i, dst, total));
                break;
            }
            // Bytes a carried write still on its way will write: this one
            // waits for the peer's acknowledgement (it and everything
            // after it stay queued; the frames before it go).
            let end = dst.addr.saturating_add(total as u64);
            if self
                .unacked
                .iter()
                .any(|u| u.start < end && dst.addr < u.end)
            {
                break;
            }
            if local.len() + op.write_pieces() > IOV_MAX || remote.len() == IOV_MAX {
                break;
            }
            op.write_sources(&mut local);
            remote.push(libc::iovec {
                iov_base: dst.addr as usize as *mut libc::c_void,
                iov_len: total,
            });
        }
        if !remote.is_empty() {
            // SAFETY: the local iovecs lie in regions their entries hold
            // busy (resolved at post time, not deregistrable until
            // drained), or in the inline bytes of outbox entries, which
            // nothing moves or changes before this call returns (the
            // outbox is borrowed through `&mut self`), so they are
            // readable; every target range is inside
            // a window the peer lent (checked above, under `&mut self`).
            let result = unsafe { sys::write_remote_vectored(self.peer, &mut local, &mut remote) };
            self.settle_writes(remote.len(), result);
        }
        if let Some((i, dst, total)) = refused
            && self.outbox.iter().take(i).all(|op| op.failed.is_none())
            && let Some(op) = self.outbox.get_mut(i)
        {
            op.failed = Some(WcError::RemoteAccess);
            self.last_error = Some(format!(
                "RDMA write of {total} bytes to {:#x} (key {}) lies outside every window the peer advertised",
                dst.addr, dst.key
            ));
        }
        self.write_local = local;
        self.write_remote = remote;
    }

    /// Record the outcome of a batch of `count` writes (the first `count`
    /// pending ones of the outbox): placed ones lose their pending write;
    /// on an error, the write holding the first byte that did not move is
    /// marked failed and the ones after it stay pending (never placed).
    fn settle_writes(&mut self, count: usize, result: Result<usize, (usize, i32)>) {
        let (mut moved, error) = match result {
            Ok(moved) => (moved, None),
            Err((moved, code)) => (moved, Some(code)),
        };
        let peer = self.peer;
        let mut seen = 0;
        for op in self.outbox.iter_mut() {
            if seen == count {
                break;
            }
            let Some(dst) = op.write else { continue };
            seen += 1;
            let total = op.data_len();
            if moved >= total {
                moved -= total;
                op.write = None;
                continue;
            }
            if let Some(code) = error {
                op.failed = Some(write_error(code));
                self.last_error = Some(format!(
                    "process_vm_writev of {total} bytes into process {peer} at {:#x} failed: {}",
                    dst.addr,
                    std::io::Error::from_raw_os_error(code)
                ));
            }
            break;
        }
    }

    /// The front entry failed with `error`: complete it so, and put the
    /// connection in the error state (everything else is flushed).
    fn fail_front(&mut self, error: WcError) {
        if let Some(op) = self.outbox.pop_front() {
            self.complete_op(op, Err(error));
        }
        let rest = if error == WcError::Disconnected {
            WcError::Disconnected
        } else {
            WcError::Flushed
        };
        self.teardown(Link::Lost, rest, rest);
    }

    /// Read frames until the socket is empty.
    fn receive(&mut self) {
        while self.link == Link::Up {
            let available = self.stage_end - self.stage_start;
            match self.incoming {
                Incoming::Header => {
                    if available >= HEADER {
                        let mut bytes = [0u8; HEADER];
                        bytes.copy_from_slice(
                            &self.stage[self.stage_start..self.stage_start + HEADER],
                        );
                        self.stage_start += HEADER;
                        self.on_header(&bytes);
                    } else if !self.fill_stage() {
                        return;
                    }
                }
                Incoming::Recv { len, filled } => {
                    let Some(recv) = self.recvs.front() else {
                        // Cannot happen: the header was only accepted with
                        // a receive posted, and nothing else pops one.
                        self.protocol_error(
                            WcError::RemoteOperation,
                            "receive vanished mid-frame".into(),
                        );
                        return;
                    };
                    let dest = recv.span.ptr.wrapping_add(filled);
                    let want = len - filled;
                    let got = if available > 0 {
                        let n = want.min(available);
                        // SAFETY: `dest .. dest + n` lies inside the posted
                        // receive (checked against its length when the header
                        // came), a region held busy and only written here,
                        // under `&mut self`; the stage is our own buffer.
                        unsafe {
                            std::ptr::copy_nonoverlapping(
                                self.stage[self.stage_start..].as_ptr(),
                                dest,
                                n,
                            );
                        }
                        self.stage_start += n;
                        n
                    } else if want >= DIRECT_READ {
                        // SAFETY: as above, the rest of the posted receive.
                        match unsafe { sys::recv_into(self.socket.as_fd(), dest, want) } {
                            Ok(Some(0)) => return self.peer_closed(),
                            Ok(Some(n)) => n,
                            Ok(None) => return,
                            Err(code) => return self.socket_failed(code),
                        }
                    } else if self.fill_stage() {
                        continue;
                    } else {
                        return;
                    };
                    let filled = filled + got;
                    if filled == len {
                        self.incoming = Incoming::Header;
                        self.complete_recv(CompletionKind::Recv { len }, Ok(()));
                    } else {
                        self.incoming = Incoming::Recv { len, filled };
                    }
                }
                Incoming::Advertise { key, filled } => {
                    if available == 0 {
                        if self.fill_stage() {
                            continue;
                        }
                        return;
                    }
                    let filled = self.take_control(filled, ADVERTISE_LEN);
                    if filled == ADVERTISE_LEN {
                        let mut payload = [0u8; ADVERTISE_LEN];
                        payload.copy_from_slice(&self.control[..ADVERTISE_LEN]);
                        let (addr, len) = frame::parse_span(&payload);
                        self.incoming = Incoming::Header;
                        if !self.windows.insert(key, addr, len) {
                            self.protocol_error(
                                WcError::RemoteOperation,
                                format!("more than {} windows advertised", PeerWindows::CAPACITY),
                            );
                        }
                    } else {
                        self.incoming = Incoming::Advertise { key, filled };
                    }
                }
                Incoming::WriteInline { imm, len, filled } => {
                    if available == 0 {
                        if self.fill_stage() {
                            continue;
                        }
                        return;
                    }
                    let n = (len - filled).min(available);
                    self.carried_in[filled..filled + n]
                        .copy_from_slice(&self.stage[self.stage_start..self.stage_start + n]);
                    self.stage_start += n;
                    let filled = filled + n;
                    if filled == len {
                        self.incoming = Incoming::Header;
                        self.place_carried(imm, len);
                    } else {
                        self.incoming = Incoming::WriteInline { imm, len, filled };
                    }
                }
                Incoming::SendRef { total, len, filled } => {
                    if available == 0 {
                        if self.fill_stage() {
                            continue;
                        }
                        return;
                    }
                    let filled = self.take_control(filled, len);
                    if filled == len {
                        self.incoming = Incoming::Header;
                        self.copy_by_reference(total, len);
                    } else {
                        self.incoming = Incoming::SendRef { total, len, filled };
                    }
                }
            }
        }
    }

    /// A write carried whole is read (`len` bytes of target and data in
    /// `carried_in`): place its data where its target says, in a region of
    /// ours the peer may write, then complete the oldest posted receive
    /// with its immediate — the order a write-with-immediate keeps. A
    /// target outside every such region is the peer's remote access error.
    fn place_carried(&mut self, imm: u32, len: usize) {
        let mut target = [0u8; TARGET_LEN];
        target.copy_from_slice(&self.carried_in[..TARGET_LEN]);
        let Some((addr, key)) = frame::parse_target(&target) else {
            return self.protocol_error(
                WcError::RemoteOperation,
                "a carried write's target has a non-zero reserved word".into(),
            );
        };
        let data = len - TARGET_LEN;
        let dest = match self.regions.writable(key, addr, data) {
            Some(dest) => Some(dest),
            // Deregistered, the revocation not yet answered: the peer may
            // still write there, as it could with `process_vm_writev`.
            None => self
                .revoked
                .get(&key)
                .and_then(|region| region::writable_span(region, addr, data)),
        };
        let Some(dest) = dest else {
            return self.protocol_error(
                WcError::RemoteAccess,
                format!("a carried write of {data} bytes to {addr:#x} (key {key}) is outside every remotely writable region"),
            );
        };
        // SAFETY: `dest .. dest + data` lies inside a remotely writable
        // region of ours (checked just above), memory this transport
        // mapped and keeps mapped while registered or revoked-unanswered;
        // no reference into it is alive (`region` and `region_mut` borrow
        // `self`, borrowed mutably here), and the peer's own writes into
        // it are the same unsynchronised stores they always are.
        unsafe {
            std::ptr::copy_nonoverlapping(self.carried_in[TARGET_LEN..len].as_ptr(), dest, data);
        }
        self.placed = self.placed.wrapping_add(1);
        self.complete_recv(CompletionKind::RecvImm { imm }, Ok(()));
    }

    /// The peer has placed `placed` of the writes this side carried: those
    /// no longer hold back later writes to the same bytes.
    fn acknowledged(&mut self, placed: u32) {
        while let Some(front) = self.unacked.front() {
            // `front` is placed once `placed` counts past it (wrapping).
            if placed.wrapping_sub(front.seq) as i32 <= 0 {
                break;
            }
            self.unacked.pop_front();
        }
    }

    /// Acknowledge the carried writes placed since our last frame, in a
    /// frame of its own, when none of ours is about to carry it: called
    /// when this side goes idle (a poll that found nothing, a wait), so a
    /// peer holding a write back for it is never left waiting. It goes
    /// ahead of queued work (it says nothing about our own sends), but
    /// never into the middle of a frame.
    fn acknowledge_if_owed(&mut self) {
        if self.link != Link::Up || self.placed == self.placed_told {
            return;
        }
        let is_ack = |h: &[u8; HEADER]| Header::decode(h).is_ok_and(|h| h.kind == Kind::Ack);
        match self.outbox.front() {
            Some(op) if op.written > 0 => return,
            Some(op) if op.header.as_ref().is_some_and(is_ack) => {}
            _ => self
                .outbox
                .push_front(Outgoing::control(Header::new(Kind::Ack, 0, 0), &[])),
        }
        self.send_outbox();
    }

    /// Move staged bytes into the control payload being read, which has
    /// `filled` of `len` bytes; returns how many it has now.
    fn take_control(&mut self, filled: usize, len: usize) -> usize {
        let available = self.stage_end - self.stage_start;
        let n = (len - filled).min(available);
        self.control[filled..filled + n]
            .copy_from_slice(&self.stage[self.stage_start..self.stage_start + n]);
        self.stage_start += n;
        filled + n
    }

    /// A send by reference is fully announced: copy its pieces out of the
    /// peer into the front posted receive, complete it, and acknowledge.
    fn copy_by_reference(&mut self, total: usize, len: usize) {
        let mut pieces = [(0u64, 0usize); MAX_SGE];
        let count = len / REF_LEN;
        let mut sum = 0usize;
        for (i, piece) in pieces.iter_mut().enumerate().take(count) {
            let mut bytes = [0u8; REF_LEN];
            bytes.copy_from_slice(&self.control[i * REF_LEN..(i + 1) * REF_LEN]);
            let (addr, piece_len) = frame::parse_span(&bytes);
            let piece_len = usize::try_from(piece_len).unwrap_or(usize::MAX);
            *piece = (addr, piece_len);
            sum = sum.saturating_add(piece_len);
        }
        if sum != total {
            return self.protocol_error(
                WcError::RemoteOperation,
                format!("a send by reference of {total} bytes lists {sum}"),
            );
        }
        let Some(recv) = self.recvs.front() else {
            return self.protocol_error(WcError::RemoteOperation, "receive vanished".into());
        };
        let target = Span {
            ptr: recv.span.ptr,
            len: total,
        };
        // SAFETY: `target` is the first `total` bytes of the front posted
        // receive (checked when the header came), a region held busy and
        // only written here, under `&mut self`.
        match unsafe { sys::read_remote_into(self.peer, target, &pieces[..count]) } {
            Ok(()) => {
                self.outbox
                    .push_back(Outgoing::control(Header::new(Kind::SendAck, 0, 0), &[]));
                self.complete_recv(CompletionKind::Recv { len: total }, Ok(()));
            }
            Err(code) => {
                self.complete_recv(recv_kind_failed(), Err(write_error(code)));
                self.protocol_error(
                    WcError::RemoteAccess,
                    format!(
                        "process_vm_readv of a {total}-byte send from process {} failed: {}",
                        self.peer,
                        std::io::Error::from_raw_os_error(code)
                    ),
                );
            }
        }
    }

    /// Whether the front posted receive (the one a send fills next) can
    /// take a send of `len` bytes; if not, the receive (for a too-large
    /// send) and the connection fail.
    fn accept_send(&mut self, len: usize) -> bool {
        let Some(recv) = self.recvs.front() else {
            self.protocol_error(
                WcError::ReceiverNotReady,
                format!("a send of {len} bytes arrived with no receive posted"),
            );
            return false;
        };
        if len > recv.span.len || len > CAPS.max_message {
            let posted = recv.span.len;
            self.complete_recv(recv_kind_failed(), Err(WcError::LocalLength));
            self.protocol_error(
                WcError::RemoteOperation,
                format!("a send of {len} bytes arrived for a receive of {posted}"),
            );
            return false;
        }
        true
    }

    /// Read more of the socket into the stage. `false` when nothing came
    /// (or the connection ended).
    fn fill_stage(&mut self) -> bool {
        if self.stage_start == self.stage_end {
            self.stage_start = 0;
            self.stage_end = 0;
        } else if self.stage_end == self.stage.len() {
            self.stage.copy_within(self.stage_start..self.stage_end, 0);
            self.stage_end -= self.stage_start;
            self.stage_start = 0;
        }
        let free = &mut self.stage[self.stage_end..];
        // SAFETY: `free` is our own buffer, exclusively borrowed.
        match unsafe { sys::recv_into(self.socket.as_fd(), free.as_mut_ptr(), free.len()) } {
            Ok(Some(0)) => {
                self.peer_closed();
                false
            }
            Ok(Some(n)) => {
                self.stage_end += n;
                true
            }
            Ok(None) => false,
            Err(code) => {
                self.socket_failed(code);
                false
            }
        }
    }

    fn peer_closed(&mut self) {
        if self.last_error.is_none() {
            self.last_error = Some("the peer closed the connection".into());
        }
        self.teardown(Link::Lost, WcError::Disconnected, WcError::Disconnected);
    }

    fn socket_failed(&mut self, code: i32) {
        self.last_error = Some(format!(
            "reading from the peer failed: {}",
            std::io::Error::from_raw_os_error(code)
        ));
        self.teardown(Link::Lost, WcError::Disconnected, WcError::Disconnected);
    }

    fn on_header(&mut self, bytes: &[u8; HEADER]) {
        let header = match Header::decode(bytes) {
            Ok(header) => header,
            Err(bad) => {
                return self.protocol_error(
                    WcError::RemoteOperation,
                    format!("malformed frame header ({bad:?})"),
                );
            }
        };
        self.acknowledged(frame::placed_of(bytes));
        let len = header.len as usize;
        match header.kind {
            Kind::Send => {
                if !self.accept_send(len) {
                    return;
                }
                if len == 0 {
                    self.complete_recv(CompletionKind::Recv { len: 0 }, Ok(()));
                } else {
                    self.incoming = Incoming::Recv { len, filled: 0 };
                }
            }
            Kind::WriteImm if len == 0 => {
                if self.recvs.is_empty() {
                    return self.protocol_error(
                        WcError::ReceiverNotReady,
                        "a write-with-immediate arrived with no receive posted".into(),
                    );
                }
                self.complete_recv(CompletionKind::RecvImm { imm: header.value }, Ok(()));
            }
            Kind::WriteInline if len > TARGET_LEN && len <= TARGET_LEN + CARRIED_WRITE => {
                if self.recvs.is_empty() {
                    return self.protocol_error(
                        WcError::ReceiverNotReady,
                        "a write-with-immediate arrived with no receive posted".into(),
                    );
                }
                self.incoming = Incoming::WriteInline {
                    imm: header.value,
                    len,
                    filled: 0,
                };
            }
            // Its `placed` word was all it brought.
            Kind::Ack if len == 0 => {}
            Kind::Advertise if len == ADVERTISE_LEN => {
                self.incoming = Incoming::Advertise {
                    key: header.value,
                    filled: 0,
                };
            }
            Kind::Revoke if len == 0 => {
                // Every write this side placed is done (writes are
                // synchronous), and none will target the window again.
                // Only known windows are answered, so a peer cannot make
                // the outbox grow by revoking made-up keys.
                if !self.windows.remove(header.value) {
                    return self.protocol_error(
                        WcError::RemoteOperation,
                        format!("revocation of unknown window {}", header.value),
                    );
                }
                self.outbox.push_back(Outgoing::control(
                    Header::new(Kind::RevokeAck, 0, header.value),
                    &[],
                ));
            }
            Kind::RevokeAck if len == 0 => {
                self.revoked.remove(&header.value);
            }
            Kind::SendRef if len > 0 && len <= CONTROL && len % REF_LEN == 0 => {
                let total = header.value as usize;
                if self.accept_send(total) {
                    self.incoming = Incoming::SendRef {
                        total,
                        len,
                        filled: 0,
                    };
                }
            }
            Kind::SendAck if len == 0 => match self.awaiting.pop_front() {
                Some(op) => {
                    self.complete_op(op, Ok(()));
                    self.active = true;
                }
                None => self.protocol_error(
                    WcError::RemoteOperation,
                    "an acknowledgement for no send by reference".into(),
                ),
            },
            Kind::Error if len == 0 => {
                let error = frame::error_of(header.value);
                self.last_error = Some(format!("the peer ended the connection: {error}"));
                self.teardown(Link::Lost, error, WcError::Flushed);
            }
            kind => self.protocol_error(
                WcError::RemoteOperation,
                format!("unexpected {kind:?} frame with {len} payload bytes"),
            ),
        }
    }

    /// The peer broke the protocol: tell it why (if the stream is between
    /// frames on our side), and fail the connection.
    fn protocol_error(&mut self, for_peer: WcError, why: String) {
        self.last_error = Some(format!("protocol error from the peer: {why}"));
        if self.outbox.front().is_none_or(|op| op.written == 0) {
            let header = Header::new(Kind::Error, 0, frame::error_code(for_peer)).encode();
            let iov = [sys::iovec(
                Span {
                    ptr: header.as_ptr().cast_mut(),
                    len: HEADER,
                },
                0,
            )];
            // SAFETY: the iovec points at `header`, alive across the call.
            // Best effort: the connection is closed right after either way.
            let _ = unsafe { sys::send_spans(self.socket.as_fd(), &iov) };
        }
        self.teardown(Link::Lost, WcError::Flushed, WcError::Flushed);
    }

    /// Close the socket and complete everything outstanding: sends and
    /// writes with `tx`, receives with `rx`.
    fn teardown(&mut self, link: Link, tx: WcError, rx: WcError) {
        if self.link != Link::Up {
            return;
        }
        self.link = link;
        let _ = self.socket.shutdown(Shutdown::Both);
        while let Some(op) = self.awaiting.pop_front() {
            self.complete_op(op, Err(tx));
        }
        while let Some(op) = self.outbox.pop_front() {
            self.complete_op(op, Err(tx));
        }
        while !self.recvs.is_empty() {
            self.complete_recv(recv_kind_failed(), Err(rx));
        }
        self.unacked.clear();
        self.incoming = Incoming::Header;
    }

    /// Move ready completions into `out`, releasing their regions.
    fn drain(&mut self, out: &mut [Completion]) -> usize {
        let n = out.len().min(self.ready.len());
        for slot in out.iter_mut().take(n) {
            let Some(ready) = self.ready.pop_front() else {
                break;
            };
            self.retire(&ready.held, ready.send_queue);
            *slot = ready.completion;
        }
        n
    }

    /// Give back what a finished work request held: its regions, and its
    /// place in the send queue (`send_queue`) or the receive queue.
    fn retire(&mut self, held: &Held, send_queue: bool) {
        for id in held.iter() {
            self.regions.release(id);
        }
        if send_queue {
            self.tx_outstanding -= 1;
        } else {
            self.rx_outstanding -= 1;
        }
    }

    /// Whether `wait` should keep polling instead of sleeping.
    fn spinning(&self, now: Instant) -> bool {
        self.last_activity
            .and_then(|last| last.checked_add(self.spin_window))
            .is_some_and(|close| now < close)
    }
}

impl Transport for CmaTransport {
    fn provider(&self) -> &str {
        crate::PROVIDER
    }

    fn caps(&self) -> Caps {
        CAPS
    }

    fn register(&mut self, len: usize, access: Access) -> Result<RegionId, TransportError> {
        let id = self.regions.register(len, access)?;
        let region = self.regions.get(id)?;
        if region.remote_writable() && self.link == Link::Up {
            // Queued like any post, so the peer knows the window before it
            // receives a later send that names it.
            let payload = frame::span(region.addr(), region.len() as u64);
            let header = Header::new(Kind::Advertise, ADVERTISE_LEN as u32, region.key());
            self.outbox.push_back(Outgoing::control(header, &payload));
        }
        Ok(id)
    }

    fn register_external<M>(&mut self, memory: M) -> Result<RegionId, TransportError>
    where
        M: AsRef<[u8]> + Send + Sync + 'static,
    {
        self.regions.register_external(memory)
    }

    fn deregister(&mut self, region: RegionId) -> Result<(), TransportError> {
        let region = self.regions.remove(region)?;
        if region.remote_writable() && self.link == Link::Up {
            let key = region.key();
            self.outbox
                .push_back(Outgoing::control(Header::new(Kind::Revoke, 0, key), &[]));
            self.revoked.insert(key, region);
        }
        Ok(())
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
        self.ensure_up()?;
        let target = self.regions.resolve(buf)?;
        if self.rx_outstanding >= CAPS.max_recv {
            return Err(TransportError::QueueFull);
        }
        self.rx_outstanding += 1;
        if target.external || !target.access.contains(Access::LOCAL_WRITE) {
            let completion = Completion {
                wr_id,
                kind: recv_kind_failed(),
                status: Err(WcError::LocalProtection),
            };
            self.regions.acquire(buf.region);
            self.push_ready(completion, Held::one(buf.region), false);
            return Ok(());
        }
        self.regions.acquire(buf.region);
        let recv = PostedRecv {
            wr_id,
            region: buf.region,
            span: target.span,
        };
        // Sends fill the front receive. Newest first, a new receive goes
        // there, except while a frame is half read: the front is then the
        // receive `accept_send` took for it, and stays where it is.
        if !self.newest_first {
            self.recvs.push_back(recv);
        } else if matches!(
            self.incoming,
            Incoming::Recv { .. } | Incoming::SendRef { .. }
        ) && !self.recvs.is_empty()
        {
            self.recvs.insert(1, recv);
        } else {
            self.recvs.push_front(recv);
        }
        Ok(())
    }

    fn post_send(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        imm: Option<u32>,
    ) -> Result<(), TransportError> {
        self.ensure_up()?;
        if imm.is_some() {
            // A receive completion carries a length or an immediate, not both.
            return Err(TransportError::Unsupported);
        }
        let (spans, held, total) = self.gather(sges)?;
        if total > CAPS.max_message {
            return Err(TransportError::MessageTooLarge);
        }
        if self.tx_outstanding >= CAPS.max_send {
            return Err(TransportError::QueueFull);
        }
        let mut op = Outgoing::empty(Some((wr_id, CompletionKind::Send)));
        if total >= SEND_BY_REFERENCE {
            for (i, span) in spans[..sges.len()].iter().enumerate() {
                let piece = frame::span(span.ptr as u64, span.len as u64);
                op.extra[i * REF_LEN..(i + 1) * REF_LEN].copy_from_slice(&piece);
            }
            op.extra_len = sges.len() * REF_LEN;
            op.by_reference = true;
            let header = Header::new(Kind::SendRef, op.extra_len as u32, total as u32);
            op.header = Some(header.encode());
        } else {
            op.header = Some(Header::new(Kind::Send, total as u32, 0).encode());
        }
        op.sges = spans;
        op.sge_count = sges.len();
        op.held = held;
        self.enqueue(op)
    }

    fn post_write(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        dst: RemoteBuf,
        imm: Option<u32>,
    ) -> Result<(), TransportError> {
        self.write_op(wr_id, sges, &[], dst, imm, true)
    }

    fn post_send_inline(&mut self, wr_id: WrId, data: &[u8]) -> Result<(), TransportError> {
        let mut op = self.inline_op(wr_id, CompletionKind::Send, data)?;
        // A send frame like any other: the payload follows the header.
        op.header = Some(Header::new(Kind::Send, data.len() as u32, 0).encode());
        self.enqueue(op)
    }

    fn post_write_inline(
        &mut self,
        wr_id: WrId,
        data: &[u8],
        dst: RemoteBuf,
        imm: Option<u32>,
    ) -> Result<(), TransportError> {
        if data.len() > dst.len as usize {
            return Err(TransportError::OutOfBounds);
        }
        self.write_op(wr_id, &[], data, dst, imm, true)
    }

    fn post_write_tail(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        tail: &[u8],
        dst: RemoteBuf,
        imm: Option<u32>,
    ) -> Result<(), TransportError> {
        self.write_op(wr_id, sges, tail, dst, imm, true)
    }

    fn post_write_tail_unsignaled(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        tail: &[u8],
        dst: RemoteBuf,
    ) -> Result<(), TransportError> {
        self.write_op(wr_id, sges, tail, dst, None, false)
    }

    /// Reads the socket first, as every hand-over does (see `progress`).
    fn flush(&mut self) -> Result<(), TransportError> {
        if self.link == Link::Up {
            self.progress();
        }
        Ok(())
    }

    fn poll_completions(&mut self, out: &mut [Completion]) -> Result<usize, TransportError> {
        if self.link == Link::Up {
            self.progress();
        }
        let n = self.drain(out);
        if n == 0 && self.link != Link::Up && self.ready.is_empty() {
            return Err(TransportError::Disconnected);
        }
        if n == 0 {
            self.acknowledge_if_owed();
        }
        Ok(n)
    }

    fn wait(&mut self, timeout: Option<Duration>) -> Result<(), TransportError> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            if self.link == Link::Up {
                self.progress();
            }
            if !self.ready.is_empty() || self.link != Link::Up {
                return Ok(());
            }
            self.acknowledge_if_owed();
            let now = Instant::now();
            if std::mem::take(&mut self.active) {
                self.last_activity = Some(now);
            }
            let remaining = match deadline {
                Some(deadline) if now >= deadline => return Ok(()),
                Some(deadline) => Some(deadline - now),
                None => None,
            };
            if self.spinning(now) {
                std::thread::yield_now();
                continue;
            }
            // The write half only matters while frames wait for room (not
            // while the front write waits for the peer's acknowledgement).
            let room = self.outbox.front().is_some_and(Outgoing::frame_ready);
            match sys::poll_socket(self.socket.as_fd(), room, remaining) {
                Ok(_) => {}
                Err(code) => return Err(TransportError::Os(code)),
            }
        }
    }

    fn disconnect(&mut self) {
        self.teardown(Link::Closed, WcError::Flushed, WcError::Flushed);
    }
}

impl Drop for CmaTransport {
    fn drop(&mut self) {
        self.teardown(Link::Closed, WcError::Flushed, WcError::Flushed);
    }
}
