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
//! `PLUGIN_GRPC_MAX_SEND_MESSAGE_SIZE`. A service added with [`Builder::add_service`]
//! keeps tonic's own defaults (4 MiB received).
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

mod broker;
mod controller;
mod health;
mod incoming;
pub mod logging;
mod mux;
mod stdio;
mod tls;
#[cfg(feature = "otel")]
mod trace;
mod versions;

pub use broker::{BrokeredServer, DEFAULT_BROKER_DIAL_TIMEOUT, GrpcBroker};
pub use rpcplugin_config::{DEFAULT_PLUGIN_MAX_MESSAGE_SIZE, Environment, Settings};
use rpcplugin_core::Code;
pub use rpcplugin_core::{Error, ErrorKind, Result};
pub use rpcplugin_crypto::{CertificateDer, Identity, KeyAlgorithm};
#[cfg(feature = "otel")]
pub use trace::{TraceContextLayer, TraceContextService};
pub use versions::ServiceSet;

use rpcplugin_core::Network;
use rpcplugin_handshake::{HandshakeLine, MagicCookie, Negotiated, ReceivedEnv};
use rpcplugin_proto::health::v1::health_server::HealthServer;
use rpcplugin_proto::plugin::grpc_controller_server::GrpcControllerServer;
use rpcplugin_proto::plugin::grpc_stdio_server::GrpcStdioServer;
use rpcplugin_transport::{TcpTransport, Transport, UnixTransport};
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;

/// The plugin server. Start with [`PluginServer::builder`].
#[derive(Debug)]
pub struct PluginServer;

impl PluginServer {
    /// A builder with no services, app protocol version 1 and no cookie yet.
    pub fn builder() -> Builder {
        Builder::default()
    }
}

/// Message size limits for one generated tonic service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest message the plugin accepts.
    pub max_receive_message_size: usize,
    /// The largest message the plugin sends.
    pub max_send_message_size: usize,
}

impl Limits {
    /// Applies both limits to a tonic-generated server (anything with tonic's
    /// `max_decoding_message_size` / `max_encoding_message_size` builder methods).
    pub fn apply<S: LimitedService>(self, service: S) -> S {
        service.with_limits(self)
    }
}

/// A generated tonic server whose message limits can be set.
///
/// Implemented for every server type generated by `tonic-prost-build` through
/// [`impl_limited_service!`]; the rpcplugin services and the example contracts have
/// it already.
pub trait LimitedService {
    /// Returns the service with both limits set.
    fn with_limits(self, limits: Limits) -> Self;
}

/// Implements [`LimitedService`] for tonic-generated server types.
///
/// ```ignore
/// rpcplugin_server::impl_limited_service!(my_proto::greeter_server::GreeterServer<T>);
/// ```
#[macro_export]
macro_rules! impl_limited_service {
    ($($server:ident)::+ < $t:ident >) => {
        impl<$t> $crate::LimitedService for $($server)::+<$t> {
            fn with_limits(self, limits: $crate::Limits) -> Self {
                self.max_decoding_message_size(limits.max_receive_message_size)
                    .max_encoding_message_size(limits.max_send_message_size)
            }
        }
    };
}

impl_limited_service!(rpcplugin_proto::examples::kv::kv_server::KvServer<T>);
impl_limited_service!(rpcplugin_proto::examples::bench::bench_server::BenchServer<T>);

/// A gRPC service the plugin can serve: what tonic's router accepts, which every
/// tonic-generated `XxxServer<T>` is.
pub trait PluginService:
    tower_service::Service<
        http::Request<Body>,
        Response = http::Response<Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + NamedService
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> PluginService for S where
    S: tower_service::Service<
            http::Request<Body>,
            Response = http::Response<Body>,
            Error = Infallible,
            Future: Send + 'static,
        > + NamedService
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// Why the server stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopReason {
    /// The host called `plugin.GRPCController/Shutdown`.
    ShutdownRpc,
    /// SIGTERM (or SIGINT when not ignored).
    Signal,
    /// The host process is gone (this process was re-parented).
    HostGone,
    /// The future given to [`Builder::serve_with_shutdown`] completed.
    Requested,
}

