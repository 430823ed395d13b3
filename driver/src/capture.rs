//! Packet capture: every side-channel frame and every RDMA message as the
//! transport carries it, written to a pcapng file that Wireshark and tshark
//! read (with `dissector/rdio.lua`).
//!
//! * [`Recorder`] writes the file: a pcapng section, one interface of link
//!   type `USER0` (147) with nanosecond timestamps, and one enhanced packet
//!   block per record. Each record is a 32-byte [record header](Record)
//!   followed by the payload, cut at the recorder's snap length (pipe
//!   frames are kept whole). The format is in `docs/CAPTURE.md`.
//! * [`Capture`] wraps any [`Transport`] and records what it posts (sends,
//!   RDMA writes with their remote address, key, length and immediate) and
//!   what it receives (receives with their bytes, immediates), plus failed
//!   completions and the disconnect.
//! * [`PipeTap`] wraps the side channel's byte stream and records each
//!   whole frame, in and out.
//!
//! Capture costs nothing when off: callers wrap a transport only when a
//! recorder exists, and a [`PipeTap`] without one forwards every call.
//! When on, every record takes the recorder's lock and writes to the file
//! at once (a capture survives a crash of the process that made it).

use crate::net::{RdmaConnector, RdmaListener, SetupError};
use rdio_core::wire::pipe::PIPE_HEADER_LEN;
use rdio_core::wire::{MAX_PIPE_PAYLOAD, ProviderList, ProviderName};
use rdio_transport::{
    Completion, CompletionKind, RemoteBuf, Slice, Transport, TransportError, TransportWrapper,
    WcError, WrId,
};
use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// pcapng link type `LINKTYPE_USER0`.
pub const LINKTYPE_USER0: u16 = 147;

/// Bytes of the record header before every payload.
pub const RECORD_HEADER_LEN: usize = 32;

/// Version of the record header.
pub const RECORD_VERSION: u8 = 1;

/// Default payload bytes kept per RDMA record: every header and
/// descriptor of a message (the largest, a 16-segment `ReadV`, is 424
/// bytes) and the start of its data.
pub const DEFAULT_SNAPLEN: usize = 512;

/// Which way a record went, seen from the capturing process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Direction {
    /// Sent, posted or written by this process.
    Out = 0,
    /// Received by this process.
    In = 1,
}

/// What a record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A whole side-channel frame (pipe header and payload).
    Pipe = 1,
    /// An RDMA-channel send: one rdio message.
    Send = 2,
    /// A completed receive: one rdio message from the peer.
    Recv = 3,
    /// An RDMA write (data or a status block) to the peer's memory at the
    /// record's remote address and key; with the immediate flag, a write
    /// with immediate.
    Write = 4,
    /// A receive consumed by the peer's write with immediate: no bytes,
    /// the immediate only.
    RecvImm = 5,
    /// A work request failed; the immediate field holds the error code
    /// ([`wc_error_code`]).
    Error = 6,
    /// The connection was torn down by this side.
    Disconnect = 7,
}

/// Record header flag: the immediate field is meaningful.
pub const FLAG_IMMEDIATE: u8 = 0x01;
/// Record header flag: the payload was cut at the snap length.
pub const FLAG_TRUNCATED: u8 = 0x02;

/// One record, before it is written.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    /// Which way.
    pub direction: Direction,
    /// What.
    pub kind: Kind,
    /// The connection (pipe or RDMA) it belongs to, numbered by the
    /// recorder from 1.
    pub connection: u32,
    /// For writes, the peer memory written.
    pub remote: RemoteBuf,
    /// The immediate (or error code).
    pub imm: Option<u32>,
    /// The payload, or its start (the recorder cuts it at the snap
    /// length).
    pub payload: &'a [u8],
    /// The payload's whole length (at least `payload.len()`).
    pub len: usize,
}

