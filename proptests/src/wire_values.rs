//! Arbitrary *valid* values of every wire message, owned, for round-trip
//! tests: a proptest [`Strategy`] for the property tests and (feature
//! `arbitrary`) an `arbitrary::Arbitrary` impl for the fuzz targets. Both
//! generate only values the parsers accept, so `parse(emit(v)) == v` must
//! hold for every one of them.
//!
//! The wire types borrow their variable parts (segments, data, paths); the
//! `*Value` types here own them and lend a borrowed view with `message()`.

use proptest::collection::vec;
use proptest::prelude::*;
use rdio_core::wire::{
    AuthKey, Body, BufferDescriptor, CHECKSUM_DIGEST_LEN, Capabilities, ChecksumAlgorithm, Flags,
    MAX_ENDPOINT_LEN, MAX_PATH_LEN, MAX_PROVIDERS, MAX_SEGMENTS, MIN_SEND_SIZE, Message,
    NegotiateRequest, NegotiateResponse, OpenFlags, PROVIDER_NAME_LEN, PipeErrorCode, PipeMessage,
    ProviderList, ProviderName, ReadRequest, ReadSegment, ReadVRequest, ResumeKey, Status,
    StatusBlock, WriteRequest, WriteSegment, WriteVRequest,
};

/// Every defined status code: `0..=18`, then the ones other ranges add.
pub const STATUS_CODES: &[u32] = &[
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 36, 41, 42, 43,
];

/// An RDMA-channel message with owned variable parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageValue {
    pub flags: Flags,
    pub credits: u16,
    pub request_id: u32,
    pub body: BodyValue,
}

/// [`Body`] with owned segments and data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BodyValue {
    AuthRequest(AuthKey),
    AuthResponse(Status),
    StatusResponse {
        status: Status,
        credits: u16,
        keepalive_ms: u32,
    },
    CreditRequest(i32),
    CreditAck(i32),
    CreditGiveUp,
    CreditResponse,
    RegisterFile(ResumeKey),
    RegisterFileCompletion {
        status: Status,
        handle: u32,
        size: u64,
    },
    Read(ReadRequest),
    ReadV {
        handle: u32,
        status: BufferDescriptor,
        segments: Vec<ReadSegment>,
    },
    Write {
        handle: u32,
        offset: u64,
        total_len: u32,
        status: BufferDescriptor,
        data: Vec<u8>,
    },
    WriteV {
        handle: u32,
        total_len: u32,
        status: BufferDescriptor,
        segments: Vec<WriteSegment>,
        data: Vec<u8>,
    },
    WriteData {
        data_offset: u32,
        data: Vec<u8>,
    },
    Cancel(u32),
    Close(u32),
    Completion {
        status: Status,
        bytes: u64,
    },
    InterruptRequest,
    InterruptResponse,
    Keepalive,
    KeepaliveResponse,
    Terminate(Status),
}

impl MessageValue {
    /// The borrowed wire view.
    pub fn message(&self) -> Message<'_> {
        Message {
            flags: self.flags,
            credits: self.credits,
            demand: 0,
            request_id: self.request_id,
            body: self.body.body(),
        }
    }
}

