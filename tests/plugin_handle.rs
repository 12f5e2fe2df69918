//! The plugin's handle on itself (where it serves, a status snapshot, the
//! health it reports) and the host's status of a plugin, used as plugin and host
//! code would.

mod common;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use common::{init_tracing, kv_plugin, within};
use rpcplugin::client::new_client;
use rpcplugin::proto::examples::counter::{self, counter_client::CounterClient};
use rpcplugin::proto::examples::kv::kv_client::KvClient;
use rpcplugin::proto::examples::kv::kv_server::{Kv, KvServer};
use rpcplugin::proto::examples::kv::{Empty, GetRequest, GetResponse, PutRequest};
use rpcplugin::proto::health::v1::HealthCheckRequest;
use rpcplugin::proto::health::v1::health_check_response::ServingStatus;
use rpcplugin::proto::health::v1::health_client::HealthClient;
use rpcplugin::server::{HealthStatus, ServingState};
use rpcplugin::tonic::{self, Request, Response, Status};

const CALL: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Store(Mutex<HashMap<String, Vec<u8>>>);

#[tonic::async_trait]
impl Kv for Store {
    async fn get(&self, r: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let key = r.into_inner().key;
        let value = self.0.lock().unwrap().get(&key).cloned();
        value
            .map(|value| Response::new(GetResponse { value }))
            .ok_or_else(|| Status::not_found(key))
    }

    async fn put(&self, r: Request<PutRequest>) -> Result<Response<Empty>, Status> {
        let PutRequest { key, value } = r.into_inner();
        self.0.lock().unwrap().insert(key, value);
        Ok(Response::new(Empty {}))
    }
}

async fn health_of(channel: tonic::transport::Channel, service: &str) -> i32 {
    within(
        CALL,
        "Health/Check",
        HealthClient::new(channel).check(HealthCheckRequest {
            service: service.into(),
        }),
    )
    .await
    .expect("health answers")
    .into_inner()
    .status
}

#[tokio::test]
async fn a_plugin_knows_where_it_serves_counts_its_calls_and_reports_its_health() {
    init_tracing();
    let plugin = rpcplugin::plugin_server()
        .handshake("BASIC_PLUGIN", "hello")
        .add_service(KvServer::new(Store::default()));
    let handle = plugin.handle();
    assert_eq!(handle.status().state, ServingState::Starting);
    let test = rpcplugin::testing::start(plugin).await.unwrap();

    let info = within(CALL, "ready", handle.ready())
        .await
        .expect("the plugin serves");
    assert_eq!(&info.endpoint, test.client().endpoint());
    assert_eq!(info.network.as_str(), "memory");
    assert_eq!(info.protocol_version, test.client().protocol_version());
    assert!(info.tls, "AutoMTLS is on, and the plugin knows it");
    assert!(!info.multiplexed);

    let mut kv = KvClient::new(test.channel());
    let put = PutRequest {
        key: "k".into(),
        value: b"v".to_vec(),
    };
    within(CALL, "Put", kv.put(put)).await.unwrap();
    within(CALL, "Get", kv.get(GetRequest { key: "k".into() }))
        .await
        .unwrap();
    let missing = within(CALL, "Get", kv.get(GetRequest { key: "x".into() })).await;
    assert_eq!(missing.unwrap_err().code(), tonic::Code::NotFound);
    // Health checks are the host's, not the plugin's own calls: not counted.
    assert_eq!(
        health_of(test.channel(), "plugin").await,
        ServingStatus::Serving as i32
    );

    let status = handle.status();
    assert_eq!(status.state, ServingState::Serving);
    assert_eq!(status.calls.finished, 3, "{status:?}");
    assert_eq!(status.calls.failed, 1, "{status:?}");
    assert_eq!(status.calls.in_flight, 0, "{status:?}");
    assert!(status.connections >= 1, "{status:?}");
    assert!(status.uptime > Duration::ZERO);

    // The plugin's code reports a problem: the host sees it, for "plugin" and
    // for the service, and sees it go away.
    handle.set_health("plugin", HealthStatus::NotServing);
    handle.set_health("proto.KV", HealthStatus::NotServing);
    assert_eq!(
        health_of(test.channel(), "plugin").await,
        ServingStatus::NotServing as i32
    );
    assert_eq!(
        health_of(test.channel(), "proto.KV").await,
        ServingStatus::NotServing as i32
    );
    handle.set_health("plugin", HealthStatus::Serving);
    assert_eq!(
        health_of(test.channel(), "plugin").await,
        ServingStatus::Serving as i32
    );
    // A name the plugin adds becomes known to health.
    assert_eq!(
        within(
            CALL,
            "Health/Check",
            HealthClient::new(test.channel()).check(HealthCheckRequest {
                service: "cache".into()
            })
        )
        .await
        .unwrap_err()
        .code(),
        tonic::Code::NotFound
    );
    handle.set_health("cache", HealthStatus::Serving);
    assert_eq!(
        health_of(test.channel(), "cache").await,
        ServingStatus::Serving as i32
    );

    test.stop().await.unwrap();
    assert_eq!(handle.status().state, ServingState::Stopped);
    assert_eq!(handle.info(), None);
    assert_eq!(handle.health("plugin"), Some(HealthStatus::NotServing));
}

