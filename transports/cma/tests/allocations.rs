//! No heap allocation per batch: a counting global allocator watches a
//! steady-state loop of read-shaped batches over a real cma connection —
//! the client's request sends, the server's data writes and
//! write-with-immediate status blocks, handed on by one flush a round,
//! and both sides' completions. Every queue has grown to its size in the
//! warm-up rounds; after that a round must allocate nothing (the scratch
//! iovecs of a batch are kept, not allocated per flush).
//!
//! No libtest harness (`harness = false`): the counter is process-wide,
//! and libtest's own threads allocate while tests run.

mod common;

use std::time::Instant;

use common::{NONE, SOON, pair};
use rdio_cma::CmaTransport;
use rdio_transport::{Access, CompletionKind, RegionId, Slice, Transport};

#[global_allocator]
static GLOBAL: rdio_alloc_count::Counting = rdio_alloc_count::Counting;

const DEPTH: usize = 32;

struct Regions {
    data: RegionId,
    status: RegionId,
    replies: RegionId,
    requests: RegionId,
    inbox: RegionId,
    src: RegionId,
    blocks: RegionId,
}

/// Drain `t` until `count` completions came, stepping `peer` meanwhile;
/// re-posts each receive it drains into `repost`.
fn drain(
    t: &mut CmaTransport,
    peer: &mut CmaTransport,
    count: usize,
    repost: Option<RegionId>,
) -> usize {
    let start = Instant::now();
    let mut out = [NONE; DEPTH];
    let mut seen = 0;
    while seen < count {
        assert!(start.elapsed() < SOON, "{seen} of {count} completions");
        peer.poll_completions(&mut []).expect("peer poll");
        let n = t.poll_completions(&mut out).expect("poll");
        for completion in &out[..n] {
            assert_eq!(completion.status, Ok(()), "{completion:?}");
            if let (Some(region), CompletionKind::Recv { .. } | CompletionKind::RecvImm { .. }) =
                (repost, completion.kind)
            {
                t.post_recv(completion.wr_id, Slice::whole(region, 64))
                    .expect("repost");
            }
        }
        seen += n;
    }
    seen
}

/// One read-shaped round at depth `DEPTH`: requests one way, data writes
/// and status blocks back, every completion drained.
fn round(client: &mut CmaTransport, server: &mut CmaTransport, r: &Regions) {
    for i in 0..DEPTH {
        client
            .post_send(
                i as u64,
                &[Slice {
                    region: r.requests,
                    offset: i * 64,
                    len: 64,
                }],
                None,
            )
            .expect("request");
    }
    client.flush().expect("flush");
    drain(server, client, DEPTH, Some(r.inbox));
    for i in 0..DEPTH {
        let data = client.remote_buf(r.data, i * 4096, 4096).expect("data");
        let status = client.remote_buf(r.status, i * 16, 16).expect("status");
        server
            .post_write(
                100 + i as u64,
                &[Slice {
                    region: r.src,
                    offset: i * 4096,
                    len: 4096,
                }],
                data,
                None,
            )
            .expect("data write");
        server
            .post_write(
                200 + i as u64,
                &[Slice {
                    region: r.blocks,
                    offset: i * 16,
                    len: 16,
                }],
                status,
                Some(i as u32),
            )
            .expect("status write");
    }
    server.flush().expect("flush");
    drain(client, server, 2 * DEPTH, Some(r.replies));
    drain(server, client, 2 * DEPTH, None);
}

fn main() {
    let (mut client, mut server) = pair();
    let remote = Access::LOCAL_WRITE | Access::REMOTE_WRITE;
    let r = Regions {
        data: client.register(DEPTH * 4096, remote).expect("register"),
        status: client.register(DEPTH * 16, remote).expect("register"),
        replies: client.register(64, Access::LOCAL_WRITE).expect("register"),
        requests: client
            .register(DEPTH * 64, Access::empty())
            .expect("register"),
        inbox: server.register(64, Access::LOCAL_WRITE).expect("register"),
        src: server
            .register(DEPTH * 4096, Access::empty())
            .expect("register"),
        blocks: server
            .register(DEPTH * 16, Access::empty())
            .expect("register"),
    };
    for i in 0..DEPTH as u64 {
        client
            .post_recv(i, Slice::whole(r.replies, 64))
            .expect("recv");
        server
            .post_recv(i, Slice::whole(r.inbox, 64))
            .expect("recv");
    }
    for _ in 0..20 {
        round(&mut client, &mut server, &r);
    }
    let before = rdio_alloc_count::allocations();
    const ROUNDS: usize = 200;
    for _ in 0..ROUNDS {
        round(&mut client, &mut server, &r);
    }
    let allocated = rdio_alloc_count::allocations() - before;
    assert_eq!(
        allocated, 0,
        "{allocated} allocations in {ROUNDS} rounds of {DEPTH} read-shaped requests"
    );
    println!("allocations: cma batches allocate nothing per round ({ROUNDS} rounds of {DEPTH})");
}
