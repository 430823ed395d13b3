//! Counters a server and a client keep about their work, after
//! quinn-proto's `ConnectionStats`: plain numbers, updated on the hot path
//! without allocation or locks.
//!
//! * [`ConnectionCell`]: one server connection's counters and latency
//!   histograms. Only that connection's thread writes them (a load and a
//!   store per event, `Relaxed`: no locked read-modify-write, no cache line
//!   shared with another connection); a scrape reads them from another
//!   thread. Allocated once, when the connection is accepted.
//! * [`ServerStats`]: the server's cells. A scrape ([`ServerStats::snapshot`])
//!   sums the live cells and the totals folded in from connections that
//!   ended (`ServerStats::retire`, when a connection is released), so the
//!   totals never go backwards; the first [`LABELLED_CONNECTIONS`] live
//!   connections are also reported one by one. Connection-level events
//!   (accepted, ended and why, authentication refused) are server-wide
//!   atomics: once per connection, not per I/O.
//! * [`ClientStats`]: one client's, plain fields it owns, read with
//!   [`Client::stats`](crate::client::Client::stats) (`--stats`).

use rdio_core::error::Violation;
use rdio_core::stats::ConnectionStats;
use rdio_core::wire::Status;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Status codes counted one by one; larger codes count as the last.
pub const STATUS_SLOTS: usize = 64;

/// Live connections a scrape reports one by one (with a `connection`
/// label); the rest count in the totals only, so a server with thousands of
/// clients does not export thousands of series.
pub const LABELLED_CONNECTIONS: usize = 32;

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

/// Protocol violations by kind, as the metrics name them (the
/// [`Violation`] variants that end a connection as `protocol_violation`).
pub const VIOLATION_KINDS: [&str; 14] = [
    "malformed",
    "wrong_direction",
    "unexpected_message",
    "credit_overrun",
    "credit_mismatch",
    "credit_sequence",
    "credit_range",
    "unknown_request",
    "duplicate_request",
    "fragment_out_of_order",
    "bad_descriptor",
    "too_large",
    "capacity",
    "other",
];

/// The [`VIOLATION_KINDS`] index of a violation; `None` for the ends that
/// are not violations (the peer's terminate, a timeout, a refused key).
pub fn violation_kind(violation: &Violation) -> Option<usize> {
    Some(match violation {
        Violation::PeerTerminated(_) | Violation::TimedOut | Violation::AuthFailed => {
            return None;
        }
        Violation::Malformed(_) => 0,
        Violation::WrongDirection(_) => 1,
        Violation::UnexpectedMessage(_) => 2,
        Violation::CreditOverrun => 3,
        Violation::CreditMismatch { .. } => 4,
        Violation::CreditSequence => 5,
        Violation::CreditRange => 6,
        Violation::UnknownRequest(_) => 7,
        Violation::DuplicateRequest(_) => 8,
        Violation::FragmentOutOfOrder => 9,
        Violation::BadDescriptor => 10,
        Violation::TooLarge => 11,
        Violation::Capacity => 12,
        _ => 13,
    })
}

/// The slot of a status code in the per-status arrays.
fn status_slot(status: Status) -> usize {
    (status.as_u32() as usize).min(STATUS_SLOTS - 1)
}

/// Add `n` to a counter only one thread writes: a load and a store, no
/// locked read-modify-write.
fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
}

/// Requests whose latency is measured, by [`REQUEST_KINDS`] index: the
/// first four (read, readv, write, writev).
pub const TIMED_KINDS: usize = 4;

/// Latency histograms by request kind (read, readv, write, writev) and
/// [`SIZE_CLASSES`] index.
pub type Latencies = [[Histogram; SIZE_CLASSES.len()]; TIMED_KINDS];

