//! The host side of rpcplugin: launch a plugin process, handshake, and get a tonic
//! [`Channel`] for your generated clients.
//!
//! Works with any go-plugin compatible plugin: rpcplugin's own, go-plugin's (Go) and
//! pyvider-rpcplugin's (Python).
//!
//! ```no_run
//! use rpcplugin_client::PluginClient;
//! use rpcplugin_proto::examples::kv::{kv_client::KvClient, GetRequest};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let plugin = PluginClient::builder("./kv_plugin")
//!     .handshake("BASIC_PLUGIN", "hello")
//!     .protocol_versions([1])
//!     .start()
//!     .await?;
//! let mut kv = KvClient::new(plugin.channel());
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
//! # Feature flags
//!
//! - `otel` (off): `PluginClient::traced_channel` and `TraceContext` send the
//!   current span's W3C trace context (`traceparent`, `tracestate`) with each call,
//!   read through `tracing-opentelemetry`, so that one trace covers host and plugin.

mod broker;
mod launch;
pub mod logline;
mod output;
mod reattach;
mod registry;
mod stdio;
mod supervisor;
mod tls;
#[cfg(feature = "otel")]
mod trace;

pub use broker::{BrokeredServer, DEFAULT_BROKER_DIAL_TIMEOUT, GrpcBroker};
pub use launch::ResourceLimits;
pub use reattach::AttachBuilder;
pub use registry::{cleanup_plugins, kill_all_plugins, running_plugins};
pub use rpcplugin_config::{Environment, Settings};
use rpcplugin_core::Code;
pub use rpcplugin_core::{Endpoint, Error, ErrorKind, Result};
pub use rpcplugin_crypto::{CertificateDer, Identity, KeyAlgorithm, Sha256};
pub use rpcplugin_handshake::{HandshakeLine, ReattachConfig};
/// Sets glibc's allocator thresholds for a process that streams messages: a host
/// calls it once in `main` to get the streaming figures of docs/performance.md on its
/// side too (plugins do it in `PluginServer::run`). The library never calls it for a
/// host by itself, since the allocator belongs to the application.
pub use rpcplugin_transport::tune_allocator;
pub use stdio::{StdioChannel, StdioSink};
pub use supervisor::{RestartPolicy, Supervisor, SupervisorEvent, SupervisorOptions};
pub use tonic::transport::Channel;
#[cfg(feature = "otel")]
pub use trace::{TraceContext, TracedChannel};

use hyper_util::rt::TokioIo;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use rpcplugin_handshake::{MagicCookie, PluginEnv};
use rpcplugin_proto::health::v1::HealthCheckRequest;
use rpcplugin_proto::health::v1::health_check_response::ServingStatus;
use rpcplugin_proto::health::v1::health_client::HealthClient;
use rpcplugin_proto::plugin::grpc_controller_client::GrpcControllerClient;
use rpcplugin_transport::SocketDir;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::BufReader;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// A running plugin. Start one with [`PluginClient::builder`].
#[derive(Debug)]
pub struct PluginClient {
    name: String,
    pid: u32,
    child: Option<Child>,
    channel: Channel,
    handshake: HandshakeLine,
    socket_dir: Option<SocketDir>,
    tail: Arc<output::Tail>,
    grace: Duration,
    stderr_task: Option<JoinHandle<()>>,
    stdout_task: Option<JoinHandle<()>>,
    stdio_task: Option<JoinHandle<()>>,
    tls: bool,
    target: Option<Target>,
    broker: GrpcBroker,
    attached: bool,
}

/// How a plugin ended when it was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopMethod {
    /// It exited after the Shutdown RPC.
    Graceful,
    /// It needed SIGTERM.
    Terminated,
    /// It needed SIGKILL.
    Killed,
    /// It had already exited before the stop began.
    AlreadyExited,
    /// The client had attached to a plugin it did not start
    /// ([`PluginClient::attach`]): it only disconnected, and the plugin runs on.
    Detached,
}

