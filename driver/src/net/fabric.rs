//! The RDMA channel over libfabric ([`rdio_fabric`]): `tcp` anywhere,
//! `verbs` or `efa` where the hardware is.

use super::{RdmaConnector, RdmaListener, SetupError, provider_list};
use rdio_core::wire::{ProviderList, ProviderName};
use rdio_fabric::{FabricError, FabricTransport, PROVIDER_PREFIX};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// How long an accepted connection's handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// `"tcp"` or `"ofi:tcp"` → `"ofi:tcp"`: the name negotiation uses.
fn negotiated_name(provider: &str) -> String {
    let bare = provider.strip_prefix(PROVIDER_PREFIX).unwrap_or(provider);
    format!("{PROVIDER_PREFIX}{bare}")
}

/// A provider this machine's libfabric cannot serve rdio with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderUnavailable {
    /// What was asked for.
    pub provider: String,
    /// What this machine has (`rdio_fabric::providers()`).
    pub available: Vec<String>,
}

impl fmt::Display for ProviderUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "libfabric provider {} is not available here (available: [{}])",
            self.provider,
            self.available.join(", ")
        )
    }
}

impl std::error::Error for ProviderUnavailable {}

/// The named provider, checked against what libfabric offers here (an
/// error of its own when libfabric cannot be loaded at all).
fn available(provider: &str) -> Result<String, SetupError> {
    let name = negotiated_name(provider);
    let available = rdio_fabric::providers()?;
    if available.contains(&name) {
        Ok(name)
    } else {
        Err(ProviderUnavailable {
            provider: name,
            available,
        }
        .into())
    }
}

/// A libfabric passive endpoint accepting rdio connections over one
/// provider.
pub struct FabricListener {
    listener: rdio_fabric::Listener,
    providers: ProviderList,
}

impl fmt::Debug for FabricListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FabricListener")
            .field("addr", &self.listener.local_addr())
            .field("providers", &self.providers)
            .finish()
    }
}

impl FabricListener {
    /// Listen on `addr` (port 0 picks one) through `provider` (`"tcp"` or
    /// `"ofi:tcp"`), which must be one of [`rdio_fabric::providers`].
    pub fn bind(addr: SocketAddr, provider: &str) -> Result<Self, SetupError> {
        let name = available(provider)?;
        let listener = rdio_fabric::Listener::bind(addr, &name)?;
        Ok(Self {
            listener,
            providers: provider_list(&[&name])?,
        })
    }
}

impl RdmaListener for FabricListener {
    type Transport = FabricTransport;

    fn providers(&self) -> ProviderList {
        self.providers.clone()
    }

    fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr()
    }

    fn accept(&self, timeout: Duration) -> Result<Option<FabricTransport>, SetupError> {
        Ok(self.listener.accept_within(timeout, HANDSHAKE_TIMEOUT)?)
    }
}

/// Connects over libfabric, offering one provider or every usable one.
#[derive(Clone, Debug)]
pub struct FabricConnector {
    providers: ProviderList,
    timeout: Duration,
}

impl FabricConnector {
    /// Offer `provider` only (`"tcp"` or `"ofi:tcp"`), or with `None` every
    /// provider libfabric can use for rdio here, in its preference order.
    pub fn new(provider: Option<&str>) -> Result<Self, SetupError> {
        let names = match provider {
            Some(provider) => vec![available(provider)?],
            None => rdio_fabric::providers()?,
        };
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        Ok(Self {
            providers: provider_list(&names)?,
            timeout: rdio_fabric::DEFAULT_CONNECT_TIMEOUT,
        })
    }

    /// Bound the RDMA handshake by `timeout` instead of
    /// [`rdio_fabric::DEFAULT_CONNECT_TIMEOUT`].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl RdmaConnector for FabricConnector {
    type Transport = FabricTransport;

    fn providers(&self) -> ProviderList {
        self.providers.clone()
    }

    fn connect(
        &self,
        endpoint: SocketAddr,
        provider: &ProviderName,
    ) -> Result<FabricTransport, SetupError> {
        rdio_fabric::connect_timeout(endpoint, provider.as_str(), self.timeout)
            .map_err(|error: FabricError| error.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_names_get_the_negotiation_prefix_once() {
        assert_eq!(negotiated_name("tcp"), "ofi:tcp");
        assert_eq!(negotiated_name("ofi:tcp"), "ofi:tcp");
    }

    #[test]
    fn a_missing_provider_names_the_available_ones() {
        let error = FabricConnector::new(Some("no-such-provider")).expect_err("missing");
        let text = error.to_string();
        assert!(
            text.contains("ofi:no-such-provider is not available here") && text.contains("ofi:tcp"),
            "{text}"
        );
    }
}
