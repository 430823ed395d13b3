//! The whole protocol over the loopback transport on real files: a client
//! and an in-process server (`rdio::embedded`), every byte compared on disk.
//! Every scenario runs in both modes of the pair: the server on threads of
//! its own (`threads::*`) and stepped inline by the client (`inline::*`).

use rdio::client::{ClientError, CompletionMode, Operation};
use rdio::embedded::{Embedded, EmbeddedOptions, Mode};
use rdio::files::{ReadSegment, WriteSegment};
use rdio::server::ConnectionEnd;
use rdio_core::error::Violation;
use rdio_core::wire::{OpenFlags, ResumeKey, Status};
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

#[macro_use]
mod support;

const RWC: OpenFlags = OpenFlags::READ
    .union(OpenFlags::WRITE)
    .union(OpenFlags::CREATE);
const MODES: [CompletionMode; 2] = [CompletionMode::Interrupt, CompletionMode::Polling];

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
        .collect()
}

fn start<M: Mode>(root: &Path, mode: CompletionMode) -> Embedded<M> {
    let mut options = EmbeddedOptions::default();
    options.client.mode = mode;
    M::start(root, options).expect("start embedded pair")
}

/// Finish in order and check the server saw the client's orderly close.
fn finish<M: Mode>(pair: Embedded<M>) {
    let end = pair.finish().expect("finish");
    assert_eq!(
        end,
        ConnectionEnd::Terminated(Violation::PeerTerminated(Status::Shutdown))
    );
}

fn remote_status(result: Result<impl std::fmt::Debug, ClientError>) -> (Operation, Status) {
    match result {
        Err(ClientError::Remote { operation, status }) => (operation, status),
        other => panic!("expected a server refusal, got {other:?}"),
    }
}

in_both_modes!(
    write_then_read_back_at_boundary_sizes_in_both_modes,
    sixty_four_mib_round_trip,
    reads_at_and_past_end_of_file,
    vectored_reads_and_writes_with_and_without_collapse,
    pipelined_tickets_complete_independently,
    cancel_before_and_during_transfer,
    credits_revoked_and_granted_mid_stream,
    credits_follow_the_clients_demand,
    polling_client_can_ask_for_an_interrupt,
    std_io_adapters,
    bad_opens_are_refused_and_create_nothing,
    read_only_files_refuse_writes_and_change_nothing,
    closed_handles_and_unknown_keys,
    oversize_and_malformed_requests_are_refused_locally,
    dropping_the_client_closes_the_servers_files,
    write_buffers_send_in_place_in_both_modes,
    sixty_four_requests_fit_on_the_wire_at_once,
    stat_tells_a_file_that_changed_was_replaced_or_is_gone,
    checksums_cover_the_whole_file_as_the_server_holds_it,
    vectored_reads_past_end_of_file_never_show_stale_bytes,
    a_send_queue_shorter_than_the_queue_depth_only_slows_requests,
    without_inline_data_requests_and_status_blocks_use_send_buffers,
);

fn write_then_read_back_at_boundary_sizes_in_both_modes<M: Mode>() {
    for mode in MODES {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut pair = start::<M>(dir.path(), mode);
        for (i, size) in [0usize, 1, 4095, 4096, (1 << 20) + 1]
            .into_iter()
            .enumerate()
        {
            let name = format!("file_{size}");
            let data = pattern(size, i as u8);
            let file = pair.client.open(&name, RWC).expect("open");
            assert_eq!(file.size, 0);
            pair.client.write_at(&file, 0, &data).expect("write");
            assert_eq!(
                fs::read(dir.path().join(&name)).expect("on disk"),
                data,
                "{mode:?} size {size}"
            );
            let mut back = vec![0xEEu8; size + 7];
            let got = pair.client.read_at(&file, 0, &mut back).expect("read");
            assert_eq!(got, size, "{mode:?} size {size}: short only at EOF");
            assert_eq!(&back[..size], &data[..], "{mode:?} size {size}");
            pair.client.close(file).expect("close");
        }
        assert_eq!(pair.server().open_files(), 0, "closed files are released");
        finish(pair);
    }
}

fn sixty_four_mib_round_trip<M: Mode>() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = pattern(64 << 20, 0x5A);
    fs::write(dir.path().join("big"), &data).expect("seed file");
    let mut pair = start::<M>(dir.path(), CompletionMode::Interrupt);
    let file = pair.client.open("big", OpenFlags::READ).expect("open");
    assert_eq!(file.size, data.len() as u64);
    let mut back = vec![0u8; data.len()];
    assert_eq!(
        pair.client.read_at(&file, 0, &mut back).expect("read"),
        data.len()
    );
    assert!(back == data, "64 MiB read differs");
    let copy = pair.client.open("copy", RWC).expect("open copy");
    pair.client.write_at(&copy, 0, &back).expect("write");
    assert!(
        fs::read(dir.path().join("copy")).expect("read copy") == data,
        "64 MiB write differs"
    );
    finish(pair);
}

