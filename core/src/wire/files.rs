//! Remote file operations on the side channel, pipe opcodes `0x22..=0x2F`:
//! list a directory by pages, look up one path's attributes, remove, make a
//! directory, rename, set a file's mode and modification time, and hash a
//! byte range of a file (how a client checks the prefix of a partial
//! download before it appends to it).
//!
//! These messages travel inside [`PipeMessage::File`](super::PipeMessage::File),
//! framed by the pipe header like every side-channel message, so every one
//! fits a pipe frame ([`MAX_PIPE_PAYLOAD`]): a directory listing is paged
//! (the client asks again from the last name it got), a name is at most
//! [`MAX_NAME_LEN`] bytes, a path at most [`MAX_PATH_LEN`].
//!
//! The server's side (confinement to the exported root, read-only exports,
//! the access log) is `docs/PROTOCOL.md`, "Remote file operations".

use super::codec::{Sink, Unencodable, reserved_zero, take, take_exact};
use super::types::Status;
use super::{InsufficientSize, MAX_PATH_LEN, MAX_PIPE_PAYLOAD, WireError};
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Longest name of a directory entry, in bytes (Linux `NAME_MAX`).
pub const MAX_NAME_LEN: usize = 255;
/// Most bytes one [`FileMessage::HashRequest`] may ask to hash (1 GiB): a
/// client checks a longer range in several requests, so no single answer
/// keeps the server (or the client's read timeout) waiting long.
pub const MAX_HASH_LEN: u64 = 1 << 30;
/// Length of a SHA-256 digest.
pub const SHA256_LEN: usize = 32;
/// The `algorithm` byte of a hash request and response: SHA-256, the only
/// one defined.
pub const HASH_SHA256: u8 = 1;
/// Permission bits a client may set ([`FileMessage::MakeDirRequest`],
/// [`FileMessage::SetAttrRequest`]): read, write and execute for owner,
/// group and others. Set-user-ID, set-group-ID and sticky bits are refused
/// (`InvalidField`): a client must not be able to make a file it uploaded
/// run with the server's identity.
pub const SETTABLE_MODE: u32 = 0o777;
/// Permission bits an entry's [`Attributes::mode`] may report.
pub const MODE_BITS: u32 = 0o7777;
/// Bytes of a listing page's fixed part (before its entries).
pub const LIST_RESPONSE_FIXED_LEN: usize = 8;
/// Bytes of an entry's fixed part in a listing (before its name).
pub const ATTRIBUTES_LEN: usize = 32;
/// Most entry bytes one listing page may carry: what a pipe frame holds
/// after the page's fixed part.
pub const MAX_LIST_ENTRY_BYTES: usize = MAX_PIPE_PAYLOAD - LIST_RESPONSE_FIXED_LEN;

/// What a directory entry or looked-up path is. Symbolic links are
/// reported as links (the server never follows the last component of a
/// looked-up path or a listed name).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum EntryKind {
    /// A regular file.
    File = 0,
    /// A directory.
    Directory = 1,
    /// A symbolic link.
    Symlink = 2,
    /// Anything else: a FIFO, socket or device (never served).
    Other = 3,
}

impl EntryKind {
    fn from_u8(byte: u8) -> Result<Self, WireError> {
        Ok(match byte {
            0 => Self::File,
            1 => Self::Directory,
            2 => Self::Symlink,
            3 => Self::Other,
            _ => return Err(WireError::InvalidField),
        })
    }

    /// A short name: `file`, `directory`, `symlink`, `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Directory => "directory",
            Self::Symlink => "symlink",
            Self::Other => "other",
        }
    }
}

/// The attributes of a path on the server (as `lstat` reports them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Attributes {
    /// What it is.
    pub kind: EntryKind,
    /// Permission bits (at most [`MODE_BITS`]).
    pub mode: u32,
    /// Size in bytes (of the link itself for a symlink).
    pub size: u64,
    /// Last modification, nanoseconds since the Unix epoch (0 before it).
    pub modified_ns: u64,
    /// An opaque identity, as in `StatResponse`: another value is another
    /// file.
    pub file_id: u64,
}

impl Attributes {
    /// All zero: what a response that is not `Success` carries.
    pub const NONE: Self = Self {
        kind: EntryKind::File,
        mode: 0,
        size: 0,
        modified_ns: 0,
        file_id: 0,
    };

    fn to_wire(self, name_len: u8) -> AttributesWire {
        AttributesWire {
            kind: self.kind as u8,
            name_len,
            reserved: U16::ZERO,
            mode: self.mode.into(),
            size: self.size.into(),
            modified_ns: self.modified_ns.into(),
            file_id: self.file_id.into(),
        }
    }

    fn from_wire(wire: &AttributesWire) -> Result<Self, WireError> {
        reserved_zero(wire.reserved.get())?;
        let mode = wire.mode.get();
        if mode & !MODE_BITS != 0 {
            return Err(WireError::InvalidField);
        }
        Ok(Self {
            kind: EntryKind::from_u8(wire.kind)?,
            mode,
            size: wire.size.get(),
            modified_ns: wire.modified_ns.get(),
            file_id: wire.file_id.get(),
        })
    }
}

