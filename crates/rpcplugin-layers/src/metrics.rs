//! OpenTelemetry metrics of gRPC calls (feature `otel`): [`RpcMetrics`] records
//! each call's duration by method and status, and the calls in flight, with the
//! names of OpenTelemetry's RPC semantic conventions.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_util::future::BoxFuture;
use http_body::Body as HttpBody;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, Meter, UpDownCounter};
use tonic::body::Body;

use crate::stats::{Observe, call_observed};

/// Which side of a call is measured: the names of the instruments differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Server,
    Client,
}

/// The instruments of one side, shared by every clone and every layer made from it.
///
/// - `rpc.server.duration` / `rpc.client.duration` (histogram, milliseconds): one
///   measurement per finished call, with `rpc.system` (`grpc`), `rpc.service`,
///   `rpc.method` and `rpc.grpc.status_code` (as OpenTelemetry's RPC semantic
///   conventions name them). Its count is the number of calls by method and status.
/// - `rpcplugin.server.active_calls` / `rpcplugin.client.active_calls` (up-down
///   counter): calls started and not finished, with `rpc.system`, `rpc.service`
///   and `rpc.method`.
///
/// A call ends when its response body ends (a stream's last message and trailers)
/// or is dropped; a call whose trailers never came counts with status 2
/// (`UNKNOWN`), as gRPC reports a broken stream.
///
/// ```
/// use opentelemetry::metrics::MeterProvider as _;
/// use rpcplugin_layers::RpcMetrics;
///
/// // Any meter: the global provider's, or your SDK's.
/// let meter = opentelemetry::global::meter_provider().meter("my-plugin");
/// let metrics = RpcMetrics::server(&meter);
/// let stack = tower::ServiceBuilder::new().layer(metrics.layer());
/// # let _ = stack;
/// ```
#[derive(Debug, Clone)]
pub struct RpcMetrics {
    inner: Arc<Instruments>,
}

#[derive(Debug)]
struct Instruments {
    duration: Histogram<f64>,
    active: UpDownCounter<i64>,
    skip: &'static [&'static str],
}

impl RpcMetrics {
    /// The instruments of a server (a plugin), from `meter`.
    pub fn server(meter: &Meter) -> Self {
        Self::new(meter, Side::Server, &[])
    }

    /// The instruments of a client (a host), from `meter`.
    pub fn client(meter: &Meter) -> Self {
        Self::new(meter, Side::Client, &[])
    }

    /// As [`server`](Self::server), not measuring calls whose path starts with one
    /// of `prefixes` (a plugin's built-in services, say).
    pub fn server_skipping(meter: &Meter, prefixes: &'static [&'static str]) -> Self {
        Self::new(meter, Side::Server, prefixes)
    }

    fn new(meter: &Meter, side: Side, skip: &'static [&'static str]) -> Self {
        let (duration, active) = match side {
            Side::Server => ("rpc.server.duration", "rpcplugin.server.active_calls"),
            Side::Client => ("rpc.client.duration", "rpcplugin.client.active_calls"),
        };
        Self {
            inner: Arc::new(Instruments {
                duration: meter
                    .f64_histogram(duration)
                    .with_unit("ms")
                    .with_description("Duration of gRPC calls, by method and status")
                    .build(),
                active: meter
                    .i64_up_down_counter(active)
                    .with_unit("{call}")
                    .with_description("gRPC calls in flight")
                    .build(),
                skip,
            }),
        }
    }

    /// A tower layer that measures every call through it.
    pub fn layer(&self) -> RpcMetricsLayer {
        RpcMetricsLayer {
            metrics: self.clone(),
        }
    }

    fn start(&self, path: &str) -> Measured {
        let (service, method) = split_path(path);
        let attributes = vec![
            KeyValue::new("rpc.system", "grpc"),
            KeyValue::new("rpc.service", service.to_owned()),
            KeyValue::new("rpc.method", method.to_owned()),
        ];
        self.inner.active.add(1, &attributes);
        Measured {
            metrics: self.inner.clone(),
            attributes,
            started: Instant::now(),
            // Until trailers say otherwise: a call cut short is UNKNOWN.
            status: 2,
        }
    }
}

/// `/package.Service/Method` as (`package.Service`, `Method`).
fn split_path(path: &str) -> (&str, &str) {
    let path = path.strip_prefix('/').unwrap_or(path);
    path.split_once('/').unwrap_or((path, ""))
}

/// One call being measured; recorded when dropped.
struct Measured {
    metrics: Arc<Instruments>,
    attributes: Vec<KeyValue>,
    started: Instant,
    status: i64,
}

impl Observe for Measured {
    fn observe(&mut self, headers: &http::HeaderMap) {
        if let Some(code) = headers
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
        {
            self.status = code;
        }
    }
}

impl Drop for Measured {
    fn drop(&mut self) {
        self.metrics.active.add(-1, &self.attributes);
        let mut attributes = std::mem::take(&mut self.attributes);
        attributes.push(KeyValue::new("rpc.grpc.status_code", self.status));
        self.metrics
            .duration
            .record(self.started.elapsed().as_secs_f64() * 1e3, &attributes);
    }
}

/// The layer of [`RpcMetrics::layer`].
#[derive(Debug, Clone)]
pub struct RpcMetricsLayer {
    metrics: RpcMetrics,
}

impl<S> tower_layer::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcMetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service of [`RpcMetricsLayer`].
#[derive(Debug, Clone)]
pub struct RpcMetricsService<S> {
    inner: S,
    metrics: RpcMetrics,
}

impl<S, B, ResBody> tower_service::Service<http::Request<B>> for RpcMetricsService<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: HttpBody<Data = bytes::Bytes> + Send + Unpin + 'static,
    ResBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        let skipped = self.metrics.inner.skip.iter().any(|p| path.starts_with(p));
        // No response: the measurement drops at once, recorded as UNKNOWN.
        let measured = (!skipped).then(|| self.metrics.start(path));
        call_observed(&mut self.inner, request, measured)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_service_and_method() {
        assert_eq!(split_path("/proto.KV/Get"), ("proto.KV", "Get"));
        assert_eq!(
            split_path("/grpc.health.v1.Health/Check"),
            ("grpc.health.v1.Health", "Check")
        );
        assert_eq!(split_path("odd"), ("odd", ""));
    }
}
