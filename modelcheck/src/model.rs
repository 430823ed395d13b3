//! The stateright model: the two actors (the real client and server cores,
//! driven through [`crate::adapter`]), the network between them, the
//! nondeterministic environment, and the properties.
//!
//! # Network
//! One reliable connection (RC semantics): each direction is a FIFO that
//! never drops, duplicates or reorders. Server → client carries sends and
//! RDMA writes in the order the server posted them; an RDMA write's bytes
//! are in client memory when it is delivered, so a status block is visible
//! before its immediate completion is processed (both happen in that one
//! delivery). A connection loss empties both directions and tells both
//! sides at once; afterwards nothing is delivered. The blocks of a read
//! batch sent with `INTERRUPT` wait in memory for the batch's immediate,
//! on which the client's driver hands every read's block to the core.
//!
//! # Environment
//! The client's driver submits requests ([`Submit`]), one at a time or two
//! reads before it drains (a read batch, when negotiated), and cancels
//! them; the server's driver takes the core's events when it likes, takes
//! the reads of a batch one by one (or has that cut short by another call),
//! finishes its work in any order with a full count, a short count or an
//! error, and steers credits (one grant, one revoke). Time stands still
//! except at a `Tick`, which moves it to one of the pending deadlines and
//! runs both sides' timers. Every environment choice has a budget
//! ([`Bounds`]), so the state space is finite and every path ends
//! (stateright's `eventually` needs acyclic paths).
//!
//! # Observers
//! Everything the properties need beyond the cores' public getters is
//! recorded in [`Ghost`] from the wire (message headers, status blocks,
//! write targets), independently of the cores' own bookkeeping.

use crate::adapter::{
    ClientSide, Limits, Memory, Mode, Outcome, ServerSide, Submit, ToClient, ToServer, Work, peek,
};
use rdio_core::client::{BlockOutcome, ClientEvent};
use rdio_core::wire::status::STATUS_BLOCK_LEN;
use rdio_core::wire::{Body, BufferDescriptor, Flags, Status, StatusBlock};
use rdio_core::{Instant, Violation};
use stateright::{Model, Property};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Environment budgets: how many of each nondeterministic choice a path
/// may make.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Bounds {
    /// Requests the client submits (besides the registration).
    pub requests: u8,
    /// The kinds they are chosen from.
    pub kinds: Vec<Submit>,
    /// Registrations.
    pub registers: u8,
    /// Cancels.
    pub cancels: u8,
    /// Credit grants by the server.
    pub grants: u8,
    /// Credit revokes by the server.
    pub revokes: u8,
    /// Connection losses.
    pub losses: u8,
    /// Time advances to a deadline.
    pub ticks: u8,
    /// Times the client's driver submits two reads (of the `read` kinds
    /// among `kinds`) before it drains its transmits, so that they go as
    /// one `ReadBatch` when the session negotiated read batches (each
    /// counts as two `requests`).
    pub pairs: u8,
}

/// The checked system.
#[derive(Clone, Debug)]
pub struct RdioModel {
    /// Budgets.
    pub bounds: Bounds,
    /// Credits.
    pub limits: Limits,
}

/// Budgets spent on a path.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Used {
    /// Requests submitted (accepted by the core).
    pub requests: u8,
    /// Registrations submitted.
    pub registers: u8,
    /// Cancels accepted.
    pub cancels: u8,
    /// Grants started.
    pub grants: u8,
    /// Revokes started.
    pub revokes: u8,
    /// Losses.
    pub losses: u8,
    /// Ticks.
    pub ticks: u8,
    /// Pairs of reads submitted together.
    pub pairs: u8,
}

/// How far a cancel of a request got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cancel {
    /// Not cancelled.
    No,
    /// Cancelled before its request was sent.
    Unsent,
    /// Cancel message sent.
    Sent,
    /// The cancel reached the server before the server answered the request.
    ReachedServer,
}

/// What the observers know of one submitted request.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Req {
    /// What was asked.
    pub submit: Submit,
    /// The client memory it names.
    pub memory: Memory,
    /// Its request message left the client.
    pub sent: bool,
    /// Cancel progress.
    pub cancel: Cancel,
    /// It reached the server after the server had received the close of its
    /// handle.
    pub after_close: bool,
    /// The status of the status block the server sent for it.
    pub server_answer: Option<Status>,
    /// The status the client reported (last one).
    pub reported: Option<Status>,
    /// How many times the client reported it.
    pub reports: u8,
    /// Its status block was written into client memory (recorded for the
    /// reads of a batch).
    pub block_arrived: bool,
}

/// What the observers know of one read batch (a `ReadBatch` the client
/// sent).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BatchSeen {
    /// Its reads, by request id.
    pub members: Vec<u32>,
    /// Sent with `INTERRUPT`: one immediate, the batch's id, with the last
    /// status block.
    pub interrupt: bool,
    /// The batch's immediate arrived.
    pub notified: bool,
}

