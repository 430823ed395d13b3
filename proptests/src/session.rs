//! Arbitrary sessions on the [`Pair`]: client API calls, server credit
//! targets, one-item steps in any order (so every queue can be held and
//! released), virtual time and transport faults, checked after every step.
//!
//! Checks, after every action:
//! * every request is reported at most once, and only requests submitted;
//! * without faults: neither side detects a violation, no driver anomaly,
//!   the [`CreditModel`] agrees with both ledgers, and every completion is
//!   what a model of the files (`Vec<u8>` each) and handles predicts —
//!   status, byte count and the data read.
//!
//! At the end ([`Session::finish`]): without faults, running everything
//! quiesces with every request reported (or the connection ended with a
//! reason), the ledgers agree, every credit exchange has exactly its
//! messages, and the files equal the model. With faults, after running
//! everything and letting the liveness timers fire, every request is still
//! reported exactly once.
//!
//! Data operations that would race on overlapping file bytes (a write with
//! anything else) are serialised by running the pair until the earlier one
//! completes, so the file model stays exact under any step order.

use crate::credit_model::CreditModel;
use crate::pair::{Direction, Fault, Pair, event_request, providers};
use rdio_core::ApiError;
use rdio_core::Violation;
use rdio_core::client::{ClientConfig, ClientEvent, CompletionMode, RequestId};
use rdio_core::server::{FileId, ServerConfig};
use rdio_core::wire::{BufferDescriptor, OpenFlags, ReadSegment, Status, WriteSegment};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

/// A handle that was never registered.
pub const BOGUS_HANDLE: u32 = 0xDEAD;

/// Limits of a generated session.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Longest read or write (bytes per segment).
    pub max_io: usize,
    /// File offsets are below this.
    pub span: u64,
    /// Most segments in a vectored request.
    pub max_segments: usize,
    /// Most files registered after the start.
    pub max_registrations: usize,
    /// Hand reads to an asynchronous driver (see [`Pair::defer_reads`]), so
    /// a read can be cancelled or its handle closed while the driver holds
    /// it.
    pub defer_reads: bool,
    /// Skip writes submitted while an interrupt request is outstanding. On
    /// by default until rdio-core stops a parked interrupt request from
    /// holding the last credit a streaming write needs
    /// (`tests/regressions.rs`).
    pub no_write_behind_interrupt: bool,
    /// Drive the cores through their one-pass entry points (see
    /// [`Pair::one_pass`]).
    pub one_pass: bool,
    /// The client offers read batches (the server grants them): reads
    /// queued together go as one `ReadBatch`, answered with one immediate.
    pub batches: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_io: 3000,
            span: 6000,
            max_segments: 4,
            max_registrations: 8,
            defer_reads: true,
            no_write_behind_interrupt: true,
            one_pass: false,
            batches: false,
        }
    }
}

/// One step of the pair, each moving at most one item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Step {
    ClientTransmit,
    ServerReceive,
    ServerEvent,
    ServerCompleteRead,
    ServerTransmit,
    ClientReceive,
    ClientPoll,
    ClientEvents,
    /// Everything, until quiescent.
    Drive,
}

/// The single steps, in the order a drive round runs them.
const ROUND: [Step; 8] = [
    Step::ClientTransmit,
    Step::ServerReceive,
    Step::ServerEvent,
    Step::ServerCompleteRead,
    Step::ServerTransmit,
    Step::ClientReceive,
    Step::ClientPoll,
    Step::ClientEvents,
];

/// A fault, in the generators' terms (see [`Fault`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum FaultSpec {
    Drop {
        to_server: bool,
        index: u8,
    },
    Duplicate {
        to_server: bool,
        index: u8,
    },
    Corrupt {
        to_server: bool,
        index: u8,
        offset: u16,
        xor: u8,
    },
    Break,
}

impl FaultSpec {
    fn fault(self) -> Fault {
        let dir = |to_server| {
            if to_server {
                Direction::ToServer
            } else {
                Direction::ToClient
            }
        };
        match self {
            Self::Drop { to_server, index } => Fault::Drop {
                dir: dir(to_server),
                index: usize::from(index),
            },
            Self::Duplicate { to_server, index } => Fault::Duplicate {
                dir: dir(to_server),
                index: usize::from(index),
            },
            Self::Corrupt {
                to_server,
                index,
                offset,
                xor,
            } => Fault::Corrupt {
                dir: dir(to_server),
                index: usize::from(index),
                offset: usize::from(offset),
                xor,
            },
            Self::Break => Fault::BreakConnection,
        }
    }
}

