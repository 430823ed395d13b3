//! `rdio get` and `rdio put` of one file between this host and an rdio
//! server ([`download`], [`upload`]; several files and trees are
//! `crate::tree`'s); with `--sha256`, the SHA-256 of the bytes moved in
//! the summary, with `--bwlimit` paced by a [`Pacer`].
//!
//! Each file is verified end to end unless `--no-verify`: the client
//! hashes the bytes as they stream (XXH3-128, no extra pass), asks the
//! server for the checksum of the file it holds (`ChecksumRequest`), and
//! fails with [`VerifyFailed`] (exit status 25) when they differ; a
//! download is then not kept. `get REMOTE -` writes to standard output and
//! `put - REMOTE` reads standard input to its end.
//!
//! A download lands in a temporary file next to its destination and is
//! renamed over it only once complete and on disk (fsync of the file, then
//! of the directory), so an interrupted transfer never looks like a
//! complete file. With `--partial` that file is `.NAME.rdio-part`, kept
//! when the download fails, and the next `--partial` download resumes from
//! it once the server's SHA-256 of the same range matches
//! ([`Output::resume`]). A destination that exists and is not a regular file (a
//! device such as `/dev/null`, a FIFO) is written in place instead —
//! renaming over it would replace it with a regular file — and a failure
//! then says how much of it was written. A symbolic link is followed: the
//! file it names is replaced, not the link.
//!
//! An upload is made atomic by the server: it writes a temporary file and
//! renames it over the destination when the client closes the file after
//! the last byte, so a failed or interrupted `put` leaves the remote file
//! as it was. `--inplace` writes the remote file itself, and a failure then
//! says how far it got.
//!
//! A remote file that changes during a download (shrinks, grows, is
//! rewritten, replaced or removed: short reads, a read past the size seen
//! at open that brings bytes, and the server's `StatRequest` answers after
//! the open and after the last read) fails it with [`Changed`] (exit status
//! 24), or with `--allow-changing` only warns.

use crate::interrupt::{self, Debris};
use crate::remote::RemotePath;
use crate::report::{self, Verified, hex, progress_bar, rate, read_full};
use crate::size::Size;
use anyhow::{Context, Result, anyhow, bail};
use rdio::client::{Checksum, ClientError, FileStat, Operation, Ticket};
use rdio_core::wire::{OpenFlags, Status};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;
use xxhash_rust::xxh3::Xxh3;

/// The path that means standard input (`put - REMOTE`) or standard output
/// (`get REMOTE -`).
pub const STDIO: &str = "-";

/// A file that changed while it was being copied (exit status
/// [`Changed::EXIT_CODE`]): like rsync's "file has vanished" or "changed
/// during transfer".
#[derive(Debug)]
pub struct Changed {
    /// Its size when the transfer started.
    pub expected: u64,
    /// What was found instead (`50`, `70 or more`).
    pub got: String,
}

impl Changed {
    /// The exit status of a command whose file changed under it.
    pub const EXIT_CODE: u8 = 24;
}

impl std::fmt::Display for Changed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "file changed during transfer: expected {} bytes, got {}",
            self.expected, self.got
        )
    }
}

impl std::error::Error for Changed {}

/// End-to-end verification failed: the server's checksum of the file is
/// not the one of the bytes this client moved (exit status
/// [`VerifyFailed::EXIT_CODE`]).
#[derive(Debug)]
pub struct VerifyFailed {
    /// What was compared, and how they differ.
    pub detail: String,
}

impl VerifyFailed {
    /// The exit status of a command whose verification failed.
    pub const EXIT_CODE: u8 = 25;
}

impl std::fmt::Display for VerifyFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "verification failed: {}", self.detail)
    }
}

impl std::error::Error for VerifyFailed {}

