//! RDMA-channel messages: the [`Header`] followed by an
//! opcode-specific payload. One message fills one receive buffer exactly.
//!
//! [`Message`] and [`Body`] are parsed and emitted here, by one match on the
//! opcode; each family's wire layouts, request types and field checks live in
//! its own module: `auth`, `credit`, `io` (the requests that move data, and
//! the Read fast path) and `control` (registration, cancel, close,
//! completion, terminate).

#[cfg(debug_assertions)]
use super::codec::Counter;
use super::codec::VERSION_1_BYTE;
use super::codec::{Sink, Unencodable, Writer, expect_empty, reserved_zero, take, take_exact};
use super::header::{Flags, HEADER_LEN, Header, HeaderWire, Opcode};
use super::types::{AuthKey, BufferDescriptor, ResumeKey, Status};
use super::{InsufficientSize, MAX_BATCH, MAX_SEGMENTS, WireError};
use zerocopy::little_endian::{I32, U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

mod auth;
mod control;
mod credit;
mod io;

use auth::{StatusResponseWire, StatusWire};
use control::{CompletionWire, RegisterCompletionWire, WordWire, word};
use credit::{DeltaWire, delta};
pub use io::{
    BatchRead, MAX_READ_BATCH_LEN, ReadBatchRequest, ReadRequest, ReadSegment, ReadVRequest,
    WriteRequest, WriteSegment, WriteVRequest, parse_read, parse_write,
};
pub(crate) use io::{
    READ_BATCH_HEAD_LEN, READ_MESSAGE_LEN, READ_PAYLOAD_LEN, ReadFields, WRITE_PREFIX_LEN,
    emit_read, emit_read_batch_head, emit_read_fields, emit_write_prefix, parse_read_batch_fields,
    parse_read_fields,
};
use io::{ReadBatchWire, ReadVWire, ReadWire, WriteDataWire, WriteVWire, WriteWire};

/// The payload of a message, one variant per [`Opcode`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
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
    /// Several reads in one message (the read-batch extension).
    ReadBatch(ReadBatchRequest<'a>),
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Message<'a> {
    /// Flags (validated against the opcode).
    pub flags: Flags,
    /// Credits (see [`header`](super::header) docs).
    pub credits: u16,
    /// A client request's credit demand, else 0 (see
    /// [`header`](super::header) docs).
    pub demand: u16,
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
            Body::ReadBatch(_) => Opcode::ReadBatch,
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
    ///
    /// The header is validated first ([`Header::parse`]), then the declared
    /// length against `buf`, then the opcode's payload (see
    /// `docs/PROTOCOL.md` for every layout and rule).
    #[inline]
    pub fn parse(buf: &'a [u8]) -> Result<Self, WireError> {
        // A well-formed Read, or Write, is accepted by one fixed-layout
        // check; anything else (including every malformed Read and Write,
        // for its exact error) takes the general path.
        // `tests::read_fast_parse_agrees` and `write_fast_parse_agrees` hold
        // the two to the same answers.
        if let Some(read) = parse_read(buf) {
            return Ok(read);
        }
        if let Some(write) = parse_write(buf) {
            return Ok(write);
        }
        Self::parse_generic(buf)
    }

    fn parse_generic(buf: &'a [u8]) -> Result<Self, WireError> {
        let (header, payload) = Header::split(buf)?;
        let declared = usize::try_from(header.length).unwrap_or(usize::MAX);
        if payload.len() < declared {
            return Err(WireError::Truncated {
                required: HEADER_LEN.saturating_add(declared),
                available: buf.len(),
            });
        }
        if payload.len() > declared {
            return Err(WireError::TrailingBytes(
                payload.len().saturating_sub(declared),
            ));
        }
        Ok(Self {
            flags: header.flags,
            credits: header.credits,
            demand: header.demand,
            request_id: header.request_id,
            body: Body::parse(header.opcode, header.flags, payload)?,
        })
    }

    /// Bytes [`Message::emit`] writes: header, fixed payload, data
    /// (`usize::MAX` for a message whose counts do not fit the wire).
    pub fn encoded_len(&self) -> usize {
        self.lengths().map_or(usize::MAX, |(prefix, _)| {
            prefix.saturating_add(self.data().len())
        })
    }

    /// Bytes [`Message::emit_prefix`] writes: everything but the trailing data.
    pub fn prefix_len(&self) -> usize {
        self.lengths().map_or(usize::MAX, |(prefix, _)| prefix)
    }

    /// Encode the whole message into `buf`; returns the bytes written.
    ///
    /// Emitting does not check the protocol's semantic rules (a zero-length
    /// read is encoded as given, and rejected by [`Message::parse`]); it never
    /// panics, and leaves `buf` untouched when it is too small.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, InsufficientSize> {
        self.write(buf, true)
    }

    /// Encode everything but the trailing write data into `buf` (the header's
    /// length still counts the data), so a driver can gather the prefix and the
    /// caller's registered data buffer into one send without copying the data.
    pub fn emit_prefix(&self, buf: &mut [u8]) -> Result<usize, InsufficientSize> {
        self.write(buf, false)
    }

    /// The prefix length (header + fixed payload + segments) and the
    /// header's payload length field (fixed payload + data).
    fn lengths(&self) -> Result<(usize, u32), Unencodable> {
        let fixed = self.body.fixed_len()?;
        #[cfg(debug_assertions)]
        {
            // `fixed_len` restates the sizes `encode_fixed` puts; every
            // debug build (all tests, the fuzzers) checks they agree.
            let mut counted = Counter::default();
            self.body.encode_fixed(&mut counted)?;
            debug_assert_eq!(counted.0, fixed, "fixed_len disagrees with encode_fixed");
        }
        let payload = u32::try_from(fixed.checked_add(self.data().len()).ok_or(Unencodable)?)?;
        Ok((HEADER_LEN.saturating_add(fixed), payload))
    }

    /// The one description of this message's bytes (see `wire::codec`): the
    /// length is computed once from the same `encode_fixed` that writes, so
    /// the two cannot disagree; `buf` is untouched when too small.
    fn write(&self, buf: &mut [u8], with_data: bool) -> Result<usize, InsufficientSize> {
        // The I/O path's most frequent message, written as one fixed-size
        // struct (its length is a constant, so no counting and no
        // variable-length copies); `tests::read_fast_path_matches_generic`
        // holds it to the generic encoding byte for byte.
        if let Body::Read(read) = &self.body {
            return emit_read(
                buf,
                self.flags,
                self.credits,
                self.demand,
                self.request_id,
                read,
            );
        }
        self.write_generic(buf, with_data)
    }

    fn write_generic(&self, buf: &mut [u8], with_data: bool) -> Result<usize, InsufficientSize> {
        let unencodable = InsufficientSize {
            required: usize::MAX,
        };
        let (prefix, length) = self.lengths().map_err(|Unencodable| unencodable)?;
        let data = self.data();
        let required = if with_data {
            prefix.saturating_add(data.len())
        } else {
            prefix
        };
        if buf.len() < required {
            return Err(InsufficientSize { required });
        }
        let header = Header {
            opcode: self.opcode(),
            flags: self.flags,
            credits: self.credits,
            demand: self.demand,
            request_id: self.request_id,
            length,
        };
        let mut sink = Writer { rest: buf };
        sink.put(header.to_wire().as_bytes());
        self.body
            .encode_fixed(&mut sink)
            .map_err(|Unencodable| unencodable)?;
        if with_data {
            sink.put(data);
        }
        Ok(required)
    }
}

