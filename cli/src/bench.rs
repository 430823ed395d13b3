//! `rdio bench`: throughput and latency of reads and writes, plain and
//! vectored, over request sizes and queue depths, through the in-process
//! server or a remote one (`--server`).
//!
//! Every run also measures a baseline at the same sizes, in the same
//! process and run, and reports rdio's throughput as a ratio of it: for the
//! in-process (loopback) server, a `memcpy` between a buffer as large as
//! the bench file and queue-depth request buffers (the loopback wire is a
//! memory copy); over fabric, a bare
//! `fi_write` loop (for reads, which the server completes by RDMA write) or
//! `fi_send` loop (for writes, which travel in sends) between two libfabric
//! endpoints on 127.0.0.1, same provider, window = queue depth; over cma,
//! a bare `process_vm_writev` loop (`vm_write`, for reads) or Unix-socket
//! write loop (`uds_send`, for writes) into a forked child process.
//!
//! Every run also measures a **protocol-shaped** loop over the same
//! transport (`shape_rd`, `shape_wr`; see [`crate::shaped`]): the transport
//! operations an rdio read or write costs (request send, data write,
//! status write with immediate; data in sends, reply send) without rdio's
//! core and driver, and — unless `--in-place` — each read's data copied
//! out of its slot as rdio's rows copy it into the caller's buffer, and
//! each write's data copied into its slot as rdio's rows copy the caller's
//! buffer into a registered one. Its ratio is rdio's own overhead.
//!
//! Each row is the median of `--repeat` runs (3 by default), alternated
//! per cell: plain baseline, shaped baseline, rdio, then again, so a slow
//! spell of a shared machine hits all three alike; ratios are taken run by
//! run (rdio over the baselines measured just before it) and reported as
//! median and range.

use crate::network::{ClientJob, Tuning, connect};
use crate::shaped::{self, ShapedConfig, ShapedOp};
use crate::size::Size;
use anyhow::{Context, Result, bail};
use rdio::client::{Client, CompletionMode, RemoteFile, Ticket};
use rdio::embedded::{Captured, EmbeddedOptions, Inline, Mode, Threads};
use rdio::files::WriteSegment;
use rdio::net::RdmaConnector;
use rdio_core::wire::OpenFlags;
use rdio_fabric::raw;
use rdio_transport::Transport;
use rdio_transport::baseline::{RawConfig, RawOp, RawResult};
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
    /// Reads lend the client's registered buffer (`Client::wait_in_place`)
    /// instead of copying into the caller's (`Client::wait`), and writes
    /// send from a lent registered buffer (`Client::write_buffer`) instead
    /// of copying the caller's data into one.
    pub in_place: bool,
    /// The in-process server runs on threads of its own
    /// (`rdio::embedded::Threads`) instead of inline in the client's calls
    /// (`rdio::embedded::Inline`).
    pub server_threads: bool,
    /// `--capture`: record the in-process session (the server then runs
    /// on threads, both ends recorded).
    pub capture: Option<std::sync::Arc<rdio::capture::Recorder>>,
    /// `--stats`: print the client's counters at the end.
    pub stats: bool,
    /// The operations to measure, in this order (duplicates are measured
    /// once).
    pub ops: Vec<Op>,
    /// Runs per row, alternating baselines and rdio (`--repeat`).
    pub repeat: usize,
    /// `--file-baseline DIR`: also run the protocol-shaped loops with the
    /// server's file I/O, in a file under this directory
    /// ([`shaped::ShapedFile`]).
    pub file_baseline: Option<std::path::PathBuf>,
}

/// What rdio's throughput is compared against: a plain one-operation
/// loop and a protocol-shaped loop (`crate::shaped`) over the same
/// transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Baseline {
    /// `memcpy` of the request size between the file and queue-depth
    /// request buffers, and the protocol-shaped loops over a loopback pair, inline or with
    /// the server end on a thread (`--server-threads`).
    Loopback { threads: bool },
    /// Raw libfabric `fi_write` / `fi_send` loops over this provider on
    /// 127.0.0.1.
    Fabric(String),
    /// Raw `process_vm_writev` / Unix-socket write loops into a child
    /// process (`rdio_cma::raw`).
    Cma,
    /// No baseline (e.g. `--transport verbs`, which has no raw loop here).
    None,
}

