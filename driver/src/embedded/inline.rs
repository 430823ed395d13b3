//! The inline pair's two halves: a client transport that steps the server's
//! connection inside its own calls, and a side channel answered as it is
//! written. Together they run a client and its server on one thread with
//! nothing blocking and no thread hand-off (see [`super::Inline`]).

use crate::pipe::PipeError;
use crate::server::{ConnectionEnd, PipeSession, Server, ServerConnection, ServerError, Turn};
use rdio_core::wire::pipe::PIPE_HEADER_LEN;
use rdio_core::wire::{MAX_PIPE_PAYLOAD, PipeHeader, PipeMessage, WireError};
use rdio_loopback::Endpoint;
use rdio_transport::{
    Completion, RemoteBuf, Slice, Transport, TransportError, TransportWrapper, WrId,
};
use std::cell::{Cell, RefCell};
use std::fmt;
use std::io::{self, Read, Write};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// Room for the largest frame either side may send.
const FRAME_CAPACITY: usize = PIPE_HEADER_LEN + MAX_PIPE_PAYLOAD;

/// Consecutive looks at the pair (client polls and waits, each after a
/// server turn) that found nothing moving, with nothing posted since, after
/// which a poll reports [`TransportError::Stalled`]. Two: a client that
/// found nothing looks once more (a wait, or a polling client's next
/// round) before it would loop forever; in a closed single-threaded system
/// a third look cannot see anything the second did not.
const STALL_LOOKS: u32 = 2;

/// Rounds the server gets to notice its client is gone before it is
/// released anyway (it needs one or two: the flushed completions end it).
const END_ROUNDS: usize = 64;

/// What the pair's parts report to [`super::Inline`] for
/// [`super::Embedded::finish`].
#[derive(Debug, Default)]
pub(super) struct State {
    /// How the server saw the connection end, once it did.
    end: Cell<Option<ConnectionEnd>>,
    /// Why the server ended the side channel, if it did so in error.
    pipe_error: RefCell<Option<ServerError>>,
}

impl State {
    /// The server's end. The transport records it when the server ends, and
    /// at the latest when the transport is dropped, so once the client is
    /// gone it is there.
    pub(super) fn take_end(&self) -> ConnectionEnd {
        self.end
            .take()
            .unwrap_or(ConnectionEnd::Transport(TransportError::Disconnected))
    }

    pub(super) fn take_pipe_error(&self) -> Option<ServerError> {
        self.pipe_error.borrow_mut().take()
    }
}

/// The client's transport of an inline pair: the client's endpoint of a
/// single-threaded loopback pair ([`rdio_loopback::pair`]), plus the
/// server's connection over the other endpoint, which it steps.
///
/// Every call is the client endpoint's, except that
/// [`Transport::poll_completions`] and [`Transport::wait`] first give the
/// server one turn ([`ServerConnection::turn`]): it executes what the client
/// posted, handles the messages, does the file I/O and posts its RDMA
/// writes and sends, which the client endpoint then executes into the
/// client's memory. `wait` never sleeps — nothing else could make progress
/// meanwhile. The client over it is the ordinary loop over the client
/// engine: each engine poll posts every request the core has ready, then
/// drains (a server turn, then the client's completions, again while a
/// drain fills its batch), so the server answers a poll's requests within
/// that poll, and a poll that moved nothing is followed by a `wait`, one
/// more turn. When the server ends the connection, the transport releases
/// it at once ([`ServerConnection::finish`]: buffers deregistered, files
/// closed) and the client sees the disconnect; [`Transport::disconnect`]
/// and dropping the transport end the server the same way.
///
/// **Stalls are errors, not hangs.** If the client keeps looking
/// (`poll_completions`, `wait`) while the server has nothing to do, nothing
/// arrives for the client, and the client posts nothing in between, no
/// amount of further looking can change anything: the pair is deadlocked
/// (a bug in rdio, e.g. a credit that never comes back).
/// `poll_completions` then fails with [`TransportError::Stalled`].
pub struct InlineTransport {
    client: Endpoint,
    /// `None` once the connection ended and was released.
    server: Option<ServerConnection<Endpoint>>,
    state: Rc<State>,
    /// Looks since the last post that saw nothing move.
    idle_looks: u32,
}

impl fmt::Debug for InlineTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InlineTransport")
            .field("server_running", &self.server.is_some())
            .field("idle_looks", &self.idle_looks)
            .finish_non_exhaustive()
    }
}

