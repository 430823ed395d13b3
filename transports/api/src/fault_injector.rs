//! A transport wrapper that injects faults, after smoltcp's
//! `phy::FaultInjector`, so drivers can be tested against the failures a real
//! RDMA connection produces without needing one.
//!
//! A reliable connection (RC) never reorders, duplicates or silently corrupts:
//! its failures are *error completions* after which the connection is dead,
//! refused posts, slow completions, and disconnects. Those are injected
//! faithfully. Two faults RC cannot produce are offered anyway because the
//! protocol above must survive them when a transport (or a bug in one)
//! misbehaves: a dropped send and a corrupted send.
//!
//! Faults are chosen either at random (seeded, reproducible) or at a scheduled
//! *operation number*, so a sweep test can inject a fault at every step of a
//! session. Operations are numbered from 0 in the order this wrapper sees
//! them: every `post_recv`, `post_send` and `post_write` call, and every
//! completion drained from the wrapped transport, is one operation.

use core::time::Duration;

use crate::rng::SplitMix64;
use crate::{
    Access, Completion, CompletionKind, RegionId, RemoteBuf, Slice, Transport, TransportError,
    TransportWrapper, WcError, WrId, total_len,
};

/// One kind of injected fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A send or write is lost: it is not posted, and the wrapper completes it
    /// successfully itself, so the sender believes it went out. The peer
    /// never sees the message, the written data or the immediate.
    Drop,
    /// One byte of a send's payload is flipped in flight. The sender's buffer
    /// is untouched: the payload is gathered into a scratch region the
    /// wrapper registers once (of [`Caps::max_message`](crate::Caps::max_message)
    /// bytes) and sent from there. Skipped for empty sends and while a previous corrupted send is
    /// still in flight.
    Corrupt,
    /// A post is refused with [`TransportError::QueueFull`]; nothing is posted.
    QueueFull,
    /// A completion, and every completion behind it (completions stay in
    /// order), is held back for this many further `poll_completions` calls.
    /// The wrapped transport already considers the request finished, so
    /// its regions are no longer busy there: a delay can hide, not cause,
    /// a buffer reused too early.
    Delay {
        /// Number of `poll_completions` calls to wait.
        polls: u32,
    },
    /// A completion is reported with this error instead of its real status
    /// (a receive then carries `Recv { len: 0 }`), and the wrapped connection
    /// is torn down, since an RC queue pair is in error state after any
    /// error completion.
    Error(WcError),
    /// The wrapped transport is disconnected at this operation. A post is
    /// then refused with [`TransportError::Disconnected`]; a completion is
    /// still delivered.
    Disconnect,
}

/// Which operation a fault is considered for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operation {
    Recv,
    Send,
    Write,
    Completion,
}

impl Fault {
    /// Whether the fault is meaningful at this kind of operation.
    const fn applies_to(self, op: Operation) -> bool {
        match self {
            Self::Drop => matches!(op, Operation::Send | Operation::Write),
            Self::Corrupt => matches!(op, Operation::Send),
            Self::QueueFull => !matches!(op, Operation::Completion),
            Self::Delay { .. } | Self::Error(_) => matches!(op, Operation::Completion),
            Self::Disconnect => true,
        }
    }
}

/// A fault to inject at exactly one operation number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScheduledFault {
    /// Operation number (from 0) at which to inject.
    pub at: u64,
    /// What to inject. Nothing is injected if the fault does not apply to
    /// that operation (e.g. [`Fault::Delay`] at a post).
    pub fault: Fault,
}

/// What to inject and how often. Percentages are per operation the fault
/// applies to; at most one fault is injected per operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultConfig {
    /// Seed of the wrapper's pseudo-random generator.
    pub seed: u64,
    /// Chance (%) that a send or write is dropped ([`Fault::Drop`]).
    pub drop_pct: u8,
    /// Chance (%) that a send is corrupted ([`Fault::Corrupt`]).
    pub corrupt_pct: u8,
    /// Chance (%) that a post is refused ([`Fault::QueueFull`]).
    pub queue_full_pct: u8,
    /// Chance (%) that a completion is delayed by `delay_polls` polls.
    pub delay_pct: u8,
    /// Polls a delayed completion waits.
    pub delay_polls: u32,
    /// Chance (%) that a completion is turned into `error`.
    pub error_pct: u8,
    /// The error injected by `error_pct`.
    pub error: WcError,
    /// One fault at a fixed operation number, on top of the random ones.
    pub scheduled: Option<ScheduledFault>,
}