/// One thing that happens in a session. Numbers are reduced into range by
/// the [`Limits`]; `file` picks a registered handle (or, past the last, a
/// handle that was never registered).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Action {
    Read {
        file: u8,
        offset: u16,
        len: u16,
        polling: bool,
    },
    ReadV {
        file: u8,
        segments: Vec<(u16, u16)>,
        polling: bool,
    },
    Write {
        file: u8,
        offset: u16,
        len: u16,
        seed: u8,
        polling: bool,
    },
    WriteV {
        file: u8,
        segments: Vec<(u16, u16)>,
        collapse: bool,
        seed: u8,
        polling: bool,
    },
    /// Cancel the `which`-th outstanding data request.
    Cancel {
        which: u8,
    },
    Close {
        file: u8,
    },
    /// Open a new file on the pipe and register it.
    Register {
        seed: u8,
    },
    /// Polling mode's interrupt request (claim 21).
    Interrupt,
    /// The server steers the client's credits to `1 + target % max`.
    CreditTarget {
        target: u8,
    },
    /// The server's credit policy looks at the client's use
    /// (`Connection::review_credits`), after `millis` of virtual time.
    ReviewCredits {
        millis: u8,
    },
    Step(Step),
    Advance {
        millis: u16,
    },
    /// The client ends the connection in an orderly way.
    Disconnect,
    Fault(FaultSpec),
}

/// What a finished session exercised.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub grants: usize,
    pub revokes: usize,
    pub give_ups: usize,
    pub completed: usize,
    pub cancelled: usize,
    pub terminated: bool,
    /// `ReadBatch` messages the client sent.
    pub read_batches: u64,
}

/// A bytes pattern for write data.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn mode(polling: bool) -> CompletionMode {
    if polling {
        CompletionMode::Polling
    } else {
        CompletionMode::Interrupt
    }
}

/// Small credits and sends, so credits run out and writes fragment.
pub fn configs() -> (ServerConfig, ClientConfig) {
    let server = ServerConfig {
        initial_credits: 4,
        max_credits: 8,
        max_send_size: 1024,
        ..ServerConfig::default()
    };
    let client = ClientConfig {
        providers: providers(&["loopback"]),
        max_credits: 8,
        max_send_size: 1024,
        // Requests state their demand, which `ReviewCredits` follows.
        capabilities: rdio_core::wire::Capabilities::CREDIT_DEMAND,
        ..ClientConfig::default()
    };
    (server, client)
}

#[derive(Clone, Debug)]
struct HandleState {
    handle: u32,
    file: FileId,
    flags: OpenFlags,
    /// A close was submitted: later requests find the handle invalid.
    close_submitted: bool,
}

/// Which handle an action names.
#[derive(Clone, Copy, Debug)]
enum Target {
    Handle(usize),
    Bogus,
}

/// What the model expects of a data request, decided at submission.
#[derive(Clone, Debug)]
enum Expect {
    /// It fails with this status, moving no data.
    Fails(Status),
    /// It runs: for a read, the bytes each segment gets.
    Read(Vec<Vec<u8>>),
    /// It runs: a write.
    Write,
    /// Not a data request.
    Nothing,
}

#[derive(Clone, Debug)]
enum Kind {
    Read {
        target: Target,
        segments: Vec<(u64, BufferDescriptor)>,
    },
    Write {
        target: Target,
        segments: Vec<(u64, u32)>,
        collapse: bool,
        data: Vec<u8>,
    },
    Close {
        target: Target,
        expect_success: bool,
    },
    Register {
        file: FileId,
    },
    Interrupt,
}

#[derive(Clone, Debug)]
struct Tracked {
    kind: Kind,
    expect: Expect,
    cancel_requested: bool,
    /// A close of its handle was submitted after it.
    closed_after: bool,
}

/// The file bytes a data request touches.
struct Footprint {
    file: FileId,
    ranges: Vec<(u64, u64)>,
    write: bool,
}

impl Tracked {
    /// The file bytes this request may touch (or, for a read, depend on): a
    /// write past the end of the file also fills the gap before it.
    fn file_ranges(
        &self,
        handles: &[HandleState],
        files: &HashMap<FileId, Vec<u8>>,
    ) -> Option<Footprint> {
        let (target, ranges, write): (_, Vec<(u64, u64)>, _) = match &self.kind {
            Kind::Read { target, segments } => (
                target,
                segments
                    .iter()
                    .map(|(o, d)| (*o, o + u64::from(d.len())))
                    .collect(),
                false,
            ),
            Kind::Write {
                target, segments, ..
            } => (
                target,
                segments
                    .iter()
                    .map(|(o, l)| (*o, o + u64::from(*l)))
                    .collect(),
                true,
            ),
            _ => return None,
        };
        let Target::Handle(i) = target else {
            return None;
        };
        let file = handles[*i].file;
        let end_of_file = files.get(&file).map_or(0, |f| f.len() as u64);
        let ranges = ranges
            .into_iter()
            .map(|(start, end)| {
                if write {
                    (start.min(end_of_file), end)
                } else {
                    (start, end)
                }
            })
            .collect();
        Some(Footprint {
            file,
            ranges,
            write,
        })
    }
}

/// A running session and its models.
pub struct Session {
    pub pair: Pair,
    pub limits: Limits,
    model: Option<CreditModel>,
    handles: Vec<HandleState>,
    files: HashMap<FileId, Vec<u8>>,
    outstanding: BTreeMap<RequestId, Tracked>,
    reported: HashSet<RequestId>,
    /// Read buffers as they were when their request was reported: nothing
    /// may write into them afterwards.
    reported_buffers: Vec<(RequestId, BufferDescriptor, Vec<u8>)>,
    registrations: usize,
    /// A fault was injected: only exactly-once completion is checked.
    pub damaged: bool,
    /// The file model is exact (no fault, no termination with writes lost
    /// mid-way).
    content_exact: bool,
    terminated: Option<Violation>,
    stats: Stats,
}

