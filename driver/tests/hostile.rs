//! Hostile peers against the real server runtime: a raw client that writes
//! whatever bytes it likes on the pipe and the RDMA channel (over the
//! loopback, whose RC rules — remote keys, bounds, receive sizes — are the
//! ones a NIC enforces). Each test checks that the server refuses with a
//! clear status or ends the connection with a typed reason, that nothing
//! outside what the client advertised is written, and that other clients
//! are still served.

use rdio::embedded::{Embedded, EmbeddedOptions};
use rdio::files::Root;
use rdio::pipe::Pipe;
use rdio::server::{ConnectionEnd, Server, ServerError, ServerOptions};
use rdio_core::client::{ClientConfig, Negotiated};
use rdio_core::error::Violation;
use rdio_core::server::ServerConfig;
use rdio_core::wire::{
    AuthKey, Body, BufferDescriptor, Flags, Message, Opcode, OpenFlags, PipeMessage, ProviderName,
    ReadRequest, ResumeKey, Status, WriteRequest,
};
use rdio_loopback::SyncEndpoint;
use rdio_transport::{
    Access, Completion, CompletionKind, RegionId, Slice, Transport, TransportError,
    TransportWrapper, WcError,
};
use std::collections::VecDeque;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Largest message either side sends in these tests.
const MSG: usize = 1024;
/// Receives the raw client keeps posted.
const RECEIVES: usize = 16;
/// The raw client's remotely writable memory.
const MEMORY: usize = 64 << 10;
/// What the raw client's memory holds until the server writes it.
const UNTOUCHED: u8 = 0xAA;
const RWC: OpenFlags = OpenFlags::READ
    .union(OpenFlags::WRITE)
    .union(OpenFlags::CREATE);

fn provider() -> ProviderName {
    ProviderName::new("loopback").expect("provider")
}

fn server_options() -> ServerOptions {
    let mut options = ServerOptions::new(provider(), b"loopback");
    options.config = ServerConfig {
        initial_credits: 2,
        max_credits: 8,
        max_send_size: MSG as u32,
        max_io_size: 16 << 10,
        ..ServerConfig::default()
    };
    options
}

fn client_config() -> ClientConfig {
    let mut config = ClientConfig {
        max_credits: 8,
        max_send_size: MSG as u32,
        max_io_size: 16 << 10,
        ..ClientConfig::default()
    };
    config.providers.push(provider()).expect("room");
    config
}

/// A server exporting `root` (which holds `data`, 32 KiB of 0x5A).
fn serve(root: &Path, options: ServerOptions) -> Arc<Server> {
    std::fs::write(root.join("data"), [0x5A; 32 << 10]).expect("seed");
    Server::new(Root::new(root).expect("root"), options)
}

/// The pipe of one client session, with its handler thread.
struct Session {
    pipe: Pipe<UnixStream>,
    server_key: ResumeKey,
}

impl Session {
    fn start(server: &Arc<Server>) -> Self {
        let (client, server_end) = UnixStream::pair().expect("socketpair");
        let handler = Arc::clone(server);
        std::thread::spawn(move || handler.serve_pipe(server_end));
        let mut pipe = Pipe::new(client);
        pipe.send(&PipeMessage::ResumeKeyRequest).expect("send");
        let server_key = match pipe.receive().expect("receive") {
            PipeMessage::ResumeKeyResponse { key } => key,
            other => panic!("expected a resume key, got {other:?}"),
        };
        Self { pipe, server_key }
    }

    fn negotiate(&mut self) -> Negotiated {
        let config = client_config();
        self.pipe
            .send(&PipeMessage::NegotiateRequest(
                rdio_core::client::negotiate_request(&config, self.server_key),
            ))
            .expect("send");
        match self.pipe.receive().expect("receive") {
            PipeMessage::NegotiateResponse(response) => {
                rdio_core::client::negotiated(&config, &response).expect("negotiated")
            }
            other => panic!("expected a negotiate response, got {other:?}"),
        }
    }

    fn open(&mut self, path: &str, flags: OpenFlags) -> Result<ResumeKey, Status> {
        self.pipe
            .send(&PipeMessage::OpenRequest {
                flags,
                path: path.as_bytes(),
            })
            .expect("send");
        match self.pipe.receive().expect("receive") {
            PipeMessage::OpenResponse {
                status: Status::Success,
                key,
                ..
            } => Ok(key),
            PipeMessage::OpenResponse { status, .. } => Err(status),
            other => panic!("expected an open response, got {other:?}"),
        }
    }
}

/// The server's transport, holding receive completions back until
/// `batch` of them arrived (or a second passed), then handing them over
/// together: a deterministic "these messages arrived at once".
struct Batching {
    inner: SyncEndpoint,
    batch: Arc<AtomicUsize>,
    held: VecDeque<Completion>,
    since: Option<Instant>,
}

