//! The networked commands' common ground: which RDMA transport, how to
//! reach the server, and the client's tuning.

use anyhow::{Context, Result, anyhow, bail};
use rdio::capture::{CaptureConnector, PipeTap, Recorder};
use rdio::client::ClientError;
use rdio::client::{Client, ClientOptions, CompletionMode};
use rdio::net::cma::CmaConnector;
use rdio::net::fabric::FabricConnector;
use rdio::net::{self, NetError, PipeStream, RdmaConnector, SetupError};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The RDMA transports `--transport` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// In-memory reliable connection to a server in this process.
    Loopback,
    /// ibverbs + rdma_cm (needs RDMA hardware or rxe/siw).
    Verbs,
    /// libfabric FI_EP_MSG endpoints (`--provider tcp` works anywhere).
    Fabric,
    /// Cross-memory attach to a server on this host (process_vm_writev;
    /// same user, Linux).
    Cma,
}

/// A transport's setup error, for anyhow (its message is the whole story).
pub fn setup(error: SetupError) -> anyhow::Error {
    anyhow!(error)
}

/// Why `--transport verbs` cannot be used: no RDMA device here (the verbs
/// crate's `NoRdmaDevices`, with its hint), or this build lacks the feature.
#[cfg(not(feature = "verbs"))]
pub fn verbs_unavailable() -> anyhow::Error {
    match rdio_verbs::probe() {
        Err(error) => error.into(),
        Ok(_) => anyhow!(rdio_verbs::VerbsError::FeatureDisabled),
    }
}

impl Transport {
    /// The name `--transport` takes.
    pub fn name(self) -> &'static str {
        match self {
            Self::Loopback => "loopback",
            Self::Verbs => "verbs",
            Self::Fabric => "fabric",
            Self::Cma => "cma",
        }
    }
}

/// Commands that run their server in this process (`cp`, `bench` without
/// `--server`) can only use the loopback transport; say why otherwise,
/// verbs' own error (no devices, not built) first.
pub fn require_loopback(transport: Transport, command: &str) -> Result<()> {
    match transport {
        Transport::Loopback => return Ok(()),
        Transport::Verbs => {
            rdio_verbs::probe()?;
        }
        Transport::Fabric | Transport::Cma => {}
    }
    let instead = if command == "bench" {
        "`rdio bench --server`"
    } else {
        "`rdio serve` with `rdio put`/`rdio get`"
    };
    bail!(
        "rdio {command} runs its server in this process over the loopback transport; \
         for --transport {} use {instead}",
        transport.name()
    )
}

/// How a client connects and moves data, from the command line.
#[derive(Clone, Debug)]
pub struct Tuning {
    /// Bytes per request.
    pub io_size: u32,
    /// Requests in flight.
    pub queue_depth: usize,
    /// Polling instead of interrupt completions.
    pub polling: bool,
    /// Bound on the side channel's connect and answers, and on the RDMA
    /// handshake.
    pub connect_timeout: Duration,
    /// Silence with requests outstanding after which the server is dead.
    pub dead_peer_timeout: Duration,
    /// Largest message offered (`--max-send-size`); `None`: the driver's
    /// default.
    pub max_send_size: Option<u32>,
    /// Offer read batches (the driver's default); `--no-read-batches`
    /// sends every read alone.
    pub read_batches: bool,
    /// Name the step a failed connection failed at (`--explain`).
    pub explain: bool,
    /// Where the side channel's frames are recorded (`--capture`); the
    /// RDMA connection's are, through the connector [`with_connector`]
    /// wraps.
    pub capture: Option<Arc<Recorder>>,
}

/// Work needing a connected client, generic over the connector that
/// `--transport` picks.
pub trait ClientJob {
    /// Carry out the job with `connector`.
    fn run<C: RdmaConnector>(self, connector: &C) -> Result<()>;
}

