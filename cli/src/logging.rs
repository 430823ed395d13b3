//! The `tracing` subscriber: spans for RDMA connections and side-channel
//! sessions, events for authentication, registrations and every request
//! (`request` = the wire's request id), on standard error.
//!
//! `RUST_LOG` (or `RDIO_LOG`, which wins) takes `tracing-subscriber`'s
//! `EnvFilter` directives, e.g. `RUST_LOG=rdio=debug` or
//! `RUST_LOG=rdio::client=trace`; the default shows warnings only, and for
//! `serve` its access log (`rdio::access` at info).
//! `RDIO_LOG_FORMAT=json` writes one JSON object per line instead of text.

use anyhow::{Result, bail};
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Install the subscriber, filtering with `default` unless `RDIO_LOG` or
/// `RUST_LOG` is set; a filter or format that does not parse is an error
/// (before anything runs).
pub fn init(default: &str) -> Result<()> {
    let (variable, directives) = match (std::env::var("RDIO_LOG"), std::env::var("RUST_LOG")) {
        (Ok(directives), _) => ("RDIO_LOG", directives),
        (_, Ok(directives)) => ("RUST_LOG", directives),
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
