//! The credit accounting model test: arbitrary interleavings of server
//! credit targets (grants and revokes), client requests of every kind in
//! both completion modes, cancels, closes and interrupt requests, with every
//! queue held and released in proptest-chosen orders, run on the real client
//! and server state machines and checked against
//! [`rdio_proptests::credit_model`] after every step (see
//! [`rdio_proptests::session`] for the full list of checks).
//!
//! `PROPTEST_CASES` sets the number of cases (default 10,000).

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use rdio_proptests::session::{Action, Limits, Session, Stats, strategies};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

fn limits() -> Limits {
    Limits {
        max_io: 2500,
        ..Limits::default()
    }
}

fn run(actions: &[Action]) -> Stats {
    let mut session = Session::new(limits());
    for action in actions {
        session.apply(action);
    }
    session.finish()
}

proptest! {
    #![proptest_config(Config {
        cases: cases(),
        ..Config::default()
    })]

    #[test]
    fn credit_accounting_matches_the_model(actions in strategies::credit_actions(60)) {
        run(&actions);
    }
}

/// The generator reaches what the property is about: grants, revokes that
/// need give-ups, cancelled requests.
#[test]
fn sessions_exercise_grants_revokes_and_cancels() {
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let strategy = strategies::credit_actions(60);
    let mut totals = Stats::default();
    for _ in 0..300 {
        let actions = strategy.new_tree(&mut runner).unwrap().current();
        let stats = run(&actions);
        totals.grants += stats.grants;
        totals.revokes += stats.revokes;
        totals.give_ups += stats.give_ups;
        totals.completed += stats.completed;
        totals.cancelled += stats.cancelled;
    }
    assert!(totals.grants > 50, "{totals:?}");
    assert!(totals.revokes > 50, "{totals:?}");
    assert!(totals.give_ups > totals.revokes, "{totals:?}");
    assert!(totals.cancelled > 10, "{totals:?}");
    assert!(totals.completed > 1000, "{totals:?}");
}
