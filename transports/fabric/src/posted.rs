//! Posted work requests: the operation contexts handed to libfabric and what
//! to report when each completes.
//!
//! libfabric identifies an operation by the `void *context` given at post
//! time. Providers with the `FI_CONTEXT`/`FI_CONTEXT2` mode use that memory
//! as scratch space, so contexts here are real `fi_context2` slots in a boxed
//! slice that never moves; the slot index finds the [`PostedOp`].

use std::ffi::c_void;

use rdio_transport::{RegionId, Slice, WcError, WrId};

use crate::sys;

/// Most scatter/gather elements one request may reference (the trait's
/// `Caps::max_sge` never exceeds this).
pub(crate) const MAX_SGE: usize = 8;

/// The regions a request references, released when it completes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SgeRegions {
    ids: [RegionId; MAX_SGE],
    len: usize,
}

impl SgeRegions {
    pub(crate) fn push(&mut self, id: RegionId) {
        self.ids[self.len] = id;
        self.len += 1;
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = RegionId> + '_ {
        self.ids[..self.len].iter().copied()
    }
}

impl Default for SgeRegions {
    fn default() -> Self {
        Self {
            ids: [RegionId(0); MAX_SGE],
            len: 0,
        }
    }
}

/// What a posted request is, for decoding its completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpKind {
    Send,
    Write,
    Recv,
}

/// Send queue or receive queue: each has its own depth limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Queue {
    Tx,
    Rx,
}

/// One posted libfabric operation.
#[derive(Debug)]
pub(crate) struct PostedOp {
    pub(crate) wr_id: WrId,
    pub(crate) kind: OpKind,
    pub(crate) queue: Queue,
    pub(crate) regions: SgeRegions,
    /// The other half of a two-operation request (an emulated
    /// write-with-immediate: a write, then a zero-byte send carrying the
    /// immediate). Only the half that finishes last is reported.
    pub(crate) partner: Option<usize>,
    /// An error the already finished partner half saw, reported with this one.
    pub(crate) carried: Option<WcError>,
    /// A receive's buffer: where a carried write-with-immediate's header
    /// and payload land (see `ImmMode::WriteThenSend` in the transport).
    pub(crate) recv_buf: Option<Slice>,
    /// The receive was posted into the transport's bounce slot of this
    /// op's index instead of `recv_buf` (a buffer too small for a carried
    /// write), and what arrives is copied on completion.
    pub(crate) bounced: bool,
}

/// A finished half-request: report it, or fold it into its partner.
pub(crate) enum Finished {
    Report(PostedOp),
    Folded(PostedOp),
}

pub(crate) struct PostedTable {
    /// Stable context storage handed to libfabric.
    contexts: Box<[sys::fi_context2]>,
    ops: Vec<Option<PostedOp>>,
    free: Vec<usize>,
    tx_outstanding: usize,
    rx_outstanding: usize,
    tx_limit: usize,
    rx_limit: usize,
}

impl PostedTable {
    pub(crate) fn new(tx_limit: usize, rx_limit: usize) -> Self {
        let slots = tx_limit + rx_limit;
        Self {
            contexts: (0..slots).map(|_| sys::fi_context2::default()).collect(),
            ops: (0..slots).map(|_| None).collect(),
            free: (0..slots).rev().collect(),
            tx_outstanding: 0,
            rx_outstanding: 0,
            tx_limit,
            rx_limit,
        }
    }

    /// Whether `count` more requests fit on `queue`.
    pub(crate) fn has_room(&self, queue: Queue, count: usize) -> bool {
        match queue {
            Queue::Tx => self.tx_outstanding + count <= self.tx_limit,
            Queue::Rx => self.rx_outstanding + count <= self.rx_limit,
        }
    }

    /// Reserve a slot for `op`; returns its index and the context pointer to
    /// post with. The caller checked `has_room`.
    pub(crate) fn insert(&mut self, op: PostedOp) -> (usize, *mut c_void) {
        let index = self.free.pop().expect("has_room checked before insert");
        match op.queue {
            Queue::Tx => self.tx_outstanding += 1,
            Queue::Rx => self.rx_outstanding += 1,
        }
        self.ops[index] = Some(op);
        (index, self.context(index))
    }

    /// The index the next `insert` will use.
    pub(crate) fn next_index(&self) -> Option<usize> {
        self.free.last().copied()
    }

    /// Number of slots (the largest index is one less).
    pub(crate) fn slots(&self) -> usize {
        self.contexts.len()
    }

