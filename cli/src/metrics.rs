//! `serve --metrics ADDR`: the server's counters in OpenMetrics text
//! (`prometheus-client`) over a minimal HTTP endpoint; `--stats`: a
//! client's counters on standard error.

use anyhow::{Context, Result};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rdio::server::Server;
use rdio::stats::{
    ClientStats, ConnectionCounters, END_REASONS, Histogram, Latencies, REQUEST_KINDS,
    SIZE_CLASSES, ServerSnapshot, TIMED_KINDS, VIOLATION_KINDS,
};
use rdio_core::wire::Status;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

type Labels = Vec<(String, String)>;

fn status_name(code: usize) -> String {
    u32::try_from(code)
        .ok()
        .and_then(|code| Status::from_u32(code).ok())
        .map_or_else(|| format!("code_{code}"), |status| format!("{status:?}"))
}

fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let metric = Counter::<u64>::default();
    metric.inc_by(value);
    registry.register(name, help, metric);
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let metric = Gauge::<i64>::default();
    metric.set(i64::try_from(value).unwrap_or(i64::MAX));
    registry.register(name, help, metric);
}

fn family(
    registry: &mut Registry,
    name: &str,
    help: &str,
    label: &str,
    values: impl IntoIterator<Item = (String, u64)>,
) {
    let metric = Family::<Labels, Counter<u64>>::default();
    for (value, count) in values {
        metric
            .get_or_create(&vec![(label.to_owned(), value)])
            .inc_by(count);
    }
    registry.register(name, help, metric);
}

/// A family of latency histograms, encoded from the counts the
/// connections keep (their own log2 buckets, no re-observation).
#[derive(Debug)]
struct LatencyFamily(Vec<(Labels, Histogram)>);