impl BodyValue {
    /// The borrowed wire view.
    pub fn body(&self) -> Body<'_> {
        match self {
            Self::AuthRequest(key) => Body::AuthRequest { key: *key },
            Self::AuthResponse(status) => Body::AuthResponse { status: *status },
            Self::StatusResponse {
                status,
                credits,
                keepalive_ms,
            } => Body::StatusResponse {
                status: *status,
                credits: *credits,
                keepalive_ms: *keepalive_ms,
            },
            Self::CreditRequest(delta) => Body::CreditRequest { delta: *delta },
            Self::CreditAck(delta) => Body::CreditAck { delta: *delta },
            Self::CreditGiveUp => Body::CreditGiveUp,
            Self::CreditResponse => Body::CreditResponse,
            Self::RegisterFile(key) => Body::RegisterFile { key: *key },
            Self::RegisterFileCompletion {
                status,
                handle,
                size,
            } => Body::RegisterFileCompletion {
                status: *status,
                handle: *handle,
                size: *size,
            },
            Self::Read(read) => Body::Read(*read),
            Self::ReadV {
                handle,
                status,
                segments,
            } => Body::ReadV(ReadVRequest {
                handle: *handle,
                status: *status,
                segments,
            }),
            Self::Write {
                handle,
                offset,
                total_len,
                status,
                data,
            } => Body::Write(WriteRequest {
                handle: *handle,
                offset: *offset,
                total_len: *total_len,
                status: *status,
                data,
            }),
            Self::WriteV {
                handle,
                total_len,
                status,
                segments,
                data,
            } => Body::WriteV(WriteVRequest {
                handle: *handle,
                total_len: *total_len,
                status: *status,
                segments,
                data,
            }),
            Self::WriteData { data_offset, data } => Body::WriteData {
                data_offset: *data_offset,
                data,
            },
            Self::Cancel(target) => Body::Cancel { target: *target },
            Self::Close(handle) => Body::Close { handle: *handle },
            Self::Completion { status, bytes } => Body::Completion {
                status: *status,
                bytes: *bytes,
            },
            Self::InterruptRequest => Body::InterruptRequest,
            Self::InterruptResponse => Body::InterruptResponse,
            Self::Keepalive => Body::Keepalive,
            Self::KeepaliveResponse => Body::KeepaliveResponse,
            Self::Terminate(reason) => Body::Terminate { reason: *reason },
        }
    }
}

/// A pipe message with owned variable parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PipeValue {
    ResumeKeyRequest,
    ResumeKeyResponse(ResumeKey),
    OpenRequest {
        flags: OpenFlags,
        path: Vec<u8>,
    },
    OpenResponse {
        status: Status,
        key: ResumeKey,
        size: u64,
    },
    NegotiateRequest(NegotiateRequest),
    NegotiateResponse {
        status: Status,
        version: u16,
        credits: u16,
        max_send_size: u32,
        max_io_size: u32,
        auth_key: AuthKey,
        providers: ProviderList,
        capabilities: Capabilities,
        endpoint: Vec<u8>,
    },
    StatRequest {
        path: Vec<u8>,
    },
    StatResponse {
        status: Status,
        size: u64,
        modified_ns: u64,
        file_id: u64,
    },
    Error {
        code: PipeErrorCode,
        opcode: u8,
    },
    /// A remote file operation ([`crate::file_values`]).
    File(crate::file_values::FileValue),
    ChecksumRequest {
        algorithm: ChecksumAlgorithm,
        path: Vec<u8>,
    },
    ChecksumResponse {
        status: Status,
        algorithm: ChecksumAlgorithm,
        length: u64,
        digest: [u8; CHECKSUM_DIGEST_LEN],
    },
}

impl PipeValue {
    /// The borrowed wire view.
    pub fn message(&self) -> PipeMessage<'_> {
        match self {
            Self::ResumeKeyRequest => PipeMessage::ResumeKeyRequest,
            Self::ResumeKeyResponse(key) => PipeMessage::ResumeKeyResponse { key: *key },
            Self::OpenRequest { flags, path } => PipeMessage::OpenRequest {
                flags: *flags,
                path,
            },
            Self::OpenResponse { status, key, size } => PipeMessage::OpenResponse {
                status: *status,
                key: *key,
                size: *size,
            },
            Self::NegotiateRequest(request) => PipeMessage::NegotiateRequest(request.clone()),
            Self::NegotiateResponse {
                status,
                version,
                credits,
                max_send_size,
                max_io_size,
                auth_key,
                providers,
                capabilities,
                endpoint,
            } => PipeMessage::NegotiateResponse(NegotiateResponse {
                status: *status,
                version: *version,
                credits: *credits,
                max_send_size: *max_send_size,
                max_io_size: *max_io_size,
                auth_key: *auth_key,
                providers: providers.clone(),
                capabilities: *capabilities,
                endpoint,
            }),
            Self::StatRequest { path } => PipeMessage::StatRequest { path },
            Self::StatResponse {
                status,
                size,
                modified_ns,
                file_id,
            } => PipeMessage::StatResponse {
                status: *status,
                size: *size,
                modified_ns: *modified_ns,
                file_id: *file_id,
            },
            Self::Error { code, opcode } => PipeMessage::Error {
                code: *code,
                opcode: *opcode,
            },
            Self::File(value) => PipeMessage::File(value.message()),
            Self::ChecksumRequest { algorithm, path } => PipeMessage::ChecksumRequest {
                algorithm: *algorithm,
                path,
            },
            Self::ChecksumResponse {
                status,
                algorithm,
                length,
                digest,
            } => PipeMessage::ChecksumResponse {
                status: *status,
                algorithm: *algorithm,
                length: *length,
                digest: *digest,
            },
        }
    }
}

