//! Phase 4, reads and writes: starting a read (data by RDMA write, claim 16),
//! gathering a write's data from sends (claim 1) with vectored and COLLAPSE
//! mapping onto file offsets (claim 17), the driver's completion and the
//! status block that finishes a request, with or without immediate data
//! (claims 18–20).

use super::*;

impl<const R: usize, const F: usize> Connection<R, F> {
    #[inline(always)]
    pub(super) fn start_read(
        &mut self,
        id: u32,
        handle: u32,
        status_desc: BufferDescriptor,
        interrupt: bool,
        segments: &[ReadSegment],
    ) -> Result<(), Violation> {
        self.start_read_into(id, handle, status_desc, interrupt, segments, None)
    }

    /// A read batch `id` (claim 15's read, several to a message: the
    /// read-batch extension) carrying `credits` in its header: a credit
    /// and an op for each read, queued for the driver; the last of their
    /// status blocks to go carries the batch's immediate.
    pub(super) fn read_batch(
        &mut self,
        id: u32,
        credits: u16,
        interrupt: bool,
        reads: &[BatchRead],
    ) -> Result<(), Violation> {
        let granted = self
            .session
            .is_some_and(|session| session.capabilities.contains(Capabilities::READ_BATCH));
        if !granted {
            return Err(Violation::UnexpectedMessage(crate::wire::Opcode::ReadBatch));
        }
        let count = u16::try_from(reads.len()).map_err(|_| Violation::TooLarge)?;
        self.ledger.on_requests(credits, count)?;
        if self.batches.iter().any(|batch| batch.id == id) || self.handing.counts(id) {
            return Err(Violation::DuplicateRequest(id));
        }
        ConnectionStats::add(&mut self.stats.read_batches, 1);
        self.batches
            .push(Batch {
                id,
                remaining: count,
            })
            .map_err(|_| Violation::Capacity)?;
        for read in reads {
            let segment = [read.segment()];
            self.start_read_into(
                read.request_id(),
                read.handle(),
                read.status(),
                interrupt,
                &segment,
                Some(id),
            )?;
        }
        Ok(())
    }

