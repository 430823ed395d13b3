//! The client-authentication exchange's parsers (pipe opcodes 0x10..=0x13
//! and 0x1F): any payload under each of those opcodes, framed correctly so
//! the payload parser itself is reached. Never a panic; whatever parses is
//! the canonical encoding of its value and keeps its invariants (a hello's
//! name is a valid client name, a result's access bits are known).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rdio_core::wire::pipe::{PIPE_HEADER_LEN, PIPE_MAGIC, valid_client_name};
use rdio_core::wire::{AuthAccess, PipeMessage};

const OPCODES: [u8; 5] = [0x10, 0x11, 0x12, 0x13, 0x1F];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    let opcode = OPCODES[usize::from(selector) % OPCODES.len()];
    let mut frame = Vec::with_capacity(PIPE_HEADER_LEN + payload.len());
    frame.extend_from_slice(&PIPE_MAGIC);
    frame.extend_from_slice(&[1, opcode, 0, 0]);
    frame.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    frame.extend_from_slice(payload);
    if let Ok((message, consumed)) = PipeMessage::parse(&frame) {
        assert_eq!(consumed, frame.len());
        match &message {
            PipeMessage::AuthHello { name } => assert!(valid_client_name(name)),
            PipeMessage::AuthResult { access, .. } => {
                assert!(AuthAccess::all().contains(*access))
            }
            PipeMessage::AuthChallenge { .. }
            | PipeMessage::AuthProof { .. }
            | PipeMessage::Refused { .. } => {}
            other => panic!("opcode {opcode:#x} parsed as {other:?}"),
        }
        let mut out = vec![0u8; message.encoded_len()];
        assert_eq!(message.emit(&mut out), Ok(consumed));
        assert_eq!(out, frame);
    }
});
