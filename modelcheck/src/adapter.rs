//! The adapter: the only code that drives `rdio_core`'s state machines.
//!
//! [`ClientSide`] and [`ServerSide`] wrap the real [`Client`] and
//! [`Connection`] and do exactly what a driver does with them — submit
//! requests, feed in received sends and status blocks, drain transmits and
//! events — returning plain data ([`ToServer`], [`ToClient`], [`Work`],
//! [`ClientEvent`]) that the model ([`crate::model`]) moves through its
//! network. Nothing of the protocol is re-modelled here. When the core's
//! hot-path API changes, this module is the one to port.

use rdio_core::client::{
    BlockOutcome, Client, ClientConfig, ClientEvent, CompletionMode, Negotiated, RequestId,
};
use rdio_core::server::{
    Connection, FileId, OpId, Received, Registration, ServerConfig, ServerEvent, SessionId,
    SessionParams, Transmit,
};
use rdio_core::wire::status::STATUS_BLOCK_LEN;
use rdio_core::wire::{
    AuthKey, BatchRead, Body, BufferDescriptor, Capabilities, Flags, Message, OpenFlags,
    ProviderList, ProviderName, ReadBatchRequest, ResumeKey, Status, WriteRequest, WriteSegment,
    WriteVRequest,
};
use rdio_core::{ApiError, Instant, Violation};
use std::time::Duration;

/// Request slots of the client (environment requests plus the internal
/// cancel and keepalive messages it may add).
pub const CLIENT_SLOTS: usize = 6;
/// Request slots of the server connection (at least its most credits).
pub const SERVER_SLOTS: usize = 4;
/// Files a connection may have registered at once.
pub const FILES: usize = 2;

/// The client core as checked.
pub type CoreClient = Client<CLIENT_SLOTS>;
/// The server core as checked.
pub type CoreServer = Connection<SERVER_SLOTS, FILES>;

/// Remote key of the client's registered memory.
const MEMORY_KEY: u32 = 0x5eed;
/// The resume key of the one file the client registers.
const FILE_KEY: ResumeKey = ResumeKey([7; 16]);
/// The authentication key.
const AUTH_KEY: AuthKey = AuthKey([9; 16]);
/// The handle the server gives the first registered file: slot 0 of its
/// `FILES` slots, generation 1 (`handle = generation × F + slot`,
/// docs/PROTOCOL.md, "Registration"). Requests use it from the start, so
/// requests sent before the registration completes (or after it failed, or
/// after the close) meet an unknown handle.
pub const HANDLE: u32 = FILES as u32;
/// Bytes of each read segment (and of each vectored write segment while
/// read batches are off; see [`Sizes`]).
pub const SEGMENT_LEN: u32 = 2;

/// Credit and timing configuration of both sides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Limits {
    /// Credits the client starts with.
    pub initial_credits: u16,
    /// Most credits either side allows.
    pub max_credits: u16,
    /// The session negotiated read batches (`Capabilities::READ_BATCH`:
    /// the client offers it, the server grants it); the send size then
    /// holds a batch of `max_credits` reads ([`Sizes`]).
    pub read_batch: bool,
}

impl Limits {
    /// The extensions both sides use.
    pub fn capabilities(self) -> Capabilities {
        if self.read_batch {
            Capabilities::READ_BATCH
        } else {
            Capabilities::NONE
        }
    }
}

/// Message sizes, from the limits: a plain write and a vectored write
/// always travel in two fragments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Sizes {
    /// The send size both sides use.
    pub send: u32,
    /// Bytes of a plain write: one more than its first fragment carries.
    pub write_len: u32,
    /// Bytes of each of a vectored write's two segments: together more
    /// than its first fragment carries, so it takes two fragments (a
    /// COLLAPSE write carries the bytes of one, and fits in one send).
    pub writev_segment: u32,
}

