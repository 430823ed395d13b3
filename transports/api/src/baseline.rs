//! What a transport's raw baseline loop is asked to do and what it reports:
//! the shared vocabulary of `rdio_fabric::raw` and `rdio_cma::raw`, the bare
//! loops `rdio bench` measures rdio's throughput against.

use core::time::Duration;

/// Which operation the loop streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawOp {
    /// One-sided writes into the peer's memory, as rdio's reads complete
    /// (`fi_write`, `process_vm_writev`).
    Write,
    /// Two-sided sends into receives the peer keeps posted, as rdio's
    /// write data travels (`fi_send`, a Unix-socket write).
    Send,
}

/// Parameters of one baseline run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawConfig {
    /// Operation to stream.
    pub op: RawOp,
    /// Bytes per operation.
    pub size: usize,
    /// Number of operations.
    pub count: usize,
    /// Most operations in flight at once: the queue depth the row stands
    /// for (a transport may cap it, or have no use for it; see its `raw`
    /// module).
    pub window: usize,
}

impl RawConfig {
    /// Whether the loop can run: `size`, `count` and `window` all non-zero.
    pub fn is_valid(&self) -> bool {
        self.size != 0 && self.count != 0 && self.window != 0
    }
}

/// Outcome of one baseline run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RawResult {
    /// What was run.
    pub config: RawConfig,
    /// From the first operation to the peer's acknowledgement of the last
    /// byte.
    pub elapsed: Duration,
}

impl RawResult {
    /// Payload bytes moved.
    pub fn bytes(&self) -> u64 {
        self.config.size as u64 * self.config.count as u64
    }

    /// Payload bytes per second.
    pub fn bytes_per_sec(&self) -> f64 {
        self.bytes() as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// Operations per second.
    pub fn ops_per_sec(&self) -> f64 {
        self.config.count as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}