/// The result of [`PluginClient::stop`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    /// Which step of the stop sequence ended the process.
    pub method: StopMethod,
    /// Its exit status (success for [`StopMethod::Detached`], whose process did
    /// not exit).
    pub status: ExitStatus,
}

impl PluginClient {
    /// A builder for the plugin executable at `program`.
    pub fn builder(program: impl AsRef<OsStr>) -> Builder {
        Builder::new(program)
    }

    /// A channel to the plugin for tonic-generated clients; cheap to clone. Calls
    /// fail with `Unavailable` once the plugin is gone; they never hang on a dead one.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// [`PluginClient::channel`] with the caller's trace context on every call
    /// (feature `otel`): the current span's W3C `traceparent` and `tracestate` go in
    /// the gRPC metadata, and an rpcplugin plugin built with `otel` makes its request
    /// span a child of it, so one trace covers host and plugin.
    #[cfg(feature = "otel")]
    pub fn traced_channel(&self) -> TracedChannel {
        tonic::service::interceptor::InterceptedService::new(self.channel.clone(), TraceContext)
    }

    /// The plugin's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The plugin's name in logs and errors (the executable's file name by default).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The handshake the plugin sent: negotiated version, endpoint, protocol.
    pub fn handshake(&self) -> &HandshakeLine {
        &self.handshake
    }

    /// The app protocol version both sides agreed on.
    pub fn protocol_version(&self) -> u32 {
        self.handshake.app_version
    }

    /// Where the plugin serves.
    pub fn endpoint(&self) -> &Endpoint {
        &self.handshake.endpoint
    }

    /// Whether the connection runs mutual TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The broker for bidirectional plugins: serve services to the plugin under
    /// an id ([`GrpcBroker::accept_and_serve`]) or dial ones it serves
    /// ([`GrpcBroker::dial`]). Cheap to clone.
    pub fn broker(&self) -> GrpcBroker {
        self.broker.clone()
    }

    /// The last lines the plugin wrote on stderr.
    pub fn stderr_tail(&self) -> Vec<String> {
        self.tail.lines()
    }

    /// Whether the process has exited (without waiting), with its status.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Stops the plugin: `GRPCController.Shutdown`, a grace period, SIGTERM to its
    /// process group, another grace period, SIGKILL; then reaps it and removes its
    /// socket directory. Never waits longer than about twice the grace plus a second.
    /// An attached client ([`PluginClient::attach`]) only disconnects
    /// ([`StopMethod::Detached`]): it never stops a plugin it did not start.
    pub async fn stop(mut self) -> Result<Stopped> {
        // As go-plugin: the broker goes first, then the plugin.
        self.broker.close();
        let Some(mut child) = self.child.take() else {
            use std::os::unix::process::ExitStatusExt;
            tracing::debug!(plugin = %self.name, pid = self.pid, "detached from the plugin; it keeps running");
            return Ok(Stopped {
                method: StopMethod::Detached,
                status: ExitStatus::from_raw(0),
            });
        };
        let started = Instant::now();
        let stopped = stop_child(&mut child, self.pid, &self.channel, self.grace).await;
        registry::unregister(self.pid);
        tracing::debug!(plugin = %self.name, pid = self.pid, took = ?started.elapsed(), ?stopped, "plugin stopped");
        self.finish_io().await;
        if let Some(dir) = self.socket_dir.take() {
            dir.close()?;
        }
        stopped
    }

