//! `rdio serve`, `get`, `put` and `bench --server` across processes: the
//! real binary on both sides, over libfabric's `tcp` provider on 127.0.0.1,
//! across two network namespaces joined by a veth pair, and over
//! cross-memory attach (`--transport cma`) between processes on one host.

mod common;

use sha2::{Digest, Sha256};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::RDIO;

/// Deterministic pseudo-random bytes (xorshift64*), different per seed.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
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

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The home directory every `rdio` of these tests runs with: `serve`
/// creates its identity, clients file and this user's credential there on
/// first start, and `get`/`put` find the credential and pin the server
/// there, as between two shells of one user — isolated from the real home.
fn home() -> &'static Path {
    Path::new(concat!(env!("CARGO_TARGET_TMPDIR"), "/home-network"))
}

/// `rdio` (through `prefix`, e.g. `ip netns exec NAME`) with [`home`].
fn rdio_command(prefix: &[&str]) -> Command {
    let mut command = match prefix.split_first() {
        Some((program, rest)) => {
            let mut command = Command::new(program);
            command.args(rest).arg(RDIO);
            command
        }
        None => Command::new(RDIO),
    };
    command
        .env("HOME", home())
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_STATE_HOME");
    command
}

/// A running `rdio serve`, stopped by SIGTERM (or killed) when dropped.
struct Served {
    child: Child,
    /// The side-channel address it printed, `HOST:PORT`.
    addr: String,
}

impl Served {
    /// Start `rdio serve` over `root` on `host` (port 0: the kernel picks),
    /// through `prefix` (e.g. `ip netns exec NAME`), and wait for the line
    /// that names its address.
    fn start(prefix: &[&str], root: &Path, host: &str) -> Self {
        Self::start_over(prefix, root, host, &[])
    }

    /// [`Served::start`] with `transport` arguments (`--transport cma`).
    fn start_over(prefix: &[&str], root: &Path, host: &str, transport: &[&str]) -> Self {
        let listen = format!("{host}:0");
        let root = root.to_str().expect("utf-8 root");
        let mut args = vec!["serve", "--root", root, "--listen", listen.as_str()];
        args.extend_from_slice(transport);
        // "rdio serve: listening on HOST:PORT (RDMA endpoint ...), serving DIR"
        let (child, addr, _) =
            common::spawn_serve(rdio_command(prefix).args(args).stderr(Stdio::inherit()));
        Self { child, addr }
    }

    fn remote(&self, path: &str) -> String {
        format!("{}:{path}", self.addr)
    }

    fn pid(&self) -> rustix::process::Pid {
        let raw = i32::try_from(self.child.id()).expect("pid");
        rustix::process::Pid::from_raw(raw).expect("non-zero pid")
    }

    /// SIGTERM, then the exit status, within `limit`.
    fn stop(mut self, limit: Duration) -> std::process::ExitStatus {
        rustix::process::kill_process(self.pid(), rustix::process::Signal::TERM).expect("SIGTERM");
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                started.elapsed() < limit,
                "rdio serve did not stop within {limit:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: the server vanishes without a word, as on a crash.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.kill();
    }
}

fn run(prefix: &[&str], args: &[&str]) -> Output {
    rdio_command(prefix).args(args).output().expect("run rdio")
}

/// Assert success; returns standard error, where the summary goes.
fn assert_success(out: &Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{what}: {:?}\nstdout {}\nstderr {stderr}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

/// Put `data` to the server as `name`, check it on the server's disk, get
/// it back, and compare bytes and the printed SHA-256 both ways.
fn round_trip(
    prefix: &[&str],
    served: &Served,
    root: &Path,
    name: &str,
    data: &[u8],
    extra: &[&str],
) {
    let local = tempfile::tempdir().expect("tempdir");
    let src = local.path().join("src");
    fs::write(&src, data).expect("write source");
    let digest = sha256_hex(data);
    let remote = served.remote(name);
    let src_arg = src.to_str().expect("utf-8");

    let mut put = vec!["put", "--sha256", src_arg, remote.as_str()];
    put.extend_from_slice(extra);
    let stdout = assert_success(&run(prefix, &put), &format!("put {name}"));
    assert!(stdout.contains(&digest), "put prints the digest: {stdout}");
    assert_eq!(
        fs::read(root.join(name)).expect("the server's copy"),
        data,
        "{name}: the server's file"
    );

    let back = local.path().join("back");
    let back_arg = back.to_str().expect("utf-8");
    let mut get = vec!["get", "--sha256", remote.as_str(), back_arg];
    get.extend_from_slice(extra);
    let stdout = assert_success(&run(prefix, &get), &format!("get {name}"));
    assert!(stdout.contains(&digest), "get prints the digest: {stdout}");
    let got = fs::read(&back).expect("downloaded file");
    assert_eq!(got.len(), data.len(), "{name}: length");
    assert_eq!(sha256_hex(&got), digest, "{name}: sha256");
    // Nothing but the two files: no temporary left behind.
    let mut names: Vec<_> = fs::read_dir(local.path())
        .expect("list")
        .map(|entry| entry.expect("entry").file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["back", "src"], "stray files next to the download");
}

/// Sizes around the edges: empty, one byte, page boundaries, past 1 MiB,
/// and several requests' worth at the queue depth.
const SIZES: [usize; 6] = [0, 1, 4095, 4096, (1 << 20) + 1, 9 << 20];

#[test]
fn get_and_put_random_files_between_two_processes_in_both_completion_modes() {
    let root = tempfile::tempdir().expect("root");
    let served = Served::start(&[], root.path(), "127.0.0.1");
    for (mode, extra) in [
        ("interrupt", &[][..]),
        ("polling", &["--polling"][..]),
        (
            "small-requests",
            &["--io-size", "64K", "--queue-depth", "3"][..],
        ),
    ] {
        for (i, &size) in SIZES.iter().enumerate() {
            let data = random_bytes(size, (i as u64) << 8 | mode.len() as u64);
            round_trip(
                &[],
                &served,
                root.path(),
                &format!("{mode}-{size}.bin"),
                &data,
                extra,
            );
        }
    }
    // A get into a directory takes the remote name; the server's file is
    // not touched by a get.
    let dir = tempfile::tempdir().expect("dir");
    let remote = served.remote("polling-4096.bin");
    let out = run(&[], &["get", &remote, dir.path().to_str().expect("utf-8")]);
    assert_success(&out, "get into a directory");
    assert_eq!(
        fs::read(dir.path().join("polling-4096.bin")).expect("file"),
        fs::read(root.path().join("polling-4096.bin")).expect("server file")
    );
    let status = served.stop(Duration::from_secs(10));
    assert!(
        status.success(),
        "rdio serve exits 0 on SIGTERM: {status:?}"
    );
}

#[test]
fn a_get_into_a_fifo_or_through_a_symlink_keeps_them() {
    use std::os::unix::fs::FileTypeExt;
    let root = tempfile::tempdir().expect("root");
    let data = random_bytes(300_000, 77);
    fs::write(root.path().join("data.bin"), &data).expect("served file");
    let served = Served::start(&[], root.path(), "127.0.0.1");
    let local = tempfile::tempdir().expect("local");

    // A FIFO (as /dev/null, a device) is written in place: renaming the
    // download over it would replace it with a regular file.
    let fifo = local.path().join("pipe");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success(), "mkfifo: {made:?}");
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || fs::read(&fifo).expect("read the fifo"))
    };
    // A writer of our own until `get` is done, so the reader sees the end
    // of the stream whatever `get` does with the path (no hang).
    let keep_open = fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .expect("open the fifo for writing");
    let out = run(
        &[],
        &[
            "get",
            &served.remote("data.bin"),
            fifo.to_str().expect("utf-8"),
        ],
    );
    drop(keep_open);
    let got = reader.join().expect("reader");
    assert_success(&out, "get into a fifo");
    let kind = fs::symlink_metadata(&fifo).expect("fifo").file_type();
    assert!(kind.is_fifo(), "still a FIFO, not replaced: {kind:?}");
    assert_eq!(got.len(), data.len(), "the FIFO got the whole file");
    assert!(got == data, "the FIFO got the file's bytes");

    // A symbolic link: the file it names gets the download; the link stays.
    let real = local.path().join("real.bin");
    fs::write(&real, b"old").expect("old contents");
    let link = local.path().join("link.bin");
    std::os::unix::fs::symlink(&real, &link).expect("symlink");
    let out = run(
        &[],
        &[
            "get",
            &served.remote("data.bin"),
            link.to_str().expect("utf-8"),
        ],
    );
    assert_success(&out, "get through a symlink");
    let kind = fs::symlink_metadata(&link).expect("link").file_type();
    assert!(kind.is_symlink(), "the link is kept: {kind:?}");
    assert_eq!(fs::read(&real).expect("real file"), data);
    let status = served.stop(Duration::from_secs(10));
    assert!(
        status.success(),
        "rdio serve exits 0 on SIGTERM: {status:?}"
    );
}

