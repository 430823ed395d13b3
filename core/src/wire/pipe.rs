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

use super::codec::{
    self, Counter, Sink, Unencodable, VERSION_1_BYTE, expect_empty, reserved_zero, take, take_exact,
};
use super::files::{FileMessage, FileOpcode};
use super::types::{AuthKey, Capabilities, ProviderList, ProviderName, ResumeKey, Status};
use super::{
    AUTH_NONCE_LEN, AUTH_SALT_LEN, InsufficientSize, MAX_CLIENT_NAME_LEN, MAX_ENDPOINT_LEN,
    MAX_PATH_LEN, MAX_PIPE_PAYLOAD, MAX_PROVIDERS, MIN_SEND_SIZE, PROVIDER_NAME_LEN, WireError,
};
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

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
        /// Replace the file's contents (needs WRITE). Unless IN_PLACE is
        /// set too, this is an *upload*: the server writes to a new file
        /// beside the named one and puts it in the name's place only when
        /// the client closes the handle; a connection that ends before
        /// that leaves the old file untouched.
        const TRUNCATE = 0x8;
        /// Write the named file itself (needs WRITE): with TRUNCATE it is
        /// emptied at open, and an interrupted writer leaves it partial.
        const IN_PLACE = 0x10;
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for OpenFlags {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "OpenFlags({=u32:#x})", self.bits())
    }
}

impl OpenFlags {
    /// Validate an open mode from the wire: no undefined bits
    /// ([`WireError::UnknownOpenFlags`]), READ or WRITE, and CREATE,
    /// TRUNCATE or IN_PLACE only with WRITE ([`WireError::InvalidField`]).
    pub fn from_wire(bits: u32) -> Result<Self, WireError> {
        let flags =
            Self::from_bits(bits).ok_or(WireError::UnknownOpenFlags(bits & !Self::all().bits()))?;
        let needs_write = Self::CREATE.union(Self::TRUNCATE).union(Self::IN_PLACE);
        if !flags.intersects(Self::READ.union(Self::WRITE))
            || (flags.intersects(needs_write) && !flags.contains(Self::WRITE))
        {
            return Err(WireError::InvalidField);
        }
        Ok(flags)
    }

    /// Whether an open with these flags is an upload: TRUNCATE with WRITE
    /// and without IN_PLACE, which the server writes to a temporary file
    /// and renames over the named one at the client's close.
    pub fn is_upload(self) -> bool {
        self.contains(Self::WRITE.union(Self::TRUNCATE)) && !self.contains(Self::IN_PLACE)
    }
}

bitflags::bitflags! {
    /// What an authenticated client may do, in an [`PipeMessage::AuthResult`].
    /// Unknown bits are rejected.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct AuthAccess: u32 {
        /// Opens for write, create or truncate are refused
        /// ([`Status::ReadOnly`]): the client, the export, or both are
        /// read-only.
        const READ_ONLY = 0x1;
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for AuthAccess {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "AuthAccess({=u32:#x})", self.bits())
    }
}

/// A client name is 1 to [`MAX_CLIENT_NAME_LEN`] bytes of ASCII letters,
/// digits and `._-@`: safe to print in a log line and to store in a file.
pub fn valid_client_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= MAX_CLIENT_NAME_LEN
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'))
}

/// A validated pipe frame header: what a stream reader needs to know how many
/// payload bytes follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PipeHeader {
    /// Opcode byte, not validated here: a reader that knows the frame's
    /// length can skip a frame whose opcode it does not know
    /// ([`PipeMessage::parse`] reports it as [`WireError::UnknownOpcode`]).
    pub opcode: u8,
    /// Payload bytes that follow (≤ [`MAX_PIPE_PAYLOAD`]).
    pub length: u32,
}

/// Negotiate request (claim 8): the client's versions, limits and providers.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
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
    /// The extensions the client speaks ("Extending rdio" in
    /// `docs/PROTOCOL.md`); bits it does not know a server ignores.
    pub capabilities: Capabilities,
}

/// Negotiate response (claims 8, 13): outcome, chosen parameters, the
/// authentication key and the minimal list of common providers.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
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
    /// The extensions in use on this session: the intersection of the
    /// client's and the server's (0 unless `Success`).
    pub capabilities: Capabilities,
    /// Transport address of the server's RDMA endpoint (opaque bytes,
    /// e.g. `127.0.0.1:7472`).
    pub endpoint: &'a [u8],
}

