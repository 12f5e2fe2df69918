//! Call counters: how many calls are in flight, how many have finished and how
//! many of those failed, shared by every clone of a [`CallStats`].

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use futures_util::future::{BoxFuture, FutureExt};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::body::Body;

/// Counters of the gRPC calls that pass through its [`CallStatsLayer`]s.
///
/// Clones share the counters, so one `CallStats` can count several services (or
/// channels) together; [`snapshot`](Self::snapshot) reads them. A call is in
/// flight from the moment it reaches the layer until its response body has ended
/// (or is dropped, for a call the peer cancelled), so a stream counts for as long
/// as it runs. It failed when its `grpc-status` (in the headers of an error
/// answered at once, or in the trailers) is not `OK`, or when no response came.
///
/// ```
/// use rpcplugin_layers::CallStats;
/// use tower::{Service, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let stats = CallStats::new();
/// let mut service = ServiceBuilder::new()
///     .layer(stats.layer())
///     .service_fn(|_: http::Request<()>| async {
///         Ok::<_, std::convert::Infallible>(tonic::Status::not_found("no such key").into_http::<tonic::body::Body>())
///     });
/// // An error answered at once has no body to wait for: the call is over.
/// let _reply = service.ready().await.unwrap().call(http::Request::new(())).await.unwrap();
/// let counts = stats.snapshot();
/// assert_eq!((counts.in_flight, counts.finished, counts.failed), (0, 1, 1));
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct CallStats {
    counters: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    started: AtomicU64,
    finished: AtomicU64,
    failed: AtomicU64,
}

/// What a [`CallStats`] counted, read at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallCounts {
    /// Calls started and not finished yet.
    pub in_flight: u64,
    /// Calls finished, successfully or not.
    pub finished: u64,
    /// Of the finished calls, those whose status was not `OK`.
    pub failed: u64,
}

impl CallStats {
    /// New counters, all zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// A layer that counts the calls through it into these counters.
    pub fn layer(&self) -> CallStatsLayer {
        CallStatsLayer {
            stats: self.clone(),
            skip: &[],
        }
    }

    /// A layer that counts the calls through it, except those whose path starts
    /// with one of `prefixes` (e.g. `"/grpc.health.v1.Health/"`).
    pub fn layer_skipping(&self, prefixes: &'static [&'static str]) -> CallStatsLayer {
        CallStatsLayer {
            stats: self.clone(),
            skip: prefixes,
        }
    }

    /// The counters now. Each is read on its own, so under load `in_flight` may
    /// be off by the calls that finish during the read; never negative.
    pub fn snapshot(&self) -> CallCounts {
        // Finished before started: a call counted as finished is always counted
        // as started too, so the difference cannot underflow.
        let finished = self.counters.finished.load(Ordering::Acquire);
        let failed = self.counters.failed.load(Ordering::Relaxed);
        let started = self.counters.started.load(Ordering::Acquire);
        CallCounts {
            in_flight: started.saturating_sub(finished),
            finished,
            failed,
        }
    }

    fn start(&self) -> CallGuard {
        self.counters.started.fetch_add(1, Ordering::Relaxed);
        CallGuard {
            counters: self.counters.clone(),
            failed: true,
        }
    }
}

/// Ends one call when dropped: as failed unless an `OK` status was seen.
#[derive(Debug)]
struct CallGuard {
    counters: Arc<Counters>,
    failed: bool,
}

impl Observe for CallGuard {
    fn observe(&mut self, headers: &http::HeaderMap) {
        if let Some(status) = headers.get("grpc-status") {
            self.failed = status.as_bytes() != b"0";
        }
    }
}

/// Something told the gRPC status of a call: from the response headers (a
/// trailers-only error) and from the trailers at the end of the body. Dropping it
/// ends the call.
pub(crate) trait Observe {
    /// Looks for `grpc-status` in `headers`.
    fn observe(&mut self, headers: &http::HeaderMap);
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if self.failed {
            self.counters.failed.fetch_add(1, Ordering::Relaxed);
        }
        self.counters.finished.fetch_add(1, Ordering::Release);
    }
}

/// Counts calls into a [`CallStats`]; made by [`CallStats::layer`].
#[derive(Debug, Clone)]
pub struct CallStatsLayer {
    stats: CallStats,
    skip: &'static [&'static str],
}

impl<S> tower_layer::Layer<S> for CallStatsLayer {
    type Service = CallStatsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallStatsService {
            inner,
            stats: self.stats.clone(),
            skip: self.skip,
        }
    }
}

/// The service a [`CallStatsLayer`] makes.
#[derive(Debug, Clone)]
pub struct CallStatsService<S> {
    inner: S,
    stats: CallStats,
    skip: &'static [&'static str],
}

impl<S, B, ResBody> tower_service::Service<http::Request<B>> for CallStatsService<S>
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
        let skipped = self.skip.iter().any(|prefix| path.starts_with(prefix));
        // An error (no response) drops the guard at once: a failed call.
        let guard = (!skipped).then(|| self.stats.start());
        call_observed(&mut self.inner, request, guard)
    }
}

