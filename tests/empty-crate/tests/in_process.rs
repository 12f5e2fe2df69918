//! The plugin's own test: its services and a host in one process, no executable.

use greeter_plugin::pb::GreetRequest;
use greeter_plugin::pb::greeter_client::GreeterClient;
use rpcplugin::tonic::Code;

#[tokio::test]
async fn the_plugin_greets_by_name_and_refuses_an_empty_name() {
    let plugin = rpcplugin::testing::start(greeter_plugin::plugin())
        .await
        .expect("the plugin serves in process");
    assert!(
        plugin.client().is_tls(),
        "AutoMTLS, as a launching host has it"
    );
    let mut greeter = GreeterClient::new(plugin.channel());

    let reply = greeter
        .greet(GreetRequest { name: "Ada".into() })
        .await
        .expect("a greeting");
    assert_eq!(reply.into_inner().greeting, "hello, Ada");

    let refused = greeter
        .greet(GreetRequest::default())
        .await
        .expect_err("an empty name is refused");
    assert_eq!(refused.code(), Code::InvalidArgument);

    plugin.stop().await.expect("the plugin stops");
}
