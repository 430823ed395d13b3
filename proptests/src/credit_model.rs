//! A reference model of the credit rules (`rdio_core::credit`, seed claims
//! 1, 6, 7, 22, 23), built only from the bytes that cross the pair.
//!
//! The rules, restated as the model applies them:
//! * every client message but `Terminate` consumes one credit; a
//!   `CreditGiveUp` consumes one that then ceases to exist (the level drops,
//!   nothing is returned for it);
//! * a server message or status block returns the credits in its header;
//! * a client header carries the client's level after sending it;
//! * a grant `+n` is answered by exactly one `CreditAck(n)`, a revoke `-n` by
//!   exactly `n` give-ups, and the server answers every one of those with a
//!   `CreditResponse` (returning 1 for an ack, 0 for a give-up);
//! * a give-up uses a free credit, and new requests never take a credit a
//!   revoke is owed;
//! * the server starts a new exchange only once it has every answer to the
//!   previous one (its responses may still be on their way).
//!
//! The harness feeds the model every message the client sends and the server
//! receives, every send and status block the server posts and every input the
//! client consumes, then [`CreditModel::check`]s both real ledgers against it
//! after every step.

use crate::pair::{ClientInput, ServerOutput};
use rdio_core::credit::{ClientLedger, PendingCredit, ServerLedger};
use rdio_core::wire::{Body, Message, Opcode, StatusBlock};
use std::collections::HashMap;

/// One credit request and everything it caused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exchange {
    /// The signed delta.
    pub delta: i32,
    /// The client received the request.
    pub seen_by_client: bool,
    /// Acks (grant) or give-ups (revoke) the client sent.
    pub answers_sent: u16,
    /// Those the server received.
    pub answers_received: u16,
    /// `CreditResponse`s the server sent.
    pub responses_sent: u16,
    /// Those the client received.
    pub responses_received: u16,
}

impl Exchange {
    /// Client messages the exchange needs: one ack, or one give-up per
    /// revoked credit.
    pub fn answers_expected(&self) -> u16 {
        if self.delta > 0 {
            1
        } else {
            u16::try_from(self.delta.unsigned_abs()).unwrap_or(u16::MAX)
        }
    }

    fn is_grant(&self) -> bool {
        self.delta > 0
    }

    fn complete(&self) -> bool {
        let n = self.answers_expected();
        self.seen_by_client
            && self.answers_sent == n
            && self.answers_received == n
            && self.responses_sent == n
            && self.responses_received == n
    }
}

/// The model. Its methods return `Err(why)` on the first rule broken.
#[derive(Clone, Debug)]
pub struct CreditModel {
    client_level: u16,
    client_in_use: u16,
    server_level: u16,
    server_in_use: u16,
    exchanges: Vec<Exchange>,
    target: Option<u16>,
    /// Targets set since the server last posted a credit request: the
    /// server may have started an exchange toward any of them.
    recent_targets: Vec<u16>,
    ended: bool,
    /// Client-to-server messages by opcode.
    pub sent_by_client: HashMap<Opcode, usize>,
    /// Server-to-client messages by opcode.
    pub sent_by_server: HashMap<Opcode, usize>,
}

type Check = Result<(), String>;

fn parse<'a>(bytes: &'a [u8], who: &str) -> Result<Message<'a>, String> {
    Message::parse(bytes).map_err(|e| format!("{who} sent an unparsable message: {e}"))
}

fn block_credits(block: &[u8]) -> Result<u16, String> {
    match StatusBlock::parse(block) {
        Ok(Some(block)) => Ok(block.credits),
        other => Err(format!("consumed status block does not parse: {other:?}")),
    }
}

fn ensure(ok: bool, why: impl FnOnce() -> String) -> Check {
    if ok { Ok(()) } else { Err(why()) }
}

impl CreditModel {
    /// A model of an authenticated, quiescent connection at `level`.
    pub fn new(level: u16) -> Self {
        Self {
            client_level: level,
            client_in_use: 0,
            server_level: level,
            server_in_use: 0,
            exchanges: Vec::new(),
            target: None,
            recent_targets: Vec::new(),
            ended: false,
            sent_by_client: HashMap::new(),
            sent_by_server: HashMap::new(),
        }
    }