/// Compare what this client moved (`length` bytes hashing to `local`)
/// with the server's checksum of `path`; `Ok` with the digest when equal.
pub(crate) fn verify<T: rdio_transport::Transport, S: Read + Write>(
    client: &mut rdio::client::Client<T, S>,
    path: &str,
    length: u64,
    local: u128,
) -> Result<Verified> {
    let remote: Checksum = match client.checksum(path) {
        Ok(checksum) => checksum,
        Err(ClientError::Remote {
            operation: Operation::Checksum,
            status: Status::NotSupported,
        }) => bail!(
            "the server cannot compute checksums (an rdio server from before \
             ChecksumRequest); pass --no-verify to transfer without verification"
        ),
        Err(ClientError::Pipe(rdio::pipe::PipeError::Io(e)))
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            bail!(
                "timed out waiting for the server's checksum of {path} (it reads the whole \
                 file first, within --connect-timeout): pass a longer --connect-timeout for a \
                 large file on a slow disk, or --no-verify"
            )
        }
        Err(e) => return Err(anyhow!(e).context("asking the server for the file's checksum")),
    };
    compare(remote, path, length, local)
}

/// Compare what this client moved (`length` bytes hashing to `local`)
/// with `remote`, the server's checksum of `path`; `Ok` with the digest
/// when equal, [`VerifyFailed`] otherwise.
pub(crate) fn compare(remote: Checksum, path: &str, length: u64, local: u128) -> Result<Verified> {
    let local = local.to_be_bytes();
    tracing::debug!(
        target: "rdio::cli",
        path,
        length,
        server_length = remote.length,
        local = %hex(&local),
        server = %hex(&remote.digest),
        "checksums"
    );
    if remote.length != length {
        return Err(anyhow!(VerifyFailed {
            detail: format!(
                "the server's file holds {} bytes, {length} were transferred",
                remote.length
            ),
        }));
    }
    if remote.digest != local {
        return Err(anyhow!(VerifyFailed {
            detail: format!(
                "xxh3-128 of the server's file is {}, of the {length} bytes transferred {}",
                hex(&remote.digest),
                hex(&local)
            ),
        }));
    }
    Ok(Verified {
        algorithm: "xxh3-128",
        value: hex(&local),
        verified: true,
    })
}

/// A usage error found before any work (exit status 2, like clap's).
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// Where a download goes: `local`, or inside it under the remote file's
/// name when `local` is a directory.
pub fn destination(local: &Path, remote: &str) -> Result<PathBuf> {
    if !local.is_dir() {
        return Ok(local.to_owned());
    }
    let name = Path::new(remote).file_name().with_context(|| {
        format!(
            "{remote} has no file name to use inside {}",
            local.display()
        )
    })?;
    Ok(local.join(name))
}

/// Where a download's (or `cp`'s read-back's) bytes go.
pub enum Output {
    /// A new file next to the destination, renamed over it once complete.
    Partial {
        file: tempfile::NamedTempFile,
        /// The destination's directory (fsynced after the rename).
        dir: PathBuf,
        /// Removes the file should a signal end the process first.
        debris: Debris,
    },
    /// An existing device, FIFO or socket, written in place.
    InPlace(File),
    /// Standard output (`-`).
    Stdout(io::StdoutLock<'static>),
    /// `get --partial`: `.NAME.rdio-part` beside the destination, kept
    /// when the download fails (and resumed from by the next one), renamed
    /// over the destination once complete.
    Resumable {
        file: File,
        /// The `.rdio-part` file.
        part: PathBuf,
        /// The destination's directory (fsynced after the rename).
        dir: PathBuf,
    },
}

impl Output {
    /// The path a download to `target` ends up at: `target`, or the file a
    /// symbolic link `target` names.
    pub fn resolve(target: &Path) -> PathBuf {
        match fs::symlink_metadata(target) {
            Ok(meta) if meta.file_type().is_symlink() => {
                fs::canonicalize(target).unwrap_or_else(|_| target.to_owned())
            }
            _ => target.to_owned(),
        }
    }

