//! A deterministic, single-threaded client/server pair over simulated RDMA
//! memory, stepped with virtual time (quinn `tests/util.rs` `Pair` style).
//!
//! The "network" is one FIFO queue per direction, as on a reliable-connected
//! queue pair: client sends in `c2s`; server sends and the immediate data of
//! RDMA writes in `s2c`, in the order the server posted them (RC delivers a
//! write-with-immediate's completion in order with sends). RDMA writes land
//! directly in the client's simulated registered memory (key = region index +
//! 1, address = offset), checked for bounds as an RC NIC would. Files are
//! in-memory byte vectors.
//!
//! Every moving part has a one-item step (`client_transmit_one`,
//! `server_receive_one`, `server_event_one`, `server_transmit_one`,
//! `client_receive_one`, `client_poll`, `client_events`) that returns what it
//! moved, so tests can hold and release each queue in any order and feed a
//! reference model; [`Pair::step`] and [`Pair::drive`] run them all. A
//! [`Fault`] schedule (lose, duplicate or corrupt a queued message, break the
//! connection) is applied by [`Pair::inject`], deterministically.
//!
//! Nothing here is part of the protocol under test: it only moves bytes
//! between the two state machines and records what they report. What a real
//! driver would treat as a hard error (an RDMA write outside the client's
//! memory, an immediate naming no request, a refused driver call) is
//! recorded in [`Pair::anomalies`] instead of panicking, so hostile-peer fuzz
//! targets can use the pair too; honest tests check it stays empty
//! ([`Pair::assert_clean`]).

use rdio_core::client::{
    self, BlockOutcome, Client, ClientConfig, ClientEvent, CompletionMode, RequestId,
};
use rdio_core::server::{
    Connection, FileEntry, FileId, OpId, Received, Registration, Registry, ServerConfig,
    ServerEvent, ServerOffer, Transmit,
};
use rdio_core::wire::{
    AuthKey, BufferDescriptor, OpenFlags, PipeMessage, ProviderList, ProviderName, ReadSegment,
    ResumeKey, Status,
};
use rdio_core::{ApiError, Instant, Violation};
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// Size of the pair's send buffers: the largest send size either side may
/// negotiate in these tests.
pub const SEND: usize = 64 * 1024;

/// Default bound on a simulated file's length: a write past it fails with
/// `IoError`, as `EFBIG` would on a real file system.
pub const MAX_FILE_LEN: usize = 16 << 20;

pub fn providers(names: &[&str]) -> ProviderList {
    names
        .iter()
        .map(|n| ProviderName::new(n).unwrap())
        .collect()
}

/// Client memory: registered regions addressed by (key, offset).
#[derive(Default)]
pub struct Memory {
    pub regions: Vec<Vec<u8>>,
}

impl Memory {
    pub fn alloc(&mut self, len: usize) -> BufferDescriptor {
        self.regions.push(vec![0; len]);
        BufferDescriptor::new(0, self.regions.len() as u32, len as u32)
    }

    /// The first `len` bytes of the window `desc` names, if `desc` is inside
    /// a registered region and at least `len` long (else an RC NIC would
    /// fail the RDMA write with a remote access error).
    pub fn slot(&mut self, desc: BufferDescriptor, len: usize) -> Option<&mut [u8]> {
        if len > desc.len() as usize {
            return None;
        }
        let index = (desc.key() as usize).checked_sub(1)?;
        let region = self.regions.get_mut(index)?;
        let start = usize::try_from(desc.addr()).ok()?;
        let end = start.checked_add(len)?;
        region.get_mut(start..end)
    }

    /// The bytes of a window the test allocated (panics on any other).
    pub fn read(&mut self, desc: BufferDescriptor) -> Vec<u8> {
        self.slot(desc, desc.len() as usize)
            .expect("not a window of client memory")
            .to_vec()
    }
}

/// One entry of the server-to-client queue, in the order the server posted
/// it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerSend {
    /// An ordinary send.
    Message(Vec<u8>),
    /// The completion raised by an RDMA write with immediate data (the
    /// status block itself is already in client memory).
    Immediate(u32),
}

/// What [`Pair::server_transmit_one`] posted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerOutput {
    /// A send.
    Send(Vec<u8>),
    /// A status block RDMA-written into client memory.
    StatusBlock {
        /// The encoded block.
        block: Vec<u8>,
        /// Immediate data, in interrupt mode.
        immediate: Option<u32>,
    },
}

/// What [`Pair::client_receive_one`] fed to the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientInput {
    /// A received send.
    Message(Vec<u8>),
    /// A status block read after an immediate; `None` when the immediate
    /// named no tracked request or an unwritten block (an anomaly).
    Immediate(Option<Vec<u8>>),
    /// The status blocks of a read batch, read after its immediate (those
    /// the client took, in the batch's order).
    Batch(Vec<Vec<u8>>),
}

/// Which queue a [`Fault`] hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// `c2s`.
    ToServer,
    /// `s2c`.
    ToClient,
}

