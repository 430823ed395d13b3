//! Phase 3, credit messages: `CreditRequest` grants or revokes, `CreditAck`
//! and `CreditGiveUp` answer it, `CreditResponse` closes the exchange
//! (claims 1, 6, 7, 23). The signed delta's layout and its checks.

use super::*;

/// CreditRequest, CreditAck: a signed credit delta.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(super) struct DeltaWire {
    pub(super) delta: I32,
}

/// A [`DeltaWire`] payload's delta, which must satisfy `valid`.
pub(super) fn delta(payload: &[u8], valid: fn(i32) -> bool) -> Result<i32, WireError> {
    let delta = take_exact::<DeltaWire>(payload, BASE)?.delta.get();
    if valid(delta) {
        Ok(delta)
    } else {
        Err(WireError::InvalidField)
    }
}
