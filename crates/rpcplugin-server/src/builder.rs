//! [`PluginServer`] and its [`Builder`]: what a plugin configures before it serves.

use rpcplugin_core::Code;
use std::fmt;
use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use rpcplugin_config::Environment;
use rpcplugin_core::{Endpoint, Network, Result};
use rpcplugin_crypto::{CertificateDer, Identity, KeyAlgorithm, TlsConfig};
use rpcplugin_handshake::HandshakeLine;
use rpcplugin_layers::RateLimit;
use rpcplugin_transport::{Connectors, Io, Transport};
use tonic::body::Body;
use tower::BoxError;
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    AddService, BoxedService, GrpcBroker, LimitedService, Limits, PluginService, ServiceSet,
    StopReason,
};

/// The plugin server. Start with [`PluginServer::builder`].
#[derive(Debug)]
pub struct PluginServer;

impl PluginServer {
    /// A builder with no services, app protocol version 1 and no cookie yet.
    pub fn builder() -> Builder {
        Builder::default()
    }
}

/// Configures and runs a plugin server. See the [crate docs](crate).
#[derive(Default)]
#[must_use]
pub struct Builder {
    pub(crate) cookie: Option<(String, String)>,
    pub(crate) versions: Option<Vec<u32>>,
    pub(crate) versioned: std::collections::BTreeMap<u32, ServiceSet>,
    pub(crate) services: Vec<AddService>,
    pub(crate) service_names: Vec<String>,
    pub(crate) reflection: Vec<&'static [u8]>,
    pub(crate) transports: Option<Vec<Network>>,
    pub(crate) transport: Option<std::sync::Arc<dyn Transport>>,
    pub(crate) connectors: Connectors,
    pub(crate) in_process: Option<crate::prepare::Announce>,
    pub(crate) max_receive: Option<usize>,
    pub(crate) max_send: Option<usize>,
    pub(crate) drain_timeout: Option<Duration>,
    pub(crate) environment: Option<Environment>,
    pub(crate) tls: TlsConfig,
    pub(crate) config_file: Option<std::path::PathBuf>,
    /// Settings given in code: the typed methods and [`Builder::config`].
    pub(crate) overlay: rpcplugin_config::Overlay,
    pub(crate) capture_stderr: bool,
    pub(crate) broker: crate::broker::PluginBroker,
    pub(crate) broker_dial_timeout: Option<Duration>,
    pub(crate) debug: bool,
    pub(crate) layers: crate::layers::ServiceLayers,
    pub(crate) rate_limit: Option<RateLimit>,
    pub(crate) concurrency_limit: Option<usize>,
    pub(crate) server_settings: crate::layers::ServerSettings,
    pub(crate) handle: crate::PluginHandle,
    pub(crate) metrics: crate::metrics::Metrics,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("cookie_key", &self.cookie.as_ref().map(|c| &c.0))
            .field("versions", &self.versions)
            .field("versioned", &self.versioned)
            .field("services", &self.service_names)
            .field("transports", &self.transports)
            .field("transport", &self.transport)
            .field("connectors", &self.connectors)
            .field("tls", &self.tls)
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

    /// Adds a tonic-generated service with the plugin's message limits (256 MiB by
    /// default, [`Builder::max_message_sizes`](crate::Builder::max_message_sizes)),
    /// not tonic's 4 MiB. A server generated in your own crate needs
    /// [`impl_limited_service!`](crate::impl_limited_service) once; a service that is
    /// not generated goes in with [`add_service_with`](Self::add_service_with).
    pub fn add_service<S: PluginService + LimitedService>(self, service: S) -> Self {
        self.add_service_with(move |limits| limits.apply(service))
    }

    /// Adds a tonic service built with the configured [`Limits`]:
    /// `.add_service_with(|limits| limits.apply(KvServer::new(store)))`.
    pub fn add_service_with<S, F>(mut self, make: F) -> Self
    where
        F: FnOnce(Limits) -> S + Send + 'static,
        S: PluginService,
    {
        self.service_names.push(S::NAME.to_owned());
        self.services.push(Box::new(move |limits, layers, routes| {
            layers.add(make(limits), routes);
        }));
        self
    }

