//! The cores' counters (`rdio_core::stats`) after a scripted session over the
//! stepped pair: a grant, a revoke, requests that wait for a credit, a
//! keepalive — exact values on both sides.

use rdio_core::client::CompletionMode;
use rdio_core::wire::{OpenFlags, Status};
use rdio_proptests::pair::Pair;
use std::time::Duration;

#[test]
fn core_counters_follow_a_scripted_session_exactly() {
    let mut pair = Pair::connected();
    let start = pair.client.ledger().level();
    let key = pair.open_file(vec![7; 4096], OpenFlags::READ);
    let handle = pair.register(key);

    // Revoke down to 1, grant 4, revoke down to 1 again.
    pair.server.set_credit_target(1).unwrap();
    pair.drive();
    pair.server.set_credit_target(5).unwrap();
    pair.drive();
    assert_eq!(pair.client.ledger().level(), 5);
    pair.server.set_credit_target(1).unwrap();
    pair.drive();
    assert_eq!(pair.client.ledger().level(), 1);
    for stats in [pair.client.stats(), pair.server.stats()] {
        assert_eq!(stats.credits_granted, 4);
        assert_eq!(stats.credits_revoked, u64::from(start - 1) + 4);
    }

    // Three reads on one credit: the first goes, the second and third each
    // wait at the head of the queue once, however often the client polls.
    let reads: Vec<_> = (0..3)
        .map(|i| pair.read(handle, i * 100, 100, CompletionMode::Interrupt).0)
        .collect();
    for _ in 0..3 {
        pair.client_transmit();
    }
    assert_eq!(pair.client.waits_for_credit(), 1);
    pair.drive();
    for read in reads {
        assert_eq!(pair.completion(read).0, Status::Success);
    }
    assert_eq!(pair.client.waits_for_credit(), 2);
    assert_eq!(pair.client.stats().credit_waits, 2);
    assert_eq!(pair.server.stats().credit_waits, 0);

    // Idle for a keepalive interval: one keepalive, answered.
    pair.advance(Duration::from_secs(20));
    pair.drive();
    let (client, server) = (pair.client.stats(), pair.server.stats());
    assert_eq!((client.keepalives, client.keepalives_answered), (1, 1));
    assert_eq!((server.keepalives, server.keepalives_answered), (1, 1));
    pair.assert_quiescent_ledgers();
}