#[tokio::test]
async fn a_health_watcher_sees_the_status_plugin_code_sets_as_it_changes() {
    init_tracing();
    let plugin = rpcplugin::plugin_server()
        .handshake("BASIC_PLUGIN", "hello")
        .add_service(KvServer::new(Store::default()));
    let handle = plugin.handle();
    let test = rpcplugin::testing::start(plugin).await.unwrap();
    let mut updates = within(
        CALL,
        "Health/Watch",
        HealthClient::new(test.channel()).watch(HealthCheckRequest {
            service: "plugin".into(),
        }),
    )
    .await
    .unwrap()
    .into_inner();
    let mut next = async || {
        within(CALL, "a health update", updates.message())
            .await
            .unwrap()
            .expect("the watch goes on")
            .status
    };
    assert_eq!(next().await, ServingStatus::Serving as i32);
    // A change to another name is not a change of "plugin".
    handle.set_health("other", HealthStatus::NotServing);
    handle.set_health("plugin", HealthStatus::NotServing);
    assert_eq!(next().await, ServingStatus::NotServing as i32);
    handle.set_health("plugin", HealthStatus::Serving);
    assert_eq!(next().await, ServingStatus::Serving as i32);
    // Stopping: the watcher hears NOT_SERVING, then the stream ends, so it does
    // not hold up the drain.
    let stopped = tokio::spawn(test.stop());
    assert_eq!(next().await, ServingStatus::NotServing as i32);
    let end = within(CALL, "the end of the watch", updates.message()).await;
    assert!(!matches!(end, Ok(Some(_))), "{end:?}");
    within(Duration::from_secs(1), "a stop with a watcher", stopped)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_handle_of_a_plugin_that_cannot_start_says_so_instead_of_waiting() {
    init_tracing();
    // No cookie in the environment: serve refuses at once.
    let plugin = rpcplugin::plugin_server()
        .handshake("BASIC_PLUGIN", "hello")
        .environment(rpcplugin::config::Environment::from_pairs(Vec::<(
            String,
            String,
        )>::new(
        )));
    let handle = plugin.handle();
    assert!(plugin.serve().await.is_err());
    assert_eq!(within(CALL, "ready", handle.ready()).await, None);
    assert_eq!(handle.status().state, ServingState::Stopped);
}

#[tokio::test]
async fn a_host_counts_the_calls_it_makes_and_its_connections_to_a_plugin_process() {
    init_tracing();
    let plugin = kv_plugin().start().await.expect("kv_plugin starts");
    let channel = tower::ServiceBuilder::new()
        .layer(plugin.call_stats())
        .service(plugin.channel());
    let mut kv = KvClient::new(channel.clone());
    within(
        CALL,
        "Put",
        kv.put(PutRequest {
            key: "a".into(),
            value: b"1".to_vec(),
        }),
    )
    .await
    .unwrap();
    // kv_plugin serves no Counter: a call that fails.
    let mut counter = CounterClient::new(channel);
    let unknown = within(
        CALL,
        "Counter/Get",
        counter.get(counter::GetRequest { key: "b".into() }),
    )
    .await;
    assert_eq!(unknown.unwrap_err().code(), tonic::Code::Unimplemented);
    // A client made without the layer is not counted.
    let mut uncounted = new_client!(KvClient, plugin);
    within(CALL, "Get", uncounted.get(GetRequest { key: "a".into() }))
        .await
        .unwrap();

    let status = plugin.status();
    assert_eq!(status.calls.finished, 2, "{status:?}");
    assert_eq!(status.calls.failed, 1, "{status:?}");
    assert_eq!(status.calls.in_flight, 0, "{status:?}");
    assert_eq!(
        status.connects, 1,
        "one connection, never remade: {status:?}"
    );
    assert!(status.uptime > Duration::ZERO);
    plugin.stop().await.expect("stop succeeds");
}
