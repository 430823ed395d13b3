//! The networked server and client in one process over libfabric's `tcp`
//! provider on 127.0.0.1: real TCP side channel, real libfabric RDMA
//! channel. (The two-process and two-namespace tests are the CLI's.)

use rdio::client::{ClientError, ClientOptions, CompletionMode};
use rdio::files::{ReadSegment, Root, WriteSegment};
use rdio::net::fabric::{FabricConnector, FabricListener};
use rdio::net::{
    self, EventLog, NetError, NetEvent, NetServer, RdmaConnector, SetupError, provider_list,
};
use rdio::server::ServerOptions;
use rdio_core::wire::{OpenFlags, ProviderList, ProviderName, Status};
use rdio_fabric::FabricTransport;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod support;
use support::access::TestAccess;
use support::random_bytes;

const LOCALHOST: &str = "127.0.0.1:0";
const PIPE_TIMEOUT: Duration = Duration::from_secs(5);

fn localhost() -> SocketAddr {
    LOCALHOST.parse().expect("address")
}

fn tcp() -> ProviderName {
    ProviderName::new("ofi:tcp").expect("name")
}

/// A server on 127.0.0.1 over fabric tcp, with its log lines.
struct Fixture {
    dir: tempfile::TempDir,
    server: NetServer,
    log: Arc<Mutex<Vec<String>>>,
}

fn serve() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(Mutex::new(Vec::new()));
    let lines = Arc::clone(&log);
    let events: EventLog = Arc::new(move |event: &NetEvent<'_>| {
        lines.lock().expect("log").push(event.to_string());
    });
    let listener = FabricListener::bind(localhost(), "tcp").expect("fabric listener");
    let server = NetServer::start(
        Root::new(dir.path()).expect("root"),
        localhost(),
        listener,
        ServerOptions::new(tcp(), b""),
        TestAccess::shared().server(),
        events,
    )
    .expect("start");
    Fixture { dir, server, log }
}

fn options(mode: CompletionMode) -> ClientOptions {
    let mut options = ClientOptions::new(tcp());
    options.io_size = 256 * 1024;
    options.queue_depth = 4;
    options.mode = mode;
    options
}

fn connector() -> FabricConnector {
    FabricConnector::new(Some("tcp")).expect("tcp provider")
}

#[test]
fn files_cross_the_network_in_both_completion_modes() {
    let fixture = serve();
    assert_eq!(
        fixture.server.endpoint().ip(),
        fixture.server.pipe_addr().ip()
    );
    for (mode, seed) in [(CompletionMode::Interrupt, 1), (CompletionMode::Polling, 2)] {
        let mut client = net::connect(
            fixture.server.pipe_addr(),
            options(mode),
            PIPE_TIMEOUT,
            &connector(),
            &TestAccess::shared().client(),
        )
        .expect("connect");
        assert_eq!(client.provider(), "ofi:tcp");
        let name = format!("file-{seed}");
        let data = random_bytes((1 << 20) + 1, seed);
        let flags = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
        let file = client.open(&name, flags).expect("create");
        client.write_at(&file, 0, &data).expect("write");
        let mut back = vec![0; data.len() + 10];
        let got = client.read_at(&file, 0, &mut back).expect("read");
        assert_eq!(&back[..got], &data[..], "{mode:?}");
        assert_eq!(
            std::fs::read(fixture.dir.path().join(&name)).expect("on disk"),
            data
        );

        // Vectored both ways: three segments scattered over the file.
        let pieces = [
            (7u64, &data[..100]),
            (5000, &data[100..4195]),
            (900_000, &data[4195..4196]),
        ];
        let segments: Vec<WriteSegment<'_>> = pieces
            .iter()
            .map(|&(offset, data)| WriteSegment { offset, data })
            .collect();
        assert_eq!(
            client.write_vectored_at(&file, &segments).expect("writev"),
            4196
        );
        let mut a = [0u8; 100];
        let mut b = [0u8; 4095];
        let mut c = [0u8; 1];
        let mut reads = [
            ReadSegment {
                offset: 7,
                buf: &mut a,
            },
            ReadSegment {
                offset: 5000,
                buf: &mut b,
            },
            ReadSegment {
                offset: 900_000,
                buf: &mut c,
            },
        ];
        assert_eq!(
            client.read_vectored_at(&file, &mut reads).expect("readv"),
            4196
        );
        assert_eq!(
            (&a[..], &b[..], &c[..]),
            (pieces[0].1, pieces[1].1, pieces[2].1)
        );
        client.close(file).expect("close");
        client.shutdown().expect("shutdown");
    }
    fixture.server.shutdown();
    let log = fixture.log.lock().expect("log");
    assert_eq!(
        log.iter()
            .filter(|l| l.contains("side channel from 127.0.0.1"))
            .count(),
        2,
        "{log:?}"
    );
    assert_eq!(
        log.iter().filter(|l| l.contains("(ofi:tcp) ended")).count(),
        2,
        "{log:?}"
    );
}

/// A client with its own provider list that never gets to connect.
struct Offers(ProviderList);

impl RdmaConnector for Offers {
    type Transport = FabricTransport;

    fn providers(&self) -> ProviderList {
        self.0.clone()
    }

    fn connect(&self, _: SocketAddr, _: &ProviderName) -> Result<FabricTransport, SetupError> {
        Err("negotiation should have failed".into())
    }
}

