//! Who may connect and what they may do, over the network: a client must
//! prove its credential inside TLS before anything else is answered; the
//! side channel carries neither the RDMA authentication key nor file names
//! in clear text; read-only exports and clients are refused writes by the
//! server over every transport.

use rdio::access::{Credential, Permission, client_proof, derive_client_key};
use rdio::client::{ClientError, ClientOptions, CompletionMode};
use rdio::files::Root;
use rdio::net::cma::{CmaConnector, CmaListener};
use rdio::net::fabric::{FabricConnector, FabricListener};
use rdio::net::{
    self, ClientSecurity, EventLog, NetError, NetEvent, NetServer, RdmaConnector, RdmaListener,
    ServerSecurity,
};
use rdio::pipe::Pipe;
use rdio::server::ServerOptions;
use rdio_core::wire::{OpenFlags, PipeMessage, ProviderName, Status};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

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
}

fn serve_with(
    listener: impl RdmaListener,
    provider: &str,
    security: ServerSecurity,
    read_only: bool,
) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(Mutex::new(Vec::new()));
    let lines = Arc::clone(&log);
    let events: EventLog = Arc::new(move |event: &NetEvent<'_>| {
        lines.lock().expect("log").push(event.to_string());
    });
    let mut options = ServerOptions::new(ProviderName::new(provider).expect("name"), b"");
    options.read_only = read_only;
    let server = NetServer::start(
        Root::new(dir.path()).expect("root"),
        localhost(),
        listener,
        options,
        security,
        events,
    )
    .expect("start");
    Fixture { dir, server, log }
}

fn serve_fabric(security: ServerSecurity) -> Fixture {
    let listener = FabricListener::bind(localhost(), "tcp").expect("fabric listener");
    serve_with(listener, "ofi:tcp", security, false)
}

fn options(provider: &str) -> ClientOptions {
    let mut options = ClientOptions::new(ProviderName::new(provider).expect("name"));
    options.io_size = 64 * 1024;
    options.queue_depth = 2;
    options.mode = CompletionMode::Interrupt;
    options
}

fn fabric() -> FabricConnector {
    FabricConnector::new(Some("tcp")).expect("tcp provider")
}

fn connect_fabric(
    fixture: &Fixture,
    security: &ClientSecurity,
) -> Result<
    rdio::client::Client<
        <FabricConnector as RdmaConnector>::Transport,
        rdio::capture::PipeTap<net::PipeStream>,
    >,
    NetError,
> {
    net::connect(
        fixture.server.pipe_addr(),
        options("ofi:tcp"),
        PIPE_TIMEOUT,
        &fabric(),
        security,
    )
}

fn refused_status(error: &NetError) -> Option<Status> {
    match error {
        NetError::Client(ClientError::Refused(status)) => Some(*status),
        _ => None,
    }
}

fn wait_for_log(fixture: &Fixture, needle: &str) -> String {
    for _ in 0..100 {
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

#[test]
fn a_known_client_connects_over_tls_and_moves_data() {
    let access = TestAccess::new();
    let fixture = serve_fabric(access.server());
    let mut client = connect_fabric(&fixture, &access.client()).expect("connect");
    let data = random_bytes(200_000, 7);
    let flags = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    let file = client.open("data", flags).expect("open");
    client.write_at(&file, 0, &data).expect("write");
    let mut back = vec![0; data.len()];
    assert_eq!(
        client.read_at(&file, 0, &mut back).expect("read"),
        data.len()
    );
    assert_eq!(back, data);
    client.close(file).expect("close");
    client.shutdown().expect("shutdown");
    assert_eq!(
        std::fs::read(fixture.dir.path().join("data")).expect("on disk"),
        data
    );
}

/// Raw TLS side channel to `fixture`, as a client would open it, but
/// driven message by message.
fn raw_tls_pipe(fixture: &Fixture, access: &TestAccess) -> Pipe<TlsClientStream> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(access.fingerprint)))
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::IpAddress(fixture.server.pipe_addr().ip().into());
    let connection = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
    let tcp = TcpStream::connect(fixture.server.pipe_addr()).expect("tcp");
    tcp.set_read_timeout(Some(PIPE_TIMEOUT)).expect("timeout");
    Pipe::new(rustls::StreamOwned::new(connection, tcp))
}

type TlsClientStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Accepts the server whose fingerprint it was given (the test's own
/// pinning, independent of the library's).
#[derive(Debug)]
struct AcceptAny(rdio::access::Fingerprint);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        assert_eq!(rdio::access::Fingerprint::of(end_entity), self.0);
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[test]
fn a_client_without_credentials_is_refused_and_gets_no_resume_key() {
    let access = TestAccess::new();
    let fixture = serve_fabric(access.server());
    // Straight to the resume key request, skipping authentication.
    let mut pipe = raw_tls_pipe(&fixture, &access);
    pipe.send(&PipeMessage::ResumeKeyRequest).expect("send");
    assert_eq!(
        pipe.receive().expect("answer"),
        PipeMessage::Refused {
            status: Status::Unauthenticated
        }
    );
    assert!(pipe.receive().is_err(), "the server closed the pipe");
    // An open or a negotiation before authentication: the same.
    let mut pipe = raw_tls_pipe(&fixture, &access);
    pipe.send(&PipeMessage::OpenRequest {
        flags: OpenFlags::READ,
        path: b"x",
    })
    .expect("send");
    assert!(matches!(
        pipe.receive().expect("answer"),
        PipeMessage::Refused {
            status: Status::Unauthenticated
        }
    ));
    wait_for_log(&fixture, "request before authentication");
}

#[test]
fn unknown_clients_wrong_secrets_and_replayed_proofs_are_refused() {
    let access = TestAccess::new();
    let fixture = serve_fabric(access.server());

    // Unknown name: a challenge all the same (the name is not confirmed),
    // then the refusal.
    let stranger = ClientSecurity {
        credential: Credential::generate("stranger").expect("credential"),
        ..access.client()
    };
    let error = connect_fabric(&fixture, &stranger).expect_err("unknown client");
    assert_eq!(
        refused_status(&error),
        Some(Status::Unauthenticated),
        "{error}"
    );
    assert!(error.to_string().contains("not authenticated"), "{error}");
    wait_for_log(&fixture, "unknown client (client 'stranger')");

    // The right name with another secret.
    let mut forged = access.client();
    forged.credential.secret[0] ^= 1;
    let error = connect_fabric(&fixture, &forged).expect_err("wrong secret");
    assert_eq!(
        refused_status(&error),
        Some(Status::Unauthenticated),
        "{error}"
    );
    wait_for_log(&fixture, "wrong proof (client 'tester')");

    // A proof recorded on one side channel, replayed on another: the
    // nonce and the TLS session differ, so it does not verify.
    let mut first = raw_tls_pipe(&fixture, &access);
    first
        .send(&PipeMessage::AuthHello { name: b"tester" })
        .expect("hello");
    let PipeMessage::AuthChallenge { salt, nonce } = first.receive().expect("challenge") else {
        panic!("expected a challenge");
    };
    let key = derive_client_key(&salt, &access.credential.secret);
    // Unbound (no exporter at hand here): refused on this session too.
    let proof = client_proof(&key, &nonce, &rdio::access::ChannelBinding([0; 32]));
    first
        .send(&PipeMessage::AuthProof { proof })
        .expect("proof");
    assert!(matches!(
        first.receive().expect("answer"),
        PipeMessage::Refused {
            status: Status::Unauthenticated
        }
    ));
    let mut second = raw_tls_pipe(&fixture, &access);
    second
        .send(&PipeMessage::AuthHello { name: b"tester" })
        .expect("hello");
    let PipeMessage::AuthChallenge { nonce: again, .. } = second.receive().expect("challenge")
    else {
        panic!("expected a challenge");
    };
    assert_ne!(again, nonce, "every challenge has a fresh nonce");
    second
        .send(&PipeMessage::AuthProof { proof })
        .expect("replay");
    assert!(matches!(
        second.receive().expect("answer"),
        PipeMessage::Refused {
            status: Status::Unauthenticated
        }
    ));

    // And the real client still gets in.
    connect_fabric(&fixture, &access.client())
        .expect("the real client")
        .shutdown()
        .expect("shutdown");
}

#[test]
fn on_a_clear_text_pipe_a_replayed_proof_is_refused() {
    // Without TLS a proof is visible on the wire; the fresh nonce per
    // challenge is what makes replaying it useless.
    let access = TestAccess::new();
    let fixture = serve_fabric(ServerSecurity::insecure(Arc::clone(&access.clients)));
    let clear = |fixture: &Fixture| {
        let tcp = TcpStream::connect(fixture.server.pipe_addr()).expect("tcp");
        tcp.set_read_timeout(Some(PIPE_TIMEOUT)).expect("timeout");
        Pipe::new(tcp)
    };
    let mut first = clear(&fixture);
    first
        .send(&PipeMessage::AuthHello { name: b"tester" })
        .expect("hello");
    let PipeMessage::AuthChallenge { salt, nonce } = first.receive().expect("challenge") else {
        panic!("expected a challenge");
    };
    let key = derive_client_key(&salt, &access.credential.secret);
    let proof = client_proof(&key, &nonce, &rdio::access::ChannelBinding([0; 32]));
    first
        .send(&PipeMessage::AuthProof { proof })
        .expect("proof");
    assert!(matches!(
        first.receive().expect("result"),
        PipeMessage::AuthResult {
            status: Status::Success,
            ..
        }
    ));
    first
        .send(&PipeMessage::ResumeKeyRequest)
        .expect("resume key");
    assert!(matches!(
        first.receive().expect("key"),
        PipeMessage::ResumeKeyResponse { .. }
    ));
    let mut second = clear(&fixture);
    second
        .send(&PipeMessage::AuthHello { name: b"tester" })
        .expect("hello");
    assert!(matches!(
        second.receive().expect("challenge"),
        PipeMessage::AuthChallenge { .. }
    ));
    second
        .send(&PipeMessage::AuthProof { proof })
        .expect("replay");
    assert!(matches!(
        second.receive().expect("answer"),
        PipeMessage::Refused {
            status: Status::Unauthenticated
        }
    ));
}

/// A TCP relay from a local port to `target` that records every byte each
/// way: what someone on the network between client and server sees.
struct Capture {
    addr: SocketAddr,
    to_server: Arc<Mutex<Vec<u8>>>,
    to_client: Arc<Mutex<Vec<u8>>>,
}

impl Capture {
    fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind(localhost()).expect("relay");
        let addr = listener.local_addr().expect("addr");
        let (to_server, to_client) = (Arc::default(), Arc::default());
        let (up, down) = (Arc::clone(&to_server), Arc::clone(&to_client));
        thread::spawn(move || {
            // One side channel, then the relay ends.
            let Ok((client, _)) = listener.accept() else {
                return;
            };
            let server = TcpStream::connect(target).expect("server");
            let relay = |mut from: TcpStream, mut to: TcpStream, log: Arc<Mutex<Vec<u8>>>| {
                thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = from.read(&mut buf) {
                        if n == 0 || to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        log.lock().expect("capture").extend_from_slice(&buf[..n]);
                    }
                    let _ = to.shutdown(Shutdown::Write);
                })
            };
            let a = relay(
                client.try_clone().expect("clone"),
                server.try_clone().expect("clone"),
                up,
            );
            let b = relay(server, client, down);
            let _ = a.join();
            let _ = b.join();
        });
        Self {
            addr,
            to_server,
            to_client,
        }
    }

    fn bytes(&self) -> (Vec<u8>, Vec<u8>) {
        (
            self.to_server.lock().expect("capture").clone(),
            self.to_client.lock().expect("capture").clone(),
        )
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// Upload a file named `name` through `capture`; the client's RDMA
/// authentication key, and the captured bytes.
fn captured_transfer(
    fixture: &Fixture,
    security: &ClientSecurity,
    name: &str,
) -> ([u8; 16], Vec<u8>, Vec<u8>) {
    let capture = Capture::start(fixture.server.pipe_addr());
    let mut client = net::connect(
        capture.addr,
        options("ofi:tcp"),
        PIPE_TIMEOUT,
        &fabric(),
        security,
    )
    .expect("connect through the relay");
    let key = client.negotiated().auth_key.0;
    let flags = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    let file = client.open(name, flags).expect("open");
    client.write_at(&file, 0, b"payload").expect("write");
    client.close(file).expect("close");
    client.shutdown().expect("shutdown");
    // The relay forwards the last bytes before the test reads them.
    thread::sleep(Duration::from_millis(100));
    let (up, down) = capture.bytes();
    (key, up, down)
}

#[test]
fn the_side_channel_shows_a_tls_handshake_and_never_the_auth_key_or_a_file_name() {
    let access = TestAccess::new();
    let fixture = serve_fabric(access.server());
    let name = "a-very-recognizable-file-name.bin";
    let (key, up, down) = captured_transfer(&fixture, &access.client(), name);
    // A TLS 1.x handshake record (ClientHello / ServerHello) first.
    assert_eq!(&up[..2], &[0x16, 0x03], "client's first bytes");
    assert_eq!(&down[..2], &[0x16, 0x03], "server's first bytes");
    for (what, bytes) in [("client to server", &up), ("server to client", &down)] {
        assert!(
            !contains(bytes, name.as_bytes()),
            "{what}: file name in clear"
        );
        assert!(!contains(bytes, &key), "{what}: RDMA auth key on the pipe");
        assert!(!contains(bytes, b"RDIO"), "{what}: a clear-text pipe frame");
        assert!(
            !contains(bytes, b"tester"),
            "{what}: the client's name in clear"
        );
    }
    assert!(fixture.dir.path().join(name).exists());

    // The same capture of a clear-text (--insecure) pipe does show them:
    // the checks above would catch a leak.
    let insecure = serve_fabric(ServerSecurity::insecure(Arc::clone(&access.clients)));
    let clear = ClientSecurity {
        tls: None,
        ..access.client()
    };
    let (key, up, down) = captured_transfer(&insecure, &clear, name);
    assert!(contains(&up, name.as_bytes()));
    assert!(contains(&down, &key), "clear text carries the key");
}

#[test]
fn one_sided_insecure_fails_clearly_on_both_sides() {
    let access = TestAccess::new();
    let tls_server = serve_fabric(access.server());
    let clear_client = ClientSecurity {
        tls: None,
        ..access.client()
    };
    let error = connect_fabric(&tls_server, &clear_client).expect_err("clear text to TLS");
    assert_eq!(refused_status(&error), Some(Status::TlsRequired), "{error}");
    assert!(error.to_string().contains("drop --insecure"), "{error}");
    wait_for_log(
        &tls_server,
        "clear-text (--insecure) client on a TLS server",
    );

    let clear_server = serve_fabric(ServerSecurity::insecure(Arc::clone(&access.clients)));
    let error = connect_fabric(&clear_server, &access.client()).expect_err("TLS to clear text");
    assert_eq!(
        refused_status(&error),
        Some(Status::TlsNotOffered),
        "{error}"
    );
    assert!(error.to_string().contains("--insecure"), "{error}");
    wait_for_log(
        &clear_server,
        "TLS client on a clear-text (--insecure) server",
    );

    // Both clear text: allowed (labs), still authenticated.
    connect_fabric(&clear_server, &clear_client)
        .expect("both --insecure")
        .shutdown()
        .expect("shutdown");
}

#[test]
fn a_server_fingerprint_other_than_the_pinned_one_is_refused() {
    let access = TestAccess::new();
    let other = TestAccess::new();
    let fixture = serve_fabric(access.server());
    // Pinned to another server's identity.
    let error = connect_fabric(
        &fixture,
        &ClientSecurity {
            tls: Some(rdio::access::ServerTrust::Fingerprint(other.fingerprint)),
            ..access.client()
        },
    )
    .expect_err("wrong fingerprint");
    assert!(
        error
            .to_string()
            .contains("not the expected --server-fingerprint"),
        "{error}"
    );
    // Known servers: first use pins, a changed identity is refused and the
    // message names the file and line to remove.
    let home = tempfile::tempdir().expect("home");
    let known = rdio::access::KnownServers::new(home.path().join("known_servers"));
    let tofu = ClientSecurity {
        tls: Some(rdio::access::ServerTrust::KnownServers(known.clone())),
        ..access.client()
    };
    connect_fabric(&fixture, &tofu)
        .expect("first use")
        .shutdown()
        .expect("shutdown");
    let server = fixture.server.pipe_addr().to_string();
    assert_eq!(
        known.lookup(&server).expect("pinned"),
        Some((access.fingerprint, 1))
    );
    connect_fabric(&fixture, &tofu)
        .expect("second use, same identity")
        .shutdown()
        .expect("shutdown");
    // The same address now pinned to another identity (as if the server's
    // key had been replaced).
    std::fs::write(known.path(), format!("{server} {}\n", other.fingerprint)).expect("repin");
    let error = connect_fabric(&fixture, &tofu).expect_err("changed");
    let text = error.to_string();
    assert!(text.contains("has CHANGED"), "{text}");
    assert!(
        text.contains(&format!("{} line 1", known.path().display())),
        "{text}"
    );
}

/// Writes refused by the server, reads allowed, for `security` on a server
/// whose export is `read_only`, over `listener`/`connector`.
fn read_only_refuses_writes<L: RdmaListener, C: RdmaConnector>(
    listener: L,
    connector: &C,
    provider: &str,
    server: ServerSecurity,
    client: &ClientSecurity,
    read_only_export: bool,
) {
    let fixture = serve_with(listener, provider, server, read_only_export);
    std::fs::write(fixture.dir.path().join("existing"), b"original").expect("seed");
    let mut session = net::connect(
        fixture.server.pipe_addr(),
        options(provider),
        PIPE_TIMEOUT,
        connector,
        client,
    )
    .expect("connect");
    for flags in [
        OpenFlags::WRITE,
        OpenFlags::READ | OpenFlags::WRITE,
        OpenFlags::WRITE | OpenFlags::CREATE,
        OpenFlags::WRITE | OpenFlags::TRUNCATE,
    ] {
        for path in ["existing", "new-file"] {
            let error = session.open(path, flags).expect_err("write refused");
            assert_eq!(error.status(), Some(Status::ReadOnly), "{path} {flags:?}");
        }
    }
    let file = session.open("existing", OpenFlags::READ).expect("read");
    let mut back = [0u8; 8];
    assert_eq!(session.read_at(&file, 0, &mut back).expect("read"), 8);
    assert_eq!(&back, b"original");
    session.close(file).expect("close");
    session.shutdown().expect("shutdown");
    assert_eq!(
        std::fs::read(fixture.dir.path().join("existing")).expect("file"),
        b"original"
    );
    assert!(!fixture.dir.path().join("new-file").exists());
    wait_for_log(&fixture, "closed");
}

#[test]
fn a_read_only_export_refuses_writes_over_fabric_and_cma() {
    let access = TestAccess::new();
    read_only_refuses_writes(
        FabricListener::bind(localhost(), "tcp").expect("fabric"),
        &fabric(),
        "ofi:tcp",
        access.server(),
        &access.client(),
        true,
    );
    read_only_refuses_writes(
        CmaListener::bind(localhost()).expect("cma"),
        &CmaConnector::new().expect("cma"),
        "cma",
        access.server(),
        &access.client(),
        true,
    );
}

#[test]
fn a_read_only_client_is_refused_writes_over_fabric_and_cma() {
    let access = TestAccess::with_permission(Permission::ReadOnly);
    read_only_refuses_writes(
        FabricListener::bind(localhost(), "tcp").expect("fabric"),
        &fabric(),
        "ofi:tcp",
        access.server(),
        &access.client(),
        false,
    );
    read_only_refuses_writes(
        CmaListener::bind(localhost()).expect("cma"),
        &CmaConnector::new().expect("cma"),
        "cma",
        access.server(),
        &access.client(),
        false,
    );
}

#[test]
fn peers_outside_the_allow_list_are_refused() {
    let access = TestAccess::new();
    let mut security = access.server();
    security.allow = vec!["10.0.0.0/8".parse().expect("net")];
    let fixture = serve_fabric(security);
    let error = connect_fabric(&fixture, &access.client()).expect_err("not allowed");
    assert_eq!(refused_status(&error), Some(Status::NotAllowed), "{error}");
    wait_for_log(&fixture, "address not in --allow");
}

#[test]
fn a_full_server_answers_busy_and_a_client_retries_within_its_timeout() {
    let access = TestAccess::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut limits = ServerOptions::new(ProviderName::new("ofi:tcp").expect("name"), b"");
    limits.max_sessions = 2;
    let log = Arc::new(Mutex::new(Vec::new()));
    let lines = Arc::clone(&log);
    let server = NetServer::start(
        Root::new(dir.path()).expect("root"),
        localhost(),
        FabricListener::bind(localhost(), "tcp").expect("fabric"),
        limits,
        access.server(),
        Arc::new(move |event: &NetEvent<'_>| lines.lock().expect("log").push(event.to_string())),
    )
    .expect("start");
    let fixture = Fixture { dir, server, log };
    let first = connect_fabric(&fixture, &access.client()).expect("first");
    let second = connect_fabric(&fixture, &access.client()).expect("second");
    // Full: a short timeout gives up, naming the reason.
    let started = std::time::Instant::now();
    let error = net::connect(
        fixture.server.pipe_addr(),
        options("ofi:tcp"),
        Duration::from_millis(400),
        &fabric(),
        &access.client(),
    )
    .expect_err("busy");
    assert!(matches!(error, NetError::Busy { .. }), "{error}");
    assert!(error.to_string().contains("is busy"), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    wait_for_log(&fixture, "too many client sessions");
    // A client that keeps trying gets in once a session ends.
    let waiter = {
        let addr = fixture.server.pipe_addr();
        let security = access.client();
        thread::spawn(move || {
            net::connect(
                addr,
                options("ofi:tcp"),
                Duration::from_secs(10),
                &fabric(),
                &security,
            )
            .map(|client| client.shutdown().expect("shutdown"))
        })
    };
    thread::sleep(Duration::from_millis(300));
    first.shutdown().expect("shutdown");
    waiter
        .join()
        .expect("thread")
        .expect("got in after retrying");
    second.shutdown().expect("shutdown");
}

/// `clients` clients at once, each on its own thread, each writing a file
/// of its own and reading it back, over `listener`/`connector`.
fn many_clients<L, C>(listener: L, connector: impl Fn() -> C + Sync, provider: &str, clients: usize)
where
    L: RdmaListener,
    C: RdmaConnector,
{
    let access = TestAccess::new();
    let fixture = serve_with(listener, provider, access.server(), false);
    let addr = fixture.server.pipe_addr();
    let security = access.client();
    thread::scope(|scope| {
        let workers: Vec<_> = (0..clients)
            .map(|index| {
                let (connector, security) = (&connector, &security);
                scope.spawn(move || {
                    let mut options = options(provider);
                    options.io_size = 16 * 1024;
                    let mut client = net::connect(
                        addr,
                        options,
                        Duration::from_secs(60),
                        &connector(),
                        security,
                    )
                    .unwrap_or_else(|e| panic!("client {index}: {e}"));
                    let data = random_bytes(40_000 + index, index as u64);
                    let flags = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
                    let name = format!("client-{index}");
                    let file = client.open(&name, flags).expect("open");
                    client.write_at(&file, 0, &data).expect("write");
                    let mut back = vec![0; data.len()];
                    assert_eq!(
                        client.read_at(&file, 0, &mut back).expect("read"),
                        data.len()
                    );
                    assert_eq!(back, data, "client {index}");
                    client.close(file).expect("close");
                    client.shutdown().expect("shutdown");
                    (name, data)
                })
            })
            .collect();
        for worker in workers {
            let (name, data) = worker.join().expect("client thread");
            assert_eq!(
                std::fs::read(fixture.dir.path().join(&name)).expect("on disk"),
                data,
                "{name}"
            );
        }
    });
}

/// The figure: 256 clients at once, each writing a file of its own
/// and reading it back verified (beyond the old 64-session registry). One
/// process holds both ends of every client here (two sockets for each side
/// channel, the RDMA endpoints, the files): the soft limit on descriptors
/// many systems start with (1,024) is raised to the hard one first, as
/// `rdio serve` does. About 2 s per transport in a debug build on a 2-core
/// machine.
#[test]
fn two_hundred_fifty_six_clients_at_once_over_fabric() {
    rdio::net::raise_open_file_limit();
    let started = std::time::Instant::now();
    many_clients(
        FabricListener::bind(localhost(), "tcp").expect("fabric"),
        fabric,
        "ofi:tcp",
        256,
    );
    eprintln!("256 clients over fabric: {:?}", started.elapsed());
}

/// [`two_hundred_fifty_six_clients_at_once_over_fabric`] over cma.
#[test]
fn two_hundred_fifty_six_clients_at_once_over_cma() {
    rdio::net::raise_open_file_limit();
    let started = std::time::Instant::now();
    many_clients(
        CmaListener::bind(localhost()).expect("cma"),
        || CmaConnector::new().expect("cma"),
        "cma",
        256,
    );
    eprintln!("256 clients over cma: {:?}", started.elapsed());
}

#[test]
fn a_client_that_does_not_authenticate_in_time_is_closed_and_one_that_did_may_idle() {
    let access = TestAccess::new();
    let mut security = access.server();
    security.handshake_timeout = Duration::from_millis(300);
    let fixture = serve_fabric(security);
    // TLS done, then silence: closed after the timeout.
    let mut pipe = raw_tls_pipe(&fixture, &access);
    let started = std::time::Instant::now();
    pipe.send(&PipeMessage::AuthHello { name: b"tester" })
        .expect("hello");
    assert!(matches!(
        pipe.receive().expect("challenge"),
        PipeMessage::AuthChallenge { .. }
    ));
    let answer = pipe.receive();
    assert!(
        matches!(
            answer,
            Ok(PipeMessage::Refused {
                status: Status::Unauthenticated
            })
        ),
        "{answer:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    wait_for_log(&fixture, "did not authenticate in time");
    // Authenticated, then idle for several timeouts: still served.
    let mut client = connect_fabric(&fixture, &access.client()).expect("connect");
    thread::sleep(Duration::from_millis(1000));
    let file = client
        .open("after-idle", OpenFlags::WRITE | OpenFlags::CREATE)
        .expect("open after idling");
    client.close(file).expect("close");
    client.shutdown().expect("shutdown");
}
