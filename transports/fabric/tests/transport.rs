//! The trait's contract on a real libfabric `tcp` connection over 127.0.0.1.
//!
//! tcp moves data only inside libfabric calls on *both* sides, so these tests
//! drive a client/server pair from one thread and poll both in every step
//! ([`Pair::step`]).

use std::net::{Ipv4Addr, SocketAddr};
use std::thread;
use std::time::{Duration, Instant};

use rdio_fabric::{FabricError, FabricTransport, Listener, connect, connect_timeout};
use rdio_transport::{
    Access, Completion, CompletionKind, RegionId, Slice, Transport, TransportError, WcError,
};

const PROVIDER: &str = "tcp";
/// Upper bound for anything that should happen "soon" on loopback.
const SOON: Duration = Duration::from_secs(5);

fn localhost() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

struct Pair {
    client: FabricTransport,
    server: FabricTransport,
    client_done: Vec<Completion>,
    server_done: Vec<Completion>,
    client_lost: bool,
    server_lost: bool,
}

impl Pair {
    fn new() -> Self {
        let listener = Listener::bind(localhost(), PROVIDER).expect("bind");
        let addr = listener.local_addr();
        assert_ne!(addr.port(), 0, "port 0 resolves to the port actually bound");
        let server = thread::spawn(move || listener.accept_timeout(SOON).expect("accept"));
        let client = connect(addr, PROVIDER).expect("connect");
        let server = server.join().expect("accept thread");
        Self {
            client,
            server,
            client_done: Vec::new(),
            server_done: Vec::new(),
            client_lost: false,
            server_lost: false,
        }
    }

    /// Poll both sides once, collecting completions; `Err(Disconnected)` marks a side lost.
    fn step(&mut self) {
        for (transport, done, lost) in [
            (
                &mut self.client,
                &mut self.client_done,
                &mut self.client_lost,
            ),
            (
                &mut self.server,
                &mut self.server_done,
                &mut self.server_lost,
            ),
        ] {
            let mut out = [Completion {
                wr_id: 0,
                kind: CompletionKind::Send,
                status: Ok(()),
            }; 8];
            match transport.poll_completions(&mut out) {
                Ok(n) => done.extend_from_slice(&out[..n]),
                Err(TransportError::Disconnected) => *lost = true,
                Err(err) => panic!("poll_completions: {err}"),
            }
        }
    }

    fn step_until(&mut self, what: &str, done: impl Fn(&Self) -> bool) {
        let start = Instant::now();
        while !done(self) {
            assert!(start.elapsed() < SOON, "timed out waiting for {what}");
            self.step();
        }
    }

    fn until_completions(&mut self, client: usize, server: usize) {
        self.step_until("completions", |p| {
            p.client_done.len() >= client && p.server_done.len() >= server
        });
        assert_eq!(
            self.client_done.len(),
            client,
            "client completions: {:?}",
            self.client_done
        );
        assert_eq!(
            self.server_done.len(),
            server,
            "server completions: {:?}",
            self.server_done
        );
    }
}

fn fill(transport: &mut FabricTransport, region: RegionId, bytes: &[u8]) {
    transport.region_mut(region).expect("region")[..bytes.len()].copy_from_slice(bytes);
}

fn ok(wr_id: u64, kind: CompletionKind) -> Completion {
    Completion {
        wr_id,
        kind,
        status: Ok(()),
    }
}

#[test]
fn connect_and_accept_report_the_provider() {
    let pair = Pair::new();
    assert_eq!(pair.client.provider(), "ofi:tcp");
    assert_eq!(pair.server.provider(), "ofi:tcp");
    let caps = pair.client.caps();
    assert!(
        caps.max_sge >= 2 && caps.max_recv > 0 && caps.max_send > 0,
        "{caps:?}"
    );
    assert!(
        caps.max_write >= 1 << 20 && caps.max_message >= 1 << 20,
        "{caps:?}"
    );
    assert!(pair.client.is_connected() && pair.server.is_connected());
}

