//! [`NetServer`]: a directory served over the network — side channel by
//! TCP, RDMA connections from an [`RdmaListener`], each on a thread of its
//! own.

use super::tls::{self, ServerSecurity, Setup};
use super::{NetError, RdmaListener, SetupError};
use crate::capture::{PipeTap, Recorder};
use crate::files::Root;
use crate::server::{
    ConnectionControl, ConnectionEnd, PipeSession, Server, ServerError, ServerOptions,
};
use rdio_core::wire::Status;
use rdio_transport::Transport;
use std::collections::HashMap;
use std::fmt;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// How long the RDMA acceptor waits for a connection request before looking
/// for a shutdown again (its stop latency).
const ACCEPT_SLICE: Duration = Duration::from_millis(100);

/// Where a server's per-connection log lines go.
pub type EventLog = Arc<dyn Fn(&NetEvent<'_>) + Send + Sync>;

/// Something an operator wants to see: one per side channel and one per
/// RDMA connection, when it ends, plus setup failures. `Display` gives the
/// log line.
#[derive(Debug)]
#[non_exhaustive]
pub enum NetEvent<'a> {
    /// A client's side channel closed (`Ok`) or failed.
    PipeClosed {
        /// The client's address.
        peer: SocketAddr,
        /// How it ended.
        result: &'a Result<(), ServerError>,
    },
    /// A side channel was refused: too many open at once.
    PipeRefused {
        /// The client's address.
        peer: SocketAddr,
    },
    /// A side channel was refused before or during its authentication.
    Refused {
        /// The client's address.
        peer: SocketAddr,
        /// What the client was told.
        status: Status,
        /// Why.
        reason: &'a str,
    },
    /// An RDMA connection ended.
    ConnectionEnded {
        /// The connection's number, counted from 1 since the server started.
        number: u64,
        /// Its provider.
        provider: &'a str,
        /// How it ended.
        end: &'a ConnectionEnd,
    },
    /// Accepting an RDMA connection failed; the server keeps listening.
    AcceptFailed {
        /// Why.
        error: &'a (dyn std::error::Error + Send + Sync),
    },
}

impl fmt::Display for NetEvent<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PipeClosed {
                peer,
                result: Ok(()),
            } => write!(f, "side channel from {peer} closed"),
            Self::PipeClosed {
                peer,
                result: Err(error),
            } => write!(f, "side channel from {peer} failed: {error}"),
            Self::PipeRefused { peer } => {
                write!(f, "side channel from {peer} refused: too many clients")
            }
            Self::Refused {
                peer,
                status,
                reason,
            } => write!(f, "side channel from {peer} refused ({status}): {reason}"),
            Self::ConnectionEnded {
                number,
                provider,
                end,
            } => write!(f, "RDMA connection {number} ({provider}) ended: {end}"),
            Self::AcceptFailed { error } => write!(f, "RDMA connection setup failed: {error}"),
        }
    }
}

/// The options a networked server really runs with: the listener's
/// providers are the offer and its address is the endpoint (claim 8's
/// negotiate response). A listener on every address (`0.0.0.0`, `::`)
/// advertises that wildcard, which a client reads as "the address you
/// reached the side channel at" ([`super::reachable_endpoint`]).
pub(super) fn network_options(
    mut options: ServerOptions,
    listener: &impl RdmaListener,
) -> Result<ServerOptions, NetError> {
    let endpoint = listener.local_addr();
    options.providers = listener.providers();
    options.endpoint = endpoint.to_string().into_bytes();
    Ok(options)
}

