//! Every system call of the crate that needs `unsafe`, each behind a small
//! safe wrapper: cross-memory attach, peer credentials, vectored
//! nonblocking socket I/O and `poll`; and [`Mapping`], the registered
//! memory (an anonymous mapping made by memmap2).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::{self, NonNull};
use std::time::Duration;

/// Most iovecs one gathered `sendmsg` or `process_vm_writev` is given.
pub(crate) const MAX_IOV: usize = 64;

/// Most iovecs the kernel takes in one vectored call (`IOV_MAX`,
/// `UIO_MAXIOV` on Linux): the bound of a batch of writes or frames.
pub(crate) const IOV_MAX: usize = 1024;

/// Page-aligned, zeroed, private anonymous memory, unmapped on drop.
///
/// A zero-length mapping maps nothing (a dangling, aligned pointer).
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    /// Owns the mapping (none for zero bytes); never touched after `ptr`
    /// is taken from it, so the pointer stays the one way in.
    _map: Option<memmap2::MmapMut>,
}

// SAFETY: the mapping is plain memory exclusively owned by this value; it
// holds no thread-bound state.
unsafe impl Send for Mapping {}
// SAFETY: shared access only hands out the pointer; every read or write
// through it is the caller's business (see `RegionTable`).
unsafe impl Sync for Mapping {}

impl Mapping {
    /// `len` zeroed bytes, or `None` if the kernel refuses.
    pub(crate) fn zeroed(len: usize) -> Option<Self> {
        if len == 0 {
            return Some(Self {
                ptr: NonNull::dangling(),
                len: 0,
                _map: None,
            });
        }
        let mut map = memmap2::MmapMut::map_anon(len).ok()?;
        let ptr = NonNull::new(map.as_mut_ptr())?;
        Some(Self {
            ptr,
            len,
            _map: Some(map),
        })
    }

    pub(crate) fn ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

/// A run of local memory to gather from, or scatter into.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Span {
    pub(crate) ptr: *mut u8,
    pub(crate) len: usize,
}

impl Span {
    fn iovec(self, skip: usize) -> libc::iovec {
        libc::iovec {
            // `skip <= len`: the callers only skip bytes already moved.
            iov_base: self.ptr.wrapping_add(skip).cast(),
            iov_len: self.len - skip,
        }
    }
}

/// Copy the gather list `local` into process `pid` at `remote`, looping
/// over partial transfers (`process_vm_writev(2)` stops at the first page
/// it cannot touch and reports what it copied).
///
/// Errors are the raw errno: `EFAULT` (a remote or local page is not
/// mapped), `ESRCH` (no such process), `EPERM` (no ptrace rights over it).
/// A call that moves nothing while bytes remain is reported as `EFAULT`.
///
/// # Safety
/// Every span of `local` must be readable memory of this process for the
/// duration of the call. Writing *remote* memory is what the call is for:
/// the caller has checked that the peer lent `remote .. remote + total`.
pub(crate) unsafe fn write_remote(
    pid: libc::pid_t,
    local: &[Span],
    remote: u64,
) -> Result<(), i32> {
    let total: usize = local.iter().map(|s| s.len).sum();
    let mut done = 0usize;
    while done < total {
        let mut iov = [libc::iovec {
            iov_base: ptr::null_mut(),
            iov_len: 0,
        }; MAX_IOV];
        let mut n = 0;
        let mut skip = done;
        for span in local {
            if skip >= span.len {
                skip -= span.len;
                continue;
            }
            if n == MAX_IOV {
                break;
            }
            iov[n] = span.iovec(skip);
            skip = 0;
            n += 1;
        }
        let remote_iov = libc::iovec {
            iov_base: (remote as usize).wrapping_add(done) as *mut libc::c_void,
            iov_len: total - done,
        };
        // SAFETY: `iov[..n]` describes readable local memory (the caller's
        // contract); the remote iovec is only interpreted by the kernel in
        // the target's address space, where it is checked page by page.
        let moved =
            unsafe { libc::process_vm_writev(pid, iov.as_ptr(), n as _, &remote_iov, 1, 0) };
        match moved {
            n if n > 0 => done += n as usize,
            0 => return Err(libc::EFAULT),
            _ => match errno() {
                libc::EINTR => {}
                code => return Err(code),
            },
        }
    }
    Ok(())
}

