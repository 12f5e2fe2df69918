//! The plugin side of rpcplugin: serve tonic services to any go-plugin compatible host.
//!
//! A plugin is an executable that a host (an rpcplugin host, a go-plugin host such as
//! Terraform, or a pyvider-rpcplugin host) starts as a child process. [`PluginServer`]
//! does everything the protocol asks of it:
//!
//! 1. checks the magic cookie (run by a person, the plugin explains itself on stderr
//!    and exits 1, printing nothing on stdout);
//! 2. negotiates the app protocol version from `PLUGIN_PROTOCOL_VERSIONS`;
//! 3. binds a Unix socket in a private directory (or loopback TCP), honouring
//!    `PLUGIN_UNIX_SOCKET_DIR`, `PLUGIN_UNIX_SOCKET_GROUP`, `PLUGIN_MIN_PORT`/`MAX_PORT`;
//! 4. serves your services plus `grpc.health.v1.Health` (`"plugin"` is SERVING),
//!    `plugin.GRPCController`, `plugin.GRPCStdio`, `plugin.GRPCBroker` (see
//!    [`GrpcBroker`]: calls back into the host) and gRPC reflection;
//! 5. prints the handshake line on stdout once it accepts connections, then captures
//!    stdout (file descriptor 1: `println!`, C libraries, child processes) and streams
//!    it to the host over `plugin.GRPCStdio` (see [`Builder::capture_stderr`]);
//! 6. stops gracefully on `GRPCController.Shutdown` (after replying), on SIGTERM, and
//!    when its host process is gone, removing its socket.
//!
//! ```no_run
//! use rpcplugin_proto::examples::kv::kv_server::{Kv, KvServer};
//! use rpcplugin_proto::examples::kv::{Empty, GetRequest, GetResponse, PutRequest};
//! use rpcplugin_server::PluginServer;
//! use tonic::{Request, Response, Status};
//!
//! #[derive(Default)]
//! struct Store;
//!
//! #[tonic::async_trait]
//! impl Kv for Store {
//!     async fn get(&self, _: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
//!         Ok(Response::new(GetResponse { value: b"world".to_vec() }))
//!     }
//!     async fn put(&self, _: Request<PutRequest>) -> Result<Response<Empty>, Status> {
//!         Ok(Response::new(Empty {}))
//!     }
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     PluginServer::builder()
//!         .handshake("BASIC_PLUGIN", "hello")
//!         .protocol_version(1)
//!         .add_service_with(|limits| limits.apply(KvServer::new(Store)))
//!         .run()
//! }
//! ```
//!
//! # Message size limits
//!
//! tonic sets size limits per generated service, so the plugin hands them to you:
//! [`Builder::add_service_with`] gives a [`Limits`] whose [`Limits::apply`] sets both
//! directions on any generated server. The default is
//! [`DEFAULT_PLUGIN_MAX_MESSAGE_SIZE`] (256 MiB, as terraform-plugin-go), configurable
//! with [`Builder::max_message_sizes`] or `PLUGIN_GRPC_MAX_RECEIVE_MESSAGE_SIZE` /
//! `PLUGIN_GRPC_MAX_SEND_MESSAGE_SIZE`. [`Builder::add_service`] applies them for you to
//! any server that implements [`LimitedService`]: the ones in `rpcplugin_proto` do,
//! and one generated in your own crate does after one line,
//! [`impl_limited_service!`]`(pb::greeter_server::GreeterServer<T>)` (the compiler
//! error names the macro when it is missing). A service that is not generated goes
//! in with [`Builder::add_service_with`], which keeps the limits it was built with.
//!
//! # Extension points
//!
//! - **Layers**: [`Builder::layer`] wraps each of your services in any tower layer
//!   (tonic's `Server::layer` shape); [`Builder::rate_limit`] and
//!   [`Builder::concurrency_limit`] are built in and fail fast with
//!   `RESOURCE_EXHAUSTED`; tonic's server settings are there too
//!   ([`Builder::timeout`], [`Builder::concurrency_limit_per_connection`],
//!   [`Builder::max_concurrent_streams`]). The built-in services are never wrapped.
//! - **Transports**: [`Builder::transport`] serves on any
//!   [`Transport`](rpcplugin_transport::Transport), yours included (its handshake
//!   announces your network), and [`Builder::connector`] dials what the host
//!   brokers on it.
//! - **The plugin's view of itself**: [`Builder::handle`] gives a [`PluginHandle`]
//!   with where it serves, a [`PluginStatus`] (state, uptime, connections, calls)
//!   and the health it reports ([`PluginHandle::set_health`]).
//! - **Serving inside another program**: [`Builder::serve_in_process`], what
//!   `rpcplugin::testing` builds on.
//!
//! # Feature flags
//!
//! - `otel` (off): each request runs in a `grpc.request` span whose parent is the
//!   host's span named by the W3C `traceparent` metadata (rpcplugin hosts send it
//!   with `otel` on), through `tracing-opentelemetry`; see `TraceContextLayer`.
//!
//! # Logging
//!
//! Log to stderr, never stdout (stdout carries the handshake line). [`logging::init`]
//! writes `tracing` events as hclog JSON, which go-plugin hosts (Terraform with
//! `TF_LOG`) and rpcplugin hosts show at their levels with their fields.

mod announce;
mod broker;
mod builder;
mod controller;
mod handle;
mod health;
mod layers;
mod limits;
pub mod logging;
mod metrics;
mod mux;
mod panic;
mod prepare;
mod serve;
mod stdio;
mod stop;
mod tls;
#[cfg(feature = "otel")]
mod trace;
mod versions;

pub use broker::{BrokeredServer, DEFAULT_BROKER_DIAL_TIMEOUT, GrpcBroker};
pub use builder::{Builder, PluginServer};
pub use handle::{HealthStatus, PluginHandle, PluginStatus, ServingInfo, ServingState};
pub use layers::BoxedService;
pub use limits::{LimitedService, Limits, PluginService};
pub use rpcplugin_config::{DEFAULT_PLUGIN_MAX_MESSAGE_SIZE, Environment, Settings};
pub use rpcplugin_core::{Error, ErrorKind, Result};
pub use rpcplugin_crypto::{CertificateDer, Identity, KeyAlgorithm, TlsConfig};
pub use rpcplugin_layers::{CallCounts, ConcurrencyLimitLayer, RateLimit, RateLimitLayer};
pub use stop::StopReason;
#[cfg(feature = "otel")]
pub use trace::{TraceContextLayer, TraceContextService};
pub use versions::ServiceSet;

pub(crate) use limits::AddService;
