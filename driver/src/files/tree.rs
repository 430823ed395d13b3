//! The remote file operations on the exported tree: list a directory, look
//! up a path's attributes, remove, make a directory, rename, set mode and
//! modification time, hash a range of a file (the side channel's
//! `FileMessage`s, `docs/PROTOCOL.md` "Remote file operations").
//!
//! Confinement is the same as for opens ([`Root::open`]): the path is
//! checked lexically (no `..`), then the directory that holds the named
//! entry is opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`
//! relative to the root's descriptor, and the operation acts on one
//! component name relative to that directory (`unlinkat`, `mkdirat`,
//! `renameat2`, `fstatat(AT_SYMLINK_NOFOLLOW)`). A symlink on the way that
//! leads outside the root is refused by the kernel (`EXDEV`), and the last
//! component is never followed: removing or renaming a symlink acts on the
//! link, looking one up reports the link. Setting attributes opens the
//! file itself beneath the root with `O_NOFOLLOW`, so it never reaches
//! through a link either.

use super::{OpenError, Root};
use rdio_core::wire::files::{MAX_LIST_ENTRY_BYTES, PushError, SETTABLE_MODE};
use rdio_core::wire::{Attributes, DirEntriesWriter, DirEntry, EntryKind, OpenFlags};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;
use std::collections::BinaryHeap;
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;

/// Most entries a listing page can hold: every entry takes at least its
/// fixed part and a one-byte name.
const PAGE_ENTRIES: usize = MAX_LIST_ENTRY_BYTES / (rdio_core::wire::files::ATTRIBUTES_LEN + 1);

/// Bytes read per `pread` while hashing.
const HASH_CHUNK: usize = 1 << 20;

/// Permission bits of directories a make-directory request with `PARENTS`
/// creates on the way (before the umask), as `mkdir -p` does.
const PARENT_MODE: u32 = 0o755;

/// A path beneath the root, split into its components: leading, trailing
/// and repeated slashes and `.` components dropped (`a/./b/` is `a/b`),
/// `..` refused. Empty: the root itself.
struct Components<'p>(Vec<&'p [u8]>);

impl<'p> Components<'p> {
    fn of(path: &'p [u8]) -> Result<Self, OpenError> {
        let path = super::root::beneath(path)?;
        Ok(Self(
            path.split(|&b| b == b'/')
                .filter(|c| !c.is_empty() && *c != b".")
                .collect(),
        ))
    }

    /// The directory holding the last component, and that component's
    /// name; `None` for the root itself.
    fn split_last(&self) -> Option<(Vec<u8>, &'p [u8])> {
        let (name, parent) = self.0.split_last()?;
        Some((join(parent), name))
    }

    fn joined(&self) -> Vec<u8> {
        join(&self.0)
    }
}

/// `a/b/c` from its components, `.` for none.
fn join(components: &[&[u8]]) -> Vec<u8> {
    if components.is_empty() {
        return b".".to_vec();
    }
    components.join(&b'/')
}

fn os(name: &[u8]) -> &OsStr {
    OsStr::from_bytes(name)
}

