//! Arbitrary *valid* values of every message (structured with `arbitrary`,
//! see `rdio_proptests::wire_values`): emit, then parse gives the value back,
//! with the length `encoded_len` promised.
#![no_main]

use libfuzzer_sys::arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use rdio_core::wire::{Message, PipeMessage, StatusBlock};
use rdio_proptests::wire_values::{MessageValue, PipeValue, arbitrary_status_block};

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(kind) = u.choose_index(3) else { return };
    match kind {
        0 => {
            let Ok(value) = MessageValue::arbitrary(&mut u) else {
                return;
            };
            let message = value.message();
            let mut bytes = vec![0u8; message.encoded_len()];
            assert_eq!(message.emit(&mut bytes), Ok(bytes.len()));
            assert_eq!(Message::parse(&bytes), Ok(message));
        }
        1 => {
            let Ok(value) = PipeValue::arbitrary(&mut u) else {
                return;
            };
            let message = value.message();
            let mut bytes = vec![0u8; message.encoded_len()];
            assert_eq!(message.emit(&mut bytes), Ok(bytes.len()));
            assert_eq!(PipeMessage::parse(&bytes), Ok((message, bytes.len())));
        }
        _ => {
            let Ok(block) = arbitrary_status_block(&mut u) else {
                return;
            };
            assert_eq!(StatusBlock::parse(&block.to_bytes()), Ok(Some(block)));
        }
    }
});