impl InlineTransport {
    /// `client` is one endpoint of a [`rdio_loopback::pair`], `server` a
    /// connection accepted over the other.
    pub(super) fn new(
        client: Endpoint,
        server: ServerConnection<Endpoint>,
        state: &Rc<State>,
    ) -> Self {
        Self {
            client,
            server: Some(server),
            state: Rc::clone(state),
            idle_looks: 0,
        }
    }

    /// Give the server one turn; whether it did anything (ending counts).
    fn serve(&mut self) -> bool {
        let Some(server) = self.server.as_mut() else {
            return false;
        };
        match server.turn() {
            Turn::Progress => true,
            Turn::Idle => false,
            Turn::Ended(end) => {
                self.release_server(end);
                true
            }
        }
    }

    fn release_server(&mut self, end: ConnectionEnd) {
        if let Some(server) = self.server.take() {
            self.state.end.set(Some(server.finish(end)));
        }
    }

    /// The client endpoint is down: let the server see it, then release it.
    fn end_server(&mut self) {
        for _ in 0..END_ROUNDS {
            if self.server.is_none() {
                return;
            }
            self.serve();
        }
        // A server that does not notice a disconnect within the bound is
        // released anyway: its transport is down, nothing more can arrive.
        self.release_server(ConnectionEnd::Transport(TransportError::Disconnected));
    }

    /// Count one look at the pair; `moved` says whether anything did.
    fn look(&mut self, moved: bool) -> u32 {
        self.idle_looks = if moved { 0 } else { self.idle_looks + 1 };
        self.idle_looks
    }

    fn posted(&mut self, result: Result<(), TransportError>) -> Result<(), TransportError> {
        if result.is_ok() {
            self.idle_looks = 0;
        }
        result
    }
}

impl Drop for InlineTransport {
    /// The client is gone: so is the connection, and the server releases it.
    fn drop(&mut self) {
        if self.server.is_some() {
            TransportWrapper::disconnect(self);
        }
    }
}

impl TransportWrapper for InlineTransport {
    type Inner = Endpoint;

    fn inner(&self) -> &Endpoint {
        &self.client
    }

    fn inner_mut(&mut self) -> &mut Endpoint {
        &mut self.client
    }

    fn post_recv(&mut self, wr_id: WrId, buf: Slice) -> Result<(), TransportError> {
        let posted = self.client.post_recv(wr_id, buf);
        self.posted(posted)
    }

    fn post_send(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        imm: Option<u32>,
    ) -> Result<(), TransportError> {
        let posted = self.client.post_send(wr_id, sges, imm);
        self.posted(posted)
    }

    fn post_write(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        dst: RemoteBuf,
        imm: Option<u32>,
    ) -> Result<(), TransportError> {
        let posted = self.client.post_write(wr_id, sges, dst, imm);
        self.posted(posted)
    }

    fn post_send_inline(&mut self, wr_id: WrId, data: &[u8]) -> Result<(), TransportError> {
        let posted = self.client.post_send_inline(wr_id, data);
        self.posted(posted)
    }

    fn post_write_inline(
        &mut self,
        wr_id: WrId,
        data: &[u8],
        dst: RemoteBuf,
        imm: Option<u32>,
    ) -> Result<(), TransportError> {
        let posted = self.client.post_write_inline(wr_id, data, dst, imm);
        self.posted(posted)
    }

    fn post_write_tail(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        tail: &[u8],
        dst: RemoteBuf,
        imm: Option<u32>,
    ) -> Result<(), TransportError> {
        let posted = self.client.post_write_tail(wr_id, sges, tail, dst, imm);
        self.posted(posted)
    }

    fn post_write_tail_unsignaled(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        tail: &[u8],
        dst: RemoteBuf,
    ) -> Result<(), TransportError> {
        let posted = self
            .client
            .post_write_tail_unsignaled(wr_id, sges, tail, dst);
        self.posted(posted)
    }

    /// The server's turn, then the client's completions.
    fn poll_completions(&mut self, out: &mut [Completion]) -> Result<usize, TransportError> {
        let served = self.serve();
        let drained = self.client.poll_completions(out)?;
        if self.look(served || drained > 0) > STALL_LOOKS {
            return Err(TransportError::Stalled);
        }
        Ok(drained)
    }