// Payload layouts, offsets relative to the payload (after the 16-byte
// header). Reserved fields are written as zero and rejected unless zero.

const _: () = {
    assert!(size_of::<StatusResponseWire>() == 12);
    assert!(size_of::<RegisterCompletionWire>() == 16);
    assert!(size_of::<ReadWire>() == 48);
    assert!(size_of::<ReadVWire>() == 24);
    assert!(size_of::<ReadSegment>() == 24);
    assert!(size_of::<ReadBatchWire>() == 8);
    assert!(size_of::<BatchRead>() == 48);
    assert!(size_of::<WriteWire>() == 32);
    assert!(size_of::<WriteVWire>() == 32);
    assert!(size_of::<WriteSegment>() == 16);
    assert!(size_of::<CompletionWire>() == 16);
};

/// Payload errors report whole-message lengths: the payload starts here.
const BASE: usize = HEADER_LEN;

fn status(code: U32) -> Result<Status, WireError> {
    Status::from_u32(code.get())
}

impl<'a> Body<'a> {
    /// Parse the payload of `opcode`; `payload` is exactly the declared
    /// length.
    fn parse(opcode: Opcode, flags: Flags, payload: &'a [u8]) -> Result<Self, WireError> {
        Ok(match opcode {
            Opcode::AuthRequest => Self::AuthRequest {
                key: *take_exact::<AuthKey>(payload, BASE)?,
            },
            Opcode::AuthResponse => Self::AuthResponse {
                status: status(take_exact::<StatusWire>(payload, BASE)?.status)?,
            },
            Opcode::StatusResponse => {
                let wire = take_exact::<StatusResponseWire>(payload, BASE)?;
                reserved_zero(wire.reserved.get())?;
                Self::StatusResponse {
                    status: status(wire.status)?,
                    credits: wire.credits.get(),
                    keepalive_ms: wire.keepalive_ms.get(),
                }
            }
            Opcode::CreditRequest => Self::CreditRequest {
                delta: delta(payload, |d| d != 0)?,
            },
            // Claim 7: the client acknowledges a grant; a revoke is answered
            // by give-ups instead, so an ack only ever echoes a positive delta.
            Opcode::CreditAck => Self::CreditAck {
                delta: delta(payload, |d| d > 0)?,
            },
            Opcode::CreditGiveUp => expect_empty(payload).map(|()| Self::CreditGiveUp)?,
            Opcode::CreditResponse => expect_empty(payload).map(|()| Self::CreditResponse)?,
            Opcode::RegisterFile => Self::RegisterFile {
                key: *take_exact::<ResumeKey>(payload, BASE)?,
            },
            Opcode::RegisterFileCompletion => {
                let wire = take_exact::<RegisterCompletionWire>(payload, BASE)?;
                Self::RegisterFileCompletion {
                    status: status(wire.status)?,
                    handle: wire.handle.get(),
                    size: wire.size.get(),
                }
            }
            Opcode::Read => Self::Read(ReadRequest::parse(payload)?),
            Opcode::ReadV => Self::ReadV(ReadVRequest::parse(payload)?),
            Opcode::ReadBatch => Self::ReadBatch(ReadBatchRequest::parse(payload)?),
            Opcode::Write => Self::Write(WriteRequest::parse(payload)?),
            Opcode::WriteV => Self::WriteV(WriteVRequest::parse(flags, payload)?),
            Opcode::WriteData => {
                let (wire, data) = take::<WriteDataWire>(payload, BASE)?;
                reserved_zero(wire.reserved.get())?;
                if data.is_empty() {
                    return Err(WireError::InvalidField);
                }
                Self::WriteData {
                    data_offset: wire.data_offset.get(),
                    data,
                }
            }
            Opcode::Cancel => Self::Cancel {
                target: word(payload)?,
            },
            Opcode::Close => Self::Close {
                handle: word(payload)?,
            },
            Opcode::Completion => {
                let wire = take_exact::<CompletionWire>(payload, BASE)?;
                reserved_zero(wire.reserved.get())?;
                Self::Completion {
                    status: status(wire.status)?,
                    bytes: wire.bytes.get(),
                }
            }
            Opcode::InterruptRequest => expect_empty(payload).map(|()| Self::InterruptRequest)?,
            Opcode::InterruptResponse => expect_empty(payload).map(|()| Self::InterruptResponse)?,
            Opcode::Keepalive => expect_empty(payload).map(|()| Self::Keepalive)?,
            Opcode::KeepaliveResponse => expect_empty(payload).map(|()| Self::KeepaliveResponse)?,
            Opcode::Terminate => Self::Terminate {
                reason: Status::from_u32(word(payload)?)?,
            },
        })
    }

