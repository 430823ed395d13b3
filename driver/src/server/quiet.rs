//! Unsignaled data writes (selective signaling): the reads of a batch are
//! answered with RDMA writes whose success has no completion
//! ([`Transport::post_write_tail_unsignaled`]), all but the last, whose
//! status block carries the batch's immediate and is signaled. Work
//! requests of one connection complete in posting order, so the completion
//! of a signaled request posted after an unsignaled one says that one is
//! done too: a batch of 16 reads costs one send completion to drain and
//! dispatch instead of 16, as RDMA storage servers signal only the last
//! work request of a chain (`docs/PERFORMANCE.md`, "Stop 43").
//!
//! The bookkeeping is counts, not a list: how many unsignaled writes are
//! in flight, and how many were posted since the last *covering* request.
//! The first signaled request posted after one or more of them covers
//! them: its work-request id carries [`COVERS`], and how many it covers is
//! queued. Signaled completions arrive in posting order, so the completion
//! of a covering request takes the front count: that many send-queue places
//! are free again. A mapping is not released while any unsignaled write is
//! in flight (whichever mapping it came from), so a write never outlives
//! the memory it reads. A request posted without [`Quiet::cover`] only
//! delays that until the next covering one; what must never happen is that
//! no covering request follows, which the server rules out: an unsignaled
//! write is only ever a batch's read that is not its last (whose block,
//! with the immediate, is posted signaled, however it goes), and
//! [`Quiet::may_post`] leaves half the send queue for signaled requests.

use rdio_transport::WrId;
use std::collections::VecDeque;

/// The bit of a work-request id that says its completion covers the
/// unsignaled writes posted before it (below the tag byte of
/// [`crate::buffers::Work`] ids, above their index fields).
pub(super) const COVERS: WrId = 1 << 55;

/// Most unsignaled writes one signaled request covers: a batch's reads
/// (`MAX_BATCH`, 16) but its last.
const MAX_UNCOVERED: usize = 15;

/// Unsignaled writes posted and not known complete yet.
#[derive(Debug)]
pub(super) struct Quiet {
    /// The transport takes unsignaled writes (until it says otherwise).
    enabled: bool,
    /// Unsignaled writes not known complete.
    in_flight: usize,
    /// Unsignaled writes posted since the last covering request.
    uncovered: usize,
    /// For each covering request not completed yet, in posting order: how
    /// many unsignaled writes its completion says are done.
    covers: VecDeque<usize>,
}

impl Quiet {
    /// For a connection whose send queue holds `send_queue` requests (each
    /// covering request takes a place until it completes): no allocation
    /// afterwards.
    pub(super) fn new(send_queue: usize) -> Self {
        Self {
            enabled: true,
            in_flight: 0,
            uncovered: 0,
            covers: VecDeque::with_capacity(send_queue),
        }
    }

    /// Whether the next data write may go unsignaled, with `sends_posted`
    /// of the send queue's `send_queue` places taken: while the transport
    /// takes them, at most [`MAX_UNCOVERED`] in a row, and with at least
    /// half the queue free, so a covering request always finds a place.
    #[inline(always)]
    pub(super) fn may_post(&self, sends_posted: usize, send_queue: usize) -> bool {
        self.enabled && self.uncovered < MAX_UNCOVERED && sends_posted < send_queue / 2
    }

    /// The transport refused an unsignaled write as unsupported: every
    /// write is signaled from now on.
    pub(super) fn disable(&mut self) {
        self.enabled = false;
    }

    /// An unsignaled write was posted.
    #[inline(always)]
    pub(super) fn posted(&mut self) {
        self.in_flight += 1;
        self.uncovered += 1;
    }

    /// The id to post a signaled request `id` with: marked [`COVERS`] when
    /// unsignaled writes were posted since the last covering one (which
    /// this one now covers).
    #[inline(always)]
    pub(super) fn cover(&mut self, id: WrId) -> WrId {
        if self.uncovered == 0 {
            return id;
        }
        self.covers.push_back(self.uncovered);
        self.uncovered = 0;
        id | COVERS
    }

    /// Request `id`, just given by [`Quiet::cover`], was not posted after
    /// all (the transport refused that kind of request, and the caller
    /// posts another): what it was to cover is uncovered again, for the
    /// request posted instead. Every other failed post ends the
    /// connection, and with it this bookkeeping. (Once per connection at
    /// most: out of line.)
    #[cold]
    #[inline(never)]
    pub(super) fn uncover(&mut self, id: WrId) {
        if id & COVERS != 0 {
            if let Some(count) = self.covers.pop_back() {
                self.uncovered += count;
            }
        }
    }

    /// A covering request completed: how many unsignaled writes it covers,
    /// now known complete; `None` when no covering request is outstanding
    /// or it covers more than are in flight (a broken invariant).
    pub(super) fn covered(&mut self) -> Option<usize> {
        let count = self.covers.pop_front()?;
        self.in_flight = self.in_flight.checked_sub(count)?;
        Some(count)
    }

    /// Whether no unsignaled write is in flight.
    #[inline(always)]
    pub(super) fn idle(&self) -> bool {
        self.in_flight == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_covering_request_takes_the_writes_posted_before_it() {
        let mut quiet = Quiet::new(64);
        assert_eq!(quiet.cover(7), 7, "nothing to cover");
        quiet.posted();
        quiet.posted();
        assert_eq!(quiet.cover(8), 8 | COVERS);
        quiet.posted();
        assert_eq!(quiet.cover(9), 9 | COVERS);
        assert_eq!(quiet.cover(10), 10, "covered already");
        assert!(!quiet.idle());
        assert_eq!(quiet.covered(), Some(2));
        assert!(!quiet.idle());
        assert_eq!(quiet.covered(), Some(1));
        assert!(quiet.idle());
        assert_eq!(quiet.covered(), None, "nothing left to cover");
    }

    #[test]
    fn a_covering_request_not_posted_leaves_its_writes_to_the_next() {
        let mut quiet = Quiet::new(64);
        quiet.posted();
        quiet.posted();
        let refused = quiet.cover(8);
        assert_eq!(refused, 8 | COVERS);
        quiet.uncover(refused);
        quiet.uncover(9);
        assert_eq!(quiet.cover(10), 10 | COVERS, "the next request covers them");
        assert_eq!(quiet.covered(), Some(2));
        assert!(quiet.idle());
        assert_eq!(quiet.covered(), None);
    }

    #[test]
    fn at_most_fifteen_in_a_row_and_half_the_queue() {
        let mut quiet = Quiet::new(64);
        assert!(quiet.may_post(31, 64));
        assert!(
            !quiet.may_post(32, 64),
            "half the queue stays for signaled requests"
        );
        for _ in 0..MAX_UNCOVERED {
            assert!(quiet.may_post(0, 64));
            quiet.posted();
        }
        assert!(!quiet.may_post(0, 64), "the 16th in a row is signaled");
        let _ = quiet.cover(1);
        assert!(quiet.may_post(0, 64));
        quiet.disable();
        assert!(!quiet.may_post(0, 64));
    }
}
