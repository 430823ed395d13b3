//! Every RC rule of the deterministic pair, with exact completions.

mod common;

use common::{FAILED_RECV, drain, failed, ok, poll, recv};
use rdio_loopback::{Config, Endpoint, pair};
use rdio_transport::{
    Access,
    CompletionKind::{RecvImm, Send, Write},
    RegionId, RemoteBuf, Slice, Transport, TransportError, WcError,
};

const RECV_BUF: usize = 64;

/// A pair where the second endpoint has one receive buffer region and one
/// remotely writable region, and the first one a send region holding `payload`.
struct Setup {
    a: Endpoint,
    b: Endpoint,
    a_src: RegionId,
    b_recv: RegionId,
    b_target: RegionId,
}

fn setup(config: Config, payload: &[u8]) -> Setup {
    let (mut a, mut b) = pair(config);
    let a_src = a.register(4096, Access::empty()).unwrap();
    a.region_mut(a_src).unwrap()[..payload.len()].copy_from_slice(payload);
    let b_recv = b.register(4 * RECV_BUF, Access::LOCAL_WRITE).unwrap();
    let b_target = b.register(4096, Access::REMOTE_WRITE).unwrap();
    Setup {
        a,
        b,
        a_src,
        b_recv,
        b_target,
    }
}

fn recv_slot(region: RegionId, n: usize) -> Slice {
    Slice {
        region,
        offset: n * RECV_BUF,
        len: RECV_BUF,
    }
}

fn src(region: RegionId, offset: usize, len: usize) -> Slice {
    Slice {
        region,
        offset,
        len,
    }
}

/// Both endpoints are down: posts fail, and with nothing left to drain,
/// polling and waiting report the disconnect.
fn assert_down(endpoint: &mut Endpoint, region: RegionId) {
    assert_eq!(
        endpoint.post_recv(99, recv_slot(region, 0)),
        Err(TransportError::Disconnected)
    );
    assert_eq!(
        endpoint.post_send(99, &[], None),
        Err(TransportError::Disconnected)
    );
    assert_eq!(poll(endpoint), Err(TransportError::Disconnected));
    assert_eq!(endpoint.wait(None), Err(TransportError::Disconnected));
}

#[test]
fn registration_is_zeroed_with_deterministic_keys_and_addresses() {
    let layout = |seed| {
        let (mut a, mut b) = pair(Config {
            seed,
            ..Config::default()
        });
        let mut bufs = Vec::new();
        for endpoint in [&mut a, &mut b] {
            for len in [1, 5000, 64] {
                let region = endpoint.register(len, Access::REMOTE_WRITE).unwrap();
                assert!(
                    endpoint
                        .region(region)
                        .unwrap()
                        .iter()
                        .all(|&byte| byte == 0)
                );
                assert_eq!(endpoint.region(region).unwrap().len(), len);
                bufs.push(endpoint.remote_buf(region, 0, len).unwrap());
            }
        }
        bufs
    };
    let bufs = layout(1);
    assert_eq!(bufs, layout(1), "same seed, same keys and addresses");
    assert_ne!(bufs, layout(2));
    let mut keys: Vec<u32> = bufs.iter().map(|buf| buf.key).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), bufs.len(), "keys are unique");
    for endpoint_bufs in bufs.chunks(3) {
        for pair in endpoint_bufs.windows(2) {
            assert!(
                pair[0].addr + u64::from(pair[0].len) < pair[1].addr,
                "regions do not touch"
            );
        }
    }
}

#[test]
fn remote_buf_and_region_errors() {
    let (mut a, _b) = pair(Config::default());
    let region = a.register(100, Access::REMOTE_WRITE).unwrap();
    let whole = a.remote_buf(region, 0, 100).unwrap();
    assert_eq!(
        a.remote_buf(region, 40, 60).unwrap(),
        RemoteBuf {
            addr: whole.addr + 40,
            key: whole.key,
            len: 60
        }
    );
    assert_eq!(
        a.remote_buf(region, 41, 60),
        Err(TransportError::OutOfBounds)
    );
    assert_eq!(
        a.remote_buf(region, usize::MAX, 2),
        Err(TransportError::OutOfBounds)
    );
    let unknown = RegionId(7);
    assert_eq!(
        a.remote_buf(unknown, 0, 1),
        Err(TransportError::UnknownRegion(unknown))
    );
    assert_eq!(
        a.region(unknown).err(),
        Some(TransportError::UnknownRegion(unknown))
    );
    assert_eq!(
        a.deregister(unknown),
        Err(TransportError::UnknownRegion(unknown))
    );
    a.deregister(region).unwrap();
    assert_eq!(
        a.region_mut(region).err(),
        Some(TransportError::UnknownRegion(region))
    );
}

#[test]
fn send_gathers_into_the_receive_in_order() {
    let Setup {
        mut a,
        mut b,
        a_src,
        b_recv,
        ..
    } = setup(Config::default(), b"worldhello");
    b.post_recv(10, recv_slot(b_recv, 1)).unwrap();
    a.post_send(1, &[src(a_src, 5, 5), src(a_src, 0, 5)], None)
        .unwrap();
    assert!(
        drain(&mut a).is_empty(),
        "executed only once the receiver enters the transport"
    );
    assert_eq!(drain(&mut b), [ok(10, recv(10))]);
    assert_eq!(drain(&mut a), [ok(1, Send)]);
    assert_eq!(
        &b.region(b_recv).unwrap()[RECV_BUF..RECV_BUF + 12],
        b"helloworld\0\0"
    );
}