    /// Kills the plugin at once (SIGKILL to its process group), reaps it and removes
    /// its socket directory: for a plugin that is hung or must not run a moment longer.
    /// An attached client never signals a plugin it did not start: it detaches.
    pub async fn kill(mut self) -> Result<Stopped> {
        self.broker.close();
        let Some(mut child) = self.child.take() else {
            use std::os::unix::process::ExitStatusExt;
            return Ok(Stopped {
                method: StopMethod::Detached,
                status: ExitStatus::from_raw(0),
            });
        };
        registry::unregister(self.pid);
        let method = match child.try_wait() {
            Ok(Some(_)) => StopMethod::AlreadyExited,
            _ => StopMethod::Killed,
        };
        kill_group(self.pid, Signal::SIGKILL);
        let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
            .await
            .map_err(|_| {
                Error::new(
                    Code::ProcessUnkillable,
                    format!("plugin process {} did not exit after SIGKILL", self.pid),
                )
                .with_hint("the process is probably stuck in the kernel (uninterruptible I/O); check `ps -o stat -p PID`")
            })?
            .map_err(|e| {
                Error::new(Code::ProcessWait, "cannot reap the plugin process")
                    .with_source(e)
            })?;
        tracing::debug!(plugin = %self.name, pid = self.pid, %status, "plugin killed");
        self.finish_io().await;
        if let Some(dir) = self.socket_dir.take() {
            dir.close()?;
        }
        Ok(Stopped { method, status })
    }

    /// Waits until the plugin process exits on its own, and returns its status. The
    /// client stays usable (call [`PluginClient::stop`] or drop it to clean up).
    /// Cancel-safe: dropping the future stops waiting, nothing else.
    ///
    /// # Errors
    ///
    /// `process.not_a_child` for an attached client: only a process this host
    /// started can be waited for.
    pub async fn wait(&mut self) -> Result<ExitStatus> {
        let Some(child) = self.child.as_mut() else {
            return Err(Error::new(
                Code::ProcessNotAChild,
                format!("plugin {} was not started by this host", self.name),
            )
            .with_hint("an attached plugin cannot be waited for; watch its channel instead"));
        };
        child.wait().await.map_err(|e| {
            Error::new(Code::ProcessWait, "cannot wait for the plugin process").with_source(e)
        })
    }

