//! The exported directory and the only way to open files inside it.

use super::upload::Upload;
use super::{File, OpenError};
use rdio_core::wire::{MAX_PATH_LEN, OpenFlags};
use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often an open is retried when the kernel reports a concurrent rename
/// or mount during confined resolution (`EAGAIN`, see `openat2(2)`).
const RENAME_RACE_RETRIES: usize = 8;

/// How long an open waits for a lease holder to let go before failing.
const LEASE_BREAK_WAIT: Duration = Duration::from_secs(2);
const LEASE_BREAK_POLL: Duration = Duration::from_millis(1);

/// Permission bits of files created through CREATE (before the umask).
const CREATE_MODE: u32 = 0o644;

/// A directory exported by an rdio server: every path a client names in an
/// open request (seed claims 8 and 10: the client opens on the pipe, then
/// registers by resume key) resolves beneath it, or the open fails.
///
/// Confinement is enforced by the kernel: files are opened with Linux
/// `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)` relative to a descriptor of
/// the root taken once, so a symlink pointing outside (absolute or relative,
/// created before or after the server started) and renames racing with the
/// resolution cannot escape it, and moving the root directory itself does not
/// change what is served.
#[derive(Debug)]
pub struct Root {
    dir: OwnedFd,
    path: PathBuf,
}

impl Root {
    /// Export `path`, which must be a directory.
    pub fn new(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let path = path.as_ref();
        let dir = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self {
            dir,
            path: path.to_path_buf(),
        })
    }

    /// The directory as it was named when exported (for messages only: files
    /// are always opened through the descriptor taken then).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Open `path` (`/`-separated, beneath the root) with the protocol's
    /// open mode.
    ///
    /// Leading slashes are ignored: `/f` is `f` at the root of the export
    /// (any client may send them; the server decides what they mean).
    /// Only regular files are opened. Opening never blocks on a FIFO: the
    /// open is non-blocking and anything but a regular file is refused
    /// ([`OpenError::IsADirectory`], [`OpenError::NotRegularFile`]).
    ///
    /// An upload ([`OpenFlags::is_upload`]: TRUNCATE without IN_PLACE)
    /// leaves the file at `path` alone: the returned file is a new, empty,
    /// hidden file beside it, created with the permission bits of the file
    /// it will replace (or the usual `0644` less the umask), which
    /// [`File::finish`] renames over `path`, and which dropping the file
    /// unfinished removes.
    pub fn open(&self, path: impl AsRef<[u8]>, flags: OpenFlags) -> Result<File, OpenError> {
        let path = beneath(path.as_ref())?;
        let oflags = oflags(flags)?;
        if path.is_empty() {
            // The root itself.
            return Err(OpenError::IsADirectory);
        }
        if flags.is_upload() {
            return self.open_upload(path, flags, oflags);
        }
        // openat2 rejects a mode without O_CREAT (EINVAL), unlike openat.
        let mode = if oflags.contains(OFlags::CREATE) {
            Mode::from_bits_truncate(CREATE_MODE)
        } else {
            Mode::empty()
        };
        let fd = self.open_beneath(&self.dir, path, oflags, mode)?;
        check_regular(&fd)?;
        // O_NONBLOCK only served to keep a FIFO from blocking the open; clear it
        // so the descriptor behaves as a plain file.
        rustix::fs::fcntl_setfl(
            &fd,
            rustix::fs::fcntl_getfl(&fd).map_err(open_errno)? - OFlags::NONBLOCK,
        )
        .map_err(open_errno)?;
        Ok(File::new(fd, flags))
    }

    /// The descriptor of the exported directory (`O_PATH`).
    pub(super) fn dir(&self) -> &OwnedFd {
        &self.dir
    }

    /// `openat2(dir, path)` confined beneath the root, retried over
    /// concurrent renames and lease breaks.
    pub(super) fn open_beneath(
        &self,
        dir: &OwnedFd,
        path: &[u8],
        oflags: OFlags,
        mode: Mode,
    ) -> Result<OwnedFd, OpenError> {
        let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
        let mut attempts = 0;
        let mut waited = Duration::ZERO;
        loop {
            match rustix::fs::openat2(dir, OsStr::from_bytes(path), oflags, mode, resolve) {
                Ok(fd) => return Ok(fd),
                Err(Errno::AGAIN | Errno::INTR) if attempts < RENAME_RACE_RETRIES => attempts += 1,
                // An open for writing breaks a read lease on the file (with
                // O_NONBLOCK it fails with EAGAIN meanwhile): a connection
                // serving the file from a mapping (`super::mapping`) lets go
                // within milliseconds.
                Err(Errno::AGAIN) if waited < LEASE_BREAK_WAIT => {
                    std::thread::sleep(LEASE_BREAK_POLL);
                    waited += LEASE_BREAK_POLL;
                }
                Err(errno) => return Err(open_errno(errno)),
            }
        }
    }

    /// An upload to `path`: check what the name holds now, then create the
    /// temporary file beside it (see [`Root::open`]).
    fn open_upload(
        &self,
        path: &[u8],
        flags: OpenFlags,
        oflags: OFlags,
    ) -> Result<File, OpenError> {
        let (parent, name) = match path.iter().rposition(|&b| b == b'/') {
            Some(slash) => (
                path.get(..slash).unwrap_or_default(),
                path.get(slash + 1..).unwrap_or_default(),
            ),
            None => (&b""[..], path),
        };
        // `dir/` or `dir/.` name a directory, not a file in it.
        if name.is_empty() || name == b"." {
            return Err(OpenError::IsADirectory);
        }
        let parent = if parent.is_empty() { &b"."[..] } else { parent };
        // A real descriptor (not O_PATH): the rename is made durable by
        // an fsync of the directory.
        let dir = self.open_beneath(
            &self.dir,
            parent,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        // What is there now, the name itself (a symlink is not followed: the
        // rename replaces the link, as `mv` and rsync do).
        let existing = self
            .open_beneath(
                &dir,
                name,
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .and_then(|fd| rustix::fs::fstat(&fd).map_err(open_errno));
        // The regular file the upload will replace, whose mode it takes.
        let replaced = match existing {
            Ok(stat) => match FileType::from_raw_mode(stat.st_mode) {
                FileType::Directory => return Err(OpenError::IsADirectory),
                FileType::RegularFile => Some(stat),
                FileType::Symlink => None,
                _ => return Err(OpenError::NotRegularFile),
            },
            Err(OpenError::NotFound) if flags.contains(OpenFlags::CREATE) => None,
            Err(e) => return Err(e),
        };
        let access = oflags & (OFlags::RDWR | OFlags::WRONLY);
        let mode = replaced
            .as_ref()
            .map_or(Mode::from_bits_truncate(CREATE_MODE), |stat| {
                Mode::from_bits_truncate(stat.st_mode & 0o777)
            });
        // Dropped on any error below, the upload removes its file.
        let (upload, fd) = Upload::create(dir, name, access, mode).map_err(open_errno)?;
        if let Some(stat) = replaced {
            // The replaced file's permission bits exactly (the umask applied
            // at creation), and, when the server may (it runs as root), its
            // owner; setuid, setgid and sticky bits are not carried over.
            rustix::fs::fchmod(&fd, mode).map_err(open_errno)?;
            let _ = rustix::fs::fchown(
                &fd,
                Some(rustix::fs::Uid::from_raw(stat.st_uid)),
                Some(rustix::fs::Gid::from_raw(stat.st_gid)),
            );
        }
        Ok(File::new_upload(fd, flags, upload))
    }
}

/// Only regular files are served.
fn check_regular(fd: &OwnedFd) -> Result<(), OpenError> {
    let stat = rustix::fs::fstat(fd).map_err(open_errno)?;
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::RegularFile => Ok(()),
        FileType::Directory => Err(OpenError::IsADirectory),
        _ => Err(OpenError::NotRegularFile),
    }
}

