//! `rdio_transport::{FaultInjector, Tracer}` over the deterministic loopback
//! (here rather than in rdio-transport to avoid a dependency cycle).

mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use common::{FAILED_RECV, drain, failed, ok, poll, recv};
use rdio_loopback::{Config, Endpoint, pair};
use rdio_transport::{
    Access, Completion, CompletionKind,
    CompletionKind::{Send, Write},
    Fault, FaultConfig, FaultInjector, FaultStats, PostKind, RegionId, Slice, TraceEvent, Tracer,
    Transport, TransportError, WcError,
};

const MSG: usize = 32;

/// Registers a `MSG`-byte send region filled with a pattern and a receive
/// region with room for 4 messages on `endpoint`.
fn buffers(endpoint: &mut impl Transport) -> (RegionId, RegionId) {
    let send = endpoint.register(MSG, Access::empty()).unwrap();
    for (index, byte) in endpoint.region_mut(send).unwrap().iter_mut().enumerate() {
        *byte = index as u8 + 1;
    }
    let recv = endpoint.register(4 * MSG, Access::LOCAL_WRITE).unwrap();
    (send, recv)
}

fn slot(region: RegionId, n: usize) -> Slice {
    Slice {
        region,
        offset: n * MSG,
        len: MSG,
    }
}

type Injected = FaultInjector<Endpoint>;

/// A pair whose first endpoint is wrapped in a fault injector.
fn injected(config: FaultConfig) -> (Injected, Endpoint) {
    let (a, b) = pair(Config::default());
    (FaultInjector::new(a, config), b)
}

#[test]
fn tracer_reports_every_post_and_completion() {
    let events = Rc::new(RefCell::new(Vec::new()));
    let (a, mut b) = pair(Config::default());
    let sink = Rc::clone(&events);
    let mut a = Tracer::new(a, move |event| sink.borrow_mut().push(event));
    let (a_send, a_recv) = buffers(&mut a);
    let (_, b_recv) = buffers(&mut b);
    let b_target = b.register(64, Access::REMOTE_WRITE).unwrap();
    let dst = b.remote_buf(b_target, 0, 64).unwrap();
    b.post_recv(10, slot(b_recv, 0)).unwrap();
    a.post_recv(1, slot(a_recv, 0)).unwrap();
    a.post_send(2, &[Slice::whole(a_send, 8), Slice::whole(a_send, 4)], None)
        .unwrap();
    a.post_write(3, &[Slice::whole(a_send, MSG)], dst, None)
        .unwrap();
    assert_eq!(
        a.post_send(4, &[Slice::whole(a_send, 1); 5], None),
        Err(TransportError::TooManySegments)
    );
    assert_eq!(drain(&mut b), [ok(10, recv(12))]);
    assert_eq!(drain(&mut a), [ok(2, Send), ok(3, Write)]);
    a.disconnect();
    let post = |kind, wr_id, len, sges, result| TraceEvent::Post {
        kind,
        wr_id,
        len,
        sges,
        result,
    };
    assert_eq!(
        *events.borrow(),
        [
            post(PostKind::Recv, 1, MSG, 1, Ok(())),
            post(PostKind::Send { imm: None }, 2, 12, 2, Ok(())),
            post(PostKind::Write { dst, imm: None }, 3, MSG, 1, Ok(())),
            post(
                PostKind::Send { imm: None },
                4,
                5,
                5,
                Err(TransportError::TooManySegments)
            ),
            TraceEvent::Completion(ok(2, Send)),
            TraceEvent::Completion(ok(3, Write)),
            TraceEvent::Disconnect,
        ]
    );
    assert_eq!(a.get_ref().provider(), "loopback");
}

