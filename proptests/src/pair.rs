//! A deterministic, single-threaded client/server pair over simulated RDMA
//! memory, stepped with virtual time (quinn `tests/util.rs` `Pair` style).
//!
//! The "network" is two FIFO queues of sends; RDMA writes land directly in
//! the client's simulated registered memory (key = region index + 1, address =
//! offset), checked for bounds as an RC NIC would. Files are in-memory byte
//! vectors. Nothing here is part of the protocol under test: it only moves
//! bytes between the two state machines and records what they report.

use rdio_core::client::{self, Client, ClientConfig, ClientEvent, CompletionMode, RequestId};
use rdio_core::server::{
    Connection, FileEntry, FileId, Registration, Registry, ServerConfig, ServerEvent, ServerOffer,
    Transmit,
};
use rdio_core::wire::{
    BufferDescriptor, OpenFlags, PipeMessage, ProviderList, ProviderName, ResumeKey, Status,
};
use rdio_core::{Instant, Violation};
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

pub const SEND: usize = 64 * 1024;

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

    fn slot(&mut self, desc: BufferDescriptor, len: usize) -> &mut [u8] {
        let region = &mut self.regions[desc.key() as usize - 1];
        let start = desc.addr() as usize;
        assert!(
            len <= desc.len() as usize,
            "server wrote past the descriptor"
        );
        &mut region[start..start + len]
    }

    pub fn read(&mut self, desc: BufferDescriptor) -> Vec<u8> {
        self.slot(desc, desc.len() as usize).to_vec()
    }
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
    pub write_data: HashMap<RequestId, Vec<u8>>,
    pub status_descs: HashMap<RequestId, BufferDescriptor>,
    pub polling: Vec<RequestId>,
    pub c2s: VecDeque<Vec<u8>>,
    pub s2c: VecDeque<Vec<u8>>,
    pub imm: VecDeque<u32>,
    pub events: Vec<ClientEvent>,
    pub server_terminated: Option<Violation>,
    pub client_error: Option<Violation>,
    pub server_error: Option<Violation>,
    pub closed_files: Vec<FileId>,
    pub sends_c2s: usize,
    pub sends_s2c: usize,
    pub status_writes: usize,
    entropy: u8,
}

