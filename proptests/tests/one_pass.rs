//! The one-pass request path: a request id names its slot, the server's
//! status block is encoded as the driver completes the read
//! (`Connection::complete_io_into`), the client takes the completion
//! straight from the block (`Client::take_status_block`); stale and forged
//! ids are refused, never completed as another request. A read submitted
//! with `Client::read_into` is sent in the same call when it can go first,
//! the same bytes `poll_transmit` would send, and queued otherwise; so is a
//! write submitted with `Client::write_into` (its first fragment).

use rdio_core::client::{BlockOutcome, Client, ClientEvent, CompletionMode, DataRef, RequestId};
use rdio_core::server::{OpId, Received, ServerEvent, Transmit};
use rdio_core::wire::{BufferDescriptor, OpenFlags, Status, StatusBlock};
use rdio_core::{ApiError, Violation};
use rdio_proptests::pair::Pair;

/// Client slots in the test pair (`Pair::client` is a `Client<64>`).
const SLOTS: u32 = 64;

/// A pair with one registered 100-byte file: the pair and the handle.
fn pair_with_file() -> (Pair, u32) {
    let mut pair = Pair::connected();
    let key = pair.open_file(vec![7; 100], OpenFlags::READ);
    let handle = pair.register(key);
    (pair, handle)
}

/// Carry the client's next send to the server and take the read it
/// raises: the server's op and the bytes the "driver" read.
fn read_reaches_server(pair: &mut Pair) -> (OpId, u64) {
    let mut buf = vec![0u8; 65536];
    let sent = pair.client.poll_transmit(pair.now, &mut buf).unwrap();
    let len = sent.expect("a request to send").len;
    pair.server.handle_message(pair.now, &buf[..len]).unwrap();
    match pair.server.poll_event() {
        Some(ServerEvent::Read { op, segments, .. }) => {
            (op, segments.iter().map(|s| u64::from(s.dest().len())).sum())
        }
        other => panic!("expected a read, got {other:?}"),
    }
}

/// Every completion the client reports for `request`, through its events.
fn completions_of(pair: &mut Pair, request: RequestId) -> Vec<Status> {
    std::iter::from_fn(|| pair.client.poll_event())
        .filter_map(|event| match event {
            ClientEvent::Completed {
                request: r, status, ..
            } if r == request => Some(status),
            _ => None,
        })
        .collect()
}

#[test]
fn a_read_completes_in_one_pass_on_each_side() {
    let (mut pair, handle) = pair_with_file();
    let (request, _) = pair.read(handle, 0, 10, CompletionMode::Interrupt);
    let slot = pair.client.slot_of(request).expect("outstanding");
    assert_eq!(slot as u32, request.0 % SLOTS, "the id names its slot");
    assert!(
        request.0 >= SLOTS,
        "generations start at 1: an id is never 0"
    );
    let status_desc = pair.status_descs[&request];
    let (op, bytes) = read_reaches_server(&mut pair);

    let mut block = [0u8; 24];
    let answer = pair.server.complete_io_into(op, Ok(bytes), &mut block);
    assert_eq!(
        answer,
        Ok(Some(Transmit::StatusBlock {
            len: 24,
            dest: status_desc,
            immediate: Some(request.0),
        }))
    );
    let mut buf = [0u8; 256];
    assert_eq!(
        pair.server.poll_transmit(&mut buf),
        Ok(None),
        "not queued too"
    );

    assert_eq!(
        pair.client.take_status_block(pair.now, &block),
        Ok(BlockOutcome::Completed(ClientEvent::Completed {
            request,
            status: Status::Success,
            bytes: 10,
        }))
    );
    assert_eq!(pair.client.poll_event(), None, "not queued too");
    assert_eq!(pair.client.slot_of(request), None, "the slot is free");
    assert_eq!(
        (pair.client.ledger().in_use(), pair.server.ledger().in_use()),
        (0, 0)
    );

    // The next request in the same slot has the next generation.
    for _ in 1..SLOTS {
        let (other, _) = pair.read(handle, 0, 1, CompletionMode::Interrupt);
        assert_ne!(pair.client.slot_of(other), Some(slot));
        pair.client.cancel(other).unwrap();
    }
    let _ = std::iter::from_fn(|| pair.client.poll_event()).count();
    let (again, _) = pair.read(handle, 0, 10, CompletionMode::Interrupt);
    assert_eq!(again.0, request.0 + SLOTS, "same slot, next generation");

    // The first request's block again: its id is stale, the slot's request
    // is another one. The connection ends; the new request completes once,
    // with the termination's status, never with the stale block's.
    assert_eq!(
        pair.client.take_status_block(pair.now, &block),
        Err(Violation::UnknownRequest(request.0))
    );
    assert!(pair.client.is_closed());
    assert_eq!(completions_of(&mut pair, again), [Status::ProtocolError]);
}

