//! Zero-copy reads: files opened read-only are served by RDMA writes straight
//! from a mapping of the file held under a read lease, and no writer or
//! truncation — from another client, this process or another one — can pull
//! the pages from under a read in progress. The scenarios run with the
//! server on threads of its own (`threads::*`) and stepped inline by its
//! client (`inline::*`); a server that must give up its lease while its
//! client is idle runs on threads in both.

use rdio::client::{CompletionMode, RemoteFile};
use rdio::embedded::{Embedded, EmbeddedOptions, Inline, Mode, Threads};
use rdio::files::ReadSegment;
use rdio::server::ReadCounts;
use rdio_core::wire::OpenFlags;
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[macro_use]
mod support;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
        .collect()
}

fn start<M: Mode>(root: &Path, mode: CompletionMode, zero_copy: bool) -> Embedded<M> {
    let mut options = EmbeddedOptions::default();
    options.client.mode = mode;
    options.client.io_size = 256 << 10;
    options.server.zero_copy_reads = zero_copy;
    M::start(root, options).expect("start embedded pair")
}

/// Whether this process may take leases on files in `dir` (root, or the
/// files' owner, on a local file system). CI must be able to: there the
/// answer `no` fails the test instead of skipping it.
fn leases_available(dir: &Path) -> bool {
    let probe = dir.join(".lease-probe");
    fs::write(&probe, b"x").expect("probe file");
    let root = rdio::files::Root::new(dir).expect("root");
    let file = root
        .open(".lease-probe", OpenFlags::READ)
        .expect("open probe");
    let available = rdio::files::FileLease::take(&file).is_ok();
    drop(file);
    fs::remove_file(&probe).expect("remove probe");
    if !available {
        assert!(
            std::env::var_os("CI").is_none(),
            "file leases are unavailable in CI: zero-copy reads cannot be tested"
        );
        eprintln!("skipped: file leases are unavailable here (not root or owner?)");
    }
    available
}

fn read_all<M: Mode>(pair: &mut Embedded<M>, file: &RemoteFile, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let got = pair.client.read_at(file, 0, &mut out).expect("read");
    out.truncate(got);
    out
}

in_both_modes!(
    read_only_files_are_served_from_the_mapping_in_both_modes,
    writable_opens_large_files_and_the_switch_off_use_bounce_buffers,
    large_files_are_mapped_over_a_transport_that_pins_nothing,
    a_writer_takes_the_file_from_a_mapped_reader_safely,
    an_upload_replaces_a_mapped_file_without_disturbing_its_reader,
    outside_truncation_during_streaming_reads_never_faults,
    read_counts_start_at_zero,
    reads_can_be_used_where_they_landed,
    copied_reads_are_split_into_chunks_and_many_run_at_once,
);

fn read_only_files_are_served_from_the_mapping_in_both_modes<M: Mode>() {
    let dir = tempfile::tempdir().expect("tempdir");
    if !leases_available(dir.path()) {
        return;
    }
    let data = pattern((3 << 20) + 123, 7);
    fs::write(dir.path().join("data"), &data).expect("file");
    for mode in [CompletionMode::Interrupt, CompletionMode::Polling] {
        let mut pair = start::<M>(dir.path(), mode, true);
        let file = pair.client.open("data", OpenFlags::READ).expect("open");
        assert_eq!(read_all(&mut pair, &file, data.len() + 4096), data);
        // Vectored, with a segment across the end of file and one past it.
        let (mut a, mut b, mut c) = (vec![0u8; 1000], vec![0u8; 5000], vec![0u8; 10]);
        let end = data.len() as u64;
        let mut segments = [
            ReadSegment {
                offset: 17,
                buf: &mut a,
            },
            ReadSegment {
                offset: end - 2000,
                buf: &mut b,
            },
            ReadSegment {
                offset: end + 10,
                buf: &mut c,
            },
        ];
        let got = pair
            .client
            .read_vectored_at(&file, &mut segments)
            .expect("readv");
        assert_eq!(got, 1000 + 2000);
        assert_eq!(a, data[17..1017]);
        assert_eq!(b[..2000], data[data.len() - 2000..]);
        let counts = pair.server().read_counts();
        assert!(counts.mapped > 0, "{counts:?}");
        assert_eq!(counts.copied, 0, "no read was copied: {counts:?}");
        pair.client.close(file).expect("close");
        pair.finish().expect("finish");
    }
}

