//! The per-client limits of a networked server (docs/SECURITY.md,
//! "Limits"): open files per client session (`TooManyOpenFiles`), credits
//! per RDMA connection, and the idle timeout (`IdleTimeout`), over fabric
//! and cma.

use rdio::client::{Client, ClientError, ClientOptions, CompletionMode, Operation};
use rdio::files::Root;
use rdio::net::cma::{CmaConnector, CmaListener};
use rdio::net::fabric::{FabricConnector, FabricListener};
use rdio::net::{self, EventLog, NetEvent, NetServer, RdmaConnector, RdmaListener};
use rdio::server::ServerOptions;
use rdio_core::wire::{OpenFlags, ProviderName, Status};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

mod support;
use support::access::TestAccess;
use support::random_bytes;

const PIPE_TIMEOUT: Duration = Duration::from_secs(5);

fn localhost() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A server with its event log lines.
struct Fixture {
    dir: tempfile::TempDir,
    server: NetServer,
    log: Arc<Mutex<Vec<String>>>,
    access: TestAccess,
    provider: &'static str,
}

fn serve(listener: impl RdmaListener, provider: &'static str, options: ServerOptions) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let access = TestAccess::new();
    let log = Arc::new(Mutex::new(Vec::new()));
    let lines = Arc::clone(&log);
    let events: EventLog = Arc::new(move |event: &NetEvent<'_>| {
        lines.lock().expect("log").push(event.to_string());
    });
    let server = NetServer::start(
        Root::new(dir.path()).expect("root"),
        localhost(),
        listener,
        options,
        access.server(),
        events,
    )
    .expect("start");
    Fixture {
        dir,
        server,
        log,
        access,
        provider,
    }
}

fn server_options(provider: &str) -> ServerOptions {
    ServerOptions::new(ProviderName::new(provider).expect("name"), b"")
}

fn client_options(provider: &str, queue_depth: usize) -> ClientOptions {
    let mut options = ClientOptions::new(ProviderName::new(provider).expect("name"));
    options.io_size = 16 * 1024;
    options.queue_depth = queue_depth;
    options.mode = CompletionMode::Interrupt;
    options
}

fn connect<C: RdmaConnector>(
    fixture: &Fixture,
    connector: &C,
    queue_depth: usize,
) -> Client<C::Transport, rdio::capture::PipeTap<net::PipeStream>> {
    net::connect(
        fixture.server.pipe_addr(),
        client_options(fixture.provider, queue_depth),
        PIPE_TIMEOUT,
        connector,
        &fixture.access.client(),
    )
    .expect("connect")
}

fn wait_for_log(fixture: &Fixture, needle: &str) -> String {
    for _ in 0..250 {
        let lines = fixture.log.lock().expect("log").join("\n");
        if lines.contains(needle) {
            return lines;
        }
        thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "no log line with {needle:?}: {:?}",
        fixture.log.lock().expect("log")
    );
}

fn fabric_fixture(options: impl FnOnce(&mut ServerOptions)) -> (Fixture, FabricConnector) {
    let mut server = server_options("ofi:tcp");
    options(&mut server);
    let listener = FabricListener::bind(localhost(), "tcp").expect("fabric listener");
    (
        serve(listener, "ofi:tcp", server),
        FabricConnector::new(Some("tcp")).expect("tcp provider"),
    )
}

fn cma_fixture(options: impl FnOnce(&mut ServerOptions)) -> (Fixture, CmaConnector) {
    let mut server = server_options("cma");
    options(&mut server);
    let listener = CmaListener::bind(localhost()).expect("cma listener");
    (
        serve(listener, "cma", server),
        CmaConnector::new().expect("cma"),
    )
}

const RW: OpenFlags = OpenFlags::READ
    .union(OpenFlags::WRITE)
    .union(OpenFlags::CREATE);

