//! The file backend on real files in a temporary directory.

use rdio::files::{
    FileError, FileId, FileTable, OpenError, ReadSegment, Root, TableFull, UnknownFile,
    WriteSegment,
};
use rdio_core::wire::{OpenFlags, Status};
use std::fs;
use std::io::{IoSlice, IoSliceMut};
use std::os::unix::fs::symlink;
use std::path::Path;

const R: OpenFlags = OpenFlags::READ;
const W: OpenFlags = OpenFlags::WRITE;
const RW: OpenFlags = OpenFlags::READ.union(OpenFlags::WRITE);
const RWC: OpenFlags = RW.union(OpenFlags::CREATE);

/// Bytes that differ at every position of a page, so misplaced data shows.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
        .collect()
}

/// A temp dir holding `root/` (exported) and `outside/secret` next to it.
struct Fixture {
    tmp: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        fs::create_dir(tmp.path().join("root")).expect("mkdir root");
        fs::create_dir(tmp.path().join("outside")).expect("mkdir outside");
        fs::write(tmp.path().join("outside/secret"), b"secret").expect("write secret");
        Self { tmp }
    }

    fn dir(&self) -> &Path {
        self.tmp.path()
    }

    fn root_path(&self) -> std::path::PathBuf {
        self.dir().join("root")
    }

    fn root(&self) -> Root {
        Root::new(self.root_path()).expect("export root")
    }
}

#[test]
fn lexical_traversal_is_rejected() {
    let fx = Fixture::new();
    let root = fx.root();
    fs::create_dir(fx.root_path().join("a")).expect("mkdir a");
    fs::write(fx.root_path().join("b"), b"b").expect("write b");
    let cases: &[(&[u8], OpenError)] = &[
        (b"../outside/secret", OpenError::ParentComponent),
        (b"..", OpenError::ParentComponent),
        (b"a/../../outside/secret", OpenError::ParentComponent),
        // Even `..` that would stay inside is refused: there is no reason for a
        // client to send one, and refusing it keeps the rule simple.
        (b"a/../b", OpenError::ParentComponent),
        (b"/../outside/secret", OpenError::ParentComponent),
        (b"", OpenError::EmptyPath),
        (b"b\0", OpenError::NulByte),
        (b"a\0/../../outside/secret", OpenError::NulByte),
    ];
    for (path, expected) in cases {
        assert_eq!(
            root.open(path, R).unwrap_err(),
            *expected,
            "path {:?}",
            String::from_utf8_lossy(path)
        );
        assert_eq!(
            expected.status(),
            if *expected == OpenError::EmptyPath || *expected == OpenError::NulByte {
                Status::InvalidParameter
            } else {
                Status::AccessDenied
            }
        );
    }
    let long = vec![b'x'; rdio_core::wire::MAX_PATH_LEN + 1];
    assert_eq!(
        root.open(&long, R).unwrap_err(),
        OpenError::PathTooLong {
            len: long.len(),
            max: long.len() - 1
        }
    );
}

#[test]
fn symlinks_escaping_the_root_are_rejected_by_the_kernel() {
    let fx = Fixture::new();
    let root_path = fx.root_path();
    symlink(fx.dir().join("outside/secret"), root_path.join("absolute")).expect("symlink");
    symlink("../outside/secret", root_path.join("relative")).expect("symlink");
    symlink("/etc", root_path.join("etc")).expect("symlink");
    let root = fx.root();
    // Created after the root was exported: checked at open time, not export time.
    symlink("../outside", root_path.join("late_dir")).expect("symlink");
    fs::create_dir(root_path.join("sub")).expect("mkdir");
    symlink("../../outside/secret", root_path.join("sub/deep")).expect("symlink");
    for path in [
        "absolute",
        "relative",
        "etc/passwd",
        "late_dir/secret",
        "sub/deep",
    ] {
        assert_eq!(
            root.open(path, R).unwrap_err(),
            OpenError::EscapesRoot,
            "path {path}"
        );
        assert_eq!(
            root.open(path, RW).unwrap_err(),
            OpenError::EscapesRoot,
            "path {path}"
        );
    }
    assert_eq!(OpenError::EscapesRoot.status(), Status::AccessDenied);
}

