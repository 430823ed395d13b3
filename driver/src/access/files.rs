//! The files behind access control: the server's identity and clients
//! file, the client's credential. Every secret file is written mode 0600 in
//! a directory of mode 0700, whole (a temporary file renamed over the old
//! one), so a crash never leaves half a file.

use super::trust::Fingerprint;
use super::{Permission, SECRET_LEN, derive_client_key, hex, random, unhex};
use rdio_core::wire::AUTH_SALT_LEN;
use rdio_core::wire::pipe::valid_client_name;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

fn home() -> io::Result<PathBuf> {
    std::env::var_os("HOME")
        .filter(|home| !home.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "$HOME is not set"))
}

fn xdg(var: &str, fallback: &[&str]) -> io::Result<PathBuf> {
    match std::env::var_os(var).filter(|dir| !dir.is_empty()) {
        Some(dir) => Ok(PathBuf::from(dir).join("rdio")),
        None => Ok(fallback
            .iter()
            .fold(home()?, |path, part| path.join(part))
            .join("rdio")),
    }
}

/// Where `rdio serve` keeps its identity and clients file by default:
/// `$XDG_STATE_HOME/rdio`, else `~/.local/state/rdio`.
pub fn default_state_dir() -> io::Result<PathBuf> {
    xdg("XDG_STATE_HOME", &[".local", "state"])
}

/// Where a client looks for its credential and known servers by default:
/// `$XDG_CONFIG_HOME/rdio`, else `~/.config/rdio`.
pub fn default_config_dir() -> io::Result<PathBuf> {
    xdg("XDG_CONFIG_HOME", &[".config"])
}

/// Create `dir` (and its parents) with mode 0700 if it does not exist.
fn private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot create {}: {e}", dir.display())))
}

/// Write `contents` to `path` mode 0600, whole: a temporary file beside it,
/// synced, renamed over it.
fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        private_dir(dir)?;
    }
    let fail =
        |e: io::Error| io::Error::new(e.kind(), format!("cannot write {}: {e}", path.display()));
    let mut temp = path.as_os_str().to_owned();
    temp.push(format!(".tmp{}", std::process::id()));
    let temp = PathBuf::from(temp);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result.map_err(fail)
}

/// [`write_private`], but an existing `path` is an error
/// (`AlreadyExists`), atomically: the file is linked into place, which
/// fails if another process got there first.
fn write_new_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(format!(".new{}", std::process::id()));
    let temp = PathBuf::from(temp);
    write_private(&temp, contents)?;
    let linked = fs::hard_link(&temp, path);
    let _ = fs::remove_file(&temp);
    linked.map_err(|e| io::Error::new(e.kind(), format!("cannot create {}: {e}", path.display())))
}

/// Hold an exclusive lock on `dir/.lock` while `f` runs: concurrent first
/// starts of servers sharing a state directory create its files once.
fn locked<T>(dir: &Path, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    private_dir(dir)?;
    let lock = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(dir.join(".lock"))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)?;
    f()
}

