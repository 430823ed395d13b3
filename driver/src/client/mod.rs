//! The blocking client: discovery on the side channel, then the core's
//! [`rdio_core::client::Client`] driven over a transport, behind calls that
//! look like positioned file I/O.
//!
//! The driving is the engine's (`engine.rs`): one non-blocking
//! `Engine::poll` posts what the core has ready, drains the transport's
//! completions in batches, feeds the core and moves finished requests into
//! one completion table indexed by slot. [`Client`] is a thin loop over it —
//! poll, and when nothing moved, wait on the transport (interrupt mode) or
//! yield (polling mode) — plus the side channel. The inline pair
//! ([`crate::embedded::Inline`]) is the same loop, its transport giving the
//! in-process server a turn inside each drain and each wait; the tokio
//! client (`net::AsyncClient`, feature `tokio`) runs this client on a
//! thread of its own.
//!
//! Two levels: [`Client::submit_read`] / [`Client::submit_write`] (and the
//! vectored forms) queue a request and return a [`Ticket`], so a caller can
//! keep several in flight, cancel them ([`Client::cancel`]) and collect them
//! with [`Client::wait`]; [`Client::read_at`], [`Client::write_at`] and
//! friends are built on those, splitting large transfers into requests of
//! [`ClientOptions::io_size`] bytes with up to [`ClientOptions::queue_depth`]
//! in flight. [`RemoteFileIo`] adapts a file to `std::io::{Read, Write, Seek}`.

mod engine;
mod error;
mod files;
mod io;
pub mod reconnect;

pub use error::{ClientError, Operation};
pub use files::{Entry, FileSession, RemoteTree};
pub use io::RemoteFileIo;
pub use rdio_core::client::{CompletionMode, RemoteFile};
pub use reconnect::{Connector, FileRef, ReconnectPolicy, ResilientClient, ResilientError};

use crate::access::{ChannelBinding, Credential, client_proof, derive_client_key};
use crate::buffers::{
    Clock, INLINE_MESSAGE, Pool, Receives, client_send_size, control_size, set_up,
};
use crate::files::{ReadSegment, WriteSegment};
use crate::pipe::{Pipe, PipeError};
use crate::stats::ClientStats;
use engine::{Buffers, Engine, Outcome};
use rdio_core::client::{Client as CoreClient, ClientConfig, Negotiated, RequestId};
use rdio_core::error::Violation;
use rdio_core::wire::status::STATUS_BLOCK_LEN;
use rdio_core::wire::{
    self, MAX_SEGMENTS, OpenFlags, PipeErrorCode, PipeMessage, ProviderName, ResumeKey, Status,
};
use rdio_transport::{Access, Transport, TransportError};
use std::collections::VecDeque;
use std::fmt;
use std::io::{Read, Write};
use std::marker::PhantomData;
use std::time::Duration;

/// Longest a blocked client sleeps in [`Transport::wait`] before checking
/// its timers again.
const WAIT_CAP: Duration = Duration::from_millis(50);
/// How long [`Client::shutdown`] waits for the `Terminate` to leave.
const LINGER: Duration = Duration::from_secs(1);

/// How a client connects and moves data.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Protocol limits and the providers this client can use.
    pub config: ClientConfig,
    /// Bytes per data buffer: the largest single read or write request
    /// (capped by the negotiated maximum).
    pub io_size: u32,
    /// Data buffers, hence requests in flight at once.
    pub queue_depth: usize,
    /// Interrupt (status block by write-with-immediate) or polling
    /// completion (claims 18–20).
    pub mode: CompletionMode,
    /// The TLS session's RDMA exporter, when the side channel is TLS: the
    /// authentication key is then derived from it and the nonce the
    /// negotiate response carries ([`crate::access::rdma_auth_key`]).
    /// `None`: the key is taken as sent.
    pub rdma_binding: Option<ChannelBinding>,
    /// Time every read and write (latency histograms by kind and size) and
    /// give each a `request` span (`tracing`, trace level). Off only to
    /// measure what they cost (`scripts/callgrind-metrics.sh`); the plain
    /// counters stay either way.
    pub request_metrics: bool,
}

impl ClientOptions {
    /// Defaults for a client speaking over `provider`: 1 MiB requests, 8 in
    /// flight, interrupt completions.
    pub fn new(provider: ProviderName) -> Self {
        let mut config = ClientConfig {
            max_send_size: crate::DEFAULT_MAX_SEND_SIZE,
            // Reads submitted while others are in flight go together when
            // the server grants it (docs/PROTOCOL.md, "Read batches"); the
            // requests tell the server the credits they could use, for its
            // credit policy ("Credit policy").
            capabilities: wire::Capabilities::READ_BATCH.union(wire::Capabilities::CREDIT_DEMAND),
            ..ClientConfig::default()
        };
        // Capacity MAX_PROVIDERS >= 1.
        let _ = config.providers.push(provider);
        Self {
            config,
            io_size: 1 << 20,
            queue_depth: 8,
            mode: CompletionMode::Interrupt,
            rdma_binding: None,
            request_metrics: true,
        }
    }
}

/// Prove `credential` on `pipe`: hello, challenge, proof, result. The
/// client's access (read-only or not) on success.
pub fn authenticate<S: Read + Write>(
    pipe: &mut Pipe<S>,
    credential: &Credential,
    binding: Option<ChannelBinding>,
) -> Result<wire::AuthAccess, ClientError> {
    pipe.send(&PipeMessage::AuthHello {
        name: credential.name.as_bytes(),
    })?;
    let (salt, nonce) = match pipe.receive()? {
        PipeMessage::AuthChallenge { salt, nonce } => (salt, nonce),
        PipeMessage::Refused { status } => return Err(ClientError::Refused(status)),
        _ => return Err(PipeError::Unexpected("expected an authentication challenge").into()),
    };
    let key = derive_client_key(&salt, &credential.secret);
    let binding = binding.unwrap_or(ChannelBinding([0; 32]));
    pipe.send(&PipeMessage::AuthProof {
        proof: client_proof(&key, &nonce, &binding),
    })?;
    match pipe.receive() {
        Ok(PipeMessage::AuthResult {
            status: Status::Success,
            access,
        }) => Ok(access),
        Ok(PipeMessage::AuthResult { status, .. } | PipeMessage::Refused { status }) => {
            Err(ClientError::Refused(status))
        }
        Ok(_) => Err(PipeError::Unexpected("expected the authentication result").into()),
        Err(error) => Err(error.into()),
    }
}

