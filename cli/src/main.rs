//! `rdio`: serve a directory over RDMA, copy files to and from it, and
//! measure it.
//!
//! Every failure ends the process with a non-zero status and one line on
//! standard error, `rdio: error: ...`: usage errors exit with 2, a file
//! that changed during a transfer with 24, a failed end-to-end
//! verification with 25, everything else with 1. SIGINT or SIGTERM stops a
//! command, removes its partial files (not the `.rdio-part` file of `get
//! --partial`, kept to resume from) and prints `rdio: interrupted by
//! SIGINT` (exit status 130). The statuses are listed in `--help`
//! ([`EXIT_STATUSES`]).

mod access;
mod bench;
mod bench_output;
mod cp;
mod doctor;
mod interrupt;
mod logging;
mod metrics;
mod network;
mod ops;
mod remote;
mod report;
mod serve;
mod shaped;
mod size;
mod transfer;
mod tree;

use anyhow::{Context, Result};
use clap::{ArgAction, Args, Parser, Subcommand};
use network::{Transport, Tuning, require_loopback, seconds, with_connector};
use rdio::capture::Recorder;
use remote::RemotePath;
use size::{MAX_IO_SIZE, MAX_SEND_SIZE, MIN_SEND_SIZE, QUEUE_DEPTHS, Size};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// The exit statuses, as `--help` shows them (and the README's table).
const EXIT_STATUSES: &str = "\
Exit status:
    0    success
    1    failure (one line on standard error: rdio: error: ...)
    2    usage error, found before any work (bad argument, out-of-range size
         or queue depth, a destination in a missing directory)
    24   the file changed during the transfer
    25   end-to-end verification failed: the server's checksum of the file
         differs from the bytes transferred (a download is not kept)
    130  interrupted by SIGINT or SIGTERM (partial files removed)

Output: data goes to standard output only with '-' (get REMOTE -);
summaries, progress and warnings go to standard error; --json prints the
summary as one JSON object on standard output, or on standard error when
the data goes to standard output.";

/// Offload file I/O to a server over RDMA (the LWIO protocol).
#[derive(Debug, Parser)]
#[command(
    name = "rdio",
    version,
    propagate_version = true,
    arg_required_else_help = false,
    after_help = EXIT_STATUSES
)]
struct Cli {
    #[command(flatten)]
    output: OutputArgs,

    /// RDMA transport [default: loopback for cp and bench, which run their
    /// server in-process; fabric for serve, get, put and bench --server].
    /// `verbs` needs an RDMA device and a build with the `verbs` feature;
    /// `cma` reaches a server on this host only, run by the same user.
    #[arg(long, global = true, value_enum)]
    transport: Option<Transport>,

    #[command(subcommand)]
    command: Command,
}

/// Where and how much a command tells (every command takes these).
#[derive(Debug, Args)]
struct OutputArgs {
    /// Print errors only: no summary, progress bar or warnings (and the
    /// log at level error).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Log more on standard error: -v info, -vv debug, -vvv trace (the
    /// tracing filter; without -v or -q, RDIO_LOG or RUST_LOG set it).
    #[arg(short, long, global = true, action = ArgAction::Count)]
    verbose: u8,
    /// Print the summary as JSON, one object per line (cp, get, put: one
    /// per file, with bytes, seconds, rate, transport, checksum, ...;
    /// bench: its rows; doctor: its checks; serve: its address and
    /// identity; conformance: passed and failed; client add: the files
    /// written; --stats: one more, the client's metrics) on
    /// standard output, or on standard error when the data goes to
    /// standard output (get REMOTE -).
    #[arg(long, global = true)]
    json: bool,
    /// Show a progress bar (bytes, rate, ETA) even when standard error is
    /// not a terminal [default: on a terminal only].
    #[arg(long, global = true, overrides_with = "no_progress")]
    progress: bool,
    /// Never show a progress bar.
    #[arg(long, global = true, overrides_with = "progress")]
    no_progress: bool,
}

impl OutputArgs {
    fn options(&self) -> report::Options {
        report::Options {
            quiet: self.quiet,
            json: self.json,
            progress: if self.no_progress {
                report::Progress::Never
            } else if self.progress {
                report::Progress::Always
            } else {
                report::Progress::Auto
            },
        }
    }

