//! [`AsyncNetServer`]: the networked server on tokio.
//!
//! The side channel is fully async: a tokio TCP listener, and per client a
//! task reading and writing pipe frames and answering them with
//! [`Server::answer_pipe`] (the same protocol code as the blocking runner;
//! an answer is a short, bounded piece of work — a registry update under a
//! mutex, an `openat2` — done on the task).
//!
//! The RDMA side is not async and does not pretend to be: transports are
//! polled or waited on, so the listener runs on a dedicated thread and each
//! RDMA connection on a thread of its own, exactly as in
//! [`NetServer`](super::NetServer).

use super::async_pipe::AsyncPipe;
use super::server::{MAX_PIPES, RdmaAcceptor, network_options, refused};
use super::tls::{ServerSecurity, TLS_HANDSHAKE};
use super::{EventLog, NetError, NetEvent, RdmaListener};
use crate::access::{ChannelBinding, EXPORTER_CLIENT_AUTH, EXPORTER_RDMA_AUTH};
use crate::files::Root;
use crate::pipe::PipeError;
use crate::server::{PipeSession, Server, ServerError, ServerOptions, pipe_refusal};
use rdio_core::wire::{PipeMessage, Status};
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// A file server on the network, run by [`AsyncNetServer::run`] on the
/// caller's tokio runtime.
pub struct AsyncNetServer {
    server: Arc<Server>,
    pipe: TcpListener,
    pipe_addr: SocketAddr,
    endpoint: SocketAddr,
    rdma: RdmaAcceptor,
    security: ServerSecurity,
    log: EventLog,
}

impl fmt::Debug for AsyncNetServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncNetServer")
            .field("pipe_addr", &self.pipe_addr)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl AsyncNetServer {
    /// Listen for side channels on `listen` and RDMA connections on
    /// `listener` (already accepting, on its thread, once this returns),
    /// serving `root`. As [`NetServer::start`](super::NetServer::start)
    /// otherwise.
    pub async fn bind<L: RdmaListener>(
        root: Root,
        listen: SocketAddr,
        listener: L,
        options: ServerOptions,
        security: ServerSecurity,
        log: EventLog,
    ) -> Result<Self, NetError> {
        let options = network_options(options, &listener)?;
        let endpoint = listener.local_addr();
        let pipe = TcpListener::bind(listen)
            .await
            .map_err(|error| NetError::Listen {
                addr: listen,
                error,
            })?;
        let pipe_addr = pipe.local_addr().map_err(NetError::Os)?;
        let server = Server::new(root, options);
        let rdma = RdmaAcceptor::start(Arc::clone(&server), listener, Arc::clone(&log))?;
        Ok(Self {
            server,
            pipe,
            pipe_addr,
            endpoint,
            rdma,
            security,
            log,
        })
    }

    /// The side channel's address.
    pub fn pipe_addr(&self) -> SocketAddr {
        self.pipe_addr
    }

    /// The RDMA endpoint clients are sent to.
    pub fn endpoint(&self) -> SocketAddr {
        self.endpoint
    }

    /// The file server itself.
    pub fn server(&self) -> &Arc<Server> {
        &self.server
    }

    /// Serve until `shutdown` completes (e.g. `tokio::signal::ctrl_c()`),
    /// then stop in order: no new clients, side channels closed (their
    /// unregistered files with them), every RDMA connection ended with
    /// `Terminate` and its thread joined.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Self {
            server,
            pipe,
            mut rdma,
            security,
            log,
            ..
        } = self;
        let (stop, stopped) = watch::channel(false);
        let mut pipes = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = pipe.accept() => match accepted {
                    Ok((mut stream, peer)) if !security.allows(peer.ip()) => {
                        refuse(&mut stream, Status::NotAllowed).await;
                        refused(&log, peer, Status::NotAllowed, "address not in --allow");
                    }
                    Ok((stream, peer)) if pipes.len() < MAX_PIPES => {
                        let _ = stream.set_nodelay(true);
                        pipes.spawn(serve_pipe(
                            Arc::clone(&server),
                            stream,
                            peer,
                            security.clone(),
                            Arc::clone(&log),
                            stopped.clone(),
                        ));
                    }
                    Ok((mut stream, peer)) => {
                        refuse(&mut stream, Status::Busy).await;
                        tracing::warn!(
                            target: "rdio::access",
                            %peer,
                            reason = "too many side channels open",
                            "refused"
                        );
                        log(&NetEvent::PipeRefused { peer });
                    }
                    // Transient: a client gave up before accept, out of fds.
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                },
                Some(_) = pipes.join_next(), if !pipes.is_empty() => {}
            }
        }
        let _ = stop.send(true);
        while pipes.join_next().await.is_some() {}
        // Joining connection threads blocks: not on a runtime worker.
        let _ = tokio::task::spawn_blocking(move || rdma.stop()).await;
    }
}

/// A side channel's stream: TLS or clear text.
trait PipeIo: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> PipeIo for T {}

/// Send a clear-text refusal (best effort).
async fn refuse(stream: &mut TcpStream, status: Status) {
    let mut frame = [0u8; 32];
    if let Ok(len) = (PipeMessage::Refused { status }).emit(&mut frame) {
        let _ = stream.write_all(&frame[..len]).await;
    }
}