fn read(path: &Path) -> io::Result<String> {
    fs::read_to_string(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot read {}: {e}", path.display())))
}

/// The server's TLS identity: its certificate chain and private key.
pub struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    /// Whether [`Identity::load_or_create`] created it just now.
    pub created: bool,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// The identity in `state_dir` (`server.crt`, `server.key`), created on
    /// first use: a new key pair and a self-signed certificate.
    pub fn load_or_create(state_dir: &Path) -> io::Result<Self> {
        locked(state_dir, || Self::load_or_create_locked(state_dir))
    }

    fn load_or_create_locked(state_dir: &Path) -> io::Result<Self> {
        let (cert, key) = (state_dir.join("server.crt"), state_dir.join("server.key"));
        if cert.exists() || key.exists() {
            return Self::from_files(&cert, &key);
        }
        let generated = (|| {
            let key = rcgen::KeyPair::generate()?;
            let params = rcgen::CertificateParams::new(vec!["rdio".to_owned()])?;
            let cert = params.self_signed(&key)?;
            Ok::<_, rcgen::Error>((cert.pem(), key.serialize_pem()))
        })()
        .map_err(|e| io::Error::other(format!("cannot create the server identity: {e}")))?;
        private_dir(state_dir)?;
        // The key first: a certificate without its key would be unusable.
        write_private(&key, generated.1.as_bytes())?;
        write_private(&cert, generated.0.as_bytes())?;
        let mut identity = Self::from_files(&cert, &key)?;
        identity.created = true;
        Ok(identity)
    }

    /// An identity from PEM files: a certificate chain (leaf first) and its
    /// private key, e.g. from a real PKI.
    pub fn from_files(cert: &Path, key: &Path) -> io::Result<Self> {
        let chain = CertificateDer::pem_slice_iter(read(cert)?.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(format!("{}: not a PEM certificate: {e}", cert.display())))?;
        if chain.is_empty() {
            return Err(invalid(format!("{}: no certificate in it", cert.display())));
        }
        let key = PrivateKeyDer::from_pem_slice(read(key)?.as_bytes())
            .map_err(|e| invalid(format!("{}: not a PEM private key: {e}", key.display())))?;
        Ok(Self {
            chain,
            key,
            created: false,
        })
    }

    /// SHA-256 of the leaf certificate: what clients pin.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.chain[0])
    }

    /// A TLS 1.3-only server configuration presenting this identity.
    pub fn server_config(&self) -> io::Result<Arc<rustls::ServerConfig>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .and_then(|builder| {
                builder
                    .with_no_client_auth()
                    .with_single_cert(self.chain.clone(), self.key.clone_key())
            })
            .map_err(|e| invalid(format!("unusable server identity: {e}")))?;
        Ok(Arc::new(config))
    }
}

/// One client the server knows.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientEntry {
    /// Its name.
    pub name: String,
    /// Salt of its derived key.
    pub salt: [u8; AUTH_SALT_LEN],
    /// HMAC-SHA256(salt, secret): what the client proves it can compute.
    pub key: [u8; 32],
    /// What it may do.
    pub permission: Permission,
}

impl fmt::Debug for ClientEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientEntry")
            .field("name", &self.name)
            .field("permission", &self.permission)
            .finish_non_exhaustive()
    }
}

/// The server's clients file: one line per client, `NAME SALT KEY rw|ro`
/// (hex), `#` comments. It holds no secret a client types, but a key that
/// lets whoever reads it pass as that client to this server: keep it
/// private (it is written mode 0600).
#[derive(Clone, Debug, Default)]
pub struct ClientDb {
    entries: Vec<ClientEntry>,
}

const CLIENTS_HEADER: &str = "# rdio clients: NAME SALT KEY PERMISSION (rw|ro); KEY = HMAC-SHA256(SALT, secret)\n\
# add one with `rdio client add NAME [--read-only]`\n";

impl ClientDb {
    /// Parse the clients file at `path`; a bad line is an error naming it.
    pub fn load(path: &Path) -> io::Result<Self> {
        let text = read(path)?;
        let mut entries: Vec<ClientEntry> = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: &str| invalid(format!("{} line {}: {why}", path.display(), number + 1));
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [name, salt, key, permission] = fields[..] else {
                return Err(bad("expected NAME SALT KEY rw|ro"));
            };
            if !valid_client_name(name.as_bytes()) {
                return Err(bad("invalid client name"));
            }
            if entries.iter().any(|entry| entry.name == name) {
                return Err(bad("duplicate client name"));
            }
            entries.push(ClientEntry {
                name: name.to_owned(),
                salt: unhex(salt).ok_or_else(|| bad("SALT is not 32 hex digits"))?,
                key: unhex(key).ok_or_else(|| bad("KEY is not 64 hex digits"))?,
                permission: Permission::parse(permission)
                    .ok_or_else(|| bad("PERMISSION is not rw or ro"))?,
            });
        }
        Ok(Self { entries })
    }

    /// Write the whole file to `path` (mode 0600).
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let mut text = String::from(CLIENTS_HEADER);
        for entry in &self.entries {
            text.push_str(&format!(
                "{} {} {} {}\n",
                entry.name,
                hex(&entry.salt),
                hex(&entry.key),
                entry.permission.as_str()
            ));
        }
        write_private(path, text.as_bytes())
    }

    /// The entry named `name`.
    pub fn find(&self, name: &str) -> Option<&ClientEntry> {
        self.entries.iter().find(|entry| entry.name == name)
    }

    /// Every entry.
    pub fn entries(&self) -> &[ClientEntry] {
        &self.entries
    }

    /// Add an entry for `credential` (a fresh salt); an existing name is an
    /// error.
    pub fn add(&mut self, credential: &Credential, permission: Permission) -> io::Result<()> {
        if self.find(&credential.name).is_some() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("a client named '{}' already exists", credential.name),
            ));
        }
        let salt = random::<AUTH_SALT_LEN>()?;
        self.entries.push(ClientEntry {
            name: credential.name.clone(),
            salt,
            key: derive_client_key(&salt, &credential.secret),
            permission,
        });
        Ok(())
    }
}

