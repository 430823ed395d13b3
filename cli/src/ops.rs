//! `rdio ls`, `stat`, `rm`, `mkdir` and `mv`: remote file operations on
//! the side channel, as smbclient has them. They connect the side channel
//! only (TLS and the client's authentication, as for `get` and `put`; no
//! RDMA connection), and the server carries each one out confined to its
//! export and subject to its permissions (`docs/PROTOCOL.md`, "Remote file
//! operations").

use crate::interrupt;
use crate::remote::RemotePath;
use crate::{CaptureArgs, NetArgs};
use anyhow::{Context, Result, bail};
use clap::Args;
use rdio::capture::PipeTap;
use rdio::client::{ClientError, Entry, FileSession};
use rdio::net::PipeStream;
use rdio_core::wire::{Attributes, EntryKind, MakeDirFlags, RemoveFlags, RenameFlags, Status};
use std::fmt::Write as _;

/// `rdio ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Remote directory (or file), HOST:PATH or HOST:PORT:PATH; `HOST:/`
    /// is the export's root.
    remote: RemotePath,
    /// Long listing: type and permissions, size, modification time (UTC),
    /// name.
    #[arg(short = 'l')]
    long: bool,
    /// One JSON object per entry, in an array: name, type, mode, size,
    /// modified_ns.
    #[arg(long, conflicts_with = "long")]
    json: bool,
    #[command(flatten)]
    net: NetArgs,
    #[command(flatten)]
    capture: CaptureArgs,
}

/// `rdio stat`.
#[derive(Debug, Args)]
pub struct StatArgs {
    /// Remote path, HOST:PATH or HOST:PORT:PATH (a symlink is described,
    /// not followed).
    remote: RemotePath,
    /// The same fields as one JSON object.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    net: NetArgs,
    #[command(flatten)]
    capture: CaptureArgs,
}

/// `rdio rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Remote file or symlink (with -d or -r, directory) to remove,
    /// HOST:PATH or HOST:PORT:PATH.
    remote: RemotePath,
    /// Remove an empty directory too (a non-empty one is refused).
    #[arg(short = 'd', long = "dir")]
    dir: bool,
    /// Remove a directory and everything in it, walked on the client
    /// (list, then remove each entry, deepest first). Symlinks are removed
    /// as links, never followed; the export's root is refused.
    #[arg(short = 'r', short_alias = 'R', long)]
    recursive: bool,
    #[command(flatten)]
    net: NetArgs,
    #[command(flatten)]
    capture: CaptureArgs,
}

/// `rdio mkdir`.
#[derive(Debug, Args)]
pub struct MkdirArgs {
    /// Remote directory to create, HOST:PATH or HOST:PORT:PATH.
    remote: RemotePath,
    /// Create missing parents too, and succeed if the directory exists.
    #[arg(short = 'p', long)]
    parents: bool,
    #[command(flatten)]
    net: NetArgs,
    #[command(flatten)]
    capture: CaptureArgs,
}

/// `rdio mv`.
#[derive(Debug, Args)]
pub struct MvArgs {
    /// Remote path to move, HOST:PATH or HOST:PORT:PATH.
    remote: RemotePath,
    /// New path on the same server (relative to its export, or
    /// HOST:PATH naming the same server). An existing directory, or a path
    /// ending in '/', receives SRC under its own name.
    dst: String,
    /// Never replace an existing destination: it is left alone and the
    /// move is skipped, with a notice (exit status 0).
    #[arg(short = 'n', long)]
    no_clobber: bool,
    #[command(flatten)]
    net: NetArgs,
    #[command(flatten)]
    capture: CaptureArgs,
}

/// A remote file operation to run.
#[derive(Debug)]
pub enum Op {
    Ls(LsArgs),
    Stat(StatArgs),
    Rm(RmArgs),
    Mkdir(MkdirArgs),
    Mv(MvArgs),
}

type Session = FileSession<PipeTap<PipeStream>>;

impl Op {
    fn parts(&self) -> (&RemotePath, &NetArgs, &CaptureArgs) {
        match self {
            Self::Ls(a) => (&a.remote, &a.net, &a.capture),
            Self::Stat(a) => (&a.remote, &a.net, &a.capture),
            Self::Rm(a) => (&a.remote, &a.net, &a.capture),
            Self::Mkdir(a) => (&a.remote, &a.net, &a.capture),
            Self::Mv(a) => (&a.remote, &a.net, &a.capture),
        }
    }

    /// Connect the side channel and carry the operation out.
    pub fn run(&self) -> Result<()> {
        let (remote, net, capture_args) = self.parts();
        crate::access::set_client_security(net, &remote.host)?;
        let path = capture_args.capture.as_deref();
        let capture = crate::network::capture(path)?;
        let result = self.connect_and_run(remote, net, capture.clone());
        let finished = crate::network::finish_capture(capture, path);
        result.and(finished)
    }

