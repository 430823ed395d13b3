//! Errors of provider discovery and connection setup, and the mapping of
//! libfabric error codes onto the transport trait's error types.

use core::fmt;
use std::ffi::CStr;
use std::time::Duration;

use rdio_transport::{TransportError, WcError};

use crate::{library, sys};

/// Why a listener, a connection attempt or provider discovery failed.
///
/// Data-path failures are reported through the trait's
/// [`TransportError`] and [`WcError`] instead; these errors only occur before a
/// [`FabricTransport`](crate::FabricTransport) exists.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FabricError {
    /// libfabric could not be opened, or lacks a function rdio calls.
    Unavailable {
        /// What `dlopen` / `dlsym` said.
        reason: String,
    },
    /// `fi_getinfo` found no provider offering reliable-connected (`FI_EP_MSG`)
    /// endpoints with `FI_MSG | FI_RMA` for this provider name and address.
    NoProvider {
        /// The provider name that was asked for.
        provider: String,
        /// The positive `FI_E*` code `fi_getinfo` returned.
        code: i32,
    },
    /// The provider name contains a NUL byte, or is empty.
    InvalidProviderName,
    /// A libfabric call failed.
    Call {
        /// Which call.
        call: &'static str,
        /// The positive `FI_E*` / errno code.
        code: i32,
    },
    /// The peer refused the connection or connection setup failed
    /// (an error entry on the event queue, e.g. `ECONNREFUSED`).
    ConnectFailed {
        /// The positive error code from `fi_eq_err_entry::err`.
        code: i32,
    },
    /// No connection request or connection confirmation arrived in time.
    Timeout {
        /// What was being waited for.
        during: &'static str,
        /// How long we waited.
        waited: Duration,
    },
    /// The event queue delivered an event that makes no sense at this step.
    UnexpectedEvent {
        /// The `FI_*` event number.
        event: u32,
        /// What was being waited for.
        during: &'static str,
    },
    /// The provider uses an address format other than `sockaddr_in`/`sockaddr_in6`.
    UnsupportedAddress,
}

/// What to do about a libfabric call that failed with `code` (a negative
/// `FI_E*` / errno value).
fn call_hint(code: i32) -> &'static str {
    match code.unsigned_abs() {
        // ENOMEM, EAGAIN: registration and queue memory.
        12 | 11 => {
            "out of memory or locked memory: raise the memlock limit (`ulimit -l`, \
             LimitMEMLOCK= for a service) or lower --queue-depth / --io-size"
        }
        // EACCES, EPERM.
        13 | 1 => "permission denied by the provider or the device: run `rdio doctor`",
        // EADDRINUSE.
        98 => "the address is in use: pick another port (--rdma-port, --listen)",
        // EADDRNOTAVAIL.
        99 => "the address is not one of this host's: listen on a local address",
        _ => {
            "run `rdio doctor` to check the transport; FI_LOG_LEVEL=warn makes libfabric \
             say why"
        }
    }
}

impl fmt::Display for FabricError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unavailable { reason } => write!(
                f,
                "libfabric could not be loaded: {reason}; \
                 install libfabric1 >= 1.17 (Debian: apt-get install libfabric1)"
            ),
            Self::NoProvider { provider, code } => write!(
                f,
                "no libfabric provider {provider:?} with FI_EP_MSG + FI_MSG|FI_RMA: {}; \
                 `fi_info -l` lists this host's providers, `rdio doctor` checks them, and \
                 --provider tcp works on any host",
                strerror(*code)
            ),
            Self::InvalidProviderName => f.write_str("invalid libfabric provider name"),
            Self::Call { call, code } => write!(
                f,
                "{call} failed: {}; {}",
                strerror(*code),
                call_hint(*code)
            ),
            Self::ConnectFailed { code } => write!(
                f,
                "connection failed: {}; is the server's RDMA port reachable from here (a \
                 firewall, another address)? `rdio doctor` checks this host's transports",
                strerror(*code)
            ),
            Self::Timeout { during, waited } => write!(
                f,
                "timed out after {} s waiting for {during}",
                waited.as_secs_f64()
            ),
            Self::UnexpectedEvent { event, during } => {
                write!(
                    f,
                    "unexpected event-queue event {event} while waiting for {during}"
                )
            }
            Self::UnsupportedAddress => {
                f.write_str("provider address format is not sockaddr_in/in6")
            }
        }
    }
}

impl std::error::Error for FabricError {}

/// `fi_strerror` for a positive error code; the operating system's text
/// for it where libfabric cannot be loaded.
pub fn strerror(code: i32) -> String {
    let Ok(libfabric) = library::libfabric() else {
        return std::io::Error::from_raw_os_error(code).to_string();
    };
    // SAFETY: fi_strerror accepts any integer and returns a pointer to a static,
    // NUL-terminated string (strerror's table or libfabric's own table).
    let text = unsafe { libfabric.fi_strerror(code) };
    if text.is_null() {
        return format!("error {code}");
    }
    // SAFETY: non-null and NUL-terminated, see above; copied out immediately.
    unsafe { CStr::from_ptr(text) }
        .to_string_lossy()
        .into_owned()
}

/// Turn a negative libfabric return value into `Err(code)` with a positive code.
pub(crate) fn check(ret: isize) -> Result<usize, i32> {
    if ret < 0 {
        Err(i32::try_from(-ret).unwrap_or(i32::MAX))
    } else {
        Ok(ret.unsigned_abs())
    }
}

/// [`check`] for the `int`-returning setup calls, naming the call on failure.
pub(crate) fn check_call(call: &'static str, ret: i32) -> Result<(), FabricError> {
    if ret < 0 {
        Err(FabricError::Call { call, code: -ret })
    } else {
        Ok(())
    }
}

