//! Who may connect and what they may do: the server's identity (a key and
//! certificate for the side channel's TLS), the clients it knows (each a
//! name, a salted derived key and its permissions), the client's credential,
//! the servers a client trusts (`known_servers`), and the HMAC
//! challenge–response that proves a client's credential inside the TLS
//! session (docs/PROTOCOL.md, "Client authentication").
//!
//! Cryptography is ring's: HMAC-SHA256 and SHA-256; comparisons of secrets
//! are constant-time (`ring::hmac::verify`).

mod files;
pub(crate) mod trust;

pub use files::{
    ClientDb, ClientEntry, Credential, FirstStart, Identity, default_config_dir, default_state_dir,
};
pub use trust::{Fingerprint, KnownServers, ServerTrust, TrustError};

use rdio_core::wire::{AUTH_NONCE_LEN, AUTH_SALT_LEN, AuthKey, KEY_LEN};
use ring::hmac;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

/// Length of a client secret.
pub const SECRET_LEN: usize = 32;

/// What a client may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Read, write, create and truncate.
    ReadWrite,
    /// Read only: write, create and truncate are refused by the server.
    ReadOnly,
}

impl Permission {
    /// `rw` or `ro`, as in the clients file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadWrite => "rw",
            Self::ReadOnly => "ro",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "rw" => Some(Self::ReadWrite),
            "ro" => Some(Self::ReadOnly),
            _ => None,
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ReadWrite => "read-write",
            Self::ReadOnly => "read-only",
        })
    }
}

/// Secret material tied to one TLS session (its exporter), from which both
/// ends derive what must not cross the wire: the client's proof is bound to
/// it, and the RDMA authentication key is derived from it. 32 zero bytes on
/// a clear-text (`--insecure`) side channel, which binds nothing.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ChannelBinding(pub [u8; 32]);

impl fmt::Debug for ChannelBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChannelBinding(<redacted>)")
    }
}

/// The TLS exporter labels (RFC 8446 §7.5) of the two bindings.
pub const EXPORTER_CLIENT_AUTH: &[u8] = b"EXPORTER-rdio-client-auth";
/// See [`EXPORTER_CLIENT_AUTH`].
pub const EXPORTER_RDMA_AUTH: &[u8] = b"EXPORTER-rdio-rdma-auth-key";

/// The key a client proves possession of: HMAC-SHA256(salt, secret). The
/// server stores only this (with the salt), never the secret.
pub fn derive_client_key(salt: &[u8; AUTH_SALT_LEN], secret: &[u8; SECRET_LEN]) -> [u8; 32] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, salt);
    to_array(hmac::sign(&key, secret).as_ref())
}

fn proof_input(nonce: &[u8; AUTH_NONCE_LEN], binding: &ChannelBinding) -> Vec<u8> {
    let mut input = Vec::with_capacity(16 + AUTH_NONCE_LEN + 32);
    input.extend_from_slice(b"rdio-auth-v1");
    input.extend_from_slice(nonce);
    input.extend_from_slice(&binding.0);
    input
}

/// The client's answer to a challenge: HMAC-SHA256(key, "rdio-auth-v1" ‖
/// nonce ‖ binding).
pub fn client_proof(
    client_key: &[u8; 32],
    nonce: &[u8; AUTH_NONCE_LEN],
    binding: &ChannelBinding,
) -> [u8; 32] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, client_key);
    to_array(hmac::sign(&key, &proof_input(nonce, binding)).as_ref())
}

/// Check a proof in constant time.
pub fn verify_proof(
    client_key: &[u8; 32],
    nonce: &[u8; AUTH_NONCE_LEN],
    binding: &ChannelBinding,
    proof: &[u8; 32],
) -> bool {
    let key = hmac::Key::new(hmac::HMAC_SHA256, client_key);
    hmac::verify(&key, &proof_input(nonce, binding), proof).is_ok()
}

/// The RDMA authentication key of one negotiation: HMAC-SHA256(binding,
/// "rdio-rdma-auth-key" ‖ nonce), truncated to 128 bits. The negotiate
/// response carries only the nonce (in its `auth_key` field); the key
/// itself never crosses the side channel.
pub fn rdma_auth_key(binding: &ChannelBinding, nonce: &[u8; KEY_LEN]) -> AuthKey {
    let key = hmac::Key::new(hmac::HMAC_SHA256, &binding.0);
    let mut input = b"rdio-rdma-auth-key".to_vec();
    input.extend_from_slice(nonce);
    let tag = hmac::sign(&key, &input);
    let mut out = [0u8; KEY_LEN];
    out.copy_from_slice(&tag.as_ref()[..KEY_LEN]);
    AuthKey(out)
}

/// Fresh bytes from the OS CSPRNG.
pub fn random<const N: usize>() -> std::io::Result<[u8; N]> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(out)
}

fn to_array(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(&bytes[..32]);
    out
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// Exactly `N` bytes from hex.
pub(crate) fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.as_bytes();
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        let digit = |c: u8| char::from(c).to_digit(16);
        *byte = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
    }
    Some(out)
}

