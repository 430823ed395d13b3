//! Arbitrary bytes into the status-block parser: never a panic; a parsed
//! block re-encodes to the same 24 bytes, and "not written yet" means the
//! valid word is zero.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rdio_core::wire::StatusBlock;
use rdio_core::wire::status::STATUS_BLOCK_LEN;

fuzz_target!(|data: &[u8]| match StatusBlock::parse(data) {
    Ok(Some(block)) => assert_eq!(block.to_bytes()[..], data[..STATUS_BLOCK_LEN]),
    Ok(None) => assert_eq!(data[20..STATUS_BLOCK_LEN], [0u8; 4]),
    Err(_) => {}
});