/// `ready` delivers what the peer posted and tells whether anything waits
/// to be drained, without draining it; once the pair is down and drained it
/// reports the disconnect, like `poll_completions`.
#[test]
fn ready_reports_waiting_completions_without_draining_them() {
    let Setup {
        mut a,
        mut b,
        a_src,
        b_recv,
        ..
    } = setup(Config::default(), b"x");
    assert_eq!(b.ready(), Ok(false));
    b.post_recv(10, recv_slot(b_recv, 0)).unwrap();
    a.post_send(1, &[src(a_src, 0, 1)], None).unwrap();
    assert_eq!(a.ready(), Ok(false), "not executed before b enters");
    assert_eq!(b.ready(), Ok(true), "entering b executed the send");
    assert_eq!(b.ready(), Ok(true), "and nothing was drained");
    assert_eq!(a.ready(), Ok(true));
    assert_eq!(drain(&mut b), [ok(10, recv(1))]);
    assert_eq!(b.ready(), Ok(false));
    a.disconnect();
    assert_eq!(drain(&mut a), [ok(1, Send)]);
    assert_eq!(a.ready(), Err(TransportError::Disconnected));
    assert_eq!(b.ready(), Err(TransportError::Disconnected));
}

#[test]
fn sends_consume_receives_in_order() {
    let Setup {
        mut a,
        mut b,
        a_src,
        b_recv,
        ..
    } = setup(Config::default(), b"abc");
    for n in 0..3 {
        b.post_recv(10 + n as u64, recv_slot(b_recv, n)).unwrap();
    }
    for n in 0..3 {
        a.post_send(n as u64, &[src(a_src, n, 1)], None).unwrap();
    }
    assert_eq!(
        drain(&mut b),
        [ok(10, recv(1)), ok(11, recv(1)), ok(12, recv(1))]
    );
    assert_eq!(drain(&mut a), [ok(0, Send), ok(1, Send), ok(2, Send)]);
    let buf = b.region(b_recv).unwrap();
    assert_eq!([buf[0], buf[RECV_BUF], buf[2 * RECV_BUF]], *b"abc");
}

/// An endpoint's completions come out in the order they happened, across
/// its send and receive queues, also when drained one at a time.
#[test]
fn completions_of_both_queues_drain_in_completion_order() {
    let Setup {
        mut a,
        mut b,
        a_src,
        b_recv,
        ..
    } = setup(Config::default(), b"ab");
    let a_recv = a.register(4 * RECV_BUF, Access::LOCAL_WRITE).unwrap();
    a.post_recv(20, recv_slot(a_recv, 0)).unwrap();
    a.post_recv(21, recv_slot(a_recv, 1)).unwrap();
    b.post_recv(10, recv_slot(b_recv, 0)).unwrap();
    b.post_recv(11, recv_slot(b_recv, 1)).unwrap();
    a.post_send(1, &[src(a_src, 0, 1)], None).unwrap();
    // Entering b executes a's send (a: send 1 done) before b posts its own,
    // which a executes when it enters next (a: receive 20 done).
    b.post_send(30, &[src(b_recv, 2 * RECV_BUF, 1)], None)
        .unwrap();
    assert_eq!(a.ready(), Ok(true));
    a.post_send(2, &[src(a_src, 1, 1)], None).unwrap();
    // The same again: a: send 2, then receive 21.
    b.post_send(31, &[src(b_recv, 3 * RECV_BUF, 1)], None)
        .unwrap();
    assert_eq!(a.ready(), Ok(true));
    let mut one = [common::PLACEHOLDER; 1];
    let mut order = Vec::new();
    while a.poll_completions(&mut one) == Ok(1) {
        order.push(one[0]);
    }
    assert_eq!(
        order,
        [ok(1, Send), ok(20, recv(1)), ok(2, Send), ok(21, recv(1))]
    );
    assert_eq!(
        drain(&mut b),
        [ok(10, recv(1)), ok(30, Send), ok(11, recv(1)), ok(31, Send)]
    );
}

#[test]
fn local_protection_for_bad_gather_elements() {
    let cases = [
        ("out of bounds", src(RegionId(0), 4000, 200)),
        ("unknown region", src(RegionId(42), 0, 1)),
    ];
    // Alone (the one-element request the loopback posts without a loop)
    // and after a good element.
    for ((what, bad), alone) in cases
        .into_iter()
        .flat_map(|case| [(case, true), (case, false)])
    {
        let Setup {
            mut a,
            mut b,
            a_src,
            b_recv,
            ..
        } = setup(Config::default(), b"x");
        assert_eq!(bad.region == a_src, what == "out of bounds");
        b.post_recv(10, recv_slot(b_recv, 0)).unwrap();
        b.post_recv(11, recv_slot(b_recv, 1)).unwrap();
        a.post_send(1, &[src(a_src, 0, 1)], None).unwrap();
        let gather = if alone {
            vec![bad]
        } else {
            vec![src(a_src, 0, 1), bad]
        };
        a.post_send(2, &gather, None).unwrap();
        a.post_send(3, &[src(a_src, 0, 1)], None).unwrap();
        assert_eq!(
            drain(&mut b),
            [ok(10, recv(1)), failed(11, FAILED_RECV, WcError::Flushed)],
            "{what}"
        );
        assert_eq!(
            drain(&mut a),
            [
                ok(1, Send),
                failed(2, Send, WcError::LocalProtection),
                failed(3, Send, WcError::Flushed)
            ],
            "{what}"
        );
        assert_down(&mut a, a_src);
        assert_down(&mut b, b_recv);
    }
}