    /// The log filter -q or -v ask for (`None`: the default or the
    /// environment's).
    fn log_filter(&self) -> Option<&'static str> {
        match (self.quiet, self.verbose) {
            (true, _) => Some("error"),
            (false, 0) => None,
            (false, 1) => Some("info"),
            (false, 2) => Some("debug"),
            (false, _) => Some("trace"),
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Copy SRC to DST through an rdio server in this process: the server
    /// exports SRC's directory read-only, SRC is read from it by RDMA into
    /// DST and checked against the server's XXH3-128 of SRC (computed while
    /// the data streams). --round-trip (or --root) writes SRC to the
    /// server's root and reads it back instead.
    #[command(after_help = EXIT_STATUSES)]
    Cp(CpArgs),
    /// Measure reads and writes (plain and vectored) over sizes and queue
    /// depths: MB/s, IOPS and latency percentiles (of every request, or of
    /// one in 7 in a measurement of more than 16 Ki requests).
    #[command(after_help = EXIT_STATUSES)]
    Bench(BenchArgs),
    /// Serve a directory to rdio clients until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Download files (or, with -r, directory trees) from an rdio server,
    /// each verified against the server's checksum of it.
    #[command(
        after_help = EXIT_STATUSES,
        override_usage = "rdio get [OPTIONS] REMOTE... [LOCAL]"
    )]
    Get(GetArgs),
    /// Upload files (with -r, directory trees; or standard input) to an
    /// rdio server, each verified against the server's checksum of what it
    /// stored.
    #[command(after_help = EXIT_STATUSES)]
    Put(PutArgs),
    /// List a remote directory (names; `-l` long; `--json`).
    Ls(ops::LsArgs),
    /// Describe a remote path: type, size, permissions, modification time.
    Stat(ops::StatArgs),
    /// Remove a remote file or symlink (`-d`: an empty directory too;
    /// `-r`: a directory and everything in it, symlinks removed as links).
    Rm(ops::RmArgs),
    /// Create a remote directory (`-p`: with its parents).
    Mkdir(ops::MkdirArgs),
    /// Rename or move a remote path on its server (`-n`: never replace).
    Mv(ops::MvArgs),
    /// Check which transports work on this host and why not, with a fix
    /// for each problem; exits 0 when the default transport (fabric, or
    /// --transport) works.
    Doctor(DoctorArgs),
    /// The peer process of `doctor`'s cma check (internal).
    #[command(name = doctor::CMA_PEER_COMMAND, hide = true)]
    DoctorCmaPeer {
        /// The cma endpoint of the `doctor` process.
        endpoint: String,
    },
    /// Check a server against docs/PROTOCOL.md: numbered cases, one line
    /// each, then `N passed, N failed`; exits 1 if any case failed. It
    /// creates files named `conformance-*` in the server's root.
    Conformance(ConformanceArgs),
    /// Manage who may connect to `rdio serve`.
    #[command(subcommand)]
    Client(ClientCommand),
}

#[derive(Debug, Args)]
struct DoctorArgs {
    /// The directory you serve: file leases (zero-copy reads) and openat2
    /// are checked there [default: a temporary directory].
    #[arg(long)]
    root: Option<PathBuf>,
    /// libfabric provider to try a connection over.
    #[arg(long, default_value = "tcp")]
    provider: String,
}