/// A transport fault. RC never loses, duplicates or corrupts a message
/// silently; these model a broken NIC, a buggy or hostile peer, and (for
/// [`Fault::BreakConnection`]) the RC failure every real transport reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Lose the queued entry at `index` (modulo the queue length).
    Drop { dir: Direction, index: usize },
    /// Deliver the entry at `index` twice in a row.
    Duplicate { dir: Direction, index: usize },
    /// XOR one byte (`offset` modulo the length) of the entry at `index`
    /// with `xor` (an immediate's id for `s2c` immediates).
    Corrupt {
        dir: Direction,
        index: usize,
        offset: usize,
        xor: u8,
    },
    /// The transport fails: queues are lost, the client is told
    /// (`transport_failed`), and the server's driver drops the connection.
    BreakConnection,
}

pub struct Pair {
    pub now: Instant,
    pub client: Client<64>,
    pub server: Connection<64, 16>,
    pub registry: Registry<8, 32>,
    pub session: rdio_core::server::SessionId,
    pub memory: Memory,
    pub files: HashMap<FileId, Vec<u8>>,
    pub file_flags: HashMap<FileId, OpenFlags>,
    pub next_file: u64,
    pub max_file_len: usize,
    pub write_data: HashMap<RequestId, Vec<u8>>,
    pub status_descs: HashMap<RequestId, BufferDescriptor>,
    pub polling: Vec<RequestId>,
    pub c2s: VecDeque<Vec<u8>>,
    pub s2c: VecDeque<ServerSend>,
    pub events: Vec<ClientEvent>,
    pub server_terminated: Option<Violation>,
    pub client_error: Option<Violation>,
    pub server_error: Option<Violation>,
    pub closed_files: Vec<FileId>,
    pub sends_c2s: usize,
    pub sends_s2c: usize,
    pub status_writes: usize,
    /// Status-block writes that carried immediate data (interrupt mode).
    pub immediates: usize,
    /// What a real driver would have failed on (see the module docs).
    pub anomalies: Vec<String>,
    /// The transport failed ([`Fault::BreakConnection`]): nothing moves.
    pub broken: bool,
    /// Hand reads to an asynchronous "driver": a read event is taken by
    /// [`Pair::server_event_one`] but performed (RDMA writes, then
    /// `complete_io`) only by [`Pair::server_complete_read_one`].
    pub defer_reads: bool,
    /// Drive both cores through their one-pass entry points: the server
    /// takes messages with `take_message` (a read it hands over is
    /// performed at once, or deferred with `defer_reads`) and completes
    /// I/O with `complete_io_into` (a block it returns is posted at once),
    /// the client takes status blocks with `take_status_block` (a
    /// completion it returns joins `events`).
    pub one_pass: bool,
    /// Status blocks posted outside `server_transmit_one` (returned by
    /// `complete_io_into` with `one_pass`), in order, for an observer to
    /// take.
    pub posted: Vec<ServerOutput>,
    /// What the driver answers a client's close with: `Ok` (the file
    /// finished), or the status of a file it could not finish (an upload
    /// that cannot take its name).
    pub close_result: Result<(), Status>,
    /// Reads taken and not yet performed (with `defer_reads`).
    pub reads_in_progress: VecDeque<(OpId, FileId, Vec<ReadSegment>)>,
    /// Receives the server's driver counts posted (posted, and their
    /// completion not taken yet), kept as a driver keeps them: as many as
    /// `receives_wanted` at the start, one taken with each message the
    /// server takes and put back only while fewer are posted, topped up
    /// before each server transmit. A client send that finds every one of
    /// them filled (more sends in `c2s` than this) is an anomaly: on a
    /// real RC connection, a receiver-not-ready error.
    pub server_receives: usize,
    /// Whether `server_receives` still counts what a driver would have
    /// posted: an injected fault (a lost or duplicated send) makes it
    /// unknowable.
    receives_exact: bool,
    /// The receive of the message the server took last, not put back yet:
    /// a driver answers a message before it reposts its receive, so the
    /// client may send between the two. Put back (or kept idle) at the
    /// server's next step.
    recycle_due: bool,
    entropy: u8,
    send_buf: Vec<u8>,
}

fn pipe_roundtrip<'a>(msg: &PipeMessage<'_>, buf: &'a mut Vec<u8>) -> PipeMessage<'a> {
    buf.resize(msg.encoded_len(), 0);
    let n = msg.emit(buf).unwrap();
    let (parsed, used) = PipeMessage::parse(&buf[..n]).unwrap();
    assert_eq!(used, n);
    parsed
}

/// Work a server event asks for, copied out of the event (which borrows the
/// server).
enum Work {
    Auth(AuthKey),
    Write(OpId, FileId, Vec<(u64, Vec<u8>)>),
    Register(OpId, ResumeKey),
    Read(OpId, FileId, Vec<ReadSegment>),
    Close(Option<OpId>, FileId),
    Terminated(Violation),
}

impl Pair {
    pub fn entropy(&mut self) -> [u8; 16] {
        self.entropy = self.entropy.wrapping_add(1);
        [self.entropy; 16]
    }