/// Every pipe message.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
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
    /// 0x07: C→S what the file at a path is now: lets a client notice that
    /// a file it is copying changed (size, modification time) or was
    /// replaced or removed since it opened it.
    StatRequest {
        /// Path bytes, `/`-separated, relative, as in `OpenRequest`.
        path: &'a [u8],
    },
    /// 0x08: S→C the file's current size, modification time and identity.
    StatResponse {
        /// Outcome (`NotFound` for a file that is gone).
        status: Status,
        /// Size in bytes (zero unless `Success`).
        size: u64,
        /// Last modification, nanoseconds since the Unix epoch (zero
        /// unless `Success`, or for a time before the epoch).
        modified_ns: u64,
        /// An opaque identity of the file the path names: another value
        /// means another file (replaced under the same name). Zero unless
        /// `Success`.
        file_id: u64,
    },
    /// 0x20: C→S a checksum of the whole file at a path, computed by the
    /// server over what it holds: lets a client verify a transfer end to
    /// end (what reached the server's disk, or what it read from it).
    ChecksumRequest {
        /// Which checksum ([`ChecksumAlgorithm::XXH3_128`]; others are
        /// answered `NotSupported`).
        algorithm: ChecksumAlgorithm,
        /// Path bytes, `/`-separated, relative, as in `OpenRequest`.
        path: &'a [u8],
    },
    /// 0x21: S→C the checksum of the file, and how many bytes it covers.
    ChecksumResponse {
        /// Outcome (`NotFound`, `PermissionDenied`, `NotSupported` for an
        /// algorithm the server does not compute, …).
        status: Status,
        /// The algorithm of the request, echoed.
        algorithm: ChecksumAlgorithm,
        /// Bytes hashed: the file's size when it was read (zero unless
        /// `Success`).
        length: u64,
        /// The digest, big-endian as its algorithm's canonical form, then
        /// zero bytes (all zero unless `Success`).
        digest: [u8; CHECKSUM_DIGEST_LEN],
    },
    /// 0x30: S→C the server refuses a frame it received (malformed, unknown
    /// opcode, or not allowed now). After any code but
    /// [`PipeErrorCode::UNKNOWN_OPCODE`] it closes the pipe.
    Error {
        /// Why.
        code: PipeErrorCode,
        /// The opcode byte of the refused frame (0 when its header was
        /// unreadable).
        opcode: u8,
    },
    /// 0x10: C→S start client authentication, naming the client (see
    /// [`valid_client_name`]). The first message on a pipe that requires
    /// authentication.
    AuthHello {
        /// The client's name in the server's clients file.
        name: &'a [u8],
    },
    /// 0x11: S→C the challenge: the named entry's salt and a fresh nonce.
    AuthChallenge {
        /// Salt of the client's entry (from which the client derives its
        /// key); an unknown name gets a salt all the same.
        salt: [u8; AUTH_SALT_LEN],
        /// Fresh random nonce, never reused.
        nonce: [u8; AUTH_NONCE_LEN],
    },
    /// 0x12: C→S the proof: HMAC-SHA256 under the client's key over the
    /// nonce and the channel binding (docs/PROTOCOL.md, "Client
    /// authentication").
    AuthProof {
        /// The MAC.
        proof: [u8; AUTH_NONCE_LEN],
    },
    /// 0x13: S→C the outcome: `Success` with the client's access, or
    /// `Unauthenticated` (then the server closes the pipe).
    AuthResult {
        /// Outcome.
        status: Status,
        /// What the client may do (empty unless `Success`).
        access: AuthAccess,
    },
    /// 0x22..=0x2F: a remote file operation (list, look up, remove, make a
    /// directory, rename, set attributes, hash a range) or its answer; see
    /// [`super::files`].
    File(FileMessage<'a>),
    /// 0x1F: S→C the server refuses this side channel and closes it:
    /// `Busy`, `NotAllowed`, `TlsRequired`, `Unauthenticated`. Sent in
    /// clear text when the refusal comes before the TLS handshake.
    Refused {
        /// Why.
        status: Status,
    },
}

/// Bytes of the digest field of a [`PipeMessage::ChecksumResponse`]: room
/// for a 256-bit digest; shorter digests are followed by zero bytes.
pub const CHECKSUM_DIGEST_LEN: usize = 32;

/// Which checksum a [`PipeMessage::ChecksumRequest`] asks for. A `u8` on
/// the wire; values a receiver does not know still parse (a server answers
/// them `NotSupported`), so algorithms can be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ChecksumAlgorithm(pub u8);

impl ChecksumAlgorithm {
    /// XXH3-128 (seed 0): 16 digest bytes, the 128-bit value big-endian.
    pub const XXH3_128: Self = Self(1);

    /// Digest bytes of a known algorithm (`None` for an unknown one).
    pub fn digest_len(self) -> Option<usize> {
        match self {
            Self::XXH3_128 => Some(16),
            _ => None,
        }
    }
}