/// One server connection's counters (totals: the same, summed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionCounters {
    /// Files registered (claims 10, 11).
    pub registrations: u64,
    /// Registered files closed.
    pub closes: u64,
    /// Read and vectored-read requests RDMA-written straight from a leased
    /// file mapping.
    pub zero_copy_reads: u64,
    /// Of them, copied into a bounce buffer first.
    pub copied_reads: u64,
    /// Zero-copy reads whose status block went in the same RDMA write as
    /// their data (`Transport::post_write_tail`; docs/PROTOCOL.md,
    /// "Data and status block in one write").
    pub joined_reads: u64,
    /// Write requests and fragments placed in files.
    pub writes: u64,
    /// Bytes read from files for clients.
    pub bytes_read: u64,
    /// Bytes written to files for clients.
    pub bytes_written: u64,
    /// Requests completed by status block, by status code (index).
    pub completions: Vec<u64>,
    /// Credits granted, revoked, keepalives received and answered (the
    /// core's counters; `credit_waits` is always 0 on a server).
    pub core: ConnectionStats,
    /// Credits the client holds now (gauge).
    pub credits: u64,
    /// Of them, in use: client messages received and not yet answered
    /// (gauge).
    pub credits_in_use: u64,
    /// Work requests that failed, or transport calls (0 or 1: the first
    /// ends the connection).
    pub transport_errors: u64,
    /// Receive of a request to its status block being posted, by kind and
    /// size class.
    pub latency: Latencies,
}

impl Default for ConnectionCounters {
    fn default() -> Self {
        Self {
            registrations: 0,
            closes: 0,
            zero_copy_reads: 0,
            copied_reads: 0,
            joined_reads: 0,
            writes: 0,
            bytes_read: 0,
            bytes_written: 0,
            completions: vec![0; STATUS_SLOTS],
            core: ConnectionStats::default(),
            credits: 0,
            credits_in_use: 0,
            transport_errors: 0,
            latency: Latencies::default(),
        }
    }
}

impl ConnectionCounters {
    /// Read requests served (`zero_copy_reads + copied_reads`).
    pub fn reads(&self) -> u64 {
        self.zero_copy_reads + self.copied_reads
    }

    /// Add `other` to these (gauges too: totals of held credits).
    fn add(&mut self, other: &Self) {
        self.registrations += other.registrations;
        self.closes += other.closes;
        self.zero_copy_reads += other.zero_copy_reads;
        self.copied_reads += other.copied_reads;
        self.joined_reads += other.joined_reads;
        self.writes += other.writes;
        self.bytes_read += other.bytes_read;
        self.bytes_written += other.bytes_written;
        for (sum, n) in self.completions.iter_mut().zip(&other.completions) {
            *sum += n;
        }
        let (core, more) = (&mut self.core, &other.core);
        core.credits_granted += more.credits_granted;
        core.credits_revoked += more.credits_revoked;
        core.credit_waits += more.credit_waits;
        core.keepalives += more.keepalives;
        core.keepalives_answered += more.keepalives_answered;
        core.read_batches += more.read_batches;
        self.credits += other.credits;
        self.credits_in_use += other.credits_in_use;
        self.transport_errors += other.transport_errors;
        for (sums, more) in self.latency.iter_mut().zip(&other.latency) {
            for (sum, more) in sums.iter_mut().zip(more) {
                sum.merge(more);
            }
        }
    }
}

/// A latency histogram one thread records into and any thread reads.
#[derive(Debug)]
struct SharedHistogram {
    buckets: [AtomicU64; LATENCY_BUCKETS],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Default for SharedHistogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }
}

impl SharedHistogram {
    fn record_micros(&self, micros: u64) {
        bump(&self.buckets[bucket_of(micros)], 1);
        bump(&self.count, 1);
        bump(&self.sum_micros, micros);
    }

    fn load(&self) -> Histogram {
        Histogram {
            buckets: std::array::from_fn(|i| self.buckets[i].load(Relaxed)),
            count: self.count.load(Relaxed),
            sum_micros: self.sum_micros.load(Relaxed),
        }
    }
}

