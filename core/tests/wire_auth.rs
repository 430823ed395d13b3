//! The client-authentication pipe messages (opcodes 0x10..=0x13, 0x1F) and
//! their status codes: golden bytes, round trips, and every rejection of
//! their parsers.

use rdio_core::wire::pipe::{PIPE_MAGIC, valid_client_name};
use rdio_core::wire::{AuthAccess, MAX_CLIENT_NAME_LEN, PipeMessage, Status, WireError};

fn raw_pipe(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = PIPE_MAGIC.to_vec();
    out.extend_from_slice(&[1, opcode, 0, 0]);
    out.extend_from_slice(&u32::try_from(payload.len()).expect("small").to_le_bytes());
    out.extend_from_slice(payload);
    out
}

fn encode(message: &PipeMessage<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; message.encoded_len()];
    assert_eq!(message.emit(&mut buf), Ok(buf.len()));
    buf
}

fn samples() -> Vec<(PipeMessage<'static>, Vec<u8>)> {
    let salt: [u8; 16] = core::array::from_fn(|i| 0xa0 + i as u8);
    let nonce: [u8; 32] = core::array::from_fn(|i| i as u8);
    let mut hello = vec![5, 0, 0, 0];
    hello.extend_from_slice(b"alice");
    let mut challenge = salt.to_vec();
    challenge.extend_from_slice(&nonce);
    vec![
        (
            PipeMessage::AuthHello { name: b"alice" },
            raw_pipe(0x10, &hello),
        ),
        (
            PipeMessage::AuthChallenge { salt, nonce },
            raw_pipe(0x11, &challenge),
        ),
        (
            PipeMessage::AuthProof { proof: nonce },
            raw_pipe(0x12, &nonce),
        ),
        (
            PipeMessage::AuthResult {
                status: Status::Success,
                access: AuthAccess::READ_ONLY,
            },
            raw_pipe(0x13, &[0, 0, 0, 0, 1, 0, 0, 0]),
        ),
        (
            PipeMessage::Refused {
                status: Status::Busy,
            },
            raw_pipe(0x1F, &[28, 0, 0, 0, 0, 0, 0, 0]),
        ),
    ]
}

#[test]
fn golden_bytes_and_round_trips() {
    for (message, golden) in samples() {
        assert_eq!(encode(&message), golden, "{message:?}");
        assert_eq!(
            PipeMessage::parse(&golden),
            Ok((message.clone(), golden.len()))
        );
        for cut in 0..golden.len() {
            assert!(
                matches!(
                    PipeMessage::parse(&golden[..cut]),
                    Err(WireError::Truncated { .. })
                ),
                "{message:?} cut at {cut}"
            );
        }
    }
}

#[test]
fn fixed_lengths_are_enforced() {
    for (opcode, len) in [(0x11, 48), (0x12, 32), (0x13, 8), (0x1F, 8)] {
        assert!(PipeMessage::parse(&raw_pipe(opcode, &vec![0; len])).is_ok());
        // A complete frame shorter than its fixed part: BadLength
        // (Truncated only ever means "read more").
        assert!(matches!(
            PipeMessage::parse(&raw_pipe(opcode, &vec![0; len - 1])),
            Err(WireError::BadLength)
        ));
        assert!(
            matches!(
                PipeMessage::parse(&raw_pipe(opcode, &vec![0; len + 1])),
                Err(WireError::BadLength | WireError::TrailingBytes(1))
            ),
            "opcode {opcode:#x}"
        );
    }
}

#[test]
fn hello_names_are_validated() {
    let hello = |len: u8, name: &[u8]| {
        let mut payload = vec![len, 0, 0, 0];
        payload.extend_from_slice(name);
        raw_pipe(0x10, &payload)
    };
    assert!(PipeMessage::parse(&hello(3, b"bob")).is_ok());
    assert_eq!(
        PipeMessage::parse(&hello(4, b"bob")),
        Err(WireError::BadLength)
    );
    assert_eq!(
        PipeMessage::parse(&hello(2, b"bob")),
        Err(WireError::BadLength)
    );
    for bad in [&b""[..], b"a b", b"a/b", b"a\0b", b"\xff", b"a\nb"] {
        let len = u8::try_from(bad.len()).expect("short");
        assert_eq!(
            PipeMessage::parse(&hello(len, bad)),
            Err(WireError::InvalidField),
            "{bad:?}"
        );
    }
    let long = vec![b'a'; MAX_CLIENT_NAME_LEN + 1];
    assert_eq!(
        PipeMessage::parse(&hello(65, &long)),
        Err(WireError::InvalidField)
    );
    assert!(valid_client_name(&long[..MAX_CLIENT_NAME_LEN]));
    assert!(valid_client_name(b"root@host-1.lab_2"));
    let mut reserved = hello(3, b"bob");
    reserved[13] = 1;
    assert!(PipeMessage::parse(&reserved).is_err());
}

#[test]
fn unknown_access_bits_statuses_and_reserved_fields_are_rejected() {
    assert_eq!(
        PipeMessage::parse(&raw_pipe(0x13, &[0, 0, 0, 0, 2, 0, 0, 0])),
        Err(WireError::InvalidField)
    );
    assert_eq!(
        PipeMessage::parse(&raw_pipe(0x13, &[99, 0, 0, 0, 0, 0, 0, 0])),
        Err(WireError::UnknownStatus(99))
    );
    assert!(PipeMessage::parse(&raw_pipe(0x1F, &[28, 0, 0, 0, 1, 0, 0, 0])).is_err());
    for opcode in [0x14, 0x1E] {
        assert_eq!(
            PipeMessage::parse(&raw_pipe(opcode, &[])),
            Err(WireError::UnknownOpcode(opcode))
        );
    }
}
