//! Phase 4, I/O messages: `Read`, `ReadV`, `Write`, `WriteV` and `WriteData`
//! (claims 1, 15–17), their segments, wire layouts and checks, and the
//! fixed-layout fast path for the most frequent message, a Read.

use super::*;

/// One segment of a vectored read: file bytes at `offset`, `dest.len()` of
/// them, land in `dest` (24 bytes on the wire).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct ReadSegment {
    offset: U64,
    dest: BufferDescriptor,
}

impl ReadSegment {
    /// A segment reading `dest.len()` bytes at file `offset` into `dest`.
    pub const fn new(offset: u64, dest: BufferDescriptor) -> Self {
        Self {
            offset: U64::new(offset),
            dest,
        }
    }
    /// File offset.
    pub fn offset(&self) -> u64 {
        self.offset.get()
    }
    /// Client memory receiving the bytes.
    pub fn dest(&self) -> BufferDescriptor {
        self.dest
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for ReadSegment {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "ReadSegment {{ offset: {=u64}, dest: {} }}",
            self.offset(),
            self.dest()
        )
    }
}

/// One segment of a vectored write: `len` bytes at file `offset` (16 bytes on
/// the wire; the last 4 are reserved, zero).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct WriteSegment {
    offset: U64,
    len: U32,
    reserved: U32,
}

impl WriteSegment {
    /// A segment writing `len` bytes at file `offset`.
    pub const fn new(offset: u64, len: u32) -> Self {
        Self {
            offset: U64::new(offset),
            len: U32::new(len),
            reserved: U32::new(0),
        }
    }
    /// File offset.
    pub fn offset(&self) -> u64 {
        self.offset.get()
    }
    /// Bytes written at that offset.
    pub fn len(&self) -> u32 {
        self.len.get()
    }
    /// Whether the segment is empty.
    pub fn is_empty(&self) -> bool {
        self.len.get() == 0
    }
    /// Whether the reserved field is zero (checked by the parser).
    pub(crate) fn reserved_is_zero(&self) -> bool {
        self.reserved.get() == 0
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for WriteSegment {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "WriteSegment {{ offset: {=u64}, len: {=u32} }}",
            self.offset(),
            self.len()
        )
    }
}

/// One read of a `ReadBatch` (48 bytes on the wire): a Read's fields with
/// its own request id, which its status block carries. Its offset and
/// destination are laid out as a [`ReadSegment`] is, and kept as one: a
/// server hands the read over as its segment, borrowed where it is.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct BatchRead {
    request_id: U32,
    handle: U32,
    segment: ReadSegment,
    status: BufferDescriptor,
}

impl BatchRead {
    /// Read `dest.len()` bytes at `offset` of `handle` into `dest`, as
    /// request `request_id`, its status block into `status`.
    pub const fn new(
        request_id: u32,
        handle: u32,
        offset: u64,
        dest: BufferDescriptor,
        status: BufferDescriptor,
    ) -> Self {
        Self {
            request_id: U32::new(request_id),
            handle: U32::new(handle),
            segment: ReadSegment::new(offset, dest),
            status,
        }
    }
    /// The read's request id (its status block's first word).
    pub fn request_id(&self) -> u32 {
        self.request_id.get()
    }
    /// Registered file handle.
    pub fn handle(&self) -> u32 {
        self.handle.get()
    }
    /// File offset.
    pub fn offset(&self) -> u64 {
        self.segment.offset()
    }
    /// Client memory receiving the bytes (its length is the read length).
    pub fn dest(&self) -> BufferDescriptor {
        self.segment.dest
    }
    /// Where the read's status block goes.
    pub fn status(&self) -> BufferDescriptor {
        self.status
    }
    /// The read as one segment.
    pub fn segment(&self) -> ReadSegment {
        self.segment
    }
    /// The read as one segment, where it is.
    pub(crate) fn segment_ref(&self) -> &ReadSegment {
        &self.segment
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for BatchRead {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "BatchRead {{ id: {=u32}, handle: {=u32}, offset: {=u64}, dest: {}, status: {} }}",
            self.request_id(),
            self.handle(),
            self.offset(),
            self.dest(),
            self.status()
        )
    }
}

/// Several reads in one message (the read-batch extension): each is
/// answered by its own status block; with `INTERRUPT`, the block written
/// last carries the batch's immediate (the header's request id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ReadBatchRequest<'a> {
    /// 1..=[`MAX_BATCH`](crate::wire::MAX_BATCH) reads.
    pub reads: &'a [BatchRead],
}

