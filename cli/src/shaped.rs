//! Protocol-shaped raw loops: the transport operations an rdio read or
//! write costs, with none of rdio's own code (no core, no driver, no
//! files), so `rdio bench` can report rdio's overhead per path apart from
//! the transport's.
//!
//! Per I/O of `size` bytes, with `depth` I/Os in flight:
//!
//! * **read** ([`ShapedOp::Read`]): the client sends a 64-byte request
//!   (the size of rdio's `Read`) into a receive the server keeps posted;
//!   the request carries the two buffer descriptors of the client's data
//!   slot and status slot, which the server parses; the server answers with
//!   an RDMA write of `size` bytes to the data slot and a 24-byte RDMA
//!   write with immediate (a status block) to the status slot, which
//!   consumes a receive the client keeps posted. The I/O is done when that
//!   receive completes. With [`ShapedConfig::copy_out`] the client then
//!   copies the read's data out of its slot, as `rdio bench` copies an
//!   rdio read into the caller's buffer unless `--in-place`.
//! * **write** ([`ShapedOp::Write`]): the client sends the data in sends of
//!   at most `max_send` bytes (rdio's negotiated `max_send_size`), each
//!   gathered from a header slot (48 bytes on the first send, 24 on the
//!   rest, as rdio's `Write` and `WriteData`) and the caller's data slot;
//!   the server counts the fragments in its posted receives and answers the
//!   last one with a 24-byte send. The I/O is done when that arrives. (rdio
//!   today also answers every fragment but the last with a `Completion`
//!   send; that, and its copies, are rdio's own cost.) With
//!   [`ShapedConfig::copy_in`] the client first copies the write's data
//!   into its slot, as `rdio bench` without `--in-place` copies the
//!   caller's buffer into a registered slot (`Client::submit_write`).
//!
//! With a [`ShapedFile`] the server also does the file I/O rdio's server
//! does, through rdio's own file layer (`rdio::files`) and nothing else of
//! rdio: a read's data is RDMA-written from a read-only mapping of the
//! file taken under a read lease (rdio's zero-copy path), at the offsets
//! an rdio row walks; each write fragment's data is `pwrite`n into the
//! file as it arrives ([`rdio::files::File::write_at`], what rdio's server
//! calls). `rdio bench --file-baseline DIR` reports these loops as
//! `file_rd`, `file_wr`: rdio's ratio to them is its overhead apart from
//! the file system's.
//!
//! Both ends use only [`Transport`] calls, as rdio's driver does: the
//! loops measure the transport *through its rdio transport crate*, so the
//! ratio of an rdio row to them is the core's and driver's cost alone.
//! When a step found nothing to do, the loop waits with [`Transport::wait`]
//! (interrupt mode) or yields the CPU and polls again
//! ([`ShapedConfig::polling`]), as rdio's completion modes do.

use rdio::files::{File, FileLease, Root};
use rdio_core::wire::OpenFlags;
use rdio_transport::{
    Access, Completion, CompletionKind, RegionId, RemoteBuf, Slice, Transport, TransportError,
    WcError,
};
use std::collections::VecDeque;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Which rdio operation the loop mimics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShapedOp {
    /// Request send, data write, status write-with-immediate.
    Read,
    /// Data in sends, one reply send.
    Write,
}

/// Parameters of one protocol-shaped run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShapedConfig {
    /// The operation.
    pub op: ShapedOp,
    /// Bytes per I/O.
    pub size: usize,
    /// Number of I/Os.
    pub count: usize,
    /// I/Os in flight (capped by the transport's queues, see [`Self::fit`]).
    pub depth: usize,
    /// Largest send, header included (rdio's `max_send_size`).
    pub max_send: usize,
    /// Busy-poll instead of waiting when idle.
    pub polling: bool,
    /// Reads: how many go in one request message and are answered by one
    /// immediate (1: each read its own, as rdio's `Read`). With more, as
    /// rdio's `ReadBatch` is answered: each read's status block lies right
    /// after its data in the client's slot, and the server writes both in
    /// one RDMA write (two pieces gathered); only the batch's last carries
    /// the immediate. The bound for the plain-loop targets (`rdio bench
    /// --file-baseline`, `fbat_rd`).
    pub batch: usize,
    /// Reads: the client copies each completed read's data out of its
    /// slot into one buffer of its own, as `rdio bench` without
    /// `--in-place` copies each rdio read into the caller's buffer
    /// (`Client::wait`). On cma the server's process wrote those bytes
    /// from another CPU: the client's first look at them costs cache
    /// misses the loop would otherwise never pay.
    pub copy_out: bool,
    /// Writes: the client copies each write's data from one buffer of its
    /// own into the write's slot before sending it, as `rdio bench`
    /// without `--in-place` has rdio copy the caller's buffer into a
    /// registered slot (`Client::submit_write`). At queue depth 1 nothing
    /// overlaps that copy: over fabric tcp on 127.0.0.1 it was 60-80 µs
    /// of a 1 MiB write's 310-390, most of what rdio's copied writes
    /// trailed a loop without it by.
    pub copy_in: bool,
}

/// rdio's `Read` request: 16-byte header and 48-byte payload.
pub const REQUEST_LEN: usize = 64;
/// rdio's status block.
pub const STATUS_LEN: usize = 24;
/// rdio's `Write` header (16-byte header, 32 bytes before the data).
const FIRST_HEADER: usize = 48;
/// rdio's `WriteData` header (16-byte header, 8 bytes before the data).
const NEXT_HEADER: usize = 24;
/// The smallest `max_send` that leaves room for data after a header.
const MIN_SEND: usize = FIRST_HEADER + 1;
/// Completions drained per poll.
const BATCH: usize = 32;
/// How long an idle step waits in interrupt mode (wake-ups come sooner).
const IDLE_WAIT: Duration = Duration::from_millis(10);

impl ShapedConfig {
    /// Bytes between the starts of two client data slots: batched reads
    /// keep each status block right after its data.
    fn slot_stride(&self) -> usize {
        if self.op == ShapedOp::Read && self.batch > 1 {
            self.size + STATUS_LEN
        } else {
            self.size
        }
    }

