//! W3C trace context on incoming calls (feature `otel`): each request runs in a
//! span whose parent is the host's span named by the `traceparent` (and
//! `tracestate`) metadata, so one trace covers host and plugin.
//!
//! The parent is set through `tracing-opentelemetry`: the plugin needs an
//! [`OpenTelemetryLayer`](tracing_opentelemetry::OpenTelemetryLayer) in its
//! subscriber for the link to be recorded. Requests without a valid `traceparent`
//! get a span of their own.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use std::str::FromStr;
use std::task::{Context, Poll};
use tracing::Instrument;
use tracing::instrument::Instrumented;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// A tower layer that runs each request in a span that continues the caller's
/// trace. [`Builder::serve`](crate::Builder::serve) applies it when the `otel`
/// feature is on; it also fits any tonic server:
/// `tonic::transport::Server::builder().layer(TraceContextLayer)`.
///
/// The span is `grpc.request` at INFO with `otel.name` = the method path,
/// `otel.kind` = `server`, `rpc.system` = `grpc`, `rpc.service` and `rpc.method`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceContextLayer;

impl<S> tower_layer::Layer<S> for TraceContextLayer {
    type Service = TraceContextService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TraceContextService { inner }
    }
}

/// The service [`TraceContextLayer`] makes.
#[derive(Debug, Clone)]
pub struct TraceContextService<S> {
    inner: S,
}

impl<S, B> tower_service::Service<http::Request<B>> for TraceContextService<S>
where
    S: tower_service::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let span = request_span(&request);
        let future = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        future.instrument(span)
    }
}

fn request_span<B>(request: &http::Request<B>) -> tracing::Span {
    let path = request.uri().path();
    let (service, method) = path
        .trim_start_matches('/')
        .split_once('/')
        .unwrap_or((path, ""));
    let span = tracing::info_span!(
        "grpc.request",
        otel.name = %path,
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
    );
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
    };
    if let Some(parent) = header("traceparent").and_then(|value| parse(value, header("tracestate")))
    {
        // Fails only without an OpenTelemetry layer, when there is nothing to link.
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
    }
    span
}

/// A `traceparent` value (`VERSION-TRACEID-PARENTID-FLAGS`) as a remote span
/// context, following W3C Trace Context: version `ff` and all-zero ids are
/// invalid; a later version may append fields after the four known ones. Hex in
/// either case is accepted. A `tracestate` that does not parse is dropped, not the
/// parent.
fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<SpanContext> {
    let mut parts = traceparent.trim().split('-');
    let version = parts.next()?;
    let trace_id = parts.next()?;
    let span_id = parts.next()?;
    let flags = parts.next()?;
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex(version, 2) || version.eq_ignore_ascii_case("ff") {
        return None;
    }
    if version == "00" && parts.next().is_some() {
        return None;
    }
    if !hex(trace_id, 32) || !hex(span_id, 16) || !hex(flags, 2) {
        return None;
    }
    let trace_id = TraceId::from_hex(trace_id).ok()?;
    let span_id = SpanId::from_hex(span_id).ok()?;
    let flags = TraceFlags::new(u8::from_str_radix(flags, 16).ok()? & TraceFlags::SAMPLED.to_u8());
    let state = tracestate
        .and_then(|s| TraceState::from_str(s.trim()).ok())
        .unwrap_or_default();
    let context = SpanContext::new(trace_id, span_id, flags, true, state);
    context.is_valid().then_some(context)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower_layer::Layer;
    use tower_service::Service;
    use tracing_subscriber::layer::SubscriberExt;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_becomes_a_remote_parent() {
        let parent = parse(PARENT, Some("vendor=abc")).unwrap();
        assert_eq!(
            parent.trace_id(),
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
        );
        assert_eq!(
            parent.span_id(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap()
        );
        assert!(parent.is_sampled() && parent.is_remote());
        assert_eq!(parent.trace_state().header(), "vendor=abc");

        // Upper case, a later version with an extra field, a bad tracestate.
        assert!(parse(&PARENT.to_uppercase(), None).is_some());
        assert!(parse(&format!("01{}-extra", &PARENT[2..]), None).is_some());
        assert!(parse(PARENT, Some("not a state")).is_some());
    }

    #[test]
    fn invalid_traceparents_are_ignored() {
        for bad in [
            "",
            "00",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(parse(bad, None).is_none(), "{bad:?}");
        }
    }

    /// A service that reports the trace id its handler runs under.
    #[derive(Clone)]
    struct Report;

    impl Service<http::Request<()>> for Report {
        type Response = String;
        type Error = Infallible;
        type Future = std::future::Ready<Result<String, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            let context = tracing::Span::current().context();
            std::future::ready(Ok(context.span().span_context().trace_id().to_string()))
        }
    }

    fn handled_under(request: http::Request<()>) -> String {
        // The no-op tracer propagates the parent's ids, which is all this needs.
        let subscriber = tracing_subscriber::registry().with(tracing_opentelemetry::layer());
        tracing::subscriber::with_default(subscriber, || {
            let mut service = TraceContextLayer.layer(Report);
            futures_util::FutureExt::now_or_never(service.call(request))
                .unwrap()
                .unwrap()
        })
    }

    #[test]
    fn the_handler_runs_in_the_callers_trace() {
        let request = http::Request::builder()
            .uri("/proto.KV/Put")
            .header("traceparent", PARENT)
            .body(())
            .unwrap();
        assert_eq!(handled_under(request), "4bf92f3577b34da6a3ce929d0e0e4736");

        let request = http::Request::builder()
            .uri("/proto.KV/Put")
            .body(())
            .unwrap();
        assert_eq!(handled_under(request), TraceId::INVALID.to_string());
    }
}