/// The measured operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Op {
    /// A read of one contiguous range.
    Read,
    /// A write of one contiguous range.
    Write,
    /// A vectored read of 4 segments spread over the file.
    #[value(name = "readv")]
    ReadV,
    /// A vectored write of 4 segments spread over the file.
    #[value(name = "writev")]
    WriteV,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::ReadV => "readv",
            Self::WriteV => "writev",
        }
    }

    /// The raw operation that moves this op's data: the server completes
    /// reads by RDMA write, writes travel in sends.
    fn raw(self) -> RawOp {
        match self {
            Self::Read | Self::ReadV => RawOp::Write,
            Self::Write | Self::WriteV => RawOp::Send,
        }
    }
}

/// Median and range of one figure over a cell's repeated runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// The spread of `values` (`None` if there are none).
    pub fn of(values: &[f64]) -> Option<Self> {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let (&min, &max) = (sorted.first()?, sorted.last()?);
        let mid = sorted.len() / 2;
        let median = if sorted.len() % 2 == 0 {
            (sorted[mid - 1] + sorted[mid]) / 2.0
        } else {
            sorted[mid]
        };
        Some(Self { median, min, max })
    }
}

/// One line of the results: an rdio measurement or a baseline, over
/// [`Row::runs`] alternated runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// `read`, `write`, `readv`, `writev`, or the baseline's name
    /// (`memcpy`, `fi_write`, `fi_send`, `vm_write`, `uds_send`, the
    /// protocol-shaped `shape_rd`, `shape_wr`, and with `--file-baseline`
    /// the file-backed `file_rd`, `file_wr` and batched `fbat_rd`).
    pub op: &'static str,
    /// Whether this row is a baseline.
    pub baseline: bool,
    /// Bytes per request.
    pub size: u64,
    /// Requests (or raw operations, or memcpy's buffers) in flight.
    pub depth: Option<u16>,
    /// Runs the figures are the median of.
    pub runs: usize,
    /// Median MB/s, and its range over the runs.
    pub megabytes_per_second: f64,
    pub mbps_range: (f64, f64),
    /// IOPS of the median run.
    pub iops: f64,
    /// Latency percentiles of the median run, where measured (not for raw
    /// loops, which only time the whole stream).
    pub p50: Option<Duration>,
    pub p99: Option<Duration>,
    /// The plain one-operation baseline an rdio row is compared against.
    pub compared_to: Option<&'static str>,
    /// rdio MB/s over that baseline's MB/s, run by run (each rdio run
    /// right after its baselines): median and range (rdio rows only).
    pub ratio: Option<Spread>,
    /// The protocol-shaped baseline an rdio row is compared against.
    pub shaped_to: Option<&'static str>,
    /// rdio MB/s over the protocol-shaped loop's, run by run.
    pub shaped_ratio: Option<Spread>,
    /// The file-backed protocol-shaped baseline (`--file-baseline`).
    pub filed_to: Option<&'static str>,
    /// rdio MB/s over the file-backed protocol-shaped loop's, run by run.
    pub filed_ratio: Option<Spread>,
}