    fn connect_and_run(
        &self,
        remote: &RemotePath,
        net: &NetArgs,
        capture: Option<std::sync::Arc<rdio::capture::Recorder>>,
    ) -> Result<()> {
        let server = crate::network::resolve(&remote.host, remote.port)?;
        let security = crate::access::client_security()?;
        let mut session = rdio::net::connect_files(server, net.connect_timeout, security, capture)
            .with_context(|| format!("cannot connect to {server}"))?;
        match self {
            Self::Ls(args) => ls(&mut session, args),
            Self::Stat(args) => stat(&mut session, args),
            Self::Rm(args) if args.recursive => remove_tree(&mut session, remote),
            Self::Rm(args) => {
                let flags = if args.dir {
                    RemoveFlags::DIRECTORY
                } else {
                    RemoveFlags::empty()
                };
                session
                    .tree()
                    .remove(&remote.path, flags)
                    .with_context(|| format!("cannot remove {remote}"))
            }
            Self::Mkdir(args) => {
                let flags = if args.parents {
                    MakeDirFlags::PARENTS
                } else {
                    MakeDirFlags::empty()
                };
                session
                    .tree()
                    .make_dir(&remote.path, 0o755, flags)
                    .with_context(|| format!("cannot create the directory {remote}"))
            }
            Self::Mv(args) => mv(&mut session, args),
        }
    }
}

/// `rm -r`: remove `remote` and, when it is a directory, everything in
/// it, deepest first, with the side channel's list and remove operations
/// (the server confines each to its export and refuses them on a
/// read-only one). A symlink is an entry like a file: removed, never
/// followed. Stops at the first failure, naming the entry and what is
/// left.
fn remove_tree(session: &mut Session, remote: &RemotePath) -> Result<()> {
    let is_root = remote
        .path
        .split('/')
        .all(|component| component.is_empty() || component == ".");
    if is_root {
        bail!(
            "refusing to remove {remote}: it is the export's root (remove what is in it by name)"
        );
    }
    let top = remote.path.trim_end_matches('/').as_bytes().to_vec();
    let attributes = session
        .tree()
        .attributes(&top)
        .with_context(|| format!("cannot remove {remote}"))?;
    if attributes.kind != EntryKind::Directory {
        return session
            .tree()
            .remove(&top, RemoveFlags::empty())
            .with_context(|| format!("cannot remove {remote}"));
    }
    /// A directory being emptied: its path and the entries not yet removed.
    struct Pending {
        path: Vec<u8>,
        entries: std::vec::IntoIter<Entry>,
    }
    let mut removed = 0u64;
    let named = |path: &[u8]| {
        let mut at = remote.clone();
        at.path = String::from_utf8_lossy(path).into_owned();
        at
    };
    let failed = |path: &[u8], what: &str, removed: u64| {
        let left = if removed == 0 {
            "nothing was removed".to_owned()
        } else {
            format!("{removed} entries were removed before it, the rest is left")
        };
        format!(
            "cannot {what} {}; {remote} is not removed: {left}",
            named(path)
        )
    };
    let entries = session
        .tree()
        .list(&top)
        .with_context(|| failed(&top, "list", removed))?;
    let mut stack = vec![Pending {
        path: top,
        entries: entries.into_iter(),
    }];
    while let Some(pending) = stack.last_mut() {
        interrupt::check()?;
        let Some(entry) = pending.entries.next() else {
            // Emptied: the directory itself goes.
            let path = pending.path.clone();
            stack.pop();
            session
                .tree()
                .remove(&path, RemoveFlags::DIRECTORY)
                .with_context(|| failed(&path, "remove the directory", removed))?;
            removed += 1;
            continue;
        };
        // A name, not a path: anything else would remove something other
        // than this directory's entry.
        if matches!(&entry.name[..], b"" | b"." | b"..") || entry.name.contains(&b'/') {
            bail!(
                "{}",
                failed(
                    &pending.path,
                    &format!(
                        "remove {:?}, which is not a file name, listed by the server in",
                        String::from_utf8_lossy(&entry.name)
                    ),
                    removed
                )
            );
        }
        let mut path = pending.path.clone();
        path.push(b'/');
        path.extend_from_slice(&entry.name);
        if entry.attributes.kind == EntryKind::Directory {
            let entries = session
                .tree()
                .list(&path)
                .with_context(|| failed(&path, "list", removed))?;
            stack.push(Pending {
                path,
                entries: entries.into_iter(),
            });
        } else {
            session
                .tree()
                .remove(&path, RemoveFlags::empty())
                .with_context(|| failed(&path, "remove", removed))?;
            removed += 1;
        }
    }
    tracing::info!(target: "rdio::cli", path = %remote, removed, "removed a tree");
    Ok(())
}