impl Batching {
    fn new(inner: SyncEndpoint, batch: Arc<AtomicUsize>) -> Self {
        Self {
            inner,
            batch,
            held: VecDeque::new(),
            since: None,
        }
    }

    fn receives_held(&self) -> usize {
        self.held
            .iter()
            .filter(|c| matches!(c.kind, CompletionKind::Recv { .. }))
            .count()
    }
}

impl TransportWrapper for Batching {
    type Inner = SyncEndpoint;
    fn inner(&self) -> &SyncEndpoint {
        &self.inner
    }
    fn inner_mut(&mut self) -> &mut SyncEndpoint {
        &mut self.inner
    }
    fn poll_completions(&mut self, out: &mut [Completion]) -> Result<usize, TransportError> {
        let mut one = [Completion {
            wr_id: 0,
            kind: CompletionKind::Send,
            status: Ok(()),
        }];
        while self.inner.poll_completions(&mut one)? == 1 {
            self.held.push_back(one[0]);
            self.since.get_or_insert_with(Instant::now);
        }
        let due = self.receives_held() >= self.batch.load(Ordering::SeqCst)
            || self
                .since
                .is_some_and(|since| since.elapsed() > Duration::from_secs(1));
        if !due {
            return Ok(0);
        }
        let mut n = 0;
        while n < out.len() {
            let Some(completion) = self.held.pop_front() else {
                break;
            };
            out[n] = completion;
            n += 1;
        }
        if self.held.is_empty() {
            self.since = None;
        }
        Ok(n)
    }
    fn wait(&mut self, timeout: Option<Duration>) -> Result<(), TransportError> {
        if self.held.is_empty() {
            self.inner.wait(timeout)
        } else {
            // What was posted is handed on, as every `wait` promises.
            self.inner.flush()?;
            std::thread::sleep(Duration::from_millis(1));
            Ok(())
        }
    }
}

/// What arrived at the raw client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Incoming {
    /// A send, by opcode, with the status (or reason) it carries.
    Message(Opcode, Option<Status>),
    /// A write-with-immediate (a status block landed).
    StatusBlock(u32),
    /// The connection failed.
    Failed(WcError),
}

/// A client that follows no rules: it sends the messages it is told to,
/// with the header fields it is told to use.
struct Raw {
    transport: SyncEndpoint,
    receives: RegionId,
    send: RegionId,
    /// Remotely writable memory the raw client may advertise.
    memory: RegionId,
    /// Remotely writable memory it never advertises.
    bystander: RegionId,
    next_id: u32,
    /// Arrivals taken off the queue while waiting for a send buffer.
    backlog: VecDeque<Incoming>,
    /// The handle of the last successful `RegisterFileCompletion`.
    registered: Option<u32>,
    server: JoinHandle<ConnectionEnd>,
}

impl Raw {
    fn connect(server: &Arc<Server>) -> Self {
        Self::connect_with(server, |end| end)
    }