    /// A read batch arriving with no earlier work waiting for the driver,
    /// handed over at once (through [`Connection::next_batch_read`]) and
    /// kept out of the request table while it is: what
    /// [`Connection::read_batch`] and the dispatch queue would do for it,
    /// in one pass. `None` — nothing done — unless every read is one that
    /// starts or is answered at once (no violation among them, room in the
    /// table for all): the queued path then takes the batch, and finds the
    /// violation in the same order as always. `reads` are as
    /// `parse_read_batch_fields` found them: a read with an empty
    /// destination (the message is malformed) is such a violation. The
    /// batch's status blocks are counted in `handing` (the batch handed over before, if some of
    /// its blocks are still to go, moves to `batches`).
    pub(super) fn hand_batch(
        &mut self,
        now: Instant,
        id: u32,
        credits: u16,
        interrupt: bool,
        reads: &[BatchRead],
    ) -> Option<Result<Received<'static>, Violation>> {
        let granted = self
            .session
            .is_some_and(|session| session.capabilities.contains(Capabilities::READ_BATCH));
        let count = u16::try_from(reads.len()).ok()?;
        let room = self.ops.len().checked_add(reads.len())? <= R;
        // Room in `batches` for the batch counted in `handing` now.
        let moves = self.handing.counting();
        if !granted
            || !room
            || (moves && self.batches.is_full())
            || self.batches.iter().any(|b| b.id == id)
            || self.handing.counts(id)
        {
            return None;
        }
        // A repeated id among the batch's reads: compared only when two ids
        // share a bit of `seen` (a few instructions a read for a client
        // numbering its reads apart).
        let mut seen = 0u64;
        for (i, read) in reads.iter().enumerate() {
            let request = read.request_id();
            // 1 to `max_io_size` bytes: an empty destination (which the
            // batch's parse left to this pass) makes the message malformed,
            // for the general parser to say so.
            let fits = read.dest().len().wrapping_sub(1) < self.max_io_size()
                && self.check_status_desc(read.status()).is_ok();
            let bit = 1u64 << (request % 64);
            let repeated =
                seen & bit != 0 && reads.iter().take(i).any(|e| e.request_id() == request);
            seen |= bit;
            if !fits || repeated || (self.ops.len() > 0 && self.find(request).is_some()) {
                return None;
            }
        }
        self.heard = now;
        if let Err(violation) = self.ledger.on_requests(credits, count) {
            return Some(Err(violation));
        }
        trace!("server rx ReadBatch id {} of {}", id, count);
        ConnectionStats::add(&mut self.stats.read_batches, 1);
        if let Some(before) = self.handing.retire() {
            // Not full, checked above.
            let _ = self.batches.push(before);
        }
        // Nothing is outstanding or left to hand out: `take_message`
        // parked it all first.
        self.stir();
        self.handing.start(id, interrupt, count);
        // The handle a read of the batch resolved last to a file, and that
        // file: a batch's reads mostly read one file, and nothing here
        // closes a handle that resolved (answering a read at once may
        // close its own, `finish_done`, which resolved to no file, and is
        // never marked closing meanwhile).
        let mut resolved: Option<(u32, FileId)> = None;
        for read in reads {
            let (handle, segment) = (read.handle(), read.segment_ref());
            let file = match resolved {
                Some((last, file))
                    if last == handle
                        && within_file_offsets(
                            segment.offset(),
                            u64::from(segment.dest().len()),
                        ) =>
                {
                    Ok(file)
                }
                _ => self.resolve_read(handle, core::slice::from_ref(segment)),
            };
            let answered = match file {
                // As many as MAX_BATCH: the parse allows no more.
                Ok(file) => {
                    resolved = Some((handle, file));
                    match self.handing.push(read, file) {
                        Ok(()) => Ok(None),
                        Err(()) => Err(Violation::Internal),
                    }
                }
                // Answered at once, as `start_read_into` answers it.
                Err(status) => {
                    let done = Done {
                        block: StatusBlock {
                            request_id: read.request_id(),
                            status,
                            bytes: 0,
                            credits: 1,
                        },
                        dest: read.status(),
                        interrupt,
                        handle: read.handle(),
                        batch: Some(id),
                    };
                    self.finish_done(done, None, false, true)
                }
            };
            if let Err(violation) = answered {
                return Some(Err(violation));
            }
        }
        Some(Ok(if !self.handing.has_untaken() {
            Received::Nothing
        } else {
            Received::Batch
        }))
    }

    /// One more status block of batch `id` goes: whether it is the last.
    fn batch_block(&mut self, id: u32) -> Result<bool, Violation> {
        if self.handing.counts(id) {
            return self.handing.block();
        }
        let index = self
            .batches
            .iter()
            .position(|batch| batch.id == id)
            .ok_or(Violation::Internal)?;
        let batch = self.batches.get_mut(index).ok_or(Violation::Internal)?;
        batch.remaining = batch.remaining.saturating_sub(1);
        if batch.remaining > 0 {
            return Ok(false);
        }
        self.batches.retain(|batch| batch.id != id);
        Ok(true)
    }

    /// Start a read: queued for the driver ([`Connection::poll_event`]), or
    /// answered at once (an unknown handle, a range past the largest
    /// offset). A read of a batch names it (`batch`). (A Read handed over
    /// at once takes [`Connection::take_read`] instead.)
    #[inline(always)]
    pub(super) fn start_read_into(
        &mut self,
        id: u32,
        handle: u32,
        status_desc: BufferDescriptor,
        interrupt: bool,
        segments: &[ReadSegment],
        batch: Option<u32>,
    ) -> Result<(), Violation> {
        self.check_status_desc(status_desc)?;
        let total = segments
            .iter()
            .try_fold(0u64, |sum, s| sum.checked_add(u64::from(s.dest().len())));
        if total.is_none_or(|t| t > u64::from(self.max_io_size())) {
            return Err(Violation::TooLarge);
        }
        let file = self.resolve_read(handle, segments);
        let wanted = total.unwrap_or(0);
        let mut op = Op::new(id, OpKind::Read { wanted }, handle, status_desc, interrupt);
        op.batch = batch;
        match file {
            Ok(file) => {
                op.file = Some(file);
                let index = self.insert(op)?;
                self.store_segments(index, segments)?;
                self.push_pending(Pending::Op { slot: index, id })
            }
            Err(status) => {
                op.result = status;
                let index = self.insert(op)?;
                self.finish(index)
            }
        }
    }

    /// A Read arriving at [`Connection::take_message`]: heard, its credit
    /// admitted, then, with no earlier work waiting for the driver, and a
    /// file to read, handed over at once — kept in [`Connection::direct`]
    /// (its credit not counted: see there), the file returned — else
    /// started as any read ([`Connection::start_read_into`]: queued, or
    /// answered). The same checks, in the same order, as
    /// [`Connection::read_message`]'s.
    #[inline(always)]
    pub(super) fn take_read(
        &mut self,
        now: Instant,
        read: ReadFields<'_>,
    ) -> Result<Option<FileId>, Violation> {
        self.heard = now;
        self.ledger.admit(read.credits())?;
        // Quiet: the table is empty (no id in flight, room for the read
        // should it be parked) and no work waits for the driver. Anything
        // else (a check failing included) goes the general way, which
        // makes the same checks again, for the error.
        if self.quiet.0 && R > 0 {
            let dest = read.dest();
            let fits = self.check_status_desc(read.status()).is_ok()
                && dest.len() <= self.max_io_size()
                && within_file_offsets_u32(read.offset(), dest.len());
            // A handle open for reading; any other goes the general way,
            // for its status.
            if let (true, Some(file)) = (fits, self.handles.reader(read.handle())) {
                self.hand_direct(read, file);
                return Ok(Some(file));
            }
        }
        match self.take_read_slow(read) {
            Ok(true) => Ok(Some(self.direct.read.file)),
            Ok(false) => Ok(None),
            Err(violation) => Err(violation),
        }
    }

    /// The read of `read`, resolved to `file`, handed over at once: kept
    /// in [`Connection::direct`] (no op is built unless it is parked).
    #[inline(always)]
    fn hand_direct(&mut self, read: ReadFields<'_>, file: FileId) {
        self.direct = Direct {
            read: DirectRead {
                id: read.request_id(),
                read: zerocopy::transmute!(*read.payload()),
                file,
                interrupt: read.flags().contains(Flags::INTERRUPT),
            },
            live: true,
        };
    }

    /// [`Connection::take_read`] but for a quiet connection's read to hand
    /// over (its credit admitted, not taken): the read is handed over at
    /// once if no work waits for the driver (`true`; its credit still not
    /// taken), else its credit is taken and it is started as any read
    /// (or refused).
    #[inline(never)]
    fn take_read_slow(&mut self, read: ReadFields<'_>) -> Result<bool, Violation> {
        let handed = self.try_hand_direct(read);
        if !matches!(handed, Ok(true)) {
            self.ledger.take_admitted();
        }
        match handed {
            Ok(false) => self.take_read_queued(read).map(|()| false),
            other => other,
        }
    }

    /// The checks of a read arriving at [`Connection::take_message`], and
    /// its handing over at once when no work waits for the driver and it
    /// has a file to read (`true`).
    #[inline(always)]
    fn try_hand_direct(&mut self, read: ReadFields<'_>) -> Result<bool, Violation> {
        self.check_status_desc(read.status())?;
        let dest = read.dest();
        if dest.len() > self.max_io_size() {
            return Err(Violation::TooLarge);
        }
        let file = self.resolve_read_one(read.handle(), read.offset(), dest.len());
        if let (Ok(file), true) = (file, self.pending.is_empty()) {
            // What the insert would refuse is refused here (an id in
            // flight, a full table), so the read can be parked later
            // without fail: the table keeps its place (`Connection::park`,
            // called first by every other call, emptied `direct` before
            // this one).
            let id = read.request_id();
            if self.ops.len() > 0 && self.find(id).is_some() {
                return Err(Violation::DuplicateRequest(id));
            }
            if self.ops.len() >= R {
                return Err(Violation::Capacity);
            }
            self.hand_direct(read, file);
            return Ok(true);
        }
        Ok(false)
    }

    /// [`Connection::take_read`] for a read not handed over at once (out
    /// of line: the usual read is).
    #[inline(never)]
    fn take_read_queued(&mut self, read: ReadFields<'_>) -> Result<(), Violation> {
        self.start_one_read(read)
    }

    /// [`Connection::start_read_into`] of a Read message's one segment
    /// (its credit already taken or admitted).
    #[inline(always)]
    pub(super) fn start_one_read(&mut self, read: ReadFields<'_>) -> Result<(), Violation> {
        let segment = [ReadSegment::new(read.offset(), read.dest())];
        let interrupt = read.flags().contains(Flags::INTERRUPT);
        self.start_read_into(
            read.request_id(),
            read.handle(),
            read.status(),
            interrupt,
            &segment,
            None,
        )
    }

    /// The file a read of `segments` through `handle` reads:
    /// `InvalidParameter` for a segment reaching past the largest file
    /// offset, else what [`Connection::resolve`] says of the handle. The
    /// read is answered with that status, not refused.
    #[inline(always)]
    fn resolve_read(&self, handle: u32, segments: &[ReadSegment]) -> Result<FileId, Status> {
        let in_range = segments
            .iter()
            .all(|s| within_file_offsets(s.offset(), u64::from(s.dest().len())));
        if in_range {
            self.resolve_for_read(handle)
        } else {
            Err(Status::InvalidParameter)
        }
    }

    /// [`Connection::resolve`] for a read: a handle open for reading (the
    /// usual case) is found by [`handles::Handles::reader`]'s one compare,
    /// anything else takes the full look-up for its status.
    #[inline(always)]
    fn resolve_for_read(&self, handle: u32) -> Result<FileId, Status> {
        match self.handles.reader(handle) {
            Some(file) => Ok(file),
            None => self.resolve(handle, OpenFlags::READ),
        }
    }

    /// [`Connection::resolve_read`] of one segment of `len` bytes at
    /// `offset`.
    #[inline(always)]
    fn resolve_read_one(&self, handle: u32, offset: u64, len: u32) -> Result<FileId, Status> {
        if within_file_offsets_u32(offset, len) {
            self.resolve_for_read(handle)
        } else {
            Err(Status::InvalidParameter)
        }
    }

    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(super) fn start_write<'a>(
        &mut self,
        id: u32,
        handle: u32,
        status_desc: BufferDescriptor,
        interrupt: bool,
        segments: &[WriteSegment],
        collapse: bool,
        total: u32,
        data: &'a [u8],
    ) -> Result<Option<Chunk<'a>>, Violation> {
        self.check_status_desc(status_desc)?;
        let file_bytes = if collapse {
            u64::from(total).checked_mul(segments.len() as u64)
        } else {
            Some(u64::from(total))
        };
        if total > self.max_io_size()
            || file_bytes.is_none_or(|b| b > u64::from(self.max_io_size()))
        {
            return Err(Violation::TooLarge);
        }
        let kind = OpKind::Write {
            collapse,
            total,
            received: 0,
        };
        let mut op = Op::new(id, kind, handle, status_desc, interrupt);
        op.stage = Stage::Receiving;
        // A range past the largest file offset is answered InvalidParameter;
        // its fragments are still received (and discarded) in order.
        let in_range = segments.iter().all(|s| {
            let len = if collapse { total } else { s.len() };
            within_file_offsets(s.offset(), u64::from(len))
        });
        let file = if in_range {
            self.resolve(handle, OpenFlags::WRITE)
        } else {
            Err(Status::InvalidParameter)
        };
        match file {
            Ok(file) => op.file = Some(file),
            Err(status) => op.result = status,
        }
        let index = self.insert(op)?;
        self.store_segments(index, segments)?;
        self.write_fragment_at(index, id, 0, data)
    }

    /// Account one fragment of write `id` and map its bytes onto file pieces.
    #[inline(always)]
    pub(super) fn write_fragment<'a>(
        &mut self,
        id: u32,
        data_offset: u32,
        data: &'a [u8],
    ) -> Result<Option<Chunk<'a>>, Violation> {
        let index = self.find(id).ok_or(Violation::UnknownRequest(id))?;
        self.write_fragment_at(index, id, data_offset, data)
    }

    /// [`Connection::write_fragment`] of the write in slot `index` (the
    /// first fragment, just inserted there, needs no lookup).
    #[inline(always)]
    fn write_fragment_at<'a>(
        &mut self,
        index: usize,
        id: u32,
        data_offset: u32,
        data: &'a [u8],
    ) -> Result<Option<Chunk<'a>>, Violation> {
        let op = self
            .ops
            .get_mut(index)
            .ok_or(Violation::UnknownRequest(id))?;
        let segments = self
            .segments
            .get(index)
            .map_or(&[][..], SegmentStore::get::<WriteSegment>);
        let OpKind::Write {
            collapse,
            total,
            received,
        } = &mut op.kind
        else {
            return Err(Violation::UnexpectedMessage(crate::wire::Opcode::WriteData));
        };
        if op.stage != Stage::Receiving || data_offset != *received {
            return Err(Violation::FragmentOutOfOrder);
        }
        if data_offset != 0 {
            // A continuation fragment: one more message of this request.
            op.unanswered = op.unanswered.saturating_add(1);
        }
        let len = u32::try_from(data.len()).map_err(|_| Violation::FragmentOutOfOrder)?;
        let end = received
            .checked_add(len)
            .filter(|end| end <= total)
            .ok_or(Violation::FragmentOutOfOrder)?;
        *received = end;
        let complete = end == *total;
        let mut chunk = None;
        if let (Some(file), false, false) = (op.file, op.cancelled, data.is_empty()) {
            // Where the bytes go is noted in the connection's piece map
            // (the chunk handed out borrows it): nothing to copy around.
            map_pieces(
                segments,
                *collapse,
                data_offset,
                data.len(),
                &mut self.piece_map.0,
            )
            .ok_or(Violation::Capacity)?;
            op.pieces_in_flight = op.pieces_in_flight.saturating_add(1);
            chunk = Some(Chunk {
                op: OpId(id),
                file,
                data,
            });
        }
        if complete {
            op.stage = Stage::Dispatched;
            self.try_finish(index)?;
        } else {
            // Intermediate fragments are answered at once so the client can
            // stream a write of any size through a single credit.
            if let Some(op) = self.ops.get_mut(index) {
                op.unanswered = op.unanswered.saturating_sub(1);
            }
            self.reply(
                id,
                1,
                Body::Completion {
                    status: Status::Success,
                    bytes: u64::from(end),
                },
            )?;
        }
        Ok(chunk)
    }

    /// Queue the completion of op `index` if nothing of it is still running.
    pub(super) fn try_finish(&mut self, index: usize) -> Result<(), Violation> {
        self.try_finish_into(index, None).map(|_| ())
    }

    /// [`Connection::try_finish`], the status block encoded into `buf`
    /// when one is given and nothing waits to go before it.
    fn try_finish_into(
        &mut self,
        index: usize,
        buf: Option<&mut [u8]>,
    ) -> Result<Option<Transmit>, Violation> {
        let Some(op) = self.ops.get(index) else {
            return Err(Violation::Internal);
        };
        let done = match op.stage {
            Stage::Queued => op.cancelled,
            // A read in the driver's hands ends only with its `complete_io`:
            // its RDMA writes into client memory may still be under way, so
            // a cancel must not hand that memory back to the client yet.
            Stage::Dispatched => {
                op.pieces_in_flight == 0 && !matches!(op.kind, OpKind::Read { .. })
            }
            Stage::Receiving => false,
        };
        if done {
            self.finish_into(index, buf)
        } else {
            Ok(None)
        }
    }

    /// Answer a finished data request with its status block (claim 20), then
    /// wake a waiting polling client (claim 21), then close a handle that was
    /// waiting for this request.
    #[inline(always)]
    pub(super) fn finish(&mut self, index: usize) -> Result<(), Violation> {
        self.finish_into(index, None).map(|_| ())
    }

    /// [`Connection::finish`]; with `buf`, and nothing queued to go before
    /// it, the status block is encoded there and returned instead of
    /// queued (the output queue keeps its order: anything queued after it
    /// here, an interrupt response, goes after it).
    #[inline(always)]
    fn finish_into(
        &mut self,
        index: usize,
        buf: Option<&mut [u8]>,
    ) -> Result<Option<Transmit>, Violation> {
        let Some(op) = self.ops.take(index) else {
            return Err(Violation::Internal);
        };
        let done = Done {
            block: StatusBlock {
                request_id: op.id,
                status: op.result,
                bytes: op.bytes,
                credits: op.unanswered,
            },
            dest: op.status_desc,
            interrupt: op.interrupt,
            handle: op.handle,
            batch: op.batch,
        };
        self.finish_done(done, buf, false, true)
    }

    /// [`Connection::finish_into`] for a request already out of the table
    /// (or never in it): its status block goes, its credits return (to
    /// the ledger too when `counted`: all but the read handed over at once,
    /// [`Connection::direct`], whose credit was never taken). With `quiet`,
    /// [`Connection::quiet`] (the caller read it, `false` where it cannot
    /// be `true`: a batch being handed over, a request in the table).
    #[inline(always)]
    fn finish_done(
        &mut self,
        done: Done,
        buf: Option<&mut [u8]>,
        quiet: bool,
        counted: bool,
    ) -> Result<Option<Transmit>, Violation> {
        let Done {
            block,
            dest,
            interrupt,
            handle,
            batch,
        } = done;
        // A quiet connection has no output queued, no interrupt waiter
        // and no handle closing; nothing below adds a waiter or closes a
        // handle, so what it says now holds to the end.
        // A batch's reads go without immediate but the last, which
        // carries the batch's id: every block of it is in place when the
        // client hears (RC ordering).
        let immediate = match batch {
            None => interrupt.then_some(block.request_id),
            Some(batch) => (self.batch_block(batch)? && interrupt).then_some(batch),
        };
        let direct = match buf {
            Some(buf) if quiet || (self.control.is_empty() && self.outgoing.is_empty()) => {
                block.emit(buf).ok().map(|len| Transmit::StatusBlock {
                    len,
                    dest,
                    immediate,
                })
            }
            _ => None,
        };
        if direct.is_none() {
            self.queue(Outgoing::Status {
                dest,
                immediate,
                block,
            })?;
        }
        if counted {
            self.ledger.release(block.credits)?;
        }
        if quiet {
            return Ok(direct);
        }
        // Claim 21: the completion wakes one waiting polling client; when it
        // was the last request in flight, nothing else will, so every other
        // waiter is answered too (as a new interrupt request would be).
        if !self.interrupt_waiters.is_empty() {
            self.wake_interrupt_waiters()?;
        }
        if self.closing_handles > 0 && self.handles.closing(handle) {
            self.try_close(handle)?;
        }
        Ok(direct)
    }

    /// Claim 21 at a completion: wake one waiting polling client, or every
    /// one when no data request is left in flight.
    #[cold]
    fn wake_interrupt_waiters(&mut self) -> Result<(), Violation> {
        if let Some(waiter) = self.interrupt_waiters.pop_front() {
            self.reply(waiter, 1, Body::InterruptResponse)?;
        }
        if !self.interrupt_waiters.is_empty() && !self.data_in_flight() {
            while let Some(waiter) = self.interrupt_waiters.pop_front() {
                self.reply(waiter, 1, Body::InterruptResponse)?;
            }
        }
        Ok(())
    }

    /// The driver finished its part of request `op`: for a read, all
    /// segments were read and their RDMA writes posted, `result` holding the
    /// total bytes (short at end of file); for a write, one [`WriteChunk`]
    /// was written. An error status fails the request.
    pub fn complete_io(&mut self, op: OpId, result: Result<u64, Status>) -> Result<(), ApiError> {
        self.complete(op, result, None).map(|_| ())
    }

    /// [`Connection::complete_io`] for a driver that posts the status block
    /// at once: when this finishes the request and nothing is queued to go
    /// before its status block, the block is encoded into `buf` and
    /// returned (`Transmit::StatusBlock`) instead of queued for
    /// [`Connection::poll_transmit`]. Post it before draining
    /// `poll_transmit`, which may hold sends that must follow it (an
    /// interrupt response, claim 21). `Ok(None)`: the request is not
    /// finished yet, or its block was queued (`buf` too small for
    /// [`STATUS_BLOCK_LEN`], or other output waiting).
    pub fn complete_io_into(
        &mut self,
        op: OpId,
        result: Result<u64, Status>,
        buf: &mut [u8],
    ) -> Result<Option<Transmit>, ApiError> {
        self.complete(op, result, Some(buf))
    }

    #[inline(always)]
    fn complete(
        &mut self,
        op: OpId,
        result: Result<u64, Status>,
        buf: Option<&mut [u8]>,
    ) -> Result<Option<Transmit>, ApiError> {
        // The read handed over at once, completed before anything else was
        // called: finished from where it is, never entering the table.
        // A batch's read handed out, likewise, read where it is.
        // Each is finished by a `finish_done` of its own: one for both
        // moves the `Done` through the choice of the two, copies per read.
        if self.direct.live && self.direct.read.id == op.0 {
            self.direct.live = false;
            let done = self.direct.read.done(result);
            let quiet = self.quiet.0;
            return self.finish_done(done, buf, quiet, false).map_err(|v| {
                self.fail(v);
                ApiError::NotConnected
            });
        }
        let done = self.handing.take_if(op.0, |read, batch, interrupt| {
            handed_done(read, batch, interrupt, result)
        });
        if let Some(done) = done {
            return self.finish_done(done, buf, false, true).map_err(|v| {
                self.fail(v);
                ApiError::NotConnected
            });
        }
        self.park_direct();
        let index = self.find(op.0).ok_or(ApiError::UnknownRequest)?;
        let entry = self.ops.get_mut(index).ok_or(ApiError::UnknownRequest)?;
        let finished = match entry.kind {
            OpKind::Read { .. } => {
                if entry.stage != Stage::Dispatched {
                    return Err(ApiError::UnknownRequest);
                }
                read_done(entry, result);
                self.finish_into(index, buf)
            }
            OpKind::Write { .. } => {
                if entry.pieces_in_flight == 0 {
                    return Err(ApiError::UnknownRequest);
                }
                entry.pieces_in_flight = entry.pieces_in_flight.saturating_sub(1);
                match result {
                    Ok(n) => entry.bytes = entry.bytes.saturating_add(n),
                    Err(status) if entry.result == Status::Success => entry.result = status,
                    Err(_) => {}
                }
                self.try_finish_into(index, buf)
            }
            _ => return Err(ApiError::UnknownRequest),
        };
        finished.map_err(|v| {
            self.fail(v);
            ApiError::NotConnected
        })
    }
}

