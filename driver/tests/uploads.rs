//! Issue #16 on the server, over the loopback transport in both embedded
//! modes: uploads take their name only at the client's close (defect 4),
//! file-system errors reach the client by name (defect 5), and leading
//! slashes name the root of the export while directories say so (defect 6).
//! The same behaviour over libfabric and cross-memory attach, between
//! processes, is in `cli/tests/network.rs`.

use rdio::client::{ClientError, CompletionMode, Operation};
use rdio::embedded::{Embedded, EmbeddedOptions, Mode};
use rdio_core::wire::{OpenFlags, Status};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[macro_use]
mod support;

const UPLOAD: OpenFlags = OpenFlags::WRITE
    .union(OpenFlags::CREATE)
    .union(OpenFlags::TRUNCATE);

in_both_modes!(
    an_upload_takes_its_name_at_the_close,
    an_upload_is_discarded_when_its_connection_ends_first,
    an_upload_is_discarded_when_the_server_stops_it,
    a_close_that_cannot_finish_the_upload_fails_by_name,
    leading_slashes_name_the_root_and_directories_say_so,
    a_full_file_system_is_reported_by_name_and_leaves_nothing,
    a_read_only_file_system_is_reported_by_name,
);

fn start<M: Mode>(root: &Path) -> Embedded<M> {
    let mut options = EmbeddedOptions::default();
    options.client.mode = CompletionMode::Interrupt;
    M::start(root, options).expect("start embedded pair")
}

/// Names in `dir` starting with `.`: temporary upload files.
fn hidden(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .expect("list")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.starts_with('.'))
        .collect()
}

/// Wait (bounded) until the server removed every temporary file in `dir`:
/// a server on threads of its own notices a connection's end on its own
/// time.
fn wait_until_no_hidden(dir: &Path) {
    let started = Instant::now();
    while !hidden(dir).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "temporary files left: {:?}",
            hidden(dir)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn remote_status<T: std::fmt::Debug>(result: Result<T, ClientError>) -> (Operation, Status) {
    match result {
        Err(ClientError::Remote { operation, status }) => (operation, status),
        other => panic!("expected a server refusal, got {other:?}"),
    }
}

fn an_upload_takes_its_name_at_the_close<M: Mode>() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("f"), b"old contents").expect("write");
    let mut pair = start::<M>(dir.path());
    let file = pair.client.open("f", UPLOAD).expect("open");
    assert_eq!(file.size, 0, "an upload starts empty");
    let new = support::random_bytes(3 << 20, 7);
    pair.client.write_at(&file, 0, &new).expect("write");
    // Every byte is on the server, but until the close the name is the old
    // file's.
    assert_eq!(
        fs::read(dir.path().join("f")).expect("read"),
        b"old contents"
    );
    assert_eq!(hidden(dir.path()).len(), 1);
    pair.client.close(file).expect("close");
    assert_eq!(fs::read(dir.path().join("f")).expect("read"), new);
    assert!(hidden(dir.path()).is_empty());
    // In place, the file is emptied at the open, as before.
    let in_place = pair
        .client
        .open("f", UPLOAD.union(OpenFlags::IN_PLACE))
        .expect("open in place");
    assert!(fs::read(dir.path().join("f")).expect("read").is_empty());
    pair.client.write_at(&in_place, 0, b"x").expect("write");
    assert_eq!(fs::read(dir.path().join("f")).expect("read"), b"x");
    pair.client.close(in_place).expect("close");
    pair.finish().expect("finish");
}

fn an_upload_is_discarded_when_its_connection_ends_first<M: Mode>() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("f"), b"old contents").expect("write");
    let mut pair = start::<M>(dir.path());
    let file = pair.client.open("f", UPLOAD).expect("open");
    pair.client
        .write_at(&file, 0, &[9u8; 100_000])
        .expect("write");
    let fresh = pair.client.open("new", UPLOAD).expect("open");
    pair.client.write_at(&fresh, 0, b"partial").expect("write");
    // Opened on the pipe and never registered: released when the pipe ends.
    let _pending = pair.client.open_on_pipe("pending", UPLOAD).expect("open");
    assert_eq!(hidden(dir.path()).len(), 3);
    // The client goes without closing: the connection ends first.
    pair.finish().expect("finish");
    wait_until_no_hidden(dir.path());
    assert_eq!(
        fs::read(dir.path().join("f")).expect("read"),
        b"old contents"
    );
    assert!(!dir.path().join("new").exists());
    assert!(!dir.path().join("pending").exists());
}

fn an_upload_is_discarded_when_the_server_stops_it<M: Mode>() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("f"), b"old contents").expect("write");
    let mut pair = start::<M>(dir.path());
    let file = pair.client.open("f", UPLOAD).expect("open");
    pair.client.write_at(&file, 0, b"new").expect("write");
    // The server shuts the connection down (as `rdio serve` does on
    // SIGTERM); the client's close then finds the connection gone.
    assert!(pair.control().shutdown());
    let closed = pair.client.close(file);
    assert!(closed.is_err(), "the close after a shutdown: {closed:?}");
    // (An inline server releases its connection when the pair finishes.)
    let _ = pair.finish();
    wait_until_no_hidden(dir.path());
    assert_eq!(
        fs::read(dir.path().join("f")).expect("read"),
        b"old contents"
    );
}

