//! The frames the two ends exchange over their Unix socket.
//!
//! Every frame is a 16-byte header, little endian — `kind: u32`,
//! `len: u32` (payload bytes that follow), `value: u32` (kind-specific),
//! `placed: u32` (how many [`Kind::WriteInline`] frames the sender of this
//! frame has placed so far, wrapping: the acknowledgement that lets the
//! peer write those bytes again directly) — and `len` bytes of payload.
//! Small sends carry user data; RDMA writes are `process_vm_writev` calls
//! and only their immediate crosses the socket, except a small
//! write-with-immediate, which crosses it whole ([`Kind::WriteInline`]);
//! a large send crosses it as a reference the receiver copies from with
//! `process_vm_readv` ([`Kind::SendRef`]).

use rdio_transport::WcError;

/// Header size in bytes.
pub(crate) const HEADER: usize = 16;

/// `b"rdio-cma"`: the first bytes of every hello and of the memory probe.
pub(crate) const MAGIC: [u8; 8] = *b"rdio-cma";

/// Wire version; a peer with another one is refused at the handshake.
/// Version 2: the header's last word acknowledges inline writes
/// ([`Kind::WriteInline`], [`Kind::Ack`]); it was reserved (zero) in 1.
pub(crate) const VERSION: u32 = 2;

/// Payload of [`Kind::Hello`]: magic, version, and where the sender keeps
/// its 16-byte probe (magic + nonce), which the receiver reads with
/// `process_vm_readv` to prove that cross-memory attach works between them.
pub(crate) const HELLO_LEN: usize = 32;

/// Payload of [`Kind::Advertise`]: address and length of the window.
pub(crate) const ADVERTISE_LEN: usize = 16;

/// Bytes per gather element in a [`Kind::SendRef`] payload: address and
/// length in the sender's memory (the same encoding as an advertisement).
pub(crate) const REF_LEN: usize = ADVERTISE_LEN;

/// The target at the start of a [`Kind::WriteInline`] payload: address
/// (u64) and key (u32) in the receiver's memory, then a zero u32.
pub(crate) const TARGET_LEN: usize = 16;

/// What a frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Connection setup, once each way (see [`HELLO_LEN`]).
    Hello,
    /// A send of `len` bytes into the receiver's oldest posted receive.
    Send,
    /// The notification half of a write-with-immediate: consumes the
    /// oldest posted receive; `value` is the immediate. `len` is 0.
    WriteImm,
    /// The sender registered a remotely writable region: `value` is its
    /// key, the payload its address and length. Peers write only into
    /// windows advertised this way.
    Advertise,
    /// The sender deregistered the region with key `value`: write no more.
    Revoke,
    /// Answer to a [`Kind::Revoke`]: no write into that region is in
    /// progress or will follow, so its memory may be freed.
    RevokeAck,
    /// The sender hit a protocol error caused by us and is closing;
    /// `value` is a [`WcError`] code ([`error_code`]).
    Error,
    /// A send of `value` bytes by reference: the payload lists `len /
    /// REF_LEN` (address, length) pieces of the sender's memory, which the
    /// receiver copies into its oldest posted receive with
    /// `process_vm_readv` — one copy instead of two through the socket.
    SendRef,
    /// Answer to the oldest unanswered [`Kind::SendRef`]: its bytes are
    /// copied, the sender's buffer is free.
    SendAck,
    /// A small write-with-immediate carried whole: the payload is its
    /// target ([`TARGET_LEN`] bytes) and then its data, which the
    /// receiver places in its own memory before it completes the oldest
    /// posted receive with the immediate (`value`) — one frame instead of
    /// a `process_vm_writev` and a frame. Counted in the receiver's
    /// `placed`.
    WriteInline,
    /// Nothing but the header's `placed`: sent by a side that owes an
    /// acknowledgement and had no other frame to carry it when it went
    /// idle.
    Ack,
}

