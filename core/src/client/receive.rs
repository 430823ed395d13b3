//! Receive and dispatch: every received send and every status block the
//! driver finds written enters here. Authentication replies (claims 12, 14),
//! credit grants and revokes (claims 1, 6, 7, 22, 23), registration and
//! control completions (claims 11, 15, 21) and read/write status blocks
//! (claims 16, 18–20) update the request table; finished requests queue for
//! [`Client::poll_event`](super::Client::poll_event).

use super::submit::remove_from;
use super::*;

impl<const R: usize> Client<R> {
    /// Process one received send.
    ///
    /// On a violation the connection is already terminated (a `Terminate`
    /// is queued, the outstanding requests complete, a
    /// [`ClientEvent::Terminated`] follows); the error says why.
    pub fn handle_message(&mut self, now: Instant, bytes: &[u8]) -> Result<(), Violation> {
        if self.state == State::Closed {
            return Ok(());
        }
        self.heard(now);
        let result = Message::parse(bytes)
            .map_err(Violation::from)
            .and_then(|msg| self.process(msg));
        self.after_input(now, result)
    }

    /// A status block was found written in the memory of one of this
    /// client's requests (claim 20). `Ok(false)`: not written yet, keep
    /// polling. The completion it brings is queued for
    /// [`Client::poll_event`]; [`Client::take_status_block`] hands it back
    /// instead.
    pub fn handle_status_block(&mut self, now: Instant, bytes: &[u8]) -> Result<bool, Violation> {
        self.status_block_input(now, bytes, false, None)
            .map(|outcome| outcome != BlockOutcome::NotWritten)
    }

    /// [`Client::handle_status_block`] for a driver that takes completions
    /// as they happen: when the block finishes its request (a read always;
    /// a write once the answers to its earlier fragments are in), the
    /// completion comes back here, straight from the block, and is not
    /// queued for [`Client::poll_event`] — the request's slot is free on
    /// return. A violation ends the connection exactly as
    /// `handle_status_block` does.
    pub fn take_status_block(
        &mut self,
        now: Instant,
        bytes: &[u8],
    ) -> Result<BlockOutcome, Violation> {
        self.status_block_input(now, bytes, true, None)
    }

    /// [`Client::take_status_block`] for `request`, a read of a batch
    /// whose immediate arrived ([`Client::batch_members`]): its block must
    /// be written by now, so one that is not ends the connection
    /// ([`Violation::MissingStatusBlock`]).
    pub fn take_batch_block(
        &mut self,
        now: Instant,
        request: RequestId,
        bytes: &[u8],
    ) -> Result<BlockOutcome, Violation> {
        self.status_block_input(now, bytes, true, Some(request))
    }

    /// A status block in `bytes`. `batch`: the read of a batch whose
    /// immediate arrived ([`Client::take_batch_block`]), whose block must
    /// be written by now. Checked here rather than on the result, so
    /// that the completion is not moved out and back in on its way.
    #[inline(always)]
    fn status_block_input(
        &mut self,
        now: Instant,
        bytes: &[u8],
        direct: bool,
        batch: Option<RequestId>,
    ) -> Result<BlockOutcome, Violation> {
        if self.state == State::Closed {
            return Ok(BlockOutcome::NotWritten);
        }
        let block = match StatusBlock::parse(bytes) {
            Ok(Some(block)) => block,
            Ok(None) => {
                return match batch {
                    Some(request) => Err(self.refuse(Violation::MissingStatusBlock(request.0))),
                    None => Ok(BlockOutcome::NotWritten),
                };
            }
            Err(e) => return Err(self.refuse(e.into())),
        };
        self.heard(now);
        // Whatever the block did, it answered a data request on an open
        // connection (checked): no internal message was sent or answered,
        // so only idleness can have changed ([`Client::rearm_idle_open`]),
        // since the block was heard (`last_heard`, which is `now`).
        match self.check_status_block(&block, batch.is_some(), direct) {
            Ok(Checked::Pending) => {
                self.rearm_idle_open(self.last_heard);
                Ok(BlockOutcome::Taken)
            }
            Ok(Checked::Finished) => {
                self.rearm_idle_open(self.last_heard);
                // A data request completes with the block's status and
                // bytes.
                Ok(BlockOutcome::Completed(ClientEvent::Completed {
                    request: RequestId(block.request_id),
                    status: block.status,
                    bytes: block.bytes,
                }))
            }
            Err(violation) => Err(self.refuse(violation)),
        }
    }

