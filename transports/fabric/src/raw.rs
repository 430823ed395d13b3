//! Baseline throughput of plain libfabric loops, to report rdio's throughput
//! as a ratio against what the fabric itself can do on the same machine.
//!
//! [`run`] connects a pair over `127.0.0.1` (the server side on its own
//! thread), then streams `count` messages of `size` bytes with bare
//! `fi_write` (into one registered window on the server) or `fi_send` (into
//! receives the server keeps posted), keeping up to `window` operations in
//! flight and reading completions with `fi_cq_read` — no rdio bookkeeping in
//! the loop. The clock stops when the server has acknowledged the last byte
//! (a 1-byte send ordered after the data, answered by a 1-byte send back), so
//! the figure is end-to-end, not just "handed to the provider".

use std::ffi::c_void;
use std::net::{Ipv4Addr, SocketAddr};
use std::ptr;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use core::fmt;

use rdio_transport::{Access, RegionId, RemoteBuf, Slice, Transport, TransportError};

use crate::error::{self, FabricError, check};
use crate::region::Resolved;
use crate::sys;
use crate::{FabricTransport, Listener, connect};

pub use rdio_transport::baseline::{RawConfig, RawOp, RawResult};

/// Why a baseline run failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RawError {
    /// Setting up the connection failed.
    Setup(FabricError),
    /// Registering memory or handing out its descriptor failed.
    Transport(TransportError),
    /// A post or completion failed with this positive libfabric code.
    Fabric {
        /// What failed.
        during: &'static str,
        /// Positive `FI_E*` code.
        code: i32,
    },
    /// The server thread panicked or hung up.
    ServerLost,
    /// `size`, `count` or `window` is zero.
    InvalidConfig,
}

impl fmt::Display for RawError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Setup(err) => write!(f, "connection setup failed: {err}"),
            Self::Transport(err) => write!(f, "memory registration failed: {err}"),
            Self::Fabric { during, code } => {
                write!(f, "{during} failed: {}", error::strerror(*code))
            }
            Self::ServerLost => f.write_str("the baseline's server thread stopped"),
            Self::InvalidConfig => f.write_str("size, count and window must be non-zero"),
        }
    }
}

impl std::error::Error for RawError {}

impl From<FabricError> for RawError {
    fn from(err: FabricError) -> Self {
        Self::Setup(err)
    }
}

impl From<TransportError> for RawError {
    fn from(err: TransportError) -> Self {
        Self::Transport(err)
    }
}

/// Run one baseline over `provider` on 127.0.0.1.
pub fn run(provider: &str, config: RawConfig) -> Result<RawResult, RawError> {
    if !config.is_valid() {
        return Err(RawError::InvalidConfig);
    }
    let listener = Listener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), provider)?;
    let addr = listener.local_addr();
    let (window_tx, window_rx) = mpsc::channel();
    let server = thread::spawn(move || -> Result<(), RawError> {
        let mut side = Side::new(listener.accept_timeout(Duration::from_secs(10))?, config)?;
        let window = side.transport.remote_buf(side.data, 0, config.size)?;
        window_tx.send(window).map_err(|_| RawError::ServerLost)?;
        side.serve()
    });
    let mut client = Side::new(connect(addr, provider)?, config)?;
    let window = window_rx.recv().map_err(|_| RawError::ServerLost)?;
    let elapsed = client.stream(window);
    let served = server.join().map_err(|_| RawError::ServerLost)?;
    let elapsed = elapsed?;
    served?;
    Ok(RawResult { config, elapsed })
}

/// Context slot of the 1-byte send (the client's "done", the server's ack).
const SEND_SLOT: usize = 0;
/// Context slot of the 1-byte receive (the server's "done", the client's ack).
const RECV_SLOT: usize = 1;
/// Context slots below this are control messages; data slots follow.
const DATA_SLOTS: usize = 2;

/// What one `reap` saw complete.
#[derive(Default)]
struct Reaped {
    data: usize,
    sent: bool,
    received: bool,
}

