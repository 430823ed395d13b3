//! Two processes over cma: this test binary re-runs itself as the server
//! (`RDIO_CMA_CHILD` set). The parent connects, the child advertises a
//! window, the parent RDMA-writes 1 MiB into it with an immediate, the
//! child answers with an 8-byte send of a checksum of what landed; then
//! the parent kills the child and checks the loss is reported at once.
//! Run as root, a forked child of another uid checks that such a peer is
//! refused by both sides.
//!
//! `harness = false`: `main` dispatches between the roles.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdio_cma::{CmaError, CmaTransport, Listener, connect};
use rdio_transport::{
    Access, Completion, CompletionKind, RemoteBuf, Slice, Transport, TransportError, WcError,
};

const CHILD_ENV: &str = "RDIO_CMA_CHILD";
const SOON: Duration = Duration::from_secs(10);
const WINDOW: usize = 1 << 20;
const IMM: u32 = 0x00c0_ffee;

fn main() {
    match std::env::var(CHILD_ENV).as_deref() {
        Ok("server") => server(),
        _ => {
            parent();
            let foreign_tested = foreign_user_is_refused();
            println!(
                "two_process: {} passed, 0 failed",
                if foreign_tested { 2 } else { 1 }
            );
        }
    }
}

fn next(t: &mut CmaTransport) -> Completion {
    let mut out = [Completion {
        wr_id: 0,
        kind: CompletionKind::Send,
        status: Ok(()),
    }];
    let start = Instant::now();
    loop {
        assert!(start.elapsed() < SOON, "no completion within {SOON:?}");
        if t.poll_completions(&mut out).expect("poll") == 1 {
            assert_eq!(out[0].status, Ok(()), "{:?} {:?}", out[0], t.last_error());
            return out[0];
        }
        t.wait(Some(Duration::from_millis(50))).expect("wait");
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn server() {
    let listener = Listener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).expect("bind");
    println!("port {}", listener.local_addr().port());
    let mut t = listener
        .accept(SOON, SOON)
        .expect("accept")
        .expect("a client");
    assert_eq!(
        t.peer_pid(),
        std::os::unix::process::parent_id() as i32,
        "SO_PEERCRED names the parent"
    );
    let window = t
        .register(WINDOW, Access::LOCAL_WRITE | Access::REMOTE_WRITE)
        .unwrap();
    let msg = t.register(64, Access::LOCAL_WRITE).unwrap();
    t.post_recv(1, Slice::whole(msg, 64)).unwrap();
    let dst = t.remote_buf(window, 0, WINDOW).unwrap();
    let announce = t.register(16, Access::empty()).unwrap();
    let bytes = t.region_mut(announce).unwrap();
    bytes[..8].copy_from_slice(&dst.addr.to_le_bytes());
    bytes[8..12].copy_from_slice(&dst.key.to_le_bytes());
    bytes[12..16].copy_from_slice(&dst.len.to_le_bytes());
    t.post_send(2, &[Slice::whole(announce, 16)], None).unwrap();
    assert_eq!(next(&mut t).kind, CompletionKind::Send);
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
    // Stay until killed (bounded, in case the parent never does).
    let start = Instant::now();
    while start.elapsed() < SOON && t.poll_completions(&mut []).is_ok() {
        std::thread::sleep(Duration::from_millis(10));
    }
}

struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(role: &str) -> (ChildGuard, u16) {
    let exe = std::env::current_exe().expect("test binary path");
    let mut command = Command::new(exe);
    command.env(CHILD_ENV, role).stdout(Stdio::piped());
    let mut child = ChildGuard(command.spawn().expect("spawn the child"));
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("port line");
    let port = line
        .trim()
        .strip_prefix("port ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("`port N` line, got {line:?}"));
    (child, port)
}

fn parent() {
    let (mut child, port) = spawn("server");
    let mut t = connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), SOON).expect("connect");
    assert_eq!(t.peer_pid(), child.0.id() as i32);
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

    // A crashed peer: SIGKILL. Its socket closes with it.
    t.post_recv(13, Slice::whole(inbox, 16)).unwrap();
    child.0.kill().expect("kill the server");
    let _ = child.0.wait();
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
            Ok(n) => {
                flushed |= out[..n]
                    .iter()
                    .any(|c| c.wr_id == 13 && c.status == Err(WcError::Disconnected));
            }
            Err(TransportError::Disconnected) => break,
            Err(err) => panic!("{err}"),
        }
        t.wait(None).expect("wait");
    }
    assert!(
        flushed,
        "the receive posted at the crash completed with Disconnected"
    );
    // A write to the dead process is a typed error, not a crash.
    assert_eq!(
        t.post_write(14, &[Slice::whole(src, 8)], dst, None),
        Err(TransportError::Disconnected)
    );
    println!("peer loss noticed after {:?}", start.elapsed());
}

/// The foreign-uid check, run as root: a forked child drops to uid and
/// gid 65534 (forked, not spawned, so no binary needs to be executable by
/// that user), listens, and reports how its accept ended in its exit
/// status; this process connects as root. Each side must refuse the other.
fn foreign_user_is_refused() -> bool {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("two_process: not root, the foreign-uid check is skipped");
        return false;
    }
    let nobody: u32 = 65534;
    let (mut ours, mut theirs) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    // SAFETY: this process has one thread here (harness = false, the
    // earlier child is reaped), so the child may run ordinary code.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        drop(ours);
        // SAFETY: plain system calls; the group first, while still root.
        let dropped = unsafe { libc::setgid(nobody) == 0 && libc::setuid(nobody) == 0 };
        if !dropped {
            std::process::exit(4);
        }
        let listener = Listener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).expect("bind");
        let port = listener.local_addr().port();
        use std::io::Write;
        theirs
            .write_all(&port.to_le_bytes())
            .expect("send the port");
        let code = match listener.accept(SOON, SOON) {
            Err(CmaError::ForeignUser { peer: 0, ours }) if ours == nobody => 0,
            Err(other) => {
                eprintln!("foreign: unexpected {other}");
                2
            }
            Ok(_) => 3,
        };
        std::process::exit(code);
    }
    drop(theirs);
    let mut port = [0u8; 2];
    use std::io::Read;
    ours.read_exact(&mut port).expect("the child's port");
    let port = u16::from_le_bytes(port);
    match connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), SOON) {
        Err(CmaError::ForeignUser { peer, ours }) => assert_eq!((peer, ours), (nobody, 0)),
        other => panic!("expected ForeignUser, got {:?}", other.map(|_| ())),
    }
    let mut status = 0;
    // SAFETY: `pid` is our child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the listener refused us too (status {status:#x})"
    );
    true
}
