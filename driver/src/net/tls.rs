//! TLS 1.3 on the side channel, and the refusals that come before it.
//!
//! A server runs either TLS (the default) or clear text (`--insecure`), and
//! a client must ask for the same: each side recognizes the other's first
//! bytes (a TLS record starts `0x16`, a pipe frame `RDIO`), so a mismatch
//! fails with a message saying which side runs what — never a silent
//! downgrade. Refusals before the handshake (busy, address not allowed,
//! clear text to a TLS server) are a clear-text [`PipeMessage::Refused`]
//! frame, which a TLS client recognizes in place of the server's hello.

use super::NetError;
use crate::access::trust::PinVerifier;
use crate::access::{
    ChannelBinding, Clients, Credential, EXPORTER_CLIENT_AUTH, EXPORTER_RDMA_AUTH, Fingerprint,
    KnownServers, ServerTrust, TrustError,
};
use rdio_core::wire::pipe::PIPE_MAGIC;
use rdio_core::wire::{PipeMessage, Status};
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, ServerConnection, StreamOwned};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// First byte of a TLS handshake record.
pub(crate) const TLS_HANDSHAKE: u8 = 0x16;

/// How a server guards its side channel.
#[derive(Clone)]
pub struct ServerSecurity {
    /// TLS 1.3 with this configuration, or `None` for a clear-text side
    /// channel (`--insecure`), which TLS clients are refused on.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The clients that may connect (every client authenticates, TLS or
    /// not: there is no anonymous mode).
    pub clients: Arc<Clients>,
    /// Peers allowed to connect (empty: any). Others are refused with
    /// `NotAllowed` before anything else.
    pub allow: Vec<IpNet>,
    /// How long a client has to finish the TLS handshake and, again, to
    /// authenticate (its side channel's read timeout, which an
    /// authenticated client's pipe then ignores: it may idle while the
    /// client does I/O).
    pub handshake_timeout: Duration,
}

impl fmt::Debug for ServerSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerSecurity")
            .field("tls", &self.tls.is_some())
            .field("clients", &self.clients)
            .field("allow", &self.allow)
            .finish_non_exhaustive()
    }
}

impl ServerSecurity {
    /// TLS with `config`, clients from `clients`, any peer.
    pub fn tls(config: Arc<rustls::ServerConfig>, clients: Arc<Clients>) -> Self {
        Self {
            tls: Some(config),
            clients,
            allow: Vec::new(),
            handshake_timeout: super::DEFAULT_PIPE_TIMEOUT,
        }
    }

    /// Clear text (`--insecure`), clients from `clients`, any peer.
    pub fn insecure(clients: Arc<Clients>) -> Self {
        Self {
            tls: None,
            clients,
            allow: Vec::new(),
            handshake_timeout: super::DEFAULT_PIPE_TIMEOUT,
        }
    }

    /// Whether `peer` may connect.
    pub fn allows(&self, peer: IpAddr) -> bool {
        self.allow.is_empty() || self.allow.iter().any(|net| net.contains(peer))
    }
}

/// An IP network, `ADDR/PREFIX` (a bare address is one host).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Whether `ip` is in the network (an IPv4-mapped IPv6 address counts
    /// as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for IpNet {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("invalid network '{text}': expected ADDRESS or ADDRESS/PREFIX");
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix.parse::<u8>().map_err(|_| bad())?,
            None => max,
        };
        if prefix > max {
            return Err(bad());
        }
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Told of a server trusted on first use: the server, its fingerprint, the
/// file it was pinned in.
pub type FirstUse = Arc<dyn Fn(&str, &Fingerprint, &std::path::Path) + Send + Sync>;

/// How a client guards its side channel.
#[derive(Clone)]
pub struct ClientSecurity {
    /// TLS, trusting the server as this says; `None` for a clear-text side
    /// channel (`--insecure`), which TLS servers refuse.
    pub tls: Option<ServerTrust>,
    /// Who the client is.
    pub credential: Credential,
    /// The server's name for a CA-signed certificate's check
    /// ([`ServerTrust::Ca`]); default: its IP address.
    pub server_name: Option<String>,
    /// Told when a server is trusted on first use and pinned: the server,
    /// its fingerprint and the file it was pinned in.
    pub on_first_use: Option<FirstUse>,
}

impl fmt::Debug for ClientSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSecurity")
            .field("tls", &self.tls)
            .field("credential", &self.credential)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// A client's side channel: TLS or clear text.
