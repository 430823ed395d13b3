//! Raw values of the rdma-core enums the device-free mappings need.
//!
//! They are copied from rdma-core's `<infiniband/verbs.h>` and
//! `<rdma/rdma_cma.h>` (ABI-stable since libibverbs 1.1 / librdmacm 1.0) so
//! that provider names, access flags and completion statuses can be mapped and
//! tested without linking libibverbs. With the `verbs` feature a unit test
//! checks every value against the `rdma-sys` bindings generated from the
//! installed headers.

// enum ibv_transport_type
pub(crate) const IBV_TRANSPORT_IB: i32 = 0;
pub(crate) const IBV_TRANSPORT_IWARP: i32 = 1;

// the anonymous enum next to `struct ibv_port_attr::link_layer`
pub(crate) const IBV_LINK_LAYER_UNSPECIFIED: u8 = 0;
pub(crate) const IBV_LINK_LAYER_INFINIBAND: u8 = 1;
pub(crate) const IBV_LINK_LAYER_ETHERNET: u8 = 2;

// enum ibv_access_flags
pub(crate) const IBV_ACCESS_LOCAL_WRITE: u32 = 1;
pub(crate) const IBV_ACCESS_REMOTE_WRITE: u32 = 2;
pub(crate) const IBV_ACCESS_REMOTE_READ: u32 = 4;

// enum ibv_wc_status
pub(crate) const IBV_WC_SUCCESS: u32 = 0;
pub(crate) const IBV_WC_LOC_LEN_ERR: u32 = 1;
pub(crate) const IBV_WC_LOC_QP_OP_ERR: u32 = 2;
pub(crate) const IBV_WC_LOC_PROT_ERR: u32 = 4;
pub(crate) const IBV_WC_WR_FLUSH_ERR: u32 = 5;
pub(crate) const IBV_WC_BAD_RESP_ERR: u32 = 7;
pub(crate) const IBV_WC_LOC_ACCESS_ERR: u32 = 8;
pub(crate) const IBV_WC_REM_INV_REQ_ERR: u32 = 9;
pub(crate) const IBV_WC_REM_ACCESS_ERR: u32 = 10;
pub(crate) const IBV_WC_REM_OP_ERR: u32 = 11;
pub(crate) const IBV_WC_RETRY_EXC_ERR: u32 = 12;
pub(crate) const IBV_WC_RNR_RETRY_EXC_ERR: u32 = 13;
pub(crate) const IBV_WC_FATAL_ERR: u32 = 19;
pub(crate) const IBV_WC_RESP_TIMEOUT_ERR: u32 = 20;

/// `enum rdma_cm_event_type` names, indexed by value (what `rdma_event_str`
/// prints, without linking librdmacm).
pub(crate) const RDMA_CM_EVENT_NAMES: [&str; 16] = [
    "RDMA_CM_EVENT_ADDR_RESOLVED",
    "RDMA_CM_EVENT_ADDR_ERROR",
    "RDMA_CM_EVENT_ROUTE_RESOLVED",
    "RDMA_CM_EVENT_ROUTE_ERROR",
    "RDMA_CM_EVENT_CONNECT_REQUEST",
    "RDMA_CM_EVENT_CONNECT_RESPONSE",
    "RDMA_CM_EVENT_CONNECT_ERROR",
    "RDMA_CM_EVENT_UNREACHABLE",
    "RDMA_CM_EVENT_REJECTED",
    "RDMA_CM_EVENT_ESTABLISHED",
    "RDMA_CM_EVENT_DISCONNECTED",
    "RDMA_CM_EVENT_DEVICE_REMOVAL",
    "RDMA_CM_EVENT_MULTICAST_JOIN",
    "RDMA_CM_EVENT_MULTICAST_ERROR",
    "RDMA_CM_EVENT_ADDR_CHANGE",
    "RDMA_CM_EVENT_TIMEWAIT_EXIT",
];

/// The name of a raw `rdma_cm_event_type`, or `"RDMA_CM_EVENT_UNKNOWN"`.
pub(crate) fn cm_event_name(event: u32) -> &'static str {
    usize::try_from(event)
        .ok()
        .and_then(|index| RDMA_CM_EVENT_NAMES.get(index).copied())
        .unwrap_or("RDMA_CM_EVENT_UNKNOWN")
}

#[cfg(all(test, feature = "verbs"))]
mod tests {
    use super::*;
    use rdma_sys::{
        ibv_access_flags, ibv_transport_type, ibv_wc_status, rdma_cm_event_type, rdma_event_str,
    };

