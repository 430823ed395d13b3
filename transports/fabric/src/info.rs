//! Provider discovery: the `fi_getinfo` hints every rdio connection uses,
//! provider-name handling and socket-address conversion.

use std::ffi::{CStr, CString};
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::ptr;

use crate::error::FabricError;
use crate::object::Info;
use crate::{library, sys};

/// Prefix of provider names on rdio's negotiation side channel.
pub const PROVIDER_PREFIX: &str = "ofi:";

/// The provider used when none is named: libfabric's `tcp` (sockets over the
/// kernel TCP stack; works anywhere, no RDMA hardware needed).
pub const DEFAULT_PROVIDER: &str = "tcp";

/// Capabilities rdio needs: two-sided messages and one-sided writes, in both
/// directions, plus the remote-read right so `Access::REMOTE_READ` regions
/// can be registered.
const CAPS: u64 = (sys::FI_MSG
    | sys::FI_RMA
    | sys::FI_SEND
    | sys::FI_RECV
    | sys::FI_WRITE
    | sys::FI_READ
    | sys::FI_REMOTE_WRITE
    | sys::FI_REMOTE_READ) as u64;

/// Memory-registration modes rdio can honour (see `region.rs`): local
/// descriptors are always passed, RMA addresses follow `FI_MR_VIRT_ADDR`,
/// keys follow `FI_MR_PROV_KEY`, and buffers are always allocated memory.
/// `FI_MR_ENDPOINT`, `FI_MR_RAW` and `FI_MR_HMEM` are not offered.
const MR_MODES: i32 =
    (sys::FI_MR_LOCAL | sys::FI_MR_VIRT_ADDR | sys::FI_MR_ALLOCATED | sys::FI_MR_PROV_KEY) as i32;

/// Operation ordering rdio relies on: a send after a write is placed after it
/// (RC semantics; the emulated write-with-immediate depends on it) and sends
/// are delivered in order.
const MSG_ORDER: u64 = (sys::FI_ORDER_SAW | sys::FI_ORDER_SAS) as u64;

/// Modes rdio accepts: operation contexts are real `fi_context2` storage, and
/// a provider may make remote CQ data consume a receive (`FI_RX_CQ_DATA`,
/// verbs), which is exactly the trait's write-with-immediate contract.
const MODES: u64 = sys::FI_CONTEXT | sys::FI_CONTEXT2 | sys::FI_RX_CQ_DATA;

/// Strip an optional `ofi:` prefix: `"ofi:tcp"` and `"tcp"` name the same provider.
pub(crate) fn bare_provider(name: &str) -> &str {
    name.strip_prefix(PROVIDER_PREFIX).unwrap_or(name)
}

/// Build the hints for `provider` (or any provider when `None`).
///
/// Every way into libfabric starts here, so this is where the library is
/// opened ([`library::libfabric`]), on first use.
pub(crate) fn hints(provider: Option<&str>, addr_format: Option<u32>) -> Result<Info, FabricError> {
    let info = Info::alloc(library::libfabric()?).ok_or(FabricError::Call {
        call: "fi_allocinfo",
        code: libc::ENOMEM,
    })?;
    let raw = info.as_ptr();
    // SAFETY: fi_allocinfo allocated the fi_info and all of its attribute
    // structs; we only store plain values and one strdup'ed string that
    // fi_freeinfo will free.
    unsafe {
        (*raw).caps = CAPS;
        (*raw).mode = MODES;
        (*(*raw).ep_attr).type_ = sys::fi_ep_type_FI_EP_MSG;
        (*(*raw).domain_attr).mr_mode = MR_MODES;
        (*(*raw).domain_attr).threading = sys::fi_threading_FI_THREAD_DOMAIN;
        (*(*raw).tx_attr).msg_order = MSG_ORDER;
        (*(*raw).rx_attr).msg_order = MSG_ORDER;
        if let Some(format) = addr_format {
            (*raw).addr_format = format;
        }
        if let Some(provider) = provider {
            let name = CString::new(bare_provider(provider))
                .map_err(|_| FabricError::InvalidProviderName)?;
            if name.as_bytes().is_empty() {
                return Err(FabricError::InvalidProviderName);
            }
            let copy = libc::strdup(name.as_ptr());
            if copy.is_null() {
                return Err(FabricError::Call {
                    call: "strdup",
                    code: libc::ENOMEM,
                });
            }
            (*(*raw).fabric_attr).prov_name = copy;
        }
    }
    Ok(info)
}

/// `fi_getinfo` for `provider` at `addr` (`source`: a local address to listen
/// on, else a remote address to connect to).
pub(crate) fn getinfo(provider: &str, addr: SocketAddr, source: bool) -> Result<Info, FabricError> {
    let format = if addr.is_ipv4() {
        sys::FI_SOCKADDR_IN
    } else {
        sys::FI_SOCKADDR_IN6
    };
    let hints = hints(Some(provider), Some(format))?;
    let node = CString::new(addr.ip().to_string()).expect("an IP address has no NUL");
    let service = CString::new(addr.port().to_string()).expect("a port number has no NUL");
    let flags = if source { sys::FI_SOURCE } else { 0 };
    let libfabric = hints.libfabric();
    let mut list: *mut sys::fi_info = ptr::null_mut();
    // SAFETY: node/service are NUL-terminated and outlive the call, hints is a
    // valid fi_info, and `list` receives a new list that we take ownership of.
    let ret = unsafe {
        libfabric.fi_getinfo(
            sys::rdio_fi_version(),
            node.as_ptr(),
            service.as_ptr(),
            flags,
            hints.as_ptr(),
            &mut list,
        )
    };
    if ret < 0 {
        return Err(FabricError::NoProvider {
            provider: provider.to_owned(),
            code: -ret,
        });
    }
    // SAFETY: fi_getinfo succeeded, so `list` is a list only we free.
    unsafe { Info::from_raw(libfabric, list) }.ok_or(FabricError::NoProvider {
        provider: provider.to_owned(),
        code: sys::FI_ENODATA as i32,
    })
}

