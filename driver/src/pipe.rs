//! The side channel ("pipe", seed claim 8) as framed [`PipeMessage`]s over
//! any byte stream: a TCP connection between hosts, a Unix socket pair for
//! the in-process server.

use rdio_core::wire::pipe::PIPE_HEADER_LEN;
use rdio_core::wire::{MAX_PIPE_PAYLOAD, PipeErrorCode, PipeHeader, PipeMessage, WireError};
use std::fmt;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

/// Room for the largest frame a peer may send.
const FRAME_CAPACITY: usize = PIPE_HEADER_LEN + MAX_PIPE_PAYLOAD;

/// Why a pipe exchange failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum PipeError {
    /// The stream failed.
    Io(io::Error),
    /// The peer closed the stream.
    Closed,
    /// The peer sent a malformed frame; the stream cannot be trusted after it.
    Malformed(WireError),
    /// A well-formed message that makes no sense here (e.g. a response where
    /// a request was expected).
    Unexpected(&'static str),
    /// The peer refused a frame of ours with a pipe `Error` message.
    Refused {
        /// Why.
        code: PipeErrorCode,
        /// The opcode of the refused frame.
        opcode: u8,
    },
    /// Nothing arrived within the stream's read timeout, between messages
    /// (the stream is still in step and may be read again).
    Idle,
}

impl fmt::Display for PipeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "side channel: {e}"),
            Self::Closed => f.write_str("side channel closed by the peer"),
            Self::Malformed(e) => write!(f, "side channel: malformed message: {e}"),
            Self::Unexpected(what) => write!(f, "side channel: unexpected message: {what}"),
            Self::Refused { code, opcode } => write!(
                f,
                "side channel: the server refused message {opcode:#04x}: {code}"
            ),
            Self::Idle => f.write_str("side channel: timed out waiting for the peer"),
        }
    }
}

impl std::error::Error for PipeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            Self::Malformed(e) => Some(e),
            Self::Closed | Self::Unexpected(_) | Self::Refused { .. } | Self::Idle => None,
        }
    }
}

/// One end of a pipe: reads and writes whole messages, reusing one frame
/// buffer.
#[derive(Debug)]
pub struct Pipe<S> {
    stream: S,
    frame: Box<[u8; FRAME_CAPACITY]>,
    /// Opcode byte of the last frame whose header parsed (0 if none).
    last_opcode: u8,
    idle: bool,
    /// How long a frame begun may take to arrive whole across read
    /// timeouts ([`Pipe::set_frame_patience`]).
    frame_patience: Duration,
}

impl<S: Read + Write> Pipe<S> {
    /// Frame messages over `stream`.
    pub fn new(stream: S) -> Self {
        Self {
            stream,
            frame: Box::new([0; FRAME_CAPACITY]),
            last_opcode: 0,
            idle: false,
            frame_patience: Duration::ZERO,
        }
    }

    /// Let a frame whose first bytes arrived take up to `patience` to
    /// arrive whole, across the stream's read timeouts (a server reading
    /// with a short timeout to look for idle clients must not fail a frame
    /// split over two TCP segments). Without it, a read timeout within a
    /// frame is an I/O error.
    pub fn set_frame_patience(&mut self, patience: Duration) {
        self.frame_patience = patience;
    }

    /// The opcode byte of the last frame received whose header was valid
    /// (0 when the last header was not): what a pipe `Error` names.
    pub fn last_opcode(&self) -> u8 {
        self.last_opcode
    }

    /// Report a read timeout between messages as [`PipeError::Idle`]
    /// (after which the pipe may be read again) instead of an I/O error.
    pub fn report_idle(&mut self) {
        self.idle = true;
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// Send one message.
    pub fn send(&mut self, message: &PipeMessage<'_>) -> Result<(), PipeError> {
        let len = message
            .emit(&mut self.frame[..])
            .map_err(|_| PipeError::Unexpected("message larger than a pipe frame"))?;
        self.stream
            .write_all(&self.frame[..len])
            .map_err(PipeError::Io)?;
        self.stream.flush().map_err(PipeError::Io)
    }

    /// Receive one message, borrowed from the frame buffer until the next
    /// call. [`PipeError::Closed`] when the peer closed the stream between
    /// messages.
    pub fn receive(&mut self) -> Result<PipeMessage<'_>, PipeError> {
        let (header, rest) = self.frame.split_at_mut(PIPE_HEADER_LEN);
        let patience = self.frame_patience;
        match read_full(&mut self.stream, header, false, patience) {
            Ok(true) => {}
            Ok(false) => return Err(PipeError::Closed),
            Err(Between(e))
                if self.idle
                    && matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
            {
                return Err(PipeError::Idle);
            }
            Err(Between(e) | Within(e)) => return Err(PipeError::Io(e)),
        }
        self.last_opcode = 0;
        let header = PipeHeader::parse(header).map_err(PipeError::Malformed)?;
        self.last_opcode = header.opcode;
        let frame_len = header.frame_len();
        let payload = rest
            .get_mut(..frame_len - PIPE_HEADER_LEN)
            .ok_or(PipeError::Malformed(WireError::TooMany))?;
        match read_full(&mut self.stream, payload, true, patience) {
            Ok(true) => {}
            Ok(false) => return Err(PipeError::Io(io::ErrorKind::UnexpectedEof.into())),
            Err(Between(e) | Within(e)) => return Err(PipeError::Io(e)),
        }
        let (message, _) =
            PipeMessage::parse(&self.frame[..frame_len]).map_err(PipeError::Malformed)?;
        refusal_is_error(message)
    }
}