/// Read `dest.len()` bytes at `offset` of `handle` into client memory `dest`;
/// completion goes to `status` (claims 15, 16, 20).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ReadRequest {
    /// Registered file handle.
    pub handle: u32,
    /// File offset.
    pub offset: u64,
    /// Where the data goes (its length is the read length).
    pub dest: BufferDescriptor,
    /// Where the status block goes.
    pub status: BufferDescriptor,
}

/// Vectored read: each segment is an independent (file offset, client buffer)
/// pair; one status block for the whole request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ReadVRequest<'a> {
    /// Registered file handle.
    pub handle: u32,
    /// Where the status block goes.
    pub status: BufferDescriptor,
    /// 1..=[`MAX_SEGMENTS`](crate::wire::MAX_SEGMENTS) segments.
    pub segments: &'a [ReadSegment],
}

/// Write `total_len` bytes at `offset`; the first `data.len()` bytes ride in
/// this message, the rest in [`Body::WriteData`] fragments (claim 1: write
/// data travels in sends, never RDMA).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct WriteRequest<'a> {
    /// Registered file handle.
    pub handle: u32,
    /// File offset.
    pub offset: u64,
    /// Bytes in the whole write, over all fragments.
    pub total_len: u32,
    /// Where the status block goes.
    pub status: BufferDescriptor,
    /// The first fragment of the data.
    pub data: &'a [u8],
}

/// Vectored write. Without COLLAPSE the data is the concatenation of all
/// segments (`total_len` = sum of lengths); with COLLAPSE every segment has the
/// same length and receives the same bytes, carried once (`total_len` = that
/// length) — claim 17.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct WriteVRequest<'a> {
    /// Registered file handle.
    pub handle: u32,
    /// Bytes of data carried over all fragments.
    pub total_len: u32,
    /// Where the status block goes.
    pub status: BufferDescriptor,
    /// 1..=[`MAX_SEGMENTS`](crate::wire::MAX_SEGMENTS) segments.
    pub segments: &'a [WriteSegment],
    /// The first fragment of the data.
    pub data: &'a [u8],
}

/// Read.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(super) struct ReadWire {
    pub(super) handle: U32,
    pub(super) reserved: U32,
    pub(super) offset: U64,
    pub(super) dest: BufferDescriptor,
    pub(super) status: BufferDescriptor,
}

/// A whole Read message: header and payload (the encoder's fast path).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(super) struct ReadMessageWire {
    pub(super) header: HeaderWire,
    pub(super) read: ReadWire,
}

/// A Write message's prefix: header and fixed payload; the first
/// fragment's data follows (the encoder's fast path).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(super) struct WriteMessageWire {
    pub(super) header: HeaderWire,
    pub(super) write: WriteWire,
}

/// ReadV, followed by `count` [`ReadSegment`]s.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(super) struct ReadVWire {
    pub(super) handle: U32,
    pub(super) count: U16,
    pub(super) reserved: U16,
    pub(super) status: BufferDescriptor,
}

/// ReadBatch, followed by `count` [`BatchRead`]s.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(super) struct ReadBatchWire {
    pub(super) count: U16,
    pub(super) reserved: U16,
    pub(super) reserved2: U32,
}

/// Write, followed by data.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(super) struct WriteWire {
    pub(super) handle: U32,
    pub(super) total_len: U32,
    pub(super) offset: U64,
    pub(super) status: BufferDescriptor,
}

/// WriteV, followed by `count` [`WriteSegment`]s, then data.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(super) struct WriteVWire {
    pub(super) handle: U32,
    pub(super) count: U16,
    pub(super) reserved: U16,
    pub(super) total_len: U32,
    pub(super) reserved2: U32,
    pub(super) status: BufferDescriptor,
}

/// WriteData, followed by data.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(super) struct WriteDataWire {
    pub(super) data_offset: U32,
    pub(super) reserved: U32,
}

/// A segment count must be `1..=MAX_SEGMENTS`.
pub(super) fn segment_count(count: u16) -> Result<usize, WireError> {
    match usize::from(count) {
        0 => Err(WireError::InvalidField),
        n if n > MAX_SEGMENTS => Err(WireError::TooMany),
        n => Ok(n),
    }
}

/// Whether a first fragment of `data` fits in a write of `total_len` bytes.
pub(super) fn fits(data: &[u8], total_len: u32) -> bool {
    u32::try_from(data.len()).is_ok_and(|len| len <= total_len)
}

