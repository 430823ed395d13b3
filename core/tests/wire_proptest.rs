//! Randomized tests of the parsers: no input panics, and whatever a parser
//! accepts is the canonical encoding of what it returns (re-emitting gives
//! back the same bytes), so no two byte strings mean the same message.

mod wire_samples;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use rdio_core::wire::pipe::PIPE_MAGIC;
use rdio_core::wire::status::STATUS_BLOCK_LEN;
use rdio_core::wire::{Message, PipeMessage, StatusBlock};

/// Every RDMA opcode byte, and a few unknown ones.
const RDMA_OPCODES: [u8; 25] = [
    0x01, 0x02, 0x03, 0x10, 0x11, 0x12, 0x13, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28,
    0x29, 0x30, 0x31, 0x40, 0x41, 0x7f, 0x00, 0x14, 0xff,
];

fn check_rdma(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(message) = Message::parse(bytes) {
        let mut out = vec![0u8; message.encoded_len()];
        prop_assert_eq!(message.emit(&mut out), Ok(bytes.len()));
        prop_assert_eq!(&out[..], bytes);
    }
    Ok(())
}

fn check_pipe(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok((message, consumed)) = PipeMessage::parse(bytes) {
        let mut out = vec![0u8; message.encoded_len()];
        prop_assert_eq!(message.emit(&mut out), Ok(consumed));
        prop_assert_eq!(&out[..], &bytes[..consumed]);
    }
    Ok(())
}

fn check_status(bytes: &[u8]) -> Result<(), TestCaseError> {
    // The polling pre-check: a block is written exactly when parse does
    // not say "not yet" (a full block parses to a block or an error).
    if bytes.len() >= STATUS_BLOCK_LEN {
        prop_assert_eq!(
            StatusBlock::is_written(bytes),
            StatusBlock::parse(bytes) != Ok(None)
        );
    } else {
        prop_assert!(!StatusBlock::is_written(bytes));
    }
    match StatusBlock::parse(bytes) {
        Ok(Some(block)) => prop_assert_eq!(&block.to_bytes()[..], &bytes[..STATUS_BLOCK_LEN]),
        Ok(None) => prop_assert_eq!(&bytes[20..STATUS_BLOCK_LEN], &[0u8; 4][..]),
        Err(_) => {}
    }
    Ok(())
}

fn check_all(bytes: &[u8]) -> Result<(), TestCaseError> {
    check_rdma(bytes)?;
    check_pipe(bytes)?;
    check_status(bytes)
}

/// The golden encodings of every sample, each with its name.
fn goldens() -> Vec<(&'static str, Vec<u8>)> {
    let unhex = |text: &str| -> Vec<u8> {
        text.split_whitespace()
            .map(|byte| u8::from_str_radix(byte, 16).expect("hex byte"))
            .collect()
    };
    let mut out = Vec::new();
    for sample in wire_samples::rdma() {
        let bytes = unhex(sample.golden);
        assert_eq!(Message::parse(&bytes), Ok(sample.value), "{}", sample.name);
        out.push((sample.name, bytes));
    }
    for sample in wire_samples::pipe() {
        let bytes = unhex(sample.golden);
        assert_eq!(
            PipeMessage::parse(&bytes),
            Ok((sample.value, bytes.len())),
            "{}",
            sample.name
        );
        out.push((sample.name, bytes));
    }
    for sample in wire_samples::status() {
        let bytes = unhex(sample.golden);
        assert_eq!(
            StatusBlock::parse(&bytes),
            Ok(Some(sample.value)),
            "{}",
            sample.name
        );
        out.push((sample.name, bytes));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn arbitrary_bytes(bytes in vec(any::<u8>(), 0..400)) {
        check_all(&bytes)?;
    }

    /// A well-formed RDMA header in front of arbitrary payload reaches every
    /// payload parser.
    #[test]
    fn arbitrary_rdma_payloads(
        opcode in select(&RDMA_OPCODES[..]),
        flags in 0u16..4,
        payload in vec(any::<u8>(), 0..160),
    ) {
        let mut bytes = vec![1, opcode];
        bytes.extend_from_slice(&flags.to_le_bytes());
        bytes.extend_from_slice(&[3, 0, 0, 0, 1, 0, 0, 0]);
        bytes.extend_from_slice(&u32::try_from(payload.len()).expect("small").to_le_bytes());
        bytes.extend_from_slice(&payload);
        check_rdma(&bytes)?;
    }

    /// A well-formed pipe frame header in front of arbitrary payload, and
    /// arbitrary bytes after it (the stream).
    #[test]
    fn arbitrary_pipe_payloads(
        opcode in 0u8..8,
        payload in vec(any::<u8>(), 0..160),
        next in vec(any::<u8>(), 0..8),
    ) {
        let mut bytes = PIPE_MAGIC.to_vec();
        bytes.extend_from_slice(&[1, opcode, 0, 0]);
        bytes.extend_from_slice(&u32::try_from(payload.len()).expect("small").to_le_bytes());
        bytes.extend_from_slice(&payload);
        bytes.extend_from_slice(&next);
        check_pipe(&bytes)?;
    }

    /// Valid encodings with a few bytes overwritten, then possibly cut or
    /// extended: the mutations closest to real corruption.
    #[test]
    fn mutated_golden_vectors(
        which in any::<Index>(),
        edits in vec((any::<Index>(), any::<u8>()), 1..4),
        new_len in any::<Index>(),
        extra in 0usize..3,
    ) {
        let goldens = goldens();
        let (name, mut bytes) = goldens[which.index(goldens.len())].clone();
        for (at, value) in &edits {
            let at = at.index(bytes.len());
            bytes[at] = *value;
        }
        bytes.truncate(new_len.index(bytes.len() + 1));
        bytes.resize(bytes.len() + extra, 0);
        check_all(&bytes).map_err(|e| TestCaseError::fail(format!("{name}: {e}")))?;
    }
}
