//! Structured round trips of every wire message: for arbitrary *valid*
//! values ([`rdio_proptests::wire_values`]), `parse(emit(v)) == v`, the
//! encoded length is what `encoded_len` promised, a short buffer is refused
//! untouched, and every proper prefix of the encoding is refused. (Arbitrary
//! bytes into the parsers are `core/tests/wire_proptest.rs`.)

use proptest::prelude::*;
use rdio_core::wire::pipe::PIPE_HEADER_LEN;
use rdio_core::wire::status::STATUS_BLOCK_LEN;
use rdio_core::wire::{
    Header, InsufficientSize, Message, PipeHeader, PipeMessage, StatusBlock, WireError,
};
use rdio_proptests::wire_values::{message_value, pipe_value, status_block};

/// `emit` into a buffer one byte short leaves it untouched.
fn short_buffer_refused(len: usize, emit: impl Fn(&mut [u8]) -> Result<usize, InsufficientSize>) {
    let mut short = vec![0xA5; len - 1];
    assert_eq!(emit(&mut short), Err(InsufficientSize { required: len }));
    assert!(short.iter().all(|&b| b == 0xA5), "short buffer was written");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn messages_round_trip(value in message_value()) {
        let message = value.message();
        let len = message.encoded_len();
        let mut bytes = vec![0u8; len + 7];
        prop_assert_eq!(message.emit(&mut bytes), Ok(len));
        bytes.truncate(len);
        prop_assert_eq!(Message::parse(&bytes), Ok(message));
        short_buffer_refused(len, |buf| message.emit(buf));

        let header = Header::parse(&bytes).expect("header of a valid message");
        prop_assert_eq!(header.opcode, message.opcode());
        prop_assert_eq!(header.length as usize, len - 16);

        // The prefix and the data make up the whole message.
        let prefix_len = message.prefix_len();
        let mut prefix = vec![0u8; prefix_len];
        prop_assert_eq!(message.emit_prefix(&mut prefix), Ok(prefix_len));
        prefix.extend_from_slice(message.data());
        prop_assert_eq!(&prefix, &bytes);

        // One receive buffer holds exactly one message.
        for cut in [0, 1, 15, 16, len / 2, len - 1] {
            if cut < len {
                prop_assert!(Message::parse(&bytes[..cut]).is_err(), "prefix of {} parsed", cut);
            }
        }
        bytes.push(0);
        prop_assert_eq!(Message::parse(&bytes), Err(WireError::TrailingBytes(1)));
    }

    #[test]
    fn pipe_messages_round_trip(value in pipe_value(), next in proptest::collection::vec(any::<u8>(), 0..16)) {
        let message = value.message();
        let len = message.encoded_len();
        let mut bytes = vec![0u8; len];
        prop_assert_eq!(message.emit(&mut bytes), Ok(len));
        short_buffer_refused(len, |buf| message.emit(buf));

        let header = PipeHeader::parse(&bytes).expect("frame header");
        prop_assert_eq!(header.frame_len(), len);
        // The pipe is a stream: what follows the frame is the next frame's.
        let frame_and_more = [bytes.clone(), next].concat();
        prop_assert_eq!(PipeMessage::parse(&frame_and_more), Ok((message.clone(), len)));
        // A partial frame means "read more".
        for cut in [PIPE_HEADER_LEN, (PIPE_HEADER_LEN + len) / 2, len - 1] {
            if cut < len {
                let truncated = matches!(
                    PipeMessage::parse(&bytes[..cut]),
                    Err(WireError::Truncated { .. })
                );
                prop_assert!(truncated, "prefix of {} did not ask for more", cut);
            }
        }
    }

    #[test]
    fn status_blocks_round_trip(block in status_block()) {
        let mut bytes = [0u8; STATUS_BLOCK_LEN];
        prop_assert_eq!(block.emit(&mut bytes), Ok(STATUS_BLOCK_LEN));
        prop_assert_eq!(bytes, block.to_bytes());
        prop_assert_eq!(StatusBlock::parse(&bytes), Ok(Some(block)));
        short_buffer_refused(STATUS_BLOCK_LEN, |buf| block.emit(buf));
        // Until its last word lands, a block reads as not yet written.
        let mut landing = bytes;
        landing[20..].fill(0);
        prop_assert_eq!(StatusBlock::parse(&landing), Ok(None));
    }
}