/// `buf` as a valid Read message, or `None` for the general parser to
/// decide (and name the error). The fixed-layout fast path of
/// [`Message::parse`], public for drivers that look at a message on their
/// hot path (the server's latency timing).
pub fn parse_read(buf: &[u8]) -> Option<Message<'static>> {
    parse_read_fields(buf).map(|read| Message {
        flags: read.flags(),
        credits: read.credits(),
        demand: read.demand(),
        request_id: read.request_id(),
        body: Body::Read(read.request()),
    })
}

/// The header checks every fixed-layout fast parse makes (`parse_write`,
/// `parse_read_fields`, `parse_read_batch_fields`): version 1, `opcode`,
/// no flag but `INTERRUPT`, and a length that is the opcode's `fixed`
/// payload plus the `rest` after it (the `demand` word, which these
/// client requests may carry, is the connection's to check). Anything
/// else is left to the general parser, for its exact error.
/// The first three (version, opcode, flags: the header's first four bytes)
/// are one compare of one little-endian word, `INTERRUPT` masked out.
#[inline(always)]
fn fixed_header_ok(header: &HeaderWire, opcode: Opcode, fixed: usize, rest: usize) -> bool {
    let Some(&head) = header.as_bytes().first_chunk::<4>() else {
        return false;
    };
    let head = u32::from_le_bytes(head);
    let interrupt = u32::from(Flags::INTERRUPT.bits()) << 16;
    let expected = u32::from_le_bytes([VERSION_1_BYTE, opcode as u8, 0, 0]);
    head & !interrupt == expected
        && rest
            .checked_add(fixed)
            .is_some_and(|payload| usize::try_from(header.length.get()) == Ok(payload))
}

/// `buf` as a valid Write message (its first fragment's data borrowed from
/// `buf`), or `None` for the general parser to decide (and name the
/// error): the fixed-prefix fast path of [`Message::parse`] for the I/O
/// path's most frequent message after Read.
#[inline]
pub fn parse_write(buf: &[u8]) -> Option<Message<'_>> {
    let (wire, data) = WriteMessageWire::ref_from_prefix(buf).ok()?;
    let header = &wire.header;
    let flags = header.flags.get();
    let total_len = wire.write.total_len.get();
    let valid = fixed_header_ok(header, Opcode::Write, size_of::<WriteWire>(), data.len())
        && total_len != 0
        && fits(data, total_len);
    if !valid {
        return None;
    }
    Some(Message {
        flags: Flags::from_bits_retain(flags),
        credits: header.credits.get(),
        demand: header.demand.get(),
        request_id: header.request_id.get(),
        body: Body::Write(WriteRequest {
            handle: wire.write.handle.get(),
            offset: wire.write.offset.get(),
            total_len,
            status: wire.write.status,
            data,
        }),
    })
}

/// A valid Read message, where it lies in the receive buffer (what
/// [`parse_read`] wraps in a [`Message`]; the server's request path reads
/// the fields it needs from it as it needs them, so none is held in a
/// register, or spilled, while the others are checked).
#[derive(Clone, Copy)]
pub(crate) struct ReadFields<'a>(&'a ReadMessageWire);

impl<'a> ReadFields<'a> {
    /// The header's flags (`INTERRUPT` or none: [`fixed_header_ok`]).
    #[inline(always)]
    pub(crate) fn flags(self) -> Flags {
        Flags::from_bits_retain(self.0.header.flags.get())
    }
    /// The header's credits.
    #[inline(always)]
    pub(crate) fn credits(self) -> u16 {
        self.0.header.credits.get()
    }
    /// The request id.
    #[inline(always)]
    pub(crate) fn request_id(self) -> u32 {
        self.0.header.request_id.get()
    }
    /// The header's credit demand (the connection checks it is allowed).
    #[inline(always)]
    pub(crate) fn demand(self) -> u16 {
        self.0.header.demand.get()
    }
    /// The registered file handle.
    #[inline(always)]
    pub(crate) fn handle(self) -> u32 {
        self.0.read.handle.get()
    }
    /// The file offset.
    #[inline(always)]
    pub(crate) fn offset(self) -> u64 {
        self.0.read.offset.get()
    }
    /// Where the data goes (its length, not 0, is the read length).
    #[inline(always)]
    pub(crate) fn dest(self) -> BufferDescriptor {
        self.0.read.dest
    }
    /// Where the status block goes.
    #[inline(always)]
    pub(crate) fn status(self) -> BufferDescriptor {
        self.0.read.status
    }
    /// The read's payload as it lies in the message (handle, a reserved
    /// word, offset, destination, status descriptor), for a copy kept
    /// whole.
    #[inline(always)]
    pub(crate) fn payload(self) -> &'a [u8; READ_PAYLOAD_LEN] {
        zerocopy::transmute_ref!(&self.0.read)
    }
    /// The read as [`Body::Read`] holds it.
    #[inline(always)]
    pub(crate) fn request(self) -> ReadRequest {
        ReadRequest {
            handle: self.handle(),
            offset: self.offset(),
            dest: self.dest(),
            status: self.status(),
        }
    }
}

