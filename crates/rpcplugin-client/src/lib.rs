//! The host side of rpcplugin: launch a plugin process, handshake, and get a tonic
//! [`Channel`] for your generated clients.
//!
//! Works with any go-plugin compatible plugin: rpcplugin's own, go-plugin's (Go) and
//! pyvider-rpcplugin's (Python).
//!
//! ```no_run
//! use rpcplugin_client::{PluginClient, new_client};
//! use rpcplugin_proto::examples::kv::{kv_client::KvClient, GetRequest};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let plugin = PluginClient::builder("./kv_plugin")
//!     .handshake("BASIC_PLUGIN", "hello")
//!     .protocol_versions([1])
//!     .start()
//!     .await?;
//! // KvClient::new(plugin.channel()), with the host's message limits (below).
//! let mut kv = new_client!(KvClient, plugin);
//! let value = kv.get(GetRequest { key: "hello".into() }).await?.into_inner().value;
//! println!("{}", String::from_utf8_lossy(&value));
//! plugin.stop().await?;
//! # Ok(()) }
//! ```
//!
//! What [`Builder::start`] does: makes a private socket directory (0700) for the
//! plugin, spawns the command in its own process group with a parent-death signal
//! (so the plugin never outlives the host), passes the go-plugin environment
//! (cookie, `PLUGIN_PROTOCOL_VERSIONS`, `PLUGIN_UNIX_SOCKET_DIR`), reads the
//! handshake line under a timeout, checks it, connects (`:authority` is
//! `localhost`, which h2 requires over Unix sockets) and checks health.
//! Every failure is a [`Error`] whose hint quotes what the plugin printed.
//! Then it opens `plugin.GRPCStdio` and forwards what the plugin prints after the
//! handshake into `tracing`, or to your [`StdioSink`] ([`Builder::stdio_sink`]);
//! the plugin's stderr is forwarded into `tracing` as hclog-style log lines.
//!
//! [`PluginClient::stop`] asks the plugin to shut down, waits a grace period, then
//! sends SIGTERM, then SIGKILL, reaps the process and removes the socket directory.
//! Dropping a client that was not stopped sends SIGTERM at once and SIGKILL half a
//! second later if the plugin is still there (from a reaper thread, so `drop` never
//! blocks).
//!
//! # Sandboxed plugins (Linux)
//!
//! [`Builder::sandbox`] (or `PLUGIN_SANDBOX=on`) confines the plugin before it
//! runs: Landlock rules on files and TCP ports, scoped signals and abstract
//! sockets, `no_new_privs` and a seccomp deny-list. A [`Sandbox`] that names
//! nothing still lets a plugin start, serve and stop; what it may read, write,
//! run or dial beyond that is the policy's. [`PluginClient::sandbox`] says what
//! was applied. docs/security.md has what each layer stops and what it does not.
//!
//! # Message size limits
//!
//! tonic keeps message limits in each generated client, and its default decodes
//! 4 MiB at most, while plugins may send 256 MiB (rpcplugin, terraform-plugin-go).
//! Make clients with [`new_client!`] to get the host's limits:
//! [`DEFAULT_HOST_MAX_MESSAGE_SIZE`] (`i32::MAX`, what go-plugin's hosts allow) both
//! ways, or `PLUGIN_GRPC_MAX_RECEIVE_MESSAGE_SIZE` / `PLUGIN_GRPC_MAX_SEND_MESSAGE_SIZE`,
//! or [`Builder::max_message_sizes`]. On a channel from
//! [`GrpcBroker::dial`], set them on the client yourself:
//! `.max_decoding_message_size(plugin.max_receive_message_size())`.
//!
//! # Feature flags
//!
//! - `otel` (off): `PluginClient::traced_channel` and `TraceContext` send the
//!   current span's W3C trace context (`traceparent`, `tracestate`) with each call,
//!   read through `tracing-opentelemetry`, so that one trace covers host and plugin.

mod backoff;
mod broker;
mod builder;
mod connect;
mod handshake;
mod launch;
mod limits;
pub mod logline;
mod metrics;
mod output;
mod plugin_client;
mod reattach;
mod registry;
mod sandbox;
mod spawned;
mod start;
mod stdio;
mod stop;
mod supervisor;
mod target;
mod tls;
#[cfg(feature = "otel")]
mod trace;

pub use backoff::Backoff;
pub use broker::{BrokeredServer, DEFAULT_BROKER_DIAL_TIMEOUT, GrpcBroker};
pub use builder::Builder;
pub use launch::ResourceLimits;
pub use plugin_client::{ClientStatus, PluginClient, StartTimings};
pub use reattach::AttachBuilder;
pub use registry::{cleanup_plugins, kill_all_plugins, running_plugins};
pub use rpcplugin_config::SandboxMode;
pub use rpcplugin_config::{DEFAULT_HOST_MAX_MESSAGE_SIZE, Environment, Settings};
pub use rpcplugin_core::{Endpoint, Error, ErrorKind, Result};
pub use rpcplugin_crypto::{CertificateDer, Identity, KeyAlgorithm, Sha256, TlsConfig};
pub use rpcplugin_handshake::{HandshakeLine, ReattachConfig};
/// The rate and concurrency limits a plugin offers, for a host's channel:
/// `ServiceBuilder::new().layer(limit.layer()).service(plugin.channel())`.
pub use rpcplugin_layers::{
    CallCounts, CallStats, CallStatsLayer, ConcurrencyLimitLayer, RateLimit, RateLimitLayer,
};
/// Sets glibc's allocator thresholds for a process that streams messages: a host
/// calls it once in `main` to get the streaming figures of docs/performance.md on its
/// side too (plugins do it in `PluginServer::run`). The library never calls it for a
/// host by itself, since the allocator belongs to the application.
pub use rpcplugin_transport::tune_allocator;
pub use sandbox::{
    EffectiveSandbox, IfUnsupported, PathAccess, Sandbox, SandboxFeature, SandboxPath,
};
pub use stdio::{StdioChannel, StdioSink};
pub use stop::{StopMethod, Stopped};
pub use supervisor::{RestartPolicy, Supervisor, SupervisorEvent, SupervisorOptions};
pub use tonic::transport::Channel;
#[cfg(feature = "otel")]
pub use trace::{TraceContext, TracedChannel};

pub(crate) use target::{Connection, Target};
