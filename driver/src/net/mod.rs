//! rdio between processes and hosts: the side channel ("pipe", seed claim 8)
//! over TCP, and the RDMA channel over a network transport.
//!
//! The claims describe two channels between the computers: a pipe on which
//! the client obtains resume keys and negotiates (claims 8–11), and the RDMA
//! channel that carries the I/O (claim 1). Here the pipe is a TCP connection
//! and the RDMA channel is whatever an [`RdmaListener`] / [`RdmaConnector`]
//! pair sets up: libfabric endpoints (`fabric`, feature `fabric`; the `tcp`
//! provider works on any machine), ibverbs queue pairs (`verbs`, feature
//! `verbs`; needs an RDMA device), or cross-memory attach between two
//! processes on one host (`cma`, feature `cma`; Linux, same uid).
//!
//! * Server: [`NetServer::start`] serves a directory: a TCP listener whose
//!   connections run [`Server::serve_pipe`](crate::server::Server::serve_pipe),
//!   and an RDMA listener whose connections each run a
//!   [`ServerConnection`](crate::server::ServerConnection) on a thread of
//!   their own. The negotiate response names the RDMA listener's address as
//!   the endpoint and its providers as the offer.
//! * Client: [`connect`] reaches the pipe by TCP, negotiates, and connects the
//!   RDMA channel to the endpoint the server named, over the provider both
//!   sides have (the core's intersection; a mismatch is the core's
//!   `DiscoveryError`, "no common RDMA provider: server offers [...], client
//!   has [...]").
//! * With the `tokio` feature, `async_client` and `async_server` offer the
//!   same over tokio.

#[cfg(feature = "tokio")]
pub mod async_client;
#[cfg(feature = "tokio")]
mod async_pipe;
#[cfg(feature = "tokio")]
pub mod async_server;
#[cfg(feature = "cma")]
pub mod cma;
#[cfg(feature = "fabric")]
pub mod fabric;
mod server;
pub mod tls;
#[cfg(feature = "verbs")]
pub mod verbs;

pub use server::{EventLog, NetEvent, NetServer};
pub use tls::{ClientSecurity, IpNet, PipeStream, ServerSecurity};

use crate::access::TrustError;
use crate::capture::{PipeTap, Recorder};
use crate::client::{Client, ClientError, ClientOptions, FileSession};
use crate::pipe::PipeError;
use crate::server::ServerError;
use rdio_core::wire::{ProviderList, ProviderName};
use rdio_core::wire::{Status, WireError};
use rdio_transport::{Transport, TransportError};
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A transport's own setup error (libfabric's, verbs', ...), kept whole so
/// its message reaches the user.
pub type SetupError = Box<dyn std::error::Error + Send + Sync>;

/// The server's half of RDMA connection setup: a listener on a network
/// address that hands out connected transports.
pub trait RdmaListener: Send + 'static {
    /// The connected transport.
    type Transport: Transport + Send + 'static;

    /// Providers a client may negotiate to reach this listener, most
    /// preferred first (claim 8's offer).
    fn providers(&self) -> ProviderList;

    /// Where the listener is bound: the endpoint sent to negotiating
    /// clients.
    fn local_addr(&self) -> SocketAddr;

    /// The next connection, waiting at most `timeout`: `Ok(None)` when no
    /// client asked, so the caller can look for a shutdown between waits.
    fn accept(&self, timeout: Duration) -> Result<Option<Self::Transport>, SetupError>;
}

/// The client's half of RDMA connection setup.
pub trait RdmaConnector {
    /// The connected transport.
    type Transport: Transport;

    /// Providers this client can connect over, most preferred first: the
    /// client's side of the negotiation.
    fn providers(&self) -> ProviderList;

    /// Connect to the server's endpoint over `provider` (one of
    /// [`RdmaConnector::providers`], chosen by negotiation).
    fn connect(
        &self,
        endpoint: SocketAddr,
        provider: &ProviderName,
    ) -> Result<Self::Transport, SetupError>;
}

