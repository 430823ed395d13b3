//! RDMA-channel messages: the [`Header`](super::Header) followed by an
//! opcode-specific payload. One message fills one receive buffer exactly.

use super::header::{Flags, HEADER_LEN, Opcode};
use super::types::{AuthKey, BufferDescriptor, ResumeKey, Status};
use super::{InsufficientSize, WireError};
use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// One segment of a vectored read: file bytes at `offset`, `dest.len()` of
/// them, land in `dest` (24 bytes on the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct ReadSegment {
    offset: U64,
    dest: BufferDescriptor,
}

impl ReadSegment {
    /// A segment reading `dest.len()` bytes at file `offset` into `dest`.
    pub const fn new(offset: u64, dest: BufferDescriptor) -> Self {
        Self { offset: U64::new(offset), dest }
    }
    /// File offset.
    pub fn offset(&self) -> u64 {
        self.offset.get()
    }
    /// Client memory receiving the bytes.
    pub fn dest(&self) -> BufferDescriptor {
        self.dest
    }
}

/// One segment of a vectored write: `len` bytes at file `offset` (16 bytes on
/// the wire; the last 4 are reserved, zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct WriteSegment {
    offset: U64,
    len: U32,
    reserved: U32,
}

impl WriteSegment {
    /// A segment writing `len` bytes at file `offset`.
    pub const fn new(offset: u64, len: u32) -> Self {
        Self { offset: U64::new(offset), len: U32::new(len), reserved: U32::new(0) }
    }
    /// File offset.
    pub fn offset(&self) -> u64 {
        self.offset.get()
    }
    /// Bytes written at that offset.
    pub fn len(&self) -> u32 {
        self.len.get()
    }
    /// Whether the segment is empty.
    pub fn is_empty(&self) -> bool {
        self.len.get() == 0
    }
    /// Whether the reserved field is zero (checked by the parser).
    pub(crate) fn reserved_is_zero(&self) -> bool {
        self.reserved.get() == 0
    }
}

/// Read `dest.len()` bytes at `offset` of `handle` into client memory `dest`;
/// completion goes to `status` (claims 15, 16, 20).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ReadRequest {
    /// Registered file handle.
    pub handle: u32,
    /// File offset.
    pub offset: u64,
    /// Where the data goes (its length is the read length).
    pub dest: BufferDescriptor,
    /// Where the status block goes.
    pub status: BufferDescriptor,
}

/// Vectored read: each segment is an independent (file offset, client buffer)
/// pair; one status block for the whole request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadVRequest<'a> {
    /// Registered file handle.
    pub handle: u32,
    /// Where the status block goes.
    pub status: BufferDescriptor,
    /// 1..=[`MAX_SEGMENTS`](super::MAX_SEGMENTS) segments.
    pub segments: &'a [ReadSegment],
}

/// Write `total_len` bytes at `offset`; the first `data.len()` bytes ride in
/// this message, the rest in [`Body::WriteData`] fragments (claim 1: write
/// data travels in sends, never RDMA).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteRequest<'a> {
    /// Registered file handle.
    pub handle: u32,
    /// File offset.
    pub offset: u64,
    /// Bytes in the whole write, over all fragments.
    pub total_len: u32,
    /// Where the status block goes.
    pub status: BufferDescriptor,
    /// The first fragment of the data.
    pub data: &'a [u8],
}

/// Vectored write. Without COLLAPSE the data is the concatenation of all
/// segments (`total_len` = sum of lengths); with COLLAPSE every segment has the
/// same length and receives the same bytes, carried once (`total_len` = that
/// length) — claim 17.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteVRequest<'a> {
    /// Registered file handle.
    pub handle: u32,
    /// Bytes of data carried over all fragments.
    pub total_len: u32,
    /// Where the status block goes.
    pub status: BufferDescriptor,
    /// 1..=[`MAX_SEGMENTS`](super::MAX_SEGMENTS) segments.
    pub segments: &'a [WriteSegment],
    /// The first fragment of the data.
    pub data: &'a [u8],
}

