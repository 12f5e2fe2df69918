//! Versioned plugin sets with real processes: `examples/versioned` serves version 1
//! (`proto.KV`) and version 2 (`proto.KV` and `bench.v1.Bench`) from one binary.

mod common;

use common::{example, init_tracing, show};
use rpcplugin::Code;
use rpcplugin::client::PluginClient;
use rpcplugin::proto::examples::bench::Payload;
use rpcplugin::proto::examples::bench::bench_client::BenchClient;
use rpcplugin::proto::examples::kv::kv_client::KvClient;
use rpcplugin::proto::examples::kv::{GetRequest, PutRequest};
use rpcplugin::tonic;

async fn start(versions: &[u32]) -> rpcplugin::Result<PluginClient> {
    rpcplugin::plugin_client(example("versioned"))
        .arg("plugin")
        .handshake("BASIC_PLUGIN", "hello")
        .protocol_versions(versions.iter().copied())
        .start()
        .await
}

async fn bench_answers(plugin: &PluginClient) -> Result<(), tonic::Status> {
    BenchClient::new(plugin.channel())
        .echo(Payload {
            data: b"ping".to_vec().into(),
        })
        .await
        .map(|_| ())
}

async fn kv_round_trip(plugin: &PluginClient) {
    let mut kv = KvClient::new(plugin.channel());
    kv.put(PutRequest {
        key: "k".into(),
        value: b"v".to_vec(),
    })
    .await
    .expect("KV is served under every version");
    let got = kv.get(GetRequest { key: "k".into() }).await.unwrap();
    assert_eq!(got.into_inner().value, b"v");
}

#[tokio::test]
async fn a_host_asking_for_version_1_gets_version_1_services_only() {
    init_tracing();
    let plugin = start(&[1]).await.map_err(show).expect("starts");
    assert_eq!(plugin.protocol_version(), 1);
    kv_round_trip(&plugin).await;
    let status = bench_answers(&plugin)
        .await
        .expect_err("Bench is version 2's");
    assert_eq!(status.code(), tonic::Code::Unimplemented);
    plugin.stop().await.unwrap();
}

#[tokio::test]
async fn a_host_asking_for_version_2_gets_version_2_services() {
    init_tracing();
    let plugin = start(&[2]).await.map_err(show).expect("starts");
    assert_eq!(plugin.protocol_version(), 2);
    kv_round_trip(&plugin).await;
    bench_answers(&plugin)
        .await
        .expect("Bench is served under 2");
    plugin.stop().await.unwrap();
}

#[tokio::test]
async fn the_highest_common_version_wins_whatever_the_order() {
    init_tracing();
    let plugin = start(&[2, 1, 7]).await.map_err(show).expect("starts");
    assert_eq!(plugin.protocol_version(), 2);
    bench_answers(&plugin).await.expect("version 2 services");
    plugin.stop().await.unwrap();
}

#[tokio::test]
async fn no_version_in_common_is_a_clear_error() {
    init_tracing();
    let err = start(&[3, 4])
        .await
        .map(|_| ())
        .map_err(show)
        .expect_err("the plugin serves 1 and 2 only");
    assert_eq!(err.code(), Code::HandshakeIncompatibleAppVersion);
    assert_eq!(err.kind(), rpcplugin::ErrorKind::Handshake);
    assert!(
        err.to_string()
            .contains("no app protocol version in common with this host"),
        "{err}"
    );
    let rendered = rpcplugin::render(&err);
    assert!(
        rendered.contains("plugin speaks app protocol version 1, host speaks [3, 4]"),
        "{rendered}"
    );
}
