//! Every peer violation terminates with a typed reason; liveness timers fire.

use rdio_core::client::{ClientConfig, ClientEvent, CompletionMode};
use rdio_core::server::{Connection, Registry, ServerConfig, ServerOffer, Transmit};
use rdio_core::wire::{
    AuthKey, Body, BufferDescriptor, Capabilities, Flags, Message, NegotiateRequest, OpenFlags,
    ReadRequest, Status, StatusBlock, WireError, WriteRequest,
};
use rdio_core::{Instant, Violation};
use rdio_proptests::pair::{Pair, providers};
use std::time::Duration;

fn forge(body: Body<'_>, credits: u16, request_id: u32) -> Vec<u8> {
    let msg = Message {
        flags: Flags::empty(),
        credits,
        demand: 0,
        request_id,
        body,
    };
    let mut buf = vec![0u8; msg.encoded_len()];
    msg.emit(&mut buf).unwrap();
    buf
}

fn read_body(handle: u32) -> Body<'static> {
    Body::Read(ReadRequest {
        handle,
        offset: 0,
        dest: BufferDescriptor::new(0, 1, 16),
        status: BufferDescriptor::new(0, 2, 24),
    })
}

/// Feed a forged client message to the server; expect termination.
fn server_rejects(pair: &mut Pair, bytes: &[u8], expected: Violation) {
    assert_eq!(pair.server.handle_message(pair.now, bytes), Err(expected));
    assert!(pair.server.is_closed());
    let mut buf = vec![0u8; 256];
    let mut saw_terminate = false;
    while let Some(t) = pair.server.poll_transmit(&mut buf).unwrap() {
        if let Transmit::Send { len } = t {
            if let Ok(Message {
                body: Body::Terminate { reason },
                ..
            }) = Message::parse(&buf[..len])
            {
                assert_eq!(reason, expected.wire_status());
                saw_terminate = true;
            }
        }
    }
    assert!(
        saw_terminate,
        "server did not send Terminate for {expected:?}"
    );
    pair.server_events();
    assert_eq!(pair.server_terminated, Some(expected));
}

/// Feed a forged server message to the client; expect termination and every
/// outstanding request completed.
fn client_rejects(pair: &mut Pair, bytes: &[u8], expected: Violation) {
    assert_eq!(pair.client.handle_message(pair.now, bytes), Err(expected));
    assert!(pair.client.is_closed());
    let events = client_events(pair);
    assert_eq!(
        events.last(),
        Some(&ClientEvent::Terminated { reason: expected })
    );
}

/// Every event the client has queued.
fn client_events(pair: &mut Pair) -> Vec<ClientEvent> {
    std::iter::from_fn(|| pair.client.poll_event()).collect()
}

/// An answer of the server's was lost: reads keep completing every 5 s
/// (the peer looks alive), and still the client ends the connection as
/// timed out within the 30 s dead-peer timeout of the lost answer.
fn reads_go_on_until_the_lost_answer_times_out(pair: &mut Pair, handle: u32) {
    let started = pair.now;
    let mut reads = 0;
    while pair.client.is_open() {
        assert!(
            pair.now.saturating_since(started) <= Duration::from_secs(31),
            "still open {:?} after the lost answer",
            pair.now.saturating_since(started)
        );
        let (request, _) = pair.read(handle, 0, 10, CompletionMode::Interrupt);
        pair.drive();
        if pair.client.is_open() {
            assert_eq!(pair.completion(request).0, Status::Success);
            reads += 1;
        }
        pair.advance(Duration::from_secs(5));
    }
    assert!(reads >= 5, "reads kept completing meanwhile ({reads})");
    assert_eq!(
        client_events(pair),
        vec![ClientEvent::Terminated {
            reason: Violation::TimedOut
        }]
    );
}

