//! The binary's failure contract: non-zero exit and exactly one
//! `rdio: error: ...` line on standard error.

use std::process::{Command, Output};

fn rdio(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rdio"))
        .args(args)
        .output()
        .expect("run rdio")
}

/// Assert a failure with `code` whose single stderr line contains `needle`.
fn assert_one_line_error(args: &[&str], code: i32, needle: &str) {
    let out = rdio(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(code),
        "args {args:?}, stderr {stderr}"
    );
    assert_eq!(
        stderr.lines().count(),
        1,
        "args {args:?}: one line expected, got {stderr:?}"
    );
    assert!(
        stderr.starts_with("rdio: error: "),
        "args {args:?}: {stderr}"
    );
    assert!(
        stderr.contains(needle),
        "args {args:?}: {stderr:?} lacks {needle:?}"
    );
    assert!(out.stdout.is_empty(), "args {args:?}: nothing on stdout");
}

#[test]
fn usage_errors_are_one_line_with_status_2() {
    assert_one_line_error(&[], 2, "requires a subcommand");
    assert_one_line_error(&["cp"], 2, "<SRC>");
    assert_one_line_error(&["frobnicate"], 2, "frobnicate");
    assert_one_line_error(&["bench", "--sizes", "4K,4Q"], 2, "invalid size '4Q'");
    assert_one_line_error(&["bench", "--queue-depths", "0"], 2, "0");
    assert_one_line_error(
        &["cp", "a", "b", "--io-size", "1.5M"],
        2,
        "invalid size '1.5M'",
    );
    assert_one_line_error(
        &["get", "nocolon", "local"],
        2,
        "invalid remote path 'nocolon'",
    );
    assert_one_line_error(&["put", "local", "host:port:x"], 2, "port");
    assert_one_line_error(
        &["serve", "--root", "/tmp", "--listen", "not-an-addr"],
        2,
        "not-an-addr",
    );
    assert_one_line_error(
        &["--transport", "carrier-pigeon", "bench"],
        2,
        "carrier-pigeon",
    );
}

#[test]
fn networked_commands_are_refused_honestly() {
    let not_available = "not available in this build";
    assert_one_line_error(
        &["serve", "--root", "/tmp", "--listen", "127.0.0.1:7472"],
        1,
        not_available,
    );
    assert_one_line_error(&["get", "127.0.0.1:7472:file", "/tmp/x"], 1, not_available);
    assert_one_line_error(
        &["put", "/etc/hostname", "127.0.0.1:7472:file"],
        1,
        not_available,
    );
    assert_one_line_error(&["--transport", "verbs", "bench"], 1, not_available);
    assert_one_line_error(
        &["--transport", "fabric", "cp", "/etc/hostname", "/tmp/x"],
        1,
        not_available,
    );
}

#[test]
fn cp_reports_a_missing_source() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing");
    let dst = dir.path().join("dst");
    assert_one_line_error(
        &[
            "cp",
            missing.to_str().expect("utf-8"),
            dst.to_str().expect("utf-8"),
        ],
        1,
        "cannot open",
    );
    assert!(!dst.exists(), "nothing written");
}

#[test]
fn every_subcommand_has_help() {
    for sub in [
        &["--help"][..],
        &["cp", "--help"],
        &["bench", "--help"],
        &["serve", "--help"],
        &["get", "--help"],
        &["put", "--help"],
    ] {
        let out = rdio(sub);
        assert_eq!(out.status.code(), Some(0), "{sub:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("Usage: rdio"), "{sub:?}: {stdout}");
    }
    let out = rdio(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
}