/// A run's rows and what they were measured over.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Results {
    /// `loopback`, or the provider and server (`ofi:tcp to 127.0.0.1:7472`).
    pub transport: String,
    pub rows: Vec<Row>,
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
        if self.ops.is_empty() {
            bail!("no operations given");
        }
        if self.sizes.iter().any(|s| s.0 == 0) {
            bail!("request sizes must be at least 1 byte");
        }
        if self.repeat == 0 {
            bail!("--repeat must be at least 1");
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
pub fn run(bench: &Bench) -> Result<Results> {
    if bench.capture.is_some() {
        run_embedded::<Captured>(bench, "loopback (server threads, captured)")
    } else if bench.server_threads {
        run_embedded::<Threads>(bench, "loopback (server threads)")
    } else {
        run_embedded::<Inline>(bench, "loopback (server inline)")
    }
}

fn run_embedded<M: Mode>(bench: &Bench, over: &str) -> Result<Results> {
    let plan = bench.plan()?;
    let root = tempfile::Builder::new()
        .prefix("rdio-bench-")
        .tempdir()
        .context("cannot create a temporary root")?;
    let _debris = crate::interrupt::Debris::register(root.path());
    let mut options = EmbeddedOptions::default();
    options.client.io_size = plan.largest as u32;
    options.client.queue_depth = usize::from(plan.deepest);
    options.client.mode = bench.mode();
    options.capture = bench.capture.clone();
    let mut pair = M::start(root.path(), options).context("cannot start the in-process server")?;
    let rows = measure_all(
        &mut pair.client,
        bench,
        &plan,
        over,
        "bench.dat",
        &Baseline::Loopback {
            threads: bench.server_threads,
        },
    )?;
    if bench.stats {
        crate::metrics::print_client(pair.client.stats())?;
    }
    pair.finish().context("closing the connection failed")?;
    Ok(Results {
        // The transport; the table's first line also says how the server ran.
        transport: "loopback".to_owned(),
        rows,
    })
}

/// Against a remote server (`bench --server`), in `file` under its root.
#[derive(Debug)]
pub struct Remote<'a> {
    pub bench: &'a Bench,
    pub server: SocketAddr,
    pub file: String,
    pub connect_timeout: Duration,
    pub dead_peer_timeout: Duration,
    pub max_send_size: Option<u32>,
    /// Offer read batches (`--no-read-batches` clears it).
    pub read_batches: bool,
    pub explain: bool,
    pub capture: Option<std::sync::Arc<rdio::capture::Recorder>>,
    pub baseline: Baseline,
    /// Where the results go once measured.
    pub results: &'a mut Results,
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
            max_send_size: self.max_send_size,
            read_batches: self.read_batches,
            explain: self.explain,
            capture: self.capture.clone(),
        };
        let mut client = connect(self.server, &tuning, connector)
            .with_context(|| format!("cannot connect to {}", self.server))?;
        let over = format!("{} to {}", client.provider(), self.server);
        let rows = measure_all(
            &mut client,
            self.bench,
            &plan,
            &over,
            &self.file,
            &self.baseline,
        )?;
        *self.results = Results {
            transport: over,
            rows,
        };
        if self.bench.stats {
            crate::metrics::print_client(client.stats())?;
        }
        client.shutdown().context("closing the connection failed")?;
        Ok(())
    }
}

/// One run of a baseline: its name and what it measured.
struct BaselineRun {
    name: &'static str,
    depth: Option<u16>,
    measured: Measurement,
}