fn writable_opens_large_files_and_the_switch_off_use_bounce_buffers<M: Mode>() {
    let dir = tempfile::tempdir().expect("tempdir");
    if !leases_available(dir.path()) {
        return;
    }
    let data = pattern(1 << 20, 3);
    fs::write(dir.path().join("data"), &data).expect("file");
    let mut pair = start::<M>(dir.path(), CompletionMode::Interrupt, true);
    let file = pair
        .client
        .open("data", OpenFlags::READ | OpenFlags::WRITE)
        .expect("open");
    assert_eq!(read_all(&mut pair, &file, data.len()), data);
    let counts = pair.server().read_counts();
    assert_eq!(counts.mapped, 0, "{counts:?}");
    assert!(counts.copied > 0, "{counts:?}");
    pair.finish().expect("finish");

    let mut pair = start::<M>(dir.path(), CompletionMode::Interrupt, false);
    let file = pair.client.open("data", OpenFlags::READ).expect("open");
    assert_eq!(read_all(&mut pair, &file, data.len()), data);
    assert_eq!(pair.server().read_counts().mapped, 0);
    pair.finish().expect("finish");

    // Files above `zero_copy_max_file` are copied over a transport whose
    // registrations pin memory (every page of the file, on hardware).
    let mut options = EmbeddedOptions::default();
    options.server.zero_copy_max_file = (1 << 20) - 1;
    options.loopback.pins_registrations = true;
    let mut pair = M::start(dir.path(), options).expect("start");
    let file = pair.client.open("data", OpenFlags::READ).expect("open");
    assert_eq!(read_all(&mut pair, &file, data.len()), data);
    assert_eq!(pair.server().read_counts().mapped, 0);
    pair.finish().expect("finish");
}

/// Files above `zero_copy_max_file` are still served from their mapping
/// over a transport whose registrations pin nothing (the loopback, cma,
/// libfabric's tcp): the limit is about locked memory.
fn large_files_are_mapped_over_a_transport_that_pins_nothing<M: Mode>() {
    let dir = tempfile::tempdir().expect("tempdir");
    if !leases_available(dir.path()) {
        return;
    }
    let data = pattern(1 << 20, 5);
    fs::write(dir.path().join("data"), &data).expect("file");
    let mut options = EmbeddedOptions::default();
    options.server.zero_copy_max_file = (1 << 20) - 1;
    let mut pair = M::start(dir.path(), options).expect("start");
    let file = pair.client.open("data", OpenFlags::READ).expect("open");
    assert_eq!(read_all(&mut pair, &file, data.len()), data);
    let counts = pair.server().read_counts();
    assert!(counts.mapped > 0, "{counts:?}");
    assert_eq!(counts.copied, 0, "{counts:?}");
    pair.finish().expect("finish");
}

