//! The server's answers to the side channel's remote file operations
//! (`FileMessage`, pipe opcodes `0x22..=0x2F`): each one is carried out on
//! the exported [`Root`](crate::files::Root), confined like an open,
//! refused with `ReadOnly` when it would change the tree of a read-only
//! export or for a read-only client, and written to the access log
//! (`rdio::access`) with its outcome.

use super::{PipeSession, Server, ServerError};
use crate::files::OpenError;
use crate::pipe::PipeError;
use rdio_core::wire::files::{MAX_LIST_ENTRY_BYTES, SHA256_LEN};
use rdio_core::wire::{
    Attributes, DirEntries, DirEntriesWriter, FileMessage, MakeDirFlags, PipeMessage, RemoveFlags,
    RenameFlags, SetAttrFlags, Status,
};

impl Server {
    /// The reply to a remote file operation. Only requests are answered
    /// (a response sent to the server ends the pipe, as for any message
    /// only a server sends), and only after the resume key request, like
    /// opens and stats.
    pub(super) fn answer_file<'s>(
        &'s self,
        pipe: &'s mut PipeSession,
        message: &FileMessage<'_>,
    ) -> Result<PipeMessage<'s>, ServerError> {
        if message.from_server() {
            return Err(PipeError::Unexpected("a response sent to the server").into());
        }
        if pipe.session.is_none() {
            return Err(
                PipeError::Unexpected("file operation before the resume key request").into(),
            );
        }
        let read_only = pipe.read_only || self.options.read_only;
        let log = AccessLog {
            peer: pipe.peer.clone(),
            client: pipe.client_name().unwrap_or("-").to_owned(),
        };
        // The operations that change the tree, refused on a read-only
        // export or for a read-only client before anything is touched.
        let changes = matches!(
            message,
            FileMessage::RemoveRequest { .. }
                | FileMessage::MakeDirRequest { .. }
                | FileMessage::RenameRequest { .. }
                | FileMessage::SetAttrRequest { .. }
        );
        if changes && read_only {
            log.refused(message);
            return Ok(PipeMessage::File(FileMessage::OpResult {
                status: Status::ReadOnly,
                opcode: message.opcode(),
            }));
        }
        let root = &self.root;
        let reply = match *message {
            FileMessage::ListRequest { path, after } => {
                // The page is built in the session's buffer, which the
                // reply borrows until it is sent.
                let page = &mut pipe.page;
                page.resize(MAX_LIST_ENTRY_BYTES, 0);
                let mut writer = DirEntriesWriter::new(page);
                let listed = root.list(path, after, &mut writer);
                let count = writer.len();
                let outcome = listed.map(|end| (end, writer.finish()));
                log.done("list", path, None, &outcome.map(|(end, _)| end), |end| {
                    format!("{count} entries{}", if *end { ", end" } else { "" })
                });
                let (status, end, entries) = match outcome {
                    Ok((end, entries)) => (Status::Success, end, entries),
                    Err(error) => (error.status(), true, DirEntries::EMPTY),
                };
                return Ok(PipeMessage::File(FileMessage::ListResponse {
                    status,
                    end,
                    entries,
                }));
            }
            FileMessage::InfoRequest { path } => {
                let outcome = root.attributes(path);
                log.done("info", path, None, &outcome, |a| a.kind.as_str().to_owned());
                let (status, attributes) = match outcome {
                    Ok(attributes) => (Status::Success, attributes),
                    Err(error) => (error.status(), Attributes::NONE),
                };
                FileMessage::InfoResponse { status, attributes }
            }
            FileMessage::RemoveRequest { flags, path } => {
                let outcome = root.remove(path, flags.contains(RemoveFlags::DIRECTORY));
                log.done("remove", path, None, &outcome, |()| String::new());
                op_result(message, &outcome)
            }
            FileMessage::MakeDirRequest { flags, mode, path } => {
                let parents = flags.contains(MakeDirFlags::PARENTS);
                let outcome = root.make_dir(path, mode, parents);
                log.done("mkdir", path, None, &outcome, |()| format!("{mode:#o}"));
                op_result(message, &outcome)
            }
            FileMessage::RenameRequest { flags, from, to } => {
                let no_replace = flags.contains(RenameFlags::NO_REPLACE);
                let outcome = root.rename(from, to, no_replace);
                log.done("rename", from, Some(to), &outcome, |()| String::new());
                op_result(message, &outcome)
            }
            FileMessage::SetAttrRequest {
                flags,
                mode,
                modified_ns,
                path,
            } => {
                let mode = flags.contains(SetAttrFlags::MODE).then_some(mode);
                let modified = flags
                    .contains(SetAttrFlags::MODIFIED)
                    .then_some(modified_ns);
                let outcome = root.set_attributes(path, mode, modified);
                log.done("setattr", path, None, &outcome, |()| {
                    format!("mode {mode:?} modified_ns {modified:?}")
                });
                op_result(message, &outcome)
            }
            FileMessage::HashRequest {
                path,
                offset,
                length,
            } => {
                let outcome = root.hash_range(path, offset, length);
                log.done("hash", path, None, &outcome, |(hashed, _)| {
                    format!("{hashed} bytes from {offset}")
                });
                let (status, length, digest) = match outcome {
                    Ok((hashed, digest)) => (Status::Success, hashed, digest),
                    Err(error) => (error.status(), 0, [0; SHA256_LEN]),
                };
                FileMessage::HashResponse {
                    status,
                    length,
                    digest,
                }
            }
            // Server messages were refused above; `FileMessage` may grow.
            _ => return Err(PipeError::Unexpected("a response sent to the server").into()),
        };
        Ok(PipeMessage::File(reply))
    }
}

