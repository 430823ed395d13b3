//! Shared by the integration tests: the scenarios run over both embedded
//! modes (`end_to_end.rs`, `zero_copy.rs`), and test data for the networked
//! ones (`net_*.rs`).

#[allow(dead_code)] // the embedded tests do not use it
pub mod access;

/// Each scenario (a function generic over `rdio::embedded::Mode`) as a test
/// of its own in each mode: `threads::name` with the server on threads of
/// its own, `inline::name` with the server stepped by the client.
#[allow(unused_macros)] // the networked tests use only the test data
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

/// Deterministic bytes that differ per seed (xorshift64).
#[allow(dead_code)] // a test crate that only runs scenarios does not use it
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}