    /// Connect with the server's end of the loopback wrapped by `wrap`.
    fn connect_with<T: Transport + Send + 'static>(
        server: &Arc<Server>,
        wrap: impl FnOnce(SyncEndpoint) -> T,
    ) -> Self {
        let (mut transport, server_end) =
            rdio_loopback::sync_pair(rdio_loopback::Config::default());
        let connection = server.accept(wrap(server_end)).expect("accept");
        let server = std::thread::spawn(move || connection.run());
        let receives = transport
            .register(RECEIVES * MSG, Access::LOCAL_WRITE)
            .expect("register");
        for i in 0..RECEIVES {
            transport
                .post_recv(
                    i as u64,
                    Slice {
                        region: receives,
                        offset: i * MSG,
                        len: MSG,
                    },
                )
                .expect("post receive");
        }
        let send = transport
            .register(4 * MSG, Access::empty())
            .expect("register");
        let remote = Access::LOCAL_WRITE | Access::REMOTE_WRITE;
        let memory = transport.register(MEMORY, remote).expect("register");
        let bystander = transport.register(MEMORY, remote).expect("register");
        for region in [memory, bystander] {
            transport
                .region_mut(region)
                .expect("memory")
                .fill(UNTOUCHED);
        }
        Self {
            transport,
            receives,
            send,
            memory,
            bystander,
            next_id: 100,
            backlog: VecDeque::new(),
            registered: None,
            server,
        }
    }

    /// Send `body` with header `credits`; returns its request id.
    fn send(&mut self, body: Body<'_>, credits: u16) -> u32 {
        self.next_id += 1;
        let message = Message {
            flags: match body {
                Body::Read(_) | Body::Write(_) => Flags::INTERRUPT,
                _ => Flags::empty(),
            },
            credits,
            demand: 0,
            request_id: self.next_id,
            body,
        };
        let mut bytes = vec![0u8; 4 * MSG];
        let len = message.emit(&mut bytes).expect("emit");
        self.send_bytes(&bytes[..len]);
        self.next_id
    }

    /// Post `bytes` as one send (the send buffer is reused only after the
    /// previous send's completion: the transport refuses otherwise).
    fn send_bytes(&mut self, bytes: &[u8]) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.transport.region_mut(self.send) {
                Ok(buffer) => {
                    buffer[..bytes.len()].copy_from_slice(bytes);
                    break;
                }
                Err(TransportError::Busy(_)) if Instant::now() < deadline => {
                    if let Some(incoming) = self.poll_within(Duration::from_millis(1)) {
                        self.backlog.push_back(incoming);
                    }
                }
                Err(e) => panic!("send buffer: {e}"),
            }
        }
        // A dead connection refuses the post; the test looks at the end.
        let _ = self.transport.post_send(
            1 << 32,
            &[Slice {
                region: self.send,
                offset: 0,
                len: bytes.len(),
            }],
            None,
        );
    }

    /// Post each message from a buffer of its own, back to back, without
    /// waiting for anything in between.
    fn burst(&mut self, messages: &[Message<'_>]) {
        let mut ready = Vec::with_capacity(messages.len());
        for message in messages {
            let region = self
                .transport
                .register(MSG, Access::empty())
                .expect("register");
            let buffer = self.transport.region_mut(region).expect("fresh");
            ready.push(Slice::whole(region, message.emit(buffer).expect("emit")));
        }
        for slice in ready {
            let _ = self.transport.post_send(2 << 32, &[slice], None);
        }
    }

    /// The next arrival within `timeout`, the backlog first.
    fn next_within(&mut self, timeout: Duration) -> Option<Incoming> {
        match self.backlog.pop_front() {
            Some(incoming) => Some(incoming),
            None => self.poll_within(timeout),
        }
    }

    /// The next message, status block or failure within `timeout`.
    fn poll_within(&mut self, timeout: Duration) -> Option<Incoming> {
        let deadline = Instant::now() + timeout;
        let mut one = [Completion {
            wr_id: 0,
            kind: CompletionKind::Send,
            status: Ok(()),
        }];
        loop {
            match self.transport.poll_completions(&mut one) {
                Ok(1) => {
                    let completion = one[0];
                    if let Err(e) = completion.status {
                        return Some(Incoming::Failed(e));
                    }
                    match completion.kind {
                        CompletionKind::Recv { len } => {
                            let index = completion.wr_id as usize;
                            let start = index * MSG;
                            let bytes = &self.transport.region(self.receives).expect("receives")
                                [start..start + len];
                            let incoming = match Message::parse(bytes) {
                                Ok(message) => {
                                    if let Body::RegisterFileCompletion {
                                        status: Status::Success,
                                        handle,
                                        ..
                                    } = message.body
                                    {
                                        self.registered = Some(handle);
                                    }
                                    Incoming::Message(message.opcode(), status_of(&message.body))
                                }
                                Err(e) => panic!("server sent a malformed message: {e}"),
                            };
                            self.repost(index);
                            return Some(incoming);
                        }
                        CompletionKind::RecvImm { imm } => {
                            self.repost(completion.wr_id as usize);
                            return Some(Incoming::StatusBlock(imm));
                        }
                        CompletionKind::Send | CompletionKind::Write => {}
                    }
                }
                Ok(_) => {
                    if Instant::now() >= deadline {
                        return None;
                    }
                    let _ = self.transport.wait(Some(Duration::from_millis(5)));
                }
                Err(_) => return Some(Incoming::Failed(WcError::Disconnected)),
            }
        }
    }

    fn next(&mut self) -> Incoming {
        self.next_within(Duration::from_secs(5))
            .expect("the server answered within 5 s")
    }

    fn repost(&mut self, index: usize) {
        let _ = self.transport.post_recv(
            index as u64,
            Slice {
                region: self.receives,
                offset: index * MSG,
                len: MSG,
            },
        );
    }

    /// Authenticate with `key`; the two answers.
    fn authenticate(&mut self, key: AuthKey, credits: u16) -> (Incoming, Incoming) {
        self.send(Body::AuthRequest { key }, credits);
        (self.next(), self.next())
    }

    fn descriptor(&self, offset: usize, len: usize) -> BufferDescriptor {
        let remote = self
            .transport
            .remote_buf(self.memory, offset, len)
            .expect("remote buf");
        BufferDescriptor::new(remote.addr, remote.key, remote.len)
    }

    fn memory(&self, region: RegionId) -> Vec<u8> {
        self.transport.region(region).expect("memory").to_vec()
    }

    /// How the server saw the connection end (keeps this side progressing
    /// so the server's last sends complete).
    fn end(mut self) -> ConnectionEnd {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.server.is_finished() {
            assert!(
                Instant::now() < deadline,
                "the server did not end the connection"
            );
            let _ = self.next_within(Duration::from_millis(5));
        }
        self.server.join().expect("server thread")
    }
}