    async fn finish_io(&mut self) {
        if let Some(task) = self.stdout_task.take() {
            task.abort();
        }
        for task in [self.stdio_task.take(), self.stderr_task.take()]
            .into_iter()
            .flatten()
        {
            // Let the last lines reach the log; a grandchild holding stderr open,
            // or a GRPCStdio stream that does not end, must not hold us up.
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_millis(200), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

async fn stop_child(
    child: &mut Child,
    pid: u32,
    channel: &Channel,
    grace: Duration,
) -> Result<Stopped> {
    if let Ok(Some(status)) = child.try_wait() {
        kill_group(pid, Signal::SIGKILL);
        return Ok(Stopped {
            method: StopMethod::AlreadyExited,
            status,
        });
    }
    let mut controller = GrpcControllerClient::new(channel.clone());
    let shutdown = tokio::time::timeout(
        grace,
        controller.shutdown(rpcplugin_proto::plugin::Empty {}),
    );
    match shutdown.await {
        Ok(Ok(_)) => {}
        // go-plugin 1.0.1 stops inside the handler and never replies; the process
        // exiting is what counts.
        Ok(Err(status)) => tracing::debug!(pid, %status, "shutdown call failed"),
        Err(_) => tracing::debug!(pid, "shutdown call timed out"),
    }
    let steps = [
        (None, StopMethod::Graceful),
        (Some(Signal::SIGTERM), StopMethod::Terminated),
        (Some(Signal::SIGKILL), StopMethod::Killed),
    ];
    for (signal, method) in steps {
        if let Some(signal) = signal {
            tracing::debug!(
                pid,
                ?signal,
                "plugin still running; signalling its process group"
            );
            kill_group(pid, signal);
        }
        let wait = if signal == Some(Signal::SIGKILL) {
            Duration::from_secs(5)
        } else {
            grace
        };
        if let Ok(status) = tokio::time::timeout(wait, child.wait()).await {
            let status = status.map_err(|e| {
                Error::new(Code::ProcessWait, "cannot reap the plugin process").with_source(e)
            })?;
            // Children the plugin left behind go with it.
            kill_group(pid, Signal::SIGKILL);
            return Ok(Stopped { method, status });
        }
    }
    Err(Error::new(
        Code::ProcessUnkillable,
        format!("plugin process {pid} did not exit after SIGKILL"),
    )
    .with_hint("the process is probably stuck in the kernel (uninterruptible I/O); check `ps -o stat -p PID`"))
}

fn kill_group(pid: u32, signal: Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        // ESRCH (nobody left in the group) is the normal case after an exit.
        let _ = killpg(Pid::from_raw(pid), signal);
    }
}

impl Drop for PluginClient {
    fn drop(&mut self) {
        self.broker.close();
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = self.pid;
        registry::unregister(pid);
        if matches!(child.try_wait(), Ok(Some(_))) {
            kill_group(pid, Signal::SIGKILL);
            return;
        }
        // No RPC from a destructor: SIGTERM lets an rpcplugin plugin stop gracefully
        // and remove its socket. Its HTTP/2 shutdown needs this host's runtime to
        // answer a PING, so the bounded wait and the SIGKILL happen on a reaper
        // thread rather than by blocking the thread that dropped us.
        kill_group(pid, Signal::SIGTERM);
        let reap = move || {
            let deadline = Instant::now() + DROP_GRACE;
            while Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            // Also takes the plugin's own children, exited leader or not.
            kill_group(pid, Signal::SIGKILL);
            let _ = child.start_kill();
            let _ = child.try_wait();
        };
        let spawned = std::thread::Builder::new()
            .name("rpcplugin-reaper".into())
            .spawn(reap);
        if spawned.is_err() {
            kill_group(pid, Signal::SIGKILL);
        }
    }
}

/// How long a dropped client's plugin gets between SIGTERM and SIGKILL.
const DROP_GRACE: Duration = Duration::from_millis(500);

/// Configures and starts a plugin. See the [crate docs](crate).
///
/// Cloneable, so that one configuration can start several instances (a
/// [`Supervisor`] restarts from a clone).
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
    fn new(program: impl AsRef<OsStr>) -> Self {
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
            return Err(Error::new(Code::ConfigMissingCookie, "no magic cookie configured for this host")
                .with_hint("call .handshake(KEY, VALUE) on the client builder with the plugin's cookie (go-plugin's KV example: BASIC_PLUGIN=hello)"));
        };
        if self.versions.is_empty() {
            return Err(Error::new(
                Code::ConfigNoVersions,
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
                            Code::SecurityChecksumRead,
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
                    Code::ConfigMultiplexUnsupported,
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
        Code::ProcessSpawn,
        format!("cannot start plugin {}", program.to_string_lossy()),
    )
    .with_source(err)
    .with_hint(hint)
}

impl PluginClient {
    /// Describes what the plugin wrote on stderr, for hints.
    async fn stderr_report(&mut self) -> String {
        // A plugin that just exited may still have lines in the pipe.
        if let Some(task) = self.stderr_task.as_mut()
            && tokio::time::timeout(Duration::from_millis(500), task)
                .await
                .is_ok()
        {
            // Finished: a JoinHandle must not be polled again.
            self.stderr_task = None;
        }
        let lines = self.tail.lines();
        if lines.is_empty() {
            "it wrote nothing on stderr".to_owned()
        } else {
            format!("its stderr ended with:\n    {}", lines.join("\n    "))
        }
    }

    async fn read_handshake(
        &mut self,
        stdout: &mut BufReader<tokio::process::ChildStdout>,
        timeout: Duration,
    ) -> Result<String> {
        let child = self.child.as_mut().expect("child is running");
        let read =
            tokio::time::timeout(timeout, output::read_line_limited(stdout, output::MAX_LINE));
        let line = match read.await {
            Ok(Ok(Some(bytes))) => String::from_utf8_lossy(&bytes).into_owned(),
            Ok(Ok(None)) | Ok(Err(_)) => {
                // stdout closed: the plugin exited (or closed stdout) before the line.
                let status = tokio::time::timeout(Duration::from_secs(1), child.wait()).await;
                let how = match status {
                    Ok(Ok(status)) => describe_status(status),
                    _ => "closed its stdout".to_owned(),
                };
                let report = self.stderr_report().await;
                let cookie_hint = if report.contains("plugin")
                    && report.to_lowercase().contains("cookie")
                    || report.contains("not meant to be executed directly")
                {
                    "\n  the plugin did not accept the magic cookie: host and plugin must use the same cookie key and value"
                } else {
                    ""
                };
                return Err(Error::new(
                    Code::HandshakePluginExited,
                    format!("plugin {} {} before the handshake", self.name, how),
                )
                .with_hint(format!("{report}{cookie_hint}")));
            }
            Err(_) => {
                let report = self.stderr_report().await;
                return Err(Error::new(
                    Code::HandshakeTimeout,
                    format!(
                        "plugin {} printed no handshake within {timeout:?}",
                        self.name
                    ),
                )
                .with_hint(format!(
                    "a plugin prints its handshake line on stdout once it serves; raise \
                     PLUGIN_HANDSHAKE_TIMEOUT if it starts slowly; {report}"
                )));
            }
        };
        Ok(line)
    }

    fn check_handshake(
        &mut self,
        line: &str,
        versions: &[u32],
        networks: &[rpcplugin_core::Network],
    ) -> Result<HandshakeLine> {
        let tail = self.tail.lines();
        let with_context = |err: Error, what: &str| {
            let mut hint = format!(
                "the plugin's first stdout line was {:?}",
                truncate(line, 300)
            );
            if !tail.is_empty() {
                hint.push_str(&format!(
                    "; its stderr ended with:\n    {}",
                    tail.join("\n    ")
                ));
            }
            Error::new(err.code(), format!("plugin {} {what}", self.name))
                .with_hint(hint)
                .with_source(err)
        };
        let parsed =
            HandshakeLine::parse(line).map_err(|e| with_context(e, "sent an invalid handshake"))?;
        rpcplugin_handshake::check_line(&parsed, versions).map_err(|e| {
            let what = if e.code() == Code::HandshakeIncompatibleAppVersion {
                "has no app protocol version in common with this host"
            } else {
                "cannot be used by this host"
            };
            with_context(e, what)
        })?;
        let network = parsed.endpoint.network();
        if !networks.contains(&network) {
            return Err(Error::new(
                Code::ConfigTransportNotAllowed,
                format!("plugin {} serves over {network}, which this host does not accept", self.name),
            )
            .with_hint(format!(
                "PLUGIN_CLIENT_TRANSPORTS allows {networks:?}; add {network} there, or set PLUGIN_SERVER_TRANSPORTS for the plugin"
            )));
        }
        Ok(parsed)
    }

    /// Adds the handshake line to a security refusal's hint, for the user to see
    /// what the plugin announced.
    fn with_line_context(&self, err: Error, line: &str) -> Error {
        let hint = format!(
            "{}; the plugin's handshake line was {:?}",
            err.hint().unwrap_or_default(),
            truncate(line.trim(), 120)
        );
        err.with_hint(hint)
    }

    /// Multiplexed: one connection to the plugin and a yamux session over it; the
    /// streams the plugin opens go to the brokered servers it knocked for.
    async fn start_session(&self, router: Arc<rpcplugin_transport::MuxRouter>) -> Result<()> {
        let raw = rpcplugin_transport::connect(&self.handshake.endpoint).await?;
        let (session, mut inbound) =
            rpcplugin_transport::MuxSession::new(raw, rpcplugin_transport::MuxRole::Client);
        router.set_session(session);
        let name = self.name.clone();
        tokio::spawn(async move {
            while let Some(stream) = inbound.accept().await {
                if router.route(stream).is_some() {
                    tracing::warn!(plugin = %name, "closed a stream the plugin opened without knocking");
                }
            }
        });
        Ok(())
    }

    async fn connect(
        &mut self,
        dial: Option<tls::Dial>,
        mux: Option<Arc<rpcplugin_transport::MuxRouter>>,
        connection: Connection,
    ) -> Result<Channel> {
        let target = Target {
            endpoint: self.handshake.endpoint.clone(),
            dial: dial.map(Arc::new),
            mux,
            connection,
        };
        self.target = Some(target.clone());
        let pinned = target.pinned();
        target.channel().await.map_err(|err| {
            if let Some(security) =
                tls::failure_error(&self.name, &self.handshake.endpoint, pinned, &err)
            {
                return security.with_source(err);
            }
            Error::new(
                Code::TransportConnect,
                format!("cannot connect to plugin {} at {}", self.name, self.handshake.endpoint),
            )
            .with_source(err)
            .with_hint("the plugin announced this address but nothing accepts connections there; it may have exited right after the handshake")
        })
    }

    async fn check_health(&self, pinned: bool) -> Result<()> {
        let mut health = HealthClient::new(self.channel.clone());
        let request = HealthCheckRequest {
            service: "plugin".to_owned(),
        };
        match tokio::time::timeout(Duration::from_secs(5), health.check(request)).await {
            Ok(Ok(reply)) if reply.get_ref().status == ServingStatus::Serving as i32 => Ok(()),
            Ok(Ok(reply)) => Err(Error::new(
                Code::ProtocolNotServing,
                format!(
                    "plugin {} reports health status {}",
                    self.name,
                    reply.get_ref().status
                ),
            )
            .with_hint("the plugin is shutting down or not ready; check its log")),
            // Health is optional in the protocol: a plugin without it is still usable.
            Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => Ok(()),
            // TLS 1.3 servers judge the client's certificate after the client's side
            // of the handshake: a refusal arrives with the first call.
            Ok(Err(status)) if self.tls => {
                match tls::failure_error(&self.name, &self.handshake.endpoint, pinned, &status) {
                    Some(security) => Err(security.with_source(status)),
                    None => Err(health_error(&self.name, status)),
                }
            }
            Ok(Err(status)) => Err(health_error(&self.name, status)),
            Err(_) => Err(Error::new(
                Code::ProtocolHealthTimeout,
                format!(
                    "plugin {} did not answer its health check within 5s",
                    self.name
                ),
            )
            .with_hint("the plugin is stuck or overloaded")),
        }
    }
}

/// Where a plugin serves and how to reach it: everything a (re)connection needs.
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) endpoint: Endpoint,
    pub(crate) dial: Option<Arc<tls::Dial>>,
    /// The yamux session's router when the connection is multiplexed: each
    /// connection is then a stream of that session, not a new socket connection.
    pub(crate) mux: Option<Arc<rpcplugin_transport::MuxRouter>>,
    pub(crate) connection: Connection,
}

/// The largest HTTP/2 frame the plugin may send: 1 MiB instead of 16 KiB cuts the
/// per-frame work of large messages (headers, wake-ups, copies) by 64, and small
/// messages are sent in one frame either way. hyper's flow-control windows (2 MiB
/// per stream, 5 MiB per connection) stay: 8 and 16 MiB measured within noise of
/// them (docs/performance.md) and would let an unread stream hold more memory.
const HTTP2_MAX_FRAME_SIZE: u32 = 1 << 20;

/// How channels to a plugin connect and keep their connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Connection {
    pub(crate) timeout: Duration,
    pub(crate) keepalive: Option<(Duration, Duration)>,
}

