//! `rdio doctor`: what works on this host, what does not, and the one
//! command or setting that would fix it.
//!
//! Every check is a real attempt, not a guess from configuration: libfabric
//! is opened and its `tcp` provider carries a message over 127.0.0.1, a
//! child process cross-memory-attaches to this one and back, a read lease is
//! taken on a file under the served root, `openat2` resolves beneath it.

use crate::network::Transport;
use anyhow::{Context, Result, bail};
use rdio_transport::{Access, Completion, CompletionKind, Slice, Transport as _};
use std::fmt;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long each connection probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What a client with the default tuning (`--queue-depth 8`, `--io-size
/// 1MiB`) registers: its read/write slots plus send, receive and status
/// buffers (about 1 MiB). Verbs pins all of it against `RLIMIT_MEMLOCK`.
const DEFAULT_REGISTERED: u64 = 8 * (1 << 20) + (1 << 20);

/// The hidden subcommand the cma probe runs in a child process.
pub const CMA_PEER_COMMAND: &str = "__doctor-cma-peer";

/// What `doctor` needs from the command line.
#[derive(Debug)]
pub struct Doctor {
    /// The directory `serve --root` would export (leases, openat2);
    /// a temporary directory when absent.
    pub root: Option<PathBuf>,
    /// The libfabric provider to try.
    pub provider: String,
    /// The transport whose failure makes the exit status non-zero.
    pub default: Transport,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Ok,
    Warn,
    Fail,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Fail => "FAIL",
        })
    }
}

/// One line of the report (and its fix, if any).
#[derive(Debug)]
struct Check {
    name: &'static str,
    verdict: Verdict,
    detail: String,
    fix: Option<String>,
}