#[test]
fn bench_against_a_served_directory_runs_every_operation() {
    let root = tempfile::tempdir().expect("root");
    let served = Served::start(&[], root.path(), "127.0.0.1");
    for polling in [false, true] {
        let mut args = vec![
            "bench",
            "--server",
            served.addr.as_str(),
            "--sizes",
            "4K,64K",
            "--queue-depths",
            "1,4",
            "--bytes",
            "1MiB",
            // One run per row: repeats are covered over loopback and cma.
            "--repeat",
            "1",
        ];
        if polling {
            args.push("--polling");
        }
        let out = run(&[], &args);
        assert_success(&out, "bench --server");
        // The table is bench's output: on standard output.
        let stdout = String::from_utf8_lossy(&out.stdout);
        for op in ["read", "write", "readv", "writev"] {
            let rows = stdout
                .lines()
                .filter(|line| line.split_whitespace().next() == Some(op))
                .count();
            assert!(rows >= 4, "{op}: {rows} rows in\n{stdout}");
        }
        assert!(stdout.contains("ofi:tcp"), "names the provider: {stdout}");
    }
    assert!(
        root.path().join("rdio-bench.dat").exists(),
        "the bench file lives in the server's root"
    );
    // --no-baselines: rdio's rows alone, no baseline loop run.
    let out = run(
        &[],
        &[
            "bench",
            "--server",
            served.addr.as_str(),
            "--sizes",
            "4K",
            "--queue-depths",
            "2",
            "--ops",
            "read",
            "--bytes",
            "256K",
            "--repeat",
            "1",
            "--no-baselines",
        ],
    );
    assert_success(&out, "bench --server --no-baselines");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<&str> = stdout
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|first| !["rdio", "op"].contains(first))
        .collect();
    assert_eq!(rows, ["read"], "{stdout}");
}

#[test]
fn a_missing_remote_file_is_one_clear_line_and_nothing_is_written() {
    let root = tempfile::tempdir().expect("root");
    let served = Served::start(&[], root.path(), "127.0.0.1");
    let local = tempfile::tempdir().expect("local");
    let dst = local.path().join("dst");
    for remote in ["no-such-file", "../escape", "/etc/passwd"] {
        let out = run(
            &[],
            &["get", &served.remote(remote), dst.to_str().expect("utf-8")],
        );
        let stderr = one_line_failure(&out);
        assert!(stderr.contains("cannot open"), "{remote}: {stderr}");
        assert_eq!(
            fs::read_dir(local.path()).expect("list").count(),
            0,
            "{remote}: nothing written locally"
        );
    }
}

/// How the server goes away mid-transfer.
#[derive(Clone, Copy, PartialEq)]
enum Vanish {
    /// SIGKILL: its sockets close, the client hears of it at once.
    Kill,
    /// SIGSTOP: it falls silent with its connections open, as a hung host
    /// or a cut cable; only the dead-peer timeout can tell.
    Freeze,
}

/// Start a 192 MiB transfer, make the server vanish once it is under way,
/// and return the client's output and how long it took to give up.
fn vanish_mid_transfer(
    upload: bool,
    how: Vanish,
) -> (Output, Duration, PathBuf, tempfile::TempDir) {
    vanish_mid_transfer_over(upload, how, &[])
}

/// [`vanish_mid_transfer`] with `transport` arguments for both sides.
fn vanish_mid_transfer_over(
    upload: bool,
    how: Vanish,
    transport: &[&str],
) -> (Output, Duration, PathBuf, tempfile::TempDir) {
    let root = tempfile::tempdir().expect("root");
    let local = tempfile::tempdir().expect("local");
    // Large enough to take seconds at this build's speed with small
    // requests, so the kill lands mid-transfer.
    let size = 192 << 20;
    let data = random_bytes(size, 42);
    let src = local.path().join("src");
    let dst = local.path().join("dst");
    if upload {
        fs::write(&src, &data).expect("local file");
    } else {
        fs::write(root.path().join("big"), &data).expect("server file");
    }
    let mut served = Served::start_over(&[], root.path(), "127.0.0.1", transport);
    let remote = served.remote("big");
    let (src, dst) = (src.to_str().expect("utf-8"), dst.to_str().expect("utf-8"));
    let args: Vec<&str> = if upload {
        vec!["put", src, &remote]
    } else {
        vec!["get", &remote, dst]
    };
    let client = rdio_command(&[])
        .args(&args)
        .args([
            "--io-size",
            "16K",
            "--queue-depth",
            "2",
            "--dead-peer-timeout",
            "3",
        ])
        .args(transport)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn client");
    // Under way: the server has started writing the upload, or the client
    // its temporary download file.
    let started = Instant::now();
    loop {
        let moving = if upload {
            // The server writes an upload to a hidden temporary file.
            upload_bytes_arrived(root.path())
        } else {
            // Bytes in the temporary download file: created before the
            // client connects, it alone does not mean the transfer is
            // under way (on a loaded machine the kill could then land
            // during the connection set-up).
            fs::read_dir(local.path())
                .expect("list")
                .filter_map(Result::ok)
                .any(|e| {
                    e.file_name().to_string_lossy().ends_with(".rdio-part")
                        && e.metadata().is_ok_and(|m| m.len() > 0)
                })
        };
        if moving {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "transfer never started"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(200));
    match how {
        Vanish::Kill => served.kill(),
        Vanish::Freeze => {
            rustix::process::kill_process(served.pid(), rustix::process::Signal::STOP)
                .expect("SIGSTOP");
        }
    }
    let killed = Instant::now();
    let out = client.wait_with_output().expect("client");
    eprintln!(
        "server gone; the client gave up {:?} later: {}",
        killed.elapsed(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let local_dst = local.path().join("dst");
    (out, killed.elapsed(), local_dst, local)
}

/// The client's failure contract: exit status 1 and one line on stderr,
/// which is returned. The first connection to a server may also say, on a
/// line of its own before anything fails, that it trusted the server on
/// first use (ssh's "Permanently added ..."): that notice is not part of
/// the failure and is left out.
fn one_line_failure(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|line| !line.starts_with("rdio: trusting the server at "))
        .collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].starts_with("rdio: error: "), "{stderr}");
    format!("{}\n", lines[0])
}

