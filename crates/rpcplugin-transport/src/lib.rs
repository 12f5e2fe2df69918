//! Sockets for rpcplugin: a plugin binds, a host connects.
//!
//! rpcplugin runs plugins as child processes speaking HashiCorp go-plugin's gRPC
//! protocol. The plugin binds a Unix socket (or a loopback TCP port), announces it
//! in its handshake line, and serves gRPC there; the host connects. This crate owns
//! that socket layer and nothing above it:
//!
//! - the [`Transport`] trait, which binds a [`Listener`], with [`UnixTransport`]
//!   and [`TcpTransport`]; a custom transport's listener is [`Listener::new`]
//!   over an [`Accept`] yielding its own IO type;
//! - [`Connectors`], which dial an [`Endpoint`] and return a [`Stream`]:
//!   [`UnixConnector`] and [`TcpConnector`] built in (the free function
//!   [`connect`]), and any tower `Service<Endpoint>` for a custom [`Network`];
//! - [`choose`], which picks the network host and plugin both accept;
//! - [`MuxSession`], many streams over one connection (yamux, go-plugin's
//!   multiplexed broker);
//! - [`tune_allocator`], glibc's thresholds set for a process streaming messages;
//! - [`SocketDir`], the private directory sockets live in, and the permissions,
//!   port ranges and clean-up the protocol expects (`PLUGIN_UNIX_SOCKET_DIR`,
//!   `PLUGIN_UNIX_SOCKET_GROUP`, `PLUGIN_MIN_PORT`, `PLUGIN_MAX_PORT`).
//!
//! It reads no environment variables (besides `TMPDIR`, through
//! [`std::env::temp_dir`]): the caller passes configuration in, and errors name the
//! variables a user would change.
//!
//! Streams are bytes: [`Stream::accept_tls`] and [`Stream::connect_tls`] run TLS over
//! any of them with rustls configurations the caller builds (rpcplugin-crypto makes
//! them), and [`TlsFailure`] says which side refused what. HTTP/2 is layered on top
//! by the server and client crates.
//!
//! # Example
//!
//! ```
//! use rpcplugin_transport::{connect, Endpoint, Transport, UnixTransport};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let dir = tempfile::tempdir()?;
//!     let listener = UnixTransport::new().dir(dir.path()).bind().await?;
//!     let Endpoint::Unix(path) = listener.endpoint().clone() else { unreachable!() };
//!     assert!(path.exists());
//!
//!     let mut client = connect(listener.endpoint()).await?;
//!     let mut server = listener.accept().await?;
//!     client.write_all(b"ping").await?;
//!     let mut buf = [0; 4];
//!     server.read_exact(&mut buf).await?;
//!     assert_eq!(&buf, b"ping");
//!
//!     // The listener owns its socket file: dropping it removes the file.
//!     drop(listener);
//!     assert!(!path.exists());
//!     Ok(())
//! }
//! ```
//!
//! # A custom transport
//!
//! A transport is two halves: the plugin's [`Transport`], which binds a
//! [`Listener`] made with [`Listener::new`] over an [`Accept`] of its own IO type,
//! and the host's connector, any tower `Service<Endpoint>`, registered for the
//! network in [`Connectors`] (the builders' `.connector(network, ..)`). Here, Linux
//! abstract Unix sockets, which leave no file behind:
//!
//! ```
//! use std::os::linux::net::SocketAddrExt as _;
//! use std::os::unix::net::SocketAddr;
//! use std::{future::Future, io, pin::Pin, task::{Context, Poll}};
//! use rpcplugin_transport::{Accept, Code, Connectors, Endpoint, Error, Listener, Network, Transport};
//! use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
//!
//! fn abstract_net() -> Network {
//!     Network::custom("abstract").unwrap()
//! }
//!
//! /// Binds the abstract socket `name`.
//! #[derive(Debug)]
//! struct AbstractTransport { name: String }
//!
//! struct AbstractAccept(tokio::net::UnixListener);
//!
//! impl Accept for AbstractAccept {
//!     type Io = tokio::net::UnixStream;
//!     fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<Self::Io>> {
//!         // Abstract sockets have no permissions: a real transport checks the
//!         // peer's uid here (`stream.peer_cred()`) and drops strangers.
//!         self.0.poll_accept(cx).map_ok(|(stream, _)| stream)
//!     }
//! }
//!
//! impl Transport for AbstractTransport {
//!     fn network(&self) -> Network {
//!         abstract_net()
//!     }
//!     fn bind(&self) -> Pin<Box<dyn Future<Output = rpcplugin_transport::Result<Listener>> + Send + '_>> {
//!         Box::pin(async move {
//!             let bind = || {
//!                 let addr = SocketAddr::from_abstract_name(self.name.as_bytes())?;
//!                 let listener = std::os::unix::net::UnixListener::bind_addr(&addr)?;
//!                 listener.set_nonblocking(true)?;
//!                 tokio::net::UnixListener::from_std(listener)
//!             };
//!             let listener = bind().map_err(|e| {
//!                 Error::new(Code::TransportBind, "cannot bind an abstract socket").with_source(e)
//!             })?;
//!             let endpoint = Endpoint::custom(abstract_net(), self.name.clone())
//!                 .map_err(|e| Error::new(Code::TransportBadEndpoint, e.to_string()))?;
//!             Ok(Listener::new(endpoint, AbstractAccept(listener)))
//!         })
//!     }
//! }
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let transport = AbstractTransport { name: format!("rpcplugin-doc-{}", std::process::id()) };
//!     let listener = transport.bind().await?;
//!     assert_eq!(listener.endpoint().network(), abstract_net());
//!
//!     // The host's half. (A connect to a Unix socket returns at once unless the
//!     // listener's backlog is full; a real connector does it off the runtime.)
//!     let connectors = Connectors::new().with(
//!         abstract_net(),
//!         tower::service_fn(|endpoint: Endpoint| async move {
//!             let addr = SocketAddr::from_abstract_name(endpoint.to_string().as_bytes())?;
//!             let stream = std::os::unix::net::UnixStream::connect_addr(&addr)?;
//!             stream.set_nonblocking(true)?;
//!             tokio::net::UnixStream::from_std(stream)
//!         }),
//!     );
//!     let mut client = connectors.connect(listener.endpoint()).await?;
//!     let mut server = listener.accept().await?;
//!     assert_eq!(server.network(), abstract_net());
//!     client.write_all(b"ping").await?;
//!     let mut buf = [0; 4];
//!     server.read_exact(&mut buf).await?;
//!     assert_eq!(&buf, b"ping");
//!     Ok(())
//! }
//! ```
//!
//! The plugin hands its transport to `plugin_server().transport(..)`; the host its
//! connector to `plugin_client(..).connector(network, ..)`. TLS and the broker work
//! over it as over a Unix socket.
//!
//! # Feature flags
//!
//! None. Unix only.

