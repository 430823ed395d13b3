//! `rdio`: serve a directory over RDMA, copy files to and from it, and
//! measure it.
//!
//! Every failure ends the process with a non-zero status and one line on
//! standard error, `rdio: error: ...`: usage errors exit with 2, everything
//! else with 1.

mod access;
mod bench;
mod bench_output;
mod cp;
mod network;
mod remote;
mod report;
mod serve;
mod size;
mod transfer;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use network::{Transport, Tuning, require_loopback, seconds, with_connector};
use remote::RemotePath;
use size::Size;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Offload file I/O to a server over RDMA (the LWIO protocol).
#[derive(Debug, Parser)]
#[command(
    name = "rdio",
    version,
    propagate_version = true,
    arg_required_else_help = false
)]
struct Cli {
    /// RDMA transport [default: loopback for cp and bench, which run their
    /// server in-process; fabric for serve, get, put and bench --server].
    /// `verbs` needs an RDMA device and a build with the `verbs` feature;
    /// `cma` reaches a server on this host only, run by the same user.
    #[arg(long, global = true, value_enum)]
    transport: Option<Transport>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Copy SRC to DST through an rdio server: SRC is written to the
    /// server's root, read back into DST, and both are checked by SHA-256.
    Cp(CpArgs),
    /// Measure reads and writes (plain and vectored) over sizes and queue
    /// depths: MB/s, IOPS and latency percentiles.
    Bench(BenchArgs),
    /// Serve a directory to rdio clients until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Download a file from an rdio server.
    Get(GetArgs),
    /// Upload a file to an rdio server.
    Put(PutArgs),
    /// Manage who may connect to `rdio serve`.
    #[command(subcommand)]
    Client(ClientCommand),
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
    /// Run the in-process server on threads of its own (default: inline,
    /// stepped by the client on its own thread).
    #[arg(long)]
    server_threads: bool,
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

/// How `get` and `put` move data.
#[derive(Debug, Args)]
struct ClientArgs {
    #[command(flatten)]
    net: NetArgs,
    /// Bytes per read or write request (e.g. 256K, 1M).
    #[arg(long, default_value = "1MiB")]
    io_size: Size,
    /// Requests kept in flight.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=32))]
    queue_depth: u16,
    /// Poll status blocks instead of waiting for completion interrupts.
    #[arg(long)]
    polling: bool,
    /// Print the SHA-256 of the bytes moved (hashing costs about as much
    /// CPU as the transfer itself at ~1 GB/s).
    #[arg(long)]
    sha256: bool,
}

impl ClientArgs {
    fn tuning(&self) -> Result<Tuning> {
        Ok(Tuning {
            io_size: u32::try_from(self.io_size.0).context("--io-size must be below 4 GiB")?,
            queue_depth: usize::from(self.queue_depth),
            polling: self.polling,
            connect_timeout: self.net.connect_timeout,
            dead_peer_timeout: self.net.dead_peer_timeout,
        })
    }
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// Request sizes, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "4K,64K,1M")]
    sizes: Vec<Size>,
    /// Queue depths, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8", value_parser = clap::value_parser!(u16).range(1..=64))]
    queue_depths: Vec<u16>,
    /// Bytes moved per measurement.
    #[arg(long, default_value = "32MiB")]
    bytes: Size,
    /// Poll status blocks instead of waiting for completion interrupts.
    #[arg(long)]
    polling: bool,
    /// Measure against the rdio server at HOST:PORT instead of one in this
    /// process.
    #[arg(long)]
    server: Option<String>,
    /// Reads lend the client's registered buffer where the server's RDMA
    /// writes put the data (no copy into the caller's memory) instead of
    /// copying it out; writes send from a lent registered buffer instead of
    /// copying the data into one.
    #[arg(long)]
    in_place: bool,
    /// Run the in-process server on threads of its own (default: inline,
    /// stepped by the client on its own thread).
    #[arg(long, conflicts_with = "server")]
    server_threads: bool,
    /// Operations to measure, comma separated, in this order.
    #[arg(long, value_delimiter = ',', default_value = "read,write,readv,writev")]
    ops: Vec<bench::Op>,
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
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Directory to serve; clients cannot reach outside it.
    #[arg(long)]
    root: PathBuf,
    /// Side-channel address to listen on, e.g. 127.0.0.1:7472 (port 0
    /// picks one; the address is printed). The RDMA endpoint uses the same
    /// IP address, so it must be a specific one, not 0.0.0.0.
    #[arg(long)]
    listen: SocketAddr,
    /// libfabric provider for --transport fabric (see `fi_info -l`).
    #[arg(long, default_value = "tcp")]
    provider: String,
    /// Port of the RDMA endpoint [default: any free port].
    #[arg(long, default_value_t = 0)]
    rdma_port: u16,
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
}

#[derive(Debug, Args)]
struct GetArgs {
    /// Remote file, HOST:PORT:PATH.
    remote: RemotePath,
    /// Local destination (a file, or a directory to put it in).
    local: PathBuf,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Args)]
