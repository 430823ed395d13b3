//! Arbitrary client API calls, credit targets, step orders, virtual time and
//! transport faults (lose, duplicate or corrupt a message, break the
//! connection) on the stepped pair (`rdio_proptests::session`): never a
//! panic, every request reported exactly once, and, when no fault was
//! injected, ledgers in agreement at quiescence and files equal to the model.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rdio_proptests::session::{Action, Limits, Session};

/// Longer sequences add little but time per run.
const MAX_ACTIONS: usize = 96;

fuzz_target!(|actions: Vec<Action>| {
    let mut session = Session::new(Limits::default());
    for action in actions.iter().take(MAX_ACTIONS) {
        session.apply(action);
    }
    session.finish();
});
