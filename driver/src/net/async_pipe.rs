//! The side channel's framing over a tokio stream: the same frames as
//! [`crate::pipe::Pipe`], read and written without blocking a thread.

use crate::pipe::PipeError;
use rdio_core::wire::pipe::PIPE_HEADER_LEN;
use rdio_core::wire::{MAX_PIPE_PAYLOAD, PipeHeader, PipeMessage, WireError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Room for the largest frame a peer may send.
const FRAME_CAPACITY: usize = PIPE_HEADER_LEN + MAX_PIPE_PAYLOAD;

/// One end of a pipe over an async stream, reusing one frame buffer.
pub(super) struct AsyncPipe<S> {
    stream: S,
    frame: Box<[u8; FRAME_CAPACITY]>,
    /// See [`crate::pipe::Pipe::last_opcode`].
    last_opcode: u8,
    /// Bytes of the frame being received already in `frame`.
    have: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncPipe<S> {
    pub(super) fn new(stream: S) -> Self {
        Self {
            stream,
            frame: Box::new([0; FRAME_CAPACITY]),
            last_opcode: 0,
            have: 0,
        }
    }

    /// See [`crate::pipe::Pipe::last_opcode`].
    pub(super) fn last_opcode(&self) -> u8 {
        self.last_opcode
    }

    /// Send one message.
    pub(super) async fn send(&mut self, message: &PipeMessage<'_>) -> Result<(), PipeError> {
        let len = message
            .emit(&mut self.frame[..])
            .map_err(|_| PipeError::Unexpected("message larger than a pipe frame"))?;
        self.stream
            .write_all(&self.frame[..len])
            .await
            .map_err(PipeError::Io)?;
        self.stream.flush().await.map_err(PipeError::Io)
    }

    /// Receive one message, borrowed from the frame buffer until the next
    /// call; [`PipeError::Closed`] when the peer closed between messages.
    ///
    /// Cancel safe: the bytes of a frame read so far stay in the frame
    /// buffer (`have` counts them), so a receive dropped in a `select!`
    /// (the server's idle check) loses nothing and the next call goes on
    /// where it stopped.
    pub(super) async fn receive(&mut self) -> Result<PipeMessage<'_>, PipeError> {
        let frame_len = loop {
            let want = if self.have < PIPE_HEADER_LEN {
                PIPE_HEADER_LEN
            } else {
                self.last_opcode = 0;
                let header = match PipeHeader::parse(&self.frame[..PIPE_HEADER_LEN]) {
                    Ok(header) => header,
                    Err(error) => {
                        self.have = 0;
                        return Err(PipeError::Malformed(error));
                    }
                };
                self.last_opcode = header.opcode;
                let frame_len = header.frame_len();
                if frame_len > FRAME_CAPACITY {
                    self.have = 0;
                    return Err(PipeError::Malformed(WireError::TooMany));
                }
                if self.have >= frame_len {
                    break frame_len;
                }
                frame_len
            };
            let read = self.stream.read(&mut self.frame[self.have..want]).await;
            match read {
                Ok(0) if self.have == 0 => return Err(PipeError::Closed),
                Ok(0) => {
                    self.have = 0;
                    return Err(PipeError::Io(std::io::ErrorKind::UnexpectedEof.into()));
                }
                Ok(n) => self.have += n,
                Err(error) => {
                    self.have = 0;
                    return Err(PipeError::Io(error));
                }
            }
        };
        self.have = 0;
        let (message, _) =
            PipeMessage::parse(&self.frame[..frame_len]).map_err(PipeError::Malformed)?;
        crate::pipe::refusal_is_error(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipe::Pipe;
    use rdio_core::wire::{OpenFlags, ResumeKey, Status};

    /// Frames written by the blocking pipe read back through the async one
    /// and the other way round, byte for byte the same protocol.
    #[tokio::test]
    async fn async_and_blocking_pipes_speak_the_same_frames() {
        let (a, b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        b.set_nonblocking(true).expect("nonblocking");
        let mut blocking = Pipe::new(a);
        let mut pipe = AsyncPipe::new(tokio::net::UnixStream::from_std(b).expect("tokio stream"));
        blocking
            .send(&PipeMessage::OpenRequest {
                flags: OpenFlags::READ,
                path: b"dir/file",
            })
            .expect("send");
        assert_eq!(
            pipe.receive().await.expect("receive"),
            PipeMessage::OpenRequest {
                flags: OpenFlags::READ,
                path: b"dir/file"
            }
        );
        let reply = PipeMessage::OpenResponse {
            status: Status::NotFound,
            key: ResumeKey([0; 16]),
            size: 0,
        };
        pipe.send(&reply).await.expect("send");
        let got = tokio::task::spawn_blocking(move || {
            let message = blocking.receive().map(|m| format!("{m:?}"));
            drop(blocking);
            message
        })
        .await
        .expect("join");
        assert_eq!(got.expect("receive"), format!("{reply:?}"));
        assert!(matches!(pipe.receive().await, Err(PipeError::Closed)));
    }

    /// A receive dropped mid-frame (a `select!` taking another branch)
    /// loses nothing: the next one returns the whole message.
    #[tokio::test]
    async fn a_receive_cancelled_mid_frame_resumes() {
        let (mut a, b) = tokio::net::UnixStream::pair().expect("socketpair");
        let mut pipe = AsyncPipe::new(b);
        let message = PipeMessage::OpenRequest {
            flags: OpenFlags::READ,
            path: b"a/longer/path/name",
        };
        let mut frame = vec![0; message.encoded_len()];
        let len = message.emit(&mut frame).expect("emit");
        // Cancelled within the header, then within the payload.
        for cut in [PIPE_HEADER_LEN / 2, PIPE_HEADER_LEN + 3] {
            let (first, rest) = frame[..len].split_at(cut);
            a.write_all(first).await.expect("write");
            let waited =
                tokio::time::timeout(std::time::Duration::from_millis(50), pipe.receive()).await;
            assert!(waited.is_err(), "a partial frame is not a message");
            a.write_all(rest).await.expect("write");
            assert_eq!(pipe.receive().await.expect("receive"), message);
        }
    }

    #[tokio::test]
    async fn garbage_is_malformed() {
        let (a, b) = tokio::net::UnixStream::pair().expect("socketpair");
        let mut pipe = AsyncPipe::new(b);
        let mut a = a;
        a.write_all(b"HTTP/1.1 200 OK\r\n").await.expect("write");
        assert!(matches!(
            pipe.receive().await,
            Err(PipeError::Malformed(WireError::BadMagic))
        ));
    }
}