#[test]
fn a_forged_generation_of_an_outstanding_slot_is_refused() {
    for forged in [
        |id: u32| id + SLOTS,
        |id: u32| id - SLOTS,
        |id: u32| id % SLOTS,
    ] {
        let (mut pair, handle) = pair_with_file();
        let (request, _) = pair.read(handle, 0, 10, CompletionMode::Polling);
        pair.client_transmit();
        let id = forged(request.0);
        assert_eq!(id % SLOTS, request.0 % SLOTS, "the slot of a live request");
        let block = StatusBlock {
            request_id: id,
            status: Status::Success,
            bytes: 10,
            credits: 1,
        }
        .to_bytes();
        assert_eq!(
            pair.client.take_status_block(pair.now, &block),
            Err(Violation::UnknownRequest(id))
        );
        assert!(pair.client.is_closed());
        assert_eq!(completions_of(&mut pair, request), [Status::ProtocolError]);
    }
}

#[test]
fn an_unwritten_block_is_not_taken() {
    let (mut pair, handle) = pair_with_file();
    let (request, _) = pair.read(handle, 0, 10, CompletionMode::Polling);
    pair.client_transmit();
    assert_eq!(
        pair.client.take_status_block(pair.now, &[0u8; 24]),
        Ok(BlockOutcome::NotWritten)
    );
    assert!(pair.client.awaits_status_block(request));
}

#[test]
fn a_status_block_waits_its_turn_behind_queued_output() {
    let (mut pair, handle) = pair_with_file();
    let (first, _) = pair.read(handle, 0, 10, CompletionMode::Interrupt);
    let (second, _) = pair.read(handle, 10, 20, CompletionMode::Interrupt);
    let (op1, bytes1) = read_reaches_server(&mut pair);
    let (op2, bytes2) = read_reaches_server(&mut pair);
    // The first block is queued (the event path) and not yet drained: the
    // second goes behind it, not ahead.
    pair.server.complete_io(op1, Ok(bytes1)).unwrap();
    let mut block = [0u8; 24];
    assert_eq!(
        pair.server.complete_io_into(op2, Ok(bytes2), &mut block),
        Ok(None)
    );
    let mut buf = [0u8; 256];
    let mut order = Vec::new();
    while let Some(t) = pair.server.poll_transmit(&mut buf).unwrap() {
        let Transmit::StatusBlock { len, .. } = t else {
            panic!("expected status blocks, got {t:?}");
        };
        order.push(StatusBlock::parse(&buf[..len]).unwrap().unwrap().request_id);
        // The event path on the client for these.
        assert_eq!(
            pair.client.handle_status_block(pair.now, &buf[..len]),
            Ok(true)
        );
    }
    assert_eq!(order, [first.0, second.0]);
    assert_eq!(completions_of(&mut pair, first), [Status::Success]);
    let _ = second;
    // A buffer too small for a block: queued, not lost.
    let (third, _) = pair.read(handle, 0, 5, CompletionMode::Interrupt);
    let (op3, bytes3) = read_reaches_server(&mut pair);
    assert_eq!(
        pair.server
            .complete_io_into(op3, Ok(bytes3), &mut [0u8; 23]),
        Ok(None)
    );
    let Some(Transmit::StatusBlock { len, .. }) = pair.server.poll_transmit(&mut buf).unwrap()
    else {
        panic!("the block was not queued");
    };
    assert_eq!(
        pair.client.take_status_block(pair.now, &buf[..len]),
        Ok(BlockOutcome::Completed(ClientEvent::Completed {
            request: third,
            status: Status::Success,
            bytes: 5,
        }))
    );
}