/// A broken property, recorded where it was seen.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flaw {
    /// A side detected a protocol violation by the other (both are the
    /// real core: any violation is a bug).
    Violation(&'static str, String),
    /// A client message that needs a credit left without a free one.
    NoCredit(u32),
    /// A client message reached the server with every posted receive
    /// filled (an RC receiver-not-ready error).
    NoReceive(u32),
    /// A completion for no submitted request, or a second one.
    BadCompletion(u32),
    /// An RDMA write outside the windows of the request it is for, or after
    /// the client reported that request.
    StrayWrite(u64),
    /// A request reported `Success` although cancelled or closed, or
    /// without the server's success.
    FalseSuccess(u32),
    /// The wire-derived credit count went negative or above the level.
    CreditBounds,
    /// A read batch's immediate (the batch's id) arrived before one of its
    /// status blocks, twice, for a batch sent without `INTERRUPT`, or not
    /// with the last block of a batch sent with it; or a block of the
    /// batch carried an immediate other than the batch's id.
    BatchNotice(u32),
}

/// Observations (the checked property state).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Ghost {
    /// Submitted requests by id.
    pub requests: BTreeMap<u32, Req>,
    /// Broken properties.
    pub flaws: BTreeSet<Flaw>,
    /// The client's credit level, from the wire.
    pub wire_level: i32,
    /// Client messages the client has not seen answered, from the wire.
    pub wire_unanswered: i32,
    /// The server registered the file (answered its registration with
    /// success).
    pub handle_open: bool,
    /// The server received the close of the registered file's handle.
    pub handle_closed: bool,
    /// Submissions so far (names memory windows).
    pub submissions: u32,
    /// A give-up was answered (a revoke made progress).
    pub revoke_answered: bool,
    /// A grant was acknowledged and answered.
    pub grant_answered: bool,
    /// A polled status block completed a request.
    pub polled: bool,
    /// Read batches the client sent, by batch id.
    pub batches: BTreeMap<u32, BatchSeen>,
    /// A batch's hand-over to the server driver was cut short by another
    /// call, its reads not taken going to the core's queue.
    pub batch_parked: bool,
}

/// One state of the whole system.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    /// Model time (microseconds).
    pub now: u64,
    /// The client actor.
    pub client: ClientSide,
    /// The server actor.
    pub server: ServerSide,
    /// Client → server sends.
    pub to_server: VecDeque<ToServer>,
    /// Server → client sends and RDMA writes.
    pub to_client: VecDeque<ToClient>,
    /// The connection broke.
    pub lost: bool,
    /// Status blocks in client memory not yet consumed, by request id.
    pub blocks: BTreeMap<u32, [u8; STATUS_BLOCK_LEN]>,
    /// Work in the server driver's hands.
    pub work: Vec<Work>,
    /// The server core has an event for its driver (kept here so that the
    /// core is not polled on a copy for every look; derived from `server`,
    /// so it adds no states).
    pub server_has_event: bool,
    /// Budgets spent.
    pub used: Used,
    /// Observations.
    pub ghost: Ghost,
}

/// A step.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// The client's driver submits a request.
    Submit(Submit),
    /// The client's driver submits two reads, then drains.
    SubmitPair(Submit, Submit),
    /// The client's driver cancels request `id`.
    Cancel(u32),
    /// The next client send arrives at the server.
    DeliverToServer,
    /// The next send or RDMA write arrives at the client.
    DeliverToClient,
    /// The client's driver polls request `id`'s status block and finds it.
    Poll(u32),
    /// The server's driver takes the core's next event.
    ServerEvent,
    /// The server's driver takes the next read of the batch the core is
    /// handing over.
    TakeBatchRead,
    /// The server's driver finishes the `n`th piece of work in its hands.
    Complete(usize, Outcome),
    /// The server grants one credit.
    Grant,
    /// The server revokes one credit.
    Revoke,
    /// The connection breaks.
    Lose,
    /// Time moves to this deadline; both sides run their timers.
    Tick(u64),
}

impl RdioModel {
    /// A model with 2 credits (3 at most), one registration and `bounds`
    /// otherwise.
    pub fn new(bounds: Bounds) -> Self {
        Self {
            bounds,
            limits: Limits {
                initial_credits: 2,
                max_credits: 3,
                read_batch: false,
            },
        }
    }

