//! The cases, numbered in the order they run, each naming its section of
//! `docs/PROTOCOL.md`. Expected answers are written out here, from the
//! spec's text and tables ([`crate::expect`]).

use crate::expect::{
    Block, Code, Frame, Negotiation, RdmaReply, file_op, op, pipe_error, pipe_op, u32_at, u64_at,
};
use crate::pipe::{Pipe, encode, raw_frame, raw_header};
use crate::rdma::{CREDITS, Incoming, Link, MSG, Rdma};
use crate::{Mismatch, Outcome, Runner, TransportKind, check};
use rdio_core::wire::{
    AuthKey, BatchRead, Body, BufferDescriptor, Capabilities, Flags, Message, NegotiateRequest,
    OpenFlags, PipeMessage, ProviderList, ProviderName, ReadBatchRequest, ReadRequest, ReadSegment,
    ReadVRequest, ResumeKey, WriteRequest, WriteSegment, WriteVRequest,
};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};

/// The server under test.
#[derive(Clone, Debug)]
pub struct Target {
    /// Its side channel.
    pub server: SocketAddr,
    /// How to reach its RDMA endpoint.
    pub transport: TransportKind,
}

/// Sizes the tester negotiates.
const MAX_IO: u32 = 64 << 10;
/// Where read data lands in the tester's memory (status blocks below it).
const DATA: usize = 64 << 10;

fn fail(expected: impl std::fmt::Display, got: impl std::fmt::Display) -> Mismatch {
    Mismatch::new(expected, got)
}

fn setup(what: &str) -> impl FnOnce(String) -> Mismatch + '_ {
    move |e| Mismatch::new(what, e)
}

/// A ChecksumRequest case: what it checks, the algorithm asked for,
/// whether the file is created (empty) first, and the expected status,
/// length and first 16 digest bytes.
type ChecksumCase = (&'static str, u8, bool, Code, u64, [u8; 16]);

/// A fresh file name in the server's root for this run.
fn file_name() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "conformance-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn providers(names: &[&str]) -> ProviderList {
    names
        .iter()
        .filter_map(|name| ProviderName::new(name).ok())
        .collect()
}

fn negotiate_bytes(
    key: [u8; 16],
    credits: u16,
    min: u16,
    max: u16,
    names: &[&str],
    caps: u64,
) -> Vec<u8> {
    encode(&PipeMessage::NegotiateRequest(NegotiateRequest {
        server_key: ResumeKey(key),
        min_version: min,
        max_version: max,
        credits_requested: credits,
        max_send_size: MSG as u32,
        max_io_size: MAX_IO,
        providers: providers(names),
        capabilities: Capabilities(caps),
    }))
}

fn open_bytes(flags: OpenFlags, path: &str) -> Vec<u8> {
    encode(&PipeMessage::OpenRequest {
        flags,
        path: path.as_bytes(),
    })
}

/// Take the server request resume key.
fn resume_key(pipe: &mut Pipe) -> Result<[u8; 16], Mismatch> {
    let frame = pipe
        .exchange(&raw_frame(pipe_op::RESUME_KEY_REQUEST, &[]))
        .map_err(setup("ResumeKeyResponse"))?;
    if frame.opcode != pipe_op::RESUME_KEY_RESPONSE || frame.payload.len() != 16 {
        return Err(fail(
            "ResumeKeyResponse with 16 payload bytes",
            format_args!("{frame:?}"),
        ));
    }
    let mut key = [0u8; 16];
    key.copy_from_slice(&frame.payload);
    Ok(key)
}

/// An OpenResponse: status, key, size.
fn open(pipe: &mut Pipe, flags: OpenFlags, path: &str) -> Result<(Code, [u8; 16], u64), Mismatch> {
    let frame = pipe
        .exchange(&open_bytes(flags, path))
        .map_err(setup("OpenResponse"))?;
    if frame.opcode != pipe_op::OPEN_RESPONSE
        || frame.payload.len() != 32
        || u32_at(&frame.payload, 4) != 0
    {
        return Err(fail(
            "OpenResponse of 32 bytes, reserved 0",
            format_args!("{frame:?}"),
        ));
    }
    let mut key = [0u8; 16];
    key.copy_from_slice(&frame.payload[8..24]);
    Ok((
        Code(u32_at(&frame.payload, 0)),
        key,
        u64_at(&frame.payload, 24),
    ))
}

fn negotiate(pipe: &mut Pipe, bytes: &[u8]) -> Result<Negotiation, Mismatch> {
    let frame = pipe.exchange(bytes).map_err(setup("NegotiateResponse"))?;
    if frame.opcode != pipe_op::NEGOTIATE_RESPONSE {
        return Err(fail("NegotiateResponse", format_args!("{frame:?}")));
    }
    let mut negotiation = Negotiation::decode(&frame.payload);
    if negotiation.status.0 == 0 {
        let binding = pipe.rdma_binding();
        negotiation.auth_key = crate::pipe::rdma_auth_key(binding.as_ref(), negotiation.auth_key);
    }
    if !negotiation.well_formed {
        return Err(fail(
            "a well-formed NegotiateResponse",
            format_args!("{negotiation:?}"),
        ));
    }
    Ok(negotiation)
}

/// The server refuses with `Error{code, opcode}` (and closes, unless
/// `stays_open`).
fn expect_error(
    pipe: &mut Pipe,
    frame: Result<Frame, String>,
    code: u32,
    opcode: u8,
    stays_open: bool,
) -> Outcome {
    let frame =
        frame.map_err(|e| fail(format_args!("Error(code {code}, opcode 0x{opcode:02x})"), e))?;
    let expected = Frame {
        opcode: pipe_op::ERROR,
        payload: {
            let mut p = code.to_le_bytes().to_vec();
            p.extend_from_slice(&[opcode, 0, 0, 0]);
            p
        },
    };
    if frame != expected {
        return Err(fail(
            format_args!("{expected:?}"),
            format_args!("{frame:?}"),
        ));
    }
    if stays_open {
        let key = resume_key(pipe);
        // After an UNKNOWN_OPCODE the first message may still be due.
        if key.is_err() {
            return Err(fail(
                "the pipe open after UNKNOWN_OPCODE",
                "no answer to ResumeKeyRequest",
            ));
        }
        Ok(())
    } else {
        pipe.closed()
            .map_err(|e| fail("the pipe closed after the Error", e))
    }
}

/// A request naming one path after a `u16` length and a `u16` of flags
/// (the layout of `InfoRequest`, `RemoveRequest`).
fn path_request(opcode: u8, flags: u16, path: &str) -> Vec<u8> {
    let mut payload = (path.len() as u16).to_le_bytes().to_vec();
    payload.extend_from_slice(&flags.to_le_bytes());
    payload.extend_from_slice(path.as_bytes());
    raw_frame(opcode, &payload)
}

/// A `MakeDirRequest` for `path` with mode 0755.
fn make_dir_bytes(flags: u16, path: &str) -> Vec<u8> {
    let mut payload = (path.len() as u16).to_le_bytes().to_vec();
    payload.extend_from_slice(&flags.to_le_bytes());
    payload.extend_from_slice(&0o755u32.to_le_bytes());
    payload.extend_from_slice(path.as_bytes());
    raw_frame(file_op::MAKE_DIR_REQUEST, &payload)
}

/// A `ListRequest` for `path` from the start.
fn list_bytes(path: &str) -> Vec<u8> {
    let mut payload = (path.len() as u16).to_le_bytes().to_vec();
    payload.extend_from_slice(&[0, 0]);
    payload.extend_from_slice(path.as_bytes());
    raw_frame(file_op::LIST_REQUEST, &payload)
}

/// An `OpResult`'s status, for a request of `opcode`.
fn op_result(pipe: &mut Pipe, bytes: &[u8], opcode: u8) -> Result<Code, Mismatch> {
    let frame = pipe.exchange(bytes).map_err(setup("OpResult"))?;
    if frame.opcode != file_op::OP_RESULT
        || frame.payload.len() != 8
        || frame.payload[4..] != [opcode, 0, 0, 0]
    {
        return Err(fail(
            format_args!("OpResult (8 payload bytes) for opcode 0x{opcode:02x}"),
            format_args!("{frame:?}"),
        ));
    }
    Ok(Code(crate::expect::u32_at(&frame.payload, 0)))
}

/// An `InfoResponse`'s status and kind byte.
fn info(pipe: &mut Pipe, path: &str) -> Result<(Code, u8), Mismatch> {
    let frame = pipe
        .exchange(&path_request(file_op::INFO_REQUEST, 0, path))
        .map_err(setup("InfoResponse"))?;
    if frame.opcode != file_op::INFO_RESPONSE || frame.payload.len() != 40 {
        return Err(fail(
            "InfoResponse with 40 payload bytes",
            format_args!("{frame:?}"),
        ));
    }
    Ok((
        Code(crate::expect::u32_at(&frame.payload, 0)),
        frame.payload[8],
    ))
}