    /// Data bytes of the write fragment number `index` (0 first).
    fn fragment_data(&self, index: usize) -> usize {
        let header = if index == 0 {
            FIRST_HEADER
        } else {
            NEXT_HEADER
        };
        let before: usize = if index == 0 {
            0
        } else {
            (self.max_send - FIRST_HEADER) + (index - 1) * (self.max_send - NEXT_HEADER)
        };
        (self.size - before.min(self.size)).min(self.max_send - header)
    }

    /// Sends per write I/O.
    pub fn fragments(&self) -> usize {
        let first = self.max_send - FIRST_HEADER;
        if self.size <= first {
            1
        } else {
            1 + (self.size - first).div_ceil(self.max_send - NEXT_HEADER)
        }
    }

    /// Receives the server keeps posted: one per request in flight (reads)
    /// or per fragment in flight (writes), within both ends' queues.
    fn receives(&self, caps: &rdio_transport::Caps) -> usize {
        let wanted = match self.op {
            ShapedOp::Read => self.depth / self.batch.max(1),
            ShapedOp::Write => self.depth * self.fragments(),
        };
        wanted.min(caps.max_recv).min(caps.max_send).max(1)
    }

    /// This config within a transport's limits: `max_send` within its
    /// largest message, `depth` within its queues (a read takes two
    /// send-queue slots at the server). Fails if nothing fits.
    pub fn fit(mut self, caps: &rdio_transport::Caps) -> Result<Self, ShapedError> {
        if self.size == 0 || self.count == 0 || self.depth == 0 {
            return Err(ShapedError::InvalidConfig);
        }
        self.max_send = self.max_send.min(caps.max_message);
        let room = (caps.max_send / 2).min(caps.max_recv);
        if self.max_send < MIN_SEND || room == 0 || caps.max_sge < 2 || self.size > caps.max_write {
            return Err(ShapedError::InvalidConfig);
        }
        self.depth = self.depth.min(room);
        // Whole batches fill the depth (their requests are contiguous).
        self.batch = self.batch.clamp(1, self.depth);
        self.depth -= self.depth % self.batch;
        Ok(self)
    }
}

/// The file a file-backed shaped server works in: `len` bytes filled as
/// rdio's bench fills its file, in a directory of its own under the
/// directory given (so on the file system the caller picked: the one the
/// rdio server serves from), removed when dropped.
#[derive(Debug)]
pub struct ShapedFile {
    root: Root,
    len: u64,
    _dir: tempfile::TempDir,
}

/// The file's name in its directory.
const SHAPED_FILE: &str = "data";

impl ShapedFile {
    /// Create and fill a file of `len` bytes under `dir`.
    pub fn create(dir: &Path, len: u64) -> std::io::Result<Arc<Self>> {
        use std::io::Write;
        let temp = tempfile::Builder::new()
            .prefix(".rdio-shaped-")
            .tempdir_in(dir)?;
        let mut file = std::fs::File::create(temp.path().join(SHAPED_FILE))?;
        let chunk: Vec<u8> = (0..(1usize << 20)).map(|i| (i % 251) as u8).collect();
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            file.write_all(&chunk[..n])?;
            left -= n as u64;
        }
        file.sync_all()?;
        drop(file);
        Ok(Arc::new(Self {
            root: Root::new(temp.path())?,
            len,
            _dir: temp,
        }))
    }

    fn open(&self, flags: OpenFlags) -> Result<File, ShapedError> {
        self.root
            .open(SHAPED_FILE, flags)
            .map_err(|e| ShapedError::Setup(format!("cannot open the shaped loop's file: {e}")))
    }

    /// The file offset of I/O number `io` of `size` bytes: the file walked
    /// slot by slot, as an rdio row walks its file.
    fn offset(&self, io: usize, size: usize) -> u64 {
        let slots = (self.len / size as u64).max(1);
        (io as u64 % slots) * size as u64
    }
}

/// What a file-backed server holds for its run.
#[derive(Debug)]
enum ServerFile {
    /// Reads come from the file's mapping, registered as region `region`;
    /// the lease keeps the file's length fixed meanwhile.
    Mapped {
        file: Arc<ShapedFile>,
        region: RegionId,
        _lease: FileLease,
    },
    /// Write data goes into the file.
    Written { file: Arc<ShapedFile>, open: File },
}

/// Why a protocol-shaped run failed.
#[derive(Debug, PartialEq, Eq)]
pub enum ShapedError {
    /// Zero size, count or depth, or a transport too small for the shape.
    InvalidConfig,
    /// A transport call failed.
    Transport(TransportError),
    /// A work request failed.
    Completion(WcError),
    /// A request or completion the loop never asked for.
    Unexpected(&'static str),
    /// Setting up the connection failed.
    Setup(String),
}

impl fmt::Display for ShapedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidConfig => {
                f.write_str("size, count and depth must be non-zero and fit the transport")
            }
            Self::Transport(err) => write!(f, "transport call failed: {err}"),
            Self::Completion(err) => write!(f, "work request failed: {err}"),
            Self::Unexpected(what) => write!(f, "unexpected {what}"),
            Self::Setup(why) => write!(f, "connection setup failed: {why}"),
        }
    }
}

impl std::error::Error for ShapedError {}

impl From<TransportError> for ShapedError {
    fn from(err: TransportError) -> Self {
        Self::Transport(err)
    }
}

/// Work request ids: a tag in the high half, a slot in the low half.
const SEND_TAG: u64 = 1 << 32;
const RECV_TAG: u64 = 2 << 32;
const WRITE_TAG: u64 = 3 << 32;
const SLOT_MASK: u64 = u32::MAX as u64;

/// A post that hit a full queue is retried on the next step; anything
/// else is an error.
fn full(result: Result<(), TransportError>) -> Result<bool, ShapedError> {
    match result {
        Ok(()) => Ok(false),
        Err(TransportError::QueueFull) => Ok(true),
        Err(err) => Err(err.into()),
    }
}

