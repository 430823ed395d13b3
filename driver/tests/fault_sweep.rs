//! The fault sweep: a full session — discovery, authentication, a credit
//! grant and a revoke, every I/O kind (read, write, vectored read, vectored
//! write, COLLAPSE write) in both completion modes, cancels, an interrupt
//! request, closes and an orderly shutdown — run over the loopback wrapped in
//! [`FaultInjector`] on each side, with one fault scheduled at *every*
//! operation number of that side, for every fault kind that applies there.
//!
//! Every run must:
//! * end (no hang): the session thread and both server threads finish
//!   within [`HANG_LIMIT`]; liveness timers are short so that lost messages
//!   are noticed in a fraction of a second;
//! * complete every request exactly once: every call returns, and the
//!   client's duplicate-completion check (`debug_assert`) never fires;
//! * leak no credit: a session that survives ends with no credit in use
//!   (and, without faults, with the level the server last asked for);
//! * lose no data: every write reported done is on disk byte for byte, every
//!   write reported failed left each byte either old or new, and every read
//!   reported done returned the file's bytes — except where the injected
//!   fault is one an RC connection cannot produce and the protocol has no
//!   way to notice (a dropped RDMA write of read data, a corrupted send),
//!   which is counted separately as "undetectable";
//! * release all registered memory: every region either side registered is
//!   deregistered successfully by the time its transport is dropped.

use rdio::client::{Client, ClientError, ClientOptions, CompletionMode};
use rdio::files::{ReadSegment, Root, WriteSegment};
use rdio::server::{Server, ServerOptions};
use rdio_core::client::ClientConfig;
use rdio_core::server::ServerConfig;
use rdio_core::wire::status::STATUS_BLOCK_LEN;
use rdio_core::wire::{OpenFlags, ProviderName, Status};
use rdio_loopback::SyncEndpoint;
use rdio_transport::{
    Access, Fault, FaultConfig, FaultInjector, FaultStats, PostKind, RegionId, RemoteBuf, Slice,
    TraceEvent, Tracer, Transport, TransportError, TransportWrapper, WcError, WrId,
};
use std::fmt::Write as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicIsize, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A run taking longer than this is a hang.
const HANG_LIMIT: Duration = Duration::from_secs(10);
const RWC: OpenFlags = OpenFlags::READ
    .union(OpenFlags::WRITE)
    .union(OpenFlags::CREATE);
/// Size of the pre-seeded input file.
const INPUT_LEN: usize = 48 << 10;
/// The credit level the script revokes to last.
const FINAL_CREDITS: u16 = 2;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
        .collect()
}

// ----- instrumented transport -----

/// What the instrumentation of one side saw.
#[derive(Debug, Default)]
struct Counters {
    /// Regions registered and not (successfully) deregistered.
    live_regions: AtomicIsize,
    /// Deregistrations the transport refused.
    failed_deregisters: AtomicUsize,
    /// Regions still registered when the transport was dropped.
    leaked_regions: AtomicIsize,
    /// RDMA writes of read data (not status blocks) the driver posted…
    data_writes_posted: AtomicUsize,
    /// …and how many reached the wire.
    data_writes_delivered: AtomicUsize,
    /// Operations the injector numbered, and what it injected.
    operations: AtomicU64,
    stats: Mutex<FaultStats>,
    /// The kind of each operation, in the injector's numbering (recorded
    /// in fault-free runs to plan the sweep).
    kinds: Mutex<Vec<OpKind>>,
}

/// The kinds of operation the injector numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OpKind {
    Recv,
    Send,
    Write,
    Completion,
}

