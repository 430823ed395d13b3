//! Counters a server and a client keep about their work, after
//! quinn-proto's `ConnectionStats`: plain numbers, updated on the hot path
//! without allocation or locks.
//!
//! * [`ServerStats`]: shared by every connection of a [`Server`]
//!   (atomics, `Relaxed`: one add per event); [`ServerStats::snapshot`]
//!   reads them at once for a scrape (`rdio serve --metrics`).
//! * [`ClientStats`]: one client's, plain fields it owns, read with
//!   [`Client::stats`](crate::client::Client::stats) (`--stats`).
//!
//! [`Server`]: crate::server::Server

use rdio_core::error::Violation;
use rdio_core::wire::Status;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Status codes counted one by one; larger codes count as the last.
pub const STATUS_SLOTS: usize = 64;

/// Why connections ended, as the metrics name them.
pub const END_REASONS: [&str; 7] = [
    "shutdown",
    "peer_terminated",
    "timed_out",
    "auth_failed",
    "protocol_violation",
    "lost",
    "transport_error",
];

/// The [`END_REASONS`] index of a protocol termination.
pub fn end_reason(violation: &Violation) -> usize {
    match violation {
        Violation::PeerTerminated(Status::Shutdown) => 0,
        Violation::PeerTerminated(_) => 1,
        Violation::TimedOut => 2,
        Violation::AuthFailed => 3,
        _ => 4,
    }
}

/// The slot of a status code in the per-status arrays.
fn status_slot(status: Status) -> usize {
    (status.as_u32() as usize).min(STATUS_SLOTS - 1)
}

/// A server's counters over all its connections.
#[derive(Debug)]
pub struct ServerStats {
    pub(crate) connections: AtomicU64,
    pub(crate) active: AtomicU64,
    pub(crate) registrations: AtomicU64,
    pub(crate) closes: AtomicU64,
    pub(crate) auth_failures: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) bytes_read: AtomicU64,
    pub(crate) bytes_written: AtomicU64,
    pub(crate) completions: [AtomicU64; STATUS_SLOTS],
    pub(crate) ends: [AtomicU64; END_REASONS.len()],
}

impl Default for ServerStats {
    fn default() -> Self {
        Self {
            connections: AtomicU64::new(0),
            active: AtomicU64::new(0),
            registrations: AtomicU64::new(0),
            closes: AtomicU64::new(0),
            auth_failures: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            completions: std::array::from_fn(|_| AtomicU64::new(0)),
            ends: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// [`ServerStats`] read at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerSnapshot {
    /// RDMA connections accepted since the start.
    pub connections: u64,
    /// RDMA connections being served now.
    pub active: u64,
    /// Files registered (claims 10, 11).
    pub registrations: u64,
    /// Registered files closed.
    pub closes: u64,
    /// Authentication keys refused.
    pub auth_failures: u64,
    /// Read and vectored-read requests served (`zero_copy` + `copied`).
    pub reads: u64,
    /// Of them, RDMA-written straight from a leased file mapping.
    pub zero_copy_reads: u64,
    /// Of them, copied into a bounce buffer first.
    pub copied_reads: u64,
    /// Write requests and fragments placed in files.
    pub writes: u64,
    /// Bytes read from files for clients.
    pub bytes_read: u64,
    /// Bytes written to files for clients.
    pub bytes_written: u64,
    /// Requests completed by status block, by status code (index).
    pub completions: Vec<u64>,
    /// Connections ended, by [`END_REASONS`] index.
    pub ends: Vec<u64>,
}

impl ServerStats {
    pub(crate) fn completed(&self, status: Status) {
        self.completions[status_slot(status)].fetch_add(1, Relaxed);
    }

    pub(crate) fn ended(&self, reason: usize) {
        if let Some(counter) = self.ends.get(reason) {
            counter.fetch_add(1, Relaxed);
        }
        // Saturating: a connection ends once, after it was counted active.
        let _ = self
            .active
            .fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(1)));
    }

    /// Read every counter (`zero_copy`/`copied` come from the server's
    /// read counts).
    pub fn snapshot(&self, zero_copy_reads: u64, copied_reads: u64) -> ServerSnapshot {
        ServerSnapshot {
            connections: self.connections.load(Relaxed),
            active: self.active.load(Relaxed),
            registrations: self.registrations.load(Relaxed),
            closes: self.closes.load(Relaxed),
            auth_failures: self.auth_failures.load(Relaxed),
            reads: zero_copy_reads + copied_reads,
            zero_copy_reads,
            copied_reads,
            writes: self.writes.load(Relaxed),
            bytes_read: self.bytes_read.load(Relaxed),
            bytes_written: self.bytes_written.load(Relaxed),
            completions: self.completions.iter().map(|c| c.load(Relaxed)).collect(),
            ends: self.ends.iter().map(|c| c.load(Relaxed)).collect(),
        }
    }
}

/// Request kinds a client counts.
pub const REQUEST_KINDS: [&str; 6] = ["read", "readv", "write", "writev", "register", "close"];

