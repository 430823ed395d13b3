//! Phase 4, registration and close: registering a file opened on the pipe
//! by its resume key (claims 10, 11), cancel and close of registered
//! handles (claim 15).

use super::*;

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
        let Some(entry) = self
            .handles
            .iter_mut()
            .find(|h| h.id == handle && !h.closing)
        else {
            return self.reply(
                id,
                1,
                Body::Completion {
                    status: Status::InvalidHandle,
                    bytes: 0,
                },
            );
        };
        entry.closing = true;
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
        let file = self
            .handles
            .iter()
            .position(|h| h.id == handle)
            .map(|pos| self.handles.swap_remove(pos))
            .map(|removed| {
                if removed.closing {
                    self.closing_handles = self.closing_handles.saturating_sub(1);
                }
                removed.file
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
                let handle = self.next_handle;
                let entry = Handle {
                    id: handle,
                    file: reg.file,
                    flags: reg.flags,
                    closing: false,
                };
                match self.handles.push(entry) {
                    Ok(()) => {
                        self.next_handle = self.next_handle.wrapping_add(1).max(1);
                        Body::RegisterFileCompletion {
                            status: Status::Success,
                            handle,
                            size: reg.size,
                        }
                    }
                    Err(_) => {
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
