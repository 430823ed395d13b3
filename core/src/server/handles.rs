//! Phase 4, registration and close: registering a file opened on the pipe
//! by its resume key (claims 10, 11), cancel and close of registered
//! handles (claim 15).

use super::*;
use crate::slots::SlotTable;

impl<const R: usize, const F: usize> Connection<R, F> {
    pub(super) fn cancel(&mut self, target: u32) -> Result<Status, Violation> {
        let Some(index) = self.find(target) else {
            return Ok(Status::NotFound);
        };
        let Some(op) = self.ops.get_mut(index) else {
            return Ok(Status::NotFound);
        };
        if !matches!(op.kind, OpKind::Read { .. } | OpKind::Write { .. }) {
            return Ok(Status::NotSupported);
        }
        let queued = op.stage == Stage::Queued;
        op.cancelled = true;
        op.result = Status::Cancelled;
        if op.stage == Stage::Receiving {
            // The client sends no fragment after its cancel.
            op.stage = Stage::Dispatched;
        }
        if queued {
            self.unqueue(target);
        }
        self.try_finish(index)?;
        Ok(Status::Success)
    }

    pub(super) fn close(&mut self, id: u32, handle: u32) -> Result<(), Violation> {
        if !self.handles.start_closing(handle) {
            return self.reply(
                id,
                1,
                Body::Completion {
                    status: Status::InvalidHandle,
                    bytes: 0,
                },
            );
        }
        self.closing_handles = self.closing_handles.saturating_add(1);
        // Requests on the handle not yet given to the driver end as Closed;
        // those in the driver's hands finish first, then the file is closed.
        for index in 0..R {
            let Some(op) = self.ops.get_mut(index) else {
                continue;
            };
            if op.handle == handle
                && op.stage == Stage::Queued
                && matches!(op.kind, OpKind::Read { .. })
            {
                op.cancelled = true;
                op.result = Status::Closed;
                let id = op.id;
                self.unqueue(id);
                self.try_finish(index)?;
            }
        }
        self.insert(Op::new(
            id,
            OpKind::Close { handle },
            handle,
            BufferDescriptor::default(),
            false,
        ))?;
        self.try_close(handle)
    }

    pub(super) fn try_close(&mut self, handle: u32) -> Result<(), Violation> {
        let busy = self.ops.iter().any(|op| {
            op.handle == handle && !matches!(op.kind, OpKind::Close { .. }) && op.file.is_some()
        });
        if busy {
            return Ok(());
        }
        // The close waiting for the handle to go quiet; one handed to the
        // driver already has its file.
        let Some(index) = self.ops.position(|op| {
            matches!(op.kind, OpKind::Close { handle: h } if h == handle) && op.file.is_none()
        }) else {
            return Ok(());
        };
        let file = self.handles.remove(handle).map(|(file, closing)| {
            if closing {
                self.closing_handles = self.closing_handles.saturating_sub(1);
            }
            file
        });
        let Some(op) = self.ops.get_mut(index) else {
            return Ok(());
        };
        let Some(file) = file else {
            // `close` found the handle, and only this removes it.
            let id = op.id;
            self.ops.remove(index);
            return self.reply(
                id,
                1,
                Body::Completion {
                    status: Status::InvalidHandle,
                    bytes: 0,
                },
            );
        };
        // The driver finishes the file and answers (`complete_close`).
        op.file = Some(file);
        let id = op.id;
        self.push_pending(Pending::Op { slot: index, id })
    }

    /// The registration asked by [`ServerEvent::Register`] resolved (claim 11).
    pub fn complete_register(
        &mut self,
        op: OpId,
        result: Result<Registration, Status>,
    ) -> Result<(), ApiError> {
        self.park();
        let index = self.find(op.0).ok_or(ApiError::UnknownRequest)?;
        if !matches!(
            self.ops.get(index).map(|o| &o.kind),
            Some(OpKind::Register { .. })
        ) {
            return Err(ApiError::UnknownRequest);
        }
        self.ops.remove(index);
        let body = match result {
            Ok(reg) => {
                match self.handles.insert(reg.file, reg.flags) {
                    Some(handle) => Body::RegisterFileCompletion {
                        status: Status::Success,
                        handle,
                        size: reg.size,
                    },
                    None => {
                        // The driver must release the file it resolved.
                        let _ = self.push_pending(Pending::CloseFile(reg.file));
                        Body::RegisterFileCompletion {
                            status: Status::ResourceExhausted,
                            handle: 0,
                            size: 0,
                        }
                    }
                }
            }
            Err(status) => Body::RegisterFileCompletion {
                status,
                handle: 0,
                size: 0,
            },
        };
        self.reply(op.0, 1, body).map_err(|v| {
            self.fail(v);
            ApiError::NotConnected
        })
    }

