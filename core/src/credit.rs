//! The credit ledgers (claims 1, 6, 7, 22, 23).
//!
//! A **credit** is the right to have one message outstanding at the server:
//! one posted receive there, one slot of its work. Every client message but
//! `Terminate` consumes one; the server's reply to that message (a send or a
//! status block) returns it — except the reply to a `CreditGiveUp`, which
//! returns nothing because the credit is gone. The client's level changes only
//! through the server's credit request message, whose signed information field
//! grants (`+n`: the client answers with exactly one `CreditAck`) or revokes
//! (`−n`: the client answers with exactly `n` `CreditGiveUp`s, each sent as a
//! credit becomes free) — and the server answers every one of those messages.
//!
//! Both sides keep a ledger and cross-check it on every message: a client
//! header carries the client's level after the message was sent, which the
//! server must find equal to its own view; a server header carries the
//! credits the message returns, which the client must find equal to what the
//! answered request consumed. Any disagreement terminates the connection
//! ([`Violation::CreditMismatch`]): a ledger that drifted can no longer
//! promise "never lost, never duplicated".
//!
//! Deadlock freedom: at most one credit request is outstanding; a revoke may
//! never take the client below one credit; give-ups take priority over new
//! requests but never wait on anything but the completion of requests already
//! sent, which the server completes unconditionally.

use crate::error::Violation;

/// The server's answer to the client's credit messages: what the server is
/// waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PendingCredit {
    /// A grant of `n` awaits the client's single acknowledgement.
    Grant(u16),
    /// A revoke awaits `remaining` more give-ups.
    Revoke {
        /// Give-ups still to come.
        remaining: u16,
    },
}

/// The server's view of one client's credits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ServerLedger {
    level: u16,
    in_use: u16,
    pending: Option<PendingCredit>,
}

impl ServerLedger {
    /// A ledger starting at `level` credits with nothing outstanding.
    pub const fn new(level: u16) -> Self {
        Self {
            level,
            in_use: 0,
            pending: None,
        }
    }

    /// Credits the client holds, as far as the server knows.
    pub fn level(&self) -> u16 {
        self.level
    }

    /// Client messages received and not yet answered.
    pub fn in_use(&self) -> u16 {
        self.in_use
    }

    /// The unfinished credit exchange, if any.
    pub fn pending(&self) -> Option<PendingCredit> {
        self.pending
    }

    fn consume(&mut self) -> Result<(), Violation> {
        if self.in_use >= self.level {
            return Err(Violation::CreditOverrun);
        }
        self.in_use = self.in_use.saturating_add(1);
        Ok(())
    }

    fn check(&self, found: u16) -> Result<(), Violation> {
        if found == self.level {
            Ok(())
        } else {
            Err(Violation::CreditMismatch {
                expected: self.level,
                found,
            })
        }
    }

    /// An ordinary request arrived carrying `header_credits`.
    pub fn on_request(&mut self, header_credits: u16) -> Result<(), Violation> {
        self.check(header_credits)?;
        self.consume()
    }

    /// What [`ServerLedger::on_request`] checks of a request carrying
    /// `header_credits`, its credit not taken yet: the caller takes it
    /// ([`ServerLedger::take_admitted`]) before anything else touches the
    /// ledger, or accounts for it itself meanwhile.
    #[inline(always)]
    pub(crate) fn admit(&self, header_credits: u16) -> Result<(), Violation> {
        self.check(header_credits)?;
        if self.in_use >= self.level {
            return Err(Violation::CreditOverrun);
        }
        Ok(())
    }

    /// Take the credit of a request [`ServerLedger::admit`] let in (and
    /// nothing took since: it is free).
    #[inline(always)]
    pub(crate) fn take_admitted(&mut self) {
        self.in_use = self.in_use.saturating_add(1);
    }

    /// A message carrying `n` requests (a read batch: one credit each)
    /// arrived carrying `header_credits`; all or none are consumed.
    pub fn on_requests(&mut self, header_credits: u16, n: u16) -> Result<(), Violation> {
        self.check(header_credits)?;
        let in_use = self
            .in_use
            .checked_add(n)
            .filter(|&in_use| in_use <= self.level)
            .ok_or(Violation::CreditOverrun)?;
        self.in_use = in_use;
        Ok(())
    }

    /// Start a credit exchange (the server is about to send a credit
    /// request with `delta`). The caller has range-checked `delta`.
    pub fn start(&mut self, delta: i32) -> Result<(), Violation> {
        if self.pending.is_some() || delta == 0 {
            return Err(Violation::CreditSequence);
        }
        let magnitude = u16::try_from(delta.unsigned_abs()).map_err(|_| Violation::CreditRange)?;
        self.pending = Some(if delta > 0 {
            PendingCredit::Grant(magnitude)
        } else {
            PendingCredit::Revoke {
                remaining: magnitude,
            }
        });
        Ok(())
    }

