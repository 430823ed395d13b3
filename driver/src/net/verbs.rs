//! The RDMA channel over ibverbs ([`rdio_verbs`]): InfiniBand, RoCE and
//! iWARP devices, including soft-RoCE `rxe` and soft-iWARP `siw`.
//!
//! Negotiation compares the wire family (`verbs:roce`, `verbs:ib`,
//! `verbs:iwarp`), not the device: device names are local to each host
//! (`rxe0` here may talk to `mlx5_1` there), as the `rdio_verbs::provider`
//! docs say. [`FamilyTransport`] is the verbs transport under its family
//! name, so the client's check that the connected transport is the
//! negotiated provider holds.
//!
//! On a host without RDMA devices both [`VerbsRdmaListener::bind`] and
//! [`VerbsConnector::new`] fail at once with
//! [`rdio_verbs::VerbsError::NoRdmaDevices`], whose message says how to
//! create a software device.

use super::{RdmaConnector, RdmaListener, SetupError, provider_list};
use rdio_core::wire::{ProviderList, ProviderName};
use rdio_transport::{Transport, TransportWrapper};
use rdio_verbs::{VerbsConfig, VerbsError, VerbsListener, VerbsTransport};
use std::net::SocketAddr;
use std::time::Duration;

/// The families of this host's active ports, most capable first as the
/// devices are listed.
fn local_families() -> Result<ProviderList, SetupError> {
    let devices = rdio_verbs::probe()?;
    let families: Vec<&str> = devices
        .iter()
        .flat_map(|device| device.ports.iter())
        .filter(|port| port.active)
        .filter_map(|port| port.kind.map(|kind| kind.family()))
        .collect();
    if families.is_empty() {
        return Err("no active port on any RDMA device (check `ibv_devinfo`)".into());
    }
    provider_list(&families)
}

/// The family part of a full verbs provider name: `verbs:roce:rxe0` →
/// `verbs:roce`.
fn family_of(provider: &str) -> &str {
    provider
        .rsplit_once(':')
        .map_or(provider, |(family, _)| family)
}

/// A [`VerbsTransport`] that reports its provider family, the name used in
/// negotiation; everything else is the verbs transport's.
pub struct FamilyTransport {
    inner: VerbsTransport,
    family: String,
}

impl FamilyTransport {
    fn new(inner: VerbsTransport) -> Self {
        let family = family_of(inner.provider()).to_owned();
        Self { inner, family }
    }

    /// The full provider name, with the device (`verbs:roce:rxe0`).
    pub fn device_provider(&self) -> &str {
        self.inner.provider()
    }
}

/// Everything but the provider name is the verbs transport's, forwarded
/// ([`TransportWrapper`]), `register_external` (zero-copy reads) included.
impl TransportWrapper for FamilyTransport {
    type Inner = VerbsTransport;

    fn inner(&self) -> &VerbsTransport {
        &self.inner
    }

    fn inner_mut(&mut self) -> &mut VerbsTransport {
        &mut self.inner
    }

    fn provider(&self) -> &str {
        &self.family
    }
}

/// An rdma_cm listener accepting rdio connections on an RDMA device's IP
/// address.
pub struct VerbsRdmaListener {
    listener: VerbsListener,
    addr: SocketAddr,
    providers: ProviderList,
}

impl VerbsRdmaListener {
    /// Listen on `addr` (an IP address of an RDMA device's netdev; port 0
    /// picks one), accepting connections configured by `config`.
    pub fn bind(addr: SocketAddr, config: &VerbsConfig) -> Result<Self, SetupError> {
        let providers = local_families()?;
        let listener = VerbsListener::bind(addr, config)?;
        let addr = listener.local_addr().unwrap_or(addr);
        Ok(Self {
            listener,
            addr,
            providers,
        })
    }
}

impl RdmaListener for VerbsRdmaListener {
    type Transport = FamilyTransport;

    fn providers(&self) -> ProviderList {
        self.providers.clone()
    }

    fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    fn accept(&self, timeout: Duration) -> Result<Option<FamilyTransport>, SetupError> {
        match self.listener.accept(Some(timeout)) {
            Ok(transport) => Ok(Some(FamilyTransport::new(transport))),
            // Only the wait for a request is bounded by `timeout`; the
            // handshake after it by the config's own timeout.
            Err(VerbsError::Timeout {
                phase: "waiting for a connection request",
            }) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }
}

/// Connects RC queue pairs with rdma_cm, offering the families of this
/// host's active ports.
#[derive(Clone, Debug)]
pub struct VerbsConnector {
    config: VerbsConfig,
    providers: ProviderList,
}

impl VerbsConnector {
    /// Fails at once, with [`VerbsError::NoRdmaDevices`] and its hint, on a
    /// host without RDMA devices.
    pub fn new(config: VerbsConfig) -> Result<Self, SetupError> {
        Ok(Self {
            providers: local_families()?,
            config,
        })
    }
}

impl RdmaConnector for VerbsConnector {
    type Transport = FamilyTransport;

    fn providers(&self) -> ProviderList {
        self.providers.clone()
    }

    /// rdma_cm picks the device from the route to `endpoint`; if it is of
    /// another family than `provider`, the client reports the mismatch.
    fn connect(
        &self,
        endpoint: SocketAddr,
        _provider: &ProviderName,
    ) -> Result<FamilyTransport, SetupError> {
        Ok(FamilyTransport::new(VerbsTransport::connect(
            endpoint,
            &self.config,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_drop_the_device() {
        assert_eq!(family_of("verbs:roce:rxe0"), "verbs:roce");
        assert_eq!(family_of("verbs:ib:mlx5_0"), "verbs:ib");
    }

    /// What this machine (no RDMA in the kernel) and any host without
    /// devices gets: the typed error with its hint, from both halves. With
    /// active devices, both halves set up.
    #[test]
    fn no_devices_is_the_clear_error() {
        let config = VerbsConfig::default();
        let connector = VerbsConnector::new(config);
        let listener = VerbsRdmaListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)), &config);
        match rdio_verbs::probe() {
            Err(VerbsError::NoRdmaDevices { .. }) => {
                for error in [connector.map(drop), listener.map(drop)] {
                    let error = error.expect_err("no devices");
                    assert!(
                        matches!(
                            error.downcast_ref::<VerbsError>(),
                            Some(VerbsError::NoRdmaDevices { .. })
                        ),
                        "{error}"
                    );
                    assert!(error.to_string().starts_with("no RDMA devices"), "{error}");
                }
            }
            probed => {
                let devices = probed.expect("probe");
                assert!(!devices.is_empty());
                assert!(!connector.expect("devices present").providers().is_empty());
            }
        }
    }
}