fn too_many_open_files<C: RdmaConnector>(fixture: &Fixture, connector: &C) {
    let mut client = connect(fixture, connector, 2);
    let a = client.open("a", RW).expect("open a");
    // Opened on the side channel and not registered counts too.
    let b = client.open_on_pipe("b", RW).expect("open b");
    let error = client.open("c", RW).expect_err("third open");
    assert!(
        matches!(
            error,
            ClientError::Remote {
                operation: Operation::Open,
                status: Status::TooManyOpenFiles
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "open: too many open files for this client"
    );
    // The limit is per client: another client opens its own.
    let mut other = connect(fixture, connector, 2);
    let theirs = other.open("theirs", RW).expect("another client's open");
    other.close(theirs).expect("close");
    other.shutdown().expect("shutdown");
    // Closing one lets the next open succeed.
    client.write_at(&a, 0, b"first").expect("write");
    client.close(a).expect("close a");
    let c = client.open("c", RW).expect("open after a close");
    let b = client.register(b.key).expect("register b");
    client.close(b).expect("close b");
    client.close(c).expect("close c");
    // A refused open is not counted: two more fit again.
    let d = client.open("d", RW).expect("open d");
    let e = client.open("e", RW).expect("open e");
    client.close(d).expect("close d");
    client.close(e).expect("close e");
    client.shutdown().expect("shutdown");
    assert_eq!(
        std::fs::read(fixture.dir.path().join("a")).expect("a on disk"),
        b"first"
    );
}

#[test]
fn the_open_beyond_max_open_files_is_refused_until_one_closes() {
    let (fixture, connector) = fabric_fixture(|o| o.max_open_files_per_client = 2);
    too_many_open_files(&fixture, &connector);
    let (fixture, connector) = cma_fixture(|o| o.max_open_files_per_client = 2);
    too_many_open_files(&fixture, &connector);
}

fn capped_credits<C: RdmaConnector>(fixture: &Fixture, connector: &C) {
    // The client asks for as many credits as it can use (its queue depth
    // of 16); the server grants its cap of 4, and 16 requests pipelined at
    // once still complete, 4 at a time.
    let mut client = connect(fixture, connector, 16);
    assert_eq!(client.credits(), 4, "granted at negotiation");
    let file = client.open("capped", RW).expect("open");
    let data = random_bytes(16 * 16 * 1024, 3);
    client.write_at(&file, 0, &data).expect("pipelined write");
    let mut back = vec![0; data.len()];
    assert_eq!(
        client.read_at(&file, 0, &mut back).expect("pipelined read"),
        data.len()
    );
    assert_eq!(back, data);
    // All 16 were submitted at once and waited for credits in the client:
    // a request beyond the 4 credits on the wire would have been a credit
    // overrun, which the server's core answers by terminating.
    assert_eq!(client.stats().max_in_flight, 16);
    assert_eq!(client.credits(), 4);
    assert_eq!(client.stats().transport_errors, 0);
    client.close(file).expect("close");
    client.shutdown().expect("shutdown");
}

#[test]
fn max_credits_caps_the_grant_and_the_requests_in_flight() {
    let cap = |o: &mut ServerOptions| {
        o.config.max_credits = 4;
        o.config.initial_credits = 4;
    };
    let (fixture, connector) = fabric_fixture(cap);
    capped_credits(&fixture, &connector);
    let (fixture, connector) = cma_fixture(cap);
    capped_credits(&fixture, &connector);
}

fn idle_clients_are_closed<C: RdmaConnector>(fixture: &Fixture, connector: &C) {
    // Holding a file open is not idle.
    let mut busy = connect(fixture, connector, 2);
    let file = busy.open("held", RW).expect("open");
    let mut idle = connect(fixture, connector, 2);
    let probe = idle.open("probe", RW).expect("open");
    idle.close(probe).expect("close");
    let idled = Instant::now();
    wait_for_log(fixture, "closed by the server: idle");
    assert!(
        idled.elapsed() >= Duration::from_secs(1),
        "closed after {:?}",
        idled.elapsed()
    );
    thread::sleep(Duration::from_millis(300));
    let error = idle
        .open("late", RW)
        .expect_err("open after the idle timeout");
    assert!(
        matches!(error, ClientError::IdleTimeout { idle } if idle >= Duration::from_secs(1)),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .starts_with("closed by the server: idle for "),
        "{error}"
    );
    assert_eq!(error.status(), Some(Status::IdleTimeout));
    // Both of the idle client's channels were ended and logged.
    wait_for_log(
        fixture,
        "failed: refused (closed by the server: idle): idle for 1 s",
    );
    wait_for_log(
        fixture,
        "ended: connection terminated: peer terminated the connection: closed by the server: idle",
    );
    // The client with an open file was left alone.
    busy.write_at(&file, 0, b"still here")
        .expect("write after idling");
    busy.close(file).expect("close");
    busy.shutdown().expect("shutdown");
    assert_eq!(
        std::fs::read(fixture.dir.path().join("held")).expect("on disk"),
        b"still here"
    );
}

#[test]
fn an_idle_client_is_ended_with_idle_timeout_and_one_holding_a_file_is_not() {
    let idle = |o: &mut ServerOptions| o.idle_timeout = Some(Duration::from_secs(1));
    let (fixture, connector) = fabric_fixture(idle);
    idle_clients_are_closed(&fixture, &connector);
    let (fixture, connector) = cma_fixture(idle);
    idle_clients_are_closed(&fixture, &connector);
}