impl FaultConfig {
    /// No faults at all (a transparent wrapper) with the given seed.
    pub const fn new(seed: u64) -> Self {
        Self {
            seed,
            drop_pct: 0,
            corrupt_pct: 0,
            queue_full_pct: 0,
            delay_pct: 0,
            delay_polls: 0,
            error_pct: 0,
            error: WcError::Flushed,
            scheduled: None,
        }
    }

    /// Exactly one fault, at operation `at`, and nothing random.
    pub const fn scheduled(at: u64, fault: Fault) -> Self {
        let mut config = Self::new(0);
        config.scheduled = Some(ScheduledFault { at, fault });
        config
    }

    /// The configured chance of a randomly injected fault of this kind.
    const fn percent(&self, fault: Fault) -> u8 {
        match fault {
            Fault::Drop => self.drop_pct,
            Fault::Corrupt => self.corrupt_pct,
            Fault::QueueFull => self.queue_full_pct,
            Fault::Delay { .. } => self.delay_pct,
            Fault::Error(_) => self.error_pct,
            Fault::Disconnect => 0,
        }
    }
}

/// How many faults of each kind were actually injected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Sends and writes dropped.
    pub dropped: u64,
    /// Sends corrupted.
    pub corrupted: u64,
    /// Posts refused with `QueueFull`.
    pub queue_full: u64,
    /// Completions delayed.
    pub delayed: u64,
    /// Completions turned into errors.
    pub errors: u64,
    /// Disconnects.
    pub disconnects: u64,
}

impl FaultStats {
    /// Total number of injected faults.
    pub const fn total(&self) -> u64 {
        self.dropped
            + self.corrupted
            + self.queue_full
            + self.delayed
            + self.errors
            + self.disconnects
    }
}

/// A completion waiting in the wrapper until poll number `release_at`.
#[derive(Clone, Copy, Debug)]
struct Held {
    completion: Completion,
    release_at: u64,
}

const PLACEHOLDER: Completion = Completion {
    wr_id: 0,
    kind: CompletionKind::Send,
    status: Ok(()),
};

/// Completions are pulled from the wrapped transport in batches of this size.
const BATCH: usize = 16;

/// Bytes copied per step when gathering a send into the scratch region.
const COPY_CHUNK: usize = 256;

/// The scratch region [`Fault::Corrupt`] sends from.
#[derive(Clone, Copy, Debug)]
enum Scratch {
    NotYetRegistered,
    Registered { region: RegionId, len: usize },
    Unavailable,
}

/// Wraps a transport `T` and injects faults into it. Up to `N` completions
/// can be held back (delayed or synthesized) at once; when that many are
/// held, completions stay in the wrapped transport until the caller drains.
#[derive(Debug)]
pub struct FaultInjector<T, const N: usize = 64> {
    inner: T,
    config: FaultConfig,
    rng: SplitMix64,
    operations: u64,
    polls: u64,
    held: [Held; N],
    held_head: usize,
    held_len: usize,
    scratch: Scratch,
    stats: FaultStats,
}

impl<T: Transport, const N: usize> FaultInjector<T, N> {
    /// Inject faults into `inner` as `config` says.
    pub const fn new(inner: T, config: FaultConfig) -> Self {
        Self {
            inner,
            config,
            rng: SplitMix64::new(config.seed),
            operations: 0,
            polls: 0,
            held: [Held {
                completion: PLACEHOLDER,
                release_at: 0,
            }; N],
            held_head: 0,
            held_len: 0,
            scratch: Scratch::NotYetRegistered,
            stats: FaultStats {
                dropped: 0,
                corrupted: 0,
                queue_full: 0,
                delayed: 0,
                errors: 0,
                disconnects: 0,
            },
        }
    }

    /// Faults injected so far.
    pub const fn stats(&self) -> FaultStats {
        self.stats
    }

    /// Operations seen so far (the next operation's number). A sweep test runs
    /// a session once without faults to learn how many operations to sweep.
    pub const fn operations(&self) -> u64 {
        self.operations
    }

