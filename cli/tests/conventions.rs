//! The conventions of issue 19, as a user meets them through the binary:
//! standard input and output as data (`put -`, `get REMOTE -`), summaries
//! on standard error, `-q`, `-v`, `--json`, exit statuses, range errors
//! before any work, "not an rdio server", the default port, end-to-end
//! verification and `--no-verify`, `get` without LOCAL and `cp` into a
//! directory. Servers are `rdio serve` over libfabric's tcp provider on
//! 127.0.0.1.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::RDIO;

/// The home every `rdio` here runs with, isolated from the real one:
/// `serve` creates its identity and this user's credential there.
fn home() -> &'static Path {
    static CREDENTIAL: std::sync::Once = std::sync::Once::new();
    let home = Path::new(concat!(env!("CARGO_TARGET_TMPDIR"), "/home-conventions"));
    // A credential for the clients that run before (or without) a server.
    CREDENTIAL.call_once(|| {
        let credential = home.join(".config/rdio/credential");
        if !credential.exists() {
            fs::create_dir_all(credential.parent().expect("dir")).expect("config dir");
            let secret = "5a".repeat(32);
            fs::write(&credential, format!("name tester\nsecret {secret}\n")).expect("credential");
        }
    });
    home
}

fn rdio_command() -> Command {
    let mut command = Command::new(RDIO);
    command
        .env("HOME", home())
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_STATE_HOME")
        .env_remove("RUST_LOG")
        .env_remove("RDIO_LOG");
    command
}

fn rdio(args: &[&str]) -> Output {
    rdio_command().args(args).output().expect("run rdio")
}

/// `rdio` with `input` on standard input.
fn rdio_with_input(args: &[&str], input: &[u8]) -> Output {
    let mut child = rdio_command()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rdio");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().expect("wait rdio");
    writer.join().expect("writer").expect("write stdin");
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The lines of standard error that are not the first-use trust notice.
fn stderr_lines(out: &Output) -> Vec<String> {
    text(&out.stderr)
        .lines()
        .filter(|line| !line.starts_with("rdio: trusting the server"))
        .map(str::to_owned)
        .collect()
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {:?}\nstderr {}",
        out.status,
        text(&out.stderr)
    );
}

/// Deterministic pseudo-random bytes.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

fn xxh3_hex(data: &[u8]) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(data))
}

/// A running `rdio serve` on 127.0.0.1 (a port the kernel picks), killed
/// when dropped.
struct Served {
    child: Child,
    addr: String,
}

impl Served {
    fn start(root: &Path) -> Self {
        Self::listening(root, "127.0.0.1:0")
    }

