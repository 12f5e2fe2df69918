//! go-plugin's `plugin.GRPCBroker`, written once for both of its roles.
//!
//! The broker lets either side of a plugin connection serve extra gRPC servers to
//! the other under numeric ids, so that a plugin can call back into its host while
//! serving the host's request (go-plugin's bidirectional plugins: Terraform, Vault
//! and Packer rely on it). The protocol has one broker with two roles: the host and
//! the plugin each run one, the plugin serves the `StartStream` stream of
//! `ConnInfo` messages and the host calls it. Everything else is the same on both
//! sides, and lives here, with a [`Role`] saying which side this is (as h2 writes
//! one connection for its client and server):
//!
//! - [`GrpcBroker`], what applications use: [`next_id`](GrpcBroker::next_id),
//!   [`accept_and_serve`](GrpcBroker::accept_and_serve) (returns a
//!   [`BrokeredServer`]) and [`dial`](GrpcBroker::dial);
//! - [`Driver`], what its owner keeps (rpcplugin-server for the plugin,
//!   rpcplugin-client for the host): it configures the broker ([`Config`]), carries
//!   its stream with the peer ([`Driver::pump`]) and closes it;
//! - the routing of announcements and knocks to the dials waiting for them, one
//!   listener and TLS per brokered connection over sockets (go-plugin 1.0.1), or
//!   yamux streams of the one connection when multiplexed (go-plugin 1.6's
//!   `PLUGIN_MULTIPLEX_GRPC`);
//! - [`Incoming`], accepted connections with their TLS handshakes done, as tonic
//!   serves them: brokered servers and the plugin's main server use it.
//!
//! It sits below rpcplugin-server and rpcplugin-client, which re-export
//! [`GrpcBroker`], [`BrokeredServer`] and [`DEFAULT_BROKER_DIAL_TIMEOUT`];
//! applications reach it through them and never need this crate by name.
//!
//! # Example
//!
//! A host and a plugin broker in one process, their stream carried by two
//! channels instead of gRPC: the plugin serves under an id, the host dials it.
//!
//! ```
//! use std::sync::Arc;
//! use rpcplugin_broker::{Config, Driver, Role};
//! use rpcplugin_proto::plugin::Empty;
//! use rpcplugin_proto::plugin::grpc_controller_client::GrpcControllerClient;
//! use rpcplugin_transport::UnixTransport;
//! use tokio::sync::mpsc;
//! use tokio_stream::StreamExt as _;
//! use tokio_stream::wrappers::ReceiverStream;
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let host = Driver::new(Role::Host);
//!     let plugin = Driver::new(Role::Plugin);
//!     // Each side binds its brokered servers in a private socket directory.
//!     host.set_ready(Config::new(Arc::new(UnixTransport::new())));
//!     plugin.set_ready(Config::new(Arc::new(UnixTransport::new())));
//!
//!     // The StartStream call, as two channels.
//!     let (to_plugin, from_host) = mpsc::channel(16);
//!     let (to_host, from_plugin) = mpsc::channel(16);
//!     tokio::spawn(plugin.pump(ReceiverStream::new(from_host).map(Ok), to_host));
//!     tokio::spawn(host.pump(ReceiverStream::new(from_plugin).map(Ok), to_plugin));
//!
//!     // The plugin serves (here: no service at all) under an id it tells the host.
//!     let id = plugin.broker().next_id();
//!     let server = plugin
//!         .broker()
//!         .accept_and_serve(id, tonic::service::Routes::default())
//!         .await?;
//!
//!     // The host dials the id and calls; an empty server answers Unimplemented.
//!     let channel = host.broker().dial(id).await?;
//!     let status = GrpcControllerClient::new(channel)
//!         .shutdown(Empty {})
//!         .await
//!         .unwrap_err();
//!     assert_eq!(status.code(), tonic::Code::Unimplemented);
//!
//!     server.stop().await;
//!     host.close();
//!     plugin.close();
//!     Ok(())
//! }
//! ```
//!
//! # Feature flags
//!
//! None. Unix only.

mod broker;
mod config;
mod dial;
mod incoming;
mod pump;
mod routing;
mod serve;

use std::fmt;
use std::time::Duration;

pub use broker::{Driver, GrpcBroker};
pub use config::Config;
pub use incoming::{Connection, Incoming};
pub use serve::BrokeredServer;

/// How long [`GrpcBroker::dial`] waits for the peer to announce an id, as go-plugin.
pub const DEFAULT_BROKER_DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// Which side of the plugin connection a broker serves. The protocol is the same
/// for both; the role decides who serves the broker stream, what happens when it
/// ends, and whom messages and errors name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The application that starts plugins and calls `StartStream` on them.
    Host,
    /// The plugin process, which serves `StartStream` to its host.
    Plugin,
}

impl Role {
    /// The other side: the plugin for a host, the host for a plugin.
    pub fn peer(self) -> Role {
        match self {
            Role::Host => Role::Plugin,
            Role::Plugin => Role::Host,
        }
    }

    /// `"host"` or `"plugin"`, as messages name the side.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Host => "host",
            Role::Plugin => "plugin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
