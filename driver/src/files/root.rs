//! The exported directory and the only way to open files inside it.

use super::{File, OpenError};
use rdio_core::wire::{MAX_PATH_LEN, OpenFlags};
use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::os::fd::OwnedFd;
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

    /// Open `path` (relative, `/`-separated) with the protocol's open mode.
    ///
    /// Only regular files are opened. Opening never blocks on a FIFO: the open
    /// is non-blocking and anything but a regular file is refused with
    /// [`OpenError::NotRegularFile`].
    pub fn open(&self, path: impl AsRef<[u8]>, flags: OpenFlags) -> Result<File, OpenError> {
        let path = path.as_ref();
        check_path(path)?;
        let oflags = oflags(flags)?;
        let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
        // openat2 rejects a mode without O_CREAT (EINVAL), unlike openat.
        let mode = if oflags.contains(OFlags::CREATE) {
            Mode::from_bits_truncate(CREATE_MODE)
        } else {
            Mode::empty()
        };
        let mut attempts = 0;
        let mut waited = Duration::ZERO;
        let fd = loop {
            match rustix::fs::openat2(&self.dir, path, oflags, mode, resolve) {
                Ok(fd) => break fd,
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
        };
        let stat = rustix::fs::fstat(&fd).map_err(open_errno)?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(OpenError::NotRegularFile);
        }
        // O_NONBLOCK only served to keep a FIFO from blocking the open; clear it
        // so the descriptor behaves as a plain file.
        rustix::fs::fcntl_setfl(
            &fd,
            rustix::fs::fcntl_getfl(&fd).map_err(open_errno)? - OFlags::NONBLOCK,
        )
        .map_err(open_errno)?;
        Ok(File::new(fd, flags))
    }
}

/// Lexical checks, for precise errors on the common mistakes. Security does
/// not rest on them: `RESOLVE_BENEATH` does.
fn check_path(path: &[u8]) -> Result<(), OpenError> {
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
    if path.first() == Some(&b'/') {
        return Err(OpenError::AbsolutePath);
    }
    if path
        .split(|&b| b == b'/')
        .any(|component| component == b"..")
    {
        return Err(OpenError::ParentComponent);
    }
    Ok(())
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
        Errno::NOENT | Errno::NOTDIR => OpenError::NotFound,
        Errno::ACCESS | Errno::PERM | Errno::ROFS | Errno::TXTBSY => OpenError::AccessDenied,
        Errno::ISDIR | Errno::NXIO => OpenError::NotRegularFile,
        Errno::NOSYS => OpenError::Unsupported,
        other => OpenError::Os(other.raw_os_error()),
    }
}
