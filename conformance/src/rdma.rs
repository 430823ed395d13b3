//! A raw RDMA-channel client: registered receive, send and target memory
//! over a real transport, and messages sent exactly as a case builds them.

use crate::TransportKind;
use crate::expect::{Block, RdmaReply, STATUS_BLOCK};
use crate::pipe::REPLY_TIMEOUT;
use rdio_core::wire::{BufferDescriptor, Message};
use rdio_transport::{
    Access, Completion, CompletionKind, RegionId, RemoteBuf, Slice, Transport, TransportError,
};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The tester's largest message, asked for in negotiation.
pub const MSG: usize = 4096;
/// Receives posted: the credits asked for plus the 3 the spec adds.
pub const RECEIVES: usize = CREDITS as usize + 3;
/// Credits the tester asks for.
pub const CREDITS: u16 = 8;
/// Send buffers, each its own region (reused once its send completed).
const SENDS: usize = 16;
/// Memory the server may write: read destinations and status blocks.
pub const MEMORY: usize = 256 << 10;

/// The transport of a session: one of the two that run here.
pub enum Link {
    /// libfabric.
    Fabric(rdio_fabric::FabricTransport),
    /// Cross-memory attach.
    Cma(rdio_cma::CmaTransport),
}

macro_rules! each {
    ($self:expr, $t:ident => $body:expr) => {
        match $self {
            Link::Fabric($t) => $body,
            Link::Cma($t) => $body,
        }
    };
}

impl Link {
    /// Connect to `endpoint` as negotiated.
    pub fn connect(kind: &TransportKind, endpoint: SocketAddr) -> Result<Self, String> {
        match kind {
            TransportKind::Fabric { .. } => rdio_fabric::connect_timeout(
                endpoint,
                &kind.provider_name(),
                Duration::from_secs(10),
            )
            .map(Self::Fabric)
            .map_err(|e| format!("libfabric connect to {endpoint}: {e}")),
            TransportKind::Cma => rdio_cma::connect(endpoint, Duration::from_secs(10))
                .map(Self::Cma)
                .map_err(|e| format!("cma connect to {endpoint}: {e}")),
        }
    }

    fn register(&mut self, len: usize, access: Access) -> Result<RegionId, TransportError> {
        each!(self, t => t.register(len, access))
    }
    fn region(&self, region: RegionId) -> Result<&[u8], TransportError> {
        each!(self, t => t.region(region))
    }
    fn region_mut(&mut self, region: RegionId) -> Result<&mut [u8], TransportError> {
        each!(self, t => t.region_mut(region))
    }
    fn remote_buf(
        &self,
        region: RegionId,
        offset: usize,
        len: usize,
    ) -> Result<RemoteBuf, TransportError> {
        each!(self, t => t.remote_buf(region, offset, len))
    }
    fn post_recv(&mut self, wr_id: u64, buf: Slice) -> Result<(), TransportError> {
        each!(self, t => t.post_recv(wr_id, buf))
    }
    fn post_send(&mut self, wr_id: u64, sges: &[Slice]) -> Result<(), TransportError> {
        each!(self, t => t.post_send(wr_id, sges, None))
    }
    fn poll(&mut self, out: &mut [Completion]) -> Result<usize, TransportError> {
        each!(self, t => t.poll_completions(out))
    }
    fn wait(&mut self, timeout: Duration) -> Result<(), TransportError> {
        each!(self, t => t.wait(Some(timeout)))
    }
    fn disconnect(&mut self) {
        each!(self, t => t.disconnect())
    }
}

/// What arrived from the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A send.
    Message(RdmaReply),
    /// A write with immediate data (the request id).
    Immediate(u32),
    /// The connection failed or closed.
    Lost(String),
}

/// One RDMA connection of the tester.
pub struct Rdma {
    link: Link,
    receives: RegionId,
    sends: Vec<RegionId>,
    next_send: usize,
    /// Target memory for read data and status blocks.
    pub memory: RegionId,
    backlog: VecDeque<Incoming>,
    lost: bool,
}

impl Rdma {
    /// Register buffers and post the receives on a connected link.
    pub fn new(mut link: Link) -> Result<Self, String> {
        let receives = link
            .register(RECEIVES * MSG, Access::LOCAL_WRITE)
            .map_err(|e| format!("register receives: {e}"))?;
        let mut sends = Vec::with_capacity(SENDS);
        for _ in 0..SENDS {
            sends.push(
                link.register(MSG * 2, Access::empty())
                    .map_err(|e| format!("register sends: {e}"))?,
            );
        }
        let memory = link
            .register(MEMORY, Access::LOCAL_WRITE | Access::REMOTE_WRITE)
            .map_err(|e| format!("register memory: {e}"))?;
        for index in 0..RECEIVES {
            link.post_recv(
                index as u64,
                Slice {
                    region: receives,
                    offset: index * MSG,
                    len: MSG,
                },
            )
            .map_err(|e| format!("post receive: {e}"))?;
        }
        Ok(Self {
            link,
            receives,
            sends,
            next_send: 0,
            memory,
            backlog: VecDeque::new(),
            lost: false,
        })
    }

    /// A descriptor of `len` bytes at `offset` of the target memory.
    pub fn descriptor(&self, offset: usize, len: usize) -> BufferDescriptor {
        match self.link.remote_buf(self.memory, offset, len) {
            Ok(remote) => BufferDescriptor::new(remote.addr, remote.key, remote.len),
            Err(_) => BufferDescriptor::new(0, 0, 0),
        }
    }