impl Check {
    /// `{"name", "verdict" (ok, warn, fail), "detail", "fix" (or null)}`.
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "verdict": self.verdict.to_string().to_lowercase(),
            "detail": self.detail,
            "fix": self.fix,
        })
    }

    fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            verdict: Verdict::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    fn bad(
        name: &'static str,
        verdict: Verdict,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            name,
            verdict,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

pub fn run(doctor: &Doctor) -> Result<()> {
    let scratch;
    let dir = match &doctor.root {
        Some(root) => {
            if !root.is_dir() {
                bail!("--root {} is not a directory", root.display());
            }
            root.clone()
        }
        None => {
            scratch = tempfile::tempdir().context("cannot create a temporary directory")?;
            scratch.path().to_path_buf()
        }
    };
    let where_ = match &doctor.root {
        Some(root) => format!("under --root {}", root.display()),
        None => "in a temporary directory (pass --root DIR to check the one you serve)".into(),
    };

    let transports = [
        (
            Transport::Loopback,
            Check::ok(
                "loopback",
                "in-process server (cp, bench): always available",
            ),
        ),
        (Transport::Fabric, fabric(&doctor.provider)),
        (Transport::Cma, cma()),
        (Transport::Verbs, verbs()),
    ];
    let host = [
        rdma_devices(),
        soft_rdma(),
        memlock(),
        ptrace_scope(),
        leases(&dir, &where_),
        openat2(&dir, &where_),
    ];

    let default = transports
        .iter()
        .find(|(transport, _)| *transport == doctor.default)
        .map(|(_, check)| check)
        .context("no check for the default transport")?;
    if crate::report::json() {
        // `--json`: the report as one object on standard output; the exit
        // status and the error line stay as without it.
        let checks = |checks: &mut dyn Iterator<Item = &Check>| -> Vec<serde_json::Value> {
            checks.map(Check::json).collect()
        };
        println!(
            "{}",
            serde_json::json!({
                "command": "doctor",
                "transports": checks(&mut transports.iter().map(|(_, check)| check)),
                "host": checks(&mut host.iter()),
                "default": default.name,
                "default_works": default.verdict != Verdict::Fail,
            })
        );
    } else {
        println!("transports");
        for (_, check) in &transports {
            print_check(check);
        }
        println!("host");
        for check in &host {
            print_check(check);
        }
    }
    if default.verdict == Verdict::Fail {
        bail!(
            "the {} transport does not work here: {}",
            default.name,
            default.detail
        );
    }
    if !crate::report::json() {
        println!("the {} transport works here", default.name);
    }
    Ok(())
}

fn print_check(check: &Check) {
    println!("  {:<10}{:<6}{}", check.name, check.verdict, check.detail);
    if let Some(fix) = &check.fix {
        println!("  {:<10}{:<6}{}", "", "fix", fix);
    }
}

/// libfabric: loaded, its providers listed, and a message carried over a
/// connection of `provider` on 127.0.0.1.
fn fabric(provider: &str) -> Check {
    let providers = match rdio_fabric::providers() {
        Ok(providers) => providers,
        Err(error) => {
            return Check::bad(
                "fabric",
                Verdict::Fail,
                format!("{error}"),
                "apt-get install libfabric1 (or set RDIO_LIBFABRIC=/path/to/libfabric.so.1)",
            );
        }
    };
    let listed = if providers.is_empty() {
        "none".to_owned()
    } else {
        providers.join(", ")
    };
    match fabric_message(provider) {
        Ok(elapsed) => Check::ok(
            "fabric",
            format!(
                "libfabric loaded, providers {listed}; a {provider} connection on 127.0.0.1 \
                 carried a message in {:.1} ms",
                elapsed.as_secs_f64() * 1e3
            ),
        ),
        Err(error) => Check::bad(
            "fabric",
            Verdict::Fail,
            format!(
                "libfabric loaded, providers {listed}; a {provider} connection on 127.0.0.1 \
                 failed: {error:#}"
            ),
            format!(
                "check `fi_info -p {provider}` and FI_PROVIDER / FI_TCP_IFACE in the \
                 environment; or use --transport cma between processes of this host"
            ),
        ),
    }
}

/// Listen on 127.0.0.1, connect, and send 16 bytes from the client to the
/// server's posted receive.
fn fabric_message(provider: &str) -> Result<Duration> {
    let started = Instant::now();
    let listener =
        rdio_fabric::Listener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), provider)?;
    let addr = listener.local_addr();
    let owned = provider.to_owned();
    let connecting =
        std::thread::spawn(move || rdio_fabric::connect_timeout(addr, &owned, PROBE_TIMEOUT));
    let accepted = listener.accept_timeout(PROBE_TIMEOUT);
    let connected = connecting
        .join()
        .map_err(|_| anyhow::anyhow!("the connecting thread panicked"))?;
    let mut server = accepted.context("accept")?;
    let mut client = connected.context("connect")?;
    let inbox = server.register(16, Access::LOCAL_WRITE)?;
    server.post_recv(1, Slice::whole(inbox, 16))?;
    let outbox = client.register(16, Access::empty())?;
    client
        .region_mut(outbox)?
        .copy_from_slice(b"rdio doctor ping");
    client.post_send(2, &[Slice::whole(outbox, 16)], None)?;
    let deadline = Instant::now() + PROBE_TIMEOUT;
    let mut completions = [Completion {
        wr_id: 0,
        kind: CompletionKind::Send,
        status: Ok(()),
    }; 4];
    let (mut sent, mut received) = (false, false);
    while !(sent && received) {
        if Instant::now() > deadline {
            bail!("no completion within {PROBE_TIMEOUT:?}");
        }
        let drained = client.poll_completions(&mut completions)?;
        for completion in completions.iter().take(drained) {
            completion.status?;
            sent = true;
        }
        let drained = server.poll_completions(&mut completions)?;
        for completion in completions.iter().take(drained) {
            completion.status?;
            received = true;
        }
    }
    if server.region(inbox)? != b"rdio doctor ping" {
        bail!("the message arrived altered");
    }
    Ok(started.elapsed())
}

/// cma: a child process connects to this one; each side reads the other's
/// memory in the handshake (`process_vm_readv`), in both directions.
fn cma() -> Check {
    let fix = "sysctl kernel.yama.ptrace_scope=0 (or run server and client as root with \
               CAP_SYS_PTRACE); use --transport fabric otherwise";
    match cma_attach() {
        Ok(elapsed) => Check::ok(
            "cma",
            format!(
                "a child process and this one attached to each other's memory in {:.1} ms",
                elapsed.as_secs_f64() * 1e3
            ),
        ),
        Err(error) => Check::bad("cma", Verdict::Fail, format!("{error:#}"), fix),
    }
}