/// Why a server refused a pipe frame ([`PipeMessage::Error`]). A `u32` on
/// the wire; codes a receiver does not know still parse (it reports the
/// number), so servers can add codes without breaking older clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PipeErrorCode(pub u32);

impl PipeErrorCode {
    /// The frame does not start with `RDIO`.
    pub const BAD_MAGIC: Self = Self(1);
    /// The frame's version byte is not one the server speaks.
    pub const UNSUPPORTED_VERSION: Self = Self(2);
    /// The opcode is not one the server knows; the frame was skipped and
    /// the pipe stays open.
    pub const UNKNOWN_OPCODE: Self = Self(3);
    /// A reserved field is not zero.
    pub const RESERVED_NOT_ZERO: Self = Self(4);
    /// A length disagrees with the message (including a complete frame
    /// shorter than its opcode's fixed part).
    pub const BAD_LENGTH: Self = Self(5);
    /// A count or length above its capacity (the frame length included).
    pub const TOO_MANY: Self = Self(6);
    /// A malformed provider name.
    pub const BAD_PROVIDER_NAME: Self = Self(7);
    /// A value the protocol forbids.
    pub const INVALID_FIELD: Self = Self(8);
    /// Undefined open-mode bits.
    pub const UNKNOWN_OPEN_FLAGS: Self = Self(9);
    /// An unknown status code.
    pub const UNKNOWN_STATUS: Self = Self(10);
    /// A well-formed message not allowed now: anything before the
    /// `ResumeKeyRequest`, a second `ResumeKeyRequest`, a message only a
    /// server sends.
    pub const UNEXPECTED_MESSAGE: Self = Self(11);
    /// The server cannot take another session (or mint a key) now.
    pub const RESOURCE_EXHAUSTED: Self = Self(12);

    /// The code for a parse error of a complete frame.
    pub fn from_wire_error(error: WireError) -> Self {
        match error {
            WireError::BadMagic => Self::BAD_MAGIC,
            WireError::UnsupportedVersion(_) => Self::UNSUPPORTED_VERSION,
            WireError::UnknownOpcode(_) | WireError::UnexpectedOpcode(_) => Self::UNKNOWN_OPCODE,
            WireError::ReservedNotZero => Self::RESERVED_NOT_ZERO,
            WireError::Truncated { .. } | WireError::TrailingBytes(_) | WireError::BadLength => {
                Self::BAD_LENGTH
            }
            WireError::TooMany => Self::TOO_MANY,
            WireError::BadProviderName => Self::BAD_PROVIDER_NAME,
            WireError::UnknownFlags(_) | WireError::InvalidField => Self::INVALID_FIELD,
            WireError::UnknownOpenFlags(_) => Self::UNKNOWN_OPEN_FLAGS,
            WireError::UnknownStatus(_) => Self::UNKNOWN_STATUS,
        }
    }

    /// A short description (`"unknown code"` for codes not listed here).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BAD_MAGIC => "bad magic",
            Self::UNSUPPORTED_VERSION => "unsupported version",
            Self::UNKNOWN_OPCODE => "unknown opcode",
            Self::RESERVED_NOT_ZERO => "reserved field not zero",
            Self::BAD_LENGTH => "bad length",
            Self::TOO_MANY => "count or length above capacity",
            Self::BAD_PROVIDER_NAME => "malformed provider name",
            Self::INVALID_FIELD => "invalid field",
            Self::UNKNOWN_OPEN_FLAGS => "unknown open flags",
            Self::UNKNOWN_STATUS => "unknown status",
            Self::UNEXPECTED_MESSAGE => "message not allowed now",
            Self::RESOURCE_EXHAUSTED => "server resources exhausted",
            _ => "unknown code",
        }
    }
}

impl core::fmt::Display for PipeErrorCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} ({})", self.as_str(), self.0)
    }
}

/// The pipe opcodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum PipeOpcode {
    ResumeKeyRequest = 0x01,
    ResumeKeyResponse = 0x02,
    OpenRequest = 0x03,
    OpenResponse = 0x04,
    NegotiateRequest = 0x05,
    NegotiateResponse = 0x06,
    StatRequest = 0x07,
    StatResponse = 0x08,
    ChecksumRequest = 0x20,
    ChecksumResponse = 0x21,
    Error = 0x30,
    AuthHello = 0x10,
    AuthChallenge = 0x11,
    AuthProof = 0x12,
    AuthResult = 0x13,
    Refused = 0x1F,
}