    /// The client acknowledged a grant of `delta`.
    pub fn on_ack(&mut self, delta: i32, header_credits: u16) -> Result<(), Violation> {
        let Some(PendingCredit::Grant(granted)) = self.pending else {
            return Err(Violation::CreditSequence);
        };
        if i32::from(granted) != delta {
            return Err(Violation::CreditSequence);
        }
        self.level = self
            .level
            .checked_add(granted)
            .ok_or(Violation::CreditRange)?;
        self.pending = None;
        self.check(header_credits)?;
        self.consume()
    }

    /// The client gave up one credit.
    pub fn on_give_up(&mut self, header_credits: u16) -> Result<(), Violation> {
        let Some(PendingCredit::Revoke { remaining }) = self.pending else {
            return Err(Violation::CreditSequence);
        };
        // The give-up travels on a free credit, which then ceases to exist.
        if self.in_use >= self.level {
            return Err(Violation::CreditOverrun);
        }
        self.level = self.level.saturating_sub(1);
        let remaining = remaining.saturating_sub(1);
        self.pending = (remaining > 0).then_some(PendingCredit::Revoke { remaining });
        self.check(header_credits)
    }

    /// The server answered messages that consumed `n` credits.
    pub fn release(&mut self, n: u16) -> Result<(), Violation> {
        self.in_use = self.in_use.checked_sub(n).ok_or(Violation::Capacity)?;
        Ok(())
    }
}

/// The client's credits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ClientLedger {
    level: u16,
    max: u16,
    in_use: u16,
    /// What the client owes the server's current credit request, in one
    /// word: the give-ups still owed for a revoke in the low 16 bits, the
    /// delta of a grant whose acknowledgement is owed in the high 16 (a
    /// grant and a revoke are never owed together: a new request is
    /// refused until the last one is answered; both magnitudes fit 16
    /// bits). 0 when nothing is owed, so the request path's "nothing owed"
    /// is one compare ([`ClientLedger::owes_nothing`]), and the give-ups
    /// are read as a field of their own would be.
    owed: u32,
    give_up_answers_owed: u16,
    acks_in_flight: u16,
}

impl ClientLedger {
    /// A ledger at `level` credits that accepts grants up to `max`.
    pub const fn new(level: u16, max: u16) -> Self {
        Self {
            level,
            max,
            in_use: 0,
            owed: 0,
            give_up_answers_owed: 0,
            acks_in_flight: 0,
        }
    }

    /// Credits held (in use or free), excluding those already given up.
    pub fn level(&self) -> u16 {
        self.level
    }

    /// Messages sent and not yet answered.
    pub fn in_use(&self) -> u16 {
        self.in_use
    }

    /// Give-ups still to send for the current revoke.
    pub fn give_ups_owed(&self) -> u16 {
        // The low half.
        self.owed as u16
    }

    /// Whether a grant still needs its acknowledgement sent.
    pub fn ack_owed(&self) -> Option<i32> {
        // The high half.
        let delta = self.owed.wrapping_shr(16) as u16;
        (delta > 0).then_some(i32::from(delta))
    }

    /// Whether no credit message is owed to the server: no grant to
    /// acknowledge, no give-up to send (`ack_owed()` is `None` and
    /// `give_ups_owed()` is 0).
    #[inline]
    pub fn owes_nothing(&self) -> bool {
        self.owed == 0
    }

    /// Credit messages sent (acknowledgements, give-ups) whose responses
    /// have not arrived.
    pub fn responses_awaited(&self) -> u16 {
        self.acks_in_flight
            .saturating_add(self.give_up_answers_owed)
    }

    /// Whether no credit message is outstanding in either direction.
    pub fn is_settled(&self) -> bool {
        self.owes_nothing() && self.give_up_answers_owed == 0 && self.acks_in_flight == 0
    }

    fn free(&self) -> u16 {
        self.level.saturating_sub(self.in_use)
    }

    /// Credits a new request may use now: free credits not owed to a revoke.
    pub fn available(&self) -> u16 {
        self.free().saturating_sub(self.give_ups_owed())
    }

