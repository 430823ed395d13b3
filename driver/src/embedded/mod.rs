//! A server in this process, reached through the in-memory loopback
//! transport: what `rdio cp` and `rdio bench` use, and what the end-to-end
//! tests run. Every byte still crosses the full protocol — pipe discovery,
//! authentication, registration, RDMA writes for reads and sends for writes —
//! only the wire is memory.
//!
//! The pair runs in one of two modes, the type parameter of [`Embedded`]:
//!
//! * [`Threads`] ([`Embedded::start`]): the server's connection runs on a
//!   thread of its own ([`ServerConnection::run`]), its side channel on
//!   another, and the client reaches them through the thread-safe loopback
//!   ([`SyncEndpoint`], [`UnixStream`]). Every message crosses threads with
//!   a condition-variable wake-up. The server works while the client does
//!   something else, which is what a server sharing files with other
//!   processes needs: it gives up a mapped file's lease at once when a
//!   writer elsewhere asks for it.
//! * [`Inline`] ([`Embedded::start_inline`]): no threads at all. The
//!   client's transport ([`InlineTransport`]) owns the server's connection
//!   and steps it ([`ServerConnection::turn`]) inside its own calls, over
//!   the single-threaded loopback pair; the side channel ([`InlinePipe`])
//!   answers each request as the client writes it. Nothing blocks and
//!   nothing changes threads on the I/O path, so one core does all the
//!   work; the price is that the server runs only while its client is in a
//!   call (see [`Inline`]).
//!
//! Both modes run the same server code on the same files (zero-copy reads
//! from leased mappings included) and the same client; only who runs the
//! server, and when, differs.

mod inline;

pub use inline::{InlinePipe, InlineTransport};

use crate::capture::{Capture, PipeTap, Recorder};
use crate::client::{Client, ClientError, ClientOptions};
use crate::files::Root;
use crate::server::{
    ConnectionControl, ConnectionEnd, Server, ServerConnection, ServerError, ServerOptions,
};
use rdio_core::wire::ProviderName;
use rdio_loopback::SyncEndpoint;
use rdio_transport::Transport;
use std::fmt;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

/// The provider name the loopback transport negotiates as.
pub const LOOPBACK_PROVIDER: &str = "loopback";

/// Options of the in-process pair.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// The server's limits.
    pub server: ServerOptions,
    /// The client's limits and completion mode.
    pub client: ClientOptions,
    /// The loopback queue sizes.
    pub loopback: rdio_loopback::Config,
    /// Where the [`Captured`] mode records both ends (the other modes
    /// ignore it).
    pub capture: Option<Arc<Recorder>>,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        let provider = loopback_provider();
        Self {
            server: ServerOptions::new(provider, LOOPBACK_PROVIDER.as_bytes()),
            client: ClientOptions::new(provider),
            loopback: rdio_loopback::Config::default(),
            capture: None,
        }
    }
}

fn loopback_provider() -> ProviderName {
    // A valid name (printable ASCII, 8 bytes): cannot fail.
    ProviderName::new(LOOPBACK_PROVIDER)
        .unwrap_or_else(|_| unreachable!("static provider name is valid"))
}

/// Why the in-process pair could not start or stopped badly.
#[derive(Debug)]
#[non_exhaustive]
pub enum EmbeddedError {
    /// The root could not be exported.
    Root(std::io::Error),
    /// The side-channel socket pair could not be created, or a thread not
    /// spawned.
    Os(std::io::Error),
    /// The server failed.
    Server(ServerError),
    /// The client failed to connect.
    Client(ClientError),
    /// A server thread panicked.
    Panicked,
}

impl fmt::Display for EmbeddedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Root(e) => write!(f, "cannot serve the directory: {e}"),
            Self::Os(e) => write!(f, "{e}"),
            Self::Server(e) => write!(f, "server: {e}"),
            Self::Client(e) => write!(f, "{e}"),
            Self::Panicked => f.write_str("a server thread panicked"),
        }
    }
}

impl std::error::Error for EmbeddedError {}

/// How an [`Embedded`] pair runs its server: [`Threads`] or [`Inline`].
/// Sealed: these two are all there is.
pub trait Mode: Sized + sealed::Stop {
    /// The client's RDMA transport.
    type Transport: Transport;
    /// The client's side channel.
    type Pipe: Read + Write;

    /// Serve `root` and connect a client to it, in this mode
    /// ([`Embedded::start`], [`Embedded::start_inline`]).
    fn start(
        root: impl AsRef<Path>,
        options: EmbeddedOptions,
    ) -> Result<Embedded<Self>, EmbeddedError>;
}

