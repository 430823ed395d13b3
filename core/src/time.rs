//! Time as an input: the core never reads a clock (STYLE §4, quinn-proto
//! `connection/timer.rs`). Callers pass an [`Instant`] — microseconds since an
//! epoch of their choosing — to every `handle_*` call; the state machines
//! answer `poll_timeout()` with the earliest deadline and expect
//! `handle_timeout(now)` once it has passed (calling it early or twice is
//! harmless).

use core::time::Duration;

/// A point in time: microseconds since an epoch the caller chooses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Instant(pub u64);

impl Instant {
    /// `micros` microseconds after the epoch.
    pub const fn from_micros(micros: u64) -> Self {
        Self(micros)
    }

    /// Microseconds since the epoch.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// `self + d`, saturating at the end of time.
    pub fn saturating_add(self, d: Duration) -> Self {
        self.saturating_add_micros(micros(d))
    }

    /// `self + micros` microseconds, saturating at the end of time: what
    /// the request path uses, with the durations of its timers converted
    /// once ([`micros`]), not per request.
    #[inline]
    pub(crate) fn saturating_add_micros(self, micros: u64) -> Self {
        Self(self.0.saturating_add(micros))
    }

    /// Time elapsed from `earlier` to `self` (zero if `earlier` is later).
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

/// `d` in whole microseconds, saturating (a timer's duration, converted once).
pub(crate) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A fixed table of optional deadlines indexed by a timer enum (`N` entries).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct TimerTable<const N: usize> {
    deadlines: [Option<Instant>; N],
}

impl<const N: usize> TimerTable<N> {
    pub(crate) const fn new() -> Self {
        Self {
            deadlines: [None; N],
        }
    }

    pub(crate) fn set(&mut self, timer: usize, at: Instant) {
        if let Some(slot) = self.deadlines.get_mut(timer) {
            *slot = Some(at);
        }
    }

    pub(crate) fn stop(&mut self, timer: usize) {
        if let Some(slot) = self.deadlines.get_mut(timer) {
            *slot = None;
        }
    }

    pub(crate) fn get(&self, timer: usize) -> Option<Instant> {
        self.deadlines.get(timer).copied().flatten()
    }

    /// Whether `timer` is set and due at `now`.
    pub(crate) fn expired(&self, timer: usize, now: Instant) -> bool {
        self.get(timer).is_some_and(|at| at <= now)
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    pub(crate) fn clear(&mut self) {
        self.deadlines = [None; N];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_tracks_earliest() {
        let mut t = TimerTable::<3>::new();
        assert_eq!(t.next(), None);
        t.set(0, Instant(50));
        t.set(2, Instant(10));
        assert_eq!(t.next(), Some(Instant(10)));
        assert!(t.expired(2, Instant(10)));
        assert!(!t.expired(0, Instant(10)));
        t.stop(2);
        assert_eq!(t.next(), Some(Instant(50)));
        t.set(7, Instant(1)); // out of range: ignored, no panic
        assert_eq!(t.next(), Some(Instant(50)));
    }

    #[test]
    fn instant_arithmetic_saturates() {
        assert_eq!(
            Instant(u64::MAX).saturating_add(Duration::from_secs(1)),
            Instant(u64::MAX)
        );
        assert_eq!(Instant(5).saturating_since(Instant(9)), Duration::ZERO);
        assert_eq!(
            Instant(9).saturating_since(Instant(5)),
            Duration::from_micros(4)
        );
    }
}