/// A file opened on the side channel and not yet registered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opened {
    /// The file's resume key (claim 10), redeemable once by
    /// [`Client::register`].
    pub key: ResumeKey,
    /// Its size at open.
    pub size: u64,
}

/// What a file on the server is now ([`Client::stat`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStat {
    /// Size in bytes.
    pub size: u64,
    /// Last modification, nanoseconds since the Unix epoch.
    pub modified_ns: u64,
    /// Opaque identity: another value is another file under the same path.
    pub file_id: u64,
}

/// A file's checksum as the server computed it ([`Client::checksum`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checksum {
    /// Bytes hashed: the whole file as the server read it.
    pub length: u64,
    /// The digest, big-endian, as long as its algorithm's (16 bytes for
    /// XXH3-128).
    pub digest: [u8; 16],
}

/// A submitted data request, to be collected with [`Client::wait`] (which
/// frees its buffer: a ticket that is never waited keeps one busy).
#[derive(Debug)]
#[must_use = "a ticket holds a data buffer until it is waited for"]
pub struct Ticket {
    request: RequestId,
    slot: usize,
    operation: Operation,
    /// For reads: bytes of the buffer the request laid out (segments back to
    /// back for a vectored read).
    span: usize,
    vectored: bool,
}

/// A completed read's bytes in the registered buffer they arrived in
/// ([`Client::wait_in_place`]); dereferences to them. Dropping it hands the
/// buffer back to the client.
pub struct ReadView<'c, T: Transport, S: Read + Write> {
    /// The client's engine, which takes the buffer back on drop.
    engine: &'c mut Engine,
    /// The read's bytes in its slot's registered region, found once: the
    /// client (its transport included) stays borrowed by the view, so
    /// nothing moves them meanwhile.
    bytes: &'c [u8],
    slot: usize,
    client: PhantomData<&'c mut Client<T, S>>,
}

impl<T: Transport, S: Read + Write> std::ops::Deref for ReadView<'_, T, S> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.bytes
    }
}

impl<T: Transport, S: Read + Write> Drop for ReadView<'_, T, S> {
    fn drop(&mut self) {
        self.engine.release(self.slot);
    }
}

/// A registered buffer lent for write data ([`Client::write_buffer`]);
/// dereferences to its bytes. [`WriteBuffer::submit`] sends them without a
/// copy; dropping it unsubmitted hands the buffer back.
pub struct WriteBuffer<'c, T: Transport, S: Read + Write> {
    client: &'c mut Client<T, S>,
    /// `None` once submitted.
    slot: Option<usize>,
    len: usize,
}

impl<T: Transport, S: Read + Write> WriteBuffer<'_, T, S> {
    /// Shorten the write to its first `len` bytes (a longer `len` is
    /// ignored); a write must keep at least one byte.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Write the buffer's bytes at `offset` of `file`.
    pub fn submit(mut self, file: &RemoteFile, offset: u64) -> Result<Ticket, ClientError> {
        let Some(slot) = self.slot.take() else {
            return Err(ClientError::InvalidArgument(
                "write buffer already submitted",
            ));
        };
        if self.len == 0 {
            self.client.engine.unbegin(slot);
            return Err(ClientError::InvalidArgument("zero-length request"));
        }
        self.client.submit_filled(slot, file, offset, self.len)
    }
}

impl<T: Transport, S: Read + Write> std::ops::Deref for WriteBuffer<'_, T, S> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.slot
            .and_then(|slot| self.client.engine.buffer_region(slot).ok())
            .and_then(|region| self.client.transport.region(region).ok())
            .and_then(|bytes| bytes.get(..self.len))
            .unwrap_or(&[])
    }
}

impl<T: Transport, S: Read + Write> std::ops::DerefMut for WriteBuffer<'_, T, S> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // Registered by this client, and `len` is at most the slot size
        // (checked when the buffer was lent).
        match self
            .slot
            .and_then(|slot| self.client.engine.buffer_region(slot).ok())
        {
            Some(region) => self
                .client
                .transport
                .region_mut(region)
                .ok()
                .and_then(|bytes| bytes.get_mut(..self.len))
                .unwrap_or(&mut []),
            None => &mut [],
        }
    }
}

impl<T: Transport, S: Read + Write> Drop for WriteBuffer<'_, T, S> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            self.client.engine.unbegin(slot);
        }
    }
}

impl<T: Transport, S: Read + Write> fmt::Debug for WriteBuffer<'_, T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteBuffer")
            .field("len", &self.len)
            .field("submitted", &self.slot.is_none())
            .finish_non_exhaustive()
    }
}

impl<T: Transport, S: Read + Write> fmt::Debug for ReadView<'_, T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadView")
            .field("len", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

impl Ticket {
    /// Bytes of a completed read's buffer that hold data: the whole span
    /// for a vectored read (segments back to back, each short only at end
    /// of file), else the count the server reported; never past the span.
    fn read_len(&self, bytes: u64) -> usize {
        let valid = if self.vectored {
            self.span
        } else {
            usize::try_from(bytes).unwrap_or(usize::MAX)
        };
        valid.min(self.span)
    }

    /// The request's id on the wire.
    pub fn request(&self) -> RequestId {
        self.request
    }
}

/// A connected client over transport `T` with side channel `S`: the
/// side channel, and the engine (`client::engine`) driving the core over
/// the transport.
pub struct Client<T: Transport, S: Read + Write> {
    pipe: Pipe<S>,
    /// The side-channel session's key, for negotiating again after the
    /// RDMA connection was lost.
    server_key: ResumeKey,
    transport: T,
    engine: Engine,
    /// `read_at`/`write_at`'s requests in flight (ticket, buffer offset,
    /// length), kept between calls so a call allocates nothing.
    pipeline: VecDeque<(Ticket, usize, usize)>,
    /// When this client last asked the server for anything: how long it
    /// had been idle when a server ends it for idleness.
    last_active: std::time::Instant,
}

impl<T: Transport, S: Read + Write> fmt::Debug for Client<T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("provider", &self.transport.provider())
            .field("mode", &self.engine.mode())
            .field("authenticated", &self.engine.authenticated())
            .field("terminated", &self.engine.terminated())
            .finish_non_exhaustive()
    }
}

