//! The async client: [`AsyncClient`] and [`AsyncRemoteFile`], which
//! implements tokio's `AsyncRead`, `AsyncWrite` and `AsyncSeek`.
//!
//! # How it runs
//!
//! The RDMA engine is the blocking [`Client`], itself a thin loop over the
//! one client engine every front end shares (`client/engine.rs`: the async
//! client has no driver of the core of its own). Transports are polled or
//! waited on, and libfabric/verbs offer no readiness a reactor could wait
//! for, so it runs on a dedicated thread
//! (one per connection), and the async API talks to it over channels: each
//! call is a command, each answer comes back on a oneshot channel that the
//! calling task awaits without blocking its runtime. Every command is one
//! pipelined transfer of up to `io_size × queue_depth` bytes, so the hop
//! costs little next to the data it moves.
//!
//! Commands run in the order they are sent. `AsyncRemoteFile` uses that:
//!
//! * reads prefetch — while the caller consumes one chunk, the next is in
//!   flight;
//! * writes are accepted at once (copied into the command) with up to
//!   [`WRITES_AHEAD`] in flight, like a buffered writer: a write's failure
//!   is reported by a later `write`, or by `flush`/`shutdown`/
//!   [`AsyncRemoteFile::close`], which wait for every accepted write. Call
//!   one of them to learn that the data landed.

use super::{NetError, RdmaConnector};
use crate::client::{Client, ClientOptions, RemoteFile};
use crate::files::{ReadSegment, WriteSegment};
use rdio_core::wire::OpenFlags;
use rdio_transport::Transport;
use std::collections::VecDeque;
use std::fmt;
use std::future::{Future, poll_fn};
use std::io::{self, Read, SeekFrom, Write};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::thread;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, oneshot};

/// Writes an [`AsyncRemoteFile`] accepts before waiting for the oldest.
pub const WRITES_AHEAD: usize = 4;

type Reply<T> = oneshot::Sender<Result<T, NetError>>;

/// What the engine thread is asked to do.
enum Command {
    Open {
        path: Vec<u8>,
        flags: OpenFlags,
        reply: Reply<RemoteFile>,
    },
    Read {
        file: RemoteFile,
        offset: u64,
        len: usize,
        reply: Reply<Vec<u8>>,
    },
    Write {
        file: RemoteFile,
        offset: u64,
        data: Vec<u8>,
        reply: Reply<()>,
    },
    ReadVectored {
        file: RemoteFile,
        segments: Vec<(u64, usize)>,
        reply: Reply<Vec<Vec<u8>>>,
    },
    WriteVectored {
        file: RemoteFile,
        segments: Vec<(u64, Vec<u8>)>,
        reply: Reply<u64>,
    },
    Close {
        file: RemoteFile,
        reply: Reply<()>,
    },
    Shutdown {
        reply: Reply<()>,
    },
}

/// Carry out commands until told to shut down or every handle is gone.
fn engine<T: Transport, S: Read + Write>(
    mut client: Client<T, S>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    while let Some(command) = commands.blocking_recv() {
        // A dropped receiver means the caller stopped waiting; the work is
        // done either way.
        match command {
            Command::Open { path, flags, reply } => {
                let _ = reply.send(client.open(&path, flags).map_err(Into::into));
            }
            Command::Read {
                file,
                offset,
                len,
                reply,
            } => {
                let mut data = vec![0; len];
                let result = client.read_at(&file, offset, &mut data).map(|got| {
                    data.truncate(got);
                    data
                });
                let _ = reply.send(result.map_err(Into::into));
            }
            Command::Write {
                file,
                offset,
                data,
                reply,
            } => {
                let _ = reply.send(client.write_at(&file, offset, &data).map_err(Into::into));
            }
            Command::ReadVectored {
                file,
                segments,
                reply,
            } => {
                let mut buffers: Vec<Vec<u8>> =
                    segments.iter().map(|&(_, len)| vec![0; len]).collect();
                let mut request: Vec<ReadSegment<'_>> = segments
                    .iter()
                    .zip(buffers.iter_mut())
                    .map(|(&(offset, _), buf)| ReadSegment { offset, buf })
                    .collect();
                let result = client.read_vectored_at(&file, &mut request);
                drop(request);
                let _ = reply.send(result.map(|_| buffers).map_err(Into::into));
            }
            Command::WriteVectored {
                file,
                segments,
                reply,
            } => {
                let request: Vec<WriteSegment<'_>> = segments
                    .iter()
                    .map(|(offset, data)| WriteSegment {
                        offset: *offset,
                        data,
                    })
                    .collect();
                let _ = reply.send(
                    client
                        .write_vectored_at(&file, &request)
                        .map_err(Into::into),
                );
            }
            Command::Close { file, reply } => {
                let _ = reply.send(client.close(file).map_err(Into::into));
            }
            Command::Shutdown { reply } => {
                let _ = reply.send(client.shutdown().map_err(Into::into));
                return;
            }
        }
    }
    let _ = client.shutdown();
}