fn fail(context: &str, why: String) -> ! {
    panic!("{context}: {why}")
}

impl Session {
    /// An authenticated pair with three registered files: read-write with
    /// data, read-only with data, write-only and empty.
    pub fn new(limits: Limits) -> Self {
        let (server, mut client) = configs();
        if limits.batches {
            client.capabilities = rdio_core::wire::Capabilities::READ_BATCH;
        }
        let mut pair = Pair::new(server, client).authenticated();
        let mut files = HashMap::new();
        let mut handles = Vec::new();
        for (contents, flags) in [
            (pattern(4096, 1), OpenFlags::READ | OpenFlags::WRITE),
            (pattern(2048, 2), OpenFlags::READ),
            (Vec::new(), OpenFlags::WRITE),
        ] {
            let file = FileId(pair.next_file);
            let key = pair.open_file(contents.clone(), flags);
            let handle = pair.register(key);
            files.insert(file, contents);
            handles.push(HandleState {
                handle,
                file,
                flags,
                close_submitted: false,
            });
        }
        pair.defer_reads = limits.defer_reads;
        pair.one_pass = limits.one_pass;
        pair.assert_quiescent_ledgers();
        let model = CreditModel::new(pair.client.ledger().level());
        Self {
            pair,
            limits,
            model: Some(model),
            handles,
            files,
            outstanding: BTreeMap::new(),
            reported: HashSet::new(),
            reported_buffers: Vec::new(),
            registrations: 0,
            damaged: false,
            content_exact: true,
            terminated: None,
            stats: Stats::default(),
        }
    }

    fn target(&self, file: u8) -> Target {
        let index = usize::from(file) % (self.handles.len() + 1);
        if index == self.handles.len() {
            Target::Bogus
        } else {
            Target::Handle(index)
        }
    }

    fn handle_of(&self, target: Target) -> u32 {
        match target {
            Target::Handle(i) => self.handles[i].handle,
            Target::Bogus => BOGUS_HANDLE,
        }
    }

    fn len(&self, len: u16) -> u32 {
        1 + (usize::from(len) % self.limits.max_io) as u32
    }

    fn offset(&self, offset: u16) -> u64 {
        u64::from(offset) % self.limits.span
    }

    fn segments(&self, raw: &[(u16, u16)]) -> Vec<(u64, u32)> {
        let mut segments: Vec<(u64, u32)> = raw
            .iter()
            .take(self.limits.max_segments)
            .map(|&(o, l)| (self.offset(o), self.len(l)))
            .collect();
        if segments.is_empty() {
            segments.push((0, 1));
        }
        segments
    }

    /// What a data request on `target` needing `right` will do, by the
    /// handle model.
    fn expect_access(&self, target: Target, right: OpenFlags) -> Result<FileId, Status> {
        let Target::Handle(i) = target else {
            return Err(Status::InvalidHandle);
        };
        let handle = &self.handles[i];
        if handle.close_submitted {
            Err(Status::InvalidHandle)
        } else if !handle.flags.contains(right) {
            Err(Status::AccessDenied)
        } else {
            Ok(handle.file)
        }
    }

    /// Run the pair until no outstanding request touches `ranges` of `file`
    /// in a way that races with this one.
    fn serialise(&mut self, file: FileId, ranges: &[(u64, u64)], write: bool) {
        let end_of_file = self.files.get(&file).map_or(0, |f| f.len() as u64);
        let ranges: Vec<(u64, u64)> = ranges
            .iter()
            .map(|&(start, end)| {
                if write {
                    (start.min(end_of_file), end)
                } else {
                    (start, end)
                }
            })
            .collect();
        let conflicts = |s: &Self| {
            s.outstanding.values().any(|t| {
                t.file_ranges(&s.handles, &s.files).is_some_and(|theirs| {
                    theirs.file == file
                        && (write || theirs.write)
                        && theirs
                            .ranges
                            .iter()
                            .any(|&(a, b)| ranges.iter().any(|&(c, d)| a < d && c < b))
                })
            })
        };
        if conflicts(self) {
            self.drive();
            if conflicts(self) {
                // Only possible after a fault: the model is off anyway.
                self.content_exact = false;
            }
        }
    }

    fn submitted(&mut self, result: Result<RequestId, ApiError>, kind: Kind, expect: Expect) {
        match result {
            Ok(request) => {
                let tracked = Tracked {
                    kind,
                    expect,
                    cancel_requested: false,
                    closed_after: false,
                };
                assert!(
                    self.outstanding.insert(request, tracked).is_none(),
                    "request id {request:?} reused while outstanding"
                );
                assert!(
                    !self.reported.contains(&request),
                    "request id {request:?} reused"
                );
            }
            Err(ApiError::TooManyRequests) => {}
            Err(ApiError::NotConnected) if self.pair.client.is_closed() => {}
            Err(e) => panic!("submission refused: {e}"),
        }
    }

