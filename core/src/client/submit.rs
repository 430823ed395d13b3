//! Phase 4, submission: requests enter the client here — registration
//! (claims 10, 11), reads and writes with their vectored and COLLAPSE
//! variants (claims 15–17), close, the polling client's interrupt request
//! (claim 21) and cancel (claim 15). Each takes a free slot of the request
//! table and the id that names it (`crate::slots`).

use super::transmit::prefix_size;
use super::*;

impl<const R: usize> Client<R> {
    /// Register the file opened on the pipe under `key` (claim 10).
    pub fn register(&mut self, key: ResumeKey) -> Result<RequestId, ApiError> {
        self.submit(
            OpKind::Register { key },
            BufferDescriptor::default(),
            CompletionMode::Interrupt,
        )
    }

    /// Read `dest.len()` bytes at `offset` into client memory `dest`; the
    /// server RDMA-writes the data, then the status block into `status`
    /// (claims 16, 20).
    pub fn read(
        &mut self,
        handle: u32,
        offset: u64,
        dest: BufferDescriptor,
        status: BufferDescriptor,
        mode: CompletionMode,
    ) -> Result<RequestId, ApiError> {
        if dest.is_empty() {
            return Err(ApiError::InvalidArgument);
        }
        self.check_io_len(u64::from(dest.len()))?;
        self.submit(
            OpKind::Read {
                handle,
                offset,
                dest,
            },
            status,
            mode,
        )
    }

    /// [`Client::read`] for a driver that posts as it submits: when the read
    /// can go at once — the connection open, nothing queued ahead of it (no
    /// credit answer, request or write fragment waiting), a credit free and
    /// `buf` long enough for the request — it is encoded into `buf` here and
    /// comes back with its [`Transmit`], the same bytes
    /// [`Client::poll_transmit`] would have given next; the driver posts
    /// them. Otherwise it is queued exactly as `read` queues it (`None`)
    /// and goes out through `poll_transmit`. One pass for the common case
    /// instead of a queue entry and a second call; the errors are `read`'s.
    // `read`'s five arguments and the one-pass pair (`now`, `buf`) that
    // `take_status_block` and `complete_io_into` take as well.
    #[allow(clippy::too_many_arguments)]
    pub fn read_into(
        &mut self,
        now: Instant,
        handle: u32,
        offset: u64,
        dest: BufferDescriptor,
        status: BufferDescriptor,
        mode: CompletionMode,
        buf: &mut [u8],
    ) -> Result<(RequestId, Option<Transmit>), ApiError> {
        if !self.sends_now(buf.len() >= READ_MESSAGE_LEN) {
            return self.read_queued(handle, offset, dest, status, mode);
        }
        if dest.is_empty() || (status.len() as usize) < STATUS_BLOCK_LEN {
            return Err(ApiError::InvalidArgument);
        }
        self.check_io_len(u64::from(dest.len()))?;
        let op = || sent_read(handle, offset, dest, status, mode);
        let Some((slot, id)) = self.ops.insert_at_cursor(op) else {
            return self.read_into_searching(now, handle, offset, dest, status, mode, buf);
        };
        self.send_read(now, slot, id, handle, offset, mode, buf)
    }

    /// `read_into` when the slot at the table's cursor is taken: the same,
    /// with the slot searched for. Out of line, so that the one-pass path
    /// has no loop, nor a second way into its encoding (whose merge would
    /// have it load again what it has already loaded).
    #[cold]
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn read_into_searching(
        &mut self,
        now: Instant,
        handle: u32,
        offset: u64,
        dest: BufferDescriptor,
        status: BufferDescriptor,
        mode: CompletionMode,
        buf: &mut [u8],
    ) -> Result<(RequestId, Option<Transmit>), ApiError> {
        let op = sent_read(handle, offset, dest, status, mode);
        let (slot, id) = self.ops.insert(op).map_err(|_| ApiError::TooManyRequests)?;
        self.send_read(now, slot, id, handle, offset, mode, buf)
    }

