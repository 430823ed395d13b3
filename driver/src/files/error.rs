//! Typed errors of the file backend, each mapped to the wire [`Status`] the
//! server reports to the client.

use rdio_core::wire::Status;
use rustix::io::Errno;
use std::fmt;
use std::io;

/// Why [`Root::open`](super::Root::open) refused or failed to open a path.
///
/// Path checks happen in two layers: a lexical one here (empty, NUL, `..`,
/// too long), which gives a precise message for the common mistakes, and
/// the kernel's `openat2(RESOLVE_BENEATH)`, which is what actually guarantees
/// that no symlink, however it is created or raced, can lead outside the root.
/// Leading slashes are not an error: `/f` is the file `f` at the root of the
/// export, as in SMB shares, NFS exports and URLs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpenError {
    /// The path is empty.
    EmptyPath,
    /// The path is longer than the protocol allows.
    PathTooLong {
        /// Bytes in the path.
        len: usize,
        /// Most bytes allowed.
        max: usize,
    },
    /// The path contains a NUL byte.
    NulByte,
    /// The path has a `..` component.
    ParentComponent,
    /// Resolving the path (through a symlink, typically) would leave the root;
    /// the kernel refused with `EXDEV`.
    EscapesRoot,
    /// A symlink loop, or a procfs "magic link", was met while resolving.
    SymlinkLoop,
    /// No such file (or a missing directory on the way).
    NotFound,
    /// The file system's permissions deny the open (`EACCES`, `EPERM`).
    AccessDenied,
    /// The path names a directory (the root itself, for `/`).
    IsADirectory,
    /// A component of the path that must be a directory is a file
    /// (`ENOTDIR`).
    NotADirectory,
    /// The path names a FIFO, socket or device: only regular files are
    /// served.
    NotRegularFile,
    /// The open mode is invalid: neither READ nor WRITE, or CREATE,
    /// TRUNCATE or IN_PLACE without WRITE.
    InvalidFlags,
    /// The kernel lacks `openat2` (Linux < 5.6), without which paths cannot be
    /// confined to the root safely; rdio refuses to serve rather than fall back
    /// to a racy user-space check.
    Unsupported,
    /// A remove, rename or set-attributes request names the export's root
    /// itself.
    IsRoot,
    /// Permission bits beyond `0o777` (set-user-ID, set-group-ID, sticky)
    /// in a make-directory or set-attributes request.
    InvalidMode,
    /// A rename would move a directory beneath itself (`EINVAL`).
    IntoItself,
    /// Any other OS error, with its errno (reported by name where the
    /// protocol has one: [`errno_status`]).
    Os(i32),
}

impl OpenError {
    /// The status the server reports for this error.
    pub fn status(self) -> Status {
        match self {
            Self::NotFound => Status::NotFound,
            Self::ParentComponent | Self::EscapesRoot | Self::SymlinkLoop => Status::AccessDenied,
            Self::AccessDenied => Status::PermissionDenied,
            Self::IsADirectory => Status::IsADirectory,
            Self::NotADirectory => Status::NotADirectory,
            Self::NotRegularFile => Status::NotAFile,
            Self::EmptyPath | Self::PathTooLong { .. } | Self::NulByte | Self::InvalidFlags => {
                Status::InvalidParameter
            }
            Self::Unsupported => Status::NotSupported,
            Self::IsRoot => Status::AccessDenied,
            Self::InvalidMode | Self::IntoItself => Status::InvalidParameter,
            Self::Os(errno) => errno_status(errno),
        }
    }
}

