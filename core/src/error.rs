//! Why a connection ends, and why an API call is refused.

use crate::wire::{Opcode, Status, WireError};
use core::fmt;

/// A protocol violation by the peer (or a liveness failure). The state
/// machine that detects one queues a `Terminate` message carrying
/// [`Violation::wire_status`] and reports a termination event; it never
/// panics and never continues on a ledger it can no longer trust.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Violation {
    /// The message did not parse.
    Malformed(WireError),
    /// An opcode the peer's role never sends.
    WrongDirection(Opcode),
    /// A message that is not valid in the connection's current state
    /// (e.g. any request before authentication).
    UnexpectedMessage(Opcode),
    /// The peer sent more messages than it holds credits for.
    CreditOverrun,
    /// A header's credit field disagrees with the ledger.
    CreditMismatch {
        /// What the ledger says.
        expected: u16,
        /// What the header said.
        found: u16,
    },
    /// A credit message arrived while the previous exchange was unfinished,
    /// or does not match the outstanding credit request.
    CreditSequence,
    /// A grant beyond the negotiated maximum, or a revoke that would leave
    /// the client without a credit (which would deadlock the connection).
    CreditRange,
    /// A reply or status block for a request that is not outstanding.
    UnknownRequest(u32),
    /// A request id that is already outstanding.
    DuplicateRequest(u32),
    /// The immediate that ends a read batch arrived before the status
    /// block of this read of it was written.
    MissingStatusBlock(u32),
    /// An immediate named this read of a read batch, where only the
    /// batch's id may be named (with the batch's last status block).
    BatchMemberImmediate(u32),
    /// A write fragment at the wrong offset or beyond the write's length.
    FragmentOutOfOrder,
    /// A buffer descriptor that is empty, too short, or too long.
    BadDescriptor,
    /// A request exceeding the negotiated message or I/O size.
    TooLarge,
    /// The authentication key was refused.
    AuthFailed,
    /// The peer did not authenticate, answer or show life in time.
    TimedOut,
    /// The peer ended the connection with this status.
    PeerTerminated(Status),
    /// An internal bound was exceeded (a queue sized from the negotiated
    /// credits overflowed): treated as a violation, never a panic.
    Capacity,
    /// The state machine's own bookkeeping disagreed with itself (a queue
    /// entry without its request, a request in a stage its queue rules
    /// out): the connection ends loudly instead of stalling. A bug in
    /// rdio, never caused by the peer alone.
    Internal,
}

impl Violation {
    /// The status sent in the `Terminate` message for this violation.
    pub fn wire_status(self) -> Status {
        match self {
            Self::AuthFailed => Status::AuthFailed,
            Self::TimedOut => Status::TimedOut,
            Self::PeerTerminated(status) => status,
            Self::Malformed(WireError::UnknownOpcode(_)) => Status::UnknownOpcode,
            _ => Status::ProtocolError,
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(e) => write!(f, "malformed message: {e}"),
            Self::WrongDirection(op) => write!(f, "{op:?} is never sent by this peer"),
            Self::UnexpectedMessage(op) => write!(f, "unexpected {op:?} in this state"),
            Self::CreditOverrun => f.write_str("peer exceeded its credits"),
            Self::CreditMismatch { expected, found } => {
                write!(f, "credit field {found} disagrees with ledger {expected}")
            }
            Self::CreditSequence => f.write_str("credit exchange out of sequence"),
            Self::CreditRange => f.write_str("credit request out of range"),
            Self::UnknownRequest(id) => write!(f, "unknown request id {id}"),
            Self::DuplicateRequest(id) => write!(f, "duplicate request id {id}"),
            Self::MissingStatusBlock(id) => {
                write!(f, "read batch notified before request {id}'s status block")
            }
            Self::BatchMemberImmediate(id) => {
                write!(
                    f,
                    "immediate names request {id} of a read batch, not the batch"
                )
            }
            Self::FragmentOutOfOrder => f.write_str("write fragment out of order"),
            Self::BadDescriptor => f.write_str("invalid buffer descriptor"),
            Self::TooLarge => f.write_str("request exceeds negotiated size"),
            Self::AuthFailed => f.write_str("authentication failed"),
            Self::TimedOut => f.write_str("peer timed out"),
            Self::PeerTerminated(s) => write!(f, "peer terminated the connection: {s}"),
            Self::Capacity => f.write_str("internal capacity exceeded"),
            Self::Internal => f.write_str("internal bookkeeping broken (a bug in rdio)"),
        }
    }
}

impl core::error::Error for Violation {}

impl From<WireError> for Violation {
    fn from(e: WireError) -> Self {
        Self::Malformed(e)
    }
}

/// Why a local API call was refused. Nothing was queued or changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ApiError {
    /// The connection is not (yet, or any more) able to carry requests.
    NotConnected,
    /// Every request slot is in use; wait for a completion.
    TooManyRequests,
    /// The request exceeds the negotiated limits.
    TooLarge,
    /// An argument is invalid (zero length, too many segments, short status
    /// descriptor, mismatched COLLAPSE lengths, ...).
    InvalidArgument,
    /// No such outstanding request.
    UnknownRequest,
    /// The credit change is out of the configured range or one is pending.
    CreditsBusy,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotConnected => "not connected",
            Self::TooManyRequests => "too many outstanding requests",
            Self::TooLarge => "request exceeds negotiated limits",
            Self::InvalidArgument => "invalid argument",
            Self::UnknownRequest => "no such outstanding request",
            Self::CreditsBusy => "credit change out of range or already pending",
        })
    }
}

impl core::error::Error for ApiError {}