#[test]
fn killing_the_server_mid_download_fails_clearly_and_leaves_no_file() {
    let (out, took, dst, local) = vanish_mid_transfer(false, Vanish::Kill);
    let stderr = one_line_failure(&out);
    assert!(stderr.contains("download of"), "{stderr}");
    assert!(stderr.contains("was not written"), "{stderr}");
    // Within the dead-peer timeout (3 s) and some slack for the process.
    assert!(took < Duration::from_secs(10), "gave up after {took:?}");
    assert!(!dst.exists(), "no file under the final name");
    assert_eq!(
        fs::read_dir(local.path()).expect("list").count(),
        0,
        "no temporary file left behind"
    );
}

#[test]
fn killing_the_server_mid_upload_says_how_far_it_got() {
    let (out, took, _, _local) = vanish_mid_transfer(true, Vanish::Kill);
    let stderr = one_line_failure(&out);
    assert!(stderr.contains("upload of"), "{stderr}");
    assert!(stderr.contains("was not changed"), "{stderr}");
    assert!(took < Duration::from_secs(10), "gave up after {took:?}");
}

#[test]
fn a_silent_server_is_declared_dead_within_the_timeout() {
    // --dead-peer-timeout 3: not before it (the client must not give up on
    // a live server early), and not long after.
    for upload in [false, true] {
        let (out, took, dst, _local) = vanish_mid_transfer(upload, Vanish::Freeze);
        let stderr = one_line_failure(&out);
        assert!(
            took >= Duration::from_millis(2500) && took < Duration::from_secs(15),
            "gave up after {took:?}: {stderr}"
        );
        if !upload {
            assert!(!dst.exists(), "no file under the final name");
        }
    }
}

/// Two network namespaces joined by a veth pair, deleted when dropped.
struct Namespaces {
    server: String,
    client: String,
}

/// Link-local addresses, only ever inside the two namespaces made here.
const SERVER_IP: &str = "169.254.77.1";
const CLIENT_IP: &str = "169.254.77.2";

impl Namespaces {
    fn create() -> Result<Self, String> {
        let tag = std::process::id();
        let this = Self {
            server: format!("rdio-srv-{tag}"),
            client: format!("rdio-cli-{tag}"),
        };
        let (veth_s, veth_c) = (format!("rdios{tag}"), format!("rdioc{tag}"));
        let steps: Vec<Vec<String>> = vec![
            vec!["netns".into(), "add".into(), this.server.clone()],
            vec!["netns".into(), "add".into(), this.client.clone()],
            [
                "link",
                "add",
                &veth_s,
                "netns",
                &this.server,
                "type",
                "veth",
                "peer",
                "name",
                &veth_c,
                "netns",
                &this.client,
            ]
            .map(String::from)
            .to_vec(),
        ];
        for step in steps {
            ip(&step)?;
        }
        for (ns, dev, addr) in [
            (&this.server, &veth_s, SERVER_IP),
            (&this.client, &veth_c, CLIENT_IP),
        ] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev].map(String::from))?;
            ip(&["-n", ns, "link", "set", dev, "up"].map(String::from))?;
            ip(&["-n", ns, "link", "set", "lo", "up"].map(String::from))?;
        }
        Ok(this)
    }

    fn exec(ns: &str) -> [&str; 4] {
        ["ip", "netns", "exec", ns]
    }
}

fn ip(args: &[String]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth, and so the pair.
        for ns in [&self.server, &self.client] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

#[test]
fn files_cross_between_two_network_namespaces() {
    let namespaces = match Namespaces::create() {
        Ok(namespaces) => namespaces,
        Err(why) => {
            let message = format!(
                "CANNOT TEST ACROSS HOSTS: network namespaces could not be created ({why}); \
                 this test needs root and iproute2"
            );
            // CI runs as root and must run it; elsewhere, say so loudly.
            if std::env::var_os("CI").is_some() {
                panic!("{message}");
            }
            eprintln!("\n!!!!! {message} !!!!!\n");
            return;
        }
    };
    let root = tempfile::tempdir().expect("root");
    let server_ns = Namespaces::exec(&namespaces.server);
    let client_ns = Namespaces::exec(&namespaces.client);
    let served = Served::start(&server_ns, root.path(), SERVER_IP);
    assert!(served.addr.starts_with(SERVER_IP), "{}", served.addr);
    // The client's namespace reaches the server only over the veth: its
    // loopback has no server on it.
    for (i, &size) in [0usize, 4096, (1 << 20) + 1, 9 << 20].iter().enumerate() {
        let data = random_bytes(size, 1000 + i as u64);
        round_trip(
            &client_ns,
            &served,
            root.path(),
            &format!("netns-{size}.bin"),
            &data,
            &[],
        );
        round_trip(
            &client_ns,
            &served,
            root.path(),
            &format!("netns-polling-{size}.bin"),
            &data,
            &["--polling"],
        );
    }
    let status = served.stop(Duration::from_secs(10));
    assert!(
        status.success(),
        "rdio serve exits 0 on SIGTERM: {status:?}"
    );
}

const CMA: [&str; 2] = ["--transport", "cma"];

#[test]
fn get_and_put_over_cma_between_two_processes_in_both_completion_modes() {
    let root = tempfile::tempdir().expect("root");
    let served = Served::start_over(&[], root.path(), "127.0.0.1", &CMA);
    for (mode, extra) in [
        ("interrupt", &CMA[..]),
        ("polling", &["--transport", "cma", "--polling"][..]),
        (
            "small-requests",
            &[
                "--transport",
                "cma",
                "--io-size",
                "64K",
                "--queue-depth",
                "3",
            ][..],
        ),
    ] {
        for (i, &size) in SIZES.iter().enumerate() {
            let data = random_bytes(size, (i as u64) << 8 | mode.len() as u64 | 1 << 40);
            round_trip(
                &[],
                &served,
                root.path(),
                &format!("cma-{mode}-{size}.bin"),
                &data,
                extra,
            );
        }
    }
    // The other transport cannot reach a cma server's endpoint: a clear
    // one-line error, not a hang.
    let dst = root.path().join("never");
    let out = run(
        &[],
        &[
            "get",
            &served.remote("cma-polling-4096.bin"),
            dst.to_str().expect("utf-8"),
            "--connect-timeout",
            "3",
        ],
    );
    let stderr = one_line_failure(&out);
    assert!(stderr.contains("no common RDMA provider"), "{stderr}");
    let status = served.stop(Duration::from_secs(10));
    assert!(
        status.success(),
        "rdio serve exits 0 on SIGTERM: {status:?}"
    );
}

#[test]
fn bench_over_cma_reports_ratios_against_the_raw_cma_loops() {
    let root = tempfile::tempdir().expect("root");
    let served = Served::start_over(&[], root.path(), "127.0.0.1", &CMA);
    let args = [
        "bench",
        "--server",
        served.addr.as_str(),
        "--transport",
        "cma",
        "--sizes",
        "4K,64K",
        "--queue-depths",
        "1,4",
        "--bytes",
        "1MiB",
    ];
    let out = run(&[], &args);
    assert_success(&out, "bench --server --transport cma");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("over cma to 127.0.0.1"), "{stdout}");
    for (op, baseline) in [
        ("read", "vm_write"),
        ("write", "uds_send"),
        ("readv", "vm_write"),
        ("writev", "uds_send"),
    ] {
        let rows: Vec<&str> = stdout
            .lines()
            .filter(|line| line.split_whitespace().next() == Some(op))
            .collect();
        assert_eq!(rows.len(), 4, "{op}: {stdout}");
        for row in rows {
            // The ratios against the plain and the protocol-shaped loop.
            let columns: Vec<&str> = row.split_whitespace().collect();
            for column in [8, 10] {
                let ratio: f64 = columns
                    .get(column)
                    .and_then(|r| r.parse().ok())
                    .unwrap_or_else(|| panic!("{op}: no ratio in {row:?}"));
                assert!(ratio > 0.0, "{row}");
            }
        }
        let shape = if op.starts_with("read") {
            "shape_rd"
        } else {
            "shape_wr"
        };
        for name in [baseline, shape] {
            assert!(
                stdout.lines().any(|l| l.starts_with(name)),
                "{name} rows: {stdout}"
            );
        }
    }
}

