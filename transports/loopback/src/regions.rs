//! One endpoint's memory registrations: the equivalent of a protection domain
//! with its memory regions, local keys (here: [`RegionId`]s) and remote keys.

use rdio_transport::regions::{self, NotWritable, Registered};
use rdio_transport::{Access, RegionId, RemoteBuf, Slice, TransportError};

use crate::memory::{RegionBytes, Source};

/// Spacing of the simulated address space: regions start on page boundaries
/// with an unmapped guard page between them, like separate `mmap`s.
const PAGE: u64 = 4096;

/// A place in each of an endpoint's two work queues, counted in requests
/// since the endpoint was created: the `n`th request posted to a queue is
/// its request `n` (from 1; 0 is none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct QueuePos {
    pub(crate) sends: u64,
    pub(crate) recvs: u64,
}

/// A registered region: its bytes, remote key, place in the simulated
/// address space, and the last requests that reference it. Rights and
/// bounds are the shared table's ([`regions::RegionTable`]); the busy rule
/// is kept here, by `last_use` rather than by the shared table's counts.
pub(crate) struct Region {
    /// Boxed, so that work requests' [`Source`] pointers stay valid while
    /// the table grows.
    bytes: Box<RegionBytes>,
    key: u32,
    addr: u64,
    /// The last request of each queue of the endpoint that references the
    /// region (a gather element of a send or write, a receive buffer).
    /// Each queue's completions are drained in its order, so the region is
    /// referenced by a request whose completion has not been drained, i.e.
    /// busy, exactly while one of these has not been drained: a post marks
    /// its region here (one store where a count would be one more), and
    /// the drain gives nothing back region by region ([`RegionTable::idle`]).
    last_use: QueuePos,
}

impl Registered for Region {
    fn len(&self) -> usize {
        self.bytes.len()
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: writes to this table's memory need `&mut` on the table
        // (module docs of `memory`, rule 1); the slice borrows it.
        unsafe { self.bytes.bytes() }
    }

    fn bytes_mut(&mut self) -> Result<&mut [u8], NotWritable> {
        // Called only when the region is not busy ([`RegionTable::bytes_mut`]
        // checks first): no posted work request can still read it
        // (`memory`, rule 4).
        self.bytes.bytes_mut().ok_or(NotWritable::Lent)
    }
}

/// An endpoint's registrations. Every write to their memory needs `&mut self`
/// (see [`crate::memory`]).
pub(crate) struct RegionTable {
    /// Indexed by `RegionId`; ids are never reused, so a stale id or key stays
    /// invalid forever.
    table: regions::RegionTable<Region>,
    key_mask: u32,
    next_addr: u64,
}

/// The 64-bit SplitMix finalizer, to derive per-endpoint values from the seed.
const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const KEY_MUL_1: u32 = 0x846c_a68b;
const KEY_MUL_2: u32 = 0x7feb_352d;

/// Multiplicative inverse of an odd number modulo 2^32 (Newton's iteration:
/// each step doubles the number of correct low bits, starting from 3).
const fn inverse(odd: u32) -> u32 {
    let mut inv = odd;
    let mut step = 0;
    while step < 4 {
        inv = inv.wrapping_mul(2u32.wrapping_sub(odd.wrapping_mul(inv)));
        step += 1;
    }
    inv
}

/// A bijection on `u32` that makes consecutive region indices look random as
/// remote keys. Being invertible, it also turns a key back into the region
/// index in O(1) without a lookup table. Each step (multiplication by an
/// odd constant, xor with a shift by half the width, which is its own
/// inverse) is invertible. Three steps, a multiplication on either side:
/// the inverse, which every RDMA write runs to find its region
/// ([`unscramble`]), is then 5 instructions (9 for the five steps this
/// had). Fewer steps are linear, or nearly, for indices below 2^16 (as
/// `index ^ key_mask`, whose high half is the same for all of them); the
/// constants are in this order because the other one makes the first
/// steps between keys repeat (the test below).
const fn scramble(x: u32) -> u32 {
    let x = x.wrapping_mul(KEY_MUL_1);
    (x ^ (x >> 16)).wrapping_mul(KEY_MUL_2)
}

