//! # rdio-loopback
//!
//! An in-memory, connected pair of [`Transport`]s that behaves like an RDMA
//! reliable-connection (RC) queue pair, for tests, fuzzing and single-host
//! runs of rdio. Two modes share one RC engine:
//!
//! * [`pair`]: deterministic and single-threaded (`Rc<RefCell<_>>`). No
//!   threads, no clocks; a run is a pure function of the sequence of calls,
//!   which is what stepped client/server tests and fuzzers need.
//! * [`sync_pair`]: thread-safe (`Arc<Mutex<_>>` + `Condvar`); the endpoints
//!   are `Send`, so a client thread and a server thread can each own one, and
//!   [`Transport::wait`] blocks until there is something to drain.
//!
//! ## When work happens
//!
//! A work request posted on one endpoint is executed when the *other*
//! endpoint next enters any `&mut self` method (e.g. `poll_completions`,
//! `post_recv`, `wait`, even `region_mut`). Until then the poster sees no
//! completion for it. This is not laziness but the only sound option:
//! [`Transport::region`] lends `&[u8]` views of registered memory tied to
//! `&self`, so an endpoint's memory may change only while the endpoint is
//! exclusively borrowed. It is the progress model of libfabric's
//! `FI_PROGRESS_MANUAL` (the `tcp` provider's only mode), and the result is
//! identical to an instantaneous network whose receiver was idle since the
//! post: every rule is applied at execution, in posting order, before the
//! receiver's own next action. A driver polling memory for an RDMA-written
//! status block must call `poll_completions` (an empty slice will do) in its
//! loop. In the deterministic mode [`Transport::wait`] never blocks (no other
//! thread could make progress): it delivers incoming work and returns;
//! [`LoopbackEndpoint::ready`] does the same and says whether a completion
//! is waiting, which a driver stepping both ends on one thread uses to tell
//! "something arrived" from "nothing can, until the peer is stepped".
//!
//! ## RC semantics modelled
//!
//! * **Registration**: [`Transport::register`] allocates zeroed memory owned
//!   by the endpoint; [`Transport::register_external`] takes memory the
//!   caller lends (e.g. a file mapping) as a read-only gather source,
//!   delivered with the same single copy. Each region gets a remote key that looks random but is
//!   a deterministic bijection of (seed, endpoint, region number), and an
//!   address in a per-endpoint virtual address space (page aligned, a guard
//!   page between regions), never a real pointer.
//! * **Local protection**: a gather element outside its region, or naming an
//!   unknown region, completes the request with [`WcError::LocalProtection`].
//!   A receive buffer must lie in a region with [`Access::LOCAL_WRITE`],
//!   registered when the receive was posted; a send landing in one that does
//!   not fails with `LocalProtection` at the receiver and
//!   [`WcError::RemoteOperation`] at the sender.
//! * **Remote access**: an RDMA write whose key, range (`addr` .. `addr` +
//!   bytes written) or rights ([`Access::REMOTE_WRITE`]) do not match a live
//!   peer region completes with [`WcError::RemoteAccess`]. Zero-length
//!   writes are not checked (as in InfiniBand). Writing more than the
//!   [`RemoteBuf::len`] the peer advertised is refused at post time with
//!   [`TransportError::OutOfBounds`].
//! * **Receiver not ready, with `rnr_retry = 0`**: a send or
//!   write-with-immediate finding no posted receive completes with
//!   [`WcError::ReceiverNotReady`]. Real NICs usually retry (often forever);
//!   failing on the first RNR makes a missing credit visible at once instead
//!   of as a hang, so credit bugs in rdio cannot hide.
//! * **Length**: a message longer than the receive it lands in fails with
//!   [`WcError::LocalLength`] at the receiver and `RemoteOperation` at the
//!   sender.
//! * **Error state**: after any failed request the connection is down, as an
//!   RC queue pair in the error state: every outstanding request of both
//!   endpoints (later sends and writes, posted receives) completes with
//!   [`WcError::Flushed`], posts return [`TransportError::Disconnected`], and
//!   once its completions are drained `poll_completions`/`wait` return
//!   `Disconnected` too.
//! * **Disconnect**: [`Transport::disconnect`] (or dropping an endpoint)
//!   flushes the same way; outstanding requests complete with `Flushed` on
//!   the side that disconnected and with [`WcError::Disconnected`] on its
//!   peer, which lost the connection under it.
//! * **Ordering**: requests execute in posting order; an RDMA write is placed
//!   before a later send's receive completes; a write-with-immediate
//!   consumes one receive and completes it as [`CompletionKind::RecvImm`];
//!   completions of each queue arrive in order.
//! * **Inline data**: [`Transport::post_send_inline`] and
//!   [`Transport::post_write_inline`] copy up to [`Config::max_inline`]
//!   bytes into the send-queue entry as they are posted (a buffer each entry
//!   reserves once); they hold no region and are executed, ordered and
//!   completed like the gathered kind. More than `max_inline` bytes is
//!   [`TransportError::MessageTooLarge`]; with `max_inline` 0 both return
//!   [`TransportError::Unsupported`]. [`Transport::post_write_tail`] copies
//!   its tail the same way and gathers the rest from its regions: one
//!   entry, written in that order.
//! * **Unsignaled writes**: [`Transport::post_write_tail_unsignaled`]
//!   executes like `post_write_tail` without immediate; when it succeeds
//!   it has no completion and takes no place among the endpoint's
//!   completions: the drain that reaches it in its send queue passes it
//!   (with the others executed in a row with it, in one step), which
//!   releases its regions. A failed or flushed one is reported like any
//!   other.
//! * **Busy regions**: every gather element or receive buffer of a posted
//!   request keeps its region busy until that request's completion has been
//!   drained; meanwhile [`Transport::region_mut`] and
//!   [`Transport::deregister`] return [`TransportError::Busy`].
//! * **Queue depths** from [`Config`]: a post beyond `max_send` outstanding
//!   sends + writes, or `max_recv` receives, returns
//!   [`TransportError::QueueFull`]; more than `max_sge` gather elements
//!   [`TransportError::TooManySegments`]; more than `max_message` /
//!   `max_write` bytes [`TransportError::MessageTooLarge`]. A request counts
//!   until its completion is drained.
//!
//! ## Not modelled
//!
//! * RDMA read and atomics (the trait has no verbs for them).
//! * Send with immediate data: returns [`TransportError::Unsupported`],
//!   because [`CompletionKind`] cannot carry both a length and an immediate.
//! * Packet loss, retransmission, timeouts, latency and bandwidth limits: the
//!   wire is perfect and infinitely fast (use
//!   [`rdio_transport::FaultInjector`] for failures).
//! * Partial placement: a failing write places nothing, where a NIC may have
//!   placed some packets before detecting the error.
//! * Completion queue overflow (the queue is sized so it cannot happen),
//!   unsignalled sends, shared receive queues, memory windows.
//! * Asynchronous progress (see "When work happens").
//!
//! ## Performance
//!
//! Delivering a send or write costs one `memcpy` per gather element, from
//! the sender's region straight into the receiver's. Queues are preallocated
//! rings, so posting and completing allocate nothing. The busy rule costs a
//! store per gather element when posting and nothing per element when
//! draining: a region notes the last request referencing it, and each queue
//! counts its drained requests.

