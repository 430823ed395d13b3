//! Termination: an orderly close, a protocol violation or a lost transport
//! ends the connection; every op not yet reported completes exactly once.

use super::*;

impl<const R: usize, const F: usize> Connection<R, F> {
    /// End the connection in an orderly way (`Terminate(Shutdown)`).
    pub fn close_connection(&mut self) {
        self.close_connection_with(Status::Shutdown);
    }

    /// End the connection with `Terminate(status)`: the server's own
    /// reasons to let a client go, e.g. [`Status::IdleTimeout`] when the
    /// driver, which owns the clock, finds the connection idle for longer
    /// than its limit. The [`ServerEvent::Terminated`] that follows
    /// carries `PeerTerminated(status)`, the reason as the client sees it.
    /// Nothing happens on a connection already closed.
    pub fn close_connection_with(&mut self, status: Status) {
        self.park();
        if self.state != State::Closed {
            self.end(Violation::PeerTerminated(status), Some(status));
        }
    }

    /// Terminate because of `violation`: tell the peer, tell the driver.
    pub(super) fn fail(&mut self, violation: Violation) {
        if self.state != State::Closed {
            debug!("server terminates: {:?}", violation);
            self.end(violation, Some(violation.wire_status()));
        }
    }

    /// Close for good. Unsent replies are dropped (the peer will not read
    /// them); a pending auth response stays so a refused client learns why.
    /// Requests in the driver's hands complete nowhere: after
    /// [`ServerEvent::Terminated`] the driver releases every file it
    /// registered on this connection.
    pub(super) fn end(&mut self, reason: Violation, send: Option<Status>) {
        self.stir();
        self.state = State::Closed;
        self.timers.clear();
        self.heard = Instant::from_micros(0);
        self.outgoing.clear();
        self.ops.clear();
        self.batches.clear();
        self.handing.drop_untaken();
        self.interrupt_waiters.clear();
        self.pending.clear();
        self.handles.clear();
        self.closing_handles = 0;
        if let Some(status) = send {
            let terminate = Message {
                flags: Flags::empty(),
                credits: 0,
                demand: 0,
                request_id: 0,
                body: Body::Terminate { reason: status },
            };
            if self.control.is_full() {
                self.control.pop_back();
            }
            let _ = self.control.push_back(terminate);
        }
        // `pending` was just cleared: there is room.
        let _ = self.pending.push_back(Pending::Terminated(reason));
    }
}