/// The provider name of an `fi_info` (`fabric_attr->prov_name`).
pub(crate) fn provider_name(info: &sys::fi_info) -> String {
    // SAFETY: fabric_attr is allocated for every info fi_getinfo returns, and
    // prov_name is NULL or a NUL-terminated string owned by the info.
    unsafe {
        let name = info
            .fabric_attr
            .as_ref()
            .map_or(ptr::null(), |attr| attr.prov_name);
        if name.is_null() {
            String::new()
        } else {
            CStr::from_ptr(name).to_string_lossy().into_owned()
        }
    }
}

/// Providers on this machine that offer reliable-connected (`FI_EP_MSG`)
/// endpoints with `FI_MSG | FI_RMA` under rdio's modes, named for rdio's
/// provider negotiation (`"ofi:tcp"`, `"ofi:verbs"`, ...), without duplicates,
/// in libfabric's preference order.
///
/// Note that on RDMA hardware `"verbs;ofi_rxm"` is *not* listed: `ofi_rxm`
/// layers reliable-datagram (`FI_EP_RDM`) endpoints over verbs, while rdio
/// needs connected `FI_EP_MSG` endpoints, which plain `"verbs"` provides.
///
/// Empty when no provider qualifies; an error when libfabric cannot be
/// loaded ([`FabricError::Unavailable`]) or `fi_getinfo` fails otherwise.
pub fn providers() -> Result<Vec<String>, FabricError> {
    let hints = hints(None, None)?;
    let libfabric = hints.libfabric();
    let mut list: *mut sys::fi_info = ptr::null_mut();
    // SAFETY: valid hints, no node/service; `list` receives a new list.
    let ret = unsafe {
        libfabric.fi_getinfo(
            sys::rdio_fi_version(),
            ptr::null(),
            ptr::null(),
            0,
            hints.as_ptr(),
            &mut list,
        )
    };
    if ret == -(sys::FI_ENODATA as i32) {
        return Ok(Vec::new());
    }
    crate::error::check_call("fi_getinfo", ret)?;
    // SAFETY: fi_getinfo succeeded; we own the list.
    let Some(list) = (unsafe { Info::from_raw(libfabric, list) }) else {
        return Ok(Vec::new());
    };
    let mut names: Vec<String> = Vec::new();
    for info in list.iter() {
        let name = format!("{PROVIDER_PREFIX}{}", provider_name(info));
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

/// Decode a `sockaddr_in` / `sockaddr_in6` the provider handed back.
pub(crate) fn socket_addr(bytes: &[u8]) -> Result<SocketAddr, FabricError> {
    if bytes.len() >= mem::size_of::<libc::sockaddr_in>() {
        // SAFETY: at least a sockaddr_in's worth of bytes; read_unaligned
        // copies them out whatever their alignment.
        let v4: libc::sockaddr_in = unsafe { ptr::read_unaligned(bytes.as_ptr().cast()) };
        if i32::from(v4.sin_family) == libc::AF_INET {
            let ip = Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
            return Ok(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(v4.sin_port),
            )));
        }
    }
    if bytes.len() >= mem::size_of::<libc::sockaddr_in6>() {
        // SAFETY: as above, for a sockaddr_in6.
        let v6: libc::sockaddr_in6 = unsafe { ptr::read_unaligned(bytes.as_ptr().cast()) };
        if i32::from(v6.sin6_family) == libc::AF_INET6 {
            let ip = Ipv6Addr::from(v6.sin6_addr.s6_addr);
            return Ok(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(v6.sin6_port),
                v6.sin6_flowinfo,
                v6.sin6_scope_id,
            )));
        }
    }
    Err(FabricError::UnsupportedAddress)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_prefix_is_optional() {
        assert_eq!(bare_provider("ofi:tcp"), "tcp");
        assert_eq!(bare_provider("verbs"), "verbs");
    }

    #[test]
    fn bad_provider_names_are_rejected() {
        assert_eq!(
            hints(Some("tc\0p"), None).err(),
            Some(FabricError::InvalidProviderName)
        );
        assert_eq!(
            hints(Some("ofi:"), None).err(),
            Some(FabricError::InvalidProviderName)
        );
    }

    #[test]
    fn tcp_is_listed() {
        let names = providers().unwrap();
        assert!(
            names.iter().any(|n| n == "ofi:tcp"),
            "providers() = {names:?}"
        );
        assert!(names.iter().all(|n| n.starts_with(PROVIDER_PREFIX)));
    }

    #[test]
    fn unknown_provider_is_a_typed_error() {
        let err = getinfo("no-such-provider", "127.0.0.1:0".parse().unwrap(), true)
            .err()
            .unwrap();
        assert!(
            matches!(err, FabricError::NoProvider { ref provider, .. } if provider == "no-such-provider")
        );
    }
}