#[test]
fn send_gathers_into_a_posted_receive() {
    let mut p = Pair::new();
    let rx = p.server.register(64, Access::LOCAL_WRITE).unwrap();
    let head = p.client.register(5, Access::empty()).unwrap();
    let tail = p.client.register(16, Access::empty()).unwrap();
    fill(&mut p.client, head, b"hello");
    fill(&mut p.client, tail, b"0123, world");
    p.server.post_recv(7, Slice::whole(rx, 64)).unwrap();
    let sges = [
        Slice::whole(head, 5),
        Slice {
            region: tail,
            offset: 4,
            len: 7,
        },
    ];
    p.client.post_send(9, &sges, None).unwrap();
    p.until_completions(1, 1);
    assert_eq!(p.client_done, [ok(9, CompletionKind::Send)]);
    assert_eq!(p.server_done, [ok(7, CompletionKind::Recv { len: 12 })]);
    assert_eq!(&p.server.region(rx).unwrap()[..12], b"hello, world");
}

#[test]
fn write_lands_at_the_remote_offset_before_a_later_send() {
    let mut p = Pair::new();
    let window = p
        .server
        .register(4096, Access::LOCAL_WRITE | Access::REMOTE_WRITE)
        .unwrap();
    let rx = p.server.register(8, Access::LOCAL_WRITE).unwrap();
    let src = p.client.register(4096, Access::empty()).unwrap();
    let data: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
    fill(&mut p.client, src, &data);
    let dst = p.server.remote_buf(window, 1000, 3000).unwrap();
    // tcp has no FI_MR_VIRT_ADDR: remote addresses are offsets into the region.
    assert_eq!((dst.addr, dst.len), (1000, 3000));
    p.server.post_recv(1, Slice::whole(rx, 8)).unwrap();
    let sges = [
        Slice {
            region: src,
            offset: 0,
            len: 1000,
        },
        Slice {
            region: src,
            offset: 1000,
            len: 2000,
        },
    ];
    p.client.post_write(2, &sges, dst, None).unwrap();
    p.client
        .post_send(3, &[Slice::whole(src, 1)], None)
        .unwrap();
    p.until_completions(2, 1);
    assert_eq!(
        p.client_done,
        [ok(2, CompletionKind::Write), ok(3, CompletionKind::Send)]
    );
    assert_eq!(p.server_done, [ok(1, CompletionKind::Recv { len: 1 })]);
    let landed = p.server.region(window).unwrap();
    assert_eq!(&landed[1000..4000], &data[..]);
    assert!(
        landed[..1000].iter().all(|&b| b == 0),
        "nothing outside the window"
    );
}

#[test]
fn write_with_immediate_consumes_exactly_one_receive() {
    let mut p = Pair::new();
    let window = p
        .server
        .register(256, Access::LOCAL_WRITE | Access::REMOTE_WRITE)
        .unwrap();
    let rx = p.server.register(32, Access::LOCAL_WRITE).unwrap();
    let src = p.client.register(256, Access::empty()).unwrap();
    fill(&mut p.client, src, &[0xab; 256]);
    fill(&mut p.client, src, b"msg");
    p.server
        .post_recv(
            10,
            Slice {
                region: rx,
                offset: 0,
                len: 16,
            },
        )
        .unwrap();
    p.server
        .post_recv(
            11,
            Slice {
                region: rx,
                offset: 16,
                len: 16,
            },
        )
        .unwrap();
    let dst = p.server.remote_buf(window, 0, 256).unwrap();
    p.client
        .post_write(
            20,
            &[Slice {
                region: src,
                offset: 3,
                len: 200,
            }],
            dst,
            Some(0xdead_beef),
        )
        .unwrap();
    p.client
        .post_send(21, &[Slice::whole(src, 3)], None)
        .unwrap();
    p.until_completions(2, 2);
    // One Write completion for the (internally two-part) write-with-imm.
    assert_eq!(
        p.client_done,
        [ok(20, CompletionKind::Write), ok(21, CompletionKind::Send)]
    );
    // The first receive was consumed by the immediate, the second by the send.
    assert_eq!(
        p.server_done,
        [
            ok(10, CompletionKind::RecvImm { imm: 0xdead_beef }),
            ok(11, CompletionKind::Recv { len: 3 })
        ]
    );
    assert!(
        p.server.region(window).unwrap()[..200]
            .iter()
            .all(|&b| b == 0xab)
    );
    assert_eq!(&p.server.region(rx).unwrap()[16..19], b"msg");
    // A send's own immediate is not a write-with-immediate.
    p.server.post_recv(12, Slice::whole(rx, 32)).unwrap();
    p.client
        .post_send(22, &[Slice::whole(src, 3)], Some(5))
        .unwrap();
    p.until_completions(3, 3);
    assert_eq!(p.server_done[2], ok(12, CompletionKind::Recv { len: 3 }));
}

