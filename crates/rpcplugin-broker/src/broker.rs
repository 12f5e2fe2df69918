//! The broker's state, shared by the application's handle ([`GrpcBroker`]) and the
//! owner's ([`Driver`]), and the errors that name why a broker is unusable.

use rpcplugin_core::Code;
use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use rpcplugin_core::{Endpoint, Error, Result};
use rpcplugin_proto::plugin::ConnInfo;
use tokio::sync::{mpsc, watch};
use tonic::service::Routes;
use tonic::transport::Channel;

use crate::routing::Pending;
use crate::serve::BrokeredServer;
use crate::{Config, DEFAULT_BROKER_DIAL_TIMEOUT, Role};

/// Messages waiting for the stream to the peer; past this, announcing waits.
const OUTGOING_QUEUE: usize = 64;

/// One side's broker. Cheap to clone; the host gets it from
/// `PluginClient::broker()`, the plugin from `Builder::broker()` (clone it into
/// the services that need it before serving).
///
/// Ids are chosen by the side that serves ([`next_id`](Self::next_id)) and sent to
/// the other side in a request of the application's own; the other side dials them.
///
/// The host serves a callback service and tells the plugin its id:
///
/// ```no_run
/// # async fn example(broker: rpcplugin_broker::GrpcBroker, routes: tonic::service::Routes)
/// # -> rpcplugin_core::Result<()> {
/// let id = broker.next_id();
/// let server = broker.accept_and_serve(id, routes).await?;
/// // ... call the plugin with `id`; it dials the id and calls back.
/// server.stop().await;
/// # Ok(()) }
/// ```
///
/// The plugin, inside a handler, dials the id the host sent:
///
/// ```no_run
/// # async fn example(broker: rpcplugin_broker::GrpcBroker) -> rpcplugin_core::Result<()> {
/// let channel = broker.dial(7).await?;
/// // ... build any tonic client on `channel` and call the host.
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct GrpcBroker {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for GrpcBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcBroker")
            .field("role", &self.inner.role)
            .field("next_id", &self.inner.next_id.load(Ordering::Relaxed))
            .field("ready", &self.inner.config.get().is_some())
            .field("closed", &self.inner.is_closed())
            .finish_non_exhaustive()
    }
}

/// The side of a broker its owner keeps (rpcplugin-server for the plugin,
/// rpcplugin-client for the host): it readies the broker, carries its stream with
/// the peer and closes it. Applications get the [`GrpcBroker`] it hands out.
/// Cheap to clone.
#[derive(Clone)]
pub struct Driver {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Driver").field(&self.broker()).finish()
    }
}

/// Why a broker closed; the first reason stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closed {
    /// Its owner closed it: the plugin is stopping, or the host stopped it.
    Stopped,
    /// The host's stream with the plugin ended (the plugin exited).
    PeerGone,
    /// The plugin answered `StartStream` with Unimplemented: it has no broker.
    Unsupported,
}

pub(crate) struct Inner {
    pub(crate) role: Role,
    next_id: AtomicU32,
    pub(crate) config: OnceLock<Config>,
    pending: Mutex<Pending>,
    pub(crate) outgoing_tx: mpsc::Sender<ConnInfo>,
    /// Several streams (a plugin's reattached hosts) take turns reading it.
    pub(crate) outgoing_rx: tokio::sync::Mutex<mpsc::Receiver<ConnInfo>>,
    /// Streams with the peer open now; a plugin's brokered servers stop when the
    /// last one ends.
    pub(crate) streams: AtomicUsize,
    closed: OnceLock<Closed>,
    /// This side's own endpoint (what multiplexed brokered servers report).
    pub(crate) endpoint: OnceLock<Endpoint>,
    /// Multiplexed dials knock and open one at a time, so that the accepting side
    /// pairs each stream with its knock (as go-plugin's dial mutex does).
    pub(crate) dial_lock: tokio::sync::Mutex<()>,
    /// Bumped when the broker closes or a plugin's last host stream ends:
    /// brokered servers watch it and stop.
    pub(crate) generation: watch::Sender<u64>,
}

impl GrpcBroker {
    /// A fresh id for [`accept_and_serve`](Self::accept_and_serve): 1, 2, 3... as
    /// go-plugin's `NextId`. Both sides count separately, so ids are only unique
    /// per side.
    pub fn next_id(&self) -> u32 {
        self.inner
            .next_id
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_add(1)
    }

    /// The dial timeout in force (set by the plugin's and the host's
    /// `Builder::broker_dial_timeout`; default [`DEFAULT_BROKER_DIAL_TIMEOUT`]).
    pub fn dial_timeout(&self) -> Duration {
        self.inner.dial_timeout()
    }