/// The rows of one cell (op, size, depth): each baseline's and rdio's
/// medians over the runs, rdio's ratios paired run by run.
fn cell_rows(op: Op, size: u64, depth: u16, runs: &CellRuns) -> Vec<Row> {
    let CellRuns {
        plain,
        shaped,
        filed,
        batched,
        rdio,
    } = runs;
    let median_run = |runs: &[&Measurement]| -> Option<Measurement> {
        let mut sorted: Vec<&Measurement> = runs.to_vec();
        sorted.sort_by(|a, b| a.megabytes_per_second.total_cmp(&b.megabytes_per_second));
        sorted.get(sorted.len() / 2).map(|m| **m)
    };
    let row = |name: &'static str, baseline: bool, depth: Option<u16>, runs: &[&Measurement]| {
        let mbps: Vec<f64> = runs.iter().map(|m| m.megabytes_per_second).collect();
        let spread = Spread::of(&mbps)?;
        let middle = median_run(runs)?;
        Some(Row {
            op: name,
            baseline,
            size,
            depth,
            runs: runs.len(),
            megabytes_per_second: spread.median,
            mbps_range: (spread.min, spread.max),
            iops: middle.iops,
            p50: middle.p50,
            p99: middle.p99,
            compared_to: None,
            ratio: None,
            shaped_to: None,
            shaped_ratio: None,
            filed_to: None,
            filed_ratio: None,
        })
    };
    let ratios = |baselines: &[BaselineRun]| {
        let ratios: Vec<f64> = rdio
            .iter()
            .zip(baselines)
            .map(|(r, b)| r.megabytes_per_second / b.measured.megabytes_per_second)
            .collect();
        Spread::of(&ratios)
    };
    let mut rows = Vec::new();
    for runs in [plain, shaped, filed, batched] {
        let measured: Vec<&Measurement> = runs.iter().map(|r| &r.measured).collect();
        if let Some(first) = runs.first() {
            rows.extend(row(first.name, true, first.depth, &measured));
        }
    }
    let measured: Vec<&Measurement> = rdio.iter().collect();
    if let Some(mut rdio_row) = row(op.name(), false, Some(depth), &measured) {
        rdio_row.compared_to = plain.first().map(|r| r.name);
        rdio_row.ratio = ratios(plain);
        rdio_row.shaped_to = shaped.first().map(|r| r.name);
        rdio_row.shaped_ratio = ratios(shaped);
        rdio_row.filed_to = filed.first().map(|r| r.name);
        rdio_row.filed_ratio = ratios(filed);
        rows.push(rdio_row);
    }
    rows
}

/// One cell's runs: each baseline's and rdio's, `bench.repeat` of each
/// (the baselines a cell does not run stay empty).
#[derive(Default)]
struct CellRuns {
    /// The plain one-operation loop.
    plain: Vec<BaselineRun>,
    /// The protocol-shaped loop.
    shaped: Vec<BaselineRun>,
    /// The protocol-shaped loop with the server's file I/O.
    filed: Vec<BaselineRun>,
    /// The batched protocol-shaped loop with the server's file I/O.
    batched: Vec<BaselineRun>,
    rdio: Vec<Measurement>,
}