use std::fmt;
use std::time::{Duration, Instant};

use rdio_transport::{
    Access, Caps, Completion, RegionId, RemoteBuf, Slice, Transport, TransportError, WrId,
    total_len,
};
#[cfg(doc)]
use rdio_transport::{CompletionKind, WcError};

mod engine;
mod link;
mod memory;
mod regions;
mod ring;

use engine::{Engine, SendOp, Side};
pub use link::{Link, Local, Threaded};
use regions::RegionTable;

/// Limits of a loopback pair, reported by [`Transport::caps`], and the seed
/// its remote keys and addresses derive from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Largest send, in bytes.
    pub max_message: usize,
    /// Largest RDMA write, in bytes.
    pub max_write: usize,
    /// Most gather elements per send or write (at most 16: more is
    /// reported, and enforced, as 16).
    pub max_sge: usize,
    /// Most outstanding sends + writes per endpoint.
    pub max_send: usize,
    /// Most outstanding receives per endpoint.
    pub max_recv: usize,
    /// Seed of remote keys and addresses: equal seeds give equal runs.
    pub seed: u64,
    /// What [`Caps::pins_registrations`] reports. The loopback pins
    /// nothing (`false` by default); `true` makes it report what a hardware
    /// transport would, for tests of what depends on it.
    pub pins_registrations: bool,
    /// Largest inline send or write ([`Caps::max_inline`]); each send-queue
    /// entry reserves this much once. 0 turns inline data off.
    pub max_inline: usize,
}

