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

use super::types::Status;
use super::{InsufficientSize, WireError};

/// Length of a status block.
pub const STATUS_BLOCK_LEN: usize = 24;
/// The `valid` word of a written block (`"RDIO"` little-endian).
pub const STATUS_VALID: u32 = u32::from_le_bytes(*b"RDIO");

/// A validated status block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

impl StatusBlock {
    /// Parse a block. `Ok(None)` when the `valid` word is still zero (not
    /// written yet: a polling client keeps polling); any other invalid content
    /// is an error.
    pub fn parse(buf: &[u8]) -> Result<Option<Self>, WireError> {
        let _ = buf;
        todo!("wire codec")
    }

    /// Encode into `buf` (first [`STATUS_BLOCK_LEN`] bytes).
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, InsufficientSize> {
        let _ = buf;
        todo!("wire codec")
    }

    /// The encoded block as an array, for RDMA-writing from a small buffer.
    pub fn to_bytes(&self) -> [u8; STATUS_BLOCK_LEN] {
        let mut out = [0u8; STATUS_BLOCK_LEN];
        let _ = self.emit(&mut out);
        out
    }
}