    /// Discovery over the pipe, then a connected, unauthenticated pair.
    pub fn new(server_config: ServerConfig, client_config: ClientConfig) -> Self {
        let now = Instant::from_micros(1_000_000);
        let mut registry = Registry::new(server_config, Duration::from_secs(10));
        let (session, server_key) = registry.open_session([0xAA; 16]).unwrap();
        let mut buf = Vec::new();
        let reply = pipe_roundtrip(
            &PipeMessage::ResumeKeyResponse { key: server_key },
            &mut buf,
        );
        let PipeMessage::ResumeKeyResponse { key } = reply else {
            panic!()
        };
        let request = client::negotiate_request(&client_config, key);
        let mut buf2 = Vec::new();
        let PipeMessage::NegotiateRequest(request) =
            pipe_roundtrip(&PipeMessage::NegotiateRequest(request), &mut buf2)
        else {
            panic!()
        };
        let offer_providers = providers(&["loopback"]);
        let offer = ServerOffer {
            providers: &offer_providers,
            endpoint: b"mem:0",
        };
        let response = registry.negotiate(now, session, &request, offer, [0xBB; 16]);
        let mut buf3 = Vec::new();
        let PipeMessage::NegotiateResponse(response) =
            pipe_roundtrip(&PipeMessage::NegotiateResponse(response), &mut buf3)
        else {
            panic!()
        };
        let negotiated = client::negotiated(&client_config, &response).unwrap();
        assert_eq!(negotiated.provider.as_str(), "loopback");
        let server = Connection::new(server_config, now);
        Self {
            now,
            client: Client::new(client_config, negotiated, now),
            server_receives: server.receives_wanted(),
            receives_exact: true,
            recycle_due: false,
            server,
            registry,
            session,
            memory: Memory::default(),
            files: HashMap::new(),
            file_flags: HashMap::new(),
            next_file: 1,
            max_file_len: MAX_FILE_LEN,
            write_data: HashMap::new(),
            status_descs: HashMap::new(),
            polling: Vec::new(),
            c2s: VecDeque::new(),
            s2c: VecDeque::new(),
            events: Vec::new(),
            server_terminated: None,
            client_error: None,
            server_error: None,
            closed_files: Vec::new(),
            sends_c2s: 0,
            sends_s2c: 0,
            status_writes: 0,
            immediates: 0,
            anomalies: Vec::new(),
            broken: false,
            defer_reads: false,
            one_pass: false,
            posted: Vec::new(),
            close_result: Ok(()),
            reads_in_progress: VecDeque::new(),
            entropy: 0,
            send_buf: vec![0; SEND],
        }
    }

    pub fn default_pair() -> Self {
        let client_config = ClientConfig {
            providers: providers(&["verbs:roce", "loopback"]),
            ..ClientConfig::default()
        };
        Self::new(ServerConfig::default(), client_config)
    }

    /// A pair driven through authentication.
    pub fn connected() -> Self {
        Self::default_pair().authenticated()
    }

    /// Drive this (fresh) pair through authentication.
    pub fn authenticated(mut self) -> Self {
        self.drive();
        assert!(
            self.client.is_open() && self.server.is_open(),
            "authentication failed"
        );
        assert!(matches!(
            self.events.remove(0),
            ClientEvent::Authenticated { .. }
        ));
        self
    }

    /// Open `contents` as a server file on the pipe: its resume key.
    pub fn open_file(&mut self, contents: Vec<u8>, flags: OpenFlags) -> ResumeKey {
        let file = FileId(self.next_file);
        self.next_file += 1;
        let size = contents.len() as u64;
        self.files.insert(file, contents);
        self.file_flags.insert(file, flags);
        let entropy = self.entropy();
        self.registry
            .add_file(
                FileEntry {
                    session: self.session,
                    file,
                    flags,
                    size,
                },
                entropy,
            )
            .unwrap()
    }

    /// Register `key` and return the handle.
    pub fn register(&mut self, key: ResumeKey) -> u32 {
        let request = self.client.register(key).unwrap();
        self.drive();
        let event = self.take_event(request);
        match event {
            ClientEvent::Registered {
                result: Ok(file), ..
            } => file.handle,
            other => panic!("registration failed: {other:?}"),
        }
    }

    pub fn status_desc(&mut self) -> BufferDescriptor {
        self.memory.alloc(24)
    }

    pub fn track(&mut self, request: RequestId, status: BufferDescriptor, mode: CompletionMode) {
        self.status_descs.insert(request, status);
        if mode == CompletionMode::Polling {
            self.polling.push(request);
        }
    }

    pub fn read(
        &mut self,
        handle: u32,
        offset: u64,
        len: usize,
        mode: CompletionMode,
    ) -> (RequestId, BufferDescriptor) {
        let dest = self.memory.alloc(len);
        let status = self.status_desc();
        let request = self
            .client
            .read(handle, offset, dest, status, mode)
            .unwrap();
        self.track(request, status, mode);
        (request, dest)
    }