    /// The bytes [`Body::encode_fixed`] puts, computed without running it
    /// (once per message on the I/O path; debug builds cross-check the two
    /// in [`Message::lengths`]).
    fn fixed_len(&self) -> Result<usize, Unencodable> {
        fn with_segments<T>(wire: usize, count: usize) -> Result<usize, Unencodable> {
            u16::try_from(count)?;
            Ok(wire.saturating_add(count.saturating_mul(size_of::<T>())))
        }
        Ok(match self {
            Self::AuthRequest { .. } => size_of::<AuthKey>(),
            Self::RegisterFile { .. } => size_of::<ResumeKey>(),
            Self::AuthResponse { .. } => size_of::<StatusWire>(),
            Self::StatusResponse { .. } => size_of::<StatusResponseWire>(),
            Self::CreditRequest { .. } | Self::CreditAck { .. } => size_of::<DeltaWire>(),
            Self::RegisterFileCompletion { .. } => size_of::<RegisterCompletionWire>(),
            Self::Read(_) => size_of::<ReadWire>(),
            Self::ReadV(read) => {
                with_segments::<ReadSegment>(size_of::<ReadVWire>(), read.segments.len())?
            }
            Self::ReadBatch(batch) => {
                with_segments::<BatchRead>(size_of::<ReadBatchWire>(), batch.reads.len())?
            }
            Self::Write(_) => size_of::<WriteWire>(),
            Self::WriteV(write) => {
                with_segments::<WriteSegment>(size_of::<WriteVWire>(), write.segments.len())?
            }
            Self::WriteData { .. } => size_of::<WriteDataWire>(),
            Self::Cancel { .. } | Self::Close { .. } | Self::Terminate { .. } => {
                size_of::<WordWire>()
            }
            Self::Completion { .. } => size_of::<CompletionWire>(),
            Self::CreditGiveUp
            | Self::CreditResponse
            | Self::InterruptRequest
            | Self::InterruptResponse
            | Self::Keepalive
            | Self::KeepaliveResponse => 0,
        })
    }