// ----- normalisation shared by both generators -----

/// A status from any code.
pub fn status_from(code: u32) -> Status {
    let index = usize::try_from(code).unwrap_or(0) % STATUS_CODES.len();
    Status::from_u32(STATUS_CODES[index]).expect("STATUS_CODES are defined")
}

/// A non-empty buffer descriptor.
fn nonempty_desc(addr: u64, key: u32, len: u32) -> BufferDescriptor {
    BufferDescriptor::new(addr, key, len.max(1))
}

/// `1..=MAX_SEGMENTS` items from `items`, padding with `pad` when empty.
fn segment_list<T: Clone>(mut items: Vec<T>, pad: T) -> Vec<T> {
    items.truncate(MAX_SEGMENTS);
    if items.is_empty() {
        items.push(pad);
    }
    items
}

/// A valid vectored write: non-empty segments whose lengths add up within
/// `u32` (equal lengths under COLLAPSE), data no longer than the total.
fn write_v(
    handle: u32,
    status: BufferDescriptor,
    segments: Vec<(u64, u32)>,
    collapse: bool,
    data: Vec<u8>,
) -> (Flags, BodyValue) {
    let segments = segment_list(segments, (0, 1));
    let first_len = segments[0].1.max(1);
    // Bound each length so the sum fits a u32.
    let cap = u32::MAX / MAX_SEGMENTS as u32;
    let segments: Vec<WriteSegment> = segments
        .iter()
        .map(|&(offset, len)| {
            let len = if collapse { first_len } else { len.max(1) };
            WriteSegment::new(offset, len.min(cap))
        })
        .collect();
    let total_len = if collapse {
        segments[0].len()
    } else {
        segments.iter().map(WriteSegment::len).sum()
    };
    let mut data = data;
    data.truncate(total_len as usize);
    let flags = if collapse {
        Flags::COLLAPSE
    } else {
        Flags::empty()
    };
    (
        flags,
        BodyValue::WriteV {
            handle,
            total_len,
            status,
            segments,
            data,
        },
    )
}

/// A valid single write: total at least 1 and at least the data carried.
fn write(
    handle: u32,
    offset: u64,
    total_len: u32,
    status: BufferDescriptor,
    data: Vec<u8>,
) -> BodyValue {
    let total_len = total_len.max(data.len() as u32).max(1);
    BodyValue::Write {
        handle,
        offset,
        total_len,
        status,
        data,
    }
}

/// Flags an opcode may carry, from arbitrary bits: only INTERRUPT, and only
/// on data requests.
fn interrupt_flag(body: &BodyValue, interrupt: bool) -> Flags {
    let data_request = matches!(
        body,
        BodyValue::Read(_)
            | BodyValue::ReadV { .. }
            | BodyValue::Write { .. }
            | BodyValue::WriteV { .. }
    );
    if interrupt && data_request {
        Flags::INTERRUPT
    } else {
        Flags::empty()
    }
}

fn open_flags(bits: u32) -> OpenFlags {
    let bits = bits & OpenFlags::all().bits();
    OpenFlags::from_wire(bits).unwrap_or(OpenFlags::READ | OpenFlags::WRITE)
}

fn provider(name: &[u8]) -> ProviderName {
    let mut bytes: Vec<u8> = name
        .iter()
        .take(PROVIDER_NAME_LEN)
        .map(|b| b % 94 + b'!')
        .collect();
    if bytes.is_empty() {
        bytes.push(b'x');
    }
    ProviderName::from_bytes(&bytes).expect("printable ASCII, 1..=32 bytes")
}

fn provider_list(names: &[Vec<u8>]) -> ProviderList {
    names
        .iter()
        .take(MAX_PROVIDERS)
        .map(|n| provider(n))
        .collect()
}