#[test]
fn a_read_is_handed_over_as_it_arrives_unless_work_waits() {
    let (mut pair, handle) = pair_with_file();
    let mut buf = vec![0u8; 65536];
    let (request, dest) = pair.read(handle, 0, 10, CompletionMode::Interrupt);
    let len = pair
        .client
        .poll_transmit(pair.now, &mut buf)
        .unwrap()
        .unwrap()
        .len;
    let op = match pair.server.take_message(pair.now, &buf[..len]) {
        Ok(Received::Read { op, segments, .. }) => {
            assert_eq!(segments.len(), 1);
            assert_eq!((segments[0].offset(), segments[0].dest()), (0, dest));
            op
        }
        other => panic!("expected the read, got {other:?}"),
    };
    assert_eq!(pair.server.poll_event(), None, "not queued too");
    let mut block = [0u8; 24];
    assert!(matches!(
        pair.server.complete_io_into(op, Ok(10), &mut block),
        Ok(Some(Transmit::StatusBlock { .. }))
    ));
    assert!(matches!(
        pair.client.take_status_block(pair.now, &block),
        Ok(BlockOutcome::Completed(ClientEvent::Completed { request: r, .. })) if r == request
    ));

    // A registration waits for the driver: a read behind it waits its turn.
    let key = pair.open_file(vec![1; 4], OpenFlags::READ);
    let register = pair.client.register(key).unwrap();
    let (second, _) = pair.read(handle, 0, 4, CompletionMode::Interrupt);
    for _ in 0..2 {
        let len = pair
            .client
            .poll_transmit(pair.now, &mut buf)
            .unwrap()
            .unwrap()
            .len;
        assert_eq!(
            pair.server.take_message(pair.now, &buf[..len]),
            Ok(Received::Nothing)
        );
    }
    assert!(matches!(
        pair.server.poll_event(),
        Some(ServerEvent::Register { op, .. }) if op.0 == register.0
    ));
    assert!(matches!(
        pair.server.poll_event(),
        Some(ServerEvent::Read { op, .. }) if op.0 == second.0
    ));
    assert_eq!(pair.server.poll_event(), None);
}

/// Take the client's next send on the server: the read it hands over at
/// once, and the bytes of the request.
fn take_read(pair: &mut Pair) -> (OpId, Vec<u8>) {
    let mut buf = vec![0u8; 65536];
    let len = pair
        .client
        .poll_transmit(pair.now, &mut buf)
        .unwrap()
        .expect("a request to send")
        .len;
    let bytes = buf[..len].to_vec();
    match pair.server.take_message(pair.now, &bytes) {
        Ok(Received::Read { op, .. }) => (op, bytes),
        other => panic!("expected the read at once, got {other:?}"),
    }
}

/// Complete `op` as a driver serving at once would, and hand its status
/// block to the client: the request it completed and its status.
fn complete_now(pair: &mut Pair, op: OpId, bytes: u64) -> (RequestId, Status) {
    let mut block = [0u8; 24];
    let Ok(Some(Transmit::StatusBlock { len, .. })) =
        pair.server.complete_io_into(op, Ok(bytes), &mut block)
    else {
        panic!("the block was not returned");
    };
    match pair.client.take_status_block(pair.now, &block[..len]) {
        Ok(BlockOutcome::Completed(ClientEvent::Completed {
            request, status, ..
        })) => (request, status),
        other => panic!("expected the completion, got {other:?}"),
    }
}

#[test]
fn a_read_handed_over_at_once_survives_any_call_before_its_completion() {
    // The server keeps the read it just handed over outside its request
    // table until another call puts it there: each call below must find it.
    let (mut pair, handle) = pair_with_file();
    let (first, _) = pair.read(handle, 0, 10, CompletionMode::Interrupt);
    let (op1, _) = take_read(&mut pair);
    assert_eq!(pair.server.outstanding(), 1);
    let (second, _) = pair.read(handle, 10, 10, CompletionMode::Interrupt);
    let (op2, _) = take_read(&mut pair);
    assert_eq!(pair.server.outstanding(), 2, "the first was not lost");
    let mut buf = [0u8; 256];
    assert_eq!(pair.server.poll_transmit(&mut buf), Ok(None));
    assert_eq!(pair.server.poll_event(), None);
    pair.server.handle_timeout(pair.now);
    // Completed out of order: the second (now in the table) first.
    assert_eq!(complete_now(&mut pair, op2, 10), (second, Status::Success));
    assert_eq!(complete_now(&mut pair, op1, 10), (first, Status::Success));
    assert_eq!(pair.server.outstanding(), 0);
    assert_eq!(
        pair.server.complete_io_into(op1, Ok(10), &mut buf),
        Err(ApiError::UnknownRequest),
        "completed once only"
    );
    // Completed at once, the next read never enters the table.
    let (third, _) = pair.read(handle, 20, 5, CompletionMode::Interrupt);
    let (op3, _) = take_read(&mut pair);
    assert_eq!(complete_now(&mut pair, op3, 5), (third, Status::Success));
    assert_eq!(pair.server.outstanding(), 0);
    assert!(pair.server.is_open());
}