/// Another client opens the file for writing and truncates it while the
/// first streams reads from its mapping: the open waits for the lease to be
/// given up (not for the 45 s lease-break time), the server never touches a
/// lost page (it would die of SIGBUS), and the reader sees the new contents
/// from then on, through bounce buffers.
///
/// The reader's server runs on threads in both modes of the test (the mode
/// is the writer's): the reader is idle while the writer opens, and an
/// inline server runs only inside its client's calls
/// (`rdio::embedded::Inline`), so it would hold on to its lease.
fn a_writer_takes_the_file_from_a_mapped_reader_safely<M: Mode>() {
    let dir = tempfile::tempdir().expect("tempdir");
    if !leases_available(dir.path()) {
        return;
    }
    let old = pattern(8 << 20, 1);
    fs::write(dir.path().join("data"), &old).expect("file");
    let mut reader = start::<Threads>(dir.path(), CompletionMode::Interrupt, true);
    let file = reader.client.open("data", OpenFlags::READ).expect("open");
    assert_eq!(read_all(&mut reader, &file, old.len()), old);
    let mapped_before = reader.server().read_counts().mapped;
    assert!(mapped_before > 0);

    let mut writer = start::<M>(dir.path(), CompletionMode::Interrupt, true);
    let started = Instant::now();
    let target = writer
        .client
        .open(
            "data",
            // In place: an upload would leave the mapped file alone.
            OpenFlags::READ | OpenFlags::WRITE | OpenFlags::TRUNCATE | OpenFlags::IN_PLACE,
        )
        .expect("open for writing while a reader has the file mapped");
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(2), "open waited {waited:?}");
    let new = pattern(1 << 20, 9);
    writer.client.write_at(&target, 0, &new).expect("write");
    writer.finish().expect("finish writer");

    // The reader's file is now the new, shorter one, served by copying.
    assert_eq!(read_all(&mut reader, &file, old.len()), new);
    let counts = reader.server().read_counts();
    assert!(counts.copied > 0, "{counts:?}");
    reader.finish().expect("finish reader");
}

/// An upload never opens the file it replaces for writing, so no lease
/// breaks: the mapped reader goes on reading the old file (its inode), from
/// the mapping, and a new open after the close sees the new one.
fn an_upload_replaces_a_mapped_file_without_disturbing_its_reader<M: Mode>() {
    let dir = tempfile::tempdir().expect("tempdir");
    if !leases_available(dir.path()) {
        return;
    }
    let old = pattern(4 << 20, 3);
    fs::write(dir.path().join("data"), &old).expect("file");
    let mut reader = start::<Threads>(dir.path(), CompletionMode::Interrupt, true);
    let file = reader.client.open("data", OpenFlags::READ).expect("open");
    assert_eq!(read_all(&mut reader, &file, old.len()), old);
    let mapped_before = reader.server().read_counts().mapped;
    assert!(mapped_before > 0);

    let mut writer = start::<M>(dir.path(), CompletionMode::Interrupt, true);
    let upload = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE;
    let target = writer.client.open("data", upload).expect("upload");
    let new = pattern(1 << 20, 11);
    writer.client.write_at(&target, 0, &new).expect("write");
    writer.client.close(target).expect("close");
    writer.finish().expect("finish writer");
    assert_eq!(fs::read(dir.path().join("data")).expect("read"), new);

    assert_eq!(read_all(&mut reader, &file, old.len()), old);
    let counts = reader.server().read_counts();
    assert!(counts.mapped > mapped_before, "still mapped: {counts:?}");
    assert_eq!(counts.copied, 0, "{counts:?}");
    let reopened = reader.client.open("data", OpenFlags::READ).expect("open");
    assert_eq!(read_all(&mut reader, &reopened, old.len()), new);
    reader.finish().expect("finish reader");
}