/// The payload of a message, one variant per [`Opcode`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Body<'a> {
    /// Authenticate with the key from the negotiate response.
    AuthRequest {
        /// The key.
        key: AuthKey,
    },
    /// Whether the key was accepted.
    AuthResponse {
        /// `Success` or `AuthFailed`.
        status: Status,
    },
    /// Completes authentication and states the connection's starting point.
    StatusResponse {
        /// `Success` or why the connection cannot proceed.
        status: Status,
        /// The client's credit level from now on.
        credits: u16,
        /// The server's keepalive interval in milliseconds (0 = none).
        keepalive_ms: u32,
    },
    /// The server grants (`delta > 0`) or revokes (`delta < 0`) credits.
    CreditRequest {
        /// Signed change of the client's credit level; never 0.
        delta: i32,
    },
    /// The client's one message in answer to a grant, echoing it.
    CreditAck {
        /// The granted delta being acknowledged.
        delta: i32,
    },
    /// One credit given up in answer to a revoke.
    CreditGiveUp,
    /// The server's answer to a `CreditAck` or `CreditGiveUp`.
    CreditResponse,
    /// Register a file opened on the side channel, by its resume key.
    RegisterFile {
        /// The file's resume key.
        key: ResumeKey,
    },
    /// Registration outcome.
    RegisterFileCompletion {
        /// `Success`, `UnknownResumeKey`, `ResourceExhausted`, ...
        status: Status,
        /// The handle for I/O requests (valid on success).
        handle: u32,
        /// The file size at registration.
        size: u64,
    },
    /// Read.
    Read(ReadRequest),
    /// Vectored read.
    ReadV(ReadVRequest<'a>),
    /// Write (first fragment).
    Write(WriteRequest<'a>),
    /// Vectored write (first fragment).
    WriteV(WriteVRequest<'a>),
    /// A continuation fragment of the write with the same request id.
    WriteData {
        /// Offset of these bytes within the write's data.
        data_offset: u32,
        /// The bytes.
        data: &'a [u8],
    },
    /// Cancel the request with id `target`.
    Cancel {
        /// The request to cancel.
        target: u32,
    },
    /// Close a registered file.
    Close {
        /// The handle.
        handle: u32,
    },
    /// Completion of a cancel or close, by send.
    Completion {
        /// Outcome.
        status: Status,
        /// Bytes transferred, where meaningful.
        bytes: u64,
    },
    /// Polling-mode client asks to be woken by a send.
    InterruptRequest,
    /// The wake-up send.
    InterruptResponse,
    /// Keepalive probe.
    Keepalive,
    /// Keepalive answer.
    KeepaliveResponse,
    /// The sender is ending the connection.
    Terminate {
        /// Why.
        reason: Status,
    },
}

/// A whole RDMA-channel message: header fields plus body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    /// Flags (validated against the opcode).
    pub flags: Flags,
    /// Credits (see [`header`](super::header) docs).
    pub credits: u16,
    /// Request id.
    pub request_id: u32,
    /// The payload.
    pub body: Body<'a>,
}

impl<'a> Message<'a> {
    /// The opcode of this message's body.
    pub fn opcode(&self) -> Opcode {
        match self.body {
            Body::AuthRequest { .. } => Opcode::AuthRequest,
            Body::AuthResponse { .. } => Opcode::AuthResponse,
            Body::StatusResponse { .. } => Opcode::StatusResponse,
            Body::CreditRequest { .. } => Opcode::CreditRequest,
            Body::CreditAck { .. } => Opcode::CreditAck,
            Body::CreditGiveUp => Opcode::CreditGiveUp,
            Body::CreditResponse => Opcode::CreditResponse,
            Body::RegisterFile { .. } => Opcode::RegisterFile,
            Body::RegisterFileCompletion { .. } => Opcode::RegisterFileCompletion,
            Body::Read(_) => Opcode::Read,
            Body::ReadV(_) => Opcode::ReadV,
            Body::Write(_) => Opcode::Write,
            Body::WriteV(_) => Opcode::WriteV,
            Body::WriteData { .. } => Opcode::WriteData,
            Body::Cancel { .. } => Opcode::Cancel,
            Body::Close { .. } => Opcode::Close,
            Body::Completion { .. } => Opcode::Completion,
            Body::InterruptRequest => Opcode::InterruptRequest,
            Body::InterruptResponse => Opcode::InterruptResponse,
            Body::Keepalive => Opcode::Keepalive,
            Body::KeepaliveResponse => Opcode::KeepaliveResponse,
            Body::Terminate { .. } => Opcode::Terminate,
        }
    }

    /// The trailing data bytes this message carries (writes), else empty.
    pub fn data(&self) -> &'a [u8] {
        match self.body {
            Body::Write(w) => w.data,
            Body::WriteV(w) => w.data,
            Body::WriteData { data, .. } => data,
            _ => &[],
        }
    }

    /// Parse exactly one message occupying all of `buf` (a receive buffer
    /// holds one message; bytes after the declared length are an error).
    pub fn parse(buf: &'a [u8]) -> Result<Self, WireError> {
        let _ = buf;
        todo!("wire codec")
    }

    /// Bytes [`Message::emit`] writes: header, fixed payload, data.
    pub fn encoded_len(&self) -> usize {
        self.prefix_len().saturating_add(self.data().len())
    }

    /// Bytes [`Message::emit_prefix`] writes: everything but the trailing data.
    pub fn prefix_len(&self) -> usize {
        HEADER_LEN
    }

    /// Encode the whole message into `buf`; returns the bytes written.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, InsufficientSize> {
        let _ = buf;
        todo!("wire codec")
    }

    /// Encode everything but the trailing write data into `buf` (the header's
    /// length still counts the data), so a driver can gather the prefix and the
    /// caller's registered data buffer into one send without copying the data.
    pub fn emit_prefix(&self, buf: &mut [u8]) -> Result<usize, InsufficientSize> {
        let _ = buf;
        todo!("wire codec")
    }
}
