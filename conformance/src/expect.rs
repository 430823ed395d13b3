//! What PROTOCOL.md says, as data: wire constants, the codes of every
//! table, and decoders that read a reply at the offsets the spec gives.
//! Nothing here comes from rdio's server code.

use std::fmt;

/// `RDIO`: the pipe magic and the status block's `valid` word.
pub const MAGIC: [u8; 4] = *b"RDIO";
/// Pipe frame header length.
pub const PIPE_HEADER: usize = 12;
/// RDMA header length.
pub const RDMA_HEADER: usize = 16;
/// Status block length.
pub const STATUS_BLOCK: usize = 24;
/// Largest pipe payload.
pub const MAX_PIPE_PAYLOAD: u32 = 2048;

/// Pipe opcodes (§Pipe frame header).
pub mod pipe_op {
    /// ResumeKeyRequest.
    pub const RESUME_KEY_REQUEST: u8 = 0x01;
    /// ResumeKeyResponse.
    pub const RESUME_KEY_RESPONSE: u8 = 0x02;
    /// OpenRequest.
    pub const OPEN_REQUEST: u8 = 0x03;
    /// OpenResponse.
    pub const OPEN_RESPONSE: u8 = 0x04;
    /// NegotiateRequest.
    pub const NEGOTIATE_REQUEST: u8 = 0x05;
    /// NegotiateResponse.
    pub const NEGOTIATE_RESPONSE: u8 = 0x06;
    /// ChecksumRequest.
    pub const CHECKSUM_REQUEST: u8 = 0x20;
    /// ChecksumResponse.
    pub const CHECKSUM_RESPONSE: u8 = 0x21;
    /// Error.
    pub const ERROR: u8 = 0x30;
}

/// Remote file operation opcodes (§Remote file operations).
pub mod file_op {
    /// ListRequest.
    pub const LIST_REQUEST: u8 = 0x22;
    /// ListResponse.
    pub const LIST_RESPONSE: u8 = 0x23;
    /// InfoRequest.
    pub const INFO_REQUEST: u8 = 0x24;
    /// InfoResponse.
    pub const INFO_RESPONSE: u8 = 0x25;
    /// RemoveRequest.
    pub const REMOVE_REQUEST: u8 = 0x26;
    /// MakeDirRequest.
    pub const MAKE_DIR_REQUEST: u8 = 0x27;
    /// OpResult.
    pub const OP_RESULT: u8 = 0x2F;
}

/// Pipe `Error` codes (§Error).
pub mod pipe_error {
    /// Not `RDIO`.
    pub const BAD_MAGIC: u32 = 1;
    /// Version other than 1.
    pub const UNSUPPORTED_VERSION: u32 = 2;
    /// Unknown opcode (pipe stays open).
    pub const UNKNOWN_OPCODE: u32 = 3;
    /// Reserved field not zero.
    pub const RESERVED_NOT_ZERO: u32 = 4;
    /// Length disagrees.
    pub const BAD_LENGTH: u32 = 5;
    /// Above a capacity.
    pub const TOO_MANY: u32 = 6;
    /// Malformed provider name.
    pub const BAD_PROVIDER_NAME: u32 = 7;
    /// Forbidden value.
    pub const INVALID_FIELD: u32 = 8;
    /// Undefined open flags.
    pub const UNKNOWN_OPEN_FLAGS: u32 = 9;
    /// Not allowed now.
    pub const UNEXPECTED_MESSAGE: u32 = 11;
}

/// RDMA opcodes (§Wire format).
pub mod op {
    /// AuthRequest.
    pub const AUTH_REQUEST: u8 = 0x01;
    /// AuthResponse.
    pub const AUTH_RESPONSE: u8 = 0x02;
    /// StatusResponse.
    pub const STATUS_RESPONSE: u8 = 0x03;
    /// CreditRequest.
    pub const CREDIT_REQUEST: u8 = 0x10;
    /// CreditResponse.
    pub const CREDIT_RESPONSE: u8 = 0x13;
    /// RegisterFileCompletion.
    pub const REGISTER_FILE_COMPLETION: u8 = 0x28;
    /// Completion.
    pub const COMPLETION: u8 = 0x29;
    /// InterruptResponse.
    pub const INTERRUPT_RESPONSE: u8 = 0x31;
    /// KeepaliveResponse.
    pub const KEEPALIVE_RESPONSE: u8 = 0x41;
    /// Terminate.
    pub const TERMINATE: u8 = 0x7f;
}

/// A status code of §Status codes, printed with its name.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Code(pub u32);

