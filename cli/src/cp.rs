//! `rdio cp SRC DST`: SRC goes to the server's root and comes back as DST,
//! through the whole protocol, and the bytes sent and received are checked
//! by XXH3-128, hashed as they stream (no extra pass over either file).
//! Writes are read from SRC straight into the client's registered buffers
//! and reads written to DST straight from them, up to the queue depth in
//! flight each way.
//!
//! A copy onto itself is refused before anything is opened for writing:
//! SRC, DST and the server's copy under `--root` are compared by device
//! and inode (through symbolic and hard links). DST is written like a
//! download of `get` (`crate::transfer::Output`): to a temporary file
//! beside it, renamed over it once complete and fsynced.

use crate::interrupt::{self, Debris};
use crate::report::{self, Verified, hex, progress_bar, rate, read_full};
use crate::size::Size;
use crate::transfer::{Changed, Output, VerifyFailed, destination};
use anyhow::{Context, Result, anyhow, bail};
use rdio::capture::Recorder;
use rdio::client::{CompletionMode, Ticket};
use rdio::embedded::{Captured, EmbeddedOptions, Inline, Mode, Threads};
use rdio_core::wire::OpenFlags;
use serde_json::json;
use std::collections::VecDeque;
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use xxhash_rust::xxh3::Xxh3;

/// What `cp` needs from the command line.
#[derive(Debug)]
pub struct Copy {
    pub src: PathBuf,
    pub dst: PathBuf,
    pub root: Option<PathBuf>,
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
    let mut src =
        File::open(&copy.src).with_context(|| format!("cannot open {}", copy.src.display()))?;
    let meta = src
        .metadata()
        .with_context(|| format!("cannot stat {}", copy.src.display()))?;
    if !meta.is_file() {
        bail!("{} is not a regular file", copy.src.display());
    }
    let name = copy
        .src
        .file_name()
        .with_context(|| format!("{} has no file name", copy.src.display()))?;
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
    let mut received = Xxh3::new();
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
    // Up to the queue depth of reads in flight, to the size written and
    // one past it (which must be empty); each completed one is hashed and
    // written to DST straight from the buffer the server wrote it into.
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
                .submit_read(&remote, next, want)
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
        received.update(&view);
        output.write_all(&view).map_err(write_failed)?;
        offset += n as u64;
        progress.inc(n as u64);
        at_end = n < want;
    }
    output.sync().map_err(write_failed)?;
    let down = started.elapsed();
    progress.finish_and_clear();
    client.close(remote).context("close on the server failed")?;
    pair.finish().context("closing the connection failed")?;

    let (sent, received) = (sent.digest128(), received.digest128());
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
