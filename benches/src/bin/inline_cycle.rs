//! Runs N 4 KiB reads, QD in flight, through the std client and the
//! in-process server over the loopback (real file, zero-copy reads from the
//! leased mapping): the path `rdio bench --sizes 4K --queue-depths QD`
//! measures, without the bench's file fill and baselines around it. Run it
//! twice under callgrind with different N and divide the difference in
//! instructions by the difference in N: the whole stack's cost per read,
//! free of set-up (`scripts/callgrind-inline.sh`); or under `perf record`.
//!
//! `inline_cycle N [QD] [--copy-out] [--polling] [--threads] [--file-mib M]
//! [--no-metrics] [--writes] [--no-batch]`:
//! reads are used in place (`Client::wait_in_place`) unless `--copy-out`;
//! the server runs inline unless `--threads`; the reads walk a file of M MiB
//! (16 by default: it fits this machine's L3 cache, the bench's 256 MiB
//! does not); `--no-metrics` turns the drivers' per-request metrics off
//! (`request_metrics`: latency histograms, request spans, the server's
//! per-request cell updates), to measure what they cost
//! (`scripts/callgrind-metrics.sh`). Prints the read loop's time per read
//! as well, for the timing fallback of that script. `--writes`: N 4 KiB
//! writes instead (`Client::submit_write`, the caller's bytes copied into a
//! registered slot; `pwrite` on the server), the same way. `--no-batch`:
//! the client does not offer read batches (each read its own message).

use rdio::client::{Client, CompletionMode, RemoteFile, Ticket};
use rdio::embedded::{EmbeddedOptions, Inline, Mode, Threads};
use rdio_core::wire::OpenFlags;
use std::collections::VecDeque;
use std::io::{Read, Write};

const SIZE: usize = 4096;

struct Run {
    reads: u64,
    file_len: usize,
    depth: usize,
    in_place: bool,
    mode: CompletionMode,
    metrics: bool,
    writes: bool,
    batch: bool,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let reads = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let mut run = Run {
        reads,
        file_len: 16 << 20,
        depth: 32,
        in_place: true,
        mode: CompletionMode::Interrupt,
        metrics: true,
        writes: false,
        batch: true,
    };
    let mut threads = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--file-mib" => {
                let mib: usize = args
                    .next()
                    .and_then(|m| m.parse().ok())
                    .expect("--file-mib M");
                run.file_len = mib << 20;
            }
            "--copy-out" => run.in_place = false,
            "--polling" => run.mode = CompletionMode::Polling,
            "--threads" => threads = true,
            "--no-metrics" => run.metrics = false,
            "--writes" => run.writes = true,
            "--no-batch" => run.batch = false,
            depth => {
                run.depth = depth
                    .parse()
                    .expect("QD, --copy-out, --polling or --threads")
            }
        }
    }
    let dir = std::env::temp_dir().join(format!("rdio-inline-cycle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let data: Vec<u8> = (0..run.file_len).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.join("data"), &data).expect("data file");
    let (bytes, elapsed) = if threads {
        measure::<Threads>(&dir, &run)
    } else {
        measure::<Inline>(&dir, &run)
    };
    std::fs::remove_dir_all(&dir).expect("remove the temporary directory");
    assert_eq!(bytes, run.reads * SIZE as u64, "a read came back short");
    println!(
        "{} {} of 4 KiB at QD {}, {bytes} bytes, {:.1} ns per {}",
        run.reads,
        if run.writes { "writes" } else { "reads" },
        run.depth,
        elapsed.as_nanos() as f64 / run.reads.max(1) as f64,
        if run.writes { "write" } else { "read" },
    );
}

fn measure<M: Mode>(dir: &std::path::Path, run: &Run) -> (u64, std::time::Duration) {
    let mut options = EmbeddedOptions::default();
    options.server.request_metrics = run.metrics;
    options.client.request_metrics = run.metrics;
    options.client.io_size = SIZE as u32;
    options.client.queue_depth = run.depth;
    options.client.mode = run.mode;
    if !run.batch {
        options.client.config.capabilities = rdio_core::wire::Capabilities::NONE;
    }
    let mut pair = M::start(dir, options).expect("start the pair");
    let flags = if run.writes {
        OpenFlags::READ | OpenFlags::WRITE
    } else {
        OpenFlags::READ
    };
    let file = pair.client.open("data", flags).expect("open");
    let started = std::time::Instant::now();
    let bytes = if run.writes {
        write_loop(&mut pair.client, &file, run)
    } else {
        read_loop(&mut pair.client, &file, run)
    };
    let elapsed = started.elapsed();
    let counts = pair.server().read_counts();
    assert_eq!(counts.copied, 0, "reads were served from the mapping");
    pair.client.close(file).expect("close");
    pair.finish().expect("finish");
    (bytes, elapsed)
}

/// Keep `depth` reads in flight, collecting the oldest, as the bench does.
fn read_loop<T: rdio_transport::Transport, S: Read + Write>(
    client: &mut Client<T, S>,
    file: &RemoteFile,
    run: &Run,
) -> u64 {
    let slots = (run.file_len / SIZE).max(1) as u64;
    let mut scratch = vec![0u8; SIZE];
    let mut in_flight: VecDeque<Ticket> = VecDeque::with_capacity(run.depth);
    let (mut issued, mut bytes) = (0u64, 0u64);
    while issued < run.reads || !in_flight.is_empty() {
        while issued < run.reads && in_flight.len() < run.depth {
            let offset = (issued % slots) * SIZE as u64;
            in_flight.push_back(client.submit_read(file, offset, SIZE).expect("submit"));
            issued += 1;
        }
        let Some(ticket) = in_flight.pop_front() else {
            break;
        };
        bytes += if run.in_place {
            let view = client.wait_in_place(ticket).expect("read");
            std::hint::black_box(view.first());
            view.len() as u64
        } else {
            client.wait(ticket, &mut scratch).expect("read")
        };
    }
    bytes
}

fn write_loop<T: rdio_transport::Transport, S: Read + Write>(
    client: &mut Client<T, S>,
    file: &RemoteFile,
    run: &Run,
) -> u64 {
    let slots = (run.file_len / SIZE).max(1) as u64;
    let data: Vec<u8> = (0..SIZE).map(|i| (i % 241) as u8).collect();
    let mut in_flight: VecDeque<Ticket> = VecDeque::with_capacity(run.depth);
    let (mut issued, mut bytes) = (0u64, 0u64);
    while issued < run.reads || !in_flight.is_empty() {
        while issued < run.reads && in_flight.len() < run.depth {
            let offset = (issued % slots) * SIZE as u64;
            in_flight.push_back(client.submit_write(file, offset, &data).expect("submit"));
            issued += 1;
        }
        let Some(ticket) = in_flight.pop_front() else {
            break;
        };
        bytes += client.wait(ticket, &mut []).expect("write");
    }
    bytes
}
