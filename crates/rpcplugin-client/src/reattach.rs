//! Attaching to a plugin that is already running (go-plugin's reattach): a plugin
//! started by hand in debug mode, under a debugger, or kept alive across hosts.
//!
//! The host connects with the plugin's reattach information (the JSON a debug-mode
//! rpcplugin plugin prints, Terraform's `TF_REATTACH_PROVIDERS` entry shape) and
//! never signals the process: it did not start it. Stopping or dropping the client
//! only closes the connection and the broker; the plugin goes on serving.

use rpcplugin_core::Code;
use std::sync::Arc;
use std::time::Duration;

use rpcplugin_config::{Environment, Settings};
use rpcplugin_core::{Endpoint, Error, Result};
use rpcplugin_crypto::{CertificateDer, Identity, TlsConfig};
use rpcplugin_handshake::{HandshakeLine, ReattachConfig};

use rpcplugin_core::Network;
use rpcplugin_transport::{Connectors, Transport};
use tower::Service;

use crate::{Connection, PluginClient, Target, connect, output, tls};

/// Configures an attach to a running plugin. Start with [`PluginClient::attach`].
#[derive(Debug)]
#[must_use]
pub struct AttachBuilder {
    config: ReattachConfig,
    name: Option<String>,
    versions: Vec<u32>,
    environment: Option<Environment>,
    tls: TlsConfig,
    broker_dial_timeout: Option<Duration>,
    connectors: Connectors,
    broker_transport: Option<Arc<dyn Transport>>,
    max_message_sizes: Option<(usize, usize)>,
}

impl PluginClient {
    /// Attaches to the running plugin `config` describes, instead of starting one.
    ///
    /// ```no_run
    /// # async fn example() -> rpcplugin_client::Result<()> {
    /// use rpcplugin_client::{PluginClient, ReattachConfig};
    /// // The line a plugin printed in debug mode, passed the way your application
    /// // chooses (Terraform uses the TF_REATTACH_PROVIDERS variable).
    /// let json = std::env::var("MY_APP_REATTACH").unwrap_or_default();
    /// let plugin = PluginClient::attach(ReattachConfig::from_json(&json)?)
    ///     .protocol_versions([1])
    ///     .start()
    ///     .await?;
    /// // ... use plugin.channel() ...
    /// plugin.stop().await?; // detaches; the plugin keeps running
    /// # Ok(()) }
    /// ```
    pub fn attach(config: ReattachConfig) -> AttachBuilder {
        AttachBuilder {
            config,
            name: None,
            versions: vec![1],
            environment: None,
            tls: TlsConfig::new(),
            broker_dial_timeout: None,
            connectors: Connectors::new(),
            broker_transport: None,
            max_message_sizes: None,
        }
    }

    /// Whether this client attached to a plugin it did not start (then it never
    /// signals the process, and [`stop`](Self::stop) only detaches).
    pub fn is_attached(&self) -> bool {
        self.attached
    }
}

impl AttachBuilder {
    /// The name used in logs and errors (default `pid-PID`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The app protocol versions this host speaks (default `[1]`); the plugin's
    /// must be one of them.
    pub fn protocol_versions(mut self, versions: impl IntoIterator<Item = u32>) -> Self {
        self.versions = versions.into_iter().collect();
        self
    }

    /// The host's TLS, all at once ([`TlsConfig`]), as [`Builder::tls`](crate::Builder::tls)
    /// takes it; replaces what [`identity`](Self::identity) and
    /// [`server_ca_roots`](Self::server_ca_roots) set before. AutoMTLS is never
    /// used for an attach (it needs a plugin this host starts): only a configured
    /// certificate reaches a running plugin that serves TLS.
    pub fn tls(mut self, config: TlsConfig) -> Self {
        self.tls = config;
        self
    }

    /// The certificate this host presents to a plugin that serves TLS (default:
    /// `PLUGIN_CLIENT_CERT` and `PLUGIN_CLIENT_KEY`). A debug-mode plugin with
    /// configured TLS requires one issued by its `PLUGIN_CLIENT_ROOT_CERTS`.
    pub fn identity(mut self, identity: Identity) -> Self {
        self.tls = self.tls.identity(identity);
        self
    }

    /// Verifies the plugin's certificate against these CAs instead of pinning the
    /// one in the reattach information (default: `PLUGIN_SERVER_ROOT_CERTS`).
    pub fn server_ca_roots(
        mut self,
        roots: impl IntoIterator<Item = CertificateDer<'static>>,
    ) -> Self {
        self.tls = self.tls.ca_roots(roots);
        self
    }

    /// How long [`GrpcBroker::dial`](crate::GrpcBroker::dial) waits for the plugin to announce an id.
    pub fn broker_dial_timeout(mut self, timeout: Duration) -> Self {
        self.broker_dial_timeout = Some(timeout);
        self
    }

    /// Dials `network`'s endpoints with `connector`: any tower
    /// `Service<Endpoint>` whose response is a byte stream
    /// ([`Io`](rpcplugin_transport::Io)), as tonic's `connect_with_connector`
    /// takes one. A plugin serving on a custom network needs one; without it the attach
    /// fails with `transport.no_connector`. Registering `unix` or `tcp` replaces the
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
    /// [`new_client!`](crate::new_client), as [`Builder::max_message_sizes`](crate::Builder::max_message_sizes).
    pub fn max_message_sizes(mut self, receive: usize, send: usize) -> Self {
        self.max_message_sizes = Some((receive, send));
        self
    }

    /// Reads settings from this environment instead of the host process's.
    pub fn environment(mut self, environment: Environment) -> Self {
        self.environment = Some(environment);
        self
    }

