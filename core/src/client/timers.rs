//! Timers: the authentication deadline, the dead-peer deadline and the
//! keepalive (time is an argument; the core never reads a clock).

use super::*;

impl<const R: usize> Client<R> {
    /// The earliest deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.timers.next(),
            self.dead_deadline(),
            self.keepalive_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Run expired timers: authentication and dead-peer deadlines end the
    /// connection (`TimedOut`); an idle connection sends a keepalive.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due = |deadline: Option<Instant>| deadline.is_some_and(|at| at <= now);
        if self.timers.expired(TIMER_AUTH, now) || due(self.dead_deadline()) {
            self.fail(Violation::TimedOut);
            return;
        }
        if due(self.keepalive_deadline()) {
            self.idle_since = None;
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

    /// With messages outstanding, silence ends the connection; so does a
    /// keepalive, cancel or credit message left unanswered while other
    /// answers arrive: its answer was lost, and no caller's wait would
    /// notice.
    fn dead_deadline(&self) -> Option<Instant> {
        if self.state != State::Open || self.ledger.in_use() == 0 {
            return None;
        }
        let heard = self
            .internal_since
            .map_or(self.last_heard, |since| since.min(self.last_heard));
        Some(heard.saturating_add_micros(self.dead_micros))
    }

    /// With nothing outstanding, a keepalive is due an interval after the
    /// connection went idle.
    fn keepalive_deadline(&self) -> Option<Instant> {
        if self.state != State::Open || self.ledger.in_use() > 0 {
            return None;
        }
        self.idle_since
            .map(|since| since.saturating_add_micros(self.keepalive_micros))
    }

    /// [`Client::rearm`] after a data request was sent, or its status
    /// block taken, by a call that did nothing else: data requests are not
    /// internal messages, and every call that sends or answers one of
    /// those rearms in full, so the count of internal messages is still
    /// what the last `rearm` saw (`internal_seen`) and its deadline stands.
    /// Only idleness can have changed.
    #[inline(always)]
    pub(super) fn rearm_idle(&mut self, now: Instant) {
        if self.state != State::Open {
            return;
        }
        self.rearm_idle_open(now);
    }

    /// [`Client::rearm_idle`] for a caller that found the connection open
    /// in this very call (`read_into`'s and `write_into`'s send, a status
    /// block taken), with nothing since that could end it: the state is
    /// not looked at again.
    #[inline(always)]
    pub(super) fn rearm_idle_open(&mut self, now: Instant) {
        debug_assert!(self.state == State::Open);
        if self.ledger.in_use() > 0 {
            self.idle_since = None;
        } else if self.idle_since.is_none() {
            self.idle_since = Some(now);
        }
    }

    /// Note what the deadlines run from after every input and send: when
    /// the oldest unanswered internal message was sent, and since when the
    /// connection is idle. (`last_heard` is kept by every input.)
    #[inline(always)]
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
        self.rearm_idle(now);
    }
}