    /// Submit a read as the driver does: with [`Pair::one_pass`], through
    /// `Client::read_into`, whose request, when it goes at once, is queued
    /// for the server here (as [`Pair::client_transmit_one`] would have
    /// queued it) and returned; otherwise through `Client::read`.
    pub fn submit_read(
        &mut self,
        handle: u32,
        offset: u64,
        dest: BufferDescriptor,
        status: BufferDescriptor,
        mode: CompletionMode,
    ) -> Result<(RequestId, Option<Vec<u8>>), ApiError> {
        if !self.one_pass || self.broken {
            return self
                .client
                .read(handle, offset, dest, status, mode)
                .map(|request| (request, None));
        }
        let mut buf = std::mem::take(&mut self.send_buf);
        let result = self
            .client
            .read_into(self.now, handle, offset, dest, status, mode, &mut buf)
            .map(|(request, sent)| {
                let msg = sent.map(|t| {
                    assert!(t.data.is_none(), "a read carries no data");
                    buf[..t.len].to_vec()
                });
                (request, msg)
            });
        self.send_buf = buf;
        if let Ok((_, Some(msg))) = &result {
            self.client_sent(msg.clone());
        }
        result
    }

    pub fn write(
        &mut self,
        handle: u32,
        offset: u64,
        data: Vec<u8>,
        mode: CompletionMode,
    ) -> RequestId {
        let status = self.status_desc();
        let request = self
            .client
            .write(handle, offset, data.len() as u32, status, mode)
            .unwrap();
        self.track(request, status, mode);
        self.write_data.insert(request, data);
        request
    }

    pub fn take_event(&mut self, request: RequestId) -> ClientEvent {
        let pos = self
            .events
            .iter()
            .position(|e| event_request(e) == Some(request))
            .unwrap_or_else(|| panic!("no event for {request:?}; events: {:?}", self.events));
        self.events.remove(pos)
    }

    pub fn completion(&mut self, request: RequestId) -> (Status, u64) {
        match self.take_event(request) {
            ClientEvent::Completed { status, bytes, .. } => (status, bytes),
            other => panic!("not a completion: {other:?}"),
        }
    }

    /// Move everything until neither side has anything left to do.
    pub fn drive(&mut self) {
        for _ in 0..100_000 {
            if !self.step() {
                return;
            }
        }
        panic!("pair did not quiesce");
    }

    /// One round: client sends, server works, server sends, client reads.
    /// Returns whether anything happened.
    pub fn step(&mut self) -> bool {
        let mut progress = false;
        progress |= self.client_transmit();
        progress |= self.server_receive();
        progress |= self.server_transmit();
        progress |= self.client_receive();
        progress
    }

    /// Record an anomaly if the server's `quiet` flag promises more than
    /// its state holds (checked after every server call the pair makes).
    fn check_quiet(&mut self, after: &str) {
        if !self.server.quiet_holds() {
            self.anomalies
                .push(format!("server quiet after {after}, with work in it"));
        }
    }

    /// Post every send the client has ready.
    pub fn client_transmit(&mut self) -> bool {
        let mut progress = false;
        while self.client_transmit_one().is_some() {
            progress = true;
        }
        progress
    }

    /// Post the client's next send, if it has one: the bytes sent (encoded
    /// prefix plus the gathered write data).
    pub fn client_transmit_one(&mut self) -> Option<Vec<u8>> {
        if self.broken {
            return None;
        }
        let mut buf = std::mem::take(&mut self.send_buf);
        let transmit = self
            .client
            .poll_transmit(self.now, &mut buf)
            .expect("a send buffer of the negotiated size is always enough");
        let msg = transmit.map(|t| {
            let mut msg = buf[..t.len].to_vec();
            if let Some(data) = t.data {
                let src = &self.write_data[&data.request];
                msg.extend_from_slice(
                    &src[data.offset as usize..(data.offset + data.len) as usize],
                );
            }
            msg
        });
        self.send_buf = buf;
        let msg = msg?;
        assert!(msg.len() <= SEND, "client sent more than the send size");
        self.client_sent(msg.clone());
        Some(msg)
    }

    /// A client send leaves: it fills one of the server's posted receives.
    fn client_sent(&mut self, msg: Vec<u8>) {
        self.c2s.push_back(msg);
        self.sends_c2s += 1;
        if self.receives_exact && self.c2s.len() > self.server_receives {
            self.anomalies.push(format!(
                "client send {} found no receive posted at the server ({} posted, all filled)",
                self.sends_c2s, self.server_receives
            ));
        }
    }

    /// The server took a message: its driver has taken the receive's
    /// completion; it puts the receive back (if the client's credits still
    /// need it) only at the server's next step, so a client send in
    /// between finds it missing, as it may with a real driver.
    fn server_took(&mut self) {
        self.recycle();
        self.server_receives = self.server_receives.saturating_sub(1);
        self.recycle_due = true;
    }

    /// The receive of the message taken last goes back, if still needed.
    fn recycle(&mut self) {
        if std::mem::take(&mut self.recycle_due)
            && self.server_receives < self.server.receives_wanted()
        {
            self.server_receives += 1;
        }
    }

    /// Before a server transmit (a grant, the auth response), the driver
    /// posts receives up to what the client's credits need.
    fn post_server_receives(&mut self) {
        self.recycle();
        self.server_receives = self.server_receives.max(self.server.receives_wanted());
    }