/// One entry of a directory listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DirEntry<'a> {
    /// The entry's name in its directory ([`valid_name`]).
    pub name: &'a [u8],
    /// What it is.
    pub attributes: Attributes,
}

/// A name inside a directory: 1 to [`MAX_NAME_LEN`] bytes, neither `.` nor
/// `..`, no `/` and no NUL.
pub fn valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name != b"."
        && name != b".."
        && !name.iter().any(|&b| b == b'/' || b == 0)
}

/// The entries of one listing page: validated bytes, read by
/// [`DirEntries::iter`]. Built by a parse, or by a [`DirEntriesWriter`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DirEntries<'a> {
    count: u16,
    bytes: &'a [u8],
}

impl<'a> DirEntries<'a> {
    /// No entries.
    pub const EMPTY: DirEntries<'static> = DirEntries {
        count: 0,
        bytes: &[],
    };

    /// Validate `count` entries making up all of `bytes`: each one's fixed
    /// part, a [`valid_name`] of `name_len` bytes, reserved zero, a known
    /// kind, mode within [`MODE_BITS`]. Bytes left over, or too few, are
    /// [`WireError::BadLength`].
    pub fn parse(count: u16, bytes: &'a [u8]) -> Result<Self, WireError> {
        let mut rest = bytes;
        for _ in 0..count {
            let (_, after) = next_entry(rest)?;
            rest = after;
        }
        if !rest.is_empty() {
            return Err(WireError::BadLength);
        }
        Ok(Self { count, bytes })
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        usize::from(self.count)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The encoded entries.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The entries, in the order the server sent them (by name, bytewise).
    pub fn iter(&self) -> DirEntryIter<'a> {
        DirEntryIter {
            remaining: self.count,
            rest: self.bytes,
        }
    }
}

impl<'a> IntoIterator for &DirEntries<'a> {
    type Item = DirEntry<'a>;
    type IntoIter = DirEntryIter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Iterator over [`DirEntries`].
#[derive(Clone, Debug)]
pub struct DirEntryIter<'a> {
    remaining: u16,
    rest: &'a [u8],
}

impl<'a> Iterator for DirEntryIter<'a> {
    type Item = DirEntry<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        self.remaining = self.remaining.checked_sub(1)?;
        // Validated when the entries were built: cannot fail.
        let (entry, rest) = next_entry(self.rest).ok()?;
        self.rest = rest;
        Some(entry)
    }
}

/// Split one entry off the front of `bytes`.
fn next_entry(bytes: &[u8]) -> Result<(DirEntry<'_>, &[u8]), WireError> {
    let (wire, rest) = take::<AttributesWire>(bytes, 0)?;
    let attributes = Attributes::from_wire(wire)?;
    let (name, rest) = rest
        .split_at_checked(usize::from(wire.name_len))
        .ok_or(WireError::BadLength)?;
    if !valid_name(name) {
        return Err(WireError::InvalidField);
    }
    Ok((DirEntry { name, attributes }, rest))
}

/// Encodes listing entries into a caller's buffer, one at a time, until
/// the next one would not fit: how a server fills a page.
#[derive(Debug)]
pub struct DirEntriesWriter<'b> {
    buf: &'b mut [u8],
    used: usize,
    count: u16,
}

impl<'b> DirEntriesWriter<'b> {
    /// Write into `buf`; a page holds at most [`MAX_LIST_ENTRY_BYTES`] of
    /// it.
    pub fn new(buf: &'b mut [u8]) -> Self {
        Self {
            buf,
            used: 0,
            count: 0,
        }
    }

    /// Append an entry. [`InsufficientSize`] (nothing written) when it does
    /// not fit the buffer or the page; an invalid name is
    /// [`WireError::InvalidField`], as a parse would find it.
    pub fn push(&mut self, entry: &DirEntry<'_>) -> Result<(), PushError> {
        if !valid_name(entry.name) || entry.attributes.mode & !MODE_BITS != 0 {
            return Err(PushError::Invalid(WireError::InvalidField));
        }
        let name_len = u8::try_from(entry.name.len())
            .map_err(|_| PushError::Invalid(WireError::InvalidField))?;
        let count = self
            .count
            .checked_add(1)
            .ok_or(PushError::Full(InsufficientSize {
                required: usize::MAX,
            }))?;
        let len = ATTRIBUTES_LEN.saturating_add(entry.name.len());
        let end = self.used.saturating_add(len);
        let room = self.buf.len().min(MAX_LIST_ENTRY_BYTES);
        let Some(slot) = self.buf.get_mut(self.used..end).filter(|_| end <= room) else {
            return Err(PushError::Full(InsufficientSize { required: end }));
        };
        let (head, name) = slot.split_at_mut(ATTRIBUTES_LEN);
        head.copy_from_slice(entry.attributes.to_wire(name_len).as_bytes());
        name.copy_from_slice(entry.name);
        self.used = end;
        self.count = count;
        Ok(())
    }

