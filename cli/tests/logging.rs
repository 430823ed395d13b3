//! Tracing: `RUST_LOG` filters, `RDIO_LOG_FORMAT=json`, and request spans
//! carrying the wire's request ids on both ends of a session, inside each
//! end's `connection` span.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

/// `rdio` with a home of this test binary's own: `serve` creates its
/// identity, clients file and this user's credential there on first start,
/// and clients find and pin them there, as between two shells of one user —
/// isolated from the real home.
fn rdio_command() -> Command {
    common::rdio_in(concat!(env!("CARGO_TARGET_TMPDIR"), "/home-logging"))
}

/// The wire ids of the `request` spans of the JSON events from `target`
/// with `message` (the event's current span, `"span":{"id":N,...,"name":"request"}`),
/// each checked to sit inside a `connection` span.
fn requests(stderr: &str, target: &str, message: &str) -> BTreeSet<u64> {
    stderr
        .lines()
        .filter(|line| {
            line.contains(&format!("\"target\":\"{target}\""))
                && line.contains(&format!("\"message\":\"{message}\""))
        })
        .map(|line| {
            let span = line
                .split_once("\"span\":{")
                .and_then(|(_, rest)| rest.split_once('}'))
                .map(|(span, _)| span)
                .unwrap_or_else(|| panic!("no current span in {line}"));
            assert!(span.contains("\"name\":\"request\""), "{line}");
            assert!(
                line.contains("\"spans\":[{") && line.contains("\"name\":\"connection\""),
                "{line}"
            );
            let at = span.find("\"id\":").expect("a request id") + "\"id\":".len();
            span[at..]
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok())
                .expect("a number")
        })
        .collect()
}

#[test]
fn json_events_name_every_request_by_its_wire_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src.bin");
    std::fs::write(&src, vec![1u8; 300_000]).expect("src");
    let out = rdio_command()
        .args(["--json", "cp", "--io-size", "128K"])
        .arg(&src)
        .arg(dir.path().join("dst.bin"))
        .env("RUST_LOG", "rdio=trace")
        .env("RDIO_LOG_FORMAT", "json")
        .output()
        .expect("run rdio cp");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr
            .lines()
            .all(|line| line.starts_with('{') && line.ends_with('}'))
    );
    // The --json summary on standard output, the log on standard error.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("{\"bytes\":300000,") && stdout.contains("\"command\":\"cp\""),
        "{stdout}"
    );
    let submitted = requests(&stderr, "rdio::client", "submitted");
    // 3 reads and a read at the end of the file, at least (cp downloads
    // SRC from a read-only server: no writes).
    assert!(submitted.len() >= 4, "{submitted:?}");
    assert_eq!(requests(&stderr, "rdio::client", "completed"), submitted);
    assert_eq!(
        requests(&stderr, "rdio::server::connection", "completed"),
        submitted
    );
    assert!(stderr.contains("\"message\":\"authenticated\""), "{stderr}");
    assert!(
        stderr.contains("\"message\":\"connection ended\""),
        "{stderr}"
    );
}

#[test]
fn the_default_filter_is_quiet_and_a_bad_one_is_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src.bin");
    std::fs::write(&src, b"hello").expect("src");
    let run = |envs: &[(&str, &str)]| {
        let mut command = rdio_command();
        command
            .arg("cp")
            .arg(&src)
            .arg(dir.path().join("dst.bin"))
            .env_remove("RUST_LOG")
            .env_remove("RDIO_LOG");
        for (key, value) in envs {
            command.env(key, value);
        }
        command.output().expect("run rdio cp")
    };
    // No log by default: the summary line alone on standard error.
    let default = run(&[]);
    assert!(default.status.success());
    let stderr = String::from_utf8_lossy(&default.stderr);
    assert!(
        stderr.lines().count() == 1 && stderr.starts_with("copied "),
        "{stderr}"
    );
    for (key, value) in [
        ("RUST_LOG", "rdio=["),
        ("RDIO_LOG", "=nonsense=="),
        ("RDIO_LOG_FORMAT", "xml"),
        ("RDIO_STATS_FORMAT", "yaml"),
    ] {
        let bad = run(&[(key, value)]);
        assert_eq!(bad.status.code(), Some(2), "{key}={value}");
        let stderr = String::from_utf8_lossy(&bad.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!("rdio: error: invalid {key}")),
            "{stderr}"
        );
    }
}