    /// Deliver every queued client send, running the server's driver work
    /// after each (the documented driving order).
    pub fn server_receive(&mut self) -> bool {
        let mut progress = false;
        while self.server_receive_one().is_some() {
            progress = true;
            self.server_events();
        }
        progress | self.server_events()
    }

    /// Deliver the next client send to the server, writing its write data
    /// (if any) to the file, but leave the server's events queued: the
    /// message delivered.
    pub fn server_receive_one(&mut self) -> Option<Vec<u8>> {
        if self.broken {
            return None;
        }
        let msg = self.c2s.pop_front()?;
        if self.one_pass {
            self.server_take_one(&msg);
            self.server_took();
            return Some(msg);
        }
        match self.server.handle_message(self.now, &msg) {
            Ok(Some(chunk)) => {
                // The chunk borrows the server: its pieces are copied out.
                let (op, file) = (chunk.op, chunk.file);
                let owned: Vec<(u64, Vec<u8>)> =
                    chunk.pieces().map(|(o, b)| (o, b.to_vec())).collect();
                let pieces: Vec<(u64, &[u8])> =
                    owned.iter().map(|(o, b)| (*o, b.as_slice())).collect();
                let result = self.write_file(file, &pieces);
                if let Err(e) = self.server.complete_io(op, result) {
                    self.anomalies
                        .push(format!("complete_io(write {op:?}): {e}"));
                }
            }
            Ok(None) => {}
            Err(v) => self.server_error = Some(v),
        }
        self.check_quiet("handle_message");
        self.server_took();
        Some(msg)
    }

    /// [`Pair::server_receive_one`] through `take_message`.
    fn server_take_one(&mut self, msg: &[u8]) {
        let work = self.server_take_work(msg);
        self.check_quiet("take_message");
        if let Some(work) = work {
            self.server_work(work);
        }
    }

    /// What `take_message` hands over for `msg`, the batch's reads done.
    fn server_take_work(&mut self, msg: &[u8]) -> Option<Work> {
        let work = match self.server.take_message(self.now, msg) {
            Ok(Received::Nothing) => return None,
            Ok(Received::Write(chunk)) => Work::Write(
                chunk.op,
                chunk.file,
                chunk.pieces().map(|(o, b)| (o, b.to_vec())).collect(),
            ),
            Ok(Received::Read {
                op, file, segments, ..
            }) => Work::Read(op, file, segments.to_vec()),
            Ok(Received::Batch) => {
                // Every read of the batch, taken before any completes (a
                // completion leaves the rest to `next_batch_read`).
                let mut reads = Vec::new();
                while let Some(Received::Read {
                    op, file, segments, ..
                }) = self.server.next_batch_read()
                {
                    reads.push(Work::Read(op, file, segments.to_vec()));
                }
                self.check_quiet("next_batch_read");
                for work in reads {
                    self.server_work(work);
                }
                return None;
            }
            Err(v) => {
                self.server_error = Some(v);
                return None;
            }
        };
        Some(work)
    }

    /// Do what the server's driver does with `work` handed over at once.
    fn server_work(&mut self, work: Work) {
        match work {
            Work::Write(op, file, pieces) => {
                let pieces: Vec<(u64, &[u8])> =
                    pieces.iter().map(|(o, b)| (*o, b.as_slice())).collect();
                let result = self.write_file(file, &pieces);
                if let Err(e) = self.complete_io(op, result) {
                    self.anomalies
                        .push(format!("complete_io(write {op:?}): {e}"));
                }
            }
            Work::Read(op, file, segments) if self.defer_reads => {
                self.reads_in_progress.push_back((op, file, segments));
            }
            Work::Read(op, file, segments) => {
                let result = self.read_file(file, &segments);
                if let Err(e) = self.complete_io(op, result) {
                    self.anomalies
                        .push(format!("complete_io(read {op:?}) refused: {e}"));
                }
            }
            _ => {}
        }
    }

    /// `complete_io`, or with `one_pass` `complete_io_into`, posting the
    /// status block it returns at once.
    fn complete_io(&mut self, op: OpId, result: Result<u64, Status>) -> Result<(), ApiError> {
        let completed = self.complete_io_now(op, result);
        self.check_quiet("complete_io");
        completed
    }

    /// [`Pair::complete_io`] before its check.
    fn complete_io_now(&mut self, op: OpId, result: Result<u64, Status>) -> Result<(), ApiError> {
        if !self.one_pass {
            return self.server.complete_io(op, result);
        }
        let mut buf = [0u8; 64];
        if let Some(transmit) = self.server.complete_io_into(op, result, &mut buf)? {
            let output = self.post(transmit, &buf);
            self.posted.push(output);
        }
        Ok(())
    }

    /// `pwrite` every piece, or none if one is past the file size bound.
    fn write_file(&mut self, file: FileId, pieces: &[(u64, &[u8])]) -> Result<u64, Status> {
        let max = self.max_file_len;
        let Some(contents) = self.files.get_mut(&file) else {
            self.anomalies.push(format!("write to unknown {file:?}"));
            return Err(Status::IoError);
        };
        let fits = |(offset, bytes): &(u64, &[u8])| {
            usize::try_from(*offset)
                .ok()
                .and_then(|o| o.checked_add(bytes.len()))
                .is_some_and(|end| end <= max)
        };
        if !pieces.iter().all(fits) {
            return Err(Status::IoError);
        }
        let mut written = 0u64;
        for (offset, bytes) in pieces {
            let start = *offset as usize;
            let end = start + bytes.len();
            if contents.len() < end {
                contents.resize(end, 0);
            }
            contents[start..end].copy_from_slice(bytes);
            written += bytes.len() as u64;
        }
        Ok(written)
    }