impl Root {
    /// A directory beneath the root, as a descriptor for `*at` calls.
    fn directory(&self, path: &[u8]) -> Result<OwnedFd, OpenError> {
        self.open_beneath(
            self.dir(),
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
    }

    /// The attributes of `path` itself (`lstat`: a symlink is reported, not
    /// followed); the root's for an empty path or `/`.
    pub fn attributes(&self, path: &[u8]) -> Result<Attributes, OpenError> {
        let components = Components::of(path)?;
        let stat = match components.split_last() {
            None => rustix::fs::fstat(self.dir()),
            Some((parent, name)) => rustix::fs::statat(
                self.directory(&parent)?,
                os(name),
                AtFlags::SYMLINK_NOFOLLOW,
            ),
        };
        Ok(attributes(&stat.map_err(op_errno)?))
    }

    /// One page of the listing of the directory at `path`: the entries
    /// whose names sort (bytewise) after `after`, in that order, as many
    /// as `page` takes. Returns whether the listing is complete (no name
    /// after the last one written).
    ///
    /// Each call reads the whole directory but keeps only the page's worth
    /// of smallest names (a bounded heap), so listing a directory of `n`
    /// entries costs `n / page` directory reads and no memory beyond a
    /// page. An entry removed between the read and its `lstat` is left
    /// out.
    pub fn list(
        &self,
        path: &[u8],
        after: &[u8],
        page: &mut DirEntriesWriter<'_>,
    ) -> Result<bool, OpenError> {
        let components = Components::of(path)?;
        let dir = self.open_beneath(
            self.dir(),
            &components.joined(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        // The page's candidates: the smallest names after `after`, in a
        // max-heap so the largest is dropped when a smaller one comes.
        let mut smallest: BinaryHeap<Vec<u8>> = BinaryHeap::with_capacity(PAGE_ENTRIES + 1);
        let mut more = false;
        let mut entries = rustix::fs::Dir::read_from(&dir).map_err(op_errno)?;
        while let Some(entry) = entries.read() {
            let entry = entry.map_err(op_errno)?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." || name <= after {
                continue;
            }
            smallest.push(name.to_vec());
            if smallest.len() > PAGE_ENTRIES {
                smallest.pop();
                more = true;
            }
        }
        for name in smallest.into_sorted_vec() {
            let stat = match rustix::fs::statat(&dir, os(&name), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(stat) => stat,
                Err(Errno::NOENT) => continue,
                Err(errno) => return Err(op_errno(errno)),
            };
            let entry = DirEntry {
                name: &name,
                attributes: attributes(&stat),
            };
            match page.push(&entry) {
                Ok(()) => {}
                Err(PushError::Full(_)) => return Ok(false),
                // A name the protocol cannot carry (longer than 255 bytes:
                // no Linux file system makes one) is left out.
                Err(PushError::Invalid(_)) => continue,
            }
        }
        Ok(!more)
    }

    /// Remove the file or symlink at `path`, or, with `directory`, the
    /// empty directory (a directory without it is
    /// [`OpenError::IsADirectory`]; a non-empty one `ENOTEMPTY`).
    pub fn remove(&self, path: &[u8], directory: bool) -> Result<(), OpenError> {
        let components = Components::of(path)?;
        let (parent, name) = components.split_last().ok_or(OpenError::IsRoot)?;
        let parent = self.directory(&parent)?;
        let is_dir = directory
            && rustix::fs::statat(&parent, os(name), AtFlags::SYMLINK_NOFOLLOW)
                .map(|stat| FileType::from_raw_mode(stat.st_mode) == FileType::Directory)
                .map_err(op_errno)?;
        let flags = if is_dir {
            AtFlags::REMOVEDIR
        } else {
            AtFlags::empty()
        };
        rustix::fs::unlinkat(&parent, os(name), flags).map_err(|errno| match errno {
            // Some file systems say EEXIST for a directory that is not empty.
            Errno::EXIST => op_errno(Errno::NOTEMPTY),
            other => op_errno(other),
        })
    }

    /// Create the directory `path` with permission bits `mode` (at most
    /// `0o777`, less the server's umask). With `parents`, missing parents
    /// are created too (`0o755`), and an existing directory is success.
    pub fn make_dir(&self, path: &[u8], mode: u32, parents: bool) -> Result<(), OpenError> {
        if mode & !SETTABLE_MODE != 0 {
            return Err(OpenError::InvalidMode);
        }
        let components = Components::of(path)?;
        if components.0.is_empty() {
            // The root exists.
            return if parents {
                Ok(())
            } else {
                Err(op_errno(Errno::EXIST))
            };
        }
        if !parents {
            let (parent, name) = components.split_last().ok_or(OpenError::IsRoot)?;
            let parent = self.directory(&parent)?;
            return rustix::fs::mkdirat(&parent, os(name), Mode::from_bits_truncate(mode))
                .map_err(op_errno);
        }
        let last = components.0.len() - 1;
        for (i, name) in components.0.iter().enumerate() {
            let parent = self.directory(&join(&components.0[..i]))?;
            let mode = if i == last { mode } else { PARENT_MODE };
            match rustix::fs::mkdirat(&parent, os(name), Mode::from_bits_truncate(mode)) {
                Ok(()) => {}
                // What is there must be a directory beneath the root (a
                // symlink is followed, confined like any path).
                Err(Errno::EXIST) => {
                    self.directory(&join(&components.0[..=i]))?;
                }
                Err(errno) => return Err(op_errno(errno)),
            }
        }
        Ok(())
    }

    /// Rename `from` to `to`, both beneath the root; with `no_replace`, an
    /// existing `to` is `EEXIST` instead of being replaced.
    pub fn rename(&self, from: &[u8], to: &[u8], no_replace: bool) -> Result<(), OpenError> {
        let (from, to) = (Components::of(from)?, Components::of(to)?);
        let (from_parent, from_name) = from.split_last().ok_or(OpenError::IsRoot)?;
        let (to_parent, to_name) = to.split_last().ok_or(OpenError::IsRoot)?;
        let (from_parent, to_parent) = (self.directory(&from_parent)?, self.directory(&to_parent)?);
        let flags = if no_replace {
            rustix::fs::RenameFlags::NOREPLACE
        } else {
            rustix::fs::RenameFlags::empty()
        };
        rustix::fs::renameat_with(&from_parent, os(from_name), &to_parent, os(to_name), flags)
            .map_err(|errno| match errno {
                Errno::INVAL => OpenError::IntoItself,
                other => op_errno(other),
            })
    }

    /// Set the permission bits (at most `0o777`) and/or the modification
    /// time (nanoseconds since the epoch; the access time is left alone)
    /// of the file or directory at `path`. A symlink is refused (the file
    /// is opened with `O_NOFOLLOW`), and so is the root itself.
    pub fn set_attributes(
        &self,
        path: &[u8],
        mode: Option<u32>,
        modified_ns: Option<u64>,
    ) -> Result<(), OpenError> {
        if mode.is_some_and(|mode| mode & !SETTABLE_MODE != 0) {
            return Err(OpenError::InvalidMode);
        }
        let components = Components::of(path)?;
        if components.0.is_empty() {
            return Err(OpenError::IsRoot);
        }
        let fd = self.open_beneath(
            self.dir(),
            &components.joined(),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        if let Some(mode) = mode {
            rustix::fs::fchmod(&fd, Mode::from_bits_truncate(mode)).map_err(op_errno)?;
        }
        if let Some(ns) = modified_ns {
            let omit = Timespec {
                tv_sec: 0,
                tv_nsec: rustix::fs::UTIME_OMIT,
            };
            let modified = Timespec {
                tv_sec: i64::try_from(ns / 1_000_000_000).unwrap_or(i64::MAX),
                // Below 10^9: fits every platform's nanoseconds type.
                tv_nsec: (ns % 1_000_000_000).try_into().unwrap_or_default(),
            };
            let times = Timestamps {
                last_access: omit,
                last_modification: modified,
            };
            rustix::fs::futimens(&fd, &times).map_err(op_errno)?;
        }
        Ok(())
    }

    /// The SHA-256 of bytes `offset..offset + length` of the regular file
    /// at `path` (opened for reading as an open request's would be), and
    /// how many bytes that was: fewer than `length` when the file ends
    /// first.
    pub fn hash_range(
        &self,
        path: &[u8],
        offset: u64,
        length: u64,
    ) -> Result<(u64, [u8; 32]), OpenError> {
        let file = self.open(path, OpenFlags::READ)?;
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        let mut buf = vec![0u8; HASH_CHUNK];
        let mut done = 0u64;
        while done < length {
            let want = usize::try_from(length - done).map_or(HASH_CHUNK, |n| n.min(HASH_CHUNK));
            let at = offset
                .checked_add(done)
                .ok_or(OpenError::Os(Errno::INVAL.raw_os_error()))?;
            let n = match file.read_at(at, &mut buf[..want]) {
                Ok(n) => n,
                Err(super::FileError::Os(errno)) => return Err(OpenError::Os(errno)),
                Err(_) => return Err(OpenError::Os(Errno::IO.raw_os_error())),
            };
            if n == 0 {
                break;
            }
            context.update(&buf[..n]);
            done += n as u64;
        }
        let mut digest = [0u8; 32];
        digest.copy_from_slice(context.finish().as_ref());
        Ok((done, digest))
    }
}

/// An errno of an operation on a name (not of a confined open, whose
/// `EXDEV` means an escape: [`super::root`]'s mapping).
fn op_errno(errno: Errno) -> OpenError {
    match errno {
        Errno::NOENT => OpenError::NotFound,
        Errno::NOTDIR => OpenError::NotADirectory,
        Errno::ISDIR => OpenError::IsADirectory,
        Errno::ACCESS | Errno::PERM => OpenError::AccessDenied,
        other => OpenError::Os(other.raw_os_error()),
    }
}

/// The wire attributes of `stat`. Field widths differ between platforms
/// (`st_size` is signed, `st_ino` is not, ...), hence the lossless
/// widening through `i128` before each conversion.
fn attributes(stat: &rustix::fs::Stat) -> Attributes {
    let kind = match FileType::from_raw_mode(stat.st_mode) {
        FileType::RegularFile => EntryKind::File,
        FileType::Directory => EntryKind::Directory,
        FileType::Symlink => EntryKind::Symlink,
        _ => EntryKind::Other,
    };
    let unsigned = |value: i128| u64::try_from(value.max(0)).unwrap_or(u64::MAX);
    let modified = i128::from(stat.st_mtime)
        .saturating_mul(1_000_000_000)
        .saturating_add(i128::from(stat.st_mtime_nsec));
    let ino = unsigned(i128::from(stat.st_ino));
    let dev = unsigned(i128::from(stat.st_dev));
    Attributes {
        kind,
        mode: stat.st_mode & rdio_core::wire::files::MODE_BITS,
        size: unsigned(i128::from(stat.st_size)),
        modified_ns: unsigned(modified),
        // As `crate::server::file_id` derives it from std's metadata.
        file_id: ino ^ dev.rotate_left(32),
    }
}
