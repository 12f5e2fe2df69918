//! [`Builder`]: what a host configures before it starts a plugin.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use rpcplugin_config::{Environment, Settings};
use rpcplugin_core::{Endpoint, Error, ErrorKind, Result};
use rpcplugin_crypto::{CertificateDer, Identity, KeyAlgorithm, Sha256};
use rpcplugin_handshake::{HandshakeLine, MagicCookie, PluginEnv};
use rpcplugin_transport::SocketDir;
use tokio::io::BufReader;
use tokio::process::Command;
use tonic::transport::Channel;

use crate::start::verify_checksum;
use crate::{
    Connection, DEFAULT_BROKER_DIAL_TIMEOUT, GrpcBroker, PluginClient, ResourceLimits, StdioSink,
    broker, launch, output, registry, stdio, tls,
};

/// Configures and starts a plugin. See the [crate docs](crate).
///
/// Cloneable, so that one configuration can start several instances (a
/// [`Supervisor`](crate::Supervisor) restarts from a clone).
#[derive(Debug, Clone)]
#[must_use]
pub struct Builder {
    program: OsString,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    env_clear: bool,
    current_dir: Option<PathBuf>,
    name: Option<String>,
    cookie: Option<(String, String)>,
    versions: Vec<u32>,
    handshake_timeout: Option<Duration>,
    shutdown_grace: Option<Duration>,
    environment: Option<Environment>,
    tls: tls::TlsOptions,
    checksum: Option<Sha256>,
    limits: ResourceLimits,
    config_file: Option<PathBuf>,
    stdio: stdio::Sink,
    broker_dial_timeout: Option<Duration>,
    multiplex: bool,
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
            handshake_timeout: None,
            shutdown_grace: None,
            environment: None,
            tls: tls::TlsOptions::default(),
            checksum: None,
            limits: ResourceLimits::default(),
            config_file: None,
            stdio: stdio::Sink::default(),
            broker_dial_timeout: None,
            multiplex: false,
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
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = Some(timeout);
        self
    }

    /// How long each stop step waits before the next (default: `PLUGIN_SHUTDOWN_GRACE`, 2 s).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = Some(grace);
        self
    }

    /// AutoMTLS (default: `PLUGIN_AUTO_MTLS`, else on): the host makes a throw-away
    /// certificate, passes it to the plugin in `PLUGIN_CLIENT_CERT`, and accepts only
    /// the certificate the plugin announces in its handshake. With it on, a plugin
    /// that answers in plaintext is refused (`security.plaintext_handshake`), never
    /// used. `false` is plaintext, for plugins that cannot serve TLS: anyone who
    /// can reach the plugin's socket can then call it.
    pub fn auto_mtls(mut self, enabled: bool) -> Self {
        self.tls.auto_mtls = Some(enabled);
        self
    }

    /// The key type of the host's AutoMTLS certificate (default ECDSA P-256;
    /// go-plugin hosts use P-521).
    pub fn auto_mtls_key(mut self, algorithm: KeyAlgorithm) -> Self {
        self.tls.key_algorithm = algorithm;
        self
    }

    /// Presents this certificate instead of a generated one (default:
    /// `PLUGIN_CLIENT_CERT` with `PLUGIN_CLIENT_KEY` in the host's environment). Its
    /// certificate is still sent to the plugin in `PLUGIN_CLIENT_CERT`; the key never is.
    pub fn identity(mut self, identity: Identity) -> Self {
        self.tls.identity = Some(identity);
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
        self.tls.server_roots = Some(roots.into_iter().collect());
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

    /// How long [`GrpcBroker::dial`] waits for the plugin to announce an id
    /// (default [`DEFAULT_BROKER_DIAL_TIMEOUT`], 5 s, as go-plugin).
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

    /// Reads settings from this environment instead of the host process's.
    pub fn environment(mut self, environment: Environment) -> Self {
        self.environment = Some(environment);
        self
    }

    /// Launches the plugin and returns once it is connected and healthy.
    pub async fn start(self) -> Result<PluginClient> {
        let env = self
            .environment
            .clone()
            .unwrap_or_else(Environment::capture);
        let settings = Settings::from_sources(&env, self.config_file.as_deref())?;
        let name = self.name.clone().unwrap_or_else(|| {
            std::path::Path::new(&self.program)
                .file_name()
                .unwrap_or(&self.program)
                .to_string_lossy()
                .into_owned()
        });
        let Some((key, value)) = settings.magic_cookie(self.cookie.clone()) else {
            return Err(Error::new(ErrorKind::Config, "config.missing_cookie", "no magic cookie configured for this host")
                .with_hint("call .handshake(KEY, VALUE) on the client builder with the plugin's cookie (go-plugin's KV example: BASIC_PLUGIN=hello)"));
        };
        if self.versions.is_empty() {
            return Err(Error::new(
                ErrorKind::Config,
                "config.no_versions",
                "the host speaks no app protocol version",
            )
            .with_hint("call .protocol_versions([1]) on the client builder"));
        }
        let timeout = self.handshake_timeout.unwrap_or(settings.handshake_timeout);
        let grace = self.shutdown_grace.unwrap_or(settings.shutdown_grace);

        let host_tls = self.tls.resolve(&settings)?;
        let program = match &self.checksum {
            Some(expected) => {
                // Hashing a large executable takes milliseconds of blocking reads:
                // keep them off the async worker.
                let (program, env, expected) = (self.program.clone(), env.clone(), *expected);
                tokio::task::spawn_blocking(move || verify_checksum(&program, &env, &expected))
                    .await
                    .map_err(|e| {
                        Error::new(
                            ErrorKind::Security,
                            "security.checksum_read",
                            "the checksum of the plugin could not be computed",
                        )
                        .with_source(e)
                    })??
            }
            None => self.program.clone(),
        };

        let socket_dir = SocketDir::create(
            settings.unix_socket_dir.as_deref(),
            settings.unix_socket_group.as_deref(),
        )?;
        let mut plugin_env = PluginEnv::new(MagicCookie::new(key, value)?);
        plugin_env.protocol_versions = self.versions.clone();
        plugin_env.unix_socket_dir = Some(socket_dir.path().to_owned());
        plugin_env.unix_socket_group = settings.unix_socket_group.clone();
        if let (Some(min), Some(max)) = (settings.min_port, settings.max_port) {
            plugin_env.port_range = Some((min, max));
        }
        plugin_env.client_cert_pem = host_tls.client_cert_pem();
        plugin_env.multiplex_grpc = self.multiplex;

        let mut command = Command::new(&program);
        command.args(&self.args);
        if self.env_clear {
            command.env_clear();
        }
        command.envs(self.envs.iter().map(|(k, v)| (k, v)));
        // Never hand the host's private key down, and never let a certificate this
        // host inherited (from its own host) stand in for the one it sends.
        command.env_remove("PLUGIN_CLIENT_KEY");
        command.env_remove("PLUGIN_CLIENT_CERT");
        command.envs(plugin_env.to_vars());
        if let Some(dir) = &self.current_dir {
            command.current_dir(dir);
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());

        let mut child = launch::spawn(command, self.limits)
            .await
            .map_err(|err| spawn_error(&self.program, err))?;
        let pid = child.id().unwrap_or_default();
        registry::register(pid, &name);
        tracing::debug!(plugin = %name, pid, "plugin started");

        let tail = Arc::new(output::Tail::default());
        let stderr_task = child.stderr.take().map(|stderr| {
            tokio::spawn(output::forward_stderr(
                BufReader::new(stderr),
                tail.clone(),
                name.clone(),
                pid,
            ))
        });
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));

        let mut client = PluginClient {
            name,
            pid,
            child: Some(child),
            channel: Channel::from_static("http://localhost").connect_lazy(),
            handshake: HandshakeLine::new(0, Endpoint::Unix(PathBuf::new())),
            socket_dir: Some(socket_dir),
            tail,
            grace,
            stderr_task,
            stdout_task: None,
            stdio_task: None,
            tls: false,
            target: None,
            broker: GrpcBroker::detached(),
            attached: false,
        };
        // From here every failure drops `client`, which kills the process group and
        // removes the socket directory.
        let line = client.read_handshake(&mut stdout, timeout).await?;
        client.stdout_task = Some(tokio::spawn(output::drain_stdout(
            stdout,
            client.name.clone(),
            pid,
        )));
        client.handshake =
            client.check_handshake(&line, &self.versions, &settings.client_transports)?;
        let dial = host_tls
            .dial(
                &client.name,
                client.handshake.server_cert.as_deref(),
                &client.handshake.endpoint,
            )
            .map_err(|err| client.with_line_context(err, &line))?;
        client.tls = dial.is_some();
        let pinned = dial.as_ref().is_some_and(|d| d.pinned);
        let mux = match (self.multiplex, client.handshake.multiplex) {
            (false, _) => None,
            (true, true) => Some(Arc::new(rpcplugin_transport::MuxRouter::new())),
            (true, false) => {
                return Err(Error::new(
                    ErrorKind::Config,
                    "config.multiplex_unsupported",
                    format!(
                        "plugin {} does not support a multiplexed broker",
                        client.name
                    ),
                )
                .with_hint(
                    "its handshake line has no 7th field `true`: build it with rpcplugin or \
                     go-plugin 1.6+, or leave .multiplex_grpc() off for it",
                ));
            }
        };
        let broker_ready = broker::Ready {
            mux: mux.clone(),
            transport: match (&client.handshake.endpoint, &client.socket_dir) {
                (Endpoint::Unix(_), Some(dir)) => {
                    Arc::new(rpcplugin_transport::UnixTransport::new().dir(dir.path()))
                }
                _ => Arc::new(rpcplugin_transport::TcpTransport::new()),
            },
            accept_tls: host_tls.broker_accept(client.handshake.server_cert.as_deref())?,
            dial_tls: dial.as_ref().map(|d| d.config.clone()),
            dial_timeout: self
                .broker_dial_timeout
                .unwrap_or(DEFAULT_BROKER_DIAL_TIMEOUT),
        };
        if let Some(router) = &mux {
            client.start_session(router.clone()).await?;
        }
        client.channel = client
            .connect(dial, mux, Connection::from_settings(&settings))
            .await?;
        // Opened first, as go-plugin hosts do; a plugin without a broker just
        // closes it.
        client.broker = GrpcBroker::start(client.channel.clone(), broker_ready, &client.name);
        client
            .broker
            .set_endpoint(client.handshake.endpoint.clone());
        client.check_health(pinned).await?;
        client.stdio_task = Some(stdio::spawn(
            client.channel.clone(),
            self.stdio.clone(),
            client.name.clone(),
            pid,
        ));
        Ok(client)
    }
}

fn spawn_error(program: &OsStr, err: std::io::Error) -> Error {
    let hint = match err.kind() {
        std::io::ErrorKind::NotFound => {
            "check the path to the plugin executable (relative paths are resolved against PATH and the working directory)"
        }
        std::io::ErrorKind::PermissionDenied => {
            "make the plugin file executable (chmod +x) and check its directory permissions"
        }
        _ => "check that the plugin executable can be run on this machine",
    };
    Error::new(
        ErrorKind::Process,
        "process.spawn",
        format!("cannot start plugin {}", program.to_string_lossy()),
    )
    .with_source(err)
    .with_hint(hint)
}
