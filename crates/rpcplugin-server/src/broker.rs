//! go-plugin's `plugin.GRPCBroker`, plugin side: extra gRPC servers between plugin
//! and host under numeric ids, so that either side can call the other (a plugin
//! calling back into its host while serving the host's request).
//!
//! Wire shape (go-plugin 1.0.1, without multiplexing): the host opens one
//! `StartStream` bidirectional stream of `ConnInfo` and keeps it for the
//! connection's life. [`GrpcBroker::accept_and_serve`] binds a new listener (a Unix
//! socket beside the plugin's own, or loopback TCP, as the main transport),
//! serves the given routes there with the plugin's TLS, and announces
//! `ConnInfo{service_id, network, address}` down the stream. [`GrpcBroker::dial`]
//! waits (bounded) for the host's announcement of an id and connects to it.
//!
//! TLS follows go-plugin 1.4.4 and later (go-plugin#193, symmetric AutoMTLS): a
//! brokered server presents the plugin's certificate and requires the host's, as
//! the main server does; a brokered connection the plugin dials presents the
//! plugin's certificate and trusts exactly the host's (the one the host sent in
//! `PLUGIN_CLIENT_CERT`), or, without it, the configured client roots.

use rpcplugin_core::Code;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use rpcplugin_core::{Endpoint, Error, Network, Result};
use rpcplugin_proto::plugin::ConnInfo;
use rpcplugin_proto::plugin::conn_info::Knock;
use rpcplugin_proto::plugin::grpc_broker_server::{GrpcBroker as BrokerRpc, GrpcBrokerServer};
use rpcplugin_transport::rustls::pki_types::ServerName;
use rpcplugin_transport::rustls::{ClientConfig, ServerConfig};
use rpcplugin_transport::{DEFAULT_TLS_HANDSHAKE_TIMEOUT, Listener, MuxRouter, Transport};

use crate::incoming::Connection;
use crate::mux::brokered_incoming;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::Routes;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

/// How long [`GrpcBroker::dial`] waits for the host to announce an id, as go-plugin.
pub const DEFAULT_BROKER_DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a brokered server's in-flight calls may take once it stops.
const BROKERED_DRAIN: Duration = Duration::from_secs(2);

/// Announcements waiting for the host's stream; past this, `accept_and_serve` waits.
const OUTGOING_QUEUE: usize = 64;

/// The plugin's broker. Cheap to clone; get it from
/// [`Builder::broker`](crate::Builder::broker) before serving and move clones into
/// the services that need it.
///
/// ```no_run
/// # async fn example(broker: rpcplugin_server::GrpcBroker) -> rpcplugin_server::Result<()> {
/// // The host served its callback service under an id it sent in a request:
/// let channel = broker.dial(7).await?;
/// // ... build any tonic client on `channel` and call the host.
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct GrpcBroker {
    inner: Arc<Inner>,
}

impl fmt::Debug for GrpcBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcBroker")
            .field("next_id", &self.inner.next_id.load(Ordering::Relaxed))
            .field("ready", &self.inner.ready.get().is_some())
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

struct Inner {
    next_id: AtomicU32,
    ready: OnceLock<Ready>,
    pending: Mutex<Pending>,
    outgoing_tx: mpsc::Sender<ConnInfo>,
    outgoing_rx: tokio::sync::Mutex<mpsc::Receiver<ConnInfo>>,
    /// Host streams open now; brokered servers stop when the last one ends.
    streams: AtomicUsize,
    closed: AtomicBool,
    /// This side's own endpoint (what multiplexed brokered servers report).
    endpoint: OnceLock<Endpoint>,
    /// Multiplexed dials knock and open one at a time, so that the accepting side
    /// pairs each stream with its knock (as go-plugin's dial mutex does).
    dial_lock: tokio::sync::Mutex<()>,
    /// Bumped when the broker closes or the last host stream ends: brokered
    /// servers watch it and stop.
    generation: watch::Sender<u64>,
}

/// What serving needs, known once the plugin has chosen its transport and TLS.
pub(crate) struct Ready {
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) accept_tls: Option<Arc<ServerConfig>>,
    pub(crate) dial_tls: Option<Arc<ClientConfig>>,
    pub(crate) dial_timeout: Duration,
    /// Set when the broker is multiplexed (the host asked with `PLUGIN_MULTIPLEX_GRPC`).
    pub(crate) mux: Option<Arc<MuxRouter>>,
}

