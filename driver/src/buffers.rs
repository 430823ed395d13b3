//! Registered memory both sides of a connection need, the clock they feed
//! the core, the work-request ids that tie completions back to buffers, and
//! the hash maps keyed by ids of the runtime's own making.

use rdio_core::time::Instant;
use rdio_transport::{
    Access, Completion, CompletionKind, RegionId, Slice, Transport, TransportError, WrId,
};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Duration;

/// A hash map keyed by an id this process hands out itself (a client's
/// request ids, from its core; a server's file ids, from its file table),
/// hashed by one multiplication instead of SipHash: the I/O path looks one
/// up for every request, and a peer cannot choose these keys, so there is
/// no flooding to defend against.
pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// Fibonacci hashing of integer ids (as `FxHasher` does): multiplying by
/// 2^64 / φ spreads consecutive ids over the high bits hashbrown's control
/// bytes use, and keeps the low bits (its bucket index) a bijection of the
/// id's.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Ids hash through the integer methods below; anything else is
        // folded in eight bytes at a time.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u32(&mut self, id: u32) {
        self.write_u64(u64::from(id));
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = (self.0.rotate_left(5) ^ id).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// The core never reads a clock (STYLE §4): the runtime passes it
/// microseconds since the connection's start.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    /// The monotonic clock's reading at creation, in nanoseconds.
    epoch: u64,
    /// The time-stamp counter at creation, when request stamps read it
    /// ([`tsc_usable`]).
    tsc_epoch: Option<u64>,
}

/// When a request was submitted, for its latency: a time-stamp counter
/// reading where the kernel keeps `CLOCK_MONOTONIC` on that counter,
/// nanoseconds of the monotonic clock otherwise. Only a [`Reading`] of the
/// same [`Clock`] turns it into time.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stamp(u64);

/// One reading of a [`Clock`] (what a poll takes once): the time for the
/// core, a stamp of the same moment, and the length of a stamp's tick.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reading {
    pub(crate) now: Instant,
    stamp: u64,
    /// Microseconds per tick, fixed point with 32 fraction bits.
    micros_per_tick: u64,
}

impl Reading {
    /// Microseconds from `at` (of this reading's clock, not later than
    /// it) to this reading.
    pub(crate) fn micros_since(&self, at: Stamp) -> u64 {
        // Fixed point, not float: this runs per completion, where the two
        // conversions of an unsigned integer to and from a float cost some
        // 20 instructions and a 64 x 64 -> 128 bit multiply costs one.
        let ticks = u128::from(self.stamp.saturating_sub(at.0));
        u64::try_from((ticks * u128::from(self.micros_per_tick)) >> 32).unwrap_or(u64::MAX)
    }
}

impl Clock {
    pub(crate) fn new() -> Self {
        let tsc_epoch = tsc_usable().then(tsc);
        Self {
            epoch: monotonic_nanos(),
            tsc_epoch,
        }
    }

    /// Microseconds since the clock was made: `clock_gettime`
    /// (`CLOCK_MONOTONIC`) and one division, where
    /// `std::time::Instant::elapsed` spent ~100 instructions more on
    /// checked `timespec` arithmetic and a `u128` `as_micros`.
    pub(crate) fn now(&self) -> Instant {
        Instant::from_micros(monotonic_nanos().saturating_sub(self.epoch) / 1000)
    }

    /// A request's submission time: with the time-stamp counter, one
    /// `rdtsc` (about 8 ns here) instead of `clock_gettime` (about 18 ns
    /// and some 35 instructions more), once per request.
    pub(crate) fn stamp(&self) -> Stamp {
        match self.tsc_epoch {
            Some(_) => Stamp(tsc()),
            None => Stamp(monotonic_nanos()),
        }
    }

