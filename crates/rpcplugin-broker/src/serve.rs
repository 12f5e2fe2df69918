//! Brokered servers: one tonic server per id, on a listener of its own (announced
//! to the peer) or on the streams the peer's knocks claim (multiplexed), stopped
//! by its handle, by the broker closing, or by the stream with the peer ending.

use rpcplugin_core::Code;
use std::sync::Arc;
use std::time::Duration;

use rpcplugin_core::{Endpoint, Error, Result};
use rpcplugin_proto::plugin::ConnInfo;
use rpcplugin_transport::{Listener, MuxRouter};
use tokio::sync::{mpsc, oneshot, watch};
use tonic::service::Routes;

use crate::broker::GrpcBroker;
use crate::incoming::Incoming;

/// How long a brokered server's in-flight calls may take once it stops.
const BROKERED_DRAIN: Duration = Duration::from_secs(2);

/// A brokered server, serving the peer under an id. Dropping it stops the server
/// and removes its socket (in the background); [`stop`](Self::stop) waits for that.
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

    /// Where it listens (announced to the peer). Multiplexed, it has no socket of
    /// its own: this side's main endpoint.
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

/// What one brokered server runs with, whichever path it came by.
struct Serving {
    id: u32,
    routes: Routes,
    incoming: Incoming,
    stop: oneshot::Receiver<()>,
    generation: watch::Receiver<u64>,
    max_frame_size: Option<u32>,
}

impl GrpcBroker {
    /// Multiplexed: nothing to bind or announce; the peer knocks for the id.
    pub(crate) fn serve_muxed(
        &self,
        id: u32,
        router: Arc<MuxRouter>,
        routes: Routes,
    ) -> BrokeredServer {
        let inner = &self.inner;
        let config = inner.config.get().expect("checked by accept_and_serve");
        let incoming =
            Incoming::from_streams(router.listen(id), config.accept_tls.clone(), inner.role);
        let (stop_tx, serving) = self.serving(id, routes, incoming);
        let task = tokio::spawn(async move {
            serving.run(None).await;
            router.unlisten(id);
        });
        tracing::debug!(
            id,
            "brokered server listening on the multiplexed connection"
        );
        BrokeredServer {
            id,
            endpoint: inner
                .endpoint
                .get()
                .cloned()
                .unwrap_or_else(|| Endpoint::Unix(std::path::PathBuf::new())),
            stop: Some(stop_tx),
            task: Some(task),
        }
    }

    /// Over sockets: a new listener, served, then announced to the peer.
    pub(crate) async fn serve_socket(&self, id: u32, routes: Routes) -> Result<BrokeredServer> {
        let config = self.inner.ready()?;
        let listener = Arc::new(config.transport.bind().await?);
        let endpoint = listener.endpoint().clone();
        let incoming = Incoming::new(listener.clone(), config.accept_tls.clone(), self.inner.role);
        let (stop_tx, serving) = self.serving(id, routes, incoming);
        let task = tokio::spawn(serving.run(Some(listener)));
        let info = ConnInfo {
            service_id: id,
            network: endpoint.network().as_str().to_owned(),
            address: endpoint.to_string(),
            knock: None,
        };
        let announce = self
            .inner
            .outgoing_tx
            .send_timeout(info, config.dial_timeout);
        if let Err(err) = announce.await {
            let _ = stop_tx.send(());
            return Err(match err {
                mpsc::error::SendTimeoutError::Timeout(_) => self.announce_timeout_error(id),
                mpsc::error::SendTimeoutError::Closed(_) => self.inner.closed_error(),
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

    fn serving(
        &self,
        id: u32,
        routes: Routes,
        incoming: Incoming,
    ) -> (oneshot::Sender<()>, Serving) {
        let (stop_tx, stop) = oneshot::channel();
        let serving = Serving {
            id,
            routes,
            incoming,
            stop,
            generation: self.inner.generation.subscribe(),
            max_frame_size: self.inner.config.get().and_then(|c| c.http2_max_frame_size),
        };
        (stop_tx, serving)
    }

    fn announce_timeout_error(&self, id: u32) -> Error {
        let peer = self.inner.role.peer();
        let hint = match peer {
            crate::Role::Host => {
                "the host has not opened the plugin.GRPCBroker stream (go-plugin and rpcplugin \
                 hosts open it at connect; other hosts may not support the broker)"
            }
            crate::Role::Plugin => "the plugin is stuck or overloaded; check its log",
        };
        Error::new(
            Code::BrokerAnnounceTimeout,
            format!("cannot announce broker id {id}: the {peer} reads no announcements"),
        )
        .with_hint(hint)
    }
}

impl Serving {
    /// Serves until stopped, the broker closes or the peer's stream ends; then
    /// drains (bounded) and removes the listener's socket.
    async fn run(mut self, listener: Option<Arc<Listener>>) {
        let id = self.id;
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let server = tonic::transport::Server::builder()
            .max_frame_size(self.max_frame_size)
            .add_routes(self.routes)
            .serve_with_incoming_shutdown(self.incoming, async {
                let _ = shutdown_rx.await;
            });
        // Boxed, not stack-pinned, so that dropping it below really ends it.
        let mut server = Box::pin(server);
        tokio::select! {
            result = &mut server => {
                if let Err(err) = result {
                    tracing::warn!(id, error = %err, "brokered server failed");
                }
            }
            _ = self.stop => {}
            _ = self.generation.changed() => {}
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
}
