//! Read batches (docs/PROTOCOL.md, "Read batches"): reads queued together
//! go as one `ReadBatch`, a credit each, and come back with one immediate
//! after all their status blocks; every rule of the extension that a peer
//! can break ends the connection with its typed reason, and a batch the
//! server's driver leaves half taken is never lost.

use rdio_core::Violation;
use rdio_core::client::{ClientConfig, ClientEvent, CompletionMode, RequestId};
use rdio_core::server::{Received, ServerConfig, Transmit};
use rdio_core::wire::{
    BatchRead, Body, BufferDescriptor, Capabilities, Flags, Message, Opcode, OpenFlags,
    ReadBatchRequest, Status,
};
use rdio_proptests::pair::{Pair, providers};

/// A pair whose client offers read batches (rdio-core's server grants
/// them by default), authenticated at 4 credits, with a 4 KiB file
/// registered.
fn batching_pair() -> (Pair, u32, Vec<u8>) {
    batching_pair_with(ClientConfig::default().max_batched_read)
}

/// [`batching_pair`] with reads of more than `max_batched_read` bytes kept
/// out of batches.
fn batching_pair_with(max_batched_read: u32) -> (Pair, u32, Vec<u8>) {
    let client = ClientConfig {
        providers: providers(&["loopback"]),
        capabilities: Capabilities::READ_BATCH,
        max_batched_read,
        ..ClientConfig::default()
    };
    let server = ServerConfig {
        initial_credits: 4,
        ..ServerConfig::default()
    };
    let mut pair = Pair::new(server, client).authenticated();
    assert!(
        pair.client
            .negotiated()
            .capabilities
            .contains(Capabilities::READ_BATCH)
    );
    let contents: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    let key = pair.open_file(contents.clone(), OpenFlags::READ);
    let handle = pair.register(key);
    (pair, handle, contents)
}

fn forge_batch(reads: &[BatchRead], credits: u16, id: u32) -> Vec<u8> {
    let msg = Message {
        flags: Flags::INTERRUPT,
        credits,
        demand: 0,
        request_id: id,
        body: Body::ReadBatch(ReadBatchRequest { reads }),
    };
    let mut buf = vec![0u8; msg.encoded_len()];
    msg.emit(&mut buf).unwrap();
    buf
}

fn batch_read(id: u32, handle: u32) -> BatchRead {
    BatchRead::new(
        id,
        handle,
        0,
        BufferDescriptor::new(0x1000 * u64::from(id), 1, 16),
        BufferDescriptor::new(0x1000 * u64::from(id) + 16, 2, 24),
    )
}

#[test]
fn reads_queued_together_go_as_one_batch_and_complete_with_one_immediate() {
    for mode in [CompletionMode::Interrupt, CompletionMode::Polling] {
        let (mut pair, handle, contents) = batching_pair();
        let (sends, immediates, blocks) = (pair.sends_c2s, pair.immediates, pair.status_writes);
        let reads: Vec<(RequestId, BufferDescriptor, u64)> = (0..3u64)
            .map(|i| {
                let (request, dest) = pair.read(handle, i * 1000, 1000, mode);
                (request, dest, i * 1000)
            })
            .collect();
        pair.drive();
        pair.assert_clean();
        assert_eq!(
            pair.sends_c2s - sends,
            1,
            "{mode:?}: one message for three reads"
        );
        assert_eq!(pair.client.stats().read_batches, 1);
        assert_eq!(pair.server.stats().read_batches, 1);
        assert_eq!(pair.status_writes - blocks, 3, "a status block per read");
        let expected_immediates = usize::from(mode == CompletionMode::Interrupt);
        assert_eq!(
            pair.immediates - immediates,
            expected_immediates,
            "{mode:?}: one immediate for the batch"
        );
        for (request, dest, offset) in reads {
            assert_eq!(pair.completion(request), (Status::Success, 1000));
            let start = offset as usize;
            assert_eq!(pair.memory.read(dest), &contents[start..start + 1000]);
        }
        pair.assert_quiescent_ledgers();
    }
}