#[test]
fn remote_access_errors_put_the_pair_in_error_state() {
    let Setup {
        b: probe, b_target, ..
    } = setup(Config::default(), b"");
    let good = probe.remote_buf(b_target, 0, 4096).unwrap();
    let cases = [
        (
            "unknown key",
            RemoteBuf {
                key: good.key ^ 1,
                ..good
            },
        ),
        (
            "below the region",
            RemoteBuf {
                addr: good.addr - 1,
                ..good
            },
        ),
        (
            "past the region",
            RemoteBuf {
                addr: good.addr + 4090,
                ..good
            },
        ),
        ("no REMOTE_WRITE", RemoteBuf { key: 0, ..good }),
        ("deregistered", good),
    ];
    for (what, mut dst) in cases {
        let Setup {
            mut a,
            mut b,
            a_src,
            b_recv,
            b_target,
        } = setup(Config::default(), b"payload!");
        match what {
            "no REMOTE_WRITE" => dst = b.remote_buf(b_recv, 0, 64).unwrap(),
            "deregistered" => b.deregister(b_target).unwrap(),
            _ => {}
        }
        b.post_recv(10, recv_slot(b_recv, 0)).unwrap();
        a.post_write(1, &[src(a_src, 0, 8)], dst, None).unwrap();
        a.post_send(2, &[src(a_src, 0, 8)], None).unwrap();
        assert_eq!(
            drain(&mut b),
            [failed(10, FAILED_RECV, WcError::Flushed)],
            "{what}"
        );
        assert_eq!(
            drain(&mut a),
            [
                failed(1, Write, WcError::RemoteAccess),
                failed(2, Send, WcError::Flushed)
            ],
            "{what}"
        );
        if what != "deregistered" {
            assert!(
                b.region(b_target).unwrap().iter().all(|&byte| byte == 0),
                "{what}: nothing placed"
            );
        }
        assert_down(&mut a, a_src);
        assert_down(&mut b, b_recv);
    }
}

#[test]
fn zero_length_writes_are_not_key_checked() {
    let Setup {
        mut a,
        mut b,
        b_recv,
        ..
    } = setup(Config::default(), b"");
    b.post_recv(10, recv_slot(b_recv, 0)).unwrap();
    a.post_write(1, &[], RemoteBuf::default(), Some(7)).unwrap();
    assert_eq!(drain(&mut b), [ok(10, RecvImm { imm: 7 })]);
    assert_eq!(drain(&mut a), [ok(1, Write)]);
}

#[test]
fn receiver_not_ready_is_fatal() {
    for imm in [None, Some(5)] {
        let Setup {
            mut a,
            mut b,
            a_src,
            b_recv,
            b_target,
        } = setup(Config::default(), b"z");
        let dst = b.remote_buf(b_target, 0, 1).unwrap();
        match imm {
            None => a.post_send(1, &[src(a_src, 0, 1)], None).unwrap(),
            Some(imm) => a
                .post_write(1, &[src(a_src, 0, 1)], dst, Some(imm))
                .unwrap(),
        }
        let kind = if imm.is_some() { Write } else { Send };
        // The receive posted after the message arrived is too late.
        assert_eq!(
            b.post_recv(10, recv_slot(b_recv, 0)),
            Err(TransportError::Disconnected)
        );
        assert_eq!(drain(&mut a), [failed(1, kind, WcError::ReceiverNotReady)]);
        assert_eq!(
            b.region(b_target).unwrap()[0],
            0,
            "a write-with-immediate without receive places nothing"
        );
        assert_down(&mut a, a_src);
        assert_down(&mut b, b_recv);
    }
}

#[test]
fn message_longer_than_the_receive() {
    let Setup {
        mut a,
        mut b,
        a_src,
        b_recv,
        ..
    } = setup(Config::default(), b"");
    b.post_recv(
        10,
        Slice {
            region: b_recv,
            offset: 0,
            len: 99,
        },
    )
    .unwrap();
    b.post_recv(11, recv_slot(b_recv, 2)).unwrap();
    a.post_send(1, &[src(a_src, 0, 100)], None).unwrap();
    assert_eq!(
        drain(&mut b),
        [
            failed(10, FAILED_RECV, WcError::LocalLength),
            failed(11, FAILED_RECV, WcError::Flushed)
        ]
    );
    assert_eq!(drain(&mut a), [failed(1, Send, WcError::RemoteOperation)]);
    assert_down(&mut a, a_src);
}

#[test]
fn receive_buffers_need_local_write() {
    let cases = [
        ("no LOCAL_WRITE", Access::REMOTE_WRITE, 0),
        ("out of bounds", Access::LOCAL_WRITE, 4090),
        ("unknown region", Access::LOCAL_WRITE, usize::MAX),
    ];
    for (what, access, offset) in cases {
        let (mut a, mut b) = pair(Config::default());
        let a_src = a.register(16, Access::empty()).unwrap();
        let region = b.register(4096, access).unwrap();
        let buf = match offset {
            usize::MAX => Slice::whole(RegionId(9), 16),
            offset => Slice {
                region,
                offset,
                len: 16,
            },
        };
        b.post_recv(10, buf).unwrap();
        a.post_send(1, &[src(a_src, 0, 16)], None).unwrap();
        assert_eq!(
            drain(&mut b),
            [failed(10, FAILED_RECV, WcError::LocalProtection)],
            "{what}"
        );
        assert_eq!(
            drain(&mut a),
            [failed(1, Send, WcError::RemoteOperation)],
            "{what}"
        );
    }
}

/// A receive posted against a region id that is not registered yet holds
/// nothing, so it does not land data in the region that gets the id later
/// (which it would not keep busy): it fails as one naming an unknown region.
#[test]
fn receive_naming_a_region_registered_after_the_post_fails() {
    let (mut a, mut b) = pair(Config::default());
    let a_src = a.register(16, Access::empty()).unwrap();
    let first = b.register(16, Access::LOCAL_WRITE).unwrap();
    let next = RegionId(first.0 + 1);
    b.post_recv(10, Slice::whole(next, 16)).unwrap();
    let region = b.register(4096, Access::LOCAL_WRITE).unwrap();
    assert_eq!(region, next, "ids are handed out in order");
    assert!(b.region_mut(region).is_ok(), "the receive holds nothing");
    a.post_send(1, &[src(a_src, 0, 16)], None).unwrap();
    assert_eq!(
        drain(&mut b),
        [failed(10, FAILED_RECV, WcError::LocalProtection)]
    );
    assert_eq!(drain(&mut a), [failed(1, Send, WcError::RemoteOperation)]);
    assert!(b.deregister(region).is_ok());
}

