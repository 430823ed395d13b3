//! The server's side-channel state: which pipe sessions exist, the server
//! request resume key each was given (claims 8, 23), the authentication key
//! each negotiation handed out (claims 12, 13), and the files opened on each
//! session with their resume keys (claim 10).
//!
//! Keys are minted from entropy the caller supplies (the OS CSPRNG on std):
//! the core cannot read one itself. Every key is single use: a redeemed
//! authentication or file key is forgotten, so a replayed key fails.

use super::{FileId, ServerConfig};
use crate::time::Instant;
use crate::wire::{
    AuthKey, Capabilities, KEY_LEN, NegotiateRequest, NegotiateResponse, OpenFlags, ProviderList,
    ResumeKey, Status, VERSION_1,
};
use core::fmt;
use core::time::Duration;

/// A pipe session, as numbered by the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SessionId(pub u32);

/// What a negotiation settled, handed to the RDMA connection at
/// authentication.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SessionParams {
    /// The session.
    pub session: SessionId,
    /// The client's initial credit level.
    pub credits: u16,
    /// The most credits the client accepts (what it asked for).
    pub max_credits: u16,
    /// Largest message either side sends.
    pub max_send_size: u32,
    /// Largest read or write.
    pub max_io_size: u32,
    /// The extensions the negotiation granted (what the client offered
    /// and the server implements).
    pub capabilities: Capabilities,
}

/// A file opened on a session's pipe, awaiting registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FileEntry {
    /// The session that opened it.
    pub session: SessionId,
    /// The driver's open file.
    pub file: FileId,
    /// Its open mode.
    pub flags: OpenFlags,
    /// Its size at open.
    pub size: u64,
}

/// What the server can offer a negotiating client.
#[derive(Clone, Copy, Debug)]
pub struct ServerOffer<'a> {
    /// Providers the server serves with RDMA writes, most preferred first.
    pub providers: &'a ProviderList,
    /// Where clients connect the RDMA channel.
    pub endpoint: &'a [u8],
}

/// Why a registry operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum RegistryError {
    /// The table of sessions or files is full.
    Full,
    /// The key is unknown, already used, or expired.
    UnknownKey,
    /// The session does not exist (any more).
    UnknownSession,
}

impl RegistryError {
    /// The status to put on the wire.
    pub fn status(self) -> Status {
        match self {
            Self::Full => Status::ResourceExhausted,
            Self::UnknownKey => Status::UnknownResumeKey,
            Self::UnknownSession => Status::NotFound,
        }
    }
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Full => "server limit reached",
            Self::UnknownKey => "unknown, used or expired key",
            Self::UnknownSession => "unknown session",
        })
    }
}

impl core::error::Error for RegistryError {}

#[derive(Clone, Copy, Debug)]
struct Session {
    id: SessionId,
    server_key: ResumeKey,
    auth: Option<(AuthKey, Instant, SessionParams)>,
}

#[derive(Clone, Copy, Debug)]
struct File {
    key: ResumeKey,
    entry: FileEntry,
}

/// Side-channel state for up to `S` sessions and `N` unregistered files.
#[derive(Debug)]
pub struct Registry<const S: usize = 64, const N: usize = 256> {
    config: ServerConfig,
    auth_lifetime: Duration,
    next_session: u32,
    sessions: heapless::Vec<Session, S>,
    files: heapless::Vec<File, N>,
}

impl<const S: usize, const N: usize> Registry<S, N> {
    /// An empty registry; authentication keys expire `auth_lifetime` after
    /// the negotiation that minted them.
    pub fn new(config: ServerConfig, auth_lifetime: Duration) -> Self {
        Self {
            config,
            auth_lifetime,
            next_session: 1,
            sessions: heapless::Vec::new(),
            files: heapless::Vec::new(),
        }
    }

    /// A pipe opened and asked for the server request resume key (claim 8):
    /// create a session keyed by `entropy`.
    pub fn open_session(
        &mut self,
        entropy: [u8; KEY_LEN],
    ) -> Result<(SessionId, ResumeKey), RegistryError> {
        let id = SessionId(self.next_session);
        let server_key = ResumeKey(entropy);
        self.sessions
            .push(Session {
                id,
                server_key,
                auth: None,
            })
            .map_err(|_| RegistryError::Full)?;
        self.next_session = self.next_session.wrapping_add(1).max(1);
        Ok((id, server_key))
    }

    /// The pipe of `session` closed: forget it and its unregistered files,
    /// returning those files so the driver can close them.
    pub fn close_session(&mut self, session: SessionId) -> heapless::Vec<FileId, N> {
        self.sessions.retain(|s| s.id != session);
        let mut closed = heapless::Vec::new();
        self.files.retain(|f| {
            if f.entry.session == session {
                let _ = closed.push(f.entry.file);
                false
            } else {
                true
            }
        });
        closed
    }

