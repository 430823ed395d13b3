//! `rdio cp SRC DST`: a verified download from a server in this process.
//!
//! By default the in-process server exports SRC's directory read-only and
//! the client downloads SRC from it into DST, through the whole protocol:
//! SRC is opened by name on the side channel, registered by resume key and
//! read by RDMA writes, which the server makes straight from a leased
//! mapping of SRC's pages (a read-only open is served zero-copy). DST is
//! written from the client's registered buffers, the bytes hashed
//! (XXH3-128) as they stream, and the digest checked against the server's
//! checksum of SRC (`ChecksumRequest`): a verified `get`, exit status 25
//! when they differ. DST is written once, SRC only read.
//!
//! `--round-trip` (implied by `--root DIR`) takes the long way, which also
//! exercises writes by send: SRC goes to the server's root (a temporary
//! directory, or DIR, where the copy stays) and comes back as DST, the
//! bytes sent and received both hashed as they stream. Writes are read
//! from SRC straight into the client's registered buffers and reads
//! written to DST straight from them, up to the queue depth in flight.
//!
//! A copy onto itself is refused before anything is opened for writing:
//! SRC, DST and the server's copy under `--root` are compared by device
//! and inode (through symbolic and hard links). DST is written like a
//! download of `get` (`crate::transfer::Output`): to a temporary file
//! beside it, renamed over it once complete and fsynced.

use crate::interrupt::{self, Debris};
use crate::report::{self, Verified, hex, progress_bar, rate, read_full};
use crate::size::Size;
use crate::transfer::{Changed, Output, VerifyFailed, compare, destination, verify};
use anyhow::{Context, Result, anyhow, bail};
use rdio::capture::Recorder;
use rdio::client::{Checksum, CompletionMode, Ticket};
use rdio::embedded::{Captured, EmbeddedOptions, Inline, Mode, Threads};
use rdio::pipe::Pipe;
use rdio::server::{Server, ServerError};
use rdio_core::wire::{ChecksumAlgorithm, OpenFlags, PipeMessage, Status};
use serde_json::json;
use std::collections::VecDeque;
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;
use xxhash_rust::xxh3::Xxh3;

/// What `cp` needs from the command line.
#[derive(Debug)]
pub struct Copy {
    pub src: PathBuf,
    pub dst: PathBuf,
    /// `--root DIR`: the round trip, keeping the server's copy in DIR.
    pub root: Option<PathBuf>,
    /// `--round-trip`: SRC to the server's root and back, instead of a
    /// verified download of SRC.
    pub round_trip: bool,
    pub io_size: Size,
    pub queue_depth: u16,
    pub polling: bool,
    /// The in-process server runs on threads of its own instead of inline
    /// in the client's calls.
    pub server_threads: bool,
    /// `--capture`: record both ends of the session (the server then runs
    /// on threads).
    pub capture: Option<Arc<Recorder>>,
}

pub fn run(copy: &Copy) -> Result<()> {
    if copy.capture.is_some() {
        run_in::<Captured>(copy)
    } else if copy.server_threads {
        run_in::<Threads>(copy)
    } else {
        run_in::<Inline>(copy)
    }
}

fn run_in<M: Mode>(copy: &Copy) -> Result<()> {
    if copy.round_trip || copy.root.is_some() {
        round_trip::<M>(copy)
    } else {
        download::<M>(copy)
    }
}

/// SRC, opened and checked to be a regular file.
struct Source {
    file: File,
    meta: fs::Metadata,
    /// Its file name: the server's name for it.
    name: std::ffi::OsString,
}

impl Source {
    fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let meta = file
            .metadata()
            .with_context(|| format!("cannot stat {}", path.display()))?;
        if !meta.is_file() {
            bail!("{} is not a regular file", path.display());
        }
        let name = path
            .file_name()
            .with_context(|| format!("{} has no file name", path.display()))?
            .to_owned();
        Ok(Self { file, meta, name })
    }
}

/// The in-process pair's options from the command line's.
fn embedded_options(copy: &Copy) -> Result<EmbeddedOptions> {
    let mut options = EmbeddedOptions::default();
    options.client.io_size =
        u32::try_from(copy.io_size.0).context("--io-size must be below 4 GiB")?;
    options.client.queue_depth = usize::from(copy.queue_depth);
    options.client.mode = if copy.polling {
        CompletionMode::Polling
    } else {
        CompletionMode::Interrupt
    };
    options.capture = copy.capture.clone();
    Ok(options)
}