    /// The rest of `read_into`, the read stored in `slot` under `id`:
    /// encoded into `buf` and its credit taken.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn send_read(
        &mut self,
        now: Instant,
        slot: usize,
        id: u32,
        handle: u32,
        offset: u64,
        mode: CompletionMode,
        buf: &mut [u8],
    ) -> Result<(RequestId, Option<Transmit>), ApiError> {
        let flags = interrupt_flags(mode == CompletionMode::Interrupt);
        // The header states the credits held, as `poll_transmit` does,
        // and the demand: this read and those outstanding (none waits:
        // `sends_now`). A credit is free, so no wrap.
        let level = self.ledger.level();
        let demand = self.ledger.in_use().wrapping_add(1) & self.demand_mask;
        // The descriptors from the record just stored: copied once into it
        // and once from it.
        let encoded = match self.ops.get(slot) {
            Some(Op {
                kind: OpKind::Read { dest, .. },
                status_desc,
                ..
            }) => emit_read_fields(
                buf,
                flags,
                level,
                demand,
                id,
                handle,
                offset,
                dest,
                status_desc,
            )
            .ok(),
            _ => None,
        };
        // The credit is taken only for a message that goes.
        let sent = encoded.and_then(|len| self.ledger.send_request().map(|_| len));
        match sent {
            Some(len) => {
                self.rearm_idle_open(now);
                Ok((RequestId(id), Some(Transmit { len, data: None })))
            }
            // Unreachable (room and a credit were checked): nothing was
            // sent, and the request queues as `read` would have queued it.
            None => self.requeue(slot, id),
        }
    }

    /// `read_into` for a read that cannot go at once: queued by `read`.
    /// Out of line, so that `read`'s queueing does not weigh on the
    /// one-pass path.
    #[cold]
    #[inline(never)]
    fn read_queued(
        &mut self,
        handle: u32,
        offset: u64,
        dest: BufferDescriptor,
        status: BufferDescriptor,
        mode: CompletionMode,
    ) -> Result<(RequestId, Option<Transmit>), ApiError> {
        self.read(handle, offset, dest, status, mode)
            .map(|id| (id, None))
    }

    /// A request just put in `slot` under `id` as sent, whose message did
    /// not go after all: queued instead, as `enqueue` would have queued it
    /// (its op back to what `Op::new` gives, its slot at the back of
    /// `unsent`). Freed, `TooManyRequests`, if it cannot queue.
    #[cold]
    #[inline(never)]
    fn requeue(&mut self, slot: usize, id: u32) -> Result<(RequestId, Option<Transmit>), ApiError> {
        if let Some(op) = self.ops.get_mut(slot) {
            op.stage = Stage::Queued;
            op.unanswered = 0;
        }
        if self.unsent.push_back(slot).is_err() {
            self.ops.take(slot);
            return Err(ApiError::TooManyRequests);
        }
        Ok((RequestId(id), None))
    }

    /// Whether a new request would be the next send, and fits the caller's
    /// buffer: open, nothing queued ahead of it (no request or write
    /// fragment, no credit answer owed), a credit free. No `Terminate` is queued either: one is queued only as
    /// the connection closes (`end`), and `Closed` is never left, so an open
    /// connection has none (not looked at again here).
    /// `room`: whether the caller's buffer holds the request.
    #[inline(always)]
    fn sends_now(&self, room: bool) -> bool {
        if self.state != State::Open || !self.ledger.owes_nothing() {
            return false;
        }
        // Both queues empty: `&`, not `&&`, so that it is one test of
        // their lengths together.
        if !(self.unsent.is_empty() & self.streaming.is_empty()) {
            return false;
        }
        room && self.ledger.available() > 0
    }

    /// Vectored read: each segment reads its own file range into its own
    /// buffer; one status block.
    pub fn read_vectored(
        &mut self,
        handle: u32,
        segments: &[ReadSegment],
        status: BufferDescriptor,
        mode: CompletionMode,
    ) -> Result<RequestId, ApiError> {
        if segments.is_empty()
            || segments.len() > MAX_SEGMENTS
            || segments.iter().any(|s| s.dest().is_empty())
        {
            return Err(ApiError::InvalidArgument);
        }
        let total = segments.iter().map(|s| u64::from(s.dest().len())).sum();
        self.check_io_len(total)?;
        self.check_fits(prefix_size(24, 24, segments.len()))?;
        self.submit_vectored(OpKind::ReadV { handle }, status, mode, segments)
    }

    /// Write `len` bytes at `offset`. The data travels in sends (claim 1),
    /// fragmented to the negotiated send size; [`Client::poll_transmit`]
    /// names the slices to gather ([`DataRef`]).
    pub fn write(
        &mut self,
        handle: u32,
        offset: u64,
        len: u32,
        status: BufferDescriptor,
        mode: CompletionMode,
    ) -> Result<RequestId, ApiError> {
        if len == 0 {
            return Err(ApiError::InvalidArgument);
        }
        self.check_io_len(u64::from(len))?;
        self.submit(
            OpKind::Write {
                handle,
                offset,
                total: len,
            },
            status,
            mode,
        )
    }

    /// [`Client::write`] for a driver that posts as it submits, as
    /// [`Client::read_into`] is for reads: when the write can go at once
    /// (the connection open, nothing queued ahead of it, a credit free,
    /// `buf` long enough for the prefix) its first fragment's prefix is
    /// encoded into `buf` here and comes back with its [`Transmit`] — the
    /// same bytes and [`DataRef`] [`Client::poll_transmit`] would have given
    /// next; a write longer than one send streams its further fragments
    /// through `poll_transmit` as usual. Otherwise it is queued exactly as
    /// `write` queues it (`None`). The errors are `write`'s.
    #[allow(clippy::too_many_arguments)]
    pub fn write_into(
        &mut self,
        now: Instant,
        handle: u32,
        offset: u64,
        len: u32,
        status: BufferDescriptor,
        mode: CompletionMode,
        buf: &mut [u8],
    ) -> Result<(RequestId, Option<Transmit>), ApiError> {
        if !self.sends_now(buf.len() >= WRITE_PREFIX_LEN) {
            return self
                .write(handle, offset, len, status, mode)
                .map(|id| (id, None));
        }
        if len == 0 || (status.len() as usize) < STATUS_BLOCK_LEN {
            return Err(ApiError::InvalidArgument);
        }
        self.check_io_len(u64::from(len))?;
        // What `build` gives the first fragment: as much as fits after the
        // prefix in one send.
        let room = (self.negotiated.max_send_size as usize).saturating_sub(WRITE_PREFIX_LEN);
        let data_len = len.min(u32::try_from(room).unwrap_or(u32::MAX));
        let interrupt = mode == CompletionMode::Interrupt;
        let kind = OpKind::Write {
            handle,
            offset,
            total: len,
        };
        // Sent in this call: its first message is unanswered from the start.
        let op = Op {
            stage: Stage::Sent,
            unanswered: 1,
            sent: data_len,
            ..Op::new(kind, status, interrupt)
        };
        let (slot, id) = self.ops.insert(op).map_err(|_| ApiError::TooManyRequests)?;
        let write = WriteRequest {
            handle,
            offset,
            total_len: len,
            status,
            data: &[],
        };
        let flags = interrupt_flags(interrupt);
        let level = self.ledger.level();
        // The rest streams behind it, as `request_transmit` would queue it
        // (capacity R holds every op).
        let streams = data_len < len;
        // This write, those outstanding, and its next fragment if any (no
        // other waits: `sends_now`). A credit is free: no wrap.
        let demand = self
            .ledger
            .in_use()
            .wrapping_add(1)
            .wrapping_add(u16::from(streams))
            & self.demand_mask;
        let encoded = emit_write_prefix(buf, flags, level, demand, id, &write, data_len);
        let queued = !streams || self.streaming.push_back(slot).is_ok();
        // The credit is taken only for a message that goes.
        let sent = match (encoded, queued) {
            (Ok(prefix), true) => self.ledger.send_request().map(|_| prefix),
            _ => None,
        };
        match sent {
            Some(prefix) => {
                self.rearm_idle_open(now);
                let data = Some(DataRef {
                    request: RequestId(id),
                    offset: 0,
                    len: data_len,
                });
                Ok((RequestId(id), Some(Transmit { len: prefix, data })))
            }
            // Unreachable (room, queue space and a credit were checked):
            // the request is taken back, nothing was sent, and it queues
            // as `write` would.
            None => {
                if streams {
                    remove_from(&mut self.streaming, slot);
                }
                self.ops.take(slot);
                self.write(handle, offset, len, status, mode)
                    .map(|id| (id, None))
            }
        }
    }

    /// Vectored write. With `collapse` (claim 17) every segment must have the
    /// same length and receives the same data, supplied and sent once;
    /// without it the data is the segments' data concatenated.
    pub fn write_vectored(
        &mut self,
        handle: u32,
        segments: &[WriteSegment],
        collapse: bool,
        status: BufferDescriptor,
        mode: CompletionMode,
    ) -> Result<RequestId, ApiError> {
        let first = segments.first().ok_or(ApiError::InvalidArgument)?;
        if segments.len() > MAX_SEGMENTS
            || segments.iter().any(|s| s.is_empty())
            || (collapse && segments.iter().any(|s| s.len() != first.len()))
        {
            return Err(ApiError::InvalidArgument);
        }
        let file_bytes: u64 = segments.iter().map(|s| u64::from(s.len())).sum();
        self.check_io_len(file_bytes)?;
        let total = if collapse {
            first.len()
        } else {
            u32::try_from(file_bytes).map_err(|_| ApiError::TooLarge)?
        };
        // Room for the prefix and at least one data byte.
        self.check_fits(prefix_size(32, 16, segments.len()).saturating_add(1))?;
        self.submit_vectored(
            OpKind::WriteV {
                handle,
                collapse,
                total,
            },
            status,
            mode,
            segments,
        )
    }

    /// Close a registered file. Requests on it still queued end `Closed`.
    pub fn close(&mut self, handle: u32) -> Result<RequestId, ApiError> {
        self.submit(
            OpKind::Close { handle },
            BufferDescriptor::default(),
            CompletionMode::Interrupt,
        )
    }

    /// Polling mode: ask the server to wake this client with an interrupt
    /// response by ordinary send at its next completion (claim 21).
    pub fn request_interrupt(&mut self) -> Result<RequestId, ApiError> {
        self.submit(
            OpKind::Interrupt,
            BufferDescriptor::default(),
            CompletionMode::Interrupt,
        )
    }

    /// Cancel `request`. A request not yet sent completes `Cancelled` at
    /// once; a sent one gets a cancel message and completes `Cancelled`
    /// unless it finished first. A write stops sending its fragments.
    pub fn cancel(&mut self, request: RequestId) -> Result<(), ApiError> {
        let slot = self.find(request.0).ok_or(ApiError::UnknownRequest)?;
        let full = self.ops.is_full();
        let op = self.ops.get_mut(slot).ok_or(ApiError::UnknownRequest)?;
        if !op.kind.is_data() || op.stage == Stage::Done || op.stop_sending {
            return Err(ApiError::UnknownRequest);
        }
        if op.stage == Stage::Queued {
            op.stage = Stage::Done;
            op.status = Status::Cancelled;
            remove_from(&mut self.unsent, slot);
            return self
                .done
                .push_back(slot)
                .map_err(|_| ApiError::TooManyRequests);
        }
        if full {
            return Err(ApiError::TooManyRequests);
        }
        op.stop_sending = true;
        remove_from(&mut self.streaming, slot);
        let (cancel, _) = self.enqueue(
            OpKind::Cancel { target: request.0 },
            BufferDescriptor::default(),
            CompletionMode::Interrupt,
        )?;
        // The cancel goes next, where the write's next fragment would have
        // gone: behind a close of the same handle — which the server holds
        // until the write ends — it could wait forever for a credit.
        remove_from(&mut self.unsent, cancel);
        self.unsent
            .push_front(cancel)
            .map_err(|_| ApiError::TooManyRequests)
    }

    pub(super) fn check_io_len(&self, len: u64) -> Result<(), ApiError> {
        if len > u64::from(self.negotiated.max_io_size) {
            Err(ApiError::TooLarge)
        } else {
            Ok(())
        }
    }

    pub(super) fn check_fits(&self, prefix: usize) -> Result<(), ApiError> {
        if prefix > self.negotiated.max_send_size as usize {
            Err(ApiError::TooLarge)
        } else {
            Ok(())
        }
    }

    /// Submit a vectored request, its segments stored beside it.
    pub(super) fn submit_vectored<T: zerocopy::IntoBytes + zerocopy::Immutable>(
        &mut self,
        kind: OpKind,
        status_desc: BufferDescriptor,
        mode: CompletionMode,
        segments: &[T],
    ) -> Result<RequestId, ApiError> {
        let (slot, id) = self.enqueue(kind, status_desc, mode)?;
        let stored = self
            .segments
            .get_mut(slot)
            .is_some_and(|store| store.set(segments));
        if !stored {
            // Unreachable: the count was checked against the store's room.
            self.ops.take(slot);
            remove_from(&mut self.unsent, slot);
            return Err(ApiError::InvalidArgument);
        }
        Ok(id)
    }

    #[inline(always)]
    pub(super) fn submit(
        &mut self,
        kind: OpKind,
        status_desc: BufferDescriptor,
        mode: CompletionMode,
    ) -> Result<RequestId, ApiError> {
        self.enqueue(kind, status_desc, mode).map(|(_, id)| id)
    }

    /// Put a request in a free slot of the table, under the id that names
    /// the slot (`slots`), and queue it for sending: its slot and id.
    #[inline(always)]
    pub(super) fn enqueue(
        &mut self,
        kind: OpKind,
        status_desc: BufferDescriptor,
        mode: CompletionMode,
    ) -> Result<(usize, RequestId), ApiError> {
        if self.state == State::Closed {
            return Err(ApiError::NotConnected);
        }
        if kind.is_data() && (status_desc.len() as usize) < STATUS_BLOCK_LEN {
            return Err(ApiError::InvalidArgument);
        }
        let op = Op::new(kind, status_desc, mode == CompletionMode::Interrupt);
        let (slot, id) = self.ops.insert(op).map_err(|_| ApiError::TooManyRequests)?;
        if self.unsent.push_back(slot).is_err() {
            self.ops.take(slot);
            return Err(ApiError::TooManyRequests);
        }
        Ok((slot, RequestId(id)))
    }
}

pub(super) fn remove_from<const N: usize>(queue: &mut SlotQueue<N>, slot: usize) {
    queue.remove(slot);
}

/// The op of a read `read_into` sends in the same call: its one message
/// unanswered from the start.
#[inline(always)]
fn sent_read(
    handle: u32,
    offset: u64,
    dest: BufferDescriptor,
    status: BufferDescriptor,
    mode: CompletionMode,
) -> Op {
    Op {
        stage: Stage::Sent,
        unanswered: 1,
        ..Op::new(
            OpKind::Read {
                handle,
                offset,
                dest,
            },
            status,
            mode == CompletionMode::Interrupt,
        )
    }
}