    /// The output for `target`, and the path the download ends up at
    /// ([`Output::resolve`]).
    pub fn open(target: &Path) -> Result<(Self, PathBuf)> {
        if target.as_os_str() == STDIO {
            report::data_on_stdout();
            return Ok((Self::Stdout(io::stdout().lock()), target.to_owned()));
        }
        let target = Self::resolve(target);
        if let Ok(meta) = fs::metadata(&target) {
            if !meta.is_file() && !meta.is_dir() {
                // Standard output under another name (/dev/stdout,
                // /proc/self/fd/1): the JSON summary goes elsewhere.
                if fs::metadata("/dev/stdout").is_ok_and(|out| {
                    use std::os::unix::fs::MetadataExt;
                    (out.dev(), out.ino()) == (meta.dev(), meta.ino())
                }) {
                    report::data_on_stdout();
                }
                let file = OpenOptions::new()
                    .write(true)
                    .open(&target)
                    .with_context(|| format!("cannot open {} for writing", target.display()))?;
                return Ok((Self::InPlace(file), target));
            }
        }
        let dir = match target.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        };
        if !dir.is_dir() {
            return Err(anyhow!(Usage(format!(
                "cannot write {}: the directory {} does not exist",
                target.display(),
                dir.display()
            ))));
        }
        let name = target
            .file_name()
            .with_context(|| format!("{} has no file name", target.display()))?;
        let file = tempfile::Builder::new()
            .prefix(&format!(".{}.", name.to_string_lossy()))
            .suffix(".rdio-part")
            // Like any new file: 0666 less the umask.
            .permissions(Permissions::from_mode(0o666))
            .tempfile_in(&dir)
            .with_context(|| format!("cannot create a file in {}", dir.display()))?;
        let debris = Debris::register(file.path());
        Ok((Self::Partial { file, dir, debris }, target))
    }

    /// The output of `get --partial` for `target`: the existing
    /// `.NAME.rdio-part` beside it, or a new one (see
    /// [`Output::resume`]); a device or FIFO is written in place, as by
    /// [`Output::open`].
    pub fn open_resumable(target: &Path) -> Result<(Self, PathBuf)> {
        let (output, target) = Self::open(target)?;
        let Self::Partial { dir, .. } = &output else {
            return Ok((output, target));
        };
        let dir = dir.clone();
        // The random temporary file goes (its debris with it).
        drop(output);
        let name = target
            .file_name()
            .with_context(|| format!("{} has no file name", target.display()))?;
        let part = dir.join(format!(".{}.rdio-part", name.to_string_lossy()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&part)
            .with_context(|| format!("cannot open {}", part.display()))?;
        Ok((Self::Resumable { file, part, dir }, target))
    }

    /// With `--partial`, where the download starts: after the bytes the
    /// `.rdio-part` file holds, if the server's file (of `size` bytes)
    /// begins with them — checked by SHA-256 on both sides, the server's
    /// in requests of at most 1 GiB ([`rdio_core::wire::files::MAX_HASH_LEN`]).
    /// Otherwise the part file is emptied and the download starts over.
    /// The bytes kept are fed to `digest`. 0 for the other outputs.
    pub fn resume<T: rdio_transport::Transport, S: std::io::Read + std::io::Write>(
        &mut self,
        client: &mut rdio::client::Client<T, S>,
        remote: &RemotePath,
        size: u64,
        digest: &mut Option<Sha256>,
        checksum: &mut Option<Xxh3>,
    ) -> Result<u64> {
        use std::io::{Read as _, Seek as _, SeekFrom};
        let Self::Resumable { file, part, .. } = self else {
            return Ok(0);
        };
        let held = file
            .metadata()
            .with_context(|| format!("cannot stat {}", part.display()))?
            .len();
        if held == 0 {
            return Ok(0);
        }
        let mut matches = held <= size;
        let mut checked = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        file.seek(SeekFrom::Start(0))?;
        while matches && checked < held {
            interrupt::check()?;
            let length = (held - checked).min(rdio_core::wire::files::MAX_HASH_LEN);
            let (hashed, theirs) = client
                .tree()
                .hash_range(&remote.path, checked, length)
                .with_context(|| {
                    format!("cannot hash {remote} to resume from {}", part.display())
                })?;
            let mut ours = Sha256::new();
            let mut left = length;
            while left > 0 {
                let want = usize::try_from(left).map_or(buf.len(), |n| n.min(buf.len()));
                file.read_exact(&mut buf[..want])
                    .with_context(|| format!("cannot read {}", part.display()))?;
                ours.update(&buf[..want]);
                if let Some(digest) = digest {
                    digest.update(&buf[..want]);
                }
                if let Some(checksum) = checksum {
                    checksum.update(&buf[..want]);
                }
                left -= want as u64;
            }
            matches = hashed == length && ours.finalize()[..] == theirs[..];
            checked += length;
        }
        if matches {
            if !report::quiet() {
                eprintln!(
                    "rdio: resuming {remote} at {held} bytes from {} (checked by SHA-256)",
                    part.display()
                );
            }
            return Ok(held);
        }
        if !report::quiet() {
            eprintln!(
                "rdio: {} does not match the start of {remote}: downloading it all again",
                part.display()
            );
        }
        if let Some(digest) = digest {
            *digest = Sha256::new();
        }
        if let Some(checksum) = checksum {
            *checksum = Xxh3::new();
        }
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        Ok(0)
    }

    /// Whether the bytes go straight to their destination (a device,
    /// FIFO or standard output), which a failure leaves partly written.
    pub fn in_place(&self) -> bool {
        matches!(self, Self::InPlace(_) | Self::Stdout(_))
    }

    /// The `.rdio-part` file a failure leaves for the next `--partial`.
    pub fn keeps_partial(&self) -> Option<PathBuf> {
        match self {
            Self::Resumable { part, .. } => Some(part.clone()),
            _ => None,
        }
    }

    /// Write all of `data`.
    pub fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Self::Partial { file, .. } => file.as_file_mut().write_all(data),
            Self::InPlace(file) | Self::Resumable { file, .. } => file.write_all(data),
            Self::Stdout(out) => out.write_all(data),
        }
    }

    /// Make the bytes written durable (fsync); a flush for standard
    /// output, nothing for a device or FIFO.
    pub fn sync(&mut self) -> std::io::Result<()> {
        match self {
            Self::Partial { file, .. } => file.as_file().sync_all(),
            Self::Resumable { file, .. } => file.sync_all(),
            Self::InPlace(_) => Ok(()),
            Self::Stdout(out) => out.flush(),
        }
    }

    /// Put a complete download in place: rename it over `target` and make
    /// the rename durable; nothing more for a device or FIFO.
    pub fn finish(self, target: &Path) -> Result<()> {
        let dir = match self {
            Self::InPlace(_) | Self::Stdout(_) => return Ok(()),
            Self::Partial { file, dir, debris } => {
                debris.keep_with(|| file.persist(target)).with_context(|| {
                    format!("cannot rename the download to {}", target.display())
                })?;
                dir
            }
            Self::Resumable { part, dir, .. } => {
                fs::rename(&part, target).with_context(|| {
                    format!("cannot rename the download to {}", target.display())
                })?;
                dir
            }
        };
        // The rename itself must survive a crash too.
        File::open(&dir)
            .and_then(|dir| dir.sync_all())
            .with_context(|| format!("cannot fsync {}", dir.display()))
    }
}