    /// The wrapped transport.
    pub const fn get_ref(&self) -> &T {
        &self.inner
    }

    /// The wrapped transport, mutably (calls made through it bypass the
    /// injector and do not count as operations).
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// Unwrap. Completions still held back are lost.
    pub fn into_inner(self) -> T {
        self.inner
    }

    /// Number the next operation and decide which fault, if any, hits it.
    fn choose(&mut self, op: Operation) -> Option<Fault> {
        let number = self.operations;
        self.operations += 1;
        if let Some(scheduled) = self.config.scheduled {
            if scheduled.at == number && scheduled.fault.applies_to(op) {
                return Some(scheduled.fault);
            }
        }
        let random = [
            Fault::QueueFull,
            Fault::Drop,
            Fault::Corrupt,
            Fault::Delay {
                polls: self.config.delay_polls,
            },
            Fault::Error(self.config.error),
        ];
        random
            .into_iter()
            .filter(|fault| fault.applies_to(op))
            .find(|fault| self.rng.chance(self.config.percent(*fault)))
    }

    /// The faults every post can suffer; `None` if the post should go ahead
    /// (possibly altered by the caller for `Drop`/`Corrupt`).
    fn refuse_post(&mut self, fault: Option<Fault>) -> Option<Result<(), TransportError>> {
        match fault {
            Some(Fault::QueueFull) => {
                self.stats.queue_full += 1;
                Some(Err(TransportError::QueueFull))
            }
            Some(Fault::Disconnect) => {
                self.stats.disconnects += 1;
                self.inner.disconnect();
                Some(Err(TransportError::Disconnected))
            }
            _ => None,
        }
    }

    /// Pretend a send/write went out: queue its successful completion here.
    fn drop_post(&mut self, wr_id: WrId, kind: CompletionKind) -> bool {
        let completion = Completion {
            wr_id,
            kind,
            status: Ok(()),
        };
        let dropped = self.hold(completion, self.polls);
        if dropped {
            self.stats.dropped += 1;
        }
        dropped
    }

    fn hold(&mut self, completion: Completion, release_at: u64) -> bool {
        if self.held_len == N {
            return false;
        }
        let slot = (self.held_head + self.held_len) % N;
        self.held[slot] = Held {
            completion,
            release_at,
        };
        self.held_len += 1;
        true
    }

    /// The scratch region for corrupted sends, registered on first use.
    fn scratch(&mut self) -> Option<(RegionId, usize)> {
        if let Scratch::NotYetRegistered = self.scratch {
            let len = self.inner.caps().max_message;
            self.scratch = match self.inner.register(len, Access::empty()) {
                Ok(region) => Scratch::Registered { region, len },
                Err(_) => Scratch::Unavailable,
            };
        }
        match self.scratch {
            Scratch::Registered { region, len } => Some((region, len)),
            Scratch::NotYetRegistered | Scratch::Unavailable => None,
        }
    }

    /// Gather `sges` into the scratch region, flip one byte, and send from
    /// there. `None` if this send cannot be corrupted (it is then posted as is).
    fn post_corrupted(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        imm: Option<u32>,
    ) -> Option<Result<(), TransportError>> {
        let len = total_len(sges).filter(|&len| len > 0)?;
        if sges.len() > self.inner.caps().max_sge {
            return None;
        }
        let (scratch, scratch_len) = self.scratch()?;
        if len > scratch_len {
            return None;
        }
        // A previous corrupted send still in flight keeps the scratch busy.
        self.inner.region_mut(scratch).ok()?;
        let mut written = 0;
        let mut chunk = [0u8; COPY_CHUNK];
        for sge in sges {
            let mut copied = 0;
            while copied < sge.len {
                let step = (sge.len - copied).min(COPY_CHUNK);
                let start = sge.offset.checked_add(copied)?;
                let source = self
                    .inner
                    .region(sge.region)
                    .ok()?
                    .get(start..start.checked_add(step)?)?;
                chunk[..step].copy_from_slice(source);
                self.inner.region_mut(scratch).ok()?[written..written + step]
                    .copy_from_slice(&chunk[..step]);
                copied += step;
                written += step;
            }
        }
        self.send_corrupted(wr_id, scratch, len, imm)
    }

