//! rdio between two processes on one host: the
//! [`rdio_transport::Transport`] trait over **cross-memory attach**.
//!
//! An RDMA write is what its name says — the initiator's CPU copies its
//! gather list straight into the peer's registered memory with
//! `process_vm_writev(2)`, one copy, no socket and no kernel buffer in
//! between, as libfabric's `shm` provider and MPI implementations do for
//! intra-node RMA. Everything two-sided (small sends, the notification of
//! a write-with-immediate, window advertisements) travels as frames on a
//! Unix stream socket, which is also how the connection is set up. Inline
//! posts (`Caps::max_inline`, [`INLINE`] bytes) copy their payload into the
//! queued entry at post time and go out from there. A send
//! of 64 KiB or more travels *by reference*: its frame lists where the
//! bytes are in the sender's memory, the receiver copies them into its
//! posted receive with one `process_vm_readv` and acknowledges, and only
//! then does the send complete (the rendezvous protocol of libfabric's
//! `shm` provider) — one copy instead of two through the socket, which is
//! what makes uploads (`rdio put`, whose data travels in sends) cheaper.
//!
//! * [`Listener::bind`] + [`Listener::accept`] and [`connect`] set up a
//!   connection. The endpoint is a [`std::net::SocketAddr`], as rdio's
//!   negotiation speaks them; it names the abstract Unix socket
//!   `@rdio-cma/IP:PORT` ([`socket_name`]). Nothing goes over IP: the
//!   address only keeps listeners apart, and a client reaches a server
//!   only on the same host (and network namespace).
//! * Each side takes the other's pid and uid from `SO_PEERCRED` (filled
//!   in by the kernel, not claimed by the peer) and refuses a peer of
//!   another uid. Each then sends a hello with the address of a 16-byte
//!   probe, and reads the peer's probe with `process_vm_readv`: setup
//!   fails at once, with the errno, where cross-memory attach is not
//!   allowed (e.g. under `kernel.yama.ptrace_scope` >= 1), instead of at
//!   the first RDMA write.
//! * [`CmaTransport`] is the connected side. Sends fill posted receives in
//!   posting order, as on an RC queue pair, unless
//!   [`CmaTransport::set_newest_first`] asks for the receive posted last
//!   (the cache-warm one; rdio's drivers ask for it).
//! * [`raw`] measures bare `process_vm_writev` and socket loops between
//!   two processes: the baseline rdio's throughput is compared with.
//!
//! # Memory and windows
//! [`Transport::register`](rdio_transport::Transport::register) maps
//! private anonymous pages; a [`RemoteBuf`](rdio_transport::RemoteBuf)'s
//! address is the real virtual address in the owner's process and its key
//! a per-connection number. Registering a region with
//! [`Access::REMOTE_WRITE`](rdio_transport::Access) sends the peer an
//! *advertisement* (key, address, length) ahead of anything posted later,
//! so the peer knows the window before any message naming it arrives.
//! Every RDMA write is checked **by the initiator** against the windows
//! the peer advertised (wrong key or range: [`WcError::RemoteAccess`],
//! and the connection is in error state, as an RC queue pair would be):
//! the target cannot check a `process_vm_writev`, the kernel only asks
//! whether the initiator may ptrace it. Deregistering a remotely writable
//! region sends a revocation and keeps the pages mapped until the peer
//! acknowledges it, so a write the peer had already started cannot land
//! in memory reused for something else. What this protects against is
//! bugs, not malice: see `docs/SECURITY.md` for the trust model (a peer
//! allowed to `process_vm_writev` us could `ptrace` us anyway).
//!
//! # Semantics
//! * Ordering: posted work is carried out in posting order; an RDMA write
//!   is placed when it reaches the front of the queue, after every earlier
//!   frame is in the socket and before any later one is, so a send posted
//!   after a write is never delivered before the write's data is visible.
//! * Progress: posted work is handed to the socket (and writes carried
//!   out) inside `poll_completions` and `wait` — one `sendmsg` for a
//!   burst of posts — or once 32 requests are queued. A small send
//!   completes when its frame is in the socket (the libfabric `tcp`
//!   provider's transmit-complete semantics), a send by reference when the
//!   receiver acknowledged its copy, a write when its data is placed (and
//!   its immediate's frame is in the socket). `wait` polls the socket for
//!   200 µs after the last activity before it sleeps in `poll(2)`
//!   ([`DEFAULT_SPIN_WINDOW`]).
//! * Receives: a send fills the oldest posted receive. A send with no
//!   receive posted, or one larger than the receive it meets, is the
//!   peer's protocol error: the receive completes with
//!   [`WcError::LocalLength`] (for a too-large one), the peer is told
//!   (`ReceiverNotReady` / `RemoteOperation`, which its outstanding work
//!   completes with) and the connection is closed — a hostile peer can
//!   end the connection, not crash or hang this side. A receive posted
//!   into a region without `LOCAL_WRITE` (or lent memory) completes with
//!   [`WcError::LocalProtection`].
//! * A write-with-immediate is the write, then a frame that consumes the
//!   peer's oldest receive as [`CompletionKind::RecvImm`]. One of at most
//!   [`CARRIED_WRITE`] inline bytes (a status block) is *carried* instead:
//!   its data travels in that frame and the receiver places it before the
//!   completion — one `sendmsg` instead of a `process_vm_writev` and a
//!   `sendmsg`. Every frame acknowledges the carried writes its sender has
//!   placed, and a later write to bytes a carried write still on its way
//!   will write waits for that acknowledgement, so writes still land in
//!   posting order (a side with nothing to send acknowledges when it goes
//!   idle). Sends with immediate data are [`TransportError::Unsupported`]
//!   (as on loopback).
//! * Loss: the peer's death closes its socket; outstanding work completes
//!   with [`WcError::Disconnected`] and, once drained, `poll_completions`
//!   returns [`TransportError::Disconnected`]. A `process_vm_writev`
//!   failing with `ESRCH` means the same; `EFAULT`/`EPERM` is
//!   `RemoteAccess`.
//! * Concurrency: the peer writes into remotely writable regions while
//!   this side runs, as a NIC would, so a `&[u8]` from
//!   [`Transport::region`](rdio_transport::Transport::region) of such a
//!   region may change under the reader (it is only read once a
//!   completion or a status block says the data is there).
//!
//! [`WcError::RemoteAccess`]: rdio_transport::WcError::RemoteAccess
//! [`WcError::LocalLength`]: rdio_transport::WcError::LocalLength
//! [`WcError::LocalProtection`]: rdio_transport::WcError::LocalProtection
//! [`WcError::Disconnected`]: rdio_transport::WcError::Disconnected
//! [`CompletionKind::RecvImm`]: rdio_transport::CompletionKind::RecvImm
//! [`TransportError::Unsupported`]: rdio_transport::TransportError::Unsupported
//! [`TransportError::Disconnected`]: rdio_transport::TransportError::Disconnected
#![warn(missing_docs)]

#[cfg(not(target_os = "linux"))]
compile_error!("rdio-cma needs Linux: process_vm_writev and abstract Unix sockets");

mod connect;
mod frame;
pub mod raw;
mod region;
mod sys;
mod transport;

pub use connect::{CmaError, DEFAULT_CONNECT_TIMEOUT, Listener, connect, socket_name};
pub use transport::{CAPS, CARRIED_WRITE, CmaTransport, DEFAULT_SPIN_WINDOW, INLINE, MAX_SGE};

/// The provider name negotiated for this transport.
pub const PROVIDER: &str = "cma";