impl<T: Transport, S: Read + Write> Client<T, S> {
    /// Discover over `stream` (claim 8: resume key, negotiate), connect the
    /// RDMA channel with `connect` given the negotiated provider and
    /// endpoint, and authenticate it (claims 12–14).
    pub fn connect(
        stream: S,
        options: ClientOptions,
        connect: impl FnOnce(&Negotiated) -> Result<T, ClientError>,
    ) -> Result<Self, ClientError> {
        Self::connect_on(Pipe::new(stream), options, connect)
    }

    /// [`Client::connect`] to a server that requires authentication: first
    /// prove `credential` (docs/PROTOCOL.md, "Client authentication"),
    /// bound to `binding`, the TLS session's client-auth exporter (`None`
    /// on a clear-text side channel).
    pub fn connect_as(
        stream: S,
        credential: &Credential,
        binding: Option<ChannelBinding>,
        options: ClientOptions,
        connect: impl FnOnce(&Negotiated) -> Result<T, ClientError>,
    ) -> Result<Self, ClientError> {
        let mut pipe = Pipe::new(stream);
        authenticate(&mut pipe, credential, binding)?;
        Self::connect_on(pipe, options, connect)
    }

    fn connect_on(
        mut pipe: Pipe<S>,
        options: ClientOptions,
        connect: impl FnOnce(&Negotiated) -> Result<T, ClientError>,
    ) -> Result<Self, ClientError> {
        pipe.send(&PipeMessage::ResumeKeyRequest)?;
        let server_key = match pipe.receive()? {
            PipeMessage::ResumeKeyResponse { key } => key,
            PipeMessage::Refused { status } => return Err(ClientError::Refused(status)),
            _ => {
                return Err(PipeError::Unexpected("expected the server request resume key").into());
            }
        };
        Self::establish(pipe, server_key, options, connect)
    }

    /// Negotiate on a side channel whose session is open (the server
    /// request resume key is known), connect the RDMA channel and
    /// authenticate it. A session may negotiate again after its connection
    /// was lost: each negotiation mints a new single-use authentication key.
    pub(crate) fn establish(
        mut pipe: Pipe<S>,
        server_key: ResumeKey,
        options: ClientOptions,
        connect: impl FnOnce(&Negotiated) -> Result<T, ClientError>,
    ) -> Result<Self, ClientError> {
        if options.queue_depth == 0 || options.io_size == 0 {
            return Err(ClientError::InvalidArgument(
                "queue depth and I/O size must be at least 1",
            ));
        }
        pipe.send(&PipeMessage::NegotiateRequest(
            rdio_core::client::negotiate_request(&options.config, server_key),
        ))?;
        let mut negotiated = match pipe.receive()? {
            PipeMessage::NegotiateResponse(response) => {
                rdio_core::client::negotiated(&options.config, &response)
                    .map_err(|e| ClientError::Discovery(Box::new(e)))?
            }
            PipeMessage::Refused { status } => return Err(ClientError::Refused(status)),
            _ => return Err(PipeError::Unexpected("expected a negotiate response").into()),
        };
        if let Some(binding) = &options.rdma_binding {
            negotiated.auth_key = crate::access::rdma_auth_key(binding, &negotiated.auth_key.0);
        }
        let mut transport = connect(&negotiated)?;
        let span = tracing::info_span!("connection", provider = transport.provider());
        if transport.provider() != negotiated.provider.as_str() {
            return Err(ClientError::ProviderMismatch {
                negotiated: negotiated.provider.as_str().to_owned(),
                transport: transport.provider().to_owned(),
            });
        }
        let max_message = transport.caps().max_message;
        if negotiated.max_send_size as usize > max_message {
            return Err(ClientError::SendSizeTooLarge {
                negotiated: negotiated.max_send_size,
                transport: max_message,
            });
        }
        // Write data is gathered from the slots and the server sends only
        // fixed-size messages: no buffer of this side needs to hold a
        // full `max_send_size` message (`buffers::CONTROL_MESSAGE`); a
        // send buffer holds a full read batch where batches were granted.
        let message_size = control_size(negotiated.max_send_size as usize);
        let send_size = client_send_size(
            negotiated.max_send_size as usize,
            negotiated
                .capabilities
                .contains(rdio_core::wire::Capabilities::READ_BATCH),
        );
        let io_size = options.io_size.min(negotiated.max_io_size) as usize;
        let clock = Clock::new();
        let core = Box::new(CoreClient::new(
            options.config.clone(),
            negotiated,
            clock.now(),
        ));
        let send_buffers = usize::from(options.config.max_credits) + 8;
        let remote = Access::LOCAL_WRITE | Access::REMOTE_WRITE;
        let (buffers, remote) = set_up(&mut transport, |transport, held| {
            // Receives first: the server may answer as soon as the auth
            // request lands.
            let receives = Receives::post_all(transport, core.receive_depth(), message_size)?;
            held.push(receives.region());
            let sends = Pool::register(transport, send_buffers, send_size, Access::empty())?;
            held.extend(sends.regions());
            // Each slot: its data, then its status block (`Buffers::slots`).
            let slot_size = io_size + STATUS_BLOCK_LEN;
            let slots = Pool::register(transport, options.queue_depth, slot_size, remote)?;
            held.extend(slots.regions());
            let buffers = Buffers {
                receives,
                sends,
                slots,
                io_size,
                send_queue: transport.caps().max_send,
                inline: transport.caps().max_inline >= INLINE_MESSAGE,
                deferred_posts: transport.caps().deferred_posts,
            };
            let remote = buffers.remote_windows(transport)?;
            Ok((buffers, remote))
        })?;
        let engine = Engine::new(
            core,
            clock,
            options.mode,
            buffers,
            remote,
            options.request_metrics,
            span,
        );
        let mut client = Self {
            pipe,
            server_key,
            transport,
            engine,
            pipeline: VecDeque::with_capacity(options.queue_depth),
            last_active: std::time::Instant::now(),
        };
        if let Err(e) = client.authenticate() {
            let _ = client.release_buffers();
            return Err(e);
        }
        Ok(client)
    }

    fn authenticate(&mut self) -> Result<(), ClientError> {
        let _connection = self.engine.span().clone().entered();
        let _span =
            tracing::debug_span!("authenticate", provider = self.transport.provider()).entered();
        while !self.engine.authenticated() {
            if let Some(reason) = self.engine.terminated() {
                return Err(self.end_error(reason));
            }
            self.step()?;
        }
        Ok(())
    }