    /// The time now, as a poll takes it: [`Clock::now`], a stamp of the
    /// same moment, and a stamp's tick measured over the clock's whole
    /// life (the counter's ticks since creation against the monotonic
    /// clock's nanoseconds), so a latency is off by at most the jitter of
    /// the two readings (tens of nanoseconds), never by a rate guessed
    /// up front, and nothing is calibrated at start-up.
    pub(crate) fn reading(&self) -> Reading {
        let nanos = monotonic_nanos().saturating_sub(self.epoch);
        let now = Instant::from_micros(nanos / 1000);
        match self.tsc_epoch {
            Some(epoch) => {
                let stamp = tsc();
                let ticks = stamp.saturating_sub(epoch);
                Reading {
                    now,
                    stamp,
                    // Once per poll: a float division (a u128 one would be
                    // a library call). A float to integer cast saturates.
                    micros_per_tick: if ticks == 0 {
                        0
                    } else {
                        (nanos as f64 / 1000.0 / ticks as f64 * FIXED_ONE) as u64
                    },
                }
            }
            None => Reading {
                now,
                stamp: nanos.saturating_add(self.epoch),
                micros_per_tick: (FIXED_ONE / 1000.0) as u64,
            },
        }
    }

    /// How long to sleep until `deadline`, capped at `cap` so the caller
    /// still looks at its other inputs now and then.
    pub(crate) fn until(&self, deadline: Option<Instant>, cap: Duration) -> Duration {
        deadline.map_or(cap, |deadline| {
            deadline.saturating_since(self.now()).min(cap)
        })
    }
}

/// 1.0 in [`Reading`]'s fixed point.
const FIXED_ONE: f64 = 4_294_967_296.0;

/// `CLOCK_MONOTONIC` (the clock `std::time::Instant` reads on Linux) in
/// nanoseconds. Never negative; saturates instead of wrapping.
fn monotonic_nanos() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable `timespec`; CLOCK_MONOTONIC
    // always exists on Linux, and on failure `now` stays zero.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    let seconds = u64::try_from(now.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(now.tv_nsec).unwrap_or(0);
    seconds.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// Whether request stamps read the time-stamp counter: on x86_64 when the
/// kernel's clock source is `tsc` — it keeps `CLOCK_MONOTONIC` on that
/// counter only when the counter runs at a constant rate and agrees
/// across CPUs (it switches away from one it finds unstable), so stamps
/// taken on one CPU and read on another compare. Asked once per process.
fn tsc_usable() -> bool {
    static USABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *USABLE.get_or_init(|| {
        cfg!(target_arch = "x86_64")
            && std::fs::read_to_string(
                "/sys/devices/system/clocksource/clocksource0/current_clocksource",
            )
            .is_ok_and(|source| source.trim() == "tsc")
    })
}

/// The time-stamp counter (0 off x86_64, where [`tsc_usable`] is false).
#[inline(always)]
fn tsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `rdtsc` exists on every x86_64 CPU and only reads the
        // counter.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}

/// What a work request was posted for. Encoded in the top byte of the
/// [`WrId`], the buffer index (and, for sends gathering write data, the data
/// slot) below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Work {
    /// A posted receive, by receive-buffer index.
    Recv(usize),
    /// A send or status-block write from a send buffer; `data` is the data
    /// slot whose bytes a write fragment gathers, if any.
    Send { buffer: usize, data: Option<usize> },
    /// An RDMA write of read data from a server bounce buffer.
    ReadData(usize),
    /// An RDMA write of read data straight from a leased file mapping, by
    /// the connection's mapping slot.
    MappedRead(usize),
    /// A read's last data write from a leased file mapping (by mapping
    /// slot) gathering its status block from send buffer `buffer` after
    /// the data: one RDMA write for both.
    MappedJoined { slot: usize, buffer: usize },
    /// A send or status-block write of inline data
    /// ([`rdio_transport::Transport::post_send_inline`]): no buffer to give
    /// back, only a send-queue entry.
    Inline,
    /// An unsignaled RDMA write of read data from a leased file mapping
    /// (by mapping slot): its id only comes back if it fails
    /// ([`rdio_transport::Transport::post_write_tail_unsignaled`]).
    QuietRead(usize),
}