type Channel = (
    Box<dyn PipeIo>,
    Option<ChannelBinding>,
    Option<ChannelBinding>,
);

/// The side channel per `security`, as [`super::tls`] sets it up for the
/// blocking server.
async fn channel(mut stream: TcpStream, security: &ServerSecurity) -> Result<Channel, ServerError> {
    let refused = |status, reason: &str| ServerError::Refused {
        status,
        reason: reason.into(),
    };
    let mut first = [0u8; 1];
    let peeked = stream
        .peek(&mut first)
        .await
        .map_err(|e| ServerError::Pipe(PipeError::Io(e)))?;
    if peeked == 0 {
        return Err(ServerError::Pipe(PipeError::Closed));
    }
    let Some(config) = &security.tls else {
        if first[0] == TLS_HANDSHAKE {
            refuse(&mut stream, Status::TlsNotOffered).await;
            return Err(refused(
                Status::TlsNotOffered,
                "TLS client on a clear-text (--insecure) server",
            ));
        }
        return Ok((Box::new(stream), None, None));
    };
    if first[0] != TLS_HANDSHAKE {
        refuse(&mut stream, Status::TlsRequired).await;
        return Err(refused(
            Status::TlsRequired,
            "clear-text (--insecure) client on a TLS server",
        ));
    }
    let tls = tokio_rustls::TlsAcceptor::from(Arc::clone(config))
        .accept(stream)
        .await
        .map_err(|e| refused(Status::ProtocolError, &format!("TLS handshake failed: {e}")))?;
    let export = |label: &[u8]| {
        let mut out = [0u8; 32];
        tls.get_ref()
            .1
            .export_keying_material(&mut out, label, None)
            .map_err(|e| refused(Status::ProtocolError, &e.to_string()))?;
        Ok::<_, ServerError>(ChannelBinding(out))
    };
    let (auth, rdma) = (export(EXPORTER_CLIENT_AUTH)?, export(EXPORTER_RDMA_AUTH)?);
    Ok((Box::new(tls), Some(auth), Some(rdma)))
}

/// One client's side channel, until it closes or the server stops.
async fn serve_pipe(
    server: Arc<Server>,
    stream: TcpStream,
    peer: SocketAddr,
    security: ServerSecurity,
    log: EventLog,
    mut stop: watch::Receiver<bool>,
) {
    let setup = tokio::select! {
        setup = tokio::time::timeout(security.handshake_timeout, channel(stream, &security)) => setup,
        _ = stop.changed() => return,
    };
    let (stream, auth, rdma) = match setup {
        Ok(Ok(channel)) => channel,
        Ok(Err(error)) => {
            log(&NetEvent::PipeClosed {
                peer,
                result: &Err(error),
            });
            return;
        }
        Err(_) => {
            refused(&log, peer, Status::TimedOut, "no TLS handshake in time");
            return;
        }
    };
    let mut pipe = AsyncPipe::new(stream);
    let mut session =
        PipeSession::authenticating(Arc::clone(&security.clients), auth, rdma, peer.to_string());
    // Until it has authenticated, a client must not stall: the same bound
    // as for the handshake (the blocking server's read timeout).
    let deadline = tokio::time::Instant::now() + security.handshake_timeout;
    // With an idle timeout an authenticated client is looked at every
    // tenth of it (the receive is cancel safe).
    let idle_limit = server.options().idle_timeout;
    let idle_poll = idle_limit.map_or(Duration::MAX, super::server::idle_poll);
    let result: Result<(), ServerError> = loop {
        let authenticated = session.authenticated();
        let received = tokio::select! {
            received = pipe.receive() => received,
            _ = stop.changed() => break Ok(()),
            () = tokio::time::sleep(idle_poll), if authenticated && idle_limit.is_some() => {
                match server.pipe_idle(&session) {
                    Some(idle) => {
                        let error = server.idle_refusal(&session, idle);
                        let _ = pipe.send(&PipeMessage::Refused { status: Status::IdleTimeout }).await;
                        break Err(error);
                    }
                    None => continue,
                }
            }
            () = tokio::time::sleep_until(deadline), if !authenticated => {
                let _ = pipe.send(&PipeMessage::Refused { status: Status::Unauthenticated }).await;
                break Err(ServerError::Refused {
                    status: Status::Unauthenticated,
                    reason: "did not authenticate in time".into(),
                });
            }
        };
        let reply = match received {
            Err(PipeError::Closed) => break Ok(()),
            Err(error) => Err(error.into()),
            Ok(message) => server.answer_pipe(&mut session, &message),
        };
        let error = match reply {
            Ok(reply) => match pipe.send(&reply).await {
                Ok(()) => continue,
                Err(error) => break Err(error.into()),
            },
            Err(error) => error,
        };
        if let Some(status) = error.refusal() {
            let _ = pipe.send(&PipeMessage::Refused { status }).await;
            break Err(error);
        }
        match pipe_refusal(&error, pipe.last_opcode()) {
            Some((refusal, read_on)) => {
                if pipe.send(&refusal).await.is_ok() && read_on {
                    continue;
                }
                break Err(error);
            }
            None => break Err(error),
        }
    };
    server.end_pipe(session);
    log(&NetEvent::PipeClosed {
        peer,
        result: &result,
    });
}
