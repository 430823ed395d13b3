//! The common header of every RDMA-channel message.
//!
//! ```text
//!  0        1        2                 4                 6                 8                                 12                                16
//! +--------+--------+-----------------+-----------------+-----------------+---------------------------------+---------------------------------+
//! |version | opcode |  flags (u16 LE) | credits (u16 LE)| demand (u16 LE) |      request_id (u32 LE)        |   length (u32 LE): payload bytes |
//! +--------+--------+-----------------+-----------------+-----------------+---------------------------------+---------------------------------+
//! ```
//!
//! `credits` (claim 22): in a client message, the credits the client holds
//! after sending it (its ledger level, checked exactly by the server); in a
//! server message, the credits this message returns to the client.
//!
//! `demand`: with [`Capabilities::CREDIT_DEMAND`](super::Capabilities)
//! negotiated, in a client request, the credits the client could use when
//! it sent it — its requests outstanding, this one included, and those
//! waiting for a credit — which the server's credit policy follows (as
//! SMB Direct's `CreditsRequested` and RPC-over-RDMA's credit field in a
//! call). Zero in every other message: server messages, `AuthRequest`,
//! `Terminate` and any message of a session without the capability.

use super::WireError;
use super::codec::{VERSION_1_BYTE, reserved_zero, take};
use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Length of the header in bytes.
pub const HEADER_LEN: usize = 16;

bitflags::bitflags! {
    /// Header flags. Unknown bits are rejected ([`WireError::UnknownFlags`]),
    /// and so are known bits on an opcode they do not apply to.
    ///
    /// On the wire a little-endian `u16` in [`HeaderWire::flags`].
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct Flags: u16 {
        /// Claim 19: completion is *not* in polling mode — the server
        /// completes by RDMA-writing the status block *with immediate data*,
        /// which raises a completion (an interrupt) at the client. Without it
        /// the request is in polling mode: the status block is written
        /// silently and the client polls it (claim 20/21).
        const INTERRUPT = 0x0001;
        /// Claim 17: on a vectored write, every segment receives the same
        /// bytes, which are carried once (see `docs/PROTOCOL.md`).
        const COLLAPSE = 0x0002;
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for Flags {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "Flags({=u16:#06x})", self.bits())
    }
}

/// Every opcode. The high bit is never set; `0x7F` is terminate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum Opcode {
    /// C→S authenticate request (claim 12).
    AuthRequest = 0x01,
    /// S→C authenticate response (claim 12).
    AuthResponse = 0x02,
    /// S→C status response completing authentication (claim 14).
    StatusResponse = 0x03,
    /// S→C credit request: signed count (claims 1, 6, 7, 23).
    CreditRequest = 0x10,
    /// C→S the single answer to a positive credit request.
    CreditAck = 0x11,
    /// C→S one per credit given up on a negative credit request.
    CreditGiveUp = 0x12,
    /// S→C the server's answer to each client credit message.
    CreditResponse = 0x13,
    /// C→S register file by resume key (claims 10, 11).
    RegisterFile = 0x20,
    /// C→S read, completed by RDMA write (claims 15, 16).
    Read = 0x21,
    /// C→S vectored read, completed by RDMA writes (claims 15, 16).
    ReadV = 0x22,
    /// C→S write, data carried in sends (claims 1, 15, 16).
    Write = 0x23,
    /// C→S vectored write, data in sends, optional COLLAPSE (claims 15–17).
    WriteV = 0x24,
    /// C→S continuation fragment of a write or vectored write.
    WriteData = 0x25,
    /// C→S cancel an outstanding request (claim 15).
    Cancel = 0x26,
    /// C→S close a registered file (claim 15).
    Close = 0x27,
    /// S→C register file completion (claim 11).
    RegisterFileCompletion = 0x28,
    /// S→C completion of a control request (cancel, close) by send.
    Completion = 0x29,
    /// C→S several reads in one message (the read-batch extension,
    /// capability bit 0): one status block each, one immediate for all.
    ReadBatch = 0x2A,
    /// C→S interrupt request: wake me at the next completion (claim 21).
    InterruptRequest = 0x30,
    /// S→C interrupt response by ordinary send (claim 21).
    InterruptResponse = 0x31,
    /// C→S keepalive probe.
    Keepalive = 0x40,
    /// S→C keepalive answer.
    KeepaliveResponse = 0x41,
    /// Either direction: the sender ends the connection, with a reason.
    Terminate = 0x7F,
}

impl Opcode {
    /// Decode an opcode byte.
    pub fn from_u8(byte: u8) -> Result<Self, WireError> {
        Ok(match byte {
            0x01 => Self::AuthRequest,
            0x02 => Self::AuthResponse,
            0x03 => Self::StatusResponse,
            0x10 => Self::CreditRequest,
            0x11 => Self::CreditAck,
            0x12 => Self::CreditGiveUp,
            0x13 => Self::CreditResponse,
            0x20 => Self::RegisterFile,
            0x21 => Self::Read,
            0x22 => Self::ReadV,
            0x23 => Self::Write,
            0x24 => Self::WriteV,
            0x25 => Self::WriteData,
            0x26 => Self::Cancel,
            0x27 => Self::Close,
            0x28 => Self::RegisterFileCompletion,
            0x29 => Self::Completion,
            0x2A => Self::ReadBatch,
            0x30 => Self::InterruptRequest,
            0x31 => Self::InterruptResponse,
            0x40 => Self::Keepalive,
            0x41 => Self::KeepaliveResponse,
            0x7F => Self::Terminate,
            other => return Err(WireError::UnknownOpcode(other)),
        })
    }