    /// The runs CI checks, each exhaustively within its bounds (their
    /// budgets multiply the state space, so each run takes the part of the
    /// environment it is about; `docs/MODEL.md`).
    pub fn presets() -> Vec<(&'static str, RdioModel)> {
        let kinds = |names: &[&str]| -> Vec<Submit> {
            names.iter().filter_map(|n| Submit::from_name(n)).collect()
        };
        let base = Bounds {
            requests: 2,
            kinds: Vec::new(),
            registers: 1,
            cancels: 0,
            grants: 0,
            revokes: 0,
            losses: 0,
            ticks: 0,
            pairs: 0,
        };
        vec![
            (
                "requests",
                RdioModel::new(Bounds {
                    kinds: Submit::ALL.to_vec(),
                    cancels: 1,
                    ..base.clone()
                }),
            ),
            (
                "pipeline",
                RdioModel::new(Bounds {
                    requests: 3,
                    kinds: kinds(&[
                        "read",
                        "read-now",
                        "readv-poll",
                        "write",
                        "writev",
                        "collapse-poll",
                        "close",
                        "interrupt",
                    ]),
                    ..base.clone()
                }),
            ),
            (
                "credits",
                RdioModel::new(Bounds {
                    requests: 3,
                    kinds: kinds(&["read-now", "write-now-poll", "interrupt"]),
                    grants: 1,
                    revokes: 1,
                    ..base.clone()
                }),
            ),
            (
                "faults",
                RdioModel::new(Bounds {
                    kinds: kinds(&["read-poll", "write", "close"]),
                    cancels: 1,
                    losses: 1,
                    ticks: 1,
                    ..base.clone()
                }),
            ),
            (
                "batches",
                RdioModel::with_read_batches(Bounds {
                    requests: 3,
                    kinds: kinds(&["read", "read-poll", "write", "close"]),
                    cancels: 1,
                    pairs: 1,
                    ..base.clone()
                }),
            ),
            (
                "batch-credits",
                RdioModel::with_read_batches(Bounds {
                    kinds: kinds(&["read", "read-poll"]),
                    grants: 1,
                    revokes: 1,
                    losses: 1,
                    pairs: 1,
                    ..base.clone()
                }),
            ),
        ]
    }

    /// [`RdioModel::new`] on a session that negotiated read batches.
    pub fn with_read_batches(bounds: Bounds) -> Self {
        let mut model = Self::new(bounds);
        model.limits.read_batch = true;
        model
    }
}

fn flaw(state: &mut State, flaw: Flaw) {
    state.ghost.flaws.insert(flaw);
}

fn allowed_end(reason: Violation) -> bool {
    matches!(
        reason,
        Violation::TimedOut
            | Violation::PeerTerminated(
                Status::Closed | Status::Shutdown | Status::TimedOut | Status::AuthFailed
            )
    )
}

impl State {
    fn now(&self) -> Instant {
        Instant::from_micros(self.now)
    }

    fn client_open(&self) -> bool {
        !self.client.core().is_closed()
    }

    /// Whether anything but the environment can move: a delivery, the
    /// server driver's work or events, a status block to poll.
    pub fn busy(&self) -> bool {
        !self.to_server.is_empty()
            || !self.to_client.is_empty()
            || !self.work.is_empty()
            || self.server_has_event
            || self.server.handing()
            || self.blocks.keys().any(|&id| self.polls(id))
    }

    /// Whether the client's driver polls `id`'s status block: a request in
    /// polling mode whose block the core waits for. (The blocks of a
    /// batch sent with `INTERRUPT` wait in memory for the batch's
    /// immediate; the driver never polls them.)
    fn polls(&self, id: u32) -> bool {
        self.ghost
            .requests
            .get(&id)
            .is_some_and(|r| r.submit.mode() == Some(Mode::Polling))
            && self.client.awaits_status_block(id)
    }

    /// Every submitted request reported exactly once.
    pub fn all_reported(&self) -> bool {
        self.ghost.requests.values().all(|r| r.reports == 1)
    }

    /// The client's sends: observe, then put on the wire.
    fn post_client(&mut self, sends: Vec<ToServer>, events: Vec<ClientEvent>) {
        for send in sends {
            self.observe_client_send(&send);
            if !self.lost {
                self.to_server.push_back(send);
                if self.to_server.len() > self.server.receives() {
                    let id =
                        peek(&self.to_server[self.to_server.len() - 1]).map_or(0, |m| m.request_id);
                    self.ghost.flaws.insert(Flaw::NoReceive(id));
                }
            }
        }
        for event in events {
            self.observe_client_event(event);
        }
    }

    fn observe_client_send(&mut self, bytes: &[u8]) {
        let Some(msg) = peek(bytes) else {
            flaw(
                self,
                Flaw::Violation("client sent", "unparsable message".into()),
            );
            return;
        };
        let g = &mut self.ghost;
        match msg.body {
            Body::Terminate { .. } => return,
            Body::CreditGiveUp => {
                if g.wire_unanswered >= g.wire_level {
                    g.flaws.insert(Flaw::NoCredit(msg.request_id));
                }
                g.wire_level -= 1;
                return;
            }
            Body::Cancel { target } => {
                if let Some(r) = g.requests.get_mut(&target) {
                    r.cancel = r.cancel.max(Cancel::Sent);
                }
            }
            Body::ReadBatch(batch) => {
                // A credit for each read.
                let members: Vec<u32> = batch.reads.iter().map(|r| r.request_id()).collect();
                for id in &members {
                    if let Some(r) = g.requests.get_mut(id) {
                        r.sent = true;
                    }
                }
                let n = members.len() as i32;
                if g.wire_unanswered + n > g.wire_level {
                    g.flaws.insert(Flaw::NoCredit(msg.request_id));
                }
                g.wire_unanswered += n;
                g.batches.insert(
                    msg.request_id,
                    BatchSeen {
                        members,
                        interrupt: msg.flags.contains(Flags::INTERRUPT),
                        notified: false,
                    },
                );
                return;
            }
            _ => {}
        }
        if let Some(r) = g.requests.get_mut(&msg.request_id) {
            r.sent = true;
        }
        if g.wire_unanswered >= g.wire_level {
            g.flaws.insert(Flaw::NoCredit(msg.request_id));
        }
        g.wire_unanswered += 1;
    }

