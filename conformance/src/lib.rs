//! `rdio conformance`: numbered test cases against any rdio server, each
//! naming the `docs/PROTOCOL.md` section it checks (like h2spec for HTTP/2).
//!
//! The tester is a client that says exactly what it wants on the wire. It
//! encodes well-formed requests with `rdio-core`'s wire encoder and builds
//! malformed ones by hand, but it never asks rdio's server code what a
//! server should answer: replies are decoded here, field by field at the
//! offsets PROTOCOL.md gives ([`expect`]), and compared with explicit
//! tables of what the spec requires. So it catches a bug of rdio's core as
//! well as a foreign server's.
//!
//! * [`pipe`] — the side channel: framing over TCP, behind one function
//!   ([`pipe::connect_stream`]) where TLS can be slotted in.
//! * [`rdma`] — a raw RDMA-channel client over libfabric or cma.
//! * [`cases`] — the cases, in spec order.

pub mod cases;
pub mod expect;
pub mod pipe;
pub mod rdma;
pub mod transcript;

use std::fmt;
use std::io::{self, Write};
use std::net::SocketAddr;

/// Which RDMA transport to reach the server's endpoint with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransportKind {
    /// libfabric over `provider` (`tcp`, `verbs`, ...; named `ofi:` +
    /// provider in negotiation).
    Fabric {
        /// The libfabric provider.
        provider: String,
    },
    /// Cross-memory attach between processes on this host.
    Cma,
}

impl TransportKind {
    /// The provider name offered in negotiation.
    pub fn provider_name(&self) -> String {
        match self {
            Self::Fabric { provider } => {
                let bare = provider.strip_prefix("ofi:").unwrap_or(provider);
                format!("ofi:{bare}")
            }
            Self::Cma => "cma".to_owned(),
        }
    }
}

/// What a run found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Cases that passed.
    pub passed: u32,
    /// Cases that failed.
    pub failed: u32,
}

/// Why a case failed: what the spec requires and what the server did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// What PROTOCOL.md requires.
    pub expected: String,
    /// What arrived.
    pub got: String,
}

impl Mismatch {
    /// A mismatch from anything printable.
    pub fn new(expected: impl fmt::Display, got: impl fmt::Display) -> Self {
        Self {
            expected: expected.to_string(),
            got: got.to_string(),
        }
    }
}

/// The outcome of one case.
pub type Outcome = Result<(), Mismatch>;

/// Check `got == expected`, naming the field.
pub fn check<T: PartialEq + fmt::Debug>(field: &str, expected: T, got: T) -> Outcome {
    if expected == got {
        Ok(())
    } else {
        Err(Mismatch::new(
            format_args!("{field} {expected:?}"),
            format_args!("{field} {got:?}"),
        ))
    }
}

/// Numbers the cases and prints one line each.
pub struct Runner<'o> {
    number: u32,
    summary: Summary,
    out: &'o mut dyn Write,
}

impl<'o> Runner<'o> {
    /// A runner printing to `out`.
    pub fn new(out: &'o mut dyn Write) -> Self {
        Self {
            number: 0,
            summary: Summary::default(),
            out,
        }
    }

    /// Run one case of `section` (a PROTOCOL.md heading) described by
    /// `what`, and print its line.
    pub fn case(&mut self, section: &str, what: &str, run: impl FnOnce() -> Outcome) {
        self.number += 1;
        let line = match run() {
            Ok(()) => {
                self.summary.passed += 1;
                format!("ok {} §{section} {what}", self.number)
            }
            Err(Mismatch { expected, got }) => {
                self.summary.failed += 1;
                format!(
                    "FAIL {} §{section} {what}: expected {expected}, got {got}",
                    self.number
                )
            }
        };
        // A closed stdout must not turn into a panic; the summary still
        // decides the exit code.
        let _ = writeln!(self.out, "{line}");
        let _ = self.out.flush();
    }

    /// The totals so far.
    pub fn summary(&self) -> Summary {
        self.summary
    }
}

/// Run every case against the server whose side channel is `server`, and
/// print `N passed, N failed` last.
pub fn run(
    server: SocketAddr,
    transport: &TransportKind,
    out: &mut dyn Write,
) -> io::Result<Summary> {
    let summary = {
        let mut runner = Runner::new(out);
        let target = cases::Target {
            server,
            transport: transport.clone(),
        };
        cases::pipe_cases(&mut runner, &target);
        cases::rdma_cases(&mut runner, &target);
        runner.summary()
    };
    writeln!(out, "{} passed, {} failed", summary.passed, summary.failed)?;
    Ok(summary)
}
