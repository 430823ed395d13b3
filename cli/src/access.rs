//! Who may connect and what they may do, from the command line: the
//! security of `serve`'s side channel, the client's credential and trust in
//! the server for `get`, `put` and `bench --server`, and `rdio client add`.

use anyhow::{Context, Result, bail};
use rdio::access::{
    ClientDb, Clients, Credential, FirstStart, Identity, KnownServers, Permission, ServerTrust,
    default_state_dir,
};
use rdio::net::{ClientSecurity, IpNet, ServerSecurity};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use crate::NetArgs;

/// `serve`'s access options.
#[derive(Debug)]
pub struct ServeAccess {
    pub state_dir: Option<PathBuf>,
    pub clients: Option<PathBuf>,
    pub insecure: bool,
    pub read_only: bool,
    pub cert: Option<(PathBuf, PathBuf)>,
    pub allow: Vec<IpNet>,
    pub max_sessions: usize,
}

fn state_dir(dir: Option<&Path>) -> Result<PathBuf> {
    match dir {
        Some(dir) => Ok(dir.to_owned()),
        None => default_state_dir().context("cannot find the state directory (use --state-dir)"),
    }
}

/// The server's side-channel security, creating its identity and clients
/// file on first start (and saying so on standard error), and the
/// fingerprint clients pin (`None` with --insecure).
pub fn server_security(access: &ServeAccess) -> Result<(ServerSecurity, Option<String>)> {
    let state = state_dir(access.state_dir.as_deref())?;
    let clients = match &access.clients {
        Some(path) => Clients::from_file(path)
            .with_context(|| format!("cannot use the clients file {}", path.display()))?,
        None => {
            let path = state.join("clients");
            let credential = Credential::default_path()
                .context("cannot find the user's configuration directory")?;
            let (_, first) = ClientDb::open_or_create(&path, &credential)
                .with_context(|| format!("cannot set up the clients file {}", path.display()))?;
            match first {
                FirstStart::Existing => {}
                FirstStart::CreatedUser { name, credential }
                | FirstStart::AddedUser { name, credential } => eprintln!(
                    "rdio serve: created {} with client '{name}' (read-write), whose credential \
                     is {}: clients of this user connect with no setup; for another user or \
                     host run `rdio client add NAME [--read-only]` and hand them the \
                     credential file it writes",
                    path.display(),
                    credential.display()
                ),
            }
            Clients::from_file(&path)
                .with_context(|| format!("cannot use the clients file {}", path.display()))?
        }
    };
    let clients = Arc::new(clients);
    if access.insecure {
        let mut security = ServerSecurity::insecure(clients);
        security.allow.clone_from(&access.allow);
        return Ok((security, None));
    }
    let identity = match &access.cert {
        Some((cert, key)) => Identity::from_files(cert, key)?,
        None => {
            let identity = Identity::load_or_create(&state).with_context(|| {
                format!("cannot set up the server identity in {}", state.display())
            })?;
            if identity.created {
                eprintln!(
                    "rdio serve: created the server identity (TLS key and self-signed \
                     certificate) in {}",
                    state.display()
                );
            }
            identity
        }
    };
    let mut security = ServerSecurity::tls(identity.server_config()?, clients);
    security.allow.clone_from(&access.allow);
    Ok((security, Some(identity.fingerprint().to_string())))
}

/// What the command line says about the client's side-channel security.
#[derive(Debug)]
struct ClientSettings {
    credential: Option<PathBuf>,
    insecure: bool,
    fingerprint: Option<rdio::access::Fingerprint>,
    ca: Option<PathBuf>,
    host: String,
}

static CLIENT_SETTINGS: OnceLock<ClientSettings> = OnceLock::new();
static CLIENT_SECURITY: OnceLock<ClientSecurity> = OnceLock::new();