/// Whether `len` bytes at `offset` lie within the offsets a file can have
/// (POSIX `off_t` is signed 64-bit), so no piece offset can overflow.
pub(super) fn within_file_offsets(offset: u64, len: u64) -> bool {
    offset
        .checked_add(len)
        .is_some_and(|end| end <= i64::MAX.unsigned_abs())
}

/// [`within_file_offsets`] for a length that fits 32 bits (a segment's):
/// `offset + len <= i64::MAX` as `offset <= i64::MAX - len`, which cannot
/// wrap.
#[inline(always)]
pub(super) fn within_file_offsets_u32(offset: u64, len: u32) -> bool {
    offset <= i64::MAX.unsigned_abs().wrapping_sub(u64::from(len))
}

/// Map `len` bytes of data, found at `data_offset` of a write's data
/// stream, onto file offsets, into `pieces` (cleared first; each piece a
/// range of the data): consecutive segments without COLLAPSE, every
/// segment with it.
#[inline(always)]
pub(super) fn map_pieces(
    segments: &[WriteSegment],
    collapse: bool,
    data_offset: u32,
    len: usize,
    pieces: &mut heapless::Vec<Piece, MAX_SEGMENTS>,
) -> Option<()> {
    pieces.clear();
    let whole = u32::try_from(len).ok()?;
    if collapse {
        for segment in segments {
            let offset = segment.offset().checked_add(u64::from(data_offset))?;
            pieces
                .push(Piece {
                    offset,
                    start: 0,
                    end: whole,
                })
                .ok()?;
        }
        return Some(());
    }
    let mut stream_pos = 0u64; // start of the current segment in the data stream
    let start = u64::from(data_offset);
    let end = start.checked_add(u64::from(whole))?;
    for segment in segments {
        let seg_end = stream_pos.checked_add(u64::from(segment.len()))?;
        let lo = start.max(stream_pos);
        let hi = end.min(seg_end);
        if lo < hi {
            let from = u32::try_from(lo.checked_sub(start)?).ok()?;
            let to = u32::try_from(hi.checked_sub(start)?).ok()?;
            let offset = segment.offset().checked_add(lo.checked_sub(stream_pos)?)?;
            pieces
                .push(Piece {
                    offset,
                    start: from,
                    end: to,
                })
                .ok()?;
        }
        stream_pos = seg_end;
    }
    Some(())
}

