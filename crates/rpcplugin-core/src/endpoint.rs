//! Where a plugin listens: a network kind and an address.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

/// The network kinds of the handshake line's third field.
///
/// Non-exhaustive: another transport (a vsock, a named pipe) would be a new variant,
/// so a `match` outside this crate needs a `_` arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Network {
    /// A Unix domain socket (the default wherever it exists).
    Unix,
    /// TCP, on loopback unless configured otherwise.
    Tcp,
}

impl Network {
    /// The wire name: `"unix"` or `"tcp"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unix => "unix",
            Self::Tcp => "tcp",
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A network name that is neither `unix` nor `tcp`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown network {0:?}, expected \"unix\" or \"tcp\"")]
pub struct ParseNetworkError(pub String);

impl FromStr for Network {
    type Err = ParseNetworkError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "unix" => Ok(Self::Unix),
            "tcp" => Ok(Self::Tcp),
            _ => Err(ParseNetworkError(s.to_owned())),
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
}

impl Endpoint {
    /// The network kind of this endpoint.
    pub fn network(&self) -> Network {
        match self {
            Self::Unix(_) => Network::Unix,
            Self::Tcp(_) => Network::Tcp,
        }
    }
}

impl fmt::Display for Endpoint {
    /// The address as the handshake line writes it: a path, or `IP:PORT`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "{}", path.display()),
            Self::Tcp(addr) => write!(f, "{addr}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_names_round_trip() {
        for n in [Network::Unix, Network::Tcp] {
            assert_eq!(n.as_str().parse::<Network>().unwrap(), n);
        }
        assert_eq!(" TCP ".parse::<Network>().unwrap(), Network::Tcp);
        assert!("udp".parse::<Network>().is_err());
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
}
