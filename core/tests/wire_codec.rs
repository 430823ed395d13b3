//! Codec tests: every message round-trips, every truncation and extension is
//! rejected, encodings match the golden vectors (also shown in
//! `docs/PROTOCOL.md`), and malformed input of every kind yields its typed
//! error.

mod wire_samples;

use rdio_core::wire::header::{HEADER_LEN, HeaderWire};
use rdio_core::wire::pipe::{PIPE_HEADER_LEN, PIPE_MAGIC};
use rdio_core::wire::status::{STATUS_BLOCK_LEN, STATUS_VALID};
use rdio_core::wire::{
    Body, BufferDescriptor, Flags, Header, InsufficientSize, MAX_PIPE_PAYLOAD, Message, Opcode,
    OpenFlags, PipeHeader, PipeMessage, ReadSegment, ReadVRequest, StatusBlock, WireError,
};
use std::fmt::Write as _;
use wire_samples::Sample;

/// 16 space-separated lowercase hex bytes per line: the golden format.
fn hex(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (i, byte) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(if i % 16 == 0 { '\n' } else { ' ' });
        }
        write!(out, "{byte:02x}").expect("write to String");
    }
    out
}

fn unhex(text: &str) -> Vec<u8> {
    text.split_whitespace()
        .map(|byte| u8::from_str_radix(byte, 16).expect("hex byte"))
        .collect()
}

fn encode_rdma(message: &Message<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; message.encoded_len()];
    assert_eq!(message.emit(&mut buf), Ok(buf.len()));
    buf
}

fn encode_pipe(message: &PipeMessage<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; message.encoded_len()];
    assert_eq!(message.emit(&mut buf), Ok(buf.len()));
    buf
}

fn rdma_bytes(name: &str) -> Vec<u8> {
    let sample = wire_samples::rdma()
        .into_iter()
        .find(|s| s.name == name)
        .expect("sample exists");
    unhex(sample.golden)
}

fn pipe_bytes(name: &str) -> Vec<u8> {
    let sample = wire_samples::pipe()
        .into_iter()
        .find(|s| s.name == name)
        .expect("sample exists");
    unhex(sample.golden)
}

/// A raw RDMA message built by hand, independently of the encoder.
fn raw_rdma(version: u8, opcode: u8, flags: u16, reserved: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![version, opcode];
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&5u16.to_le_bytes());
    out.extend_from_slice(&reserved.to_le_bytes());
    out.extend_from_slice(&9u32.to_le_bytes());
    out.extend_from_slice(
        &u32::try_from(payload.len())
            .expect("small payload")
            .to_le_bytes(),
    );
    out.extend_from_slice(payload);
    out
}

/// A raw pipe frame built by hand.
fn raw_pipe(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = PIPE_MAGIC.to_vec();
    out.extend_from_slice(&[1, opcode, 0, 0]);
    out.extend_from_slice(
        &u32::try_from(payload.len())
            .expect("small payload")
            .to_le_bytes(),
    );
    out.extend_from_slice(payload);
    out
}

/// Overwrite little-endian bytes at `offset`.
fn patch(bytes: &mut [u8], offset: usize, value: &[u8]) {
    bytes[offset..offset + value.len()].copy_from_slice(value);
}

fn parse_rdma_err(bytes: &[u8]) -> WireError {
    Message::parse(bytes).expect_err("must be rejected")
}

fn parse_pipe_err(bytes: &[u8]) -> WireError {
    PipeMessage::parse(bytes).expect_err("must be rejected")
}

// ---------------------------------------------------------------- coverage

#[test]
fn samples_cover_every_opcode() {
    let samples = wire_samples::rdma();
    let all = (0..=u8::MAX).filter_map(|byte| Opcode::from_u8(byte).ok());
    let mut count = 0;
    for opcode in all {
        count += 1;
        assert!(
            samples.iter().any(|s| s.value.opcode() == opcode),
            "no sample for {opcode:?}"
        );
    }
    assert_eq!(count, 23);
    let pipe_opcodes: Vec<u8> = wire_samples::pipe()
        .iter()
        .map(|s| unhex(s.golden)[5])
        .collect::<std::collections::BTreeSet<u8>>()
        .into_iter()
        .collect();
    // The authentication messages (0x10..=0x13, 0x1F): tests/wire_auth.rs.
    // Checksums 0x20, 0x21; the remote file operations 0x22..=0x2B and 0x2F.
    let mut expected = vec![1, 2, 3, 4, 5, 6, 7, 8, 0x20, 0x21];
    expected.extend(0x22..=0x2B);
    expected.extend([0x2F, 0x30]);
    assert_eq!(pipe_opcodes, expected);
}

// ---------------------------------------------------------------- round trips

#[test]
fn rdma_round_trip_and_prefix() {
    for Sample { name, value, .. } in wire_samples::rdma() {
        let bytes = encode_rdma(&value);
        assert_eq!(Message::parse(&bytes), Ok(value), "{name}");

        let prefix_len = value.prefix_len();
        assert_eq!(prefix_len + value.data().len(), bytes.len(), "{name}");
        let mut prefix = vec![0u8; prefix_len];
        assert_eq!(value.emit_prefix(&mut prefix), Ok(prefix_len), "{name}");
        prefix.extend_from_slice(value.data());
        assert_eq!(prefix, bytes, "{name}: prefix + data == whole");

        let header = Header::parse(&bytes).expect("header");
        assert_eq!(header.opcode, value.opcode(), "{name}");
        assert_eq!(
            usize::try_from(header.length).expect("fits"),
            bytes.len() - HEADER_LEN,
            "{name}"
        );
    }
}

#[test]
fn prefix_len_counts_fixed_part_and_segments() {
    let samples = wire_samples::rdma();
    let prefix = |name: &str| {
        samples
            .iter()
            .find(|s| s.name == name)
            .expect("sample")
            .value
            .prefix_len()
    };
    assert_eq!(prefix("Read"), HEADER_LEN + 48);
    assert_eq!(prefix("ReadV"), HEADER_LEN + 24 + 2 * 24);
    assert_eq!(prefix("Write"), HEADER_LEN + 32);
    assert_eq!(prefix("WriteV"), HEADER_LEN + 32 + 2 * 16);
    assert_eq!(prefix("WriteV (COLLAPSE)"), HEADER_LEN + 32 + 3 * 16);
    assert_eq!(prefix("WriteData"), HEADER_LEN + 8);
}