#[test]
fn no_faults_means_a_transparent_wrapper() {
    let (mut a, mut b) = injected(FaultConfig::new(1));
    let (a_send, _) = buffers(&mut a);
    let (_, b_recv) = buffers(&mut b);
    for n in 0..4 {
        b.post_recv(10 + n as u64, slot(b_recv, n)).unwrap();
        a.post_send(n as u64, &[Slice::whole(a_send, MSG)], None)
            .unwrap();
    }
    assert_eq!(drain(&mut b).len(), 4);
    assert_eq!(
        drain(&mut a),
        [ok(0, Send), ok(1, Send), ok(2, Send), ok(3, Send)]
    );
    assert_eq!(a.stats(), FaultStats::default());
    assert_eq!(a.operations(), 8, "four posts and four completions");
}

#[test]
fn dropped_send_completes_locally_and_never_arrives() {
    let (mut a, mut b) = injected(FaultConfig::scheduled(0, Fault::Drop));
    let (a_send, _) = buffers(&mut a);
    let (_, b_recv) = buffers(&mut b);
    b.post_recv(10, slot(b_recv, 0)).unwrap();
    a.post_send(1, &[Slice::whole(a_send, MSG)], None).unwrap();
    assert_eq!(drain(&mut a), [ok(1, Send)]);
    assert!(drain(&mut b).is_empty(), "the receive is still waiting");
    a.post_send(2, &[Slice::whole(a_send, 3)], None).unwrap();
    assert_eq!(drain(&mut b), [ok(10, recv(3))]);
    assert_eq!(drain(&mut a), [ok(2, Send)]);
    assert_eq!(
        a.stats(),
        FaultStats {
            dropped: 1,
            ..FaultStats::default()
        }
    );
}

#[test]
fn dropped_write_places_nothing() {
    let (mut a, mut b) = injected(FaultConfig::scheduled(0, Fault::Drop));
    let (a_send, _) = buffers(&mut a);
    let target = b.register(MSG, Access::REMOTE_WRITE).unwrap();
    let dst = b.remote_buf(target, 0, MSG).unwrap();
    a.post_write(1, &[Slice::whole(a_send, MSG)], dst, None)
        .unwrap();
    assert!(drain(&mut b).is_empty());
    assert_eq!(drain(&mut a), [ok(1, Write)]);
    assert!(b.region(target).unwrap().iter().all(|&byte| byte == 0));
}

#[test]
fn corrupted_send_flips_exactly_one_byte_in_flight() {
    for seed in 0..20 {
        let config = FaultConfig {
            seed,
            corrupt_pct: 100,
            ..FaultConfig::new(seed)
        };
        let (mut a, mut b) = injected(config);
        let (a_send, _) = buffers(&mut a);
        let (_, b_recv) = buffers(&mut b);
        let original = a.region(a_send).unwrap().to_vec();
        b.post_recv(10, slot(b_recv, 0)).unwrap();
        a.post_send(
            1,
            &[
                Slice {
                    region: a_send,
                    offset: 16,
                    len: 16,
                },
                Slice::whole(a_send, 16),
            ],
            None,
        )
        .unwrap();
        assert_eq!(drain(&mut b), [ok(10, recv(MSG))]);
        assert_eq!(drain(&mut a), [ok(1, Send)]);
        let expected: Vec<u8> = original[16..]
            .iter()
            .chain(&original[..16])
            .copied()
            .collect();
        let received = &b.region(b_recv).unwrap()[..MSG];
        let differing = received
            .iter()
            .zip(&expected)
            .filter(|(got, want)| got != want)
            .count();
        assert_eq!(differing, 1, "seed {seed}");
        assert_eq!(
            a.region(a_send).unwrap(),
            original,
            "the sender's buffer is untouched"
        );
        assert_eq!(
            a.stats(),
            FaultStats {
                corrupted: 1,
                ..FaultStats::default()
            }
        );
        // An empty send cannot be corrupted: it goes out unchanged.
        b.post_recv(11, slot(b_recv, 1)).unwrap();
        a.post_send(2, &[], None).unwrap();
        assert_eq!(drain(&mut b), [ok(11, recv(0))]);
        assert_eq!(a.stats().corrupted, 1);
    }
}

