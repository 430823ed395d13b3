//! A server in this process, reached through the in-memory loopback
//! transport: what `rdio cp` and `rdio bench` use, and what the end-to-end
//! tests run. Every byte still crosses the full protocol — pipe discovery,
//! authentication, registration, RDMA writes for reads and sends for writes —
//! only the wire is memory.

use crate::client::{Client, ClientError, ClientOptions};
use crate::files::Root;
use crate::server::{ConnectionControl, ConnectionEnd, Server, ServerError, ServerOptions};
use rdio_core::wire::ProviderName;
use rdio_loopback::SyncEndpoint;
use std::fmt;
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
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        let provider = loopback_provider();
        Self {
            server: ServerOptions::new(provider, LOOPBACK_PROVIDER.as_bytes()),
            client: ClientOptions::new(provider),
            loopback: rdio_loopback::Config::default(),
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

/// A client connected to a server thread serving a directory.
#[derive(Debug)]
pub struct Embedded {
    /// The connected client.
    pub client: Client<SyncEndpoint, UnixStream>,
    server: Arc<Server>,
    control: ConnectionControl,
    connection: JoinHandle<ConnectionEnd>,
    pipe: JoinHandle<Result<(), ServerError>>,
}

impl Embedded {
    /// Serve `root` on server threads and connect a client to it.
    pub fn start(root: impl AsRef<Path>, options: EmbeddedOptions) -> Result<Self, EmbeddedError> {
        let root = Root::new(root).map_err(EmbeddedError::Root)?;
        let server = Server::new(root, options.server);
        let (client_transport, server_transport) = rdio_loopback::sync_pair(options.loopback);
        // Accepting posts the server's receives before the client can send.
        let connection = server
            .accept(server_transport)
            .map_err(EmbeddedError::Server)?;
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
        Ok(Self {
            client,
            server,
            control,
            connection,
            pipe,
        })
    }

    /// The server's side: its root, options and open files.
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// Steer the server's end of the connection (credit policy, shutdown).
    pub fn control(&self) -> &ConnectionControl {
        &self.control
    }

    /// Close the connection in order and wait for the server threads;
    /// returns how the server saw the connection end.
    pub fn finish(self) -> Result<ConnectionEnd, EmbeddedError> {
        let shutdown = self.client.shutdown();
        let end = self
            .connection
            .join()
            .map_err(|_| EmbeddedError::Panicked)?;
        self.pipe
            .join()
            .map_err(|_| EmbeddedError::Panicked)?
            .map_err(EmbeddedError::Server)?;
        shutdown.map_err(EmbeddedError::Client)?;
        Ok(end)
    }
}
