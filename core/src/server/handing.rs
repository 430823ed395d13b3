//! The reads of a batch handed to the driver outside the request table,
//! each kept where it was written when the batch arrived until the driver
//! completes it (or another call parks it in the table).
//!
//! A read is written once, when its batch is taken, and read in place from
//! then on: handing out the next read is a cursor step, not a copy out of
//! a queue into a place of its own. It is kept as it came on the wire (a
//! [`BatchRead`], copied whole) with the file its handle resolved to; what
//! all reads of the batch share — the batch's id, whether it asked for an
//! interrupt, how many of its status blocks are still to go — is kept once.
//! (A Read arriving alone keeps its own place, [`super::Connection`]'s
//! `direct`.)

use super::{Batch, FileId, Op, OpKind, Stage};
use crate::error::Violation;
use crate::wire::{BatchRead, MAX_BATCH, ReadSegment};

/// A read of the batch: as it came, and the file it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct Handed {
    pub(super) read: BatchRead,
    pub(super) file: FileId,
}

impl Handed {
    /// Its request id.
    #[inline(always)]
    pub(super) fn id(&self) -> u32 {
        self.read.request_id()
    }

    /// Its one segment, where it is.
    #[inline(always)]
    pub(super) fn segment(&self) -> &ReadSegment {
        self.read.segment_ref()
    }
}

/// The reads of the batch taken last: `reads[..taken]` handed to the
/// driver, the last of them outstanding while `live`; `reads[taken..]`
/// not handed out yet. While `remaining` is not 0, the batch's status
/// blocks still to go are counted here, not in the connection's
/// `batches` (its reads parked in the request table count here too, until
/// the next batch is handed over and the count moves there:
/// [`Handing::retire`]). Two are equal (and hash alike) when the same read
/// is outstanding, the same are left to hand out and the same batch is
/// counted: what was handed out and answered before does not count.
#[derive(Clone, Debug)]
pub(super) struct Handing {
    reads: heapless::Vec<Handed, MAX_BATCH>,
    taken: usize,
    live: bool,
    /// The batch's id (the immediate of its last status block).
    batch: u32,
    /// Whether the batch asked for an interrupt (its every read did).
    interrupt: bool,
    /// The batch's status blocks still to go.
    remaining: u16,
}

impl Handing {
    pub(super) const fn new() -> Self {
        Self {
            reads: heapless::Vec::new(),
            taken: 0,
            live: false,
            batch: 0,
            interrupt: false,
            remaining: 0,
        }
    }

    /// Start over for batch `batch` of `count` reads: nothing outstanding,
    /// nothing left to hand out (both parked or completed before), and
    /// the count of the batch before retired ([`Handing::retire`]).
    #[inline(always)]
    pub(super) fn start(&mut self, batch: u32, interrupt: bool, count: u16) {
        self.reads.clear();
        self.taken = 0;
        self.live = false;
        self.batch = batch;
        self.interrupt = interrupt;
        self.remaining = count;
    }

    /// Whether the status blocks of a batch are counted here.
    #[inline(always)]
    pub(super) fn counting(&self) -> bool {
        self.remaining > 0
    }

    /// Whether batch `id`'s status blocks are counted here.
    #[inline(always)]
    pub(super) fn counts(&self, id: u32) -> bool {
        self.remaining > 0 && self.batch == id
    }

    /// The count of the batch counted here, to keep elsewhere from now on
    /// (the caller makes room for it): nothing is counted here after.
    pub(super) fn retire(&mut self) -> Option<Batch> {
        if self.remaining == 0 {
            return None;
        }
        let batch = Batch {
            id: self.batch,
            remaining: self.remaining,
        };
        self.remaining = 0;
        Some(batch)
    }

    /// One more status block of the batch counted here goes: whether it
    /// is the last. `Internal` when none is counted.
    #[inline(always)]
    pub(super) fn block(&mut self) -> Result<bool, Violation> {
        self.remaining = self.remaining.checked_sub(1).ok_or(Violation::Internal)?;
        Ok(self.remaining == 0)
    }