fn reads_at_and_past_end_of_file<M: Mode>() {
    for mode in MODES {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("f"), b"0123456789").expect("write");
        let mut pair = start::<M>(dir.path(), mode);
        let file = pair.client.open("f", OpenFlags::READ).expect("open");
        let mut buf = [0xAAu8; 8];
        assert_eq!(pair.client.read_at(&file, 10, &mut buf).expect("at eof"), 0);
        assert_eq!(
            pair.client
                .read_at(&file, 1 << 40, &mut buf)
                .expect("far past eof"),
            0
        );
        assert_eq!(
            pair.client.read_at(&file, 6, &mut buf).expect("straddling"),
            4
        );
        assert_eq!(&buf[..4], b"6789");
        // Past the largest file offset (2^63 - 1): answered by the
        // server's core, whether or not the file is served from a mapping
        // (which asks no range check of its own).
        assert_eq!(
            remote_status(pair.client.read_at(&file, i64::MAX as u64 - 4, &mut buf)).1,
            Status::InvalidParameter
        );
        finish(pair);
    }
}

fn stat_tells_a_file_that_changed_was_replaced_or_is_gone<M: Mode>() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("f");
    fs::write(&path, b"0123456789").expect("write");
    let mut pair = start::<M>(dir.path(), CompletionMode::Interrupt);
    let file = pair.client.open("f", OpenFlags::READ).expect("open");
    let first = pair.client.stat("f").expect("stat");
    assert_eq!(first.size, 10);
    assert!(first.modified_ns > 0 && first.file_id != 0, "{first:?}");
    assert_eq!(pair.client.stat("f").expect("again"), first, "unchanged");
    // Rewritten in place, same size: only the modification time moves.
    let mut later = std::time::SystemTime::UNIX_EPOCH
        + std::time::Duration::from_nanos(first.modified_ns + 1_000_000_000);
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|f| {
            f.write_all_at(b"ABC", 0)?;
            f.set_modified(later)
        })
        .expect("rewrite");
    let rewritten = pair.client.stat("f").expect("stat");
    assert_eq!(
        (rewritten.size, rewritten.file_id),
        (first.size, first.file_id)
    );
    assert_ne!(rewritten.modified_ns, first.modified_ns);
    // Replaced under the same name: another identity.
    let new = dir.path().join("new");
    fs::write(&new, b"0123456789").expect("write");
    later += std::time::Duration::from_secs(1);
    fs::File::options()
        .write(true)
        .open(&new)
        .and_then(|f| f.set_modified(later))
        .expect("touch");
    fs::rename(&new, &path).expect("replace");
    assert_ne!(pair.client.stat("f").expect("stat").file_id, first.file_id);
    // Gone; and a path out of the root is refused like an open.
    fs::remove_file(&path).expect("remove");
    assert_eq!(
        remote_status(pair.client.stat("f")),
        (Operation::Stat, Status::NotFound)
    );
    assert_eq!(
        remote_status(pair.client.stat("../f")).1,
        Status::AccessDenied
    );
    // The registered file still reads (the pipe session carries on).
    let mut buf = [0u8; 10];
    assert_eq!(pair.client.read_at(&file, 0, &mut buf).expect("read"), 10);
    finish(pair);
}

fn checksums_cover_the_whole_file_as_the_server_holds_it<M: Mode>() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("empty"), b"").expect("write");
    // Longer than the server's read chunk, not a multiple of it.
    let data = pattern(3 * 256 * 1024 + 17, 5);
    fs::write(dir.path().join("f"), &data).expect("write");
    let mut pair = start::<M>(dir.path(), CompletionMode::Interrupt);
    let empty = pair.client.checksum("empty").expect("checksum");
    // XXH3-128 of no bytes, as its reference implementation gives it.
    assert_eq!(
        (empty.length, u128::from_be_bytes(empty.digest)),
        (0, 0x99aa_06d3_0147_98d8_6001_c324_468d_497f)
    );
    let whole = pair.client.checksum("f").expect("checksum");
    assert_eq!(whole.length, data.len() as u64);
    assert_eq!(
        whole.digest,
        xxhash_rust::xxh3::xxh3_128(&data).to_be_bytes()
    );
    // What a client wrote through RDMA is what the server hashes.
    let file = pair
        .client
        .open(
            "f",
            OpenFlags::READ | OpenFlags::WRITE | OpenFlags::IN_PLACE,
        )
        .expect("open");
    pair.client.write_at(&file, 1, b"XY").expect("write");
    let mut changed = data.clone();
    changed[1..3].copy_from_slice(b"XY");
    assert_eq!(
        pair.client.checksum("f").expect("checksum").digest,
        xxhash_rust::xxh3::xxh3_128(&changed).to_be_bytes()
    );
    // Refused as an open for reading would be; the session carries on.
    assert_eq!(
        remote_status(pair.client.checksum("missing")),
        (Operation::Checksum, Status::NotFound)
    );
    assert_eq!(
        remote_status(pair.client.checksum("../f")).1,
        Status::AccessDenied
    );
    assert!(matches!(
        pair.client.checksum(""),
        Err(ClientError::InvalidArgument(_))
    ));
    let mut buf = [0u8; 3];
    assert_eq!(pair.client.read_at(&file, 0, &mut buf).expect("read"), 3);
    assert_eq!(&buf[1..], b"XY");
    finish(pair);
}

