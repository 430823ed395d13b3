//! # rdio-core
//!
//! The sans-IO, allocation-free, `no_std` core of **rdio**, a protocol that
//! offloads file I/O from a client on one computer to a server on another over
//! RDMA (after Microsoft's "Lightweight Input/Output" (LWIO) patent claims; SMB
//! Direct is its descendant).
//!
//! The crate holds:
//! * [`wire`]: every message of the protocol, as zero-copy wire structs plus a
//!   validated representation, with encoders that write into caller buffers;
//! * [`credit`]: the credit ledger both sides keep (seed claims 1, 7, 22);
//! * [`client`] and [`server`]: the two state machines, driven by the caller
//!   (`handle_*` inputs, drained `poll_*` outputs), which never read a clock
//!   ([`time`]) and never touch memory registration, files or sockets.
//!
//! See `docs/PROTOCOL.md` in the repository for the wire format, the state
//! diagrams and the claim-by-claim mapping to the seed.
//!
//! # Example: one read, both sides, no transport
//!
//! The driver's job, reduced to moving bytes: discovery on the pipe,
//! authentication, registration, then a read completed by a status block.
//!
//! ```
//! use rdio_core::client::{self, Client, ClientConfig, ClientEvent, CompletionMode};
//! use rdio_core::server::{
//!     Connection, FileEntry, FileId, Registration, Registry, ServerConfig, ServerEvent,
//!     ServerOffer, Transmit,
//! };
//! use rdio_core::wire::{BufferDescriptor, OpenFlags, ProviderList, ProviderName, Status};
//! use rdio_core::Instant;
//! use core::time::Duration;
//!
//! let now = Instant::from_micros(0);
//! let mut providers = ProviderList::new();
//! providers.push(ProviderName::new("loopback")?).unwrap();
//! let config = ClientConfig { providers: providers.clone(), ..ClientConfig::default() };
//!
//! // Phase 1, on the pipe: resume key, an opened file, negotiation.
//! // (Entropy comes from the OS CSPRNG in a real driver.)
//! let mut registry: Registry<4, 4> = Registry::new(ServerConfig::default(), Duration::from_secs(5));
//! let (session, server_key) = registry.open_session([1; 16])?;
//! let file = FileEntry { session, file: FileId(7), flags: OpenFlags::READ, size: 4096 };
//! let file_key = registry.add_file(file, [2; 16])?;
//! let request = client::negotiate_request(&config, server_key);
//! let offer = ServerOffer { providers: &providers, endpoint: b"127.0.0.1:7472" };
//! let response = registry.negotiate(now, session, &request, offer, [3; 16]);
//! let negotiated = client::negotiated(&config, &response)?;
//!
//! // Phases 2-4, on the RDMA channel.
//! let mut client: Client<8> = Client::new(config, negotiated, now);
//! let mut server: Connection<8, 4> = Connection::new(ServerConfig::default(), now);
//! let (dest, status) = (BufferDescriptor::new(0, 1, 4096), BufferDescriptor::new(0, 2, 24));
//! let mut c2s = [0u8; 512];
//! let mut s2c = [0u8; 512];
//! let mut registered = None;
//! let mut read = None;
//! for _ in 0..8 {
//!     while let Some(t) = client.poll_transmit(now, &mut c2s)? {
//!         server.handle_message(now, &c2s[..t.len])?;
//!     }
//!     while let Some(event) = server.poll_event() {
//!         match event {
//!             ServerEvent::Authenticate { key } => {
//!                 let params = registry.redeem_auth(now, &key)?;
//!                 server.accept_auth(now, params)?;
//!             }
//!             ServerEvent::Register { op, key } => {
//!                 let entry = registry.redeem_file(session, &key)?;
//!                 let reg = Registration { file: entry.file, flags: entry.flags, size: entry.size };
//!                 server.complete_register(op, Ok(reg))?;
//!             }
//!             // A driver would pread and RDMA-write each segment here.
//!             ServerEvent::Read { op, .. } => server.complete_io(op, Ok(4096))?,
//!             _ => {}
//!         }
//!     }
//!     while let Some(t) = server.poll_transmit(&mut s2c)? {
//!         match t {
//!             Transmit::Send { len } => client.handle_message(now, &s2c[..len])?,
//!             // The status block lands in client memory by RDMA write.
//!             Transmit::StatusBlock { len, .. } => {
//!                 client.handle_status_block(now, &s2c[..len])?;
//!             }
//!         }
//!     }
//!     while let Some(event) = client.poll_event() {
//!         match event {
//!             ClientEvent::Authenticated { .. } => registered = Some(client.register(file_key)?),
//!             ClientEvent::Registered { result: Ok(file), .. } => {
//!                 read = Some(client.read(file.handle, 0, dest, status, CompletionMode::Interrupt)?);
//!             }
//!             ClientEvent::Completed { request, status, bytes } => {
//!                 assert_eq!((Some(request), status, bytes), (read, Status::Success, 4096));
//!             }
//!             other => panic!("unexpected {other:?}"),
//!         }
//!     }
//! }
//! assert!(registered.is_some() && read.is_some());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]

#[macro_use]
mod log;

pub mod client;
pub mod credit;
pub mod error;
mod queue;
mod segments;
pub mod server;
mod slots;
pub mod stats;
mod table;
pub mod time;
pub mod wire;

pub use error::{ApiError, Violation};
pub use time::Instant;
