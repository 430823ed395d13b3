//! `rdio`: copy files through an rdio server and measure it.
//!
//! Every failure ends the process with a non-zero status and one line on
//! standard error, `rdio: error: ...`: usage errors exit with 2, everything
//! else with 1.

mod bench;
mod cp;
mod remote;
mod size;

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};
use remote::RemotePath;
use size::Size;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Offload file I/O to a server over RDMA (the LWIO protocol).
#[derive(Debug, Parser)]
#[command(
    name = "rdio",
    version,
    propagate_version = true,
    arg_required_else_help = false
)]
struct Cli {
    /// RDMA transport. `loopback` connects an in-process server through
    /// memory; `verbs` (ibverbs) and `fabric` (libfabric) reach a remote one.
    #[arg(long, global = true, value_enum, default_value_t = Transport::Loopback)]
    transport: Transport,

    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Transport {
    /// In-memory reliable connection to a server in this process.
    Loopback,
    /// ibverbs + rdma_cm (needs RDMA hardware or rxe/siw).
    Verbs,
    /// libfabric FI_EP_MSG endpoints.
    Fabric,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Copy SRC to DST through an rdio server: SRC is written to the
    /// server's root, read back into DST, and both are checked by SHA-256.
    Cp(CpArgs),
    /// Measure reads and writes (plain and vectored) over sizes and queue
    /// depths: MB/s, IOPS and latency percentiles.
    Bench(BenchArgs),
    /// Serve a directory to rdio clients.
    Serve(ServeArgs),
    /// Download a file from an rdio server.
    Get(GetArgs),
    /// Upload a file to an rdio server.
    Put(PutArgs),
}

#[derive(Debug, Args)]
struct CpArgs {
    /// File to copy.
    src: PathBuf,
    /// Where the copy goes (created or truncated).
    dst: PathBuf,
    /// Directory the in-process server serves [default: a temporary
    /// directory, removed afterwards].
    #[arg(long)]
    root: Option<PathBuf>,
    /// Bytes per read or write request (e.g. 256K, 1M).
    #[arg(long, default_value = "1MiB")]
    io_size: Size,
    /// Requests kept in flight.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=32))]
    queue_depth: u16,
    /// Poll status blocks instead of waiting for completion interrupts.
    #[arg(long)]
    polling: bool,
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// Request sizes, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "4K,64K,1M")]
    sizes: Vec<Size>,
    /// Queue depths, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8", value_parser = clap::value_parser!(u16).range(1..=32))]
    queue_depths: Vec<u16>,
    /// Bytes moved per measurement.
    #[arg(long, default_value = "32MiB")]
    bytes: Size,
    /// Poll status blocks instead of waiting for completion interrupts.
    #[arg(long)]
    polling: bool,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Directory to serve; clients cannot reach outside it.
    #[arg(long)]
    root: PathBuf,
    /// Side-channel address to listen on, e.g. 127.0.0.1:7472.
    #[arg(long)]
    listen: SocketAddr,
}

#[derive(Debug, Args)]
struct GetArgs {
    /// Remote file, HOST:PORT:PATH.
    remote: RemotePath,
    /// Local destination.
    local: PathBuf,
}

#[derive(Debug, Args)]
struct PutArgs {
    /// Local file.
    local: PathBuf,
    /// Remote destination, HOST:PORT:PATH.
    remote: RemotePath,
}

/// An honest refusal: the command exists but this build cannot carry it out.
#[derive(Debug)]
struct NotAvailable(&'static str);

impl std::fmt::Display for NotAvailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not available in this build: {}", self.0)
    }
}

impl std::error::Error for NotAvailable {}

const NO_NETWORK: &str = "networked operation (a TCP side channel plus verbs/fabric connection setup) is not implemented yet; `rdio cp` and `rdio bench` run a server in-process over the loopback transport";
fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Cp(args) => {
            check_loopback(cli.transport)?;
            cp::run(&cp::Copy {
                src: args.src,
                dst: args.dst,
                root: args.root,
                io_size: args.io_size,
                queue_depth: args.queue_depth,
                polling: args.polling,
            })
        }
        Command::Bench(args) => {
            check_loopback(cli.transport)?;
            bench::run(&bench::Bench {
                sizes: args.sizes,
                queue_depths: args.queue_depths,
                bytes: args.bytes,
                polling: args.polling,
            })
        }
        Command::Serve(_) | Command::Get(_) | Command::Put(_) => {
            Err(NotAvailable(NO_NETWORK).into())
        }
    }
}

/// `cp` and `bench` run their server in this process, which only the
/// loopback transport can reach.
fn check_loopback(transport: Transport) -> Result<()> {
    match transport {
        Transport::Loopback => Ok(()),
        Transport::Verbs | Transport::Fabric => Err(NotAvailable(NO_NETWORK).into()),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error),
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // `{:#}` joins the context chain with ": " on one line.
            eprintln!("rdio: error: {}", one_line(&format!("{error:#}")));
            ExitCode::FAILURE
        }
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