const fn unscramble(x: u32) -> u32 {
    let x = x.wrapping_mul(inverse(KEY_MUL_2));
    (x ^ (x >> 16)).wrapping_mul(inverse(KEY_MUL_1))
}

impl RegionTable {
    /// An empty table whose keys and addresses derive from the pair's `seed`
    /// and the endpoint's `side`, so they differ between the two endpoints
    /// and between pairs, yet every run with the same seed is identical.
    pub(crate) fn new(seed: u64, side: usize) -> Self {
        let salt = mix64(seed ^ (side as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        Self {
            table: regions::RegionTable::new(),
            // Truncation intended: the low half seeds the keys ...
            key_mask: salt as u32,
            // ... the high half places the address space, page aligned, in
            // the range user-space pointers of x86-64 Linux look like.
            next_addr: 0x1000_0000_0000 + ((salt >> 32) & 0x0fff_ffff) * PAGE,
        }
    }

    pub(crate) fn register(
        &mut self,
        len: usize,
        access: Access,
    ) -> Result<RegionId, TransportError> {
        let bytes = RegionBytes::zeroed(len).ok_or(TransportError::NoMemory)?;
        self.insert(bytes, access)
    }

    /// Give `bytes` an id, a key and a place in the address space.
    fn insert(
        &mut self,
        bytes: Box<RegionBytes>,
        access: Access,
    ) -> Result<RegionId, TransportError> {
        let index = self.table.next_id()?.0;
        let span = u64::try_from(bytes.len())
            .ok()
            .and_then(|len| len.checked_next_multiple_of(PAGE))
            .and_then(|len| len.checked_add(PAGE))
            .ok_or(TransportError::NoMemory)?;
        let addr = self.next_addr;
        let next_addr = addr.checked_add(span).ok_or(TransportError::NoMemory)?;
        let key = scramble(index ^ self.key_mask);
        let region = Region {
            bytes,
            key,
            addr,
            last_use: QueuePos::default(),
        };
        let id = self.table.insert(region, access)?;
        self.next_addr = next_addr;
        Ok(id)
    }

    /// Take memory the caller lent as a read-only region: no rights, so it
    /// can be a gather source but never a receive or write target.
    pub(crate) fn register_external<M>(&mut self, memory: M) -> Result<RegionId, TransportError>
    where
        M: AsRef<[u8]> + Send + Sync + 'static,
    {
        self.insert(RegionBytes::external(memory), Access::empty())
    }

    /// Remove region `id`; refused while it is busy, i.e. while a request
    /// referencing it is not `drained` (the endpoint's queues' position).
    pub(crate) fn deregister(
        &mut self,
        id: RegionId,
        drained: QueuePos,
    ) -> Result<(), TransportError> {
        self.idle(id, drained)?;
        self.table.remove(id).map(drop)
    }

    pub(crate) fn bytes(&self, id: RegionId) -> Result<&[u8], TransportError> {
        self.table.bytes(id)
    }

    /// Region `id`'s bytes for writing; refused while it is busy, as
    /// [`Self::deregister`].
    pub(crate) fn bytes_mut(
        &mut self,
        id: RegionId,
        drained: QueuePos,
    ) -> Result<&mut [u8], TransportError> {
        self.idle(id, drained)?;
        self.table.bytes_mut(id)
    }

    /// `Ok` if region `id` is registered and every request that referenced
    /// it has been `drained` (so no [`Source`] on it can be followed any
    /// more: `memory`, rule 4), `Busy` if not.
    fn idle(&self, id: RegionId, drained: QueuePos) -> Result<(), TransportError> {
        let last = self.table.get(id)?.last_use;
        if last.sends > drained.sends || last.recvs > drained.recvs {
            return Err(TransportError::Busy(id));
        }
        Ok(())
    }

    pub(crate) fn remote_buf(
        &self,
        id: RegionId,
        offset: usize,
        len: usize,
    ) -> Result<RemoteBuf, TransportError> {
        let (region, len) = self.table.window(id, offset, len)?;
        Ok(RemoteBuf {
            addr: region.addr + offset as u64,
            key: region.key,
            len,
        })
    }

    /// Mark `slice`'s region busy for send request `request` being posted
    /// (its queue's number, [`QueuePos`]), if the region exists: until
    /// that request is drained. Returns where the peer reads its bytes from
    /// (valid until then: `memory`, rule 4) and whether the slice is a
    /// valid source (inside the region). One lookup.
    pub(crate) fn hold_source(&mut self, slice: Slice, request: u64) -> (Option<Source>, bool) {
        match self.table.get_mut(slice.region) {
            Ok(region) => {
                region.last_use.sends = request;
                let inside = regions::within(slice.offset, slice.len, region.bytes.len());
                (Some(Source::new(&region.bytes)), inside)
            }
            Err(_) => (None, false),
        }
    }

    /// Mark a receive buffer's region busy for receive request `request`,
    /// if the region exists (validity is checked when a message lands, see
    /// [`Self::recv_target`]). Returns whether it was marked. One lookup.
    pub(crate) fn hold_recv(&mut self, slice: Slice, request: u64) -> bool {
        match self.table.get_mut(slice.region) {
            Ok(region) => {
                region.last_use.recvs = request;
                true
            }
            Err(_) => false,
        }
    }

    /// Where a message landing in receive buffer `slice` goes: the region
    /// must exist, contain the slice and grant `LOCAL_WRITE`.
    pub(crate) fn recv_target(&self, slice: Slice) -> Option<&RegionBytes> {
        let (region, access) = self.table.resolve(slice).ok()?;
        access
            .contains(Access::LOCAL_WRITE)
            .then_some(&*region.bytes)
    }

    /// Where an RDMA write of `len` bytes to `dst` lands: the key must name a
    /// live region with `REMOTE_WRITE` that contains `dst.addr .. + len`.
    /// Returns the region's bytes and the offset inside it.
    pub(crate) fn write_target(&self, dst: RemoteBuf, len: usize) -> Option<(&RegionBytes, usize)> {
        let id = RegionId(unscramble(dst.key) ^ self.key_mask);
        let (region, access) = self.table.get_with_access(id).ok()?;
        if region.key != dst.key || !access.contains(Access::REMOTE_WRITE) {
            return None;
        }
        let offset = usize::try_from(dst.addr.checked_sub(region.addr)?).ok()?;
        regions::within(offset, len, region.bytes.len()).then_some((&*region.bytes, offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_scrambling_is_a_bijection() {
        assert_eq!(KEY_MUL_1.wrapping_mul(inverse(KEY_MUL_1)), 1);
        assert_eq!(KEY_MUL_2.wrapping_mul(inverse(KEY_MUL_2)), 1);
        for x in (0..=u32::MAX).step_by(65_521).chain([0, 1, 2, u32::MAX]) {
            assert_eq!(unscramble(scramble(x)), x);
        }
        // Consecutive indices give unrelated-looking keys.
        assert_ne!(
            scramble(1).wrapping_sub(scramble(0)),
            scramble(2).wrapping_sub(scramble(1))
        );
        // Not a linear sequence anywhere, also not for small indices: the
        // steps between consecutive keys hardly repeat.
        for start in [0, 1 << 16, u32::MAX - 256] {
            let mut steps: Vec<u32> = (start..start + 256)
                .map(|x| scramble(x + 1).wrapping_sub(scramble(x)))
                .collect();
            steps.sort_unstable();
            steps.dedup();
            assert!(steps.len() > 200, "{} distinct steps", steps.len());
        }
    }

    #[test]
    fn addresses_are_page_aligned_and_separated_by_a_guard_page() {
        let mut table = RegionTable::new(7, 0);
        let a = table.register(10, Access::REMOTE_WRITE).unwrap();
        let b = table.register(PAGE as usize, Access::REMOTE_WRITE).unwrap();
        let a = table.remote_buf(a, 0, 10).unwrap();
        let b = table.remote_buf(b, 0, 1).unwrap();
        assert_eq!(a.addr % PAGE, 0);
        assert_eq!(b.addr, a.addr + 2 * PAGE);
        assert_ne!(a.key, b.key);
    }
}
