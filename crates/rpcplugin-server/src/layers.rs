//! Tower layers around the plugin's own services ([`Builder::layer`](crate::Builder::layer),
//! the built-in rate and concurrency limits) and tonic's server settings.
//!
//! Layers wrap each user service one by one, not the server: the built-in health,
//! controller, stdio, broker and reflection services stay outside them, so a host's
//! health checks, shutdown and brokered connections work however loaded the plugin
//! is. tonic's router takes only services that name themselves
//! ([`NamedService`]), which a layered service no longer does; [`Named`] gives the
//! layered service its inner service's name back.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt};
use rpcplugin_config::Settings;
use rpcplugin_core::Result;
use rpcplugin_layers::{ConcurrencyLimitLayer, RateLimit};
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;
use tower::BoxError;
use tower::util::BoxCloneSyncService;
use tower_layer::Layer;
use tower_service::Service;

use crate::PluginService;

/// A plugin service with its type erased, as [`Builder::layer`](crate::Builder::layer)'s
/// layers receive it: any tower layer over HTTP services applies to it
/// (`tower::timeout::TimeoutLayer`, a `ServiceBuilder` stack, your own).
pub type BoxedService = BoxCloneSyncService<http::Request<Body>, http::Response<Body>, BoxError>;

type ApplyLayer = Arc<dyn Fn(BoxedService) -> BoxedService + Send + Sync>;

/// The layers around each user service, outermost first.
#[derive(Clone, Default)]
pub(crate) struct ServiceLayers {
    stack: Vec<ApplyLayer>,
}

impl std::fmt::Debug for ServiceLayers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceLayers")
            .field("layers", &self.stack.len())
            .finish()
    }
}

impl ServiceLayers {
    /// Adds `layer` inside those already there.
    pub(crate) fn push<L>(&mut self, layer: L)
    where
        L: Layer<BoxedService> + Send + Sync + 'static,
        L::Service: Service<http::Request<Body>, Response = http::Response<Body>>
            + Clone
            + Send
            + Sync
            + 'static,
        <L::Service as Service<http::Request<Body>>>::Future: Send + 'static,
        <L::Service as Service<http::Request<Body>>>::Error: Into<BoxError>,
    {
        self.stack.push(Arc::new(move |inner| {
            BoxCloneSyncService::new(tower::ServiceExt::map_err(layer.layer(inner), Into::into))
        }));
    }

    /// Adds `service` to the routes, inside the layers. Without layers the service
    /// goes in as it is: nothing configured costs nothing.
    pub(crate) fn add<S: PluginService>(&self, service: S, routes: &mut RoutesBuilder) {
        if self.stack.is_empty() {
            routes.add_service(service);
            return;
        }
        let mut layered = BoxCloneSyncService::new(tower::ServiceExt::map_err(
            service,
            |never: Infallible| -> BoxError { match never {} },
        ));
        for apply in self.stack.iter().rev() {
            layered = apply(layered);
        }
        routes.add_service(Named::<S> {
            inner: layered,
            not_ready: None,
            name: PhantomData,
        });
    }
}

/// The built-in limits (rate, then concurrency, outermost), then the user's layers.
/// The rate limit set in code wins over `PLUGIN_RATE_LIMIT_*`.
pub(crate) fn with_builtin(
    user: ServiceLayers,
    rate_limit: Option<RateLimit>,
    concurrency_limit: Option<usize>,
    settings: &Settings,
) -> Result<ServiceLayers> {
    let rate_limit = match rate_limit {
        Some(limit) => Some(limit),
        None if settings.rate_limit_enabled => Some(RateLimit::new(
            settings.rate_limit_requests_per_second,
            settings.rate_limit_burst_capacity,
        )?),
        None => None,
    };
    let mut layers = ServiceLayers::default();
    if let Some(limit) = rate_limit {
        tracing::debug!(?limit, "rate limit on the plugin's services");
        layers.push(limit.layer());
    }
    if let Some(max) = concurrency_limit {
        layers.push(ConcurrencyLimitLayer::new(max));
    }
    layers.stack.extend(user.stack);
    Ok(layers)
}

/// A layered service under the name of the service it wraps, with errors from
/// the layers answered as gRPC statuses (what tonic's own server does with errors
/// of its layers): a `tower::timeout` expiry is `DEADLINE_EXCEEDED`.
struct Named<N> {
    inner: BoxedService,
    /// Why a layer could not be ready: the next call is answered with it.
    not_ready: Option<BoxError>,
    name: PhantomData<fn() -> N>,
}

impl<N> Clone for Named<N> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            not_ready: None,
            name: PhantomData,
        }
    }
}

impl<N: NamedService> NamedService for Named<N> {
    const NAME: &'static str = N::NAME;
}

impl<N> Service<http::Request<Body>> for Named<N> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // A layer that cannot be ready fails the call (below) rather than the
        // connection.
        if let Err(err) = std::task::ready!(self.inner.poll_ready(cx)) {
            self.not_ready = Some(err);
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if let Some(err) = self.not_ready.take() {
            return futures_util::future::ready(Ok(status_of(err).into_http())).boxed();
        }
        self.inner
            .call(request)
            .map(|result| Ok(result.unwrap_or_else(|err| status_of(err).into_http())))
            .boxed()
    }
}

fn status_of(err: BoxError) -> tonic::Status {
    if err.is::<tower::timeout::error::Elapsed>() {
        return tonic::Status::deadline_exceeded("the call timed out in the plugin");
    }
    tonic::Status::from_error(err)
}

/// tonic's server settings, off unless set: they apply to every call on a
/// connection, the built-in services' included.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ServerSettings {
    pub(crate) concurrency_limit_per_connection: Option<usize>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) max_concurrent_streams: Option<u32>,
}

impl ServerSettings {
    pub(crate) fn apply(self, mut server: tonic::transport::Server) -> tonic::transport::Server {
        if let Some(limit) = self.concurrency_limit_per_connection {
            server = server.concurrency_limit_per_connection(limit);
        }
        if let Some(timeout) = self.timeout {
            server = server.timeout(timeout);
        }
        if let Some(streams) = self.max_concurrent_streams {
            server = server.max_concurrent_streams(streams);
        }
        server
    }
}
