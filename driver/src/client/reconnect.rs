//! A client that survives the loss of its RDMA connection.
//!
//! [`ResilientClient`] wraps a [`Client`] and, when a call fails because the
//! connection is gone (an error completion, a disconnect, the dead-peer
//! timer, a broken side channel), builds a new one:
//!
//! 1. **Discovery again** (claims 8, 23) on the old side channel if it still
//!    works — the pipe session survives the RDMA connection, and each
//!    negotiation mints a fresh single-use authentication key — or else on a
//!    new side channel from the [`Connector`], starting with a new server
//!    request resume key.
//! 2. **Authentication again** (claims 12–14) with the new key.
//! 3. **Files again** (claims 10, 11). A file resume key is single use and
//!    the server closes the files of a connection when it ends, so keys are
//!    never presented twice: every file is *opened again by path* on the
//!    pipe, which mints a new key, and registered with it. The server checks
//!    the path and the access mode again, exactly as for a first open.
//!    `CREATE` and `TRUNCATE` are dropped on a re-open: the file exists, and
//!    truncating it again would destroy what was written since. An upload
//!    (`TRUNCATE` without `IN_PLACE`) is not opened again: the server
//!    discarded what was written when the connection ended, and writing on
//!    in place would mix new bytes into the old file; it is reported lost
//!    ([`ResilientError::FileLost`] with status `Closed`).
//!
//! Requests in flight when the connection died are handled by kind:
//!
//! * **Reads are retried** on the new connection (a read has no side effect,
//!   so repeating one is always safe), up to [`ReconnectPolicy::attempts`]
//!   times.
//! * **Writes are reported failed** ([`ResilientError::WriteInDoubt`]), never
//!   replayed: the server may have written some or all of the bytes before
//!   the reply was lost, and only the caller knows whether writing them again
//!   is correct (it is not for appends, or when another client wrote in
//!   between). The client is reconnected before the error is returned, so
//!   the caller can retry on the same object.
//!
//! A connection that ended because the peer broke the protocol (a
//! [`Violation`] other than a timeout or a plain close) is not reconnected:
//! the error is returned as is.

use super::{Client, ClientError, ClientOptions, RemoteFile};
use rdio_core::client::Negotiated;
use rdio_core::error::Violation;
use rdio_core::wire::{OpenFlags, Status};
use rdio_transport::Transport;
use std::fmt;
use std::io::{Read, Write};
use std::time::Duration;

/// Makes the channels a [`ResilientClient`] (re)connects over.
pub trait Connector {
    /// The RDMA transport.
    type Transport: Transport;
    /// The side channel.
    type Stream: Read + Write;

    /// Open a new side channel to the server.
    fn side_channel(&mut self) -> Result<Self::Stream, ClientError>;

    /// Connect the RDMA channel a negotiation settled on.
    fn transport(&mut self, negotiated: &Negotiated) -> Result<Self::Transport, ClientError>;
}

/// How hard a [`ResilientClient`] tries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReconnectPolicy {
    /// Connection attempts per loss, and retries of one read.
    pub attempts: u32,
    /// Pause before the second attempt, growing linearly after it.
    pub backoff: Duration,
}

impl Default for ReconnectPolicy {
    /// Three attempts, 100 ms apart at first: a server that restarts or a
    /// path that fails over is back within a second; one that is not is
    /// reported within a second too.
    fn default() -> Self {
        Self {
            attempts: 3,
            backoff: Duration::from_millis(100),
        }
    }
}

/// A file of a [`ResilientClient`]: stays valid across reconnections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileRef(usize);

/// Why a [`ResilientClient`] call failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ResilientError {
    /// The call failed for a reason other than a lost connection (the
    /// server refused it, a caller mistake, a protocol violation).
    Client(ClientError),
    /// The connection was lost while a write was in flight. The bytes may
    /// be written fully, partly or not at all; the write was not replayed.
    /// The client has reconnected.
    WriteInDoubt {
        /// What ended the connection.
        cause: ClientError,
    },
    /// Every reconnection attempt failed.
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// The last attempt's error.
        last: ClientError,
    },
    /// The file could not be opened again after a reconnection (removed,
    /// renamed, or access changed on the server); it is no longer usable.
    FileLost {
        /// How the server refused the re-open, if it answered with a
        /// status.
        status: Option<Status>,
    },
    /// The file was closed, or lost at an earlier reconnection.
    NotOpen,
}