#[test]
fn create_through_an_escaping_symlink_creates_nothing_outside() {
    let fx = Fixture::new();
    let root_path = fx.root_path();
    symlink("../outside/new", root_path.join("dangling")).expect("symlink");
    symlink(
        fx.dir().join("outside/new_abs"),
        root_path.join("dangling_abs"),
    )
    .expect("symlink");
    let root = fx.root();
    let in_place = RWC.union(OpenFlags::TRUNCATE).union(OpenFlags::IN_PLACE);
    assert_eq!(
        root.open("dangling", in_place).unwrap_err(),
        OpenError::EscapesRoot
    );
    assert_eq!(
        root.open("dangling_abs", in_place).unwrap_err(),
        OpenError::EscapesRoot
    );
    assert_eq!(
        root.open("late/../../outside/secret", in_place)
            .unwrap_err(),
        OpenError::ParentComponent
    );
    // An upload replaces the name itself: the link goes, its target outside
    // is never created.
    let upload = root
        .open("dangling", RWC.union(OpenFlags::TRUNCATE))
        .expect("upload over a symlink");
    upload.write_at(0, b"inside").expect("write");
    upload.finish().expect("finish");
    let meta = fs::symlink_metadata(root_path.join("dangling")).expect("stat");
    assert!(meta.file_type().is_file());
    assert_eq!(
        fs::read(root_path.join("dangling")).expect("read"),
        b"inside"
    );
    assert!(!fx.dir().join("outside/new").exists());
    assert!(!fx.dir().join("outside/new_abs").exists());
    assert_eq!(
        fs::read(fx.dir().join("outside/secret")).expect("read"),
        b"secret"
    );
}

#[test]
fn symlinks_inside_the_root_are_followed() {
    let fx = Fixture::new();
    let root_path = fx.root_path();
    fs::create_dir(root_path.join("data")).expect("mkdir");
    fs::write(root_path.join("data/file"), b"inside").expect("write");
    symlink("data/file", root_path.join("link")).expect("symlink");
    fs::create_dir(root_path.join("nested")).expect("mkdir");
    symlink("../data/file", root_path.join("nested/up")).expect("symlink");
    let root = fx.root();
    let mut buf = [0u8; 16];
    for path in ["link", "nested/up"] {
        let file = root.open(path, R).expect("open inside link");
        assert_eq!(file.read_at(0, &mut buf).expect("read"), 6);
        assert_eq!(&buf[..6], b"inside");
    }
}

#[test]
fn magic_links_and_loops_are_rejected() {
    let fx = Fixture::new();
    let root_path = fx.root_path();
    symlink("loop_b", root_path.join("loop_a")).expect("symlink");
    symlink("loop_a", root_path.join("loop_b")).expect("symlink");
    let root = fx.root();
    assert_eq!(root.open("loop_a", R).unwrap_err(), OpenError::SymlinkLoop);
    // procfs magic links jump anywhere without a path: refused even when the
    // export is /proc itself.
    let proc_self = Root::new("/proc/self").expect("export /proc/self");
    let err = proc_self.open("exe", R).unwrap_err();
    assert_eq!(err, OpenError::SymlinkLoop);
    assert_eq!(err.status(), Status::AccessDenied);
}

#[test]
fn missing_files_and_directories() {
    let fx = Fixture::new();
    let root = fx.root();
    assert_eq!(root.open("missing", R).unwrap_err(), OpenError::NotFound);
    assert_eq!(
        root.open("missing/file", RWC).unwrap_err(),
        OpenError::NotFound
    );
    assert_eq!(OpenError::NotFound.status(), Status::NotFound);
    fs::write(fx.root_path().join("plain"), b"x").expect("write");
    assert_eq!(
        root.open("plain/child", R).unwrap_err(),
        OpenError::NotADirectory
    );
    assert_eq!(
        root.open("plain/child", RWC.union(OpenFlags::TRUNCATE))
            .unwrap_err(),
        OpenError::NotADirectory
    );
    assert_eq!(OpenError::NotADirectory.status(), Status::NotADirectory);
}