    /// Flip one byte of the first `len` bytes of the scratch region, which
    /// hold a send's payload, and send them from there.
    fn send_corrupted(
        &mut self,
        wr_id: WrId,
        scratch: RegionId,
        len: usize,
        imm: Option<u32>,
    ) -> Option<Result<(), TransportError>> {
        let victim = self.rng.below(len);
        // An odd mask is never zero, so the byte always changes.
        let mask = self.rng.next_u64().to_le_bytes()[0] | 1;
        self.inner.region_mut(scratch).ok()?[victim] ^= mask;
        self.stats.corrupted += 1;
        Some(
            self.inner
                .post_send(wr_id, &[Slice::whole(scratch, len)], imm),
        )
    }

    /// Copy inline `data` into the scratch region, flip one byte, and send
    /// from there (a registered send of the same bytes: the peer cannot
    /// tell). `None` if this send cannot be corrupted.
    fn post_corrupted_inline(
        &mut self,
        wr_id: WrId,
        data: &[u8],
    ) -> Option<Result<(), TransportError>> {
        let len = data.len();
        if len == 0 {
            return None;
        }
        let (scratch, scratch_len) = self.scratch()?;
        if len > scratch_len {
            return None;
        }
        // A previous corrupted send still in flight keeps the scratch busy.
        self.inner
            .region_mut(scratch)
            .ok()?
            .get_mut(..len)?
            .copy_from_slice(data);
        self.send_corrupted(wr_id, scratch, len, None)
    }

    /// The faults every post shares: `Err` with the post's answer when it
    /// was refused or dropped (its completion queued here), else the fault
    /// left for the post itself to apply (a corruption), if any.
    fn intercept_post(
        &mut self,
        operation: Operation,
        wr_id: WrId,
        kind: CompletionKind,
    ) -> Result<Option<Fault>, Result<(), TransportError>> {
        let fault = self.choose(operation);
        if let Some(refused) = self.refuse_post(fault) {
            return Err(refused);
        }
        match fault {
            Some(Fault::Drop) if self.drop_post(wr_id, kind) => Err(Ok(())),
            fault => Ok(fault),
        }
    }

    /// Apply completion faults to one completion drained from the wrapped
    /// transport and queue it for delivery.
    fn intercept(&mut self, completion: Completion) {
        let now = self.polls;
        // `pull` only drains as many completions as there are free slots, so
        // `hold` cannot fail here.
        match self.choose(Operation::Completion) {
            Some(Fault::Delay { polls }) => {
                self.stats.delayed += 1;
                self.hold(completion, now + u64::from(polls));
            }
            Some(Fault::Error(error)) => {
                self.stats.errors += 1;
                let kind = match completion.kind {
                    CompletionKind::Send | CompletionKind::Write => completion.kind,
                    CompletionKind::Recv { .. } | CompletionKind::RecvImm { .. } => {
                        CompletionKind::Recv { len: 0 }
                    }
                };
                self.hold(
                    Completion {
                        kind,
                        status: Err(error),
                        ..completion
                    },
                    now,
                );
                self.inner.disconnect();
            }
            Some(Fault::Disconnect) => {
                self.stats.disconnects += 1;
                self.hold(completion, now);
                self.inner.disconnect();
            }
            _ => {
                self.hold(completion, now);
            }
        }
    }

    /// Drain the wrapped transport into the free holding slots, until it has
    /// nothing more (an injected error or disconnect makes more appear).
    fn pull(&mut self) -> Result<(), TransportError> {
        let mut batch = [PLACEHOLDER; BATCH];
        loop {
            let room = (N - self.held_len).min(BATCH);
            // With no room this is a progress-only call (see the crate docs).
            let drained = self.inner.poll_completions(&mut batch[..room])?;
            for completion in &batch[..drained] {
                self.intercept(*completion);
            }
            if drained == 0 {
                return Ok(());
            }
        }
    }

    /// Move due completions, in order, to `out`.
    fn release(&mut self, out: &mut [Completion]) -> usize {
        let mut delivered = 0;
        while delivered < out.len() && self.held_len > 0 {
            let head = self.held[self.held_head];
            if head.release_at > self.polls {
                break;
            }
            out[delivered] = head.completion;
            delivered += 1;
            self.held_head = (self.held_head + 1) % N;
            self.held_len -= 1;
        }
        delivered
    }
}