fn vectored_reads_past_end_of_file_never_show_stale_bytes<M: Mode>() {
    for mode in MODES {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("full"), [0xFFu8; 64]).expect("write");
        fs::write(dir.path().join("short"), b"0123456789").expect("write");
        let mut pair = start::<M>(dir.path(), mode);
        let full = pair.client.open("full", OpenFlags::READ).expect("open");
        let short = pair.client.open("short", OpenFlags::READ).expect("open");
        // Every buffer of the client goes through both reads in turn: the
        // second finds the first's bytes where its short segment ends.
        for round in 0..2 * pair.client.queue_depth() {
            let mut a = [0u8; 16];
            let mut b = [0u8; 16];
            let mut segments = [
                ReadSegment {
                    offset: 0,
                    buf: &mut a,
                },
                ReadSegment {
                    offset: 16,
                    buf: &mut b,
                },
            ];
            assert_eq!(
                pair.client
                    .read_vectored_at(&full, &mut segments)
                    .expect("full"),
                32
            );
            let mut a = [0xAAu8; 8];
            let mut b = [0xAAu8; 8];
            let mut segments = [
                ReadSegment {
                    offset: 6,
                    buf: &mut a,
                },
                ReadSegment {
                    offset: 40,
                    buf: &mut b,
                },
            ];
            assert_eq!(
                pair.client
                    .read_vectored_at(&short, &mut segments)
                    .expect("short"),
                4
            );
            assert_eq!(&a, b"6789\0\0\0\0", "round {round}: past the end");
            assert_eq!(b, [0; 8], "round {round}: wholly past the end");
        }
        finish(pair);
    }
}

fn vectored_reads_and_writes_with_and_without_collapse<M: Mode>() {
    for mode in MODES {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut pair = start::<M>(dir.path(), mode);
        let file = pair.client.open("v", RWC).expect("open");
        let a = pattern(4096, 1);
        let b = pattern(100, 2);
        let c = pattern(70_000, 3);
        let written = pair
            .client
            .write_vectored_at(
                &file,
                &[
                    WriteSegment {
                        offset: 200_000,
                        data: &c,
                    },
                    WriteSegment {
                        offset: 0,
                        data: &a,
                    },
                    WriteSegment {
                        offset: 10_000,
                        data: &b,
                    },
                ],
            )
            .expect("vectored write");
        assert_eq!(written, (a.len() + b.len() + c.len()) as u64);
        let disk = fs::read(dir.path().join("v")).expect("read");
        assert_eq!(&disk[..4096], &a[..]);
        assert_eq!(&disk[10_000..10_100], &b[..]);
        assert_eq!(&disk[200_000..], &c[..]);
        assert!(disk[4096..10_000].iter().all(|&x| x == 0));

        // COLLAPSE: one copy of the data on the wire, landing at every offset.
        let block = pattern(65_537, 9);
        let offsets = [300_000u64, 500_000, 1_000_000];
        let written = pair
            .client
            .write_collapsed(&file, &offsets, &block)
            .expect("collapsed write");
        assert_eq!(written, 3 * block.len() as u64);
        let disk = fs::read(dir.path().join("v")).expect("read");
        for offset in offsets {
            let offset = offset as usize;
            assert_eq!(
                &disk[offset..offset + block.len()],
                &block[..],
                "{mode:?} collapse at {offset}"
            );
        }

        let mut x = vec![0u8; 4096];
        let mut y = vec![0u8; 100];
        let mut z = vec![0u8; 70_000];
        let mut tail = vec![0u8; 64];
        let end = disk.len() as u64;
        let total = pair
            .client
            .read_vectored_at(
                &file,
                &mut [
                    ReadSegment {
                        offset: 10_000,
                        buf: &mut y,
                    },
                    ReadSegment {
                        offset: 0,
                        buf: &mut x,
                    },
                    ReadSegment {
                        offset: 200_000,
                        buf: &mut z,
                    },
                    ReadSegment {
                        offset: end - 10,
                        buf: &mut tail,
                    },
                ],
            )
            .expect("vectored read");
        assert_eq!(
            total,
            (4096 + 100 + 70_000 + 10) as u64,
            "{mode:?}: the last segment is short at EOF"
        );
        assert_eq!(x, a);
        assert_eq!(y, b);
        assert_eq!(z, c);
        assert_eq!(&tail[..10], &block[block.len() - 10..]);
        finish(pair);
    }
}

