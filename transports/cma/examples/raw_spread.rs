//! How steady the raw cma baselines are: runs a loop `runs` times and
//! prints every run's MB/s by the wall clock and per CPU-second spent (both
//! processes), with the context switches and page faults the run cost
//! (from `getrusage`, this process and its reaped children), to tell
//! scheduling from memory effects.
//!
//! Usage: `cargo run --release -p rdio-cma --example raw_spread -- [send|write] [size] [runs] [bytes]`
//! (defaults: `send`, 4096, 8, 32 MiB). Run it under `taskset -c 0` to put
//! both processes on one CPU, or unpinned to let the scheduler place them.

use rdio_cma::raw::{self, RawConfig, RawOp};

/// (voluntary, involuntary context switches, minor faults, CPU seconds)
/// so far, of this process plus its reaped children.
fn usage() -> (i64, i64, i64, f64) {
    let mut total = (0, 0, 0, 0.0);
    for who in [libc::RUSAGE_SELF, libc::RUSAGE_CHILDREN] {
        // SAFETY: getrusage fills the struct it is given.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut usage) };
        total.0 += usage.ru_nvcsw;
        total.1 += usage.ru_nivcsw;
        total.2 += usage.ru_minflt;
        for time in [usage.ru_utime, usage.ru_stime] {
            total.3 += time.tv_sec as f64 + time.tv_usec as f64 / 1e6;
        }
    }
    total
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let op = match args.next().as_deref() {
        None | Some("send") => RawOp::Send,
        Some("write") => RawOp::Write,
        Some(other) => return Err(format!("unknown op {other}: send or write").into()),
    };
    let size: usize = args.next().map(|v| v.parse()).transpose()?.unwrap_or(4096);
    let runs: usize = args.next().map(|v| v.parse()).transpose()?.unwrap_or(8);
    let bytes: usize = args
        .next()
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(32 << 20);
    let config = RawConfig {
        op,
        size,
        count: (bytes / size).max(1),
        window: 1,
    };
    println!("{op:?} {size} B x {}, {runs} runs", config.count);
    for run in 0..runs {
        let before = usage();
        let result = raw::run(config)?;
        let after = usage();
        let cpu = after.3 - before.3;
        println!(
            "run {run}: {:>8.1} MB/s wall, {:>8.1} MB per CPU-second ({:.0}% of one CPU busy)   \
             voluntary cs {:>5}  involuntary cs {:>5}  minor faults {:>5}",
            result.bytes_per_sec() / 1e6,
            result.bytes() as f64 / cpu.max(f64::MIN_POSITIVE) / 1e6,
            cpu / result.elapsed.as_secs_f64() * 100.0,
            after.0 - before.0,
            after.1 - before.1,
            after.2 - before.2,
        );
    }
    Ok(())
}