impl Code {
    /// Success.
    pub const SUCCESS: Self = Self(0);
    /// EndOfFile.
    pub const END_OF_FILE: Self = Self(1);
    /// NotFound.
    pub const NOT_FOUND: Self = Self(2);
    /// AccessDenied.
    pub const ACCESS_DENIED: Self = Self(3);
    /// InvalidHandle.
    pub const INVALID_HANDLE: Self = Self(4);
    /// InvalidParameter.
    pub const INVALID_PARAMETER: Self = Self(5);
    /// Cancelled.
    pub const CANCELLED: Self = Self(6);
    /// NoCommonProvider.
    pub const NO_COMMON_PROVIDER: Self = Self(9);
    /// VersionMismatch.
    pub const VERSION_MISMATCH: Self = Self(10);
    /// UnknownResumeKey.
    pub const UNKNOWN_RESUME_KEY: Self = Self(11);
    /// AuthFailed.
    pub const AUTH_FAILED: Self = Self(12);
    /// NotSupported.
    pub const NOT_SUPPORTED: Self = Self(14);
    /// ProtocolError.
    pub const PROTOCOL_ERROR: Self = Self(15);
    /// UnknownOpcode.
    pub const UNKNOWN_OPCODE: Self = Self(36);

    const NAMES: &[(u32, &str)] = &[
        (0, "Success"),
        (1, "EndOfFile"),
        (2, "NotFound"),
        (3, "AccessDenied"),
        (4, "InvalidHandle"),
        (5, "InvalidParameter"),
        (6, "Cancelled"),
        (7, "TooLarge"),
        (8, "IoError"),
        (9, "NoCommonProvider"),
        (10, "VersionMismatch"),
        (11, "UnknownResumeKey"),
        (12, "AuthFailed"),
        (13, "ResourceExhausted"),
        (14, "NotSupported"),
        (15, "ProtocolError"),
        (16, "Closed"),
        (17, "TimedOut"),
        (18, "Shutdown"),
        (36, "UnknownOpcode"),
    ];
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Self::NAMES.iter().find(|(code, _)| *code == self.0) {
            Some((_, name)) => f.write_str(name),
            None => write!(f, "status {}", self.0),
        }
    }
}

/// Little-endian readers that never panic: a short buffer reads as 0 (a
/// reply that short fails its length check first).
pub fn u16_at(bytes: &[u8], at: usize) -> u16 {
    let mut b = [0u8; 2];
    if let Some(src) = bytes.get(at..at + 2) {
        b.copy_from_slice(src);
    }
    u16::from_le_bytes(b)
}

/// See [`u16_at`].
pub fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    if let Some(src) = bytes.get(at..at + 4) {
        b.copy_from_slice(src);
    }
    u32::from_le_bytes(b)
}

/// See [`u16_at`].
pub fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(src) = bytes.get(at..at + 8) {
        b.copy_from_slice(src);
    }
    u64::from_le_bytes(b)
}

/// An RDMA-channel message as the spec lays it out (§RDMA header).
#[derive(Clone, PartialEq, Eq)]
pub struct RdmaReply {
    /// Opcode byte.
    pub opcode: u8,
    /// Flags.
    pub flags: u16,
    /// Header credits.
    pub credits: u16,
    /// Request id.
    pub request_id: u32,
    /// Payload (after the 16-byte header).
    pub payload: Vec<u8>,
    /// Whether `length` matched the bytes received and the version was 1.
    pub well_formed: bool,
    /// The bytes as received.
    pub raw: Vec<u8>,
}

impl RdmaReply {
    /// Decode a received message.
    pub fn decode(bytes: &[u8]) -> Self {
        let length = u32_at(bytes, 12) as usize;
        let payload = bytes.get(RDMA_HEADER..).unwrap_or(&[]).to_vec();
        Self {
            opcode: bytes.get(1).copied().unwrap_or(0),
            flags: u16_at(bytes, 2),
            credits: u16_at(bytes, 4),
            request_id: u32_at(bytes, 8),
            well_formed: bytes.len() >= RDMA_HEADER
                && bytes.first() == Some(&1)
                && payload.len() == length
                && u16_at(bytes, 6) == 0,
            payload,
            raw: bytes.to_vec(),
        }
    }

    /// The `u32` status at payload offset 0 (AuthResponse, StatusResponse,
    /// RegisterFileCompletion, Completion, Terminate).
    pub fn status(&self) -> Code {
        Code(u32_at(&self.payload, 0))
    }
}

