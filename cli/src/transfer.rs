//! `rdio get` and `rdio put`: one file between this host and an rdio
//! server; with `--sha256`, the SHA-256 of the bytes moved in the summary.
//!
//! A download lands in a temporary file next to its destination and is
//! renamed over it only once complete and on disk (fsync of the file, then
//! of the directory), so an interrupted transfer never looks like a
//! complete file. A destination that exists and is not a regular file (a
//! device such as `/dev/null`, a FIFO) is written in place instead —
//! renaming over it would replace it with a regular file — and a failure
//! then says how much of it was written. A symbolic link is followed: the
//! file it names is replaced, not the link. The protocol has no rename, so
//! an upload writes the remote file in place; a failure says how far it
//! got.

use crate::network::{ClientJob, Tuning, connect, resolve};
use crate::remote::RemotePath;
use crate::report::{hex, progress_bar, rate, read_full};
use crate::size::Size;
use anyhow::{Context, Result, anyhow, bail};
use rdio::client::Ticket;
use rdio::net::RdmaConnector;
use rdio_core::wire::OpenFlags;
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What `get` needs from the command line.
#[derive(Debug)]
pub struct Get {
    pub remote: RemotePath,
    pub local: PathBuf,
    pub tuning: Tuning,
    /// Hash the bytes moved and print the digest.
    pub sha256: bool,
    /// `--stats`: print the client's counters at the end.
    pub stats: bool,
}

/// What `put` needs from the command line.
#[derive(Debug)]
pub struct Put {
    pub local: PathBuf,
    pub remote: RemotePath,
    pub tuning: Tuning,
    /// Hash the bytes moved and print the digest.
    pub sha256: bool,
    /// `--stats`: print the client's counters at the end.
    pub stats: bool,
}

