//! Atomic uploads: a file opened with TRUNCATE (and without IN_PLACE) is
//! written to a hidden temporary file beside its name and renamed over the
//! name only when the client closes it; until then, and for ever if the
//! client never does, the name keeps its old contents.
//!
//! This is what rsync and SMB servers do by default: a transfer cut short
//! (a lost connection, a terminated one, a server that stops) must not
//! leave a partial file that looks complete under the final name.
//!
//! Confinement: the parent directory is opened once, beneath the root with
//! the same `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)` rules as every
//! other open, and the temporary file is created, renamed and removed
//! relative to that descriptor by single-component names, so nothing here
//! resolves a path the kernel has not confined.

use super::FileError;
use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::{Mutex, PoisonError};

/// Longest name a Linux file system takes (`NAME_MAX`).
const NAME_MAX: usize = 255;
/// `.` + name + [`TEMP_SUFFIX`] + random characters.
const TEMP_SUFFIX: &[u8] = b".rdio-";
const TEMP_RANDOM: usize = 6;
/// Names tried before giving up (each collision is a 1 in 36^6 chance).
const TEMP_ATTEMPTS: usize = 16;

/// The temporary file of an upload and the name it takes at
/// [`Upload::commit`]; dropped uncommitted, it removes the temporary file.
pub(super) struct Upload {
    /// The directory holding both names (opened beneath the root).
    dir: OwnedFd,
    /// The temporary file's name in `dir`: `.NAME.rdio-XXXXXX`.
    temp: Vec<u8>,
    /// The final name in `dir`.
    name: Vec<u8>,
    state: Mutex<State>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Writing,
    /// A write failed: the file may lack bytes the client meant it to
    /// have, so it must never take the name (the first error is kept).
    Failed(FileError),
    Committed,
}

impl fmt::Debug for Upload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upload")
            .field("temp", &String::from_utf8_lossy(&self.temp))
            .field("name", &String::from_utf8_lossy(&self.name))
            .finish_non_exhaustive()
    }
}

impl Upload {
    /// Create a new temporary file for `name` in `dir` (`O_EXCL`, so an
    /// existing file or symlink of that name is never opened), with
    /// `access` (`O_RDWR` or `O_WRONLY`) and permission bits `mode`.
    pub(super) fn create(
        dir: OwnedFd,
        name: &[u8],
        access: OFlags,
        mode: Mode,
    ) -> Result<(Self, OwnedFd), Errno> {
        let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
        let oflags = access | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        let mut attempts = 0;
        loop {
            let temp = temp_name(name)?;
            match rustix::fs::openat2(&dir, OsStr::from_bytes(&temp), oflags, mode, resolve) {
                Ok(fd) => {
                    let upload = Self {
                        dir,
                        temp,
                        name: name.to_vec(),
                        state: Mutex::new(State::Writing),
                    };
                    return Ok((upload, fd));
                }
                Err(Errno::EXIST | Errno::AGAIN | Errno::INTR) if attempts < TEMP_ATTEMPTS => {
                    attempts += 1;
                }
                Err(errno) => return Err(errno),
            }
        }
    }

    /// Remember a failed write (see [`Upload::commit`]).
    pub(super) fn write_failed(&self, error: FileError) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if *state == State::Writing {
            *state = State::Failed(error);
        }
    }

    /// The temporary file's name (for tests and messages).
    pub(super) fn temp_name(&self) -> &[u8] {
        &self.temp
    }

    /// Put the upload in its name's place: flush the file's data to disk,
    /// rename it over the name (atomically replacing a file, or the symlink
    /// itself, that was there), then flush the directory so the rename
    /// survives a crash too. Without the first flush a crash soon after
    /// the rename could leave the name pointing at an empty or partial
    /// file, the old contents gone as well (the classic delayed-allocation
    /// loss), which is exactly what an atomic upload exists to prevent.
    ///
    /// An upload a write failed on is never committed: the write's error
    /// is returned again, and the name stays as it was.
    ///
    /// A second call does nothing. On error the name is untouched (unless
    /// only the directory flush failed: then the rename happened but may
    /// not survive a crash) and the temporary file goes when the upload is
    /// dropped.
    pub(super) fn commit(&self, file: &std::fs::File) -> Result<(), FileError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match *state {
            State::Committed => return Ok(()),
            State::Failed(error) => return Err(error),
            State::Writing => {}
        }
        file.sync_all().map_err(|e| FileError::from_io(&e))?;
        rustix::fs::renameat(
            &self.dir,
            OsStr::from_bytes(&self.temp),
            &self.dir,
            OsStr::from_bytes(&self.name),
        )
        .map_err(os)?;
        *state = State::Committed;
        rustix::fs::fsync(&self.dir).map_err(os)
    }
}

impl Drop for Upload {
    /// An upload never committed leaves nothing behind.
    fn drop(&mut self) {
        let state = *self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        if state != State::Committed {
            let _ = rustix::fs::unlinkat(
                self.dir.as_fd(),
                OsStr::from_bytes(&self.temp),
                AtFlags::empty(),
            );
        }
    }
}

fn os(errno: Errno) -> FileError {
    FileError::Os(errno.raw_os_error())
}

/// `.NAME.rdio-XXXXXX`: hidden, beside the name, random. A name too long
/// to take the affixes within `NAME_MAX` is shortened (the temporary name
/// only has to be unique, not to spell the final one).
fn temp_name(name: &[u8]) -> Result<Vec<u8>, Errno> {
    let room = NAME_MAX - 1 - TEMP_SUFFIX.len() - TEMP_RANDOM;
    let stem = name.get(..room).unwrap_or(name);
    let mut random = [0u8; TEMP_RANDOM];
    getrandom::fill(&mut random).map_err(|_| Errno::IO)?;
    const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut temp = Vec::with_capacity(NAME_MAX);
    temp.push(b'.');
    temp.extend_from_slice(stem);
    temp.extend_from_slice(TEMP_SUFFIX);
    temp.extend(
        random
            .iter()
            .map(|&b| ALPHABET[usize::from(b) % ALPHABET.len()]),
    );
    Ok(temp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_are_hidden_unique_and_fit() {
        let a = temp_name(b"file.bin").expect("name");
        let b = temp_name(b"file.bin").expect("name");
        assert!(a.starts_with(b".file.bin.rdio-"), "{a:?}");
        assert_eq!(a.len(), ".file.bin.rdio-".len() + TEMP_RANDOM);
        assert_ne!(a, b);
        let long = temp_name(&[b'x'; NAME_MAX]).expect("name");
        assert_eq!(long.len(), NAME_MAX);
        assert!(long.starts_with(b".xxx"));
    }
}