impl Config {
    /// 16 MiB messages (as the cma transport; room for rdio's 1 MiB +
    /// 4 KiB default send size), 2 GiB writes (the InfiniBand maximum), 4
    /// gather elements, 256-deep queues (libfabric `tcp`'s default sizes),
    /// 256 bytes of inline data (a common `max_inline_data` of RDMA NICs),
    /// seed 0.
    pub const DEFAULT: Self = Self {
        max_message: 16 << 20,
        max_write: 1 << 31,
        max_sge: 4,
        max_send: 256,
        max_recv: 256,
        seed: 0,
        pins_registrations: false,
        max_inline: 256,
    };
}

impl Default for Config {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// One endpoint of a loopback pair; see the [crate docs](crate).
pub struct LoopbackEndpoint<L: Link> {
    link: L,
    side: Side,
    caps: Caps,
    regions: RegionTable,
}

/// An endpoint of a deterministic, single-threaded pair ([`pair`]).
pub type Endpoint = LoopbackEndpoint<Local>;

/// An endpoint of a thread-safe pair ([`sync_pair`]); it is `Send`.
pub type SyncEndpoint = LoopbackEndpoint<Threaded>;

/// A connected, deterministic, single-threaded pair.
pub fn pair(config: Config) -> (Endpoint, Endpoint) {
    LoopbackEndpoint::pair(config)
}

/// A connected pair whose endpoints can live on different threads.
pub fn sync_pair(config: Config) -> (SyncEndpoint, SyncEndpoint) {
    LoopbackEndpoint::pair(config)
}

impl<L: Link> LoopbackEndpoint<L> {
    fn pair(config: Config) -> (Self, Self) {
        let (first, second) = L::pair(Engine::new(&config));
        (
            Self::new(first, Side::First, &config),
            Self::new(second, Side::Second, &config),
        )
    }

    fn new(link: L, side: Side, config: &Config) -> Self {
        let caps = Caps {
            max_message: config.max_message,
            max_write: config.max_write,
            max_sge: config.max_sge.min(engine::MAX_SGE),
            max_recv: config.max_recv,
            max_send: config.max_send,
            pins_registrations: config.pins_registrations,
            max_inline: config.max_inline,
            // A post is queued where the peer's next step executes it: no
            // doorbell to ring.
            deferred_posts: false,
        };
        Self {
            link,
            side,
            caps,
            regions: RegionTable::new(config.seed, side.index()),
        }
    }

    /// Enter the transport: lock the engine, execute the work the peer posted
    /// (this is where incoming data lands, see the crate docs), run `action`,
    /// and wake the peer if it is waiting for something that happened.
    /// Always inlined: its callers are thin wrappers around it, and when the
    /// compiler left it out of line (for `post_recv`) the call and the
    /// closure's captures cost more than the inlined copy.
    #[inline(always)]
    fn enter<R>(&mut self, action: impl FnOnce(&mut Engine, &mut RegionTable) -> R) -> R {
        let mut engine = self.link.lock();
        engine.deliver(self.side, &mut self.regions);
        Self::run(&self.link, engine, self.side, &mut self.regions, action)
    }

