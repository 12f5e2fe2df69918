//! The running plugin a host holds: its channel, handshake, broker and process.

use rpcplugin_core::Code;
use std::ffi::OsStr;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rpcplugin_core::{Endpoint, Error, Result};
use rpcplugin_handshake::HandshakeLine;
use rpcplugin_layers::{CallCounts, CallStats, CallStatsLayer};
use rpcplugin_transport::SocketDir;
use tokio::process::Child;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::{Builder, EffectiveSandbox, GrpcBroker, Target, output};
#[cfg(feature = "otel")]
use crate::{TraceContext, TracedChannel};

/// A running plugin. Start one with [`PluginClient::builder`].
#[derive(Debug)]
pub struct PluginClient {
    pub(crate) name: String,
    pub(crate) pid: u32,
    pub(crate) child: Option<Child>,
    pub(crate) channel: Channel,
    pub(crate) handshake: HandshakeLine,
    pub(crate) socket_dir: Option<SocketDir>,
    pub(crate) tail: Arc<output::Tail>,
    pub(crate) grace: Duration,
    pub(crate) stderr_task: Option<JoinHandle<()>>,
    pub(crate) stdout_task: Option<JoinHandle<()>>,
    pub(crate) stdio_task: Option<JoinHandle<()>>,
    pub(crate) target: Target,
    pub(crate) broker: rpcplugin_broker::Driver,
    pub(crate) attached: bool,
    /// When the host had the plugin connected and healthy.
    pub(crate) started: Instant,
    /// The counters behind [`PluginClient::call_stats`].
    pub(crate) calls: CallStats,
    /// The host's instruments (feature `otel`).
    pub(crate) metrics: crate::metrics::Metrics,
    /// How long the phases of the start took; `None` for an attached client.
    pub(crate) timings: Option<StartTimings>,
    /// The confinement the plugin was started with.
    pub(crate) sandbox: Option<EffectiveSandbox>,
}

/// How long each phase of [`Builder::start`] took, from
/// [`PluginClient::start_timings`]: where a slow start spends its time
/// (`rpcplugin probe` reports them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct StartTimings {
    /// From just before the spawn to the handshake line read: the process starting,
    /// its runtime loading, and the plugin's own setup up to the moment it serves.
    pub handshake: Duration,
    /// From the handshake line to a connected channel (TLS and the broker's stream
    /// included).
    pub connect: Duration,
    /// The first health check's round trip.
    pub health: Duration,
}

/// A snapshot of a plugin as its host sees it, from [`PluginClient::status`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientStatus {
    /// Time since the plugin was started (or attached) and found healthy.
    pub uptime: Duration,
    /// Connections made to the plugin's address: 1 while the first holds,
    /// more after tonic reconnected (the plugin restarted its listener, or the
    /// connection broke). Brokered connections are not counted.
    pub connects: u64,
    /// Calls through the layers from [`PluginClient::call_stats`]: in flight,
    /// finished and failed. A channel used without that layer is not counted
    /// (tonic's `Channel` is a concrete type that has no place for a counter).
    pub calls: CallCounts,
}

impl PluginClient {
    /// A builder for the plugin executable at `program`.
    pub fn builder(program: impl AsRef<OsStr>) -> Builder {
        Builder::new(program)
    }

    /// A channel to the plugin for tonic-generated clients; cheap to clone. Calls
    /// fail with `Unavailable` once the plugin is gone; they never hang on a dead one.
    ///
    /// tonic keeps message limits in each generated client, not in the channel: a
    /// client made with `KvClient::new(plugin.channel())` decodes at most tonic's
    /// 4 MiB. Make clients with [`new_client!`](crate::new_client) to get this
    /// plugin's limits ([`max_receive_message_size`](Self::max_receive_message_size)).
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// The largest message the host's clients decode: the builder's
    /// [`max_message_sizes`](Builder::max_message_sizes), else
    /// `PLUGIN_GRPC_MAX_RECEIVE_MESSAGE_SIZE`, else
    /// [`DEFAULT_HOST_MAX_MESSAGE_SIZE`](crate::DEFAULT_HOST_MAX_MESSAGE_SIZE).
    /// [`new_client!`](crate::new_client) applies it.
    pub fn max_receive_message_size(&self) -> usize {
        self.target.connection.max_receive
    }