/// Truncations from outside the server, over and over, while reads stream
/// from the mapping on another thread: every read succeeds (with whatever
/// mix of old and new bytes a concurrent rewrite gives, as with `pread`)
/// and the process survives — a read from a lost page would kill it. The
/// rounds alternate polling and interrupt mode: in interrupt mode the
/// reads of a batch go as unsignaled writes, and a mapping whose lease
/// breaks must not be released while one is in flight.
fn outside_truncation_during_streaming_reads_never_faults<M: Mode>() {
    let dir = tempfile::tempdir().expect("tempdir");
    if !leases_available(dir.path()) {
        return;
    }
    let path = dir.path().join("data");
    let versions: Vec<Vec<u8>> = (0..4u8).map(|v| pattern((4 << 20) >> v, v)).collect();
    fs::write(&path, &versions[0]).expect("file");
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let root = dir.path().to_owned();
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut reads = 0u32;
            let mut mapped = 0u64;
            let mut round = 0u32;
            while !stop.load(Ordering::Relaxed) {
                // A fresh open each round, so each takes a new lease when it
                // can (and serves by copying when a writer holds the file).
                round += 1;
                let mode = if round % 2 == 0 {
                    CompletionMode::Interrupt
                } else {
                    CompletionMode::Polling
                };
                let mut pair = start::<M>(&root, mode, true);
                let file = pair.client.open("data", OpenFlags::READ).expect("open");
                for _ in 0..8 {
                    let got = read_all(&mut pair, &file, 4 << 20);
                    assert!(got.len() <= 4 << 20);
                    reads += 1;
                }
                mapped += pair.server().read_counts().mapped;
                pair.finish().expect("finish");
            }
            (reads, mapped)
        })
    };
    for round in 0..12 {
        std::thread::sleep(Duration::from_millis(30));
        let started = Instant::now();
        fs::write(&path, &versions[round % versions.len()]).expect("truncate and rewrite");
        let waited = started.elapsed();
        assert!(
            waited < Duration::from_secs(5),
            "truncation waited {waited:?}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let (reads, mapped) = reader.join().expect("reader thread");
    assert!(reads > 0);
    assert!(mapped > 0, "some reads were served from the mapping");
    // After the last rewrite, a reader sees exactly the last version.
    let mut pair = start::<M>(dir.path(), CompletionMode::Interrupt, true);
    let file = pair.client.open("data", OpenFlags::READ).expect("open");
    assert_eq!(
        read_all(&mut pair, &file, 4 << 20),
        versions[11 % versions.len()]
    );
    pair.finish().expect("finish");
}

fn read_counts_start_at_zero<M: Mode>() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pair = start::<M>(dir.path(), CompletionMode::Interrupt, true);
    assert_eq!(pair.server().read_counts(), ReadCounts::default());
    pair.finish().expect("finish");
}

/// Reads lent in place (`wait_in_place`): the bytes the server wrote, with
/// several requests in flight, short at end of file, and the buffer back
/// to the client afterwards; a write's ticket is refused.
fn reads_can_be_used_where_they_landed<M: Mode>() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = pattern((1 << 20) + 100, 5);
    fs::write(dir.path().join("data"), &data).expect("file");
    for mode in [CompletionMode::Interrupt, CompletionMode::Polling] {
        let mut pair = start::<M>(dir.path(), mode, true);
        let file = pair
            .client
            .open("data", OpenFlags::READ | OpenFlags::WRITE)
            .expect("open");
        let chunk = 256 << 10;
        let tickets: Vec<_> = (0..5)
            .map(|i| {
                pair.client
                    .submit_read(&file, (i * chunk) as u64, chunk)
                    .expect("submit")
            })
            .collect();
        let mut got = Vec::new();
        for ticket in tickets {
            let view = pair.client.wait_in_place(ticket).expect("read");
            got.extend_from_slice(&view);
        }
        assert_eq!(got, data, "{mode:?}");
        // The buffers came back: as many again fit in the queue.
        for _ in 0..2 {
            let ticket = pair.client.submit_read(&file, 0, 10).expect("submit");
            assert_eq!(
                &*pair.client.wait_in_place(ticket).expect("read"),
                &data[..10]
            );
        }
        let write = pair
            .client
            .submit_write(&file, 0, &data[..10])
            .expect("write");
        assert!(pair.client.wait_in_place(write).is_err());
        pair.finish().expect("finish");
    }
}