    /// The driver finished and released the file of the close asked by
    /// [`ServerEvent::Close`]: the client's close completes with `result`
    /// (the handle is gone either way).
    pub fn complete_close(&mut self, op: OpId, result: Result<(), Status>) -> Result<(), ApiError> {
        self.park();
        let index = self.find(op.0).ok_or(ApiError::UnknownRequest)?;
        let dispatched = self.ops.get(index).is_some_and(|entry| {
            matches!(entry.kind, OpKind::Close { .. }) && entry.stage == Stage::Dispatched
        });
        if !dispatched {
            return Err(ApiError::UnknownRequest);
        }
        self.ops.remove(index);
        let status = match result {
            Ok(()) => Status::Success,
            Err(status) => status,
        };
        self.reply(op.0, 1, Body::Completion { status, bytes: 0 })
            .map_err(|v| {
                self.fail(v);
                ApiError::NotConnected
            })
    }
}

/// The files registered on a connection, each in the slot its handle names:
/// `handle = generation × F + slot` (generation ≥ 1, so a handle is never
/// 0), numbered by the table the client keeps its requests in
/// ([`SlotTable`]). Resolving a request's handle is one remainder, one load
/// and one compare however many files are open, and a closed handle is
/// never found again: its slot's next file gets the next generation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Handles<const F: usize> {
    table: SlotTable<Handle, F>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Handle {
    file: FileId,
    flags: OpenFlags,
    closing: bool,
}

impl<const F: usize> Handles<F> {
    pub(super) const fn new() -> Self {
        Self {
            table: SlotTable::new(),
        }
    }

    fn get(&self, handle: u32) -> Option<&Handle> {
        self.table
            .find(handle)
            .and_then(|slot| self.table.get(slot))
    }

    /// The file and open mode of `handle`, registered and not closing.
    #[inline]
    pub(super) fn open(&self, handle: u32) -> Option<(FileId, OpenFlags)> {
        self.get(handle)
            .filter(|h| !h.closing)
            .map(|h| (h.file, h.flags))
    }

    /// Whether `handle` is registered and closing.
    pub(super) fn closing(&self, handle: u32) -> bool {
        self.get(handle).is_some_and(|h| h.closing)
    }

    /// Mark open `handle` closing: false if it is not open.
    pub(super) fn start_closing(&mut self, handle: u32) -> bool {
        match self
            .table
            .find(handle)
            .and_then(|slot| self.table.get_mut(slot))
        {
            Some(h) if !h.closing => {
                h.closing = true;
                true
            }
            _ => false,
        }
    }

    /// Take `handle`'s file out (open or closing): the file, and whether
    /// it was closing.
    pub(super) fn remove(&mut self, handle: u32) -> Option<(FileId, bool)> {
        let slot = self.table.find(handle)?;
        self.table.take(slot).map(|h| (h.file, h.closing))
    }

    /// Register `file` under a fresh handle (`None`: every slot holds a
    /// file).
    pub(super) fn insert(&mut self, file: FileId, flags: OpenFlags) -> Option<u32> {
        let handle = Handle {
            file,
            flags,
            closing: false,
        };
        self.table.insert(handle).ok().map(|(_, id)| id)
    }

    /// Forget every file (the connection ended; the driver closes them).
    /// Handles given out stay unusable: the generations are kept.
    pub(super) fn clear(&mut self) {
        self.table.retain(|_| false);
    }
}

#[cfg(test)]
mod tests {
    use super::Handles;
    use crate::server::FileId;
    use crate::wire::OpenFlags;

    #[test]
    fn handles_name_their_slot_and_are_never_reused() {
        let mut h: Handles<4> = Handles::new();
        let a = h.insert(FileId(10), OpenFlags::READ).expect("room");
        let b = h.insert(FileId(11), OpenFlags::WRITE).expect("room");
        assert_eq!((a, b), (4, 5), "slot 0 and 1, generation 1");
        assert_eq!(h.open(a), Some((FileId(10), OpenFlags::READ)));
        assert_eq!(h.open(0), None, "0 is no handle, though free slots hold 0");
        assert_eq!(h.open(8), None, "slot 0, generation 2: not given yet");
        assert!(h.start_closing(a));
        assert!(!h.start_closing(a), "already closing");
        assert_eq!(h.open(a), None, "closing: no new I/O");
        assert!(h.closing(a) && !h.closing(b));
        assert_eq!(h.remove(a), Some((FileId(10), true)));
        assert_eq!(h.remove(a), None);
        assert!(!h.closing(a));
        assert_eq!(h.remove(b), Some((FileId(11), false)));
        for file in 0..4 {
            let handle = h.insert(FileId(file), OpenFlags::READ).expect("room");
            assert!(
                handle != a && handle != b,
                "a closed handle never comes back"
            );
        }
        assert_eq!(h.insert(FileId(9), OpenFlags::READ), None, "full");
        h.clear();
        assert_eq!(h.open(6), None);
        let again = h.insert(FileId(1), OpenFlags::READ).expect("room");
        assert_eq!(
            again, 10,
            "slot 2, generation 2: generations survive a clear"
        );
    }
}
