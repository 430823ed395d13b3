//! Connection setup: an abstract-namespace Unix socket named after the
//! endpoint's socket address, the peer's kernel-verified credentials, and
//! a hello each way that proves cross-memory attach works between the two
//! processes before any work is posted.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{self as unix, UnixListener, UnixStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::frame::{self, HEADER, HELLO_LEN, Header, Kind, VERSION};
use crate::sys;
use crate::transport::CmaTransport;

/// How long [`connect`] and [`Listener::accept`] give the hello exchange.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Ports tried when [`Listener::bind`] is asked for port 0.
const EPHEMERAL: std::ops::RangeInclusive<u16> = 49152..=65535;

/// Binds tried for port 0 before giving up.
const BIND_ATTEMPTS: u32 = 64;

/// The abstract Unix socket name of `endpoint`: `rdio-cma/IP:PORT`
/// (abstract: the leading NUL byte is not part of it, and no file is
/// created). The IP address only keeps names of different listeners
/// apart; nothing is sent over IP.
pub fn socket_name(endpoint: SocketAddr) -> String {
    format!("rdio-cma/{endpoint}")
}

/// Why a connection could not be set up.
#[derive(Debug)]
#[non_exhaustive]
pub enum CmaError {
    /// The listening socket could not be created.
    Bind {
        /// The endpoint asked for.
        endpoint: SocketAddr,
        /// What the OS said (`EADDRINUSE`: another listener has that name).
        error: io::Error,
    },
    /// No listener answered at the endpoint.
    Connect {
        /// The endpoint.
        endpoint: SocketAddr,
        /// What the OS said (`ECONNREFUSED`: nobody listens on this host).
        error: io::Error,
    },
    /// The peer runs as another user: cross-memory attach would either be
    /// refused or mean trusting a stranger (docs/SECURITY.md).
    ForeignUser {
        /// The peer's uid.
        peer: u32,
        /// Ours.
        ours: u32,
    },
    /// The kernel gave no pid for the peer (it lives in a PID namespace we
    /// cannot see), so its memory cannot be addressed.
    UnknownPeer,
    /// The peer did not speak this protocol.
    BadHello(&'static str),
    /// The peer speaks another version of it.
    Version {
        /// The peer's version.
        peer: u32,
    },
    /// Reading the peer's memory failed: cross-memory attach is not
    /// allowed between the two processes (raw errno; `EPERM` under
    /// `kernel.yama.ptrace_scope` >= 1 or a non-dumpable peer).
    AttachRefused {
        /// The peer's pid.
        pid: i32,
        /// The errno of `process_vm_readv`.
        errno: i32,
    },
    /// The peer's probe did not hold what its hello promised.
    ProbeMismatch,
    /// The handshake did not finish within its timeout.
    Timeout(Duration),
    /// Another socket error during setup.
    Io(io::Error),
}

impl fmt::Display for CmaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bind { endpoint, error } => write!(
                f,
                "cannot listen on the cma socket @{}: {error}",
                socket_name(*endpoint)
            ),
            Self::Connect { endpoint, error } => write!(
                f,
                "cannot connect to the cma socket @{} (the server must run on this host): {error}",
                socket_name(*endpoint)
            ),
            Self::ForeignUser { peer, ours } => write!(
                f,
                "the cma peer runs as uid {peer}, not as this process's uid {ours}: refused"
            ),
            Self::UnknownPeer => f.write_str(
                "the cma peer's pid is not visible here (another PID namespace): refused",
            ),
            Self::BadHello(why) => write!(f, "the cma peer's hello is invalid: {why}"),
            Self::Version { peer } => write!(
                f,
                "the cma peer speaks version {peer}, this side version {VERSION}"
            ),
            Self::AttachRefused { pid, errno } => write!(
                f,
                "cross-memory attach to process {pid} refused: {} \
                 (process_vm_readv needs ptrace rights over the peer; check \
                 kernel.yama.ptrace_scope)",
                io::Error::from_raw_os_error(*errno)
            ),
            Self::ProbeMismatch => {
                f.write_str("the cma peer's memory probe does not match its hello")
            }
            Self::Timeout(limit) => write!(f, "the cma handshake took longer than {limit:?}"),
            Self::Io(error) => write!(f, "cma connection setup failed: {error}"),
        }
    }
}

impl std::error::Error for CmaError {}

fn abstract_addr(endpoint: SocketAddr) -> io::Result<unix::SocketAddr> {
    unix::SocketAddr::from_abstract_name(socket_name(endpoint).as_bytes())
}

/// Listens for connections from processes on this host.
pub struct Listener {
    listener: UnixListener,
    endpoint: SocketAddr,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

/// A pseudo-random start in the ephemeral range, so two listeners started
/// together rarely collide (a collision only costs another bind).
fn ephemeral_start() -> u16 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let span = u32::from(EPHEMERAL.end() - EPHEMERAL.start()) + 1;
    let mixed = nanos ^ std::process::id().rotate_left(16);
    EPHEMERAL.start() + (mixed % span) as u16
}