#[derive(Debug, Args)]
struct ConformanceArgs {
    /// The server's side channel, HOST:PORT or HOST (port 7472).
    server: String,
    /// How to reach it: the provider and the side channel's security (TLS
    /// and the credential, as for get and put).
    #[command(flatten)]
    net: NetArgs,
    /// Instead of the cases, record one full session into FILE as JSON
    /// (the transcripts in docs/vectors/).
    #[arg(long, value_name = "FILE")]
    transcript: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum ClientCommand {
    /// Add a client to the server's clients file and write its credential
    /// file, to hand to the user (who passes it with --credential, or puts
    /// it at ~/.config/rdio/credential).
    Add(ClientAddArgs),
}

#[derive(Debug, Args)]
struct ClientAddArgs {
    /// The client's name (1 to 64 ASCII letters, digits or ._-@).
    name: String,
    /// The client may only read: writes, creates and truncates are refused.
    #[arg(long)]
    read_only: bool,
    /// The server's state directory [default: $XDG_STATE_HOME/rdio or
    /// ~/.local/state/rdio].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// The clients file to add to [default: STATE_DIR/clients].
    #[arg(long, value_name = "FILE")]
    clients: Option<PathBuf>,
    /// Where to write the credential [default: NAME.credential].
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct CpArgs {
    /// File to copy.
    src: PathBuf,
    /// Where the copy goes: a file (written beside it under a temporary
    /// name and renamed over it once complete) or a directory to put it
    /// in (under SRC's name).
    dst: PathBuf,
    /// Take the long way: write SRC to the server's root by sends (a
    /// temporary directory, removed afterwards), read it back by RDMA into
    /// DST, and check both directions by XXH3-128.
    #[arg(long)]
    round_trip: bool,
    /// The round trip through DIR, where the server's copy stays (implies
    /// --round-trip).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Bytes per read or write request, 1 to 8MiB (e.g. 256K, 1M).
    #[arg(long, default_value = "1MiB", value_parser = size::ranged(1, MAX_IO_SIZE))]
    io_size: Size,
    /// Requests kept in flight, 1 to 64.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(QUEUE_DEPTHS))]
    queue_depth: u16,
    /// Poll status blocks instead of waiting for completion interrupts.
    #[arg(long)]
    polling: bool,
    /// Run the in-process server on threads of its own (default: inline,
    /// stepped by the client on its own thread).
    #[arg(long)]
    server_threads: bool,
    #[command(flatten)]
    capture: CaptureArgs,
}

/// How a networked client reaches its server.
#[derive(Debug, Args)]
pub struct NetArgs {
    /// libfabric provider for --transport fabric (see `fi_info -l`).
    #[arg(long, default_value = "tcp")]
    provider: String,
    /// Seconds to wait for the server: the side channel's connect and
    /// answers, and the RDMA handshake.
    #[arg(long, default_value = "10", value_parser = seconds)]
    connect_timeout: Duration,
    /// Seconds of silence from the server, with requests outstanding,
    /// after which it is declared dead.
    #[arg(long, default_value = "30", value_parser = seconds)]
    dead_peer_timeout: Duration,
    /// Largest message this client sends or accepts, header included,
    /// 512 to 16MiB [default: 1MiB+4KiB, room for a 1 MiB write in one
    /// send]. The server's own limit wins when smaller; this client's
    /// buffers do not grow with it.
    #[arg(long, value_name = "SIZE", value_parser = size::ranged(MIN_SEND_SIZE, MAX_SEND_SIZE))]
    max_send_size: Option<Size>,
    /// Send every read as its own message. By default, reads submitted
    /// while others are in flight go several to a message, and the server
    /// answers them with one completion interrupt (docs/PROTOCOL.md, "Read
    /// batches"), when it offers that.
    #[arg(long)]
    no_read_batches: bool,
    /// When connecting fails, name the step that failed (pipe connect,
    /// side-channel TLS and client authentication, negotiate, RDMA
    /// connect, RDMA authentication) and what to check.
    #[arg(long)]
    explain: bool,
    /// Clear-text side channel, without TLS (labs only): the server must
    /// run with --insecure too, or the connection is refused.
    #[arg(long)]
    insecure: bool,
    /// Trust only the server whose certificate has this SHA-256
    /// fingerprint (as `rdio serve` prints it) [default: trust on first
    /// use, pinned in ~/.config/rdio/known_servers].
    #[arg(long, value_name = "SHA256:HEX", conflicts_with_all = ["insecure", "ca"])]
    server_fingerprint: Option<rdio::access::Fingerprint>,
    /// Trust servers whose certificate a CA in FILE (PEM) issued for the
    /// server's host name.
    #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
    ca: Option<PathBuf>,
    /// The client credential [default: $XDG_CONFIG_HOME/rdio/credential or
    /// ~/.config/rdio/credential, which `rdio serve` creates for its user].
    #[arg(long, value_name = "FILE")]
    credential: Option<PathBuf>,
}

/// `--capture FILE.pcapng`.
#[derive(Debug, Args)]
struct CaptureArgs {
    /// Record every side-channel frame and RDMA message of this process to
    /// FILE as pcapng (decode with `tshark -X lua_script:dissector/rdio.lua`;
    /// format in docs/CAPTURE.md).
    #[arg(long, value_name = "FILE.pcapng")]
    capture: Option<PathBuf>,
}

/// How `get` and `put` move data.
#[derive(Debug, Args)]
struct ClientArgs {
    #[command(flatten)]
    net: NetArgs,
    /// Bytes per read or write request, 1 to 8MiB (e.g. 256K, 1M).
    #[arg(long, default_value = "1MiB", value_parser = size::ranged(1, MAX_IO_SIZE))]
    io_size: Size,
    /// Requests kept in flight, 1 to 64.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(QUEUE_DEPTHS))]
    queue_depth: u16,
    /// Poll status blocks instead of waiting for completion interrupts.
    #[arg(long)]
    polling: bool,
    /// Do not verify the transfer end to end. By default the client hashes
    /// the bytes as they stream (XXH3-128) and compares the server's
    /// checksum of its file (exit status 25 when they differ).
    #[arg(long)]
    no_verify: bool,
    /// Also print the SHA-256 of the bytes moved (hashing costs about as
    /// much CPU as the transfer itself at ~1 GB/s).
    #[arg(long)]
    sha256: bool,
    /// Print the client's counters at the end (requests by kind and
    /// status, bytes, in flight, credits held, granted, revoked and waited
    /// for, keepalives, violations, latency by kind and size class;
    /// RDIO_STATS_FORMAT=json prints JSON; docs/METRICS.md).
    #[arg(long)]
    stats: bool,
    #[command(flatten)]
    capture: CaptureArgs,
}

impl NetArgs {
    /// `--max-send-size`, if given (within `u32` by its parser's range).
    fn max_send_size(&self) -> Option<u32> {
        self.max_send_size.map(|size| size.0 as u32)
    }
}

impl ClientArgs {
    fn tuning(&self, capture: Option<&Arc<Recorder>>) -> Result<Tuning> {
        Ok(Tuning {
            io_size: u32::try_from(self.io_size.0).context("--io-size is at most 8MiB")?,
            queue_depth: usize::from(self.queue_depth),
            polling: self.polling,
            connect_timeout: self.net.connect_timeout,
            dead_peer_timeout: self.net.dead_peer_timeout,
            max_send_size: self.net.max_send_size(),
            read_batches: !self.net.no_read_batches,
            explain: self.net.explain,
            capture: capture.cloned(),
        })
    }
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// Request sizes, comma separated, each 1 to 8MiB.
    #[arg(long, value_delimiter = ',', default_value = "4K,64K,1M", value_parser = size::ranged(1, MAX_IO_SIZE))]
    sizes: Vec<Size>,
    /// Queue depths, comma separated, each 1 to 64.
    #[arg(long, value_delimiter = ',', default_value = "1,8", value_parser = clap::value_parser!(u16).range(QUEUE_DEPTHS))]
    queue_depths: Vec<u16>,
    /// Bytes moved per measurement, 1 to 64GiB.
    #[arg(long, default_value = "32MiB", value_parser = size::ranged(1, 64 << 30))]
    bytes: Size,
    /// Poll status blocks instead of waiting for completion interrupts.
    #[arg(long)]
    polling: bool,
    /// Measure against the rdio server at HOST:PORT (or HOST, port 7472)
    /// instead of one in this
    /// process.
    #[arg(long)]
    server: Option<String>,
    /// Reads lend the client's registered buffer where the server's RDMA
    /// writes put the data (no copy into the caller's memory) instead of
    /// copying it out; writes send from a lent registered buffer instead of
    /// copying the data into one. Without it the protocol-shaped loops
    /// copy each read out and each write's data in too, as rdio's rows do.
    #[arg(long)]
    in_place: bool,
    /// Run the in-process server on threads of its own (default: inline,
    /// stepped by the client on its own thread).
    #[arg(long, conflicts_with = "server")]
    server_threads: bool,
    /// Operations to measure, comma separated, in this order.
    #[arg(long, value_delimiter = ',', default_value = "read,write,readv,writev")]
    ops: Vec<bench::Op>,
    /// Runs per row: baselines and rdio alternate, each row shows the
    /// median and the range (min-max).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=100))]
    repeat: u16,
    /// Also run the protocol-shaped loops with the server's file I/O, in a
    /// file as large as the bench's under DIR (pick the file system the
    /// server serves from): reads RDMA-written from a leased mapping of
    /// it, write data pwritten into it, through rdio's file layer. Rows
    /// `file_rd`, `file_wr` and the ratio column `w/file`: rdio's overhead
    /// apart from the file system's. Reads at queue depth 2 or more also
    /// get `fbat_rd`: the same loop with requests and notifications batched
    /// as rdio's read batches are (half the depth, 16 at most, to one
    /// request and one immediate; each read's data and status block in
    /// one write), the bound of the plain-loop targets for a server that
    /// reads the file.
    #[arg(long, value_name = "DIR")]
    file_baseline: Option<PathBuf>,
    /// With --server: measure rdio alone, no baseline loops (to profile
    /// rdio's processes by themselves: scripts/cpu-split.sh).
    #[arg(long, requires = "server", conflicts_with = "file_baseline")]
    no_baselines: bool,
    /// Also write every row (baselines and ratios included) to FILE as CSV.
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
    /// Also draw MB/s by request size to FILE as a PNG (needs a TrueType
    /// font: fonts-dejavu-core, or $RDIO_PLOT_FONT).
    #[arg(long, value_name = "FILE.png")]
    plot: Option<PathBuf>,
    /// With --server: the file, under the server's root, that is written
    /// and read (left there afterwards).
    #[arg(long, default_value = "rdio-bench.dat", requires = "server")]
    file: String,
    #[command(flatten)]
    net: NetArgs,
    #[command(flatten)]
    capture: CaptureArgs,
    /// Print the client's counters at the end (requests by kind and
    /// status, bytes, in flight, credits held, granted, revoked and waited
    /// for, keepalives, violations, latency by kind and size class;
    /// RDIO_STATS_FORMAT=json prints JSON; docs/METRICS.md).
    #[arg(long)]
    stats: bool,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Directory to serve; clients cannot reach outside it.
    #[arg(long)]
    root: PathBuf,
    /// Side-channel address to listen on: IP:PORT, HOST:PORT, or an IP or
    /// host name alone for port 7472 (port 0 picks one; the address is
    /// printed). 0.0.0.0 or :: listens on every address; the RDMA endpoint
    /// listens on the same IP address, and clients reach it at the address
    /// they reached the side channel at.
    #[arg(long, value_parser = network::listen_address)]
    listen: SocketAddr,
    /// libfabric provider for --transport fabric (see `fi_info -l`).
    #[arg(long, default_value = "tcp")]
    provider: String,
    /// Port of the RDMA endpoint [default: any free port].
    #[arg(long, default_value_t = 0)]
    rdma_port: u16,
    /// Largest message a client may send, header included, 512 to 16MiB
    /// [default: 1MiB+4KiB, a 1 MiB write in one send]. The memory it
    /// costs: each RDMA connection posts one receive buffer of this size
    /// per credit (--max-credits), 64 × 1MiB+4KiB ≈ 64 MiB of address
    /// space by default. A client asking for less gets less.
    #[arg(long, value_name = "SIZE", value_parser = size::ranged(MIN_SEND_SIZE, MAX_SEND_SIZE))]
    max_send_size: Option<Size>,
    /// Serve the server's counters in OpenMetrics text at
    /// http://ADDR/metrics (port 0 picks one; the address is printed):
    /// totals, and series of their own for the first 32 live connections
    /// (docs/METRICS.md).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    #[command(flatten)]
    capture: CaptureArgs,
    /// Directory of the server's identity (TLS key and certificate,
    /// created on first start) and clients file [default:
    /// $XDG_STATE_HOME/rdio or ~/.local/state/rdio].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// The clients file: who may connect [default: STATE_DIR/clients,
    /// created on first start with an entry for this user].
    #[arg(long, value_name = "FILE")]
    clients: Option<PathBuf>,
    /// Clear-text side channel, without TLS (labs only): clients must pass
    /// --insecure too. Clients still authenticate.
    #[arg(long)]
    insecure: bool,
    /// Export read-only: every write, create and truncate is refused.
    #[arg(long)]
    read_only: bool,
    /// Certificate chain (PEM, leaf first) from a real PKI, instead of the
    /// self-signed identity in STATE_DIR.
    #[arg(
        long,
        value_name = "FILE",
        requires = "key",
        conflicts_with = "insecure"
    )]
    cert: Option<PathBuf>,
    /// The private key (PEM) of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// Accept side channels only from these networks (ADDRESS or
    /// ADDRESS/PREFIX, comma separated or repeated) [default: any].
    #[arg(long, value_delimiter = ',', value_name = "CIDR")]
    allow: Vec<rdio::net::IpNet>,
    /// Most clients (side-channel sessions) at once; more are answered
    /// "busy" and retry within their --connect-timeout.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u16).range(1..=1024))]
    max_sessions: u16,
    /// Most files one client may hold open at once; the open beyond it is
    /// refused with "too many open files for this client" until it closes
    /// one (1 to 4096).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u16).range(1..=4096))]
    max_open_files: u16,
    /// Most credits (requests in flight) one RDMA connection may hold: the
    /// grant at negotiation and every later grant stay within it (1 to
    /// 64).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=64))]
    max_credits: u16,
    /// The credit policy's window: a client whose requests state a
    /// demand keeps about twice it, revoked after MS milliseconds of
    /// using a quarter of its credits or less, granted at once when it
    /// wants more (docs/PROTOCOL.md, "Credit demand"); 0: credits stay at
    /// the grant (1 to 60000, or 0).
    #[arg(long, default_value_t = 20, value_name = "MS", value_parser = clap::value_parser!(u16).range(0..=60_000))]
    credit_window: u16,
    /// End a client's side channel and RDMA connection after SECS seconds
    /// with no open file and no request (the client reports "closed by the
    /// server: idle for N s"); 0: never.
    #[arg(long, default_value_t = 900, value_name = "SECS", value_parser = clap::value_parser!(u32).range(0..=604_800))]
    idle_timeout: u32,
}

