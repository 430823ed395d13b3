//! An open file with positioned I/O only.

use super::FileError;
use super::upload::Upload;
use rdio_core::wire::OpenFlags;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;

/// A regular file opened through a [`Root`](super::Root).
///
/// All I/O is positioned (`pread`/`pwrite` family): the protocol's requests
/// each carry their file offset (claim 15), several may be in flight on one
/// file, and none of them may depend on a shared cursor.
///
/// The open mode is checked before every call, so a write to a file opened
/// read-only fails with [`FileError::NotWritable`] (the kernel would refuse it
/// too, with a less telling `EBADF`).
///
/// An upload (opened with TRUNCATE, without IN_PLACE) is a new temporary
/// file beside its name: [`File::finish`] puts it in the name's place, and
/// dropping it unfinished removes it, leaving the name as it was.
#[derive(Debug)]
pub struct File {
    file: std::fs::File,
    flags: OpenFlags,
    upload: Option<Upload>,
}

/// One segment of a scattered read: file bytes at `offset` into `buf`.
#[derive(Debug)]
pub struct ReadSegment<'a> {
    /// File offset.
    pub offset: u64,
    /// Destination; its length is the segment's length.
    pub buf: &'a mut [u8],
}

/// One segment of a gathered write: `data` to file `offset`.
#[derive(Clone, Copy, Debug)]
pub struct WriteSegment<'a> {
    /// File offset.
    pub offset: u64,
    /// Bytes to write.
    pub data: &'a [u8],
}

impl std::os::fd::AsFd for File {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl File {
    pub(super) fn new(fd: OwnedFd, flags: OpenFlags) -> Self {
        Self {
            file: std::fs::File::from(fd),
            flags,
            upload: None,
        }
    }

    pub(super) fn new_upload(fd: OwnedFd, flags: OpenFlags, upload: Upload) -> Self {
        Self {
            file: std::fs::File::from(fd),
            flags,
            upload: Some(upload),
        }
    }

    /// The client is done with the file: an upload is flushed to disk and
    /// renamed over its name (see [`OpenFlags::is_upload`]); any other file
    /// has nothing to finish. Call it once the last write has landed; an
    /// error leaves the name as it was.
    pub fn finish(&self) -> Result<(), FileError> {
        match &self.upload {
            Some(upload) => upload.commit(&self.file),
            None => Ok(()),
        }
    }

    /// For an upload, the name of the temporary file it is written to until
    /// [`File::finish`] (in the directory of the file it replaces).
    pub fn upload_temp_name(&self) -> Option<&[u8]> {
        self.upload.as_ref().map(Upload::temp_name)
    }

    /// The mode the file was opened with.
    pub fn flags(&self) -> OpenFlags {
        self.flags
    }

    /// Current length in bytes.
    pub fn len(&self) -> Result<u64, FileError> {
        self.file
            .metadata()
            .map(|meta| meta.len())
            .map_err(|e| FileError::from_io(&e))
    }

    /// Its current metadata (`fstat`): size, times, device and inode.
    pub fn metadata(&self) -> Result<std::fs::Metadata, FileError> {
        self.file.metadata().map_err(|e| FileError::from_io(&e))
    }

    /// Whether the file is currently empty.
    pub fn is_empty(&self) -> Result<bool, FileError> {
        self.len().map(|len| len == 0)
    }

    /// Flush data and metadata to stable storage (`fsync`).
    pub fn sync(&self) -> Result<(), FileError> {
        self.file.sync_all().map_err(|e| FileError::from_io(&e))
    }

    /// Read up to `buf.len()` bytes at `offset`.
    ///
    /// Loops over short reads, so the result is `buf.len()` unless end of file
    /// was reached: a short count means EOF came first, and `0` means `offset`
    /// is at or past the end. Bytes of `buf` past the count are untouched.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, FileError> {
        self.check_read(offset, buf.len())?;
        let mut done = 0;
        while let Some(rest) = buf.get_mut(done..).filter(|rest| !rest.is_empty()) {
            match self.file.read_at(rest, offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(FileError::from_io(&e)),
            }
        }
        Ok(done)
    }

