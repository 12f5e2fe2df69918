//! In-process plugin tests: a plugin's services and a host in one process, over
//! an in-memory pipe, with no executable (go-plugin's `TestPluginGRPCConn`).
//!
//! [`start`] takes the plugin server builder a plugin's `main` uses (its
//! services, versions, broker and TLS choices) and serves it inside the test,
//! with the same health, controller, stdio and broker services a launched plugin
//! has; then it attaches a host to it, with AutoMTLS as a launching host has it
//! (turn it off with [`TestHost::auto_mtls`]). The result works like a
//! [`PluginClient`]: [`channel`](TestPlugin::channel) for generated clients,
//! [`broker`](TestPlugin::broker) both ways, [`stop`](TestPlugin::stop); and
//! [`handle`](TestPlugin::handle) is what the plugin's code sees of itself.
//!
//! Connections run over `tokio::io::duplex` pipes handed out by a custom
//! transport (network `memory`): nothing is bound, no file is made, no process
//! started. What the plugin prints stays in the test's output.
//!
//! ```
//! use rpcplugin::proto::examples::kv::kv_client::KvClient;
//! use rpcplugin::proto::examples::kv::kv_server::{Kv, KvServer};
//! use rpcplugin::proto::examples::kv::{Empty, GetRequest, GetResponse, PutRequest};
//! use rpcplugin::tonic::{Request, Response, Status};
//!
//! struct Echo;
//!
//! #[rpcplugin::tonic::async_trait]
//! impl Kv for Echo {
//!     async fn get(&self, r: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
//!         Ok(Response::new(GetResponse { value: r.into_inner().key.into_bytes() }))
//!     }
//!     async fn put(&self, _: Request<PutRequest>) -> Result<Response<Empty>, Status> {
//!         Ok(Response::new(Empty {}))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The same builder the plugin's main() runs.
//! let plugin = rpcplugin::plugin_server()
//!     .handshake("BASIC_PLUGIN", "hello")
//!     .add_service(KvServer::new(Echo));
//! let test = rpcplugin::testing::start(plugin).await?;
//! assert!(test.client().is_tls());
//! let mut kv = KvClient::new(test.channel());
//! let reply = kv.get(GetRequest { key: "ping".into() }).await?;
//! assert_eq!(reply.into_inner().value, b"ping");
//! test.stop().await?;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use rpcplugin_core::{Code, Endpoint, Error, Network, Result};
use rpcplugin_crypto::{Identity, KeyAlgorithm, Role};
use rpcplugin_handshake::ReattachConfig;
use rpcplugin_transport::{Accept, Listener, Transport};
use tokio::io::DuplexStream;
use tokio::sync::{mpsc, oneshot};

use crate::client::{GrpcBroker, PluginClient};
use crate::config::Environment;
use crate::server::{Builder, PluginHandle, StopReason};

/// How many bytes a pipe buffers each way before a writer waits for the reader.
const PIPE_BUFFER: usize = 256 * 1024;

/// Serves `plugin` in this process and attaches a host to it with AutoMTLS and
/// app protocol version 1. See the [module docs](self).
///
/// # Errors
///
/// What the plugin's builder refuses (its configuration, TLS, versions), and what
/// a host would refuse (no version in common, a TLS failure, a failed health
/// check).
pub async fn start(plugin: Builder) -> Result<TestPlugin> {
    TestHost::new().start(plugin).await
}

/// The host side of an in-process test, when the defaults of [`start`] do not fit.
#[derive(Debug, Clone)]
#[must_use]
pub struct TestHost {
    auto_mtls: bool,
    versions: Vec<u32>,
}

impl Default for TestHost {
    fn default() -> Self {
        Self::new()
    }
}

impl TestHost {
    /// AutoMTLS, app protocol version 1.
    pub fn new() -> Self {
        Self {
            auto_mtls: true,
            versions: vec![1],
        }
    }

