//! One sample of every message with fixed field values, and the golden bytes
//! they encode to. The same hex is shown in `docs/PROTOCOL.md`; the golden
//! test in `wire_codec.rs` checks both.

use rdio_core::wire::{
    Attributes, DirEntries, EntryKind, FileMessage, MakeDirFlags, RemoveFlags, RenameFlags,
    SetAttrFlags,
};
use rdio_core::wire::{
    AuthKey, BatchRead, Body, BufferDescriptor, Capabilities, ChecksumAlgorithm, Flags, Message,
    NegotiateRequest, NegotiateResponse, OpenFlags, PipeErrorCode, PipeMessage, ProviderList,
    ProviderName, ReadBatchRequest, ReadRequest, ReadSegment, ReadVRequest, ResumeKey, Status,
    StatusBlock, WriteRequest, WriteSegment, WriteVRequest,
};

/// A named sample: what it is, and its encoding as 16 space-separated hex
/// bytes per line.
pub struct Sample<T> {
    pub name: &'static str,
    pub value: T,
    pub golden: &'static str,
}

/// Recognisable key bytes: `a0 a1 .. af` and `b0 b1 .. bf`.
pub const AUTH_KEY: AuthKey = AuthKey([
    0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf,
]);
pub const RESUME_KEY: ResumeKey = ResumeKey([
    0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf,
]);

const REQUEST_ID: u32 = 0x1122_3344;
const STATUS_BD: BufferDescriptor = BufferDescriptor::new(0x0000_7f00_0000_1000, 0x0000_beef, 24);

static READ_SEGMENTS: [ReadSegment; 2] = [
    ReadSegment::new(
        0x1000,
        BufferDescriptor::new(0x0000_7f00_0001_0000, 0x0000_beef, 0x200),
    ),
    ReadSegment::new(
        0x8000,
        BufferDescriptor::new(0x0000_7f00_0002_0000, 0x0000_beef, 0x100),
    ),
];
/// Two 4 KiB reads of handle 7, each with its status block right after
/// its data; the batch's id is the first read's.
static BATCH_READS: [BatchRead; 2] = [
    BatchRead::new(
        0x1122_3344,
        7,
        0x2000,
        BufferDescriptor::new(0x0000_7f00_0001_0000, 0x0000_beef, 0x1000),
        BufferDescriptor::new(0x0000_7f00_0001_1000, 0x0000_beef, 24),
    ),
    BatchRead::new(
        0x1122_3384,
        7,
        0x3000,
        BufferDescriptor::new(0x0000_7f00_0002_0000, 0x0000_beef, 0x1000),
        BufferDescriptor::new(0x0000_7f00_0002_1000, 0x0000_beef, 24),
    ),
];
static WRITE_SEGMENTS: [WriteSegment; 2] = [WriteSegment::new(0x0, 3), WriteSegment::new(0x100, 2)];
static COLLAPSE_SEGMENTS: [WriteSegment; 3] = [
    WriteSegment::new(0x0, 4),
    WriteSegment::new(0x1000, 4),
    WriteSegment::new(0x2000, 4),
];

/// The one entry of the `ListResponse` sample: `a.txt`, a file of 5
/// bytes, mode 0644.
static LIST_ENTRY: [u8; 37] = [
    0x00, 0x05, 0x00, 0x00, 0xa4, 0x01, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
    b'a', b'.', b't', b'x', b't',
];

/// Attributes with recognisable times and identity.
fn attributes(kind: EntryKind, mode: u32, size: u64) -> Attributes {
    Attributes {
        kind,
        mode,
        size,
        modified_ns: 0x1122_3344_5566_7788,
        file_id: 0x0102_0304_0506_0708,
    }
}

