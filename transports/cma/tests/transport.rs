//! The trait's contract on real cma connections inside one process (a
//! process may `process_vm_writev` itself), plus a hand-written hostile
//! peer speaking raw frames. `two_process.rs` does the same across
//! processes.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixStream};
use std::thread;
use std::time::{Duration, Instant};

use rdio_cma::{CmaError, CmaTransport, Listener, connect, socket_name};
use rdio_transport::{
    Access, Completion, CompletionKind, RegionId, RemoteBuf, Slice, Transport, TransportError,
    WcError,
};

mod common;

use common::{NONE, SOON, localhost, pair};

/// Poll both sides until `side` (0 = a, 1 = b) has a completion.
fn next(a: &mut CmaTransport, b: &mut CmaTransport, side: usize) -> Completion {
    let start = Instant::now();
    loop {
        assert!(start.elapsed() < SOON, "no completion within {SOON:?}");
        let mut out = [NONE];
        let (mine, other) = if side == 0 {
            (&mut *a, &mut *b)
        } else {
            (&mut *b, &mut *a)
        };
        let _ = other.poll_completions(&mut []);
        match mine.poll_completions(&mut out) {
            Ok(1) => return out[0],
            Ok(_) => {}
            Err(err) => panic!("poll: {err} ({:?})", mine.last_error()),
        }
    }
}

/// Drain one side until it reports `Disconnected`, returning what it drained.
fn until_lost(t: &mut CmaTransport) -> Vec<Completion> {
    let start = Instant::now();
    let mut drained = Vec::new();
    loop {
        assert!(start.elapsed() < SOON, "the loss went unnoticed");
        let mut out = [NONE; 8];
        match t.poll_completions(&mut out) {
            Ok(n) => drained.extend_from_slice(&out[..n]),
            Err(TransportError::Disconnected) => return drained,
            Err(err) => panic!("{err}"),
        }
        t.wait(Some(Duration::from_millis(20))).expect("wait");
    }
}

#[test]
fn sends_fill_receives_in_order_and_wait_wakes_for_them() {
    let (mut client, mut server) = pair();
    assert_eq!(client.provider(), "cma");
    assert_eq!(client.peer_pid(), std::process::id() as i32);
    let rx = server.register(1 << 20, Access::LOCAL_WRITE).unwrap();
    let tx = client.register(1 << 20, Access::empty()).unwrap();
    for (i, byte) in client.region_mut(tx).unwrap().iter_mut().enumerate() {
        *byte = (i % 253) as u8;
    }
    // Small, large (read straight into the receive) and empty messages,
    // the first two gathered from two pieces.
    server
        .post_recv(
            1,
            Slice {
                region: rx,
                offset: 0,
                len: 100,
            },
        )
        .unwrap();
    server
        .post_recv(
            2,
            Slice {
                region: rx,
                offset: 100,
                len: (1 << 20) - 100,
            },
        )
        .unwrap();
    server
        .post_recv(
            3,
            Slice {
                region: rx,
                offset: 0,
                len: 0,
            },
        )
        .unwrap();
    let split = |offset: usize, len: usize| {
        [
            Slice {
                region: tx,
                offset,
                len: len / 2,
            },
            Slice {
                region: tx,
                offset: offset + len / 2,
                len: len - len / 2,
            },
        ]
    };
    client.post_send(10, &split(0, 100), None).unwrap();
    client.post_send(11, &split(100, 900_000), None).unwrap();
    client.post_send(12, &[], None).unwrap();
    assert_eq!(
        client.region_mut(tx).err(),
        Some(TransportError::Busy(tx)),
        "a posted send's buffer is busy"
    );
    let mut sent = Vec::new();
    let mut received = Vec::new();
    let start = Instant::now();
    while sent.len() < 3 || received.len() < 3 {
        assert!(start.elapsed() < SOON);
        let mut out = [NONE; 4];
        let n = client.poll_completions(&mut out).unwrap();
        sent.extend_from_slice(&out[..n]);
        server.wait(Some(Duration::from_millis(10))).unwrap();
        let n = server.poll_completions(&mut out).unwrap();
        received.extend_from_slice(&out[..n]);
    }
    assert!(
        sent.iter()
            .all(|c| c.kind == CompletionKind::Send && c.status.is_ok())
    );
    let lens: Vec<_> = received.iter().map(|c| (c.wr_id, c.kind)).collect();
    assert_eq!(
        lens,
        [
            (1, CompletionKind::Recv { len: 100 }),
            (2, CompletionKind::Recv { len: 900_000 }),
            (3, CompletionKind::Recv { len: 0 }),
        ]
    );
    let got = server.region(rx).unwrap();
    let want = client.region(tx).unwrap();
    assert_eq!(&got[..900_100], &want[..900_100]);
    assert!(client.region_mut(tx).is_ok(), "free again once drained");
}

