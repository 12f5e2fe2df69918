//! Metrics (feature `otel`), read through OpenTelemetry's in-memory exporter as a
//! user's own SDK would export them: a plugin's calls by method and status, its
//! calls in flight and connections; a host's calls, starts, restarts and exits.

mod common;

use std::time::Duration;

use common::{COOKIE, kv_plugin, within};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use rpcplugin::opentelemetry::KeyValue;
use rpcplugin::opentelemetry::metrics::MeterProvider as _;
use rpcplugin::proto::examples::kv::kv_client::KvClient;
use rpcplugin::proto::examples::kv::kv_server::{Kv, KvServer};
use rpcplugin::proto::examples::kv::{Empty, GetRequest, GetResponse, PutRequest};
use tonic::{Request, Response, Status};

const LIMIT: Duration = Duration::from_secs(30);

/// An SDK meter provider whose exports can be read back.
fn provider() -> (SdkMeterProvider, InMemoryMetricExporter) {
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    (provider, exporter)
}

/// A data point: its attributes as `key=value` strings, and its count or value.
#[derive(Debug)]
struct Point {
    attributes: Vec<String>,
    value: f64,
}

impl Point {
    fn has(&self, attribute: &str) -> bool {
        self.attributes.iter().any(|a| a == attribute)
    }
}

/// The points of `name` in the last export (histograms give their count).
fn points(exported: &[ResourceMetrics], name: &str) -> Vec<Point> {
    let attrs = |kv: &mut dyn Iterator<Item = &KeyValue>| {
        kv.map(|kv| format!("{}={}", kv.key, kv.value))
            .collect::<Vec<_>>()
    };
    let Some(last) = exported.last() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for scope in last.scope_metrics() {
        for metric in scope.metrics().filter(|m| m.name() == name) {
            match metric.data() {
                AggregatedMetrics::F64(MetricData::Histogram(h)) => {
                    out.extend(h.data_points().map(|p| Point {
                        attributes: attrs(&mut p.attributes()),
                        value: p.count() as f64,
                    }))
                }
                AggregatedMetrics::U64(MetricData::Sum(s)) => {
                    out.extend(s.data_points().map(|p| Point {
                        attributes: attrs(&mut p.attributes()),
                        value: p.value() as f64,
                    }))
                }
                AggregatedMetrics::I64(MetricData::Sum(s)) => {
                    out.extend(s.data_points().map(|p| Point {
                        attributes: attrs(&mut p.attributes()),
                        value: p.value() as f64,
                    }))
                }
                other => panic!("{name}: unexpected data {other:?}"),
            }
        }
    }
    out
}

/// A KV service whose `Get` fails for a missing key.
#[derive(Default)]
struct Store(std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>);

#[tonic::async_trait]
impl Kv for Store {
    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let key = request.into_inner().key;
        match self.0.lock().unwrap().get(&key) {
            Some(value) => Ok(Response::new(GetResponse {
                value: value.clone(),
            })),
            None => Err(Status::not_found(key)),
        }
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<Empty>, Status> {
        let PutRequest { key, value } = request.into_inner();
        self.0.lock().unwrap().insert(key, value);
        Ok(Response::new(Empty {}))
    }
}

#[tokio::test]
async fn a_plugin_measures_its_calls_by_method_and_status_and_its_connections() {
    let (provider, exporter) = provider();
    let meter = provider.meter("plugin");
    let plugin = rpcplugin::plugin_server()
        .handshake(COOKIE.0, COOKIE.1)
        .add_service(KvServer::new(Store::default()))
        .meter(&meter);
    let test = within(LIMIT, "start", rpcplugin::testing::start(plugin))
        .await
        .unwrap();
    let mut kv = KvClient::new(test.channel());
    for i in 0..3 {
        kv.put(PutRequest {
            key: format!("k{i}"),
            value: vec![1],
        })
        .await
        .unwrap();
    }
    kv.get(GetRequest { key: "k0".into() }).await.unwrap();
    assert_eq!(
        kv.get(GetRequest {
            key: "missing".into()
        })
        .await
        .unwrap_err()
        .code(),
        tonic::Code::NotFound
    );
    provider.force_flush().unwrap();
    let exported = exporter.get_finished_metrics().unwrap();
    let calls = points(&exported, "rpc.server.duration");
    let count = |method: &str, status: i64| {
        calls
            .iter()
            .filter(|p| {
                p.has("rpc.system=grpc")
                    && p.has("rpc.service=proto.KV")
                    && p.has(&format!("rpc.method={method}"))
                    && p.has(&format!("rpc.grpc.status_code={status}"))
            })
            .map(|p| p.value)
            .sum::<f64>()
    };
    assert_eq!(count("Put", 0), 3.0, "{calls:#?}");
    assert_eq!(count("Get", 0), 1.0, "{calls:#?}");
    assert_eq!(count("Get", 5), 1.0, "NOT_FOUND is 5: {calls:#?}");
    // The protocol's own services (the harness's health check) are not the plugin's calls.
    assert!(
        !calls
            .iter()
            .any(|p| p.has("rpc.service=grpc.health.v1.Health")),
        "{calls:#?}"
    );
    // Nothing in flight once every call ended.
    let active = points(&exported, "rpcplugin.server.active_calls");
    assert!(
        !active.is_empty() && active.iter().all(|p| p.value == 0.0),
        "{active:#?}"
    );
    let accepted: f64 = points(&exported, "rpcplugin.server.connections.accepted")
        .iter()
        .map(|p| p.value)
        .sum();
    let open: f64 = points(&exported, "rpcplugin.server.connections")
        .iter()
        .map(|p| p.value)
        .sum();
    assert!(accepted >= 1.0, "{accepted}");
    assert_eq!(open, accepted, "every accepted connection is still open");
    test.stop().await.unwrap();
}

