//! The file-serving server: one shared [`Server`] (exported root, open
//! files, side-channel registry), a pipe handler per client
//! ([`Server::serve_pipe`]) and a [`ServerConnection`] runner per RDMA
//! connection.
//!
//! Data walks one way: the core server turns received messages into work
//! (register, read, write data, close); the connection runner does the file
//! I/O through [`crate::files`] and posts the RDMA writes and sends the core
//! asks for.

mod connection;
mod files;
mod quiet;

pub use connection::{ConnectionControl, ConnectionEnd, ServerConnection, Turn};

use crate::access::{AuthState, ChannelBinding, Clients, Permission, random, verify_proof};
use crate::buffers::Clock;
use crate::files::{FileId, FileTable, Root};
use crate::pipe::{Pipe, PipeError};
use rdio_core::server::{FileEntry, Registry, ServerConfig, ServerOffer, SessionId};
use rdio_core::wire::{
    AuthAccess, AuthKey, CHECKSUM_DIGEST_LEN, ChecksumAlgorithm, KEY_LEN, OpenFlags, PipeErrorCode,
    PipeMessage, ProviderList, ProviderName, ResumeKey, Status, WireError,
};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Bytes read per step while a `ChecksumRequest` hashes a file: large
/// enough that the reads cost little next to the hashing, small enough to
/// stay in the cache.
const CHECKSUM_CHUNK: usize = 256 * 1024;

/// Limits and identity of a server.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Protocol limits and credit policy handed to every connection.
    pub config: ServerConfig,
    /// Most files open at once over all clients.
    pub max_open_files: usize,
    /// Most files one side-channel session may hold opened and not yet
    /// registered, so one client flooding opens cannot take every slot of
    /// `max_open_files` from the others.
    pub max_pending_opens: usize,
    /// Most side-channel sessions at once (at most [`MAX_SESSIONS`]); a
    /// resume key request beyond it is answered `Refused{Busy}`, which
    /// networked clients retry with backoff.
    pub max_sessions: usize,
    /// Most RDMA connections served at once ([`Server::accept`] refuses
    /// more with [`ServerError::TooManyConnections`]).
    pub max_connections: usize,
    /// Providers offered in negotiation, most preferred first.
    pub providers: ProviderList,
    /// The RDMA endpoint address given to negotiating clients.
    pub endpoint: Vec<u8>,
    /// How long an authentication key stays redeemable after negotiation.
    pub auth_lifetime: Duration,
    /// Registered memory for read data awaiting its RDMA write, in
    /// `config.max_io_size` buffers' worth: the connection registers it as
    /// chunks of `max_io_size / 32` bytes (at least 64 KiB), and a read
    /// takes one chunk per piece of that size (so a 4 KiB read takes one,
    /// and the default two buffers of 8 MiB serve 64 small reads at once);
    /// reads that find too few chunks free wait. No more chunks than half
    /// the transport's send queue (`Caps::max_send`), and always enough for
    /// one largest read. Reads served from a file mapping need none.
    pub read_buffers: usize,
    /// Serve reads of files opened read-only straight from a mapping of the
    /// file under a read lease, where the transport can register external
    /// memory (zero-copy; see [`crate::files::FileLease`]). Off: every read
    /// is copied into a bounce buffer first.
    pub zero_copy_reads: bool,
    /// Largest file served zero-copy over a transport whose registrations
    /// pin memory (`Caps::pins_registrations`); larger ones go through
    /// bounce buffers. The whole file is registered, and a hardware
    /// transport (`ibv_reg_mr`) pins every page of it, so this bounds the
    /// memory one open file can lock (it must also fit `RLIMIT_MEMLOCK`,
    /// or the registration fails and the file is copied instead). Over a
    /// software transport (loopback, cma, libfabric's tcp) nothing is
    /// pinned, and files of any size are served from their mapping.
    pub zero_copy_max_file: u64,
    /// Export read-only: every open for write, create or truncate is
    /// refused with [`Status::ReadOnly`], whoever asks.
    pub read_only: bool,
    /// Most files one client session may hold open at once (opened on its
    /// side channel and not yet closed, registered or not); the open
    /// beyond it is answered [`Status::TooManyOpenFiles`], and closing one
    /// lets the next succeed. Keeps one client from taking every slot of
    /// `max_open_files` (and the server's descriptors) from the others.
    pub max_open_files_per_client: usize,
    /// End a client's side channel and RDMA connection after this long
    /// with no open files and no requests ([`Status::IdleTimeout`]), so
    /// idle clients do not hold sessions, connections and registered
    /// buffers forever. `None`: never.
    pub idle_timeout: Option<Duration>,
    /// Keep per-request metrics: the latency histograms (by kind and
    /// size), completions by status, bytes and reads served, the core's
    /// credit counters, and request spans (`tracing`, trace level).
    /// Connection-level counts stay either way. Off only to measure what
    /// they cost (`scripts/callgrind-metrics.sh`).
    pub request_metrics: bool,
}

