//! Phase 2, authentication: the driver's verdict on the client's key
//! (claims 12, 13) and the status response with the starting credits
//! (claim 14).

use super::*;

impl<const R: usize, const F: usize> Connection<R, F> {
    /// Complete authentication (claims 12, 14): the key matched a session
    /// whose negotiated parameters are `params`.
    pub fn accept_auth(&mut self, now: Instant, params: SessionParams) -> Result<(), ApiError> {
        self.park();
        let State::Authenticating {
            request_id,
            credits: header_credits,
        } = self.state
        else {
            return Err(ApiError::NotConnected);
        };
        // Claim 22 on the first message too: the auth request's header
        // carries the level the negotiate response gave the client.
        if header_credits != params.credits {
            self.fail(Violation::CreditMismatch {
                expected: params.credits,
                found: header_credits,
            });
            return Err(ApiError::NotConnected);
        }
        let credits = params.credits.clamp(
            1,
            self.config
                .max_credits
                .min(u16::try_from(R).unwrap_or(u16::MAX)),
        );
        self.set_session(SessionParams { credits, ..params });
        self.ledger = ServerLedger::new(credits);
        self.target_credits = credits;
        self.credit_ceiling = credits;
        self.window_start = now;
        self.demand_limit = if params.capabilities.contains(Capabilities::CREDIT_DEMAND) {
            u16::MAX
        } else {
            0
        };
        self.state = State::Open;
        self.timers.stop(TIMER_AUTH);
        self.heard = now;
        let keepalive_ms =
            u32::try_from(self.config.keepalive_interval.as_millis()).unwrap_or(u32::MAX);
        let auth = Message {
            flags: Flags::empty(),
            credits: 0,
            demand: 0,
            request_id,
            body: Body::AuthResponse {
                status: Status::Success,
            },
        };
        let status = Message {
            flags: Flags::empty(),
            credits: 1,
            demand: 0,
            request_id,
            body: Body::StatusResponse {
                status: Status::Success,
                credits,
                keepalive_ms,
            },
        };
        self.stir();
        let queued = self
            .control
            .push_back(auth)
            .and_then(|()| self.control.push_back(status));
        queued.map_err(|_| {
            self.fail(Violation::Capacity);
            ApiError::NotConnected
        })
    }

    /// Refuse authentication: the key was unknown, used or expired. The
    /// client gets an auth response with `AuthFailed`, then `Terminate`.
    pub fn reject_auth(&mut self) {
        self.park();
        if let State::Authenticating { request_id, .. } = self.state {
            let auth = Message {
                flags: Flags::empty(),
                credits: 0,
                demand: 0,
                request_id,
                body: Body::AuthResponse {
                    status: Status::AuthFailed,
                },
            };
            self.stir();
            let _ = self.control.push_back(auth);
            self.fail(Violation::AuthFailed);
        }
    }
}