    fn read(&mut self, target: Target, segments: Vec<(u64, u32)>, polling: bool) {
        let expect = match self.expect_access(target, OpenFlags::READ) {
            Ok(file) => {
                let ranges: Vec<_> = segments
                    .iter()
                    .map(|&(o, l)| (o, o + u64::from(l)))
                    .collect();
                self.serialise(file, &ranges, false);
                let contents = &self.files[&file];
                Expect::Read(
                    segments
                        .iter()
                        .map(|&(o, l)| {
                            let start = (o as usize).min(contents.len());
                            let end = (start + l as usize).min(contents.len());
                            contents[start..end].to_vec()
                        })
                        .collect(),
                )
            }
            Err(status) => Expect::Fails(status),
        };
        let dests: Vec<(u64, BufferDescriptor)> = segments
            .iter()
            .map(|&(o, l)| (o, self.pair.memory.alloc(l as usize)))
            .collect();
        let status = self.pair.status_desc();
        let handle = self.handle_of(target);
        let mode = mode(polling);
        let result = if dests.len() == 1 {
            let submitted = self
                .pair
                .submit_read(handle, dests[0].0, dests[0].1, status, mode);
            // A request `read_into` sent at once: the credit model sees it
            // as it sees every client send.
            if let (Ok((_, Some(msg))), Some(model)) = (&submitted, self.model.as_mut()) {
                if let Err(why) = model.client_sent(msg) {
                    fail("read_into", why);
                }
            }
            submitted.map(|(request, _)| request)
        } else {
            let wire: Vec<ReadSegment> =
                dests.iter().map(|&(o, d)| ReadSegment::new(o, d)).collect();
            self.pair.client.read_vectored(handle, &wire, status, mode)
        };
        if let Ok(request) = result {
            self.pair.track(request, status, mode);
        }
        let kind = Kind::Read {
            target,
            segments: dests,
        };
        self.submitted(result, kind, expect);
    }

    fn write(
        &mut self,
        target: Target,
        segments: Vec<(u64, u32)>,
        collapse: bool,
        seed: u8,
        polling: bool,
        single: bool,
    ) {
        let mut segments: Vec<(u64, u32)> = if collapse {
            let len = segments[0].1;
            segments.iter().map(|&(o, _)| (o, len)).collect()
        } else {
            segments
        };
        // Overlapping segments of one write land in an order the protocol
        // leaves open (per fragment, per segment): keep them disjoint.
        segments.sort_unstable();
        let mut end = 0;
        for (offset, len) in &mut segments {
            *offset = (*offset).max(end);
            end = *offset + u64::from(*len);
        }
        if self.limits.no_write_behind_interrupt
            && self
                .outstanding
                .values()
                .any(|t| matches!(t.kind, Kind::Interrupt))
        {
            return;
        }
        let expect = match self.expect_access(target, OpenFlags::WRITE) {
            Ok(file) => {
                let ranges: Vec<_> = segments
                    .iter()
                    .map(|&(o, l)| (o, o + u64::from(l)))
                    .collect();
                self.serialise(file, &ranges, true);
                Expect::Write
            }
            Err(status) => Expect::Fails(status),
        };
        let data_len = if collapse {
            segments[0].1
        } else {
            segments.iter().map(|s| s.1).sum()
        };
        let data = pattern(data_len as usize, seed);
        let status = self.pair.status_desc();
        let handle = self.handle_of(target);
        let mode = mode(polling);
        let result = if single {
            self.pair
                .client
                .write(handle, segments[0].0, data_len, status, mode)
        } else {
            let wire: Vec<WriteSegment> = segments
                .iter()
                .map(|&(o, l)| WriteSegment::new(o, l))
                .collect();
            self.pair
                .client
                .write_vectored(handle, &wire, collapse, status, mode)
        };
        if let Ok(request) = result {
            self.pair.track(request, status, mode);
            self.pair.write_data.insert(request, data.clone());
        }
        let kind = Kind::Write {
            target,
            segments,
            collapse,
            data,
        };
        self.submitted(result, kind, expect);
    }