/// Every pipe case: framing, order, each message and its refusals.
pub fn pipe_cases(runner: &mut Runner<'_>, target: &Target) {
    let server = target.server;
    let ours = target.transport.provider_name();
    let connect = || Pipe::connect(server).map_err(setup("a side channel"));

    runner.case(
        "Phase 1: discovery",
        "ResumeKeyRequest is answered with a 16-byte ResumeKeyResponse",
        || resume_key(&mut connect()?).map(|_| ()),
    );
    runner.case(
        "Phase 1: discovery",
        "an OpenRequest before the ResumeKeyRequest is refused UNEXPECTED_MESSAGE",
        || {
            let mut pipe = connect()?;
            let reply = pipe.exchange(&open_bytes(OpenFlags::READ, "x"));
            expect_error(
                &mut pipe,
                reply,
                pipe_error::UNEXPECTED_MESSAGE,
                pipe_op::OPEN_REQUEST,
                false,
            )
        },
    );
    runner.case(
        "Phase 1: discovery",
        "a NegotiateRequest before the ResumeKeyRequest is refused UNEXPECTED_MESSAGE",
        || {
            let mut pipe = connect()?;
            let reply = pipe.exchange(&negotiate_bytes([0; 16], 8, 1, 1, &[&ours], 0));
            expect_error(
                &mut pipe,
                reply,
                pipe_error::UNEXPECTED_MESSAGE,
                pipe_op::NEGOTIATE_REQUEST,
                false,
            )
        },
    );
    runner.case(
        "Phase 1: discovery",
        "a second ResumeKeyRequest is refused UNEXPECTED_MESSAGE",
        || {
            let mut pipe = connect()?;
            resume_key(&mut pipe)?;
            let reply = pipe.exchange(&raw_frame(pipe_op::RESUME_KEY_REQUEST, &[]));
            expect_error(
                &mut pipe,
                reply,
                pipe_error::UNEXPECTED_MESSAGE,
                pipe_op::RESUME_KEY_REQUEST,
                false,
            )
        },
    );
    for (opcode, payload_len) in [
        (pipe_op::RESUME_KEY_RESPONSE, 16),
        (pipe_op::OPEN_RESPONSE, 32),
        (pipe_op::ERROR, 8),
    ] {
        runner.case("Phase 1: discovery", &format!("a server's message (0x{opcode:02x}) sent to the server is refused UNEXPECTED_MESSAGE"), || {
            let mut pipe = connect()?;
            resume_key(&mut pipe)?;
            let reply = pipe.exchange(&raw_frame(opcode, &vec![0; payload_len]));
            expect_error(&mut pipe, reply, pipe_error::UNEXPECTED_MESSAGE, opcode, false)
        });
    }
    // Header faults, one header's worth of bytes each (nothing unread).
    let headers: [(&str, Vec<u8>, u32, u8); 4] = [
        (
            "a frame not starting with RDIO is refused BAD_MAGIC",
            raw_header(b"RDIX", 1, 1, 0, 0),
            pipe_error::BAD_MAGIC,
            0,
        ),
        (
            "a frame of version 2 is refused UNSUPPORTED_VERSION",
            raw_header(b"RDIO", 2, 1, 0, 0),
            pipe_error::UNSUPPORTED_VERSION,
            0,
        ),
        (
            "a frame with reserved bits is refused RESERVED_NOT_ZERO",
            raw_header(b"RDIO", 1, 1, 1, 0),
            pipe_error::RESERVED_NOT_ZERO,
            0,
        ),
        (
            "a frame declaring 2049 payload bytes is refused TOO_MANY",
            raw_header(b"RDIO", 1, 1, 0, 2049),
            pipe_error::TOO_MANY,
            0,
        ),
    ];
    for (what, bytes, code, opcode) in headers {
        runner.case("Pipe frame header", what, || {
            let mut pipe = connect()?;
            let reply = pipe.exchange(&bytes);
            expect_error(&mut pipe, reply, code, opcode, false)
        });
    }
    runner.case(
        "Pipe frame header",
        "an unknown opcode (0x3f) is refused UNKNOWN_OPCODE, skipped, and the pipe reads on",
        || {
            let mut pipe = connect()?;
            let reply = pipe.exchange(&raw_frame(0x3f, b"an extension's payload"));
            expect_error(&mut pipe, reply, pipe_error::UNKNOWN_OPCODE, 0x3f, true)
        },
    );
    runner.case(
        "Pipe frame header",
        "a complete frame shorter than its fixed part is BAD_LENGTH, not \"read more\"",
        || {
            let mut pipe = connect()?;
            resume_key(&mut pipe)?;
            let reply = pipe.exchange(&raw_frame(pipe_op::NEGOTIATE_REQUEST, &[0; 39]));
            expect_error(
                &mut pipe,
                reply,
                pipe_error::BAD_LENGTH,
                pipe_op::NEGOTIATE_REQUEST,
                false,
            )
        },
    );
    runner.case(
        "ResumeKeyRequest",
        "a ResumeKeyRequest with a payload is refused BAD_LENGTH",
        || {
            let mut pipe = connect()?;
            let reply = pipe.exchange(&raw_frame(pipe_op::RESUME_KEY_REQUEST, &[0]));
            expect_error(
                &mut pipe,
                reply,
                pipe_error::BAD_LENGTH,
                pipe_op::RESUME_KEY_REQUEST,
                false,
            )
        },
    );
    runner.case(
        "NegotiateRequest",
        "a provider name with a space (0x20) is refused BAD_PROVIDER_NAME",
        || {
            let mut pipe = connect()?;
            let key = resume_key(&mut pipe)?;
            let mut bytes = negotiate_bytes(key, 8, 1, 1, &["ofi:tcp"], 0);
            bytes[12 + 40 + 3] = b' ';
            let reply = pipe.exchange(&bytes);
            expect_error(
                &mut pipe,
                reply,
                pipe_error::BAD_PROVIDER_NAME,
                pipe_op::NEGOTIATE_REQUEST,
                false,
            )
        },
    );
    runner.case(
        "NegotiateRequest",
        "min_version > max_version is refused INVALID_FIELD",
        || {
            let mut pipe = connect()?;
            let key = resume_key(&mut pipe)?;
            let reply = pipe.exchange(&negotiate_bytes(key, 8, 2, 1, &[&ours], 0));
            expect_error(
                &mut pipe,
                reply,
                pipe_error::INVALID_FIELD,
                pipe_op::NEGOTIATE_REQUEST,
                false,
            )
        },
    );
    runner.case(
        "NegotiateRequest",
        "nine providers are refused TOO_MANY",
        || {
            let mut pipe = connect()?;
            let key = resume_key(&mut pipe)?;
            let mut payload = negotiate_bytes(key, 8, 1, 1, &[], 0)[12..].to_vec();
            payload[22] = 9;
            for _ in 0..9 {
                let mut name = [0u8; 32];
                name[..1].copy_from_slice(b"x");
                payload.extend_from_slice(&name);
            }
            let reply = pipe.exchange(&raw_frame(pipe_op::NEGOTIATE_REQUEST, &payload));
            expect_error(
                &mut pipe,
                reply,
                pipe_error::TOO_MANY,
                pipe_op::NEGOTIATE_REQUEST,
                false,
            )
        },
    );
    runner.case(
        "OpenRequest",
        "undefined open-mode bits are refused UNKNOWN_OPEN_FLAGS",
        || {
            let mut pipe = connect()?;
            resume_key(&mut pipe)?;
            let mut bytes = open_bytes(OpenFlags::READ, "x");
            bytes[12] = 0x41;
            let reply = pipe.exchange(&bytes);
            expect_error(
                &mut pipe,
                reply,
                pipe_error::UNKNOWN_OPEN_FLAGS,
                pipe_op::OPEN_REQUEST,
                false,
            )
        },
    );
    runner.case(
        "OpenRequest",
        "CREATE without WRITE is refused INVALID_FIELD",
        || {
            let mut pipe = connect()?;
            resume_key(&mut pipe)?;
            let reply = pipe.exchange(&open_bytes(OpenFlags::READ | OpenFlags::CREATE, "x"));
            expect_error(
                &mut pipe,
                reply,
                pipe_error::INVALID_FIELD,
                pipe_op::OPEN_REQUEST,
                false,
            )
        },
    );
    runner.case(
        "OpenRequest",
        "an empty path is refused INVALID_FIELD",
        || {
            let mut pipe = connect()?;
            resume_key(&mut pipe)?;
            let reply = pipe.exchange(&raw_frame(pipe_op::OPEN_REQUEST, &[1, 0, 0, 0, 0, 0, 0, 0]));
            expect_error(
                &mut pipe,
                reply,
                pipe_error::INVALID_FIELD,
                pipe_op::OPEN_REQUEST,
                false,
            )
        },
    );

    // Checksums (§ChecksumRequest, §ChecksumResponse): statuses, the pipe
    // stays usable.
    let checksum_cases: [ChecksumCase; 3] = [
        (
            "the checksum of an empty file is XXH3-128 of no bytes (99aa06d3…497f), length 0",
            1,
            true,
            Code::SUCCESS,
            0,
            0x99aa_06d3_0147_98d8_6001_c324_468d_497f_u128.to_be_bytes(),
        ),
        (
            "the checksum of a missing file is NotFound, length 0, digest zero",
            1,
            false,
            Code::NOT_FOUND,
            0,
            [0; 16],
        ),
        (
            "an unknown algorithm (0xEE) is answered NotSupported, echoed",
            0xEE,
            true,
            Code::NOT_SUPPORTED,
            0,
            [0; 16],
        ),
    ];
    for (what, algorithm, create, code, length, digest) in checksum_cases {
        runner.case("ChecksumRequest", what, || {
            let mut pipe = connect()?;
            resume_key(&mut pipe)?;
            let name = file_name();
            if create {
                // Opened with CREATE (no TRUNCATE): an empty file at once.
                let (status, ..) = open(&mut pipe, OpenFlags::WRITE | OpenFlags::CREATE, &name)?;
                check("the create's status", Code::SUCCESS, status)?;
            }
            let mut payload = vec![algorithm, 0];
            payload.extend_from_slice(&u16::try_from(name.len()).unwrap_or(0).to_le_bytes());
            payload.extend_from_slice(name.as_bytes());
            let frame = pipe
                .exchange(&raw_frame(pipe_op::CHECKSUM_REQUEST, &payload))
                .map_err(setup("ChecksumResponse"))?;
            if frame.opcode != pipe_op::CHECKSUM_RESPONSE
                || frame.payload.len() != 48
                || frame.payload.get(5..8) != Some(&[0, 0, 0][..])
            {
                return Err(fail(
                    "ChecksumResponse of 48 bytes, reserved 0",
                    format_args!("{frame:?}"),
                ));
            }
            check("status", code, Code(u32_at(&frame.payload, 0)))?;
            check("algorithm", algorithm, frame.payload[4])?;
            check("length", length, u64_at(&frame.payload, 8))?;
            check("digest", &digest[..], &frame.payload[16..32])?;
            check("digest padding", &[0u8; 16][..], &frame.payload[32..48])
        });
    }

    // Negotiation outcomes (statuses: the pipe stays usable).
    let refusal = |what: &str, code: Code, make: &dyn Fn([u8; 16]) -> Vec<u8>| -> Outcome {
        let mut pipe = connect()?;
        let key = resume_key(&mut pipe)?;
        let got = negotiate(&mut pipe, &make(key))?;
        check(what, code, got.status)?;
        if code != Code::NO_COMMON_PROVIDER {
            check(
                "providers of a refusal",
                Vec::<String>::new(),
                got.providers.clone(),
            )?;
        }
        check(
            "(version, credits, max_send_size, max_io_size, capabilities, auth_key, endpoint) of a refusal",
            (1, 0, 0, 0, 0, [0u8; 16], Vec::new()),
            (
                got.version,
                got.credits,
                got.max_send_size,
                got.max_io_size,
                got.capabilities,
                got.auth_key,
                got.endpoint,
            ),
        )?;
        // The pipe is still open: another negotiation is answered.
        negotiate(&mut pipe, &negotiate_bytes(key, 8, 1, 1, &[&ours], 0)).map(|_| ())
    };
    runner.case(
        "Phase 1: discovery",
        "a wrong server resume key is answered UnknownResumeKey, all fields zero",
        || {
            refusal("status", Code::UNKNOWN_RESUME_KEY, &|key| {
                let mut other = key;
                other[0] ^= 0xff;
                negotiate_bytes(other, 8, 1, 1, &[&ours], 0)
            })
        },
    );
    runner.case(
        "Phase 1: discovery",
        "versions 2..=3 only are answered VersionMismatch",
        || {
            refusal("status", Code::VERSION_MISMATCH, &|key| {
                negotiate_bytes(key, 8, 2, 3, &[&ours], 0)
            })
        },
    );
    runner.case(
        "Phase 1: discovery",
        "0 credits requested are answered InvalidParameter",
        || {
            refusal("status", Code::INVALID_PARAMETER, &|key| {
                negotiate_bytes(key, 0, 1, 1, &[&ours], 0)
            })
        },
    );
    runner.case(
        "Phase 1: discovery",
        "no common provider is answered NoCommonProvider with the server's providers",
        || {
            let mut pipe = connect()?;
            let key = resume_key(&mut pipe)?;
            let got = negotiate(
                &mut pipe,
                &negotiate_bytes(key, 8, 1, 1, &["conformance:none"], 0),
            )?;
            check("status", Code::NO_COMMON_PROVIDER, got.status)?;
            if got.providers.is_empty() {
                return Err(fail("the server's providers", "an empty list"));
            }
            check("credits", 0, got.credits)
        },
    );
    runner.case(
        "NegotiateResponse",
        "a negotiation succeeds within the limits asked for",
        || {
            let mut pipe = connect()?;
            let key = resume_key(&mut pipe)?;
            let got = negotiate(
                &mut pipe,
                &negotiate_bytes(key, CREDITS, 1, 1, &["conformance:none", &ours], 0),
            )?;
            check("status", Code::SUCCESS, got.status)?;
            check("version", 1, got.version)?;
            if got.credits == 0 || got.credits > CREDITS {
                return Err(fail(format_args!("1 ≤ credits ≤ {CREDITS}"), got.credits));
            }
            if got.max_send_size < 512 || got.max_send_size > MSG as u32 || got.max_io_size > MAX_IO
            {
                return Err(fail(
                    "512 ≤ max_send_size ≤ 4096, max_io_size ≤ 65536",
                    format_args!("{} and {}", got.max_send_size, got.max_io_size),
                ));
            }
            check("providers", vec![ours.clone()], got.providers.clone())?;
            let endpoint = String::from_utf8_lossy(&got.endpoint).into_owned();
            endpoint
                .parse::<SocketAddr>()
                .map(|_| ())
                .map_err(|_| fail("an endpoint of the form IP:PORT", endpoint))
        },
    );
    runner.case(
        "Extending rdio",
        "capability bits no extension has are ignored: none granted, no error",
        || {
            let mut pipe = connect()?;
            let key = resume_key(&mut pipe)?;
            let got = negotiate(
                &mut pipe,
                &negotiate_bytes(key, CREDITS, 1, 1, &[&ours], 1 << 63),
            )?;
            check("status", Code::SUCCESS, got.status)?;
            check("capabilities", 0, got.capabilities)
        },
    );
    runner.case(
        "Extending rdio",
        "the capabilities granted are a subset of those offered",
        || {
            let mut pipe = connect()?;
            let key = resume_key(&mut pipe)?;
            let offered = 0x5555_5555_5555_5555u64;
            let got = negotiate(
                &mut pipe,
                &negotiate_bytes(key, CREDITS, 1, 1, &[&ours], offered),
            )?;
            check("status", Code::SUCCESS, got.status)?;
            check(
                "capabilities outside the offer",
                0,
                got.capabilities & !offered,
            )
        },
    );

    // Opens.
    runner.case(
        "Opens",
        "a missing file without CREATE is NotFound, key zero, size 0",
        || {
            let mut pipe = connect()?;
            resume_key(&mut pipe)?;
            let got = open(&mut pipe, OpenFlags::READ, &file_name())?;
            check("(status, key, size)", (Code::NOT_FOUND, [0u8; 16], 0), got)
        },
    );
    runner.case(
        "Opens",
        "a path with .. is AccessDenied, key zero, size 0",
        || {
            let mut pipe = connect()?;
            resume_key(&mut pipe)?;
            let got = open(&mut pipe, OpenFlags::READ, "../etc/passwd")?;
            check(
                "(status, key, size)",
                (Code::ACCESS_DENIED, [0u8; 16], 0),
                got,
            )
        },
    );
    runner.case(
        "Opens",
        "a leading '/' names the export's root, not the host's: /etc/passwd is NotFound",
        || {
            let mut pipe = connect()?;
            resume_key(&mut pipe)?;
            let got = open(&mut pipe, OpenFlags::READ, "/etc/passwd")?;
            check("status", Code::NOT_FOUND, got.0)
        },
    );
    runner.case(
        "Opens",
        "CREATE makes a new file of size 0 with a resume key, and opens it again",
        || {
            let mut pipe = connect()?;
            resume_key(&mut pipe)?;
            let name = file_name();
            let (status, key, size) = open(
                &mut pipe,
                OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE,
                &name,
            )?;
            check("(status, size)", (Code::SUCCESS, 0), (status, size))?;
            if key == [0; 16] {
                return Err(fail("a resume key", "all zero"));
            }
            let (again, second, _) = open(&mut pipe, OpenFlags::WRITE | OpenFlags::CREATE, &name)?;
            check("status of CREATE on an existing file", Code::SUCCESS, again)?;
            if second == key {
                return Err(fail("a fresh resume key per open", "the same key twice"));
            }
            Ok(())
        },
    );

    // Remote file operations.
    runner.case(
        "Remote file operations",
        "an InfoRequest before the ResumeKeyRequest is refused UNEXPECTED_MESSAGE",
        || {
            let mut pipe = connect()?;
            let reply = pipe.exchange(&path_request(file_op::INFO_REQUEST, 0, "x"));
            expect_error(
                &mut pipe,
                reply,
                pipe_error::UNEXPECTED_MESSAGE,
                file_op::INFO_REQUEST,
                false,
            )
        },
    );
    runner.case(
        "Remote file operations",
        "an OpResult (a server's message) sent to the server is refused UNEXPECTED_MESSAGE",
        || {
            let mut pipe = connect()?;
            resume_key(&mut pipe)?;
            let reply = pipe.exchange(&raw_frame(file_op::OP_RESULT, &[0, 0, 0, 0, 0x26, 0, 0, 0]));
            expect_error(
                &mut pipe,
                reply,
                pipe_error::UNEXPECTED_MESSAGE,
                file_op::OP_RESULT,
                false,
            )
        },
    );
    runner.case(
        "Remote file operations",
        "a MakeDirRequest with a setuid bit is refused INVALID_FIELD",
        || {
            let mut pipe = connect()?;
            resume_key(&mut pipe)?;
            let mut payload = 1u16.to_le_bytes().to_vec();
            payload.extend_from_slice(&[0, 0]);
            payload.extend_from_slice(&0o4755u32.to_le_bytes());
            payload.push(b'd');
            let reply = pipe.exchange(&raw_frame(file_op::MAKE_DIR_REQUEST, &payload));
            expect_error(
                &mut pipe,
                reply,
                pipe_error::INVALID_FIELD,
                file_op::MAKE_DIR_REQUEST,
                false,
            )
        },
    );
    runner.case(
        "Remote file operations",
        "InfoRequest: a missing path is NotFound, a path with .. AccessDenied, / a directory",
        || {
            let mut pipe = connect()?;
            resume_key(&mut pipe)?;
            check("missing", Code::NOT_FOUND, info(&mut pipe, &file_name())?.0)?;
            check("..", Code::ACCESS_DENIED, info(&mut pipe, "../x")?.0)?;
            check("/", (Code::SUCCESS, 1), info(&mut pipe, "/")?)
        },
    );
    runner.case(
        "Remote file operations",
        "MakeDir, then AlreadyExists without PARENTS and Success with it; a listing \
         shows a file in it; Remove without DIRECTORY is IsADirectory, of a non-empty \
         directory NotEmpty, then Success once empty",
        || {
            let mut pipe = connect()?;
            resume_key(&mut pipe)?;
            let dir = file_name();
            let mkdir = file_op::MAKE_DIR_REQUEST;
            check(
                "mkdir",
                Code::SUCCESS,
                op_result(&mut pipe, &make_dir_bytes(0, &dir), mkdir)?,
            )?;
            check(
                "mkdir again",
                Code(41),
                op_result(&mut pipe, &make_dir_bytes(0, &dir), mkdir)?,
            )?;
            check(
                "mkdir -p",
                Code::SUCCESS,
                op_result(&mut pipe, &make_dir_bytes(1, &dir), mkdir)?,
            )?;
            check("info", (Code::SUCCESS, 1), info(&mut pipe, &dir)?)?;
            let inside = format!("{dir}/f");
            let (status, ..) = open(&mut pipe, OpenFlags::WRITE | OpenFlags::CREATE, &inside)?;
            check("create a file inside", Code::SUCCESS, status)?;
            let page = pipe
                .exchange(&list_bytes(&dir))
                .map_err(setup("ListResponse"))?;
            // Success, one entry, END; a file named "f".
            let mut expected = vec![0, 0, 0, 0, 1, 0, 1, 0, 0, 1, 0, 0];
            expected.extend_from_slice(&[0; 28]);
            expected.push(b'f');
            let got = (
                page.opcode,
                page.payload.len(),
                page.payload.get(..12).map(<[u8]>::to_vec),
                page.payload.last().copied(),
            );
            check(
                "(opcode, length, fixed part and kind/name_len, last byte)",
                (
                    file_op::LIST_RESPONSE,
                    41,
                    Some(expected[..12].to_vec()),
                    Some(b'f'),
                ),
                got,
            )?;
            let remove = file_op::REMOVE_REQUEST;
            let rm = |flags| path_request(remove, flags, &dir);
            check(
                "rm of a directory",
                Code(23),
                op_result(&mut pipe, &rm(0), remove)?,
            )?;
            check(
                "rm -d, not empty",
                Code(42),
                op_result(&mut pipe, &rm(1), remove)?,
            )?;
            let rm_file = path_request(remove, 0, &inside);
            check(
                "rm of the file",
                Code::SUCCESS,
                op_result(&mut pipe, &rm_file, remove)?,
            )?;
            check(
                "rm -d",
                Code::SUCCESS,
                op_result(&mut pipe, &rm(1), remove)?,
            )?;
            check("info after rm", Code::NOT_FOUND, info(&mut pipe, &dir)?.0)
        },
    );
}

