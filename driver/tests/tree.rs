//! The remote file operations of the file backend (`Root::list`,
//! `attributes`, `remove`, `make_dir`, `rename`, `set_attributes`,
//! `hash_range`) on real files: what each does, its statuses, and that no
//! path — `..`, a symlink on the way or at the end — reaches outside the
//! exported root.

use rdio::files::{OpenError, Root};
use rdio_core::wire::files::MAX_LIST_ENTRY_BYTES;
use rdio_core::wire::{DirEntriesWriter, EntryKind, Status};
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::time::{Duration, UNIX_EPOCH};

/// `root/` (exported) and `outside/secret` beside it, with a symlink
/// `root/out` to `outside`.
fn fixture() -> (tempfile::TempDir, Root) {
    let tmp = tempfile::tempdir().expect("tempdir");
    fs::create_dir(tmp.path().join("root")).expect("root");
    fs::create_dir(tmp.path().join("outside")).expect("outside");
    fs::write(tmp.path().join("outside/secret"), b"secret").expect("secret");
    symlink(tmp.path().join("outside"), tmp.path().join("root/out")).expect("symlink");
    let root = Root::new(tmp.path().join("root")).expect("root");
    (tmp, root)
}

/// Every name of a directory, page by page, with at most `room` bytes of
/// entries per page; also how many pages it took.
fn list_all(root: &Root, path: &[u8], room: usize) -> (Vec<Vec<u8>>, usize) {
    let mut names: Vec<Vec<u8>> = Vec::new();
    let mut pages = 0;
    loop {
        let mut buf = vec![0u8; room];
        let mut page = DirEntriesWriter::new(&mut buf);
        let after = names.last().cloned().unwrap_or_default();
        let end = root.list(path, &after, &mut page).expect("list");
        pages += 1;
        let entries = page.finish();
        names.extend(entries.iter().map(|e| e.name.to_vec()));
        if end {
            return (names, pages);
        }
        assert!(!entries.is_empty(), "a page before the end holds entries");
    }
}

#[test]
fn listings_are_sorted_complete_and_paged() {
    let (tmp, root) = fixture();
    let dir = tmp.path().join("root/d");
    fs::create_dir(&dir).expect("mkdir");
    let mut expected: Vec<Vec<u8>> = (0..100)
        .map(|i| format!("name-{:03}", (i * 37) % 100).into_bytes())
        .collect();
    for name in &expected {
        fs::write(dir.join(String::from_utf8_lossy(name).as_ref()), b"x").expect("file");
    }
    expected.sort();
    // Small pages (3 entries of 40 bytes each), then the frame's bound.
    let (names, pages) = list_all(&root, b"d", 3 * 40);
    assert_eq!(names, expected);
    assert_eq!(pages, 34);
    let (names, pages) = list_all(&root, b"/d/", MAX_LIST_ENTRY_BYTES);
    assert_eq!(names, expected);
    assert_eq!(pages, 2);
    // The root lists its symlink as one, not followed.
    let mut buf = vec![0u8; MAX_LIST_ENTRY_BYTES];
    let mut page = DirEntriesWriter::new(&mut buf);
    assert!(root.list(b"/", b"", &mut page).expect("list /"));
    let kinds: Vec<(Vec<u8>, EntryKind)> = page
        .finish()
        .iter()
        .map(|e| (e.name.to_vec(), e.attributes.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            (b"d".to_vec(), EntryKind::Directory),
            (b"out".to_vec(), EntryKind::Symlink)
        ]
    );
    // Listing through the symlink leaving the root is refused.
    let mut page = DirEntriesWriter::new(&mut buf);
    let error = root.list(b"out", b"", &mut page).expect_err("escape");
    assert_eq!(error.status(), Status::AccessDenied);
    let error = root
        .list(b"d/name-000", b"", &mut page)
        .expect_err("a file");
    assert_eq!(error.status(), Status::NotADirectory);
}

