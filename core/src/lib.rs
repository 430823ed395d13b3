//! # rdio-core
//!
//! The sans-IO, allocation-free, `no_std` core of **rdio**, a protocol that
//! offloads file I/O from a client on one computer to a server on another over
//! RDMA (after Microsoft's "Lightweight Input/Output" (LWIO) patent claims; SMB
//! Direct is its descendant).
//!
//! The crate holds:
//! * [`wire`]: every message of the protocol, as zero-copy wire structs plus a
//!   validated representation, with encoders that write into caller buffers;
//! * [`credit`]: the credit ledger both sides keep (seed claims 1, 7, 22);
//! * [`client`] and [`server`]: the two state machines, driven by the caller
//!   (`handle_*` inputs, drained `poll_*` outputs), which never read a clock
//!   ([`time`]) and never touch memory registration, files or sockets.
//!
//! See `docs/PROTOCOL.md` in the repository for the wire format, the state
//! diagrams and the claim-by-claim mapping to the seed.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]

#[macro_use]
mod log;

pub mod client;
pub mod credit;
pub mod error;
pub mod server;
pub mod time;
pub mod wire;

pub use error::{ApiError, Violation};
pub use time::Instant;