    /// Apply one action, then check everything.
    pub fn apply(&mut self, action: &Action) {
        match action {
            Action::Read {
                file,
                offset,
                len,
                polling,
            } => {
                let target = self.target(*file);
                let segments = vec![(self.offset(*offset), self.len(*len))];
                self.read(target, segments, *polling);
            }
            Action::ReadV {
                file,
                segments,
                polling,
            } => {
                let target = self.target(*file);
                let segments = self.segments(segments);
                self.read(target, segments, *polling);
            }
            Action::Write {
                file,
                offset,
                len,
                seed,
                polling,
            } => {
                let target = self.target(*file);
                let segments = vec![(self.offset(*offset), self.len(*len))];
                self.write(target, segments, false, *seed, *polling, true);
            }
            Action::WriteV {
                file,
                segments,
                collapse,
                seed,
                polling,
            } => {
                let target = self.target(*file);
                let segments = self.segments(segments);
                self.write(target, segments, *collapse, *seed, *polling, false);
            }
            Action::Cancel { which } => self.cancel(*which),
            Action::Close { file } => self.close(*file),
            Action::Register { seed } => self.register(*seed),
            Action::Interrupt => {
                let result = self.pair.client.request_interrupt();
                self.submitted(result, Kind::Interrupt, Expect::Nothing);
            }
            Action::CreditTarget { target } => {
                let max = configs().1.max_credits;
                let target = 1 + u16::from(*target) % max;
                match self.pair.server.set_credit_target(target) {
                    Ok(()) => {
                        if let Some(model) = &mut self.model {
                            model.set_target(target);
                        }
                    }
                    Err(ApiError::NotConnected) if self.pair.server.is_closed() => {}
                    Err(e) => panic!("set_credit_target({target}) refused: {e}"),
                }
            }
            Action::ReviewCredits { millis } => {
                self.pair.advance(Duration::from_millis(u64::from(*millis)));
                let before = self.pair.server.credit_target();
                self.pair.review_credits();
                let after = self.pair.server.credit_target();
                if after != before {
                    if let Some(model) = &mut self.model {
                        model.set_target(after);
                    }
                }
            }
            Action::Step(Step::Drive) => self.drive(),
            Action::Step(step) => {
                self.step(*step);
            }
            Action::Advance { millis } => {
                self.pair.advance(Duration::from_millis(u64::from(*millis)));
            }
            Action::Disconnect => self.pair.client.close_connection(),
            Action::Fault(spec) => {
                if self.pair.inject(spec.fault()) {
                    self.damaged = true;
                    self.content_exact = false;
                    self.model = None;
                }
            }
        }
        self.after_step("after action");
    }

    fn cancel(&mut self, which: u8) {
        let candidates: Vec<RequestId> = self
            .outstanding
            .iter()
            .filter(|(_, t)| matches!(t.kind, Kind::Read { .. } | Kind::Write { .. }))
            .map(|(r, _)| *r)
            .collect();
        if candidates.is_empty() {
            return;
        }
        let request = candidates[usize::from(which) % candidates.len()];
        match self.pair.client.cancel(request) {
            Ok(()) => {
                if let Some(t) = self.outstanding.get_mut(&request) {
                    t.cancel_requested = true;
                }
            }
            // Already answered, already cancelled, or no room for the
            // cancel message: refused without effect.
            Err(ApiError::UnknownRequest | ApiError::TooManyRequests) => {}
            Err(e) => panic!("cancel refused: {e}"),
        }
    }

    fn close(&mut self, file: u8) {
        let target = self.target(file);
        let handle = self.handle_of(target);
        let expect_success = match target {
            Target::Handle(i) => !self.handles[i].close_submitted,
            Target::Bogus => false,
        };
        let result = self.pair.client.close(handle);
        if result.is_ok() {
            if let Target::Handle(i) = target {
                self.handles[i].close_submitted = true;
                for t in self.outstanding.values_mut() {
                    if matches!(&t.kind,
                        Kind::Read { target: Target::Handle(j), .. }
                        | Kind::Write { target: Target::Handle(j), .. } if *j == i)
                    {
                        t.closed_after = true;
                    }
                }
            }
        }
        let kind = Kind::Close {
            target,
            expect_success,
        };
        self.submitted(result, kind, Expect::Nothing);
    }

    fn register(&mut self, seed: u8) {
        if self.registrations >= self.limits.max_registrations {
            return;
        }
        self.registrations += 1;
        let contents = pattern(1000, seed);
        let file = FileId(self.pair.next_file);
        let key = self
            .pair
            .open_file(contents.clone(), OpenFlags::READ | OpenFlags::WRITE);
        self.files.insert(file, contents);
        let result = self.pair.client.register(key);
        self.submitted(result, Kind::Register { file }, Expect::Nothing);
    }