fn pipelined_tickets_complete_independently<M: Mode>() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut options = EmbeddedOptions::default();
    options.client.io_size = 64 << 10;
    options.client.queue_depth = 16;
    let mut pair = M::start(dir.path(), options).expect("start");
    let file = pair.client.open("p", RWC).expect("open");
    let chunks: Vec<Vec<u8>> = (0..16).map(|i| pattern(64 << 10, i as u8)).collect();
    let tickets: Vec<_> = chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            pair.client
                .submit_write(&file, (i as u64) << 16, chunk)
                .expect("submit")
        })
        .collect();
    assert!(
        pair.client.submit_write(&file, 0, b"x").is_err(),
        "every buffer is taken"
    );
    // Collect out of order.
    for ticket in tickets.into_iter().rev() {
        assert_eq!(pair.client.wait(ticket, &mut []).expect("write"), 64 << 10);
    }
    assert_eq!(
        fs::read(dir.path().join("p")).expect("read"),
        chunks.concat()
    );
    finish(pair);
}

fn cancel_before_and_during_transfer<M: Mode>() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut options = EmbeddedOptions::default();
    options.client.io_size = 8 << 20;
    options.client.queue_depth = 2;
    // 64 KiB sends: the write below must be mid-stream when cancelled.
    options.client.config.max_send_size = 64 << 10;
    let mut pair = M::start(dir.path(), options).expect("start");
    let file = pair.client.open("c", RWC).expect("open");

    // Not yet transmitted: completes Cancelled at once, the server never
    // sees it, nothing of it is written. (A write that can go first is
    // sent as it is submitted: this one waits behind the fragments of a
    // 1 MiB write still streaming.)
    let lead = pair
        .client
        .submit_write(&file, 0, &pattern(1 << 20, 3))
        .expect("submit");
    let ticket = pair
        .client
        .submit_write(&file, 2 << 20, &pattern(1 << 20, 1))
        .expect("submit");
    pair.client.cancel(&ticket).expect("cancel");
    assert_eq!(
        remote_status(pair.client.wait(ticket, &mut [])),
        (Operation::Write, Status::Cancelled)
    );
    assert_eq!(
        pair.client.wait(lead, &mut []).expect("lead write"),
        1 << 20
    );
    assert_eq!(
        fs::metadata(dir.path().join("c")).expect("stat").len(),
        1 << 20,
        "nothing of the cancelled write written"
    );

    // In flight: an 8 MiB write needs 128 fragments and only has 32 credits,
    // so it is mid-stream once the small write ahead of it completes.
    let first = pair
        .client
        .submit_write(&file, 0, b"ahead")
        .expect("submit");
    let big = pair
        .client
        .submit_write(&file, 1 << 20, &pattern(8 << 20, 2))
        .expect("submit");
    assert_eq!(pair.client.wait(first, &mut []).expect("first write"), 5);
    pair.client.cancel(&big).expect("cancel in flight");
    match pair.client.wait(big, &mut []) {
        Err(ClientError::Remote {
            status: Status::Cancelled,
            ..
        }) => {}
        Ok(written) => assert_eq!(written, 8 << 20, "finished before the cancel arrived"),
        other => panic!("unexpected outcome of a cancelled write: {other:?}"),
    }
    // The connection is intact.
    let mut head = [0u8; 5];
    assert_eq!(
        pair.client
            .read_at(&file, 0, &mut head)
            .expect("read after cancel"),
        5
    );
    assert_eq!(&head, b"ahead");
    finish(pair);
}

fn credits_revoked_and_granted_mid_stream<M: Mode>() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The driver's targets alone: the credit policy would move the level
    // with the client's demand (`credits_follow_the_clients_demand`).
    let mut options = EmbeddedOptions::default();
    options.server.config.credit_window = None;
    let mut pair = M::start(dir.path(), options).expect("start embedded pair");
    let initial = pair.client.credits();
    assert!(initial > 4, "starts with {initial} credits");
    let file = pair.client.open("credits", RWC).expect("open");
    let data = pattern(16 << 20, 4);
    assert!(pair.control().set_credit_target(2), "connection alive");
    pair.client
        .write_at(&file, 0, &data)
        .expect("write while credits are revoked");
    let mut back = vec![0u8; data.len()];
    assert_eq!(
        pair.client.read_at(&file, 0, &mut back).expect("read"),
        data.len()
    );
    assert!(back == data);
    assert_eq!(pair.client.credits(), 2, "the revoke was applied");
    assert!(pair.control().set_credit_target(initial));
    pair.client
        .write_at(&file, 0, &data)
        .expect("write after the grant");
    pair.client.read_at(&file, 0, &mut back).expect("read");
    assert_eq!(pair.client.credits(), initial, "the grant was applied");
    assert!(fs::read(dir.path().join("credits")).expect("on disk") == data);
    finish(pair);
}

