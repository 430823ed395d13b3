//! Arbitrary valid remote file operation messages (`FileMessage`, pipe
//! opcodes `0x22..=0x2F`), owned, for the pipe round trips of
//! [`crate::wire_values`]: a proptest strategy and (feature `arbitrary`) an
//! `Arbitrary` impl, both through one normalisation ([`FileValue::from_raw`])
//! that turns any inputs into a value the parser accepts.

use proptest::collection::vec;
use proptest::prelude::*;
use rdio_core::wire::files::{MAX_HASH_LEN, MAX_NAME_LEN, MODE_BITS, SETTABLE_MODE};
use rdio_core::wire::{
    Attributes, DirEntries, DirEntriesWriter, DirEntry, EntryKind, FileMessage, MAX_PATH_LEN,
    MakeDirFlags, RemoveFlags, RenameFlags, SetAttrFlags, Status,
};

/// A remote file operation message with owned variable parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileValue {
    ListRequest {
        path: Vec<u8>,
        after: Vec<u8>,
    },
    ListResponse {
        status: Status,
        end: bool,
        /// The encoded entries, `count` of them.
        entries: Vec<u8>,
        count: u16,
    },
    InfoRequest {
        path: Vec<u8>,
    },
    InfoResponse {
        status: Status,
        attributes: Attributes,
    },
    RemoveRequest {
        flags: RemoveFlags,
        path: Vec<u8>,
    },
    MakeDirRequest {
        flags: MakeDirFlags,
        mode: u32,
        path: Vec<u8>,
    },
    RenameRequest {
        flags: RenameFlags,
        from: Vec<u8>,
        to: Vec<u8>,
    },
    SetAttrRequest {
        flags: SetAttrFlags,
        mode: u32,
        modified_ns: u64,
        path: Vec<u8>,
    },
    HashRequest {
        path: Vec<u8>,
        offset: u64,
        length: u64,
    },
    HashResponse {
        status: Status,
        length: u64,
        digest: [u8; 32],
    },
    OpResult {
        status: Status,
        opcode: u8,
    },
}

/// What [`FileValue::from_raw`] makes a value from: any bytes and numbers.
pub type RawFile = (
    u8,
    (Vec<u8>, Vec<u8>),
    (u64, u64, u32, u16),
    Vec<(u8, u32, u64, u64, u64, Vec<u8>)>,
    ([u8; 32], bool),
);

/// A path the parser accepts: 1 to `max` bytes, no NUL.
fn path(mut bytes: Vec<u8>, max: usize) -> Vec<u8> {
    bytes.truncate(max);
    for b in &mut bytes {
        if *b == 0 {
            *b = b'/';
        }
    }
    if bytes.is_empty() {
        bytes.push(b'f');
    }
    bytes
}

/// A directory entry name: 1 to 255 bytes, no `/` or NUL, not `.` or `..`.
fn name(mut bytes: Vec<u8>) -> Vec<u8> {
    bytes.truncate(MAX_NAME_LEN);
    for b in &mut bytes {
        if *b == 0 || *b == b'/' {
            *b = b'x';
        }
    }
    if bytes.is_empty() || bytes == b"." || bytes == b".." {
        bytes.insert(0, b'n');
        bytes.truncate(MAX_NAME_LEN);
    }
    bytes
}

fn attributes(kind: u8, mode: u32, size: u64, modified_ns: u64, file_id: u64) -> Attributes {
    Attributes {
        kind: match kind % 4 {
            0 => EntryKind::File,
            1 => EntryKind::Directory,
            2 => EntryKind::Symlink,
            _ => EntryKind::Other,
        },
        mode: mode & MODE_BITS,
        size,
        modified_ns,
        file_id,
    }
}

