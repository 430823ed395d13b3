//! Runs N 4 KiB read cycles on the core (client + server state machines, no
//! transport, no files). Run it twice under callgrind with different N and
//! divide the difference in instructions by the difference in N: that is the
//! core's cost per read, free of set-up (`scripts/callgrind-core.sh`).
//!
//! `core_cycle N` takes each completion straight from its status block
//! (`Client::take_status_block`); `core_cycle N events` queues it and
//! drains it with `Client::poll_event`, the event path.

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let events = match std::env::args().nth(2).as_deref() {
        None => false,
        Some("events") => true,
        Some(other) => {
            eprintln!("core_cycle: unknown mode {other:?} (usage: core_cycle [N] [events])");
            std::process::exit(2);
        }
    };
    let mut cycle = rdio_benches::Cycle::new();
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