/// Fill `path` through the protocol, then measure every operation, size
/// and depth. Each (op, size, depth) cell runs `bench.repeat` rounds of:
/// the plain raw baseline, the protocol-shaped raw baseline, rdio — so a
/// slow spell of the machine hits all three alike — and prints one row
/// for each, with medians and ranges.
fn measure_all<T: Transport, S: Read + Write>(
    client: &mut Client<T, S>,
    bench: &Bench,
    plan: &Plan,
    over: &str,
    path: &str,
    baseline: &Baseline,
) -> Result<Vec<Row>> {
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
    client.close(file).context("close failed")?;
    // The protocol-shaped loops send what rdio sends: at most this much.
    let max_send = client.negotiated().max_send_size as usize;
    // Their file-backed variant works in a file as large as rdio's.
    let shaped_file = match (&bench.file_baseline, baseline) {
        (Some(dir), Baseline::Loopback { .. } | Baseline::Fabric(_) | Baseline::Cma) => {
            Some(shaped::ShapedFile::create(dir, file_len).with_context(|| {
                format!(
                    "cannot create the file-backed baseline's file under {}",
                    dir.display()
                )
            })?)
        }
        _ => None,
    };

    let mode = if bench.polling {
        "polling"
    } else {
        "interrupt"
    };
    crate::report::table_line!(
        "rdio bench: {} per measurement over {over}, {mode} completions, {}, {} per file; {}; \
         {} alternated run(s) per row, medians, ranges min-max",
        Size(bench.bytes.0),
        if bench.in_place {
            "reads and writes in place"
        } else {
            "reads copied out, writes copied in (the protocol-shaped loops' too)"
        },
        Size(file_len),
        match baseline {
            Baseline::Loopback { .. } =>
                "baselines memcpy and protocol-shaped loopback loops".to_owned(),
            Baseline::Fabric(provider) => format!(
                "baselines raw fi_write/fi_send and protocol-shaped loops over {provider} on 127.0.0.1"
            ),
            Baseline::Cma => "baselines raw process_vm_writev/unix-socket write into a child \
                 process and protocol-shaped cma loops"
                .to_owned(),
            Baseline::None => "no baseline".to_owned(),
        },
        bench.repeat,
    );
    if let (Some(dir), Some(_)) = (&bench.file_baseline, &shaped_file) {
        crate::report::table_line!(
            "file-backed protocol-shaped loops (file_rd, file_wr; ratio w/file): the server's \
             reads from a leased mapping of a {} file under {}, write data pwritten into it; \
             fbat_rd: file_rd batched as rdio's read batches (half the depth, 16 at most, to a \
             request and an immediate; data and status block in one write), the plain-loop bound",
            Size(file_len),
            dir.display()
        );
    }
    crate::report::table_line!(
        "{:<8} {:>10} {:>4} {:>10} {:>10} {:>10} {:>10} {:>7} {:>11} {:>7} {:>11} {:>7} {:>15}",
        "op",
        "size",
        "qd",
        "MB/s",
        "IOPS",
        "p50 µs",
        "p99 µs",
        "ratio",
        "range",
        "shaped",
        "range",
        "w/file",
        "MB/s range"
    );
    let mut rows = Vec::new();
    for (i, &op) in bench.ops.iter().enumerate() {
        if bench.ops[..i].contains(&op) {
            continue;
        }
        // Reads through a read-only handle, as `rdio get` does: the server
        // may then serve them straight from the file's mapping (zero-copy
        // reads need a read lease, which no writable handle may coexist
        // with); writes through a read-write one.
        let flags = match op {
            Op::Read | Op::ReadV => OpenFlags::READ,
            Op::Write | Op::WriteV => OpenFlags::READ | OpenFlags::WRITE,
        };
        let file = client
            .open(path, flags)
            .with_context(|| format!("cannot open the bench file {path}"))?;
        for size in &bench.sizes {
            for &depth in &bench.queue_depths {
                // Between measurements: SIGINT/SIGTERM stop the bench here
                // (its temporary root goes with the drops on the way out).
                crate::interrupt::check()?;
                let mut runs = CellRuns::default();
                let shaped = |file, batch| {
                    let variant = Variant { file, batch };
                    measure_shaped(baseline, op, size.0, depth, bench, max_send, variant)
                };
                for _ in 0..bench.repeat {
                    runs.plain
                        .extend(measure_plain(baseline, op, size.0, depth, bench, file_len)?);
                    runs.shaped.extend(shaped(None, 1)?);
                    if let Some(file) = &shaped_file {
                        runs.filed.extend(shaped(Some(file), 1)?);
                        // The bound of the plain-loop targets: requests and
                        // notifications batched as rdio batches them (up to
                        // half the depth, 16 at most), the file's data.
                        if op == Op::Read && depth >= 2 {
                            let batch = (usize::from(depth) / 2).clamp(2, 16);
                            runs.batched.extend(shaped(Some(file), batch)?);
                        }
                    }
                    let result = measure(
                        client,
                        &file,
                        op,
                        size.0 as usize,
                        usize::from(depth),
                        bench,
                        file_len,
                    )
                    .with_context(|| {
                        format!(
                            "{} of {} at queue depth {depth} failed",
                            op.name(),
                            Size(size.0)
                        )
                    })?;
                    runs.rdio.push(result);
                }
                for row in cell_rows(op, size.0, depth, &runs) {
                    print_row(&row);
                    rows.push(row);
                }
            }
        }
        client.close(file).context("close failed")?;
    }
    Ok(rows)
}