    /// The server's credit request arrived.
    ///
    /// The previous exchange must have been answered by this client (its
    /// acknowledgement or all its give-ups sent); the server's responses to
    /// those may still be on their way — the server starts a new exchange as
    /// soon as it has received the last answer, and may send the new request
    /// ahead of its responses.
    pub fn on_credit_request(&mut self, delta: i32) -> Result<(), Violation> {
        if !self.owes_nothing() {
            return Err(Violation::CreditSequence);
        }
        let magnitude = u16::try_from(delta.unsigned_abs()).map_err(|_| Violation::CreditRange)?;
        if delta > 0 {
            let level = self
                .level
                .checked_add(magnitude)
                .ok_or(Violation::CreditRange)?;
            if level > self.max {
                return Err(Violation::CreditRange);
            }
            self.level = level;
            // The acknowledgement of `delta` (= `magnitude`) owed.
            self.owed = u32::from(magnitude).wrapping_shl(16);
        } else {
            // A revoke must leave at least one credit, or nothing could ever
            // be sent again: a deadlock the protocol forbids.
            if magnitude == 0 || magnitude >= self.level {
                return Err(Violation::CreditRange);
            }
            self.owed = u32::from(magnitude);
        }
        Ok(())
    }

    /// Send one ordinary request: consumes a credit. Returns the header
    /// credit field. `None` when no credit is available for it.
    pub fn send_request(&mut self) -> Option<u16> {
        if self.available() == 0 {
            return None;
        }
        self.in_use = self.in_use.saturating_add(1);
        Some(self.level)
    }

    /// Send one message carrying `n` requests (a read batch), consuming a
    /// credit for each. Returns the header credit field; `None`, and
    /// nothing consumed, when fewer than `n` are available.
    pub fn send_requests(&mut self, n: u16) -> Option<u16> {
        if n == 0 || self.available() < n {
            return None;
        }
        self.in_use = self.in_use.saturating_add(n);
        Some(self.level)
    }

    /// Send the owed acknowledgement of a grant. Returns (delta, header credits).
    pub fn send_ack(&mut self) -> Option<(i32, u16)> {
        let delta = self.ack_owed()?;
        if self.free() == 0 {
            return None;
        }
        self.owed = 0;
        self.acks_in_flight = self.acks_in_flight.saturating_add(1);
        self.in_use = self.in_use.saturating_add(1);
        Some((delta, self.level))
    }

    /// Send one owed give-up if a credit is free. Returns the header credits.
    pub fn send_give_up(&mut self) -> Option<u16> {
        if self.give_ups_owed() == 0 || self.free() == 0 {
            return None;
        }
        // One fewer owed (no acknowledgement is owed with give-ups).
        self.owed = u32::from(self.give_ups_owed().saturating_sub(1));
        self.give_up_answers_owed = self.give_up_answers_owed.saturating_add(1);
        self.level = self.level.saturating_sub(1);
        Some(self.level)
    }

    /// A reply returned `credits` for a request that consumed `expected`.
    pub fn on_reply(&mut self, credits: u16, expected: u16) -> Result<(), Violation> {
        if credits != expected {
            return Err(Violation::CreditMismatch {
                expected,
                found: credits,
            });
        }
        self.in_use = self
            .in_use
            .checked_sub(credits)
            .ok_or(Violation::CreditOverrun)?;
        Ok(())
    }