/// Calls `inner` with `request`, `guard` (when there is one) seeing the
/// response's status and ending with its body.
pub(crate) fn call_observed<S, B, ResBody, G>(
    inner: &mut S,
    request: http::Request<B>,
    guard: Option<G>,
) -> BoxFuture<'static, Result<http::Response<Body>, S::Error>>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: HttpBody<Data = bytes::Bytes> + Send + Unpin + 'static,
    ResBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    G: Observe + Send + Unpin + 'static,
{
    let Some(mut guard) = guard else {
        return inner
            .call(request)
            .map(|result| result.map(|response| response.map(Body::new)))
            .boxed();
    };
    inner
        .call(request)
        .map(move |result| {
            result.map(|response| {
                guard.observe(response.headers());
                response.map(|body| Body::new(Counted { body, guard }))
            })
        })
        .boxed()
}

/// A response body that ends its call when it ends or is dropped.
/// A response body that tells `guard` the trailers it carries, and drops it (ending
/// the call) when the body is done or dropped.
pub(crate) struct Counted<B, G> {
    pub(crate) body: B,
    pub(crate) guard: G,
}

impl<B, G> HttpBody for Counted<B, G>
where
    B: HttpBody + Unpin,
    G: Observe + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(trailers) = frame.trailers_ref()
        {
            this.guard.observe(trailers);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tower::{Service, ServiceBuilder, ServiceExt};

    /// A successful unary answer: a message, then trailers with `grpc-status: 0`.
    fn ok_response() -> http::Response<Body> {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        let frames = futures_util::stream::iter([
            Ok::<_, std::convert::Infallible>(Frame::data(bytes::Bytes::from_static(
                b"\0\0\0\0\0",
            ))),
            Ok(Frame::trailers(trailers)),
        ]);
        http::Response::new(Body::new(http_body_util::StreamBody::new(frames)))
    }

    #[tokio::test]
    async fn a_call_is_in_flight_until_its_body_ends_and_ok_trailers_are_a_success() {
        let stats = CallStats::new();
        let mut service =
            ServiceBuilder::new()
                .layer(stats.layer())
                .service_fn(|_: http::Request<()>| async {
                    Ok::<_, std::convert::Infallible>(ok_response())
                });
        let reply = service
            .ready()
            .await
            .unwrap()
            .call(http::Request::new(()))
            .await
            .unwrap();
        assert_eq!(stats.snapshot().in_flight, 1);
        let collected = reply.into_body().collect().await.unwrap();
        assert!(collected.trailers().is_some());
        let counts = stats.snapshot();
        assert_eq!(
            (counts.in_flight, counts.finished, counts.failed),
            (0, 1, 0)
        );
    }

    #[tokio::test]
    async fn a_body_dropped_before_its_trailers_is_a_failed_call() {
        let stats = CallStats::new();
        let service =
            ServiceBuilder::new()
                .layer(stats.layer())
                .service_fn(|_: http::Request<()>| async {
                    Ok::<_, std::convert::Infallible>(ok_response())
                });
        let reply = service.oneshot(http::Request::new(())).await.unwrap();
        let mut body = reply.into_body();
        let first = body.frame().await.unwrap().unwrap();
        assert!(first.is_data());
        drop(body);
        let counts = stats.snapshot();
        assert_eq!(
            (counts.in_flight, counts.finished, counts.failed),
            (0, 1, 1)
        );
    }

    #[tokio::test]
    async fn skipped_paths_are_not_counted() {
        let stats = CallStats::new();
        let service = ServiceBuilder::new()
            .layer(stats.layer_skipping(&["/grpc.health.v1.Health/"]))
            .service_fn(|_: http::Request<()>| async {
                Ok::<_, std::convert::Infallible>(ok_response())
            });
        let request = |path: &str| http::Request::builder().uri(path).body(()).unwrap();
        let health = service
            .clone()
            .oneshot(request("/grpc.health.v1.Health/Check"))
            .await
            .unwrap();
        drop(health);
        assert_eq!(stats.snapshot(), CallCounts::default());
        let own = service.oneshot(request("/kv.KV/Get")).await.unwrap();
        drop(own);
        assert_eq!(stats.snapshot().finished, 1);
    }

    #[tokio::test]
    async fn clones_share_their_counters_and_an_error_without_response_counts_as_failed() {
        let stats = CallStats::new();
        let service = ServiceBuilder::new()
            .layer(stats.clone().layer())
            .service_fn(|_: http::Request<()>| async { Err::<http::Response<Body>, _>("refused") });
        assert!(service.oneshot(http::Request::new(())).await.is_err());
        assert_eq!(
            stats.snapshot(),
            CallCounts {
                in_flight: 0,
                finished: 1,
                failed: 1
            }
        );
    }
}