    /// The largest message the host's clients encode, as
    /// [`max_receive_message_size`](Self::max_receive_message_size) with
    /// `PLUGIN_GRPC_MAX_SEND_MESSAGE_SIZE`.
    pub fn max_send_message_size(&self) -> usize {
        self.target.connection.max_send
    }

    /// [`PluginClient::channel`] with the caller's trace context on every call
    /// (feature `otel`): the current span's W3C `traceparent` and `tracestate` go in
    /// the gRPC metadata, and an rpcplugin plugin built with `otel` makes its request
    /// span a child of it, so one trace covers host and plugin.
    #[cfg(feature = "otel")]
    pub fn traced_channel(&self) -> TracedChannel {
        tonic::service::interceptor::InterceptedService::new(self.channel.clone(), TraceContext)
    }

    /// How long each phase of the start took (spawn to handshake, connect, first
    /// health answer); `None` for a client that attached to a running plugin.
    pub fn start_timings(&self) -> Option<StartTimings> {
        self.timings
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

    /// The sandbox the plugin runs in, as applied: Landlock's rules (the implicit
    /// ones included), TCP ports, scoping, seccomp, and what the kernel lacked.
    /// `None` for an unconfined or attached plugin. See
    /// [`Builder::sandbox`](crate::Builder::sandbox).
    pub fn sandbox(&self) -> Option<&EffectiveSandbox> {
        self.sandbox.as_ref()
    }

    /// Whether the connection runs mutual TLS.
    pub fn is_tls(&self) -> bool {
        self.target.dial.is_some()
    }

    /// A tower layer that counts the calls through it into this client's
    /// [`status`](Self::status): wrap the channel with it where calls should
    /// be counted.
    ///
    /// ```no_run
    /// # async fn run(plugin: rpcplugin_client::PluginClient) {
    /// let channel = tower::ServiceBuilder::new()
    ///     .layer(plugin.call_stats())
    ///     .service(plugin.channel());
    /// // KvClient::new(channel) ... then:
    /// let calls = plugin.status().calls;
    /// println!("{} in flight, {} failed of {}", calls.in_flight, calls.failed, calls.finished);
    /// # drop(channel); }
    /// ```
    pub fn call_stats(&self) -> CallStatsLayer {
        self.calls.layer()
    }

    /// A tower layer that records OpenTelemetry metrics of the calls made through
    /// it (`rpc.client.duration` by method and status, `rpcplugin.client.active_calls`)
    /// with the builder's [`meter`](crate::Builder::meter); `None` without one.
    ///
    /// ```no_run
    /// # async fn example(plugin: rpcplugin_client::PluginClient) {
    /// use rpcplugin_proto::examples::kv::kv_client::KvClient;
    /// let channel = tower::ServiceBuilder::new()
    ///     .option_layer(plugin.call_metrics())
    ///     .service(plugin.channel());
    /// let mut kv = KvClient::new(channel);
    /// # let _ = kv; }
    /// ```
    #[cfg(feature = "otel")]
    pub fn call_metrics(&self) -> Option<rpcplugin_layers::RpcMetricsLayer> {
        self.metrics.inner.as_ref().map(|m| m.rpc.layer())
    }

    /// A snapshot of the plugin as this host sees it: uptime, connections made,
    /// and the calls counted by [`call_stats`](Self::call_stats) layers. Whether the
    /// process still runs is [`try_exit_status`](Self::try_exit_status).
    pub fn status(&self) -> ClientStatus {
        ClientStatus {
            uptime: self.started.elapsed(),
            connects: self
                .target
                .connects
                .load(std::sync::atomic::Ordering::Relaxed),
            calls: self.calls.snapshot(),
        }
    }

    /// The broker for bidirectional plugins: serve services to the plugin under
    /// an id ([`GrpcBroker::accept_and_serve`]) or dial ones it serves
    /// ([`GrpcBroker::dial`]). Cheap to clone.
    pub fn broker(&self) -> GrpcBroker {
        self.broker.broker()
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

    pub(crate) async fn finish_io(&mut self) {
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
