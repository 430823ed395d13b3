//! Which servers a client trusts: a pinned SHA-256 fingerprint of the
//! server's certificate (explicit, or remembered in `known_servers` on first
//! use, as ssh does), or a CA's certificates for a real PKI.

use super::files::default_config_dir;
use super::{hex, unhex};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};

/// SHA-256 of a server's certificate, written `SHA256:` and 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of `cert` (DER).
    pub fn of(cert: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, cert);
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        Self(out)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SHA256:{}", hex(&self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Fingerprint {
    type Err = String;

    /// `SHA256:` (optional) and 64 hex digits, colons between bytes allowed.
    fn from_str(text: &str) -> Result<Self, String> {
        let digits: String = text
            .strip_prefix("SHA256:")
            .unwrap_or(text)
            .chars()
            .filter(|&c| c != ':')
            .collect();
        unhex(&digits).map(Self).ok_or_else(|| {
            format!("invalid fingerprint '{text}': expected SHA256: and 64 hex digits")
        })
    }
}

/// The client's `known_servers` file: `HOST:PORT SHA256:...` per line.
#[derive(Clone, Debug)]
pub struct KnownServers {
    path: PathBuf,
}

impl KnownServers {
    /// The file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// `known_servers` in [`default_config_dir`].
    pub fn default_file() -> io::Result<Self> {
        Ok(Self::new(default_config_dir()?.join("known_servers")))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The fingerprint pinned for `server` and its line number, if any.
    pub fn lookup(&self, server: &str) -> io::Result<Option<(Fingerprint, usize)>> {
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot read {}: {e}", self.path.display()),
                ));
            }
        };
        for (number, line) in text.lines().enumerate() {
            let mut fields = line.split_whitespace();
            if fields.next() == Some(server) {
                let fingerprint = fields
                    .next()
                    .and_then(|text| text.parse().ok())
                    .ok_or_else(|| {
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!(
                                "{} line {}: expected HOST:PORT SHA256:...",
                                self.path.display(),
                                number + 1
                            ),
                        )
                    })?;
                return Ok(Some((fingerprint, number + 1)));
            }
        }
        Ok(None)
    }

    /// Pin `fingerprint` for `server` (appended).
    pub fn add(&self, server: &str, fingerprint: &Fingerprint) -> io::Result<()> {
        let fail = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("cannot write {}: {e}", self.path.display()),
            )
        };
        if let Some(dir) = self.path.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(fail)?;
        }
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(fail)?;
        writeln!(file, "{server} {fingerprint}").map_err(fail)
    }
}

/// How a client decides the server is the one it means.
#[derive(Clone, Debug)]
pub enum ServerTrust {
    /// Exactly this certificate fingerprint (`--server-fingerprint`).
    Fingerprint(Fingerprint),
    /// The fingerprint pinned in `known_servers`, trusting and pinning it
    /// on first use.
    KnownServers(KnownServers),
    /// Certificates signed by these CAs for the server's host name
    /// (`--ca FILE`).
    Ca(Arc<RootCertStore>),
}

impl ServerTrust {
    /// CA certificates from a PEM file.
    pub fn ca_file(path: &Path) -> io::Result<Self> {
        let text = fs::read(path).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot read {}: {e}", path.display()))
        })?;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&text) {
            let cert = cert.map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: not a PEM certificate: {e}", path.display()),
                )
            })?;
            roots.add(cert).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: unusable CA certificate: {e}", path.display()),
                )
            })?;
        }
        if roots.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: no certificate in it", path.display()),
            ));
        }
        Ok(Self::Ca(Arc::new(roots)))
    }
}

/// Why the server's identity was not accepted.
#[derive(Debug)]
#[non_exhaustive]
pub enum TrustError {
    /// The server presented another certificate than the one pinned in
    /// `known_servers`.
    Changed {
        /// The server, as pinned.
        server: String,
        /// What it presented.
        presented: Fingerprint,
        /// What was pinned.
        pinned: Fingerprint,
        /// The known servers file.
        file: PathBuf,
        /// The line pinning it.
        line: usize,
    },
    /// The server presented another certificate than
    /// `--server-fingerprint`.
    Mismatch {
        /// What it presented.
        presented: Fingerprint,
        /// What was asked for.
        expected: Fingerprint,
    },
}

impl fmt::Display for TrustError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Changed {
                server,
                presented,
                pinned,
                file,
                line,
            } => write!(
                f,
                "the identity of the rdio server at {server} has CHANGED: it presented {presented}, \
                 but {} line {line} pins {pinned}; someone may be intercepting the connection. \
                 If the server's identity was replaced on purpose, remove line {line} from {}",
                file.display(),
                file.display()
            ),
            Self::Mismatch {
                presented,
                expected,
            } => write!(
                f,
                "the rdio server presented {presented}, not the expected --server-fingerprint \
                 {expected}"
            ),
        }
    }
}

impl std::error::Error for TrustError {}

/// A verifier accepting one certificate by fingerprint (or, with no
/// expectation, any, for trust on first use), and recording what it saw.
/// The handshake's signature is still verified with the certificate's key,
/// so the peer holds the private key of what it presented.
#[derive(Debug)]
pub(crate) struct PinVerifier {
    expected: Option<Fingerprint>,
    seen: Mutex<Option<Fingerprint>>,
    provider: Arc<CryptoProvider>,
}

impl PinVerifier {
    pub(crate) fn new(expected: Option<Fingerprint>, provider: Arc<CryptoProvider>) -> Self {
        Self {
            expected,
            seen: Mutex::new(None),
            provider,
        }
    }

    /// The fingerprint the server presented, once it has.
    pub(crate) fn seen(&self) -> Option<Fingerprint> {
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = Fingerprint::of(end_entity);
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = Some(presented);
        match self.expected {
            Some(expected) if expected != presented => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            )),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // The configuration allows TLS 1.3 only.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_in_both_forms() {
        let fingerprint = Fingerprint::of(b"certificate");
        let text = fingerprint.to_string();
        assert!(
            text.starts_with("SHA256:") && text.len() == 7 + 64,
            "{text}"
        );
        assert_eq!(text.parse::<Fingerprint>(), Ok(fingerprint));
        assert_eq!(text[7..].parse::<Fingerprint>(), Ok(fingerprint));
        let colons: Vec<String> = fingerprint.0.iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(colons.join(":").parse::<Fingerprint>(), Ok(fingerprint));
        assert!("SHA256:abc".parse::<Fingerprint>().is_err());
    }

    #[test]
    fn known_servers_pin_per_server_and_name_their_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let known = KnownServers::new(dir.path().join("cfg/known_servers"));
        assert_eq!(known.lookup("127.0.0.1:1").expect("empty"), None);
        let (a, b) = (Fingerprint::of(b"a"), Fingerprint::of(b"b"));
        known.add("127.0.0.1:1", &a).expect("add");
        known.add("127.0.0.1:2", &b).expect("add");
        assert_eq!(known.lookup("127.0.0.1:1").expect("a"), Some((a, 1)));
        assert_eq!(known.lookup("127.0.0.1:2").expect("b"), Some((b, 2)));
        assert_eq!(known.lookup("127.0.0.1:3").expect("none"), None);
    }
}
