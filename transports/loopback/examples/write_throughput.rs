//! 1 MiB RDMA writes over the loopback against a plain `memcpy` of the same
//! size: the loopback's cost is one `memcpy` per write plus bookkeeping.
//!
//! `cargo run --release -p rdio-loopback --example write_throughput`

use std::hint::black_box;
use std::thread;
use std::time::{Duration, Instant};

use rdio_loopback::{Config, SyncEndpoint, pair, sync_pair};
use rdio_transport::{Access, Completion, CompletionKind, RegionId, Slice, Transport};

const SIZE: usize = 1 << 20;
const ROUNDS: u32 = 2_000;
const PLACEHOLDER: Completion = Completion {
    wr_id: 0,
    kind: CompletionKind::Send,
    status: Ok(()),
};

fn gib_per_s(elapsed: Duration) -> f64 {
    (SIZE as f64 * f64::from(ROUNDS)) / elapsed.as_secs_f64() / f64::from(1u32 << 30)
}

/// `memcpy` of 1 MiB into a ring of `window` 1 MiB buffers: the same
/// working set as the loopback runs below.
fn memcpy(window: usize) -> Duration {
    let source = vec![7u8; SIZE];
    let mut target = vec![0u8; window * SIZE];
    let started = Instant::now();
    for round in 0..ROUNDS as usize {
        let slot = round % window;
        target[slot * SIZE..][..SIZE].copy_from_slice(black_box(&source));
        black_box(&mut target);
    }
    started.elapsed()
}

fn setup(
    source: &mut impl Transport,
    target: &mut impl Transport,
) -> (RegionId, rdio_transport::RemoteBuf) {
    let region = source.register(SIZE, Access::empty()).unwrap();
    source.region_mut(region).unwrap().fill(7);
    let window = target.register(SIZE, Access::REMOTE_WRITE).unwrap();
    (region, target.remote_buf(window, 0, SIZE).unwrap())
}

/// Single thread: post, let the target deliver, drain the completion.
fn deterministic() -> Duration {
    let (mut server, mut client) = pair(Config::default());
    let (source, dst) = setup(&mut server, &mut client);
    let mut out = [PLACEHOLDER; 4];
    let started = Instant::now();
    for round in 0..ROUNDS {
        server
            .post_write(u64::from(round), &[Slice::whole(source, SIZE)], dst, None)
            .unwrap();
        client.poll_completions(&mut []).unwrap();
        assert_eq!(server.poll_completions(&mut out), Ok(1));
    }
    started.elapsed()
}

/// Two threads, like reads with `window` of them in flight: the server
/// writes each MiB with immediate into one of `window` client buffers, the
/// client waits for the notification and returns a credit (an empty send).
fn threaded(window: usize) -> Duration {
    let (mut server, mut client) = sync_pair(Config::default());
    let source = server.register(SIZE, Access::empty()).unwrap();
    server.region_mut(source).unwrap().fill(7);
    let ring = client
        .register(window * SIZE, Access::REMOTE_WRITE)
        .unwrap();
    let ring = client.remote_buf(ring, 0, window * SIZE).unwrap();
    let notice = client.register(0, Access::LOCAL_WRITE).unwrap();
    let credit = server.register(0, Access::LOCAL_WRITE).unwrap();
    for slot in 0..window as u64 {
        client.post_recv(slot, Slice::whole(notice, 0)).unwrap();
        server.post_recv(slot, Slice::whole(credit, 0)).unwrap();
    }
    let started = Instant::now();
    let writer = thread::spawn(move || {
        let mut out = [PLACEHOLDER; 16];
        let mut credits = window;
        let mut next_recv = window as u64;
        let mut written = 0;
        let mut step = |server: &mut SyncEndpoint, credits: &mut usize| {
            server.wait(None).unwrap();
            let drained = server.poll_completions(&mut out).unwrap();
            for completion in &out[..drained] {
                if matches!(completion.kind, CompletionKind::Recv { .. }) {
                    *credits += 1;
                    server
                        .post_recv(next_recv, Slice::whole(credit, 0))
                        .unwrap();
                    next_recv += 1;
                } else {
                    written += 1;
                }
            }
            written
        };
        for round in 0..ROUNDS {
            while credits == 0 {
                step(&mut server, &mut credits);
            }
            // The same source for every block: reading it concurrently is fine.
            let slot = round as usize % window;
            let dst = rdio_transport::RemoteBuf {
                addr: ring.addr + (slot * SIZE) as u64,
                len: SIZE as u32,
                ..ring
            };
            server
                .post_write(
                    u64::from(round),
                    &[Slice::whole(source, SIZE)],
                    dst,
                    Some(round),
                )
                .unwrap();
            credits -= 1;
        }
        // Leaving disconnects, which would flush the requests still
        // outstanding on both sides: wait for every write and every credit.
        // (The last write was just posted, so there is something to wait for.)
        while step(&mut server, &mut credits) < ROUNDS || credits < window {}
    });
    let mut out = [PLACEHOLDER; 16];
    let mut received = 0;
    let mut next_recv = window as u64;
    while received < ROUNDS {
        client.wait(None).unwrap();
        let drained = client.poll_completions(&mut out).unwrap();
        for completion in &out[..drained] {
            if matches!(completion.kind, CompletionKind::RecvImm { .. }) {
                received += 1;
                client
                    .post_recv(next_recv, Slice::whole(notice, 0))
                    .unwrap();
                next_recv += 1;
                client.post_send(u64::from(received), &[], None).unwrap();
            }
        }
    }
    writer.join().unwrap();
    started.elapsed()
}

/// One measured scenario: name, target buffers (MiB), run.
type Scenario = (&'static str, usize, fn() -> Duration);

fn main() {
    let runs: [Scenario; 3] = [
        ("write, one thread", 1, deterministic),
        ("reads, two threads, 1 in flight", 1, || threaded(1)),
        ("reads, two threads, 4 in flight", 4, || threaded(4)),
    ];
    for (name, window, run) in runs {
        let baseline = gib_per_s(memcpy(window));
        let rate = gib_per_s(run());
        println!(
            "loopback {name:32} {rate:6.2} GiB/s, memcpy into {window} MiB {baseline:6.2} GiB/s: {:.2}x",
            rate / baseline
        );
    }
}