impl PipeOpcode {
    fn from_u8(byte: u8) -> Result<Self, WireError> {
        Ok(match byte {
            0x01 => Self::ResumeKeyRequest,
            0x02 => Self::ResumeKeyResponse,
            0x03 => Self::OpenRequest,
            0x04 => Self::OpenResponse,
            0x05 => Self::NegotiateRequest,
            0x06 => Self::NegotiateResponse,
            0x07 => Self::StatRequest,
            0x08 => Self::StatResponse,
            0x20 => Self::ChecksumRequest,
            0x21 => Self::ChecksumResponse,
            0x30 => Self::Error,
            0x10 => Self::AuthHello,
            0x11 => Self::AuthChallenge,
            0x12 => Self::AuthProof,
            0x13 => Self::AuthResult,
            0x1F => Self::Refused,
            other => return Err(WireError::UnknownOpcode(other)),
        })
    }
}

/// The frame header as it sits on the wire.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct PipeHeaderWire {
    magic: [u8; 4],
    version: u8,
    opcode: u8,
    reserved: U16,
    length: U32,
}

// Payload layouts, offsets relative to the payload (after the frame header).

/// OpenRequest, followed by `path_len` path bytes.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct OpenRequestWire {
    flags: U32,
    path_len: U16,
    reserved: U16,
}

/// OpenResponse.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct OpenResponseWire {
    status: U32,
    reserved: U32,
    key: ResumeKey,
    size: U64,
}

/// StatRequest, followed by `path_len` path bytes.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct StatRequestWire {
    path_len: U16,
    reserved: U16,
}

/// StatResponse.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct StatResponseWire {
    status: U32,
    reserved: U32,
    size: U64,
    modified_ns: U64,
    file_id: U64,
}

/// ChecksumRequest, followed by `path_len` path bytes.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct ChecksumRequestWire {
    algorithm: u8,
    reserved: u8,
    path_len: U16,
}

/// ChecksumResponse.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct ChecksumResponseWire {
    status: U32,
    algorithm: u8,
    reserved: [u8; 3],
    length: U64,
    digest: [u8; CHECKSUM_DIGEST_LEN],
}

/// NegotiateRequest, followed by `provider_count` 32-byte provider names.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct NegotiateRequestWire {
    server_key: ResumeKey,
    min_version: U16,
    max_version: U16,
    credits_requested: U16,
    provider_count: u8,
    reserved: u8,
    max_send_size: U32,
    max_io_size: U32,
    capabilities: U64,
}

/// NegotiateResponse, followed by `provider_count` 32-byte provider names,
/// then `endpoint_len` endpoint bytes.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct NegotiateResponseWire {
    status: U32,
    version: U16,
    credits: U16,
    max_send_size: U32,
    max_io_size: U32,
    auth_key: AuthKey,
    provider_count: u8,
    reserved: u8,
    endpoint_len: U16,
    capabilities: U64,
}

/// Error.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct ErrorWire {
    code: U32,
    opcode: u8,
    reserved: u8,
    reserved2: U16,
}

/// AuthHello, followed by `name_len` name bytes.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct AuthHelloWire {
    name_len: u8,
    reserved: [u8; 3],
}

/// AuthChallenge.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct AuthChallengeWire {
    salt: [u8; AUTH_SALT_LEN],
    nonce: [u8; AUTH_NONCE_LEN],
}

/// AuthResult.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct AuthResultWire {
    status: U32,
    access: U32,
}

/// Refused.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RefusedWire {
    status: U32,
    reserved: U32,
}

/// A provider name as it sits on the wire.
type ProviderNameWire = [u8; PROVIDER_NAME_LEN];

const _: () = {
    assert!(size_of::<PipeHeaderWire>() == PIPE_HEADER_LEN);
    assert!(size_of::<OpenRequestWire>() == 8);
    assert!(size_of::<OpenResponseWire>() == 32);
    assert!(size_of::<NegotiateRequestWire>() == 40);
    assert!(size_of::<NegotiateResponseWire>() == 44);
    assert!(size_of::<ErrorWire>() == 8);
    assert!(size_of::<StatRequestWire>() == 4);
    assert!(size_of::<StatResponseWire>() == 32);
    assert!(size_of::<ChecksumRequestWire>() == 4);
    assert!(size_of::<ChecksumResponseWire>() == 48);
    assert!(size_of::<AuthHelloWire>() == 4);
    assert!(size_of::<AuthChallengeWire>() == 48);
    assert!(size_of::<AuthResultWire>() == 8);
    assert!(size_of::<RefusedWire>() == 8);
};

/// A path from an open or stat request: exactly `declared` bytes, 1 to
/// [`MAX_PATH_LEN`], no NUL.
fn check_path(path: &[u8], declared: u16) -> Result<(), WireError> {
    let declared = usize::from(declared);
    if path.len() != declared {
        return Err(WireError::BadLength);
    }
    if declared > MAX_PATH_LEN {
        return Err(WireError::TooMany);
    }
    // A NUL would truncate the path in any C API the server's file system
    // sits behind.
    if path.is_empty() || path.contains(&0) {
        return Err(WireError::InvalidField);
    }
    Ok(())
}