/// What `get` and `put` do with trees and several files.
#[derive(Debug, Args)]
struct TreeArgs {
    /// Copy directories and everything in them (nested directories and
    /// empty files included; symlinks, devices, FIFOs and sockets inside
    /// are skipped with a warning naming each).
    #[arg(short = 'r', long)]
    recursive: bool,
    /// Never overwrite an existing destination file: it is left alone, and
    /// the files skipped are named at the end (exit status 0).
    #[arg(short = 'n', long)]
    no_clobber: bool,
    /// Keep each file's and directory's permission bits (rwx for owner,
    /// group, others) and modification time.
    #[arg(short = 'p', long)]
    preserve: bool,
    /// Move at most RATE bytes per second (e.g. 10M: 10 MiB/s), measured
    /// from the start, with bursts of one request (--io-size).
    #[arg(long, value_name = "RATE")]
    bwlimit: Option<Size>,
}

impl TreeArgs {
    fn options(
        &self,
        client: &ClientArgs,
        file: transfer::FileOptions,
    ) -> Result<tree::TreeOptions> {
        if self.bwlimit.is_some_and(|rate| rate.0 == 0) {
            anyhow::bail!("--bwlimit must be at least 1 byte per second");
        }
        Ok(tree::TreeOptions {
            recursive: self.recursive,
            no_clobber: self.no_clobber,
            preserve: self.preserve,
            bwlimit: self.bwlimit.map(|rate| rate.0),
            file,
            stats: client.stats,
        })
    }
}