/// Bytes of the stack buffer a message posted inline is encoded into: room
/// for a read request and a status block (see the test below). A transport
/// whose [`rdio_transport::Caps::max_inline`] is at least this takes them
/// inline; below it, everything goes through registered send buffers.
pub(crate) const INLINE_MESSAGE: usize = 128;

const TAG_SHIFT: u32 = 56;
const INDEX_BITS: u32 = 24;
const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;

impl Work {
    #[inline]
    pub(crate) fn id(self) -> WrId {
        match self {
            Self::Recv(i) => (1 << TAG_SHIFT) | i as u64,
            Self::Send { buffer, data } => {
                let data = data.map_or(0, |slot| slot as u64 + 1);
                (2 << TAG_SHIFT) | (data << INDEX_BITS) | buffer as u64
            }
            Self::ReadData(i) => (3 << TAG_SHIFT) | i as u64,
            Self::MappedRead(i) => (4 << TAG_SHIFT) | i as u64,
            Self::Inline => 5 << TAG_SHIFT,
            Self::MappedJoined { slot, buffer } => {
                (6 << TAG_SHIFT) | ((slot as u64) << INDEX_BITS) | buffer as u64
            }
            Self::QuietRead(i) => (7 << TAG_SHIFT) | i as u64,
        }
    }

    /// `None` for an id this runtime never issued.
    #[inline]
    pub(crate) fn from_id(id: WrId) -> Option<Self> {
        let index = (id & INDEX_MASK) as usize;
        match id >> TAG_SHIFT {
            1 => Some(Self::Recv(index)),
            2 => {
                let data = ((id >> INDEX_BITS) & INDEX_MASK) as usize;
                Some(Self::Send {
                    buffer: index,
                    data: data.checked_sub(1),
                })
            }
            3 => Some(Self::ReadData(index)),
            4 => Some(Self::MappedRead(index)),
            5 if index == 0 => Some(Self::Inline),
            6 => Some(Self::MappedJoined {
                slot: ((id >> INDEX_BITS) & INDEX_MASK) as usize,
                buffer: index,
            }),
            7 => Some(Self::QuietRead(index)),
            _ => None,
        }
    }
}

/// Size of a buffer that holds a message without write data: every send
/// of a server's send pool and of a client's (a client's write fragments
/// gather their data from the request's slot, so only the prefix is
/// encoded into the pool; a client granted read batches makes its sends
/// larger, [`client_send_size`]), and a client's receives (a server sends
/// only fixed-size messages: responses, credit messages, `Terminate`).
/// `MIN_SEND_SIZE` is defined as room for the largest of those (a
/// 16-segment vectored read) with its header; the test below checks it.
/// Sizing these by the negotiated `max_send_size` instead would make a
/// 1 MiB send size cost 1 MiB per send buffer and per client receive for
/// nothing: only the server's receives ever hold a full-size message.
pub(crate) const CONTROL_MESSAGE: usize = rdio_core::wire::MIN_SEND_SIZE as usize;

/// The control-message buffer size for a connection whose messages are at
/// most `max_send` bytes.
pub(crate) fn control_size(max_send: usize) -> usize {
    max_send.min(CONTROL_MESSAGE)
}

/// The size of a client's send buffers for a connection whose messages
/// are at most `max_send` bytes: a control message, and where the session
/// granted read batches, room for a full one
/// ([`rdio_core::wire::MAX_READ_BATCH_LEN`], 16 reads in 792 bytes). The
/// core puts in a batch only the reads its buffer holds: a
/// [`CONTROL_MESSAGE`] buffer would cut every batch at 10 reads, and a
/// deep queue would go as more, smaller batches (each costing both sides
/// a send, a receive and an immediate).
pub(crate) fn client_send_size(max_send: usize, read_batches: bool) -> usize {
    let wanted = if read_batches {
        CONTROL_MESSAGE.max(rdio_core::wire::MAX_READ_BATCH_LEN)
    } else {
        CONTROL_MESSAGE
    };
    max_send.min(wanted)
}

