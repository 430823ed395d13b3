//! Complete sessions over the deterministic pair: discovery → auth → credits
//! → every I/O kind in both completion modes → cancel → close → disconnect.

use rdio_core::client::{ClientEvent, CompletionMode};
use rdio_core::wire::{OpenFlags, ReadSegment, Status, WriteSegment};
use rdio_proptests::pair::{Pair, SEND};

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

const MODES: [CompletionMode; 2] = [CompletionMode::Interrupt, CompletionMode::Polling];

#[test]
fn read_in_both_completion_modes() {
    for mode in MODES {
        let mut pair = Pair::connected();
        let contents = pattern(10_000, 3);
        let key = pair.open_file(contents.clone(), OpenFlags::READ);
        let handle = pair.register(key);
        let (request, dest) = pair.read(handle, 100, 4096, mode);
        pair.drive();
        assert_eq!(pair.completion(request), (Status::Success, 4096));
        assert_eq!(pair.memory.read(dest), contents[100..4196]);
        pair.assert_quiescent_ledgers();
        // Polling mode never raises an interrupt: the block was polled.
        if mode == CompletionMode::Polling {
            assert_eq!(pair.immediates, 0);
        }
    }
}

#[test]
fn short_read_at_end_of_file_and_read_past_it() {
    let mut pair = Pair::connected();
    let key = pair.open_file(pattern(5000, 1), OpenFlags::READ);
    let handle = pair.register(key);
    let (short, _) = pair.read(handle, 4096, 4096, CompletionMode::Interrupt);
    let (past, _) = pair.read(handle, 9000, 10, CompletionMode::Interrupt);
    pair.drive();
    assert_eq!(pair.completion(short), (Status::Success, 904));
    assert_eq!(pair.completion(past), (Status::EndOfFile, 0));
}

#[test]
fn large_write_is_fragmented_streamed_and_reassembled() {
    for mode in MODES {
        let mut pair = Pair::connected();
        let key = pair.open_file(Vec::new(), OpenFlags::READ | OpenFlags::WRITE);
        let handle = pair.register(key);
        let data = pattern(1024 * 1024 + 1, 9);
        let request = pair.write(handle, 0, data.clone(), mode);
        pair.drive();
        assert_eq!(
            pair.completion(request),
            (Status::Success, data.len() as u64)
        );
        assert_eq!(pair.files.values().next().unwrap(), &data);
        // 1 MiB + 1 over 64 KiB sends: 17 messages, each one credit.
        assert!(pair.sends_c2s > data.len() / SEND);
        pair.assert_quiescent_ledgers();
    }
}

#[test]
fn writes_never_use_rdma_and_reads_never_use_sends_for_data() {
    let mut pair = Pair::connected();
    let key = pair.open_file(pattern(8192, 0), OpenFlags::READ | OpenFlags::WRITE);
    let handle = pair.register(key);
    let status_before = pair.status_writes;
    let request = pair.write(handle, 0, pattern(8192, 5), CompletionMode::Interrupt);
    pair.drive();
    assert_eq!(pair.completion(request).0, Status::Success);
    // The only RDMA write of a write request is its status block (claim 1).
    assert_eq!(pair.status_writes - status_before, 1);
    let sends_before = pair.sends_s2c;
    let (read, dest) = pair.read(handle, 0, 8192, CompletionMode::Interrupt);
    pair.drive();
    assert_eq!(pair.completion(read).0, Status::Success);
    assert_eq!(pair.memory.read(dest), pattern(8192, 5));
    // A read's data and completion arrive by RDMA: no server send (claim 16).
    assert_eq!(pair.sends_s2c, sends_before);
}

