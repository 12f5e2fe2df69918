//! Host message limits: a host decodes the large replies a plugin may send (up to
//! `i32::MAX` by default, as go-plugin's hosts), in clients made with
//! `new_client!`, and honours `PLUGIN_GRPC_MAX_*` and the builder's limits.

mod common;

use std::time::Duration;

use common::{init_tracing, kv_plugin, within};
use rpcplugin::client::{Environment, new_client};
use rpcplugin::proto::examples::bench::bench_client::BenchClient;
use rpcplugin::proto::examples::bench::{DownloadRequest, Payload};
use rpcplugin::tonic;
use tokio_stream::StreamExt;

const CALL: Duration = Duration::from_secs(10);

/// Downloads one message of `size` bytes and returns what arrived, or the status.
async fn download_one(
    bench: &mut BenchClient<rpcplugin::client::Channel>,
    size: u32,
) -> Result<usize, tonic::Status> {
    let mut stream = within(
        CALL,
        "Download",
        bench.download(DownloadRequest {
            chunk_size: size,
            count: 1,
        }),
    )
    .await?
    .into_inner();
    let mut got = 0;
    while let Some(chunk) = within(CALL, "a Download message", stream.next()).await {
        got += chunk?.data.len();
    }
    Ok(got)
}

#[tokio::test]
async fn a_host_with_default_settings_receives_an_8_mib_reply() {
    init_tracing();
    let plugin = kv_plugin().start().await.expect("kv_plugin starts");
    assert_eq!(
        plugin.max_receive_message_size(),
        rpcplugin::client::DEFAULT_HOST_MAX_MESSAGE_SIZE
    );
    let mut bench = new_client!(BenchClient, plugin);
    let got = download_one(&mut bench, 8 << 20)
        .await
        .expect("an 8 MiB message is decoded with the host's default limit");
    assert_eq!(got, 8 << 20);

    // What new_client! is for: a client made on the bare channel keeps tonic's 4 MiB.
    let mut plain = BenchClient::new(plugin.channel());
    let status = download_one(&mut plain, 8 << 20)
        .await
        .expect_err("tonic's default client refuses 8 MiB");
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status}");
    plugin.stop().await.expect("stop succeeds");
}

#[tokio::test]
async fn plugin_grpc_max_receive_message_size_limits_the_host() {
    init_tracing();
    let env = Environment::from_pairs(std::env::vars().chain([(
        "PLUGIN_GRPC_MAX_RECEIVE_MESSAGE_SIZE".to_owned(),
        "1MiB".to_owned(),
    )]));
    let plugin = kv_plugin()
        .environment(env)
        .start()
        .await
        .expect("kv_plugin starts");
    assert_eq!(plugin.max_receive_message_size(), 1 << 20);
    let mut bench = new_client!(BenchClient, plugin);
    // The limit counts the encoded message: a field tag and a length over the data.
    let fits = (1 << 20) - 64;
    assert_eq!(
        download_one(&mut bench, fits)
            .await
            .expect("just under 1 MiB fits"),
        fits as usize
    );
    let status = download_one(&mut bench, 2 << 20)
        .await
        .expect_err("2 MiB is over the host's 1 MiB");
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status}");
    assert!(status.message().contains("1048576"), "{status}");
    plugin.stop().await.expect("stop succeeds");
}

#[tokio::test]
async fn the_builders_send_limit_stops_a_large_request_on_the_host() {
    init_tracing();
    let plugin = kv_plugin()
        .max_message_sizes(64 << 20, 1 << 20)
        .start()
        .await
        .expect("kv_plugin starts");
    assert_eq!(plugin.max_send_message_size(), 1 << 20);
    let mut bench = new_client!(BenchClient, plugin);
    let echo = |size: usize| Payload {
        data: vec![7; size].into(),
    };
    within(CALL, "a 512 KiB Echo", bench.echo(echo(512 << 10)))
        .await
        .expect("512 KiB is under the host's send limit");
    // tonic's client fails the request body, which reaches the caller as a reset
    // stream (Internal), not as OutOfRange; the plugin (256 MiB) would take it.
    let status = within(CALL, "a 2 MiB Echo", bench.echo(echo(2 << 20)))
        .await
        .expect_err("2 MiB is over the host's 1 MiB send limit");
    assert_ne!(status.code(), tonic::Code::Ok, "{status}");
    plugin.stop().await.expect("stop succeeds");
}
