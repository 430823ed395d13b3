//! Work-request construction as pure functions.
//!
//! Building `ibv_send_wr` / `ibv_recv_wr` touches no device, so it is kept
//! apart from posting and unit-tested field by field. The structs point at
//! the caller's `ibv_sge` array, which must outlive the post call (the HCA
//! copies the work request at post time; the *data* must stay registered and
//! untouched until the completion, which the transport's busy tracking
//! enforces).
//!
//! Every send-queue request is `IBV_SEND_SIGNALED`: its completion is what
//! releases the regions it references, so none may complete silently.
//! Immediate data goes into the work request in network byte order, as the
//! verbs ABI specifies (`__be32 imm_data`); receivers convert back with
//! `u32::from_be`, so a value survives the trip between any two verbs peers,
//! whatever their endianness or language.

use std::ptr;

use rdio_transport::RemoteBuf;
use rdma_sys::{
    bind_mw_tso_union_t, ibv_recv_wr, ibv_send_flags, ibv_send_wr, ibv_sge, ibv_wr_opcode,
    imm_data_invalidated_rkey_union_t, qp_type_t, rdma_t, tso_t, wr_t, xrc_t,
};

/// What a send-queue work request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SendOp {
    /// A two-sided send, consuming one posted receive at the peer.
    Send {
        /// Immediate data (`IBV_WR_SEND_WITH_IMM`).
        imm: Option<u32>,
    },
    /// A one-sided RDMA write into the peer's `remote` window; with `imm`, it
    /// also consumes a peer receive (`IBV_WR_RDMA_WRITE_WITH_IMM`).
    Write {
        /// Destination in the peer's memory.
        remote: RemoteBuf,
        /// Immediate data.
        imm: Option<u32>,
    },
}

/// One scatter/gather element.
pub(crate) const fn sge(addr: u64, length: u32, lkey: u32) -> ibv_sge {
    ibv_sge { addr, length, lkey }
}

/// A signaled send-queue work request over `sges`, with `IBV_SEND_INLINE`
/// when `inline` (the caller checked the total against the QP's
/// `max_inline_data`).
pub(crate) fn send_wr(wr_id: u64, sges: &mut [ibv_sge], op: SendOp, inline: bool) -> ibv_send_wr {
    let (opcode, imm, rdma) = match op {
        SendOp::Send { imm: None } => (
            ibv_wr_opcode::IBV_WR_SEND,
            None,
            rdma_t {
                remote_addr: 0,
                rkey: 0,
            },
        ),
        SendOp::Send { imm: Some(imm) } => (
            ibv_wr_opcode::IBV_WR_SEND_WITH_IMM,
            Some(imm),
            rdma_t {
                remote_addr: 0,
                rkey: 0,
            },
        ),
        SendOp::Write { remote, imm } => {
            let opcode = match imm {
                None => ibv_wr_opcode::IBV_WR_RDMA_WRITE,
                Some(_) => ibv_wr_opcode::IBV_WR_RDMA_WRITE_WITH_IMM,
            };
            (
                opcode,
                imm,
                rdma_t {
                    remote_addr: remote.addr,
                    rkey: remote.key,
                },
            )
        }
    };
    let mut flags = ibv_send_flags::IBV_SEND_SIGNALED;
    if inline {
        flags |= ibv_send_flags::IBV_SEND_INLINE;
    }
    ibv_send_wr {
        wr_id,
        next: ptr::null_mut(),
        sg_list: sges.as_mut_ptr(),
        num_sge: sge_count(sges),
        opcode,
        send_flags: flags.0,
        imm_data_invalidated_rkey_union: imm_data_invalidated_rkey_union_t {
            imm_data: imm.map_or(0, u32::to_be),
        },
        wr: wr_t { rdma },
        qp_type: qp_type_t {
            xrc: xrc_t { remote_srqn: 0 },
        },
        bind_mw_tso_union: bind_mw_tso_union_t {
            tso: tso_t {
                hdr: ptr::null_mut(),
                hdr_sz: 0,
                mss: 0,
            },
        },
    }
}