#[test]
fn a_request_id_reused_while_its_read_is_handed_over_is_refused() {
    let (mut pair, handle) = pair_with_file();
    let _ = pair.read(handle, 0, 10, CompletionMode::Interrupt);
    let (_op, bytes) = take_read(&mut pair);
    // The same request again (same id, a credit of its own in its header):
    // the id is in flight, in the driver's hands.
    let id = request_id_of(&bytes);
    assert_eq!(
        pair.server.take_message(pair.now, &bytes),
        Err(Violation::DuplicateRequest(id))
    );
    assert!(pair.server.is_closed());
}

/// What a one-pass submission returned on a copy of the client: the
/// request, and the bytes of the send it encoded with that send's data
/// reference, if it sent one at once.
type Fused = Result<(RequestId, Option<(Vec<u8>, Option<DataRef>)>), ApiError>;

/// Run the one-pass submission `submit` on a copy of the client, into a
/// send buffer of `buf_len` bytes.
fn fused_copy(
    pair: &Pair,
    buf_len: usize,
    submit: impl FnOnce(
        &mut Client<64>,
        &mut [u8],
    ) -> Result<(RequestId, Option<rdio_core::client::Transmit>), ApiError>,
) -> (Client<64>, Fused) {
    let mut client = pair.client.clone();
    let mut buf = vec![0u8; buf_len];
    let result = submit(&mut client, &mut buf)
        .map(|(request, sent)| (request, sent.map(|t| (buf[..t.len].to_vec(), t.data))));
    (client, result)
}

/// What `Client::read_into` returned, with the bytes of a request it sent.
type ReadInto = Result<(RequestId, Option<Vec<u8>>), ApiError>;

/// `Client::read_into` on a copy of the client: the request it sends at
/// once, if any.
fn read_into_copy(
    pair: &Pair,
    handle: u32,
    dest: BufferDescriptor,
    status: BufferDescriptor,
    buf_len: usize,
) -> (Client<64>, ReadInto) {
    let now = pair.now;
    let (client, result) = fused_copy(pair, buf_len, |client, buf| {
        client.read_into(now, handle, 5, dest, status, CompletionMode::Interrupt, buf)
    });
    let result = result.map(|(request, sent)| {
        (
            request,
            sent.map(|(bytes, data)| {
                assert_eq!(data, None, "a read carries no data");
                bytes
            }),
        )
    });
    (client, result)
}

/// What `read_into` gave (`fused`: the client after it, the request, the
/// bytes it encoded) is what `read` then `poll_transmit` give on `pair`'s
/// client: the same slot and id, the same request bytes, the same state.
/// The request `read` gave.
fn same_as_read_and_poll_transmit(
    pair: &mut Pair,
    handle: u32,
    dest: BufferDescriptor,
    status: BufferDescriptor,
    fused: &Client<64>,
    fused_request: RequestId,
    fused_bytes: &[u8],
) -> RequestId {
    let request = pair
        .client
        .read(handle, 5, dest, status, CompletionMode::Interrupt)
        .unwrap();
    let mut buf = vec![0u8; 65536];
    let t = pair
        .client
        .poll_transmit(pair.now, &mut buf)
        .unwrap()
        .unwrap();
    assert_eq!(fused_request, request, "the same slot and id");
    assert_eq!(fused_bytes, &buf[..t.len], "the same request bytes");
    assert_eq!(*fused, pair.client, "the same client state afterwards");
    request
}

