//! A lean, allocation-free read cycle on the core state machines, shared by
//! the criterion benchmark (`benches/core.rs`), the instruction-count binary
//! (`src/bin/core_cycle.rs`, run under callgrind) and the allocation test.
//!
//! Unlike the test pair in `rdio-proptests`, nothing here allocates or
//! hashes: the cycle is exactly the work a driver asks of the core for one
//! 4 KiB read — submit, encode the request, parse it at the server, hand the
//! read to the "driver", complete it, encode the status block, parse it at the
//! client, report the completion.

use rdio_core::Instant;
use rdio_core::client::{
    self, BlockOutcome, Client, ClientConfig, ClientEvent, CompletionMode, RemoteFile, RequestId,
};
use rdio_core::server::{
    Connection, FileEntry, FileId, OpId, Received, Registration, Registry, ServerConfig,
    ServerEvent, ServerOffer, Transmit,
};
use rdio_core::wire::{
    BufferDescriptor, Capabilities, OpenFlags, PipeMessage, ProviderList, ProviderName, Status,
};
use std::time::Duration;

/// Send buffer size used by the cycle.
pub const SEND: usize = 65536;

/// A connected client/server pair with one registered file.
pub struct Cycle {
    pub client: Client<64>,
    pub server: Connection<64, 16>,
    pub handle: u32,
    pub now: Instant,
    /// The file the set-up's registration gave (its handle is `handle`).
    registered: Option<RemoteFile>,
    c2s: Vec<u8>,
    s2c: Vec<u8>,
    dest: BufferDescriptor,
    status: BufferDescriptor,
}

fn providers() -> ProviderList {
    let mut list = ProviderList::new();
    list.push(ProviderName::new("loopback").expect("valid name"))
        .expect("capacity");
    list
}

impl Cycle {
    /// Discovery, authentication and registration, done once.
    pub fn new() -> Self {
        Self::with(Capabilities::NONE, 1)
    }

    /// [`Cycle::new`] on a session that negotiated read batches.
    pub fn with_batches() -> Self {
        Self::with(Capabilities::READ_BATCH, 1)
    }

    /// [`Cycle::new`] with `files` files registered (at most 16); the
    /// reads go to the last one, so a server that looked handles up one by
    /// one would pay for every file registered before it.
    pub fn with_files(files: usize) -> Self {
        Self::with(Capabilities::NONE, files.clamp(1, 16))
    }

    fn with(capabilities: Capabilities, files: usize) -> Self {
        let now = Instant::from_micros(1);
        let config = ClientConfig {
            providers: providers(),
            capabilities,
            ..ClientConfig::default()
        };
        let mut registry: Registry<4, 16> =
            Registry::new(ServerConfig::default(), Duration::from_secs(10));
        let (session, server_key) = registry.open_session([1; 16]).expect("session");
        let request = client::negotiate_request(&config, server_key);
        let offer_list = providers();
        let offer = ServerOffer {
            providers: &offer_list,
            endpoint: b"mem",
        };
        let response = registry.negotiate(now, session, &request, offer, [2; 16]);
        let negotiated = client::negotiated(&config, &response).expect("negotiated");
        let file_keys: Vec<_> = (0..files)
            .map(|i| {
                registry
                    .add_file(
                        FileEntry {
                            session,
                            file: FileId(1 + i as u64),
                            flags: OpenFlags::READ,
                            size: 1 << 20,
                        },
                        [3 + i as u8; 16],
                    )
                    .expect("file")
            })
            .collect();
        let _ = PipeMessage::ResumeKeyRequest;
        let mut cycle = Self {
            client: Client::new(config, negotiated, now),
            server: Connection::new(ServerConfig::default(), now),
            handle: 0,
            registered: None,
            now,
            c2s: vec![0; SEND],
            s2c: vec![0; SEND],
            dest: BufferDescriptor::new(0x1000, 7, 4096),
            status: BufferDescriptor::new(0x9000, 7, 24),
        };
        // Authenticate.
        cycle.pump(&mut registry, session);
        for key in file_keys {
            cycle.client.register(key).expect("register");
            cycle.pump(&mut registry, session);
            cycle.handle = cycle.registered.take().expect("registered").handle;
        }
        cycle
    }

