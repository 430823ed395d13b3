//! Transmit: the next send to post, drained by the driver through
//! [`Client::poll_transmit`](super::Client::poll_transmit). Credit answers
//! (claim 7) go first, then requests and write fragments in submission
//! order while credits allow (claims 1, 22: every client message states the
//! credits it leaves the client with). Write data is named, never copied.

use super::*;

impl<const R: usize> Client<R> {
    /// Encode the next send into `buf` (at least the negotiated send size
    /// is always enough). `Ok(None)`: nothing can be sent now (nothing
    /// queued, or waiting for credits).
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<Option<Transmit>, InsufficientSize> {
        if self.terminate.is_some() {
            return self.poll_terminate(buf);
        }
        match self.state {
            State::Closed => return Ok(None),
            State::Authenticating { .. } => {
                if !self.auth_queued {
                    return Ok(None);
                }
                let msg = Message {
                    flags: Flags::empty(),
                    credits: self.ledger.level(),
                    demand: 0,
                    request_id: 0,
                    body: Body::AuthRequest {
                        key: self.negotiated.auth_key,
                    },
                };
                let len = msg.emit(buf)?;
                self.auth_queued = false;
                let _ = self.ledger.send_request();
                return Ok(Some(Transmit { len, data: None }));
            }
            State::Open => {}
        }
        let transmit = self.credit_transmit(buf)?;
        let transmit = match transmit {
            Some(t) => Some(t),
            None => self.request_transmit(buf)?,
        };
        if transmit.is_some() {
            self.rearm(now);
        }
        Ok(transmit)
    }

    pub(super) fn credit_transmit(
        &mut self,
        buf: &mut [u8],
    ) -> Result<Option<Transmit>, InsufficientSize> {
        // As a rule nothing is owed: one test for both kinds.
        if self.ledger.owes_nothing() {
            return Ok(None);
        }
        if let Some(delta) = self.ledger.ack_owed() {
            let msg = Message {
                flags: Flags::empty(),
                credits: 0,
                demand: 0,
                request_id: 0,
                body: Body::CreditAck { delta },
            };
            check_room(msg.encoded_len(), buf)?;
            if let Some((delta, credits)) = self.ledger.send_ack() {
                let msg = Message {
                    credits,
                    demand: 0,
                    body: Body::CreditAck { delta },
                    ..msg
                };
                return Ok(Some(Transmit {
                    len: msg.emit(buf)?,
                    data: None,
                }));
            }
        }
        if self.ledger.give_ups_owed() > 0 {
            let msg = Message {
                flags: Flags::empty(),
                credits: 0,
                demand: 0,
                request_id: 0,
                body: Body::CreditGiveUp,
            };
            check_room(msg.encoded_len(), buf)?;
            if let Some(credits) = self.ledger.send_give_up() {
                return Ok(Some(Transmit {
                    len: Message { credits, ..msg }.emit(buf)?,
                    data: None,
                }));
            }
        }
        Ok(None)
    }