/// Send a command and await its answer.
async fn request<T>(
    commands: &mpsc::UnboundedSender<Command>,
    command: impl FnOnce(Reply<T>) -> Command,
) -> Result<T, NetError> {
    let (reply, answer) = oneshot::channel();
    commands
        .send(command(reply))
        .map_err(|_| NetError::EngineStopped)?;
    answer.await.map_err(|_| NetError::EngineStopped)?
}

/// What the engine reports once connected.
struct Connected {
    provider: String,
    chunk: usize,
}

/// A connection to an rdio server, usable from async code.
///
/// Cloning is cheap; every clone and every [`AsyncRemoteFile`] drives the
/// same connection. It shuts down in order when [`AsyncClient::shutdown`]
/// is called or the last handle is dropped.
#[derive(Clone, Debug)]
pub struct AsyncClient {
    commands: mpsc::UnboundedSender<Command>,
    provider: String,
    chunk: usize,
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Open { .. } => "Open",
            Self::Read { .. } => "Read",
            Self::Write { .. } => "Write",
            Self::ReadVectored { .. } => "ReadVectored",
            Self::WriteVectored { .. } => "WriteVectored",
            Self::Close { .. } => "Close",
            Self::Shutdown { .. } => "Shutdown",
        })
    }
}

impl AsyncClient {
    /// Connect to the server whose side channel listens at `server`, as
    /// [`super::connect`] does (TLS and authentication per `security`), on
    /// a new engine thread.
    pub async fn connect<C>(
        server: SocketAddr,
        options: ClientOptions,
        pipe_timeout: Duration,
        connector: C,
        security: super::ClientSecurity,
    ) -> Result<Self, NetError>
    where
        C: RdmaConnector + Send + 'static,
    {
        let (ready, connected) = oneshot::channel();
        let (commands, receiver) = mpsc::unbounded_channel();
        thread::Builder::new()
            .name("rdio-async-client".into())
            .spawn(move || {
                match super::connect(server, options, pipe_timeout, &connector, &security) {
                    Ok(client) => {
                        let info = Connected {
                            provider: client.provider().to_owned(),
                            chunk: client.io_size() * client.queue_depth(),
                        };
                        if ready.send(Ok(info)).is_ok() {
                            engine(client, receiver);
                        } else {
                            let _ = client.shutdown();
                        }
                    }
                    Err(error) => {
                        let _ = ready.send(Err(error));
                    }
                }
            })
            .map_err(NetError::Os)?;
        let info = connected.await.map_err(|_| NetError::EngineStopped)??;
        Ok(Self {
            commands,
            provider: info.provider,
            chunk: info.chunk,
        })
    }

    /// The negotiated provider.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// Open and register `path` (relative to the server's root).
    pub async fn open(
        &self,
        path: impl AsRef<[u8]>,
        flags: OpenFlags,
    ) -> Result<AsyncRemoteFile, NetError> {
        let path = path.as_ref().to_vec();
        let file = request(&self.commands, |reply| Command::Open { path, flags, reply }).await?;
        Ok(AsyncRemoteFile {
            commands: self.commands.clone(),
            file,
            chunk: self.chunk,
            position: 0,
            len: file.size,
            ahead: ReadAhead::default(),
            writes: VecDeque::new(),
            closed: false,
        })
    }

