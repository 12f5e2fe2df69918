//! go-plugin's `plugin.GRPCBroker`, host side: extra gRPC servers between host
//! and plugin under numeric ids, so that the plugin can call back into the host
//! (go-plugin's bidirectional plugins: Terraform, Vault and Packer rely on it).
//!
//! Wire shape (go-plugin 1.0.1, without multiplexing): right after connecting, the
//! host opens one `StartStream` bidirectional stream of `ConnInfo` and keeps it for
//! the connection's life. [`GrpcBroker::accept_and_serve`] binds a new listener (a
//! Unix socket in the host's private socket directory for this plugin, or loopback
//! TCP when the plugin serves TCP), serves the given routes there, and announces
//! `ConnInfo{service_id, network, address}` down the stream. [`GrpcBroker::dial`]
//! waits (bounded) for the plugin's announcement of an id and connects to it.
//!
//! TLS follows go-plugin 1.4.4 and later (go-plugin#193, symmetric AutoMTLS): a
//! brokered server presents the host's certificate and requires exactly the
//! plugin's (or, with configured roots and no announced certificate, one from those
//! roots); a brokered connection the host dials uses the same TLS as its main
//! connection. go-plugin 1.0.1 plugins cannot dial back under AutoMTLS (they check
//! the host's certificate against the system roots, go-plugin#109); plaintext works.

use rpcplugin_core::Code;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use rpcplugin_core::{Endpoint, Error, Network, Result};
use rpcplugin_proto::plugin::ConnInfo;
use rpcplugin_proto::plugin::conn_info::Knock;
use rpcplugin_proto::plugin::grpc_broker_client::GrpcBrokerClient;
use rpcplugin_transport::rustls::pki_types::ServerName;
use rpcplugin_transport::rustls::{ClientConfig, ServerConfig};
use rpcplugin_transport::{DEFAULT_TLS_HANDSHAKE_TIMEOUT, Listener, MuxRouter, Transport};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::Routes;
use tonic::transport::Channel;

/// How long [`GrpcBroker::dial`] waits for the plugin to announce an id, as go-plugin.
pub const DEFAULT_BROKER_DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a brokered server's in-flight calls may take once it stops.
const BROKERED_DRAIN: Duration = Duration::from_secs(2);

/// Announcements not yet sent on the stream; past this, `accept_and_serve` waits.
const OUTGOING_QUEUE: usize = 64;

/// The host's broker for one plugin. Cheap to clone; get it from
/// [`PluginClient::broker`](crate::PluginClient::broker).
///
/// ```no_run
/// # async fn example(plugin: rpcplugin_client::PluginClient, routes: tonic::service::Routes)
/// # -> rpcplugin_client::Result<()> {
/// // Serve a callback service to the plugin, and tell the plugin its id in a request.
/// let broker = plugin.broker();
/// let id = broker.next_id();
/// let server = broker.accept_and_serve(id, routes).await?;
/// // ... call the plugin with `id`; it dials the id and calls back.
/// server.stop().await;
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
    closed: AtomicBool,
    /// Why the broker closed, for the errors after it.
    closed_because: OnceLock<Closed>,
    /// This side's own endpoint (what multiplexed brokered servers report).
    endpoint: OnceLock<Endpoint>,
    /// Multiplexed dials knock and open one at a time, so that the accepting side
    /// pairs each stream with its knock (as go-plugin's dial mutex does).
    dial_lock: tokio::sync::Mutex<()>,
    /// Bumped when the broker closes: brokered servers watch it and stop.
    generation: watch::Sender<u64>,
}

/// Why a host's broker closed.
#[derive(Debug, Clone, Copy)]
enum Closed {
    Stopped,
    PluginGone,
    Unsupported,
}

/// What serving and dialling need: the host's transport for brokered listeners
/// and its TLS.
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

impl GrpcBroker {
    /// A broker that talks over `channel`'s `StartStream`, opened now.
    pub(crate) fn start(channel: Channel, ready: Ready, plugin: &str) -> Self {
        let (outgoing_tx, outgoing_rx) = mpsc::channel(OUTGOING_QUEUE);
        let broker = Self::new(outgoing_tx, Some(ready));
        let inner = broker.inner.clone();
        let plugin = plugin.to_owned();
        tokio::spawn(async move {
            let mut client = GrpcBrokerClient::new(channel);
            let mut inbound = match client.start_stream(ReceiverStream::new(outgoing_rx)).await {
                Ok(response) => response.into_inner(),
                Err(status) => {
                    let why = if status.code() == tonic::Code::Unimplemented {
                        Closed::Unsupported
                    } else {
                        Closed::PluginGone
                    };
                    tracing::debug!(%plugin, %status, "the plugin's broker stream did not open");
                    inner.close(why);
                    return;
                }
            };
            let mut generation = inner.generation.subscribe();
            loop {
                tokio::select! {
                    message = inbound.message() => match message {
                        Ok(Some(info)) => inner.deliver(info, inner.dial_timeout()),
                        Ok(None) => break,
                        Err(status) => {
                            tracing::debug!(%plugin, %status, "the plugin's broker stream failed");
                            break;
                        }
                    },
                    _ = generation.changed() => {
                        if inner.closed.load(Ordering::SeqCst) {
                            break;
                        }
                    }
                }
            }
            tracing::debug!(%plugin, "the plugin's broker stream ended");
            inner.close(Closed::PluginGone);
        });
        broker
    }