    fn observe_client_event(&mut self, event: ClientEvent) {
        let (id, status) = match event {
            ClientEvent::Authenticated { .. } => return,
            ClientEvent::Terminated { reason } => {
                if !allowed_end(reason) {
                    flaw(
                        self,
                        Flaw::Violation("client terminated", format!("{reason:?}")),
                    );
                }
                return;
            }
            ClientEvent::Registered { request, result } => {
                (request.0, result.err().unwrap_or(Status::Success))
            }
            ClientEvent::Completed {
                request, status, ..
            } => (request.0, status),
            ClientEvent::Interrupted { request } => (request.0, Status::Success),
        };
        let Some(r) = self.ghost.requests.get_mut(&id) else {
            flaw(self, Flaw::BadCompletion(id));
            return;
        };
        r.reports += 1;
        r.reported = Some(status);
        let reports = r.reports;
        let false_success = status == Status::Success
            && r.submit.is_data()
            && (matches!(r.cancel, Cancel::Unsent | Cancel::ReachedServer)
                || r.after_close
                || r.server_answer != Some(Status::Success));
        let cancelled_wrongly = r.cancel == Cancel::Unsent && status != Status::Cancelled;
        if reports > 1 {
            flaw(self, Flaw::BadCompletion(id));
        }
        if false_success || cancelled_wrongly {
            flaw(self, Flaw::FalseSuccess(id));
        }
        // The driver hands the memory back: a block still there is dropped.
        self.blocks.remove(&id);
    }

    /// The server's transmits: observe, then put on the wire.
    fn post_server(&mut self, out: Vec<ToClient>) {
        for item in out {
            if let ToClient::Send(bytes) = &item {
                if let Some(Body::RegisterFileCompletion {
                    status: Status::Success,
                    ..
                }) = peek(bytes).map(|m| m.body)
                {
                    self.ghost.handle_open = true;
                }
            }
            if let ToClient::Status { block, .. } = &item {
                if let Ok(Some(b)) = StatusBlock::parse(block) {
                    if let Some(r) = self.ghost.requests.get_mut(&b.request_id) {
                        r.server_answer = Some(b.status);
                    }
                }
            }
            if !self.lost {
                self.to_client.push_back(item);
            }
        }
    }

    fn observe_server_receive(&mut self, bytes: &[u8]) {
        let Some(msg) = peek(bytes) else { return };
        let g = &mut self.ghost;
        match msg.body {
            Body::Cancel { target } => {
                if let Some(r) = g.requests.get_mut(&target) {
                    if r.server_answer.is_none() {
                        r.cancel = Cancel::ReachedServer;
                    }
                }
            }
            Body::Close { .. } if g.handle_open => {
                g.handle_open = false;
                g.handle_closed = true;
            }
            Body::Read(_) | Body::ReadV(_) | Body::Write(_) | Body::WriteV(_)
                if g.handle_closed =>
            {
                if let Some(r) = g.requests.get_mut(&msg.request_id) {
                    r.after_close = true;
                }
            }
            Body::ReadBatch(batch) if g.handle_closed => {
                for read in batch.reads {
                    if let Some(r) = g.requests.get_mut(&read.request_id()) {
                        r.after_close = true;
                    }
                }
            }
            _ => {}
        }
    }

    /// A server send reaches the client: account the credits it returns.
    fn observe_client_receive(&mut self, bytes: &[u8]) {
        let Some(msg) = peek(bytes) else { return };
        let g = &mut self.ghost;
        match msg.body {
            Body::CreditRequest { delta } => {
                if delta > 0 {
                    g.wire_level += delta;
                }
            }
            Body::CreditResponse => {
                if msg.credits == 0 {
                    g.revoke_answered = true;
                } else {
                    g.grant_answered = true;
                }
                g.wire_unanswered -= i32::from(msg.credits);
            }
            Body::StatusResponse { credits, .. } => {
                g.wire_unanswered -= i32::from(msg.credits);
                g.wire_level = i32::from(credits);
            }
            _ => g.wire_unanswered -= i32::from(msg.credits),
        }
        if g.wire_unanswered < 0 {
            g.flaws.insert(Flaw::CreditBounds);
        }
    }

    /// An RDMA write lands in client memory: it must target a window the
    /// client named for that request, before the request was reported.
    fn check_write(&mut self, id: u32, dest: BufferDescriptor, len: u32, status: bool) {
        let ok = self.ghost.requests.get(&id).is_some_and(|r| {
            let windows: &[BufferDescriptor] = if status {
                core::slice::from_ref(&r.memory.status)
            } else {
                &r.memory.data
            };
            r.reports == 0
                && windows.iter().any(|w| {
                    w.key() == dest.key()
                        && w.addr() <= dest.addr()
                        && dest.addr() + u64::from(len) <= w.addr() + u64::from(w.len())
                })
        });
        if !ok {
            flaw(self, Flaw::StrayWrite(dest.addr()));
        }
    }

