//! `rdio bench`: throughput and latency of reads and writes, plain and
//! vectored, over request sizes and queue depths, through the in-process
//! server or a remote one (`--server`).

use crate::network::{ClientJob, Tuning, connect};
use crate::size::Size;
use anyhow::{Context, Result, bail};
use rdio::client::{Client, CompletionMode, RemoteFile, Ticket};
use rdio::embedded::{Embedded, EmbeddedOptions};
use rdio::files::WriteSegment;
use rdio::net::RdmaConnector;
use rdio_core::wire::OpenFlags;
use rdio_transport::Transport;
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// What `bench` needs from the command line.
#[derive(Debug)]
pub struct Bench {
    pub sizes: Vec<Size>,
    pub queue_depths: Vec<u16>,
    pub bytes: Size,
    pub polling: bool,
}

/// The measured operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Read,
    Write,
    /// A vectored read of 4 segments spread over the file.
    ReadV,
    /// A vectored write of 4 segments spread over the file.
    WriteV,
}

impl Op {
    const ALL: [Self; 4] = [Self::Read, Self::Write, Self::ReadV, Self::WriteV];

    fn name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::ReadV => "readv",
            Self::WriteV => "writev",
        }
    }
}

/// Segments per vectored request.
const SEGMENTS: usize = 4;

/// Request-size and depth limits of a run, and the file it works in.
struct Plan {
    largest: u64,
    deepest: u16,
    file_len: u64,
}

impl Bench {
    fn plan(&self) -> Result<Plan> {
        let largest = self
            .sizes
            .iter()
            .map(|s| s.0)
            .max()
            .context("no sizes given")?;
        let deepest = self
            .queue_depths
            .iter()
            .copied()
            .max()
            .context("no queue depths given")?;
        if self.sizes.iter().any(|s| s.0 == 0) {
            bail!("request sizes must be at least 1 byte");
        }
        u32::try_from(largest).context("sizes must be below 4 GiB")?;
        Ok(Plan {
            largest,
            deepest,
            file_len: self.bytes.0.max(largest),
        })
    }

    fn mode(&self) -> CompletionMode {
        if self.polling {
            CompletionMode::Polling
        } else {
            CompletionMode::Interrupt
        }
    }
}

/// Against a server in this process, over the loopback transport.
pub fn run(bench: &Bench) -> Result<()> {
    let plan = bench.plan()?;
    let root = tempfile::Builder::new()
        .prefix("rdio-bench-")
        .tempdir()
        .context("cannot create a temporary root")?;
    let mut options = EmbeddedOptions::default();
    options.client.io_size = plan.largest as u32;
    options.client.queue_depth = usize::from(plan.deepest);
    options.client.mode = bench.mode();
    let mut pair =
        Embedded::start(root.path(), options).context("cannot start the in-process server")?;
    measure_all(&mut pair.client, bench, &plan, "loopback", "bench.dat")?;
    pair.finish().context("closing the connection failed")?;
    Ok(())
}

/// Against a remote server (`bench --server`), in `file` under its root.
#[derive(Debug)]
pub struct Remote<'a> {
    pub bench: &'a Bench,
    pub server: SocketAddr,
    pub file: String,
    pub connect_timeout: Duration,
    pub dead_peer_timeout: Duration,
}

impl ClientJob for Remote<'_> {
    fn run<C: RdmaConnector>(self, connector: &C) -> Result<()> {
        let plan = self.bench.plan()?;
        let tuning = Tuning {
            io_size: plan.largest as u32,
            queue_depth: usize::from(plan.deepest),
            polling: self.bench.polling,
            connect_timeout: self.connect_timeout,
            dead_peer_timeout: self.dead_peer_timeout,
        };
        let mut client = connect(self.server, tuning, connector)
            .with_context(|| format!("cannot connect to {}", self.server))?;
        let over = format!("{} to {}", client.provider(), self.server);
        measure_all(&mut client, self.bench, &plan, &over, &self.file)?;
        client.shutdown().context("closing the connection failed")?;
        Ok(())
    }
}

