//! Reconnection ([`rdio::client::ResilientClient`]): the RDMA connection is
//! killed mid-transfer; reads are retried on a new connection, writes are
//! reported in doubt and never replayed, files are re-opened by path with
//! fresh keys, and the side channel is reused when it survived.

use rdio::client::reconnect::is_connection_loss;
use rdio::client::{
    ClientError, ClientOptions, Connector, ReconnectPolicy, ResilientClient, ResilientError,
};
use rdio::files::Root;
use rdio::pipe::PipeError;
use rdio::server::{Server, ServerOptions};
use rdio_core::client::Negotiated;
use rdio_core::wire::{OpenFlags, ProviderName, Status};
use rdio_loopback::SyncEndpoint;
use rdio_transport::{Completion, Transport, TransportError, TransportWrapper};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

const RWC: OpenFlags = OpenFlags::READ
    .union(OpenFlags::WRITE)
    .union(OpenFlags::CREATE);

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
        .collect()
}

/// A transport that disconnects itself once `fuse` completions have been
/// drained after it was armed (a fuse ≤ 0 is unarmed): "the cable is pulled
/// in the middle of a transfer".
struct Fused {
    inner: SyncEndpoint,
    fuse: Arc<AtomicI64>,
}

impl TransportWrapper for Fused {
    type Inner = SyncEndpoint;
    fn inner(&self) -> &SyncEndpoint {
        &self.inner
    }
    fn inner_mut(&mut self) -> &mut SyncEndpoint {
        &mut self.inner
    }
    fn poll_completions(&mut self, out: &mut [Completion]) -> Result<usize, TransportError> {
        let n = self.inner.poll_completions(out)?;
        if n > 0 && self.fuse.load(Ordering::SeqCst) > 0 {
            let left = self.fuse.fetch_sub(n as i64, Ordering::SeqCst) - n as i64;
            if left <= 0 {
                self.fuse.store(0, Ordering::SeqCst);
                self.inner.disconnect();
            }
        }
        Ok(n)
    }
}

/// Connects to an in-process server: each side channel is a socket pair
/// with a server thread, each RDMA connection a loopback pair with a
/// connection thread. Every transport shares the one fuse.
struct TestNet {
    server: Arc<Server>,
    fuse: Arc<AtomicI64>,
    side_channels: usize,
    transports: usize,
    /// The client end of the latest side channel, to break it from outside.
    pipe: Option<UnixStream>,
}

impl TestNet {
    fn new(root: &Path) -> Self {
        let provider = ProviderName::new("loopback").expect("provider");
        let options = ServerOptions::new(provider, b"loopback");
        Self {
            server: Server::new(Root::new(root).expect("root"), options),
            fuse: Arc::new(AtomicI64::new(0)),
            side_channels: 0,
            transports: 0,
            pipe: None,
        }
    }
}

impl Connector for TestNet {
    type Transport = Fused;
    type Stream = UnixStream;

    fn side_channel(&mut self) -> Result<UnixStream, ClientError> {
        let (client, server) =
            UnixStream::pair().map_err(|e| ClientError::Pipe(PipeError::Io(e)))?;
        let handler = Arc::clone(&self.server);
        std::thread::spawn(move || handler.serve_pipe(server));
        self.side_channels += 1;
        self.pipe = Some(
            client
                .try_clone()
                .map_err(|e| ClientError::Pipe(PipeError::Io(e)))?,
        );
        Ok(client)
    }

    fn transport(&mut self, _: &Negotiated) -> Result<Fused, ClientError> {
        let (client, server) = rdio_loopback::sync_pair(rdio_loopback::Config::default());
        let connection = self.server.accept(server).map_err(|e| match e {
            rdio::server::ServerError::Transport(e) => ClientError::Transport(e),
            _ => ClientError::InvalidArgument("server refused the connection"),
        })?;
        std::thread::spawn(move || connection.run());
        self.transports += 1;
        Ok(Fused {
            inner: client,
            fuse: Arc::clone(&self.fuse),
        })
    }
}

fn options() -> ClientOptions {
    let mut options = ClientOptions::new(ProviderName::new("loopback").expect("provider"));
    options.io_size = 64 << 10;
    options.queue_depth = 4;
    options
}

fn connect(root: &Path) -> ResilientClient<TestNet> {
    ResilientClient::connect(TestNet::new(root), options(), ReconnectPolicy::default())
        .expect("connect")
}

#[test]
fn a_read_cut_mid_transfer_is_retried_on_a_new_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = pattern(1 << 20, 7);
    std::fs::write(dir.path().join("big"), &data).expect("seed");
    let mut client = connect(dir.path());
    let file = client.open("big", OpenFlags::READ).expect("open");
    let before = client.remote(file).expect("registered");

    // 16 requests of 64 KiB; the connection dies after 12 completions.
    client.connector().fuse.store(12, Ordering::SeqCst);
    let mut back = vec![0u8; data.len()];
    let got = client.read_at(file, 0, &mut back).expect("read survives");
    assert_eq!(got, data.len());
    assert!(back == data, "retried read returned the file's bytes");
    assert_eq!(client.reconnects(), 1);
    assert_eq!(client.connector().transports, 2);
    assert_eq!(
        client.connector().side_channels,
        1,
        "the side channel survived the RDMA connection and was reused"
    );
    let after = client.remote(file).expect("re-registered");
    assert_eq!(after.size, before.size);
    client.shutdown().expect("shutdown");
}