#[test]
fn only_regular_files_are_served() {
    let fx = Fixture::new();
    fs::create_dir(fx.root_path().join("dir")).expect("mkdir");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        fx.root_path().join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_bits_truncate(0o644),
        0,
    )
    .expect("mkfifo");
    let root = fx.root();
    assert_eq!(root.open("dir", R).unwrap_err(), OpenError::IsADirectory);
    assert_eq!(root.open("dir", RW).unwrap_err(), OpenError::IsADirectory);
    assert_eq!(OpenError::IsADirectory.status(), Status::IsADirectory);
    assert_eq!(OpenError::NotRegularFile.status(), Status::NotAFile);
    // Would block forever without a writer if the open were blocking.
    assert_eq!(root.open("fifo", R).unwrap_err(), OpenError::NotRegularFile);
    assert_eq!(root.open("fifo", W).unwrap_err(), OpenError::NotRegularFile);
}

#[test]
fn invalid_open_modes() {
    let fx = Fixture::new();
    fs::write(fx.root_path().join("f"), b"keep").expect("write");
    let root = fx.root();
    for flags in [
        OpenFlags::empty(),
        OpenFlags::READ | OpenFlags::CREATE,
        OpenFlags::READ | OpenFlags::TRUNCATE,
        OpenFlags::READ | OpenFlags::IN_PLACE,
    ] {
        assert_eq!(
            root.open("f", flags).unwrap_err(),
            OpenError::InvalidFlags,
            "{flags:?}"
        );
    }
    assert_eq!(fs::read(fx.root_path().join("f")).expect("read"), b"keep");
    assert_eq!(OpenError::InvalidFlags.status(), Status::InvalidParameter);
}

#[test]
fn create_and_truncate_are_honoured() {
    let fx = Fixture::new();
    let root = fx.root();
    assert_eq!(root.open("new", RW).unwrap_err(), OpenError::NotFound);
    let file = root.open("new", RWC).expect("create");
    assert_eq!(file.len().expect("len"), 0);
    file.write_at(0, b"hello world").expect("write");
    drop(file);
    // Without TRUNCATE the contents stay.
    let file = root.open("new", RWC).expect("reopen");
    assert_eq!(file.len().expect("len"), 11);
    drop(file);
    // In place, TRUNCATE empties the file at once.
    let file = root
        .open("new", W | OpenFlags::TRUNCATE | OpenFlags::IN_PLACE)
        .expect("truncate");
    assert!(file.is_empty().expect("len"));
    assert!(
        fs::read(fx.root_path().join("new"))
            .expect("read")
            .is_empty()
    );
}

#[test]
fn read_only_and_write_only_opens_are_enforced() {
    let fx = Fixture::new();
    fs::write(fx.root_path().join("f"), b"original").expect("write");
    let root = fx.root();
    let file = root.open("f", R).expect("open");
    assert_eq!(
        file.write_at(0, b"evil").unwrap_err(),
        FileError::NotWritable
    );
    assert_eq!(
        file.write_segments(&[WriteSegment {
            offset: 0,
            data: b"evil"
        }])
        .unwrap_err(),
        FileError::NotWritable
    );
    assert_eq!(
        file.write_vectored_at(0, &mut [IoSlice::new(b"evil")])
            .unwrap_err(),
        FileError::NotWritable
    );
    assert_eq!(FileError::NotWritable.status(), Status::AccessDenied);
    assert_eq!(
        fs::read(fx.root_path().join("f")).expect("read"),
        b"original"
    );

    let file = root.open("f", W).expect("open");
    let mut buf = [0u8; 4];
    assert_eq!(
        file.read_at(0, &mut buf).unwrap_err(),
        FileError::NotReadable
    );
    assert_eq!(
        file.read_vectored_at(0, &mut [IoSliceMut::new(&mut buf)])
            .unwrap_err(),
        FileError::NotReadable
    );
    assert_eq!(
        file.read_segments(&mut [ReadSegment {
            offset: 0,
            buf: &mut buf
        }])
        .unwrap_err(),
        FileError::NotReadable
    );
}

#[test]
fn kernel_permissions_are_reported_as_access_denied() {
    let fx = Fixture::new();
    let path = fx.root_path().join("locked");
    fs::write(&path, b"x").expect("write");
    fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o000)).expect("chmod");
    let root = fx.root();
    // Root bypasses permission bits (CAP_DAC_OVERRIDE): only check as non-root.
    if rustix::process::geteuid().is_root() {
        root.open("locked", R).expect("root may open anything");
    } else {
        assert_eq!(root.open("locked", R).unwrap_err(), OpenError::AccessDenied);
    }
}

