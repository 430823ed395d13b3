//! Real connections over an RDMA device: a listener and a connector in two
//! threads of this process, talking through the HCA (or rxe/siw).
//!
//! Ignored by default. Run on a host with a device, e.g. soft-RoCE on eth0
//! with IP 192.0.2.10 (see docs/VERBS.md):
//!
//! ```text
//! RDIO_VERBS_ADDR=192.0.2.10:0 cargo test -p rdio-verbs --features verbs -- --ignored
//! ```
//!
//! Port 0 lets the listener pick a free port.
#![cfg(feature = "verbs")]

use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use rdio_transport::{
    Access, Completion, CompletionKind, RemoteBuf, Slice, Transport, TransportError, WcError,
};
use rdio_verbs::{VerbsConfig, VerbsListener, VerbsTransport};

/// The address from `RDIO_VERBS_ADDR`.
fn configured_addr() -> SocketAddr {
    let text =
        std::env::var("RDIO_VERBS_ADDR").expect("set RDIO_VERBS_ADDR=IP:PORT of an RDMA netdev");
    text.parse().expect("RDIO_VERBS_ADDR is IP:PORT")
}

/// Run `server` on an accepted connection in a thread and `client` on a
/// connecting one here.
fn with_pair(
    server: impl FnOnce(VerbsTransport) + Send + 'static,
    client: impl FnOnce(VerbsTransport),
) {
    let config = VerbsConfig::default();
    let listener = VerbsListener::bind(configured_addr(), &config).expect("bind");
    let addr = listener.local_addr().expect("bound address");
    let (accepted_tx, accepted_rx) = mpsc::channel();
    let handle = thread::spawn(move || {
        let transport = listener
            .accept(Some(Duration::from_secs(10)))
            .expect("accept");
        accepted_tx.send(()).expect("report accept");
        server(transport);
    });
    let transport = VerbsTransport::connect(addr, &config).expect("connect");
    client(transport);
    accepted_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("server accepted");
    handle.join().expect("server thread");
}

/// Wait for exactly one completion, using interrupt mode.
fn next_completion(transport: &mut VerbsTransport) -> Completion {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut out = [Completion {
        wr_id: 0,
        kind: CompletionKind::Send,
        status: Ok(()),
    }];
    loop {
        if transport.poll_completions(&mut out).expect("poll") == 1 {
            return out[0];
        }
        assert!(Instant::now() < deadline, "no completion within 10 s");
        transport
            .wait(Some(Duration::from_millis(200)))
            .expect("wait");
    }
}

fn encode(remote: RemoteBuf) -> [u8; 16] {
    let mut bytes = [0; 16];
    bytes[..8].copy_from_slice(&remote.addr.to_le_bytes());
    bytes[8..12].copy_from_slice(&remote.key.to_le_bytes());
    bytes[12..].copy_from_slice(&remote.len.to_le_bytes());
    bytes
}

fn decode(bytes: &[u8]) -> RemoteBuf {
    RemoteBuf {
        addr: u64::from_le_bytes(bytes[..8].try_into().unwrap()),
        key: u32::from_le_bytes(bytes[8..12].try_into().unwrap()),
        len: u32::from_le_bytes(bytes[12..16].try_into().unwrap()),
    }
}

const PAYLOAD: &[u8] = b"RDMA-written by the client";
const NOTIFY: u32 = 0xfeed_0001;