    pub(crate) fn context(&mut self, index: usize) -> *mut c_void {
        std::ptr::from_mut(&mut self.contexts[index]).cast()
    }

    pub(crate) fn get_mut(&mut self, index: usize) -> Option<&mut PostedOp> {
        self.ops.get_mut(index).and_then(Option::as_mut)
    }

    /// Slot index of a context pointer libfabric returned, if it is ours.
    pub(crate) fn index_of(&self, context: *mut c_void) -> Option<usize> {
        let base = self.contexts.as_ptr() as usize;
        let offset = (context as usize).checked_sub(base)?;
        let size = size_of::<sys::fi_context2>();
        let index = offset / size;
        (offset % size == 0 && index < self.contexts.len()).then_some(index)
    }

    /// Remove the op in `index` (it completed, or was never posted).
    fn take(&mut self, index: usize) -> Option<PostedOp> {
        let op = self.ops.get_mut(index)?.take()?;
        match op.queue {
            Queue::Tx => self.tx_outstanding -= 1,
            Queue::Rx => self.rx_outstanding -= 1,
        }
        self.free.push(index);
        Some(op)
    }

    /// Undo an `insert` whose post failed.
    pub(crate) fn cancel(&mut self, index: usize) {
        let partner = self.take(index).and_then(|op| op.partner);
        if let Some(partner) = partner.and_then(|p| self.get_mut(p)) {
            partner.partner = None;
        }
    }

    /// The operation in `index` finished with `status`.
    pub(crate) fn finish(&mut self, index: usize, status: Result<(), WcError>) -> Option<Finished> {
        let mut op = self.take(index)?;
        let partner = op.partner.take().and_then(|p| self.get_mut(p));
        if let Some(partner) = partner {
            // The other half is still outstanding: it reports for both.
            partner.partner = None;
            if let Err(err) = status {
                partner.carried.get_or_insert(err);
            }
            return Some(Finished::Folded(op));
        }
        if let Err(err) = status {
            op.carried.get_or_insert(err);
        }
        Some(Finished::Report(op))
    }

    /// Indices of every outstanding operation (for flushing after disconnect).
    pub(crate) fn outstanding(&self) -> Vec<usize> {
        self.ops
            .iter()
            .enumerate()
            .filter_map(|(i, op)| op.as_ref().map(|_| i))
            .collect()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.tx_outstanding == 0 && self.rx_outstanding == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(wr_id: WrId, queue: Queue) -> PostedOp {
        PostedOp {
            wr_id,
            kind: OpKind::Write,
            queue,
            regions: SgeRegions::default(),
            partner: None,
            carried: None,
            recv_buf: None,
            bounced: false,
        }
    }

    #[test]
    fn contexts_round_trip_and_limits_hold() {
        let mut table = PostedTable::new(2, 1);
        assert!(table.has_room(Queue::Tx, 2) && !table.has_room(Queue::Tx, 3));
        let (a, ctx) = table.insert(op(7, Queue::Tx));
        assert_eq!(table.index_of(ctx), Some(a));
        assert_eq!(table.index_of(std::ptr::null_mut()), None);
        assert_eq!(table.index_of(ctx.wrapping_byte_add(1)), None);
        assert!(table.has_room(Queue::Tx, 1) && !table.has_room(Queue::Tx, 2));
        let Some(Finished::Report(done)) = table.finish(a, Ok(())) else {
            panic!("single op reports")
        };
        assert_eq!((done.wr_id, done.carried), (7, None));
        assert!(table.is_empty());
        assert!(
            table.finish(a, Ok(())).is_none(),
            "a stale context is ignored"
        );
    }

    #[test]
    fn paired_halves_report_once_with_the_first_error() {
        let mut table = PostedTable::new(4, 0);
        let (write, _) = table.insert(op(9, Queue::Tx));
        let (send, _) = table.insert(PostedOp {
            partner: Some(write),
            ..op(9, Queue::Tx)
        });
        table.get_mut(write).unwrap().partner = Some(send);
        assert!(matches!(
            table.finish(write, Err(WcError::Flushed)),
            Some(Finished::Folded(_))
        ));
        let Some(Finished::Report(done)) = table.finish(send, Err(WcError::Disconnected)) else {
            panic!("the last half reports")
        };
        assert_eq!(done.carried, Some(WcError::Flushed));
        assert!(table.is_empty());
    }
}