#[test]
fn reads_at_and_past_end_of_file() {
    let fx = Fixture::new();
    fs::write(fx.root_path().join("f"), b"0123456789").expect("write");
    let root = fx.root();
    let file = root.open("f", R).expect("open");
    let mut buf = [0xAAu8; 8];
    assert_eq!(file.read_at(10, &mut buf).expect("at eof"), 0);
    assert_eq!(file.read_at(1 << 40, &mut buf).expect("far past eof"), 0);
    assert_eq!(file.read_at(6, &mut buf).expect("straddling eof"), 4);
    assert_eq!(
        &buf, b"6789\xAA\xAA\xAA\xAA",
        "bytes past the count are untouched"
    );
    assert_eq!(file.read_at(0, &mut []).expect("empty read"), 0);
    assert_eq!(
        file.read_at(u64::MAX - 2, &mut buf).unwrap_err(),
        FileError::OffsetOverflow
    );
    assert_eq!(
        file.read_at(i64::MAX as u64, &mut buf).unwrap_err(),
        FileError::OffsetOverflow
    );
    assert_eq!(FileError::OffsetOverflow.status(), Status::InvalidParameter);
}

#[test]
fn round_trips_at_boundary_sizes() {
    let fx = Fixture::new();
    let root = fx.root();
    for (i, size) in [0usize, 1, 4095, 4096, (1 << 20) + 1]
        .into_iter()
        .enumerate()
    {
        let name = format!("size_{size}");
        let data = pattern(size, i as u8);
        let file = root.open(&name, RWC).expect("create");
        file.write_at(0, &data).expect("write");
        file.sync().expect("sync");
        assert_eq!(file.len().expect("len"), size as u64);
        assert_eq!(
            fs::read(fx.root_path().join(&name)).expect("read back"),
            data,
            "on disk, size {size}"
        );
        let mut back = vec![0u8; size + 100];
        assert_eq!(file.read_at(0, &mut back).expect("read"), size);
        assert_eq!(&back[..size], &data[..], "read_at, size {size}");
        // A read in the middle of the file with an unaligned offset.
        if size > 3 {
            let mut middle = vec![0u8; size / 2];
            assert_eq!(file.read_at(3, &mut middle).expect("read"), size / 2);
            assert_eq!(&middle[..], &data[3..3 + size / 2]);
        }
    }
}

#[test]
fn writes_extend_and_overwrite_at_offsets() {
    let fx = Fixture::new();
    let root = fx.root();
    let file = root.open("f", RWC).expect("create");
    file.write_at(8192, b"tail").expect("write past end");
    assert_eq!(file.len().expect("len"), 8196);
    file.write_at(2, b"head").expect("overwrite hole");
    let on_disk = fs::read(fx.root_path().join("f")).expect("read");
    assert_eq!(&on_disk[..6], b"\0\0head");
    assert!(
        on_disk[6..8192].iter().all(|&b| b == 0),
        "hole reads as zeros"
    );
    assert_eq!(&on_disk[8192..], b"tail");
    assert_eq!(
        file.write_at(i64::MAX as u64 - 1, b"xy").unwrap_err(),
        FileError::OffsetOverflow
    );
    assert_eq!(
        fs::metadata(fx.root_path().join("f")).expect("stat").len(),
        8196
    );
}