    /// The client driver hands a status block in memory to the core.
    fn consume_block(&mut self, id: u32) {
        let Some(block) = self.blocks.remove(&id) else {
            return;
        };
        let now = self.now();
        match self.client.on_status_block(now, &block) {
            Ok(true) => self.block_taken(&block),
            Ok(false) => {}
            Err(v) => flaw(self, Flaw::Violation("client", format!("{v:?}"))),
        }
    }

    /// A batch's immediate arrived: the client driver hands the status
    /// block of each of its reads, as it finds it in memory (zeros when
    /// never written), to the core, as rdio's driver does.
    fn consume_batch(&mut self, members: &[u32]) {
        let now = self.now();
        for &id in members {
            let block = self.blocks.remove(&id).unwrap_or([0; STATUS_BLOCK_LEN]);
            match self.client.take_batch_block(now, id, &block) {
                Ok(BlockOutcome::NotWritten) => {}
                Ok(BlockOutcome::Taken) => self.block_taken(&block),
                Ok(BlockOutcome::Completed(event)) => {
                    self.block_taken(&block);
                    self.observe_client_event(event);
                }
                Err(v) => {
                    flaw(self, Flaw::Violation("client", format!("{v:?}")));
                    return;
                }
            }
        }
    }

    /// The client core took a status block: the credits it returns.
    fn block_taken(&mut self, block: &[u8]) {
        if let Ok(Some(b)) = StatusBlock::parse(block) {
            self.ghost.wire_unanswered -= i32::from(b.credits);
            if self.ghost.wire_unanswered < 0 {
                flaw(self, Flaw::CreditBounds);
            }
        }
    }

    /// A status block of request `id` lands in client memory, with
    /// `immediate`: a read batch's blocks go without immediate, but the
    /// last one written, which carries the batch's id, and only with
    /// `INTERRUPT`.
    fn observe_block(&mut self, id: u32, immediate: Option<u32>) {
        let g = &mut self.ghost;
        let Some((&batch, seen)) = g.batches.iter().find(|(_, b)| b.members.contains(&id)) else {
            return;
        };
        // Recorded for a batch's reads only (no states added elsewhere).
        if let Some(r) = g.requests.get_mut(&id) {
            r.block_arrived = true;
        }
        let all_arrived = seen
            .members
            .iter()
            .all(|m| g.requests.get(m).is_some_and(|r| r.block_arrived));
        let (interrupt, notified) = (seen.interrupt, seen.notified);
        let ok = match immediate {
            None => !(interrupt && all_arrived),
            Some(imm) => imm == batch && interrupt && !notified && all_arrived,
        };
        if immediate.is_some() {
            if let Some(seen) = g.batches.get_mut(&batch) {
                seen.notified = true;
            }
        }
        if !ok {
            g.flaws.insert(Flaw::BatchNotice(batch));
        }
    }

    /// The client's driver submits a request (`None`: the core refused it).
    fn submit(&mut self, submit: Submit) -> Option<()> {
        let n = self.ghost.submissions + 1;
        let now = self.now();
        let (id, memory) = self.client.submit(now, n, submit).ok()?;
        self.ghost.submissions = n;
        if submit == Submit::Register {
            self.used.registers += 1;
        } else {
            self.used.requests += 1;
        }
        self.ghost.requests.insert(
            id.0,
            Req {
                submit,
                memory,
                sent: false,
                cancel: Cancel::No,
                after_close: false,
                server_answer: None,
                reported: None,
                reports: 0,
                block_arrived: false,
            },
        );
        Some(())
    }

    /// Drain both sides after a step.
    fn settle(&mut self) {
        let now = self.now();
        let (sends, events) = self.client.drain(now);
        self.post_client(sends, events);
        let out = self.server.drain();
        self.post_server(out);
        if !self.client_open() {
            self.blocks.clear();
        }
        if self.server.core().is_closed() {
            self.work.clear();
        }
        self.server_has_event = self.server.has_event();
    }
}