/// A connected, not yet authenticated RDMA session with its pipe (which
/// must stay open: files opened on it and not registered close with it).
struct Conn {
    rdma: Rdma,
    _pipe: Pipe,
    negotiation: Negotiation,
    keys: Vec<[u8; 16]>,
    level: u16,
    next_id: u32,
}

impl Conn {
    /// Discover (opening `files`), connect.
    fn connect(target: &Target, files: &[(OpenFlags, &str)]) -> Result<Self, Mismatch> {
        Self::connect_offering(target, files, 0)
    }

    /// [`Conn::connect`], offering the capability bits `caps`.
    fn connect_offering(
        target: &Target,
        files: &[(OpenFlags, &str)],
        caps: u64,
    ) -> Result<Self, Mismatch> {
        let mut pipe = Pipe::connect(target.server).map_err(setup("a side channel"))?;
        let key = resume_key(&mut pipe)?;
        let mut keys = Vec::new();
        for (flags, path) in files {
            let (status, key, _) = open(&mut pipe, *flags, path)?;
            check(&format!("open {path}"), Code::SUCCESS, status)?;
            keys.push(key);
        }
        let ours = target.transport.provider_name();
        let negotiation = negotiate(
            &mut pipe,
            &negotiate_bytes(key, CREDITS, 1, 1, &[&ours], caps),
        )?;
        check("negotiation", Code::SUCCESS, negotiation.status)?;
        let endpoint = String::from_utf8_lossy(&negotiation.endpoint)
            .parse::<SocketAddr>()
            .map_err(|_| {
                fail(
                    "an IP:PORT endpoint",
                    String::from_utf8_lossy(&negotiation.endpoint),
                )
            })?;
        let endpoint = rdio::net::reachable_endpoint(endpoint, target.server);
        let link =
            Link::connect(&target.transport, endpoint).map_err(setup("an RDMA connection"))?;
        let rdma = Rdma::new(link).map_err(setup("registered buffers"))?;
        Ok(Self {
            rdma,
            _pipe: pipe,
            level: negotiation.credits,
            negotiation,
            keys,
            next_id: 100,
        })
    }