const EMPTY: Completion = Completion {
    wr_id: 0,
    kind: CompletionKind::Send,
    status: Ok(()),
};

/// Write every byte of a fresh region, so its pages are resident.
fn touch<T: Transport>(t: &mut T, region: RegionId) -> Result<(), ShapedError> {
    t.region_mut(region)?.fill(0xa5);
    Ok(())
}

fn descriptor(bytes: &[u8]) -> Option<RemoteBuf> {
    Some(RemoteBuf {
        addr: u64::from_le_bytes(bytes.get(0..8)?.try_into().ok()?),
        key: u32::from_le_bytes(bytes.get(8..12)?.try_into().ok()?),
        len: u32::from_le_bytes(bytes.get(12..16)?.try_into().ok()?),
    })
}

fn put_descriptor(bytes: &mut [u8], buf: RemoteBuf) {
    bytes[0..8].copy_from_slice(&buf.addr.to_le_bytes());
    bytes[8..12].copy_from_slice(&buf.key.to_le_bytes());
    bytes[12..16].copy_from_slice(&buf.len.to_le_bytes());
}

/// The client end: issues I/Os and counts them done.
#[derive(Debug)]
pub struct ShapedClient {
    config: ShapedConfig,
    /// Read targets: one region of `depth` slots. Write sources: one
    /// region of `size` bytes per slot, so that a slot can be refilled
    /// ([`ShapedConfig::copy_in`]) while the others' sends are posted
    /// (`region_mut` refuses a region a posted request uses), as rdio's
    /// client keeps a region per slot.
    data: Vec<RegionId>,
    /// `depth` requests (reads) or first-fragment headers (writes), then,
    /// for writes, one continuation header.
    requests: RegionId,
    /// `depth` status / reply slots, kept posted as receives.
    replies: RegionId,
    /// Receives the server keeps posted: fragments in flight may not
    /// exceed it.
    receives: usize,
    issued: usize,
    done: usize,
    /// Write fragments of the I/O being issued that are already posted.
    next_fragment: usize,
    /// Write fragments posted in all.
    fragments_sent: usize,
    /// Where reads are copied out to ([`ShapedConfig::copy_out`]; empty
    /// without).
    scratch: Vec<u8>,
    /// What writes are copied in from ([`ShapedConfig::copy_in`]; empty
    /// without).
    source: Vec<u8>,
}

impl ShapedClient {
    /// Register the client's buffers and post its reply receives. `config`
    /// must have been [`ShapedConfig::fit`] to this transport.
    pub fn new<T: Transport>(t: &mut T, config: ShapedConfig) -> Result<Self, ShapedError> {
        let depth = config.depth;
        let stride = config.slot_stride();
        let access = Access::LOCAL_WRITE | Access::REMOTE_WRITE;
        let data = if config.op == ShapedOp::Write {
            (0..depth)
                .map(|_| t.register(config.size, access))
                .collect::<Result<Vec<_>, _>>()?
        } else {
            vec![t.register(depth * stride, access)?]
        };
        let requests = t.register(depth * REQUEST_LEN + NEXT_HEADER, Access::LOCAL_WRITE)?;
        let replies = t.register(
            depth * STATUS_LEN,
            Access::LOCAL_WRITE | Access::REMOTE_WRITE,
        )?;
        // The requests never change: each names its slot's data and status
        // buffers (the server still parses them per I/O, as rdio's does).
        let mut descriptors = Vec::with_capacity(depth);
        for slot in 0..depth {
            // Batched reads: the status block right after the data.
            let (region, at) = match data.as_slice() {
                [one] => (*one, slot * stride),
                slots => (slots[slot], 0),
            };
            if config.op == ShapedOp::Read && config.batch > 1 {
                descriptors.push((
                    t.remote_buf(region, at, config.size)?,
                    t.remote_buf(region, at + config.size, STATUS_LEN)?,
                ));
                continue;
            }
            descriptors.push((
                t.remote_buf(region, at, config.size)?,
                t.remote_buf(replies, slot * STATUS_LEN, STATUS_LEN)?,
            ));
        }
        // Every page touched before the clock starts: fresh registrations are
        // untouched zero pages, and a first write into each would otherwise
        // fault inside the timed loop (32 MiB of data slots at 1 MiB QD 32:
        // 8192 faults), which rdio's long-lived buffers never pay.
        for &region in &data {
            touch(t, region)?;
        }
        touch(t, replies)?;
        let bytes = t.region_mut(requests)?;
        for (slot, (dest, status)) in descriptors.into_iter().enumerate() {
            let request = &mut bytes[slot * REQUEST_LEN..(slot + 1) * REQUEST_LEN];
            put_descriptor(&mut request[16..32], dest);
            put_descriptor(&mut request[32..48], status);
        }
        for slot in 0..depth / config.batch.max(1) {
            t.post_recv(
                RECV_TAG | slot as u64,
                Slice {
                    region: replies,
                    offset: slot * STATUS_LEN,
                    len: STATUS_LEN,
                },
            )?;
        }
        Ok(Self {
            config,
            data,
            requests,
            replies,
            receives: config.receives(&t.caps()),
            issued: 0,
            done: 0,
            next_fragment: 0,
            fragments_sent: 0,
            scratch: if config.copy_out && config.op == ShapedOp::Read {
                vec![0; config.size]
            } else {
                Vec::new()
            },
            source: if config.copy_in && config.op == ShapedOp::Write {
                (0..config.size).map(|i| (i % 253) as u8).collect()
            } else {
                Vec::new()
            },
        })
    }

    /// Whether every I/O is done.
    pub fn finished(&self) -> bool {
        self.done == self.config.count
    }

    /// I/Os done so far.
    #[cfg(test)]
    pub fn done(&self) -> usize {
        self.done
    }

    /// The last read copied out ([`ShapedConfig::copy_out`]).
    #[cfg(test)]
    pub fn copied(&self) -> &[u8] {
        &self.scratch
    }