/// A client's credential: its name and secret. The file (`name NAME`,
/// `secret HEX`) is what a user hands to another user or host.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// The client's name in the server's clients file.
    pub name: String,
    /// The secret.
    pub secret: [u8; SECRET_LEN],
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Credential {
    /// A new credential for `name`, with a random secret.
    pub fn generate(name: &str) -> io::Result<Self> {
        if !valid_client_name(name.as_bytes()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid client name '{name}': 1 to 64 ASCII letters, digits or ._-@"),
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            secret: random()?,
        })
    }

    /// The default credential file: `credential` in
    /// [`default_config_dir`].
    pub fn default_path() -> io::Result<PathBuf> {
        Ok(default_config_dir()?.join("credential"))
    }

    /// Read a credential file.
    pub fn load(path: &Path) -> io::Result<Self> {
        let text = read(path)?;
        let (mut name, mut secret) = (None, None);
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.split_once(' ') {
                Some(("name", value)) => name = Some(value.trim().to_owned()),
                Some(("secret", value)) => secret = unhex(value.trim()),
                _ => {}
            }
        }
        match (name, secret) {
            (Some(name), Some(secret)) if valid_client_name(name.as_bytes()) => {
                Ok(Self { name, secret })
            }
            _ => Err(invalid(format!(
                "{} is not an rdio credential (expected lines 'name NAME' and 'secret HEX')",
                path.display()
            ))),
        }
    }

    /// Write it to `path` (mode 0600); an existing file is an error unless
    /// `replace`.
    pub fn save(&self, path: &Path, replace: bool) -> io::Result<()> {
        let text = format!(
            "# rdio client credential: keep it secret\nname {}\nsecret {}\n",
            self.name,
            hex(&self.secret)
        );
        if replace {
            write_private(path, text.as_bytes())
        } else {
            write_new_private(path, text.as_bytes())
        }
    }
}

/// The name for the user running this process: `$USER` (or `$LOGNAME`)
/// when it is a valid client name, else `uid-N`.
pub(crate) fn user_name() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .filter_map(|var| std::env::var(var).ok())
        .find(|name| valid_client_name(name.as_bytes()))
        .unwrap_or_else(|| format!("uid-{}", rustix::process::getuid().as_raw()))
}

/// What [`ClientDb::open_or_create`] did on a server's first start.
#[derive(Debug)]
pub enum FirstStart {
    /// The clients file existed.
    Existing,
    /// The clients file was created with an entry for the user's existing
    /// credential.
    AddedUser {
        /// The entry's name.
        name: String,
        /// The credential it matches.
        credential: PathBuf,
    },
    /// The clients file was created with an entry for the user, and the
    /// user's credential written.
    CreatedUser {
        /// The entry's name.
        name: String,
        /// Where the credential was written.
        credential: PathBuf,
    },
}