    /// Connects to the plugin and checks its health.
    ///
    /// # Errors
    ///
    /// `process.reattach_gone` when no process has the pid, the version and TLS
    /// refusals a launch has (`handshake.incompatible_app_version`,
    /// `security.*`), and `transport.connect` when nothing answers at the address.
    pub async fn start(self) -> Result<PluginClient> {
        let env = self.environment.unwrap_or_else(Environment::capture);
        let mut settings = Settings::from_environment(&env)?;
        if let Some((receive, send)) = self.max_message_sizes {
            settings.grpc_max_receive_message_size = Some(receive);
            settings.grpc_max_send_message_size = Some(send);
        }
        let config = self.config;
        let name = self.name.unwrap_or_else(|| format!("pid-{}", config.pid));
        check_alive(&name, config.pid)?;
        let line = announced_line(&name, &config, &self.versions)?;
        // AutoMTLS needs a plugin this host starts: only configured certificates
        // can reach a plugin that is already running.
        let host_tls = tls::resolve(&self.tls.auto_mtls(false), &settings)?;
        let server_cert = config.server_cert.as_deref();
        let dial = host_tls
            .dial(&name, server_cert, &config.endpoint)
            .map_err(|err| attach_tls_hint(err, &name))?;
        self.connectors.require(&config.endpoint).map_err(|e| {
            let hint = e.hint().unwrap_or_default().to_owned();
            Error::new(
                e.code(),
                format!(
                    "plugin {name} serves over {}, which this host cannot dial",
                    config.endpoint.network()
                ),
            )
            .with_hint(hint)
            .with_source(e)
        })?;
        let transport: Arc<dyn Transport> = match (self.broker_transport, &config.endpoint) {
            (Some(custom), _) => custom,
            // Brokered sockets in private directories of this host's own.
            (None, Endpoint::Unix(_) | Endpoint::Custom(..)) => {
                Arc::new(rpcplugin_transport::UnixTransport::new())
            }
            (None, Endpoint::Tcp(_)) => Arc::new(rpcplugin_transport::TcpTransport::new()),
            // `Endpoint` is non-exhaustive: one added in core before this host
            // can broker over it.
            (None, other) => {
                return Err(Error::new(
                    Code::TransportNoCommonNetwork,
                    format!(
                        "plugin {name} runs on {other} over {}, which this host cannot use",
                        other.network()
                    ),
                )
                .with_hint("reattach to a plugin serving on a unix socket or tcp"));
            }
        };
        let ready = connect::broker_ready(
            &host_tls,
            server_cert,
            dial.as_ref(),
            transport,
            &self.connectors,
            None,
            self.broker_dial_timeout,
        )?;
        let target = Target {
            endpoint: config.endpoint.clone(),
            dial: dial.map(Arc::new),
            mux: None,
            connection: Connection::from_settings(&settings),
            connectors: self.connectors,
            connects: Default::default(),
        };
        let channel = connect::open_channel(&name, &target).await?;
        connect::check_health(&name, &channel, &target, settings.channel_ready_timeout).await?;
        let broker = crate::broker::start(channel.clone(), ready, &name);
        tracing::debug!(plugin = %name, pid = config.pid, endpoint = %config.endpoint, tls = target.dial.is_some(), "attached to a running plugin");
        Ok(PluginClient {
            name,
            pid: config.pid,
            child: None,
            channel,
            handshake: line,
            socket_dir: None,
            tail: Arc::new(output::Tail::default()),
            grace: settings.shutdown_grace,
            stderr_task: None,
            stdout_task: None,
            stdio_task: None,
            target,
            broker,
            attached: true,
            started: std::time::Instant::now(),
            calls: Default::default(),
            metrics: Default::default(),
            timings: None,
            // Started by someone else, confined (or not) by them.
            sandbox: None,
        })
    }
}

/// The handshake line the reattach information stands for, checked as a launched
/// plugin's would be.
fn announced_line(name: &str, config: &ReattachConfig, versions: &[u32]) -> Result<HandshakeLine> {
    let mut line = HandshakeLine::new(config.app_version, config.endpoint.clone());
    if let Some(der) = &config.server_cert {
        line = line.with_server_cert(der.clone());
    }
    rpcplugin_handshake::check_line(&line, versions).map_err(|e| {
        Error::new(
            e.code(),
            format!("plugin {name} cannot be used by this host"),
        )
        .with_hint(e.hint().unwrap_or_default().to_owned())
        .with_source(e)
    })?;
    Ok(line)
}

fn check_alive(name: &str, pid: u32) -> Result<()> {
    let gone = match i32::try_from(pid) {
        Ok(raw) => matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None),
            Err(nix::errno::Errno::ESRCH)
        ),
        Err(_) => true,
    };
    if gone {
        return Err(Error::new(
            Code::ProcessReattachGone,
            format!("plugin {name} is not running: no process has pid {pid}"),
        )
        .with_hint(
            "the reattach information is from a plugin that has exited; start it again in \
             debug mode and pass the line it prints",
        ));
    }
    Ok(())
}

fn attach_tls_hint(err: Error, name: &str) -> Error {
    if err.code() != Code::SecurityUnexpectedCertificate {
        return err;
    }
    Error::new(
        err.code(),
        format!("plugin {name} serves TLS and this host has no certificate"),
    )
    .with_hint(format!(
        "plugin {name} serves TLS (its reattach information has a ServerCert): give this host a \
         certificate from the CA in the plugin's PLUGIN_CLIENT_ROOT_CERTS (PLUGIN_CLIENT_CERT and \
         PLUGIN_CLIENT_KEY, or .identity())"
    ))
    // Not the source: its hint is about AutoMTLS, which an attach cannot use.
}