impl<T: Transport, const N: usize> TransportWrapper for FaultInjector<T, N> {
    type Inner = T;

    fn inner(&self) -> &T {
        &self.inner
    }

    fn inner_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    fn post_recv(&mut self, wr_id: WrId, buf: Slice) -> Result<(), TransportError> {
        let fault = self.choose(Operation::Recv);
        if let Some(refused) = self.refuse_post(fault) {
            return refused;
        }
        self.inner.post_recv(wr_id, buf)
    }

    fn post_send(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        imm: Option<u32>,
    ) -> Result<(), TransportError> {
        match self.intercept_post(Operation::Send, wr_id, CompletionKind::Send) {
            Err(answer) => answer,
            Ok(Some(Fault::Corrupt)) => match self.post_corrupted(wr_id, sges, imm) {
                Some(result) => result,
                None => self.inner.post_send(wr_id, sges, imm),
            },
            Ok(_) => self.inner.post_send(wr_id, sges, imm),
        }
    }

    fn post_write(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        dst: RemoteBuf,
        imm: Option<u32>,
    ) -> Result<(), TransportError> {
        match self.intercept_post(Operation::Write, wr_id, CompletionKind::Write) {
            Err(answer) => answer,
            Ok(_) => self.inner.post_write(wr_id, sges, dst, imm),
        }
    }

    fn post_send_inline(&mut self, wr_id: WrId, data: &[u8]) -> Result<(), TransportError> {
        match self.intercept_post(Operation::Send, wr_id, CompletionKind::Send) {
            Err(answer) => answer,
            Ok(Some(Fault::Corrupt)) => match self.post_corrupted_inline(wr_id, data) {
                Some(result) => result,
                None => self.inner.post_send_inline(wr_id, data),
            },
            Ok(_) => self.inner.post_send_inline(wr_id, data),
        }
    }

    fn post_write_inline(
        &mut self,
        wr_id: WrId,
        data: &[u8],
        dst: RemoteBuf,
        imm: Option<u32>,
    ) -> Result<(), TransportError> {
        match self.intercept_post(Operation::Write, wr_id, CompletionKind::Write) {
            Err(answer) => answer,
            Ok(_) => self.inner.post_write_inline(wr_id, data, dst, imm),
        }
    }

    fn post_write_tail(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        tail: &[u8],
        dst: RemoteBuf,
        imm: Option<u32>,
    ) -> Result<(), TransportError> {
        match self.intercept_post(Operation::Write, wr_id, CompletionKind::Write) {
            Err(answer) => answer,
            Ok(_) => self.inner.post_write_tail(wr_id, sges, tail, dst, imm),
        }
    }

    fn post_write_tail_unsignaled(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        tail: &[u8],
        dst: RemoteBuf,
    ) -> Result<(), TransportError> {
        let fault = self.choose(Operation::Write);
        if let Some(refused) = self.refuse_post(fault) {
            return refused;
        }
        if let Some(Fault::Drop) = fault {
            // Lost on the way, as a dropped signaled write is; the sender's
            // success has no completion to show.
            self.stats.dropped += 1;
            return Ok(());
        }
        self.inner
            .post_write_tail_unsignaled(wr_id, sges, tail, dst)
    }

    fn poll_completions(&mut self, out: &mut [Completion]) -> Result<usize, TransportError> {
        self.polls += 1;
        let pulled = self.pull();
        let delivered = self.release(out);
        match pulled {
            // Report the wrapped transport's error only once everything held
            // here has been delivered.
            Err(error) if delivered == 0 && self.held_len == 0 => Err(error),
            _ => Ok(delivered),
        }
    }

    fn wait(&mut self, timeout: Option<Duration>) -> Result<(), TransportError> {
        if self.held_len > 0 {
            // Held completions become due by polling, not by waiting; what
            // was posted is still handed on, as every `wait` promises.
            return self.inner.flush();
        }
        self.inner.wait(timeout)
    }

    fn disconnect(&mut self) {
        self.inner.disconnect();
    }
}