    /// The server's turn; never sleeps (the `timeout` is moot: nothing could
    /// arrive meanwhile). Returns at once with whatever the turn brought.
    fn wait(&mut self, _timeout: Option<Duration>) -> Result<(), TransportError> {
        let served = self.serve();
        let ready = self.client.ready()?;
        self.look(served || ready);
        Ok(())
    }

    fn disconnect(&mut self) {
        self.client.disconnect();
        self.end_server();
    }
}

/// The client's side channel of an inline pair: each request is answered
/// by the server ([`Server::answer_pipe`]) as soon as its last byte is
/// written, and the reply waits to be read. The whole pipe protocol of
/// [`Server::serve_pipe`], with no thread and no socket.
///
/// Reading when no reply is pending fails at once (the client would wait
/// forever for a reply to a request it never finished sending). A request
/// the server refuses ends the side channel as `serve_pipe` would: the
/// client reads end-of-stream, and [`super::Embedded::finish`] reports the
/// server's error.
pub struct InlinePipe {
    server: Arc<Server>,
    /// `None` once the server ended the side channel.
    session: Option<PipeSession>,
    /// Bytes written and not yet answered: at most a partial frame.
    request: Vec<u8>,
    /// Replies not yet read, from `read_from` on.
    reply: Vec<u8>,
    read_from: usize,
    frame: Box<[u8; FRAME_CAPACITY]>,
    state: Rc<State>,
}

impl fmt::Debug for InlinePipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InlinePipe")
            .field("open", &self.session.is_some())
            .field("unanswered", &self.request.len())
            .field("unread", &(self.reply.len() - self.read_from))
            .finish_non_exhaustive()
    }
}

impl InlinePipe {
    pub(super) fn new(server: Arc<Server>, state: &Rc<State>) -> Self {
        Self {
            server,
            session: Some(PipeSession::default()),
            request: Vec::new(),
            reply: Vec::new(),
            read_from: 0,
            frame: Box::new([0; FRAME_CAPACITY]),
            state: Rc::clone(state),
        }
    }

    /// Answer every complete request frame written so far.
    fn answer(&mut self) {
        while let Some(session) = self.session.as_mut() {
            let Some(header) = self.request.get(..PIPE_HEADER_LEN) else {
                return;
            };
            let frame_len = match PipeHeader::parse(header) {
                Ok(header) if header.frame_len() <= FRAME_CAPACITY => header.frame_len(),
                Ok(_) => return self.end(Some(PipeError::Malformed(WireError::TooMany).into())),
                Err(e) => return self.end(Some(PipeError::Malformed(e).into())),
            };
            let Some(frame) = self.request.get(..frame_len) else {
                return;
            };
            let answered = match PipeMessage::parse(frame) {
                Err(e) => Err(PipeError::Malformed(e).into()),
                Ok((message, _)) => self
                    .server
                    .answer_pipe(session, &message)
                    .and_then(|reply| {
                        let len = reply.emit(&mut self.frame[..]).map_err(|_| {
                            PipeError::Unexpected("message larger than a pipe frame")
                        })?;
                        self.reply.extend_from_slice(&self.frame[..len]);
                        Ok(())
                    }),
            };
            self.request.drain(..frame_len);
            if let Err(e) = answered {
                return self.end(Some(e));
            }
        }
    }

    /// The server ends the side channel (and its session), as
    /// [`Server::serve_pipe`] does when it returns.
    fn end(&mut self, error: Option<ServerError>) {
        if let Some(session) = self.session.take() {
            self.server.end_pipe(session);
        }
        if let Some(error) = error {
            self.state.pipe_error.borrow_mut().get_or_insert(error);
        }
    }
}

impl Drop for InlinePipe {
    fn drop(&mut self) {
        self.end(None);
    }
}