/// The default of [`ServerOptions::max_open_files_per_client`] (and of
/// `rdio serve --max-open-files`).
pub const DEFAULT_MAX_OPEN_FILES_PER_CLIENT: usize = 256;

impl ServerOptions {
    /// Defaults for a server reached over `provider` at `endpoint`.
    pub fn new(provider: ProviderName, endpoint: &[u8]) -> Self {
        let mut providers = ProviderList::new();
        // Capacity MAX_PROVIDERS >= 1.
        let _ = providers.push(provider);
        Self {
            config: ServerConfig {
                max_send_size: crate::DEFAULT_MAX_SEND_SIZE,
                ..ServerConfig::default()
            },
            max_open_files: 4096,
            max_pending_opens: 64,
            max_sessions: MAX_SESSIONS,
            max_connections: MAX_SESSIONS,
            providers,
            endpoint: endpoint.to_vec(),
            auth_lifetime: Duration::from_secs(30),
            read_buffers: 2,
            zero_copy_reads: true,
            zero_copy_max_file: 1 << 30,
            read_only: false,
            max_open_files_per_client: DEFAULT_MAX_OPEN_FILES_PER_CLIENT,
            idle_timeout: None,
            request_metrics: true,
        }
    }
}

/// Why a server gave up on a pipe or connection.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServerError {
    /// The side channel failed or the client misbehaved on it.
    Pipe(PipeError),
    /// The OS random generator failed (keys cannot be minted).
    Entropy(String),
    /// The registry is full (too many sessions).
    TooManySessions,
    /// [`ServerOptions::max_connections`] connections are being served.
    TooManyConnections,
    /// The transport failed synchronously.
    Transport(rdio_transport::TransportError),
    /// [`ServerConfig::max_send_size`] is more than the transport can
    /// carry in one message: the connection is not started.
    SendSizeTooLarge {
        /// The configured largest message.
        configured: u32,
        /// The transport's largest message ([`rdio_transport::Caps::max_message`]).
        transport: usize,
    },
    /// The client was refused: `status` goes to it in a
    /// [`PipeMessage::Refused`], `reason` only to the server's log.
    Refused {
        /// What the client is told (`Unauthenticated`, `Busy`, ...).
        status: Status,
        /// Why, for the log.
        reason: String,
    },
}

impl ServerError {
    /// The status a client is sent before its pipe closes, for the errors
    /// that refuse it rather than end a broken pipe.
    pub fn refusal(&self) -> Option<Status> {
        match self {
            Self::TooManySessions => Some(Status::Busy),
            Self::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }

    fn unauthenticated(reason: impl Into<String>) -> Self {
        Self::Refused {
            status: Status::Unauthenticated,
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Pipe(e) => write!(f, "{e}"),
            Self::Entropy(e) => write!(f, "OS random number generator failed: {e}"),
            Self::TooManySessions => f.write_str("too many client sessions"),
            Self::TooManyConnections => f.write_str("too many RDMA connections"),
            Self::Transport(e) => write!(f, "transport: {e}"),
            Self::SendSizeTooLarge {
                configured,
                transport,
            } => write!(
                f,
                "max send size {configured} is more than the transport's largest message \
                 ({transport} bytes): lower --max-send-size"
            ),
            Self::Refused { status, reason } => write!(f, "refused ({status}): {reason}"),
        }
    }
}

impl std::error::Error for ServerError {}

impl From<PipeError> for ServerError {
    fn from(e: PipeError) -> Self {
        Self::Pipe(e)
    }
}

impl From<rdio_transport::TransportError> for ServerError {
    fn from(e: rdio_transport::TransportError) -> Self {
        Self::Transport(e)
    }
}

/// One client's side-channel state for [`Server::answer_pipe`]: who the
/// client proved to be and what it may do, and the session its resume key
/// request opened (claim 8). Hand it to [`Server::end_pipe`] when the pipe
/// closes.
///
/// `PipeSession::default()` needs no authentication (an in-process side
/// channel, trusted as the process itself); [`PipeSession::authenticating`]
/// answers nothing but the authentication exchange until the client has
/// proved its credential.
#[derive(Debug, Default)]
pub struct PipeSession {
    session: Option<SessionId>,
    auth: AuthState,
    clients: Option<Arc<Clients>>,
    binding: Option<ChannelBinding>,
    rdma_binding: Option<ChannelBinding>,
    read_only: bool,
    peer: String,
    /// When the client last sent a message on this pipe (for the idle
    /// timeout before it has a session; after, the server's session
    /// record keeps the time).
    last_message: Option<Instant>,
    /// How long the client may take to authenticate when its stream's
    /// read timeout is shorter ([`PipeSession::with_auth_timeout`]).
    auth_timeout: Duration,
    /// Where a directory listing's page is built: the reply borrows it
    /// until it is sent.
    page: Vec<u8>,
}

impl PipeSession {
    /// A side channel from `peer` whose client must authenticate against
    /// `clients` first. `binding` is the TLS session's client-auth exporter
    /// (`None` on a clear-text pipe: proofs are then not bound to it), and
    /// `rdma_binding` its RDMA exporter, from which authentication keys
    /// are derived instead of sent (`None`: sent, as in clear text).
    pub fn authenticating(
        clients: Arc<Clients>,
        binding: Option<ChannelBinding>,
        rdma_binding: Option<ChannelBinding>,
        peer: impl Into<String>,
    ) -> Self {
        Self {
            auth: AuthState::AwaitHello,
            clients: Some(clients),
            binding,
            rdma_binding,
            peer: peer.into(),
            ..Self::default()
        }
    }