#[test]
fn posted_regions_are_busy_until_their_completion_is_drained() {
    let mut p = Pair::new();
    let rx = p.server.register(16, Access::LOCAL_WRITE).unwrap();
    let tx = p.client.register(16, Access::empty()).unwrap();
    p.server.post_recv(1, Slice::whole(rx, 16)).unwrap();
    p.server.post_recv(2, Slice::whole(rx, 16)).unwrap();
    assert_eq!(p.server.posted_references(rx), 2);
    assert_eq!(
        p.server.region_mut(rx).err(),
        Some(TransportError::Busy(rx))
    );
    assert_eq!(p.server.deregister(rx), Err(TransportError::Busy(rx)));
    assert!(
        p.server.region(rx).is_ok(),
        "reading a posted region is allowed"
    );
    p.client.post_send(3, &[Slice::whole(tx, 4)], None).unwrap();
    assert_eq!(
        p.client.region_mut(tx).err(),
        Some(TransportError::Busy(tx))
    );
    p.until_completions(1, 1);
    assert!(
        p.client.region_mut(tx).is_ok(),
        "send buffer free once its completion was drained"
    );
    assert_eq!(p.server.posted_references(rx), 1);
    assert_eq!(
        p.server.region_mut(rx).err(),
        Some(TransportError::Busy(rx))
    );
    p.client.post_send(4, &[Slice::whole(tx, 4)], None).unwrap();
    p.until_completions(2, 2);
    assert_eq!(p.server.posted_references(rx), 0);
    assert!(p.server.region_mut(rx).is_ok());
    assert_eq!(p.server.deregister(rx), Ok(()));
    assert_eq!(
        p.server.region(rx).err(),
        Some(TransportError::UnknownRegion(rx))
    );
}

#[test]
fn bad_requests_fail_synchronously_or_as_protection_errors() {
    let mut p = Pair::new();
    let tx = p.client.register(16, Access::empty()).unwrap();
    let caps = p.client.caps();
    let ghost = RegionId(9999);
    assert_eq!(
        p.client.post_send(1, &[Slice::whole(ghost, 1)], None),
        Err(TransportError::UnknownRegion(ghost))
    );
    assert_eq!(
        p.client.post_send(1, &[Slice::whole(tx, 17)], None),
        Err(TransportError::OutOfBounds)
    );
    let many = vec![Slice::whole(tx, 1); caps.max_sge + 1];
    assert_eq!(
        p.client.post_send(1, &many, None),
        Err(TransportError::TooManySegments)
    );
    assert_eq!(
        p.client.remote_buf(tx, 10, 7).err(),
        Some(TransportError::OutOfBounds)
    );
    let small = p.client.remote_buf(tx, 0, 4).unwrap();
    assert_eq!(
        p.client.post_write(1, &[Slice::whole(tx, 8)], small, None),
        Err(TransportError::OutOfBounds)
    );
    // A receive into a region without LOCAL_WRITE completes with a protection
    // error, as on an RC queue pair.
    p.client.post_recv(5, Slice::whole(tx, 16)).unwrap();
    p.until_completions(1, 0);
    assert_eq!(p.client_done[0].status, Err(WcError::LocalProtection));
    assert_eq!(p.client_done[0].kind, CompletionKind::Recv { len: 0 });
    assert_eq!(p.client.posted_references(tx), 0);
}

#[test]
fn receive_queue_depth_is_enforced() {
    let mut p = Pair::new();
    let rx = p.server.register(1, Access::LOCAL_WRITE).unwrap();
    let depth = p.server.caps().max_recv;
    for wr in 0..depth {
        p.server.post_recv(wr as u64, Slice::whole(rx, 1)).unwrap();
    }
    assert_eq!(
        p.server.post_recv(0, Slice::whole(rx, 1)),
        Err(TransportError::QueueFull)
    );
}