/// How each file of a `get` or `put` moves.
#[derive(Clone, Debug, Default)]
pub struct FileOptions {
    /// Hash the bytes moved and print the digest.
    pub sha256: bool,
    /// `get`: a remote file that changes size during the download is kept
    /// as read, with a warning, instead of failing.
    pub allow_changing: bool,
    /// `put`: write the remote file in place (`--inplace`) instead of
    /// having the server replace it atomically at the end.
    pub in_place: bool,
    /// `get --partial`: download into `.NAME.rdio-part` beside the
    /// destination, keep it when the transfer fails, and resume from it
    /// (after checking its bytes against the server's) next time.
    pub partial: bool,
    /// Check each file against the server's checksum of it (not with
    /// `--no-verify`).
    pub verify: bool,
    /// The transport's name, for the summary.
    pub transport: &'static str,
}

/// Download the server's file `remote` (its path on the session `client`
/// is connected to) to `target`, as `get` does for each file; returns the
/// file's size.
pub fn download<T: rdio_transport::Transport, S: std::io::Read + std::io::Write>(
    client: &mut rdio::client::Client<T, S>,
    remote: &RemotePath,
    target: &Path,
    options: &FileOptions,
    pacer: &mut Pacer,
) -> Result<u64> {
    // The output first: a bad destination fails before the file is opened
    // on the server.
    let (mut output, target) = if options.partial {
        Output::open_resumable(target)?
    } else {
        Output::open(target)?
    };
    let file = client
        .open(&remote.path, OpenFlags::READ)
        .with_context(|| format!("cannot open {} on the server", remote.path))?;
    let size = file.size;
    // What the file is now, to compare with what it is after the last
    // read: a rewrite at the same size or a replacement shows in no
    // read, only in its modification time or identity.
    let before = client
        .stat(&remote.path)
        .with_context(|| format!("cannot stat {} on the server", remote.path))?;
    // A server on this host serving the destination itself: copying a
    // file onto itself is refused, as by coreutils `cp`.
    if fs::metadata(&target).is_ok_and(|local| is_remote_file(&local, &before)) {
        bail!("'{}' and '{}' are the same file", remote, target.display());
    }
    let mut digest = options.sha256.then(Sha256::new);
    let mut checksum = options.verify.then(Xxh3::new);
    // Where the reads start: after the bytes of a partial download that
    // the server's file still begins with.
    let resumed = output.resume(client, remote, size, &mut digest, &mut checksum)?;
    let progress = progress_bar(Some(size));
    progress.set_message("get");
    progress.inc(resumed);
    let started = Instant::now();
    let in_place = output.in_place();
    let kept = output.keeps_partial();
    let outcome = |offset: u64| {
        if in_place {
            format!("{offset} bytes were written to {}", target.display())
        } else if let Some(part) = &kept {
            format!(
                "the {offset} bytes received are kept in {} (--partial resumes from them)",
                part.display()
            )
        } else {
            format!("{} was not written", target.display())
        }
    };
    let failed = |offset: u64, error: anyhow::Error| {
        anyhow!(
            "download of {remote} failed after {offset} of {size} bytes: {error:#}; {}",
            outcome(offset),
        )
    };
    // Up to the queue depth of reads in flight; each completed one is
    // hashed and written to disk straight from the buffer the server
    // wrote it into (no copy), while the others keep arriving.
    let chunk = client.io_size();
    // (file offset, ticket, length) of each read in flight.
    let mut in_flight: VecDeque<(u64, Ticket, usize)> = VecDeque::new();
    let mut offset = resumed;
    let mut next = resumed;
    let mut at_end = false;
    // What the server's file did that it should not have during the
    // transfer: shrank (a read before the size seen at open came back
    // short) or grew (a read from that size brought bytes).
    let mut changed = (before.size != size).then(|| before.size.to_string());
    loop {
        interrupt::check()?;
        // Reads run up to the size seen at open, then one more from
        // there, alone, which must find the end: an empty read. (With
        // --allow-changing, reads past it go on until one is short.)
        while !at_end
            && in_flight.len() < client.queue_depth()
            && (next < size || in_flight.back().is_none_or(|&(start, ..)| start < size))
        {
            let len = if next < size {
                chunk.min((size - next).try_into().unwrap_or(chunk))
            } else {
                chunk
            };
            // The read at the end finds nothing: only data is paced.
            pacer.admit(size.saturating_sub(next).min(len as u64))?;
            let ticket = client
                .submit_read(&file, next, len)
                .map_err(|e| failed(offset, e.into()))?;
            in_flight.push_back((next, ticket, len));
            next += len as u64;
        }
        let Some((start, ticket, len)) = in_flight.pop_front() else {
            break;
        };
        let view = client
            .wait_in_place(ticket)
            .map_err(|e| failed(offset, e.into()))?;
        if at_end {
            // Submitted before the end was seen: nothing to keep.
            continue;
        }
        let got = view.len();
        // Only the bytes the server vouched for are used: the view is
        // exactly `got` long, whatever the buffer held before.
        let shrank = start < size && got < len;
        let grew = start >= size && got > 0;
        if shrank || grew {
            let got = start + got as u64;
            changed = Some(if grew {
                format!("{got} or more")
            } else {
                got.to_string()
            });
        }
        if let Some(got) = changed.as_ref().filter(|_| !options.allow_changing) {
            return Err(anyhow!(Changed {
                expected: size,
                got: got.clone(),
            })
            .context(format!("download of {remote} failed; {}", outcome(offset))));
        }
        if let Some(digest) = &mut digest {
            digest.update(&*view);
        }
        if let Some(checksum) = &mut checksum {
            checksum.update(&view);
        }
        output
            .write_all(&view)
            .map_err(|e| failed(offset, anyhow!(e).context("local write")))?;
        offset += got as u64;
        progress.inc(got as u64);
        // Short only at end of file: later reads start past it.
        at_end = got < len;
    }
    // The last word: what the file is now, against what it was.
    if changed.is_none() {
        changed = match client.stat(&remote.path) {
            Ok(after) if after == before => None,
            Ok(after) if after.file_id != before.file_id => {
                Some(format!("{} (replaced by another file)", after.size))
            }
            Ok(after) if after.size != before.size => Some(after.size.to_string()),
            Ok(after) => Some(format!("{} (rewritten)", after.size)),
            Err(ClientError::Remote {
                status: Status::NotFound,
                ..
            }) => Some("nothing (the file was removed)".to_owned()),
            Err(e) => {
                return Err(failed(
                    offset,
                    anyhow!(e).context("stat after the last read"),
                ));
            }
        };
        if let Some(got) = changed.as_ref().filter(|_| !options.allow_changing) {
            return Err(anyhow!(Changed {
                expected: size,
                got: got.clone(),
            })
            .context(format!("download of {remote} failed; {}", outcome(offset))));
        }
    }
    // Verified before the download takes its name: a mismatch leaves
    // nothing under it. A file that changed (--allow-changing) cannot
    // match what was read of it, and is not checked.
    let verified = match checksum {
        Some(checksum) if changed.is_none() => Some(
            verify(client, &remote.path, offset, checksum.digest128())
                .with_context(|| format!("download of {remote} failed; {}", outcome(offset)))?,
        ),
        _ => None,
    };
    output
        .sync()
        .map_err(|e| failed(offset, anyhow!(e).context("fsync")))?;
    let elapsed = started.elapsed();
    progress.finish_and_clear();
    interrupt::check()?;
    output.finish(&target)?;
    client.close(file).context("close on the server failed")?;
    if let Some(got) = changed {
        report::warn(&format!(
            "{remote}: {}; kept the {offset} bytes read, not verified",
            Changed {
                expected: size,
                got,
            }
        ));
    }
    let destination = if target.as_os_str() == STDIO {
        "standard output".to_owned()
    } else {
        target.display().to_string()
    };
    let sha256 = digest.map(|digest| hex(&digest.finalize()));
    report::summary(
        &format!(
            "got {remote} -> {destination}: {} in {:.2} s ({}){}{}{}",
            Size(offset),
            elapsed.as_secs_f64(),
            rate(offset - resumed, elapsed),
            if resumed > 0 {
                format!(", resumed at {resumed} bytes")
            } else {
                String::new()
            },
            verified_note(verified.as_ref()),
            sha256_note(sha256.as_deref()),
        ),
        report::transfer_fields(
            "get",
            offset - resumed,
            elapsed,
            options.transport,
            verified.as_ref(),
            json!({
                "source": remote.to_string(),
                "destination": target.display().to_string(),
                "resumed_at": resumed,
                "sha256": sha256,
            }),
        ),
    );
    Ok(offset)
}