struct PutArgs {
    /// Local file.
    local: PathBuf,
    /// Remote destination, HOST:PORT:PATH.
    remote: RemotePath,
    #[command(flatten)]
    client: ClientArgs,
}

fn run(cli: Cli) -> Result<()> {
    let networked = match &cli.command {
        Command::Cp(_) | Command::Client(_) => false,
        Command::Bench(args) => args.server.is_some(),
        Command::Serve(_) | Command::Get(_) | Command::Put(_) => true,
    };
    let transport = cli.transport.unwrap_or(if networked {
        Transport::Fabric
    } else {
        Transport::Loopback
    });
    match cli.command {
        Command::Cp(args) => {
            require_loopback(transport, "cp")?;
            cp::run(&cp::Copy {
                src: args.src,
                dst: args.dst,
                root: args.root,
                io_size: args.io_size,
                queue_depth: args.queue_depth,
                polling: args.polling,
                server_threads: args.server_threads,
            })
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
            let bench = bench::Bench {
                sizes: args.sizes,
                queue_depths: args.queue_depths,
                bytes: args.bytes,
                polling: args.polling,
                in_place: args.in_place,
                server_threads: args.server_threads,
                ops: args.ops,
            };
            let results = match args.server {
                None => {
                    require_loopback(transport, "bench")?;
                    bench::run(&bench)?
                }
                Some(server) => {
                    let host = server
                        .rsplit_once(':')
                        .map_or(server.as_str(), |(host, _)| host);
                    access::set_client_security(&args.net, host)?;
                    let server = server
                        .to_socket_addrs()
                        .with_context(|| {
                            format!("invalid --server '{server}': expected HOST:PORT")
                        })?
                        .next()
                        .with_context(|| format!("{server} has no address"))?;
                    let mut results = bench::Results::default();
                    let remote = bench::Remote {
                        bench: &bench,
                        server,
                        file: args.file,
                        connect_timeout: args.net.connect_timeout,
                        dead_peer_timeout: args.net.dead_peer_timeout,
                        baseline: match transport {
                            Transport::Fabric => bench::Baseline::Fabric(args.net.provider.clone()),
                            Transport::Cma => bench::Baseline::Cma,
                            Transport::Loopback | Transport::Verbs => bench::Baseline::None,
                        },
                        results: &mut results,
                    };
                    with_connector(
                        transport,
                        &args.net.provider,
                        args.net.connect_timeout,
                        remote,
                    )?;
                    results
                }
            };
            if let Some(csv) = csv {
                bench_output::write_csv(csv, &results)?;
            }
            if let Some(plot) = plot {
                bench_output::write_plot(plot, &results)?;
            }
            Ok(())
        }
        Command::Serve(args) => serve::run(&serve::Serve {
            root: args.root,
            listen: args.listen,
            transport,
            provider: args.provider,
            rdma_port: args.rdma_port,
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
        Command::Get(args) => {
            access::set_client_security(&args.client.net, &args.remote.host)?;
            let get = transfer::Get {
                remote: args.remote,
                local: args.local,
                tuning: args.client.tuning()?,
                sha256: args.client.sha256,
            };
            let net = &args.client.net;
            with_connector(transport, &net.provider, net.connect_timeout, &get)
        }
        Command::Put(args) => {
            access::set_client_security(&args.client.net, &args.remote.host)?;
            let put = transfer::Put {
                local: args.local,
                remote: args.remote,
                tuning: args.client.tuning()?,
                sha256: args.client.sha256,
            };
            let net = &args.client.net;
            with_connector(transport, &net.provider, net.connect_timeout, &put)
        }
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
