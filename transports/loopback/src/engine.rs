//! The RC connection between the two endpoints of a pair: both work queues,
//! both completion queues and the connection state. One engine serves both
//! modes; [`crate::link`] only decides how it is shared (`RefCell` or
//! `Mutex`), so the RC rules below exist exactly once.
//!
//! A work request posted by one side is *executed* when the other side next
//! enters the transport ([`Engine::deliver`]): the receiver's memory can only
//! be written while its endpoint is exclusively borrowed (see
//! [`crate::memory`]). Execution is where every remote rule is applied, in
//! posting order, so the outcome is the same as if the message had arrived
//! the moment it was posted and the receiver had been idle since.

use rdio_transport::{
    Completion, CompletionKind, RegionId, RemoteBuf, Slice, TransportError, WcError, WrId,
    total_len,
};

use crate::Config;
use crate::memory::{self, RegionBytes, Source};
use crate::regions::{QueuePos, RegionTable};
use crate::ring::SlotRing;

/// Which endpoint of the pair. (`pub` only to appear in the sealed
/// [`crate::link::Link`] trait; this module is private.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    First,
    Second,
}

impl Side {
    pub(crate) const fn index(self) -> usize {
        match self {
            Self::First => 0,
            Self::Second => 1,
        }
    }

    pub(crate) const fn peer(self) -> Self {
        match self {
            Self::First => Self::Second,
            Self::Second => Self::First,
        }
    }
}

/// Connection state, shared by both queue pairs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LinkState {
    /// Ready to send (RTS).
    Up,
    /// A work request failed; like an RC QP in the error state, every
    /// outstanding request was flushed and new ones are refused.
    Failed,
    /// `disconnect` was called (or an endpoint dropped) by `by`.
    Closed { by: Side },
}

/// What a send-queue entry does.
#[derive(Clone, Copy, Debug)]
pub(crate) enum SendOp {
    Send,
    Write { dst: RemoteBuf, imm: Option<u32> },
}

impl SendOp {
    const fn completion_kind(self) -> CompletionKind {
        match self {
            Self::Send => CompletionKind::Send,
            Self::Write { .. } => CompletionKind::Write,
        }
    }
}

/// Most gather elements a loopback request holds ([`crate::Config::max_sge`]
/// is capped at this): an entry keeps them in place, not behind a pointer.
pub(crate) const MAX_SGE: usize = 16;

/// A gather element of a posted send or write.
struct SourceSge {
    offset: usize,
    len: usize,
    /// The region's memory, for the peer to read from; `None` if the region
    /// was unknown at post time (then the request fails).
    bytes: Option<Source>,
}

/// A send-queue entry (a WQE).
///
/// Invariant, which the unchecked copies of [`scatter`] rely on: if `valid`,
/// every element of `sges` has its `bytes` and lies inside that region
/// (`offset + len <= ` its length, without overflow), and `len` is the
/// total of their lengths plus `inline.len()` (the inline bytes, if any,
/// go after the gathered ones: [`Engine::post_send`] with a tail).
/// [`Engine::post_send`] and [`Engine::post_inline`] are the only places
/// that fill an entry.
struct SendWr {
    wr_id: WrId,
    op: SendOp,
    /// Posting never allocates.
    sges: heapless::Vec<SourceSge, MAX_SGE>,
    /// Inline data, copied in when posted (`post_send_inline`,
    /// `post_write_inline`, a write's tail); `max_inline` bytes, reserved
    /// once.
    inline: memory::InlineBuf,
    /// Total bytes of `sges` (checked not to overflow by the endpoint), or
    /// of `inline`.
    len: usize,
    /// Every gather element was inside a registered region at post time.
    valid: bool,
    /// Its success is reported by a completion
    /// ([`rdio_transport::Transport::post_write_tail_unsignaled`] posts
    /// one without: see `silent`).
    signaled: bool,
    /// Once executed (or flushed): the status of its completion, and its
    /// place among the endpoint's completions ([`Queues::completed`]).
    /// A silent request (see `silent`) has no completion: neither is
    /// written.
    status: Result<(), WcError>,
    seq: u64,
    /// Once executed (or flushed): 0 if it has a completion to report
    /// (with `seq`). An unsignaled request that succeeded has none and
    /// takes no number: [`Engine::execute_posted`] groups each run of such
    /// *silent* requests it executes in a row and counts the run's length
    /// in its first entry as it grows (only there: the others are never
    /// looked at), so that `drain` passes the whole run in one step when
    /// it reaches it, which releases their regions.
    silent: usize,
}