/// The server's credit policy through the real driver and the loopback
/// (which fails a send that finds no receive posted, as an RC queue pair
/// with `rnr_retry = 0`): a client reading one block at a time is revoked
/// down to 2 credits, and the server reposts only the receives those need;
/// 32 reads submitted at once are granted credits again, the receives for
/// them posted before the grant; every byte arrives.
fn credits_follow_the_clients_demand<M: Mode>() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = pattern(64 << 12, 5);
    fs::write(dir.path().join("f"), &data).expect("file");
    let mut options = EmbeddedOptions::default();
    options.client.io_size = 4096;
    options.client.queue_depth = 32;
    let mut pair = M::start(dir.path(), options).expect("start");
    assert_eq!(pair.client.credits(), 64);
    let file = pair.client.open("f", OpenFlags::READ).expect("open");
    let mut out = vec![0u8; 4096];
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut i = 0u64;
    while pair.client.credits() > 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "still {} credits after 20 s at queue depth 1",
            pair.client.credits()
        );
        let at = (i % 64) << 12;
        assert_eq!(
            pair.client.read_at(&file, at, &mut out).expect("read"),
            4096
        );
        assert_eq!(out[..], data[at as usize..at as usize + 4096]);
        i += 1;
        std::thread::sleep(Duration::from_millis(1));
    }
    let tickets: Vec<_> = (0..32u64)
        .map(|i| {
            pair.client
                .submit_read(&file, i << 12, 4096)
                .expect("submit")
        })
        .collect();
    for (i, ticket) in tickets.into_iter().enumerate() {
        assert_eq!(pair.client.wait(ticket, &mut out).expect("read"), 4096);
        assert_eq!(out[..], data[i << 12..(i + 1) << 12], "read {i}");
    }
    // The demand of 32 was stated while the level was 2: granted to 64
    // (twice the demand, capped by the session's level) at the next review.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while pair.client.credits() <= 2 {
        assert!(std::time::Instant::now() < deadline, "no grant in 20 s");
        pair.client.read_at(&file, 0, &mut out).expect("read");
    }
    finish(pair);
}

fn polling_client_can_ask_for_an_interrupt<M: Mode>() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut pair = start::<M>(dir.path(), CompletionMode::Polling);
    let file = pair.client.open("i", RWC).expect("open");
    let ticket = pair
        .client
        .submit_write(&file, 0, &pattern(300_000, 5))
        .expect("submit");
    pair.client.request_interrupt().expect("interrupt response");
    assert_eq!(pair.client.wait(ticket, &mut []).expect("write"), 300_000);
    finish(pair);
}

fn std_io_adapters<M: Mode>() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut pair = start::<M>(dir.path(), CompletionMode::Interrupt);
    let file = pair.client.open("io", RWC).expect("open");
    let mut io = pair.client.io(file);
    io.write_all(b"hello, ").expect("write");
    io.write_all(b"world").expect("write");
    assert_eq!(io.seek(SeekFrom::Start(7)).expect("seek"), 7);
    let mut word = String::new();
    io.read_to_string(&mut word).expect("read");
    assert_eq!(word, "world");
    assert_eq!(io.seek(SeekFrom::End(-12)).expect("seek from end"), 0);
    assert!(io.seek(SeekFrom::Current(-1)).is_err(), "before the start");
    let mut all = Vec::new();
    io.read_to_end(&mut all).expect("read all");
    assert_eq!(all, b"hello, world");
    assert_eq!(
        fs::read(dir.path().join("io")).expect("on disk"),
        b"hello, world"
    );
    finish(pair);
}

fn bad_opens_are_refused_and_create_nothing<M: Mode>() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    fs::create_dir(&root).expect("mkdir");
    fs::write(dir.path().join("secret"), b"secret").expect("write secret");
    std::os::unix::fs::symlink("../secret", root.join("escape")).expect("symlink");
    std::os::unix::fs::symlink("/etc/passwd", root.join("absolute")).expect("symlink");
    std::os::unix::fs::symlink("../new_outside", root.join("dangling")).expect("symlink");
    let mut pair = start::<M>(&root, CompletionMode::Interrupt);
    let cases: [(&str, OpenFlags, Status); 7] = [
        ("missing", OpenFlags::READ, Status::NotFound),
        ("dir/missing", RWC, Status::NotFound),
        ("../secret", OpenFlags::READ, Status::AccessDenied),
        ("a/../../secret", RWC, Status::AccessDenied),
        ("escape", OpenFlags::READ, Status::AccessDenied),
        ("absolute", OpenFlags::READ, Status::AccessDenied),
        ("dangling", RWC, Status::AccessDenied),
    ];
    for (path, flags, status) in cases {
        assert_eq!(
            remote_status(pair.client.open(path, flags)),
            (Operation::Open, status),
            "{path}"
        );
    }
    // Rejected by the client before anything is sent.
    assert!(matches!(
        pair.client.open("", OpenFlags::READ),
        Err(ClientError::InvalidArgument(_))
    ));
    assert!(matches!(
        pair.client.open("a\0b", OpenFlags::READ),
        Err(ClientError::InvalidArgument(_))
    ));
    assert!(!dir.path().join("new_outside").exists());
    assert_eq!(
        fs::read(dir.path().join("secret")).expect("read"),
        b"secret"
    );
    let mut names: Vec<_> = fs::read_dir(&root)
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["absolute", "dangling", "escape"],
        "no file was created"
    );
    // The connection survives refusals.
    let file = pair.client.open("fine", RWC).expect("open after refusals");
    pair.client.write_at(&file, 0, b"ok").expect("write");
    finish(pair);
}