    /// Fill the target memory with `byte` (before requests that write it).
    pub fn fill_memory(&mut self, byte: u8) -> Result<(), String> {
        let memory = self.memory;
        let region = self.until_free(memory)?;
        region.fill(byte);
        Ok(())
    }

    /// Bytes of the target memory.
    pub fn memory(&self, offset: usize, len: usize) -> Vec<u8> {
        self.link
            .region(self.memory)
            .ok()
            .and_then(|m| m.get(offset..offset + len))
            .map_or_else(Vec::new, <[u8]>::to_vec)
    }

    /// The status block at `offset` of the target memory, if written.
    pub fn block(&self, offset: usize) -> Option<Block> {
        Block::decode(&self.memory(offset, STATUS_BLOCK))
    }

    fn until_free(&mut self, region: RegionId) -> Result<&mut [u8], String> {
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            match self.link.region_mut(region) {
                Ok(_) => break,
                Err(TransportError::Busy(_)) if Instant::now() < deadline => {
                    if let Some(incoming) = self.poll(Duration::from_millis(1)) {
                        self.backlog.push_back(incoming);
                    }
                }
                Err(e) => return Err(format!("buffer: {e}")),
            }
        }
        self.link
            .region_mut(region)
            .map_err(|e| format!("buffer: {e}"))
    }

    /// Post `bytes` as one send.
    pub fn send_bytes(&mut self, bytes: &[u8]) -> Result<(), String> {
        let region = self.sends[self.next_send % SENDS];
        self.next_send += 1;
        let buffer = self.until_free(region)?;
        let Some(target) = buffer.get_mut(..bytes.len()) else {
            return Err(format!(
                "a {}-byte message does not fit a send buffer",
                bytes.len()
            ));
        };
        target.copy_from_slice(bytes);
        // A connection the server ended refuses the post: the case looks
        // at what arrived.
        let _ = self
            .link
            .post_send(1 << 40, &[Slice::whole(region, bytes.len())]);
        Ok(())
    }

    /// Encode `message` with the core's encoder and send it.
    pub fn send(&mut self, message: &Message<'_>) -> Result<(), String> {
        self.send_bytes(&encode(message))
    }

    /// The next arrival within the reply timeout.
    pub fn next_arrival(&mut self) -> Incoming {
        self.next_within(REPLY_TIMEOUT).unwrap_or_else(|| {
            Incoming::Lost(format!("nothing within {} s", REPLY_TIMEOUT.as_secs()))
        })
    }

    /// The next arrival within `timeout`, if any.
    pub fn next_within(&mut self, timeout: Duration) -> Option<Incoming> {
        self.backlog.pop_front().or_else(|| self.poll(timeout))
    }

    /// Poll (and wait) until a status block lands at `offset` (polling
    /// mode: no immediate announces it).
    pub fn poll_block(&mut self, offset: usize) -> Option<Block> {
        let deadline = Instant::now() + REPLY_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(block) = self.block(offset) {
                return Some(block);
            }
            if let Some(incoming) = self.poll(Duration::from_millis(1)) {
                self.backlog.push_back(incoming);
            }
        }
        None
    }

    fn poll(&mut self, timeout: Duration) -> Option<Incoming> {
        if self.lost {
            return Some(Incoming::Lost("the connection is gone".to_owned()));
        }
        let deadline = Instant::now() + timeout;
        let mut one = [Completion {
            wr_id: 0,
            kind: CompletionKind::Send,
            status: Ok(()),
        }];
        loop {
            match self.link.poll(&mut one) {
                Ok(1) => {
                    let completion = one[0];
                    if let Err(e) = completion.status {
                        if matches!(
                            completion.kind,
                            CompletionKind::Send | CompletionKind::Write
                        ) {
                            continue;
                        }
                        self.lost = true;
                        return Some(Incoming::Lost(format!("{e:?}")));
                    }
                    match completion.kind {
                        CompletionKind::Recv { len } => {
                            let index = completion.wr_id as usize;
                            let start = index * MSG;
                            let bytes = self
                                .link
                                .region(self.receives)
                                .ok()
                                .and_then(|r| r.get(start..start + len))
                                .map(RdmaReply::decode);
                            self.repost(index);
                            return bytes.map(Incoming::Message);
                        }
                        CompletionKind::RecvImm { imm } => {
                            self.repost(completion.wr_id as usize);
                            return Some(Incoming::Immediate(imm));
                        }
                        CompletionKind::Send | CompletionKind::Write => {}
                    }
                }
                Ok(_) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return None;
                    }
                    let _ = self
                        .link
                        .wait((deadline - now).min(Duration::from_millis(5)));
                }
                Err(e) => {
                    self.lost = true;
                    return Some(Incoming::Lost(e.to_string()));
                }
            }
        }
    }

    fn repost(&mut self, index: usize) {
        let _ = self.link.post_recv(
            index as u64,
            Slice {
                region: self.receives,
                offset: index * MSG,
                len: MSG,
            },
        );
    }
}

impl Drop for Rdma {
    fn drop(&mut self) {
        self.link.disconnect();
    }
}

/// A message encoded with the core's wire encoder.
pub fn encode(message: &Message<'_>) -> Vec<u8> {
    let mut bytes = vec![0u8; message.encoded_len().min(1 << 20)];
    match message.emit(&mut bytes) {
        Ok(len) => bytes.truncate(len),
        Err(_) => bytes.clear(),
    }
    bytes
}