fn cma_attach() -> Result<Duration> {
    let started = Instant::now();
    let listener = rdio_cma::Listener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    let exe = std::env::current_exe().context("cannot find this program to run the peer")?;
    let mut child = Command::new(exe)
        .arg(CMA_PEER_COMMAND)
        .arg(listener.local_addr().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start the peer process")?;
    // The peer stays alive (and attachable) until its standard input
    // closes: our half of the handshake reads its memory too.
    let hold = child.stdin.take();
    let accepted = listener.accept(PROBE_TIMEOUT, PROBE_TIMEOUT);
    drop(hold);
    let output = child
        .wait_with_output()
        .context("cannot wait for the peer process")?;
    let peer = String::from_utf8_lossy(&output.stderr);
    let peer = peer.trim();
    if !output.status.success() {
        bail!("the peer process could not attach to this one: {peer}");
    }
    match accepted {
        Ok(Some(_)) => Ok(started.elapsed()),
        Ok(None) => bail!("the peer process never connected"),
        Err(error) => Err(error).context("attaching to the peer process"),
    }
}

/// The child's half of [`cma_attach`]: connect to `endpoint`, exit 0 if
/// the handshake (which reads the parent's memory) succeeds — but only once
/// the parent closes our standard input, so that its half of the
/// handshake, which reads ours, never finds this process gone.
pub fn cma_peer(endpoint: &str) -> Result<()> {
    let endpoint: SocketAddr = endpoint.parse().context("invalid endpoint")?;
    let transport = rdio_cma::connect(endpoint, PROBE_TIMEOUT)?;
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
    drop(transport);
    Ok(())
}

/// verbs: the devices ibverbs lists (or why it cannot list any).
fn verbs() -> Check {
    match rdio_verbs::probe() {
        Ok(devices) if !devices.is_empty() => {
            let listed: Vec<String> = devices.iter().map(ToString::to_string).collect();
            Check::ok("verbs", listed.join("; "))
        }
        Ok(_) => Check::bad(
            "verbs",
            Verdict::Fail,
            "ibverbs lists no RDMA device",
            rdio_verbs::NO_DEVICES_HINT,
        ),
        Err(rdio_verbs::VerbsError::NoRdmaDevices { .. }) => Check::bad(
            "verbs",
            Verdict::Fail,
            "no RDMA devices",
            format!("{} (docs/VERBS.md)", rdio_verbs::NO_DEVICES_HINT),
        ),
        Err(error) => Check::bad(
            "verbs",
            Verdict::Fail,
            error.to_string(),
            "build with the verbs feature (cargo build -p rdio-cli --features verbs)",
        ),
    }
}

/// `/sys/class/infiniband`: the kernel's RDMA devices.
fn rdma_devices() -> Check {
    let dir = Path::new("/sys/class/infiniband");
    let names: Vec<String> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok())
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        Check::bad(
            "devices",
            Verdict::Warn,
            format!("no RDMA devices in {} (verbs cannot run)", dir.display()),
            "modprobe rdma_rxe && rdma link add rxe0 type rxe netdev IFACE (see docs/VERBS.md)",
        )
    } else {
        Check::ok(
            "devices",
            format!("{}: {}", dir.display(), names.join(", ")),
        )
    }
}

/// Whether the software RDMA drivers (soft-RoCE `rdma_rxe`, soft-iWARP
/// `siw`) are loaded, or could be, for the running kernel.
fn soft_rdma() -> Check {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|release| release.trim().to_owned())
        .unwrap_or_default();
    let modules = Path::new("/lib/modules").join(&release);
    let listed = ["modules.dep", "modules.builtin"]
        .iter()
        .filter_map(|name| fs::read_to_string(modules.join(name)).ok())
        .collect::<String>();
    let states: Vec<String> = ["rdma_rxe", "siw"]
        .iter()
        .map(|module| {
            let state = if Path::new("/sys/module").join(module).exists() {
                "loaded"
            } else if listed.contains(&format!("/{module}.ko")) {
                "available"
            } else {
                "unavailable"
            };
            format!("{module} {state}")
        })
        .collect();
    let detail = format!("{} (kernel {release})", states.join(", "));
    if states.iter().any(|state| !state.ends_with("unavailable")) {
        Check::ok("rxe/siw", detail)
    } else if listed.is_empty() {
        Check::bad(
            "rxe/siw",
            Verdict::Warn,
            format!("{detail}: no modules in {}", modules.display()),
            "install the kernel's modules (linux-image-$(uname -r)) or use a kernel with \
             CONFIG_RDMA_RXE / CONFIG_RDMA_SIW",
        )
    } else {
        Check::bad(
            "rxe/siw",
            Verdict::Warn,
            detail,
            "use a kernel built with CONFIG_RDMA_RXE or CONFIG_RDMA_SIW",
        )
    }
}

