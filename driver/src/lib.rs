//! # rdio
//!
//! The std runtime of rdio: what runs the sans-IO protocol core
//! (`rdio-core`) over a real transport (`rdio-transport` implementations) and
//! real files.
//!
//! * [`files`]: the server's file backend — an exported directory whose paths
//!   are confined by the kernel (`openat2(RESOLVE_BENEATH)`), positioned and
//!   vectored I/O, and the bounded table of open files.
#![warn(missing_docs)]

pub mod files;