impl fmt::Debug for RdmaReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.opcode {
            op::AUTH_RESPONSE => "AuthResponse",
            op::STATUS_RESPONSE => "StatusResponse",
            op::CREDIT_REQUEST => "CreditRequest",
            op::CREDIT_RESPONSE => "CreditResponse",
            op::REGISTER_FILE_COMPLETION => "RegisterFileCompletion",
            op::COMPLETION => "Completion",
            op::INTERRUPT_RESPONSE => "InterruptResponse",
            op::KEEPALIVE_RESPONSE => "KeepaliveResponse",
            op::TERMINATE => "Terminate",
            _ => "opcode",
        };
        write!(f, "{name}(0x{:02x}", self.opcode)?;
        if matches!(
            self.opcode,
            op::AUTH_RESPONSE
                | op::STATUS_RESPONSE
                | op::REGISTER_FILE_COMPLETION
                | op::COMPLETION
                | op::TERMINATE
        ) {
            write!(f, " {:?}", self.status())?;
        }
        write!(f, ", credits {}, id {})", self.credits, self.request_id)
    }
}

/// A status block (§StatusBlock).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    /// Request id.
    pub request_id: u32,
    /// Status.
    pub status: Code,
    /// Bytes.
    pub bytes: u64,
    /// Credits returned.
    pub credits: u16,
}

impl Block {
    /// Decode 24 bytes; `None` while `valid` is not `RDIO`.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.get(20..24) != Some(&MAGIC[..]) || u16_at(bytes, 18) != 0 {
            return None;
        }
        Some(Self {
            request_id: u32_at(bytes, 0),
            status: Code(u32_at(bytes, 4)),
            bytes: u64_at(bytes, 8),
            credits: u16_at(bytes, 16),
        })
    }
}

/// A pipe frame as received.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    /// Opcode byte.
    pub opcode: u8,
    /// Payload.
    pub payload: Vec<u8>,
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.opcode {
            pipe_op::ERROR => write!(
                f,
                "Error(code {}, opcode 0x{:02x})",
                u32_at(&self.payload, 0),
                self.payload.get(4).copied().unwrap_or(0)
            ),
            pipe_op::OPEN_RESPONSE => {
                write!(f, "OpenResponse({:?})", Code(u32_at(&self.payload, 0)))
            }
            pipe_op::NEGOTIATE_RESPONSE => {
                write!(f, "NegotiateResponse({:?})", Code(u32_at(&self.payload, 0)))
            }
            op => write!(f, "frame(opcode 0x{op:02x}, {} bytes)", self.payload.len()),
        }
    }
}

/// The fields of a NegotiateResponse (§NegotiateResponse), read at the
/// spec's offsets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiation {
    /// Status.
    pub status: Code,
    /// Version.
    pub version: u16,
    /// Initial credits.
    pub credits: u16,
    /// Send size.
    pub max_send_size: u32,
    /// I/O size.
    pub max_io_size: u32,
    /// Authentication key.
    pub auth_key: [u8; 16],
    /// Capabilities.
    pub capabilities: u64,
    /// Providers.
    pub providers: Vec<String>,
    /// Endpoint bytes.
    pub endpoint: Vec<u8>,
    /// Whether the payload length matched `44 + 32 × count + endpoint_len`
    /// and the reserved byte was 0.
    pub well_formed: bool,
}

impl Negotiation {
    /// Decode a NegotiateResponse payload.
    pub fn decode(payload: &[u8]) -> Self {
        let count = usize::from(payload.get(32).copied().unwrap_or(0));
        let endpoint_len = usize::from(u16_at(payload, 34));
        let names_end = 44 + 32 * count;
        let providers = (0..count)
            .filter_map(|i| payload.get(44 + 32 * i..44 + 32 * (i + 1)))
            .map(|name| {
                let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
                String::from_utf8_lossy(&name[..end]).into_owned()
            })
            .collect();
        let mut auth_key = [0u8; 16];
        if let Some(key) = payload.get(16..32) {
            auth_key.copy_from_slice(key);
        }
        Self {
            status: Code(u32_at(payload, 0)),
            version: u16_at(payload, 4),
            credits: u16_at(payload, 6),
            max_send_size: u32_at(payload, 8),
            max_io_size: u32_at(payload, 12),
            auth_key,
            capabilities: u64_at(payload, 36),
            providers,
            endpoint: payload.get(names_end..).unwrap_or(&[]).to_vec(),
            well_formed: payload.len() == names_end + endpoint_len && payload.get(33) == Some(&0),
        }
    }
}