pub(crate) type AddService = Box<dyn FnOnce(Limits, &mut RoutesBuilder) + Send>;

/// Configures and runs a plugin server. See the [crate docs](crate).
#[derive(Default)]
#[must_use]
pub struct Builder {
    cookie: Option<(String, String)>,
    versions: Option<Vec<u32>>,
    versioned: std::collections::BTreeMap<u32, ServiceSet>,
    services: Vec<AddService>,
    service_names: Vec<String>,
    reflection: Vec<&'static [u8]>,
    transports: Option<Vec<Network>>,
    max_receive: Option<usize>,
    max_send: Option<usize>,
    drain_timeout: Option<Duration>,
    environment: Option<Environment>,
    tls: tls::TlsOptions,
    config_file: Option<std::path::PathBuf>,
    capture_stderr: bool,
    broker: GrpcBroker,
    broker_dial_timeout: Option<Duration>,
    debug: bool,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("cookie_key", &self.cookie.as_ref().map(|c| &c.0))
            .field("versions", &self.versions)
            .field("versioned", &self.versioned)
            .field("services", &self.service_names)
            .field("transports", &self.transports)
            .field("auto_mtls", &self.tls.auto_mtls)
            .field("identity", &self.tls.identity)
            .finish_non_exhaustive()
    }
}

impl Builder {
    /// The magic cookie the host must set: `key=value` in the plugin's environment.
    /// Both sides must agree (go-plugin's KV example uses `BASIC_PLUGIN=hello`).
    /// When not set in code, `PLUGIN_MAGIC_COOKIE_KEY`/`_VALUE` are used.
    pub fn handshake(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.cookie = Some((key.into(), value.into()));
        self
    }

    /// Serves one app protocol version (the default is 1, unless versioned sets
    /// are given).
    pub fn protocol_version(mut self, version: u32) -> Self {
        self.versions = Some(vec![version]);
        self
    }

    /// Serves several app protocol versions; the highest one the host offers wins.
    /// Versions with a [`ServiceSet`] are served as well.
    pub fn protocol_versions(mut self, versions: impl IntoIterator<Item = u32>) -> Self {
        self.versions = Some(versions.into_iter().collect());
        self
    }

    /// Serves `set` when the host and the plugin agree on app protocol `version`
    /// (go-plugin's `VersionedPlugins`). Give one set per version; the plugin then
    /// serves every version with a set, the highest the host offers wins, and only
    /// that version's services are served, besides those added with
    /// [`add_service`](Self::add_service), which every version serves.
    pub fn versioned_services(mut self, version: u32, set: ServiceSet) -> Self {
        self.versioned.entry(version).or_default().extend(set);
        self
    }

    /// Adds a tonic service as it is (tonic's default message limits apply).
    pub fn add_service<S: PluginService>(self, service: S) -> Self {
        self.add_service_with(move |_| service)
    }

    /// Adds a tonic service built with the configured [`Limits`]:
    /// `.add_service_with(|limits| limits.apply(KvServer::new(store)))`.
    pub fn add_service_with<S, F>(mut self, make: F) -> Self
    where
        F: FnOnce(Limits) -> S + Send + 'static,
        S: PluginService,
    {
        self.service_names.push(S::NAME.to_owned());
        self.services.push(Box::new(move |limits, routes| {
            routes.add_service(make(limits));
        }));
        self
    }

    /// Registers the encoded `FileDescriptorSet` of your services so gRPC reflection
    /// (grpcurl, `rpcplugin probe`) can describe them. go-plugin's own services are
    /// always registered.
    pub fn reflection_descriptors(mut self, encoded: &'static [u8]) -> Self {
        self.reflection.push(encoded);
        self
    }