/// Why a networked server or client could not start or connect.
#[derive(Debug)]
#[non_exhaustive]
pub enum NetError {
    /// The server's side channel could not be reached.
    Unreachable {
        /// The address tried.
        addr: SocketAddr,
        /// What the OS said (refused, timed out, no route, ...).
        error: io::Error,
    },
    /// The pipe address could not be listened on.
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        error: io::Error,
    },
    /// The server negotiated an endpoint that is not a socket address.
    BadEndpoint(String),
    /// The RDMA listener could not be created or failed.
    RdmaListen(SetupError),
    /// The RDMA connection to the negotiated endpoint failed.
    RdmaConnect {
        /// The endpoint the server named.
        endpoint: SocketAddr,
        /// The provider negotiated.
        provider: String,
        /// The transport's reason.
        error: SetupError,
    },
    /// Discovery, authentication or I/O failed.
    Client(ClientError),
    /// The server failed.
    Server(ServerError),
    /// A thread could not be spawned, or a socket option not set.
    Os(io::Error),
    /// The thread running a connection for async callers is gone.
    EngineStopped,
    /// The side channel's TLS failed.
    Tls(String),
    /// The server's identity is not the one trusted.
    Trust(TrustError),
    /// What answered at the address is not an rdio server: its first bytes
    /// are neither TLS nor an rdio frame (another TCP service).
    NotRdio {
        /// The address tried.
        addr: SocketAddr,
        /// How it answered, e.g. `"SSH-2.0-Op…"` or "closed the connection".
        answer: String,
    },
    /// The server did not answer the side channel within the timeout.
    TimedOut {
        /// The address tried.
        addr: SocketAddr,
        /// How long the client waited.
        after: Duration,
        /// What it waited for.
        waiting_for: &'static str,
    },
    /// The server stayed busy (at its client limit) for the whole connect
    /// timeout.
    Busy {
        /// The server.
        addr: SocketAddr,
        /// How long the client kept trying.
        waited: Duration,
    },
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreachable { addr, error } => {
                write!(f, "cannot reach the rdio server at {addr}: {error}")
            }
            Self::Listen { addr, error } => write!(f, "cannot listen on {addr}: {error}"),
            Self::NotRdio { addr, answer } => write!(
                f,
                "{addr} is not an rdio server (it {answer}): check the port (rdio's default is \
                 7472)"
            ),
            Self::TimedOut {
                addr,
                after,
                waiting_for,
            } => write!(
                f,
                "timed out after {} s waiting for {addr} to answer {waiting_for}: is it an rdio \
                 server, and not overloaded? (--connect-timeout sets the wait)",
                after.as_secs_f64()
            ),
            Self::BadEndpoint(endpoint) => {
                write!(f, "the server named an invalid RDMA endpoint {endpoint:?}")
            }
            Self::RdmaListen(error) => write!(f, "cannot listen for RDMA connections: {error}"),
            Self::RdmaConnect {
                endpoint,
                provider,
                error,
            } => write!(
                f,
                "cannot connect the RDMA channel to {endpoint} over {provider}: {error}"
            ),
            Self::Client(error) => write!(f, "{error}"),
            Self::Server(error) => write!(f, "server: {error}"),
            Self::Os(error) => write!(f, "{error}"),
            Self::EngineStopped => f.write_str("the rdio connection thread has stopped"),
            Self::Tls(error) => write!(f, "side channel TLS: {error}"),
            Self::Trust(error) => write!(f, "{error}"),
            Self::Busy { addr, waited } => write!(
                f,
                "the rdio server at {addr} is busy (at its client limit); gave up after {:.1} s \
                 of retries",
                waited.as_secs_f64()
            ),
        }
    }
}

/// The inner error's text is part of `Display` (so one line says it all),
/// hence no `source`, as with [`ClientError`].
impl std::error::Error for NetError {}