#[derive(Default)]
struct Pending {
    slots: HashMap<u32, Slot>,
    next_token: u64,
}

enum Slot {
    /// The host announced the id; nobody has dialled it yet.
    Arrived(ConnInfo, Instant),
    /// A dial waits for the id (its token tells waits apart).
    Waiting(u64, oneshot::Sender<ConnInfo>),
}

impl Default for GrpcBroker {
    fn default() -> Self {
        let (outgoing_tx, outgoing_rx) = mpsc::channel(OUTGOING_QUEUE);
        Self {
            inner: Arc::new(Inner {
                next_id: AtomicU32::new(0),
                ready: OnceLock::new(),
                pending: Mutex::new(Pending::default()),
                outgoing_tx,
                outgoing_rx: tokio::sync::Mutex::new(outgoing_rx),
                streams: AtomicUsize::new(0),
                closed: AtomicBool::new(false),
                generation: watch::Sender::new(0),
                endpoint: OnceLock::new(),
                dial_lock: tokio::sync::Mutex::new(()),
            }),
        }
    }
}

impl GrpcBroker {
    /// A fresh id for [`accept_and_serve`](Self::accept_and_serve): 1, 2, 3... as
    /// go-plugin's `NextId`. Ids are chosen by the side that accepts and sent to
    /// the other side in a request of your own; both sides count separately, so
    /// ids are only unique per side.
    pub fn next_id(&self) -> u32 {
        self.inner
            .next_id
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_add(1)
    }

    /// The dial timeout in force (see [`Builder::broker_dial_timeout`](crate::Builder::broker_dial_timeout)).
    pub fn dial_timeout(&self) -> Duration {
        self.inner
            .ready
            .get()
            .map_or(DEFAULT_BROKER_DIAL_TIMEOUT, |r| r.dial_timeout)
    }