/// Upload the local file `local` to `remote` (its path on the server
/// `client` is connected to), as `put` does for each file; returns the
/// file's size.
pub fn upload<T: rdio_transport::Transport, S: std::io::Read + std::io::Write>(
    client: &mut rdio::client::Client<T, S>,
    local: &Path,
    remote: &RemotePath,
    options: &FileOptions,
    pacer: &mut Pacer,
) -> Result<u64> {
    let stdin = local.as_os_str() == STDIO;
    let (mut source, meta): (Box<dyn Read>, Option<fs::Metadata>) = if stdin {
        (Box::new(io::stdin().lock()), None)
    } else {
        let file = File::open(local).with_context(|| format!("cannot open {}", local.display()))?;
        let meta = file
            .metadata()
            .with_context(|| format!("cannot stat {}", local.display()))?;
        if !meta.is_file() {
            bail!("{} is not a regular file", local.display());
        }
        (Box::new(file), Some(meta))
    };
    let name = if stdin {
        "standard input".to_owned()
    } else {
        local.display().to_string()
    };
    // Standard input: streamed until it ends, of a size known only then.
    let size = meta.as_ref().map(fs::Metadata::len);
    let total = size.map_or_else(|| "?".to_owned(), |size| size.to_string());
    // A server on this host serving the source itself: its open would
    // truncate the source. Refused before anything is opened for
    // writing, as by coreutils `cp`.
    if let Some(meta) = &meta
        && client
            .stat(&remote.path)
            .is_ok_and(|remote| is_remote_file(meta, &remote))
    {
        bail!("'{}' and '{remote}' are the same file", local.display());
    }
    let mut flags = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE;
    if options.in_place {
        flags |= OpenFlags::IN_PLACE;
    }
    let file = client
        .open(&remote.path, flags)
        .with_context(|| format!("cannot create {} on the server", remote.path))?;
    // What a failure leaves on the server: an upload is discarded there
    // when the connection ends without the close that commits it.
    let left = if options.in_place {
        "is incomplete"
    } else {
        "was not changed"
    };
    let progress = progress_bar(size);
    progress.set_message("put");
    let started = Instant::now();
    let mut digest = options.sha256.then(Sha256::new);
    let mut checksum = options.verify.then(Xxh3::new);
    let failed = |confirmed: u64, error: anyhow::Error| {
        anyhow!(
            "upload of {name} failed after {confirmed} of {total} bytes: {error:#}; {remote} on \
             the server {left}",
        )
    };
    // Up to the queue depth of writes in flight: the next chunk is read
    // from the file straight into a registered buffer of the client
    // (`write_buffer`, sent from there without a copy) while earlier
    // ones travel.
    let chunk = client.io_size();
    let mut in_flight: VecDeque<(Ticket, usize)> = VecDeque::new();
    // Bytes the server reported written, in order: what a failure
    // message can vouch for.
    let mut offset = 0u64;
    let mut sent = 0u64;
    let mut at_end = false;
    loop {
        // Interrupted: the connection is dropped without closing the
        // file, which leaves the server to treat the upload as lost.
        interrupt::check()?;
        while !at_end && in_flight.len() < client.queue_depth() {
            let mut buffer = client
                .write_buffer(chunk)
                .map_err(|e| failed(offset, e.into()))?;
            let n = read_full(&mut source, &mut buffer)
                .map_err(|e| failed(offset, anyhow!(e).context("local read")))?;
            at_end = n < chunk;
            if n == 0 {
                break;
            }
            buffer.truncate(n);
            if let Some(digest) = &mut digest {
                digest.update(&*buffer);
            }
            if let Some(checksum) = &mut checksum {
                checksum.update(&buffer);
            }
            pacer.admit(n as u64)?;
            let ticket = buffer
                .submit(&file, sent)
                .map_err(|e| failed(offset, e.into()))?;
            in_flight.push_back((ticket, n));
            sent += n as u64;
        }
        let Some((ticket, n)) = in_flight.pop_front() else {
            break;
        };
        let written = client
            .wait(ticket, &mut [])
            .map_err(|e| failed(offset, e.into()))?;
        if written != n as u64 {
            return Err(failed(
                offset,
                anyhow!("the server wrote {written} of {n} bytes"),
            ));
        }
        offset += n as u64;
        progress.inc(n as u64);
    }
    let elapsed = started.elapsed();
    progress.finish_and_clear();
    if let Some(size) = size.filter(|&size| size != offset) {
        return Err(anyhow!(Changed {
            expected: size,
            got: offset.to_string(),
        })
        .context(format!(
            "upload of {name} failed; {remote} on the server {left}"
        )));
    }
    // The close is what commits an upload: its failure means the
    // remote file was not replaced.
    client.close(file).map_err(|e| {
        anyhow!("upload of {name} failed at its close: {e}; {remote} on the server {left}")
    })?;
    // The server's checksum of the file as it now holds it.
    let verified = checksum
        .map(|checksum| {
            verify(client, &remote.path, offset, checksum.digest128()).with_context(|| {
                format!(
                    "upload of {name} to {remote} was not verified; the server now holds a \
                     file that differs"
                )
            })
        })
        .transpose()?;
    let sha256 = digest.map(|digest| hex(&digest.finalize()));
    report::summary(
        &format!(
            "put {name} -> {remote}: {} in {:.2} s ({}){}{}",
            Size(offset),
            elapsed.as_secs_f64(),
            rate(offset, elapsed),
            verified_note(verified.as_ref()),
            sha256_note(sha256.as_deref()),
        ),
        report::transfer_fields(
            "put",
            offset,
            elapsed,
            options.transport,
            verified.as_ref(),
            json!({
                "source": if stdin { STDIO.to_owned() } else { local.display().to_string() },
                "destination": remote.to_string(),
                "sha256": sha256,
            }),
        ),
    );
    Ok(offset)
}

