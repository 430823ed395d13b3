//! `rdio cp SRC DST`: SRC goes to the server's root and comes back as DST,
//! through the whole protocol, and both ends are checked by SHA-256.

use crate::report::{hex, progress_bar, rate, read_full};
use crate::size::Size;
use anyhow::{Context, Result, bail};
use rdio::capture::Recorder;
use rdio::client::CompletionMode;
use rdio::embedded::{Captured, EmbeddedOptions, Inline, Mode, Threads};
use rdio_core::wire::OpenFlags;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
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

    let temporary;
    let root: &Path = match &copy.root {
        Some(root) => root,
        None => {
            temporary = tempfile::Builder::new()
                .prefix("rdio-root-")
                .tempdir()
                .context("cannot create a temporary root")?;
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

    progress.set_message("put");
    let started = Instant::now();
    let mut sent = Sha256::new();
    let mut offset = 0u64;
    loop {
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
        bail!(
            "{} changed size while being copied ({len} bytes, then {offset})",
            copy.src.display()
        );
    }

    progress.set_message("get");
    let mut dst =
        File::create(&copy.dst).with_context(|| format!("cannot create {}", copy.dst.display()))?;
    let started = Instant::now();
    let mut received = Sha256::new();
    let mut offset = 0u64;
    loop {
        let n = pair
            .client
            .read_at(&remote, offset, &mut buffer)
            .context("read from the server failed")?;
        if n == 0 {
            break;
        }
        received.update(&buffer[..n]);
        dst.write_all(&buffer[..n])
            .with_context(|| format!("cannot write {}", copy.dst.display()))?;
        offset += n as u64;
        progress.inc(n as u64);
    }
    dst.sync_all()
        .with_context(|| format!("cannot flush {}", copy.dst.display()))?;
    let down = started.elapsed();
    progress.finish_and_clear();
    pair.client
        .close(remote)
        .context("close on the server failed")?;
    pair.finish().context("closing the connection failed")?;

    let (sent, received) = (sent.finalize(), received.finalize());
    if sent != received || offset != len {
        bail!(
            "verification failed: {} ({} bytes) differs from {} ({offset} bytes)",
            copy.dst.display(),
            len,
            copy.src.display()
        );
    }
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