#[test]
fn bad_remote_key_breaks_the_connection_and_the_initiator_sees_errors() {
    let mut p = Pair::new();
    let window = p
        .server
        .register(64, Access::LOCAL_WRITE | Access::REMOTE_WRITE)
        .unwrap();
    let server_rx = p.server.register(8, Access::LOCAL_WRITE).unwrap();
    let src = p.client.register(64, Access::LOCAL_WRITE).unwrap();
    p.server.post_recv(1, Slice::whole(server_rx, 8)).unwrap();
    p.client.post_recv(2, Slice::whole(src, 8)).unwrap();
    let mut dst = p.server.remote_buf(window, 0, 64).unwrap();
    dst.key = dst.key.wrapping_add(0x5a5a);
    p.client
        .post_write(3, &[Slice::whole(src, 64)], dst, None)
        .unwrap();
    p.step_until("both sides to lose the connection", |p| {
        p.client_lost && p.server_lost
    });
    // tcp reports the write itself as sent (its completion means "handed to
    // the socket"); the target rejects the key and shuts the connection down,
    // so everything still outstanding on either side fails.
    let client_recv = p
        .client_done
        .iter()
        .find(|c| c.wr_id == 2)
        .expect("client receive completed");
    assert!(
        matches!(
            client_recv.status,
            Err(WcError::Flushed | WcError::Disconnected)
        ),
        "{client_recv:?}"
    );
    let server_recv = p
        .server_done
        .iter()
        .find(|c| c.wr_id == 1)
        .expect("server receive completed");
    assert!(server_recv.status.is_err(), "{server_recv:?}");
    assert!(
        p.server.region(window).unwrap().iter().all(|&b| b == 0),
        "nothing written through a bad key"
    );
    assert!(!p.client.is_connected());
    assert_eq!(
        p.client.post_send(4, &[Slice::whole(src, 1)], None),
        Err(TransportError::Disconnected)
    );
}

#[test]
fn dropping_the_peer_is_detected_with_a_receive_posted() {
    let mut p = Pair::new();
    let rx = p.server.register(8, Access::LOCAL_WRITE).unwrap();
    p.server.post_recv(1, Slice::whole(rx, 8)).unwrap();
    let Pair {
        client, mut server, ..
    } = p;
    drop(client);
    let start = Instant::now();
    let mut seen = Vec::new();
    let mut out = [ok(0, CompletionKind::Send); 4];
    loop {
        assert!(
            start.elapsed() < SOON,
            "peer loss not detected; completions so far {seen:?}"
        );
        match server.poll_completions(&mut out) {
            Ok(n) => seen.extend_from_slice(&out[..n]),
            Err(TransportError::Disconnected) => break,
            Err(err) => panic!("{err}"),
        }
    }
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].wr_id, 1);
    assert!(
        matches!(
            seen[0].status,
            Err(WcError::Flushed | WcError::Disconnected)
        ),
        "{seen:?}"
    );
    assert_eq!(
        server.posted_references(rx),
        0,
        "the flushed receive released its region"
    );
}

#[test]
fn dropping_the_peer_is_detected_when_idle() {
    let Pair {
        client, mut server, ..
    } = Pair::new();
    drop(client);
    let start = Instant::now();
    loop {
        assert!(start.elapsed() < SOON, "idle peer loss not detected");
        match server.poll_completions(&mut []) {
            Ok(0) => {}
            Ok(n) => panic!("{n} unexpected completions"),
            Err(err) => {
                assert_eq!(err, TransportError::Disconnected);
                break;
            }
        }
    }
    assert!(!server.is_connected());
}

#[test]
fn local_disconnect_flushes_outstanding_requests() {
    let mut p = Pair::new();
    let rx = p.client.register(8, Access::LOCAL_WRITE).unwrap();
    p.client.post_recv(1, Slice::whole(rx, 8)).unwrap();
    p.client.post_recv(2, Slice::whole(rx, 8)).unwrap();
    p.client.disconnect();
    let mut out = [ok(0, CompletionKind::Send); 4];
    assert_eq!(p.client.poll_completions(&mut out), Ok(2));
    assert!(
        out[..2].iter().all(|c| c.status == Err(WcError::Flushed)),
        "{out:?}"
    );
    assert_eq!(
        p.client.poll_completions(&mut out),
        Err(TransportError::Disconnected)
    );
    assert_eq!(
        p.client.post_recv(3, Slice::whole(rx, 8)),
        Err(TransportError::Disconnected)
    );
    assert!(
        p.client.region_mut(rx).is_ok(),
        "regions survive a disconnect"
    );
    p.step_until("the server to see the shutdown", |p| p.server_lost);
}