    /// Serves `routes` (one or more tonic services) to the peer under `id`, with
    /// this side's TLS, until the returned handle is dropped or stopped, this side
    /// stops, or the stream with the peer ends; its socket is removed then.
    ///
    /// Over sockets, binds a new listener (the plugin beside its own socket, the
    /// host in its private socket directory for that plugin, or loopback TCP) and
    /// announces it to the peer, which can then dial `id`. Multiplexed, binds and
    /// announces nothing: the peer knocks for `id` when it dials.
    ///
    /// # Errors
    ///
    /// `broker.not_serving` before the plugin serves, `broker.closed` once this
    /// side stopped or the peer is gone (or, on the host, when the plugin serves no
    /// broker), a transport error when no listener can be bound, and
    /// `broker.announce_timeout` when the peer reads no announcement within the
    /// dial timeout.
    pub async fn accept_and_serve(&self, id: u32, routes: Routes) -> Result<BrokeredServer> {
        let config = self.inner.ready()?;
        self.inner.check_open()?;
        match &config.mux {
            Some(router) => Ok(self.serve_muxed(id, router.clone(), routes)),
            None => self.serve_socket(id, routes).await,
        }
    }

    /// Connects to the server the peer serves under `id`, waiting up to the dial
    /// timeout for its announcement (multiplexed: for its answer to this side's
    /// knock). The channel uses the same TLS as the main connection: each side
    /// presents its certificate and trusts exactly the other's.
    ///
    /// # Errors
    ///
    /// `broker.dial_timeout` when the peer announces nothing for `id` in time,
    /// `broker.knock_refused` when it serves nothing under `id` (multiplexed),
    /// `broker.closed` once this side stopped or the peer is gone,
    /// `broker.bad_address` for an announcement that cannot be dialled, and
    /// `broker.connect` or `security.tls` when connecting fails.
    pub async fn dial(&self, id: u32) -> Result<Channel> {
        self.dial_with_timeout(id, self.dial_timeout()).await
    }

    /// [`dial`](Self::dial) with another timeout for this call.
    ///
    /// # Errors
    ///
    /// As [`dial`](Self::dial).
    pub async fn dial_with_timeout(&self, id: u32, timeout: Duration) -> Result<Channel> {
        let config = self.inner.ready()?;
        if let Some(router) = &config.mux {
            return crate::dial::connect_muxed(self.clone(), router.clone(), id, timeout).await;
        }
        let info = self.inner.wait_for(id, timeout).await?;
        let endpoint = crate::dial::announced_endpoint(&info)?;
        crate::dial::connect_channel(
            id,
            endpoint,
            config.dial_tls.clone(),
            config.connectors.clone(),
        )
        .await
    }

    /// Whether the broker still works: false once this side stopped, or (on the
    /// host) once the plugin's broker stream ended: it exited, or serves no broker.
    pub fn is_open(&self) -> bool {
        !self.inner.is_closed()
    }

    /// Whether brokered connections run inside the one multiplexed connection
    /// (the host asked with `PLUGIN_MULTIPLEX_GRPC`) instead of sockets of their own.
    pub fn is_multiplexed(&self) -> bool {
        self.inner.config.get().is_some_and(Config::is_multiplexed)
    }

    /// Which side this broker serves.
    pub fn role(&self) -> Role {
        self.inner.role
    }
}

/// A plugin's broker that is not serving (and never will be): its calls fail with
/// `broker.not_serving`. For unit tests of services that hold a broker; a real one
/// comes from the plugin's `Builder::broker()` or the host's `PluginClient::broker()`.
impl Default for GrpcBroker {
    fn default() -> Self {
        Driver::new(Role::Plugin).broker()
    }
}

impl Driver {
    /// A broker for `role`, open, not ready: its owner calls
    /// [`set_ready`](Self::set_ready) once the main connection's transport and TLS
    /// are known, and [`pump`](Self::pump) for each stream with the peer.
    pub fn new(role: Role) -> Self {
        let (outgoing_tx, outgoing_rx) = mpsc::channel(OUTGOING_QUEUE);
        Self {
            inner: Arc::new(Inner {
                role,
                next_id: AtomicU32::new(0),
                config: OnceLock::new(),
                pending: Mutex::new(Pending::default()),
                outgoing_tx,
                outgoing_rx: tokio::sync::Mutex::new(outgoing_rx),
                streams: AtomicUsize::new(0),
                closed: OnceLock::new(),
                endpoint: OnceLock::new(),
                dial_lock: tokio::sync::Mutex::new(()),
                generation: watch::Sender::new(0),
            }),
        }
    }

    /// The handle applications use; every clone works on this broker.
    pub fn broker(&self) -> GrpcBroker {
        GrpcBroker {
            inner: self.inner.clone(),
        }
    }

    /// Readies the broker for serving and dialling. A broker is readied once; a
    /// second call changes nothing (the first wins).
    pub fn set_ready(&self, config: Config) {
        let _ = self.inner.config.set(config);
    }