fn status_of(body: &Body<'_>) -> Option<Status> {
    match *body {
        Body::AuthResponse { status }
        | Body::StatusResponse { status, .. }
        | Body::RegisterFileCompletion { status, .. }
        | Body::Completion { status, .. } => Some(status),
        Body::Terminate { reason } => Some(reason),
        _ => None,
    }
}

fn authenticated(server: &Arc<Server>) -> (Raw, Session, u16) {
    let mut session = Session::start(server);
    let negotiated = session.negotiate();
    let mut raw = Raw::connect(server);
    let (auth, status) = raw.authenticate(negotiated.auth_key, negotiated.credits);
    assert_eq!(
        auth,
        Incoming::Message(Opcode::AuthResponse, Some(Status::Success))
    );
    assert_eq!(
        status,
        Incoming::Message(Opcode::StatusResponse, Some(Status::Success))
    );
    (raw, session, negotiated.credits)
}

/// Register `key`; the registration's status.
fn register(raw: &mut Raw, key: ResumeKey, credits: u16) -> Incoming {
    raw.send(Body::RegisterFile { key }, credits);
    raw.next()
}

const TERMINATED_AUTH_FAILED: Incoming =
    Incoming::Message(Opcode::Terminate, Some(Status::AuthFailed));

#[test]
fn a_forged_authentication_key_is_refused_and_burns_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = serve(dir.path(), server_options());
    let mut session = Session::start(&server);
    let negotiated = session.negotiate();

    let mut forger = Raw::connect(&server);
    let mut forged = negotiated.auth_key.0;
    forged[15] ^= 1;
    let (auth, terminate) = forger.authenticate(AuthKey(forged), negotiated.credits);
    assert_eq!(
        auth,
        Incoming::Message(Opcode::AuthResponse, Some(Status::AuthFailed))
    );
    assert_eq!(terminate, TERMINATED_AUTH_FAILED);
    assert_eq!(
        forger.end(),
        ConnectionEnd::Terminated(Violation::AuthFailed)
    );

    // The real key was not consumed by the forgery.
    let mut owner = Raw::connect(&server);
    let (auth, _) = owner.authenticate(negotiated.auth_key, negotiated.credits);
    assert_eq!(
        auth,
        Incoming::Message(Opcode::AuthResponse, Some(Status::Success))
    );
}

#[test]
fn a_replayed_authentication_key_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = serve(dir.path(), server_options());
    let mut session = Session::start(&server);
    let negotiated = session.negotiate();
    let mut first = Raw::connect(&server);
    let (auth, _) = first.authenticate(negotiated.auth_key, negotiated.credits);
    assert_eq!(
        auth,
        Incoming::Message(Opcode::AuthResponse, Some(Status::Success))
    );
    let mut replay = Raw::connect(&server);
    let (auth, terminate) = replay.authenticate(negotiated.auth_key, negotiated.credits);
    assert_eq!(
        auth,
        Incoming::Message(Opcode::AuthResponse, Some(Status::AuthFailed))
    );
    assert_eq!(terminate, TERMINATED_AUTH_FAILED);
    assert_eq!(
        replay.end(),
        ConnectionEnd::Terminated(Violation::AuthFailed)
    );
}

#[test]
fn requests_before_authentication_end_the_connection_and_read_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = serve(dir.path(), server_options());
    let mut raw = Raw::connect(&server);
    let dest = raw.descriptor(0, 4096);
    let status = raw.descriptor(8192, 24);
    raw.send(
        Body::Read(ReadRequest {
            handle: 1,
            offset: 0,
            dest,
            status,
        }),
        2,
    );
    assert_eq!(
        raw.next(),
        Incoming::Message(Opcode::Terminate, Some(Status::ProtocolError))
    );
    assert!(raw.memory(raw.memory).iter().all(|&b| b == UNTOUCHED));
    assert_eq!(
        raw.end(),
        ConnectionEnd::Terminated(Violation::UnexpectedMessage(Opcode::Read))
    );
}