/// Run `job` with the connector for `transport`.
///
/// With `capture`, the connector is wrapped so that every RDMA connection
/// is recorded; without, the job runs on the bare connector (capture costs
/// nothing when off).
pub fn with_connector(
    transport: Transport,
    provider: &str,
    connect_timeout: Duration,
    capture: Option<&Arc<Recorder>>,
    job: impl ClientJob,
) -> Result<()> {
    match transport {
        Transport::Fabric => {
            let connector = FabricConnector::new(Some(provider))
                .map_err(setup)?
                .with_timeout(connect_timeout);
            run_captured(&connector, capture, job)
        }
        Transport::Cma => {
            let connector = CmaConnector::new()
                .map_err(setup)?
                .with_timeout(connect_timeout);
            run_captured(&connector, capture, job)
        }
        Transport::Verbs => verbs(connect_timeout, capture, job),
        Transport::Loopback => bail!(
            "the loopback transport only reaches a server in this process; \
             use --transport fabric (the default), cma (same host) or verbs"
        ),
    }
}

fn run_captured<C: RdmaConnector>(
    connector: &C,
    capture: Option<&Arc<Recorder>>,
    job: impl ClientJob,
) -> Result<()> {
    match capture {
        Some(recorder) => job.run(&CaptureConnector::new(connector, Arc::clone(recorder))),
        None => job.run(connector),
    }
}

#[cfg(feature = "verbs")]
fn verbs(
    connect_timeout: Duration,
    capture: Option<&Arc<Recorder>>,
    job: impl ClientJob,
) -> Result<()> {
    let config = rdio_verbs::VerbsConfig {
        timeout: connect_timeout,
        ..rdio_verbs::VerbsConfig::default()
    };
    let connector = rdio::net::verbs::VerbsConnector::new(config).map_err(setup)?;
    run_captured(&connector, capture, job)
}

#[cfg(not(feature = "verbs"))]
fn verbs(_: Duration, _: Option<&Arc<Recorder>>, _: impl ClientJob) -> Result<()> {
    Err(verbs_unavailable())
}

/// `--capture FILE`: the recorder, created before anything runs.
pub fn capture(path: Option<&Path>) -> Result<Option<Arc<Recorder>>> {
    path.map(|path| {
        Recorder::create(path, rdio::capture::DEFAULT_SNAPLEN)
            .with_context(|| format!("cannot create the capture file {}", path.display()))
    })
    .transpose()
}

/// After the command: say how many records the capture holds, or fail if
/// some could not be written.
pub fn finish_capture(recorder: Option<Arc<Recorder>>, path: Option<&Path>) -> Result<()> {
    if let (Some(recorder), Some(path)) = (recorder, path) {
        let records = recorder
            .finish()
            .with_context(|| format!("capture {}", path.display()))?;
        eprintln!("rdio: captured {records} records to {}", path.display());
    }
    Ok(())
}

/// The first address of `host`.
pub fn resolve(host: &str, port: u16) -> Result<SocketAddr> {
    (host, port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {host}"))?
        .next()
        .with_context(|| format!("{host} has no address"))
}

/// Connect to the server at `server` with `connector`, with the side
/// channel's security the command line asked for
/// ([`crate::access::set_client_security`]).
pub fn connect<C: RdmaConnector>(
    server: SocketAddr,
    tuning: &Tuning,
    connector: &C,
) -> Result<Client<C::Transport, PipeTap<PipeStream>>> {
    let security = crate::access::client_security()?;
    let provider = *connector
        .providers()
        .first()
        .context("the transport offers no provider")?;
    // The connector's whole list replaces this one in `net::connect`.
    let mut options = ClientOptions::new(provider);
    options.io_size = tuning.io_size;
    options.queue_depth = tuning.queue_depth;
    options.mode = if tuning.polling {
        CompletionMode::Polling
    } else {
        CompletionMode::Interrupt
    };
    options.config.dead_peer_timeout = tuning.dead_peer_timeout;
    if let Some(size) = tuning.max_send_size {
        options.config.max_send_size = size;
    }
    if !tuning.read_batches {
        let batches = rdio_core::wire::Capabilities::READ_BATCH;
        options.config.capabilities =
            rdio_core::wire::Capabilities(options.config.capabilities.0 & !batches.0);
    }
    tracing::info!(target: "rdio::cli", %server, "connecting");
    net::connect_captured(
        server,
        options,
        tuning.connect_timeout,
        connector,
        security,
        tuning.capture.clone(),
    )
    .inspect(|client| {
        tracing::info!(
            target: "rdio::cli",
            %server,
            io_size = client.io_size(),
            queue_depth = client.queue_depth(),
            "connected"
        );
    })
    .map_err(|error| {
        let step = ConnectStep::of(&error);
        let error = anyhow!(error);
        if tuning.explain {
            error.context(step.to_string())
        } else {
            error
        }
    })
}

/// The steps of connecting to a server, in order (`--explain`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectStep {
    /// TCP connection to the side channel.
    PipeConnect,
    /// TLS on the side channel and the client's authentication.
    SideChannelSecurity,
    /// Resume key and negotiation on the side channel.
    Negotiate,
    /// The RDMA connection to the endpoint the server named.
    RdmaConnect,
    /// Buffer registration and authentication on the RDMA connection.
    Authenticate,
}