    /// A status block broke the protocol: the connection ends (as
    /// [`Client::after_input`] ends it); the violation, for the caller.
    /// Out of line, so that the path of a good block keeps its registers.
    #[cold]
    #[inline(never)]
    fn refuse(&mut self, violation: Violation) -> Violation {
        self.fail(violation);
        violation
    }

    #[inline(always)]
    pub(super) fn after_input(
        &mut self,
        now: Instant,
        result: Result<(), Violation>,
    ) -> Result<(), Violation> {
        match result {
            Ok(()) => {
                self.rearm(now);
                Ok(())
            }
            Err(violation) => {
                self.fail(violation);
                Err(violation)
            }
        }
    }

    pub(super) fn heard(&mut self, now: Instant) {
        self.last_heard = now;
    }

    pub(super) fn process(&mut self, msg: Message<'_>) -> Result<(), Violation> {
        let opcode = msg.opcode();
        if !opcode.sent_by_server() {
            return Err(Violation::WrongDirection(opcode));
        }
        trace!("client rx {:?} id {}", opcode, msg.request_id);
        if let Body::Terminate { reason } = msg.body {
            self.end(Violation::PeerTerminated(reason), None);
            return Ok(());
        }
        match (self.state, msg.body) {
            (State::Authenticating { auth_ok: false }, Body::AuthResponse { status }) => {
                self.expect_credits(&msg, 0)?;
                if status != Status::Success {
                    return Err(Violation::AuthFailed);
                }
                self.state = State::Authenticating { auth_ok: true };
                Ok(())
            }
            (
                State::Authenticating { auth_ok: true },
                Body::StatusResponse {
                    status,
                    credits,
                    keepalive_ms,
                },
            ) => {
                self.expect_credits(&msg, 1)?;
                if status != Status::Success {
                    return Err(Violation::PeerTerminated(status));
                }
                if credits == 0 || credits > self.config.max_credits {
                    return Err(Violation::CreditRange);
                }
                self.ledger.on_reply(1, 1)?;
                self.ledger = ClientLedger::new(credits, self.config.max_credits);
                if keepalive_ms > 0 {
                    self.keepalive_micros = micros(Duration::from_millis(u64::from(keepalive_ms)));
                }
                self.state = State::Open;
                self.timers.stop(TIMER_AUTH);
                self.authenticated = Some(credits);
                Ok(())
            }
            (State::Open, body) => self.open_message(&msg, body),
            _ => Err(Violation::UnexpectedMessage(opcode)),
        }
    }

    pub(super) fn expect_credits(&self, msg: &Message<'_>, expected: u16) -> Result<(), Violation> {
        if msg.credits == expected {
            Ok(())
        } else {
            Err(Violation::CreditMismatch {
                expected,
                found: msg.credits,
            })
        }
    }

