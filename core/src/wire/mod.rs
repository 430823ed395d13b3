//! The wire format: every message rdio sends, on the side channel ("pipe") and
//! on the RDMA channel, plus the status block the server RDMA-writes into
//! client memory.
//!
//! **Byte order: little-endian everywhere**, chosen once: every RDMA host rdio
//! targets (x86-64, AArch64, POWER LE) is little-endian, so encoding is a plain
//! store, as in SMB Direct (MS-SMBD §2.2).
//!
//! Each message has a zerocopy wire struct (`#[repr(C)]`, unaligned, fixed
//! layout) and a validated representation (`Repr`): parsing checks lengths,
//! opcodes, flags, versions and reserved fields and never panics; encoders
//! write into a caller buffer and return [`InsufficientSize`] leaving it
//! untouched when it is too small (the rustls `unbuffered` contract).
//!
//! Modules, one per concern:
//! * [`pipe`]: side-channel messages (resume keys, open, negotiate) — claims 8, 13, 23;
//! * [`files`]: remote file operations on the side channel (list, look up,
//!   remove, make a directory, rename, set attributes, hash a range);
//! * [`header`]: the common RDMA-channel header with flags and credits — claims 17, 19, 22;
//! * [`message`]: RDMA-channel messages, `Message`/`Body` and their one
//!   parse/emit dispatch, with one module per family: `auth` (claims 12–14),
//!   `credit` (claims 1, 6, 7, 23), `io` (claims 1, 15–17), `control`
//!   (registration, cancel, close, terminate; claims 10, 11, 15);
//! * [`status`]: the status block written by RDMA — claim 20.

mod codec;
pub mod files;
pub mod header;
pub mod message;
pub mod pipe;
pub mod status;
mod types;

pub use files::{
    Attributes, DirEntries, DirEntriesWriter, DirEntry, EntryKind, FileMessage, MakeDirFlags,
    RemoveFlags, RenameFlags, SetAttrFlags,
};
pub use header::{Flags, Header, Opcode};
pub use message::{
    BatchRead, Body, MAX_READ_BATCH_LEN, Message, ReadBatchRequest, ReadRequest, ReadSegment,
    ReadVRequest, WriteRequest, WriteSegment, WriteVRequest,
};
pub use pipe::{
    AuthAccess, CHECKSUM_DIGEST_LEN, ChecksumAlgorithm, NegotiateRequest, NegotiateResponse,
    OpenFlags, PipeErrorCode, PipeHeader, PipeMessage,
};
pub use status::StatusBlock;
pub use types::{
    AuthKey, BufferDescriptor, Capabilities, ProviderList, ProviderName, ResumeKey, Status,
};

use core::fmt;

/// Protocol version carried in every RDMA header and negotiated on the pipe.
pub const VERSION_1: u16 = 1;
/// Length of a 128-bit key (resume keys, authentication keys).
pub const KEY_LEN: usize = 16;
/// Most providers a negotiate message may list.
pub const MAX_PROVIDERS: usize = 8;
/// Fixed width of a provider name on the wire (NUL padded).
pub const PROVIDER_NAME_LEN: usize = 32;
/// Most segments in one vectored read or write.
pub const MAX_SEGMENTS: usize = 16;
/// Most reads in one `ReadBatch` (the read-batch extension,
/// [`Capabilities::READ_BATCH`]).
pub const MAX_BATCH: usize = 16;
/// Longest path in an open request, in bytes.
pub const MAX_PATH_LEN: usize = 1024;
/// Longest transport endpoint address in a negotiate response, in bytes.
pub const MAX_ENDPOINT_LEN: usize = 128;
/// Longest client name in an authentication hello, in bytes.
pub const MAX_CLIENT_NAME_LEN: usize = 64;
/// Length of an authentication challenge's nonce and of a proof (HMAC-SHA256).
pub const AUTH_NONCE_LEN: usize = 32;
/// Length of a client entry's salt in an authentication challenge.
pub const AUTH_SALT_LEN: usize = 16;
/// Largest pipe message payload accepted (a bound for stream reassembly).
pub const MAX_PIPE_PAYLOAD: usize = 2048;
/// Smallest send size a peer may negotiate: large enough for the biggest
/// fixed-size message (a full vectored read) plus its header.
pub const MIN_SEND_SIZE: u32 = 512;

/// Every way a received message can be malformed. Parsing never panics: any
/// input yields a message or one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum WireError {
    /// Fewer bytes than the message's fixed part or its declared length need.
    Truncated {
        /// Bytes needed to parse further.
        required: usize,
        /// Bytes available.
        available: usize,
    },
    /// Bytes left over after the declared length (a receive buffer holds
    /// exactly one message).
    TrailingBytes(usize),
    /// The pipe magic is not `RDIO`.
    BadMagic,
    /// A protocol version this implementation does not speak.
    UnsupportedVersion(u16),
    /// An opcode this implementation does not know.
    UnknownOpcode(u8),
    /// An opcode that is not valid in this direction or channel.
    UnexpectedOpcode(u8),
    /// Flag bits that are not defined, or not allowed on this opcode (the
    /// offending bits).
    UnknownFlags(u16),
    /// Open-mode bits ([`OpenFlags`]) that are not defined (the offending
    /// bits).
    UnknownOpenFlags(u32),
    /// A status code this implementation does not know.
    UnknownStatus(u32),
    /// A reserved field was not zero.
    ReservedNotZero,
    /// A length field disagrees with the message (e.g. segment count vs size).
    BadLength,
    /// A count exceeds its fixed capacity (providers, segments, path, endpoint).
    TooMany,
    /// A provider name is empty, holds a byte outside `0x21..=0x7E`, or is
    /// not NUL padded.
    BadProviderName,
    /// A field has a value the protocol forbids (zero length, empty path, ...).
    InvalidField,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated {
                required,
                available,
            } => {
                write!(
                    f,
                    "truncated message: need {required} bytes, have {available}"
                )
            }
            Self::TrailingBytes(n) => write!(f, "{n} trailing bytes after message"),
            Self::BadMagic => f.write_str("bad pipe magic"),
            Self::UnsupportedVersion(v) => write!(f, "unsupported protocol version {v}"),
            Self::UnknownOpcode(op) => write!(f, "unknown opcode {op:#04x}"),
            Self::UnexpectedOpcode(op) => write!(f, "opcode {op:#04x} not valid here"),
            Self::UnknownFlags(bits) => write!(f, "unknown or disallowed flags {bits:#06x}"),
            Self::UnknownOpenFlags(bits) => write!(f, "unknown open flags {bits:#010x}"),
            Self::UnknownStatus(s) => write!(f, "unknown status code {s}"),
            Self::ReservedNotZero => f.write_str("reserved field not zero"),
            Self::BadLength => f.write_str("inconsistent length field"),
            Self::TooMany => f.write_str("count exceeds capacity"),
            Self::BadProviderName => f.write_str("malformed provider name"),
            Self::InvalidField => f.write_str("invalid field value"),
        }
    }
}

impl core::error::Error for WireError {}

/// The caller's buffer is too small; nothing was written to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct InsufficientSize {
    /// Bytes the encoding needs.
    pub required: usize,
}

impl fmt::Display for InsufficientSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "buffer too small: {} bytes required", self.required)
    }
}

impl core::error::Error for InsufficientSize {}