mod sealed {
    use super::{ConnectionEnd, Embedded, EmbeddedError, Mode};

    pub trait Stop {
        /// [`Embedded::finish`] in this mode.
        fn finish(pair: Embedded<Self>) -> Result<ConnectionEnd, EmbeddedError>
        where
            Self: Mode;
    }
}

/// A client connected to a server in this process serving a directory,
/// the server run as mode `M` says (threads by default).
#[derive(Debug)]
pub struct Embedded<M: Mode = Threads> {
    /// The connected client.
    pub client: Client<M::Transport, M::Pipe>,
    server: Arc<Server>,
    control: ConnectionControl,
    mode: M,
}

/// The server on threads of its own: the connection runner and the side
/// channel's handler (see the [module docs](self)).
#[derive(Debug)]
pub struct Threads {
    connection: JoinHandle<ConnectionEnd>,
    pipe: JoinHandle<Result<(), ServerError>>,
}

/// The server stepped inside the client's own calls, on the client's
/// thread (see the [module docs](self) and [`InlineTransport`]).
///
/// The server makes progress only while the client is in a call that waits
/// for it (a `wait`, a blocking read or write, an open, a close). A server
/// holding a mapped file's read lease therefore notices a writer breaking
/// it (another process, or another pair in this one opening the file for
/// writing) only at its client's next call: the writer's open waits until
/// then, and fails once its bounded wait is over. Use [`Threads`] for a
/// server that shares its files with writers outside its own client.
/// Everything else — the protocol, the files, zero-copy reads, credits,
/// both completion modes — is the same.
///
/// An inline pair is not `Send`: the client, the server connection and the
/// loopback pair between them live on one thread.
#[derive(Debug)]
pub struct Inline {
    state: std::rc::Rc<inline::State>,
}

impl Embedded<Threads> {
    /// Serve `root` on server threads and connect a client to it.
    pub fn start(root: impl AsRef<Path>, options: EmbeddedOptions) -> Result<Self, EmbeddedError> {
        Threads::start(root, options)
    }
}

impl Embedded<Inline> {
    /// Serve `root` inline — stepped by the client's own calls, on this
    /// thread, with no server threads — and connect a client to it.
    pub fn start_inline(
        root: impl AsRef<Path>,
        options: EmbeddedOptions,
    ) -> Result<Self, EmbeddedError> {
        Inline::start(root, options)
    }
}

impl<M: Mode> Embedded<M> {
    /// The server's side: its root, options, open files and counters
    /// (an `Arc`, so they can be read after [`Embedded::finish`]).
    pub fn server(&self) -> &Arc<Server> {
        &self.server
    }

    /// Steer the server's end of the connection (credit policy, shutdown).
    /// An inline server takes the orders at its next turn.
    pub fn control(&self) -> &ConnectionControl {
        &self.control
    }

    /// Close the connection in order and wait for the server to end it;
    /// returns how the server saw the connection end.
    pub fn finish(self) -> Result<ConnectionEnd, EmbeddedError> {
        M::finish(self)
    }
}

/// The server on threads, as [`Threads`], with both ends of the connection
/// and of the side channel recorded to [`EmbeddedOptions::capture`]
/// ([`crate::capture`]): the client's records and the server's, each end
/// a connection of its own in the one capture.
#[derive(Debug)]
pub struct Captured(Threads);

impl Mode for Captured {
    type Transport = Capture<SyncEndpoint>;
    type Pipe = PipeTap<UnixStream>;

    fn start(
        root: impl AsRef<Path>,
        options: EmbeddedOptions,
    ) -> Result<Embedded<Self>, EmbeddedError> {
        let recorder = options.capture.clone().ok_or_else(|| {
            EmbeddedError::Os(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the Captured mode needs EmbeddedOptions::capture",
            ))
        })?;
        let (client_transport, server_transport) = rdio_loopback::sync_pair(options.loopback);
        let (client_stream, server_stream) = UnixStream::pair().map_err(EmbeddedError::Os)?;
        let client_stream = PipeTap::new(client_stream, Some(Arc::clone(&recorder)));
        let server_stream = PipeTap::new(server_stream, Some(Arc::clone(&recorder)));
        let client_transport = Capture::new(client_transport, Arc::clone(&recorder));
        let server_transport = Capture::new(server_transport, recorder);
        let (server, connection) = serve(root, options.server, server_transport)?;
        let control = connection.control();
        let pipe_server = Arc::clone(&server);
        let pipe = std::thread::Builder::new()
            .name("rdio-server-pipe".into())
            .spawn(move || pipe_server.serve_pipe(server_stream))
            .map_err(EmbeddedError::Os)?;
        let connection = std::thread::Builder::new()
            .name("rdio-server-connection".into())
            .spawn(move || connection.run())
            .map_err(EmbeddedError::Os)?;
        let client = Client::connect(client_stream, options.client, |_| Ok(client_transport))
            .map_err(EmbeddedError::Client)?;
        Ok(Embedded {
            client,
            server,
            control,
            mode: Captured(Threads { connection, pipe }),
        })
    }
}