/// Code of a failed work request in an [`Kind::Error`] record.
pub fn wc_error_code(error: WcError) -> u32 {
    match error {
        WcError::RemoteAccess => 1,
        WcError::LocalProtection => 2,
        WcError::ReceiverNotReady => 3,
        WcError::LocalLength => 4,
        WcError::RemoteOperation => 5,
        WcError::Flushed => 6,
        WcError::Disconnected => 7,
        WcError::Other(_) => 0xFF,
        _ => 0xFE,
    }
}

/// Writes records to a pcapng file. Shared by every connection of a
/// process (`Arc`); records are written whole, under a lock.
#[derive(Debug)]
pub struct Recorder {
    file: Mutex<Sink>,
    snaplen: usize,
    connections: AtomicU32,
}

struct Sink {
    out: Box<dyn Write + Send>,
    /// The first write error: later records are dropped, and
    /// [`Recorder::finish`] reports it.
    failed: Option<io::Error>,
    records: u64,
    block: Vec<u8>,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("failed", &self.failed)
            .field("records", &self.records)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// Create (or truncate) `path` and write the pcapng section and
    /// interface headers. RDMA payloads are cut at `snaplen` bytes.
    pub fn create(path: &Path, snaplen: usize) -> io::Result<Arc<Self>> {
        let file = fs::File::create(path)?;
        Self::new(Box::new(file), snaplen)
    }

    /// A recorder writing to `out`.
    pub fn new(mut out: Box<dyn Write + Send>, snaplen: usize) -> io::Result<Arc<Self>> {
        out.write_all(&section_header())?;
        out.write_all(&interface_description())?;
        out.flush()?;
        Ok(Arc::new(Self {
            file: Mutex::new(Sink {
                out,
                failed: None,
                records: 0,
                block: Vec::new(),
            }),
            snaplen,
            connections: AtomicU32::new(0),
        }))
    }

    /// A new connection id (1, 2, ...).
    pub fn connection(&self) -> u32 {
        self.connections.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Write one record (cut at the snap length unless it is a pipe
    /// frame), stamped now.
    pub fn record(&self, record: &Record<'_>) {
        let limit = if record.kind == Kind::Pipe {
            usize::MAX
        } else {
            self.snaplen
        };
        let kept = &record.payload[..record.payload.len().min(limit)];
        let len = record.len.max(record.payload.len());
        let mut flags = 0;
        if record.imm.is_some() {
            flags |= FLAG_IMMEDIATE;
        }
        if kept.len() < len {
            flags |= FLAG_TRUNCATED;
        }
        let mut header = [0u8; RECORD_HEADER_LEN];
        header[0] = RECORD_VERSION;
        header[1] = record.direction as u8;
        header[2] = record.kind as u8;
        header[3] = flags;
        header[4..8].copy_from_slice(&record.connection.to_le_bytes());
        header[8..16].copy_from_slice(&record.remote.addr.to_le_bytes());
        header[16..20].copy_from_slice(&record.remote.key.to_le_bytes());
        header[20..24].copy_from_slice(&record.remote.len.to_le_bytes());
        header[24..28].copy_from_slice(&record.imm.unwrap_or(0).to_le_bytes());
        let original = u32::try_from(len).unwrap_or(u32::MAX);
        header[28..32].copy_from_slice(&original.to_le_bytes());
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);

        let mut sink = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        if sink.failed.is_some() {
            return;
        }
        let Sink { out, block, .. } = &mut *sink;
        enhanced_packet(
            block,
            stamp,
            &header,
            kept,
            RECORD_HEADER_LEN.saturating_add(len),
        );
        let written = out.write_all(block).and_then(|()| out.flush());
        match written {
            Ok(()) => sink.records += 1,
            Err(error) => sink.failed = Some(error),
        }
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.file
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .records
    }

    /// Flush, and report the first write error if a record was lost.
    pub fn finish(&self) -> io::Result<u64> {
        let mut sink = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(error) = sink.failed.take() {
            return Err(io::Error::new(
                error.kind(),
                format!("capture incomplete after {} records: {error}", sink.records),
            ));
        }
        sink.out.flush()?;
        Ok(sink.records)
    }
}

fn block(kind: u32, body: &[u8]) -> Vec<u8> {
    let total = (12 + body.len()) as u32;
    let mut bytes = Vec::with_capacity(total as usize);
    bytes.extend_from_slice(&kind.to_le_bytes());
    bytes.extend_from_slice(&total.to_le_bytes());
    bytes.extend_from_slice(body);
    bytes.extend_from_slice(&total.to_le_bytes());
    bytes
}

/// Section header block: little-endian, version 1.0, length unknown.
fn section_header() -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&0x1A2B_3C4Du32.to_le_bytes());
    body.extend_from_slice(&1u16.to_le_bytes());
    body.extend_from_slice(&0u16.to_le_bytes());
    body.extend_from_slice(&(-1i64).to_le_bytes());
    block(0x0A0D_0D0A, &body)
}