/// Receive buffers, one message each, in one region (only ever read by the
/// driver, so one region can hold them all while they are posted).
///
/// A client keeps them all posted ([`Receives::post_all`], then
/// [`Receives::repost`] each as it completes). A server posts only as many
/// as its client's credits need ([`Receives::post_up_to`],
/// [`Receives::recycle`]): a transport fills posted receives in order, so
/// every posted buffer is in the rotation, and fewer of them stay in the
/// cache.
#[derive(Debug)]
pub(crate) struct Receives {
    region: RegionId,
    size: usize,
    /// Buffers not posted, the next to post last (the lowest index first
    /// at the start; then the one idle the shortest, the warmest).
    idle: Vec<usize>,
    /// Buffers posted and not completed yet.
    posted: usize,
}

impl Receives {
    /// Register `count` buffers of `size` bytes, posting none.
    pub(crate) fn register(
        transport: &mut impl Transport,
        count: usize,
        size: usize,
    ) -> Result<Self, TransportError> {
        let len = count.checked_mul(size).ok_or(TransportError::NoMemory)?;
        let region = transport.register(len, Access::LOCAL_WRITE)?;
        Ok(Self {
            region,
            size,
            idle: (0..count).rev().collect(),
            posted: 0,
        })
    }

    /// Register `count` buffers of `size` bytes and post them all.
    pub(crate) fn post_all(
        transport: &mut impl Transport,
        count: usize,
        size: usize,
    ) -> Result<Self, TransportError> {
        let mut receives = Self::register(transport, count, size)?;
        if let Err(e) = receives.post_up_to(transport, count) {
            // Receives already posted keep the region busy until flushed.
            let _ = release(transport, [receives.region]);
            return Err(e);
        }
        Ok(receives)
    }