impl From<ClientError> for NetError {
    fn from(error: ClientError) -> Self {
        Self::Client(error)
    }
}

impl From<NetError> for io::Error {
    fn from(error: NetError) -> Self {
        match error {
            NetError::Client(error) => error.into(),
            NetError::Unreachable { addr, error } => {
                io::Error::new(error.kind(), NetError::Unreachable { addr, error })
            }
            NetError::EngineStopped => io::Error::new(io::ErrorKind::BrokenPipe, error),
            other => io::Error::other(other),
        }
    }
}

/// How long a client waits for the server's side channel to accept and
/// answer before giving up.
pub const DEFAULT_PIPE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connect a client to the rdio server whose side channel listens at
/// `server`.
///
/// The client offers `connector`'s providers (replacing
/// `options.config.providers`), connects the RDMA channel where the server
/// says, and authenticates it. `pipe_timeout` bounds the TCP connect and
/// every side-channel exchange (an unresponsive server is an error, not a
/// hang); the RDMA data path is bounded by the options'
/// `config.dead_peer_timeout` instead.
///
/// `security` says how the side channel is protected (TLS and which server
/// to trust, or clear text) and who the client is: it authenticates before
/// anything else. A server at its client limit answers `Busy`; the client
/// then retries with exponential backoff until `pipe_timeout` has passed
/// since the first attempt.
pub fn connect<C: RdmaConnector>(
    server: SocketAddr,
    options: ClientOptions,
    pipe_timeout: Duration,
    connector: &C,
    security: &ClientSecurity,
) -> Result<Client<C::Transport, PipeTap<PipeStream>>, NetError> {
    connect_captured(server, options, pipe_timeout, connector, security, None)
}

/// [`connect`], recording the side channel's frames to `capture` as they
/// are inside TLS (`--capture`; see [`PipeTap`]). The RDMA traffic is
/// recorded by the connector, wrapped in a
/// [`CaptureConnector`](crate::capture::CaptureConnector).
pub fn connect_captured<C: RdmaConnector>(
    server: SocketAddr,
    options: ClientOptions,
    pipe_timeout: Duration,
    connector: &C,
    security: &ClientSecurity,
    capture: Option<Arc<Recorder>>,
) -> Result<Client<C::Transport, PipeTap<PipeStream>>, NetError> {
    retry_busy(server, pipe_timeout, || {
        connect_once(
            server,
            options.clone(),
            pipe_timeout,
            connector,
            security,
            capture.clone(),
        )
    })
}

/// A side channel to `server` with a session open and no RDMA connection,
/// for the remote file operations (`rdio ls`, `stat`, `rm`, `mkdir`,
/// `mv`): TLS or clear text and the client's authentication as for
/// [`connect`], then the resume key request. Frames are recorded to
/// `capture` as [`connect_captured`] records them; a busy server is
/// retried the same way.
pub fn connect_files(
    server: SocketAddr,
    pipe_timeout: Duration,
    security: &ClientSecurity,
    capture: Option<Arc<Recorder>>,
) -> Result<FileSession<PipeTap<PipeStream>>, NetError> {
    retry_busy(server, pipe_timeout, || {
        let tcp = pipe_stream(server, pipe_timeout)?;
        let host = security
            .server_name
            .clone()
            .unwrap_or_else(|| server.ip().to_string());
        let channel = tls::client_channel(tcp, server, &host, security)?;
        FileSession::start_as(
            PipeTap::new(channel.stream, capture.clone()),
            &security.credential,
            channel.auth_binding,
        )
        .map_err(NetError::Client)
    })
}