impl EncodeMetric for LatencyFamily {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> std::fmt::Result {
        for (labels, histogram) in &self.0 {
            let buckets: Vec<(f64, u64)> = histogram
                .buckets
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let bound = Histogram::bound_micros(i)
                        .map_or(f64::INFINITY, |micros| micros as f64 / 1e6);
                    (bound, *n)
                })
                .collect();
            encoder
                .encode_family(labels)?
                .encode_histogram::<NoLabelSet>(
                    histogram.sum_micros as f64 / 1e6,
                    histogram.count,
                    &buckets,
                    None,
                )?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// The latency histograms with at least one sample, labelled by request
/// kind and size class.
fn latencies(latency: &Latencies) -> LatencyFamily {
    let mut all = Vec::new();
    for (kind, classes) in REQUEST_KINDS.iter().zip(latency) {
        for (size, histogram) in SIZE_CLASSES.iter().zip(classes) {
            if histogram.count > 0 {
                let labels = vec![
                    ("kind".to_owned(), (*kind).to_owned()),
                    ("size".to_owned(), (*size).to_owned()),
                ];
                all.push((labels, *histogram));
            }
        }
    }
    LatencyFamily(all)
}

/// A gauge family with one series per live connection.
fn per_connection(
    registry: &mut Registry,
    name: &str,
    help: &str,
    live: &[(u64, ConnectionCounters)],
    value: impl Fn(&ConnectionCounters) -> u64,
    counter_type: bool,
) {
    let labels = |id: &u64| vec![("connection".to_owned(), id.to_string())];
    if counter_type {
        let family = Family::<Labels, Counter<u64>>::default();
        for (id, counters) in live {
            family.get_or_create(&labels(id)).inc_by(value(counters));
        }
        registry.register(name, help, family);
    } else {
        let family = Family::<Labels, Gauge<i64>>::default();
        for (id, counters) in live {
            family
                .get_or_create(&labels(id))
                .set(i64::try_from(value(counters)).unwrap_or(i64::MAX));
        }
        registry.register(name, help, family);
    }
}

/// The OpenMetrics text of a server's counters: totals over every
/// connection (live and ended), then the first
/// [`rdio::stats::LABELLED_CONNECTIONS`] live connections' own, labelled
/// `connection` (`docs/METRICS.md` lists them all).
pub fn render(stats: &ServerSnapshot, open_files: usize) -> Result<String> {
    let totals = &stats.totals;
    let mut registry = Registry::with_prefix("rdio_server");
    counter(
        &mut registry,
        "connections",
        "RDMA connections accepted",
        stats.connections,
    );
    gauge(
        &mut registry,
        "connections_active",
        "RDMA connections being served",
        stats.active,
    );
    gauge(
        &mut registry,
        "open_files",
        "Files open (opened on a pipe, not closed)",
        open_files as u64,
    );
    counter(
        &mut registry,
        "registrations",
        "Files registered",
        totals.registrations,
    );
    counter(
        &mut registry,
        "closes",
        "Registered files closed",
        totals.closes,
    );
    counter(
        &mut registry,
        "auth_failures",
        "Authentication keys refused",
        stats.auth_failures,
    );
    family(
        &mut registry,
        "reads",
        "Read requests served, zero-copy from a leased mapping or copied through a bounce buffer",
        "path",
        [
            ("zero_copy".to_owned(), totals.zero_copy_reads),
            ("copied".to_owned(), totals.copied_reads),
        ],
    );
    counter(
        &mut registry,
        "reads_joined",
        "Zero-copy reads whose status block went in the same RDMA write as their data",
        totals.joined_reads,
    );
    counter(
        &mut registry,
        "writes",
        "Write requests and fragments placed in files",
        totals.writes,
    );
    counter(
        &mut registry,
        "read_bytes",
        "Bytes read from files for clients",
        totals.bytes_read,
    );
    counter(
        &mut registry,
        "written_bytes",
        "Bytes written to files for clients",
        totals.bytes_written,
    );
    family(
        &mut registry,
        "completions",
        "Requests completed by status block, by status",
        "status",
        totals
            .completions
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(code, n)| (status_name(code), *n)),
    );
    counter(
        &mut registry,
        "credits_granted",
        "Credits granted to clients (counted as each client acknowledges the grant)",
        totals.core.credits_granted,
    );
    counter(
        &mut registry,
        "credits_revoked",
        "Credits revoked from clients (counted as each credit is given up)",
        totals.core.credits_revoked,
    );
    gauge(
        &mut registry,
        "credits",
        "Credits the connected clients hold",
        totals.credits,
    );
    gauge(
        &mut registry,
        "credits_in_use",
        "Credits in use: client messages received and not yet answered",
        totals.credits_in_use,
    );
    counter(
        &mut registry,
        "keepalives",
        "Keepalives received from clients",
        totals.core.keepalives,
    );
    counter(
        &mut registry,
        "keepalives_answered",
        "Keepalives answered",
        totals.core.keepalives_answered,
    );
    counter(
        &mut registry,
        "read_batches",
        "Read batches received (ReadBatch messages, two or more reads each)",
        totals.core.read_batches,
    );
    counter(
        &mut registry,
        "transport_errors",
        "Connections ended by a failed work request or transport call",
        totals.transport_errors,
    );
    counter(
        &mut registry,
        "dead_peers",
        "Connections ended because the client fell silent (idle timeout)",
        stats.ends.get(2).copied().unwrap_or(0),
    );
    family(
        &mut registry,
        "connection_ends",
        "RDMA connections ended, by reason",
        "reason",
        END_REASONS
            .iter()
            .zip(&stats.ends)
            .map(|(reason, n)| ((*reason).to_owned(), *n)),
    );
    family(
        &mut registry,
        "violations",
        "Connections ended by a client's protocol violation, by kind",
        "kind",
        VIOLATION_KINDS
            .iter()
            .zip(&stats.violations)
            .map(|(kind, n)| ((*kind).to_owned(), *n)),
    );
    registry.register(
        "request_latency_seconds",
        "Receipt of a read or write request to its status block being posted, by kind and size class",
        latencies(&totals.latency),
    );
    let live = &stats.live;
    per_connection(
        &mut registry,
        "connection_read_bytes",
        "Bytes read from files for this connection's client",
        live,
        |c| c.bytes_read,
        true,
    );
    per_connection(
        &mut registry,
        "connection_written_bytes",
        "Bytes written to files for this connection's client",
        live,
        |c| c.bytes_written,
        true,
    );
    per_connection(
        &mut registry,
        "connection_completions",
        "Requests completed by status block on this connection",
        live,
        |c| c.completions.iter().sum(),
        true,
    );
    per_connection(
        &mut registry,
        "connection_credits",
        "Credits this connection's client holds",
        live,
        |c| c.credits,
        false,
    );
    per_connection(
        &mut registry,
        "connection_credits_in_use",
        "Credits in use on this connection",
        live,
        |c| c.credits_in_use,
        false,
    );
    per_connection(
        &mut registry,
        "connection_credits_granted",
        "Credits granted to this connection's client",
        live,
        |c| c.core.credits_granted,
        true,
    );
    per_connection(
        &mut registry,
        "connection_credits_revoked",
        "Credits revoked from this connection's client",
        live,
        |c| c.core.credits_revoked,
        true,
    );
    let mut text = String::new();
    encode(&mut text, &registry).context("cannot encode the metrics")?;
    Ok(text)
}