fn message(flags: Flags, credits: u16, body: Body<'static>) -> Message<'static> {
    Message {
        flags,
        credits,
        demand: 0,
        request_id: REQUEST_ID,
        body,
    }
}

/// One message per RDMA opcode, plus the COLLAPSE form of a vectored write.
pub fn rdma() -> Vec<Sample<Message<'static>>> {
    let none = Flags::empty();
    // The Read, also the base of its credit-demand twin.
    let read = message(
        Flags::INTERRUPT,
        30,
        Body::Read(ReadRequest {
            handle: 7,
            offset: 0x2000,
            dest: BufferDescriptor::new(0x0000_7f00_0001_0000, 0x0000_beef, 0x1000),
            status: STATUS_BD,
        }),
    );
    vec![
        Sample {
            name: "AuthRequest",
            value: message(none, 32, Body::AuthRequest { key: AUTH_KEY }),
            golden: "01 01 00 00 20 00 00 00 44 33 22 11 10 00 00 00
a0 a1 a2 a3 a4 a5 a6 a7 a8 a9 aa ab ac ad ae af",
        },
        Sample {
            name: "AuthResponse",
            value: message(
                none,
                0,
                Body::AuthResponse {
                    status: Status::Success,
                },
            ),
            golden: "01 02 00 00 00 00 00 00 44 33 22 11 04 00 00 00
00 00 00 00",
        },
        Sample {
            name: "StatusResponse",
            value: message(
                none,
                1,
                Body::StatusResponse {
                    status: Status::Success,
                    credits: 32,
                    keepalive_ms: 30_000,
                },
            ),
            golden: "01 03 00 00 01 00 00 00 44 33 22 11 0c 00 00 00
00 00 00 00 20 00 00 00 30 75 00 00",
        },
        Sample {
            name: "CreditRequest",
            value: message(none, 0, Body::CreditRequest { delta: -4 }),
            golden: "01 10 00 00 00 00 00 00 44 33 22 11 04 00 00 00
fc ff ff ff",
        },
        Sample {
            name: "CreditAck",
            value: message(none, 36, Body::CreditAck { delta: 4 }),
            golden: "01 11 00 00 24 00 00 00 44 33 22 11 04 00 00 00
04 00 00 00",
        },
        Sample {
            name: "CreditGiveUp",
            value: message(none, 31, Body::CreditGiveUp),
            golden: "01 12 00 00 1f 00 00 00 44 33 22 11 00 00 00 00",
        },
        Sample {
            name: "CreditResponse",
            value: message(none, 1, Body::CreditResponse),
            golden: "01 13 00 00 01 00 00 00 44 33 22 11 00 00 00 00",
        },
        Sample {
            name: "RegisterFile",
            value: message(none, 31, Body::RegisterFile { key: RESUME_KEY }),
            golden: "01 20 00 00 1f 00 00 00 44 33 22 11 10 00 00 00
b0 b1 b2 b3 b4 b5 b6 b7 b8 b9 ba bb bc bd be bf",
        },
        Sample {
            name: "RegisterFileCompletion",
            value: message(
                none,
                1,
                Body::RegisterFileCompletion {
                    status: Status::Success,
                    handle: 7,
                    size: 0x0001_0000_0000,
                },
            ),
            golden: "01 28 00 00 01 00 00 00 44 33 22 11 10 00 00 00
00 00 00 00 07 00 00 00 00 00 00 00 01 00 00 00",
        },
        Sample {
            name: "Read",
            value: read,
            golden: "01 21 01 00 1e 00 00 00 44 33 22 11 30 00 00 00
07 00 00 00 00 00 00 00 00 20 00 00 00 00 00 00
00 00 01 00 00 7f 00 00 ef be 00 00 00 10 00 00
00 10 00 00 00 7f 00 00 ef be 00 00 18 00 00 00",
        },
        Sample {
            name: "Read with a credit demand",
            value: Message { demand: 3, ..read },
            golden: "01 21 01 00 1e 00 03 00 44 33 22 11 30 00 00 00
07 00 00 00 00 00 00 00 00 20 00 00 00 00 00 00
00 00 01 00 00 7f 00 00 ef be 00 00 00 10 00 00
00 10 00 00 00 7f 00 00 ef be 00 00 18 00 00 00",
        },
        Sample {
            name: "ReadV",
            value: message(
                none,
                29,
                Body::ReadV(ReadVRequest {
                    handle: 7,
                    status: STATUS_BD,
                    segments: &READ_SEGMENTS,
                }),
            ),
            golden: "01 22 00 00 1d 00 00 00 44 33 22 11 48 00 00 00
07 00 00 00 02 00 00 00 00 10 00 00 00 7f 00 00
ef be 00 00 18 00 00 00 00 10 00 00 00 00 00 00
00 00 01 00 00 7f 00 00 ef be 00 00 00 02 00 00
00 80 00 00 00 00 00 00 00 00 02 00 00 7f 00 00
ef be 00 00 00 01 00 00",
        },
        Sample {
            name: "ReadBatch",
            value: message(
                Flags::INTERRUPT,
                30,
                Body::ReadBatch(ReadBatchRequest {
                    reads: &BATCH_READS,
                }),
            ),
            golden: "01 2a 01 00 1e 00 00 00 44 33 22 11 68 00 00 00
02 00 00 00 00 00 00 00 44 33 22 11 07 00 00 00
00 20 00 00 00 00 00 00 00 00 01 00 00 7f 00 00
ef be 00 00 00 10 00 00 00 10 01 00 00 7f 00 00
ef be 00 00 18 00 00 00 84 33 22 11 07 00 00 00
00 30 00 00 00 00 00 00 00 00 02 00 00 7f 00 00
ef be 00 00 00 10 00 00 00 10 02 00 00 7f 00 00
ef be 00 00 18 00 00 00",
        },
        Sample {
            name: "Write",
            value: message(
                none,
                28,
                Body::Write(WriteRequest {
                    handle: 7,
                    offset: 0x40,
                    total_len: 6,
                    status: STATUS_BD,
                    data: b"abc",
                }),
            ),
            golden: "01 23 00 00 1c 00 00 00 44 33 22 11 23 00 00 00
07 00 00 00 06 00 00 00 40 00 00 00 00 00 00 00
00 10 00 00 00 7f 00 00 ef be 00 00 18 00 00 00
61 62 63",
        },
        Sample {
            name: "WriteV",
            value: message(
                Flags::INTERRUPT,
                27,
                Body::WriteV(WriteVRequest {
                    handle: 7,
                    total_len: 5,
                    status: STATUS_BD,
                    segments: &WRITE_SEGMENTS,
                    data: b"hello",
                }),
            ),
            golden: "01 24 01 00 1b 00 00 00 44 33 22 11 45 00 00 00
07 00 00 00 02 00 00 00 05 00 00 00 00 00 00 00
00 10 00 00 00 7f 00 00 ef be 00 00 18 00 00 00
00 00 00 00 00 00 00 00 03 00 00 00 00 00 00 00
00 01 00 00 00 00 00 00 02 00 00 00 00 00 00 00
68 65 6c 6c 6f",
        },
        Sample {
            name: "WriteV (COLLAPSE)",
            value: message(
                Flags::COLLAPSE,
                26,
                Body::WriteV(WriteVRequest {
                    handle: 7,
                    total_len: 4,
                    status: STATUS_BD,
                    segments: &COLLAPSE_SEGMENTS,
                    data: b"ab",
                }),
            ),
            golden: "01 24 02 00 1a 00 00 00 44 33 22 11 52 00 00 00
07 00 00 00 03 00 00 00 04 00 00 00 00 00 00 00
00 10 00 00 00 7f 00 00 ef be 00 00 18 00 00 00
00 00 00 00 00 00 00 00 04 00 00 00 00 00 00 00
00 10 00 00 00 00 00 00 04 00 00 00 00 00 00 00
00 20 00 00 00 00 00 00 04 00 00 00 00 00 00 00
61 62",
        },
        Sample {
            name: "WriteData",
            value: message(
                none,
                25,
                Body::WriteData {
                    data_offset: 3,
                    data: b"def",
                },
            ),
            golden: "01 25 00 00 19 00 00 00 44 33 22 11 0b 00 00 00
03 00 00 00 00 00 00 00 64 65 66",
        },
        Sample {
            name: "Cancel",
            value: message(
                none,
                24,
                Body::Cancel {
                    target: 0x1122_3300,
                },
            ),
            golden: "01 26 00 00 18 00 00 00 44 33 22 11 08 00 00 00
00 33 22 11 00 00 00 00",
        },
        Sample {
            name: "Close",
            value: message(none, 23, Body::Close { handle: 7 }),
            golden: "01 27 00 00 17 00 00 00 44 33 22 11 08 00 00 00
07 00 00 00 00 00 00 00",
        },
        Sample {
            name: "Completion",
            value: message(
                none,
                1,
                Body::Completion {
                    status: Status::Cancelled,
                    bytes: 0x1234,
                },
            ),
            golden: "01 29 00 00 01 00 00 00 44 33 22 11 10 00 00 00
06 00 00 00 00 00 00 00 34 12 00 00 00 00 00 00",
        },
        Sample {
            name: "InterruptRequest",
            value: message(none, 22, Body::InterruptRequest),
            golden: "01 30 00 00 16 00 00 00 44 33 22 11 00 00 00 00",
        },
        Sample {
            name: "InterruptResponse",
            value: message(none, 1, Body::InterruptResponse),
            golden: "01 31 00 00 01 00 00 00 44 33 22 11 00 00 00 00",
        },
        Sample {
            name: "Keepalive",
            value: message(none, 21, Body::Keepalive),
            golden: "01 40 00 00 15 00 00 00 44 33 22 11 00 00 00 00",
        },
        Sample {
            name: "KeepaliveResponse",
            value: message(none, 1, Body::KeepaliveResponse),
            golden: "01 41 00 00 01 00 00 00 44 33 22 11 00 00 00 00",
        },
        Sample {
            name: "Terminate",
            value: message(
                none,
                0,
                Body::Terminate {
                    reason: Status::ProtocolError,
                },
            ),
            golden: "01 7f 00 00 00 00 00 00 44 33 22 11 08 00 00 00
0f 00 00 00 00 00 00 00",
        },
    ]
}