/// One server connection's counters, written by its thread alone
/// (see the module docs).
#[derive(Debug)]
pub struct ConnectionCell {
    /// The connection's number on this server (1, 2, ...: the order of
    /// acceptance), its `connection` label.
    pub(crate) id: u64,
    pub(crate) registrations: AtomicU64,
    pub(crate) closes: AtomicU64,
    /// Zero-copy reads but the joined ones: a joined read (most of them,
    /// over a transport that joins) bumps `joined_reads` alone, and counts
    /// in [`ConnectionCounters::zero_copy_reads`] when the cell is read.
    pub(crate) zero_copy_reads: AtomicU64,
    pub(crate) copied_reads: AtomicU64,
    pub(crate) joined_reads: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) bytes_read: AtomicU64,
    pub(crate) bytes_written: AtomicU64,
    completions: [AtomicU64; STATUS_SLOTS],
    credits_granted: AtomicU64,
    credits_revoked: AtomicU64,
    keepalives: AtomicU64,
    keepalives_answered: AtomicU64,
    read_batches: AtomicU64,
    credits: AtomicU64,
    credits_in_use: AtomicU64,
    pub(crate) transport_errors: AtomicU64,
    latency: [[SharedHistogram; SIZE_CLASSES.len()]; TIMED_KINDS],
    /// Requests by kind and size class that succeeded in the round they
    /// arrived ([`ConnectionCell::done_at_once`]): each one counts in
    /// `completions` as a success and in `latency` as 0 µs, added in when
    /// the cell is read ([`ConnectionCell::load`]), so such a request
    /// costs one counter, not a completion count and a histogram's three.
    at_once: [[AtomicU64; SIZE_CLASSES.len()]; TIMED_KINDS],
}

impl ConnectionCell {
    fn new(id: u64) -> Self {
        let zero = || AtomicU64::new(0);
        Self {
            id,
            registrations: zero(),
            closes: zero(),
            zero_copy_reads: zero(),
            copied_reads: zero(),
            joined_reads: zero(),
            writes: zero(),
            bytes_read: zero(),
            bytes_written: zero(),
            completions: std::array::from_fn(|_| zero()),
            credits_granted: zero(),
            credits_revoked: zero(),
            keepalives: zero(),
            keepalives_answered: zero(),
            read_batches: zero(),
            credits: zero(),
            credits_in_use: zero(),
            transport_errors: zero(),
            latency: std::array::from_fn(|_| std::array::from_fn(|_| SharedHistogram::default())),
            at_once: std::array::from_fn(|_| std::array::from_fn(|_| zero())),
        }
    }

    /// The connection's number (its `connection` label).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Zero-copy reads, joined or not.
    fn zero_copy_reads(&self) -> u64 {
        self.zero_copy_reads.load(Relaxed) + self.joined_reads.load(Relaxed)
    }