    /// How many entries were written.
    pub fn len(&self) -> usize {
        usize::from(self.count)
    }

    /// Whether none were.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The entries written, for a [`FileMessage::ListResponse`].
    pub fn finish(self) -> DirEntries<'b> {
        let bytes: &'b [u8] = self.buf;
        DirEntries {
            count: self.count,
            bytes: bytes.get(..self.used).unwrap_or_default(),
        }
    }
}

/// Why [`DirEntriesWriter::push`] did not append an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PushError {
    /// The page (or the buffer) is full: send it, continue on the next.
    Full(InsufficientSize),
    /// The entry cannot be sent (its name is not a [`valid_name`]).
    Invalid(WireError),
}

/// What the flag types of the requests have in common: a `u16` on the
/// wire, undefined bits [`WireError::InvalidField`].
macro_rules! op_flags {
    ($($name:ident),*) => {$(
        #[cfg(feature = "defmt")]
        impl defmt::Format for $name {
            fn format(&self, f: defmt::Formatter<'_>) {
                defmt::write!(f, "{=str}({=u16:#x})", stringify!($name), self.bits())
            }
        }

        impl $name {
            fn from_wire(bits: u16) -> Result<Self, WireError> {
                Self::from_bits(bits).ok_or(WireError::InvalidField)
            }
        }
    )*};
}

bitflags::bitflags! {
    /// How a [`FileMessage::RemoveRequest`] removes.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct RemoveFlags: u16 {
        /// The path may be a directory, removed if it is empty
        /// (`NotEmpty` otherwise); without it a directory is
        /// `IsADirectory`.
        const DIRECTORY = 0x1;
    }

    /// How a [`FileMessage::MakeDirRequest`] creates.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct MakeDirFlags: u16 {
        /// Create missing parents too, and succeed if the directory exists
        /// (`mkdir -p`).
        const PARENTS = 0x1;
    }

    /// How a [`FileMessage::RenameRequest`] renames.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct RenameFlags: u16 {
        /// Never replace an existing destination (`AlreadyExists`).
        const NO_REPLACE = 0x1;
    }

    /// What a [`FileMessage::SetAttrRequest`] sets; at least one bit.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct SetAttrFlags: u16 {
        /// The permission bits (`mode`).
        const MODE = 0x1;
        /// The modification time (`modified_ns`).
        const MODIFIED = 0x2;
    }
}

op_flags!(RemoveFlags, MakeDirFlags, RenameFlags, SetAttrFlags);

/// Every remote file operation message (pipe opcodes `0x22..=0x2F`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum FileMessage<'a> {
    /// 0x22: C→S list the directory at `path`, from the first name after
    /// `after` (bytewise order; empty: from the start).
    ListRequest {
        /// The directory, `/`-separated, relative to the root.
        path: &'a [u8],
        /// The last name of the previous page, or empty.
        after: &'a [u8],
    },
    /// 0x23: S→C one page of a listing, sorted by name.
    ListResponse {
        /// Outcome.
        status: Status,
        /// The listing is complete: no page follows this one.
        end: bool,
        /// The entries.
        entries: DirEntries<'a>,
    },
    /// 0x24: C→S the attributes of `path` itself (a symlink is reported,
    /// not followed).
    InfoRequest {
        /// The path, `/`-separated, relative to the root.
        path: &'a [u8],
    },
    /// 0x25: S→C the attributes.
    InfoResponse {
        /// Outcome.
        status: Status,
        /// [`Attributes::NONE`] unless `Success`.
        attributes: Attributes,
    },
    /// 0x26: C→S remove a file, symlink or (with `DIRECTORY`) empty
    /// directory. Answered by [`FileMessage::OpResult`].
    RemoveRequest {
        /// How.
        flags: RemoveFlags,
        /// The path.
        path: &'a [u8],
    },
    /// 0x27: C→S create a directory. Answered by [`FileMessage::OpResult`].
    MakeDirRequest {
        /// How.
        flags: MakeDirFlags,
        /// Permission bits (at most [`SETTABLE_MODE`]), before the server's
        /// umask.
        mode: u32,
        /// The path.
        path: &'a [u8],
    },
    /// 0x28: C→S rename `from` to `to`, both beneath the root. Answered by
    /// [`FileMessage::OpResult`].
    RenameRequest {
        /// How.
        flags: RenameFlags,
        /// The existing path.
        from: &'a [u8],
        /// Its new path.
        to: &'a [u8],
    },
    /// 0x29: C→S set a file's or directory's permission bits and/or
    /// modification time. Answered by [`FileMessage::OpResult`].
    SetAttrRequest {
        /// What to set.
        flags: SetAttrFlags,
        /// Permission bits (at most [`SETTABLE_MODE`]; 0 without `MODE`).
        mode: u32,
        /// Nanoseconds since the Unix epoch (0 without `MODIFIED`).
        modified_ns: u64,
        /// The path.
        path: &'a [u8],
    },
    /// 0x2A: C→S the SHA-256 of bytes `offset..offset + length` of the file
    /// at `path` (fewer at its end).
    HashRequest {
        /// The file.
        path: &'a [u8],
        /// First byte.
        offset: u64,
        /// Bytes, 1 to [`MAX_HASH_LEN`].
        length: u64,
    },
    /// 0x2B: S→C the digest.
    HashResponse {
        /// Outcome.
        status: Status,
        /// Bytes hashed: fewer than asked when the file ends first (0
        /// unless `Success`).
        length: u64,
        /// SHA-256 of those bytes (zero unless `Success`).
        digest: [u8; SHA256_LEN],
    },
    /// 0x2F: S→C the outcome of a remove, make-directory, rename or
    /// set-attributes request.
    OpResult {
        /// Outcome.
        status: Status,
        /// The opcode of the request it answers (`0x26..=0x29`).
        opcode: u8,
    },
}