/// Payload errors report whole-frame lengths: the payload starts here.
const BASE: usize = PIPE_HEADER_LEN;

/// Validate `names` (at most [`MAX_PROVIDERS`], checked by the caller).
fn parse_providers(names: &[ProviderNameWire]) -> Result<ProviderList, WireError> {
    let mut providers = ProviderList::new();
    for name in names {
        providers
            .push(ProviderName::from_wire(name)?)
            .map_err(|_| WireError::TooMany)?;
    }
    Ok(providers)
}

/// A provider count must fit [`MAX_PROVIDERS`].
fn provider_count(count: u8) -> Result<usize, WireError> {
    let count = usize::from(count);
    if count > MAX_PROVIDERS {
        Err(WireError::TooMany)
    } else {
        Ok(count)
    }
}

fn put_providers(sink: &mut dyn Sink, providers: &ProviderList) {
    for provider in providers {
        sink.put(&provider.to_wire());
    }
}

impl PipeHeader {
    /// Parse and validate the 12-byte frame header at the start of `buf`.
    ///
    /// Checked in this order: length, magic, version, reserved, and the
    /// declared payload length, which above [`MAX_PIPE_PAYLOAD`] is
    /// [`WireError::TooMany`]: a stream reader buffers a whole frame, so
    /// the bound is a capacity, and no valid message comes near it. The
    /// opcode is not checked here (see [`PipeHeader::opcode`]).
    pub fn parse(buf: &[u8]) -> Result<Self, WireError> {
        let (wire, _payload) = take::<PipeHeaderWire>(buf, 0)?;
        if wire.magic != PIPE_MAGIC {
            return Err(WireError::BadMagic);
        }
        if wire.version != VERSION_1_BYTE {
            return Err(WireError::UnsupportedVersion(u16::from(wire.version)));
        }
        let opcode = wire.opcode;
        reserved_zero(wire.reserved.get())?;
        let length = wire.length.get();
        if usize::try_from(length).map_or(true, |length| length > MAX_PIPE_PAYLOAD) {
            return Err(WireError::TooMany);
        }
        Ok(Self { opcode, length })
    }

    /// Bytes of the whole frame: header and payload. A stream reader waits
    /// for this many bytes before calling [`PipeMessage::parse`].
    pub fn frame_len(&self) -> usize {
        PIPE_HEADER_LEN.saturating_add(usize::try_from(self.length).unwrap_or(usize::MAX))
    }
}

impl<'a> PipeMessage<'a> {
    /// Parse one framed message from the start of `buf`; returns it and the
    /// bytes consumed. [`WireError::Truncated`] means "read more" and
    /// nothing else: a complete frame whose payload is shorter than its
    /// opcode's fixed part is [`WireError::BadLength`]. Bytes after the
    /// frame are left for the next call (the pipe is a stream).
    ///
    /// Checked in this order: the header ([`PipeHeader::parse`]), the
    /// whole frame present, the opcode, then the payload's own rules.
    pub fn parse(buf: &'a [u8]) -> Result<(Self, usize), WireError> {
        let header = PipeHeader::parse(buf)?;
        let frame_len = header.frame_len();
        let truncated = WireError::Truncated {
            required: frame_len,
            available: buf.len(),
        };
        let (frame, _next) = buf.split_at_checked(frame_len).ok_or(truncated)?;
        let (_header, payload) = frame.split_at_checked(PIPE_HEADER_LEN).ok_or(truncated)?;
        let message = match FileOpcode::from_u8(header.opcode) {
            Some(opcode) => FileMessage::parse(opcode, payload).map(Self::File),
            None => PipeOpcode::from_u8(header.opcode)
                .and_then(|opcode| Self::parse_payload(opcode, payload)),
        };
        let message = message.map_err(|e| match e {
            // The frame is all there: its length field is what is wrong.
            WireError::Truncated { .. } => WireError::BadLength,
            other => other,
        })?;
        Ok((message, frame_len))
    }

