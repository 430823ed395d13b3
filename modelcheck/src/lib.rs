//! # rdio-modelcheck
//!
//! Exhaustive model checking of the **real** `rdio_core` client and server
//! state machines with [stateright](https://docs.rs/stateright): the model's
//! two actors are [`rdio_core::client::Client`] and
//! [`rdio_core::server::Connection`] themselves, driven through
//! [`adapter`], wired by the network and environment of [`model`]. See
//! `docs/MODEL.md` for the properties, the bounds and the state counts.

pub mod adapter;
pub mod model;

pub use model::{Action, Bounds, RdioModel, State};
