//! W3C trace context on calls to a plugin (feature `otel`): the host's current span
//! travels as `traceparent` (and `tracestate`) in the gRPC metadata, so the plugin's
//! request span joins the host's trace.
//!
//! The span's OpenTelemetry context comes from `tracing-opentelemetry`: the host
//! must have an [`OpenTelemetryLayer`](tracing_opentelemetry::OpenTelemetryLayer) in
//! its subscriber. Without one, or outside any span, nothing is added.

use opentelemetry::trace::{SpanContext, TraceContextExt};
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// A [`Channel`] whose calls carry the caller's trace context: what
/// [`PluginClient::traced_channel`](crate::PluginClient::traced_channel) returns.
/// Generated clients take it as they take a `Channel`.
pub type TracedChannel = InterceptedService<Channel, TraceContext>;

/// An interceptor that adds the current span's W3C `traceparent` and `tracestate`
/// to each request.
///
/// Wraps any channel, the [`Supervisor`](crate::Supervisor)'s too:
///
/// ```
/// use rpcplugin_client::TraceContext;
/// use tonic::service::interceptor::InterceptedService;
///
/// # fn wrap(channel: tonic::transport::Channel) {
/// let traced = InterceptedService::new(channel, TraceContext);
/// # let _ = traced; }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceContext;

impl Interceptor for TraceContext {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let context = tracing::Span::current().context();
        let span = context.span();
        let span_context = span.span_context();
        if span_context.is_valid() {
            let metadata = request.metadata_mut();
            if let Ok(value) = MetadataValue::try_from(traceparent(span_context)) {
                metadata.insert("traceparent", value);
            }
            let state = span_context.trace_state().header();
            if !state.is_empty()
                && let Ok(value) = MetadataValue::try_from(state)
            {
                metadata.insert("tracestate", value);
            }
        }
        Ok(request)
    }
}

/// `00-TRACEID-SPANID-FLAGS`, lowercase hex (W3C Trace Context, version 00).
fn traceparent(span: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        span.trace_id(),
        span.span_id(),
        span.trace_flags().to_u8()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanId, TraceFlags, TraceId, TraceState};
    use std::str::FromStr;
    use tracing_subscriber::layer::SubscriberExt;

    fn remote(state: &str) -> SpanContext {
        SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::from_str(state).unwrap(),
        )
    }

    /// The metadata the interceptor adds inside a span whose parent is `parent`.
    fn intercepted(parent: Option<SpanContext>) -> tonic::metadata::MetadataMap {
        // The no-op tracer propagates its parent's ids, which is all this needs.
        let subscriber = tracing_subscriber::registry().with(tracing_opentelemetry::layer());
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("host call");
            if let Some(parent) = parent {
                span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent))
                    .unwrap();
            }
            let _entered = span.enter();
            TraceContext
                .call(Request::new(()))
                .unwrap()
                .metadata()
                .clone()
        })
    }

    #[test]
    fn the_current_span_goes_out_as_traceparent_and_tracestate() {
        let metadata = intercepted(Some(remote("vendor=abc,other=1")));
        assert_eq!(
            metadata.get("traceparent").unwrap(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert_eq!(metadata.get("tracestate").unwrap(), "vendor=abc,other=1");
    }

    #[test]
    fn no_trace_context_means_no_header() {
        let metadata = intercepted(None);
        assert!(metadata.get("traceparent").is_none(), "{metadata:?}");
        let metadata = intercepted(Some(remote("")));
        assert!(metadata.get("traceparent").is_some());
        assert!(metadata.get("tracestate").is_none(), "{metadata:?}");
    }
}
