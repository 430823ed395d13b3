//! `rdio get` and `rdio put` of one or several sources, and of directory
//! trees with `-r`: one connection to the server, then each file moved by
//! [`crate::transfer::download`] / [`crate::transfer::upload`].
//!
//! What crosses, and how:
//! * **Destinations** are those of `scp`: with one source, `DST` is the
//!   copy, or, if it is an existing directory, the copy goes inside it
//!   under the source's name; with several sources `DST` must be an
//!   existing directory (a remote one may be named with a trailing `/`).
//! * **Directories** need `-r`; their entries are copied in name order,
//!   nested directories and empty files included.
//! * **Symbolic links are skipped, with a warning naming each** (as rsync
//!   without `-l`): a link's target may lie outside the tree or the
//!   export, and rdio's server never creates links. Devices, FIFOs and
//!   sockets inside a tree are skipped the same way.
//! * `--no-clobber` never overwrites: a destination file that exists is
//!   left alone and named on standard error at the end. For `put` the
//!   check is made on the server just before the upload, so a file that
//!   appears in between is still replaced.
//! * `-p` keeps each file's and directory's permission bits (`rwx` for
//!   owner, group and others) and modification time; directories get
//!   theirs after their contents are copied.
//! * The first failure stops the command (exit status 1, or 24 for a
//!   file that changed during its transfer); files copied before it stay.
//!   A name inside a tree that is not UTF-8 is such a failure.

use crate::interrupt;
use crate::network::{ClientJob, Tuning, connect, resolve};
use crate::remote::RemotePath;
use crate::transfer::{self, FileOptions, Pacer};
use anyhow::{Context, Result, bail};
use rdio::client::{Client, ClientError};
use rdio::net::RdmaConnector;
use rdio_core::wire::{EntryKind, MakeDirFlags};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What both directions take from the command line besides their paths.
#[derive(Debug, Clone)]
pub struct TreeOptions {
    /// `-r`: copy directories and what they hold.
    pub recursive: bool,
    /// `--no-clobber`: never overwrite an existing destination file.
    pub no_clobber: bool,
    /// `-p`: keep permission bits and modification times.
    pub preserve: bool,
    /// `--bwlimit`: bytes per second at most.
    pub bwlimit: Option<u64>,
    /// How each file moves.
    pub file: FileOptions,
    /// `--stats`: print the client's counters at the end.
    pub stats: bool,
}

/// `rdio get`.
#[derive(Debug)]
pub struct Get {
    /// Remote sources, all on one server.
    pub sources: Vec<RemotePath>,
    /// Local destination: a file, a directory, `-` (standard output, one
    /// file only), or `None` for the current directory.
    pub local: Option<PathBuf>,
    pub tuning: Tuning,
    pub options: TreeOptions,
}

/// `rdio put`.
#[derive(Debug)]
pub struct Put {
    /// Local sources.
    pub sources: Vec<PathBuf>,
    /// Remote destination.
    pub remote: RemotePath,
    pub tuning: Tuning,
    pub options: TreeOptions,
}

/// What a tree transfer did, for its closing lines.
#[derive(Debug, Default)]
struct Tally {
    files: usize,
    bytes: u64,
    /// Destinations left alone by `--no-clobber`.
    skipped: Vec<String>,
}

/// `a/b` from a remote directory and an entry name.
fn remote_join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// The last component of a remote path (`a/b/` is `b`), if it has one.
fn remote_name(path: &str) -> Option<&str> {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|name| !name.is_empty() && *name != "." && *name != "..")
}

/// Nanoseconds since the epoch of `time` (0 before it).
fn nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
    })
}

fn warn_skipped(path: &dyn std::fmt::Display, what: &str) {
    crate::report::warn(&format!(
        "skipped {path}: {what} (symlinks and special files are not copied)"
    ));
}

fn finish(tally: &Tally, several: bool) {
    if crate::report::quiet() {
        return;
    }
    if several {
        eprintln!(
            "rdio: {} files, {} copied",
            tally.files,
            crate::size::Size(tally.bytes)
        );
    }
    if !tally.skipped.is_empty() {
        eprintln!(
            "rdio: skipped {} existing (--no-clobber): {}",
            tally.skipped.len(),
            tally.skipped.join(", ")
        );
    }
}