#[test]
fn a_write_cut_mid_transfer_is_reported_and_not_replayed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut client = connect(dir.path());
    let file = client.open("out", RWC).expect("open");
    let data = pattern(1 << 20, 9);
    client.connector().fuse.store(12, Ordering::SeqCst);
    match client.write_at(file, 0, &data) {
        Err(ResilientError::WriteInDoubt { cause }) => {
            assert!(is_connection_loss(&cause), "{cause}");
        }
        other => panic!("expected the write in doubt, got {other:?}"),
    }
    assert_eq!(client.reconnects(), 1, "reconnected before reporting");
    // Not replayed: what is on disk is a prefix of whole pieces at most.
    let disk = std::fs::read(dir.path().join("out")).expect("on disk");
    assert!(disk.len() < data.len(), "the write did not finish");
    assert!(
        disk[..] == data[..disk.len()],
        "nothing but the data's bytes"
    );
    // The caller decides to write again, on the same client; the re-open
    // did not truncate what was written.
    client.write_at(file, 0, &data).expect("write again");
    let mut back = vec![0u8; data.len()];
    assert_eq!(
        client.read_at(file, 0, &mut back).expect("read"),
        data.len()
    );
    assert!(back == data);
    assert!(std::fs::read(dir.path().join("out")).expect("on disk") == data);
    client.shutdown().expect("shutdown");
}

#[test]
fn a_dead_side_channel_is_replaced_by_a_new_discovery() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = pattern(1 << 20, 3);
    std::fs::write(dir.path().join("f"), &data).expect("seed");
    let mut client = connect(dir.path());
    let file = client.open("f", OpenFlags::READ).expect("open");
    // Both channels die: the pipe now, the RDMA connection mid-read.
    client
        .connector()
        .pipe
        .as_ref()
        .expect("pipe")
        .shutdown(Shutdown::Both)
        .expect("shutdown pipe");
    client.connector().fuse.store(12, Ordering::SeqCst);
    let mut back = vec![0u8; data.len()];
    assert_eq!(
        client.read_at(file, 0, &mut back).expect("read"),
        data.len()
    );
    assert!(back == data);
    assert_eq!(client.connector().side_channels, 2, "new discovery");
    assert_eq!(client.reconnects(), 1);
    client.shutdown().expect("shutdown");
}

#[test]
fn a_file_gone_from_the_server_is_lost_not_reopened_elsewhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("doomed"), pattern(1 << 20, 1)).expect("seed");
    std::fs::write(dir.path().join("other"), pattern(1 << 20, 2)).expect("seed");
    let mut client = connect(dir.path());
    let doomed = client.open("doomed", OpenFlags::READ).expect("open");
    let other = client.open("other", OpenFlags::READ).expect("open");
    std::fs::remove_file(dir.path().join("doomed")).expect("unlink");
    client.connector().fuse.store(12, Ordering::SeqCst);
    let mut back = vec![0u8; 1 << 20];
    match client.read_at(doomed, 0, &mut back) {
        Err(ResilientError::FileLost {
            status: Some(Status::NotFound),
        }) => {}
        other => panic!("expected the file lost, got {other:?}"),
    }
    // The other file was re-opened and still works.
    assert_eq!(client.read_at(other, 0, &mut back).expect("read"), 1 << 20);
    assert!(back == pattern(1 << 20, 2));
    client.shutdown().expect("shutdown");
}

/// Issue #16: an upload is discarded by the server with its connection, so
/// a reconnection must not reopen it in place, where the bytes written
/// next would land in the old file among its old bytes. It is reported
/// lost; the old file is untouched; a new upload works.
#[test]
fn an_upload_cut_by_a_reconnection_is_lost_not_mixed_into_the_old_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let old = pattern(1 << 20, 4);
    std::fs::write(dir.path().join("f"), &old).expect("seed");
    let mut client = connect(dir.path());
    let upload = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE;
    let file = client.open("f", upload).expect("open");
    let data = pattern(1 << 20, 5);
    client.connector().fuse.store(12, Ordering::SeqCst);
    match client.write_at(file, 0, &data) {
        Err(ResilientError::WriteInDoubt { .. }) => {}
        other => panic!("expected the write in doubt, got {other:?}"),
    }
    assert_eq!(client.reconnects(), 1);
    match client.write_at(file, 0, &data) {
        Err(ResilientError::FileLost {
            status: Some(Status::Closed),
        }) => {}
        other => panic!("expected the upload lost, got {other:?}"),
    }
    assert!(std::fs::read(dir.path().join("f")).expect("on disk") == old);
    let again = client.open("f", upload).expect("a new upload");
    client.write_at(again, 0, &data).expect("write");
    client.close(again).expect("close commits");
    assert!(std::fs::read(dir.path().join("f")).expect("on disk") == data);
    client.shutdown().expect("shutdown");
}