#[test]
fn read_into_sends_at_once_what_read_and_poll_transmit_send() {
    let (mut pair, handle) = pair_with_file();
    let dest = pair.memory.alloc(10);
    let status = pair.status_desc();
    let (mut fused, result) = read_into_copy(&pair, handle, dest, status, 65536);
    let (fused_request, fused_bytes) = result.unwrap();
    let fused_bytes = fused_bytes.expect("nothing queued ahead, a credit free: sent at once");

    let request = same_as_read_and_poll_transmit(
        &mut pair,
        handle,
        dest,
        status,
        &fused,
        fused_request,
        &fused_bytes,
    );
    let mut buf = vec![0u8; 65536];
    assert_eq!(
        fused.poll_transmit(pair.now, &mut buf),
        Ok(None),
        "not queued too"
    );

    // The server takes it and the read completes as any other.
    pair.client = fused;
    pair.track(request, status, CompletionMode::Interrupt);
    pair.c2s.push_back(fused_bytes);
    pair.drive();
    assert_eq!(
        pair.take_event(request),
        ClientEvent::Completed {
            request,
            status: Status::Success,
            bytes: 10,
        }
    );
}

#[test]
fn read_into_queues_a_read_that_cannot_go_first() {
    let (mut pair, handle) = pair_with_file();
    let dest = pair.memory.alloc(10);
    let status = pair.status_desc();

    // A buffer too short for the request: queued, sent by poll_transmit.
    let (mut client, result) = read_into_copy(&pair, handle, dest, status, 63);
    let (request, sent) = result.unwrap();
    assert_eq!(sent, None);
    let mut buf = vec![0u8; 65536];
    let t = client.poll_transmit(pair.now, &mut buf).unwrap().unwrap();
    assert_eq!(t.len, 64);
    assert_eq!(
        client.slot_of(request),
        Some(request.0 as usize % SLOTS as usize)
    );

    // Another request queued ahead: this one goes after it, in order.
    let first = pair
        .client
        .read(handle, 0, dest, status, CompletionMode::Interrupt)
        .unwrap();
    let (mut client, result) = read_into_copy(&pair, handle, dest, status, 65536);
    let (second, sent) = result.unwrap();
    assert_eq!(sent, None, "queued behind the first");
    let ids: Vec<u32> = std::iter::from_fn(|| {
        let t = client.poll_transmit(pair.now, &mut buf).unwrap()?;
        Some(request_id_of(&buf[..t.len]))
    })
    .collect();
    assert_eq!(ids, [first.0, second.0]);

    // No credit free: queued until a credit comes back. (Four credits, so
    // the request table has room left.)
    pair.drive();
    pair.server.set_credit_target(4).unwrap();
    pair.drive();
    let credits = pair.client.ledger().level();
    assert_eq!(credits, 4);
    for _ in 1..credits {
        pair.read(handle, 0, 1, CompletionMode::Interrupt);
    }
    pair.client_transmit();
    assert_eq!(pair.client.ledger().available(), 0);
    let (client, result) = read_into_copy(&pair, handle, dest, status, 65536);
    assert_eq!(result.unwrap().1, None, "waits for a credit");
    assert_eq!(client.waits_for_credit(), pair.client.waits_for_credit());

    // Refused as `read` refuses.
    let empty = BufferDescriptor::new(dest.addr(), dest.key(), 0);
    let (_, result) = read_into_copy(&pair, handle, empty, status, 65536);
    assert_eq!(result, Err(ApiError::InvalidArgument));
    let short_status = BufferDescriptor::new(status.addr(), status.key(), 23);
    let (_, result) = read_into_copy(&pair, handle, dest, short_status, 65536);
    assert_eq!(result, Err(ApiError::InvalidArgument));
}

/// The request id in an encoded message's header (bytes 8..12, LE).
fn request_id_of(message: &[u8]) -> u32 {
    u32::from_le_bytes(message[8..12].try_into().unwrap())
}

/// What `Client::write_into` returned: the request, and the first send's
/// prefix bytes with its data reference `(offset, len)`, if it sent one.
type WriteInto = Result<(RequestId, Option<(Vec<u8>, u32, u32)>), ApiError>;

/// `Client::write_into` of `len` bytes on a copy of the client.
fn write_into_copy(
    pair: &Pair,
    handle: u32,
    len: u32,
    status: BufferDescriptor,
    buf_len: usize,
) -> (Client<64>, WriteInto) {
    let now = pair.now;
    let (client, result) = fused_copy(pair, buf_len, |client, buf| {
        client.write_into(now, handle, 5, len, status, CompletionMode::Interrupt, buf)
    });
    let result = result.map(|(request, sent)| {
        (
            request,
            sent.map(|(bytes, data)| {
                let data = data.expect("a write's first send carries data");
                assert_eq!(data.request, request);
                (bytes, data.offset, data.len)
            }),
        )
    });
    (client, result)
}