/// The status the server reports for an error of its file system: the
/// causes a user can act on by name (a full disk, a quota, a read-only
/// mount, permissions, a directory where a file was meant), `IoError` for
/// the rest.
pub fn errno_status(errno: i32) -> Status {
    match Errno::from_raw_os_error(errno) {
        Errno::NOSPC => Status::NoSpace,
        Errno::DQUOT => Status::QuotaExceeded,
        Errno::ROFS => Status::ReadOnlyFileSystem,
        Errno::ACCESS | Errno::PERM => Status::PermissionDenied,
        Errno::ISDIR => Status::IsADirectory,
        Errno::NOTDIR => Status::NotADirectory,
        Errno::FBIG => Status::FileTooLarge,
        Errno::NAMETOOLONG => Status::NameTooLong,
        Errno::NOENT => Status::NotFound,
        Errno::EXIST => Status::AlreadyExists,
        Errno::NOTEMPTY => Status::NotEmpty,
        Errno::XDEV => Status::CrossDevice,
        _ => Status::IoError,
    }
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyPath => f.write_str("empty path"),
            Self::PathTooLong { len, max } => {
                write!(f, "path of {len} bytes exceeds the {max}-byte limit")
            }
            Self::NulByte => f.write_str("path contains a NUL byte"),
            Self::ParentComponent => f.write_str("path contains a '..' component"),
            Self::EscapesRoot => f.write_str("path resolves outside the served root"),
            Self::SymlinkLoop => f.write_str("too many levels of symbolic links, or a magic link"),
            Self::NotFound => f.write_str("no such file"),
            Self::AccessDenied => f.write_str("permission denied"),
            Self::IsADirectory => f.write_str("is a directory"),
            Self::NotADirectory => f.write_str("not a directory"),
            Self::NotRegularFile => f.write_str("not a regular file"),
            Self::InvalidFlags => f.write_str(
                "invalid open mode: need READ or WRITE, and WRITE for CREATE, TRUNCATE or \
                 IN_PLACE",
            ),
            Self::Unsupported => {
                f.write_str("the kernel lacks openat2 (Linux 5.6 or later is required)")
            }
            Self::IsRoot => {
                f.write_str("the export's root itself cannot be removed, renamed or changed")
            }
            Self::InvalidMode => f.write_str("permission bits beyond 0o777 cannot be set"),
            Self::IntoItself => f.write_str("cannot move a directory beneath itself"),
            Self::Os(errno) => write!(f, "{}", io::Error::from_raw_os_error(*errno)),
        }
    }
}

impl std::error::Error for OpenError {}

/// Why a positioned read or write on a [`File`](super::File) failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileError {
    /// Read on a file opened without READ.
    NotReadable,
    /// Write on a file opened without WRITE.
    NotWritable,
    /// `offset + length` exceeds the largest file offset (`i64::MAX`).
    OffsetOverflow,
    /// The file system accepted no bytes of a write without reporting an
    /// error (the `pwrite` returned 0).
    WriteZero,
    /// Any other OS error, with its errno.
    Os(i32),
}

impl FileError {
    /// The status the server reports for this error.
    pub fn status(self) -> Status {
        match self {
            Self::NotReadable | Self::NotWritable => Status::AccessDenied,
            Self::OffsetOverflow => Status::InvalidParameter,
            Self::WriteZero => Status::IoError,
            Self::Os(errno) => errno_status(errno),
        }
    }

    pub(crate) fn from_io(error: &io::Error) -> Self {
        // Errors built from errnos always carry one; the EIO fallback covers
        // synthetic std errors, which positioned I/O does not produce.
        Self::Os(error.raw_os_error().unwrap_or(Errno::IO.raw_os_error()))
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotReadable => f.write_str("file not opened for reading"),
            Self::NotWritable => f.write_str("file not opened for writing"),
            Self::OffsetOverflow => {
                f.write_str("offset plus length exceeds the largest file offset")
            }
            Self::WriteZero => f.write_str("the file system accepted no bytes"),
            Self::Os(errno) => write!(f, "{}", io::Error::from_raw_os_error(*errno)),
        }
    }
}

impl std::error::Error for FileError {}

impl From<FileError> for io::Error {
    fn from(error: FileError) -> Self {
        match error {
            FileError::Os(errno) => io::Error::from_raw_os_error(errno),
            FileError::NotReadable | FileError::NotWritable => {
                io::Error::new(io::ErrorKind::PermissionDenied, error)
            }
            FileError::OffsetOverflow => io::Error::new(io::ErrorKind::InvalidInput, error),
            FileError::WriteZero => io::Error::new(io::ErrorKind::WriteZero, error),
        }
    }
}

/// The file table is full: the server's configured limit of open files was
/// reached ([`Status::ResourceExhausted`] on the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableFull {
    /// The configured limit.
    pub limit: usize,
}

impl fmt::Display for TableFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "open file limit of {} reached", self.limit)
    }
}

impl std::error::Error for TableFull {}

/// A [`FileId`](super::FileId) that names no open file: never issued, or
/// already closed ([`Status::InvalidHandle`] on the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownFile(pub super::FileId);

impl fmt::Display for UnknownFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "file id {} is not open", self.0.0)
    }
}

impl std::error::Error for UnknownFile {}