    /// End the connection in order (`Terminate`); files still open are
    /// unusable afterwards.
    pub async fn shutdown(self) -> Result<(), NetError> {
        request(&self.commands, |reply| Command::Shutdown { reply }).await
    }
}

/// Data read ahead of the cursor, and the read in flight.
#[derive(Debug, Default)]
struct ReadAhead {
    /// Bytes from file offset `start`.
    data: Vec<u8>,
    start: u64,
    /// Where the file ends, once a read came back short.
    end: Option<u64>,
    /// The read in flight.
    pending: Option<Pending>,
}

/// A read command in flight.
#[derive(Debug)]
struct Pending {
    offset: u64,
    asked: usize,
    answer: oneshot::Receiver<Result<Vec<u8>, NetError>>,
}

impl ReadAhead {
    /// The buffered bytes from `position` on, if any.
    fn from(&self, position: u64) -> Option<&[u8]> {
        let skip = usize::try_from(position.checked_sub(self.start)?).ok()?;
        self.data.get(skip..).filter(|rest| !rest.is_empty())
    }

    fn at_end(&self, position: u64) -> bool {
        self.end.is_some_and(|end| position >= end)
    }
}

/// A registered remote file with a cursor, for tokio I/O code
/// (`tokio::io::copy`, `AsyncReadExt`, `AsyncWriteExt`, `AsyncSeekExt`).
///
/// As with [`crate::client::RemoteFileIo`], the protocol has no "stat":
/// `SeekFrom::End` is relative to the size at open, grown by this handle's
/// own writes. Positioned calls ([`AsyncRemoteFile::read_at`] and friends)
/// ignore the cursor. Dropping the handle closes the file on the server
/// without waiting; [`AsyncRemoteFile::close`] waits and reports.
#[derive(Debug)]
pub struct AsyncRemoteFile {
    commands: mpsc::UnboundedSender<Command>,
    file: RemoteFile,
    /// Bytes per read or write command.
    chunk: usize,
    position: u64,
    len: u64,
    ahead: ReadAhead,
    writes: VecDeque<oneshot::Receiver<Result<(), NetError>>>,
    closed: bool,
}

impl AsyncRemoteFile {
    /// The registered file (handle and size at open).
    pub fn file(&self) -> RemoteFile {
        self.file
    }

    /// Read up to `len` bytes at `offset` (short only at end of file).
    pub async fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, NetError> {
        let file = self.file;
        request(&self.commands, |reply| Command::Read {
            file,
            offset,
            len,
            reply,
        })
        .await
    }

    /// Write all of `data` at `offset`.
    pub async fn write_at(&self, offset: u64, data: impl Into<Vec<u8>>) -> Result<(), NetError> {
        let (file, data) = (self.file, data.into());
        request(&self.commands, |reply| Command::Write {
            file,
            offset,
            data,
            reply,
        })
        .await
    }

    /// Read `(offset, length)` segments in one vectored request (claim 15);
    /// one buffer per segment, each complete unless it reaches end of file.
    pub async fn read_vectored_at(
        &self,
        segments: &[(u64, usize)],
    ) -> Result<Vec<Vec<u8>>, NetError> {
        let (file, segments) = (self.file, segments.to_vec());
        request(&self.commands, |reply| Command::ReadVectored {
            file,
            segments,
            reply,
        })
        .await
    }

    /// Write `(offset, data)` segments in one vectored request; returns the
    /// bytes written.
    pub async fn write_vectored_at(&self, segments: Vec<(u64, Vec<u8>)>) -> Result<u64, NetError> {
        let file = self.file;
        request(&self.commands, |reply| Command::WriteVectored {
            file,
            segments,
            reply,
        })
        .await
    }

    /// Wait for the accepted writes, then close the file on the server
    /// (claim 15); the first error wins.
    pub async fn close(mut self) -> Result<(), NetError> {
        let flushed = poll_fn(|cx| self.poll_writes(cx, 0)).await;
        self.closed = true;
        let file = self.file;
        let closed = request(&self.commands, |reply| Command::Close { file, reply }).await;
        flushed.and(closed)
    }