/// `--bwlimit RATE`: a token bucket on submission. Before a request of
/// `n` bytes is submitted, the bytes submitted so far (this one
/// included) may exceed `RATE × elapsed` by at most one burst (a
/// request's size); otherwise the submission waits. Over a whole
/// transfer the rate is therefore at most `RATE`, plus one burst.
#[derive(Debug)]
pub struct Pacer {
    /// Bytes per second; `None`: no limit.
    rate: Option<u64>,
    burst: u64,
    start: Instant,
    admitted: u64,
}

impl Pacer {
    /// A limit of `rate` bytes per second (none for `None`), with bursts of
    /// `burst` bytes.
    pub fn new(rate: Option<u64>, burst: u64) -> Self {
        Self {
            rate,
            burst,
            start: Instant::now(),
            admitted: 0,
        }
    }

    /// Wait until `bytes` more may be submitted. Interruptible: a signal
    /// ends the wait with [`interrupt::Interrupted`].
    pub fn admit(&mut self, bytes: u64) -> Result<()> {
        let Some(rate) = self.rate else {
            return Ok(());
        };
        self.admitted = self.admitted.saturating_add(bytes);
        let due = self.admitted.saturating_sub(self.burst) as f64 / rate as f64;
        loop {
            interrupt::check()?;
            let wait = due - self.start.elapsed().as_secs_f64();
            if wait <= 0.0 {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_secs_f64(wait.min(0.1)));
        }
    }
}

