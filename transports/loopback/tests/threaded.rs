//! The thread-safe pair: endpoints on two threads, `wait` blocking on the
//! condition variable.

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::{drain, ok, recv};
use rdio_loopback::{Config, SyncEndpoint, sync_pair};
use rdio_transport::{
    Access, Completion,
    CompletionKind::{RecvImm, Send, Write},
    RegionId, RemoteBuf, Slice, Transport, TransportError, WcError,
};

/// Long enough never to fire on a loaded machine, short enough that a lost
/// wake-up fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(20);

/// Blocks until `count` completions arrived; returns them sorted by wr_id,
/// then kind name (`Recv` before `Send`), so tests can compare sets whose interleaving between the
/// send and receive queues depends on thread timing.
fn collect(endpoint: &mut SyncEndpoint, count: usize) -> Vec<Completion> {
    let mut got = Vec::with_capacity(count);
    let deadline = Instant::now() + PATIENCE;
    while got.len() < count {
        assert!(Instant::now() < deadline, "lost wake-up: {got:?}");
        endpoint.wait(Some(PATIENCE)).unwrap();
        got.extend(drain(endpoint));
    }
    assert_eq!(got.len(), count, "{got:?}");
    got.sort_by_key(|completion| (completion.wr_id, format!("{:?}", completion.kind)));
    got
}

#[test]
fn sync_endpoints_are_send() {
    fn assert_send<T: std::marker::Send + 'static>() {}
    assert_send::<SyncEndpoint>();
}

#[test]
fn two_threads_exchange_10_000_messages() {
    // Miri checks the same code for data races, at a thousandth of the speed.
    const ROUNDS: u32 = if cfg!(miri) { 30 } else { 10_000 };
    let (client, server) = sync_pair(Config::default());
    let ready = Arc::new(Barrier::new(2));
    let start = |mut endpoint: SyncEndpoint, ready: Arc<Barrier>, first_sender: bool| {
        thread::spawn(move || {
            let recv_buf = endpoint.register(4, Access::LOCAL_WRITE).unwrap();
            let send_buf = endpoint.register(4, Access::empty()).unwrap();
            let send = |endpoint: &mut SyncEndpoint, round: u32| {
                endpoint
                    .region_mut(send_buf)
                    .unwrap()
                    .copy_from_slice(&round.to_le_bytes());
                endpoint
                    .post_send(u64::from(round), &[Slice::whole(send_buf, 4)], None)
                    .unwrap();
            };
            endpoint.post_recv(0, Slice::whole(recv_buf, 4)).unwrap();
            ready.wait();
            for round in 0..ROUNDS {
                let id = u64::from(round);
                if first_sender {
                    // Ping, then expect its completion and the pong.
                    send(&mut endpoint, round);
                    assert_eq!(collect(&mut endpoint, 2), [ok(id, recv(4)), ok(id, Send)]);
                } else if round == 0 {
                    assert_eq!(collect(&mut endpoint, 1), [ok(0, recv(4))]);
                } else {
                    // The previous pong's completion, then this round's ping.
                    assert_eq!(
                        collect(&mut endpoint, 2),
                        [ok(id - 1, Send), ok(id, recv(4))]
                    );
                }
                assert_eq!(endpoint.region(recv_buf).unwrap(), round.to_le_bytes());
                endpoint
                    .post_recv(id + 1, Slice::whole(recv_buf, 4))
                    .unwrap();
                if !first_sender {
                    send(&mut endpoint, round);
                }
            }
            endpoint
        })
    };
    let client = start(client, Arc::clone(&ready), true);
    let server = start(server, ready, false);
    let mut client = client.join().unwrap();
    let mut server = server.join().unwrap();
    assert_eq!(collect(&mut server, 1), [ok(u64::from(ROUNDS) - 1, Send)]);
    assert!(drain(&mut client).is_empty());
}