    /// Drain completions, then issue what the depth allows. Returns
    /// whether anything happened.
    pub fn step<T: Transport>(&mut self, t: &mut T) -> Result<bool, ShapedError> {
        let mut out = [EMPTY; BATCH];
        let n = t.poll_completions(&mut out)?;
        for completion in &out[..n] {
            completion.status.map_err(ShapedError::Completion)?;
            if completion.wr_id & !SLOT_MASK != RECV_TAG {
                continue;
            }
            let before = self.done;
            match (self.config.op, completion.kind) {
                // A batch's immediate carries how many reads it answers.
                (ShapedOp::Read, CompletionKind::RecvImm { imm }) if self.config.batch > 1 => {
                    self.done += imm as usize;
                }
                (ShapedOp::Read, CompletionKind::RecvImm { .. })
                | (ShapedOp::Write, CompletionKind::Recv { .. }) => self.done += 1,
                _ => return Err(ShapedError::Unexpected("completion at the client")),
            }
            if !self.scratch.is_empty() {
                // Reads complete in the order they were issued, each in
                // slot `io % depth`.
                let stride = self.config.slot_stride();
                let bytes = t.region(self.data[0])?;
                for io in before..self.done.min(self.config.count) {
                    let at = (io % self.config.depth) * stride;
                    let read = bytes
                        .get(at..at + self.config.size)
                        .ok_or(ShapedError::Unexpected("a read outside the client's slots"))?;
                    self.scratch.copy_from_slice(read);
                }
                std::hint::black_box(&self.scratch);
            }
            let slot = (completion.wr_id & SLOT_MASK) as usize;
            t.post_recv(
                completion.wr_id,
                Slice {
                    region: self.replies,
                    offset: slot * STATUS_LEN,
                    len: STATUS_LEN,
                },
            )?;
        }
        let mut posted = false;
        while self.issued < self.config.count && self.issued - self.done < self.config.depth {
            let slot = self.issued % self.config.depth;
            match self.config.op {
                ShapedOp::Read => {
                    // A batch's requests, in one message: contiguous, since
                    // whole batches fill the depth (the last may be short).
                    let reads = self.config.batch.min(self.config.count - self.issued);
                    if self.config.depth - (self.issued - self.done) < reads {
                        break;
                    }
                    let request = Slice {
                        region: self.requests,
                        offset: slot * REQUEST_LEN,
                        len: reads * REQUEST_LEN,
                    };
                    if full(t.post_send(SEND_TAG | slot as u64, &[request], None))? {
                        break;
                    }
                    self.issued += reads;
                }
                ShapedOp::Write => {
                    let fragments = self.config.fragments();
                    let acknowledged = self.done * fragments;
                    if self.fragments_sent - acknowledged >= self.receives {
                        break;
                    }
                    let index = self.next_fragment;
                    if index == 0 && !self.source.is_empty() {
                        // The slot's previous write was answered; its
                        // send's completion may not be drained yet.
                        match t.region_mut(self.data[slot]) {
                            Ok(bytes) => bytes.copy_from_slice(&self.source),
                            Err(TransportError::Busy(_)) => break,
                            Err(e) => return Err(e.into()),
                        }
                    }
                    let header = if index == 0 {
                        Slice {
                            region: self.requests,
                            offset: slot * REQUEST_LEN,
                            len: FIRST_HEADER,
                        }
                    } else {
                        Slice {
                            region: self.requests,
                            offset: self.config.depth * REQUEST_LEN,
                            len: NEXT_HEADER,
                        }
                    };
                    let start: usize = (0..index).map(|i| self.config.fragment_data(i)).sum();
                    let data = Slice {
                        region: self.data[slot],
                        offset: start,
                        len: self.config.fragment_data(index),
                    };
                    if full(t.post_send(SEND_TAG | slot as u64, &[header, data], None))? {
                        break;
                    }
                    self.fragments_sent += 1;
                    self.next_fragment += 1;
                    if self.next_fragment == fragments {
                        self.next_fragment = 0;
                        self.issued += 1;
                    }
                }
            }
            posted = true;
        }
        Ok(n > 0 || posted)
    }
}

/// The server end: answers every request the shape calls for.
#[derive(Debug)]
pub struct ShapedServer {
    config: ShapedConfig,
    /// `receives` receive buffers (requests or write fragments).
    incoming: RegionId,
    slot_len: usize,
    /// `depth` read sources of `size` bytes.
    data: RegionId,
    /// `depth` status blocks / replies of 24 bytes.
    status: RegionId,
    /// Reads received, not yet answered: (data, status) descriptors, and
    /// whether the data write is already posted.
    /// With batches, the immediate the last read of its batch carries
    /// (the batch's count); single reads carry their number.
    reads: VecDeque<(RemoteBuf, RemoteBuf, bool, Option<u32>)>,
    /// Writes whose last fragment arrived, not yet answered.
    replies_due: usize,
    fragments: usize,
    /// Write data of the current write received before this fragment.
    fragment_offset: u64,
    /// Writes whose every fragment arrived.
    writes_in: usize,
    answered: usize,
    posted: usize,
    completed: usize,
    /// With a [`ShapedFile`]: where reads come from, or where write data
    /// goes.
    file: Option<ServerFile>,
}

