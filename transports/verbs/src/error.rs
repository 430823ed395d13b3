//! Errors of device discovery and connection setup.
//!
//! Once a connection is up, failures are the transport trait's
//! [`rdio_transport::TransportError`] (synchronous) and
//! [`rdio_transport::WcError`] (in completions); [`VerbsError`] covers what
//! happens before: finding a device and establishing the RC connection the
//! patent's discovery phase asks for ("create, by the client, an RDMA
//! connection to the server over a shared RDMA-capable provider", claim 1).

use core::fmt;
use std::io;

use crate::raw::cm_event_name;

/// The hint printed with [`VerbsError::NoRdmaDevices`]: how to get a software
/// RDMA device on a machine without an RDMA NIC.
pub const NO_DEVICES_HINT: &str =
    "load rdma_rxe or siw (`rdma link add rxe0 type rxe netdev IFACE`), check `ibv_devices`";

/// Why the verbs transport could not find a device or set up a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerbsError {
    /// No usable RDMA device. `errno` is what `ibv_get_device_list` (or
    /// `rdma_create_event_channel`) failed with, e.g. `ENOSYS` when the
    /// kernel has no RDMA support at all; `None` when the list was empty.
    NoRdmaDevices {
        /// The OS error of the failed call, if any.
        errno: Option<i32>,
    },
    /// rdio was built without the `verbs` cargo feature, so libibverbs is not
    /// linked.
    FeatureDisabled,
    /// A verbs or rdma_cm call failed with an OS error.
    Os {
        /// The library function that failed.
        call: &'static str,
        /// Its `errno`.
        errno: i32,
    },
    /// The device's transport cannot run reliable-connected queue pairs
    /// through rdma_cm (usNIC, EFA, ...). Raw `ibv_transport_type` and
    /// `ibv_port_attr::link_layer` values.
    UnsupportedTransport {
        /// `ibv_device::transport_type`.
        transport_type: i32,
        /// `ibv_port_attr::link_layer`.
        link_layer: u8,
    },
    /// rdma_cm reported a failure (address or route error, rejection,
    /// unreachable peer, ...) or an event the handshake does not expect.
    Cm {
        /// The handshake step, e.g. `"resolving the address"`.
        phase: &'static str,
        /// Raw `rdma_cm_event_type`.
        event: u32,
        /// The event's status (a negative errno, or the reject reason).
        status: i32,
    },
    /// A handshake step did not finish within the configured timeout.
    Timeout {
        /// The handshake step that timed out.
        phase: &'static str,
    },
    /// A `VerbsConfig` field is out of range.
    InvalidConfig {
        /// The field and its allowed range.
        field: &'static str,
    },
}

impl VerbsError {
    /// `Os` from the calling thread's current `errno`.
    #[cfg(feature = "verbs")]
    pub(crate) fn last_os(call: &'static str) -> Self {
        Self::Os {
            call,
            errno: last_errno(),
        }
    }
}

/// The calling thread's `errno` (0 if the OS reported none).
#[cfg(feature = "verbs")]
pub(crate) fn last_errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

impl fmt::Display for VerbsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NoRdmaDevices { errno: None } => write!(f, "no RDMA devices: {NO_DEVICES_HINT}"),
            Self::NoRdmaDevices { errno: Some(errno) } => write!(
                f,
                "no RDMA devices: {NO_DEVICES_HINT} ({})",
                io::Error::from_raw_os_error(errno)
            ),
            Self::FeatureDisabled => f.write_str(
                "RDMA verbs support not compiled in: rebuild with `--features verbs` \
                 (needs libibverbs-dev, librdmacm-dev, libclang-dev, pkg-config)",
            ),
            Self::Os { call, errno } => {
                write!(f, "{call} failed: {}", io::Error::from_raw_os_error(errno))
            }
            Self::UnsupportedTransport {
                transport_type,
                link_layer,
            } => write!(
                f,
                "RDMA device transport {transport_type} (link layer {link_layer}) cannot run \
                 reliable-connected queue pairs; use an InfiniBand, RoCE or iWARP device"
            ),
            Self::Cm {
                phase,
                event,
                status,
            } => {
                write!(
                    f,
                    "rdma_cm: {} while {phase} (status {status})",
                    cm_event_name(event)
                )
            }
            Self::Timeout { phase } => write!(f, "timed out while {phase}"),
            Self::InvalidConfig { field } => write!(f, "invalid verbs configuration: {field}"),
        }
    }
}

impl std::error::Error for VerbsError {}

#[cfg(test)]
mod tests {
    use super::*;

    const ENOSYS: i32 = 38;

    #[test]
    fn no_devices_message_carries_the_hint_and_the_cause() {
        let empty = VerbsError::NoRdmaDevices { errno: None }.to_string();
        assert_eq!(
            empty,
            "no RDMA devices: load rdma_rxe or siw (`rdma link add rxe0 type rxe netdev IFACE`), \
             check `ibv_devices`"
        );
        let enosys = VerbsError::NoRdmaDevices {
            errno: Some(ENOSYS),
        }
        .to_string();
        assert!(enosys.starts_with(&empty), "{enosys}");
        assert!(enosys.contains("os error 38"), "{enosys}");
    }

    #[test]
    fn cm_errors_name_the_event_and_phase() {
        let rejected = VerbsError::Cm {
            phase: "connecting",
            event: 8,
            status: 28,
        };
        assert_eq!(
            rejected.to_string(),
            "rdma_cm: RDMA_CM_EVENT_REJECTED while connecting (status 28)"
        );
        let unknown = VerbsError::Cm {
            phase: "accepting",
            event: 1000,
            status: -5,
        };
        assert_eq!(
            unknown.to_string(),
            "rdma_cm: RDMA_CM_EVENT_UNKNOWN while accepting (status -5)"
        );
    }

    #[test]
    fn os_and_other_errors_render() {
        let os = VerbsError::Os {
            call: "ibv_alloc_pd",
            errno: 12,
        };
        assert!(os.to_string().starts_with("ibv_alloc_pd failed: "), "{os}");
        assert!(
            VerbsError::FeatureDisabled
                .to_string()
                .contains("--features verbs")
        );
        assert_eq!(
            VerbsError::Timeout {
                phase: "resolving the route"
            }
            .to_string(),
            "timed out while resolving the route"
        );
        let config = VerbsError::InvalidConfig {
            field: "send_depth must be at least 1",
        };
        assert_eq!(
            config.to_string(),
            "invalid verbs configuration: send_depth must be at least 1"
        );
        let usnic = VerbsError::UnsupportedTransport {
            transport_type: 3,
            link_layer: 2,
        };
        assert!(usnic.to_string().contains("transport 3"), "{usnic}");
    }
}
