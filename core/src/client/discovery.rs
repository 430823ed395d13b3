//! The client's side of discovery (claim 8): build the negotiate request from
//! the server request resume key, and judge the negotiate response — which
//! provider to connect over, where, with which key — or say precisely why
//! RDMA cannot be used.

use super::ClientConfig;
use crate::wire::{
    AuthKey, Capabilities, MAX_ENDPOINT_LEN, NegotiateRequest, NegotiateResponse, ProviderList,
    ProviderName, ResumeKey, Status,
};
use core::fmt;

/// The outcome of a successful negotiation: everything needed to connect
/// and authenticate the RDMA channel.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Negotiated {
    /// The provider to connect over: the server's most preferred among the
    /// common ones that the client has.
    pub provider: ProviderName,
    /// All common providers, in the server's order (fallbacks).
    pub common: ProviderList,
    /// Where the server's RDMA endpoint listens.
    pub endpoint: heapless::Vec<u8, MAX_ENDPOINT_LEN>,
    /// The key for the auth request (claim 13).
    pub auth_key: AuthKey,
    /// Protocol version.
    pub version: u16,
    /// Initial credit level.
    pub credits: u16,
    /// Largest message either side sends.
    pub max_send_size: u32,
    /// Largest read or write.
    pub max_io_size: u32,
    /// The extensions in use: what the server granted of what the client
    /// offered.
    pub capabilities: Capabilities,
}

/// Why discovery did not produce an RDMA channel. Each variant says enough
/// for a driver to tell its user why RDMA is not used.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
// Both provider lists are kept so the error can say what each side has; the
// core has no allocator to box them, and discovery happens once.
#[allow(clippy::large_enum_variant)]
pub enum DiscoveryError {
    /// Client and server share no provider.
    NoCommonProvider {
        /// What the server offers.
        server: ProviderList,
        /// What the client has.
        client: ProviderList,
    },
    /// Client and server share no protocol version.
    VersionMismatch {
        /// The server's version (if it said).
        server: u16,
    },
    /// The server did not recognise the server request resume key.
    UnknownResumeKey,
    /// The server refused with another status.
    Refused(Status),
    /// The response contradicts the request (limits or credits out of range,
    /// a provider the client never offered).
    BadResponse(&'static str),
}

impl fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoCommonProvider { server, client } => {
                f.write_str("no common RDMA provider: server offers [")?;
                write_list(f, server)?;
                f.write_str("], client has [")?;
                write_list(f, client)?;
                f.write_str("]")
            }
            Self::VersionMismatch { server } => {
                write!(f, "no common protocol version (server speaks {server})")
            }
            Self::UnknownResumeKey => f.write_str("server did not recognise the resume key"),
            Self::Refused(status) => write!(f, "server refused negotiation: {status}"),
            Self::BadResponse(what) => write!(f, "invalid negotiate response: {what}"),
        }
    }
}

fn write_list(f: &mut fmt::Formatter<'_>, list: &ProviderList) -> fmt::Result {
    for (i, p) in list.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        f.write_str(p.as_str())?;
    }
    Ok(())
}

impl core::error::Error for DiscoveryError {}

/// The negotiate request for `config`, presenting the server request resume
/// key obtained on the pipe (claims 8, 23).
pub fn negotiate_request(config: &ClientConfig, server_key: ResumeKey) -> NegotiateRequest {
    NegotiateRequest {
        server_key,
        min_version: config.min_version,
        max_version: config.max_version,
        credits_requested: config.max_credits,
        max_send_size: config.max_send_size,
        max_io_size: config.max_io_size,
        providers: config.providers.clone(),
        capabilities: config.capabilities,
    }
}

/// Judge the server's negotiate response.
#[allow(clippy::result_large_err)] // see DiscoveryError
pub fn negotiated(
    config: &ClientConfig,
    response: &NegotiateResponse<'_>,
) -> Result<Negotiated, DiscoveryError> {
    match response.status {
        Status::Success => {}
        Status::NoCommonProvider => {
            return Err(DiscoveryError::NoCommonProvider {
                server: response.providers.clone(),
                client: config.providers.clone(),
            });
        }
        Status::VersionMismatch => {
            return Err(DiscoveryError::VersionMismatch {
                server: response.version,
            });
        }
        Status::UnknownResumeKey => return Err(DiscoveryError::UnknownResumeKey),
        other => return Err(DiscoveryError::Refused(other)),
    }
    if !(config.min_version..=config.max_version).contains(&response.version) {
        return Err(DiscoveryError::VersionMismatch {
            server: response.version,
        });
    }
    if response.credits == 0 || response.credits > config.max_credits {
        return Err(DiscoveryError::BadResponse("initial credits out of range"));
    }
    if response.max_send_size > config.max_send_size || response.max_io_size > config.max_io_size {
        return Err(DiscoveryError::BadResponse("limits exceed the client's"));
    }
    if response.max_send_size < crate::wire::MIN_SEND_SIZE {
        return Err(DiscoveryError::BadResponse(
            "send size below the protocol minimum",
        ));
    }
    if response
        .providers
        .iter()
        .any(|p| !config.providers.contains(p))
    {
        return Err(DiscoveryError::BadResponse(
            "provider the client never offered",
        ));
    }
    let provider = *response
        .providers
        .first()
        .ok_or(DiscoveryError::BadResponse("empty provider list"))?;
    let endpoint = heapless::Vec::from_slice(response.endpoint)
        .map_err(|_| DiscoveryError::BadResponse("endpoint too long"))?;
    Ok(Negotiated {
        provider,
        common: response.providers.clone(),
        endpoint,
        auth_key: response.auth_key,
        version: response.version,
        credits: response.credits,
        max_send_size: response.max_send_size,
        max_io_size: response.max_io_size,
        // A bit the client never offered is not in use, whatever the
        // server says.
        capabilities: response.capabilities.intersection(config.capabilities),
    })
}