    /// Serves `routes` (one or more tonic services) to the host under `id`: binds a
    /// new listener beside the plugin's own, serves it with the plugin's TLS, and
    /// announces it to the host, which can then dial `id`.
    ///
    /// The server runs until the returned handle is dropped or stopped, the plugin
    /// stops, or the host's broker stream ends; its socket is removed then.
    ///
    /// # Errors
    ///
    /// `broker.not_serving` before the plugin serves, `broker.closed` after it
    /// stopped, a transport error when no listener can be bound, and
    /// `broker.announce_timeout` when the host has not read announcements for
    /// the dial timeout (it opened no broker stream).
    pub async fn accept_and_serve(&self, id: u32, routes: Routes) -> Result<BrokeredServer> {
        let ready = self.ready()?;
        self.check_open()?;
        if let Some(router) = &ready.mux {
            // Multiplexed: nothing to bind or announce; the peer knocks for the id.
            let incoming = brokered_incoming(router.listen(id), ready.accept_tls.clone());
            let (stop_tx, stop_rx) = oneshot::channel();
            let generation = self.inner.generation.subscribe();
            let router = router.clone();
            let task = tokio::spawn(async move {
                serve_brokered(id, None, incoming, routes, stop_rx, generation).await;
                router.unlisten(id);
            });
            tracing::debug!(
                id,
                "brokered server listening on the multiplexed connection"
            );
            return Ok(BrokeredServer {
                id,
                endpoint: self
                    .inner
                    .endpoint
                    .get()
                    .cloned()
                    .unwrap_or_else(|| Endpoint::Unix(std::path::PathBuf::new())),
                stop: Some(stop_tx),
                task: Some(task),
            });
        }
        let listener = Arc::new(ready.transport.bind().await?);
        let endpoint = listener.endpoint().clone();
        let (stop_tx, stop_rx) = oneshot::channel();
        let generation = self.inner.generation.subscribe();
        let incoming = crate::incoming::Incoming::new(listener.clone(), ready.accept_tls.clone());
        let task = tokio::spawn(serve_brokered(
            id,
            Some(listener),
            incoming,
            routes,
            stop_rx,
            generation,
        ));
        let info = ConnInfo {
            service_id: id,
            network: endpoint.network().as_str().to_owned(),
            address: endpoint.to_string(),
            knock: None,
        };
        let announce = self
            .inner
            .outgoing_tx
            .send_timeout(info, ready.dial_timeout);
        if let Err(err) = announce.await {
            let _ = stop_tx.send(());
            return Err(match err {
                mpsc::error::SendTimeoutError::Timeout(_) => Error::new(
                    Code::BrokerAnnounceTimeout,
                    format!("cannot announce broker id {id}: the host reads no announcements"),
                )
                .with_hint(
                    "the host has not opened the plugin.GRPCBroker stream (go-plugin and rpcplugin \
                     hosts open it at connect; other hosts may not support the broker)",
                ),
                mpsc::error::SendTimeoutError::Closed(_) => closed_error(),
            });
        }
        tracing::debug!(id, %endpoint, "brokered server announced");
        Ok(BrokeredServer {
            id,
            endpoint,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }

    /// Connects to the server the host serves under `id`, waiting up to the dial
    /// timeout for the host's announcement. The channel uses the same TLS as the
    /// plugin's own connection (each side presents its certificate and trusts
    /// exactly the other's).
    ///
    /// # Errors
    ///
    /// `broker.dial_timeout` when the host announces nothing for `id` in time,
    /// `broker.closed` once the plugin stops, `broker.bad_address` for an
    /// announcement that cannot be dialled, and a transport or `security.*`
    /// error when connecting fails.
    pub async fn dial(&self, id: u32) -> Result<Channel> {
        self.dial_with_timeout(id, self.dial_timeout()).await
    }

    /// [`dial`](Self::dial) with another timeout for this call.
    ///
    /// # Errors
    ///
    /// As [`dial`](Self::dial).
    pub async fn dial_with_timeout(&self, id: u32, timeout: Duration) -> Result<Channel> {
        let ready = self.ready()?;
        if let Some(router) = &ready.mux {
            return connect_muxed(self.clone(), router.clone(), id, timeout).await;
        }
        let info = self.wait_for(id, timeout).await?;
        let endpoint = announced_endpoint(&info)?;
        let tls = ready.dial_tls.clone();
        connect_channel(id, endpoint, tls).await
    }

    /// Stops every brokered server and fails waiting dials: the plugin is stopping.
    pub(crate) fn close(&self) {
        // A multiplexed session is closed by the server once it has drained: the
        // main connection runs inside it.
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.generation.send_modify(|g| *g += 1);
        self.inner
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .slots
            .clear();
    }

    /// Called once the transport and TLS are decided, before serving.
    pub(crate) fn set_ready(&self, ready: Ready) {
        // A builder serves once; a second call would be a bug, and the first wins.
        let _ = self.inner.ready.set(ready);
    }

    /// The `plugin.GRPCBroker` service the host talks to.
    pub(crate) fn service(&self) -> GrpcBrokerServer<BrokerService> {
        GrpcBrokerServer::new(BrokerService {
            inner: self.inner.clone(),
        })
    }

    /// Whether brokered connections run inside the one multiplexed connection
    /// (the host asked with `PLUGIN_MULTIPLEX_GRPC`) instead of sockets of their own.
    pub fn is_multiplexed(&self) -> bool {
        self.inner.ready.get().is_some_and(|r| r.mux.is_some())
    }

    /// This side's own endpoint, once known.
    pub(crate) fn set_endpoint(&self, endpoint: Endpoint) {
        let _ = self.inner.endpoint.set(endpoint);
    }

    /// Knocks for `id` and waits for the peer's acknowledgement (multiplexed).
    async fn knock(&self, id: u32, timeout: Duration) -> Result<()> {
        let knock = ConnInfo {
            service_id: id,
            knock: Some(Knock {
                knock: true,
                ack: false,
                error: String::new(),
            }),
            ..ConnInfo::default()
        };
        self.inner
            .outgoing_tx
            .send_timeout(knock, timeout)
            .await
            .map_err(|_| dial_timeout_error(id, timeout, "host"))?;
        let ack = self.wait_for(id, timeout).await?;
        match ack.knock {
            Some(k) if k.ack && k.error.is_empty() => Ok(()),
            Some(k) if k.ack => Err(Error::new(
                Code::BrokerKnockRefused,
                format!("the host refused broker id {id}: {}", k.error),
            )
            .with_hint(format!(
                "the host must serve the id (rpcplugin: accept_and_serve({id}, ..); go-plugin: \
                 AcceptAndServe({id}, ..)) before this side dials it"
            ))),
            _ => Err(Error::new(
                Code::BrokerBadAck,
                format!("the host answered the knock for broker id {id} with something else"),
            )
            .with_hint("both sides must multiplex, or neither")),
        }
    }

    fn ready(&self) -> Result<&Ready> {
        self.inner.ready.get().ok_or_else(|| {
            Error::new(
                Code::BrokerNotServing,
                "the broker is not usable before the plugin serves",
            )
            .with_hint("use the broker from inside your services' handlers, once serve() runs")
        })
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(closed_error());
        }
        Ok(())
    }

    async fn wait_for(&self, id: u32, timeout: Duration) -> Result<ConnInfo> {
        self.check_open()?;
        let (token, rx) = {
            let mut pending = self.inner.pending.lock().unwrap_or_else(|p| p.into_inner());
            expire(&mut pending, timeout);
            if let Some(Slot::Arrived(info, _)) = pending.slots.remove(&id) {
                return Ok(info);
            }
            let (tx, rx) = oneshot::channel();
            pending.next_token += 1;
            let token = pending.next_token;
            // A second dial of the same id takes over, as go-plugin's shared slot.
            pending.slots.insert(id, Slot::Waiting(token, tx));
            (token, rx)
        };
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(info)) => Ok(info),
            Ok(Err(_)) => {
                self.check_open()?;
                Err(Error::new(
                    Code::BrokerDialSuperseded,
                    format!("another dial of broker id {id} took its connection info"),
                )
                .with_hint("dial each brokered id once, and share the channel"))
            }
            Err(_) => {
                let mut pending = self.inner.pending.lock().unwrap_or_else(|p| p.into_inner());
                if matches!(pending.slots.get(&id), Some(Slot::Waiting(t, _)) if *t == token) {
                    pending.slots.remove(&id);
                }
                Err(dial_timeout_error(id, timeout, "host"))
            }
        }
    }
}

