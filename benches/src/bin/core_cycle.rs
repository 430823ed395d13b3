//! Runs N 4 KiB read cycles on the core (client + server state machines, no
//! transport, no files). Run it twice under callgrind with different N and
//! divide the difference in instructions by the difference in N: that is the
//! core's cost per read, free of set-up (`scripts/callgrind-core.sh`).

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let mut cycle = rdio_benches::Cycle::new();
    let mut total = 0u64;
    for _ in 0..n {
        total += cycle.read_4k();
    }
    assert_eq!(total, n * 4096, "a read cycle failed");
    println!("{n} reads, {total} bytes");
}