/// One side's resources for the loop, on top of a connected transport whose
/// endpoint and CQ the loop drives directly (the transport's own posted-work
/// table is bypassed; it never sees these contexts).
struct Side {
    transport: FabricTransport,
    config: RawConfig,
    /// The payload buffer (source on the client, target on the server).
    data: RegionId,
    /// A 1-byte buffer for the done/ack messages.
    control: RegionId,
    /// Context storage: two control slots, then one per data operation in
    /// flight. Data operations complete in order (RC semantics), so the slot
    /// of operation `n` is `DATA_SLOTS + n % window` and is free again by the
    /// time operation `n + window` is posted.
    contexts: Box<[sys::fi_context2]>,
    window: usize,
}

impl Side {
    fn new(mut transport: FabricTransport, config: RawConfig) -> Result<Self, RawError> {
        let data = transport.register(config.size, Access::LOCAL_WRITE | Access::REMOTE_WRITE)?;
        let control = transport.register(1, Access::LOCAL_WRITE)?;
        let caps = transport.caps();
        let window = config
            .window
            .min(caps.max_send - 1)
            .min(caps.max_recv - 1)
            .max(1);
        let contexts = (0..DATA_SLOTS + window)
            .map(|_| sys::fi_context2::default())
            .collect();
        Ok(Self {
            transport,
            config,
            data,
            control,
            contexts,
            window,
        })
    }

    fn context(&mut self, slot: usize) -> *mut c_void {
        ptr::from_mut(&mut self.contexts[slot]).cast()
    }

    fn data_context(&mut self, n: usize) -> *mut c_void {
        self.context(DATA_SLOTS + n % self.window)
    }

    fn buffer(&self, region: RegionId, len: usize) -> Result<Resolved, RawError> {
        Ok(self.transport.resolve(Slice::whole(region, len))?)
    }

    /// Post with `op(endpoint, context)`, retrying while the provider's queue
    /// is full (reaping completions in between so it drains).
    fn post(
        &mut self,
        during: &'static str,
        context: *mut c_void,
        reaped: &mut Reaped,
        op: impl Fn(*mut sys::fid_ep, *mut c_void) -> isize,
    ) -> Result<(), RawError> {
        loop {
            match check(op(self.transport.endpoint(), context)) {
                Ok(_) => return Ok(()),
                Err(code) if code == sys::FI_EAGAIN as i32 => self.reap(reaped)?,
                Err(code) => return Err(RawError::Fabric { during, code }),
            }
        }
    }

    /// Read completions (this is also what makes the provider progress).
    fn reap(&mut self, reaped: &mut Reaped) -> Result<(), RawError> {
        let mut entries = [sys::fi_cq_data_entry::default(); 16];
        // SAFETY: open CQ in FI_CQ_FORMAT_DATA; room for 16 entries.
        let ret = unsafe {
            sys::rdio_fi_cq_read(
                self.transport.cq(),
                entries.as_mut_ptr().cast(),
                entries.len(),
            )
        };
        match check(ret) {
            Ok(n) => {
                let base = self.contexts.as_ptr() as usize;
                for entry in &entries[..n] {
                    let slot = (entry.op_context as usize).wrapping_sub(base)
                        / size_of::<sys::fi_context2>();
                    match slot {
                        SEND_SLOT => reaped.sent = true,
                        RECV_SLOT => reaped.received = true,
                        _ => reaped.data += 1,
                    }
                }
                Ok(())
            }
            Err(code) if code == sys::FI_EAGAIN as i32 => Ok(()),
            Err(code) if code == sys::FI_EAVAIL as i32 => {
                let mut err = sys::fi_cq_err_entry::default();
                // SAFETY: open CQ with an error entry available.
                unsafe { sys::rdio_fi_cq_readerr(self.transport.cq(), &mut err, 0) };
                Err(RawError::Fabric {
                    during: "completion",
                    code: err.err,
                })
            }
            Err(code) => Err(RawError::Fabric {
                during: "fi_cq_read",
                code,
            }),
        }
    }

