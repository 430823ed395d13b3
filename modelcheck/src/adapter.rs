//! The adapter: the only code that drives `rdio_core`'s state machines.
//!
//! [`ClientSide`] and [`ServerSide`] wrap the real [`Client`] and
//! [`Connection`] and do exactly what a driver does with them — submit
//! requests, feed in received sends and status blocks, drain transmits and
//! events — returning plain data ([`ToServer`], [`ToClient`], [`Work`],
//! [`ClientEvent`]) that the model ([`crate::model`]) moves through its
//! network. Nothing of the protocol is re-modelled here. When the core's
//! hot-path API changes, this module is the one to port.

use rdio_core::client::{Client, ClientConfig, ClientEvent, CompletionMode, Negotiated, RequestId};
use rdio_core::server::{
    Connection, FileId, OpId, Received, Registration, ServerConfig, ServerEvent, SessionId,
    SessionParams, Transmit,
};
use rdio_core::wire::status::STATUS_BLOCK_LEN;
use rdio_core::wire::{
    AuthKey, Body, BufferDescriptor, Flags, Message, OpenFlags, ProviderList, ProviderName,
    ResumeKey, Status, WriteRequest, WriteSegment, WriteVRequest,
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
/// The handle the server gives the first registered file. Requests use it
/// from the start, so requests sent before the registration completes (or
/// after it failed, or after the close) meet an unknown handle.
pub const HANDLE: u32 = 1;
/// Bytes of each read segment (and of each vectored write segment).
pub const SEGMENT_LEN: u32 = 2;

/// Credit and timing configuration of both sides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Limits {
    /// Credits the client starts with.
    pub initial_credits: u16,
    /// Most credits either side allows.
    pub max_credits: u16,
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
    /// Bytes of a plain write: one more than its first fragment carries.
    write_len: u32,
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
}

fn max_send_size() -> u32 {
    // Room for a two-segment vectored write's prefix and 2 data bytes: a
    // plain write of more than that travels in two fragments.
    let segments = [WriteSegment::new(0, SEGMENT_LEN); 2];
    let writev = Message {
        flags: Flags::empty(),
        credits: 0,
        request_id: 0,
        body: Body::WriteV(WriteVRequest {
            handle: HANDLE,
            total_len: 0,
            status: BufferDescriptor::default(),
            segments: &segments,
            data: &[],
        }),
    };
    u32::try_from(writev.prefix_len() + 2).unwrap_or(u32::MAX)
}

fn prefix_room(body: Body<'_>) -> u32 {
    let msg = Message {
        flags: Flags::empty(),
        credits: 0,
        request_id: 0,
        body,
    };
    max_send_size().saturating_sub(u32::try_from(msg.prefix_len()).unwrap_or(u32::MAX))
}

fn server_config(limits: Limits) -> ServerConfig {
    ServerConfig {
        initial_credits: limits.initial_credits,
        max_credits: limits.max_credits,
        min_credits: 1,
        max_send_size: max_send_size(),
        max_io_size: 1024,
        auth_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(60),
        keepalive_interval: Duration::from_secs(20),
        capabilities: rdio_core::wire::Capabilities::NONE,
    }
}

impl ClientSide {
    /// A client that has just connected (its auth request is queued).
    pub fn new(limits: Limits, now: Instant) -> Self {
        let mut providers = ProviderList::new();
        if let Ok(name) = ProviderName::new("model") {
            let _ = providers.push(name);
        }
        let config = ClientConfig {
            providers: providers.clone(),
            max_credits: limits.max_credits,
            max_send_size: max_send_size(),
            max_io_size: 1024,
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
            max_send_size: max_send_size(),
            max_io_size: 1024,
            capabilities: rdio_core::wire::Capabilities::NONE,
        };
        // A write one byte longer than its first fragment's room.
        let write_len = prefix_room(Body::Write(WriteRequest {
            handle: HANDLE,
            offset: 0,
            total_len: 0,
            status: BufferDescriptor::default(),
            data: &[],
        })) + 1;
        Self {
            core: Box::new(Client::new(config, negotiated, now)),
            write_len,
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
                let mut buf = vec![0u8; max_send_size() as usize];
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
            Submit::Write(mode) => c.write(HANDLE, 0, self.write_len, status, mode.core())?,
            Submit::WriteNow(mode) => {
                let mut buf = vec![0u8; max_send_size() as usize];
                let (id, sent) = c.write_into(
                    now,
                    HANDLE,
                    0,
                    self.write_len,
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
                let segments = [
                    WriteSegment::new(0, SEGMENT_LEN),
                    WriteSegment::new(16, SEGMENT_LEN),
                ];
                c.write_vectored(HANDLE, &segments, false, status, mode.core())?
            }
            Submit::Collapse(mode) => {
                let segments = [
                    WriteSegment::new(0, SEGMENT_LEN),
                    WriteSegment::new(16, SEGMENT_LEN),
                ];
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
        let mut buf = vec![0u8; max_send_size() as usize];
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
        Self {
            core: Box::new(Connection::new(server_config(limits), now)),
            limits,
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
        Ok(match self.core.take_message(now, bytes)? {
            // Reads of a batch left untaken go back to the core's queue at
            // the next call, for `poll_event` (the model's client sends no
            // batches yet).
            Received::Nothing | Received::Batch => None,
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

    /// Whether the core has work for the driver (looked at on a copy).
    pub fn has_event(&self) -> bool {
        self.core.clone().poll_event().is_some()
    }

    /// Take the next event. `Authenticate` is answered here (the key is the
    /// one the registry issued); the rest goes to the driver's hands, or is
    /// `Err` with the termination the core reported.
    pub fn poll_event(&mut self, now: Instant) -> Result<Option<Work>, Violation> {
        let work = match self.core.poll_event() {
            None => return Ok(None),
            Some(ServerEvent::Authenticate { key }) => {
                if key == AUTH_KEY {
                    let params = SessionParams {
                        session: SessionId(1),
                        credits: self.limits.initial_credits,
                        max_credits: self.limits.max_credits,
                        max_send_size: max_send_size(),
                        max_io_size: 1024,
                        capabilities: rdio_core::wire::Capabilities::NONE,
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
    /// (they precede the status block on the connection).
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
                let _ = self.core.complete_io(OpId(*op), result);
            }
            Work::Write { op, len } => {
                let result = match outcome {
                    Outcome::Full => Ok(*len),
                    Outcome::Short => Ok(len.saturating_sub(1)),
                    Outcome::Error => Err(Status::IoError),
                };
                let _ = self.core.complete_io(OpId(*op), result);
            }
        }
        writes
    }

    /// Steer the client's credits (grant or revoke).
    pub fn set_credit_target(&mut self, target: u16) -> Result<(), ApiError> {
        self.core.set_credit_target(target)
    }

    /// Run timers at `now`.
    pub fn on_timeout(&mut self, now: Instant) {
        self.core.handle_timeout(now);
    }

    /// The connection broke: the driver stops (its runner ends).
    pub fn on_lost(&mut self) {
        self.core.close_connection();
    }

    /// The next deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.core.poll_timeout()
    }

    /// Drain sends and status-block writes to post.
    pub fn drain(&mut self) -> Vec<ToClient> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; max_send_size() as usize];
        while let Ok(Some(t)) = self.core.poll_transmit(&mut buf) {
            out.push(match t {
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
            });
        }
        out
    }
}

/// Decode a client send's header for the observers (request id, body).
pub fn peek(bytes: &[u8]) -> Option<Message<'_>> {
    Message::parse(bytes).ok()
}