/// Every send `client` has queued: prefix bytes and data reference.
fn queued_sends(client: &mut Client<64>, now: rdio_core::Instant) -> Vec<(Vec<u8>, u32, u32)> {
    let mut buf = vec![0u8; 65536];
    std::iter::from_fn(|| {
        let t = client.poll_transmit(now, &mut buf).unwrap()?;
        let (offset, len) = t.data.map_or((0, 0), |d| (d.offset, d.len));
        Some((buf[..t.len].to_vec(), offset, len))
    })
    .collect()
}

/// A write that can go first is sent by `write_into` in the same call:
/// the same prefix, data reference, slot and client state as `write` then
/// `poll_transmit`; one longer than a send streams its other fragments
/// through `poll_transmit` exactly as before. Then it completes as any
/// write does.
#[test]
fn write_into_sends_at_once_what_write_and_poll_transmit_send() {
    // One fragment (4 KiB), and three (150,000 bytes in 64 KiB sends).
    for len in [4096u32, 150_000] {
        let (mut pair, handle) = {
            let mut pair = Pair::connected();
            let key = pair.open_file(vec![0; 200_000], OpenFlags::READ | OpenFlags::WRITE);
            let handle = pair.register(key);
            (pair, handle)
        };
        let status = pair.status_desc();
        let (fused, result) = write_into_copy(&pair, handle, len, status, 65536);
        let (fused_request, first) = result.unwrap();
        let first = first.expect("nothing queued ahead, a credit free: sent at once");

        let request = pair
            .client
            .write(handle, 5, len, status, CompletionMode::Interrupt)
            .unwrap();
        assert_eq!(fused_request, request, "the same slot and id");
        let mut separate = pair.client.clone();
        let sends = queued_sends(&mut separate, pair.now);
        assert_eq!(sends.first(), Some(&first), "the same first send");
        let mut fused_after = fused.clone();
        assert_eq!(
            queued_sends(&mut fused_after, pair.now),
            sends[1..],
            "the rest streams as before"
        );
        assert_eq!(fused_after, separate, "the same client state afterwards");
        let mut once = pair.client.clone();
        let mut buf = vec![0u8; 65536];
        once.poll_transmit(pair.now, &mut buf).unwrap().unwrap();
        assert_eq!(fused, once, "the same state as after one poll_transmit");

        // The server takes it and the write completes as any other.
        pair.client = fused;
        pair.track(request, status, CompletionMode::Interrupt);
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let (prefix, offset, data_len) = first;
        let mut message = prefix;
        message.extend_from_slice(&data[offset as usize..(offset + data_len) as usize]);
        pair.write_data.insert(request, data.clone());
        pair.c2s.push_back(message);
        pair.drive();
        assert_eq!(
            pair.take_event(request),
            ClientEvent::Completed {
                request,
                status: Status::Success,
                bytes: u64::from(len),
            }
        );
        pair.assert_quiescent_ledgers();
    }
}

#[test]
fn write_into_queues_a_write_that_cannot_go_first() {
    let (mut pair, handle) = pair_with_file();
    let status = pair.status_desc();

    // A buffer too short for the prefix: queued, sent by poll_transmit.
    let (mut client, result) = write_into_copy(&pair, handle, 10, status, 47);
    let (request, sent) = result.unwrap();
    assert_eq!(sent, None);
    let sends = queued_sends(&mut client, pair.now);
    assert_eq!(sends.len(), 1);
    assert_eq!((sends[0].0.len(), sends[0].1, sends[0].2), (48, 0, 10));
    assert_eq!(request_id_of(&sends[0].0), request.0);

    // Another request queued ahead: this one goes after it, in order.
    let dest = pair.memory.alloc(10);
    let first = pair
        .client
        .read(handle, 0, dest, status, CompletionMode::Interrupt)
        .unwrap();
    let (mut client, result) = write_into_copy(&pair, handle, 10, status, 65536);
    let (second, sent) = result.unwrap();
    assert_eq!(sent, None, "queued behind the first");
    let ids: Vec<u32> = queued_sends(&mut client, pair.now)
        .iter()
        .map(|(prefix, ..)| request_id_of(prefix))
        .collect();
    assert_eq!(ids, [first.0, second.0]);

    // Refused as `write` refuses.
    let (_, result) = write_into_copy(&pair, handle, 0, status, 65536);
    assert_eq!(result, Err(ApiError::InvalidArgument));
    let short_status = BufferDescriptor::new(status.addr(), status.key(), 23);
    let (_, result) = write_into_copy(&pair, handle, 10, short_status, 65536);
    assert_eq!(result, Err(ApiError::InvalidArgument));
    let (_, result) = write_into_copy(&pair, handle, u32::MAX, status, 65536);
    assert_eq!(result, Err(ApiError::TooLarge));
}