    /// Run the server's driver until it has no event and no read left.
    pub fn server_events(&mut self) -> bool {
        let mut progress = false;
        while self.server_event_one() || self.server_complete_read_one() {
            self.check_quiet("poll_event");
            progress = true;
        }
        progress
    }

    /// Perform the oldest read taken with `defer_reads`.
    pub fn server_complete_read_one(&mut self) -> bool {
        if self.broken {
            return false;
        }
        let Some((op, file, segments)) = self.reads_in_progress.pop_front() else {
            return false;
        };
        let result = self.read_file(file, &segments);
        // After termination the read completes nowhere (the server forgot
        // it): not an anomaly.
        if let Err(e) = self.complete_io(op, result) {
            if !self.server.is_closed() {
                self.anomalies
                    .push(format!("complete_io(read {op:?}) refused: {e}"));
            }
        }
        true
    }

    /// Take one server event and do its work at once (authenticate against
    /// the registry, register, read from the file into client memory, close,
    /// note termination).
    pub fn server_event_one(&mut self) -> bool {
        if self.broken {
            return false;
        }
        let work = match self.server.poll_event() {
            None => return false,
            Some(ServerEvent::Authenticate { key }) => Work::Auth(key),
            Some(ServerEvent::Register { op, key }) => Work::Register(op, key),
            Some(ServerEvent::Read { op, file, segments }) => {
                Work::Read(op, file, segments.to_vec())
            }
            Some(ServerEvent::Close { op, file }) => Work::Close(Some(op), file),
            Some(ServerEvent::CloseFile { file }) => Work::Close(None, file),
            Some(ServerEvent::Terminated { reason }) => Work::Terminated(reason),
        };
        let refused = match work {
            Work::Auth(key) => match self.registry.redeem_auth(self.now, &key) {
                Ok(params) => self.server.accept_auth(self.now, params).err(),
                Err(_) => {
                    self.server.reject_auth();
                    None
                }
            },
            Work::Register(op, key) => {
                let result = self
                    .registry
                    .redeem_file(self.session, &key)
                    .map(|e| Registration {
                        file: e.file,
                        flags: e.flags,
                        size: self.files.get(&e.file).map_or(0, |f| f.len() as u64),
                    })
                    .map_err(|e| e.status());
                self.server.complete_register(op, result).err()
            }
            Work::Read(op, file, segments) if self.defer_reads => {
                self.reads_in_progress.push_back((op, file, segments));
                None
            }
            Work::Read(op, file, segments) => {
                let result = self.read_file(file, &segments);
                self.complete_io(op, result).err()
            }
            Work::Write(..) => None,
            Work::Close(op, file) => {
                self.closed_files.push(file);
                let result = self.close_result;
                op.and_then(|op| self.server.complete_close(op, result).err())
            }
            Work::Terminated(reason) => {
                self.server_terminated = Some(reason);
                None
            }
        };
        if let Some(e) = refused {
            self.anomalies
                .push(format!("server driver call refused: {e}"));
        }
        true
    }

    /// `pread` each segment and RDMA-write it into client memory; the total
    /// (short at end of file).
    fn read_file(&mut self, file: FileId, segments: &[ReadSegment]) -> Result<u64, Status> {
        let Some(data) = self.files.get(&file) else {
            self.anomalies.push(format!("read of unknown {file:?}"));
            return Err(Status::IoError);
        };
        let mut total = 0u64;
        let mut writes = Vec::new();
        for seg in segments {
            let start = usize::try_from(seg.offset())
                .unwrap_or(usize::MAX)
                .min(data.len());
            let end = start
                .saturating_add(seg.dest().len() as usize)
                .min(data.len());
            writes.push((seg.dest(), data[start..end].to_vec()));
            total += (end - start) as u64;
        }
        for (dest, bytes) in writes {
            match self.memory.slot(dest, bytes.len()) {
                Some(slot) => slot.copy_from_slice(&bytes),
                None => self
                    .anomalies
                    .push(format!("RDMA write outside client memory: {dest:?}")),
            }
        }
        Ok(total)
    }

    /// Post everything the server has queued.
    pub fn server_transmit(&mut self) -> bool {
        let mut progress = false;
        while self.server_transmit_one().is_some() {
            progress = true;
        }
        progress
    }

    /// Post the server's next send or status-block RDMA write.
    pub fn server_transmit_one(&mut self) -> Option<ServerOutput> {
        if self.broken {
            return None;
        }
        self.post_server_receives();
        let mut buf = std::mem::take(&mut self.send_buf);
        let transmit = self
            .server
            .poll_transmit(&mut buf)
            .expect("a send buffer of the negotiated size is always enough");
        let output = transmit.map(|t| self.post(t, &buf));
        self.send_buf = buf;
        self.check_quiet("poll_transmit");
        output
    }