#[test]
fn wrong_authentication_key_is_refused() {
    let mut pair = Pair::default_pair();
    // Hand the server a different key than the negotiated one.
    let forged = forge(
        Body::AuthRequest {
            key: AuthKey([0x55; 16]),
        },
        32,
        0,
    );
    pair.server.handle_message(pair.now, &forged).unwrap();
    pair.server_events();
    assert!(pair.server.is_closed());
    assert_eq!(pair.server_terminated, Some(Violation::AuthFailed));
    // The client learns why: auth response AuthFailed, then Terminate.
    pair.server_transmit();
    pair.client_transmit(); // its own (unused) auth request
    pair.client_receive();
    assert!(pair.client.is_closed());
    assert!(matches!(
        pair.events.last(),
        Some(ClientEvent::Terminated {
            reason: Violation::AuthFailed
        })
    ));
}

#[test]
fn authentication_key_is_single_use() {
    let mut pair = Pair::connected();
    let key = pair.client.negotiated().auth_key;
    let mut second: Connection<8, 4> = Connection::new(ServerConfig::default(), pair.now);
    second
        .handle_message(pair.now, &forge(Body::AuthRequest { key }, 32, 0))
        .unwrap();
    assert!(matches!(
        second.poll_event(),
        Some(rdio_core::server::ServerEvent::Authenticate { .. })
    ));
    assert!(
        pair.registry.redeem_auth(pair.now, &key).is_err(),
        "replayed key accepted"
    );
}

#[test]
fn requests_before_authentication_terminate() {
    let mut pair = Pair::default_pair();
    server_rejects(
        &mut pair,
        &forge(read_body(1), 32, 5),
        Violation::UnexpectedMessage(rdio_core::wire::Opcode::Read),
    );
}

#[test]
fn credit_overrun_and_mismatch_terminate() {
    let mut pair = Pair::connected();
    pair.server.set_credit_target(2).unwrap();
    pair.drive();
    assert_eq!(pair.client.ledger().level(), 2);
    // Two registrations stay unanswered until the driver resolves them; a
    // third message overruns the two credits.
    let register = |n| Body::RegisterFile {
        key: rdio_core::wire::ResumeKey([n; 16]),
    };
    pair.server
        .handle_message(pair.now, &forge(register(1), 2, 100))
        .unwrap();
    pair.server
        .handle_message(pair.now, &forge(register(2), 2, 101))
        .unwrap();
    server_rejects(
        &mut pair,
        &forge(Body::Keepalive, 2, 102),
        Violation::CreditOverrun,
    );

    let mut pair = Pair::connected();
    let level = pair.client.ledger().level();
    server_rejects(
        &mut pair,
        &forge(Body::Keepalive, level + 1, 100),
        Violation::CreditMismatch {
            expected: level,
            found: level + 1,
        },
    );
}

#[test]
fn duplicate_and_unknown_request_ids_terminate() {
    let mut pair = Pair::connected();
    let level = pair.client.ledger().level();
    let key = pair.open_file(vec![1; 10], OpenFlags::READ);
    let _ = key;
    pair.server
        .handle_message(pair.now, &forge(Body::Close { handle: 9 }, level, 7))
        .unwrap();
    // Close of an unknown handle is answered at once; a Register stays open.
    pair.server
        .handle_message(
            pair.now,
            &forge(
                Body::RegisterFile {
                    key: rdio_core::wire::ResumeKey([1; 16]),
                },
                level,
                8,
            ),
        )
        .unwrap();
    server_rejects(
        &mut pair,
        &forge(
            Body::RegisterFile {
                key: rdio_core::wire::ResumeKey([2; 16]),
            },
            level,
            8,
        ),
        Violation::DuplicateRequest(8),
    );

    let mut pair = Pair::connected();
    let level = pair.client.ledger().level();
    server_rejects(
        &mut pair,
        &forge(
            Body::WriteData {
                data_offset: 0,
                data: b"x",
            },
            level,
            77,
        ),
        Violation::UnknownRequest(77),
    );

    let mut pair = Pair::connected();
    client_rejects(
        &mut pair,
        &forge(Body::InterruptResponse, 1, 4242),
        Violation::UnknownRequest(4242),
    );
}