fn a_close_that_cannot_finish_the_upload_fails_by_name<M: Mode>() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut pair = start::<M>(dir.path());
    let file = pair.client.open("f", UPLOAD).expect("open");
    pair.client.write_at(&file, 0, b"data").expect("write");
    // Meanwhile someone makes the name a directory (not empty).
    fs::create_dir(dir.path().join("f")).expect("mkdir");
    fs::write(dir.path().join("f/child"), b"x").expect("write");
    assert_eq!(
        remote_status(pair.client.close(file)),
        (Operation::Close, Status::IsADirectory)
    );
    assert!(hidden(dir.path()).is_empty(), "the upload is discarded");
    assert_eq!(fs::read(dir.path().join("f/child")).expect("read"), b"x");
    assert_eq!(pair.server().open_files(), 0, "the file is released");
    pair.finish().expect("finish");
}

fn leading_slashes_name_the_root_and_directories_say_so<M: Mode>() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::create_dir(dir.path().join("sub")).expect("mkdir");
    let mut pair = start::<M>(dir.path());
    let file = pair.client.open("/sub/f", UPLOAD).expect("open /sub/f");
    pair.client.write_at(&file, 0, b"slash").expect("write");
    pair.client.close(file).expect("close");
    assert_eq!(fs::read(dir.path().join("sub/f")).expect("read"), b"slash");
    let file = pair.client.open("//sub/f", OpenFlags::READ).expect("open");
    let mut buf = [0u8; 16];
    let n = pair.client.read_at(&file, 0, &mut buf).expect("read");
    assert_eq!(&buf[..n], b"slash");
    pair.client.close(file).expect("close");
    for path in ["/", "sub", "/sub", "sub/"] {
        for flags in [OpenFlags::READ, UPLOAD] {
            assert_eq!(
                remote_status(pair.client.open(path, flags)),
                (Operation::Open, Status::IsADirectory),
                "{path} {flags:?}"
            );
        }
    }
    assert_eq!(
        remote_status(pair.client.open("sub/f/g", UPLOAD)),
        (Operation::Open, Status::NotADirectory)
    );
    // Still confined: `..` past the root is refused.
    assert_eq!(
        remote_status(pair.client.open("/../f", OpenFlags::READ)),
        (Operation::Open, Status::AccessDenied)
    );
    assert!(hidden(dir.path()).is_empty());
    pair.finish().expect("finish");
}

/// A 1 MiB tmpfs mounted for a test, unmounted when dropped.
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    /// `None`, after saying why, where mounting is impossible (not root,
    /// no CAP_SYS_ADMIN, a container without mount rights).
    fn mount() -> Option<Self> {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(out) if out.status.success() => Some(Self { dir }),
            Ok(out) => {
                eprintln!(
                    "skipped: cannot mount a small tmpfs: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("skipped: cannot run mount: {e}");
                None
            }
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().to_owned()
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn a_full_file_system_is_reported_by_name_and_leaves_nothing<M: Mode>() {
    let Some(small) = SmallFs::mount() else {
        return;
    };
    let root = small.path();
    fs::write(root.join("f"), b"old contents").expect("write");
    let mut pair = start::<M>(&root);
    let big = support::random_bytes(2 << 20, 3);
    for flags in [UPLOAD, UPLOAD.union(OpenFlags::IN_PLACE)] {
        let name = if flags.contains(OpenFlags::IN_PLACE) {
            "g"
        } else {
            "f"
        };
        let file = pair.client.open(name, flags).expect("open");
        assert_eq!(
            remote_status(pair.client.write_at(&file, 0, &big)),
            (Operation::Write, Status::NoSpace),
            "{flags:?}"
        );
        if flags.is_upload() {
            // A close after a failed write does not put the partial file
            // in the name's place.
            assert_eq!(
                remote_status(pair.client.close(file)),
                (Operation::Close, Status::NoSpace)
            );
            assert!(hidden(&root).is_empty());
            assert_eq!(fs::read(root.join("f")).expect("read"), b"old contents");
        } else {
            pair.client.close(file).expect("close in place");
            fs::remove_file(root.join("g")).expect("remove the partial file");
        }
    }
    // A failed upload does not keep a later one from succeeding.
    let file = pair.client.open("f", UPLOAD).expect("open");
    pair.client.write_at(&file, 0, b"fits").expect("write");
    pair.client.close(file).expect("close");
    assert_eq!(fs::read(root.join("f")).expect("read"), b"fits");
    assert_eq!(
        ClientError::Remote {
            operation: Operation::Write,
            status: Status::NoSpace
        }
        .to_string(),
        "write: no space left on the server"
    );
    // And one cut short by the connection's end goes too.
    let file = pair.client.open("f", UPLOAD).expect("open");
    let _ = pair.client.write_at(&file, 0, &big);
    pair.finish().expect("finish");
    wait_until_no_hidden(&root);
    assert_eq!(fs::read(root.join("f")).expect("read"), b"fits");
}

fn a_read_only_file_system_is_reported_by_name<M: Mode>() {
    let Some(small) = SmallFs::mount() else {
        return;
    };
    let root = small.path();
    fs::write(root.join("f"), b"kept").expect("write");
    let remount = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&root)
        .status();
    if !remount.is_ok_and(|status| status.success()) {
        eprintln!("skipped: cannot remount the tmpfs read-only");
        return;
    }
    let mut pair = start::<M>(&root);
    for flags in [
        UPLOAD,
        UPLOAD.union(OpenFlags::IN_PLACE),
        OpenFlags::READ | OpenFlags::WRITE,
    ] {
        assert_eq!(
            remote_status(pair.client.open("f", flags)),
            (Operation::Open, Status::ReadOnlyFileSystem),
            "{flags:?}"
        );
    }
    let file = pair.client.open("/f", OpenFlags::READ).expect("reads work");
    let mut buf = [0u8; 8];
    let n = pair.client.read_at(&file, 0, &mut buf).expect("read");
    assert_eq!(&buf[..n], b"kept");
    pair.client.close(file).expect("close");
    pair.finish().expect("finish");
}