/// The opcodes of [`FileMessage`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum FileOpcode {
    ListRequest = 0x22,
    ListResponse = 0x23,
    InfoRequest = 0x24,
    InfoResponse = 0x25,
    RemoveRequest = 0x26,
    MakeDirRequest = 0x27,
    RenameRequest = 0x28,
    SetAttrRequest = 0x29,
    HashRequest = 0x2A,
    HashResponse = 0x2B,
    OpResult = 0x2F,
}

impl FileOpcode {
    /// The file-operation opcode `byte` is, if it is one.
    pub(super) fn from_u8(byte: u8) -> Option<Self> {
        Some(match byte {
            0x22 => Self::ListRequest,
            0x23 => Self::ListResponse,
            0x24 => Self::InfoRequest,
            0x25 => Self::InfoResponse,
            0x26 => Self::RemoveRequest,
            0x27 => Self::MakeDirRequest,
            0x28 => Self::RenameRequest,
            0x29 => Self::SetAttrRequest,
            0x2A => Self::HashRequest,
            0x2B => Self::HashResponse,
            0x2F => Self::OpResult,
            _ => return None,
        })
    }
}

/// The requests an [`FileMessage::OpResult`] answers.
fn answered_by_op_result(opcode: u8) -> bool {
    matches!(
        FileOpcode::from_u8(opcode),
        Some(
            FileOpcode::RemoveRequest
                | FileOpcode::MakeDirRequest
                | FileOpcode::RenameRequest
                | FileOpcode::SetAttrRequest
        )
    )
}

// Payload layouts, offsets relative to the payload.

/// ListRequest, followed by `path_len` path bytes and `after_len` name
/// bytes.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct ListRequestWire {
    path_len: U16,
    after_len: u8,
    reserved: u8,
}

/// ListResponse, followed by `count` entries.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct ListResponseWire {
    status: U32,
    count: U16,
    flags: U16,
}

/// The `flags` of a ListResponse: bit 0, the listing is complete.
const LIST_END: u16 = 0x1;

/// An entry's (or a path's) attributes, followed in a listing by
/// `name_len` name bytes.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct AttributesWire {
    kind: u8,
    name_len: u8,
    reserved: U16,
    mode: U32,
    size: U64,
    modified_ns: U64,
    file_id: U64,
}

/// InfoRequest, followed by `path_len` path bytes.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct InfoRequestWire {
    path_len: U16,
    reserved: U16,
}

/// InfoResponse: the attributes with `name_len` 0.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct InfoResponseWire {
    status: U32,
    reserved: U32,
    attributes: AttributesWire,
}

/// RemoveRequest, followed by `path_len` path bytes.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RemoveRequestWire {
    path_len: U16,
    flags: U16,
}

/// MakeDirRequest, followed by `path_len` path bytes.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct MakeDirRequestWire {
    path_len: U16,
    flags: U16,
    mode: U32,
}

/// RenameRequest, followed by `from_len` then `to_len` path bytes.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RenameRequestWire {
    from_len: U16,
    to_len: U16,
    flags: U16,
    reserved: U16,
}

/// SetAttrRequest, followed by `path_len` path bytes.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct SetAttrRequestWire {
    path_len: U16,
    flags: U16,
    mode: U32,
    modified_ns: U64,
}

/// HashRequest, followed by `path_len` path bytes.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct HashRequestWire {
    offset: U64,
    length: U64,
    path_len: U16,
    algorithm: u8,
    reserved: u8,
}

/// HashResponse.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct HashResponseWire {
    status: U32,
    algorithm: u8,
    reserved: [u8; 3],
    length: U64,
    digest: [u8; SHA256_LEN],
}

/// OpResult.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct OpResultWire {
    status: U32,
    opcode: u8,
    reserved: u8,
    reserved2: U16,
}

