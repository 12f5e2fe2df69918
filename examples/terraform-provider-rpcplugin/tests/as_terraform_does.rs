//! The provider executable driven as Terraform drives it, through rpcplugin's host
//! API: Terraform's cookie, its 5,6 version offer, AutoMTLS with a P-521 host
//! certificate, and Terraform's 64 MiB receive limit. What Terraform itself shows
//! is checked by `cargo xtask interop terraform`; these tests reach the cases a
//! configuration cannot (a panic in each call, StopProvider, 8 MiB values).

use rpcplugin::client::PluginClient;
use rpcplugin::crypto::KeyAlgorithm;
use rpcplugin::tonic::transport::Channel;
use std::time::Duration;
use terraform_provider_rpcplugin::pb::provider_client::ProviderClient;
use terraform_provider_rpcplugin::pb::*;
use terraform_provider_rpcplugin::value::Value;
use terraform_provider_rpcplugin::{MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE};

/// What Terraform accepts from a provider (grpc-go's MaxCallRecvMsgSize in
/// Terraform's plugin client).
const TERRAFORM_RECEIVE_LIMIT: usize = 64 << 20;

/// Every call must answer within this: a provider that hangs fails the test.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

async fn start(env: &[(&str, &str)]) -> (PluginClient, ProviderClient<Channel>) {
    let mut builder = rpcplugin::plugin_client(env!("CARGO_BIN_EXE_terraform-provider-rpcplugin"))
        .handshake(MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE)
        .protocol_versions([5, 6])
        .auto_mtls_key(KeyAlgorithm::EcdsaP521);
    for (key, value) in env {
        builder = builder.env(key, value);
    }
    let plugin = builder.start().await.expect("the provider starts");
    let client = ProviderClient::new(plugin.channel())
        .max_decoding_message_size(TERRAFORM_RECEIVE_LIMIT)
        .max_encoding_message_size(usize::MAX);
    (plugin, client)
}

async fn within<T>(call: impl Future<Output = T>) -> T {
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .expect("the provider answered in time")
}

fn object(attributes: &[(&str, Value)]) -> Option<DynamicValue> {
    Some(Value::object(attributes.iter().cloned()).to_dynamic())
}

fn text(s: &str) -> Value {
    Value::String(s.to_owned())
}

fn decode(value: Option<DynamicValue>) -> Value {
    Value::from_dynamic(value.as_ref()).expect("the provider sends valid msgpack")
}

async fn configure(client: &mut ProviderClient<Channel>, root: &std::path::Path) {
    let reply = within(client.configure_provider(configure_provider::Request {
        terraform_version: "1.11.4".into(),
        config: object(&[("root", text(&root.to_string_lossy()))]),
        client_capabilities: None,
    }))
    .await
    .unwrap()
    .into_inner();
    assert!(reply.diagnostics.is_empty(), "{:?}", reply.diagnostics);
}

fn attribute_of(diagnostic: &Diagnostic) -> Option<String> {
    match &diagnostic.attribute.as_ref()?.steps.first()?.selector {
        Some(attribute_path::step::Selector::AttributeName(name)) => Some(name.clone()),
        _ => None,
    }
}

/// Plans creating an `rpcplugin_file` whose configuration is `config`.
async fn plan_create(
    client: &mut ProviderClient<Channel>,
    config: &[(&str, Value)],
) -> plan_resource_change::Response {
    within(client.plan_resource_change(plan_resource_change::Request {
        type_name: "rpcplugin_file".into(),
        prior_state: Some(Value::Null.to_dynamic()),
        proposed_new_state: object(config),
        config: object(config),
        ..Default::default()
    }))
    .await
    .unwrap()
    .into_inner()
}

/// Applies creating an `rpcplugin_file` with this planned state.
async fn apply_create(
    client: &mut ProviderClient<Channel>,
    planned: Option<DynamicValue>,
) -> apply_resource_change::Response {
    within(
        client.apply_resource_change(apply_resource_change::Request {
            type_name: "rpcplugin_file".into(),
            prior_state: Some(Value::Null.to_dynamic()),
            planned_state: planned,
            ..Default::default()
        }),
    )
    .await
    .unwrap()
    .into_inner()
}

#[tokio::test]
async fn terraform_gets_protocol_6_over_mutual_tls_and_the_schema() {
    let (plugin, mut client) = start(&[]).await;
    assert_eq!(plugin.protocol_version(), 6, "6 out of Terraform's 5,6");
    assert!(
        plugin.is_tls(),
        "AutoMTLS with the host's P-521 certificate"
    );
    let schema = within(client.get_provider_schema(get_provider_schema::Request {}))
        .await
        .unwrap()
        .into_inner();
    let resource = schema.resource_schemas["rpcplugin_file"]
        .block
        .clone()
        .unwrap();
    let names: Vec<_> = resource
        .attributes
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(names, ["id", "path", "content", "permissions", "sha256"]);
    assert!(schema.data_source_schemas.contains_key("rpcplugin_file"));
    let root = &schema.provider.unwrap().block.unwrap().attributes[0];
    assert!(root.name == "root" && root.optional && !root.required);
    plugin.stop().await.unwrap();
}