impl Connection {
    fn from_settings(settings: &Settings) -> Self {
        Self {
            timeout: settings.connection_timeout,
            keepalive: settings
                .grpc_keepalive_time
                .map(|time| (time, settings.grpc_keepalive_timeout)),
        }
    }

    /// A tonic endpoint with these settings. The authority must be a host name:
    /// h2 rejects a socket path there.
    pub(crate) fn endpoint(&self) -> tonic::transport::Endpoint {
        let endpoint = tonic::transport::Endpoint::from_static("http://localhost")
            .connect_timeout(self.timeout)
            .max_frame_size(HTTP2_MAX_FRAME_SIZE);
        match self.keepalive {
            Some((interval, timeout)) => endpoint
                .http2_keep_alive_interval(interval)
                .keep_alive_timeout(timeout)
                .keep_alive_while_idle(true),
            None => endpoint,
        }
    }
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("endpoint", &self.endpoint)
            .field("tls", &self.dial.is_some())
            .field("multiplexed", &self.mux.is_some())
            .field("connection", &self.connection)
            .finish()
    }
}

impl Target {
    fn pinned(&self) -> bool {
        self.dial.as_ref().is_some_and(|d| d.pinned)
    }

    /// One connection: the transport, then TLS when asked.
    pub(crate) async fn connect(&self) -> Result<TokioIo<rpcplugin_transport::Stream>> {
        let stream = match self.mux.as_ref().map(|router| router.session()) {
            None => rpcplugin_transport::connect(&self.endpoint).await?,
            Some(session) => {
                let closed = |err: std::io::Error| {
                    Error::new(
                        Code::TransportConnect,
                        "the multiplexed connection to the plugin is closed",
                    )
                    .with_source(err)
                    .with_hint("the plugin probably exited")
                };
                let session = session.ok_or_else(|| {
                    closed(std::io::Error::from(std::io::ErrorKind::NotConnected))
                })?;
                session.open().await.map_err(closed)?
            }
        };
        let stream = match &self.dial {
            None => stream,
            Some(dial) => stream
                .connect_tls(
                    dial.config.clone(),
                    dial.server_name.clone(),
                    rpcplugin_transport::DEFAULT_TLS_HANDSHAKE_TIMEOUT,
                )
                .await
                .map_err(|err| {
                    Error::new(Code::SecurityTls, "tls handshake failed").with_source(err)
                })?,
        };
        Ok(TokioIo::new(stream))
    }