    /// Run one single step, feeding the credit model what it moved.
    /// Returns whether anything moved.
    pub fn step(&mut self, step: Step) -> bool {
        if step == Step::Drive {
            self.drive();
            return false;
        }
        let pair = &mut self.pair;
        let observed: Result<bool, String> = match step {
            Step::ClientTransmit => match pair.client_transmit_one() {
                Some(msg) => self
                    .model
                    .as_mut()
                    .map_or(Ok(()), |m| m.client_sent(&msg))
                    .map(|()| true),
                None => Ok(false),
            },
            Step::ServerReceive => {
                let was_open = !pair.server.is_closed();
                match pair.server_receive_one() {
                    Some(msg) if was_open && pair.server_error.is_none() => self
                        .model
                        .as_mut()
                        .map_or(Ok(()), |m| m.server_received(&msg))
                        .map(|()| true),
                    Some(_) => Ok(true),
                    None => Ok(false),
                }
            }
            Step::ServerEvent => Ok(pair.server_event_one()),
            Step::ServerCompleteRead => Ok(pair.server_complete_read_one()),
            Step::ServerTransmit => match pair.server_transmit_one() {
                Some(output) => self
                    .model
                    .as_mut()
                    .map_or(Ok(()), |m| m.server_sent(&output))
                    .map(|()| true),
                None => Ok(false),
            },
            Step::ClientReceive => {
                let was_open = !pair.client.is_closed();
                match pair.client_receive_one() {
                    Some(input) if was_open && pair.client_error.is_none() => self
                        .model
                        .as_mut()
                        .map_or(Ok(()), |m| m.client_received(&input))
                        .map(|()| true),
                    Some(_) => Ok(true),
                    None => Ok(false),
                }
            }
            Step::ClientPoll => {
                let blocks = pair.client_poll();
                let mut result = Ok(!blocks.is_empty());
                if pair.client_error.is_none() {
                    if let Some(model) = self.model.as_mut() {
                        for block in &blocks {
                            if let Err(e) = model.client_got_block(block) {
                                result = Err(e);
                                break;
                            }
                        }
                    }
                }
                result
            }
            Step::ClientEvents => Ok(pair.client_events()),
            Step::Drive => unreachable!("handled above"),
        };
        // Status blocks the step posted directly (`Pair::one_pass`), after
        // what the step itself observed.
        let posted = std::mem::take(&mut self.pair.posted);
        let observed = observed.and_then(|moved| {
            posted.iter().try_for_each(|output| {
                self.model
                    .as_mut()
                    .map_or(Ok(()), |m| m.server_sent(output))
            })?;
            Ok(moved || !posted.is_empty())
        });
        let moved = observed.unwrap_or_else(|why| fail(&format!("{step:?}"), why));
        self.after_step(&format!("{step:?}"));
        moved
    }

    /// Run every step until nothing moves.
    pub fn drive(&mut self) {
        for _ in 0..100_000 {
            let mut moved = false;
            for step in ROUND {
                while self.step(step) {
                    moved = true;
                }
            }
            if !moved {
                return;
            }
        }
        panic!("session did not quiesce");
    }

    fn after_step(&mut self, context: &str) {
        let events: Vec<ClientEvent> = std::mem::take(&mut self.pair.events);
        for event in events {
            self.on_event(event);
        }
        if self.pair.client.is_closed() || self.pair.server.is_closed() {
            // The ledgers stop at termination; nothing more to compare.
            self.model = None;
        }
        if self.damaged {
            return;
        }
        if !self.pair.anomalies.is_empty() {
            fail(
                context,
                format!("driver anomalies: {:?}", self.pair.anomalies),
            );
        }
        if self.pair.client_error.is_some() || self.pair.server_error.is_some() {
            fail(
                context,
                format!(
                    "violation without any fault: client {:?}, server {:?}",
                    self.pair.client_error, self.pair.server_error
                ),
            );
        }
        if let Some(model) = &self.model {
            if let Err(why) = model.check(self.pair.client.ledger(), &self.pair.server.ledger()) {
                fail(context, why);
            }
        }
    }

    fn on_event(&mut self, event: ClientEvent) {
        let Some(request) = event_request(&event) else {
            if let ClientEvent::Terminated { reason } = event {
                assert!(self.terminated.is_none(), "Terminated reported twice");
                self.terminated = Some(reason);
                self.stats.terminated = true;
                // Writes in flight may have landed partly: unknown now.
                self.content_exact = false;
                if !self.damaged {
                    assert!(
                        matches!(reason, Violation::TimedOut | Violation::PeerTerminated(_)),
                        "connection ended without a fault: {reason:?}"
                    );
                }
            }
            return;
        };
        assert!(
            self.reported.insert(request),
            "{request:?} reported twice: {event:?}"
        );
        let tracked = self
            .outstanding
            .remove(&request)
            .unwrap_or_else(|| panic!("event for a request never submitted: {event:?}"));
        self.stats.completed += 1;
        // A connection that ended reports its requests before `Terminated`.
        let ended = self.terminated.is_some() || self.pair.client.is_closed();
        let exact = !self.damaged && !ended && self.content_exact;
        match (&tracked.kind, event) {
            (Kind::Register { file }, ClientEvent::Registered { result, .. }) => match result {
                Ok(remote) => self.handles.push(HandleState {
                    handle: remote.handle,
                    file: *file,
                    flags: OpenFlags::READ | OpenFlags::WRITE,
                    close_submitted: false,
                }),
                Err(status) if exact => assert!(
                    status == Status::ResourceExhausted,
                    "registration failed: {status:?}"
                ),
                Err(_) => {}
            },
            (Kind::Interrupt, ClientEvent::Interrupted { .. }) => {}
            (Kind::Interrupt, ClientEvent::Completed { status, .. }) => assert!(
                ended || self.damaged,
                "interrupt request completed {status:?} on a live connection"
            ),
            (
                Kind::Close {
                    target,
                    expect_success,
                },
                ClientEvent::Completed { status, .. },
            ) => {
                if exact {
                    let expected = if *expect_success {
                        Status::Success
                    } else {
                        Status::InvalidHandle
                    };
                    assert_eq!(status, expected, "close of {target:?}");
                }
            }
            (Kind::Read { segments, .. }, ClientEvent::Completed { status, bytes, .. }) => {
                if status == Status::Cancelled {
                    self.stats.cancelled += 1;
                }
                for &(_, dest) in segments {
                    let now = self.pair.memory.read(dest);
                    self.reported_buffers.push((request, dest, now));
                }
                if exact {
                    self.check_read(&tracked, status, bytes);
                }
            }
            (Kind::Write { .. }, ClientEvent::Completed { status, bytes, .. }) => {
                if status == Status::Cancelled {
                    self.stats.cancelled += 1;
                }
                if exact {
                    self.check_write(&tracked, status, bytes);
                }
            }
            (kind, event) => panic!("{kind:?} reported as {event:?}"),
        }
    }