#[tokio::test]
async fn plan_apply_read_with_unknowns_and_diagnostics() {
    let dir = tempfile::tempdir().unwrap();
    let (plugin, mut client) = start(&[]).await;
    configure(&mut client, dir.path()).await;

    let bad = within(
        client.validate_resource_config(validate_resource_config::Request {
            type_name: "rpcplugin_file".into(),
            config: object(&[
                ("path", text("a")),
                ("content", text("x")),
                ("permissions", text("rwx")),
            ]),
        }),
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!(bad.diagnostics.len(), 1);
    assert_eq!(
        bad.diagnostics[0].severity,
        diagnostic::Severity::Error as i32
    );
    assert_eq!(bad.diagnostics[0].summary, "Invalid permissions");
    assert_eq!(
        attribute_of(&bad.diagnostics[0]).as_deref(),
        Some("permissions")
    );

    let unknown = [
        ("id", Value::Unknown),
        ("path", text("a.txt")),
        ("content", Value::Unknown),
        ("permissions", Value::Null),
        ("sha256", Value::Unknown),
    ];
    let plan = plan_create(&mut client, &unknown).await;
    assert!(plan.diagnostics.is_empty(), "{:?}", plan.diagnostics);
    let planned = decode(plan.planned_state);
    assert!(planned.get("content").is_unknown());
    assert!(planned.get("sha256").is_unknown());
    assert_eq!(planned.get("permissions").as_str(), Some("0644"));

    let known = [
        ("id", Value::Null),
        ("path", text("a.txt")),
        ("content", text("hello\n")),
        ("permissions", Value::Null),
        ("sha256", Value::Null),
    ];
    let plan = plan_create(&mut client, &known).await;
    let applied = apply_create(&mut client, plan.planned_state.clone()).await;
    assert!(applied.diagnostics.is_empty(), "{:?}", applied.diagnostics);
    assert_eq!(
        decode(applied.new_state.clone()),
        decode(plan.planned_state)
    );
    let file = dir.path().join("a.txt");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "hello\n");

    std::fs::remove_file(&file).unwrap();
    let read = within(client.read_resource(read_resource::Request {
        type_name: "rpcplugin_file".into(),
        current_state: applied.new_state,
        ..Default::default()
    }))
    .await
    .unwrap()
    .into_inner();
    assert_eq!(
        decode(read.new_state),
        Value::Null,
        "gone: removed from state"
    );

    let missing = within(client.read_data_source(read_data_source::Request {
        type_name: "rpcplugin_file".into(),
        config: object(&[("path", text("nope.txt"))]),
        ..Default::default()
    }))
    .await
    .unwrap()
    .into_inner();
    assert_eq!(missing.diagnostics.len(), 1);
    assert!(missing.diagnostics[0].summary.contains("nope.txt"));
    assert_eq!(
        attribute_of(&missing.diagnostics[0]).as_deref(),
        Some("path")
    );

    let garbage = within(client.plan_resource_change(plan_resource_change::Request {
        type_name: "rpcplugin_file".into(),
        proposed_new_state: Some(DynamicValue {
            // A 3-byte string with 1 byte.
            msgpack: vec![0xa3, b'a'],
            json: vec![],
        }),
        ..Default::default()
    }))
    .await
    .unwrap()
    .into_inner();
    assert!(
        garbage.diagnostics[0]
            .summary
            .contains("Invalid proposed state")
    );
    plugin.stop().await.unwrap();
}

#[tokio::test]
async fn a_panic_in_a_call_is_an_internal_error_and_the_provider_keeps_serving() {
    let (plugin, mut client) = start(&[("TF_RPCPLUGIN_TEST_PANIC", "ReadDataSource")]).await;
    let err = within(client.read_data_source(read_data_source::Request {
        type_name: "rpcplugin_file".into(),
        config: object(&[("path", text("/etc/hostname"))]),
        ..Default::default()
    }))
    .await
    .unwrap_err();
    assert_eq!(err.code(), rpcplugin::tonic::Code::Internal);
    assert!(
        err.message()
            .contains("panicked in /tfplugin6.Provider/ReadDataSource"),
        "{}",
        err.message()
    );
    // The same process answers the next call.
    within(client.get_provider_schema(get_provider_schema::Request {}))
        .await
        .unwrap();
    plugin.stop().await.unwrap();
}

#[tokio::test]
async fn after_stop_provider_no_change_starts() {
    let dir = tempfile::tempdir().unwrap();
    let (plugin, mut client) = start(&[]).await;
    configure(&mut client, dir.path()).await;
    within(client.stop_provider(stop_provider::Request {}))
        .await
        .unwrap();
    let planned = [
        ("id", text(&dir.path().join("a").to_string_lossy())),
        ("path", text("a")),
        ("content", text("x")),
        ("permissions", text("0644")),
        ("sha256", text("00")),
    ];
    let reply = apply_create(&mut client, object(&planned)).await;
    assert_eq!(reply.diagnostics[0].summary, "The provider is stopping");
    assert!(!dir.path().join("a").exists());
    plugin.stop().await.unwrap();
}

#[tokio::test]
async fn values_larger_than_grpc_defaults_travel_both_ways() {
    // 8 MiB: twice tonic's and grpc-go's 4 MiB default, both directions.
    let dir = tempfile::tempdir().unwrap();
    let content = "x".repeat(8 << 20);
    let (plugin, mut client) = start(&[]).await;
    configure(&mut client, dir.path()).await;
    let config = [
        ("id", Value::Null),
        ("path", text("big")),
        ("content", Value::String(content.clone())),
        ("permissions", Value::Null),
        ("sha256", Value::Null),
    ];
    let plan = plan_create(&mut client, &config).await;
    let applied = apply_create(&mut client, plan.planned_state).await;
    assert!(applied.diagnostics.is_empty(), "{:?}", applied.diagnostics);
    assert_eq!(
        std::fs::metadata(dir.path().join("big")).unwrap().len(),
        8 << 20
    );
    let state = decode(applied.new_state);
    assert_eq!(state.get("content").as_str().map(str::len), Some(8 << 20));
    plugin.stop().await.unwrap();
}