#[derive(Debug)]
pub enum PipeStream {
    /// Clear text (`--insecure`).
    Clear(TcpStream),
    /// TLS 1.3.
    Tls(Box<StreamOwned<ClientConnection, Sniff>>),
}

impl Read for PipeStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Clear(stream) => stream.read(buf),
            Self::Tls(stream) => stream.read(buf),
        }
    }
}

impl Write for PipeStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Clear(stream) => stream.write(buf),
            Self::Tls(stream) => stream.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Clear(stream) => stream.flush(),
            Self::Tls(stream) => stream.flush(),
        }
    }
}

impl Drop for PipeStream {
    /// End TLS in order (close_notify), so the server sees a clean close.
    fn drop(&mut self) {
        if let Self::Tls(stream) = self {
            stream.conn.send_close_notify();
            let _ = stream.conn.write_tls(&mut stream.sock);
        }
    }
}

/// A TCP stream that keeps the first bytes it read, so a failed handshake
/// can tell a clear-text refusal from garbage.
#[derive(Debug)]
pub struct Sniff {
    stream: TcpStream,
    first: Vec<u8>,
}

/// Room for a whole `Refused` frame.
const SNIFF_LEN: usize = 20;

impl Read for Sniff {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stream.read(buf)?;
        let room = SNIFF_LEN.saturating_sub(self.first.len()).min(n);
        self.first.extend_from_slice(&buf[..room]);
        Ok(n)
    }
}

impl Write for Sniff {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// What the client learned from its side channel's setup.
pub(crate) struct ClientChannel {
    pub(crate) stream: PipeStream,
    pub(crate) auth_binding: Option<ChannelBinding>,
    pub(crate) rdma_binding: Option<ChannelBinding>,
}

fn exporter(
    conn: &rustls::ConnectionCommon<impl Sized>,
    label: &[u8],
) -> Result<ChannelBinding, rustls::Error> {
    let mut out = [0u8; 32];
    conn.export_keying_material(&mut out, label, None)?;
    Ok(ChannelBinding(out))
}

/// The refusal a clear-text server sent in place of a TLS hello, if that is
/// what `first` holds.
fn sniffed_refusal(first: &[u8]) -> Option<Status> {
    if !first.starts_with(&PIPE_MAGIC) {
        return None;
    }
    match PipeMessage::parse(first) {
        Ok((PipeMessage::Refused { status }, _)) => Some(status),
        // A clear-text server that did not recognize TLS.
        _ => Some(Status::TlsNotOffered),
    }
}

/// The error of a handshake that failed because no rdio server is there:
/// no answer at all within the timeout, a connection closed without a
/// word, or an answer that is not TLS (a clear-text rdio server's answer
/// was taken by [`sniffed_refusal`] first).
fn not_rdio(sock: &Sniff, server: SocketAddr, error: &io::Error) -> Option<NetError> {
    if sock.first.is_empty() {
        return match error.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Some(NetError::TimedOut {
                addr: server,
                after: sock
                    .stream
                    .read_timeout()
                    .ok()
                    .flatten()
                    .unwrap_or_default(),
                waiting_for: "the TLS handshake",
            }),
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted => Some(NetError::NotRdio {
                addr: server,
                answer: "closed the connection without answering the TLS handshake".to_owned(),
            }),
            _ => None,
        };
    }
    (sock.first.first() != Some(&TLS_HANDSHAKE)).then(|| NetError::NotRdio {
        addr: server,
        answer: format!("answered {}", printable(&sock.first)),
    })
}

/// The first bytes of an answer, quoted, with anything unprintable
/// escaped: what a user can recognise (`"SSH-2.0-OpenSSH_9.2\r\n"`).
pub(crate) fn printable(bytes: &[u8]) -> String {
    format!("\"{}\"", bytes.escape_ascii())
}