#[test]
fn write_fragments_out_of_order_terminate() {
    let mut pair = Pair::connected();
    let level = pair.client.ledger().level();
    let key = pair.open_file(Vec::new(), OpenFlags::WRITE);
    let handle = pair.register(key);
    let first = forge(
        Body::Write(WriteRequest {
            handle,
            offset: 0,
            total_len: 100,
            status: BufferDescriptor::new(0, 1, 24),
            data: &[1; 40],
        }),
        level,
        50,
    );
    let chunk = pair
        .server
        .handle_message(pair.now, &first)
        .unwrap()
        .unwrap();
    let op = chunk.op;
    pair.server.complete_io(op, Ok(40)).unwrap();
    server_rejects(
        &mut pair,
        &forge(
            Body::WriteData {
                data_offset: 41,
                data: &[2; 10],
            },
            level,
            50,
        ),
        Violation::FragmentOutOfOrder,
    );

    let mut pair = Pair::connected();
    let level = pair.client.ledger().level();
    let key = pair.open_file(Vec::new(), OpenFlags::WRITE);
    let handle = pair.register(key);
    let first = forge(
        Body::Write(WriteRequest {
            handle,
            offset: 0,
            total_len: 50,
            status: BufferDescriptor::new(0, 1, 24),
            data: &[1; 40],
        }),
        level,
        51,
    );
    pair.server.handle_message(pair.now, &first).unwrap();
    server_rejects(
        &mut pair,
        &forge(
            Body::WriteData {
                data_offset: 40,
                data: &[2; 20],
            },
            level,
            51,
        ),
        Violation::FragmentOutOfOrder,
    );
}

#[test]
fn malformed_and_misdirected_messages_terminate() {
    let mut pair = Pair::connected();
    let mut bytes = forge(Body::Keepalive, 1, 1);
    bytes.truncate(10);
    server_rejects(
        &mut pair,
        &bytes,
        Violation::Malformed(WireError::Truncated {
            required: 16,
            available: 10,
        }),
    );

    let mut pair = Pair::connected();
    server_rejects(
        &mut pair,
        &forge(
            Body::Completion {
                status: Status::Success,
                bytes: 0,
            },
            1,
            1,
        ),
        Violation::WrongDirection(rdio_core::wire::Opcode::Completion),
    );

    let mut pair = Pair::connected();
    client_rejects(
        &mut pair,
        &forge(read_body(1), 1, 1),
        Violation::WrongDirection(rdio_core::wire::Opcode::Read),
    );

    let mut pair = Pair::connected();
    let level = pair.client.ledger().level();
    let short_status = Body::Read(ReadRequest {
        handle: 1,
        offset: 0,
        dest: BufferDescriptor::new(0, 1, 16),
        status: BufferDescriptor::new(0, 2, 8),
    });
    server_rejects(
        &mut pair,
        &forge(short_status, level, 3),
        Violation::BadDescriptor,
    );

    let mut pair = Pair::connected();
    let level = pair.client.ledger().level();
    let huge = Body::Read(ReadRequest {
        handle: 1,
        offset: 0,
        dest: BufferDescriptor::new(0, 1, u32::MAX),
        status: BufferDescriptor::new(0, 2, 24),
    });
    server_rejects(&mut pair, &forge(huge, level, 3), Violation::TooLarge);
}

