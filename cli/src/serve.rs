//! `rdio serve`: export a directory to rdio clients on the network until
//! SIGINT or SIGTERM.

use crate::network::{Transport, setup};
use anyhow::{Context, Result, bail};
use nix::sys::signal::{SigSet, Signal};
use rdio::capture::{CaptureListener, Recorder};
use rdio::files::Root;
use rdio::net::cma::CmaListener;
use rdio::net::fabric::FabricListener;
use rdio::net::{EventLog, NetEvent, NetServer, RdmaListener};
use rdio::server::ServerOptions;
use rdio_core::wire::ProviderName;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// What `serve` needs from the command line.
#[derive(Debug)]
pub struct Serve {
    pub root: PathBuf,
    pub listen: SocketAddr,
    pub transport: Transport,
    pub provider: String,
    pub rdma_port: u16,
    pub access: crate::access::ServeAccess,
    /// `--capture FILE.pcapng`.
    pub capture: Option<PathBuf>,
    /// `--metrics ADDR`.
    pub metrics: Option<SocketAddr>,
    /// `--max-open-files`, `--max-credits`, `--max-send-size`, `--idle-timeout`.
    pub limits: Limits,
}

/// The per-client limits `serve` enforces (docs/SECURITY.md, "Limits").
#[derive(Debug)]
pub struct Limits {
    /// Files one client session may hold open.
    pub max_open_files: usize,
    /// Credits one RDMA connection may hold (1 to 64, the core's table).
    pub max_credits: u16,
    /// The credit policy's window (`--credit-window`); `None`: credits
    /// stay at the grant.
    pub credit_window: Option<std::time::Duration>,
    /// Largest message a client may send (`--max-send-size`); `None`:
    /// the driver's default (`rdio::DEFAULT_MAX_SEND_SIZE`).
    pub max_send_size: Option<u32>,
    /// Idle clients are ended after this long; `None`: never.
    pub idle_timeout: Option<std::time::Duration>,
}

pub fn run(serve: &Serve) -> Result<()> {
    // Before any thread starts, so every thread inherits the mask: from
    // here on SIGINT/SIGTERM stay pending for the sigwait below instead of
    // killing the process mid-write. (A handler would not do: libfabric's
    // providers install their own, which re-raise with the default action.)
    let mut stop = SigSet::empty();
    stop.add(Signal::SIGINT);
    stop.add(Signal::SIGTERM);
    stop.thread_block()
        .context("cannot block SIGINT and SIGTERM")?;
    // Several descriptors per client (side channel, RDMA endpoint, open
    // files): the soft limit many systems start with does not carry the
    // 1,024 sessions `--max-sessions` allows.
    let _ = rdio::net::raise_open_file_limit();
    let capture = crate::network::capture(serve.capture.as_deref())?;
    let root =
        Root::new(&serve.root).with_context(|| format!("cannot serve {}", serve.root.display()))?;
    // Without read leases every read is copied through a bounce buffer
    // instead of RDMA-written from the page cache: say so once, up front.
    if let Err(error) = rdio::files::probe_leases(&serve.root) {
        eprintln!(
            "rdio serve: warning: no file leases under {} ({error}): reads are copied, \
             not zero-copy (see `rdio doctor --root {}`)",
            serve.root.display(),
            serve.root.display()
        );
    }
    // The access log (connections, authentications, opens, refusals) goes
    // to standard error through the subscriber `logging::init` installed,
    // whose default for `serve` shows `rdio::access` at info.
    // The RDMA endpoint shares the side channel's address: the one address
    // clients are known to reach.
    let rdma = SocketAddr::new(serve.listen.ip(), serve.rdma_port);
    let (server, fingerprint) = match serve.transport {
        Transport::Fabric => start(
            root,
            serve,
            FabricListener::bind(rdma, &serve.provider).map_err(setup)?,
            capture.as_ref(),
        )?,
        Transport::Cma => start(
            root,
            serve,
            CmaListener::bind(rdma).map_err(setup)?,
            capture.as_ref(),
        )?,
        Transport::Verbs => verbs(root, serve, rdma, capture.as_ref())?,
        Transport::Loopback => bail!(
            "the loopback transport only reaches clients in this process; \
             serve with --transport fabric (the default), cma (same host) or verbs"
        ),
    };
    let offered: Vec<String> = server
        .server()
        .options()
        .providers
        .iter()
        .map(|p: &ProviderName| p.as_str().to_owned())
        .collect();
    let metrics_addr = serve
        .metrics
        .map(|addr| crate::metrics::serve(addr, Arc::clone(server.server())))
        .transpose()?;
    let metrics = metrics_addr
        .map(|addr| format!(", metrics on http://{addr}/metrics"))
        .unwrap_or_default();
    // Scripts (and the tests) read the address from this line, which
    // matters with port 0.
    let identity = match &fingerprint {
        Some(fingerprint) => format!("TLS identity {fingerprint}"),
        None => "side channel in CLEAR TEXT (--insecure)".to_owned(),
    };
    let read_only = if serve.access.read_only {
        ", read-only"
    } else {
        ""
    };
    // One line: the address first (scripts and tests read it), then the
    // fingerprint clients compare with what they pin.
    if crate::report::json() {
        // `--json`: the same facts as one object (scripts read `listening`).
        println!(
            "{}",
            serde_json::json!({
                "command": "serve",
                "listening": server.pipe_addr().to_string(),
                "rdma_endpoint": server.endpoint().to_string(),
                "providers": offered,
                "root": serve.root.display().to_string(),
                "read_only": serve.access.read_only,
                "fingerprint": fingerprint.as_ref().map(ToString::to_string),
                "metrics": metrics_addr.map(|addr| format!("http://{addr}/metrics")),
            })
        );
    } else {
        println!(
            "rdio serve: listening on {} (RDMA endpoint {} over {}), serving {}{read_only}, {identity}{metrics}",
            server.pipe_addr(),
            server.endpoint(),
            offered.join(", "),
            serve.root.display()
        );
    }
    let _ = std::io::stdout().flush();
    let signal = stop.wait().context("cannot wait for SIGINT or SIGTERM")?;
    eprintln!("rdio serve: {}: stopping", signal.as_str());
    server.shutdown();
    crate::network::finish_capture(capture, serve.capture.as_deref())?;
    eprintln!("rdio serve: stopped");
    Ok(())
}