#[test]
fn a_write_is_visible_before_the_send_posted_after_it_and_write_imm_consumes_a_receive() {
    let (mut client, mut server) = pair();
    let window = client
        .register(4 << 20, Access::LOCAL_WRITE | Access::REMOTE_WRITE)
        .unwrap();
    let inbox = client.register(64, Access::LOCAL_WRITE).unwrap();
    let dst = client.remote_buf(window, 4096, 3 << 20).unwrap();
    assert_eq!(dst.len, 3 << 20);
    assert_eq!(
        dst.addr,
        client.region(window).unwrap().as_ptr() as u64 + 4096,
        "the real virtual address"
    );
    let src = server.register(3 << 20, Access::empty()).unwrap();
    let msg = server.register(8, Access::empty()).unwrap();
    // The advertisement travels ahead of this first client message.
    client.post_recv(1, Slice::whole(inbox, 64)).unwrap();
    client.post_recv(2, Slice::whole(inbox, 64)).unwrap();
    server.poll_completions(&mut []).unwrap();
    client.poll_completions(&mut []).unwrap();
    server.poll_completions(&mut []).unwrap();

    for round in 0..3u8 {
        server.region_mut(src).unwrap().fill(round + 1);
        server.region_mut(msg).unwrap().fill(round + 100);
        server
            .post_write(20, &[Slice::whole(src, 3 << 20)], dst, None)
            .unwrap();
        server.post_send(21, &[Slice::whole(msg, 8)], None).unwrap();
        let done = next(&mut server, &mut client, 0);
        assert_eq!(
            (done.wr_id, done.kind, done.status),
            (20, CompletionKind::Write, Ok(()))
        );
        assert_eq!(next(&mut server, &mut client, 0).wr_id, 21);
        // The receive's completion is the first thing the client sees; the
        // write's data is already there when it does.
        let recv = next(&mut client, &mut server, 0);
        assert_eq!(recv.kind, CompletionKind::Recv { len: 8 });
        let bytes = client.region(window).unwrap();
        assert!(
            bytes[4096..4096 + (3 << 20)]
                .iter()
                .all(|&b| b == round + 1),
            "round {round}"
        );
        assert_eq!(bytes[4095], 0, "nothing before the window's range");
        client.post_recv(1, Slice::whole(inbox, 64)).unwrap();
    }

    // Write-with-immediate: the data, then a receive consumed as RecvImm.
    server.region_mut(src).unwrap()[..4].copy_from_slice(b"imm!");
    server
        .post_write(
            30,
            &[Slice {
                region: src,
                offset: 0,
                len: 4,
            }],
            dst,
            Some(0xc0ffee),
        )
        .unwrap();
    let recv = next(&mut client, &mut server, 0);
    // Each round re-posted receive 1 behind the oldest: 1 is oldest now.
    assert_eq!(
        (recv.wr_id, recv.kind),
        (1, CompletionKind::RecvImm { imm: 0xc0ffee })
    );
    assert_eq!(&client.region(window).unwrap()[4096..4100], b"imm!");
    assert_eq!(next(&mut server, &mut client, 0).wr_id, 30);
}

#[test]
fn writes_outside_the_advertised_windows_fail_with_remote_access_and_break_the_connection() {
    let (mut client, mut server) = pair();
    let window = client
        .register(4096, Access::LOCAL_WRITE | Access::REMOTE_WRITE)
        .unwrap();
    let private = client.register(4096, Access::LOCAL_WRITE).unwrap();
    client.poll_completions(&mut []).unwrap();
    server.poll_completions(&mut []).unwrap();
    let src = server.register(8192, Access::empty()).unwrap();
    let good = client.remote_buf(window, 0, 4096).unwrap();
    // Longer than the descriptor: refused at post time.
    assert_eq!(
        server.post_write(1, &[Slice::whole(src, 8192)], good, None),
        Err(TransportError::OutOfBounds)
    );
    // A region the client never made remotely writable, named with a
    // forged descriptor: the real address, a made-up key.
    let forged = RemoteBuf {
        addr: client.region(private).unwrap().as_ptr() as u64,
        key: good.key ^ 0x5555,
        len: 4096,
    };
    server
        .post_write(2, &[Slice::whole(src, 16)], forged, None)
        .unwrap();
    server
        .post_write(3, &[Slice::whole(src, 16)], good, None)
        .unwrap();
    let drained = until_lost(&mut server);
    assert_eq!(
        drained,
        [
            Completion {
                wr_id: 2,
                kind: CompletionKind::Write,
                status: Err(WcError::RemoteAccess)
            },
            Completion {
                wr_id: 3,
                kind: CompletionKind::Write,
                status: Err(WcError::Flushed)
            },
        ]
    );
    assert!(
        server
            .last_error()
            .unwrap()
            .contains("outside every window"),
        "{:?}",
        server.last_error()
    );
    assert!(
        client.region(private).unwrap().iter().all(|&b| b == 0),
        "nothing written"
    );
    until_lost(&mut client);
    assert_eq!(
        server.post_send(4, &[], None),
        Err(TransportError::Disconnected)
    );
}

#[test]
fn a_deregistered_window_is_revoked_before_its_memory_goes() {
    let (mut client, mut server) = pair();
    let window = client
        .register(4096, Access::LOCAL_WRITE | Access::REMOTE_WRITE)
        .unwrap();
    let dst = client.remote_buf(window, 0, 4096).unwrap();
    let src = server.register(16, Access::empty()).unwrap();
    client.poll_completions(&mut []).unwrap();
    server.poll_completions(&mut []).unwrap();
    server
        .post_write(1, &[Slice::whole(src, 16)], dst, None)
        .unwrap();
    assert_eq!(next(&mut server, &mut client, 0).status, Ok(()));
    client.deregister(window).unwrap();
    // Revocation reaches the server, its answer the client.
    for _ in 0..3 {
        client.poll_completions(&mut []).unwrap();
        server.poll_completions(&mut []).unwrap();
    }
    server
        .post_write(2, &[Slice::whole(src, 16)], dst, None)
        .unwrap();
    let failed = next(&mut server, &mut client, 0);
    assert_eq!(failed.status, Err(WcError::RemoteAccess));
}

#[test]
fn receives_into_read_only_or_lent_memory_fail_locally_and_lent_memory_is_a_gather_source() {
    let (mut client, mut server) = pair();
    let plain = server.register(16, Access::empty()).unwrap();
    let lent = server
        .register_external(b"page cache bytes".to_vec())
        .unwrap();
    assert_eq!(server.region(lent).unwrap(), b"page cache bytes");
    assert_eq!(
        server.region_mut(lent).err(),
        Some(TransportError::ReadOnly(lent))
    );
    server.post_recv(1, Slice::whole(plain, 16)).unwrap();
    server.post_recv(2, Slice::whole(lent, 16)).unwrap();
    for wr_id in [1, 2] {
        assert_eq!(
            next(&mut server, &mut client, 0),
            Completion {
                wr_id,
                kind: CompletionKind::Recv { len: 0 },
                status: Err(WcError::LocalProtection)
            }
        );
    }
    // The zero-copy path: an RDMA write straight from lent memory.
    let window = client
        .register(16, Access::LOCAL_WRITE | Access::REMOTE_WRITE)
        .unwrap();
    let dst = client.remote_buf(window, 0, 16).unwrap();
    client.poll_completions(&mut []).unwrap();
    server.poll_completions(&mut []).unwrap();
    server
        .post_write(3, &[Slice::whole(lent, 16)], dst, None)
        .unwrap();
    assert_eq!(next(&mut server, &mut client, 0).status, Ok(()));
    assert_eq!(client.region(window).unwrap(), b"page cache bytes");
    assert!(server.deregister(lent).is_ok());
}