#[test]
fn read_into_takes_the_next_free_slot_past_one_still_held() {
    let (mut pair, handle) = pair_with_file();
    // A read sent and unanswered holds its slot while the table's cursor
    // goes round to it again (each other read cancelled while queued).
    let (held, _) = pair.read(handle, 0, 10, CompletionMode::Interrupt);
    pair.client_transmit();
    let slot = pair.client.slot_of(held).expect("outstanding");
    for _ in 1..SLOTS {
        let (other, _) = pair.read(handle, 0, 1, CompletionMode::Interrupt);
        pair.client.cancel(other).unwrap();
    }
    let _ = std::iter::from_fn(|| pair.client.poll_event()).count();

    let dest = pair.memory.alloc(10);
    let status = pair.status_desc();
    let (fused, result) = read_into_copy(&pair, handle, dest, status, 65536);
    let (fused_request, fused_bytes) = result.unwrap();
    let fused_bytes = fused_bytes.expect("nothing queued ahead, a credit free: sent at once");
    assert_eq!(
        fused.slot_of(fused_request),
        Some((slot + 1) % SLOTS as usize),
        "the held slot passed over, the next one taken"
    );
    assert_eq!(fused.slot_of(held), Some(slot), "the held read untouched");

    // The same slot, id, bytes and state as `read` and `poll_transmit`.
    same_as_read_and_poll_transmit(
        &mut pair,
        handle,
        dest,
        status,
        &fused,
        fused_request,
        &fused_bytes,
    );
}

/// A block for `request` reporting `bytes` and returning one credit.
fn block_for(request: RequestId, bytes: u64) -> [u8; 24] {
    StatusBlock {
        request_id: request.0,
        status: Status::Success,
        bytes,
        credits: 1,
    }
    .to_bytes()
}

#[test]
fn a_block_is_checked_against_every_kind_of_request() {
    // A read takes a block of at most what it asked for.
    let (mut pair, handle) = pair_with_file();
    let (read, _) = pair.read(handle, 0, 10, CompletionMode::Polling);
    pair.client_transmit();
    assert_eq!(
        pair.client
            .take_status_block(pair.now, &block_for(read, 10)),
        Ok(BlockOutcome::Completed(ClientEvent::Completed {
            request: read,
            status: Status::Success,
            bytes: 10,
        }))
    );

    // A write of one fragment: at most the bytes it sends.
    let (mut pair, handle) = pair_with_file();
    let write = pair.write(handle, 0, vec![1; 8], CompletionMode::Polling);
    pair.client_transmit();
    assert_eq!(
        pair.client
            .take_status_block(pair.now, &block_for(write, 9)),
        Err(Violation::BadDescriptor)
    );
    assert!(pair.client.is_closed());
    assert_eq!(completions_of(&mut pair, write), [Status::ProtocolError]);
    let (mut pair, handle) = pair_with_file();
    let write = pair.write(handle, 0, vec![1; 8], CompletionMode::Polling);
    pair.client_transmit();
    assert_eq!(
        pair.client
            .take_status_block(pair.now, &block_for(write, 8)),
        Ok(BlockOutcome::Completed(ClientEvent::Completed {
            request: write,
            status: Status::Success,
            bytes: 8,
        }))
    );

    // A registration takes no block: its id is unknown to one.
    let mut pair = Pair::connected();
    let key = pair.open_file(vec![7; 100], OpenFlags::READ);
    let register = pair.client.register(key).unwrap();
    pair.client_transmit();
    assert_eq!(
        pair.client
            .take_status_block(pair.now, &block_for(register, 0)),
        Err(Violation::UnknownRequest(register.0))
    );
    assert!(pair.client.is_closed());
}