const _: () = {
    assert!(size_of::<ListRequestWire>() == 4);
    assert!(size_of::<ListResponseWire>() == LIST_RESPONSE_FIXED_LEN);
    assert!(size_of::<AttributesWire>() == ATTRIBUTES_LEN);
    assert!(size_of::<InfoRequestWire>() == 4);
    assert!(size_of::<InfoResponseWire>() == 40);
    assert!(size_of::<RemoveRequestWire>() == 4);
    assert!(size_of::<MakeDirRequestWire>() == 8);
    assert!(size_of::<RenameRequestWire>() == 8);
    assert!(size_of::<SetAttrRequestWire>() == 16);
    assert!(size_of::<HashRequestWire>() == 20);
    assert!(size_of::<HashResponseWire>() == 48);
    assert!(size_of::<OpResultWire>() == 8);
};

/// Payload errors report whole-frame lengths: the payload starts after the
/// pipe frame header.
const BASE: usize = super::pipe::PIPE_HEADER_LEN;

/// A path: 1 to [`MAX_PATH_LEN`] bytes, no NUL.
fn check_path(path: &[u8]) -> Result<(), WireError> {
    if path.len() > MAX_PATH_LEN {
        return Err(WireError::TooMany);
    }
    // A NUL would truncate the path in any C API the server's file system
    // sits behind.
    if path.is_empty() || path.contains(&0) {
        return Err(WireError::InvalidField);
    }
    Ok(())
}

/// Split `declared` path bytes off `bytes`, checked by [`check_path`].
fn split_path(bytes: &[u8], declared: u16) -> Result<(&[u8], &[u8]), WireError> {
    let (path, rest) = bytes
        .split_at_checked(usize::from(declared))
        .ok_or(WireError::BadLength)?;
    check_path(path)?;
    Ok((path, rest))
}

/// The path that makes up all of `rest`, `declared` bytes long.
fn whole_path(rest: &[u8], declared: u16) -> Result<&[u8], WireError> {
    let (path, rest) = split_path(rest, declared)?;
    if rest.is_empty() {
        Ok(path)
    } else {
        Err(WireError::BadLength)
    }
}

fn settable_mode(mode: u32) -> Result<u32, WireError> {
    if mode & !SETTABLE_MODE == 0 {
        Ok(mode)
    } else {
        Err(WireError::InvalidField)
    }
}

fn wire_len(len: usize) -> Result<U16, Unencodable> {
    Ok(u16::try_from(len)?.into())
}