#[test]
fn vectored_read_and_write_with_and_without_collapse() {
    let mut pair = Pair::connected();
    let key = pair.open_file(vec![0; 64 * 1024], OpenFlags::READ | OpenFlags::WRITE);
    let handle = pair.register(key);

    // Non-collapsed: three segments get consecutive slices of the data.
    let data = pattern(3 * 1000, 7);
    let segments = [
        WriteSegment::new(0, 1000),
        WriteSegment::new(10_000, 1000),
        WriteSegment::new(5000, 1000),
    ];
    let status = pair.status_desc();
    let plain = pair
        .client
        .write_vectored(handle, &segments, false, status, CompletionMode::Polling)
        .unwrap();
    pair.track(plain, status, CompletionMode::Polling);
    pair.write_data.insert(plain, data.clone());

    // Collapsed: one 512-byte block carried once, written at four offsets.
    let block = pattern(512, 200);
    let offsets = [20_000u64, 30_000, 40_000, 50_000];
    let segments: Vec<_> = offsets.iter().map(|&o| WriteSegment::new(o, 512)).collect();
    let status = pair.status_desc();
    let collapsed = pair
        .client
        .write_vectored(handle, &segments, true, status, CompletionMode::Interrupt)
        .unwrap();
    pair.track(collapsed, status, CompletionMode::Interrupt);
    pair.write_data.insert(collapsed, block.clone());
    let sends_before = pair.sends_c2s;
    pair.drive();
    assert_eq!(pair.completion(plain), (Status::Success, 3000));
    assert_eq!(pair.completion(collapsed), (Status::Success, 4 * 512));
    assert_eq!(
        pair.sends_c2s - sends_before,
        2,
        "each vectored write fits one send"
    );

    let file = pair.files.values().next().unwrap().clone();
    assert_eq!(file[0..1000], data[0..1000]);
    assert_eq!(file[10_000..11_000], data[1000..2000]);
    assert_eq!(file[5000..6000], data[2000..3000]);
    for &o in &offsets {
        assert_eq!(file[o as usize..o as usize + 512], block[..]);
    }

    // Vectored read of three ranges into three buffers.
    let dests: Vec<_> = (0..3).map(|_| pair.memory.alloc(700)).collect();
    let segments: Vec<_> = [0u64, 10_000, 20_000]
        .iter()
        .zip(&dests)
        .map(|(&o, &d)| ReadSegment::new(o, d))
        .collect();
    for mode in MODES {
        let status = pair.status_desc();
        let request = pair
            .client
            .read_vectored(handle, &segments, status, mode)
            .unwrap();
        pair.track(request, status, mode);
        pair.drive();
        assert_eq!(pair.completion(request), (Status::Success, 2100));
        assert_eq!(pair.memory.read(dests[0]), file[0..700]);
        assert_eq!(pair.memory.read(dests[1]), file[10_000..10_700]);
        assert_eq!(pair.memory.read(dests[2]), file[20_000..20_700]);
    }
    pair.assert_quiescent_ledgers();
}

#[test]
fn grants_and_revokes_interleaved_with_io_keep_ledgers_exact() {
    let mut pair = Pair::connected();
    let key = pair.open_file(pattern(1 << 20, 4), OpenFlags::READ | OpenFlags::WRITE);
    let handle = pair.register(key);
    let start = pair.client.ledger().level();
    let mut expected = Vec::new();
    for (round, target) in [48u16, 4, 40, 1, 64, 2].into_iter().enumerate() {
        // Keep I/O in flight while the credit level changes.
        for i in 0..20u64 {
            let offset = (round as u64 * 20 + i) * 4096 % (1 << 20);
            let (request, _) = pair.read(handle, offset, 4096, MODES[i as usize % 2]);
            expected.push(request);
        }
        pair.client_transmit();
        pair.server_receive();
        pair.server.set_credit_target(target).unwrap();
        pair.drive();
        assert_eq!(pair.server.ledger().level(), target, "round {round}");
        pair.assert_quiescent_ledgers();
    }
    for request in expected {
        assert_eq!(pair.completion(request), (Status::Success, 4096));
    }
    assert_ne!(start, pair.client.ledger().level());
}

#[test]
fn revoke_while_all_credits_are_in_use_waits_for_completions() {
    let mut pair = Pair::connected();
    let key = pair.open_file(pattern(1 << 16, 4), OpenFlags::READ);
    let handle = pair.register(key);
    pair.server.set_credit_target(4).unwrap();
    pair.drive();
    let reads: Vec<_> = (0..4)
        .map(|i| {
            pair.read(handle, i * 4096, 4096, CompletionMode::Interrupt)
                .0
        })
        .collect();
    pair.client_transmit();
    assert_eq!(pair.client.ledger().in_use(), 4);
    // Deliver the reads but hold the server's work: the revoke arrives while
    // every credit is busy.
    pair.server.set_credit_target(1).unwrap();
    pair.drive();
    for request in reads {
        assert_eq!(pair.completion(request).0, Status::Success);
    }
    assert_eq!(pair.client.ledger().level(), 1);
    pair.assert_quiescent_ledgers();
}

