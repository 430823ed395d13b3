//! Two processes over libfabric tcp on 127.0.0.1: this test binary re-runs
//! itself as the server (`RDIO_FABRIC_CHILD` set), the parent connects,
//! exchanges a send, a write-with-immediate and the server's reply, then kills
//! the server and checks that the loss is reported within a bounded time.
//!
//! `harness = false`: `main` dispatches between the two roles.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdio_fabric::{FabricTransport, Listener, connect};
use rdio_transport::{
    Access, Completion, CompletionKind, RemoteBuf, Slice, Transport, TransportError,
};

const CHILD_ENV: &str = "RDIO_FABRIC_CHILD";
const SOON: Duration = Duration::from_secs(10);
const WINDOW: usize = 64 << 10;
const IMM: u32 = 0x00c0_ffee;

fn main() {
    if std::env::var_os(CHILD_ENV).is_some() {
        server();
    } else {
        parent();
        println!("two_process: 1 passed, 0 failed");
    }
}

/// Wait for the next completion, failing after `SOON`.
fn next(transport: &mut FabricTransport) -> Completion {
    let mut out = [Completion {
        wr_id: 0,
        kind: CompletionKind::Send,
        status: Ok(()),
    }];
    let start = Instant::now();
    loop {
        assert!(start.elapsed() < SOON, "no completion within {SOON:?}");
        if transport.poll_completions(&mut out).expect("poll") == 1 {
            assert_eq!(out[0].status, Ok(()), "{:?}", out[0]);
            return out[0];
        }
        transport
            .wait(Some(Duration::from_millis(50)))
            .expect("wait");
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// The child: listen, announce the port on stdout, then serve one exchange.
fn server() {
    let listener = Listener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), "tcp").expect("bind");
    println!("port {}", listener.local_addr().port());
    let mut t = listener.accept_timeout(SOON).expect("accept");
    let window = t
        .register(WINDOW, Access::LOCAL_WRITE | Access::REMOTE_WRITE)
        .unwrap();
    let msg = t.register(64, Access::LOCAL_WRITE).unwrap();
    t.post_recv(1, Slice::whole(msg, 64)).unwrap();
    // Tell the parent where it may write: (addr, key, len) as 16 bytes.
    let dst = t.remote_buf(window, 0, WINDOW).unwrap();
    let announce = t.register(16, Access::empty()).unwrap();
    let bytes = t.region_mut(announce).unwrap();
    bytes[..8].copy_from_slice(&dst.addr.to_le_bytes());
    bytes[8..12].copy_from_slice(&dst.key.to_le_bytes());
    bytes[12..16].copy_from_slice(&dst.len.to_le_bytes());
    t.post_send(2, &[Slice::whole(announce, 16)], None).unwrap();
    assert_eq!(next(&mut t).kind, CompletionKind::Send);
    // The write-with-immediate consumes the posted receive.
    assert_eq!(
        next(&mut t),
        Completion {
            wr_id: 1,
            kind: CompletionKind::RecvImm { imm: IMM },
            status: Ok(())
        }
    );
    let sum = fnv1a(t.region(window).unwrap());
    t.region_mut(announce).unwrap()[..8].copy_from_slice(&sum.to_le_bytes());
    t.post_send(3, &[Slice::whole(announce, 8)], None).unwrap();
    assert_eq!(next(&mut t).kind, CompletionKind::Send);
    // Stay connected until the parent kills us (bounded, in case it does not).
    let start = Instant::now();
    while start.elapsed() < SOON && t.poll_completions(&mut []).is_ok() {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Kills the child if the parent panics before doing so itself.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn parent() {
    let exe = std::env::current_exe().expect("test binary path");
    let mut child = ChildGuard(
        Command::new(exe)
            .env(CHILD_ENV, "1")
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the server process"),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("port line");
    let port: u16 = line
        .trim()
        .strip_prefix("port ")
        .and_then(|p| p.parse().ok())
        .expect("`port N` line");
    let mut t = connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), "tcp")
        .expect("connect to the child");

    let inbox = t.register(16, Access::LOCAL_WRITE).unwrap();
    t.post_recv(10, Slice::whole(inbox, 16)).unwrap();
    assert_eq!(next(&mut t).kind, CompletionKind::Recv { len: 16 });
    let b = t.region(inbox).unwrap();
    let dst = RemoteBuf {
        addr: u64::from_le_bytes(b[..8].try_into().unwrap()),
        key: u32::from_le_bytes(b[8..12].try_into().unwrap()),
        len: u32::from_le_bytes(b[12..16].try_into().unwrap()),
    };
    assert_eq!(dst.len as usize, WINDOW);

    let src = t.register(WINDOW, Access::empty()).unwrap();
    for (i, byte) in t.region_mut(src).unwrap().iter_mut().enumerate() {
        *byte = (i * 31 % 251) as u8;
    }
    let expected = fnv1a(t.region(src).unwrap());
    t.post_recv(11, Slice::whole(inbox, 16)).unwrap();
    t.post_write(12, &[Slice::whole(src, WINDOW)], dst, Some(IMM))
        .unwrap();
    assert_eq!(
        next(&mut t),
        Completion {
            wr_id: 12,
            kind: CompletionKind::Write,
            status: Ok(())
        }
    );
    assert_eq!(next(&mut t).kind, CompletionKind::Recv { len: 8 });
    let sum = u64::from_le_bytes(t.region(inbox).unwrap()[..8].try_into().unwrap());
    assert_eq!(sum, expected, "the server saw exactly the bytes written");

    // A crashed peer: SIGKILL, no FI_SHUTDOWN from its side.
    t.post_recv(13, Slice::whole(inbox, 16)).unwrap();
    child.0.kill().expect("kill the server");
    let start = Instant::now();
    let mut out = [Completion {
        wr_id: 0,
        kind: CompletionKind::Send,
        status: Ok(()),
    }; 2];
    let mut flushed = false;
    loop {
        assert!(start.elapsed() < SOON, "the dead peer went unnoticed");
        match t.poll_completions(&mut out) {
            Ok(n) => flushed |= out[..n].iter().any(|c| c.wr_id == 13 && c.status.is_err()),
            Err(TransportError::Disconnected) => break,
            Err(err) => panic!("{err}"),
        }
        t.wait(Some(Duration::from_millis(50))).expect("wait");
    }
    assert!(
        flushed,
        "the receive posted at the time of the crash completed with an error"
    );
    println!("peer loss noticed after {:?}", start.elapsed());
}