impl<'a> FileMessage<'a> {
    /// Parse the payload of a frame with a file-operation opcode. Checked
    /// in order: the fixed part, reserved fields, flags and algorithm,
    /// then lengths and names.
    pub(super) fn parse(opcode: FileOpcode, payload: &'a [u8]) -> Result<Self, WireError> {
        Ok(match opcode {
            FileOpcode::ListRequest => {
                let (wire, rest) = take::<ListRequestWire>(payload, BASE)?;
                reserved_zero(wire.reserved)?;
                let (path, after) = split_path(rest, wire.path_len.get())?;
                if after.len() != usize::from(wire.after_len) {
                    return Err(WireError::BadLength);
                }
                if !after.is_empty() && !valid_name(after) {
                    return Err(WireError::InvalidField);
                }
                Self::ListRequest { path, after }
            }
            FileOpcode::ListResponse => {
                let (wire, rest) = take::<ListResponseWire>(payload, BASE)?;
                let flags = wire.flags.get();
                if flags & !LIST_END != 0 {
                    return Err(WireError::InvalidField);
                }
                Self::ListResponse {
                    status: Status::from_u32(wire.status.get())?,
                    end: flags & LIST_END != 0,
                    entries: DirEntries::parse(wire.count.get(), rest)?,
                }
            }
            FileOpcode::InfoRequest => {
                let (wire, rest) = take::<InfoRequestWire>(payload, BASE)?;
                reserved_zero(wire.reserved.get())?;
                Self::InfoRequest {
                    path: whole_path(rest, wire.path_len.get())?,
                }
            }
            FileOpcode::InfoResponse => {
                let wire = take_exact::<InfoResponseWire>(payload, BASE)?;
                reserved_zero(wire.reserved.get())?;
                reserved_zero(wire.attributes.name_len)?;
                Self::InfoResponse {
                    status: Status::from_u32(wire.status.get())?,
                    attributes: Attributes::from_wire(&wire.attributes)?,
                }
            }
            FileOpcode::RemoveRequest => {
                let (wire, rest) = take::<RemoveRequestWire>(payload, BASE)?;
                Self::RemoveRequest {
                    flags: RemoveFlags::from_wire(wire.flags.get())?,
                    path: whole_path(rest, wire.path_len.get())?,
                }
            }
            FileOpcode::MakeDirRequest => {
                let (wire, rest) = take::<MakeDirRequestWire>(payload, BASE)?;
                Self::MakeDirRequest {
                    flags: MakeDirFlags::from_wire(wire.flags.get())?,
                    mode: settable_mode(wire.mode.get())?,
                    path: whole_path(rest, wire.path_len.get())?,
                }
            }
            FileOpcode::RenameRequest => {
                let (wire, rest) = take::<RenameRequestWire>(payload, BASE)?;
                reserved_zero(wire.reserved.get())?;
                let flags = RenameFlags::from_wire(wire.flags.get())?;
                let (from, rest) = split_path(rest, wire.from_len.get())?;
                let to = whole_path(rest, wire.to_len.get())?;
                Self::RenameRequest { flags, from, to }
            }
            FileOpcode::SetAttrRequest => {
                let (wire, rest) = take::<SetAttrRequestWire>(payload, BASE)?;
                let flags = SetAttrFlags::from_wire(wire.flags.get())?;
                let (mode, modified_ns) = (wire.mode.get(), wire.modified_ns.get());
                // Nothing to set, or a value for a field not being set: one
                // encoding per request.
                if flags.is_empty()
                    || (!flags.contains(SetAttrFlags::MODE) && mode != 0)
                    || (!flags.contains(SetAttrFlags::MODIFIED) && modified_ns != 0)
                {
                    return Err(WireError::InvalidField);
                }
                Self::SetAttrRequest {
                    flags,
                    mode: settable_mode(mode)?,
                    modified_ns,
                    path: whole_path(rest, wire.path_len.get())?,
                }
            }
            FileOpcode::HashRequest => {
                let (wire, rest) = take::<HashRequestWire>(payload, BASE)?;
                reserved_zero(wire.reserved)?;
                let length = wire.length.get();
                if wire.algorithm != HASH_SHA256 || length == 0 || length > MAX_HASH_LEN {
                    return Err(WireError::InvalidField);
                }
                Self::HashRequest {
                    path: whole_path(rest, wire.path_len.get())?,
                    offset: wire.offset.get(),
                    length,
                }
            }
            FileOpcode::HashResponse => {
                let wire = take_exact::<HashResponseWire>(payload, BASE)?;
                reserved_zero(wire.reserved)?;
                if wire.algorithm != HASH_SHA256 {
                    return Err(WireError::InvalidField);
                }
                Self::HashResponse {
                    status: Status::from_u32(wire.status.get())?,
                    length: wire.length.get(),
                    digest: wire.digest,
                }
            }
            FileOpcode::OpResult => {
                let wire = take_exact::<OpResultWire>(payload, BASE)?;
                reserved_zero(wire.reserved)?;
                reserved_zero(wire.reserved2.get())?;
                if !answered_by_op_result(wire.opcode) {
                    return Err(WireError::InvalidField);
                }
                Self::OpResult {
                    status: Status::from_u32(wire.status.get())?,
                    opcode: wire.opcode,
                }
            }
        })
    }

    /// The opcode byte.
    pub fn opcode(&self) -> u8 {
        let opcode = match self {
            Self::ListRequest { .. } => FileOpcode::ListRequest,
            Self::ListResponse { .. } => FileOpcode::ListResponse,
            Self::InfoRequest { .. } => FileOpcode::InfoRequest,
            Self::InfoResponse { .. } => FileOpcode::InfoResponse,
            Self::RemoveRequest { .. } => FileOpcode::RemoveRequest,
            Self::MakeDirRequest { .. } => FileOpcode::MakeDirRequest,
            Self::RenameRequest { .. } => FileOpcode::RenameRequest,
            Self::SetAttrRequest { .. } => FileOpcode::SetAttrRequest,
            Self::HashRequest { .. } => FileOpcode::HashRequest,
            Self::HashResponse { .. } => FileOpcode::HashResponse,
            Self::OpResult { .. } => FileOpcode::OpResult,
        };
        opcode as u8
    }

    /// Whether only a server sends this message.
    pub fn from_server(&self) -> bool {
        matches!(
            self,
            Self::ListResponse { .. }
                | Self::InfoResponse { .. }
                | Self::HashResponse { .. }
                | Self::OpResult { .. }
        )
    }