#[test]
fn hostile_credit_requests_terminate() {
    let mut pair = Pair::connected();
    client_rejects(
        &mut pair,
        &forge(Body::CreditRequest { delta: 1000 }, 0, 0),
        Violation::CreditRange,
    );
    let mut pair = Pair::connected();
    let level = pair.client.ledger().level();
    client_rejects(
        &mut pair,
        &forge(
            Body::CreditRequest {
                delta: -i32::from(level),
            },
            0,
            0,
        ),
        Violation::CreditRange,
    );
    // A second request while the first is unsettled (a revoke: the client
    // starts at its maximum).
    let mut pair = Pair::connected();
    pair.client
        .handle_message(pair.now, &forge(Body::CreditRequest { delta: -1 }, 0, 0))
        .unwrap();
    client_rejects(
        &mut pair,
        &forge(Body::CreditRequest { delta: -1 }, 0, 0),
        Violation::CreditSequence,
    );
    let mut pair = Pair::connected();
    client_rejects(
        &mut pair,
        &forge(Body::CreditResponse, 0, 0),
        Violation::CreditSequence,
    );
}

#[test]
fn forged_status_blocks_terminate() {
    let mut pair = Pair::connected();
    let key = pair.open_file(vec![7; 100], OpenFlags::READ);
    let handle = pair.register(key);
    let (request, _) = pair.read(handle, 0, 10, CompletionMode::Polling);
    pair.client_transmit();
    let unknown = StatusBlock {
        request_id: 999,
        status: Status::Success,
        bytes: 1,
        credits: 1,
    }
    .to_bytes();
    assert_eq!(
        pair.client.handle_status_block(pair.now, &unknown),
        Err(Violation::UnknownRequest(999))
    );
    // Its request still completes exactly once, with the termination status.
    let mut completions = 0;
    while let Some(e) = pair.client.poll_event() {
        if let ClientEvent::Completed {
            request: r, status, ..
        } = e
        {
            assert_eq!((r, status), (request, Status::ProtocolError));
            completions += 1;
        }
    }
    assert_eq!(completions, 1);

    let mut pair = Pair::connected();
    let key = pair.open_file(vec![7; 100], OpenFlags::READ);
    let handle = pair.register(key);
    let (request, _) = pair.read(handle, 0, 10, CompletionMode::Polling);
    pair.client_transmit();
    let too_many = StatusBlock {
        request_id: request.0,
        status: Status::Success,
        bytes: 11,
        credits: 1,
    }
    .to_bytes();
    assert_eq!(
        pair.client.handle_status_block(pair.now, &too_many),
        Err(Violation::BadDescriptor)
    );
    // An unwritten block is "keep polling", not an error.
    let mut pair = Pair::connected();
    assert_eq!(
        pair.client.handle_status_block(pair.now, &[0u8; 24]),
        Ok(false)
    );
}

#[test]
fn authentication_timeouts() {
    let mut pair = Pair::default_pair();
    assert!(pair.server.poll_timeout().is_some());
    pair.advance(Duration::from_secs(6));
    assert!(pair.server.is_closed());
    assert!(pair.client.is_closed());
    pair.server_events();
    assert_eq!(pair.server_terminated, Some(Violation::TimedOut));
    assert_eq!(
        client_events(&mut pair),
        vec![ClientEvent::Terminated {
            reason: Violation::TimedOut
        }]
    );
}

#[test]
fn idle_client_sends_keepalives_and_stays_alive() {
    let mut pair = Pair::connected();
    let sends = pair.sends_c2s;
    for _ in 0..10 {
        // The server's 20 s keepalive interval is well inside its 60 s idle timeout.
        let next = pair.client.poll_timeout().unwrap();
        let wait = next.saturating_since(pair.now);
        assert!(wait <= Duration::from_secs(20));
        pair.advance(wait);
        pair.drive();
    }
    assert!(pair.client.is_open() && pair.server.is_open());
    assert!(pair.sends_c2s >= sends + 10, "keepalives were sent");
    pair.assert_quiescent_ledgers();
    assert!(
        pair.events.is_empty(),
        "keepalives are internal: {:?}",
        pair.events
    );
}