#[test]
fn write_is_placed_before_a_later_send_completes() {
    let Setup {
        mut a,
        mut b,
        a_src,
        b_recv,
        b_target,
    } = setup(Config::default(), b"0123456789");
    let dst = b.remote_buf(b_target, 100, 10).unwrap();
    b.post_recv(10, recv_slot(b_recv, 0)).unwrap();
    a.post_write(1, &[src(a_src, 0, 5)], dst, None).unwrap();
    // A later write to the same place wins: writes execute in order.
    a.post_write(2, &[src(a_src, 5, 5), src(a_src, 0, 5)], dst, None)
        .unwrap();
    a.post_send(3, &[src(a_src, 0, 2)], None).unwrap();
    assert_eq!(drain(&mut b), [ok(10, recv(2))]);
    assert_eq!(&b.region(b_target).unwrap()[100..110], b"5678901234");
    assert_eq!(drain(&mut a), [ok(1, Write), ok(2, Write), ok(3, Send)]);
}

#[test]
fn write_with_immediate_consumes_a_receive_and_leaves_its_buffer_alone() {
    let Setup {
        mut a,
        mut b,
        a_src,
        b_recv,
        b_target,
    } = setup(Config::default(), b"data");
    b.region_mut(b_recv).unwrap().fill(0xee);
    let dst = b.remote_buf(b_target, 8, 4).unwrap();
    b.post_recv(10, recv_slot(b_recv, 0)).unwrap();
    b.post_recv(11, recv_slot(b_recv, 1)).unwrap();
    a.post_write(1, &[src(a_src, 0, 4)], dst, Some(0xdead_beef))
        .unwrap();
    a.post_send(2, &[src(a_src, 0, 3)], None).unwrap();
    assert_eq!(
        drain(&mut b),
        [ok(10, RecvImm { imm: 0xdead_beef }), ok(11, recv(3))]
    );
    assert_eq!(drain(&mut a), [ok(1, Write), ok(2, Send)]);
    assert_eq!(&b.region(b_target).unwrap()[8..12], b"data");
    assert!(
        b.region(b_recv).unwrap()[..RECV_BUF]
            .iter()
            .all(|&byte| byte == 0xee)
    );
    assert_eq!(
        &b.region(b_recv).unwrap()[RECV_BUF..RECV_BUF + 4],
        b"dat\xee"
    );
}

#[test]
fn busy_until_the_completion_is_drained_counted_per_element() {
    let Setup {
        mut a,
        mut b,
        a_src,
        b_recv,
        ..
    } = setup(Config::default(), b"xy");
    let busy = Err(TransportError::Busy(a_src));
    b.post_recv(10, recv_slot(b_recv, 0)).unwrap();
    b.post_recv(11, recv_slot(b_recv, 1)).unwrap();
    assert_eq!(b.deregister(b_recv), Err(TransportError::Busy(b_recv)));
    // Two requests, three references to the same region.
    a.post_send(1, &[src(a_src, 0, 1), src(a_src, 1, 1)], None)
        .unwrap();
    a.post_send(2, &[src(a_src, 0, 1)], None).unwrap();
    assert_eq!(a.region_mut(a_src).err(), busy.err());
    assert_eq!(
        a.region(a_src).unwrap()[..2],
        *b"xy",
        "reading stays allowed"
    );
    let mut one = [common::PLACEHOLDER; 1];
    assert_eq!(b.poll_completions(&mut one), Ok(1));
    assert_eq!(one[0], ok(10, recv(2)));
    assert_eq!(
        b.deregister(b_recv),
        Err(TransportError::Busy(b_recv)),
        "the second receive still holds it"
    );
    // Executed but not drained: still busy.
    assert_eq!(a.region_mut(a_src).err(), busy.err());
    assert_eq!(a.poll_completions(&mut one), Ok(1));
    assert_eq!(one[0], ok(1, Send));
    assert_eq!(a.deregister(a_src), busy, "request 2 still references it");
    assert_eq!(drain(&mut a), [ok(2, Send)]);
    a.region_mut(a_src).unwrap()[0] = b'!';
    assert_eq!(drain(&mut b), [ok(11, recv(1))]);
    b.deregister(b_recv).unwrap();
    a.deregister(a_src).unwrap();
}