/// Copy the gather list `local` into the ranges `remote` of process `pid`
/// (the bytes of `local`, back to back, fill the ranges in order), with as
/// few `process_vm_writev` calls as the kernel allows: one for a batch of
/// RDMA writes, each write one range of `remote` and its gather list a run
/// of `local`. Both lists must hold the same number of bytes; they are
/// consumed in place as bytes move (a partial transfer resumes where it
/// stopped), so the caller passes scratch copies.
///
/// Returns how many bytes moved; on failure, how many moved before it and
/// the errno (as [`write_remote`]: `EFAULT`, `ESRCH`, `EPERM`), which
/// belongs to the range holding the first byte that did not move.
///
/// # Safety
/// As [`write_remote`]: every element of `local` must be readable memory
/// of this process for the duration of the call, and the caller has
/// checked that the peer lent every range of `remote`.
pub(crate) unsafe fn write_remote_vectored(
    pid: libc::pid_t,
    local: &mut [libc::iovec],
    remote: &mut [libc::iovec],
) -> Result<usize, (usize, i32)> {
    let total: usize = remote.iter().map(|v| v.iov_len).sum();
    let (mut l, mut r) = (0usize, 0usize);
    let mut done = 0usize;
    while done < total {
        let local_run = &local[l..local.len().min(l + IOV_MAX)];
        let remote_run = &remote[r..remote.len().min(r + IOV_MAX)];
        // SAFETY: `local_run` describes readable local memory (the
        // caller's contract); the remote iovecs are only interpreted by
        // the kernel in the target's address space, checked page by page.
        let moved = unsafe {
            libc::process_vm_writev(
                pid,
                local_run.as_ptr(),
                local_run.len() as _,
                remote_run.as_ptr(),
                remote_run.len() as _,
                0,
            )
        };
        match moved {
            n if n > 0 => {
                let n = n as usize;
                done += n;
                consume(local, &mut l, n);
                consume(remote, &mut r, n);
            }
            0 => return Err((done, libc::EFAULT)),
            _ => match errno() {
                libc::EINTR => {}
                code => return Err((done, code)),
            },
        }
    }
    Ok(done)
}

/// Drop the first `n` bytes of `iov[*start..]`: whole elements advance
/// `start`, a partly moved one is trimmed in place.
fn consume(iov: &mut [libc::iovec], start: &mut usize, mut n: usize) {
    while let Some(first) = iov.get_mut(*start) {
        if n < first.iov_len {
            first.iov_base = first.iov_base.cast::<u8>().wrapping_add(n).cast();
            first.iov_len -= n;
            return;
        }
        n -= first.iov_len;
        *start += 1;
    }
}

/// Copy the pieces `remote` (address, length) of process `pid`, in order,
/// into `local`, looping over partial transfers as [`write_remote`] does.
/// The pieces' lengths must add up to `local.len`.
///
/// # Safety
/// `local` must be writable memory of this process that nothing else
/// reads or writes during the call.
pub(crate) unsafe fn read_remote_into(
    pid: libc::pid_t,
    local: Span,
    remote: &[(u64, usize)],
) -> Result<(), i32> {
    let total: usize = remote.iter().map(|&(_, len)| len).sum();
    let mut done = 0usize;
    while done < total {
        let mut iov = [libc::iovec {
            iov_base: ptr::null_mut(),
            iov_len: 0,
        }; MAX_IOV];
        let mut n = 0;
        let mut skip = done;
        for &(addr, len) in remote {
            if skip >= len {
                skip -= len;
                continue;
            }
            if n == MAX_IOV {
                break;
            }
            iov[n] = libc::iovec {
                iov_base: (addr as usize).wrapping_add(skip) as *mut libc::c_void,
                iov_len: len - skip,
            };
            skip = 0;
            n += 1;
        }
        let local_iov = local.iovec(done);
        // SAFETY: the local iovec is the rest of `local`, writable per the
        // contract; the remote ones are checked by the kernel in the peer.
        let moved = unsafe { libc::process_vm_readv(pid, &local_iov, 1, iov.as_ptr(), n as _, 0) };
        match moved {
            n if n > 0 => done += n as usize,
            0 => return Err(libc::EFAULT),
            _ => match errno() {
                libc::EINTR => {}
                code => return Err(code),
            },
        }
    }
    Ok(())
}