fn closed_error() -> Error {
    Error::new(
        Code::BrokerClosed,
        "the broker is closed: the plugin is stopping",
    )
    .with_hint("brokered connections live as long as the plugin serves")
}

fn dial_timeout_error(id: u32, timeout: Duration, peer: &str) -> Error {
    Error::new(
        Code::BrokerDialTimeout,
        format!("the {peer} announced no broker id {id} within {timeout:?}"),
    )
    .with_hint(format!(
        "the {peer} must serve the id (rpcplugin: broker().accept_and_serve({id}, ..); go-plugin: \
         broker.AcceptAndServe({id}, ..)) before or while this side dials, once per dial (an \
         announcement is used by one dial, as in go-plugin); check that both sides use the id \
         sent in the request, or raise the broker dial timeout"
    ))
}

/// Drops announcements nobody dialled within the timeout, as go-plugin does, so
/// ids of servers that were never used do not accumulate.
fn expire(pending: &mut Pending, timeout: Duration) {
    pending.slots.retain(|id, slot| match slot {
        Slot::Arrived(_, at) if at.elapsed() > timeout => {
            tracing::debug!(id, "broker announcement expired undialled");
            false
        }
        Slot::Waiting(_, tx) => !tx.is_closed(),
        _ => true,
    });
}

impl Inner {
    /// An announcement from the host: to a waiting dial, or kept for the next one.
    fn deliver(&self, info: ConnInfo, timeout: Duration) {
        if info.knock.as_ref().is_some_and(|k| k.knock && !k.ack) {
            self.answer_knock(info.service_id);
            return;
        }
        let id = info.service_id;
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        expire(&mut pending, timeout);
        let info = match pending.slots.remove(&id) {
            Some(Slot::Waiting(_, tx)) => match tx.send(info) {
                Ok(()) => return,
                Err(info) => info,
            },
            _ => info,
        };
        pending
            .slots
            .insert(id, Slot::Arrived(info, Instant::now()));
    }

    /// The peer knocks for `id`: its next stream is for that brokered server.
    fn answer_knock(&self, id: u32) {
        let result = match self.ready.get().and_then(|r| r.mux.as_ref()) {
            Some(router) => router.knock(id),
            None => Err("this broker is not multiplexed".to_owned()),
        };
        if let Err(error) = &result {
            tracing::debug!(id, %error, "refusing a knock");
        }
        let ack = ConnInfo {
            service_id: id,
            knock: Some(Knock {
                knock: true,
                ack: true,
                error: result.err().unwrap_or_default(),
            }),
            ..ConnInfo::default()
        };
        if self.outgoing_tx.try_send(ack).is_err() {
            tracing::warn!(
                id,
                "cannot acknowledge a knock: the broker stream is full or closed"
            );
        }
    }

