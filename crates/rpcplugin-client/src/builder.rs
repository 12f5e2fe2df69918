//! [`Builder`]: what a host configures before it starts a plugin.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rpcplugin_config::{ConfigValue, Environment, Loaded, Overlay};
use rpcplugin_core::{Endpoint, Network, Result};
use rpcplugin_crypto::{CertificateDer, Identity, KeyAlgorithm, Sha256};
use rpcplugin_transport::{Connectors, Transport};
use tower::Service;

use rpcplugin_crypto::TlsConfig;

use crate::{PluginClient, ResourceLimits, Sandbox, StdioSink, stdio};

/// Configures and starts a plugin. See the [crate docs](crate).
///
/// Cloneable, so that one configuration can start several instances (a
/// [`Supervisor`](crate::Supervisor) restarts from a clone).
#[derive(Debug, Clone)]
#[must_use]
pub struct Builder {
    pub(crate) program: OsString,
    pub(crate) args: Vec<OsString>,
    pub(crate) envs: Vec<(OsString, OsString)>,
    pub(crate) env_clear: bool,
    pub(crate) current_dir: Option<PathBuf>,
    pub(crate) name: Option<String>,
    pub(crate) cookie: Option<(String, String)>,
    pub(crate) versions: Vec<u32>,
    /// Settings given in code: the typed methods and [`Builder::config`].
    pub(crate) overlay: Overlay,
    /// Instruments for starts, restarts, exits and calls (feature `otel`).
    pub(crate) metrics: crate::metrics::Metrics,
    pub(crate) environment: Option<Environment>,
    pub(crate) tls: TlsConfig,
    pub(crate) checksum: Option<Sha256>,
    pub(crate) limits: ResourceLimits,
    pub(crate) config_file: Option<PathBuf>,
    pub(crate) stdio: stdio::Sink,
    pub(crate) broker_dial_timeout: Option<Duration>,
    pub(crate) multiplex: bool,
    pub(crate) connectors: Connectors,
    pub(crate) broker_transport: Option<Arc<dyn Transport>>,
    /// `None`: as `PLUGIN_SANDBOX` says; `Some(None)`: unconfined whatever it says.
    pub(crate) sandbox: Option<Option<Sandbox>>,
}

impl Builder {
    pub(crate) fn new(program: impl AsRef<OsStr>) -> Self {
        Self {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            envs: Vec::new(),
            env_clear: false,
            current_dir: None,
            name: None,
            cookie: None,
            versions: vec![1],
            overlay: Overlay::new(),
            metrics: Default::default(),
            environment: None,
            tls: TlsConfig::new(),
            checksum: None,
            limits: ResourceLimits::default(),
            config_file: None,
            stdio: stdio::Sink::default(),
            broker_dial_timeout: None,
            multiplex: false,
            connectors: Connectors::new(),
            broker_transport: None,
            sandbox: None,
        }
    }

