//! Timers: the authentication deadline, the dead-peer deadline and the
//! keepalive (time is an argument; the core never reads a clock).

use super::*;

impl<const R: usize> Client<R> {
    /// The earliest deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Run expired timers: authentication and dead-peer deadlines end the
    /// connection (`TimedOut`); an idle connection sends a keepalive.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.timers.expired(TIMER_AUTH, now) || self.timers.expired(TIMER_DEAD, now) {
            self.fail(Violation::TimedOut);
            return;
        }
        if self.timers.expired(TIMER_KEEPALIVE, now) {
            self.timers.stop(TIMER_KEEPALIVE);
            if self.ops.is_empty()
                && self
                    .submit(
                        OpKind::Keepalive,
                        BufferDescriptor::default(),
                        CompletionMode::Interrupt,
                    )
                    .is_ok()
            {
                ConnectionStats::add(&mut self.stats.keepalives, 1);
            }
            self.rearm(now);
        }
    }

    pub(super) fn rearm(&mut self, now: Instant) {
        if self.state != State::Open {
            return;
        }
        let internal = self
            .internal_in_flight
            .saturating_add(self.ledger.responses_awaited());
        if internal == 0 {
            self.internal_since = None;
        } else if self.internal_since.is_none() || internal < self.internal_seen {
            self.internal_since = Some(now);
        }
        self.internal_seen = internal;
        if self.ledger.in_use() > 0 {
            // Silence ends the connection; so does a keepalive, cancel or
            // credit message left unanswered while other answers arrive:
            // its answer was lost, and no caller's wait would notice.
            let heard = self
                .internal_since
                .map_or(self.last_heard, |since| since.min(self.last_heard));
            self.timers.set(
                TIMER_DEAD,
                heard.saturating_add_micros(self.dead_micros),
            );
            self.timers.stop(TIMER_KEEPALIVE);
        } else {
            self.timers.stop(TIMER_DEAD);
            if self.timers.get(TIMER_KEEPALIVE).is_none() {
                self.timers
                    .set(TIMER_KEEPALIVE, now.saturating_add_micros(self.keepalive_micros));
            }
        }
    }
}