    fn dial_timeout(&self) -> Duration {
        self.ready
            .get()
            .map_or(DEFAULT_BROKER_DIAL_TIMEOUT, |r| r.dial_timeout)
    }

    /// A host stream ended; with none left, its announcements and the servers
    /// made for it go.
    fn stream_ended(&self) {
        if self.streams.fetch_sub(1, Ordering::SeqCst) == 1 {
            tracing::debug!("the host's broker stream ended; stopping brokered servers");
            self.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .slots
                .retain(|_, slot| matches!(slot, Slot::Waiting(..)));
            self.generation.send_modify(|g| *g += 1);
        }
    }
}

/// A brokered server the plugin serves. Dropping it stops the server and removes
/// its socket (in the background); [`stop`](Self::stop) waits for that.
#[derive(Debug)]
pub struct BrokeredServer {
    id: u32,
    endpoint: Endpoint,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl BrokeredServer {
    /// The broker id it serves under.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Where it listens (announced to the host).
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Whether it still serves.
    pub fn is_serving(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stops serving: in-flight calls get up to 2 s, then the listener and its
    /// socket are gone.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(BROKERED_DRAIN + Duration::from_secs(1), task).await;
        }
    }
}

impl Drop for BrokeredServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn serve_brokered<S>(
    id: u32,
    listener: Option<Arc<Listener>>,
    incoming: S,
    routes: Routes,
    stop: oneshot::Receiver<()>,
    mut generation: watch::Receiver<u64>,
) where
    S: tokio_stream::Stream<Item = std::io::Result<Connection>> + Send + 'static,
{
    let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
    let server = crate::http2_tuned(tonic::transport::Server::builder())
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, async {
            let _ = shutdown_rx.await;
        });
    let mut server = Box::pin(server);
    generation.mark_unchanged();
    tokio::select! {
        result = &mut server => {
            if let Err(err) = result {
                tracing::warn!(id, error = %err, "brokered server failed");
            }
        }
        _ = stop => {}
        _ = generation.changed() => {}
    }
    let _ = shutdown_tx.send(());
    if tokio::time::timeout(BROKERED_DRAIN, &mut server)
        .await
        .is_err()
    {
        tracing::debug!(
            id,
            "brokered server's calls did not finish in time; closing"
        );
    }
    drop(server);
    if let Some(Ok(listener)) = listener.map(Arc::try_unwrap)
        && let Err(err) = listener.close()
    {
        tracing::warn!(id, error = %err, "cannot remove a brokered socket");
    }
    tracing::debug!(id, "brokered server stopped");
}

/// The endpoint a peer announced, checked before dialling it.
fn announced_endpoint(info: &ConnInfo) -> Result<Endpoint> {
    let bad = |why: String| {
        Error::new(
            Code::BrokerBadAddress,
            format!(
                "broker id {} was announced at {:?} {:?}, which cannot be dialled",
                info.service_id, info.network, info.address
            ),
        )
        .with_hint(why)
    };
    match info.network.parse::<Network>() {
        Ok(Network::Unix) if !info.address.is_empty() => {
            Ok(Endpoint::Unix(info.address.clone().into()))
        }
        Ok(Network::Tcp) => info
            .address
            .parse()
            .map(Endpoint::Tcp)
            .map_err(|_| bad("a tcp address must be IP:PORT".to_owned())),
        _ => Err(bad(
            "the peer must announce a unix socket path or a tcp IP:PORT; a multiplexing peer \
             (go-plugin 1.6+) only multiplexes when the host sets PLUGIN_MULTIPLEX_GRPC"
                .to_owned(),
        )),
    }
}