impl Sizes {
    /// The sizes for `limits`. Without read batches the send size holds a
    /// two-segment vectored write's prefix and 2 data bytes; with them, a
    /// `ReadBatch` of `max_credits` reads if that is more.
    pub fn of(limits: Limits) -> Self {
        let segments = [WriteSegment::new(0, SEGMENT_LEN); 2];
        let writev = Body::WriteV(WriteVRequest {
            handle: HANDLE,
            total_len: 0,
            status: BufferDescriptor::default(),
            segments: &segments,
            data: &[],
        });
        let mut send = prefix_len(writev) + 2;
        if limits.read_batch {
            let read = BatchRead::new(
                0,
                HANDLE,
                0,
                BufferDescriptor::default(),
                BufferDescriptor::default(),
            );
            let reads = vec![read; usize::from(limits.max_credits.max(2))];
            let batch = Message {
                flags: Flags::empty(),
                credits: 0,
                demand: 0,
                request_id: 0,
                body: Body::ReadBatch(ReadBatchRequest { reads: &reads }),
            };
            send = send.max(u32::try_from(batch.encoded_len()).unwrap_or(u32::MAX));
        }
        let room = |body| send.saturating_sub(prefix_len(body));
        let write_len = room(Body::Write(WriteRequest {
            handle: HANDLE,
            offset: 0,
            total_len: 0,
            status: BufferDescriptor::default(),
            data: &[],
        })) + 1;
        Self {
            send,
            write_len,
            writev_segment: room(writev) / 2 + 1,
        }
    }
}

/// What the client's driver asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Submit {
    /// Register the file (by its resume key).
    Register,
    /// Read one buffer.
    Read(Mode),
    /// Read one buffer through `Client::read_into`: its request is sent in
    /// the submitting call when it can go first, else queued as `Read`'s.
    ReadNow(Mode),
    /// Vectored read of two buffers.
    ReadV(Mode),
    /// Write, fragmented into two sends.
    Write(Mode),
    /// The same write through `Client::write_into`: its first fragment is
    /// sent in the submitting call when it can go first, the second
    /// streams after it; else queued as `Write`'s.
    WriteNow(Mode),
    /// Vectored write of two segments, fragmented into two sends.
    WriteV(Mode),
    /// COLLAPSE write: one data stream written at two offsets.
    Collapse(Mode),
    /// Close the file.
    Close,
    /// Ask for an interrupt response (claim 21).
    Interrupt,
}

/// Completion mode of a data request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mode {
    /// Status block with immediate data.
    Interrupt,
    /// Status block written silently; the driver polls it.
    Polling,
}

impl Mode {
    fn core(self) -> CompletionMode {
        match self {
            Mode::Interrupt => CompletionMode::Interrupt,
            Mode::Polling => CompletionMode::Polling,
        }
    }
}

impl Submit {
    /// Every request kind the environment can submit (not `Register`).
    pub const ALL: [Submit; 16] = [
        Submit::Read(Mode::Interrupt),
        Submit::Read(Mode::Polling),
        Submit::ReadNow(Mode::Interrupt),
        Submit::ReadNow(Mode::Polling),
        Submit::ReadV(Mode::Interrupt),
        Submit::ReadV(Mode::Polling),
        Submit::Write(Mode::Interrupt),
        Submit::Write(Mode::Polling),
        Submit::WriteNow(Mode::Interrupt),
        Submit::WriteNow(Mode::Polling),
        Submit::WriteV(Mode::Interrupt),
        Submit::WriteV(Mode::Polling),
        Submit::Collapse(Mode::Interrupt),
        Submit::Collapse(Mode::Polling),
        Submit::Close,
        Submit::Interrupt,
    ];

    /// The command-line name: `read`, `read-poll`, ..., `close`, `interrupt`.
    pub fn name(self) -> String {
        let (base, mode) = match self {
            Submit::Register => return "register".into(),
            Submit::Close => return "close".into(),
            Submit::Interrupt => return "interrupt".into(),
            Submit::Read(m) => ("read", m),
            Submit::ReadNow(m) => ("read-now", m),
            Submit::ReadV(m) => ("readv", m),
            Submit::Write(m) => ("write", m),
            Submit::WriteNow(m) => ("write-now", m),
            Submit::WriteV(m) => ("writev", m),
            Submit::Collapse(m) => ("collapse", m),
        };
        match mode {
            Mode::Interrupt => base.into(),
            Mode::Polling => format!("{base}-poll"),
        }
    }