fn path(mut bytes: Vec<u8>) -> Vec<u8> {
    bytes.truncate(MAX_PATH_LEN);
    for b in &mut bytes {
        if *b == 0 {
            *b = b'/';
        }
    }
    if bytes.is_empty() {
        bytes.push(b'f');
    }
    bytes
}

// ----- proptest strategies -----

fn status() -> impl Strategy<Value = Status> {
    (0..STATUS_CODES.len() as u32).prop_map(status_from)
}

fn desc() -> impl Strategy<Value = BufferDescriptor> {
    (any::<u64>(), any::<u32>(), any::<u32>())
        .prop_map(|(addr, key, len)| BufferDescriptor::new(addr, key, len))
}

fn nonempty() -> impl Strategy<Value = BufferDescriptor> {
    (any::<u64>(), any::<u32>(), 1..=u32::MAX)
        .prop_map(|(addr, key, len)| nonempty_desc(addr, key, len))
}

fn data(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..max)
}

fn body() -> impl Strategy<Value = (Flags, BodyValue)> {
    let plain = |s: BoxedStrategy<BodyValue>| s.prop_map(|b| (Flags::empty(), b));
    prop_oneof![
        plain(
            any::<[u8; 16]>()
                .prop_map(|k| BodyValue::AuthRequest(AuthKey(k)))
                .boxed()
        ),
        plain(status().prop_map(BodyValue::AuthResponse).boxed()),
        plain(
            (status(), any::<u16>(), any::<u32>())
                .prop_map(
                    |(status, credits, keepalive_ms)| BodyValue::StatusResponse {
                        status,
                        credits,
                        keepalive_ms,
                    }
                )
                .boxed()
        ),
        plain(
            any::<i32>()
                .prop_filter("never 0", |d| *d != 0)
                .prop_map(BodyValue::CreditRequest)
                .boxed()
        ),
        plain((1..=i32::MAX).prop_map(BodyValue::CreditAck).boxed()),
        plain(Just(BodyValue::CreditGiveUp).boxed()),
        plain(Just(BodyValue::CreditResponse).boxed()),
        plain(
            any::<[u8; 16]>()
                .prop_map(|k| BodyValue::RegisterFile(ResumeKey(k)))
                .boxed()
        ),
        plain(
            (status(), any::<u32>(), any::<u64>())
                .prop_map(|(status, handle, size)| BodyValue::RegisterFileCompletion {
                    status,
                    handle,
                    size,
                })
                .boxed()
        ),
        (
            any::<bool>(),
            any::<u32>(),
            any::<u64>(),
            nonempty(),
            desc()
        )
            .prop_map(|(interrupt, handle, offset, dest, status)| {
                let body = BodyValue::Read(ReadRequest {
                    handle,
                    offset,
                    dest,
                    status,
                });
                (interrupt_flag(&body, interrupt), body)
            }),
        (
            any::<bool>(),
            any::<u32>(),
            desc(),
            vec((any::<u64>(), nonempty()), 1..=MAX_SEGMENTS)
        )
            .prop_map(|(interrupt, handle, status, segments)| {
                let segments = segments
                    .into_iter()
                    .map(|(offset, dest)| ReadSegment::new(offset, dest))
                    .collect();
                let body = BodyValue::ReadV {
                    handle,
                    status,
                    segments,
                };
                (interrupt_flag(&body, interrupt), body)
            }),
        (
            any::<bool>(),
            any::<u32>(),
            any::<u64>(),
            any::<u32>(),
            desc(),
            data(300)
        )
            .prop_map(|(interrupt, handle, offset, total, status, data)| {
                let body = write(handle, offset, total, status, data);
                (interrupt_flag(&body, interrupt), body)
            }),
        (
            any::<bool>(),
            any::<u32>(),
            desc(),
            vec((any::<u64>(), 1..=u32::MAX), 1..=MAX_SEGMENTS),
            any::<bool>(),
            data(300)
        )
            .prop_map(|(interrupt, handle, status, segments, collapse, data)| {
                let (flags, body) = write_v(handle, status, segments, collapse, data);
                (flags | interrupt_flag(&body, interrupt), body)
            }),
        plain(
            (any::<u32>(), vec(any::<u8>(), 1..300))
                .prop_map(|(data_offset, data)| BodyValue::WriteData { data_offset, data })
                .boxed()
        ),
        plain(any::<u32>().prop_map(BodyValue::Cancel).boxed()),
        plain(any::<u32>().prop_map(BodyValue::Close).boxed()),
        plain(
            (status(), any::<u64>())
                .prop_map(|(status, bytes)| BodyValue::Completion { status, bytes })
                .boxed()
        ),
        plain(Just(BodyValue::InterruptRequest).boxed()),
        plain(Just(BodyValue::InterruptResponse).boxed()),
        plain(Just(BodyValue::Keepalive).boxed()),
        plain(Just(BodyValue::KeepaliveResponse).boxed()),
        plain(status().prop_map(BodyValue::Terminate).boxed()),
    ]
}