#[test]
fn pipe_round_trip() {
    for Sample { name, value, .. } in wire_samples::pipe() {
        let bytes = encode_pipe(&value);
        assert_eq!(
            PipeMessage::parse(&bytes),
            Ok((value.clone(), bytes.len())),
            "{name}"
        );
        let header = PipeHeader::parse(&bytes).expect("header");
        assert_eq!(header.frame_len(), bytes.len(), "{name}");
    }
}

#[test]
fn status_block_round_trip() {
    for Sample { name, value, .. } in wire_samples::status() {
        let mut buf = [0u8; STATUS_BLOCK_LEN];
        assert_eq!(value.emit(&mut buf), Ok(STATUS_BLOCK_LEN), "{name}");
        assert_eq!(buf, value.to_bytes());
        assert_eq!(StatusBlock::parse(&buf), Ok(Some(value)), "{name}");
    }
}

/// The pipe is a stream: a frame followed by the next one parses, reports
/// its own length, and leaves the rest.
#[test]
fn pipe_stream_of_frames() {
    let mut stream = Vec::new();
    let samples = wire_samples::pipe();
    for sample in &samples {
        stream.extend_from_slice(&encode_pipe(&sample.value));
    }
    let mut rest = &stream[..];
    for sample in &samples {
        let (message, consumed) = PipeMessage::parse(rest).expect("frame");
        assert_eq!(message, sample.value, "{}", sample.name);
        rest = &rest[consumed..];
    }
    assert!(rest.is_empty());
}

// ---------------------------------------------------------------- golden vectors

#[test]
fn golden_vectors() {
    for Sample {
        name,
        value,
        golden,
    } in wire_samples::rdma()
    {
        assert_eq!(hex(&encode_rdma(&value)), golden, "{name}");
        assert_eq!(Message::parse(&unhex(golden)), Ok(value), "{name}");
    }
    for Sample {
        name,
        value,
        golden,
    } in wire_samples::pipe()
    {
        assert_eq!(hex(&encode_pipe(&value)), golden, "{name}");
    }
    for Sample {
        name,
        value,
        golden,
    } in wire_samples::status()
    {
        assert_eq!(hex(&value.to_bytes()), golden, "{name}");
    }
}

/// `docs/PROTOCOL.md` shows every golden vector, under the message's own
/// heading, byte for byte.
#[test]
fn protocol_doc_shows_golden_vectors() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROTOCOL.md");
    let doc = std::fs::read_to_string(path).expect("docs/PROTOCOL.md exists");
    let begin = doc.find("<!-- wire:begin -->").expect("wire:begin marker");
    let end = doc.find("<!-- wire:end -->").expect("wire:end marker");
    let wire = &doc[begin..end];
    let names_and_goldens = wire_samples::rdma()
        .into_iter()
        .map(|s| (s.name, s.golden))
        .chain(wire_samples::pipe().into_iter().map(|s| (s.name, s.golden)))
        .chain(
            wire_samples::status()
                .into_iter()
                .map(|s| (s.name, s.golden)),
        );
    for (name, golden) in names_and_goldens {
        let heading = format!("### {name}\n");
        let start = wire
            .find(&heading)
            .unwrap_or_else(|| panic!("no heading for {name}"));
        let section = &wire[start + heading.len()..];
        let section = &section[..section.find("\n### ").unwrap_or(section.len())];
        let block = format!("```text\n{golden}\n```");
        assert!(
            section.contains(&block),
            "{name}: golden vector missing or different in docs"
        );
    }
}

// ---------------------------------------------------------------- truncation and extension

