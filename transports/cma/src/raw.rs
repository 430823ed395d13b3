//! Baseline throughput of bare cross-memory-attach and Unix-socket loops
//! between two processes, to report rdio's throughput over this transport
//! as a ratio against what the mechanism itself does on the same machine.
//!
//! [`run`] forks a child that only owns a buffer of `size` bytes and
//! answers on a socket pair, then streams `count` operations into it:
//!
//! * [`RawOp::Write`]: `process_vm_writev` of `size` bytes into the
//!   child's buffer, back to back — what an rdio read costs the server
//!   per request, without the protocol;
//! * [`RawOp::Send`]: `size`-byte `write`s on the socket pair, which the
//!   child `read`s into its buffer — how rdio's sends (and so writes to a
//!   file, whose data travels in sends) move.
//!
//! The clock stops when the child has acknowledged the last byte (a 1-byte
//! message after the data, answered by a 1-byte message back). The window
//! has no effect: `process_vm_writev` returns when its copy is done, so
//! there is never more than one in flight, and a stream socket has no
//! per-message window; it is recorded so the rows line up with rdio's
//! queue depths.

use std::fmt;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::sys::{self, Mapping, Span};

pub use rdio_transport::baseline::{RawConfig, RawOp, RawResult};

/// Why a baseline run failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum RawError {
    /// `size`, `count` or `window` is zero.
    InvalidConfig,
    /// Memory for the buffers could not be mapped.
    NoMemory,
    /// A system call failed.
    Os {
        /// What failed.
        during: &'static str,
        /// Why.
        error: std::io::Error,
    },
    /// The child exited before acknowledging.
    ChildLost,
}

impl fmt::Display for RawError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidConfig => f.write_str("size, count and window must be non-zero"),
            Self::NoMemory => f.write_str("cannot map the baseline's buffers"),
            Self::Os { during, error } => write!(f, "{during} failed: {error}"),
            Self::ChildLost => f.write_str("the baseline's child process went away"),
        }
    }
}

impl std::error::Error for RawError {}

fn os(during: &'static str) -> impl Fn(std::io::Error) -> RawError {
    move |error| RawError::Os { during, error }
}

/// The child's whole life: only `read`, `write` and `_exit` (a forked
/// child of a multi-threaded parent may call nothing that takes a lock).
fn child(socket: i32, parent_end: i32, buffer: *mut u8, size: usize, receive: usize) -> ! {
    let mut byte = 0u8;
    let mut left = receive;
    let mut at = 0usize;
    // SAFETY (every call below): the buffer is the child's copy of the
    // parent's mapping, `size` bytes, writable; `byte` is a local.
    unsafe {
        // Without the parent's end, a parent that dies is an end of file
        // here, not a hang.
        libc::close(parent_end);
        while left > 0 {
            let chunk = left.min(size - at);
            let got = libc::read(socket, buffer.add(at).cast(), chunk);
            if got <= 0 {
                libc::_exit(1);
            }
            left -= got as usize;
            at = (at + got as usize) % size;
        }
        if libc::read(socket, (&raw mut byte).cast(), 1) != 1 {
            libc::_exit(1);
        }
        if libc::write(socket, (&raw const byte).cast(), 1) != 1 {
            libc::_exit(1);
        }
        libc::_exit(0)
    }
}

/// Run one baseline between this process and a forked child.
pub fn run(config: RawConfig) -> Result<RawResult, RawError> {
    if !config.is_valid() {
        return Err(RawError::InvalidConfig);
    }
    let source = Mapping::zeroed(config.size).ok_or(RawError::NoMemory)?;
    let target = Mapping::zeroed(config.size).ok_or(RawError::NoMemory)?;
    // SAFETY: both mappings are `size` bytes of our own, exclusively here.
    unsafe {
        for i in 0..config.size {
            *source.ptr().add(i) = (i % 251) as u8;
        }
        std::ptr::write_bytes(target.ptr(), 1, config.size);
    }
    let (mut ours, theirs) = UnixStream::pair().map_err(os("socketpair"))?;
    let receive = match config.op {
        RawOp::Write => 0,
        RawOp::Send => config.size * config.count,
    };
    // SAFETY: fork has no memory preconditions; the child runs only
    // async-signal-safe calls (see `child`) and never returns.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(os("fork")(std::io::Error::last_os_error()));
    }
    if pid == 0 {
        child(
            theirs.as_raw_fd(),
            ours.as_raw_fd(),
            target.ptr(),
            config.size,
            receive,
        );
    }
    drop(theirs);
    let result = stream(&mut ours, pid, &source, &target, config);
    drop(ours);
    let mut status = 0;
    // SAFETY: `pid` is our child; reaping it is what waitpid is for.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let elapsed = result?;
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        return Err(RawError::ChildLost);
    }
    Ok(RawResult { config, elapsed })
}

fn stream(
    socket: &mut UnixStream,
    pid: libc::pid_t,
    source: &Mapping,
    target: &Mapping,
    config: RawConfig,
) -> Result<Duration, RawError> {
    let span = [Span {
        ptr: source.ptr(),
        len: source.len(),
    }];
    // The child's buffer is its copy-on-write copy of `target`: one
    // untimed pass faults its pages in, as rdio's registered buffers are
    // resident.
    let write = |what| {
        // SAFETY: `span` is our source mapping; the target is the child's
        // buffer, `size` bytes at the address it has in both processes.
        unsafe { sys::write_remote(pid, &span, target.ptr() as u64) }
            .map_err(|errno| os(what)(std::io::Error::from_raw_os_error(errno)))
    };
    if config.op == RawOp::Write {
        write("process_vm_writev (warm-up)")?;
    }
    // SAFETY: `source` is `size` readable bytes of our own.
    let bytes = unsafe { std::slice::from_raw_parts(source.ptr(), source.len()) };
    let started = Instant::now();
    for _ in 0..config.count {
        match config.op {
            RawOp::Write => write("process_vm_writev")?,
            RawOp::Send => socket.write_all(bytes).map_err(os("write"))?,
        }
    }
    socket.write_all(&[1]).map_err(os("write"))?;
    let mut ack = [0u8; 1];
    socket
        .read_exact(&mut ack)
        .map_err(|_| RawError::ChildLost)?;
    Ok(started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_loops_move_every_byte_and_time_it() {
        for op in [RawOp::Write, RawOp::Send] {
            let config = RawConfig {
                op,
                size: 64 << 10,
                count: 16,
                window: 1,
            };
            let result = run(config).expect("baseline");
            assert_eq!(result.bytes(), 1 << 20);
            assert!(result.bytes_per_sec() > 0.0);
        }
        assert!(matches!(
            run(RawConfig {
                op: RawOp::Write,
                size: 0,
                count: 1,
                window: 1
            }),
            Err(RawError::InvalidConfig)
        ));
    }
}