impl ShapedServer {
    /// Register the server's buffers and post its receives; with `file`,
    /// map it for reads (every page touched before the client starts, as
    /// rdio's long-lived mapping is) or open it for writes.
    pub fn new<T: Transport>(
        t: &mut T,
        config: ShapedConfig,
        file: Option<&Arc<ShapedFile>>,
    ) -> Result<Self, ShapedError> {
        let file = match (file, config.op) {
            (None, _) => None,
            (Some(file), _) if (config.size as u64) > file.len => {
                return Err(ShapedError::InvalidConfig);
            }
            (Some(file), ShapedOp::Read) => {
                let open = file.open(OpenFlags::READ)?;
                let (lease, map) = FileLease::take(&open)
                    .map_err(|e| ShapedError::Setup(format!("no read lease on the file: {e}")))?
                    .ok_or(ShapedError::InvalidConfig)?;
                let pages: u64 = map
                    .as_ref()
                    .iter()
                    .step_by(4096)
                    .map(|&b| u64::from(b))
                    .sum();
                std::hint::black_box(pages);
                let region = t.register_external(map)?;
                Some(ServerFile::Mapped {
                    file: Arc::clone(file),
                    region,
                    _lease: lease,
                })
            }
            (Some(file), ShapedOp::Write) => Some(ServerFile::Written {
                file: Arc::clone(file),
                open: file.open(OpenFlags::READ | OpenFlags::WRITE)?,
            }),
        };
        let receives = config.receives(&t.caps());
        let slot_len = match config.op {
            ShapedOp::Read => REQUEST_LEN * config.batch.max(1),
            ShapedOp::Write => config.max_send,
        };
        let incoming = t.register(receives * slot_len, Access::LOCAL_WRITE)?;
        let data_len = match config.op {
            ShapedOp::Read => config.depth * config.size,
            ShapedOp::Write => 1,
        };
        let data = t.register(data_len, Access::LOCAL_WRITE)?;
        for (i, byte) in t.region_mut(data)?.iter_mut().enumerate() {
            *byte = (i % 251) as u8;
        }
        let status = t.register(config.depth * STATUS_LEN, Access::LOCAL_WRITE)?;
        // As the client's: no first-touch faults in the timed loop.
        touch(t, incoming)?;
        touch(t, status)?;
        let server = Self {
            config,
            incoming,
            slot_len,
            data,
            status,
            reads: VecDeque::with_capacity(config.depth),
            replies_due: 0,
            fragments: 0,
            fragment_offset: 0,
            writes_in: 0,
            answered: 0,
            posted: 0,
            completed: 0,
            file,
        };
        for slot in 0..receives {
            server.post_recv(t, slot)?;
        }
        Ok(server)
    }

    /// Where the data of the read answered next comes from: the file's
    /// mapping at the offset an rdio row reads, or the server's slot.
    fn read_source(&self, slot: usize) -> Slice {
        match &self.file {
            Some(ServerFile::Mapped { file, region, .. }) => Slice {
                region: *region,
                offset: file.offset(self.answered, self.config.size) as usize,
                len: self.config.size,
            },
            _ => Slice {
                region: self.data,
                offset: slot * self.config.size,
                len: self.config.size,
            },
        }
    }

    fn post_recv<T: Transport>(&self, t: &mut T, slot: usize) -> Result<(), ShapedError> {
        Ok(t.post_recv(
            RECV_TAG | slot as u64,
            Slice {
                region: self.incoming,
                offset: slot * self.slot_len,
                len: self.slot_len,
            },
        )?)
    }

    /// Whether every I/O is answered and every answer completed.
    pub fn finished(&self) -> bool {
        self.answered == self.config.count && self.completed == self.posted
    }

    /// Drain completions, then answer what arrived. Returns whether
    /// anything happened.
    pub fn step<T: Transport>(&mut self, t: &mut T) -> Result<bool, ShapedError> {
        let mut out = [EMPTY; BATCH];
        let n = t.poll_completions(&mut out)?;
        for completion in &out[..n] {
            completion.status.map_err(ShapedError::Completion)?;
            if completion.wr_id & !SLOT_MASK != RECV_TAG {
                self.completed += 1;
                continue;
            }
            let slot = (completion.wr_id & SLOT_MASK) as usize;
            match (self.config.op, completion.kind) {
                (ShapedOp::Read, CompletionKind::Recv { len })
                    if len % REQUEST_LEN == 0
                        && (1..=self.config.batch.max(1)).contains(&(len / REQUEST_LEN)) =>
                {
                    let request = t.region(self.incoming)?;
                    let count = len / REQUEST_LEN;
                    for i in 0..count {
                        let at = slot * self.slot_len + i * REQUEST_LEN;
                        let parsed = request
                            .get(at + 16..at + 48)
                            .and_then(|d| Some((descriptor(&d[..16])?, descriptor(&d[16..])?)))
                            .filter(|(dest, status)| {
                                dest.len as usize >= self.config.size
                                    && status.len as usize >= STATUS_LEN
                            })
                            .ok_or(ShapedError::Unexpected("request"))?;
                        // Batched: the last read's write carries the batch's
                        // count; single reads are numbered when answered.
                        let imm = if self.config.batch <= 1 || i + 1 == count {
                            Some(count as u32)
                        } else {
                            None
                        };
                        self.reads.push_back((parsed.0, parsed.1, false, imm));
                    }
                }
                (ShapedOp::Write, CompletionKind::Recv { len }) => {
                    let data_len = self.config.fragment_data(self.fragments);
                    if let Some(ServerFile::Written { file, open }) = &self.file {
                        let header = if self.fragments == 0 {
                            FIRST_HEADER
                        } else {
                            NEXT_HEADER
                        };
                        if len != header + data_len {
                            return Err(ShapedError::Unexpected("write fragment length"));
                        }
                        let at = slot * self.slot_len + header;
                        let data = t
                            .region(self.incoming)?
                            .get(at..at + data_len)
                            .ok_or(ShapedError::Unexpected("write fragment"))?;
                        let offset =
                            file.offset(self.writes_in, self.config.size) + self.fragment_offset;
                        open.write_at(offset, data).map_err(|e| {
                            ShapedError::Setup(format!("writing the shaped loop's file: {e}"))
                        })?;
                    }
                    self.fragments += 1;
                    self.fragment_offset += data_len as u64;
                    if self.fragments == self.config.fragments() {
                        self.fragments = 0;
                        self.fragment_offset = 0;
                        self.writes_in += 1;
                        self.replies_due += 1;
                    }
                }
                _ => return Err(ShapedError::Unexpected("completion at the server")),
            }
            self.post_recv(t, slot)?;
        }
        let mut posted = false;
        loop {
            let slot = self.answered % self.config.depth;
            let status = Slice {
                region: self.status,
                offset: slot * STATUS_LEN,
                len: STATUS_LEN,
            };
            match self.config.op {
                ShapedOp::Read => {
                    let Some(&(dest, block, data_posted, imm)) = self.reads.front() else {
                        break;
                    };
                    if self.config.batch > 1 {
                        // Data and status block in one write, the block
                        // right after the data; the batch's last with the
                        // immediate (its count).
                        let data = self.read_source(slot);
                        let joined = RemoteBuf {
                            len: dest.len + STATUS_LEN as u32,
                            ..dest
                        };
                        if block.key != dest.key
                            || Some(block.addr) != dest.addr.checked_add(u64::from(dest.len))
                        {
                            return Err(ShapedError::Unexpected("a batched read's status block"));
                        }
                        if full(t.post_write(
                            WRITE_TAG | slot as u64,
                            &[data, status],
                            joined,
                            imm,
                        ))? {
                            break;
                        }
                        self.reads.pop_front();
                        self.posted += 1;
                        self.answered += 1;
                        posted = true;
                        continue;
                    }
                    if !data_posted {
                        let data = self.read_source(slot);
                        if full(t.post_write(WRITE_TAG | slot as u64, &[data], dest, None))? {
                            break;
                        }
                        if let Some(front) = self.reads.front_mut() {
                            front.2 = true;
                        }
                        self.posted += 1;
                    }
                    let imm = Some(self.answered as u32);
                    if full(t.post_write(WRITE_TAG | slot as u64, &[status], block, imm))? {
                        break;
                    }
                    self.reads.pop_front();
                }
                ShapedOp::Write => {
                    if self.replies_due == 0 {
                        break;
                    }
                    if full(t.post_send(SEND_TAG | slot as u64, &[status], None))? {
                        break;
                    }
                    self.replies_due -= 1;
                }
            }
            self.posted += 1;
            self.answered += 1;
            posted = true;
        }
        Ok(n > 0 || posted)
    }
}