/// A receive work request over `sges` (empty for a buffer that only takes
/// write-with-immediate notifications or zero-length sends).
pub(crate) fn recv_wr(wr_id: u64, sges: &mut [ibv_sge]) -> ibv_recv_wr {
    ibv_recv_wr {
        wr_id,
        next: ptr::null_mut(),
        sg_list: sges.as_mut_ptr(),
        num_sge: sge_count(sges),
    }
}

/// `num_sge`: callers pass at most `SGE_LIMIT` elements.
fn sge_count(sges: &[ibv_sge]) -> i32 {
    i32::try_from(sges.len()).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIGNALED: u32 = 2; // IBV_SEND_SIGNALED
    const INLINE: u32 = 8; // IBV_SEND_INLINE

    #[test]
    fn sge_fields() {
        let element = sge(0x7f00_1000, 4096, 0x1234);
        assert_eq!(
            (element.addr, element.length, element.lkey),
            (0x7f00_1000, 4096, 0x1234)
        );
    }

    #[test]
    fn plain_send() {
        let mut sges = [sge(0x1000, 16, 7), sge(0x2000, 32, 8)];
        let wr = send_wr(42, &mut sges, SendOp::Send { imm: None }, false);
        assert_eq!(wr.wr_id, 42);
        assert!(wr.next.is_null());
        assert_eq!(wr.sg_list, sges.as_mut_ptr());
        assert_eq!(wr.num_sge, 2);
        assert_eq!(wr.opcode, 2); // IBV_WR_SEND
        assert_eq!(wr.send_flags, SIGNALED);
    }

    #[test]
    fn inline_send_with_immediate_is_big_endian() {
        let mut sges = [sge(0x1000, 16, 7)];
        let wr = send_wr(
            1,
            &mut sges,
            SendOp::Send {
                imm: Some(0x0102_0304),
            },
            true,
        );
        assert_eq!(wr.opcode, 3); // IBV_WR_SEND_WITH_IMM
        assert_eq!(wr.send_flags, SIGNALED | INLINE);
        // SAFETY: send_wr always initialises the `imm_data` member of this
        // union of two u32s.
        let imm = unsafe { wr.imm_data_invalidated_rkey_union.imm_data };
        assert_eq!(imm.to_ne_bytes(), [1, 2, 3, 4]);
    }

    #[test]
    fn rdma_write_targets_the_remote_window() {
        let remote = RemoteBuf {
            addr: 0xdead_beef_0000,
            key: 0xabcd,
            len: 64,
        };
        let mut sges = [sge(0x1000, 64, 7)];
        let wr = send_wr(9, &mut sges, SendOp::Write { remote, imm: None }, false);
        assert_eq!(wr.opcode, 0); // IBV_WR_RDMA_WRITE
        assert_eq!(wr.send_flags, SIGNALED);
        // SAFETY: send_wr always initialises the `rdma` member of `wr`.
        let rdma = unsafe { wr.wr.rdma };
        assert_eq!((rdma.remote_addr, rdma.rkey), (0xdead_beef_0000, 0xabcd));
    }

    #[test]
    fn rdma_write_with_immediate() {
        let remote = RemoteBuf {
            addr: 0x10,
            key: 5,
            len: 8,
        };
        let mut sges = [sge(0x1000, 8, 7)];
        let wr = send_wr(
            3,
            &mut sges,
            SendOp::Write {
                remote,
                imm: Some(0xcafe),
            },
            true,
        );
        assert_eq!(wr.opcode, 1); // IBV_WR_RDMA_WRITE_WITH_IMM
        assert_eq!(wr.send_flags, SIGNALED | INLINE);
        // SAFETY: both union members read here were initialised by send_wr.
        let (imm, rdma) = unsafe { (wr.imm_data_invalidated_rkey_union.imm_data, wr.wr.rdma) };
        assert_eq!(u32::from_be(imm), 0xcafe);
        assert_eq!((rdma.remote_addr, rdma.rkey), (0x10, 5));
    }

    #[test]
    fn receive_requests() {
        let mut sges = [sge(0x3000, 128, 9)];
        let wr = recv_wr(77, &mut sges);
        assert_eq!((wr.wr_id, wr.num_sge), (77, 1));
        assert_eq!(wr.sg_list, sges.as_mut_ptr());
        assert!(wr.next.is_null());
        let empty = recv_wr(78, &mut []);
        assert_eq!(empty.num_sge, 0);
    }
}
