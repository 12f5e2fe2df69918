//! The plugin's view of itself while it serves: [`PluginHandle`], taken from the
//! builder before serving, as the broker is.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rpcplugin_core::{Endpoint, Network};
use rpcplugin_layers::{CallCounts, CallStats};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;

/// A handle on the plugin server: where it serves, how it is doing, and the
/// health it reports. Take it with [`Builder::handle`](crate::Builder::handle)
/// before serving and clone it into your services or a task of your own.
///
/// ```no_run
/// use rpcplugin_server::{HealthStatus, PluginServer};
///
/// # async fn run() -> rpcplugin_server::Result<()> {
/// let builder = PluginServer::builder().handshake("BASIC_PLUGIN", "hello");
/// let handle = builder.handle();
/// tokio::spawn(async move {
///     // Resolves once the plugin listens and has told the host where.
///     let Some(info) = handle.ready().await else { return };
///     eprintln!("serving on {} (TLS {})", info.endpoint, info.tls);
///     // The database went away: hosts checking health see NOT_SERVING.
///     handle.set_health("plugin", HealthStatus::NotServing);
///     eprintln!("{:?}", handle.status());
/// });
/// builder.serve().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct PluginHandle {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: watch::Sender<State>,
    health: watch::Sender<HealthMap>,
    calls: CallStats,
    /// Someone holds a handle: only then are calls counted, so a plugin that
    /// never asks pays nothing per call.
    observed: AtomicBool,
    connections_open: AtomicU64,
    connections_total: AtomicU64,
}

impl Default for Shared {
    fn default() -> Self {
        Self {
            state: watch::Sender::new(State::Starting),
            health: watch::Sender::new(HealthMap::default()),
            calls: CallStats::new(),
            observed: AtomicBool::new(false),
            connections_open: AtomicU64::new(0),
            connections_total: AtomicU64::new(0),
        }
    }
}

#[derive(Debug, Clone)]
enum State {
    Starting,
    Serving(ServingInfo, Instant),
    Stopping(ServingInfo, Instant),
    Stopped,
}

/// Where and how the plugin serves, known once it has bound and announced.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServingInfo {
    /// The address it listens on, as announced in the handshake.
    pub endpoint: Endpoint,
    /// The network of that address (`unix`, `tcp` or a custom transport's).
    pub network: Network,
    /// The app protocol version negotiated with the host.
    pub protocol_version: u32,
    /// Whether the host's connections use TLS (AutoMTLS or configured).
    pub tls: bool,
    /// Whether every connection runs in one multiplexed session.
    pub multiplexed: bool,
}

/// What the plugin is doing, as [`PluginStatus::state`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServingState {
    /// Configuring, binding or announcing; not reachable yet.
    Starting,
    /// Serving calls.
    Serving,
    /// Draining after a stop: health says NOT_SERVING, in-flight calls finish.
    Stopping,
    /// Stopped (or failed to start).
    Stopped,
}

/// A snapshot of the plugin server, from [`PluginHandle::status`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PluginStatus {
    /// Starting, serving, stopping or stopped.
    pub state: ServingState,
    /// Time since it started serving (zero before, frozen at the stop).
    pub uptime: Duration,
    /// Connections from the host open now (a multiplexed session counts its
    /// gRPC streams; brokered connections are not counted).
    pub connections: u64,
    /// Connections accepted since the start.
    pub connections_total: u64,
    /// Calls to the plugin's own services (the built-in health, controller,
    /// stdio, broker and reflection services are not counted): in flight,
    /// finished and failed. Counted from the first [`Builder::handle`](crate::Builder::handle)
    /// before serving; zero if none was taken.
    pub calls: CallCounts,
}

/// A health status that plugin code reports for a service name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HealthStatus {
    /// `SERVING`.
    Serving,
    /// `NOT_SERVING`: a host checking this name sees the plugin as unhealthy
    /// (rpcplugin's supervisor and go-plugin's `Ping` check `"plugin"`).
    NotServing,
}

/// The statuses health reports: what plugin code set, over SERVING for the
/// served names, all NOT_SERVING once draining.
#[derive(Debug, Default, Clone)]
pub(crate) struct HealthMap {
    statuses: HashMap<String, HealthStatus>,
    draining: bool,
}

impl HealthMap {
    /// The status of `service`, or `None` for a name the plugin does not know.
    pub(crate) fn get(&self, service: &str) -> Option<HealthStatus> {
        let status = *self.statuses.get(service)?;
        Some(if self.draining {
            HealthStatus::NotServing
        } else {
            status
        })
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining
    }

    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.statuses.keys().map(String::as_str)
    }
}

impl PluginHandle {
    /// Marks the handle as in use (the builder hands it out).
    pub(crate) fn observed(self) -> Self {
        self.shared.observed.store(true, Ordering::Relaxed);
        self
    }