    #[inline(always)]
    pub(super) fn request_transmit(
        &mut self,
        buf: &mut [u8],
    ) -> Result<Option<Transmit>, InsufficientSize> {
        // Fragments of writes under way before new requests: a started write
        // finishes as soon as possible and releases its buffers.
        let (slot, continuing) = match (self.streaming.front(), self.unsent.front()) {
            (Some(&slot), _) => (slot, true),
            (None, Some(&slot)) => (slot, false),
            (None, None) => return Ok(None),
        };
        if self.ledger.available() == 0 {
            let id = self.ops.id(slot).unwrap_or(0);
            self.stats.credit_wait(id);
            return Ok(None);
        }
        let (Some(op), Some(id)) = (self.ops.get(slot), self.ops.id(slot)) else {
            // A queue entry outlived its request: the bookkeeping is
            // broken, and so is the connection (loudly, not a stall).
            return self.internal_failure(buf);
        };
        if op.stage == Stage::Done || (op.stage == Stage::Sent) != continuing {
            return self.internal_failure(buf);
        }
        let max_send = self.negotiated.max_send_size as usize;
        let level = self.ledger.level();
        // This request is still in `unsent` or `streaming`: counted there.
        let demand = self.demand(0);
        // A read larger than `max_batched_read` goes alone at once, without
        // the batch's pass over `unsent`.
        if !continuing
            && matches!(op.kind, OpKind::Read { dest, .. }
                if dest.len() <= self.config.max_batched_read)
            && self.unsent.len() > 1
            && self
                .negotiated
                .capabilities
                .contains(Capabilities::READ_BATCH)
        {
            if let Some(transmit) = self.batch_transmit(buf, max_send)? {
                return Ok(Some(transmit));
            }
        }
        let Some(op) = self.ops.get(slot) else {
            return self.internal_failure(buf);
        };
        // Only the prefix is encoded into `buf`; the data is gathered by the
        // driver, so the fragment size depends on the send size alone.
        let (len, data_len) = match op.kind {
            // The I/O path's most frequent request, encoded straight from
            // the op (the same bytes `build` + `emit_prefix` would give).
            OpKind::Read {
                handle,
                offset,
                dest,
            } => {
                let flags = interrupt_flags(op.interrupt);
                let read = ReadRequest {
                    handle,
                    offset,
                    dest,
                    status: op.status_desc,
                };
                (emit_read(buf, flags, level, demand, id, &read)?, 0)
            }
            _ => {
                let segments = self.segments.get(slot).unwrap_or(&SegmentStore::EMPTY);
                let (mut msg, data_len) = build(op, id, segments, level, max_send);
                msg.demand = demand;
                // Checks the room before writing anything.
                let len = msg.emit_prefix(buf)?;
                add_payload_len(buf, data_len);
                (len, data_len)
            }
        };
        let _ = self.ledger.send_request();
        let Some(op) = self.ops.get_mut(slot) else {
            return self.internal_failure(buf);
        };
        let data = (data_len > 0).then_some(DataRef {
            request: RequestId(id),
            offset: op.sent,
            len: data_len,
        });
        op.sent = op.sent.saturating_add(data_len);
        op.unanswered = op.unanswered.saturating_add(1);
        if op.kind.is_internal() && op.stage == Stage::Queued {
            self.internal_in_flight = self.internal_in_flight.saturating_add(1);
        }
        op.stage = Stage::Sent;
        let more = op.kind.write_total().is_some_and(|total| op.sent < total);
        if continuing {
            if !more {
                self.streaming.pop_front();
            }
        } else {
            self.unsent.pop_front();
            if more {
                // Capacity R holds every op: cannot fail.
                let _ = self.streaming.push_back(slot);
            }
        }
        Ok(Some(Transmit { len, data }))
    }

    /// The demand a request header carries
    /// ([`Capabilities::CREDIT_DEMAND`]; zero without it): the credits the
    /// client could use now — those in use, `sending` more about to be,
    /// and a credit for each request waiting in `unsent` or `streaming`.
    fn demand(&self, sending: u16) -> u16 {
        let waiting = self.unsent.len().saturating_add(self.streaming.len());
        let demand = u16::try_from(waiting)
            .unwrap_or(u16::MAX)
            .saturating_add(self.ledger.in_use())
            .saturating_add(sending);
        demand & self.demand_mask
    }

