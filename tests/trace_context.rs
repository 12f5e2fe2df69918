//! Tracing across the boundary (feature `otel`): a host span's W3C trace context
//! reaches the plugin process, whose request span continues the host's trace.
//!
//! Both sides use tracing-opentelemetry's no-op tracer, which records nothing but
//! carries the parent's ids into child spans: the host span gets a fixed remote
//! parent, and `examples/traced_plugin` logs the ids its handler runs under.
//!
//! `cargo build --features otel --example traced_plugin` first, then
//! `cargo nextest run --features otel --test trace_context` (`cargo xtask ci` does).

mod common;

use common::{COOKIE, example, within};
use rpcplugin::opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
};
use rpcplugin::proto::examples::kv::PutRequest;
use rpcplugin::proto::examples::kv::kv_client::KvClient;
use rpcplugin::tracing_opentelemetry::OpenTelemetrySpanExt;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tracing::Instrument;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

const LIMIT: Duration = Duration::from_secs(30);
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN_ID: &str = "00f067aa0ba902b7";

/// The `message` and `fields` of each event the host logged, with its pid.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<BTreeMap<String, String>>>>);

impl<S: tracing::Subscriber> Layer<S> for Events {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        struct Fields<'a>(&'a mut BTreeMap<String, String>);
        impl Visit for Fields<'_> {
            fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                self.0.insert(field.name().to_owned(), format!("{value:?}"));
            }
            fn record_str(&mut self, field: &Field, value: &str) {
                self.0.insert(field.name().to_owned(), value.to_owned());
            }
        }
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().push(fields);
    }
}

fn events() -> &'static Events {
    static EVENTS: OnceLock<Events> = OnceLock::new();
    EVENTS.get_or_init(|| {
        let events = Events::default();
        tracing::subscriber::set_global_default(
            tracing_subscriber::registry()
                .with(rpcplugin::tracing_opentelemetry::layer())
                .with(events.clone()),
        )
        .expect("no other global subscriber in this test binary");
        events
    })
}

/// The `fields` of the plugin's "traced put" line for `key`, once it arrives.
async fn traced_put(pid: u32, key: &str) -> String {
    let pid = pid.to_string();
    let find = || {
        events().0.lock().unwrap().iter().find_map(|e| {
            let fields = e.get("fields")?;
            (e.get("pid") == Some(&pid)
                && e.get("message").map(String::as_str) == Some("traced put")
                && fields.contains(&format!("key={key} ")))
            .then(|| fields.clone())
        })
    };
    assert!(
        common::wait_until(LIMIT, || find().is_some()).await,
        "the plugin logged no traced put for {key}"
    );
    find().unwrap()
}

/// A host span continuing a (fixed) remote trace.
fn host_span() -> tracing::Span {
    let parent = SpanContext::new(
        TraceId::from_hex(TRACE_ID).unwrap(),
        SpanId::from_hex(SPAN_ID).unwrap(),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    let span = tracing::info_span!("host operation");
    span.set_parent(rpcplugin::opentelemetry::Context::new().with_remote_span_context(parent))
        .expect("the OpenTelemetry layer is installed");
    span
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_spans_trace_continues_in_the_plugin() {
    events();
    let plugin = within(
        LIMIT,
        "start traced_plugin",
        rpcplugin::plugin_client(example("traced_plugin"))
            .handshake(COOKIE.0, COOKIE.1)
            .start(),
    )
    .await
    .expect("traced_plugin starts");
    let pid = plugin.pid();

    let put = |key: &str| PutRequest {
        key: key.into(),
        value: Vec::new(),
    };
    KvClient::new(plugin.traced_channel())
        .put(put("traced"))
        .instrument(host_span())
        .await
        .expect("put through the traced channel");
    // The plain channel sends no trace context: the plugin's span starts no trace.
    KvClient::new(plugin.channel())
        .put(put("plain"))
        .instrument(host_span())
        .await
        .expect("put through the plain channel");

    let traced = traced_put(pid, "traced").await;
    let plain = traced_put(pid, "plain").await;
    plugin.stop().await.expect("stop");
    assert!(
        traced.contains(&format!("trace_id={TRACE_ID}"))
            && traced.contains(&format!("span_id={SPAN_ID}")),
        "{traced}"
    );
    assert!(
        plain.contains(&format!("trace_id={}", TraceId::INVALID)),
        "{plain}"
    );
}