    /// The kind named `name` (see [`Submit::name`]).
    pub fn from_name(name: &str) -> Option<Submit> {
        Submit::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The completion mode of a read or write.
    pub fn mode(self) -> Option<Mode> {
        match self {
            Submit::Read(m)
            | Submit::ReadNow(m)
            | Submit::ReadV(m)
            | Submit::Write(m)
            | Submit::WriteNow(m)
            | Submit::WriteV(m)
            | Submit::Collapse(m) => Some(m),
            Submit::Register | Submit::Close | Submit::Interrupt => None,
        }
    }

    /// Whether this is a read or write (completed by a status block).
    pub fn is_data(self) -> bool {
        matches!(
            self,
            Submit::Read(_)
                | Submit::ReadNow(_)
                | Submit::ReadV(_)
                | Submit::Write(_)
                | Submit::WriteNow(_)
                | Submit::WriteV(_)
                | Submit::Collapse(_)
        )
    }
}

/// The client memory a request names: its status block and, for reads,
/// the buffers the server RDMA-writes. Request `n` (the `n`th submission)
/// gets windows of its own, so a write landing elsewhere is caught.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Memory {
    /// The status block window.
    pub status: BufferDescriptor,
    /// Read destinations.
    pub data: Vec<BufferDescriptor>,
}

impl Memory {
    fn for_submission(n: u32, submit: Submit) -> Self {
        let base = 0x1_0000 * u64::from(n);
        let status = BufferDescriptor::new(base, MEMORY_KEY, STATUS_BLOCK_LEN as u32);
        let buffer =
            |i: u64| BufferDescriptor::new(base + 0x100 * (i + 1), MEMORY_KEY, SEGMENT_LEN);
        let data = match submit {
            Submit::Read(_) | Submit::ReadNow(_) => vec![buffer(0)],
            Submit::ReadV(_) => vec![buffer(0), buffer(1)],
            _ => Vec::new(),
        };
        Self { status, data }
    }
}

/// A client send on its way to the server.
pub type ToServer = Vec<u8>;

/// What travels from server to client, in order (one RC connection).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ToClient {
    /// A send.
    Send(Vec<u8>),
    /// An RDMA write of read data, posted by the server's driver for the
    /// read `op` into `dest` (`len` bytes).
    Data {
        /// The read (as the server's driver knows it).
        op: u32,
        /// Target window.
        dest: BufferDescriptor,
        /// Bytes written.
        len: u32,
    },
    /// An RDMA write of a status block, with immediate data when the
    /// request asked for interrupt completion.
    Status {
        /// Target window.
        dest: BufferDescriptor,
        /// The block's bytes.
        block: [u8; STATUS_BLOCK_LEN],
        /// Immediate data (the request id).
        immediate: Option<u32>,
    },
}

/// The client's core and what its driver knows.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientSide {
    /// Boxed: the checker moves states around far more often than it
    /// clones them.
    core: Box<CoreClient>,
    /// Message sizes (a plain write is `sizes.write_len` bytes).
    sizes: Sizes,
    /// Requests `read_into` and `write_into` sent as they were submitted
    /// (a write's first fragment), for the next
    /// [`ClientSide::drain`] (always empty between steps).
    sent: Vec<ToServer>,
}

/// A read, write or other work in the server driver's hands.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Work {
    /// Authenticate the presented key.
    Authenticate,
    /// Resolve a registration.
    Register(u32),
    /// Read into the segments' windows, then complete.
    Read {
        /// The request.
        op: u32,
        /// Where each segment's data goes.
        dest: Vec<BufferDescriptor>,
    },
    /// Write a chunk of `len` bytes, then complete.
    Write {
        /// The request.
        op: u32,
        /// Bytes in the chunk's pieces.
        len: u64,
    },
    /// Release a closed file.
    CloseFile,
}

/// How the server's driver finishes a piece of work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// All bytes / the registration succeeds.
    Full,
    /// A short count (end of file, a short write).
    Short,
    /// An I/O error / the registration fails.
    Error,
}

/// The server's core and its driver's state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServerSide {
    core: Box<CoreServer>,
    limits: Limits,
    /// The send size.
    send: u32,
    /// The driver is taking the reads of a batch
    /// ([`Received::Batch`], [`ServerSide::take_batch_read`]) and at least
    /// one is left: until it is done, or calls anything but
    /// `next_batch_read` and `complete_io_into`, it does not drain the
    /// core's transmits (rdio's driver takes a whole batch before it
    /// drains; the model lets other calls cut in, which puts the reads
    /// not taken back in the core's queue).
    handing: bool,
    /// Receives the driver counts posted (posted, completion not taken):
    /// as rdio's driver keeps them (`Connection::receives_wanted`), a
    /// taken message's receive put back only at the driver's next step
    /// (it answers before it reposts).
    receives: u8,
    /// The receive of the message taken last, not put back yet.
    recycle_due: bool,
}

