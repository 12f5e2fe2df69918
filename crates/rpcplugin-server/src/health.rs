//! `grpc.health.v1.Health`: go-plugin hosts ask for the service name `"plugin"`.

use rpcplugin_proto::health::v1::health_check_response::ServingStatus;
use rpcplugin_proto::health::v1::health_server::Health;
use rpcplugin_proto::health::v1::{
    HealthCheckRequest, HealthCheckResponse, HealthListRequest, HealthListResponse,
};
use std::collections::HashMap;
use std::pin::Pin;
use tokio::sync::watch;

use crate::handle::HealthMap;
use crate::{HealthStatus, PluginHandle};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// The name go-plugin's `Client.Ping` checks.
pub(crate) const PLUGIN_SERVICE: &str = "plugin";

/// Health of the plugin: SERVING for `""`, `"plugin"` and every served service
/// until shutdown begins, then NOT_SERVING (so a host polling health sees the
/// stop); plugin code may set any name with [`PluginHandle::set_health`](crate::PluginHandle::set_health).
#[derive(Debug, Clone)]
pub(crate) struct HealthService {
    statuses: watch::Receiver<HealthMap>,
}

impl HealthService {
    /// Health over the handle's statuses, with the served names (and `""` and
    /// `"plugin"`) SERVING unless plugin code set them otherwise.
    pub(crate) fn new(service_names: Vec<String>, handle: &PluginHandle) -> Self {
        let mut names = vec![String::new(), PLUGIN_SERVICE.to_owned()];
        names.extend(service_names);
        handle.init_health(names);
        Self {
            statuses: handle.health_watch(),
        }
    }

    fn status(&self, service: &str) -> Option<ServingStatus> {
        self.statuses.borrow().get(service).map(wire)
    }
}

fn wire(status: HealthStatus) -> ServingStatus {
    match status {
        HealthStatus::Serving => ServingStatus::Serving,
        HealthStatus::NotServing => ServingStatus::NotServing,
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let service = request.into_inner().service;
        match self.status(&service) {
            Some(status) => Ok(Response::new(HealthCheckResponse {
                status: status as i32,
            })),
            None => Err(Status::not_found(format!("unknown service {service:?}"))),
        }
    }

    async fn list(
        &self,
        _request: Request<HealthListRequest>,
    ) -> Result<Response<HealthListResponse>, Status> {
        let map = self.statuses.borrow();
        let statuses: HashMap<String, HealthCheckResponse> = map
            .names()
            .filter_map(|n| {
                let status = wire(map.get(n)?) as i32;
                Some((n.to_owned(), HealthCheckResponse { status }))
            })
            .collect();
        Ok(Response::new(HealthListResponse { statuses }))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let service = request.into_inner().service;
        let known = self.status(&service).is_some();
        let mut statuses = self.statuses.clone();
        let stream = async_stream(move |tx| async move {
            if !known {
                let status = ServingStatus::ServiceUnknown as i32;
                let _ = tx.send(Ok(HealthCheckResponse { status })).await;
                return;
            }
            let mut last = None;
            loop {
                let (status, draining) = {
                    let map = statuses.borrow_and_update();
                    let status = map
                        .get(&service)
                        .map_or(ServingStatus::ServiceUnknown, wire);
                    (status as i32, map.is_draining())
                };
                // gRPC's Watch sends a status when it changes, not every update
                // of another name.
                if last != Some(status) {
                    if tx.send(Ok(HealthCheckResponse { status })).await.is_err() {
                        return;
                    }
                    last = Some(status);
                }
                // The server is stopping: the watcher has its NOT_SERVING, and an
                // open stream would hold up the drain.
                if draining {
                    return;
                }
                // Ends when the host drops the call (the handle, and so the
                // sender, may outlive the server).
                tokio::select! {
                    changed = statuses.changed() => if changed.is_err() { return },
                    () = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(stream))
    }
}

/// A stream fed by a task; the task stops when the receiver is dropped.
pub(crate) fn async_stream<T, F, Fut>(f: F) -> Pin<Box<dyn Stream<Item = T> + Send>>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<T>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(f(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