/// Lexical checks, for precise errors on the common mistakes (security
/// does not rest on them: `RESOLVE_BENEATH` does), and the path beneath the
/// root: without its leading slashes, which name the root of the export.
pub(super) fn beneath(path: &[u8]) -> Result<&[u8], OpenError> {
    if path.is_empty() {
        return Err(OpenError::EmptyPath);
    }
    if path.len() > MAX_PATH_LEN {
        return Err(OpenError::PathTooLong {
            len: path.len(),
            max: MAX_PATH_LEN,
        });
    }
    if path.contains(&0) {
        return Err(OpenError::NulByte);
    }
    if path
        .split(|&b| b == b'/')
        .any(|component| component == b"..")
    {
        return Err(OpenError::ParentComponent);
    }
    let start = path.iter().position(|&b| b != b'/').unwrap_or(path.len());
    Ok(path.get(start..).unwrap_or_default())
}

/// Translate the protocol's open mode to `open(2)` flags.
fn oflags(flags: OpenFlags) -> Result<OFlags, OpenError> {
    // The wire validation is the single definition of a valid mode.
    let flags = OpenFlags::from_wire(flags.bits()).map_err(|_| OpenError::InvalidFlags)?;
    let access = match (
        flags.contains(OpenFlags::READ),
        flags.contains(OpenFlags::WRITE),
    ) {
        (true, true) => OFlags::RDWR,
        (false, true) => OFlags::WRONLY,
        _ => OFlags::RDONLY,
    };
    let mut oflags = access | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
    if flags.contains(OpenFlags::CREATE) {
        oflags |= OFlags::CREATE;
    }
    if flags.contains(OpenFlags::TRUNCATE) {
        oflags |= OFlags::TRUNC;
    }
    Ok(oflags)
}

fn open_errno(errno: Errno) -> OpenError {
    match errno {
        Errno::XDEV => OpenError::EscapesRoot,
        Errno::LOOP => OpenError::SymlinkLoop,
        Errno::NOENT => OpenError::NotFound,
        Errno::NOTDIR => OpenError::NotADirectory,
        Errno::ACCESS | Errno::PERM => OpenError::AccessDenied,
        Errno::ISDIR => OpenError::IsADirectory,
        Errno::NXIO => OpenError::NotRegularFile,
        Errno::NOSYS => OpenError::Unsupported,
        other => OpenError::Os(other.raw_os_error()),
    }
}
