//! [`VerbsListener`]: the passive side of connection setup.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rdma_sys::rdma_cm_event_type::RDMA_CM_EVENT_DEVICE_REMOVAL;

use crate::config::VerbsConfig;
use crate::error::VerbsError;
use crate::sys::Endpoint;
use crate::transport::{VerbsTransport, require_devices};

/// A listening rdma_cm id: the server side of claim 1's "create, by the
/// client, an RDMA connection to the server".
///
/// Each accepted connection is moved to an event channel and protection
/// domain of its own, so it lives on independently of the listener and of
/// the other connections.
pub struct VerbsListener {
    endpoint: Endpoint,
    config: VerbsConfig,
}

impl VerbsListener {
    /// Listen on `addr` (an IP address of an RDMA device's netdev, or
    /// `0.0.0.0`; port 0 picks a free port, see [`Self::local_addr`]).
    /// Accepted connections use `config`.
    pub fn bind(addr: SocketAddr, config: &VerbsConfig) -> Result<Self, VerbsError> {
        config.validate()?;
        require_devices()?;
        let endpoint = Endpoint::new()?;
        endpoint.id.bind(addr)?;
        endpoint.id.listen(config.backlog)?;
        Ok(Self {
            endpoint,
            config: *config,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.endpoint.id.local_addr()
    }

    /// Wait up to `timeout` (`None`: forever) for a connection request and
    /// accept it; the handshake itself is bounded by the config's timeout.
    pub fn accept(&self, timeout: Option<Duration>) -> Result<VerbsTransport, VerbsError> {
        let deadline = timeout.and_then(|timeout| Instant::now().checked_add(timeout));
        loop {
            let event = self
                .endpoint
                .events
                .next(deadline, "waiting for a connection request")?;
            if let Some(request) = event.child {
                return VerbsTransport::accept(request, &self.config);
            }
            if event.event == RDMA_CM_EVENT_DEVICE_REMOVAL {
                return Err(VerbsError::Cm {
                    phase: "waiting for a connection request",
                    event: event.event,
                    status: event.status,
                });
            }
            // Anything else a listening id can see (an address change) needs
            // no action.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Binding on a host without RDMA is the typed error, not a crash.
    #[test]
    fn bind_without_devices() {
        let result = VerbsListener::bind(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            &VerbsConfig::default(),
        );
        if !std::path::Path::new("/sys/class/infiniband").exists() {
            let error = result.map(drop).unwrap_err();
            assert_eq!(
                error,
                VerbsError::NoRdmaDevices {
                    errno: Some(libc::ENOSYS)
                }
            );
        }
    }
}