impl Kind {
    const TABLE: [(Self, u32); 11] = [
        (Self::Hello, 1),
        (Self::Send, 2),
        (Self::WriteImm, 3),
        (Self::Advertise, 4),
        (Self::Revoke, 5),
        (Self::RevokeAck, 6),
        (Self::Error, 7),
        (Self::SendRef, 8),
        (Self::SendAck, 9),
        (Self::WriteInline, 10),
        (Self::Ack, 11),
    ];

    fn code(self) -> u32 {
        Self::TABLE
            .iter()
            .find(|(kind, _)| *kind == self)
            .map_or(0, |&(_, code)| code)
    }

    fn from_code(code: u32) -> Option<Self> {
        Self::TABLE
            .iter()
            .find(|&&(_, c)| c == code)
            .map(|&(kind, _)| kind)
    }
}

/// A decoded header (its `placed` word is read with [`placed_of`] and
/// written with [`set_placed`], at the moment the frame goes out).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) kind: Kind,
    pub(crate) len: u32,
    pub(crate) value: u32,
}

/// Why a header was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BadHeader {
    UnknownKind(u32),
}

impl Header {
    pub(crate) fn new(kind: Kind, len: u32, value: u32) -> Self {
        Self { kind, len, value }
    }

    /// The header's bytes, its `placed` word 0 until [`set_placed`].
    pub(crate) fn encode(self) -> [u8; HEADER] {
        let mut out = [0u8; HEADER];
        out[0..4].copy_from_slice(&self.kind.code().to_le_bytes());
        out[4..8].copy_from_slice(&self.len.to_le_bytes());
        out[8..12].copy_from_slice(&self.value.to_le_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8; HEADER]) -> Result<Self, BadHeader> {
        let word =
            |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let code = word(0);
        let kind = Kind::from_code(code).ok_or(BadHeader::UnknownKind(code))?;
        Ok(Self {
            kind,
            len: word(4),
            value: word(8),
        })
    }
}

/// The `placed` word of an encoded header.
pub(crate) fn placed_of(bytes: &[u8; HEADER]) -> u32 {
    u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]])
}

/// Set the `placed` word of an encoded header.
pub(crate) fn set_placed(bytes: &mut [u8; HEADER], placed: u32) {
    bytes[12..16].copy_from_slice(&placed.to_le_bytes());
}

/// A [`Kind::WriteInline`]'s target: where in the receiver it goes.
pub(crate) fn target(addr: u64, key: u32) -> [u8; TARGET_LEN] {
    let mut out = [0u8; TARGET_LEN];
    out[0..8].copy_from_slice(&addr.to_le_bytes());
    out[8..12].copy_from_slice(&key.to_le_bytes());
    out
}

/// `(addr, key)` of a [`Kind::WriteInline`]'s target, or `None` when its
/// last word is not zero.
pub(crate) fn parse_target(bytes: &[u8; TARGET_LEN]) -> Option<(u64, u32)> {
    let mut addr = [0u8; 8];
    addr.copy_from_slice(&bytes[0..8]);
    let key = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    (bytes[12..16] == [0; 4]).then_some((u64::from_le_bytes(addr), key))
}

/// [`WcError`]s an [`Kind::Error`] frame can carry, with their codes.
const ERRORS: [(WcError, u32); 4] = [
    (WcError::ReceiverNotReady, 1),
    (WcError::RemoteOperation, 2),
    (WcError::RemoteAccess, 3),
    (WcError::Disconnected, 4),
];

pub(crate) fn error_code(error: WcError) -> u32 {
    ERRORS
        .iter()
        .find(|(e, _)| *e == error)
        .map_or(4, |&(_, code)| code)
}

/// Unknown codes are a lost connection: the peer is closing either way.
pub(crate) fn error_of(code: u32) -> WcError {
    ERRORS
        .iter()
        .find(|&&(_, c)| c == code)
        .map_or(WcError::Disconnected, |&(e, _)| e)
}

