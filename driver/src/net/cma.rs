//! The RDMA channel between processes on one host, over cross-memory
//! attach ([`rdio_cma`]): RDMA writes are `process_vm_writev` copies
//! straight into the peer's registered memory, sends travel on a Unix
//! socket. No RDMA hardware, no kernel RDMA module and no libfabric.
//!
//! The endpoint the server advertises stays a socket address
//! (`127.0.0.1:PORT`), as negotiation speaks them; it names the abstract
//! Unix socket `@rdio-cma/127.0.0.1:PORT` ([`rdio_cma::socket_name`]), so
//! a client on another host (or in another network namespace) cannot
//! reach it, and a peer of another uid is refused by both sides.

use super::{RdmaConnector, RdmaListener, SetupError, provider_list};
use rdio_cma::{CmaTransport, PROVIDER};
use rdio_core::wire::{ProviderList, ProviderName};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// How long an accepted connection's hello exchange may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts rdio connections from processes on this host.
pub struct CmaListener {
    listener: rdio_cma::Listener,
    providers: ProviderList,
}

impl fmt::Debug for CmaListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CmaListener")
            .field("endpoint", &self.listener.local_addr())
            .finish()
    }
}

impl CmaListener {
    /// Listen at `endpoint`'s socket name (port 0 picks one).
    pub fn bind(endpoint: SocketAddr) -> Result<Self, SetupError> {
        Ok(Self {
            listener: rdio_cma::Listener::bind(endpoint)?,
            providers: provider_list(&[PROVIDER])?,
        })
    }
}

impl RdmaListener for CmaListener {
    type Transport = CmaTransport;

    fn providers(&self) -> ProviderList {
        self.providers.clone()
    }

    fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr()
    }

    fn accept(&self, timeout: Duration) -> Result<Option<CmaTransport>, SetupError> {
        let accepted = self.listener.accept(timeout, HANDSHAKE_TIMEOUT)?;
        Ok(accepted.map(|mut transport| {
            // The server keeps a receive posted per credit (64 of up to
            // 1 MiB + 4 KiB): filled newest first, a write lands in the
            // buffer just reposted, still in cache.
            transport.set_newest_first(true);
            transport
        }))
    }
}

/// Connects to a server on this host over cma.
#[derive(Clone, Debug)]
pub struct CmaConnector {
    providers: ProviderList,
    timeout: Duration,
}

impl CmaConnector {
    /// Offer the `cma` provider, with [`rdio_cma::DEFAULT_CONNECT_TIMEOUT`]
    /// for the hello exchange.
    pub fn new() -> Result<Self, SetupError> {
        Ok(Self {
            providers: provider_list(&[PROVIDER])?,
            timeout: rdio_cma::DEFAULT_CONNECT_TIMEOUT,
        })
    }

    /// Bound the hello exchange by `timeout` instead.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl RdmaConnector for CmaConnector {
    type Transport = CmaTransport;

    fn providers(&self) -> ProviderList {
        self.providers.clone()
    }

    fn connect(
        &self,
        endpoint: SocketAddr,
        provider: &ProviderName,
    ) -> Result<CmaTransport, SetupError> {
        if provider.as_str() != PROVIDER {
            return Err(format!("the cma connector cannot connect over {provider:?}").into());
        }
        let mut transport = rdio_cma::connect(endpoint, self.timeout)?;
        // rdio's drivers find a receive by its work-request id: the order
        // receives are filled in is theirs to choose (see the listener).
        transport.set_newest_first(true);
        Ok(transport)
    }
}
