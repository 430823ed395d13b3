//! `rdio doctor` on this machine (no RDMA device, libfabric's tcp provider
//! and cma working), `serve`'s warning about a root without file leases,
//! and `--explain` naming the step a connection failed at.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::RDIO;

/// `rdio` with a home of this test binary's own: `serve` creates its
/// identity, clients file and this user's credential there on first start,
/// and clients find and pin them there, as between two shells of one user —
/// isolated from the real home.
fn rdio_command() -> Command {
    common::rdio_in(concat!(env!("CARGO_TARGET_TMPDIR"), "/home-doctor"))
}

fn rdio(args: &[&str]) -> Output {
    rdio_command().args(args).output().expect("run rdio")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The report line of `check`: `  NAME      VERDICT DETAIL`.
fn line<'a>(report: &'a str, check: &str) -> &'a str {
    report
        .lines()
        .find(|line| line.split_whitespace().next() == Some(check))
        .unwrap_or_else(|| panic!("no {check} line in:\n{report}"))
}

fn verdict(report: &str, check: &str) -> String {
    line(report, check)
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned()
}

/// The `fix` line following `check`'s line.
fn fix<'a>(report: &'a str, check: &str) -> Option<&'a str> {
    let mut lines = report.lines().skip_while(|l| *l != line(report, check));
    lines.next();
    lines
        .next()
        .map(str::trim_start)
        .filter(|next| next.starts_with("fix "))
}

#[test]
fn doctor_reports_this_machine_and_exits_0_when_fabric_works() {
    let root = tempfile::tempdir().expect("tempdir");
    let out = rdio(&["doctor", "--root", root.path().to_str().expect("utf-8")]);
    let report = text(&out.stdout);
    assert!(
        out.status.success(),
        "{:?}\n{report}\n{}",
        out.status,
        text(&out.stderr)
    );
    // Real attempts that work here.
    assert_eq!(verdict(&report, "loopback"), "ok", "{report}");
    assert_eq!(verdict(&report, "fabric"), "ok", "{report}");
    assert!(
        line(&report, "fabric").contains("ofi:tcp")
            && line(&report, "fabric").contains("tcp connection on 127.0.0.1 carried a message"),
        "{report}"
    );
    assert_eq!(verdict(&report, "cma"), "ok", "{report}");
    assert!(
        line(&report, "cma").contains("attached to each other's memory"),
        "{report}"
    );
    assert_eq!(verdict(&report, "leases"), "ok", "{report}");
    assert!(line(&report, "leases").contains(root.path().to_str().expect("utf-8")));
    assert_eq!(verdict(&report, "openat2"), "ok", "{report}");
    // No RDMA device on this machine: verbs fails, with a fix.
    assert_eq!(verdict(&report, "verbs"), "FAIL", "{report}");
    assert!(
        fix(&report, "verbs").is_some_and(|fix| fix.contains("rdma link add")),
        "{report}"
    );
    assert_eq!(verdict(&report, "devices"), "warn", "{report}");
    assert!(fix(&report, "devices").is_some(), "{report}");
    for check in ["rxe/siw", "memlock", "ptrace"] {
        let verdict = verdict(&report, check);
        assert!(
            ["ok", "warn", "FAIL"].contains(&verdict.as_str()),
            "{report}"
        );
        if verdict != "ok" {
            assert!(
                fix(&report, check).is_some(),
                "{check} without a fix:\n{report}"
            );
        }
    }
    assert!(
        report.ends_with("the fabric transport works here\n"),
        "{report}"
    );
    // The probes leave nothing in the root.
    assert_eq!(std::fs::read_dir(root.path()).expect("list").count(), 0);
}