impl OpKind {
    /// The faults worth scheduling at an operation of this kind.
    fn faults(self) -> &'static [Fault] {
        const POST_RECV: &[Fault] = &[Fault::QueueFull, Fault::Disconnect];
        const POST_SEND: &[Fault] = &[
            Fault::Drop,
            Fault::Corrupt,
            Fault::QueueFull,
            Fault::Disconnect,
        ];
        const POST_WRITE: &[Fault] = &[Fault::Drop, Fault::QueueFull, Fault::Disconnect];
        const COMPLETION: &[Fault] = &[
            Fault::Error(WcError::Flushed),
            Fault::Error(WcError::ReceiverNotReady),
            Fault::Error(WcError::RemoteAccess),
            Fault::Delay { polls: 3 },
            Fault::Disconnect,
        ];
        match self {
            Self::Recv => POST_RECV,
            Self::Send => POST_SEND,
            Self::Write => POST_WRITE,
            Self::Completion => COMPLETION,
        }
    }
}

type Tap = Box<dyn FnMut(TraceEvent) + Send>;

/// The loopback, traced where it meets the injector (to see what actually
/// reached the wire), inside the injector, inside a probe that counts
/// regions and what the driver posted.
struct Probe {
    inner: FaultInjector<Tracer<SyncEndpoint, Tap>>,
    counters: Arc<Counters>,
}

fn is_data_write(dst: &RemoteBuf) -> bool {
    dst.len as usize != STATUS_BLOCK_LEN
}