    /// A broker that is closed from the start (before a plugin is connected).
    pub(crate) fn detached() -> Self {
        let (outgoing_tx, _) = mpsc::channel(1);
        let broker = Self::new(outgoing_tx, None);
        broker.inner.close(Closed::Stopped);
        broker
    }

    fn new(outgoing_tx: mpsc::Sender<ConnInfo>, ready: Option<Ready>) -> Self {
        let cell = OnceLock::new();
        if let Some(ready) = ready {
            let _ = cell.set(ready);
        }
        Self {
            inner: Arc::new(Inner {
                next_id: AtomicU32::new(0),
                ready: cell,
                pending: Mutex::new(Pending::default()),
                outgoing_tx,
                closed: AtomicBool::new(false),
                closed_because: OnceLock::new(),
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

    /// Serves `routes` (one or more tonic services) to the plugin under `id`: binds
    /// a new listener in the host's private socket directory for this plugin (or
    /// on loopback TCP), serves it with the host's TLS, and announces it to the
    /// plugin, which can then dial `id`.
    ///
    /// The server runs until the returned handle is dropped or stopped, the
    /// plugin is stopped, or its broker stream ends; its socket is removed then.
    ///
    /// # Errors
    ///
    /// `broker.closed` once the plugin is stopped or gone (or when it serves no
    /// broker), a transport error when no listener can be bound, and
    /// `broker.announce_timeout` when the stream does not take the announcement
    /// within the dial timeout.
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
        let incoming = incoming(
            listener.clone(),
            ready.accept_tls.clone(),
            self.inner.generation.subscribe(),
        );
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
                    format!("cannot announce broker id {id}: the plugin reads no announcements"),
                )
                .with_hint("the plugin is stuck or overloaded; check its log"),
                mpsc::error::SendTimeoutError::Closed(_) => self.closed_error(),
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

    /// Connects to the server the plugin serves under `id`, waiting up to the dial
    /// timeout for the plugin's announcement. The channel uses the same TLS as the
    /// main connection to the plugin.
    ///
    /// # Errors
    ///
    /// `broker.dial_timeout` when the plugin announces nothing for `id` in time,
    /// `broker.closed` once the plugin is stopped or gone, `broker.bad_address`
    /// for an announcement that cannot be dialled, and a transport or
    /// `security.*` error when connecting fails.
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
        connect_channel(id, endpoint, ready.dial_tls.clone()).await
    }

    /// Whether the broker still works: false once the plugin is stopped or its
    /// broker stream ended (the plugin exited, or serves no broker).
    pub fn is_open(&self) -> bool {
        !self.inner.closed.load(Ordering::SeqCst)
    }

    /// Ends the stream, stops every brokered server and fails waiting dials.
    pub(crate) fn close(&self) {
        self.inner.close(Closed::Stopped);
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
            .map_err(|_| dial_timeout_error(id, timeout, "plugin"))?;
        let ack = self.wait_for(id, timeout).await?;
        match ack.knock {
            Some(k) if k.ack && k.error.is_empty() => Ok(()),
            Some(k) if k.ack => Err(Error::new(
                Code::BrokerKnockRefused,
                format!("the plugin refused broker id {id}: {}", k.error),
            )
            .with_hint(format!(
                "the plugin must serve the id (rpcplugin: accept_and_serve({id}, ..); go-plugin: \
                 AcceptAndServe({id}, ..)) before this side dials it"
            ))),
            _ => Err(Error::new(
                Code::BrokerBadAck,
                format!("the plugin answered the knock for broker id {id} with something else"),
            )
            .with_hint("both sides must multiplex, or neither")),
        }
    }

    fn ready(&self) -> Result<&Ready> {
        self.inner.ready.get().ok_or_else(|| self.closed_error())
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(self.closed_error());
        }
        Ok(())
    }

    fn closed_error(&self) -> Error {
        let (message, hint) = match self.inner.closed_because.get() {
            Some(Closed::Unsupported) => (
                "the plugin serves no broker (plugin.GRPCBroker)",
                "bidirectional calls need a plugin built with go-plugin or rpcplugin",
            ),
            Some(Closed::PluginGone) => (
                "the broker is closed: the plugin's broker stream ended",
                "the plugin exited or closed its connection; check its log",
            ),
            Some(Closed::Stopped) | None => (
                "the broker is closed: the plugin was stopped",
                "brokered connections live as long as the plugin client",
            ),
        };
        Error::new(Code::BrokerClosed, message).with_hint(hint)
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
                Err(dial_timeout_error(id, timeout, "plugin"))
            }
        }
    }
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

    /// Fails waiting dials and stops brokered servers; the first reason stays.
    fn close(&self, why: Closed) {
        let _ = self.closed_because.set(why);
        self.closed.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .slots
            .clear();
    }
}