    /// Waits until the plugin serves and returns where and how; `None` when it
    /// stopped (or failed to start) first. Returns at once if it already serves.
    pub async fn ready(&self) -> Option<ServingInfo> {
        let mut state = self.shared.state.subscribe();
        let state = state
            .wait_for(|s| !matches!(s, State::Starting))
            .await
            .ok()?;
        match &*state {
            State::Serving(info, _) | State::Stopping(info, _) => Some(info.clone()),
            State::Starting | State::Stopped => None,
        }
    }

    /// Where and how the plugin serves; `None` before it serves and after it stops.
    pub fn info(&self) -> Option<ServingInfo> {
        match &*self.shared.state.borrow() {
            State::Serving(info, _) | State::Stopping(info, _) => Some(info.clone()),
            State::Starting | State::Stopped => None,
        }
    }

    /// A snapshot of the server now.
    pub fn status(&self) -> PluginStatus {
        let (state, uptime) = match &*self.shared.state.borrow() {
            State::Starting => (ServingState::Starting, Duration::ZERO),
            State::Serving(_, since) => (ServingState::Serving, since.elapsed()),
            State::Stopping(_, since) => (ServingState::Stopping, since.elapsed()),
            State::Stopped => (ServingState::Stopped, Duration::ZERO),
        };
        PluginStatus {
            state,
            uptime,
            connections: self.shared.connections_open.load(Ordering::Relaxed),
            connections_total: self.shared.connections_total.load(Ordering::Relaxed),
            calls: self.shared.calls.snapshot(),
        }
    }

    /// Sets what health reports for `service`: `"plugin"` (what go-plugin hosts
    /// and rpcplugin's supervisor check), `""` (the whole server, gRPC's
    /// convention) or a service's full name. Names the plugin does not serve
    /// become known. Watchers (`Health/Watch`) see the change at once. During the
    /// drain after a stop every name reports NOT_SERVING whatever is set.
    pub fn set_health(&self, service: impl Into<String>, status: HealthStatus) {
        let service = service.into();
        self.shared
            .health
            .send_if_modified(|map| map.statuses.insert(service, status) != Some(status));
    }

    /// What health reports for `service` now; `None` for a name it does not know.
    pub fn health(&self, service: &str) -> Option<HealthStatus> {
        self.shared.health.borrow().get(service)
    }

    /// Serving begins: the served names report SERVING unless plugin code set
    /// them already.
    pub(crate) fn init_health(&self, names: impl IntoIterator<Item = String>) {
        self.shared.health.send_modify(|map| {
            map.draining = false;
            for name in names {
                map.statuses.entry(name).or_insert(HealthStatus::Serving);
            }
        });
    }

    pub(crate) fn health_watch(&self) -> watch::Receiver<HealthMap> {
        self.shared.health.subscribe()
    }

    /// The counters of the plugin's own calls, when someone asked for them.
    pub(crate) fn call_stats(&self) -> Option<CallStats> {
        self.shared
            .observed
            .load(Ordering::Relaxed)
            .then(|| self.shared.calls.clone())
    }

    pub(crate) fn serving(&self, info: ServingInfo) {
        self.shared
            .state
            .send_replace(State::Serving(info, Instant::now()));
    }

    /// The drain begins: NOT_SERVING everywhere.
    pub(crate) fn stopping(&self) {
        self.shared.health.send_modify(|map| map.draining = true);
        self.shared.state.send_modify(|state| {
            if let State::Serving(info, since) = state {
                *state = State::Stopping(info.clone(), *since);
            }
        });
    }

    pub(crate) fn stopped(&self) {
        self.shared.health.send_modify(|map| map.draining = true);
        self.shared.state.send_replace(State::Stopped);
    }

    /// Counts `connection` as open until it is dropped.
    pub(crate) fn track<C>(&self, connection: C, metrics: crate::metrics::Metrics) -> Tracked<C> {
        metrics.opened();
        self.shared
            .connections_total
            .fetch_add(1, Ordering::Relaxed);
        self.shared.connections_open.fetch_add(1, Ordering::Relaxed);
        Tracked {
            inner: connection,
            shared: self.shared.clone(),
            metrics,
        }
    }
}

/// A connection counted as open while it lives.
#[derive(Debug)]
pub(crate) struct Tracked<C> {
    inner: C,
    shared: Arc<Shared>,
    metrics: crate::metrics::Metrics,
}

impl<C> Drop for Tracked<C> {
    fn drop(&mut self) {
        self.shared.connections_open.fetch_sub(1, Ordering::Relaxed);
        self.metrics.closed();
    }
}

impl<C: AsyncRead + Unpin> AsyncRead for Tracked<C> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<C: AsyncWrite + Unpin> AsyncWrite for Tracked<C> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<C: tonic::transport::server::Connected> tonic::transport::server::Connected for Tracked<C> {
    type ConnectInfo = C::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}