    /// The exchanges so far, in order.
    pub fn exchanges(&self) -> &[Exchange] {
        &self.exchanges
    }

    /// Whether a `Terminate` went either way: the ledgers no longer matter.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The server accepted a new credit target.
    pub fn set_target(&mut self, target: u16) {
        self.target = Some(target);
        self.recent_targets.push(target);
    }

    /// The exchange the server starts from `level` toward `target`.
    fn start_toward(level: u16, target: u16) -> Option<PendingCredit> {
        let delta = i32::from(target) - i32::from(level);
        let magnitude = u16::try_from(delta.unsigned_abs()).ok()?;
        match delta {
            0 => None,
            d if d > 0 => Some(PendingCredit::Grant(magnitude)),
            _ => Some(PendingCredit::Revoke {
                remaining: magnitude,
            }),
        }
    }

    /// The exchange the client is answering: the last one it saw.
    fn client_exchange(&mut self) -> Option<&mut Exchange> {
        self.exchanges.iter_mut().rev().find(|e| e.seen_by_client)
    }

    /// Give-ups the client still owes.
    fn give_ups_owed(&self) -> u16 {
        match self.exchanges.iter().rev().find(|e| e.seen_by_client) {
            Some(e) if !e.is_grant() => e.answers_expected().saturating_sub(e.answers_sent),
            _ => 0,
        }
    }

    /// The client posted `bytes`.
    pub fn client_sent(&mut self, bytes: &[u8]) -> Check {
        if self.ended {
            return Ok(());
        }
        let msg = parse(bytes, "client")?;
        *self.sent_by_client.entry(msg.opcode()).or_default() += 1;
        let free = self.client_level.saturating_sub(self.client_in_use);
        match msg.body {
            Body::Terminate { .. } => {
                self.ended = true;
                return Ok(());
            }
            Body::CreditAck { delta } => {
                let exchange = self
                    .client_exchange()
                    .ok_or("CreditAck before any credit request")?;
                ensure(exchange.is_grant() && exchange.delta == delta, || {
                    format!("CreditAck({delta}) answers {exchange:?}")
                })?;
                ensure(exchange.answers_sent == 0, || {
                    format!("second CreditAck for {exchange:?}")
                })?;
                exchange.answers_sent = 1;
                ensure(free > 0, || "CreditAck sent without a free credit".into())?;
                self.client_in_use += 1;
            }
            Body::CreditGiveUp => {
                let exchange = self
                    .client_exchange()
                    .ok_or("CreditGiveUp before any credit request")?;
                ensure(
                    !exchange.is_grant() && exchange.answers_sent < exchange.answers_expected(),
                    || format!("CreditGiveUp not owed: {exchange:?}"),
                )?;
                exchange.answers_sent += 1;
                ensure(free > 0, || {
                    "CreditGiveUp sent without a free credit".into()
                })?;
                self.client_level -= 1;
            }
            _ => {
                // A read batch takes a credit per read.
                let needs = request_credits(&msg);
                ensure(free >= self.give_ups_owed() + needs, || {
                    format!(
                        "{:?} took a credit owed to a revoke or none was free \
                         (level {}, in use {}, give-ups owed {}, needs {needs})",
                        msg.opcode(),
                        self.client_level,
                        self.client_in_use,
                        self.give_ups_owed()
                    )
                })?;
                self.client_in_use += needs;
            }
        }
        ensure(msg.credits == self.client_level, || {
            format!(
                "{:?} header credits {} != client level {}",
                msg.opcode(),
                msg.credits,
                self.client_level
            )
        })
    }

    /// The server consumed `bytes` (without a violation).
    pub fn server_received(&mut self, bytes: &[u8]) -> Check {
        if self.ended {
            return Ok(());
        }
        let msg = parse(bytes, "client")?;
        match msg.body {
            Body::Terminate { .. } => self.ended = true,
            Body::CreditAck { delta } => {
                let exchange = self.exchanges.last_mut().ok_or("stray CreditAck")?;
                exchange.answers_received += 1;
                self.server_level = self
                    .server_level
                    .checked_add(u16::try_from(delta).map_err(|_| "huge ack")?)
                    .ok_or("server level overflow")?;
                self.server_in_use += 1;
            }
            Body::CreditGiveUp => {
                let exchange = self.exchanges.last_mut().ok_or("stray CreditGiveUp")?;
                exchange.answers_received += 1;
                self.server_level -= 1;
            }
            _ => self.server_in_use += request_credits(&msg),
        }
        Ok(())
    }