    /// Add `n` to one of this cell's counters (only its connection calls
    /// this).
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        bump(counter, n);
    }

    /// Take back `n` of what [`ConnectionCell::add`] added to a counter.
    pub(crate) fn take_back(counter: &AtomicU64, n: u64) {
        counter.store(counter.load(Relaxed).wrapping_sub(n), Relaxed);
    }

    pub(crate) fn completed(&self, status: Status) {
        bump(&self.completions[status_slot(status)], 1);
    }

    /// A request of `kind` ([`REQUEST_KINDS`] index below
    /// [`TIMED_KINDS`]) and `size` bytes completed `micros` after it
    /// arrived.
    pub(crate) fn latency(&self, kind: usize, size: u64, micros: u64) {
        if let Some(kinds) = self.latency.get(kind) {
            kinds[size_class(size)].record_micros(micros);
        }
    }

    /// A request of `kind` ([`REQUEST_KINDS`] index) and `size` bytes
    /// completed with `status` in the round it arrived: what
    /// [`ConnectionCell::completed`] and a [`ConnectionCell::latency`] of
    /// 0 µs record, a success of a timed kind in one counter.
    #[inline(always)]
    pub(crate) fn done_at_once(&self, kind: usize, size: u64, status: Status) {
        match self.at_once.get(kind) {
            Some(classes) if status == Status::Success => bump(&classes[size_class(size)], 1),
            _ => {
                self.completed(status);
                self.latency(kind, size, 0);
            }
        }
    }

    /// The core's counters and the credit gauges, copied in once a round.
    pub(crate) fn update_core(&self, core: ConnectionStats, credits: u16, in_use: u16) {
        let store = |counter: &AtomicU64, value: u64| counter.store(value, Relaxed);
        store(&self.credits_granted, core.credits_granted);
        store(&self.credits_revoked, core.credits_revoked);
        store(&self.keepalives, core.keepalives);
        store(&self.keepalives_answered, core.keepalives_answered);
        store(&self.read_batches, core.read_batches);
        store(&self.credits, u64::from(credits));
        store(&self.credits_in_use, u64::from(in_use));
    }

    /// Read every counter.
    pub fn load(&self) -> ConnectionCounters {
        let mut core = ConnectionStats::default();
        core.credits_granted = self.credits_granted.load(Relaxed);
        core.credits_revoked = self.credits_revoked.load(Relaxed);
        core.keepalives = self.keepalives.load(Relaxed);
        core.keepalives_answered = self.keepalives_answered.load(Relaxed);
        core.read_batches = self.read_batches.load(Relaxed);
        let mut counters = ConnectionCounters {
            registrations: self.registrations.load(Relaxed),
            closes: self.closes.load(Relaxed),
            zero_copy_reads: self.zero_copy_reads(),
            copied_reads: self.copied_reads.load(Relaxed),
            joined_reads: self.joined_reads.load(Relaxed),
            writes: self.writes.load(Relaxed),
            bytes_read: self.bytes_read.load(Relaxed),
            bytes_written: self.bytes_written.load(Relaxed),
            completions: self.completions.iter().map(|c| c.load(Relaxed)).collect(),
            core,
            credits: self.credits.load(Relaxed),
            credits_in_use: self.credits_in_use.load(Relaxed),
            transport_errors: self.transport_errors.load(Relaxed),
            latency: std::array::from_fn(|kind| {
                std::array::from_fn(|class| self.latency[kind][class].load())
            }),
        };
        // The successes counted at once, where they belong.
        for (kind, classes) in self.at_once.iter().enumerate() {
            for (class, n) in classes.iter().enumerate() {
                let n = n.load(Relaxed);
                if let Some(successes) = counters.completions.get_mut(status_slot(Status::Success))
                {
                    *successes += n;
                }
                let histogram = &mut counters.latency[kind][class];
                histogram.buckets[bucket_of(0)] += n;
                histogram.count += n;
            }
        }
        counters
    }
}

#[derive(Debug, Default)]
struct Cells {
    /// Live connections' cells, in order of acceptance.
    live: Vec<Arc<ConnectionCell>>,
    /// What the connections that ended counted (gauges at zero).
    retired: ConnectionCounters,
    /// Zero-copy and copied reads, the same way (without a full load).
    retired_reads: (u64, u64, u64),
}

/// A server's counters over all its connections.
#[derive(Debug, Default)]
pub struct ServerStats {
    pub(crate) connections: AtomicU64,
    pub(crate) active: AtomicU64,
    pub(crate) auth_failures: AtomicU64,
    pub(crate) ends: [AtomicU64; END_REASONS.len()],
    pub(crate) violations: [AtomicU64; VIOLATION_KINDS.len()],
    cells: Mutex<Cells>,
}