    /// The authenticated client's name.
    pub fn client_name(&self) -> Option<&str> {
        match &self.auth {
            AuthState::Done { name } => Some(name),
            _ => None,
        }
    }

    /// Whether the pipe is past authentication (or needs none).
    pub fn authenticated(&self) -> bool {
        matches!(self.auth, AuthState::NotRequired | AuthState::Done { .. })
    }

    /// Whether the client may only read.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Let the client take up to `timeout` to authenticate even when the
    /// stream's read timeout is shorter (a server polling for idle
    /// clients reads with a short timeout). Without it, the first read
    /// timeout before authentication ends the pipe.
    pub fn with_auth_timeout(mut self, timeout: Duration) -> Self {
        self.auth_timeout = timeout;
        self
    }

    /// The client's address, as given to [`PipeSession::authenticating`].
    pub fn peer(&self) -> &str {
        &self.peer
    }
}

/// What the server knows of one client session (from its resume key
/// request to the end of its side channel): who it is, for the access log,
/// and what the per-client limits count.
#[derive(Debug)]
struct SessionUse {
    peer: String,
    client: String,
    /// Files opened on its side channel and not yet closed.
    open_files: usize,
    /// Its last pipe message or file close: idle from then on while it
    /// holds no file.
    last_active: Instant,
}

/// An open file, as the access log reports its close.
#[derive(Debug)]
struct OpenFile {
    session: SessionId,
    path: String,
    opened: Instant,
}

/// Bytes moved on one file by one RDMA connection, reported when it closes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Transferred {
    pub(crate) read: u64,
    pub(crate) written: u64,
}

/// State shared by the pipe handlers and connection runners of one server.
#[derive(Debug)]
pub struct Server {
    root: Root,
    options: ServerOptions,
    clock: Clock,
    shared: Mutex<Shared>,
    pub(crate) stats: crate::stats::ServerStats,
}

/// How the server's reads were served, over all connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadCounts {
    /// Read requests RDMA-written straight from a leased file mapping.
    pub mapped: u64,
    /// Read requests copied into a bounce buffer first.
    pub copied: u64,
    /// Of the mapped ones, those whose status block went in the same RDMA
    /// write as their data (docs/PROTOCOL.md, "Data and status block in
    /// one write").
    pub joined: u64,
}

/// Most side-channel sessions at once (each a client between its resume key
/// request and the end of its pipe); more are answered `Busy`.
pub const MAX_SESSIONS: usize = 1024;
/// Most files opened on side channels and not yet registered, over all
/// sessions.
pub const MAX_PENDING_FILES: usize = 2048;

#[derive(Debug)]
struct Shared {
    /// Boxed: a few hundred KiB, kept off the thread stacks.
    registry: Box<Registry<MAX_SESSIONS, MAX_PENDING_FILES>>,
    files: FileTable,
    /// Files each session opened and has not registered yet.
    pending_opens: HashMap<SessionId, usize>,
    /// RDMA connections accepted and not yet ended.
    connections: usize,
    /// Client sessions by id.
    sessions: HashMap<SessionId, SessionUse>,
    /// Open files by id, for the access log and the per-client count.
    open: HashMap<FileId, OpenFile>,
}

impl Server {
    /// A server exporting `root`.
    pub fn new(root: Root, options: ServerOptions) -> Arc<Self> {
        let shared = Shared {
            registry: Box::new(Registry::new(options.config, options.auth_lifetime)),
            files: FileTable::new(options.max_open_files),
            pending_opens: HashMap::new(),
            connections: 0,
            sessions: HashMap::new(),
            open: HashMap::new(),
        };
        Arc::new(Self {
            root,
            options,
            clock: Clock::new(),
            shared: Mutex::new(shared),
            stats: crate::stats::ServerStats::default(),
        })
    }