/// Request size classes of the latency histograms: up to 4 KiB, 64 KiB,
/// 1 MiB, and larger.
pub const SIZE_CLASSES: [&str; 4] = ["4KiB", "64KiB", "1MiB", "larger"];

/// Latency buckets: bucket `i` counts latencies below `2^i` µs (the last
/// one everything slower, from about 1 s).
pub const LATENCY_BUCKETS: usize = 21;

/// The size class of a request of `len` bytes.
pub fn size_class(len: u64) -> usize {
    match len {
        0..=4096 => 0,
        4097..=65_536 => 1,
        65_537..=1_048_576 => 2,
        _ => 3,
    }
}

/// A fixed log2 histogram of latencies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Histogram {
    /// Count per bucket: bucket `i` holds latencies in `[2^(i-1), 2^i)` µs
    /// (bucket 0 below 1 µs), the last one everything from there up.
    pub buckets: [u64; LATENCY_BUCKETS],
    /// Latencies recorded.
    pub count: u64,
    /// Their sum in microseconds.
    pub sum_micros: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: [0; LATENCY_BUCKETS],
            count: 0,
            sum_micros: 0,
        }
    }
}

impl Histogram {
    /// Record one latency.
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let bucket = (u64::BITS - micros.leading_zeros()) as usize;
        self.buckets[bucket.min(LATENCY_BUCKETS - 1)] += 1;
        self.count += 1;
        self.sum_micros = self.sum_micros.saturating_add(micros);
    }

    /// The upper bound of bucket `i` in microseconds (`None`: unbounded).
    pub fn bound_micros(i: usize) -> Option<u64> {
        (i + 1 < LATENCY_BUCKETS).then(|| 1u64 << i)
    }

    /// The smallest bucket bound below which at least `quantile` of the
    /// latencies fall, in microseconds (`None` when empty or in the last
    /// bucket).
    pub fn quantile_bound(&self, quantile: f64) -> Option<u64> {
        let wanted = (self.count as f64 * quantile).ceil() as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= wanted.max(1) {
                return Self::bound_micros(i);
            }
        }
        None
    }
}

/// One client's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Requests submitted, by [`REQUEST_KINDS`] index.
    pub requests: [u64; REQUEST_KINDS.len()],
    /// Requests completed, by status code (index; larger codes in the last).
    pub completions: Vec<u64>,
    /// Bytes read (successful reads).
    pub bytes_read: u64,
    /// Bytes written (successful writes).
    pub bytes_written: u64,
    /// Reads and writes in flight now.
    pub in_flight: u64,
    /// The most in flight at once.
    pub max_in_flight: u64,
    /// Work requests that failed (the RDMA connection was lost).
    pub transport_errors: u64,
    /// Submit-to-completion latency of reads and writes, by
    /// [`SIZE_CLASSES`] index.
    pub latency: [Histogram; SIZE_CLASSES.len()],
}

impl ClientStats {
    pub(crate) fn new() -> Self {
        Self {
            completions: vec![0; STATUS_SLOTS],
            ..Self::default()
        }
    }

    pub(crate) fn completed(&mut self, status: Status) {
        if let Some(slot) = self.completions.get_mut(status_slot(status)) {
            *slot += 1;
        }
    }

    /// Requests completed with `status`.
    pub fn completed_with(&self, status: Status) -> u64 {
        self.completions
            .get(status_slot(status))
            .copied()
            .unwrap_or(0)
    }

    /// Credits granted to, revoked from and held by the client are the
    /// core's to tell: see [`Client::credits`](crate::client::Client::credits).
    pub fn requests_of(&self, kind: &str) -> u64 {
        REQUEST_KINDS
            .iter()
            .position(|k| *k == kind)
            .map_or(0, |i| self.requests[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_powers_of_two_microseconds() {
        let mut histogram = Histogram::default();
        histogram.record(Duration::from_nanos(500));
        histogram.record(Duration::from_micros(1));
        histogram.record(Duration::from_micros(3));
        histogram.record(Duration::from_micros(1000));
        histogram.record(Duration::from_secs(3600));
        assert_eq!(histogram.buckets[0], 1, "below 1 µs");
        assert_eq!(histogram.buckets[1], 1, "[1, 2) µs");
        assert_eq!(histogram.buckets[2], 1, "[2, 4) µs");
        assert_eq!(histogram.buckets[10], 1, "[512, 1024) µs");
        assert_eq!(histogram.buckets[LATENCY_BUCKETS - 1], 1, "the rest");
        assert_eq!(histogram.count, 5);
        assert_eq!(histogram.quantile_bound(0.5), Some(4));
        assert_eq!(histogram.quantile_bound(1.0), None);
        assert_eq!(Histogram::bound_micros(3), Some(8));
    }

    #[test]
    fn size_classes_split_at_4k_64k_1m() {
        assert_eq!(size_class(4096), 0);
        assert_eq!(size_class(4097), 1);
        assert_eq!(size_class(65_536), 1);
        assert_eq!(size_class(1 << 20), 2);
        assert_eq!(size_class((1 << 20) + 1), 3);
    }
}