#[test]
fn vectored_contiguous_io() {
    let fx = Fixture::new();
    let root = fx.root();
    let file = root.open("f", RWC).expect("create");
    let data = pattern(3 * 4096 + 17, 7);
    let (a, rest) = data.split_at(100);
    let (b, c) = rest.split_at(5000);
    file.write_vectored_at(
        10,
        &mut [
            IoSlice::new(&[]),
            IoSlice::new(a),
            IoSlice::new(&[]),
            IoSlice::new(b),
            IoSlice::new(c),
        ],
    )
    .expect("pwritev");
    let on_disk = fs::read(fx.root_path().join("f")).expect("read");
    assert_eq!(&on_disk[10..], &data[..]);
    file.write_vectored_at(0, &mut [IoSlice::new(&[]), IoSlice::new(&[])])
        .expect("empty pwritev");

    let mut x = vec![0u8; 1];
    let mut y = vec![0u8; 8191];
    let mut z = vec![0u8; 10_000];
    let got = file
        .read_vectored_at(
            9,
            &mut [
                IoSliceMut::new(&mut x),
                IoSliceMut::new(&mut []),
                IoSliceMut::new(&mut y),
                IoSliceMut::new(&mut z),
            ],
        )
        .expect("preadv");
    // 1 byte of hole, then data; EOF cuts the last buffer short.
    assert_eq!(got, 1 + data.len());
    assert_eq!(x, [0]);
    assert_eq!(&y[..], &data[..8191]);
    assert_eq!(&z[..data.len() - 8191], &data[8191..]);
    assert!(z[data.len() - 8191..].iter().all(|&b| b == 0));
    assert_eq!(
        file.read_vectored_at(1 << 30, &mut [IoSliceMut::new(&mut x)])
            .expect("past eof"),
        0
    );
}

#[test]
fn vectored_segment_io() {
    let fx = Fixture::new();
    let root = fx.root();
    let file = root.open("f", RWC).expect("create");
    let one = pattern(4096, 1);
    let two = pattern(4095, 2);
    // Segments out of order and non-adjacent, as the protocol allows.
    let written = file
        .write_segments(&[
            WriteSegment {
                offset: 10_000,
                data: &two,
            },
            WriteSegment {
                offset: 0,
                data: &one,
            },
        ])
        .expect("write segments");
    assert_eq!(written, 4096 + 4095);
    let on_disk = fs::read(fx.root_path().join("f")).expect("read");
    assert_eq!(&on_disk[..4096], &one[..]);
    assert_eq!(&on_disk[10_000..], &two[..]);

    // The collapse case: the same bytes to several offsets.
    file.write_segments(&[
        WriteSegment {
            offset: 5000,
            data: b"same",
        },
        WriteSegment {
            offset: 6000,
            data: b"same",
        },
    ])
    .expect("collapsed");
    let on_disk = fs::read(fx.root_path().join("f")).expect("read");
    assert_eq!(&on_disk[5000..5004], b"same");
    assert_eq!(&on_disk[6000..6004], b"same");

    let mut a = vec![0u8; 4096];
    let mut b = vec![0u8; 5000];
    let mut c = vec![0u8; 16];
    let total = file
        .read_segments(&mut [
            ReadSegment {
                offset: 0,
                buf: &mut a,
            },
            ReadSegment {
                offset: 10_000,
                buf: &mut b,
            },
            ReadSegment {
                offset: 1 << 20,
                buf: &mut c,
            },
        ])
        .expect("read segments");
    assert_eq!(total, 4096 + 4095);
    assert_eq!(a, one);
    assert_eq!(&b[..4095], &two[..]);

    // One invalid segment: nothing is written.
    let before = fs::read(fx.root_path().join("f")).expect("read");
    assert_eq!(
        file.write_segments(&[
            WriteSegment {
                offset: 0,
                data: b"XXXX"
            },
            WriteSegment {
                offset: u64::MAX,
                data: b"y"
            }
        ])
        .unwrap_err(),
        FileError::OffsetOverflow
    );
    assert_eq!(fs::read(fx.root_path().join("f")).expect("read"), before);
}

#[test]
fn the_root_is_pinned_at_export_time() {
    let fx = Fixture::new();
    fs::write(fx.root_path().join("f"), b"pinned").expect("write");
    let root = fx.root();
    fs::rename(fx.root_path(), fx.dir().join("moved")).expect("rename");
    fs::create_dir(fx.root_path()).expect("mkdir replacement");
    let mut buf = [0u8; 6];
    root.open("f", R)
        .expect("still served")
        .read_at(0, &mut buf)
        .expect("read");
    assert_eq!(&buf, b"pinned");
}

#[test]
fn exporting_a_non_directory_fails() {
    let fx = Fixture::new();
    assert!(Root::new(fx.dir().join("outside/secret")).is_err());
    assert!(Root::new(fx.dir().join("missing")).is_err());
}