#[tokio::test]
async fn a_host_measures_starts_calls_and_exits() {
    let (provider, exporter) = provider();
    let meter = provider.meter("host");
    let plugin = within(LIMIT, "start", kv_plugin().meter(&meter).start())
        .await
        .unwrap();
    let channel = tower::ServiceBuilder::new()
        .option_layer(plugin.call_metrics())
        .service(plugin.channel());
    let mut kv = KvClient::new(channel);
    kv.put(PutRequest {
        key: "k".into(),
        value: b"v".to_vec(),
    })
    .await
    .unwrap();
    kv.get(GetRequest { key: "k".into() }).await.unwrap();
    plugin.stop().await.unwrap();
    // A start the plugin refuses (wrong cookie) counts as a failed one.
    let refused = kv_plugin()
        .handshake(COOKIE.0, "wrong")
        .meter(&meter)
        .start()
        .await;
    assert!(refused.is_err());

    provider.force_flush().unwrap();
    let exported = exporter.get_finished_metrics().unwrap();
    let calls = points(&exported, "rpc.client.duration");
    for method in ["Put", "Get"] {
        let n: f64 = calls
            .iter()
            .filter(|p| p.has(&format!("rpc.method={method}")) && p.has("rpc.grpc.status_code=0"))
            .map(|p| p.value)
            .sum();
        assert_eq!(n, 1.0, "{method}: {calls:#?}");
    }
    let starts = points(&exported, "rpcplugin.plugin.starts");
    let started = |outcome: &str| {
        starts
            .iter()
            .filter(|p| p.has("plugin=kv_plugin") && p.has(&format!("outcome={outcome}")))
            .map(|p| p.value)
            .sum::<f64>()
    };
    assert_eq!(started("ok"), 1.0, "{starts:#?}");
    assert_eq!(started("handshake.plugin_exited"), 1.0, "{starts:#?}");
    let exits = points(&exported, "rpcplugin.plugin.exits");
    assert!(
        exits
            .iter()
            .any(|p| p.has("reason=shutdown_rpc") && p.value == 1.0),
        "{exits:#?}"
    );
}

#[tokio::test]
async fn a_supervisor_counts_its_restarts() {
    let (provider, exporter) = provider();
    let meter = provider.meter("host");
    let supervisor = within(
        LIMIT,
        "start",
        rpcplugin::client::Supervisor::start(
            kv_plugin().meter(&meter),
            rpcplugin::client::SupervisorOptions::new(rpcplugin::client::RestartPolicy::Always)
                .backoff(Duration::from_millis(10), Duration::from_millis(50)),
        ),
    )
    .await
    .unwrap();
    let mut events = supervisor.subscribe();
    let pid = supervisor.pid().expect("running");
    // Killed from outside (SIGKILL: a failure, not a clean exit): an exit, then a restart.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    within(LIMIT, "restart", async {
        loop {
            if let Ok(rpcplugin::client::SupervisorEvent::Started { restarts: 1, .. }) =
                events.recv().await
            {
                break;
            }
        }
    })
    .await;
    supervisor.stop().await.unwrap();
    provider.force_flush().unwrap();
    let exported = exporter.get_finished_metrics().unwrap();
    let restarts: f64 = points(&exported, "rpcplugin.plugin.restarts")
        .iter()
        .map(|p| p.value)
        .sum();
    assert_eq!(restarts, 1.0);
}