/// The thread accepting RDMA connections, and the threads running them.
///
/// Shared by the blocking and the tokio server: the RDMA engine is blocking
/// (transports are polled or waited on, never async), so each connection
/// gets a thread.
pub(super) struct RdmaAcceptor {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RdmaAcceptor {
    pub(super) fn start<L: RdmaListener>(
        server: Arc<Server>,
        listener: L,
        log: EventLog,
    ) -> Result<Self, NetError> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name("rdio-rdma-accept".into())
            .spawn(move || accept_loop(&server, &listener, &log, &stopping))
            .map_err(NetError::Os)?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stop accepting, end every connection in order (`Terminate`), and
    /// wait for them.
    pub(super) fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for RdmaAcceptor {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop<L: RdmaListener>(
    server: &Arc<Server>,
    listener: &L,
    log: &EventLog,
    stop: &AtomicBool,
) {
    let mut connections: Vec<(ConnectionControl, JoinHandle<()>)> = Vec::new();
    let mut number = 0u64;
    while !stop.load(Ordering::Relaxed) {
        connections.retain(|(_, thread)| !thread.is_finished());
        let transport = match listener.accept(ACCEPT_SLICE) {
            Ok(Some(transport)) => transport,
            Ok(None) => continue,
            Err(error) => {
                log(&NetEvent::AcceptFailed {
                    error: error.as_ref(),
                });
                // A listener that fails at once every time must not spin.
                thread::sleep(ACCEPT_SLICE);
                continue;
            }
        };
        number += 1;
        match run_connection(server, transport, number, log) {
            Ok(connection) => connections.push(connection),
            Err(error) => {
                tracing::warn!(
                    target: "rdio::access",
                    number,
                    reason = %error,
                    "RDMA connection refused"
                );
                log(&NetEvent::AcceptFailed {
                    error: error.as_ref(),
                });
            }
        }
    }
    for (control, _) in &connections {
        control.shutdown();
    }
    for (_, thread) in connections {
        let _ = thread.join();
    }
}

/// Post the connection's receives, then run it on its own thread.
fn run_connection<T: Transport + Send + 'static>(
    server: &Arc<Server>,
    transport: T,
    number: u64,
    log: &EventLog,
) -> Result<(ConnectionControl, JoinHandle<()>), SetupError> {
    let provider = transport.provider().to_owned();
    let connection = server.accept(transport)?;
    let control = connection.control();
    let log = Arc::clone(log);
    let thread = thread::Builder::new()
        .name(format!("rdio-connection-{number}"))
        .spawn(move || {
            tracing::info!(target: "rdio::access", number, provider = %provider, "RDMA connection");
            // Its end is logged by the connection itself (peer, client,
            // bytes, duration, why).
            let end = connection.run();
            log(&NetEvent::ConnectionEnded {
                number,
                provider: &provider,
                end: &end,
            });
        })?;
    Ok((control, thread))
}

/// How often a side channel looks for its client being idle past `limit`:
/// a tenth of it, between 100 ms and 1 s.
pub(super) fn idle_poll(limit: Duration) -> Duration {
    (limit / 10).clamp(Duration::from_millis(100), Duration::from_secs(1))
}

/// Most side channels open at once; more are refused (closed at once), so
/// a flood of idle TCP connections cannot exhaust threads.
pub(super) const MAX_PIPES: usize = 1024;

/// Side channels being served, so a shutdown can close them.
#[derive(Default)]
struct Pipes {
    next: u64,
    open: HashMap<u64, TcpStream>,
    threads: Vec<JoinHandle<()>>,
}

/// A file server on the network: TCP side channel plus RDMA listener.
///
/// Runs on threads of its own from [`NetServer::start`] until
/// [`NetServer::shutdown`] (or drop), which stops accepting, closes the side
/// channels, ends every RDMA connection with `Terminate` and waits for them.
pub struct NetServer {
    server: Arc<Server>,
    pipe_addr: SocketAddr,
    endpoint: SocketAddr,
    stop: Arc<AtomicBool>,
    /// A handle on the pipe listener, to wake its accept at shutdown.
    pipe_listener: TcpListener,
    pipes: Arc<Mutex<Pipes>>,
    pipe_thread: Option<JoinHandle<()>>,
    rdma: RdmaAcceptor,
}

impl fmt::Debug for NetServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetServer")
            .field("pipe_addr", &self.pipe_addr)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl NetServer {
    /// Serve `root`: side channel on `listen` (port 0 picks one, see
    /// [`NetServer::pipe_addr`]), RDMA connections from `listener`.
    /// `options` gives the limits; its providers and endpoint are replaced
    /// by the listener's. `security` guards the side channel (TLS or clear
    /// text, the clients that may connect, the addresses allowed). `log`
    /// receives one event per connection.
    pub fn start<L: RdmaListener>(
        root: Root,
        listen: SocketAddr,
        listener: L,
        options: ServerOptions,
        security: ServerSecurity,
        log: EventLog,
    ) -> Result<Self, NetError> {
        Self::start_captured(root, listen, listener, options, security, log, None)
    }

    /// [`NetServer::start`], recording every side-channel frame to
    /// `capture` (wrap the listener in a
    /// [`CaptureListener`](crate::capture::CaptureListener) for the RDMA
    /// connections).
    pub fn start_captured<L: RdmaListener>(
        root: Root,
        listen: SocketAddr,
        listener: L,
        options: ServerOptions,
        security: ServerSecurity,
        log: EventLog,
        capture: Option<Arc<Recorder>>,
    ) -> Result<Self, NetError> {
        let options = network_options(options, &listener)?;
        let endpoint = listener.local_addr();
        let bound = TcpListener::bind(listen).map_err(|error| NetError::Listen {
            addr: listen,
            error,
        })?;
        let pipe_addr = bound.local_addr().map_err(NetError::Os)?;
        let pipe_listener = bound.try_clone().map_err(NetError::Os)?;
        let server = Server::new(root, options);
        let rdma = RdmaAcceptor::start(Arc::clone(&server), listener, Arc::clone(&log))?;
        let stop = Arc::new(AtomicBool::new(false));
        let pipes = Arc::new(Mutex::new(Pipes::default()));
        let pipe_thread = {
            let (server, stop, pipes) =
                (Arc::clone(&server), Arc::clone(&stop), Arc::clone(&pipes));
            thread::Builder::new()
                .name("rdio-pipe-accept".into())
                .spawn(move || {
                    pipe_loop(
                        &server,
                        &bound,
                        &pipes,
                        &security,
                        &log,
                        &stop,
                        capture.as_ref(),
                    )
                })
                .map_err(NetError::Os)?
        };
        Ok(Self {
            server,
            pipe_addr,
            endpoint,
            stop,
            pipe_listener,
            pipes,
            pipe_thread: Some(pipe_thread),
            rdma,
        })
    }

    /// The side channel's address: what clients connect to.
    pub fn pipe_addr(&self) -> SocketAddr {
        self.pipe_addr
    }

    /// The RDMA endpoint clients are sent to.
    pub fn endpoint(&self) -> SocketAddr {
        self.endpoint
    }

    /// The file server itself (root, options, open files).
    pub fn server(&self) -> &Arc<Server> {
        &self.server
    }

    /// Stop in order and wait for every thread (see the type's docs).
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Linux wakes an accept blocked on a listening socket that is shut
        // down (EINVAL); the loop then sees the flag.
        let _ = rustix::net::shutdown(&self.pipe_listener, rustix::net::Shutdown::Read);
        if let Some(thread) = self.pipe_thread.take() {
            let _ = thread.join();
        }
        let threads = {
            let mut pipes = self.pipes.lock().unwrap_or_else(PoisonError::into_inner);
            for stream in pipes.open.values() {
                let _ = stream.shutdown(Shutdown::Both);
            }
            std::mem::take(&mut pipes.threads)
        };
        for thread in threads {
            let _ = thread.join();
        }
        self.rdma.stop();
    }
}

impl Drop for NetServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Log a refusal: the access log and the server's event log.
pub(super) fn refused(log: &EventLog, peer: SocketAddr, status: Status, reason: &str) {
    tracing::warn!(target: "rdio::access", %peer, reason, "refused");
    log(&NetEvent::Refused {
        peer,
        status,
        reason,
    });
}

fn pipe_loop(
    server: &Arc<Server>,
    listener: &TcpListener,
    pipes: &Arc<Mutex<Pipes>>,
    security: &ServerSecurity,
    log: &EventLog,
    stop: &AtomicBool,
    capture: Option<&Arc<Recorder>>,
) {
    while !stop.load(Ordering::Relaxed) {
        let (mut stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            // Transient (a client gave up before accept, out of fds, ...),
            // or the shutdown wake-up, which the loop condition catches.
            Err(_) => {
                if !stop.load(Ordering::Relaxed) {
                    thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
        };
        if !security.allows(peer.ip()) {
            tls::refuse(&mut stream, Status::NotAllowed);
            refused(log, peer, Status::NotAllowed, "address not in --allow");
            continue;
        }
        let mut guard = pipes.lock().unwrap_or_else(PoisonError::into_inner);
        guard.threads.retain(|thread| !thread.is_finished());
        if guard.open.len() >= MAX_PIPES {
            drop(guard);
            tls::refuse(&mut stream, Status::Busy);
            tracing::warn!(
                target: "rdio::access",
                %peer,
                reason = "too many side channels open",
                "refused"
            );
            log(&NetEvent::PipeRefused { peer });
            continue;
        }
        let _ = stream.set_nodelay(true);
        let Ok(handle) = stream.try_clone() else {
            continue;
        };
        let id = guard.next;
        guard.next += 1;
        guard.open.insert(id, handle);
        let (server, log, registry) = (Arc::clone(server), Arc::clone(log), Arc::clone(pipes));
        let security = security.clone();
        let socket = stream.try_clone().ok();
        let capture = capture.cloned();
        let spawned = thread::Builder::new()
            .name("rdio-pipe".into())
            .spawn(move || {
                let result = match tls::server_channel(stream, &security) {
                    Ok((stream, auth, rdma)) => {
                        let mut session = PipeSession::authenticating(
                            Arc::clone(&security.clients),
                            auth,
                            rdma,
                            peer.to_string(),
                        );
                        // With an idle timeout the pipe is read in short
                        // slices, to notice an idle client in time; the
                        // client still has the handshake timeout to
                        // authenticate.
                        if let (Some(limit), Some(socket)) =
                            (server.options().idle_timeout, &socket)
                        {
                            let slice = idle_poll(limit).min(security.handshake_timeout);
                            if socket.set_read_timeout(Some(slice)).is_ok() {
                                session = session.with_auth_timeout(security.handshake_timeout);
                            }
                        }
                        // The tap sees the pipe inside TLS: the frames, not records.
                        server.serve_pipe_as(PipeTap::new(stream, capture), session)
                    }
                    Err(Setup::Refused(status, reason)) => Err(ServerError::Refused {
                        status,
                        reason: reason.into(),
                    }),
                    Err(Setup::Failed(reason)) => Err(ServerError::Refused {
                        status: Status::ProtocolError,
                        reason,
                    }),
                };
                registry
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .open
                    .remove(&id);
                log(&NetEvent::PipeClosed {
                    peer,
                    result: &result,
                });
            });
        match spawned {
            Ok(thread) => guard.threads.push(thread),
            Err(_) => {
                guard.open.remove(&id);
            }
        }
    }
}
