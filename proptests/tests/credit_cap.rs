//! `serve --max-credits`: the credits a client holds never exceed the
//! server's cap (`ServerConfig::max_credits`), whatever the client asks for
//! at negotiation, whatever the server starts it with, and under any
//! sequence of credit targets (grants and revokes, including targets
//! beyond the cap, which are refused), requests and deliveries, run on the
//! real client and server state machines.
//!
//! `PROPTEST_CASES` sets the number of cases (default 2,000).

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::Config;
use rdio_core::ApiError;
use rdio_core::client::{ClientConfig, CompletionMode};
use rdio_core::server::ServerConfig;
use rdio_core::wire::OpenFlags;
use rdio_proptests::pair::{Pair, providers};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

#[derive(Clone, Debug)]
enum Action {
    /// The server's credit policy steers toward this many credits.
    Target(u16),
    /// The client reads this many bytes (queued in the client without a
    /// credit to send it on).
    Read(u16),
    /// One round of deliveries each way.
    Step,
    /// Everything delivered until both sides are quiet.
    Drive,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => (0u16..=130).prop_map(Action::Target),
        4 => (1u16..=2048).prop_map(Action::Read),
        4 => Just(Action::Step),
        1 => Just(Action::Drive),
    ]
}

/// What the cap promises, checked after every action.
fn check(pair: &Pair, cap: u16, asked: u16, context: &str) {
    let client = pair.client.ledger();
    let server = pair.server.ledger();
    assert!(
        client.level() <= cap && server.level() <= cap,
        "{context}: client holds {}, server granted {}, cap {cap}",
        client.level(),
        server.level()
    );
    assert!(
        client.level() <= asked,
        "{context}: client holds {} but asked for at most {asked}",
        client.level()
    );
    assert!(
        client.in_use() <= client.level(),
        "{context}: {} credits in use of {}",
        client.in_use(),
        client.level()
    );
}

proptest! {
    #![proptest_config(Config {
        cases: cases(),
        ..Config::default()
    })]

    #[test]
    fn credits_held_by_a_client_never_exceed_the_cap(
        cap in 1u16..=64,
        initial in 0u16..=100,
        asked in 1u16..=200,
        actions in vec(action(), 1..80),
    ) {
        let server_config = ServerConfig {
            max_credits: cap,
            initial_credits: initial,
            max_send_size: 4096,
            ..ServerConfig::default()
        };
        let client_config = ClientConfig {
            providers: providers(&["loopback"]),
            max_credits: asked,
            max_send_size: 4096,
            ..ClientConfig::default()
        };
        let mut pair = Pair::new(server_config, client_config).authenticated();
        // Negotiation: the grant is the initial level, within the cap and
        // what the client asked for, and at least one credit.
        let granted = pair.client.ledger().level();
        prop_assert_eq!(granted, initial.clamp(1, cap.min(asked)));
        check(&pair, cap, asked, "after authentication");
        let key = pair.open_file(vec![7; 4096], OpenFlags::READ);
        let handle = pair.register(key);
        for (index, action) in actions.iter().enumerate() {
            match *action {
                Action::Target(target) => {
                    let result = pair.server.set_credit_target(target);
                    if target > cap || target > asked {
                        prop_assert_eq!(result, Err(ApiError::CreditsBusy), "target {}", target);
                    }
                }
                Action::Read(len) => {
                    let dest = pair.memory.alloc(usize::from(len));
                    let status = pair.status_desc();
                    if let Ok(request) =
                        pair.client
                            .read(handle, 0, dest, status, CompletionMode::Interrupt)
                    {
                        pair.track(request, status, CompletionMode::Interrupt);
                    }
                }
                Action::Step => {
                    pair.step();
                }
                Action::Drive => pair.drive(),
            }
            check(&pair, cap, asked, &format!("after action {index} ({action:?})"));
        }
        pair.drive();
        check(&pair, cap, asked, "at the end");
        prop_assert!(pair.server.is_open(), "the connection ended: {:?}", pair.server_terminated);
        prop_assert!(pair.anomalies.is_empty(), "{:?}", pair.anomalies);
    }
}