    fn check_read(&mut self, tracked: &Tracked, status: Status, bytes: u64) {
        let Kind::Read { segments, .. } = &tracked.kind else {
            unreachable!()
        };
        let interrupted = (tracked.cancel_requested && status == Status::Cancelled)
            || (tracked.closed_after && status == Status::Closed);
        match &tracked.expect {
            Expect::Fails(_) if interrupted => assert_eq!(bytes, 0, "{status:?} read moved bytes"),
            Expect::Fails(expected) => {
                assert_eq!((status, bytes), (*expected, 0), "read {tracked:?}");
            }
            Expect::Read(expected) => {
                let total: usize = expected.iter().map(Vec::len).sum();
                let want = if total == 0 {
                    Status::EndOfFile
                } else {
                    Status::Success
                };
                // Interrupted before the driver took it: nothing moved.
                // Interrupted in the driver's hands: it moved everything.
                if interrupted && bytes == 0 {
                    return;
                }
                if !interrupted {
                    assert_eq!(status, want, "read of {segments:?}");
                }
                assert_eq!(bytes, total as u64, "{status:?} read of {segments:?}");
                for ((_, dest), want) in segments.iter().zip(expected) {
                    let got = self.pair.memory.read(*dest);
                    assert_eq!(&got[..want.len()], &want[..], "read data at {dest:?}");
                    assert!(
                        got[want.len()..].iter().all(|&b| b == 0),
                        "read wrote past the file's end into {dest:?}"
                    );
                }
            }
            Expect::Write | Expect::Nothing => unreachable!("a read expects data"),
        }
    }

    fn check_write(&mut self, tracked: &Tracked, status: Status, bytes: u64) {
        let Kind::Write {
            target,
            segments,
            collapse,
            data,
        } = &tracked.kind
        else {
            unreachable!()
        };
        let copies = if *collapse { segments.len() as u64 } else { 1 };
        let full = data.len() as u64 * copies;
        match &tracked.expect {
            Expect::Fails(expected) => {
                let cancelled = tracked.cancel_requested && status == Status::Cancelled;
                assert!(
                    status == *expected || cancelled,
                    "write {tracked:?} completed {status:?}"
                );
                assert_eq!(bytes, 0, "failed write moved bytes");
                return;
            }
            Expect::Write if status == Status::Success => {
                assert_eq!(bytes, full, "write of {segments:?}");
            }
            Expect::Write => {
                assert!(
                    tracked.cancel_requested && status == Status::Cancelled,
                    "write {tracked:?} completed {status:?}"
                );
                assert!(
                    bytes <= full && bytes % copies == 0,
                    "cancelled write moved {bytes}"
                );
            }
            Expect::Read(_) | Expect::Nothing => unreachable!("a write expects a write"),
        }
        // Apply the prefix of the data stream that reached the file.
        let Target::Handle(i) = target else {
            unreachable!("bogus handles fail")
        };
        let contents = self
            .files
            .get_mut(&self.handles[*i].file)
            .expect("modelled");
        let mut stream = &data[..(bytes / copies) as usize];
        let mut put = |offset: u64, bytes: &[u8]| {
            if bytes.is_empty() {
                return;
            }
            let end = offset as usize + bytes.len();
            if contents.len() < end {
                contents.resize(end, 0);
            }
            contents[offset as usize..end].copy_from_slice(bytes);
        };
        if *collapse {
            for &(offset, _) in segments {
                put(offset, stream);
            }
        } else {
            for &(offset, len) in segments {
                let n = stream.len().min(len as usize);
                put(offset, &stream[..n]);
                stream = &stream[n..];
            }
        }
    }