#[derive(Debug, Args)]
struct GetArgs {
    // The help text is clap's: `[LOCAL]` is its usage notation, not a
    // rustdoc link.
    #[allow(rustdoc::broken_intra_doc_links)]
    /// REMOTE... [LOCAL]: remote files or directories, HOST:PATH (port
    /// 7472) or HOST:PORT:PATH, all on one server; then the local
    /// destination: a file, a directory to put them in (several sources
    /// need an existing one), or '-' for standard output (one file)
    /// [default: the current directory, under the remote names]. A last
    /// argument that reads as HOST:PATH (a colon before any '/') is a
    /// source, as with scp.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<String>,
    /// A remote file that shrinks or grows during the download is kept as
    /// read, with a warning (exit status 0), instead of failing with exit
    /// status 24.
    #[arg(long)]
    allow_changing: bool,
    /// Download into .NAME.rdio-part beside the destination and keep it if
    /// the transfer fails; the next --partial download checks its bytes
    /// against the server's file (SHA-256 on both sides) and appends to
    /// it, or starts over if they differ.
    #[arg(long)]
    partial: bool,
    #[command(flatten)]
    tree: TreeArgs,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Args)]
struct PutArgs {
    /// Local files or directories, or '-' for standard input (read until
    /// it ends; the only source then).
    #[arg(required = true, value_name = "LOCAL")]
    local: Vec<PathBuf>,
    /// Remote destination, HOST:PATH (port 7472) or HOST:PORT:PATH: a
    /// file, or a directory to put them in (several sources need an
    /// existing one; a trailing '/' says it must be one).
    remote: RemotePath,
    /// Write the remote file in place: it is emptied at once, and an
    /// interrupted upload leaves it partial. Without it the server writes a
    /// hidden temporary file and renames it over the destination only once
    /// the whole file arrived, so the old contents stay until then.
    #[arg(long)]
    inplace: bool,
    #[command(flatten)]
    tree: TreeArgs,
    #[command(flatten)]
    client: ClientArgs,
}