/// The hello payload.
pub(crate) fn hello(probe_addr: u64, nonce: u64) -> [u8; HELLO_LEN] {
    let mut out = [0u8; HELLO_LEN];
    out[0..8].copy_from_slice(&MAGIC);
    out[8..12].copy_from_slice(&VERSION.to_le_bytes());
    out[16..24].copy_from_slice(&probe_addr.to_le_bytes());
    out[24..32].copy_from_slice(&nonce.to_le_bytes());
    out
}

/// A peer's hello: `(version, probe_addr, nonce)`, or `None` without the magic.
pub(crate) fn parse_hello(payload: &[u8; HELLO_LEN]) -> Option<(u32, u64, u64)> {
    if payload[0..8] != MAGIC {
        return None;
    }
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&payload[i..i + 8]);
        u64::from_le_bytes(b)
    };
    let version = u32::from_le_bytes([payload[8], payload[9], payload[10], payload[11]]);
    Some((version, u64_at(16), u64_at(24)))
}

/// The probe a peer reads: magic followed by the nonce.
pub(crate) fn probe(nonce: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[0..8].copy_from_slice(&MAGIC);
    out[8..16].copy_from_slice(&nonce.to_le_bytes());
    out
}

/// An (address, length) pair: the payload of [`Kind::Advertise`], and each
/// piece of a [`Kind::SendRef`]'s.
pub(crate) fn span(addr: u64, len: u64) -> [u8; REF_LEN] {
    let mut out = [0u8; REF_LEN];
    out[0..8].copy_from_slice(&addr.to_le_bytes());
    out[8..16].copy_from_slice(&len.to_le_bytes());
    out
}

pub(crate) fn parse_span(payload: &[u8; REF_LEN]) -> (u64, u64) {
    let mut addr = [0u8; 8];
    let mut len = [0u8; 8];
    addr.copy_from_slice(&payload[0..8]);
    len.copy_from_slice(&payload[8..16]);
    (u64::from_le_bytes(addr), u64::from_le_bytes(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_unknown_kinds_are_refused() {
        for (kind, _) in Kind::TABLE {
            let header = Header::new(kind, 0x0102_0304, 0xdead_beef);
            assert_eq!(Header::decode(&header.encode()), Ok(header));
        }
        let mut bytes = Header::new(Kind::Send, 1, 2).encode();
        bytes[0] = 99;
        assert_eq!(Header::decode(&bytes), Err(BadHeader::UnknownKind(99)));
        let mut bytes = Header::new(Kind::Send, 1, 2).encode();
        assert_eq!(placed_of(&bytes), 0);
        set_placed(&mut bytes, 0x0506_0708);
        assert_eq!(placed_of(&bytes), 0x0506_0708);
        assert_eq!(Header::decode(&bytes), Ok(Header::new(Kind::Send, 1, 2)));
        assert_eq!(
            parse_target(&target(0x7f00_1234, 9)),
            Some((0x7f00_1234, 9))
        );
        let mut bad = target(1, 2);
        bad[15] = 1;
        assert_eq!(parse_target(&bad), None);
    }

    #[test]
    fn hello_and_advertise_payloads_round_trip() {
        let hello_bytes = hello(0x7fff_0000_1000, 42);
        assert_eq!(
            parse_hello(&hello_bytes),
            Some((VERSION, 0x7fff_0000_1000, 42))
        );
        let mut wrong = hello_bytes;
        wrong[0] = b'x';
        assert_eq!(parse_hello(&wrong), None);
        assert_eq!(parse_span(&span(7, 9)), (7, 9));
        for (error, code) in ERRORS {
            assert_eq!(error_of(error_code(error)), error);
            assert_eq!(error_code(error), code);
        }
        assert_eq!(error_of(1000), WcError::Disconnected);
    }
}
