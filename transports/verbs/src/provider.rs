//! Provider names for the discovery phase's negotiation.
//!
//! Claim 1 has the client connect "over a shared RDMA-capable provider": both
//! sides list their providers and pick one they share. Two verbs devices can
//! talk to each other only if they speak the same wire protocol, which is
//! decided by the device's transport type and its port's link layer:
//!
//! | `ibv_device::transport_type` | `ibv_port_attr::link_layer` | [`RdmaKind`]  | family         |
//! |------------------------------|-----------------------------|---------------|----------------|
//! | `IBV_TRANSPORT_IB` (0)       | `INFINIBAND` (1)            | `InfiniBand`  | `verbs:ib`     |
//! | `IBV_TRANSPORT_IB` (0)       | `UNSPECIFIED` (0)           | `InfiniBand`  | `verbs:ib`     |
//! | `IBV_TRANSPORT_IB` (0)       | `ETHERNET` (2)              | `Roce`        | `verbs:roce`   |
//! | `IBV_TRANSPORT_IWARP` (1)    | any                         | `Iwarp`       | `verbs:iwarp`  |
//! | anything else (usNIC, EFA…)  | any                         | none          | unsupported    |
//!
//! (`UNSPECIFIED` on an IB transport is what kernels before link-layer
//! reporting return for InfiniBand ports.) Soft-RoCE (`rxe`) is `verbs:roce`,
//! `siw` is `verbs:iwarp`.
//!
//! The full provider name is `family:device`, e.g. `verbs:roce:rxe0` or
//! `verbs:ib:mlx5_0`. Negotiation should compare the [`RdmaKind::family`]
//! (the part before the last `:`): device names are local to each host and
//! only there for diagnostics.

use crate::raw::{
    IBV_LINK_LAYER_ETHERNET, IBV_LINK_LAYER_INFINIBAND, IBV_LINK_LAYER_UNSPECIFIED,
    IBV_TRANSPORT_IB, IBV_TRANSPORT_IWARP,
};

/// The wire protocol family of a verbs device port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RdmaKind {
    /// Native InfiniBand.
    InfiniBand,
    /// RDMA over Converged Ethernet (InfiniBand transport on an Ethernet
    /// link layer), including soft-RoCE `rxe`.
    Roce,
    /// iWARP (RDMA over TCP), including soft-iWARP `siw`.
    Iwarp,
}

impl RdmaKind {
    /// Classify a port from the raw `ibv_device::transport_type` and
    /// `ibv_port_attr::link_layer` values (see the module table). `None` for
    /// transports that cannot run RC queue pairs through rdma_cm.
    pub const fn from_raw(transport_type: i32, link_layer: u8) -> Option<Self> {
        match (transport_type, link_layer) {
            (IBV_TRANSPORT_IB, IBV_LINK_LAYER_INFINIBAND | IBV_LINK_LAYER_UNSPECIFIED) => {
                Some(Self::InfiniBand)
            }
            (IBV_TRANSPORT_IB, IBV_LINK_LAYER_ETHERNET) => Some(Self::Roce),
            (IBV_TRANSPORT_IWARP, _) => Some(Self::Iwarp),
            _ => None,
        }
    }

    /// The negotiable family name: `"verbs:ib"`, `"verbs:roce"` or `"verbs:iwarp"`.
    pub const fn family(self) -> &'static str {
        match self {
            Self::InfiniBand => "verbs:ib",
            Self::Roce => "verbs:roce",
            Self::Iwarp => "verbs:iwarp",
        }
    }
}

/// The full provider name of a device port: `family:device`, e.g.
/// `"verbs:roce:rxe0"`.
pub fn provider_name(kind: RdmaKind, device: &str) -> String {
    format!("{}:{device}", kind.family())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_values_map_to_kinds() {
        // (transport_type, link_layer) as the kernel reports them.
        let table = [
            (0, 1, Some(RdmaKind::InfiniBand)),
            (0, 0, Some(RdmaKind::InfiniBand)),
            (0, 2, Some(RdmaKind::Roce)),
            (1, 2, Some(RdmaKind::Iwarp)),
            (1, 0, Some(RdmaKind::Iwarp)),
            (0, 3, None),
            (2, 2, None),  // IBV_TRANSPORT_USNIC
            (3, 2, None),  // IBV_TRANSPORT_USNIC_UDP
            (4, 0, None),  // IBV_TRANSPORT_UNSPECIFIED (EFA)
            (-1, 1, None), // IBV_TRANSPORT_UNKNOWN
        ];
        for (transport, link, expected) in table {
            assert_eq!(
                RdmaKind::from_raw(transport, link),
                expected,
                "({transport}, {link})"
            );
        }
    }

    #[test]
    fn names_are_family_then_device() {
        assert_eq!(provider_name(RdmaKind::Roce, "rxe0"), "verbs:roce:rxe0");
        assert_eq!(
            provider_name(RdmaKind::Iwarp, "siw_eth0"),
            "verbs:iwarp:siw_eth0"
        );
        assert_eq!(
            provider_name(RdmaKind::InfiniBand, "mlx5_0"),
            "verbs:ib:mlx5_0"
        );
        let name = provider_name(RdmaKind::Roce, "rxe0");
        assert_eq!(
            name.rsplit_once(':').map(|(family, _)| family),
            Some(RdmaKind::Roce.family())
        );
    }
}
