//! Connection management: a passive endpoint that accepts connections, and
//! active connects, both over an event queue (`FI_CONNREQ`, `FI_CONNECTED`).
//!
//! This is the part of the transport the trait leaves out on purpose: a
//! driver gets an already connected [`FabricTransport`].

use std::net::SocketAddr;
use std::ptr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{FabricError, check_call};
use crate::info::{self, bare_provider};
use crate::object::{self, Fabric, Info, Owned};
use crate::sys;
use crate::transport::{FabricTransport, wait_event};

/// How long [`connect`] waits for the peer to accept.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connect to a [`Listener`] at `addr` through `provider` (`"tcp"`,
/// `"verbs"`, optionally prefixed `"ofi:"`), waiting up to
/// [`DEFAULT_CONNECT_TIMEOUT`].
pub fn connect(addr: SocketAddr, provider: &str) -> Result<FabricTransport, FabricError> {
    connect_timeout(addr, provider, DEFAULT_CONNECT_TIMEOUT)
}

/// [`connect`] with an explicit timeout for the whole handshake.
pub fn connect_timeout(
    addr: SocketAddr,
    provider: &str,
    timeout: Duration,
) -> Result<FabricTransport, FabricError> {
    let deadline = Instant::now() + timeout;
    let info = Arc::new(info::getinfo(provider, addr, false)?);
    let fabric = Fabric::open(info.clone())?;
    let dest_addr = info.get().dest_addr;
    let mut transport = FabricTransport::open(fabric, info)?;
    // SAFETY: the endpoint is open and enabled; dest_addr is the sockaddr
    // fi_getinfo resolved for `addr`, owned by the info the transport keeps.
    check_call("fi_connect", unsafe {
        sys::rdio_fi_connect(transport.endpoint(), dest_addr, ptr::null(), 0)
    })?;
    transport.wait_connected(Some(deadline), timeout)?;
    Ok(transport)
}

/// A passive endpoint listening for rdio connections.
pub struct Listener {
    // Drop order: the passive endpoint before the event queue it is bound to,
    // both before our reference to the fabric.
    pep: Owned<sys::fid_pep>,
    eq: Owned<sys::fid_eq>,
    fabric: Arc<Fabric>,
    /// The info the passive endpoint was opened from (see [`Fabric`]).
    info: Arc<Info>,
    local: SocketAddr,
}

// SAFETY: the passive endpoint and its event queue are used only through
// `&self` calls that libfabric serializes internally (fi_eq_sread / fi_reject
// on an EQ and PEP are thread safe), and the fabric is Send + Sync.
unsafe impl Send for Listener {}

impl Listener {
    /// Listen on `addr` (port 0 picks a free port; see [`Listener::local_addr`])
    /// through `provider`.
    pub fn bind(addr: SocketAddr, provider: &str) -> Result<Self, FabricError> {
        let info = Arc::new(info::getinfo(bare_provider(provider), addr, true)?);
        let fabric = Fabric::open(info.clone())?;
        let eq = object::open("fi_eq_open", |out| {
            let mut attr = sys::fi_eq_attr {
                size: 64,
                wait_obj: sys::fi_wait_obj_FI_WAIT_UNSPEC,
                ..Default::default()
            };
            // SAFETY: the fabric is open; attr lives across the call.
            unsafe { sys::rdio_fi_eq_open(fabric.as_ptr(), &mut attr, out, ptr::null_mut()) }
        })?;
        let pep = object::open("fi_passive_ep", |out| {
            // SAFETY: the fabric is open and `info` describes a passive
            // endpoint at the FI_SOURCE address; the listener keeps `info`
            // alive longer than the passive endpoint.
            unsafe { sys::rdio_fi_passive_ep(fabric.as_ptr(), info.as_ptr(), out, ptr::null_mut()) }
        })?;
        // SAFETY: the passive endpoint and EQ are open, on the same fabric.
        unsafe {
            check_call(
                "fi_pep_bind",
                sys::rdio_fi_pep_bind(pep.as_ptr(), eq.fid(), 0),
            )?;
            check_call("fi_listen", sys::rdio_fi_listen(pep.as_ptr()))?;
        }
        let mut name = [0u8; 128];
        let mut len = name.len();
        // SAFETY: the passive endpoint is listening; `name` holds `len` bytes.
        check_call("fi_getname", unsafe {
            sys::rdio_fi_getname(pep.fid(), name.as_mut_ptr().cast(), &mut len)
        })?;
        let local = info::socket_addr(&name[..len.min(name.len())])?;
        Ok(Self {
            pep,
            eq,
            fabric,
            info,
            local,
        })
    }