/// The status and bytes of a read of `wanted` bytes that had `before`
/// when the driver reported `result`: the bytes (at most those asked
/// for), or end of file for nothing read, or the first error.
#[inline(always)]
fn read_outcome(wanted: u64, before: (Status, u64), result: Result<u64, Status>) -> (Status, u64) {
    let (status, bytes) = before;
    match result {
        Ok(0) if wanted > 0 && status == Status::Success => (Status::EndOfFile, bytes),
        Ok(n) => (status, n.min(wanted)),
        Err(error) if status == Status::Success => (error, bytes),
        Err(_) => (status, bytes),
    }
}

/// [`read_outcome`] of a Read handed over at once, which starts out
/// `Success`, 0 bytes, and wants at least one byte (a read with an empty
/// destination is refused as malformed before it is handed over): end of
/// file for nothing read, else the bytes read (at most those asked for),
/// or the driver's error.
#[inline(always)]
fn handed_outcome(wanted: u64, result: Result<u64, Status>) -> (Status, u64) {
    match result {
        Ok(0) => (Status::EndOfFile, 0),
        Ok(n) => (Status::Success, n.min(wanted)),
        Err(error) => (error, 0),
    }
}

/// The driver's `result` for a dispatched read, recorded in its op
/// ([`read_outcome`]). The read is complete once the driver reports it.
#[inline(always)]
fn read_done(entry: &mut Op, result: Result<u64, Status>) {
    let OpKind::Read { wanted } = entry.kind else {
        return;
    };
    let (status, bytes) = read_outcome(wanted, (entry.result, entry.bytes), result);
    entry.result = status;
    entry.bytes = bytes;
    entry.pieces_in_flight = 0;
}