#[test]
fn credit_mismatch_and_overrun_end_the_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = serve(dir.path(), server_options());

    // The header claims a level the server never granted.
    let (mut raw, _session, level) = authenticated(&server);
    raw.send(Body::Keepalive, level + 1);
    assert!(matches!(
        raw.next(),
        Incoming::Message(Opcode::Terminate, Some(_))
    ));
    assert_eq!(
        raw.end(),
        ConnectionEnd::Terminated(Violation::CreditMismatch {
            expected: level,
            found: level + 1
        })
    );

    // More requests outstanding than credits held. Registrations stay
    // outstanding until the driver resolves them after the whole batch of
    // receives, so three in one batch overrun two credits; the server's
    // receives are held back until all three arrived, to make it one batch.
    let batch = Arc::new(AtomicUsize::new(1));
    let mut session = Session::start(&server);
    let negotiated = session.negotiate();
    let held = Arc::clone(&batch);
    let mut raw = Raw::connect_with(&server, move |end| Batching::new(end, held));
    let level = negotiated.credits;
    assert_eq!(level, 2);
    let (auth, _) = raw.authenticate(negotiated.auth_key, level);
    assert_eq!(
        auth,
        Incoming::Message(Opcode::AuthResponse, Some(Status::Success))
    );
    batch.store(3, Ordering::SeqCst);
    let registrations: Vec<Message<'_>> = (0..3)
        .map(|i| Message {
            flags: Flags::empty(),
            credits: level,
            demand: 0,
            request_id: 500 + i,
            body: Body::RegisterFile {
                key: ResumeKey([i as u8; 16]),
            },
        })
        .collect();
    raw.burst(&registrations);
    assert_eq!(
        raw.end(),
        ConnectionEnd::Terminated(Violation::CreditOverrun)
    );
}

/// The metrics of a hostile session: a keepalive answered, then a credit
/// mismatch, counted by kind; the connection's own series are there while
/// it lives and gone once it ended, its counts kept in the totals.
#[test]
fn violations_and_keepalives_are_counted_and_the_connection_series_go() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = serve(dir.path(), server_options());
    let (mut raw, _session, level) = authenticated(&server);
    raw.send(Body::Keepalive, level);
    assert_eq!(
        raw.next(),
        Incoming::Message(Opcode::KeepaliveResponse, None)
    );
    // The cell is copied from the core at the end of the round that
    // answered; wait for it rather than race the server thread.
    let deadline = Instant::now() + Duration::from_secs(5);
    let live = loop {
        let live = server.stats().live;
        if live
            .first()
            .is_some_and(|(_, c)| c.core.keepalives_answered == 1)
        {
            break live;
        }
        assert!(Instant::now() < deadline, "{live:?}");
        std::thread::sleep(Duration::from_millis(2));
    };
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].1.core.keepalives, 1);
    assert_eq!(live[0].1.credits, u64::from(level));

    raw.send(Body::Keepalive, level + 1);
    assert!(matches!(
        raw.next(),
        Incoming::Message(Opcode::Terminate, Some(Status::ProtocolError))
    ));
    assert!(matches!(
        raw.end(),
        ConnectionEnd::Terminated(Violation::CreditMismatch { .. })
    ));
    let stats = server.stats();
    assert!(stats.live.is_empty(), "{:?}", stats.live);
    assert_eq!(stats.totals.core.keepalives, 1);
    assert_eq!(stats.totals.core.keepalives_answered, 1);
    assert_eq!(stats.totals.credits, 0, "no live connection holds credits");
    let kind = |name: &str| {
        rdio::stats::VIOLATION_KINDS
            .iter()
            .position(|k| *k == name)
            .expect("kind")
    };
    assert_eq!(stats.violations[kind("credit_mismatch")], 1);
    assert_eq!(stats.violations.iter().sum::<u64>(), 1);
    assert_eq!(stats.ends[4], 1, "protocol_violation");
}

#[test]
fn forged_and_replayed_file_keys_are_refused_as_statuses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = serve(dir.path(), server_options());
    let (mut raw, mut session, level) = authenticated(&server);
    let key = session.open("data", OpenFlags::READ).expect("open");
    let mut forged = key.0;
    forged[0] ^= 0x80;
    let unknown = Incoming::Message(
        Opcode::RegisterFileCompletion,
        Some(Status::UnknownResumeKey),
    );
    assert_eq!(register(&mut raw, ResumeKey(forged), level), unknown);
    assert_eq!(
        register(&mut raw, key, level),
        Incoming::Message(Opcode::RegisterFileCompletion, Some(Status::Success))
    );
    assert_eq!(register(&mut raw, key, level), unknown, "single use");
    // Another session's key is unknown to this connection's session.
    let mut other = Session::start(&server);
    let theirs = other.open("data", OpenFlags::READ).expect("open");
    assert_eq!(register(&mut raw, theirs, level), unknown);
    // Statuses, not violations: the connection is still open.
    raw.send(Body::Keepalive, level);
    assert_eq!(
        raw.next(),
        Incoming::Message(Opcode::KeepaliveResponse, None)
    );
}

