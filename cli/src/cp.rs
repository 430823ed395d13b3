//! `rdio cp SRC DST`: SRC goes to the server's root and comes back as DST,
//! through the whole protocol, and both ends are checked by SHA-256.
//!
//! A copy onto itself is refused before anything is opened for writing:
//! SRC, DST and the server's copy under `--root` are compared by device
//! and inode (through symbolic and hard links). DST is written like a
//! download of `get` (`crate::transfer::Output`): to a temporary file
//! beside it, renamed over it once complete and fsynced.

use crate::interrupt::{self, Debris};
use crate::report::{hex, progress_bar, rate, read_full};
use crate::size::Size;
use crate::transfer::{Changed, Output, destination};
use anyhow::{Context, Result, anyhow, bail};
use rdio::capture::Recorder;
use rdio::client::CompletionMode;
use rdio::embedded::{Captured, EmbeddedOptions, Inline, Mode, Threads};
use rdio_core::wire::OpenFlags;
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

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
    let chunk = pair.client.io_size() * pair.client.queue_depth();

    let progress = progress_bar(2 * len);
    let mut buffer = vec![0u8; chunk];
    let flags = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE;
    let remote = pair
        .client
        .open(name.as_bytes(), flags)
        .context("cannot create the file on the server")?;
    // From its (truncating) open until the upload is complete, the
    // server's copy is a partial file: removed if the copy fails or is
    // interrupted. (Under a temporary root it goes with the root.)
    let partial = copy
        .root
        .as_ref()
        .map(|root| Debris::remove_on_drop(&root.join(name)));

    progress.set_message("put");
    let started = Instant::now();
    let mut sent = Sha256::new();
    let mut offset = 0u64;
    loop {
        interrupt::check()?;
        let n = read_full(&mut src, &mut buffer)
            .with_context(|| format!("cannot read {}", copy.src.display()))?;
        if n == 0 {
            break;
        }
        sent.update(&buffer[..n]);
        pair.client
            .write_at(&remote, offset, &buffer[..n])
            .context("write to the server failed")?;
        offset += n as u64;
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
    if let Some(partial) = partial {
        partial.keep();
    }

    progress.set_message("get");
    let started = Instant::now();
    let mut received = Sha256::new();
    let mut offset = 0u64;
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
    loop {
        interrupt::check()?;
        let n = pair
            .client
            .read_at(&remote, offset, &mut buffer)
            .context("read from the server failed")?;
        if n == 0 {
            break;
        }
        // Only the `n` bytes read: the rest of the buffer is stale.
        received.update(&buffer[..n]);
        output
            .file()
            .write_all(&buffer[..n])
            .map_err(write_failed)?;
        offset += n as u64;
        progress.inc(n as u64);
    }
    output.sync().map_err(write_failed)?;
    let down = started.elapsed();
    progress.finish_and_clear();
    pair.client
        .close(remote)
        .context("close on the server failed")?;
    pair.finish().context("closing the connection failed")?;

    let (sent, received) = (sent.finalize(), received.finalize());
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
        bail!(
            "verification failed: the copy read back differs from {}; {} was not written",
            copy.src.display(),
            target.display()
        );
    }
    interrupt::check()?;
    output.finish(&target)?;
    let place = match &copy.root {
        Some(root) => format!("via {}", root.join(name).display()),
        None => "via a temporary server root".to_owned(),
    };
    println!(
        "copied {} {place}: put {}, get {}, sha256 {}",
        Size(len),
        rate(len, up),
        rate(len, down),
        hex(&sent),
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