impl DirectRead {
    /// The read completed by the driver with `result`: its status block
    /// and where it goes, from what [`DirectRead::op`] would start with
    /// (success, 0 bytes).
    #[inline(always)]
    fn done(&self, result: Result<u64, Status>) -> Done {
        let wanted = u64::from(self.segment().dest().len());
        let (status, bytes) = handed_outcome(wanted, result);
        Done {
            block: StatusBlock {
                request_id: self.id,
                status,
                bytes,
                credits: 1,
            },
            dest: self.status(),
            interrupt: self.interrupt,
            handle: self.handle(),
            batch: None,
        }
    }
}

/// Read `read` of batch `batch` (with `interrupt`) completed by the
/// driver with `result`: as [`DirectRead::done`].
#[inline(always)]
fn handed_done(read: &Handed, batch: u32, interrupt: bool, result: Result<u64, Status>) -> Done {
    let wanted = u64::from(read.segment().dest().len());
    let (status, bytes) = read_outcome(wanted, (Status::Success, 0), result);
    Done {
        block: StatusBlock {
            request_id: read.id(),
            status,
            bytes,
            credits: 1,
        },
        dest: read.read.status(),
        interrupt,
        handle: read.read.handle(),
        batch: Some(batch),
    }
}

/// A finished request, out of the request table: its status block (whose
/// credits are the messages it leaves unanswered), where the block goes,
/// whether with an immediate, its handle (a close may wait for it) and
/// its read batch, if any.
struct Done {
    block: StatusBlock,
    dest: BufferDescriptor,
    interrupt: bool,
    handle: u32,
    batch: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::{handed_outcome, read_outcome, within_file_offsets, within_file_offsets_u32};
    use crate::wire::Status;

