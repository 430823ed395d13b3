//! The `tracing` subscriber: spans for RDMA connections and side-channel
//! sessions, events for authentication, registrations and every request
//! (`request` = the wire's request id), on standard error.
//!
//! `RUST_LOG` (or `RDIO_LOG`, which wins) takes `tracing-subscriber`'s
//! `EnvFilter` directives, e.g. `RUST_LOG=rdio=debug` or
//! `RUST_LOG=rdio::client=trace`; the default shows warnings only, and for
//! `serve` its access log (`rdio::access` at info).
//! `RDIO_LOG_FORMAT=json` writes one JSON object per line instead of text.
//! `-q` (level error) and `-v`, `-vv`, `-vvv` (info, debug, trace) set the
//! filter themselves, over the environment.

use anyhow::{Result, bail};
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Install the subscriber, filtering with `flags` (what `-q` or `-v`
/// asked for) if given, else `RDIO_LOG` or `RUST_LOG` if set, else
/// `default`; a filter or format that does not parse is an error (before
/// anything runs).
pub fn init(default: &str, flags: Option<&str>) -> Result<()> {
    let (variable, directives) = match (flags, std::env::var("RDIO_LOG"), std::env::var("RUST_LOG"))
    {
        (Some(directives), ..) => ("-v/-q", directives.to_owned()),
        (None, Ok(directives), _) => ("RDIO_LOG", directives),
        (None, _, Ok(directives)) => ("RUST_LOG", directives),
        _ => ("", default.to_owned()),
    };
    let filter = match EnvFilter::try_new(&directives) {
        Ok(filter) => filter,
        Err(error) => bail!("invalid {variable} filter {directives:?}: {error}"),
    };
    let json = match std::env::var("RDIO_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("text") | Err(_) => false,
        Ok(other) => bail!("invalid RDIO_LOG_FORMAT {other:?}: expected text or json"),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(true);
    // A subscriber installed already (a test harness) stays.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    Ok(())
}