impl ClientDb {
    /// The clients file at `path`, created on first start with one
    /// read-write entry for the user running the server: for the credential
    /// at `credential` if there is one, else for a new credential written
    /// there. So the same user connects with no setup.
    pub fn open_or_create(path: &Path, credential: &Path) -> io::Result<(Self, FirstStart)> {
        match path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            Some(dir) => locked(dir, || Self::open_or_create_locked(path, credential)),
            None => Self::open_or_create_locked(path, credential),
        }
    }

    fn open_or_create_locked(path: &Path, credential: &Path) -> io::Result<(Self, FirstStart)> {
        if path.exists() {
            return Ok((Self::load(path)?, FirstStart::Existing));
        }
        let mut db = Self::default();
        let outcome = if credential.exists() {
            let existing = Credential::load(credential)?;
            db.add(&existing, Permission::ReadWrite)?;
            FirstStart::AddedUser {
                name: existing.name,
                credential: credential.to_owned(),
            }
        } else {
            let created = Credential::generate(&user_name())?;
            match created.save(credential, false) {
                Ok(()) => {
                    db.add(&created, Permission::ReadWrite)?;
                    FirstStart::CreatedUser {
                        name: created.name,
                        credential: credential.to_owned(),
                    }
                }
                // Another server of this user wrote one meanwhile.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let existing = Credential::load(credential)?;
                    db.add(&existing, Permission::ReadWrite)?;
                    FirstStart::AddedUser {
                        name: existing.name,
                        credential: credential.to_owned(),
                    }
                }
                Err(e) => return Err(e),
            }
        };
        db.save(path)?;
        Ok((db, outcome))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn identity_is_created_once_and_reloaded_with_the_same_fingerprint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        let first = Identity::load_or_create(&state).expect("create");
        assert!(first.created);
        let again = Identity::load_or_create(&state).expect("load");
        assert!(!again.created);
        assert_eq!(first.fingerprint(), again.fingerprint());
        let mode = fs::metadata(state.join("server.key"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(again.server_config().is_ok());
    }

    #[test]
    fn clients_file_round_trips_and_names_bad_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("clients");
        let mut db = ClientDb::default();
        let alice = Credential::generate("alice").expect("alice");
        db.add(&alice, Permission::ReadWrite).expect("add");
        db.add(
            &Credential::generate("bob").expect("bob"),
            Permission::ReadOnly,
        )
        .expect("add");
        assert!(db.add(&alice, Permission::ReadOnly).is_err(), "duplicate");
        db.save(&path).expect("save");
        let loaded = ClientDb::load(&path).expect("load");
        assert_eq!(loaded.entries(), db.entries());
        let entry = loaded.find("alice").expect("alice");
        assert_eq!(entry.key, derive_client_key(&entry.salt, &alice.secret));

        for (text, why) in [
            ("alice 00 11 rw\n", "SALT"),
            ("a b\n", "expected NAME"),
            ("bad/name 0 0 rw\n", "invalid client name"),
            (
                "x 00000000000000000000000000000000 0000000000000000000000000000000000000000000000000000000000000000 rx\n",
                "PERMISSION",
            ),
        ] {
            fs::write(&path, format!("# comment\n{text}")).expect("write");
            let error = ClientDb::load(&path).expect_err(text).to_string();
            assert!(error.contains("line 2") && error.contains(why), "{error}");
        }
    }

    #[test]
    fn credentials_round_trip_and_are_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cfg/credential");
        let credential = Credential::generate("carol").expect("carol");
        credential.save(&path, false).expect("save");
        assert!(credential.save(&path, false).is_err(), "no overwrite");
        assert_eq!(Credential::load(&path).expect("load"), credential);
        let mode = fs::metadata(&path).expect("file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!format!("{credential:?}").contains(&hex(&credential.secret)));
        fs::write(&path, "name carol\n").expect("write");
        assert!(Credential::load(&path).is_err());
        assert!(Credential::generate("no spaces").is_err());
    }

    #[test]
    fn first_start_adds_the_users_existing_credential_or_creates_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let credential = dir.path().join("config/credential");
        let (db, outcome) =
            ClientDb::open_or_create(&dir.path().join("a/clients"), &credential).expect("a");
        assert!(
            matches!(outcome, FirstStart::CreatedUser { .. }),
            "{outcome:?}"
        );
        let mine = Credential::load(&credential).expect("written");
        assert!(db.find(&mine.name).is_some());
        // A second server of the same user accepts the same credential.
        let (db, outcome) =
            ClientDb::open_or_create(&dir.path().join("b/clients"), &credential).expect("b");
        assert!(
            matches!(outcome, FirstStart::AddedUser { .. }),
            "{outcome:?}"
        );
        let entry = db.find(&mine.name).expect("entry");
        assert_eq!(entry.key, derive_client_key(&entry.salt, &mine.secret));
        let (_, outcome) =
            ClientDb::open_or_create(&dir.path().join("b/clients"), &credential).expect("again");
        assert!(matches!(outcome, FirstStart::Existing));
    }
}
