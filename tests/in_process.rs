//! `rpcplugin::testing` as a plugin author uses it: the plugin's own server
//! builder, served in the test process with a host attached, no executable.
//! Calls a KV service, checks health, and uses the broker both ways.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rpcplugin::proto::examples::counter::add_helper_client::AddHelperClient;
use rpcplugin::proto::examples::counter::add_helper_server::{AddHelper, AddHelperServer};
use rpcplugin::proto::examples::counter::counter_client::CounterClient;
use rpcplugin::proto::examples::counter::counter_server::{Counter, CounterServer};
use rpcplugin::proto::examples::counter::{
    self as counter, ServeHelperResponse, SumRequest, SumResponse, TicksRequest,
};
use rpcplugin::proto::examples::kv::kv_client::KvClient;
use rpcplugin::proto::examples::kv::kv_server::{Kv, KvServer};
use rpcplugin::proto::examples::kv::{Empty, GetRequest, GetResponse, PutRequest};
use rpcplugin::proto::health::v1::HealthCheckRequest;
use rpcplugin::proto::health::v1::health_check_response::ServingStatus;
use rpcplugin::proto::health::v1::health_client::HealthClient;
use rpcplugin::server::{BrokeredServer, GrpcBroker, StopReason};
use rpcplugin::tonic::service::Routes;
use rpcplugin::tonic::{self, Request, Response, Status};

const CALL: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Store(Mutex<HashMap<String, Vec<u8>>>);

#[tonic::async_trait]
impl Kv for Store {
    async fn get(&self, r: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let key = r.into_inner().key;
        match self.0.lock().unwrap().get(&key) {
            Some(value) => Ok(Response::new(GetResponse {
                value: value.clone(),
            })),
            None => Err(Status::not_found(key)),
        }
    }

    async fn put(&self, r: Request<PutRequest>) -> Result<Response<Empty>, Status> {
        let PutRequest { key, value } = r.into_inner();
        self.0.lock().unwrap().insert(key, value);
        Ok(Response::new(Empty {}))
    }
}

/// Adds, counting its calls: served by the host for the plugin, and by the
/// plugin for the host.
#[derive(Clone, Default)]
struct Adder {
    calls: Arc<AtomicUsize>,
}

#[tonic::async_trait]
impl AddHelper for Adder {
    async fn sum(&self, r: Request<SumRequest>) -> Result<Response<SumResponse>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let SumRequest { a, b } = r.into_inner();
        Ok(Response::new(SumResponse { r: a + b }))
    }

    type TicksStream = tokio_stream::Empty<Result<SumResponse, Status>>;

    async fn ticks(&self, _: Request<TicksRequest>) -> Result<Response<Self::TicksStream>, Status> {
        Err(Status::unimplemented("not needed here"))
    }
}

/// go-plugin's counter: `Put` calls back into the host's adder through the
/// broker; `ServeHelper` brokers an adder of the plugin's own.
struct CounterPlugin {
    broker: GrpcBroker,
    values: Mutex<HashMap<String, i64>>,
    helpers: Mutex<Vec<BrokeredServer>>,
}

#[tonic::async_trait]
impl Counter for CounterPlugin {
    async fn get(
        &self,
        r: Request<counter::GetRequest>,
    ) -> Result<Response<counter::GetResponse>, Status> {
        let value = self
            .values
            .lock()
            .unwrap()
            .get(&r.into_inner().key)
            .copied();
        Ok(Response::new(counter::GetResponse {
            value: value.unwrap_or(0),
        }))
    }

    async fn put(
        &self,
        r: Request<counter::PutRequest>,
    ) -> Result<Response<counter::Empty>, Status> {
        let counter::PutRequest {
            add_server,
            key,
            value,
        } = r.into_inner();
        let channel = self
            .broker
            .dial(add_server)
            .await
            .map_err(|e| Status::unavailable(rpcplugin::render(&e)))?;
        let current = self.values.lock().unwrap().get(&key).copied().unwrap_or(0);
        let sum = AddHelperClient::new(channel)
            .sum(SumRequest {
                a: current,
                b: value,
            })
            .await?
            .into_inner()
            .r;
        self.values.lock().unwrap().insert(key, sum);
        Ok(Response::new(counter::Empty {}))
    }

