//! rdio over libfabric: the [`rdio_transport::Transport`] trait implemented on
//! reliable-connected `FI_EP_MSG` endpoints.
//!
//! The LWIO claims describe a client and a server that exchange small
//! messages (sends into posted receives) and move bulk data with remote
//! direct memory writes into buffers the other side registered. libfabric
//! names those operations `fi_sendmsg`/`fi_recv` and `fi_writemsg`, and offers
//! them over many fabrics: `verbs` on InfiniBand/RoCE/iWARP hardware, and
//! `tcp` over the kernel's TCP stack anywhere — which is how this crate is
//! tested on machines without RDMA.
//!
//! * [`Listener::bind`] + [`Listener::accept`] and [`connect`] set up a
//!   connection (passive endpoint, event queue, `FI_CONNREQ`/`FI_CONNECTED`).
//! * [`FabricTransport`] is the connected side, implementing the trait.
//! * [`providers`] lists the providers usable for rdio, named for rdio's
//!   provider negotiation (`"ofi:tcp"`).
//! * [`raw`] measures plain `fi_write`/`fi_send` loops, the baseline that
//!   rdio's throughput is compared with.
//!
//! # Provider notes
//! * `tcp` (the default): memory registration needs neither local
//!   descriptors, virtual addresses nor provider keys, so remote addresses
//!   are offsets into the peer's region and keys are chosen by rdio. A
//!   write-with-immediate does *not* consume a posted receive on this
//!   provider; the transport emulates the trait's contract (see
//!   `ImmMode` in `transport.rs`). Progress is driven by the application:
//!   data moves only while the receiving side polls or waits. Waiting
//!   polls for a short window after the last post or completion before it
//!   sleeps ([`FabricTransport::set_spin_window`]), because each sleep and
//!   wake-up costs more than most requests take to answer.
//! * `sockets` works as well but is slow.
//! * `verbs`: the MSG endpoints rdio needs. `"verbs;ofi_rxm"` is a
//!   reliable-datagram (`FI_EP_RDM`) layering and cannot be used.
//!
//! # Loading libfabric
//! The crate does not link libfabric: the first call that needs it opens
//! `libfabric.so.1` (or the library [`LIBFABRIC_ENV`] names) with `dlopen`,
//! once per process, so programs that contain the crate but use no provider
//! do not pay for loading it (0.2 s on Debian 12: `docs/PERFORMANCE.md`,
//! "Fixed start-up cost"). Where it cannot be opened, each entry point
//! returns [`FabricError::Unavailable`] saying why.
#![warn(missing_docs)]

mod cm;
mod error;
mod info;
mod library;
mod object;
mod posted;
pub mod raw;
mod region;
mod sys;
mod transport;

pub use cm::{DEFAULT_CONNECT_TIMEOUT, Listener, connect, connect_timeout};
pub use error::{FabricError, strerror};
pub use info::{DEFAULT_PROVIDER, PROVIDER_PREFIX, providers};
pub use library::LIBFABRIC_ENV;
pub use transport::{DEFAULT_SPIN_WINDOW, ErrorDetail, FabricTransport};