mod allocator;
mod connector;
mod listener;
mod mux;
mod socket_dir;
mod stream;
mod tcp;
mod tls;
mod unix;

use std::fmt;
use std::future::Future;
use std::pin::Pin;

pub use allocator::{MMAP_THRESHOLD, TRIM_THRESHOLD, tune_allocator};
pub use connector::{Connectors, TcpConnector, UnixConnector};
pub use listener::{Accept, Listener};
pub use mux::{MuxIncoming, MuxRole, MuxRouter, MuxSession, MuxedStream};
pub use rpcplugin_core::{Code, Endpoint, Error, ErrorKind, Network, NetworkName, Result};
/// The rustls crate this transport runs TLS with (same version as its configs).
pub use rustls;
pub use socket_dir::{SocketDir, remove_stale_socket};
pub use stream::{CustomStream, Io, Stream, connect};
pub use tcp::TcpTransport;
pub use tls::{DEFAULT_TLS_HANDSHAKE_TIMEOUT, TLS_CONFIRM_WAIT, TlsFailure, TlsStream};
pub use unix::{MAX_UNIX_PATH, UnixTransport};

/// Binds listeners for one network: the plugin side of a transport.
///
/// Tiny and object-safe so a server can hold `Box<dyn Transport>` chosen at run
/// time. [`UnixTransport`] and [`TcpTransport`] are the two that ship; an
/// application adds its own (an abstract Unix socket, a vsock, a pre-opened
/// socket, an in-memory pipe) by returning [`Listener::new`] over an [`Accept`]
/// from `bind`, naming a [`Network::custom`] network, and handing it to the
/// plugin server builder's `.transport(..)`. The host dials it with a connector
/// (any tower `Service<Endpoint>`) given to its builder's `.connector(..)`
/// ([`Connectors`]). The [crate docs](crate#a-custom-transport) have a short one;
/// `examples/abstract_socket.rs` in the rpcplugin repository is a whole one, with
/// a host, a plugin and the broker.
pub trait Transport: fmt::Debug + Send + Sync {
    /// The network this transport binds, as announced in the handshake line.
    fn network(&self) -> Network;