    /// Write all of `data` at `offset`, extending the file as needed. Either
    /// every byte is written or an error is returned (some bytes may have
    /// reached the file before it, and an upload then never takes its
    /// name: [`File::finish`] fails with the error).
    pub fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), FileError> {
        self.check_write(offset, data.len())?;
        let result = self.write_all_at(offset, data);
        self.note(result)
    }

    /// An upload remembers a failed write (mode and range checks change
    /// nothing, so they do not count).
    fn note(&self, result: Result<(), FileError>) -> Result<(), FileError> {
        if let (Err(error), Some(upload)) = (result, &self.upload) {
            upload.write_failed(error);
        }
        result
    }

    fn write_all_at(&self, offset: u64, data: &[u8]) -> Result<(), FileError> {
        let mut done = 0;
        while let Some(rest) = data.get(done..).filter(|rest| !rest.is_empty()) {
            match self.file.write_at(rest, offset + done as u64) {
                Ok(0) => return Err(FileError::WriteZero),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(FileError::from_io(&e)),
            }
        }
        Ok(())
    }

    /// Read the contiguous file range at `offset` into `bufs` in order
    /// (`preadv`), with [`File::read_at`]'s short-read semantics: the total is
    /// the sum of the buffer lengths unless EOF came first.
    pub fn read_vectored_at(
        &self,
        offset: u64,
        mut bufs: &mut [IoSliceMut<'_>],
    ) -> Result<usize, FileError> {
        self.check_read(offset, bufs.iter().map(|b| b.len()).sum())?;
        let mut done = 0;
        // Drop leading empty buffers; `advance_slices` keeps doing so, so a
        // non-empty list always starts with a non-empty buffer and a 0 from
        // the kernel really means EOF.
        IoSliceMut::advance_slices(&mut bufs, 0);
        while !bufs.is_empty() {
            match rustix::io::preadv(&self.file, bufs, offset + done as u64) {
                Ok(0) => break,
                Ok(n) => {
                    done += n;
                    IoSliceMut::advance_slices(&mut bufs, n);
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(errno) => return Err(FileError::Os(errno.raw_os_error())),
            }
        }
        Ok(done)
    }

    /// Write `bufs`, concatenated, to the contiguous file range at `offset`
    /// (`pwritev`); all or an error, as [`File::write_at`].
    pub fn write_vectored_at(
        &self,
        offset: u64,
        bufs: &mut [IoSlice<'_>],
    ) -> Result<(), FileError> {
        self.check_write(offset, bufs.iter().map(|b| b.len()).sum())?;
        let result = self.write_all_vectored_at(offset, bufs);
        self.note(result)
    }

    fn write_all_vectored_at(
        &self,
        offset: u64,
        mut bufs: &mut [IoSlice<'_>],
    ) -> Result<(), FileError> {
        let mut done = 0;
        // As in `read_vectored_at`: a 0 then really means no progress.
        IoSlice::advance_slices(&mut bufs, 0);
        while !bufs.is_empty() {
            match rustix::io::pwritev(&self.file, bufs, offset + done as u64) {
                Ok(0) => return Err(FileError::WriteZero),
                Ok(n) => {
                    done += n;
                    IoSlice::advance_slices(&mut bufs, n);
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(errno) => return Err(FileError::Os(errno.raw_os_error())),
            }
        }
        Ok(())
    }

    /// Read independent segments, each at its own offset (the protocol's
    /// vectored read, claim 15). Every segment is read as by
    /// [`File::read_at`]; returns the total bytes read over all segments.
    /// Nothing is read unless every segment's range is valid.
    pub fn read_segments(&self, segments: &mut [ReadSegment<'_>]) -> Result<u64, FileError> {
        for segment in segments.iter() {
            self.check_read(segment.offset, segment.buf.len())?;
        }
        let mut total = 0u64;
        for segment in segments.iter_mut() {
            total += self.read_at(segment.offset, segment.buf)? as u64;
        }
        Ok(total)
    }

    /// Write independent segments, each at its own offset (the protocol's
    /// vectored write, claims 15 and 17). Nothing is written unless every
    /// segment's range is valid; returns the total bytes written.
    pub fn write_segments(&self, segments: &[WriteSegment<'_>]) -> Result<u64, FileError> {
        for segment in segments {
            self.check_write(segment.offset, segment.data.len())?;
        }
        let mut total = 0u64;
        for segment in segments {
            self.write_at(segment.offset, segment.data)?;
            total += segment.data.len() as u64;
        }
        Ok(total)
    }

    /// Whether a read of `len` bytes at `offset` is allowed: the open mode
    /// and the offset range, as [`File::read_at`] checks them.
    pub fn check_read(&self, offset: u64, len: usize) -> Result<(), FileError> {
        if !self.flags.contains(OpenFlags::READ) {
            return Err(FileError::NotReadable);
        }
        check_range(offset, len)
    }

    fn check_write(&self, offset: u64, len: usize) -> Result<(), FileError> {
        if !self.flags.contains(OpenFlags::WRITE) {
            return Err(FileError::NotWritable);
        }
        check_range(offset, len)
    }
}

/// File offsets are `off_t` (i64): the whole range must fit below `i64::MAX`,
/// so the loops above never compute an offset the kernel rejects half-way.
fn check_range(offset: u64, len: usize) -> Result<(), FileError> {
    match offset.checked_add(len as u64) {
        Some(end) if end <= i64::MAX as u64 => Ok(()),
        _ => Err(FileError::OffsetOverflow),
    }
}
