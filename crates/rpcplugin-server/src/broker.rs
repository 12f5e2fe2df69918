//! go-plugin's `plugin.GRPCBroker`, plugin side: the broker itself is
//! rpcplugin-broker's, in the plugin's role; what is the plugin's own is serving
//! the `StartStream` stream the host opens, and readying the broker with the
//! plugin's transport and TLS (see `Builder::serve`).
//!
//! TLS follows go-plugin 1.4.4 and later (go-plugin#193, symmetric AutoMTLS): a
//! brokered server presents the plugin's certificate and requires the host's, as
//! the main server does; a brokered connection the plugin dials presents the
//! plugin's certificate and trusts exactly the host's (the one the host sent in
//! `PLUGIN_CLIENT_CERT`), or, without it, the configured client roots.

use std::pin::Pin;

use rpcplugin_broker::{Config, Driver, Role};
use rpcplugin_core::Endpoint;
use rpcplugin_proto::plugin::ConnInfo;
use rpcplugin_proto::plugin::grpc_broker_server::{GrpcBroker as BrokerRpc, GrpcBrokerServer};
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

pub use rpcplugin_broker::{BrokeredServer, DEFAULT_BROKER_DIAL_TIMEOUT, GrpcBroker};

/// Messages the plugin sends on one host stream not yet taken by gRPC.
const STREAM_QUEUE: usize = 16;

/// The plugin's broker as the server owns it.
#[derive(Debug, Clone)]
pub(crate) struct PluginBroker(Driver);

impl Default for PluginBroker {
    fn default() -> Self {
        Self(Driver::new(Role::Plugin))
    }
}

impl PluginBroker {
    /// The handle services use.
    pub(crate) fn broker(&self) -> GrpcBroker {
        self.0.broker()
    }

    /// Called once the transport and TLS are decided, before serving.
    pub(crate) fn set_ready(&self, config: Config) {
        self.0.set_ready(config);
    }

    /// The plugin's own endpoint, once bound.
    pub(crate) fn set_endpoint(&self, endpoint: Endpoint) {
        self.0.set_endpoint(endpoint);
    }

    /// Stops every brokered server and fails waiting dials: the plugin is stopping.
    pub(crate) fn close(&self) {
        self.0.close();
    }

    /// The `plugin.GRPCBroker` service the host talks to.
    pub(crate) fn service(&self) -> GrpcBrokerServer<BrokerService> {
        GrpcBrokerServer::new(BrokerService(self.0.clone()))
    }
}

/// The `plugin.GRPCBroker` service: each `StartStream` call the host makes is
/// one broker stream, pumped by the broker until either side ends it.
#[derive(Debug, Clone)]
pub(crate) struct BrokerService(Driver);

#[tonic::async_trait]
impl BrokerRpc for BrokerService {
    type StartStreamStream =
        Pin<Box<dyn tokio_stream::Stream<Item = Result<ConnInfo, Status>> + Send>>;

    async fn start_stream(
        &self,
        request: Request<Streaming<ConnInfo>>,
    ) -> Result<Response<Self::StartStreamStream>, Status> {
        if self.0.is_closed() {
            return Err(Status::unavailable("the plugin is stopping"));
        }
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        tokio::spawn(self.0.pump(request.into_inner(), tx));
        tracing::debug!("the host opened the broker stream");
        Ok(Response::new(Box::pin(ReceiverStream::new(rx).map(Ok))))
    }
}
