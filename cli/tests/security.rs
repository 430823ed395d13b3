//! Who may connect, through the real binary: `serve` sets itself up on
//! first start so the same user connects with no setup; a user with
//! another home and no credential is refused; `rdio client add` hands out
//! credentials, read-only ones included; a changed server identity and a
//! one-sided `--insecure` fail with one clear line.

mod common;

use std::fs;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use common::RDIO;

/// `rdio` run by a user whose home is `home`.
fn rdio(home: &Path) -> Command {
    let mut command = Command::new(RDIO);
    command
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_STATE_HOME")
        .env("USER", "alice");
    command
}

struct Served {
    child: Child,
    addr: String,
    line: String,
}

impl Served {
    fn start(home: &Path, root: &Path, extra: &[&str]) -> Self {
        Self::start_logging(home, root, extra, Stdio::inherit())
    }

    fn start_logging(home: &Path, root: &Path, extra: &[&str], stderr: Stdio) -> Self {
        let (child, addr, line) = common::spawn_serve(
            rdio(home)
                .args(["serve", "--root"])
                .arg(root)
                .args(["--listen", "127.0.0.1:0"])
                .args(extra)
                .stderr(stderr),
        );
        Self { child, addr, line }
    }

    fn remote(&self, path: &str) -> String {
        format!("{}:{path}", self.addr)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The one `rdio: error:` line of a failed run.
fn failure(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("rdio: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    errors[0].to_owned()
}

fn success(out: &Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{what}: {stderr}");
    stderr
}

#[test]
fn the_same_user_connects_with_no_setup_and_another_home_is_refused() {
    let alice = tempfile::tempdir().expect("home");
    let root = tempfile::tempdir().expect("root");
    let served = Served::start(alice.path(), root.path(), &[]);
    assert!(
        served.line.contains("TLS identity SHA256:"),
        "{}",
        served.line
    );
    let fingerprint = served
        .line
        .split("TLS identity ")
        .nth(1)
        .expect("fingerprint")
        .trim()
        .to_owned();
    // First start made the identity, the clients file and alice's
    // credential.
    assert!(alice.path().join(".local/state/rdio/server.key").exists());
    assert!(alice.path().join(".config/rdio/credential").exists());
    let src = alice.path().join("src");
    fs::write(&src, b"hello over TLS").expect("src");
    let out = rdio(alice.path())
        .arg("put")
        .arg(&src)
        .arg(served.remote("f"))
        .output()
        .expect("put");
    let stderr = success(&out, "put");
    assert!(
        stderr.contains("trusting the server") && stderr.contains(&fingerprint),
        "{stderr}"
    );
    let known = fs::read_to_string(alice.path().join(".config/rdio/known_servers")).expect("pin");
    assert_eq!(known.trim(), format!("{} {fingerprint}", served.addr));
    assert_eq!(
        fs::read(root.path().join("f")).expect("uploaded"),
        b"hello over TLS"
    );
    // Second time: pinned, silent.
    let dst = alice.path().join("dst");
    let out = rdio(alice.path())
        .arg("get")
        .arg(served.remote("f"))
        .arg(&dst)
        .output()
        .expect("get");
    assert!(!success(&out, "get").contains("trusting"));
    assert_eq!(fs::read(&dst).expect("downloaded"), b"hello over TLS");

    // Another user: no credential, refused before anything is sent.
    let mallory = tempfile::tempdir().expect("home");
    let out = rdio(mallory.path())
        .arg("get")
        .arg(served.remote("f"))
        .arg(mallory.path().join("stolen"))
        .output()
        .expect("get");
    let error = failure(&out);
    assert!(error.contains("no rdio credential"), "{error}");
    // With a credential the server does not know (made for another
    // server), refused by the server.
    let out = rdio(mallory.path())
        .args(["client", "add", "mallory", "--state-dir"])
        .arg(mallory.path().join("own-server"))
        .arg("--output")
        .arg(mallory.path().join("mallory.credential"))
        .output()
        .expect("client add");
    success(&out, "client add");
    let out = rdio(mallory.path())
        .arg("get")
        .arg("--credential")
        .arg(mallory.path().join("mallory.credential"))
        .arg(served.remote("f"))
        .arg(mallory.path().join("stolen"))
        .output()
        .expect("get");
    let error = failure(&out);
    assert!(error.contains("not authenticated"), "{error}");
    assert!(!mallory.path().join("stolen").exists());
}

#[test]
fn client_add_hands_out_credentials_and_read_only_ones_cannot_write() {
    let owner = tempfile::tempdir().expect("home");
    let root = tempfile::tempdir().expect("root");
    fs::write(root.path().join("shared"), b"for everyone").expect("seed");
    let served = Served::start(owner.path(), root.path(), &[]);
    let guest = tempfile::tempdir().expect("guest home");
    let credential = guest.path().join("bob.credential");
    let out = rdio(owner.path())
        .args(["client", "add", "bob", "--read-only", "--output"])
        .arg(&credential)
        .output()
        .expect("client add");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("'bob' (read-only)"), "{stdout}");
    // The same name again: refused, nothing overwritten.
    let out = rdio(owner.path())
        .args(["client", "add", "bob", "--output"])
        .arg(guest.path().join("again"))
        .output()
        .expect("client add");
    assert!(failure(&out).contains("already exists"));
    // Bob reads (the running server sees the new entry without a restart)
    // and cannot write.
    let dst = guest.path().join("shared");
    let out = rdio(guest.path())
        .arg("get")
        .arg("--credential")
        .arg(&credential)
        .arg(served.remote("shared"))
        .arg(&dst)
        .output()
        .expect("get");
    success(&out, "read-only get");
    assert_eq!(fs::read(&dst).expect("got"), b"for everyone");
    let out = rdio(guest.path())
        .arg("put")
        .arg("--credential")
        .arg(&credential)
        .arg(&dst)
        .arg(served.remote("bobs-file"))
        .output()
        .expect("put");
    let error = failure(&out);
    assert!(error.contains("read-only"), "{error}");
    assert!(!root.path().join("bobs-file").exists());
    // Bob lists, and may not change the tree: rm, mkdir, mv are refused.
    let out = rdio(guest.path())
        .args(["ls", "--credential"])
        .arg(&credential)
        .arg(served.remote("/"))
        .output()
        .expect("ls");
    success(&out, "read-only ls");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "shared");
    for args in [
        vec!["rm".to_owned(), served.remote("shared")],
        vec!["mkdir".to_owned(), served.remote("bobs-dir")],
        vec!["mv".to_owned(), served.remote("shared"), "moved".to_owned()],
    ] {
        let out = rdio(guest.path())
            .args(&args)
            .arg("--credential")
            .arg(&credential)
            .output()
            .expect("remote operation");
        let error = failure(&out);
        assert!(error.contains("read-only"), "{args:?}: {error}");
    }
    assert!(root.path().join("shared").exists());
    assert!(!root.path().join("bobs-dir").exists() && !root.path().join("moved").exists());
}

#[test]
fn a_changed_server_identity_is_refused_naming_the_line_to_remove() {
    let home = tempfile::tempdir().expect("home");
    let root = tempfile::tempdir().expect("root");
    let served = Served::start(home.path(), root.path(), &[]);
    fs::write(root.path().join("f"), b"x").expect("seed");
    let known = home.path().join(".config/rdio/known_servers");
    fs::create_dir_all(known.parent().expect("dir")).expect("dir");
    let stale = format!("SHA256:{}", "ab".repeat(32));
    fs::write(
        &known,
        format!("127.0.0.1:1 {stale}\n{} {stale}\n", served.addr),
    )
    .expect("pin another identity");
    let dst = home.path().join("dst");
    let out = rdio(home.path())
        .arg("get")
        .arg(served.remote("f"))
        .arg(&dst)
        .output()
        .expect("get");
    let error = failure(&out);
    assert!(error.contains("has CHANGED"), "{error}");
    assert!(
        error.contains(&format!("remove line 2 from {}", known.display())),
        "{error}"
    );
    assert!(!dst.exists());
    // --server-fingerprint, wrong and right.
    let out = rdio(home.path())
        .arg("get")
        .args(["--server-fingerprint", &stale])
        .arg(served.remote("f"))
        .arg(&dst)
        .output()
        .expect("get");
    assert!(failure(&out).contains("not the expected --server-fingerprint"));
    let fingerprint = served
        .line
        .split("TLS identity ")
        .nth(1)
        .expect("fp")
        .trim();
    let out = rdio(home.path())
        .arg("get")
        .args(["--server-fingerprint", fingerprint])
        .arg(served.remote("f"))
        .arg(&dst)
        .output()
        .expect("get");
    success(&out, "pinned explicitly");
}

#[test]
fn insecure_on_one_side_only_fails_clearly_and_on_both_works() {
    let home = tempfile::tempdir().expect("home");
    let root = tempfile::tempdir().expect("root");
    fs::write(root.path().join("f"), b"lab").expect("seed");
    let dst = home.path().join("dst");
    let tls = Served::start(home.path(), root.path(), &[]);
    let out = rdio(home.path())
        .args(["get", "--insecure"])
        .arg(tls.remote("f"))
        .arg(&dst)
        .output()
        .expect("get");
    let error = failure(&out);
    assert!(
        error.contains("requires TLS") && error.contains("drop --insecure"),
        "{error}"
    );

    let clear = Served::start(home.path(), root.path(), &["--insecure"]);
    assert!(clear.line.contains("CLEAR TEXT"), "{}", clear.line);
    let out = rdio(home.path())
        .arg("get")
        .arg(clear.remote("f"))
        .arg(&dst)
        .output()
        .expect("get");
    let error = failure(&out);
    assert!(error.contains("runs without TLS (--insecure)"), "{error}");
    assert!(!dst.exists());
    let out = rdio(home.path())
        .args(["get", "--insecure"])
        .arg(clear.remote("f"))
        .arg(&dst)
        .output()
        .expect("get");
    success(&out, "both --insecure");
    assert_eq!(fs::read(&dst).expect("got"), b"lab");
}

#[test]
fn a_read_only_export_refuses_uploads_over_cma_too() {
    let home = tempfile::tempdir().expect("home");
    let root = tempfile::tempdir().expect("root");
    let src = home.path().join("src");
    fs::write(&src, b"data").expect("src");
    for transport in ["fabric", "cma"] {
        let served = Served::start(
            home.path(),
            root.path(),
            &["--read-only", "--transport", transport],
        );
        assert!(served.line.contains("read-only"), "{}", served.line);
        let out = rdio(home.path())
            .args(["--transport", transport, "put"])
            .arg(&src)
            .arg(served.remote("new"))
            .output()
            .expect("put");
        let error = failure(&out);
        assert!(error.contains("read-only"), "{transport}: {error}");
        assert!(!root.path().join("new").exists(), "{transport}");
    }
}

#[test]
fn the_main_job_needs_no_setup() {
    // `rdio cp` runs its server in this process: no credential, no
    // identity, nothing written to the home.
    let home = tempfile::tempdir().expect("empty home");
    let src = home.path().join("src");
    fs::write(&src, b"copied").expect("src");
    let dst = home.path().join("dst");
    let out = rdio(home.path())
        .arg("cp")
        .arg(&src)
        .arg(&dst)
        .output()
        .expect("cp");
    success(&out, "cp");
    assert_eq!(fs::read(&dst).expect("dst"), b"copied");
    let mut entries: Vec<_> = fs::read_dir(home.path())
        .expect("home")
        .map(|e| e.expect("entry").file_name())
        .collect();
    entries.sort();
    assert_eq!(entries, ["dst", "src"]);
}

#[test]
fn the_access_log_records_authentications_opens_refusals_and_escapes() {
    let home = tempfile::tempdir().expect("home");
    let root = tempfile::tempdir().expect("root");
    fs::write(root.path().join("f"), b"logged").expect("seed");
    let log_path = home.path().join("serve.log");
    let log = fs::File::create(&log_path).expect("log file");
    let served = Served::start_logging(home.path(), root.path(), &[], Stdio::from(log));
    let dst = home.path().join("dst");
    let get = |remote: &str| {
        rdio(home.path())
            .arg("get")
            .arg(served.remote(remote))
            .arg(&dst)
            .output()
            .expect("get")
    };
    success(&get("f"), "get");
    failure(&get("../outside"));
    let stranger = home.path().join("stranger.credential");
    fs::write(
        &stranger,
        format!("name stranger\nsecret {}\n", "01".repeat(32)),
    )
    .expect("cred");
    let out = rdio(home.path())
        .arg("get")
        .arg("--credential")
        .arg(&stranger)
        .arg(served.remote("f"))
        .arg(home.path().join("other"))
        .output()
        .expect("get");
    failure(&out);
    // The server writes its lines as things happen; give the last a moment.
    let mut text = String::new();
    for _ in 0..50 {
        text = fs::read_to_string(&log_path).expect("log");
        if text.contains("unknown client") && text.contains("escape") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for needle in [
        "client authenticated peer=127.0.0.1:",
        "client=alice",
        "open peer=127.0.0.1:",
        "path=f mode=OpenFlags(READ) size=6 status=success",
        "escape outside the root attempted",
        "path=../outside",
        "refused peer=127.0.0.1:",
        "reason=\"unknown client\"",
        "side channel closed",
        "RDMA connection ended",
    ] {
        assert!(
            text.contains(needle),
            "no {needle:?} in the access log:\n{text}"
        );
    }
    // Timestamps (RFC 3339, UTC) on the access log lines.
    let line = text
        .lines()
        .find(|line| line.contains("client authenticated"))
        .expect("line");
    assert!(
        line.as_bytes()[4] == b'-' && line.contains('T') && line.contains('Z'),
        "{line}"
    );
}

/// A client of `served` in this process, as `alice` (whose credential the
/// server's first start wrote under `home`), pinning its fingerprint.
fn library_client(
    served: &Served,
    home: &Path,
) -> rdio::client::Client<
    <rdio::net::fabric::FabricConnector as rdio::net::RdmaConnector>::Transport,
    rdio::capture::PipeTap<rdio::net::PipeStream>,
> {
    use rdio::access::{Credential, Fingerprint, ServerTrust};
    use rdio_core::wire::ProviderName;
    let fingerprint: Fingerprint = served
        .line
        .split("TLS identity ")
        .nth(1)
        .and_then(|rest| rest.split([',', ' ', '\n']).next())
        .expect("fingerprint")
        .parse()
        .expect("a fingerprint");
    let security = rdio::net::ClientSecurity {
        tls: Some(ServerTrust::Fingerprint(fingerprint)),
        credential: Credential::load(&home.join(".config/rdio/credential")).expect("credential"),
        server_name: None,
        on_first_use: None,
    };
    let mut options =
        rdio::client::ClientOptions::new(ProviderName::new("ofi:tcp").expect("provider"));
    options.io_size = 64 * 1024;
    options.queue_depth = 16;
    rdio::net::connect(
        served.addr.parse().expect("address"),
        options,
        std::time::Duration::from_secs(10),
        &rdio::net::fabric::FabricConnector::new(Some("tcp")).expect("tcp provider"),
        &security,
    )
    .expect("connect")
}

#[test]
fn serve_enforces_open_files_credits_and_idle_timeout_per_client() {
    use rdio::client::ClientError;
    use rdio_core::wire::{OpenFlags, Status};
    let home = tempfile::tempdir().expect("home");
    let root = tempfile::tempdir().expect("root");
    fs::write(root.path().join("f"), b"limited").expect("seed");
    // Out of range: a usage error naming the range, before anything starts.
    for (flag, value) in [
        ("--max-credits", "0"),
        ("--max-credits", "65"),
        ("--max-open-files", "0"),
        ("--idle-timeout", "forever"),
    ] {
        let out = rdio(home.path())
            .args(["serve", "--root"])
            .arg(root.path())
            .args(["--listen", "127.0.0.1:0", flag, value])
            .output()
            .expect("serve");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(stderr.contains(flag), "{flag} {value}: {stderr}");
    }
    let log_path = home.path().join("serve.log");
    let log = fs::File::create(&log_path).expect("log file");
    let served = Served::start_logging(
        home.path(),
        root.path(),
        &[
            "--max-open-files",
            "2",
            "--max-credits",
            "4",
            "--idle-timeout",
            "1",
        ],
        Stdio::from(log),
    );
    // The command-line client works within the limits.
    let dst = home.path().join("dst");
    let out = rdio(home.path())
        .arg("get")
        .arg(served.remote("f"))
        .arg(&dst)
        .args(["--queue-depth", "16"])
        .output()
        .expect("get");
    success(&out, "get");
    assert_eq!(fs::read(&dst).expect("downloaded"), b"limited");

    let mut client = library_client(&served, home.path());
    assert_eq!(client.credits(), 4, "--max-credits caps the grant");
    let rw = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    let a = client.open("a", rw).expect("open a");
    let b = client.open("b", rw).expect("open b");
    let error = client.open("c", rw).expect_err("a third open");
    assert_eq!(error.status(), Some(Status::TooManyOpenFiles), "{error}");
    assert_eq!(
        error.to_string(),
        "open: too many open files for this client"
    );
    client.close(a).expect("close a");
    let c = client.open("c", rw).expect("open once one is closed");
    client.close(b).expect("close b");
    client.close(c).expect("close c");
    // Idle (no file open) past --idle-timeout: ended by the server.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let error = client.open("d", rw).expect_err("open after idling");
    assert!(
        matches!(error, ClientError::IdleTimeout { .. }),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .starts_with("closed by the server: idle for "),
        "{error}"
    );
    let mut text = String::new();
    for _ in 0..50 {
        text = fs::read_to_string(&log_path).expect("log");
        if text.contains("side channel closed: idle timeout")
            && text.contains("RDMA connection closed: idle timeout")
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for needle in [
        "open refused: too many open files for this client",
        "path=c",
        "limit=2",
        "side channel closed: idle timeout",
        "RDMA connection closed: idle timeout",
        "why=idle timeout: no open file for 1 s",
        "close peer=127.0.0.1:",
        "path=f bytes_read=7 bytes_written=0",
        "transport=ofi:tcp",
    ] {
        assert!(
            text.contains(needle),
            "no {needle:?} in the access log:\n{text}"
        );
    }
}