fn pipe_roundtrip<'a>(msg: &PipeMessage<'_>, buf: &'a mut Vec<u8>) -> PipeMessage<'a> {
    buf.resize(msg.encoded_len(), 0);
    let n = msg.emit(buf).unwrap();
    let (parsed, used) = PipeMessage::parse(&buf[..n]).unwrap();
    assert_eq!(used, n);
    parsed
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
        Self {
            now,
            client: Client::new(client_config, negotiated, now),
            server: Connection::new(server_config, now),
            registry,
            session,
            memory: Memory::default(),
            files: HashMap::new(),
            file_flags: HashMap::new(),
            next_file: 1,
            write_data: HashMap::new(),
            status_descs: HashMap::new(),
            polling: Vec::new(),
            c2s: VecDeque::new(),
            s2c: VecDeque::new(),
            imm: VecDeque::new(),
            events: Vec::new(),
            server_terminated: None,
            client_error: None,
            server_error: None,
            closed_files: Vec::new(),
            sends_c2s: 0,
            sends_s2c: 0,
            status_writes: 0,
            entropy: 0,
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
        let mut pair = Self::default_pair();
        pair.drive();
        assert!(
            pair.client.is_open() && pair.server.is_open(),
            "authentication failed"
        );
        assert!(matches!(
            pair.events.remove(0),
            ClientEvent::Authenticated { .. }
        ));
        pair
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
            .position(|e| match e {
                ClientEvent::Registered { request: r, .. }
                | ClientEvent::Completed { request: r, .. }
                | ClientEvent::Interrupted { request: r } => *r == request,
                _ => false,
            })
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

    pub fn client_transmit(&mut self) -> bool {
        let mut progress = false;
        let mut buf = vec![0u8; SEND];
        while let Some(t) = self.client.poll_transmit(self.now, &mut buf).unwrap() {
            let mut msg = buf[..t.len].to_vec();
            if let Some(data) = t.data {
                let src = &self.write_data[&data.request];
                msg.extend_from_slice(
                    &src[data.offset as usize..(data.offset + data.len) as usize],
                );
            }
            assert!(msg.len() <= SEND, "client sent more than the send size");
            self.c2s.push_back(msg);
            self.sends_c2s += 1;
            progress = true;
        }
        progress
    }

    pub fn server_receive(&mut self) -> bool {
        let mut progress = false;
        while let Some(msg) = self.c2s.pop_front() {
            progress = true;
            match self.server.handle_message(self.now, &msg) {
                Ok(Some(chunk)) => {
                    let file = self.files.get_mut(&chunk.file).unwrap();
                    let mut written = 0u64;
                    for (offset, bytes) in &chunk.pieces {
                        let end = *offset as usize + bytes.len();
                        if file.len() < end {
                            file.resize(end, 0);
                        }
                        file[*offset as usize..end].copy_from_slice(bytes);
                        written += bytes.len() as u64;
                    }
                    self.server.complete_io(chunk.op, Ok(written)).unwrap();
                }
                Ok(None) => {}
                Err(v) => self.server_error = Some(v),
            }
            self.server_events();
        }
        progress | self.server_events()
    }

    pub fn server_events(&mut self) -> bool {
        let mut progress = false;
        loop {
            // Copy what the event needs, then act (the event borrows the server).
            enum Work {
                Auth(rdio_core::wire::AuthKey),
                Register(rdio_core::server::OpId, ResumeKey),
                Read(
                    rdio_core::server::OpId,
                    FileId,
                    Vec<rdio_core::wire::ReadSegment>,
                ),
                Close(FileId),
                Terminated(Violation),
            }
            let work = match self.server.poll_event() {
                None => return progress,
                Some(ServerEvent::Authenticate { key }) => Work::Auth(key),
                Some(ServerEvent::Register { op, key }) => Work::Register(op, key),
                Some(ServerEvent::Read { op, file, segments }) => {
                    Work::Read(op, file, segments.to_vec())
                }
                Some(ServerEvent::CloseFile { file }) => Work::Close(file),
                Some(ServerEvent::Terminated { reason }) => Work::Terminated(reason),
            };
            progress = true;
            match work {
                Work::Auth(key) => match self.registry.redeem_auth(self.now, &key) {
                    Ok(params) => self.server.accept_auth(self.now, params).unwrap(),
                    Err(_) => self.server.reject_auth(),
                },
                Work::Register(op, key) => {
                    let result = self
                        .registry
                        .redeem_file(self.session, &key)
                        .map(|e| Registration {
                            file: e.file,
                            flags: e.flags,
                            size: self.files[&e.file].len() as u64,
                        })
                        .map_err(|e| e.status());
                    self.server.complete_register(op, result).unwrap();
                }
                Work::Read(op, file, segments) => {
                    let mut total = 0u64;
                    for seg in segments {
                        let data = &self.files[&file];
                        let start = (seg.offset() as usize).min(data.len());
                        let end = (start + seg.dest().len() as usize).min(data.len());
                        let bytes = data[start..end].to_vec();
                        self.memory
                            .slot(seg.dest(), bytes.len())
                            .copy_from_slice(&bytes);
                        total += bytes.len() as u64;
                    }
                    self.server.complete_io(op, Ok(total)).unwrap();
                }
                Work::Close(file) => self.closed_files.push(file),
                Work::Terminated(reason) => self.server_terminated = Some(reason),
            }
        }
    }

    pub fn server_transmit(&mut self) -> bool {
        let mut progress = false;
        let mut buf = vec![0u8; SEND];
        while let Some(t) = self.server.poll_transmit(&mut buf).unwrap() {
            progress = true;
            match t {
                Transmit::Send { len } => {
                    self.s2c.push_back(buf[..len].to_vec());
                    self.sends_s2c += 1;
                }
                Transmit::StatusBlock {
                    len,
                    dest,
                    immediate,
                } => {
                    self.memory.slot(dest, len).copy_from_slice(&buf[..len]);
                    self.status_writes += 1;
                    if let Some(imm) = immediate {
                        self.imm.push_back(imm);
                    }
                }
            }
        }
        progress
    }

    pub fn client_receive(&mut self) -> bool {
        let mut progress = false;
        while let Some(msg) = self.s2c.pop_front() {
            progress = true;
            if let Err(v) = self.client.handle_message(self.now, &msg) {
                self.client_error = Some(v);
            }
        }
        while let Some(imm) = self.imm.pop_front() {
            progress = true;
            let desc = self.status_descs[&RequestId(imm)];
            let block = self.memory.read(desc);
            match self.client.handle_status_block(self.now, &block) {
                Ok(true) => {}
                Ok(false) => panic!("interrupt for an unwritten status block"),
                Err(v) => self.client_error = Some(v),
            }
        }
        // Polling mode: look at every outstanding polled block.
        let polling = std::mem::take(&mut self.polling);
        for request in polling {
            // A block is zero until written (also while the request waits
            // for a credit): keep polling it until it is consumed.
            let desc = self.status_descs[&request];
            let block = self.memory.read(desc);
            match self.client.handle_status_block(self.now, &block) {
                Ok(true) => progress = true,
                Ok(false) => self.polling.push(request),
                Err(v) => self.client_error = Some(v),
            }
        }
        while let Some(event) = self.client.poll_event() {
            progress = true;
            self.events.push(event);
        }
        progress
    }

    /// Advance virtual time by `d`, running both sides' timers.
    pub fn advance(&mut self, d: Duration) {
        self.now = self.now.saturating_add(d);
        self.client.handle_timeout(self.now);
        self.server.handle_timeout(self.now);
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
    }
}
