//! The tokio front ends over libfabric `tcp` on 127.0.0.1: the async server
//! runner and the async client, whose remote file is driven through
//! tokio's `AsyncRead`, `AsyncWrite` and `AsyncSeek`.

use rdio::client::{ClientOptions, CompletionMode};
use rdio::files::Root;
use rdio::net::async_client::AsyncClient;
use rdio::net::async_server::AsyncNetServer;
use rdio::net::fabric::{FabricConnector, FabricListener};
use rdio::net::{NetError, NetEvent};
use rdio::server::ServerOptions;
use rdio_core::wire::{OpenFlags, ProviderName, Status};
use std::io::SeekFrom;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::oneshot;

mod support;
use support::access::TestAccess;
use support::random_bytes;

const PIPE_TIMEOUT: Duration = Duration::from_secs(5);

fn localhost() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn tcp() -> ProviderName {
    ProviderName::new("ofi:tcp").expect("name")
}

/// An async server on the test's runtime; stop it with the sender.
async fn serve(
    root: &std::path::Path,
    log: Arc<Mutex<Vec<String>>>,
) -> (SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    serve_with(root, log, ServerOptions::new(tcp(), b"")).await
}

/// [`serve`] with `options`.
async fn serve_with(
    root: &std::path::Path,
    log: Arc<Mutex<Vec<String>>>,
    options: ServerOptions,
) -> (SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let listener = FabricListener::bind(localhost(), "tcp").expect("fabric listener");
    let server = AsyncNetServer::bind(
        Root::new(root).expect("root"),
        localhost(),
        listener,
        options,
        TestAccess::shared().server(),
        Arc::new(move |event: &NetEvent<'_>| log.lock().expect("log").push(event.to_string())),
    )
    .await
    .expect("bind");
    let addr = server.pipe_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    (addr, stop, running)
}

fn options(mode: CompletionMode) -> ClientOptions {
    let mut options = ClientOptions::new(tcp());
    // Small requests so one file takes several commands and prefetches.
    options.io_size = 64 * 1024;
    options.queue_depth = 4;
    options.mode = mode;
    options
}

async fn connect(addr: SocketAddr, mode: CompletionMode) -> AsyncClient {
    let connector = FabricConnector::new(Some("tcp")).expect("tcp");
    AsyncClient::connect(
        addr,
        options(mode),
        PIPE_TIMEOUT,
        connector,
        TestAccess::shared().client(),
    )
    .await
    .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_file_is_tokio_read_write_and_seek() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(Mutex::new(Vec::new()));
    let (addr, stop, running) = serve(dir.path(), Arc::clone(&log)).await;
    for (mode, seed) in [(CompletionMode::Interrupt, 3), (CompletionMode::Polling, 4)] {
        let client = connect(addr, mode).await;
        assert_eq!(client.provider(), "ofi:tcp");
        let data = random_bytes((1 << 20) + 1, seed);
        let name = format!("async-{seed}");
        // In place: the bytes are checked on disk before the close (an
        // upload would take its name only at the close).
        let flags = OpenFlags::READ
            | OpenFlags::WRITE
            | OpenFlags::CREATE
            | OpenFlags::TRUNCATE
            | OpenFlags::IN_PLACE;
        let mut file = client.open(&name, flags).await.expect("create");

        // AsyncWrite: tokio::io::copy in its own small pieces, then flush.
        let copied = tokio::io::copy(&mut &data[..], &mut file)
            .await
            .expect("copy");
        assert_eq!(copied, data.len() as u64);
        file.flush().await.expect("flush");
        assert_eq!(
            std::fs::read(dir.path().join(&name)).expect("on disk"),
            data,
            "{mode:?}"
        );

        // AsyncSeek + AsyncRead: the whole file, then its tail, then a
        // window in the middle.
        assert_eq!(file.seek(SeekFrom::Start(0)).await.expect("seek"), 0);
        let mut back = Vec::new();
        file.read_to_end(&mut back).await.expect("read_to_end");
        assert_eq!(back, data, "{mode:?}");
        let tail_at = file.seek(SeekFrom::End(-10)).await.expect("seek end");
        assert_eq!(tail_at, data.len() as u64 - 10);
        let mut tail = Vec::new();
        file.read_to_end(&mut tail).await.expect("tail");
        assert_eq!(tail, &data[data.len() - 10..]);
        file.seek(SeekFrom::Start(70_000)).await.expect("seek");
        let mut window = [0u8; 1000];
        file.read_exact(&mut window).await.expect("window");
        assert_eq!(&window[..], &data[70_000..71_000]);
        assert!(file.seek(SeekFrom::Current(-80_000)).await.is_err());

        // Overwrite through the cursor, read back through positioned calls.
        file.seek(SeekFrom::Start(10)).await.expect("seek");
        file.write_all(b"rdio").await.expect("write");
        file.flush().await.expect("flush");
        assert_eq!(
            file.read_at(8, 8).await.expect("read_at"),
            [&data[8..10], b"rdio", &data[14..16]].concat()
        );

        // Vectored (claim 15) through the async client.
        let written = file
            .write_vectored_at(vec![(0, b"head".to_vec()), (500_000, b"middle".to_vec())])
            .await
            .expect("writev");
        assert_eq!(written, 10);
        let segments = file
            .read_vectored_at(&[(0, 4), (500_000, 6), (data.len() as u64 - 3, 3)])
            .await
            .expect("readv");
        assert_eq!(
            segments,
            [
                b"head".to_vec(),
                b"middle".to_vec(),
                data[data.len() - 3..].to_vec()
            ]
        );
        file.close().await.expect("close");
        client.shutdown().await.expect("shutdown");
    }
    let _ = stop.send(());
    running.await.expect("server task");
    let log = log.lock().expect("log");
    assert_eq!(
        log.iter().filter(|l| l.contains("(ofi:tcp) ended")).count(),
        2,
        "{log:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_errors_are_typed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (addr, stop, running) = serve(dir.path(), Arc::new(Mutex::new(Vec::new()))).await;
    let client = connect(addr, CompletionMode::Interrupt).await;
    let missing = client
        .open("missing", OpenFlags::READ)
        .await
        .expect_err("missing");
    assert!(
        matches!(&missing, NetError::Client(error) if error.status() == Some(Status::NotFound)),
        "{missing}"
    );
    // The server stops: the connection ends, later calls fail cleanly.
    let file = client
        .open("f", OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE)
        .await
        .expect("create");
    let _ = stop.send(());
    running.await.expect("server task");
    let error = file
        .write_at(0, b"late".to_vec())
        .await
        .expect_err("server gone");
    let text = error.to_string();
    assert!(
        text.contains("connection ended") || text.contains("connection lost"),
        "{text}"
    );
    let io_error = std::io::Error::from(error);
    assert_eq!(io_error.kind(), std::io::ErrorKind::ConnectionAborted);
}

/// `--idle-timeout` on the tokio server: a client with no open file and no
/// request is ended on both channels (its side channel with
/// `Refused{IdleTimeout}`), and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_async_server_ends_idle_clients() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut server_options = ServerOptions::new(tcp(), b"");
    server_options.idle_timeout = Some(Duration::from_secs(1));
    let (addr, stop, running) = serve_with(dir.path(), Arc::clone(&log), server_options).await;
    let error = tokio::task::spawn_blocking(move || {
        let mut client = rdio::net::connect(
            addr,
            options(CompletionMode::Interrupt),
            PIPE_TIMEOUT,
            &FabricConnector::new(Some("tcp")).expect("tcp"),
            &TestAccess::shared().client(),
        )
        .expect("connect");
        let flags = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
        let file = client.open("busy-then-idle", flags).expect("open");
        client.write_at(&file, 0, b"data").expect("write");
        client.close(file).expect("close");
        std::thread::sleep(Duration::from_millis(2500));
        client
            .open("too-late", flags)
            .expect_err("open after the idle timeout")
    })
    .await
    .expect("client thread");
    assert!(
        matches!(error, rdio::client::ClientError::IdleTimeout { .. }),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .starts_with("closed by the server: idle for "),
        "{error}"
    );
    let lines = log.lock().expect("log").join("\n");
    assert!(
        lines.contains("failed: refused (closed by the server: idle): idle for"),
        "{lines}"
    );
    assert!(
        lines.contains("peer terminated the connection: closed by the server: idle"),
        "{lines}"
    );
    let _ = stop.send(());
    running.await.expect("server task");
}
