//! `std::io` adapters over a registered remote file.

use super::{Client, ClientError};
use rdio_core::client::RemoteFile;
use rdio_transport::Transport;
use std::io::{self, Read, Seek, SeekFrom, Write};

/// A remote file with a cursor, for code written against `std::io`.
///
/// The protocol has no "stat": the end used by `SeekFrom::End` is the size
/// at registration, grown by this adapter's own writes.
#[derive(Debug)]
pub struct RemoteFileIo<'c, T: Transport, S: Read + Write> {
    client: &'c mut Client<T, S>,
    file: RemoteFile,
    position: u64,
    len: u64,
}

impl<'c, T: Transport, S: Read + Write> RemoteFileIo<'c, T, S> {
    pub(super) fn new(client: &'c mut Client<T, S>, file: RemoteFile) -> Self {
        Self {
            client,
            file,
            position: 0,
            len: file.size,
        }
    }

    /// The file.
    pub fn file(&self) -> RemoteFile {
        self.file
    }
}

impl<T: Transport, S: Read + Write> Read for RemoteFileIo<'_, T, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let got = self.client.read_at(&self.file, self.position, buf)?;
        self.position += got as u64;
        Ok(got)
    }
}

impl<T: Transport, S: Read + Write> Write for RemoteFileIo<'_, T, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.client.write_at(&self.file, self.position, buf)?;
        self.position += buf.len() as u64;
        self.len = self.len.max(self.position);
        Ok(buf.len())
    }

    /// Writes complete before `write` returns; nothing is buffered here.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<T: Transport, S: Read + Write> Seek for RemoteFileIo<'_, T, S> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(offset) => Some(offset),
            SeekFrom::Current(delta) => self.position.checked_add_signed(delta),
            SeekFrom::End(delta) => self.len.checked_add_signed(delta),
        };
        self.position = target.ok_or_else(|| {
            io::Error::from(ClientError::InvalidArgument(
                "seek before the start of the file",
            ))
        })?;
        Ok(self.position)
    }
}
