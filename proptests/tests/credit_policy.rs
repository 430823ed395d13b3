//! The server's credit policy (`ServerConfig::credit_window`,
//! `Connection::review_credits`, `Capabilities::CREDIT_DEMAND`) over the
//! stepped pair: credits follow the demand the client's requests state,
//! and the receives a driver keeps posted (`Connection::receives_wanted`,
//! modelled by `Pair::server_receives`) follow the credits — a client send
//! never finds none.

use rdio_core::Violation;
use rdio_core::client::{ClientConfig, CompletionMode};
use rdio_core::server::ServerConfig;
use rdio_core::wire::{Capabilities, OpenFlags, Status, WireError};
use rdio_proptests::pair::{Pair, providers};
use std::time::Duration;

const WINDOW: Duration = Duration::from_millis(20);

/// A connected pair whose client states its demand, the server's policy
/// as configured in `server`.
fn demanding(server: ServerConfig) -> Pair {
    let client = ClientConfig {
        providers: providers(&["loopback"]),
        capabilities: Capabilities::CREDIT_DEMAND,
        ..ClientConfig::default()
    };
    Pair::new(server, client).authenticated()
}

/// `n` reads submitted at once, driven to completion, each checked.
fn reads_at_once(pair: &mut Pair, handle: u32, n: u64) {
    let reads: Vec<_> = (0..n)
        .map(|i| pair.read(handle, i * 64, 64, CompletionMode::Interrupt).0)
        .collect();
    pair.drive();
    for read in reads {
        assert_eq!(pair.completion(read).0, Status::Success);
    }
}

/// A window of `n` reads at a time, reviewed at its end, and driven.
fn window_at(pair: &mut Pair, handle: u32, n: u64) {
    reads_at_once(pair, handle, n);
    pair.advance(WINDOW);
    pair.review_credits();
    pair.drive();
}

#[test]
fn credits_and_posted_receives_follow_the_clients_demand() {
    let mut pair = demanding(ServerConfig::default());
    assert_eq!(
        pair.client.ledger().level(),
        64,
        "the default grants the maximum at once"
    );
    // The auth response went out with a receive posted for every credit,
    // one for a Terminate and one for the receive being handled.
    assert_eq!(pair.server_receives, 66);
    let key = pair.open_file(vec![7; 4096], OpenFlags::READ);
    let handle = pair.register(key);

    // One read at a time: within a window nothing changes...
    for _ in 0..5 {
        reads_at_once(&mut pair, handle, 1);
        pair.advance(Duration::from_millis(1));
        pair.review_credits();
        pair.drive();
    }
    assert_eq!(pair.client.ledger().level(), 64);
    // ...and at its end the client keeps twice its demand of one: two.
    pair.advance(WINDOW);
    assert!(pair.review_credits(), "a revoke started");
    assert_eq!(pair.server.credit_target(), 2);
    pair.drive();
    assert_eq!(pair.client.ledger().level(), 2);
    assert_eq!(pair.server.ledger().level(), 2);
    // Every give-up filled a receive that was not put back: four posted.
    assert_eq!(pair.server_receives, 4);
    assert_eq!(pair.server.receives_wanted(), 4);
    assert_eq!(pair.server.stats().credits_revoked, 62);

    // Still one at a time, windows later: the level stays.
    for _ in 0..3 {
        window_at(&mut pair, handle, 1);
    }
    assert_eq!(pair.client.ledger().level(), 2);
    assert_eq!(pair.server_receives, 4);

    // Ten at once: the second read to go states ten (one outstanding,
    // nine waiting); the next review grants up to twice that, with the
    // receives posted before the grant leaves.
    let reads: Vec<_> = (0..10)
        .map(|i| pair.read(handle, i * 64, 64, CompletionMode::Interrupt).0)
        .collect();
    pair.client_transmit();
    pair.server_receive();
    pair.review_credits();
    assert_eq!(pair.server.credit_target(), 20);
    pair.drive();
    for read in reads {
        assert_eq!(pair.completion(read).0, Status::Success);
    }
    assert_eq!(pair.client.ledger().level(), 20);
    assert_eq!(pair.server_receives, 22);
    assert_eq!(pair.server.stats().credits_granted, 18);

    // Four at a time is a fifth of 20: down to 8, where it is half, and
    // stays.
    for _ in 0..3 {
        window_at(&mut pair, handle, 4);
    }
    assert_eq!(pair.client.ledger().level(), 8);
    assert_eq!(pair.server_receives, 10);
    pair.assert_clean();
    pair.assert_quiescent_ledgers();
}