    #[test]
    fn constants_match_the_installed_headers() {
        assert_eq!(IBV_TRANSPORT_IB, ibv_transport_type::IBV_TRANSPORT_IB);
        assert_eq!(IBV_TRANSPORT_IWARP, ibv_transport_type::IBV_TRANSPORT_IWARP);
        assert_eq!(
            IBV_ACCESS_LOCAL_WRITE,
            ibv_access_flags::IBV_ACCESS_LOCAL_WRITE.0
        );
        assert_eq!(
            IBV_ACCESS_REMOTE_WRITE,
            ibv_access_flags::IBV_ACCESS_REMOTE_WRITE.0
        );
        assert_eq!(
            IBV_ACCESS_REMOTE_READ,
            ibv_access_flags::IBV_ACCESS_REMOTE_READ.0
        );
        let statuses = [
            (IBV_WC_SUCCESS, ibv_wc_status::IBV_WC_SUCCESS),
            (IBV_WC_LOC_LEN_ERR, ibv_wc_status::IBV_WC_LOC_LEN_ERR),
            (IBV_WC_LOC_QP_OP_ERR, ibv_wc_status::IBV_WC_LOC_QP_OP_ERR),
            (IBV_WC_LOC_PROT_ERR, ibv_wc_status::IBV_WC_LOC_PROT_ERR),
            (IBV_WC_WR_FLUSH_ERR, ibv_wc_status::IBV_WC_WR_FLUSH_ERR),
            (IBV_WC_BAD_RESP_ERR, ibv_wc_status::IBV_WC_BAD_RESP_ERR),
            (IBV_WC_LOC_ACCESS_ERR, ibv_wc_status::IBV_WC_LOC_ACCESS_ERR),
            (
                IBV_WC_REM_INV_REQ_ERR,
                ibv_wc_status::IBV_WC_REM_INV_REQ_ERR,
            ),
            (IBV_WC_REM_ACCESS_ERR, ibv_wc_status::IBV_WC_REM_ACCESS_ERR),
            (IBV_WC_REM_OP_ERR, ibv_wc_status::IBV_WC_REM_OP_ERR),
            (IBV_WC_RETRY_EXC_ERR, ibv_wc_status::IBV_WC_RETRY_EXC_ERR),
            (
                IBV_WC_RNR_RETRY_EXC_ERR,
                ibv_wc_status::IBV_WC_RNR_RETRY_EXC_ERR,
            ),
            (IBV_WC_FATAL_ERR, ibv_wc_status::IBV_WC_FATAL_ERR),
            (
                IBV_WC_RESP_TIMEOUT_ERR,
                ibv_wc_status::IBV_WC_RESP_TIMEOUT_ERR,
            ),
        ];
        for (ours, header) in statuses {
            assert_eq!(ours, header);
        }
        assert_eq!(
            RDMA_CM_EVENT_NAMES.len() - 1,
            rdma_cm_event_type::RDMA_CM_EVENT_TIMEWAIT_EXIT as usize
        );
    }

    /// rdma-sys defines the structs with unions by hand; these are the sizes
    /// and offsets of rdma-core 44 on x86-64 (`offsetof` in C), so a
    /// mismatch between the bindings and the installed ABI fails here
    /// instead of corrupting memory.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn hand_written_structs_match_the_c_abi() {
        use core::mem::{offset_of, size_of};
        use rdma_sys::{
            ibv_port_attr, ibv_recv_wr, ibv_send_wr, ibv_sge, ibv_wc, rdma_cm_event, rdma_cm_id,
            rdma_conn_param,
        };

        assert_eq!(size_of::<ibv_wc>(), 48);
        assert_eq!(offset_of!(ibv_wc, imm_data_invalidated_rkey_union), 24);
        assert_eq!(offset_of!(ibv_wc, wc_flags), 36);
        assert_eq!(size_of::<ibv_send_wr>(), 128);
        assert_eq!(offset_of!(ibv_send_wr, send_flags), 32);
        assert_eq!(offset_of!(ibv_send_wr, imm_data_invalidated_rkey_union), 36);
        assert_eq!(offset_of!(ibv_send_wr, wr), 40);
        assert_eq!(size_of::<ibv_recv_wr>(), 32);
        assert_eq!(size_of::<ibv_sge>(), 16);
        assert_eq!(size_of::<rdma_cm_event>(), 80);
        assert_eq!(offset_of!(rdma_cm_event, status), 20);
        assert_eq!(size_of::<rdma_cm_id>(), 416);
        assert_eq!(offset_of!(rdma_cm_id, qp), 24);
        assert_eq!(offset_of!(rdma_cm_id, route), 32);
        assert_eq!(offset_of!(rdma_cm_id, port_num), 348);
        assert_eq!(size_of::<ibv_port_attr>(), 52);
        assert_eq!(offset_of!(ibv_port_attr, link_layer), 46);
        assert_eq!(size_of::<rdma_conn_param>(), 24);
    }

    #[test]
    fn event_names_match_librdmacm() {
        for (value, name) in (0u32..).zip(RDMA_CM_EVENT_NAMES) {
            // SAFETY: rdma_event_str accepts any value and returns a pointer to
            // a static NUL-terminated string (librdmacm cma.c), never NULL.
            let theirs = unsafe { std::ffi::CStr::from_ptr(rdma_event_str(value)) };
            assert_eq!(theirs.to_str(), Ok(name), "event {value}");
        }
        assert_eq!(cm_event_name(99), "RDMA_CM_EVENT_UNKNOWN");
    }
}