/// Fill `path` through the protocol, then measure every operation, size
/// and depth, one table row each.
fn measure_all<T: Transport, S: Read + Write>(
    client: &mut Client<T, S>,
    bench: &Bench,
    plan: &Plan,
    over: &str,
    path: &str,
) -> Result<()> {
    let file_len = plan.file_len;
    let flags = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE;
    let file = client
        .open(path, flags)
        .with_context(|| format!("cannot create the bench file {path}"))?;
    // Fill the file so reads find data, through the protocol itself.
    let fill: Vec<u8> = (0..plan.largest.min(8 << 20))
        .map(|i| (i % 251) as u8)
        .collect();
    let mut offset = 0;
    while offset < file_len {
        let n = fill.len().min((file_len - offset) as usize);
        client
            .write_at(&file, offset, &fill[..n])
            .context("filling the bench file failed")?;
        offset += n as u64;
    }

    let mode = if bench.polling {
        "polling"
    } else {
        "interrupt"
    };
    println!(
        "rdio bench: {} per measurement over {over}, {mode} completions, {} per file",
        Size(bench.bytes.0),
        Size(file_len)
    );
    println!(
        "{:<7} {:>10} {:>4} {:>10} {:>10} {:>10} {:>10}",
        "op", "size", "qd", "MB/s", "IOPS", "p50 µs", "p99 µs"
    );
    for op in Op::ALL {
        for size in &bench.sizes {
            for &depth in &bench.queue_depths {
                let result = measure(
                    client,
                    &file,
                    op,
                    size.0 as usize,
                    usize::from(depth),
                    bench.bytes.0,
                    file_len,
                )
                .with_context(|| {
                    format!(
                        "{} of {} at queue depth {depth} failed",
                        op.name(),
                        Size(size.0)
                    )
                })?;
                println!(
                    "{:<7} {:>10} {:>4} {:>10.1} {:>10.0} {:>10.1} {:>10.1}",
                    op.name(),
                    Size(size.0).to_string(),
                    depth,
                    result.megabytes_per_second,
                    result.iops,
                    micros(result.p50),
                    micros(result.p99)
                );
            }
        }
    }
    client.close(file).context("close failed")?;
    Ok(())
}

struct Measurement {
    megabytes_per_second: f64,
    iops: f64,
    p50: Duration,
    p99: Duration,
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Run `op` requests of `size` bytes, `depth` in flight, until `total`
/// bytes moved; offsets walk the file so every request touches new data.
fn measure<T: Transport, S: Read + Write>(
    client: &mut Client<T, S>,
    file: &RemoteFile,
    op: Op,
    size: usize,
    depth: usize,
    total: u64,
    file_len: u64,
) -> Result<Measurement> {
    let count = total.div_ceil(size as u64).max(1);
    let slots = file_len / size as u64;
    let data: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
    let mut scratch = vec![0u8; size];
    let mut in_flight: VecDeque<(Ticket, Instant)> = VecDeque::with_capacity(depth);
    let mut latencies = Vec::with_capacity(count as usize);
    let started = Instant::now();
    let mut issued = 0u64;
    while issued < count || !in_flight.is_empty() {
        while issued < count && in_flight.len() < depth {
            let offset = (issued % slots.max(1)) * size as u64;
            let ticket = submit(client, file, op, offset, &data, file_len)?;
            in_flight.push_back((ticket, Instant::now()));
            issued += 1;
        }
        if let Some((ticket, submitted)) = in_flight.pop_front() {
            client.wait(ticket, &mut scratch)?;
            latencies.push(submitted.elapsed());
        }
    }
    let elapsed = started.elapsed().as_secs_f64().max(f64::MIN_POSITIVE);
    latencies.sort_unstable();
    let percentile = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    Ok(Measurement {
        megabytes_per_second: (count * size as u64) as f64 / elapsed / 1e6,
        iops: count as f64 / elapsed,
        p50: percentile(0.50),
        p99: percentile(0.99),
    })
}

fn submit<T: Transport, S: Read + Write>(
    client: &mut Client<T, S>,
    file: &RemoteFile,
    op: Op,
    offset: u64,
    data: &[u8],
    file_len: u64,
) -> Result<Ticket> {
    let size = data.len();
    // Vectored requests split the size into segments a quarter of the file
    // apart (one segment when the size is smaller than the segment count).
    let parts = if size >= SEGMENTS { SEGMENTS } else { 1 };
    let part = size / parts;
    let stride = (file_len / parts as u64).max(1);
    let segment_offset =
        |i: usize| (offset + i as u64 * stride) % file_len.saturating_sub(part as u64).max(1);
    let ticket = match op {
        Op::Read => client.submit_read(file, offset, size)?,
        Op::Write => client.submit_write(file, offset, data)?,
        Op::ReadV => {
            let segments: Vec<(u64, usize)> = (0..parts)
                .map(|i| {
                    (
                        segment_offset(i),
                        if i + 1 == parts {
                            size - part * i
                        } else {
                            part
                        },
                    )
                })
                .collect();
            client.submit_read_vectored(file, &segments)?
        }
        Op::WriteV => {
            let segments: Vec<WriteSegment<'_>> = (0..parts)
                .map(|i| {
                    let end = if i + 1 == parts { size } else { part * (i + 1) };
                    WriteSegment {
                        offset: segment_offset(i),
                        data: &data[part * i..end],
                    }
                })
                .collect();
            client.submit_write_vectored(file, &segments)?
        }
    };
    Ok(ticket)
}
