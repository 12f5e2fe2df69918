//! A plugin whose request spans continue the host's trace (feature `otel`).
//!
//! It serves `proto.KV` (cookie `BASIC_PLUGIN=hello`, version 1) and logs, for each
//! `Put`, the trace id and parent span id its handler runs under, as hclog JSON on
//! stderr: `traced put trace_id=... span_id=...`. A host calling through
//! `PluginClient::traced_channel()` inside a span sees its own trace id come back.
//!
//! The subscriber has an OpenTelemetry layer with the no-op tracer, which carries
//! the host's ids into the request span and records nothing. A real plugin gives
//! `OpenTelemetryLayer::new` a tracer from an SDK with an exporter (OTLP, Jaeger),
//! and its spans then appear under the host's in one trace.
//!
//! ```text
//! cargo build --features otel --example traced_plugin
//! ```

use rpcplugin::opentelemetry::trace::TraceContextExt;
use rpcplugin::proto::examples::kv::kv_server::{Kv, KvServer};
use rpcplugin::proto::examples::kv::{Empty, GetRequest, GetResponse, PutRequest};
use rpcplugin::tonic::{self, Request, Response, Status};
use rpcplugin::tracing_opentelemetry::OpenTelemetrySpanExt;
use std::process::ExitCode;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

struct Traced;

#[tonic::async_trait]
impl Kv for Traced {
    async fn get(&self, _: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        Ok(Response::new(GetResponse { value: Vec::new() }))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<Empty>, Status> {
        // The current span is the request span rpcplugin made (`grpc.request`).
        let context = tracing::Span::current().context();
        let span = context.span();
        let ids = span.span_context();
        tracing::info!(
            key = %request.get_ref().key,
            trace_id = %ids.trace_id(),
            span_id = %ids.span_id(),
            "traced put"
        );
        Ok(Response::new(Empty {}))
    }
}

fn main() -> ExitCode {
    tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::INFO)
        .with(rpcplugin::server::logging::HclogLayer::new())
        .with(rpcplugin::tracing_opentelemetry::layer())
        .init();
    rpcplugin::plugin_server()
        .handshake("BASIC_PLUGIN", "hello")
        .protocol_version(1)
        .add_service_with(|limits| limits.apply(KvServer::new(Traced)))
        .run()
}