fn prefix_len(body: Body<'_>) -> u32 {
    let msg = Message {
        flags: Flags::empty(),
        credits: 0,
        demand: 0,
        request_id: 0,
        body,
    };
    u32::try_from(msg.prefix_len()).unwrap_or(u32::MAX)
}

fn server_config(limits: Limits) -> ServerConfig {
    ServerConfig {
        initial_credits: limits.initial_credits,
        max_credits: limits.max_credits,
        min_credits: 1,
        max_send_size: Sizes::of(limits).send,
        max_io_size: 1024,
        auth_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(60),
        keepalive_interval: Duration::from_secs(20),
        // The model's own actions grant and revoke (any of the policy's
        // moves is one of them).
        credit_window: None,
        capabilities: limits.capabilities(),
    }
}

impl ClientSide {
    /// A client that has just connected (its auth request is queued).
    pub fn new(limits: Limits, now: Instant) -> Self {
        let mut providers = ProviderList::new();
        if let Ok(name) = ProviderName::new("model") {
            let _ = providers.push(name);
        }
        let sizes = Sizes::of(limits);
        let config = ClientConfig {
            providers: providers.clone(),
            max_credits: limits.max_credits,
            max_send_size: sizes.send,
            max_io_size: 1024,
            // Offered, and (below) granted: the model has no pipe, so the
            // negotiation's outcome is set here.
            capabilities: limits.capabilities(),
            ..ClientConfig::default()
        };
        let negotiated = Negotiated {
            provider: providers.first().copied().unwrap_or_else(|| {
                ProviderName::new("m").unwrap_or_else(|_| unreachable!("valid name"))
            }),
            common: providers,
            endpoint: heapless::Vec::new(),
            auth_key: AUTH_KEY,
            version: rdio_core::wire::VERSION_1,
            credits: limits.initial_credits,
            max_send_size: sizes.send,
            max_io_size: 1024,
            capabilities: limits.capabilities(),
        };
        Self {
            core: Box::new(Client::new(config, negotiated, now)),
            sizes,
            sent: Vec::new(),
        }
    }

    /// The core (read-only, for properties).
    pub fn core(&self) -> &CoreClient {
        &self.core
    }

    /// Submit the `n`th request. `Err`: the core refused it (nothing changed).
    pub fn submit(
        &mut self,
        now: Instant,
        n: u32,
        submit: Submit,
    ) -> Result<(RequestId, Memory), ApiError> {
        let memory = Memory::for_submission(n, submit);
        let status = memory.status;
        let c = &mut self.core;
        let id = match submit {
            Submit::Register => c.register(FILE_KEY)?,
            Submit::Read(mode) => {
                let dest = memory.data.first().copied().unwrap_or_default();
                c.read(HANDLE, 0, dest, status, mode.core())?
            }
            Submit::ReadNow(mode) => {
                let dest = memory.data.first().copied().unwrap_or_default();
                let mut buf = vec![0u8; self.sizes.send as usize];
                let (id, sent) =
                    c.read_into(now, HANDLE, 0, dest, status, mode.core(), &mut buf)?;
                if let Some(t) = sent {
                    self.sent.push(buf[..t.len].to_vec());
                }
                id
            }
            Submit::ReadV(mode) => {
                let segments: Vec<_> = memory
                    .data
                    .iter()
                    .enumerate()
                    .map(|(i, d)| rdio_core::wire::ReadSegment::new(8 * i as u64, *d))
                    .collect();
                c.read_vectored(HANDLE, &segments, status, mode.core())?
            }
            Submit::Write(mode) => c.write(HANDLE, 0, self.sizes.write_len, status, mode.core())?,
            Submit::WriteNow(mode) => {
                let mut buf = vec![0u8; self.sizes.send as usize];
                let (id, sent) = c.write_into(
                    now,
                    HANDLE,
                    0,
                    self.sizes.write_len,
                    status,
                    mode.core(),
                    &mut buf,
                )?;
                if let Some(t) = sent {
                    let mut send = buf[..t.len].to_vec();
                    if let Some(data) = t.data {
                        // The caller's data, as `drain` gathers it.
                        send.resize(t.len + data.len as usize, 0xab);
                    }
                    self.sent.push(send);
                }
                id
            }
            Submit::WriteV(mode) => {
                let len = self.sizes.writev_segment;
                let segments = [WriteSegment::new(0, len), WriteSegment::new(64, len)];
                c.write_vectored(HANDLE, &segments, false, status, mode.core())?
            }
            Submit::Collapse(mode) => {
                let len = self.sizes.writev_segment;
                let segments = [WriteSegment::new(0, len), WriteSegment::new(64, len)];
                c.write_vectored(HANDLE, &segments, true, status, mode.core())?
            }
            Submit::Close => c.close(HANDLE)?,
            Submit::Interrupt => c.request_interrupt()?,
        };
        Ok((id, memory))
    }