    /// A connected channel to this target.
    async fn channel(self) -> std::result::Result<Channel, tonic::transport::Error> {
        let endpoint = self.connection.endpoint();
        let connector = tower::service_fn(move |_uri: tonic::transport::Uri| {
            let target = self.clone();
            async move { target.connect().await }
        });
        endpoint.connect_with_connector(connector).await
    }
}

fn health_error(name: &str, status: tonic::Status) -> Error {
    Error::new(
        Code::ProtocolHealth,
        format!("plugin {name} failed its health check"),
    )
    .with_source(status)
    .with_hint("the plugin accepted the connection but cannot answer gRPC calls")
}

/// Hashes the executable that is about to run and returns the path to run, so the
/// file checked is the file started.
fn verify_checksum(program: &OsStr, env: &Environment, expected: &Sha256) -> Result<OsString> {
    let path = resolve_program(program, env).ok_or_else(|| {
        Error::new(
            Code::ProcessSpawn,
            format!("cannot find plugin {}", program.to_string_lossy()),
        )
        .with_hint("give a path to the plugin executable, or put its directory on PATH")
    })?;
    let actual = Sha256::of_file(&path)?;
    if actual != *expected {
        return Err(Error::new(
            Code::SecurityChecksumMismatch,
            format!(
                "plugin {} has SHA-256 {actual}, expected {expected}",
                path.display()
            ),
        )
        .with_hint(
            "the executable is not the one the checksum was taken of: if you rebuilt or              upgraded it, record the new checksum (sha256sum PLUGIN); if not, find out who              changed it before running it",
        ));
    }
    Ok(path.into_os_string())
}

/// A program with a slash is a path (relative to the host's working directory);
/// a bare name is looked up on the host's PATH, as the spawn would.
fn resolve_program(program: &OsStr, env: &Environment) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::path::Path::new(program);
    if program.as_bytes().contains(&b'/') {
        return std::path::absolute(path).ok();
    }
    let search = env.get("PATH")?;
    std::env::split_paths(search)
        .map(|dir| dir.join(path))
        .find(|candidate| candidate.is_file())
        .and_then(|found| std::path::absolute(found).ok())
}

fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        _ => "exited".to_owned(),
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let cut: String = s.chars().take(max).collect();
        format!("{cut}…")
    }
}