#[test]
fn cancel_queued_sent_and_streaming_requests() {
    let mut pair = Pair::connected();
    let key = pair.open_file(pattern(1 << 20, 4), OpenFlags::READ | OpenFlags::WRITE);
    let handle = pair.register(key);

    // Not yet sent: completes Cancelled locally, no message.
    let (queued, _) = pair.read(handle, 0, 4096, CompletionMode::Interrupt);
    pair.client.cancel(queued).unwrap();
    pair.drive();
    assert_eq!(pair.completion(queued), (Status::Cancelled, 0));

    // Sent but queued at the server (events not yet polled): cancelled there.
    let (sent, _) = pair.read(handle, 0, 4096, CompletionMode::Interrupt);
    pair.client_transmit();
    let msg = pair.c2s.pop_front().unwrap();
    assert!(
        pair.server
            .handle_message(pair.now, &msg)
            .unwrap()
            .is_none()
    );
    pair.client.cancel(sent).unwrap();
    pair.drive();
    assert_eq!(pair.completion(sent), (Status::Cancelled, 0));

    // A streaming write: cancelled after its first fragment.
    let write = pair.write(handle, 0, pattern(512 * 1024, 1), CompletionMode::Polling);
    pair.server.set_credit_target(1).unwrap();
    pair.drive();
    let write2 = pair.write(handle, 0, pattern(512 * 1024, 2), CompletionMode::Polling);
    pair.client_transmit(); // one fragment (one credit)
    pair.client.cancel(write2).unwrap();
    pair.drive();
    assert_eq!(pair.completion(write).0, Status::Success);
    let (status, bytes) = pair.completion(write2);
    assert_eq!(status, Status::Cancelled);
    assert!(bytes < 512 * 1024);
    // Cancelling a finished request is refused.
    assert!(pair.client.cancel(write).is_err());
    pair.assert_quiescent_ledgers();
}

/// Issue #16: the driver finishes a file at the client's close (an upload
/// takes its name then); a file it cannot finish fails the close with the
/// driver's status instead of being acknowledged, and the handle is gone
/// either way, its credit returned.
#[test]
fn a_close_the_driver_cannot_finish_completes_with_its_status() {
    let mut pair = Pair::connected();
    pair.close_result = Err(Status::NoSpace);
    let key = pair.open_file(Vec::new(), OpenFlags::WRITE | OpenFlags::TRUNCATE);
    let handle = pair.register(key);
    let close = pair.client.close(handle).unwrap();
    pair.drive();
    assert_eq!(pair.completion(close), (Status::NoSpace, 0));
    assert_eq!(pair.closed_files.len(), 1);
    let close_again = pair.client.close(handle).unwrap();
    pair.drive();
    assert_eq!(pair.completion(close_again).0, Status::InvalidHandle);
    pair.assert_quiescent_ledgers();
}

#[test]
fn close_ends_queued_io_and_invalidates_the_handle() {
    let mut pair = Pair::connected();
    let key = pair.open_file(pattern(8192, 4), OpenFlags::READ);
    let handle = pair.register(key);
    let (read, _) = pair.read(handle, 0, 4096, CompletionMode::Interrupt);
    let close = pair.client.close(handle).unwrap();
    // Deliver both before the server's driver looks at its events.
    pair.client_transmit();
    while let Some(msg) = pair.c2s.pop_front() {
        pair.server.handle_message(pair.now, &msg).unwrap();
    }
    pair.drive();
    assert_eq!(pair.completion(read), (Status::Closed, 0));
    assert_eq!(pair.completion(close), (Status::Success, 0));
    assert_eq!(pair.closed_files.len(), 1);
    let (after, _) = pair.read(handle, 0, 10, CompletionMode::Interrupt);
    let close_again = pair.client.close(handle).unwrap();
    pair.drive();
    assert_eq!(pair.completion(after).0, Status::InvalidHandle);
    assert_eq!(pair.completion(close_again).0, Status::InvalidHandle);
    pair.assert_quiescent_ledgers();
}