#[test]
fn file_table_bounds_and_ids() {
    let fx = Fixture::new();
    for name in ["a", "b", "c"] {
        fs::write(fx.root_path().join(name), name).expect("write");
    }
    let root = fx.root();
    let mut table = FileTable::new(2);
    assert!(table.is_empty());
    let a = table
        .insert(root.open("a", R).expect("open"))
        .expect("insert a");
    let b = table
        .insert(root.open("b", R).expect("open"))
        .expect("insert b");
    assert_ne!(a, b);
    assert_eq!(
        table.insert(root.open("c", R).expect("open")).unwrap_err(),
        TableFull { limit: 2 }
    );
    assert_eq!(table.len(), 2);
    let mut buf = [0u8; 1];
    table
        .get(b)
        .expect("get b")
        .read_at(0, &mut buf)
        .expect("read");
    assert_eq!(&buf, b"b");
    table.remove(a).expect("close a");
    assert_eq!(table.get(a).unwrap_err(), UnknownFile(a));
    assert_eq!(table.remove(a).unwrap_err(), UnknownFile(a));
    let c = table
        .insert(root.open("c", R).expect("open"))
        .expect("insert c after a close");
    assert!(c != a && c != b, "ids are never reused");
    assert_eq!(
        table.get(FileId(999)).unwrap_err(),
        UnknownFile(FileId(999))
    );
    assert_eq!(table.limit(), 2);
}

/// The files of `dir` whose names start with `.` (temporary uploads).
fn hidden(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .expect("read dir")
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

const UPLOAD: OpenFlags = OpenFlags::WRITE
    .union(OpenFlags::CREATE)
    .union(OpenFlags::TRUNCATE);

/// Issue #16, defect 4: an upload replaces its file only when finished.
#[test]
fn an_upload_replaces_the_file_only_when_finished() {
    use std::os::unix::fs::PermissionsExt;
    let fx = Fixture::new();
    let path = fx.root_path().join("f");
    fs::write(&path, b"old contents").expect("write");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).expect("chmod");
    let root = fx.root();
    let upload = root.open("f", UPLOAD).expect("upload");
    assert_eq!(upload.len().expect("len"), 0);
    let temp =
        String::from_utf8(upload.upload_temp_name().expect("an upload").to_vec()).expect("utf-8");
    assert!(temp.starts_with(".f.rdio-"), "{temp}");
    upload.write_at(0, b"new").expect("write");
    // Until the finish, the name holds the old file; the new one is hidden.
    assert_eq!(fs::read(&path).expect("read"), b"old contents");
    assert_eq!(hidden(&fx.root_path()), vec![temp]);
    upload.finish().expect("finish");
    assert_eq!(fs::read(&path).expect("read"), b"new");
    let mode = fs::metadata(&path).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o640, "the replaced file's mode");
    // A second finish does nothing; dropping a finished upload removes
    // nothing.
    upload.finish().expect("finish again");
    drop(upload);
    assert_eq!(fs::read(&path).expect("read"), b"new");
    assert!(hidden(&fx.root_path()).is_empty());
}

/// Issue #16, defect 4: an upload dropped unfinished (its connection lost)
/// leaves the old file, or no file, and no temporary file.
#[test]
fn an_unfinished_upload_leaves_the_name_untouched() {
    let fx = Fixture::new();
    fs::create_dir(fx.root_path().join("sub")).expect("mkdir");
    fs::write(fx.root_path().join("sub/f"), b"old").expect("write");
    let root = fx.root();
    let upload = root.open("sub/f", UPLOAD).expect("upload");
    upload.write_at(0, b"partial new contents").expect("write");
    let fresh = root.open("/sub/new", UPLOAD).expect("upload of a new file");
    fresh.write_at(0, b"partial").expect("write");
    assert_eq!(hidden(&fx.root_path().join("sub")).len(), 2);
    drop(upload);
    drop(fresh);
    assert_eq!(
        fs::read(fx.root_path().join("sub/f")).expect("read"),
        b"old"
    );
    assert!(!fx.root_path().join("sub/new").exists());
    assert!(hidden(&fx.root_path().join("sub")).is_empty());
    // Without CREATE, an upload needs the file to exist.
    assert_eq!(
        root.open("missing", OpenFlags::WRITE | OpenFlags::TRUNCATE)
            .unwrap_err(),
        OpenError::NotFound
    );
    // IN_PLACE writes the file itself, as before.
    let in_place = root
        .open("sub/f", UPLOAD.union(OpenFlags::IN_PLACE))
        .expect("in place");
    assert!(in_place.upload_temp_name().is_none());
    assert!(
        fs::read(fx.root_path().join("sub/f"))
            .expect("read")
            .is_empty()
    );
}