    fn post_control_recv(&mut self, reaped: &mut Reaped) -> Result<(), RawError> {
        let control = self.buffer(self.control, 1)?;
        let context = self.context(RECV_SLOT);
        self.post("fi_recv", context, reaped, |ep, context| {
            // SAFETY: open endpoint; registered 1-byte buffer; stable context.
            unsafe { sys::rdio_fi_recv(ep, control.ptr, 1, control.desc, 0, context) }
        })
    }

    fn send_control(&mut self, reaped: &mut Reaped) -> Result<(), RawError> {
        let control = self.buffer(self.control, 1)?;
        let context = self.context(SEND_SLOT);
        self.post("fi_send", context, reaped, |ep, context| {
            // SAFETY: open endpoint; registered 1-byte buffer; stable context.
            unsafe { sys::rdio_fi_send(ep, control.ptr, 1, control.desc, 0, context) }
        })
    }

    /// Client: stream the payload, then "done", and wait for the ack.
    fn stream(&mut self, window: RemoteBuf) -> Result<Duration, RawError> {
        let data = self.buffer(self.data, self.config.size)?;
        let mut reaped = Reaped::default();
        self.post_control_recv(&mut reaped)?;
        let start = Instant::now();
        let mut posted = 0;
        while posted < self.config.count || reaped.data < posted {
            while posted < self.config.count && posted - reaped.data < self.window {
                let context = self.data_context(posted);
                let ep = self.transport.endpoint();
                let (ptr, len, desc) = (data.ptr, data.len, data.desc);
                let ret = match self.config.op {
                    // SAFETY: open endpoint; `data` is registered and outlives
                    // the loop; the window came from the server's remote_buf.
                    RawOp::Write => unsafe {
                        sys::rdio_fi_write(
                            ep,
                            ptr,
                            len,
                            desc,
                            0,
                            window.addr,
                            u64::from(window.key),
                            context,
                        )
                    },
                    // SAFETY: as above, a two-sided send of the same buffer.
                    RawOp::Send => unsafe { sys::rdio_fi_send(ep, ptr, len, desc, 0, context) },
                };
                match check(ret) {
                    Ok(_) => posted += 1,
                    Err(code) if code == sys::FI_EAGAIN as i32 => break,
                    Err(code) => {
                        return Err(RawError::Fabric {
                            during: "fi_write/fi_send",
                            code,
                        });
                    }
                }
            }
            self.reap(&mut reaped)?;
        }
        self.send_control(&mut reaped)?;
        while !(reaped.sent && reaped.received) {
            self.reap(&mut reaped)?;
        }
        Ok(start.elapsed())
    }

    /// Server: keep receives posted (send mode), wait for "done", ack it.
    fn serve(&mut self) -> Result<(), RawError> {
        let data = self.buffer(self.data, self.config.size)?;
        let mut reaped = Reaped::default();
        // Receives match in posting order: the "done" receive is posted only
        // after the last data receive, so no payload can land in it.
        let receives = if self.config.op == RawOp::Send {
            self.config.count
        } else {
            0
        };
        if receives == 0 {
            self.post_control_recv(&mut reaped)?;
        }
        let mut posted = 0;
        loop {
            while posted < receives && posted - reaped.data < self.window {
                let context = self.data_context(posted);
                self.post("fi_recv", context, &mut reaped, |ep, context| {
                    // SAFETY: open endpoint; registered buffer of `len` bytes;
                    // the context is this operation's stable slot.
                    unsafe { sys::rdio_fi_recv(ep, data.ptr, data.len, data.desc, 0, context) }
                })?;
                posted += 1;
                if posted == receives {
                    self.post_control_recv(&mut reaped)?;
                }
            }
            if reaped.received {
                break;
            }
            self.reap(&mut reaped)?;
        }
        self.send_control(&mut reaped)?;
        while !reaped.sent {
            self.reap(&mut reaped)?;
        }
        Ok(())
    }
}