#[test]
fn silent_server_is_detected_dead_and_silent_client_is_dropped() {
    let mut pair = Pair::connected();
    let key = pair.open_file(vec![7; 100], OpenFlags::READ);
    let handle = pair.register(key);
    let (request, _) = pair.read(handle, 0, 10, CompletionMode::Interrupt);
    pair.client_transmit();
    pair.c2s.clear(); // the server never hears it
    pair.advance(Duration::from_secs(31));
    assert!(pair.client.is_closed());
    pair.client_receive();
    assert_eq!(pair.completion(request).0, Status::TimedOut);

    // The server drops a client it has not heard from for its idle timeout.
    let client_config = ClientConfig {
        providers: providers(&["loopback"]),
        ..ClientConfig::default()
    };
    let mut pair = Pair::new(ServerConfig::default(), client_config);
    pair.drive();
    pair.now = pair.now.saturating_add(Duration::from_secs(61));
    pair.server.handle_timeout(pair.now);
    assert!(pair.server.is_closed());
    let _ = Instant::from_micros(0);
}

#[test]
fn a_lost_keepalive_answer_ends_the_connection_despite_other_traffic() {
    // An answer the server sent never arrives (no RC transport loses one,
    // but a lost credit must never go unnoticed): the keepalive's credit
    // would stay in use for ever while reads keep the peer looking alive.
    let mut pair = Pair::connected();
    let key = pair.open_file(vec![7; 100], OpenFlags::READ);
    let handle = pair.register(key);
    let next = pair.client.poll_timeout().unwrap();
    pair.advance(next.saturating_since(pair.now));
    assert!(pair.client_transmit(), "the idle client sends a keepalive");
    pair.server_receive();
    pair.server_events();
    pair.server_transmit();
    assert!(!pair.s2c.is_empty(), "the server answered");
    pair.s2c.clear(); // the answer is lost
    reads_go_on_until_the_lost_answer_times_out(&mut pair, handle);
}

#[test]
fn a_lost_credit_response_ends_the_connection_despite_other_traffic() {
    let mut pair = Pair::connected();
    let key = pair.open_file(vec![7; 100], OpenFlags::READ);
    let handle = pair.register(key);
    // Make room for a grant (a revoke, settled), then grant one back: the
    // client's acknowledgement takes a credit that only the server's
    // response returns.
    let level = pair.client.ledger().level();
    pair.server
        .set_credit_target(level - 1)
        .expect("revoke one");
    pair.drive();
    assert_eq!(pair.client.ledger().level(), level - 1);
    pair.server.set_credit_target(level).expect("grant one");
    pair.server_transmit();
    pair.client_receive();
    assert!(pair.client_transmit(), "the client acknowledges the grant");
    pair.server_receive();
    pair.server_transmit();
    assert!(
        !pair.s2c.is_empty(),
        "the server answered the acknowledgement"
    );
    pair.s2c.clear(); // the answer is lost
    reads_go_on_until_the_lost_answer_times_out(&mut pair, handle);
}

/// Issue #20, divergence 3: the auth request's header credits are checked
/// like every other client message's: they must be the level the
/// negotiate response gave the client.
#[test]
fn auth_request_credits_must_be_the_negotiated_level() {
    let mut pair = Pair::default_pair();
    let negotiated = pair.client.negotiated().clone();
    let forged = forge(
        Body::AuthRequest {
            key: negotiated.auth_key,
        },
        negotiated.credits - 1,
        0,
    );
    pair.server.handle_message(pair.now, &forged).unwrap();
    pair.server_events();
    assert!(pair.server.is_closed());
    let expected = Violation::CreditMismatch {
        expected: negotiated.credits,
        found: negotiated.credits - 1,
    };
    assert_eq!(pair.server_terminated, Some(expected));
    let mut buf = vec![0u8; 256];
    let mut replies = Vec::new();
    while let Some(Transmit::Send { len }) = pair.server.poll_transmit(&mut buf).unwrap() {
        replies.push(Message::parse(&buf[..len]).unwrap().opcode());
    }
    assert_eq!(replies, vec![rdio_core::wire::Opcode::Terminate]);

    // The right level authenticates.
    let mut pair = Pair::default_pair();
    let negotiated = pair.client.negotiated().clone();
    let forged = forge(
        Body::AuthRequest {
            key: negotiated.auth_key,
        },
        negotiated.credits,
        0,
    );
    pair.server.handle_message(pair.now, &forged).unwrap();
    pair.server_events();
    assert!(pair.server.is_open());
}

