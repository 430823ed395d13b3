//! `serve --metrics` and `--stats`: after a scripted session (a put and a
//! get of a known file between real processes over libfabric's tcp
//! provider on 127.0.0.1), the server's OpenMetrics text and the clients'
//! counters hold exactly the values the session implies.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `rdio` with a home of this test binary's own: `serve` creates its
/// identity, clients file and this user's credential there on first start,
/// and clients find and pin them there, as between two shells of one user —
/// isolated from the real home.
fn rdio_command() -> Command {
    common::rdio_in(concat!(env!("CARGO_TARGET_TMPDIR"), "/home-metrics"))
}

/// `GET /metrics` at `addr` (`HOST:PORT`): the body.
fn scrape(addr: &str, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let (head, body) = response.split_once("\r\n\r\n").expect("headers");
    (head.to_owned(), body.to_owned())
}

/// Samples by name with labels, e.g. `rdio_server_reads_total{path="copied"}`
/// (all but histogram sums, which are seconds).
fn samples(body: &str) -> HashMap<String, u64> {
    body.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter(|line| {
            !line
                .split([' ', '{'])
                .next()
                .unwrap_or("")
                .ends_with("_sum")
        })
        .map(|line| {
            let (name, value) = line.rsplit_once(' ').expect("sample");
            (name.to_owned(), value.parse().expect("integer value"))
        })
        .collect()
}

/// The `--stats` line starting `rdio: stats: {what} `, as `name n` pairs.
fn stat_line(stderr: &str, what: &str) -> HashMap<String, u64> {
    let prefix = format!("rdio: stats: {what} ");
    let line = stderr
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {what} line in {stderr}"));
    line.split(", ")
        .map(|pair| {
            let (name, n) = pair.rsplit_once(' ').expect("name n");
            (name.to_owned(), n.parse().expect("count"))
        })
        .collect()
}

fn rdio(args: &[&str]) -> String {
    let out = rdio_command().args(args).output().expect("run rdio");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "rdio {args:?}: {stderr}");
    stderr
}

