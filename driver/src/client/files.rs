//! Remote file operations on the side channel (`FileMessage`, pipe opcodes
//! `0x22..=0x2F`): list, look up, remove, make a directory, rename, set
//! attributes, hash a range of a file.
//!
//! They need only the side channel: [`RemoteTree`] borrows it from a
//! connected [`Client`](super::Client) ([`Client::tree`](super::Client::tree))
//! during a transfer, or from a [`FileSession`], a side channel with a
//! session and no RDMA connection (what `rdio ls` uses).

use super::{ClientError, Operation, authenticate};
use crate::access::{ChannelBinding, Credential};
use crate::pipe::{Pipe, PipeError};
use rdio_core::wire::files::{MAX_HASH_LEN, SETTABLE_MODE, SHA256_LEN};
use rdio_core::wire::{
    self, Attributes, FileMessage, MakeDirFlags, PipeMessage, RemoveFlags, RenameFlags,
    SetAttrFlags, Status,
};
use std::io::{Read, Write};

/// A directory entry of a listing, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its name in the directory.
    pub name: Vec<u8>,
    /// What it is.
    pub attributes: Attributes,
}

/// The remote file operations, over a borrowed side channel whose session
/// is open (past the resume key request).
#[derive(Debug)]
pub struct RemoteTree<'p, S> {
    pipe: &'p mut Pipe<S>,
}

impl<'p, S: Read + Write> RemoteTree<'p, S> {
    pub(super) fn new(pipe: &'p mut Pipe<S>) -> Self {
        Self { pipe }
    }

    /// Send `request` and return the file-operation reply.
    fn call(&mut self, request: FileMessage<'_>) -> Result<FileMessage<'_>, ClientError> {
        self.pipe.send(&PipeMessage::File(request))?;
        match self.pipe.receive()? {
            PipeMessage::File(reply) => Ok(reply),
            _ => Err(PipeError::Unexpected("expected a file operation's answer").into()),
        }
    }

    /// An `OpResult` for `request`, as a result.
    fn op(&mut self, operation: Operation, request: FileMessage<'_>) -> Result<(), ClientError> {
        let opcode = request.opcode();
        match self.call(request)? {
            FileMessage::OpResult {
                status,
                opcode: answered,
            } if answered == opcode => remote(operation, status),
            _ => Err(PipeError::Unexpected("expected the operation's result").into()),
        }
    }

    /// Every entry of the directory at `path`, sorted by name (bytewise),
    /// fetched page by page.
    pub fn list(&mut self, path: impl AsRef<[u8]>) -> Result<Vec<Entry>, ClientError> {
        let path = checked_path(path.as_ref())?;
        let mut entries: Vec<Entry> = Vec::new();
        loop {
            let after = entries.last().map_or(&[][..], |e| &e.name[..]).to_vec();
            let request = FileMessage::ListRequest {
                path,
                after: &after,
            };
            let before = entries.len();
            match self.call(request)? {
                FileMessage::ListResponse {
                    status: Status::Success,
                    end,
                    entries: page,
                } => {
                    for entry in &page {
                        // Each page continues after the last name: a name
                        // out of order would repeat or loop.
                        if entry.name <= &after[..] {
                            return Err(PipeError::Unexpected("a listing page out of order").into());
                        }
                        entries.push(Entry {
                            name: entry.name.to_vec(),
                            attributes: entry.attributes,
                        });
                    }
                    if end {
                        return Ok(entries);
                    }
                    if entries.len() == before {
                        return Err(
                            PipeError::Unexpected("an empty listing page before its end").into(),
                        );
                    }
                }
                FileMessage::ListResponse { status, .. } => {
                    return Err(ClientError::Remote {
                        operation: Operation::List,
                        status,
                    });
                }
                _ => return Err(PipeError::Unexpected("expected a listing page").into()),
            }
        }
    }

    /// The attributes of `path` itself (a symlink is reported, not
    /// followed).
    pub fn attributes(&mut self, path: impl AsRef<[u8]>) -> Result<Attributes, ClientError> {
        let path = checked_path(path.as_ref())?;
        match self.call(FileMessage::InfoRequest { path })? {
            FileMessage::InfoResponse {
                status: Status::Success,
                attributes,
            } => Ok(attributes),
            FileMessage::InfoResponse { status, .. } => Err(ClientError::Remote {
                operation: Operation::Info,
                status,
            }),
            _ => Err(PipeError::Unexpected("expected the path's attributes").into()),
        }
    }

    /// Remove the file or symlink at `path`; with
    /// [`RemoveFlags::DIRECTORY`], an empty directory too.
    pub fn remove(
        &mut self,
        path: impl AsRef<[u8]>,
        flags: RemoveFlags,
    ) -> Result<(), ClientError> {
        let path = checked_path(path.as_ref())?;
        self.op(
            Operation::Remove,
            FileMessage::RemoveRequest { flags, path },
        )
    }

    /// Create the directory `path` with permission bits `mode` (at most
    /// `0o777`; the server's umask applies).
    pub fn make_dir(
        &mut self,
        path: impl AsRef<[u8]>,
        mode: u32,
        flags: MakeDirFlags,
    ) -> Result<(), ClientError> {
        let path = checked_path(path.as_ref())?;
        if mode & !SETTABLE_MODE != 0 {
            return Err(ClientError::InvalidArgument(
                "a directory's permission bits are at most 0o777",
            ));
        }
        self.op(
            Operation::MakeDir,
            FileMessage::MakeDirRequest { flags, mode, path },
        )
    }

    /// Rename `from` to `to`.
    pub fn rename(
        &mut self,
        from: impl AsRef<[u8]>,
        to: impl AsRef<[u8]>,
        flags: RenameFlags,
    ) -> Result<(), ClientError> {
        let (from, to) = (checked_path(from.as_ref())?, checked_path(to.as_ref())?);
        // Both paths share one frame.
        let room = wire::MAX_PIPE_PAYLOAD - 8;
        if from.len() + to.len() > room {
            return Err(ClientError::TooLarge {
                len: (from.len() + to.len()) as u64,
                max: room as u64,
            });
        }
        self.op(
            Operation::Rename,
            FileMessage::RenameRequest { flags, from, to },
        )
    }

    /// Set the permission bits (at most `0o777`) and/or the modification
    /// time (nanoseconds since the Unix epoch) of the file or directory at
    /// `path`.
    pub fn set_attributes(
        &mut self,
        path: impl AsRef<[u8]>,
        mode: Option<u32>,
        modified_ns: Option<u64>,
    ) -> Result<(), ClientError> {
        let path = checked_path(path.as_ref())?;
        if mode.is_some_and(|mode| mode & !SETTABLE_MODE != 0) {
            return Err(ClientError::InvalidArgument(
                "only permission bits up to 0o777 can be set",
            ));
        }
        let mut flags = SetAttrFlags::empty();
        flags.set(SetAttrFlags::MODE, mode.is_some());
        flags.set(SetAttrFlags::MODIFIED, modified_ns.is_some());
        if flags.is_empty() {
            return Ok(());
        }
        self.op(
            Operation::SetAttributes,
            FileMessage::SetAttrRequest {
                flags,
                mode: mode.unwrap_or(0),
                modified_ns: modified_ns.unwrap_or(0),
                path,
            },
        )
    }

    /// The SHA-256 of bytes `offset..offset + length` of the file at
    /// `path`, and how many bytes that was (fewer when the file ends
    /// first). A range longer than [`MAX_HASH_LEN`] is asked for in several
    /// requests by the caller: this is one.
    pub fn hash_range(
        &mut self,
        path: impl AsRef<[u8]>,
        offset: u64,
        length: u64,
    ) -> Result<(u64, [u8; SHA256_LEN]), ClientError> {
        let path = checked_path(path.as_ref())?;
        if length == 0 || length > MAX_HASH_LEN {
            return Err(ClientError::TooLarge {
                len: length,
                max: MAX_HASH_LEN,
            });
        }
        match self.call(FileMessage::HashRequest {
            path,
            offset,
            length,
        })? {
            FileMessage::HashResponse {
                status: Status::Success,
                length: hashed,
                digest,
            } if hashed <= length => Ok((hashed, digest)),
            FileMessage::HashResponse {
                status: Status::Success,
                ..
            } => Err(PipeError::Unexpected("a hash of more bytes than asked").into()),
            FileMessage::HashResponse { status, .. } => Err(ClientError::Remote {
                operation: Operation::Hash,
                status,
            }),
            _ => Err(PipeError::Unexpected("expected a hash").into()),
        }
    }
}

/// A side channel with an open session and no RDMA connection: enough for
/// the remote file operations.
#[derive(Debug)]
pub struct FileSession<S> {
    pipe: Pipe<S>,
}

impl<S: Read + Write> FileSession<S> {
    /// Open a session on `stream` (the resume key request) without
    /// authenticating: for a side channel that needs none.
    pub fn start(stream: S) -> Result<Self, ClientError> {
        Self::start_on(Pipe::new(stream))
    }

