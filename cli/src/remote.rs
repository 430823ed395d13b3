//! `HOST[:PORT]:PATH` arguments of `get`, `put` and the remote file
//! operations (`ls`, `stat`, `rm`, `mkdir`, `mv`).

use std::fmt;
use std::str::FromStr;

/// The side-channel port `rdio serve` listens on, and clients reach, when
/// none is given.
pub const DEFAULT_PORT: u16 = 7472;

/// A file on a remote rdio server: the server's side-channel address and a
/// path relative to the root it serves.
///
/// Written `HOST:PORT:PATH`, with IPv6 hosts in brackets
/// (`[::1]:7472:data/file`), or `HOST:PATH` for the default port
/// [`DEFAULT_PORT`]. The port is the digits between the first two colons
/// after the host; everything after it is the path, which may itself
/// contain colons (a path whose first component is all digits and
/// followed by a colon needs the port written out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemotePath {
    /// Host name or address.
    pub host: String,
    /// Side-channel port.
    pub port: u16,
    /// Path relative to the server's root.
    pub path: String,
}

/// Why a remote path did not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemotePathError {
    input: String,
    why: &'static str,
}

impl fmt::Display for RemotePathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid remote path '{}': {} (expected HOST:PATH or HOST:PORT:PATH)",
            self.input, self.why
        )
    }
}

impl std::error::Error for RemotePathError {}

impl fmt::Display for RemotePath {
    /// The form it was given in: `HOST:PORT:PATH`, IPv6 hosts in brackets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}:{}", self.host, self.port, self.path)
        } else {
            write!(f, "{}:{}:{}", self.host, self.port, self.path)
        }
    }
}

impl FromStr for RemotePath {
    type Err = RemotePathError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |why| RemotePathError {
            input: input.to_owned(),
            why,
        };
        let (host, rest) = if let Some(bracketed) = input.strip_prefix('[') {
            let (host, rest) = bracketed
                .split_once(']')
                .ok_or_else(|| fail("unclosed '[' in the host"))?;
            (
                host,
                rest.strip_prefix(':')
                    .ok_or_else(|| fail("missing ':' after the host"))?,
            )
        } else {
            input
                .split_once(':')
                .ok_or_else(|| fail("missing ':' after the host"))?
        };
        if host.is_empty() {
            return Err(fail("empty host"));
        }
        let (port, path) = match rest.split_once(':') {
            Some((port, path)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
                let port = port
                    .parse::<u16>()
                    .ok()
                    .filter(|&port| port != 0)
                    .ok_or_else(|| fail("the port is not a number from 1 to 65535"))?;
                (port, path)
            }
            _ => (DEFAULT_PORT, rest),
        };
        if path.is_empty() {
            return Err(fail("empty path"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<(String, u16, String), String> {
        s.parse::<RemotePath>()
            .map(|r| (r.host, r.port, r.path))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn parses_hosts_ports_and_paths() {
        assert_eq!(
            parse("127.0.0.1:7472:data/file"),
            Ok(("127.0.0.1".into(), 7472, "data/file".into()))
        );
        assert_eq!(
            parse("server:1:a:b"),
            Ok(("server".into(), 1, "a:b".into()))
        );
        assert_eq!(parse("[::1]:7472:f"), Ok(("::1".into(), 7472, "f".into())));
        // Without a port: the default, and the rest is the path.
        assert_eq!(
            parse("server:data/f"),
            Ok(("server".into(), DEFAULT_PORT, "data/f".into()))
        );
        assert_eq!(
            parse("server:a:b"),
            Ok(("server".into(), DEFAULT_PORT, "a:b".into()))
        );
        assert_eq!(
            parse("[::1]:f"),
            Ok(("::1".into(), DEFAULT_PORT, "f".into()))
        );
    }

    #[test]
    fn the_port_defaults_to_7472() {
        assert_eq!(
            parse("server:data/file"),
            Ok(("server".into(), DEFAULT_PORT, "data/file".into()))
        );
        assert_eq!(
            parse("server:a:b"),
            Ok(("server".into(), 7472, "a:b".into()))
        );
        assert_eq!(parse("[::1]:f"), Ok(("::1".into(), 7472, "f".into())));
        // Digits without a colon after them are a path.
        assert_eq!(parse("host:123"), Ok(("host".into(), 7472, "123".into())));
    }

    #[test]
    fn displays_as_parsed() {
        for text in ["127.0.0.1:7472:data/file", "[::1]:9:a:b", "host:1:f"] {
            let remote: RemotePath = text.parse().expect("valid");
            assert_eq!(remote.to_string(), text);
        }
    }

    #[test]
    fn rejects_malformed_remote_paths() {
        for (input, why) in [
            ("file", "missing ':' after the host"),
            (":7472:f", "empty host"),
            ("host:0:f", "the port is not a number"),
            ("host:70000:f", "the port is not a number"),
            ("host:7472:", "empty path"),
            ("[::1:7472:f", "unclosed '['"),
            ("[::1]7472:f", "missing ':' after the host"),
        ] {
            let message = parse(input).unwrap_err();
            assert!(
                message.contains(why) && message.contains(input),
                "{input}: {message}"
            );
        }
    }
}