    /// The transports to serve on, preferred first (default: `PLUGIN_SERVER_TRANSPORTS`,
    /// else automatic: a Unix socket, or loopback TCP for hosts that send no
    /// `PLUGIN_PROTOCOL_VERSIONS`, whose gRPC stack cannot address Unix sockets in a
    /// way the HTTP/2 server accepts).
    pub fn transports(mut self, transports: impl IntoIterator<Item = Network>) -> Self {
        self.transports = Some(transports.into_iter().collect());
        self
    }

    /// Message size limits for services added with [`Builder::add_service_with`] and
    /// for the built-in ones.
    pub fn max_message_sizes(mut self, receive: usize, send: usize) -> Self {
        self.max_receive = Some(receive);
        self.max_send = Some(send);
        self
    }

    /// How long in-flight calls may take to finish once a stop begins (default: the
    /// `shutdown_grace` setting, 2 s); then connections are closed.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = Some(timeout);
        self
    }

    /// Whether to serve mutual TLS when the host asks for it by sending its
    /// certificate in `PLUGIN_CLIENT_CERT` (default: `PLUGIN_AUTO_MTLS`, else true).
    /// Turned off, the plugin serves plaintext to such a host, which an rpcplugin or
    /// go-plugin host then refuses: leave it on unless you test exactly that.
    pub fn auto_mtls(mut self, enabled: bool) -> Self {
        self.tls.auto_mtls = Some(enabled);
        self
    }

    /// The key type of the certificate generated for AutoMTLS (default ECDSA
    /// P-256, which every peer's TLS stack accepts; go-plugin's own is P-521).
    pub fn auto_mtls_key(mut self, algorithm: KeyAlgorithm) -> Self {
        self.tls.key_algorithm = algorithm;
        self
    }

    /// Serves TLS with this certificate and key instead of a generated pair
    /// (default: `PLUGIN_SERVER_CERT` and `PLUGIN_SERVER_KEY`). Hosts are then
    /// verified against [`Builder::client_ca_roots`], or, without roots, must
    /// present exactly the certificate they sent in `PLUGIN_CLIENT_CERT`.
    pub fn identity(mut self, identity: Identity) -> Self {
        self.tls.identity = Some(identity);
        self
    }

    /// Requires hosts to present a certificate issued by one of these CAs (default:
    /// `PLUGIN_CLIENT_ROOT_CERTS`). Turns TLS on even without a host certificate in
    /// `PLUGIN_CLIENT_CERT`.
    pub fn client_ca_roots(
        mut self,
        roots: impl IntoIterator<Item = CertificateDer<'static>>,
    ) -> Self {
        self.tls.client_roots = Some(roots.into_iter().collect());
        self
    }

    /// Reads settings from this file (TOML, YAML or JSON) instead of the one named
    /// by `PLUGIN_CONFIG_FILE`; environment variables still override it.
    pub fn config_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.config_file = Some(path.into());
        self
    }

    /// Also streams what is written on stderr after the handshake over
    /// `plugin.GRPCStdio`, as stdout always is (default: off).
    ///
    /// Off, stderr stays the log channel every go-plugin host reads and parses as
    /// hclog, and a crash report written there reaches the host even when the
    /// process dies at once. On, writes to file descriptor 2 (`eprintln!`, C
    /// libraries, child processes) travel over GRPCStdio instead, while the logs of
    /// [`logging`] still go to the original stderr.
    pub fn capture_stderr(mut self, enabled: bool) -> Self {
        self.capture_stderr = enabled;
        self
    }

    /// The plugin's [`GrpcBroker`], for services that call back into the host
    /// (`broker.dial(id)`) or serve it more (`broker.accept_and_serve(id, ..)`).
    /// Clone it into your services before [`serve`](Self::serve); it works once
    /// the plugin serves.
    pub fn broker(&self) -> GrpcBroker {
        self.broker.clone()
    }

    /// How long [`GrpcBroker::dial`] waits for the host to announce an id
    /// (default [`DEFAULT_BROKER_DIAL_TIMEOUT`], 5 s, as go-plugin).
    pub fn broker_dial_timeout(mut self, timeout: Duration) -> Self {
        self.broker_dial_timeout = Some(timeout);
        self
    }

    /// Debug mode: the plugin runs on its own (started by hand, under a debugger)
    /// and a host attaches to it. Instead of the handshake line it prints its
    /// reattach information, one line of JSON on stdout (see
    /// [`ReattachConfig`](rpcplugin_handshake::ReattachConfig)), and serves until
    /// SIGTERM or Ctrl-C, whoever attaches and leaves. No magic cookie is needed;
    /// it serves its highest version, on a Unix socket unless the transports say
    /// otherwise. TLS only when configured (`PLUGIN_SERVER_CERT`/`_KEY` and
    /// `PLUGIN_CLIENT_ROOT_CERTS`, or [`identity`](Self::identity) and
    /// [`client_ca_roots`](Self::client_ca_roots)): AutoMTLS needs a host that
    /// starts the plugin. Over TCP it refuses to serve without TLS.
    pub fn debug_mode(mut self, enabled: bool) -> Self {
        self.debug = enabled;
        self
    }

    /// Uses this environment instead of the process's (for embedding and tests).
    pub fn environment(mut self, environment: Environment) -> Self {
        self.environment = Some(environment);
        self
    }

    /// Builds a runtime suited to a plugin sharing the machine with its host, sets
    /// glibc's allocator thresholds for streaming
    /// ([`rpcplugin_transport::tune_allocator`]), serves until stopped, and returns
    /// the process exit code. Errors are printed on stderr, with hints, and give exit
    /// code 1; stdout stays empty.
    pub fn run(self) -> ExitCode {
        // The plugin owns this process, so it may set the allocator up for moving
        // messages (rpcplugin_transport::tune_allocator says what and why).
        rpcplugin_transport::tune_allocator();
        // One worker: the host runs on the same cores, and one worker thread plus
        // the I/O driver measured fastest here (docs/performance notes).
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build();
        let runtime = match runtime {
            Ok(rt) => rt,
            Err(err) => {
                eprintln!("error: cannot start the async runtime: {err}");
                return ExitCode::FAILURE;
            }
        };
        match runtime.block_on(self.serve()) {
            Ok(_) => ExitCode::SUCCESS,
            Err(err) => {
                // Only a missing or wrong cookie means "a person ran me"; a cookie the
                // developer misconfigured is explained by the error itself.
                if matches!(
                    err.code(),
                    Code::HandshakeMissingCookie | Code::HandshakeBadCookie
                ) {
                    eprintln!("{}\n", rpcplugin_handshake::NOT_A_TERMINAL_PROGRAM);
                }
                eprintln!("{}", rpcplugin_core::render(&err));
                ExitCode::FAILURE
            }
        }
    }

    /// Serves until the host asks the plugin to stop, SIGTERM, or the host is gone.
    pub async fn serve(self) -> Result<StopReason> {
        self.serve_with_shutdown(std::future::pending()).await
    }

    /// Like [`Builder::serve`], and also stops when `signal` completes.
    pub async fn serve_with_shutdown(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Result<StopReason> {
        let prepared = self.prepare()?;
        prepared.run(signal).await
    }

    /// Everything up to binding: the checks a person running the plugin by hand hits
    /// first, before any socket exists.
    fn prepare(mut self) -> Result<Prepared> {
        let env = self.environment.take().unwrap_or_else(Environment::capture);
        let settings = Settings::from_sources(&env, self.config_file.as_deref())?;
        let received = if self.debug {
            debug_env()
        } else {
            received_env(self.cookie.take(), &settings, &env)?
        };
        let tls = std::mem::take(&mut self.tls)
            .resolve(&settings, received.client_cert_pem.as_deref())?;
        let versions =
            versions::served_versions(self.versions.as_deref(), self.versioned.keys().copied());
        if versions.is_empty() {
            return Err(Error::new(
                Code::ConfigNoVersions,
                "the plugin serves no app protocol version",
            )
            .with_hint("call .protocol_version(N) or .versioned_services(N, ..) on the plugin server builder"));
        }
        if let Some(list) = &received.protocol_versions {
            for bad in &list.rejected {
                tracing::warn!(entry = %bad, "host sent an invalid app protocol version; skipped");
            }
        }
        let negotiated = if self.debug {
            // Nobody offers anything: the newest version is the one being debugged.
            Negotiated::Agreed(versions.iter().copied().max().unwrap_or(1))
        } else {
            received.negotiate(&versions)
        };
        if let Negotiated::NoneInCommon { fallback } = negotiated {
            tracing::warn!(
                served = ?versions,
                offered = ?received.protocol_versions.as_ref().map(|l| &l.versions),
                announced = fallback,
                "no app protocol version in common with the host; announcing the lowest served, the host will refuse it"
            );
        }
        let limits = Limits {
            max_receive_message_size: self
                .max_receive
                .or(settings.grpc_max_receive_message_size)
                .unwrap_or(DEFAULT_PLUGIN_MAX_MESSAGE_SIZE),
            max_send_message_size: self
                .max_send
                .or(settings.grpc_max_send_message_size)
                .unwrap_or(DEFAULT_PLUGIN_MAX_MESSAGE_SIZE),
        };
        let debug = self.debug;
        let transports = self
            .transports
            .take()
            .or_else(|| settings.server_transports.clone())
            .unwrap_or_else(|| {
                if debug {
                    vec![Network::Unix]
                } else {
                    automatic_transports(&received)
                }
            });
        if self.debug && tls.is_none() && transports.first() == Some(&Network::Tcp) {
            return Err(Error::new(
                Code::SecurityDebugPlaintextTcp,
                "a debug-mode plugin does not serve plaintext over tcp",
            )
            .with_hint(
                "any local user could call it: serve on a unix socket (the default), or \
                 configure TLS (PLUGIN_SERVER_CERT, PLUGIN_SERVER_KEY and \
                 PLUGIN_CLIENT_ROOT_CERTS) so that only hosts with a certificate of that CA \
                 can attach",
            ));
        }
        Self::finish_prepare(
            self, settings, received, tls, negotiated, limits, transports,
        )
    }

    fn finish_prepare(
        mut self,
        settings: Settings,
        received: ReceivedEnv,
        tls: Option<tls::ServerTls>,
        negotiated: Negotiated,
        limits: Limits,
        transports: Vec<Network>,
    ) -> Result<Prepared> {
        let transport: Arc<dyn Transport> = match transports.first() {
            Some(Network::Unix) | None => {
                let mut t = UnixTransport::new();
                if let Some(dir) = &received.unix_socket_dir {
                    t = t.dir(dir);
                }
                if let Some(group) = &received.unix_socket_group {
                    t = t.group(group);
                }
                Arc::new(t)
            }
            Some(Network::Tcp) => {
                let mut t = TcpTransport::new();
                if let Some((min, max)) = received.port_range {
                    t = t.port_range(min, max);
                }
                Arc::new(t)
            }
        };
        let mux = received
            .multiplex_grpc
            .then(|| Arc::new(rpcplugin_transport::MuxRouter::new()));
        self.broker.set_ready(broker::Ready {
            mux: mux.clone(),
            transport: transport.clone(),
            accept_tls: tls.as_ref().map(|t| t.config.clone()),
            dial_tls: tls.as_ref().map(|t| t.dial.clone()),
            dial_timeout: self
                .broker_dial_timeout
                .unwrap_or(DEFAULT_BROKER_DIAL_TIMEOUT),
        });
        let mut services = self.services;
        let mut service_names = self.service_names;
        if let Some(set) = self.versioned.remove(&negotiated.version()) {
            services.extend(set.services);
            service_names.extend(set.names);
        }
        tracing::debug!(version = negotiated.version(), services = ?service_names, "serving");
        Ok(Prepared {
            app_version: negotiated.version(),
            tls,
            multiplex: mux,
            transport,
            limits,
            services,
            service_names,
            reflection: self.reflection,
            ignore_sigint: settings.ignore_sigint,
            drain_timeout: self.drain_timeout.unwrap_or(settings.shutdown_grace),
            capture_stderr: self.capture_stderr,
            broker: self.broker,
            debug: self.debug,
        })
    }
}