/// Serve `server`'s metrics at `addr` (`GET /metrics`) on a thread of its
/// own; returns the bound address (port 0 picks one).
pub fn serve(addr: SocketAddr, server: Arc<Server>) -> Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .with_context(|| format!("cannot listen for --metrics on {addr}"))?;
    let bound = listener.local_addr().context("--metrics address")?;
    std::thread::Builder::new()
        .name("rdio-metrics".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                // One scrape at a time; a client that stalls is cut off by
                // the timeouts.
                let _ = answer(stream, &server);
            }
        })
        .context("cannot start the metrics thread")?;
    Ok(bound)
}

fn answer(mut stream: TcpStream, server: &Server) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut request = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&chunk[..n]);
    }
    let line = request.split(|&b| b == b'\r').next().unwrap_or_default();
    let (status, body, kind) = if line.starts_with(b"GET /metrics ") || line.starts_with(b"GET / ")
    {
        match render(&server.stats(), server.open_files()) {
            Ok(text) => (
                "200 OK",
                text,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            ),
            Err(error) => (
                "500 Internal Server Error",
                format!("{error:#}\n"),
                "text/plain",
            ),
        }
    } else {
        ("404 Not Found", "GET /metrics\n".to_owned(), "text/plain")
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

fn latency_line(kind: &str, class: &str, histogram: &Histogram) -> String {
    let bound = |q| {
        histogram
            .quantile_bound(q)
            .map_or_else(|| "≥1 s".to_owned(), |micros| format!("<{micros} µs"))
    };
    format!(
        "rdio: stats: latency {kind} {class}: {} requests, mean {} µs, p50 {}, p99 {}",
        histogram.count,
        histogram.sum_micros / histogram.count.max(1),
        bound(0.5),
        bound(0.99)
    )
}

/// Names and counts of the non-zero entries of `counts`.
fn named<'a>(names: &'a [&str], counts: &'a [u64]) -> impl Iterator<Item = (&'a str, u64)> {
    names
        .iter()
        .zip(counts)
        .filter(|(_, n)| **n > 0)
        .map(|(name, n)| (*name, *n))
}

fn statuses(stats: &ClientStats) -> impl Iterator<Item = (String, u64)> + '_ {
    stats
        .completions
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(code, n)| (status_name(code), *n))
}

/// Whether `RDIO_STATS_FORMAT` asks for JSON (`json`) rather than text
/// (`text`, or unset); anything else is an error.
pub fn stats_format() -> Result<bool> {
    match std::env::var("RDIO_STATS_FORMAT").as_deref() {
        Ok("json") => Ok(true),
        Ok("text") | Err(_) => Ok(false),
        Ok(other) => anyhow::bail!("invalid RDIO_STATS_FORMAT {other:?}: expected text or json"),
    }
}