#[test]
#[ignore = "needs an RDMA device: set RDIO_VERBS_ADDR (see docs/VERBS.md)"]
fn send_recv_write_and_write_with_immediate() {
    with_pair(
        |mut server| {
            assert!(
                server.provider().starts_with("verbs:"),
                "{}",
                server.provider()
            );
            let inbox = server.register(64, Access::LOCAL_WRITE).unwrap();
            let target = server.register(4096, Access::REMOTE_WRITE).unwrap();
            let outbox = server.register(16, Access::empty()).unwrap();
            server.post_recv(1, Slice::whole(inbox, 64)).unwrap();

            // Hand the client a window of `target`.
            let window = server.remote_buf(target, 100, 200).unwrap();
            server
                .region_mut(outbox)
                .unwrap()
                .copy_from_slice(&encode(window));
            server
                .post_send(2, &[Slice::whole(outbox, 16)], None)
                .unwrap();
            assert_eq!(
                server.region_mut(outbox).unwrap_err(),
                TransportError::Busy(outbox)
            );
            assert_eq!(server.deregister(outbox), Err(TransportError::Busy(outbox)));

            // Receive posted for the write-with-immediate, before the client
            // can learn the window (it needs our send first).
            server
                .post_recv(
                    3,
                    Slice {
                        region: inbox,
                        offset: 0,
                        len: 0,
                    },
                )
                .unwrap();

            let mut seen = Vec::new();
            while seen.len() < 3 {
                seen.push(next_completion(&mut server));
            }
            let by_id = |id| {
                seen.iter()
                    .find(|c| c.wr_id == id)
                    .copied()
                    .expect("completion")
            };
            assert_eq!(
                by_id(2),
                Completion {
                    wr_id: 2,
                    kind: CompletionKind::Send,
                    status: Ok(())
                }
            );
            assert_eq!(by_id(1).kind, CompletionKind::Recv { len: 5 });
            assert_eq!(&server.region(inbox).unwrap()[..5], b"hello");
            assert_eq!(
                by_id(3),
                Completion {
                    wr_id: 3,
                    kind: CompletionKind::RecvImm { imm: NOTIFY },
                    status: Ok(())
                }
            );
            // The write landed before its immediate was reported (RC order).
            let bytes = server.region(target).unwrap();
            assert_eq!(&bytes[100..100 + PAYLOAD.len()], PAYLOAD);
            assert!(bytes[..100].iter().all(|&b| b == 0));
            // Drained: the send buffer is free again.
            server.region_mut(outbox).unwrap();
            server.deregister(outbox).unwrap();
        },
        |mut client| {
            let inbox = client.register(16, Access::LOCAL_WRITE).unwrap();
            let outbox = client.register(4096, Access::empty()).unwrap();
            client.post_recv(10, Slice::whole(inbox, 16)).unwrap();
            client.region_mut(outbox).unwrap()[..5].copy_from_slice(b"hello");
            client
                .post_send(11, &[Slice::whole(outbox, 5)], None)
                .unwrap();

            let mut window = None;
            let mut sent = false;
            while window.is_none() || !sent {
                let done = next_completion(&mut client);
                assert_eq!(done.status, Ok(()), "{done:?}");
                match done.wr_id {
                    10 => window = Some(decode(client.region(inbox).unwrap())),
                    11 => sent = true,
                    other => panic!("unexpected completion {other}"),
                }
            }
            let window = window.unwrap();
            assert_eq!(window.len, 200);

            // A large (not inline) write, then a write-with-immediate of
            // nothing but the notification.
            let data = client.register(4096, Access::empty()).unwrap();
            client.region_mut(data).unwrap()[..PAYLOAD.len()].copy_from_slice(PAYLOAD);
            client
                .post_write(12, &[Slice::whole(data, PAYLOAD.len())], window, None)
                .unwrap();
            client.post_write(13, &[], window, Some(NOTIFY)).unwrap();
            assert_eq!(
                next_completion(&mut client),
                Completion {
                    wr_id: 12,
                    kind: CompletionKind::Write,
                    status: Ok(())
                }
            );
            assert_eq!(
                next_completion(&mut client),
                Completion {
                    wr_id: 13,
                    kind: CompletionKind::Write,
                    status: Ok(())
                }
            );

            // Larger than the window: refused before it reaches the wire.
            let too_long = [Slice::whole(data, 201)];
            assert_eq!(
                client.post_write(14, &too_long, window, None),
                Err(TransportError::OutOfBounds)
            );
        },
    );
}

#[test]
#[ignore = "needs an RDMA device: set RDIO_VERBS_ADDR (see docs/VERBS.md)"]
fn bad_remote_key_fails_the_connection() {
    with_pair(
        |mut server| {
            // Keep the connection up until the client is done.
            let inbox = server.register(8, Access::LOCAL_WRITE).unwrap();
            server.post_recv(1, Slice::whole(inbox, 8)).unwrap();
            // Flushed once the client gives up on the failed connection.
            let done = next_completion(&mut server);
            assert_eq!(
                (done.wr_id, done.kind),
                (1, CompletionKind::Recv { len: 0 })
            );
            assert!(done.status.is_err(), "{done:?}");
        },
        |mut client| {
            let data = client.register(8, Access::empty()).unwrap();
            let bogus = RemoteBuf {
                addr: 0x1000,
                key: 0xdead_beef,
                len: 8,
            };
            client
                .post_write(1, &[Slice::whole(data, 8)], bogus, None)
                .unwrap();
            let done = next_completion(&mut client);
            assert_eq!(done.status, Err(WcError::RemoteAccess));
            // The QP is in the error state now.
            assert_eq!(
                client.post_send(2, &[], None),
                Err(TransportError::Disconnected)
            );
            client.disconnect();
        },
    );
}

#[test]
#[ignore = "needs an RDMA device: set RDIO_VERBS_ADDR (see docs/VERBS.md)"]
fn peer_disconnect_flushes_posted_receives() {
    let (closed_tx, closed_rx) = mpsc::channel::<()>();
    with_pair(
        move |mut server| {
            server.disconnect();
            closed_tx.send(()).unwrap();
        },
        |mut client| {
            let inbox = client.register(8, Access::LOCAL_WRITE).unwrap();
            client.post_recv(7, Slice::whole(inbox, 8)).unwrap();
            closed_rx.recv_timeout(Duration::from_secs(10)).unwrap();
            let done = next_completion(&mut client);
            assert_eq!(
                done,
                Completion {
                    wr_id: 7,
                    kind: CompletionKind::Recv { len: 0 },
                    status: Err(WcError::Flushed)
                }
            );
            client.region_mut(inbox).unwrap();
            assert_eq!(
                client.post_recv(8, Slice::whole(inbox, 8)),
                Err(TransportError::Disconnected)
            );
            assert_eq!(
                client.wait(Some(Duration::from_millis(10))),
                Err(TransportError::Disconnected)
            );
        },
    );
}