#[test]
fn no_common_provider_names_both_lists() {
    let fixture = serve();
    let offers = Offers(provider_list(&["ofi:psm3", "verbs:roce"]).expect("names"));
    let error = net::connect(
        fixture.server.pipe_addr(),
        options(CompletionMode::Interrupt),
        PIPE_TIMEOUT,
        &offers,
        &TestAccess::shared().client(),
    )
    .expect_err("no common provider");
    assert!(
        matches!(error, NetError::Client(ClientError::Discovery(_))),
        "{error:?}"
    );
    assert!(
        error.to_string().contains(
            "no common RDMA provider: server offers [ofi:tcp], client has [ofi:psm3, verbs:roce]"
        ),
        "{error}"
    );
}

#[test]
fn an_unreachable_server_is_a_clear_error_at_once() {
    // A port that was free a moment ago: nothing listens there.
    let port = TcpListener::bind(localhost())
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let started = Instant::now();
    let error = net::connect(
        addr,
        options(CompletionMode::Interrupt),
        PIPE_TIMEOUT,
        &connector(),
        &TestAccess::shared().client(),
    )
    .expect_err("refused");
    assert!(started.elapsed() < PIPE_TIMEOUT);
    let text = error.to_string();
    assert!(
        text.starts_with(&format!("cannot reach the rdio server at {addr}"))
            && text.to_lowercase().contains("refused"),
        "{text}"
    );
}

/// Negotiates with one server, then connects its RDMA channel to another:
/// the second has never issued the key the client presents.
struct Elsewhere(SocketAddr, FabricConnector);

impl RdmaConnector for Elsewhere {
    type Transport = FabricTransport;

    fn providers(&self) -> ProviderList {
        self.1.providers()
    }

    fn connect(
        &self,
        _: SocketAddr,
        provider: &ProviderName,
    ) -> Result<FabricTransport, SetupError> {
        self.1.connect(self.0, provider)
    }
}

#[test]
fn a_key_from_another_server_fails_authentication() {
    let (negotiating, other) = (serve(), serve());
    let error = net::connect(
        negotiating.server.pipe_addr(),
        options(CompletionMode::Interrupt),
        PIPE_TIMEOUT,
        &Elsewhere(other.server.endpoint(), connector()),
        &TestAccess::shared().client(),
    )
    .expect_err("auth must fail");
    assert!(
        error.to_string().contains("authentication failed"),
        "{error}"
    );
}

#[test]
fn missing_files_and_escapes_are_refused_by_status() {
    let fixture = serve();
    let outside = fixture
        .dir
        .path()
        .parent()
        .expect("parent")
        .join("rdio-outside");
    let mut client = net::connect(
        fixture.server.pipe_addr(),
        options(CompletionMode::Interrupt),
        PIPE_TIMEOUT,
        &connector(),
        &TestAccess::shared().client(),
    )
    .expect("connect");
    let missing = client
        .open("no/such/file", OpenFlags::READ)
        .expect_err("missing");
    assert_eq!(missing.status(), Some(Status::NotFound), "{missing}");
    for escape in ["../rdio-outside", "/etc/passwd"] {
        let error = client
            .open(
                escape,
                OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE,
            )
            .expect_err("escape");
        assert!(error.status().is_some(), "{escape}: {error}");
        assert_ne!(error.status(), Some(Status::Success));
    }
    assert!(!outside.exists());
    client.shutdown().expect("shutdown");
}

#[test]
fn server_shutdown_ends_live_connections_in_order() {
    let fixture = serve();
    let mut client = net::connect(
        fixture.server.pipe_addr(),
        options(CompletionMode::Interrupt),
        PIPE_TIMEOUT,
        &connector(),
        &TestAccess::shared().client(),
    )
    .expect("connect");
    let file = client
        .open("f", OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE)
        .expect("create");
    let started = Instant::now();
    fixture.server.shutdown();
    assert!(started.elapsed() < Duration::from_secs(5));
    let error = client.write_at(&file, 0, b"late").expect_err("server gone");
    let text = error.to_string();
    assert!(
        text.contains("connection ended") || text.contains("connection lost"),
        "{text}"
    );
}

/// An RDMA listener on every address advertises the wildcard, and the
/// client connects to it at the address it reached the side channel at.
#[test]
fn a_wildcard_rdma_endpoint_is_reached_at_the_side_channels_address() {
    let listener = FabricListener::bind("0.0.0.0:0".parse().expect("addr"), "tcp").expect("bind");
    let dir = tempfile::tempdir().expect("tempdir");
    let server = NetServer::start(
        Root::new(dir.path()).expect("root"),
        localhost(),
        listener,
        ServerOptions::new(tcp(), b""),
        TestAccess::shared().server(),
        Arc::new(|_: &NetEvent<'_>| {}),
    )
    .expect("a wildcard endpoint is served");
    assert!(
        server.endpoint().ip().is_unspecified(),
        "{}",
        server.endpoint()
    );
    let mut client = net::connect(
        server.pipe_addr(),
        options(CompletionMode::Interrupt),
        PIPE_TIMEOUT,
        &connector(),
        &TestAccess::shared().client(),
    )
    .expect("connect through the wildcard endpoint");
    let file = client
        .open("f", OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE)
        .expect("create");
    client.write_at(&file, 0, b"reached").expect("write");
    let mut buf = [0u8; 7];
    assert_eq!(client.read_at(&file, 0, &mut buf).expect("read"), 7);
    assert_eq!(&buf, b"reached");
    client.close(file).expect("close");
    client.shutdown().expect("shutdown");
    server.shutdown();
}
