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
use super::types::{AuthKey, ProviderList, ProviderName, ResumeKey, Status};
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
        /// Truncate an existing file to zero length (needs WRITE).
        const TRUNCATE = 0x8;
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
    /// ([`WireError::UnknownOpenFlags`]), READ or WRITE, and CREATE or
    /// TRUNCATE only with WRITE ([`WireError::InvalidField`]).
    pub fn from_wire(bits: u32) -> Result<Self, WireError> {
        let flags =
            Self::from_bits(bits).ok_or(WireError::UnknownOpenFlags(bits & !Self::all().bits()))?;
        let needs_write = Self::CREATE.union(Self::TRUNCATE);
        if !flags.intersects(Self::READ.union(Self::WRITE))
            || (flags.intersects(needs_write) && !flags.contains(Self::WRITE))
        {
            return Err(WireError::InvalidField);
        }
        Ok(flags)
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
    /// Opcode byte (validated as known).
    pub opcode: u8,
    /// Payload bytes that follow (≤ [`MAX_PIPE_PAYLOAD`](super::MAX_PIPE_PAYLOAD)).
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
    /// 0x1F: S→C the server refuses this side channel and closes it:
    /// `Busy`, `NotAllowed`, `TlsRequired`, `Unauthenticated`. Sent in
    /// clear text when the refusal comes before the TLS handshake.
    Refused {
        /// Why.
        status: Status,
    },
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
    assert!(size_of::<NegotiateRequestWire>() == 32);
    assert!(size_of::<NegotiateResponseWire>() == 36);
    assert!(size_of::<AuthHelloWire>() == 4);
    assert!(size_of::<AuthChallengeWire>() == 48);
    assert!(size_of::<AuthResultWire>() == 8);
    assert!(size_of::<RefusedWire>() == 8);
};

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
    /// Checked in this order: length, magic, version, opcode, reserved, and
    /// the declared payload length, which above [`MAX_PIPE_PAYLOAD`] is
    /// [`WireError::TooMany`]: a stream reader buffers a whole frame, so
    /// the bound is a capacity, and no valid message comes near it.
    pub fn parse(buf: &[u8]) -> Result<Self, WireError> {
        let (wire, _payload) = take::<PipeHeaderWire>(buf, 0)?;
        if wire.magic != PIPE_MAGIC {
            return Err(WireError::BadMagic);
        }
        if wire.version != VERSION_1_BYTE {
            return Err(WireError::UnsupportedVersion(u16::from(wire.version)));
        }
        let opcode = PipeOpcode::from_u8(wire.opcode)? as u8;
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
    /// bytes consumed. [`WireError::Truncated`] means "read more"; bytes
    /// after the frame are left for the next call (the pipe is a stream).
    pub fn parse(buf: &'a [u8]) -> Result<(Self, usize), WireError> {
        let header = PipeHeader::parse(buf)?;
        let frame_len = header.frame_len();
        let truncated = WireError::Truncated {
            required: frame_len,
            available: buf.len(),
        };
        let (frame, _next) = buf.split_at_checked(frame_len).ok_or(truncated)?;
        let (_header, payload) = frame.split_at_checked(PIPE_HEADER_LEN).ok_or(truncated)?;
        let opcode = PipeOpcode::from_u8(header.opcode)?;
        Ok((Self::parse_payload(opcode, payload)?, frame_len))
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

    fn opcode(&self) -> PipeOpcode {
        match self {
            Self::ResumeKeyRequest => PipeOpcode::ResumeKeyRequest,
            Self::ResumeKeyResponse { .. } => PipeOpcode::ResumeKeyResponse,
            Self::OpenRequest { .. } => PipeOpcode::OpenRequest,
            Self::OpenResponse { .. } => PipeOpcode::OpenResponse,
            Self::NegotiateRequest(_) => PipeOpcode::NegotiateRequest,
            Self::NegotiateResponse(_) => PipeOpcode::NegotiateResponse,
            Self::AuthHello { .. } => PipeOpcode::AuthHello,
            Self::AuthChallenge { .. } => PipeOpcode::AuthChallenge,
            Self::AuthProof { .. } => PipeOpcode::AuthProof,
            Self::AuthResult { .. } => PipeOpcode::AuthResult,
            Self::Refused { .. } => PipeOpcode::Refused,
        }
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
            opcode: self.opcode() as u8,
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
        };
        sink.put(wire.as_bytes());
        put_providers(sink, &self.providers);
        sink.put(self.endpoint);
        Ok(())
    }
}