/// The default: SRC's directory served read-only, SRC downloaded from it
/// into DST and verified against the server's checksum of it.
fn download<M: Mode>(copy: &Copy) -> Result<()> {
    let source = Source::open(&copy.src)?;
    let len = source.meta.len();
    let target = destination(&copy.dst, &source.name.to_string_lossy())?;
    refuse_same(&copy.src, &target, "")?;
    // The directory the file is really in (through symbolic links, which
    // the server would not follow out of its export), and its name there.
    let real = fs::canonicalize(&copy.src)
        .with_context(|| format!("cannot resolve {}", copy.src.display()))?;
    let (Some(dir), Some(name)) = (real.parent(), real.file_name()) else {
        bail!("{} has no directory to serve it from", copy.src.display());
    };
    // The destination next: a bad one fails before the server starts.
    let (mut output, target) = Output::open(&target)?;

    let mut options = embedded_options(copy)?;
    // Only read: SRC cannot be written through this server, whatever the
    // client asks.
    options.server.read_only = true;
    // The loopback transport pins nothing: SRC is served from its page
    // cache whatever its size.
    options.server.zero_copy_max_file = u64::MAX;
    let mut pair = M::start(dir, options).context("cannot start the in-process server")?;
    let path = name.to_string_lossy();
    let changed = |got: String| {
        anyhow!(Changed { expected: len, got }).context(format!(
            "{} changed while being copied; {} was not written",
            copy.src.display(),
            target.display()
        ))
    };

    // A read-only open: the server RDMA-writes straight from its page
    // cache (a leased mapping), no bounce copy.
    let client = &mut pair.client;
    let remote = client
        .open(name.as_bytes(), OpenFlags::READ)
        .with_context(|| format!("cannot open {} on the server", copy.src.display()))?;
    // The file the server opened is the one checked above, as it was.
    let before = client
        .stat(name.as_bytes())
        .with_context(|| format!("cannot stat {} on the server", copy.src.display()))?;
    if before.file_id != rdio::server::file_id(&source.meta) {
        return Err(changed(format!(
            "{} (replaced by another file)",
            before.size
        )));
    }
    if before.size != len {
        return Err(changed(before.size.to_string()));
    }
    // The server's checksum of SRC, asked for now and computed while the
    // reads stream, unless the session is captured (the capture then
    // shows the request on the client's own side channel, after them).
    let checksum = if copy.capture.is_none() {
        Some(ConcurrentChecksum::request(pair.server(), name.as_bytes())?)
    } else {
        None
    };
    let client = &mut pair.client;

    let progress = progress_bar(Some(len));
    progress.set_message("cp");
    let started = Instant::now();
    let (offset, received) = download_into(client, &remote, len, &mut output, &target, &progress)?;
    let streamed = started.elapsed();
    if offset != len {
        return Err(changed(offset.to_string()));
    }
    // The server's checksum of SRC as it holds it, against the bytes
    // received.
    let verified = match checksum {
        Some(checksum) => checksum
            .answer()
            .and_then(|theirs| compare(theirs, &path, offset, received)),
        None => verify(client, &path, offset, received),
    }
    .with_context(|| {
        format!(
            "the copy of {} was not verified; {} was not written",
            copy.src.display(),
            target.display()
        )
    })?;
    let after = client
        .stat(name.as_bytes())
        .with_context(|| format!("cannot stat {} on the server", copy.src.display()))?;
    if after != before {
        return Err(changed(format!("{} (rewritten)", after.size)));
    }
    let elapsed = started.elapsed();
    progress.finish_and_clear();
    client.close(remote).context("close on the server failed")?;
    pair.finish().context("closing the connection failed")?;
    drop(source.file);
    interrupt::check()?;
    output.finish(&target)?;
    report::summary(
        &format!(
            "copied {} from {} in {:.2} s ({}), read by RDMA from a read-only server, \
             verified xxh3-128 {}",
            Size(len),
            copy.src.display(),
            elapsed.as_secs_f64(),
            rate(len, elapsed),
            verified.value,
        ),
        report::transfer_fields(
            "cp",
            len,
            elapsed,
            "loopback",
            Some(&verified),
            json!({
                "source": copy.src.display().to_string(),
                "destination": target.display().to_string(),
                "round_trip": false,
                "get_seconds": streamed.as_secs_f64(),
                "verify_seconds": (elapsed - streamed).as_secs_f64(),
            }),
        ),
    );
    Ok(())
}

