//! Doorbell batching on the client: over a transport that holds posts
//! until a flush (`Caps::deferred_posts`), requests posted as they are
//! submitted are handed over in batches of at most half the requests in
//! flight (`Transport::flush`), not held until the client next polls, so a
//! server works on one half of a deep queue while the client completes and
//! resubmits the other (docs/PERFORMANCE.md, "Stop 34"); over one that
//! hands each post on at once, the client never flushes. Those two run
//! without read batches; with them (the default), the reads submitted
//! while others are in flight go several to a message, and the server
//! answers a batch with unsignaled writes but its last
//! (`Transport::post_write_tail_unsignaled`): one send completion to drain
//! per batch, not one per read.

use rdio::client::{Client, ClientOptions, Ticket};
use rdio::files::Root;
use rdio::server::{ConnectionEnd, Server, ServerOptions};
use rdio_core::Violation;
use rdio_core::wire::{OpenFlags, ProviderName, Status};
use rdio_loopback::SyncEndpoint;
use rdio_transport::{
    Caps, Completion, CompletionKind, RemoteBuf, Slice, Transport, TransportError,
    TransportWrapper, WrId,
};
use std::collections::VecDeque;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const DEPTH: usize = 16;
const SIZE: usize = 4096;

/// What the client's transport saw: posts since the last hand-over (a
/// flush, poll or wait), the longest such run, and the explicit flushes.
#[derive(Default)]
struct Seen {
    unflushed: usize,
    longest: usize,
    posts: usize,
    flushes: usize,
}

struct Counting {
    inner: SyncEndpoint,
    seen: Arc<Mutex<Seen>>,
    deferred: bool,
}

impl Counting {
    fn posted(&self) {
        let mut seen = self.seen.lock().expect("lock");
        seen.posts += 1;
        seen.unflushed += 1;
        seen.longest = seen.longest.max(seen.unflushed);
    }

    fn handed_over(&self) {
        self.seen.lock().expect("lock").unflushed = 0;
    }
}

impl TransportWrapper for Counting {
    type Inner = SyncEndpoint;
    fn inner(&self) -> &SyncEndpoint {
        &self.inner
    }
    fn inner_mut(&mut self) -> &mut SyncEndpoint {
        &mut self.inner
    }
    /// With `deferred`, says posts wait for a flush, as cma's do (the
    /// loopback's own flush does nothing, which is harmless here): what
    /// makes the engine flush.
    fn caps(&self) -> Caps {
        Caps {
            deferred_posts: self.deferred,
            ..self.inner.caps()
        }
    }
    fn post_send(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        imm: Option<u32>,
    ) -> Result<(), TransportError> {
        self.inner.post_send(wr_id, sges, imm)?;
        self.posted();
        Ok(())
    }
    fn post_send_inline(&mut self, wr_id: WrId, data: &[u8]) -> Result<(), TransportError> {
        self.inner.post_send_inline(wr_id, data)?;
        self.posted();
        Ok(())
    }
    fn flush(&mut self) -> Result<(), TransportError> {
        self.seen.lock().expect("lock").flushes += 1;
        self.handed_over();
        self.inner.flush()
    }
    fn poll_completions(&mut self, out: &mut [Completion]) -> Result<usize, TransportError> {
        self.handed_over();
        self.inner.poll_completions(out)
    }
    fn wait(&mut self, timeout: Option<Duration>) -> Result<(), TransportError> {
        self.handed_over();
        self.inner.wait(timeout)
    }
}

/// What the server's transport saw: writes posted signaled and
/// unsignaled, and write completions drained. (Atomics, not a lock: a
/// lock per poll slows the server enough to change the client's batching.)
#[derive(Default)]
struct ServerSeen {
    signaled: AtomicUsize,
    unsignaled: AtomicUsize,
    completions: AtomicUsize,
}

/// [`ServerSeen`]'s counts.
struct ServerCounts {
    signaled: usize,
    unsignaled: usize,
    completions: usize,
}

impl ServerSeen {
    fn take(&self) -> ServerCounts {
        ServerCounts {
            signaled: self.signaled.swap(0, Relaxed),
            unsignaled: self.unsignaled.swap(0, Relaxed),
            completions: self.completions.swap(0, Relaxed),
        }
    }
}

struct ServerCounting {
    inner: SyncEndpoint,
    seen: Arc<ServerSeen>,
}

impl TransportWrapper for ServerCounting {
    type Inner = SyncEndpoint;
    fn inner(&self) -> &SyncEndpoint {
        &self.inner
    }
    fn inner_mut(&mut self) -> &mut SyncEndpoint {
        &mut self.inner
    }
    fn post_write_tail(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        tail: &[u8],
        dst: RemoteBuf,
        imm: Option<u32>,
    ) -> Result<(), TransportError> {
        self.inner.post_write_tail(wr_id, sges, tail, dst, imm)?;
        self.seen.signaled.fetch_add(1, Relaxed);
        Ok(())
    }
    fn post_write_tail_unsignaled(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        tail: &[u8],
        dst: RemoteBuf,
    ) -> Result<(), TransportError> {
        self.inner
            .post_write_tail_unsignaled(wr_id, sges, tail, dst)?;
        self.seen.unsignaled.fetch_add(1, Relaxed);
        Ok(())
    }
    fn poll_completions(&mut self, out: &mut [Completion]) -> Result<usize, TransportError> {
        let n = self.inner.poll_completions(out)?;
        let writes = out[..n]
            .iter()
            .filter(|c| c.kind == CompletionKind::Write)
            .count();
        if writes > 0 {
            self.seen.completions.fetch_add(writes, Relaxed);
        }
        Ok(n)
    }
}