#[test]
fn nothing_outside_the_root_is_reached() {
    let (tmp, root) = fixture();
    let secret = tmp.path().join("outside/secret");
    for path in [&b"../outside/secret"[..], b"out/secret", b"d/../../outside"] {
        let denied = |e: OpenError| assert_eq!(e.status(), Status::AccessDenied, "{path:?}: {e}");
        denied(root.attributes(path).expect_err("attributes"));
        denied(root.remove(path, true).expect_err("remove"));
        denied(root.make_dir(path, 0o755, true).expect_err("mkdir"));
        denied(root.rename(path, b"x", false).expect_err("rename from"));
        denied(root.rename(b"out", path, false).expect_err("rename to"));
        denied(
            root.set_attributes(path, Some(0o600), None)
                .expect_err("chmod"),
        );
        denied(root.hash_range(path, 0, 6).expect_err("hash"));
    }
    // A symlink at the end is acted on, never followed: described, its
    // mode not settable, removed itself.
    assert_eq!(
        root.attributes(b"out").expect("lstat").kind,
        EntryKind::Symlink
    );
    let error = root
        .set_attributes(b"out", Some(0o600), None)
        .expect_err("O_NOFOLLOW");
    assert_eq!(error.status(), Status::AccessDenied);
    root.remove(b"out", false).expect("remove the link");
    assert_eq!(fs::read(&secret).expect("kept"), b"secret");
    assert!(tmp.path().join("outside").is_dir());
    // The root itself stays.
    for error in [
        root.remove(b"/", true).expect_err("rm /"),
        root.rename(b"/", b"x", false).expect_err("mv /"),
        root.set_attributes(b"/", Some(0o700), None)
            .expect_err("chmod /"),
    ] {
        assert_eq!(error, OpenError::IsRoot);
        assert_eq!(error.status(), Status::AccessDenied);
    }
}

#[test]
fn each_operation_does_what_it_says_with_its_statuses() {
    let (tmp, root) = fixture();
    let at = |p: &str| tmp.path().join("root").join(p);
    // make_dir: AlreadyExists without PARENTS, parents with it.
    root.make_dir(b"a", 0o700, false).expect("mkdir");
    assert_eq!(
        fs::metadata(at("a")).expect("a").permissions().mode() & 0o777,
        0o700
    );
    let exists = root.make_dir(b"a", 0o700, false).expect_err("exists");
    assert_eq!(exists.status(), Status::AlreadyExists);
    root.make_dir(b"a/b/c", 0o755, true).expect("mkdir -p");
    root.make_dir(b"a/b/c", 0o755, true)
        .expect("mkdir -p again");
    assert!(at("a/b/c").is_dir());
    let missing = root.make_dir(b"x/y", 0o755, false).expect_err("no parent");
    assert_eq!(missing.status(), Status::NotFound);
    assert_eq!(
        root.make_dir(b"z", 0o4755, false).expect_err("setuid"),
        OpenError::InvalidMode
    );
    // remove: IsADirectory, NotEmpty, then gone.
    fs::write(at("a/f"), b"hello world").expect("file");
    assert_eq!(
        root.remove(b"a", false).expect_err("dir").status(),
        Status::IsADirectory
    );
    assert_eq!(
        root.remove(b"a", true).expect_err("not empty").status(),
        Status::NotEmpty
    );
    assert_eq!(
        root.remove(b"nope", false).expect_err("missing").status(),
        Status::NotFound
    );
    root.remove(b"a/b/c", true).expect("rmdir");
    assert!(!at("a/b/c").exists());
    // rename: replace, NO_REPLACE, beneath itself.
    fs::write(at("g"), b"g").expect("file");
    assert_eq!(
        root.rename(b"a/f", b"g", true)
            .expect_err("no replace")
            .status(),
        Status::AlreadyExists
    );
    assert_eq!(fs::read(at("g")).expect("kept"), b"g");
    root.rename(b"a/f", b"g", false).expect("replace");
    assert_eq!(fs::read(at("g")).expect("replaced"), b"hello world");
    assert_eq!(
        root.rename(b"a", b"a/b/a", false)
            .expect_err("beneath itself"),
        OpenError::IntoItself
    );
    // set_attributes: mode and modification time, on a file and a dir.
    let when = 1_600_000_000_123_456_789u64;
    root.set_attributes(b"g", Some(0o640), Some(when))
        .expect("set");
    let meta = fs::metadata(at("g")).expect("g");
    assert_eq!(meta.permissions().mode() & 0o777, 0o640);
    assert_eq!(
        meta.modified().expect("mtime"),
        UNIX_EPOCH + Duration::from_nanos(when)
    );
    let attributes = root.attributes(b"g").expect("attributes");
    assert_eq!(
        (
            attributes.kind,
            attributes.mode,
            attributes.size,
            attributes.modified_ns
        ),
        (EntryKind::File, 0o640, 11, when)
    );
    root.set_attributes(b"a", None, Some(when))
        .expect("a directory's time");
    assert_eq!(root.attributes(b"a").expect("a").modified_ns, when);
    // hash_range: SHA-256 of a range, short at the end of the file.
    let (hashed, digest) = root.hash_range(b"g", 6, 100).expect("hash");
    assert_eq!(hashed, 5);
    let expected = ring::digest::digest(&ring::digest::SHA256, b"world");
    assert_eq!(&digest[..], expected.as_ref());
    assert_eq!(root.hash_range(b"g", 50, 10).expect("past the end").0, 0);
    assert_eq!(
        root.hash_range(b"a", 0, 10)
            .expect_err("a directory")
            .status(),
        Status::IsADirectory
    );
}
