//! Where a plugin listens: a network kind and an address.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

/// The network kinds of the handshake line's third field.
///
/// `unix` and `tcp` are the two that ship; any other name is a
/// [`Custom`](Self::Custom) network, served by a transport and dialled by a
/// connector the application supplies (see `rpcplugin_transport::Transport`).
/// Non-exhaustive, so a `match` outside this crate needs a `_` arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Network {
    /// A Unix domain socket (the default wherever it exists).
    Unix,
    /// TCP, on loopback unless configured otherwise.
    Tcp,
    /// A network of the application's own (`abstract`, `vsock`, `memory`, ...).
    Custom(NetworkName),
}

impl Network {
    /// The wire name: `"unix"`, `"tcp"`, or the custom network's name.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Unix => "unix",
            Self::Tcp => "tcp",
            Self::Custom(name) => name.as_str(),
        }
    }

    /// A custom network named `name` (see [`NetworkName`] for what a name may be).
    ///
    /// ```
    /// use rpcplugin_core::Network;
    /// let abstract_unix = Network::custom("abstract").unwrap();
    /// assert_eq!(abstract_unix.to_string(), "abstract");
    /// assert_eq!("abstract".parse::<Network>().unwrap(), abstract_unix);
    /// assert_eq!(Network::custom("unix").unwrap(), Network::Unix);
    /// assert!(Network::custom("no|pipes").is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// [`ParseNetworkError`] for a name that is not a token.
    pub fn custom(name: &str) -> Result<Self, ParseNetworkError> {
        name.parse()
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name of a custom network: 1 to [`NetworkName::MAX_LEN`] bytes of lowercase
/// ASCII letters, digits, `-`, `_` and `.`, starting with a letter, and neither
/// `unix` nor `tcp`.
///
/// Kept inline (no allocation) so that [`Network`] stays `Copy`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct NetworkName {
    len: u8,
    bytes: [u8; NetworkName::MAX_LEN],
}

impl NetworkName {
    /// The longest name, in bytes.
    pub const MAX_LEN: usize = 32;

    /// The name as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored (checked in `new`).
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }

    fn new(name: &str) -> Option<Self> {
        let valid = !name.is_empty()
            && name.len() <= Self::MAX_LEN
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
            });
        if !valid {
            return None;
        }
        let mut bytes = [0; Self::MAX_LEN];
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        Some(Self {
            len: u8::try_from(name.len()).ok()?,
            bytes,
        })
    }
}

impl fmt::Debug for NetworkName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for NetworkName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A network name that is not a token (see [`NetworkName`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid network {0:?}: expected \"unix\", \"tcp\" or a custom network name (lowercase letters, digits, '-', '_', '.'; at most 32 bytes)"
)]
pub struct ParseNetworkError(pub String);

impl FromStr for Network {
    type Err = ParseNetworkError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.trim().to_ascii_lowercase();
        match name.as_str() {
            "unix" => Ok(Self::Unix),
            "tcp" => Ok(Self::Tcp),
            other => NetworkName::new(other)
                .map(Self::Custom)
                .ok_or_else(|| ParseNetworkError(s.to_owned())),
        }
    }
}

/// A concrete place a plugin serves on.
///
/// Non-exhaustive, as [`Network`] is: each new network brings its kind of address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Endpoint {
    /// A Unix socket path.
    Unix(PathBuf),
    /// A TCP socket address.
    Tcp(SocketAddr),
    /// An address on a custom network: text only its transport and connector
    /// understand. Make one with [`Endpoint::custom`], which checks that it fits
    /// in a handshake line.
    Custom(NetworkName, String),
}

impl Endpoint {
    /// The network kind of this endpoint.
    pub fn network(&self) -> Network {
        match self {
            Self::Unix(_) => Network::Unix,
            Self::Tcp(_) => Network::Tcp,
            Self::Custom(name, _) => Network::Custom(*name),
        }
    }

    /// An address on a custom network. The address is opaque text, announced
    /// as it is: it must not be empty nor hold `|` or a line break (the handshake
    /// line's separators).
    ///
    /// ```
    /// use rpcplugin_core::{Endpoint, Network};
    /// let e = Endpoint::custom(Network::custom("abstract").unwrap(), "plugin-1f3a").unwrap();
    /// assert_eq!(e.to_string(), "plugin-1f3a");
    /// assert_eq!(e.network().as_str(), "abstract");
    /// ```
    ///
    /// # Errors
    ///
    /// [`BadEndpoint`] for `unix` or `tcp` (use [`Endpoint::Unix`] and
    /// [`Endpoint::Tcp`]) and for an address that does not fit a handshake line.
    pub fn custom(network: Network, address: impl Into<String>) -> Result<Self, BadEndpoint> {
        let address = address.into();
        let Network::Custom(name) = network else {
            return Err(BadEndpoint(format!(
                "{network} is a built-in network: use Endpoint::Unix or Endpoint::Tcp"
            )));
        };
        if address.trim().is_empty() || address.contains(['|', '\n', '\r']) {
            return Err(BadEndpoint(format!(
                "address {address:?} on network {name} is empty or holds '|' or a line break"
            )));
        }
        Ok(Self::Custom(name, address))
    }
}

/// Why [`Endpoint::custom`] refused an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadEndpoint(String);

impl fmt::Display for Endpoint {
    /// The address as the handshake line writes it: a path, `IP:PORT`, or a
    /// custom network's text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "{}", path.display()),
            Self::Tcp(addr) => write!(f, "{addr}"),
            Self::Custom(_, address) => f.write_str(address),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_names_round_trip() {
        for n in [
            Network::Unix,
            Network::Tcp,
            Network::custom("vsock").unwrap(),
        ] {
            assert_eq!(n.as_str().parse::<Network>().unwrap(), n);
        }
        assert_eq!(" TCP ".parse::<Network>().unwrap(), Network::Tcp);
        assert!(matches!("udp".parse::<Network>(), Ok(Network::Custom(_))));
        let long = "a".repeat(NetworkName::MAX_LEN + 1);
        for bad in ["", "1abc", "a|b", "a b", "é", long.as_str()] {
            assert!(bad.parse::<Network>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn endpoint_displays_as_handshake_address() {
        let e = Endpoint::Tcp("127.0.0.1:10000".parse().unwrap());
        assert_eq!(e.to_string(), "127.0.0.1:10000");
        assert_eq!(e.network(), Network::Tcp);
        assert_eq!(
            Endpoint::Unix("/tmp/p/plugin.sock".into()).to_string(),
            "/tmp/p/plugin.sock"
        );
    }

    #[test]
    fn custom_endpoints_refuse_what_a_line_cannot_carry() {
        let net = Network::custom("memory").unwrap();
        assert!(Endpoint::custom(net, "a|b").is_err());
        assert!(Endpoint::custom(net, "a\nb").is_err());
        assert!(Endpoint::custom(net, " ").is_err());
        assert!(Endpoint::custom(Network::Unix, "/x").is_err());
        assert_eq!(Endpoint::custom(net, "m-1").unwrap().network(), net);
    }
}