/// Register `data` on an authenticated raw connection.
fn with_registered_file(server: &Arc<Server>) -> (Raw, Session, u16, u32) {
    let (mut raw, mut session, level) = authenticated(server);
    let key = session.open("data", RWC).expect("open");
    raw.send(Body::RegisterFile { key }, level);
    assert_eq!(
        raw.next(),
        Incoming::Message(Opcode::RegisterFileCompletion, Some(Status::Success))
    );
    let handle = raw.registered.expect("the completion named the handle");
    (raw, session, level, handle)
}

#[test]
fn bad_keys_offsets_and_lengths_in_descriptors_corrupt_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = serve(dir.path(), server_options());

    // A sound read first: the data lands exactly where advertised.
    let (mut raw, _session, level, handle) = with_registered_file(&server);
    let dest = raw.descriptor(4096, 1000);
    let status = raw.descriptor(60_000, 24);
    raw.send(
        Body::Read(ReadRequest {
            handle,
            offset: 0,
            dest,
            status,
        }),
        level,
    );
    assert!(matches!(raw.next(), Incoming::StatusBlock(_)));
    let memory = raw.memory(raw.memory);
    assert!(memory[4096..5096].iter().all(|&b| b == 0x5A));
    assert!(memory[..4096].iter().all(|&b| b == UNTOUCHED));
    assert!(memory[5096..60_000].iter().all(|&b| b == UNTOUCHED));
    drop(raw);

    // Then every way of pointing the server at memory it was not given.
    type Forge = fn(BufferDescriptor) -> BufferDescriptor;
    let forgeries: [(&str, Forge); 3] = [
        ("wrong key", |d| {
            BufferDescriptor::new(d.addr(), d.key() ^ 0x5555, d.len())
        }),
        ("past the region", |d| {
            BufferDescriptor::new(d.addr() + MEMORY as u64, d.key(), d.len())
        }),
        ("longer than the region", |d| {
            BufferDescriptor::new(d.addr() + MEMORY as u64 - 100, d.key(), d.len())
        }),
    ];
    for (what, forge) in forgeries {
        let (mut raw, _session, level, handle) = with_registered_file(&server);
        let dest = forge(raw.descriptor(0, 1000));
        let status = raw.descriptor(60_000, 24);
        raw.send(
            Body::Read(ReadRequest {
                handle,
                offset: 0,
                dest,
                status,
            }),
            level,
        );
        assert!(
            matches!(raw.next(), Incoming::Failed(_)),
            "{what}: the connection fails"
        );
        for region in [raw.memory, raw.bystander] {
            assert!(
                raw.memory(region).iter().all(|&b| b == UNTOUCHED),
                "{what}: client memory changed"
            );
        }
        // The RDMA write fails with a remote access error; the server sees
        // that completion, or its next post refused on the dead connection.
        let end = raw.end();
        assert!(
            matches!(
                end,
                ConnectionEnd::Lost(WcError::RemoteAccess)
                    | ConnectionEnd::Transport(TransportError::Disconnected)
            ),
            "{what}: {end:?}"
        );
    }

    // Descriptors the core refuses before any RDMA: a status block too
    // short to hold one, a destination beyond the negotiated I/O size.
    let cases: [(&str, usize, usize, Violation); 2] = [
        ("short status block", 1000, 8, Violation::BadDescriptor),
        ("oversize read", 32 << 10, 24, Violation::TooLarge),
    ];
    for (what, dest_len, status_len, violation) in cases {
        let (mut raw, _session, level, handle) = with_registered_file(&server);
        let dest = raw.descriptor(0, dest_len);
        let status = raw.descriptor(60_000, status_len);
        raw.send(
            Body::Read(ReadRequest {
                handle,
                offset: 0,
                dest,
                status,
            }),
            level,
        );
        assert!(
            matches!(raw.next(), Incoming::Message(Opcode::Terminate, Some(_))),
            "{what}"
        );
        assert!(raw.memory(raw.memory).iter().all(|&b| b == UNTOUCHED));
        assert_eq!(raw.end(), ConnectionEnd::Terminated(violation), "{what}");
    }
}