/// `--stats`: a client's counters on standard error, a few lines of text,
/// or with `RDIO_STATS_FORMAT=json` one line of [`client_json`].
pub fn print_client(stats: &ClientStats) -> Result<()> {
    // With `--json`, one more JSON line beside the summaries, where they
    // go (standard output, or standard error when the data is there).
    if crate::report::json() {
        crate::report::summary(
            "",
            serde_json::json!({ "command": "stats", "stats": client_json(stats) }),
        );
        return Ok(());
    }
    if stats_format()? {
        eprintln!("{}", client_json(stats));
        return Ok(());
    }
    let list = |pairs: Vec<String>| pairs.join(", ");
    let requests = named(&REQUEST_KINDS, &stats.requests).map(|(kind, n)| format!("{kind} {n}"));
    eprintln!("rdio: stats: requests {}", list(requests.collect()));
    let completions = statuses(stats).map(|(status, n)| format!("{status} {n}"));
    eprintln!("rdio: stats: completions {}", list(completions.collect()));
    eprintln!(
        "rdio: stats: bytes read {}, written {}; in flight at most {}; credits {} granted, \
         {} in use; failed work requests {}",
        stats.bytes_read,
        stats.bytes_written,
        stats.max_in_flight,
        stats.credits,
        stats.credits_in_use,
        stats.transport_errors
    );
    let core = &stats.connection;
    eprintln!(
        "rdio: stats: credits granted {}, revoked {}, waits {}; keepalives sent {}, answered {}; read batches {}",
        core.credits_granted,
        core.credits_revoked,
        core.credit_waits,
        core.keepalives,
        core.keepalives_answered,
        core.read_batches
    );
    let violations: Vec<String> = named(&VIOLATION_KINDS, &stats.violations)
        .map(|(kind, n)| format!("{kind} {n}"))
        .collect();
    eprintln!(
        "rdio: stats: dead peer {}; violations {}",
        stats.dead_peer,
        if violations.is_empty() {
            "none".to_owned()
        } else {
            list(violations)
        }
    );
    for (kind, classes) in REQUEST_KINDS.iter().zip(&stats.latency) {
        for (class, histogram) in SIZE_CLASSES.iter().zip(classes) {
            if histogram.count > 0 {
                eprintln!("{}", latency_line(kind, class, histogram));
            }
        }
    }
    Ok(())
}