/// The server streams blocks into a ring of client buffers with
/// write-with-immediate, the client returns a credit (an empty send) per
/// block after checking it: concurrent placement into both endpoints'
/// memory while their owners read and write other regions.
#[test]
fn rdma_write_stream_with_credits() {
    const SLOTS: usize = 4;
    const BLOCK: usize = if cfg!(miri) { 64 } else { 16 * 1024 };
    const BLOCKS: u32 = if cfg!(miri) { 40 } else { 2_000 };
    let pattern = |block: u32, index: usize| (block as usize * 31 + index) as u8;
    let (mut client, mut server) = sync_pair(Config::default());
    let ring = client
        .register(SLOTS * BLOCK, Access::REMOTE_WRITE)
        .unwrap();
    let ring_buf = client.remote_buf(ring, 0, SLOTS * BLOCK).unwrap();
    let notice = client.register(0, Access::LOCAL_WRITE).unwrap();
    let credit_buf = server.register(0, Access::LOCAL_WRITE).unwrap();
    for slot in 0..SLOTS as u64 {
        client.post_recv(slot, Slice::whole(notice, 0)).unwrap();
        server.post_recv(slot, Slice::whole(credit_buf, 0)).unwrap();
    }
    let server = thread::spawn(move || {
        // One source region per slot: a region is busy while any request
        // referencing it is outstanding, so a pool carved from one region
        // could not be refilled while other blocks are in flight.
        let sources: Vec<RegionId> = (0..SLOTS)
            .map(|_| server.register(BLOCK, Access::empty()).unwrap())
            .collect();
        let mut pending = VecDeque::new();
        let mut credits = SLOTS;
        let mut next_recv = SLOTS as u64;
        for block in 0..BLOCKS {
            while credits == 0 || server.region_mut(sources[block as usize % SLOTS]).is_err() {
                server.wait(Some(PATIENCE)).unwrap();
                for completion in drain(&mut server) {
                    assert_eq!(completion.status, Ok(()), "{completion:?}");
                    if completion.kind == recv(0) {
                        credits += 1;
                        server
                            .post_recv(next_recv, Slice::whole(credit_buf, 0))
                            .unwrap();
                        next_recv += 1;
                    } else {
                        assert_eq!(completion, ok(pending.pop_front().unwrap(), Write));
                    }
                }
            }
            let source = sources[block as usize % SLOTS];
            for (index, byte) in server.region_mut(source).unwrap().iter_mut().enumerate() {
                *byte = pattern(block, index);
            }
            let slot = block as usize % SLOTS;
            let dst = RemoteBuf {
                addr: ring_buf.addr + (slot * BLOCK) as u64,
                len: BLOCK as u32,
                ..ring_buf
            };
            server
                .post_write(
                    u64::from(block),
                    &[Slice::whole(source, BLOCK)],
                    dst,
                    Some(block),
                )
                .unwrap();
            pending.push_back(u64::from(block));
            credits -= 1;
        }
        server
    });
    let mut next_recv = SLOTS as u64;
    let mut expected = 0u32;
    let mut sends = 0u64;
    while expected < BLOCKS {
        client.wait(Some(PATIENCE)).unwrap();
        for completion in drain(&mut client) {
            if completion.kind == Send {
                assert_eq!(completion, ok(sends, Send));
                sends += 1;
                continue;
            }
            assert_eq!(completion.kind, RecvImm { imm: expected });
            let slot = expected as usize % SLOTS;
            let block = &client.region(ring).unwrap()[slot * BLOCK..][..BLOCK];
            assert!(
                block
                    .iter()
                    .enumerate()
                    .all(|(index, &byte)| byte == pattern(expected, index)),
                "block {expected}"
            );
            client
                .post_recv(next_recv, Slice::whole(notice, 0))
                .unwrap();
            next_recv += 1;
            client.post_send(u64::from(expected), &[], None).unwrap();
            expected += 1;
        }
    }
    server.join().unwrap();
}

#[test]
fn wait_times_out_without_completions() {
    let (mut a, _b) = sync_pair(Config::default());
    let started = Instant::now();
    assert_eq!(a.wait(Some(Duration::from_millis(30))), Ok(()));
    assert!(started.elapsed() >= Duration::from_millis(30));
    assert!(drain(&mut a).is_empty());
}

#[test]
fn wait_wakes_when_the_peer_goes_away() {
    let (mut a, b) = sync_pair(Config::default());
    let region = a.register(8, Access::LOCAL_WRITE).unwrap();
    a.post_recv(1, Slice::whole(region, 8)).unwrap();
    let waiter = thread::spawn(move || {
        let started = Instant::now();
        a.wait(Some(PATIENCE)).unwrap();
        let woken_after = started.elapsed();
        let flushed = drain(&mut a);
        (flushed, a.wait(None), woken_after)
    });
    // Usually the waiter is blocked by now; if not, it must still see the
    // disconnect when it gets to wait.
    thread::sleep(Duration::from_millis(20));
    drop(b);
    let (flushed, then, woken_after) = waiter.join().unwrap();
    assert_eq!(
        flushed,
        [common::failed(
            1,
            common::FAILED_RECV,
            WcError::Disconnected
        )]
    );
    assert_eq!(then, Err(TransportError::Disconnected));
    assert!(
        woken_after < PATIENCE,
        "woken by the disconnect, not by the timeout"
    );
}