fn print_row(row: &Row) {
    let depth = row.depth.map_or("-".to_owned(), |d| d.to_string());
    let latency = |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{:.1}", micros(d)));
    let median = |s: Option<Spread>| s.map_or("-".to_owned(), |s| format!("{:.3}", s.median));
    let range =
        |s: Option<Spread>| s.map_or("-".to_owned(), |s| format!("{:.2}-{:.2}", s.min, s.max));
    crate::report::table_line!(
        "{:<8} {:>10} {:>4} {:>10.1} {:>10.0} {:>10} {:>10} {:>7} {:>11} {:>7} {:>11} {:>7} {:>15}",
        row.op,
        Size(row.size).to_string(),
        depth,
        row.megabytes_per_second,
        row.iops,
        latency(row.p50),
        latency(row.p99),
        median(row.ratio),
        range(row.ratio),
        median(row.shaped_ratio),
        range(row.shaped_ratio),
        median(row.filed_ratio),
        format!("{:.0}-{:.0}", row.mbps_range.0, row.mbps_range.1),
    );
}

/// A raw baseline loop of `size`-byte operations, `depth` in flight, moving
/// at least `total` bytes (as an rdio row does).
fn raw_config(op: RawOp, size: u64, depth: u16, total: u64) -> RawConfig {
    RawConfig {
        op,
        size: size as usize,
        count: total.div_ceil(size).max(1) as usize,
        window: usize::from(depth),
    }
}

/// What a raw loop run measured (it times only the whole stream: no
/// percentiles).
fn raw_measurement(result: &RawResult) -> Measurement {
    Measurement {
        megabytes_per_second: result.bytes_per_sec() / 1e6,
        iops: result.ops_per_sec(),
        p50: None,
        p99: None,
    }
}

/// One run of the plain one-operation baseline of `op` (none without a
/// baseline): as many bytes as an rdio run moves.
fn measure_plain(
    baseline: &Baseline,
    op: Op,
    size: u64,
    depth: u16,
    bench: &Bench,
    file_len: u64,
) -> Result<Option<BaselineRun>> {
    let total = bench.bytes.0;
    let raw = op.raw();
    let run = match baseline {
        Baseline::Loopback { .. } => BaselineRun {
            name: "memcpy",
            depth: Some(depth),
            measured: measure_memcpy(raw, size as usize, usize::from(depth), total, file_len),
        },
        Baseline::Fabric(provider) => {
            let name = match raw {
                RawOp::Write => "fi_write",
                RawOp::Send => "fi_send",
            };
            let result =
                raw::run(provider, raw_config(raw, size, depth, total)).with_context(|| {
                    format!(
                        "the {name} baseline of {} at window {depth} over {provider} failed",
                        Size(size)
                    )
                })?;
            BaselineRun {
                name,
                depth: Some(depth),
                measured: raw_measurement(&result),
            }
        }
        Baseline::Cma => {
            let name = match raw {
                RawOp::Write => "vm_write",
                RawOp::Send => "uds_send",
            };
            let result =
                rdio_cma::raw::run(raw_config(raw, size, depth, total)).with_context(|| {
                    format!(
                        "the {name} baseline of {} at window {depth} failed",
                        Size(size)
                    )
                })?;
            BaselineRun {
                name,
                depth: Some(depth),
                measured: raw_measurement(&result),
            }
        }
        Baseline::None => return Ok(None),
    };
    Ok(Some(run))
}

/// Which protocol-shaped loop [`measure_shaped`] runs: with the server's
/// file I/O in `file`, and `batch` reads to a request and a notification
/// (1: rdio's `Read`, one each).
#[derive(Clone, Copy)]
struct Variant<'a> {
    file: Option<&'a std::sync::Arc<shaped::ShapedFile>>,
    batch: usize,
}

