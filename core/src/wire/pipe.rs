//! Side-channel ("pipe") messages: claim 8 (resume key, pipe, negotiate
//! request/response with the minimal list of common providers), claim 13 (the
//! auth key travels in the negotiate response), claim 23 (the server request
//! resume key as authentication mechanism).
//!
//! The pipe is a byte stream (a TCP connection, an SMB named pipe), so every
//! message is framed by a 12-byte [`PipeHeader`]:
//!
//! ```text
//!  0                4        5        6                 8                                 12
//! +-----------------+--------+--------+-----------------+---------------------------------+
//! | magic "RDIO"    |version | opcode | reserved (0)    | length (u32 LE): payload bytes  |
//! +-----------------+--------+--------+-----------------+---------------------------------+
//! ```

use super::types::{AuthKey, ProviderList, ResumeKey, Status};
use super::{InsufficientSize, WireError};

/// Length of the pipe frame header.
pub const PIPE_HEADER_LEN: usize = 12;
/// The pipe magic.
pub const PIPE_MAGIC: [u8; 4] = *b"RDIO";

bitflags::bitflags! {
    /// How a file is opened on the side channel. Unknown bits are rejected;
    /// at least one of READ and WRITE is required.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct OpenFlags: u32 {
        /// Open for reading.
        const READ = 0x1;
        /// Open for writing.
        const WRITE = 0x2;
        /// Create the file if it does not exist (needs WRITE).
        const CREATE = 0x4;
        /// Truncate an existing file to zero length (needs WRITE).
        const TRUNCATE = 0x8;
    }
}

/// A validated pipe frame header: what a stream reader needs to know how many
/// payload bytes follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PipeHeader {
    /// Opcode byte (validated as known).
    pub opcode: u8,
    /// Payload bytes that follow (≤ [`MAX_PIPE_PAYLOAD`](super::MAX_PIPE_PAYLOAD)).
    pub length: u32,
}

/// Negotiate request (claim 8): the client's versions, limits and providers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NegotiateRequest {
    /// The server request resume key obtained earlier on this pipe (claim 23).
    pub server_key: ResumeKey,
    /// Lowest protocol version the client speaks.
    pub min_version: u16,
    /// Highest protocol version the client speaks.
    pub max_version: u16,
    /// Credits the client would like.
    pub credits_requested: u16,
    /// Largest message the client can receive.
    pub max_send_size: u32,
    /// Largest read or write the client will issue.
    pub max_io_size: u32,
    /// The client's providers, most preferred first.
    pub providers: ProviderList,
}

/// Negotiate response (claims 8, 13): outcome, chosen parameters, the
/// authentication key and the minimal list of common providers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NegotiateResponse<'a> {
    /// `Success`, `NoCommonProvider`, `VersionMismatch`, `UnknownResumeKey`, ...
    pub status: Status,
    /// The chosen version.
    pub version: u16,
    /// The client's initial credit level.
    pub credits: u16,
    /// Largest message either side may send.
    pub max_send_size: u32,
    /// Largest read or write.
    pub max_io_size: u32,
    /// Key the client presents in its auth request (claim 13).
    pub auth_key: AuthKey,
    /// Providers both sides share, in the server's preference order.
    pub providers: ProviderList,
    /// Transport address of the server's RDMA endpoint (opaque bytes,
    /// e.g. `127.0.0.1:7472`).
    pub endpoint: &'a [u8],
}

/// Every pipe message.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PipeMessage<'a> {
    /// 0x01: C→S ask for the server request resume key (claim 8).
    ResumeKeyRequest,
    /// 0x02: S→C the server request resume key.
    ResumeKeyResponse {
        /// The key.
        key: ResumeKey,
    },
    /// 0x03: C→S open a file (relative to the server's root).
    OpenRequest {
        /// Mode.
        flags: OpenFlags,
        /// Path bytes, `/`-separated, relative.
        path: &'a [u8],
    },
    /// 0x04: S→C open outcome and the file's resume key (claim 10).
    OpenResponse {
        /// Outcome.
        status: Status,
        /// The file's resume key (zero unless `Success`).
        key: ResumeKey,
        /// File size at open.
        size: u64,
    },
    /// 0x05: C→S negotiate request.
    NegotiateRequest(NegotiateRequest),
    /// 0x06: S→C negotiate response.
    NegotiateResponse(NegotiateResponse<'a>),
}

impl PipeHeader {
    /// Parse and validate the 12-byte frame header at the start of `buf`.
    pub fn parse(buf: &[u8]) -> Result<Self, WireError> {
        let _ = buf;
        todo!("wire codec")
    }
}

impl<'a> PipeMessage<'a> {
    /// Parse one framed message from the start of `buf`; returns it and the
    /// bytes consumed. [`WireError::Truncated`] means "read more".
    pub fn parse(buf: &'a [u8]) -> Result<(Self, usize), WireError> {
        let _ = buf;
        todo!("wire codec")
    }

    /// Bytes [`PipeMessage::emit`] writes, header included.
    pub fn encoded_len(&self) -> usize {
        todo!("wire codec")
    }

    /// Encode with its frame header into `buf`; returns the bytes written.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, InsufficientSize> {
        let _ = buf;
        todo!("wire codec")
    }
}