struct Prepared {
    app_version: u32,
    tls: Option<tls::ServerTls>,
    /// The host asked for a multiplexed connection (`PLUGIN_MULTIPLEX_GRPC`).
    multiplex: Option<Arc<rpcplugin_transport::MuxRouter>>,
    transport: Arc<dyn Transport>,
    limits: Limits,
    services: Vec<AddService>,
    service_names: Vec<String>,
    reflection: Vec<&'static [u8]>,
    ignore_sigint: bool,
    drain_timeout: Duration,
    capture_stderr: bool,
    broker: GrpcBroker,
    debug: bool,
}

impl Prepared {
    async fn run(self, signal: impl Future<Output = ()> + Send + 'static) -> Result<StopReason> {
        let listener = Arc::new(self.transport.bind().await?);
        let endpoint = listener.endpoint().clone();
        self.broker.set_endpoint(endpoint.clone());
        tracing::debug!(%endpoint, network = %endpoint.network(), "plugin address");

        let (stop_tx, mut stop_rx) = mpsc::channel::<StopReason>(4);
        let (serving_tx, serving_rx) = watch::channel(true);

        let mut routes = RoutesBuilder::default();
        for add in self.services {
            add(self.limits, &mut routes);
        }
        routes.add_service(
            HealthServer::new(health::HealthService::new(self.service_names, serving_rx))
                .max_decoding_message_size(self.limits.max_receive_message_size),
        );
        routes.add_service(GrpcControllerServer::new(controller::Controller {
            stop: stop_tx.clone(),
        }));
        let stdio_hub = stdio::Hub::new();
        routes.add_service(GrpcStdioServer::new(stdio::StdioService {
            hub: stdio_hub.clone(),
        }));
        routes.add_service(self.broker.service());
        add_reflection(&mut routes, &self.reflection)?;

        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let server = http2_tuned(tonic::transport::Server::builder())
            .layer(request_layer())
            .add_routes(routes.routes())
            .serve_with_incoming_shutdown(
                match &self.multiplex {
                    None => futures_util::future::Either::Left(incoming::Incoming::new(
                        listener.clone(),
                        self.tls.as_ref().map(|t| t.config.clone()),
                    )),
                    Some(router) => futures_util::future::Either::Right(mux::main_incoming(
                        listener.clone(),
                        self.tls.as_ref().map(|t| t.config.clone()),
                        router.clone(),
                    )),
                },
                async {
                    let _ = shutdown_rx.await;
                },
            );
        // Boxed, not stack-pinned, so that dropping it below really ends it.
        let mut server = Box::pin(server);

        // The socket is listening, so the host's connect succeeds from now on; poll
        // the server once so it is accepting before the host reads the line.
        let mut line =
            HandshakeLine::new(self.app_version, endpoint).with_multiplex(self.multiplex.is_some());
        if let Some(tls) = &self.tls {
            line = line.with_server_cert(tls.announced.to_vec());
        }
        tokio::select! {
            biased;
            result = &mut server => return server_result(result).map(|_| StopReason::Requested),
            _ = std::future::ready(()) => {}
        }
        if self.debug {
            print_reattach(&line)?;
        } else {
            print_handshake(&line)?;
        }
        // Nothing but the handshake may reach the host's stdout pipe. A debug-mode
        // plugin runs in a person's terminal: its output stays there.
        let capture = (!self.debug).then(|| stdio::Capture::start(stdio_hub, self.capture_stderr));

        // A person runs a debug-mode plugin: Ctrl-C is for it, and its parent is a
        // shell whose exit means nothing.
        let stop_sources = spawn_stop_sources(
            stop_tx,
            self.ignore_sigint && !self.debug,
            !self.debug,
            signal,
        )?;
        let reason = tokio::select! {
            result = &mut server => {
                server_result(result)?;
                StopReason::Requested
            }
            reason = stop_rx.recv() => reason.unwrap_or(StopReason::Requested),
        };
        // Inside a caller's runtime the watcher would otherwise poll forever.
        stop_sources.abort();
        tracing::debug!(?reason, "plugin stopping");
        // Ends the StreamStdio calls, which would otherwise hold up the drain.
        if let Some(capture) = capture {
            capture.stop().await;
        }
        let _ = serving_tx.send(false);
        self.broker.close();
        let _ = shutdown_tx.send(());
        if tokio::time::timeout(self.drain_timeout, &mut server)
            .await
            .is_err()
        {
            tracing::warn!(
                timeout = ?self.drain_timeout,
                "in-flight calls did not finish in time; closing connections"
            );
        }
        drop(server);
        if let Some(router) = &self.multiplex {
            router.close();
        }
        // The last reference removes the socket (and its private directory).
        if let Ok(listener) = Arc::try_unwrap(listener)
            && let Err(err) = listener.close()
        {
            tracing::warn!(error = %err, "cannot remove the plugin socket");
        }
        Ok(reason)
    }
}

