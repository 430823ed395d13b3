//! Timers: the authentication deadline and the idle (keepalive) deadline;
//! time is an argument, the core never reads a clock.

use super::*;

impl<const R: usize, const F: usize> Connection<R, F> {
    /// The earliest deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Run expired timers: authentication and idle deadlines end the
    /// connection with `TimedOut`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.park();
        if self.timers.expired(TIMER_AUTH, now) || self.timers.expired(TIMER_IDLE, now) {
            self.fail(Violation::TimedOut);
        }
    }
}
