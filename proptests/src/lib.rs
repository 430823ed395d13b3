//! Test support for rdio, shared by the property tests in `tests/` and the
//! cargo-fuzz targets in `fuzz/`: a deterministic client/server [`pair`]
//! stepped with virtual time over simulated RDMA memory.
//!
//! Nothing here is part of the protocol: it only moves bytes between the two
//! state machines of `rdio-core` and records what they report.

pub mod pair;