    fn listening(root: &Path, listen: &str) -> Self {
        let (child, addr, _) = common::spawn_serve(
            rdio_command()
                .args(["serve", "--root"])
                .arg(root)
                .args(["--listen", listen])
                .stderr(Stdio::null()),
        );
        Self { child, addr }
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

#[test]
fn standard_input_and_output_carry_the_data_and_nothing_else() {
    let root = tempfile::tempdir().expect("root");
    let served = Served::start(root.path());
    // Of a size no file announces: standard input is read to its end.
    let data = pattern(3 * (1 << 20) + 12_345, 1);
    let remote = served.remote("streamed.bin");
    let put = rdio_with_input(&["put", "-", &remote], &data);
    assert_ok(&put, "put -");
    assert!(put.stdout.is_empty(), "put prints nothing on stdout");
    let summary = stderr_lines(&put);
    assert_eq!(summary.len(), 1, "{summary:?}");
    assert!(
        summary[0].starts_with("put standard input -> ")
            && summary[0].contains(&format!("verified xxh3-128 {}", xxh3_hex(&data))),
        "{summary:?}"
    );
    assert_eq!(
        fs::read(root.path().join("streamed.bin")).expect("copy"),
        data
    );

    // get REMOTE -: the file, byte for byte, and not a byte more; the
    // summary on standard error.
    let get = rdio(&["get", &remote, "-"]);
    assert_ok(&get, "get -");
    assert_eq!(get.stdout, data, "standard output holds the file alone");
    let summary = stderr_lines(&get);
    assert!(
        summary.len() == 1 && summary[0].contains("-> standard output"),
        "{summary:?}"
    );

    // /dev/stdout by name: the same, the summary kept out of the data.
    let named = rdio(&["get", &remote, "/dev/stdout"]);
    assert_ok(&named, "get /dev/stdout");
    assert_eq!(named.stdout, data, "no summary mixed into the data");
    let named = rdio(&["--json", "get", &remote, "/dev/stdout"]);
    assert_ok(&named, "--json get /dev/stdout");
    assert_eq!(named.stdout, data, "no JSON mixed into the data");

    // --json with the data on standard output: the JSON on standard error.
    let json = rdio(&["--json", "get", &remote, "-"]);
    assert_ok(&json, "--json get -");
    assert_eq!(json.stdout, data);
    let line = stderr_lines(&json).pop().expect("a JSON line");
    assert!(
        line.starts_with('{') && line.contains("\"command\":\"get\""),
        "{line}"
    );

    // An empty standard input makes an empty file.
    let empty = rdio_with_input(&["put", "-", &served.remote("empty")], b"");
    assert_ok(&empty, "put - of nothing");
    assert_eq!(fs::read(root.path().join("empty")).expect("empty").len(), 0);
}

#[test]
fn quiet_verbose_and_json_summaries() {
    let root = tempfile::tempdir().expect("root");
    let served = Served::start(root.path());
    let local = tempfile::tempdir().expect("local");
    let src = local.path().join("src");
    let data = pattern(200_000, 2);
    fs::write(&src, &data).expect("src");
    let src = src.to_str().expect("utf-8");
    let remote = served.remote("f");

    // -q: nothing at all on success.
    let quiet = rdio(&["-q", "put", src, &remote]);
    assert_ok(&quiet, "put -q");
    assert!(quiet.stdout.is_empty() && stderr_lines(&quiet).is_empty());

    // --json: one object on standard output with the summary's fields.
    let json = rdio(&["put", "--json", src, &remote]);
    assert_ok(&json, "put --json");
    let stdout = text(&json.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    for field in [
        "\"command\":\"put\"",
        "\"bytes\":200000",
        "\"seconds\":",
        "\"rate\":",
        "\"transport\":\"fabric\"",
        &format!(
            "\"checksum\":{{\"algorithm\":\"xxh3-128\",\"value\":\"{}\",\"verified\":true}}",
            xxh3_hex(&data)
        ),
    ] {
        assert!(stdout.contains(field), "{field} missing in {stdout}");
    }
    assert!(stderr_lines(&json).is_empty(), "{:?}", stderr_lines(&json));

    // --json --stats: the client's metrics are one more JSON line.
    let stats = rdio(&["put", "--json", "--stats", src, &remote]);
    assert_ok(&stats, "put --json --stats");
    let stdout = text(&stats.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].contains("\"command\":\"put\""), "{stdout}");
    assert!(
        lines[1].starts_with("{\"command\":\"stats\",\"stats\":{")
            && lines[1].contains("\"bytes_written\":200000"),
        "{stdout}"
    );

    // -v: the log at info (the client's connection), then the summary.
    let back = local.path().join("back");
    let verbose = rdio(&["-v", "get", &remote, back.to_str().expect("utf-8")]);
    assert_ok(&verbose, "get -v");
    let lines = stderr_lines(&verbose);
    assert!(lines.len() > 1, "-v logs: {lines:?}");
    assert!(lines.iter().any(|l| l.contains("INFO")), "{lines:?}");
    assert!(
        lines.last().is_some_and(|l| l.starts_with("got ")),
        "{lines:?}"
    );
    // -vv: debug lines too (the checksums compared), -vvv every request.
    let debug = rdio(&["-vv", "get", &remote, back.to_str().expect("utf-8")]);
    assert_ok(&debug, "get -vv");
    assert!(stderr_lines(&debug).iter().any(|l| l.contains("DEBUG")));
    let trace = rdio(&["-vvv", "get", &remote, back.to_str().expect("utf-8")]);
    assert_ok(&trace, "get -vvv");
    assert!(stderr_lines(&trace).iter().any(|l| l.contains("TRACE")));
    // -q and -v together are a usage error.
    let both = rdio(&["-q", "-v", "get", &remote]);
    assert_eq!(both.status.code(), Some(2));

    // cp --json: the same shape, over the loopback transport.
    let dst = local.path().join("dst");
    let cp = rdio(&["cp", "--json", src, dst.to_str().expect("utf-8")]);
    assert_ok(&cp, "cp --json");
    let stdout = text(&cp.stdout);
    assert!(
        stdout.contains("\"command\":\"cp\"")
            && stdout.contains("\"transport\":\"loopback\"")
            && stdout.contains(&xxh3_hex(&data)),
        "{stdout}"
    );
}

#[test]
fn verification_is_on_by_default_and_no_verify_skips_it() {
    let root = tempfile::tempdir().expect("root");
    let served = Served::start(root.path());
    let local = tempfile::tempdir().expect("local");
    let src = local.path().join("src");
    let data = pattern((1 << 20) + 7, 3);
    fs::write(&src, &data).expect("src");
    let src = src.to_str().expect("utf-8");
    let remote = served.remote("v");
    let digest = xxh3_hex(&data);

    for (args, verified) in [
        (vec!["put", src, remote.as_str()], true),
        (vec!["put", "--no-verify", src, remote.as_str()], false),
    ] {
        let out = rdio(&args);
        assert_ok(&out, "put");
        let summary = stderr_lines(&out).join("\n");
        assert_eq!(summary.contains(&digest), verified, "{args:?}: {summary}");
    }
    let back = local.path().join("back");
    let back = back.to_str().expect("utf-8");
    for (args, verified) in [
        (vec!["get", remote.as_str(), back], true),
        (vec!["get", "--no-verify", remote.as_str(), back], false),
    ] {
        let out = rdio(&args);
        assert_ok(&out, "get");
        let summary = stderr_lines(&out).join("\n");
        assert_eq!(summary.contains(&digest), verified, "{args:?}: {summary}");
        assert_eq!(fs::read(back).expect("back"), data);
    }
    // --json says when nothing was verified.
    let out = rdio(&["--json", "get", "--no-verify", &remote, back]);
    assert!(text(&out.stdout).contains("\"checksum\":null"));
}

#[test]
fn usage_errors_come_before_any_work_with_the_range() {
    // Nothing listens at this address: an error past parsing would be a
    // connection failure, not these.
    for (args, needle) in [
        (
            vec!["get", "--io-size", "1T", "127.0.0.1:9:f", "x"],
            "1T is out of range: expected 1 to 8MiB",
        ),
        (
            vec!["put", "--io-size", "0", "x", "127.0.0.1:9:f"],
            "0 is out of range: expected 1 to 8MiB",
        ),
        (
            vec!["get", "--queue-depth", "65", "127.0.0.1:9:f", "x"],
            "65 is not in 1..=64",
        ),
        (
            vec!["cp", "--queue-depth", "0", "a", "b"],
            "0 is not in 1..=64",
        ),
        (
            vec!["cp", "--io-size", "9M", "a", "b"],
            "expected 1 to 8MiB",
        ),
        (
            vec!["bench", "--sizes", "4K,1G"],
            "1G is out of range: expected 1 to 8MiB",
        ),
        (
            vec!["bench", "--queue-depths", "1,65"],
            "65 is not in 1..=64",
        ),
    ] {
        let started = Instant::now();
        let out = rdio(&args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        let stderr = text(&out.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(started.elapsed() < Duration::from_secs(5), "{args:?}");
    }
    // A destination in a directory that does not exist: refused before
    // connecting (nothing listens at port 9), status 2.
    let dir = tempfile::tempdir().expect("dir");
    let missing = dir.path().join("no/such/file");
    let out = rdio(&["get", "127.0.0.1:9:f", missing.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("does not exist"));
}

#[test]
fn exit_statuses_are_documented_in_help() {
    for args in [
        &["--help"][..],
        &["get", "--help"],
        &["put", "--help"],
        &["cp", "--help"],
    ] {
        let out = rdio(args);
        assert_ok(&out, "help");
        let help = text(&out.stdout);
        for line in [
            "Exit status:",
            "0    success",
            "1    failure",
            "2    usage error",
            "24   the file changed during the transfer",
            "25   end-to-end verification failed",
            "130  interrupted",
        ] {
            assert!(help.contains(line), "{args:?} lacks {line:?}");
        }
    }
}

/// Answers every connection with `answer` (then closes it), or, for an
/// empty `answer`, holds it open without a word.
fn fake_service(answer: &'static [u8]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            if answer.is_empty() {
                held.push(stream);
            } else {
                let mut request = [0u8; 512];
                let _ = stream.read(&mut request);
                let _ = stream.write_all(answer);
            }
        }
    });
    addr
}

#[test]
fn another_tcp_service_is_not_an_rdio_server() {
    let http = fake_service(b"HTTP/1.0 400 Bad Request\r\n\r\n");
    for extra in [&[][..], &["--insecure"]] {
        let started = Instant::now();
        let mut args = vec!["get", "--connect-timeout", "30"];
        args.extend_from_slice(extra);
        let remote = format!("{http}:f");
        args.push(&remote);
        args.push("-");
        let out = rdio(&args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("is not an rdio server"),
            "{extra:?}: {stderr}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "fails fast, not after the timeout"
        );
    }
    // Silence: the timeout, named with its length.
    let silent = fake_service(b"");
    let out = rdio(&["get", "--connect-timeout", "1", &format!("{silent}:f"), "-"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("timed out after 1 s"), "{stderr}");
}

#[test]
fn the_default_port_is_7472() {
    // HOST:PATH reaches port 7472 (where nothing of these tests listens:
    // the error names the address it tried).
    let out = rdio(&["get", "--connect-timeout", "2", "127.0.0.1:some/file", "-"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("127.0.0.1:7472"), "{stderr}");
}

#[test]
fn get_without_local_and_cp_into_a_directory() {
    let root = tempfile::tempdir().expect("root");
    let served = Served::start(root.path());
    let data = pattern(70_000, 4);
    fs::create_dir(root.path().join("sub")).expect("mkdir");
    fs::write(root.path().join("sub/named.bin"), &data).expect("file");
    // LOCAL omitted: the remote base name in the current directory.
    let here = tempfile::tempdir().expect("here");
    let out = rdio_command()
        .current_dir(here.path())
        .args(["get", &served.remote("sub/named.bin")])
        .output()
        .expect("run rdio");
    assert_ok(&out, "get without LOCAL");
    assert_eq!(fs::read(here.path().join("named.bin")).expect("got"), data);

    // cp SRC DIR: DIR/SRC's name.
    let src = here.path().join("named.bin");
    let into = here.path().join("into");
    fs::create_dir(&into).expect("mkdir");
    let out = rdio(&[
        "cp",
        src.to_str().expect("utf-8"),
        into.to_str().expect("utf-8"),
    ]);
    assert_ok(&out, "cp into a directory");
    assert_eq!(fs::read(into.join("named.bin")).expect("copy"), data);
}

#[test]
fn no_progress_bar_unless_asked_off_a_terminal() {
    let dir = tempfile::tempdir().expect("dir");
    let src = dir.path().join("src");
    fs::write(&src, pattern(1 << 20, 5)).expect("src");
    let src = src.to_str().expect("utf-8");
    // Standard error is a pipe here: the summary alone.
    for extra in [&[][..], &["--no-progress"]] {
        let dst = dir.path().join("dst");
        let mut args = vec!["cp", src, dst.to_str().expect("utf-8")];
        args.extend_from_slice(extra);
        let out = rdio(&args);
        assert_ok(&out, "cp");
        let lines = stderr_lines(&out);
        assert!(
            lines.len() == 1 && lines[0].starts_with("copied "),
            "{lines:?}"
        );
        assert!(!text(&out.stderr).contains('\r'), "no bar drawn");
    }
    // --progress draws it anyway, of the file's size (1.00 MiB, not twice
    // that), and still ends with the summary.
    let dst = dir.path().join("forced");
    let out = rdio(&[
        "cp",
        "--progress",
        "--io-size",
        "64K",
        src,
        dst.to_str().expect("utf-8"),
    ]);
    assert_ok(&out, "cp --progress");
    let stderr = text(&out.stderr);
    // The total follows the '/' (a rate such as 2.00 MiB/s may appear).
    assert!(stderr.contains("/1.00 MiB"), "{stderr:?}");
    assert!(!stderr.contains("/2.00 MiB"), "{stderr:?}");
    assert!(
        stderr.trim_end().ends_with(|c: char| c.is_ascii_hexdigit()),
        "{stderr:?}"
    );
}

#[test]
fn bench_json_is_one_object_and_the_table_moves_to_standard_error() {
    let out = rdio(&[
        "--json",
        "bench",
        "--sizes",
        "4K",
        "--queue-depths",
        "1",
        "--bytes",
        "256K",
        "--repeat",
        "1",
        "--ops",
        "read",
    ]);
    assert_ok(&out, "bench --json");
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.starts_with("{\"command\":\"bench\",\"rows\":[{")
            && stdout.contains("\"op\":\"read\"")
            && stdout.contains("\"kind\":\"rdio\"")
            && stdout.contains("\"size_bytes\":4096")
            && stdout.contains("\"transport\":\"loopback\""),
        "{stdout}"
    );
    assert!(text(&out.stderr).contains("MB/s"), "the table on stderr");
}

#[test]
fn a_server_listening_on_every_address_is_reached_on_loopback() {
    let root = tempfile::tempdir().expect("root");
    let served = Served::listening(root.path(), "0.0.0.0:0");
    let port = served
        .addr
        .strip_prefix("0.0.0.0:")
        .unwrap_or_else(|| panic!("listening on {}", served.addr));
    let data = pattern(100_000, 6);
    let remote = format!("127.0.0.1:{port}:every");
    let put = rdio_with_input(&["put", "-", &remote], &data);
    assert_ok(&put, "put through a wildcard server");
    let get = rdio(&["get", &remote, "-"]);
    assert_ok(&get, "get through a wildcard server");
    assert_eq!(get.stdout, data);
}

/// `--json` on the commands that are not transfers: `serve` announces
/// itself as one object (its address in `listening`), `conformance` prints
/// its summary as one (the case-by-case report on standard error), and
/// `client add` says where it wrote what.
#[test]
fn serve_conformance_and_client_add_speak_json() {
    let root = tempfile::tempdir().expect("root");
    let mut child = rdio_command()
        .args(["--json", "serve", "--root"])
        .arg(root.path())
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn rdio serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the first line");
    let announced: serde_json::Value = serde_json::from_str(&line).expect("one JSON object");
    let served = Served {
        addr: announced["listening"]
            .as_str()
            .expect("listening")
            .to_owned(),
        child,
    };
    assert_eq!(announced["command"], "serve");
    assert_eq!(announced["read_only"], false);
    assert!(
        announced["fingerprint"]
            .as_str()
            .is_some_and(|f| f.starts_with("SHA256:")),
        "{announced}"
    );
    assert_eq!(announced["root"], root.path().to_str().expect("utf-8"));

    let out = rdio(&["--json", "conformance", &served.addr]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON object");
    assert_eq!(summary["command"], "conformance");
    assert_eq!(summary["failed"], 0);
    assert!(
        summary["passed"].as_u64().is_some_and(|n| n > 50),
        "{summary}"
    );
    assert!(
        !text(&out.stderr).is_empty(),
        "the report went to standard error"
    );

    let state = tempfile::tempdir().expect("state");
    let credential = state.path().join("carol.credential");
    let out = rdio(&[
        "--json",
        "client",
        "add",
        "carol",
        "--read-only",
        "--state-dir",
        state.path().to_str().expect("utf-8"),
        "--output",
        credential.to_str().expect("utf-8"),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    let added: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON object");
    assert_eq!(added["command"], "client add");
    assert_eq!(added["name"], "carol");
    assert_eq!(added["permission"], "read-only");
    assert_eq!(added["credential"], credential.to_str().expect("utf-8"));
    assert!(credential.is_file());
}