/// Step `client` to the end; its elapsed time from the first post to the
/// last reply.
pub fn drive_client<T: Transport>(
    t: &mut T,
    client: &mut ShapedClient,
    polling: bool,
) -> Result<Duration, ShapedError> {
    let started = Instant::now();
    while !client.finished() {
        if !client.step(t)? {
            idle(t, polling)?;
        }
    }
    Ok(started.elapsed())
}

/// Step `server` to the end.
pub fn drive_server<T: Transport>(
    t: &mut T,
    server: &mut ShapedServer,
    polling: bool,
) -> Result<(), ShapedError> {
    while !server.finished() {
        if !server.step(t)? {
            idle(t, polling)?;
        }
    }
    Ok(())
}

/// A step found nothing to do: wait for a completion (interrupt mode), or,
/// polling, give the CPU away for a moment. Both ends of a threaded run
/// live in this process; on a machine with more runnable threads than
/// CPUs, two threads spinning for each other's next message would hand
/// over only when the scheduler's time slice ends (measured: cma 4 KiB QD
/// 1 at 452 I/Os per second, 2.2 ms each, at load 16 on 2 vCPUs). With
/// nothing else runnable, `yield_now` returns at once.
fn idle<T: Transport>(t: &mut T, polling: bool) -> Result<(), ShapedError> {
    if polling {
        std::thread::yield_now();
    } else {
        t.wait(Some(IDLE_WAIT))?;
    }
    Ok(())
}

/// Both ends on this thread, stepped in turn (as rdio's inline mode runs
/// client and server): `client` and `server` are the two ends of one
/// connection. Returns the elapsed time.
pub fn run_inline<T: Transport>(
    client_t: &mut T,
    server_t: &mut T,
    config: ShapedConfig,
    file: Option<&Arc<ShapedFile>>,
) -> Result<Duration, ShapedError> {
    let config = config.fit(&client_t.caps())?.fit(&server_t.caps())?;
    let mut server = ShapedServer::new(server_t, config, file)?;
    let mut client = ShapedClient::new(client_t, config)?;
    let started = Instant::now();
    while !client.finished() {
        server.step(server_t)?;
        client.step(client_t)?;
    }
    let elapsed = started.elapsed();
    while !server.finished() {
        server.step(server_t)?;
        client.step(client_t)?;
    }
    Ok(elapsed)
}

/// The server on a thread of its own: `accept` gives its end, `connect`
/// the client's. The clock runs on the client, from its first post to its
/// last reply; the server is joined before the client's end is dropped.
pub fn run_threaded<T, A, C>(
    accept: A,
    connect: C,
    config: ShapedConfig,
    file: Option<Arc<ShapedFile>>,
) -> Result<(Duration, ShapedConfig), ShapedError>
where
    T: Transport + Send + 'static,
    A: FnOnce() -> Result<T, ShapedError> + Send + 'static,
    C: FnOnce() -> Result<T, ShapedError>,
{
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let server = std::thread::spawn(move || -> Result<(), ShapedError> {
        let mut t = accept()?;
        let config = config.fit(&t.caps())?;
        let mut server = ShapedServer::new(&mut t, config, file.as_ref())?;
        // The client starts only once every receive is posted.
        let _ = ready_tx.send(config);
        drive_server(&mut t, &mut server, config.polling)?;
        // Keep the connection until the client has let go of it.
        let _ = done_rx.recv();
        Ok(())
    });
    let mut t = connect()?;
    let outcome: Result<_, ShapedError> = (|| {
        let config = ready_rx
            .recv()
            .map_err(|_| ShapedError::Setup("the server end stopped".to_owned()))?;
        let config = config.fit(&t.caps())?;
        let mut client = ShapedClient::new(&mut t, config)?;
        let elapsed = drive_client(&mut t, &mut client, config.polling)?;
        Ok((elapsed, config))
    })();
    drop(done_tx);
    let served = server
        .join()
        .map_err(|_| ShapedError::Setup("the server thread panicked".to_owned()))?;
    let outcome = outcome?;
    served?;
    drop(t);
    Ok(outcome)
}

/// Over the in-memory loopback pair: inline (both ends on this thread,
/// as `rdio bench` runs its server by default) or on two threads (as with
/// `--server-threads`).
pub fn run_loopback(
    config: ShapedConfig,
    threads: bool,
    file: Option<Arc<ShapedFile>>,
) -> Result<Duration, ShapedError> {
    let loopback = rdio_loopback::Config::default();
    if threads {
        let (a, b) = rdio_loopback::sync_pair(loopback);
        run_threaded(move || Ok(b), move || Ok(a), config, file).map(|(elapsed, _)| elapsed)
    } else {
        let (mut a, mut b) = rdio_loopback::pair(loopback);
        run_inline(&mut a, &mut b, config, file.as_ref())
    }
}