    /// [`Self::enter`] for the calls made per request (`post`,
    /// `post_recv`), which mostly find nothing to execute: then `action`
    /// runs at once; otherwise the lock is let go and `slow`, out of line,
    /// enters the usual way. No call returns into the inlined copy, so
    /// the values `action` captured need not be kept in callee-saved
    /// registers across one, as they must across `deliver`'s call of
    /// [`Engine::execute_posted`] (about 15 instructions per post, saving
    /// and restoring them).
    #[inline(always)]
    fn enter_or<R>(
        &mut self,
        action: impl FnOnce(&mut Engine, &mut RegionTable) -> R,
        slow: impl FnOnce(&mut Self) -> R,
    ) -> R {
        let engine = self.link.lock();
        if engine.has_incoming(self.side) {
            drop(engine);
            return slow(self);
        }
        Self::run(&self.link, engine, self.side, &mut self.regions, action)
    }

    /// The rest of [`Self::enter`], once incoming work is executed: run
    /// `action` and wake the peer if it is waiting for something that
    /// happened.
    #[inline(always)]
    fn run<R>(
        link: &L,
        mut engine: L::Guard<'_>,
        side: Side,
        regions: &mut RegionTable,
        action: impl FnOnce(&mut Engine, &mut RegionTable) -> R,
    ) -> R {
        let result = action(&mut engine, regions);
        // A single-threaded peer never sleeps: nothing to wake, and its
        // news flag is never read (no `wait` blocks on it).
        let wake_peer = L::CAN_BLOCK && engine.take_wakeup(side.peer());
        // Notify after unlocking, or the woken peer would block on the lock
        // at once. No wake-up is lost: the peer was seen asleep under the
        // lock, so it is already waiting on its condition variable.
        drop(engine);
        if wake_peer {
            link.wake(side.peer());
        }
        result
    }

    /// Execute the work the peer posted, as any `&mut self` call does, and
    /// tell whether a completion is waiting to be drained — what
    /// [`Transport::wait`] would wake up for, without waiting. Once the
    /// connection is down and nothing is left to drain, `Disconnected`.
    ///
    /// A driver stepping both ends of a [`pair`] on one thread uses it to
    /// tell "something arrived" from "nothing can arrive until the peer is
    /// stepped" (its `wait` cannot block: nobody else could wake it).
    pub fn ready(&mut self) -> Result<bool, TransportError> {
        let side = self.side;
        self.enter(|engine, _| engine.has_news_for(side))
    }

    /// Post a send or write (see [`Engine::post_send`]); `SIGNALED` is a
    /// parameter of the code rather than an argument: the unsignaled write
    /// of every read but a batch's last passes one value less.
    fn post<const SIGNALED: bool>(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        tail: &[u8],
        len: usize,
        op: SendOp,
    ) -> Result<(), TransportError> {
        if sges.len() > self.caps.max_sge {
            return Err(TransportError::TooManySegments);
        }
        let side = self.side;
        self.enter_or(
            |engine, regions| {
                engine.post_send(
                    side,
                    L::CAN_BLOCK,
                    wr_id,
                    sges,
                    tail,
                    len,
                    op,
                    SIGNALED,
                    regions,
                )
            },
            |this| this.post_delivering::<SIGNALED>(wr_id, sges, tail, len, op),
        )
    }

    /// `post_recv` when the peer posted work: entered the usual way, out
    /// of line (see [`Self::enter_or`]).
    #[cold]
    #[inline(never)]
    fn post_recv_delivering(&mut self, wr_id: WrId, buf: Slice) -> Result<(), TransportError> {
        let side = self.side;
        self.enter(|engine, regions| engine.post_recv(side, wr_id, buf, regions))
    }