    /// The one description of this message's payload (see `codec`).
    pub(super) fn encode_payload(&self, sink: &mut dyn Sink) -> Result<(), Unencodable> {
        match self {
            Self::ListRequest { path, after } => {
                let wire = ListRequestWire {
                    path_len: wire_len(path.len())?,
                    after_len: u8::try_from(after.len())?,
                    reserved: 0,
                };
                sink.put(wire.as_bytes());
                sink.put(path);
                sink.put(after);
            }
            Self::ListResponse {
                status,
                end,
                entries,
            } => {
                let wire = ListResponseWire {
                    status: status.as_u32().into(),
                    count: entries.count.into(),
                    flags: if *end { LIST_END } else { 0 }.into(),
                };
                sink.put(wire.as_bytes());
                sink.put(entries.bytes);
            }
            Self::InfoRequest { path } => {
                let wire = InfoRequestWire {
                    path_len: wire_len(path.len())?,
                    reserved: U16::ZERO,
                };
                sink.put(wire.as_bytes());
                sink.put(path);
            }
            Self::InfoResponse { status, attributes } => sink.put(
                InfoResponseWire {
                    status: status.as_u32().into(),
                    reserved: U32::ZERO,
                    attributes: attributes.to_wire(0),
                }
                .as_bytes(),
            ),
            Self::RemoveRequest { flags, path } => {
                let wire = RemoveRequestWire {
                    path_len: wire_len(path.len())?,
                    flags: flags.bits().into(),
                };
                sink.put(wire.as_bytes());
                sink.put(path);
            }
            Self::MakeDirRequest { flags, mode, path } => {
                let wire = MakeDirRequestWire {
                    path_len: wire_len(path.len())?,
                    flags: flags.bits().into(),
                    mode: (*mode).into(),
                };
                sink.put(wire.as_bytes());
                sink.put(path);
            }
            Self::RenameRequest { flags, from, to } => {
                let wire = RenameRequestWire {
                    from_len: wire_len(from.len())?,
                    to_len: wire_len(to.len())?,
                    flags: flags.bits().into(),
                    reserved: U16::ZERO,
                };
                sink.put(wire.as_bytes());
                sink.put(from);
                sink.put(to);
            }
            Self::SetAttrRequest {
                flags,
                mode,
                modified_ns,
                path,
            } => {
                let wire = SetAttrRequestWire {
                    path_len: wire_len(path.len())?,
                    flags: flags.bits().into(),
                    mode: (*mode).into(),
                    modified_ns: (*modified_ns).into(),
                };
                sink.put(wire.as_bytes());
                sink.put(path);
            }
            Self::HashRequest {
                path,
                offset,
                length,
            } => {
                let wire = HashRequestWire {
                    offset: (*offset).into(),
                    length: (*length).into(),
                    path_len: wire_len(path.len())?,
                    algorithm: HASH_SHA256,
                    reserved: 0,
                };
                sink.put(wire.as_bytes());
                sink.put(path);
            }
            Self::HashResponse {
                status,
                length,
                digest,
            } => sink.put(
                HashResponseWire {
                    status: status.as_u32().into(),
                    algorithm: HASH_SHA256,
                    reserved: [0; 3],
                    length: (*length).into(),
                    digest: *digest,
                }
                .as_bytes(),
            ),
            Self::OpResult { status, opcode } => sink.put(
                OpResultWire {
                    status: status.as_u32().into(),
                    opcode: *opcode,
                    reserved: 0,
                    reserved2: U16::ZERO,
                }
                .as_bytes(),
            ),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::PipeMessage;

    fn round_trip(message: FileMessage<'_>) {
        let message = PipeMessage::File(message);
        let mut buf = [0u8; 4096];
        let len = message.emit(&mut buf).expect("fits");
        assert_eq!(message.encoded_len(), len);
        let (parsed, used) = PipeMessage::parse(&buf[..len]).expect("parses");
        assert_eq!((parsed, used), (message, len));
    }

    fn attributes(kind: EntryKind) -> Attributes {
        Attributes {
            kind,
            mode: 0o644,
            size: 5,
            modified_ns: 1_700_000_000_000_000_000,
            file_id: 42,
        }
    }

    #[test]
    fn every_message_round_trips() {
        let mut buf = [0u8; 512];
        let mut writer = DirEntriesWriter::new(&mut buf);
        for (name, kind) in [
            (&b"a"[..], EntryKind::File),
            (b"dir", EntryKind::Directory),
            (b"link", EntryKind::Symlink),
        ] {
            writer
                .push(&DirEntry {
                    name,
                    attributes: attributes(kind),
                })
                .expect("fits");
        }
        let entries = writer.finish();
        let names: heapless::Vec<&[u8], 4> = entries.iter().map(|e| e.name).collect();
        assert_eq!(names.as_slice(), [&b"a"[..], b"dir", b"link"]);
        for message in [
            FileMessage::ListRequest {
                path: b"d",
                after: b"",
            },
            FileMessage::ListRequest {
                path: b"d/e",
                after: b"x",
            },
            FileMessage::ListResponse {
                status: Status::Success,
                end: true,
                entries,
            },
            FileMessage::InfoRequest { path: b"f" },
            FileMessage::InfoResponse {
                status: Status::Success,
                attributes: attributes(EntryKind::Directory),
            },
            FileMessage::RemoveRequest {
                flags: RemoveFlags::DIRECTORY,
                path: b"d",
            },
            FileMessage::MakeDirRequest {
                flags: MakeDirFlags::PARENTS,
                mode: 0o755,
                path: b"a/b/c",
            },
            FileMessage::RenameRequest {
                flags: RenameFlags::NO_REPLACE,
                from: b"a",
                to: b"b/c",
            },
            FileMessage::SetAttrRequest {
                flags: SetAttrFlags::MODE | SetAttrFlags::MODIFIED,
                mode: 0o600,
                modified_ns: 7,
                path: b"f",
            },
            FileMessage::HashRequest {
                path: b"f",
                offset: 0,
                length: 1 << 20,
            },
            FileMessage::HashResponse {
                status: Status::Success,
                length: 3,
                digest: [0xab; SHA256_LEN],
            },
            FileMessage::OpResult {
                status: Status::NotFound,
                opcode: 0x26,
            },
        ] {
            round_trip(message);
        }
    }

    #[test]
    fn names_are_single_components() {
        for good in [&b"a"[..], b"...", b".hidden", &[b'x'; MAX_NAME_LEN]] {
            assert!(valid_name(good), "{good:?}");
        }
        for bad in [
            &b""[..],
            b".",
            b"..",
            b"a/b",
            b"a\0",
            &[b'x'; MAX_NAME_LEN + 1],
        ] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_page_stops_at_the_frame_bound() {
        let mut buf = [0u8; 8192];
        let mut writer = DirEntriesWriter::new(&mut buf);
        let name = [b'n'; MAX_NAME_LEN];
        let entry = DirEntry {
            name: &name,
            attributes: attributes(EntryKind::File),
        };
        let mut pushed = 0;
        while writer.push(&entry).is_ok() {
            pushed += 1;
        }
        assert_eq!(
            pushed,
            MAX_LIST_ENTRY_BYTES / (ATTRIBUTES_LEN + MAX_NAME_LEN)
        );
        assert!(matches!(writer.push(&entry), Err(PushError::Full(_))));
        let entries = writer.finish();
        round_trip(FileMessage::ListResponse {
            status: Status::Success,
            end: false,
            entries,
        });
        let mut small = [0u8; 8];
        let mut writer = DirEntriesWriter::new(&mut small);
        assert!(matches!(
            writer.push(&DirEntry {
                name: b"..",
                attributes: attributes(EntryKind::File)
            }),
            Err(PushError::Invalid(WireError::InvalidField))
        ));
    }

    fn frame(opcode: u8, payload: &[u8]) -> heapless::Vec<u8, 256> {
        let mut out = heapless::Vec::new();
        let len = u32::try_from(payload.len()).expect("small");
        let _ = out.extend_from_slice(b"RDIO");
        let _ = out.extend_from_slice(&[1, opcode, 0, 0]);
        let _ = out.extend_from_slice(&len.to_le_bytes());
        let _ = out.extend_from_slice(payload);
        out
    }

    #[test]
    fn malformed_requests_are_refused() {
        let parse =
            |opcode, payload: &[u8]| PipeMessage::parse(&frame(opcode, payload)).map(|_| ());
        // Unknown remove flag.
        assert_eq!(
            parse(0x26, &[1, 0, 2, 0, b'f']),
            Err(WireError::InvalidField)
        );
        // Path length disagreeing with the bytes.
        assert_eq!(parse(0x24, &[2, 0, 0, 0, b'f']), Err(WireError::BadLength));
        // Empty path.
        assert_eq!(parse(0x24, &[0, 0, 0, 0]), Err(WireError::InvalidField));
        // A setuid bit.
        assert_eq!(
            parse(0x27, &[1, 0, 0, 0, 0xed, 0x09, 0, 0, b'd']),
            Err(WireError::InvalidField)
        );
        // A name after which to list that holds a slash.
        assert_eq!(
            parse(0x22, &[1, 0, 3, 0, b'd', b'a', b'/', b'b']),
            Err(WireError::InvalidField)
        );
        // Set-attributes with nothing to set.
        let mut payload = [0u8; 17];
        payload[0] = 1;
        payload[16] = b'f';
        assert_eq!(parse(0x29, &payload), Err(WireError::InvalidField));
        // A hash of nothing, and of more than the bound.
        let hash = |length: u64| {
            let mut payload = [0u8; 21];
            payload[8..16].copy_from_slice(&length.to_le_bytes());
            payload[16] = 1;
            payload[18] = HASH_SHA256;
            payload[20] = b'f';
            parse(0x2A, &payload)
        };
        assert_eq!(hash(0), Err(WireError::InvalidField));
        assert_eq!(hash(MAX_HASH_LEN + 1), Err(WireError::InvalidField));
        assert!(hash(MAX_HASH_LEN).is_ok());
        // An op result for a request it does not answer.
        assert_eq!(
            parse(0x2F, &[0, 0, 0, 0, 0x22, 0, 0, 0]),
            Err(WireError::InvalidField)
        );
        // A listing whose count claims more entries than it holds.
        assert_eq!(
            parse(0x23, &[0, 0, 0, 0, 1, 0, 1, 0]),
            Err(WireError::BadLength)
        );
        // Unknown opcodes in the range stay unknown.
        assert_eq!(parse(0x2C, &[]), Err(WireError::UnknownOpcode(0x2C)));
    }
}
