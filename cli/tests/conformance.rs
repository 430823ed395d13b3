//! `rdio conformance` against `rdio serve` on every transport that runs
//! here (libfabric `tcp` on 127.0.0.1, cma): every case passes, the report
//! ends with exactly `N passed, 0 failed`, and the exit status is 0. Also:
//! a failing case is reported and makes the exit status non-zero.

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `rdio` with a home of this test binary's own: `serve` creates its
/// identity, clients file and this user's credential there on first start,
/// and clients find and pin them there, as between two shells of one user —
/// isolated from the real home.
fn rdio_command() -> Command {
    common::rdio_in(concat!(env!("CARGO_TARGET_TMPDIR"), "/home-conformance"))
}

/// A running `rdio serve`, killed when dropped.
struct Served {
    child: Child,
    addr: String,
}

impl Served {
    fn start(root: &Path, transport: &str) -> Self {
        let (child, addr, _) = common::spawn_serve(
            rdio_command()
                .args([
                    "--transport",
                    transport,
                    "serve",
                    "--listen",
                    "127.0.0.1:0",
                    "--root",
                ])
                .arg(root)
                .stderr(Stdio::inherit()),
        );
        Self { child, addr }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run the tester; (exit success, stdout lines).
fn conformance(transport: &str, addr: &str) -> (bool, Vec<String>) {
    conformance_with(transport, addr, &[])
}

/// [`conformance`] with more arguments for the tester.
fn conformance_with(transport: &str, addr: &str, args: &[&str]) -> (bool, Vec<String>) {
    let mut child = rdio_command()
        .args(["--transport", transport, "conformance"])
        .args(args)
        .arg(addr)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rdio conformance");
    // Bounded: the tester's own timeouts are 5 s per reply.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while child.try_wait().expect("wait").is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "rdio conformance hung"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("output");
    let lines = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    (output.status.success(), lines)
}

fn passes_against_rdio_serve(transport: &str) {
    let root = tempfile::tempdir().expect("tempdir");
    let served = Served::start(root.path(), transport);
    let (success, lines) = conformance(transport, &served.addr);
    let failures: Vec<&String> = lines.iter().filter(|l| l.starts_with("FAIL")).collect();
    assert!(failures.is_empty(), "failed cases:\n{failures:#?}");
    let last = lines.last().expect("a summary line");
    let cases = lines.len() - 1;
    assert_eq!(last, &format!("{cases} passed, 0 failed"));
    assert!(cases >= 60, "only {cases} cases ran");
    for (n, line) in lines[..cases].iter().enumerate() {
        assert!(
            line.starts_with(&format!("ok {} §", n + 1)),
            "case line {line:?} is not numbered {} with its section",
            n + 1
        );
    }
    assert!(success, "exit status non-zero with every case passing");
}

#[test]
fn every_case_passes_against_rdio_serve_over_fabric() {
    passes_against_rdio_serve("fabric");
}

#[test]
fn every_case_passes_against_rdio_serve_over_cma() {
    passes_against_rdio_serve("cma");
}

/// A "server" that lets any client authenticate on a clear-text side
/// channel (as `rdio serve --insecure` would, without checking the proof)
/// and then answers every frame with garbage: cases fail with
/// expected/got, the summary counts them, the exit status is 1.
#[test]
fn a_nonconforming_server_fails_cases_and_the_exit_status() {
    use rdio_core::wire::{AuthAccess, PipeMessage, Status};
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut header = [0u8; 12];
                while std::io::Read::read_exact(&mut stream, &mut header).is_ok() {
                    let length = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
                    let mut payload = vec![0u8; length as usize];
                    if std::io::Read::read_exact(&mut stream, &mut payload).is_err() {
                        return;
                    }
                    let reply = match header[5] {
                        0x10 => Some(PipeMessage::AuthChallenge {
                            salt: [7; 16],
                            nonce: [9; 32],
                        }),
                        0x12 => Some(PipeMessage::AuthResult {
                            status: Status::Success,
                            access: AuthAccess::empty(),
                        }),
                        _ => None,
                    };
                    let _ = match reply {
                        Some(reply) => {
                            let mut frame = [0u8; 128];
                            let len = reply.emit(&mut frame).expect("encode");
                            stream.write_all(&frame[..len])
                        }
                        // A ResumeKeyResponse of the wrong length, every time.
                        None => stream.write_all(b"RDIO\x01\x02\x00\x00\x01\x00\x00\x00\x00"),
                    };
                }
            });
        }
    });
    let credentials = tempfile::tempdir().expect("tempdir");
    let credential = credentials.path().join("tester.credential");
    rdio::access::Credential::generate("tester")
        .expect("credential")
        .save(&credential, false)
        .expect("save the credential");
    let credential = credential.to_str().expect("utf-8");
    let (success, lines) =
        conformance_with("fabric", &addr, &["--insecure", "--credential", credential]);
    assert!(!success, "a failing run must exit non-zero");
    assert!(
        lines[0].starts_with("FAIL 1 §Phase 1: discovery ResumeKeyRequest")
            && lines[0].contains(": expected ResumeKeyResponse with 16 payload bytes, got "),
        "{}",
        lines[0]
    );
    let last = lines.last().expect("summary");
    let failed = lines.iter().filter(|l| l.starts_with("FAIL")).count();
    let passed = lines.iter().filter(|l| l.starts_with("ok ")).count();
    assert_eq!(last, &format!("{passed} passed, {failed} failed"));
    assert!(failed > 30, "{failed} failures");
}

/// `--transcript` records one full session (the source of
/// docs/vectors/session-*.json, checked by core/tests/vectors.rs).
#[test]
fn a_transcript_records_every_step_of_a_session() {
    let root = tempfile::tempdir().expect("tempdir");
    let served = Served::start(root.path(), "cma");
    let out = root.path().join("session.json");
    let status = rdio_command()
        .args([
            "--transport",
            "cma",
            "conformance",
            &served.addr,
            "--transcript",
        ])
        .arg(&out)
        .status()
        .expect("run");
    assert!(status.success());
    let text = std::fs::read_to_string(&out).expect("transcript");
    let whats: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split("\"what\": \"").nth(1))
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert_eq!(
        whats,
        [
            "ResumeKeyRequest",
            "ResumeKeyResponse",
            "OpenRequest",
            "OpenResponse",
            "NegotiateRequest",
            "NegotiateResponse",
            "AuthRequest",
            "AuthResponse",
            "StatusResponse",
            "RegisterFile",
            "RegisterFileCompletion",
            "Write (first fragment)",
            "Completion (fragment received)",
            "WriteData (last fragment)",
            "StatusBlock of the write (RDMA write with immediate 3)",
            "Read",
            "read data (RDMA write into dest)",
            "StatusBlock of the read (RDMA write with immediate 4)",
            "Close",
            "Completion (close)",
            "Terminate",
        ]
    );
}