#[test]
fn access_rights_and_unknown_keys_are_statuses_not_crashes() {
    let mut pair = Pair::connected();
    let key = pair.open_file(pattern(100, 4), OpenFlags::READ);
    let handle = pair.register(key);
    let write = pair.write(handle, 0, pattern(100_000, 1), CompletionMode::Interrupt);
    pair.drive();
    assert_eq!(pair.completion(write), (Status::AccessDenied, 0));
    assert_eq!(
        pair.files.values().next().unwrap(),
        &pattern(100, 4),
        "nothing written"
    );
    // A resume key is single use.
    let again = pair.client.register(key).unwrap();
    pair.drive();
    assert!(matches!(
        pair.take_event(again),
        ClientEvent::Registered {
            result: Err(Status::UnknownResumeKey),
            ..
        }
    ));
    let (bogus, _) = pair.read(777, 0, 10, CompletionMode::Polling);
    pair.drive();
    assert_eq!(pair.completion(bogus).0, Status::InvalidHandle);
    pair.assert_quiescent_ledgers();
}

#[test]
fn polling_client_gets_interrupt_response_by_send() {
    let mut pair = Pair::connected();
    let key = pair.open_file(pattern(8192, 4), OpenFlags::READ);
    let handle = pair.register(key);
    let (read, _) = pair.read(handle, 0, 4096, CompletionMode::Polling);
    let interrupt = pair.client.request_interrupt().unwrap();
    pair.client_transmit();
    // The server holds the interrupt request until a completion happens.
    let before = pair.sends_s2c;
    while let Some(msg) = pair.c2s.pop_front() {
        pair.server.handle_message(pair.now, &msg).unwrap();
    }
    pair.server_transmit();
    assert_eq!(
        pair.sends_s2c, before,
        "no interrupt response before the completion"
    );
    pair.drive();
    assert_eq!(pair.completion(read).0, Status::Success);
    assert!(matches!(
        pair.take_event(interrupt),
        ClientEvent::Interrupted { .. }
    ));
    assert_eq!(
        pair.sends_s2c,
        before + 1,
        "the interrupt response is an ordinary send"
    );
    // With nothing in flight it is answered at once.
    let idle = pair.client.request_interrupt().unwrap();
    pair.drive();
    assert!(matches!(
        pair.take_event(idle),
        ClientEvent::Interrupted { .. }
    ));
    pair.assert_quiescent_ledgers();
}

#[test]
fn orderly_close_completes_outstanding_requests_once() {
    let mut pair = Pair::connected();
    let key = pair.open_file(pattern(8192, 4), OpenFlags::READ);
    let handle = pair.register(key);
    let (read, _) = pair.read(handle, 0, 4096, CompletionMode::Interrupt);
    pair.client.close_connection();
    pair.drive();
    assert_eq!(pair.completion(read).0, Status::Closed);
    assert!(matches!(
        pair.events.pop(),
        Some(ClientEvent::Terminated { .. })
    ));
    assert!(pair.events.is_empty());
    assert!(pair.server.is_closed());
    assert!(pair.server_terminated.is_some());
    assert!(
        pair.client
            .read(
                handle,
                0,
                rdio_core::wire::BufferDescriptor::new(0, 1, 1),
                pair.memory.alloc(24),
                CompletionMode::Interrupt
            )
            .is_err()
    );
}

/// The server's own reason to end a connection (`serve --idle-timeout`):
/// `close_connection_with(IdleTimeout)` sends `Terminate(IdleTimeout)`, the
/// client learns that reason, and the server's driver is told the same.
#[test]
fn a_server_close_with_a_status_reaches_the_client_as_that_reason() {
    let mut pair = Pair::connected();
    pair.server.close_connection_with(Status::IdleTimeout);
    pair.drive();
    assert!(pair.server.is_closed());
    assert_eq!(
        pair.server_terminated,
        Some(rdio_core::Violation::PeerTerminated(Status::IdleTimeout))
    );
    assert!(
        matches!(
            pair.events.pop(),
            Some(ClientEvent::Terminated {
                reason: rdio_core::Violation::PeerTerminated(Status::IdleTimeout)
            })
        ),
        "{:?}",
        pair.events
    );
    assert!(pair.client.is_closed());
    // Once closed, another close changes nothing.
    pair.server.close_connection_with(Status::Shutdown);
    assert_eq!(
        pair.server_terminated,
        Some(rdio_core::Violation::PeerTerminated(Status::IdleTimeout))
    );
}