    /// The address the listener is bound to, with the port the provider
    /// picked when binding to port 0.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Accept the next connection, waiting as long as it takes.
    pub fn accept(&self) -> Result<FabricTransport, FabricError> {
        self.accept_until(None, Duration::MAX)
    }

    /// Accept the next connection, waiting at most `timeout` for the request
    /// and the handshake together.
    pub fn accept_timeout(&self, timeout: Duration) -> Result<FabricTransport, FabricError> {
        self.accept_until(Some(Instant::now() + timeout), timeout)
    }

    /// Wait at most `wait` for a connection request (`Ok(None)` when none
    /// came), then accept it with `handshake` for the handshake alone.
    ///
    /// For servers that accept in slices so they can notice a shutdown
    /// between them: with [`Listener::accept_timeout`] a request arriving at
    /// the end of a slice would be left no time for its handshake.
    pub fn accept_within(
        &self,
        wait: Duration,
        handshake: Duration,
    ) -> Result<Option<FabricTransport>, FabricError> {
        let during = "FI_CONNREQ";
        match wait_event(&self.eq, Some(Instant::now() + wait), wait, during) {
            Ok((event, raw_info)) => self
                .accept_request(event, raw_info, Some(Instant::now() + handshake), handshake)
                .map(Some),
            Err(FabricError::Timeout { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    fn accept_until(
        &self,
        deadline: Option<Instant>,
        timeout: Duration,
    ) -> Result<FabricTransport, FabricError> {
        let during = "FI_CONNREQ";
        let (event, raw_info) = wait_event(&self.eq, deadline, timeout, during)?;
        self.accept_request(event, raw_info, deadline, timeout)
    }

    /// Accept the connection request `event` (with its info) delivered.
    fn accept_request(
        &self,
        event: u32,
        raw_info: *mut sys::fi_info,
        deadline: Option<Instant>,
        timeout: Duration,
    ) -> Result<FabricTransport, FabricError> {
        let during = "FI_CONNREQ";
        // SAFETY: a CM event's info (if any) is a new fi_info list that the
        // application must free; we take ownership of it here.
        let info = unsafe { Info::from_raw(self.info.libfabric(), raw_info) };
        let info = match (event, info) {
            (sys::FI_CONNREQ, Some(info)) => Arc::new(info),
            (event, _) => return Err(FabricError::UnexpectedEvent { event, during }),
        };
        let handle = info.get().handle;
        let mut transport = match FabricTransport::open(self.fabric.clone(), info) {
            Ok(transport) => transport,
            Err(err) => {
                // SAFETY: the passive endpoint is open and `handle` is the
                // pending request of this CONNREQ.
                unsafe { sys::rdio_fi_reject(self.pep.as_ptr(), handle, ptr::null(), 0) };
                return Err(err);
            }
        };
        // SAFETY: the endpoint was opened from the CONNREQ info, so it is
        // tied to this request.
        check_call("fi_accept", unsafe {
            sys::rdio_fi_accept(transport.endpoint(), ptr::null(), 0)
        })?;
        transport.wait_connected(deadline, timeout)?;
        Ok(transport)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    #[test]
    fn accept_within_returns_none_without_a_request_then_accepts_one() {
        let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), "tcp").unwrap();
        let started = Instant::now();
        let nothing = listener
            .accept_within(Duration::from_millis(50), Duration::from_secs(5))
            .unwrap();
        assert!(nothing.is_none());
        assert!(started.elapsed() >= Duration::from_millis(50));
        let addr = listener.local_addr();
        let client = thread::spawn(move || connect(addr, "tcp").unwrap());
        let accepted = loop {
            // Slices far shorter than a handshake: each request still gets
            // the full handshake time.
            if let Some(transport) = listener
                .accept_within(Duration::from_millis(1), Duration::from_secs(5))
                .unwrap()
            {
                break transport;
            }
        };
        let client = client.join().unwrap();
        assert!(accepted.is_connected() && client.is_connected());
    }
}