    /// Adds an argument for the plugin.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds arguments for the plugin.
    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Self {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable for the plugin (the protocol's own variables are
    /// set after these and win, as with go-plugin).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Starts the plugin with only the variables set here and the protocol's own,
    /// instead of inheriting the host's environment.
    pub fn env_clear(mut self) -> Self {
        self.env_clear = true;
        self
    }

    /// The plugin's working directory.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.current_dir = Some(dir.into());
        self
    }

    /// The name used in logs and errors (default: the executable's file name).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The magic cookie: `key=value` is set in the plugin's environment, and the
    /// plugin refuses to start without it. Must match the plugin's.
    pub fn handshake(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.cookie = Some((key.into(), value.into()));
        self
    }

    /// The app protocol versions this host speaks (default `[1]`).
    pub fn protocol_versions(mut self, versions: impl IntoIterator<Item = u32>) -> Self {
        self.versions = versions.into_iter().collect();
        self
    }

    /// How long to wait for the handshake line (default: `PLUGIN_HANDSHAKE_TIMEOUT`, 30 s).
    pub fn handshake_timeout(self, timeout: Duration) -> Self {
        self.config("handshake_timeout", timeout)
    }

    /// How long each stop step waits before the next (default: `PLUGIN_SHUTDOWN_GRACE`, 2 s).
    pub fn shutdown_grace(self, grace: Duration) -> Self {
        self.config("shutdown_grace", grace)
    }

    /// How long connecting to the plugin's address may take, TLS included
    /// (default: `PLUGIN_CONNECTION_TIMEOUT`, 5 s).
    pub fn connection_timeout(self, timeout: Duration) -> Self {
        self.config("connection_timeout", timeout)
    }

    /// How long the plugin may take to answer its first health check once
    /// connected (default: `PLUGIN_CHANNEL_READY_TIMEOUT`, 10 s).
    pub fn channel_ready_timeout(self, timeout: Duration) -> Self {
        self.config("channel_ready_timeout", timeout)
    }

    /// HTTP/2 keepalive on the connection to the plugin: a PING after `time` idle,
    /// dead if unanswered within `timeout` (default: `PLUGIN_GRPC_KEEPALIVE_TIME`,
    /// unset, so none: the plugin is local).
    pub fn keepalive(self, time: Duration, timeout: Duration) -> Self {
        self.config("grpc_keepalive_time", time)
            .config("grpc_keepalive_timeout", timeout)
    }

    /// The transports this host accepts, preferred first (default:
    /// `PLUGIN_CLIENT_TRANSPORTS`, Unix then TCP). A plugin that announces another
    /// is refused.
    pub fn client_transports(self, networks: impl IntoIterator<Item = Network>) -> Self {
        let names: Vec<String> = networks
            .into_iter()
            .map(|n| n.as_str().to_owned())
            .collect();
        self.config("client_transports", names)
    }

    /// The directory in which each plugin gets its private socket directory
    /// (default: `PLUGIN_UNIX_SOCKET_DIR`, else the temporary directory). Must exist.
    pub fn unix_socket_dir(self, dir: impl Into<PathBuf>) -> Self {
        self.config("unix_socket_dir", dir.into())
    }

    /// A group (name or gid) that may use the plugin's socket: its directory
    /// becomes 0770 and the socket 0660 (default: `PLUGIN_UNIX_SOCKET_GROUP`, none).
    pub fn unix_socket_group(self, group: impl Into<String>) -> Self {
        self.config("unix_socket_group", group.into())
    }

    /// The TCP ports the plugin may listen on (default: `PLUGIN_MIN_PORT` and
    /// `PLUGIN_MAX_PORT`, else any; go-plugin hosts use 10000 to 25000).
    pub fn port_range(self, min: u16, max: u16) -> Self {
        self.config("min_port", min).config("max_port", max)
    }

    /// How long a generated (AutoMTLS) certificate is valid, in days (default:
    /// `PLUGIN_CERT_VALIDITY_DAYS`, 30).
    pub fn cert_validity_days(self, days: u32) -> Self {
        self.config("cert_validity_days", days)
    }

    /// Launches the plugin again when its start fails, up to `max_retries` more
    /// times, waiting an exponential backoff with jitter between attempts (from
    /// 100 ms, doubling, at most 5 s, within 30 s in all; each part is a setting:
    /// `PLUGIN_CLIENT_INITIAL_BACKOFF_MS`, `PLUGIN_CLIENT_BACKOFF_MULTIPLIER`,
    /// `PLUGIN_CLIENT_MAX_BACKOFF_MS`, `PLUGIN_CLIENT_RETRY_JITTER_MS`,
    /// `PLUGIN_CLIENT_RETRY_TOTAL_TIMEOUT_S`). Default: `PLUGIN_CLIENT_RETRY_ENABLED`,
    /// off, as go-plugin. `0` turns retries off.
    ///
    /// A refusal that another attempt cannot change (a wrong magic cookie, a
    /// checksum, TLS, no common version, any configuration error) is returned at
    /// once. When every attempt fails, the error is the last one and lists the
    /// others.
    pub fn retry_start(self, max_retries: u32) -> Self {
        self.config("client_retry_enabled", max_retries > 0)
            .config("client_max_retries", max_retries)
    }

    /// Records OpenTelemetry metrics with `meter` (feature `otel`; off by default,
    /// and then nothing is measured): `rpcplugin.plugin.starts` by outcome (`ok`
    /// or the error code), `rpcplugin.plugin.restarts` (a
    /// [`Supervisor`](crate::Supervisor)'s), `rpcplugin.plugin.exits` by reason
    /// (`shutdown_rpc`, `sigterm`, `sigkill`, `exited`, `failed`), each with the
    /// attribute `plugin`; and the calls made through
    /// [`PluginClient::call_metrics`](crate::PluginClient::call_metrics)
    /// (`rpc.client.duration` and `rpcplugin.client.active_calls`).
    #[cfg(feature = "otel")]
    pub fn meter(mut self, meter: &opentelemetry::metrics::Meter) -> Self {
        self.metrics = crate::metrics::Metrics::new(meter);
        self
    }

    /// Sets any setting in code, by its key (`handshake_timeout`), its variable
    /// (`PLUGIN_HANDSHAKE_TIMEOUT`) or a pyvider-rpcplugin name
    /// (`PLUGIN_GRPC_KEEPALIVE_TIME_MS`): pyvider-rpcplugin's per-instance `config`
    /// dict. Values set in code win over the environment and the config file. The
    /// value is checked when the plugin starts (or by
    /// [`effective_settings`](Self::effective_settings)), with the same messages as
    /// a variable's.
    ///
    /// ```
    /// use rpcplugin_client::PluginClient;
    /// use std::time::Duration;
    ///
    /// let builder = PluginClient::builder("./kv_plugin")
    ///     .handshake("BASIC_PLUGIN", "hello")
    ///     .config("PLUGIN_CONNECTION_TIMEOUT", "2s")
    ///     .config("grpc_keepalive_time", Duration::from_secs(30));
    /// let settings = builder.effective_settings().unwrap();
    /// assert_eq!(settings.settings().connection_timeout, Duration::from_secs(2));
    /// ```
    pub fn config(mut self, key: impl Into<String>, value: impl Into<ConfigValue>) -> Self {
        self.overlay.set(key, value);
        self
    }

    /// [`config`](Self::config) for each pair.
    pub fn configs<K, V>(mut self, pairs: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<ConfigValue>,
    {
        self.overlay.extend(pairs);
        self
    }

    /// The settings a start would use (defaults < config file < environment <
    /// code), with where each came from and what in the environment is not used.
    ///
    /// # Errors
    ///
    /// What a start would fail with for a configuration mistake.
    pub fn effective_settings(&self) -> Result<Loaded> {
        let env = self
            .environment
            .clone()
            .unwrap_or_else(Environment::capture);
        rpcplugin_config::Settings::resolve(&env, self.config_file.as_deref(), &self.overlay)
    }

    /// The host's TLS, all at once: what it presents, which plugin certificates it
    /// trusts, AutoMTLS or not ([`TlsConfig`]). Replaces what [`auto_mtls`],
    /// [`auto_mtls_key`], [`identity`] and [`server_ca_roots`] set before; each of
    /// those changes its one part of this value.
    ///
    /// ```no_run
    /// use rpcplugin_client::{CertificateDer, Identity, PluginClient, TlsConfig};
    ///
    /// # async fn example(host: Identity, plugins_ca: CertificateDer<'static>)
    /// # -> rpcplugin_client::Result<()> {
    /// // A host certificate from the plugins' CA, and plugin certificates of that CA.
    /// let tls = TlsConfig::new().identity(host).ca_roots([plugins_ca]);
    /// let plugin = PluginClient::builder("./kv_plugin")
    ///     .handshake("BASIC_PLUGIN", "hello")
    ///     .tls(tls)
    ///     .start()
    ///     .await?;
    /// # plugin.stop().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// [`auto_mtls`]: Self::auto_mtls
    /// [`auto_mtls_key`]: Self::auto_mtls_key
    /// [`identity`]: Self::identity
    /// [`server_ca_roots`]: Self::server_ca_roots
    pub fn tls(mut self, config: TlsConfig) -> Self {
        self.tls = config;
        self
    }

    /// AutoMTLS (default: `PLUGIN_AUTO_MTLS`, else on): the host makes a throw-away
    /// certificate, passes it to the plugin in `PLUGIN_CLIENT_CERT`, and accepts only
    /// the certificate the plugin announces in its handshake. With it on, a plugin
    /// that answers in plaintext is refused (`security.plaintext_handshake`), never
    /// used. `false` is plaintext, for plugins that cannot serve TLS: anyone who
    /// can reach the plugin's socket can then call it.
    pub fn auto_mtls(mut self, enabled: bool) -> Self {
        self.tls = self.tls.auto_mtls(enabled);
        self
    }

    /// The key type of the host's AutoMTLS certificate (default ECDSA P-256;
    /// go-plugin hosts use P-521).
    pub fn auto_mtls_key(mut self, algorithm: KeyAlgorithm) -> Self {
        self.tls = self.tls.auto_mtls_key(algorithm);
        self
    }

    /// Presents this certificate instead of a generated one (default:
    /// `PLUGIN_CLIENT_CERT` with `PLUGIN_CLIENT_KEY` in the host's environment). Its
    /// certificate is still sent to the plugin in `PLUGIN_CLIENT_CERT`; the key never is.
    pub fn identity(mut self, identity: Identity) -> Self {
        self.tls = self.tls.identity(identity);
        self
    }

    /// Accepts a plugin certificate issued by one of these CAs and naming `localhost`
    /// (its IP address over non-loopback TCP), instead of pinning the certificate the
    /// plugin announces (default: `PLUGIN_SERVER_ROOT_CERTS`). For plugins that serve
    /// with CA-issued certificates, which may announce none.
    pub fn server_ca_roots(
        mut self,
        roots: impl IntoIterator<Item = CertificateDer<'static>>,
    ) -> Self {
        self.tls = self.tls.ca_roots(roots);
        self
    }

    /// Refuses to launch the plugin unless its executable's SHA-256 is `expected`
    /// (go-plugin's `SecureConfig`). The file is hashed just before it is started;
    /// the path that was hashed is the path that runs (a relative or bare name is
    /// resolved first), though a writer who can replace the file between the two
    /// could still swap it: keep plugin directories writable only by their owner.
    pub fn checksum(mut self, expected: Sha256) -> Self {
        self.checksum = Some(expected);
        self
    }

    /// Resource limits for the plugin process (memory, CPU time, open files), set
    /// in the child before it runs the plugin. A spawn that cannot apply them fails.
    pub fn resource_limits(mut self, limits: ResourceLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Confines the plugin (Linux): Landlock file-system and TCP rules, scoped
    /// signals and abstract sockets, `no_new_privs` and a seccomp deny-list,
    /// applied in the child before it runs the plugin, so the plugin and
    /// everything it starts are confined. `None` runs it unconfined whatever
    /// `PLUGIN_SANDBOX` says; without this call, `PLUGIN_SANDBOX` and its sibling
    /// settings decide (default off).
    ///
    /// What the plugin may use beyond its executable, the system libraries and
    /// its socket directory is the policy's: see [`Sandbox`]. What was applied is
    /// [`PluginClient::sandbox`], and the host logs it once at start. A kernel
    /// that lacks a feature fails the start (`security.sandbox_unsupported`, the
    /// hint naming it) unless the policy says
    /// [`IfUnsupported::Warn`](crate::IfUnsupported::Warn).
    ///
    /// A sandboxed plugin's `TMPDIR` is its private socket directory (removed
    /// when it stops) unless [`env`](Self::env) sets one; its working directory
    /// is not readable unless the policy names it. Served over TCP, it is
    /// brokered over Unix sockets in that directory (which it may reach) instead
    /// of loopback TCP ports no rule could name in advance.
    pub fn sandbox(mut self, policy: impl Into<Option<Sandbox>>) -> Self {
        self.sandbox = Some(policy.into());
        self
    }

    /// Reads settings from this file (TOML, YAML or JSON) instead of the one named
    /// by `PLUGIN_CONFIG_FILE`; environment variables still override it.
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config_file = Some(path.into());
        self
    }

    /// Where the plugin's `GRPCStdio` output goes: what it writes on stdout after
    /// the handshake (`println!` included), and on stderr when the plugin captures
    /// that too.
    ///
    /// By default each stdout line becomes a `tracing` event at INFO with target
    /// `rpcplugin_client::stdio`, and each stderr line is logged as the stderr
    /// pipe's lines are (hclog levels), both with the fields `plugin` and `pid`;
    /// lines are cut at 64 KiB. A [`StdioSink`] gets the bytes as they come instead.
    /// Plugins without the service (go-plugin before 1.1, pyvider-rpcplugin) send
    /// nothing, which is fine.
    pub fn stdio_sink(mut self, sink: impl StdioSink) -> Self {
        self.stdio = stdio::Sink::Custom(Arc::new(sink));
        self
    }

    /// How long [`GrpcBroker::dial`](crate::GrpcBroker::dial) waits for the plugin to announce an id
    /// (default [`DEFAULT_BROKER_DIAL_TIMEOUT`](crate::DEFAULT_BROKER_DIAL_TIMEOUT), 5 s, as go-plugin).
    pub fn broker_dial_timeout(mut self, timeout: Duration) -> Self {
        self.broker_dial_timeout = Some(timeout);
        self
    }

    /// Asks for a multiplexed broker (go-plugin 1.6's `PLUGIN_MULTIPLEX_GRPC`,
    /// default off): the main connection and every brokered one run as yamux
    /// streams inside the one connection to the plugin, each with its own TLS,
    /// instead of a socket per brokered id. A plugin that does not announce
    /// support in its handshake is refused (`config.multiplex_unsupported`).
    pub fn multiplex_grpc(mut self, enabled: bool) -> Self {
        self.multiplex = enabled;
        self
    }

    /// Dials `network`'s endpoints with `connector`: any tower
    /// `Service<Endpoint>` whose response is a byte stream
    /// ([`Io`](rpcplugin_transport::Io)), as tonic's `connect_with_connector`
    /// takes one. A plugin announcing a custom network (its builder's
    /// `.transport(..)`) needs one; without it the start fails with
    /// `transport.no_connector`. Registering `unix` or `tcp` replaces the
    /// built-in connector. Brokered connections to the plugin use it too.
    pub fn connector<S>(mut self, network: Network, connector: S) -> Self
    where
        S: Service<Endpoint> + Clone + Send + Sync + 'static,
        S::Response: rpcplugin_transport::Io,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        S::Future: Send + 'static,
    {
        self.connectors = self.connectors.with(network, connector);
        self
    }

    /// Binds the servers this host brokers for the plugin
    /// ([`GrpcBroker::accept_and_serve`](crate::GrpcBroker::accept_and_serve))
    /// with this transport (default: Unix sockets in a private directory, or
    /// loopback TCP). The plugin then needs a connector for its network.
    pub fn broker_transport(mut self, transport: impl Transport + 'static) -> Self {
        self.broker_transport = Some(Arc::new(transport));
        self
    }

    /// The message limits of the clients made with
    /// [`new_client!`](crate::new_client): the largest message they decode
    /// (`receive`) and encode (`send`). Default: `PLUGIN_GRPC_MAX_RECEIVE_MESSAGE_SIZE`
    /// and `PLUGIN_GRPC_MAX_SEND_MESSAGE_SIZE`, else
    /// [`DEFAULT_HOST_MAX_MESSAGE_SIZE`](crate::DEFAULT_HOST_MAX_MESSAGE_SIZE)
    /// (`i32::MAX`, what go-plugin's hosts allow).
    pub fn max_message_sizes(self, receive: usize, send: usize) -> Self {
        self.config("grpc_max_receive_message_size", receive)
            .config("grpc_max_send_message_size", send)
    }

    /// Reads settings from this environment instead of the host process's.
    pub fn environment(mut self, environment: Environment) -> Self {
        self.environment = Some(environment);
        self
    }

    /// The plugin's name in logs, errors and metrics: [`name`](Self::name), else
    /// the executable's file name.
    pub(crate) fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            std::path::Path::new(&self.program)
                .file_name()
                .unwrap_or(&self.program)
                .to_string_lossy()
                .into_owned()
        })
    }

    /// Launches the plugin and returns once it is connected and healthy.
    ///
    /// The phases, each a function of its own: resolve the settings (builder over
    /// environment over config file), verify the executable's checksum when one is
    /// set, spawn it, read and check its handshake line, connect (TLS, the
    /// multiplexed session, the broker) and check its health. A failure in any
    /// phase after the spawn ends the process and removes its socket directory.
    pub async fn start(self) -> Result<PluginClient> {
        crate::start::start(self).await
    }
}
