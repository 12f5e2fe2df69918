//! `grpc.health.v1.Health`: go-plugin hosts ask for the service name `"plugin"`.

use rpcplugin_proto::health::v1::health_check_response::ServingStatus;
use rpcplugin_proto::health::v1::health_server::Health;
use rpcplugin_proto::health::v1::{
    HealthCheckRequest, HealthCheckResponse, HealthListRequest, HealthListResponse,
};
use std::collections::HashMap;
use std::pin::Pin;
use tokio::sync::watch;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// The name go-plugin's `Client.Ping` checks.
pub(crate) const PLUGIN_SERVICE: &str = "plugin";

/// Health of the plugin: SERVING for `""`, `"plugin"` and every served service
/// until shutdown begins, then NOT_SERVING (so a host polling health sees the stop).
#[derive(Debug, Clone)]
pub(crate) struct HealthService {
    names: std::sync::Arc<Vec<String>>,
    serving: watch::Receiver<bool>,
}

impl HealthService {
    pub(crate) fn new(service_names: Vec<String>, serving: watch::Receiver<bool>) -> Self {
        let mut names = vec![String::new(), PLUGIN_SERVICE.to_owned()];
        names.extend(service_names);
        Self {
            names: std::sync::Arc::new(names),
            serving,
        }
    }

    fn status(&self, service: &str) -> Option<ServingStatus> {
        self.names.iter().any(|n| n == service).then(|| {
            if *self.serving.borrow() {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            }
        })
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
        let statuses: HashMap<String, HealthCheckResponse> = self
            .names
            .iter()
            .filter_map(|n| {
                let status = self.status(n)? as i32;
                Some((n.clone(), HealthCheckResponse { status }))
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
        let mut serving = self.serving.clone();
        let stream = async_stream(move |tx| async move {
            if !known {
                let status = ServingStatus::ServiceUnknown as i32;
                let _ = tx.send(Ok(HealthCheckResponse { status })).await;
                return;
            }
            loop {
                let status = if *serving.borrow_and_update() {
                    ServingStatus::Serving
                } else {
                    ServingStatus::NotServing
                } as i32;
                if tx.send(Ok(HealthCheckResponse { status })).await.is_err() {
                    return;
                }
                // Ends with the server: a changed() error means the sender is gone.
                if serving.changed().await.is_err() {
                    return;
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