fn read_only_files_refuse_writes_and_change_nothing<M: Mode>() {
    for mode in MODES {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("ro"), b"original").expect("write");
        let mut pair = start::<M>(dir.path(), mode);
        let file = pair.client.open("ro", OpenFlags::READ).expect("open");
        assert_eq!(
            remote_status(pair.client.write_at(&file, 0, b"EVIL")),
            (Operation::Write, Status::AccessDenied)
        );
        let segments = [
            WriteSegment {
                offset: 0,
                data: b"EV",
            },
            WriteSegment {
                offset: 4,
                data: b"IL",
            },
        ];
        assert_eq!(
            remote_status(pair.client.write_vectored_at(&file, &segments)),
            (Operation::Write, Status::AccessDenied)
        );
        assert_eq!(
            remote_status(pair.client.write_collapsed(&file, &[0, 4], b"XX")),
            (Operation::Write, Status::AccessDenied)
        );
        assert_eq!(
            fs::read(dir.path().join("ro")).expect("read"),
            b"original",
            "{mode:?}"
        );
        // Still readable.
        let mut buf = [0u8; 8];
        assert_eq!(pair.client.read_at(&file, 0, &mut buf).expect("read"), 8);
        finish(pair);
    }
}

fn closed_handles_and_unknown_keys<M: Mode>() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("f"), b"data").expect("write");
    let mut pair = start::<M>(dir.path(), CompletionMode::Interrupt);
    let file = pair
        .client
        .open("f", OpenFlags::READ | OpenFlags::WRITE)
        .expect("open");
    pair.client.close(file).expect("close");
    let mut buf = [0u8; 4];
    assert_eq!(
        remote_status(pair.client.read_at(&file, 0, &mut buf)),
        (Operation::Read, Status::InvalidHandle)
    );
    assert_eq!(
        remote_status(pair.client.write_at(&file, 0, b"late")),
        (Operation::Write, Status::InvalidHandle)
    );
    assert_eq!(
        remote_status(pair.client.close(file)),
        (Operation::Close, Status::InvalidHandle)
    );
    assert_eq!(fs::read(dir.path().join("f")).expect("read"), b"data");

    // A key never issued, and a key already redeemed (keys are single use).
    assert_eq!(
        remote_status(pair.client.register(ResumeKey([0x42; 16]))),
        (Operation::Register, Status::UnknownResumeKey)
    );
    let opened = pair
        .client
        .open_on_pipe("f", OpenFlags::READ)
        .expect("open on pipe");
    assert_eq!(opened.size, 4);
    let file = pair.client.register(opened.key).expect("register");
    assert_eq!(
        remote_status(pair.client.register(opened.key)),
        (Operation::Register, Status::UnknownResumeKey)
    );
    assert_eq!(pair.client.read_at(&file, 0, &mut buf).expect("read"), 4);
    finish(pair);
}

fn oversize_and_malformed_requests_are_refused_locally<M: Mode>() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut pair = start::<M>(dir.path(), CompletionMode::Interrupt);
    let file = pair.client.open("o", RWC).expect("open");
    let limit = pair.client.io_size();
    assert!(matches!(
        pair.client.submit_read(&file, 0, limit + 1),
        Err(ClientError::TooLarge { .. })
    ));
    assert!(matches!(
        pair.client.submit_write(&file, 0, &vec![0; limit + 1]),
        Err(ClientError::TooLarge { .. })
    ));
    assert!(matches!(
        pair.client.submit_read(&file, 0, 0),
        Err(ClientError::InvalidArgument(_))
    ));
    let seventeen: Vec<(u64, usize)> = (0..17).map(|i| (i * 10, 10)).collect();
    assert!(matches!(
        pair.client.submit_read_vectored(&file, &seventeen),
        Err(ClientError::InvalidArgument(_))
    ));
    assert!(matches!(
        pair.client.submit_write_collapsed(&file, &[], b"x"),
        Err(ClientError::InvalidArgument(_))
    ));
    let long_path = "x".repeat(rdio_core::wire::MAX_PATH_LEN + 1);
    assert!(matches!(
        pair.client.open(&long_path, RWC),
        Err(ClientError::TooLarge { .. })
    ));
    assert_eq!(
        fs::metadata(dir.path().join("o")).expect("stat").len(),
        0,
        "nothing written"
    );
    // A write beyond the largest file offset is refused by the server.
    assert_eq!(
        remote_status(pair.client.write_at(&file, u64::MAX - 1, b"xy")).1,
        Status::InvalidParameter
    );
    finish(pair);
}