    #[test]
    fn a_handed_reads_outcome_is_read_outcome() {
        let results = [
            Ok(0),
            Ok(1),
            Ok(4095),
            Ok(4096),
            Ok(4097),
            Ok(u64::MAX),
            Err(Status::IoError),
            Err(Status::EndOfFile),
        ];
        for wanted in [1, 2, 4096, u64::from(u32::MAX)] {
            for result in results {
                assert_eq!(
                    handed_outcome(wanted, result),
                    read_outcome(wanted, (Status::Success, 0), result),
                    "{wanted} {result:?}"
                );
            }
        }
    }

    #[test]
    fn the_u32_range_check_agrees() {
        let max = i64::MAX.unsigned_abs();
        let offsets = [
            0,
            1,
            4096,
            max - u64::from(u32::MAX),
            max - 4096,
            max - 1,
            max,
        ]
        .into_iter()
        .chain([
            max + 1,
            u64::MAX - u64::from(u32::MAX),
            u64::MAX - 1,
            u64::MAX,
        ]);
        for offset in offsets {
            for len in [0, 1, 4095, 4096, 4097, u32::MAX - 1, u32::MAX] {
                assert_eq!(
                    within_file_offsets_u32(offset, len),
                    within_file_offsets(offset, u64::from(len)),
                    "{offset} + {len}"
                );
            }
        }
    }
}