    /// Post idle buffers until `wanted` are posted (or none is idle).
    pub(crate) fn post_up_to(
        &mut self,
        transport: &mut impl Transport,
        wanted: usize,
    ) -> Result<(), TransportError> {
        while self.posted < wanted {
            let Some(index) = self.idle.pop() else {
                break;
            };
            if let Err(e) = self.post(transport, index) {
                self.idle.push(index);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Buffer `index` completed (its message, if any, taken): post it
    /// again if fewer than `wanted` are posted, else keep it idle.
    pub(crate) fn recycle(
        &mut self,
        transport: &mut impl Transport,
        index: usize,
        wanted: usize,
    ) -> Result<(), TransportError> {
        if self.posted < wanted {
            self.post(transport, index)
        } else {
            self.idle.push(index);
            Ok(())
        }
    }

    /// Buffer `index` completed: it is no longer posted.
    pub(crate) fn completed(&mut self) {
        self.posted = self.posted.saturating_sub(1);
    }

    /// Post buffer `index` again, as it completed (for a client, which
    /// keeps them all posted and counts nothing).
    pub(crate) fn repost(
        &self,
        transport: &mut impl Transport,
        index: usize,
    ) -> Result<(), TransportError> {
        transport.post_recv(
            Work::Recv(index).id(),
            Slice {
                region: self.region,
                offset: index * self.size,
                len: self.size,
            },
        )
    }

    /// [`Receives::repost`], counted.
    fn post(&mut self, transport: &mut impl Transport, index: usize) -> Result<(), TransportError> {
        self.repost(transport, index)?;
        self.posted += 1;
        Ok(())
    }

    /// The one region holding every receive buffer, for [`release`].
    pub(crate) fn region(&self) -> RegionId {
        self.region
    }

    /// The `len` bytes received in buffer `index`.
    pub(crate) fn message<'t>(
        &self,
        transport: &'t impl Transport,
        index: usize,
        len: usize,
    ) -> Result<&'t [u8], TransportError> {
        let start = index
            .checked_mul(self.size)
            .ok_or(TransportError::OutOfBounds)?;
        let end = start
            .checked_add(len.min(self.size))
            .ok_or(TransportError::OutOfBounds)?;
        transport
            .region(self.region)?
            .get(start..end)
            .ok_or(TransportError::OutOfBounds)
    }
}

/// Most rounds [`release`] spends draining a disconnected transport: a
/// flushed queue pair reports each outstanding request once, possibly
/// asynchronously (ibverbs flushes in the background), so the wait is
/// bounded rather than trusted to end.
const RELEASE_ROUNDS: usize = 200;
/// How long one round waits for flushed completions to appear.
const RELEASE_WAIT: Duration = Duration::from_millis(1);

/// Disconnect, then deregister `regions`, draining flushed completions in
/// between: a region stays busy until the completion of every request
/// naming it has been drained. Remote access to memory a peer was given a
/// key for ends here, not when the process exits. Returns the first region
/// that could not be deregistered within the bound, if any.
pub(crate) fn release(
    transport: &mut impl Transport,
    regions: impl IntoIterator<Item = RegionId>,
) -> Result<(), TransportError> {
    transport.disconnect();
    let mut remaining: Vec<RegionId> = regions.into_iter().collect();
    let mut sink = [Completion {
        wr_id: 0,
        kind: CompletionKind::Send,
        status: Ok(()),
    }; 32];
    let mut last_error = TransportError::Disconnected;
    for _ in 0..RELEASE_ROUNDS {
        // Drain first: a flushed request keeps its regions busy until its
        // completion is taken.
        if matches!(transport.poll_completions(&mut sink), Ok(n) if n > 0) {
            continue;
        }
        remaining.retain(|&region| match transport.deregister(region) {
            Ok(()) => false,
            Err(e) => {
                last_error = e;
                true
            }
        });
        if remaining.is_empty() {
            return Ok(());
        }
        let _ = transport.wait(Some(RELEASE_WAIT));
    }
    Err(last_error)
}

/// Run the buffer set-up of a connection, which registers regions into
/// `held` step by step; if a step fails, release what the earlier steps
/// registered, so a connection that never started leaves nothing behind.
pub(crate) fn set_up<T: Transport, R>(
    transport: &mut T,
    build: impl FnOnce(&mut T, &mut Vec<RegionId>) -> Result<R, TransportError>,
) -> Result<R, TransportError> {
    let mut held = Vec::new();
    let result = build(transport, &mut held);
    if result.is_err() {
        let _ = release(transport, held);
    }
    result
}

/// Equal buffers, one region each: a buffer referenced by a posted request
/// is busy until its completion is drained, and a region is busy as a whole,
/// so sharing one would block writing the others.
#[derive(Debug)]
pub(crate) struct Pool {
    regions: Vec<RegionId>,
    free: Vec<usize>,
    /// Whether each buffer is in `free`, so a release is O(1) and a
    /// buffer released twice is still listed once.
    is_free: Vec<bool>,
    size: usize,
}

impl Pool {
    pub(crate) fn register(
        transport: &mut impl Transport,
        count: usize,
        size: usize,
        access: Access,
    ) -> Result<Self, TransportError> {
        let mut regions = Vec::with_capacity(count);
        for _ in 0..count {
            match transport.register(size, access) {
                Ok(region) => regions.push(region),
                Err(e) => {
                    // Nothing was posted on these yet: they deregister at once.
                    for region in regions {
                        let _ = transport.deregister(region);
                    }
                    return Err(e);
                }
            }
        }
        Ok(Self {
            regions,
            free: (0..count).rev().collect(),
            is_free: vec![true; count],
            size,
        })
    }

    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// Buffers in the pool, taken or free.
    pub(crate) fn count(&self) -> usize {
        self.regions.len()
    }

    /// Buffers free to take.
    pub(crate) fn free_count(&self) -> usize {
        self.free.len()
    }