impl Listener {
    /// Listen at `endpoint`'s socket name. Port 0 picks a free one in the
    /// ephemeral range (the name is what must be unique, not a TCP port).
    pub fn bind(endpoint: SocketAddr) -> Result<Self, CmaError> {
        if endpoint.port() != 0 {
            return Self::bind_exact(endpoint);
        }
        let start = ephemeral_start();
        let span = u32::from(EPHEMERAL.end() - EPHEMERAL.start()) + 1;
        let mut last = None;
        for attempt in 0..BIND_ATTEMPTS {
            let offset = (u32::from(start - EPHEMERAL.start()) + attempt * 7919) % span;
            let port = EPHEMERAL.start() + offset as u16;
            match Self::bind_exact(SocketAddr::new(endpoint.ip(), port)) {
                Ok(listener) => return Ok(listener),
                Err(CmaError::Bind { error, .. }) if error.kind() == io::ErrorKind::AddrInUse => {
                    last = Some(error);
                }
                Err(other) => return Err(other),
            }
        }
        Err(CmaError::Bind {
            endpoint,
            error: last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrInUse)),
        })
    }

    fn bind_exact(endpoint: SocketAddr) -> Result<Self, CmaError> {
        let bind_error = |error| CmaError::Bind { endpoint, error };
        let addr = abstract_addr(endpoint).map_err(bind_error)?;
        let listener = UnixListener::bind_addr(&addr).map_err(bind_error)?;
        listener.set_nonblocking(true).map_err(bind_error)?;
        Ok(Self { listener, endpoint })
    }

    /// The endpoint clients connect to (its port chosen if 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.endpoint
    }

    /// The next connection, waiting at most `timeout` for one (`Ok(None)`
    /// if none came), then at most `handshake` for its hello.
    pub fn accept(
        &self,
        timeout: Duration,
        handshake: Duration,
    ) -> Result<Option<CmaTransport>, CmaError> {
        let ready = sys::poll_socket(self.listener.as_fd(), false, Some(timeout))
            .map_err(|code| CmaError::Io(io::Error::from_raw_os_error(code)))?;
        if !ready {
            return Ok(None);
        }
        match self.listener.accept() {
            Ok((stream, _)) => establish(stream, handshake).map(Some),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(error) => Err(CmaError::Io(error)),
        }
    }
}

/// Connect to the listener at `endpoint` on this host.
pub fn connect(endpoint: SocketAddr, timeout: Duration) -> Result<CmaTransport, CmaError> {
    let connect_error = |error| CmaError::Connect { endpoint, error };
    let addr = abstract_addr(endpoint).map_err(connect_error)?;
    let stream = UnixStream::connect_addr(&addr).map_err(connect_error)?;
    establish(stream, timeout)
}

/// A nonce for this side's probe: not a secret (the peer's identity comes
/// from the kernel), only different per connection.
fn nonce(probe: &[u8; 16]) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (probe.as_ptr() as u64).rotate_left(32) ^ u64::from(std::process::id())
}

/// Check the peer's credentials, exchange hellos, read the peer's probe.
fn establish(stream: UnixStream, timeout: Duration) -> Result<CmaTransport, CmaError> {
    let started = Instant::now();
    let cred = sys::peer_credentials(stream.as_fd()).map_err(CmaError::Io)?;
    let ours = sys::effective_uid();
    if cred.uid != ours {
        return Err(CmaError::ForeignUser {
            peer: cred.uid,
            ours,
        });
    }
    if cred.pid <= 0 {
        return Err(CmaError::UnknownPeer);
    }
    stream.set_nonblocking(false).map_err(CmaError::Io)?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(CmaError::Io)?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(CmaError::Io)?;
    let timed_out = |error: io::Error| match error.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => CmaError::Timeout(timeout),
        io::ErrorKind::UnexpectedEof => CmaError::BadHello("the peer closed the connection"),
        _ => CmaError::Io(error),
    };

    let mut probe = Box::new([0u8; 16]);
    let our_nonce = nonce(&probe);
    *probe = frame::probe(our_nonce);
    let mut hello = [0u8; HEADER + HELLO_LEN];
    hello[..HEADER].copy_from_slice(&Header::new(Kind::Hello, HELLO_LEN as u32, 0).encode());
    hello[HEADER..].copy_from_slice(&frame::hello(probe.as_ptr() as u64, our_nonce));
    let mut writer = &stream;
    writer.write_all(&hello).map_err(timed_out)?;

    let mut reader = &stream;
    let mut header = [0u8; HEADER];
    reader.read_exact(&mut header).map_err(timed_out)?;
    match Header::decode(&header) {
        Ok(h) if h.kind == Kind::Hello && h.len as usize == HELLO_LEN => {}
        _ => return Err(CmaError::BadHello("no hello frame")),
    }
    let mut payload = [0u8; HELLO_LEN];
    reader.read_exact(&mut payload).map_err(timed_out)?;
    let (version, probe_addr, peer_nonce) =
        frame::parse_hello(&payload).ok_or(CmaError::BadHello("wrong magic"))?;
    if version != VERSION {
        return Err(CmaError::Version { peer: version });
    }
    let mut seen = [0u8; 16];
    sys::read_remote(cred.pid, probe_addr, &mut seen).map_err(|errno| CmaError::AttachRefused {
        pid: cred.pid,
        errno,
    })?;
    if seen != frame::probe(peer_nonce) {
        return Err(CmaError::ProbeMismatch);
    }
    if started.elapsed() > timeout {
        return Err(CmaError::Timeout(timeout));
    }
    stream.set_read_timeout(None).map_err(CmaError::Io)?;
    stream.set_write_timeout(None).map_err(CmaError::Io)?;
    stream.set_nonblocking(true).map_err(CmaError::Io)?;
    // Keys start somewhere per connection, so a key from an earlier
    // connection is unlikely to name a window of this one.
    let first_key = (our_nonce as u32) | 1;
    Ok(CmaTransport::new(stream, cred.pid, probe, first_key))
}
