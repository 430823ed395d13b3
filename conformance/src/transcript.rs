//! One full session, recorded byte for byte: the machine-readable
//! transcripts `docs/vectors/session-{fabric,cma}.json`
//! (`rdio conformance --transcript FILE`). The tester writes each entry's
//! direction, channel and bytes; `core/tests/vectors.rs` adds the decoded
//! header and fields (`RDIO_BLESS_VECTORS=1`) and checks them.

use crate::cases::Target;
use crate::expect::{STATUS_BLOCK, op, pipe_op, u16_at};
use crate::pipe::{Pipe, encode, raw_frame};
use crate::rdma::{Incoming, Link, Rdma};
use rdio_core::wire::{
    AuthKey, Body, Capabilities, Flags, Message, NegotiateRequest, OpenFlags, PipeMessage,
    ProviderName, ReadRequest, ResumeKey, Status, WriteRequest,
};
use std::fmt::Write as _;
use std::net::SocketAddr;

/// The smallest send size, so a 600-byte write shows fragmentation.
const SEND: u32 = 512;
/// The file written and read back.
const DATA_LEN: usize = 600;

struct Recorder {
    entries: Vec<String>,
}

impl Recorder {
    fn add(&mut self, from: &str, channel: &str, what: &str, bytes: &[u8]) {
        let hex = bytes.iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        });
        self.entries.push(format!(
            "    {{ \"seq\": {}, \"from\": \"{from}\", \"channel\": \"{channel}\", \"what\": \"{what}\", \"hex\": \"{hex}\" }}",
            self.entries.len() + 1
        ));
    }
}

fn expect_reply(rdma: &mut Rdma, opcode: u8) -> Result<Vec<u8>, String> {
    match rdma.next_arrival() {
        Incoming::Message(reply) if reply.opcode == opcode => Ok(reply.raw),
        other => Err(format!("expected opcode 0x{opcode:02x}, got {other:?}")),
    }
}

fn expect_immediate(rdma: &mut Rdma, id: u32) -> Result<(), String> {
    match rdma.next_arrival() {
        Incoming::Immediate(imm) if imm == id => Ok(()),
        other => Err(format!("expected the immediate {id}, got {other:?}")),
    }
}