    /// Post a send or a status-block RDMA write of the server's.
    fn post(&mut self, transmit: Transmit, buf: &[u8]) -> ServerOutput {
        match transmit {
            Transmit::Send { len } => {
                let msg = buf[..len].to_vec();
                self.s2c.push_back(ServerSend::Message(msg.clone()));
                self.sends_s2c += 1;
                ServerOutput::Send(msg)
            }
            Transmit::StatusBlock {
                len,
                dest,
                immediate,
            } => {
                let block = buf[..len].to_vec();
                match self.memory.slot(dest, len) {
                    Some(slot) => slot.copy_from_slice(&block),
                    None => self
                        .anomalies
                        .push(format!("status block outside client memory: {dest:?}")),
                }
                self.status_writes += 1;
                if let Some(imm) = immediate {
                    self.immediates += 1;
                    self.s2c.push_back(ServerSend::Immediate(imm));
                }
                ServerOutput::StatusBlock { block, immediate }
            }
        }
    }

    /// Feed the client everything the server posted, poll the polling-mode
    /// status blocks, and collect the client's events.
    pub fn client_receive(&mut self) -> bool {
        let mut progress = false;
        while self.client_receive_one().is_some() {
            progress = true;
        }
        progress |= !self.client_poll().is_empty();
        progress | self.client_events()
    }

    /// Feed the client the next entry of `s2c`: a send, or the status block
    /// an immediate announces.
    pub fn client_receive_one(&mut self) -> Option<ClientInput> {
        if self.broken {
            return None;
        }
        match self.s2c.pop_front()? {
            ServerSend::Message(msg) => {
                if let Err(v) = self.client.handle_message(self.now, &msg) {
                    self.client_error = Some(v);
                }
                Some(ClientInput::Message(msg))
            }
            ServerSend::Immediate(imm) => {
                if let Some(members) = self.client.batch_members(imm) {
                    return Some(self.batch_blocks(&members));
                }
                let Some(&desc) = self.status_descs.get(&RequestId(imm)) else {
                    self.anomalies
                        .push(format!("immediate {imm} names no request"));
                    return Some(ClientInput::Immediate(None));
                };
                let block = self.memory.read(desc);
                match self.status_block(&block) {
                    Ok(true) => Some(ClientInput::Immediate(Some(block))),
                    Ok(false) => {
                        if !self.client.is_closed() {
                            self.anomalies
                                .push(format!("immediate {imm} for an unwritten status block"));
                        }
                        Some(ClientInput::Immediate(None))
                    }
                    Err(v) => {
                        self.client_error = Some(v);
                        Some(ClientInput::Immediate(Some(block)))
                    }
                }
            }
        }
    }

    /// The status blocks of a read batch whose immediate arrived, each
    /// taken as a real driver takes it (`take_batch_block`).
    fn batch_blocks(&mut self, members: &[RequestId]) -> ClientInput {
        let mut taken = Vec::new();
        for &request in members {
            let Some(&desc) = self.status_descs.get(&request) else {
                self.anomalies
                    .push(format!("batch read {request:?} has no status block"));
                continue;
            };
            let block = self.memory.read(desc);
            match self.client.take_batch_block(self.now, request, &block) {
                Ok(BlockOutcome::Completed(event)) => {
                    self.events.push(event);
                    taken.push(block);
                }
                Ok(BlockOutcome::Taken) => taken.push(block),
                Ok(BlockOutcome::NotWritten) => {}
                Err(v) => {
                    self.client_error = Some(v);
                    break;
                }
            }
        }
        ClientInput::Batch(taken)
    }

    /// Polling mode: look at the status block of every request the client
    /// awaits one for; the blocks it consumed. (A block is zero until
    /// written, also while its request waits for a credit.)
    pub fn client_poll(&mut self) -> Vec<Vec<u8>> {
        let mut consumed = Vec::new();
        if self.broken {
            return consumed;
        }
        let polling = std::mem::take(&mut self.polling);
        for request in polling {
            if !self.client.awaits_status_block(request) {
                self.polling.push(request);
                continue;
            }
            let block = self.memory.read(self.status_descs[&request]);
            match self.status_block(&block) {
                Ok(true) => consumed.push(block),
                Ok(false) => self.polling.push(request),
                Err(v) => {
                    self.client_error = Some(v);
                    consumed.push(block);
                }
            }
        }
        consumed
    }

    /// `handle_status_block`, or with `one_pass` `take_status_block`, whose
    /// completion joins `events` at once: whether the block was taken.
    fn status_block(&mut self, block: &[u8]) -> Result<bool, Violation> {
        if !self.one_pass {
            return self.client.handle_status_block(self.now, block);
        }
        match self.client.take_status_block(self.now, block)? {
            BlockOutcome::NotWritten => Ok(false),
            BlockOutcome::Taken => Ok(true),
            BlockOutcome::Completed(event) => {
                if let Some(request) = event_request(&event) {
                    self.polling.retain(|&r| r != request);
                }
                self.events.push(event);
                Ok(true)
            }
        }
    }

