//! Measure the raw libfabric baseline (`fi_write` and `fi_send` loops over
//! 127.0.0.1) that rdio's throughput is reported against.
//!
//! Usage: `cargo run --release -p rdio-fabric --example raw_baseline -- [provider] [count-bytes]`
//! (defaults: `tcp`, 1 GiB per row).

use rdio_fabric::raw::{self, RawConfig, RawOp};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let provider = args
        .next()
        .unwrap_or_else(|| rdio_fabric::DEFAULT_PROVIDER.to_owned());
    let volume: usize = args
        .next()
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(1 << 30);
    println!("provider {provider}, {volume} bytes per row");
    for op in [RawOp::Write, RawOp::Send] {
        for size in [4 << 10, 64 << 10, 1 << 20] {
            let config = RawConfig {
                op,
                size,
                count: (volume / size).max(1),
                window: 64,
            };
            let result = raw::run(&provider, config)?;
            println!(
                "{op:?} {size:>8} B x {:>7}: {:>9.1} MiB/s ({:.3} s)",
                config.count,
                result.bytes_per_sec() / f64::from(1 << 20),
                result.elapsed.as_secs_f64()
            );
        }
    }
    Ok(())
}
