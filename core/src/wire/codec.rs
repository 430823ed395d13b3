//! Plumbing shared by every parser and encoder of the wire module.
//!
//! Parsing: [`take`] and [`take_exact`] split a zerocopy wire struct off the
//! front of a byte slice and turn a short slice into
//! [`WireError::Truncated`] with whole-message lengths.
//!
//! Encoding: each message describes its bytes once, as a sequence of
//! [`Sink::put`] calls. [`emit`] runs that description twice: first into a
//! [`Counter`] to learn the length (and refuse a short buffer before touching
//! it), then into a [`Writer`]. A length and its encoding therefore can never
//! disagree.

use super::{InsufficientSize, VERSION_1, WireError};
use zerocopy::{FromBytes, Immutable, KnownLayout, Unaligned};

/// [`VERSION_1`] as the single byte the RDMA header and the pipe frame carry.
pub(crate) const VERSION_1_BYTE: u8 = 1;
const _: () = assert!(VERSION_1_BYTE as u16 == VERSION_1);

/// Split a `T` off the front of `bytes`.
///
/// `base` is how many message bytes precede `bytes`, so the error reports
/// lengths of the whole message, which is what a reader can act on.
pub(crate) fn take<T>(bytes: &[u8], base: usize) -> Result<(&T, &[u8]), WireError>
where
    T: FromBytes + KnownLayout + Immutable + Unaligned,
{
    // `T` is unaligned and sized, so a short slice is the only failure.
    T::ref_from_prefix(bytes).map_err(|_| WireError::Truncated {
        required: base.saturating_add(size_of::<T>()),
        available: base.saturating_add(bytes.len()),
    })
}

/// Read a `T` that must make up all of `bytes`: fewer bytes are
/// [`WireError::Truncated`], more are [`WireError::BadLength`] (the payload
/// length field disagrees with the opcode's fixed size).
pub(crate) fn take_exact<T>(bytes: &[u8], base: usize) -> Result<&T, WireError>
where
    T: FromBytes + KnownLayout + Immutable + Unaligned,
{
    let (value, rest) = take::<T>(bytes, base)?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(WireError::BadLength)
    }
}

/// Require an empty payload.
pub(crate) fn expect_empty(bytes: &[u8]) -> Result<(), WireError> {
    if bytes.is_empty() {
        Ok(())
    } else {
        Err(WireError::BadLength)
    }
}

/// Turn a reserved field's value into a check.
pub(crate) fn reserved_zero<T: PartialEq + Default>(value: T) -> Result<(), WireError> {
    if value == T::default() {
        Ok(())
    } else {
        Err(WireError::ReservedNotZero)
    }
}

/// A message whose counts or lengths do not fit their wire fields (more than
/// `u16::MAX` segments, a payload over `u32::MAX` bytes). Such a message
/// cannot be built from inputs the protocol accepts; the encoders report it
/// as a buffer requirement of `usize::MAX`, which no buffer meets.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Unencodable;

impl From<core::num::TryFromIntError> for Unencodable {
    fn from(_: core::num::TryFromIntError) -> Self {
        Self
    }
}

/// Where an encoding puts its bytes, in order.
pub(crate) trait Sink {
    /// Append `bytes`.
    fn put(&mut self, bytes: &[u8]);
}

/// Counts bytes (saturating, so an absurd length stays absurd instead of
/// wrapping into a small one).
#[derive(Default)]
pub(crate) struct Counter(pub(crate) usize);

impl Sink for Counter {
    fn put(&mut self, bytes: &[u8]) {
        self.0 = self.0.saturating_add(bytes.len());
    }
}

/// Writes bytes into a buffer that [`emit`] has already checked is large
/// enough.
pub(crate) struct Writer<'b> {
    pub(crate) rest: &'b mut [u8],
}

impl Sink for Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        let rest = core::mem::take(&mut self.rest);
        // `emit` sized the buffer with a `Counter` over the same calls, so the
        // split always succeeds; if it could not, writing nothing is the
        // total (panic-free) behaviour.
        if let Some((head, tail)) = rest.split_at_mut_checked(bytes.len()) {
            head.copy_from_slice(bytes);
            self.rest = tail;
        }
    }
}

/// The length of an encoding: `usize::MAX` if it is [`Unencodable`].
pub(crate) fn encoded_len(encode: impl Fn(&mut dyn Sink) -> Result<(), Unencodable>) -> usize {
    let mut counter = Counter::default();
    match encode(&mut counter) {
        Ok(()) => counter.0,
        Err(Unencodable) => usize::MAX,
    }
}

/// Run an encoding into `buf`, leaving `buf` untouched if it is too small.
pub(crate) fn emit(
    buf: &mut [u8],
    encode: impl Fn(&mut dyn Sink) -> Result<(), Unencodable>,
) -> Result<usize, InsufficientSize> {
    let required = encoded_len(&encode);
    if buf.len() < required {
        return Err(InsufficientSize { required });
    }
    // Cannot fail: `encoded_len` ran the same encoding successfully.
    encode(&mut Writer { rest: buf }).map_err(|Unencodable| InsufficientSize {
        required: usize::MAX,
    })?;
    Ok(required)
}
