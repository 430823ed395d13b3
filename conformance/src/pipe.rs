//! The side channel as the tester speaks it: raw frames over a byte
//! stream. [`connect_stream`] is the one place the stream is made: TLS and
//! the client's authentication (docs/PROTOCOL.md, "Side-channel
//! security") are set up there, as rdio's own client sets them up, before
//! any case sends a frame.

use crate::expect::{Frame, PIPE_HEADER, u32_at};
use rdio::access::ChannelBinding;
use rdio::net::ClientSecurity;
use rdio_core::wire::PipeMessage;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

/// How long the tester waits for any one reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// A byte stream to the server's side channel.
pub trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

static SECURITY: OnceLock<ClientSecurity> = OnceLock::new();

/// Set every side channel up with `security` from now on (TLS or clear
/// text, and the client's authentication), as a real client would.
/// Without it the tester speaks clear text and does not authenticate,
/// which only a server that requires no authentication answers.
pub fn use_security(security: ClientSecurity) {
    let _ = SECURITY.set(security);
}

/// Open the side channel to `server`; with TLS, also the binding the RDMA
/// authentication keys of its negotiations derive from.
pub fn connect_stream(server: SocketAddr) -> io::Result<(Box<dyn Stream>, Option<ChannelBinding>)> {
    if let Some(security) = SECURITY.get() {
        let (stream, binding) = rdio::net::authenticated_pipe(server, REPLY_TIMEOUT, security)
            .map_err(|e| io::Error::other(e.to_string()))?;
        return Ok((Box::new(stream), binding));
    }
    let stream = TcpStream::connect_timeout(&server, REPLY_TIMEOUT)?;
    stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
    stream.set_write_timeout(Some(REPLY_TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok((Box::new(stream), None))
}

/// The RDMA authentication key of a negotiation whose response carried
/// `field` in its `auth_key` field: the field itself on a clear-text pipe,
/// else the key derived from it and the TLS session's `binding`
/// (docs/PROTOCOL.md, "Side-channel security").
pub fn rdma_auth_key(binding: Option<&ChannelBinding>, field: [u8; 16]) -> [u8; 16] {
    match binding {
        Some(binding) => rdio::access::rdma_auth_key(binding, &field).0,
        None => field,
    }
}

/// One side-channel connection.
pub struct Pipe {
    stream: Box<dyn Stream>,
    last_raw: Vec<u8>,
    rdma_binding: Option<ChannelBinding>,
}

/// A frame header by hand: any magic, version, opcode, reserved, length.
pub fn raw_header(magic: &[u8; 4], version: u8, opcode: u8, reserved: u16, length: u32) -> Vec<u8> {
    let mut bytes = magic.to_vec();
    bytes.push(version);
    bytes.push(opcode);
    bytes.extend_from_slice(&reserved.to_le_bytes());
    bytes.extend_from_slice(&length.to_le_bytes());
    bytes
}

/// A well-formed frame header followed by `payload`.
pub fn raw_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut bytes = raw_header(b"RDIO", 1, opcode, 0, payload.len() as u32);
    bytes.extend_from_slice(payload);
    bytes
}

/// A message encoded with the core's wire encoder.
pub fn encode(message: &PipeMessage<'_>) -> Vec<u8> {
    let mut bytes = vec![0u8; message.encoded_len().min(1 << 16)];
    match message.emit(&mut bytes) {
        Ok(len) => bytes.truncate(len),
        Err(_) => bytes.clear(),
    }
    bytes
}

impl Pipe {
    /// Connect to `server`.
    pub fn connect(server: SocketAddr) -> Result<Self, String> {
        connect_stream(server)
            .map(|(stream, rdma_binding)| Self {
                stream,
                last_raw: Vec::new(),
                rdma_binding,
            })
            .map_err(|e| format!("side channel to {server}: {e}"))
    }

    /// The TLS session's binding of the RDMA authentication keys
    /// negotiated on this pipe (`None` on a clear-text pipe).
    pub fn rdma_binding(&self) -> Option<ChannelBinding> {
        self.rdma_binding
    }

    /// Write raw bytes.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stream
            .write_all(bytes)
            .and_then(|()| self.stream.flush())
            .map_err(|e| format!("write: {e}"))
    }

    /// The next frame; `Err` on end of stream, reset or timeout.
    pub fn receive(&mut self) -> Result<Frame, String> {
        let mut header = [0u8; PIPE_HEADER];
        self.stream
            .read_exact(&mut header)
            .map_err(|e| describe(&e))?;
        let length = u32_at(&header, 8) as usize;
        if length > 1 << 16 {
            return Err(format!("a frame declaring {length} payload bytes"));
        }
        let mut payload = vec![0u8; length];
        self.stream
            .read_exact(&mut payload)
            .map_err(|e| describe(&e))?;
        self.last_raw = header.to_vec();
        self.last_raw.extend_from_slice(&payload);
        Ok(Frame {
            opcode: header[5],
            payload,
        })
    }

    /// The bytes of the last frame received.
    pub fn last_raw(&self) -> &[u8] {
        &self.last_raw
    }

    /// Send `bytes` and take the reply.
    pub fn exchange(&mut self, bytes: &[u8]) -> Result<Frame, String> {
        self.send(bytes)?;
        self.receive()
    }

    /// Whether the server closed the pipe (end of stream or reset) rather
    /// than sending more or keeping it open past the timeout.
    pub fn closed(&mut self) -> Result<(), String> {
        let mut byte = [0u8; 1];
        match self.stream.read(&mut byte) {
            Ok(0) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(()),
            Ok(_) => Err("more bytes".to_owned()),
            Err(e) => Err(describe(&e)),
        }
    }
}

fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => "the pipe closed".to_owned(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            format!("no reply within {} s", REPLY_TIMEOUT.as_secs())
        }
        _ => e.to_string(),
    }
}