/// Whether the server's `remote` file is the local file with `local`
/// metadata (a server on this host): the same identity (device and inode,
/// as [`rdio::server::file_id`] derives it), size and modification time to
/// the nanosecond — a coincidence between two hosts is out of reach.
fn is_remote_file(local: &fs::Metadata, remote: &FileStat) -> bool {
    local.is_file()
        && remote.file_id == rdio::server::file_id(local)
        && remote.size == local.len()
        && remote.modified_ns == rdio::server::modified_ns(local)
}

/// `, sha256 HEX` when the bytes were hashed, else nothing.
fn sha256_note(digest: Option<&str>) -> String {
    digest.map_or_else(String::new, |digest| format!(", sha256 {digest}"))
}

/// `, verified xxh3-128 HEX` when the transfer was verified, else nothing.
fn verified_note(verified: Option<&Verified>) -> String {
    verified.map_or_else(String::new, |verified| {
        format!(", verified {} {}", verified.algorithm, verified.value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// The comparison behind exit status 25: a digest or a length that is
    /// not the server's fails with [`VerifyFailed`], naming both; the
    /// right ones pass.
    #[test]
    fn verification_compares_digest_and_length_with_the_servers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = b"what the server holds".repeat(1000);
        fs::write(dir.path().join("f"), &data).expect("write");
        let mut pair = rdio::embedded::Embedded::start_inline(dir.path(), Default::default())
            .expect("embedded pair");
        let right = xxhash_rust::xxh3::xxh3_128(&data);
        let len = data.len() as u64;
        let verified = verify(&mut pair.client, "f", len, right).expect("the same bytes");
        assert_eq!(verified.value, format!("{right:032x}"));
        // One bit off, as a corrupted transfer would hash.
        let error = verify(&mut pair.client, "f", len, right ^ 1).expect_err("corrupted");
        assert!(error.is::<VerifyFailed>(), "{error:#}");
        let message = format!("{error:#}");
        assert!(
            message.contains(&format!("{right:032x}"))
                && message.contains(&format!("{:032x}", right ^ 1)),
            "{message}"
        );
        let error = verify(&mut pair.client, "f", len - 1, right).expect_err("short");
        assert!(
            format!("{error:#}").contains(&format!("holds {len} bytes")),
            "{error:#}"
        );
        // A file the server cannot hash is an error, not a pass.
        assert!(verify(&mut pair.client, "missing", 0, 0).is_err());
        pair.finish().expect("finish");
    }

    #[test]
    fn a_directory_destination_takes_the_remote_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            destination(dir.path(), "a/b/file.bin").expect("name"),
            dir.path().join("file.bin")
        );
        let file = dir.path().join("chosen");
        assert_eq!(destination(&file, "a/b/file.bin").expect("name"), file);
        fs::create_dir(dir.path().join("sub")).expect("mkdir");
        assert!(destination(&dir.path().join("sub"), "..").is_err());
    }
}
