//! What the copying commands share: the progress bar, full reads from a
//! local file, and the summary's rate and digest.

use crate::size::Size;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{self, Read};
use std::time::Duration;

/// A byte-count progress bar on standard error; indicatif hides it when
/// standard error is not a terminal, so scripts and tests see nothing.
pub fn progress_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:>3} [{bar:40}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
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