/// A `ChecksumRequest` on a second side-channel session of the in-process
/// server, answered on a thread of its own: the server's pass over SRC
/// (as long as a third of the copy) runs beside the reads the client
/// streams, on another core when one is free, instead of after them.
struct ConcurrentChecksum {
    pipe: Pipe<UnixStream>,
    serving: JoinHandle<Result<(), ServerError>>,
}

impl ConcurrentChecksum {
    /// Open the session and send the request for the file at `path`.
    fn request(server: &Arc<Server>, path: &[u8]) -> Result<Self> {
        let (ours, theirs) =
            UnixStream::pair().context("cannot create a side channel for the checksum")?;
        let server = Arc::clone(server);
        let serving = std::thread::Builder::new()
            .name("rdio-cp-checksum".to_owned())
            .spawn(move || server.serve_pipe(theirs))
            .context("cannot start the checksum thread")?;
        let mut pipe = Pipe::new(ours);
        let failed = "cannot ask the server for the file's checksum";
        pipe.send(&PipeMessage::ResumeKeyRequest).context(failed)?;
        match pipe.receive().context(failed)? {
            PipeMessage::ResumeKeyResponse { .. } => {}
            PipeMessage::Refused { status } => bail!("{failed}: the server refused ({status})"),
            _ => bail!("{failed}: the server answered something else than a resume key"),
        }
        pipe.send(&PipeMessage::ChecksumRequest {
            algorithm: ChecksumAlgorithm::XXH3_128,
            path,
        })
        .context(failed)?;
        Ok(Self { pipe, serving })
    }

    /// Wait for the answer, and close the session.
    fn answer(self) -> Result<Checksum> {
        let Self { mut pipe, serving } = self;
        let failed = "asking the server for the file's checksum";
        let checksum = match pipe.receive().context(failed)? {
            PipeMessage::ChecksumResponse {
                status: Status::Success,
                algorithm: ChecksumAlgorithm::XXH3_128,
                length,
                digest,
            } => {
                let mut head = [0; 16];
                if let Some(digest) = digest.get(..head.len()) {
                    head.copy_from_slice(digest);
                }
                Checksum {
                    length,
                    digest: head,
                }
            }
            PipeMessage::ChecksumResponse { status, .. } if status != Status::Success => {
                bail!("{failed}: {status}")
            }
            _ => bail!("{failed}: the server answered something else than an XXH3-128 checksum"),
        };
        // The session ends with the stream, and its thread with it.
        drop(pipe);
        serving
            .join()
            .map_err(|_| anyhow!("{failed}: the checksum thread panicked"))?
            .context(failed)?;
        Ok(checksum)
    }
}

/// Read the `len` bytes of `remote` with up to the queue depth of reads in
/// flight, and one past them (which must come back empty), handing each
/// completed read to `sink` straight from the buffer the server wrote it
/// into, in order. Returns the bytes read: `len`, or fewer when the file
/// shrank, more when it grew.
fn stream_reads<T: rdio_transport::Transport, S: std::io::Read + std::io::Write>(
    client: &mut rdio::client::Client<T, S>,
    remote: &rdio::client::RemoteFile,
    len: u64,
    mut sink: impl FnMut(&[u8]) -> Result<()>,
) -> Result<u64> {
    let chunk = client.io_size();
    let mut in_flight: VecDeque<(Ticket, usize)> = VecDeque::new();
    let mut next = 0u64;
    let mut offset = 0u64;
    let mut at_end = false;
    loop {
        interrupt::check()?;
        while !at_end && in_flight.len() < client.queue_depth() && next <= len {
            let want = usize::try_from(len - next).unwrap_or(chunk).min(chunk);
            // The read at `len` asks for a chunk: it must come back empty.
            let want = if want == 0 { chunk } else { want };
            let ticket = client
                .submit_read(remote, next, want)
                .context("read from the server failed")?;
            in_flight.push_back((ticket, want));
            next += want as u64;
        }
        let Some((ticket, want)) = in_flight.pop_front() else {
            break;
        };
        let view = client
            .wait_in_place(ticket)
            .context("read from the server failed")?;
        if at_end {
            continue;
        }
        let n = view.len();
        sink(&view)?;
        offset += n as u64;
        at_end = n < want;
        // Bytes past `len` (the file grew): counted, not read further.
        if offset > len {
            at_end = true;
        }
    }
    Ok(offset)
}

