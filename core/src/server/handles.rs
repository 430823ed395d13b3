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
        self.stir();
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
///
/// A read's handle (the I/O path's most frequent look-up) resolves with
/// less: `readers` holds, for each slot, the handle of its file while that
/// file is open for reading and not closing, so one compare says all three.
/// Every change to the table updates it ([`Handles::reader`] agrees with
/// [`Handles::open`], `tests::readers_agree_with_the_table`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Handles<const F: usize> {
    table: SlotTable<Handle, F>,
    /// Slot `s`: the handle of its file while it is open for reading and
    /// not closing, else `vacant(s)`; and then that file (else `FileId(0)`)
    /// in `read_files`.
    readers: [u32; F],
    read_files: [FileId; F],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Handle {
    file: FileId,
    flags: OpenFlags,
    closing: bool,
}

impl<const F: usize> Handles<F> {
    pub(super) const fn new() -> Self {
        let mut readers = [0; F];
        let mut rest: &mut [u32] = &mut readers;
        let mut slot = 0;
        while let [reader, tail @ ..] = rest {
            *reader = Self::vacant(slot);
            slot = slot.wrapping_add(1);
            rest = tail;
        }
        Self {
            table: SlotTable::new(),
            readers,
            read_files: [FileId(0); F],
        }
    }

    /// What `readers` holds for `slot` while no readable file is there: a
    /// number no handle looked up in that slot is — one of the next slot's
    /// (with a single slot, 0, no handle, which [`Handles::reader`] refuses
    /// itself).
    const fn vacant(slot: usize) -> u32 {
        if F > 1 {
            slot.wrapping_add(1) as u32
        } else {
            0
        }
    }

    /// The file of `handle` if it is registered, open for reading and not
    /// closing: what [`Handles::open`] and a `READ` check say, by one
    /// remainder, one compare and one load.
    #[inline(always)]
    pub(super) fn reader(&self, handle: u32) -> Option<FileId> {
        let slot = SlotTable::<Handle, F>::slot_of(handle)?;
        match (self.readers.get(slot), self.read_files.get(slot)) {
            (Some(&held), Some(&file)) if held == handle && (F > 1 || handle != 0) => Some(file),
            _ => None,
        }
    }

    /// Bring `readers` in line with slot `slot` of the table.
    fn update_reader(&mut self, slot: usize) {
        let entry = match (self.table.get(slot), self.table.id(slot)) {
            (Some(h), Some(handle)) if !h.closing && h.flags.contains(OpenFlags::READ) => {
                (handle, h.file)
            }
            _ => (Self::vacant(slot), FileId(0)),
        };
        if let (Some(reader), Some(file)) =
            (self.readers.get_mut(slot), self.read_files.get_mut(slot))
        {
            (*reader, *file) = entry;
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
        let Some(slot) = self.table.find(handle) else {
            return false;
        };
        match self.table.get_mut(slot) {
            Some(h) if !h.closing => h.closing = true,
            _ => return false,
        }
        self.update_reader(slot);
        true
    }

    /// Take `handle`'s file out (open or closing): the file, and whether
    /// it was closing.
    pub(super) fn remove(&mut self, handle: u32) -> Option<(FileId, bool)> {
        let slot = self.table.find(handle)?;
        let taken = self.table.take(slot).map(|h| (h.file, h.closing));
        self.update_reader(slot);
        taken
    }

    /// Register `file` under a fresh handle (`None`: every slot holds a
    /// file).
    pub(super) fn insert(&mut self, file: FileId, flags: OpenFlags) -> Option<u32> {
        let handle = Handle {
            file,
            flags,
            closing: false,
        };
        let (slot, id) = self.table.insert(handle).ok()?;
        self.update_reader(slot);
        Some(id)
    }

    /// Forget every file (the connection ended; the driver closes them).
    /// Handles given out stay unusable: the generations are kept.
    pub(super) fn clear(&mut self) {
        self.table.retain(|_| false);
        for slot in 0..F {
            self.update_reader(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Handles;
    use crate::server::FileId;
    use crate::wire::OpenFlags;

    /// `reader` says what `open` and a `READ` check say, for every handle
    /// of the first generations and a few others (0 and the largest).
    fn agree<const F: usize>(h: &Handles<F>) {
        let far = (0..64 * F as u32).chain([u32::MAX, u32::MAX - 1]);
        for handle in far {
            let open = h
                .open(handle)
                .filter(|(_, flags)| flags.contains(OpenFlags::READ))
                .map(|(file, _)| file);
            assert_eq!(h.reader(handle), open, "handle {handle}");
        }
    }

    #[test]
    fn readers_agree_with_the_table() {
        fn run<const F: usize>() {
            let mut h: Handles<F> = Handles::new();
            agree(&h);
            let mut live: heapless::Vec<u32, 16> = heapless::Vec::new();
            // Fill, close some, remove some, refill, clear: every change.
            for round in 0..3u64 {
                for i in 0..F as u64 + 1 {
                    let flags = match i % 3 {
                        0 => OpenFlags::READ,
                        1 => OpenFlags::WRITE,
                        _ => OpenFlags::READ | OpenFlags::WRITE,
                    };
                    if let Some(handle) = h.insert(FileId(100 * round + i), flags) {
                        live.push(handle).expect("F <= 16");
                    }
                    agree(&h);
                }
                for (i, &handle) in live.iter().enumerate() {
                    if i % 2 == 0 {
                        h.start_closing(handle);
                        agree(&h);
                    }
                }
                for (i, &handle) in live.iter().enumerate() {
                    if i % 3 != 1 {
                        h.remove(handle);
                        agree(&h);
                    }
                }
                live.clear();
            }
            h.clear();
            agree(&h);
            for i in 0..F as u64 {
                h.insert(FileId(i), OpenFlags::READ);
                agree(&h);
            }
        }
        run::<1>();
        run::<2>();
        run::<3>();
        run::<4>();
        run::<16>();
    }

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