    /// This side's own endpoint, which multiplexed brokered servers report as
    /// theirs. Set once; the first wins.
    pub fn set_endpoint(&self, endpoint: Endpoint) {
        let _ = self.inner.endpoint.set(endpoint);
    }

    /// Closes the broker: streams with the peer end, every brokered server
    /// stops (in-flight calls get 2 s) and removes its socket, and waiting dials
    /// fail at once with `broker.closed`. For the plugin when it stops, for the
    /// host when it stops or drops the plugin. A multiplexed session is the owner's
    /// to close, once its main connection has drained.
    pub fn close(&self) {
        self.inner.close(Closed::Stopped);
    }

    /// Whether the broker is closed.
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves slots that are still consistent.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    pub(crate) fn pending(&self) -> MutexGuard<'_, Pending> {
        lock(&self.pending)
    }

    pub(crate) fn dial_timeout(&self) -> Duration {
        self.config
            .get()
            .map_or(DEFAULT_BROKER_DIAL_TIMEOUT, |c| c.dial_timeout)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.get().is_some()
    }

    /// Fails waiting dials and stops brokered servers; the first reason stays.
    pub(crate) fn close(&self, why: Closed) {
        let _ = self.closed.set(why);
        self.generation.send_modify(|g| *g += 1);
        self.pending().clear();
    }

    pub(crate) fn ready(&self) -> Result<&Config> {
        match self.config.get() {
            Some(config) => Ok(config),
            None if self.is_closed() => Err(self.closed_error()),
            None => Err(Error::new(
                Code::BrokerNotServing,
                "the broker is not usable before the plugin serves",
            )
            .with_hint("use the broker from inside your services' handlers, once serve() runs")),
        }
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.is_closed() {
            return Err(self.closed_error());
        }
        Ok(())
    }

    /// `broker.closed`, saying why in the words of this side.
    pub(crate) fn closed_error(&self) -> Error {
        let (message, hint) = match (self.role, self.closed.get()) {
            (Role::Plugin, _) => (
                "the broker is closed: the plugin is stopping",
                "brokered connections live as long as the plugin serves",
            ),
            (Role::Host, Some(Closed::Unsupported)) => (
                "the plugin serves no broker (plugin.GRPCBroker)",
                "bidirectional calls need a plugin built with go-plugin or rpcplugin",
            ),
            (Role::Host, Some(Closed::PeerGone)) => (
                "the broker is closed: the plugin's broker stream ended",
                "the plugin exited or closed its connection; check its log",
            ),
            (Role::Host, Some(Closed::Stopped) | None) => (
                "the broker is closed: the plugin was stopped",
                "brokered connections live as long as the plugin client",
            ),
        };
        Error::new(Code::BrokerClosed, message).with_hint(hint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_count_from_one_per_broker() {
        let driver = Driver::new(Role::Plugin);
        let broker = driver.broker();
        assert_eq!(broker.next_id(), 1);
        assert_eq!(broker.next_id(), 2);
        assert_eq!(driver.broker().next_id(), 3);
        assert_eq!(Driver::new(Role::Plugin).broker().next_id(), 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_plugin_broker_is_unusable_until_it_serves() {
        let broker = GrpcBroker::default();
        let err = broker
            .accept_and_serve(1, Routes::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::BrokerNotServing);
        assert!(err.hint().unwrap().contains("serve()"), "{err:?}");
        assert_eq!(
            broker.dial(1).await.unwrap_err().code(),
            Code::BrokerNotServing
        );
        assert_eq!(broker.dial_timeout(), DEFAULT_BROKER_DIAL_TIMEOUT);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_closed_broker_says_why_in_its_sides_words() {
        let host = Driver::new(Role::Host);
        host.close();
        let err = host.broker().dial(1).await.unwrap_err();
        assert_eq!(err.code(), Code::BrokerClosed);
        assert_eq!(
            err.message(),
            "the broker is closed: the plugin was stopped"
        );
        assert!(!host.broker().is_open());

        let plugin = Driver::new(Role::Plugin);
        plugin.set_ready(Config::new(Arc::new(
            rpcplugin_transport::TcpTransport::new(),
        )));
        plugin.close();
        let err = plugin
            .broker()
            .accept_and_serve(1, Routes::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::BrokerClosed);
        assert!(err.message().contains("the plugin is stopping"), "{err:?}");
    }

    #[test]
    fn the_first_reason_to_close_stays() {
        let host = Driver::new(Role::Host);
        host.inner.close(Closed::Unsupported);
        host.close();
        let err = host.inner.closed_error();
        assert_eq!(
            err.message(),
            "the plugin serves no broker (plugin.GRPCBroker)"
        );
    }
}