#[test]
fn wait_blocks_until_a_completion_or_the_timeout() {
    let mut p = Pair::new();
    let rx = p.server.register(8, Access::LOCAL_WRITE).unwrap();
    let tx = p.client.register(8, Access::empty()).unwrap();
    p.server.post_recv(1, Slice::whole(rx, 8)).unwrap();
    let start = Instant::now();
    p.server.wait(Some(Duration::from_millis(150))).unwrap();
    let idle = start.elapsed();
    assert!(
        idle >= Duration::from_millis(140) && idle < SOON,
        "timed wait took {idle:?}"
    );
    let mut out = [ok(0, CompletionKind::Send); 2];
    assert_eq!(p.server.poll_completions(&mut out), Ok(0));

    let Pair {
        mut client,
        mut server,
        ..
    } = p;
    let sender = thread::spawn(move || {
        thread::sleep(Duration::from_millis(100));
        client.post_send(2, &[Slice::whole(tx, 8)], None).unwrap();
        let mut out = [ok(0, CompletionKind::Send); 1];
        let start = Instant::now();
        while client.poll_completions(&mut out).unwrap() == 0 {
            assert!(start.elapsed() < SOON);
        }
        client
    });
    let start = Instant::now();
    let mut got = 0;
    while got == 0 {
        assert!(start.elapsed() < SOON, "wait never woke up for the send");
        server.wait(None).unwrap();
        got = server.poll_completions(&mut out).unwrap();
    }
    assert_eq!(out[0], ok(1, CompletionKind::Recv { len: 8 }));
    drop(sender.join().unwrap());
}

/// A 1 MiB write with immediate data, sent from another thread, reaches a
/// server waiting with `window` as its spin window: on tcp the server's own
/// calls move the data, so this holds only if both the spinning and the
/// blocking half of `wait` progress the provider.
fn waiting_server_receives_a_large_write(window: Duration) {
    const LEN: usize = 1 << 20;
    let mut p = Pair::new();
    p.server.set_spin_window(window);
    assert_eq!(p.server.spin_window(), window);
    let target = p
        .server
        .register(LEN, Access::LOCAL_WRITE | Access::REMOTE_WRITE)
        .unwrap();
    let rx = p.server.register(8, Access::LOCAL_WRITE).unwrap();
    p.server.post_recv(1, Slice::whole(rx, 8)).unwrap();
    let dst = p.server.remote_buf(target, 0, LEN).unwrap();
    let src = p.client.register(LEN, Access::empty()).unwrap();
    let pattern: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
    fill(&mut p.client, src, &pattern);
    let Pair {
        mut client,
        mut server,
        ..
    } = p;
    let writer = thread::spawn(move || {
        client
            .post_write(2, &[Slice::whole(src, LEN)], dst, Some(0x5eed))
            .unwrap();
        let mut out = [ok(0, CompletionKind::Send); 1];
        let start = Instant::now();
        while client.poll_completions(&mut out).unwrap() == 0 {
            assert!(start.elapsed() < SOON, "the write never completed");
        }
        assert_eq!(out[0], ok(2, CompletionKind::Write));
        client
    });
    let mut out = [ok(0, CompletionKind::Send); 2];
    let start = Instant::now();
    let mut got = 0;
    while got == 0 {
        assert!(start.elapsed() < SOON, "wait never returned the write");
        server.wait(Some(SOON)).unwrap();
        got = server.poll_completions(&mut out).unwrap();
    }
    assert_eq!(out[0], ok(1, CompletionKind::RecvImm { imm: 0x5eed }));
    assert!(server.region(target).unwrap() == pattern.as_slice());
    drop(writer.join().unwrap());
}

#[test]
fn a_waiting_server_receives_a_large_write_when_spinning() {
    // Longer than the test: every wait spins until the data is there.
    waiting_server_receives_a_large_write(Duration::MAX);
}

#[test]
fn a_waiting_server_receives_a_large_write_when_blocking_at_once() {
    waiting_server_receives_a_large_write(Duration::ZERO);
}

/// Drop the client of `p` and wait on the server with a spin window that
/// never closes: only noticing the loss can end the wait. Returns the server.
fn spin_until_the_peer_vanishes(mut p: Pair) -> FabricTransport {
    p.server.set_spin_window(Duration::MAX);
    let Pair {
        client, mut server, ..
    } = p;
    drop(client);
    let (done, waited) = std::sync::mpsc::channel();
    let waiter = thread::spawn(move || {
        server.wait(None).unwrap();
        done.send(()).unwrap();
        server
    });
    waited
        .recv_timeout(SOON)
        .expect("the wait outlived its peer");
    waiter.join().unwrap()
}