    /// Cancel a request.
    pub fn cancel(&mut self, id: RequestId) -> Result<(), ApiError> {
        self.core.cancel(id)
    }

    /// A send arrived.
    pub fn on_send(&mut self, now: Instant, bytes: &[u8]) -> Result<(), Violation> {
        self.core.handle_message(now, bytes)
    }

    /// The driver found a status block in memory (after its immediate
    /// completion, or by polling).
    pub fn on_status_block(&mut self, now: Instant, block: &[u8]) -> Result<bool, Violation> {
        self.core.handle_status_block(now, block)
    }

    /// The reads of the read batch an immediate names (rdio's driver asks
    /// on every immediate): `None` when it names a single request.
    pub fn batch_members(&self, immediate: u32) -> Option<Vec<u32>> {
        self.core
            .batch_members(immediate)
            .map(|members| members.iter().map(|id| id.0).collect())
    }

    /// The batch's immediate arrived: the driver hands read `id`'s status
    /// block (as found in memory, zeros when never written) to the core.
    pub fn take_batch_block(
        &mut self,
        now: Instant,
        id: u32,
        block: &[u8],
    ) -> Result<BlockOutcome, Violation> {
        self.core.take_batch_block(now, RequestId(id), block)
    }

    /// Whether the driver polls `id`'s status block.
    pub fn awaits_status_block(&self, id: u32) -> bool {
        self.core.awaits_status_block(RequestId(id))
    }

    /// Run timers at `now`.
    pub fn on_timeout(&mut self, now: Instant) {
        self.core.handle_timeout(now);
    }

    /// The connection broke.
    pub fn on_lost(&mut self) {
        self.core.transport_failed();
    }

    /// The next deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.core.poll_timeout()
    }

    /// Drain sends to post (prefix plus gathered write data) and events.
    pub fn drain(&mut self, now: Instant) -> (Vec<ToServer>, Vec<ClientEvent>) {
        // A request sent as it was submitted went before anything queued
        // after it.
        let mut sends = std::mem::take(&mut self.sent);
        let mut buf = vec![0u8; self.sizes.send as usize];
        while let Ok(Some(t)) = self.core.poll_transmit(now, &mut buf) {
            let mut send = buf[..t.len].to_vec();
            if let Some(data) = t.data {
                // The caller's data: its bytes are not looked at.
                send.resize(t.len + data.len as usize, 0xab);
            }
            sends.push(send);
        }
        let mut events = Vec::new();
        while let Some(event) = self.core.poll_event() {
            events.push(event);
        }
        (sends, events)
    }
}

impl ServerSide {
    /// A connection just accepted.
    pub fn new(limits: Limits, now: Instant) -> Self {
        let core = Box::new(Connection::new(server_config(limits), now));
        let receives = u8::try_from(core.receives_wanted()).unwrap_or(u8::MAX);
        Self {
            core,
            limits,
            send: Sizes::of(limits).send,
            handing: false,
            receives,
            recycle_due: false,
        }
    }

    /// Receives posted at the server, as its driver counts them.
    pub fn receives(&self) -> usize {
        usize::from(self.receives)
    }

    /// The receive of the message taken last goes back, if the client's
    /// credits still need it.
    fn recycle(&mut self) {
        if std::mem::take(&mut self.recycle_due)
            && usize::from(self.receives) < self.core.receives_wanted()
        {
            self.receives += 1;
        }
    }

    /// The core (read-only, for properties).
    pub fn core(&self) -> &CoreServer {
        &self.core
    }

