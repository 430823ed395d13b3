//! What the copying commands tell the user, and where: the progress bar,
//! the summary (a line of text, or `--json`), full reads from a local
//! file, rates and digests.
//!
//! Data goes to standard output only when asked (`get REMOTE -`);
//! summaries, progress and warnings go to standard error. `--json` prints
//! the summary as one JSON object on standard output instead, or on
//! standard error when standard output carries the data. `-q` silences
//! the summary, the progress bar and the warnings, never the errors.

use crate::size::Size;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};
use serde_json::{Value, json};
use std::io::{self, IsTerminal, Read, Write};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// When to draw a progress bar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// On a terminal (standard error), unless `--quiet` or `--json`.
    Auto,
    /// `--progress`: always, even when standard error is not a terminal.
    Always,
    /// `--no-progress`: never.
    Never,
}

/// The output options every command takes.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// `-q`: errors only.
    pub quiet: bool,
    /// `--json`: the summary as a JSON object.
    pub json: bool,
    /// `--progress` / `--no-progress`.
    pub progress: Progress,
}

static OPTIONS: OnceLock<Options> = OnceLock::new();
/// Standard output carries the data (`get REMOTE -`): the JSON summary
/// goes to standard error.
static DATA_ON_STDOUT: AtomicBool = AtomicBool::new(false);

/// Set the options once, before the command runs.
pub fn configure(options: Options) {
    let _ = OPTIONS.set(options);
}

fn options() -> Options {
    OPTIONS.get().copied().unwrap_or(Options {
        quiet: false,
        json: false,
        progress: Progress::Auto,
    })
}

/// Whether `--json` was given.
pub fn json() -> bool {
    options().json
}

/// A line of a command's text report (`bench`'s table): on standard
/// output, or on standard error with `--json`, which keeps standard output
/// for the JSON summary.
macro_rules! table_line {
    ($($arg:tt)*) => {
        if $crate::report::json() {
            eprintln!($($arg)*);
        } else {
            println!($($arg)*);
        }
    };
}
pub(crate) use table_line;

/// Whether `-q` was given.
pub fn quiet() -> bool {
    options().quiet
}

/// Standard output now carries data: keep everything else off it.
pub fn data_on_stdout() {
    DATA_ON_STDOUT.store(true, Ordering::SeqCst);
}

/// A warning line, `rdio: warning: ...`, on standard error (not with `-q`).
pub fn warn(text: &str) {
    if !quiet() {
        eprintln!("rdio: warning: {text}");
    }
}

/// The end of a command: `text` on standard error, or with `--json` the
/// object `fields` on standard output (standard error when the data went
/// to standard output); nothing with `-q` (but `--json` still prints).
pub fn summary(text: &str, fields: Value) {
    let options = options();
    if options.json {
        let line = fields.to_string();
        if DATA_ON_STDOUT.load(Ordering::SeqCst) {
            eprintln!("{line}");
        } else {
            let mut out = io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    } else if !options.quiet {
        eprintln!("{text}");
    }
}

/// The summary fields of a transfer: `bytes`, `seconds`, `rate` (bytes
/// per second), `transport`, `checksum` (`null` when nothing was
/// verified), plus `extra`.
pub fn transfer_fields(
    command: &str,
    bytes: u64,
    elapsed: Duration,
    transport: &str,
    checksum: Option<&Verified>,
    extra: Value,
) -> Value {
    let seconds = elapsed.as_secs_f64();
    let mut fields = json!({
        "command": command,
        "bytes": bytes,
        "seconds": seconds,
        "rate": if seconds > 0.0 { bytes as f64 / seconds } else { 0.0 },
        "transport": transport,
        "checksum": checksum.map(|verified| json!({
            "algorithm": verified.algorithm,
            "value": verified.value,
            "verified": verified.verified,
        })),
    });
    if let (Some(fields), Value::Object(extra)) = (fields.as_object_mut(), extra) {
        fields.extend(extra);
    }
    fields
}

/// A checksum in a summary.
#[derive(Clone, Debug)]
pub struct Verified {
    /// `xxh3-128`, `sha256`.
    pub algorithm: &'static str,
    /// Lower-case hex.
    pub value: String,
    /// Compared with the other end's and equal (`false`: only computed).
    pub verified: bool,
}

/// A byte-count progress bar on standard error with rate and ETA, of
/// `total` bytes (`None`: unknown, e.g. standard input), drawn as the
/// options say.
pub fn progress_bar(total: Option<u64>) -> ProgressBar {
    let options = options();
    let draw = match options.progress {
        Progress::Never => false,
        Progress::Always => true,
        Progress::Auto => !options.quiet && !options.json && io::stderr().is_terminal(),
    };
    let target = if !draw {
        ProgressDrawTarget::hidden()
    } else if io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::term_like(Box::new(PlainStderr))
    };
    let (bar, template) = match total {
        Some(total) => (
            ProgressBar::with_draw_target(Some(total), target),
            "{msg:>3} [{bar:30}] {binary_bytes}/{binary_total_bytes} \
             {binary_bytes_per_sec} ETA {eta}",
        ),
        None => (
            ProgressBar::with_draw_target(None, target),
            "{msg:>3} {spinner} {binary_bytes} {binary_bytes_per_sec}",
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    if draw {
        // Drawn at once with its total: a transfer that ends before the
        // first refresh still shows one bar.
        bar.tick();
    }
    bar
}

/// `--progress` when standard error is not a terminal: the bar redrawn on
/// one line with carriage returns, no cursor movement.
#[derive(Debug)]
struct PlainStderr;

impl TermLike for PlainStderr {
    fn width(&self) -> u16 {
        100
    }
    fn move_cursor_up(&self, _: usize) -> io::Result<()> {
        Ok(())
    }
    fn move_cursor_down(&self, _: usize) -> io::Result<()> {
        Ok(())
    }
    fn move_cursor_right(&self, _: usize) -> io::Result<()> {
        Ok(())
    }
    fn move_cursor_left(&self, _: usize) -> io::Result<()> {
        Ok(())
    }
    fn write_line(&self, s: &str) -> io::Result<()> {
        io::stderr().write_all(s.as_bytes())
    }
    fn write_str(&self, s: &str) -> io::Result<()> {
        io::stderr().write_all(s.as_bytes())
    }
    fn clear_line(&self) -> io::Result<()> {
        io::stderr().write_all(b"\r")
    }
    fn flush(&self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// Fill `buf` unless the reader ends first; returns the bytes read.
pub fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match reader.read(&mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// `bytes` over `elapsed` as `12.3 MiB/s`.
pub fn rate(bytes: u64, elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64();
    if seconds <= 0.0 {
        return "instant".to_owned();
    }
    format!("{}/s", Size((bytes as f64 / seconds) as u64))
}

/// Lower-case hex, for digests.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