impl sealed::Stop for Captured {
    fn finish(pair: Embedded<Self>) -> Result<ConnectionEnd, EmbeddedError> {
        let shutdown = pair.client.shutdown();
        let Captured(threads) = pair.mode;
        let end = threads
            .connection
            .join()
            .map_err(|_| EmbeddedError::Panicked)?;
        threads
            .pipe
            .join()
            .map_err(|_| EmbeddedError::Panicked)?
            .map_err(EmbeddedError::Server)?;
        shutdown.map_err(EmbeddedError::Client)?;
        Ok(end)
    }
}

/// Export `root` and accept a connection over `transport`, posting the
/// server's receives before the client can send.
fn serve<T: Transport>(
    root: impl AsRef<Path>,
    options: ServerOptions,
    transport: T,
) -> Result<(Arc<Server>, ServerConnection<T>), EmbeddedError> {
    let root = Root::new(root).map_err(EmbeddedError::Root)?;
    let server = Server::new(root, options);
    let connection = server.accept(transport).map_err(EmbeddedError::Server)?;
    Ok((server, connection))
}

impl Mode for Threads {
    type Transport = SyncEndpoint;
    type Pipe = UnixStream;

    fn start(
        root: impl AsRef<Path>,
        options: EmbeddedOptions,
    ) -> Result<Embedded<Self>, EmbeddedError> {
        let (client_transport, server_transport) = rdio_loopback::sync_pair(options.loopback);
        let (server, connection) = serve(root, options.server, server_transport)?;
        let control = connection.control();
        let (client_stream, server_stream) = UnixStream::pair().map_err(EmbeddedError::Os)?;
        let pipe_server = Arc::clone(&server);
        let pipe = std::thread::Builder::new()
            .name("rdio-server-pipe".into())
            .spawn(move || pipe_server.serve_pipe(server_stream))
            .map_err(EmbeddedError::Os)?;
        let connection = std::thread::Builder::new()
            .name("rdio-server-connection".into())
            .spawn(move || connection.run())
            .map_err(EmbeddedError::Os)?;
        let client = Client::connect(client_stream, options.client, |_| Ok(client_transport))
            .map_err(EmbeddedError::Client)?;
        Ok(Embedded {
            client,
            server,
            control,
            mode: Threads { connection, pipe },
        })
    }
}

impl sealed::Stop for Threads {
    fn finish(pair: Embedded<Self>) -> Result<ConnectionEnd, EmbeddedError> {
        let shutdown = pair.client.shutdown();
        let end = pair
            .mode
            .connection
            .join()
            .map_err(|_| EmbeddedError::Panicked)?;
        pair.mode
            .pipe
            .join()
            .map_err(|_| EmbeddedError::Panicked)?
            .map_err(EmbeddedError::Server)?;
        shutdown.map_err(EmbeddedError::Client)?;
        Ok(end)
    }
}

impl Mode for Inline {
    type Transport = InlineTransport;
    type Pipe = InlinePipe;

    fn start(
        root: impl AsRef<Path>,
        options: EmbeddedOptions,
    ) -> Result<Embedded<Self>, EmbeddedError> {
        let (client_transport, server_transport) = rdio_loopback::pair(options.loopback);
        let (server, connection) = serve(root, options.server, server_transport)?;
        let control = connection.control();
        let state = std::rc::Rc::new(inline::State::default());
        let transport = InlineTransport::new(client_transport, connection, &state);
        let pipe = InlinePipe::new(Arc::clone(&server), &state);
        let client = Client::connect(pipe, options.client, |_| Ok(transport))
            .map_err(EmbeddedError::Client)?;
        Ok(Embedded {
            client,
            server,
            control,
            mode: Inline { state },
        })
    }
}

impl sealed::Stop for Inline {
    fn finish(pair: Embedded<Self>) -> Result<ConnectionEnd, EmbeddedError> {
        // Dropping the client (which `shutdown` does) finishes the server
        // connection its transport steps, and ends the pipe's session.
        let shutdown = pair.client.shutdown();
        let end = pair.mode.state.take_end();
        if let Some(error) = pair.mode.state.take_pipe_error() {
            return Err(EmbeddedError::Server(error));
        }
        shutdown.map_err(EmbeddedError::Client)?;
        Ok(end)
    }
}