    /// [`Self::post`] when the peer posted work: entered the usual way,
    /// out of line (see [`Self::enter_or`]).
    #[cold]
    #[inline(never)]
    fn post_delivering<const SIGNALED: bool>(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        tail: &[u8],
        len: usize,
        op: SendOp,
    ) -> Result<(), TransportError> {
        let side = self.side;
        self.enter(|engine, regions| {
            engine.post_send(
                side,
                L::CAN_BLOCK,
                wr_id,
                sges,
                tail,
                len,
                op,
                SIGNALED,
                regions,
            )
        })
    }

    /// `post_write_tail`, signaled or not (`post_write_tail_unsignaled`).
    #[inline(always)]
    fn write_tail<const SIGNALED: bool>(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        tail: &[u8],
        dst: RemoteBuf,
        imm: Option<u32>,
    ) -> Result<(), TransportError> {
        if tail.len() > self.caps.max_inline {
            return Err(if self.caps.max_inline == 0 {
                TransportError::Unsupported
            } else {
                TransportError::MessageTooLarge
            });
        }
        let len = total_len(sges)
            .and_then(|len| len.checked_add(tail.len()))
            .filter(|&len| len <= self.caps.max_write)
            .ok_or(TransportError::MessageTooLarge)?;
        if len > dst.len as usize {
            return Err(TransportError::OutOfBounds);
        }
        self.post::<SIGNALED>(wr_id, sges, tail, len, SendOp::Write { dst, imm })
    }
}

impl<L: Link> fmt::Debug for LoopbackEndpoint<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoopbackEndpoint")
            .field("side", &self.side)
            .field("caps", &self.caps)
            .finish_non_exhaustive()
    }
}

impl<L: Link> Transport for LoopbackEndpoint<L> {
    fn provider(&self) -> &str {
        "loopback"
    }

    fn caps(&self) -> Caps {
        self.caps
    }

    fn register(&mut self, len: usize, access: Access) -> Result<RegionId, TransportError> {
        self.enter(|_, regions| regions.register(len, access))
    }

    fn register_external<M>(&mut self, memory: M) -> Result<RegionId, TransportError>
    where
        M: AsRef<[u8]> + Send + Sync + 'static,
    {
        self.enter(|_, regions| regions.register_external(memory))
    }

    fn deregister(&mut self, region: RegionId) -> Result<(), TransportError> {
        let side = self.side;
        self.enter(|engine, regions| regions.deregister(region, engine.drained(side)))
    }

    fn region(&self, region: RegionId) -> Result<&[u8], TransportError> {
        self.regions.bytes(region)
    }

    fn region_mut(&mut self, region: RegionId) -> Result<&mut [u8], TransportError> {
        let side = self.side;
        // Only this endpoint drains its queues: the count stays exact after
        // the lock is released.
        let drained = self.enter(|engine, _| engine.drained(side));
        self.regions.bytes_mut(region, drained)
    }

    fn remote_buf(
        &self,
        region: RegionId,
        offset: usize,
        len: usize,
    ) -> Result<RemoteBuf, TransportError> {
        self.regions.remote_buf(region, offset, len)
    }

    fn post_recv(&mut self, wr_id: WrId, buf: Slice) -> Result<(), TransportError> {
        let side = self.side;
        self.enter_or(
            |engine, regions| engine.post_recv(side, wr_id, buf, regions),
            |this| this.post_recv_delivering(wr_id, buf),
        )
    }

    fn post_send(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        imm: Option<u32>,
    ) -> Result<(), TransportError> {
        if imm.is_some() {
            return Err(TransportError::Unsupported);
        }
        let len = total_len(sges)
            .filter(|&len| len <= self.caps.max_message)
            .ok_or(TransportError::MessageTooLarge)?;
        self.post::<true>(wr_id, sges, &[], len, SendOp::Send)
    }

