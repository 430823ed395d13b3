//! The server's per-connection metric cells and the client's counters after
//! a scripted session over the embedded pair (server on threads of its
//! own): exact credit grants and revokes, completions and latency histogram
//! counts by kind and size class, and the connection's own series, present
//! while it is live and folded into the totals once it ends.

use rdio::embedded::{Embedded, EmbeddedOptions, Threads};
use rdio::stats::{REQUEST_KINDS, SIZE_CLASSES, size_class};
use rdio_core::client::CompletionMode;
use rdio_core::wire::{OpenFlags, Status};

const RWC: OpenFlags = OpenFlags::READ
    .union(OpenFlags::WRITE)
    .union(OpenFlags::CREATE);

fn kind(name: &str) -> usize {
    REQUEST_KINDS.iter().position(|k| *k == name).expect("kind")
}

#[test]
fn cells_count_a_scripted_session_and_fold_into_the_totals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut options = EmbeddedOptions::default();
    options.client.mode = CompletionMode::Interrupt;
    let mut pair: Embedded<Threads> = Embedded::start(dir.path(), options).expect("start");
    let initial = pair.client.credits();
    assert!(initial > 2, "starts with {initial} credits");

    // Live: the connection has its own series, numbered 1. Its thread
    // stores the credit gauge at the end of the round that answered the
    // authentication, which may end after the client saw the answer:
    // wait for it, as for the counters below.
    let settled = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let live = loop {
        let live = pair.server().stats().live;
        if live
            .first()
            .is_some_and(|(_, cell)| cell.credits == u64::from(initial))
            || std::time::Instant::now() > settled
        {
            break live;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    };
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].0, 1);
    assert_eq!(live[0].1.credits, u64::from(initial));

    let file = pair.client.open("m", RWC).expect("open");
    // Revoke to 2, then grant back: the revoke is applied as the client
    // gives credits up, the grant as it acknowledges.
    assert!(pair.control().set_credit_target(2));
    let data = vec![3u8; 64 << 10];
    pair.client.write_at(&file, 0, &data).expect("write");
    assert_eq!(pair.client.credits(), 2);
    assert!(pair.control().set_credit_target(initial));
    let mut back = vec![0u8; 64 << 10];
    assert_eq!(
        pair.client.read_at(&file, 0, &mut back).expect("read"),
        back.len()
    );
    let mut tail = vec![0u8; 100];
    assert_eq!(
        pair.client
            .read_at(&file, 64 << 10, &mut tail)
            .expect("eof"),
        0
    );
    assert_eq!(pair.client.credits(), initial, "the grant was applied");

    let client = pair.client.stats().clone();
    assert_eq!(client.connection.credits_revoked, u64::from(initial - 2));
    assert_eq!(client.connection.credits_granted, u64::from(initial - 2));
    assert_eq!(client.latency[kind("write")][size_class(64 << 10)].count, 1);
    assert_eq!(client.latency[kind("read")][size_class(64 << 10)].count, 1);
    assert_eq!(client.latency[kind("read")][size_class(100)].count, 1);
    assert_eq!(client.latency_of("read").count, 2);
    assert_eq!(client.latency_of("readv").count, 0);
    assert_eq!(
        (client.dead_peer, client.violations.iter().sum::<u64>()),
        (0, 0)
    );

    // The server's view, while the connection is live: the cell alone.
    // Its thread folds the core's counters into the cell after the round
    // that answered the last read, which may end after the client saw the
    // answer: a scrape is eventually consistent, so wait for that round.
    let settled = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let stats = loop {
        let stats = pair.server().stats();
        let done = stats.live.first().is_some_and(|(_, cell)| {
            cell.core.credits_granted == u64::from(initial - 2)
                && cell.completions[Status::EndOfFile.as_u32() as usize] == 1
        });
        if done || std::time::Instant::now() > settled {
            break stats;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    };
    let (id, cell) = &stats.live[0];
    assert_eq!(*id, 1);
    assert_eq!(cell.core.credits_revoked, u64::from(initial - 2));
    assert_eq!(cell.core.credits_granted, u64::from(initial - 2));
    assert_eq!(cell.credits, u64::from(initial));
    assert_eq!(cell.bytes_written, 64 << 10);
    assert_eq!(cell.bytes_read, 64 << 10);
    assert_eq!(cell.completions[Status::Success.as_u32() as usize], 2);
    assert_eq!(cell.completions[Status::EndOfFile.as_u32() as usize], 1);
    for (name, size, count) in [
        ("write", 64 << 10, 1),
        ("read", 64 << 10, 1),
        ("read", 100, 1),
    ] {
        let histogram = cell.latency[kind(name)][size_class(size)];
        assert_eq!(
            histogram.count,
            count,
            "{name} {}",
            SIZE_CLASSES[size_class(size)]
        );
        assert_eq!(histogram.buckets.iter().sum::<u64>(), count);
    }
    assert_eq!(
        stats.totals, *cell,
        "one live connection: the totals are its own"
    );

    pair.client.close(file).expect("close");
    let server = std::sync::Arc::clone(pair.server());
    let before_end = server.stats().totals;
    pair.finish().expect("finish");

    // Ended: no live series; the totals keep every count (the gauges drop
    // to zero with the connection).
    let stats = server.stats();
    assert!(stats.live.is_empty(), "{:?}", stats.live);
    assert_eq!((stats.connections, stats.active), (1, 0));
    let mut expected = before_end;
    expected.credits = 0;
    expected.credits_in_use = 0;
    assert_eq!(stats.totals, expected);
    assert_eq!(stats.ends[0], 1, "shutdown");
    assert_eq!(stats.violations.iter().sum::<u64>(), 0);
}

/// A connection its owner drops without running it to an end leaves the
/// live series and the active count, with no end reason counted.
#[test]
fn a_connection_dropped_unrun_leaves_the_live_series() {
    let dir = tempfile::tempdir().expect("tempdir");
    let provider = rdio_core::wire::ProviderName::new("loopback").expect("provider");
    let server = rdio::server::Server::new(
        rdio::files::Root::new(dir.path()).expect("root"),
        rdio::server::ServerOptions::new(provider, b"loopback"),
    );
    let (_client_end, server_end) = rdio_loopback::sync_pair(rdio_loopback::Config::default());
    let connection = server.accept(server_end).expect("accept");
    let stats = server.stats();
    assert_eq!(
        (stats.connections, stats.active, stats.live.len()),
        (1, 1, 1)
    );
    drop(connection);
    let stats = server.stats();
    assert_eq!(
        (stats.connections, stats.active, stats.live.len()),
        (1, 0, 0)
    );
    assert_eq!(stats.ends.iter().sum::<u64>(), 0);
}
