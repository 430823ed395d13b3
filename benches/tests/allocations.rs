//! Zero heap allocations per I/O: a counting global allocator watches a
//! steady-state loop of 4 KiB read cycles of the core pair (which cannot
//! allocate — it has no `alloc` — so this guards the cycle's own loop), then
//! every kind of I/O through the std client and server drivers over the
//! loopback, in both completion modes, with the server on threads of its
//! own and stepped inline by the client — with the drivers' metrics on
//! (the server's per-connection cells and latency histograms, the client's
//! counters and histograms: on by default), and again with a `tracing`
//! subscriber installed at info, as `rdio` runs (request spans are at trace
//! level, the `connection` spans at info).

#[global_allocator]
static GLOBAL: rdio_alloc_count::Counting = rdio_alloc_count::Counting;

/// The counter is process-wide (the driver's server runs on threads of its
/// own), so this test binary has no libtest harness (`harness = false`):
/// libtest formats its report on a thread of its own while tests run, and
/// those allocations would be counted. The checks run one after the other
/// and panic (exit non-zero) on failure.
fn main() {
    let checks: [(&str, fn()); 5] = [
        (
            "core_read_cycle_allocates_nothing",
            core_read_cycle_allocates_nothing,
        ),
        (
            "driver_io_over_the_loopback_allocates_nothing (server threads)",
            driver_io_over_the_loopback_allocates_nothing::<rdio::embedded::Threads>,
        ),
        (
            "driver_io_over_the_loopback_allocates_nothing (server inline)",
            driver_io_over_the_loopback_allocates_nothing::<rdio::embedded::Inline>,
        ),
        // From here on a subscriber is installed (process-wide, for good).
        (
            "driver_io_allocates_nothing_with_a_subscriber_at_info (server threads)",
            with_info_subscriber::<rdio::embedded::Threads>,
        ),
        (
            "driver_io_allocates_nothing_with_a_subscriber_at_info (server inline)",
            with_info_subscriber::<rdio::embedded::Inline>,
        ),
    ];
    for (name, check) in checks {
        check();
        println!("test {name} ... ok");
    }
    println!("allocations: {} passed, 0 failed", checks.len());
}

/// Install a text subscriber at info writing to nothing (once), then run
/// the driver check under it.
fn with_info_subscriber<M: rdio::embedded::Mode>() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_writer(std::io::sink)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    });
    assert!(tracing::enabled!(tracing::Level::INFO));
    assert!(!tracing::enabled!(tracing::Level::TRACE));
    driver_io_over_the_loopback_allocates_nothing::<M>();
}

fn core_read_cycle_allocates_nothing() {
    let mut cycle = rdio_benches::Cycle::new();
    // Warm up, then count.
    assert_eq!(cycle.read_4k(), 4096);
    let before = rdio_alloc_count::allocations();
    let mut bytes = 0;
    for _ in 0..10_000 {
        bytes += cycle.read_4k();
    }
    let allocations = rdio_alloc_count::allocations() - before;
    assert_eq!(bytes, 10_000 * 4096);
    assert_eq!(
        allocations, 0,
        "{allocations} heap allocations in 10,000 reads"
    );
}

/// Allocations counted over `n` iterations of `io`, after `warm_up` of them
/// (buffers, tables and the allocator's own caches fill during warm-up).
fn allocations_per(n: usize, mut io: impl FnMut()) -> usize {
    for _ in 0..64 {
        io();
    }
    let before = rdio_alloc_count::allocations();
    for _ in 0..n {
        io();
    }
    rdio_alloc_count::allocations() - before
}

/// The I/O kinds the driver test runs.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// Reads of a read-only file come straight from its mapping
    /// (zero-copy); `ReadCopied` reads a writable one through a bounce
    /// buffer.
    Read,
    ReadCopied,
    /// A read whose bytes are used where they landed (`wait_in_place`).
    ReadInPlace,
    Write,
    /// A write filled in a lent registered buffer (`write_buffer`).
    WriteInPlace,
    ReadVectored,
    WriteVectored,
    Collapsed,
    /// `read_at` of 256 KiB: 4 requests of 64 KiB pipelined.
    ReadAt,
    /// `write_at` of 256 KiB, likewise.
    WriteAt,
}

