//! The server's file backend: a directory exported as a [`Root`], the
//! [`File`]s opened beneath it with positioned I/O, and the [`FileTable`]
//! that names open files by [`FileId`].
//!
//! This is where the protocol's requests end up: an open on the pipe
//! (claim 8) becomes [`Root::open`], a register-file (claims 10, 11) a
//! [`FileTable::insert`], reads and vectored reads (claims 15, 16)
//! [`File::read_at`] / [`File::read_segments`] into memory the server then
//! RDMA-writes to the client, writes and vectored writes [`File::write_at`] /
//! [`File::write_segments`] from the receive buffers the data arrived in,
//! and the client's close (claim 15) [`File::finish`], which puts an upload
//! in its name's place. The side channel's remote file operations (list,
//! look up, remove, make a directory, rename, set attributes, hash a range)
//! are methods of [`Root`] too, confined the same way (`tree`).

mod error;
mod file;
mod mapping;
mod root;
mod table;
mod tree;
mod upload;

pub use error::{FileError, OpenError, TableFull, UnknownFile, errno_status};
pub use file::{File, ReadSegment, WriteSegment};
pub use mapping::{FileLease, FileMap, probe_leases};
pub use root::Root;
pub use table::{FileId, FileTable};