    /// Collect finished writes until at most `keep` are in flight; the
    /// first failure is returned (and forgotten).
    fn poll_writes(&mut self, cx: &mut Context<'_>, keep: usize) -> Poll<Result<(), NetError>> {
        while let Some(oldest) = self.writes.front_mut() {
            match Pin::new(oldest).poll(cx) {
                Poll::Ready(result) => {
                    self.writes.pop_front();
                    result.map_err(|_| NetError::EngineStopped)??;
                }
                Poll::Pending if self.writes.len() > keep => return Poll::Pending,
                Poll::Pending => break,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// The read of the chunk at `offset`, asked for now unless it is
    /// already coming (a read for another offset is forgotten).
    fn fetch(&mut self, offset: u64) -> Result<&mut Pending, NetError> {
        let pending = match self.ahead.pending.take() {
            Some(pending) if pending.offset == offset => pending,
            _ => {
                let (reply, answer) = oneshot::channel();
                let (file, asked) = (self.file, self.chunk);
                self.commands
                    .send(Command::Read {
                        file,
                        offset,
                        len: asked,
                        reply,
                    })
                    .map_err(|_| NetError::EngineStopped)?;
                Pending {
                    offset,
                    asked,
                    answer,
                }
            }
        };
        Ok(self.ahead.pending.insert(pending))
    }

    /// Keep the next chunk in flight while the caller consumes this one.
    fn prefetch(&mut self) -> Result<(), NetError> {
        let next = self.ahead.start + self.ahead.data.len() as u64;
        if self.ahead.pending.is_none() && !self.ahead.at_end(next) {
            self.fetch(next)?;
        }
        Ok(())
    }
}

impl Drop for AsyncRemoteFile {
    fn drop(&mut self) {
        if !self.closed {
            let (reply, _) = oneshot::channel();
            let _ = self.commands.send(Command::Close {
                file: self.file,
                reply,
            });
        }
    }
}

impl AsyncRead for AsyncRemoteFile {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if let Some(bytes) = this.ahead.from(this.position) {
                let n = bytes.len().min(buf.remaining());
                buf.put_slice(&bytes[..n]);
                this.position += n as u64;
                this.prefetch()?;
                return Poll::Ready(Ok(()));
            }
            if this.ahead.at_end(this.position) {
                return Poll::Ready(Ok(()));
            }
            let pending = this.fetch(this.position)?;
            let (offset, asked) = (pending.offset, pending.asked);
            let result = ready!(Pin::new(&mut pending.answer).poll(cx));
            this.ahead.pending = None;
            let data = result.map_err(|_| NetError::EngineStopped)??;
            if data.len() < asked {
                this.ahead.end = Some(offset + data.len() as u64);
            }
            this.ahead.start = offset;
            this.ahead.data = data;
        }
    }
}

impl AsyncWrite for AsyncRemoteFile {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_writes(cx, WRITES_AHEAD - 1))?;
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // What was read ahead may be what this write replaces.
        this.ahead = ReadAhead::default();
        let n = data.len().min(this.chunk);
        let (reply, answer) = oneshot::channel();
        this.commands
            .send(Command::Write {
                file: this.file,
                offset: this.position,
                data: data[..n].to_vec(),
                reply,
            })
            .map_err(|_| NetError::EngineStopped)?;
        this.writes.push_back(answer);
        this.position += n as u64;
        this.len = this.len.max(this.position);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(ready!(self.get_mut().poll_writes(cx, 0))?))
    }

    /// Flushes; the file stays open (see [`AsyncRemoteFile::close`]).
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}

impl AsyncSeek for AsyncRemoteFile {
    fn start_seek(self: Pin<&mut Self>, to: SeekFrom) -> io::Result<()> {
        let this = self.get_mut();
        let target = match to {
            SeekFrom::Start(offset) => Some(offset),
            SeekFrom::Current(delta) => this.position.checked_add_signed(delta),
            SeekFrom::End(delta) => this.len.checked_add_signed(delta),
        };
        // Read-ahead is kept: it is valid by offset.
        this.position = target.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the file",
            )
        })?;
        Ok(())
    }

    fn poll_complete(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Poll::Ready(Ok(self.position))
    }
}