/// Every valid RDMA-channel message.
pub fn message_value() -> impl Strategy<Value = MessageValue> {
    (any::<u16>(), any::<u32>(), body()).prop_map(|(credits, request_id, (flags, body))| {
        MessageValue {
            flags,
            credits,
            request_id,
            body,
        }
    })
}

fn provider_names() -> impl Strategy<Value = Vec<Vec<u8>>> {
    vec(vec(any::<u8>(), 1..=PROVIDER_NAME_LEN), 0..=MAX_PROVIDERS)
}

/// Every valid pipe message.
pub fn pipe_value() -> impl Strategy<Value = PipeValue> {
    prop_oneof![
        Just(PipeValue::ResumeKeyRequest),
        any::<[u8; 16]>().prop_map(|k| PipeValue::ResumeKeyResponse(ResumeKey(k))),
        (
            0u32..16,
            prop_oneof![vec(1u8..=255, 1..64), vec(1u8..=255, 1..=MAX_PATH_LEN)]
        )
            .prop_map(|(bits, bytes)| PipeValue::OpenRequest {
                flags: open_flags(bits),
                path: path(bytes),
            }),
        (status(), any::<[u8; 16]>(), any::<u64>()).prop_map(|(status, key, size)| {
            PipeValue::OpenResponse {
                status,
                key: ResumeKey(key),
                size,
            }
        }),
        (
            any::<[u8; 16]>(),
            any::<(u16, u16, u16)>(),
            MIN_SEND_SIZE..=u32::MAX,
            (any::<u32>(), any::<u64>()),
            provider_names()
        )
            .prop_map(
                |(key, (a, b, credits), max_send_size, (max_io_size, caps), names)| {
                    PipeValue::NegotiateRequest(NegotiateRequest {
                        server_key: ResumeKey(key),
                        min_version: a.min(b),
                        max_version: a.max(b),
                        credits_requested: credits,
                        max_send_size,
                        max_io_size,
                        providers: provider_list(&names),
                        capabilities: Capabilities(caps),
                    })
                }
            ),
        (
            status(),
            any::<(u16, u16, u32, u32)>(),
            (any::<[u8; 16]>(), any::<u64>()),
            provider_names(),
            vec(any::<u8>(), 0..=MAX_ENDPOINT_LEN)
        )
            .prop_map(
                |(
                    status,
                    (version, credits, max_send_size, max_io_size),
                    (key, caps),
                    names,
                    endpoint,
                )| {
                    PipeValue::NegotiateResponse {
                        status,
                        version,
                        credits,
                        max_send_size,
                        max_io_size,
                        auth_key: AuthKey(key),
                        providers: provider_list(&names),
                        capabilities: Capabilities(caps),
                        endpoint,
                    }
                }
            ),
        prop_oneof![vec(1u8..=255, 1..64), vec(1u8..=255, 1..=MAX_PATH_LEN)]
            .prop_map(|bytes| PipeValue::StatRequest { path: path(bytes) }),
        (status(), any::<(u64, u64, u64)>()).prop_map(|(status, (size, modified_ns, file_id))| {
            PipeValue::StatResponse {
                status,
                size,
                modified_ns,
                file_id,
            }
        }),
        (any::<u32>(), any::<u8>()).prop_map(|(code, opcode)| PipeValue::Error {
            code: PipeErrorCode(code),
            opcode,
        }),
        crate::file_values::file_value(status()).prop_map(PipeValue::File),
        (any::<u8>(), vec(1u8..=255, 1..64)).prop_map(|(algorithm, bytes)| {
            PipeValue::ChecksumRequest {
                algorithm: ChecksumAlgorithm(algorithm),
                path: path(bytes),
            }
        }),
        (
            status(),
            any::<u8>(),
            any::<u64>(),
            any::<[u8; CHECKSUM_DIGEST_LEN]>()
        )
            .prop_map(|(status, algorithm, length, digest)| {
                PipeValue::ChecksumResponse {
                    status,
                    algorithm: ChecksumAlgorithm(algorithm),
                    length,
                    digest,
                }
            }),
    ]
}

