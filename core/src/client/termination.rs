//! Termination: an orderly close, a failed transport or a protocol
//! violation end the connection; every outstanding request completes exactly
//! once with the reason's status, then the caller sees `Terminated`.

use super::*;

impl<const R: usize> Client<R> {
    /// End the connection in an orderly way (`Terminate(Shutdown)`);
    /// outstanding requests complete `Closed`.
    pub fn close_connection(&mut self) {
        if self.state != State::Closed {
            self.end(
                Violation::PeerTerminated(Status::Shutdown),
                Some(Status::Shutdown),
            );
        }
    }

    /// Tell the core the transport failed (a work completion error, a lost
    /// connection): outstanding requests complete with `Closed`.
    pub fn transport_failed(&mut self) {
        if self.state != State::Closed {
            self.end(Violation::PeerTerminated(Status::Closed), None);
        }
    }

    pub(super) fn fail(&mut self, violation: Violation) {
        if self.state != State::Closed {
            debug!("client terminates: {:?}", violation);
            let send = match violation {
                Violation::PeerTerminated(_) => None,
                v => Some(v.wire_status()),
            };
            self.end(violation, send);
        }
    }

    /// Close for good: every request not yet reported completes with the
    /// reason's status (exactly once), then `Terminated`.
    pub(super) fn end(&mut self, reason: Violation, send: Option<Status>) {
        self.state = State::Closed;
        self.timers.clear();
        self.idle_since = None;
        self.terminate = send;
        self.unsent.clear();
        self.streaming.clear();
        let status = match reason {
            Violation::PeerTerminated(Status::Shutdown) => Status::Closed,
            v => v.wire_status(),
        };
        self.ops.retain(|op| !op.kind.is_internal());
        self.done.clear();
        for (slot, op) in self.ops.iter_mut() {
            if op.stage != Stage::Done {
                op.stage = Stage::Done;
                op.status = status;
                op.registered = None;
            }
            // Capacity R holds every op.
            let _ = self.done.push_back(slot);
        }
        self.terminated = Some(reason);
    }
}