/// Issue #20, divergence 1: `1 ≤ initial ≤ requested` has no answer for a
/// request of 0 credits; the server refuses it with `InvalidParameter`
/// instead of granting 1.
#[test]
fn negotiating_zero_credits_is_refused() {
    let mut registry: Registry = Registry::new(ServerConfig::default(), Duration::from_secs(10));
    let (session, server_key) = registry.open_session([1; 16]).unwrap();
    let mut request = NegotiateRequest {
        server_key,
        min_version: 1,
        max_version: 1,
        credits_requested: 0,
        max_send_size: 4096,
        max_io_size: 1 << 20,
        providers: providers(&["loopback"]),
        capabilities: Capabilities::NONE,
    };
    let offer_providers = providers(&["loopback"]);
    let offer = ServerOffer {
        providers: &offer_providers,
        endpoint: b"mem:0",
    };
    let now = Instant::from_micros(0);
    let refused = registry.negotiate(now, session, &request, offer, [2; 16]);
    assert_eq!(refused.status, Status::InvalidParameter);
    assert_eq!(refused.credits, 0);
    assert!(refused.providers.is_empty() && refused.endpoint.is_empty());
    assert_eq!(refused.auth_key, AuthKey([0; 16]));

    request.credits_requested = 1;
    let granted = registry.negotiate(now, session, &request, offer, [2; 16]);
    assert_eq!((granted.status, granted.credits), (Status::Success, 1));
}

/// Issue #20: `max_send_size` bounds every message, header included; a
/// larger one terminates (`TooLarge`) even though the server's receive
/// buffers, sized by its own limit, could hold it.
#[test]
fn a_send_above_the_negotiated_size_terminates() {
    let client_config = ClientConfig {
        providers: providers(&["loopback"]),
        max_send_size: 4096,
        ..ClientConfig::default()
    };
    let mut pair = Pair::new(ServerConfig::default(), client_config.clone()).authenticated();
    assert_eq!(pair.client.negotiated().max_send_size, 4096);
    let level = pair.client.ledger().level();
    let data = vec![7u8; 4096 - 48 + 1];
    let write = |data: &[u8]| -> Vec<u8> {
        let body = Body::Write(WriteRequest {
            handle: 1,
            total_len: 8192,
            offset: 0,
            status: BufferDescriptor::new(0, 2, 24),
            data,
        });
        forge(body, level, 3)
    };
    assert_eq!(write(&data).len(), 4097);
    server_rejects(&mut pair, &write(&data), Violation::TooLarge);

    // Exactly the negotiated size is fine.
    let mut pair = Pair::new(ServerConfig::default(), client_config).authenticated();
    let bytes = write(&data[1..]);
    assert_eq!(bytes.len(), 4096);
    pair.server.handle_message(pair.now, &bytes).unwrap();
    assert!(pair.server.is_open());
}