/// `buf` as a valid Read message, or `None` (see [`parse_read`]).
#[inline]
pub(crate) fn parse_read_fields(buf: &[u8]) -> Option<ReadFields<'_>> {
    let wire = ReadMessageWire::ref_from_bytes(buf).ok()?;
    let valid = fixed_header_ok(&wire.header, Opcode::Read, size_of::<ReadWire>(), 0)
        && wire.read.reserved.get() == 0
        && !wire.read.dest.is_empty();
    valid.then_some(ReadFields(wire))
}

/// A ReadBatch message's fields, valid but maybe for its reads'
/// destinations: what [`Message::parse`] gives for it, without the
/// [`Message`] or the general parser's dispatch (the server's batch path
/// takes them as they are).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ReadBatchFields<'a> {
    pub(crate) flags: Flags,
    pub(crate) credits: u16,
    pub(crate) request_id: u32,
    pub(crate) reads: &'a [BatchRead],
}

/// `buf` as a ReadBatch message's fields, by one fixed-layout check of its
/// head (header, count, reserved fields, a length that is the count's);
/// `None` for anything else, which the general parser then takes (for its
/// exact error, or its other message). The reads are not looked at: the
/// message is valid only if none has an empty destination, which the
/// caller checks in its own pass over them (or hands the message to the
/// general parser, whose error that is). `tests::read_batch_fast_parse_agrees`
/// holds the two to the same answers.
// Out of line: inlined, it costs the batch's pass over its reads in
// `take_other` more (registers) than the call.
#[inline(never)]
pub(crate) fn parse_read_batch_fields(buf: &[u8]) -> Option<ReadBatchFields<'_>> {
    let (head, rest) = ReadBatchHeadWire::ref_from_prefix(buf).ok()?;
    let header = &head.header;
    let flags = header.flags.get();
    let count = usize::from(head.batch.count.get());
    let valid = fixed_header_ok(
        header,
        Opcode::ReadBatch,
        size_of::<ReadBatchWire>(),
        rest.len(),
    ) && head.batch.reserved.get() == 0
        && head.batch.reserved2.get() == 0
        && (1..=MAX_BATCH).contains(&count);
    if !valid {
        return None;
    }
    let reads = <[BatchRead]>::ref_from_bytes_with_elems(rest, count).ok()?;
    Some(ReadBatchFields {
        flags: Flags::from_bits_retain(flags),
        credits: header.credits.get(),
        request_id: header.request_id.get(),
        reads,
    })
}

/// Bytes of a Read's payload ([`ReadFields::payload`]).
pub(crate) const READ_PAYLOAD_LEN: usize = size_of::<ReadWire>();

/// Bytes [`emit_read`] writes: header and read payload.
pub(crate) const READ_MESSAGE_LEN: usize = size_of::<ReadMessageWire>();

/// Encode a whole Read message into `buf` as one fixed-size struct: what
/// [`Message::emit`] writes for [`Body::Read`], without building the
/// [`Message`] (the client's request path calls [`emit_read_fields`]
/// directly). `buf` is untouched when shorter than the message's 64 bytes.
#[inline]
pub(crate) fn emit_read(
    buf: &mut [u8],
    flags: Flags,
    credits: u16,
    demand: u16,
    request_id: u32,
    read: &ReadRequest,
) -> Result<usize, InsufficientSize> {
    emit_read_fields(
        buf,
        flags,
        credits,
        demand,
        request_id,
        read.handle,
        read.offset,
        &read.dest,
        &read.status,
    )
}

