//! Memory lent with `register_external`: a read-only gather source that is
//! delivered like any region, kept alive while posted, and dropped on
//! deregistration.

mod common;

use common::{FAILED_RECV, drain, failed, ok, recv};
use rdio_loopback::{Config, pair, sync_pair};
use rdio_transport::{
    Access,
    CompletionKind::{Send, Write},
    Slice, Transport, TransportError, WcError,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes stored inline (so a transport that moved the value after taking
/// the slice would read freed or stale memory), counting its drops.
struct Inline {
    bytes: [u8; 64],
    drops: Arc<AtomicUsize>,
}

impl AsRef<[u8]> for Inline {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Inline {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

fn inline(drops: &Arc<AtomicUsize>) -> Inline {
    let mut bytes = [0u8; 64];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = i as u8 ^ 0x5a;
    }
    Inline {
        bytes,
        drops: Arc::clone(drops),
    }
}

#[test]
fn lent_memory_is_written_and_sent_without_a_copy_into_a_region() {
    let (mut a, mut b) = pair(Config::default());
    let drops = Arc::new(AtomicUsize::new(0));
    let lent = a.register_external(inline(&drops)).unwrap();
    let expected = inline(&Arc::new(AtomicUsize::new(0))).bytes;
    assert_eq!(a.region(lent).unwrap(), expected);

    let target = b.register(64, Access::REMOTE_WRITE).unwrap();
    let receive = b.register(64, Access::LOCAL_WRITE).unwrap();
    b.post_recv(7, Slice::whole(receive, 64)).unwrap();
    let dst = b.remote_buf(target, 0, 64).unwrap();
    a.post_write(1, &[Slice::whole(lent, 64)], dst, None)
        .unwrap();
    let tail = Slice {
        region: lent,
        offset: 32,
        len: 32,
    };
    a.post_send(2, &[tail], None).unwrap();

    assert_eq!(drain(&mut b), [ok(7, recv(32))]);
    assert_eq!(b.region(target).unwrap(), expected);
    assert_eq!(&b.region(receive).unwrap()[..32], &expected[32..]);
    assert_eq!(drain(&mut a), [ok(1, Write), ok(2, Send)]);
    assert_eq!(drops.load(Ordering::SeqCst), 0, "kept while registered");
}

#[test]
fn lent_memory_is_read_only() {
    let (mut a, mut b) = pair(Config::default());
    let lent = b.register_external(vec![1u8; 16]).unwrap();
    assert_eq!(b.region_mut(lent), Err(TransportError::ReadOnly(lent)));
    // Without local-write rights it cannot take a receive: the message
    // fails at the receiver, and the sender sees a remote operation error.
    b.post_recv(3, Slice::whole(lent, 16)).unwrap();
    let src = a.register(16, Access::empty()).unwrap();
    a.post_send(4, &[Slice::whole(src, 16)], None).unwrap();
    assert_eq!(
        drain(&mut b),
        [failed(3, FAILED_RECV, WcError::LocalProtection)]
    );
    assert_eq!(drain(&mut a), [failed(4, Send, WcError::RemoteOperation)]);
    assert_eq!(b.region(lent).unwrap(), [1u8; 16]);
}

#[test]
fn lent_memory_lives_until_its_last_request_is_drained() {
    let (mut a, mut b) = pair(Config::default());
    let drops = Arc::new(AtomicUsize::new(0));
    let lent = a.register_external(inline(&drops)).unwrap();
    let target = b.register(64, Access::REMOTE_WRITE).unwrap();
    let dst = b.remote_buf(target, 0, 64).unwrap();
    a.post_write(1, &[Slice::whole(lent, 64)], dst, None)
        .unwrap();
    assert_eq!(a.deregister(lent), Err(TransportError::Busy(lent)));
    // The peer executes the write from the lent bytes.
    b.poll_completions(&mut []).unwrap();
    assert_eq!(drops.load(Ordering::SeqCst), 0);
    assert_eq!(drain(&mut a), [ok(1, Write)]);
    a.deregister(lent).unwrap();
    assert_eq!(drops.load(Ordering::SeqCst), 1, "dropped exactly once");
    assert_eq!(b.region(target).unwrap()[5], 5 ^ 0x5a);

    // Dropping the endpoint drops what is still registered.
    let again = a.register_external(inline(&drops)).unwrap();
    assert!(a.region(again).is_ok());
    drop(a);
    assert_eq!(drops.load(Ordering::SeqCst), 2);
}

#[test]
fn lent_memory_crosses_threads() {
    let (mut a, mut b) = sync_pair(Config::default());
    let data: Vec<u8> = (0..1 << 16).map(|i| (i % 251) as u8).collect();
    let lent = a.register_external(data.clone()).unwrap();
    let target = b.register(1 << 16, Access::REMOTE_WRITE).unwrap();
    let dst = b.remote_buf(target, 0, 1 << 16).unwrap();
    a.post_write(9, &[Slice::whole(lent, 1 << 16)], dst, None)
        .unwrap();
    let receiver = std::thread::spawn(move || {
        b.poll_completions(&mut []).unwrap();
        b.region(target).unwrap().to_vec()
    });
    let placed = receiver.join().unwrap();
    assert_eq!(placed, data);
    let mut out = [common::PLACEHOLDER; 1];
    while a.poll_completions(&mut out).unwrap() == 0 {
        a.wait(None).unwrap();
    }
    assert_eq!(out[0], ok(9, Write));
}