impl Model for RdioModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let now = Instant::from_micros(0);
        let mut state = State {
            now: 0,
            client: ClientSide::new(self.limits, now),
            server: ServerSide::new(self.limits, now),
            to_server: VecDeque::new(),
            to_client: VecDeque::new(),
            lost: false,
            blocks: BTreeMap::new(),
            work: Vec::new(),
            server_has_event: false,
            used: Used::default(),
            ghost: Ghost {
                wire_level: i32::from(self.limits.initial_credits),
                ..Ghost::default()
            },
        };
        state.settle();
        vec![state]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        let b = &self.bounds;
        let u = &s.used;
        if !s.to_server.is_empty() {
            actions.push(Action::DeliverToServer);
        }
        if !s.to_client.is_empty() {
            actions.push(Action::DeliverToClient);
        }
        if s.server_has_event {
            actions.push(Action::ServerEvent);
        }
        for (i, w) in s.work.iter().enumerate() {
            let outcomes: &[Outcome] = match w {
                // A short write is a different byte count, nothing more.
                Work::Register(_) | Work::Write { .. } => &[Outcome::Full, Outcome::Error],
                _ => &[Outcome::Full, Outcome::Short, Outcome::Error],
            };
            for &o in outcomes {
                actions.push(Action::Complete(i, o));
            }
        }
        if s.server.handing() {
            actions.push(Action::TakeBatchRead);
        }
        for &id in s.blocks.keys() {
            if s.polls(id) {
                actions.push(Action::Poll(id));
            }
        }
        if s.client_open() {
            if u.registers < b.registers {
                actions.push(Action::Submit(Submit::Register));
            }
            if u.requests < b.requests {
                for &k in &b.kinds {
                    actions.push(Action::Submit(k));
                }
            }
            if u.pairs < b.pairs && u.requests + 2 <= b.requests {
                let reads = || b.kinds.iter().filter(|k| matches!(k, Submit::Read(_)));
                for &first in reads() {
                    for &second in reads() {
                        actions.push(Action::SubmitPair(first, second));
                    }
                }
            }
            if u.cancels < b.cancels {
                for (&id, r) in &s.ghost.requests {
                    if r.submit.is_data() && r.reports == 0 && r.cancel == Cancel::No {
                        actions.push(Action::Cancel(id));
                    }
                }
            }
        }
        if s.server.core().is_open() {
            if u.grants < b.grants {
                actions.push(Action::Grant);
            }
            if u.revokes < b.revokes {
                actions.push(Action::Revoke);
            }
        }
        if !s.lost && u.losses < b.losses {
            actions.push(Action::Lose);
        }
        if u.ticks < b.ticks {
            // Time moves to the next deadline (a later one is reached by
            // ticking again).
            let next = [s.client.deadline(), s.server.deadline()]
                .into_iter()
                .flatten()
                .map(Instant::as_micros)
                .filter(|&t| t >= s.now)
                .min();
            actions.extend(next.map(Action::Tick));
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = last.clone();
        let now = s.now();
        // A call but `next_batch_read` and the completion of a read or
        // write cuts a batch's hand-over short.
        let cuts = match &action {
            Action::TakeBatchRead => false,
            Action::Complete(i, _) => {
                !matches!(s.work.get(*i), Some(Work::Read { .. } | Work::Write { .. }))
            }
            _ => true,
        };
        match action {
            Action::Submit(submit) => s.submit(submit)?,
            Action::SubmitPair(first, second) => {
                s.submit(first)?;
                s.submit(second)?;
                s.used.pairs += 1;
            }
            Action::Cancel(id) => {
                s.client.cancel(rdio_core::client::RequestId(id)).ok()?;
                s.used.cancels += 1;
                if let Some(r) = s.ghost.requests.get_mut(&id) {
                    r.cancel = if r.sent { Cancel::Sent } else { Cancel::Unsent };
                }
            }
            Action::DeliverToServer => {
                let bytes = s.to_server.pop_front()?;
                let open = s.server.core().is_open();
                if open {
                    s.observe_server_receive(&bytes);
                }
                match s.server.on_send(now, &bytes) {
                    Ok(Some(work)) => s.work.push(work),
                    Ok(None) => {}
                    Err(v) => flaw(&mut s, Flaw::Violation("server", format!("{v:?}"))),
                }
            }
            Action::DeliverToClient => {
                let item = s.to_client.pop_front()?;
                let open = s.client_open();
                match item {
                    ToClient::Send(bytes) => {
                        if open {
                            s.observe_client_receive(&bytes);
                        }
                        if let Err(v) = s.client.on_send(now, &bytes) {
                            flaw(&mut s, Flaw::Violation("client", format!("{v:?}")));
                        }
                    }
                    ToClient::Data { op, dest, len } => {
                        if open {
                            s.check_write(op, dest, len, false);
                        }
                    }
                    ToClient::Status {
                        dest,
                        block,
                        immediate,
                    } => {
                        let id = StatusBlock::parse(&block)
                            .ok()
                            .flatten()
                            .map_or(0, |b| b.request_id);
                        if open {
                            s.check_write(id, dest, STATUS_BLOCK_LEN as u32, true);
                            s.observe_block(id, immediate);
                            s.blocks.insert(id, block);
                            // The receive completion with immediate data:
                            // the blocks it names are already in memory,
                            // a batch's (every read's) or one request's.
                            match immediate.map(|imm| s.client.batch_members(imm)) {
                                Some(Some(members)) => s.consume_batch(&members),
                                Some(None) => s.consume_block(id),
                                None => {}
                            }
                        }
                    }
                }
            }
            Action::Poll(id) => {
                s.consume_block(id);
                s.ghost.polled = true;
            }
            Action::TakeBatchRead => {
                s.work.extend(s.server.take_batch_read());
            }
            Action::ServerEvent => match s.server.poll_event(now) {
                Ok(Some(Work::Authenticate | Work::CloseFile)) | Ok(None) => {}
                Ok(Some(work)) => s.work.push(work),
                Err(reason) => {
                    if !allowed_end(reason) {
                        flaw(
                            &mut s,
                            Flaw::Violation("server terminated", format!("{reason:?}")),
                        );
                    }
                }
            },
            Action::Complete(i, outcome) => {
                let work = s.work.remove(i);
                let writes = s.server.complete(&work, outcome);
                s.post_server(writes);
            }
            Action::Grant => {
                let level = s.server.core().ledger().level();
                s.server.set_credit_target(level + 1).ok()?;
                s.used.grants += 1;
            }
            Action::Revoke => {
                let level = s.server.core().ledger().level();
                s.server.set_credit_target(level.checked_sub(1)?).ok()?;
                s.used.revokes += 1;
            }
            Action::Lose => {
                s.lost = true;
                s.used.losses += 1;
                s.to_server.clear();
                s.to_client.clear();
                s.client.on_lost();
                s.server.on_lost();
            }
            Action::Tick(t) => {
                s.used.ticks += 1;
                s.now = t;
                let now = s.now();
                s.client.on_timeout(now);
                s.server.on_timeout(now);
            }
        }
        if cuts && last.server.handing() && !s.server.handing() && s.server.core().is_open() {
            s.ghost.batch_parked = true;
        }
        s.settle();
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        let mut properties = vec![
            Property::always(
                "no protocol violation between the two cores",
                |_, s: &State| {
                    !s.ghost
                        .flaws
                        .iter()
                        .any(|f| matches!(f, Flaw::Violation(..)))
                },
            ),
            Property::always(
                "credits stay within the granted level on both sides",
                |m: &RdioModel, s: &State| credits_in_bounds(m, s),
            ),
            Property::always("no message is sent without a credit", |_, s: &State| {
                !s.ghost.flaws.iter().any(|f| matches!(f, Flaw::NoCredit(_)))
            }),
            Property::always(
                "every client message finds a receive the server's driver posted",
                |_, s: &State| {
                    !s.ghost
                        .flaws
                        .iter()
                        .any(|f| matches!(f, Flaw::NoReceive(_)))
                },
            ),
            Property::always(
                "every completion matches exactly one submitted request, once",
                |_, s: &State| {
                    !s.ghost
                        .flaws
                        .iter()
                        .any(|f| matches!(f, Flaw::BadCompletion(_)))
                        && s.ghost.requests.values().all(|r| r.reports <= 1)
                },
            ),
            Property::always(
                "RDMA writes land only in the request's own windows, before it is reported",
                |_, s: &State| {
                    !s.ghost
                        .flaws
                        .iter()
                        .any(|f| matches!(f, Flaw::StrayWrite(_)))
                },
            ),
            Property::always(
                "a cancelled or closed request never completes as success",
                |_, s: &State| {
                    !s.ghost
                        .flaws
                        .iter()
                        .any(|f| matches!(f, Flaw::FalseSuccess(_)))
                },
            ),
            Property::always(
                "client and server agree on credits whenever the network is empty",
                |_, s: &State| credits_agree(s),
            ),
            Property::always(
                "progress: once only the environment can move, every request is reported",
                |_, s: &State| s.busy() || s.all_reported() && s.client.core().outstanding() == 0,
            ),
            Property::always(
                "the last credit is never stranded: idle and open means credits free",
                |_, s: &State| {
                    let c = s.client.core();
                    s.busy()
                        || !c.is_open()
                        || (c.ledger().in_use() == 0 && c.ledger().available() >= 1)
                },
            ),
            Property::always(
                "revokes (and grants) finish: idle and open means no credit exchange pending",
                |_, s: &State| {
                    let (c, v) = (s.client.core(), s.server.core());
                    s.busy()
                        || !(c.is_open() && v.is_open())
                        || (c.ledger().is_settled() && v.ledger().pending().is_none())
                },
            ),
            Property::always("both sides end together once idle", |_, s: &State| {
                s.busy() || s.client.core().is_closed() == s.server.core().is_closed()
            }),
            Property::eventually(
                "every request is eventually reported",
                |m: &RdioModel, s: &State| {
                    !s.busy()
                        && s.all_reported()
                        && (s.used.requests == m.bounds.requests || s.client.core().is_closed())
                },
            ),
        ];
        if self.limits.read_batch {
            properties.push(Property::always(
                "a read batch's immediate comes once, with its last status block",
                |_, s: &State| {
                    !s.ghost
                        .flaws
                        .iter()
                        .any(|f| matches!(f, Flaw::BatchNotice(_)))
                },
            ));
        }
        properties.extend(self.examples());
        properties
    }
}