    pub(crate) fn take(&mut self) -> Option<usize> {
        let index = self.free.pop()?;
        if let Some(is_free) = self.is_free.get_mut(index) {
            *is_free = false;
        }
        Some(index)
    }

    pub(crate) fn release(&mut self, index: usize) {
        if let Some(is_free @ false) = self.is_free.get_mut(index) {
            *is_free = true;
            self.free.push(index);
        }
    }

    /// [`Pool::release`] that says whether `index` was taken: `false` for
    /// a buffer already free or not of this pool, which a completion
    /// should never name.
    pub(crate) fn release_taken(&mut self, index: usize) -> bool {
        let taken = matches!(self.is_free.get(index), Some(false));
        self.release(index);
        taken
    }

    pub(crate) fn all_free(&self) -> bool {
        self.free.len() == self.regions.len()
    }

    /// Every region of the pool, for [`release`].
    pub(crate) fn regions(&self) -> impl Iterator<Item = RegionId> + '_ {
        self.regions.iter().copied()
    }

    pub(crate) fn region(&self, index: usize) -> Result<RegionId, TransportError> {
        self.regions
            .get(index)
            .copied()
            .ok_or(TransportError::OutOfBounds)
    }

    pub(crate) fn slice(
        &self,
        index: usize,
        offset: usize,
        len: usize,
    ) -> Result<Slice, TransportError> {
        Ok(Slice {
            region: self.region(index)?,
            offset,
            len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{
        CONTROL_MESSAGE, Clock, FIXED_ONE, INLINE_MESSAGE, IdMap, Pool, Reading, Stamp, Work,
        client_send_size, control_size,
    };
    use rdio_core::time::Instant;
    use rdio_transport::Access;

    #[test]
    fn a_reading_converts_ticks_to_microseconds_in_fixed_point() {
        let reading = Reading {
            now: Instant::from_micros(0),
            stamp: 5_000_000,
            // 3 ticks a nanosecond: a 3 GHz counter.
            micros_per_tick: (FIXED_ONE / 3000.0) as u64,
        };
        assert_eq!(reading.micros_since(Stamp(2_000_000)), 999);
        assert_eq!(reading.micros_since(Stamp(5_000_000)), 0);
        // A stamp after the reading (never taken so) saturates to 0.
        assert_eq!(reading.micros_since(Stamp(6_000_000)), 0);
        // Years of ticks do not overflow the product; 32 fraction bits
        // keep the tick's length to a millionth.
        let late = Reading {
            stamp: u64::MAX,
            ..reading
        };
        let exact = u64::MAX / 3000;
        let micros = late.micros_since(Stamp(0));
        assert!(
            micros <= exact && exact - micros < exact / 1_000_000,
            "{micros}"
        );
    }

    #[test]
    fn a_latency_from_stamps_follows_the_monotonic_clock() {
        let clock = Clock::new();
        let submitted = clock.stamp();
        let before = clock.now();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let reading = clock.reading();
        let micros = reading.micros_since(submitted);
        let elapsed = reading.now.as_micros() - before.as_micros();
        // The stamp was taken before `before`: at least the clock's
        // elapsed time, and no more than a generous scheduling delay on.
        assert!(micros >= 20_000, "{micros} us after a 20 ms sleep");
        assert!(
            micros + 1 >= elapsed && micros <= elapsed + 50_000,
            "{micros} us by stamps, {elapsed} us by the clock"
        );
    }

    #[test]
    fn pool_buffers_are_taken_once_and_released_once() {
        let (mut transport, _peer) = rdio_loopback::pair(rdio_loopback::Config::default());
        let mut pool = Pool::register(&mut transport, 3, 16, Access::empty()).expect("pool");
        let (a, b, c) = (pool.take(), pool.take(), pool.take());
        assert_eq!((a, b, c), (Some(0), Some(1), Some(2)));
        assert_eq!(pool.take(), None);
        pool.release(1);
        pool.release(1);
        pool.release(7);
        assert_eq!(pool.take(), Some(1), "released once, listed once");
        assert_eq!(pool.take(), None);
        for index in 0..3 {
            pool.release(index);
        }
        assert!(pool.all_free());
    }

    #[test]
    fn id_maps_keep_many_ids_apart() {
        let mut map = IdMap::default();
        for id in (0..10_000u32).map(|i| i.wrapping_mul(7919)) {
            assert_eq!(map.insert(id, id), None);
        }
        assert_eq!(map.len(), 10_000);
        assert_eq!(map.get(&(5 * 7919)), Some(&(5 * 7919)));
        assert_eq!(map.remove(&(9_999 * 7919)), Some(9_999 * 7919));
    }

    #[test]
    fn work_ids_round_trip() {
        for work in [
            Work::Recv(0),
            Work::Recv(66),
            Work::Send {
                buffer: 3,
                data: None,
            },
            Work::Send {
                buffer: 0,
                data: Some(0),
            },
            Work::Send {
                buffer: 71,
                data: Some(31),
            },
            Work::ReadData(1),
            Work::MappedRead(0),
            Work::MappedRead(1000),
            Work::MappedJoined { slot: 0, buffer: 0 },
            Work::MappedJoined {
                slot: 7,
                buffer: 1000,
            },
            Work::Inline,
            Work::QuietRead(0),
            Work::QuietRead(1000),
        ] {
            assert_eq!(Work::from_id(work.id()), Some(work));
        }
        assert_eq!(Work::from_id(Work::Inline.id() | 1), None);
        assert_eq!(Work::from_id(0), None);
        assert_eq!(Work::from_id(u64::MAX), None);
    }

    #[test]
    fn the_largest_message_without_data_fits_a_control_buffer() {
        use rdio_core::wire::{
            Body, BufferDescriptor, Flags, MAX_SEGMENTS, Message, ReadSegment, ReadVRequest,
            WriteSegment, WriteVRequest,
        };
        let desc = BufferDescriptor::new(u64::MAX, u32::MAX, u32::MAX);
        let reads = [ReadSegment::new(u64::MAX, desc); MAX_SEGMENTS];
        let writes = [WriteSegment::new(u64::MAX, u32::MAX); MAX_SEGMENTS];
        let message = |body| Message {
            flags: Flags::INTERRUPT,
            credits: u16::MAX,
            demand: 0,
            request_id: u32::MAX,
            body,
        };
        let bodies = [
            Body::ReadV(ReadVRequest {
                handle: u32::MAX,
                status: desc,
                segments: &reads,
            }),
            Body::WriteV(WriteVRequest {
                handle: u32::MAX,
                total_len: u32::MAX,
                status: desc,
                segments: &writes,
                data: &[],
            }),
        ];
        for body in bodies {
            let mut buf = [0u8; CONTROL_MESSAGE];
            let len = message(body).emit_prefix(&mut buf).unwrap();
            assert!(len > 300 && len <= CONTROL_MESSAGE, "{len}");
        }
        // What goes inline: a read request and a status block.
        let read = message(Body::Read(rdio_core::wire::ReadRequest {
            handle: u32::MAX,
            offset: u64::MAX,
            dest: desc,
            status: desc,
        }));
        let mut buf = [0u8; INLINE_MESSAGE];
        let len = read.emit_prefix(&mut buf).unwrap();
        assert!(len <= INLINE_MESSAGE, "{len}");
        const { assert!(rdio_core::wire::status::STATUS_BLOCK_LEN <= INLINE_MESSAGE) };
        assert_eq!(control_size(64 << 10), CONTROL_MESSAGE);
        assert_eq!(control_size(100), 100);
        let full = rdio_core::wire::MAX_READ_BATCH_LEN;
        assert_eq!(full, 24 + 16 * 48);
        assert_eq!(client_send_size(64 << 10, true), full);
        assert_eq!(client_send_size(64 << 10, false), CONTROL_MESSAGE);
        assert_eq!(client_send_size(600, true), 600);
    }
}