    /// Whether the client sends this opcode (terminate: both sides).
    pub fn sent_by_client(self) -> bool {
        matches!(
            self,
            Self::AuthRequest
                | Self::CreditAck
                | Self::CreditGiveUp
                | Self::RegisterFile
                | Self::Read
                | Self::ReadV
                | Self::ReadBatch
                | Self::Write
                | Self::WriteV
                | Self::WriteData
                | Self::Cancel
                | Self::Close
                | Self::InterruptRequest
                | Self::Keepalive
                | Self::Terminate
        )
    }

    /// Whether the server sends this opcode (terminate: both sides).
    pub fn sent_by_server(self) -> bool {
        !self.sent_by_client() || self == Self::Terminate
    }

    /// Whether a message of this opcode may carry a nonzero
    /// [`HeaderWire::demand`]: a client's message on an open connection
    /// (not its `AuthRequest`, nor a `Terminate`, which either side sends).
    pub fn may_carry_demand(self) -> bool {
        self.sent_by_client() && !matches!(self, Self::AuthRequest | Self::Terminate)
    }

    /// Flags this opcode may carry.
    pub fn allowed_flags(self) -> Flags {
        match self {
            Self::Read | Self::ReadV | Self::ReadBatch | Self::Write => Flags::INTERRUPT,
            Self::WriteV => Flags::INTERRUPT.union(Flags::COLLAPSE),
            _ => Flags::empty(),
        }
    }
}

/// The header as it sits on the wire.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct HeaderWire {
    /// Protocol version (1).
    pub version: u8,
    /// [`Opcode`] byte.
    pub opcode: u8,
    /// [`Flags`] bits.
    pub flags: U16,
    /// Credits (see module docs).
    pub credits: U16,
    /// The client's credit demand (see the module docs); zero where the
    /// capability does not apply.
    pub demand: U16,
    /// Request id chosen by the client; replies echo it.
    pub request_id: U32,
    /// Payload bytes following the header.
    pub length: U32,
}

/// The validated header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Header {
    /// The opcode.
    pub opcode: Opcode,
    /// The flags, already checked against [`Opcode::allowed_flags`].
    pub flags: Flags,
    /// Credits (see module docs).
    pub credits: u16,
    /// A client request's credit demand (see module docs), else 0.
    pub demand: u16,
    /// Request id.
    pub request_id: u32,
    /// Payload length in bytes.
    pub length: u32,
}

const _: () = assert!(size_of::<HeaderWire>() == HEADER_LEN);

#[cfg(feature = "defmt")]
impl defmt::Format for HeaderWire {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "HeaderWire {{ version: {=u8}, opcode: {=u8:#04x}, flags: {=u16:#06x}, credits: {=u16}, demand: {=u16}, request_id: {=u32}, length: {=u32} }}",
            self.version,
            self.opcode,
            self.flags.get(),
            self.credits.get(),
            self.demand.get(),
            self.request_id.get(),
            self.length.get()
        )
    }
}

impl Header {
    /// Parse and validate the [`HEADER_LEN`] bytes at the start of `buf`; the
    /// payload is not examined (a driver may peek at the opcode and request
    /// id of a message it then fails to parse, to answer or count it).
    ///
    /// Checked in this order: length, version (first, since a later version
    /// may change everything after it), opcode, flags (the offending bits are
    /// reported: undefined ones and those [`Opcode::allowed_flags`] excludes),
    /// reserved.
    pub fn parse(buf: &[u8]) -> Result<Self, WireError> {
        Self::split(buf).map(|(header, _payload)| header)
    }

    /// [`Header::parse`], also returning the bytes after the header.
    pub(crate) fn split(buf: &[u8]) -> Result<(Self, &[u8]), WireError> {
        let (wire, payload) = take::<HeaderWire>(buf, 0)?;
        if wire.version != VERSION_1_BYTE {
            return Err(WireError::UnsupportedVersion(u16::from(wire.version)));
        }
        let opcode = Opcode::from_u8(wire.opcode)?;
        let bits = wire.flags.get();
        let disallowed = bits & !opcode.allowed_flags().bits();
        if disallowed != 0 {
            return Err(WireError::UnknownFlags(disallowed));
        }
        // Only a request on an open session may carry a demand; whether
        // its session negotiated it, the connection checks.
        if !opcode.may_carry_demand() {
            reserved_zero(wire.demand.get())?;
        }
        let header = Self {
            opcode,
            flags: Flags::from_bits_retain(bits),
            credits: wire.credits.get(),
            demand: wire.demand.get(),
            request_id: wire.request_id.get(),
            length: wire.length.get(),
        };
        Ok((header, payload))
    }

    /// The header as it goes on the wire.
    pub fn to_wire(&self) -> HeaderWire {
        HeaderWire {
            version: VERSION_1_BYTE,
            opcode: self.opcode as u8,
            flags: U16::new(self.flags.bits()),
            credits: U16::new(self.credits),
            demand: U16::new(self.demand),
            request_id: U32::new(self.request_id),
            length: U32::new(self.length),
        }
    }
}

/// The `demand` field of the message in `buf` (`None` if shorter than a
/// header).
#[inline(always)]
pub fn demand_of(buf: &[u8]) -> Option<u16> {
    let (wire, _) = HeaderWire::ref_from_prefix(buf).ok()?;
    Some(wire.demand.get())
}