    /// The exported root.
    pub fn root(&self) -> &Root {
        &self.root
    }

    /// The options the server runs with.
    pub fn options(&self) -> &ServerOptions {
        &self.options
    }

    /// How many reads were served zero-copy from a file mapping and how
    /// many through bounce buffers, since the server started.
    /// Allocates nothing (it sums the connections' cells under the lock
    /// that guards their list).
    pub fn read_counts(&self) -> ReadCounts {
        let (mapped, copied, joined) = self.stats.reads();
        ReadCounts {
            mapped,
            copied,
            joined,
        }
    }

    /// Every counter of the server ([`crate::stats`]), read now: totals
    /// over all connections, live and ended, and the first
    /// [`crate::stats::LABELLED_CONNECTIONS`] live ones by number.
    pub fn stats(&self) -> crate::stats::ServerSnapshot {
        self.stats.snapshot()
    }

    /// Files open now (opened on a pipe and not yet closed).
    pub fn open_files(&self) -> usize {
        self.lock().files.len()
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // The shared state stays consistent across a panicking holder (every
        // update is a single call), so a poisoned lock is still usable.
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn file(&self, id: FileId) -> Option<Arc<crate::files::File>> {
        self.lock().files.get(id).ok().cloned()
    }

    /// The client closed `id` after its last write: finish it (an upload
    /// takes its name now). The status says why it could not be.
    fn finish_file(&self, id: FileId) -> Result<(), Status> {
        let file = self.file(id).ok_or(Status::InvalidHandle)?;
        file.finish().map_err(|e| e.status())
    }

    /// Release files, each with the bytes moved on it, and log each close
    /// (path, bytes, how long it was open): an upload not finished by
    /// [`Server::finish_file`] goes with its temporary file, the name it
    /// was to replace untouched. Its client may open another file now.
    fn close_files(&self, closed: impl IntoIterator<Item = (FileId, Transferred)>) {
        let now = Instant::now();
        let mut lines = Vec::new();
        {
            let mut shared = self.lock();
            for (id, transferred) in closed {
                let _ = shared.files.remove(id);
                let Some(file) = shared.open.remove(&id) else {
                    continue;
                };
                let who = shared.sessions.get_mut(&file.session).map(|session| {
                    session.open_files = session.open_files.saturating_sub(1);
                    session.last_active = now;
                    (session.peer.clone(), session.client.clone())
                });
                lines.push((file, transferred, who));
            }
        }
        for (file, transferred, who) in lines {
            let (peer, client) = who.unwrap_or_else(|| ("-".into(), "-".into()));
            tracing::info!(
                target: "rdio::access",
                peer = %peer,
                client = %client,
                path = %file.path,
                bytes_read = transferred.read,
                bytes_written = transferred.written,
                seconds = now.duration_since(file.opened).as_secs_f64(),
                "close"
            );
        }
    }

    /// How long the client of `session` has been idle — no file open, no
    /// message on its side channel — when that is past
    /// [`ServerOptions::idle_timeout`]; `None` while it is not (or the
    /// server has no idle timeout, or the session is gone).
    pub(crate) fn session_idle(&self, session: SessionId) -> Option<Duration> {
        let limit = self.options.idle_timeout?;
        let shared = self.lock();
        let session = shared.sessions.get(&session)?;
        if session.open_files > 0 {
            return None;
        }
        let idle = session.last_active.elapsed();
        (idle >= limit).then_some(idle)
    }

    /// `Server::session_idle` for a side channel: also before its
    /// session exists (an authenticated client that never asked for a
    /// resume key). Side-channel runners call it when their read times
    /// out and end the pipe with [`Status::IdleTimeout`] when it says so
    /// (see [`Server::idle_refusal`]).
    pub fn pipe_idle(&self, pipe: &PipeSession) -> Option<Duration> {
        let limit = self.options.idle_timeout?;
        if !pipe.authenticated() {
            return None;
        }
        match pipe.session {
            Some(session) => self.session_idle(session),
            None => {
                let idle = pipe.last_message?.elapsed();
                (idle >= limit).then_some(idle)
            }
        }
    }

    /// The error that ends an idle side channel (its client is sent
    /// `Refused{IdleTimeout}`), logged to the access log.
    pub fn idle_refusal(&self, pipe: &PipeSession, idle: Duration) -> ServerError {
        tracing::info!(
            target: "rdio::access",
            peer = %pipe.peer,
            client = pipe.client_name().unwrap_or("-"),
            idle_seconds = idle.as_secs(),
            "side channel closed: idle timeout"
        );
        ServerError::Refused {
            status: Status::IdleTimeout,
            reason: format!("idle for {} s", idle.as_secs()),
        }
    }

    /// The peer and client name of `session`, for the access log.
    pub(crate) fn session_names(&self, session: SessionId) -> Option<(String, String)> {
        self.lock()
            .sessions
            .get(&session)
            .map(|s| (s.peer.clone(), s.client.clone()))
    }

    /// Answer one client's side channel until it closes (claim 8: resume
    /// key, opens, negotiation). Files it opened and never registered are
    /// closed when it ends.
    pub fn serve_pipe<S: Read + Write>(&self, stream: S) -> Result<(), ServerError> {
        self.serve_pipe_as(stream, PipeSession::default())
    }

    /// [`Server::serve_pipe`] with `session` (e.g. one that must
    /// authenticate first, [`PipeSession::authenticating`]). A refused
    /// client is sent a [`PipeMessage::Refused`] before the pipe closes.
    pub fn serve_pipe_as<S: Read + Write>(
        &self,
        stream: S,
        mut session: PipeSession,
    ) -> Result<(), ServerError> {
        let _session = tracing::info_span!("session").entered();
        let opened = std::time::Instant::now();
        let mut pipe = Pipe::new(stream);
        pipe.report_idle();
        // A stream read in short slices (the idle check) still gives a
        // frame begun the authentication's time to arrive whole.
        pipe.set_frame_patience(session.auth_timeout);
        let result = loop {
            let reply = match pipe.receive() {
                Err(PipeError::Closed) => break Ok(()),
                // A stream with a read timeout (the networked server's) bounds
                // how long a client may take to authenticate; once it has,
                // its pipe may idle while it does I/O on the RDMA channel.
                Err(PipeError::Idle) if session.authenticated() => match self.pipe_idle(&session) {
                    Some(idle) => Err(self.idle_refusal(&session, idle)),
                    None => continue,
                },
                Err(PipeError::Idle) if opened.elapsed() < session.auth_timeout => continue,
                Err(PipeError::Idle) => {
                    let _ = pipe.send(&PipeMessage::Refused {
                        status: Status::Unauthenticated,
                    });
                    break Err(ServerError::unauthenticated("did not authenticate in time"));
                }
                Err(e) => Err(e.into()),
                Ok(message) => self.answer_pipe(&mut session, &message),
            };
            let error = match reply {
                Ok(reply) => match pipe.send(&reply) {
                    Ok(()) => continue,
                    Err(e) => break Err(e.into()),
                },
                Err(e) => e,
            };
            if let Some(status) = error.refusal() {
                let _ = pipe.send(&PipeMessage::Refused { status });
                break Err(error);
            }
            match pipe_refusal(&error, pipe.last_opcode()) {
                Some((refusal, read_on)) => {
                    if pipe.send(&refusal).is_ok() && read_on {
                        continue;
                    }
                    break Err(error);
                }
                None => break Err(error),
            }
        };
        if let Some(client) = session.client_name() {
            let why = match &result {
                Ok(()) => "closed by the client".to_owned(),
                Err(error) => error.to_string(),
            };
            tracing::info!(
                target: "rdio::access",
                peer = %session.peer,
                client,
                seconds = opened.elapsed().as_secs_f64(),
                why = %why,
                "side channel closed"
            );
        }
        self.end_pipe(session);
        result
    }

    /// The reply to one side-channel message of a client — the whole pipe
    /// protocol, apart from moving frames, so runners over other streams
    /// (the tokio one in `net`) share it. An error ends the pipe.
    pub fn answer_pipe<'s>(
        &'s self,
        session: &'s mut PipeSession,
        message: &PipeMessage<'_>,
    ) -> Result<PipeMessage<'s>, ServerError> {
        if !matches!(
            session.auth,
            AuthState::NotRequired | AuthState::Done { .. }
        ) {
            return self.authenticate(session, message);
        }
        self.touch(session);
        if let PipeMessage::File(message) = message {
            return self.answer_file(session, message);
        }
        if let PipeMessage::OpenRequest { flags, path } = *message {
            let writes = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE;
            let read_only = session.read_only || self.options.read_only;
            if read_only && flags.intersects(writes) {
                tracing::warn!(
                    target: "rdio::access",
                    peer = %session.peer,
                    client = session.client_name().unwrap_or("-"),
                    path = %String::from_utf8_lossy(path),
                    mode = ?flags,
                    "open refused: read-only"
                );
                return Ok(PipeMessage::OpenResponse {
                    status: Status::ReadOnly,
                    key: ResumeKey([0; KEY_LEN]),
                    size: 0,
                });
            }
        }
        let rdma_binding = session.rdma_binding;
        let (peer, client) = (
            session.peer.clone(),
            session.client_name().map(str::to_owned),
        );
        let session = &mut session.session;
        Ok(match *message {
            PipeMessage::ResumeKeyRequest if session.is_none() => {
                let entropy = entropy()?;
                let mut shared = self.lock();
                if shared.registry.sessions() >= self.options.max_sessions {
                    drop(shared);
                    tracing::warn!(
                        target: "rdio::access",
                        peer = %peer,
                        client = client.as_deref().unwrap_or("-"),
                        "busy: session limit reached"
                    );
                    return Err(ServerError::TooManySessions);
                }
                let (id, key) = shared
                    .registry
                    .open_session(entropy)
                    .map_err(|_| ServerError::TooManySessions)?;
                shared.sessions.insert(
                    id,
                    SessionUse {
                        peer: peer.clone(),
                        client: client.clone().unwrap_or_else(|| "-".into()),
                        open_files: 0,
                        last_active: Instant::now(),
                    },
                );
                drop(shared);
                *session = Some(id);
                PipeMessage::ResumeKeyResponse { key }
            }
            PipeMessage::OpenRequest { flags, path } => {
                let session =
                    session.ok_or(PipeError::Unexpected("open before the resume key request"))?;
                let (status, key, size) = match self.open(session, path, flags, &peer) {
                    Ok((key, size)) => (Status::Success, key, size),
                    Err(status) => (status, ResumeKey([0; KEY_LEN]), 0),
                };
                tracing::info!(
                    target: "rdio::access",
                    peer = %peer,
                    client = client.as_deref().unwrap_or("-"),
                    path = %String::from_utf8_lossy(path),
                    mode = ?flags,
                    size,
                    status = %status,
                    "open"
                );
                PipeMessage::OpenResponse { status, key, size }
            }
            PipeMessage::StatRequest { path } => {
                session.ok_or(PipeError::Unexpected("stat before the resume key request"))?;
                match self.stat(path) {
                    Ok((size, modified_ns, file_id)) => PipeMessage::StatResponse {
                        status: Status::Success,
                        size,
                        modified_ns,
                        file_id,
                    },
                    Err(status) => PipeMessage::StatResponse {
                        status,
                        size: 0,
                        modified_ns: 0,
                        file_id: 0,
                    },
                }
            }
            PipeMessage::ChecksumRequest { algorithm, path } => {
                session.ok_or(PipeError::Unexpected(
                    "checksum before the resume key request",
                ))?;
                let (status, length, digest) = match self.checksum(path, algorithm) {
                    Ok((length, digest)) => (Status::Success, length, digest),
                    Err(status) => (status, 0, [0; CHECKSUM_DIGEST_LEN]),
                };
                tracing::info!(
                    target: "rdio::access",
                    peer = %peer,
                    client = client.as_deref().unwrap_or("-"),
                    path = %String::from_utf8_lossy(path),
                    length,
                    status = %status,
                    "checksum"
                );
                PipeMessage::ChecksumResponse {
                    status,
                    algorithm,
                    length,
                    digest,
                }
            }
            PipeMessage::NegotiateRequest(ref request) => {
                let session = session.ok_or(PipeError::Unexpected(
                    "negotiate before the resume key request",
                ))?;
                let offer = ServerOffer {
                    providers: &self.options.providers,
                    endpoint: &self.options.endpoint,
                };
                let entropy = entropy()?;
                // Bound to the TLS session, the key is derived from its
                // exporter and the response carries only the nonce.
                let key = match &rdma_binding {
                    Some(binding) => crate::access::rdma_auth_key(binding, &entropy).0,
                    None => entropy,
                };
                let mut response =
                    self.lock()
                        .registry
                        .negotiate(self.clock.now(), session, request, offer, key);
                if rdma_binding.is_some() && response.status == Status::Success {
                    response.auth_key = AuthKey(entropy);
                }
                PipeMessage::NegotiateResponse(response)
            }
            PipeMessage::ResumeKeyRequest => {
                return Err(PipeError::Unexpected("second resume key request").into());
            }
            _ => return Err(PipeError::Unexpected("a response sent to the server").into()),
        })
    }

    /// The authentication exchange, before anything else is answered
    /// (docs/PROTOCOL.md, "Client authentication").
    fn authenticate<'s>(
        &'s self,
        pipe: &mut PipeSession,
        message: &PipeMessage<'_>,
    ) -> Result<PipeMessage<'s>, ServerError> {
        let clients = pipe
            .clients
            .clone()
            .ok_or_else(|| ServerError::unauthenticated("no clients file"))?;
        let refuse = |pipe: &PipeSession, name: &str, reason: &str| {
            tracing::warn!(
                target: "rdio::access",
                peer = %pipe.peer,
                client = name,
                reason,
                "refused"
            );
            ServerError::unauthenticated(format!("{reason} (client '{name}')"))
        };
        match (std::mem::take(&mut pipe.auth), message) {
            (AuthState::AwaitHello, PipeMessage::AuthHello { name }) => {
                // The parser admits ASCII names only.
                let name = String::from_utf8_lossy(name).into_owned();
                let salt = clients
                    .lookup(&name)
                    .map_or_else(|| clients.decoy_salt(&name), |entry| entry.salt);
                let nonce = random().map_err(|e| ServerError::Entropy(e.to_string()))?;
                pipe.auth = AuthState::AwaitProof { name, nonce };
                Ok(PipeMessage::AuthChallenge { salt, nonce })
            }
            (AuthState::AwaitProof { name, nonce }, PipeMessage::AuthProof { proof }) => {
                let entry = clients.lookup(&name);
                // An unknown name is checked against a decoy key, so the
                // refusal takes as long as a wrong secret's.
                let key = entry
                    .as_ref()
                    .map_or_else(|| clients.decoy_key(&name), |entry| entry.key);
                let binding = pipe.binding.unwrap_or(ChannelBinding([0; 32]));
                let valid = verify_proof(&key, &nonce, &binding, proof);
                let entry = match entry {
                    Some(entry) if valid => entry,
                    Some(_) => return Err(refuse(pipe, &name, "wrong proof")),
                    None => return Err(refuse(pipe, &name, "unknown client")),
                };
                pipe.read_only = entry.permission == Permission::ReadOnly;
                let mut access = AuthAccess::empty();
                if pipe.read_only || self.options.read_only {
                    access |= AuthAccess::READ_ONLY;
                }
                tracing::info!(
                    target: "rdio::access",
                    peer = %pipe.peer,
                    client = %name,
                    tls = pipe.binding.is_some(),
                    read_only = access.contains(AuthAccess::READ_ONLY),
                    "client authenticated"
                );
                pipe.auth = AuthState::Done { name };
                Ok(PipeMessage::AuthResult {
                    status: Status::Success,
                    access,
                })
            }
            (AuthState::AwaitProof { name, .. }, _) => {
                Err(refuse(pipe, &name, "expected the authentication proof"))
            }
            _ => Err(refuse(pipe, "-", "request before authentication")),
        }
    }

    /// A message from an authenticated client: it is not idle.
    fn touch(&self, pipe: &mut PipeSession) {
        let now = Instant::now();
        pipe.last_message = Some(now);
        if let Some(session) = pipe.session {
            if let Some(session) = self.lock().sessions.get_mut(&session) {
                session.last_active = now;
            }
        }
    }

    /// A client's side channel is gone: end its session and close the files
    /// it opened and never registered.
    pub fn end_pipe(&self, session: PipeSession) {
        if let Some(session) = session.session {
            let unregistered = {
                let mut shared = self.lock();
                shared.pending_opens.remove(&session);
                shared.registry.close_session(session)
            };
            self.close_files(
                unregistered
                    .into_iter()
                    .map(|id| (id, Transferred::default())),
            );
            self.lock().sessions.remove(&session);
        }
    }

    /// What the file at `path` is now (a `StatRequest`): size, modification
    /// time in nanoseconds since the epoch, and an identity from its device
    /// and inode. The path is opened for reading as an open request's
    /// would be (same confinement, same errors) and closed again.
    fn stat(&self, path: &[u8]) -> Result<(u64, u64, u64), Status> {
        let file = self
            .root
            .open(path, OpenFlags::READ)
            .map_err(|e| e.status())?;
        let meta = file.metadata().map_err(|e| e.status())?;
        Ok((meta.len(), modified_ns(&meta), file_id(&meta)))
    }

    /// The checksum of the whole file at `path` (a `ChecksumRequest`): the
    /// bytes hashed and the digest, big-endian, zero-padded. The path is
    /// opened for reading as an open request's would be (same
    /// confinement, same permissions, same errors) and read to its end.
    fn checksum(
        &self,
        path: &[u8],
        algorithm: ChecksumAlgorithm,
    ) -> Result<(u64, [u8; CHECKSUM_DIGEST_LEN]), Status> {
        if algorithm != ChecksumAlgorithm::XXH3_128 {
            return Err(Status::NotSupported);
        }
        let file = self
            .root
            .open(path, OpenFlags::READ)
            .map_err(|e| e.status())?;
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        let mut buffer = vec![0u8; CHECKSUM_CHUNK];
        let mut length = 0u64;
        loop {
            let n = file.read_at(length, &mut buffer).map_err(|e| e.status())?;
            let Some(read) = buffer.get(..n).filter(|read| !read.is_empty()) else {
                break;
            };
            hasher.update(read);
            length += n as u64;
        }
        let mut digest = [0; CHECKSUM_DIGEST_LEN];
        let value = hasher.digest128().to_be_bytes();
        if let Some(head) = digest.get_mut(..value.len()) {
            head.copy_from_slice(&value);
        }
        Ok((length, digest))
    }

    /// Open `path` for `session` and mint its resume key (claim 10).
    fn open(
        &self,
        session: SessionId,
        path: &[u8],
        flags: OpenFlags,
        peer: &str,
    ) -> Result<(ResumeKey, u64), Status> {
        let (pending, open, client) = {
            let shared = self.lock();
            let used = shared.sessions.get(&session);
            (
                shared.pending_opens.get(&session).copied(),
                used.map_or(0, |s| s.open_files),
                used.map_or_else(|| "-".to_owned(), |s| s.client.clone()),
            )
        };
        if pending.unwrap_or(0) >= self.options.max_pending_opens {
            return Err(Status::ResourceExhausted);
        }
        if open >= self.options.max_open_files_per_client {
            tracing::warn!(
                target: "rdio::access",
                peer = %peer,
                client = %client,
                path = %String::from_utf8_lossy(path),
                open,
                limit = self.options.max_open_files_per_client,
                "open refused: too many open files for this client"
            );
            return Err(Status::TooManyOpenFiles);
        }
        let file = self.root.open(path, flags).map_err(|error| {
            use crate::files::OpenError;
            if matches!(error, OpenError::ParentComponent | OpenError::EscapesRoot) {
                tracing::warn!(
                    target: "rdio::access",
                    session = session.0,
                    path = %String::from_utf8_lossy(path),
                    %error,
                    "escape outside the root attempted"
                );
            }
            error.status()
        })?;
        let size = file.len().map_err(|e| e.status())?;
        let entropy = entropy().map_err(|_| Status::IoError)?;
        let mut shared = self.lock();
        let id = shared
            .files
            .insert(file)
            .map_err(|_| Status::ResourceExhausted)?;
        let entry = FileEntry {
            session,
            file: id,
            flags,
            size,
        };
        match shared.registry.add_file(entry, entropy) {
            Ok(key) => {
                *shared.pending_opens.entry(session).or_insert(0) += 1;
                if let Some(used) = shared.sessions.get_mut(&session) {
                    used.open_files += 1;
                }
                shared.open.insert(
                    id,
                    OpenFile {
                        session,
                        path: String::from_utf8_lossy(path).into_owned(),
                        opened: Instant::now(),
                    },
                );
                Ok((key, size))
            }
            Err(e) => {
                let _ = shared.files.remove(id);
                Err(e.status())
            }
        }
    }
}