/// Set up a client's side channel on `tcp` to `server` (`host` as the
/// user named it, for a CA-signed certificate's name check).
pub(crate) fn client_channel(
    tcp: TcpStream,
    server: SocketAddr,
    host: &str,
    security: &ClientSecurity,
) -> Result<ClientChannel, NetError> {
    let Some(trust) = &security.tls else {
        return Ok(ClientChannel {
            stream: PipeStream::Clear(tcp),
            auth_binding: None,
            rdma_binding: None,
        });
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| NetError::Tls(e.to_string()))?;
    let server_key = server.to_string();
    let mut pinned = None;
    let mut verifier = None;
    let (config, name) = match trust {
        ServerTrust::Ca(roots) => (
            builder
                .with_root_certificates(Arc::clone(roots))
                .with_no_client_auth(),
            ServerName::try_from(host.to_owned())
                .map_err(|_| NetError::Tls(format!("invalid server name '{host}'")))?,
        ),
        ServerTrust::Fingerprint(_) | ServerTrust::KnownServers(_) => {
            let expected = match trust {
                ServerTrust::Fingerprint(fingerprint) => Some(*fingerprint),
                ServerTrust::KnownServers(known) => {
                    pinned = known.lookup(&server_key).map_err(NetError::Os)?;
                    pinned.map(|(fingerprint, _)| fingerprint)
                }
                ServerTrust::Ca(_) => None,
            };
            let pin = Arc::new(PinVerifier::new(expected, provider));
            verifier = Some(Arc::clone(&pin));
            (
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(pin)
                    .with_no_client_auth(),
                ServerName::IpAddress(server.ip().into()),
            )
        }
    };
    let connection =
        ClientConnection::new(Arc::new(config), name).map_err(|e| NetError::Tls(e.to_string()))?;
    let mut stream = StreamOwned::new(
        connection,
        Sniff {
            stream: tcp,
            first: Vec::new(),
        },
    );
    let handshake = (|| {
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok::<(), io::Error>(())
    })();
    if let Err(error) = handshake {
        if let Some(status) = sniffed_refusal(&stream.sock.first) {
            return Err(NetError::Client(crate::client::ClientError::Refused(
                status,
            )));
        }
        let presented = verifier.as_ref().and_then(|pin| pin.seen());
        return Err(match (trust, presented, pinned) {
            (ServerTrust::KnownServers(known), Some(presented), Some((pinned, line)))
                if presented != pinned =>
            {
                NetError::Trust(TrustError::Changed {
                    server: server_key,
                    presented,
                    pinned,
                    file: known.path().to_owned(),
                    line,
                })
            }
            (ServerTrust::Fingerprint(expected), Some(presented), _) if presented != *expected => {
                NetError::Trust(TrustError::Mismatch {
                    presented,
                    expected: *expected,
                })
            }
            _ => not_rdio(&stream.sock, server, &error).unwrap_or_else(|| {
                NetError::Tls(format!("TLS handshake with {server} failed: {error}"))
            }),
        });
    }
    if let (ServerTrust::KnownServers(known), None, Some(presented)) =
        (trust, pinned, verifier.as_ref().and_then(|pin| pin.seen()))
    {
        known.add(&server_key, &presented).map_err(NetError::Os)?;
        if let Some(tell) = &security.on_first_use {
            tell(&server_key, &presented, known.path());
        }
    }
    let tls_error = |e: rustls::Error| NetError::Tls(e.to_string());
    let auth_binding = exporter(&stream.conn, EXPORTER_CLIENT_AUTH).map_err(tls_error)?;
    let rdma_binding = exporter(&stream.conn, EXPORTER_RDMA_AUTH).map_err(tls_error)?;
    Ok(ClientChannel {
        stream: PipeStream::Tls(Box::new(stream)),
        auth_binding: Some(auth_binding),
        rdma_binding: Some(rdma_binding),
    })
}

/// A server's side channel: TLS or clear text.
#[derive(Debug)]
pub(crate) enum ServerStream {
    Clear(TcpStream),
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl Read for ServerStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Clear(stream) => stream.read(buf),
            Self::Tls(stream) => stream.read(buf),
        }
    }
}

impl Write for ServerStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Clear(stream) => stream.write(buf),
            Self::Tls(stream) => stream.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Clear(stream) => stream.flush(),
            Self::Tls(stream) => stream.flush(),
        }
    }
}

/// The server ends its side of a TLS side channel with a `close_notify`
/// alert, so the client reads an orderly end of stream, not a truncation
/// (RFC 8446 §6.1); best effort, the TCP close follows either way.
impl Drop for ServerStream {
    fn drop(&mut self) {
        if let Self::Tls(stream) = self {
            stream.conn.send_close_notify();
            let _ = stream.conn.complete_io(&mut stream.sock);
        }
    }
}

