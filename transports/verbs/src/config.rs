//! Connection parameters.

use core::time::Duration;

use crate::error::VerbsError;
use crate::posted::SGE_LIMIT;

/// Queue sizes, inline threshold, retry policy and handshake timeout of a
/// verbs connection. Depths larger than the device allows are lowered to the
/// device's limits; [`rdio_transport::Transport::caps`] reports what was
/// granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerbsConfig {
    /// Send-queue depth: sends and RDMA writes in flight.
    pub send_depth: u32,
    /// Receive-queue depth: posted receives.
    pub recv_depth: u32,
    /// Scatter/gather elements per work request, 1..=8.
    pub max_sge: u32,
    /// Sends and writes of at most this many bytes are posted
    /// `IBV_SEND_INLINE` (copied into the work request, saving the HCA a DMA
    /// read). The device may grant less; 0 disables inline data.
    pub max_inline: u32,
    /// Bound on each handshake (address and route resolution, connect,
    /// accept after a request arrived).
    pub timeout: Duration,
    /// Transport retries on lost packets before the connection fails with
    /// `WcError::Disconnected`, 0..=7.
    pub retry_count: u8,
    /// Receiver-not-ready retries, 0..=7 where 7 means "retry forever" (IB
    /// spec). The default is 7: a transport is handed to the driver already
    /// connected, so the peer's first send can race this side's first
    /// `post_recv`; waiting is right then. Credit accounting (claim 1)
    /// guarantees a receive is posted for every later message, so a lower
    /// value only turns a credit bug into `WcError::ReceiverNotReady`
    /// sooner.
    pub rnr_retry_count: u8,
    /// `rdma_listen` backlog of a [`crate::VerbsListener`].
    pub backlog: i32,
}

impl Default for VerbsConfig {
    fn default() -> Self {
        Self {
            send_depth: 64,
            recv_depth: 64,
            max_sge: 4,
            max_inline: 64,
            timeout: Duration::from_secs(5),
            retry_count: 7,
            rnr_retry_count: 7,
            backlog: 16,
        }
    }
}

impl VerbsConfig {
    /// Reject values verbs cannot express.
    pub(crate) fn validate(&self) -> Result<(), VerbsError> {
        let checks = [
            (self.send_depth >= 1, "send_depth must be at least 1"),
            (self.recv_depth >= 1, "recv_depth must be at least 1"),
            (
                self.send_depth
                    .checked_add(self.recv_depth)
                    .is_some_and(|sum| sum <= i32::MAX as u32),
                "send_depth + recv_depth must fit a CQ",
            ),
            (
                (1..=SGE_LIMIT as u32).contains(&self.max_sge),
                "max_sge must be 1..=8",
            ),
            (self.retry_count <= 7, "retry_count must be 0..=7"),
            (self.rnr_retry_count <= 7, "rnr_retry_count must be 0..=7"),
            (self.backlog >= 1, "backlog must be at least 1"),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, field)) => Err(VerbsError::InvalidConfig { field }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        assert_eq!(VerbsConfig::default().validate(), Ok(()));
    }

    #[test]
    fn out_of_range_fields_are_named() {
        let base = VerbsConfig::default();
        let cases = [
            (
                VerbsConfig {
                    send_depth: 0,
                    ..base
                },
                "send_depth must be at least 1",
            ),
            (
                VerbsConfig {
                    recv_depth: 0,
                    ..base
                },
                "recv_depth must be at least 1",
            ),
            (
                VerbsConfig {
                    send_depth: u32::MAX,
                    ..base
                },
                "send_depth + recv_depth must fit a CQ",
            ),
            (VerbsConfig { max_sge: 0, ..base }, "max_sge must be 1..=8"),
            (VerbsConfig { max_sge: 9, ..base }, "max_sge must be 1..=8"),
            (
                VerbsConfig {
                    retry_count: 8,
                    ..base
                },
                "retry_count must be 0..=7",
            ),
            (
                VerbsConfig {
                    rnr_retry_count: 8,
                    ..base
                },
                "rnr_retry_count must be 0..=7",
            ),
            (
                VerbsConfig { backlog: 0, ..base },
                "backlog must be at least 1",
            ),
        ];
        for (config, field) in cases {
            assert_eq!(config.validate(), Err(VerbsError::InvalidConfig { field }));
        }
    }
}
