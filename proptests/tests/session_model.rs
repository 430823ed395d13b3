//! The session model test: arbitrary sequences of reads, writes (plain,
//! vectored, COLLAPSE), cancels, closes, registrations and interrupt
//! requests on registered, read-only, write-only and unregistered handles,
//! with the queues stepped in any order. Every request completes exactly
//! once (success, error or cancelled) with the status, byte count and data a
//! model of each file (`Vec<u8>`) predicts, and the files end equal to the
//! model (see [`rdio_proptests::session`]).

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use rdio_proptests::session::{Limits, Session, strategies};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

proptest! {
    #![proptest_config(Config { cases: cases(), ..Config::default() })]

    #[test]
    fn requests_complete_once_and_files_match_the_model(
        actions in strategies::session_actions(40)
    ) {
        let mut session = Session::new(Limits::default());
        for action in &actions {
            session.apply(action);
        }
        session.finish();
    }

    /// The same through the one-pass entry points (`take_message`,
    /// `complete_io_into`, `take_status_block`), reads performed at once
    /// and deferred.
    #[test]
    fn the_one_pass_path_completes_the_same(
        actions in strategies::session_actions(40),
        defer_reads in any::<bool>(),
    ) {
        let limits = Limits { one_pass: true, defer_reads, ..Limits::default() };
        let mut session = Session::new(limits);
        for action in &actions {
            session.apply(action);
        }
        session.finish();
    }

    /// The same with read batches: reads queued together go as one
    /// message, a credit each, their blocks with one immediate; through
    /// either entry points, reads performed at once or deferred.
    #[test]
    fn read_batches_complete_the_same(
        actions in strategies::session_actions(40),
        one_pass in any::<bool>(),
        defer_reads in any::<bool>(),
    ) {
        let limits = Limits { batches: true, one_pass, defer_reads, ..Limits::default() };
        let mut session = Session::new(limits);
        for action in &actions {
            session.apply(action);
        }
        session.finish();
    }

    /// Large writes fragment into many sends, single credits stream them.
    #[test]
    fn large_transfers_match_the_model(actions in strategies::session_actions(20)) {
        let limits = Limits { max_io: 20_000, span: 40_000, ..Limits::default() };
        let mut session = Session::new(limits);
        for action in &actions {
            session.apply(action);
        }
        session.finish();
    }
}

/// `read_batches_complete_the_same` explores batches: in a share of its
/// sessions the client sends some (reads queued together; 35 of these
/// 200 when written), so a change that stops batching shows here.
#[test]
fn the_batch_sessions_send_batches() {
    let mut runner = TestRunner::deterministic();
    let strategy = strategies::session_actions(40);
    let mut with_batches = 0;
    for _ in 0..200 {
        let actions = strategy.new_tree(&mut runner).expect("actions").current();
        let limits = Limits {
            batches: true,
            ..Limits::default()
        };
        let mut session = Session::new(limits);
        for action in &actions {
            session.apply(action);
        }
        if session.finish().read_batches > 0 {
            with_batches += 1;
        }
    }
    assert!(
        with_batches >= 20,
        "only {with_batches} of 200 sessions sent a read batch"
    );
}