/// A receive-queue entry.
struct RecvWr {
    wr_id: WrId,
    buf: Slice,
    /// The buffer's region existed at post time and was marked busy
    /// ([`RegionTable::hold_recv`]).
    held: bool,
    /// Once consumed (or flushed): its completion's kind, status and
    /// place among the endpoint's completions ([`Queues::completed`]).
    kind: CompletionKind,
    status: Result<(), WcError>,
    seq: u64,
}

/// One endpoint's queues.
struct Queues {
    send: SlotRing<SendWr>,
    /// The first `executed` entries of `send` have completed and wait to be
    /// drained; the rest are still to be executed by the peer.
    executed: usize,
    recv: SlotRing<RecvWr>,
    /// The first `consumed` entries of `recv` have completed and wait to be
    /// drained; the rest are available to incoming messages, in order.
    consumed: usize,
    /// The completion queue. A completion lives in its work queue's entry
    /// (id, kind, status) until it is drained, and completions of one work
    /// queue arrive in its order, so the undrained completions are among
    /// the first `executed` sends (all but the silent ones,
    /// [`SendWr::silent`]) and are the first `consumed` receives; what
    /// remains to record is the order across the two queues. Each
    /// completion takes the next number of this counter as its `seq`, so
    /// the undrained ones hold the numbers from `reported` on, and `drain`
    /// takes the front send (past any silent ones) when it holds the next
    /// of them, else the front receive. (A `u64` does not wrap in any run:
    /// 2^64 completions.)
    completed: u64,
    /// The number of the next completion to drain: those below it were.
    reported: u64,
    /// How many requests of each queue have been drained (so far as
    /// [`QueuePos`] counts them: the next post to a queue is its request
    /// `drained + len + 1`). Completions of one queue are drained in its
    /// order, so the requests numbered up to these are the drained ones:
    /// what the busy rule of the region table compares with.
    drained: QueuePos,
    /// The endpoint's thread is blocked in `wait`.
    sleeping: bool,
    /// Something this endpoint may be waiting for happened since it last
    /// looked.
    news: bool,
}

impl Queues {
    fn new(config: &Config) -> Self {
        let max_inline = config.max_inline;
        Self {
            send: SlotRing::new(config.max_send, || SendWr {
                wr_id: 0,
                op: SendOp::Send,
                sges: heapless::Vec::new(),
                inline: memory::InlineBuf::new(max_inline),
                len: 0,
                valid: false,
                signaled: true,
                status: Ok(()),
                seq: 0,
                silent: 0,
            }),
            executed: 0,
            recv: SlotRing::new(config.max_recv, || RecvWr {
                wr_id: 0,
                buf: Slice::whole(RegionId(0), 0),
                held: false,
                kind: CompletionKind::Recv { len: 0 },
                status: Ok(()),
                seq: 0,
            }),
            consumed: 0,
            completed: 0,
            reported: 0,
            drained: QueuePos::default(),
            sleeping: false,
            news: false,
        }
    }

    /// The next send-queue entry to execute completed with `status`.
    fn complete_send(&mut self, status: Result<(), WcError>) {
        if let Some(wr) = self.send.get_mut(self.executed) {
            wr.status = status;
            wr.silent = 0;
            wr.seq = self.completed;
            self.completed += 1;
            self.executed += 1;
        }
    }

    /// The next receive completed, as `kind` with `status`.
    fn complete_recv(&mut self, kind: CompletionKind, status: Result<(), WcError>) {
        if let Some(wr) = self.recv.get_mut(self.consumed) {
            wr.kind = kind;
            wr.status = status;
            wr.seq = self.completed;
            self.completed += 1;
            self.consumed += 1;
        }
    }

    /// Complete every outstanding request with `status` (RC flush).
    fn flush(&mut self, status: WcError) {
        while self.send.len() > self.executed {
            self.complete_send(Err(status));
        }
        while self.recv.len() > self.consumed {
            self.complete_recv(CompletionKind::Recv { len: 0 }, Err(status));
        }
        self.news = true;
    }
}