    /// The server posted `output`.
    pub fn server_sent(&mut self, output: &ServerOutput) -> Check {
        if self.ended {
            return Ok(());
        }
        let returned = match output {
            ServerOutput::StatusBlock { block, .. } => block_credits(block)?,
            ServerOutput::Send(bytes) => {
                let msg = parse(bytes, "server")?;
                *self.sent_by_server.entry(msg.opcode()).or_default() += 1;
                match msg.body {
                    Body::Terminate { .. } => {
                        self.ended = true;
                        return Ok(());
                    }
                    Body::CreditRequest { delta } => {
                        if let Some(open) = self
                            .exchanges
                            .iter()
                            .find(|e| e.answers_received < e.answers_expected())
                        {
                            return Err(format!(
                                "CreditRequest({delta}) while {open:?} still awaits answers"
                            ));
                        }
                        let level = self.server_level;
                        ensure(
                            self.recent_targets
                                .iter()
                                .any(|&t| i32::from(t) - i32::from(level) == delta),
                            || {
                                format!(
                                    "CreditRequest({delta}) at level {level} heads for none \
                                     of the targets {:?}",
                                    self.recent_targets
                                )
                            },
                        )?;
                        self.recent_targets.clear();
                        self.recent_targets.extend(self.target);
                        self.exchanges.push(Exchange {
                            delta,
                            ..Exchange::default()
                        });
                    }
                    Body::CreditResponse => {
                        let exchange = self
                            .exchanges
                            .iter_mut()
                            .find(|e| e.responses_sent < e.answers_received)
                            .ok_or("CreditResponse answering nothing")?;
                        let expected = u16::from(exchange.is_grant());
                        ensure(msg.credits == expected, || {
                            format!(
                                "CreditResponse returns {} for {exchange:?}, expected {expected}",
                                msg.credits
                            )
                        })?;
                        exchange.responses_sent += 1;
                    }
                    _ => {}
                }
                msg.credits
            }
        };
        self.server_in_use = self.server_in_use.checked_sub(returned).ok_or_else(|| {
            format!(
                "server returned {returned} credits with {} in use",
                self.server_in_use
            )
        })?;
        Ok(())
    }

    /// The client consumed `input` (without a violation).
    pub fn client_received(&mut self, input: &ClientInput) -> Check {
        match input {
            ClientInput::Message(bytes) => self.client_got_message(bytes),
            ClientInput::Immediate(Some(block)) => self.client_got_block(block),
            ClientInput::Immediate(None) => Ok(()),
            ClientInput::Batch(blocks) => blocks
                .iter()
                .try_for_each(|block| self.client_got_block(block)),
        }
    }

    fn client_got_message(&mut self, bytes: &[u8]) -> Check {
        if self.ended {
            return Ok(());
        }
        let msg = parse(bytes, "server")?;
        let returned = match msg.body {
            Body::Terminate { .. } => {
                self.ended = true;
                return Ok(());
            }
            Body::CreditRequest { delta } => {
                let owed = self.give_ups_owed();
                let exchange = self
                    .exchanges
                    .iter_mut()
                    .find(|e| !e.seen_by_client)
                    .ok_or("client got a CreditRequest the server never sent")?;
                ensure(owed == 0, || {
                    format!("CreditRequest({delta}) reached the client owing {owed} give-ups")
                })?;
                exchange.seen_by_client = true;
                if delta > 0 {
                    self.client_level += u16::try_from(delta).map_err(|_| "huge grant")?;
                }
                0
            }
            Body::CreditResponse => {
                let exchange = self
                    .exchanges
                    .iter_mut()
                    .find(|e| e.responses_received < e.responses_sent)
                    .ok_or("client got a CreditResponse the server never sent")?;
                exchange.responses_received += 1;
                msg.credits
            }
            _ => msg.credits,
        };
        self.client_return(returned)
    }

