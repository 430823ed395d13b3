//! Read-only mappings of served files, for zero-copy reads: the server
//! registers a file's pages with the transport and RDMA-writes read data
//! straight from the page cache, as kernel SMB Direct and NFS/RDMA servers
//! do, instead of `pread`ing into a bounce buffer and writing from there.
//!
//! # Why a lease
//!
//! A mapping outlives nothing it does not own, but the operating system can
//! still take its pages away: when a mapped file is truncated, touching the
//! lost pages raises `SIGBUS` in whatever touches them — the CPU copy of a
//! software transport (loopback, libfabric `tcp`) would kill the server.
//! (Hardware RDMA is safe either way: `ibv_reg_mr` pins the pages.)
//!
//! So a mapping is only made under a Linux **read lease**
//! (`fcntl(F_SETLEASE, F_RDLCK)`), which the kernel grants only while *no*
//! descriptor anywhere has the file open for writing, and which any later
//! `open` for writing or `truncate(2)` must *break* first: the breaker
//! blocks (or gets `EAGAIN` with `O_NONBLOCK`) until the holder gives the
//! lease up, for at most `/proc/sys/fs/lease-break-time` seconds (45 by
//! default). While the lease is held the file cannot change size, so every
//! byte of the mapping stays valid; [`FileLease::held`] tells whether a
//! break has begun. The server asks it on every idle turn and, while busy,
//! once a millisecond (`HOUSEKEEPING` in `server::connection`: a system
//! call per read would cost more than the rest of the read), stops using
//! the mapping as soon as it sees a break, and unmaps and releases when its
//! last RDMA write from the mapping completes — within milliseconds, far
//! inside the break time.
//!
//! Files that cannot be leased (opened for writing by anyone, including
//! this server; not owned by the server's user without `CAP_LEASE`; on a
//! file system without leases) are served through bounce buffers as
//! before: the mapping is an optimisation, never a requirement.
//!
//! A lease break notifies the holder with `SIGIO`, whose default action
//! ends the process; [`FileLease::take`] therefore sets `SIGIO` to be
//! ignored the first time it runs, unless the application installed a
//! handler of its own (the server polls the lease instead).

use super::File;
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Once;

/// A read lease on a served file, held on a read-only descriptor of its own.
/// Dropping it closes the descriptor, which releases the lease.
#[derive(Debug)]
pub struct FileLease {
    file: fs::File,
    len: u64,
}

/// The whole file, mapped read-only and shared with the page cache.
#[derive(Debug)]
pub struct FileMap(memmap2::Mmap);

impl AsRef<[u8]> for FileMap {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl FileLease {
    /// Take a read lease on `file` and map it. `Ok(None)` when the file is
    /// empty; an error when no lease can be had (see the module docs),
    /// which callers take as "serve this file by copying".
    pub fn take(file: &File) -> io::Result<Option<(Self, FileMap)>> {
        ignore_sigio();
        // A lease can only be taken on a descriptor open read-only, so open
        // the same file again through its descriptor (the same inode, no
        // path lookup a client could influence).
        let path = format!("/proc/self/fd/{}", file.as_fd().as_raw_fd());
        let leased = fs::File::open(path)?;
        set_lease(&leased, libc::F_RDLCK)?;
        let len = leased.metadata()?.len();
        if len == 0 {
            return Ok(None);
        }
        // SAFETY: memmap2 maps read-only and `Mmap` hands out `&[u8]`; the
        // bytes behind it stay valid as long as the file does not shrink,
        // which the lease just taken rules out until it is broken, and the
        // server stops reading the mapping as soon as a break begins
        // (`held`) — see the module docs. Nothing writes through it.
        let map = unsafe { memmap2::MmapOptions::new().map(&leased)? };
        Ok(Some((Self { file: leased, len }, FileMap(map))))
    }

    /// The file's length while the lease holds (it cannot change meanwhile).
    pub fn file_len(&self) -> u64 {
        self.len
    }

    /// Whether the lease still holds: `false` once a writer has begun to
    /// break it (or it is gone), after which the mapping must not be read.
    pub fn held(&self) -> bool {
        // SAFETY: F_GETLEASE reads the lease state of a descriptor we own.
        let state = unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_GETLEASE) };
        state == libc::F_RDLCK
    }
}

