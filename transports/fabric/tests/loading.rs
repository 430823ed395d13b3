//! libfabric is opened on first use, not linked, and every entry point
//! reports a library that cannot be opened as `FabricError::Unavailable`.
//!
//! The library is opened once per process, so each case needs a process of
//! its own: this binary checks the normal case, then re-runs itself with
//! `RDIO_LIBFABRIC` naming a library that does not exist. `harness = false`:
//! `main` dispatches between the two roles.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;

use rdio_fabric::raw::{self, RawConfig, RawError, RawOp};
use rdio_fabric::{FabricError, LIBFABRIC_ENV, Listener, connect};

const MISSING: &str = "/nonexistent/libfabric.so.1";

fn main() {
    if std::env::var_os(LIBFABRIC_ENV).is_some() {
        without_libfabric();
    } else {
        loaded_on_first_use();
        let exe = std::env::current_exe().expect("test binary path");
        let status = Command::new(exe)
            .env(LIBFABRIC_ENV, MISSING)
            .status()
            .expect("re-run this test without libfabric");
        assert!(status.success(), "the run without libfabric failed");
        println!("loading: 2 passed, 0 failed");
    }
}

/// Whether libfabric is mapped into this process.
fn libfabric_mapped() -> bool {
    std::fs::read_to_string("/proc/self/maps")
        .expect("read /proc/self/maps")
        .contains("libfabric.so")
}

fn loaded_on_first_use() {
    assert!(
        !libfabric_mapped(),
        "libfabric was loaded before anything asked for it"
    );
    let providers = rdio_fabric::providers().expect("libfabric loads");
    assert!(providers.contains(&"ofi:tcp".to_owned()), "{providers:?}");
    assert!(libfabric_mapped(), "listing providers opened libfabric");
}

/// Every entry point fails with the same typed error, whose text names the
/// library and how to install it, and nothing else got loaded instead.
fn without_libfabric() {
    let unavailable = |error: FabricError| match error {
        FabricError::Unavailable { ref reason } => {
            assert!(reason.contains(MISSING), "{reason}");
            let text = error.to_string();
            assert!(
                text.starts_with("libfabric could not be loaded: ")
                    && text.contains("apt-get install libfabric1"),
                "{text}"
            );
        }
        other => panic!("expected Unavailable, got {other:?}"),
    };
    let localhost = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    unavailable(rdio_fabric::providers().expect_err("no libfabric"));
    unavailable(
        Listener::bind(localhost, "tcp")
            .err()
            .expect("no libfabric"),
    );
    unavailable(connect(localhost, "tcp").err().expect("no libfabric"));
    let config = RawConfig {
        op: RawOp::Write,
        size: 4096,
        count: 1,
        window: 1,
    };
    match raw::run("tcp", config) {
        Err(RawError::Setup(error)) => unavailable(error),
        other => panic!("expected a setup error, got {other:?}"),
    }
    // Error codes still get a text, the operating system's.
    assert_eq!(
        rdio_fabric::strerror(libc::ECONNREFUSED),
        std::io::Error::from_raw_os_error(libc::ECONNREFUSED).to_string()
    );
    assert!(!libfabric_mapped());
}