/// [`emit_read`] of the read's fields, the descriptors read from where
/// they are (the client's request record): the struct is laid over `buf`
/// and filled in place, each field stored once where it goes, nothing
/// built aside and copied. `buf` is untouched when shorter than the
/// message's 64 bytes.
// The header's five fields and the read's four.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn emit_read_fields(
    buf: &mut [u8],
    flags: Flags,
    credits: u16,
    demand: u16,
    request_id: u32,
    handle: u32,
    offset: u64,
    dest: &BufferDescriptor,
    status: &BufferDescriptor,
) -> Result<usize, InsufficientSize> {
    const LEN: usize = size_of::<ReadMessageWire>();
    const PAYLOAD: u32 = size_of::<ReadWire>() as u32;
    let Ok((wire, _)) = ReadMessageWire::mut_from_prefix(buf) else {
        return Err(InsufficientSize { required: LEN });
    };
    wire.header = Header {
        opcode: Opcode::Read,
        flags,
        credits,
        request_id,
        demand,
        length: PAYLOAD,
    }
    .to_wire();
    wire.read.handle = handle.into();
    wire.read.reserved = U32::ZERO;
    wire.read.offset = offset.into();
    wire.read.dest = *dest;
    wire.read.status = *status;
    Ok(LEN)
}

/// A ReadBatch message's head: header and fixed payload; the batch's
/// [`BatchRead`]s follow (the client's batch path writes them there itself).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct ReadBatchHeadWire {
    header: HeaderWire,
    batch: ReadBatchWire,
}

/// Bytes [`emit_read_batch_head`] writes: header and batch payload.
pub(crate) const READ_BATCH_HEAD_LEN: usize = size_of::<ReadBatchHeadWire>();

/// Length of a `ReadBatch` of [`MAX_BATCH`](crate::wire::MAX_BATCH) reads,
/// the longest there is (792 bytes): a client whose send buffers hold it
/// sends full batches; a shorter buffer (or send size) caps the reads of a
/// batch at what fits.
pub const MAX_READ_BATCH_LEN: usize =
    READ_BATCH_HEAD_LEN + crate::wire::MAX_BATCH * size_of::<BatchRead>();

/// Encode the head of a ReadBatch of `count` reads into `buf`: what
/// [`Message::emit`] writes for [`Body::ReadBatch`] before its reads,
/// which the caller has written right after it (`count` of them, 48 bytes
/// each, from [`READ_BATCH_HEAD_LEN`]). `buf` is untouched when shorter
/// than the head's [`READ_BATCH_HEAD_LEN`] (24) bytes.
pub(crate) fn emit_read_batch_head(
    buf: &mut [u8],
    flags: Flags,
    credits: u16,
    demand: u16,
    request_id: u32,
    count: u16,
) -> Result<usize, InsufficientSize> {
    let reads = u32::from(count).saturating_mul(size_of::<BatchRead>() as u32);
    let wire = ReadBatchHeadWire {
        header: Header {
            opcode: Opcode::ReadBatch,
            flags,
            credits,
            demand,
            request_id,
            length: reads.saturating_add(size_of::<ReadBatchWire>() as u32),
        }
        .to_wire(),
        batch: ReadBatchWire {
            count: count.into(),
            reserved: U16::ZERO,
            reserved2: U32::ZERO,
        },
    };
    wire.write_to_prefix(buf).map_err(|_| InsufficientSize {
        required: READ_BATCH_HEAD_LEN,
    })?;
    Ok(READ_BATCH_HEAD_LEN)
}

/// Bytes [`emit_write_prefix`] writes: header and write payload.
pub(crate) const WRITE_PREFIX_LEN: usize = size_of::<WriteMessageWire>();

/// Encode the prefix of a Write message whose first fragment carries
/// `data_len` bytes (gathered after the prefix by the driver) into `buf`:
/// what [`Message::emit_prefix`] writes for [`Body::Write`] with the
/// payload length counting the data, without building the [`Message`].
/// `buf` is untouched when shorter than the prefix's 48 bytes.
pub(crate) fn emit_write_prefix(
    buf: &mut [u8],
    flags: Flags,
    credits: u16,
    demand: u16,
    request_id: u32,
    write: &WriteRequest<'_>,
    data_len: u32,
) -> Result<usize, InsufficientSize> {
    const FIXED: u32 = size_of::<WriteWire>() as u32;
    let wire = WriteMessageWire {
        header: Header {
            opcode: Opcode::Write,
            flags,
            credits,
            demand,
            request_id,
            length: FIXED.saturating_add(data_len),
        }
        .to_wire(),
        write: WriteWire {
            handle: write.handle.into(),
            total_len: write.total_len.into(),
            offset: write.offset.into(),
            status: write.status,
        },
    };
    wire.write_to_prefix(buf).map_err(|_| InsufficientSize {
        required: WRITE_PREFIX_LEN,
    })?;
    Ok(WRITE_PREFIX_LEN)
}