fn run(cli: Cli) -> Result<()> {
    let networked = match &cli.command {
        Command::Cp(_) | Command::Client(_) => false,
        Command::Bench(args) => args.server.is_some(),
        Command::Serve(_) | Command::Get(_) | Command::Put(_) | Command::Conformance(_) => true,
        Command::Doctor(_) | Command::DoctorCmaPeer { .. } => true,
        Command::Ls(_) | Command::Stat(_) | Command::Rm(_) | Command::Mkdir(_) | Command::Mv(_) => {
            true
        }
    };
    let transport = cli.transport.unwrap_or(if networked {
        Transport::Fabric
    } else {
        Transport::Loopback
    });
    match cli.command {
        Command::Cp(args) => {
            require_loopback(transport, "cp")?;
            let path = args.capture.capture;
            let capture = network::capture(path.as_deref())?;
            let result = cp::run(&cp::Copy {
                src: args.src,
                dst: args.dst,
                root: args.root,
                round_trip: args.round_trip,
                io_size: args.io_size,
                queue_depth: args.queue_depth,
                polling: args.polling,
                server_threads: args.server_threads,
                capture: capture.clone(),
            });
            let finished = network::finish_capture(capture, path.as_deref());
            result.and(finished)
        }
        Command::Bench(args) => {
            // Both outputs are checked before anything is measured.
            let csv = args
                .csv
                .as_deref()
                .map(|path| bench_output::Pending::create(path, "--csv", ".csv"))
                .transpose()?;
            let plot = args
                .plot
                .as_deref()
                .map(|path| {
                    bench_output::register_font()?;
                    bench_output::Pending::create(path, "--plot", ".png")
                })
                .transpose()?;
            let capture_path = args.capture.capture.clone();
            let capture = network::capture(capture_path.as_deref())?;
            let bench = bench::Bench {
                sizes: args.sizes,
                queue_depths: args.queue_depths,
                bytes: args.bytes,
                polling: args.polling,
                in_place: args.in_place,
                server_threads: args.server_threads,
                ops: args.ops,
                capture: capture.clone(),
                stats: args.stats,
                repeat: usize::from(args.repeat),
                file_baseline: args.file_baseline,
            };
            let results = match args.server {
                None => {
                    require_loopback(transport, "bench")?;
                    let result = bench::run(&bench);
                    network::finish_capture(capture, capture_path.as_deref())?;
                    result?
                }
                Some(server) => {
                    access::set_client_security(&args.net, server_host(&server))?;
                    let server = network::listen_address(&server).map_err(|e| {
                        anyhow::anyhow!(transfer::Usage(format!("invalid --server: {e}")))
                    })?;
                    let mut results = bench::Results::default();
                    let remote = bench::Remote {
                        bench: &bench,
                        server,
                        file: args.file,
                        connect_timeout: args.net.connect_timeout,
                        dead_peer_timeout: args.net.dead_peer_timeout,
                        max_send_size: args.net.max_send_size(),
                        read_batches: !args.net.no_read_batches,
                        explain: args.net.explain,
                        capture: capture.clone(),
                        baseline: match transport {
                            _ if args.no_baselines => bench::Baseline::None,
                            Transport::Fabric => bench::Baseline::Fabric(args.net.provider.clone()),
                            Transport::Cma => bench::Baseline::Cma,
                            Transport::Loopback | Transport::Verbs => bench::Baseline::None,
                        },
                        results: &mut results,
                    };
                    let result = with_connector(
                        transport,
                        &args.net.provider,
                        args.net.connect_timeout,
                        capture.as_ref(),
                        remote,
                    );
                    network::finish_capture(capture, capture_path.as_deref())?;
                    result?;
                    results
                }
            };
            if report::json() {
                bench_output::print_json(&results);
            }
            if let Some(csv) = csv {
                bench_output::write_csv(csv, &results)?;
            }
            if let Some(plot) = plot {
                bench_output::write_plot(plot, &results)?;
            }
            Ok(())
        }
        Command::Conformance(args) => {
            access::set_client_security(&args.net, server_host(&args.server))?;
            rdio_conformance::pipe::use_security(access::client_security()?.clone());
            let server = network::listen_address(&args.server)
                .map_err(|e| anyhow::anyhow!(transfer::Usage(format!("invalid server: {e}"))))?;
            let kind = match transport {
                Transport::Fabric => rdio_conformance::TransportKind::Fabric {
                    provider: args.net.provider,
                },
                Transport::Cma => rdio_conformance::TransportKind::Cma,
                Transport::Loopback | Transport::Verbs => anyhow::bail!(
                    "conformance runs over --transport fabric or cma (the transports that run here)"
                ),
            };
            if let Some(path) = args.transcript {
                let target = rdio_conformance::cases::Target {
                    server,
                    transport: kind,
                };
                let json = rdio_conformance::transcript::record(&target)
                    .map_err(|e| anyhow::anyhow!("recording the session: {e}"))?;
                return std::fs::write(&path, json)
                    .with_context(|| format!("cannot write {}", path.display()));
            }
            // With `--json` the case-by-case report goes to standard
            // error and the summary is one object on standard output.
            let summary = if report::json() {
                let summary = rdio_conformance::run(server, &kind, &mut std::io::stderr().lock())
                    .context("writing the report")?;
                println!(
                    "{}",
                    serde_json::json!({
                        "command": "conformance",
                        "server": server.to_string(),
                        "passed": summary.passed,
                        "failed": summary.failed,
                    })
                );
                summary
            } else {
                rdio_conformance::run(server, &kind, &mut std::io::stdout().lock())
                    .context("writing the report")?
            };
            if summary.failed > 0 {
                anyhow::bail!("{} conformance case(s) failed", summary.failed);
            }
            Ok(())
        }
        Command::Serve(args) => serve::run(&serve::Serve {
            root: args.root,
            listen: args.listen,
            transport,
            provider: args.provider,
            rdma_port: args.rdma_port,
            capture: args.capture.capture,
            metrics: args.metrics,
            limits: serve::Limits {
                max_open_files: usize::from(args.max_open_files),
                max_credits: args.max_credits,
                credit_window: (args.credit_window > 0)
                    .then(|| std::time::Duration::from_millis(u64::from(args.credit_window))),
                max_send_size: args.max_send_size.map(|size| size.0 as u32),
                idle_timeout: (args.idle_timeout > 0)
                    .then(|| std::time::Duration::from_secs(u64::from(args.idle_timeout))),
            },
            access: access::ServeAccess {
                state_dir: args.state_dir,
                clients: args.clients,
                insecure: args.insecure,
                read_only: args.read_only,
                cert: args.cert.zip(args.key),
                allow: args.allow,
                max_sessions: usize::from(args.max_sessions),
            },
        }),
        Command::Client(ClientCommand::Add(args)) => access::add_client(&access::AddClient {
            name: args.name,
            read_only: args.read_only,
            state_dir: args.state_dir,
            clients: args.clients,
            output: args.output,
        }),
        Command::Doctor(args) => doctor::run(&doctor::Doctor {
            root: args.root,
            provider: args.provider,
            default: transport,
        }),
        Command::DoctorCmaPeer { endpoint } => doctor::cma_peer(&endpoint),
        Command::Ls(args) => ops::Op::Ls(args).run(),
        Command::Stat(args) => ops::Op::Stat(args).run(),
        Command::Rm(args) => ops::Op::Rm(args).run(),
        Command::Mkdir(args) => ops::Op::Mkdir(args).run(),
        Command::Mv(args) => ops::Op::Mv(args).run(),
        Command::Get(args) => {
            let (remote, local) = get_paths(&args.paths)?;
            let first = remote.first().context("nothing to get")?;
            access::set_client_security(&args.client.net, &first.host)?;
            let path = args.client.capture.capture.clone();
            let capture = network::capture(path.as_deref())?;
            let file = transfer::FileOptions {
                verify: !args.client.no_verify,
                transport: transport.name(),
                sha256: args.client.sha256,
                allow_changing: args.allow_changing,
                partial: args.partial,
                ..transfer::FileOptions::default()
            };
            let get = tree::Get {
                options: args.tree.options(&args.client, file)?,
                sources: remote,
                local,
                tuning: args.client.tuning(capture.as_ref())?,
            };
            let net = &args.client.net;
            let result = with_connector(
                transport,
                &net.provider,
                net.connect_timeout,
                capture.as_ref(),
                &get,
            );
            drop(get);
            let finished = network::finish_capture(capture, path.as_deref());
            result.and(finished)
        }
        Command::Put(args) => {
            access::set_client_security(&args.client.net, &args.remote.host)?;
            let path = args.client.capture.capture.clone();
            let capture = network::capture(path.as_deref())?;
            let file = transfer::FileOptions {
                verify: !args.client.no_verify,
                transport: transport.name(),
                sha256: args.client.sha256,
                in_place: args.inplace,
                ..transfer::FileOptions::default()
            };
            let put = tree::Put {
                options: args.tree.options(&args.client, file)?,
                sources: args.local,
                remote: args.remote,
                tuning: args.client.tuning(capture.as_ref())?,
            };
            let net = &args.client.net;
            let result = with_connector(
                transport,
                &net.provider,
                net.connect_timeout,
                capture.as_ref(),
                &put,
            );
            drop(put);
            let finished = network::finish_capture(capture, path.as_deref());
            result.and(finished)
        }
    }
}