/// The result of executing one send-queue entry at the receiver.
struct Outcome {
    /// Status of the sender's completion.
    sender: Result<(), WcError>,
    /// Kind and status of the completion of the receive the request
    /// consumed (the receiver's next), if it consumed one.
    receiver: Option<(CompletionKind, Result<(), WcError>)>,
}

impl Outcome {
    const fn sender_failed(error: WcError) -> Self {
        Self {
            sender: Err(error),
            receiver: None,
        }
    }

    /// The message reached a receive that cannot take it: the sender sees a
    /// remote operation error, the receive completes with `error`.
    const fn receive_failed(error: WcError) -> Self {
        Self {
            sender: Err(WcError::RemoteOperation),
            receiver: Some((CompletionKind::Recv { len: 0 }, Err(error))),
        }
    }

    /// Placed; the receive it consumed, if any, completes as `receiver`.
    const fn delivered(receiver: Option<CompletionKind>) -> Self {
        Self {
            sender: Ok(()),
            receiver: match receiver {
                Some(kind) => Some((kind, Ok(()))),
                None => None,
            },
        }
    }
}

/// Gather `wr`'s source elements into `target` starting at `offset`: one
/// `memcpy` per element, straight from the sender's region. Inlined into
/// its two callers in [`execute`]: a call per request cost more than the
/// loop.
///
/// # Safety
/// The ranges must be valid, which [`memory::copy`] only checks in debug
/// builds: `wr.valid` (then, by [`SendWr`]'s invariant, every gather element
/// lies inside a registered region and `wr.len` is their total), and
/// `offset + wr.len <= target.len()` without overflow. `target` is a region
/// of the endpoint `Engine::deliver` runs for, as `execute` finds it.
#[inline(always)]
unsafe fn scatter(wr: &SendWr, target: &RegionBytes, mut offset: usize) {
    debug_assert!(wr.valid, "only valid requests are executed");
    // The usual request has one element: no loop to set up (as when it was
    // posted).
    if let [sge] = wr.sges.as_slice() {
        let source = sge
            .bytes
            .expect("a valid request only names registered regions");
        // SAFETY: as for each element of the loop below, of which this is
        // the one-element case.
        unsafe { memory::copy(source.get(), sge.offset, target, offset, sge.len) };
        offset += sge.len;
    } else {
        for sge in &wr.sges {
            let source = sge
                .bytes
                .expect("a valid request only names registered regions");
            // SAFETY: `target` belongs to the receiving endpoint, which lent its
            // `RegionTable` mutably to `Engine::deliver` (memory rule 1); the
            // source belongs to the sender and is only read (rule 2); `deliver`
            // runs on the engine, which is only reachable through the link's
            // lock (rule 3); the request is being executed, so it was neither
            // flushed nor drained and its source region is alive (rule 4).
            // Ranges: the source range lies inside its region, as `wr.valid`
            // says (checked by `RegionTable::hold_source` against the region's
            // length when the request was posted; a region's length never
            // changes). The target range starts at the caller's `offset` plus
            // the lengths of the elements before this one, and the elements total
            // `wr.len`, so it ends at or before the caller's `offset + wr.len`,
            // which the caller guarantees is within `target` (so no sum here
            // overflows either).
            unsafe { memory::copy(source.get(), sge.offset, target, offset, sge.len) };
            offset += sge.len;
        }
    }
    if !wr.inline.is_empty() {
        // SAFETY: `target` as above (rules 1 and 3); the source is the
        // request's own inline bytes, owned by the engine, not region
        // memory. Range: `offset` is now the caller's plus the gathered
        // elements' lengths, and `wr.len` is those plus `inline.len()`,
        // so the inline bytes end at the caller's `offset + wr.len`: the
        // caller's guarantee covers them.
        unsafe { memory::copy_in(wr.inline.bytes(), target, offset) };
    }
}