/// Interface description block: USER0, no snap limit of the interface,
/// `if_tsresol` 9 (nanoseconds).
fn interface_description() -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&LINKTYPE_USER0.to_le_bytes());
    body.extend_from_slice(&0u16.to_le_bytes());
    body.extend_from_slice(&0u32.to_le_bytes());
    // if_tsresol (code 9, length 1): 10^-9 s, padded to 4 bytes.
    body.extend_from_slice(&9u16.to_le_bytes());
    body.extend_from_slice(&1u16.to_le_bytes());
    body.extend_from_slice(&[9, 0, 0, 0]);
    // opt_endofopt.
    body.extend_from_slice(&[0, 0, 0, 0]);
    block(1, &body)
}

/// An enhanced packet block for interface 0 into `out` (reused).
fn enhanced_packet(
    out: &mut Vec<u8>,
    stamp: Duration,
    header: &[u8],
    data: &[u8],
    original: usize,
) {
    let captured = header.len() + data.len();
    let padded = captured.next_multiple_of(4);
    let total = (32 + padded) as u32;
    let nanos = u64::try_from(stamp.as_nanos()).unwrap_or(u64::MAX);
    out.clear();
    out.extend_from_slice(&6u32.to_le_bytes());
    out.extend_from_slice(&total.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&((nanos >> 32) as u32).to_le_bytes());
    out.extend_from_slice(&(nanos as u32).to_le_bytes());
    out.extend_from_slice(&(captured as u32).to_le_bytes());
    out.extend_from_slice(&u32::try_from(original).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(header);
    out.extend_from_slice(data);
    out.resize(out.len() + padded - captured, 0);
    out.extend_from_slice(&total.to_le_bytes());
}

/// A transport that records everything it carries to a [`Recorder`].
#[derive(Debug)]
pub struct Capture<T> {
    inner: T,
    recorder: Arc<Recorder>,
    connection: u32,
    /// Posted receives by work request id, to find a receive's bytes.
    receives: HashMap<WrId, Slice>,
    gathered: Vec<u8>,
}

impl<T: Transport> Capture<T> {
    /// Record `inner` as a new connection of `recorder`.
    pub fn new(inner: T, recorder: Arc<Recorder>) -> Self {
        let connection = recorder.connection();
        Self {
            inner,
            recorder,
            connection,
            receives: HashMap::new(),
            gathered: Vec::new(),
        }
    }

    /// The connection id in the capture.
    pub fn connection(&self) -> u32 {
        self.connection
    }

    /// The wrapped transport.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// Unwrap.
    pub fn into_inner(self) -> T {
        self.inner
    }

    /// Copy the bytes of `sges` (up to the snap length and a little: the
    /// record keeps only that much) into `self.gathered`; the whole length.
    fn gather(&mut self, sges: &[Slice]) -> usize {
        self.gathered.clear();
        let mut total = 0usize;
        for sge in sges {
            total = total.saturating_add(sge.len);
            let room = self.recorder.snaplen.saturating_sub(self.gathered.len());
            if room == 0 {
                continue;
            }
            if let Ok(bytes) = self.inner.region(sge.region) {
                let end = sge.offset.saturating_add(sge.len.min(room));
                if let Some(part) = bytes.get(sge.offset..end) {
                    self.gathered.extend_from_slice(part);
                }
            }
        }
        total
    }

    fn record_posted(&mut self, kind: Kind, sges: &[Slice], remote: RemoteBuf, imm: Option<u32>) {
        let len = self.gather(sges);
        self.record_out(kind, &self.gathered, len, remote, imm);
    }

    /// An inline send or write: its bytes are the post's own.
    fn record_inline(&self, kind: Kind, data: &[u8], remote: RemoteBuf, imm: Option<u32>) {
        let captured = data.get(..self.recorder.snaplen).unwrap_or(data);
        self.record_out(kind, captured, data.len(), remote, imm);
    }

    /// A write of `sges` with `tail` after them, recorded as the two writes
    /// it joins: the gathered data (without the immediate), then the tail
    /// (with it), so a status block that follows its read's data decodes as
    /// one written alone does.
    fn record_tail(&mut self, sges: &[Slice], tail: &[u8], dst: RemoteBuf, imm: Option<u32>) {
        let len = rdio_transport::total_len(sges).unwrap_or(0);
        let head = RemoteBuf {
            len: u32::try_from(len).unwrap_or(u32::MAX),
            ..dst
        };
        self.record_posted(Kind::Write, sges, head, None);
        let rest = RemoteBuf {
            addr: dst.addr.wrapping_add(len as u64),
            key: dst.key,
            len: dst.len.saturating_sub(head.len),
        };
        self.record_inline(Kind::Write, tail, rest, imm);
    }

    /// A posted send or write of `len` bytes, `payload` of them captured.
    fn record_out(
        &self,
        kind: Kind,
        payload: &[u8],
        len: usize,
        remote: RemoteBuf,
        imm: Option<u32>,
    ) {
        self.recorder.record(&Record {
            direction: Direction::Out,
            kind,
            connection: self.connection,
            remote,
            imm,
            payload,
            len,
        });
    }

    fn record_completion(&mut self, completion: &Completion) {
        let posted = match completion.kind {
            CompletionKind::Recv { .. } | CompletionKind::RecvImm { .. } => {
                self.receives.remove(&completion.wr_id)
            }
            CompletionKind::Send | CompletionKind::Write => None,
        };
        let base = Record {
            direction: Direction::In,
            kind: Kind::Recv,
            connection: self.connection,
            remote: RemoteBuf::default(),
            imm: None,
            payload: &[],
            len: 0,
        };
        if let Err(error) = completion.status {
            self.recorder.record(&Record {
                kind: Kind::Error,
                imm: Some(wc_error_code(error)),
                ..base
            });
            return;
        }
        match completion.kind {
            CompletionKind::Recv { len } => {
                let bytes = posted
                    .and_then(|slice| {
                        let region = self.inner.region(slice.region).ok()?;
                        region.get(slice.offset..slice.offset.checked_add(len)?)
                    })
                    .unwrap_or(&[]);
                self.recorder.record(&Record {
                    payload: bytes,
                    len: bytes.len(),
                    ..base
                });
            }
            CompletionKind::RecvImm { imm } => self.recorder.record(&Record {
                kind: Kind::RecvImm,
                imm: Some(imm),
                ..base
            }),
            CompletionKind::Send | CompletionKind::Write => {}
        }
    }
}

/// Records what it posts and what completes; every other call is the
/// wrapped transport's ([`TransportWrapper`] forwards it).
impl<T: Transport> TransportWrapper for Capture<T> {
    type Inner = T;

    fn inner(&self) -> &T {
        &self.inner
    }

    fn inner_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    fn post_recv(&mut self, wr_id: WrId, buf: Slice) -> Result<(), TransportError> {
        self.inner.post_recv(wr_id, buf)?;
        self.receives.insert(wr_id, buf);
        Ok(())
    }

    fn post_send(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        imm: Option<u32>,
    ) -> Result<(), TransportError> {
        self.inner.post_send(wr_id, sges, imm)?;
        self.record_posted(Kind::Send, sges, RemoteBuf::default(), imm);
        Ok(())
    }

    fn post_write(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        dst: RemoteBuf,
        imm: Option<u32>,
    ) -> Result<(), TransportError> {
        self.inner.post_write(wr_id, sges, dst, imm)?;
        self.record_posted(Kind::Write, sges, dst, imm);
        Ok(())
    }

    fn post_send_inline(&mut self, wr_id: WrId, data: &[u8]) -> Result<(), TransportError> {
        self.inner.post_send_inline(wr_id, data)?;
        self.record_inline(Kind::Send, data, RemoteBuf::default(), None);
        Ok(())
    }

    fn post_write_inline(
        &mut self,
        wr_id: WrId,
        data: &[u8],
        dst: RemoteBuf,
        imm: Option<u32>,
    ) -> Result<(), TransportError> {
        self.inner.post_write_inline(wr_id, data, dst, imm)?;
        self.record_inline(Kind::Write, data, dst, imm);
        Ok(())
    }

    /// Recorded as the two writes it joins (`record_tail`).
    fn post_write_tail(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        tail: &[u8],
        dst: RemoteBuf,
        imm: Option<u32>,
    ) -> Result<(), TransportError> {
        self.inner.post_write_tail(wr_id, sges, tail, dst, imm)?;
        self.record_tail(sges, tail, dst, imm);
        Ok(())
    }

    /// Recorded as [`Transport::post_write_tail`] is: the peer sees the
    /// same bytes.
    fn post_write_tail_unsignaled(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        tail: &[u8],
        dst: RemoteBuf,
    ) -> Result<(), TransportError> {
        self.inner
            .post_write_tail_unsignaled(wr_id, sges, tail, dst)?;
        self.record_tail(sges, tail, dst, None);
        Ok(())
    }

    fn poll_completions(&mut self, out: &mut [Completion]) -> Result<usize, TransportError> {
        let drained = self.inner.poll_completions(out)?;
        for completion in out.iter().take(drained) {
            self.record_completion(completion);
        }
        Ok(drained)
    }

    fn disconnect(&mut self) {
        self.recorder.record(&Record {
            direction: Direction::Out,
            kind: Kind::Disconnect,
            connection: self.connection,
            remote: RemoteBuf::default(),
            imm: None,
            payload: &[],
            len: 0,
        });
        self.inner.disconnect();
    }
}

/// A side-channel stream that records each whole frame it reads or
/// writes; without a recorder, a plain pass-through.
#[derive(Debug)]
pub struct PipeTap<S> {
    stream: S,
    tap: Option<Tap>,
}

#[derive(Debug)]
struct Tap {
    recorder: Arc<Recorder>,
    connection: u32,
    read: Vec<u8>,
    written: Vec<u8>,
}

impl<S> PipeTap<S> {
    /// Record `stream`'s frames to `recorder`, if any, as a new connection.
    pub fn new(stream: S, recorder: Option<Arc<Recorder>>) -> Self {
        Self {
            stream,
            tap: recorder.map(|recorder| Tap {
                connection: recorder.connection(),
                recorder,
                read: Vec::new(),
                written: Vec::new(),
            }),
        }
    }

    /// The stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }
}

impl Tap {
    /// Append `bytes` to the stream of `direction` and record every frame
    /// it completes. A header that cannot start a frame (bad magic, a
    /// length past the limit) is recorded as it stands, so the capture
    /// shows what the peer sent.
    fn observe(&mut self, direction: Direction, bytes: &[u8]) {
        let pending = match direction {
            Direction::In => &mut self.read,
            Direction::Out => &mut self.written,
        };
        pending.extend_from_slice(bytes);
        while pending.len() >= PIPE_HEADER_LEN {
            let declared = pending
                .get(8..12)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map_or(0, u32::from_le_bytes) as usize;
            let frame = if &pending[..4] != b"RDIO" || declared > MAX_PIPE_PAYLOAD {
                pending.len()
            } else {
                PIPE_HEADER_LEN + declared
            };
            if pending.len() < frame {
                break;
            }
            self.recorder.record(&Record {
                direction,
                kind: Kind::Pipe,
                connection: self.connection,
                remote: RemoteBuf::default(),
                imm: None,
                payload: &pending[..frame],
                len: frame,
            });
            pending.drain(..frame);
        }
    }
}

impl<S: Read> Read for PipeTap<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stream.read(buf)?;
        if let Some(tap) = &mut self.tap {
            tap.observe(Direction::In, &buf[..n]);
        }
        Ok(n)
    }
}

