//! What the CLI test binaries share: the `rdio` binary run with a home of
//! its own, and `rdio serve` started on an ephemeral port.
// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// The `rdio` binary under test.
pub const RDIO: &str = env!("CARGO_BIN_EXE_rdio");

/// `rdio` with `home` as its home: `serve` creates its identity, clients
/// file and this user's credential there on first start, and clients find
/// and pin them there, as between two shells of one user — isolated from
/// the real home and from the XDG directories of whoever runs the tests.
pub fn rdio_in(home: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new(RDIO);
    command
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_STATE_HOME");
    command
}

/// Spawn `command`, an `rdio serve … --listen HOST:0`, with its stdout
/// piped, and wait for its first line, `rdio serve: listening on
/// HOST:PORT …`: the child, the address it listens on and that line.
/// Panics, naming the line, when the server says anything else first.
pub fn spawn_serve(command: &mut Command) -> (Child, String, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn rdio serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the listening line");
    let addr = line
        .strip_prefix("rdio serve: listening on ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line from rdio serve: {line:?}"))
        .to_owned();
    (child, addr, line)
}