fn dropping_the_client_closes_the_servers_files<M: Mode>() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut pair = start::<M>(dir.path(), CompletionMode::Interrupt);
    let _file = pair.client.open("held", RWC).expect("open");
    let _unregistered = pair
        .client
        .open_on_pipe("held", OpenFlags::READ)
        .expect("open on pipe");
    assert_eq!(pair.server().open_files(), 2);
    let server = pair.control().clone();
    let end = pair.finish().expect("finish");
    assert_eq!(
        end,
        ConnectionEnd::Terminated(Violation::PeerTerminated(Status::Shutdown))
    );
    assert!(!server.set_credit_target(4), "the connection has ended");
}

fn write_buffers_send_in_place_in_both_modes<M: Mode>() {
    for mode in MODES {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut options = EmbeddedOptions::default();
        options.client.mode = mode;
        options.client.io_size = 64 << 10;
        options.client.queue_depth = 4;
        let mut pair = M::start(dir.path(), options).expect("start");
        let file = pair.client.open("w", RWC).expect("open");
        let chunks: Vec<Vec<u8>> = (0..8).map(|i| pattern(64 << 10, i as u8)).collect();

        // Bigger than a slot, or empty: refused, nothing taken.
        assert!(matches!(
            pair.client.write_buffer((64 << 10) + 1),
            Err(ClientError::TooLarge { .. })
        ));
        assert!(pair.client.write_buffer(0).is_err());
        // Dropped unsubmitted: the buffer comes back (four times over a
        // queue depth of four, then all four at once below).
        for _ in 0..4 {
            let mut buffer = pair.client.write_buffer(16).expect("lend");
            buffer.fill(0xEE);
        }

        let mut tickets = Vec::new();
        for (i, chunk) in chunks.iter().enumerate().take(4) {
            let mut buffer = pair.client.write_buffer(chunk.len()).expect("lend");
            assert_eq!(buffer.len(), chunk.len());
            buffer.copy_from_slice(chunk);
            tickets.push(buffer.submit(&file, (i as u64) << 16).expect("submit"));
        }
        assert!(
            pair.client.write_buffer(1).is_err(),
            "every buffer is in flight"
        );
        for ticket in tickets.drain(..) {
            assert_eq!(pair.client.wait(ticket, &mut []).expect("write"), 64 << 10);
        }
        // A short last chunk: the buffer is truncated to what was filled;
        // truncating to nothing refuses the write and frees the buffer.
        let mut empty = pair.client.write_buffer(8).expect("lend");
        empty.truncate(0);
        assert!(matches!(
            empty.submit(&file, 0),
            Err(ClientError::InvalidArgument(_))
        ));
        for (i, chunk) in chunks.iter().enumerate().skip(4) {
            let mut buffer = pair.client.write_buffer(64 << 10).expect("lend");
            buffer[..chunk.len() - 100].copy_from_slice(&chunk[..chunk.len() - 100]);
            buffer.truncate(chunk.len() - 100);
            tickets.push(buffer.submit(&file, (i as u64) << 16).expect("submit"));
        }
        for ticket in tickets.drain(..) {
            assert_eq!(
                pair.client.wait(ticket, &mut []).expect("write"),
                (64 << 10) - 100
            );
        }
        let on_disk = fs::read(dir.path().join("w")).expect("read");
        assert_eq!(on_disk.len(), (8 << 16) - 100);
        for (i, chunk) in chunks.iter().enumerate() {
            let start = i << 16;
            let want = if i < 4 {
                &chunk[..]
            } else {
                &chunk[..chunk.len() - 100]
            };
            assert_eq!(
                &on_disk[start..start + want.len()],
                want,
                "chunk {i} ({mode:?})"
            );
            if (4..7).contains(&i) {
                assert!(
                    on_disk[start + want.len()..start + (1 << 16)]
                        .iter()
                        .all(|&b| b == 0),
                    "the hole after short chunk {i} stays zero"
                );
            }
        }
        finish(pair);
    }
}

fn sixty_four_requests_fit_on_the_wire_at_once<M: Mode>() {
    // The server grants its maximum at once, so a queue depth of 64 is 64
    // requests in flight, none held back in the client for lack of credit.
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("f"), pattern(64 << 12, 3)).expect("file");
    let mut options = EmbeddedOptions::default();
    options.client.io_size = 4096;
    options.client.queue_depth = 64;
    let mut pair = M::start(dir.path(), options).expect("start");
    assert_eq!(pair.client.credits(), 64);
    let file = pair.client.open("f", OpenFlags::READ).expect("open");
    let tickets: Vec<_> = (0..64u64)
        .map(|i| {
            pair.client
                .submit_read(&file, i << 12, 4096)
                .expect("submit")
        })
        .collect();
    let mut out = vec![0u8; 4096];
    let data = pattern(64 << 12, 3);
    for (i, ticket) in tickets.into_iter().enumerate() {
        assert_eq!(pair.client.wait(ticket, &mut out).expect("read"), 4096);
        assert_eq!(out[..], data[i << 12..(i + 1) << 12], "read {i}");
    }
    finish(pair);
}