    fn parse_payload(opcode: PipeOpcode, payload: &'a [u8]) -> Result<Self, WireError> {
        Ok(match opcode {
            PipeOpcode::ResumeKeyRequest => {
                expect_empty(payload).map(|()| Self::ResumeKeyRequest)?
            }
            PipeOpcode::ResumeKeyResponse => Self::ResumeKeyResponse {
                key: *take_exact::<ResumeKey>(payload, BASE)?,
            },
            PipeOpcode::OpenRequest => {
                let (wire, path) = take::<OpenRequestWire>(payload, BASE)?;
                reserved_zero(wire.reserved.get())?;
                let flags = OpenFlags::from_wire(wire.flags.get())?;
                let path_len = usize::from(wire.path_len.get());
                if path.len() != path_len {
                    return Err(WireError::BadLength);
                }
                if path_len > MAX_PATH_LEN {
                    return Err(WireError::TooMany);
                }
                // A NUL would truncate the path in any C API the server's
                // file system sits behind.
                if path.is_empty() || path.contains(&0) {
                    return Err(WireError::InvalidField);
                }
                Self::OpenRequest { flags, path }
            }
            PipeOpcode::OpenResponse => {
                let wire = take_exact::<OpenResponseWire>(payload, BASE)?;
                reserved_zero(wire.reserved.get())?;
                Self::OpenResponse {
                    status: Status::from_u32(wire.status.get())?,
                    key: wire.key,
                    size: wire.size.get(),
                }
            }
            PipeOpcode::NegotiateRequest => {
                Self::NegotiateRequest(NegotiateRequest::parse(payload)?)
            }
            PipeOpcode::NegotiateResponse => {
                Self::NegotiateResponse(NegotiateResponse::parse(payload)?)
            }
            PipeOpcode::StatRequest => {
                let (wire, path) = take::<StatRequestWire>(payload, BASE)?;
                reserved_zero(wire.reserved.get())?;
                check_path(path, wire.path_len.get())?;
                Self::StatRequest { path }
            }
            PipeOpcode::StatResponse => {
                let wire = take_exact::<StatResponseWire>(payload, BASE)?;
                reserved_zero(wire.reserved.get())?;
                Self::StatResponse {
                    status: Status::from_u32(wire.status.get())?,
                    size: wire.size.get(),
                    modified_ns: wire.modified_ns.get(),
                    file_id: wire.file_id.get(),
                }
            }
            PipeOpcode::ChecksumRequest => {
                let (wire, path) = take::<ChecksumRequestWire>(payload, BASE)?;
                reserved_zero(wire.reserved)?;
                check_path(path, wire.path_len.get())?;
                Self::ChecksumRequest {
                    algorithm: ChecksumAlgorithm(wire.algorithm),
                    path,
                }
            }
            PipeOpcode::ChecksumResponse => {
                let wire = take_exact::<ChecksumResponseWire>(payload, BASE)?;
                reserved_zero(wire.reserved)?;
                Self::ChecksumResponse {
                    status: Status::from_u32(wire.status.get())?,
                    algorithm: ChecksumAlgorithm(wire.algorithm),
                    length: wire.length.get(),
                    digest: wire.digest,
                }
            }
            PipeOpcode::Error => {
                let wire = take_exact::<ErrorWire>(payload, BASE)?;
                reserved_zero(wire.reserved)?;
                reserved_zero(wire.reserved2.get())?;
                Self::Error {
                    code: PipeErrorCode(wire.code.get()),
                    opcode: wire.opcode,
                }
            }
            PipeOpcode::AuthHello => {
                let (wire, name) = take::<AuthHelloWire>(payload, BASE)?;
                reserved_zero(wire.reserved)?;
                if name.len() != usize::from(wire.name_len) {
                    return Err(WireError::BadLength);
                }
                if !valid_client_name(name) {
                    return Err(WireError::InvalidField);
                }
                Self::AuthHello { name }
            }
            PipeOpcode::AuthChallenge => {
                let wire = take_exact::<AuthChallengeWire>(payload, BASE)?;
                Self::AuthChallenge {
                    salt: wire.salt,
                    nonce: wire.nonce,
                }
            }
            PipeOpcode::AuthProof => Self::AuthProof {
                proof: *take_exact::<[u8; AUTH_NONCE_LEN]>(payload, BASE)?,
            },
            PipeOpcode::AuthResult => {
                let wire = take_exact::<AuthResultWire>(payload, BASE)?;
                let bits = wire.access.get();
                let access = AuthAccess::from_bits(bits).ok_or(WireError::InvalidField)?;
                Self::AuthResult {
                    status: Status::from_u32(wire.status.get())?,
                    access,
                }
            }
            PipeOpcode::Refused => {
                let wire = take_exact::<RefusedWire>(payload, BASE)?;
                reserved_zero(wire.reserved.get())?;
                Self::Refused {
                    status: Status::from_u32(wire.status.get())?,
                }
            }
        })
    }