/// Issue #20, capability negotiation: the response carries the
/// intersection of the client's bits and the server's; bits the server does
/// not know are ignored, not refused, and a refusal carries none.
#[test]
fn capabilities_are_intersected_and_unknown_bits_ignored() {
    let config = ServerConfig {
        capabilities: Capabilities(0b0110),
        ..ServerConfig::default()
    };
    let mut registry: Registry = Registry::new(config, Duration::from_secs(10));
    let (session, server_key) = registry.open_session([1; 16]).unwrap();
    let offer_providers = providers(&["loopback"]);
    let offer = ServerOffer {
        providers: &offer_providers,
        endpoint: b"mem:0",
    };
    let now = Instant::from_micros(0);
    let mut request = NegotiateRequest {
        server_key,
        min_version: 1,
        max_version: 1,
        credits_requested: 8,
        max_send_size: 4096,
        max_io_size: 1 << 20,
        providers: providers(&["loopback"]),
        // Bit 0 and bit 63 mean nothing to this server.
        capabilities: Capabilities(0x8000_0000_0000_0003),
    };
    let response = registry.negotiate(now, session, &request, offer, [2; 16]);
    assert_eq!(response.status, Status::Success);
    assert_eq!(response.capabilities, Capabilities(0b0010));

    request.providers = providers(&["verbs:roce"]);
    let refused = registry.negotiate(now, session, &request, offer, [3; 16]);
    assert_eq!(refused.status, Status::NoCommonProvider);
    assert_eq!(refused.capabilities, Capabilities::NONE);

    // The client keeps only bits it offered, whatever the server says.
    let client_config = ClientConfig {
        providers: providers(&["loopback"]),
        capabilities: Capabilities(0b0011),
        ..ClientConfig::default()
    };
    let mut forged = response.clone();
    forged.capabilities = Capabilities(u64::MAX);
    let negotiated = rdio_core::client::negotiated(&client_config, &forged).unwrap();
    assert_eq!(negotiated.capabilities, Capabilities(0b0011));
}

/// Issue #20: a message with an opcode the receiver does not know (an
/// extension that was not negotiated) terminates with reason
/// `UnknownOpcode` (36), on either side, before and after authentication.
#[test]
fn unknown_opcodes_terminate_with_their_own_reason() {
    let mut keepalive = forge(Body::Keepalive, 1, 1);
    keepalive[1] = 0x50;
    let expected = Violation::Malformed(WireError::UnknownOpcode(0x50));
    assert_eq!(expected.wire_status(), Status::UnknownOpcode);
    assert_eq!(Status::UnknownOpcode.as_u32(), 36);

    let mut pair = Pair::default_pair();
    server_rejects(&mut pair, &keepalive, expected);
    let mut pair = Pair::connected();
    server_rejects(&mut pair, &keepalive, expected);
    let mut pair = Pair::connected();
    client_rejects(&mut pair, &keepalive, expected);
}

#[test]
fn server_idle_deadline_is_its_timeout_after_the_last_message_heard() {
    let idle = ServerConfig::default().idle_timeout;
    let mut pair = Pair::connected();
    let key = pair.open_file(vec![7; 100], OpenFlags::READ);
    let handle = pair.register(key);
    // The registration was the last message the server heard, at `now`.
    assert_eq!(
        pair.server.poll_timeout(),
        Some(pair.now.saturating_add(idle))
    );

    // Ten seconds later a read arrives: the deadline moves with it.
    pair.now = pair.now.saturating_add(Duration::from_secs(10));
    let heard = pair.now;
    let (request, _) = pair.read(handle, 0, 10, CompletionMode::Interrupt);
    pair.client_transmit();
    assert!(pair.server_receive(), "the read arrives");
    pair.drive();
    assert_eq!(pair.completion(request).0, Status::Success);
    let deadline = heard.saturating_add(idle);
    assert_eq!(pair.server.poll_timeout(), Some(deadline));

    // Not a microsecond early; at the deadline, the connection ends.
    let just_before = Instant::from_micros(deadline.as_micros() - 1);
    pair.server.handle_timeout(just_before);
    assert!(pair.server.is_open());
    pair.server.handle_timeout(deadline);
    assert!(pair.server.is_closed());
    pair.server_events();
    assert_eq!(pair.server_terminated, Some(Violation::TimedOut));
    assert_eq!(pair.server.poll_timeout(), None, "no deadline once closed");
}
