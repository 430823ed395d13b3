//! # rdio
//!
//! The std runtime of rdio: what runs the sans-IO protocol core
//! (`rdio-core`) over a real transport (any `rdio_transport::Transport`) and
//! real files.
//!
//! * [`files`]: the server's file backend — an exported directory whose paths
//!   are confined by the kernel (`openat2(RESOLVE_BENEATH)`), positioned and
//!   vectored I/O, and the bounded table of open files.
//! * [`pipe`]: the side channel, framed messages over any byte stream.
//! * [`server`]: the file-serving server — side-channel handler and one
//!   runner per RDMA connection.
//! * [`client`]: the blocking client — discovery, registration, positioned
//!   and vectored reads and writes, cancel, close, `std::io` adapters — a
//!   loop over the one non-blocking client engine that drives the core
//!   (`client/engine.rs`: posts, batched completion drains, one
//!   slot-indexed completion table), which the inline pair and the tokio
//!   client run too.
//! * [`embedded`]: a client connected to an in-process server through the
//!   loopback transport, the server on threads of its own
//!   ([`embedded::Threads`]) or stepped inline by the client on one thread
//!   ([`embedded::Inline`]: no thread hand-off on the I/O path).
//! * [`net`]: server and client across processes and hosts — the side
//!   channel over TCP, the RDMA channel over libfabric (feature `fabric`) or
//!   ibverbs (feature `verbs`); async versions on tokio (feature `tokio`).
//! * [`access`]: who may connect and what they may do — the server's TLS
//!   identity, its clients file, client credentials, trusted servers.
#![warn(missing_docs)]

/// The largest message (header included) a client offers and a server
/// accepts by default: room for a 1 MiB write in one send, header and all
/// (the `rdio` default I/O size), where the core's own default stays at
/// the 64 KiB a small target can afford. What it costs: a server posts a
/// receive of this size per credit (64 × ≈ 1 MiB ≈ 64 MiB of address space
/// per connection, touched only as far as messages fill it); nothing else
/// on either side is sized by it (`buffers::CONTROL_MESSAGE`). The
/// negotiation takes the smaller of the two offers, so a peer offering
/// 64 KiB keeps 64 KiB sends. `docs/PROTOCOL.md`, "Send size".
pub const DEFAULT_MAX_SEND_SIZE: u32 = (1 << 20) + 4096;

pub mod access;
mod buffers;
pub mod capture;
pub mod client;
pub mod embedded;
pub mod files;
pub mod net;
pub mod pipe;
pub mod server;
pub mod stats;