/// Positive errno values of connection loss: any of these on a completion or
/// a post means the peer or the link is gone.
const CONNECTION_LOST: [u32; 7] = [
    sys::FI_ENOTCONN,
    sys::FI_ECONNRESET,
    sys::FI_ECONNABORTED,
    sys::FI_ESHUTDOWN,
    sys::FI_ETIMEDOUT,
    sys::FI_EHOSTUNREACH,
    libc::EPIPE as u32,
];

/// Map a completion error (`fi_cq_err_entry::err`, positive) to the trait's
/// [`WcError`]. Table-driven so every provider's codes land in one place.
pub(crate) fn wc_error(code: i32) -> WcError {
    let Ok(unsigned) = u32::try_from(code) else {
        return WcError::Other(code);
    };
    if unsigned == sys::FI_ECANCELED {
        WcError::Flushed
    } else if CONNECTION_LOST.contains(&unsigned) {
        WcError::Disconnected
    } else if unsigned == sys::FI_ETRUNC
        || unsigned == sys::FI_ETOOSMALL
        || unsigned == sys::FI_EMSGSIZE
    {
        WcError::LocalLength
    } else if unsigned == sys::FI_EACCES || unsigned == sys::FI_EPERM || unsigned == sys::FI_ENOKEY
    {
        WcError::RemoteAccess
    } else {
        WcError::Other(code)
    }
}

/// ibverbs `ibv_wc_status` values the libfabric verbs provider passes through
/// as `prov_errno` (with `err = EIO`), mapped to the trait's codes.
const VERBS_WC_STATUS: [(i32, WcError); 6] = [
    (1, WcError::LocalLength),       // IBV_WC_LOC_LEN_ERR
    (4, WcError::LocalProtection),   // IBV_WC_LOC_PROT_ERR
    (5, WcError::Flushed),           // IBV_WC_WR_FLUSH_ERR
    (10, WcError::RemoteAccess),     // IBV_WC_REM_ACCESS_ERR
    (12, WcError::Disconnected),     // IBV_WC_RETRY_EXC_ERR
    (13, WcError::ReceiverNotReady), // IBV_WC_RNR_RETRY_EXC_ERR
];

/// Map a completion error entry: the verbs provider reports every failure as
/// `EIO` with the ibverbs status in `prov_errno`; others use specific codes.
pub(crate) fn wc_error_of(verbs: bool, err: i32, prov_errno: i32) -> WcError {
    if verbs && err == libc::EIO {
        if let Some((_, mapped)) = VERBS_WC_STATUS
            .iter()
            .find(|(status, _)| *status == prov_errno)
        {
            return *mapped;
        }
    }
    wc_error(err)
}

/// Map a failed post (`fi_send*`, `fi_recv`, `fi_write*`; positive code) to
/// the trait's [`TransportError`].
pub(crate) fn post_error(code: i32) -> TransportError {
    match u32::try_from(code) {
        Ok(sys::FI_EAGAIN) => TransportError::QueueFull,
        Ok(sys::FI_EMSGSIZE) => TransportError::MessageTooLarge,
        Ok(sys::FI_ENOMEM) => TransportError::NoMemory,
        Ok(c) if CONNECTION_LOST.contains(&c) || c == sys::FI_EOPBADSTATE => {
            TransportError::Disconnected
        }
        _ => TransportError::Os(code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_codes_map_to_trait_errors() {
        assert_eq!(wc_error(sys::FI_ECANCELED as i32), WcError::Flushed);
        assert_eq!(wc_error(sys::FI_ENOTCONN as i32), WcError::Disconnected);
        assert_eq!(wc_error(sys::FI_ETRUNC as i32), WcError::LocalLength);
        assert_eq!(wc_error(sys::FI_EACCES as i32), WcError::RemoteAccess);
        assert_eq!(
            wc_error(sys::FI_EIO as i32),
            WcError::Other(sys::FI_EIO as i32)
        );
        assert_eq!(wc_error_of(true, libc::EIO, 10), WcError::RemoteAccess);
        assert_eq!(wc_error_of(false, libc::EIO, 10), WcError::Other(libc::EIO));
        assert_eq!(post_error(sys::FI_EAGAIN as i32), TransportError::QueueFull);
        assert_eq!(
            post_error(sys::FI_ENOTCONN as i32),
            TransportError::Disconnected
        );
    }

    #[test]
    fn strerror_has_libfabric_text() {
        assert_eq!(strerror(sys::FI_ETRUNC as i32), "Truncation error");
        assert!(
            FabricError::ConnectFailed {
                code: libc::ECONNREFUSED
            }
            .to_string()
            .contains("refused")
        );
    }

    /// Failures say what to do, not only which call failed.
    #[test]
    fn failures_name_a_remedy() {
        let call = |code: i32| {
            FabricError::Call {
                call: "fi_mr_reg",
                code,
            }
            .to_string()
        };
        assert!(
            call(-libc::ENOMEM).contains("ulimit -l"),
            "{}",
            call(-libc::ENOMEM)
        );
        assert!(call(-libc::EADDRINUSE).contains("another port"));
        assert!(call(-libc::EIO).contains("rdio doctor"));
        let connect = FabricError::ConnectFailed {
            code: libc::ECONNREFUSED,
        }
        .to_string();
        assert!(connect.contains("reachable"), "{connect}");
        let timeout = FabricError::Timeout {
            during: "the connection",
            waited: std::time::Duration::from_secs(10),
        }
        .to_string();
        assert_eq!(timeout, "timed out after 10 s waiting for the connection");
    }
}