#[test]
fn queue_full_refuses_exactly_the_scheduled_post() {
    let (mut a, mut b) = injected(FaultConfig::scheduled(1, Fault::QueueFull));
    let (a_send, a_recv) = buffers(&mut a);
    let (_, b_recv) = buffers(&mut b);
    b.post_recv(10, slot(b_recv, 0)).unwrap();
    a.post_recv(1, slot(a_recv, 0)).unwrap();
    assert_eq!(
        a.post_send(2, &[Slice::whole(a_send, 1)], None),
        Err(TransportError::QueueFull)
    );
    a.post_send(3, &[Slice::whole(a_send, 1)], None).unwrap();
    assert_eq!(drain(&mut b), [ok(10, recv(1))]);
    assert_eq!(drain(&mut a), [ok(3, Send)]);
    assert_eq!(
        a.stats(),
        FaultStats {
            queue_full: 1,
            ..FaultStats::default()
        }
    );
}

#[test]
fn delayed_completion_holds_back_the_ones_behind_it() {
    // Operations: 0, 1 = the posts; 2 = the first completion.
    let (mut a, mut b) = injected(FaultConfig::scheduled(2, Fault::Delay { polls: 3 }));
    let (a_send, _) = buffers(&mut a);
    let (_, b_recv) = buffers(&mut b);
    b.post_recv(10, slot(b_recv, 0)).unwrap();
    b.post_recv(11, slot(b_recv, 1)).unwrap();
    a.post_send(1, &[Slice::whole(a_send, 1)], None).unwrap();
    a.post_send(2, &[Slice::whole(a_send, 1)], None).unwrap();
    assert_eq!(drain(&mut b).len(), 2);
    for poll_number in 1..=3 {
        assert!(drain(&mut a).is_empty(), "poll {poll_number}");
        assert_eq!(
            a.wait(None),
            Ok(()),
            "held completions make wait return at once"
        );
    }
    assert_eq!(drain(&mut a), [ok(1, Send), ok(2, Send)]);
    assert_eq!(
        a.stats(),
        FaultStats {
            delayed: 1,
            ..FaultStats::default()
        }
    );
}

#[test]
fn injected_error_completion_takes_the_connection_down() {
    // Operations: 0 = post_recv, 1 = post_send, 2 = the send's completion.
    let (mut a, mut b) = injected(FaultConfig::scheduled(
        2,
        Fault::Error(WcError::RemoteAccess),
    ));
    let (a_send, a_recv) = buffers(&mut a);
    let (_, b_recv) = buffers(&mut b);
    b.post_recv(10, slot(b_recv, 0)).unwrap();
    b.post_recv(11, slot(b_recv, 1)).unwrap();
    a.post_recv(1, slot(a_recv, 0)).unwrap();
    a.post_send(2, &[Slice::whole(a_send, 1)], None).unwrap();
    assert_eq!(drain(&mut b), [ok(10, recv(1))]);
    assert_eq!(
        drain(&mut a),
        [
            failed(2, Send, WcError::RemoteAccess),
            failed(1, FAILED_RECV, WcError::Flushed)
        ]
    );
    assert_eq!(poll(&mut a), Err(TransportError::Disconnected));
    assert_eq!(
        drain(&mut b),
        [failed(11, FAILED_RECV, WcError::Disconnected)]
    );
    assert_eq!(
        a.stats(),
        FaultStats {
            errors: 1,
            ..FaultStats::default()
        }
    );
}