    /// Put the payload's fixed part and segment array (not the data).
    fn encode_fixed<S: Sink>(&self, sink: &mut S) -> Result<(), Unencodable> {
        match *self {
            Self::AuthRequest { key } => sink.put(key.as_bytes()),
            Self::RegisterFile { key } => sink.put(key.as_bytes()),
            Self::AuthResponse { status } => sink.put(
                StatusWire {
                    status: status.as_u32().into(),
                }
                .as_bytes(),
            ),
            Self::StatusResponse {
                status,
                credits,
                keepalive_ms,
            } => sink.put(
                StatusResponseWire {
                    status: status.as_u32().into(),
                    credits: credits.into(),
                    reserved: U16::ZERO,
                    keepalive_ms: keepalive_ms.into(),
                }
                .as_bytes(),
            ),
            Self::CreditRequest { delta } | Self::CreditAck { delta } => sink.put(
                DeltaWire {
                    delta: delta.into(),
                }
                .as_bytes(),
            ),
            Self::RegisterFileCompletion {
                status,
                handle,
                size,
            } => sink.put(
                RegisterCompletionWire {
                    status: status.as_u32().into(),
                    handle: handle.into(),
                    size: size.into(),
                }
                .as_bytes(),
            ),
            Self::Read(read) => sink.put(
                ReadWire {
                    handle: read.handle.into(),
                    reserved: U32::ZERO,
                    offset: read.offset.into(),
                    dest: read.dest,
                    status: read.status,
                }
                .as_bytes(),
            ),
            Self::ReadV(read) => {
                let wire = ReadVWire {
                    handle: read.handle.into(),
                    count: u16::try_from(read.segments.len())?.into(),
                    reserved: U16::ZERO,
                    status: read.status,
                };
                sink.put(wire.as_bytes());
                sink.put(read.segments.as_bytes());
            }
            Self::ReadBatch(batch) => {
                let wire = ReadBatchWire {
                    count: u16::try_from(batch.reads.len())?.into(),
                    reserved: U16::ZERO,
                    reserved2: U32::ZERO,
                };
                sink.put(wire.as_bytes());
                sink.put(batch.reads.as_bytes());
            }
            Self::Write(write) => sink.put(
                WriteWire {
                    handle: write.handle.into(),
                    total_len: write.total_len.into(),
                    offset: write.offset.into(),
                    status: write.status,
                }
                .as_bytes(),
            ),
            Self::WriteV(write) => {
                let wire = WriteVWire {
                    handle: write.handle.into(),
                    count: u16::try_from(write.segments.len())?.into(),
                    reserved: U16::ZERO,
                    total_len: write.total_len.into(),
                    reserved2: U32::ZERO,
                    status: write.status,
                };
                sink.put(wire.as_bytes());
                sink.put(write.segments.as_bytes());
            }
            Self::WriteData {
                data_offset,
                data: _,
            } => sink.put(
                WriteDataWire {
                    data_offset: data_offset.into(),
                    reserved: U32::ZERO,
                }
                .as_bytes(),
            ),
            Self::Cancel { target: value } | Self::Close { handle: value } => sink.put(
                WordWire {
                    value: value.into(),
                    reserved: U32::ZERO,
                }
                .as_bytes(),
            ),
            Self::Terminate { reason } => sink.put(
                WordWire {
                    value: reason.as_u32().into(),
                    reserved: U32::ZERO,
                }
                .as_bytes(),
            ),
            Self::Completion { status, bytes } => sink.put(
                CompletionWire {
                    status: status.as_u32().into(),
                    reserved: U32::ZERO,
                    bytes: bytes.into(),
                }
                .as_bytes(),
            ),
            Self::CreditGiveUp
            | Self::CreditResponse
            | Self::InterruptRequest
            | Self::InterruptResponse
            | Self::Keepalive
            | Self::KeepaliveResponse => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The fixed-prefix Write parser accepts exactly what the general
        /// parser accepts, with the same result, on Write-shaped inputs with
        /// any field (or the length, or the data's size) off.
        #[test]
        fn write_fast_parse_agrees(
            mut bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 48..=64),
            cut in 0usize..4,
            version_ok in proptest::bool::weighted(0.9),
            opcode_ok in proptest::bool::weighted(0.9),
            length_ok in proptest::bool::weighted(0.8),
            reserved_ok in proptest::bool::weighted(0.9),
            total in proptest::prop_oneof![3 => 16u32..=20, 1 => 0u32..16],
            flags in 0u16..4,
        ) {
            let cut = cut.min(bytes.len() - 44);
            let len = bytes.len() - cut;
            bytes.truncate(len);
            if let Some(b) = bytes.get_mut(0) { if version_ok { *b = 1 } }
            if let Some(b) = bytes.get_mut(1) { if opcode_ok { *b = 0x23 } }
            if let Some(b) = bytes.get_mut(2..4) { b.copy_from_slice(&flags.to_le_bytes()) }
            if reserved_ok {
                if let Some(b) = bytes.get_mut(6..8) { b.fill(0) }
            }
            if let Some(b) = bytes.get_mut(12..16) {
                if length_ok { b.copy_from_slice(&(len as u32 - 16).to_le_bytes()) }
            }
            if let Some(b) = bytes.get_mut(20..24) { b.copy_from_slice(&total.to_le_bytes()) }
            let fast = parse_write(&bytes);
            let generic = Message::parse_generic(&bytes);
            match fast {
                Some(msg) => proptest::prop_assert_eq!(Ok(msg), generic),
                None => {
                    let accepted_write = matches!(generic, Ok(Message { body: Body::Write(_), .. }));
                    proptest::prop_assert!(!accepted_write);
                }
            }
            proptest::prop_assert_eq!(Message::parse(&bytes), generic);
        }

        /// The fixed-layout Read parser accepts exactly what the general
        /// parser accepts, with the same result, on Read-shaped inputs with
        /// any field (or the length) off.
        #[test]
        fn read_fast_parse_agrees(
            mut bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 64),
            len in proptest::prop_oneof![3 => proptest::strategy::Just(64usize), 1 => 60usize..=68],
            version_ok in proptest::bool::weighted(0.9),
            opcode_ok in proptest::bool::weighted(0.9),
            length_ok in proptest::bool::weighted(0.9),
            reserved_ok in proptest::bool::weighted(0.9),
            flags in proptest::prop_oneof![3 => 0u16..4, 1 => proptest::prelude::any::<u16>()],
        ) {
            bytes.resize(len, 0);
            if let Some(b) = bytes.get_mut(0) { if version_ok { *b = 1 } }
            if let Some(b) = bytes.get_mut(1) { if opcode_ok { *b = 0x21 } }
            if let Some(b) = bytes.get_mut(2..4) { b.copy_from_slice(&flags.to_le_bytes()) }
            if reserved_ok {
                if let Some(b) = bytes.get_mut(6..8) { b.fill(0) }
                if let Some(b) = bytes.get_mut(20..24) { b.fill(0) }
            }
            if let Some(b) = bytes.get_mut(12..16) { if length_ok { b.copy_from_slice(&48u32.to_le_bytes()) } }
            let fast = parse_read(&bytes);
            let generic = Message::parse_generic(&bytes);
            match fast {
                Some(msg) => proptest::prop_assert_eq!(Ok(msg), generic),
                None => {
                    let accepted_read = matches!(generic, Ok(Message { body: Body::Read(_), .. }));
                    proptest::prop_assert!(!accepted_read);
                }
            }
            proptest::prop_assert_eq!(Message::parse(&bytes), generic);
        }
    }

    proptest::proptest! {
        /// `parse_read_batch_fields` accepts exactly the ReadBatch messages
        /// the general parser accepts, with the same fields, and those
        /// only for a read with an empty destination (which its caller
        /// checks), on ReadBatch-shaped inputs with any field, the count or
        /// the length off, or a read's destination empty.
        #[test]
        fn read_batch_fast_parse_agrees(
            mut bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 24 + 48 * 17),
            reads in 0usize..=17,
            count_ok in proptest::bool::weighted(0.8),
            len_off in proptest::prop_oneof![6 => proptest::strategy::Just(0isize), 1 => -4isize..=4],
            version_ok in proptest::bool::weighted(0.9),
            opcode_ok in proptest::bool::weighted(0.9),
            length_ok in proptest::bool::weighted(0.9),
            reserved_ok in proptest::bool::weighted(0.9),
            dests_ok in proptest::bool::weighted(0.8),
            flags in 0u16..4,
        ) {
            let len = (24 + 48 * reads).saturating_add_signed(len_off);
            bytes.resize(len, 0);
            if let Some(b) = bytes.get_mut(0) { if version_ok { *b = 1 } }
            if let Some(b) = bytes.get_mut(1) { if opcode_ok { *b = 0x2A } }
            if let Some(b) = bytes.get_mut(2..4) { b.copy_from_slice(&flags.to_le_bytes()) }
            if reserved_ok {
                if let Some(b) = bytes.get_mut(6..8) { b.fill(0) }
                if let Some(b) = bytes.get_mut(18..24) { b.fill(0) }
            }
            let payload = u32::try_from(len.saturating_sub(16)).unwrap_or(0);
            if let Some(b) = bytes.get_mut(12..16) { if length_ok { b.copy_from_slice(&payload.to_le_bytes()) } }
            if let Some(b) = bytes.get_mut(16..18) { if count_ok { b.copy_from_slice(&(reads as u16).to_le_bytes()) } }
            // Each read's destination length (bytes 28..32 of the read): not
            // 0, or 0 for the last read.
            for i in 0..reads {
                let at = 24 + 48 * i + 28;
                if let Some(b) = bytes.get_mut(at..at + 4) {
                    if dests_ok || i + 1 < reads {
                        if b == [0; 4] { b[0] = 1 }
                    } else {
                        b.fill(0);
                    }
                }
            }
            let generic = Message::parse_generic(&bytes);
            match parse_read_batch_fields(&bytes) {
                Some(fields) if fields.reads.iter().any(|read| read.dest().is_empty()) => {
                    proptest::prop_assert_eq!(generic, Err(WireError::InvalidField));
                }
                Some(fields) => proptest::prop_assert_eq!(
                    Ok(Message {
                        flags: fields.flags,
                        credits: fields.credits,
                        demand: 0,
                        request_id: fields.request_id,
                        body: Body::ReadBatch(ReadBatchRequest { reads: fields.reads }),
                    }),
                    generic
                ),
                None => {
                    let accepted = matches!(generic, Ok(Message { body: Body::ReadBatch(_), .. }));
                    proptest::prop_assert!(!accepted);
                }
            }
        }
    }

    #[test]
    fn write_prefix_fast_path_matches_generic() {
        let cases = [
            (0u64, 0u32, 0u16, 1u32, 1u32, Flags::empty()),
            (
                u64::MAX,
                u32::MAX,
                u16::MAX,
                u32::MAX,
                u32::MAX - 32,
                Flags::INTERRUPT,
            ),
            (4096, 7, 64, 0x1234_5678, 4096, Flags::INTERRUPT),
        ];
        for (offset, handle, credits, request_id, data_len, flags) in cases {
            let write = WriteRequest {
                handle,
                offset,
                total_len: data_len.saturating_add(5),
                status: BufferDescriptor::new(!offset, 3, 24),
                data: &[],
            };
            let msg = Message {
                flags,
                credits,
                demand: 0,
                request_id,
                body: Body::Write(write),
            };
            let (mut fast, mut generic) = ([0u8; 64], [0u8; 64]);
            let n = emit_write_prefix(&mut fast, flags, credits, 0, request_id, &write, data_len);
            assert_eq!(n, Ok(WRITE_PREFIX_LEN));
            assert_eq!(msg.emit_prefix(&mut generic), Ok(WRITE_PREFIX_LEN));
            // The generic prefix counts no data; the client adds it after.
            let length = u32::from_le_bytes([generic[12], generic[13], generic[14], generic[15]]);
            generic[12..16].copy_from_slice(&(length + data_len).to_le_bytes());
            assert_eq!(fast, generic);
            let mut short = [0xAAu8; WRITE_PREFIX_LEN - 1];
            assert_eq!(
                emit_write_prefix(&mut short, flags, credits, 0, request_id, &write, data_len),
                Err(InsufficientSize {
                    required: WRITE_PREFIX_LEN
                })
            );
            assert_eq!(short, [0xAA; WRITE_PREFIX_LEN - 1]);
        }
    }

    #[test]
    fn read_fast_path_matches_generic() {
        let cases = [
            (0u64, 0u32, 0u16, 0u32, Flags::empty()),
            (u64::MAX, u32::MAX, u16::MAX, u32::MAX, Flags::INTERRUPT),
            (4096, 7, 64, 0x1234_5678, Flags::INTERRUPT),
        ];
        for (offset, handle, credits, request_id, flags) in cases {
            let msg = Message {
                flags,
                credits,
                demand: 0,
                request_id,
                body: Body::Read(ReadRequest {
                    handle,
                    offset,
                    dest: BufferDescriptor::new(offset ^ 0x55, handle, 4096),
                    status: BufferDescriptor::new(!offset, 3, 24),
                }),
            };
            let (mut fast, mut generic) = ([0u8; 80], [0u8; 80]);
            let n = msg.emit(&mut fast);
            assert_eq!(n, msg.write_generic(&mut generic, true));
            assert_eq!((n, fast), (Ok(64), generic));
            assert_eq!(msg.encoded_len(), 64);
            assert_eq!(msg.emit_prefix(&mut fast), Ok(64));
            assert_eq!(Message::parse(&fast[..64]), Ok(msg));
            // Too small: the generic requirement, nothing written.
            let mut short = [0xAAu8; 63];
            assert_eq!(msg.emit(&mut short), Err(InsufficientSize { required: 64 }));
            assert_eq!(short, [0xAA; 63]);
        }
    }

    /// The client's batch path (head by `emit_read_batch_head`, reads
    /// written after it) gives the bytes the general encoder gives.
    #[test]
    fn read_batch_head_agrees_with_the_encoder() {
        use zerocopy::IntoBytes;
        for (count, credits, flags) in [
            (2u16, 5u16, Flags::INTERRUPT),
            (16, u16::MAX, Flags::empty()),
        ] {
            let reads: heapless::Vec<BatchRead, 16> = (0..u32::from(count))
                .map(|i| {
                    BatchRead::new(
                        100 + i,
                        7,
                        u64::from(i) * 4096,
                        BufferDescriptor::new(0x1000 * u64::from(i), 9, 4096),
                        BufferDescriptor::new(0x9000 + u64::from(i), 9, 24),
                    )
                })
                .collect();
            let msg = Message {
                flags,
                credits,
                demand: 0,
                request_id: 100,
                body: Body::ReadBatch(ReadBatchRequest { reads: &reads }),
            };
            let (mut direct, mut generic) = ([0u8; 1024], [0u8; 1024]);
            let len = msg.emit(&mut generic).unwrap();
            let head = emit_read_batch_head(&mut direct, flags, credits, 0, 100, count).unwrap();
            assert_eq!(head, READ_BATCH_HEAD_LEN);
            let body = reads.as_bytes();
            direct[head..head + body.len()].copy_from_slice(body);
            assert_eq!(head + body.len(), len);
            assert_eq!(direct[..len], generic[..len]);
            let mut short = [0xAAu8; READ_BATCH_HEAD_LEN - 1];
            assert!(emit_read_batch_head(&mut short, flags, credits, 0, 100, count).is_err());
            assert_eq!(short, [0xAA; READ_BATCH_HEAD_LEN - 1]);
        }
    }
}
