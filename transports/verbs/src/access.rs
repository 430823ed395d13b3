//! [`rdio_transport::Access`] → `IBV_ACCESS_*` for `ibv_reg_mr`.
//!
//! A registration grants exactly the rights asked for, plus the one ibverbs
//! insists on: `ibv_reg_mr(3)` fails with `EINVAL` when
//! `IBV_ACCESS_REMOTE_WRITE` is set without `IBV_ACCESS_LOCAL_WRITE`, so
//! `REMOTE_WRITE` implies `LOCAL_WRITE`. Local read is implicit in verbs.
//! Bits of `Access` this crate does not know are ignored, never forwarded.

use rdio_transport::Access;

use crate::raw::{IBV_ACCESS_LOCAL_WRITE, IBV_ACCESS_REMOTE_READ, IBV_ACCESS_REMOTE_WRITE};

/// Each `Access` right and the `IBV_ACCESS_*` bits it needs.
const RIGHTS: [(Access, u32); 3] = [
    (Access::LOCAL_WRITE, IBV_ACCESS_LOCAL_WRITE),
    (
        Access::REMOTE_WRITE,
        IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_LOCAL_WRITE,
    ),
    (Access::REMOTE_READ, IBV_ACCESS_REMOTE_READ),
];

/// The `access` argument of `ibv_reg_mr` for a region registered with `access`.
pub fn ibv_access_flags(access: Access) -> u32 {
    RIGHTS
        .iter()
        .filter(|(right, _)| access.contains(*right))
        .fold(0, |flags, (_, bits)| flags | bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_exactly_the_needed_ones() {
        // Raw IBV_ACCESS_* values: LOCAL_WRITE = 1, REMOTE_WRITE = 2, REMOTE_READ = 4.
        let table = [
            (Access::empty(), 0),
            (Access::LOCAL_WRITE, 1),
            (Access::REMOTE_WRITE, 2 | 1),
            (Access::REMOTE_READ, 4),
            (Access::REMOTE_READ | Access::LOCAL_WRITE, 4 | 1),
            (Access::REMOTE_WRITE | Access::REMOTE_READ, 1 | 2 | 4),
            (Access::all(), 1 | 2 | 4),
        ];
        for (access, expected) in table {
            assert_eq!(ibv_access_flags(access), expected, "{access:?}");
        }
    }

    #[test]
    fn unknown_bits_are_not_forwarded() {
        let with_unknown = Access::from_bits_retain(Access::REMOTE_READ.bits() | 1 << 20);
        assert_eq!(ibv_access_flags(with_unknown), 4);
    }
}