/// One gRPC channel to a brokered endpoint, connected now so that failures show
/// at dial time; reconnects (on the next call) go to the same endpoint.
async fn connect_channel(
    id: u32,
    endpoint: Endpoint,
    tls: Option<Arc<ClientConfig>>,
) -> Result<Channel> {
    let target = endpoint.clone();
    let connector = tower::service_fn(move |_uri: tonic::transport::Uri| {
        let endpoint = target.clone();
        let tls = tls.clone();
        async move {
            let stream = rpcplugin_transport::connect(&endpoint).await?;
            let stream = match tls {
                None => stream,
                Some(config) => stream
                    .connect_tls(config, localhost(), DEFAULT_TLS_HANDSHAKE_TIMEOUT)
                    .await
                    .map_err(|err| {
                        Error::new(Code::SecurityTls, "tls handshake failed").with_source(err)
                    })?,
            };
            Ok::<_, Error>(TokioIo::new(stream))
        }
    });
    tonic::transport::Endpoint::from_static("http://localhost")
        .connect_timeout(Duration::from_secs(5))
        .connect_with_connector(connector)
        .await
        .map_err(|err| {
            let security = rpcplugin_transport::TlsFailure::find(&err);
            let (code, hint) = match security {
                Some(failure) => (
                    Code::SecurityTls,
                    format!(
                        "TLS with the brokered server failed ({failure}); brokered connections use \
                         the same certificates as the plugin's own connection"
                    ),
                ),
                None => (
                    Code::BrokerConnect,
                    "the id was announced but nothing accepts connections there; the server \
                     behind it may have stopped"
                        .to_owned(),
                ),
            };
            Error::new(
                code,
                format!("cannot connect to broker id {id} at {endpoint}"),
            )
            .with_source(err)
            .with_hint(hint)
        })
}

/// A channel whose every connection knocks for `id`, then opens a stream of the
/// multiplexed session (TLS inside it), as go-plugin 1.6's dial.
async fn connect_muxed(
    broker: GrpcBroker,
    router: Arc<MuxRouter>,
    id: u32,
    timeout: Duration,
) -> Result<Channel> {
    let tls = broker.ready()?.dial_tls.clone();
    let connector = tower::service_fn(move |_uri: tonic::transport::Uri| {
        let broker = broker.clone();
        let router = router.clone();
        let tls = tls.clone();
        async move {
            let one_at_a_time = broker.inner.dial_lock.lock().await;
            broker.knock(id, timeout).await?;
            let session = router.session().ok_or_else(|| {
                Error::new(
                    Code::BrokerClosed,
                    format!("cannot dial broker id {id}: the multiplexed connection is closed"),
                )
                .with_hint("the other side went away, or this one is stopping")
            })?;
            let stream = session.open().await.map_err(|err| {
                Error::new(
                    Code::BrokerConnect,
                    format!("cannot open a multiplexed stream for broker id {id}"),
                )
                .with_source(err)
                .with_hint("the multiplexed connection is gone")
            })?;
            drop(one_at_a_time);
            let stream = match tls {
                None => stream,
                Some(config) => stream
                    .connect_tls(config, localhost(), DEFAULT_TLS_HANDSHAKE_TIMEOUT)
                    .await
                    .map_err(|err| {
                        Error::new(Code::SecurityTls, "tls handshake failed").with_source(err)
                    })?,
            };
            Ok::<_, Error>(TokioIo::new(stream))
        }
    });
    tonic::transport::Endpoint::from_static("http://localhost")
        .connect_timeout(timeout + Duration::from_secs(5))
        .connect_with_connector(connector)
        .await
        .map_err(|err| {
            // The knock's own error, when that is what failed.
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
            while let Some(e) = source {
                if let Some(ours) = e.downcast_ref::<Error>() {
                    return Error::new(ours.code(), ours.to_string())
                        .with_hint(ours.hint().unwrap_or_default().to_owned());
                }
                source = e.source();
            }
            Error::new(
                Code::BrokerConnect,
                format!("cannot connect to broker id {id} over the multiplexed connection"),
            )
            .with_source(err)
        })
}

fn localhost() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("a valid DNS name")
}

/// The `plugin.GRPCBroker` service: pumps the host's stream into the broker and
/// the broker's announcements into the stream.
#[derive(Clone)]
pub(crate) struct BrokerService {
    inner: Arc<Inner>,
}

impl fmt::Debug for BrokerService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerService").finish_non_exhaustive()
    }
}

#[tonic::async_trait]
impl BrokerRpc for BrokerService {
    type StartStreamStream = ReceiverStream<std::result::Result<ConnInfo, Status>>;