    /// Answer a negotiate request (claims 8, 13): check the server request
    /// resume key, pick the version, intersect the providers (keeping the
    /// server's order: the *minimal list of common providers*), settle limits
    /// and credits, and mint the single-use authentication key from `entropy`.
    pub fn negotiate<'e>(
        &mut self,
        now: Instant,
        session: SessionId,
        request: &NegotiateRequest,
        offer: ServerOffer<'e>,
        entropy: [u8; KEY_LEN],
    ) -> NegotiateResponse<'e> {
        let mut response = NegotiateResponse {
            status: Status::Success,
            version: VERSION_1,
            credits: 0,
            max_send_size: 0,
            max_io_size: 0,
            auth_key: AuthKey([0; KEY_LEN]),
            providers: ProviderList::new(),
            capabilities: Capabilities::NONE,
            endpoint: &[],
        };
        let Some(entry) = self.sessions.iter_mut().find(|s| s.id == session) else {
            response.status = Status::NotFound;
            return response;
        };
        if entry.server_key != request.server_key {
            response.status = Status::UnknownResumeKey;
            return response;
        }
        if !(request.min_version..=request.max_version).contains(&VERSION_1) {
            response.status = Status::VersionMismatch;
            return response;
        }
        for provider in offer.providers {
            if request.providers.contains(provider) {
                // Capacity equals the offer's: cannot overflow.
                let _ = response.providers.push(*provider);
            }
        }
        if request.credits_requested == 0 {
            // `1 ≤ initial ≤ requested` has no answer: a client holding no
            // credit could not even send its auth request.
            response.providers.clear();
            response.status = Status::InvalidParameter;
            return response;
        }
        if response.providers.is_empty() {
            // Tell the client what the server has, so it can say why.
            response.providers = offer.providers.clone();
            response.status = Status::NoCommonProvider;
            return response;
        }
        let max_credits = request
            .credits_requested
            .min(self.config.max_credits)
            .max(1);
        let params = SessionParams {
            session,
            credits: self.config.initial_credits.clamp(1, max_credits),
            max_credits,
            max_send_size: request.max_send_size.min(self.config.max_send_size),
            max_io_size: request.max_io_size.min(self.config.max_io_size),
            capabilities: request.capabilities.intersection(self.config.capabilities),
        };
        let auth_key = AuthKey(entropy);
        entry.auth = Some((auth_key, now.saturating_add(self.auth_lifetime), params));
        response.credits = params.credits;
        response.max_send_size = params.max_send_size;
        response.max_io_size = params.max_io_size;
        response.auth_key = auth_key;
        response.capabilities = params.capabilities;
        response.endpoint = offer.endpoint;
        response
    }

    /// An RDMA connection presented `key` (claim 12): the session's
    /// parameters if the key is the one its negotiation minted and has not
    /// expired. The key is consumed either way it matched.
    pub fn redeem_auth(
        &mut self,
        now: Instant,
        key: &AuthKey,
    ) -> Result<SessionParams, RegistryError> {
        // Compare against every session (constant-time per key) so timing
        // does not reveal which session matched.
        let mut found = None;
        for session in self.sessions.iter_mut() {
            if let Some((expected, expires, params)) = session.auth {
                if expected == *key {
                    session.auth = None;
                    if now <= expires {
                        found = Some(params);
                    }
                }
            }
        }
        found.ok_or(RegistryError::UnknownKey)
    }

    /// A file opened on `session`'s pipe gets a resume key minted from
    /// `entropy` (claim 10).
    pub fn add_file(
        &mut self,
        entry: FileEntry,
        entropy: [u8; KEY_LEN],
    ) -> Result<ResumeKey, RegistryError> {
        if !self.sessions.iter().any(|s| s.id == entry.session) {
            return Err(RegistryError::UnknownSession);
        }
        let key = ResumeKey(entropy);
        self.files
            .push(File { key, entry })
            .map_err(|_| RegistryError::Full)?;
        Ok(key)
    }

    /// Register the file with resume key `key` for an RDMA connection of
    /// `session` (claim 11). Single use; a key from another session is
    /// unknown here.
    pub fn redeem_file(
        &mut self,
        session: SessionId,
        key: &ResumeKey,
    ) -> Result<FileEntry, RegistryError> {
        // Compare against every entry (constant-time per key), so timing
        // does not reveal which entry matched or how far the search went.
        let mut found = None;
        for (index, file) in self.files.iter().enumerate() {
            if file.key == *key && file.entry.session == session {
                found = Some(index);
            }
        }
        let index = found.ok_or(RegistryError::UnknownKey)?;
        Ok(self.files.swap_remove(index).entry)
    }

    /// Files opened and not yet registered.
    pub fn pending_files(&self) -> usize {
        self.files.len()
    }

    /// Sessions open (pipes that asked for a resume key and have not
    /// closed).
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }
}
