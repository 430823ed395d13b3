//! Work-completion status (`ibv_wc_status`) → [`rdio_transport::WcError`].
//!
//! An RC queue pair that reports any error status is in the error state
//! afterwards (InfiniBand spec, C10-100): every other outstanding request is
//! flushed. Statuses that mean "the connection itself failed" (transport
//! retries exhausted, bad response, local QP operation error, fatal device
//! error, response timeout) therefore map to [`WcError::Disconnected`]; a
//! peer refusing a request it received (its receive too small or invalid:
//! `REM_INV_REQ_ERR`, `REM_OP_ERR`) is [`WcError::RemoteOperation`]; the
//! rest keep their specific meaning and anything without an rdio equivalent
//! stays [`WcError::Other`] with the raw status, whose libibverbs text
//! `wc_status_str` (feature `verbs`) gives for messages.

use rdio_transport::WcError;

use crate::raw::{
    IBV_WC_BAD_RESP_ERR, IBV_WC_FATAL_ERR, IBV_WC_LOC_ACCESS_ERR, IBV_WC_LOC_LEN_ERR,
    IBV_WC_LOC_PROT_ERR, IBV_WC_LOC_QP_OP_ERR, IBV_WC_REM_ACCESS_ERR, IBV_WC_REM_INV_REQ_ERR,
    IBV_WC_REM_OP_ERR, IBV_WC_RESP_TIMEOUT_ERR, IBV_WC_RETRY_EXC_ERR, IBV_WC_RNR_RETRY_EXC_ERR,
    IBV_WC_SUCCESS, IBV_WC_WR_FLUSH_ERR,
};

/// `Ok` for `IBV_WC_SUCCESS`, otherwise the rdio meaning of a raw
/// `ibv_wc_status`.
pub fn wc_status_result(status: u32) -> Result<(), WcError> {
    let error = match status {
        IBV_WC_SUCCESS => return Ok(()),
        IBV_WC_LOC_LEN_ERR => WcError::LocalLength,
        IBV_WC_LOC_PROT_ERR | IBV_WC_LOC_ACCESS_ERR => WcError::LocalProtection,
        IBV_WC_WR_FLUSH_ERR => WcError::Flushed,
        IBV_WC_REM_ACCESS_ERR => WcError::RemoteAccess,
        IBV_WC_REM_INV_REQ_ERR | IBV_WC_REM_OP_ERR => WcError::RemoteOperation,
        IBV_WC_RNR_RETRY_EXC_ERR => WcError::ReceiverNotReady,
        IBV_WC_LOC_QP_OP_ERR
        | IBV_WC_BAD_RESP_ERR
        | IBV_WC_RETRY_EXC_ERR
        | IBV_WC_FATAL_ERR
        | IBV_WC_RESP_TIMEOUT_ERR => WcError::Disconnected,
        other => WcError::Other(i32::try_from(other).unwrap_or(i32::MAX)),
    };
    Err(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_a_meaning() {
        // Raw ibv_wc_status values 0..=23 from <infiniband/verbs.h>.
        let table = [
            (0, Ok(())),
            (1, Err(WcError::LocalLength)),            // LOC_LEN_ERR
            (2, Err(WcError::Disconnected)),           // LOC_QP_OP_ERR
            (3, Err(WcError::Other(3))),               // LOC_EEC_OP_ERR
            (4, Err(WcError::LocalProtection)),        // LOC_PROT_ERR
            (5, Err(WcError::Flushed)),                // WR_FLUSH_ERR
            (6, Err(WcError::Other(6))),               // MW_BIND_ERR
            (7, Err(WcError::Disconnected)),           // BAD_RESP_ERR
            (8, Err(WcError::LocalProtection)),        // LOC_ACCESS_ERR
            (9, Err(WcError::RemoteOperation)),        // REM_INV_REQ_ERR
            (10, Err(WcError::RemoteAccess)),          // REM_ACCESS_ERR
            (11, Err(WcError::RemoteOperation)),       // REM_OP_ERR
            (12, Err(WcError::Disconnected)),          // RETRY_EXC_ERR
            (13, Err(WcError::ReceiverNotReady)),      // RNR_RETRY_EXC_ERR
            (14, Err(WcError::Other(14))),             // LOC_RDD_VIOL_ERR
            (15, Err(WcError::Other(15))),             // REM_INV_RD_REQ_ERR
            (16, Err(WcError::Other(16))),             // REM_ABORT_ERR
            (17, Err(WcError::Other(17))),             // INV_EECN_ERR
            (18, Err(WcError::Other(18))),             // INV_EEC_STATE_ERR
            (19, Err(WcError::Disconnected)),          // FATAL_ERR
            (20, Err(WcError::Disconnected)),          // RESP_TIMEOUT_ERR
            (21, Err(WcError::Other(21))),             // GENERAL_ERR
            (22, Err(WcError::Other(22))),             // TM_ERR
            (23, Err(WcError::Other(23))),             // TM_RNDV_INCOMPLETE
            (u32::MAX, Err(WcError::Other(i32::MAX))), // garbage from a provider
        ];
        for (status, expected) in table {
            assert_eq!(wc_status_result(status), expected, "status {status}");
        }
    }
}