impl fmt::Display for ResilientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Client(e) => write!(f, "{e}"),
            Self::WriteInDoubt { cause } => write!(
                f,
                "connection lost during a write ({cause}); reconnected, the write was not \
                 replayed and may be partly applied"
            ),
            Self::GaveUp { attempts, last } => {
                write!(f, "could not reconnect after {attempts} attempts: {last}")
            }
            Self::FileLost {
                status: Some(status),
            } => {
                write!(
                    f,
                    "file could not be opened again after reconnecting: {status}"
                )
            }
            Self::FileLost { status: None } => {
                f.write_str("file could not be opened again after reconnecting")
            }
            Self::NotOpen => f.write_str("file is not open"),
        }
    }
}

impl std::error::Error for ResilientError {}

impl From<ClientError> for ResilientError {
    fn from(e: ClientError) -> Self {
        Self::Client(e)
    }
}

/// Whether `e` means the connection is gone (and another may work), as
/// opposed to a refusal or a peer breaking the protocol.
pub fn is_connection_loss(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Lost(_)
            | ClientError::Pipe(_)
            | ClientError::Transport(_)
            | ClientError::Terminated(Violation::TimedOut | Violation::PeerTerminated(_))
            // The server let an idle client go; a new connection is welcome.
            | ClientError::IdleTimeout { .. }
    )
}

#[derive(Debug)]
struct Tracked {
    path: Vec<u8>,
    /// The mode to open it with again: `CREATE`/`TRUNCATE` removed; `None`
    /// for an upload, which cannot be resumed.
    reopen: Option<OpenFlags>,
    file: Result<RemoteFile, Lost>,
}

/// Why a tracked file is unusable.
#[derive(Debug)]
enum Lost {
    Closed,
    Reopen(Option<Status>),
}

/// A [`Client`] that reconnects; see the [module docs](self).
pub struct ResilientClient<C: Connector> {
    connector: C,
    options: ClientOptions,
    policy: ReconnectPolicy,
    client: Option<Client<C::Transport, C::Stream>>,
    files: Vec<Tracked>,
    reconnects: u32,
}

impl<C: Connector> fmt::Debug for ResilientClient<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResilientClient")
            .field("client", &self.client)
            .field("files", &self.files.len())
            .field("reconnects", &self.reconnects)
            .finish_non_exhaustive()
    }
}

impl<C: Connector> ResilientClient<C> {
    /// Connect for the first time (the first attempt's error is returned:
    /// a server that was never reachable is a configuration problem, not a
    /// loss to recover from).
    pub fn connect(
        mut connector: C,
        options: ClientOptions,
        policy: ReconnectPolicy,
    ) -> Result<Self, ClientError> {
        let stream = connector.side_channel()?;
        let client = Client::connect(stream, options.clone(), |n| connector.transport(n))?;
        Ok(Self {
            connector,
            options,
            policy,
            client: Some(client),
            files: Vec::new(),
            reconnects: 0,
        })
    }

    /// How many times the connection was rebuilt.
    pub fn reconnects(&self) -> u32 {
        self.reconnects
    }

    /// The connector (e.g. to inspect what a test connector built).
    pub fn connector(&self) -> &C {
        &self.connector
    }

    /// The current connection, for calls this wrapper does not offer
    /// (they are not retried).
    pub fn client(&mut self) -> Result<&mut Client<C::Transport, C::Stream>, ResilientError> {
        self.live()
    }

    /// Open and register `path`; retried on a new connection if the
    /// connection is lost meanwhile.
    pub fn open(
        &mut self,
        path: impl AsRef<[u8]>,
        flags: OpenFlags,
    ) -> Result<FileRef, ResilientError> {
        let path = path.as_ref();
        let mut failures = 0;
        let file = loop {
            match self.live()?.open(path, flags) {
                Ok(file) => break file,
                Err(e) => self.recover(e, &mut failures)?,
            }
        };
        self.files.push(Tracked {
            path: path.to_vec(),
            reopen: (!flags.is_upload())
                .then(|| flags.difference(OpenFlags::CREATE | OpenFlags::TRUNCATE)),
            file: Ok(file),
        });
        Ok(FileRef(self.files.len() - 1))
    }

    /// The file's current registration (its handle changes at every
    /// reconnection).
    pub fn remote(&self, file: FileRef) -> Result<RemoteFile, ResilientError> {
        match self.files.get(file.0).map(|t| &t.file) {
            Some(Ok(remote)) => Ok(*remote),
            Some(Err(Lost::Reopen(status))) => Err(ResilientError::FileLost { status: *status }),
            Some(Err(Lost::Closed)) | None => Err(ResilientError::NotOpen),
        }
    }