fn providers(names: &[&str]) -> ProviderList {
    names
        .iter()
        .map(|name| ProviderName::new(name).expect("valid provider name"))
        .collect()
}

/// Every pipe message.
pub fn pipe() -> Vec<Sample<PipeMessage<'static>>> {
    vec![
        Sample {
            name: "ResumeKeyRequest",
            value: PipeMessage::ResumeKeyRequest,
            golden: "52 44 49 4f 01 01 00 00 00 00 00 00",
        },
        Sample {
            name: "ResumeKeyResponse",
            value: PipeMessage::ResumeKeyResponse { key: RESUME_KEY },
            golden: "52 44 49 4f 01 02 00 00 10 00 00 00 b0 b1 b2 b3
b4 b5 b6 b7 b8 b9 ba bb bc bd be bf",
        },
        Sample {
            name: "OpenRequest",
            value: PipeMessage::OpenRequest {
                flags: OpenFlags::READ | OpenFlags::WRITE,
                path: b"dir/file.bin",
            },
            golden: "52 44 49 4f 01 03 00 00 14 00 00 00 03 00 00 00
0c 00 00 00 64 69 72 2f 66 69 6c 65 2e 62 69 6e",
        },
        Sample {
            name: "OpenResponse",
            value: PipeMessage::OpenResponse {
                status: Status::Success,
                key: RESUME_KEY,
                size: 0x0010_0000,
            },
            golden: "52 44 49 4f 01 04 00 00 20 00 00 00 00 00 00 00
00 00 00 00 b0 b1 b2 b3 b4 b5 b6 b7 b8 b9 ba bb
bc bd be bf 00 00 10 00 00 00 00 00",
        },
        Sample {
            name: "NegotiateRequest",
            value: PipeMessage::NegotiateRequest(NegotiateRequest {
                server_key: RESUME_KEY,
                min_version: 1,
                max_version: 1,
                credits_requested: 32,
                max_send_size: 4096,
                max_io_size: 1 << 20,
                providers: providers(&["ofi:tcp", "loopback"]),
                // Two bits no server knows (yet): answered with neither.
                capabilities: Capabilities(0x8000_0000_0000_0001),
            }),
            golden: "52 44 49 4f 01 05 00 00 68 00 00 00 b0 b1 b2 b3
b4 b5 b6 b7 b8 b9 ba bb bc bd be bf 01 00 01 00
20 00 02 00 00 10 00 00 00 00 10 00 01 00 00 00
00 00 00 80 6f 66 69 3a 74 63 70 00 00 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
00 00 00 00 6c 6f 6f 70 62 61 63 6b 00 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
00 00 00 00",
        },
        Sample {
            name: "NegotiateResponse",
            value: PipeMessage::NegotiateResponse(NegotiateResponse {
                status: Status::Success,
                version: 1,
                credits: 32,
                max_send_size: 4096,
                max_io_size: 1 << 20,
                auth_key: AUTH_KEY,
                providers: providers(&["ofi:tcp"]),
                capabilities: Capabilities::NONE,
                endpoint: b"127.0.0.1:7472",
            }),
            golden: "52 44 49 4f 01 06 00 00 5a 00 00 00 00 00 00 00
01 00 20 00 00 10 00 00 00 00 10 00 a0 a1 a2 a3
a4 a5 a6 a7 a8 a9 aa ab ac ad ae af 01 00 0e 00
00 00 00 00 00 00 00 00 6f 66 69 3a 74 63 70 00
00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
00 00 00 00 00 00 00 00 31 32 37 2e 30 2e 30 2e
31 3a 37 34 37 32",
        },
        Sample {
            name: "Error",
            value: PipeMessage::Error {
                code: PipeErrorCode::BAD_PROVIDER_NAME,
                opcode: 0x05,
            },
            golden: "52 44 49 4f 01 30 00 00 08 00 00 00 07 00 00 00
05 00 00 00",
        },
        Sample {
            name: "StatRequest",
            value: PipeMessage::StatRequest {
                path: b"dir/file.bin",
            },
            golden: "52 44 49 4f 01 07 00 00 10 00 00 00 0c 00 00 00
64 69 72 2f 66 69 6c 65 2e 62 69 6e",
        },
        Sample {
            name: "StatResponse",
            value: PipeMessage::StatResponse {
                status: Status::Success,
                size: 0x0010_0000,
                modified_ns: 0x1122_3344_5566_7788,
                file_id: 0x0102_0304_0506_0708,
            },
            golden: "52 44 49 4f 01 08 00 00 20 00 00 00 00 00 00 00
00 00 00 00 00 00 10 00 00 00 00 00 88 77 66 55
44 33 22 11 08 07 06 05 04 03 02 01",
        },
        Sample {
            name: "ChecksumRequest",
            value: PipeMessage::ChecksumRequest {
                algorithm: ChecksumAlgorithm::XXH3_128,
                path: b"dir/file.bin",
            },
            golden: "52 44 49 4f 01 20 00 00 10 00 00 00 01 00 0c 00
64 69 72 2f 66 69 6c 65 2e 62 69 6e",
        },
        Sample {
            name: "ChecksumResponse",
            value: PipeMessage::ChecksumResponse {
                status: Status::Success,
                algorithm: ChecksumAlgorithm::XXH3_128,
                length: 0x0010_0000,
                digest: [
                    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 0, 0, 0, 0, 0, 0, 0, 0,
                    0, 0, 0, 0, 0, 0, 0, 0,
                ],
            },
            golden: "52 44 49 4f 01 21 00 00 30 00 00 00 00 00 00 00
01 00 00 00 00 00 10 00 00 00 00 00 01 02 03 04
05 06 07 08 09 0a 0b 0c 0d 0e 0f 10 00 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00",
        },
        Sample {
            name: "ListRequest",
            value: PipeMessage::File(FileMessage::ListRequest {
                path: b"dir",
                after: b"a.txt",
            }),
            golden: "52 44 49 4f 01 22 00 00 0c 00 00 00 03 00 05 00
64 69 72 61 2e 74 78 74",
        },
        Sample {
            name: "ListResponse",
            value: PipeMessage::File(FileMessage::ListResponse {
                status: Status::Success,
                end: true,
                entries: DirEntries::parse(1, &LIST_ENTRY).expect("a valid entry"),
            }),
            golden: "52 44 49 4f 01 23 00 00 2d 00 00 00 00 00 00 00
01 00 01 00 00 05 00 00 a4 01 00 00 05 00 00 00
00 00 00 00 88 77 66 55 44 33 22 11 08 07 06 05
04 03 02 01 61 2e 74 78 74",
        },
        Sample {
            name: "InfoRequest",
            value: PipeMessage::File(FileMessage::InfoRequest {
                path: b"dir/file.bin",
            }),
            golden: "52 44 49 4f 01 24 00 00 10 00 00 00 0c 00 00 00
64 69 72 2f 66 69 6c 65 2e 62 69 6e",
        },
        Sample {
            name: "InfoResponse",
            value: PipeMessage::File(FileMessage::InfoResponse {
                status: Status::Success,
                attributes: attributes(EntryKind::Directory, 0o755, 4096),
            }),
            golden: "52 44 49 4f 01 25 00 00 28 00 00 00 00 00 00 00
00 00 00 00 01 00 00 00 ed 01 00 00 00 10 00 00
00 00 00 00 88 77 66 55 44 33 22 11 08 07 06 05
04 03 02 01",
        },
        Sample {
            name: "RemoveRequest",
            value: PipeMessage::File(FileMessage::RemoveRequest {
                flags: RemoveFlags::DIRECTORY,
                path: b"dir",
            }),
            golden: "52 44 49 4f 01 26 00 00 07 00 00 00 03 00 01 00
64 69 72",
        },
        Sample {
            name: "MakeDirRequest",
            value: PipeMessage::File(FileMessage::MakeDirRequest {
                flags: MakeDirFlags::PARENTS,
                mode: 0o755,
                path: b"a/b",
            }),
            golden: "52 44 49 4f 01 27 00 00 0b 00 00 00 03 00 01 00
ed 01 00 00 61 2f 62",
        },
        Sample {
            name: "RenameRequest",
            value: PipeMessage::File(FileMessage::RenameRequest {
                flags: RenameFlags::NO_REPLACE,
                from: b"a",
                to: b"b/c",
            }),
            golden: "52 44 49 4f 01 28 00 00 0c 00 00 00 01 00 03 00
01 00 00 00 61 62 2f 63",
        },
        Sample {
            name: "SetAttrRequest",
            value: PipeMessage::File(FileMessage::SetAttrRequest {
                flags: SetAttrFlags::MODE.union(SetAttrFlags::MODIFIED),
                mode: 0o600,
                modified_ns: 0x1122_3344_5566_7788,
                path: b"f",
            }),
            golden: "52 44 49 4f 01 29 00 00 11 00 00 00 01 00 03 00
80 01 00 00 88 77 66 55 44 33 22 11 66",
        },
        Sample {
            name: "HashRequest",
            value: PipeMessage::File(FileMessage::HashRequest {
                path: b"f",
                offset: 0,
                length: 1 << 20,
            }),
            golden: "52 44 49 4f 01 2a 00 00 15 00 00 00 00 00 00 00
00 00 00 00 00 00 10 00 00 00 00 00 01 00 01 00
66",
        },
        Sample {
            name: "HashResponse",
            value: PipeMessage::File(FileMessage::HashResponse {
                status: Status::Success,
                length: 1 << 20,
                digest: core::array::from_fn(|i| i as u8 + 1),
            }),
            golden: "52 44 49 4f 01 2b 00 00 30 00 00 00 00 00 00 00
01 00 00 00 00 00 10 00 00 00 00 00 01 02 03 04
05 06 07 08 09 0a 0b 0c 0d 0e 0f 10 11 12 13 14
15 16 17 18 19 1a 1b 1c 1d 1e 1f 20",
        },
        Sample {
            name: "OpResult",
            value: PipeMessage::File(FileMessage::OpResult {
                status: Status::NotEmpty,
                opcode: 0x26,
            }),
            golden: "52 44 49 4f 01 2f 00 00 08 00 00 00 2a 00 00 00
26 00 00 00",
        },
    ]
}

/// The status block.
pub fn status() -> Vec<Sample<StatusBlock>> {
    vec![Sample {
        name: "StatusBlock",
        value: StatusBlock {
            request_id: REQUEST_ID,
            status: Status::Success,
            bytes: 0x1000,
            credits: 1,
        },
        golden: "44 33 22 11 00 00 00 00 00 10 00 00 00 00 00 00
01 00 00 00 52 44 49 4f",
    }]
}