/// One run of the protocol-shaped baseline of `op` over the bench's
/// transport (none without a baseline): as many bytes as an rdio run.
fn measure_shaped(
    baseline: &Baseline,
    op: Op,
    size: u64,
    depth: u16,
    bench: &Bench,
    max_send: usize,
    variant: Variant<'_>,
) -> Result<Option<BaselineRun>> {
    let Variant { file, batch } = variant;
    let (shape, name) = match (op.raw(), file.is_some(), batch > 1) {
        (RawOp::Write, false, false) => (ShapedOp::Read, "shape_rd"),
        (RawOp::Write, false, true) => (ShapedOp::Read, "bat_rd"),
        (RawOp::Send, false, _) => (ShapedOp::Write, "shape_wr"),
        (RawOp::Write, true, false) => (ShapedOp::Read, "file_rd"),
        (RawOp::Write, true, true) => (ShapedOp::Read, "fbat_rd"),
        (RawOp::Send, true, _) => (ShapedOp::Write, "file_wr"),
    };
    let file = file.cloned();
    let config = ShapedConfig {
        op: shape,
        size: size as usize,
        count: bench.bytes.0.div_ceil(size).max(1) as usize,
        depth: usize::from(depth),
        max_send,
        polling: bench.polling,
        batch,
        // Copied-out rdio reads and copied-in rdio writes are compared
        // with loops that copy too.
        copy_out: !bench.in_place,
        copy_in: !bench.in_place,
    };
    let elapsed = match baseline {
        Baseline::Loopback { threads } => shaped::run_loopback(config, *threads, file),
        Baseline::Fabric(provider) => shaped::run_fabric(provider, config, file),
        Baseline::Cma => shaped::run_cma(config, file),
        Baseline::None => return Ok(None),
    }
    .with_context(|| {
        format!(
            "the {name} baseline of {} {} at depth {depth} failed",
            op.name(),
            Size(size)
        )
    })?;
    let seconds = elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
    Ok(Some(BaselineRun {
        name,
        depth: Some(depth),
        measured: Measurement {
            megabytes_per_second: (config.count as u64 * size) as f64 / seconds / 1e6,
            iops: config.count as f64 / seconds,
            p50: None,
            p99: None,
        },
    }))
}

/// `memcpy` of `size` bytes at a time between a buffer of `file_len` bytes
/// (the bench's file), walked as an rdio row walks the file, and `depth`
/// buffers of `size` bytes used in turn (the client's registered slots, one
/// per request in flight): from the file into the slots for reads
/// (`RawOp::Write`: what a loopback read moves), the other way for writes.
/// So the baseline touches the memory rdio's one copy on the wire touches —
/// a file-sized stream from or to DRAM and a working set of queue-depth
/// buffers — not two file-sized streams (which halved it against a
/// cache-resident destination). Until `total` bytes are copied. Both
/// buffers are touched first (no page faults in the timing, as rdio's
/// registered buffers are resident); throughput is timed over the whole
/// loop, then latencies copy by copy in a second pass, so reading the clock
/// does not count against small sizes.
fn measure_memcpy(op: RawOp, size: usize, depth: usize, total: u64, file_len: u64) -> Measurement {
    let len = (file_len as usize).max(size);
    let mut file: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let mut slots = vec![1u8; size * depth.max(1)];
    let count = total.div_ceil(size as u64).max(1);
    let places = (len / size).max(1);
    let in_flight = depth.max(1);
    let mut copy =
        |i: u64| {
            let at = (i as usize % places) * size;
            let slot = (i as usize % in_flight) * size;
            match op {
                RawOp::Write => slots[slot..slot + size]
                    .copy_from_slice(std::hint::black_box(&file[at..at + size])),
                RawOp::Send => file[at..at + size]
                    .copy_from_slice(std::hint::black_box(&slots[slot..slot + size])),
            }
            std::hint::black_box((&mut slots, &mut file));
        };
    let started = Instant::now();
    for i in 0..count {
        copy(i);
    }
    let elapsed = started.elapsed().as_secs_f64().max(f64::MIN_POSITIVE);
    let latencies = (0..count)
        .map(|i| {
            let copy_started = Instant::now();
            copy(i);
            copy_started.elapsed()
        })
        .collect();
    summarize(latencies, count, size, elapsed)
}