struct Downloader<'c, T: rdio_transport::Transport, S: Read + Write> {
    client: &'c mut Client<T, S>,
    /// The server, for the remote paths' `HOST:PORT`.
    server: &'c RemotePath,
    options: &'c TreeOptions,
    pacer: Pacer,
    tally: Tally,
}

impl<T: rdio_transport::Transport, S: Read + Write> Downloader<'_, T, S> {
    fn remote(&self, path: &str) -> RemotePath {
        RemotePath {
            path: path.to_owned(),
            ..self.server.clone()
        }
    }

    /// Copy the remote `path`, which `attributes` describe, to `target`;
    /// `-p` applies them when `preserve`.
    fn copy(
        &mut self,
        path: &str,
        attributes: rdio_core::wire::Attributes,
        target: &Path,
        preserve: bool,
    ) -> Result<()> {
        interrupt::check()?;
        match attributes.kind {
            EntryKind::File => {
                if self.options.no_clobber && fs::symlink_metadata(target).is_ok() {
                    self.tally.skipped.push(target.display().to_string());
                    return Ok(());
                }
                let remote = self.remote(path);
                let bytes = transfer::download(
                    self.client,
                    &remote,
                    target,
                    &self.options.file,
                    &mut self.pacer,
                )?;
                self.tally.files += 1;
                self.tally.bytes += bytes;
            }
            EntryKind::Directory => {
                if !self.options.recursive {
                    bail!("{} is a directory (use -r to copy it)", self.remote(path));
                }
                match fs::create_dir(target) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && target.is_dir() => {}
                    Err(e) => {
                        return Err(e)
                            .with_context(|| format!("cannot create {}", target.display()));
                    }
                }
                let entries = self
                    .client
                    .tree()
                    .list(path)
                    .with_context(|| format!("cannot list {}", self.remote(path)))?;
                for entry in entries {
                    let name = String::from_utf8(entry.name).map_err(|e| {
                        anyhow::anyhow!(
                            "{}: a name that is not UTF-8 ({:?})",
                            self.remote(path),
                            String::from_utf8_lossy(e.as_bytes())
                        )
                    })?;
                    let preserve = self.options.preserve;
                    self.copy(
                        &remote_join(path, &name),
                        entry.attributes,
                        &target.join(&name),
                        preserve,
                    )?;
                }
            }
            EntryKind::Symlink | EntryKind::Other => {
                warn_skipped(&self.remote(path), attributes.kind.as_str());
                return Ok(());
            }
        }
        if preserve {
            set_local_attributes(target, attributes.mode, attributes.modified_ns)?;
        }
        Ok(())
    }
}

/// `-p` for a download: the modification time, then the permission bits
/// (last, so a read-only mode cannot stop the first).
fn set_local_attributes(target: &Path, mode: u32, modified_ns: u64) -> Result<()> {
    let modified = UNIX_EPOCH + Duration::from_nanos(modified_ns);
    fs::File::open(target)
        .and_then(|file| file.set_modified(modified))
        .with_context(|| format!("cannot set the modification time of {}", target.display()))?;
    fs::set_permissions(target, fs::Permissions::from_mode(mode & 0o777))
        .with_context(|| format!("cannot set the permissions of {}", target.display()))
}