impl Probe {
    /// Count a write the driver posted to `dst`, if it carries read data.
    fn posted_write(&self, dst: &RemoteBuf) {
        if is_data_write(dst) {
            self.counters
                .data_writes_posted
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    fn new(endpoint: SyncEndpoint, config: FaultConfig, counters: Arc<Counters>) -> Self {
        let seen = Arc::clone(&counters);
        let tap: Tap = Box::new(move |event| {
            let kind = match event {
                TraceEvent::Post { kind, result, .. } => {
                    if let (
                        PostKind::Write { dst, .. } | PostKind::WriteUnsignaled { dst },
                        Ok(()),
                    ) = (kind, result)
                    {
                        if is_data_write(&dst) {
                            seen.data_writes_delivered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    match kind {
                        PostKind::Recv => OpKind::Recv,
                        PostKind::Send { .. } => OpKind::Send,
                        PostKind::Write { .. } | PostKind::WriteUnsignaled { .. } => OpKind::Write,
                    }
                }
                TraceEvent::Completion(_) => OpKind::Completion,
                TraceEvent::Disconnect => return,
            };
            seen.kinds.lock().expect("kinds").push(kind);
        });
        Self {
            inner: FaultInjector::new(Tracer::new(endpoint, tap), config),
            counters,
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        let c = &self.counters;
        c.leaked_regions
            .fetch_add(c.live_regions.load(Ordering::Relaxed), Ordering::Relaxed);
        c.operations
            .store(self.inner.operations(), Ordering::Relaxed);
        *c.stats.lock().expect("stats") = self.inner.stats();
    }
}

impl TransportWrapper for Probe {
    type Inner = FaultInjector<Tracer<SyncEndpoint, Tap>>;
    fn inner(&self) -> &Self::Inner {
        &self.inner
    }
    fn inner_mut(&mut self) -> &mut Self::Inner {
        &mut self.inner
    }
    fn register(&mut self, len: usize, access: Access) -> Result<RegionId, TransportError> {
        let region = Transport::register(&mut self.inner, len, access)?;
        self.counters.live_regions.fetch_add(1, Ordering::Relaxed);
        Ok(region)
    }
    fn register_external<M>(&mut self, memory: M) -> Result<RegionId, TransportError>
    where
        M: AsRef<[u8]> + Send + Sync + 'static,
    {
        let region = Transport::register_external(&mut self.inner, memory)?;
        self.counters.live_regions.fetch_add(1, Ordering::Relaxed);
        Ok(region)
    }
    fn deregister(&mut self, region: RegionId) -> Result<(), TransportError> {
        match Transport::deregister(&mut self.inner, region) {
            Ok(()) => {
                self.counters.live_regions.fetch_sub(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.counters
                    .failed_deregisters
                    .fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }
    fn post_write(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        dst: RemoteBuf,
        imm: Option<u32>,
    ) -> Result<(), TransportError> {
        Transport::post_write(&mut self.inner, wr_id, sges, dst, imm)?;
        self.posted_write(&dst);
        Ok(())
    }
    /// A read's data with its status block as the tail: a data write.
    fn post_write_tail(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        tail: &[u8],
        dst: RemoteBuf,
        imm: Option<u32>,
    ) -> Result<(), TransportError> {
        Transport::post_write_tail(&mut self.inner, wr_id, sges, tail, dst, imm)?;
        self.posted_write(&dst);
        Ok(())
    }
    /// A batch's read with its status block as the tail, unsignaled.
    fn post_write_tail_unsignaled(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        tail: &[u8],
        dst: RemoteBuf,
    ) -> Result<(), TransportError> {
        Transport::post_write_tail_unsignaled(&mut self.inner, wr_id, sges, tail, dst)?;
        self.posted_write(&dst);
        Ok(())
    }
}

// ----- the session -----

/// Which side a fault is injected on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Client,
    Server,
}

/// One run: the completion mode and at most one scheduled fault.
#[derive(Clone, Copy, Debug)]
struct Plan {
    mode: CompletionMode,
    fault: Option<(Side, u64, Fault)>,
}

impl Plan {
    fn config(&self, side: Side) -> FaultConfig {
        match self.fault {
            Some((s, at, fault)) if s == side => FaultConfig::scheduled(at, fault),
            _ => FaultConfig::new(0),
        }
    }
}

/// A write the script issued and what the client was told.
struct WriteRecord {
    pieces: Vec<(u64, Vec<u8>)>,
    ok: bool,
}

/// What one run found.
#[derive(Debug, Default)]
struct Outcome {
    /// Every step succeeded.
    survived: bool,
    /// Credits in use at quiescence, and the level, when it survived.
    credits: Option<(u16, u16)>,
    /// Data mismatches: (what, explained by an undetectable fault).
    mismatches: Vec<String>,
    /// Faults injected on each side.
    injected: FaultStats,
    /// Regions not deregistered, deregistrations refused, on either side.
    leaked_regions: isize,
    failed_deregisters: usize,
    /// RDMA writes of read data that never reached the wire.
    dropped_data_writes: usize,
    /// Operations each side's injector numbered, and their kinds.
    operations: [u64; 2],
    kinds: [Vec<OpKind>; 2],
}

/// Liveness timers of a run, from a base in milliseconds. Faulted runs use
/// the base, so a lost message is noticed in a fraction of a second; the
/// fault-free runs, which must succeed, get twenty times more room for a
/// loaded machine.
fn timer(fault_free: bool, millis: u64) -> Duration {
    Duration::from_millis(if fault_free { millis * 20 } else { millis })
}

/// Dead-peer timeout of a faulted run (ms).
const DEAD_PEER_MS: u64 = 60;

fn client_options(mode: CompletionMode, fault_free: bool) -> ClientOptions {
    let provider = ProviderName::new("loopback").expect("provider name");
    let mut options = ClientOptions::new(provider);
    options.mode = mode;
    options.io_size = 4096;
    options.queue_depth = 4;
    options.config = ClientConfig {
        max_credits: 8,
        max_send_size: 1024,
        max_io_size: 64 << 10,
        auth_timeout: timer(fault_free, 120),
        dead_peer_timeout: timer(fault_free, DEAD_PEER_MS),
        keepalive_interval: Duration::from_millis(25),
        ..options.config
    };
    options
}

fn server_options(fault_free: bool) -> ServerOptions {
    let provider = ProviderName::new("loopback").expect("provider name");
    let mut options = ServerOptions::new(provider, b"loopback");
    options.config = ServerConfig {
        initial_credits: 4,
        max_credits: 8,
        min_credits: 1,
        max_send_size: 1024,
        max_io_size: 64 << 10,
        auth_timeout: timer(fault_free, 120),
        idle_timeout: timer(fault_free, 150),
        keepalive_interval: Duration::from_millis(25),
        ..ServerConfig::default()
    };
    options
}

/// Run one session in `dir` (which holds `in`, pre-seeded) and check it.
fn session(plan: Plan, dir: &Path) -> Outcome {
    let counters = [Arc::new(Counters::default()), Arc::new(Counters::default())];
    let (client_end, server_end) = rdio_loopback::sync_pair(rdio_loopback::Config::default());
    let client_wire = Probe::new(
        client_end,
        plan.config(Side::Client),
        Arc::clone(&counters[0]),
    );
    let server_wire = Probe::new(
        server_end,
        plan.config(Side::Server),
        Arc::clone(&counters[1]),
    );
    let fault_free = plan.fault.is_none();
    let server = Server::new(Root::new(dir).expect("root"), server_options(fault_free));
    let (pipe_client, pipe_server) = UnixStream::pair().expect("socketpair");
    let (done_tx, done_rx) = mpsc::channel::<&'static str>();
    let pipe_done = done_tx.clone();
    let pipe_thread_server = Arc::clone(&server);
    std::thread::spawn(move || {
        let _ = pipe_thread_server.serve_pipe(pipe_server);
        let _ = pipe_done.send("pipe");
    });
    let control = match server.accept(server_wire) {
        Ok(connection) => {
            let control = connection.control();
            let conn_done = done_tx.clone();
            std::thread::spawn(move || {
                let _ = connection.run();
                let _ = conn_done.send("connection");
            });
            Some(control)
        }
        Err(_) => {
            let _ = done_tx.send("connection");
            None
        }
    };
    drop(done_tx);

    let mut writes = Vec::new();
    let mut mismatches = Vec::new();
    let survived;
    let mut credits = None;
    let input = pattern(INPUT_LEN, 0x11);
    match Client::connect(pipe_client, client_options(plan.mode, fault_free), |_| {
        Ok(client_wire)
    }) {
        Ok(mut client) => {
            let steps = script(
                &mut client,
                control.as_ref(),
                &input,
                plan.mode,
                &mut writes,
                &mut mismatches,
            );
            survived = steps && quiesce(&mut client, fault_free);
            if survived {
                credits = Some((client.credits_in_use(), client.credits()));
            }
            let _ = client.shutdown();
        }
        Err(_) => survived = false,
    }
    // Both server threads end once the client is gone.
    let deadline = Instant::now() + HANG_LIMIT;
    for _ in 0..2 {
        let left = deadline.saturating_duration_since(Instant::now());
        done_rx
            .recv_timeout(left)
            .expect("a server thread hung after the client finished");
    }
    drop(server);
    check_output(dir, &writes, &mut mismatches);

    let mut outcome = Outcome {
        survived,
        credits,
        mismatches,
        ..Outcome::default()
    };
    for (i, c) in counters.iter().enumerate() {
        let stats = *c.stats.lock().expect("stats");
        outcome.injected = add_stats(outcome.injected, stats);
        outcome.leaked_regions += c.leaked_regions.load(Ordering::Relaxed);
        outcome.failed_deregisters += c.failed_deregisters.load(Ordering::Relaxed);
        outcome.dropped_data_writes += c
            .data_writes_posted
            .load(Ordering::Relaxed)
            .saturating_sub(c.data_writes_delivered.load(Ordering::Relaxed));
        outcome.operations[i] = c.operations.load(Ordering::Relaxed);
        outcome.kinds[i] = std::mem::take(&mut *c.kinds.lock().expect("kinds"));
    }
    outcome
}

fn add_stats(a: FaultStats, b: FaultStats) -> FaultStats {
    FaultStats {
        dropped: a.dropped + b.dropped,
        corrupted: a.corrupted + b.corrupted,
        queue_full: a.queue_full + b.queue_full,
        delayed: a.delayed + b.delayed,
        errors: a.errors + b.errors,
        disconnects: a.disconnects + b.disconnects,
    }
}

/// The session's steps; `true` if every one succeeded. Steps keep running
/// after a failure: each must still return (a failed connection fails them
/// at once).
fn script<T: Transport>(
    client: &mut Client<T, UnixStream>,
    control: Option<&rdio::server::ConnectionControl>,
    input: &[u8],
    mode: CompletionMode,
    writes: &mut Vec<WriteRecord>,
    mismatches: &mut Vec<String>,
) -> bool {
    let mut ok = true;
    let mut step = |result: Result<(), ClientError>| ok &= result.is_ok();
    let (source, out) = match (client.open("in", OpenFlags::READ), client.open("out", RWC)) {
        (Ok(source), Ok(out)) => (source, out),
        _ => return false,
    };
    if let Some(control) = control {
        control.set_credit_target(8);
    }

    // A write of three fragments (1 KiB sends), then a two-request read.
    let data = pattern(3000, 1);
    let written = client.write_at(&out, 0, &data);
    writes.push(WriteRecord {
        pieces: vec![(0, data)],
        ok: written.is_ok(),
    });
    step(written);
    let mut buf = vec![0u8; 5000];
    let read = client.read_at(&source, 100, &mut buf);
    if matches!(read, Ok(n) if n != 5000 || buf[..] != input[100..5100]) {
        mismatches.push("read_at returned wrong bytes".into());
    }
    step(read.map(drop));

    if let Some(control) = control {
        control.set_credit_target(FINAL_CREDITS);
    }

    // Vectored write, then COLLAPSE.
    let (a, b) = (pattern(700, 2), pattern(1500, 3));
    let written = client.write_vectored_at(
        &out,
        &[
            WriteSegment {
                offset: 10_000,
                data: &a,
            },
            WriteSegment {
                offset: 12_000,
                data: &b,
            },
        ],
    );
    writes.push(WriteRecord {
        pieces: vec![(10_000, a), (12_000, b)],
        ok: written.is_ok(),
    });
    step(written.map(drop));
    let block = pattern(500, 4);
    let offsets = [20_000u64, 21_000, 22_000];
    let written = client.write_collapsed(&out, &offsets, &block);
    writes.push(WriteRecord {
        pieces: offsets.iter().map(|&o| (o, block.clone())).collect(),
        ok: written.is_ok(),
    });
    step(written.map(drop));

    // Vectored read.
    let (mut x, mut y) = (vec![0u8; 300], vec![0u8; 2000]);
    let read = client.read_vectored_at(
        &source,
        &mut [
            ReadSegment {
                offset: 30_000,
                buf: &mut x,
            },
            ReadSegment {
                offset: 7,
                buf: &mut y,
            },
        ],
    );
    if read.is_ok() && (x[..] != input[30_000..30_300] || y[..] != input[7..2007]) {
        mismatches.push("read_vectored_at returned wrong bytes".into());
    }
    step(read.map(drop));

    // Cancels: a read and a write, each cancelled right after submission;
    // either outcome is fine, but a completed read must carry the data.
    match client.submit_read(&source, 40_000, 4000) {
        Ok(ticket) => {
            let _ = client.cancel(&ticket);
            let mut back = vec![0u8; 4000];
            match client.wait(ticket, &mut back) {
                Ok(n) if n != 4000 || back[..] != input[40_000..44_000] => {
                    mismatches.push("cancelled read completed with wrong bytes".into());
                }
                Ok(_) => {}
                Err(ClientError::Remote {
                    status: Status::Cancelled,
                    ..
                }) => {}
                Err(e) => step(Err(e)),
            }
        }
        Err(e) => step(Err(e)),
    }
    let data = pattern(3000, 5);
    match client.submit_write(&out, 30_000, &data) {
        Ok(ticket) => {
            let _ = client.cancel(&ticket);
            let result = client.wait(ticket, &mut []);
            writes.push(WriteRecord {
                pieces: vec![(30_000, data)],
                ok: result.is_ok(),
            });
            match result {
                Ok(_)
                | Err(ClientError::Remote {
                    status: Status::Cancelled,
                    ..
                }) => {}
                Err(e) => step(Err(e)),
            }
        }
        Err(e) => step(Err(e)),
    }
    if mode == CompletionMode::Polling {
        step(client.request_interrupt());
    }
    step(client.close(source));
    step(client.close(out));
    ok
}

/// After the script: `true` if the session is still alive once nothing is
/// outstanding. A credit still in use here belongs to a message whose
/// answer was dropped (a fault RC cannot produce); the dead-peer timer must
/// then end the session — so sleep past it and make one more request,
/// which either completes on a settled ledger or fails `TimedOut`.
fn quiesce<T: Transport>(client: &mut Client<T, UnixStream>, fault_free: bool) -> bool {
    if client.credits_in_use() == 0 {
        return true;
    }
    std::thread::sleep(timer(fault_free, DEAD_PEER_MS) * 2);
    match client.open("in", OpenFlags::READ) {
        Ok(file) => client.close(file).is_ok(),
        Err(_) => false,
    }
}

/// Compare `out` on disk with what the client was told.
fn check_output(dir: &Path, writes: &[WriteRecord], mismatches: &mut Vec<String>) {
    let disk = std::fs::read(dir.join("out")).unwrap_or_default();
    let byte = |at: usize| disk.get(at).copied().unwrap_or(0);
    for (i, write) in writes.iter().enumerate() {
        for (offset, data) in &write.pieces {
            let offset = *offset as usize;
            for (j, &want) in data.iter().enumerate() {
                let got = byte(offset + j);
                let fine = if write.ok {
                    got == want
                } else {
                    got == want || got == 0
                };
                if !fine {
                    mismatches.push(format!(
                        "write {i} (reported {}) has a wrong byte at {}",
                        if write.ok { "done" } else { "failed" },
                        offset + j
                    ));
                    break;
                }
            }
        }
    }
}

/// Run `plan` in a fresh directory on its own thread, bounded by
/// [`HANG_LIMIT`]; `None` is a hang.
fn run(plan: Plan, base: &Path, number: usize) -> Option<Outcome> {
    let dir = base.join(format!("run{number}"));
    std::fs::create_dir(&dir).expect("run dir");
    std::fs::write(dir.join("in"), pattern(INPUT_LEN, 0x11)).expect("seed input");
    let (tx, rx) = mpsc::channel();
    let worker_dir: PathBuf = dir.clone();
    std::thread::spawn(move || {
        let _ = tx.send(session(plan, &worker_dir));
    });
    let outcome = match rx.recv_timeout(HANG_LIMIT) {
        Ok(outcome) => Some(outcome),
        Err(mpsc::RecvTimeoutError::Timeout) => None,
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            panic!("run {number} ({plan:?}) panicked: see its output above")
        }
    };
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

// ----- the sweep -----

fn fault_name(fault: Fault) -> &'static str {
    match fault {
        Fault::Drop => "drop send/write",
        Fault::Corrupt => "corrupt send",
        Fault::QueueFull => "post refused",
        Fault::Delay { .. } => "delayed completion",
        Fault::Error(WcError::Flushed) => "error completion",
        Fault::Error(WcError::ReceiverNotReady) => "receiver not ready",
        Fault::Error(WcError::RemoteAccess) => "remote access error",
        Fault::Error(_) => "other error",
        Fault::Disconnect => "disconnect",
    }
}

/// One row of the summary table.
#[derive(Debug, Default, Clone)]
struct Row {
    runs: usize,
    injected: u64,
    survived: usize,
    undetectable: usize,
    data_lost: usize,
    hangs: usize,
    leaks: usize,
}

#[test]
fn a_fault_at_every_step_never_hangs_leaks_or_loses_data() {
    let started = Instant::now();
    let base = tempfile::tempdir().expect("tempdir");
    let mut rows: Vec<(&'static str, Row)> = Vec::new();
    let mut failures = Vec::new();
    let mut number = 0;
    let mut sessions = 0;
    for mode in [CompletionMode::Interrupt, CompletionMode::Polling] {
        // A clean run: everything succeeds, the ledger ends exact, and it
        // tells how many operations each side has and of which kind.
        let clean = run(Plan { mode, fault: None }, base.path(), number).expect("clean run hung");
        number += 1;
        sessions += 1;
        assert!(clean.survived, "{mode:?}: the fault-free session failed");
        assert_eq!(clean.credits, Some((0, FINAL_CREDITS)), "{mode:?}: ledger");
        assert!(clean.mismatches.is_empty(), "{:?}", clean.mismatches);
        assert_eq!(clean.leaked_regions, 0, "{mode:?}: regions left registered");
        assert_eq!(clean.failed_deregisters, 0, "{mode:?}: busy at release");
        for (side_index, side) in [Side::Client, Side::Server].into_iter().enumerate() {
            for (at, kind) in clean.kinds[side_index].iter().enumerate() {
                for &fault in kind.faults() {
                    let plan = Plan {
                        mode,
                        fault: Some((side, at as u64, fault)),
                    };
                    let name = fault_name(fault);
                    let row = match rows.iter_mut().find(|(n, _)| *n == name) {
                        Some((_, row)) => row,
                        None => {
                            rows.push((name, Row::default()));
                            &mut rows.last_mut().expect("just pushed").1
                        }
                    };
                    row.runs += 1;
                    sessions += 1;
                    let Some(outcome) = run(plan, base.path(), number) else {
                        row.hangs += 1;
                        failures.push(format!("hang: {plan:?}"));
                        number += 1;
                        continue;
                    };
                    number += 1;
                    row.injected += outcome.injected.total();
                    row.survived += usize::from(outcome.survived);
                    if outcome.leaked_regions != 0 {
                        row.leaks += 1;
                        failures.push(format!(
                            "memory not released ({} regions, {} refused): {plan:?}",
                            outcome.leaked_regions, outcome.failed_deregisters
                        ));
                    }
                    if let Some((in_use, _)) = outcome.credits {
                        if in_use != 0 {
                            failures.push(format!("{in_use} credits leaked: {plan:?}"));
                        }
                    }
                    if !outcome.mismatches.is_empty() {
                        // RC never drops a write or corrupts a send, and
                        // the protocol carries no checksum to notice.
                        let undetectable =
                            outcome.dropped_data_writes > 0 || outcome.injected.corrupted > 0;
                        if undetectable {
                            row.undetectable += 1;
                        } else {
                            row.data_lost += 1;
                            failures.push(format!("{:?}: {plan:?}", outcome.mismatches));
                        }
                    }
                }
            }
        }
    }
    let elapsed = started.elapsed();
    let mut table = String::from("\n");
    let _ = writeln!(
        table,
        "fault sweep: {sessions} sessions in {:.1} s (both completion modes, every operation of each side)",
        elapsed.as_secs_f64()
    );
    let _ = writeln!(
        table,
        "{:<22} {:>6} {:>9} {:>9} {:>10} {:>12} {:>6} {:>6}",
        "fault", "runs", "injected", "survived", "data lost", "undetectable", "hangs", "leaks"
    );
    let mut total = Row::default();
    for (name, row) in &rows {
        let _ = writeln!(
            table,
            "{:<22} {:>6} {:>9} {:>9} {:>10} {:>12} {:>6} {:>6}",
            name,
            row.runs,
            row.injected,
            row.survived,
            row.data_lost,
            row.undetectable,
            row.hangs,
            row.leaks
        );
        total.runs += row.runs;
        total.injected += row.injected;
        total.survived += row.survived;
        total.data_lost += row.data_lost;
        total.undetectable += row.undetectable;
        total.hangs += row.hangs;
        total.leaks += row.leaks;
    }
    let _ = writeln!(
        table,
        "{:<22} {:>6} {:>9} {:>9} {:>10} {:>12} {:>6} {:>6}",
        "total",
        total.runs,
        total.injected,
        total.survived,
        total.data_lost,
        total.undetectable,
        total.hangs,
        total.leaks
    );
    // Straight to stderr, past the test harness's capture: CI logs show the
    // table whether the test passes or fails.
    let _ = std::io::Write::write_all(&mut std::io::stderr(), table.as_bytes());
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
