//! Phase 2, authentication messages: `AuthRequest` carries the key from the
//! negotiate response (claims 12, 13); `AuthResponse` and `StatusResponse`
//! answer it, the latter with the starting credits and keepalive (claim 14).

use super::*;

/// AuthResponse: the outcome.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(super) struct StatusWire {
    pub(super) status: U32,
}

/// StatusResponse: outcome, starting credit level, keepalive interval.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(super) struct StatusResponseWire {
    pub(super) status: U32,
    pub(super) credits: U16,
    pub(super) reserved: U16,
    pub(super) keepalive_ms: U32,
}