    /// Wraps each of the plugin's own services in `layer` (tonic's `Server::layer`
    /// shape): a `tower::timeout::TimeoutLayer`, a `ServiceBuilder` stack, your own
    /// layer. The first layer given is the outermost. The built-in health,
    /// controller, stdio, broker and reflection services are not wrapped, so the
    /// host's health checks, shutdown and brokered connections keep working
    /// whatever the layers refuse. An error from a layer reaches the host as a gRPC
    /// status (`tower::timeout`'s expiry as `DEADLINE_EXCEEDED`).
    ///
    /// ```no_run
    /// # use rpcplugin_proto::examples::kv::kv_server::{Kv, KvServer};
    /// # fn example(store: impl Kv) -> std::process::ExitCode {
    /// use rpcplugin_server::PluginServer;
    /// use std::time::Duration;
    ///
    /// PluginServer::builder()
    ///     .handshake("BASIC_PLUGIN", "hello")
    ///     .layer(tower::timeout::TimeoutLayer::new(Duration::from_secs(5)))
    ///     .add_service_with(|limits| limits.apply(KvServer::new(store)))
    ///     .run()
    /// # }
    /// ```
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<BoxedService> + Send + Sync + 'static,
        L::Service: Service<http::Request<Body>, Response = http::Response<Body>>
            + Clone
            + Send
            + Sync
            + 'static,
        <L::Service as Service<http::Request<Body>>>::Future: Send + 'static,
        <L::Service as Service<http::Request<Body>>>::Error: Into<BoxError>,
    {
        self.layers.push(layer);
        self
    }

    /// Limits the rate of calls to the plugin's own services with a token bucket
    /// shared by all of them; a call over the limit fails at once with
    /// `RESOURCE_EXHAUSTED` and a message naming the limit. Default: off, or
    /// `PLUGIN_RATE_LIMIT_ENABLED` with `PLUGIN_RATE_LIMIT_REQUESTS_PER_SECOND`
    /// (100) and `PLUGIN_RATE_LIMIT_BURST_CAPACITY` (200), pyvider-rpcplugin's
    /// variables. Built-in services are never limited (see [`layer`](Self::layer)).
    pub fn rate_limit(mut self, limit: RateLimit) -> Self {
        self.rate_limit = Some(limit);
        self
    }

    /// At most `max` calls in flight in the plugin's own services together; the
    /// next one fails at once with `RESOURCE_EXHAUSTED` (default: no limit).
    /// Built-in services are not counted.
    pub fn concurrency_limit(mut self, max: usize) -> Self {
        self.concurrency_limit = Some(max);
        self
    }

    /// tonic's `concurrency_limit_per_connection`: at most `limit` calls in flight
    /// per connection, the next ones wait. It counts every call on the connection,
    /// the built-in services' included (default: none).
    pub fn concurrency_limit_per_connection(mut self, limit: usize) -> Self {
        self.server_settings.concurrency_limit_per_connection = Some(limit);
        self
    }