#[test]
fn oversize_and_misplaced_fragments_end_the_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = serve(dir.path(), server_options());

    // A message larger than the negotiated send size does not fit the
    // server's receive: the transport fails it, nothing is parsed.
    let (mut raw, _session, _level, _handle) = with_registered_file(&server);
    raw.send_bytes(&[0x01; 2 * MSG]);
    assert!(matches!(raw.next(), Incoming::Failed(_)));
    assert_eq!(raw.end(), ConnectionEnd::Lost(WcError::LocalLength));

    // A fragment that skips ahead, and one past the write's end.
    for (what, data_offset) in [("gap", 80u32), ("past the end", 100)] {
        let (mut raw, _session, level, handle) = with_registered_file(&server);
        let status = raw.descriptor(60_000, 24);
        raw.send(
            Body::Write(WriteRequest {
                handle,
                offset: 0,
                total_len: 100,
                status,
                data: &[0x77; 50],
            }),
            level,
        );
        let id = raw.next_id;
        // Continue the same request with a misplaced fragment.
        let message = Message {
            flags: Flags::empty(),
            credits: level,
            demand: 0,
            request_id: id,
            body: Body::WriteData {
                data_offset,
                data: &[0x66; 20],
            },
        };
        let mut bytes = vec![0u8; MSG];
        let len = message.emit(&mut bytes).expect("emit");
        // The first fragment's answer frees its credit before the next.
        assert_eq!(
            raw.next(),
            Incoming::Message(Opcode::Completion, Some(Status::Success))
        );
        raw.send_bytes(&bytes[..len]);
        assert_eq!(
            raw.end(),
            ConnectionEnd::Terminated(Violation::FragmentOutOfOrder),
            "{what}"
        );
        let disk = std::fs::read(dir.path().join("data")).expect("data");
        assert!(
            disk[..50].iter().all(|&b| b == 0x77) && disk[50..].iter().all(|&b| b == 0x5A),
            "{what}: only the in-order fragment was written"
        );
        std::fs::write(dir.path().join("data"), [0x5A; 32 << 10]).expect("reseed");
    }

    // A malformed message is a typed violation too.
    let (mut raw, _session, _level, _handle) = with_registered_file(&server);
    raw.send_bytes(b"GET / HTTP/1.1\r\n\r\n");
    assert!(matches!(
        raw.end(),
        ConnectionEnd::Terminated(Violation::Malformed(_))
    ));
}

#[test]
fn a_flood_of_opens_hits_the_session_limit_and_others_are_still_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut options = server_options();
    options.max_pending_opens = 4;
    options.max_open_files = 16;
    let server = serve(dir.path(), options);
    let mut flooder = Session::start(&server);
    for i in 0..4 {
        flooder
            .open("data", OpenFlags::READ)
            .unwrap_or_else(|s| panic!("open {i}: {s}"));
    }
    for _ in 0..100 {
        assert_eq!(
            flooder.open("data", OpenFlags::READ),
            Err(Status::ResourceExhausted)
        );
    }
    assert_eq!(server.open_files(), 4, "refused opens hold nothing");

    // Another client opens, registers and reads as usual.
    let (mut raw, mut session, level) = authenticated(&server);
    let key = session
        .open("data", OpenFlags::READ)
        .expect("others are served");
    assert_eq!(
        register(&mut raw, key, level),
        Incoming::Message(Opcode::RegisterFileCompletion, Some(Status::Success))
    );

    // The flooder's files close with its pipe.
    drop(flooder);
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.open_files() != 1 {
        assert!(Instant::now() < deadline, "flooder's files were not closed");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn connections_beyond_the_limit_are_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut options = server_options();
    options.max_connections = 1;
    let server = serve(dir.path(), options);
    let (raw, _session, _level) = authenticated(&server);
    let (_client_end, server_end) = rdio_loopback::sync_pair(rdio_loopback::Config::default());
    let refused = server.accept(server_end);
    assert!(matches!(refused, Err(ServerError::TooManyConnections)));
    assert_eq!(
        refused.err().map(|e| e.to_string()).as_deref(),
        Some("too many RDMA connections")
    );
    // The first connection ends; a new one is accepted.
    drop(raw.transport);
    let _ = raw.server.join();
    let (_client_end, server_end) = rdio_loopback::sync_pair(rdio_loopback::Config::default());
    assert!(server.accept(server_end).is_ok());
}