/// The `file_id` of a `StatResponse` for a file with `meta`: its inode
/// number mixed with its device number. A client on the same host can
/// compute it for a local file to tell that a remote path is that file.
pub fn file_id(meta: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    meta.ino() ^ meta.dev().rotate_left(32)
}

/// The `modified_ns` of a `StatResponse`: nanoseconds since the Unix epoch,
/// 0 before it or where the platform has no modification time.
pub fn modified_ns(meta: &std::fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |since| {
            u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
        })
}

/// The pipe `Error` a server sends for a client's frame that failed with
/// `error` (`opcode`: the frame's opcode byte, 0 if its header was
/// unreadable), and whether it reads on afterwards: only past a frame with
/// an unknown opcode, which it skipped whole (`docs/PROTOCOL.md`, "Error").
/// `None` when there is no one to tell (the stream itself failed).
pub fn pipe_refusal(error: &ServerError, opcode: u8) -> Option<(PipeMessage<'static>, bool)> {
    let code = match error {
        ServerError::Pipe(PipeError::Malformed(e)) => PipeErrorCode::from_wire_error(*e),
        ServerError::Pipe(PipeError::Unexpected(_) | PipeError::Refused { .. }) => {
            PipeErrorCode::UNEXPECTED_MESSAGE
        }
        ServerError::TooManySessions | ServerError::Entropy(_) => PipeErrorCode::RESOURCE_EXHAUSTED,
        _ => return None,
    };
    let read_on = matches!(
        error,
        ServerError::Pipe(PipeError::Malformed(WireError::UnknownOpcode(_)))
    );
    Some((PipeMessage::Error { code, opcode }, read_on))
}

/// Fresh key material from the OS CSPRNG (the core takes entropy as input).
fn entropy() -> Result<[u8; KEY_LEN], ServerError> {
    let mut key = [0u8; KEY_LEN];
    getrandom::fill(&mut key).map_err(|e| ServerError::Entropy(e.to_string()))?;
    Ok(key)
}