/// Run the session against `target` and return the transcript as JSON.
pub fn record(target: &Target) -> Result<String, String> {
    let mut log = Recorder {
        entries: Vec::new(),
    };
    let mut pipe = Pipe::connect(target.server)?;
    let binding = pipe.rdma_binding();
    let mut exchange = |log: &mut Recorder, what: &str, reply: &str, bytes: Vec<u8>| {
        log.add("client", "pipe", what, &bytes);
        let frame = pipe.exchange(&bytes)?;
        log.add("server", "pipe", reply, pipe.last_raw());
        Ok::<_, String>(frame)
    };
    let resume = exchange(
        &mut log,
        "ResumeKeyRequest",
        "ResumeKeyResponse",
        raw_frame(pipe_op::RESUME_KEY_REQUEST, &[]),
    )?;
    let mut server_key = [0u8; 16];
    server_key.copy_from_slice(resume.payload.get(..16).ok_or("short ResumeKeyResponse")?);
    let path = format!("conformance-session-{}", std::process::id());
    let opened = exchange(
        &mut log,
        "OpenRequest",
        "OpenResponse",
        encode(&PipeMessage::OpenRequest {
            flags: OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE,
            path: path.as_bytes(),
        }),
    )?;
    let mut file_key = [0u8; 16];
    file_key.copy_from_slice(opened.payload.get(8..24).ok_or("short OpenResponse")?);
    let provider =
        ProviderName::new(&target.transport.provider_name()).map_err(|e| e.to_string())?;
    let negotiated = exchange(
        &mut log,
        "NegotiateRequest",
        "NegotiateResponse",
        encode(&PipeMessage::NegotiateRequest(NegotiateRequest {
            server_key: ResumeKey(server_key),
            min_version: 1,
            max_version: 1,
            credits_requested: crate::rdma::CREDITS,
            max_send_size: SEND,
            max_io_size: 64 << 10,
            providers: [provider].into_iter().collect(),
            capabilities: Capabilities::NONE,
        })),
    )?;
    let mut negotiation = crate::expect::Negotiation::decode(&negotiated.payload);
    negotiation.auth_key = crate::pipe::rdma_auth_key(binding.as_ref(), negotiation.auth_key);
    if negotiation.max_send_size != SEND {
        return Err(format!(
            "negotiated send size {}",
            negotiation.max_send_size
        ));
    }
    let endpoint: SocketAddr = String::from_utf8_lossy(&negotiation.endpoint)
        .parse()
        .map_err(|_| "a bad endpoint".to_owned())?;
    let endpoint = rdio::net::reachable_endpoint(endpoint, target.server);
    let mut rdma = Rdma::new(Link::connect(&target.transport, endpoint)?)?;

    let send = |log: &mut Recorder, rdma: &mut Rdma, what: &str, message: Message<'_>| {
        let bytes = crate::rdma::encode(&message);
        log.add("client", "rdma", what, &bytes);
        rdma.send_bytes(&bytes)
    };
    let level = negotiation.credits;
    send(
        &mut log,
        &mut rdma,
        "AuthRequest",
        Message {
            flags: Flags::empty(),
            credits: level,
            demand: 0,
            request_id: 1,
            body: Body::AuthRequest {
                key: AuthKey(negotiation.auth_key),
            },
        },
    )?;
    let reply = expect_reply(&mut rdma, op::AUTH_RESPONSE)?;
    log.add("server", "rdma", "AuthResponse", &reply);
    let reply = expect_reply(&mut rdma, op::STATUS_RESPONSE)?;
    log.add("server", "rdma", "StatusResponse", &reply);
    let level = u16_at(&reply, 20);

    send(
        &mut log,
        &mut rdma,
        "RegisterFile",
        Message {
            flags: Flags::empty(),
            credits: level,
            demand: 0,
            request_id: 2,
            body: Body::RegisterFile {
                key: ResumeKey(file_key),
            },
        },
    )?;
    let reply = expect_reply(&mut rdma, op::REGISTER_FILE_COMPLETION)?;
    log.add("server", "rdma", "RegisterFileCompletion", &reply);
    let handle = crate::expect::u32_at(&reply, 20);

    // A write of 600 bytes in two fragments.
    let data: Vec<u8> = (0..DATA_LEN).map(|i| (i % 251) as u8).collect();
    let first = SEND as usize - 48;
    let status = rdma.descriptor(0, STATUS_BLOCK);
    send(
        &mut log,
        &mut rdma,
        "Write (first fragment)",
        Message {
            flags: Flags::INTERRUPT,
            credits: level,
            demand: 0,
            request_id: 3,
            body: Body::Write(WriteRequest {
                handle,
                offset: 0,
                total_len: DATA_LEN as u32,
                status,
                data: &data[..first],
            }),
        },
    )?;
    let reply = expect_reply(&mut rdma, op::COMPLETION)?;
    log.add("server", "rdma", "Completion (fragment received)", &reply);
    send(
        &mut log,
        &mut rdma,
        "WriteData (last fragment)",
        Message {
            flags: Flags::empty(),
            credits: level,
            demand: 0,
            request_id: 3,
            body: Body::WriteData {
                data_offset: first as u32,
                data: &data[first..],
            },
        },
    )?;
    expect_immediate(&mut rdma, 3)?;
    log.add(
        "server",
        "status_block",
        "StatusBlock of the write (RDMA write with immediate 3)",
        &rdma.memory(0, STATUS_BLOCK),
    );

    // Read it back.
    rdma.fill_memory(0)?;
    let dest = rdma.descriptor(4096, DATA_LEN);
    send(
        &mut log,
        &mut rdma,
        "Read",
        Message {
            flags: Flags::INTERRUPT,
            credits: level,
            demand: 0,
            request_id: 4,
            body: Body::Read(ReadRequest {
                handle,
                offset: 0,
                dest,
                status,
            }),
        },
    )?;
    expect_immediate(&mut rdma, 4)?;
    let read = rdma.memory(4096, DATA_LEN);
    if read != data {
        return Err("the data read back differs".to_owned());
    }
    log.add(
        "server",
        "rdma_write",
        "read data (RDMA write into dest)",
        &read,
    );
    log.add(
        "server",
        "status_block",
        "StatusBlock of the read (RDMA write with immediate 4)",
        &rdma.memory(0, STATUS_BLOCK),
    );

    send(
        &mut log,
        &mut rdma,
        "Close",
        Message {
            flags: Flags::empty(),
            credits: level,
            demand: 0,
            request_id: 5,
            body: Body::Close { handle },
        },
    )?;
    let reply = expect_reply(&mut rdma, op::COMPLETION)?;
    log.add("server", "rdma", "Completion (close)", &reply);
    send(
        &mut log,
        &mut rdma,
        "Terminate",
        Message {
            flags: Flags::empty(),
            credits: 0,
            demand: 0,
            request_id: 0,
            body: Body::Terminate {
                reason: Status::Shutdown,
            },
        },
    )?;

    let transport = match &target.transport {
        crate::TransportKind::Fabric { .. } => "fabric",
        crate::TransportKind::Cma => "cma",
    };
    Ok(format!(
        "{{\n  \"description\": \"One full rdio session over the {transport} transport ({}), recorded by rdio conformance --transcript against rdio serve: discovery on the pipe, authentication, registration, a write in two fragments, a read, close. Keys, addresses and the endpoint are those of that run. hex is the exact bytes of each message; status_block and rdma_write entries are bytes the server RDMA-wrote into client memory.\",\n  \"transport\": \"{transport}\",\n  \"transcript\": [\n{}\n  ]\n}}\n",
        target.transport.provider_name(),
        log.entries.join(",\n")
    ))
}