fn set_lease(file: &fs::File, kind: libc::c_int) -> io::Result<()> {
    // SAFETY: F_SETLEASE on a descriptor we own; no pointers are passed.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLEASE, kind) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether the file system and user behind `dir` can take read leases,
/// which zero-copy reads need. Tries a regular file directly in `dir`
/// first (the files actually served: another user's file needs
/// `CAP_LEASE`), skipping those open for writing somewhere; with none to
/// try, creates a hidden empty file, leases it and removes it. `Err` says
/// why not (a file system without leases, `EACCES`, a read-only empty
/// directory): reads of files under `dir` are then copied through bounce
/// buffers.
pub fn probe_leases(dir: &std::path::Path) -> io::Result<()> {
    let lease = |file: &fs::File| {
        set_lease(file, libc::F_RDLCK)?;
        set_lease(file, libc::F_UNLCK)
    };
    for entry in fs::read_dir(dir)?.filter_map(Result::ok).take(8) {
        // `file_type` does not follow symlinks, so FIFOs and devices are
        // never opened.
        if !entry.file_type().is_ok_and(|kind| kind.is_file()) {
            continue;
        }
        let Ok(file) = fs::File::open(entry.path()) else {
            continue;
        };
        match lease(&file) {
            Ok(()) => return Ok(()),
            // Open for writing somewhere right now: says nothing about
            // the file system.
            Err(error) if error.raw_os_error() == Some(libc::EAGAIN) => {}
            Err(error) => return Err(error),
        }
    }
    let path = dir.join(format!(".rdio-lease-probe-{}", std::process::id()));
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    // Closed for writing before the lease: a read lease is refused while
    // any descriptor of the file is open for writing.
    let leased = fs::File::open(&path).and_then(|file| lease(&file));
    let removed = fs::remove_file(&path);
    leased.and(removed)
}

/// Keep a lease break's `SIGIO` from ending the process, unless someone
/// handles it already.
fn ignore_sigio() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: sigaction with a zeroed (valid) struct to read the current
        // action, then installing SIG_IGN, which runs no code of ours.
        unsafe {
            let mut current: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGIO, std::ptr::null(), &mut current) == 0
                && current.sa_sigaction == libc::SIG_DFL
            {
                let mut ignore: libc::sigaction = std::mem::zeroed();
                ignore.sa_sigaction = libc::SIG_IGN;
                libc::sigaction(libc::SIGIO, &ignore, std::ptr::null_mut());
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::Root;
    use rdio_core::wire::OpenFlags;
    use std::time::{Duration, Instant};

    fn leases_work_here(dir: &std::path::Path) -> bool {
        let probe = dir.join("probe");
        fs::write(&probe, b"x").expect("probe");
        let file = fs::File::open(&probe).expect("open");
        set_lease(&file, libc::F_RDLCK).is_ok()
    }

    #[test]
    fn a_writer_breaks_the_lease_and_waits_for_its_release() {
        let dir = tempfile::tempdir().expect("tempdir");
        if !leases_work_here(dir.path()) {
            eprintln!("skipped: this file system or user cannot take leases");
            return;
        }
        fs::write(dir.path().join("f"), vec![5u8; 10_000]).expect("file");
        let root = Root::new(dir.path()).expect("root");
        let file = root.open("f", OpenFlags::READ).expect("open");
        let (lease, map) = FileLease::take(&file).expect("lease").expect("non-empty");
        assert_eq!(lease.file_len(), 10_000);
        assert_eq!(map.as_ref(), &[5u8; 10_000][..]);
        assert!(lease.held());

        // Another process's truncation: it must wait until the lease goes.
        let path = dir.path().join("f");
        let writer = std::thread::spawn(move || {
            let started = Instant::now();
            let file = fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&path)
                .expect("open for writing");
            drop(file);
            started.elapsed()
        });
        let started = Instant::now();
        while lease.held() {
            assert!(started.elapsed() < Duration::from_secs(10), "no break seen");
            std::thread::sleep(Duration::from_millis(1));
        }
        // The break has begun but the file is whole until we let go.
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(map.as_ref().len(), 10_000);
        assert_eq!(map.as_ref()[9_999], 5);
        drop(map);
        drop(lease);
        let waited = writer.join().expect("writer");
        assert!(
            waited >= Duration::from_millis(50),
            "writer waited {waited:?}"
        );
        assert_eq!(fs::metadata(dir.path().join("f")).expect("stat").len(), 0);
    }

    #[test]
    fn no_lease_while_anyone_has_the_file_open_for_writing() {
        let dir = tempfile::tempdir().expect("tempdir");
        if !leases_work_here(dir.path()) {
            eprintln!("skipped: this file system or user cannot take leases");
            return;
        }
        fs::write(dir.path().join("f"), b"data").expect("file");
        let root = Root::new(dir.path()).expect("root");
        let writer = root
            .open("f", OpenFlags::READ | OpenFlags::WRITE)
            .expect("open rw");
        assert!(
            FileLease::take(&writer).is_err(),
            "our own writer conflicts"
        );
        let reader = root.open("f", OpenFlags::READ).expect("open ro");
        assert!(FileLease::take(&reader).is_err(), "a writer elsewhere too");
        drop(writer);
        assert!(FileLease::take(&reader).expect("lease").is_some());
        fs::write(dir.path().join("empty"), b"").expect("empty");
        let empty = root.open("empty", OpenFlags::READ).expect("open");
        assert!(FileLease::take(&empty).expect("lease").is_none());
    }

    #[test]
    fn the_lease_probe_answers_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let probed = probe_leases(dir.path());
        assert_eq!(probed.is_ok(), leases_work_here(dir.path()), "{probed:?}");
        let left: Vec<_> = fs::read_dir(dir.path())
            .expect("list")
            .map(|entry| entry.expect("entry").file_name())
            .filter(|name| name.to_string_lossy().starts_with(".rdio-lease-probe"))
            .collect();
        assert!(left.is_empty(), "probe files left: {left:?}");
        // A file open for writing is skipped (it cannot be leased now, which
        // says nothing about the file system) and the probe file tried.
        let busy = tempfile::tempdir().expect("tempdir");
        let _writer = fs::File::create(busy.path().join("busy")).expect("create");
        assert_eq!(
            probe_leases(busy.path()).is_ok(),
            leases_work_here(dir.path())
        );
        assert_eq!(fs::read_dir(busy.path()).expect("list").count(), 1);
        let missing = dir.path().join("missing");
        assert_eq!(
            probe_leases(&missing)
                .expect_err("no such directory")
                .kind(),
            io::ErrorKind::NotFound
        );
    }
}
