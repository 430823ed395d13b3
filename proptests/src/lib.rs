//! Test support for rdio, shared by the property tests in `tests/` and the
//! cargo-fuzz targets in `fuzz/`:
//! * [`pair`]: a deterministic client/server pair stepped with virtual time
//!   over simulated RDMA memory, with a fault schedule;
//! * [`wire_values`]: generators of every valid wire message (proptest
//!   strategies, and `arbitrary` with the `arbitrary` feature);
//! * [`credit_model`]: a reference model of the credit rules, fed with the
//!   bytes that cross the pair and checked against both ledgers;
//! * [`session`]: arbitrary client API calls, credit targets, step orders
//!   and faults run on the pair, checked after every step against the credit
//!   model, exactly-once completion and a model of the files' contents.
//!
//! Nothing here is part of the protocol: it only moves bytes between the two
//! state machines of `rdio-core` and checks what they report.

pub mod credit_model;
pub mod file_values;
pub mod pair;
pub mod session;
pub mod wire_values;
