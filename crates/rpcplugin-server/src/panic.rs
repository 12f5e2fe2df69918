//! A panic inside a call becomes that call's gRPC error, not a reset stream.
//!
//! Without this, a handler that panics kills only its request task: the HTTP/2
//! stream is reset and the host sees `CANCELLED` with no reason (Terraform says
//! "The request was cancelled", as if the user had pressed Ctrl-C). With it, the
//! host gets `INTERNAL` with the method and the panic's message, which Terraform
//! shows as a plugin error, and the plugin goes on serving other calls. The panic
//! hook still prints the message and location on stderr, into the host's log.

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::task::{Context, Poll};
use tonic::body::Body;

/// The layer [`Builder::serve`](crate::Builder::serve) puts around every service.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CatchPanicLayer;

impl<S> tower_layer::Layer<S> for CatchPanicLayer {
    type Service = CatchPanic<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CatchPanic { inner }
    }
}

/// The service [`CatchPanicLayer`] makes.
#[derive(Debug, Clone)]
pub(crate) struct CatchPanic<S> {
    inner: S,
}

impl<S, B> tower_service::Service<http::Request<B>> for CatchPanic<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request.uri().path().to_owned();
        // The handler's state is dropped with the panic; nothing of it is reused.
        let called = std::panic::catch_unwind(AssertUnwindSafe(|| self.inner.call(request)));
        Box::pin(async move {
            let future = match called {
                Ok(future) => future,
                Err(payload) => return Ok(panic_response(&method, payload.as_ref())),
            };
            match AssertUnwindSafe(future).catch_unwind().await {
                Ok(result) => result,
                Err(payload) => Ok(panic_response(&method, payload.as_ref())),
            }
        })
    }
}

fn panic_response(method: &str, payload: &(dyn Any + Send)) -> http::Response<Body> {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    tracing::error!(method, message, "a call panicked; answering INTERNAL");
    tonic::Status::internal(format!("the plugin panicked in {method}: {message}")).into_http()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{Layer, ServiceExt, service_fn};

    fn request() -> http::Request<Body> {
        http::Request::builder()
            .uri("/pkg.Svc/Boom")
            .body(Body::default())
            .unwrap()
    }

    #[tokio::test]
    async fn a_panic_in_a_handler_is_an_internal_status_naming_the_method() {
        let service = CatchPanicLayer.layer(service_fn(|_: http::Request<Body>| async {
            if true {
                panic!("disk on fire");
            }
            Ok::<_, std::convert::Infallible>(http::Response::new(Body::default()))
        }));
        let response = service.oneshot(request()).await.unwrap();
        let status = tonic::Status::from_header_map(response.headers()).unwrap();
        assert_eq!(status.code(), tonic::Code::Internal);
        assert_eq!(
            status.message(),
            "the plugin panicked in /pkg.Svc/Boom: disk on fire"
        );
    }

    #[tokio::test]
    async fn calls_that_do_not_panic_pass_through() {
        let service = CatchPanicLayer.layer(service_fn(|_: http::Request<Body>| async {
            Ok::<_, std::convert::Infallible>(
                http::Response::builder()
                    .status(201)
                    .body(Body::default())
                    .unwrap(),
            )
        }));
        let response = service.oneshot(request()).await.unwrap();
        assert_eq!(response.status(), 201);
    }
}