/// Every valid status block.
pub fn status_block() -> impl Strategy<Value = StatusBlock> {
    (any::<u32>(), status(), any::<u64>(), any::<u16>()).prop_map(
        |(request_id, status, bytes, credits)| StatusBlock {
            request_id,
            status,
            bytes,
            credits,
        },
    )
}

// ----- arbitrary (fuzzing) -----

#[cfg(feature = "arbitrary")]
mod fuzzing {
    use super::*;
    use arbitrary::{Arbitrary, Result, Unstructured};

    /// A positive credit delta from any value.
    fn positive(delta: i32) -> i32 {
        (delta & i32::MAX).max(1)
    }

    fn status(u: &mut Unstructured<'_>) -> Result<Status> {
        Ok(status_from(u.arbitrary()?))
    }

    fn desc(u: &mut Unstructured<'_>) -> Result<BufferDescriptor> {
        Ok(BufferDescriptor::new(
            u.arbitrary()?,
            u.arbitrary()?,
            u.arbitrary()?,
        ))
    }

    fn nonempty(u: &mut Unstructured<'_>) -> Result<BufferDescriptor> {
        Ok(nonempty_desc(
            u.arbitrary()?,
            u.arbitrary()?,
            u.arbitrary()?,
        ))
    }

    /// A valid body and the COLLAPSE flag it needs.
    fn body(u: &mut Unstructured<'_>) -> Result<(Flags, BodyValue)> {
        type B = BodyValue;
        let body = match u.choose_index(22)? {
            0 => B::AuthRequest(AuthKey(u.arbitrary()?)),
            1 => B::AuthResponse(status(u)?),
            2 => B::StatusResponse {
                status: status(u)?,
                credits: u.arbitrary()?,
                keepalive_ms: u.arbitrary()?,
            },
            3 => {
                let delta: i32 = u.arbitrary()?;
                B::CreditRequest(if delta == 0 { 1 } else { delta })
            }
            4 => B::CreditAck(positive(u.arbitrary()?)),
            5 => B::CreditGiveUp,
            6 => B::CreditResponse,
            7 => B::RegisterFile(ResumeKey(u.arbitrary()?)),
            8 => B::RegisterFileCompletion {
                status: status(u)?,
                handle: u.arbitrary()?,
                size: u.arbitrary()?,
            },
            9 => B::Read(ReadRequest {
                handle: u.arbitrary()?,
                offset: u.arbitrary()?,
                dest: nonempty(u)?,
                status: desc(u)?,
            }),
            10 => {
                let handle = u.arbitrary()?;
                let status = desc(u)?;
                let count = u.int_in_range(1..=MAX_SEGMENTS)?;
                let mut segments = Vec::with_capacity(count);
                for _ in 0..count {
                    segments.push(ReadSegment::new(u.arbitrary()?, nonempty(u)?));
                }
                B::ReadV {
                    handle,
                    status,
                    segments,
                }
            }
            11 => write(
                u.arbitrary()?,
                u.arbitrary()?,
                u.arbitrary()?,
                desc(u)?,
                u.arbitrary()?,
            ),
            12 => {
                let handle = u.arbitrary()?;
                let status = desc(u)?;
                let segments: Vec<(u64, u32)> = u.arbitrary()?;
                let collapse = u.arbitrary()?;
                return Ok(write_v(handle, status, segments, collapse, u.arbitrary()?));
            }
            13 => {
                let data_offset = u.arbitrary()?;
                let mut data: Vec<u8> = u.arbitrary()?;
                if data.is_empty() {
                    data.push(0);
                }
                B::WriteData { data_offset, data }
            }
            14 => B::Cancel(u.arbitrary()?),
            15 => B::Close(u.arbitrary()?),
            16 => B::Completion {
                status: status(u)?,
                bytes: u.arbitrary()?,
            },
            17 => B::InterruptRequest,
            18 => B::InterruptResponse,
            19 => B::Keepalive,
            20 => B::KeepaliveResponse,
            _ => B::Terminate(status(u)?),
        };
        Ok((Flags::empty(), body))
    }

