//! The networked commands' common ground: which RDMA transport, how to
//! reach the server, and the client's tuning.

use anyhow::{Context, Result, anyhow, bail};
use rdio::client::{Client, ClientOptions, CompletionMode};
use rdio::net::cma::CmaConnector;
use rdio::net::fabric::FabricConnector;
use rdio::net::{self, PipeStream, RdmaConnector, SetupError};
use std::net::{SocketAddr, ToSocketAddrs};
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
    fn name(self) -> &'static str {
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
#[derive(Clone, Copy, Debug)]
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
}

/// Work needing a connected client, generic over the connector that
/// `--transport` picks.
pub trait ClientJob {
    /// Carry out the job with `connector`.
    fn run<C: RdmaConnector>(self, connector: &C) -> Result<()>;
}

/// Run `job` with the connector for `transport`.
pub fn with_connector(
    transport: Transport,
    provider: &str,
    connect_timeout: Duration,
    job: impl ClientJob,
) -> Result<()> {
    match transport {
        Transport::Fabric => {
            let connector = FabricConnector::new(Some(provider))
                .map_err(setup)?
                .with_timeout(connect_timeout);
            job.run(&connector)
        }
        Transport::Cma => {
            let connector = CmaConnector::new()
                .map_err(setup)?
                .with_timeout(connect_timeout);
            job.run(&connector)
        }
        Transport::Verbs => verbs(connect_timeout, job),
        Transport::Loopback => bail!(
            "the loopback transport only reaches a server in this process; \
             use --transport fabric (the default), cma (same host) or verbs"
        ),
    }
}

#[cfg(feature = "verbs")]
fn verbs(connect_timeout: Duration, job: impl ClientJob) -> Result<()> {
    let config = rdio_verbs::VerbsConfig {
        timeout: connect_timeout,
        ..rdio_verbs::VerbsConfig::default()
    };
    let connector = rdio::net::verbs::VerbsConnector::new(config).map_err(setup)?;
    job.run(&connector)
}

#[cfg(not(feature = "verbs"))]
fn verbs(_: Duration, _: impl ClientJob) -> Result<()> {
    Err(verbs_unavailable())
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
    tuning: Tuning,
    connector: &C,
) -> Result<Client<C::Transport, PipeStream>> {
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
    Ok(net::connect(
        server,
        options,
        tuning.connect_timeout,
        connector,
        security,
    )?)
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
    fn seconds_are_positive_numbers() {
        assert_eq!(seconds("2"), Ok(Duration::from_secs(2)));
        assert_eq!(seconds("0.25"), Ok(Duration::from_millis(250)));
        for bad in ["0", "-1", "ten", "", "inf"] {
            assert!(seconds(bad).is_err(), "{bad}");
        }
    }
}