impl<S: Write> Write for PipeTap<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.stream.write(buf)?;
        if let Some(tap) = &mut self.tap {
            tap.observe(Direction::Out, &buf[..n]);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// An [`RdmaListener`] whose connections are recorded.
#[derive(Debug)]
pub struct CaptureListener<L> {
    inner: L,
    recorder: Arc<Recorder>,
}

impl<L> CaptureListener<L> {
    /// Record every connection `inner` accepts to `recorder`.
    pub fn new(inner: L, recorder: Arc<Recorder>) -> Self {
        Self { inner, recorder }
    }
}

impl<L: RdmaListener> RdmaListener for CaptureListener<L> {
    type Transport = Capture<L::Transport>;

    fn providers(&self) -> ProviderList {
        self.inner.providers()
    }

    fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr()
    }

    fn accept(&self, timeout: Duration) -> Result<Option<Self::Transport>, SetupError> {
        Ok(self
            .inner
            .accept(timeout)?
            .map(|transport| Capture::new(transport, Arc::clone(&self.recorder))))
    }
}

/// An [`RdmaConnector`] whose connections are recorded.
#[derive(Debug)]
pub struct CaptureConnector<'a, C> {
    inner: &'a C,
    recorder: Arc<Recorder>,
}

impl<'a, C> CaptureConnector<'a, C> {
    /// Record every connection `inner` makes to `recorder`.
    pub fn new(inner: &'a C, recorder: Arc<Recorder>) -> Self {
        Self { inner, recorder }
    }