    /// Give up the RDMA channel (disconnect, deregister every buffer) and
    /// keep the side channel and its session's resume key, from which a
    /// new connection can be negotiated ([`Client::establish`]).
    pub(crate) fn into_side_channel(mut self) -> (Pipe<S>, ResumeKey) {
        let _ = self.release_buffers();
        (self.pipe, self.server_key)
    }

    /// The transport's provider name.
    pub fn provider(&self) -> &str {
        self.transport.provider()
    }

    /// The largest single request, in bytes.
    pub fn io_size(&self) -> usize {
        self.engine.io_size()
    }

    /// Requests that can be in flight at once.
    pub fn queue_depth(&self) -> usize {
        self.engine.queue_depth()
    }

    /// The completion mode of data requests.
    pub fn mode(&self) -> CompletionMode {
        self.engine.mode()
    }

    /// This client's counters: requests by kind and status, bytes, requests
    /// in flight, failed work requests, latency histograms.
    pub fn stats(&self) -> &ClientStats {
        self.engine.stats()
    }

    /// Credits the server currently grants this client (claim 1).
    pub fn credits(&self) -> u16 {
        self.engine.core().ledger().level()
    }

    /// Credits held by requests the server has not answered yet: zero
    /// whenever the client is quiescent, or a credit leaked.
    pub fn credits_in_use(&self) -> u16 {
        self.engine.core().ledger().in_use()
    }

    /// The negotiated parameters.
    pub fn negotiated(&self) -> &Negotiated {
        self.engine.core().negotiated()
    }

    // ----- files -----

    /// Open `path` (relative to the server's root) and register it on the
    /// RDMA channel: [`Client::open_on_pipe`] then [`Client::register`].
    pub fn open(
        &mut self,
        path: impl AsRef<[u8]>,
        flags: OpenFlags,
    ) -> Result<RemoteFile, ClientError> {
        let opened = self.open_on_pipe(path, flags)?;
        self.register(opened.key)
    }

    /// Open `path` on the side channel; the server answers with the file's
    /// resume key (claim 10).
    pub fn open_on_pipe(
        &mut self,
        path: impl AsRef<[u8]>,
        flags: OpenFlags,
    ) -> Result<Opened, ClientError> {
        let path = path.as_ref();
        if path.len() > wire::MAX_PATH_LEN {
            return Err(ClientError::TooLarge {
                len: path.len() as u64,
                max: wire::MAX_PATH_LEN as u64,
            });
        }
        if path.is_empty() || path.contains(&0) {
            return Err(ClientError::InvalidArgument(
                "a path must be non-empty and free of NUL bytes",
            ));
        }
        self.idle_ended(false)?;
        if let Err(error) = self.pipe.send(&PipeMessage::OpenRequest { flags, path }) {
            return Err(self.pipe_failed(error));
        }
        let answer = self.pipe.receive();
        if matches!(answer, Ok(PipeMessage::OpenResponse { .. })) {
            self.last_active = std::time::Instant::now();
        }
        match answer {
            Ok(PipeMessage::OpenResponse {
                status: Status::Success,
                key,
                size,
            }) => Ok(Opened { key, size }),
            Ok(PipeMessage::OpenResponse { status, .. }) => Err(ClientError::Remote {
                operation: Operation::Open,
                status,
            }),
            Ok(PipeMessage::Refused { status }) => Err(self.refused_on_pipe(status)),
            Ok(_) => Err(PipeError::Unexpected("expected an open response").into()),
            Err(error) => Err(self.pipe_failed(error)),
        }
    }

    /// Ask on the side channel what the file at `path` is now: its size,
    /// modification time and identity. Comparing two answers tells whether
    /// it changed (or was replaced) in between; a file that is gone is
    /// [`ClientError::Remote`] with `NotFound`.
    pub fn stat(&mut self, path: impl AsRef<[u8]>) -> Result<FileStat, ClientError> {
        let path = path.as_ref();
        if path.len() > wire::MAX_PATH_LEN {
            return Err(ClientError::TooLarge {
                len: path.len() as u64,
                max: wire::MAX_PATH_LEN as u64,
            });
        }
        if path.is_empty() || path.contains(&0) {
            return Err(ClientError::InvalidArgument(
                "a path must be non-empty and free of NUL bytes",
            ));
        }
        self.idle_ended(false)?;
        if let Err(error) = self.pipe.send(&PipeMessage::StatRequest { path }) {
            return Err(self.pipe_failed(error));
        }
        let answer = self.pipe.receive();
        if matches!(answer, Ok(PipeMessage::StatResponse { .. })) {
            self.last_active = std::time::Instant::now();
        }
        match answer {
            Ok(PipeMessage::StatResponse {
                status: Status::Success,
                size,
                modified_ns,
                file_id,
            }) => Ok(FileStat {
                size,
                modified_ns,
                file_id,
            }),
            Ok(PipeMessage::StatResponse { status, .. }) => Err(ClientError::Remote {
                operation: Operation::Stat,
                status,
            }),
            Ok(PipeMessage::Refused { status }) => Err(self.refused_on_pipe(status)),
            Ok(_) => Err(PipeError::Unexpected("expected a stat response").into()),
            Err(error) => Err(self.pipe_failed(error)),
        }
    }