/// Apply the RC rules to the next request from the peer, placing its data if
/// it succeeds. Nothing is placed when it fails.
fn execute(wr: &SendWr, next_recv: Option<&RecvWr>, memory: &RegionTable) -> Outcome {
    if !wr.valid {
        return Outcome::sender_failed(WcError::LocalProtection);
    }
    // With rnr_retry = 0, a message finding no receive posted is fatal.
    match wr.op {
        SendOp::Send => {
            let Some(recv) = next_recv else {
                return Outcome::sender_failed(WcError::ReceiverNotReady);
            };
            // A receive whose region was unknown when it was posted holds
            // nothing, so it may not land data even if a region got that id
            // since (the busy rule would not cover it): as unknown.
            if !recv.held {
                return Outcome::receive_failed(WcError::LocalProtection);
            }
            let Some(target) = memory.recv_target(recv.buf) else {
                return Outcome::receive_failed(WcError::LocalProtection);
            };
            if wr.len > recv.buf.len {
                return Outcome::receive_failed(WcError::LocalLength);
            }
            // SAFETY: `wr.valid` was checked above; `recv_target` checked
            // that `recv.buf` lies inside `target` (`offset + len <=
            // target.len()`, without overflow), and `wr.len <= recv.buf.len`,
            // so `recv.buf.offset + wr.len <= target.len()`.
            unsafe { scatter(wr, target, recv.buf.offset) };
            Outcome::delivered(Some(CompletionKind::Recv { len: wr.len }))
        }
        SendOp::Write { dst, imm } => {
            // A zero-length write names no memory, so its key is not checked
            // (InfiniBand does the same): write-with-immediate of nothing is
            // the usual pure notification.
            let target = if wr.len == 0 {
                None
            } else {
                match memory.write_target(dst, wr.len) {
                    Some(target) => Some(target),
                    None => return Outcome::sender_failed(WcError::RemoteAccess),
                }
            };
            let receiver = match (imm, next_recv) {
                (None, _) => None,
                (Some(_), None) => return Outcome::sender_failed(WcError::ReceiverNotReady),
                (Some(imm), Some(_)) => Some(CompletionKind::RecvImm { imm }),
            };
            if let Some((target, offset)) = target {
                // SAFETY: `wr.valid` was checked above; `write_target`
                // returned `offset` only once `offset + wr.len <=
                // target.len()`, without overflow (`regions::within`).
                unsafe { scatter(wr, target, offset) };
            }
            Outcome::delivered(receiver)
        }
    }
}

/// State shared by the two endpoints of a pair. (`pub` only to appear in
/// the sealed [`crate::link::Link`] trait; this module is private.)
pub struct Engine {
    state: LinkState,
    queues: [Queues; 2],
}

impl Engine {
    pub(crate) fn new(config: &Config) -> Self {
        Self {
            state: LinkState::Up,
            queues: [Queues::new(config), Queues::new(config)],
        }
    }

    const fn is_up(&self) -> bool {
        matches!(self.state, LinkState::Up)
    }

    /// Execute, in order, every request the peer of `receiver` has posted
    /// since, writing into `receiver`'s `memory`. Stops at the first failure,
    /// which takes the connection down.
    ///
    /// Every call into an endpoint starts here (or, per request, with
    /// [`Self::has_incoming`]), and most find nothing to execute: that case
    /// is an inlined comparison.
    #[inline]
    pub(crate) fn deliver(&mut self, receiver: Side, memory: &mut RegionTable) {
        if self.has_incoming(receiver) {
            self.execute_posted(receiver, memory);
        }
    }

    /// The peer of `receiver` has posted requests not executed yet (what
    /// [`Self::deliver`] would execute).
    #[inline]
    pub(crate) fn has_incoming(&self, receiver: Side) -> bool {
        let tx = &self.queues[receiver.peer().index()];
        tx.send.len() > tx.executed
    }