/// The `OpResult` answering `request`.
fn op_result(request: &FileMessage<'_>, outcome: &Result<(), OpenError>) -> FileMessage<'static> {
    FileMessage::OpResult {
        status: outcome.map_or_else(|e| e.status(), |()| Status::Success),
        opcode: request.opcode(),
    }
}

/// One access-log line per operation, with the client that asked.
struct AccessLog {
    peer: String,
    client: String,
}

impl AccessLog {
    fn client(&self) -> &str {
        &self.client
    }

    /// An operation that would change a read-only tree.
    fn refused(&self, message: &FileMessage<'_>) {
        tracing::warn!(
            target: "rdio::access",
            peer = %self.peer,
            client = self.client(),
            opcode = message.opcode(),
            "file operation refused: read-only"
        );
    }

    /// An operation carried out (or failed): `detail` describes a
    /// success. An escape attempt is a warning of its own, as for opens.
    fn done<T>(
        &self,
        op: &str,
        path: &[u8],
        to: Option<&[u8]>,
        outcome: &Result<T, OpenError>,
        detail: impl FnOnce(&T) -> String,
    ) {
        let path = String::from_utf8_lossy(path);
        let to = to.map(String::from_utf8_lossy).unwrap_or_default();
        match outcome {
            Ok(value) => tracing::info!(
                target: "rdio::access",
                peer = %self.peer,
                client = self.client(),
                op,
                path = %path,
                to = %to,
                detail = %detail(value),
                status = %Status::Success,
                "file operation"
            ),
            Err(error @ (OpenError::ParentComponent | OpenError::EscapesRoot)) => {
                tracing::warn!(
                    target: "rdio::access",
                    peer = %self.peer,
                    client = self.client(),
                    op,
                    path = %path,
                    to = %to,
                    %error,
                    "escape outside the root attempted"
                );
            }
            Err(error) => tracing::info!(
                target: "rdio::access",
                peer = %self.peer,
                client = self.client(),
                op,
                path = %path,
                to = %to,
                %error,
                status = %error.status(),
                "file operation"
            ),
        }
    }
}