impl ConnectStep {
    /// The step `error` comes from: each step fails with errors of its own.
    pub fn of(error: &NetError) -> Self {
        match error {
            NetError::Unreachable { .. }
            | NetError::Os(_)
            | NetError::NotRdio { .. }
            | NetError::TimedOut { .. } => Self::PipeConnect,
            NetError::Tls(_)
            | NetError::Trust(_)
            | NetError::Busy { .. }
            | NetError::Client(ClientError::Refused(_)) => Self::SideChannelSecurity,
            NetError::BadEndpoint(_)
            | NetError::Client(
                ClientError::Pipe(_)
                | ClientError::Discovery(_)
                | ClientError::ProviderMismatch { .. }
                | ClientError::InvalidArgument(_),
            ) => Self::Negotiate,
            NetError::RdmaConnect { .. } => Self::RdmaConnect,
            _ => Self::Authenticate,
        }
    }
}

impl std::fmt::Display for ConnectStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::PipeConnect => {
                "failed at step 1 of 5, pipe connect (the TCP side channel to the server: \
                 is `rdio serve` running at that address and the port open?)"
            }
            Self::SideChannelSecurity => {
                "failed at step 2 of 5, side-channel security (TLS and client \
                 authentication: the server's identity must match the one pinned in \
                 known_servers, both sides need the same --insecure, and the server's \
                 clients file must hold this client's credential)"
            }
            Self::Negotiate => {
                "failed at step 3 of 5, negotiate (resume key and negotiation on the side \
                 channel: the server answered, but the exchange failed; both sides need the \
                 same --transport and --provider)"
            }
            Self::RdmaConnect => {
                "failed at step 4 of 5, RDMA connect (to the endpoint the server named: is \
                 its RDMA port reachable from here, e.g. through a firewall?)"
            }
            Self::Authenticate => {
                "failed at step 5 of 5, authenticate (buffer registration and the \
                 authentication exchange on the new RDMA connection)"
            }
        })
    }
}

/// `--listen`: `IP:PORT`, `HOST:PORT`, or an IP address or host name
/// alone for [`crate::remote::DEFAULT_PORT`]; a host name is resolved to
/// its first address.
pub fn listen_address(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bare = text.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, crate::remote::DEFAULT_PORT));
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) => (
            host,
            port.parse::<u16>()
                .map_err(|_| format!("invalid port in '{text}': expected HOST:PORT"))?,
        ),
        None => (text, crate::remote::DEFAULT_PORT),
    };
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve '{host}': {e}"))?
        .next()
        .ok_or_else(|| format!("'{host}' has no address"))
}

/// `--connect-timeout 2.5`: seconds, fractions allowed.
pub fn seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
        .filter(|duration| !duration.is_zero())
        .ok_or_else(|| format!("invalid duration '{text}': expected a positive number of seconds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_take_hosts_and_a_default_port() {
        let v4 = |text: &str| listen_address(text).map(|addr| addr.to_string());
        assert_eq!(v4("127.0.0.1:9"), Ok("127.0.0.1:9".into()));
        assert_eq!(v4("0.0.0.0"), Ok("0.0.0.0:7472".into()));
        assert_eq!(v4("::"), Ok("[::]:7472".into()));
        assert_eq!(v4("localhost:0").map(|a| a.ends_with(":0")), Ok(true));
        assert!(listen_address("localhost").is_ok_and(|addr| addr.port() == 7472));
        assert!(listen_address("host:port").is_err());
    }

    #[test]
    fn seconds_are_positive_numbers() {
        assert_eq!(seconds("2"), Ok(Duration::from_secs(2)));
        assert_eq!(seconds("0.25"), Ok(Duration::from_millis(250)));
        for bad in ["0", "-1", "ten", "", "inf"] {
            assert!(seconds(bad).is_err(), "{bad}");
        }
    }
}