fn ls(session: &mut Session, args: &LsArgs) -> Result<()> {
    let remote = &args.remote;
    let entries = match session.tree().list(&remote.path) {
        Ok(entries) => entries,
        // A file lists as itself, as with `ls FILE`.
        Err(ClientError::Remote {
            status: Status::NotADirectory,
            ..
        }) => {
            let attributes = session
                .tree()
                .attributes(&remote.path)
                .with_context(|| format!("cannot list {remote}"))?;
            let name = remote.path.rsplit('/').next().unwrap_or(&remote.path);
            vec![Entry {
                name: name.as_bytes().to_vec(),
                attributes,
            }]
        }
        Err(error) => return Err(error).with_context(|| format!("cannot list {remote}")),
    };
    let mut out = String::new();
    if args.json {
        out.push('[');
        for (i, entry) in entries.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&json_object(
                &String::from_utf8_lossy(&entry.name),
                &entry.attributes,
            ));
        }
        out.push_str("]\n");
    } else {
        for entry in &entries {
            let name = String::from_utf8_lossy(&entry.name);
            let a = &entry.attributes;
            if args.long {
                let _ = writeln!(
                    out,
                    "{} {:>12} {} {name}",
                    mode_string(a),
                    a.size,
                    utc(a.modified_ns, false)
                );
            } else if a.kind == EntryKind::Directory {
                let _ = writeln!(out, "{name}/");
            } else {
                let _ = writeln!(out, "{name}");
            }
        }
    }
    print!("{out}");
    Ok(())
}

fn stat(session: &mut Session, args: &StatArgs) -> Result<()> {
    let remote = &args.remote;
    let a = session
        .tree()
        .attributes(&remote.path)
        .with_context(|| format!("cannot stat {remote}"))?;
    if args.json {
        println!("{}", json_object(&remote.path, &a));
    } else {
        println!("path: {}", remote.path);
        println!("type: {}", a.kind.as_str());
        println!("size: {}", a.size);
        println!("mode: {:04o} ({})", a.mode, mode_string(&a));
        println!("modified: {}", utc(a.modified_ns, true));
    }
    Ok(())
}

fn mv(session: &mut Session, args: &MvArgs) -> Result<()> {
    let remote = &args.remote;
    let dst = match args.dst.parse::<RemotePath>() {
        // `HOST:PATH` naming the same server: its path.
        Ok(dst) if dst.host == remote.host && dst.port == remote.port => dst.path,
        Ok(dst) => {
            bail!("cannot move {remote} to {dst}: a move stays on one server (give a path on it)")
        }
        Err(_) => args.dst.clone(),
    };
    // Into an existing directory (or one named with a trailing '/') under
    // the source's own name, as `mv` does.
    let into_dir = dst.ends_with('/')
        || matches!(session.tree().attributes(&dst), Ok(a) if a.kind == EntryKind::Directory);
    let dst = if into_dir {
        let name = remote
            .path
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .filter(|name| !name.is_empty())
            .with_context(|| format!("{remote} has no name to move into {dst}"))?;
        format!("{}/{name}", dst.trim_end_matches('/'))
    } else {
        dst
    };
    let flags = if args.no_clobber {
        RenameFlags::NO_REPLACE
    } else {
        RenameFlags::empty()
    };
    match session.tree().rename(&remote.path, &dst, flags) {
        Ok(()) => Ok(()),
        Err(ClientError::Remote {
            status: Status::AlreadyExists,
            ..
        }) if args.no_clobber => {
            eprintln!("rdio: skipped {remote}: {dst} exists (--no-clobber)");
            Ok(())
        }
        Err(error) => Err(error).with_context(|| format!("cannot move {remote} to {dst}")),
    }
}

/// `drwxr-xr-x`, as `ls -l` shows it.
pub fn mode_string(attributes: &Attributes) -> String {
    let kind = match attributes.kind {
        EntryKind::File => '-',
        EntryKind::Directory => 'd',
        EntryKind::Symlink => 'l',
        EntryKind::Other => '?',
    };
    let mut out = String::from(kind);
    for shift in [6, 3, 0] {
        let bits = attributes.mode >> shift;
        out.push(if bits & 4 != 0 { 'r' } else { '-' });
        out.push(if bits & 2 != 0 { 'w' } else { '-' });
        out.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    out
}

/// `2026-12-05 07:26:51` (UTC), with nanoseconds when `precise`.
pub fn utc(ns: u64, precise: bool) -> String {
    let secs = ns / 1_000_000_000;
    let days = secs / 86_400;
    let rest = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let (h, m, s) = (rest / 3600, rest / 60 % 60, rest % 60);
    let mut out = format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02}");
    if precise {
        let _ = write!(out, ".{:09} UTC", ns % 1_000_000_000);
    }
    out
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard
/// Hinnant's `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// `{"name":...,"type":...,"mode":"0644","size":N,"modified_ns":N}`.
fn json_object(name: &str, a: &Attributes) -> String {
    format!(
        "{{\"name\":{},\"type\":\"{}\",\"mode\":\"{:04o}\",\"size\":{},\"modified_ns\":{}}}",
        json_string(name),
        a.kind.as_str(),
        a.mode,
        a.size,
        a.modified_ns
    )
}

/// A JSON string literal.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_modes_print_as_ls_does() {
        assert_eq!(utc(0, false), "1970-01-01 00:00:00");
        // 2000-02-29 12:34:56.5 UTC, a leap day.
        assert_eq!(
            utc(951_827_696_500_000_000, true),
            "2000-02-29 12:34:56.500000000 UTC"
        );
        let dir = Attributes {
            kind: EntryKind::Directory,
            mode: 0o750,
            ..Attributes::NONE
        };
        assert_eq!(mode_string(&dir), "drwxr-x---");
        assert_eq!(json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