/// `doctor --json`: the same checks as one JSON object, and the same exit
/// status.
#[test]
fn doctor_json_is_one_object_with_every_check() {
    let out = rdio(&["--json", "doctor"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON object");
    let verdict = |section: &str, name: &str| {
        report[section]
            .as_array()
            .and_then(|checks| checks.iter().find(|check| check["name"] == name))
            .map(|check| check["verdict"].as_str().unwrap_or("").to_owned())
    };
    assert_eq!(report["command"], "doctor");
    assert_eq!(verdict("transports", "loopback").as_deref(), Some("ok"));
    assert_eq!(verdict("transports", "fabric").as_deref(), Some("ok"));
    assert_eq!(verdict("transports", "cma").as_deref(), Some("ok"));
    assert_eq!(verdict("transports", "verbs").as_deref(), Some("fail"));
    assert_eq!(verdict("host", "devices").as_deref(), Some("warn"));
    assert_eq!(verdict("host", "openat2").as_deref(), Some("ok"));
    // Every check has a detail, and a fix unless it is ok.
    for section in ["transports", "host"] {
        for check in report[section].as_array().expect("checks") {
            assert!(
                check["detail"].as_str().is_some_and(|d| !d.is_empty()),
                "{check}"
            );
            assert_eq!(check["fix"].is_null(), check["verdict"] == "ok", "{check}");
        }
    }
    assert_eq!(report["default"], "fabric");
    assert_eq!(report["default_works"], true);
    let failed = rdio(&["--json", "--transport", "verbs", "doctor"]);
    assert_eq!(failed.status.code(), Some(1));
    let report: serde_json::Value =
        serde_json::from_str(&text(&failed.stdout)).expect("one JSON object");
    assert_eq!(report["default"], "verbs");
    assert_eq!(report["default_works"], false);
}

#[test]
fn doctor_exits_1_when_the_chosen_transport_does_not_work() {
    let out = rdio(&["--transport", "verbs", "doctor"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("rdio: error: the verbs transport does not work here: "),
        "{stderr}"
    );
    // The report itself still went out.
    assert!(text(&out.stdout).contains("transports\n"));
}

#[test]
fn doctor_refuses_a_root_that_is_not_a_directory() {
    let file = tempfile::NamedTempFile::new().expect("file");
    let out = rdio(&["doctor", "--root", file.path().to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("is not a directory"), "{stderr}");
    assert!(out.stdout.is_empty());
}

/// `rdio serve` over `root` until its listening line, then SIGKILL; its
/// standard error up to then.
fn serve_stderr(prefix: &[&str], root: &Path) -> String {
    let mut command = match prefix.split_first() {
        Some((program, rest)) => {
            let mut command = Command::new(program);
            command.args(rest).arg(RDIO);
            command
        }
        None => rdio_command(),
    };
    let mut child = command
        .args(["--transport", "cma", "serve", "--listen", "127.0.0.1:0"])
        .arg("--root")
        .arg(root)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rdio serve");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("listening line");
    assert!(first.starts_with("rdio serve: listening on "), "{first:?}");
    // The warning comes before the listening line; killing closes stderr.
    let _ = child.kill();
    let out = child.wait_with_output().expect("wait");
    text(&out.stderr)
}

#[test]
fn serve_warns_once_when_its_root_cannot_take_file_leases() {
    let root = tempfile::tempdir().expect("tempdir");
    let stderr = serve_stderr(&[], root.path());
    assert!(!stderr.contains("warning"), "{stderr}");

    // A root where no lease can be had: empty and read-only (a read-only
    // bind mount in a mount namespace of its own). Needs root.
    let unshare = Command::new("unshare").args(["-m", "true"]).status();
    if !unshare.is_ok_and(|status| status.success()) {
        eprintln!("skipped the read-only root: needs root and unshare(1)");
        return;
    }
    let dir = root.path().to_str().expect("utf-8");
    let script = format!("mount --bind -o ro {dir} {dir} && exec \"$0\" \"$@\"");
    let stderr = serve_stderr(&["unshare", "-m", "sh", "-c", &script], root.path());
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].starts_with(&format!(
            "rdio serve: warning: no file leases under {dir} ("
        )) && warnings[0].contains("reads are copied, not zero-copy"),
        "{stderr}"
    );
}

/// A client credential for the explain tests' servers, saved where
/// `explained_failure` passes it.
fn credential() -> (rdio::access::Credential, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let credential = rdio::access::Credential::generate("tester").expect("credential");
    credential
        .save(&dir.path().join("tester.credential"), false)
        .expect("save the credential");
    (credential, dir)
}

/// A `get --explain` with the credential in `credentials` over a
/// clear-text side channel that must fail, and its one error line.
fn explained_failure(remote: &str, credentials: &Path) -> String {
    let dst = tempfile::tempdir().expect("tempdir");
    let credential = credentials.join("tester.credential");
    let out = rdio(&[
        "get",
        "--explain",
        "--insecure",
        "--credential",
        credential.to_str().expect("utf-8"),
        "--connect-timeout",
        "5",
        remote,
        dst.path().to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    stderr
}

#[test]
fn explain_names_the_step_a_connection_failed_at() {
    let (credential, credentials) = credential();
    let mut db = rdio::access::ClientDb::default();
    db.add(&credential, rdio::access::Permission::ReadWrite)
        .expect("add the client");
    let clients = std::sync::Arc::new(rdio::access::Clients::fixed(db).expect("clients"));
    // A clear-text side channel that authenticates the client, as `rdio
    // serve --insecure` does.
    let answer = |server: &rdio::server::Server, stream: std::net::TcpStream| {
        let session = rdio::server::PipeSession::authenticating(
            std::sync::Arc::clone(&clients),
            None,
            None,
            "test",
        );
        let _ = server.serve_pipe_as(stream, session);
    };
    // 1. Nobody listens: the pipe connect fails.
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = closed.local_addr().expect("addr");
    drop(closed);
    let stderr = explained_failure(&format!("{addr}:f"), credentials.path());
    assert!(
        stderr.contains("failed at step 1 of 5, pipe connect"),
        "{stderr}"
    );
    assert!(stderr.contains("cannot reach the rdio server"), "{stderr}");

    // 2. A server that offers only cma to a fabric client: negotiate.
    let root = tempfile::tempdir().expect("tempdir");
    let pipe = TcpListener::bind("127.0.0.1:0").expect("bind");
    let pipe_addr = pipe.local_addr().expect("addr");
    let server = |endpoint: &str, provider: &str| {
        let provider = rdio_core::wire::ProviderName::new(provider).expect("provider");
        let options = rdio::server::ServerOptions::new(provider, endpoint.as_bytes());
        rdio::server::Server::new(rdio::files::Root::new(root.path()).expect("root"), options)
    };
    let cma_only = server("127.0.0.1:9", "cma");
    let serving = std::thread::scope(|scope| {
        let serving = scope.spawn(|| {
            let (stream, _) = pipe.accept().expect("accept");
            answer(&cma_only, stream);
        });
        let stderr = explained_failure(&format!("{pipe_addr}:f"), credentials.path());
        serving.join().expect("pipe thread");
        stderr
    });
    assert!(
        serving.contains("failed at step 3 of 5, negotiate"),
        "{serving}"
    );
    assert!(serving.contains("no common RDMA provider"), "{serving}");

    // 3. A server that names an RDMA endpoint where nobody listens.
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = closed.local_addr().expect("addr").to_string();
    drop(closed);
    let nowhere = server(&endpoint, "ofi:tcp");
    let stderr = std::thread::scope(|scope| {
        let serving = scope.spawn(|| {
            let (stream, _) = pipe.accept().expect("accept");
            answer(&nowhere, stream);
        });
        let stderr = explained_failure(&format!("{pipe_addr}:f"), credentials.path());
        serving.join().expect("pipe thread");
        stderr
    });
    assert!(
        stderr.contains("failed at step 4 of 5, RDMA connect"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("cannot connect the RDMA channel to {endpoint}")),
        "{stderr}"
    );

    // Without --explain, the same failure is the plain one line.
    let credential = credentials.path().join("tester.credential");
    let out = rdio(&[
        "get",
        "--insecure",
        "--credential",
        credential.to_str().expect("utf-8"),
        &format!("{addr}:f"),
        "/tmp/unused",
    ]);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("cannot reach the rdio server"), "{stderr}");
    assert!(!stderr.contains("step"), "{stderr}");

    // A TLS client (no --insecure) at a clear-text server: the side
    // channel's security.
    let plain = server("127.0.0.1:9", "ofi:tcp");
    let stderr = std::thread::scope(|scope| {
        let serving = scope.spawn(|| {
            let (stream, _) = pipe.accept().expect("accept");
            answer(&plain, stream);
        });
        let out = rdio(&[
            "get",
            "--explain",
            "--credential",
            credential.to_str().expect("utf-8"),
            "--connect-timeout",
            "5",
            &format!("{pipe_addr}:f"),
            "/tmp/unused",
        ]);
        serving.join().expect("pipe thread");
        text(&out.stderr)
    });
    assert!(
        stderr.contains("failed at step 2 of 5, side-channel security"),
        "{stderr}"
    );
}
