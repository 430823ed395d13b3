//! Output: the events for the driver and the sends and status-block RDMA
//! writes to post, drained in that order until `None` (claims 16, 19, 20).

use super::*;

impl<const R: usize, const F: usize> Connection<R, F> {
    /// The next piece of work for the driver.
    pub fn poll_event(&mut self) -> Option<ServerEvent<'_>> {
        self.park();
        let index = loop {
            let (slot, id) = match self.pending.pop_front()? {
                Pending::Authenticate(key) => return Some(ServerEvent::Authenticate { key }),
                Pending::CloseFile(file) => return Some(ServerEvent::CloseFile { file }),
                Pending::Terminated(reason) => return Some(ServerEvent::Terminated { reason }),
                Pending::Op { slot, id } => (slot, id),
            };
            // Skip requests cancelled or closed while queued.
            let Some(op) = self.ops.get_mut(slot).filter(|op| op.id == id) else {
                continue;
            };
            if !op.cancelled && op.stage == Stage::Queued {
                op.stage = Stage::Dispatched;
                break slot;
            }
        };
        let op = self.ops.get(index)?;
        match &op.kind {
            OpKind::Register { key } => Some(ServerEvent::Register {
                op: OpId(op.id),
                key: *key,
            }),
            OpKind::Read { .. } => Some(ServerEvent::Read {
                op: OpId(op.id),
                file: op.file?,
                segments: self.segments.get(index)?.get::<ReadSegment>(),
            }),
            OpKind::Close { .. } => Some(ServerEvent::Close {
                op: OpId(op.id),
                file: op.file?,
            }),
            OpKind::Write { .. } => None,
        }
    }

    /// Encode the next send or status block into `buf`.
    ///
    /// Returns `Ok(None)` when nothing is queued and
    /// `Err(InsufficientSize)` (nothing dequeued) when `buf` is smaller than
    /// the negotiated send size needs.
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Result<Option<Transmit>, InsufficientSize> {
        self.park();
        if let Some(msg) = self.control.front() {
            let len = msg.emit(buf)?;
            self.control.pop_front();
            return Ok(Some(Transmit::Send { len }));
        }
        let Some(next) = self.outgoing.front() else {
            return Ok(None);
        };
        let transmit = match next {
            Outgoing::Message(msg) => Transmit::Send {
                len: msg.emit(buf)?,
            },
            Outgoing::Status {
                dest,
                immediate,
                block,
            } => Transmit::StatusBlock {
                len: block.emit(buf)?,
                dest: *dest,
                immediate: *immediate,
            },
        };
        self.outgoing.pop_front();
        Ok(Some(transmit))
    }
}
