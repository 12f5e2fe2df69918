//! rpcplugin: out-of-process plugins over gRPC, wire-compatible with HashiCorp
//! go-plugin.
//!
//! A *host* launches a *plugin* executable as a child process; the plugin prints one
//! handshake line on stdout and serves gRPC on a Unix socket (or loopback TCP); the
//! host calls it through ordinary tonic clients. Because the protocol is
//! go-plugin's, an rpcplugin host runs Go and Python (pyvider-rpcplugin) plugins, and
//! Go hosts such as Terraform run rpcplugin plugins.
//!
//! This crate re-exports the layers; depend on one of them alone if that is all you
//! need ([`handshake`] to parse handshake lines, [`transport`] for private sockets).
//!
//! # Quick start
//!
//! In `Cargo.toml` (the three crates generated code names, in the versions rpcplugin
//! uses; they are re-exported here as [`tonic`], [`prost`] and [`tonic_prost`]):
//!
//! ```toml
//! [dependencies]
//! rpcplugin = "0.1"
//! tokio = { version = "1", features = ["rt"] }
//! tonic = { version = "0.14", default-features = false }
//! prost = "0.14"
//! tonic-prost = "0.14"
//! ```
//!
//! and, for a fast start, in `.cargo/config.toml` beside it:
//!
//! ```toml
//! [env]
//! AWS_LC_SYS_NO_JITTER_ENTROPY = "1"
//! ```
//!
//! Without it, aws-lc (the crypto library under rustls) samples CPU jitter for
//! about 60 ms at the first random byte of every process, which host and plugin
//! each pay when they make their AutoMTLS keys; with it, the kernel's `getrandom`
//! is the entropy source, as for ring, Go and OpenSSL (`docs/security.md`, "Start-up
//! cost of randomness"). A library cannot set it for you: aws-lc reads it when it
//! is built, in your build. Without it, the first AutoMTLS start of a host or a
//! plugin warns once with this remedy.
//!
//! `cargo run --example quick_start` runs the two halves below in one program;
//! `docs/plugin-authors.md` goes from an empty crate to a plugin a Go host runs,
//! with your own `.proto` (see also [Your own proto](#your-own-proto)), and
//! `docs/hosts.md` covers launching, calling and supervising plugins.
//!
//! ## A plugin
//!
//! ```no_run
//! use rpcplugin::proto::examples::kv::kv_server::{Kv, KvServer};
//! use rpcplugin::proto::examples::kv::{Empty, GetRequest, GetResponse, PutRequest};
//! use rpcplugin::tonic::{Request, Response, Status};
//!
//! struct Store;
//!
//! #[rpcplugin::tonic::async_trait]
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
//!     rpcplugin::plugin_server()
//!         .handshake("BASIC_PLUGIN", "hello")
//!         .add_service_with(|limits| limits.apply(KvServer::new(Store)))
//!         .run()
//! }
//! ```
//!
//! ## A host
//!
//! ```no_run
//! use rpcplugin::proto::examples::kv::{kv_client::KvClient, GetRequest};
//!
//! # async fn host() -> Result<(), Box<dyn std::error::Error>> {
//! let plugin = rpcplugin::plugin_client("./kv_plugin")
//!     .handshake("BASIC_PLUGIN", "hello")
//!     .start()
//!     .await?;
//! // Made with the host's message limits (go-plugin's i32::MAX), not tonic's 4 MiB.
//! let mut kv = rpcplugin::client::new_client!(KvClient, plugin);
//! let reply = kv.get(GetRequest { key: "hello".into() }).await?;
//! plugin.stop().await?;
//! # Ok(()) }
//! ```
//!
//! # Your own proto
//!
//! Compile it in your crate's `build.rs` with `tonic-prost-build`, and with protox
//! (a protobuf compiler in Rust) no system `protoc` is needed:
//!
//! ```toml
//! [build-dependencies]
//! protox = "0.9"
//! tonic-prost-build = "0.14"
//! ```
//!
//! ```ignore
//! // build.rs
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     println!("cargo:rerun-if-changed=proto");
//!     let descriptors = protox::compile(["proto/greeter.proto"], ["proto"])?;
//!     tonic_prost_build::configure()
//!         .build_transport(false) // rpcplugin brings its own connections
//!         .compile_fds(descriptors)?;
//!     Ok(())
//! }
//! ```
//!
//! Then include the generated code, and say once that its server takes the
//! plugin's message limits ([`server::impl_limited_service!`]); without that line,
//! `add_service` does not compile and the error names the macro:
//!
//! ```ignore
//! pub mod pb {
//!     rpcplugin::tonic::include_proto!("greeter.v1");
//! }
//! rpcplugin::server::impl_limited_service!(pb::greeter_server::GreeterServer<T>);
//!
//! fn main() -> std::process::ExitCode {
//!     rpcplugin::plugin_server()
//!         .handshake("GREETER_PLUGIN", "hello")
//!         // 256 MiB messages by default, not tonic's 4 MiB.
//!         .add_service(pb::greeter_server::GreeterServer::new(Greeter))
//!         .run()
//! }
//! ```
//!
//! The repository's `tests/empty-crate` is that crate, built and run in CI: a
//! go-plugin host health-checks its plugin, and its own test serves it in process
//! with [`testing`].
//!
//! # Security
//!
//! Hosts use AutoMTLS unless told otherwise: each side makes a throw-away
//! certificate and trusts exactly the other's, as go-plugin does, and a plugin that
//! answers in plaintext is refused rather than used. Sockets are private to the user.
//! `docs/security.md` has the threat model; [`crypto`] issues CA-based certificates
//! for plugins that need them. Both builders take their TLS as one [`TlsConfig`]
//! value (what the side presents, what it trusts, AutoMTLS or not):
//!
//! ```no_run
//! use rpcplugin::TlsConfig;
//! use rpcplugin::crypto::{CertificateAuthority, KeyAlgorithm, Role};
//!
//! # async fn host() -> Result<(), Box<dyn std::error::Error>> {
//! // In practice the CA lives elsewhere and the host loads its certificate.
//! let ca = CertificateAuthority::generate(KeyAlgorithm::default(), "plugins ca")?;
//! let tls = TlsConfig::new()
//!     .identity(ca.issue(Role::Client, KeyAlgorithm::default())?)
//!     .ca_roots([ca.certificate().clone()]);
//! let plugin = rpcplugin::plugin_client("./kv_plugin")
//!     .handshake("BASIC_PLUGIN", "hello")
//!     .tls(tls)
//!     .start()
//!     .await?;
//! # plugin.stop().await?;
//! # Ok(()) }
//! ```
//!
//! On Linux a host can also confine a plugin it starts, whatever its language:
//! Landlock file-system and TCP rules, `no_new_privs` and a seccomp deny-list,
//! applied before the plugin runs ([`client::Sandbox`], or `PLUGIN_SANDBOX=on`).
//! Reaching outside its policy gets the plugin "permission denied":
//!
//! ```no_run
//! use rpcplugin::client::Sandbox;
//!
//! # async fn host() -> Result<(), Box<dyn std::error::Error>> {
//! let plugin = rpcplugin::plugin_client("./kv_plugin")
//!     .handshake("BASIC_PLUGIN", "hello")
//!     .env_clear() // the host's environment (and its secrets) stays with the host
//!     .sandbox(Sandbox::new().write_path("/srv/kv-data"))
//!     .start()
//!     .await?;
//! println!("{}", plugin.sandbox().expect("confined")); // what was applied
//! # plugin.stop().await?;
//! # Ok(()) }
//! ```
//!
//! # Tower layers on the host
//!
//! Generated clients take any tower service over the channel, so a host wraps
//! `plugin.channel()` in layers: the same fail-fast [`layers`] a plugin offers,
//! tower's timeout and concurrency limit. A retry goes around a generated client's
//! *call* instead: a retry sends the request again, and the request message is
//! `Clone` where the channel's request (an HTTP body, possibly a stream) is not.
//! Capped by a budget, retries stay a share of the calls, so an overloaded plugin
//! gets its refusals (`RESOURCE_EXHAUSTED`) back rather than a storm of retries.
//! `tests/rate_limit.rs` runs both against a rate-limited plugin.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use rpcplugin::proto::examples::kv::{kv_client::KvClient, GetRequest};
//! use rpcplugin::tonic::{Code, Status};
//! use tower::ServiceExt as _;
//! use tower::retry::Policy;
//! use tower::retry::budget::{Budget as _, TpsBudget};
//!
//! /// Retries what the plugin refused for load, 50 ms later, while the budget allows.
//! #[derive(Clone)]
//! struct RetryOverload {
//!     budget: Arc<TpsBudget>,
//!     first: bool,
//! }
//!
//! impl<Req: Clone, Res> Policy<Req, Res, Status> for RetryOverload {
//!     type Future = tokio::time::Sleep;
//!
//!     fn retry(&mut self, _: &mut Req, result: &mut Result<Res, Status>) -> Option<Self::Future> {
//!         if std::mem::take(&mut self.first) {
//!             self.budget.deposit(); // once per call, not per attempt
//!         }
//!         match result {
//!             Err(s) if matches!(s.code(), Code::ResourceExhausted | Code::Unavailable) => {
//!                 self.budget.withdraw().then(|| tokio::time::sleep(Duration::from_millis(50)))
//!             }
//!             _ => None,
//!         }
//!     }
//!
//!     fn clone_request(&mut self, request: &Req) -> Option<Req> {
//!         Some(request.clone())
//!     }
//! }
//!
//! # async fn host() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let plugin = rpcplugin::plugin_client("./kv_plugin")
//!     .handshake("BASIC_PLUGIN", "hello")
//!     .start()
//!     .await?;
//! // Layers over the channel: at most 100 calls a second (bursts of 20), 5 s
//! // each, 16 in flight.
//! let channel = tower::ServiceBuilder::new()
//!     .layer(rpcplugin::client::RateLimit::new(100.0, 20)?.layer())
//!     .timeout(Duration::from_secs(5))
//!     .concurrency_limit(16)
//!     .service(plugin.channel());
//! // new_client! takes the plugin's own channel; over a layered one, set the
//! // host's message limits by hand.
//! let kv = KvClient::new(channel)
//!     .max_decoding_message_size(plugin.max_receive_message_size())
//!     .max_encoding_message_size(plugin.max_send_message_size());
//!
//! // The retry around the call: 10 retries a second, plus 20 % of the calls.
//! let policy = RetryOverload {
//!     budget: Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2)),
//!     first: true,
//! };
//! let get = tower::ServiceBuilder::new().retry(policy).service(tower::service_fn(
//!     move |request: GetRequest| {
//!         let mut kv = kv.clone();
//!         async move { kv.get(request).await.map(|reply| reply.into_inner()) }
//!     },
//! ));
//! let reply = get.oneshot(GetRequest { key: "hello".into() }).await?;
//! # let _ = reply;
//! plugin.stop().await?;
//! # Ok(()) }
//! ```
//!
//! # Feature flags
//!
//! - `otel` (off): tracing across the boundary. Hosts send the current span's W3C
//!   trace context with each call (`client::PluginClient::traced_channel`), plugins
//!   run each request in a span whose parent is the host's (`server::TraceContextLayer`),
//!   both through `tracing-opentelemetry`, re-exported here with `opentelemetry` in
//!   the versions rpcplugin uses.

