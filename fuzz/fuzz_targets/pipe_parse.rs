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
        // `Truncated` means "read more" and nothing else: the frame is
        // incomplete, and it asks for exactly the rest of it.
        Err(WireError::Truncated {
            required,
            available,
        }) => {
            if let Ok(header) = header {
                assert!(
                    data.len() < header.frame_len(),
                    "a whole frame is never Truncated"
                );
                assert_eq!((required, available), (header.frame_len(), data.len()));
            }
        }
        Err(_) => {}
    }
});
