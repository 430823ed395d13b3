//! Credits: the driver's target level and the grants and revokes that move
//! the client towards it (claims 1, 6, 7, 23).

use super::*;

impl<const R: usize, const F: usize> Connection<R, F> {
    /// Steer the client's credits toward `target` (the server's credit
    /// policy): one credit request at a time, grants up to the smaller of
    /// `max_credits` and what the client asked for at negotiation, revokes
    /// down to `min_credits`.
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
        self.drive_credits().map_err(|v| {
            self.fail(v);
            ApiError::NotConnected
        })
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
            request_id: 0,
            body: Body::CreditRequest { delta },
        };
        self.stir();
        self.control
            .push_back(request)
            .map_err(|_| Violation::Capacity)
    }
}