    /// AutoMTLS as a launching host does it (default on): the host's certificate
    /// reaches the plugin as `PLUGIN_CLIENT_CERT`, and the host trusts exactly the
    /// certificate the plugin announces. Off, both sides speak plaintext.
    pub fn auto_mtls(mut self, enabled: bool) -> Self {
        self.auto_mtls = enabled;
        self
    }

    /// The app protocol versions the host offers (default `[1]`).
    pub fn protocol_versions(mut self, versions: impl IntoIterator<Item = u32>) -> Self {
        self.versions = versions.into_iter().collect();
        self
    }

    /// Serves `plugin` in this process and attaches this host to it.
    ///
    /// # Errors
    ///
    /// As [`start`].
    pub async fn start(self, plugin: Builder) -> Result<TestPlugin> {
        let net = MemoryNet::default();
        let identity = if self.auto_mtls {
            Some(Identity::self_signed(
                KeyAlgorithm::default(),
                Role::Client,
            )?)
        } else {
            None
        };
        // What a launching host puts in the plugin's environment.
        let versions = self
            .versions
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mut vars = vec![("PLUGIN_PROTOCOL_VERSIONS".to_owned(), versions)];
        if let Some(identity) = &identity {
            vars.push(("PLUGIN_CLIENT_CERT".to_owned(), identity.cert_pem()));
        }
        let plugin = plugin
            .environment(Environment::from_pairs(vars))
            .transport(net.transport())
            .connector(MemoryNet::network(), net.connector());

        let handle = plugin.handle();
        let (line_tx, line_rx) = oneshot::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let server = tokio::spawn(plugin.serve_in_process(
            move |line| {
                let _ = line_tx.send(line);
            },
            async move {
                let _ = stop_rx.await;
            },
        ));
        let Ok(line) = line_rx.await else {
            // The plugin failed before announcing itself: its error says why.
            return Err(match server.await {
                Ok(Err(err)) => err,
                Ok(Ok(_)) | Err(_) => Error::new(
                    Code::HandshakePluginExited,
                    "the in-process plugin stopped before announcing itself",
                ),
            });
        };

        let mut reattach =
            ReattachConfig::new(line.app_version, line.endpoint.clone(), std::process::id());
        if let Some(cert) = &line.server_cert {
            reattach = reattach.with_server_cert(cert.clone());
        }
        let mut host = PluginClient::attach(reattach)
            .name("in-process")
            .protocol_versions(self.versions)
            .environment(Environment::from_pairs(Vec::<(String, String)>::new()))
            .connector(MemoryNet::network(), net.connector())
            .broker_transport(net.transport());
        if let Some(identity) = identity {
            host = host.identity(identity);
        }
        let stop = Stop {
            signal: Some(stop_tx),
        };
        let client = host.start().await?;
        Ok(TestPlugin {
            client,
            handle,
            server,
            stop,
        })
    }
}

/// A plugin served in this process with a host attached. See the
/// [module docs](self).
#[derive(Debug)]
pub struct TestPlugin {
    client: PluginClient,
    handle: PluginHandle,
    server: tokio::task::JoinHandle<Result<StopReason>>,
    stop: Stop,
}

impl TestPlugin {
    /// A channel to the plugin, for any generated client (cheap to clone).
    pub fn channel(&self) -> tonic::transport::Channel {
        self.client.channel()
    }

    /// The host's broker: dial what the plugin brokers, serve it more.
    pub fn broker(&self) -> GrpcBroker {
        self.client.broker()
    }

    /// The host's [`PluginClient`] (version, TLS, endpoint, traced channels).
    pub fn client(&self) -> &PluginClient {
        &self.client
    }

    /// The plugin's own [`PluginHandle`]: its status (calls, connections),
    /// where it serves, and the health it reports, as its code sees them.
    pub fn handle(&self) -> &PluginHandle {
        &self.handle
    }