/// Send a clear-text refusal (best effort: the pipe closes either way).
pub(crate) fn refuse(stream: &mut TcpStream, status: Status) {
    let mut frame = [0u8; SNIFF_LEN];
    if let Ok(len) = (PipeMessage::Refused { status }).emit(&mut frame) {
        let _ = stream.write_all(&frame[..len]);
        let _ = stream.flush();
    }
}

/// Why a server did not set up a side channel.
#[derive(Debug)]
pub(crate) enum Setup {
    /// Refused, with the status sent and why (for the log).
    Refused(Status, &'static str),
    /// The stream or the handshake failed.
    Failed(String),
}

/// Set up a server's side channel on `tcp` per `security`: the stream and
/// its bindings (client-auth, RDMA), or why not.
pub(crate) fn server_channel(
    mut tcp: TcpStream,
    security: &ServerSecurity,
) -> Result<(ServerStream, Option<ChannelBinding>, Option<ChannelBinding>), Setup> {
    let failed = |e: &dyn fmt::Display| Setup::Failed(e.to_string());
    tcp.set_read_timeout(Some(security.handshake_timeout))
        .map_err(|e| failed(&e))?;
    tcp.set_write_timeout(Some(security.handshake_timeout))
        .map_err(|e| failed(&e))?;
    let mut first = [0u8; 1];
    let peeked = loop {
        match tcp.peek(&mut first) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => break other.map_err(|e| failed(&e))?,
        }
    };
    if peeked == 0 {
        return Err(Setup::Failed("closed before its first message".into()));
    }
    let Some(config) = &security.tls else {
        if first[0] == TLS_HANDSHAKE {
            refuse(&mut tcp, Status::TlsNotOffered);
            return Err(Setup::Refused(
                Status::TlsNotOffered,
                "TLS client on a clear-text (--insecure) server",
            ));
        }
        return Ok((ServerStream::Clear(tcp), None, None));
    };
    if first[0] != TLS_HANDSHAKE {
        refuse(&mut tcp, Status::TlsRequired);
        return Err(Setup::Refused(
            Status::TlsRequired,
            "clear-text (--insecure) client on a TLS server",
        ));
    }
    let connection = ServerConnection::new(Arc::clone(config)).map_err(|e| failed(&e))?;
    let mut stream = StreamOwned::new(connection, tcp);
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .map_err(|e| Setup::Failed(format!("TLS handshake failed: {e}")))?;
    }
    let auth = exporter(&stream.conn, EXPORTER_CLIENT_AUTH).map_err(|e| failed(&e))?;
    let rdma = exporter(&stream.conn, EXPORTER_RDMA_AUTH).map_err(|e| failed(&e))?;
    Ok((ServerStream::Tls(Box::new(stream)), Some(auth), Some(rdma)))
}

/// Trust on first use in the default `known_servers`, with no message.
pub fn default_trust() -> io::Result<ServerTrust> {
    Ok(ServerTrust::KnownServers(KnownServers::default_file()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_contain_their_addresses() {
        let net: IpNet = "10.1.0.0/16".parse().expect("net");
        assert!(net.contains("10.1.200.3".parse().expect("ip")));
        assert!(!net.contains("10.2.0.1".parse().expect("ip")));
        assert!(net.contains("::ffff:10.1.0.9".parse().expect("mapped")));
        let host: IpNet = "127.0.0.1".parse().expect("host");
        assert!(host.contains("127.0.0.1".parse().expect("ip")));
        assert!(!host.contains("127.0.0.2".parse().expect("ip")));
        let any: IpNet = "0.0.0.0/0".parse().expect("any");
        assert!(any.contains("192.0.2.1".parse().expect("ip")));
        let v6: IpNet = "fd00::/8".parse().expect("v6");
        assert!(v6.contains("fd12::1".parse().expect("ip")));
        assert!(!v6.contains("10.0.0.1".parse().expect("ip")));
        for bad in ["10.0.0.0/33", "10.0.0/8", "::/129", "x", "10.0.0.0/"] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn clear_text_refusals_are_recognized_in_place_of_a_tls_hello() {
        let mut frame = [0u8; SNIFF_LEN];
        let len = (PipeMessage::Refused {
            status: Status::Busy,
        })
        .emit(&mut frame)
        .expect("fits");
        assert_eq!(sniffed_refusal(&frame[..len]), Some(Status::Busy));
        assert_eq!(
            sniffed_refusal(b"RDIO\x01\x02"),
            Some(Status::TlsNotOffered)
        );
        assert_eq!(sniffed_refusal(&[0x16, 3, 3]), None);
    }
}
