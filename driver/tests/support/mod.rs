//! Shared by the integration tests that run their scenarios over both
//! embedded modes (`end_to_end.rs`, `zero_copy.rs`).

/// Each scenario (a function generic over `rdio::embedded::Mode`) as a test
/// of its own in each mode: `threads::name` with the server on threads of
/// its own, `inline::name` with the server stepped by the client.
macro_rules! in_both_modes {
    ($($scenario:ident),* $(,)?) => {
        mod threads {
            $(#[test]
            fn $scenario() {
                super::$scenario::<rdio::embedded::Threads>();
            })*
        }
        mod inline {
            $(#[test]
            fn $scenario() {
                super::$scenario::<rdio::embedded::Inline>();
            })*
        }
    };
}
