//! The reads of a batch handed to the driver outside the request table,
//! each kept where it was written when the batch arrived until the driver
//! completes it (or another call parks it in the table).
//!
//! A read is written once, when its batch is taken, and read in place from
//! then on: handing out the next read is a cursor step, not a copy out of
//! a queue into a place of its own. (A Read arriving alone keeps its own
//! place, [`super::Connection`]'s `direct`.)

use super::DirectRead;
use crate::wire::MAX_BATCH;

/// The reads of the batch taken last: `reads[..taken]` handed to the
/// driver, the last of them outstanding while `live`; `reads[taken..]`
/// not handed out yet. Two are equal (and hash alike) when the same read
/// is outstanding and the same are left to hand out: what was handed out
/// and answered before does not count.
#[derive(Clone, Debug)]
pub(super) struct Handing {
    reads: heapless::Vec<DirectRead, MAX_BATCH>,
    taken: usize,
    live: bool,
}

impl Handing {
    pub(super) const fn new() -> Self {
        Self {
            reads: heapless::Vec::new(),
            taken: 0,
            live: false,
        }
    }

    /// Start over for a new batch: nothing outstanding, nothing left to
    /// hand out (both parked or completed before).
    #[inline(always)]
    pub(super) fn start(&mut self) {
        self.reads.clear();
        self.taken = 0;
        self.live = false;
    }

    /// Queue `read` to be handed out; `Err` once [`MAX_BATCH`] are queued.
    #[inline(always)]
    pub(super) fn push(&mut self, read: DirectRead) -> Result<(), DirectRead> {
        self.reads.push(read)
    }

    /// Hand out the next read: it is outstanding from now on. The caller
    /// parks the outstanding one first.
    #[inline(always)]
    pub(super) fn next(&mut self) -> Option<&DirectRead> {
        let read = self.reads.get(self.taken)?;
        // Below `reads.len()` <= MAX_BATCH: no wrap.
        self.taken = self.taken.wrapping_add(1);
        self.live = true;
        Some(read)
    }

    /// Whether a read is outstanding or left to hand out.
    #[inline(always)]
    pub(super) fn is_active(&self) -> bool {
        self.live || self.has_untaken()
    }

    /// The outstanding read, if any.
    #[inline(always)]
    fn outstanding(&self) -> Option<&DirectRead> {
        if !self.live {
            return None;
        }
        self.reads.get(self.taken.checked_sub(1)?)
    }

    /// What `finish` makes of the outstanding read, if it is request `id`
    /// (read where it is): no longer outstanding.
    #[inline(always)]
    pub(super) fn take_if<T>(
        &mut self,
        id: u32,
        finish: impl FnOnce(&DirectRead) -> T,
    ) -> Option<T> {
        let done = finish(self.outstanding().filter(|read| read.id == id)?);
        self.live = false;
        Some(done)
    }

    /// The outstanding read, if any: no longer outstanding.
    pub(super) fn take(&mut self) -> Option<DirectRead> {
        let read = *self.outstanding()?;
        self.live = false;
        Some(read)
    }

    /// The last read not handed out yet, removed.
    pub(super) fn pop_untaken(&mut self) -> Option<DirectRead> {
        if self.has_untaken() {
            self.reads.pop()
        } else {
            None
        }
    }

    /// Whether reads are left to hand out.
    #[inline(always)]
    pub(super) fn has_untaken(&self) -> bool {
        self.reads.len() > self.taken
    }

    /// Reads handed over and not answered: the outstanding one and those
    /// not handed out yet.
    pub(super) fn len(&self) -> usize {
        self.reads
            .len()
            .saturating_sub(self.taken)
            .saturating_add(usize::from(self.outstanding().is_some()))
    }

    /// Forget the reads not handed out yet (the connection ended).
    pub(super) fn drop_untaken(&mut self) {
        self.reads.truncate(self.taken);
    }

    /// The reads not handed out yet.
    fn untaken(&self) -> &[DirectRead] {
        self.reads.get(self.taken..).unwrap_or(&[])
    }
}

impl PartialEq for Handing {
    fn eq(&self, other: &Self) -> bool {
        self.outstanding() == other.outstanding() && self.untaken() == other.untaken()
    }
}

impl Eq for Handing {}

impl core::hash::Hash for Handing {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.outstanding().hash(state);
        self.untaken().hash(state);
    }
}