    /// Connect and authenticate.
    fn open(target: &Target, files: &[(OpenFlags, &str)]) -> Result<Self, Mismatch> {
        let mut conn = Self::connect(target, files)?;
        conn.authenticate()?;
        Ok(conn)
    }

    fn id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }

    fn send(
        &mut self,
        flags: Flags,
        credits: u16,
        id: u32,
        body: Body<'_>,
    ) -> Result<(), Mismatch> {
        self.send_demanding(flags, credits, 0, id, body)
    }

    /// [`Conn::send`] with the header's credit demand set (§Credit demand).
    fn send_demanding(
        &mut self,
        flags: Flags,
        credits: u16,
        demand: u16,
        id: u32,
        body: Body<'_>,
    ) -> Result<(), Mismatch> {
        self.rdma
            .send(&Message {
                flags,
                credits,
                demand,
                request_id: id,
                body,
            })
            .map_err(setup("a send"))
    }

    /// Send a request with the right header credits; its id.
    fn request(&mut self, flags: Flags, body: Body<'_>) -> Result<u32, Mismatch> {
        let id = self.id();
        let level = self.level;
        self.send(flags, level, id, body)?;
        Ok(id)
    }

    /// The next message or immediate, answering credit requests on the way.
    fn next_arrival(&mut self) -> Incoming {
        loop {
            match self.rdma.next_arrival() {
                Incoming::Message(reply) if reply.opcode == op::CREDIT_REQUEST => {
                    let delta = u32_at(&reply.payload, 0) as i32;
                    if delta > 0 {
                        self.level = self.level.saturating_add(delta as u16);
                        let level = self.level;
                        let _ = self.send(Flags::empty(), level, 1, Body::CreditAck { delta });
                    } else {
                        for _ in 0..delta.unsigned_abs() {
                            self.level = self.level.saturating_sub(1);
                            let level = self.level;
                            let _ = self.send(Flags::empty(), level, 1, Body::CreditGiveUp);
                        }
                    }
                }
                Incoming::Message(reply) if reply.opcode == op::CREDIT_RESPONSE => {}
                other => return other,
            }
        }
    }

    /// The next arrival must be a message with this opcode, status, header
    /// credits and request id.
    fn expect(
        &mut self,
        opcode: u8,
        status: Code,
        credits: u16,
        id: u32,
    ) -> Result<RdmaReply, Mismatch> {
        let expected = RdmaReply {
            opcode,
            flags: 0,
            credits,
            request_id: id,
            payload: status.0.to_le_bytes().to_vec(),
            well_formed: true,
            raw: Vec::new(),
        };
        match self.next_arrival() {
            Incoming::Message(reply)
                if reply.opcode == opcode
                    && reply.status() == status
                    && reply.credits == credits
                    && reply.request_id == id
                    && reply.flags == 0
                    && reply.well_formed =>
            {
                Ok(reply)
            }
            Incoming::Message(reply) => Err(fail(
                format_args!("{expected:?}"),
                format_args!("{reply:?}"),
            )),
            other => Err(fail(
                format_args!("{expected:?}"),
                format_args!("{other:?}"),
            )),
        }
    }

    /// The server ends the connection with `Terminate{reason}`.
    fn expect_terminate(&mut self, reason: Code) -> Outcome {
        match self.next_arrival() {
            Incoming::Message(reply) if reply.opcode == op::TERMINATE => {
                check("Terminate reason", reason, reply.status())
            }
            Incoming::Message(reply) => Err(fail(
                format_args!("Terminate {reason:?}"),
                format_args!("{reply:?}"),
            )),
            other => Err(fail(
                format_args!("Terminate {reason:?}"),
                format_args!("{other:?}"),
            )),
        }
    }

    fn authenticate(&mut self) -> Outcome {
        let key = self.negotiation.auth_key;
        let level = self.level;
        self.send(
            Flags::empty(),
            level,
            7,
            Body::AuthRequest { key: AuthKey(key) },
        )?;
        self.expect(op::AUTH_RESPONSE, Code::SUCCESS, 0, 7)?;
        let status = self.expect(op::STATUS_RESPONSE, Code::SUCCESS, 1, 7)?;
        let granted = crate::expect::u16_at(&status.payload, 4);
        if granted == 0 || granted > CREDITS {
            return Err(fail(
                format_args!("a StatusResponse level in 1..={CREDITS}"),
                granted,
            ));
        }
        self.level = granted;
        Ok(())
    }

    /// Register file `index`: (handle, size).
    fn register(&mut self, index: usize) -> Result<(u32, u64), Mismatch> {
        let key = self.keys.get(index).copied().unwrap_or([0; 16]);
        let id = self.request(
            Flags::empty(),
            Body::RegisterFile {
                key: ResumeKey(key),
            },
        )?;
        let reply = self.expect(op::REGISTER_FILE_COMPLETION, Code::SUCCESS, 1, id)?;
        Ok((u32_at(&reply.payload, 4), u64_at(&reply.payload, 8)))
    }

    fn status_desc(&self, id: u32) -> (usize, BufferDescriptor) {
        let offset = (id as usize % 256) * 32;
        (offset, self.rdma.descriptor(offset, 24))
    }

    /// The completion of data request `id`: its immediate (interrupt
    /// mode) then the block, or the block by polling.
    fn block(&mut self, id: u32, offset: usize, interrupt: bool) -> Result<Block, Mismatch> {
        if interrupt {
            match self.next_arrival() {
                Incoming::Immediate(imm) => check("immediate data (the request id)", id, imm)?,
                other => {
                    return Err(fail(
                        format_args!("a write with immediate {id}"),
                        format_args!("{other:?}"),
                    ));
                }
            }
            self.rdma.block(offset).ok_or_else(|| {
                fail(
                    "a status block written before its immediate",
                    "valid still 0",
                )
            })
        } else {
            self.rdma
                .poll_block(offset)
                .ok_or_else(|| fail("a status block", "none within 5 s"))
        }
    }

    /// Write `data` at `offset` (fragmented to the negotiated send size),
    /// checking every fragment's Completion; the status block.
    fn write(&mut self, handle: u32, offset: u64, data: &[u8]) -> Result<Block, Mismatch> {
        let max = self.negotiation.max_send_size as usize;
        let first = data.len().min(max - 48);
        let id = self.id();
        let (status_at, status) = self.status_desc(id);
        let level = self.level;
        self.send(
            Flags::INTERRUPT,
            level,
            id,
            Body::Write(WriteRequest {
                handle,
                offset,
                total_len: data.len() as u32,
                status,
                data: &data[..first],
            }),
        )?;
        let mut sent = first;
        while sent < data.len() {
            let reply = self.expect(op::COMPLETION, Code::SUCCESS, 1, id)?;
            check(
                "Completion bytes of a fragment (received so far)",
                sent as u64,
                u64_at(&reply.payload, 8),
            )?;
            let len = (data.len() - sent).min(max - 24);
            let level = self.level;
            self.send(
                Flags::empty(),
                level,
                id,
                Body::WriteData {
                    data_offset: sent as u32,
                    data: &data[sent..sent + len],
                },
            )?;
            sent += len;
        }
        let block = self.block(id, status_at, true)?;
        check("status block request_id", id, block.request_id)?;
        Ok(block)
    }

    /// Read `len` bytes at `offset` into the data area.
    fn read(
        &mut self,
        handle: u32,
        offset: u64,
        len: u32,
        interrupt: bool,
    ) -> Result<(Block, Vec<u8>), Mismatch> {
        self.rdma.fill_memory(0).map_err(setup("memory"))?;
        let dest = self.rdma.descriptor(DATA, len as usize);
        let id = self.id();
        let (status_at, status) = self.status_desc(id);
        let flags = if interrupt {
            Flags::INTERRUPT
        } else {
            Flags::empty()
        };
        let id = {
            let level = self.level;
            self.send(
                flags,
                level,
                id,
                Body::Read(ReadRequest {
                    handle,
                    offset,
                    dest,
                    status,
                }),
            )?;
            id
        };
        let block = self.block(id, status_at, interrupt)?;
        check(
            "status block (request_id, credits)",
            (id, 1),
            (block.request_id, block.credits),
        )?;
        Ok((block, self.rdma.memory(DATA, block.bytes as usize)))
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Every RDMA-channel case.
pub fn rdma_cases(runner: &mut Runner<'_>, target: &Target) {
    let rw = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    let connect = |files: &[(OpenFlags, &str)]| Conn::open(target, files);

    runner.case("Phase 2: authentication", "AuthRequest with the negotiated level: AuthResponse (credits 0), StatusResponse (credits 1)", || {
        Conn::open(target, &[]).map(|_| ())
    });
    runner.case(
        "Phase 2: authentication",
        "a wrong key: AuthResponse AuthFailed, then Terminate AuthFailed",
        || {
            let mut conn = Conn::connect(target, &[])?;
            let mut key = conn.negotiation.auth_key;
            key[0] ^= 0xff;
            let level = conn.level;
            conn.send(
                Flags::empty(),
                level,
                7,
                Body::AuthRequest { key: AuthKey(key) },
            )?;
            conn.expect(op::AUTH_RESPONSE, Code::AUTH_FAILED, 0, 7)?;
            conn.expect_terminate(Code::AUTH_FAILED)
        },
    );
    runner.case(
        "Phase 2: authentication",
        "AuthRequest header credits other than the negotiated level: Terminate ProtocolError",
        || {
            let mut conn = Conn::connect(target, &[])?;
            let key = conn.negotiation.auth_key;
            let wrong = conn.level.wrapping_add(1);
            conn.send(
                Flags::empty(),
                wrong,
                7,
                Body::AuthRequest { key: AuthKey(key) },
            )?;
            conn.expect_terminate(Code::PROTOCOL_ERROR)
        },
    );
    runner.case(
        "Phase 2: authentication",
        "a request before authentication: Terminate ProtocolError",
        || {
            let mut conn = Conn::connect(target, &[])?;
            let level = conn.level;
            conn.send(Flags::empty(), level, 7, Body::Keepalive)?;
            conn.expect_terminate(Code::PROTOCOL_ERROR)
        },
    );
    runner.case(
        "Phase 2: authentication",
        "the authentication key is single use",
        || {
            let first = Conn::open(target, &[])?;
            let key = first.negotiation.auth_key;
            let mut second = Conn::connect(target, &[])?;
            let level = first.level;
            second.send(
                Flags::empty(),
                level,
                7,
                Body::AuthRequest { key: AuthKey(key) },
            )?;
            second.expect(op::AUTH_RESPONSE, Code::AUTH_FAILED, 0, 7)?;
            second.expect_terminate(Code::AUTH_FAILED)
        },
    );
    runner.case(
        "Keepalive",
        "Keepalive is answered KeepaliveResponse returning 1 credit",
        || {
            let mut conn = connect(&[])?;
            let id = conn.request(Flags::empty(), Body::Keepalive)?;
            match conn.next_arrival() {
                Incoming::Message(r)
                    if r.opcode == op::KEEPALIVE_RESPONSE
                        && r.credits == 1
                        && r.request_id == id
                        && r.payload.is_empty() =>
                {
                    Ok(())
                }
                other => Err(fail(
                    format_args!("KeepaliveResponse(credits 1, id {id})"),
                    format_args!("{other:?}"),
                )),
            }
        },
    );
    runner.case(
        "Completion modes (claims 18–21)",
        "InterruptRequest with nothing in flight is answered at once",
        || {
            let mut conn = connect(&[])?;
            let id = conn.request(Flags::empty(), Body::InterruptRequest)?;
            match conn.next_arrival() {
                Incoming::Message(r)
                    if r.opcode == op::INTERRUPT_RESPONSE
                        && r.credits == 1
                        && r.request_id == id =>
                {
                    Ok(())
                }
                other => Err(fail(
                    format_args!("InterruptResponse(credits 1, id {id})"),
                    format_args!("{other:?}"),
                )),
            }
        },
    );
    runner.case(
        "Registration (claims 10, 11)",
        "RegisterFile with a file's key: Success, handle, size",
        || {
            let name = file_name();
            let mut conn = connect(&[(rw, &name)])?;
            conn.register(0).map(|_| ())
        },
    );
    runner.case(
        "Registration (claims 10, 11)",
        "a file key is single use: UnknownResumeKey the second time",
        || {
            let name = file_name();
            let mut conn = connect(&[(rw, &name)])?;
            conn.register(0)?;
            let key = conn.keys[0];
            let id = conn.request(
                Flags::empty(),
                Body::RegisterFile {
                    key: ResumeKey(key),
                },
            )?;
            conn.expect(
                op::REGISTER_FILE_COMPLETION,
                Code::UNKNOWN_RESUME_KEY,
                1,
                id,
            )
            .map(|_| ())
        },
    );

    // Data: one file, written and read back in several ways.
    runner.case(
        "Requests (claim 15)",
        "a Write that fits one send completes by status block: Success, bytes, 1 credit",
        || {
            let name = file_name();
            let mut conn = connect(&[(rw, &name)])?;
            let (handle, _) = conn.register(0)?;
            let block = conn.write(handle, 0, b"conformance")?;
            check(
                "(status, bytes, credits)",
                (Code::SUCCESS, 11, 1),
                (block.status, block.bytes, block.credits),
            )
        },
    );
    runner.case("Writes larger than one send", "a fragmented write: a Completion per non-final fragment, status block 1 credit, data read back", || {
        let name = file_name();
        let mut conn = connect(&[(rw, &name)])?;
        let (handle, _) = conn.register(0)?;
        let data = pattern(3 * MSG + 100, 7);
        let block = conn.write(handle, 0, &data)?;
        check("(status, bytes, credits)", (Code::SUCCESS, data.len() as u64, 1), (block.status, block.bytes, block.credits))?;
        let (block, read) = conn.read(handle, 0, data.len() as u32, true)?;
        check("read status", Code::SUCCESS, block.status)?;
        check("the bytes read back equal the bytes written", true, read == data)
    });
    runner.case(
        "Requests (claim 15)",
        "a read reaching end of file is short: Success with the bytes there",
        || {
            let name = file_name();
            let mut conn = connect(&[(rw, &name)])?;
            let (handle, _) = conn.register(0)?;
            conn.write(handle, 0, &pattern(1000, 1))?;
            let (block, read) = conn.read(handle, 600, 1000, true)?;
            check(
                "(status, bytes)",
                (Code::SUCCESS, 400),
                (block.status, block.bytes),
            )?;
            check(
                "the tail of the file",
                pattern(1000, 1)[600..].to_vec(),
                read,
            )
        },
    );
    runner.case(
        "Requests (claim 15)",
        "a read at end of file completes EndOfFile with 0 bytes",
        || {
            let name = file_name();
            let mut conn = connect(&[(rw, &name)])?;
            let (handle, _) = conn.register(0)?;
            conn.write(handle, 0, &pattern(100, 1))?;
            let (block, _) = conn.read(handle, 100, 10, true)?;
            check(
                "(status, bytes)",
                (Code::END_OF_FILE, 0),
                (block.status, block.bytes),
            )
        },
    );
    runner.case(
        "Requests (claim 15)",
        "a read past 2^63-1 completes InvalidParameter, before end of file",
        || {
            let name = file_name();
            let mut conn = connect(&[(rw, &name)])?;
            let (handle, _) = conn.register(0)?;
            let (block, _) = conn.read(handle, i64::MAX as u64 - 4, 10, true)?;
            check(
                "(status, bytes)",
                (Code::INVALID_PARAMETER, 0),
                (block.status, block.bytes),
            )
        },
    );
    runner.case(
        "Completion modes (claims 18–21)",
        "a read without INTERRUPT is completed by a status block the client polls",
        || {
            let name = file_name();
            let mut conn = connect(&[(rw, &name)])?;
            let (handle, _) = conn.register(0)?;
            conn.write(handle, 0, b"polling")?;
            let (block, read) = conn.read(handle, 0, 7, false)?;
            check(
                "(status, bytes)",
                (Code::SUCCESS, 7),
                (block.status, block.bytes),
            )?;
            check("data", b"polling".to_vec(), read)
        },
    );
    runner.case(
        "ReadV",
        "a vectored read fills each segment, one status block",
        || {
            let name = file_name();
            let mut conn = connect(&[(rw, &name)])?;
            let (handle, _) = conn.register(0)?;
            let data = pattern(2000, 3);
            conn.write(handle, 0, &data)?;
            conn.rdma.fill_memory(0).map_err(setup("memory"))?;
            let segments = [
                ReadSegment::new(1500, conn.rdma.descriptor(DATA, 100)),
                ReadSegment::new(10, conn.rdma.descriptor(DATA + 4096, 50)),
            ];
            let id = conn.id();
            let (status_at, status) = conn.status_desc(id);
            let level = conn.level;
            conn.send(
                Flags::INTERRUPT,
                level,
                id,
                Body::ReadV(ReadVRequest {
                    handle,
                    status,
                    segments: &segments,
                }),
            )?;
            let block = conn.block(id, status_at, true)?;
            check(
                "(status, bytes, credits)",
                (Code::SUCCESS, 150, 1),
                (block.status, block.bytes, block.credits),
            )?;
            check(
                "segment 1",
                data[1500..1600].to_vec(),
                conn.rdma.memory(DATA, 100),
            )?;
            check(
                "segment 2",
                data[10..60].to_vec(),
                conn.rdma.memory(DATA + 4096, 50),
            )
        },
    );
    runner.case(
        "COLLAPSE (claim 17)",
        "a COLLAPSE write puts the same bytes at every segment; bytes = count × len",
        || {
            let name = file_name();
            let mut conn = connect(&[(rw, &name)])?;
            let (handle, _) = conn.register(0)?;
            let segments = [
                WriteSegment::new(0, 4),
                WriteSegment::new(100, 4),
                WriteSegment::new(200, 4),
            ];
            let id = conn.id();
            let (status_at, status) = conn.status_desc(id);
            let level = conn.level;
            conn.send(
                Flags::INTERRUPT | Flags::COLLAPSE,
                level,
                id,
                Body::WriteV(WriteVRequest {
                    handle,
                    total_len: 4,
                    status,
                    segments: &segments,
                    data: b"abcd",
                }),
            )?;
            let block = conn.block(id, status_at, true)?;
            check(
                "(status, bytes, credits)",
                (Code::SUCCESS, 12, 1),
                (block.status, block.bytes, block.credits),
            )?;
            let (_, read) = conn.read(handle, 200, 4, true)?;
            check("the third segment", b"abcd".to_vec(), read)
        },
    );
    runner.case(
        "WriteV",
        "a vectored write without COLLAPSE splits the data over the segments",
        || {
            let name = file_name();
            let mut conn = connect(&[(rw, &name)])?;
            let (handle, _) = conn.register(0)?;
            let segments = [WriteSegment::new(0, 3), WriteSegment::new(10, 2)];
            let id = conn.id();
            let (status_at, status) = conn.status_desc(id);
            let level = conn.level;
            conn.send(
                Flags::INTERRUPT,
                level,
                id,
                Body::WriteV(WriteVRequest {
                    handle,
                    total_len: 5,
                    status,
                    segments: &segments,
                    data: b"hello",
                }),
            )?;
            let block = conn.block(id, status_at, true)?;
            check(
                "(status, bytes)",
                (Code::SUCCESS, 5),
                (block.status, block.bytes),
            )?;
            let (_, read) = conn.read(handle, 10, 2, true)?;
            check("the second segment", b"lo".to_vec(), read)
        },
    );
    runner.case(
        "Requests (claim 15)",
        "a request on an unregistered handle completes InvalidHandle",
        || {
            let mut conn = connect(&[])?;
            let (block, _) = conn.read(4242, 0, 10, true)?;
            check("status", Code::INVALID_HANDLE, block.status)
        },
    );
    runner.case(
        "Registration (claims 10, 11)",
        "a write on a file opened READ only completes AccessDenied",
        || {
            let name = file_name();
            let mut setup_conn = connect(&[(rw, &name)])?;
            let (handle, _) = setup_conn.register(0)?;
            setup_conn.write(handle, 0, b"x")?;
            let mut conn = connect(&[(OpenFlags::READ, &name)])?;
            let (handle, _) = conn.register(0)?;
            let block = conn.write(handle, 0, b"y")?;
            check("status", Code::ACCESS_DENIED, block.status)
        },
    );
    runner.case(
        "Cancel and close semantics",
        "Cancel of an unknown request is answered NotFound, 1 credit",
        || {
            let mut conn = connect(&[])?;
            let id = conn.request(Flags::empty(), Body::Cancel { target: 9999 })?;
            let reply = conn.expect(op::COMPLETION, Code::NOT_FOUND, 1, id)?;
            check("Completion bytes", 0, u64_at(&reply.payload, 8))
        },
    );
    runner.case(
        "Cancel and close semantics",
        "cancelling a write between fragments: Success, then its block Cancelled with 0 credits",
        || {
            let name = file_name();
            let mut conn = connect(&[(rw, &name)])?;
            let (handle, _) = conn.register(0)?;
            let max = conn.negotiation.max_send_size as usize;
            let data = pattern(2 * max, 9);
            let id = conn.id();
            let (status_at, status) = conn.status_desc(id);
            let level = conn.level;
            conn.send(
                Flags::INTERRUPT,
                level,
                id,
                Body::Write(WriteRequest {
                    handle,
                    offset: 0,
                    total_len: data.len() as u32,
                    status,
                    data: &data[..max - 48],
                }),
            )?;
            conn.expect(op::COMPLETION, Code::SUCCESS, 1, id)?;
            let cancel = conn.request(Flags::empty(), Body::Cancel { target: id })?;
            // The block and the cancel's answer may come in either order.
            let mut block = None;
            let mut answered = false;
            for _ in 0..2 {
                match conn.next_arrival() {
                    Incoming::Immediate(imm) if imm == id => block = conn.rdma.block(status_at),
                    Incoming::Message(r)
                        if r.opcode == op::COMPLETION && r.request_id == cancel =>
                    {
                        check(
                            "cancel (status, credits)",
                            (Code::SUCCESS, 1),
                            (r.status(), r.credits),
                        )?;
                        answered = true;
                    }
                    other => {
                        return Err(fail(
                            "the write's block and the cancel's Completion",
                            format_args!("{other:?}"),
                        ));
                    }
                }
            }
            let block = block.ok_or_else(|| fail("the write's status block", "none"))?;
            check(
                "(answered, status, credits)",
                (true, Code::CANCELLED, 0),
                (answered, block.status, block.credits),
            )
        },
    );
    runner.case(
        "Cancel and close semantics",
        "Close is answered Success; the handle is invalid afterwards",
        || {
            let name = file_name();
            let mut conn = connect(&[(rw, &name)])?;
            let (handle, _) = conn.register(0)?;
            let id = conn.request(Flags::empty(), Body::Close { handle })?;
            conn.expect(op::COMPLETION, Code::SUCCESS, 1, id)?;
            let (block, _) = conn.read(handle, 0, 1, true)?;
            check("status after close", Code::INVALID_HANDLE, block.status)
        },
    );

    // Violations: each terminates with the tabled reason.
    let violation = |what: &str,
                     reason: Code,
                     make: &dyn Fn(&mut Conn) -> Result<Vec<u8>, Mismatch>|
     -> Outcome {
        let mut conn = connect(&[])?;
        let bytes = make(&mut conn)?;
        conn.rdma.send_bytes(&bytes).map_err(setup(what))?;
        conn.expect_terminate(reason)
    };
    let keepalive = |conn: &mut Conn, credits: u16| {
        crate::rdma::encode(&Message {
            flags: Flags::empty(),
            credits,
            demand: 0,
            request_id: conn.id(),
            body: Body::Keepalive,
        })
    };
    runner.case(
        "Phase 3: credits",
        "header credits other than the level: Terminate ProtocolError",
        || {
            violation("a send", Code::PROTOCOL_ERROR, &|conn| {
                Ok(keepalive(conn, conn.level + 1))
            })
        },
    );
    runner.case(
        "Phase 3: credits",
        "a CreditAck with no grant outstanding: Terminate ProtocolError",
        || {
            violation("a send", Code::PROTOCOL_ERROR, &|conn| {
                Ok(crate::rdma::encode(&Message {
                    flags: Flags::empty(),
                    credits: conn.level + 1,
                    demand: 0,
                    request_id: 1,
                    body: Body::CreditAck { delta: 1 },
                }))
            })
        },
    );
    runner.case(
        "Phase 3: credits",
        "a CreditGiveUp with no revoke outstanding: Terminate ProtocolError",
        || {
            violation("a send", Code::PROTOCOL_ERROR, &|conn| {
                Ok(crate::rdma::encode(&Message {
                    flags: Flags::empty(),
                    credits: conn.level - 1,
                    demand: 0,
                    request_id: 1,
                    body: Body::CreditGiveUp,
                }))
            })
        },
    );
    runner.case(
        "Extending rdio",
        "an unknown opcode (0x50): Terminate UnknownOpcode (36)",
        || {
            violation("a send", Code::UNKNOWN_OPCODE, &|conn| {
                let mut bytes = keepalive(conn, conn.level);
                bytes[1] = 0x50;
                Ok(bytes)
            })
        },
    );
    runner.case("RDMA header", "version 2: Terminate ProtocolError", || {
        violation("a send", Code::PROTOCOL_ERROR, &|conn| {
            let mut bytes = keepalive(conn, conn.level);
            bytes[0] = 2;
            Ok(bytes)
        })
    });
    runner.case(
        "RDMA header",
        "reserved bits set: Terminate ProtocolError",
        || {
            violation("a send", Code::PROTOCOL_ERROR, &|conn| {
                let mut bytes = keepalive(conn, conn.level);
                bytes[6] = 1;
                Ok(bytes)
            })
        },
    );
    runner.case(
        "RDMA header",
        "a flag the opcode does not allow (COLLAPSE on Keepalive): Terminate ProtocolError",
        || {
            violation("a send", Code::PROTOCOL_ERROR, &|conn| {
                let mut bytes = keepalive(conn, conn.level);
                bytes[2] = 2;
                Ok(bytes)
            })
        },
    );
    runner.case(
        "RDMA header",
        "bytes past the declared length: Terminate ProtocolError",
        || {
            violation("a send", Code::PROTOCOL_ERROR, &|conn| {
                let mut bytes = keepalive(conn, conn.level);
                bytes.push(0);
                Ok(bytes)
            })
        },
    );
    runner.case(
        "Violations",
        "a server-only message (Completion) from the client: Terminate ProtocolError",
        || {
            violation("a send", Code::PROTOCOL_ERROR, &|conn| {
                Ok(crate::rdma::encode(&Message {
                    flags: Flags::empty(),
                    credits: conn.level,
                    demand: 0,
                    request_id: 5,
                    body: Body::Completion {
                        status: rdio_core::wire::Status::Success,
                        bytes: 0,
                    },
                }))
            })
        },
    );
    runner.case(
        "Violations",
        "a status descriptor shorter than 24 bytes: Terminate ProtocolError",
        || {
            violation("a send", Code::PROTOCOL_ERROR, &|conn| {
                let dest = conn.rdma.descriptor(DATA, 16);
                let status = conn.rdma.descriptor(0, 8);
                Ok(crate::rdma::encode(&Message {
                    flags: Flags::INTERRUPT,
                    credits: conn.level,
                    demand: 0,
                    request_id: 5,
                    body: Body::Read(ReadRequest {
                        handle: 1,
                        offset: 0,
                        dest,
                        status,
                    }),
                }))
            })
        },
    );
    runner.case(
        "Violations",
        "a read over max_io_size: Terminate ProtocolError",
        || {
            violation("a send", Code::PROTOCOL_ERROR, &|conn| {
                let dest = BufferDescriptor::new(0, 1, conn.negotiation.max_io_size + 1);
                let status = conn.rdma.descriptor(0, 24);
                Ok(crate::rdma::encode(&Message {
                    flags: Flags::INTERRUPT,
                    credits: conn.level,
                    demand: 0,
                    request_id: 5,
                    body: Body::Read(ReadRequest {
                        handle: 1,
                        offset: 0,
                        dest,
                        status,
                    }),
                }))
            })
        },
    );
    runner.case(
        "Writes larger than one send",
        "a message over max_send_size: Terminate ProtocolError",
        || {
            violation("a send", Code::PROTOCOL_ERROR, &|conn| {
                let max = conn.negotiation.max_send_size as usize;
                let data = vec![0u8; max - 48 + 1];
                let status = conn.rdma.descriptor(0, 24);
                Ok(crate::rdma::encode(&Message {
                    flags: Flags::INTERRUPT,
                    credits: conn.level,
                    demand: 0,
                    request_id: 5,
                    body: Body::Write(WriteRequest {
                        handle: 1,
                        offset: 0,
                        total_len: (2 * max) as u32,
                        status,
                        data: &data,
                    }),
                }))
            })
        },
    );
    runner.case(
        "Writes larger than one send",
        "a WriteData at the wrong offset: Terminate ProtocolError",
        || {
            let mut conn = connect(&[])?;
            let status = conn.status_desc(5).1;
            let level = conn.level;
            conn.send(
                Flags::INTERRUPT,
                level,
                5,
                Body::Write(WriteRequest {
                    handle: 1,
                    offset: 0,
                    total_len: 100,
                    status,
                    data: b"abc",
                }),
            )?;
            conn.expect(op::COMPLETION, Code::SUCCESS, 1, 5)?;
            let level = conn.level;
            conn.send(
                Flags::empty(),
                level,
                5,
                Body::WriteData {
                    data_offset: 4,
                    data: b"d",
                },
            )?;
            conn.expect_terminate(Code::PROTOCOL_ERROR)
        },
    );
    runner.case(
        "Violations",
        "a new request reusing the id of a write still streaming: Terminate ProtocolError",
        || {
            let mut conn = connect(&[])?;
            let status = conn.status_desc(5).1;
            let level = conn.level;
            conn.send(
                Flags::INTERRUPT,
                level,
                5,
                Body::Write(WriteRequest {
                    handle: 1,
                    offset: 0,
                    total_len: 100,
                    status,
                    data: b"abc",
                }),
            )?;
            conn.expect(op::COMPLETION, Code::SUCCESS, 1, 5)?;
            let level = conn.level;
            conn.send(Flags::empty(), level, 5, Body::Keepalive)?;
            conn.expect_terminate(Code::PROTOCOL_ERROR)
        },
    );
    runner.case(
        "Violations",
        "a WriteData for no write: Terminate ProtocolError",
        || {
            violation("a send", Code::PROTOCOL_ERROR, &|conn| {
                Ok(crate::rdma::encode(&Message {
                    flags: Flags::empty(),
                    credits: conn.level,
                    demand: 0,
                    request_id: 77,
                    body: Body::WriteData {
                        data_offset: 0,
                        data: b"x",
                    },
                }))
            })
        },
    );
    runner.case(
        "Violations",
        "a second AuthRequest after authentication: Terminate ProtocolError",
        || {
            violation("a send", Code::PROTOCOL_ERROR, &|conn| {
                Ok(crate::rdma::encode(&Message {
                    flags: Flags::empty(),
                    credits: conn.level,
                    demand: 0,
                    request_id: 5,
                    body: Body::AuthRequest {
                        key: AuthKey(conn.negotiation.auth_key),
                    },
                }))
            })
        },
    );

    read_batch_cases(runner, target);
    credit_demand_cases(runner, target);
}

/// The credit-demand extension (§Credit demand): the header's demand word
/// is reserved on a session that did not negotiate bit 1.
fn credit_demand_cases(runner: &mut Runner<'_>, target: &Target) {
    runner.case(
        "Credit demand",
        "a Keepalive stating a demand on a session that did not negotiate bit 1: Terminate ProtocolError",
        || {
            let mut conn = Conn::open(target, &[])?;
            let id = conn.id();
            let level = conn.level;
            conn.send_demanding(Flags::empty(), level, 4, id, Body::Keepalive)?;
            conn.expect_terminate(Code::PROTOCOL_ERROR)
        },
    );
}

/// The read-batch extension (§Read batches, §ReadBatch): only where
/// capability bit 0 was granted; a batch's blocks each carry their own
/// read's id and one credit, and with `INTERRUPT` exactly one immediate,
/// the batch's id, comes after every block of the batch is written.
fn read_batch_cases(runner: &mut Runner<'_>, target: &Target) {
    let rw = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    const BATCH_BIT: u64 = 1;
    const LEN: usize = 700;
    // Three reads of a file written first, as one batch with `flags`:
    // their ids, blocks and bytes, in the batch's order.
    let batch = |interrupt: bool| -> Result<(), Mismatch> {
        let name = file_name();
        let mut conn = Conn::connect_offering(target, &[(rw, &name)], BATCH_BIT)?;
        check(
            "capabilities granted (bit 0 offered)",
            BATCH_BIT,
            conn.negotiation.capabilities,
        )?;
        conn.authenticate()?;
        let (handle, _) = conn.register(0)?;
        let data = pattern(3 * LEN, 11);
        conn.write(handle, 0, &data)?;
        conn.rdma.fill_memory(0).map_err(setup("memory"))?;
        let mut reads = Vec::new();
        let mut places = Vec::new();
        for i in 0..3 {
            let id = conn.id();
            let (status_at, status) = conn.status_desc(id);
            let dest = conn.rdma.descriptor(DATA + i * LEN, LEN);
            reads.push(BatchRead::new(id, handle, (i * LEN) as u64, dest, status));
            places.push((id, status_at));
        }
        let batch_id = places[0].0;
        let level = conn.level;
        let flags = if interrupt {
            Flags::INTERRUPT
        } else {
            Flags::empty()
        };
        conn.send(
            flags,
            level,
            batch_id,
            Body::ReadBatch(ReadBatchRequest { reads: &reads }),
        )?;
        if interrupt {
            match conn.next_arrival() {
                Incoming::Immediate(imm) => check("the immediate (the batch's id)", batch_id, imm)?,
                other => {
                    return Err(fail(
                        format_args!("one write with immediate {batch_id}"),
                        format_args!("{other:?}"),
                    ));
                }
            }
        }
        for (i, (id, status_at)) in places.iter().enumerate() {
            let block = if interrupt {
                conn.rdma.block(*status_at).ok_or_else(|| {
                    fail(
                        "every block of the batch written before its immediate",
                        "valid still 0",
                    )
                })?
            } else {
                conn.rdma
                    .poll_block(*status_at)
                    .ok_or_else(|| fail("a status block", "none within 5 s"))?
            };
            check(
                "block (request_id, status, bytes, credits)",
                (*id, Code::SUCCESS, LEN as u64, 1),
                (block.request_id, block.status, block.bytes, block.credits),
            )?;
            check(
                "the bytes of the batch's read",
                true,
                conn.rdma.memory(DATA + i * LEN, LEN) == data[i * LEN..(i + 1) * LEN],
            )?;
        }
        if interrupt {
            // No second immediate: the next arrival answers a keepalive.
            let id = conn.request(Flags::empty(), Body::Keepalive)?;
            conn.expect(op::KEEPALIVE_RESPONSE, Code::SUCCESS, 1, id)?;
        }
        Ok(())
    };
    runner.case(
        "Read batches",
        "bit 0 granted; a ReadBatch with INTERRUPT: one immediate (the batch id) after all three blocks (own ids, 1 credit each), data in place",
        || batch(true),
    );
    runner.case(
        "Read batches",
        "a ReadBatch without INTERRUPT: no immediate, every block written (own ids, 1 credit each)",
        || batch(false),
    );
    runner.case(
        "Read batches",
        "a ReadBatch on a session that did not negotiate bit 0: Terminate ProtocolError (or UnknownOpcode from a server without the extension)",
        || {
            let name = file_name();
            let mut conn = Conn::open(target, &[(rw, &name)])?;
            let (handle, _) = conn.register(0)?;
            let id = conn.id();
            let (_, status) = conn.status_desc(id);
            let dest = conn.rdma.descriptor(DATA, 16);
            let reads = [
                BatchRead::new(id, handle, 0, dest, status),
                BatchRead::new(id + 1, handle, 0, dest, status),
            ];
            let level = conn.level;
            conn.send(
                Flags::INTERRUPT,
                level,
                id,
                Body::ReadBatch(ReadBatchRequest { reads: &reads }),
            )?;
            match conn.next_arrival() {
                Incoming::Message(reply)
                    if reply.opcode == op::TERMINATE
                        && [Code::PROTOCOL_ERROR, Code::UNKNOWN_OPCODE]
                            .contains(&reply.status()) =>
                {
                    Ok(())
                }
                other => Err(fail(
                    "Terminate ProtocolError or UnknownOpcode",
                    format_args!("{other:?}"),
                )),
            }
        },
    );
    runner.case(
        "Read batches",
        "a ReadBatch of more reads than free credits: Terminate ProtocolError",
        || {
            let name = file_name();
            let mut conn = Conn::connect_offering(target, &[(rw, &name)], BATCH_BIT)?;
            conn.authenticate()?;
            let (handle, _) = conn.register(0)?;
            let level = conn.level;
            let reads: Vec<BatchRead> = (0..=u32::from(level))
                .map(|i| {
                    let id = 500 + i;
                    let (_, status) = conn.status_desc(id);
                    BatchRead::new(id, handle, 0, conn.rdma.descriptor(DATA, 16), status)
                })
                .collect();
            conn.send(
                Flags::INTERRUPT,
                level,
                500,
                Body::ReadBatch(ReadBatchRequest { reads: &reads }),
            )?;
            conn.expect_terminate(Code::PROTOCOL_ERROR)
        },
    );
}