impl RdioModel {
    /// `sometimes` properties: examples that the bounds let the environment
    /// reach, so that a property holding is not an artefact of a path never
    /// taken (only those the bounds make reachable are listed).
    fn examples(&self) -> Vec<Property<Self>> {
        let b = &self.bounds;
        let has = |f: fn(&Submit) -> bool| b.kinds.iter().any(f);
        let mut examples = Vec::new();
        if has(|k| matches!(k, Submit::Read(_) | Submit::ReadNow(_) | Submit::ReadV(_))) {
            examples.push(Property::sometimes(
                "a read completes with success",
                |_, s: &State| {
                    s.ghost.requests.values().any(|r| {
                        matches!(
                            r.submit,
                            Submit::Read(_) | Submit::ReadNow(_) | Submit::ReadV(_)
                        ) && r.reported == Some(Status::Success)
                    })
                },
            ));
        }
        if has(|k| matches!(k, Submit::Write(_) | Submit::WriteNow(_))) {
            examples.push(Property::sometimes(
                "a fragmented write completes with success",
                |_, s: &State| {
                    s.ghost.requests.values().any(|r| {
                        matches!(r.submit, Submit::Write(_) | Submit::WriteNow(_))
                            && r.reported == Some(Status::Success)
                    })
                },
            ));
        }
        if b.cancels > 0 {
            examples.push(Property::sometimes(
                "a cancel reaches the server in time",
                |_, s: &State| {
                    s.ghost.requests.values().any(|r| {
                        r.cancel == Cancel::ReachedServer && r.reported == Some(Status::Cancelled)
                    })
                },
            ));
        }
        if b.revokes > 0 {
            examples.push(Property::sometimes(
                "a revoke's give-up is answered",
                |_, s: &State| s.ghost.revoke_answered,
            ));
        }
        if b.grants > 0 {
            examples.push(Property::sometimes(
                "a grant's acknowledgement is answered",
                |_, s: &State| s.ghost.grant_answered,
            ));
        }
        if has(|k| k.is_data() && k.name().ends_with("-poll")) {
            examples.push(Property::sometimes(
                "a polled status block completes a request",
                |_, s: &State| s.ghost.polled,
            ));
        }
        if has(|k| *k == Submit::Close) && b.requests > 1 {
            examples.push(Property::sometimes(
                "a request completes after a close",
                |_, s: &State| {
                    s.ghost
                        .requests
                        .values()
                        .any(|r| r.after_close && r.reports == 1)
                },
            ));
        }
        let reads = |m: Mode| b.kinds.contains(&Submit::Read(m));
        if self.limits.read_batch && reads(Mode::Interrupt) {
            examples.push(Property::sometimes(
                "a read batch completes with success on its one immediate",
                |_, s: &State| batch_done(s, true),
            ));
        }
        if self.limits.read_batch && reads(Mode::Polling) {
            examples.push(Property::sometimes(
                "a polled read batch completes with success",
                |_, s: &State| batch_done(s, false),
            ));
        }
        if self.limits.read_batch && b.kinds.iter().any(|k| matches!(k, Submit::Read(_))) {
            examples.push(Property::sometimes(
                "a batch's hand-over is cut short, its reads left to poll_event",
                |_, s: &State| s.ghost.batch_parked,
            ));
        }
        if b.ticks > 0 {
            examples.push(Property::sometimes(
                "a timer ends the connection",
                |_, s: &State| s.used.ticks > 0 && s.client.core().is_closed() && !s.lost,
            ));
        }
        if b.losses > 0 {
            examples.push(Property::sometimes(
                "a loss fails an outstanding request",
                |_, s: &State| {
                    s.lost
                        && s.ghost
                            .requests
                            .values()
                            .any(|r| r.sent && r.reported == Some(Status::Closed))
                },
            ));
        }
        examples
    }
}

