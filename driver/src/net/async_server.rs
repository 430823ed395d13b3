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
use super::server::{MAX_PIPES, RdmaAcceptor, network_options};
use super::{EventLog, NetError, NetEvent, RdmaListener};
use crate::files::Root;
use crate::pipe::PipeError;
use crate::server::{PipeSession, Server, ServerError, ServerOptions, pipe_refusal};
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
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
                    Ok((stream, peer)) if pipes.len() < MAX_PIPES => {
                        let _ = stream.set_nodelay(true);
                        pipes.spawn(serve_pipe(
                            Arc::clone(&server),
                            stream,
                            peer,
                            Arc::clone(&log),
                            stopped.clone(),
                        ));
                    }
                    Ok((_, peer)) => log(&NetEvent::PipeRefused { peer }),
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

/// One client's side channel, until it closes or the server stops.
async fn serve_pipe(
    server: Arc<Server>,
    stream: TcpStream,
    peer: SocketAddr,
    log: EventLog,
    mut stop: watch::Receiver<bool>,
) {
    let mut pipe = AsyncPipe::new(stream);
    let mut session = PipeSession::default();
    let result: Result<(), ServerError> = loop {
        let received = tokio::select! {
            received = pipe.receive() => received,
            _ = stop.changed() => break Ok(()),
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