/// Reads that are copied (a file open for writing) go through bounce
/// chunks of `max_io_size / 32` bytes, at least 64 KiB: with a 1 MiB
/// limit, 32 chunks of 64 KiB (the two-buffer budget), so a 256 KiB read
/// is four pieces, each RDMA-written to its own part of the client's
/// buffer; eight run at once — four times the two whole buffers reads used
/// to take — and of 16 submitted together the rest wait for chunks. Every
/// byte lands where it belongs, including reads short at end of file in
/// the middle of a piece and vectored reads whose segments split into
/// pieces of their own.
fn copied_reads_are_split_into_chunks_and_many_run_at_once<M: Mode>() {
    let dir = tempfile::tempdir().expect("tempdir");
    let len = (3 << 20) + 12_345;
    let data = pattern(len, 9);
    fs::write(dir.path().join("data"), &data).expect("file");
    let mut options = EmbeddedOptions::default();
    options.client.io_size = 256 << 10;
    options.client.queue_depth = 16;
    options.server.config.max_io_size = 1 << 20;
    let mut pair = M::start(dir.path(), options).expect("start");
    let file = pair
        .client
        .open("data", OpenFlags::READ | OpenFlags::WRITE)
        .expect("open");
    // 16 reads of 256 KiB at once, at offsets that are not multiples of a
    // chunk, the last ones reaching past the end of the file.
    let size = 256 << 10;
    for round in 0..2u64 {
        let tickets: Vec<_> = (0..16u64)
            .map(|i| {
                let offset = 1000 + round * 7 + i * 200_000;
                let ticket = pair
                    .client
                    .submit_read(&file, offset, size)
                    .expect("submit");
                (offset as usize, ticket)
            })
            .collect();
        for (offset, ticket) in tickets {
            let mut out = vec![0u8; size];
            let got = pair.client.wait(ticket, &mut out).expect("read") as usize;
            let want = len.saturating_sub(offset).min(size);
            assert_eq!(got, want, "read at {offset}");
            assert_eq!(out[..got], data[offset..offset + got], "read at {offset}");
        }
    }
    // Vectored: segments split into pieces of their own, one short at end
    // of file inside its second piece, one past the end.
    let (mut a, mut b, mut c) = (vec![0u8; 70_000], vec![0u8; 100_000], vec![0u8; 10]);
    let mut segments = [
        ReadSegment {
            offset: 5,
            buf: &mut a,
        },
        ReadSegment {
            offset: len as u64 - 80_000,
            buf: &mut b,
        },
        ReadSegment {
            offset: len as u64 + 1,
            buf: &mut c,
        },
    ];
    let got = pair
        .client
        .read_vectored_at(&file, &mut segments)
        .expect("readv");
    assert_eq!(got, 70_000 + 80_000);
    assert_eq!(a, data[5..70_005]);
    assert_eq!(b[..80_000], data[len - 80_000..]);
    let counts = pair.server().read_counts();
    assert_eq!(counts.mapped, 0, "{counts:?}");
    assert!(counts.copied >= 33, "{counts:?}");
    pair.client.close(file).expect("close");
    pair.finish().expect("finish");
}

/// A read gets its data and its status block in one RDMA write when the
/// client takes interrupts (docs/PROTOCOL.md, "Data and status block in
/// one write"), whether it fills its slot or asks for less (the block goes
/// right after the bytes asked for); a read ending early at end of file
/// and every read of a polling client get two. Stepped inline, so every
/// read is served the moment it arrives, with nothing queued ahead of its
/// status block.
#[test]
fn reads_carry_their_status_block_in_the_data_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    if !leases_available(dir.path()) {
        return;
    }
    let data = pattern(1 << 20, 7);
    fs::write(dir.path().join("f"), &data).expect("write file");
    for mode in [CompletionMode::Interrupt, CompletionMode::Polling] {
        let mut pair = start::<Inline>(dir.path(), mode, true);
        let file = pair.client.open("f", OpenFlags::READ).expect("open");
        // Four full 256 KiB slots.
        assert_eq!(read_all(&mut pair, &file, 1 << 20), data, "{mode:?}");
        // A short request, and one cut short by the end of the file.
        let mut small = [0u8; 1000];
        assert_eq!(
            pair.client.read_at(&file, 5, &mut small).expect("read"),
            1000
        );
        assert_eq!(small[..], data[5..1005]);
        let mut tail = vec![0u8; 256 << 10];
        let start = (1 << 20) - 100;
        assert_eq!(
            pair.client.read_at(&file, start, &mut tail).expect("read"),
            100
        );
        assert_eq!(tail[..100], data[start as usize..]);
        let counts = pair.server().read_counts();
        assert_eq!((counts.mapped, counts.copied), (6, 0), "{mode:?}");
        // The four full slots and the short request.
        let joined = match mode {
            CompletionMode::Interrupt => 5,
            _ => 0,
        };
        assert_eq!(counts.joined, joined, "{mode:?}");
        pair.client.close(file).expect("close");
        pair.finish().expect("finish");
    }
}