/// `RLIMIT_MEMLOCK` against what a verbs client registers (pinned memory).
fn memlock() -> Check {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Memlock);
    let needed = DEFAULT_REGISTERED;
    let text = |bytes: Option<u64>| match bytes {
        None => "unlimited".to_owned(),
        Some(bytes) => format!("{} KiB", bytes / 1024),
    };
    let current = text(limit.current);
    if rustix::process::geteuid().is_root() {
        return Check::ok(
            "memlock",
            format!("{current}, not enforced for root (CAP_IPC_LOCK)"),
        );
    }
    match limit.current {
        Some(bytes) if bytes < needed => Check::bad(
            "memlock",
            Verdict::Warn,
            format!(
                "{current}: verbs pins about {} KiB per client with the default \
                 --queue-depth 8 --io-size 1MiB (fabric tcp and cma pin nothing)",
                needed / 1024
            ),
            "ulimit -l unlimited (or `* - memlock unlimited` in /etc/security/limits.conf)",
        ),
        _ => Check::ok(
            "memlock",
            format!(
                "{current}, enough for the {} KiB a default verbs client pins",
                needed / 1024
            ),
        ),
    }
}

/// Yama's `ptrace_scope`, which decides whether cma can attach to a peer
/// that is not a descendant.
fn ptrace_scope() -> Check {
    let path = "/proc/sys/kernel/yama/ptrace_scope";
    match fs::read_to_string(path).map(|scope| scope.trim().to_owned()) {
        Err(_) => Check::ok(
            "ptrace",
            "no Yama LSM (no kernel.yama.ptrace_scope): cma needs only the same uid",
        ),
        Ok(scope) if scope == "0" => Check::ok(
            "ptrace",
            "kernel.yama.ptrace_scope 0: cma works between processes of one uid",
        ),
        Ok(scope) => Check::bad(
            "ptrace",
            if scope == "1" {
                Verdict::Warn
            } else {
                Verdict::Fail
            },
            format!(
                "kernel.yama.ptrace_scope {scope}: cma between a separately started server \
                 and client is refused"
            ),
            "sysctl kernel.yama.ptrace_scope=0 (or run both with CAP_SYS_PTRACE)",
        ),
    }
}

/// Read leases (zero-copy reads) on a file under `dir`.
fn leases(dir: &Path, where_: &str) -> Check {
    match rdio::files::probe_leases(dir) {
        Ok(()) => Check::ok(
            "leases",
            format!("read leases work {where_}: reads of unchanged files are zero-copy"),
        ),
        Err(error) => Check::bad(
            "leases",
            Verdict::Warn,
            format!("no read lease {where_}: {error}; `serve` copies every read"),
            "serve from a local file system (ext4, xfs, tmpfs), as the owner of its files, \
             with fs.leases-enable=1",
        ),
    }
}

/// `openat2(RESOLVE_BENEATH)`, which every served open goes through.
fn openat2(dir: &Path, where_: &str) -> Check {
    let fix = "run on Linux 5.6 or later: rdio serves files only through openat2";
    let root = match rdio::files::Root::new(dir) {
        Ok(root) => root,
        Err(error) => {
            return Check::bad(
                "openat2",
                Verdict::Fail,
                format!("cannot open {where_}: {error}"),
                "pass a readable directory",
            );
        }
    };
    match root.open(".rdio-doctor-absent", rdio_core::wire::OpenFlags::READ) {
        Err(rdio::files::OpenError::NotFound) | Ok(_) => Check::ok(
            "openat2",
            format!("openat2(RESOLVE_BENEATH) works {where_}"),
        ),
        Err(rdio::files::OpenError::Unsupported) => Check::bad(
            "openat2",
            Verdict::Fail,
            "the kernel has no openat2 (ENOSYS): serve refuses every open",
            fix,
        ),
        Err(error) => Check::bad(
            "openat2",
            Verdict::Fail,
            format!("openat2 {where_} failed: {error}"),
            fix,
        ),
    }
}