impl ClientJob for &Get {
    fn run<C: RdmaConnector>(self, connector: &C) -> Result<()> {
        let first = self.sources.first().context("nothing to get")?;
        if let Some(other) = self
            .sources
            .iter()
            .find(|s| (&s.host, s.port) != (&first.host, first.port))
        {
            bail!("all sources must be on one server: {first} and {other} are not");
        }
        let several = self.sources.len() > 1;
        let local = self.local.clone().unwrap_or_else(|| PathBuf::from("."));
        let stdout = local.as_os_str() == transfer::STDIO;
        if stdout && (several || self.options.recursive) {
            return Err(anyhow::anyhow!(transfer::Usage(
                "'-' (standard output) takes one file: not several sources or -r".to_owned()
            )));
        }
        let into_dir = !stdout && local.is_dir();
        // A destination in a directory that does not exist is a usage
        // error, found before connecting.
        if !stdout && !into_dir {
            let parent = match local.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir,
                _ => Path::new("."),
            };
            if !parent.is_dir() {
                return Err(anyhow::anyhow!(transfer::Usage(format!(
                    "cannot write {}: the directory {} does not exist",
                    local.display(),
                    parent.display()
                ))));
            }
        }
        if several && !into_dir {
            bail!(
                "{} is not a directory (several sources go into one)",
                local.display()
            );
        }
        let server = resolve(&first.host, first.port)?;
        let mut client = connect(server, &self.tuning, connector)
            .with_context(|| format!("cannot connect to {server}"))?;
        let burst = client.io_size() as u64;
        let mut downloader = Downloader {
            client: &mut client,
            server: first,
            options: &self.options,
            pacer: Pacer::new(self.options.bwlimit, burst),
            tally: Tally::default(),
        };
        let mut directories = false;
        for source in &self.sources {
            // A source named on the command line is followed if it is a
            // symlink (the open follows it, confined to the export); -p
            // then keeps only what the link's target gets by default.
            let plain = rdio_core::wire::Attributes {
                kind: EntryKind::File,
                ..rdio_core::wire::Attributes::NONE
            };
            let (attributes, preserve) = match downloader.client.tree().attributes(&source.path) {
                Ok(a) if a.kind == EntryKind::Symlink => (plain, false),
                Ok(a) => (a, self.options.preserve),
                // The open says why, as for any get; a server without the
                // remote file operations (it skips the unknown request and
                // reads on) still serves plain files.
                Err(ClientError::Remote { .. }) => (plain, false),
                Err(ClientError::Pipe(rdio::pipe::PipeError::Refused { code, .. }))
                    if code == rdio_core::wire::PipeErrorCode::UNKNOWN_OPCODE =>
                {
                    (plain, false)
                }
                Err(e) => return Err(e).with_context(|| format!("cannot stat {source}")),
            };
            directories |= attributes.kind == EntryKind::Directory;
            let target = match attributes.kind {
                _ if stdout => local.clone(),
                EntryKind::Directory if into_dir => {
                    let name = remote_name(&source.path)
                        .with_context(|| format!("{source} has no name to copy into"))?;
                    local.join(name)
                }
                EntryKind::Directory => local.clone(),
                _ => transfer::destination(&local, &source.path)?,
            };
            downloader.copy(&source.path, attributes, &target, preserve)?;
        }
        let tally = std::mem::take(&mut downloader.tally);
        if self.options.stats {
            crate::metrics::print_client(client.stats())?;
        }
        client.shutdown().context("closing the connection failed")?;
        finish(&tally, several || directories);
        Ok(())
    }
}

struct Uploader<'c, T: rdio_transport::Transport, S: Read + Write> {
    client: &'c mut Client<T, S>,
    server: &'c RemotePath,
    options: &'c TreeOptions,
    pacer: Pacer,
    tally: Tally,
}