/// Where a download goes: `local`, or inside it under the remote file's
/// name when `local` is a directory.
fn destination(local: &Path, remote: &str) -> Result<PathBuf> {
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

/// Where a download's bytes go.
enum Output {
    /// A new file next to the destination, renamed over it once complete.
    Partial {
        file: tempfile::NamedTempFile,
        /// The destination's directory (fsynced after the rename).
        dir: PathBuf,
    },
    /// An existing device, FIFO or socket, written in place.
    InPlace(File),
}

impl Output {
    /// The output for `target`, and the path the download ends up at:
    /// `target`, or the file a symbolic link `target` names.
    fn open(target: &Path) -> Result<(Self, PathBuf)> {
        let target = match fs::symlink_metadata(target) {
            Ok(meta) if meta.file_type().is_symlink() => {
                fs::canonicalize(target).unwrap_or_else(|_| target.to_owned())
            }
            _ => target.to_owned(),
        };
        if let Ok(meta) = fs::metadata(&target) {
            if !meta.is_file() && !meta.is_dir() {
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
        Ok((Self::Partial { file, dir }, target))
    }

    fn in_place(&self) -> bool {
        matches!(self, Self::InPlace(_))
    }

    fn file(&mut self) -> &mut File {
        match self {
            Self::Partial { file, .. } => file.as_file_mut(),
            Self::InPlace(file) => file,
        }
    }

    /// Put a complete download in place: rename it over `target` and make
    /// the rename durable; nothing more for a device or FIFO.
    fn finish(self, target: &Path) -> Result<()> {
        let Self::Partial { file, dir } = self else {
            return Ok(());
        };
        file.persist(target)
            .with_context(|| format!("cannot rename the download to {}", target.display()))?;
        // The rename itself must survive a crash too.
        File::open(&dir)
            .and_then(|dir| dir.sync_all())
            .with_context(|| format!("cannot fsync {}", dir.display()))
    }
}

impl ClientJob for &Get {
    fn run<C: RdmaConnector>(self, connector: &C) -> Result<()> {
        let target = destination(&self.local, &self.remote.path)?;
        // The output first: a bad destination fails before any network
        // traffic.
        let (mut output, target) = Output::open(&target)?;

        let server = resolve(&self.remote.host, self.remote.port)?;
        let mut client = connect(server, &self.tuning, connector)
            .with_context(|| format!("cannot connect to {server}"))?;
        let file = client
            .open(&self.remote.path, OpenFlags::READ)
            .with_context(|| format!("cannot open {} on the server", self.remote.path))?;
        let progress = progress_bar(file.size);
        progress.set_message("get");
        let started = Instant::now();
        let mut digest = self.sha256.then(Sha256::new);
        let in_place = output.in_place();
        let failed = |offset: u64, error: anyhow::Error| {
            let outcome = if in_place {
                format!("{offset} bytes were written to {}", target.display())
            } else {
                format!("{} was not written", target.display())
            };
            anyhow!(
                "download of {} failed after {offset} of {} bytes: {error:#}; {outcome}",
                self.remote,
                file.size,
            )
        };
        // Up to the queue depth of reads in flight; each completed one is
        // hashed and written to disk straight from the buffer the server
        // wrote it into (no copy), while the others keep arriving.
        let chunk = client.io_size();
        // (file offset, ticket, length) of each read in flight.
        let mut in_flight: VecDeque<(u64, Ticket, usize)> = VecDeque::new();
        let mut offset = 0u64;
        let mut next = 0u64;
        let mut at_end = false;
        loop {
            // Reads run on past the size seen at open (the file may have
            // grown) until one comes back short, but only one at a time
            // there: for a file that did not grow it is the one empty read.
            while !at_end
                && in_flight.len() < client.queue_depth()
                && (next < file.size
                    || in_flight
                        .back()
                        .is_none_or(|&(start, ..)| start < file.size))
            {
                let len = if next < file.size {
                    chunk.min((file.size - next).try_into().unwrap_or(chunk))
                } else {
                    chunk
                };
                let ticket = client
                    .submit_read(&file, next, len)
                    .map_err(|e| failed(offset, e.into()))?;
                in_flight.push_back((next, ticket, len));
                next += len as u64;
            }
            let Some((_, ticket, len)) = in_flight.pop_front() else {
                break;
            };
            let view = client
                .wait_in_place(ticket)
                .map_err(|e| failed(offset, e.into()))?;
            if at_end {
                // Submitted before the end was seen: nothing to keep.
                continue;
            }
            if let Some(digest) = &mut digest {
                digest.update(&*view);
            }
            output
                .file()
                .write_all(&view)
                .map_err(|e| failed(offset, anyhow!(e).context("local write")))?;
            offset += view.len() as u64;
            progress.inc(view.len() as u64);
            // Short only at end of file: later reads start past it.
            at_end = view.len() < len;
        }
        if let Output::Partial { file: partial, .. } = &output {
            partial
                .as_file()
                .sync_all()
                .map_err(|e| failed(offset, anyhow!(e).context("fsync")))?;
        }
        let elapsed = started.elapsed();
        progress.finish_and_clear();
        output.finish(&target)?;
        client.close(file).context("close on the server failed")?;
        if self.stats {
            crate::metrics::print_client(client.stats(), client.credits(), client.credits_in_use());
        }
        client.shutdown().context("closing the connection failed")?;
        println!(
            "got {} -> {}: {} in {:.2} s ({}){}",
            self.remote,
            target.display(),
            Size(offset),
            elapsed.as_secs_f64(),
            rate(offset, elapsed),
            digest_note(digest),
        );
        Ok(())
    }
}

impl ClientJob for &Put {
    fn run<C: RdmaConnector>(self, connector: &C) -> Result<()> {
        let mut local = File::open(&self.local)
            .with_context(|| format!("cannot open {}", self.local.display()))?;
        let meta = local
            .metadata()
            .with_context(|| format!("cannot stat {}", self.local.display()))?;
        if !meta.is_file() {
            bail!("{} is not a regular file", self.local.display());
        }
        let size = meta.len();
        let server = resolve(&self.remote.host, self.remote.port)?;
        let mut client = connect(server, &self.tuning, connector)
            .with_context(|| format!("cannot connect to {server}"))?;
        let flags = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE;
        let file = client
            .open(&self.remote.path, flags)
            .with_context(|| format!("cannot create {} on the server", self.remote.path))?;
        let progress = progress_bar(size);
        progress.set_message("put");
        let started = Instant::now();
        let mut digest = self.sha256.then(Sha256::new);
        let failed = |confirmed: u64, error: anyhow::Error| {
            anyhow!(
                "upload of {} failed after {confirmed} of {size} bytes: {error:#}; {} on the \
                 server is incomplete",
                self.local.display(),
                self.remote
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
            while !at_end && in_flight.len() < client.queue_depth() {
                let mut buffer = client
                    .write_buffer(chunk)
                    .map_err(|e| failed(offset, e.into()))?;
                let n = read_full(&mut local, &mut buffer)
                    .map_err(|e| failed(offset, anyhow!(e).context("local read")))?;
                at_end = n < chunk;
                if n == 0 {
                    break;
                }
                buffer.truncate(n);
                if let Some(digest) = &mut digest {
                    digest.update(&*buffer);
                }
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
        if offset != size {
            bail!(
                "{} changed size while being uploaded ({size} bytes, then {offset}); {} on the \
                 server holds the {offset} bytes read",
                self.local.display(),
                self.remote
            );
        }
        client.close(file).context("close on the server failed")?;
        if self.stats {
            crate::metrics::print_client(client.stats(), client.credits(), client.credits_in_use());
        }
        client.shutdown().context("closing the connection failed")?;
        println!(
            "put {} -> {}: {} in {:.2} s ({}){}",
            self.local.display(),
            self.remote,
            Size(offset),
            elapsed.as_secs_f64(),
            rate(offset, elapsed),
            digest_note(digest),
        );
        Ok(())
    }
}

/// `, sha256 HEX` when the bytes were hashed, else nothing.
fn digest_note(digest: Option<Sha256>) -> String {
    digest.map_or_else(String::new, |digest| {
        format!(", sha256 {}", hex(&digest.finalize()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

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