/// Run `attempt` until it is not refused `Busy`, with exponential backoff
/// and jitter, for at most `pipe_timeout` in all.
fn retry_busy<T>(
    server: SocketAddr,
    pipe_timeout: Duration,
    mut attempt: impl FnMut() -> Result<T, NetError>,
) -> Result<T, NetError> {
    let start = Instant::now();
    let mut backoff = Duration::from_millis(20);
    loop {
        match attempt() {
            Err(NetError::Client(ClientError::Refused(Status::Busy))) => {
                let waited = start.elapsed();
                if waited + backoff >= pipe_timeout {
                    return Err(NetError::Busy {
                        addr: server,
                        waited,
                    });
                }
                // Jitter spreads clients that were refused together.
                let jitter = crate::access::random::<1>().map_or(0, |[b]| u64::from(b));
                std::thread::sleep(backoff + Duration::from_millis(jitter % 16));
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            other => return other,
        }
    }
}

fn connect_once<C: RdmaConnector>(
    server: SocketAddr,
    mut options: ClientOptions,
    pipe_timeout: Duration,
    connector: &C,
    security: &ClientSecurity,
    capture: Option<Arc<Recorder>>,
) -> Result<Client<C::Transport, PipeTap<PipeStream>>, NetError> {
    options.config.providers = connector.providers();
    let tcp = pipe_stream(server, pipe_timeout)?;
    let host = security
        .server_name
        .clone()
        .unwrap_or_else(|| server.ip().to_string());
    let channel = tls::client_channel(tcp, server, &host, security)?;
    options.rdma_binding = channel.rdma_binding;
    let mut setup = None;
    let connected = Client::connect_as(
        PipeTap::new(channel.stream, capture),
        &security.credential,
        channel.auth_binding,
        options,
        |negotiated| {
            let result = rdma_endpoint(&negotiated.endpoint).and_then(|endpoint| {
                let endpoint = reachable_endpoint(endpoint, server);
                connector
                    .connect(endpoint, &negotiated.provider)
                    .map_err(|error| NetError::RdmaConnect {
                        endpoint,
                        provider: negotiated.provider.as_str().to_owned(),
                        error,
                    })
            });
            result.map_err(|error| {
                setup = Some(error);
                // Stands in for the setup error, which `setup` carries out.
                ClientError::Transport(TransportError::Disconnected)
            })
        },
    );
    match (connected, setup) {
        (Ok(client), _) => Ok(client),
        (Err(_), Some(error)) => Err(error),
        (Err(error), None) => Err(named_pipe_failure(error, server, pipe_timeout)),
    }
}

/// A side channel that failed during setup because no rdio server (or no
/// answer) is there says so: a frame that is not rdio's, or silence until
/// the timeout.
fn named_pipe_failure(error: ClientError, server: SocketAddr, timeout: Duration) -> NetError {
    match error {
        ClientError::Pipe(PipeError::Malformed(WireError::BadMagic)) => NetError::NotRdio {
            addr: server,
            answer: "answered with something that is not an rdio side-channel frame".to_owned(),
        },
        ClientError::Pipe(PipeError::Io(e))
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            NetError::TimedOut {
                addr: server,
                after: timeout,
                waiting_for: "on the side channel",
            }
        }
        other => NetError::Client(other),
    }
}

/// A side channel to `server` set up as [`connect`] sets it up (TLS or
/// clear text as `security` says, then the client's authentication), for
/// tools that speak the pipe themselves (`rdio conformance`). Also returns
/// the binding from which the RDMA authentication key of a negotiation on
/// this channel is derived ([`crate::access::rdma_auth_key`]; `None` on a
/// clear-text channel, where the negotiate response carries the key).
pub fn authenticated_pipe(
    server: SocketAddr,
    pipe_timeout: Duration,
    security: &ClientSecurity,
) -> Result<(PipeStream, Option<crate::access::ChannelBinding>), NetError> {
    let tcp = pipe_stream(server, pipe_timeout)?;
    let host = security
        .server_name
        .clone()
        .unwrap_or_else(|| server.ip().to_string());
    let mut channel = tls::client_channel(tcp, server, &host, security)?;
    crate::client::authenticate(
        &mut crate::pipe::Pipe::new(&mut channel.stream),
        &security.credential,
        channel.auth_binding,
    )
    .map_err(NetError::Client)?;
    Ok((channel.stream, channel.rdma_binding))
}

