//! Timers: the authentication deadline and the idle (keepalive) deadline;
//! time is an argument, the core never reads a clock.
//!
//! The authentication deadline lives in the fixed timer table. The idle
//! deadline is derived, as smoltcp's TCP socket derives its timeout from
//! the time it last heard the peer (`remote_last_ts + timeout` in
//! `timed_out` and `poll_at`): every message stores when it was heard
//! (one store on the request path, instead of an add, a saturation and two
//! stores into the table), and the deadline is computed only when asked
//! for. `handle_timeout` stays idempotent and `poll_timeout` still names
//! the earliest deadline.

use super::*;

impl<const R: usize, const F: usize> Connection<R, F> {
    /// The earliest deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.timers.next(), self.idle_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Run expired timers: authentication and idle deadlines end the
    /// connection with `TimedOut`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.park();
        let idle = self.idle_deadline().is_some_and(|at| at <= now);
        if self.timers.expired(TIMER_AUTH, now) || idle {
            self.fail(Violation::TimedOut);
        }
    }

    /// While open, the idle deadline: `idle_timeout` after the last
    /// message received (or the authentication).
    fn idle_deadline(&self) -> Option<Instant> {
        (self.state == State::Open).then(|| self.heard.saturating_add_micros(self.idle_micros))
    }
}
