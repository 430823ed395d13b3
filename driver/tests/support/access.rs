//! Side-channel security for the networked tests: a server identity and a
//! clients file in a temporary directory, and a client holding the one
//! credential, pinning the server's fingerprint.

use rdio::access::{ClientDb, Clients, Credential, Fingerprint, Identity, Permission, ServerTrust};
use rdio::net::{ClientSecurity, ServerSecurity};
use std::sync::Arc;

/// A server identity, its clients, and one client's credential.
pub struct TestAccess {
    pub fingerprint: Fingerprint,
    pub config: Arc<rustls::ServerConfig>,
    pub clients: Arc<Clients>,
    pub credential: Credential,
}

impl TestAccess {
    /// One read-write client, `tester`.
    pub fn new() -> Self {
        Self::with_permission(Permission::ReadWrite)
    }

    /// One client, `tester`, with `permission`.
    pub fn with_permission(permission: Permission) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let identity = Identity::load_or_create(&dir.path().join("state")).expect("identity");
        let credential = Credential::generate("tester").expect("credential");
        let mut db = ClientDb::default();
        db.add(&credential, permission).expect("add");
        Self {
            fingerprint: identity.fingerprint(),
            config: identity.server_config().expect("config"),
            clients: Arc::new(Clients::fixed(db).expect("clients")),
            credential,
        }
    }

    /// One per test process (the identity and clients live in memory).
    pub fn shared() -> &'static Self {
        static SHARED: std::sync::OnceLock<TestAccess> = std::sync::OnceLock::new();
        SHARED.get_or_init(Self::new)
    }

    /// TLS with this identity, these clients.
    pub fn server(&self) -> ServerSecurity {
        ServerSecurity::tls(Arc::clone(&self.config), Arc::clone(&self.clients))
    }

    /// TLS pinning this server's fingerprint, with the credential.
    pub fn client(&self) -> ClientSecurity {
        ClientSecurity {
            tls: Some(ServerTrust::Fingerprint(self.fingerprint)),
            credential: self.credential.clone(),
            server_name: None,
            on_first_use: None,
        }
    }
}