    /// Move messages both ways until quiet (setup only; allocates nothing
    /// either, but is not the measured path).
    fn pump<const S: usize, const N: usize>(
        &mut self,
        registry: &mut Registry<S, N>,
        session: rdio_core::server::SessionId,
    ) {
        for _ in 0..16 {
            while let Ok(Some(t)) = self.client.poll_transmit(self.now, &mut self.c2s) {
                let _ = self.server.handle_message(self.now, &self.c2s[..t.len]);
                loop {
                    match self.server.poll_event() {
                        Some(ServerEvent::Authenticate { key }) => {
                            let params = registry.redeem_auth(self.now, &key).expect("auth");
                            self.server.accept_auth(self.now, params).expect("accept");
                        }
                        Some(ServerEvent::Register { op, key }) => {
                            let entry = registry.redeem_file(session, &key).map_err(|e| e.status());
                            let result = entry.map(|e| Registration {
                                file: e.file,
                                flags: e.flags,
                                size: e.size,
                            });
                            self.server.complete_register(op, result).expect("register");
                        }
                        Some(_) => {}
                        None => break,
                    }
                }
            }
            while let Ok(Some(Transmit::Send { len })) = self.server.poll_transmit(&mut self.s2c) {
                let _ = self.client.handle_message(self.now, &self.s2c[..len]);
            }
            while let Some(event) = self.client.poll_event() {
                if let ClientEvent::Registered { result, .. } = event {
                    self.registered = Some(result.expect("the file registers"));
                }
            }
        }
    }

    /// One 4 KiB read, start to finish, in interrupt mode, each side taking
    /// the one-pass path: the request encoded as it is submitted
    /// ([`Client::read_into`]), the read handed to the server's driver as
    /// it arrives ([`Connection::take_message`]), its status block encoded
    /// as the driver completes it ([`Connection::complete_io_into`]), the
    /// client's completion taken straight from the block
    /// ([`Client::take_status_block`]). Returns the bytes the completion
    /// reported.
    pub fn read_4k(&mut self) -> u64 {
        let Ok((request, Some(t))) = self.client.read_into(
            self.now,
            self.handle,
            4096,
            self.dest,
            self.status,
            CompletionMode::Interrupt,
            &mut self.c2s,
        ) else {
            return 0;
        };
        let Ok(Received::Read { op, segments, .. }) =
            self.server.take_message(self.now, &self.c2s[..t.len])
        else {
            return 0;
        };
        // The driver would pread and post the RDMA write here. A Read has
        // one segment (a driver sums a vectored read's).
        let bytes = match segments {
            [one] => u64::from(one.dest().len()),
            many => many.iter().map(|s| u64::from(s.dest().len())).sum(),
        };
        let Ok(Some(Transmit::StatusBlock { len, .. })) =
            self.server.complete_io_into(op, Ok(bytes), &mut self.s2c)
        else {
            return 0;
        };
        match self.client.take_status_block(self.now, &self.s2c[..len]) {
            Ok(BlockOutcome::Completed(ClientEvent::Completed {
                request: r,
                status: Status::Success,
                bytes,
            })) if r == request => bytes,
            _ => 0,
        }
    }

    /// [`Cycle::read_4k`] through the event queues: the status block queued
    /// by [`Connection::complete_io`] and drained by
    /// [`Connection::poll_transmit`], the completion queued by
    /// [`Client::handle_status_block`] and drained by
    /// [`Client::poll_event`].
    pub fn read_4k_events(&mut self) -> u64 {
        let Some((request, op, bytes)) = self.request() else {
            return 0;
        };
        let _ = self.server.complete_io(op, Ok(bytes));
        let Ok(Some(Transmit::StatusBlock { len, .. })) = self.server.poll_transmit(&mut self.s2c)
        else {
            return 0;
        };
        if self.client.handle_status_block(self.now, &self.s2c[..len]) != Ok(true) {
            return 0;
        }
        match self.client.poll_event() {
            Some(ClientEvent::Completed {
                request: r,
                status: Status::Success,
                bytes,
            }) if r == request => bytes,
            _ => 0,
        }
    }