    /// Release everything and check the end state; what was exercised.
    pub fn finish(mut self) -> Stats {
        if !self.damaged {
            // No fault: everything completes by itself, with no time passing.
            self.drive();
            assert!(
                self.outstanding.is_empty() || self.terminated.is_some(),
                "deadlock: requests outstanding after everything ran: {:?}\nclient ledger {:?}\nserver ledger {:?}",
                self.outstanding,
                self.pair.client.ledger(),
                self.pair.server.ledger()
            );
        }
        // Let the liveness timers end whatever a fault left stuck.
        for _ in 0..8 {
            if self.outstanding.is_empty() {
                break;
            }
            self.drive();
            self.pair.advance(Duration::from_secs(31));
            self.after_step("timers");
        }
        self.drive();
        assert!(
            self.outstanding.is_empty(),
            "requests never reported (damaged: {}): {:?}\nclient closed {} ledger {:?}",
            self.damaged,
            self.outstanding,
            self.pair.client.is_closed(),
            self.pair.client.ledger()
        );
        for (request, dest, then) in &self.reported_buffers {
            assert_eq!(
                &self.pair.memory.read(*dest),
                then,
                "server wrote into the buffer of {request:?} after it was reported"
            );
        }
        if let Some(model) = &self.model {
            if let Err(why) =
                model.check_quiescent(self.pair.client.ledger(), &self.pair.server.ledger())
            {
                fail("quiescence", why);
            }
            self.pair.assert_quiescent_ledgers();
            self.stats.grants = model.exchanges().iter().filter(|e| e.delta > 0).count();
            self.stats.revokes = model.exchanges().iter().filter(|e| e.delta < 0).count();
            self.stats.give_ups = model
                .sent_by_client
                .get(&rdio_core::wire::Opcode::CreditGiveUp)
                .copied()
                .unwrap_or(0);
        }
        self.stats.read_batches = self.pair.client.stats().read_batches;
        if self.content_exact {
            for (file, want) in &self.files {
                let got = &self.pair.files[file];
                let first_difference = got.iter().zip(want).position(|(a, b)| a != b);
                assert!(
                    got == want,
                    "{file:?} differs from the model: {} bytes, model {}, first difference at {first_difference:?}",
                    got.len(),
                    want.len()
                );
            }
        }
        self.stats
    }
}

/// Proptest generators of fault-free sessions.
pub mod strategies {
    use super::{Action, Step};
    use proptest::collection::vec;
    use proptest::prelude::*;

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => Just(Step::ClientTransmit),
            3 => Just(Step::ServerReceive),
            2 => Just(Step::ServerEvent),
            1 => Just(Step::ServerCompleteRead),
            3 => Just(Step::ServerTransmit),
            3 => Just(Step::ClientReceive),
            1 => Just(Step::ClientPoll),
            1 => Just(Step::ClientEvents),
            1 => Just(Step::Drive),
        ]
    }

    fn segments() -> impl Strategy<Value = Vec<(u16, u16)>> {
        vec(any::<(u16, u16)>(), 1..5)
    }

    /// Every client request kind, in both completion modes.
    pub fn request() -> impl Strategy<Value = Action> {
        prop_oneof![
            (any::<u8>(), any::<u16>(), any::<u16>(), any::<bool>()).prop_map(
                |(file, offset, len, polling)| Action::Read {
                    file,
                    offset,
                    len,
                    polling
                }
            ),
            (any::<u8>(), segments(), any::<bool>()).prop_map(|(file, segments, polling)| {
                Action::ReadV {
                    file,
                    segments,
                    polling,
                }
            }),
            (
                any::<u8>(),
                any::<u16>(),
                any::<u16>(),
                any::<u8>(),
                any::<bool>()
            )
                .prop_map(|(file, offset, len, seed, polling)| Action::Write {
                    file,
                    offset,
                    len,
                    seed,
                    polling
                }),
            (
                any::<u8>(),
                segments(),
                any::<bool>(),
                any::<u8>(),
                any::<bool>()
            )
                .prop_map(|(file, segments, collapse, seed, polling)| Action::WriteV {
                    file,
                    segments,
                    collapse,
                    seed,
                    polling
                }),
        ]
    }

    /// Sessions stressing credit accounting: credit targets, held and
    /// released queues, and every request kind, cancel, close and
    /// interrupt request.
    pub fn credit_actions(len: usize) -> impl Strategy<Value = Vec<Action>> {
        let action = prop_oneof![
            4 => request(),
            1 => any::<u8>().prop_map(|which| Action::Cancel { which }),
            1 => any::<u8>().prop_map(|file| Action::Close { file }),
            1 => Just(Action::Interrupt),
            3 => any::<u8>().prop_map(|target| Action::CreditTarget { target }),
            3 => any::<u8>().prop_map(|millis| Action::ReviewCredits { millis }),
            12 => step().prop_map(Action::Step),
            1 => (0u16..200).prop_map(|millis| Action::Advance { millis }),
        ];
        vec(action, 1..len)
    }

    /// Sessions stressing the data path: requests of every kind on
    /// registered and unregistered handles, new registrations, cancels and
    /// closes, with the queues stepped in any order.
    pub fn session_actions(len: usize) -> impl Strategy<Value = Vec<Action>> {
        let action = prop_oneof![
            8 => request(),
            1 => any::<u8>().prop_map(|which| Action::Cancel { which }),
            1 => any::<u8>().prop_map(|file| Action::Close { file }),
            1 => any::<u8>().prop_map(|seed| Action::Register { seed }),
            1 => Just(Action::Interrupt),
            1 => any::<u8>().prop_map(|target| Action::CreditTarget { target }),
            1 => any::<u8>().prop_map(|millis| Action::ReviewCredits { millis }),
            8 => step().prop_map(Action::Step),
        ];
        vec(action, 1..len)
    }
}