    /// A send arrived, taken as rdio's server driver takes it
    /// (`Connection::take_message`): a write fragment's chunk goes to the
    /// driver, and so does a read the core hands over at once (one that
    /// finds no earlier work waiting). The driver finishes either whenever
    /// the model likes, other calls in between: the core keeps such a read
    /// out of its request table until another call puts it there, and
    /// every interleaving of that is explored.
    pub fn on_send(&mut self, now: Instant, bytes: &[u8]) -> Result<Option<Work>, Violation> {
        self.handing = false;
        self.recycle();
        self.receives = self.receives.saturating_sub(1);
        self.recycle_due = true;
        Ok(match self.core.take_message(now, bytes)? {
            Received::Nothing => None,
            // The reads come one by one through `take_batch_read`.
            Received::Batch => {
                self.handing = true;
                self.hand_over_goes_on();
                None
            }
            Received::Write(chunk) => Some(Work::Write {
                op: chunk.op.0,
                len: chunk.pieces().map(|(_, data)| data.len() as u64).sum(),
            }),
            Received::Read { op, segments, .. } => Some(Work::Read {
                op: op.0,
                dest: segments.iter().map(|s| s.dest()).collect(),
            }),
        })
    }

    /// Whether a batch's hand-over is under way
    /// ([`ServerSide::take_batch_read`]).
    pub fn handing(&self) -> bool {
        self.handing
    }

    /// During a hand-over: whether `next_batch_read` has a read left to
    /// give (looked at on a copy). When it has not, the driver's call that
    /// finds so is made, as rdio's driver makes it (it takes reads until
    /// `None`): that call also drops the reads the core will not hand over
    /// (answered at once), which would otherwise go back to its queue.
    fn hand_over_goes_on(&mut self) {
        if !self.handing {
            return;
        }
        self.handing = self.core.clone().next_batch_read().is_some();
        if !self.handing {
            let _ = self.core.next_batch_read();
        }
    }

    /// Take the next read of the batch being handed over
    /// (`Connection::next_batch_read`), as rdio's driver does after
    /// [`Received::Batch`]; the hand-over ends with the last.
    pub fn take_batch_read(&mut self) -> Option<Work> {
        let work = match self.core.next_batch_read() {
            Some(Received::Read { op, segments, .. }) => Some(Work::Read {
                op: op.0,
                dest: segments.iter().map(|s| s.dest()).collect(),
            }),
            _ => None,
        };
        self.handing = work.is_some();
        self.hand_over_goes_on();
        work
    }

    /// Whether the core has work for the driver (looked at on a copy).
    pub fn has_event(&self) -> bool {
        self.core.clone().poll_event().is_some()
    }

    /// Take the next event. `Authenticate` is answered here (the key is the
    /// one the registry issued); the rest goes to the driver's hands, or is
    /// `Err` with the termination the core reported.
    pub fn poll_event(&mut self, now: Instant) -> Result<Option<Work>, Violation> {
        self.handing = false;
        let work = match self.core.poll_event() {
            None => return Ok(None),
            Some(ServerEvent::Authenticate { key }) => {
                if key == AUTH_KEY {
                    let params = SessionParams {
                        session: SessionId(1),
                        credits: self.limits.initial_credits,
                        max_credits: self.limits.max_credits,
                        max_send_size: self.send,
                        max_io_size: 1024,
                        // What the negotiation granted: what the client
                        // offered and the server implements.
                        capabilities: self.limits.capabilities(),
                    };
                    let _ = self.core.accept_auth(now, params);
                } else {
                    self.core.reject_auth();
                }
                Work::Authenticate
            }
            Some(ServerEvent::Register { op, .. }) => Work::Register(op.0),
            Some(ServerEvent::Read { op, segments, .. }) => Work::Read {
                op: op.0,
                dest: segments.iter().map(|s| s.dest()).collect(),
            },
            Some(ServerEvent::CloseFile { .. }) => Work::CloseFile,
            // The driver finishes the file (an upload takes its name) and
            // answers the Close; the model's files always finish, so the
            // close succeeds at once (docs/MODEL.md, "What the bounds
            // leave out").
            Some(ServerEvent::Close { op, .. }) => {
                let _ = self.core.complete_close(op, Ok(()));
                Work::CloseFile
            }
            Some(ServerEvent::Terminated { reason }) => return Err(reason),
        };
        Ok(Some(work))
    }

