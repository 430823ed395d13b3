//! Minimal reproductions of bugs the property tests and fuzzers found, kept
//! as regression tests once fixed in rdio-core.

use rdio_core::client::CompletionMode;
use rdio_core::wire::{OpenFlags, Status};
use rdio_proptests::pair::Pair;

/// A read the server's driver has taken (`ServerEvent::Read` polled, RDMA
/// writes under way) is cancelled: `Connection::cancel` → `try_finish` sees
/// `Stage::Dispatched` with `pieces_in_flight == 0` and finishes it at once,
/// so the client gets a `Cancelled` status block, returns the credit and may
/// reuse the buffer while the driver is still RDMA-writing into it; the
/// driver's `complete_io` then fails with `UnknownRequest`. (Close already
/// waits for reads in the driver's hands; cancel should too, or count the
/// dispatched read as a piece in flight.)
#[test]
fn cancel_of_a_read_in_the_drivers_hands_waits_for_its_rdma_writes() {
    let mut pair = Pair::connected();
    pair.defer_reads = true;
    let key = pair.open_file(vec![7; 4096], OpenFlags::READ);
    let handle = pair.register(key);
    let (read, dest) = pair.read(handle, 0, 4096, CompletionMode::Interrupt);
    pair.client_transmit();
    pair.server_receive_one();
    // The driver takes the read and starts its RDMA writes.
    assert!(pair.server_event_one());
    assert_eq!(pair.reads_in_progress.len(), 1);
    pair.client.cancel(read).unwrap();
    pair.client_transmit();
    pair.server_receive_one();
    pair.server_transmit();
    pair.client_receive();
    // The client must not see the read end while the server may still
    // write into its buffer.
    assert!(
        pair.events.is_empty(),
        "read reported before the driver finished: {:?}",
        pair.events
    );
    pair.drive();
    let (status, bytes) = pair.completion(read);
    assert!(
        (status, bytes) == (Status::Success, 4096) || status == Status::Cancelled,
        "{status:?} {bytes}"
    );
    assert_eq!(pair.memory.read(dest), vec![7; 4096]);
    pair.assert_clean();
    pair.assert_quiescent_ledgers();
}

/// Two interrupt requests wait for a completion (claim 21); the one read in
/// flight completes and `finish` wakes only the first waiter. The second
/// waits for a completion that never comes — nothing is in flight any more
/// — and holds its credit forever; at one credit the connection deadlocks.
/// (When the last data request finishes, every remaining waiter should be
/// answered, as a new interrupt request would be with nothing in flight.)
#[test]
fn every_waiting_interrupt_request_is_answered() {
    let mut pair = Pair::connected();
    let key = pair.open_file(vec![7; 4096], OpenFlags::READ);
    let handle = pair.register(key);
    let (read, _) = pair.read(handle, 0, 4096, CompletionMode::Polling);
    let first = pair.client.request_interrupt().unwrap();
    let second = pair.client.request_interrupt().unwrap();
    // All three reach the server before its driver performs the read.
    pair.client_transmit();
    while pair.server_receive_one().is_some() {}
    pair.drive();
    assert_eq!(pair.completion(read).0, Status::Success);
    for request in [first, second] {
        assert!(
            matches!(
                pair.take_event(request),
                rdio_core::client::ClientEvent::Interrupted { .. }
            ),
            "{request:?}"
        );
    }
    pair.assert_quiescent_ledgers();
}

/// A write is cancelled after its first fragment; its cancel joins the back
/// of the client's queue, behind a close of the same handle. The server
/// holds the close until the write finishes, the write finishes only when
/// the cancel arrives, and the cancel needs the credit the close holds: at
/// one credit (after a revoke) the connection deadlocks. (A cancel that
/// stops a partly sent write should take the write's place at the front of
/// the queue, as its fragments would have.)
#[test]
fn cancel_of_a_streaming_write_is_not_stuck_behind_a_close() {
    let mut pair = Pair::connected();
    let key = pair.open_file(Vec::new(), OpenFlags::WRITE);
    let handle = pair.register(key);
    pair.server.set_credit_target(1).unwrap();
    pair.drive();
    assert_eq!(pair.client.ledger().level(), 1);
    let write = pair.write(handle, 0, vec![5; 100_000], CompletionMode::Interrupt);
    let close = pair.client.close(handle).unwrap();
    // The first fragment goes and is answered; then the write is cancelled.
    assert!(pair.client_transmit_one().is_some());
    pair.server_receive();
    pair.server_transmit();
    pair.client_receive();
    pair.client.cancel(write).unwrap();
    pair.drive();
    assert_eq!(pair.completion(write).0, Status::Cancelled);
    assert_eq!(pair.completion(close).0, Status::Success);
    pair.assert_quiescent_ledgers();
}

