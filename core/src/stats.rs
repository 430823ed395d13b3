//! Counters a state machine keeps about its connection, after quinn-proto's
//! `ConnectionStats`: plain numbers the driver copies out
//! ([`Client::stats`](crate::client::Client::stats),
//! [`Connection::stats`](crate::server::Connection::stats)) and exports.
//!
//! They observe the state machine; they are not part of its state. Two
//! machines that differ only in their counters behave alike, so
//! [`ConnectionStats`] compares equal to any other and hashes to nothing:
//! the model checker (`modelcheck/`), which hashes whole machines, sees the
//! same finite state space with them as without.

use core::hash::{Hash, Hasher};

/// One connection's credit and liveness counters. Every count saturates.
#[derive(Clone, Copy, Debug, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ConnectionStats {
    /// Credits granted by the server's credit requests (client: as the
    /// request arrives; server: as the client acknowledges it).
    pub credits_granted: u64,
    /// Credits revoked (client: as the revoke arrives; server: one per
    /// `CreditGiveUp` received).
    pub credits_revoked: u64,
    /// Client: requests that reached the head of the send queue and found
    /// no credit available, so waited for one (counted once per request).
    /// Always 0 on the server.
    pub credit_waits: u64,
    /// Client: keepalives sent on an idle connection. Server: keepalives
    /// received.
    pub keepalives: u64,
    /// Keepalives answered (client: responses received; server: responses
    /// queued).
    pub keepalives_answered: u64,
    /// Read batches (client: `ReadBatch` messages sent; server: received),
    /// each carrying two or more reads.
    pub read_batches: u64,
    /// Client: the request last counted in `credit_waits`, so a request
    /// waiting through many polls counts once.
    waiting_request: Option<u32>,
}

impl ConnectionStats {
    /// Add `n` to `counter`, saturating.
    pub(crate) fn add(counter: &mut u64, n: u64) {
        *counter = counter.saturating_add(n);
    }

    /// Request `request` is at the head of the send queue and no credit is
    /// available: count it, once.
    pub(crate) fn credit_wait(&mut self, request: u32) {
        if self.waiting_request != Some(request) {
            self.waiting_request = Some(request);
            Self::add(&mut self.credit_waits, 1);
        }
    }
}

impl PartialEq for ConnectionStats {
    /// Counters are not state: see the module docs.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for ConnectionStats {}

impl Hash for ConnectionStats {
    /// Counters are not state: see the module docs.
    fn hash<H: Hasher>(&self, _: &mut H) {}
}