    pub(super) fn open_message(
        &mut self,
        msg: &Message<'_>,
        body: Body<'_>,
    ) -> Result<(), Violation> {
        let opcode = msg.opcode();
        if let Body::CreditRequest { delta } = body {
            self.expect_credits(msg, 0)?;
            self.ledger.on_credit_request(delta)?;
            let counter = if delta > 0 {
                &mut self.stats.credits_granted
            } else {
                &mut self.stats.credits_revoked
            };
            ConnectionStats::add(counter, u64::from(delta.unsigned_abs()));
            return Ok(());
        }
        if let Body::CreditResponse = body {
            return self.ledger.on_credit_response(msg.credits);
        }
        let slot = self
            .find(msg.request_id)
            .ok_or(Violation::UnknownRequest(msg.request_id))?;
        let op = self
            .ops
            .get_mut(slot)
            .ok_or(Violation::UnknownRequest(msg.request_id))?;
        if op.stage != Stage::Sent || op.unanswered == 0 {
            return Err(Violation::UnknownRequest(msg.request_id));
        }
        if msg.credits != 1 {
            return Err(Violation::CreditMismatch {
                expected: 1,
                found: msg.credits,
            });
        }
        match (&op.kind, body) {
            (
                OpKind::Register { .. },
                Body::RegisterFileCompletion {
                    status,
                    handle,
                    size,
                },
            ) => {
                op.status = status;
                op.registered = (status == Status::Success).then_some(RemoteFile { handle, size });
                op.final_seen = true;
            }
            (OpKind::Close { .. } | OpKind::Cancel { .. }, Body::Completion { status, bytes }) => {
                op.status = status;
                op.bytes = bytes;
                op.final_seen = true;
            }
            (
                OpKind::Write { .. } | OpKind::WriteV { .. },
                Body::Completion {
                    status: Status::Success,
                    bytes,
                },
            ) => {
                // An intermediate fragment's answer: it returns that
                // fragment's credit and says how much arrived.
                if bytes > u64::from(op.sent) {
                    return Err(Violation::FragmentOutOfOrder);
                }
            }
            (OpKind::Interrupt, Body::InterruptResponse) => op.final_seen = true,
            (OpKind::Keepalive, Body::KeepaliveResponse) => {
                op.final_seen = true;
                ConnectionStats::add(&mut self.stats.keepalives_answered, 1);
            }
            _ => return Err(Violation::UnexpectedMessage(opcode)),
        }
        op.unanswered = op.unanswered.saturating_sub(1);
        self.ledger.on_reply(1, 1)?;
        self.settle(slot)
    }

    /// Apply a status block to the request its id names: the request now
    /// holding its final answer (queued for [`Client::poll_event`] once no
    /// fragment answer is outstanding); or, with `direct`, when that answer
    /// finishes the request, the request freed, its completion the
    /// block's, nothing stored on the way.
    #[inline(always)]
    pub(super) fn check_status_block(
        &mut self,
        block: &StatusBlock,
        batch: bool,
        direct: bool,
    ) -> Result<Checked, Violation> {
        let unknown = || unknown_request(block.request_id);
        if self.state != State::Open {
            return Err(unknown());
        }
        let slot = self.find(block.request_id).ok_or_else(unknown)?;
        let op = self.ops.get(slot).ok_or_else(unknown)?;
        // A read, the common case, is told apart first, with no look at
        // the other kinds (nor at whether it streams: reads never do).
        if let OpKind::Read { dest, .. } = &op.kind {
            let wanted = u64::from(dest.len());
            return self.apply_status_block(block, slot, wanted, false, batch, direct);
        }
        let segments = self.segments.get(slot).unwrap_or(&SegmentStore::EMPTY);
        let (wanted, streaming) = block_limits(&op.kind, segments, op.sent).ok_or_else(unknown)?;
        self.apply_status_block(block, slot, wanted, streaming, batch, direct)
    }

    /// [`Client::check_status_block`] for the data request in `slot`, which
    /// asked for `wanted` bytes and, with `streaming`, is a write with data
    /// still to send.
    #[inline(always)]
    fn apply_status_block(
        &mut self,
        block: &StatusBlock,
        slot: usize,
        wanted: u64,
        streaming: bool,
        batch: bool,
        direct: bool,
    ) -> Result<Checked, Violation> {
        let unknown = || unknown_request(block.request_id);
        let op = self.ops.get_mut(slot).ok_or_else(unknown)?;
        if op.stage != Stage::Sent || op.final_seen {
            return Err(unknown());
        }
        // An interrupt-mode read of a batch is notified by the batch's
        // immediate alone: a block of it taken any other way was named by
        // an immediate of its own, which the server never sends. (Batched
        // first: most reads are not.)
        if op.batched && op.interrupt && !batch {
            return Err(Violation::BatchMemberImmediate(block.request_id));
        }
        // The block returns the credits of the messages the server had not
        // answered; answers to earlier fragments may still be on their way.
        if block.credits > op.unanswered {
            return Err(Violation::CreditMismatch {
                expected: op.unanswered,
                found: block.credits,
            });
        }
        if block.bytes > wanted {
            return Err(Violation::BadDescriptor);
        }
        let unanswered = op.unanswered.saturating_sub(block.credits);
        if direct && unanswered == 0 {
            // Finished: reported at once from the block (a data request
            // completes with the block's status and bytes), so the
            // request's record is freed rather than written and read back.
            self.ledger.on_reply(block.credits, block.credits)?;
            if streaming {
                remove_from(&mut self.streaming, slot);
            }
            self.ops.remove(slot);
            return Ok(Checked::Finished);
        }
        op.unanswered = unanswered;
        op.final_seen = true;
        op.status = block.status;
        op.bytes = block.bytes;
        // A write the server completed early (cancelled, failed) stops
        // streaming; reads were never in the streaming queue.
        if streaming {
            op.stop_sending = true;
            remove_from(&mut self.streaming, slot);
        }
        self.ledger.on_reply(block.credits, block.credits)?;
        if unanswered == 0 {
            // Every answer is in: the request is reported through
            // `poll_event`, as [`Client::settle`] reports one (a data
            // request, never an internal one).
            op.stage = Stage::Done;
            self.done.push_back(slot).map_err(|_| Violation::Capacity)?;
        }
        Ok(Checked::Pending)
    }