#[test]
fn a_lone_read_and_a_batch_of_one_kind_go_apart() {
    let (mut pair, handle, _) = batching_pair();
    let sends = pair.sends_c2s;
    // One read alone: a Read.
    let (alone, _) = pair.read(handle, 0, 100, CompletionMode::Interrupt);
    pair.drive();
    assert_eq!(pair.completion(alone), (Status::Success, 100));
    assert_eq!(pair.client.stats().read_batches, 0);
    // Reads in two completion modes: two batches are not one.
    let (a, _) = pair.read(handle, 0, 100, CompletionMode::Interrupt);
    let (b, _) = pair.read(handle, 100, 100, CompletionMode::Polling);
    pair.drive();
    assert_eq!(pair.completion(a), (Status::Success, 100));
    assert_eq!(pair.completion(b), (Status::Success, 100));
    assert_eq!(pair.sends_c2s - sends, 3);
    assert_eq!(pair.client.stats().read_batches, 0);
    pair.assert_quiescent_ledgers();
}

#[test]
fn a_read_larger_than_max_batched_read_goes_alone_while_smaller_ones_batch() {
    assert_eq!(
        ClientConfig::default().max_batched_read,
        rdio_core::client::DEFAULT_MAX_BATCHED_READ
    );
    let mode = CompletionMode::Interrupt;
    let (mut pair, handle, contents) = batching_pair_with(100);
    // Large first: it goes as a `Read`, the two behind it (one of exactly
    // the limit) as a batch.
    // Then large last: the batch of the two before it ends before it.
    let orders: [[usize; 3]; 2] = [[101, 100, 10], [10, 100, 101]];
    for (round, sizes) in orders.into_iter().enumerate() {
        let (sends, immediates) = (pair.sends_c2s, pair.immediates);
        let reads: Vec<(RequestId, BufferDescriptor, usize, usize)> = sizes
            .iter()
            .enumerate()
            .map(|(i, &len)| {
                let offset = i * 1000;
                let (request, dest) = pair.read(handle, offset as u64, len, mode);
                (request, dest, offset, len)
            })
            .collect();
        pair.drive();
        pair.assert_clean();
        assert_eq!(
            pair.sends_c2s - sends,
            2,
            "{sizes:?}: the large read's Read and the small ones' batch"
        );
        assert_eq!(pair.client.stats().read_batches, round as u64 + 1);
        assert_eq!(pair.server.stats().read_batches, round as u64 + 1);
        assert_eq!(
            pair.immediates - immediates,
            2,
            "{sizes:?}: one immediate for the Read, one for the batch"
        );
        for (request, dest, offset, len) in reads {
            assert_eq!(pair.completion(request), (Status::Success, len as u64));
            assert_eq!(pair.memory.read(dest), &contents[offset..offset + len]);
        }
    }
    pair.assert_quiescent_ledgers();
}

#[test]
fn a_batch_takes_no_more_reads_than_credits_allow() {
    let (mut pair, handle, _) = batching_pair();
    let level = usize::from(pair.client.ledger().level());
    let count = level + 5;
    let requests: Vec<RequestId> = (0..count)
        .map(|i| pair.read(handle, i as u64, 10, CompletionMode::Interrupt).0)
        .collect();
    pair.client_transmit();
    assert!(
        usize::from(pair.client.ledger().in_use()) <= level,
        "credits in use beyond the level"
    );
    pair.drive();
    for request in requests {
        assert_eq!(pair.completion(request), (Status::Success, 10));
    }
    pair.assert_quiescent_ledgers();
}