    /// The remote file operations (list, look up, remove, make a
    /// directory, rename, set attributes, hash a range) on this client's
    /// side channel.
    pub fn tree(&mut self) -> RemoteTree<'_, S> {
        RemoteTree::new(&mut self.pipe)
    }

    /// Ask on the side channel for the XXH3-128 checksum of the whole file
    /// at `path`, computed by the server over what it holds (the answer
    /// comes once it has read the file). A server without checksums
    /// answers [`ClientError::Remote`] with `NotSupported`, as does one
    /// that does not know the message at all (a pipe `Error`
    /// `UNKNOWN_OPCODE`, after which the side channel stays usable).
    pub fn checksum(&mut self, path: impl AsRef<[u8]>) -> Result<Checksum, ClientError> {
        let path = path.as_ref();
        if path.len() > wire::MAX_PATH_LEN {
            return Err(ClientError::TooLarge {
                len: path.len() as u64,
                max: wire::MAX_PATH_LEN as u64,
            });
        }
        if path.is_empty() || path.contains(&0) {
            return Err(ClientError::InvalidArgument(
                "a path must be non-empty and free of NUL bytes",
            ));
        }
        let algorithm = wire::ChecksumAlgorithm::XXH3_128;
        self.pipe
            .send(&PipeMessage::ChecksumRequest { algorithm, path })?;
        let unsupported = ClientError::Remote {
            operation: Operation::Checksum,
            status: Status::NotSupported,
        };
        match self.pipe.receive() {
            Ok(PipeMessage::ChecksumResponse {
                status: Status::Success,
                algorithm: answered,
                length,
                digest,
            }) if answered == algorithm => {
                let mut head = [0; 16];
                head.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
                Ok(Checksum {
                    length,
                    digest: head,
                })
            }
            Ok(PipeMessage::ChecksumResponse {
                status: Status::Success,
                ..
            }) => Err(PipeError::Unexpected("a checksum of another algorithm").into()),
            Ok(PipeMessage::ChecksumResponse { status, .. }) => Err(ClientError::Remote {
                operation: Operation::Checksum,
                status,
            }),
            Ok(_) => Err(PipeError::Unexpected("expected a checksum response").into()),
            Err(PipeError::Refused { code, .. }) if code == PipeErrorCode::UNKNOWN_OPCODE => {
                Err(unsupported)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Register a file opened on the side channel by its resume key
    /// (claims 10, 11). Keys are single use.
    pub fn register(&mut self, key: ResumeKey) -> Result<RemoteFile, ClientError> {
        self.last_active = std::time::Instant::now();
        let slot = self.engine.control(|core| core.register(key))?;
        self.engine.count_request(4);
        match self.wait_control(slot)? {
            Outcome::Registered(Ok(file)) => Ok(file),
            other => Err(refused(Operation::Register, other)),
        }
    }

    /// Close a registered file (claim 15). Its handle is invalid afterwards.
    pub fn close(&mut self, file: RemoteFile) -> Result<(), ClientError> {
        self.last_active = std::time::Instant::now();
        let slot = self.engine.control(|core| core.close(file.handle))?;
        self.engine.count_request(5);
        match self.wait_control(slot)? {
            Outcome::Completed {
                status: Status::Success,
                ..
            } => Ok(()),
            other => Err(refused(Operation::Close, other)),
        }
    }

    /// Polling mode: ask the server to wake this client by an ordinary send
    /// at its next completion (claim 21), and wait for that interrupt
    /// response.
    pub fn request_interrupt(&mut self) -> Result<(), ClientError> {
        let slot = self.engine.control(CoreClient::request_interrupt)?;
        match self.wait_control(slot)? {
            Outcome::Interrupted => Ok(()),
            other => Err(refused(Operation::Interrupt, other)),
        }
    }

    // ----- submissions -----

    /// Queue a read of `len` bytes at `offset` (claim 16: the server
    /// RDMA-writes the data, then the status block).
    pub fn submit_read(
        &mut self,
        file: &RemoteFile,
        offset: u64,
        len: usize,
    ) -> Result<Ticket, ClientError> {
        let slot = self.begin(len)?;
        let submitted = self.engine.descriptor(slot, 0, len).and_then(|dest| {
            let status = self
                .engine
                .status_descriptor_for(&mut self.transport, slot, len)?;
            // Posted at once when it can go first (`Engine::read`).
            self.engine
                .read(&mut self.transport, file.handle, offset, dest, status)
        });
        self.submitted(slot, submitted, Operation::Read, len, false)
    }

    /// Queue a vectored read: `(file offset, length)` segments, each landing
    /// back to back in one buffer (claim 15).
    pub fn submit_read_vectored(
        &mut self,
        file: &RemoteFile,
        segments: &[(u64, usize)],
    ) -> Result<Ticket, ClientError> {
        check_segment_count(segments.len())?;
        let total = segments.iter().map(|&(_, len)| len).sum();
        let slot = self.begin(total)?;
        let submitted = (|| {
            // A segment short at end of file is not written past its end,
            // and the segments are handed over back to back: zero the span
            // first, so what lies beyond a short segment is zeros, never
            // the bytes of an earlier read through this buffer.
            let region = self.engine.buffer_region(slot)?;
            if let Some(span) = self.transport.region_mut(region)?.get_mut(..total) {
                span.fill(0);
            }
            // At most MAX_SEGMENTS (checked above): no heap allocation.
            let mut wire_segments = heapless::Vec::<_, MAX_SEGMENTS>::new();
            let mut position = 0;
            for &(offset, len) in segments {
                wire_segments
                    .push(wire::ReadSegment::new(
                        offset,
                        self.engine.descriptor(slot, position, len)?,
                    ))
                    .map_err(|_| ClientError::InvalidArgument(TOO_MANY_SEGMENTS))?;
                position += len;
            }
            let status = self
                .engine
                .status_descriptor_for(&mut self.transport, slot, total)?;
            let mode = self.engine.mode();
            Ok(self
                .engine
                .core_mut()
                .read_vectored(file.handle, &wire_segments, status, mode)?)
        })();
        self.submitted(slot, submitted, Operation::Read, total, true)
    }

    /// Queue a write of `data` at `offset` (claim 1: the data travels in
    /// sends, fragmented by the core).
    pub fn submit_write(
        &mut self,
        file: &RemoteFile,
        offset: u64,
        data: &[u8],
    ) -> Result<Ticket, ClientError> {
        let slot = self.begin(data.len())?;
        match self.fill(slot, &[data]) {
            Ok(()) => self.submit_filled(slot, file, offset, data.len()),
            Err(e) => {
                self.engine.unbegin(slot);
                Err(e)
            }
        }
    }

    /// A registered buffer of `len` bytes (at most [`Client::io_size`]) for
    /// the caller to fill with write data: [`WriteBuffer::submit`] then
    /// sends the bytes from where they are, with no copy — the write-side
    /// counterpart of [`Client::wait_in_place`]. It takes one of the queue
    /// depth's buffers until submitted or dropped, and starts out holding
    /// whatever this client last moved through that buffer (it is not
    /// zeroed): fill all `len` bytes, or [`WriteBuffer::truncate`] to what
    /// was filled.
    pub fn write_buffer(&mut self, len: usize) -> Result<WriteBuffer<'_, T, S>, ClientError> {
        let slot = self.begin(len)?;
        Ok(WriteBuffer {
            client: self,
            slot: Some(slot),
            len,
        })
    }

    /// Submit the write of the first `len` bytes of `slot`, which hold the
    /// data; the slot is released if the submission fails.
    fn submit_filled(
        &mut self,
        slot: usize,
        file: &RemoteFile,
        offset: u64,
        len: usize,
    ) -> Result<Ticket, ClientError> {
        let submitted = (|| {
            let status = self.engine.status_descriptor(&mut self.transport, slot)?;
            let len = u32::try_from(len).map_err(|_| ClientError::TooLarge {
                len: len as u64,
                max: u64::from(u32::MAX),
            })?;
            // Posted at once when it can go first (`Engine::write`).
            self.engine
                .write(&mut self.transport, slot, file.handle, offset, len, status)
        })();
        self.submitted(slot, submitted, Operation::Write, 0, false)
    }

    /// Queue a vectored write: each segment's bytes to its own offset, the
    /// data carried once, concatenated.
    pub fn submit_write_vectored(
        &mut self,
        file: &RemoteFile,
        segments: &[WriteSegment<'_>],
    ) -> Result<Ticket, ClientError> {
        check_segment_count(segments.len())?;
        let total = segments.iter().map(|s| s.data.len()).sum();
        let slot = self.begin(total)?;
        let data: heapless::Vec<&[u8], MAX_SEGMENTS> = segments.iter().map(|s| s.data).collect();
        let submitted = self.fill(slot, &data).and_then(|()| {
            let wire_segments =
                wire_write_segments(segments.iter().map(|s| (s.offset, s.data.len())))?;
            let status = self
                .engine
                .status_descriptor_for(&mut self.transport, slot, total)?;
            let mode = self.engine.mode();
            Ok(self.engine.core_mut().write_vectored(
                file.handle,
                &wire_segments,
                false,
                status,
                mode,
            )?)
        });
        self.submitted(slot, submitted, Operation::Write, 0, true)
    }

    /// Queue a COLLAPSE vectored write (claim 17): the same `data` to every
    /// offset, sent once.
    pub fn submit_write_collapsed(
        &mut self,
        file: &RemoteFile,
        offsets: &[u64],
        data: &[u8],
    ) -> Result<Ticket, ClientError> {
        check_segment_count(offsets.len())?;
        let slot = self.begin(data.len())?;
        let submitted = self.fill(slot, &[data]).and_then(|()| {
            let wire_segments =
                wire_write_segments(offsets.iter().map(|&offset| (offset, data.len())))?;
            let status =
                self.engine
                    .status_descriptor_for(&mut self.transport, slot, data.len())?;
            let mode = self.engine.mode();
            Ok(self.engine.core_mut().write_vectored(
                file.handle,
                &wire_segments,
                true,
                status,
                mode,
            )?)
        });
        self.submitted(slot, submitted, Operation::Write, 0, true)
    }

    /// Cancel a submitted request (claim 15). It still completes through
    /// [`Client::wait`]: `Cancelled`, or its real outcome if it finished
    /// first.
    pub fn cancel(&mut self, ticket: &Ticket) -> Result<(), ClientError> {
        Ok(self.engine.core_mut().cancel(ticket.request)?)
    }

    /// Wait for `ticket`'s request and free its buffer. For reads, the data
    /// is copied into `out` (as much as fits; for a vectored read, the
    /// segments back to back) and the byte count is returned; a read
    /// starting at or past end of file returns 0. For writes, `out` is
    /// unused and the count is the bytes written.
    pub fn wait(&mut self, ticket: Ticket, out: &mut [u8]) -> Result<u64, ClientError> {
        let result = self.settle(&ticket);
        let result = result.and_then(|bytes| {
            if ticket.operation == Operation::Read {
                let n = ticket.read_len(bytes).min(out.len());
                let region = self.engine.buffer_region(ticket.slot)?;
                let data = self.transport.region(region)?;
                out[..n].copy_from_slice(&data[..n]);
            }
            Ok(bytes)
        });
        self.engine.release(ticket.slot);
        result
    }

    /// Wait for a submitted read and lend its bytes where the server's RDMA
    /// writes put them, in the client's registered buffer: no copy into
    /// caller memory, which [`Client::wait`] makes. The buffer goes back to
    /// the client when the view is dropped; until then the client is
    /// borrowed, but the other requests in flight keep moving (the server
    /// writes into their own buffers). A ticket that is not a read is
    /// settled and refused with [`ClientError::InvalidArgument`].
    pub fn wait_in_place(&mut self, ticket: Ticket) -> Result<ReadView<'_, T, S>, ClientError> {
        // Matched as it comes out, with no guard: the error is moved out
        // of the result on its own arm, so the read's path drops nothing.
        let bytes = match self.settle(&ticket) {
            Ok(bytes) => bytes,
            Err(error) => {
                self.engine.release(ticket.slot);
                return Err(error);
            }
        };
        if ticket.operation != Operation::Read {
            self.engine.release(ticket.slot);
            return Err(ClientError::InvalidArgument(
                "wait_in_place takes the ticket of a read",
            ));
        }
        let len = ticket.read_len(bytes);
        let Self {
            engine, transport, ..
        } = self;
        // The slot's region was registered by this client and stays so
        // while the client lives; `len` is within it (a request's span).
        let bytes = engine
            .buffer_region(ticket.slot)
            .ok()
            .and_then(|region| transport.region(region).ok())
            .and_then(|bytes| bytes.get(..len))
            .unwrap_or(&[]);
        Ok(ReadView {
            engine,
            bytes,
            slot: ticket.slot,
            client: PhantomData,
        })
    }

    // ----- blocking file I/O -----

    /// Read up to `buf.len()` bytes at `offset`, keeping up to the queue
    /// depth of requests in flight. Short only at end of file, like
    /// [`crate::files::File::read_at`].
    pub fn read_at(
        &mut self,
        file: &RemoteFile,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, ClientError> {
        let chunk = self.io_size();
        let mut in_flight = std::mem::take(&mut self.pipeline);
        let mut next = 0;
        let result = loop {
            let mut failed = None;
            while in_flight.len() < self.queue_depth() && next < buf.len() {
                let len = chunk.min(buf.len() - next);
                match self.submit_read(file, offset + next as u64, len) {
                    Ok(ticket) => in_flight.push_back((ticket, next, len)),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
                next += len;
            }
            if let Some(e) = failed {
                break Err(e);
            }
            let Some((ticket, start, len)) = in_flight.pop_front() else {
                break Ok(buf.len());
            };
            match self.wait(ticket, &mut buf[start..start + len]) {
                Ok(got) if (got as usize) < len => break Ok(start + got as usize),
                Ok(_) => {}
                Err(e) => break Err(e),
            }
        };
        self.drain(in_flight.drain(..).map(|(ticket, _, _)| ticket));
        self.pipeline = in_flight;
        result
    }

    /// Write all of `data` at `offset`, pipelined like [`Client::read_at`].
    pub fn write_at(
        &mut self,
        file: &RemoteFile,
        offset: u64,
        data: &[u8],
    ) -> Result<(), ClientError> {
        let chunk = self.io_size();
        let mut in_flight = std::mem::take(&mut self.pipeline);
        let mut next = 0;
        let result = loop {
            let mut failed = None;
            while in_flight.len() < self.queue_depth() && next < data.len() {
                let len = chunk.min(data.len() - next);
                match self.submit_write(file, offset + next as u64, &data[next..next + len]) {
                    Ok(ticket) => in_flight.push_back((ticket, next, len)),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
                next += len;
            }
            if let Some(e) = failed {
                break Err(e);
            }
            let Some((ticket, _, len)) = in_flight.pop_front() else {
                break Ok(());
            };
            match self.wait(ticket, &mut []) {
                Ok(written) if written as usize == len => {}
                Ok(written) => {
                    break Err(ClientError::ShortWrite {
                        expected: len as u64,
                        written,
                    });
                }
                Err(e) => break Err(e),
            }
        };
        self.drain(in_flight.drain(..).map(|(ticket, _, _)| ticket));
        self.pipeline = in_flight;
        result
    }

    /// Read independent segments in one vectored request; returns the total
    /// bytes (each segment short only at end of file).
    pub fn read_vectored_at(
        &mut self,
        file: &RemoteFile,
        segments: &mut [ReadSegment<'_>],
    ) -> Result<u64, ClientError> {
        check_segment_count(segments.len())?;
        let shape: heapless::Vec<(u64, usize), MAX_SEGMENTS> =
            segments.iter().map(|s| (s.offset, s.buf.len())).collect();
        let ticket = self.submit_read_vectored(file, &shape)?;
        let slot = ticket.slot;
        let result = self.settle(&ticket).and_then(|bytes| {
            let data = self.transport.region(self.engine.buffer_region(slot)?)?;
            let mut position = 0;
            for segment in segments.iter_mut() {
                let len = segment.buf.len();
                segment.buf.copy_from_slice(&data[position..position + len]);
                position += len;
            }
            Ok(bytes)
        });
        self.engine.release(slot);
        result
    }

    /// Write independent segments in one vectored request.
    pub fn write_vectored_at(
        &mut self,
        file: &RemoteFile,
        segments: &[WriteSegment<'_>],
    ) -> Result<u64, ClientError> {
        let ticket = self.submit_write_vectored(file, segments)?;
        self.wait(ticket, &mut [])
    }

    /// Write `data` at every offset in one COLLAPSE request (claim 17).
    pub fn write_collapsed(
        &mut self,
        file: &RemoteFile,
        offsets: &[u64],
        data: &[u8],
    ) -> Result<u64, ClientError> {
        let ticket = self.submit_write_collapsed(file, offsets, data)?;
        self.wait(ticket, &mut [])
    }

    /// `std::io` access to `file`, starting at offset 0.
    pub fn io(&mut self, file: RemoteFile) -> RemoteFileIo<'_, T, S> {
        RemoteFileIo::new(self, file)
    }

    /// End the connection in an orderly way (`Terminate(Shutdown)`), then
    /// disconnect and deregister every buffer, so no key the server was
    /// given stays valid. Requests still outstanding complete `Closed`.
    pub fn shutdown(mut self) -> Result<(), ClientError> {
        self.engine.close_connection();
        let deadline = std::time::Instant::now() + LINGER;
        let result = loop {
            if let Err(e) = self.step() {
                break Err(e);
            }
            if self.engine.terminate_sent()
                || self.engine.transport_down()
                || std::time::Instant::now() >= deadline
            {
                break Ok(());
            }
        };
        let released = self.release_buffers();
        result.and(released.map_err(ClientError::Transport))
    }

    /// Disconnect and deregister every buffer this client registered.
    fn release_buffers(&mut self) -> Result<(), TransportError> {
        self.engine.release_buffers(&mut self.transport)
    }

    // ----- driving the engine -----

    fn end_error(&self, reason: Violation) -> ClientError {
        if reason == Violation::PeerTerminated(Status::IdleTimeout) {
            return ClientError::IdleTimeout {
                idle: self.last_active.elapsed(),
            };
        }
        self.engine.end_error(reason)
    }

    /// Whether the server has ended this client for idleness: its
    /// `Terminate(IdleTimeout)` already handled, or (with `poll`) waiting
    /// on the RDMA connection — so the client says that rather than how
    /// the closed pipe failed. Polled only once the pipe has failed: an
    /// inline pair reports a poll that cannot progress as a stall.
    fn idle_ended(&mut self, poll: bool) -> Result<(), ClientError> {
        if poll {
            self.engine.peek(&mut self.transport);
        }
        match self.engine.terminated() {
            Some(reason @ Violation::PeerTerminated(Status::IdleTimeout)) => {
                Err(self.end_error(reason))
            }
            _ => Ok(()),
        }
    }

    /// The side channel failed: an idle timeout when the server said so
    /// on the RDMA connection meanwhile, else the pipe's error.
    fn pipe_failed(&mut self, error: PipeError) -> ClientError {
        match self.idle_ended(true) {
            Err(idle) => idle,
            Ok(()) => error.into(),
        }
    }

    /// The server refused this client on its side channel with `status`.
    fn refused_on_pipe(&self, status: Status) -> ClientError {
        match status {
            Status::IdleTimeout => ClientError::IdleTimeout {
                idle: self.last_active.elapsed(),
            },
            status => ClientError::Refused(status),
        }
    }

    /// A free data slot for a request of `len` bytes.
    ///
    /// `last_active` is left alone: a data request names a registered file,
    /// and a server ends only clients that hold none for idleness; the
    /// register and the close that bracket the file's use set it.
    fn begin(&mut self, len: usize) -> Result<usize, ClientError> {
        self.engine.begin(len)
    }

    fn submitted(
        &mut self,
        slot: usize,
        submitted: Result<RequestId, ClientError>,
        operation: Operation,
        span: usize,
        vectored: bool,
    ) -> Result<Ticket, ClientError> {
        let kind = match (operation, vectored) {
            (Operation::Read, false) => 0,
            (Operation::Read, true) => 1,
            (_, false) => 2,
            (_, true) => 3,
        };
        let request = match submitted {
            Ok(request) => request,
            Err(e) => {
                self.engine.unbegin(slot);
                return Err(e);
            }
        };
        self.engine.submitted(slot, request, kind);
        Ok(Ticket {
            request,
            slot,
            operation,
            span,
            vectored,
        })
    }

    /// Copy write data into a slot, pieces back to back.
    fn fill(&mut self, slot: usize, pieces: &[&[u8]]) -> Result<(), ClientError> {
        let buffer = self
            .transport
            .region_mut(self.engine.buffer_region(slot)?)?;
        let mut position = 0;
        for piece in pieces {
            let end = position + piece.len();
            buffer
                .get_mut(position..end)
                .ok_or(ClientError::TooLarge {
                    len: end as u64,
                    max: self.engine.io_size() as u64,
                })?
                .copy_from_slice(piece);
            position = end;
        }
        Ok(())
    }

    /// Wait for a ticket's outcome and for the sends gathering from its
    /// buffer; the buffer stays taken.
    #[inline(always)]
    fn settle(&mut self, ticket: &Ticket) -> Result<u64, ClientError> {
        // Already done (with success, its sends too): no call, no wait.
        if let Some(bytes) = self.engine.take_success(ticket.slot) {
            return Ok(bytes);
        }
        self.settle_slow(ticket)
    }

    /// [`Self::settle`] for a request still under way, one whose sends
    /// are, or one that did not succeed: wait, then map its outcome.
    #[inline(never)]
    fn settle_slow(&mut self, ticket: &Ticket) -> Result<u64, ClientError> {
        let outcome = self.wait_outcome(ticket.slot);
        while self.engine.sends_from(ticket.slot) > 0 {
            if self.engine.transport_down() {
                self.engine.forget_sends(ticket.slot);
                break;
            }
            self.step()?;
        }
        match outcome? {
            Outcome::Completed {
                status: Status::Success,
                bytes,
            } => Ok(bytes),
            Outcome::Completed {
                status: Status::EndOfFile,
                ..
            } if ticket.operation == Operation::Read => Ok(0),
            other => match self.engine.terminated() {
                // Cut off by the connection's end: say why it ended.
                Some(reason)
                    if matches!(other, Outcome::Completed { status, .. }
                        if cut_off_status(reason) == status) =>
                {
                    Err(self.end_error(reason))
                }
                _ => Err(refused(ticket.operation, other)),
            },
        }
    }

    /// Collect tickets whose results no longer matter (after an error).
    fn drain(&mut self, tickets: impl Iterator<Item = Ticket>) {
        for ticket in tickets {
            let _ = self.wait(ticket, &mut []);
        }
    }

    /// Wait for the outcome of the request in `slot`.
    fn wait_outcome(&mut self, slot: usize) -> Result<Outcome, ClientError> {
        loop {
            if let Some(outcome) = self.engine.take_outcome(slot) {
                return Ok(outcome);
            }
            if let Some(reason) = self.engine.terminated() {
                // Every request completes before `Terminated` is reported.
                return Err(self.end_error(reason));
            }
            self.step()?;
        }
    }

    /// Wait for the control request in `slot` and free the slot.
    fn wait_control(&mut self, slot: usize) -> Result<Outcome, ClientError> {
        let outcome = self.wait_outcome(slot);
        self.engine.release(slot);
        outcome
    }

    /// One round of the loop over the engine: poll it, and when nothing
    /// moved, wait for the transport (interrupt mode) or yield (polling
    /// mode spins, claim 18: a status block lands in memory without any
    /// completion to wait for).
    fn step(&mut self) -> Result<(), ClientError> {
        let progress = self.engine.poll(&mut self.transport)?;
        if !progress.moved() && !self.engine.transport_down() {
            match self.engine.mode() {
                CompletionMode::Interrupt => {
                    let timeout = self.engine.wait_time(WAIT_CAP);
                    if self.transport.wait(Some(timeout)).is_err() {
                        self.engine.transport_failed(None);
                    }
                }
                CompletionMode::Polling => std::thread::yield_now(),
            }
        }
        Ok(())
    }
}

/// The error for a request that did not succeed. The core reports each
/// request with the outcome of its kind, so a mismatched kind would be a core
/// bug; it is reported as a protocol error rather than trusted.
fn refused(operation: Operation, outcome: Outcome) -> ClientError {
    let status = match outcome {
        Outcome::Completed { status, .. } | Outcome::Registered(Err(status)) => status,
        Outcome::Registered(Ok(_)) | Outcome::Interrupted => Status::ProtocolError,
    };
    ClientError::Remote { operation, status }
}

/// The status the core completes requests with when the connection ends
/// for `reason` before they finished (`rdio_core::client::Client` `end`).
fn cut_off_status(reason: Violation) -> Status {
    match reason {
        Violation::PeerTerminated(Status::Shutdown) => Status::Closed,
        reason => reason.wire_status(),
    }
}

const TOO_MANY_SEGMENTS: &str = "a vectored request has 1 to 16 segments";

fn check_segment_count(count: usize) -> Result<(), ClientError> {
    if count == 0 || count > MAX_SEGMENTS {
        return Err(ClientError::InvalidArgument(TOO_MANY_SEGMENTS));
    }
    Ok(())
}

/// At most [`MAX_SEGMENTS`] (the caller checked): no heap allocation.
fn wire_write_segments(
    segments: impl Iterator<Item = (u64, usize)>,
) -> Result<heapless::Vec<wire::WriteSegment, MAX_SEGMENTS>, ClientError> {
    segments
        .map(|(offset, len)| {
            let len = u32::try_from(len).map_err(|_| ClientError::TooLarge {
                len: len as u64,
                max: u64::from(u32::MAX),
            })?;
            Ok(wire::WriteSegment::new(offset, len))
        })
        .collect()
}
