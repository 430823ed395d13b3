//! Arbitrary bytes into the RDMA-channel parser: never a panic, and whatever
//! parses is the canonical encoding of its value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rdio_core::wire::{Header, Message};

fuzz_target!(|data: &[u8]| {
    let Ok(message) = Message::parse(data) else {
        return;
    };
    let header = Header::parse(data).expect("a parsed message has a valid header");
    assert_eq!(header.opcode, message.opcode());
    assert!(message.opcode().sent_by_client() || message.opcode().sent_by_server());
    let mut out = vec![0u8; message.encoded_len()];
    assert_eq!(message.emit(&mut out), Ok(data.len()));
    assert_eq!(out, data);
    let mut prefix = vec![0u8; message.prefix_len()];
    assert_eq!(message.emit_prefix(&mut prefix), Ok(prefix.len()));
    prefix.extend_from_slice(message.data());
    assert_eq!(prefix, data);
});
