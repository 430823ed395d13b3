//! The side channel as the tester speaks it: raw frames over a byte
//! stream. [`connect_stream`] is the one place the stream is made, so a
//! TLS layer can wrap it there without touching any case.

use crate::expect::{Frame, PIPE_HEADER, u32_at};
use rdio_core::wire::PipeMessage;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long the tester waits for any one reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// A byte stream to the server's side channel.
pub trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// Open the side channel to `server`: today clear-text TCP.
pub fn connect_stream(server: SocketAddr) -> io::Result<Box<dyn Stream>> {
    let stream = TcpStream::connect_timeout(&server, REPLY_TIMEOUT)?;
    stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
    stream.set_write_timeout(Some(REPLY_TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(Box::new(stream))
}

/// One side-channel connection.
pub struct Pipe {
    stream: Box<dyn Stream>,
    last_raw: Vec<u8>,
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
            .map(|stream| Self {
                stream,
                last_raw: Vec::new(),
            })
            .map_err(|e| format!("side channel to {server}: {e}"))
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