/// A pipe `Error` from the peer is an error of the exchange, not a message.
pub(crate) fn refusal_is_error(message: PipeMessage<'_>) -> Result<PipeMessage<'_>, PipeError> {
    match message {
        PipeMessage::Error { code, opcode } => Err(PipeError::Refused { code, opcode }),
        message => Ok(message),
    }
}

/// A read error before the first byte of a buffer (`Between` messages, for
/// a header) or after some.
enum ReadError {
    Between(io::Error),
    Within(io::Error),
}
use ReadError::{Between, Within};

/// Fill `buf`; `false` when the stream ended before the first byte.
/// `continued`: `buf` continues a frame already begun. Read timeouts within
/// a frame are retried for up to `patience` in all.
fn read_full(
    stream: &mut impl Read,
    buf: &mut [u8],
    continued: bool,
    patience: Duration,
) -> Result<bool, ReadError> {
    let mut done = 0;
    let mut waiting: Option<Instant> = None;
    while done < buf.len() {
        match stream.read(&mut buf[done..]) {
            Ok(0) if done == 0 => return Ok(false),
            Ok(0) => return Err(Within(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if (done > 0 || continued)
                    && matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    )
                    && waiting.get_or_insert_with(Instant::now).elapsed() < patience => {}
            // A TLS peer that closed between messages without close_notify:
            // nothing was cut short, so it is an ordinary close.
            Err(e) if done == 0 && e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
            Err(e) if done == 0 => return Err(Between(e)),
            Err(e) => return Err(Within(e)),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdio_core::wire::{OpenFlags, ResumeKey, Status};
    use std::os::unix::net::UnixStream;

    #[test]
    fn messages_cross_a_stream_one_by_one() {
        let (a, b) = UnixStream::pair().expect("socketpair");
        let (mut a, mut b) = (Pipe::new(a), Pipe::new(b));
        a.send(&PipeMessage::ResumeKeyRequest).expect("send");
        a.send(&PipeMessage::OpenRequest {
            flags: OpenFlags::READ,
            path: b"dir/file",
        })
        .expect("send");
        b.send(&PipeMessage::OpenResponse {
            status: Status::NotFound,
            key: ResumeKey([0; 16]),
            size: 0,
        })
        .expect("send");
        assert_eq!(b.receive().expect("receive"), PipeMessage::ResumeKeyRequest);
        assert_eq!(
            b.receive().expect("receive"),
            PipeMessage::OpenRequest {
                flags: OpenFlags::READ,
                path: b"dir/file"
            }
        );
        assert!(matches!(
            a.receive().expect("receive"),
            PipeMessage::OpenResponse {
                status: Status::NotFound,
                ..
            }
        ));
        drop(a);
        assert!(matches!(b.receive(), Err(PipeError::Closed)));
    }

    /// A frame split across read timeouts arrives whole with patience,
    /// and fails without.
    #[test]
    fn a_frame_slower_than_the_read_timeout_needs_patience() {
        let message = PipeMessage::OpenRequest {
            flags: OpenFlags::READ,
            path: b"a/path",
        };
        let mut frame = [0u8; 64];
        let len = message.emit(&mut frame).expect("emit");
        for (patience, whole) in [(Duration::from_secs(5), true), (Duration::ZERO, false)] {
            for cut in [PIPE_HEADER_LEN / 2, PIPE_HEADER_LEN + 2] {
                let (mut a, b) = UnixStream::pair().expect("socketpair");
                b.set_read_timeout(Some(Duration::from_millis(20)))
                    .expect("timeout");
                let mut b = Pipe::new(b);
                b.report_idle();
                b.set_frame_patience(patience);
                a.write_all(&frame[..cut]).expect("write");
                let rest = frame[cut..len].to_vec();
                let writer = std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(100));
                    a.write_all(&rest).expect("write");
                    a
                });
                let got = b.receive().map(|m| format!("{m:?}"));
                let _a = writer.join().expect("writer");
                if whole {
                    assert_eq!(got.expect("whole"), format!("{message:?}"), "cut {cut}");
                } else {
                    assert!(matches!(got, Err(PipeError::Io(_))), "cut {cut}: {got:?}");
                }
            }
        }
    }

    #[test]
    fn garbage_and_truncation_are_errors() {
        let (mut a, b) = UnixStream::pair().expect("socketpair");
        let mut b = Pipe::new(b);
        a.write_all(b"HTTP/1.1 200 OK\r\n").expect("write");
        assert!(matches!(
            b.receive(),
            Err(PipeError::Malformed(WireError::BadMagic))
        ));

        let (mut a, b) = UnixStream::pair().expect("socketpair");
        let mut b = Pipe::new(b);
        let mut frame = [0u8; 64];
        let len = PipeMessage::ResumeKeyResponse {
            key: ResumeKey([7; 16]),
        }
        .emit(&mut frame)
        .expect("emit");
        a.write_all(&frame[..len - 1]).expect("write");
        drop(a);
        assert!(
            matches!(b.receive(), Err(PipeError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof)
        );
    }
}
