//! Request spans carry the wire's request ids: with a subscriber that
//! records every span (trace level), each read and write of an embedded
//! session has a `request` span on the client and one on the server with
//! the same `id`, each a child of its side's `connection` span. One test:
//! the subscriber is process-wide (the server runs on threads of its own).

use rdio::embedded::{Embedded, EmbeddedOptions, Threads};
use rdio_core::wire::OpenFlags;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// A span as recorded: its name, its `id`/`kind`/`number` fields and its
/// parent.
#[derive(Clone, Debug, Default)]
struct Recorded {
    name: &'static str,
    id: Option<u64>,
    kind: Option<String>,
    /// Only the server's `connection` span has a number.
    number: Option<u64>,
    parent: Option<u64>,
}

impl Visit for Recorded {
    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "id" => self.id = Some(value),
            "number" => self.number = Some(value),
            _ => {}
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "kind" {
            self.kind = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

#[derive(Clone, Default)]
struct Spans(Arc<Mutex<HashMap<u64, Recorded>>>);

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut recorded = Recorded {
            name: attrs.metadata().name(),
            ..Recorded::default()
        };
        attrs.record(&mut recorded);
        recorded.parent = ctx
            .span(id)
            .and_then(|span| span.parent())
            .map(|parent| parent.id().into_u64());
        self.0
            .lock()
            .expect("spans")
            .insert(id.into_u64(), recorded);
    }
}

#[test]
fn request_spans_on_both_sides_carry_the_wire_request_ids() {
    let spans = Spans::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(spans.clone()))
        .expect("the only subscriber");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut pair: Embedded<Threads> =
        Embedded::start(dir.path(), EmbeddedOptions::default()).expect("start");
    let file = pair
        .client
        .open("s", OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE)
        .expect("open");
    pair.client
        .write_at(&file, 0, &[1u8; 10_000])
        .expect("write");
    let mut back = [0u8; 10_000];
    pair.client.read_at(&file, 0, &mut back).expect("read");
    let ticket = pair
        .client
        .submit_read(&file, 0, 4096)
        .expect("submit a read");
    let wire_id = u64::from(ticket.request().0);
    pair.client.wait(ticket, &mut [0u8; 4096]).expect("wait");
    pair.client.close(file).expect("close");
    pair.finish().expect("finish");

    let spans = spans.0.lock().expect("spans").clone();
    let side_of = |span: &Recorded| {
        let parent = spans.get(&span.parent?)?;
        (parent.name == "connection").then_some(parent.number.is_some())
    };
    let mut client = BTreeSet::new();
    let mut server = BTreeSet::new();
    for span in spans.values().filter(|span| span.name == "request") {
        let id = span.id.expect("a request span has an id");
        let kind = span.kind.clone().expect("and a kind");
        match side_of(span) {
            Some(true) => assert!(server.insert((id, kind))),
            Some(false) => assert!(client.insert((id, kind))),
            None => panic!("request span {span:?} outside a connection span"),
        }
    }
    assert!(
        client.len() >= 3,
        "a write, a read and the submitted read: {client:?}"
    );
    assert_eq!(client, server, "the same wire ids on both sides");
    assert!(client.contains(&(wire_id, "read".to_owned())), "{client:?}");
    assert!(client.iter().any(|(_, kind)| kind == "write"), "{client:?}");
}
