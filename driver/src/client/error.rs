//! Everything a client call can fail with.

use crate::pipe::PipeError;
use rdio_core::client::DiscoveryError;
use rdio_core::error::{ApiError, Violation};
use rdio_core::wire::Status;
use rdio_transport::{TransportError, WcError};
use std::fmt;
use std::io;

/// Which client operation the server refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Opening a file on the side channel.
    Open,
    /// Registering an opened file on the RDMA channel.
    Register,
    /// A read or vectored read.
    Read,
    /// A write or vectored write.
    Write,
    /// Closing a registered file.
    Close,
    /// Asking for an interrupt response.
    Interrupt,
    /// Asking on the side channel what a file is now.
    Stat,
    /// Listing a directory.
    List,
    /// Looking up a path's attributes.
    Info,
    /// Removing a file or directory.
    Remove,
    /// Making a directory.
    MakeDir,
    /// Renaming.
    Rename,
    /// Setting a file's mode or modification time.
    SetAttributes,
    /// Hashing a range of a file.
    Hash,
    /// Asking on the side channel for a file's checksum.
    Checksum,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Open => "open",
            Self::Register => "register",
            Self::Read => "read",
            Self::Write => "write",
            Self::Close => "close",
            Self::Interrupt => "interrupt request",
            Self::Stat => "stat",
            Self::List => "list",
            Self::Info => "stat",
            Self::Remove => "remove",
            Self::MakeDir => "mkdir",
            Self::Rename => "rename",
            Self::SetAttributes => "set attributes",
            Self::Hash => "hash",
            Self::Checksum => "checksum",
        })
    }
}

/// Why a client call failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientError {
    /// The side channel failed.
    Pipe(PipeError),
    /// Discovery found no way to use RDMA with this server (claim 8).
    /// Boxed: it carries both provider lists.
    Discovery(Box<DiscoveryError>),
    /// The negotiated provider is not the transport this client was given.
    ProviderMismatch {
        /// What the server chose.
        negotiated: String,
        /// What the transport is.
        transport: String,
    },
    /// A transport call failed.
    Transport(TransportError),
    /// A work request failed: the RDMA connection is gone.
    Lost(WcError),
    /// The core refused the request locally (nothing was sent).
    Api(ApiError),
    /// The server answered with an error status.
    Remote {
        /// What was asked.
        operation: Operation,
        /// What the server said.
        status: Status,
    },
    /// The connection ended (claim 14's session is over).
    Terminated(Violation),
    /// The request does not fit the client's buffers or the negotiated
    /// limits.
    TooLarge {
        /// Bytes asked for.
        len: u64,
        /// Most bytes allowed.
        max: u64,
    },
    /// The server wrote fewer bytes than asked without an error status.
    ShortWrite {
        /// Bytes asked for.
        expected: u64,
        /// Bytes written.
        written: u64,
    },
    /// A caller mistake, described.
    InvalidArgument(&'static str),
    /// The negotiated `max_send_size` is more than the transport can carry
    /// in one message (the client's `ClientConfig::max_send_size` is too
    /// large for it): nothing was sent on the RDMA connection.
    SendSizeTooLarge {
        /// The negotiated largest message.
        negotiated: u32,
        /// The transport's largest message.
        transport: usize,
    },
    /// The server refused this client's side channel (`Busy`,
    /// `Unauthenticated`, `TlsRequired`, `NotAllowed`, ...) and closed it.
    Refused(Status),
    /// The server ended the side channel or the RDMA connection because
    /// this client held no file and sent nothing for longer than its idle
    /// timeout ([`Status::IdleTimeout`]).
    IdleTimeout {
        /// How long this client had been idle, by its own clock.
        idle: std::time::Duration,
    },
    /// An internal invariant of the client broke (a bug in rdio, never the
    /// peer's doing): the connection was ended rather than left to stall.
    Internal(&'static str),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pipe(e) => write!(f, "{e}"),
            Self::Discovery(e) => write!(f, "RDMA not usable: {e}"),
            Self::ProviderMismatch {
                negotiated,
                transport,
            } => {
                write!(
                    f,
                    "server chose provider {negotiated}, but the transport is {transport}"
                )
            }
            Self::Transport(e) => write!(f, "transport: {e}"),
            Self::Lost(e) => write!(f, "RDMA connection lost: {e}"),
            Self::Api(e) => write!(f, "request refused: {e}"),
            Self::Remote { operation, status } => write!(f, "{operation}: {status}"),
            Self::Terminated(reason) => write!(f, "connection ended: {reason}"),
            Self::TooLarge { len, max } => {
                write!(f, "request of {len} bytes exceeds the limit of {max} bytes")
            }
            Self::ShortWrite { expected, written } => {
                write!(f, "short write: {written} of {expected} bytes")
            }
            Self::InvalidArgument(what) => write!(f, "invalid argument: {what}"),
            Self::SendSizeTooLarge {
                negotiated,
                transport,
            } => write!(
                f,
                "negotiated max send size {negotiated} is more than the transport's largest \
                 message ({transport} bytes): lower --max-send-size"
            ),
            Self::Refused(Status::Unauthenticated) => f.write_str(
                "the server refused the connection: not authenticated (no credential it \
                 accepts: ask the server's owner for one, see `rdio client add`)",
            ),
            Self::Refused(Status::TlsRequired) => f.write_str(
                "the server refused the connection: it requires TLS on the side channel, \
                 and this client runs with --insecure (drop --insecure)",
            ),
            Self::Refused(status) => write!(f, "the server refused the connection: {status}"),
            Self::IdleTimeout { idle } => {
                write!(f, "closed by the server: idle for {} s", idle.as_secs())
            }
            Self::Internal(what) => write!(
                f,
                "internal error, the connection was ended: {what} (a bug in rdio; please report it)"
            ),
        }
    }
}