/// One region referenced by both queues (a receive buffer and a send's
/// gather element) is busy until the completions of both are drained, in
/// whichever order they come; a refused post references nothing.
#[test]
fn busy_while_either_queue_references_it() {
    let (mut a, mut b) = pair(Config {
        max_send: 1,
        ..Config::default()
    });
    let region = a.register(2 * RECV_BUF, Access::LOCAL_WRITE).unwrap();
    let other = a.register(16, Access::empty()).unwrap();
    let b_recv = b.register(4 * RECV_BUF, Access::LOCAL_WRITE).unwrap();
    let busy = Some(TransportError::Busy(region));
    a.post_recv(10, recv_slot(region, 0)).unwrap();
    b.post_recv(20, recv_slot(b_recv, 0)).unwrap();
    a.post_send(1, &[src(region, RECV_BUF, 4)], None).unwrap();
    assert_eq!(
        a.post_send(2, &[src(other, 0, 1)], None),
        Err(TransportError::QueueFull)
    );
    assert!(a.region_mut(other).is_ok(), "a refused post holds nothing");
    assert_eq!(drain(&mut b), [ok(20, recv(4))]);
    // The send's completion is drained first: the receive still holds it.
    assert_eq!(drain(&mut a), [ok(1, Send)]);
    assert_eq!(a.region_mut(region).err(), busy);
    assert_eq!(a.deregister(region).err(), busy);
    b.post_send(21, &[src(b_recv, 0, 2)], None).unwrap();
    assert_eq!(drain(&mut a), [ok(10, recv(2))]);
    assert!(a.region_mut(region).is_ok());
    assert_eq!(drain(&mut b), [ok(21, Send)]);
    // The other way round: the receive's completion drained first.
    a.post_recv(11, recv_slot(region, 1)).unwrap();
    b.post_send(22, &[src(b_recv, 0, 3)], None).unwrap();
    b.post_recv(23, recv_slot(b_recv, 1)).unwrap();
    a.post_send(3, &[src(region, 0, 1)], None).unwrap();
    let mut one = [common::PLACEHOLDER; 1];
    assert_eq!(a.poll_completions(&mut one), Ok(1));
    assert_eq!(one[0], ok(11, recv(3)));
    assert_eq!(a.region_mut(region).err(), busy, "the send still holds it");
    assert_eq!(drain(&mut b), [ok(22, Send), ok(23, recv(1))]);
    assert_eq!(drain(&mut a), [ok(3, Send)]);
    a.deregister(region).unwrap();
}

#[test]
fn failed_requests_also_hold_their_regions_until_drained() {
    let Setup {
        mut a,
        mut b,
        a_src,
        ..
    } = setup(Config::default(), b"");
    a.post_send(1, &[src(a_src, 0, 1), src(RegionId(77), 0, 1)], None)
        .unwrap();
    b.poll_completions(&mut []).unwrap_err();
    assert_eq!(a.region_mut(a_src).err(), Some(TransportError::Busy(a_src)));
    assert_eq!(
        poll(&mut a),
        Ok(vec![failed(1, Send, WcError::LocalProtection)])
    );
    a.region_mut(a_src).unwrap();
}

#[test]
fn queue_depths_and_size_limits() {
    let config = Config {
        max_send: 2,
        max_recv: 1,
        max_sge: 2,
        max_message: 100,
        max_write: 200,
        ..Config::default()
    };
    let Setup {
        mut a,
        mut b,
        a_src,
        b_recv,
        b_target,
    } = setup(config, b"");
    let dst = b.remote_buf(b_target, 0, 300).unwrap();
    let one = [src(a_src, 0, 1)];
    assert_eq!(
        a.post_send(1, &[src(a_src, 0, 1); 3], None),
        Err(TransportError::TooManySegments)
    );
    assert_eq!(
        a.post_send(1, &[src(a_src, 0, 101)], None),
        Err(TransportError::MessageTooLarge)
    );
    assert_eq!(
        a.post_send(1, &[src(a_src, 0, 60), src(a_src, 0, 41)], None),
        Err(TransportError::MessageTooLarge)
    );
    assert_eq!(
        a.post_write(1, &[src(a_src, 0, 201)], dst, None),
        Err(TransportError::MessageTooLarge)
    );
    assert_eq!(
        a.post_write(
            1,
            &[src(a_src, 0, 200)],
            RemoteBuf { len: 199, ..dst },
            None
        ),
        Err(TransportError::OutOfBounds)
    );
    assert_eq!(
        a.post_send(1, &one, Some(3)),
        Err(TransportError::Unsupported),
        "send with immediate"
    );
    b.post_recv(10, recv_slot(b_recv, 0)).unwrap();
    assert_eq!(
        b.post_recv(11, recv_slot(b_recv, 1)),
        Err(TransportError::QueueFull)
    );
    a.post_send(1, &one, None).unwrap();
    a.post_write(2, &[src(a_src, 0, 200)], dst, None).unwrap();
    assert_eq!(a.post_send(3, &one, None), Err(TransportError::QueueFull));
    // Executed, but the slots are freed only by draining.
    assert_eq!(drain(&mut b), [ok(10, recv(1))]);
    assert_eq!(a.post_send(3, &one, None), Err(TransportError::QueueFull));
    b.post_recv(11, recv_slot(b_recv, 1)).unwrap();
    assert_eq!(drain(&mut a), [ok(1, Send), ok(2, Write)]);
    a.post_send(3, &one, None).unwrap();
    assert_eq!(drain(&mut b), [ok(11, recv(1))]);
    assert_eq!(drain(&mut a), [ok(3, Send)]);
}

#[test]
fn disconnect_flushes_both_sides() {
    let Setup {
        mut a,
        mut b,
        a_src,
        b_recv,
        ..
    } = setup(Config::default(), b"");
    let a_recv = a.register(64, Access::LOCAL_WRITE).unwrap();
    a.post_recv(20, Slice::whole(a_recv, 64)).unwrap();
    b.post_recv(10, recv_slot(b_recv, 0)).unwrap();
    b.post_recv(11, recv_slot(b_recv, 1)).unwrap();
    a.post_send(1, &[src(a_src, 0, 1)], None).unwrap();
    b.poll_completions(&mut []).unwrap();
    a.post_send(2, &[src(a_src, 0, 1)], None).unwrap();
    a.disconnect();
    assert_eq!(
        drain(&mut a),
        [
            ok(1, Send),
            failed(2, Send, WcError::Flushed),
            failed(20, FAILED_RECV, WcError::Flushed)
        ]
    );
    assert_eq!(
        drain(&mut b),
        [
            ok(10, recv(1)),
            failed(11, FAILED_RECV, WcError::Disconnected)
        ]
    );
    assert_down(&mut a, a_src);
    assert_down(&mut b, b_recv);
    a.disconnect();
    assert_eq!(
        poll(&mut a),
        Err(TransportError::Disconnected),
        "disconnecting twice changes nothing"
    );
}