    /// The client consumed a status block (interrupt or polling mode).
    pub fn client_got_block(&mut self, block: &[u8]) -> Check {
        if self.ended {
            return Ok(());
        }
        let credits = block_credits(block)?;
        self.client_return(credits)
    }

    fn client_return(&mut self, credits: u16) -> Check {
        self.client_in_use = self.client_in_use.checked_sub(credits).ok_or_else(|| {
            format!(
                "client got {credits} credits back with {} in use",
                self.client_in_use
            )
        })?;
        Ok(())
    }

    /// Both real ledgers agree with the model.
    pub fn check(&self, client: &ClientLedger, server: &ServerLedger) -> Check {
        if self.ended {
            return Ok(());
        }
        ensure(client.in_use() <= client.level(), || {
            format!("client uses more credits than it holds: {client:?}")
        })?;
        ensure(
            (client.level(), client.in_use()) == (self.client_level, self.client_in_use),
            || {
                format!(
                    "client ledger {client:?} != model level {} in use {}",
                    self.client_level, self.client_in_use
                )
            },
        )?;
        // The server releases a credit when it queues the answer, the model
        // when the answer is posted: equal once nothing is queued.
        ensure(
            server.level() == self.server_level && server.in_use() <= self.server_in_use,
            || {
                format!(
                    "server ledger {server:?} != model level {} in use {}",
                    self.server_level, self.server_in_use
                )
            },
        )?;
        ensure(client.give_ups_owed() == self.give_ups_owed(), || {
            format!(
                "client owes {} give-ups, model {}",
                client.give_ups_owed(),
                self.give_ups_owed()
            )
        })?;
        let pending = self
            .exchanges
            .last()
            .filter(|e| e.answers_received < e.answers_expected())
            .map(|e| {
                if e.is_grant() {
                    PendingCredit::Grant(u16::try_from(e.delta).unwrap_or(u16::MAX))
                } else {
                    PendingCredit::Revoke {
                        remaining: e.answers_expected() - e.answers_received,
                    }
                }
            });
        // The server starts an exchange when it queues the credit request;
        // the model sees it when it is posted. Until then the exchange must
        // head for a target the server was given.
        let unsent = |p: Option<PendingCredit>| {
            self.recent_targets
                .iter()
                .any(|&t| Self::start_toward(self.server_level, t) == p)
        };
        let agrees = server.pending() == pending
            || (pending.is_none() && server.pending().is_some() && unsent(server.pending()));
        ensure(agrees, || {
            format!(
                "server pending {:?}, model {pending:?} (target {:?})",
                server.pending(),
                self.target
            )
        })
    }

    /// Nothing in flight: every exchange finished with exactly its
    /// messages, the ledgers agree at zero use, and the server reached its
    /// target.
    pub fn check_quiescent(&self, client: &ClientLedger, server: &ServerLedger) -> Check {
        self.check(client, server)?;
        if self.ended {
            return Ok(());
        }
        ensure(
            server.in_use() == self.server_in_use && server.pending().is_none(),
            || format!("server ledger {server:?} not quiescent"),
        )?;
        if let Some(open) = self.exchanges.iter().find(|e| !e.complete()) {
            return Err(format!(
                "credit exchange unfinished at quiescence: {open:?}"
            ));
        }
        ensure(self.client_in_use == 0 && self.server_in_use == 0, || {
            format!(
                "credits in use at quiescence: client {} server {}",
                self.client_in_use, self.server_in_use
            )
        })?;
        ensure(self.client_level == self.server_level, || {
            format!(
                "levels disagree at quiescence: client {} server {}",
                self.client_level, self.server_level
            )
        })?;
        if let Some(target) = self.target {
            ensure(self.server_level == target, || {
                format!(
                    "server level {} never reached its target {target}",
                    self.server_level
                )
            })?;
        }
        Ok(())
    }
}

/// Credits a client request consumes: one per read of a batch, else one.
fn request_credits(msg: &rdio_core::wire::Message<'_>) -> u16 {
    match msg.body {
        Body::ReadBatch(batch) => u16::try_from(batch.reads.len()).unwrap_or(u16::MAX),
        _ => 1,
    }
}
