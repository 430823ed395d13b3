//! Credits: the driver's target level, the policy that follows the
//! client's use, and the grants and revokes that move the client towards
//! them (claims 1, 6, 7, 23).
//!
//! The policy ([`ServerConfig::credit_window`]) is SMB Direct's and
//! RPC-over-RDMA's: grant what the client's requests ask for (MS-SMBD's
//! `CreditsRequested`, RFC 8166's credit value in a call). With
//! [`Capabilities::CREDIT_DEMAND`] each request states the credits the
//! client could use (its requests outstanding and waiting); the server
//! keeps the highest in a window. A demand above the level is granted at
//! once, to twice the demand; a window in which the demand stayed at a
//! quarter of the level or less ends with a revoke to twice the demand.
//! The factor of two between the level a change aims for and either
//! threshold keeps a steady client from being revoked and granted in
//! turn. (The server's own count of requests in hand cannot stand in for
//! the demand: a server that answers each request before taking the next
//! holds one at a time however many wait at the client.)

use super::*;

/// The fewest credits the policy leaves a client: a request and a
/// keepalive or close beside it, so a client at queue depth 1 never
/// saturates its level (and is never granted more for it).
const POLICY_FLOOR: u16 = 2;

impl<const R: usize, const F: usize> Connection<R, F> {
    /// Steer the client's credits toward `target` (the server's credit
    /// policy): one credit request at a time, grants up to the smaller of
    /// `max_credits` and what the client asked for at negotiation, revokes
    /// down to `min_credits`. With [`ServerConfig::credit_window`] set,
    /// `target` is also the most the policy grants from now on (it still
    /// takes back what the client does not use).
    pub fn set_credit_target(&mut self, target: u16) -> Result<(), ApiError> {
        self.park();
        let Some(session) = self.session else {
            return Err(ApiError::NotConnected);
        };
        let max = self
            .config
            .max_credits
            .min(session.max_credits)
            .min(u16::try_from(R).unwrap_or(u16::MAX));
        if target < self.config.min_credits.max(1) || target > max {
            return Err(ApiError::CreditsBusy);
        }
        self.target_credits = target;
        self.credit_ceiling = target;
        self.drive_credits().map_err(|v| {
            self.fail(v);
            ApiError::NotConnected
        })
    }

    /// The level the server is steering the client's credits toward (set
    /// by [`Connection::set_credit_target`] or the credit policy).
    pub fn credit_target(&self) -> u16 {
        self.target_credits
    }

    /// Let the credit policy ([`ServerConfig::credit_window`]) look at the
    /// client's demand at `now`: a client whose requests stated more
    /// credits than it holds is granted twice its demand (up to the
    /// ceiling); at the end of a window in which it stated at most a
    /// quarter of its level, it is revoked down to twice its demand. Cheap
    /// when there is nothing to do: call it from time to time (the driver
    /// does on idle rounds and every millisecond). Without calls, with no
    /// window configured, or on a session without
    /// [`Capabilities::CREDIT_DEMAND`], credits stay where they are.
    /// `true` if it started a grant or revoke: a credit request waits in
    /// [`Connection::poll_transmit`].
    pub fn review_credits(&mut self, now: Instant) -> bool {
        let Some(window) = self.config.credit_window else {
            return false;
        };
        // One exchange at a time; the policy looks again once it is done.
        if self.state != State::Open || self.demand_limit == 0 || self.ledger.pending().is_some() {
            return false;
        }
        let level = self.ledger.level();
        let demand = self.demand_peak;
        let wanted = demand
            .saturating_mul(2)
            .max(POLICY_FLOOR)
            .max(self.config.min_credits)
            .min(self.credit_ceiling);
        let target = if demand > level {
            // Requests are waiting for credits.
            (wanted > level).then_some(wanted)
        } else if now.saturating_since(self.window_start) >= window {
            (demand <= level / 4 && wanted < level).then_some(wanted)
        } else {
            return false;
        };
        // A new window, its peak starting from the requests outstanding.
        self.window_start = now;
        self.demand_peak = self.ledger().in_use();
        let Some(target) = target else {
            return false;
        };
        self.park();
        self.target_credits = target;
        match self.drive_credits() {
            Ok(()) => self.ledger.pending().is_some(),
            Err(violation) => {
                self.fail(violation);
                false
            }
        }
    }

    pub(super) fn drive_credits(&mut self) -> Result<(), Violation> {
        if self.state != State::Open || self.ledger.pending().is_some() {
            return Ok(());
        }
        let delta = i32::from(self.target_credits).saturating_sub(i32::from(self.ledger.level()));
        if delta == 0 {
            return Ok(());
        }
        self.ledger.start(delta)?;
        let request = Message {
            flags: Flags::empty(),
            credits: 0,
            demand: 0,
            request_id: 0,
            body: Body::CreditRequest { delta },
        };
        self.stir();
        self.control
            .push_back(request)
            .map_err(|_| Violation::Capacity)
    }
}