#[test]
fn a_spinning_wait_notices_a_vanished_peer_with_a_receive_posted() {
    let mut p = Pair::new();
    let rx = p.server.register(8, Access::LOCAL_WRITE).unwrap();
    p.server.post_recv(1, Slice::whole(rx, 8)).unwrap();
    let mut server = spin_until_the_peer_vanishes(p);
    let mut out = [ok(0, CompletionKind::Send); 2];
    assert_eq!(server.poll_completions(&mut out), Ok(1));
    assert_eq!(out[0].wr_id, 1);
    assert!(
        matches!(out[0].status, Err(WcError::Flushed | WcError::Disconnected)),
        "{out:?}"
    );
}

#[test]
fn a_spinning_wait_notices_a_vanished_peer_when_idle() {
    // One exchange opens the server's spin window; then nothing is posted,
    // so no completion can report the loss: the event queue must.
    let mut p = Pair::new();
    let rx = p.server.register(8, Access::LOCAL_WRITE).unwrap();
    let tx = p.client.register(8, Access::empty()).unwrap();
    p.server.post_recv(1, Slice::whole(rx, 8)).unwrap();
    p.client.post_send(2, &[Slice::whole(tx, 8)], None).unwrap();
    p.until_completions(1, 1);
    let mut server = spin_until_the_peer_vanishes(p);
    assert!(!server.is_connected());
    assert_eq!(
        server.poll_completions(&mut []),
        Err(TransportError::Disconnected)
    );
}

#[test]
fn connection_setup_failures_are_typed() {
    // Nothing listens on the port a just-closed listener had.
    let listener = Listener::bind(localhost(), PROVIDER).unwrap();
    let addr = listener.local_addr();
    drop(listener);
    match connect_timeout(addr, PROVIDER, Duration::from_secs(3)) {
        Err(FabricError::ConnectFailed { code }) => assert_eq!(code, libc::ECONNREFUSED),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("connected to nothing"),
    }
    let listener = Listener::bind(localhost(), PROVIDER).unwrap();
    let start = Instant::now();
    let err = listener
        .accept_timeout(Duration::from_millis(200))
        .err()
        .expect("nobody connects");
    assert!(matches!(err, FabricError::Timeout { .. }), "{err}");
    assert!(start.elapsed() < SOON);
    let err = Listener::bind(localhost(), "no-such-provider")
        .err()
        .expect("unknown provider");
    assert!(matches!(err, FabricError::NoProvider { .. }), "{err}");
    assert!(err.to_string().contains("no-such-provider"));
}

#[test]
fn raw_baseline_moves_every_byte() {
    use rdio_fabric::raw::{self, RawConfig, RawOp};
    for op in [RawOp::Write, RawOp::Send] {
        let config = RawConfig {
            op,
            size: 4096,
            count: 300,
            window: 16,
        };
        let result = raw::run(PROVIDER, config).expect("baseline run");
        assert_eq!(result.bytes(), 4096 * 300);
        assert!(result.bytes_per_sec() > 0.0);
    }
    let zero = RawConfig {
        op: RawOp::Write,
        size: 0,
        count: 1,
        window: 1,
    };
    assert_eq!(
        raw::run(PROVIDER, zero).err(),
        Some(raw::RawError::InvalidConfig)
    );
}

#[test]
fn providers_include_tcp() {
    assert!(
        rdio_fabric::providers()
            .expect("libfabric loads")
            .contains(&"ofi:tcp".to_owned())
    );
}

#[test]
fn a_message_larger_than_the_receive_is_a_length_error() {
    let mut p = Pair::new();
    let rx = p.server.register(4, Access::LOCAL_WRITE).unwrap();
    let tx = p.client.register(16, Access::empty()).unwrap();
    p.server.post_recv(1, Slice::whole(rx, 4)).unwrap();
    p.client
        .post_send(2, &[Slice::whole(tx, 16)], None)
        .unwrap();
    p.step_until("the receive to fail", |p| !p.server_done.is_empty());
    assert_eq!(p.server_done[0].wr_id, 1);
    assert_eq!(
        p.server_done[0].status,
        Err(WcError::LocalLength),
        "{:?}",
        p.server.last_error()
    );
    let detail = p.server.last_error().expect("error details kept");
    assert_eq!(detail.wr_id, Some(1));
    assert!(!detail.message.is_empty());
}