    /// Report the op in `slot` once its final answer and every fragment
    /// answer arrived.
    #[inline(always)]
    pub(super) fn settle(&mut self, slot: usize) -> Result<(), Violation> {
        let Some(op) = self.ops.get_mut(slot) else {
            return Err(Violation::Internal);
        };
        if !op.final_seen || op.unanswered > 0 {
            return Ok(());
        }
        op.stage = Stage::Done;
        if op.kind.is_internal() {
            self.ops.take(slot);
            self.internal_in_flight = self.internal_in_flight.saturating_sub(1);
            return Ok(());
        }
        self.done.push_back(slot).map_err(|_| Violation::Capacity)
    }

    /// The next completion for the caller.
    #[inline(always)]
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        if let Some(credits) = self.authenticated.take() {
            return Some(ClientEvent::Authenticated { credits });
        }
        while let Some(slot) = self.done.pop_front() {
            if let Some(event) = self.report(slot) {
                return Some(event);
            }
            // A finished request vanished before it was reported.
            self.fail(Violation::Internal);
        }
        self.terminated
            .take()
            .map(|reason| ClientEvent::Terminated { reason })
    }

    /// Free the finished request in `slot`: its completion event.
    #[inline(always)]
    pub(super) fn report(&mut self, slot: usize) -> Option<ClientEvent> {
        let request = RequestId(self.ops.id(slot)?);
        let op = self.ops.take(slot)?;
        Some(match op.kind {
            OpKind::Register { .. } => ClientEvent::Registered {
                request,
                result: op.registered.ok_or(op.status),
            },
            OpKind::Interrupt if op.status == Status::Success => {
                ClientEvent::Interrupted { request }
            }
            _ => ClientEvent::Completed {
                request,
                status: op.status,
                bytes: op.bytes,
            },
        })
    }
}

/// For a data request other than a read (a read's is told apart first,
/// in [`Client::check_status_block`]): the most bytes its status block may
/// report (what it asked for) and whether it is a write with data still to
/// send (`sent` bytes of it went); `None` for a request that takes no
/// status block.
fn block_limits(kind: &OpKind, segments: &SegmentStore, sent: u32) -> Option<(u64, bool)> {
    match kind {
        OpKind::Read { dest, .. } => Some((u64::from(dest.len()), false)),
        OpKind::ReadV { .. } => Some((
            segments
                .get::<ReadSegment>()
                .iter()
                .map(|s| u64::from(s.dest().len()))
                .sum(),
            false,
        )),
        OpKind::WriteV { total, .. } => Some((
            segments
                .get::<WriteSegment>()
                .iter()
                .map(|s| u64::from(s.len()))
                .sum(),
            sent < *total,
        )),
        OpKind::Write { total, .. } => Some((u64::from(*total), sent < *total)),
        _ => None,
    }
}

/// [`Violation::UnknownRequest`]: built only where a block is refused, out
/// of line, not ahead of every check that might refuse it.
#[cold]
#[inline(never)]
fn unknown_request(id: u32) -> Violation {
    Violation::UnknownRequest(id)
}

/// What [`Client::check_status_block`] made of a block.
pub(super) enum Checked {
    /// Applied to its request, which now awaits the answers to earlier
    /// fragments, or is queued for [`Client::poll_event`].
    Pending,
    /// The request finished with it and is freed: its completion is the
    /// block's (a data request completes with the block's status and
    /// bytes).
    Finished,
}
