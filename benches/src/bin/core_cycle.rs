//! Runs N 4 KiB read cycles on the core (client + server state machines, no
//! transport, no files). Run it twice under callgrind with different N and
//! divide the difference in instructions by the difference in N: that is the
//! core's cost per read, free of set-up (`scripts/callgrind-core.sh`).
//!
//! `core_cycle N` takes each completion straight from its status block
//! (`Client::take_status_block`); `core_cycle N events` queues it and
//! drains it with `Client::poll_event`, the event path; `core_cycle N
//! batch` runs the N reads as read batches of 16 (`Cycle::read_4k_batch`);
//! `core_cycle N files` reads the last of 16 registered files
//! (`Cycle::with_files`), what a server's handle lookup costs with many
//! files open.

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let mode = std::env::args().nth(2);
    let (events, files) = match mode.as_deref() {
        None => (false, 1),
        Some("events") => (true, 1),
        Some("files") => (false, 16),
        Some("batch") => {
            let mut cycle = rdio_benches::Cycle::with_batches();
            let mut total = 0u64;
            for _ in 0..n / 16 {
                total += cycle.read_4k_batch(16);
            }
            assert_eq!(total, n / 16 * 16 * 4096, "a read batch failed");
            println!("{} reads in batches of 16, {total} bytes", n / 16 * 16);
            return;
        }
        Some(other) => {
            eprintln!(
                "core_cycle: unknown mode {other:?} (usage: core_cycle [N] [events|batch|files])"
            );
            std::process::exit(2);
        }
    };
    let mut cycle = rdio_benches::Cycle::with_files(files);
    let mut total = 0u64;
    for _ in 0..n {
        total += if events {
            cycle.read_4k_events()
        } else {
            cycle.read_4k()
        };
    }
    assert_eq!(total, n * 4096, "a read cycle failed");
    println!("{n} reads, {total} bytes");
}
