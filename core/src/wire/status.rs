//! The status block (claim 20): 24 bytes the server RDMA-writes into client
//! memory to complete a read, vectored read, write or vectored write.
//!
//! ```text
//!  0                4                8                                16       18       20                24
//! +----------------+----------------+--------------------------------+--------+--------+----------------+
//! | request_id     | status (u32)   | bytes transferred (u64)        |credits |reserved| valid "RDIO"   |
//! +----------------+----------------+--------------------------------+--------+--------+----------------+
//! ```
//!
//! The client zeroes the block before issuing the request; `valid` is the last
//! word, so a polling client that sees it set sees a complete block (RC places
//! an RDMA write's bytes in order on every transport rdio supports; see
//! `docs/PROTOCOL.md`). `credits` is the number of credits the completion
//! returns: the messages the request consumed (1 + its write fragments).

use super::codec::{reserved_zero, take};
use super::types::Status;
use super::{InsufficientSize, WireError};
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Length of a status block.
pub const STATUS_BLOCK_LEN: usize = 24;
/// The `valid` word of a written block (`"RDIO"` little-endian).
pub const STATUS_VALID: u32 = u32::from_le_bytes(*b"RDIO");

/// A validated status block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct StatusBlock {
    /// The request this completes.
    pub request_id: u32,
    /// Outcome.
    pub status: Status,
    /// Bytes read or written.
    pub bytes: u64,
    /// Credits returned to the client.
    pub credits: u16,
}

/// The block as it sits in client memory.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct StatusBlockWire {
    request_id: U32,
    status: U32,
    bytes: U64,
    credits: U16,
    reserved: U16,
    valid: U32,
}

const _: () = assert!(size_of::<StatusBlockWire>() == STATUS_BLOCK_LEN);

/// Where the last eight bytes of a block start: credits, reserved, valid.
const TAIL: usize = core::mem::offset_of!(StatusBlockWire, credits);

const _: () = assert!(TAIL + 8 == STATUS_BLOCK_LEN);

impl StatusBlock {
    /// Parse a block from the first [`STATUS_BLOCK_LEN`] bytes of `buf`.
    ///
    /// `Ok(None)` while the `valid` word is zero, whatever the other bytes
    /// hold: the block is not written yet, or a polling client is seeing the
    /// RDMA write land (the valid word comes last), and it keeps polling. A
    /// `valid` word that is neither zero nor [`STATUS_VALID`] is
    /// [`WireError::InvalidField`]; then reserved, then the status code.
    #[inline]
    pub fn parse(buf: &[u8]) -> Result<Option<Self>, WireError> {
        let (wire, _rest) = take::<StatusBlockWire>(buf, 0)?;
        // A written block with its reserved field zero, the block a caller
        // hands in as a rule, is told by one load of the last eight bytes
        // and one compare of their top six (reserved, valid); the other
        // cases are told apart, in the order above, only when it fails.
        let tail = buf
            .get(TAIL..STATUS_BLOCK_LEN)
            .and_then(|tail| U64::read_from_bytes(tail).ok())
            .map_or(0, U64::get);
        if tail >> 16 != u64::from(STATUS_VALID) << 16 {
            match wire.valid.get() {
                0 => return Ok(None),
                STATUS_VALID => {}
                _ => return Err(WireError::InvalidField),
            }
            reserved_zero(wire.reserved.get())?;
        }
        Ok(Some(Self {
            request_id: wire.request_id.get(),
            status: Status::from_u32(wire.status.get())?,
            bytes: wire.bytes.get(),
            credits: wire.credits.get(),
        }))
    }

    /// Whether the block at the start of `buf` has its `valid` word set
    /// (to anything: [`StatusBlock::parse`] tells a written block from a
    /// damaged one). A polling client's cheap look at a block before it
    /// hands it to [`crate::client::Client::take_status_block`]: one load,
    /// no parse. `false` for a buffer shorter than a block.
    #[inline]
    pub fn is_written(buf: &[u8]) -> bool {
        buf.get(STATUS_BLOCK_LEN - 4..STATUS_BLOCK_LEN)
            .is_some_and(|valid| valid != [0; 4])
    }

    /// Encode into `buf` (first [`STATUS_BLOCK_LEN`] bytes), leaving it
    /// untouched if it is shorter.
    #[inline]
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, InsufficientSize> {
        // A fixed-size struct: one bounds check and one store, no length
        // pass (this runs once per I/O).
        let Some(head) = buf.get_mut(..STATUS_BLOCK_LEN) else {
            return Err(InsufficientSize {
                required: STATUS_BLOCK_LEN,
            });
        };
        head.copy_from_slice(self.to_wire().as_bytes());
        Ok(STATUS_BLOCK_LEN)
    }

    fn to_wire(self) -> StatusBlockWire {
        StatusBlockWire {
            request_id: self.request_id.into(),
            status: self.status.as_u32().into(),
            bytes: self.bytes.into(),
            credits: self.credits.into(),
            reserved: U16::ZERO,
            valid: STATUS_VALID.into(),
        }
    }

    /// The encoded block as an array, for RDMA-writing from a small buffer.
    pub fn to_bytes(&self) -> [u8; STATUS_BLOCK_LEN] {
        let mut out = [0u8; STATUS_BLOCK_LEN];
        let _ = self.emit(&mut out);
        out
    }
}