    /// `n` 4 KiB reads (2..=16) as one read batch, the way rdio's drivers
    /// take it: submitted with `Client::read`, one `poll_transmit` (the
    /// `ReadBatch`), `take_message` and `next_batch_read` at the server,
    /// each completed with `complete_io_into`; the client takes the
    /// batch's immediate (`batch_members`) and every block
    /// (`take_batch_block`). The bytes all reads report.
    pub fn read_4k_batch(&mut self, n: usize) -> u64 {
        let mut requests = [RequestId(0); 16];
        for (i, request) in requests.iter_mut().enumerate().take(n) {
            let dest = BufferDescriptor::new(0x1_0000 + 0x2000 * i as u64, 7, 4096);
            let status = BufferDescriptor::new(0x1_1000 + 0x2000 * i as u64, 7, 24);
            let Ok(r) =
                self.client
                    .read(self.handle, 4096, dest, status, CompletionMode::Interrupt)
            else {
                return 0;
            };
            *request = r;
        }
        let Ok(Some(t)) = self.client.poll_transmit(self.now, &mut self.c2s) else {
            return 0;
        };
        if self.server.take_message(self.now, &self.c2s[..t.len]) != Ok(Received::Batch) {
            return 0;
        }
        // Each block as the driver posts it (one buffer per read; the
        // last to go carries the batch's immediate).
        let mut immediate = None;
        let mut blocks = [[0u8; 24]; 16];
        let mut taken = 0;
        while let Some(Received::Read { op, segments, .. }) = self.server.next_batch_read() {
            let bytes = segments.iter().map(|s| u64::from(s.dest().len())).sum();
            let Ok(Some(Transmit::StatusBlock {
                len,
                immediate: imm,
                ..
            })) = self.server.complete_io_into(op, Ok(bytes), &mut self.s2c)
            else {
                return 0;
            };
            let Some(block) = blocks.get_mut(taken) else {
                return 0;
            };
            block.copy_from_slice(&self.s2c[..len.min(24)]);
            immediate = immediate.or(imm);
            taken += 1;
        }
        let Some(members) = immediate.and_then(|imm| self.client.batch_members(imm)) else {
            return 0;
        };
        let mut total = 0;
        for (request, block) in members.iter().zip(&blocks) {
            match self.client.take_batch_block(self.now, *request, block) {
                Ok(BlockOutcome::Completed(ClientEvent::Completed {
                    status: Status::Success,
                    bytes,
                    ..
                })) => total += bytes,
                _ => return 0,
            }
        }
        total
    }

    /// Submit a 4 KiB read and carry it to the server's driver: the
    /// request, the server's op and the bytes the driver "read" (it would
    /// pread and post the RDMA write here).
    #[inline(always)]
    fn request(&mut self) -> Option<(RequestId, OpId, u64)> {
        let request = self
            .client
            .read(
                self.handle,
                4096,
                self.dest,
                self.status,
                CompletionMode::Interrupt,
            )
            .ok()?;
        let Ok(Some(t)) = self.client.poll_transmit(self.now, &mut self.c2s) else {
            return None;
        };
        self.server
            .handle_message(self.now, &self.c2s[..t.len])
            .ok()?;
        let Some(ServerEvent::Read { op, segments, .. }) = self.server.poll_event() else {
            return None;
        };
        let bytes = segments.iter().map(|s| u64::from(s.dest().len())).sum();
        Some((request, op, bytes))
    }
}

impl Default for Cycle {
    fn default() -> Self {
        Self::new()
    }
}
