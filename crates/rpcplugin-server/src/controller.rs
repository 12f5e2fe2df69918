//! `plugin.GRPCController`: the host asks the plugin to stop.

use rpcplugin_proto::plugin::Empty;
use rpcplugin_proto::plugin::grpc_controller_server::GrpcController;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

/// Replies first, then starts a graceful stop: tonic's graceful shutdown lets the
/// in-flight Shutdown call finish, so the host gets its answer (go-plugin 1.0.1
/// stops inside the handler and the reply is lost).
#[derive(Debug, Clone)]
pub(crate) struct Controller {
    pub(crate) stop: mpsc::Sender<crate::StopReason>,
}

#[tonic::async_trait]
impl GrpcController for Controller {
    async fn shutdown(&self, _request: Request<Empty>) -> Result<Response<Empty>, Status> {
        tracing::debug!("shutdown requested by the host");
        let _ = self.stop.try_send(crate::StopReason::ShutdownRpc);
        Ok(Response::new(Empty {}))
    }
}