/// Feed a forged message to the server (with `one_pass`, as rdio's driver
/// does: `take_message`, whose batch path checks a batch whole before it
/// hands it over); expect it to end the connection.
fn server_rejects(pair: &mut Pair, bytes: &[u8], expected: Violation, one_pass: bool) {
    if one_pass {
        assert_eq!(
            pair.server.take_message(pair.now, bytes).err(),
            Some(expected)
        );
    } else {
        assert_eq!(pair.server.handle_message(pair.now, bytes), Err(expected));
    }
    assert!(pair.server.is_closed());
}

#[test]
fn batches_breaking_the_rules_end_the_connection() {
    for one_pass in [false, true] {
        batches_breaking_the_rules(one_pass);
    }
}

/// The same rule-breaking batches through either entry point: the same
/// violation.
fn batches_breaking_the_rules(one_pass: bool) {
    // Not negotiated: the client did not offer the capability.
    let mut pair = Pair::connected();
    let level = pair.client.ledger().level();
    server_rejects(
        &mut pair,
        &forge_batch(&[batch_read(5, 1), batch_read(6, 1)], level, 5),
        Violation::UnexpectedMessage(Opcode::ReadBatch),
        one_pass,
    );

    // More reads than free credits: nothing consumed, the connection ends.
    let (mut pair, handle, _) = batching_pair();
    let level = pair.client.ledger().level();
    let reads: Vec<BatchRead> = (1..=u32::from(level) + 1)
        .map(|id| batch_read(id, handle))
        .collect();
    server_rejects(
        &mut pair,
        &forge_batch(&reads, level, 1),
        Violation::CreditOverrun,
        one_pass,
    );

    // The same id twice in one batch.
    let (mut pair, handle, _) = batching_pair();
    let level = pair.client.ledger().level();
    server_rejects(
        &mut pair,
        &forge_batch(&[batch_read(5, handle), batch_read(5, handle)], level, 5),
        Violation::DuplicateRequest(5),
        one_pass,
    );

    // A batch id naming a batch still unanswered (its reads held by the
    // driver).
    let (mut pair, handle, _) = batching_pair();
    let level = pair.client.ledger().level();
    let first = forge_batch(&[batch_read(5, handle), batch_read(6, handle)], level, 5);
    if one_pass {
        assert_eq!(
            pair.server.take_message(pair.now, &first),
            Ok(Received::Batch)
        );
    } else {
        pair.server.handle_message(pair.now, &first).unwrap();
    }
    server_rejects(
        &mut pair,
        &forge_batch(&[batch_read(7, handle), batch_read(8, handle)], level, 5),
        Violation::DuplicateRequest(5),
        one_pass,
    );

    // A read of no bytes: the message is malformed, whichever read it is.
    let (mut pair, handle, _) = batching_pair();
    let level = pair.client.ledger().level();
    let empty = BatchRead::new(
        6,
        handle,
        0,
        BufferDescriptor::new(0x6000, 1, 0),
        BufferDescriptor::new(0x6010, 2, 24),
    );
    server_rejects(
        &mut pair,
        &forge_batch(&[batch_read(5, handle), empty], level, 5),
        Violation::Malformed(rdio_core::wire::WireError::InvalidField),
        one_pass,
    );

    // A wrong credit field, as for any request.
    let (mut pair, handle, _) = batching_pair();
    let level = pair.client.ledger().level();
    server_rejects(
        &mut pair,
        &forge_batch(
            &[batch_read(5, handle), batch_read(6, handle)],
            level + 1,
            5,
        ),
        Violation::CreditMismatch {
            expected: level,
            found: level + 1,
        },
        one_pass,
    );
}