/// Memory lent with `register_external` (here: bytes stored inline in the
/// lent value) is registered with `fi_mr_reg` where it is, written from
/// without a copy into a region, read-only, and dropped on deregistration.
#[test]
fn lent_memory_is_a_read_only_write_source() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Lent([u8; 256], Arc<AtomicUsize>);
    impl AsRef<[u8]> for Lent {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }
    impl Drop for Lent {
        fn drop(&mut self) {
            self.1.fetch_add(1, Ordering::SeqCst);
        }
    }

    let mut p = Pair::new();
    let drops = Arc::new(AtomicUsize::new(0));
    let mut bytes = [0u8; 256];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = (i as u8).wrapping_mul(13);
    }
    let lent = p
        .client
        .register_external(Lent(bytes, Arc::clone(&drops)))
        .unwrap();
    assert_eq!(p.client.region(lent).unwrap(), bytes);
    assert_eq!(
        p.client.region_mut(lent),
        Err(TransportError::ReadOnly(lent))
    );
    assert_eq!(
        p.client.register_external(Vec::new()),
        Err(TransportError::OutOfBounds),
        "fi_mr_reg needs at least one byte"
    );
    let window = p
        .server
        .register(256, Access::LOCAL_WRITE | Access::REMOTE_WRITE)
        .unwrap();
    let dst = p.server.remote_buf(window, 0, 256).unwrap();
    p.client
        .post_write(4, &[Slice::whole(lent, 256)], dst, None)
        .unwrap();
    assert_eq!(p.client.deregister(lent), Err(TransportError::Busy(lent)));
    p.until_completions(1, 0);
    assert_eq!(p.client_done, [ok(4, CompletionKind::Write)]);
    assert_eq!(p.server.region(window).unwrap(), bytes);
    assert_eq!(drops.load(Ordering::SeqCst), 0, "kept while registered");
    p.client.deregister(lent).unwrap();
    assert_eq!(drops.load(Ordering::SeqCst), 1, "dropped exactly once");
}

/// A read's shape, batched: per request a data write and a
/// write-with-immediate of its status, all posted back to back before any
/// poll, then one flush. The target sees every immediate in posting order,
/// each with its request's data and status already in place; the
/// initiator's completions come back in posting order.
#[test]
fn a_batch_of_writes_and_writes_with_immediate_lands_in_order() {
    const REQUESTS: usize = 32;
    let mut p = Pair::new();
    let data = p
        .server
        .register(REQUESTS * 4096, Access::LOCAL_WRITE | Access::REMOTE_WRITE)
        .unwrap();
    let status = p
        .server
        .register(REQUESTS * 16, Access::LOCAL_WRITE | Access::REMOTE_WRITE)
        .unwrap();
    let rx = p.server.register(16, Access::LOCAL_WRITE).unwrap();
    for i in 0..REQUESTS {
        p.server.post_recv(i as u64, Slice::whole(rx, 16)).unwrap();
    }
    let src = p.client.register(REQUESTS * 4096, Access::empty()).unwrap();
    let blocks = p.client.register(REQUESTS * 16, Access::empty()).unwrap();
    for (i, chunk) in p
        .client
        .region_mut(src)
        .unwrap()
        .chunks_mut(4096)
        .enumerate()
    {
        chunk.fill(i as u8 + 1);
    }
    for (i, chunk) in p
        .client
        .region_mut(blocks)
        .unwrap()
        .chunks_mut(16)
        .enumerate()
    {
        chunk.fill(0x80 | i as u8);
    }
    for i in 0..REQUESTS {
        let slot = |region, len| Slice {
            region,
            offset: i * len,
            len,
        };
        let data_dst = p.server.remote_buf(data, i * 4096, 4096).unwrap();
        let status_dst = p.server.remote_buf(status, i * 16, 16).unwrap();
        let id = 2 * i as u64;
        p.client
            .post_write(id, &[slot(src, 4096)], data_dst, None)
            .unwrap();
        p.client
            .post_write(id + 1, &[slot(blocks, 16)], status_dst, Some(i as u32))
            .unwrap();
    }
    p.client.flush().unwrap();
    let mut seen = 0;
    let start = Instant::now();
    while seen < REQUESTS {
        assert!(start.elapsed() < SOON, "{seen} of {REQUESTS} arrived");
        let mut out = [ok(0, CompletionKind::Send); 8];
        let n = p.server.poll_completions(&mut out).unwrap();
        for completion in &out[..n] {
            assert_eq!(
                *completion,
                ok(seen as u64, CompletionKind::RecvImm { imm: seen as u32 }),
                "immediates in posting order"
            );
            let bytes = p.server.region(data).unwrap();
            assert!(
                bytes[seen * 4096..(seen + 1) * 4096]
                    .iter()
                    .all(|&b| b == seen as u8 + 1),
                "request {seen}'s data is in place when its immediate arrives"
            );
            let block = &p.server.region(status).unwrap()[seen * 16..(seen + 1) * 16];
            assert!(block.iter().all(|&b| b == 0x80 | seen as u8));
            seen += 1;
        }
        p.client.poll_completions(&mut []).unwrap();
    }
    p.until_completions(2 * REQUESTS, 0);
    let expected: Vec<_> = (0..2 * REQUESTS as u64)
        .map(|id| ok(id, CompletionKind::Write))
        .collect();
    assert_eq!(p.client_done, expected);
}