fn summarize(mut latencies: Vec<Duration>, count: u64, size: usize, elapsed: f64) -> Measurement {
    latencies.sort_unstable();
    let percentile = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    Measurement {
        megabytes_per_second: (count * size as u64) as f64 / elapsed / 1e6,
        iops: count as f64 / elapsed,
        p50: Some(percentile(0.50)),
        p99: Some(percentile(0.99)),
    }
}

#[derive(Clone, Copy)]
struct Measurement {
    megabytes_per_second: f64,
    iops: f64,
    p50: Option<Duration>,
    p99: Option<Duration>,
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Measurements of more requests than this time one request in
/// [`TIMED_EVERY`] for the latency columns, not each one.
const TIME_ALL_UP_TO: u64 = 16 * 1024;

/// One request in this many is timed in a long measurement: a prime, so
/// the timed ones fall on every position of the power-of-two queue depths
/// and read batches in turn, not always on the same one.
const TIMED_EVERY: u64 = 7;

/// Run `op` requests of `size` bytes, `depth` in flight, until `bench.bytes`
/// bytes moved; offsets walk the file so every request touches new data.
///
/// Throughput is timed over the whole loop. Latency is taken from before
/// the submitting call (the copy into a slot and the transport's posts
/// inside it included) to completion for every request of a measurement up to
/// [`TIME_ALL_UP_TO`] requests and for one in [`TIMED_EVERY`] above (still
/// over 2,300 of them): a clock read at submission and one at completion
/// cost 38 ns a request here (about 5 % of a 4 KiB loopback read), which
/// no baseline row pays — the memcpy loop times its copies in a pass of
/// their own for that reason, the raw and shaped loops time none.
fn measure<T: Transport, S: Read + Write>(
    client: &mut Client<T, S>,
    file: &RemoteFile,
    op: Op,
    size: usize,
    depth: usize,
    bench: &Bench,
    file_len: u64,
) -> Result<Measurement> {
    let total = bench.bytes.0;
    let count = total.div_ceil(size as u64).max(1);
    let slots = file_len / size as u64;
    let data: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
    let mut scratch = vec![0u8; size];
    let every = if count > TIME_ALL_UP_TO {
        TIMED_EVERY
    } else {
        1
    };
    let mut in_flight: VecDeque<(Ticket, Option<Instant>)> = VecDeque::with_capacity(depth);
    let mut latencies = Vec::with_capacity(count.div_ceil(every) as usize);
    let started = Instant::now();
    let mut issued = 0u64;
    while issued < count || !in_flight.is_empty() {
        while issued < count && in_flight.len() < depth {
            let offset = (issued % slots.max(1)) * size as u64;
            // Before the submission, which may do much of the I/O's work:
            // the copy into a slot, and fabric tcp's whole 1 MiB `sendmsg`.
            let timed = (issued % every == 0).then(Instant::now);
            let ticket = if bench.in_place && op == Op::Write {
                // The data is produced where it is sent from: the bench
                // stamps one byte (a producer would fill the buffer) and
                // submits it, no copy.
                let mut buffer = client.write_buffer(size)?;
                if let Some(first) = buffer.first_mut() {
                    *first = issued as u8;
                }
                buffer.submit(file, offset)?
            } else {
                submit(client, file, op, offset, &data, file_len)?
            };
            in_flight.push_back((ticket, timed));
            issued += 1;
        }
        if let Some((ticket, submitted)) = in_flight.pop_front() {
            if bench.in_place && matches!(op, Op::Read | Op::ReadV) {
                // The bytes stay where the server wrote them; look at them
                // so the read is not optimised into nothing.
                let view = client.wait_in_place(ticket)?;
                std::hint::black_box(view.first());
            } else {
                client.wait(ticket, &mut scratch)?;
            }
            if let Some(submitted) = submitted {
                latencies.push(submitted.elapsed());
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64().max(f64::MIN_POSITIVE);
    Ok(summarize(latencies, count, size, elapsed))
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