#[test]
fn absolute_paths_and_symlinks_swapped_in_after_open_stay_confined() {
    let base = tempfile::tempdir().expect("tempdir");
    let root = base.path().join("root");
    let outside = base.path().join("outside");
    std::fs::create_dir_all(root.join("dir")).expect("dirs");
    std::fs::create_dir(&outside).expect("outside");
    std::fs::write(outside.join("f"), b"outside").expect("outside file");
    std::fs::write(root.join("dir/f"), b"inside!").expect("inside file");
    let mut pair = Embedded::start(&root, EmbeddedOptions::default()).expect("start");

    // An absolute path names a file beneath the root (none here), never
    // the host's.
    let absolute = outside.join("f");
    let refused = pair
        .client
        .open(absolute.to_str().expect("utf-8"), OpenFlags::READ);
    assert_eq!(
        refused.err().and_then(|e| e.status()),
        Some(Status::NotFound)
    );
    let upload = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE;
    let absolute_upload = pair.client.open(absolute.to_str().expect("utf-8"), upload);
    assert_eq!(
        absolute_upload.err().and_then(|e| e.status()),
        Some(Status::NotFound),
        "its directories do not exist beneath the root"
    );

    // Open (in place, and an upload), then replace the directory with a
    // symlink to the outside.
    let file = pair.client.open("dir/f", RWC).expect("open");
    let uploaded = pair.client.open("dir/f", upload).expect("upload");
    std::fs::rename(root.join("dir"), root.join("dir.old")).expect("rename");
    std::os::unix::fs::symlink(&outside, root.join("dir")).expect("symlink");
    pair.client.write_at(&file, 0, b"written").expect("write");
    assert_eq!(
        std::fs::read(outside.join("f")).expect("outside"),
        b"outside",
        "the open file is the inode opened, not the path"
    );
    assert_eq!(
        std::fs::read(root.join("dir.old/f")).expect("inside"),
        b"written"
    );
    // The upload takes its name in the directory it was opened in.
    pair.client
        .write_at(&uploaded, 0, b"uploaded")
        .expect("write");
    pair.client.close(uploaded).expect("close commits");
    assert_eq!(
        std::fs::read(outside.join("f")).expect("outside"),
        b"outside",
        "the upload's directory is the one opened, not the path"
    );
    assert_eq!(
        std::fs::read(root.join("dir.old/f")).expect("inside"),
        b"uploaded"
    );
    // A new open through the swapped-in symlink is refused by the kernel.
    let refused = pair.client.open("dir/f", OpenFlags::READ);
    assert_eq!(
        refused.err().and_then(|e| e.status()),
        Some(Status::AccessDenied)
    );
    pair.finish().expect("finish");
}

#[test]
fn a_send_buffer_is_never_reused_before_its_completion() {
    // The transport refuses to lend a posted buffer for writing or to
    // deregister it until the send's completion is drained — the rule the
    // driver relies on (its send pools take a buffer back only from the
    // completion).
    let (mut a, mut b) = rdio_loopback::pair(rdio_loopback::Config::default());
    let receive = b.register(64, Access::LOCAL_WRITE).expect("register");
    b.post_recv(
        7,
        Slice {
            region: receive,
            offset: 0,
            len: 64,
        },
    )
    .expect("post receive");
    let send = a.register(64, Access::empty()).expect("register");
    a.region_mut(send).expect("free")[..5].copy_from_slice(b"first");
    a.post_send(1, &[Slice::whole(send, 5)], None)
        .expect("post send");
    assert_eq!(a.region_mut(send).err(), Some(TransportError::Busy(send)));
    assert_eq!(a.deregister(send), Err(TransportError::Busy(send)));
    // Delivered to the peer, but not yet drained here: still busy.
    let mut out = [Completion {
        wr_id: 0,
        kind: CompletionKind::Send,
        status: Ok(()),
    }; 4];
    assert_eq!(b.poll_completions(&mut out), Ok(1));
    assert_eq!(a.region_mut(send).err(), Some(TransportError::Busy(send)));
    assert_eq!(a.poll_completions(&mut out), Ok(1));
    assert_eq!(out[0].wr_id, 1);
    a.region_mut(send).expect("free after its completion")[..6].copy_from_slice(b"second");
    assert_eq!(&b.region(receive).expect("receive")[..5], b"first");
    assert_eq!(a.deregister(send), Ok(()));
}

#[test]
fn keys_are_random_distinct_and_never_printed() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("f"), b"x").expect("seed");
    let mut pair = Embedded::start(dir.path(), EmbeddedOptions::default()).expect("start");
    let keys: Vec<_> = (0..16)
        .map(|_| {
            pair.client
                .open_on_pipe("f", OpenFlags::READ)
                .expect("open")
        })
        .collect();
    for (i, opened) in keys.iter().enumerate() {
        assert_ne!(opened.key.0, [0; 16], "a key is never all zeros");
        for other in &keys[i + 1..] {
            assert_ne!(opened.key.0, other.key.0, "keys are distinct");
        }
        // Neither the key's bytes nor any hex rendering reach Debug output.
        let printed = format!("{opened:?} {:?}", opened.key);
        assert!(printed.contains("<redacted>"), "{printed}");
        let hex: String = opened.key.0.iter().map(|b| format!("{b:02x}")).collect();
        assert!(!printed.contains(&hex[..8]), "{printed}");
        let array = format!(
            "[{}, {}, {}",
            opened.key.0[0], opened.key.0[1], opened.key.0[2]
        );
        assert!(!printed.contains(&array), "{printed}");
    }
    pair.finish().expect("finish");
}