/// What every request goes through: the host's trace context (feature `otel`).
#[cfg(feature = "otel")]
fn request_layer() -> TraceContextLayer {
    TraceContextLayer
}

#[cfg(not(feature = "otel"))]
fn request_layer() -> tower_layer::Identity {
    tower_layer::Identity::new()
}

/// Unix sockets, except for hosts that send no `PLUGIN_PROTOCOL_VERSIONS`.
///
/// Every go-plugin host (and rpcplugin's) sends that variable; pyvider-rpcplugin's
/// does not. Its gRPC stack (grpc-core) sends the percent-encoded socket path as the
/// HTTP/2 `:authority` over Unix sockets, which the h2 server refuses as malformed
/// (grpc/grpc#38142, hyperium/h2#487), so such hosts get loopback TCP, where the
/// authority is a plain `127.0.0.1:PORT`. Set the transports explicitly to override.
fn automatic_transports(received: &ReceivedEnv) -> Vec<Network> {
    if received.protocol_versions.is_some() {
        vec![Network::Unix, Network::Tcp]
    } else {
        tracing::debug!(
            "host sent no PLUGIN_PROTOCOL_VERSIONS (not a go-plugin host); serving on loopback TCP"
        );
        vec![Network::Tcp, Network::Unix]
    }
}

