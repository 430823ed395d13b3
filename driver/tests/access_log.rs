//! The access log (`tracing` target `rdio::access`) is complete: every
//! close with its path, bytes read and written and duration; every RDMA
//! connection's end with peer, client, transport, bytes, duration and why;
//! every refusal with why; every side channel's end. Captured here by a
//! subscriber of the test's own, fields and all.

use rdio::access::Credential;
use rdio::client::{ClientError, ClientOptions, CompletionMode};
use rdio::files::Root;
use rdio::net::fabric::{FabricConnector, FabricListener};
use rdio::net::{self, ClientSecurity, EventLog, NetError, NetEvent, NetServer};
use rdio::server::ServerOptions;
use rdio_core::wire::{OpenFlags, ProviderName, Status};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

mod support;
use support::access::TestAccess;
use support::random_bytes;

/// One `rdio::access` event: its fields as text, the message under
/// `message`.
type Fields = BTreeMap<String, String>;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Fields>>>);

struct Collect<'a>(&'a mut Fields);

impl Visit for Collect<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: tracing::Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() != "rdio::access" {
            return;
        }
        let mut fields = Fields::new();
        event.record(&mut Collect(&mut fields));
        self.0.lock().expect("capture").push(fields);
    }
}

impl Capture {
    /// The first event whose message is `message` and that has every
    /// field of `with` at that value, waiting for the server's threads.
    fn find(&self, message: &str, with: &[(&str, &str)]) -> Fields {
        for _ in 0..250 {
            let found = self.0.lock().expect("capture").iter().find_map(|fields| {
                let matches = fields.get("message").map(String::as_str) == Some(message)
                    && with
                        .iter()
                        .all(|(k, v)| fields.get(*k).map(String::as_str) == Some(*v));
                matches.then(|| fields.clone())
            });
            if let Some(fields) = found {
                return fields;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "no access-log event {message:?} with {with:?} among {:#?}",
            self.0.lock().expect("capture")
        );
    }
}

fn number(fields: &Fields, name: &str) -> f64 {
    fields
        .get(name)
        .unwrap_or_else(|| panic!("no field {name} in {fields:?}"))
        .parse()
        .unwrap_or_else(|e| panic!("field {name} of {fields:?}: {e}"))
}

fn has(fields: &Fields, names: &[&str]) {
    for name in names {
        assert!(
            fields.get(*name).is_some_and(|v| !v.is_empty()),
            "no {name} in {fields:?}"
        );
    }
}

#[test]
fn closes_connection_ends_refusals_and_side_channel_ends_are_logged_with_their_fields() {
    let capture = Capture::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(capture.clone()))
        .expect("the test's subscriber");

    let dir = tempfile::tempdir().expect("tempdir");
    let access = TestAccess::new();
    let mut options = ServerOptions::new(ProviderName::new("ofi:tcp").expect("name"), b"");
    options.max_open_files_per_client = 1;
    let listener = FabricListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)), "tcp")
        .expect("fabric listener");
    let log: EventLog = Arc::new(|_: &NetEvent<'_>| {});
    let server = NetServer::start(
        Root::new(dir.path()).expect("root"),
        SocketAddr::from(([127, 0, 0, 1], 0)),
        listener,
        options,
        access.server(),
        log,
    )
    .expect("start");
    let connector = FabricConnector::new(Some("tcp")).expect("tcp provider");
    let mut client_options = ClientOptions::new(ProviderName::new("ofi:tcp").expect("name"));
    client_options.io_size = 16 * 1024;
    client_options.queue_depth = 2;
    client_options.mode = CompletionMode::Interrupt;

    let mut client = net::connect(
        server.pipe_addr(),
        client_options.clone(),
        Duration::from_secs(5),
        &connector,
        &access.client(),
    )
    .expect("connect");
    let flags = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    let file = client.open("logged", flags).expect("open");
    let data = random_bytes(50_000, 9);
    client.write_at(&file, 0, &data).expect("write");
    let mut back = vec![0; 30_000];
    assert_eq!(client.read_at(&file, 0, &mut back).expect("read"), 30_000);
    // One file per client here: the second open is refused.
    let error = client.open("refused", flags).expect_err("over the limit");
    assert_eq!(error.status(), Some(Status::TooManyOpenFiles), "{error}");
    client.close(file).expect("close");
    client.shutdown().expect("shutdown");

    // A client the server does not know.
    let stranger = ClientSecurity {
        credential: Credential::generate("stranger").expect("credential"),
        ..access.client()
    };
    let refused = net::connect(
        server.pipe_addr(),
        client_options,
        Duration::from_secs(5),
        &connector,
        &stranger,
    )
    .expect_err("unknown client");
    assert!(
        matches!(
            refused,
            NetError::Client(ClientError::Refused(Status::Unauthenticated))
        ),
        "{refused}"
    );

    let close = capture.find("close", &[("path", "logged"), ("client", "tester")]);
    assert_eq!(number(&close, "bytes_written"), 50_000.0, "{close:?}");
    assert_eq!(number(&close, "bytes_read"), 30_000.0, "{close:?}");
    assert!(number(&close, "seconds") >= 0.0, "{close:?}");
    has(&close, &["peer"]);

    let ended = capture.find(
        "RDMA connection ended",
        &[("client", "tester"), ("transport", "ofi:tcp")],
    );
    assert_eq!(number(&ended, "bytes_written"), 50_000.0, "{ended:?}");
    assert_eq!(number(&ended, "bytes_read"), 30_000.0, "{ended:?}");
    assert!(number(&ended, "seconds") > 0.0, "{ended:?}");
    has(&ended, &["peer", "why"]);
    assert!(
        ended["why"].contains("shutdown"),
        "the client's orderly close: {ended:?}"
    );
    assert!(ended["peer"].starts_with("127.0.0.1:"), "{ended:?}");

    let over = capture.find(
        "open refused: too many open files for this client",
        &[("path", "refused"), ("client", "tester")],
    );
    assert_eq!(number(&over, "limit"), 1.0, "{over:?}");

    let unknown = capture.find("refused", &[("client", "stranger")]);
    assert_eq!(unknown["reason"], "unknown client", "{unknown:?}");

    let pipe = capture.find("side channel closed", &[("client", "tester")]);
    has(&pipe, &["peer", "seconds", "why"]);
    assert_eq!(pipe["why"], "closed by the client", "{pipe:?}");
    server.shutdown();
}