    /// The opcode byte.
    pub fn opcode(&self) -> u8 {
        let opcode = match self {
            Self::ResumeKeyRequest => PipeOpcode::ResumeKeyRequest,
            Self::ResumeKeyResponse { .. } => PipeOpcode::ResumeKeyResponse,
            Self::OpenRequest { .. } => PipeOpcode::OpenRequest,
            Self::OpenResponse { .. } => PipeOpcode::OpenResponse,
            Self::NegotiateRequest(_) => PipeOpcode::NegotiateRequest,
            Self::NegotiateResponse(_) => PipeOpcode::NegotiateResponse,
            Self::StatRequest { .. } => PipeOpcode::StatRequest,
            Self::StatResponse { .. } => PipeOpcode::StatResponse,
            Self::ChecksumRequest { .. } => PipeOpcode::ChecksumRequest,
            Self::ChecksumResponse { .. } => PipeOpcode::ChecksumResponse,
            Self::Error { .. } => PipeOpcode::Error,
            Self::AuthHello { .. } => PipeOpcode::AuthHello,
            Self::AuthChallenge { .. } => PipeOpcode::AuthChallenge,
            Self::AuthProof { .. } => PipeOpcode::AuthProof,
            Self::AuthResult { .. } => PipeOpcode::AuthResult,
            Self::Refused { .. } => PipeOpcode::Refused,
            Self::File(message) => return message.opcode(),
        };
        opcode as u8
    }

    /// Bytes [`PipeMessage::emit`] writes, header included.
    ///
    /// `usize::MAX` for a message that cannot be encoded because a length
    /// does not fit its wire field (a path over `u16::MAX` bytes).
    pub fn encoded_len(&self) -> usize {
        codec::encoded_len(|sink| self.encode(sink))
    }

    /// Encode with its frame header into `buf`; returns the bytes written.
    ///
    /// Emitting does not check the protocol's semantic rules (an empty path
    /// is encoded as given, and rejected by [`PipeMessage::parse`]); it never
    /// panics, and leaves `buf` untouched when it is too small.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, InsufficientSize> {
        codec::emit(buf, |sink| self.encode(sink))
    }

    /// The one description of this message's bytes (see [`codec`]).
    fn encode(&self, sink: &mut dyn Sink) -> Result<(), Unencodable> {
        let mut payload = Counter::default();
        self.encode_payload(&mut payload)?;
        let header = PipeHeaderWire {
            magic: PIPE_MAGIC,
            version: VERSION_1_BYTE,
            opcode: self.opcode(),
            reserved: U16::ZERO,
            length: u32::try_from(payload.0)?.into(),
        };
        sink.put(header.as_bytes());
        self.encode_payload(sink)
    }

    fn encode_payload(&self, sink: &mut dyn Sink) -> Result<(), Unencodable> {
        match self {
            Self::ResumeKeyRequest => {}
            Self::ResumeKeyResponse { key } => sink.put(key.as_bytes()),
            Self::OpenRequest { flags, path } => {
                let wire = OpenRequestWire {
                    flags: flags.bits().into(),
                    path_len: u16::try_from(path.len())?.into(),
                    reserved: U16::ZERO,
                };
                sink.put(wire.as_bytes());
                sink.put(path);
            }
            Self::OpenResponse { status, key, size } => sink.put(
                OpenResponseWire {
                    status: status.as_u32().into(),
                    reserved: U32::ZERO,
                    key: *key,
                    size: (*size).into(),
                }
                .as_bytes(),
            ),
            Self::NegotiateRequest(request) => request.encode(sink)?,
            Self::NegotiateResponse(response) => response.encode(sink)?,
            Self::StatRequest { path } => {
                let wire = StatRequestWire {
                    path_len: u16::try_from(path.len())?.into(),
                    reserved: U16::ZERO,
                };
                sink.put(wire.as_bytes());
                sink.put(path);
            }
            Self::StatResponse {
                status,
                size,
                modified_ns,
                file_id,
            } => sink.put(
                StatResponseWire {
                    status: status.as_u32().into(),
                    reserved: U32::ZERO,
                    size: (*size).into(),
                    modified_ns: (*modified_ns).into(),
                    file_id: (*file_id).into(),
                }
                .as_bytes(),
            ),
            Self::ChecksumRequest { algorithm, path } => {
                let wire = ChecksumRequestWire {
                    algorithm: algorithm.0,
                    reserved: 0,
                    path_len: u16::try_from(path.len())?.into(),
                };
                sink.put(wire.as_bytes());
                sink.put(path);
            }
            Self::ChecksumResponse {
                status,
                algorithm,
                length,
                digest,
            } => sink.put(
                ChecksumResponseWire {
                    status: status.as_u32().into(),
                    algorithm: algorithm.0,
                    reserved: [0; 3],
                    length: (*length).into(),
                    digest: *digest,
                }
                .as_bytes(),
            ),
            Self::Error { code, opcode } => sink.put(
                ErrorWire {
                    code: code.0.into(),
                    opcode: *opcode,
                    reserved: 0,
                    reserved2: U16::ZERO,
                }
                .as_bytes(),
            ),
            Self::AuthHello { name } => {
                let wire = AuthHelloWire {
                    name_len: u8::try_from(name.len())?,
                    reserved: [0; 3],
                };
                sink.put(wire.as_bytes());
                sink.put(name);
            }
            Self::AuthChallenge { salt, nonce } => sink.put(
                AuthChallengeWire {
                    salt: *salt,
                    nonce: *nonce,
                }
                .as_bytes(),
            ),
            Self::AuthProof { proof } => sink.put(proof),
            Self::AuthResult { status, access } => sink.put(
                AuthResultWire {
                    status: status.as_u32().into(),
                    access: access.bits().into(),
                }
                .as_bytes(),
            ),
            Self::Refused { status } => sink.put(
                RefusedWire {
                    status: status.as_u32().into(),
                    reserved: U32::ZERO,
                }
                .as_bytes(),
            ),
            Self::File(message) => message.encode_payload(sink)?,
        }
        Ok(())
    }
}