    fn execute_posted(&mut self, receiver: Side, memory: &mut RegionTable) {
        // Nothing below changes the state: one look is enough.
        if !self.is_up() {
            return;
        }
        let [first, second] = &mut self.queues;
        let (tx, rx) = match receiver {
            Side::First => (second, first),
            Side::Second => (first, second),
        };
        // Each completion takes the next number of its endpoint's counter, so
        // the counters also count the requests executed and the receives
        // consumed here.
        let (mut tx_completed, mut rx_completed) = (tx.completed, rx.completed);
        // The requests to execute and the receives they may consume, walked
        // in order; each entry is found once, and its completion is written
        // into it where it was executed.
        let mut recvs = rx.recv.range_iter_mut(rx.consumed, usize::MAX);
        let mut next_recv = recvs.next();
        let mut failed = false;
        // The run of silent requests being executed, if any: its first
        // entry's `silent`, which counts the run as it grows.
        let mut run: Option<&mut usize> = None;
        let mut wrs = tx.send.range_iter_mut(tx.executed, usize::MAX);
        let posted = wrs.len();
        for wr in &mut wrs {
            let outcome = execute(wr, next_recv.as_deref(), memory);
            if outcome.sender.is_ok() && !wr.signaled && outcome.receiver.is_none() {
                // Silent: no number and no status (nothing reads them: it
                // has no completion), counted in its run, where the run
                // starts (one increment in memory per request, rather
                // than a pointer and a count kept apart).
                match &mut run {
                    Some(len) => **len += 1,
                    None => {
                        wr.silent = 1;
                        run = Some(&mut wr.silent);
                    }
                }
                continue;
            }
            run = None;
            wr.status = outcome.sender;
            wr.silent = 0;
            wr.seq = tx_completed;
            tx_completed += 1;
            if let Some((kind, status)) = outcome.receiver {
                // `execute` names a receive only when it had one.
                if let Some(recv) = next_recv.take() {
                    recv.kind = kind;
                    recv.status = status;
                    recv.seq = rx_completed;
                    rx_completed += 1;
                    next_recv = recvs.next();
                }
            }
            if outcome.sender.is_err() {
                failed = true;
                break;
            }
        }
        // A run still open ends with the batch (the next batch starts its
        // own: `drain` passes the two in turn).
        let executed = posted - wrs.len();
        // At most `max_recv` apart: the conversion is exact.
        let consumed = rx_completed.wrapping_sub(rx.completed) as usize;
        // News for both sides, once per batch rather than per completion:
        // it is only looked at under the lock, after this returns.
        tx.news = true;
        rx.news |= consumed != 0;
        tx.executed += executed;
        rx.consumed += consumed;
        tx.completed = tx_completed;
        rx.completed = rx_completed;
        if failed {
            self.go_down(LinkState::Failed);
        }
    }

    /// Leave the `Up` state: flush both sides. After a failure everything
    /// flushes with `Flushed`; after a disconnect, the side that closed sees
    /// `Flushed` and its peer `Disconnected` (the connection was lost under it).
    fn go_down(&mut self, state: LinkState) {
        if !self.is_up() {
            return;
        }
        self.state = state;
        for side in [Side::First, Side::Second] {
            let status = match state {
                LinkState::Closed { by } if by != side => WcError::Disconnected,
                _ => WcError::Flushed,
            };
            self.queues[side.index()].flush(status);
        }
    }

    pub(crate) fn close(&mut self, by: Side) {
        self.go_down(LinkState::Closed { by });
    }

    /// A new entry at the back of `side`'s send queue, for a request of
    /// `len` bytes, with nothing gathered or copied in yet: [`Engine::post_send`]
    /// and [`Engine::post_inline`] fill it (its gather elements, inline
    /// bytes and `valid` are still the previous request's: each of them
    /// sets all three).
    /// With it, the request's number in its queue ([`QueuePos`]).
    #[inline(always)]
    fn push_send(
        &mut self,
        side: Side,
        wr_id: WrId,
        op: SendOp,
        len: usize,
    ) -> Result<(&mut SendWr, u64), TransportError> {
        if !self.is_up() {
            return Err(TransportError::Disconnected);
        }
        let queues = &mut self.queues[side.index()];
        // The ring holds the posted requests not drained yet, this one last.
        let request = queues.drained.sends + queues.send.len() as u64 + 1;
        let slot = queues.send.push().ok_or(TransportError::QueueFull)?;
        slot.wr_id = wr_id;
        slot.op = op;
        slot.len = len;
        slot.signaled = true;
        Ok((slot, request))
    }