pub use rpcplugin_core::{
    Code, Endpoint, Error, ErrorKind, Network, NetworkName, ParseCodeError, Result, render,
};
/// One side's TLS choices (what it presents, what it trusts, AutoMTLS or not),
/// given to a host's or a plugin's builder with `.tls(..)`.
pub use rpcplugin_crypto::TlsConfig;
/// tonic, in the version rpcplugin serves and calls with: generated code names it.
pub use tonic;

/// prost, in the version rpcplugin's generated code uses: messages generated in your
/// crate derive `prost::Message` from it.
pub use prost;

/// tonic's prost codec, in the version rpcplugin uses: generated clients and servers
/// name `tonic_prost::ProstCodec`.
pub use tonic_prost;

/// OpenTelemetry's API, in the version the `otel` feature uses.
#[cfg(feature = "otel")]
pub use opentelemetry;

/// The bridge between `tracing` spans and OpenTelemetry, in the version the `otel`
/// feature uses.
#[cfg(feature = "otel")]
pub use tracing_opentelemetry;

/// The plugin side: [`server::PluginServer`] and its builder.
pub mod server {
    pub use rpcplugin_server::*;
}

/// The host side: [`client::PluginClient`] and its builder.
pub mod client {
    pub use rpcplugin_client::*;
}

/// Tower layers both sides share: a token-bucket rate limit and a concurrency
/// limit that fail fast with `RESOURCE_EXHAUSTED`.
pub use rpcplugin_layers as layers;

/// Generated code for go-plugin's services, health, and the example contracts.
pub use rpcplugin_proto as proto;

/// The handshake line, magic cookie and version negotiation (sans-IO).
pub use rpcplugin_handshake as handshake;

/// Settings and the environment snapshot.
pub use rpcplugin_config as config;

/// Unix-socket and TCP transports, and TLS over them.
pub use rpcplugin_transport as transport;

/// Certificates, keys, checksums and rustls configurations (AutoMTLS and CA-based).
pub use rpcplugin_crypto as crypto;

pub mod testing;

/// A plugin server builder: `rpcplugin::plugin_server().handshake(..).add_service(..).run()`.
pub fn plugin_server() -> server::Builder {
    server::PluginServer::builder()
}

/// A host-side builder for the plugin executable `program`.
pub fn plugin_client(program: impl AsRef<std::ffi::OsStr>) -> client::Builder {
    client::PluginClient::builder(program)
}