#[test]
fn an_oversized_send_fails_the_receive_with_local_length_and_ends_the_connection() {
    let (mut client, mut server) = pair();
    let rx = server.register(64, Access::LOCAL_WRITE).unwrap();
    let tx = client.register(65, Access::empty()).unwrap();
    server.post_recv(1, Slice::whole(rx, 64)).unwrap();
    server.post_recv(2, Slice::whole(rx, 64)).unwrap();
    client.post_send(10, &[Slice::whole(tx, 65)], None).unwrap();
    client.poll_completions(&mut []).unwrap();
    let drained = until_lost(&mut server);
    assert_eq!(
        drained,
        [
            Completion {
                wr_id: 1,
                kind: CompletionKind::Recv { len: 0 },
                status: Err(WcError::LocalLength)
            },
            Completion {
                wr_id: 2,
                kind: CompletionKind::Recv { len: 0 },
                status: Err(WcError::Flushed)
            },
        ]
    );
    assert!(
        server.last_error().unwrap().contains("65 bytes"),
        "{:?}",
        server.last_error()
    );
    // The sender hears why: its next post is refused, its send had gone.
    let drained = until_lost(&mut client);
    assert_eq!(drained.first().map(|c| c.wr_id), Some(10));
    assert!(
        client.last_error().unwrap().contains("remote operation"),
        "{:?}",
        client.last_error()
    );
    assert_eq!(
        client.post_send(11, &[Slice::whole(tx, 1)], None),
        Err(TransportError::Disconnected)
    );
}

#[test]
fn a_send_without_a_posted_receive_is_receiver_not_ready_for_the_sender() {
    let (mut client, mut server) = pair();
    let tx = client.register(8, Access::empty()).unwrap();
    let write_src = client.register(8, Access::empty()).unwrap();
    client.post_send(1, &[Slice::whole(tx, 8)], None).unwrap();
    client.poll_completions(&mut []).unwrap();
    assert!(until_lost(&mut server).is_empty());
    assert!(server.last_error().unwrap().contains("no receive posted"));
    // Work the client posted before it heard carries the reason.
    let window = RemoteBuf::default();
    let _ = client.post_write(2, &[Slice::whole(write_src, 0)], window, None);
    let drained = until_lost(&mut client);
    assert!(
        drained
            .iter()
            .any(|c| c.status == Err(WcError::ReceiverNotReady))
            || client.last_error().unwrap().contains("receiver not ready"),
        "{drained:?} {:?}",
        client.last_error()
    );
}

#[test]
fn disconnect_flushes_both_sides_and_a_dropped_peer_is_a_lost_connection() {
    let (mut client, mut server) = pair();
    let rx = server.register(8, Access::LOCAL_WRITE).unwrap();
    let crx = client.register(8, Access::LOCAL_WRITE).unwrap();
    server.post_recv(1, Slice::whole(rx, 8)).unwrap();
    client.post_recv(2, Slice::whole(crx, 8)).unwrap();
    server.disconnect();
    assert_eq!(
        until_lost(&mut server),
        [Completion {
            wr_id: 1,
            kind: CompletionKind::Recv { len: 0 },
            status: Err(WcError::Flushed)
        }]
    );
    assert_eq!(
        until_lost(&mut client),
        [Completion {
            wr_id: 2,
            kind: CompletionKind::Recv { len: 0 },
            status: Err(WcError::Disconnected)
        }]
    );
    // And by drop, with the other side asleep in wait.
    let (mut client, server) = pair();
    let crx = client.register(8, Access::LOCAL_WRITE).unwrap();
    client.post_recv(3, Slice::whole(crx, 8)).unwrap();
    let dropper = thread::spawn(move || {
        thread::sleep(Duration::from_millis(50));
        drop(server);
    });
    let start = Instant::now();
    client.wait(None).unwrap();
    assert!(start.elapsed() < SOON);
    dropper.join().unwrap();
    assert_eq!(
        until_lost(&mut client)[0].status,
        Err(WcError::Disconnected)
    );
}

#[test]
fn wait_times_out_without_traffic() {
    let (mut client, _server) = pair();
    let start = Instant::now();
    client.wait(Some(Duration::from_millis(30))).unwrap();
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(30) && waited < SOON,
        "{waited:?}"
    );
}

