//! Phase 4, registration and control messages: `RegisterFile` and its
//! completion (claims 10, 11), `Cancel`, `Close` and their `Completion`
//! (claim 15), and `Terminate`, which share a one-word layout.

use super::*;

/// RegisterFileCompletion.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(super) struct RegisterCompletionWire {
    pub(super) status: U32,
    pub(super) handle: U32,
    pub(super) size: U64,
}

/// Cancel (target request id), Close (handle), Terminate (reason): one word
/// and a reserved word, keeping 8-byte alignment of what follows in a
/// receive buffer.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(super) struct WordWire {
    pub(super) value: U32,
    pub(super) reserved: U32,
}

/// Completion.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(super) struct CompletionWire {
    pub(super) status: U32,
    pub(super) reserved: U32,
    pub(super) bytes: U64,
}

/// A [`WordWire`] payload's value, reserved word checked.
pub(super) fn word(payload: &[u8]) -> Result<u32, WireError> {
    let wire = take_exact::<WordWire>(payload, BASE)?;
    reserved_zero(wire.reserved.get())?;
    Ok(wire.value.get())
}