/// `get`'s `REMOTE... [LOCAL]`: the remote sources and the local
/// destination, if one is named. As with scp, an argument is remote when
/// it reads as `HOST:PATH` (a colon before any '/'); so the last one is
/// the destination unless it is remote too (or it is the only one).
fn get_paths(paths: &[String]) -> Result<(Vec<RemotePath>, Option<PathBuf>)> {
    let remote = |text: &String| {
        text.parse::<RemotePath>()
            .map_err(|e| anyhow::anyhow!(transfer::Usage(format!("invalid remote '{text}': {e}"))))
    };
    let looks_remote = |text: &String| {
        text.find(':')
            .is_some_and(|colon| !text[..colon].contains('/') && colon > 0)
    };
    let (sources, local) = match paths.split_last() {
        None => anyhow::bail!(transfer::Usage("get needs a remote file".to_owned())),
        Some((_, [])) => (paths, None),
        Some((last, _)) if looks_remote(last) => (paths, None),
        Some((last, sources)) => (sources, Some(PathBuf::from(last))),
    };
    let sources = sources.iter().map(remote).collect::<Result<Vec<_>>>()?;
    Ok((sources, local))
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error),
    };
    report::configure(cli.output.options());
    // `serve` writes its access log by default; the others only warnings.
    let default_log = if matches!(cli.command, Command::Serve(_)) {
        "warn,rdio::access=info"
    } else {
        "warn"
    };
    // A bad RDIO_STATS_FORMAT is refused before anything runs, as a bad
    // log format is.
    if let Err(error) =
        logging::init(default_log, cli.output.log_filter()).and(metrics::stats_format().map(drop))
    {
        eprintln!("rdio: error: {}", one_line(&format!("{error:#}")));
        return ExitCode::from(2);
    }
    // `serve` takes SIGINT and SIGTERM its own way (an orderly stop, exit
    // status 0); the others stop, clean up and exit with 130. Either way,
    // before any thread starts and before libfabric is loaded.
    if !matches!(cli.command, Command::Serve(_)) {
        if let Err(error) = interrupt::install() {
            eprintln!("rdio: error: {}", one_line(&format!("{error:#}")));
            return ExitCode::FAILURE;
        }
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            if let Some(signal) = interrupt::signal_of(&error) {
                // Every partial file was removed on the way here.
                interrupt::exit(signal);
            }
            // `{:#}` joins the context chain with ": " on one line.
            eprintln!("rdio: error: {}", one_line(&format!("{error:#}")));
            ExitCode::from(exit_status(&error))
        }
    }
}