#[test]
fn an_immediate_before_a_batch_block_ends_the_client_connection() {
    let (mut pair, handle, _) = batching_pair();
    let requests: Vec<RequestId> = (0..3u64)
        .map(|i| pair.read(handle, i, 10, CompletionMode::Interrupt).0)
        .collect();
    pair.client_transmit();
    let members = pair
        .client
        .batch_members(requests[0].0)
        .expect("the first read's id names the batch");
    assert_eq!(members.as_slice(), requests.as_slice());
    assert_eq!(pair.client.batch_members(requests[1].0), None);
    // The server's immediate arrived, the second block was never written.
    let result = pair
        .client
        .take_batch_block(pair.now, requests[1], &[0u8; 24]);
    assert_eq!(result, Err(Violation::MissingStatusBlock(requests[1].0)));
    assert!(pair.client.is_closed());
    each_ends_once_with_the_termination(&mut pair, &requests);
}

/// After the client ended the connection: every one of `requests`
/// completes exactly once, with the termination's status (none as a
/// success).
fn each_ends_once_with_the_termination(pair: &mut Pair, requests: &[RequestId]) {
    let mut completed = Vec::new();
    while let Some(event) = pair.client.poll_event() {
        if let ClientEvent::Completed {
            request, status, ..
        } = event
        {
            assert_eq!(status, Status::ProtocolError, "{request:?}");
            completed.push(request);
        }
    }
    completed.sort();
    assert_eq!(completed, requests);
}

#[test]
fn an_immediate_naming_a_read_of_a_batch_ends_the_client_connection_at_once() {
    for one_pass in [false, true] {
        let (mut pair, handle, _) = batching_pair();
        let requests: Vec<RequestId> = (0..3u64)
            .map(|i| pair.read(handle, i, 10, CompletionMode::Interrupt).0)
            .collect();
        pair.client_transmit();
        // A hostile server writes the second read's block and names it by
        // an immediate of its own, as if it were a single read.
        let block = rdio_core::wire::StatusBlock {
            request_id: requests[1].0,
            status: Status::Success,
            bytes: 10,
            credits: 1,
        };
        let mut bytes = [0u8; 24];
        block.emit(&mut bytes).unwrap();
        let violation = Violation::BatchMemberImmediate(requests[1].0);
        if one_pass {
            assert_eq!(
                pair.client.take_status_block(pair.now, &bytes),
                Err(violation)
            );
        } else {
            assert_eq!(
                pair.client.handle_status_block(pair.now, &bytes),
                Err(violation)
            );
        }
        assert!(pair.client.is_closed());
        each_ends_once_with_the_termination(&mut pair, &requests);
    }
}

/// The status blocks a server transmit queue holds, with their immediates.
fn drain_blocks(pair: &mut Pair) -> Vec<(u32, Option<u32>)> {
    let mut buf = vec![0u8; 256];
    let mut out = Vec::new();
    while let Some(t) = pair.server.poll_transmit(&mut buf).unwrap() {
        if let Transmit::StatusBlock { len, immediate, .. } = t {
            let block = rdio_core::wire::StatusBlock::parse(&buf[..len])
                .unwrap()
                .unwrap();
            out.push((block.request_id, immediate));
        }
    }
    out
}

#[test]
fn a_batch_left_half_taken_goes_on_through_the_event_queue() {
    let (mut pair, handle, _) = batching_pair();
    let level = pair.client.ledger().level();
    let reads = [
        batch_read(11, handle),
        batch_read(12, handle),
        batch_read(13, handle),
    ];
    let message = forge_batch(&reads, level, 11);
    assert_eq!(
        pair.server.take_message(pair.now, &message),
        Ok(Received::Batch)
    );
    // The driver takes one read and completes it; the rest stay for it.
    let Some(Received::Read { op, .. }) = pair.server.next_batch_read() else {
        panic!("the batch's first read");
    };
    assert_eq!(op.0, 11);
    pair.server.complete_io(op, Ok(16)).unwrap();
    let Some(Received::Read { op, .. }) = pair.server.next_batch_read() else {
        panic!("the batch's second read, after a completion");
    };
    assert_eq!(op.0, 12);
    // Any other call puts the untaken third read back in the event queue.
    let mut seen = Vec::new();
    while let Some(event) = pair.server.poll_event() {
        if let rdio_core::server::ServerEvent::Read { op, .. } = event {
            seen.push(op);
        }
    }
    assert_eq!(pair.server.next_batch_read(), None);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, 13);
    pair.server.complete_io(seen[0], Ok(16)).unwrap();
    pair.server.complete_io(op, Ok(16)).unwrap();
    // Three blocks; only the last to go carries the batch's immediate.
    let blocks = drain_blocks(&mut pair);
    assert_eq!(blocks, vec![(11, None), (13, None), (12, Some(11))]);
    assert_eq!(pair.server.ledger().in_use(), 0);
}