/// The TCP side channel to `server`, with `timeout` on connect and on every
/// read and write.
pub fn pipe_stream(server: SocketAddr, timeout: Duration) -> Result<TcpStream, NetError> {
    let unreachable = |error| NetError::Unreachable {
        addr: server,
        error,
    };
    let stream = TcpStream::connect_timeout(&server, timeout).map_err(unreachable)?;
    // Pipe messages are small request/response pairs: do not batch them.
    stream.set_nodelay(true).map_err(NetError::Os)?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(NetError::Os)?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(NetError::Os)?;
    Ok(stream)
}

/// The negotiated endpoint: a socket address in text (`127.0.0.1:7472`,
/// `[::1]:7472`), as [`NetServer`] advertises it.
fn rdma_endpoint(bytes: &[u8]) -> Result<SocketAddr, NetError> {
    let bad = || NetError::BadEndpoint(String::from_utf8_lossy(bytes).into_owned());
    std::str::from_utf8(bytes)
        .map_err(|_| bad())?
        .parse()
        .map_err(|_| bad())
}

/// Where to connect the RDMA channel: the negotiated `endpoint`, except
/// that a wildcard address (`0.0.0.0`, `::`: a server listening on every
/// address) stands for the address the side channel reached, `server`
/// (docs/PROTOCOL.md, NegotiateResponse).
pub fn reachable_endpoint(endpoint: SocketAddr, server: SocketAddr) -> SocketAddr {
    if endpoint.ip().is_unspecified() {
        SocketAddr::new(server.ip(), endpoint.port())
    } else {
        endpoint
    }
}

/// A provider list from names, most preferred first, without duplicates.
pub fn provider_list(names: &[&str]) -> Result<ProviderList, SetupError> {
    let mut list = ProviderList::new();
    for name in names {
        let provider =
            ProviderName::new(name).map_err(|e| format!("invalid provider name {name:?}: {e}"))?;
        if !list.contains(&provider) {
            list.push(provider)
                .map_err(|_| format!("more than {} providers", list.capacity()))?;
        }
    }
    Ok(list)
}

/// Raise this process's soft limit on open file descriptors to its hard
/// limit, and return the limit now in force (`None` when it cannot be
/// read). A server holds several descriptors per client (the side
/// channel's socket, the RDMA endpoint's, the files it opened), and many
/// systems still start processes at a soft limit of 1,024, which a few
/// hundred clients exhaust. Failure to raise it is not an error: the
/// server runs with what it has.
pub fn raise_open_file_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    // `None` is unlimited.
    let below = match (limit.current, limit.maximum) {
        (Some(current), Some(maximum)) => current < maximum,
        (Some(_), None) => true,
        (None, _) => false,
    };
    if below {
        limit.current = limit.maximum;
        if setrlimit(Resource::Nofile, limit).is_err() {
            return getrlimit(Resource::Nofile).current;
        }
    }
    limit.current
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_socket_addresses_in_text() {
        assert_eq!(
            rdma_endpoint(b"127.0.0.1:7472").expect("v4"),
            SocketAddr::from(([127, 0, 0, 1], 7472))
        );
        assert!(rdma_endpoint(b"[::1]:9").is_ok());
        for bad in [&b"loopback"[..], b"127.0.0.1", b"\xff:1", b""] {
            let error = rdma_endpoint(bad).expect_err("not an address");
            assert!(matches!(error, NetError::BadEndpoint(_)), "{error}");
        }
    }

    #[test]
    fn provider_lists_drop_duplicates_and_reject_bad_names() {
        let list = provider_list(&["ofi:tcp", "ofi:tcp", "ofi:verbs"]).expect("valid");
        let names: Vec<&str> = list.iter().map(|p| p.as_str()).collect();
        assert_eq!(names, ["ofi:tcp", "ofi:verbs"]);
        assert!(provider_list(&["bad\u{1}name"]).is_err());
    }
}