impl FileValue {
    /// The valid message `raw` stands for: which message (`which`), two
    /// byte strings (paths or names), numbers, listing entries, a digest
    /// and a flag, each cut or mapped into its field's range.
    pub fn from_raw(status: Status, raw: RawFile) -> Self {
        let (which, (a, b), (n1, n2, n3, n4), entries, (digest, flag)) = raw;
        match which % 11 {
            0 => Self::ListRequest {
                path: path(a, MAX_PATH_LEN),
                after: if flag { name(b) } else { Vec::new() },
            },
            1 => {
                let mut buf = vec![0u8; rdio_core::wire::files::MAX_LIST_ENTRY_BYTES];
                let mut writer = DirEntriesWriter::new(&mut buf);
                for (kind, mode, size, modified_ns, file_id, entry_name) in entries {
                    let entry_name = name(entry_name);
                    let entry = DirEntry {
                        name: &entry_name,
                        attributes: attributes(kind, mode, size, modified_ns, file_id),
                    };
                    if writer.push(&entry).is_err() {
                        break;
                    }
                }
                let count = u16::try_from(writer.len()).expect("a page holds few entries");
                let entries = writer.finish().as_bytes().to_vec();
                Self::ListResponse {
                    status,
                    end: flag,
                    entries,
                    count,
                }
            }
            2 => Self::InfoRequest {
                path: path(a, MAX_PATH_LEN),
            },
            3 => Self::InfoResponse {
                status,
                attributes: attributes(n4 as u8, n3, n1, n2, n1 ^ n2),
            },
            4 => Self::RemoveRequest {
                flags: RemoveFlags::from_bits_truncate(n4),
                path: path(a, MAX_PATH_LEN),
            },
            5 => Self::MakeDirRequest {
                flags: MakeDirFlags::from_bits_truncate(n4),
                mode: n3 & SETTABLE_MODE,
                path: path(a, MAX_PATH_LEN),
            },
            // Both paths share one frame.
            6 => Self::RenameRequest {
                flags: RenameFlags::from_bits_truncate(n4),
                from: path(a, MAX_PATH_LEN - 8),
                to: path(b, MAX_PATH_LEN - 8),
            },
            7 => {
                let mut flags = SetAttrFlags::from_bits_truncate(n4);
                if flags.is_empty() {
                    flags = SetAttrFlags::MODE;
                }
                Self::SetAttrRequest {
                    flags,
                    mode: if flags.contains(SetAttrFlags::MODE) {
                        n3 & SETTABLE_MODE
                    } else {
                        0
                    },
                    modified_ns: if flags.contains(SetAttrFlags::MODIFIED) {
                        n1
                    } else {
                        0
                    },
                    path: path(a, MAX_PATH_LEN),
                }
            }
            8 => Self::HashRequest {
                path: path(a, MAX_PATH_LEN),
                offset: n1,
                length: 1 + n2 % MAX_HASH_LEN,
            },
            9 => Self::HashResponse {
                status,
                length: n1,
                digest,
            },
            _ => Self::OpResult {
                status,
                opcode: 0x26 + (n4 % 4) as u8,
            },
        }
    }

    /// The borrowed wire view.
    pub fn message(&self) -> FileMessage<'_> {
        match self {
            Self::ListRequest { path, after } => FileMessage::ListRequest { path, after },
            Self::ListResponse {
                status,
                end,
                entries,
                count,
            } => FileMessage::ListResponse {
                status: *status,
                end: *end,
                entries: DirEntries::parse(*count, entries).expect("built by a writer"),
            },
            Self::InfoRequest { path } => FileMessage::InfoRequest { path },
            Self::InfoResponse { status, attributes } => FileMessage::InfoResponse {
                status: *status,
                attributes: *attributes,
            },
            Self::RemoveRequest { flags, path } => FileMessage::RemoveRequest {
                flags: *flags,
                path,
            },
            Self::MakeDirRequest { flags, mode, path } => FileMessage::MakeDirRequest {
                flags: *flags,
                mode: *mode,
                path,
            },
            Self::RenameRequest { flags, from, to } => FileMessage::RenameRequest {
                flags: *flags,
                from,
                to,
            },
            Self::SetAttrRequest {
                flags,
                mode,
                modified_ns,
                path,
            } => FileMessage::SetAttrRequest {
                flags: *flags,
                mode: *mode,
                modified_ns: *modified_ns,
                path,
            },
            Self::HashRequest {
                path,
                offset,
                length,
            } => FileMessage::HashRequest {
                path,
                offset: *offset,
                length: *length,
            },
            Self::HashResponse {
                status,
                length,
                digest,
            } => FileMessage::HashResponse {
                status: *status,
                length: *length,
                digest: *digest,
            },
            Self::OpResult { status, opcode } => FileMessage::OpResult {
                status: *status,
                opcode: *opcode,
            },
        }
    }
}

/// Every valid remote file operation message, given a status strategy.
pub fn file_value(status: impl Strategy<Value = Status>) -> impl Strategy<Value = FileValue> {
    let bytes = || prop_oneof![vec(any::<u8>(), 0..16), vec(any::<u8>(), 0..=MAX_PATH_LEN)];
    let entries = vec(
        (
            any::<u8>(),
            any::<u32>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            vec(any::<u8>(), 0..=MAX_NAME_LEN),
        ),
        0..70,
    );
    (
        status,
        any::<u8>(),
        (bytes(), bytes()),
        any::<(u64, u64, u32, u16)>(),
        entries,
        any::<([u8; 32], bool)>(),
    )
        .prop_map(|(status, which, paths, numbers, entries, extra)| {
            FileValue::from_raw(status, (which, paths, numbers, entries, extra))
        })
}