impl NegotiateRequest {
    fn parse(payload: &[u8]) -> Result<Self, WireError> {
        let (wire, rest) = take::<NegotiateRequestWire>(payload, BASE)?;
        reserved_zero(wire.reserved)?;
        let count = provider_count(wire.provider_count)?;
        let names = <[ProviderNameWire]>::ref_from_bytes_with_elems(rest, count)
            .map_err(|_| WireError::BadLength)?;
        let (min_version, max_version) = (wire.min_version.get(), wire.max_version.get());
        let max_send_size = wire.max_send_size.get();
        if min_version > max_version || max_send_size < MIN_SEND_SIZE {
            return Err(WireError::InvalidField);
        }
        Ok(Self {
            server_key: wire.server_key,
            min_version,
            max_version,
            credits_requested: wire.credits_requested.get(),
            max_send_size,
            max_io_size: wire.max_io_size.get(),
            providers: parse_providers(names)?,
            capabilities: Capabilities(wire.capabilities.get()),
        })
    }

    fn encode(&self, sink: &mut dyn Sink) -> Result<(), Unencodable> {
        let wire = NegotiateRequestWire {
            server_key: self.server_key,
            min_version: self.min_version.into(),
            max_version: self.max_version.into(),
            credits_requested: self.credits_requested.into(),
            provider_count: u8::try_from(self.providers.len())?,
            reserved: 0,
            max_send_size: self.max_send_size.into(),
            max_io_size: self.max_io_size.into(),
            capabilities: self.capabilities.0.into(),
        };
        sink.put(wire.as_bytes());
        put_providers(sink, &self.providers);
        Ok(())
    }
}

impl<'a> NegotiateResponse<'a> {
    fn parse(payload: &'a [u8]) -> Result<Self, WireError> {
        let (wire, rest) = take::<NegotiateResponseWire>(payload, BASE)?;
        reserved_zero(wire.reserved)?;
        let count = provider_count(wire.provider_count)?;
        let endpoint_len = usize::from(wire.endpoint_len.get());
        if endpoint_len > MAX_ENDPOINT_LEN {
            return Err(WireError::TooMany);
        }
        let (names, endpoint) = <[ProviderNameWire]>::ref_from_prefix_with_elems(rest, count)
            .map_err(|_| WireError::BadLength)?;
        if endpoint.len() != endpoint_len {
            return Err(WireError::BadLength);
        }
        Ok(Self {
            status: Status::from_u32(wire.status.get())?,
            version: wire.version.get(),
            credits: wire.credits.get(),
            max_send_size: wire.max_send_size.get(),
            max_io_size: wire.max_io_size.get(),
            auth_key: wire.auth_key,
            providers: parse_providers(names)?,
            capabilities: Capabilities(wire.capabilities.get()),
            endpoint,
        })
    }

    fn encode(&self, sink: &mut dyn Sink) -> Result<(), Unencodable> {
        let wire = NegotiateResponseWire {
            status: self.status.as_u32().into(),
            version: self.version.into(),
            credits: self.credits.into(),
            max_send_size: self.max_send_size.into(),
            max_io_size: self.max_io_size.into(),
            auth_key: self.auth_key,
            provider_count: u8::try_from(self.providers.len())?,
            reserved: 0,
            endpoint_len: u16::try_from(self.endpoint.len())?.into(),
            capabilities: self.capabilities.0.into(),
        };
        sink.put(wire.as_bytes());
        put_providers(sink, &self.providers);
        sink.put(self.endpoint);
        Ok(())
    }
}