#[test]
fn injected_error_on_a_receive_reports_an_empty_receive() {
    // Operations: 0 = post_recv, 1 = the receive's completion.
    let (mut a, mut b) = injected(FaultConfig::scheduled(
        1,
        Fault::Error(WcError::ReceiverNotReady),
    ));
    let (_, a_recv) = buffers(&mut a);
    let (b_send, _) = buffers(&mut b);
    a.post_recv(1, slot(a_recv, 0)).unwrap();
    b.post_send(5, &[Slice::whole(b_send, 4)], None).unwrap();
    assert_eq!(
        drain(&mut a),
        [failed(1, FAILED_RECV, WcError::ReceiverNotReady)]
    );
    assert_eq!(drain(&mut b), [ok(5, Send)]);
    assert_eq!(poll(&mut b), Err(TransportError::Disconnected));
}

#[test]
fn scheduled_disconnect_refuses_the_post_and_tells_the_peer() {
    let (mut a, mut b) = injected(FaultConfig::scheduled(0, Fault::Disconnect));
    let (a_send, _) = buffers(&mut a);
    let (_, b_recv) = buffers(&mut b);
    b.post_recv(10, slot(b_recv, 0)).unwrap();
    assert_eq!(
        a.post_send(1, &[Slice::whole(a_send, 1)], None),
        Err(TransportError::Disconnected)
    );
    assert_eq!(
        drain(&mut b),
        [failed(10, FAILED_RECV, WcError::Disconnected)]
    );
    assert_eq!(poll(&mut a), Err(TransportError::Disconnected));
    assert_eq!(
        a.stats(),
        FaultStats {
            disconnects: 1,
            ..FaultStats::default()
        }
    );
}

#[test]
fn faults_that_do_not_apply_are_not_injected() {
    // A delay cannot hit a post, a drop cannot hit a receive.
    for fault in [Fault::Delay { polls: 1 }, Fault::Drop, Fault::Corrupt] {
        let (mut a, _b) = injected(FaultConfig::scheduled(0, fault));
        let (_, a_recv) = buffers(&mut a);
        a.post_recv(1, slot(a_recv, 0)).unwrap();
        assert_eq!(a.stats().total(), 0, "{fault:?}");
    }
}

/// Outcome of one echo session: what each side saw, for invariant checks.
struct Session {
    stats: FaultStats,
    operations: u64,
    replies: usize,
}

/// Work requests a side posted successfully and whose completion is due.
#[derive(Default, Debug)]
struct Ledger(BTreeMap<u64, u32>);

impl Ledger {
    fn post(
        &mut self,
        wr_id: u64,
        result: Result<(), TransportError>,
    ) -> Result<(), TransportError> {
        if result.is_ok() {
            *self.0.entry(wr_id).or_default() += 1;
        }
        result
    }

    fn complete(&mut self, completion: &Completion) {
        let due = self
            .0
            .get_mut(&completion.wr_id)
            .expect("no completion without a post");
        assert!(*due > 0, "{completion:?} completed twice");
        *due -= 1;
    }

    fn all_complete(&self) -> bool {
        self.0.values().all(|&due| due == 0)
    }
}

