//! Out-of-line storage for the segments of in-flight vectored requests: one
//! fixed store per request-table slot, so a request entry stays small (it is
//! written once per request) and the up-to-16 segments are copied once, from
//! the message straight into their slot's store.

use crate::wire::{MAX_SEGMENTS, ReadSegment};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Room for the largest segment list (read segments are the larger kind).
const BYTES: usize = MAX_SEGMENTS * size_of::<ReadSegment>();

/// The segments of one request, as their wire bytes.
///
/// Equality and `Hash` look at the stored segments only: bytes past `len`
/// are left over from an earlier request and never read.
#[derive(Clone, Debug)]
pub(crate) struct SegmentStore {
    bytes: [u8; BYTES],
    len: usize,
}

impl SegmentStore {
    pub(crate) const EMPTY: Self = Self {
        bytes: [0; BYTES],
        len: 0,
    };

    /// Store `segments`; `false` (nothing stored) if they exceed the room.
    pub(crate) fn set<T: IntoBytes + Immutable>(&mut self, segments: &[T]) -> bool {
        let bytes = segments.as_bytes();
        match self.bytes.get_mut(..bytes.len()) {
            Some(room) => {
                room.copy_from_slice(bytes);
                self.len = bytes.len();
                true
            }
            None => false,
        }
    }

    /// The stored segments, viewed as `T` (the type they were stored as).
    pub(crate) fn get<T: FromBytes + KnownLayout + Immutable + Unaligned>(&self) -> &[T] {
        self.bytes
            .get(..self.len)
            .and_then(|bytes| <[T]>::ref_from_bytes(bytes).ok())
            .unwrap_or(&[])
    }
}

impl PartialEq for SegmentStore {
    fn eq(&self, other: &Self) -> bool {
        self.stored() == other.stored()
    }
}

impl Eq for SegmentStore {}

impl core::hash::Hash for SegmentStore {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.stored().hash(state);
    }
}

impl SegmentStore {
    fn stored(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::SegmentStore;
    use crate::wire::{BufferDescriptor, MAX_SEGMENTS, ReadSegment, WriteSegment};

    #[test]
    fn stores_both_kinds_up_to_the_limit() {
        let mut store = SegmentStore::EMPTY;
        let reads = [ReadSegment::new(7, BufferDescriptor::new(1, 2, 3)); MAX_SEGMENTS];
        assert!(store.set(&reads));
        assert_eq!(store.get::<ReadSegment>(), &reads[..]);
        let writes = [WriteSegment::new(9, 10), WriteSegment::new(20, 5)];
        assert!(store.set(&writes));
        assert_eq!(store.get::<WriteSegment>(), &writes[..]);
        let too_many = [ReadSegment::new(0, BufferDescriptor::new(0, 0, 1)); MAX_SEGMENTS + 1];
        assert!(!store.set(&too_many));
        assert_eq!(store.get::<WriteSegment>(), &writes[..], "unchanged");
    }

    #[test]
    fn equality_ignores_bytes_past_the_stored_segments() {
        let mut used = SegmentStore::EMPTY;
        let reads = [ReadSegment::new(7, BufferDescriptor::new(1, 2, 3)); 3];
        assert!(used.set(&reads));
        let writes = [WriteSegment::new(9, 10)];
        assert!(used.set(&writes));
        let mut fresh = SegmentStore::EMPTY;
        assert!(fresh.set(&writes));
        assert_eq!(used, fresh, "the reads' leftover bytes are not compared");
        assert!(fresh.set(&[WriteSegment::new(9, 11)]));
        assert_ne!(used, fresh);
    }
}