#[test]
fn a_batch_read_taken_and_left_outstanding_completes_later_from_the_table() {
    let (mut pair, handle, _) = batching_pair();
    let level = pair.client.ledger().level();
    let reads = [
        batch_read(31, handle),
        batch_read(32, handle),
        batch_read(33, handle),
    ];
    assert_eq!(
        pair.server
            .take_message(pair.now, &forge_batch(&reads, level, 31)),
        Ok(Received::Batch)
    );
    assert_eq!(
        pair.server.outstanding(),
        3,
        "the batch's reads, none taken"
    );
    let Some(Received::Read { op: first, .. }) = pair.server.next_batch_read() else {
        panic!("the batch's first read");
    };
    // Not completed: taking the next puts it with the rest.
    let Some(Received::Read { op: second, .. }) = pair.server.next_batch_read() else {
        panic!("the batch's second read");
    };
    assert_eq!((first.0, second.0), (31, 32));
    assert_eq!(pair.server.outstanding(), 3);
    pair.server.complete_io(second, Ok(16)).unwrap();
    let Some(Received::Read { op: third, .. }) = pair.server.next_batch_read() else {
        panic!("the batch's third read");
    };
    assert_eq!(pair.server.next_batch_read(), None);
    pair.server.complete_io(third, Ok(16)).unwrap();
    assert_eq!(pair.server.outstanding(), 1, "the first, in the table");
    pair.server.complete_io(first, Ok(16)).unwrap();
    assert!(
        pair.server.complete_io(first, Ok(16)).is_err(),
        "completed once only"
    );
    assert_eq!(pair.server.outstanding(), 0);
    let blocks = drain_blocks(&mut pair);
    assert_eq!(blocks, vec![(32, None), (33, None), (31, Some(31))]);
    assert_eq!(pair.server.ledger().in_use(), 0);
}

#[test]
fn a_batch_read_of_an_unknown_handle_is_answered_and_counts_toward_the_batch() {
    let (mut pair, handle, _) = batching_pair();
    let level = pair.client.ledger().level();
    let reads = [batch_read(21, 999), batch_read(22, handle)];
    assert_eq!(
        pair.server
            .take_message(pair.now, &forge_batch(&reads, level, 21)),
        Ok(Received::Batch)
    );
    let Some(Received::Read { op, .. }) = pair.server.next_batch_read() else {
        panic!("the known handle's read");
    };
    assert_eq!(op.0, 22);
    assert_eq!(pair.server.next_batch_read(), None);
    pair.server.complete_io(op, Ok(16)).unwrap();
    let blocks = drain_blocks(&mut pair);
    assert_eq!(blocks, vec![(21, None), (22, Some(21))]);
}

/// A batch whose read 41 the driver took and left outstanding (so it went
/// to the request table), its other read completed: nothing waits for the
/// driver, so the next batch is handed over at once.
fn a_batch_with_one_read_left(pair: &mut Pair, handle: u32, level: u16) -> rdio_core::server::OpId {
    let first = forge_batch(&[batch_read(41, handle), batch_read(42, handle)], level, 41);
    assert_eq!(
        pair.server.take_message(pair.now, &first),
        Ok(Received::Batch)
    );
    let Some(Received::Read { op: kept, .. }) = pair.server.next_batch_read() else {
        panic!("the batch's first read");
    };
    let Some(Received::Read { op, .. }) = pair.server.next_batch_read() else {
        panic!("the batch's second read");
    };
    pair.server.complete_io(op, Ok(16)).unwrap();
    assert_eq!(pair.server.next_batch_read(), None);
    assert_eq!(kept.0, 41);
    kept
}