    /// Append a send or write to `side`'s send queue. `sges` has at most
    /// `max_sge` elements; they and `tail` (inline bytes written after
    /// them, at most `max_inline`) total `len` bytes (checked by the
    /// caller). Unless `signaled`, its success is not reported.
    /// Inlined into the endpoint's `post` (always: with three callers of
    /// `post` the compiler stopped doing it, at 60 instructions per post):
    /// the call cost more than the body saves in code size. `wake_peer`:
    /// whether the peer's news flag is ever read
    /// ([`crate::link::sealed::Link::CAN_BLOCK`]); a constant there.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn post_send(
        &mut self,
        side: Side,
        wake_peer: bool,
        wr_id: WrId,
        sges: &[Slice],
        tail: &[u8],
        len: usize,
        op: SendOp,
        signaled: bool,
        memory: &mut RegionTable,
    ) -> Result<(), TransportError> {
        let (slot, request) = self.push_send(side, wr_id, op, len)?;
        slot.signaled = signaled;
        debug_assert_eq!(
            total_len(sges).map(|n| n + tail.len()),
            Some(len),
            "len is the total of sges and tail"
        );
        // The slot's previous request left its elements (and their sources,
        // not to be followed any more: `memory`, rule 4) behind: emptied
        // below. The usual request (a read's data from its file mapping)
        // has one element: no loop to set up, and the vector, emptied after
        // the region table was looked at (which might have written it, as
        // far as the compiler knows), has room without a look at its length.
        // Whether the entry is valid is gathered here and stored once.
        let mut valid = true;
        if let [sge] = *sges {
            let (bytes, inside) = memory.hold_source(sge, request);
            valid = inside;
            slot.sges.clear();
            let _ = slot.sges.push(SourceSge {
                offset: sge.offset,
                len: sge.len,
                bytes,
            });
        } else {
            slot.sges.clear();
            for &sge in sges {
                // At most `max_sge` <= MAX_SGE elements (checked by the
                // caller), so there is room; were there not, the request could
                // not be executed as posted: it fails as invalid (the regions
                // of the elements it took are busy until it is drained, as any
                // request's).
                if slot.sges.is_full() {
                    valid = false;
                    break;
                }
                let (bytes, inside) = memory.hold_source(sge, request);
                valid &= inside;
                let _ = slot.sges.push(SourceSge {
                    offset: sge.offset,
                    len: sge.len,
                    bytes,
                });
            }
        }
        // At most `max_inline` bytes (checked by the caller), so it fits;
        // were it not to, the request fails rather than go out short.
        slot.valid = slot.inline.set(tail) && valid;
        if wake_peer {
            self.queues[side.peer().index()].news = true;
        }
        Ok(())
    }

    /// Append a send or write of inline `data` to `side`'s send queue: the
    /// bytes are copied into the entry now (at most `max_inline`, checked by
    /// the caller; the entry's buffer has that capacity, so this never
    /// allocates). No region is held.
    #[inline]
    pub(crate) fn post_inline(
        &mut self,
        side: Side,
        wake_peer: bool,
        wr_id: WrId,
        data: &[u8],
        op: SendOp,
    ) -> Result<(), TransportError> {
        let (slot, _) = self.push_send(side, wr_id, op, data.len())?;
        // Nothing gathered (the previous request's elements go, as in
        // `post_send`).
        slot.sges.clear();
        // Checked by the caller to fit, as in `post_send`.
        slot.valid = slot.inline.set(data);
        if wake_peer {
            self.queues[side.peer().index()].news = true;
        }
        Ok(())
    }

    pub(crate) fn post_recv(
        &mut self,
        side: Side,
        wr_id: WrId,
        buf: Slice,
        memory: &mut RegionTable,
    ) -> Result<(), TransportError> {
        if !self.is_up() {
            return Err(TransportError::Disconnected);
        }
        let queues = &mut self.queues[side.index()];
        // Its number in the queue, as `push_send` counts sends.
        let request = queues.drained.recvs + queues.recv.len() as u64 + 1;
        let slot = queues.recv.push().ok_or(TransportError::QueueFull)?;
        slot.wr_id = wr_id;
        slot.buf = buf;
        slot.held = memory.hold_recv(buf, request);
        Ok(())
    }

    /// Move up to `out.len()` of `side`'s completions to `out`, releasing the
    /// regions their requests held (by counting them drained: see
    /// [`Queues::drained`]). Once the connection is down and nothing is left
    /// to drain, reports [`TransportError::Disconnected`].
    pub(crate) fn drain(
        &mut self,
        side: Side,
        out: &mut [Completion],
    ) -> Result<usize, TransportError> {
        let up = self.is_up();
        let queues = &mut self.queues[side.index()];
        if queues.executed + queues.consumed == 0 && !up {
            return Err(TransportError::Disconnected);
        }
        // The completed entries are the first `executed` of the send queue
        // and the first `consumed` of the receive queue. Their `seq`s are the
        // numbers from `reported` to the counter, each once: the next
        // completion is the front send (past the runs of silent ones, which
        // have none) if it has the next of them, else the front receive.
        if queues.executed + queues.consumed == 0 || out.is_empty() {
            // Nothing to drain, or nowhere to put it (a driver polling
            // memory polls with an empty slice).
            return Ok(0);
        }
        let end = queues.completed;
        let mut seq = queues.reported;
        // The completed sends: the front part of the ring's storage, then
        // the part that wrapped around to its start; the `n`th of them, found
        // by index into the two parts (cheaper here than a peeked iterator).
        let (front, wrapped) = queues.send.range_mut(0, queues.executed);
        let (front, wrapped) = (&*front, &*wrapped);
        let completed_send = |n: usize| match front.get(n) {
            Some(wr) => Some(wr),
            None => wrapped.get(n - front.len()),
        };
        let mut recvs = queues.recv.front_iter_mut(queues.consumed);
        let (mut sent, mut received, mut written) = (0, 0, 0);
        loop {
            // Pass the runs of silent sends in front, a run in one step:
            // nothing to report, and passing them releases their regions.
            let mut next_send = completed_send(sent);
            while let Some(wr) = next_send.filter(|wr| wr.silent != 0) {
                sent += wr.silent;
                next_send = completed_send(sent);
            }
            if seq == end {
                break;
            }
            // Each completion goes straight into its place in `out`, from
            // its own branch (merging the two kinds first cost a round trip
            // through the stack).
            let Some(slot) = out.get_mut(written) else {
                break;
            };
            // Only a completed send's `seq` counts: another's is stale.
            if let Some(wr) = next_send.filter(|wr| wr.seq == seq) {
                sent += 1;
                seq += 1;
                *slot = Completion {
                    wr_id: wr.wr_id,
                    kind: wr.op.completion_kind(),
                    status: wr.status,
                };
            } else {
                let wr = recvs
                    .next()
                    .expect("a receive completion has a receive-queue entry");
                debug_assert_eq!(wr.seq, seq, "completions are numbered in order");
                received += 1;
                seq += 1;
                *slot = Completion {
                    wr_id: wr.wr_id,
                    kind: wr.kind,
                    status: wr.status,
                };
            }
            written += 1;
        }
        queues.reported = seq;
        queues.send.discard_front(sent);
        queues.executed -= sent;
        queues.recv.discard_front(received);
        queues.consumed -= received;
        // This releases their regions: the region table counts a region
        // busy only while the last request referencing it is not drained.
        queues.drained.sends += sent as u64;
        queues.drained.recvs += received as u64;
        Ok(written)
    }

    /// How many requests of `side`'s queues have been drained (for the
    /// busy rule of its region table, [`QueuePos`]).
    pub(crate) fn drained(&self, side: Side) -> QueuePos {
        self.queues[side.index()].drained
    }

    /// `side` has a completion to drain, or will never get one again.
    pub(crate) fn has_news_for(&self, side: Side) -> Result<bool, TransportError> {
        let queues = &self.queues[side.index()];
        if queues.executed + queues.consumed > 0 {
            Ok(true)
        } else if self.is_up() {
            Ok(false)
        } else {
            Err(TransportError::Disconnected)
        }
    }

    /// Mark `side` as blocked in `wait` (or not). Going to sleep forgets
    /// earlier news: the sleeper has just looked at everything.
    pub(crate) fn set_sleeping(&mut self, side: Side, sleeping: bool) {
        let queues = &mut self.queues[side.index()];
        queues.sleeping = sleeping;
        if sleeping {
            queues.news = false;
        }
    }

    /// Whether `side` is blocked in `wait` and something it may wait for
    /// happened: then its thread must be woken. Resets the news either way,
    /// since a side that is not asleep looks at the engine before sleeping.
    pub(crate) fn take_wakeup(&mut self, side: Side) -> bool {
        let queues = &mut self.queues[side.index()];
        let wake = queues.news && queues.sleeping;
        queues.news = false;
        wake
    }
}