#[test]
fn the_policy_grants_no_more_than_the_drivers_target() {
    let mut pair = demanding(ServerConfig::default());
    let key = pair.open_file(vec![7; 4096], OpenFlags::READ);
    let handle = pair.register(key);
    pair.server.set_credit_target(8).unwrap();
    pair.drive();
    assert_eq!(pair.client.ledger().level(), 8);
    // Idle for a window: down to the floor of two.
    pair.advance(WINDOW);
    pair.review_credits();
    pair.drive();
    assert_eq!(pair.client.ledger().level(), 2);
    // Twelve wanted: back to the driver's 8, not 24 nor the session's 64.
    let reads: Vec<_> = (0..12)
        .map(|i| pair.read(handle, i * 64, 64, CompletionMode::Polling).0)
        .collect();
    pair.client_transmit();
    pair.server_receive();
    pair.review_credits();
    pair.drive();
    for read in reads {
        assert_eq!(pair.completion(read).0, Status::Success);
    }
    assert_eq!(pair.client.ledger().level(), 8);
    assert_eq!(pair.server_receives, 10);
    pair.assert_clean();
    pair.assert_quiescent_ledgers();
}

#[test]
fn without_a_window_or_the_capability_credits_stay() {
    let fixed = ServerConfig {
        credit_window: None,
        ..ServerConfig::default()
    };
    let mut pair = demanding(fixed);
    pair.advance(Duration::from_secs(1));
    pair.review_credits();
    pair.drive();
    assert_eq!(pair.client.ledger().level(), 64);
    assert_eq!(pair.server_receives, 66);
    pair.assert_clean();

    // A client that does not state its demand: nothing to follow.
    let mut pair = Pair::connected();
    pair.advance(Duration::from_secs(1));
    pair.review_credits();
    pair.drive();
    assert_eq!(pair.client.ledger().level(), 64);
    pair.assert_clean();
}

#[test]
fn a_demand_on_a_session_without_the_capability_is_malformed() {
    let mut pair = Pair::connected();
    let key = pair.open_file(vec![7; 4096], OpenFlags::READ);
    let handle = pair.register(key);
    pair.read(handle, 0, 64, CompletionMode::Interrupt);
    pair.client_transmit();
    let msg = pair.c2s.back_mut().expect("the read was sent");
    msg[6] = 3;
    pair.server_receive_one();
    assert_eq!(
        pair.server_error,
        Some(Violation::Malformed(WireError::ReservedNotZero))
    );
}

#[test]
fn a_credit_returned_before_its_receive_is_reposted_finds_one_posted() {
    // A driver answers a read it took (its status block returns the
    // credit) before it reposts the read's receive. A client at its level
    // may use that credit at once, and then send its Terminate: both must
    // find a receive.
    let mut pair = Pair::connected();
    let key = pair.open_file(vec![7; 4096], OpenFlags::READ);
    let handle = pair.register(key);
    pair.server.set_credit_target(2).unwrap();
    pair.drive();
    assert_eq!(pair.client.ledger().level(), 2);
    pair.one_pass = true;
    let reads: Vec<_> = (0..3)
        .map(|i| pair.read(handle, i * 64, 64, CompletionMode::Interrupt).0)
        .collect();
    pair.client_transmit();
    assert_eq!(pair.c2s.len(), 2, "two credits, two reads sent");
    // The server takes the first and answers it at once; before its next
    // step, the client takes the answer, sends the third read on the
    // credit it returned, and ends the connection.
    pair.server_receive_one();
    while pair.client_receive_one().is_some() {}
    pair.client_events();
    pair.client_transmit();
    pair.client.close_connection();
    pair.client_transmit();
    assert_eq!(
        pair.c2s.len(),
        3,
        "the second and third reads, and the Terminate"
    );
    pair.assert_clean();
    pair.drive();
    assert_eq!(pair.completion(reads[0]).0, Status::Success);
}
