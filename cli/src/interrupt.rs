//! SIGINT and SIGTERM for the commands that move data (`cp`, `get`, `put`,
//! `bench`): stop, remove what this process left half-made, say
//! `interrupted`, exit with 130.
//!
//! [`install`] blocks both signals in the main thread before any other
//! thread starts or libfabric is loaded, so every thread inherits the mask
//! and no handler (libfabric's providers install their own, which re-raise
//! with the default action) ever runs; a thread of its own takes them with
//! `sigwait`. The first one sets a flag the transfer loops poll between
//! requests ([`check`]): the command stops, its own clean-up runs (the
//! drops of its temporary files and directories), and `main` ends through
//! [`exit`]. Should the command not get there within [`GRACE`] (a request
//! stuck on a silent server), or a second signal come, the signal thread
//! removes every registered [`Debris`] path itself and exits at once.

use anyhow::{Context, Result};
use nix::sys::signal::{SigSet, Signal};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// The exit status of an interrupted command (128 + SIGINT, as shells
/// report it).
pub const EXIT_CODE: u8 = 130;

/// How long the command has, after the first signal, to stop and clean up
/// by itself before the signal thread does it.
pub const GRACE: Duration = Duration::from_secs(2);

/// The signal that asked the command to stop, or 0.
static STOP: AtomicI32 = AtomicI32::new(0);

/// Paths to remove if the process has to end before their owners do it.
static DEBRIS: Mutex<Vec<(u64, PathBuf)>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// The error a command returns when it stopped because of a signal.
#[derive(Clone, Copy, Debug)]
pub struct Interrupted(Signal);

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "interrupted by {}", self.0.as_str())
    }
}

impl std::error::Error for Interrupted {}

/// Block SIGINT and SIGTERM in this thread (which must be the only one)
/// and start the thread that takes them.
pub fn install() -> Result<()> {
    let set = signals();
    set.thread_block()
        .context("cannot block SIGINT and SIGTERM")?;
    std::thread::Builder::new()
        .name("rdio-signals".to_owned())
        .spawn(move || watch(set))
        .context("cannot start the signal thread")?;
    Ok(())
}

fn signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set
}

fn watch(set: SigSet) {
    let Ok(first) = set.wait() else {
        return;
    };
    STOP.store(first as i32, Ordering::SeqCst);
    // The command gets GRACE to stop by itself; then this thread ends it.
    let _ = std::thread::Builder::new()
        .name("rdio-grace".to_owned())
        .spawn(move || {
            std::thread::sleep(GRACE);
            exit(first);
        });
    // A second signal ends it at once.
    if let Ok(second) = set.wait() {
        exit(second);
    }
}

/// `Err(Interrupted)` once SIGINT or SIGTERM has arrived.
pub fn check() -> Result<(), Interrupted> {
    match Signal::try_from(STOP.load(Ordering::SeqCst)) {
        Ok(signal) => Err(Interrupted(signal)),
        Err(_) => Ok(()),
    }
}

fn debris() -> MutexGuard<'static, Vec<(u64, PathBuf)>> {
    DEBRIS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Remove every registered path, say `interrupted` and end the process
/// with [`EXIT_CODE`], without running other threads' code or any
/// library's exit handlers (libfabric may be in use on another thread).
pub fn exit(signal: Signal) -> ! {
    // Held until the end: no path is registered or handed over meanwhile.
    let mut paths = debris();
    for (_, path) in paths.drain(..) {
        remove(&path);
    }
    eprintln!("rdio: interrupted by {}", signal.as_str());
    // SAFETY: `_exit` only ends the process; it takes no pointers and is
    // async-signal-safe.
    unsafe { libc::_exit(i32::from(EXIT_CODE)) }
}

/// The signal behind `error`, if it is an [`Interrupted`].
pub fn signal_of(error: &anyhow::Error) -> Option<Signal> {
    error
        .chain()
        .find_map(|cause| cause.downcast_ref::<Interrupted>())
        .map(|interrupted| interrupted.0)
}

fn remove(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            let _ = std::fs::remove_dir_all(path);
        }
        Ok(_) => {
            let _ = std::fs::remove_file(path);
        }
        Err(_) => {}
    }
}

/// A file or directory this process is making that must not outlive an
/// interruption: registered while the guard lives, removed by the signal
/// thread if the process has to end before its owner cleans it up. With
/// [`Debris::remove_on_drop`], the guard also removes it when dropped
/// (unless [`Debris::keep`] was called): for a file no other drop removes,
/// such as an upload under its final name.
#[derive(Debug)]
pub struct Debris {
    id: u64,
    path: PathBuf,
    remove_on_drop: bool,
}

impl Debris {
    /// Register `path`; the caller's own clean-up removes it.
    pub fn register(path: &Path) -> Self {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        debris().push((id, path.to_owned()));
        Self {
            id,
            path: path.to_owned(),
            remove_on_drop: false,
        }
    }

    /// Register `path` and remove it when this guard is dropped unless
    /// [`Debris::keep`] is called first.
    pub fn remove_on_drop(path: &Path) -> Self {
        let mut debris = Self::register(path);
        debris.remove_on_drop = true;
        debris
    }

    /// The path is complete: keep it.
    pub fn keep(mut self) {
        self.remove_on_drop = false;
    }

    /// Run `finish` (e.g. the rename of a complete file over its final
    /// name) with the registry held, so the signal thread cannot remove
    /// the path half-way, and unregister it.
    pub fn keep_with<T>(mut self, finish: impl FnOnce() -> T) -> T {
        let mut paths = debris();
        let result = finish();
        paths.retain(|(id, _)| *id != self.id);
        self.remove_on_drop = false;
        drop(paths);
        result
    }
}

impl Drop for Debris {
    fn drop(&mut self) {
        let mut paths = debris();
        paths.retain(|(id, _)| *id != self.id);
        if self.remove_on_drop {
            remove(&self.path);
        }
    }
}