    /// The reads at the front of `unsent`, two or more of them in the same
    /// completion mode and none larger than
    /// [`ClientConfig::max_batched_read`], as one `ReadBatch` (the
    /// read-batch extension): as many as credits, the send size and
    /// [`MAX_BATCH`] allow, a credit each. `Ok(None)`: fewer than two can
    /// go together (the front read goes alone).
    fn batch_transmit(
        &mut self,
        buf: &mut [u8],
        max_send: usize,
    ) -> Result<Option<Transmit>, InsufficientSize> {
        use crate::wire::BatchRead;
        use crate::wire::message::{READ_BATCH_HEAD_LEN, emit_read_batch_head};
        use zerocopy::IntoBytes;
        let bound = max_send.min(buf.len());
        let room = bound
            .saturating_sub(READ_BATCH_HEAD_LEN)
            .checked_div(size_of::<BatchRead>())
            .unwrap_or(0);
        let limit = MAX_BATCH
            .min(usize::from(self.ledger.available()))
            .min(room);
        if limit < 2 {
            return Ok(None);
        }
        // One pass: each read is taken off `unsent` (one pop, not a look at
        // the front and a pop: a read that cannot join goes back, the
        // rare case), written straight to its place after the head and
        // marked sent; the head
        // goes last, once the count is known. Fewer than two: the one taken
        // goes back as it was, nothing goes, and the caller's single Read
        // overwrites the buffer.
        let mut places = buf
            .get_mut(READ_BATCH_HEAD_LEN..bound)
            .unwrap_or_default()
            .chunks_exact_mut(size_of::<BatchRead>());
        let mut members = BatchMembers::new();
        let mut interrupt = None;
        let mut lead = None;
        let max_read = self.config.max_batched_read;
        while members.len() < limit {
            let Some(slot) = self.unsent.pop_front() else {
                break;
            };
            let taken = 'take: {
                let (Some(id), Some(op)) = (self.ops.id(slot), self.ops.get_mut(slot)) else {
                    break 'take None;
                };
                let OpKind::Read {
                    handle,
                    offset,
                    dest,
                } = op.kind
                else {
                    break 'take None;
                };
                if op.stage != Stage::Queued
                    || *interrupt.get_or_insert(op.interrupt) != op.interrupt
                {
                    break 'take None;
                }
                let Some(place) = places.next() else {
                    break 'take None;
                };
                if dest.len() > max_read
                    || BatchRead::new(id, handle, offset, dest, op.status_desc)
                        .write_to(place)
                        .is_err()
                    || members.push(RequestId(id)).is_err()
                {
                    break 'take None;
                }
                op.stage = Stage::Sent;
                op.unanswered = 1;
                op.batched = true;
                Some(id)
            };
            let Some(id) = taken else {
                // Not a member: back to the front of `unsent`, in the room
                // it just left.
                if self.unsent.push_front(slot).is_err() {
                    return self.internal_failure(buf);
                }
                break;
            };
            lead.get_or_insert((slot, id));
        }
        let Some((lead, batch)) = lead else {
            return Ok(None);
        };
        if members.len() < 2 {
            // The front read alone: back to the front of `unsent`, queued.
            if let Some(op) = self.ops.get_mut(lead) {
                op.stage = Stage::Queued;
                op.unanswered = 0;
                op.batched = false;
            }
            // It was just taken from there: the room is free.
            if self.unsent.push_front(lead).is_err() {
                return self.internal_failure(buf);
            }
            return Ok(None);
        }
        // At most MAX_BATCH (`members`' capacity); the head fits where
        // two reads after it did. Either failing, the reads just marked
        // sent would never go: the bookkeeping is broken.
        let Ok(count) = u16::try_from(members.len()) else {
            return self.internal_failure(buf);
        };
        let flags = interrupt_flags(interrupt.unwrap_or(false));
        // The batch's reads are off `unsent` already.
        let demand = self.demand(count);
        let Ok(head) = emit_read_batch_head(buf, flags, self.ledger.level(), demand, batch, count)
        else {
            return self.internal_failure(buf);
        };
        let len = head.saturating_add(usize::from(count).saturating_mul(size_of::<BatchRead>()));
        if self.ledger.send_requests(count).is_none() {
            // `limit` kept within the credits available.
            return self.internal_failure(buf);
        }
        let Some(record) = self.batches.get_mut(lead) else {
            return self.internal_failure(buf);
        };
        *record = BatchRecord { id: batch, members };
        self.stats.read_batches = self.stats.read_batches.saturating_add(1);
        Ok(Some(Transmit { len, data: None }))
    }

    /// The client's own bookkeeping disagrees with itself: end the
    /// connection ([`Violation::Internal`]) and send the `Terminate` that
    /// tells the server, so the driver sees the failure at once (the
    /// requests complete, then [`ClientEvent::Terminated`]) instead of a
    /// connection that silently stops sending.
    #[cold]
    pub(super) fn internal_failure(
        &mut self,
        buf: &mut [u8],
    ) -> Result<Option<Transmit>, InsufficientSize> {
        self.fail(Violation::Internal);
        self.poll_terminate(buf)
    }

    /// The queued `Terminate`, if any.
    pub(super) fn poll_terminate(
        &mut self,
        buf: &mut [u8],
    ) -> Result<Option<Transmit>, InsufficientSize> {
        let Some(status) = self.terminate else {
            return Ok(None);
        };
        let msg = Message {
            flags: Flags::empty(),
            credits: 0,
            demand: 0,
            request_id: 0,
            body: Body::Terminate { reason: status },
        };
        let len = msg.emit(buf)?;
        self.terminate = None;
        Ok(Some(Transmit { len, data: None }))
    }
}