/// A brokered server the host serves. Dropping it stops the server and removes
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

    /// Where it listens (announced to the plugin).
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
    let server = tonic::transport::Server::builder()
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

/// Accepted connections, TLS handshakes done, as tonic serves them. The accept
/// loop ends with the broker (or when the server stops reading); handshakes run
/// concurrently, at most 64 at once, each bounded in time.
fn incoming(
    listener: Arc<Listener>,
    tls: Option<Arc<ServerConfig>>,
    mut generation: watch::Receiver<u64>,
) -> ReceiverStream<std::io::Result<Connection>> {
    let (tx, rx) = mpsc::channel(8);
    let permits = Arc::new(tokio::sync::Semaphore::new(64));
    tokio::spawn(async move {
        generation.mark_unchanged();
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = tx.closed() => break,
                _ = generation.changed() => break,
            };
            let stream = match accepted {
                Ok(stream) => stream,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot accept a brokered connection; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(config) = tls.clone() else {
                if tx.send(Ok(Connection(stream))).await.is_err() {
                    break;
                }
                continue;
            };
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                match stream
                    .accept_tls(config, DEFAULT_TLS_HANDSHAKE_TIMEOUT)
                    .await
                {
                    Ok(stream) => {
                        let _ = tx.send(Ok(Connection(stream))).await;
                    }
                    Err(err) => log_tls_failure(&err),
                }
                drop(permit);
            });
        }
    });
    ReceiverStream::new(rx)
}

/// Connections for a multiplexed brokered server: the streams the plugin's knocks
/// claimed, TLS handshakes done (concurrently, at most 64 at once).
fn brokered_incoming(
    mut streams: mpsc::Receiver<rpcplugin_transport::Stream>,
    tls: Option<Arc<ServerConfig>>,
) -> ReceiverStream<std::io::Result<Connection>> {
    let (tx, rx) = mpsc::channel(8);
    let permits = Arc::new(tokio::sync::Semaphore::new(64));
    tokio::spawn(async move {
        while let Some(stream) = tokio::select! {
            stream = streams.recv() => stream,
            () = tx.closed() => None,
        } {
            let Some(config) = tls.clone() else {
                if tx.send(Ok(Connection(stream))).await.is_err() {
                    break;
                }
                continue;
            };
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                match stream
                    .accept_tls(config, DEFAULT_TLS_HANDSHAKE_TIMEOUT)
                    .await
                {
                    Ok(stream) => {
                        let _ = tx.send(Ok(Connection(stream))).await;
                    }
                    Err(err) => log_tls_failure(&err),
                }
                drop(permit);
            });
        }
    });
    ReceiverStream::new(rx)
}

fn log_tls_failure(err: &std::io::Error) {
    match rpcplugin_transport::TlsFailure::find(err) {
        Some(failure @ rpcplugin_transport::TlsFailure::RefusedByPeer(_)) => tracing::warn!(
            reason = %failure,
            "a brokered connection from the plugin failed: it refused this host's certificate; \
             go-plugin plugins before 1.4.4 cannot dial back to their host under AutoMTLS \
             (go-plugin#109)"
        ),
        Some(failure) => tracing::warn!(
            reason = %failure,
            "refused a brokered connection: TLS failed (the plugin must present its own certificate)"
        ),
        None => tracing::debug!(error = %err, "a brokered connection failed during TLS"),
    }
}

/// One accepted brokered connection, as tonic wants it.
pub(crate) struct Connection(rpcplugin_transport::Stream);

impl tonic::transport::server::Connected for Connection {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl tokio::io::AsyncRead for Connection {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Connection {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
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

    fn open_broker() -> GrpcBroker {
        let (tx, _) = mpsc::channel(1);
        GrpcBroker::new(tx, None)
    }

    #[test]
    fn ids_count_from_one() {
        let broker = open_broker();
        assert_eq!(broker.next_id(), 1);
        assert_eq!(broker.next_id(), 2);
        assert_eq!(broker.clone().next_id(), 3);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_announcement_before_the_dial_is_kept_for_it() {
        let broker = open_broker();
        broker
            .inner
            .deliver(info(4, "/tmp/x.sock"), Duration::from_secs(5));
        let got = broker.wait_for(4, Duration::from_secs(1)).await.unwrap();
        assert_eq!(got.address, "/tmp/x.sock");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_dial_waits_for_a_later_announcement() {
        let broker = open_broker();
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
        let broker = open_broker();
        let started = Instant::now();
        let err = broker
            .wait_for(3, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(err.code(), Code::BrokerDialTimeout);
        assert_eq!(err.kind(), rpcplugin_core::ErrorKind::Timeout);
        assert!(err.hint().unwrap().contains("AcceptAndServe(3"), "{err:?}");
        assert!(
            err.to_string()
                .contains("the plugin announced no broker id 3")
        );
        assert!(broker.inner.pending.lock().unwrap().slots.is_empty());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn announcements_nobody_dials_expire() {
        let broker = open_broker();
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
        let broker = open_broker();
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