    async fn start_stream(
        &self,
        request: Request<Streaming<ConnInfo>>,
    ) -> std::result::Result<Response<Self::StartStreamStream>, Status> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(Status::unavailable("the plugin is stopping"));
        }
        let mut inbound = request.into_inner();
        let inner = self.inner.clone();
        let (tx, rx) = mpsc::channel(16);
        inner.streams.fetch_add(1, Ordering::SeqCst);
        let mut generation = inner.generation.subscribe();
        tokio::spawn(async move {
            tracing::debug!("the host opened the broker stream");
            loop {
                tokio::select! {
                    message = inbound.message() => match message {
                        Ok(Some(info)) => inner.deliver(info, inner.dial_timeout()),
                        Ok(None) => break,
                        Err(status) => {
                            tracing::debug!(%status, "the host's broker stream failed");
                            break;
                        }
                    },
                    // The lock is held only while this branch waits, so several
                    // host streams (a reattached host) take turns.
                    info = async { inner.outgoing_rx.lock().await.recv().await } => match info {
                        Some(info) => {
                            if tx.send(Ok(info)).await.is_err() {
                                tracing::debug!("an announcement was lost: the host's stream closed");
                                break;
                            }
                        }
                        None => break,
                    },
                    () = tx.closed() => break,
                    _ = generation.changed() => {
                        if inner.closed.load(Ordering::SeqCst) {
                            break;
                        }
                    }
                }
            }
            inner.stream_ended();
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: u32, address: &str) -> ConnInfo {
        ConnInfo {
            service_id: id,
            network: "unix".into(),
            address: address.into(),
            knock: None,
        }
    }

    #[test]
    fn ids_count_from_one() {
        let broker = GrpcBroker::default();
        assert_eq!(broker.next_id(), 1);
        assert_eq!(broker.next_id(), 2);
        assert_eq!(broker.clone().next_id(), 3);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_announcement_before_the_dial_is_kept_for_it() {
        let broker = GrpcBroker::default();
        broker
            .inner
            .deliver(info(4, "/tmp/x.sock"), Duration::from_secs(5));
        let got = broker.wait_for(4, Duration::from_secs(1)).await.unwrap();
        assert_eq!(got.address, "/tmp/x.sock");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_dial_waits_for_a_later_announcement() {
        let broker = GrpcBroker::default();
        let waiter = {
            let broker = broker.clone();
            tokio::spawn(async move { broker.wait_for(9, Duration::from_secs(5)).await })
        };
        tokio::task::yield_now().await;
        broker
            .inner
            .deliver(info(9, "/tmp/y.sock"), Duration::from_secs(5));
        let got = waiter.await.unwrap().unwrap();
        assert_eq!(got.address, "/tmp/y.sock");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_id_never_announced_times_out_with_a_hint() {
        let broker = GrpcBroker::default();
        let started = Instant::now();
        let err = broker
            .wait_for(3, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(err.code(), Code::BrokerDialTimeout);
        assert_eq!(err.kind(), rpcplugin_core::ErrorKind::Timeout);
        assert!(
            err.hint().unwrap().contains("accept_and_serve(3"),
            "{err:?}"
        );
        assert!(broker.inner.pending.lock().unwrap().slots.is_empty());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn announcements_nobody_dials_expire() {
        let broker = GrpcBroker::default();
        broker
            .inner
            .deliver(info(1, "/a"), Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(5));
        broker
            .inner
            .deliver(info(2, "/b"), Duration::from_millis(1));
        let slots = &broker.inner.pending.lock().unwrap().slots;
        assert!(!slots.contains_key(&1));
        assert!(slots.contains_key(&2));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn closing_fails_waiting_dials_at_once() {
        let broker = GrpcBroker::default();
        let waiter = {
            let broker = broker.clone();
            tokio::spawn(async move { broker.wait_for(5, Duration::from_secs(30)).await })
        };
        tokio::task::yield_now().await;
        broker.close();
        let err = tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .expect("the dial ends at once")
            .unwrap()
            .unwrap_err();
        assert_eq!(err.code(), Code::BrokerClosed);
    }

    #[test]
    fn announced_addresses_are_checked() {
        assert!(announced_endpoint(&info(1, "/tmp/s")).is_ok());
        let tcp = ConnInfo {
            network: "tcp".into(),
            address: "127.0.0.1:10001".into(),
            ..info(1, "")
        };
        assert_eq!(
            announced_endpoint(&tcp).unwrap(),
            Endpoint::Tcp("127.0.0.1:10001".parse().unwrap())
        );
        let empty = ConnInfo {
            network: String::new(),
            ..info(1, "")
        };
        assert_eq!(
            announced_endpoint(&empty).unwrap_err().code(),
            Code::BrokerBadAddress
        );
    }
}