/// The clients a server accepts, from its clients file, re-read when the
/// file changes (so `rdio client add` takes effect without a restart).
pub struct Clients {
    path: Option<PathBuf>,
    state: Mutex<(ClientDb, Option<SystemTime>)>,
    /// Keys the salt sent for an unknown name, so it is stable per name and
    /// does not tell unknown names from known ones.
    decoy: hmac::Key,
}

impl fmt::Debug for Clients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Clients")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Clients {
    /// The clients in the file at `path` (read now, and again whenever its
    /// modification time changes).
    pub fn from_file(path: &Path) -> io::Result<Self> {
        let modified = fs::metadata(path).and_then(|m| m.modified()).ok();
        let db = ClientDb::load(path)?;
        Self::new(Some(path.to_owned()), db, modified)
    }

    /// A fixed set of clients.
    pub fn fixed(db: ClientDb) -> io::Result<Self> {
        Self::new(None, db, None)
    }

    fn new(path: Option<PathBuf>, db: ClientDb, modified: Option<SystemTime>) -> io::Result<Self> {
        Ok(Self {
            path,
            state: Mutex::new((db, modified)),
            decoy: hmac::Key::new(hmac::HMAC_SHA256, &random::<32>()?),
        })
    }

    /// The entry named `name`, from the file as it is now; a file that no
    /// longer parses keeps the last good list (and says so in the log).
    pub(crate) fn lookup(&self, name: &str) -> Option<ClientEntry> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(path) = &self.path {
            let modified = fs::metadata(path).and_then(|m| m.modified()).ok();
            if modified != state.1 {
                match ClientDb::load(path) {
                    Ok(db) => *state = (db, modified),
                    Err(error) => {
                        tracing::warn!(target: "rdio::access", %error, "clients file not reloaded");
                    }
                }
            }
        }
        state.0.find(name).cloned()
    }

    /// The salt a challenge to an unknown `name` carries.
    pub(crate) fn decoy_salt(&self, name: &str) -> [u8; AUTH_SALT_LEN] {
        let tag = hmac::sign(&self.decoy, name.as_bytes());
        let mut salt = [0u8; AUTH_SALT_LEN];
        salt.copy_from_slice(&tag.as_ref()[..AUTH_SALT_LEN]);
        salt
    }

    /// A key no client has, checked against when the name is unknown so
    /// the refusal costs the same.
    pub(crate) fn decoy_key(&self, name: &str) -> [u8; 32] {
        to_array(hmac::sign(&self.decoy, &[b"key:", name.as_bytes()].concat()).as_ref())
    }
}

/// The server's side of one client's authentication on a pipe.
#[derive(Debug, Default)]
pub(crate) enum AuthState {
    /// The pipe needs no authentication (an in-process side channel).
    #[default]
    NotRequired,
    /// Waiting for the client's hello.
    AwaitHello,
    /// A challenge was sent to `name`.
    AwaitProof {
        name: String,
        nonce: [u8; AUTH_NONCE_LEN],
    },
    /// Authenticated as `name`.
    Done { name: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_verify_only_with_the_key_nonce_and_binding_they_were_made_with() {
        let salt = [1; AUTH_SALT_LEN];
        let key = derive_client_key(&salt, &[2; SECRET_LEN]);
        let nonce = [3; AUTH_NONCE_LEN];
        let binding = ChannelBinding([4; 32]);
        let proof = client_proof(&key, &nonce, &binding);
        assert!(verify_proof(&key, &nonce, &binding, &proof));
        let other_key = derive_client_key(&salt, &[5; SECRET_LEN]);
        assert!(!verify_proof(&other_key, &nonce, &binding, &proof));
        assert!(!verify_proof(&key, &[6; AUTH_NONCE_LEN], &binding, &proof));
        assert!(!verify_proof(
            &key,
            &nonce,
            &ChannelBinding([7; 32]),
            &proof
        ));
        assert_ne!(
            derive_client_key(&[9; AUTH_SALT_LEN], &[2; SECRET_LEN]),
            key
        );
    }

    #[test]
    fn rdma_keys_depend_on_binding_and_nonce() {
        let a = rdma_auth_key(&ChannelBinding([1; 32]), &[2; KEY_LEN]);
        assert_eq!(a, rdma_auth_key(&ChannelBinding([1; 32]), &[2; KEY_LEN]));
        assert_ne!(a, rdma_auth_key(&ChannelBinding([3; 32]), &[2; KEY_LEN]));
        assert_ne!(a, rdma_auth_key(&ChannelBinding([1; 32]), &[4; KEY_LEN]));
        assert_ne!(a.0, [2; KEY_LEN]);
    }

    #[test]
    fn hex_round_trips_and_rejects_bad_text() {
        let bytes = [0x00, 0x9f, 0xff, 0x10];
        assert_eq!(hex(&bytes), "009fff10");
        assert_eq!(unhex::<4>("009fff10"), Some(bytes));
        assert_eq!(unhex::<4>("009FFF10"), Some(bytes));
        for bad in ["009fff1", "009fff100", "009fff1g", "+09fff10", "é9fff10"] {
            assert_eq!(unhex::<4>(bad), None, "{bad}");
        }
    }
}
