//! Bookkeeping of posted work requests.
//!
//! Every posted request gets a slot whose index is the `wr_id` handed to the
//! HCA. The slot remembers what the request was and which regions it
//! references, because a failed work completion carries neither a valid
//! opcode nor the caller's meaning (`ibv_poll_cq(3)`: only `wr_id`, `status`,
//! `qp_num` and `vendor_err` are valid on error). The caller's own `WrId`s
//! need not be unique; the slot indices are.
//!
//! The table also bounds the work queues: it never holds more than the QP's
//! send and receive depths, and the completion queue is sized for both, so
//! the CQ cannot overrun.

use rdio_transport::{Completion, CompletionKind, RegionId, Slice, TransportError, WrId};
use rdma_sys::ibv_wc_opcode;

use crate::status::wc_status_result;

/// Most scatter/gather elements one request may carry (`Caps::max_sge` is at
/// most this).
pub(crate) const SGE_LIMIT: usize = 8;

/// Which queue a request went to and what it completes as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PostedKind {
    /// `post_send`.
    Send,
    /// `post_write`.
    Write,
    /// `post_recv`.
    Recv,
}

/// A posted request: the caller's id, its kind and the regions it keeps busy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Posted {
    pub(crate) wr_id: WrId,
    pub(crate) kind: PostedKind,
    regions: [RegionId; SGE_LIMIT],
    region_count: usize,
}

impl Posted {
    /// Record a request over `slices` (at most [`SGE_LIMIT`]; the transport
    /// rejects more with `TooManySegments` before getting here).
    pub(crate) fn new(wr_id: WrId, kind: PostedKind, slices: &[Slice]) -> Self {
        let mut regions = [RegionId(0); SGE_LIMIT];
        for (slot, slice) in regions.iter_mut().zip(slices) {
            *slot = slice.region;
        }
        Self {
            wr_id,
            kind,
            regions,
            region_count: slices.len().min(SGE_LIMIT),
        }
    }

    /// The regions this request references, once per scatter/gather element.
    pub(crate) fn regions(&self) -> &[RegionId] {
        &self.regions[..self.region_count]
    }
}

/// The fields of an `ibv_wc` a completion needs, copied out of the CQ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RawWc {
    /// The slot index given as `wr_id` at post time.
    pub(crate) slot: u64,
    /// `ibv_wc_status`.
    pub(crate) status: u32,
    /// `ibv_wc_opcode` (valid only on success).
    pub(crate) opcode: u32,
    /// Received bytes (receives only).
    pub(crate) byte_len: u32,
    /// Immediate data as the HCA stored it, in network byte order.
    pub(crate) imm_be: u32,
}

/// The trait-level completion of `posted` finishing as `wc`.
///
/// A receive consumed by a write-with-immediate (`IBV_WC_RECV_RDMA_WITH_IMM`)
/// becomes [`CompletionKind::RecvImm`] with the immediate converted to host
/// order. A receive filled by a send becomes [`CompletionKind::Recv`] even if
/// the send carried an immediate: the trait has no kind with both a length
/// and an immediate.
pub(crate) fn completion(posted: &Posted, wc: &RawWc) -> Completion {
    let status = wc_status_result(wc.status);
    let kind = match posted.kind {
        PostedKind::Send => CompletionKind::Send,
        PostedKind::Write => CompletionKind::Write,
        PostedKind::Recv if status.is_err() => CompletionKind::Recv { len: 0 },
        PostedKind::Recv if wc.opcode == ibv_wc_opcode::IBV_WC_RECV_RDMA_WITH_IMM => {
            CompletionKind::RecvImm {
                imm: u32::from_be(wc.imm_be),
            }
        }
        PostedKind::Recv => CompletionKind::Recv {
            len: wc.byte_len as usize,
        },
    };
    Completion {
        wr_id: posted.wr_id,
        kind,
        status,
    }
}

/// Slots of outstanding requests plus per-queue counts.
#[derive(Debug)]
pub(crate) struct PostedTable {
    slots: Vec<Option<Posted>>,
    free: Vec<usize>,
    sends: usize,
    recvs: usize,
    max_send: usize,
    max_recv: usize,
}

impl PostedTable {
    /// A table for a QP with `max_send` send-queue and `max_recv`
    /// receive-queue entries.
    pub(crate) fn new(max_send: usize, max_recv: usize) -> Self {
        let capacity = max_send + max_recv;
        Self {
            slots: vec![None; capacity],
            free: (0..capacity).rev().collect(),
            sends: 0,
            recvs: 0,
            max_send,
            max_recv,
        }
    }

    /// Take a slot for `posted`; [`TransportError::QueueFull`] when its queue
    /// is at depth.
    pub(crate) fn insert(&mut self, posted: Posted) -> Result<u64, TransportError> {
        let (count, max) = match posted.kind {
            PostedKind::Send | PostedKind::Write => (&mut self.sends, self.max_send),
            PostedKind::Recv => (&mut self.recvs, self.max_recv),
        };
        if *count >= max {
            return Err(TransportError::QueueFull);
        }
        let slot = self.free.pop().ok_or(TransportError::QueueFull)?;
        *count += 1;
        self.slots[slot] = Some(posted);
        Ok(slot as u64)
    }