#[test]
fn killing_a_cma_server_mid_transfer_fails_clearly() {
    for upload in [false, true] {
        let (out, took, dst, _local) = vanish_mid_transfer_over(upload, Vanish::Kill, &CMA);
        let stderr = one_line_failure(&out);
        let expected = if upload { "upload of" } else { "download of" };
        assert!(stderr.contains(expected), "{stderr}");
        assert!(took < Duration::from_secs(10), "gave up after {took:?}");
        if !upload {
            assert!(!dst.exists(), "no file under the final name");
        }
    }
}

// ----- Issue #16 on the server: atomic uploads, errors by name, paths -----

/// Whether a hidden temporary upload file in `dir` holds bytes yet.
fn upload_bytes_arrived(dir: &Path) -> bool {
    fs::read_dir(dir)
        .expect("list")
        .filter_map(Result::ok)
        .any(|entry| {
            entry.file_name().to_string_lossy().starts_with('.')
                && entry.metadata().is_ok_and(|m| m.len() > 0)
        })
}

/// Names in `dir` starting with `.`: temporary upload files.
fn hidden_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .expect("list")
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.'))
        .collect()
}

/// Wait (bounded) until the server has removed its temporary files from
/// `dir`: it does when it notices the connection's end.
fn wait_for_no_temporary_files(dir: &Path) {
    let started = Instant::now();
    while !hidden_files(dir).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "temporary files left on the server: {:?}",
            hidden_files(dir)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Kill `put` (SIGKILL, nothing of it runs after) once the server has
/// bytes of it: an upload leaves the old file; `--inplace` a partial one.
fn a_killed_put_leaves_the_old_file_over(transport: &[&str]) {
    let root = tempfile::tempdir().expect("root");
    let local = tempfile::tempdir().expect("local");
    let old = b"the old contents, which must survive".to_vec();
    let size = 96 << 20;
    let src = local.path().join("src");
    fs::write(&src, random_bytes(size, 16)).expect("local file");
    let served = Served::start_over(&[], root.path(), "127.0.0.1", transport);
    for in_place in [false, true] {
        fs::write(root.path().join("big"), &old).expect("server file");
        let remote = served.remote("big");
        let mut args = vec![
            "put",
            src.to_str().expect("utf-8"),
            &remote,
            "--io-size",
            "16K",
            "--queue-depth",
            "1",
        ];
        args.extend_from_slice(transport);
        if in_place {
            args.push("--inplace");
        }
        let mut client = rdio_command(&[])
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn put");
        let started = Instant::now();
        loop {
            let arrived = if in_place {
                fs::read(root.path().join("big")).is_ok_and(|bytes| bytes != old)
            } else {
                upload_bytes_arrived(root.path())
            };
            if arrived {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the upload never started"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        client.kill().expect("kill put");
        let status = client.wait().expect("wait");
        assert!(!status.success(), "killed mid-transfer: {status:?}");
        wait_for_no_temporary_files(root.path());
        let now = fs::read(root.path().join("big")).expect("server file");
        if in_place {
            assert!(
                now != old && now.len() < size,
                "--inplace writes the file itself: {} bytes",
                now.len()
            );
        } else {
            assert_eq!(now, old, "the old contents stay under the name");
        }
    }
}

#[test]
fn a_killed_put_leaves_the_old_file_over_fabric() {
    a_killed_put_leaves_the_old_file_over(&[]);
}

#[test]
fn a_killed_put_leaves_the_old_file_over_cma() {
    a_killed_put_leaves_the_old_file_over(&CMA);
}

/// `HOST:PORT:/f` is `f` at the root of the export, for `put` and `get`; a
/// put into a directory lands in it, a get of one without -r says what it
/// is.
fn leading_slashes_and_directories_over(transport: &[&str]) {
    let root = tempfile::tempdir().expect("root");
    fs::create_dir(root.path().join("sub")).expect("mkdir");
    let local = tempfile::tempdir().expect("local");
    let src = local.path().join("src");
    let data = random_bytes(100_000, 61);
    fs::write(&src, &data).expect("local file");
    let src = src.to_str().expect("utf-8");
    let served = Served::start_over(&[], root.path(), "127.0.0.1", transport);
    for path in ["/f", "/sub/g"] {
        let remote = served.remote(path);
        let mut put = vec!["put", src, &remote];
        put.extend_from_slice(transport);
        assert_success(&run(&[], &put), &format!("put {path}"));
        let on_disk = root.path().join(path.trim_start_matches('/'));
        assert_eq!(fs::read(&on_disk).expect("on the server"), data, "{path}");
        let back = local.path().join("back");
        let back = back.to_str().expect("utf-8");
        let mut get = vec!["get", &remote, back];
        get.extend_from_slice(transport);
        assert_success(&run(&[], &get), &format!("get {path}"));
        assert_eq!(fs::read(back).expect("downloaded"), data, "{path}");
    }
    // A put to a directory puts the file in it, under its own name (as
    // scp does); a get of a directory without -r says what it is.
    for (path, landed) in [("/", "src"), ("sub", "sub/src"), ("/sub/", "sub/src")] {
        let remote = served.remote(path);
        let mut put = vec!["put", src, &remote];
        put.extend_from_slice(transport);
        assert_success(&run(&[], &put), &format!("put into {path}"));
        let landed = root.path().join(landed);
        assert_eq!(fs::read(&landed).expect("put into a directory"), data);
        fs::remove_file(&landed).expect("remove");
        let dst = local.path().join("never");
        let dst = dst.to_str().expect("utf-8");
        let mut get = vec!["get", &remote, dst];
        get.extend_from_slice(transport);
        let stderr = one_line_failure(&run(&[], &get));
        assert!(stderr.contains("is a directory"), "{path}: {stderr}");
    }
    assert!(hidden_files(root.path()).is_empty());
    assert!(hidden_files(&root.path().join("sub")).is_empty());
}

#[test]
fn leading_slashes_and_directories_over_fabric() {
    leading_slashes_and_directories_over(&[]);
}

#[test]
fn leading_slashes_and_directories_over_cma() {
    leading_slashes_and_directories_over(&CMA);
}

/// A 1 MiB tmpfs mounted for a test, unmounted when dropped.
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    /// `None`, after saying why, where mounting is impossible.
    fn mount() -> Option<Self> {
        let dir = tempfile::tempdir().expect("tempdir");
        match Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(dir.path())
            .output()
        {
            Ok(out) if out.status.success() => Some(Self { dir }),
            Ok(out) => {
                eprintln!(
                    "skipped: cannot mount a small tmpfs: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("skipped: cannot run mount: {e}");
                None
            }
        }
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// `put` to a full server: "no space left on the server", the remote file
/// as it was, nothing left behind.
fn a_put_to_a_full_server_says_so_over(transport: &[&str]) {
    let Some(small) = SmallFs::mount() else {
        return;
    };
    let root = small.dir.path();
    fs::write(root.join("f"), b"old").expect("server file");
    let local = tempfile::tempdir().expect("local");
    let src = local.path().join("src");
    fs::write(&src, random_bytes(3 << 20, 5)).expect("local file");
    let served = Served::start_over(&[], root, "127.0.0.1", transport);
    let remote = served.remote("f");
    let mut put = vec!["put", src.to_str().expect("utf-8"), &remote];
    put.extend_from_slice(transport);
    let stderr = one_line_failure(&run(&[], &put));
    assert!(stderr.contains("no space left on the server"), "{stderr}");
    assert!(stderr.contains("was not changed"), "{stderr}");
    wait_for_no_temporary_files(root);
    assert_eq!(fs::read(root.join("f")).expect("server file"), b"old");
    drop(served);
}

#[test]
fn a_put_to_a_full_server_says_so_over_fabric() {
    a_put_to_a_full_server_says_so_over(&[]);
}

#[test]
fn a_put_to_a_full_server_says_so_over_cma() {
    a_put_to_a_full_server_says_so_over(&CMA);
}

/// `rdio serve` stopped by SIGTERM mid-upload: it ends the connection in
/// order, removes the temporary file before it exits, and the old file
/// stays; the client says the remote file was not changed.
fn stopping_the_server_mid_put_keeps_the_old_file_over(transport: &[&str]) {
    let root = tempfile::tempdir().expect("root");
    let local = tempfile::tempdir().expect("local");
    let old = b"old".to_vec();
    fs::write(root.path().join("big"), &old).expect("server file");
    let src = local.path().join("src");
    fs::write(&src, random_bytes(96 << 20, 17)).expect("local file");
    let served = Served::start_over(&[], root.path(), "127.0.0.1", transport);
    let remote = served.remote("big");
    let mut args = vec![
        "put",
        src.to_str().expect("utf-8"),
        &remote,
        "--io-size",
        "16K",
        "--queue-depth",
        "1",
    ];
    args.extend_from_slice(transport);
    let client = rdio_command(&[])
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn put");
    let started = Instant::now();
    while !upload_bytes_arrived(root.path()) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the upload never started"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let status = served.stop(Duration::from_secs(15));
    assert!(
        status.success(),
        "rdio serve exits 0 on SIGTERM: {status:?}"
    );
    assert!(
        hidden_files(root.path()).is_empty(),
        "removed before the server exited"
    );
    assert_eq!(fs::read(root.path().join("big")).expect("server file"), old);
    let out = client.wait_with_output().expect("put");
    let stderr = one_line_failure(&out);
    assert!(stderr.contains("was not changed"), "{stderr}");
}

#[test]
fn stopping_the_server_mid_put_keeps_the_old_file_over_fabric() {
    stopping_the_server_mid_put_keeps_the_old_file_over(&[]);
}

#[test]
fn stopping_the_server_mid_put_keeps_the_old_file_over_cma() {
    stopping_the_server_mid_put_keeps_the_old_file_over(&CMA);
}

/// The lines of a successful command's stdout.
/// Standard output of a command that succeeded.
fn stdout_text(out: &Output, what: &str) -> String {
    assert_success(out, what);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stdout_lines(out: &Output, what: &str) -> Vec<String> {
    assert_success(out, what);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `rdio ls`, `stat`, `rm`, `mkdir` and `mv` against `rdio serve`: what
/// they print, what they do to the served tree, and how they fail
/// (missing paths, escapes through `..` and through a symlink, a non-empty
/// directory, an existing destination).
fn remote_file_operations_over(transport: &[&str]) {
    let root = tempfile::tempdir().expect("root");
    let outside = tempfile::tempdir().expect("outside");
    fs::write(outside.path().join("secret"), b"secret").expect("outside file");
    fs::create_dir_all(root.path().join("dir/sub")).expect("mkdir");
    fs::write(root.path().join("dir/f.txt"), b"hello").expect("file");
    fs::write(root.path().join("top.bin"), random_bytes(1000, 3)).expect("file");
    std::os::unix::fs::symlink(outside.path(), root.path().join("escape")).expect("symlink");
    let served = Served::start_over(&[], root.path(), "127.0.0.1", transport);
    let rdio = |args: &[&str]| run(&[], args);

    // ls: names sorted, directories marked; -l; --json; a file lists as
    // itself.
    let listed = stdout_lines(&rdio(&["ls", &served.remote("/")]), "ls /");
    assert_eq!(listed, ["dir/", "escape", "top.bin"]);
    let long = stdout_lines(&rdio(&["ls", "-l", &served.remote("dir")]), "ls -l");
    assert_eq!(long.len(), 2, "{long:?}");
    assert!(
        long[0].starts_with("-rw-") && long[0].ends_with(" f.txt"),
        "{long:?}"
    );
    assert!(long[0].contains(" 5 "), "size 5: {long:?}");
    assert!(
        long[1].starts_with("drwx") && long[1].ends_with(" sub"),
        "{long:?}"
    );
    let json = stdout_text(&rdio(&["ls", "--json", &served.remote("dir")]), "ls --json");
    assert!(
        json.starts_with("[{\"name\":\"f.txt\",\"type\":\"file\",\"mode\":\"0")
            && json.contains("\"size\":5,")
            && json.contains("{\"name\":\"sub\",\"type\":\"directory\""),
        "{json}"
    );
    let file = stdout_lines(&rdio(&["ls", &served.remote("dir/f.txt")]), "ls file");
    assert_eq!(file, ["f.txt"]);

    // stat: a file, a directory, a symlink (described, not followed).
    let stat = stdout_text(&rdio(&["stat", &served.remote("dir/f.txt")]), "stat");
    assert!(
        stat.contains("type: file") && stat.contains("size: 5"),
        "{stat}"
    );
    let stat = stdout_text(&rdio(&["stat", &served.remote("escape")]), "stat link");
    assert!(stat.contains("type: symlink"), "{stat}");

    // Missing paths and escapes fail in one line and change nothing.
    for (args, expect) in [
        (vec!["ls", "no/such"], "not found"),
        (vec!["stat", "missing"], "not found"),
        (vec!["rm", "missing"], "not found"),
        (vec!["ls", "escape"], "access denied"),
        (vec!["stat", "escape/secret"], "access denied"),
        (vec!["rm", "escape/secret"], "access denied"),
        (vec!["rm", "../x"], "access denied"),
        (vec!["mkdir", "escape/new"], "access denied"),
        (vec!["mv", "top.bin", "escape/top.bin"], "access denied"),
        (vec!["rm", "dir"], "is a directory"),
        (vec!["rm", "dir", "-d"], "directory not empty"),
        (vec!["mkdir", "dir"], "already exists"),
        (vec!["mkdir", "a/b"], "not found"),
    ] {
        let mut args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let path = args.remove(1);
        args.insert(1, served.remote(&path));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let stderr = one_line_failure(&rdio(&args));
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
    }
    assert_eq!(
        fs::read(outside.path().join("secret")).expect("outside file"),
        b"secret"
    );
    assert!(!outside.path().join("top.bin").exists());
    assert!(root.path().join("top.bin").exists());

    // mkdir -p, rm -d of an empty directory, rm of a file.
    assert_success(&rdio(&["mkdir", "-p", &served.remote("a/b/c")]), "mkdir -p");
    assert!(root.path().join("a/b/c").is_dir());
    assert_success(
        &rdio(&["mkdir", "-p", &served.remote("a/b")]),
        "mkdir -p again",
    );
    assert_success(&rdio(&["rm", "-d", &served.remote("a/b/c")]), "rm -d");
    assert!(!root.path().join("a/b/c").exists());
    assert_success(&rdio(&["mkdir", &served.remote("a/b/c")]), "mkdir");
    assert!(root.path().join("a/b/c").is_dir());

    // mv: a rename, into a directory, and -n next to an existing name.
    assert_success(&rdio(&["mv", &served.remote("top.bin"), "moved.bin"]), "mv");
    assert!(root.path().join("moved.bin").exists() && !root.path().join("top.bin").exists());
    assert_success(&rdio(&["mv", &served.remote("moved.bin"), "a/"]), "mv into");
    assert!(root.path().join("a/moved.bin").exists());
    fs::write(root.path().join("other"), b"other").expect("file");
    let out = rdio(&["mv", "-n", &served.remote("other"), "dir/f.txt"]);
    assert_success(&out, "mv -n");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("skipped"),
        "mv -n says it skipped"
    );
    assert_eq!(
        fs::read(root.path().join("dir/f.txt")).expect("kept"),
        b"hello"
    );
    assert!(root.path().join("other").exists());
    assert_success(
        &rdio(&["mv", &served.remote("other"), "dir/f.txt"]),
        "mv over",
    );
    assert_eq!(
        fs::read(root.path().join("dir/f.txt")).expect("replaced"),
        b"other"
    );
    assert_success(&rdio(&["rm", &served.remote("dir/f.txt")]), "rm");
    assert!(!root.path().join("dir/f.txt").exists());
    // The symlink itself can be removed: the link goes, not its target.
    assert_success(&rdio(&["rm", &served.remote("escape")]), "rm symlink");
    assert!(outside.path().join("secret").exists());
}

#[test]
fn remote_file_operations_over_fabric() {
    remote_file_operations_over(&[]);
}

#[test]
fn remote_file_operations_over_cma() {
    remote_file_operations_over(&CMA);
}

/// `rm -r`: a nested tree (empty directories, files, a symlink to a
/// directory outside the tree) goes, entry by entry, deepest first; the
/// symlink is removed as a link, so everything it pointed at stays. A file
/// or a symlink named on the command line is removed as by `rm`; the
/// export's root and a path leading out of it are refused, changing
/// nothing.
#[test]
fn rm_r_removes_a_tree_without_following_symlinks() {
    let root = tempfile::tempdir().expect("root");
    let outside = tempfile::tempdir().expect("outside");
    fs::create_dir(outside.path().join("kept")).expect("mkdir");
    fs::write(outside.path().join("kept/precious"), b"precious").expect("file");
    let tree = root.path().join("tree");
    fs::create_dir_all(tree.join("a/b/empty")).expect("mkdir");
    fs::create_dir_all(tree.join("c")).expect("mkdir");
    fs::write(tree.join("top"), b"top").expect("file");
    fs::write(tree.join("a/f"), random_bytes(5000, 7)).expect("file");
    fs::write(tree.join("a/b/empty-file"), b"").expect("file");
    std::os::unix::fs::symlink(outside.path().join("kept"), tree.join("a/out")).expect("symlink");
    std::os::unix::fs::symlink(outside.path().join("kept"), root.path().join("link"))
        .expect("symlink");
    fs::write(root.path().join("other"), b"other").expect("file");
    let served = Served::start_over(&[], root.path(), "127.0.0.1", &[]);
    let rdio = |args: &[&str]| run(&[], args);

    for (args, expect) in [
        (vec!["rm", "-r", "/"], "export's root"),
        (vec!["rm", "-r", "."], "export's root"),
        (vec!["rm", "-r", "link/precious"], "access denied"),
        (vec!["rm", "-r", "../x"], "access denied"),
        (vec!["rm", "-r", "missing"], "not found"),
    ] {
        let mut args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let path = args.remove(2);
        args.push(served.remote(&path));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let stderr = one_line_failure(&rdio(&args));
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
    }
    assert!(tree.join("a/b/empty").is_dir() && root.path().join("other").exists());

    assert_success(&rdio(&["rm", "-r", &served.remote("tree/")]), "rm -r");
    assert!(!tree.exists(), "the tree is gone");
    // A symlink named itself goes as a link too; a file as by rm.
    assert_success(&rdio(&["rm", "-r", &served.remote("link")]), "rm -r link");
    assert_success(&rdio(&["rm", "-R", &served.remote("other")]), "rm -R file");
    assert!(root.path().read_dir().expect("list").next().is_none());
    assert_eq!(
        fs::read(outside.path().join("kept/precious")).expect("target kept"),
        b"precious"
    );
}

/// A read-only export lists and describes, and refuses rm, mkdir and mv
/// with "read-only", changing nothing.
#[test]
fn a_read_only_export_refuses_remote_changes() {
    let root = tempfile::tempdir().expect("root");
    fs::create_dir(root.path().join("d")).expect("mkdir");
    fs::write(root.path().join("d/inside"), b"inside").expect("file");
    fs::write(root.path().join("f"), b"f").expect("file");
    let served = Served::start_over(&[], root.path(), "127.0.0.1", &["--read-only"]);
    let listed = stdout_lines(&run(&[], &["ls", &served.remote("/")]), "ls");
    assert_eq!(listed, ["d/", "f"]);
    for args in [
        vec!["rm".to_owned(), served.remote("f")],
        vec!["rm".to_owned(), "-d".to_owned(), served.remote("d")],
        vec!["rm".to_owned(), "-r".to_owned(), served.remote("d")],
        vec!["mkdir".to_owned(), served.remote("new")],
        vec!["mv".to_owned(), served.remote("f"), "g".to_owned()],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let stderr = one_line_failure(&run(&[], &args));
        assert!(stderr.contains("read-only"), "{args:?}: {stderr}");
    }
    assert!(root.path().join("f").exists() && root.path().join("d/inside").exists());
    assert!(!root.path().join("new").exists() && !root.path().join("g").exists());
    // rm -r names the entry it could not remove, and what was left.
    let stderr = one_line_failure(&run(&[], &["rm", "-r", &served.remote("d")]));
    assert!(
        stderr.contains(":d/inside") && stderr.contains("nothing was removed"),
        "{stderr}"
    );
}

/// Permission bits and modification time of `path` (not following a
/// symlink).
fn mode_and_mtime(path: &Path) -> (u32, std::time::SystemTime) {
    use std::os::unix::fs::PermissionsExt;
    let meta = fs::symlink_metadata(path).expect("stat");
    (
        meta.permissions().mode() & 0o777,
        meta.modified().expect("mtime"),
    )
}

/// Every path under `dir` (relative, sorted), with a file's bytes.
fn tree_contents(dir: &Path) -> Vec<(String, Option<Vec<u8>>)> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, Option<Vec<u8>>)>) {
        for entry in fs::read_dir(dir).expect("list") {
            let path = entry.expect("entry").path();
            let name = path
                .strip_prefix(base)
                .expect("beneath")
                .to_string_lossy()
                .into_owned();
            let meta = fs::symlink_metadata(&path).expect("stat");
            if meta.is_dir() {
                out.push((format!("{name}/"), None));
                walk(base, &path, out);
            } else {
                out.push((name, Some(fs::read(&path).expect("read"))));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// `put -r -p` of a tree with nested directories, an empty directory, an
/// empty file and a symlink, then `get -r -p` of it back: the same files
/// and directories, modes and modification times; the symlink skipped
/// with a warning both ways. Then several sources, `--no-clobber`, and
/// what a directory without -r says.
fn tree_round_trip_over(transport: &[&str]) {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().expect("root");
    let local = tempfile::tempdir().expect("local");
    let src = local.path().join("src");
    fs::create_dir_all(src.join("nested/deeper")).expect("mkdir");
    fs::create_dir_all(src.join("nested/empty-dir")).expect("mkdir");
    fs::write(src.join("a.txt"), random_bytes(100_000, 1)).expect("file");
    fs::write(src.join("empty.bin"), b"").expect("file");
    fs::write(
        src.join("nested/deeper/b.bin"),
        random_bytes((1 << 20) + 1, 2),
    )
    .expect("file");
    std::os::unix::fs::symlink("a.txt", src.join("link")).expect("symlink");
    fs::set_permissions(src.join("a.txt"), fs::Permissions::from_mode(0o640)).expect("chmod");
    let past = std::time::UNIX_EPOCH + Duration::from_nanos(1_600_000_000_123_456_789);
    for path in ["a.txt", "empty.bin", "nested/deeper/b.bin"] {
        fs::File::options()
            .write(true)
            .open(src.join(path))
            .and_then(|f| f.set_modified(past))
            .expect("set mtime");
    }
    fs::set_permissions(src.join("nested"), fs::Permissions::from_mode(0o750)).expect("chmod");
    let served = Served::start_over(&[], root.path(), "127.0.0.1", transport);
    let with = |args: &[&str]| {
        let mut args = args.to_vec();
        args.extend_from_slice(transport);
        run(&[], &args)
    };
    let src_arg = src.to_str().expect("utf-8");

    // Up: the tree lands in the export's root under its own name.
    let out = with(&["put", "-r", "-p", src_arg, &served.remote("/")]);
    assert_success(&out, "put -r");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("skipped") && stderr.contains("link") && stderr.contains("symlink"),
        "the symlink is skipped with a warning: {stderr}"
    );
    let up = root.path().join("src");
    let mut expected = tree_contents(&src);
    expected.retain(|(name, _)| name != "link");
    assert_eq!(tree_contents(&up), expected, "the server's copy");
    for path in ["a.txt", "empty.bin", "nested/deeper/b.bin", "nested"] {
        assert_eq!(
            mode_and_mtime(&up.join(path)),
            mode_and_mtime(&src.join(path)),
            "-p on the server: {path}"
        );
    }

    // Back down into a new directory, which becomes the copy; the server
    // gets a symlink of its own, which is skipped the same way.
    std::os::unix::fs::symlink("a.txt", up.join("server-link")).expect("symlink");
    let back = local.path().join("back");
    let out = with(&[
        "get",
        "-r",
        "-p",
        &served.remote("src"),
        back.to_str().expect("utf-8"),
    ]);
    assert_success(&out, "get -r");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("server-link"), "warned: {stderr}");
    assert_eq!(tree_contents(&back), expected, "the round trip");
    for path in ["a.txt", "empty.bin", "nested/deeper/b.bin", "nested"] {
        assert_eq!(
            mode_and_mtime(&back.join(path)),
            mode_and_mtime(&src.join(path)),
            "-p locally: {path}"
        );
    }

    // Several sources, both ways.
    assert_success(&with(&["mkdir", &served.remote("multi")]), "mkdir");
    let a = src.join("a.txt");
    let e = src.join("empty.bin");
    let (a, e) = (a.to_str().expect("utf-8"), e.to_str().expect("utf-8"));
    assert_success(
        &with(&["put", a, e, &served.remote("multi/")]),
        "put several",
    );
    assert_eq!(
        fs::read(root.path().join("multi/a.txt")).expect("a"),
        fs::read(a).expect("a")
    );
    assert!(root.path().join("multi/empty.bin").exists());
    let two = local.path().join("two");
    fs::create_dir(&two).expect("mkdir");
    let two_arg = two.to_str().expect("utf-8");
    let (ra, re) = (
        served.remote("multi/a.txt"),
        served.remote("multi/empty.bin"),
    );
    assert_success(&with(&["get", &ra, &re, two_arg]), "get several");
    assert_eq!(
        fs::read(two.join("a.txt")).expect("a"),
        fs::read(a).expect("a")
    );
    assert_eq!(fs::read(two.join("empty.bin")).expect("e"), b"");

    // --no-clobber: what exists stays, and is named.
    fs::write(two.join("a.txt"), b"mine").expect("local change");
    let out = with(&["get", "--no-clobber", &ra, &re, two_arg]);
    assert_success(&out, "get --no-clobber");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("skipped 2 existing"), "{stderr}");
    assert_eq!(fs::read(two.join("a.txt")).expect("kept"), b"mine");
    fs::write(root.path().join("multi/a.txt"), b"theirs").expect("server change");
    let out = with(&["put", "-n", a, e, &served.remote("multi")]);
    assert_success(&out, "put -n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("skipped 2 existing"));
    assert_eq!(
        fs::read(root.path().join("multi/a.txt")).expect("kept"),
        b"theirs"
    );

    // A directory needs -r; several sources need a directory.
    let stderr = one_line_failure(&with(&["get", &served.remote("src"), two_arg]));
    assert!(stderr.contains("is a directory (use -r"), "{stderr}");
    let stderr = one_line_failure(&with(&["put", src_arg, &served.remote("x")]));
    assert!(stderr.contains("is a directory (use -r"), "{stderr}");
    let stderr = one_line_failure(&with(&["put", a, e, &served.remote("multi/a.txt")]));
    assert!(stderr.contains("is not a directory"), "{stderr}");
    let file = two.join("a.txt");
    let stderr = one_line_failure(&with(&["get", &ra, &re, file.to_str().expect("utf-8")]));
    assert!(stderr.contains("is not a directory"), "{stderr}");
}

#[test]
fn tree_round_trip_over_fabric() {
    tree_round_trip_over(&[]);
}

#[test]
fn tree_round_trip_over_cma() {
    tree_round_trip_over(&CMA);
}

/// `--partial`: a download killed half way leaves `.NAME.rdio-part`
/// holding a prefix of the file; the next `--partial` download checks it
/// against the server and appends to it, and one whose part file does not
/// match the server's file starts over. Either way the result is the
/// server's file.
#[test]
fn a_killed_partial_download_resumes_where_it_stopped() {
    let root = tempfile::tempdir().expect("root");
    let data = random_bytes(24 << 20, 91);
    fs::write(root.path().join("big.bin"), &data).expect("served file");
    let served = Served::start(&[], root.path(), "127.0.0.1");
    let local = tempfile::tempdir().expect("local");
    let dst = local.path().join("big.bin");
    let part = local.path().join(".big.bin.rdio-part");
    let remote = served.remote("big.bin");
    let dst_arg = dst.to_str().expect("utf-8");

    // Slowed down so that it is killed half way.
    let mut child = rdio_command(&[])
        .args(["get", "--partial", "--bwlimit", "8M", "--io-size", "256K"])
        .args([remote.as_str(), dst_arg])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn get");
    let started = Instant::now();
    while fs::metadata(&part).map_or(0, |m| m.len()) < 4 << 20 {
        assert!(started.elapsed() < Duration::from_secs(20), "no progress");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let held = fs::read(&part).expect("the part file is kept");
    assert!(
        held.len() >= 4 << 20 && held.len() < data.len(),
        "{} bytes",
        held.len()
    );
    assert_eq!(held[..], data[..held.len()], "a prefix of the file");
    assert!(!dst.exists());

    let out = run(&[], &["get", "--partial", "--sha256", &remote, dst_arg]);
    let stdout = assert_success(&out, "resumed get");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("resuming {remote} at {} bytes", held.len())),
        "{stderr}"
    );
    assert!(
        stdout.contains(&sha256_hex(&data)),
        "the whole file's digest: {stdout}"
    );
    assert_eq!(fs::read(&dst).expect("downloaded"), data);
    assert!(!part.exists(), "the part file became the download");

    // A part file that is not a prefix of the server's file: started over.
    let mut wrong = data[..1 << 20].to_vec();
    wrong[1000] ^= 1;
    fs::write(&part, &wrong).expect("a wrong part file");
    fs::remove_file(&dst).expect("remove");
    let out = run(&[], &["get", "--partial", &remote, dst_arg]);
    assert_success(&out, "get over a wrong part file");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not match"), "{stderr}");
    assert_eq!(fs::read(&dst).expect("downloaded"), data);
}

/// `--bwlimit`: moving 6 MiB at 2 MiB/s (256 KiB bursts) takes at least
/// (6 MiB - 256 KiB) / 2 MiB/s = 2.875 s, both ways; without it, far less.
#[test]
fn bwlimit_bounds_the_rate_both_ways() {
    let root = tempfile::tempdir().expect("root");
    let local = tempfile::tempdir().expect("local");
    let data = random_bytes(6 << 20, 17);
    let src = local.path().join("src");
    fs::write(&src, &data).expect("file");
    let served = Served::start(&[], root.path(), "127.0.0.1");
    let remote = served.remote("limited");
    let back = local.path().join("back");
    let limit = ["--bwlimit", "2M", "--io-size", "256K"];
    let floor = Duration::from_secs_f64(((6 << 20) - (256 << 10)) as f64 / (2 << 20) as f64);
    for args in [
        vec!["put", src.to_str().expect("utf-8"), remote.as_str()],
        vec!["get", remote.as_str(), back.to_str().expect("utf-8")],
    ] {
        let started = Instant::now();
        let mut limited = args.clone();
        limited.extend_from_slice(&limit);
        assert_success(&run(&[], &limited), &format!("{} --bwlimit", args[0]));
        let took = started.elapsed();
        assert!(took >= floor, "{}: {took:?} < {floor:?}", args[0]);
    }
    assert_eq!(fs::read(&back).expect("back"), data);
    let started = Instant::now();
    assert_success(
        &run(
            &[],
            &["get", remote.as_str(), back.to_str().expect("utf-8")],
        ),
        "get without a limit",
    );
    assert!(
        started.elapsed() < floor,
        "unlimited: {:?}",
        started.elapsed()
    );
}

/// A directory larger than one listing page (300 names of 100 bytes: 15
/// to a page) lists whole, in order, through `ls` and `get -r`.
#[test]
fn a_large_directory_lists_across_pages() {
    let root = tempfile::tempdir().expect("root");
    let dir = root.path().join("many");
    fs::create_dir(&dir).expect("mkdir");
    let mut names: Vec<String> = (0..300)
        .map(|i| format!("{i:03}{}", "x".repeat(97)))
        .collect();
    for name in &names {
        fs::write(dir.join(name), name.as_bytes()).expect("file");
    }
    names.sort();
    let served = Served::start(&[], root.path(), "127.0.0.1");
    let listed = stdout_lines(&run(&[], &["ls", &served.remote("many")]), "ls");
    assert_eq!(listed, names);
    let local = tempfile::tempdir().expect("local");
    let copy = local.path().join("copy");
    let out = run(
        &[],
        &[
            "get",
            "-r",
            &served.remote("many"),
            copy.to_str().expect("utf-8"),
        ],
    );
    assert_success(&out, "get -r");
    assert_eq!(tree_contents(&copy), tree_contents(&dir));
}
