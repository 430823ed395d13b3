//! `serve --metrics ADDR`: the server's counters in OpenMetrics text
//! (`prometheus-client`) over a minimal HTTP endpoint; `--stats`: a
//! client's counters on standard error.

use anyhow::{Context, Result};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rdio::server::Server;
use rdio::stats::{
    ClientStats, END_REASONS, Histogram, REQUEST_KINDS, SIZE_CLASSES, ServerSnapshot,
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

/// The OpenMetrics text of a server's counters.
pub fn render(stats: &ServerSnapshot, open_files: usize) -> Result<String> {
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
        stats.registrations,
    );
    counter(
        &mut registry,
        "closes",
        "Registered files closed",
        stats.closes,
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
            ("zero_copy".to_owned(), stats.zero_copy_reads),
            ("copied".to_owned(), stats.copied_reads),
        ],
    );
    counter(
        &mut registry,
        "writes",
        "Write requests and fragments placed in files",
        stats.writes,
    );
    counter(
        &mut registry,
        "read_bytes",
        "Bytes read from files for clients",
        stats.bytes_read,
    );
    counter(
        &mut registry,
        "written_bytes",
        "Bytes written to files for clients",
        stats.bytes_written,
    );
    family(
        &mut registry,
        "completions",
        "Requests completed by status block, by status",
        "status",
        stats
            .completions
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(code, n)| (status_name(code), *n)),
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

fn latency_line(class: &str, histogram: &Histogram) -> String {
    let bound = |q| {
        histogram
            .quantile_bound(q)
            .map_or_else(|| "≥1 s".to_owned(), |micros| format!("<{micros} µs"))
    };
    format!(
        "rdio: stats: latency {class}: {} requests, mean {} µs, p50 {}, p99 {}",
        histogram.count,
        histogram.sum_micros / histogram.count.max(1),
        bound(0.5),
        bound(0.99)
    )
}

/// `--stats`: a client's counters, a few lines on standard error.
pub fn print_client(stats: &ClientStats, credits: u16, credits_in_use: u16) {
    let requests: Vec<String> = REQUEST_KINDS
        .iter()
        .zip(stats.requests)
        .filter(|(_, n)| *n > 0)
        .map(|(kind, n)| format!("{kind} {n}"))
        .collect();
    let completions: Vec<String> = stats
        .completions
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(code, n)| format!("{} {n}", status_name(code)))
        .collect();
    eprintln!("rdio: stats: requests {}", requests.join(", "));
    eprintln!("rdio: stats: completions {}", completions.join(", "));
    eprintln!(
        "rdio: stats: bytes read {}, written {}; in flight at most {}; credits {credits} granted, \
         {credits_in_use} in use; failed work requests {}",
        stats.bytes_read, stats.bytes_written, stats.max_in_flight, stats.transport_errors
    );
    for (class, histogram) in SIZE_CLASSES.iter().zip(&stats.latency) {
        if histogram.count > 0 {
            eprintln!("{}", latency_line(class, histogram));
        }
    }
}
