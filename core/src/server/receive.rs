//! Receive and dispatch: every received send enters through
//! [`Connection::handle_message`](super::Connection::handle_message). Checks
//! direction, state and credits (claim 22), answers authentication (claims
//! 12–14) and credit answers (claim 7), and turns requests (claim 15) into
//! ops of the request table for the I/O and handle modules.

use super::*;

impl<const R: usize, const F: usize> Connection<R, F> {
    /// Process one received message (a receive completion of `bytes.len()`
    /// bytes). Write data is returned for the driver to place in the file.
    ///
    /// On a violation the connection is already terminated (a `Terminate`
    /// is queued and a [`ServerEvent::Terminated`] pending); the error says
    /// why. Messages after termination are ignored.
    pub fn handle_message<'a>(
        &'a mut self,
        now: Instant,
        bytes: &'a [u8],
    ) -> Result<Option<WriteChunk<'a>>, Violation> {
        self.park();
        let result = match self.arrival(bytes)? {
            Arrival::Ignored => return Ok(None),
            Arrival::Read(read) => self.read_message(now, read).map(|()| None),
            Arrival::Other => self.process(now, bytes),
        };
        match result {
            Ok(chunk) => Ok(chunk.map(|chunk| self.chunk(chunk))),
            Err(violation) => Err(self.failed(violation)),
        }
    }

    /// Hand `chunk` out with the map of its pieces.
    fn chunk<'a>(&'a self, chunk: Chunk<'a>) -> WriteChunk<'a> {
        WriteChunk {
            op: chunk.op,
            file: chunk.file,
            data: chunk.data,
            map: &self.piece_map.0,
        }
    }

    /// [`Connection::handle_message`] for a driver that performs a read as
    /// soon as it arrives: a Read that finds no earlier work waiting for
    /// the driver is handed back here ([`Received::Read`], the same as
    /// [`ServerEvent::Read`]) and not queued for
    /// [`Connection::poll_event`]; the driver answers it with
    /// [`Connection::complete_io`] (or [`Connection::complete_io_into`]) as
    /// usual. Everything else is exactly as `handle_message`.
    ///
    /// A one-segment read handed over here stays out of the request table
    /// while the driver completes it before calling anything else (the
    /// usual case: no insert, lookup or removal for it); any other call
    /// first puts it in the table, so a driver may also complete it later,
    /// as any read.
    // Always inlined: a driver calls it in one place, and called it costs
    // a read some 25 instructions of calls and spills.
    #[inline(always)]
    pub fn take_message<'a>(
        &'a mut self,
        now: Instant,
        bytes: &'a [u8],
    ) -> Result<Received<'a>, Violation> {
        // `park` and `arrival`, but for a quiet connection with nothing
        // handed over, which has nothing to park and is open.
        let arrival = if self.direct.live || !self.quiet.0 {
            self.settled_arrival(bytes)?
        } else {
            self.open_arrival(bytes)?
        };
        match arrival {
            Arrival::Ignored => Ok(Received::Nothing),
            Arrival::Read(read) => {
                trace!("server rx Read id {}", read.request_id());
                let taken = self.take_read(now, read);
                match taken {
                    // Built from the message, but for its segment: the one
                    // `take_read` just wrote into `direct`.
                    Ok(Some(file)) => Ok(handed_over(
                        read.request_id(),
                        file,
                        read.flags().contains(Flags::INTERRUPT),
                        read.status(),
                        core::slice::from_ref(self.direct.read.segment()),
                    )),
                    Ok(None) => Ok(Received::Nothing),
                    Err(violation) => Err(self.failed(violation)),
                }
            }
            Arrival::Other => self.take_other(now, bytes),
        }
    }

    /// [`Connection::take_message`] for anything but a well-formed Read
    /// (kept out of line: the Read path stays small enough to inline).
    #[inline(never)]
    fn take_other<'a>(
        &'a mut self,
        now: Instant,
        bytes: &'a [u8],
    ) -> Result<Received<'a>, Violation> {
        if self.state == State::Open && self.pending.is_empty() {
            // A well-formed ReadBatch, straight from its fixed layout (the
            // same fields as `Message::parse`'s; anything else, malformed
            // batches included, goes the general way below).
            if let Some(batch) = parse_read_batch_fields(bytes) {
                let interrupt = batch.flags.contains(Flags::INTERRUPT);
                if let Some(handed) =
                    self.hand_batch(now, batch.request_id, batch.credits, interrupt, batch.reads)
                {
                    return handed.map_err(|violation| self.failed(violation));
                }
            }
        }
        match self.process(now, bytes) {
            Ok(Some(chunk)) => Ok(Received::Write(self.chunk(chunk))),
            Ok(None) => Ok(Received::Nothing),
            Err(violation) => Err(self.failed(violation)),
        }
    }

    /// After [`Received::Batch`]: the next read of the batch, to perform
    /// now exactly as a [`Received::Read`] (RDMA-write its segment, then
    /// [`Connection::complete_io`] or [`Connection::complete_io_into`]),
    /// until `None`. Completing one of them leaves the rest to come here;
    /// any other call first queues those not taken yet for
    /// [`Connection::poll_event`], as if they had been received there.
    pub fn next_batch_read(&mut self) -> Option<Received<'_>> {
        // The read taken last, if not completed yet, goes to the table.
        self.park_direct();
        let (read, interrupt) = self.handing.next()?;
        Some(handed_over(
            read.id(),
            read.file,
            interrupt,
            read.read.status(),
            core::slice::from_ref(read.segment()),
        ))
    }

    /// End the connection for `violation`, which the caller returns.
    #[cold]
    fn failed(&mut self, violation: Violation) -> Violation {
        self.fail(violation);
        violation
    }

    /// What a received message is, before any of it is acted on.
    #[inline(always)]
    fn arrival<'a>(&mut self, bytes: &'a [u8]) -> Result<Arrival<'a>, Violation> {
        match self.state {
            State::Closed => Ok(Arrival::Ignored),
            State::Open => self.open_arrival(bytes),
            State::AwaitAuth | State::Authenticating { .. } => Ok(Arrival::Other),
        }
    }

    /// [`Connection::arrival`] on an open connection.
    #[inline(always)]
    fn open_arrival<'a>(&mut self, bytes: &'a [u8]) -> Result<Arrival<'a>, Violation> {
        // `max_send_size` bounds every message, header included, whatever
        // size of receive the driver happened to post.
        if bytes.len() > self.max_send_size() {
            return Err(self.failed(Violation::TooLarge));
        }
        // The I/O path's most frequent message, straight from its fixed
        // layout to the read it starts (`Message::parse` would give the
        // same `Message`; see `wire::message::parse_read`).
        match parse_read_fields(bytes) {
            Some(read) => {
                self.note_demand(read.demand())?;
                Ok(Arrival::Read(read))
            }
            None => {
                if let Some(demand) = crate::wire::header::demand_of(bytes) {
                    self.note_demand(demand)?;
                }
                Ok(Arrival::Other)
            }
        }
    }

    /// A request's header stated `demand`: the policy's peak follows it,
    /// on a session that negotiated it (else it must be zero; the parser
    /// checks the messages that may never carry one).
    #[inline(always)]
    fn note_demand(&mut self, demand: u16) -> Result<(), Violation> {
        if demand > self.demand_peak {
            if demand > self.demand_limit {
                return Err(self.failed(Violation::Malformed(
                    crate::wire::WireError::ReservedNotZero,
                )));
            }
            self.demand_peak = demand;
        }
        Ok(())
    }

    /// [`Connection::take_message`]'s `park` and `arrival` on a connection
    /// not quiet, or with a read handed over.
    #[inline(never)]
    fn settled_arrival<'a>(&mut self, bytes: &'a [u8]) -> Result<Arrival<'a>, Violation> {
        self.settle();
        self.arrival(bytes)
    }

    #[inline(always)]
    pub(super) fn process<'a>(
        &mut self,
        now: Instant,
        bytes: &'a [u8],
    ) -> Result<Option<Chunk<'a>>, Violation> {
        let msg = Message::parse(bytes)?;
        let opcode = msg.opcode();
        if !opcode.sent_by_client() {
            return Err(Violation::WrongDirection(opcode));
        }
        trace!("server rx {:?} id {}", opcode, msg.request_id);
        if let Body::Terminate { reason } = msg.body {
            self.end(Violation::PeerTerminated(reason), None);
            return Ok(None);
        }
        match self.state {
            State::AwaitAuth => match msg.body {
                Body::AuthRequest { key } => {
                    self.state = State::Authenticating {
                        request_id: msg.request_id,
                        credits: msg.credits,
                    };
                    self.push_pending(Pending::Authenticate(key))?;
                    Ok(None)
                }
                _ => Err(Violation::UnexpectedMessage(opcode)),
            },
            State::Authenticating { .. } | State::Closed => {
                Err(Violation::UnexpectedMessage(opcode))
            }
            State::Open => {
                self.heard = now;
                self.open_message(&msg)
            }
        }
    }

    #[inline(always)]
    pub(super) fn open_message<'a>(
        &mut self,
        msg: &Message<'a>,
    ) -> Result<Option<Chunk<'a>>, Violation> {
        let id = msg.request_id;
        match msg.body {
            Body::CreditAck { delta } => {
                self.ledger.on_ack(delta, msg.credits)?;
                ConnectionStats::add(
                    &mut self.stats.credits_granted,
                    u64::from(delta.unsigned_abs()),
                );
                self.reply(id, 1, Body::CreditResponse)?;
                self.drive_credits()?;
                Ok(None)
            }
            Body::CreditGiveUp => {
                self.ledger.on_give_up(msg.credits)?;
                ConnectionStats::add(&mut self.stats.credits_revoked, 1);
                self.queue(Outgoing::Message(Message {
                    flags: Flags::empty(),
                    credits: 0,
                    demand: 0,
                    request_id: id,
                    body: Body::CreditResponse,
                }))?;
                self.drive_credits()?;
                Ok(None)
            }
            Body::WriteData { data_offset, data } => {
                self.ledger.on_request(msg.credits)?;
                self.write_fragment(id, data_offset, data)
            }
            Body::AuthRequest { .. } => Err(Violation::UnexpectedMessage(msg.opcode())),
            Body::ReadBatch(batch) => {
                let interrupt = msg.flags.contains(Flags::INTERRUPT);
                self.read_batch(id, msg.credits, interrupt, batch.reads)
                    .map(|()| None)
            }
            _ => self.new_request(msg),
        }
    }

    /// A Read on an open connection: what `process` and `open_message` do
    /// for it, without their dispatch.
    #[inline(always)]
    pub(super) fn read_message(
        &mut self,
        now: Instant,
        msg: ReadFields<'_>,
    ) -> Result<(), Violation> {
        trace!("server rx Read id {}", msg.request_id());
        self.heard = now;
        self.ledger.on_request(msg.credits())?;
        // A request id already in flight is refused by the insert
        // (`Connection::insert`), in the same probe that finds the slot.
        self.start_one_read(msg)
    }

    /// A message that opens a request: its credit, its id, its work.
    #[inline(always)]
    pub(super) fn new_request<'a>(
        &mut self,
        msg: &Message<'a>,
    ) -> Result<Option<Chunk<'a>>, Violation> {
        self.ledger.on_request(msg.credits)?;
        // A write's insert refuses an id already in flight
        // (`Connection::insert`) before anything of it is done; every other
        // request is checked here, since some are answered without a slot.
        let inserts_first = matches!(msg.body, Body::Write(_) | Body::WriteV(_));
        if !inserts_first && self.find(msg.request_id).is_some() {
            return Err(Violation::DuplicateRequest(msg.request_id));
        }
        self.request(msg)
    }

    #[inline(always)]
    pub(super) fn request<'a>(
        &mut self,
        msg: &Message<'a>,
    ) -> Result<Option<Chunk<'a>>, Violation> {
        let id = msg.request_id;
        let interrupt = msg.flags.contains(Flags::INTERRUPT);
        match msg.body {
            Body::Keepalive => {
                ConnectionStats::add(&mut self.stats.keepalives, 1);
                self.reply(id, 1, Body::KeepaliveResponse)?;
                ConnectionStats::add(&mut self.stats.keepalives_answered, 1);
                Ok(None)
            }
            Body::InterruptRequest => {
                // Claim 21: a polling client asks to be woken by a send. With
                // nothing in flight there is nothing to wait for: answer now.
                if self.data_in_flight() {
                    self.stir();
                    self.interrupt_waiters
                        .push_back(id)
                        .map_err(|_| Violation::Capacity)?;
                } else {
                    self.reply(id, 1, Body::InterruptResponse)?;
                }
                Ok(None)
            }
            Body::Cancel { target } => {
                let status = self.cancel(target)?;
                self.reply(id, 1, Body::Completion { status, bytes: 0 })
                    .map(|()| None)
            }
            Body::RegisterFile { key } => {
                let slot = self.insert(Op::new(
                    id,
                    OpKind::Register { key },
                    0,
                    BufferDescriptor::default(),
                    false,
                ))?;
                self.push_pending(Pending::Op { slot, id })?;
                Ok(None)
            }
            Body::Close { handle } => self.close(id, handle).map(|()| None),
            Body::Read(read) => {
                let segment = [ReadSegment::new(read.offset, read.dest)];
                self.start_read(id, read.handle, read.status, interrupt, &segment)
                    .map(|()| None)
            }
            Body::ReadV(readv) => self
                .start_read(id, readv.handle, readv.status, interrupt, readv.segments)
                .map(|()| None),
            Body::Write(write) => {
                let segment = [WriteSegment::new(write.offset, write.total_len)];
                self.start_write(
                    id,
                    write.handle,
                    write.status,
                    interrupt,
                    &segment,
                    false,
                    write.total_len,
                    write.data,
                )
            }
            Body::WriteV(writev) => {
                let collapse = msg.flags.contains(Flags::COLLAPSE);
                self.start_write(
                    id,
                    writev.handle,
                    writev.status,
                    interrupt,
                    writev.segments,
                    collapse,
                    writev.total_len,
                    writev.data,
                )
            }
            _ => Err(Violation::UnexpectedMessage(msg.opcode())),
        }
    }

    pub(super) fn check_status_desc(&self, desc: BufferDescriptor) -> Result<(), Violation> {
        if (desc.len() as usize) < STATUS_BLOCK_LEN {
            return Err(Violation::BadDescriptor);
        }
        Ok(())
    }

    /// Resolve a handle for an I/O needing `need` rights: the file, or the
    /// status the request completes with.
    pub(super) fn resolve(&self, handle: u32, need: OpenFlags) -> Result<FileId, Status> {
        let (file, flags) = self.handles.open(handle).ok_or(Status::InvalidHandle)?;
        if flags.contains(need) {
            Ok(file)
        } else {
            Err(Status::AccessDenied)
        }
    }
}

/// Dispatched read `id` of `file` as [`Connection::take_message`] hands it
/// over: its segments, and whether its status block (at `status`, with an
/// immediate when `interrupt`) follows the last segment's data.
#[inline(always)]
fn handed_over(
    id: u32,
    file: FileId,
    interrupt: bool,
    status: BufferDescriptor,
    segments: &[ReadSegment],
) -> Received<'_> {
    let status_follows = interrupt
        && segments.last().is_some_and(|last| {
            let dest = last.dest();
            dest.key() == status.key()
                && dest.addr().checked_add(u64::from(dest.len())) == Some(status.addr())
        });
    Received::Read {
        op: OpId(id),
        file,
        segments,
        status_follows,
    }
}
