//! The binary's failure contract: non-zero exit and exactly one
//! `rdio: error: ...` line on standard error.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Once;

/// The home every `rdio` here runs with, isolated from the real one, with
/// a client credential (so client errors past it are the ones tested).
fn home() -> &'static Path {
    static CREDENTIAL: Once = Once::new();
    let home = Path::new(concat!(env!("CARGO_TARGET_TMPDIR"), "/home-errors"));
    CREDENTIAL.call_once(|| {
        let credential = home.join(".config/rdio/credential");
        if !credential.exists() {
            std::fs::create_dir_all(credential.parent().expect("dir")).expect("config dir");
            let secret = "5a".repeat(32);
            std::fs::write(&credential, format!("name tester\nsecret {secret}\n"))
                .expect("credential");
        }
    });
    home
}

fn command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rdio"));
    command
        .env("HOME", home())
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_STATE_HOME");
    command
}

fn rdio(args: &[&str]) -> Output {
    command().args(args).output().expect("run rdio")
}

/// `rdio` on a machine without libfabric: `RDIO_LIBFABRIC` names a library
/// that does not exist.
fn rdio_without_libfabric(args: &[&str]) -> Output {
    command()
        .args(args)
        .env(rdio_fabric::LIBFABRIC_ENV, "/nonexistent/libfabric.so.1")
        .output()
        .expect("run rdio")
}

/// Assert a failure with `code` whose single stderr line contains `needle`.
fn assert_one_line_error(args: &[&str], code: i32, needle: &str) {
    assert_one_line_failure(args, &rdio(args), code, needle);
}

/// [`assert_one_line_error`] for the output `out` of a run with `args`.
fn assert_one_line_failure(args: &[&str], out: &Output, code: i32, needle: &str) {
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
    assert_one_line_error(&["bench", "--repeat", "0"], 2, "0");
    assert_one_line_error(&["bench", "--no-baselines"], 2, "--server");
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
    assert_one_line_error(&["put", "local", "host:0:x"], 2, "port");
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

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[test]
fn networked_commands_explain_what_is_wrong() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing");
    let missing = missing.to_str().expect("utf-8");
    assert_one_line_error(
        &["serve", "--root", missing, "--listen", "127.0.0.1:0"],
        1,
        "cannot serve",
    );
    assert_one_line_error(
        &[
            "serve",
            "--root",
            "/tmp",
            "--listen",
            "127.0.0.1:0",
            "--provider",
            "no-such-provider",
        ],
        1,
        "no-such-provider",
    );
    let unreachable = format!("127.0.0.1:{}:file", closed_port());
    let local = dir.path().join("x");
    let local = local.to_str().expect("utf-8");
    assert_one_line_error(&["get", &unreachable, local], 1, "cannot connect");
    assert!(!dir.path().join("x").exists(), "nothing written");
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("list").count(),
        0,
        "no partial file left behind"
    );
    assert_one_line_error(&["put", "/etc/hostname", &unreachable], 1, "cannot connect");
    assert_one_line_error(&["put", missing, &unreachable], 1, "cannot open");
    assert_one_line_error(
        &["--transport", "fabric", "cp", "/etc/hostname", local],
        1,
        "runs its server in this process",
    );
    assert_one_line_error(
        &["--transport", "loopback", "get", &unreachable, local],
        1,
        "only reaches a server in this process",
    );
}

/// libfabric is opened when a command first needs it, not linked: without
/// it the fabric commands say what is missing and the in-process ones work.
#[test]
fn only_fabric_commands_need_libfabric() {
    let dir = tempfile::tempdir().expect("tempdir");
    let local = dir.path().join("x");
    let local = local.to_str().expect("utf-8");
    let unreachable = format!("127.0.0.1:{}", closed_port());
    let remote = format!("{unreachable}:file");
    for args in [
        &["get", &remote, local][..],
        &["put", "/etc/hostname", &remote],
        &["serve", "--root", "/tmp", "--listen", "127.0.0.1:0"],
        &["bench", "--server", &unreachable],
    ] {
        let out = rdio_without_libfabric(args);
        assert_one_line_failure(
            args,
            &out,
            1,
            "libfabric could not be loaded: /nonexistent/libfabric.so.1: \
             cannot open shared object file",
        );
        assert_one_line_failure(args, &out, 1, "apt-get install libfabric1");
    }
    let out = rdio_without_libfabric(&["cp", "/etc/hostname", local]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(local).expect("copied"),
        std::fs::read("/etc/hostname").expect("source")
    );
    assert!(rdio_without_libfabric(&["--version"]).status.success());
}

/// This machine's kernel has no RDMA (ibv_get_device_list fails with
/// ENOSYS): `--transport verbs` must say so, not crash or hang.
#[test]
fn verbs_without_devices_says_so() {
    if std::path::Path::new("/sys/class/infiniband").exists() {
        eprintln!("skipped: this host has RDMA devices (/sys/class/infiniband)");
        return;
    }
    let unreachable = format!("127.0.0.1:{}:file", closed_port());
    assert_one_line_error(
        &[
            "--transport",
            "verbs",
            "get",
            &unreachable,
            "/tmp/rdio-never-written",
        ],
        1,
        "no RDMA devices",
    );
    assert_one_line_error(
        &[
            "--transport",
            "verbs",
            "serve",
            "--root",
            "/tmp",
            "--listen",
            "127.0.0.1:0",
        ],
        1,
        "no RDMA devices",
    );
    assert_one_line_error(&["--transport", "verbs", "bench"], 1, "no RDMA devices");
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