impl std::error::Error for ClientError {}

impl ClientError {
    /// The server's status, when the server refused.
    pub fn status(&self) -> Option<Status> {
        match self {
            Self::Remote { status, .. } | Self::Refused(status) => Some(*status),
            Self::IdleTimeout { .. } => Some(Status::IdleTimeout),
            _ => None,
        }
    }
}

impl From<PipeError> for ClientError {
    fn from(e: PipeError) -> Self {
        Self::Pipe(e)
    }
}

impl From<TransportError> for ClientError {
    fn from(e: TransportError) -> Self {
        Self::Transport(e)
    }
}

impl From<ApiError> for ClientError {
    fn from(e: ApiError) -> Self {
        Self::Api(e)
    }
}

impl From<ClientError> for io::Error {
    fn from(e: ClientError) -> Self {
        let kind = match &e {
            ClientError::Remote { status, .. } => match status {
                Status::NotFound => io::ErrorKind::NotFound,
                Status::AccessDenied | Status::PermissionDenied | Status::ReadOnly => {
                    io::ErrorKind::PermissionDenied
                }
                Status::InvalidParameter | Status::TooLarge => io::ErrorKind::InvalidInput,
                Status::NoSpace => io::ErrorKind::StorageFull,
                Status::QuotaExceeded => io::ErrorKind::QuotaExceeded,
                Status::ReadOnlyFileSystem => io::ErrorKind::ReadOnlyFilesystem,
                Status::IsADirectory => io::ErrorKind::IsADirectory,
                Status::NotADirectory => io::ErrorKind::NotADirectory,
                Status::FileTooLarge => io::ErrorKind::FileTooLarge,
                _ => io::ErrorKind::Other,
            },
            ClientError::TooLarge { .. } | ClientError::InvalidArgument(_) => {
                io::ErrorKind::InvalidInput
            }
            ClientError::Lost(_) | ClientError::Terminated(_) | ClientError::IdleTimeout { .. } => {
                io::ErrorKind::ConnectionAborted
            }
            ClientError::Refused(Status::Unauthenticated) => io::ErrorKind::PermissionDenied,
            ClientError::Refused(_) => io::ErrorKind::ConnectionRefused,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}