    async fn serve_helper(
        &self,
        _: Request<counter::Empty>,
    ) -> Result<Response<ServeHelperResponse>, Status> {
        let id = self.broker.next_id();
        let server = self
            .broker
            .accept_and_serve(id, Routes::new(AddHelperServer::new(Adder::default())))
            .await
            .map_err(|e| Status::unavailable(rpcplugin::render(&e)))?;
        self.helpers.lock().unwrap().push(server);
        Ok(Response::new(ServeHelperResponse { broker_id: id }))
    }
}

/// The plugin's server builder, as its `main` would make it.
fn plugin() -> rpcplugin::server::Builder {
    let builder = rpcplugin::plugin_server()
        .handshake("BASIC_PLUGIN", "hello")
        .add_service(KvServer::new(Store::default()));
    let counter = CounterPlugin {
        broker: builder.broker(),
        values: Mutex::default(),
        helpers: Mutex::default(),
    };
    builder.add_service(CounterServer::new(counter))
}

async fn exercise(test: &rpcplugin::testing::TestPlugin) {
    // The plugin's own service.
    let mut kv = KvClient::new(test.channel());
    kv.put(PutRequest {
        key: "hello".into(),
        value: b"world".to_vec(),
    })
    .await
    .unwrap();
    let value = kv
        .get(GetRequest {
            key: "hello".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .value;
    assert_eq!(value, b"world");

    // Health, as go-plugin hosts ask it.
    let status = HealthClient::new(test.channel())
        .check(HealthCheckRequest {
            service: "plugin".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);

    // The plugin calls back into the host through the broker.
    // An announcement serves one dial (as in go-plugin): one id per call.
    let host_adder = Adder::default();
    let broker = test.broker();
    let mut counter = CounterClient::new(test.channel());
    for value in [1, 2] {
        let id = broker.next_id();
        let _served = broker
            .accept_and_serve(id, Routes::new(AddHelperServer::new(host_adder.clone())))
            .await
            .unwrap();
        tokio::time::timeout(
            CALL,
            counter.put(counter::PutRequest {
                add_server: id,
                key: "n".into(),
                value,
            }),
        )
        .await
        .expect("put in time")
        .unwrap();
    }
    let n = counter
        .get(counter::GetRequest { key: "n".into() })
        .await
        .unwrap()
        .into_inner()
        .value;
    assert_eq!(n, 3);
    assert_eq!(host_adder.calls.load(Ordering::SeqCst), 2);

    // The host dials a service the plugin brokers.
    let plugin_id = counter
        .serve_helper(counter::Empty {})
        .await
        .unwrap()
        .into_inner()
        .broker_id;
    let channel = tokio::time::timeout(CALL, broker.dial(plugin_id))
        .await
        .expect("dial in time")
        .unwrap();
    let r = AddHelperClient::new(channel)
        .sum(SumRequest { a: 40, b: 2 })
        .await
        .unwrap()
        .into_inner()
        .r;
    assert_eq!(r, 42);
}

#[tokio::test]
async fn a_plugin_runs_in_process_with_automtls_and_the_broker_both_ways() {
    let test = rpcplugin::testing::start(plugin()).await.unwrap();
    assert!(test.client().is_tls(), "AutoMTLS by default");
    assert_eq!(test.client().endpoint().network().as_str(), "memory");
    exercise(&test).await;
    assert_eq!(test.stop().await.unwrap(), StopReason::Requested);
}

#[tokio::test]
async fn a_plugin_runs_in_process_in_plaintext_when_asked() {
    let test = rpcplugin::testing::TestHost::new()
        .auto_mtls(false)
        .start(plugin())
        .await
        .unwrap();
    assert!(!test.client().is_tls());
    exercise(&test).await;
    test.stop().await.unwrap();
}

#[tokio::test]
async fn the_host_and_plugin_versions_are_negotiated_as_over_a_process() {
    let test = rpcplugin::testing::TestHost::new()
        .protocol_versions([1, 2, 3])
        .start(plugin().protocol_versions([2, 5]))
        .await
        .unwrap();
    assert_eq!(test.client().protocol_version(), 2);
    test.stop().await.unwrap();

    let err = rpcplugin::testing::TestHost::new()
        .protocol_versions([1])
        .start(plugin().protocol_version(4))
        .await
        .unwrap_err();
    assert_eq!(err.code(), rpcplugin::Code::HandshakeIncompatibleAppVersion);
}
