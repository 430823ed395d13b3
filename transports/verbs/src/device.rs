//! Device discovery: what `rdio ... --transport verbs` checks first.

use core::fmt;

use crate::error::VerbsError;
use crate::provider::{RdmaKind, provider_name};

/// One RDMA device of this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Kernel device name, e.g. `rxe0`, `siw_eth0`, `mlx5_0`.
    pub name: String,
    /// Node GUID (host byte order).
    pub guid: u64,
    /// Raw `ibv_device::transport_type`.
    pub transport_type: i32,
    /// The device's ports, numbered from 1.
    pub ports: Vec<PortInfo>,
}

/// One port of a [`DeviceInfo`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortInfo {
    /// Port number (1-based, as verbs counts).
    pub number: u8,
    /// Raw `ibv_port_attr::link_layer`.
    pub link_layer: u8,
    /// The wire family, `None` if the port cannot run RC over rdma_cm.
    pub kind: Option<RdmaKind>,
    /// Whether the port is `IBV_PORT_ACTIVE` (link up, usable).
    pub active: bool,
    /// Largest message the port carries (`max_msg_sz`).
    pub max_message: u32,
}

impl DeviceInfo {
    /// The provider name of one of this device's ports, e.g.
    /// `"verbs:roce:rxe0"` (see [`crate::provider`]).
    pub fn provider(&self, port: &PortInfo) -> Option<String> {
        port.kind.map(|kind| provider_name(kind, &self.name))
    }
}

impl fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (guid {:016x})", self.name, self.guid)?;
        for port in &self.ports {
            let state = if port.active { "active" } else { "down" };
            match self.provider(port) {
                Some(provider) => write!(f, "; port {} {provider} {state}", port.number)?,
                None => write!(
                    f,
                    "; port {} unsupported transport {} link layer {} {state}",
                    port.number, self.transport_type, port.link_layer
                )?,
            }
        }
        Ok(())
    }
}

/// List this host's RDMA devices and ports.
///
/// An empty device list, or a kernel without RDMA support (`ENOSYS`), is
/// [`VerbsError::NoRdmaDevices`], whose message tells how to create a
/// software device.
#[cfg(feature = "verbs")]
pub fn probe() -> Result<Vec<DeviceInfo>, VerbsError> {
    use crate::sys::DeviceList;

    const IBV_PORT_ACTIVE: u32 = rdma_sys::ibv_port_state::IBV_PORT_ACTIVE;

    let list = DeviceList::get()?;
    list.devices()
        .map(|device| {
            let open = device.open()?;
            let context = open.context();
            let transport_type = context.transport_type();
            let port_count = context.query_device()?.phys_port_cnt;
            let ports = (1..=port_count)
                .map(|number| {
                    let attr = context.query_port(number)?;
                    Ok(PortInfo {
                        number,
                        link_layer: attr.link_layer,
                        kind: RdmaKind::from_raw(transport_type, attr.link_layer),
                        active: attr.state == IBV_PORT_ACTIVE,
                        max_message: attr.max_msg_sz,
                    })
                })
                .collect::<Result<_, VerbsError>>()?;
            Ok(DeviceInfo {
                name: device.name(),
                guid: device.guid(),
                transport_type,
                ports,
            })
        })
        .collect()
}

/// List this host's RDMA devices: always [`VerbsError::FeatureDisabled`] in
/// a build without the `verbs` feature, so callers need no `cfg` of their
/// own to print why verbs is unavailable.
#[cfg(not(feature = "verbs"))]
pub fn probe() -> Result<Vec<DeviceInfo>, VerbsError> {
    Err(VerbsError::FeatureDisabled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rxe() -> DeviceInfo {
        DeviceInfo {
            name: "rxe0".into(),
            guid: 0x0250_56ff_fe8a_0001,
            transport_type: 0,
            ports: vec![PortInfo {
                number: 1,
                link_layer: 2,
                kind: RdmaKind::from_raw(0, 2),
                active: true,
                max_message: 1 << 23,
            }],
        }
    }

    #[test]
    fn display_lists_ports_with_provider_names() {
        assert_eq!(
            rxe().to_string(),
            "rxe0 (guid 025056fffe8a0001); port 1 verbs:roce:rxe0 active"
        );
        let mut usnic = rxe();
        usnic.transport_type = 2;
        usnic.ports[0].kind = RdmaKind::from_raw(2, 2);
        usnic.ports[0].active = false;
        assert!(
            usnic
                .to_string()
                .ends_with("port 1 unsupported transport 2 link layer 2 down"),
            "{usnic}"
        );
    }

    #[cfg(not(feature = "verbs"))]
    #[test]
    fn probe_without_the_feature_says_so() {
        assert_eq!(probe(), Err(VerbsError::FeatureDisabled));
    }

    /// A real `ibv_get_device_list` call. This project's machines have no
    /// RDMA in the kernel (`CONFIG_INFINIBAND` unset): there it must be the
    /// typed `NoRdmaDevices` error with `ENOSYS`, never a crash.
    #[cfg(feature = "verbs")]
    #[test]
    fn probe_on_this_host() {
        let kernel_has_rdma = std::path::Path::new("/sys/class/infiniband").exists();
        match probe() {
            Err(error) if !kernel_has_rdma => {
                assert_eq!(
                    error,
                    VerbsError::NoRdmaDevices {
                        errno: Some(libc::ENOSYS)
                    }
                );
                let message = error.to_string();
                assert!(
                    message.contains("rdma link add rxe0 type rxe netdev IFACE"),
                    "{message}"
                );
                assert!(message.contains("ibv_devices"), "{message}");
            }
            Err(error) => assert!(
                matches!(error, VerbsError::NoRdmaDevices { errno: None }),
                "{error}"
            ),
            Ok(devices) => {
                assert!(kernel_has_rdma);
                assert!(
                    devices
                        .iter()
                        .all(|device| !device.name.is_empty() && !device.ports.is_empty())
                );
            }
        }
    }

    /// With `RDIO_VERBS_DEVICE=rxe0` (say), that device must be listed with a
    /// supported, active port.
    #[cfg(feature = "verbs")]
    #[test]
    #[ignore = "needs an RDMA device: set RDIO_VERBS_DEVICE (see docs/VERBS.md)"]
    fn probe_finds_the_configured_device() {
        let name = std::env::var("RDIO_VERBS_DEVICE")
            .expect("set RDIO_VERBS_DEVICE to a device from `ibv_devices`");
        let devices = probe().expect("probe");
        let device = devices
            .iter()
            .find(|device| device.name == name)
            .expect("device listed");
        let port = device
            .ports
            .iter()
            .find(|port| port.active)
            .expect("an active port");
        let provider = device.provider(port).expect("a supported transport");
        assert!(
            provider.starts_with("verbs:") && provider.ends_with(&name),
            "{provider}"
        );
        assert!(port.max_message > 0);
    }
}