/// An interrupt request parked at the server (claim 21: answered at the next
/// completion) holds a credit until some request completes. Here the only
/// request left is a write whose next fragment needs a credit, and a revoke
/// has taken the client down to the one credit the parked interrupt request
/// holds: the write cannot continue, so nothing completes, so the interrupt
/// request is never answered. (A parked interrupt request should not wait
/// for requests that wait on the client — writes still receiving fragments —
/// or should be answered when it holds the client's last free credit.)
#[test]
fn parked_interrupt_request_does_not_starve_a_streaming_write() {
    let mut pair = Pair::connected();
    let key = pair.open_file(vec![7; 4096], OpenFlags::READ | OpenFlags::WRITE);
    let handle = pair.register(key);
    pair.server.set_credit_target(4).unwrap();
    pair.drive();
    pair.defer_reads = true;
    let (read, _) = pair.read(handle, 0, 100, CompletionMode::Polling);
    let first = pair.client.request_interrupt().unwrap();
    let second = pair.client.request_interrupt().unwrap();
    let write = pair.write(handle, 0, vec![5; 100_000], CompletionMode::Interrupt);
    pair.client_transmit();
    assert_eq!(
        pair.client.ledger().in_use(),
        4,
        "read, two interrupts, a fragment"
    );
    // All four arrive before the driver looks at the read.
    while pair.server_receive_one().is_some() {}
    pair.server.set_credit_target(1).unwrap();
    pair.drive();
    assert_eq!(pair.completion(read).0, Status::Success);
    assert_eq!(pair.completion(write).0, Status::Success);
    for request in [first, second] {
        assert!(matches!(
            pair.take_event(request),
            rdio_core::client::ClientEvent::Interrupted { .. }
        ));
    }
    pair.assert_quiescent_ledgers();
}

/// A client writes 1500 bytes at file offset `u64::MAX - 6`: the range
/// overflows `u64`, but the write request is accepted, and its second
/// fragment makes `map_pieces` fail, which the server reports as
/// `Violation::Capacity` — "an internal bound was exceeded" — for what is a
/// malformed request from the peer. (Found by the `server_session` fuzz
/// target; the write should be refused up front, by a typed violation or an
/// `InvalidParameter` completion.)
#[test]
fn write_range_past_u64_max_is_not_an_internal_overflow() {
    use rdio_core::Violation;
    use rdio_core::wire::{Body, Flags, Message, WriteRequest};
    let mut pair = Pair::connected();
    let key = pair.open_file(Vec::new(), OpenFlags::READ | OpenFlags::WRITE);
    let handle = pair.register(key);
    let level = pair.client.ledger().level();
    let status = pair.status_desc();
    let encode = |body| {
        let msg = Message {
            flags: Flags::empty(),
            credits: level,
            demand: 0,
            request_id: 100,
            body,
        };
        let mut bytes = vec![0; msg.encoded_len()];
        msg.emit(&mut bytes).unwrap();
        bytes
    };
    let first = encode(Body::Write(WriteRequest {
        handle,
        offset: u64::MAX - 6,
        total_len: 1500,
        status,
        data: &[9; 900],
    }));
    let second = encode(Body::WriteData {
        data_offset: 900,
        data: &[9; 600],
    });
    pair.c2s.push_back(first);
    pair.c2s.push_back(second);
    pair.server_receive();
    assert_ne!(pair.server_error, Some(Violation::Capacity));
    assert_ne!(pair.server_terminated, Some(Violation::Capacity));
    // Refused as a request error, not a connection error: the connection
    // lives on and nothing reached the file.
    assert!(!pair.server.is_closed(), "{:?}", pair.server_error);
    assert!(pair.files.values().all(Vec::is_empty));
}
