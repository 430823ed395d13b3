//! Arbitrary bytes into the pipe parser: never a panic, and whatever parses
//! is the canonical encoding of its value (re-emitting gives the same bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rdio_core::wire::{PipeHeader, PipeMessage, WireError};

fuzz_target!(|data: &[u8]| {
    let header = PipeHeader::parse(data);
    match PipeMessage::parse(data) {
        Ok((message, consumed)) => {
            assert_eq!(header.map(|h| h.frame_len()), Ok(consumed));
            let mut out = vec![0u8; message.encoded_len()];
            assert_eq!(message.emit(&mut out), Ok(consumed));
            assert_eq!(out, data[..consumed]);
        }
        // An incomplete frame asks for exactly the rest of the frame. (A
        // complete frame whose payload is short for its opcode is also
        // `Truncated`, with lengths of the frame.)
        Err(WireError::Truncated {
            required,
            available,
        }) => {
            if let Ok(header) = header
                && data.len() < header.frame_len()
            {
                assert_eq!((required, available), (header.frame_len(), data.len()));
            }
        }
        Err(_) => {}
    }
});