/// The client (wrapped in the injector) sends `rounds` requests, the server
/// echoes each one; a round without reply after a few steps counts as a
/// timeout and ends the session, as would a protocol timer. Afterwards both
/// sides disconnect and drain, and every request a side posted successfully
/// must have completed exactly once.
fn echo_session(config: FaultConfig, rounds: u64) -> Session {
    let (mut client, mut server) = injected(config);
    let (c_send, c_recv) = buffers(&mut client);
    let (s_send, s_recv) = buffers(&mut server);
    let mut ledgers = [Ledger::default(), Ledger::default()];
    let mut replies = 0;
    let mut server_wr = 1000;
    let _ = ledgers[1].post(server_wr, server.post_recv(server_wr, slot(s_recv, 0)));
    'rounds: for round in 0..rounds {
        let (request, reply) = (2 * round + 1, 2 * round);
        if ledgers[0]
            .post(reply, client.post_recv(reply, slot(c_recv, 0)))
            .is_err()
            || ledgers[0]
                .post(
                    request,
                    client.post_send(request, &[Slice::whole(c_send, MSG)], None),
                )
                .is_err()
        {
            break;
        }
        for _step in 0..5 {
            let Ok(arrived) = poll(&mut server) else {
                break 'rounds;
            };
            for completion in arrived {
                ledgers[1].complete(&completion);
                if completion.status.is_ok()
                    && matches!(completion.kind, CompletionKind::Recv { .. })
                {
                    server_wr += 2;
                    let _ =
                        ledgers[1].post(server_wr, server.post_recv(server_wr, slot(s_recv, 0)));
                    let echo = server.post_send(server_wr + 1, &[Slice::whole(s_send, MSG)], None);
                    let _ = ledgers[1].post(server_wr + 1, echo);
                }
            }
            let Ok(completions) = poll(&mut client) else {
                break 'rounds;
            };
            let mut replied = false;
            for completion in completions {
                ledgers[0].complete(&completion);
                replied |= completion.wr_id == reply && completion.status.is_ok();
            }
            if replied {
                replies += 1;
                continue 'rounds;
            }
        }
        break;
    }
    client.disconnect();
    for (ledger, endpoint) in ledgers
        .iter_mut()
        .zip([&mut client as &mut dyn Transport, &mut server])
    {
        // Delayed completions need polls to come due.
        for _ in 0..20 {
            for completion in poll(endpoint).unwrap_or_default() {
                ledger.complete(&completion);
            }
        }
        assert_eq!(poll(endpoint), Err(TransportError::Disconnected));
        assert!(ledger.all_complete(), "{config:?}: {ledger:?}");
    }
    Session {
        stats: client.stats(),
        operations: client.operations(),
        replies,
    }
}

#[test]
fn sweep_every_fault_over_every_operation() {
    let clean = echo_session(FaultConfig::new(0), 6);
    assert_eq!((clean.replies, clean.stats.total()), (6, 0));
    let faults = [
        Fault::Drop,
        Fault::Corrupt,
        Fault::QueueFull,
        Fault::Delay { polls: 2 },
        Fault::Error(WcError::RemoteAccess),
        Fault::Error(WcError::Flushed),
        Fault::Disconnect,
    ];
    for fault in faults {
        let mut injected = 0;
        for at in 0..clean.operations + 2 {
            let session = echo_session(FaultConfig::scheduled(at, fault), 6);
            assert!(session.stats.total() <= 1, "{fault:?} at {at}");
            injected += session.stats.total();
            if session.stats.total() == 0 {
                assert_eq!(
                    session.replies, 6,
                    "{fault:?} at {at}: nothing injected, nothing lost"
                );
            }
        }
        assert!(injected > 0, "{fault:?} never applied");
    }
}

#[test]
fn random_faults_are_reproducible() {
    let trace = |seed| {
        let config = FaultConfig {
            drop_pct: 10,
            corrupt_pct: 10,
            queue_full_pct: 10,
            delay_pct: 20,
            delay_polls: 2,
            ..FaultConfig::new(seed)
        };
        let events = Rc::new(RefCell::new(Vec::new()));
        let sink = Rc::clone(&events);
        let (a, mut b) = pair(Config::default());
        let mut a = Tracer::new(FaultInjector::<_, 8>::new(a, config), move |event| {
            sink.borrow_mut().push(event)
        });
        let (a_send, _) = buffers(&mut a);
        let (_, b_recv) = buffers(&mut b);
        for n in 0..200u64 {
            let _ = b.post_recv(n, slot(b_recv, n as usize % 4));
            let _ = a.post_send(n, &[Slice::whole(a_send, MSG)], None);
            let _ = poll(&mut b);
            let _ = poll(&mut a);
        }
        let stats = a.get_ref().stats();
        (events.take(), stats)
    };
    let (events, stats) = trace(5);
    assert_eq!((events.clone(), stats), trace(5));
    assert_ne!(events, trace(6).0);
    assert!(
        stats.dropped > 0 && stats.corrupted > 0 && stats.queue_full > 0 && stats.delayed > 0,
        "{stats:?}"
    );
}
