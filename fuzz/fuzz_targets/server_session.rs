//! A hostile client: arbitrary bytes, split into messages, fed to a server
//! `Connection` after a real discovery and authentication (two files
//! registered, one more opened on the pipe). Never a panic; everything the
//! server posts parses and goes the server's way; and while the connection
//! is open its ledger adds up after every message: credits in use equal the
//! credit-consuming messages it accepted minus the credits its posted sends
//! and status blocks returned, and never exceed its level; and the core
//! never refuses the completion of a read or write it handed the driver.
//!
//! Input: records of `[control, len_lo, len_hi, bytes...]`. Control bits 0-2
//! patch the header (length field, credits field = server level, version and
//! reserved) so the fuzzer reaches the state machine more often; bits 3-4
//! choose what the driver does next (run all events, hold them, run one,
//! advance time); bit 5 takes the message as rdio's server driver does
//! (`take_message`: a read handed over at once, status blocks returned by
//! `complete_io_into`), and with it bit 6 holds such a read in the
//! driver's hands across later messages (performed by a later "run all");
//! the session granted read batches, so a `ReadBatch` is served (its
//! reads handed over with `Received::Batch`, or queued);
//! `0xC0` set instead steers the credit target, or with bit 3 lets the
//! credit policy review the demands the messages stated.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rdio_core::Violation;
use rdio_core::wire::{Body, Message, OpenFlags, StatusBlock};
use rdio_proptests::pair::{Pair, ServerOutput};
use rdio_proptests::session::configs;
use std::time::Duration;

fn setup() -> Pair {
    let (server, mut client) = configs();
    // The session grants read batches, so `ReadBatch` reaches the state
    // machine (and its hand-over, `Received::Batch`), and credit demand,
    // so a header's demand reaches the credit policy.
    client.capabilities = rdio_core::wire::Capabilities::READ_BATCH
        .union(rdio_core::wire::Capabilities::CREDIT_DEMAND);
    let mut pair = Pair::new(server, client).authenticated();
    pair.max_file_len = 1 << 20;
    for (contents, flags) in [
        (vec![1; 4096], OpenFlags::READ | OpenFlags::WRITE),
        (vec![2; 100], OpenFlags::READ),
    ] {
        let key = pair.open_file(contents, flags);
        pair.register(key);
    }
    // Registrable by key [3; 16] (the pair's third key).
    pair.open_file(vec![3; 10], OpenFlags::READ | OpenFlags::WRITE);
    pair
}

/// Credits a posted output returns; it must parse and be the server's.
fn returned(output: &ServerOutput) -> u16 {
    match output {
        ServerOutput::Send(bytes) => {
            let msg = Message::parse(bytes).expect("server sent an unparsable message");
            assert!(
                msg.opcode().sent_by_server(),
                "server sent {:?}",
                msg.opcode()
            );
            msg.credits
        }
        ServerOutput::StatusBlock { block, .. } => {
            StatusBlock::parse(block)
                .expect("server wrote an unparsable status block")
                .expect("server wrote a status block without its valid word")
                .credits
        }
    }
}

/// Post everything the server has to send, and take what it posted at once
/// (status blocks returned by `complete_io_into`): the credits returned.
fn drain_outputs(pair: &mut Pair) -> u32 {
    let mut given_back = 0;
    while let Some(output) = pair.server_transmit_one() {
        given_back += u32::from(returned(&output));
    }
    for output in pair.posted.drain(..) {
        given_back += u32::from(returned(&output));
    }
    given_back
}

fuzz_target!(|data: &[u8]| {
    let mut pair = setup();
    let mut consumed: u32 = 0;
    let mut given_back: u32 = 0;
    let mut input = data;
    while let [control, lo, hi, rest @ ..] = input {
        let len = usize::from(u16::from_le_bytes([*lo, *hi])).min(rest.len());
        let (chunk, next) = rest.split_at(len);
        input = next;
        if control & 0xC0 == 0xC0 {
            if control & 8 != 0 {
                // The credit policy follows the demands the messages stated.
                pair.review_credits();
            } else {
                let _ = pair.server.set_credit_target(1 + u16::from(control & 7));
            }
        } else {
            let mut msg = chunk.to_vec();
            if msg.len() >= 16 {
                if control & 1 != 0 {
                    let payload = (msg.len() - 16) as u32;
                    msg[12..16].copy_from_slice(&payload.to_le_bytes());
                }
                if control & 2 != 0 {
                    let level = pair.server.ledger().level();
                    msg[4..6].copy_from_slice(&level.to_le_bytes());
                }
                if control & 4 != 0 {
                    msg[0] = 1;
                    msg[6..8].fill(0);
                }
            }
            let was_open = pair.server.is_open();
            pair.one_pass = control & 0x20 != 0;
            pair.defer_reads = pair.one_pass && control & 0x40 != 0;
            pair.c2s.push_back(msg.clone());
            pair.server_receive_one();
            if was_open && pair.server.is_open() {
                // Accepted: every message but a give-up (and terminate,
                // which closes) consumed a credit; a read batch one per read.
                consumed += match Message::parse(&msg).map(|m| m.body) {
                    Ok(Body::CreditGiveUp) => 0,
                    Ok(Body::ReadBatch(batch)) => batch.reads.len() as u32,
                    _ => 1,
                };
            }
            match (control >> 3) & 3 {
                0 => {
                    pair.server_events();
                }
                1 => {}
                2 => {
                    pair.server_event_one();
                }
                _ => pair.advance(Duration::from_millis(100 * len as u64)),
            }
        }
        given_back += drain_outputs(&mut pair);
        pair.s2c.clear();
        if pair.server.is_open() {
            let ledger = pair.server.ledger();
            assert!(ledger.in_use() <= ledger.level(), "{ledger:?}");
            assert_eq!(
                u32::from(ledger.in_use()) + given_back,
                consumed,
                "credits lost or duplicated: {ledger:?}"
            );
        }
    }
    pair.server_events();
    given_back += drain_outputs(&mut pair);
    if pair.server.is_open() {
        let ledger = pair.server.ledger();
        assert_eq!(
            u32::from(ledger.in_use()) + given_back,
            consumed,
            "credits lost or duplicated at the end: {ledger:?}"
        );
    }
    // Hostile input may make the driver write outside client memory (an
    // anomaly the pair records), but the core never refuses the completion
    // of a read or write it handed over while open: such work was lost.
    assert!(
        !pair.anomalies.iter().any(|a| a.starts_with("complete_io(")),
        "{:?}",
        pair.anomalies
    );
    assert_ne!(
        pair.server_terminated,
        Some(Violation::Capacity),
        "an internal bound overflowed"
    );
});