    /// Detaches the host, stops the plugin (its drain runs as in a process),
    /// and returns why the plugin stopped.
    ///
    /// # Errors
    ///
    /// The plugin's serve error, if it failed.
    pub async fn stop(mut self) -> Result<StopReason> {
        self.client.stop().await?;
        self.stop.now();
        match (&mut self.server).await {
            Ok(result) => result,
            Err(err) => Err(Error::new(
                Code::TransportServe,
                "the in-process plugin's task panicked or was cancelled",
            )
            .with_source(err)),
        }
    }
}

/// Stops the plugin when the [`TestPlugin`] is dropped without [`TestPlugin::stop`].
#[derive(Debug)]
struct Stop {
    signal: Option<oneshot::Sender<()>>,
}

impl Stop {
    fn now(&mut self) {
        if let Some(signal) = self.signal.take() {
            let _ = signal.send(());
        }
    }
}

impl Drop for Stop {
    fn drop(&mut self) {
        self.now();
    }
}

/// The in-memory network: addresses `memory-N`, each a queue of pipe ends its
/// listener accepts; a connector dials by pushing one end there.
#[derive(Clone, Default, Debug)]
struct MemoryNet {
    inner: Arc<MemoryInner>,
}

#[derive(Default, Debug)]
struct MemoryInner {
    next: AtomicU64,
    listeners: Mutex<HashMap<String, mpsc::UnboundedSender<DuplexStream>>>,
}

impl MemoryNet {
    fn network() -> Network {
        Network::custom("memory").expect("a valid network name")
    }

    fn transport(&self) -> MemoryTransport {
        MemoryTransport(self.clone())
    }

    fn connector(&self) -> MemoryConnector {
        MemoryConnector(self.clone())
    }
}

/// Dials `memory-N`: a new pipe, one end queued for that listener.
#[derive(Clone, Debug)]
struct MemoryConnector(MemoryNet);

impl tower::Service<Endpoint> for MemoryConnector {
    type Response = DuplexStream;
    type Error = io::Error;
    type Future = std::future::Ready<io::Result<DuplexStream>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, endpoint: Endpoint) -> Self::Future {
        let listeners = self
            .0
            .inner
            .listeners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(listener) = listeners.get(&endpoint.to_string()) else {
            return std::future::ready(Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("nothing listens on {endpoint}"),
            )));
        };
        let (near, far) = tokio::io::duplex(PIPE_BUFFER);
        std::future::ready(match listener.send(far) {
            Ok(()) => Ok(near),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("{endpoint} is closed"),
            )),
        })
    }
}

#[derive(Debug)]
struct MemoryTransport(MemoryNet);

impl Transport for MemoryTransport {
    fn network(&self) -> Network {
        MemoryNet::network()
    }

    fn bind(&self) -> Pin<Box<dyn Future<Output = Result<Listener>> + Send + '_>> {
        Box::pin(async move {
            let n = self.0.inner.next.fetch_add(1, Ordering::Relaxed);
            let address = format!("memory-{n}");
            let endpoint = Endpoint::custom(self.network(), address.clone())
                .map_err(|e| Error::new(Code::TransportBadEndpoint, e.to_string()))?;
            let (tx, rx) = mpsc::unbounded_channel();
            self.0
                .inner
                .listeners
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(address.clone(), tx);
            let accept = MemoryAccept {
                incoming: Mutex::new(rx),
                net: self.0.clone(),
                address,
            };
            Ok(Listener::new(endpoint, accept))
        })
    }
}

struct MemoryAccept {
    incoming: Mutex<mpsc::UnboundedReceiver<DuplexStream>>,
    net: MemoryNet,
    address: String,
}

impl Accept for MemoryAccept {
    type Io = DuplexStream;

    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<DuplexStream>> {
        let mut incoming = self
            .incoming
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match incoming.poll_recv(cx) {
            Poll::Ready(Some(io)) => Poll::Ready(Ok(io)),
            // The sender lives in the network's table until this listener drops.
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for MemoryAccept {
    fn drop(&mut self) {
        self.net
            .inner
            .listeners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.address);
    }
}