impl ReadRequest {
    pub(super) fn parse(payload: &[u8]) -> Result<Self, WireError> {
        let wire = take_exact::<ReadWire>(payload, BASE)?;
        reserved_zero(wire.reserved.get())?;
        if wire.dest.is_empty() {
            return Err(WireError::InvalidField);
        }
        Ok(Self {
            handle: wire.handle.get(),
            offset: wire.offset.get(),
            dest: wire.dest,
            status: wire.status,
        })
    }
}

impl<'a> ReadVRequest<'a> {
    pub(super) fn parse(payload: &'a [u8]) -> Result<Self, WireError> {
        let (wire, rest) = take::<ReadVWire>(payload, BASE)?;
        reserved_zero(wire.reserved.get())?;
        let count = segment_count(wire.count.get())?;
        // The message is fixed-size given its count: anything else is a
        // length field that disagrees with the count.
        let segments = <[ReadSegment]>::ref_from_bytes_with_elems(rest, count)
            .map_err(|_| WireError::BadLength)?;
        if segments.iter().any(|segment| segment.dest.is_empty()) {
            return Err(WireError::InvalidField);
        }
        Ok(Self {
            handle: wire.handle.get(),
            status: wire.status,
            segments,
        })
    }
}

impl<'a> ReadBatchRequest<'a> {
    pub(super) fn parse(payload: &'a [u8]) -> Result<Self, WireError> {
        let (wire, rest) = take::<ReadBatchWire>(payload, BASE)?;
        reserved_zero(u32::from(wire.reserved.get()))?;
        reserved_zero(wire.reserved2.get())?;
        let count = match usize::from(wire.count.get()) {
            0 => return Err(WireError::InvalidField),
            n if n > MAX_BATCH => return Err(WireError::TooMany),
            n => n,
        };
        let reads = <[BatchRead]>::ref_from_bytes_with_elems(rest, count)
            .map_err(|_| WireError::BadLength)?;
        if reads.iter().any(|read| read.segment.dest.is_empty()) {
            return Err(WireError::InvalidField);
        }
        Ok(Self { reads })
    }
}

impl<'a> WriteRequest<'a> {
    pub(super) fn parse(payload: &'a [u8]) -> Result<Self, WireError> {
        let (wire, data) = take::<WriteWire>(payload, BASE)?;
        let total_len = wire.total_len.get();
        if total_len == 0 {
            return Err(WireError::InvalidField);
        }
        if !fits(data, total_len) {
            return Err(WireError::BadLength);
        }
        Ok(Self {
            handle: wire.handle.get(),
            offset: wire.offset.get(),
            total_len,
            status: wire.status,
            data,
        })
    }
}

impl<'a> WriteVRequest<'a> {
    pub(super) fn parse(flags: Flags, payload: &'a [u8]) -> Result<Self, WireError> {
        let (wire, rest) = take::<WriteVWire>(payload, BASE)?;
        reserved_zero(wire.reserved.get())?;
        reserved_zero(wire.reserved2.get())?;
        let count = segment_count(wire.count.get())?;
        let (segments, data) = <[WriteSegment]>::ref_from_prefix_with_elems(rest, count)
            .map_err(|_| WireError::BadLength)?;
        if !segments.iter().all(WriteSegment::reserved_is_zero) {
            return Err(WireError::ReservedNotZero);
        }
        if segments.iter().any(WriteSegment::is_empty) {
            return Err(WireError::InvalidField);
        }
        let total_len = wire.total_len.get();
        if total_len != Self::data_len(flags, segments)? || !fits(data, total_len) {
            return Err(WireError::BadLength);
        }
        Ok(Self {
            handle: wire.handle.get(),
            total_len,
            status: wire.status,
            segments,
            data,
        })
    }

    /// The data bytes `segments` need (claim 17): with COLLAPSE one copy of
    /// the common segment length, else the sum of the lengths.
    pub(super) fn data_len(flags: Flags, segments: &[WriteSegment]) -> Result<u32, WireError> {
        let mut lens = segments.iter().map(WriteSegment::len);
        if flags.contains(Flags::COLLAPSE) {
            let first = lens.next().ok_or(WireError::InvalidField)?;
            if lens.all(|len| len == first) {
                Ok(first)
            } else {
                Err(WireError::BadLength)
            }
        } else {
            lens.try_fold(0u32, u32::checked_add)
                .ok_or(WireError::BadLength)
        }
    }
}