#[test]
fn setup_errors_are_typed() {
    // Nobody listens there.
    let unused = SocketAddr::from((Ipv4Addr::new(127, 0, 0, 9), 1));
    match connect(unused, SOON) {
        Err(CmaError::Connect { error, .. }) => {
            assert_eq!(error.kind(), std::io::ErrorKind::ConnectionRefused);
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    // A second listener on a taken name.
    let first = Listener::bind(localhost()).unwrap();
    assert!(matches!(
        Listener::bind(first.local_addr()),
        Err(CmaError::Bind { .. })
    ));
    // Something that is not rdio-cma on the other end.
    let listener = Listener::bind(localhost()).unwrap();
    let name = socket_name(listener.local_addr());
    let stranger = thread::spawn(move || {
        let addr = UnixAddr::from_abstract_name(name.as_bytes()).unwrap();
        let mut stream = UnixStream::connect_addr(&addr).unwrap();
        stream.write_all(&[0xff; 48]).unwrap();
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink);
    });
    match listener.accept(SOON, SOON) {
        Err(CmaError::BadHello(_)) => {}
        other => panic!("{:?}", other.map(|_| ())),
    }
    stranger.join().unwrap();
    // No connection at all: accept returns nothing after its timeout.
    assert!(
        listener
            .accept(Duration::from_millis(10), SOON)
            .unwrap()
            .is_none()
    );
}

/// A peer that speaks the hello correctly and then sends what it likes:
/// `frames` right after the handshake.
fn hostile_peer(frames: Vec<u8>) -> (CmaTransport, thread::JoinHandle<Vec<u8>>) {
    let listener = Listener::bind(localhost()).unwrap();
    let name = socket_name(listener.local_addr());
    let peer = thread::spawn(move || {
        let addr = UnixAddr::from_abstract_name(name.as_bytes()).unwrap();
        let mut stream = UnixStream::connect_addr(&addr).unwrap();
        let probe: Box<[u8; 16]> = Box::new(*b"rdio-cma\x07\0\0\0\0\0\0\0");
        let mut hello = Vec::new();
        hello.extend_from_slice(&1u32.to_le_bytes()); // Hello
        hello.extend_from_slice(&32u32.to_le_bytes());
        hello.extend_from_slice(&[0; 8]);
        hello.extend_from_slice(b"rdio-cma");
        hello.extend_from_slice(&2u32.to_le_bytes()); // frame version 2
        hello.extend_from_slice(&[0; 4]);
        hello.extend_from_slice(&(probe.as_ptr() as u64).to_le_bytes());
        hello.extend_from_slice(&7u64.to_le_bytes());
        stream.write_all(&hello).unwrap();
        let mut theirs = [0u8; 48];
        stream.read_exact(&mut theirs).unwrap();
        // Give the other side time to read our probe before sending.
        thread::sleep(Duration::from_millis(50));
        let _ = stream.write_all(&frames);
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        drop(probe);
        rest
    });
    let transport = listener.accept(SOON, SOON).unwrap().expect("connection");
    (transport, peer)
}

fn header(kind: u32, len: u32, value: u32) -> Vec<u8> {
    [kind, len, value, 0]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect()
}

#[test]
fn a_hostile_peer_ends_the_connection_and_hears_why_but_cannot_crash_or_hang_us() {
    // A send by reference of 32 bytes from an address nothing is mapped at.
    let bogus_reference = [
        header(8, 16, 32),
        8u64.to_le_bytes().to_vec(),
        32u64.to_le_bytes().to_vec(),
    ]
    .concat();
    // More windows than anyone needs, each 16 bytes of address and length.
    let advertisement_flood: Vec<u8> = (0..4097u32)
        .flat_map(|key| {
            [
                header(4, 16, key),
                0x1000u64.to_le_bytes().to_vec(),
                16u64.to_le_bytes().to_vec(),
            ]
            .concat()
        })
        .collect();
    // A write carried whole (kind 10) to memory this side never lent.
    let carried = |addr: u64, key: u32, data: usize| {
        [
            header(10, 16 + data as u32, 0x5eed),
            addr.to_le_bytes().to_vec(),
            key.to_le_bytes().to_vec(),
            vec![0; 4 + data],
        ]
        .concat()
    };
    let cases: [(&str, Vec<u8>, WcError); 11] = [
        // Announces 4 GiB for a 64-byte receive.
        ("huge send", header(2, u32::MAX, 0), WcError::LocalLength),
        (
            "huge send by reference",
            header(8, 16, 65),
            WcError::LocalLength,
        ),
        ("bogus reference", bogus_reference, WcError::RemoteAccess),
        ("unknown kind", header(99, 0, 0), WcError::Flushed),
        ("second hello", header(1, 32, 0), WcError::Flushed),
        ("unasked acknowledgement", header(9, 0, 0), WcError::Flushed),
        (
            "revocation of a window never advertised",
            header(5, 0, 1234),
            WcError::Flushed,
        ),
        ("advertisement flood", advertisement_flood, WcError::Flushed),
        (
            "carried write to memory never lent",
            carried(0x1000, 77, 24),
            WcError::Flushed,
        ),
        (
            "carried write larger than a carried write may be",
            carried(0x1000, 77, rdio_cma::CARRIED_WRITE + 1),
            WcError::Flushed,
        ),
        (
            "carried write of nothing",
            carried(0x1000, 77, 0),
            WcError::Flushed,
        ),
    ];
    for (what, frames, expected) in cases {
        let (mut t, peer) = hostile_peer(frames);
        let rx = t.register(64, Access::LOCAL_WRITE).unwrap();
        t.post_recv(1, Slice::whole(rx, 64)).unwrap();
        let drained = until_lost(&mut t);
        assert_eq!(drained.len(), 1, "{what}: {drained:?}");
        assert_eq!(drained[0].status, Err(expected), "{what}");
        assert!(
            t.last_error().unwrap().starts_with("protocol error"),
            "{what}: {:?}",
            t.last_error()
        );
        let told = peer.join().unwrap();
        assert_eq!(told.len(), 16, "{what}: one error frame back");
        assert_eq!(&told[..4], &7u32.to_le_bytes(), "{what}: an Error frame");
    }
}

#[test]
fn a_large_send_goes_by_reference_and_completes_only_once_the_receiver_copied_it() {
    let (mut client, mut server) = pair();
    let len = 256 << 10;
    let rx = server.register(len, Access::LOCAL_WRITE).unwrap();
    let tx = client.register(len, Access::empty()).unwrap();
    client.region_mut(tx).unwrap().fill(0x5a);
    server.post_recv(1, Slice::whole(rx, len)).unwrap();
    client.post_send(2, &[Slice::whole(tx, len)], None).unwrap();
    // The reference is in the socket, but the server has not read it.
    let mut out = [NONE; 2];
    assert_eq!(client.poll_completions(&mut out).unwrap(), 0);
    assert_eq!(client.posted_references(tx), 1, "still lent to the peer");
    let recv = next(&mut server, &mut client, 0);
    assert_eq!(recv.kind, CompletionKind::Recv { len });
    assert!(server.region(rx).unwrap().iter().all(|&b| b == 0x5a));
    let sent = next(&mut client, &mut server, 0);
    assert_eq!(
        (sent.wr_id, sent.kind, sent.status),
        (2, CompletionKind::Send, Ok(()))
    );
    assert!(client.region_mut(tx).is_ok());
}

/// Drain `t` until it reported `count` completions, polling `peer` too.
fn collect(t: &mut CmaTransport, peer: &mut CmaTransport, count: usize) -> Vec<Completion> {
    let start = Instant::now();
    let mut drained = Vec::new();
    while drained.len() < count {
        assert!(start.elapsed() < SOON, "only {drained:?} within {SOON:?}");
        let _ = peer.poll_completions(&mut []);
        let mut out = [NONE; 16];
        let n = t.poll_completions(&mut out).expect("poll");
        drained.extend_from_slice(&out[..n]);
    }
    drained
}

/// A read's shape, batched: per request a data write into its slot, then
/// a write-with-immediate of its status block, all posted back to back
/// and handed on by one flush. Every immediate arrives in posting order,
/// and when it does, that request's data and status are in place; the
/// sender's completions come back in posting order too.
#[test]
fn a_batch_of_writes_and_writes_with_immediate_lands_in_order() {
    const REQUESTS: usize = 48;
    let (mut client, mut server) = pair();
    let data = client
        .register(REQUESTS * 4096, Access::LOCAL_WRITE | Access::REMOTE_WRITE)
        .unwrap();
    let status = client
        .register(REQUESTS * 16, Access::LOCAL_WRITE | Access::REMOTE_WRITE)
        .unwrap();
    let inbox = client.register(64, Access::LOCAL_WRITE).unwrap();
    for i in 0..REQUESTS {
        client.post_recv(i as u64, Slice::whole(inbox, 64)).unwrap();
    }
    client.flush().unwrap();
    let src = server.register(REQUESTS * 4096, Access::empty()).unwrap();
    let blocks = server.register(REQUESTS * 16, Access::empty()).unwrap();
    for (i, chunk) in server.region_mut(src).unwrap().chunks_mut(4096).enumerate() {
        chunk.fill(i as u8 + 1);
    }
    for (i, chunk) in server
        .region_mut(blocks)
        .unwrap()
        .chunks_mut(16)
        .enumerate()
    {
        chunk.fill(0x80 | i as u8);
    }
    server.poll_completions(&mut []).unwrap(); // the client's windows
    for i in 0..REQUESTS {
        let slot = |region, len| Slice {
            region,
            offset: i * len,
            len,
        };
        let data_dst = client.remote_buf(data, i * 4096, 4096).unwrap();
        let status_dst = client.remote_buf(status, i * 16, 16).unwrap();
        let id = 2 * i as u64;
        server
            .post_write(id, &[slot(src, 4096)], data_dst, None)
            .unwrap();
        server
            .post_write(id + 1, &[slot(blocks, 16)], status_dst, Some(i as u32))
            .unwrap();
    }
    server.flush().unwrap();
    let mut seen = 0;
    let start = Instant::now();
    while seen < REQUESTS {
        assert!(start.elapsed() < SOON, "{seen} of {REQUESTS} arrived");
        let mut out = [NONE; 8];
        let n = client.poll_completions(&mut out).unwrap();
        for completion in &out[..n] {
            assert_eq!(completion.wr_id, seen as u64, "receives in order");
            assert_eq!(
                completion.kind,
                CompletionKind::RecvImm { imm: seen as u32 },
                "immediates in posting order"
            );
            let bytes = client.region(data).unwrap();
            assert!(
                bytes[seen * 4096..(seen + 1) * 4096]
                    .iter()
                    .all(|&b| b == seen as u8 + 1),
                "request {seen}'s data is in place when its immediate arrives"
            );
            let block = &client.region(status).unwrap()[seen * 16..(seen + 1) * 16];
            assert!(block.iter().all(|&b| b == 0x80 | seen as u8));
            seen += 1;
        }
        server.poll_completions(&mut []).unwrap();
    }
    let done = collect(&mut server, &mut client, 2 * REQUESTS);
    let ids: Vec<u64> = done.iter().map(|c| c.wr_id).collect();
    assert_eq!(ids, (0..2 * REQUESTS as u64).collect::<Vec<_>>());
    assert!(
        done.iter()
            .all(|c| c.kind == CompletionKind::Write && c.status == Ok(()))
    );
}

/// One bad write in the middle of a batch: the writes and sends before it
/// complete and land, it fails with `RemoteAccess`, everything after it is
/// flushed and never lands.
#[test]
fn an_error_in_a_batch_reaches_the_work_request_it_belongs_to() {
    let (mut client, mut server) = pair();
    let window = client
        .register(4 * 4096, Access::LOCAL_WRITE | Access::REMOTE_WRITE)
        .unwrap();
    let private = client.register(4096, Access::LOCAL_WRITE).unwrap();
    let inbox = client.register(64, Access::LOCAL_WRITE).unwrap();
    client.post_recv(100, Slice::whole(inbox, 64)).unwrap();
    client.flush().unwrap();
    let src = server.register(4096, Access::empty()).unwrap();
    server.region_mut(src).unwrap().fill(7);
    server.poll_completions(&mut []).unwrap();
    let slot = |i: usize| client.remote_buf(window, i * 4096, 4096).unwrap();
    let forged = RemoteBuf {
        addr: client.region(private).unwrap().as_ptr() as u64,
        key: slot(0).key ^ 0x5555,
        len: 4096,
    };
    let page = [Slice::whole(src, 4096)];
    server.post_write(1, &page, slot(0), None).unwrap();
    server.post_write(2, &page, slot(1), Some(9)).unwrap();
    server.post_write(3, &page, forged, None).unwrap();
    server.post_write(4, &page, slot(2), None).unwrap();
    server.post_send(5, &[], None).unwrap();
    let drained = until_lost(&mut server);
    let statuses: Vec<_> = drained.iter().map(|c| (c.wr_id, c.status)).collect();
    assert_eq!(
        statuses,
        [
            (1, Ok(())),
            (2, Ok(())),
            (3, Err(WcError::RemoteAccess)),
            (4, Err(WcError::Flushed)),
            (5, Err(WcError::Flushed)),
        ]
    );
    let lost = until_lost(&mut client);
    assert_eq!(
        lost.first().map(|c| (c.wr_id, c.kind)),
        Some((100, CompletionKind::RecvImm { imm: 9 })),
        "the write-with-immediate before the bad write arrived: {lost:?}"
    );
    let bytes = client.region(window).unwrap();
    assert!(bytes[..2 * 4096].iter().all(|&b| b == 7), "1 and 2 landed");
    assert!(bytes[2 * 4096..].iter().all(|&b| b == 0), "4 never did");
    assert!(client.region(private).unwrap().iter().all(|&b| b == 0));
}

/// Posts wait for the next flush, poll or wait of their transport; a flush
/// with nothing posted, or after the connection ended, does nothing.
#[test]
fn posts_are_handed_on_by_flush_poll_or_wait_and_an_empty_flush_is_harmless() {
    let (mut client, mut server) = pair();
    for _ in 0..3 {
        client.flush().unwrap();
        server.flush().unwrap();
    }
    let inbox = client.register(64, Access::LOCAL_WRITE).unwrap();
    for id in 0..3 {
        client.post_recv(id, Slice::whole(inbox, 64)).unwrap();
    }
    // Held until the server flushes: the client sees nothing meanwhile.
    server
        .post_write(1, &[], RemoteBuf::default(), Some(1))
        .unwrap();
    let quiet = Instant::now();
    while quiet.elapsed() < Duration::from_millis(50) {
        let mut out = [NONE];
        assert_eq!(
            client.poll_completions(&mut out),
            Ok(0),
            "not yet handed on"
        );
    }
    server.flush().unwrap();
    let first = next(&mut client, &mut server, 0);
    assert_eq!(first.kind, CompletionKind::RecvImm { imm: 1 });
    // `poll_completions` hands on what was posted before it, without a flush.
    server
        .post_write(2, &[], RemoteBuf::default(), Some(2))
        .unwrap();
    server.poll_completions(&mut []).unwrap();
    let start = Instant::now();
    let second = loop {
        assert!(start.elapsed() < SOON);
        let mut out = [NONE];
        if client.poll_completions(&mut out).unwrap() == 1 {
            break out[0];
        }
    };
    assert_eq!(second.kind, CompletionKind::RecvImm { imm: 2 });
    // So does `wait`.
    server
        .post_write(3, &[], RemoteBuf::default(), Some(3))
        .unwrap();
    server.wait(Some(Duration::ZERO)).unwrap();
    let start = Instant::now();
    let third = loop {
        assert!(start.elapsed() < SOON);
        let mut out = [NONE];
        if client.poll_completions(&mut out).unwrap() == 1 {
            break out[0];
        }
    };
    assert_eq!(third.kind, CompletionKind::RecvImm { imm: 3 });
    server.flush().unwrap();
    drop(client);
    until_lost(&mut server);
    assert_eq!(server.flush(), Ok(()), "a flush after the end is harmless");
}

/// Inline sends and writes carry bytes copied at post time: the caller's
/// buffer may change right after and nothing is registered or held. They
/// follow the rules a gathered send or write does: posting order, a
/// receive consumed per send and per write-with-immediate, the peer's
/// windows checked, the limits of `Caps::max_inline`.
#[test]
fn inline_sends_and_writes_copy_at_post_time_and_keep_order() {
    let (mut client, mut server) = pair();
    assert_eq!(client.caps().max_inline, rdio_cma::INLINE);
    let window = client
        .register(4096, Access::LOCAL_WRITE | Access::REMOTE_WRITE)
        .unwrap();
    let inbox = client.register(4 * 256, Access::LOCAL_WRITE).unwrap();
    let dst = client.remote_buf(window, 100, 200).unwrap();
    let gathered = server.register(8, Access::empty()).unwrap();
    server
        .region_mut(gathered)
        .unwrap()
        .copy_from_slice(b"gathered");
    for i in 0..4u64 {
        client
            .post_recv(
                10 + i,
                Slice {
                    region: inbox,
                    offset: i as usize * 256,
                    len: 256,
                },
            )
            .unwrap();
    }
    // The advertisement of the window reaches the server first.
    client.poll_completions(&mut []).unwrap();
    server.poll_completions(&mut []).unwrap();

    let mut message = [7u8; rdio_cma::INLINE];
    server.post_send_inline(1, &message).unwrap();
    message.fill(b'x');
    let mut block = *b"status block";
    server
        .post_write_inline(2, &block, dst, Some(0xbeef))
        .unwrap();
    block.fill(0);
    server
        .post_send(3, &[Slice::whole(gathered, 8)], None)
        .unwrap();
    server.post_write_inline(4, b"plain", dst, None).unwrap();
    server.post_send_inline(5, b"").unwrap();
    let mut kinds = Vec::new();
    for _ in 0..4 {
        let done = next(&mut client, &mut server, 0);
        assert_eq!(done.status, Ok(()));
        kinds.push((done.wr_id, done.kind));
    }
    assert_eq!(
        kinds,
        [
            (
                10,
                CompletionKind::Recv {
                    len: rdio_cma::INLINE
                }
            ),
            (11, CompletionKind::RecvImm { imm: 0xbeef }),
            (12, CompletionKind::Recv { len: 8 }),
            (13, CompletionKind::Recv { len: 0 }),
        ]
    );
    let inbox_bytes = client.region(inbox).unwrap();
    assert!(
        inbox_bytes[..rdio_cma::INLINE].iter().all(|&b| b == 7),
        "copied at post time"
    );
    assert_eq!(&inbox_bytes[512..520], b"gathered");
    // The second inline write landed over the first, after it.
    assert_eq!(&client.region(window).unwrap()[100..112], b"plains block");
    let mut done: Vec<_> = (0..5)
        .map(|_| {
            let c = next(&mut server, &mut client, 0);
            assert_eq!(c.status, Ok(()));
            (c.wr_id, c.kind)
        })
        .collect();
    done.sort_by_key(|&(id, _)| id);
    assert_eq!(
        done,
        [
            (1, CompletionKind::Send),
            (2, CompletionKind::Write),
            (3, CompletionKind::Send),
            (4, CompletionKind::Write),
            (5, CompletionKind::Send),
        ]
    );

    // Limits: more than INLINE bytes, more than the target's length.
    assert_eq!(
        server.post_send_inline(6, &[0; rdio_cma::INLINE + 1]),
        Err(TransportError::MessageTooLarge)
    );
    assert_eq!(
        server.post_write_inline(7, &[0; rdio_cma::INLINE + 1], dst, None),
        Err(TransportError::MessageTooLarge)
    );
    let short = client.remote_buf(window, 0, 4).unwrap();
    assert_eq!(
        server.post_write_inline(8, b"too long", short, None),
        Err(TransportError::OutOfBounds)
    );
    // Outside every advertised window: fails like a gathered write and
    // ends the connection; nothing lands.
    let forged = RemoteBuf {
        addr: dst.addr + 8192,
        ..dst
    };
    server.post_write_inline(9, b"nope", forged, None).unwrap();
    let lost = until_lost(&mut server);
    assert_eq!(
        lost.first().map(|c| (c.wr_id, c.status)),
        Some((9, Err(WcError::RemoteAccess)))
    );
}

/// A small write-with-immediate crosses the socket whole and the peer
/// places it; a later write to the same bytes waits until the peer says it
/// did (on its next frame, or idle), so the later bytes land last, as
/// work requests execute in order.
#[test]
fn a_carried_write_is_never_overtaken_by_a_later_write_to_the_same_bytes() {
    let (mut client, mut server) = pair();
    let window = client
        .register(4096, Access::LOCAL_WRITE | Access::REMOTE_WRITE)
        .unwrap();
    let inbox = client.register(64, Access::LOCAL_WRITE).unwrap();
    client.post_recv(1, Slice::whole(inbox, 64)).unwrap();
    let source = server.register(4096, Access::empty()).unwrap();
    server.region_mut(source).unwrap().fill(0xbb);
    // The advertisement of the window reaches the server first.
    client.poll_completions(&mut []).unwrap();
    server.poll_completions(&mut []).unwrap();
    let dst = client.remote_buf(window, 0, 4096).unwrap();
    server
        .post_write_inline(2, &[0xaa; 24], dst, Some(7))
        .unwrap();
    server
        .post_write(3, &[Slice::whole(source, 4096)], dst, None)
        .unwrap();
    server.flush().unwrap();
    thread::sleep(Duration::from_millis(20));
    server.flush().unwrap();
    assert!(
        client.region(window).unwrap().iter().all(|&b| b == 0),
        "the later write waits for the carried one to be placed"
    );
    let imm = next(&mut client, &mut server, 0);
    assert_eq!(
        (imm.wr_id, imm.kind, imm.status),
        (1, CompletionKind::RecvImm { imm: 7 }, Ok(()))
    );
    assert_eq!(&client.region(window).unwrap()[..24], &[0xaa; 24]);
    // Idle, the client acknowledges; the data follows, over the block.
    let mut done: Vec<_> = collect(&mut server, &mut client, 2)
        .iter()
        .map(|c| (c.wr_id, c.kind, c.status))
        .collect();
    done.sort_by_key(|&(id, _, _)| id);
    assert_eq!(
        done,
        [
            (2, CompletionKind::Write, Ok(())),
            (3, CompletionKind::Write, Ok(()))
        ]
    );
    assert!(client.region(window).unwrap().iter().all(|&b| b == 0xbb));
    // A carried write to a window the peer has not lent fails as a
    // placed one does, before anything of it crosses.
    let forged = RemoteBuf {
        addr: dst.addr + 8192,
        ..dst
    };
    server
        .post_write_inline(4, &[1; 24], forged, Some(8))
        .unwrap();
    let lost = until_lost(&mut server);
    assert_eq!(
        lost.first().map(|c| (c.wr_id, c.status)),
        Some((4, Err(WcError::RemoteAccess)))
    );
}

/// A pair for writes with a tail: the client's 4 KiB window, lent with
/// `REMOTE_WRITE` and already known to the server, one receive posted (id
/// 10), and on the server an 8-byte gather region holding `data....`.
fn tail_pair() -> (CmaTransport, CmaTransport, RegionId, RegionId) {
    let (mut client, mut server) = pair();
    let window = client
        .register(4096, Access::LOCAL_WRITE | Access::REMOTE_WRITE)
        .unwrap();
    let inbox = client.register(256, Access::LOCAL_WRITE).unwrap();
    client.post_recv(10, Slice::whole(inbox, 256)).unwrap();
    let gathered = server.register(8, Access::empty()).unwrap();
    server
        .region_mut(gathered)
        .unwrap()
        .copy_from_slice(b"data....");
    // The advertisement of the window reaches the server first.
    client.poll_completions(&mut []).unwrap();
    server.poll_completions(&mut []).unwrap();
    (client, server, window, gathered)
}

/// A write with an inline tail places the gathered bytes and then the tail
/// as one request: one receive completion with the immediate at the peer,
/// one write completion here, the gather region held until then.
#[test]
fn a_write_with_a_tail_places_data_then_tail() {
    let (mut client, mut server, window, gathered) = tail_pair();
    let dst = client.remote_buf(window, 64, 20).unwrap();

    let mut tail = *b"status block";
    server
        .post_write_tail(1, &[Slice::whole(gathered, 8)], &tail, dst, Some(0xcafe))
        .unwrap();
    tail.fill(0);
    assert_eq!(
        server.region_mut(gathered).err(),
        Some(TransportError::Busy(gathered)),
        "the gathered region is held until the write completes"
    );
    let done = next(&mut client, &mut server, 0);
    assert_eq!(
        (done.wr_id, done.kind, done.status),
        (10, CompletionKind::RecvImm { imm: 0xcafe }, Ok(()))
    );
    assert_eq!(
        &client.region(window).unwrap()[64..84],
        b"data....status block"
    );
    let done = next(&mut server, &mut client, 0);
    assert_eq!(
        (done.wr_id, done.kind, done.status),
        (1, CompletionKind::Write, Ok(()))
    );
    assert!(server.region_mut(gathered).is_ok());

    // Limits: the whole must fit the window; the tail is inline data.
    assert_eq!(
        server.post_write_tail(2, &[Slice::whole(gathered, 8)], &[0; 13], dst, None),
        Err(TransportError::OutOfBounds)
    );
    assert_eq!(
        server.post_write_tail(3, &[], &[0; rdio_cma::INLINE + 1], dst, None),
        Err(TransportError::MessageTooLarge)
    );
}

/// An unsignaled write lands like any write, and reports nothing when it
/// succeeds: the writer's next completion is the signaled write posted
/// after it (RC order: both landed), and its gather region is free by
/// then. One outside the peer's windows still completes, with its error.
#[test]
fn an_unsignaled_write_lands_and_reports_only_a_failure() {
    let (mut client, mut server, window, gathered) = tail_pair();

    let first = client.remote_buf(window, 0, 20).unwrap();
    let second = client.remote_buf(window, 64, 20).unwrap();
    server
        .post_write_tail_unsignaled(1, &[Slice::whole(gathered, 8)], b"quiet block!", first)
        .unwrap();
    server
        .post_write_tail(
            2,
            &[Slice::whole(gathered, 8)],
            b"status block",
            second,
            Some(7),
        )
        .unwrap();
    let done = next(&mut client, &mut server, 0);
    assert_eq!(
        (done.wr_id, done.kind, done.status),
        (10, CompletionKind::RecvImm { imm: 7 }, Ok(()))
    );
    assert_eq!(
        &client.region(window).unwrap()[..20],
        b"data....quiet block!"
    );
    assert_eq!(
        &client.region(window).unwrap()[64..84],
        b"data....status block"
    );
    let done = next(&mut server, &mut client, 0);
    assert_eq!(
        (done.wr_id, done.kind, done.status),
        (2, CompletionKind::Write, Ok(())),
        "the signaled write is the only completion"
    );
    assert!(server.region_mut(gathered).is_ok());

    let forged = RemoteBuf {
        key: first.key ^ 1,
        ..first
    };
    server
        .post_write_tail_unsignaled(3, &[Slice::whole(gathered, 8)], &[], forged)
        .unwrap();
    let lost = until_lost(&mut server);
    assert_eq!(
        lost.first().map(|c| (c.wr_id, c.status)),
        Some((3, Err(WcError::RemoteAccess)))
    );
}

#[test]
fn newest_first_fills_the_receive_posted_last() {
    let (mut client, mut server) = pair();
    server.set_newest_first(true);
    let rx = server.register(4096, Access::LOCAL_WRITE).unwrap();
    let tx = client.register(4096, Access::empty()).unwrap();
    client.region_mut(tx).unwrap()[..3].copy_from_slice(b"abc");
    let recv = |i: usize| Slice {
        region: rx,
        offset: i * 100,
        len: 100,
    };
    let one = |i: usize| Slice {
        region: tx,
        offset: i,
        len: 1,
    };
    server.post_recv(1, recv(1)).unwrap();
    server.post_recv(2, recv(2)).unwrap();
    client.post_send(10, &[one(0)], None).unwrap();
    // The first send fills receive 2, posted last.
    let got = next(&mut client, &mut server, 1);
    assert_eq!((got.wr_id, got.kind), (2, CompletionKind::Recv { len: 1 }));
    assert_eq!(next(&mut client, &mut server, 0).wr_id, 10);
    // A receive posted now is filled before receive 1, posted earlier.
    server.post_recv(3, recv(3)).unwrap();
    client.post_send(11, &[one(1)], None).unwrap();
    client.post_send(12, &[one(2)], None).unwrap();
    let order: Vec<_> = (0..2)
        .map(|_| next(&mut client, &mut server, 1).wr_id)
        .collect();
    assert_eq!(order, [3, 1]);
    let bytes = server.region_mut(rx).unwrap();
    assert_eq!([bytes[200], bytes[300], bytes[100]], *b"abc");
}

/// Writes of every kind, mixed at random over one small window — status
/// blocks carried in frames (with immediate), small direct writes (no
/// immediate) and gathered ones, overlapping each other — land as if
/// executed one by one in posting order, whatever the interleaving of
/// acknowledgements, and every one completes on both sides.
#[test]
fn mixed_carried_and_direct_writes_land_in_posting_order() {
    const WINDOW: usize = 1024;
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |below: usize| {
        // xorshift64*: repeatable, no dependency.
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        (rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % below
    };
    for round in 0..24 {
        let (mut client, mut server) = pair();
        let window = client
            .register(WINDOW, Access::LOCAL_WRITE | Access::REMOTE_WRITE)
            .unwrap();
        let inbox = client.register(64 * 64, Access::LOCAL_WRITE).unwrap();
        for i in 0..64u64 {
            client
                .post_recv(
                    i,
                    Slice {
                        region: inbox,
                        offset: i as usize * 64,
                        len: 64,
                    },
                )
                .unwrap();
        }
        let source = server.register(WINDOW, Access::empty()).unwrap();
        client.poll_completions(&mut []).unwrap();
        server.poll_completions(&mut []).unwrap();
        let mut expected = vec![0u8; WINDOW];
        let (mut writes, mut immediates) = (0, 0);
        for step in 0..(8 + next(24)) {
            let fill = (round * 31 + step * 7 + 1) as u8;
            let kind = next(3);
            let len = match kind {
                0 | 1 => 1 + next(rdio_cma::CARRIED_WRITE),
                _ => 1 + next(WINDOW / 2),
            };
            let offset = next(WINDOW - len + 1);
            let dst = client.remote_buf(window, offset, len).unwrap();
            let wr = 100 + step as u64;
            match kind {
                // Carried: inline with immediate.
                0 => {
                    server
                        .post_write_inline(wr, &vec![fill; len], dst, Some(step as u32))
                        .unwrap();
                    immediates += 1;
                }
                // Placed directly: inline without immediate.
                1 => server
                    .post_write_inline(wr, &vec![fill; len], dst, None)
                    .unwrap(),
                // Placed directly: gathered from a registered buffer.
                _ => {
                    server.flush().unwrap();
                    // The source may be written only while no posted write
                    // reads it: wait for every earlier write first.
                    while writes > 0 {
                        let mut out = [NONE; 16];
                        let _ = client.poll_completions(&mut []);
                        let n = server.poll_completions(&mut out).unwrap();
                        for c in &out[..n] {
                            assert_eq!(c.status, Ok(()), "round {round}: {c:?}");
                        }
                        writes -= n;
                    }
                    server.region_mut(source).unwrap()[..len].fill(fill);
                    server
                        .post_write(
                            wr,
                            &[Slice {
                                region: source,
                                offset: 0,
                                len,
                            }],
                            dst,
                            None,
                        )
                        .unwrap();
                }
            }
            writes += 1;
            expected[offset..offset + len].fill(fill);
            // Now and then let the two sides run in between.
            if next(4) == 0 {
                let _ = server.poll_completions(&mut []);
                let _ = client.poll_completions(&mut []);
            }
        }
        let start = Instant::now();
        while writes > 0 || immediates > 0 {
            assert!(
                start.elapsed() < SOON,
                "round {round}: {writes} writes, {immediates} immediates left"
            );
            let mut out = [NONE; 16];
            let n = client.poll_completions(&mut out).unwrap();
            for c in &out[..n] {
                assert!(matches!(c.kind, CompletionKind::RecvImm { .. }), "{c:?}");
                assert_eq!(c.status, Ok(()));
            }
            immediates -= n;
            let n = server.poll_completions(&mut out).unwrap();
            for c in &out[..n] {
                assert_eq!(
                    (c.kind, c.status),
                    (CompletionKind::Write, Ok(())),
                    "round {round}"
                );
            }
            writes -= n;
        }
        assert_eq!(
            client.region(window).unwrap(),
            &expected[..],
            "round {round}"
        );
    }
}