#[test]
fn metrics_and_stats_count_a_scripted_session_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    std::fs::create_dir(&root).expect("root");
    // 300 000 bytes in 64 KiB requests: 5 writes, 5 reads (the last
    // short) and then a read at the end of the file.
    const SIZE: u64 = 300_000;
    let src = dir.path().join("src.bin");
    std::fs::write(&src, vec![7u8; SIZE as usize]).expect("src");
    let (mut server, pipe, line) = common::spawn_serve(
        rdio_command()
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--metrics",
                "127.0.0.1:0",
                "--root",
            ])
            .arg(&root)
            .stderr(Stdio::null()),
    );
    let metrics = line
        .trim_end()
        .rsplit_once(", metrics on http://")
        .and_then(|(_, url)| url.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("no metrics address in {line:?}"))
        .to_owned();

    // Before any client: everything zero, and the endpoint's format.
    let (head, body) = scrape(&metrics, "/metrics");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(head.contains("application/openmetrics-text"), "{head}");
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert_eq!(samples(&body)["rdio_server_connections_total"], 0);
    assert!(scrape(&metrics, "/other").0.starts_with("HTTP/1.1 404"));

    let remote = format!("{pipe}:f.bin");
    let src = src.to_str().expect("utf-8");
    let put = rdio(&["put", src, &remote, "--io-size", "64K", "--stats"]);
    let dst = dir.path().join("dst.bin");
    let dst = dst.to_str().expect("utf-8");
    // The get prints its counters as JSON (`metrics::client_json`).
    let out = rdio_command()
        .args([
            "get",
            &remote,
            dst,
            "--io-size",
            "64K",
            "--stats",
            "--polling",
        ])
        .env("RDIO_STATS_FORMAT", "json")
        .output()
        .expect("run rdio get");
    let get = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{get}");
    let get: serde_json::Value = get
        .lines()
        .find(|line| line.starts_with('{'))
        .and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("no JSON stats in {get}"));

    // The clients' own counters.
    assert_eq!(
        stat_line(&put, "requests"),
        HashMap::from([
            ("write".into(), 5),
            ("register".into(), 1),
            ("close".into(), 1)
        ])
    );
    assert_eq!(
        stat_line(&put, "completions"),
        HashMap::from([("Success".into(), 7)])
    );
    assert!(
        put.contains(&format!("rdio: stats: bytes read 0, written {SIZE};")),
        "{put}"
    );
    assert!(
        put.contains("rdio: stats: latency write 64KiB: 5 requests,"),
        "{put}"
    );
    assert!(
        put.contains(
            "rdio: stats: credits granted 0, revoked 0, waits 0; keepalives sent 0, answered 0"
        ),
        "{put}"
    );
    assert!(
        put.contains("rdio: stats: dead peer 0; violations none"),
        "{put}"
    );
    let reads = get["requests"]["read"].as_u64().expect("reads");
    assert!(reads >= 5, "{get}");
    assert_eq!(
        get["requests"].as_object().map(|o| o.len()),
        Some(3),
        "{get}"
    );
    assert_eq!(
        get["completions"],
        serde_json::json!({ "Success": 7, "EndOfFile": reads - 5 })
    );
    for (name, value) in [
        ("bytes_read", SIZE),
        ("bytes_written", 0),
        ("credits", 64),
        ("credits_in_use", 0),
        ("credits_granted", 0),
        ("credits_revoked", 0),
        ("transport_errors", 0),
        ("dead_peer", 0),
    ] {
        assert_eq!(get[name].as_u64(), Some(value), "{name} in {get}");
    }
    assert_eq!(get["violations"], serde_json::json!({}));
    // Every read asked for 64 KiB (the last ones short or at the end).
    let latency = get["latency"].as_array().expect("latency");
    assert_eq!(latency.len(), 1, "{get}");
    assert_eq!(latency[0]["kind"], "read");
    assert_eq!(latency[0]["size"], "64KiB");
    assert_eq!(latency[0]["count"].as_u64(), Some(reads));
    let bucketed: u64 = latency[0]["buckets"]
        .as_array()
        .expect("buckets")
        .iter()
        .map(|bucket| bucket["count"].as_u64().expect("count"))
        .sum();
    assert_eq!(bucketed, reads);

    // The server's, once it has seen both connections end.
    let started = Instant::now();
    let values = loop {
        let values = samples(&scrape(&metrics, "/metrics").1);
        if values["rdio_server_connection_ends_total{reason=\"shutdown\"}"] == 2 {
            break values;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{values:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let expected = [
        ("rdio_server_connections_total", 2),
        ("rdio_server_connections_active", 0),
        ("rdio_server_open_files", 0),
        ("rdio_server_registrations_total", 2),
        ("rdio_server_closes_total", 2),
        ("rdio_server_auth_failures_total", 0),
        ("rdio_server_read_bytes_total", SIZE),
        ("rdio_server_written_bytes_total", SIZE),
        ("rdio_server_completions_total{status=\"Success\"}", 10),
        (
            "rdio_server_completions_total{status=\"EndOfFile\"}",
            reads - 5,
        ),
        (
            "rdio_server_connection_ends_total{reason=\"protocol_violation\"}",
            0,
        ),
        ("rdio_server_connection_ends_total{reason=\"lost\"}", 0),
        ("rdio_server_credits_granted_total", 0),
        ("rdio_server_credits_revoked_total", 0),
        ("rdio_server_credits", 0),
        ("rdio_server_credits_in_use", 0),
        ("rdio_server_keepalives_total", 0),
        ("rdio_server_transport_errors_total", 0),
        ("rdio_server_dead_peers_total", 0),
        ("rdio_server_violations_total{kind=\"credit_mismatch\"}", 0),
        (
            "rdio_server_request_latency_seconds_count{kind=\"write\",size=\"64KiB\"}",
            5,
        ),
        (
            "rdio_server_request_latency_seconds_count{kind=\"read\",size=\"64KiB\"}",
            reads,
        ),
        (
            "rdio_server_request_latency_seconds_bucket{le=\"+Inf\",kind=\"read\",size=\"64KiB\"}",
            reads,
        ),
    ];
    for (name, value) in expected {
        assert_eq!(values.get(name), Some(&value), "{name} in {values:?}");
    }
    let served = values["rdio_server_reads_total{path=\"zero_copy\"}"]
        + values["rdio_server_reads_total{path=\"copied\"}"];
    assert_eq!(served, reads);
    // Every write request and fragment placed: at least one per write.
    assert!(values["rdio_server_writes_total"] >= 5, "{values:?}");

    // Both connections ended: no per-connection series are left.
    let body = scrape(&metrics, "/metrics").1;
    assert!(!body.contains("connection=\""), "{body}");
    assert!(
        body.contains("# TYPE rdio_server_request_latency_seconds histogram"),
        "{body}"
    );

    let _ = server.kill();
    let _ = server.wait();
}