impl<T: rdio_transport::Transport, S: Read + Write> Uploader<'_, T, S> {
    fn remote(&self, path: &str) -> RemotePath {
        RemotePath {
            path: path.to_owned(),
            ..self.server.clone()
        }
    }

    /// Copy the local `source` to the remote `path`; a symlink is followed
    /// only when `follow` (a source named on the command line).
    fn copy(&mut self, source: &Path, path: &str, follow: bool) -> Result<()> {
        interrupt::check()?;
        if source.as_os_str() == transfer::STDIO {
            if self.options.no_clobber && self.client.tree().attributes(path).is_ok() {
                self.tally.skipped.push(self.remote(path).to_string());
                return Ok(());
            }
            let remote = self.remote(path);
            let bytes = transfer::upload(
                self.client,
                source,
                &remote,
                &self.options.file,
                &mut self.pacer,
            )?;
            self.tally.files += 1;
            self.tally.bytes += bytes;
            return Ok(());
        }
        let meta = if follow {
            fs::metadata(source)
        } else {
            fs::symlink_metadata(source)
        }
        .with_context(|| format!("cannot stat {}", source.display()))?;
        let kind = meta.file_type();
        if kind.is_file() {
            if self.options.no_clobber && self.client.tree().attributes(path).is_ok() {
                self.tally.skipped.push(self.remote(path).to_string());
                return Ok(());
            }
            let remote = self.remote(path);
            let bytes = transfer::upload(
                self.client,
                source,
                &remote,
                &self.options.file,
                &mut self.pacer,
            )?;
            self.tally.files += 1;
            self.tally.bytes += bytes;
        } else if kind.is_dir() {
            if !self.options.recursive {
                bail!("{} is a directory (use -r to copy it)", source.display());
            }
            self.client
                .tree()
                .make_dir(path, 0o755, MakeDirFlags::PARENTS)
                .with_context(|| format!("cannot create the directory {}", self.remote(path)))?;
            let mut names: Vec<_> = fs::read_dir(source)
                .with_context(|| format!("cannot list {}", source.display()))?
                .map(|entry| entry.map(|entry| entry.file_name()))
                .collect::<std::io::Result<_>>()
                .with_context(|| format!("cannot list {}", source.display()))?;
            names.sort();
            for name in names {
                let text = name.to_str().with_context(|| {
                    format!("{}: a name that is not UTF-8 ({name:?})", source.display())
                })?;
                self.copy(&source.join(&name), &remote_join(path, text), false)?;
            }
        } else {
            let what = if kind.is_symlink() {
                "symlink"
            } else {
                "special file"
            };
            warn_skipped(&source.display(), what);
            return Ok(());
        }
        if self.options.preserve {
            let modified = meta.modified().map(nanos).unwrap_or(0);
            self.client
                .tree()
                .set_attributes(path, Some(meta.mode() & 0o777), Some(modified))
                .with_context(|| format!("cannot set the attributes of {}", self.remote(path)))?;
        }
        Ok(())
    }
}

impl ClientJob for &Put {
    fn run<C: RdmaConnector>(self, connector: &C) -> Result<()> {
        let several = self.sources.len() > 1;
        let stdin = self
            .sources
            .iter()
            .any(|source| source.as_os_str() == transfer::STDIO);
        if stdin && several {
            return Err(anyhow::anyhow!(transfer::Usage(
                "'-' (standard input) must be the only source".to_owned()
            )));
        }
        for source in self.sources.iter().filter(|_| !stdin) {
            // Every source is checked before anything is sent.
            fs::metadata(source).with_context(|| format!("cannot open {}", source.display()))?;
        }
        let server = resolve(&self.remote.host, self.remote.port)?;
        let mut client = connect(server, &self.tuning, connector)
            .with_context(|| format!("cannot connect to {server}"))?;
        let dest = &self.remote.path;
        let into_dir = match client.tree().attributes(dest) {
            Ok(a) => a.kind == EntryKind::Directory,
            Err(_) => false,
        };
        if (several || dest.ends_with('/')) && !into_dir {
            bail!(
                "{} is not a directory on the server{}",
                self.remote,
                if several {
                    " (several sources go into one)"
                } else {
                    ""
                }
            );
        }
        let burst = client.io_size() as u64;
        let mut uploader = Uploader {
            client: &mut client,
            server: &self.remote,
            options: &self.options,
            pacer: Pacer::new(self.options.bwlimit, burst),
            tally: Tally::default(),
        };
        let mut directories = false;
        for source in &self.sources {
            directories |= source.is_dir();
            let path = if into_dir && source.as_os_str() == transfer::STDIO {
                bail!(
                    "{} is a directory on the server: name the file to write standard input to",
                    self.remote
                );
            } else if into_dir {
                let name = source
                    .file_name()
                    .and_then(|name| name.to_str())
                    .with_context(|| format!("{} has no name to copy into", source.display()))?;
                remote_join(dest, name)
            } else {
                dest.clone()
            };
            uploader.copy(source, &path, true)?;
        }
        let tally = std::mem::take(&mut uploader.tally);
        if self.options.stats {
            crate::metrics::print_client(client.stats())?;
        }
        client.shutdown().context("closing the connection failed")?;
        finish(&tally, several || directories);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_names_and_joins() {
        assert_eq!(remote_name("a/b/"), Some("b"));
        assert_eq!(remote_name("/"), None);
        assert_eq!(remote_name(".."), None);
        assert_eq!(remote_join("d/", "x"), "d/x");
        assert_eq!(remote_join("d", "x"), "d/x");
    }
}