/// [`ServerStats`] read at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerSnapshot {
    /// RDMA connections accepted since the start.
    pub connections: u64,
    /// RDMA connections being served now.
    pub active: u64,
    /// Authentication keys refused.
    pub auth_failures: u64,
    /// Connections ended, by [`END_REASONS`] index.
    pub ends: Vec<u64>,
    /// Connections ended by a protocol violation, by [`VIOLATION_KINDS`]
    /// index.
    pub violations: Vec<u64>,
    /// Every connection's counters summed, live and ended.
    pub totals: ConnectionCounters,
    /// The first [`LABELLED_CONNECTIONS`] live connections' own, by
    /// connection number.
    pub live: Vec<(u64, ConnectionCounters)>,
}

impl ServerStats {
    fn cells(&self) -> std::sync::MutexGuard<'_, Cells> {
        // Every update is a single push, remove or sum: a panicking holder
        // leaves the cells consistent.
        self.cells.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new connection: its number and its cell.
    pub(crate) fn accepted(&self) -> Arc<ConnectionCell> {
        let id = self.connections.fetch_add(1, Relaxed) + 1;
        self.active.fetch_add(1, Relaxed);
        let cell = Arc::new(ConnectionCell::new(id));
        self.cells().live.push(Arc::clone(&cell));
        cell
    }