#[test]
fn dropping_an_endpoint_disconnects_its_peer() {
    let Setup {
        a, mut b, b_recv, ..
    } = setup(Config::default(), b"");
    b.post_recv(10, recv_slot(b_recv, 0)).unwrap();
    drop(a);
    assert_eq!(
        drain(&mut b),
        [failed(10, FAILED_RECV, WcError::Disconnected)]
    );
    b.region_mut(b_recv).unwrap();
    assert_down(&mut b, b_recv);
}

#[test]
fn deterministic_wait_never_blocks() {
    let Setup {
        mut a,
        mut b,
        a_src,
        b_recv,
        ..
    } = setup(Config::default(), b"");
    assert_eq!(
        b.wait(None),
        Ok(()),
        "nothing pending: returns (a spurious wake-up)"
    );
    b.post_recv(10, recv_slot(b_recv, 0)).unwrap();
    a.post_send(1, &[src(a_src, 0, 1)], None).unwrap();
    assert_eq!(b.wait(None), Ok(()));
    assert_eq!(drain(&mut b), [ok(10, recv(1))]);
}

#[test]
fn identical_call_sequences_give_identical_runs() {
    let run = || {
        let Setup {
            mut a,
            mut b,
            a_src,
            b_recv,
            b_target,
        } = setup(
            Config {
                seed: 9,
                ..Config::default()
            },
            b"q",
        );
        let dst = b.remote_buf(b_target, 0, 1).unwrap();
        let mut log = Vec::new();
        for round in 0..20u64 {
            if round % 3 == 0 {
                b.post_recv(round, recv_slot(b_recv, 0)).unwrap();
            }
            a.post_write(
                round,
                &[src(a_src, 0, 1)],
                dst,
                (round % 2 == 0).then_some(round as u32),
            )
            .unwrap();
            log.push((poll(&mut b), poll(&mut a)));
            if log.last().unwrap().0.is_err() {
                break;
            }
        }
        log
    };
    let first = run();
    assert_eq!(first, run());
    assert!(
        first.len() > 1 && first.last().unwrap().0.is_err(),
        "the run ends in an RNR"
    );
}

/// Inline sends and writes carry bytes copied at post time: the caller's
/// buffer may change right after, nothing is registered or held, and they
/// follow every rule a gathered send or write does (ordering, receives
/// consumed, immediate data, remote access).
#[test]
fn inline_sends_and_writes_copy_at_post_time_and_follow_the_rc_rules() {
    let Setup {
        mut a,
        mut b,
        a_src,
        b_recv,
        b_target,
    } = setup(Config::default(), b"gathered");
    assert_eq!(a.caps().max_inline, Config::default().max_inline);
    b.post_recv(10, recv_slot(b_recv, 0)).unwrap();
    b.post_recv(11, recv_slot(b_recv, 1)).unwrap();
    b.post_recv(12, recv_slot(b_recv, 2)).unwrap();
    let dst = b.remote_buf(b_target, 16, 8).unwrap();
    let mut message = *b"inline!";
    a.post_send_inline(1, &message).unwrap();
    message.fill(b'x');
    a.post_write_inline(2, b"status", dst, Some(7)).unwrap();
    a.post_send(3, &[src(a_src, 0, 8)], None).unwrap();
    a.post_send_inline(4, &[]).unwrap();
    assert_eq!(
        drain(&mut b),
        [ok(10, recv(7)), ok(11, RecvImm { imm: 7 }), ok(12, recv(8))]
    );
    let recv_bytes = b.region(b_recv).unwrap();
    assert_eq!(&recv_bytes[..7], b"inline!");
    assert_eq!(&recv_bytes[2 * RECV_BUF..2 * RECV_BUF + 8], b"gathered");
    assert_eq!(&b.region(b_target).unwrap()[16..22], b"status");
    // The empty inline send found no receive left: receiver not ready,
    // which takes the pair down; what came before completed normally.
    assert_eq!(
        drain(&mut a),
        [
            ok(1, Send),
            ok(2, Write),
            ok(3, Send),
            failed(4, Send, WcError::ReceiverNotReady)
        ]
    );
}

/// A send-queue entry is reused whole: one holding a gathered write, then
/// inline bytes, then a gathered send without inline bytes places exactly
/// what each request carries (a one-entry queue reuses its slot each time).
#[test]
fn a_reused_entry_carries_only_its_own_request() {
    let Setup {
        mut a,
        mut b,
        a_src,
        b_recv,
        b_target,
    } = setup(
        Config {
            max_send: 1,
            ..Config::default()
        },
        b"gathered",
    );
    let dst = b.remote_buf(b_target, 0, 16).unwrap();
    a.post_write_tail(1, &[src(a_src, 0, 8)], b"tail", dst, None)
        .unwrap();
    assert!(drain(&mut b).is_empty());
    assert_eq!(drain(&mut a), [ok(1, Write)]);
    a.post_write_inline(2, b"in", dst, None).unwrap();
    assert!(drain(&mut b).is_empty());
    assert_eq!(drain(&mut a), [ok(2, Write)]);
    assert_eq!(&b.region(b_target).unwrap()[..13], b"intheredtail\0");
    b.post_recv(10, recv_slot(b_recv, 0)).unwrap();
    a.post_send(3, &[src(a_src, 0, 3)], None).unwrap();
    assert_eq!(drain(&mut b), [ok(10, recv(3))]);
    assert_eq!(drain(&mut a), [ok(3, Send)]);
    assert_eq!(&b.region(b_recv).unwrap()[..4], b"gat\0");
}