/// Every kind of I/O, in both completion modes, through the client and
/// server drivers over the loopback, the server run as `M` says: after
/// warm-up, not one heap allocation per I/O.
fn driver_io_over_the_loopback_allocates_nothing<M: rdio::embedded::Mode>() {
    use rdio::client::CompletionMode;
    use rdio::embedded::EmbeddedOptions;
    use rdio::files::{ReadSegment, WriteSegment};
    use rdio_core::wire::OpenFlags;

    let kinds = [
        Kind::Read,
        Kind::ReadCopied,
        Kind::ReadInPlace,
        Kind::Write,
        Kind::WriteInPlace,
        Kind::ReadVectored,
        Kind::WriteVectored,
        Kind::Collapsed,
        Kind::ReadAt,
        Kind::WriteAt,
    ];
    let mut failures = Vec::new();
    for mode in [CompletionMode::Interrupt, CompletionMode::Polling] {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("data"), vec![7u8; 1 << 20]).expect("file");
        std::fs::write(dir.path().join("ro"), vec![8u8; 1 << 20]).expect("file");
        let mut options = EmbeddedOptions::default();
        assert!(options.server.request_metrics && options.client.request_metrics);
        options.client.io_size = 64 << 10;
        options.client.queue_depth = 8;
        options.client.mode = mode;
        let mut pair = M::start(dir.path(), options).expect("pair");
        let client = &mut pair.client;
        let file = client
            .open("data", OpenFlags::READ | OpenFlags::WRITE)
            .expect("open");
        let ro = client.open("ro", OpenFlags::READ).expect("open");
        let mut out = vec![0u8; 256 << 10];
        let data = vec![9u8; 256 << 10];
        for kind in kinds {
            let mut offset = 0u64;
            let allocations = allocations_per(1_000, || {
                offset = (offset + 4096) % (512 << 10);
                match kind {
                    Kind::Read => {
                        let ticket = client.submit_read(&ro, offset, 4096).expect("submit");
                        assert_eq!(client.wait(ticket, &mut out[..4096]).expect("read"), 4096);
                    }
                    Kind::ReadCopied => {
                        let ticket = client.submit_read(&file, offset, 4096).expect("submit");
                        assert_eq!(client.wait(ticket, &mut out[..4096]).expect("read"), 4096);
                    }
                    Kind::ReadInPlace => {
                        let ticket = client.submit_read(&ro, offset, 4096).expect("submit");
                        let view = client.wait_in_place(ticket).expect("read");
                        assert_eq!(view.len(), 4096);
                    }
                    Kind::Write => {
                        let ticket = client
                            .submit_write(&file, offset, &data[..4096])
                            .expect("submit");
                        assert_eq!(client.wait(ticket, &mut []).expect("write"), 4096);
                    }
                    Kind::WriteInPlace => {
                        let mut buffer = client.write_buffer(4096).expect("lend");
                        buffer.fill(9);
                        let ticket = buffer.submit(&file, offset).expect("submit");
                        assert_eq!(client.wait(ticket, &mut []).expect("write"), 4096);
                    }
                    Kind::ReadVectored => {
                        let (a, rest) = out.split_at_mut(1024);
                        let (b, rest) = rest.split_at_mut(2048);
                        let c = &mut rest[..512];
                        let mut segments = [
                            ReadSegment { offset, buf: a },
                            ReadSegment {
                                offset: offset + 8192,
                                buf: b,
                            },
                            ReadSegment {
                                offset: offset + 100,
                                buf: c,
                            },
                        ];
                        let got = client.read_vectored_at(&ro, &mut segments).expect("readv");
                        assert_eq!(got, 3584);
                    }
                    Kind::WriteVectored => {
                        let segments = [
                            WriteSegment {
                                offset,
                                data: &data[..1024],
                            },
                            WriteSegment {
                                offset: offset + 8192,
                                data: &data[..2048],
                            },
                        ];
                        let wrote = client.write_vectored_at(&file, &segments).expect("writev");
                        assert_eq!(wrote, 3072);
                    }
                    Kind::Collapsed => {
                        let offsets = [offset, offset + 8192, offset + 16384];
                        let wrote = client
                            .write_collapsed(&file, &offsets, &data[..512])
                            .expect("collapse");
                        assert_eq!(wrote, 1536);
                    }
                    Kind::ReadAt => {
                        let got = client.read_at(&ro, offset, &mut out).expect("read_at");
                        assert_eq!(got, out.len());
                    }
                    Kind::WriteAt => client.write_at(&file, offset, &data).expect("write_at"),
                }
            });
            if allocations != 0 {
                failures.push(format!(
                    "{mode:?} {kind:?}: {allocations} allocations in 1,000"
                ));
            }
        }
        // Where this machine allows leases (root or the files' owner), the
        // read-only file's reads were the zero-copy kind.
        let counts = pair.server().read_counts();
        println!("{mode:?}: reads served {counts:?}");
        pair.finish().expect("finish");
    }
    assert!(
        failures.is_empty(),
        "heap allocations per I/O:\n{}",
        failures.join("\n")
    );
}