/// Between two libfabric endpoints of `provider` on 127.0.0.1, the server
/// end on a thread.
pub fn run_fabric(
    provider: &str,
    config: ShapedConfig,
    file: Option<Arc<ShapedFile>>,
) -> Result<Duration, ShapedError> {
    let setup = |err: rdio_fabric::FabricError| ShapedError::Setup(err.to_string());
    let listener = rdio_fabric::Listener::bind(
        std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0)),
        provider,
    )
    .map_err(setup)?;
    let addr = listener.local_addr();
    let provider = provider.to_owned();
    run_threaded(
        move || listener.accept_timeout(SETUP_TIMEOUT).map_err(setup),
        move || rdio_fabric::connect(addr, &provider).map_err(setup),
        config,
        file,
    )
    .map(|(elapsed, _)| elapsed)
}

/// Between two cma endpoints of this process (the server end on a
/// thread): the same `process_vm_writev` copies and Unix-socket frames as
/// between two processes.
pub fn run_cma(
    config: ShapedConfig,
    file: Option<Arc<ShapedFile>>,
) -> Result<Duration, ShapedError> {
    let setup = |err: rdio_cma::CmaError| ShapedError::Setup(err.to_string());
    let listener = rdio_cma::Listener::bind(std::net::SocketAddr::from((
        std::net::Ipv4Addr::LOCALHOST,
        0,
    )))
    .map_err(setup)?;
    let addr = listener.local_addr();
    run_threaded(
        move || {
            listener
                .accept(SETUP_TIMEOUT, SETUP_TIMEOUT)
                .map_err(setup)?
                .ok_or_else(|| ShapedError::Setup("no connection came".to_owned()))
        },
        move || rdio_cma::connect(addr, SETUP_TIMEOUT).map_err(setup),
        config,
        file,
    )
    .map(|(elapsed, _)| elapsed)
}