/// Download the `len` bytes of `remote` into `output` (`stream_reads`):
/// each completed read is hashed and written to DST straight from the
/// buffer the server wrote it into, then DST is synced. Returns the bytes
/// streamed and their XXH3-128. A failed write says whether `target`
/// already holds part of the copy.
fn download_into<T: rdio_transport::Transport, S: std::io::Read + std::io::Write>(
    client: &mut rdio::client::Client<T, S>,
    remote: &rdio::client::RemoteFile,
    len: u64,
    output: &mut Output,
    target: &Path,
    progress: &indicatif::ProgressBar,
) -> Result<(u64, u128)> {
    let in_place = output.in_place();
    let write_failed = |error: std::io::Error| {
        anyhow!(error).context(format!(
            "cannot write {}; {}",
            target.display(),
            if in_place {
                "it holds part of the copy"
            } else {
                "it was not written"
            }
        ))
    };
    let mut received = Xxh3::new();
    let offset = stream_reads(client, remote, len, |view| {
        received.update(view);
        output.write_all(view).map_err(write_failed)?;
        progress.inc(view.len() as u64);
        Ok(())
    })?;
    output.sync().map_err(write_failed)?;
    Ok((offset, received.digest128()))
}

/// `--round-trip` (or `--root`): SRC written to the server's root by
/// sends, read back by RDMA writes into DST, both directions hashed.
fn round_trip<M: Mode>(copy: &Copy) -> Result<()> {
    let Source {
        file: mut src,
        meta,
        name,
    } = Source::open(&copy.src)?;
    let name = name.as_os_str();
    let len = meta.len();
    let target = destination(&copy.dst, &name.to_string_lossy())?;
    // Before anything is opened for writing: the server's copy must not be
    // the source (its open truncates it), nor the destination either.
    if let Some(root) = &copy.root {
        let copy_on_server = root.join(name);
        refuse_same(&copy.src, &copy_on_server, "the server's copy under --root")?;
        refuse_same(&target, &copy_on_server, "the server's copy under --root")?;
    }
    refuse_same(&copy.src, &target, "")?;
    // The destination next: a bad one fails before any copying.
    let (mut output, target) = Output::open(&target)?;

    // Declared first, dropped last: the temporary root is removed before
    // it leaves the signal thread's list.
    let _temporary_debris;
    let temporary;
    let root: &Path = match &copy.root {
        Some(root) => root,
        None => {
            temporary = tempfile::Builder::new()
                .prefix("rdio-root-")
                .tempdir()
                .context("cannot create a temporary root")?;
            _temporary_debris = Debris::register(temporary.path());
            temporary.path()
        }
    };
    let options = embedded_options(copy)?;
    let mut pair = M::start(root, options).context("cannot start the in-process server")?;
    let client = &mut pair.client;

    let flags = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE;
    let remote = client
        .open(name.as_bytes(), flags)
        .context("cannot create the file on the server")?;
    // From its (truncating) open until the upload is complete, the
    // server's copy is a partial file: removed if the copy fails or is
    // interrupted. (Under a temporary root it goes with the root.)
    let partial = copy
        .root
        .as_ref()
        .map(|root| Debris::remove_on_drop(&root.join(name)));

    // One bar per direction, each of the file's size.
    let progress = progress_bar(Some(len));
    progress.set_message("put");
    let started = Instant::now();
    let chunk = client.io_size();
    // Up to the queue depth of writes in flight; each chunk is read from
    // SRC straight into a registered buffer of the client (no copy) and
    // hashed there while earlier ones travel.
    let mut sent = Xxh3::new();
    let mut in_flight: VecDeque<(Ticket, usize)> = VecDeque::new();
    let mut offset = 0u64;
    let mut at_end = false;
    loop {
        interrupt::check()?;
        while !at_end && in_flight.len() < client.queue_depth() {
            let mut buffer = client
                .write_buffer(chunk)
                .context("write to the server failed")?;
            let n = read_full(&mut src, &mut buffer)
                .with_context(|| format!("cannot read {}", copy.src.display()))?;
            at_end = n < chunk;
            if n == 0 {
                break;
            }
            buffer.truncate(n);
            sent.update(&buffer);
            let ticket = buffer
                .submit(&remote, offset)
                .context("write to the server failed")?;
            in_flight.push_back((ticket, n));
            offset += n as u64;
        }
        let Some((ticket, n)) = in_flight.pop_front() else {
            break;
        };
        let written = client
            .wait(ticket, &mut [])
            .context("write to the server failed")?;
        if written != n as u64 {
            bail!("write to the server failed: the server wrote {written} of {n} bytes");
        }
        progress.inc(n as u64);
    }
    let up = started.elapsed();
    if offset != len {
        return Err(anyhow!(Changed {
            expected: len,
            got: offset.to_string(),
        })
        .context(format!("{} changed while being copied", copy.src.display())));
    }
    // The close commits the upload (the server renames it over its name).
    client.close(remote).context("close on the server failed")?;
    if let Some(partial) = partial {
        partial.keep();
    }
    // Read back through a read-only open: the server then RDMA-writes
    // straight from its page cache (a leased mapping), no bounce copy.
    let remote = client
        .open(name.as_bytes(), OpenFlags::READ)
        .context("cannot open the server's copy for reading")?;

    progress.set_position(0);
    progress.set_message("get");
    let started = Instant::now();
    let (offset, received) = download_into(client, &remote, len, &mut output, &target, &progress)?;
    let down = started.elapsed();
    progress.finish_and_clear();
    client.close(remote).context("close on the server failed")?;
    pair.finish().context("closing the connection failed")?;

    let sent = sent.digest128();
    if offset != len {
        return Err(anyhow!(Changed {
            expected: len,
            got: offset.to_string(),
        })
        .context(format!(
            "the server's copy of {} changed while being read back; {} was not written",
            copy.src.display(),
            target.display()
        )));
    }
    if sent != received {
        return Err(anyhow!(VerifyFailed {
            detail: format!(
                "the copy read back differs from {} (xxh3-128 {} sent, {} received); {} was \
                 not written",
                copy.src.display(),
                hex(&sent.to_be_bytes()),
                hex(&received.to_be_bytes()),
                target.display()
            ),
        }));
    }
    interrupt::check()?;
    output.finish(&target)?;
    let place = match &copy.root {
        Some(root) => format!("via {}", root.join(name).display()),
        None => "via a temporary server root".to_owned(),
    };
    let digest = hex(&sent.to_be_bytes());
    let verified = Verified {
        algorithm: "xxh3-128",
        value: digest.clone(),
        verified: true,
    };
    report::summary(
        &format!(
            "copied {} {place}: put {}, get {}, verified xxh3-128 {digest}",
            Size(len),
            rate(len, up),
            rate(len, down),
        ),
        report::transfer_fields(
            "cp",
            len,
            up + down,
            "loopback",
            Some(&verified),
            json!({
                "source": copy.src.display().to_string(),
                "destination": target.display().to_string(),
                "round_trip": true,
                "put_seconds": up.as_secs_f64(),
                "get_seconds": down.as_secs_f64(),
            }),
        ),
    );
    Ok(())
}