    /// Finish `work` with `outcome`; RDMA writes of read data come first
    /// (they precede the status block on the connection). During a
    /// batch's hand-over the driver completes through `complete_io_into`
    /// and posts the status block it returns at once (rdio's driver does
    /// for a read it serves inline), which leaves the hand-over under way.
    pub fn complete(&mut self, work: &Work, outcome: Outcome) -> Vec<ToClient> {
        let mut writes = Vec::new();
        match work {
            Work::Authenticate | Work::CloseFile => {}
            Work::Register(op) => {
                let result = match outcome {
                    Outcome::Error => Err(Status::NotFound),
                    _ => Ok(Registration {
                        file: FileId(1),
                        flags: OpenFlags::READ | OpenFlags::WRITE,
                        size: 64,
                    }),
                };
                self.handing = false;
                let _ = self.core.complete_register(OpId(*op), result);
            }
            Work::Read { op, dest } => {
                let wanted: u64 = dest.iter().map(|d| u64::from(d.len())).sum();
                let result = match outcome {
                    Outcome::Full => Ok(wanted),
                    Outcome::Short => Ok(wanted - 1),
                    Outcome::Error => Err(Status::IoError),
                };
                if let Ok(mut left) = result {
                    for d in dest {
                        let len = left.min(u64::from(d.len()));
                        if len > 0 {
                            writes.push(ToClient::Data {
                                op: *op,
                                dest: *d,
                                len: len as u32,
                            });
                        }
                        left -= len;
                    }
                }
                writes.extend(self.complete_io(*op, result));
            }
            Work::Write { op, len } => {
                let result = match outcome {
                    Outcome::Full => Ok(*len),
                    Outcome::Short => Ok(len.saturating_sub(1)),
                    Outcome::Error => Err(Status::IoError),
                };
                writes.extend(self.complete_io(*op, result));
            }
        }
        writes
    }

    /// `complete_io`, or during a hand-over `complete_io_into` (the status
    /// block it returns, if any).
    fn complete_io(&mut self, op: u32, result: Result<u64, Status>) -> Option<ToClient> {
        if !self.handing {
            let _ = self.core.complete_io(OpId(op), result);
            return None;
        }
        let mut buf = vec![0u8; self.send as usize];
        let sent = self.core.complete_io_into(OpId(op), result, &mut buf);
        self.hand_over_goes_on();
        match sent {
            Ok(Some(t)) => Some(to_client(t, &buf)),
            _ => None,
        }
    }

    /// Steer the client's credits (grant or revoke).
    pub fn set_credit_target(&mut self, target: u16) -> Result<(), ApiError> {
        self.handing = false;
        self.core.set_credit_target(target)
    }

    /// Run timers at `now`.
    pub fn on_timeout(&mut self, now: Instant) {
        self.handing = false;
        self.core.handle_timeout(now);
    }

    /// The connection broke: the driver stops (its runner ends).
    pub fn on_lost(&mut self) {
        self.handing = false;
        self.core.close_connection();
    }

    /// The next deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.core.poll_timeout()
    }

    /// Drain sends and status-block writes to post (nothing while a
    /// batch's hand-over is under way: rdio's driver takes the whole batch
    /// first).
    pub fn drain(&mut self) -> Vec<ToClient> {
        let mut out = Vec::new();
        if self.handing {
            return out;
        }
        // Receives for the credits the client may use, before a grant
        // (or the auth response) leaves.
        self.recycle();
        let wanted = u8::try_from(self.core.receives_wanted()).unwrap_or(u8::MAX);
        self.receives = self.receives.max(wanted);
        let mut buf = vec![0u8; self.send as usize];
        while let Ok(Some(t)) = self.core.poll_transmit(&mut buf) {
            out.push(to_client(t, &buf));
        }
        out
    }
}

/// A server transmit encoded in `buf`, as it goes on the connection.
fn to_client(t: Transmit, buf: &[u8]) -> ToClient {
    match t {
        Transmit::Send { len } => ToClient::Send(buf[..len].to_vec()),
        Transmit::StatusBlock {
            len,
            dest,
            immediate,
        } => {
            let mut block = [0u8; STATUS_BLOCK_LEN];
            block.copy_from_slice(&buf[..len.min(STATUS_BLOCK_LEN)]);
            ToClient::Status {
                dest,
                block,
                immediate,
            }
        }
    }
}

/// Decode a client send's header for the observers (request id, body).
pub fn peek(bytes: &[u8]) -> Option<Message<'_>> {
    Message::parse(bytes).ok()
}