/// The host part of a `HOST:PORT` or `HOST` server argument (IPv6 in
/// brackets), as the side channel's TLS names the server.
fn server_host(server: &str) -> &str {
    if let Some(bracketed) = server.strip_prefix('[') {
        return bracketed
            .split_once(']')
            .map_or(bracketed, |(host, _)| host);
    }
    match server.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.parse::<u16>().is_ok() => host,
        _ => server,
    }
}

/// The exit status of a failure: the most specific cause in its chain.
fn exit_status(error: &anyhow::Error) -> u8 {
    let is = |test: fn(&(dyn std::error::Error + 'static)) -> bool| error.chain().any(test);
    if is(|cause| cause.is::<transfer::Usage>()) {
        2
    } else if is(|cause| cause.is::<transfer::VerifyFailed>()) {
        transfer::VerifyFailed::EXIT_CODE
    } else if is(|cause| cause.is::<transfer::Changed>()) {
        transfer::Changed::EXIT_CODE
    } else {
        1
    }
}

/// Help and version go out as clap renders them; real usage errors become
/// the one-line `rdio: error:` form.
fn usage_error(error: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        let _ = error.print();
        return ExitCode::SUCCESS;
    }
    let rendered = error.render().to_string();
    // The message is everything before the first blank line (usage and the
    // "--help" hint follow it).
    let message = rendered.split("\n\n").next().unwrap_or_default();
    let message = message.strip_prefix("error: ").unwrap_or(message);
    eprintln!("rdio: error: {} (see 'rdio --help')", one_line(message));
    ExitCode::from(2)
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_hosts_with_and_without_a_port() {
        assert_eq!(server_host("127.0.0.1:7472"), "127.0.0.1");
        assert_eq!(server_host("example.org"), "example.org");
        assert_eq!(server_host("[::1]:9"), "::1");
        assert_eq!(server_host("::1"), "::1");
    }

    #[test]
    fn exit_statuses_follow_the_cause() {
        let status = |error: anyhow::Error| exit_status(&error.context("outer"));
        assert_eq!(status(anyhow::anyhow!("plain")), 1);
        assert_eq!(status(anyhow::anyhow!(transfer::Usage("u".into()))), 2);
        let changed = transfer::Changed {
            expected: 1,
            got: "2".into(),
        };
        assert_eq!(status(anyhow::anyhow!(changed)), 24);
        let failed = transfer::VerifyFailed { detail: "d".into() };
        assert_eq!(status(anyhow::anyhow!(failed)), 25);
    }
}