/// Refuse `a` and `b` when they are one file (same device and inode,
/// through symbolic and hard links), or `b` does not exist yet but is the
/// path `a` would be written to, as coreutils `cp` does:
/// `'a' and 'b' are the same file`.
fn refuse_same(a: &Path, b: &Path, what: &str) -> Result<()> {
    if same_file(a, b) {
        let what = if what.is_empty() {
            String::new()
        } else {
            format!(" ({what})")
        };
        bail!(
            "'{}' and '{}'{what} are the same file",
            a.display(),
            b.display()
        );
    }
    Ok(())
}

/// Whether `a` and `b` name one file: the same device and inode once
/// symbolic links are followed, or, when either does not exist yet, the
/// same path once their directories are resolved.
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => match (resolved(a), resolved(b)) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        },
    }
}

/// `path` with its directory resolved (symbolic links, `..`): where a file
/// created at `path` would be.
fn resolved(path: &Path) -> Option<PathBuf> {
    let path = Output::resolve(path);
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    Some(fs::canonicalize(dir).ok()?.join(path.file_name()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checksum asked on a second session is the server's: the one its
    /// client's own side channel gets, of the file's bytes; a file the
    /// server cannot hash is an error naming why.
    #[test]
    fn the_concurrent_checksum_is_the_servers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = b"served bytes".repeat(40_000);
        fs::write(dir.path().join("f"), &data).expect("write");
        let mut pair = rdio::embedded::Embedded::start_inline(dir.path(), Default::default())
            .expect("embedded pair");
        let theirs = ConcurrentChecksum::request(pair.server(), b"f")
            .and_then(ConcurrentChecksum::answer)
            .expect("checksum");
        assert_eq!(theirs.length, data.len() as u64);
        assert_eq!(
            theirs.digest,
            xxhash_rust::xxh3::xxh3_128(&data).to_be_bytes()
        );
        assert_eq!(pair.client.checksum("f").expect("checksum"), theirs);
        let error = ConcurrentChecksum::request(pair.server(), b"missing")
            .and_then(ConcurrentChecksum::answer)
            .expect_err("no such file");
        assert!(format!("{error:#}").contains("not found"), "{error:#}");
        pair.finish().expect("finish");
    }
}
