//! [`ConcurrencyLimitLayer`]: at most N calls in flight, the next one refused.
//!
//! Built from tower's `GlobalConcurrencyLimitLayer` (one semaphore shared by every
//! service it makes and their clones: tonic's router clones a service per call)
//! under `LoadShed` (a service that is not ready fails the call instead of making
//! it wait), with the refusal turned into a gRPC status.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tower::BoxError;
use tower::limit::{ConcurrencyLimit, GlobalConcurrencyLimitLayer};
use tower::load_shed::LoadShed;
use tower::load_shed::error::Overloaded;
use tower_layer::Layer;
use tower_service::Service;

/// At most `max` calls in flight through the services it wraps, together; a call
/// over that is answered with `RESOURCE_EXHAUSTED` at once. A call counts until its
/// response (for a streaming call, its headers) is ready. Clones share the count.
#[derive(Debug, Clone)]
pub struct ConcurrencyLimitLayer {
    max: usize,
    limit: GlobalConcurrencyLimitLayer,
    message: Arc<str>,
}

impl ConcurrencyLimitLayer {
    /// At most `max` calls in flight (0 refuses every call).
    pub fn new(max: usize) -> Self {
        Self {
            max,
            limit: GlobalConcurrencyLimitLayer::new(max),
            message: format!("concurrency limit exceeded: {max} calls in flight; retry later")
                .into(),
        }
    }

    /// The number of calls allowed in flight.
    pub fn max(&self) -> usize {
        self.max
    }
}

impl<S> Layer<S> for ConcurrencyLimitLayer {
    type Service = ConcurrencyLimitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ConcurrencyLimitService {
            inner: LoadShed::new(self.limit.layer(inner)),
            message: self.message.clone(),
        }
    }
}

/// A service behind a [`ConcurrencyLimitLayer`].
#[derive(Debug, Clone)]
pub struct ConcurrencyLimitService<S> {
    inner: LoadShed<ConcurrencyLimit<S>>,
    message: Arc<str>,
}

impl<S, Req, ResBody> Service<http::Request<Req>> for ConcurrencyLimitService<S>
where
    S: Service<http::Request<Req>, Response = http::Response<ResBody>>,
    S::Error: Into<BoxError>,
    ResBody: Default,
{
    type Response = http::Response<ResBody>;
    type Error = BoxError;
    type Future =
        ResponseFuture<<LoadShed<ConcurrencyLimit<S>> as Service<http::Request<Req>>>::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Req>) -> Self::Future {
        ResponseFuture {
            inner: Box::pin(self.inner.call(request)),
            message: self.message.clone(),
        }
    }
}

/// The response of a [`ConcurrencyLimitService`]: the inner one's, or the refusal.
pub struct ResponseFuture<F> {
    // Boxed so the future is Unpin without a pin projection; only built when a
    // concurrency limit is configured.
    inner: Pin<Box<F>>,
    message: Arc<str>,
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, ResBody> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<ResBody>, BoxError>>,
    ResBody: Default,
{
    type Output = Result<http::Response<ResBody>, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match ready!(self.inner.as_mut().poll(cx)) {
            Err(err) if err.is::<Overloaded>() => {
                let status = tonic::Status::resource_exhausted(self.message.to_string());
                Poll::Ready(Ok(crate::rejected(status)))
            }
            other => Poll::Ready(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    fn code(reply: &http::Response<tonic::body::Body>) -> Option<tonic::Code> {
        tonic::Status::from_header_map(reply.headers()).map(|s| s.code())
    }

    #[tokio::test]
    async fn the_call_over_the_limit_fails_at_once_and_a_finished_one_frees_its_place() {
        let (release, wait) = tokio::sync::oneshot::channel::<()>();
        let wait = Arc::new(tokio::sync::Mutex::new(Some(wait)));
        let layer = ConcurrencyLimitLayer::new(1);
        let service = layer.layer(tower::service_fn(move |_: http::Request<()>| {
            let wait = wait.clone();
            async move {
                // The first call waits for `release`; later ones answer at once.
                if let Some(wait) = wait.lock().await.take() {
                    let _ = wait.await;
                }
                Ok::<_, std::convert::Infallible>(http::Response::new(tonic::body::Body::empty()))
            }
        }));
        let first = tokio::spawn(service.clone().oneshot(http::Request::new(())));
        // Let the first call take the one place.
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        let refused = service
            .clone()
            .oneshot(http::Request::new(()))
            .await
            .unwrap();
        assert_eq!(code(&refused), Some(tonic::Code::ResourceExhausted));
        let message = tonic::Status::from_header_map(refused.headers()).unwrap();
        assert!(
            message.message().contains("concurrency limit"),
            "{message:?}"
        );

        release.send(()).unwrap();
        let done = first.await.unwrap().unwrap();
        assert_eq!(code(&done), None);
        let after = service.oneshot(http::Request::new(())).await.unwrap();
        assert_eq!(code(&after), None, "the place is free again");
    }
}