/// The message for the next send of `op` (its request, or its next write
/// fragment) and how many data bytes ride after the prefix.
pub(super) fn build<'a>(
    op: &'a Op,
    id: u32,
    segments: &'a SegmentStore,
    credits: u16,
    max_send: usize,
) -> (Message<'a>, u32) {
    let flags = interrupt_flags(op.interrupt && op.kind.is_data());
    let mut msg = Message {
        flags,
        credits,
        demand: 0,
        request_id: id,
        body: Body::Keepalive,
    };
    let room = |prefix: usize, remaining: u32| -> u32 {
        let room = u32::try_from(max_send.saturating_sub(prefix)).unwrap_or(u32::MAX);
        remaining.min(room)
    };
    if op.sent > 0 {
        // A continuation fragment.
        msg.flags = Flags::empty();
        msg.body = Body::WriteData {
            data_offset: op.sent,
            data: &[],
        };
        let remaining = op.kind.write_total().unwrap_or(0).saturating_sub(op.sent);
        let data_len = room(msg.prefix_len(), remaining);
        return (msg, data_len);
    }
    let status = op.status_desc;
    msg.body = match &op.kind {
        OpKind::Register { key } => Body::RegisterFile { key: *key },
        OpKind::Read {
            handle,
            offset,
            dest,
        } => Body::Read(ReadRequest {
            handle: *handle,
            offset: *offset,
            dest: *dest,
            status,
        }),
        OpKind::ReadV { handle } => Body::ReadV(ReadVRequest {
            handle: *handle,
            status,
            segments: segments.get(),
        }),
        OpKind::Write {
            handle,
            offset,
            total,
        } => Body::Write(WriteRequest {
            handle: *handle,
            offset: *offset,
            total_len: *total,
            status,
            data: &[],
        }),
        OpKind::WriteV {
            handle,
            collapse,
            total,
        } => {
            if *collapse {
                msg.flags |= Flags::COLLAPSE;
            }
            Body::WriteV(WriteVRequest {
                handle: *handle,
                total_len: *total,
                status,
                segments: segments.get(),
                data: &[],
            })
        }
        OpKind::Cancel { target } => Body::Cancel { target: *target },
        OpKind::Close { handle } => Body::Close { handle: *handle },
        OpKind::Interrupt => Body::InterruptRequest,
        OpKind::Keepalive => Body::Keepalive,
    };
    let data_len = op
        .kind
        .write_total()
        .map_or(0, |total| room(msg.prefix_len(), total));
    (msg, data_len)
}

/// The prefix was encoded with empty data; count the data that the driver
/// gathers after it in the header's payload length (bytes 12..16, LE).
pub(super) fn add_payload_len(buf: &mut [u8], data_len: u32) {
    if let Some(field) = buf.get_mut(12..16) {
        let mut le = [0u8; 4];
        le.copy_from_slice(field);
        let len = u32::from_le_bytes(le).saturating_add(data_len);
        field.copy_from_slice(&len.to_le_bytes());
    }
}

/// Header + fixed payload + `count` segments of `segment` bytes.
pub(super) fn prefix_size(fixed: usize, segment: usize, count: usize) -> usize {
    crate::wire::header::HEADER_LEN
        .saturating_add(fixed)
        .saturating_add(segment.saturating_mul(count))
}

pub(super) fn check_room(required: usize, buf: &[u8]) -> Result<(), InsufficientSize> {
    if buf.len() < required {
        Err(InsufficientSize { required })
    } else {
        Ok(())
    }
}