    /// Queue `read` of `file` to be handed out; `Err` once [`MAX_BATCH`]
    /// are queued.
    #[inline(always)]
    pub(super) fn push(&mut self, read: &BatchRead, file: FileId) -> Result<(), ()> {
        self.reads.push(Handed { read: *read, file }).map_err(drop)
    }

    /// Hand out the next read, and whether its batch asked for an
    /// interrupt: it is outstanding from now on. The caller parks the
    /// outstanding one first.
    #[inline(always)]
    pub(super) fn next(&mut self) -> Option<(&Handed, bool)> {
        let read = self.reads.get(self.taken)?;
        // Below `reads.len()` <= MAX_BATCH: no wrap.
        self.taken = self.taken.wrapping_add(1);
        self.live = true;
        Some((read, self.interrupt))
    }

    /// Whether a read is outstanding or left to hand out.
    #[inline(always)]
    pub(super) fn is_active(&self) -> bool {
        self.live || self.has_untaken()
    }

    /// The outstanding read, if any.
    #[inline(always)]
    fn outstanding(&self) -> Option<&Handed> {
        if !self.live {
            return None;
        }
        // `live` only after `next` took one: 0 wraps to an index `get`
        // refuses anyway.
        self.reads.get(self.taken.wrapping_sub(1))
    }

    /// What `finish` makes of the outstanding read, if it is request `id`
    /// (read where it is), given its batch's id and whether the batch
    /// asked for an interrupt: no longer outstanding.
    #[inline(always)]
    pub(super) fn take_if<T>(
        &mut self,
        id: u32,
        finish: impl FnOnce(&Handed, u32, bool) -> T,
    ) -> Option<T> {
        let done = finish(
            self.outstanding().filter(|read| read.id() == id)?,
            self.batch,
            self.interrupt,
        );
        self.live = false;
        Some(done)
    }

    /// The outstanding read, if any, as its entry in the request table
    /// (dispatched) and its segment: no longer outstanding.
    pub(super) fn take(&mut self) -> Option<(Op, ReadSegment)> {
        let parked = self.parked(self.outstanding()?, Stage::Dispatched);
        self.live = false;
        Some(parked)
    }

    /// The last read not handed out yet, removed, as its entry in the
    /// request table (queued) and its segment.
    pub(super) fn pop_untaken(&mut self) -> Option<(Op, ReadSegment)> {
        if !self.has_untaken() {
            return None;
        }
        let read = self.reads.pop()?;
        Some(self.parked(&read, Stage::Queued))
    }

    /// `read`'s entry in the request table, at `stage`, and its segment.
    fn parked(&self, read: &Handed, stage: Stage) -> (Op, ReadSegment) {
        let segment = *read.segment();
        let wanted = u64::from(segment.dest().len());
        let op = Op {
            file: Some(read.file),
            stage,
            batch: Some(self.batch),
            ..Op::new(
                read.id(),
                OpKind::Read { wanted },
                read.read.handle(),
                read.read.status(),
                self.interrupt,
            )
        };
        (op, segment)
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

    /// Forget the reads not handed out yet and the batch's count (the
    /// connection ended).
    pub(super) fn drop_untaken(&mut self) {
        self.reads.truncate(self.taken);
        self.remaining = 0;
    }

    /// The reads not handed out yet.
    fn untaken(&self) -> &[Handed] {
        self.reads.get(self.taken..).unwrap_or(&[])
    }

    /// The batch counted here, if any: its id, whether it asked for an
    /// interrupt and its blocks to go.
    fn counted(&self) -> Option<(u32, bool, u16)> {
        self.counting()
            .then_some((self.batch, self.interrupt, self.remaining))
    }
}

impl PartialEq for Handing {
    fn eq(&self, other: &Self) -> bool {
        self.outstanding() == other.outstanding()
            && self.untaken() == other.untaken()
            && self.counted() == other.counted()
    }
}

impl Eq for Handing {}

impl core::hash::Hash for Handing {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.outstanding().hash(state);
        self.untaken().hash(state);
        self.counted().hash(state);
    }
}