/// How long a connection of a run may take to set up.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    fn config(op: ShapedOp, size: usize, depth: usize) -> ShapedConfig {
        ShapedConfig {
            op,
            size,
            count: 50,
            depth,
            max_send: 64 << 10,
            polling: true,
            batch: 1,
            copy_out: false,
            copy_in: false,
        }
    }

    #[test]
    fn fragments_split_a_write_as_rdio_does() {
        let c = config(ShapedOp::Write, 4096, 1);
        assert_eq!(c.fragments(), 1);
        assert_eq!(c.fragment_data(0), 4096);
        let c = config(ShapedOp::Write, 1 << 20, 1);
        // 65488 in the first, 65512 in each of the next 15, the rest last.
        assert_eq!(c.fragments(), 17);
        let total: usize = (0..c.fragments()).map(|i| c.fragment_data(i)).sum();
        assert_eq!(total, 1 << 20);
        assert!((0..c.fragments()).all(|i| c.fragment_data(i) > 0));
    }

    /// Over the loopback pair, inline: every I/O of every shape completes,
    /// and the read's data really lands in the client's slots.
    #[test]
    fn every_shape_completes_over_the_loopback() {
        for op in [ShapedOp::Read, ShapedOp::Write] {
            for (size, depth) in [(4096, 1), (4096, 8), (200 << 10, 4)] {
                let (mut a, mut b) = rdio_loopback::pair(rdio_loopback::Config::default());
                let c = config(op, size, depth);
                let fitted = c.fit(&a.caps()).expect("fits");
                let mut server = ShapedServer::new(&mut b, fitted, None).expect("server");
                let mut client = ShapedClient::new(&mut a, fitted).expect("client");
                let mut steps = 0;
                while !(client.finished() && server.finished()) {
                    server.step(&mut b).expect("server step");
                    client.step(&mut a).expect("client step");
                    steps += 1;
                    assert!(steps < 100_000, "{op:?} {size} {depth}: stuck");
                }
                assert_eq!(client.done(), 50);
                if op == ShapedOp::Read {
                    let data = a.region(client.data[0]).expect("data");
                    assert!(
                        data.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8),
                        "read data landed"
                    );
                }
            }
        }
    }

    /// Batched reads: every read completes (50 reads in batches of 4 and
    /// 8: the last batch short), one immediate per batch, the data landed;
    /// a batch larger than the depth is cut to it.
    #[test]
    fn batched_reads_complete_over_the_loopback() {
        for (depth, batch) in [(8, 4), (16, 8), (4, 16), (1, 2)] {
            let (mut a, mut b) = rdio_loopback::pair(rdio_loopback::Config::default());
            let c = ShapedConfig {
                batch,
                ..config(ShapedOp::Read, 4096, depth)
            }
            .fit(&a.caps())
            .expect("fits");
            assert_eq!(c.batch, batch.min(depth));
            let mut server = ShapedServer::new(&mut b, c, None).expect("server");
            let mut client = ShapedClient::new(&mut a, c).expect("client");
            let mut immediates = 0;
            let mut steps = 0;
            while !(client.finished() && server.finished()) {
                server.step(&mut b).expect("server step");
                let before = client.done();
                client.step(&mut a).expect("client step");
                immediates += usize::from(client.done() > before);
                steps += 1;
                assert!(steps < 100_000, "{depth} {batch}: stuck");
            }
            assert_eq!(client.done(), 50);
            assert!(
                immediates <= 50usize.div_ceil(c.batch),
                "{depth} {batch}: {immediates} steps took completions"
            );
            // Each slot's data, its status block after it.
            let data = a.region(client.data[0]).expect("data");
            for (slot, bytes) in data.chunks(c.slot_stride()).enumerate() {
                let landed = bytes[..4096]
                    .iter()
                    .enumerate()
                    .all(|(i, &b)| b == ((slot * 4096 + i) % 251) as u8);
                assert!(landed, "{depth} {batch}: slot {slot}");
            }
        }
    }

    /// With a file, reads land the file's bytes from the offsets an rdio
    /// row walks (its mapping is the source), and write data lands in the
    /// file, fragment by fragment, at the offsets of its I/Os.
    #[test]
    fn file_backed_shapes_read_and_write_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Two slots of 64 KiB more than the depth: I/O n reads slot n % 6.
        let size = 64 << 10;
        let file = ShapedFile::create(dir.path(), 6 * size as u64).expect("file");
        for op in [ShapedOp::Read, ShapedOp::Write] {
            let (mut a, mut b) = rdio_loopback::pair(rdio_loopback::Config::default());
            // Fragments of 16 KiB - 48 and - 24: several per write.
            let c = ShapedConfig {
                max_send: 16 << 10,
                count: 9,
                copy_out: true,
                copy_in: true,
                ..config(op, size, 4)
            }
            .fit(&a.caps())
            .expect("fits");
            let mut server = ShapedServer::new(&mut b, c, Some(&file)).expect("server");
            let mut client = ShapedClient::new(&mut a, c).expect("client");
            while !(client.finished() && server.finished()) {
                server.step(&mut b).expect("server step");
                client.step(&mut a).expect("client step");
            }
            drop(server);
            let bytes = std::fs::read(
                dir.path()
                    .read_dir()
                    .expect("dir")
                    .next()
                    .expect("temp")
                    .expect("entry")
                    .path()
                    .join(SHAPED_FILE),
            )
            .expect("read the file");
            match op {
                ShapedOp::Read => {
                    // The last I/O (8) went to client slot 0, from file
                    // slot 8 % 6 = 2, and was copied out from there.
                    let data = a.region(client.data[0]).expect("data");
                    let want = &bytes[2 * size..3 * size];
                    assert_eq!(&data[..size], want, "file slot 2 in client slot 0");
                    assert_eq!(client.copied(), want, "the last read copied out");
                }
                ShapedOp::Write => {
                    // Nine writes of the data copied into the client's
                    // slots (not their 0xa5 fill): file slots 0-5.
                    let copied: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
                    assert!(
                        bytes.chunks(size).all(|slot| slot == copied),
                        "every slot written with the copied-in data"
                    );
                }
            }
        }
        assert_eq!(
            ShapedServer::new(
                &mut rdio_loopback::pair(rdio_loopback::Config::default()).1,
                config(ShapedOp::Read, 7 * size, 1),
                Some(&file)
            )
            .map(drop),
            Err(ShapedError::InvalidConfig),
            "an I/O larger than the file"
        );
    }

    /// Fresh regions are untouched zero pages: both ends write all of
    /// theirs before the clock starts, so no first-touch page fault lands
    /// in the timed loop.
    #[test]
    fn every_buffer_is_touched_before_the_clock_starts() {
        for op in [ShapedOp::Read, ShapedOp::Write] {
            let (mut a, mut b) = rdio_loopback::pair(rdio_loopback::Config::default());
            let c = config(op, 64 << 10, 4).fit(&a.caps()).expect("fits");
            let server = ShapedServer::new(&mut b, c, None).expect("server");
            let client = ShapedClient::new(&mut a, c).expect("client");
            let written = |t: &rdio_loopback::Endpoint, region| {
                t.region(region).expect("region").iter().all(|&x| x != 0)
            };
            assert_eq!(client.data.len(), if op == ShapedOp::Write { 4 } else { 1 });
            for &region in &client.data {
                assert!(written(&a, region), "{op:?}: client data slots");
            }
            assert!(written(&a, client.replies), "{op:?}: client replies");
            assert!(written(&b, server.incoming), "{op:?}: server receives");
            assert!(written(&b, server.status), "{op:?}: server status blocks");
        }
    }

    #[test]
    fn run_inline_times_the_whole_run() {
        let (mut a, mut b) = rdio_loopback::pair(rdio_loopback::Config::default());
        let elapsed =
            run_inline(&mut a, &mut b, config(ShapedOp::Read, 4096, 8), None).expect("run");
        assert!(elapsed > Duration::ZERO);
    }

    #[test]
    fn threaded_over_the_sync_pair() {
        for op in [ShapedOp::Read, ShapedOp::Write] {
            let (a, b) = rdio_loopback::sync_pair(rdio_loopback::Config::default());
            let c = ShapedConfig {
                polling: false,
                ..config(op, 64 << 10, 4)
            };
            let (elapsed, fitted) =
                run_threaded(move || Ok(b), move || Ok(a), c, None).expect("run");
            assert!(elapsed > Duration::ZERO);
            assert_eq!(fitted.depth, 4);
        }
    }

    #[test]
    fn every_shape_completes_over_cma_and_fabric_tcp() {
        for op in [ShapedOp::Read, ShapedOp::Write] {
            for polling in [true, false] {
                let c = ShapedConfig {
                    polling,
                    ..config(op, 64 << 10, 4)
                };
                assert!(run_cma(c, None).expect("cma") > Duration::ZERO);
                assert!(run_fabric("tcp", c, None).expect("fabric tcp") > Duration::ZERO);
            }
        }
        let batched = ShapedConfig {
            batch: 4,
            ..config(ShapedOp::Read, 4096, 8)
        };
        assert!(run_cma(batched, None).expect("cma") > Duration::ZERO);
        assert!(run_fabric("tcp", batched, None).expect("fabric tcp") > Duration::ZERO);
    }

    #[test]
    fn invalid_configs_are_refused() {
        let caps = rdio_loopback::Config::default();
        let (a, _b) = rdio_loopback::pair(caps);
        for c in [
            ShapedConfig {
                size: 0,
                ..config(ShapedOp::Read, 1, 1)
            },
            ShapedConfig {
                depth: 0,
                ..config(ShapedOp::Read, 1, 1)
            },
            ShapedConfig {
                max_send: 16,
                ..config(ShapedOp::Write, 1, 1)
            },
        ] {
            assert_eq!(c.fit(&a.caps()), Err(ShapedError::InvalidConfig));
        }
    }
}