/// A bad key in the middle of a batch: what was posted before it lands
/// (the write-with-immediate before it reaches the target), nothing after
/// it does, and both sides lose the connection.
#[test]
fn an_error_in_a_batch_stops_the_batch_at_the_bad_request() {
    let mut p = Pair::new();
    let window = p
        .server
        .register(3 * 64, Access::LOCAL_WRITE | Access::REMOTE_WRITE)
        .unwrap();
    let rx = p.server.register(8, Access::LOCAL_WRITE).unwrap();
    p.server.post_recv(1, Slice::whole(rx, 8)).unwrap();
    p.server.post_recv(2, Slice::whole(rx, 8)).unwrap();
    let src = p.client.register(64, Access::empty()).unwrap();
    fill(&mut p.client, src, &[7; 64]);
    let slot = |p: &Pair, i: usize| p.server.remote_buf(window, i * 64, 64).unwrap();
    let mut bad = slot(&p, 1);
    bad.key = bad.key.wrapping_add(0x5a5a);
    let page = [Slice::whole(src, 64)];
    p.client
        .post_write(10, &page, slot(&p, 0), Some(9))
        .unwrap();
    p.client.post_write(11, &page, bad, None).unwrap();
    p.client
        .post_write(12, &page, slot(&p, 2), Some(10))
        .unwrap();
    p.client.flush().unwrap();
    p.step_until("both sides to lose the connection", |p| {
        p.client_lost && p.server_lost
    });
    assert_eq!(
        p.server_done.first(),
        Some(&ok(1, CompletionKind::RecvImm { imm: 9 })),
        "{:?}",
        p.server_done
    );
    assert!(
        p.server_done[1..].iter().all(|c| c.status.is_err()),
        "{:?}",
        p.server_done
    );
    let bytes = p.server.region(window).unwrap();
    assert!(
        bytes[..64].iter().all(|&b| b == 7),
        "the first write landed"
    );
    assert!(
        bytes[64..].iter().all(|&b| b == 0),
        "nothing after the bad one"
    );
    let ids: Vec<_> = p.client_done.iter().map(|c| c.wr_id).collect();
    assert_eq!(ids, [10, 11, 12], "every request completes, once, in order");
}

/// A flush with nothing posted, or after the end, does nothing; a post is
/// handed on by `poll_completions` alone.
#[test]
fn an_empty_flush_is_harmless_and_poll_hands_posts_on() {
    let mut p = Pair::new();
    for _ in 0..3 {
        p.client.flush().unwrap();
        p.server.flush().unwrap();
    }
    let rx = p.server.register(8, Access::LOCAL_WRITE).unwrap();
    p.server.post_recv(1, Slice::whole(rx, 8)).unwrap();
    let src = p.client.register(8, Access::empty()).unwrap();
    fill(&mut p.client, src, b"polled!!");
    p.client
        .post_send(2, &[Slice::whole(src, 8)], None)
        .unwrap();
    p.until_completions(1, 1);
    assert_eq!(p.server_done, [ok(1, CompletionKind::Recv { len: 8 })]);
    assert_eq!(p.server.region(rx).unwrap(), b"polled!!");
    p.client.disconnect();
    assert_eq!(
        p.client.flush(),
        Ok(()),
        "a flush after the end is harmless"
    );
}