    fn post_write(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        dst: RemoteBuf,
        imm: Option<u32>,
    ) -> Result<(), TransportError> {
        let len = total_len(sges)
            .filter(|&len| len <= self.caps.max_write)
            .ok_or(TransportError::MessageTooLarge)?;
        if len > dst.len as usize {
            return Err(TransportError::OutOfBounds);
        }
        self.post::<true>(wr_id, sges, &[], len, SendOp::Write { dst, imm })
    }

    fn post_send_inline(&mut self, wr_id: WrId, data: &[u8]) -> Result<(), TransportError> {
        if self.caps.max_inline == 0 {
            return Err(TransportError::Unsupported);
        }
        if data.len() > self.caps.max_inline.min(self.caps.max_message) {
            return Err(TransportError::MessageTooLarge);
        }
        let side = self.side;
        self.enter(|engine, _| engine.post_inline(side, L::CAN_BLOCK, wr_id, data, SendOp::Send))
    }

    fn post_write_inline(
        &mut self,
        wr_id: WrId,
        data: &[u8],
        dst: RemoteBuf,
        imm: Option<u32>,
    ) -> Result<(), TransportError> {
        if self.caps.max_inline == 0 {
            return Err(TransportError::Unsupported);
        }
        if data.len() > self.caps.max_inline.min(self.caps.max_write) {
            return Err(TransportError::MessageTooLarge);
        }
        if data.len() > dst.len as usize {
            return Err(TransportError::OutOfBounds);
        }
        let side = self.side;
        let op = SendOp::Write { dst, imm };
        self.enter(|engine, _| engine.post_inline(side, L::CAN_BLOCK, wr_id, data, op))
    }

    fn post_write_tail(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        tail: &[u8],
        dst: RemoteBuf,
        imm: Option<u32>,
    ) -> Result<(), TransportError> {
        self.write_tail::<true>(wr_id, sges, tail, dst, imm)
    }

    fn post_write_tail_unsignaled(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        tail: &[u8],
        dst: RemoteBuf,
    ) -> Result<(), TransportError> {
        self.write_tail::<false>(wr_id, sges, tail, dst, None)
    }

    fn poll_completions(&mut self, out: &mut [Completion]) -> Result<usize, TransportError> {
        let side = self.side;
        self.enter(|engine, _| engine.drain(side, out))
    }

    fn wait(&mut self, timeout: Option<Duration>) -> Result<(), TransportError> {
        let peer = self.side.peer();
        let mut deadline = None;
        let mut engine = self.link.lock();
        loop {
            engine.deliver(self.side, &mut self.regions);
            let wake_peer = engine.take_wakeup(peer);
            let news = engine.has_news_for(self.side);
            // Single-threaded links return at once: nothing can arrive
            // while we would block.
            if news != Ok(false) || !L::CAN_BLOCK {
                drop(engine);
                if wake_peer {
                    self.link.wake(peer);
                }
                return news.map(drop);
            }
            if wake_peer {
                // Sleeping releases the lock right away.
                self.link.wake(peer);
            }
            // An unrepresentable deadline is as good as none.
            let deadline = *deadline.get_or_insert_with(|| {
                timeout.and_then(|timeout| Instant::now().checked_add(timeout))
            });
            let remaining = match deadline {
                None => None,
                Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                    Some(remaining) if !remaining.is_zero() => Some(remaining),
                    _ => return Ok(()),
                },
            };
            engine = self.link.sleep(engine, self.side, remaining);
        }
    }

    fn disconnect(&mut self) {
        let side = self.side;
        self.enter(|engine, _| engine.close(side));
    }
}

impl<L: Link> Drop for LoopbackEndpoint<L> {
    /// A vanished endpoint is a lost connection for its peer.
    fn drop(&mut self) {
        self.disconnect();
    }
}