/// Read `out.len()` bytes of process `pid` at `remote` (the handshake's
/// probe that cross-memory attach is allowed between the two processes).
pub(crate) fn read_remote(pid: libc::pid_t, remote: u64, out: &mut [u8]) -> Result<(), i32> {
    let local = libc::iovec {
        iov_base: out.as_mut_ptr().cast(),
        iov_len: out.len(),
    };
    let remote = libc::iovec {
        iov_base: remote as usize as *mut libc::c_void,
        iov_len: out.len(),
    };
    // SAFETY: `local` is `out`, writable for its length; the remote iovec is
    // checked by the kernel in the target's address space.
    let moved = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    match moved {
        n if n >= 0 && n as usize == out.len() => Ok(()),
        n if n >= 0 => Err(libc::EFAULT),
        _ => Err(errno()),
    }
}

/// The kernel-verified credentials of a Unix socket's peer (`SO_PEERCRED`):
/// for a connected socket, those of the process that connected it or
/// called `listen` on the other end, as of that moment.
pub(crate) fn peer_credentials(socket: BorrowedFd<'_>) -> io::Result<libc::ucred> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes of the sizes given.
    let ret = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            ptr::from_mut(&mut cred).cast(),
            &mut len,
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cred)
}

/// This process's effective uid.
pub(crate) fn effective_uid() -> libc::uid_t {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// `sendmsg(MSG_DONTWAIT | MSG_NOSIGNAL)` of `spans` (each skipping nothing:
/// the caller trims the first). `Ok(0)` when the socket buffer is full.
///
/// # Safety
/// Every span must be readable memory of this process.
pub(crate) unsafe fn send_spans(
    socket: BorrowedFd<'_>,
    spans: &[libc::iovec],
) -> Result<usize, i32> {
    let msg = libc::msghdr {
        msg_name: ptr::null_mut(),
        msg_namelen: 0,
        msg_iov: spans.as_ptr().cast_mut(),
        msg_iovlen: spans.len() as _,
        msg_control: ptr::null_mut(),
        msg_controllen: 0,
        msg_flags: 0,
    };
    loop {
        // SAFETY: `msg` points at `spans`, readable per the contract, and
        // lives across the call.
        let sent = unsafe {
            libc::sendmsg(
                socket.as_raw_fd(),
                &msg,
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if sent >= 0 {
            return Ok(sent as usize);
        }
        match errno() {
            libc::EINTR => {}
            libc::EAGAIN => return Ok(0),
            code => return Err(code),
        }
    }
}

/// The iovec of `span` after its first `skip` bytes.
pub(crate) fn iovec(span: Span, skip: usize) -> libc::iovec {
    span.iovec(skip)
}

/// Nonblocking `recv` into `len` bytes at `ptr`: `Ok(None)` when nothing is
/// there, `Ok(Some(0))` at end of stream.
///
/// # Safety
/// `ptr .. ptr + len` must be writable memory of this process that nothing
/// else reads or writes during the call.
pub(crate) unsafe fn recv_into(
    socket: BorrowedFd<'_>,
    ptr: *mut u8,
    len: usize,
) -> Result<Option<usize>, i32> {
    loop {
        // SAFETY: the caller's contract.
        let got = unsafe { libc::recv(socket.as_raw_fd(), ptr.cast(), len, libc::MSG_DONTWAIT) };
        if got >= 0 {
            return Ok(Some(got as usize));
        }
        match errno() {
            libc::EINTR => {}
            libc::EAGAIN => return Ok(None),
            code => return Err(code),
        }
    }
}

/// `poll(2)` one socket for input (and output if `want_write`), at most
/// `timeout` (`None`: forever), rounded up to whole milliseconds so a
/// wait never returns before its time. Whether it is readable (or closed,
/// which a read then tells).
pub(crate) fn poll_socket(
    socket: BorrowedFd<'_>,
    want_write: bool,
    timeout: Option<Duration>,
) -> Result<bool, i32> {
    let mut fd = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLIN | if want_write { libc::POLLOUT } else { 0 },
        revents: 0,
    };
    let millis = timeout.map_or(-1, |t| {
        i32::try_from(t.as_micros().div_ceil(1000)).unwrap_or(i32::MAX)
    });
    // SAFETY: one valid pollfd, writable for the kernel's revents.
    let ret = unsafe { libc::poll(&mut fd, 1, millis) };
    if ret < 0 {
        return match errno() {
            libc::EINTR => Ok(false),
            code => Err(code),
        };
    }
    Ok(fd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0)
}

pub(crate) fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iov(ptr: *mut u8, len: usize) -> libc::iovec {
        libc::iovec {
            iov_base: ptr.cast(),
            iov_len: len,
        }
    }

    /// A batch into this very process: whole ranges land, and a range
    /// that runs into a page the kernel refuses stops the batch with the
    /// count of bytes moved before it, so the caller can tell which write
    /// failed.
    #[test]
    fn a_vectored_write_reports_how_far_it_got_before_a_refused_page() {
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() };
        let page = 4096;
        let target = Mapping::zeroed(2 * page).expect("mapping");
        // SAFETY: the second page of our own mapping, made inaccessible.
        let ret = unsafe {
            libc::mprotect(
                target.ptr().wrapping_add(page).cast(),
                page,
                libc::PROT_NONE,
            )
        };
        assert_eq!(ret, 0);
        let mut source = vec![0u8; 1024];
        source
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = i as u8);
        let src = source.as_mut_ptr();
        let base = target.ptr();

        // Two whole ranges, the second gathered from two pieces.
        let mut local = [iov(src, 100), iov(src.wrapping_add(100), 50), iov(src, 50)];
        let mut remote = [iov(base, 100), iov(base.wrapping_add(200), 100)];
        // SAFETY: `source` is readable; the ranges are our own mapping.
        let moved = unsafe { write_remote_vectored(pid, &mut local, &mut remote) };
        assert_eq!(moved, Ok(200));
        // SAFETY: the first page is ours and readable.
        let first = unsafe { std::slice::from_raw_parts(base, page) };
        assert_eq!(&first[..100], &source[..100]);
        assert_eq!(&first[200..250], &source[100..150]);
        assert_eq!(&first[250..300], &source[..50]);

        // The second range crosses into the refused page.
        let mut local = [iov(src, 10), iov(src, 196), iov(src, 10)];
        let mut remote = [
            iov(base.wrapping_add(400), 10),
            iov(base.wrapping_add(page - 96), 196),
            iov(base.wrapping_add(500), 10),
        ];
        // SAFETY: as above; the kernel checks the refused page.
        let result = unsafe { write_remote_vectored(pid, &mut local, &mut remote) };
        assert_eq!(result, Err((10 + 96, libc::EFAULT)));
        // SAFETY: the first page is ours and readable.
        let first = unsafe { std::slice::from_raw_parts(base, page) };
        assert_eq!(&first[page - 96..], &source[..96], "up to the refused page");
        assert!(first[500..510].iter().all(|&b| b == 0), "nothing after it");
    }
}