impl Write for InlinePipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.session.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the in-process server ended the side channel",
            ));
        }
        self.request.extend_from_slice(buf);
        self.answer();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for InlinePipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let pending = &self.reply[self.read_from..];
        if pending.is_empty() {
            if self.session.is_none() {
                // The server closed the side channel: end of stream.
                return Ok(0);
            }
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "inline side channel: no reply is pending (the request was not sent in full)",
            ));
        }
        let n = pending.len().min(buf.len());
        buf[..n].copy_from_slice(&pending[..n]);
        self.read_from += n;
        if self.read_from == self.reply.len() {
            self.reply.clear();
            self.read_from = 0;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{Client, ClientError};
    use crate::embedded::EmbeddedOptions;
    use crate::files::Root;
    use rdio_core::wire::{OpenFlags, ResumeKey};
    use rdio_transport::{FaultConfig, FaultInjector};

    /// An inline server on `dir`, and the client's halves of the pair.
    fn halves(dir: &std::path::Path) -> (Arc<Server>, InlineTransport, InlinePipe, Rc<State>) {
        let options = EmbeddedOptions::default();
        let (client, server_end) = rdio_loopback::pair(options.loopback);
        let server = Server::new(Root::new(dir).expect("root"), options.server);
        let connection = server.accept(server_end).expect("accept");
        let state = Rc::new(State::default());
        let transport = InlineTransport::new(client, connection, &state);
        let pipe = InlinePipe::new(Arc::clone(&server), &state);
        (server, transport, pipe, state)
    }

    /// Every send the client posts is lost (and completed as if sent): the
    /// authentication request never reaches the server, which therefore
    /// never answers. Threads would wait for the authentication timer; the
    /// inline pair sees that nothing can move and says so.
    #[test]
    fn a_lost_message_is_a_stall_reported_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_server, transport, pipe, state) = halves(dir.path());
        let mut lossy = FaultConfig::new(7);
        lossy.drop_pct = 100;
        let connected = Client::connect(pipe, EmbeddedOptions::default().client, |_| {
            Ok(FaultInjector::<_>::new(transport, lossy))
        });
        match connected {
            Err(ClientError::Transport(TransportError::Stalled)) => {}
            other => panic!("expected a stall, got {other:?}"),
        }
        // The failed client released the connection; the server ended it.
        assert!(matches!(
            state.take_end(),
            ConnectionEnd::Lost(_) | ConnectionEnd::Transport(_)
        ));
    }

    #[test]
    fn the_side_channel_answers_each_request_as_it_is_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("f"), b"abc").expect("file");
        let (server, _transport, pipe, state) = halves(dir.path());
        let mut pipe = crate::pipe::Pipe::new(pipe);
        pipe.send(&PipeMessage::ResumeKeyRequest).expect("send");
        assert!(matches!(
            pipe.receive().expect("reply"),
            PipeMessage::ResumeKeyResponse { .. }
        ));
        pipe.send(&PipeMessage::OpenRequest {
            flags: OpenFlags::READ,
            path: b"f",
        })
        .expect("send");
        assert!(matches!(
            pipe.receive().expect("reply"),
            PipeMessage::OpenResponse { size: 3, .. }
        ));
        assert_eq!(server.open_files(), 1);
        // Nothing asked, nothing to read: an error at once, not a hang.
        let mut raw = crate::pipe::Pipe::new(InlinePipe::new(Arc::clone(&server), &state));
        let waiting = raw.receive();
        assert!(
            matches!(&waiting, Err(PipeError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock),
            "{waiting:?}"
        );
        drop(raw);
        drop(pipe);
        // The session ended with the pipe: its unregistered file is closed.
        assert_eq!(server.open_files(), 0);
        assert!(state.take_pipe_error().is_none());
    }

    #[test]
    fn a_request_the_server_refuses_ends_the_side_channel() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_server, _transport, pipe, state) = halves(dir.path());
        let mut pipe = crate::pipe::Pipe::new(pipe);
        // A response sent to the server ends the pipe, as serve_pipe does.
        pipe.send(&PipeMessage::ResumeKeyResponse {
            key: ResumeKey([1; 16]),
        })
        .expect("the write itself succeeds");
        assert!(matches!(pipe.receive(), Err(PipeError::Closed)));
        assert!(matches!(
            pipe.send(&PipeMessage::ResumeKeyRequest),
            Err(PipeError::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe
        ));
        assert!(matches!(
            state.take_pipe_error(),
            Some(ServerError::Pipe(PipeError::Unexpected(_)))
        ));
    }

    #[test]
    fn garbage_on_the_side_channel_is_malformed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_server, _transport, mut pipe, state) = halves(dir.path());
        pipe.write_all(b"HTTP/1.1 200 OK\r\n").expect("write");
        let mut buf = [0u8; 8];
        assert_eq!(pipe.read(&mut buf).expect("end of stream"), 0);
        assert!(matches!(
            state.take_pipe_error(),
            Some(ServerError::Pipe(PipeError::Malformed(WireError::BadMagic)))
        ));
    }
}
