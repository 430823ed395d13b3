//! The networked server and client in one process over cma (a process may
//! cross-memory-attach itself): real TCP side channel, the RDMA channel
//! through `process_vm_writev` and a Unix socket. The two-process tests
//! are the transport's (`transports/cma/tests`) and the CLI's.

use rdio::client::{ClientOptions, CompletionMode};
use rdio::files::Root;
use rdio::net::cma::{CmaConnector, CmaListener};
use rdio::net::{self, EventLog, NetEvent, NetServer};
use rdio::server::ServerOptions;
use rdio_core::wire::{OpenFlags, ProviderName};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod support;
use support::access::TestAccess;
use support::random_bytes;

const PIPE_TIMEOUT: Duration = Duration::from_secs(5);

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().expect("address")
}

fn cma() -> ProviderName {
    ProviderName::new("cma").expect("name")
}

#[test]
fn files_cross_over_cma_in_both_completion_modes_and_reads_are_zero_copy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(Mutex::new(Vec::new()));
    let lines = Arc::clone(&log);
    let events: EventLog = Arc::new(move |event: &NetEvent<'_>| {
        lines.lock().expect("log").push(event.to_string());
    });
    let listener = CmaListener::bind(localhost()).expect("cma listener");
    let server = NetServer::start(
        Root::new(dir.path()).expect("root"),
        localhost(),
        listener,
        ServerOptions::new(cma(), b""),
        TestAccess::shared().server(),
        events,
    )
    .expect("start");
    let seeded = random_bytes((3 << 20) + 17, 99);
    std::fs::write(dir.path().join("seeded"), &seeded).expect("seed file");
    for (mode, seed) in [(CompletionMode::Interrupt, 1), (CompletionMode::Polling, 2)] {
        let mut options = ClientOptions::new(cma());
        options.io_size = 256 * 1024;
        options.queue_depth = 4;
        options.mode = mode;
        let mut client = net::connect(
            server.pipe_addr(),
            options,
            PIPE_TIMEOUT,
            &CmaConnector::new().expect("connector"),
            &TestAccess::shared().client(),
        )
        .expect("connect");
        assert_eq!(client.provider(), "cma");
        let name = format!("file-{seed}");
        let data = random_bytes((1 << 20) + 1, seed);
        let flags = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
        let file = client.open(&name, flags).expect("create");
        client.write_at(&file, 0, &data).expect("write");
        let mut back = vec![0; data.len() + 10];
        let got = client.read_at(&file, 0, &mut back).expect("read");
        assert_eq!(&back[..got], &data[..], "{mode:?}");
        client.close(file).expect("close");
        assert_eq!(
            std::fs::read(dir.path().join(&name)).expect("on disk"),
            data
        );
        // A file opened read-only is served from its mapping.
        let before = server.server().read_counts();
        let file = client.open("seeded", OpenFlags::READ).expect("open");
        let mut back = vec![0; seeded.len()];
        let mut at = 0;
        while at < back.len() {
            let n = client
                .read_at(&file, at as u64, &mut back[at..])
                .expect("read seeded");
            assert!(n > 0);
            at += n;
        }
        assert_eq!(back, seeded, "{mode:?}");
        let after = server.server().read_counts();
        assert!(
            after.mapped > before.mapped,
            "zero-copy reads: {before:?} -> {after:?}"
        );
        client.close(file).expect("close");
        client.shutdown().expect("shutdown");
    }
    server.shutdown();
    let log = log.lock().expect("log");
    assert_eq!(
        log.iter().filter(|l| l.contains("(cma) ended")).count(),
        2,
        "{log:?}"
    );
}