/// Record the client's side-channel security options for this process
/// (`host` as the user named the server, for --ca). Files are read when
/// the first connection needs them ([`client_security`]), so errors about
/// local files or libfabric come first.
pub fn set_client_security(net: &NetArgs, host: &str) -> Result<()> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let _ = CLIENT_SETTINGS.set(ClientSettings {
        credential: net.credential.clone(),
        insecure: net.insecure,
        fingerprint: net.server_fingerprint,
        ca: net.ca.clone(),
        host: host.to_owned(),
    });
    Ok(())
}

fn build(settings: &ClientSettings) -> Result<ClientSecurity> {
    let path = match &settings.credential {
        Some(path) => path.clone(),
        None => Credential::default_path().context("cannot find the configuration directory")?,
    };
    if settings.credential.is_none() && !path.exists() {
        bail!(
            "no rdio credential at {}: run `rdio serve` once as this user (it creates one), or \
             ask the server's owner for one (`rdio client add NAME` on the server) and pass it \
             with --credential FILE",
            path.display()
        );
    }
    let credential = Credential::load(&path)?;
    let tls = if settings.insecure {
        None
    } else if let Some(fingerprint) = settings.fingerprint {
        Some(ServerTrust::Fingerprint(fingerprint))
    } else if let Some(ca) = &settings.ca {
        Some(ServerTrust::ca_file(ca)?)
    } else {
        Some(ServerTrust::KnownServers(
            KnownServers::default_file().context("cannot find the configuration directory")?,
        ))
    };
    Ok(ClientSecurity {
        tls,
        credential,
        server_name: Some(settings.host.clone()),
        on_first_use: Some(Arc::new(|server, fingerprint, file| {
            eprintln!(
                "rdio: trusting the server at {server} on first use: {fingerprint} (as `rdio \
                 serve` printed it), pinned in {}",
                file.display()
            );
        })),
    })
}

/// The client's side-channel security, from the options
/// [`set_client_security`] recorded.
pub fn client_security() -> Result<&'static ClientSecurity> {
    if let Some(security) = CLIENT_SECURITY.get() {
        return Ok(security);
    }
    let settings = CLIENT_SETTINGS
        .get()
        .context("internal error: the client's security was not set up")?;
    let security = build(settings)?;
    Ok(CLIENT_SECURITY.get_or_init(|| security))
}

/// `rdio client add`'s arguments.
#[derive(Debug)]
pub struct AddClient {
    pub name: String,
    pub read_only: bool,
    pub state_dir: Option<PathBuf>,
    pub clients: Option<PathBuf>,
    pub output: Option<PathBuf>,
}

/// Add a client entry and write its credential file.
pub fn add_client(add: &AddClient) -> Result<()> {
    let clients = match &add.clients {
        Some(path) => path.clone(),
        None => state_dir(add.state_dir.as_deref())?.join("clients"),
    };
    let output = add
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.credential", add.name)));
    let credential = Credential::generate(&add.name)?;
    let mut db = if clients.exists() {
        ClientDb::load(&clients)?
    } else {
        ClientDb::default()
    };
    let permission = if add.read_only {
        Permission::ReadOnly
    } else {
        Permission::ReadWrite
    };
    db.add(&credential, permission)?;
    // The credential first: an entry nobody holds the secret of is useless.
    credential.save(&output, false)?;
    if let Err(error) = db.save(&clients) {
        let _ = std::fs::remove_file(&output);
        return Err(error.into());
    }
    if crate::report::json() {
        println!(
            "{}",
            serde_json::json!({
                "command": "client add",
                "name": add.name,
                "permission": permission.to_string(),
                "clients": clients.display().to_string(),
                "credential": output.display().to_string(),
            })
        );
        return Ok(());
    }
    println!(
        "rdio client add: added '{}' ({permission}) to {}; its credential is {}: hand it to the \
         user over a safe channel, who passes it with --credential FILE or puts it at \
         ~/.config/rdio/credential",
        add.name,
        clients.display(),
        output.display()
    );
    Ok(())
}