/// Start serving; the identity and clients file are set up (created on
/// first start) only once the listener is bound, so a bad option creates
/// nothing.
fn start(
    root: Root,
    serve: &Serve,
    listener: impl RdmaListener,
    capture: Option<&Arc<Recorder>>,
) -> Result<(NetServer, Option<String>)> {
    let (security, fingerprint) = crate::access::server_security(&serve.access)?;
    let log: EventLog = Arc::new(|event: &NetEvent<'_>| eprintln!("rdio serve: {event}"));
    // NetServer::start takes the providers and endpoint from the listener.
    let provider = *listener
        .providers()
        .first()
        .context("the transport offers no provider")?;
    let mut options = ServerOptions::new(provider, b"");
    options.read_only = serve.access.read_only;
    options.max_sessions = serve.access.max_sessions;
    options.max_open_files_per_client = serve.limits.max_open_files;
    options.config.max_credits = serve.limits.max_credits;
    options.config.initial_credits = serve.limits.max_credits;
    options.config.credit_window = serve.limits.credit_window;
    if let Some(size) = serve.limits.max_send_size {
        options.config.max_send_size = size;
    }
    options.idle_timeout = serve.limits.idle_timeout;
    // Capture costs nothing when off: the listener is wrapped only with it.
    let server = match capture {
        Some(recorder) => NetServer::start_captured(
            root,
            serve.listen,
            CaptureListener::new(listener, Arc::clone(recorder)),
            options,
            security,
            log,
            Some(Arc::clone(recorder)),
        )?,
        None => NetServer::start(root, serve.listen, listener, options, security, log)?,
    };
    Ok((server, fingerprint))
}

#[cfg(feature = "verbs")]
fn verbs(
    root: Root,
    serve: &Serve,
    rdma: SocketAddr,
    capture: Option<&Arc<Recorder>>,
) -> Result<(NetServer, Option<String>)> {
    let listener =
        rdio::net::verbs::VerbsRdmaListener::bind(rdma, &rdio_verbs::VerbsConfig::default())
            .map_err(setup)?;
    start(root, serve, listener, capture)
}

#[cfg(not(feature = "verbs"))]
fn verbs(
    _: Root,
    _: &Serve,
    _: SocketAddr,
    _: Option<&Arc<Recorder>>,
) -> Result<(NetServer, Option<String>)> {
    Err(crate::network::verbs_unavailable())
}