    /// Binds a new listener.
    ///
    /// Boxed rather than `async fn` so the trait stays usable as `dyn Transport`.
    ///
    /// # Errors
    ///
    /// A [`Transport`](ErrorKind::Transport) error when the socket cannot be bound,
    /// a [`Config`](ErrorKind::Config) error when the transport's settings are
    /// contradictory; both with a hint.
    fn bind(&self) -> Pin<Box<dyn Future<Output = Result<Listener>> + Send + '_>>;
}

/// Picks the network to use: the first of the plugin's preferences that the host
/// accepts.
///
/// The plugin's order wins because the plugin binds; the host only has to be able
/// to dial it.
///
/// ```
/// use rpcplugin_transport::{choose, Network};
///
/// let n = choose(&[Network::Unix, Network::Tcp], &[Network::Tcp]).unwrap();
/// assert_eq!(n, Network::Tcp);
/// ```
///
/// # Errors
///
/// `transport.no_common_network` ([`Config`](ErrorKind::Config)) naming both lists,
/// when they share no network.
pub fn choose(plugin_prefers: &[Network], host_accepts: &[Network]) -> Result<Network> {
    plugin_prefers
        .iter()
        .copied()
        .find(|n| host_accepts.contains(n))
        .ok_or_else(|| {
            Error::new(
                Code::TransportNoCommonNetwork,
                format!(
                    "no network in common: the plugin offers [{}], the host accepts [{}]",
                    list(plugin_prefers),
                    list(host_accepts)
                ),
            )
            .with_hint(
                "configure the plugin's transports (PLUGIN_SERVER_TRANSPORTS) and the host's \
                 (PLUGIN_CLIENT_TRANSPORTS) to share at least one of unix, tcp",
            )
        })
}

fn list(networks: &[Network]) -> String {
    networks
        .iter()
        .map(|n| n.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    use Network::{Tcp, Unix};

    #[test]
    fn choose_follows_the_plugins_order() {
        let table: &[(&[Network], &[Network], Option<Network>)] = &[
            (&[Unix, Tcp], &[Unix, Tcp], Some(Unix)),
            (&[Tcp, Unix], &[Unix, Tcp], Some(Tcp)),
            (&[Unix, Tcp], &[Tcp], Some(Tcp)),
            (&[Unix], &[Tcp, Unix], Some(Unix)),
            (&[Tcp], &[Tcp], Some(Tcp)),
            (&[Unix], &[Tcp], None),
            (&[], &[Unix, Tcp], None),
            (&[Unix, Tcp], &[], None),
        ];
        for (plugin, host, want) in table {
            let got = choose(plugin, host).ok();
            assert_eq!(got, *want, "plugin {plugin:?}, host {host:?}");
        }
    }

    #[test]
    fn choose_failure_names_both_lists() {
        let err = choose(&[Unix], &[Tcp]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert_eq!(err.code(), Code::TransportNoCommonNetwork);
        assert_eq!(
            err.to_string(),
            "no network in common: the plugin offers [unix], the host accepts [tcp]"
        );
        assert!(err.hint().is_some());
    }

    #[test]
    fn transport_is_object_safe() {
        let transports: Vec<Box<dyn Transport>> = vec![
            Box::new(UnixTransport::new()),
            Box::new(TcpTransport::new()),
        ];
        let networks: Vec<_> = transports.iter().map(|t| t.network()).collect();
        assert_eq!(networks, [Unix, Tcp]);
    }
}
