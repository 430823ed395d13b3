//! A small exhaustive run in the test suite (debug build): the full CI runs
//! are `cargo run --release -p rdio-modelcheck` (see docs/MODEL.md).

use rdio_modelcheck::adapter::Submit;
use rdio_modelcheck::model::{Bounds, RdioModel};
use stateright::{Checker, Expectation, Model};

fn bounds(kinds: &[&str]) -> Bounds {
    Bounds {
        requests: 1,
        kinds: kinds.iter().filter_map(|k| Submit::from_name(k)).collect(),
        registers: 1,
        cancels: 1,
        grants: 0,
        revokes: 0,
        losses: 0,
        ticks: 0,
        pairs: 0,
    }
}

/// Every `always`/`eventually` property holds and every `sometimes` example
/// is reached, on one read or one fragmented write with a cancel.
#[test]
fn one_request_with_a_cancel_is_checked_exhaustively() {
    let model = RdioModel::new(bounds(&["read", "write-poll"]));
    let properties = model.properties();
    let checker = model.checker().spawn_bfs().join();
    assert!(checker.is_done());
    assert!(
        checker.unique_state_count() > 500,
        "explored only {} states",
        checker.unique_state_count()
    );
    for p in properties {
        let found = checker.discovery(p.name).is_some();
        match p.expectation {
            Expectation::Sometimes => assert!(found, "example never reached: {}", p.name),
            _ => assert!(!found, "counterexample for: {}", p.name),
        }
    }
}

/// The presets CI runs are well-formed: each names its kinds and credits.
#[test]
fn presets_are_complete() {
    let presets = RdioModel::presets();
    assert_eq!(
        presets.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        [
            "requests",
            "pipeline",
            "credits",
            "faults",
            "batches",
            "batch-credits"
        ]
    );
    for (name, model) in presets {
        assert!(!model.bounds.kinds.is_empty(), "{name} has no kinds");
        assert!(model.limits.initial_credits >= 1, "{name}");
        assert!(
            model.limits.initial_credits <= model.limits.max_credits,
            "{name}"
        );
    }
}

/// A read submitted through `Client::read_into`, a write through
/// `Client::write_into` (sent in the submitting call when it can go
/// first): the same properties and examples, and the same state space as
/// `read` and `write` — the fused call reaches exactly the states the
/// submission followed by `poll_transmit` reaches.
#[test]
fn a_request_sent_as_it_is_submitted_reaches_the_same_states() {
    let explore = |kind: &str| {
        let model = RdioModel::new(bounds(&[kind]));
        let properties = model.properties();
        let checker = model.checker().spawn_bfs().join();
        assert!(checker.is_done());
        for p in properties {
            let found = checker.discovery(p.name).is_some();
            match p.expectation {
                Expectation::Sometimes => {
                    assert!(found, "{kind}: example never reached: {}", p.name)
                }
                _ => assert!(!found, "{kind}: counterexample for: {}", p.name),
            }
        }
        checker.unique_state_count()
    };
    assert_eq!(explore("read-now"), explore("read"));
    assert_eq!(explore("read-now-poll"), explore("read-poll"));
    assert_eq!(explore("write-now"), explore("write"));
    assert_eq!(explore("write-now-poll"), explore("write-poll"));
}

/// Two reads submitted together on a session that negotiated read
/// batches: they go as one `ReadBatch` (interrupt or polled), the server's
/// driver takes them one by one or has the hand-over cut short, and every
/// property holds, the batch examples included.
#[test]
fn two_reads_submitted_together_go_as_a_batch() {
    let model = RdioModel::with_read_batches(Bounds {
        requests: 2,
        pairs: 1,
        ..bounds(&["read", "read-poll"])
    });
    let properties = model.properties();
    assert!(
        properties
            .iter()
            .any(|p| p.name.starts_with("a read batch's immediate")),
        "the batch property is checked"
    );
    let checker = model.checker().spawn_bfs().join();
    assert!(checker.is_done());
    for p in properties {
        let found = checker.discovery(p.name).is_some();
        match p.expectation {
            Expectation::Sometimes => assert!(found, "example never reached: {}", p.name),
            _ => assert!(!found, "counterexample for: {}", p.name),
        }
    }
}