#[test]
fn a_batch_still_answering_when_the_next_is_handed_over_keeps_its_immediate_and_its_id() {
    // Its last block, after the whole next batch, still carries its
    // immediate; the next batch's last carries the next batch's.
    let (mut pair, handle, _) = batching_pair();
    let level = pair.client.ledger().level();
    let kept = a_batch_with_one_read_left(&mut pair, handle, level);
    let second = forge_batch(&[batch_read(43, handle), batch_read(44, handle)], level, 43);
    assert_eq!(
        pair.server.take_message(pair.now, &second),
        Ok(Received::Batch)
    );
    for expected in [43, 44] {
        let Some(Received::Read { op, .. }) = pair.server.next_batch_read() else {
            panic!("the next batch's read {expected}");
        };
        assert_eq!(op.0, expected);
        pair.server.complete_io(op, Ok(16)).unwrap();
    }
    assert_eq!(pair.server.next_batch_read(), None);
    pair.server.complete_io(kept, Ok(16)).unwrap();
    assert_eq!(pair.server.outstanding(), 0);
    let blocks = drain_blocks(&mut pair);
    assert_eq!(
        blocks,
        vec![(42, None), (43, None), (44, Some(43)), (41, Some(41))]
    );
    assert_eq!(pair.server.ledger().in_use(), 0);

    // Until then its id names it: a batch reusing it is refused.
    let (mut pair, handle, _) = batching_pair();
    let level = pair.client.ledger().level();
    a_batch_with_one_read_left(&mut pair, handle, level);
    server_rejects(
        &mut pair,
        &forge_batch(&[batch_read(45, handle), batch_read(46, handle)], level, 41),
        Violation::DuplicateRequest(41),
        true,
    );
}

#[test]
fn a_batch_of_reads_of_one_file_among_others_answers_each_by_its_own_handle_and_range() {
    let (mut pair, handle, _) = batching_pair();
    let level = pair.client.ledger().level();
    let past_offsets = BatchRead::new(
        52,
        handle,
        u64::MAX - 8,
        BufferDescriptor::new(0x52000, 1, 16),
        BufferDescriptor::new(0x52010, 2, 24),
    );
    let reads = [
        batch_read(51, handle),
        past_offsets,
        batch_read(53, 999),
        batch_read(54, handle),
    ];
    assert_eq!(
        pair.server
            .take_message(pair.now, &forge_batch(&reads, level, 51)),
        Ok(Received::Batch)
    );
    for expected in [51, 54] {
        let Some(Received::Read { op, .. }) = pair.server.next_batch_read() else {
            panic!("read {expected} of the registered file");
        };
        assert_eq!(op.0, expected);
        pair.server.complete_io(op, Ok(16)).unwrap();
    }
    assert_eq!(pair.server.next_batch_read(), None);
    let mut buf = vec![0u8; 256];
    let mut blocks = Vec::new();
    while let Some(t) = pair.server.poll_transmit(&mut buf).unwrap() {
        if let Transmit::StatusBlock { len, immediate, .. } = t {
            let block = rdio_core::wire::StatusBlock::parse(&buf[..len])
                .unwrap()
                .unwrap();
            blocks.push((block.request_id, block.status, immediate));
        }
    }
    assert_eq!(
        blocks,
        vec![
            (52, Status::InvalidParameter, None),
            (53, Status::InvalidHandle, None),
            (51, Status::Success, None),
            (54, Status::Success, Some(51)),
        ]
    );
}