/// A transport whose send queue holds fewer work requests than the client
/// keeps requests in flight (16 against 32; verbs defaults to 64 against
/// up to 64 credits): neither side posts beyond it — a post the transport
/// refuses (`QueueFull`) would end the connection — and every request
/// still completes, reads served from the mapping and copied, fragmented
/// writes, in both completion modes.
fn a_send_queue_shorter_than_the_queue_depth_only_slows_requests<M: Mode>() {
    for mode in [CompletionMode::Interrupt, CompletionMode::Polling] {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = pattern(4 << 20, 4);
        fs::write(dir.path().join("d"), &data).expect("file");
        let mut options = EmbeddedOptions::default();
        options.loopback.max_send = 16;
        options.client.mode = mode;
        options.client.queue_depth = 32;
        options.client.io_size = 64 << 10;
        // 16 KiB sends: a 64 KiB write is five fragments.
        options.client.config.max_send_size = 16 << 10;
        let mut pair = M::start(dir.path(), options).expect("start");
        for flags in [OpenFlags::READ, OpenFlags::READ | OpenFlags::WRITE] {
            let file = pair.client.open("d", flags).expect("open");
            let tickets: Vec<_> = (0..32u64)
                .map(|i| {
                    let offset = i * 70_000;
                    let ticket = pair
                        .client
                        .submit_read(&file, offset, 8192)
                        .expect("submit");
                    (offset as usize, ticket)
                })
                .collect();
            for (offset, ticket) in tickets {
                let mut out = vec![0u8; 8192];
                assert_eq!(pair.client.wait(ticket, &mut out).expect("read"), 8192);
                assert_eq!(out, data[offset..offset + 8192], "read at {offset}");
            }
            pair.client.close(file).expect("close");
        }
        let file = pair.client.open("w", RWC).expect("open");
        let chunks: Vec<Vec<u8>> = (0..32u8).map(|i| pattern(64 << 10, i)).collect();
        let tickets: Vec<_> = chunks
            .iter()
            .enumerate()
            .map(|(i, chunk)| {
                pair.client
                    .submit_write(&file, (i * chunk.len()) as u64, chunk)
                    .expect("submit")
            })
            .collect();
        for ticket in tickets {
            assert_eq!(pair.client.wait(ticket, &mut []).expect("write"), 64 << 10);
        }
        pair.client.close(file).expect("close");
        assert_eq!(
            fs::read(dir.path().join("w")).expect("read"),
            chunks.concat()
        );
        finish(pair);
    }
}

/// A transport without inline data (`Caps::max_inline` 0, as fabric, cma
/// and verbs today): read requests and status blocks go through registered
/// send buffers, as before inline posts existed. Reads, vectored reads and
/// writes, plain and pipelined, both completion modes, every byte checked.
fn without_inline_data_requests_and_status_blocks_use_send_buffers<M: Mode>() {
    for mode in MODES {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = pattern(1 << 20, 9);
        fs::write(dir.path().join("d"), &data).expect("file");
        let mut options = EmbeddedOptions::default();
        options.loopback.max_inline = 0;
        options.client.mode = mode;
        options.client.queue_depth = 8;
        options.client.io_size = 16 << 10;
        let mut pair = M::start(dir.path(), options).expect("start");
        let file = pair.client.open("d", RWC).expect("open");
        let mut back = vec![0u8; data.len()];
        assert_eq!(
            pair.client.read_at(&file, 0, &mut back).expect("read"),
            data.len()
        );
        assert!(back == data, "{mode:?}: read differs");
        let tickets: Vec<_> = (0..8u64)
            .map(|i| {
                pair.client
                    .submit_read(&file, i * 4096 + 3, 100)
                    .expect("submit")
            })
            .collect();
        for (i, ticket) in tickets.into_iter().enumerate() {
            let mut out = [0u8; 100];
            assert_eq!(pair.client.wait(ticket, &mut out).expect("wait"), 100);
            let at = i * 4096 + 3;
            assert_eq!(&out[..], &data[at..at + 100], "{mode:?}: ticket {i}");
        }
        let new = pattern(40_000, 3);
        pair.client.write_at(&file, 5, &new).expect("write");
        let mut expected = data.clone();
        expected[5..5 + new.len()].copy_from_slice(&new);
        assert!(
            fs::read(dir.path().join("d")).expect("on disk") == expected,
            "{mode:?}: write differs"
        );
        pair.client.close(file).expect("close");
        finish(pair);
    }
}