    /// A connection ended for `reason` ([`END_REASONS`] index, and the
    /// violation's kind if it was one; `None`: dropped by its owner without
    /// being run to an end): fold its cell into the totals. Once per cell.
    pub(crate) fn retire(
        &self,
        cell: &Arc<ConnectionCell>,
        reason: Option<usize>,
        violation: Option<usize>,
    ) {
        if let Some(counter) = reason.and_then(|reason| self.ends.get(reason)) {
            counter.fetch_add(1, Relaxed);
        }
        if let Some(counter) = violation.and_then(|kind| self.violations.get(kind)) {
            counter.fetch_add(1, Relaxed);
        }
        let mut counters = cell.load();
        counters.credits = 0;
        counters.credits_in_use = 0;
        let mut cells = self.cells();
        cells.live.retain(|live| !Arc::ptr_eq(live, cell));
        cells.retired.add(&counters);
        cells.retired_reads.0 += counters.zero_copy_reads;
        cells.retired_reads.1 += counters.copied_reads;
        cells.retired_reads.2 += counters.joined_reads;
        drop(cells);
        // Saturating: a connection ends once, after it was counted active.
        let _ = self
            .active
            .fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(1)));
    }

    /// Zero-copy, copied and joined reads over all connections, without
    /// allocating.
    pub(crate) fn reads(&self) -> (u64, u64, u64) {
        let cells = self.cells();
        cells
            .live
            .iter()
            .fold(cells.retired_reads, |(mapped, copied, joined), cell| {
                (
                    mapped + cell.zero_copy_reads(),
                    copied + cell.copied_reads.load(Relaxed),
                    joined + cell.joined_reads.load(Relaxed),
                )
            })
    }

    /// Read every counter: the totals (live cells plus those folded in)
    /// and the first [`LABELLED_CONNECTIONS`] live connections.
    pub fn snapshot(&self) -> ServerSnapshot {
        let (mut totals, live) = {
            let cells = self.cells();
            let live: Vec<(u64, ConnectionCounters)> = cells
                .live
                .iter()
                .map(|cell| (cell.id, cell.load()))
                .collect();
            (cells.retired.clone(), live)
        };
        for (_, counters) in &live {
            totals.add(counters);
        }
        let load = |counters: &[AtomicU64]| counters.iter().map(|c| c.load(Relaxed)).collect();
        ServerSnapshot {
            connections: self.connections.load(Relaxed),
            active: self.active.load(Relaxed),
            auth_failures: self.auth_failures.load(Relaxed),
            ends: load(&self.ends),
            violations: load(&self.violations),
            totals,
            live: live.into_iter().take(LABELLED_CONNECTIONS).collect(),
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

/// The bucket of a latency of `micros`.
fn bucket_of(micros: u64) -> usize {
    ((u64::BITS - micros.leading_zeros()) as usize).min(LATENCY_BUCKETS - 1)
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
        self.record_micros(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
    }

    /// Record one latency of `micros` microseconds.
    pub fn record_micros(&mut self, micros: u64) {
        self.buckets[bucket_of(micros)] += 1;
        self.count += 1;
        self.sum_micros = self.sum_micros.saturating_add(micros);
    }

    /// Add `other`'s latencies to these.
    pub fn merge(&mut self, other: &Self) {
        for (sum, n) in self.buckets.iter_mut().zip(&other.buckets) {
            *sum += n;
        }
        self.count += other.count;
        self.sum_micros = self.sum_micros.saturating_add(other.sum_micros);
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
    /// Submit-to-completion latency of reads and writes, by kind (read,
    /// readv, write, writev) and [`SIZE_CLASSES`] index.
    pub latency: Latencies,
    /// The core's counters: credits granted and revoked, requests that
    /// waited for a credit, keepalives sent and answered.
    pub connection: ConnectionStats,
    /// Credits held now.
    pub credits: u16,
    /// Of them, in use (requests sent and not yet answered).
    pub credits_in_use: u16,
    /// Connections ended because the server stopped answering (the
    /// dead-peer timeout).
    pub dead_peer: u64,
    /// Connections ended by a protocol violation (the server's, as this
    /// client saw it), by [`VIOLATION_KINDS`] index.
    pub violations: [u64; VIOLATION_KINDS.len()],
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

    /// Latencies of `kind` ([`REQUEST_KINDS`] name) over all size classes.
    pub fn latency_of(&self, kind: &str) -> Histogram {
        let mut all = Histogram::default();
        if let Some(classes) = REQUEST_KINDS
            .iter()
            .position(|k| *k == kind)
            .and_then(|i| self.latency.get(i))
        {
            for class in classes {
                all.merge(class);
            }
        }
        all
    }

    /// Requests completed with `status`.
    pub fn completed_with(&self, status: Status) -> u64 {
        self.completions
            .get(status_slot(status))
            .copied()
            .unwrap_or(0)
    }

    /// The connection ended for `reason`: a dead peer, a violation, or
    /// neither (an orderly close, the peer's terminate).
    pub(crate) fn terminated(&mut self, reason: &Violation) {
        if *reason == Violation::TimedOut {
            self.dead_peer += 1;
        }
        if let Some(n) = violation_kind(reason).and_then(|kind| self.violations.get_mut(kind)) {
            *n += 1;
        }
    }

    /// Requests of `kind` (a [`REQUEST_KINDS`] name) submitted.
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
    fn requests_done_at_once_count_as_completions_and_zero_latency() {
        let cell = ConnectionCell::new(1);
        cell.done_at_once(0, 4096, Status::Success);
        cell.done_at_once(0, 4096, Status::Success);
        cell.done_at_once(0, 100, Status::EndOfFile);
        cell.done_at_once(2, 1 << 20, Status::Success);
        cell.latency(0, 4096, 3);
        cell.completed(Status::Success);
        let counters = cell.load();
        let success = Status::Success.as_u32() as usize;
        let end_of_file = Status::EndOfFile.as_u32() as usize;
        assert_eq!(counters.completions[success], 4);
        assert_eq!(counters.completions[end_of_file], 1);
        let reads = &counters.latency[0][0];
        assert_eq!((reads.count, reads.buckets[0], reads.buckets[2]), (4, 3, 1));
        assert_eq!(reads.sum_micros, 3);
        let writes = &counters.latency[2][size_class(1 << 20)];
        assert_eq!((writes.count, writes.buckets[0]), (1, 1));
        // An untimed kind counts its completion only.
        cell.done_at_once(4, 0, Status::Success);
        assert_eq!(cell.load().completions[success], 5);
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