    /// Release a slot (its completion arrived, or the post failed); `None`
    /// for an index that is not outstanding.
    pub(crate) fn remove(&mut self, slot: u64) -> Option<Posted> {
        let index = usize::try_from(slot).ok()?;
        let posted = self.slots.get_mut(index)?.take()?;
        self.free.push(index);
        match posted.kind {
            PostedKind::Send | PostedKind::Write => self.sends -= 1,
            PostedKind::Recv => self.recvs -= 1,
        }
        Some(posted)
    }

    /// Requests posted and not yet completed.
    pub(crate) fn outstanding(&self) -> usize {
        self.sends + self.recvs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdio_transport::WcError;

    fn slice(region: u32) -> Slice {
        Slice::whole(RegionId(region), 8)
    }

    fn wc(slot: u64, status: u32, opcode: u32) -> RawWc {
        RawWc {
            slot,
            status,
            opcode,
            byte_len: 100,
            imm_be: 0x1234_5678u32.to_be(),
        }
    }

    #[test]
    fn queues_are_bounded_separately() {
        let mut table = PostedTable::new(2, 1);
        let first = table
            .insert(Posted::new(1, PostedKind::Send, &[slice(0)]))
            .unwrap();
        table
            .insert(Posted::new(2, PostedKind::Write, &[slice(0)]))
            .unwrap();
        assert_eq!(
            table.insert(Posted::new(3, PostedKind::Send, &[])),
            Err(TransportError::QueueFull)
        );
        let recv = table
            .insert(Posted::new(4, PostedKind::Recv, &[slice(1)]))
            .unwrap();
        assert_eq!(
            table.insert(Posted::new(5, PostedKind::Recv, &[])),
            Err(TransportError::QueueFull)
        );
        assert_eq!(table.outstanding(), 3);

        let released = table.remove(first).unwrap();
        assert_eq!(
            (released.wr_id, released.regions()),
            (1, &[RegionId(0)][..])
        );
        assert_eq!(table.remove(first), None, "a slot completes once");
        assert_eq!(table.remove(999), None);
        table.insert(Posted::new(6, PostedKind::Send, &[])).unwrap();
        assert_eq!(table.remove(recv).map(|p| p.kind), Some(PostedKind::Recv));
        assert_eq!(table.outstanding(), 2);
    }

    #[test]
    fn duplicate_caller_ids_get_distinct_slots() {
        let mut table = PostedTable::new(4, 0);
        let a = table.insert(Posted::new(7, PostedKind::Send, &[])).unwrap();
        let b = table.insert(Posted::new(7, PostedKind::Send, &[])).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn posted_keeps_every_region_reference() {
        let posted = Posted::new(1, PostedKind::Write, &[slice(3), slice(3), slice(9)]);
        assert_eq!(posted.regions(), &[RegionId(3), RegionId(3), RegionId(9)]);
    }

    #[test]
    fn completions_from_work_completions() {
        let send = Posted::new(10, PostedKind::Send, &[]);
        let write = Posted::new(11, PostedKind::Write, &[]);
        let recv = Posted::new(12, PostedKind::Recv, &[slice(0)]);
        let recv_op = ibv_wc_opcode::IBV_WC_RECV;
        let imm_op = ibv_wc_opcode::IBV_WC_RECV_RDMA_WITH_IMM;

        let done = completion(&send, &wc(0, 0, ibv_wc_opcode::IBV_WC_SEND));
        assert_eq!(
            done,
            Completion {
                wr_id: 10,
                kind: CompletionKind::Send,
                status: Ok(())
            }
        );
        let done = completion(&write, &wc(1, 0, ibv_wc_opcode::IBV_WC_RDMA_WRITE));
        assert_eq!(
            done,
            Completion {
                wr_id: 11,
                kind: CompletionKind::Write,
                status: Ok(())
            }
        );
        let done = completion(&recv, &wc(2, 0, recv_op));
        assert_eq!(done.kind, CompletionKind::Recv { len: 100 });
        let done = completion(&recv, &wc(2, 0, imm_op));
        assert_eq!(done.kind, CompletionKind::RecvImm { imm: 0x1234_5678 });
    }

    #[test]
    fn failed_completions_ignore_the_opcode() {
        let recv = Posted::new(12, PostedKind::Recv, &[slice(0)]);
        // A flushed receive: the opcode field is garbage on error.
        let done = completion(&recv, &wc(0, 5, 0xdead));
        assert_eq!(
            done,
            Completion {
                wr_id: 12,
                kind: CompletionKind::Recv { len: 0 },
                status: Err(WcError::Flushed)
            }
        );
        let write = Posted::new(13, PostedKind::Write, &[]);
        let done = completion(&write, &wc(0, 10, 0xdead));
        assert_eq!(
            (done.kind, done.status),
            (CompletionKind::Write, Err(WcError::RemoteAccess))
        );
    }
}