/// A read batch (sent with `INTERRUPT` or not) all of whose reads the
/// client reported with success.
fn batch_done(s: &State, interrupt: bool) -> bool {
    s.ghost.batches.values().any(|batch| {
        batch.interrupt == interrupt
            && batch.members.iter().all(|id| {
                s.ghost
                    .requests
                    .get(id)
                    .is_some_and(|r| r.reported == Some(Status::Success))
            })
    })
}

/// The client's ledger equals what the wire says it holds; nobody holds
/// more than the most ever granted, or uses more than they hold.
fn credits_in_bounds(m: &RdioModel, s: &State) -> bool {
    let max = i32::from(m.limits.max_credits);
    let g = &s.ghost;
    let c = s.client.core().ledger();
    let v = s.server.core().ledger();
    let wire_ok = g.wire_unanswered >= 0
        && g.wire_unanswered <= g.wire_level
        && g.wire_level <= max
        && !g.flaws.contains(&Flaw::CreditBounds);
    let client_ok = !s.client.core().is_open()
        || (i32::from(c.level()) == g.wire_level
            && i32::from(c.in_use()) == g.wire_unanswered
            && c.in_use() <= c.level());
    let server_ok = !s.server.core().is_open()
        || (v.in_use() <= v.level() && i32::from(v.level()) <= max && v.level() >= 1);
    wire_ok && client_ok && server_ok
}

/// With nothing in flight and no credit message owed, both ledgers agree.
fn credits_agree(s: &State) -> bool {
    let (c, v) = (s.client.core(), s.server.core());
    let quiet = s.to_server.is_empty() && s.to_client.is_empty() && s.blocks.is_empty();
    if !quiet || !c.is_open() || !v.is_open() {
        return true;
    }
    let l = c.ledger();
    if l.ack_owed().is_some() || l.give_ups_owed() > 0 {
        return true;
    }
    l.level() == v.ledger().level() && l.in_use() == v.ledger().in_use()
}
