//! rdio over ibverbs: reliable-connected queue pairs set up with rdma_cm,
//! through the `rdma-sys` bindings.
//!
//! This is the transport the patent's claims are about: "at least one remote
//! direct memory access (RDMA) channel linking the first computer and the
//! second computer" (claim 1), with reads done by RDMA writes from the server
//! into client memory and writes by sends. It runs on InfiniBand, RoCE
//! (including soft-RoCE `rdma_rxe`) and iWARP (including `siw`).
//!
//! # Features
//!
//! * without `verbs` (default) the crate links nothing and exposes the
//!   device-free parts: [`VerbsError`], provider names ([`RdmaKind`],
//!   [`provider_name`]), access flags ([`ibv_access_flags`]), completion
//!   status mapping ([`wc_status_result`]), [`DeviceInfo`], and [`probe`],
//!   which then returns [`VerbsError::FeatureDisabled`];
//! * `verbs` links libibverbs and librdmacm and adds `VerbsTransport`,
//!   `VerbsListener`, `VerbsConfig` and `wc_status_str`. Building it
//!   needs `libibverbs-dev librdmacm-dev libclang-dev pkg-config` (rdma-sys
//!   runs bindgen); running needs an RDMA device (see `docs/VERBS.md`).
//!
//! # Mapping onto `rdio_transport::Transport`
//!
//! * Discovery: [`probe`] lists devices; no device, or `ENOSYS` from a kernel
//!   without RDMA, is [`VerbsError::NoRdmaDevices`] with a hint on creating
//!   a software device. The negotiated provider name is
//!   `verbs:{ib,roce,iwarp}:DEVICE` (module [`provider`]).
//! * Setup: `VerbsTransport::connect` / `VerbsListener::accept` run the
//!   rdma_cm handshake on an IP address; each connection gets its own event
//!   channel, protection domain, completion channel, CQ and RC QP.
//! * Memory: `register` allocates page-aligned zeroed memory and registers it
//!   with exactly the requested rights (`REMOTE_WRITE` implies
//!   `LOCAL_WRITE`, as ibverbs requires). A region is *busy* from the post of
//!   a work request that references it until that request's completion is
//!   drained; meanwhile `region_mut` and `deregister` fail with `Busy`, so
//!   memory the HCA may touch is never freed or rewritten.
//! * Work requests: every send-queue request is signaled; sends and writes up
//!   to the QP's `max_inline_data` (bounded by `VerbsConfig::max_inline`)
//!   are posted inline. Immediate data travels in network byte order, as the
//!   verbs ABI defines: the `u32` given to `post_send`/`post_write` is
//!   converted with `to_be`, and `RecvImm { imm }` is converted back, so the
//!   value is the same on both ends whatever their byte order.
//! * Completions: `poll_completions` busy-polls the CQ (`ibv_poll_cq`);
//!   `wait` arms it (`ibv_req_notify_cq`), re-polls once to close the race,
//!   then sleeps in `poll(2)` on the completion channel and the rdma_cm
//!   event channel with the given timeout. Statuses map to `WcError` as
//!   documented in [`wc_status_result`]; any error status leaves the QP in
//!   the error state, so later posts return `Disconnected`.
//! * Teardown: `disconnect` (and drop) call `rdma_disconnect`, which flushes
//!   outstanding requests; the peer's disconnect is noticed on its rdma_cm
//!   event and handled the same way. Objects are destroyed in the order
//!   rdma-core requires: QP, CQ, memory regions, PD, completion channel,
//!   cm id, event channel.
//!
//! A send with immediate data completes at the peer as `Recv { len }`: the
//! trait has no completion kind carrying both a length and an immediate, so
//! that immediate is not reported (write-with-immediate is the way to signal
//! with one).
//!
//! All `unsafe` code is in this crate: the `sys` module, the two post calls
//! of `VerbsTransport` and tests reading C unions, each block with its
//! safety argument (`clippy::undocumented_unsafe_blocks` is denied); the
//! public API is safe.
#![cfg_attr(not(feature = "verbs"), forbid(unsafe_code))]
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

mod access;
mod device;
mod error;
pub mod provider;
mod raw;
mod status;

pub use access::ibv_access_flags;
pub use device::{DeviceInfo, PortInfo, probe};
pub use error::{NO_DEVICES_HINT, VerbsError};
pub use provider::{RdmaKind, provider_name};
pub use status::wc_status_result;

#[cfg(feature = "verbs")]
mod addr;
#[cfg(feature = "verbs")]
mod config;
#[cfg(feature = "verbs")]
mod listener;
#[cfg(feature = "verbs")]
mod posted;
#[cfg(feature = "verbs")]
mod sys;
#[cfg(feature = "verbs")]
mod transport;
#[cfg(feature = "verbs")]
mod wr;

#[cfg(feature = "verbs")]
pub use config::VerbsConfig;
#[cfg(feature = "verbs")]
pub use listener::VerbsListener;
#[cfg(feature = "verbs")]
pub use sys::wc_status_str;
#[cfg(feature = "verbs")]
pub use transport::VerbsTransport;