    /// Prove `credential` on `stream` (bound to `binding`, the TLS
    /// session's client-auth exporter), then open a session.
    pub fn start_as(
        stream: S,
        credential: &Credential,
        binding: Option<ChannelBinding>,
    ) -> Result<Self, ClientError> {
        let mut pipe = Pipe::new(stream);
        authenticate(&mut pipe, credential, binding)?;
        Self::start_on(pipe)
    }

    fn start_on(mut pipe: Pipe<S>) -> Result<Self, ClientError> {
        pipe.send(&PipeMessage::ResumeKeyRequest)?;
        match pipe.receive()? {
            PipeMessage::ResumeKeyResponse { .. } => Ok(Self { pipe }),
            PipeMessage::Refused { status } => Err(ClientError::Refused(status)),
            _ => Err(PipeError::Unexpected("expected the server request resume key").into()),
        }
    }

    /// The remote file operations.
    pub fn tree(&mut self) -> RemoteTree<'_, S> {
        RemoteTree::new(&mut self.pipe)
    }
}

/// A path a request may carry: 1 to [`wire::MAX_PATH_LEN`] bytes, no NUL.
fn checked_path(path: &[u8]) -> Result<&[u8], ClientError> {
    if path.len() > wire::MAX_PATH_LEN {
        return Err(ClientError::TooLarge {
            len: path.len() as u64,
            max: wire::MAX_PATH_LEN as u64,
        });
    }
    if path.is_empty() || path.contains(&0) {
        return Err(ClientError::InvalidArgument(
            "a path must be non-empty and free of NUL bytes",
        ));
    }
    Ok(path)
}

fn remote(operation: Operation, status: Status) -> Result<(), ClientError> {
    match status {
        Status::Success => Ok(()),
        status => Err(ClientError::Remote { operation, status }),
    }
}