#[test]
fn every_truncation_and_extension_of_rdma_messages_is_rejected() {
    for Sample { name, value, .. } in wire_samples::rdma() {
        let bytes = encode_rdma(&value);
        for k in 0..bytes.len() {
            let required = if k < HEADER_LEN {
                HEADER_LEN
            } else {
                bytes.len()
            };
            assert_eq!(
                Message::parse(&bytes[..k]),
                Err(WireError::Truncated {
                    required,
                    available: k
                }),
                "{name} cut to {k}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            Message::parse(&longer),
            Err(WireError::TrailingBytes(1)),
            "{name}"
        );
    }
}

#[test]
fn every_truncation_of_pipe_messages_asks_for_more() {
    for Sample { name, value, .. } in wire_samples::pipe() {
        let bytes = encode_pipe(&value);
        for k in 0..bytes.len() {
            let required = if k < PIPE_HEADER_LEN {
                PIPE_HEADER_LEN
            } else {
                bytes.len()
            };
            assert_eq!(
                PipeMessage::parse(&bytes[..k]),
                Err(WireError::Truncated {
                    required,
                    available: k
                }),
                "{name} cut to {k}"
            );
        }
    }
}

#[test]
fn every_truncation_of_the_status_block_is_rejected() {
    let bytes = wire_samples::status()[0].value.to_bytes();
    for k in 0..STATUS_BLOCK_LEN {
        assert_eq!(
            StatusBlock::parse(&bytes[..k]),
            Err(WireError::Truncated {
                required: STATUS_BLOCK_LEN,
                available: k
            })
        );
    }
}

// ---------------------------------------------------------------- short buffers

/// Every too-short buffer gets `InsufficientSize` with the true requirement,
/// and not one byte of it changes.
#[test]
fn emit_into_short_buffer_leaves_it_untouched() {
    fn check(len: usize, emit: impl Fn(&mut [u8]) -> Result<usize, InsufficientSize>, name: &str) {
        for k in 0..len {
            let mut buf = vec![0xAA; k];
            assert_eq!(
                emit(&mut buf),
                Err(InsufficientSize { required: len }),
                "{name} into {k}"
            );
            assert!(
                buf.iter().all(|&b| b == 0xAA),
                "{name}: buffer of {k} touched"
            );
        }
    }
    for Sample { name, value, .. } in wire_samples::rdma() {
        check(value.encoded_len(), |buf| value.emit(buf), name);
        check(value.prefix_len(), |buf| value.emit_prefix(buf), name);
    }
    for Sample { name, value, .. } in wire_samples::pipe() {
        check(value.encoded_len(), |buf| value.emit(buf), name);
    }
    for Sample { name, value, .. } in wire_samples::status() {
        check(STATUS_BLOCK_LEN, |buf| value.emit(buf), name);
    }
}

#[test]
fn emit_into_larger_buffer_writes_only_the_message() {
    let value = &wire_samples::rdma()[0].value;
    let mut buf = vec![0xAA; value.encoded_len() + 8];
    let written = value.emit(&mut buf).expect("fits");
    assert_eq!(written, value.encoded_len());
    assert!(buf[written..].iter().all(|&b| b == 0xAA));
    assert_eq!(Message::parse(&buf[..written]).as_ref(), Ok(value));
}

/// Counts that do not fit their wire field cannot be encoded: the encoders
/// say so as an impossible buffer requirement instead of truncating a field.
#[test]
fn unencodable_messages_need_an_impossible_buffer() {
    let segments =
        vec![ReadSegment::new(0, BufferDescriptor::new(0, 0, 1)); usize::from(u16::MAX) + 1];
    let message = Message {
        flags: Flags::empty(),
        credits: 0,
        demand: 0,
        request_id: 0,
        body: Body::ReadV(ReadVRequest {
            handle: 0,
            status: BufferDescriptor::default(),
            segments: &segments,
        }),
    };
    assert_eq!(message.encoded_len(), usize::MAX);
    assert_eq!(message.prefix_len(), usize::MAX);
    let mut buf = vec![0xAA; 64];
    assert_eq!(
        message.emit(&mut buf),
        Err(InsufficientSize {
            required: usize::MAX
        })
    );
    assert_eq!(
        message.emit_prefix(&mut buf),
        Err(InsufficientSize {
            required: usize::MAX
        })
    );
    assert!(buf.iter().all(|&b| b == 0xAA));

    let path = vec![b'a'; usize::from(u16::MAX) + 1];
    let open = PipeMessage::OpenRequest {
        flags: OpenFlags::READ,
        path: &path,
    };
    assert_eq!(open.encoded_len(), usize::MAX);
    assert_eq!(
        open.emit(&mut buf),
        Err(InsufficientSize {
            required: usize::MAX
        })
    );
}

// ---------------------------------------------------------------- RDMA header rejections

#[test]
fn header_rejections() {
    let good = rdma_bytes("Keepalive");
    assert!(Message::parse(&good).is_ok());

    assert_eq!(
        parse_rdma_err(&raw_rdma(2, 0x40, 0, 0, &[])),
        WireError::UnsupportedVersion(2)
    );
    assert_eq!(
        parse_rdma_err(&raw_rdma(0, 0x40, 0, 0, &[])),
        WireError::UnsupportedVersion(0)
    );
    for unknown in [0x00, 0x04, 0x14, 0x2b, 0x42, 0x7e, 0x80, 0xff] {
        assert_eq!(
            parse_rdma_err(&raw_rdma(1, unknown, 0, 0, &[])),
            WireError::UnknownOpcode(unknown)
        );
    }
    // Undefined bits, on an opcode that allows flags and on one that does not.
    let read = &rdma_bytes("Read")[HEADER_LEN..];
    assert_eq!(
        parse_rdma_err(&raw_rdma(1, 0x21, 0x0004, 0, read)),
        WireError::UnknownFlags(0x0004)
    );
    assert_eq!(
        parse_rdma_err(&raw_rdma(1, 0x21, 0x8001, 0, read)),
        WireError::UnknownFlags(0x8000)
    );
    // Defined bits on opcodes they do not apply to.
    assert_eq!(
        parse_rdma_err(&raw_rdma(1, 0x21, 0x0002, 0, read)),
        WireError::UnknownFlags(0x0002)
    );
    assert_eq!(
        parse_rdma_err(&raw_rdma(1, 0x40, 0x0001, 0, &[])),
        WireError::UnknownFlags(0x0001)
    );
    assert_eq!(
        parse_rdma_err(&raw_rdma(1, 0x25, 0x0003, 0, &[0; 9])),
        WireError::UnknownFlags(0x0003)
    );
    // The word at offset 6 is a client request's credit demand: any value
    // parses (the connection checks its session negotiated it)...
    let bytes = raw_rdma(1, 0x40, 0, 7, &[]);
    let keepalive = Message::parse(&bytes).expect("a demand parses");
    assert_eq!(keepalive.body, Body::Keepalive);
    // ...and must be zero on every other message: a server's (here a
    // KeepaliveResponse), an AuthRequest, a Terminate.
    assert_eq!(
        parse_rdma_err(&raw_rdma(1, 0x41, 0, 1, &[])),
        WireError::ReservedNotZero
    );
    // The header parser alone reports the same.
    for opcode in [0x41, 0x01, 0x7F, 0x29] {
        assert_eq!(
            Header::parse(&raw_rdma(1, opcode, 0, 0x100, &[])),
            Err(WireError::ReservedNotZero),
            "opcode {opcode:#04x}"
        );
    }
    assert_eq!(
        Header::parse(&good[..HEADER_LEN - 1]),
        Err(WireError::Truncated {
            required: 16,
            available: 15
        })
    );
}

/// A huge declared length is "truncated", not an overflow.
#[test]
fn huge_declared_length_is_truncated() {
    let mut bytes = raw_rdma(1, 0x40, 0, 0, &[]);
    patch(&mut bytes, 12, &u32::MAX.to_le_bytes());
    assert_eq!(
        parse_rdma_err(&bytes),
        WireError::Truncated {
            required: HEADER_LEN + u32::MAX as usize,
            available: HEADER_LEN
        }
    );
}

#[test]
fn header_wire_layout() {
    let bytes = rdma_bytes("Read");
    let (wire, _payload) =
        <HeaderWire as zerocopy::FromBytes>::ref_from_prefix(&bytes).expect("16 bytes");
    assert_eq!(wire.version, 1);
    assert_eq!(wire.opcode, Opcode::Read as u8);
    assert_eq!(wire.flags.get(), Flags::INTERRUPT.bits());
    assert_eq!(wire.request_id.get(), 0x1122_3344);
    assert_eq!(wire.length.get(), 48);
}

// ---------------------------------------------------------------- RDMA payload rejections

/// Every reserved field, set non-zero, is rejected (name, byte offset in the
/// whole message).
#[test]
fn reserved_fields_rejected() {
    let cases = [
        ("AuthRequest", 6),
        ("StatusResponse", HEADER_LEN + 6),
        ("Read", HEADER_LEN + 4),
        ("ReadV", HEADER_LEN + 6),
        ("WriteV", HEADER_LEN + 6),
        ("WriteV", HEADER_LEN + 12),
        ("WriteV", HEADER_LEN + 32 + 12),
        ("WriteV", HEADER_LEN + 32 + 16 + 15),
        ("WriteData", HEADER_LEN + 4),
        ("Cancel", HEADER_LEN + 4),
        ("Close", HEADER_LEN + 7),
        ("Completion", HEADER_LEN + 4),
        ("Terminate", HEADER_LEN + 4),
    ];
    for (name, offset) in cases {
        let mut bytes = rdma_bytes(name);
        bytes[offset] = 1;
        assert_eq!(
            parse_rdma_err(&bytes),
            WireError::ReservedNotZero,
            "{name} byte {offset}"
        );
    }
}

#[test]
fn unknown_status_codes_rejected() {
    for (name, offset) in [
        ("AuthResponse", HEADER_LEN),
        ("StatusResponse", HEADER_LEN),
        ("RegisterFileCompletion", HEADER_LEN),
        ("Completion", HEADER_LEN),
        ("Terminate", HEADER_LEN),
    ] {
        let mut bytes = rdma_bytes(name);
        patch(&mut bytes, offset, &99u32.to_le_bytes());
        assert_eq!(
            parse_rdma_err(&bytes),
            WireError::UnknownStatus(99),
            "{name}"
        );
    }
}

#[test]
fn fixed_payload_lengths_enforced() {
    // Payload one byte shorter than the fixed part: truncated.
    for (opcode, fixed) in [
        (0x01, 16),
        (0x02, 4),
        (0x03, 12),
        (0x10, 4),
        (0x20, 16),
        (0x21, 48),
        (0x22, 24),
        (0x23, 32),
        (0x24, 32),
        (0x25, 8),
        (0x26, 8),
        (0x28, 16),
        (0x29, 16),
        (0x7f, 8),
    ] {
        let bytes = raw_rdma(1, opcode, 0, 0, &vec![0; fixed - 1]);
        assert_eq!(
            parse_rdma_err(&bytes),
            WireError::Truncated {
                required: HEADER_LEN + fixed,
                available: HEADER_LEN + fixed - 1
            },
            "opcode {opcode:#x}"
        );
    }
    // Fixed-size payloads one byte longer: bad length.
    for name in [
        "AuthRequest",
        "AuthResponse",
        "StatusResponse",
        "CreditRequest",
        "CreditAck",
        "RegisterFile",
        "RegisterFileCompletion",
        "Read",
        "ReadV",
        "Cancel",
        "Close",
        "Completion",
        "Terminate",
    ] {
        let bytes = rdma_bytes(name);
        let (header, payload) = bytes.split_at(HEADER_LEN);
        let mut longer = payload.to_vec();
        longer.push(0);
        let bytes = raw_rdma(
            1,
            header[1],
            u16::from_le_bytes([header[2], header[3]]),
            0,
            &longer,
        );
        assert_eq!(parse_rdma_err(&bytes), WireError::BadLength, "{name}");
    }
    // Empty-bodied messages with a payload.
    for opcode in [0x12, 0x13, 0x30, 0x31, 0x40, 0x41] {
        assert_eq!(
            parse_rdma_err(&raw_rdma(1, opcode, 0, 0, &[0])),
            WireError::BadLength,
            "{opcode:#x}"
        );
    }
}

#[test]
fn credit_deltas_validated() {
    assert_eq!(
        parse_rdma_err(&raw_rdma(1, 0x10, 0, 0, &0i32.to_le_bytes())),
        WireError::InvalidField
    );
    for delta in [0i32, -1, i32::MIN] {
        assert_eq!(
            parse_rdma_err(&raw_rdma(1, 0x11, 0, 0, &delta.to_le_bytes())),
            WireError::InvalidField
        );
    }
    let bytes = raw_rdma(1, 0x10, 0, 0, &i32::MIN.to_le_bytes());
    let parsed = Message::parse(&bytes).expect("revoke");
    assert_eq!(parsed.body, Body::CreditRequest { delta: i32::MIN });
}

#[test]
fn read_rejections() {
    let mut bytes = rdma_bytes("Read");
    patch(&mut bytes, HEADER_LEN + 28, &0u32.to_le_bytes()); // dest.len
    assert_eq!(parse_rdma_err(&bytes), WireError::InvalidField);
}

#[test]
fn read_v_rejections() {
    let good = rdma_bytes("ReadV");
    let count_at = HEADER_LEN + 4;

    let mut bytes = good.clone();
    patch(&mut bytes, count_at, &0u16.to_le_bytes());
    assert_eq!(
        parse_rdma_err(&raw_rdma(
            1,
            0x22,
            0,
            0,
            &bytes[HEADER_LEN..HEADER_LEN + 24]
        )),
        WireError::InvalidField
    );

    // Count and length disagree, both ways.
    let mut bytes = good.clone();
    patch(&mut bytes, count_at, &1u16.to_le_bytes());
    assert_eq!(parse_rdma_err(&bytes), WireError::BadLength);
    let mut bytes = good.clone();
    patch(&mut bytes, count_at, &3u16.to_le_bytes());
    assert_eq!(parse_rdma_err(&bytes), WireError::BadLength);

    // 17 segments, length consistent: too many.
    let mut payload = good[HEADER_LEN..HEADER_LEN + 24].to_vec();
    patch(&mut payload, 4, &17u16.to_le_bytes());
    for _ in 0..17 {
        payload.extend_from_slice(&good[HEADER_LEN + 24..HEADER_LEN + 48]);
    }
    assert_eq!(
        parse_rdma_err(&raw_rdma(1, 0x22, 0, 0, &payload)),
        WireError::TooMany
    );
    // 16 is the limit and is fine.
    patch(&mut payload, 4, &16u16.to_le_bytes());
    payload.truncate(payload.len() - 24);
    assert!(Message::parse(&raw_rdma(1, 0x22, 0, 0, &payload)).is_ok());

    // An empty destination in the second segment.
    let mut bytes = good.clone();
    patch(&mut bytes, HEADER_LEN + 24 + 24 + 20, &0u32.to_le_bytes());
    assert_eq!(parse_rdma_err(&bytes), WireError::InvalidField);
}

#[test]
fn write_rejections() {
    let good = rdma_bytes("Write");
    let total_at = HEADER_LEN + 4;
    let mut bytes = good.clone();
    patch(&mut bytes, total_at, &0u32.to_le_bytes());
    assert_eq!(parse_rdma_err(&bytes), WireError::InvalidField);
    // Three data bytes in a write of two.
    let mut bytes = good.clone();
    patch(&mut bytes, total_at, &2u32.to_le_bytes());
    assert_eq!(parse_rdma_err(&bytes), WireError::BadLength);
    // Exactly total_len bytes, and none, are both fine.
    let mut bytes = good.clone();
    patch(&mut bytes, total_at, &3u32.to_le_bytes());
    assert!(Message::parse(&bytes).is_ok());
    assert!(Message::parse(&raw_rdma(1, 0x23, 0, 0, &good[HEADER_LEN..HEADER_LEN + 32])).is_ok());

    // WriteData: empty data, reserved.
    let data = rdma_bytes("WriteData");
    assert_eq!(
        parse_rdma_err(&raw_rdma(1, 0x25, 0, 0, &data[HEADER_LEN..HEADER_LEN + 8])),
        WireError::InvalidField
    );
}

/// Rebuild a WriteV payload with the given flags, total length, segment
/// (offset, len, reserved) triples and data.
fn write_v(flags: u16, total_len: u32, segments: &[(u64, u32, u32)], data: &[u8]) -> Vec<u8> {
    let mut payload = Vec::new();
    payload.extend_from_slice(&7u32.to_le_bytes());
    payload.extend_from_slice(&u16::try_from(segments.len()).expect("count").to_le_bytes());
    payload.extend_from_slice(&0u16.to_le_bytes());
    payload.extend_from_slice(&total_len.to_le_bytes());
    payload.extend_from_slice(&0u32.to_le_bytes());
    payload.extend_from_slice(&[0x11; 16]);
    for &(offset, len, reserved) in segments {
        payload.extend_from_slice(&offset.to_le_bytes());
        payload.extend_from_slice(&len.to_le_bytes());
        payload.extend_from_slice(&reserved.to_le_bytes());
    }
    payload.extend_from_slice(data);
    raw_rdma(1, 0x24, flags, 0, &payload)
}

#[test]
fn write_v_rejections() {
    const COLLAPSE: u16 = Flags::COLLAPSE.bits();
    let ok = |bytes: Vec<u8>| assert!(Message::parse(&bytes).is_ok(), "{}", hex(&bytes));
    let err = |bytes: Vec<u8>| parse_rdma_err(&bytes);

    ok(write_v(0, 5, &[(0, 2, 0), (9, 3, 0)], b"ab"));
    ok(write_v(COLLAPSE, 3, &[(0, 3, 0), (9, 3, 0)], b"abc"));
    ok(write_v(
        COLLAPSE | Flags::INTERRUPT.bits(),
        3,
        &[(0, 3, 0)],
        b"",
    ));

    assert_eq!(err(write_v(0, 0, &[], b"")), WireError::InvalidField);
    assert_eq!(
        err(write_v(0, 17, &[(0, 1, 0); 17], b"")),
        WireError::TooMany
    );
    assert_eq!(
        err(write_v(0, 5, &[(0, 2, 0), (9, 3, 1)], b"")),
        WireError::ReservedNotZero
    );
    assert_eq!(
        err(write_v(0, 2, &[(0, 2, 0), (9, 0, 0)], b"")),
        WireError::InvalidField
    );
    // Sum mismatch, and sum overflow.
    assert_eq!(
        err(write_v(0, 4, &[(0, 2, 0), (9, 3, 0)], b"")),
        WireError::BadLength
    );
    assert_eq!(
        err(write_v(0, 0, &[(0, u32::MAX, 0), (9, 1, 0)], b"")),
        WireError::BadLength
    );
    assert_eq!(
        err(write_v(0, u32::MAX, &[(0, u32::MAX, 0), (9, 1, 0)], b"")),
        WireError::BadLength
    );
    // COLLAPSE: segment lengths differ; total is the sum instead of the common length.
    assert_eq!(
        err(write_v(COLLAPSE, 3, &[(0, 3, 0), (9, 2, 0)], b"")),
        WireError::BadLength
    );
    assert_eq!(
        err(write_v(COLLAPSE, 6, &[(0, 3, 0), (9, 3, 0)], b"")),
        WireError::BadLength
    );
    // More data than the write.
    assert_eq!(
        err(write_v(0, 5, &[(0, 2, 0), (9, 3, 0)], b"abcdef")),
        WireError::BadLength
    );
    assert_eq!(
        err(write_v(COLLAPSE, 3, &[(0, 3, 0), (9, 3, 0)], b"abcd")),
        WireError::BadLength
    );
    // Segment array cut short by the length field.
    let mut short = write_v(0, 5, &[(0, 2, 0), (9, 3, 0)], b"");
    short.truncate(short.len() - 1);
    let length = u32::try_from(short.len() - HEADER_LEN).expect("len");
    patch(&mut short, 12, &length.to_le_bytes());
    assert_eq!(parse_rdma_err(&short), WireError::BadLength);
}

// ---------------------------------------------------------------- pipe rejections

#[test]
fn pipe_header_rejections() {
    let good = pipe_bytes("ResumeKeyRequest");
    assert_eq!(
        PipeHeader::parse(&good),
        Ok(PipeHeader {
            opcode: 1,
            length: 0
        })
    );

    let mut bytes = good.clone();
    bytes[0] = b'r';
    assert_eq!(parse_pipe_err(&bytes), WireError::BadMagic);
    let mut bytes = good.clone();
    bytes[4] = 2;
    assert_eq!(parse_pipe_err(&bytes), WireError::UnsupportedVersion(2));
    for opcode in [0u8, 9, 0x40, 0xff] {
        assert_eq!(
            parse_pipe_err(&raw_pipe(opcode, &[])),
            WireError::UnknownOpcode(opcode)
        );
    }
    let mut bytes = good.clone();
    bytes[7] = 1;
    assert_eq!(parse_pipe_err(&bytes), WireError::ReservedNotZero);
    // A declared length over the bound is refused from the header alone, before
    // a stream reader would wait for (and buffer) that many bytes.
    let mut bytes = good.clone();
    patch(
        &mut bytes,
        8,
        &u32::try_from(MAX_PIPE_PAYLOAD + 1)
            .expect("fits")
            .to_le_bytes(),
    );
    assert_eq!(PipeHeader::parse(&bytes), Err(WireError::TooMany));
    patch(&mut bytes, 8, &u32::MAX.to_le_bytes());
    assert_eq!(parse_pipe_err(&bytes), WireError::TooMany);
    assert_eq!(
        PipeHeader::parse(&good[..11]),
        Err(WireError::Truncated {
            required: 12,
            available: 11
        })
    );
}

#[test]
fn pipe_fixed_lengths_enforced() {
    // A complete frame whose payload is shorter or longer than its fixed
    // part is BadLength: on the pipe, Truncated only ever means "read more".
    assert_eq!(parse_pipe_err(&raw_pipe(1, &[0])), WireError::BadLength);
    assert_eq!(parse_pipe_err(&raw_pipe(2, &[0; 17])), WireError::BadLength);
    assert_eq!(parse_pipe_err(&raw_pipe(2, &[0; 15])), WireError::BadLength);
    assert_eq!(parse_pipe_err(&raw_pipe(4, &[0; 33])), WireError::BadLength);
    assert_eq!(parse_pipe_err(&raw_pipe(5, &[0; 39])), WireError::BadLength);
    assert_eq!(parse_pipe_err(&raw_pipe(6, &[0; 43])), WireError::BadLength);
    assert_eq!(
        parse_pipe_err(&raw_pipe(0x30, &[0; 7])),
        WireError::BadLength
    );
    assert_eq!(
        parse_pipe_err(&raw_pipe(0x30, &[0; 9])),
        WireError::BadLength
    );
    let mut reserved = [0u8; 8];
    reserved[5] = 1;
    assert_eq!(
        parse_pipe_err(&raw_pipe(0x30, &reserved)),
        WireError::ReservedNotZero
    );
    // An unknown opcode is reported only for a whole frame, whose length a
    // reader can skip.
    let unknown = raw_pipe(0x3f, &[1, 2, 3]);
    assert_eq!(
        PipeHeader::parse(&unknown).map(|h| (h.opcode, h.frame_len())),
        Ok((0x3f, PIPE_HEADER_LEN + 3))
    );
    assert!(matches!(
        PipeMessage::parse(&unknown[..PIPE_HEADER_LEN + 2]),
        Err(WireError::Truncated { .. })
    ));
    assert_eq!(parse_pipe_err(&unknown), WireError::UnknownOpcode(0x3f));
}

fn open_request(flags: u32, path_len: u16, path: &[u8]) -> Vec<u8> {
    let mut payload = flags.to_le_bytes().to_vec();
    payload.extend_from_slice(&path_len.to_le_bytes());
    payload.extend_from_slice(&[0, 0]);
    payload.extend_from_slice(path);
    raw_pipe(3, &payload)
}

#[test]
fn open_request_rejections() {
    let len = |path: &[u8]| u16::try_from(path.len()).expect("short");
    let path = b"a/b";
    assert!(PipeMessage::parse(&open_request(0x1, 3, path)).is_ok());
    assert!(PipeMessage::parse(&open_request(0x2 | 0x4 | 0x8, 3, path)).is_ok());
    // IN_PLACE (0x10) with WRITE; without it, like CREATE and TRUNCATE,
    // it is a bad mode.
    assert!(PipeMessage::parse(&open_request(0x2 | 0x4 | 0x8 | 0x10, 3, path)).is_ok());
    assert_eq!(
        parse_pipe_err(&open_request(0x1 | 0x10, 3, path)),
        WireError::InvalidField
    );

    assert_eq!(
        parse_pipe_err(&open_request(0x20, 3, path)),
        WireError::UnknownOpenFlags(0x20)
    );
    assert_eq!(
        parse_pipe_err(&open_request(0x8000_0001, 3, path)),
        WireError::UnknownOpenFlags(0x8000_0000)
    );
    assert_eq!(
        parse_pipe_err(&open_request(0, 3, path)),
        WireError::InvalidField
    );
    assert_eq!(
        parse_pipe_err(&open_request(0x1 | 0x4, 3, path)),
        WireError::InvalidField
    );
    assert_eq!(
        parse_pipe_err(&open_request(0x1 | 0x8, 3, path)),
        WireError::InvalidField
    );
    assert_eq!(
        parse_pipe_err(&open_request(0x1, 0, b"")),
        WireError::InvalidField
    );
    assert_eq!(
        parse_pipe_err(&open_request(0x1, 3, b"a\0b")),
        WireError::InvalidField
    );
    assert_eq!(
        parse_pipe_err(&open_request(0x1, 2, path)),
        WireError::BadLength
    );
    assert_eq!(
        parse_pipe_err(&open_request(0x1, 4, path)),
        WireError::BadLength
    );
    let long = vec![b'x'; 1025];
    assert_eq!(
        parse_pipe_err(&open_request(0x1, len(&long), &long)),
        WireError::TooMany
    );
    assert!(PipeMessage::parse(&open_request(0x1, 1024, &long[..1024])).is_ok());

    let mut bytes = pipe_bytes("OpenRequest");
    bytes[PIPE_HEADER_LEN + 7] = 1;
    assert_eq!(parse_pipe_err(&bytes), WireError::ReservedNotZero);
}

#[test]
fn open_response_rejections() {
    let mut bytes = pipe_bytes("OpenResponse");
    bytes[PIPE_HEADER_LEN + 4] = 1;
    assert_eq!(parse_pipe_err(&bytes), WireError::ReservedNotZero);
    let mut bytes = pipe_bytes("OpenResponse");
    patch(&mut bytes, PIPE_HEADER_LEN, &1000u32.to_le_bytes());
    assert_eq!(parse_pipe_err(&bytes), WireError::UnknownStatus(1000));
}

fn stat_request(path_len: u16, reserved: u16, path: &[u8]) -> Vec<u8> {
    let mut payload = path_len.to_le_bytes().to_vec();
    payload.extend_from_slice(&reserved.to_le_bytes());
    payload.extend_from_slice(path);
    raw_pipe(7, &payload)
}

#[test]
fn stat_request_rejections() {
    let len = |path: &[u8]| u16::try_from(path.len()).expect("short");
    assert!(PipeMessage::parse(&stat_request(3, 0, b"a/b")).is_ok());
    // The same path rules as an open.
    assert_eq!(
        parse_pipe_err(&stat_request(0, 0, b"")),
        WireError::InvalidField
    );
    assert_eq!(
        parse_pipe_err(&stat_request(3, 0, b"a\0b")),
        WireError::InvalidField
    );
    assert_eq!(
        parse_pipe_err(&stat_request(2, 0, b"a/b")),
        WireError::BadLength
    );
    assert_eq!(
        parse_pipe_err(&stat_request(4, 0, b"a/b")),
        WireError::BadLength
    );
    let long = vec![b'x'; 1025];
    assert_eq!(
        parse_pipe_err(&stat_request(len(&long), 0, &long)),
        WireError::TooMany
    );
    assert!(PipeMessage::parse(&stat_request(1024, 0, &long[..1024])).is_ok());
    assert_eq!(
        parse_pipe_err(&stat_request(3, 1, b"a/b")),
        WireError::ReservedNotZero
    );
    // A complete frame shorter than its fixed part: BadLength, never
    // Truncated (which means "read more").
    assert_eq!(parse_pipe_err(&raw_pipe(7, &[3, 0])), WireError::BadLength);
}

#[test]
fn stat_response_rejections() {
    let mut bytes = pipe_bytes("StatResponse");
    bytes[PIPE_HEADER_LEN + 4] = 1;
    assert_eq!(parse_pipe_err(&bytes), WireError::ReservedNotZero);
    let mut bytes = pipe_bytes("StatResponse");
    patch(&mut bytes, PIPE_HEADER_LEN, &1000u32.to_le_bytes());
    assert_eq!(parse_pipe_err(&bytes), WireError::UnknownStatus(1000));
    assert_eq!(parse_pipe_err(&raw_pipe(8, &[0; 33])), WireError::BadLength);
    assert_eq!(parse_pipe_err(&raw_pipe(8, &[0; 31])), WireError::BadLength);
}

#[test]
fn negotiate_request_rejections() {
    let good = pipe_bytes("NegotiateRequest");
    let at = |offset: usize| PIPE_HEADER_LEN + offset;
    let mutate = |offset: usize, value: &[u8]| {
        let mut bytes = good.clone();
        patch(&mut bytes, at(offset), value);
        parse_pipe_err(&bytes)
    };
    assert_eq!(mutate(16, &2u16.to_le_bytes()), WireError::InvalidField); // min 2 > max 1
    assert_eq!(mutate(24, &511u32.to_le_bytes()), WireError::InvalidField); // max_send_size < MIN_SEND_SIZE
    assert_eq!(mutate(23, &[1]), WireError::ReservedNotZero);
    assert_eq!(mutate(22, &[1]), WireError::BadLength); // count 1, two names follow
    assert_eq!(mutate(22, &[3]), WireError::BadLength);
    // Provider names: a space, garbage after the NUL, all NUL (empty).
    assert_eq!(mutate(40 + 3, b" "), WireError::BadProviderName);
    assert_eq!(mutate(40 + 20, b"x"), WireError::BadProviderName);
    assert_eq!(mutate(40 + 32, &[0; 8]), WireError::BadProviderName);
    // Capability bits are never a parse error: any value is kept.
    let mut all_bits = good.clone();
    patch(&mut all_bits, at(32), &u64::MAX.to_le_bytes());
    assert!(matches!(
        PipeMessage::parse(&all_bits),
        Ok((PipeMessage::NegotiateRequest(r), _)) if r.capabilities.0 == u64::MAX
    ));

    // Nine providers, length consistent: too many.
    let mut payload = good[PIPE_HEADER_LEN..PIPE_HEADER_LEN + 40].to_vec();
    payload[22] = 9;
    for _ in 0..9 {
        payload.extend_from_slice(&good[PIPE_HEADER_LEN + 40..PIPE_HEADER_LEN + 72]);
    }
    assert_eq!(parse_pipe_err(&raw_pipe(5, &payload)), WireError::TooMany);
    payload[22] = 8;
    payload.truncate(payload.len() - 32);
    assert!(PipeMessage::parse(&raw_pipe(5, &payload)).is_ok());
}

#[test]
fn negotiate_response_rejections() {
    let good = pipe_bytes("NegotiateResponse");
    let mutate = |offset: usize, value: &[u8]| {
        let mut bytes = good.clone();
        patch(&mut bytes, PIPE_HEADER_LEN + offset, value);
        parse_pipe_err(&bytes)
    };
    assert_eq!(
        mutate(0, &77u32.to_le_bytes()),
        WireError::UnknownStatus(77)
    );
    assert_eq!(mutate(33, &[1]), WireError::ReservedNotZero);
    assert_eq!(mutate(32, &[9]), WireError::TooMany);
    assert_eq!(mutate(32, &[0]), WireError::BadLength);
    assert_eq!(mutate(34, &13u16.to_le_bytes()), WireError::BadLength);
    assert_eq!(mutate(34, &129u16.to_le_bytes()), WireError::TooMany);
    assert_eq!(mutate(44, b"\x01"), WireError::BadProviderName);

    // The longest endpoint is accepted.
    let mut payload = good[PIPE_HEADER_LEN..PIPE_HEADER_LEN + 44 + 32].to_vec();
    patch(&mut payload, 34, &128u16.to_le_bytes());
    payload.extend_from_slice(&[b'e'; 128]);
    assert!(PipeMessage::parse(&raw_pipe(6, &payload)).is_ok());
}

// ---------------------------------------------------------------- status block

#[test]
fn status_block_states() {
    let good = wire_samples::status()[0].value.to_bytes();
    // Not written yet, or being written (valid comes last): keep polling.
    assert_eq!(StatusBlock::parse(&[0; STATUS_BLOCK_LEN]), Ok(None));
    let mut partial = good;
    partial[20..].fill(0);
    assert_eq!(StatusBlock::parse(&partial), Ok(None));
    // A longer buffer: the block is its first 24 bytes.
    let mut longer = good.to_vec();
    longer.extend_from_slice(&[0xff; 8]);
    assert_eq!(
        StatusBlock::parse(&longer),
        Ok(Some(wire_samples::status()[0].value))
    );

    let mut bytes = good;
    patch(&mut bytes, 20, &(STATUS_VALID ^ 1).to_le_bytes());
    assert_eq!(StatusBlock::parse(&bytes), Err(WireError::InvalidField));
    let mut bytes = good;
    bytes[18] = 1;
    assert_eq!(StatusBlock::parse(&bytes), Err(WireError::ReservedNotZero));
    let mut bytes = good;
    patch(&mut bytes, 4, &1000u32.to_le_bytes());
    assert_eq!(
        StatusBlock::parse(&bytes),
        Err(WireError::UnknownStatus(1000))
    );
}

#[test]
fn errors_display() {
    let cases = [
        (
            WireError::Truncated {
                required: 16,
                available: 3,
            },
            "truncated message: need 16 bytes, have 3",
        ),
        (
            WireError::UnknownOpenFlags(0x10),
            "unknown open flags 0x00000010",
        ),
        (
            WireError::UnknownFlags(0x4),
            "unknown or disallowed flags 0x0004",
        ),
    ];
    for (error, text) in cases {
        assert_eq!(error.to_string(), text);
    }
    assert_eq!(
        InsufficientSize { required: 9 }.to_string(),
        "buffer too small: 9 bytes required"
    );
}

/// Issue #20, divergence 2: a provider name allows exactly the bytes
/// `0x21..=0x7E` (a space is refused), and `docs/PROTOCOL.md` says so in
/// those words, so an implementer reading "printable ASCII" cannot guess
/// wrong.
#[test]
fn provider_name_bytes_are_exactly_the_documented_range() {
    for byte in 0..=u8::MAX {
        let allowed = (0x21..=0x7e).contains(&byte);
        assert_eq!(
            rdio_core::wire::ProviderName::from_bytes(&[b'a', byte, b'b']).is_ok(),
            allowed,
            "byte {byte:#04x}"
        );
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROTOCOL.md");
    let doc = std::fs::read_to_string(path).expect("docs/PROTOCOL.md exists");
    let section = &doc[doc.find("### NegotiateRequest\n").expect("heading")..];
    let section = &section[..section.find("\n### ").unwrap_or(section.len())];
    assert!(
        section.contains("every one in `0x21..=0x7E`") && section.contains("**no space**"),
        "the NegotiateRequest section must state the allowed provider-name bytes"
    );
    assert!(!doc.contains("printable ASCII"), "ambiguous wording left");
}

#[test]
fn checksum_rejections() {
    let request = |algorithm: u8, reserved: u8, path_len: u16, path: &[u8]| {
        let mut payload = vec![algorithm, reserved];
        payload.extend_from_slice(&path_len.to_le_bytes());
        payload.extend_from_slice(path);
        raw_pipe(0x20, &payload)
    };
    // An algorithm the parser does not know still parses: the server
    // answers it NotSupported.
    assert!(matches!(
        PipeMessage::parse(&request(0xEE, 0, 3, b"a/b")),
        Ok((PipeMessage::ChecksumRequest { algorithm, path: b"a/b" }, _)) if algorithm.0 == 0xEE
    ));
    assert_eq!(
        parse_pipe_err(&request(1, 1, 3, b"a/b")),
        WireError::ReservedNotZero
    );
    assert_eq!(
        parse_pipe_err(&request(1, 0, 2, b"a/b")),
        WireError::BadLength
    );
    assert_eq!(
        parse_pipe_err(&request(1, 0, 0, b"")),
        WireError::InvalidField
    );
    assert_eq!(
        parse_pipe_err(&request(1, 0, 3, b"a\0b")),
        WireError::InvalidField
    );
    assert_eq!(
        parse_pipe_err(&raw_pipe(0x20, &[1, 0])),
        WireError::BadLength
    );

    let mut bytes = pipe_bytes("ChecksumResponse");
    bytes[PIPE_HEADER_LEN + 5] = 1;
    assert_eq!(parse_pipe_err(&bytes), WireError::ReservedNotZero);
    let mut bytes = pipe_bytes("ChecksumResponse");
    patch(&mut bytes, PIPE_HEADER_LEN, &1000u32.to_le_bytes());
    assert_eq!(parse_pipe_err(&bytes), WireError::UnknownStatus(1000));
    assert_eq!(
        parse_pipe_err(&raw_pipe(0x21, &[0; 49])),
        WireError::BadLength
    );
    assert_eq!(
        parse_pipe_err(&raw_pipe(0x21, &[0; 47])),
        WireError::BadLength
    );
}