    /// The recorder.
    pub fn recorder(&self) -> &Arc<Recorder> {
        &self.recorder
    }
}

impl<C: RdmaConnector> RdmaConnector for CaptureConnector<'_, C> {
    type Transport = Capture<C::Transport>;

    fn providers(&self) -> ProviderList {
        self.inner.providers()
    }

    fn connect(
        &self,
        endpoint: SocketAddr,
        provider: &ProviderName,
    ) -> Result<Self::Transport, SetupError> {
        let transport = self.inner.connect(endpoint, provider)?;
        Ok(Capture::new(transport, Arc::clone(&self.recorder)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Write` the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn u32_at(bytes: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
    }

    /// The enhanced packet blocks of a capture: (captured, original, data).
    fn packets(bytes: &[u8]) -> Vec<(u32, u32, Vec<u8>)> {
        let mut at = 0;
        let mut out = Vec::new();
        while at < bytes.len() {
            let kind = u32_at(bytes, at);
            let total = u32_at(bytes, at + 4) as usize;
            assert_eq!(total % 4, 0);
            assert_eq!(u32_at(bytes, at + total - 4) as usize, total, "trailer");
            if kind == 6 {
                let captured = u32_at(bytes, at + 20);
                let original = u32_at(bytes, at + 24);
                let data = bytes[at + 28..at + 28 + captured as usize].to_vec();
                out.push((captured, original, data));
            }
            at += total;
        }
        out
    }

    #[test]
    fn records_are_pcapng_blocks_with_the_documented_header() {
        let sink = Shared::default();
        let recorder = Recorder::new(Box::new(sink.clone()), 8).expect("recorder");
        let connection = recorder.connection();
        recorder.record(&Record {
            direction: Direction::Out,
            kind: Kind::Write,
            connection,
            remote: RemoteBuf {
                addr: 0x7f00_0000_1000,
                key: 0xbeef,
                len: 24,
            },
            imm: Some(0x1122_3344),
            payload: b"0123456789abcdef",
            len: 16,
        });
        let bytes = sink.0.lock().expect("lock").clone();
        // Section header: magic, byte-order magic, version 1.0.
        assert_eq!(u32_at(&bytes, 0), 0x0A0D_0D0A);
        assert_eq!(u32_at(&bytes, 8), 0x1A2B_3C4D);
        // Interface: USER0.
        assert_eq!(u32_at(&bytes, 28), 1);
        assert_eq!(u16::from_le_bytes([bytes[36], bytes[37]]), 147);
        let packets = packets(&bytes);
        assert_eq!(packets.len(), 1);
        let (captured, original, data) = &packets[0];
        assert_eq!(
            *captured as usize,
            RECORD_HEADER_LEN + 8,
            "cut at the snap length"
        );
        assert_eq!(*original as usize, RECORD_HEADER_LEN + 16);
        assert_eq!(&data[..4], &[1, 0, 4, FLAG_IMMEDIATE | FLAG_TRUNCATED]);
        assert_eq!(u32_at(data, 4), 1, "connection");
        assert_eq!(&data[8..16], &0x7f00_0000_1000u64.to_le_bytes());
        assert_eq!(u32_at(data, 16), 0xbeef);
        assert_eq!(u32_at(data, 20), 24);
        assert_eq!(u32_at(data, 24), 0x1122_3344);
        assert_eq!(u32_at(data, 28), 16, "original payload length");
        assert_eq!(&data[32..], b"01234567");
        assert_eq!(recorder.finish().expect("finish"), 1);
    }

    #[test]
    fn the_pipe_tap_records_whole_frames_however_the_stream_splits_them() {
        let sink = Shared::default();
        let recorder = Recorder::new(Box::new(sink.clone()), 8).expect("recorder");
        let mut frames = Vec::new();
        // ResumeKeyRequest, then a ResumeKeyResponse (16-byte payload):
        // pipe frames are never cut at the snap length.
        frames.extend_from_slice(b"RDIO\x01\x01\x00\x00\x00\x00\x00\x00");
        frames.extend_from_slice(b"RDIO\x01\x02\x00\x00\x10\x00\x00\x00");
        frames.extend_from_slice(&[0xb0; 16]);
        let mut tap = PipeTap::new(Vec::new(), Some(Arc::clone(&recorder)));
        for chunk in frames.chunks(5) {
            tap.write_all(chunk).expect("write");
        }
        let bytes = sink.0.lock().expect("lock").clone();
        let packets = packets(&bytes);
        assert_eq!(packets.len(), 2);
        assert_eq!(&packets[0].2[32..], &frames[..12]);
        assert_eq!(&packets[1].2[32..], &frames[12..]);
        assert_eq!(packets[1].2[2], Kind::Pipe as u8);
        assert_eq!(packets[1].2[3], 0, "not truncated");
        assert_eq!(tap.get_ref(), &frames);
    }

    #[test]
    fn a_write_error_is_reported_by_finish() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::from_raw_os_error(28))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        assert!(Recorder::new(Box::new(Full), 8).is_err());
    }
}