    /// The server answered a credit message; `credits` is its header field
    /// (1 answers the acknowledgement, 0 answers a give-up).
    pub fn on_credit_response(&mut self, credits: u16) -> Result<(), Violation> {
        match credits {
            1 if self.acks_in_flight > 0 => {
                self.acks_in_flight = self.acks_in_flight.saturating_sub(1);
                self.on_reply(1, 1)
            }
            0 if self.give_up_answers_owed > 0 => {
                self.give_up_answers_owed = self.give_up_answers_owed.saturating_sub(1);
                Ok(())
            }
            _ => Err(Violation::CreditSequence),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_is_acknowledged_once_and_answered() {
        let mut c = ClientLedger::new(2, 8);
        let mut s = ServerLedger::new(2);
        s.start(3).unwrap();
        c.on_credit_request(3).unwrap();
        assert_eq!(c.level(), 5);
        let (delta, hdr) = c.send_ack().unwrap();
        assert_eq!(c.send_ack(), None, "exactly one message per grant");
        s.on_ack(delta, hdr).unwrap();
        assert_eq!(s.level(), 5);
        s.release(1).unwrap();
        c.on_credit_response(1).unwrap();
        assert!(c.is_settled());
        assert_eq!((c.in_use(), s.in_use()), (0, 0));
    }

    #[test]
    fn revoke_sends_one_give_up_per_credit_as_credits_free() {
        let mut c = ClientLedger::new(4, 8);
        let mut s = ServerLedger::new(4);
        // Three requests in flight.
        for _ in 0..3 {
            let hdr = c.send_request().unwrap();
            s.on_request(hdr).unwrap();
        }
        s.start(-2).unwrap();
        c.on_credit_request(-2).unwrap();
        assert_eq!(c.available(), 0, "give-ups come before new requests");
        let hdr = c.send_give_up().unwrap();
        s.on_give_up(hdr).unwrap();
        assert_eq!(c.send_give_up(), None, "no free credit yet");
        // One request completes; its credit goes to the second give-up.
        s.release(1).unwrap();
        c.on_reply(1, 1).unwrap();
        let hdr = c.send_give_up().unwrap();
        s.on_give_up(hdr).unwrap();
        assert_eq!(s.pending(), None);
        c.on_credit_response(0).unwrap();
        c.on_credit_response(0).unwrap();
        assert!(c.on_credit_response(0).is_err(), "no third answer owed");
        assert_eq!((c.level(), s.level()), (2, 2));
    }

    #[test]
    fn next_request_may_overtake_the_previous_responses() {
        let mut c = ClientLedger::new(2, 16);
        let mut s = ServerLedger::new(2);
        s.start(2).unwrap();
        c.on_credit_request(2).unwrap();
        let (delta, hdr) = c.send_ack().unwrap();
        s.on_ack(delta, hdr).unwrap();
        // The server starts the next exchange before its response arrives.
        s.start(-3).unwrap();
        c.on_credit_request(-3).unwrap();
        for _ in 0..3 {
            let hdr = c.send_give_up().unwrap();
            s.on_give_up(hdr).unwrap();
        }
        s.start(1).unwrap();
        c.on_credit_request(1).unwrap();
        // Now the responses: one for the ack, three for the give-ups.
        c.on_credit_response(1).unwrap();
        for _ in 0..3 {
            c.on_credit_response(0).unwrap();
        }
        let (delta, hdr) = c.send_ack().unwrap();
        s.on_ack(delta, hdr).unwrap();
        s.release(2).unwrap();
        c.on_credit_response(1).unwrap();
        assert!(c.is_settled());
        assert_eq!((c.level(), s.level(), c.in_use(), s.in_use()), (2, 2, 0, 0));
    }

    /// `owes_nothing` is the two questions it stands for, through grants,
    /// acknowledgements, revokes and give-ups.
    #[test]
    fn owes_nothing_is_no_ack_and_no_give_up_owed() {
        fn agrees(c: &ClientLedger) {
            assert_eq!(
                c.owes_nothing(),
                c.ack_owed().is_none() && c.give_ups_owed() == 0,
                "{c:?}"
            );
        }
        let mut c = ClientLedger::new(3, u16::MAX);
        agrees(&c);
        assert!(c.owes_nothing());
        c.on_credit_request(65000).unwrap();
        agrees(&c);
        assert_eq!((c.ack_owed(), c.give_ups_owed()), (Some(65000), 0));
        assert_eq!(c.available(), 65003, "an owed ack keeps no credit back");
        assert_eq!(c.send_ack(), Some((65000, 65003)));
        agrees(&c);
        assert!(c.owes_nothing());
        c.on_credit_response(1).unwrap();
        c.on_credit_request(-65002).unwrap();
        agrees(&c);
        assert_eq!((c.ack_owed(), c.give_ups_owed()), (None, 65002));
        assert_eq!(c.available(), 1, "give-ups keep their credits back");
        for left in (0..65002).rev() {
            assert!(c.send_give_up().is_some());
            assert_eq!(c.give_ups_owed(), left);
            assert_eq!(c.ack_owed(), None);
        }
        agrees(&c);
        assert!(c.owes_nothing());
        assert_eq!(c.level(), 1);
    }

    #[test]
    fn revoke_to_zero_and_overgrant_are_refused() {
        let mut c = ClientLedger::new(2, 4);
        assert_eq!(c.on_credit_request(-2), Err(Violation::CreditRange));
        assert_eq!(c.on_credit_request(3), Err(Violation::CreditRange));
        assert_eq!(c.on_credit_request(i32::MIN), Err(Violation::CreditRange));
        c.on_credit_request(1).unwrap();
        assert_eq!(c.on_credit_request(1), Err(Violation::CreditSequence));
    }

    #[test]
    fn server_detects_overrun_and_mismatch() {
        let mut s = ServerLedger::new(1);
        s.on_request(1).unwrap();
        assert_eq!(s.on_request(1), Err(Violation::CreditOverrun));
        assert_eq!(
            s.on_request(2),
            Err(Violation::CreditMismatch {
                expected: 1,
                found: 2
            })
        );
        assert_eq!(s.on_ack(1, 2), Err(Violation::CreditSequence));
        assert_eq!(s.on_give_up(0), Err(Violation::CreditSequence));
        assert_eq!(s.release(2), Err(Violation::Capacity));
    }
}