    /// tonic's `timeout`: a call whose response is not ready within `timeout` is
    /// cancelled (a streaming call's time ends when its stream begins); every
    /// service's calls, the built-in ones' included (default: none).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.server_settings.timeout = Some(timeout);
        self
    }

    /// tonic's `max_concurrent_streams`: the HTTP/2 streams a host may open at once
    /// on one connection (default: hyper's).
    pub fn max_concurrent_streams(mut self, max: u32) -> Self {
        self.server_settings.max_concurrent_streams = Some(max);
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
        let transports: Vec<Network> = transports.into_iter().collect();
        if transports
            .iter()
            .all(|n| matches!(n, Network::Unix | Network::Tcp))
        {
            // Shown as set in code by `effective_settings`.
            let names: Vec<String> = transports.iter().map(|n| n.as_str().to_owned()).collect();
            self.overlay.set("server_transports", names);
        }
        self.transports = Some(transports);
        self
    }

    /// Serves over this transport instead of a Unix socket or loopback TCP: a
    /// custom one ([`Transport`]: an abstract Unix socket, a vsock, ...), or a
    /// built-in one set up in code. Wins over [`transports`](Self::transports) and
    /// `PLUGIN_SERVER_TRANSPORTS`. The handshake line announces its network and
    /// the endpoint its listener reports; the host needs a connector for that
    /// network (the client builder's `.connector(..)`). Services brokered by
    /// this plugin are served over it too.
    pub fn transport(mut self, transport: impl Transport + 'static) -> Self {
        self.transport = Some(std::sync::Arc::new(transport));
        self
    }

    /// Dials `network`'s endpoints with `connector` (any tower
    /// `Service<Endpoint>` returning a byte stream) when this plugin's broker
    /// dials a service the host brokers over a custom network. `unix` and `tcp`
    /// are built in.
    pub fn connector<S>(mut self, network: Network, connector: S) -> Self
    where
        S: Service<Endpoint> + Clone + Send + Sync + 'static,
        S::Response: Io,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        S::Future: Send + 'static,
    {
        self.connectors = self.connectors.with(network, connector);
        self
    }

    /// Message size limits for services added with [`Builder::add_service`] or
    /// [`Builder::add_service_with`], and for the built-in ones.
    pub fn max_message_sizes(mut self, receive: usize, send: usize) -> Self {
        self.max_receive = Some(receive);
        self.max_send = Some(send);
        self.config("grpc_max_receive_message_size", receive)
            .config("grpc_max_send_message_size", send)
    }

    /// How long in-flight calls may take to finish once a stop begins (default: the
    /// `shutdown_grace` setting, 2 s); then connections are closed.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = Some(timeout);
        self
    }

    /// The plugin's TLS, all at once: what it presents, which host certificates it
    /// trusts, AutoMTLS or not ([`TlsConfig`]), as a host's builder takes it.
    /// Replaces what [`auto_mtls`], [`auto_mtls_key`], [`identity`] and
    /// [`client_ca_roots`] set before; each of those changes its one part of this
    /// value. The table in docs/security.md says what is then served.
    ///
    /// ```no_run
    /// use rpcplugin_server::{CertificateDer, Identity, PluginServer, TlsConfig};
    ///
    /// # fn example(plugin: Identity, hosts_ca: CertificateDer<'static>) -> std::process::ExitCode {
    /// // A plugin certificate from a CA, and only hosts with a certificate of that CA.
    /// PluginServer::builder()
    ///     .handshake("BASIC_PLUGIN", "hello")
    ///     .tls(TlsConfig::new().identity(plugin).ca_roots([hosts_ca]))
    ///     .run()
    /// # }
    /// ```
    ///
    /// [`auto_mtls`]: Self::auto_mtls
    /// [`auto_mtls_key`]: Self::auto_mtls_key
    /// [`identity`]: Self::identity
    /// [`client_ca_roots`]: Self::client_ca_roots
    pub fn tls(mut self, config: TlsConfig) -> Self {
        self.tls = config;
        self
    }

    /// Whether to serve mutual TLS when the host asks for it by sending its
    /// certificate in `PLUGIN_CLIENT_CERT` (default: `PLUGIN_AUTO_MTLS`, else true).
    /// Turned off, the plugin serves plaintext to such a host, which an rpcplugin or
    /// go-plugin host then refuses: leave it on unless you test exactly that.
    pub fn auto_mtls(mut self, enabled: bool) -> Self {
        self.tls = self.tls.auto_mtls(enabled);
        self
    }

    /// The key type of the certificate generated for AutoMTLS (default ECDSA
    /// P-256, which every peer's TLS stack accepts; go-plugin's own is P-521).
    pub fn auto_mtls_key(mut self, algorithm: KeyAlgorithm) -> Self {
        self.tls = self.tls.auto_mtls_key(algorithm);
        self
    }

    /// Serves TLS with this certificate and key instead of a generated pair
    /// (default: `PLUGIN_SERVER_CERT` and `PLUGIN_SERVER_KEY`). Hosts are then
    /// verified against [`Builder::client_ca_roots`], or, without roots, must
    /// present exactly the certificate they sent in `PLUGIN_CLIENT_CERT`.
    pub fn identity(mut self, identity: Identity) -> Self {
        self.tls = self.tls.identity(identity);
        self
    }

    /// Requires hosts to present a certificate issued by one of these CAs (default:
    /// `PLUGIN_CLIENT_ROOT_CERTS`). Turns TLS on even without a host certificate in
    /// `PLUGIN_CLIENT_CERT`.
    pub fn client_ca_roots(
        mut self,
        roots: impl IntoIterator<Item = CertificateDer<'static>>,
    ) -> Self {
        self.tls = self.tls.ca_roots(roots);
        self
    }

    /// Reads settings from this file (TOML, YAML or JSON) instead of the one named
    /// by `PLUGIN_CONFIG_FILE`; environment variables still override it.
    pub fn config_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.config_file = Some(path.into());
        self
    }

    /// Sets any setting in code, by its key (`ignore_sigint`), its variable
    /// (`PLUGIN_IGNORE_SIGINT`) or a pyvider-rpcplugin name
    /// (`PLUGIN_GRPC_GRACE_PERIOD`): pyvider-rpcplugin's per-instance `config` dict.
    /// Values set in code win over the environment and the config file; they are
    /// checked when the plugin starts (or by
    /// [`effective_settings`](Self::effective_settings)), with the same messages as
    /// a variable's.
    ///
    /// ```
    /// use rpcplugin_server::PluginServer;
    ///
    /// let builder = PluginServer::builder()
    ///     .handshake("BASIC_PLUGIN", "hello")
    ///     .configs([("PLUGIN_RATE_LIMIT_ENABLED", "true"), ("rate_limit_requests_per_second", "50")]);
    /// let loaded = builder.effective_settings().unwrap();
    /// assert!(loaded.settings().rate_limit_enabled);
    /// assert_eq!(loaded.settings().rate_limit_requests_per_second, 50.0);
    /// ```
    pub fn config(
        mut self,
        key: impl Into<String>,
        value: impl Into<rpcplugin_config::ConfigValue>,
    ) -> Self {
        self.overlay.set(key, value);
        self
    }

    /// [`config`](Self::config) for each pair.
    pub fn configs<K, V>(mut self, pairs: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<rpcplugin_config::ConfigValue>,
    {
        self.overlay.extend(pairs);
        self
    }

    /// The settings this plugin would start with (defaults < config file <
    /// environment < code), with where each came from and what in the environment
    /// is not used.
    ///
    /// # Errors
    ///
    /// What starting would fail with for a configuration mistake.
    pub fn effective_settings(&self) -> Result<rpcplugin_config::Loaded> {
        let env = self
            .environment
            .clone()
            .unwrap_or_else(Environment::capture);
        rpcplugin_config::Settings::resolve(&env, self.config_file.as_deref(), &self.overlay)
    }

    /// Records OpenTelemetry metrics with `meter` (feature `otel`; off by default,
    /// and then nothing is added to a call's path): `rpc.server.duration`
    /// (milliseconds, by `rpc.service`, `rpc.method` and `rpc.grpc.status_code`, as
    /// OpenTelemetry's RPC semantic conventions name them; its count is the calls),
    /// `rpcplugin.server.active_calls`, `rpcplugin.server.connections` (open) and
    /// `rpcplugin.server.connections.accepted`. The plugin's own services are
    /// measured, not the protocol's built-in ones.
    #[cfg(feature = "otel")]
    pub fn meter(mut self, meter: &opentelemetry::metrics::Meter) -> Self {
        self.metrics = crate::metrics::Metrics::new(meter);
        self
    }

    /// Whether SIGINT is ignored (default: `PLUGIN_IGNORE_SIGINT`, true): a
    /// terminal's Ctrl-C reaches the whole process group, and the host decides how
    /// its plugins stop, as go-plugin does.
    pub fn ignore_sigint(self, ignore: bool) -> Self {
        self.config("ignore_sigint", ignore)
    }

    /// Whether to serve `grpc.health.v1.Health` (default:
    /// `PLUGIN_HEALTH_SERVICE_ENABLED`, true). Without it hosts skip their health
    /// checks, as for old go-plugin plugins.
    pub fn health_service(self, enabled: bool) -> Self {
        self.config("health_service_enabled", enabled)
    }

    /// Stops the plugin when this file appears (default:
    /// `PLUGIN_SHUTDOWN_FILE_PATH`, none): looked for every second, removed, and the
    /// plugin stops as on SIGTERM, with [`StopReason::ShutdownFile`](crate::StopReason::ShutdownFile).
    pub fn shutdown_file(self, path: impl Into<std::path::PathBuf>) -> Self {
        self.config("shutdown_file_path", path.into())
    }

    /// Binds this Unix socket path instead of one in a private directory
    /// (default: `PLUGIN_SERVER_UNIX_SOCKET_PATH`, none). A stale socket there is
    /// replaced; a live one is an error.
    pub fn unix_socket_path(self, path: impl Into<std::path::PathBuf>) -> Self {
        self.config("server_unix_socket_path", path.into())
    }

    /// Over TCP, listens on this loopback address and port (default:
    /// `PLUGIN_SERVER_HOST`, 127.0.0.1, and `PLUGIN_SERVER_PORT`, a port in the
    /// host's range or any; `0` is any). Addresses other than loopback are refused.
    pub fn tcp_address(self, host: impl Into<String>, port: u16) -> Self {
        self.config("server_host", host.into())
            .config("server_port", port)
    }

    /// How many days a generated (AutoMTLS) certificate is valid (default:
    /// `PLUGIN_CERT_VALIDITY_DAYS`, 30).
    pub fn cert_validity_days(self, days: u32) -> Self {
        self.config("cert_validity_days", days)
    }

    /// Also streams what is written on stderr after the handshake over
    /// `plugin.GRPCStdio`, as stdout always is (default: off).
    ///
    /// Off, stderr stays the log channel every go-plugin host reads and parses as
    /// hclog, and a crash report written there reaches the host even when the
    /// process dies at once. On, writes to file descriptor 2 (`eprintln!`, C
    /// libraries, child processes) travel over GRPCStdio instead, while the logs of
    /// [`logging`](crate::logging) still go to the original stderr.
    pub fn capture_stderr(mut self, enabled: bool) -> Self {
        self.capture_stderr = enabled;
        self
    }

    /// The plugin's [`GrpcBroker`], for services that call back into the host
    /// (`broker.dial(id)`) or serve it more (`broker.accept_and_serve(id, ..)`).
    /// Clone it into your services before [`serve`](Self::serve); it works once
    /// the plugin serves.
    pub fn broker(&self) -> GrpcBroker {
        self.broker.broker()
    }

    /// A [`PluginHandle`](crate::PluginHandle) on this server: where it serves
    /// once it does, a status snapshot (uptime, connections, calls) and the health
    /// it reports. Clones share one server; take it before serving. Taking one
    /// turns on the per-call counters (an atomic add or two per call); a plugin
    /// that never takes one does not count.
    pub fn handle(&self) -> crate::PluginHandle {
        self.handle.clone().observed()
    }

    /// How long [`GrpcBroker::dial`] waits for the host to announce an id
    /// (default [`DEFAULT_BROKER_DIAL_TIMEOUT`](crate::DEFAULT_BROKER_DIAL_TIMEOUT), 5 s, as go-plugin).
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

    /// Serves inside this process, for a host in the same process (what
    /// `rpcplugin::testing` does): the handshake line is handed to `announce`
    /// instead of being printed; stdout and stderr are left alone and no signal
    /// handler or parent watch is installed. Stops when the host calls
    /// Shutdown or `signal` completes. The environment (set with
    /// [`environment`](Self::environment)) stands for what the host would set;
    /// the cookie check is skipped, the host being this very program.
    /// Give it a [`transport`](Self::transport) the host can dial.
    pub async fn serve_in_process(
        mut self,
        announce: impl FnOnce(HandshakeLine) + Send + 'static,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Result<StopReason> {
        self.in_process = Some(Box::new(announce));
        self.serve_with_shutdown(signal).await
    }

    /// Like [`Builder::serve`], and also stops when `signal` completes.
    pub async fn serve_with_shutdown(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Result<StopReason> {
        // However serving ends (a bad configuration included), the handle says
        // stopped and its `ready()` waiters wake.
        let _stopped = StoppedOnDrop(self.handle.clone());
        let prepared = self.prepare()?;
        prepared.run(signal).await
    }
}

struct StoppedOnDrop(crate::PluginHandle);

impl Drop for StoppedOnDrop {
    fn drop(&mut self) {
        self.0.stopped();
    }
}
