//! The server's table of open files.

use super::{File, TableFull, UnknownFile};
pub use rdio_core::server::FileId;
use std::collections::HashMap;
use std::sync::Arc;

/// Open files by [`FileId`] (the protocol core's name for a driver's file),
/// bounded by a configurable limit so a client cannot exhaust the server's
/// descriptors (reported as `ResourceExhausted`).
///
/// Ids are never reused within a table, so a stale id held after a close can
/// never reach a file opened later. Files are shared (`Arc`) so I/O can run
/// without holding the lock that guards the table; a removed file closes when
/// the last in-flight operation on it lets go.
#[derive(Debug)]
pub struct FileTable {
    files: HashMap<FileId, Arc<File>>,
    next: u64,
    limit: usize,
}

impl FileTable {
    /// An empty table holding at most `limit` files.
    pub fn new(limit: usize) -> Self {
        Self {
            files: HashMap::new(),
            next: 1,
            limit,
        }
    }

    /// The configured limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Files currently open.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether no file is open.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Take ownership of `file` and give it a fresh id. When the table is
    /// full the file is dropped (closed) and [`TableFull`] returned.
    pub fn insert(&mut self, file: File) -> Result<FileId, TableFull> {
        if self.files.len() >= self.limit {
            return Err(TableFull { limit: self.limit });
        }
        let id = FileId(self.next);
        // u64 ids: exhausting them takes centuries at any open rate.
        self.next += 1;
        self.files.insert(id, Arc::new(file));
        Ok(id)
    }

    /// The open file `id`.
    pub fn get(&self, id: FileId) -> Result<&Arc<File>, UnknownFile> {
        self.files.get(&id).ok_or(UnknownFile(id))
    }

    /// Remove `id` from the table and hand the file back (dropping the last
    /// reference closes the descriptor).
    pub fn remove(&mut self, id: FileId) -> Result<Arc<File>, UnknownFile> {
        self.files.remove(&id).ok_or(UnknownFile(id))
    }
}