#[test]
fn a_deep_queue_is_handed_over_in_halves() {
    let (seen, _, reads) = run_reads(true, false);
    assert!(
        seen.posts >= reads,
        "every read was posted ({} posts)",
        seen.posts
    );
    assert!(
        seen.longest <= DEPTH / 2,
        "at most half the queue waited for a hand-over: {} did",
        seen.longest
    );
    assert!(seen.flushes > 0, "the client flushed between polls");
}

#[test]
fn a_transport_that_posts_at_once_is_not_flushed() {
    let (seen, _, reads) = run_reads(false, false);
    assert!(seen.posts >= reads);
    assert_eq!(seen.flushes, 0, "no flush where posts go out at once");
}

#[test]
fn reads_submitted_while_others_are_in_flight_go_in_batches() {
    let (seen, server, reads) = run_reads(true, true);
    assert!(
        seen.posts * 2 <= reads,
        "{reads} reads took {} sends: not batched",
        seen.posts
    );
    // Every read went as one write with its status block (each checked
    // for its bytes by `run_reads`), most of them unsignaled.
    assert_eq!(server.signaled + server.unsignaled, reads);
    assert!(
        server.unsignaled * 2 >= reads,
        "{} of {reads} writes unsignaled",
        server.unsignaled
    );
    assert_eq!(
        server.completions, server.signaled,
        "a completion for each signaled write, none for the others"
    );
}

#[test]
fn without_batches_every_write_is_signaled() {
    let (_, server, reads) = run_reads(false, false);
    assert_eq!(server.signaled, reads);
    assert_eq!(server.unsignaled, 0);
}

/// The bench's loop over a threaded server: keep DEPTH reads in flight,
/// collect the oldest, check each read's bytes; `batches`: the client
/// offers read batches. What the client's
/// transport saw while reading, and how many reads there were.
fn run_reads(deferred: bool, batches: bool) -> (Seen, ServerCounts, usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data: Vec<u8> = (0..64 * SIZE).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.path().join("data"), &data).expect("seed");
    let provider = ProviderName::new("loopback").expect("provider");
    let server = Server::new(
        Root::new(dir.path()).expect("root"),
        ServerOptions::new(provider, b"loopback"),
    );
    let (pipe_client, pipe_server) = UnixStream::pair().expect("socket pair");
    let pipe_handler = Arc::clone(&server);
    let pipe_thread = std::thread::spawn(move || pipe_handler.serve_pipe(pipe_server));
    let (client_wire, server_wire) = rdio_loopback::sync_pair(rdio_loopback::Config::default());
    let server_seen = Arc::new(ServerSeen::default());
    let server_wire = ServerCounting {
        inner: server_wire,
        seen: Arc::clone(&server_seen),
    };
    let connection = server.accept(server_wire).expect("accept");
    let connection_thread = std::thread::spawn(move || connection.run());

    let seen = Arc::new(Mutex::new(Seen::default()));
    let transport = Counting {
        inner: client_wire,
        seen: Arc::clone(&seen),
        deferred,
    };
    let mut options = ClientOptions::new(provider);
    options.io_size = SIZE as u32;
    options.queue_depth = DEPTH;
    if !batches {
        options.config.capabilities = rdio_core::wire::Capabilities::NONE;
    }
    let mut client = Client::connect(pipe_client, options, |_| Ok(transport)).expect("connect");
    let file = client.open("data", OpenFlags::READ).expect("open");
    let before = std::mem::take(&mut *seen.lock().expect("lock"));
    assert!(before.posts > 0, "the open was posted");
    server_seen.take();

    let total = 8 * DEPTH;
    let mut in_flight: VecDeque<(Ticket, usize)> = VecDeque::new();
    let mut back = vec![0u8; SIZE];
    let mut issued = 0;
    while issued < total || !in_flight.is_empty() {
        while issued < total && in_flight.len() < DEPTH {
            let offset = (issued % 64) * SIZE;
            let ticket = client
                .submit_read(&file, offset as u64, SIZE)
                .expect("submit");
            in_flight.push_back((ticket, offset));
            issued += 1;
        }
        let (ticket, offset) = in_flight.pop_front().expect("a read in flight");
        assert_eq!(client.wait(ticket, &mut back).expect("read"), SIZE as u64);
        assert!(back == data[offset..offset + SIZE], "read at {offset}");
    }

    let during = std::mem::take(&mut *seen.lock().expect("lock"));
    client.close(file).expect("close");
    client.shutdown().expect("shutdown");
    let end = connection_thread.join().expect("connection thread");
    // Taken once the server is done: every completion of the reads'
    // writes drained (the close and the shutdown post sends, not writes).
    let server_during = server_seen.take();
    assert!(
        matches!(
            end,
            ConnectionEnd::Terminated(Violation::PeerTerminated(Status::Shutdown))
        ),
        "the client's orderly close ended the connection: {end}"
    );
    pipe_thread
        .join()
        .expect("pipe thread")
        .expect("pipe served");
    (during, server_during, total)
}