/// The largest HTTP/2 frame the host may send: 1 MiB instead of 16 KiB cuts the
/// per-frame work of large messages by 64; small messages fit one frame either way.
/// (What the plugin sends is sized by the host's setting, rpcplugin's is 1 MiB too.)
const HTTP2_MAX_FRAME_SIZE: u32 = 1 << 20;

/// The HTTP/2 settings every server of this crate advertises (main and brokered).
pub(crate) fn http2_tuned(builder: tonic::transport::Server) -> tonic::transport::Server {
    builder.max_frame_size(HTTP2_MAX_FRAME_SIZE)
}

fn server_result(result: std::result::Result<(), tonic::transport::Error>) -> Result<()> {
    result
        .map_err(|err| Error::new(Code::TransportServe, "the gRPC server failed").with_source(err))
}

/// The environment a debug-mode plugin acts on: nothing from a host.
fn debug_env() -> ReceivedEnv {
    ReceivedEnv {
        protocol_versions: None,
        client_cert_pem: None,
        port_range: None,
        unix_socket_dir: None,
        unix_socket_group: None,
        multiplex_grpc: false,
    }
}

/// The cookie check, then what the host asked for.
fn received_env(
    cookie: Option<(String, String)>,
    settings: &Settings,
    env: &Environment,
) -> Result<ReceivedEnv> {
    let Some((key, value)) = settings.magic_cookie(cookie) else {
        return Err(Error::new(
            Code::ConfigMissingCookie,
            "no magic cookie configured for this plugin",
        )
        .with_hint(
            "call .handshake(KEY, VALUE) on the plugin server builder (or set \
             PLUGIN_MAGIC_COOKIE_KEY and PLUGIN_MAGIC_COOKIE_VALUE); the host must use the same",
        ));
    };
    let cookie = MagicCookie::new(key, value)?;
    ReceivedEnv::from_lookup(&cookie, env.lookup())
}