#[test]
fn inline_limits_and_remote_access() {
    let Setup {
        mut a,
        mut b,
        b_target,
        ..
    } = setup(
        Config {
            max_inline: 16,
            ..Config::default()
        },
        b"",
    );
    let dst = b.remote_buf(b_target, 0, 8).unwrap();
    assert_eq!(
        a.post_send_inline(1, &[0; 17]),
        Err(TransportError::MessageTooLarge)
    );
    assert_eq!(
        a.post_write_inline(2, &[0; 17], dst, None),
        Err(TransportError::MessageTooLarge)
    );
    assert_eq!(
        a.post_write_inline(3, &[0; 9], dst, None),
        Err(TransportError::OutOfBounds),
        "more than the peer's window"
    );
    // A wrong key fails at the receiver like a gathered write's.
    let forged = RemoteBuf {
        key: dst.key ^ 1,
        ..dst
    };
    a.post_write_inline(4, &[1; 8], forged, None).unwrap();
    assert_eq!(poll(&mut b), Err(TransportError::Disconnected));
    assert_eq!(drain(&mut a), [failed(4, Write, WcError::RemoteAccess)]);
    assert!(b.region(b_target).unwrap().iter().all(|&byte| byte == 0));

    let (mut c, _d) = pair(Config {
        max_inline: 0,
        ..Config::default()
    });
    assert_eq!(c.caps().max_inline, 0);
    assert_eq!(c.post_send_inline(1, &[]), Err(TransportError::Unsupported));
    assert_eq!(
        c.post_write_inline(2, &[], dst, None),
        Err(TransportError::Unsupported)
    );
}

/// A write with an inline tail places the gathered bytes and then the
/// tail at the destination as one request: one receive consumed by its
/// immediate, one completion; its gather region is busy until that is
/// drained, and the tail is the caller's again as the post returns.
#[test]
fn a_write_with_a_tail_places_data_then_tail_as_one_request() {
    let Setup {
        mut a,
        mut b,
        a_src,
        b_recv,
        b_target,
    } = setup(Config::default(), b"data....");
    b.post_recv(10, recv_slot(b_recv, 0)).unwrap();
    let dst = b.remote_buf(b_target, 32, 14).unwrap();
    let mut tail = *b"status";
    a.post_write_tail(1, &[src(a_src, 0, 8)], &tail, dst, Some(9))
        .unwrap();
    tail.fill(b'x');
    assert_eq!(
        a.region_mut(a_src).err(),
        Some(TransportError::Busy(a_src)),
        "the gathered region is held until the completion is drained"
    );
    assert_eq!(drain(&mut b), [ok(10, RecvImm { imm: 9 })]);
    assert_eq!(&b.region(b_target).unwrap()[32..46], b"data....status");
    assert_eq!(drain(&mut a), [ok(1, Write)]);
    assert!(a.region_mut(a_src).is_ok());

    // Limits: the tail is inline data; the whole must fit the window.
    assert_eq!(
        a.post_write_tail(2, &[src(a_src, 0, 8)], &[0; 7], dst, None),
        Err(TransportError::OutOfBounds),
        "8 + 7 bytes into a 14-byte window"
    );
    let max_inline = Config::default().max_inline;
    let long = vec![0; max_inline + 1];
    let wide = b.remote_buf(b_target, 0, 4096).unwrap();
    assert_eq!(
        a.post_write_tail(3, &[], &long, wide, None),
        Err(TransportError::MessageTooLarge)
    );
    let (mut c, _d) = pair(Config {
        max_inline: 0,
        ..Config::default()
    });
    assert_eq!(
        c.post_write_tail(4, &[], b"x", wide, None),
        Err(TransportError::Unsupported)
    );
    assert!(drain(&mut a).is_empty(), "refused posts complete nothing");
}

/// An unsignaled write places its bytes like any write, but its success
/// is not reported: the sender's next completion is the signaled request
/// posted after it. The loopback releases its gather region at the drain
/// that passes it (the trait allows holding it until the next signaled
/// completion). One that fails still completes, with its error.
#[test]
fn an_unsignaled_write_completes_silently_unless_it_fails() {
    let Setup {
        mut a,
        mut b,
        a_src,
        b_recv,
        b_target,
    } = setup(Config::default(), b"data....");
    b.post_recv(10, recv_slot(b_recv, 0)).unwrap();
    let first = b.remote_buf(b_target, 0, 14).unwrap();
    let second = b.remote_buf(b_target, 64, 14).unwrap();
    a.post_write_tail_unsignaled(1, &[src(a_src, 0, 8)], b"quiet!", first)
        .unwrap();
    assert!(
        drain(&mut b).is_empty(),
        "no immediate, no receive consumed"
    );
    assert_eq!(
        a.region_mut(a_src).err(),
        Some(TransportError::Busy(a_src)),
        "held while it is outstanding"
    );
    assert!(drain(&mut a).is_empty(), "its success is not reported");
    assert_eq!(&b.region(b_target).unwrap()[..14], b"data....quiet!");
    assert!(a.region_mut(a_src).is_ok(), "released by the drain");
    a.post_write_tail(2, &[src(a_src, 0, 8)], b"status", second, Some(7))
        .unwrap();
    assert_eq!(drain(&mut b), [ok(10, RecvImm { imm: 7 })]);
    assert_eq!(drain(&mut a), [ok(2, Write)], "only the signaled one");
    assert!(a.region_mut(a_src).is_ok());

    // Behind a signaled one not drained yet: reported in order, silently.
    a.post_write_tail(4, &[], b"x", first, None).unwrap();
    a.post_write_tail_unsignaled(5, &[src(a_src, 0, 8)], b"", first)
        .unwrap();
    a.post_write_tail(6, &[], b"y", second, None).unwrap();
    assert!(drain(&mut b).is_empty());
    assert_eq!(drain(&mut a), [ok(4, Write), ok(6, Write)]);
    assert!(a.region_mut(a_src).is_ok());

    // Outside the window: it fails, and the failure is reported.
    let bad = RemoteBuf {
        key: first.key ^ 1,
        ..first
    };
    a.post_write_tail_unsignaled(3, &[src(a_src, 0, 8)], b"quiet!", bad)
        .unwrap();
    assert_eq!(
        poll(&mut b),
        Err(TransportError::Disconnected),
        "the failure took the connection down"
    );
    assert_eq!(drain(&mut a), [failed(3, Write, WcError::RemoteAccess)]);
}