    /// Read like [`Client::read_at`]; a lost connection is rebuilt and the
    /// whole read issued again.
    pub fn read_at(
        &mut self,
        file: FileRef,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, ResilientError> {
        let mut failures = 0;
        loop {
            let remote = self.remote(file)?;
            match self.live()?.read_at(&remote, offset, buf) {
                Ok(n) => return Ok(n),
                Err(e) => self.recover(e, &mut failures)?,
            }
        }
    }

    /// Write like [`Client::write_at`]. If the connection is lost, the
    /// client reconnects and the write is reported
    /// [`ResilientError::WriteInDoubt`], never replayed.
    pub fn write_at(
        &mut self,
        file: FileRef,
        offset: u64,
        data: &[u8],
    ) -> Result<(), ResilientError> {
        let remote = self.remote(file)?;
        match self.live()?.write_at(&remote, offset, data) {
            Ok(()) => Ok(()),
            Err(cause) if is_connection_loss(&cause) => {
                self.reconnect()?;
                Err(ResilientError::WriteInDoubt { cause })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Close the file. If the connection is lost meanwhile, the server has
    /// closed it with the connection: that counts as closed.
    pub fn close(&mut self, file: FileRef) -> Result<(), ResilientError> {
        let remote = self.remote(file)?;
        let result = match self.live()?.close(remote) {
            Ok(()) => Ok(()),
            Err(e) if is_connection_loss(&e) => {
                // Mark it first, so the reconnection does not re-open it.
                self.files[file.0].file = Err(Lost::Closed);
                self.reconnect()
            }
            Err(e) => Err(e.into()),
        };
        self.files[file.0].file = Err(Lost::Closed);
        result
    }

    /// End the connection in order ([`Client::shutdown`]).
    pub fn shutdown(mut self) -> Result<(), ClientError> {
        match self.client.take() {
            Some(client) => client.shutdown(),
            None => Ok(()),
        }
    }

    fn live(&mut self) -> Result<&mut Client<C::Transport, C::Stream>, ResilientError> {
        if self.client.is_none() {
            self.reconnect()?;
        }
        self.client.as_mut().ok_or(ResilientError::NotOpen)
    }

    /// After `e`: reconnect if it was a loss and attempts remain, else fail.
    fn recover(&mut self, e: ClientError, failures: &mut u32) -> Result<(), ResilientError> {
        if !is_connection_loss(&e) {
            return Err(e.into());
        }
        *failures += 1;
        if *failures > self.policy.attempts {
            return Err(ResilientError::GaveUp {
                attempts: *failures,
                last: e,
            });
        }
        self.reconnect()
    }

    /// Replace the connection: discovery on the old side channel if it
    /// still answers, else on a new one; then authenticate and re-open every
    /// file that was open.
    fn reconnect(&mut self) -> Result<(), ResilientError> {
        let mut side = self.client.take().map(Client::into_side_channel);
        let mut last = None;
        for attempt in 0..self.policy.attempts {
            if attempt > 0 {
                std::thread::sleep(self.policy.backoff * attempt);
            }
            let options = self.options.clone();
            let connector = &mut self.connector;
            let connected = match side.take() {
                Some((pipe, key)) => {
                    Client::establish(pipe, key, options, |n| connector.transport(n))
                }
                None => connector.side_channel().and_then(|stream| {
                    Client::connect(stream, options, |n| connector.transport(n))
                }),
            };
            match connected.and_then(|client| self.reopen_all(client)) {
                Ok(client) => {
                    self.client = Some(client);
                    self.reconnects += 1;
                    return Ok(());
                }
                Err(e) if is_connection_loss(&e) => last = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        Err(ResilientError::GaveUp {
            attempts: self.policy.attempts,
            last: last.unwrap_or(ClientError::InvalidArgument(
                "no reconnection attempt allowed",
            )),
        })
    }

    /// Open and register every open file again on `client` (new resume
    /// keys). A file the server now refuses is marked lost; a connection
    /// loss fails the attempt.
    fn reopen_all(
        &mut self,
        mut client: Client<C::Transport, C::Stream>,
    ) -> Result<Client<C::Transport, C::Stream>, ClientError> {
        for tracked in &mut self.files {
            if tracked.file.is_err() {
                continue;
            }
            let Some(reopen) = tracked.reopen else {
                tracked.file = Err(Lost::Reopen(Some(Status::Closed)));
                continue;
            };
            match client.open(&tracked.path, reopen) {
                Ok(file) => tracked.file = Ok(file),
                Err(e) if is_connection_loss(&e) => {
                    let _ = client.shutdown();
                    return Err(e);
                }
                Err(e) => tracked.file = Err(Lost::Reopen(e.status())),
            }
        }
        Ok(client)
    }
}