/// Debug mode: the reattach JSON on stdout (one line, flushed), and for the person
/// who started the plugin, how to use it on stderr.
fn print_reattach(line: &HandshakeLine) -> Result<()> {
    let mut config = rpcplugin_handshake::ReattachConfig::new(
        line.app_version,
        line.endpoint.clone(),
        std::process::id(),
    );
    if let Some(der) = &line.server_cert {
        config = config.with_server_cert(der.clone());
    }
    let json = config.to_json();
    eprintln!(
        "plugin serving in debug mode at {} (app protocol version {}); a host attaches with \
         this reattach information (printed on stdout):\n  {json}\nStop it with Ctrl-C or SIGTERM.",
        line.endpoint, line.app_version
    );
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{json}")
        .and_then(|()| stdout.flush())
        .map_err(|err| {
            Error::new(
                Code::HandshakeWrite,
                "cannot write the reattach information to stdout",
            )
            .with_source(err)
        })
}

/// Writes the handshake line and flushes: go-plugin hosts read exactly one line.
fn print_handshake(line: &HandshakeLine) -> Result<()> {
    let text = line.encode();
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|err| {
            Error::new(
                Code::HandshakeWrite,
                "cannot write the handshake line to stdout",
            )
            .with_source(err)
            .with_hint("the host closed the plugin's stdout; it probably gave up on the plugin")
        })
}