/// A client's counters as JSON, for `--stats` with
/// `RDIO_STATS_FORMAT=json` and for embedding in a `--json` summary.
/// Zero counts are left out of the by-name objects; every histogram with
/// samples is listed with its buckets (`le_us`: upper bound in µs, `null`
/// for the last, unbounded one) — the shape `docs/METRICS.md` documents.
pub fn client_json(stats: &ClientStats) -> serde_json::Value {
    use serde_json::{Map, Value, json};
    let object = |pairs: Vec<(String, u64)>| {
        Value::Object(
            pairs
                .into_iter()
                .map(|(k, n)| (k, json!(n)))
                .collect::<Map<_, _>>(),
        )
    };
    let by_name = |names: &[&str], counts: &[u64]| {
        object(
            named(names, counts)
                .map(|(name, n)| (name.to_owned(), n))
                .collect(),
        )
    };
    let mut latency = Vec::new();
    for (kind, classes) in REQUEST_KINDS.iter().take(TIMED_KINDS).zip(&stats.latency) {
        for (class, histogram) in SIZE_CLASSES.iter().zip(classes) {
            if histogram.count == 0 {
                continue;
            }
            let buckets: Vec<Value> = histogram
                .buckets
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(i, n)| json!({ "le_us": Histogram::bound_micros(i), "count": n }))
                .collect();
            latency.push(json!({
                "kind": kind,
                "size": class,
                "count": histogram.count,
                "sum_us": histogram.sum_micros,
                "p50_us": histogram.quantile_bound(0.5),
                "p99_us": histogram.quantile_bound(0.99),
                "buckets": buckets,
            }));
        }
    }
    let core = &stats.connection;
    json!({
        "requests": by_name(&REQUEST_KINDS, &stats.requests),
        "completions": object(statuses(stats).collect()),
        "bytes_read": stats.bytes_read,
        "bytes_written": stats.bytes_written,
        "in_flight": stats.in_flight,
        "max_in_flight": stats.max_in_flight,
        "credits": stats.credits,
        "credits_in_use": stats.credits_in_use,
        "credits_granted": core.credits_granted,
        "credits_revoked": core.credits_revoked,
        "credit_waits": core.credit_waits,
        "keepalives_sent": core.keepalives,
        "keepalives_answered": core.keepalives_answered,
        "read_batches": core.read_batches,
        "transport_errors": stats.transport_errors,
        "dead_peer": stats.dead_peer,
        "violations": by_name(&VIOLATION_KINDS, &stats.violations),
        "latency": latency,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(live: &[u64]) -> ServerSnapshot {
        let live: Vec<(u64, ConnectionCounters)> = live
            .iter()
            .map(|&id| {
                let mut counters = ConnectionCounters {
                    credits: 5,
                    bytes_read: 10 * id,
                    ..ConnectionCounters::default()
                };
                counters.core.credits_granted = 2;
                counters.latency[0][1].record(Duration::from_micros(100));
                (id, counters)
            })
            .collect();
        let mut totals = ConnectionCounters::default();
        totals.latency[0][1].record(Duration::from_micros(100));
        ServerSnapshot {
            connections: live.len() as u64,
            active: live.len() as u64,
            ends: vec![0; END_REASONS.len()],
            violations: vec![0; VIOLATION_KINDS.len()],
            totals,
            live,
            ..ServerSnapshot::default()
        }
    }

    #[test]
    fn live_connections_get_labelled_series_and_ended_ones_none() {
        let text = render(&snapshot(&[3, 7]), 0).expect("render");
        for line in [
            "rdio_server_connection_credits{connection=\"3\"} 5",
            "rdio_server_connection_credits{connection=\"7\"} 5",
            "rdio_server_connection_read_bytes_total{connection=\"7\"} 70",
            "rdio_server_connection_credits_granted_total{connection=\"3\"} 2",
            "rdio_server_request_latency_seconds_count{kind=\"read\",size=\"64KiB\"} 1",
            "rdio_server_request_latency_seconds_bucket{le=\"0.000128\",kind=\"read\",size=\"64KiB\"} 1",
            "rdio_server_request_latency_seconds_bucket{le=\"0.000064\",kind=\"read\",size=\"64KiB\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line} in\n{text}");
        }
        let text = render(&snapshot(&[]), 0).expect("render");
        assert!(!text.contains("connection=\""), "{text}");
    }

    #[test]
    fn client_json_names_what_it_counts() {
        let mut stats = ClientStats {
            requests: [2, 0, 1, 0, 1, 1],
            completions: vec![0; rdio::stats::STATUS_SLOTS],
            bytes_read: 8192,
            credits: 4,
            ..ClientStats::default()
        };
        stats.connection.credit_waits = 3;
        stats.violations[4] = 1;
        stats.latency[2][0].record(Duration::from_micros(3));
        let json = client_json(&stats);
        assert_eq!(
            json["requests"],
            serde_json::json!({ "read": 2, "write": 1, "register": 1, "close": 1 })
        );
        assert_eq!(json["credit_waits"], 3);
        assert_eq!(json["credits"], 4);
        assert_eq!(
            json["violations"],
            serde_json::json!({ "credit_mismatch": 1 })
        );
        assert_eq!(
            json["latency"],
            serde_json::json!([{
                "kind": "write", "size": "4KiB", "count": 1, "sum_us": 3,
                "p50_us": 4, "p99_us": 4, "buckets": [{ "le_us": 4, "count": 1 }],
            }])
        );
    }
}