/// Unsignaled writes executed in runs (two in a row, one at the end of a
/// batch, one alone in the next batch) take no place among the
/// completions: the signaled ones and the receives around them drain in
/// the order they happened, also one at a time, and the unsignaled ones'
/// region is busy until the drains have passed them all.
#[test]
fn runs_of_unsignaled_writes_pass_between_reported_completions() {
    let Setup {
        mut a,
        mut b,
        a_src,
        b_recv,
        b_target,
    } = setup(Config::default(), b"data....");
    let a_recv = a.register(4 * RECV_BUF, Access::LOCAL_WRITE).unwrap();
    let a_quiet = a.register(8, Access::empty()).unwrap();
    a.post_recv(20, recv_slot(a_recv, 0)).unwrap();
    a.post_recv(21, recv_slot(a_recv, 1)).unwrap();
    let dst = b.remote_buf(b_target, 0, 8).unwrap();
    let quiet = |a: &mut Endpoint, wr_id| {
        a.post_write_tail_unsignaled(wr_id, &[src(a_quiet, 0, 8)], &[], dst)
            .unwrap();
    };
    quiet(&mut a, 1);
    quiet(&mut a, 2);
    a.post_write_tail(3, &[src(a_src, 0, 8)], b"", dst, None)
        .unwrap();
    quiet(&mut a, 4);
    // Entering b executes a's four (one batch); entering a then executes
    // b's send: a's receive 20 completes after write 3.
    b.post_send(30, &[src(b_recv, 0, 1)], None).unwrap();
    assert_eq!(a.ready(), Ok(true));
    quiet(&mut a, 5);
    b.post_send(31, &[src(b_recv, 0, 1)], None).unwrap();
    assert_eq!(a.ready(), Ok(true));
    a.post_write_tail(6, &[src(a_src, 0, 8)], b"", dst, None)
        .unwrap();
    assert_eq!(b.ready(), Ok(true));
    assert_eq!(
        a.region_mut(a_quiet).err(),
        Some(TransportError::Busy(a_quiet)),
        "not drained yet"
    );
    let mut one = [common::PLACEHOLDER; 1];
    let mut order = Vec::new();
    while a.poll_completions(&mut one) == Ok(1) {
        order.push(one[0]);
    }
    assert_eq!(
        order,
        [ok(3, Write), ok(20, recv(1)), ok(21, recv(1)), ok(6, Write)]
    );
    assert!(a.region_mut(a_quiet).is_ok(), "passed by the drains");
    assert!(a.region_mut(a_src).is_ok());
    assert_eq!(drain(&mut b), [ok(30, Send), ok(31, Send)]);
    assert_eq!(&b.region(b_target).unwrap()[..8], b"data....");
}

/// Unsignaled writes still waiting to execute when the connection goes
/// down complete as flushed, like every outstanding request.
#[test]
fn unsignaled_writes_flush_when_the_connection_goes_down() {
    let Setup {
        mut a,
        b,
        a_src,
        b_target,
        ..
    } = setup(Config::default(), b"data....");
    let dst = b.remote_buf(b_target, 0, 8).unwrap();
    a.post_write_tail_unsignaled(1, &[src(a_src, 0, 8)], &[], dst)
        .unwrap();
    a.disconnect();
    assert_eq!(drain(&mut a), [failed(1, Write, WcError::Flushed)]);
    assert!(a.region_mut(a_src).is_ok());
    drop(b);
}

/// `Config::max_sge` above what an entry holds in place (16) is reported
/// and enforced as 16: a write of 16 pieces lands whole, in order; a 17th
/// piece is refused at post time and nothing is queued.
#[test]
fn gather_lists_are_capped_at_sixteen() {
    let payload: Vec<u8> = (0..=255).collect();
    let config = Config {
        max_sge: 64,
        ..Config::default()
    };
    let Setup {
        mut a,
        mut b,
        a_src,
        b_target,
        ..
    } = setup(config, &payload);
    assert_eq!(a.caps().max_sge, 16);
    let dst = b.remote_buf(b_target, 0, 4096).unwrap();
    // Sixteen pieces of 16 bytes, gathered back to front.
    let pieces: Vec<Slice> = (0..16).rev().map(|i| src(a_src, i * 16, 16)).collect();
    assert_eq!(
        a.post_write(
            1,
            &[pieces.clone(), vec![src(a_src, 0, 1)]].concat(),
            dst,
            None
        ),
        Err(TransportError::TooManySegments)
    );
    a.post_write(2, &pieces, dst, None).unwrap();
    // Delivered when the peer next enters the transport.
    assert_eq!(poll(&mut b), Ok(vec![]));
    assert_eq!(drain(&mut a), vec![ok(2, Write)]);
    let expected: Vec<u8> = (0..16)
        .rev()
        .flat_map(|i| payload[i * 16..i * 16 + 16].iter().copied())
        .collect();
    assert_eq!(&b.region(b_target).unwrap()[..256], &expected[..]);
}