fn add_reflection(routes: &mut RoutesBuilder, extra: &[&'static [u8]]) -> Result<()> {
    let mut v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(rpcplugin_proto::FILE_DESCRIPTOR_SET);
    let mut v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(rpcplugin_proto::FILE_DESCRIPTOR_SET);
    for set in extra {
        v1 = v1.register_encoded_file_descriptor_set(set);
        v1alpha = v1alpha.register_encoded_file_descriptor_set(set);
    }
    let reflection_error = |err: tonic_reflection::server::Error| {
        Error::new(
            Code::ConfigReflection,
            "cannot build the gRPC reflection service",
        )
        .with_source(err)
        .with_hint("check the descriptor sets given to reflection_descriptors()")
    };
    routes.add_service(v1.build_v1().map_err(reflection_error)?);
    routes.add_service(v1alpha.build_v1alpha().map_err(reflection_error)?);
    Ok(())
}

/// SIGTERM, SIGINT (unless ignored), the host going away, and the caller's signal
/// all end in the same stop channel.
fn spawn_stop_sources(
    stop: mpsc::Sender<StopReason>,
    ignore_sigint: bool,
    watch_parent: bool,
    signal: impl Future<Output = ()> + Send + 'static,
) -> Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal as unix_signal};
    let signal_error = |err: std::io::Error| {
        Error::new(Code::ProcessSignal, "cannot install signal handlers").with_source(err)
    };
    let mut term = unix_signal(SignalKind::terminate()).map_err(signal_error)?;
    let mut int = unix_signal(SignalKind::interrupt()).map_err(signal_error)?;
    let parent = std::os::unix::process::parent_id();
    Ok(tokio::spawn(async move {
        let mut interrupts = 0u32;
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let mut signal = std::pin::pin!(signal);
        let reason = loop {
            tokio::select! {
                _ = term.recv() => break StopReason::Signal,
                _ = int.recv() => {
                    if !ignore_sigint {
                        break StopReason::Signal;
                    }
                    // A terminal's Ctrl-C reaches the whole process group; the host
                    // decides how its plugins stop (as go-plugin does).
                    interrupts += 1;
                    tracing::debug!(count = interrupts, "plugin received interrupt signal, ignoring");
                }
                _ = tick.tick() => {
                    // Re-parented: the host died without stopping us. Never on PID 1
                    // parents (a container's init started us on purpose).
                    if watch_parent && parent != 1 && std::os::unix::process::parent_id() != parent {
                        break StopReason::HostGone;
                    }
                }
                () = &mut signal => break StopReason::Requested,
            }
        };
        let _ = stop.send(reason).await;
    }))
}