    /// Collect the client's events; a reported request is no longer polled.
    pub fn client_events(&mut self) -> bool {
        let mut progress = false;
        while let Some(event) = self.client.poll_event() {
            progress = true;
            if let Some(request) = event_request(&event) {
                self.polling.retain(|&r| r != request);
            }
            self.events.push(event);
        }
        progress
    }

    /// Advance virtual time by `d`, running both sides' timers.
    /// Let the server's credit policy look at the client's use now (what
    /// a driver does from time to time): whether it started a grant or
    /// revoke.
    pub fn review_credits(&mut self) -> bool {
        let started = self.server.review_credits(self.now);
        self.check_quiet("review_credits");
        started
    }

    pub fn advance(&mut self, d: Duration) {
        self.now = self.now.saturating_add(d);
        self.client.handle_timeout(self.now);
        self.server.handle_timeout(self.now);
        self.check_quiet("handle_timeout");
    }

    /// Apply a transport fault. Returns whether it changed anything (a fault
    /// on an empty queue does nothing).
    pub fn inject(&mut self, fault: Fault) -> bool {
        if self.broken {
            return false;
        }
        self.receives_exact = false;
        match fault {
            Fault::Drop { dir, index } => match dir {
                Direction::ToServer => remove_at(&mut self.c2s, index),
                Direction::ToClient => remove_at(&mut self.s2c, index),
            },
            Fault::Duplicate { dir, index } => match dir {
                Direction::ToServer => duplicate_at(&mut self.c2s, index),
                Direction::ToClient => duplicate_at(&mut self.s2c, index),
            },
            Fault::Corrupt {
                dir,
                index,
                offset,
                xor,
            } => {
                if xor == 0 {
                    return false;
                }
                match dir {
                    Direction::ToServer => match nth(&mut self.c2s, index) {
                        Some(msg) => flip(msg, offset, xor),
                        None => false,
                    },
                    Direction::ToClient => match nth(&mut self.s2c, index) {
                        Some(ServerSend::Message(msg)) => flip(msg, offset, xor),
                        Some(ServerSend::Immediate(imm)) => {
                            *imm ^= u32::from(xor) << (8 * (offset % 4));
                            true
                        }
                        None => false,
                    },
                }
            }
            Fault::BreakConnection => {
                self.c2s.clear();
                self.s2c.clear();
                self.reads_in_progress.clear();
                self.client.transport_failed();
                self.server.close_connection();
                // The driver drains what the closed server still reports;
                // its sends go nowhere.
                self.server_events();
                let mut buf = std::mem::take(&mut self.send_buf);
                while let Ok(Some(_)) = self.server.poll_transmit(&mut buf) {}
                self.send_buf = buf;
                self.client_events();
                self.broken = true;
                true
            }
        }
    }

    /// Nothing happened that a real driver would have failed on.
    pub fn assert_clean(&self) {
        assert!(
            self.anomalies.is_empty(),
            "driver anomalies: {:?}",
            self.anomalies
        );
        assert_eq!(self.client_error, None, "client detected a violation");
        assert_eq!(self.server_error, None, "server detected a violation");
    }

    /// Both ledgers agree and nothing is in flight.
    pub fn assert_quiescent_ledgers(&self) {
        let c = self.client.ledger();
        let s = self.server.ledger();
        assert_eq!(
            c.level(),
            s.level(),
            "credit levels disagree: client {c:?} server {s:?}"
        );
        assert_eq!(c.in_use(), 0, "client credits still in use: {c:?}");
        assert_eq!(s.in_use(), 0, "server credits still in use: {s:?}");
        assert!(c.is_settled(), "credit exchange unfinished: {c:?}");
        assert_eq!(s.pending(), None);
        assert!(
            self.anomalies.is_empty(),
            "driver anomalies: {:?}",
            self.anomalies
        );
    }
}

/// The request an event reports, if any.
pub fn event_request(event: &ClientEvent) -> Option<RequestId> {
    match event {
        ClientEvent::Registered { request, .. }
        | ClientEvent::Completed { request, .. }
        | ClientEvent::Interrupted { request } => Some(*request),
        ClientEvent::Authenticated { .. } | ClientEvent::Terminated { .. } => None,
    }
}

fn nth<T>(queue: &mut VecDeque<T>, index: usize) -> Option<&mut T> {
    let len = queue.len();
    if len == 0 {
        None
    } else {
        queue.get_mut(index % len)
    }
}

fn remove_at<T>(queue: &mut VecDeque<T>, index: usize) -> bool {
    let len = queue.len();
    len > 0 && queue.remove(index % len).is_some()
}

fn duplicate_at<T: Clone>(queue: &mut VecDeque<T>, index: usize) -> bool {
    let len = queue.len();
    if len == 0 {
        return false;
    }
    let at = index % len;
    let copy = queue[at].clone();
    queue.insert(at, copy);
    true
}

fn flip(msg: &mut [u8], offset: usize, xor: u8) -> bool {
    let len = msg.len();
    if len == 0 {
        return false;
    }
    msg[offset % len] ^= xor;
    true
}