/// An upload whose name became a directory meanwhile fails at its finish,
/// by name, and leaves nothing behind.
#[test]
fn an_upload_that_cannot_take_its_name_fails_and_cleans_up() {
    let fx = Fixture::new();
    let root = fx.root();
    let upload = root.open("f", UPLOAD).expect("upload");
    upload.write_at(0, b"data").expect("write");
    fs::create_dir(fx.root_path().join("f")).expect("mkdir");
    fs::write(fx.root_path().join("f/child"), b"x").expect("write");
    let error = upload.finish().unwrap_err();
    assert_eq!(error.status(), Status::IsADirectory, "{error}");
    drop(upload);
    assert!(hidden(&fx.root_path()).is_empty());
    assert!(fx.root_path().join("f/child").exists());
}

/// Issue #16, defect 6: leading slashes name the root of the export;
/// directories say so.
#[test]
fn leading_slashes_name_the_root_of_the_export() {
    let fx = Fixture::new();
    fs::create_dir(fx.root_path().join("a")).expect("mkdir");
    fs::write(fx.root_path().join("f"), b"top").expect("write");
    fs::write(fx.root_path().join("a/g"), b"deep").expect("write");
    let root = fx.root();
    for (path, contents) in [("/f", &b"top"[..]), ("//f", b"top"), ("/a/g", b"deep")] {
        let file = root.open(path, R).expect(path);
        let mut buf = [0u8; 8];
        let n = file.read_at(0, &mut buf).expect("read");
        assert_eq!(&buf[..n], contents, "{path}");
    }
    // Not the host's /etc/passwd: the export's, which does not exist.
    assert_eq!(
        root.open("/etc/passwd", R).unwrap_err(),
        OpenError::NotFound
    );
    // Writes too, uploads and in place.
    let upload = root.open("/new", UPLOAD).expect("upload");
    upload.write_at(0, b"n").expect("write");
    upload.finish().expect("finish");
    assert_eq!(fs::read(fx.root_path().join("new")).expect("read"), b"n");
    root.open("/a/h", RWC).expect("create in place");
    assert!(fx.root_path().join("a/h").exists());
    // Directories, the root among them, are directories.
    for path in ["/", "//", "a", "/a", "a/", "/a/."] {
        assert_eq!(
            root.open(path, R).unwrap_err(),
            OpenError::IsADirectory,
            "{path}"
        );
        assert_eq!(
            root.open(path, UPLOAD).unwrap_err(),
            OpenError::IsADirectory,
            "{path}"
        );
    }
    assert!(hidden(&fx.root_path()).is_empty());
    assert!(hidden(&fx.root_path().join("a")).is_empty());
}

/// Issue #16, defect 5: the file system's errors keep their names.
#[test]
fn file_system_errors_map_to_their_statuses() {
    use rdio::files::errno_status;
    use rustix::io::Errno;
    for (errno, status) in [
        (Errno::NOSPC, Status::NoSpace),
        (Errno::DQUOT, Status::QuotaExceeded),
        (Errno::ROFS, Status::ReadOnlyFileSystem),
        (Errno::ACCESS, Status::PermissionDenied),
        (Errno::PERM, Status::PermissionDenied),
        (Errno::ISDIR, Status::IsADirectory),
        (Errno::NOTDIR, Status::NotADirectory),
        (Errno::FBIG, Status::FileTooLarge),
        (Errno::NAMETOOLONG, Status::NameTooLong),
        (Errno::IO, Status::IoError),
    ] {
        let errno = errno.raw_os_error();
        assert_eq!(errno_status(errno), status);
        assert_eq!(FileError::Os(errno).status(), status);
        assert_eq!(OpenError::Os(errno).status(), status);
    }
    assert_eq!(OpenError::AccessDenied.status(), Status::PermissionDenied);
    assert_eq!(Status::NoSpace.to_string(), "no space left on the server");
}