    impl<'a> Arbitrary<'a> for MessageValue {
        fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
            let credits = u.arbitrary()?;
            let request_id = u.arbitrary()?;
            let interrupt = u.arbitrary()?;
            let (flags, body) = body(u)?;
            Ok(Self {
                flags: flags | interrupt_flag(&body, interrupt),
                credits,
                request_id,
                body,
            })
        }
    }

    impl<'a> Arbitrary<'a> for PipeValue {
        fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
            Ok(match u.choose_index(12)? {
                0 => Self::ResumeKeyRequest,
                1 => Self::ResumeKeyResponse(ResumeKey(u.arbitrary()?)),
                2 => Self::OpenRequest {
                    flags: open_flags(u.arbitrary()?),
                    path: path(u.arbitrary()?),
                },
                3 => Self::OpenResponse {
                    status: status(u)?,
                    key: ResumeKey(u.arbitrary()?),
                    size: u.arbitrary()?,
                },
                4 => {
                    let (a, b): (u16, u16) = u.arbitrary()?;
                    let names: Vec<Vec<u8>> = u.arbitrary()?;
                    Self::NegotiateRequest(NegotiateRequest {
                        server_key: ResumeKey(u.arbitrary()?),
                        min_version: a.min(b),
                        max_version: a.max(b),
                        credits_requested: u.arbitrary()?,
                        max_send_size: u.int_in_range(MIN_SEND_SIZE..=u32::MAX)?,
                        max_io_size: u.arbitrary()?,
                        providers: provider_list(&names),
                        capabilities: Capabilities(u.arbitrary()?),
                    })
                }
                6 => Self::StatRequest {
                    path: path(u.arbitrary()?),
                },
                7 => Self::StatResponse {
                    status: status(u)?,
                    size: u.arbitrary()?,
                    modified_ns: u.arbitrary()?,
                    file_id: u.arbitrary()?,
                },
                8 => Self::Error {
                    code: PipeErrorCode(u.arbitrary()?),
                    opcode: u.arbitrary()?,
                },
                9 => Self::File(crate::file_values::FileValue::from_raw(
                    status(u)?,
                    u.arbitrary()?,
                )),
                10 => Self::ChecksumRequest {
                    algorithm: ChecksumAlgorithm(u.arbitrary()?),
                    path: path(u.arbitrary()?),
                },
                11 => Self::ChecksumResponse {
                    status: status(u)?,
                    algorithm: ChecksumAlgorithm(u.arbitrary()?),
                    length: u.arbitrary()?,
                    digest: u.arbitrary()?,
                },
                _ => {
                    let names: Vec<Vec<u8>> = u.arbitrary()?;
                    let mut endpoint: Vec<u8> = u.arbitrary()?;
                    endpoint.truncate(MAX_ENDPOINT_LEN);
                    Self::NegotiateResponse {
                        status: status(u)?,
                        version: u.arbitrary()?,
                        credits: u.arbitrary()?,
                        max_send_size: u.arbitrary()?,
                        max_io_size: u.arbitrary()?,
                        auth_key: AuthKey(u.arbitrary()?),
                        providers: provider_list(&names),
                        capabilities: Capabilities(u.arbitrary()?),
                        endpoint,
                    }
                }
            })
        }
    }

    /// A valid status block.
    pub fn status_block(u: &mut Unstructured<'_>) -> Result<StatusBlock> {
        Ok(StatusBlock {
            request_id: u.arbitrary()?,
            status: status(u)?,
            bytes: u.arbitrary()?,
            credits: u.arbitrary()?,
        })
    }
}

#[cfg(feature = "arbitrary")]
pub use fuzzing::status_block as arbitrary_status_block;
